//! The SQLite backend, the embedded default that needs no set-up. Opens (and
//! creates) the database file in WAL mode, runs the embedded migrations
//! (`migrations/sqlite`) at start-up, and serves the shared SQL in `sql/` with
//! SQLite's types.
//!
//! SQLite has one writer at a time: a write transaction takes the database's write
//! lock at its first statement (the tenant revision bump) and others wait on the
//! busy timeout. Readers are not blocked (WAL).
//!
//! One file on purpose: everything SQLite does differently (pool, pragmas, the
//! dialect items the shared SQL uses, creates written at once) in one place.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use tokio::sync::broadcast;

use crate::domain::{Revision, TenantId};
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Transaction};
use uuid::Uuid;

use crate::domain::{ChangeSet, Group, GroupId, User, UserId, WriteContext};
use crate::storage::rows::MembershipsAdded;
use crate::storage::{StoreResult, Written};
use sql::{
    is_unique_violation, push_in_list, unique_as, Counter, Created, NewUserRow, OneShot, WriteTx,
    ID_CHUNK,
};

type Db = sqlx::Sqlite;
type DbConn = sqlx::SqliteConnection;
type Store = SqliteStore;

/// The directory on SQLite.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Announces commits to this process's feed streams. Another process writing
    /// the same file is only seen by the feed's safety poll.
    commits: broadcast::Sender<super::signal::Commit>,
    /// Turns of each tenant's writers in this process (see `turns`).
    turns: std::sync::Arc<super::turns::Turns>,
}

impl SqliteStore {
    /// Opens the database at `url` (`sqlite://path`; created if missing) and brings
    /// the schema up to date.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore {
            pool,
            commits: super::signal::channel(),
            turns: Default::default(),
        })
    }

    /// Opens `dir/directory.db`, creating the folder if needed.
    pub async fn open_in(dir: &Path, max_connections: u32) -> Result<Self, sqlx::Error> {
        std::fs::create_dir_all(dir)?;
        let url = format!("sqlite://{}", dir.join("directory.db").display());
        Self::connect(&url, max_connections).await
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Nothing is remembered: SQLite's probes are local reads.
    fn remembered_users(&self) -> Option<usize> {
        None
    }

    /// Announces a commit, with its change set, to this process's feed streams.
    fn after_commit(&self, set: std::sync::Arc<ChangeSet>) {
        let _ = self.commits.send(super::signal::Commit {
            tenant: set.tenant_id,
            revision: set.revision,
            changes: Some(set),
        });
    }

    /// A read transaction: in WAL mode it sees one consistent state from its first
    /// read on, without blocking writers.
    async fn begin_snapshot(&self) -> Result<Transaction<'static, Db>, sqlx::Error> {
        self.pool.begin().await
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

/// SQLite has no server-side cursors: snapshots page by key.
const SNAPSHOT_BY_CURSOR: bool = false;

/// The outbox's change-set parameter: text, kept as it is.
const CHANGES_PARAM: &str = "$5";

/// The size of a stored change set, in bytes of its text.
const CHANGES_BYTES: &str = "length(CAST(changes AS BLOB))";

/// The ids among `ids` of the tenant's users.
async fn users_among(
    conn: &mut DbConn,
    tenant: Uuid,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(ID_CHUNK) {
        let mut q = QueryBuilder::<Db>::new("SELECT id FROM users WHERE tenant_id = ");
        q.push_bind(tenant).push(" AND id IN (");
        push_in_list(&mut q, chunk.iter().copied());
        found.extend(q.build_query_scalar::<Uuid>().fetch_all(&mut *conn).await?);
    }
    Ok(found)
}

/// Adds the users of `users` (sorted, distinct) that exist and are not members
/// yet to `group`, and counts them. A group or user that does not exist is the
/// caller's to refuse, rolling back what was added.
async fn add_memberships(
    conn: &mut DbConn,
    tenant: Uuid,
    group: Uuid,
    users: &[Uuid],
    revision: i64,
    time: DateTime<Utc>,
) -> Result<MembershipsAdded, sqlx::Error> {
    let (group_found, found, present) = membership_plan(conn, tenant, group, users).await?;
    if !group_found || found.len() < users.len() {
        return Ok(MembershipsAdded {
            group_found,
            found,
            added: Vec::new(),
        });
    }
    let present: std::collections::HashSet<Uuid> = present.into_iter().collect();
    let added: Vec<Uuid> = users
        .iter()
        .copied()
        .filter(|u| !present.contains(u))
        .collect();
    if !added.is_empty() {
        insert_memberships(conn, tenant, group, &added, revision, time).await?;
    }
    Ok(MembershipsAdded {
        group_found,
        found,
        added,
    })
}

/// Whether the group exists, which of `users` exist, and which of them are its
/// members already.
async fn membership_plan(
    conn: &mut DbConn,
    tenant: Uuid,
    group: Uuid,
    users: &[Uuid],
) -> Result<(bool, Vec<Uuid>, Vec<Uuid>), sqlx::Error> {
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM groups WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(group)
            .fetch_optional(&mut *conn)
            .await?;
    let found = users_among(conn, tenant, users).await?;
    let mut present = Vec::new();
    for chunk in users.chunks(ID_CHUNK) {
        let mut q = QueryBuilder::<Db>::new("SELECT user_id FROM memberships WHERE tenant_id = ");
        q.push_bind(tenant)
            .push(" AND group_id = ")
            .push_bind(group)
            .push(" AND user_id IN (");
        push_in_list(&mut q, chunk.iter().copied());
        present.extend(q.build_query_scalar::<Uuid>().fetch_all(&mut *conn).await?);
    }
    Ok((exists.is_some(), found, present))
}

/// Adds `users` (none a member yet) to `group` and counts them.
async fn insert_memberships(
    conn: &mut DbConn,
    tenant: Uuid,
    group: Uuid,
    users: &[Uuid],
    revision: i64,
    time: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for chunk in users.chunks(ID_CHUNK) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO memberships (tenant_id, group_id, user_id, join_revision, join_time) ",
        );
        q.push_values(chunk, |mut row, user| {
            row.push_bind(tenant)
                .push_bind(group)
                .push_bind(*user)
                .push_bind(revision)
                .push_bind(time);
        });
        q.build().execute(&mut *conn).await?;
    }
    sqlx::query(
        "UPDATE groups SET member_count = member_count + $3 WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(group)
    .bind(users.len() as i64)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes `users` from `group`; the users removed.
async fn delete_memberships(
    conn: &mut DbConn,
    tenant: Uuid,
    group: Uuid,
    users: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut removed = Vec::with_capacity(users.len());
    for chunk in users.chunks(ID_CHUNK) {
        let mut q = QueryBuilder::<Db>::new("DELETE FROM memberships WHERE tenant_id = ");
        q.push_bind(tenant)
            .push(" AND group_id = ")
            .push_bind(group)
            .push(" AND user_id IN (");
        push_in_list(&mut q, chunk.iter().copied());
        q.push(" RETURNING user_id");
        removed.extend(q.build_query_scalar::<Uuid>().fetch_all(&mut *conn).await?);
    }
    Ok(removed)
}

/// The request ids among `ids` already used in `scope`, with what they stored.
async fn stored_requests(
    conn: &mut DbConn,
    scope: Uuid,
    ids: &[&str],
) -> Result<Vec<(String, String, Uuid, i64)>, sqlx::Error> {
    let mut stored = Vec::new();
    for chunk in ids.chunks(ID_CHUNK) {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT request_id, fingerprint, resource_id, revision FROM idempotency_keys WHERE scope = ",
        );
        q.push_bind(scope).push(" AND request_id IN (");
        push_in_list(&mut q, chunk.iter().copied());
        stored.extend(q.build_query_as().fetch_all(&mut *conn).await?);
    }
    Ok(stored)
}

/// The email keys among `keys` that users of the tenant have.
async fn emails_taken(
    conn: &mut DbConn,
    tenant: Uuid,
    keys: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    let mut taken = Vec::new();
    for chunk in keys.chunks(ID_CHUNK) {
        let mut q = QueryBuilder::<Db>::new("SELECT email_key FROM users WHERE tenant_id = ");
        q.push_bind(tenant).push(" AND email_key IN (");
        push_in_list(&mut q, chunk.iter().map(|key| key.as_str()));
        taken.extend(
            q.build_query_scalar::<String>()
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    Ok(taken)
}

/// Inserts new users (all of one tenant, at one revision) and their roles.
async fn insert_users(conn: &mut DbConn, users: &[User]) -> Result<(), sqlx::Error> {
    for user in users {
        insert_user_row(&mut *conn, &Store::user_row(user)).await?;
    }
    Ok(())
}

/// Remembers the request ids of created resources.
async fn insert_request_ids(
    conn: &mut DbConn,
    scope: Uuid,
    keys: &[(&str, &str, Uuid)],
    revision: i64,
    time: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for chunk in keys.chunks(ID_CHUNK) {
        let mut q = QueryBuilder::<Db>::new(
            "INSERT INTO idempotency_keys (scope, request_id, fingerprint, resource_id, revision, create_time) ",
        );
        q.push_values(chunk, |mut row, (request_id, fingerprint, id)| {
            row.push_bind(scope)
                .push_bind(*request_id)
                .push_bind(*fingerprint)
                .push_bind(*id)
                .push_bind(revision)
                .push_bind(time);
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts a new user and its roles (two statements, in process).
async fn insert_user_row(conn: &mut DbConn, row: &NewUserRow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (tenant_id, id, display_name, email, email_key, search_text, roles, suspended, \
         create_time, update_time, revision) VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8, $8, $9)",
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
    .execute(&mut *conn)
    .await?;
    let mut q = QueryBuilder::<Db>::new("INSERT INTO user_roles (tenant_id, user_id, role) ");
    q.push_values(&row.role_names, |mut r, role| {
        r.push_bind(row.tenant).push_bind(row.id).push_bind(*role);
    });
    q.build().execute(conn).await?;
    Ok(())
}

/// The creates of the hot path, each a transaction of its own (SQLite runs its
/// statements in process: there are no round trips to save).
impl SqliteStore {
    /// One write per call: SQLite has one writer at a time anyway.
    async fn add_members_at_once(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        self.add_members_alone(ctx, tenant, group, users).await
    }

    async fn create_user_at_once(&self, shot: &OneShot<'_>, user: &User) -> StoreResult<Created> {
        let mut w = self.begin_write(shot.tenant).await?;
        let user = User {
            revision: w.revision,
            ..user.clone()
        };
        insert_user_row(w.conn(), &Self::user_row(&user))
            .await
            .map_err(unique_as("email", Self::email_taken(&user)))?;
        self.finish_created(shot, w, user.id.0).await
    }

    async fn create_group_at_once(
        &self,
        shot: &OneShot<'_>,
        group: &Group,
    ) -> StoreResult<Created> {
        let mut w = self.begin_write(shot.tenant).await?;
        if let Some(parent) = group.parent_id {
            Self::fetch_group(w.conn(), shot.tenant, parent).await?;
        }
        let group = Group {
            revision: w.revision,
            ..group.clone()
        };
        sqlx::query(
            "INSERT INTO groups (tenant_id, id, parent_id, display_name, name_key, is_organization, \
             create_time, update_time, revision, inherited_roles) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9)",
        )
        .bind(shot.tenant.0)
        .bind(group.id.0)
        .bind(group.parent_id.map(|p| p.0))
        .bind(group.display_name.as_str())
        .bind(group.display_name.key())
        .bind(group.is_organization)
        .bind(shot.time)
        .bind(w.revision)
        .bind(group.inherited_column())
        .execute(w.conn())
        .await
        .map_err(unique_as("display_name", Self::name_taken(&group)))?;
        if let Some(parent) = group.parent_id {
            Self::adjust_count(&mut w, parent, Counter::Subgroups, 1).await?;
        }
        self.finish_created(shot, w, group.id.0).await
    }

    /// Remembers the request id (a concurrent twin's makes this one replay) and
    /// commits the create's change set.
    async fn finish_created(
        &self,
        shot: &OneShot<'_>,
        mut w: WriteTx,
        resource: Uuid,
    ) -> StoreResult<Created> {
        w.changes = shot.changes.clone();
        for change in &mut w.changes {
            change.stamp(w.revision);
        }
        if let Some((request_id, fingerprint)) = shot.request {
            let revision = w.revision;
            let remembered = Self::remember_request(
                w.conn(),
                shot.tenant.0,
                &Some(request_id.clone()),
                fingerprint,
                resource,
                revision,
            )
            .await;
            match remembered {
                Err(err) if is_unique_violation(&err) => return Ok(Created::RequestIdTaken),
                other => other?,
            }
        }
        let written = self.finish(shot.ctx, w, ()).await?;
        Ok(Created::At(written.revision))
    }
}
