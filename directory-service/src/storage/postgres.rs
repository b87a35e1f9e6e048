//! The PostgreSQL backend, for production. Connects a pool, runs the embedded
//! migrations (`migrations/postgres`) at start-up, and serves the shared SQL in
//! `sql.rs` with PostgreSQL's types.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::broadcast;

use super::batches::{Batches, Waiting};
use super::signal;
use crate::domain::{Revision, TenantId};

type Db = sqlx::Postgres;
type DbConn = sqlx::PgConnection;
type Store = PgStore;

/// The directory on PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    /// Shared by every request; sqlx returns a connection whose transaction was left
    /// open (a cancelled call) only after rolling it back.
    pool: PgPool,
    /// Announces commits to this process's feed streams (see `signal`).
    commits: broadcast::Sender<signal::Commit>,
    /// Announces commits to other replicas, with NOTIFY.
    notifier: tokio::sync::mpsc::UnboundedSender<(TenantId, Revision)>,
    /// Keep the NOTIFY listener and notifier alive as long as a handle to the
    /// store is.
    _listener: Arc<signal::ListenerGuard>,
    _notifier: Arc<signal::ListenerGuard>,
    /// Turns of each tenant's writers in this process (see `turns`).
    turns: Arc<super::turns::Turns>,
    /// `CreateUser` calls waiting to be written together (see `batches`).
    user_batches: Arc<Batches<PendingUser, StoreResult<Created>>>,
    /// `CreateGroup` calls waiting to be written together.
    group_batches: Arc<Batches<PendingGroup, StoreResult<Created>>>,
    /// `AddGroupMembers` calls waiting to be written together.
    member_batches: Arc<Batches<PendingMembers, StoreResult<Written<Vec<UserId>>>>>,
}

impl PgStore {
    /// Connects to `url` with at most `max_connections` and brings the schema up to
    /// date.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name("cohort-directory");
        let pool = PgPoolOptions::new()
            // No ping before each use: a round trip per transaction. A broken
            // connection fails its statement, and sqlx discards it.
            .test_before_acquire(false)
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let commits = signal::channel();
        let listener = signal::spawn_listener(pool.clone(), commits.clone());
        let (notifier, notifier_guard) = signal::spawn_notifier(pool.clone());
        Ok(PgStore {
            pool,
            commits,
            notifier,
            _listener: listener,
            _notifier: notifier_guard,
            turns: Arc::default(),
            user_batches: Arc::default(),
            group_batches: Arc::default(),
            member_batches: Arc::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Announces a commit: at once to this process (with its change set), and
    /// with NOTIFY (after the commit, off the caller's path) to every replica.
    fn after_commit(&self, set: Arc<ChangeSet>) {
        let (tenant, revision) = (set.tenant_id, set.revision);
        let _ = self.commits.send(signal::Commit {
            tenant,
            revision,
            changes: Some(set),
        });
        let _ = self.notifier.send((tenant, revision));
    }

    /// A read-only transaction that sees one consistent state throughout.
    async fn begin_snapshot(&self) -> Result<Transaction<'static, Db>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        // A snapshot reads every row of its cursors: plan them for that, not for
        // the first rows (a sequential scan, not an index walk).
        sqlx::query("SET LOCAL cursor_tuple_fraction = 1.0")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

include!("sql.rs");

// What the two databases do differently, used by the shared SQL above.

/// Snapshots read users, groups and memberships through server-side cursors.
const SNAPSHOT_BY_CURSOR: bool = true;

/// The outbox's change-set parameter: text, stored as `json` as it is.
const CHANGES_PARAM: &str = "$5::json";

/// The size of a stored change set, in bytes of its text (`json` has no length
/// of its own; the cast is free, the value is read anyway).
const CHANGES_BYTES: &str = "octet_length(changes::text)";

// Lookups of many keys (`ids`, `keys`) probe the index once per key, in a
// correlated subquery that `OFFSET 0` keeps from being flattened into a join.
// The plain `tenant_id = $1 AND id = ANY($2)` is as fast when the statistics are
// fresh, but a tenant that grew since the last ANALYZE (a bulk import, exactly
// when these run) looks small, and the planner then scans the whole tenant and
// filters: 23 ms per 1,000 ids at 100,000 users, and ten times that at a million.

/// The ids among `ids` of the tenant's users.
async fn users_among(
    conn: &mut DbConn,
    tenant: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT u FROM UNNEST($2::uuid[]) AS u \
         WHERE EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND id = u OFFSET 0)",
    )
    .bind(tenant)
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Adds the users of `users` (sorted, distinct) that exist and are not members
/// yet to `group`, and counts them, in one statement: the existence checks and
/// the insert share one pass, and the primary key finds the members already
/// there (`ON CONFLICT DO NOTHING`) as it inserts, where a separate check probed
/// the index once more per user. A group or user that does not exist is the
/// caller's to refuse, rolling back what was added.
async fn add_memberships(
    conn: &mut DbConn,
    tenant: Uuid,
    group: Uuid,
    users: &[Uuid],
    revision: i64,
    time: DateTime<Utc>,
) -> Result<MembershipsAdded, sqlx::Error> {
    let (group_found, found, mut added): (bool, Vec<Uuid>, Vec<Uuid>) = sqlx::query_as(
        "WITH target AS (SELECT 1 FROM groups WHERE tenant_id = $1 AND id = $2), \
         found AS (SELECT u FROM UNNEST($3::uuid[]) AS u \
                   WHERE EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND id = u OFFSET 0)), \
         added AS (INSERT INTO memberships (tenant_id, group_id, user_id, join_revision, join_time) \
                   SELECT $1, $2, u, $4, $5 FROM found WHERE EXISTS (SELECT 1 FROM target) \
                   ON CONFLICT DO NOTHING RETURNING user_id), \
         counted AS (UPDATE groups SET member_count = member_count + (SELECT count(*) FROM added) \
                     WHERE tenant_id = $1 AND id = $2 AND EXISTS (SELECT 1 FROM added)) \
         SELECT EXISTS (SELECT 1 FROM target), ARRAY(SELECT u FROM found), ARRAY(SELECT user_id FROM added)",
    )
    .bind(tenant)
    .bind(group)
    .bind(users)
    .bind(revision)
    .bind(time)
    .fetch_one(conn)
    .await?;
    added.sort_unstable();
    Ok(MembershipsAdded {
        group_found,
        found,
        added,
    })
}

/// Removes `users` from `group`, in one statement; the users removed.
async fn delete_memberships(
    conn: &mut DbConn,
    tenant: Uuid,
    group: Uuid,
    users: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "DELETE FROM memberships WHERE tenant_id = $1 AND group_id = $2 AND user_id = ANY($3) RETURNING user_id",
    )
    .bind(tenant)
    .bind(group)
    .bind(users)
    .fetch_all(conn)
    .await
}

/// The request ids among `ids` already used in `scope`, with what they stored.
async fn stored_requests(
    conn: &mut DbConn,
    scope: Uuid,
    ids: &[&str],
) -> Result<Vec<(String, String, Uuid, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.request_id, k.fingerprint, k.resource_id, k.revision FROM UNNEST($2::text[]) AS r, \
         LATERAL (SELECT * FROM idempotency_keys WHERE scope = $1 AND request_id = r OFFSET 0) AS k",
    )
    .bind(scope)
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// The email keys among `keys` that users of the tenant have.
async fn emails_taken(
    conn: &mut DbConn,
    tenant: Uuid,
    keys: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT k FROM UNNEST($2::text[]) AS k \
         WHERE EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND email_key = k OFFSET 0)",
    )
    .bind(tenant)
    .bind(keys)
    .fetch_all(conn)
    .await
}

/// Inserts new users (all of one tenant, at one revision) and their roles, in one
/// statement of arrays.
async fn insert_users(conn: &mut DbConn, users: &[User]) -> Result<(), sqlx::Error> {
    let Some(first) = users.first() else {
        return Ok(());
    };
    let rows: Vec<NewUserRow<'_>> = users.iter().map(Store::user_row).collect();
    let column =
        |f: &dyn Fn(&NewUserRow<'_>) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let (role_users, role_names): (Vec<Uuid>, Vec<&str>) = rows
        .iter()
        .flat_map(|r| r.role_names.iter().map(move |role| (r.id, *role)))
        .unzip();
    sqlx::query(
        "WITH new_users AS (INSERT INTO users (tenant_id, id, display_name, email, email_key, search_text, roles, \
             suspended, create_time, update_time, revision) \
             SELECT $1, * , FALSE, $8, $8, $9 FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[])) \
         INSERT INTO user_roles (tenant_id, user_id, role) SELECT $1, * FROM UNNEST($10::uuid[], $11::text[])",
    )
    .bind(first.tenant_id.0)
    .bind(&ids)
    .bind(column(&|r| r.display_name.to_owned()))
    .bind(column(&|r| r.email.to_owned()))
    .bind(column(&|r| r.email_key.clone()))
    .bind(column(&|r| r.search_text.clone()))
    .bind(column(&|r| r.roles.clone()))
    .bind(first.create_time)
    .bind(first.revision)
    .bind(&role_users)
    .bind(&role_names)
    .execute(conn)
    .await?;
    Ok(())
}

/// Remembers the request ids of created resources, in one statement.
async fn insert_request_ids(
    conn: &mut DbConn,
    scope: Uuid,
    keys: &[(&str, &str, Uuid)],
    revision: i64,
    time: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let ids: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let fingerprints: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let resources: Vec<Uuid> = keys.iter().map(|k| k.2).collect();
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, request_id, fingerprint, resource_id, revision, create_time) \
         SELECT $1, *, $5, $6 FROM UNNEST($2::text[], $3::text[], $4::uuid[])",
    )
    .bind(scope)
    .bind(&ids)
    .bind(&fingerprints)
    .bind(&resources)
    .bind(revision)
    .bind(time)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts a new user and its roles, in one statement.
async fn insert_user_row(conn: &mut DbConn, row: &NewUserRow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH u AS (INSERT INTO users (tenant_id, id, display_name, email, email_key, search_text, roles, \
         suspended, create_time, update_time, revision) VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8, $8, $9) \
         RETURNING id) \
         INSERT INTO user_roles (tenant_id, user_id, role) SELECT $1, u.id, r FROM u, UNNEST($10::text[]) AS r",
    )
    .bind(row.tenant)
    .bind(row.id)
    .bind(row.display_name)
    .bind(row.email)
    .bind(row.email_key.as_str())
    .bind(row.search_text.as_str())
    .bind(row.roles.as_str())
    .bind(row.time)
    .bind(row.revision)
    .bind(&row.role_names)
    .execute(conn)
    .await?;
    Ok(())
}

/// What PostgreSQL's one-statement creates write and announce.
impl OneShot<'_> {
    fn payload(&self) -> StoreResult<String> {
        serde_json::to_string(&self.changes).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// The committed change set, for the commit signal.
    fn committed(&self, revision: Revision) -> std::sync::Arc<ChangeSet> {
        let mut set = ChangeSet {
            tenant_id: self.tenant,
            revision,
            commit_time: self.time,
            actor: self.ctx.actor.clone(),
            changes: self.changes.clone(),
        };
        set.stamp();
        std::sync::Arc::new(set)
    }
}

/// A create (of a user or a group) waiting for its tenant's next batch: what
/// `OneShot` borrows, owned, since the batch is written by another task.
struct PendingCreate<E> {
    value: E,
    tenant: TenantId,
    ctx: WriteContext,
    request: Option<(RequestId, String)>,
    time: DateTime<Utc>,
    changes: Vec<Change>,
    /// The change set as stored.
    payload: String,
}

type PendingUser = PendingCreate<User>;
type PendingGroup = PendingCreate<Group>;

impl<E: Clone> PendingCreate<E> {
    fn new(shot: &OneShot<'_>, value: &E) -> StoreResult<Self> {
        Ok(PendingCreate {
            value: value.clone(),
            tenant: shot.tenant,
            ctx: shot.ctx.clone(),
            request: shot.request.map(|(r, f)| (r.clone(), f.to_owned())),
            time: shot.time,
            changes: shot.changes.clone(),
            payload: shot.payload()?,
        })
    }

    fn shot(&self) -> OneShot<'_> {
        OneShot {
            ctx: &self.ctx,
            tenant: self.tenant,
            request: self.request.as_ref().map(|(r, f)| (r, f.as_str())),
            time: self.time,
            changes: self.changes.clone(),
        }
    }
}

/// At most this many creates are written in one statement: a batch's commit
/// answers all of them at once, so a larger one only delays the first.
const MAX_BATCH: usize = 128;

/// At most this many `AddGroupMembers` calls (of up to 1,000 users each) in one
/// batch.
const MAX_MEMBER_BATCH: usize = 16;

/// A write that concurrent callers of one tenant make together (see `batches`).
#[async_trait::async_trait]
trait Batched: Sized + Send + Sync + 'static {
    type Answer: Send + 'static;
    /// At most this many in one batch.
    const MAX_BATCH: usize;
    /// The store's queues of this write.
    fn batches(store: &PgStore) -> &Arc<Batches<Self, StoreResult<Self::Answer>>>;
    /// Writes the batch in one transaction and answers each item; `None` when
    /// that failed and nothing was written.
    async fn write_together(
        store: &PgStore,
        tenant: TenantId,
        batch: &[Self],
    ) -> Option<Vec<StoreResult<Self::Answer>>>;
    /// Writes this item alone.
    async fn write_alone(&self, store: &PgStore, tenant: TenantId) -> StoreResult<Self::Answer>;
}

#[async_trait::async_trait]
impl Batched for PendingUser {
    type Answer = Created;
    const MAX_BATCH: usize = MAX_BATCH;
    fn batches(store: &PgStore) -> &Arc<Batches<Self, StoreResult<Created>>> {
        &store.user_batches
    }
    async fn write_together(
        store: &PgStore,
        tenant: TenantId,
        batch: &[Self],
    ) -> Option<Vec<StoreResult<Created>>> {
        store.create_users_together(tenant, batch).await
    }
    async fn write_alone(&self, store: &PgStore, _tenant: TenantId) -> StoreResult<Created> {
        store.create_user_alone(self).await
    }
}

#[async_trait::async_trait]
impl Batched for PendingGroup {
    type Answer = Created;
    const MAX_BATCH: usize = MAX_BATCH;
    fn batches(store: &PgStore) -> &Arc<Batches<Self, StoreResult<Created>>> {
        &store.group_batches
    }
    async fn write_together(
        store: &PgStore,
        tenant: TenantId,
        batch: &[Self],
    ) -> Option<Vec<StoreResult<Created>>> {
        store.create_groups_together(tenant, batch).await
    }
    async fn write_alone(&self, store: &PgStore, _tenant: TenantId) -> StoreResult<Created> {
        store.create_group_alone(self).await
    }
}

#[async_trait::async_trait]
impl Batched for PendingMembers {
    type Answer = Written<Vec<UserId>>;
    const MAX_BATCH: usize = MAX_MEMBER_BATCH;
    fn batches(store: &PgStore) -> &Arc<Batches<Self, StoreResult<Self::Answer>>> {
        &store.member_batches
    }
    async fn write_together(
        store: &PgStore,
        tenant: TenantId,
        batch: &[Self],
    ) -> Option<Vec<StoreResult<Self::Answer>>> {
        store.add_members_together(tenant, batch).await
    }
    async fn write_alone(&self, store: &PgStore, tenant: TenantId) -> StoreResult<Self::Answer> {
        store
            .add_members_alone(&self.ctx, tenant, self.group, self.users.clone())
            .await
    }
}

/// The creates of the hot path, each one statement: the revision bump, the rows,
/// the request id and the change set (see `OneShot`). Concurrent `CreateUser`
/// calls of one tenant are written together (see `batches`).
impl PgStore {
    async fn create_user_at_once(&self, shot: &OneShot<'_>, user: &User) -> StoreResult<Created> {
        self.in_batch(shot.tenant, PendingCreate::new(shot, user)?)
            .await
    }

    /// Queues `item` for its tenant's next batch (starting the tenant's runner,
    /// a task of its own, if none runs) and waits for its answer.
    async fn in_batch<T: Batched>(&self, tenant: TenantId, item: T) -> StoreResult<T::Answer> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let batches = T::batches(self).clone();
        if batches.push(tenant, Waiting { item, reply }) {
            let store = self.clone();
            tokio::spawn(async move {
                while let Some(batch) = batches.next(tenant, T::MAX_BATCH) {
                    store.write_batch(tenant, batch).await;
                }
            });
        }
        // The runner answers every item it takes; no answer means it died.
        answer
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
    }

    /// Writes one batch and answers each item: all together, or one at a time
    /// when that fails (nothing written), each with its own answer.
    ///
    /// A caller that gives up (its deadline, a cancelled call) before its write
    /// is done leaves it undone, as a write of its own would be: items already
    /// abandoned are left out, a write of one item is dropped (rolled back) when
    /// its caller goes, and a batch when all of its callers go. In a batch that
    /// others still wait for, a caller that gave up gets the outcome of every
    /// cancelled call: unknown.
    async fn write_batch<T: Batched>(
        &self,
        tenant: TenantId,
        batch: Vec<Waiting<T, StoreResult<T::Answer>>>,
    ) {
        let (items, mut replies): (Vec<T>, Vec<_>) = batch
            .into_iter()
            .filter(|w| !w.abandoned())
            .map(|w| (w.item, w.reply))
            .unzip();
        let written = match items.len() {
            0 => return,
            1 => None,
            _ => tokio::select! {
                written = T::write_together(self, tenant, &items) => written,
                () = every_caller_gone(&mut replies) => return,
            },
        };
        match written {
            Some(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            None => {
                for (item, mut reply) in items.iter().zip(replies) {
                    let answer = tokio::select! {
                        answer = item.write_alone(self, tenant) => Some(answer),
                        () = reply.closed() => None,
                    };
                    if let Some(answer) = answer {
                        let _ = reply.send(answer);
                    }
                }
            }
        }
    }

    /// One statement for the whole batch. It judges each user first, as the
    /// single statement's constraints would: a request id already stored or used
    /// earlier in the batch is a twin to replay, an email already stored or used
    /// earlier in the batch is taken. Each lookup is a `LATERAL ... LIMIT 1`, one
    /// index probe per user whatever the statistics say: as a join or `EXISTS`,
    /// PostgreSQL planned it from the statistics of a smaller tenant as a hash of
    /// every user of the tenant (3 ms a batch at 4,000 users, growing with them). The others are written, each at its own
    /// revision (the bump's base plus its rank among them). `None` when the
    /// statement failed and nothing was written (a concurrent writer got past the
    /// judgement: the constraints still hold): the caller writes the users one at
    /// a time.
    async fn create_users_together(
        &self,
        tenant: TenantId,
        batch: &[PendingUser],
    ) -> Option<Vec<StoreResult<Created>>> {
        let mut columns = UserColumns::default();
        for waiting in batch {
            columns.push(waiting);
        }
        let mut tx = self.pool.begin().await.ok()?;
        let _turn = self.turns.take(tenant).await;
        let judged = sqlx::query_as::<_, (i64, Option<String>, Option<i64>)>(
            "WITH item AS (SELECT * FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::text[]) \
                 WITH ORDINALITY AS i(id, display_name, email, email_key, search_text, roles, time, \
                 request_id, fingerprint, actor, changes, place)), \
             marked AS (SELECT i.*, \
                 row_number() OVER (PARTITION BY request_id ORDER BY place) AS request_seen, \
                 row_number() OVER (PARTITION BY email_key ORDER BY place) AS email_seen FROM item i), \
             judged AS (SELECT m.*, CASE \
                 WHEN m.request_id IS NOT NULL AND (m.request_seen > 1 OR k.taken) THEN 'request_id' \
                 WHEN m.email_seen > 1 OR u.taken THEN 'email' END AS refusal \
                 FROM marked m \
                 LEFT JOIN LATERAL (SELECT TRUE AS taken FROM idempotency_keys \
                     WHERE scope = $1 AND request_id = m.request_id LIMIT 1) k ON TRUE \
                 LEFT JOIN LATERAL (SELECT TRUE AS taken FROM users \
                     WHERE tenant_id = $1 AND email_key = m.email_key LIMIT 1) u ON TRUE), \
             ok AS (SELECT j.*, row_number() OVER (ORDER BY place) AS rank FROM judged j WHERE refusal IS NULL), \
             bump AS (UPDATE tenants SET revision = revision + (SELECT count(*) FROM ok) WHERE id = $1 \
                 RETURNING revision - (SELECT count(*) FROM ok) AS base), \
             new_user AS (INSERT INTO users (tenant_id, id, display_name, email, email_key, search_text, roles, \
                 suspended, create_time, update_time, revision) \
                 SELECT $1, id, display_name, email, email_key, search_text, roles, FALSE, time, time, base + rank \
                 FROM ok, bump), \
             new_roles AS (INSERT INTO user_roles (tenant_id, user_id, role) \
                 SELECT $1, x.u, x.r FROM UNNEST($13::uuid[], $14::text[]) AS x(u, r) JOIN ok ON ok.id = x.u, bump), \
             request AS (INSERT INTO idempotency_keys (scope, request_id, fingerprint, resource_id, revision, \
                 create_time) SELECT $1, request_id, fingerprint, id, base + rank, time FROM ok, bump \
                 WHERE request_id IS NOT NULL), \
             event AS (INSERT INTO change_events (tenant_id, revision, commit_time, actor, changes) \
                 SELECT $1, base + rank, time, actor, changes::json FROM ok, bump) \
             SELECT j.place, j.refusal, (SELECT base FROM bump) + ok.rank \
             FROM judged j LEFT JOIN ok ON ok.place = j.place ORDER BY j.place",
        )
        .bind(tenant.0)
        .bind(&columns.id)
        .bind(&columns.display_name)
        .bind(&columns.email)
        .bind(&columns.email_key)
        .bind(&columns.search_text)
        .bind(&columns.roles)
        .bind(&columns.time)
        .bind(&columns.request_id)
        .bind(&columns.fingerprint)
        .bind(&columns.actor)
        .bind(&columns.changes)
        .bind(&columns.role_user)
        .bind(&columns.role_name)
        .fetch_all(&mut *tx)
        .await
        .ok()?;
        self.created_together(tenant, tx, batch, judged, |refusal, user| match refusal {
            "email" => Err(StoreError::AlreadyExists {
                field: "email".into(),
                message: Store::email_taken(user)(),
            }),
            _ => Err(StoreError::Corrupt(format!("an unknown refusal {refusal}"))),
        })
        .await
    }

    /// How a batch of creates ended, from its statement's judgement of each item
    /// (`place`, refusal, revision): committed and announced at their revisions,
    /// a twin to replay (`request_id`), refused (`refused` names the error), or,
    /// when an item is neither refused nor written (nothing was bumped), the
    /// tenant not found. `None` when the statement did not answer for every item.
    async fn created_together<E: Clone>(
        &self,
        tenant: TenantId,
        tx: Transaction<'static, Db>,
        batch: &[PendingCreate<E>],
        judged: Vec<(i64, Option<String>, Option<i64>)>,
        refused: impl Fn(&str, &E) -> StoreResult<Created>,
    ) -> Option<Vec<StoreResult<Created>>> {
        if judged.len() != batch.len() {
            return None;
        }
        if judged
            .iter()
            .any(|(_, refusal, revision)| refusal.is_none() && revision.is_none())
        {
            return Some(
                batch
                    .iter()
                    .map(|_| Err(StoreError::not_found("tenant", tenant)))
                    .collect(),
            );
        }
        if let Err(err) = tx.commit().await {
            // Whether the commit took effect is unknown: writing the items again
            // could create them twice, so each caller gets the failure.
            let message = err.to_string();
            return Some(
                batch
                    .iter()
                    .map(|_| {
                        Err(StoreError::Database(sqlx::Error::Protocol(format!(
                            "commit failed: {message}"
                        ))))
                    })
                    .collect(),
            );
        }
        let answers = batch
            .iter()
            .zip(judged)
            .map(
                |(waiting, (_, refusal, revision))| match (refusal.as_deref(), revision) {
                    (_, Some(revision)) => {
                        self.after_commit(waiting.shot().committed(revision));
                        Ok(Created::At(revision))
                    }
                    (Some("request_id"), None) => Ok(Created::RequestIdTaken),
                    (refusal, None) => refused(refusal.unwrap_or_default(), &waiting.value),
                },
            )
            .collect();
        Some(answers)
    }

    /// One statement for a batch of groups, judged as `create_users_together`
    /// judges users: a request id stored or repeated is a twin, a parent not in
    /// the tenant is not found, a sibling name stored or repeated under the same
    /// parent is taken (in that order). The others are written at their own
    /// revisions, their parents' subgroup counters with them.
    async fn create_groups_together(
        &self,
        tenant: TenantId,
        batch: &[PendingGroup],
    ) -> Option<Vec<StoreResult<Created>>> {
        let items: Vec<&PendingGroup> = batch.iter().collect();
        let column = |f: &dyn Fn(&PendingGroup) -> Option<String>| -> Vec<Option<String>> {
            items.iter().map(|p| f(p)).collect()
        };
        let ids: Vec<Uuid> = items.iter().map(|p| p.value.id.0).collect();
        let parents: Vec<Option<Uuid>> = items
            .iter()
            .map(|p| p.value.parent_id.map(|g| g.0))
            .collect();
        let names = column(&|p| Some(p.value.display_name.as_str().to_owned()));
        let name_keys = column(&|p| Some(p.value.display_name.key()));
        let organizations: Vec<bool> = items.iter().map(|p| p.value.is_organization).collect();
        let times: Vec<DateTime<Utc>> = items.iter().map(|p| p.time).collect();
        let request_ids = column(&|p| p.request.as_ref().map(|(r, _)| r.as_str().to_owned()));
        let fingerprints = column(&|p| p.request.as_ref().map(|(_, f)| f.clone()));
        let actors = column(&|p| Some(p.ctx.actor.clone()));
        let payloads = column(&|p| Some(p.payload.clone()));
        let mut tx = self.pool.begin().await.ok()?;
        let _turn = self.turns.take(tenant).await;
        let judged = sqlx::query_as::<_, (i64, Option<String>, Option<i64>)>(
            "WITH item AS (SELECT * FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::bool[], \
                 $7::timestamptz[], $8::text[], $9::text[], $10::text[], $11::text[]) \
                 WITH ORDINALITY AS i(id, parent_id, display_name, name_key, is_organization, time, \
                 request_id, fingerprint, actor, changes, place)), \
             marked AS (SELECT i.*, \
                 row_number() OVER (PARTITION BY request_id ORDER BY place) AS request_seen, \
                 row_number() OVER (PARTITION BY parent_id, name_key ORDER BY place) AS name_seen FROM item i), \
             judged AS (SELECT m.*, CASE \
                 WHEN m.request_id IS NOT NULL AND (m.request_seen > 1 OR k.taken) THEN 'request_id' \
                 WHEN m.parent_id IS NOT NULL AND p.found IS NULL THEN 'parent' \
                 WHEN m.name_seen > 1 OR s.taken THEN 'name' END AS refusal \
                 FROM marked m \
                 LEFT JOIN LATERAL (SELECT TRUE AS taken FROM idempotency_keys \
                     WHERE scope = $1 AND request_id = m.request_id LIMIT 1) k ON TRUE \
                 LEFT JOIN LATERAL (SELECT TRUE AS found FROM groups \
                     WHERE tenant_id = $1 AND id = m.parent_id LIMIT 1) p ON TRUE \
                 LEFT JOIN LATERAL (SELECT TRUE AS taken FROM groups WHERE tenant_id = $1 \
                     AND COALESCE(parent_id, '00000000-0000-0000-0000-000000000000'::uuid) \
                         = COALESCE(m.parent_id, '00000000-0000-0000-0000-000000000000'::uuid) \
                     AND name_key = m.name_key LIMIT 1) s ON TRUE), \
             ok AS (SELECT j.*, row_number() OVER (ORDER BY place) AS rank FROM judged j WHERE refusal IS NULL), \
             bump AS (UPDATE tenants SET revision = revision + (SELECT count(*) FROM ok) WHERE id = $1 \
                 RETURNING revision - (SELECT count(*) FROM ok) AS base), \
             new_group AS (INSERT INTO groups (tenant_id, id, parent_id, display_name, name_key, is_organization, \
                 create_time, update_time, revision) \
                 SELECT $1, id, parent_id, display_name, name_key, is_organization, time, time, base + rank \
                 FROM ok, bump), \
             parent AS (UPDATE groups SET subgroup_count = subgroup_count + \
                 (SELECT count(*) FROM ok WHERE ok.parent_id = groups.id) \
                 WHERE tenant_id = $1 AND id IN (SELECT parent_id FROM ok) AND EXISTS (SELECT 1 FROM bump)), \
             request AS (INSERT INTO idempotency_keys (scope, request_id, fingerprint, resource_id, revision, \
                 create_time) SELECT $1, request_id, fingerprint, id, base + rank, time FROM ok, bump \
                 WHERE request_id IS NOT NULL), \
             event AS (INSERT INTO change_events (tenant_id, revision, commit_time, actor, changes) \
                 SELECT $1, base + rank, time, actor, changes::json FROM ok, bump) \
             SELECT j.place, j.refusal, (SELECT base FROM bump) + ok.rank \
             FROM judged j LEFT JOIN ok ON ok.place = j.place ORDER BY j.place",
        )
        .bind(tenant.0)
        .bind(&ids)
        .bind(&parents)
        .bind(&names)
        .bind(&name_keys)
        .bind(&organizations)
        .bind(&times)
        .bind(&request_ids)
        .bind(&fingerprints)
        .bind(&actors)
        .bind(&payloads)
        .fetch_all(&mut *tx)
        .await
        .ok()?;
        self.created_together(tenant, tx, batch, judged, |refusal, group| {
            match (refusal, group.parent_id) {
                ("parent", Some(parent)) => Err(StoreError::not_found("group", parent)),
                _ => Err(StoreError::AlreadyExists {
                    field: "display_name".into(),
                    message: Store::name_taken(group)(),
                }),
            }
        })
        .await
    }

    async fn create_user_alone(&self, pending: &PendingUser) -> StoreResult<Created> {
        let shot = pending.shot();
        let user = &pending.value;
        let row = Store::user_row(user);
        let mut tx = self.pool.begin().await?;
        let _turn = self.turns.take(shot.tenant).await;
        let written = sqlx::query_scalar::<_, i64>(
            "WITH bump AS (UPDATE tenants SET revision = revision + 1 WHERE id = $1 RETURNING revision), \
             new_user AS (INSERT INTO users (tenant_id, id, display_name, email, email_key, search_text, roles, \
                 suspended, create_time, update_time, revision) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, FALSE, $8, $8, revision FROM bump RETURNING id, revision), \
             new_roles AS (INSERT INTO user_roles (tenant_id, user_id, role) \
                 SELECT $1, id, r FROM new_user, UNNEST($9::text[]) AS r), \
             request AS (INSERT INTO idempotency_keys (scope, request_id, fingerprint, resource_id, revision, \
                 create_time) SELECT $1, $10, $11, id, revision, $8 FROM new_user WHERE $10::text IS NOT NULL), \
             event AS (INSERT INTO change_events (tenant_id, revision, commit_time, actor, changes) \
                 SELECT $1, revision, $8, $12, $13::json FROM bump) \
             SELECT revision FROM bump",
        )
        .bind(row.tenant)
        .bind(row.id)
        .bind(row.display_name)
        .bind(row.email)
        .bind(row.email_key.as_str())
        .bind(row.search_text.as_str())
        .bind(row.roles.as_str())
        .bind(shot.time)
        .bind(&row.role_names)
        .bind(shot.request.map(|(r, _)| r.as_str()))
        .bind(shot.request.map(|(_, f)| f))
        .bind(&shot.ctx.actor)
        .bind(pending.payload.as_str())
        .fetch_optional(&mut *tx)
        .await;
        self.created(
            &shot,
            tx,
            written,
            unique_as("email", Store::email_taken(user)),
        )
        .await
    }

    async fn create_group_at_once(
        &self,
        shot: &OneShot<'_>,
        group: &Group,
    ) -> StoreResult<Created> {
        self.in_batch(shot.tenant, PendingCreate::new(shot, group)?)
            .await
    }

    async fn create_group_alone(&self, pending: &PendingGroup) -> StoreResult<Created> {
        let shot = &pending.shot();
        let group = &pending.value;
        let mut tx = self.pool.begin().await?;
        let _turn = self.turns.take(shot.tenant).await;
        let written = sqlx::query_scalar::<_, i64>(
            "WITH bump AS (UPDATE tenants SET revision = revision + 1 WHERE id = $1 RETURNING revision), \
             new_group AS (INSERT INTO groups (tenant_id, id, parent_id, display_name, name_key, is_organization, \
                 create_time, update_time, revision) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $7, revision FROM bump RETURNING id, revision), \
             parent AS (UPDATE groups SET subgroup_count = subgroup_count + 1 \
                 WHERE tenant_id = $1 AND id = $3 AND EXISTS (SELECT 1 FROM new_group)), \
             request AS (INSERT INTO idempotency_keys (scope, request_id, fingerprint, resource_id, revision, \
                 create_time) SELECT $1, $8, $9, id, revision, $7 FROM new_group WHERE $8::text IS NOT NULL), \
             event AS (INSERT INTO change_events (tenant_id, revision, commit_time, actor, changes) \
                 SELECT $1, revision, $7, $10, $11::json FROM bump) \
             SELECT revision FROM bump",
        )
        .bind(shot.tenant.0)
        .bind(group.id.0)
        .bind(group.parent_id.map(|p| p.0))
        .bind(group.display_name.as_str())
        .bind(group.display_name.key())
        .bind(group.is_organization)
        .bind(shot.time)
        .bind(shot.request.map(|(r, _)| r.as_str()))
        .bind(shot.request.map(|(_, f)| f))
        .bind(&shot.ctx.actor)
        .bind(pending.payload.as_str())
        .fetch_optional(&mut *tx)
        .await;
        self.created(shot, tx, written, |err| match (&err, group.parent_id) {
            // The parent (the only group referenced) is not in the tenant.
            (sqlx::Error::Database(db), Some(parent)) if db.is_foreign_key_violation() => {
                StoreError::not_found("group", parent)
            }
            _ => unique_as("display_name", Store::name_taken(group))(err),
        })
        .await
    }

    /// How a one-statement create ended: committed (and announced), the tenant not
    /// found (nothing bumped), its request id taken by a concurrent twin, or `other`.
    ///
    /// The statement runs in a transaction of its own, committed here: a call
    /// cancelled while its statement waits for the tenant's lock rolls back, rather
    /// than taking effect after its caller gave up.
    async fn created(
        &self,
        shot: &OneShot<'_>,
        tx: Transaction<'static, Db>,
        written: Result<Option<i64>, sqlx::Error>,
        other: impl FnOnce(sqlx::Error) -> StoreError,
    ) -> StoreResult<Created> {
        match written {
            Ok(Some(revision)) => {
                tx.commit().await?;
                self.after_commit(shot.committed(revision));
                Ok(Created::At(revision))
            }
            Ok(None) => Err(StoreError::not_found("tenant", shot.tenant)),
            Err(sqlx::Error::Database(db)) if db.constraint() == Some("idempotency_keys_pkey") => {
                Ok(Created::RequestIdTaken)
            }
            Err(err) => Err(other(err)),
        }
    }
}

/// A batch of new users as the columns of one `UNNEST`.
#[derive(Default)]
struct UserColumns {
    id: Vec<Uuid>,
    display_name: Vec<String>,
    email: Vec<String>,
    email_key: Vec<String>,
    search_text: Vec<String>,
    roles: Vec<String>,
    time: Vec<DateTime<Utc>>,
    request_id: Vec<Option<String>>,
    fingerprint: Vec<Option<String>>,
    actor: Vec<String>,
    changes: Vec<String>,
    /// One entry per role of every user.
    role_user: Vec<Uuid>,
    role_name: Vec<&'static str>,
}

impl UserColumns {
    fn push(&mut self, pending: &PendingUser) {
        let row = Store::user_row(&pending.value);
        self.id.push(row.id);
        self.display_name.push(row.display_name.to_owned());
        self.email.push(row.email.to_owned());
        self.email_key.push(row.email_key);
        self.search_text.push(row.search_text);
        self.roles.push(row.roles);
        self.time.push(pending.time);
        self.request_id
            .push(pending.request.as_ref().map(|(r, _)| r.as_str().to_owned()));
        self.fingerprint
            .push(pending.request.as_ref().map(|(_, f)| f.clone()));
        self.actor.push(pending.ctx.actor.clone());
        self.changes.push(pending.payload.clone());
        for role in row.role_names {
            self.role_user.push(row.id);
            self.role_name.push(role);
        }
    }
}

/// An `AddGroupMembers` call waiting for its tenant's next batch.
struct PendingMembers {
    ctx: WriteContext,
    group: GroupId,
    /// As asked: a missing user is named as the call alone would name it.
    users: Vec<UserId>,
    time: DateTime<Utc>,
}

/// `AddGroupMembers` calls of one tenant written together: each judged as if it
/// came alone after the ones before it in the batch, each with its own revision
/// (or none, when it adds nothing) and change set.
impl PgStore {
    async fn add_members_at_once(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        let pending = PendingMembers {
            ctx: ctx.clone(),
            group,
            users,
            time: now(),
        };
        self.in_batch(tenant, pending).await
    }

    /// The batch in one transaction: the tenant's row lock first (so what is
    /// judged stays true until the commit), one statement probing every group,
    /// user and membership, the judgement here, then one statement writing the
    /// memberships, counters, revision and change sets. `None` when a statement
    /// failed and nothing was written.
    async fn add_members_together(
        &self,
        tenant: TenantId,
        batch: &[PendingMembers],
    ) -> Option<Vec<StoreResult<Written<Vec<UserId>>>>> {
        let mut tx = self.pool.begin().await.ok()?;
        let _turn = self.turns.take(tenant).await;
        let locked: Option<i64> =
            sqlx::query_scalar("SELECT revision FROM tenants WHERE id = $1 FOR NO KEY UPDATE")
                .bind(tenant.0)
                .fetch_optional(&mut *tx)
                .await
                .ok()?;
        let Some(mut revision) = locked else {
            return Some(
                batch
                    .iter()
                    .map(|_| Err(StoreError::not_found("tenant", tenant)))
                    .collect(),
            );
        };
        // Each call's users, sorted and distinct, as one list of (group, user).
        let asked: Vec<Vec<Uuid>> = batch
            .iter()
            .map(|w| {
                let mut users: Vec<Uuid> = w.users.iter().map(|u| u.0).collect();
                users.sort_unstable();
                users.dedup();
                users
            })
            .collect();
        let groups: Vec<Uuid> = batch.iter().map(|w| w.group.0).collect();
        let (mut pair_groups, mut pair_users) = (Vec::new(), Vec::new());
        for (waiting, users) in batch.iter().zip(&asked) {
            pair_groups.extend(std::iter::repeat_n(waiting.group.0, users.len()));
            pair_users.extend_from_slice(users);
        }
        // One index probe per row whatever the statistics say (see
        // `create_users_together`).
        let (found_groups, probes): (Vec<Uuid>, Vec<(bool, bool)>) = {
            let found_groups =
                sqlx::query_scalar("SELECT id FROM groups WHERE tenant_id = $1 AND id = ANY($2)")
                    .bind(tenant.0)
                    .bind(&groups)
                    .fetch_all(&mut *tx)
                    .await
                    .ok()?;
            let probes = sqlx::query_as(
                "SELECT u.found IS NOT NULL, m.found IS NOT NULL \
                 FROM UNNEST($2::uuid[], $3::uuid[]) WITH ORDINALITY AS p(group_id, user_id, n) \
                 LEFT JOIN LATERAL (SELECT TRUE AS found FROM users \
                     WHERE tenant_id = $1 AND id = p.user_id LIMIT 1) u ON TRUE \
                 LEFT JOIN LATERAL (SELECT TRUE AS found FROM memberships \
                     WHERE tenant_id = $1 AND group_id = p.group_id AND user_id = p.user_id LIMIT 1) m ON TRUE \
                 ORDER BY p.n",
            )
            .bind(tenant.0)
            .bind(&pair_groups)
            .bind(&pair_users)
            .fetch_all(&mut *tx)
            .await
            .ok()?;
            (found_groups, probes)
        };
        if probes.len() != pair_users.len() {
            return None;
        }

        let mut answers = Vec::with_capacity(batch.len());
        let mut claimed = std::collections::HashSet::new();
        let mut rows = MembershipColumns::default();
        let mut sets: Vec<ChangeSet> = Vec::new();
        let mut probes = probes.into_iter();
        for (p, users) in batch.iter().zip(&asked) {
            let probed: Vec<(bool, bool)> = probes.by_ref().take(users.len()).collect();
            if !found_groups.contains(&p.group.0) {
                answers.push(Err(StoreError::not_found("group", p.group)));
                continue;
            }
            let missing: Vec<Uuid> = users
                .iter()
                .zip(&probed)
                .filter(|(_, (user, _))| !user)
                .map(|(u, _)| *u)
                .collect();
            if let Some(first) = p.users.iter().find(|u| missing.contains(&u.0)) {
                answers.push(Err(StoreError::not_found("user", first)));
                continue;
            }
            // New members: not members yet, nor added by an earlier call.
            let added: Vec<UserId> = users
                .iter()
                .zip(&probed)
                .filter(|(u, (_, member))| !member && claimed.insert((p.group.0, **u)))
                .map(|(u, _)| UserId(*u))
                .collect();
            if added.is_empty() {
                // Nothing changes: no revision, as a call alone.
                answers.push(Ok(Written {
                    value: added,
                    revision,
                }));
                continue;
            }
            revision += 1;
            rows.push(p.group.0, &added, revision, p.time);
            sets.push(ChangeSet {
                tenant_id: tenant,
                revision,
                commit_time: p.time,
                actor: p.ctx.actor.clone(),
                changes: added
                    .iter()
                    .map(|user| Change::MembershipAdded {
                        membership: Membership {
                            group_id: p.group,
                            user_id: *user,
                            join_revision: revision,
                            join_time: p.time,
                        },
                    })
                    .collect(),
            });
            answers.push(Ok(Written {
                value: added,
                revision,
            }));
        }
        if sets.is_empty() {
            tx.rollback().await.ok()?;
            return Some(answers);
        }
        let payloads: Vec<String> = sets
            .iter()
            .map(|s| serde_json::to_string(&s.changes))
            .collect::<Result<_, _>>()
            .ok()?;
        let (count_groups, counts) = rows.counts();
        sqlx::query(
            "WITH bump AS (UPDATE tenants SET revision = $2 WHERE id = $1), \
             added AS (INSERT INTO memberships (tenant_id, group_id, user_id, join_revision, join_time) \
                 SELECT $1, g, u, r, t FROM UNNEST($3::uuid[], $4::uuid[], $5::bigint[], $6::timestamptz[]) \
                 AS a(g, u, r, t)), \
             counted AS (UPDATE groups SET member_count = member_count + \
                 (SELECT n FROM UNNEST($7::uuid[], $8::bigint[]) AS c(g, n) WHERE c.g = groups.id) \
                 WHERE tenant_id = $1 AND id = ANY($7)), \
             event AS (INSERT INTO change_events (tenant_id, revision, commit_time, actor, changes) \
                 SELECT $1, r, t, a, c::json \
                 FROM UNNEST($9::bigint[], $10::timestamptz[], $11::text[], $12::text[]) AS e(r, t, a, c)) \
             SELECT 1",
        )
        .bind(tenant.0)
        .bind(revision)
        .bind(&rows.group)
        .bind(&rows.user)
        .bind(&rows.revision)
        .bind(&rows.time)
        .bind(&count_groups)
        .bind(&counts)
        .bind(sets.iter().map(|s| s.revision).collect::<Vec<_>>())
        .bind(sets.iter().map(|s| s.commit_time).collect::<Vec<_>>())
        .bind(sets.iter().map(|s| s.actor.as_str()).collect::<Vec<_>>())
        .bind(&payloads)
        .execute(&mut *tx)
        .await
        .ok()?;
        if let Err(err) = tx.commit().await {
            // Whether the commit took effect is unknown: each call that wrote
            // gets the failure.
            let message = err.to_string();
            return Some(
                answers
                    .into_iter()
                    .map(|answer| match answer {
                        Ok(written) if !written.value.is_empty() => Err(StoreError::Database(
                            sqlx::Error::Protocol(format!("commit failed: {message}")),
                        )),
                        other => other,
                    })
                    .collect(),
            );
        }
        for set in sets {
            self.after_commit(Arc::new(set));
        }
        Some(answers)
    }
}

/// New memberships as the columns of one `UNNEST`.
#[derive(Default)]
struct MembershipColumns {
    group: Vec<Uuid>,
    user: Vec<Uuid>,
    revision: Vec<i64>,
    time: Vec<DateTime<Utc>>,
}

impl MembershipColumns {
    fn push(&mut self, group: Uuid, users: &[UserId], revision: Revision, time: DateTime<Utc>) {
        for user in users {
            self.group.push(group);
            self.user.push(user.0);
            self.revision.push(revision);
            self.time.push(time);
        }
    }

    /// How many members each group gains.
    fn counts(&self) -> (Vec<Uuid>, Vec<i64>) {
        let mut counts: std::collections::BTreeMap<Uuid, i64> = Default::default();
        for group in &self.group {
            *counts.entry(*group).or_default() += 1;
        }
        counts.into_iter().unzip()
    }
}

/// Completes once every caller of a batch has given up.
async fn every_caller_gone<R>(replies: &mut [tokio::sync::oneshot::Sender<R>]) {
    for reply in replies {
        reply.closed().await;
    }
}
