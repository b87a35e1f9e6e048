//! Follows the directory's change feed: every change set is appended to the stored
//! projection with its checkpoint in one transaction, and only then applied in
//! memory, so a restart resumes exactly where the service stopped. The stream is
//! reopened with backoff when it or the directory goes away, from the revisions
//! held.
//!
//! A snapshot streams: each part is applied to a fresh state (in bulk) and
//! written as pages of a new stored base as it arrives, with no whole-tenant
//! buffer; at the snapshot's end the indexes are built, the new base is made live
//! in one transaction, and the new state replaces the old one, which served
//! until then. A snapshot cut off midway leaves the old projection serving, and
//! its pages are removed by the next one.
//!
//! This is where the directory's proto types stop: changes are converted into
//! [`crate::domain::Change`].
//!
//! One file on purpose: the order of store-then-memory, snapshot parts and
//! reconnection is one state machine, read top to bottom.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use cohort_shared::convert::{role_from_proto, tool_from_proto};
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use cohort_shared::proto::directory::v1::change_feed_service_client::ChangeFeedServiceClient;
use futures::FutureExt;
use pb::change::Change as C;
use pb::watch_response::Event;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::compaction::{Compactor, PAGE_CHANGES};
use crate::domain::{Change, GroupId, Revision, TenantId, TenantState, UserId};
use crate::metrics::FollowerMetrics;
use crate::projection::Projection;
use crate::storage::{format, Appended, Base, Generation, ProjectionStore, StoreResult};
use crate::upstream::Upstream;

/// Page writes a snapshot keeps in flight while it reads on.
const PAGES_IN_FLIGHT: usize = 2;

/// What the follower works with.
#[derive(Clone)]
pub struct Follower {
    pub directory: Upstream,
    /// The largest feed message taken (`--max-message-bytes`, the setting the
    /// directory's side reads too): tonic's client default is 4 MiB whatever the
    /// directory was told.
    pub max_message_bytes: usize,
    pub store: Arc<dyn ProjectionStore>,
    pub projection: Arc<Projection>,
    pub compactor: Arc<Compactor>,
    pub metrics: FollowerMetrics,
}

/// A tenant snapshot being received.
struct Resync {
    tenant: TenantId,
    revision: Revision,
    /// The new state, in bulk mode until the end.
    state: TenantState,
    /// The new stored base.
    generation: Generation,
    /// Changes for the next page.
    page: Vec<Change>,
    seq: i64,
    changes: u64,
    writes: VecDeque<JoinHandle<StoreResult<()>>>,
    began: std::time::Instant,
}

impl Resync {
    /// Hands the gathered changes to a page write, keeping at most
    /// [`PAGES_IN_FLIGHT`] writes going.
    async fn flush(&mut self, store: &Arc<dyn ProjectionStore>) -> anyhow::Result<()> {
        if !self.page.is_empty() {
            let page = std::mem::take(&mut self.page);
            let (store, tenant, generation, seq) =
                (store.clone(), self.tenant, self.generation, self.seq);
            self.writes.push_back(tokio::spawn(async move {
                store.write_page(tenant, generation, seq, &page).await
            }));
            self.seq += 1;
        }
        while self.writes.len() > PAGES_IN_FLIGHT {
            let write = self.writes.pop_front().expect("more than none");
            write.await??;
        }
        Ok(())
    }

    async fn finish_writes(&mut self) -> anyhow::Result<()> {
        while let Some(write) = self.writes.pop_front() {
            write.await??;
        }
        Ok(())
    }
}

impl Drop for Resync {
    fn drop(&mut self) {
        // A snapshot cut off: its writes stop; what they wrote is removed by the
        // next base of the tenant.
        for write in &self.writes {
            write.abort();
        }
    }
}

/// The first parts of a change set sent in several.
struct Gathering {
    tenant: TenantId,
    revision: Revision,
    changes: Vec<Change>,
}

/// Follows the feed until `closing` turns true.
pub async fn follow(follower: Follower, mut closing: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let run = follow_once(&follower, &mut backoff);
        let stopped = tokio::select! {
            result = run => {
                if let Err(err) = result {
                    follower.metrics.feed_losses.inc();
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

async fn follow_once(follower: &Follower, backoff: &mut Duration) -> anyhow::Result<()> {
    let directory = &follower.directory;
    let projection = &follower.projection;
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
        .max_decoding_message_size(follower.max_message_bytes)
        .max_encoding_message_size(follower.max_message_bytes)
        .watch(request)
        .await?
        .into_inner();
    tracing::info!(directory = %directory.url, "following the directory's feed");
    projection.set_connected(true);
    let result = apply_stream(&mut stream, follower, backoff).await;
    projection.set_connected(false);
    result
}

/// Applies the feed's messages until it ends or fails.
async fn apply_stream(
    stream: &mut tonic::Streaming<pb::WatchResponse>,
    follower: &Follower,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let Follower {
        store,
        projection,
        compactor,
        ..
    } = follower;
    let mut resync: Option<Resync> = None;
    // The parts of a change set received so far: it is stored and applied only
    // whole, so no answer ever comes from half of one. A stream cut between
    // parts drops them; the directory sends the change set again, whole.
    let mut gathering: Option<Gathering> = None;
    // Whole live change sets received but not yet stored: those that arrive
    // together are stored with one commit (see `apply_ready`).
    let mut ready = ReadySets::default();
    loop {
        let message = if ready.sets.is_empty() {
            stream.message().await?
        } else {
            // Dropping `message()` unfinished loses nothing: the stream keeps
            // what it has read.
            match stream.message().now_or_never() {
                Some(message) => message?,
                None => {
                    apply_ready(follower, &mut ready).await?;
                    continue;
                }
            }
        };
        let Some(message) = message else { break };
        *backoff = Duration::from_millis(100);
        let Some(event) = message.event else { continue };
        if gathering.is_some() && !matches!(event, Event::Change(_)) {
            anyhow::bail!("a change set's parts were interrupted by another message");
        }
        // Anything but a live change set comes after what is ready: a checkpoint
        // vouches for it, a snapshot starts after it.
        if !(resync.is_none() && matches!(event, Event::Change(_))) {
            apply_ready(follower, &mut ready).await?;
        }
        match event {
            Event::SnapshotBegin(begin) => {
                let tenant = tenant_id(&begin.tenant_id)?;
                compactor.stop(tenant).await;
                let generation = store.begin_base(tenant).await?;
                resync = Some(Resync {
                    tenant,
                    revision: begin.revision,
                    state: TenantState::bulk(),
                    generation,
                    page: Vec::with_capacity(PAGE_CHANGES),
                    seq: 0,
                    changes: 0,
                    writes: VecDeque::new(),
                    began: std::time::Instant::now(),
                });
            }
            Event::Change(event) => {
                let tenant = tenant_id(&event.tenant_id)?;
                let changes: Vec<Change> = event
                    .changes
                    .into_iter()
                    .map(convert)
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .into_iter()
                    .flatten()
                    .collect();
                match &mut resync {
                    Some(r) if r.tenant == tenant => {
                        anyhow::ensure!(
                            changes.iter().all(format::is_addition),
                            "a snapshot holds only additions"
                        );
                        for change in &changes {
                            r.state.apply(change.clone());
                        }
                        r.changes += changes.len() as u64;
                        r.page.extend(changes);
                        if r.page.len() >= PAGE_CHANGES {
                            r.flush(store).await?;
                        }
                    }
                    Some(_) => anyhow::bail!("a change of another tenant inside a snapshot"),
                    None => {
                        let changes = match gathering.take() {
                            Some(mut gathered) => {
                                anyhow::ensure!(
                                    gathered.tenant == tenant
                                        && gathered.revision == event.revision,
                                    "a change set's parts were interrupted by another change set"
                                );
                                gathered.changes.extend(changes);
                                gathered.changes
                            }
                            None => changes,
                        };
                        if event.continued {
                            gathering = Some(Gathering {
                                tenant,
                                revision: event.revision,
                                changes,
                            });
                            continue;
                        }
                        ready.sets.push(Appended {
                            tenant,
                            revision: event.revision,
                            changes,
                        });
                        ready.committed.push(
                            event
                                .commit_time
                                .and_then(|t| std::time::SystemTime::try_from(t).ok()),
                        );
                        let waiting: usize = ready.sets.iter().map(|set| set.changes.len()).sum();
                        if ready.sets.len() >= MAX_READY || waiting >= MAX_READY_CHANGES {
                            apply_ready(follower, &mut ready).await?;
                        }
                    }
                }
            }
            Event::SnapshotEnd(end) => {
                let Some(mut r) = resync.take() else {
                    anyhow::bail!("a snapshot end without its beginning")
                };
                anyhow::ensure!(
                    r.tenant.to_string() == end.tenant_id && r.revision == end.revision,
                    "mismatched snapshot end"
                );
                r.flush(store).await?;
                r.finish_writes().await?;
                let mut state = std::mem::take(&mut r.state);
                let state = tokio::task::spawn_blocking(move || {
                    state.finish_bulk();
                    state
                })
                .await?;
                store
                    .commit_base(
                        r.tenant,
                        r.generation,
                        Base::Snapshot {
                            revision: r.revision,
                        },
                    )
                    .await?;
                let mut state = state;
                state.revision = r.revision;
                let size = state.size();
                projection.replace(r.tenant, state);
                compactor.based(r.tenant, r.changes);
                follower.metrics.snapshots.inc();
                follower
                    .metrics
                    .snapshot_seconds
                    .observe(r.began.elapsed().as_secs_f64());
                tracing::info!(
                    tenant = %r.tenant,
                    revision = r.revision,
                    users = size.users,
                    groups = size.groups,
                    memberships = size.memberships,
                    "applied a snapshot"
                );
            }
            Event::Checkpoint(checkpoint) => {
                projection.vouch(tenant_id(&checkpoint.tenant_id)?, checkpoint.revision);
            }
            Event::CaughtUp(_) => {
                projection.set_synced();
                tracing::info!("caught up with the directory");
            }
        }
    }
    apply_ready(follower, &mut ready).await?;
    anyhow::bail!("the directory closed the feed")
}

/// At most this many change sets, and about this many changes, are stored with
/// one commit: what waits in memory for it stays small (a change set of a bulk
/// import holds a few thousand changes).
const MAX_READY: usize = 256;
const MAX_READY_CHANGES: usize = 16_384;

/// Stores the ready change sets (one commit), then applies them in memory in
/// order: nothing is answered from a change set before it is stored.
async fn apply_ready(follower: &Follower, ready: &mut ReadySets) -> anyhow::Result<()> {
    if ready.sets.is_empty() {
        return Ok(());
    }
    follower.store.append_all(&ready.sets).await?;
    for set in ready.sets.drain(..) {
        let changes = set.changes.len();
        follower
            .projection
            .apply(set.tenant, set.revision, set.changes);
        follower.projection.vouch(set.tenant, set.revision);
        follower.compactor.appended(set.tenant, changes);
    }
    let applied = std::time::SystemTime::now();
    for committed in ready.committed.drain(..).flatten() {
        // Clocks of two hosts: a commit "after" now counts as no delay.
        let delay = applied.duration_since(committed).unwrap_or_default();
        follower
            .metrics
            .propagation_seconds
            .observe(delay.as_secs_f64());
    }
    Ok(())
}

/// Live change sets received whole and not yet stored, with their commit times
/// (for the propagation metric).
#[derive(Default)]
struct ReadySets {
    sets: Vec<Appended>,
    committed: Vec<Option<std::time::SystemTime>>,
}

fn tenant_id(raw: &str) -> anyhow::Result<TenantId> {
    uuid("tenant_id", raw).map(TenantId)
}

fn uuid(field: &str, raw: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| anyhow::anyhow!("{field}: `{raw}` is not an id"))
}

fn administrator_ids(raw: &[String]) -> anyhow::Result<Vec<UserId>> {
    raw.iter()
        .map(|u| uuid("administrators.user_ids", u).map(UserId))
        .collect()
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
                users: administrator_ids(&a.user_ids)?,
            },
            C::AdministratorsAdded(a) => Change::AdministratorsAdded {
                group: GroupId(uuid("administrators.group_id", &a.group_id)?),
                users: administrator_ids(&a.user_ids)?,
            },
            C::AdministratorsRemoved(a) => Change::AdministratorsRemoved {
                group: GroupId(uuid("administrators.group_id", &a.group_id)?),
                users: administrator_ids(&a.user_ids)?,
            },
            C::InheritedRoleChanged(r) => Change::InheritedRoleChanged {
                group: GroupId(uuid("inherited_role.group_id", &r.group_id)?),
                tool: tool_from_proto(r.tool)?,
                role: if r.role == catalog_pb::Role::Unspecified as i32 {
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
