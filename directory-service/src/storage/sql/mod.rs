//! The directory's SQL, shared by both backends, split by aggregate: tenants,
//! users, groups, memberships with administrators, group settings (inherited
//! roles and catalogs), and the outbox the change feed reads.
//!
//! Each backend module (`postgres.rs`, `sqlite.rs`) mounts this folder as its
//! child `sql` (`#[path = "sql/mod.rs"]`) after defining `Db` (the sqlx
//! database), `DbConn` (its connection type), `Store` (the backend's store, with
//! a `pool` field and an `after_commit` method) and what the two databases do
//! differently (the dialect items at the end of each backend file). The folder is
//! compiled once per backend, so every query runs with concrete sqlx types while
//! the logic exists once; the modules reach the backend's items through
//! `use super::*`, as the code of one module would.
//!
//! Write transactions all follow one pattern (see `storage/mod.rs`):
//! `begin_write` bumps the tenant revision first (serializing the tenant's writers),
//! the operation reads and checks under that lock, writes, and `finish` appends the
//! change set to the outbox and commits, or rolls back when nothing changed. The
//! business rules a write checks are in `domain::rules`; this code reads the facts
//! they need under the tenant's lock.
//!
//! This file is the write plumbing every aggregate shares (the write transaction,
//! request-id replay, id lists, the common reads), which is why it is the longest.

mod groups;
mod members;
mod outbox;
mod settings;
mod tenants;
mod users;

use super::*;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cohort_shared::catalog::{Role, Tool};
use sqlx::{QueryBuilder, Transaction};
use uuid::Uuid;

use crate::domain::rules;
use crate::domain::{
    CatalogAssignment, CatalogId, Change, ChangeSet, Etag, Group, GroupFilter, GroupId,
    GroupUpdate, Membership, NewGroup, NewTenant, NewUser, Page, PageRequest, RequestId, Tenant,
    User, UserFilter, UserId, UserState, UserUpdate, WriteContext,
};
use crate::storage::rows::{
    convert_all, encode_roles, CatalogRow, ChangeRow, GroupRow, MembershipRow, MembershipsAdded,
    TenantRow, UserGroupRow, UserRow,
};
use crate::storage::{
    events, DirectoryStore, GroupSettingsStore, GroupStore, MembershipStore, Outbox,
    SnapshotReader, StoreError, StoreResult, TenantStore, UserStore, Written,
};

const USER_COLUMNS: &str =
    "u.id, u.tenant_id, u.display_name, u.email, u.roles, u.suspended, u.create_time, u.update_time, u.revision";
const GROUP_COLUMNS: &str = "g.id, g.tenant_id, g.parent_id, g.display_name, g.is_organization, g.subgroup_count, \
     g.member_count, g.administrator_count, g.inherited_roles, g.create_time, g.update_time, g.revision";

/// Most ids bound in one `IN (...)` list (both databases cap the parameters of a
/// statement).
pub(in crate::storage) const ID_CHUNK: usize = 500;

/// Groups whose members one statement of `list_members` reads: a range read and
/// four parameters each.
pub(in crate::storage) const GROUPS_PER_MEMBER_QUERY: usize = 100;

/// Binds `values` one parameter each and closes the `IN (` list the query ends
/// with. Callers chunk the values by [`ID_CHUNK`].
pub(in crate::storage) fn push_in_list<'a, T>(
    q: &mut QueryBuilder<'a, Db>,
    values: impl IntoIterator<Item = T>,
) where
    T: 'a + sqlx::Encode<'a, Db> + sqlx::Type<Db>,
{
    let mut list = q.separated(", ");
    for value in values {
        list.push_bind(value);
    }
    q.push(")");
}

/// The idempotency scope of tenant creation (tenant-scoped creates use the tenant id).
const GLOBAL_SCOPE: Uuid = Uuid::nil();

/// A create written at once (the backends' `create_*_at_once`): on PostgreSQL one
/// statement bumps the revision, writes the rows, the request id and the change
/// set, so the tenant's lock is held for that statement alone, not across round
/// trips.
pub(in crate::storage) struct OneShot<'a> {
    pub(in crate::storage) ctx: &'a WriteContext,
    pub(in crate::storage) tenant: TenantId,
    /// The request id and the request's fingerprint, to remember.
    pub(in crate::storage) request: Option<(&'a RequestId, &'a str)>,
    pub(in crate::storage) time: DateTime<Utc>,
    /// The change set, its entities' revisions left at 0 (see `ChangeSet::stamp`).
    pub(in crate::storage) changes: Vec<Change>,
}

/// How a create written at once ended.
pub(in crate::storage) enum Created {
    /// Committed at this revision.
    At(Revision),
    /// A concurrent call with the same request id committed first: replay it.
    RequestIdTaken,
}

/// What a create written at once means for its caller's two tries: committed at
/// a revision, or `None` to try again and replay the concurrent call with the
/// same request id that came first. That twin can show as its request id taken,
/// or, on the first try, as its email or name taken (the row's key is checked
/// before the request id's).
fn created_or_retry(
    created: StoreResult<Created>,
    first_try: bool,
    has_request_id: bool,
) -> StoreResult<Option<Revision>> {
    match created {
        Ok(Created::At(revision)) => Ok(Some(revision)),
        Ok(Created::RequestIdTaken) => Ok(None),
        Err(StoreError::AlreadyExists { .. }) if first_try && has_request_id => Ok(None),
        Err(err) => Err(err),
    }
}

/// A new user's row, as the backends' `insert_user_row` writes it.
pub(in crate::storage) struct NewUserRow<'a> {
    pub(in crate::storage) tenant: Uuid,
    pub(in crate::storage) id: Uuid,
    pub(in crate::storage) display_name: &'a str,
    pub(in crate::storage) email: &'a str,
    pub(in crate::storage) email_key: String,
    pub(in crate::storage) search_text: String,
    pub(in crate::storage) roles: String,
    pub(in crate::storage) role_names: Vec<&'static str>,
    pub(in crate::storage) time: DateTime<Utc>,
    pub(in crate::storage) revision: Revision,
}

/// An open write transaction on one tenant, at the revision it will commit as.
pub(in crate::storage) struct WriteTx {
    pub(in crate::storage) tx: Transaction<'static, Db>,
    pub(in crate::storage) tenant: TenantId,
    pub(in crate::storage) revision: Revision,
    pub(in crate::storage) changes: Vec<Change>,
    /// This process's turn for the tenant, given back after the transaction ends
    /// (fields drop in order).
    pub(in crate::storage) _turn: crate::storage::turns::Turn,
}

impl WriteTx {
    pub(in crate::storage) fn conn(&mut self) -> &mut DbConn {
        &mut self.tx
    }
}

pub(in crate::storage) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Maps a unique violation to ALREADY_EXISTS on `field`; other errors pass through.
pub(in crate::storage) fn unique_as(
    field: &'static str,
    message: impl FnOnce() -> String,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| {
        if is_unique_violation(&err) {
            StoreError::AlreadyExists {
                field: field.to_owned(),
                message: message(),
            }
        } else {
            StoreError::Database(err)
        }
    }
}

fn check_etag(kind: &'static str, etag: Option<Etag>, current: Revision) -> StoreResult<()> {
    match etag {
        Some(Etag(expected)) if expected != current => Err(StoreError::EtagMismatch {
            kind,
            expected,
            current,
        }),
        _ => Ok(()),
    }
}

/// Turns a keyset cursor back into an id; it was written by this service.
fn after_id(page: &PageRequest) -> StoreResult<Option<Uuid>> {
    page.after()
        .map(|raw| {
            Uuid::try_parse(raw).map_err(|_| StoreError::InvalidArgument {
                field: "page_token".into(),
                message: "is not a token this service issued".into(),
            })
        })
        .transpose()
}

/// A LIKE pattern matching `needle` anywhere, with LIKE's wildcards escaped.
fn contains_pattern(needle: &str) -> String {
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The time a write records: to the microsecond, as PostgreSQL keeps it, so that
/// what a write returns is what a later read returns.
pub(in crate::storage) fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

pub(in crate::storage) fn search_text(user_name: &str, email: &str) -> String {
    format!("{}\n{}", user_name.to_lowercase(), email.to_lowercase())
}

// ------------------------------------------------------------------ shared helpers

impl Store {
    /// Opens a write transaction on `tenant`, bumping its revision first.
    pub(in crate::storage) async fn begin_write(&self, tenant: TenantId) -> StoreResult<WriteTx> {
        let mut tx = self.pool.begin().await?;
        let turn = self.turns.take(tenant).await;
        let revision: Option<i64> = sqlx::query_scalar(
            "UPDATE tenants SET revision = revision + 1 WHERE id = $1 RETURNING revision",
        )
        .bind(tenant.0)
        .fetch_optional(&mut *tx)
        .await?;
        let revision = revision.ok_or_else(|| StoreError::not_found("tenant", tenant))?;
        Ok(WriteTx {
            tx,
            tenant,
            revision,
            changes: Vec::new(),
            _turn: turn,
        })
    }

    /// Commits the transaction with its change set, or rolls it back when it
    /// changed nothing. Returns the tenant's revision after the call.
    pub(in crate::storage) async fn finish<T>(
        &self,
        ctx: &WriteContext,
        mut w: WriteTx,
        value: T,
    ) -> StoreResult<Written<T>> {
        if w.changes.is_empty() {
            w.tx.rollback().await?;
            return Ok(Written {
                value,
                revision: w.revision - 1,
            });
        }
        let payload = events::encode(&w.changes)?;
        let set = ChangeSet {
            tenant_id: w.tenant,
            revision: w.revision,
            commit_time: now(),
            actor: ctx.actor.clone(),
            changes: std::mem::take(&mut w.changes),
        };
        sqlx::query(&format!(
            "INSERT INTO change_events (tenant_id, revision, commit_time, actor, changes) \
             VALUES ($1, $2, $3, $4, {CHANGES_PARAM})"
        ))
        .bind(set.tenant_id.0)
        .bind(set.revision)
        .bind(set.commit_time)
        .bind(&set.actor)
        .bind(payload)
        .execute(&mut *w.tx)
        .await?;
        w.tx.commit().await?;
        self.after_commit(std::sync::Arc::new(set));
        Ok(Written {
            value,
            revision: w.revision,
        })
    }

    /// The earlier result of a create with the same request id, if there was one.
    async fn replayed(
        conn: &mut DbConn,
        scope: Uuid,
        request_id: &Option<RequestId>,
        fingerprint: &str,
    ) -> StoreResult<Option<(Uuid, Revision)>> {
        let Some(request_id) = request_id else {
            return Ok(None);
        };
        let found: Option<(String, Uuid, i64)> = sqlx::query_as(
            "SELECT fingerprint, resource_id, revision FROM idempotency_keys WHERE scope = $1 AND request_id = $2",
        )
        .bind(scope)
        .bind(request_id.as_str())
        .fetch_optional(conn)
        .await?;
        match found {
            None => Ok(None),
            Some((stored, id, revision)) if stored == fingerprint => Ok(Some((id, revision))),
            Some(_) => Err(StoreError::InvalidArgument {
                field: "request_id".into(),
                message: "was already used for a different request".into(),
            }),
        }
    }

    pub(in crate::storage) async fn remember_request(
        conn: &mut DbConn,
        scope: Uuid,
        request_id: &Option<RequestId>,
        fingerprint: &str,
        resource: Uuid,
        revision: Revision,
    ) -> Result<(), sqlx::Error> {
        let Some(request_id) = request_id else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, request_id, fingerprint, resource_id, revision, create_time) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(scope)
        .bind(request_id.as_str())
        .bind(fingerprint)
        .bind(resource)
        .bind(revision)
        .bind(now())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Per user of a batch, the earlier result of its request id, if it was used
    /// before for the same user; an error naming the user if it was used for
    /// another.
    async fn replayed_batch(
        conn: &mut DbConn,
        scope: Uuid,
        new: &[NewUser],
        fingerprints: &[String],
    ) -> StoreResult<Vec<Option<(Uuid, Revision)>>> {
        let asked: Vec<&str> = new
            .iter()
            .filter_map(|n| n.request_id.as_ref().map(|r| r.as_str()))
            .collect();
        let stored: std::collections::HashMap<String, (String, Uuid, i64)> = if asked.is_empty() {
            Default::default()
        } else {
            stored_requests(conn, scope, &asked)
                .await?
                .into_iter()
                .map(|(r, f, id, rev)| (r, (f, id, rev)))
                .collect()
        };
        new.iter()
            .zip(fingerprints)
            .enumerate()
            .map(|(i, (n, fingerprint))| {
                let Some(request_id) = &n.request_id else {
                    return Ok(None);
                };
                match stored.get(request_id.as_str()) {
                    None => Ok(None),
                    Some((first, id, revision)) if first == fingerprint => {
                        Ok(Some((*id, *revision)))
                    }
                    Some(_) => Err(StoreError::InvalidArgument {
                        field: format!("users[{i}].request_id"),
                        message: "was already used for a different request".into(),
                    }),
                }
            })
            .collect()
    }

    async fn fetch_user(conn: &mut DbConn, tenant: TenantId, id: UserId) -> StoreResult<User> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = $1 AND u.id = $2"
        ))
        .bind(tenant.0)
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
        row.ok_or_else(|| StoreError::not_found("user", id))?
            .try_into()
    }

    pub(in crate::storage) async fn fetch_group(
        conn: &mut DbConn,
        tenant: TenantId,
        id: GroupId,
    ) -> StoreResult<Group> {
        let row: Option<GroupRow> = sqlx::query_as(&format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.tenant_id = $1 AND g.id = $2"
        ))
        .bind(tenant.0)
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
        row.ok_or_else(|| StoreError::not_found("group", id))?
            .try_into()
    }

    /// Why a read found nothing, when it is not "nothing there": NOT_FOUND for
    /// a tenant that does not exist, or for a group (named by a filter) that is
    /// not in it. Asked only once a read has come back empty or not found, so
    /// reads that find something pay nothing for it.
    async fn explain_nothing(
        conn: &mut DbConn,
        tenant: TenantId,
        group: Option<GroupId>,
    ) -> StoreResult<()> {
        let tenant_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)")
                .bind(tenant.0)
                .fetch_one(&mut *conn)
                .await?;
        if !tenant_exists {
            return Err(StoreError::not_found("tenant", tenant));
        }
        if let Some(group) = group {
            Self::fetch_group(conn, tenant, group).await?;
        }
        Ok(())
    }

    /// A page of a filtered listing, whose query `q` has its filters pushed: the
    /// rows after the page token in the order of `{alias}.id`, one more than the
    /// page to know whether another follows. An empty page is explained (an
    /// unknown tenant, or group named by the filter, is NOT_FOUND, not an empty
    /// list).
    async fn list_page<R, T>(
        &self,
        mut q: QueryBuilder<'_, Db>,
        alias: &str,
        tenant: TenantId,
        filter_group: Option<GroupId>,
        page: &PageRequest,
        token_of: impl Fn(&T) -> String,
    ) -> StoreResult<Page<T>>
    where
        R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
        T: TryFrom<R, Error = StoreError>,
    {
        if let Some(after) = after_id(page)? {
            q.push(format_args!(" AND {alias}.id > ")).push_bind(after);
        }
        q.push(format_args!(" ORDER BY {alias}.id LIMIT "))
            .push_bind(page.fetch_limit());
        let mut conn = self.pool.acquire().await?;
        let rows = q.build_query_as::<R>().fetch_all(&mut *conn).await?;
        if rows.is_empty() {
            Self::explain_nothing(&mut conn, tenant, filter_group).await?;
        }
        Ok(page.page(convert_all(rows)?, token_of))
    }

    /// `read`'s result, but a NOT_FOUND of something in an unknown tenant is
    /// the tenant's.
    async fn in_known_tenant<T>(
        conn: &mut DbConn,
        tenant: TenantId,
        read: StoreResult<T>,
    ) -> StoreResult<T> {
        match read {
            Err(StoreError::NotFound { .. }) => {
                Self::explain_nothing(conn, tenant, None).await?;
                read
            }
            read => read,
        }
    }

    /// The earlier result of a create with the same request id, read before the
    /// write (a concurrent twin is caught by the request id's key at commit).
    async fn replay_of(
        &self,
        tenant: TenantId,
        request_id: &Option<RequestId>,
        fingerprint: &str,
    ) -> StoreResult<Option<(Uuid, Revision)>> {
        if request_id.is_none() {
            return Ok(None);
        }
        let mut conn = self.pool.acquire().await?;
        Self::replayed(&mut conn, tenant.0, request_id, fingerprint).await
    }
}

/// The counters a group keeps.
#[derive(Clone, Copy)]
pub(in crate::storage) enum Counter {
    Subgroups,
    Members,
}

impl Counter {
    pub(in crate::storage) fn as_str(self) -> &'static str {
        match self {
            Counter::Subgroups => "subgroup_count",
            Counter::Members => "member_count",
        }
    }
}

pub(in crate::storage) fn fingerprint(input: &impl serde::Serialize) -> String {
    serde_json::to_string(input).expect("domain inputs serialize")
}

impl DirectoryStore for Store {
    fn known_users(&self) -> Option<usize> {
        self.remembered_users()
    }

    fn connections(&self) -> crate::storage::Connections {
        crate::storage::Connections {
            open: self.pool.size(),
            idle: self.pool.num_idle() as u32,
            max: self.pool.options().get_max_connections(),
        }
    }
}
