// The directory's SQL, shared by both backends.
//
// This file is not a module of its own: `postgres.rs` and `sqlite.rs` each
// `include!` it after defining `Db` (the sqlx database), `DbConn` (its connection
// type) and `Store` (the backend's store struct, with a `pool` field and an
// `after_commit` method). It is compiled once per backend, so every query runs with
// concrete sqlx types, while the logic exists once.
//
// Write transactions all follow one pattern (see `storage/mod.rs`):
// `begin_write` bumps the tenant revision first (serializing the tenant's writers),
// the operation reads and checks under that lock, writes, and `finish` appends the
// change set to the outbox and commits, or rolls back when nothing changed.

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
use crate::storage::{events, DirectoryStore, SnapshotReader, StoreError, StoreResult, Written};

const USER_COLUMNS: &str =
    "u.id, u.tenant_id, u.display_name, u.email, u.roles, u.suspended, u.create_time, u.update_time, u.revision";
const GROUP_COLUMNS: &str = "g.id, g.tenant_id, g.parent_id, g.display_name, g.is_organization, g.subgroup_count, \
     g.member_count, g.administrator_count, g.inherited_roles, g.create_time, g.update_time, g.revision";

/// Most ids bound in one `IN (...)` list (both databases cap the parameters of a
/// statement).
const ID_CHUNK: usize = 500;

/// Binds `values` one parameter each and closes the `IN (` list the query ends
/// with. Callers chunk the values by [`ID_CHUNK`].
fn push_in_list<'a, T>(q: &mut QueryBuilder<'a, Db>, values: impl IntoIterator<Item = T>)
where
    T: 'a + sqlx::Encode<'a, Db> + sqlx::Type<Db>,
{
    let mut list = q.separated(", ");
    for value in values {
        list.push_bind(value);
    }
    q.push(")");
}

/// How a write changes a group's administrator set (already checked), which also
/// decides how the change is recorded.
#[derive(Debug, Clone)]
enum AdministratorEdit {
    Replace(Vec<UserId>),
    Add(Vec<UserId>),
    Remove(Vec<UserId>),
}

/// The idempotency scope of tenant creation (tenant-scoped creates use the tenant id).
const GLOBAL_SCOPE: Uuid = Uuid::nil();

/// A create written at once (the backends' `create_*_at_once`): on PostgreSQL one
/// statement bumps the revision, writes the rows, the request id and the change
/// set, so the tenant's lock is held for that statement alone, not across round
/// trips.
struct OneShot<'a> {
    ctx: &'a WriteContext,
    tenant: TenantId,
    /// The request id and the request's fingerprint, to remember.
    request: Option<(&'a RequestId, &'a str)>,
    time: DateTime<Utc>,
    /// The change set, its entities' revisions left at 0 (see `ChangeSet::stamp`).
    changes: Vec<Change>,
}

/// How a create written at once ended.
enum Created {
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
struct NewUserRow<'a> {
    tenant: Uuid,
    id: Uuid,
    display_name: &'a str,
    email: &'a str,
    email_key: String,
    search_text: String,
    roles: String,
    role_names: Vec<&'static str>,
    time: DateTime<Utc>,
    revision: Revision,
}

/// An open write transaction on one tenant, at the revision it will commit as.
struct WriteTx {
    tx: Transaction<'static, Db>,
    tenant: TenantId,
    revision: Revision,
    changes: Vec<Change>,
    /// This process's turn for the tenant, given back after the transaction ends
    /// (fields drop in order).
    _turn: crate::storage::turns::Turn,
}

impl WriteTx {
    fn conn(&mut self) -> &mut DbConn {
        &mut self.tx
    }
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Maps a unique violation to ALREADY_EXISTS on `field`; other errors pass through.
fn unique_as(
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
fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

fn search_text(user_name: &str, email: &str) -> String {
    format!("{}\n{}", user_name.to_lowercase(), email.to_lowercase())
}

// ------------------------------------------------------------------ shared helpers

impl Store {
    /// Opens a write transaction on `tenant`, bumping its revision first.
    async fn begin_write(&self, tenant: TenantId) -> StoreResult<WriteTx> {
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
    async fn finish<T>(
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

    /// Adds members in a write of their own (the backends' `add_members_at_once`
    /// on SQLite, and on PostgreSQL for a call that comes alone).
    async fn add_members_alone(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        let mut w = self.begin_write(tenant).await?;
        let mut asked: Vec<Uuid> = users.iter().map(|u| u.0).collect();
        asked.sort();
        asked.dedup();
        let now = now();
        let revision = w.revision;
        let MembershipsAdded {
            group_found,
            found,
            added,
        } = add_memberships(w.conn(), tenant.0, group.0, &asked, revision, now).await?;
        if !group_found {
            return Err(StoreError::not_found("group", group));
        }
        if found.len() < asked.len() {
            let found: std::collections::HashSet<Uuid> = found.into_iter().collect();
            if let Some(missing) = users.iter().find(|u| !found.contains(&u.0)) {
                return Err(StoreError::not_found("user", missing));
            }
        }
        let added: Vec<UserId> = added.into_iter().map(UserId).collect();
        w.changes
            .extend(added.iter().map(|user| Change::MembershipAdded {
                membership: Membership {
                    group_id: group,
                    user_id: *user,
                    join_revision: revision,
                    join_time: now,
                },
            }));
        self.finish(ctx, w, added).await
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

    async fn remember_request(
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

    /// ALREADY_EXISTS naming the first of the batch's users (at `indexes`) whose
    /// email a user of the tenant already has.
    async fn refuse_taken_emails(
        conn: &mut DbConn,
        tenant: TenantId,
        new: &[NewUser],
        indexes: &[usize],
    ) -> StoreResult<()> {
        let keys: Vec<String> = indexes.iter().map(|i| new[*i].email.key()).collect();
        let taken: std::collections::HashSet<String> = emails_taken(conn, tenant.0, &keys)
            .await?
            .into_iter()
            .collect();
        match indexes
            .iter()
            .find(|i| taken.contains(&new[**i].email.key()))
        {
            None => Ok(()),
            Some(i) => Err(StoreError::AlreadyExists {
                field: format!("users[{i}].email"),
                message: format!(
                    "a user with email {} already exists in this tenant",
                    new[*i].email.as_str()
                ),
            }),
        }
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

    async fn fetch_group(conn: &mut DbConn, tenant: TenantId, id: GroupId) -> StoreResult<Group> {
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

    /// Fails with NOT_FOUND naming the first of `users` that is not in the tenant.
    async fn require_users(
        conn: &mut DbConn,
        tenant: TenantId,
        users: &[UserId],
    ) -> StoreResult<Vec<User>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = "
        ));
        q.push_bind(tenant.0).push(" AND u.id IN (");
        push_in_list(&mut q, users.iter().map(|user| user.0));
        let found: Vec<User> = convert_all(q.build_query_as::<UserRow>().fetch_all(conn).await?)?;
        let ids: std::collections::HashSet<UserId> = found.iter().map(|u| u.id).collect();
        match users.iter().find(|id| !ids.contains(id)) {
            Some(missing) => Err(StoreError::not_found("user", missing)),
            None => Ok(found),
        }
    }

    /// Fails with NOT_FOUND naming the first of `users` that is not in the tenant
    /// (reading only ids).
    async fn require_user_ids(
        conn: &mut DbConn,
        tenant: TenantId,
        users: &[UserId],
    ) -> StoreResult<()> {
        let asked: Vec<Uuid> = users.iter().map(|u| u.0).collect();
        let found: std::collections::HashSet<Uuid> = users_among(conn, tenant.0, &asked)
            .await?
            .into_iter()
            .collect();
        match users.iter().find(|id| !found.contains(&id.0)) {
            Some(missing) => Err(StoreError::not_found("user", missing)),
            None => Ok(()),
        }
    }

    /// The groups a user administers, in id order.
    async fn administered_groups(
        conn: &mut DbConn,
        tenant: TenantId,
        user: UserId,
    ) -> StoreResult<Vec<GroupId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT group_id FROM group_administrators WHERE tenant_id = $1 AND user_id = $2 ORDER BY group_id",
        )
        .bind(tenant.0)
        .bind(user.0)
        .fetch_all(conn)
        .await?;
        Ok(ids.into_iter().map(GroupId).collect())
    }

    /// Refuses a change that would leave the tenant without an active Global Admin
    /// ADMIN (`user` is the one losing the role or access).
    async fn keep_an_administrator(
        conn: &mut DbConn,
        tenant: TenantId,
        user: &User,
    ) -> StoreResult<()> {
        if !rules::is_active_admin(user) {
            return Ok(());
        }
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM user_roles r JOIN users u \
               ON u.tenant_id = r.tenant_id AND u.id = r.user_id \
             WHERE r.tenant_id = $1 AND r.role = $2 AND r.user_id <> $3 AND u.suspended = $4 LIMIT 1) AS other",
        )
        .bind(tenant.0)
        .bind(Role::GlobalAdminAdmin.as_str())
        .bind(user.id.0)
        .bind(false)
        .fetch_one(conn)
        .await?;
        Ok(rules::keep_an_administrator(user, others)?)
    }

    /// A new user, as `new` describes it, at `revision`.
    fn new_user(tenant: TenantId, new: &NewUser, time: DateTime<Utc>, revision: Revision) -> User {
        User {
            id: UserId::generate(),
            tenant_id: tenant,
            display_name: new.display_name.clone(),
            email: new.email.clone(),
            roles: new.roles.clone(),
            state: UserState::Active,
            create_time: time,
            update_time: time,
            revision,
        }
    }

    /// The row of a new user, as the backends' `insert_user_row` writes it.
    fn user_row(user: &User) -> NewUserRow<'_> {
        NewUserRow {
            tenant: user.tenant_id.0,
            id: user.id.0,
            display_name: user.display_name.as_str(),
            email: user.email.as_str(),
            email_key: user.email.key(),
            search_text: search_text(user.display_name.as_str(), user.email.as_str()),
            roles: encode_roles(user.roles.roles().iter().copied()),
            role_names: user.roles.roles().iter().map(|r| r.as_str()).collect(),
            time: user.create_time,
            revision: user.revision,
        }
    }

    fn name_taken(group: &Group) -> impl FnOnce() -> String + '_ {
        move || {
            format!(
                "a sibling group named {} already exists",
                group.display_name.as_str()
            )
        }
    }

    fn email_taken(user: &User) -> impl FnOnce() -> String + '_ {
        move || {
            format!(
                "a user with email {} already exists in this tenant",
                user.email.as_str()
            )
        }
    }

    /// Inserts a new user (at the transaction's revision) and records the change.
    async fn insert_user(w: &mut WriteTx, user: &User) -> StoreResult<()> {
        debug_assert_eq!(user.revision, w.revision);
        insert_user_row(w.conn(), &Self::user_row(user))
            .await
            .map_err(unique_as("email", Self::email_taken(user)))?;
        w.changes.push(Change::UserUpserted { user: user.clone() });
        Ok(())
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

    async fn write_user_roles(w: &mut WriteTx, id: UserId, roles: &[Role]) -> StoreResult<()> {
        sqlx::query("DELETE FROM user_roles WHERE tenant_id = $1 AND user_id = $2")
            .bind(w.tenant.0)
            .bind(id.0)
            .execute(w.conn())
            .await?;
        let mut q = QueryBuilder::<Db>::new("INSERT INTO user_roles (tenant_id, user_id, role) ");
        q.push_values(roles, |mut row, role| {
            row.push_bind(w.tenant.0)
                .push_bind(id.0)
                .push_bind(role.as_str());
        });
        q.build().execute(w.conn()).await?;
        Ok(())
    }

    /// Writes a user's changed fields and records the change.
    async fn save_user(w: &mut WriteTx, user: &mut User) -> StoreResult<()> {
        user.update_time = now();
        user.revision = w.revision;
        let email_taken = || {
            format!(
                "a user with email {} already exists in this tenant",
                user.email.as_str()
            )
        };
        sqlx::query(
            "UPDATE users SET display_name = $3, email = $4, email_key = $5, search_text = $6, roles = $7, \
             suspended = $8, update_time = $9, revision = $10 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(w.tenant.0)
        .bind(user.id.0)
        .bind(user.display_name.as_str())
        .bind(user.email.as_str())
        .bind(user.email.key())
        .bind(search_text(user.display_name.as_str(), user.email.as_str()))
        .bind(encode_roles(user.roles.roles().iter().copied()))
        .bind(user.state == UserState::Suspended)
        .bind(user.update_time)
        .bind(user.revision)
        .execute(w.conn())
        .await
        .map_err(unique_as("email", email_taken))?;
        w.changes.push(Change::UserUpserted { user: user.clone() });
        Ok(())
    }

    /// Writes a group's own fields and records the change.
    async fn save_group(w: &mut WriteTx, group: &mut Group) -> StoreResult<()> {
        group.update_time = now();
        group.revision = w.revision;
        let name_taken = || {
            format!(
                "a sibling group named {} already exists",
                group.display_name.as_str()
            )
        };
        sqlx::query(
            "UPDATE groups SET display_name = $3, name_key = $4, parent_id = $5, is_organization = $6, \
             inherited_roles = $7, update_time = $8, revision = $9 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(w.tenant.0)
        .bind(group.id.0)
        .bind(group.display_name.as_str())
        .bind(group.display_name.key())
        .bind(group.parent_id.map(|p| p.0))
        .bind(group.is_organization)
        .bind(encode_roles(group.inherited_roles.iter().map(|(_, role)| *role)))
        .bind(group.update_time)
        .bind(group.revision)
        .execute(w.conn())
        .await
        .map_err(unique_as("display_name", name_taken))?;
        Ok(())
    }

    /// Adds `delta` to one of a group's counters.
    async fn adjust_count(
        w: &mut WriteTx,
        group: GroupId,
        column: Counter,
        delta: i64,
    ) -> StoreResult<()> {
        if delta == 0 {
            return Ok(());
        }
        let column = column.as_str();
        sqlx::query(&format!(
            "UPDATE groups SET {column} = {column} + $3 WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(w.tenant.0)
        .bind(group.0)
        .bind(delta)
        .execute(w.conn())
        .await?;
        Ok(())
    }

    /// The ids of a group and all its descendants, the group first, level by level.
    ///
    /// Walked here rather than with `WITH RECURSIVE`: PostgreSQL cannot estimate a
    /// recursive query's size and hash-joins it against whole tables (a scan of the
    /// tenant's groups per level); each level here is one lookup on
    /// `groups_by_parent`.
    async fn subtree(
        conn: &mut DbConn,
        tenant: TenantId,
        root: GroupId,
    ) -> StoreResult<Vec<GroupId>> {
        let mut all = vec![root];
        let mut level = vec![root.0];
        while !level.is_empty() {
            let mut next: Vec<Uuid> = Vec::new();
            for chunk in level.chunks(ID_CHUNK) {
                let mut q = QueryBuilder::<Db>::new("SELECT id FROM groups WHERE tenant_id = ");
                q.push_bind(tenant.0).push(" AND parent_id IN (");
                push_in_list(&mut q, chunk.iter().copied());
                q.push(" ORDER BY id");
                next.extend(q.build_query_scalar::<Uuid>().fetch_all(&mut *conn).await?);
            }
            all.extend(next.iter().copied().map(GroupId));
            level = next;
        }
        Ok(all)
    }

    /// Whether `ancestor` is `group` or one of its ancestors: a walk up the parent
    /// links, one primary-key lookup per level.
    async fn is_ancestor_or_self(
        conn: &mut DbConn,
        tenant: TenantId,
        ancestor: GroupId,
        group: GroupId,
    ) -> StoreResult<bool> {
        let mut current = Some(group.0);
        while let Some(id) = current {
            if id == ancestor.0 {
                return Ok(true);
            }
            current =
                sqlx::query_scalar("SELECT parent_id FROM groups WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.0)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .flatten();
        }
        Ok(false)
    }

    async fn administrator_ids(
        conn: &mut DbConn,
        tenant: TenantId,
        group: GroupId,
    ) -> StoreResult<Vec<UserId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM group_administrators WHERE tenant_id = $1 AND group_id = $2 ORDER BY user_id",
        )
        .bind(tenant.0)
        .bind(group.0)
        .fetch_all(conn)
        .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }

    /// Applies `edit` to a group's administrator set: reads the set once, writes
    /// only the difference, keeps the counter, and records what changed, as the
    /// whole set for a replacement and as the ids added or removed for an
    /// addition or removal. Returns the new set.
    async fn write_administrators(
        w: &mut WriteTx,
        group: &mut Group,
        edit: AdministratorEdit,
    ) -> StoreResult<Vec<UserId>> {
        let tenant = w.tenant;
        let mut current = Self::administrator_ids(w.conn(), tenant, group.id).await?;
        // Sorted here too, so that lookups below do not rest on the database's
        // order of ids.
        current.sort_unstable();
        let mut wanted = match &edit {
            AdministratorEdit::Replace(users) => users.clone(),
            AdministratorEdit::Add(users) => current.iter().chain(users).copied().collect(),
            AdministratorEdit::Remove(users) => {
                let mut leaving = users.clone();
                leaving.sort_unstable();
                current
                    .iter()
                    .copied()
                    .filter(|id| leaving.binary_search(id).is_err())
                    .collect()
            }
        };
        wanted.sort_unstable();
        wanted.dedup();
        if current == wanted {
            return Ok(current);
        }
        let removed: Vec<UserId> = current
            .iter()
            .copied()
            .filter(|id| wanted.binary_search(id).is_err())
            .collect();
        let added: Vec<UserId> = wanted
            .iter()
            .copied()
            .filter(|id| current.binary_search(id).is_err())
            .collect();
        for chunk in removed.chunks(ID_CHUNK) {
            let mut q =
                QueryBuilder::<Db>::new("DELETE FROM group_administrators WHERE tenant_id = ");
            q.push_bind(tenant.0)
                .push(" AND group_id = ")
                .push_bind(group.id.0)
                .push(" AND user_id IN (");
            push_in_list(&mut q, chunk.iter().map(|user| user.0));
            q.build().execute(w.conn()).await?;
        }
        for chunk in added.chunks(ID_CHUNK) {
            let mut q = QueryBuilder::<Db>::new(
                "INSERT INTO group_administrators (tenant_id, group_id, user_id) ",
            );
            q.push_values(chunk, |mut row, user| {
                row.push_bind(tenant.0)
                    .push_bind(group.id.0)
                    .push_bind(user.0);
            });
            q.build().execute(w.conn()).await?;
        }
        sqlx::query("UPDATE groups SET administrator_count = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(group.id.0)
            .bind(wanted.len() as i64)
            .execute(w.conn())
            .await?;
        group.administrator_count = wanted.len() as i64;
        Self::save_group(w, group).await?;
        let group_id = group.id;
        w.changes.push(match edit {
            AdministratorEdit::Replace(_) => Change::AdministratorsChanged {
                group_id,
                administrator_ids: wanted.clone(),
            },
            AdministratorEdit::Add(_) => Change::AdministratorsAdded {
                group_id,
                administrator_ids: added,
            },
            AdministratorEdit::Remove(_) => Change::AdministratorsRemoved {
                group_id,
                administrator_ids: removed,
            },
        });
        Ok(wanted)
    }

    /// Checks that every user exists and may administer groups.
    async fn require_eligible(
        conn: &mut DbConn,
        tenant: TenantId,
        users: &[UserId],
    ) -> StoreResult<()> {
        let found = Self::require_users(conn, tenant, users).await?;
        Ok(rules::eligible_as_administrators(&found)?)
    }

    async fn set_inherited(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        tool: Tool,
        role: Option<Role>,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Group>> {
        let mut w = self.begin_write(tenant).await?;
        let mut g = Self::fetch_group(w.conn(), tenant, group).await?;
        check_etag("group", etag, g.revision)?;
        let current = g
            .inherited_roles
            .iter()
            .find(|(t, _)| *t == tool)
            .map(|(_, r)| *r);
        if current != role {
            g.inherited_roles.retain(|(t, _)| *t != tool);
            if let Some(role) = role {
                g.inherited_roles.push((tool, role));
                g.inherited_roles.sort();
            }
            Self::save_group(&mut w, &mut g).await?;
            w.changes.push(match role {
                Some(role) => Change::InheritedRoleSet {
                    group_id: group,
                    tool,
                    role,
                },
                None => Change::InheritedRoleCleared {
                    group_id: group,
                    tool,
                },
            });
        }
        self.finish(ctx, w, g).await
    }
}

/// The counters a group keeps.
#[derive(Clone, Copy)]
enum Counter {
    Subgroups,
    Members,
}

impl Counter {
    fn as_str(self) -> &'static str {
        match self {
            Counter::Subgroups => "subgroup_count",
            Counter::Members => "member_count",
        }
    }
}

fn fingerprint(input: &impl serde::Serialize) -> String {
    serde_json::to_string(input).expect("domain inputs serialize")
}

// ------------------------------------------------------------------ the store

#[async_trait]
impl DirectoryStore for Store {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn create_tenant(
        &self,
        ctx: &WriteContext,
        new: NewTenant,
    ) -> StoreResult<Written<(Tenant, User)>> {
        let fingerprint = fingerprint(&new);
        // Two tries: a concurrent create with the same request id makes the first
        // fail on the idempotency key, and the second then replays its result.
        for attempt in 0..2 {
            let mut conn = self.pool.acquire().await?;
            if let Some((id, revision)) =
                Self::replayed(&mut conn, GLOBAL_SCOPE, &new.request_id, &fingerprint).await?
            {
                let tenant = self.get_tenant(TenantId(id)).await?;
                let first_admin: UserRow = sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = $1 ORDER BY u.id LIMIT 1"
                ))
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
                return Ok(Written {
                    value: (tenant, first_admin.try_into()?),
                    revision,
                });
            }
            drop(conn);

            let tenant = Tenant {
                id: TenantId::generate(),
                display_name: new.display_name.clone(),
                revision: 1,
                create_time: now(),
            };
            let mut tx = self.pool.begin().await?;
            sqlx::query("INSERT INTO tenants (id, display_name, revision, create_time) VALUES ($1, $2, $3, $4)")
                .bind(tenant.id.0)
                .bind(tenant.display_name.as_str())
                .bind(tenant.revision)
                .bind(tenant.create_time)
                .execute(&mut *tx)
                .await?;
            let turn = self.turns.take(tenant.id).await;
            let mut w = WriteTx {
                tx,
                tenant: tenant.id,
                revision: tenant.revision,
                changes: Vec::new(),
                _turn: turn,
            };
            w.changes.push(Change::TenantCreated {
                tenant: tenant.clone(),
            });
            let admin = NewUser {
                display_name: new.admin_display_name.clone(),
                email: new.admin_email.clone(),
                roles: cohort_shared::catalog::RoleSet::new([Role::GlobalAdminAdmin])
                    .expect("ADMIN alone is a valid role set"),
                request_id: None,
            };
            let admin = Self::new_user(tenant.id, &admin, tenant.create_time, tenant.revision);
            Self::insert_user(&mut w, &admin).await?;
            match Self::remember_request(
                w.conn(),
                GLOBAL_SCOPE,
                &new.request_id,
                &fingerprint,
                tenant.id.0,
                1,
            )
            .await
            {
                Ok(()) => return self.finish(ctx, w, (tenant, admin)).await,
                Err(err) if is_unique_violation(&err) && attempt == 0 => continue,
                Err(err) => return Err(err.into()),
            }
        }
        unreachable!("the second attempt either replays or returns")
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn get_tenant(&self, id: TenantId) -> StoreResult<Tenant> {
        let row: Option<TenantRow> = sqlx::query_as(
            "SELECT id, display_name, revision, create_time FROM tenants WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| StoreError::not_found("tenant", id))?
            .try_into()
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_tenants(&self, page: &PageRequest) -> StoreResult<Page<Tenant>> {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT id, display_name, revision, create_time FROM tenants WHERE TRUE",
        );
        if let Some(after) = after_id(page)? {
            q.push(" AND id > ").push_bind(after);
        }
        q.push(" ORDER BY id LIMIT ").push_bind(page.fetch_limit());
        let rows = q
            .build_query_as::<TenantRow>()
            .fetch_all(&self.pool)
            .await?;
        Ok(page.page(convert_all(rows)?, |t: &Tenant| t.id.to_string()))
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, new), err(level = "debug"))]
    async fn create_user(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        new: NewUser,
    ) -> StoreResult<Written<User>> {
        let fingerprint = fingerprint(&new);
        // Two tries: a concurrent create with the same request id makes the first
        // fail, and the second then replays its result.
        for attempt in 0..2 {
            if let Some((id, revision)) = self
                .replay_of(tenant, &new.request_id, &fingerprint)
                .await?
            {
                return Ok(Written {
                    value: self.get_user(tenant, UserId(id)).await?,
                    revision,
                });
            }
            let time = now();
            let mut user = Self::new_user(tenant, &new, time, 0);
            let shot = OneShot {
                ctx,
                tenant,
                request: new.request_id.as_ref().map(|r| (r, fingerprint.as_str())),
                time,
                changes: vec![Change::UserUpserted { user: user.clone() }],
            };
            let created = self.create_user_at_once(&shot, &user).await;
            if let Some(revision) =
                created_or_retry(created, attempt == 0, new.request_id.is_some())?
            {
                user.revision = revision;
                return Ok(Written {
                    value: user,
                    revision,
                });
            }
        }
        Err(StoreError::Corrupt(
            "a request id was taken, yet no result is stored for it".into(),
        ))
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, new), fields(users = new.len()), err(level = "debug"))]
    async fn create_users(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        new: Vec<NewUser>,
    ) -> StoreResult<Written<Vec<User>>> {
        let mut w = self.begin_write(tenant).await?;
        let fingerprints: Vec<String> = new.iter().map(fingerprint).collect();
        let replays = Self::replayed_batch(w.conn(), tenant.0, &new, &fingerprints).await?;
        let fresh: Vec<usize> = (0..new.len()).filter(|i| replays[*i].is_none()).collect();
        Self::refuse_taken_emails(w.conn(), tenant, &new, &fresh).await?;

        let now = now();
        let created: Vec<(usize, User)> = fresh
            .iter()
            .map(|i| {
                let n = &new[*i];
                let user = User {
                    id: UserId::generate(),
                    tenant_id: tenant,
                    display_name: n.display_name.clone(),
                    email: n.email.clone(),
                    roles: n.roles.clone(),
                    state: UserState::Active,
                    create_time: now,
                    update_time: now,
                    revision: w.revision,
                };
                (*i, user)
            })
            .collect();
        let users: Vec<User> = created.iter().map(|(_, u)| u.clone()).collect();
        insert_users(w.conn(), &users)
            .await
            .map_err(unique_as("users", || {
                "a user of the batch already exists in this tenant".to_owned()
            }))?;
        let keys: Vec<(&str, &str, Uuid)> = created
            .iter()
            .filter_map(|(i, u)| {
                new[*i]
                    .request_id
                    .as_ref()
                    .map(|r| (r.as_str(), fingerprints[*i].as_str(), u.id.0))
            })
            .collect();
        if !keys.is_empty() {
            let revision = w.revision;
            insert_request_ids(w.conn(), tenant.0, &keys, revision, now).await?;
        }
        w.changes.extend(
            created
                .iter()
                .map(|(_, user)| Change::UserUpserted { user: user.clone() }),
        );

        // The users in request order: the new ones, and the first results of replays.
        let replayed_ids: Vec<UserId> = replays
            .iter()
            .flatten()
            .map(|(id, _)| UserId(*id))
            .collect();
        let replayed_users = Self::require_users(w.conn(), tenant, &replayed_ids).await?;
        let mut created = created.into_iter().peekable();
        let users: Vec<User> = replays
            .iter()
            .enumerate()
            .map(|(i, replay)| match replay {
                Some((id, _)) => replayed_users
                    .iter()
                    .find(|u| u.id.0 == *id)
                    .cloned()
                    .expect("require_users found every replayed user"),
                None => {
                    created
                        .next_if(|(j, _)| *j == i)
                        .expect("every fresh user was created")
                        .1
                }
            })
            .collect();
        if w.changes.is_empty() {
            // Every user was a replay: nothing new to commit.
            w.tx.rollback().await?;
            let revision = replays.iter().flatten().map(|(_, r)| *r).max().unwrap_or(0);
            return Ok(Written {
                value: users,
                revision,
            });
        }
        self.finish(ctx, w, users).await
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn get_user(&self, tenant: TenantId, id: UserId) -> StoreResult<User> {
        let mut conn = self.pool.acquire().await?;
        let read = Self::fetch_user(&mut conn, tenant, id).await;
        Self::in_known_tenant(&mut conn, tenant, read).await
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_users(
        &self,
        tenant: TenantId,
        filter: &UserFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<User>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = "
        ));
        q.push_bind(tenant.0);
        if let Some(after) = after_id(page)? {
            q.push(" AND u.id > ").push_bind(after);
        }
        if let Some(query) = &filter.query {
            q.push(" AND u.search_text LIKE ")
                .push_bind(contains_pattern(query))
                .push(" ESCAPE '\\'");
        }
        if let Some(role) = filter.role {
            q.push(" AND EXISTS (SELECT 1 FROM user_roles r WHERE r.tenant_id = u.tenant_id AND r.user_id = u.id AND r.role = ")
                .push_bind(role.as_str())
                .push(")");
        }
        if let Some(group) = filter.group_id {
            q.push(" AND EXISTS (SELECT 1 FROM memberships m WHERE m.tenant_id = u.tenant_id AND m.user_id = u.id AND m.group_id = ")
                .push_bind(group.0)
                .push(")");
        }
        if let Some(state) = filter.state {
            q.push(" AND u.suspended = ")
                .push_bind(state == UserState::Suspended);
        }
        q.push(" ORDER BY u.id LIMIT ")
            .push_bind(page.fetch_limit());
        let mut conn = self.pool.acquire().await?;
        let rows = q.build_query_as::<UserRow>().fetch_all(&mut *conn).await?;
        if rows.is_empty() {
            Self::explain_nothing(&mut conn, tenant, filter.group_id).await?;
        }
        Ok(page.page(convert_all(rows)?, |u: &User| u.id.to_string()))
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, update), err(level = "debug"))]
    async fn update_user(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: UserId,
        update: UserUpdate,
    ) -> StoreResult<Written<User>> {
        let mut w = self.begin_write(tenant).await?;
        let before = Self::fetch_user(w.conn(), tenant, id).await?;
        check_etag("user", update.etag, before.revision)?;
        let mut user = before.clone();
        if let Some(name) = update.display_name {
            user.display_name = name;
        }
        if let Some(email) = update.email {
            user.email = email;
        }
        if let Some(roles) = update.roles {
            user.roles = roles;
        }
        if user == before {
            return self.finish(ctx, w, user).await;
        }
        if before.may_administer_groups() && !user.may_administer_groups() {
            let groups = Self::administered_groups(w.conn(), tenant, id).await?;
            rules::release_administered_groups(id, groups)?;
        }
        if !user.roles.contains(Role::GlobalAdminAdmin) {
            Self::keep_an_administrator(w.conn(), tenant, &before).await?;
        }
        if user.roles != before.roles {
            Self::write_user_roles(&mut w, id, user.roles.roles()).await?;
        }
        Self::save_user(&mut w, &mut user).await?;
        self.finish(ctx, w, user).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx), err(level = "debug"))]
    async fn set_user_suspended(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: UserId,
        suspended: bool,
        etag: Option<Etag>,
    ) -> StoreResult<Written<User>> {
        let mut w = self.begin_write(tenant).await?;
        let mut user = Self::fetch_user(w.conn(), tenant, id).await?;
        check_etag("user", etag, user.revision)?;
        let state = if suspended {
            UserState::Suspended
        } else {
            UserState::Active
        };
        if user.state != state {
            if suspended {
                Self::keep_an_administrator(w.conn(), tenant, &user).await?;
            }
            user.state = state;
            Self::save_user(&mut w, &mut user).await?;
        }
        self.finish(ctx, w, user).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx), err(level = "debug"))]
    async fn delete_user(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: UserId,
        etag: Option<Etag>,
    ) -> StoreResult<Written<()>> {
        let mut w = self.begin_write(tenant).await?;
        let user = Self::fetch_user(w.conn(), tenant, id).await?;
        check_etag("user", etag, user.revision)?;
        let groups = Self::administered_groups(w.conn(), tenant, id).await?;
        rules::release_administered_groups(id, groups)?;
        Self::keep_an_administrator(w.conn(), tenant, &user).await?;
        sqlx::query(
            "UPDATE groups SET member_count = member_count - 1 WHERE tenant_id = $1 AND id IN \
             (SELECT group_id FROM memberships WHERE tenant_id = $1 AND user_id = $2)",
        )
        .bind(tenant.0)
        .bind(id.0)
        .execute(w.conn())
        .await?;
        // Memberships and roles have no foreign key to cascade on PostgreSQL (see
        // migration 0003): they go explicitly.
        for sql in [
            "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2",
            "DELETE FROM user_roles WHERE tenant_id = $1 AND user_id = $2",
            "DELETE FROM users WHERE tenant_id = $1 AND id = $2",
        ] {
            sqlx::query(sql)
                .bind(tenant.0)
                .bind(id.0)
                .execute(w.conn())
                .await?;
        }
        w.changes.push(Change::UserDeleted { user_id: id });
        self.finish(ctx, w, ()).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, new), err(level = "debug"))]
    async fn create_group(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        new: NewGroup,
    ) -> StoreResult<Written<Group>> {
        let fingerprint = fingerprint(&new);
        // Two tries, as for users.
        for attempt in 0..2 {
            if let Some((id, revision)) = self
                .replay_of(tenant, &new.request_id, &fingerprint)
                .await?
            {
                return Ok(Written {
                    value: self.get_group(tenant, GroupId(id)).await?,
                    revision,
                });
            }
            if new.is_organization && new.parent_id.is_some() {
                return Err(StoreError::InvalidArgument {
                    field: "is_organization".into(),
                    message: "a subgroup cannot be an organization".into(),
                });
            }
            let time = now();
            let mut group = Group {
                id: GroupId::generate(),
                tenant_id: tenant,
                display_name: new.display_name.clone(),
                parent_id: new.parent_id,
                is_organization: new.is_organization,
                subgroup_count: 0,
                member_count: 0,
                administrator_count: 0,
                inherited_roles: Vec::new(),
                create_time: time,
                update_time: time,
                revision: 0,
            };
            let shot = OneShot {
                ctx,
                tenant,
                request: new.request_id.as_ref().map(|r| (r, fingerprint.as_str())),
                time,
                changes: vec![Change::GroupUpserted {
                    group: group.clone(),
                }],
            };
            let created = self.create_group_at_once(&shot, &group).await;
            if let Some(revision) =
                created_or_retry(created, attempt == 0, new.request_id.is_some())?
            {
                group.revision = revision;
                return Ok(Written {
                    value: group,
                    revision,
                });
            }
        }
        Err(StoreError::Corrupt(
            "a request id was taken, yet no result is stored for it".into(),
        ))
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn get_group(&self, tenant: TenantId, id: GroupId) -> StoreResult<Group> {
        let mut conn = self.pool.acquire().await?;
        let read = Self::fetch_group(&mut conn, tenant, id).await;
        Self::in_known_tenant(&mut conn, tenant, read).await
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_groups(
        &self,
        tenant: TenantId,
        filter: &GroupFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Group>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.tenant_id = "
        ));
        q.push_bind(tenant.0);
        if let Some(parent) = filter.parent_id {
            q.push(" AND g.parent_id = ").push_bind(parent.0);
        }
        if filter.top_level_only || filter.organizations_only {
            q.push(" AND g.parent_id IS NULL");
        }
        if filter.organizations_only {
            q.push(" AND g.is_organization = ").push_bind(true);
        }
        if let Some(query) = &filter.query {
            q.push(" AND g.name_key LIKE ")
                .push_bind(contains_pattern(query))
                .push(" ESCAPE '\\'");
        }
        if let Some(after) = after_id(page)? {
            q.push(" AND g.id > ").push_bind(after);
        }
        q.push(" ORDER BY g.id LIMIT ")
            .push_bind(page.fetch_limit());
        let mut conn = self.pool.acquire().await?;
        let rows = q.build_query_as::<GroupRow>().fetch_all(&mut *conn).await?;
        if rows.is_empty() {
            Self::explain_nothing(&mut conn, tenant, filter.parent_id).await?;
        }
        Ok(page.page(convert_all(rows)?, |g: &Group| g.id.to_string()))
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, update), err(level = "debug"))]
    async fn update_group(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: GroupId,
        update: GroupUpdate,
    ) -> StoreResult<Written<Group>> {
        let mut w = self.begin_write(tenant).await?;
        let before = Self::fetch_group(w.conn(), tenant, id).await?;
        check_etag("group", update.etag, before.revision)?;
        let mut group = before.clone();
        if let Some(name) = update.display_name {
            group.display_name = name;
        }
        if let Some(flag) = update.is_organization {
            rules::may_be_organization(&group, flag)?;
            group.is_organization = flag;
        }
        if group != before {
            Self::save_group(&mut w, &mut group).await?;
            w.changes.push(Change::GroupUpserted {
                group: group.clone(),
            });
        }
        self.finish(ctx, w, group).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx), err(level = "debug"))]
    async fn move_group(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: GroupId,
        new_parent: Option<GroupId>,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Group>> {
        let mut w = self.begin_write(tenant).await?;
        let mut group = Self::fetch_group(w.conn(), tenant, id).await?;
        check_etag("group", etag, group.revision)?;
        if group.parent_id == new_parent {
            return self.finish(ctx, w, group).await;
        }
        if let Some(parent) = new_parent {
            rules::may_be_nested(&group)?;
            Self::fetch_group(w.conn(), tenant, parent).await?;
            let parent_in_subtree = Self::is_ancestor_or_self(w.conn(), tenant, id, parent).await?;
            let catalog_assignments: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM catalog_assignments WHERE tenant_id = $1 AND group_id = $2",
            )
            .bind(tenant.0)
            .bind(id.0)
            .fetch_one(w.conn())
            .await?;
            rules::may_move(
                &group,
                parent,
                rules::MoveFacts {
                    parent_in_subtree,
                    catalog_assignments,
                },
            )?;
        }
        if let Some(old) = group.parent_id {
            Self::adjust_count(&mut w, old, Counter::Subgroups, -1).await?;
        }
        if let Some(parent) = new_parent {
            Self::adjust_count(&mut w, parent, Counter::Subgroups, 1).await?;
        }
        group.parent_id = new_parent;
        Self::save_group(&mut w, &mut group).await?;
        w.changes.push(Change::GroupUpserted {
            group: group.clone(),
        });
        self.finish(ctx, w, group).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx), err(level = "debug"))]
    async fn delete_group(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: GroupId,
        cascade: bool,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Vec<GroupId>>> {
        let mut w = self.begin_write(tenant).await?;
        let group = Self::fetch_group(w.conn(), tenant, id).await?;
        check_etag("group", etag, group.revision)?;
        rules::may_delete(&group, cascade)?;
        let subtree = Self::subtree(w.conn(), tenant, id).await?;
        // Memberships first (no foreign key cascades them on PostgreSQL), then the
        // groups, deepest first so that no group outlives its parent.
        for chunk in subtree.chunks(ID_CHUNK) {
            let mut q = QueryBuilder::<Db>::new("DELETE FROM memberships WHERE tenant_id = ");
            q.push_bind(tenant.0).push(" AND group_id IN (");
            push_in_list(&mut q, chunk.iter().map(|group| group.0));
            q.build().execute(w.conn()).await?;
        }
        for chunk in subtree.rchunks(ID_CHUNK) {
            let mut q = QueryBuilder::<Db>::new("DELETE FROM groups WHERE tenant_id = ");
            q.push_bind(tenant.0).push(" AND id IN (");
            push_in_list(&mut q, chunk.iter().map(|group| group.0));
            q.build().execute(w.conn()).await?;
        }
        if let Some(parent) = group.parent_id {
            Self::adjust_count(&mut w, parent, Counter::Subgroups, -1).await?;
        }
        w.changes.extend(
            subtree
                .iter()
                .map(|g| Change::GroupDeleted { group_id: *g }),
        );
        self.finish(ctx, w, subtree).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, users), err(level = "debug"))]
    async fn set_administrators(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        let mut w = self.begin_write(tenant).await?;
        let mut g = Self::fetch_group(w.conn(), tenant, group).await?;
        check_etag("group", etag, g.revision)?;
        Self::require_eligible(w.conn(), tenant, &users).await?;
        let admins =
            Self::write_administrators(&mut w, &mut g, AdministratorEdit::Replace(users)).await?;
        self.finish(ctx, w, admins).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, users), err(level = "debug"))]
    async fn add_administrators(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        let mut w = self.begin_write(tenant).await?;
        let mut g = Self::fetch_group(w.conn(), tenant, group).await?;
        Self::require_eligible(w.conn(), tenant, &users).await?;
        let admins =
            Self::write_administrators(&mut w, &mut g, AdministratorEdit::Add(users)).await?;
        self.finish(ctx, w, admins).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, users), err(level = "debug"))]
    async fn remove_administrators(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        let mut w = self.begin_write(tenant).await?;
        let mut g = Self::fetch_group(w.conn(), tenant, group).await?;
        Self::require_users(w.conn(), tenant, &users).await?;
        let admins =
            Self::write_administrators(&mut w, &mut g, AdministratorEdit::Remove(users)).await?;
        self.finish(ctx, w, admins).await
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_administrators(
        &self,
        tenant: TenantId,
        group: GroupId,
        page: &PageRequest,
    ) -> StoreResult<Page<User>> {
        let mut conn = self.pool.acquire().await?;
        Self::fetch_group(&mut conn, tenant, group).await?;
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {USER_COLUMNS} FROM group_administrators a JOIN users u ON u.tenant_id = a.tenant_id AND u.id = a.user_id \
             WHERE a.tenant_id = "
        ));
        q.push_bind(tenant.0)
            .push(" AND a.group_id = ")
            .push_bind(group.0);
        if let Some(after) = after_id(page)? {
            q.push(" AND a.user_id > ").push_bind(after);
        }
        q.push(" ORDER BY a.user_id LIMIT ")
            .push_bind(page.fetch_limit());
        let rows = q.build_query_as::<UserRow>().fetch_all(&mut *conn).await?;
        Ok(page.page(convert_all(rows)?, |u: &User| u.id.to_string()))
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, users), err(level = "debug"))]
    async fn add_members(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        self.add_members_at_once(ctx, tenant, group, users).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, users), err(level = "debug"))]
    async fn remove_members(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        let mut w = self.begin_write(tenant).await?;
        Self::fetch_group(w.conn(), tenant, group).await?;
        Self::require_user_ids(w.conn(), tenant, &users).await?;
        let mut removed: Vec<UserId> = Vec::new();
        if !users.is_empty() {
            let ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
            removed = delete_memberships(w.conn(), tenant.0, group.0, &ids)
                .await?
                .into_iter()
                .map(UserId)
                .collect();
            removed.sort();
        }
        Self::adjust_count(&mut w, group, Counter::Members, -(removed.len() as i64)).await?;
        w.changes
            .extend(removed.iter().map(|user| Change::MembershipRemoved {
                group_id: group,
                user_id: *user,
            }));
        self.finish(ctx, w, removed).await
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_members(
        &self,
        tenant: TenantId,
        group: GroupId,
        include_subgroups: bool,
        page: &PageRequest,
    ) -> StoreResult<Page<User>> {
        let mut conn = self.pool.acquire().await?;
        Self::fetch_group(&mut conn, tenant, group).await?;
        let after = after_id(page)?.unwrap_or(Uuid::nil());
        let groups = if include_subgroups {
            Self::subtree(&mut conn, tenant, group).await?
        } else {
            vec![group]
        };
        // The first page of distinct member ids after the cursor: the smallest ids of
        // each chunk of groups (read on the memberships key), merged.
        let mut member_ids: Vec<Uuid> = Vec::new();
        for chunk in groups.chunks(ID_CHUNK) {
            let mut q = QueryBuilder::<Db>::new(
                "SELECT DISTINCT user_id FROM memberships WHERE tenant_id = ",
            );
            q.push_bind(tenant.0)
                .push(" AND user_id > ")
                .push_bind(after)
                .push(" AND group_id IN (");
            push_in_list(&mut q, chunk.iter().map(|id| id.0));
            q.push(" ORDER BY user_id LIMIT ")
                .push_bind(page.fetch_limit());
            member_ids.extend(q.build_query_scalar::<Uuid>().fetch_all(&mut *conn).await?);
        }
        member_ids.sort();
        member_ids.dedup();
        member_ids.truncate(page.fetch_limit() as usize);
        let mut rows: Vec<UserRow> = Vec::new();
        if !member_ids.is_empty() {
            let mut q = QueryBuilder::<Db>::new(format!(
                "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = "
            ));
            q.push_bind(tenant.0).push(" AND u.id IN (");
            push_in_list(&mut q, member_ids.iter().copied());
            q.push(" ORDER BY u.id");
            rows = q.build_query_as().fetch_all(&mut *conn).await?;
        }
        Ok(page.page(convert_all(rows)?, |u: &User| u.id.to_string()))
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_user_groups(
        &self,
        tenant: TenantId,
        user: UserId,
        page: &PageRequest,
    ) -> StoreResult<Page<(Membership, Group)>> {
        let mut conn = self.pool.acquire().await?;
        Self::fetch_user(&mut conn, tenant, user).await?;
        let after = after_id(page)?.unwrap_or(Uuid::nil());
        let rows: Vec<UserGroupRow> = sqlx::query_as(&format!(
            "SELECT m.group_id, m.user_id, m.join_revision, m.join_time, {GROUP_COLUMNS} \
             FROM memberships m JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id \
             WHERE m.tenant_id = $1 AND m.user_id = $2 AND m.group_id > $3 ORDER BY m.group_id LIMIT $4"
        ))
        .bind(tenant.0)
        .bind(user.0)
        .bind(after)
        .bind(page.fetch_limit())
        .fetch_all(&mut *conn)
        .await?;
        Ok(
            page.page(convert_all(rows)?, |(m, _): &(Membership, Group)| {
                m.group_id.to_string()
            }),
        )
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_administered_groups(
        &self,
        tenant: TenantId,
        user: UserId,
        page: &PageRequest,
    ) -> StoreResult<Page<Group>> {
        let mut conn = self.pool.acquire().await?;
        Self::fetch_user(&mut conn, tenant, user).await?;
        let after = after_id(page)?.unwrap_or(Uuid::nil());
        let rows: Vec<GroupRow> = sqlx::query_as(&format!(
            "SELECT {GROUP_COLUMNS} \
             FROM group_administrators a JOIN groups g ON g.tenant_id = a.tenant_id AND g.id = a.group_id \
             WHERE a.tenant_id = $1 AND a.user_id = $2 AND a.group_id > $3 ORDER BY a.group_id LIMIT $4"
        ))
        .bind(tenant.0)
        .bind(user.0)
        .bind(after)
        .bind(page.fetch_limit())
        .fetch_all(&mut *conn)
        .await?;
        Ok(page.page(convert_all(rows)?, |g: &Group| g.id.to_string()))
    }

    async fn set_inherited_role(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        role: Role,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Group>> {
        self.set_inherited(ctx, tenant, group, role.tool(), Some(role), etag)
            .await
    }

    async fn clear_inherited_role(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        tool: Tool,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Group>> {
        self.set_inherited(ctx, tenant, group, tool, None, etag)
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx), err(level = "debug"))]
    async fn assign_catalog(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        catalog: CatalogId,
    ) -> StoreResult<Written<CatalogAssignment>> {
        let mut w = self.begin_write(tenant).await?;
        let g = Self::fetch_group(w.conn(), tenant, group).await?;
        rules::may_hold_catalogs(&g)?;
        let now = now();
        let inserted = sqlx::query(
            "INSERT INTO catalog_assignments (tenant_id, group_id, catalog_id, assign_time) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant.0)
        .bind(group.0)
        .bind(catalog.as_str())
        .bind(now)
        .execute(w.conn())
        .await?
        .rows_affected();
        let row: CatalogRow = sqlx::query_as(
            "SELECT group_id, catalog_id, assign_time FROM catalog_assignments \
             WHERE tenant_id = $1 AND group_id = $2 AND catalog_id = $3",
        )
        .bind(tenant.0)
        .bind(group.0)
        .bind(catalog.as_str())
        .fetch_one(w.conn())
        .await?;
        if inserted > 0 {
            w.changes.push(Change::CatalogAssigned {
                group_id: group,
                catalog_id: catalog,
            });
        }
        self.finish(ctx, w, row.try_into()?).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx), err(level = "debug"))]
    async fn unassign_catalog(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        catalog: CatalogId,
    ) -> StoreResult<Written<()>> {
        let mut w = self.begin_write(tenant).await?;
        Self::fetch_group(w.conn(), tenant, group).await?;
        let deleted = sqlx::query(
            "DELETE FROM catalog_assignments WHERE tenant_id = $1 AND group_id = $2 AND catalog_id = $3",
        )
        .bind(tenant.0)
        .bind(group.0)
        .bind(catalog.as_str())
        .execute(w.conn())
        .await?
        .rows_affected();
        if deleted == 0 {
            return Err(StoreError::not_found(
                "catalog assignment",
                catalog.as_str(),
            ));
        }
        w.changes.push(Change::CatalogUnassigned {
            group_id: group,
            catalog_id: catalog,
        });
        self.finish(ctx, w, ()).await
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_catalogs(
        &self,
        tenant: TenantId,
        group: GroupId,
        page: &PageRequest,
    ) -> StoreResult<(Page<CatalogAssignment>, bool)> {
        let mut conn = self.pool.acquire().await?;
        let g = Self::fetch_group(&mut conn, tenant, group).await?;
        let rows: Vec<CatalogRow> = sqlx::query_as(
            "SELECT group_id, catalog_id, assign_time FROM catalog_assignments \
             WHERE tenant_id = $1 AND group_id = $2 AND catalog_id > $3 ORDER BY catalog_id LIMIT $4",
        )
        .bind(tenant.0)
        .bind(group.0)
        .bind(page.after().unwrap_or_default().to_owned())
        .bind(page.fetch_limit())
        .fetch_all(&mut *conn)
        .await?;
        let page = page.page(convert_all(rows)?, |c: &CatalogAssignment| {
            c.catalog_id.as_str().to_owned()
        });
        Ok((page, g.is_organization))
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn read_changes(
        &self,
        tenant: TenantId,
        after: Revision,
        limit: i64,
        max_bytes: i64,
    ) -> StoreResult<Vec<ChangeSet>> {
        // The running total of the sizes before each row decides where the batch
        // ends, so it always holds the first change set, however large.
        let rows: Vec<ChangeRow> = sqlx::query_as(&format!(
            "SELECT tenant_id, revision, commit_time, actor, changes FROM ( \
               SELECT tenant_id, revision, commit_time, actor, changes, \
                      SUM({CHANGES_BYTES}) OVER (ORDER BY revision) - {CHANGES_BYTES} AS bytes_before \
               FROM change_events WHERE tenant_id = $1 AND revision > $2 ORDER BY revision LIMIT $3 \
             ) batch WHERE bytes_before < $4 ORDER BY revision"
        ))
        .bind(tenant.0)
        .bind(after)
        .bind(limit)
        .bind(max_bytes)
        .fetch_all(&self.pool)
        .await?;
        convert_all(rows)
    }

    async fn tenant_heads(
        &self,
        tenants: Option<&[TenantId]>,
    ) -> StoreResult<Vec<(TenantId, Revision)>> {
        let Some(tenants) = tenants else {
            let rows: Vec<(Uuid, i64)> =
                sqlx::query_as("SELECT id, revision FROM tenants ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?;
            return Ok(rows
                .into_iter()
                .map(|(id, revision)| (TenantId(id), revision))
                .collect());
        };
        // In chunks: both databases cap the parameters of one statement.
        let mut heads = Vec::with_capacity(tenants.len());
        for chunk in tenants.chunks(ID_CHUNK) {
            let mut q = QueryBuilder::<Db>::new("SELECT id, revision FROM tenants WHERE id IN (");
            push_in_list(&mut q, chunk.iter().map(|tenant| tenant.0));
            let rows: Vec<(Uuid, i64)> = q.build_query_as().fetch_all(&self.pool).await?;
            heads.extend(
                rows.into_iter()
                    .map(|(id, revision)| (TenantId(id), revision)),
            );
        }
        heads.sort_unstable();
        Ok(heads)
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn snapshot(&self, tenant: TenantId) -> StoreResult<Box<dyn SnapshotReader>> {
        let mut tx = self.begin_snapshot().await?;
        let row: Option<TenantRow> = sqlx::query_as(
            "SELECT id, display_name, revision, create_time FROM tenants WHERE id = $1",
        )
        .bind(tenant.0)
        .fetch_optional(&mut *tx)
        .await?;
        let tenant_state: Tenant = row
            .ok_or_else(|| StoreError::not_found("tenant", tenant))?
            .try_into()?;
        Ok(Box::new(Snapshot {
            revision: tenant_state.revision,
            tx,
            tenant,
            stage: SnapshotStage::Tenant(tenant_state),
        }))
    }

    async fn compact_changes(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let deleted = sqlx::query("DELETE FROM change_events WHERE commit_time < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }

    fn commit_signal(&self) -> tokio::sync::broadcast::Receiver<crate::storage::Commit> {
        self.commits.subscribe()
    }

    fn connections(&self) -> crate::storage::Connections {
        crate::storage::Connections {
            open: self.pool.size(),
            idle: self.pool.num_idle() as u32,
            max: self.pool.options().get_max_connections(),
        }
    }
}

/// Where a snapshot read has got to: each stage pages by its own key.
enum SnapshotStage {
    Tenant(Tenant),
    Users(Uuid),
    Groups(Uuid),
    Memberships(Uuid, Uuid),
    Administrators(Uuid, Uuid),
    Catalogs(Uuid, String),
    Done,
}

/// A tenant's state read in one read-only transaction (repeatable read on
/// PostgreSQL, a WAL read snapshot on SQLite), so every page shows one revision.
struct Snapshot {
    tx: Transaction<'static, Db>,
    tenant: TenantId,
    revision: Revision,
    stage: SnapshotStage,
}

impl Snapshot {
    /// The next rows of `select` (a query over one table of the tenant) from a
    /// server-side cursor, declared on the stage's first page: rows come in the
    /// order the table holds them, without walking an index (a keyset page fetched
    /// every row at random from the heap, several times slower).
    async fn fetch_from_cursor<R>(
        &mut self,
        name: &str,
        select: &str,
        first: bool,
        limit: i64,
    ) -> StoreResult<Vec<R>>
    where
        R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
    {
        if first {
            sqlx::query(&format!("DECLARE {name} NO SCROLL CURSOR FOR {select}"))
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(sqlx::query_as(&format!("FETCH {limit} FROM {name}"))
            .fetch_all(&mut *self.tx)
            .await?)
    }
}

#[async_trait]
impl SnapshotReader for Snapshot {
    fn revision(&self) -> Revision {
        self.revision
    }

    async fn next_page(&mut self, rows: i64) -> StoreResult<Option<Vec<Change>>> {
        let limit = rows;
        let tenant = self.tenant.0;
        let nil = Uuid::nil();
        let stage = std::mem::replace(&mut self.stage, SnapshotStage::Done);
        let (changes, next) = match stage {
            SnapshotStage::Done => return Ok(None),
            SnapshotStage::Tenant(state) => (
                vec![Change::TenantCreated { tenant: state }],
                SnapshotStage::Users(nil),
            ),
            SnapshotStage::Users(after) => {
                let rows: Vec<UserRow> = if SNAPSHOT_BY_CURSOR {
                    let select = format!(
                        "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = '{tenant}'"
                    );
                    self.fetch_from_cursor("snapshot_users", &select, after == nil, limit)
                        .await?
                } else {
                    sqlx::query_as(&format!(
                        "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = $1 AND u.id > $2 ORDER BY u.id LIMIT $3"
                    ))
                    .bind(tenant)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut *self.tx)
                    .await?
                };
                let users: Vec<User> = convert_all(rows)?;
                let next = match users.last() {
                    Some(last) if users.len() as i64 == limit => SnapshotStage::Users(last.id.0),
                    _ => SnapshotStage::Groups(nil),
                };
                (
                    users
                        .into_iter()
                        .map(|user| Change::UserUpserted { user })
                        .collect(),
                    next,
                )
            }
            SnapshotStage::Groups(after) => {
                let rows: Vec<GroupRow> = if SNAPSHOT_BY_CURSOR {
                    let select = format!(
                        "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.tenant_id = '{tenant}'"
                    );
                    self.fetch_from_cursor("snapshot_groups", &select, after == nil, limit)
                        .await?
                } else {
                    sqlx::query_as(&format!(
                        "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.tenant_id = $1 AND g.id > $2 ORDER BY g.id LIMIT $3"
                    ))
                    .bind(tenant)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&mut *self.tx)
                    .await?
                };
                let groups: Vec<Group> = convert_all(rows)?;
                let next = match groups.last() {
                    Some(last) if groups.len() as i64 == limit => SnapshotStage::Groups(last.id.0),
                    _ => SnapshotStage::Memberships(nil, nil),
                };
                (
                    groups
                        .into_iter()
                        .map(|group| Change::GroupUpserted { group })
                        .collect(),
                    next,
                )
            }
            SnapshotStage::Memberships(after_group, after_user) => {
                let rows: Vec<MembershipRow> = if SNAPSHOT_BY_CURSOR {
                    let select = format!(
                        "SELECT group_id, user_id, join_revision, join_time FROM memberships WHERE tenant_id = '{tenant}'"
                    );
                    self.fetch_from_cursor(
                        "snapshot_memberships",
                        &select,
                        after_group == nil && after_user == nil,
                        limit,
                    )
                    .await?
                } else {
                    // A row comparison, which both databases answer with one range of
                    // the primary key; spelled as `group_id > $2 OR (...)`, PostgreSQL
                    // filters every row before the cursor, and a snapshot slows down
                    // quadratically with the tenant.
                    sqlx::query_as(
                        "SELECT group_id, user_id, join_revision, join_time FROM memberships \
                         WHERE tenant_id = $1 AND (group_id, user_id) > ($2, $3) \
                         ORDER BY group_id, user_id LIMIT $4",
                    )
                    .bind(tenant)
                    .bind(after_group)
                    .bind(after_user)
                    .bind(limit)
                    .fetch_all(&mut *self.tx)
                    .await?
                };
                let memberships: Vec<Membership> = rows.into_iter().map(Membership::from).collect();
                let next = match memberships.last() {
                    Some(last) if memberships.len() as i64 == limit => {
                        SnapshotStage::Memberships(last.group_id.0, last.user_id.0)
                    }
                    _ => SnapshotStage::Administrators(nil, nil),
                };
                (
                    memberships
                        .into_iter()
                        .map(|membership| Change::MembershipAdded { membership })
                        .collect(),
                    next,
                )
            }
            SnapshotStage::Administrators(after_group, after_user) => {
                // Rows like any other table: a large set spans pages, each part an
                // addition (the subscriber started the tenant from nothing).
                let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
                    "SELECT group_id, user_id FROM group_administrators \
                     WHERE tenant_id = $1 AND (group_id, user_id) > ($2, $3) \
                     ORDER BY group_id, user_id LIMIT $4",
                )
                .bind(tenant)
                .bind(after_group)
                .bind(after_user)
                .bind(limit)
                .fetch_all(&mut *self.tx)
                .await?;
                let next = match rows.last() {
                    Some((group, user)) if rows.len() as i64 == limit => {
                        SnapshotStage::Administrators(*group, *user)
                    }
                    _ => SnapshotStage::Catalogs(nil, String::new()),
                };
                let changes = rows
                    .chunk_by(|a, b| a.0 == b.0)
                    .map(|run| Change::AdministratorsAdded {
                        group_id: GroupId(run[0].0),
                        administrator_ids: run.iter().map(|(_, user)| UserId(*user)).collect(),
                    })
                    .collect();
                (changes, next)
            }
            SnapshotStage::Catalogs(after_group, after_catalog) => {
                let rows: Vec<CatalogRow> = sqlx::query_as(
                    "SELECT group_id, catalog_id, assign_time FROM catalog_assignments \
                     WHERE tenant_id = $1 AND (group_id, catalog_id) > ($2, $3) \
                     ORDER BY group_id, catalog_id LIMIT $4",
                )
                .bind(tenant)
                .bind(after_group)
                .bind(&after_catalog)
                .bind(limit)
                .fetch_all(&mut *self.tx)
                .await?;
                let assignments: Vec<CatalogAssignment> = convert_all(rows)?;
                let next = match assignments.last() {
                    Some(last) if assignments.len() as i64 == limit => SnapshotStage::Catalogs(
                        last.group_id.0,
                        last.catalog_id.as_str().to_owned(),
                    ),
                    _ => SnapshotStage::Done,
                };
                let changes = assignments
                    .into_iter()
                    .map(|a| Change::CatalogAssigned {
                        group_id: a.group_id,
                        catalog_id: a.catalog_id,
                    })
                    .collect();
                (changes, next)
            }
        };
        self.stage = next;
        Ok(Some(changes))
    }
}
