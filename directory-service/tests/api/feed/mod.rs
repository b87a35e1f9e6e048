//! The change feed: snapshot then live, late commits delivered in order, many
//! writers across tenants, random disconnects, compaction, checkpoints, slow
//! subscribers and replicas. A subscriber here is a reference model that applies
//! the feed and checks, on every event, that each tenant's revisions come without
//! gap or repeat; its final state must equal a fresh snapshot of the database.
//!
//! Laid out by what a subscriber meets: `live.rs` the snapshot, live changes and
//! reconnects under concurrent writers; `edges.rs` retention, checkpoints, slow
//! and bad subscribers; `sizes.rs` change sets of every size against the message
//! and buffer limits; `replicas.rs` several servers on one database. This file
//! holds the subscriber model they share.

mod edges;
mod live;
mod replicas;
mod sizes;

pub(crate) use live::HeldWrite;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cohort_directory::domain::TenantId;
use cohort_directory::feed::{self, FeedError, FeedEvent, FeedSettings, Subscription};
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use futures::StreamExt;
use pb::change::Change as C;
use pb::watch_response::Event;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::{Code, Streaming};

use crate::helpers::{assert_error, spawn_replica, Backend, Tenant, TestApp};

const WAIT: Duration = Duration::from_secs(20);

/// One tenant's state as a subscriber rebuilds it from the feed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct TenantState {
    name: String,
    /// id -> (name, email, roles, state, etag)
    users: BTreeMap<String, (String, String, Vec<i32>, i32, String)>,
    /// id -> (name, parent, organization, inherited roles by tool)
    groups: BTreeMap<String, (String, String, bool, BTreeMap<i32, i32>)>,
    members: BTreeSet<(String, String)>,
    admins: BTreeMap<String, Vec<String>>,
    catalogs: BTreeSet<(String, String)>,
}

impl TenantState {
    fn apply(&mut self, change: C) {
        match change {
            C::TenantUpserted(t) => self.name = t.display_name,
            C::UserUpserted(u) => {
                self.users
                    .insert(u.id, (u.display_name, u.email, u.roles, u.state, u.etag));
            }
            C::UserDeleted(id) => {
                self.users.remove(&id);
                self.members.retain(|(_, u)| *u != id);
                for admins in self.admins.values_mut() {
                    admins.retain(|a| *a != id);
                }
                self.admins.retain(|_, a| !a.is_empty());
            }
            C::GroupUpserted(g) => {
                assert_eq!(
                    (g.member_count, g.subgroup_count),
                    (0, 0),
                    "counters are not part of the feed"
                );
                let inherited = g.inherited_roles.iter().map(|r| (r.tool, r.role)).collect();
                self.groups.insert(
                    g.id,
                    (g.display_name, g.parent_id, g.is_organization, inherited),
                );
            }
            C::GroupDeleted(id) => {
                self.groups.remove(&id);
                self.members.retain(|(g, _)| *g != id);
                self.admins.remove(&id);
                self.catalogs.retain(|(g, _)| *g != id);
            }
            C::MembershipAdded(m) => {
                self.members.insert((m.group_id, m.user_id));
            }
            C::MembershipRemoved(m) => {
                self.members.remove(&(m.group_id, m.user_id));
            }
            C::AdministratorsChanged(a) => {
                let mut ids = a.user_ids;
                ids.sort();
                if ids.is_empty() {
                    self.admins.remove(&a.group_id);
                } else {
                    self.admins.insert(a.group_id, ids);
                }
            }
            C::AdministratorsAdded(a) => {
                let set = self.admins.entry(a.group_id).or_default();
                set.extend(a.user_ids);
                set.sort();
                set.dedup();
            }
            C::AdministratorsRemoved(a) => {
                if let Some(set) = self.admins.get_mut(&a.group_id) {
                    set.retain(|id| !a.user_ids.contains(id));
                    if set.is_empty() {
                        self.admins.remove(&a.group_id);
                    }
                }
            }
            C::InheritedRoleChanged(r) => {
                let group = self
                    .groups
                    .get_mut(&r.group_id)
                    .expect("inherited role of a known group");
                if r.role == catalog_pb::Role::Unspecified as i32 {
                    group.3.remove(&r.tool);
                } else {
                    group.3.insert(r.tool, r.role);
                }
            }
            C::CatalogAssigned(c) => {
                self.catalogs.insert((c.group_id, c.catalog_id));
            }
            C::CatalogUnassigned(c) => {
                self.catalogs.remove(&(c.group_id, c.catalog_id));
            }
        }
    }
}

/// A subscriber: cursors and state per tenant, rebuilt from the feed.
#[derive(Debug, Default)]
struct Subscriber {
    cursors: BTreeMap<String, i64>,
    states: BTreeMap<String, TenantState>,
    /// The tenant whose snapshot is being received, and at which revision.
    in_snapshot: Option<(String, i64)>,
    /// The parts received so far of a change set sent in several.
    gathering: Option<pb::ChangeEvent>,
    /// Change sets that came in more than one part.
    split_sets: usize,
    /// The revision of the last snapshot applied.
    last_snapshot: i64,
    checkpoints: BTreeMap<String, i64>,
    applied_events: usize,
    /// How many streams said they had caught up.
    caught_up: usize,
}

impl Subscriber {
    fn request(&self, all_tenants: bool) -> pb::WatchRequest {
        pb::WatchRequest {
            cursors: self
                .cursors
                .iter()
                .map(|(t, r)| pb::TenantCursor {
                    tenant_id: t.clone(),
                    revision: *r,
                })
                .collect(),
            all_tenants,
        }
    }

    fn follow(&mut self, tenant: &str) {
        self.cursors.entry(tenant.to_owned()).or_insert(0);
    }

    /// Applies one message, checking the feed's promises.
    fn apply(&mut self, response: pb::WatchResponse) {
        let event = response.event.expect("an event");
        if self.gathering.is_some() {
            assert!(
                matches!(event, Event::Change(_)),
                "the parts of a change set come back to back"
            );
        }
        match event {
            Event::SnapshotBegin(begin) => {
                assert!(self.in_snapshot.is_none(), "snapshots do not nest");
                self.states
                    .insert(begin.tenant_id.clone(), TenantState::default());
                self.in_snapshot = Some((begin.tenant_id, begin.revision));
            }
            Event::SnapshotEnd(end) => {
                assert_eq!(
                    self.in_snapshot.take(),
                    Some((end.tenant_id.clone(), end.revision))
                );
                self.last_snapshot = end.revision;
                self.cursors.insert(end.tenant_id, end.revision);
            }
            Event::Change(mut event) => {
                if let Some(mut gathered) = self.gathering.take() {
                    assert_eq!(
                        (&gathered.tenant_id, gathered.revision),
                        (&event.tenant_id, event.revision),
                        "parts of one change set"
                    );
                    gathered.changes.append(&mut event.changes);
                    gathered.continued = event.continued;
                    event = gathered;
                    if !event.continued {
                        self.split_sets += 1;
                    }
                }
                if event.continued {
                    assert!(
                        self.in_snapshot.is_none(),
                        "snapshot pages are not continued"
                    );
                    self.gathering = Some(event);
                    return;
                }
                let state = self.states.entry(event.tenant_id.clone()).or_default();
                match &self.in_snapshot {
                    Some((tenant, revision)) => {
                        assert_eq!((tenant, *revision), (&event.tenant_id, event.revision))
                    }
                    None => {
                        let cursor = self.cursors.get(&event.tenant_id).copied().unwrap_or(0);
                        assert_eq!(
                            event.revision,
                            cursor + 1,
                            "tenant {}: gap or repeat",
                            event.tenant_id
                        );
                        if let Some(checkpoint) = self.checkpoints.get(&event.tenant_id) {
                            assert!(
                                event.revision > *checkpoint,
                                "an event at or below a checkpoint"
                            );
                        }
                        self.cursors.insert(event.tenant_id.clone(), event.revision);
                        self.applied_events += 1;
                    }
                }
                for change in event.changes {
                    state.apply(change.change.expect("a change"));
                }
            }
            Event::CaughtUp(_) => {
                assert!(self.in_snapshot.is_none());
                self.caught_up += 1;
            }
            Event::Checkpoint(checkpoint) => {
                assert!(self.in_snapshot.is_none());
                let cursor = self
                    .cursors
                    .get(&checkpoint.tenant_id)
                    .copied()
                    .unwrap_or(0);
                assert!(
                    checkpoint.revision <= cursor,
                    "a checkpoint ahead of what was sent"
                );
                self.checkpoints
                    .insert(checkpoint.tenant_id, checkpoint.revision);
            }
        }
    }

    /// Reads the stream until every tenant in `heads` has reached its head.
    async fn catch_up(
        &mut self,
        stream: &mut Streaming<pb::WatchResponse>,
        heads: &BTreeMap<String, i64>,
    ) {
        while heads
            .iter()
            .any(|(t, head)| self.cursors.get(t).copied().unwrap_or(0) < *head)
            || self.in_snapshot.is_some()
            || self.gathering.is_some()
        {
            self.apply(next(stream).await);
        }
    }
}

async fn next(stream: &mut Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("the feed delivered nothing in time")
        .expect("the feed failed")
        .expect("the feed ended")
}

async fn open(app: &TestApp, request: pb::WatchRequest) -> Streaming<pb::WatchResponse> {
    app.feed
        .clone()
        .watch(request)
        .await
        .expect("watch")
        .into_inner()
}

/// The state a fresh subscriber gets from a snapshot of the tenant now.
async fn snapshot_state(app: &TestApp, tenant: &str) -> (TenantState, i64) {
    let mut fresh = Subscriber::default();
    fresh.follow(tenant);
    let mut stream = open(app, fresh.request(false)).await;
    loop {
        fresh.apply(next(&mut stream).await);
        if fresh.cursors[tenant] > 0 && fresh.in_snapshot.is_none() {
            return (fresh.states.remove(tenant).unwrap(), fresh.cursors[tenant]);
        }
    }
}

async fn heads(app: &TestApp, tenants: &[String]) -> BTreeMap<String, i64> {
    let mut heads = BTreeMap::new();
    for tenant in tenants {
        let t = Tenant {
            id: tenant.clone(),
            admin_id: String::new(),
        };
        heads.insert(tenant.clone(), app.revision(&t).await);
    }
    heads
}

pub(crate) fn fast_feed() -> FeedSettings {
    FeedSettings {
        checkpoint_interval: Duration::from_millis(200),
        poll_interval: Duration::from_millis(500),
        batch_size: 7,
        snapshot_page_rows: 7,
        buffer: 4,
        send_timeout: Duration::from_millis(500),
        ..Default::default()
    }
}
