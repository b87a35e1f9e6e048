//! The change feed: snapshot then live, late commits delivered in order, many
//! writers across tenants, random disconnects, compaction, checkpoints, slow
//! subscribers and replicas. A subscriber here is a reference model that applies
//! the feed and checks, on every event, that each tenant's revisions come without
//! gap or repeat; its final state must equal a fresh snapshot of the database.

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

async fn the_feed_starts_with_a_snapshot_then_goes_live(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let mo = app.user(&t, "Mo").await;
    app.add_members(&t, &org, &[&mo]).await.unwrap();

    let mut subscriber = Subscriber::default();
    subscriber.follow(&t.id);
    let mut stream = open(app, subscriber.request(false)).await;
    let first = next(&mut stream).await;
    assert!(
        matches!(&first.event, Some(Event::SnapshotBegin(b)) if b.revision == 4),
        "{first:?}"
    );
    subscriber.apply(first);
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    assert_eq!(
        subscriber.applied_events, 0,
        "the snapshot covered everything so far"
    );
    let state = &subscriber.states[&t.id];
    assert_eq!(state.users.len(), 2);
    assert!(state.members.contains(&(org.clone(), mo.clone())));

    let jo = app.user(&t, "Jo").await;
    app.add_members(&t, &org, &[&jo]).await.unwrap();
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    assert_eq!(
        subscriber.applied_events, 2,
        "live changes follow the snapshot, from its revision + 1"
    );
    assert_eq!(subscriber.states[&t.id], snapshot_state(app, &t.id).await.0);
}

async fn a_transaction_that_commits_late_is_still_delivered_in_order(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let mut subscriber = Subscriber::default();
    subscriber.follow(&t.id);
    let mut stream = open(app, subscriber.request(false)).await;
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    let before = subscriber.cursors[&t.id];

    // A writer takes its revision, then holds its transaction open.
    let tenant_id = uuid::Uuid::parse_str(&t.id).unwrap();
    let (held, held_revision) = HeldWrite::open(app, tenant_id).await;
    assert_eq!(held_revision, before + 1);

    // Later writers commit behind it (they wait for the tenant).
    let mut writers = Vec::new();
    for i in 0..5 {
        let mut client = app.client();
        let (tenant, group) = (t.id.clone(), org.clone());
        writers.push(tokio::spawn(async move {
            client
                .create_group(pb::CreateGroupRequest {
                    tenant_id: tenant,
                    display_name: format!("Late {i}"),
                    parent_id: group,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .revision
        }));
    }
    // Nothing past the held revision may be delivered while it is open (checkpoints
    // may come: they vouch only for what was already sent).
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(message) = tokio::time::timeout_at(quiet_until, stream.message()).await {
        let message = message.unwrap().unwrap();
        assert!(
            matches!(
                message.event,
                Some(Event::Checkpoint(_) | Event::CaughtUp(_))
            ),
            "delivered while revision {held_revision} was open: {message:?}"
        );
        subscriber.apply(message);
    }

    held.commit(tenant_id, held_revision).await;
    let mut committed = Vec::new();
    for writer in writers {
        committed.push(writer.await.unwrap());
    }
    committed.sort();
    assert_eq!(
        committed,
        ((held_revision + 1)..=(held_revision + 5)).collect::<Vec<_>>()
    );

    // The late commit arrives first, then the others, each once, in order. A
    // checkpoint may still come before it (a tick of the checkpoint interval),
    // vouching only for what was sent before the held revision.
    let mut first = next(&mut stream).await;
    while let Some(Event::Checkpoint(checkpoint)) = &first.event {
        assert!(
            checkpoint.revision < held_revision,
            "a checkpoint vouched for the held revision before its change: {first:?}"
        );
        subscriber.apply(first);
        first = next(&mut stream).await;
    }
    assert!(
        matches!(&first.event, Some(Event::Change(e)) if e.revision == held_revision && e.actor == "held"),
        "{first:?}"
    );
    subscriber.apply(first);
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    assert_eq!(subscriber.cursors[&t.id], held_revision + 5);
}

/// A write transaction that took its revision and stays open until committed,
/// as a slow writer would.
pub(crate) enum HeldWrite {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

const TAKE_REVISION: &str =
    "UPDATE tenants SET revision = revision + 1 WHERE id = $1 RETURNING revision";
const WRITE_EVENT: &str =
    "INSERT INTO change_events (tenant_id, revision, commit_time, actor, changes) VALUES ($1, $2, $3, 'held', $4)";

impl HeldWrite {
    pub(crate) async fn open(app: &TestApp, tenant: uuid::Uuid) -> (HeldWrite, i64) {
        match app.backend {
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
                let mut tx = pool.begin().await.unwrap();
                let revision = sqlx::query_scalar(TAKE_REVISION)
                    .bind(tenant)
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
                (HeldWrite::Postgres(tx), revision)
            }
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
                let mut tx = pool.begin().await.unwrap();
                let revision = sqlx::query_scalar(TAKE_REVISION)
                    .bind(tenant)
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
                (HeldWrite::Sqlite(tx), revision)
            }
        }
    }

    pub(crate) async fn commit(self, tenant: uuid::Uuid, revision: i64) {
        let no_changes = sqlx::types::Json(Vec::<()>::new());
        match self {
            HeldWrite::Postgres(mut tx) => {
                sqlx::query(WRITE_EVENT)
                    .bind(tenant)
                    .bind(revision)
                    .bind(chrono::Utc::now())
                    .bind(no_changes)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
            HeldWrite::Sqlite(mut tx) => {
                sqlx::query(WRITE_EVENT)
                    .bind(tenant)
                    .bind(revision)
                    .bind(chrono::Utc::now())
                    .bind(no_changes)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        }
    }
}

/// Random writes by several writers over several tenants.
async fn write_randomly(app: &TestApp, tenants: &[Tenant], writer: u64, ops: usize) {
    let mut rng = StdRng::seed_from_u64(writer);
    let mut client = app.client();
    for op in 0..ops {
        let t = &tenants[rng.random_range(0..tenants.len())];
        let groups = client
            .list_groups(pb::ListGroupsRequest {
                tenant_id: t.id.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .groups;
        let users = client
            .list_users(pb::ListUsersRequest {
                tenant_id: t.id.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .users;
        let group =
            (!groups.is_empty()).then(|| groups[rng.random_range(0..groups.len())].id.clone());
        let user = users[rng.random_range(0..users.len())].id.clone();
        let name = format!("w{writer}-{op}");
        // Refusals (name clashes, ineligible administrators, races with deletions)
        // are part of the game; anything else is a failure.
        let result = match (rng.random_range(0..9), group) {
            (0, _) | (_, None) => client
                .create_group(pb::CreateGroupRequest {
                    tenant_id: t.id.clone(),
                    display_name: name,
                    is_organization: true,
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            (1, Some(g)) => client
                .create_group(pb::CreateGroupRequest {
                    tenant_id: t.id.clone(),
                    display_name: name,
                    parent_id: g,
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            (2, _) => client
                .create_user(pb::CreateUserRequest {
                    tenant_id: t.id.clone(),
                    display_name: name.clone(),
                    email: format!("{name}@feed.test"),
                    roles: vec![catalog_pb::Role::GlobalAdminGroupAdministrator as i32],
                    ..Default::default()
                })
                .await
                .map(|_| ()),
            (3 | 4, Some(g)) => client
                .add_group_members(pb::AddGroupMembersRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: vec![user],
                })
                .await
                .map(|_| ()),
            (5, Some(g)) => client
                .remove_group_members(pb::RemoveGroupMembersRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: vec![user],
                })
                .await
                .map(|_| ()),
            (6, Some(g)) => client
                .add_group_administrators(pb::AddGroupAdministratorsRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: vec![user],
                })
                .await
                .map(|_| ()),
            (7, Some(g)) => client
                .set_inherited_role(pb::SetInheritedRoleRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    role: catalog_pb::Role::LmsValidator as i32,
                    etag: String::new(),
                })
                .await
                .map(|_| ()),
            (_, Some(g)) => client
                .delete_group(pb::DeleteGroupRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    cascade: true,
                    etag: String::new(),
                })
                .await
                .map(|_| ()),
        };
        if let Err(status) = result {
            let expected = [
                Code::NotFound,
                Code::AlreadyExists,
                Code::FailedPrecondition,
            ];
            assert!(
                expected.contains(&status.code()),
                "writer {writer} op {op}: {status:?}"
            );
        }
    }
}

async fn concurrent_writers_across_tenants_reach_a_subscriber_exactly(app: &TestApp) {
    let tenants = vec![app.tenant().await, app.tenant().await, app.tenant().await];
    let ids: Vec<String> = tenants.iter().map(|t| t.id.clone()).collect();
    let mut subscriber = Subscriber::default();
    let mut stream = open(app, subscriber.request(true)).await;

    let writes = async {
        let writers: Vec<_> = (0..4)
            .map(|w| write_randomly(app, &tenants, w, 40))
            .collect();
        futures::future::join_all(writers).await;
    };
    let reads = async {
        // Apply while the writers run, until they are done.
        for _ in 0..100 {
            subscriber.apply(next(&mut stream).await);
        }
    };
    tokio::join!(writes, reads);
    subscriber
        .catch_up(&mut stream, &heads(app, &ids).await)
        .await;
    for tenant in &ids {
        let (expected, revision) = snapshot_state(app, tenant).await;
        assert_eq!(subscriber.cursors[tenant], revision);
        assert_eq!(subscriber.states[tenant], expected, "tenant {tenant}");
    }
}

async fn a_subscriber_that_reconnects_at_random_points_ends_in_the_same_state(app: &TestApp) {
    let tenants = vec![app.tenant().await, app.tenant().await];
    let ids: Vec<String> = tenants.iter().map(|t| t.id.clone()).collect();
    let mut subscriber = Subscriber::default();
    for id in &ids {
        subscriber.follow(id);
    }
    let mut rng = StdRng::seed_from_u64(7);
    let writes = async {
        let writers: Vec<_> = (0..3)
            .map(|w| write_randomly(app, &tenants, 100 + w, 30))
            .collect();
        futures::future::join_all(writers).await;
    };
    let reads = async {
        for _ in 0..12 {
            let mut stream = open(app, subscriber.request(false)).await;
            for _ in 0..rng.random_range(1..12) {
                subscriber.apply(next(&mut stream).await);
            }
            // Parts of a change set are dropped: it comes again, whole.
            subscriber.gathering = None;
            // Drop mid-snapshot too: the next stream starts that snapshot over.
            if let Some((tenant, _)) = subscriber.in_snapshot.take() {
                // Its state was dropped at the snapshot's start: it needs a whole one.
                subscriber.states.remove(&tenant);
                subscriber.cursors.insert(tenant, 0);
            }
        }
    };
    tokio::join!(writes, reads);
    let mut stream = open(app, subscriber.request(false)).await;
    subscriber
        .catch_up(&mut stream, &heads(app, &ids).await)
        .await;
    for tenant in &ids {
        assert_eq!(
            subscriber.states[tenant],
            snapshot_state(app, tenant).await.0,
            "tenant {tenant}"
        );
    }
}

async fn a_cursor_older_than_the_retention_gets_a_snapshot(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let mut subscriber = Subscriber::default();
    subscriber.follow(&t.id);
    let mut stream = open(app, subscriber.request(false)).await;
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    drop(stream);

    for i in 0..3 {
        let user = app.user(&t, &format!("U{i}")).await;
        app.add_members(&t, &org, &[&user]).await.unwrap();
    }
    let compacted = app
        .store
        .compact_changes(chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert!(compacted >= 8);

    let mut stream = open(app, subscriber.request(false)).await;
    let first = next(&mut stream).await;
    assert!(
        matches!(first.event, Some(Event::SnapshotBegin(_))),
        "a compacted cursor restarts from a snapshot: {first:?}"
    );
    subscriber.apply(first);
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    assert_eq!(subscriber.states[&t.id].members.len(), 3);

    // A cursor from the future (a restored database) also starts over.
    let mut ahead = Subscriber::default();
    ahead.cursors.insert(t.id.clone(), 10_000);
    let mut stream = open(app, ahead.request(false)).await;
    assert!(matches!(
        next(&mut stream).await.event,
        Some(Event::SnapshotBegin(_))
    ));
}

async fn idle_streams_receive_checkpoints(app: &TestApp) {
    let t = app.tenant().await;
    let mut subscriber = Subscriber::default();
    subscriber.follow(&t.id);
    let mut stream = open(app, subscriber.request(false)).await;
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    let mut checkpoints = 0;
    while checkpoints < 3 {
        let message = next(&mut stream).await;
        if !matches!(message.event, Some(Event::CaughtUp(_))) {
            assert!(
                matches!(&message.event, Some(Event::Checkpoint(c)) if c.revision == 1 && c.time.is_some()),
                "{message:?}"
            );
            checkpoints += 1;
        }
        subscriber.apply(message);
    }
    assert_eq!(subscriber.caught_up, 1, "caught up once per stream");
}

async fn a_subscriber_that_stops_reading_is_cut_off_after_its_buffer(app: &TestApp) {
    // At the feed itself, below gRPC (whose HTTP/2 windows buffer a little more, but
    // also only a bounded amount): the watcher reads ahead only what fits the buffer.
    let t = app.tenant().await;
    for i in 0..40 {
        app.create_top_level(&t, &format!("G{i}")).await;
    }
    let settings = super::feed::fast_feed();
    let tenant = TenantId(uuid::Uuid::parse_str(&t.id).unwrap());
    let subscription = Subscription {
        cursors: [(tenant, 1)].into(),
        all_tenants: false,
    };
    let (_closing, closing_signal) = tokio::sync::watch::channel(false);
    let places = feed::Places::new(&FeedSettings {
        max_streams: 1,
        reserved_streams: 0,
        ..Default::default()
    });
    let stream = feed::watch(
        app.store.clone(),
        settings.clone(),
        subscription,
        closing_signal,
        Some(places.admit("slow", false).unwrap()),
    )
    .await
    .unwrap();
    tokio::pin!(stream);
    // Read nothing for longer than the send timeout.
    tokio::time::sleep(settings.send_timeout * 3).await;
    assert!(
        places.admit("next", false).is_ok(),
        "the stream's place is free once it is cut off, while its subscriber still holds it"
    );
    let mut received = Vec::new();
    while let Some(item) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the stream answers")
    {
        received.push(item);
    }
    let (last, delivered) = received.split_last().expect("something was delivered");
    assert!(
        matches!(last, Err(FeedError::TooSlow(_))),
        "the stream ends saying why: {last:?}"
    );
    assert!(delivered.iter().all(Result::is_ok));
    assert!(
        delivered.len() <= settings.buffer + 1,
        "read ahead {} messages with a buffer of {}",
        delivered.len(),
        settings.buffer
    );
    let Some(Ok(FeedEvent::Changes {
        set: resume_after,
        continued: false,
    })) = delivered.last()
    else {
        panic!("{delivered:?}")
    };

    // The subscriber resumes from its cursor and loses nothing.
    let mut subscriber = Subscriber::default();
    subscriber
        .cursors
        .insert(t.id.clone(), resume_after.revision);
    let mut stream = open(app, subscriber.request(false)).await;
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    assert_eq!(subscriber.applied_events as i64, 41 - resume_after.revision);
}

async fn bad_watch_requests_are_refused(app: &TestApp) {
    let t = app.tenant().await;
    let mut feed = app.feed.clone();
    assert_error(
        feed.watch(pb::WatchRequest::default()).await,
        Code::InvalidArgument,
        Some("cursors"),
    );
    let bad_id = pb::WatchRequest {
        cursors: vec![pb::TenantCursor {
            tenant_id: "x".into(),
            revision: 0,
        }],
        all_tenants: false,
    };
    assert_error(
        feed.watch(bad_id).await,
        Code::InvalidArgument,
        Some("cursors[0].tenant_id"),
    );
    let negative = pb::WatchRequest {
        cursors: vec![pb::TenantCursor {
            tenant_id: t.id.clone(),
            revision: -1,
        }],
        all_tenants: false,
    };
    assert_error(
        feed.watch(negative).await,
        Code::InvalidArgument,
        Some("cursors[0].revision"),
    );
    let twice = pb::WatchRequest {
        cursors: vec![
            pb::TenantCursor {
                tenant_id: t.id.clone(),
                revision: 0,
            },
            pb::TenantCursor {
                tenant_id: t.id.clone(),
                revision: 1,
            },
        ],
        all_tenants: false,
    };
    assert_error(
        feed.watch(twice).await,
        Code::InvalidArgument,
        Some("cursors[1].tenant_id"),
    );
    let unknown = pb::WatchRequest {
        cursors: vec![pb::TenantCursor {
            tenant_id: uuid::Uuid::now_v7().to_string(),
            revision: 0,
        }],
        all_tenants: false,
    };
    assert_error(feed.watch(unknown).await, Code::NotFound, None);

    // More tenants than one stream may name: refused up front, naming the field,
    // not a database error.
    let many = |count: usize| pb::WatchRequest {
        cursors: (0..count)
            .map(|_| pb::TenantCursor {
                tenant_id: uuid::Uuid::now_v7().to_string(),
                revision: 0,
            })
            .collect(),
        all_tenants: false,
    };
    assert_error(
        feed.watch(many(cohort_directory::grpc::MAX_CURSORS + 1))
            .await,
        Code::InvalidArgument,
        Some("cursors"),
    );
    // With all_tenants the cursors are resume points, as many as the subscriber
    // holds: checked against the database in chunks (both databases cap a
    // statement's parameters; PostgreSQL at 65,535) and found missing.
    let mut resume_points = many(70_000);
    resume_points.all_tenants = true;
    assert_error(feed.watch(resume_points).await, Code::NotFound, None);
}

/// The message limit of the small-message tests (the least the server takes);
/// the feed cuts its messages to half of it.
const SMALL_LIMIT: usize = 64 * 1024;

fn small_feed() -> FeedSettings {
    FeedSettings {
        // A few messages' worth: the byte budget, not the count, holds back.
        buffer_bytes: 48 * 1024,
        buffer: 32,
        ..fast_feed()
    }
}

/// `n` new users who may administer groups, in calls that fit a small message.
async fn eligible_users(app: &TestApp, t: &Tenant, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for batch in 0..n.div_ceil(200) {
        let users = app
            .client()
            .batch_create_users(pb::BatchCreateUsersRequest {
                tenant_id: t.id.clone(),
                users: (batch * 200..((batch + 1) * 200).min(n))
                    .map(|i| pb::batch_create_users_request::NewUser {
                        display_name: format!("{prefix} {i}"),
                        email: format!("{prefix}{i}@parts.test"),
                        roles: vec![crate::helpers::GA_GROUP_ADMIN as i32],
                        request_id: String::new(),
                    })
                    .collect(),
            })
            .await
            .unwrap()
            .into_inner()
            .users;
        ids.extend(users.into_iter().map(|u| u.id));
    }
    ids
}

/// Huge change sets (1,000 memberships, 1,000 administrators, 200 new users:
/// each over the 32 KiB a message may carry) mixed with tiny ones, under a
/// 64 KiB limit: a live subscriber, one that reconnects at random points (also
/// between the parts of a change set) and a fresh one from a snapshot (with an
/// administrator set larger than a message) all end in the database's state,
/// every revision applied once, whole and in order, no message over the budget.
async fn huge_and_tiny_change_sets_reach_every_subscriber_once_and_in_order(app: &TestApp) {
    use prost::Message as _;
    use rand::seq::IndexedRandom;

    let t = app.tenant().await;
    let pool = eligible_users(app, &t, "Pool", 1000).await;
    let big = app.create_top_level(&t, "Big").await.id;
    app.client()
        .set_group_administrators(pb::SetGroupAdministratorsRequest {
            tenant_id: t.id.clone(),
            group_id: big.clone(),
            user_ids: pool.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();

    let mut live = Subscriber::default();
    live.follow(&t.id);
    let mut live_stream = open(app, live.request(false)).await;
    let (stop_reading, mut stop) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(async move {
        let mut largest = 0;
        loop {
            tokio::select! {
                message = live_stream.message() => {
                    let message = message.expect("the feed failed").expect("the feed ended");
                    largest = largest.max(message.encoded_len());
                    live.apply(message);
                }
                _ = stop.changed() => break,
            }
        }
        (live, live_stream, largest)
    });

    let mut hopping = Subscriber::default();
    hopping.follow(&t.id);
    let mut rng = StdRng::seed_from_u64(11);
    let mut groups = vec![app.create_top_level(&t, "G0").await.id];
    let mut client = app.client();
    for op in 0..36 {
        let g = groups.choose(&mut rng).unwrap().clone();
        let some = |rng: &mut StdRng, at_least: usize| -> Vec<String> {
            let n = rng.random_range(at_least..=pool.len());
            pool.choose_multiple(rng, n).cloned().collect()
        };
        let result = match op % 9 {
            0 | 4 => client
                .add_group_members(pb::AddGroupMembersRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: some(&mut rng, 700),
                })
                .await
                .map(|_| ()),
            1 => client
                .remove_group_members(pb::RemoveGroupMembersRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: some(&mut rng, 1),
                })
                .await
                .map(|_| ()),
            2 => client
                .set_group_administrators(pb::SetGroupAdministratorsRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: some(&mut rng, 900),
                    etag: String::new(),
                })
                .await
                .map(|_| ()),
            3 => client
                .add_group_administrators(pb::AddGroupAdministratorsRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: some(&mut rng, 1),
                })
                .await
                .map(|_| ()),
            5 => client
                .remove_group_administrators(pb::RemoveGroupAdministratorsRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    user_ids: some(&mut rng, 1),
                })
                .await
                .map(|_| ()),
            6 => {
                eligible_users(app, &t, &format!("New{op}-"), 200).await;
                Ok(())
            }
            7 => {
                let sub = app.subgroup(&t, &format!("Sub {op}"), &g).await.id;
                groups.push(sub);
                Ok(())
            }
            _ => client
                .set_inherited_role(pb::SetInheritedRoleRequest {
                    tenant_id: t.id.clone(),
                    group_id: g,
                    role: catalog_pb::Role::LmsValidator as i32,
                    etag: String::new(),
                })
                .await
                .map(|_| ()),
        };
        if let Err(status) = result {
            assert_eq!(
                status.code(),
                Code::FailedPrecondition,
                "op {op}: {status:?}"
            );
        }
        if op % 3 == 0 {
            // A subscriber that comes and goes, cut off anywhere: between the
            // parts of a change set, or inside a snapshot.
            let mut stream = open(app, hopping.request(false)).await;
            for _ in 0..rng.random_range(1..24) {
                hopping.apply(next(&mut stream).await);
            }
            hopping.gathering = None;
            if let Some((tenant, _)) = hopping.in_snapshot.take() {
                hopping.states.remove(&tenant);
                hopping.cursors.insert(tenant, 0);
            }
        }
    }

    let heads = heads(app, std::slice::from_ref(&t.id)).await;
    stop_reading.send(true).unwrap();
    let (mut live, mut live_stream, largest) = reader.await.unwrap();
    live.catch_up(&mut live_stream, &heads).await;
    let mut stream = open(app, hopping.request(false)).await;
    hopping.catch_up(&mut stream, &heads).await;
    let (fresh, revision) = snapshot_state(app, &t.id).await;

    assert_eq!(live.cursors[&t.id], revision);
    assert_eq!(hopping.cursors[&t.id], revision);
    assert_eq!(
        live.applied_events as i64,
        revision - live.last_snapshot,
        "every revision after the snapshot, once"
    );
    assert!(
        live.split_sets >= 10,
        "huge change sets came in parts: {}",
        live.split_sets
    );
    assert!(
        largest <= SMALL_LIMIT / 2,
        "a message of {largest} bytes, over half the limit"
    );
    assert_eq!(
        fresh.admins[&big].len(),
        1000,
        "a set larger than a message, whole"
    );
    assert_eq!(live.states[&t.id], fresh);
    assert_eq!(hopping.states[&t.id], fresh);
}

/// A subscriber that reads nothing holds at most `buffer_bytes` of the
/// directory's memory in messages, whatever their count: here ten change sets
/// of about 33 kB each against a 64 KiB budget (before, 32 messages of any size
/// were buffered: about 330 kB here, and megabytes with large change sets).
async fn a_stalled_subscriber_holds_no_more_than_its_byte_budget(app: &TestApp) {
    let t = app.tenant().await;
    let users = eligible_users(app, &t, "Member", 300).await;
    let before = app.revision(&t).await;
    for i in 0..10 {
        let group = app.create_top_level(&t, &format!("Group {i}")).await.id;
        app.client()
            .add_group_members(pb::AddGroupMembersRequest {
                tenant_id: t.id.clone(),
                group_id: group,
                user_ids: users.clone(),
            })
            .await
            .unwrap();
    }
    let settings = FeedSettings {
        buffer: 32,
        buffer_bytes: 64 * 1024,
        ..fast_feed()
    };
    let tenant = TenantId(uuid::Uuid::parse_str(&t.id).unwrap());
    let (_closing, closing_signal) = tokio::sync::watch::channel(false);
    let stream = feed::watch(
        app.store.clone(),
        settings.clone(),
        Subscription {
            cursors: [(tenant, before)].into(),
            all_tenants: false,
        },
        closing_signal,
        None,
    )
    .await
    .unwrap();
    tokio::pin!(stream);
    tokio::time::sleep(settings.send_timeout * 3).await;
    // What is buffered now, taken without waiting for more.
    let mut buffered = 0;
    let mut largest = 0;
    while let Some(Some(Ok(event))) = futures::FutureExt::now_or_never(stream.next()) {
        let bytes = feed::parts::event_bytes(&event);
        largest = largest.max(bytes);
        buffered += bytes;
    }
    assert!(largest > 30_000, "the change sets are large: {largest}");
    assert!(
        buffered <= settings.buffer_bytes,
        "{buffered} bytes buffered for a subscriber that read nothing, over {}",
        settings.buffer_bytes
    );
}

async fn replicas_on_one_database_each_serve_the_feed(app: &TestApp) {
    // The replica's safety poll is far away: delivery must come from the commit signal.
    let settings = FeedSettings {
        poll_interval: Duration::from_secs(3600),
        checkpoint_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let replica = spawn_replica(app, settings).await;
    let t = app.tenant().await;
    let mut subscriber = Subscriber::default();
    subscriber.follow(&t.id);
    let mut stream = open(&replica, subscriber.request(false)).await;
    subscriber
        .catch_up(&mut stream, &heads(app, std::slice::from_ref(&t.id)).await)
        .await;
    let group = app
        .organization(&t, "Written on the other replica")
        .await
        .id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !subscriber.states[&t.id].groups.contains_key(&group) {
        let message = tokio::time::timeout_at(deadline, stream.message())
            .await
            .expect("delivered by notification");
        subscriber.apply(message.unwrap().unwrap());
    }
    replica.cleanup().await;
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

crate::on_both_backends!(
    feed = super::fast_feed();
    the_feed_starts_with_a_snapshot_then_goes_live,
    a_transaction_that_commits_late_is_still_delivered_in_order,
    concurrent_writers_across_tenants_reach_a_subscriber_exactly,
    a_subscriber_that_reconnects_at_random_points_ends_in_the_same_state,
    a_cursor_older_than_the_retention_gets_a_snapshot,
    idle_streams_receive_checkpoints,
    a_subscriber_that_stops_reading_is_cut_off_after_its_buffer,
    a_stalled_subscriber_holds_no_more_than_its_byte_budget,
    bad_watch_requests_are_refused,
);

/// At a small message limit (64 KiB, the least the server takes).
mod small_messages {
    use cohort_shared::serving::Limits;

    use crate::helpers::{spawn_app_limited, Backend};

    fn limits() -> Limits {
        Limits {
            max_message_bytes: super::SMALL_LIMIT,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn postgres() {
        let app = spawn_app_limited(Backend::Postgres, super::small_feed(), limits()).await;
        super::huge_and_tiny_change_sets_reach_every_subscriber_once_and_in_order(&app).await;
        app.cleanup().await;
    }

    #[tokio::test]
    async fn sqlite() {
        let app = spawn_app_limited(Backend::Sqlite, super::small_feed(), limits()).await;
        super::huge_and_tiny_change_sets_reach_every_subscriber_once_and_in_order(&app).await;
        app.cleanup().await;
    }
}

/// Replicas need a shared server database: PostgreSQL only.
mod replicas {
    #[tokio::test]
    async fn postgres() {
        let app = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await;
        super::replicas_on_one_database_each_serve_the_feed(&app).await;
        app.cleanup().await;
    }
}
