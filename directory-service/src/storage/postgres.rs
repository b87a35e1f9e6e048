//! The PostgreSQL backend, for production. Connects a pool, runs the embedded
//! migrations (`migrations/postgres`) at start-up, and serves the shared SQL in
//! `sql/` with PostgreSQL's types. Concurrent writes of one tenant are written
//! together (group commit): the runner in `postgres/group_commit.rs`, the creates
//! in `postgres/batched_creates.rs`, the member additions in
//! `postgres/batched_members.rs`.
//!
//! One file on purpose: everything PostgreSQL does differently (pool, notifications,
//! the dialect items the shared SQL uses, creates written at once) in one place; the
//! batched writers are in `postgres/`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::broadcast;

use super::batches::{Batches, Waiting};
use super::signal;

mod batched_creates;
mod batched_members;
mod group_commit;
mod known_users;

use crate::domain::{Revision, TenantId};
use chrono::{DateTime, Utc};
use sqlx::Transaction;
use uuid::Uuid;

use crate::domain::{
    Change, ChangeSet, Group, GroupId, Membership, RequestId, User, UserId, WriteContext,
};
use crate::storage::rows::MembershipsAdded;
use crate::storage::{StoreError, StoreResult, Written};
use batched_members::PendingMembers;
use group_commit::{PendingCreate, PendingGroup, PendingUser};
use sql::{now, unique_as, Created, NewUserRow, OneShot};

/// The schema of the directory on PostgreSQL (also what test templates are migrated
/// with).
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

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
    /// The users this process knows to exist (see `known_users`).
    known_users: Arc<known_users::KnownUsers>,
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
        MIGRATIONS.run(&pool).await?;
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
            known_users: Arc::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How many users this process remembers as existing (`known_users`).
    fn remembered_users(&self) -> Option<usize> {
        Some(self.known_users.remembered())
    }

    /// Announces a commit: at once to this process (with its change set), and
    /// with NOTIFY (after the commit, off the caller's path) to every replica.
    fn after_commit(&self, set: Arc<ChangeSet>) {
        let (tenant, revision) = (set.tenant_id, set.revision);
        self.known_users.committed(&set);
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

// The shared SQL, compiled once per backend with this backend's sqlx types.
#[allow(
    clippy::duplicate_mod,
    reason = "mounted by both backends on purpose: the same SQL over each backend's types"
)]
#[path = "sql/mod.rs"]
mod sql;

// What the two databases do differently, used by the shared SQL above.

/// Snapshots read users, groups and memberships through server-side cursors.
const SNAPSHOT_BY_CURSOR: bool = true;

/// The outbox's change-set parameter: the encoder's text, stored as it is.
const CHANGES_PARAM: &str = "$5";

/// The size of a stored change set, in bytes of its text.
const CHANGES_BYTES: &str = "octet_length(changes)";

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
        crate::storage::events::encode(&self.changes)
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

/// The creates of the hot path, each one statement: the revision bump, the rows,
/// the request id and the change set (see `OneShot`). Concurrent `CreateUser`
/// calls of one tenant are written together (see `batches`).
impl PgStore {
    async fn create_user_at_once(&self, shot: &OneShot<'_>, user: &User) -> StoreResult<Created> {
        self.in_batch(shot.tenant, PendingCreate::new(shot, user)?)
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
                 SELECT $1, revision, $8, $12, $13 FROM bump) \
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
                 create_time, update_time, revision, inherited_roles) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $7, revision, $12 FROM bump RETURNING id, revision), \
             parent AS (UPDATE groups SET subgroup_count = subgroup_count + 1 \
                 WHERE tenant_id = $1 AND id = $3 AND EXISTS (SELECT 1 FROM new_group)), \
             request AS (INSERT INTO idempotency_keys (scope, request_id, fingerprint, resource_id, revision, \
                 create_time) SELECT $1, $8, $9, id, revision, $7 FROM new_group WHERE $8::text IS NOT NULL), \
             event AS (INSERT INTO change_events (tenant_id, revision, commit_time, actor, changes) \
                 SELECT $1, revision, $7, $10, $11 FROM bump) \
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
        .bind(group.inherited_column())
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
