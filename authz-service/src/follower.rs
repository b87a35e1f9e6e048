//! Follows the directory's change feed: every change set is written to the stored
//! projection with its checkpoint in one transaction, and only then applied in
//! memory, so a restart resumes exactly where the service stopped. A snapshot
//! replaces the tenant's state as a whole at its end. The stream is reopened with
//! backoff when it or the directory goes away, from the revisions held.
//!
//! This is where the directory's proto types stop: changes are converted into
//! [`crate::domain::Change`].

use std::sync::Arc;
use std::time::Duration;

use cohort_shared::convert::{role_from_proto, tool_from_proto};
use cohort_shared::proto::directory::v1 as pb;
use cohort_shared::proto::directory::v1::change_feed_service_client::ChangeFeedServiceClient;
use pb::change::Change as C;
use pb::watch_response::Event;
use tokio::sync::watch;
use uuid::Uuid;

use crate::domain::{Change, GroupId, Revision, TenantState, UserId};
use crate::projection::Projection;
use crate::storage::{Apply, ProjectionStore};
use crate::upstream::Upstream;

/// A tenant snapshot being received.
struct Snapshot {
    tenant: Uuid,
    revision: Revision,
    state: TenantState,
    changes: Vec<Change>,
}

/// Follows the feed until `closing` turns true.
pub async fn follow(
    directory: Upstream,
    store: Arc<dyn ProjectionStore>,
    projection: Arc<Projection>,
    mut closing: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let run = follow_once(&directory, &*store, &projection, &mut backoff);
        let stopped = tokio::select! {
            result = run => {
                if let Err(err) = result {
                    tracing::warn!(error = %err, retry_in = ?backoff, "lost the directory's feed");
                }
                false
            }
            _ = closing.wait_for(|c| *c) => true,
        };
        if stopped {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = closing.wait_for(|c| *c) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn follow_once(
    directory: &Upstream,
    store: &dyn ProjectionStore,
    projection: &Projection,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let channel = directory
        .endpoint()?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await?;
    let cursors = projection
        .cursors()
        .into_iter()
        .map(|(tenant, revision)| pb::TenantCursor {
            tenant_id: tenant.to_string(),
            revision,
        })
        .collect();
    let mut request = tonic::Request::new(pb::WatchRequest {
        cursors,
        all_tenants: true,
    });
    directory.authorize(&mut request);
    let mut stream = ChangeFeedServiceClient::new(channel)
        .watch(request)
        .await?
        .into_inner();
    tracing::info!(directory = %directory.url, "following the directory's feed");
    projection.set_connected(true);
    let result = apply_stream(&mut stream, store, projection, backoff).await;
    projection.set_connected(false);
    result
}

/// Applies the feed's messages until it ends or fails.
async fn apply_stream(
    stream: &mut tonic::Streaming<pb::WatchResponse>,
    store: &dyn ProjectionStore,
    projection: &Projection,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let mut snapshot: Option<Snapshot> = None;
    while let Some(message) = stream.message().await? {
        *backoff = Duration::from_millis(100);
        let Some(event) = message.event else { continue };
        match event {
            Event::SnapshotBegin(begin) => {
                let tenant = Uuid::parse_str(&begin.tenant_id)?;
                snapshot = Some(Snapshot {
                    tenant,
                    revision: begin.revision,
                    state: TenantState::default(),
                    changes: Vec::new(),
                });
            }
            Event::Change(event) => {
                let tenant = Uuid::parse_str(&event.tenant_id)?;
                let changes: Vec<Change> = event
                    .changes
                    .into_iter()
                    .map(convert)
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .into_iter()
                    .flatten()
                    .collect();
                match &mut snapshot {
                    Some(s) if s.tenant == tenant => {
                        for change in &changes {
                            s.state.apply(change.clone());
                        }
                        s.changes.extend(changes);
                    }
                    Some(_) => anyhow::bail!("a change of another tenant inside a snapshot"),
                    None => {
                        store
                            .apply(tenant, event.revision, Apply::Incremental, &changes)
                            .await?;
                        projection.apply(tenant, event.revision, changes);
                        projection.vouch(tenant, event.revision);
                    }
                }
            }
            Event::SnapshotEnd(end) => {
                let Some(mut s) = snapshot.take() else {
                    anyhow::bail!("a snapshot end without its beginning")
                };
                anyhow::ensure!(
                    s.tenant.to_string() == end.tenant_id && s.revision == end.revision,
                    "mismatched snapshot end"
                );
                store
                    .apply(s.tenant, s.revision, Apply::Replace, &s.changes)
                    .await?;
                s.state.revision = s.revision;
                projection.replace(s.tenant, s.state);
                tracing::info!(tenant = %s.tenant, revision = s.revision, "applied a snapshot");
            }
            Event::Checkpoint(checkpoint) => {
                projection.vouch(Uuid::parse_str(&checkpoint.tenant_id)?, checkpoint.revision);
            }
            Event::CaughtUp(_) => {
                projection.set_synced();
                tracing::info!("caught up with the directory");
            }
        }
    }
    anyhow::bail!("the directory closed the feed")
}

fn uuid(field: &str, raw: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| anyhow::anyhow!("{field}: `{raw}` is not an id"))
}

/// A feed change in this service's terms (`None` for what it does not keep: the
/// tenant's own record, as every event names its tenant).
fn convert(change: pb::Change) -> anyhow::Result<Option<Change>> {
    let roles = |values: &[i32]| -> anyhow::Result<Vec<_>> {
        values
            .iter()
            .map(|v| role_from_proto(*v).map_err(anyhow::Error::from))
            .collect()
    };
    Ok(Some(
        match change
            .change
            .ok_or_else(|| anyhow::anyhow!("an empty change"))?
        {
            C::TenantUpserted(_) => return Ok(None),
            C::UserUpserted(user) => Change::UserUpserted {
                id: UserId(uuid("user.id", &user.id)?),
                roles: roles(&user.roles)?,
                suspended: user.state == pb::UserState::Suspended as i32,
            },
            C::UserDeleted(id) => Change::UserDeleted {
                id: UserId(uuid("user_deleted", &id)?),
            },
            C::GroupUpserted(group) => Change::GroupUpserted {
                id: GroupId(uuid("group.id", &group.id)?),
                parent: if group.parent_id.is_empty() {
                    None
                } else {
                    Some(GroupId(uuid("group.parent_id", &group.parent_id)?))
                },
                is_organization: group.is_organization,
                inherited: roles(
                    &group
                        .inherited_roles
                        .iter()
                        .map(|r| r.role)
                        .collect::<Vec<_>>(),
                )?,
            },
            C::GroupDeleted(id) => Change::GroupDeleted {
                id: GroupId(uuid("group_deleted", &id)?),
            },
            C::MembershipAdded(m) => Change::MembershipAdded {
                group: GroupId(uuid("membership.group_id", &m.group_id)?),
                user: UserId(uuid("membership.user_id", &m.user_id)?),
                join_revision: m.join_revision,
            },
            C::MembershipRemoved(m) => Change::MembershipRemoved {
                group: GroupId(uuid("membership.group_id", &m.group_id)?),
                user: UserId(uuid("membership.user_id", &m.user_id)?),
            },
            C::AdministratorsChanged(a) => Change::AdministratorsChanged {
                group: GroupId(uuid("administrators.group_id", &a.group_id)?),
                users: a
                    .user_ids
                    .iter()
                    .map(|u| uuid("administrators.user_ids", u).map(UserId))
                    .collect::<anyhow::Result<_>>()?,
            },
            C::InheritedRoleChanged(r) => Change::InheritedRoleChanged {
                group: GroupId(uuid("inherited_role.group_id", &r.group_id)?),
                tool: tool_from_proto(r.tool)?,
                role: if r.role == pb::Role::Unspecified as i32 {
                    None
                } else {
                    Some(role_from_proto(r.role)?)
                },
            },
            C::CatalogAssigned(c) => Change::CatalogAssigned {
                group: GroupId(uuid("catalog.group_id", &c.group_id)?),
                catalog: c.catalog_id,
            },
            C::CatalogUnassigned(c) => Change::CatalogUnassigned {
                group: GroupId(uuid("catalog.group_id", &c.group_id)?),
                catalog: c.catalog_id,
            },
        },
    ))
}
