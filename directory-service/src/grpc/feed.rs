//! The `ChangeFeedService`: parses a `Watch` request into a feed subscription and
//! converts the feed's events to proto.
//!
//! One file on purpose: the conversions are the feed's half of the contract
//! (every change kind to its proto message), read next to the request they
//! answer; the feed itself (ordering, resumption, limits) is `crate::feed`.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use cohort_shared::auth::Principal;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use cohort_shared::proto::directory::v1::change_feed_service_server::ChangeFeedService;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::convert;
use super::error::ApiError;
use crate::domain::{Change, ChangeSet, TenantId, ValidationError};
use crate::feed::{self, FeedError, FeedEvent, FeedSettings, Places, Subscription};
use crate::metrics::DirectoryMetrics;
use crate::storage::Outbox;

pub struct FeedApi {
    store: Arc<dyn Outbox>,
    settings: FeedSettings,
    /// Turns true at shutdown; open streams then end.
    closing: tokio::sync::watch::Receiver<bool>,
    /// The open streams' places, each held by its watcher task.
    places: Places,
    /// Counts what the streams send, when metrics are served.
    metrics: Option<DirectoryMetrics>,
}

impl FeedApi {
    pub fn new(
        store: Arc<dyn Outbox>,
        settings: FeedSettings,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        FeedApi {
            store,
            places: Places::new(&settings),
            settings,
            closing,
            metrics: None,
        }
    }

    /// Counts the messages its streams send in `metrics`.
    pub fn with_metrics(mut self, metrics: Option<DirectoryMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Its streams' places (for the metrics of open streams).
    pub fn places(&self) -> Places {
        self.places.clone()
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ChangeFeedService for FeedApi {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let principal = Principal::of(&request);
        if request.get_ref().all_tenants {
            principal
                .check_unrestricted("following all tenants needs an unrestricted credential")?;
        }
        for cursor in &request.get_ref().cursors {
            principal.check_tenant(&cursor.tenant_id)?;
        }
        let subscription = parse_subscription(request.into_inner()).map_err(ApiError::from)?;
        let sent = self
            .metrics
            .as_ref()
            .map(|m| m.feed_messages(&principal.name));
        let place = self
            .places
            .admit(&principal.name, subscription.all_tenants)
            .map_err(ApiError::from)?;
        let events = feed::watch(
            self.store.clone(),
            self.settings.clone(),
            subscription,
            self.closing.clone(),
            Some(place),
        )
        .await
        .map_err(feed_status)?;
        let stream = events.map(move |event| {
            if let (Some(sent), Ok(_)) = (&sent, &event) {
                sent.inc();
            }
            event.map(watch_response).map_err(feed_status)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The most tenants a stream may name without `all_tenants`: a subscriber of more
/// is better served by `all_tenants`, whose cursors (resume points, one per tenant
/// the subscriber holds, as many as the directory has) only the message size
/// bounds. Every named tenant is checked against the database when a stream opens.
pub const MAX_CURSORS: usize = 10_000;

fn parse_subscription(req: pb::WatchRequest) -> Result<Subscription, ValidationError> {
    if req.cursors.is_empty() && !req.all_tenants {
        return Err(ValidationError::new(
            "cursors",
            "name at least one tenant, or set all_tenants",
        ));
    }
    if !req.all_tenants && req.cursors.len() > MAX_CURSORS {
        return Err(ValidationError::new(
            "cursors",
            format!(
                "names {} tenants; at most {MAX_CURSORS} per stream (set all_tenants to follow every tenant)",
                req.cursors.len()
            ),
        ));
    }
    let mut cursors = BTreeMap::new();
    for (i, cursor) in req.cursors.iter().enumerate() {
        let tenant = TenantId::parse(&format!("cursors[{i}].tenant_id"), &cursor.tenant_id)?;
        if cursor.revision < 0 {
            return Err(ValidationError::new(
                format!("cursors[{i}].revision"),
                "must not be negative",
            ));
        }
        if cursors.insert(tenant, cursor.revision).is_some() {
            return Err(ValidationError::new(
                format!("cursors[{i}].tenant_id"),
                "names a tenant twice",
            ));
        }
    }
    Ok(Subscription {
        cursors,
        all_tenants: req.all_tenants,
    })
}

fn feed_status(err: FeedError) -> Status {
    ApiError::from(err).into()
}

fn watch_response(event: FeedEvent) -> pb::WatchResponse {
    use pb::watch_response::Event;
    let event = match event {
        FeedEvent::Changes { set, continued } => Event::Change(change_event(&set, continued)),
        FeedEvent::SnapshotBegin { tenant, revision } => Event::SnapshotBegin(pb::SnapshotBegin {
            tenant_id: tenant.to_string(),
            revision,
        }),
        FeedEvent::SnapshotPart {
            tenant,
            revision,
            changes,
        } => Event::Change(pb::ChangeEvent {
            tenant_id: tenant.to_string(),
            revision,
            commit_time: None,
            actor: String::new(),
            changes: changes.iter().map(change).collect(),
            continued: false,
        }),
        FeedEvent::SnapshotEnd { tenant, revision } => Event::SnapshotEnd(pb::SnapshotEnd {
            tenant_id: tenant.to_string(),
            revision,
        }),
        FeedEvent::CaughtUp { time } => Event::CaughtUp(pb::CaughtUp {
            time: Some(convert::timestamp(time)),
        }),
        FeedEvent::Checkpoint {
            tenant,
            revision,
            time,
        } => Event::Checkpoint(pb::Checkpoint {
            tenant_id: tenant.to_string(),
            revision,
            time: Some(convert::timestamp(time)),
        }),
    };
    pb::WatchResponse { event: Some(event) }
}

fn change_event(set: &ChangeSet, continued: bool) -> pb::ChangeEvent {
    pb::ChangeEvent {
        tenant_id: set.tenant_id.to_string(),
        revision: set.revision,
        commit_time: Some(convert::timestamp(set.commit_time)),
        actor: set.actor.clone(),
        changes: set.changes.iter().map(change).collect(),
        continued,
    }
}

fn change(change: &Change) -> pb::Change {
    use pb::change::Change as C;
    let inner = match change {
        Change::TenantCreated { tenant } => C::TenantUpserted(convert::tenant(tenant)),
        Change::UserUpserted { user } => C::UserUpserted(convert::user(user)),
        Change::UserDeleted { user_id } => C::UserDeleted(user_id.to_string()),
        // Counters change with memberships without an event of their own, so they
        // are left out of the group's state in the feed.
        Change::GroupUpserted { group } => C::GroupUpserted(pb::Group {
            subgroup_count: 0,
            member_count: 0,
            administrator_count: 0,
            ..convert::group(group)
        }),
        Change::GroupDeleted { group_id } => C::GroupDeleted(group_id.to_string()),
        Change::MembershipAdded { membership } => {
            C::MembershipAdded(convert::membership(membership))
        }
        Change::MembershipRemoved { group_id, user_id } => {
            C::MembershipRemoved(pb::MembershipRemoved {
                group_id: group_id.to_string(),
                user_id: user_id.to_string(),
            })
        }
        Change::AdministratorsChanged {
            group_id,
            administrator_ids,
        } => C::AdministratorsChanged(pb::AdministratorSet {
            group_id: group_id.to_string(),
            user_ids: convert::ids(administrator_ids),
        }),
        Change::AdministratorsAdded {
            group_id,
            administrator_ids,
        } => C::AdministratorsAdded(pb::AdministratorIds {
            group_id: group_id.to_string(),
            user_ids: convert::ids(administrator_ids),
        }),
        Change::AdministratorsRemoved {
            group_id,
            administrator_ids,
        } => C::AdministratorsRemoved(pb::AdministratorIds {
            group_id: group_id.to_string(),
            user_ids: convert::ids(administrator_ids),
        }),
        Change::InheritedRoleSet {
            group_id,
            tool,
            role,
        } => C::InheritedRoleChanged(pb::InheritedRoleChange {
            group_id: group_id.to_string(),
            tool: catalog_pb::Tool::from(*tool) as i32,
            role: catalog_pb::Role::from(*role) as i32,
        }),
        Change::InheritedRoleCleared { group_id, tool } => {
            C::InheritedRoleChanged(pb::InheritedRoleChange {
                group_id: group_id.to_string(),
                tool: catalog_pb::Tool::from(*tool) as i32,
                role: catalog_pb::Role::Unspecified as i32,
            })
        }
        Change::CatalogAssigned {
            group_id,
            catalog_id,
        } => C::CatalogAssigned(pb::CatalogAssignment {
            group_id: group_id.to_string(),
            catalog_id: catalog_id.as_str().to_owned(),
            assign_time: None,
        }),
        Change::CatalogUnassigned {
            group_id,
            catalog_id,
        } => C::CatalogUnassigned(pb::CatalogUnassigned {
            group_id: group_id.to_string(),
            catalog_id: catalog_id.as_str().to_owned(),
        }),
    };
    pb::Change {
        change: Some(inner),
    }
}

#[cfg(test)]
mod tests {
    //! The feed cuts its messages by `feed::parts`' size bounds; these hold the
    //! conversion above to them, at the widest values the domain allows.
    use chrono::{TimeZone, Utc};
    use cohort_shared::catalog::{Role, RoleSet, Tool};
    use prost::Message;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{
        CatalogId, DisplayName, Email, Group, GroupId, Membership, Tenant, User, UserId, UserState,
    };
    use crate::feed::parts::{change_bytes, event_bytes};

    fn widest() -> Vec<Change> {
        let tenant_id = TenantId(Uuid::new_v4());
        let group_id = GroupId(Uuid::new_v4());
        // 200 characters of 4 bytes each: the longest name.
        let name = DisplayName::parse("name", &"\u{1D518}".repeat(200)).unwrap();
        let email = Email::parse("email", &format!("{}@example.com", "x".repeat(242))).unwrap();
        let time = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap()
            + chrono::Duration::nanoseconds(999_999_999);
        let catalog_id = CatalogId::parse("catalog", &"c".repeat(128)).unwrap();
        let ids: Vec<UserId> = (0..1000).map(|_| UserId(Uuid::new_v4())).collect();
        vec![
            Change::TenantCreated {
                tenant: Tenant {
                    id: tenant_id,
                    display_name: name.clone(),
                    revision: i64::MAX,
                    create_time: time,
                },
            },
            Change::UserUpserted {
                user: User {
                    id: UserId(Uuid::new_v4()),
                    tenant_id,
                    display_name: name.clone(),
                    email,
                    roles: RoleSet::from_stored(Role::ALL).unwrap(),
                    state: UserState::Suspended,
                    create_time: time,
                    update_time: time,
                    revision: i64::MIN,
                },
            },
            Change::UserDeleted { user_id: ids[0] },
            Change::GroupUpserted {
                group: Group {
                    id: group_id,
                    tenant_id,
                    display_name: name,
                    parent_id: Some(GroupId(Uuid::new_v4())),
                    is_organization: true,
                    subgroup_count: i64::MAX,
                    member_count: i64::MAX,
                    administrator_count: i64::MAX,
                    inherited_roles: Tool::ALL
                        .iter()
                        .map(|t| (*t, *t.roles().last().unwrap()))
                        .collect(),
                    create_time: time,
                    update_time: time,
                    revision: i64::MIN,
                },
            },
            Change::GroupDeleted { group_id },
            Change::MembershipAdded {
                membership: Membership {
                    group_id,
                    user_id: ids[1],
                    join_revision: i64::MIN,
                    join_time: time,
                },
            },
            Change::MembershipRemoved {
                group_id,
                user_id: ids[2],
            },
            Change::AdministratorsChanged {
                group_id,
                administrator_ids: ids.clone(),
            },
            Change::AdministratorsAdded {
                group_id,
                administrator_ids: ids[..1].to_vec(),
            },
            Change::AdministratorsRemoved {
                group_id,
                administrator_ids: Vec::new(),
            },
            Change::InheritedRoleSet {
                group_id,
                tool: Tool::Share,
                role: Role::ShareAdmin,
            },
            Change::InheritedRoleCleared {
                group_id,
                tool: Tool::Lms,
            },
            Change::CatalogAssigned {
                group_id,
                catalog_id: catalog_id.clone(),
            },
            Change::CatalogUnassigned {
                group_id,
                catalog_id,
            },
        ]
    }

    #[test]
    fn no_change_is_larger_on_the_wire_than_its_bound() {
        let changes = widest();
        for c in &changes {
            let encoded =
                change(c).encoded_len() + 1 + prost::length_delimiter_len(change(c).encoded_len());
            assert!(
                encoded <= change_bytes(c),
                "{encoded} > {} for {c:?}",
                change_bytes(c)
            );
        }
        let set = ChangeSet {
            tenant_id: TenantId(Uuid::new_v4()),
            revision: i64::MIN,
            commit_time: Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            actor: "an actor with a long name ".repeat(10),
            changes,
        };
        let event = FeedEvent::Changes {
            set,
            continued: true,
        };
        let message = watch_response(event.clone()).encoded_len();
        assert!(
            message <= event_bytes(&event),
            "{message} > {}",
            event_bytes(&event)
        );
    }
}
