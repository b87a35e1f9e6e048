//! Storage layer: one trait per aggregate ([`TenantStore`], [`UserStore`],
//! [`GroupStore`], [`MembershipStore`], [`GroupSettingsStore`]) and the
//! [`Outbox`] the change feed reads, all of them together [`DirectoryStore`],
//! with one implementation per database ([`postgres::PgStore`],
//! [`sqlite::SqliteStore`]). Callers take the narrowest trait they need (the
//! user handlers a `&dyn UserStore`, the feed an `Arc<dyn Outbox>`).
//!
//! The two databases understand the same SQL for everything the directory does
//! (`$n` parameters, `RETURNING`, `ON CONFLICT`, `WITH RECURSIVE`), so the
//! transactional code is written once, in the `sql/` folder (one file per
//! aggregate), and mounted as a child module of each backend, compiled with that
//! backend's sqlx types. What differs (connecting, pragmas, migrations, the
//! PostgreSQL-only batched writes) stays in the backend's own module.
//!
//! Every write runs in one transaction that starts by bumping the tenant's revision.
//! That row lock (PostgreSQL) or the database write lock (SQLite) is held until
//! commit, so a tenant's writes are serialized: every check a write makes (email
//! taken? cycle? still eligible?) sees the state it commits on, revisions are
//! gapless and follow commit order, and a refused write rolls the bump back.

mod batches;
mod events;
mod rows;
mod signal;
mod turns;

pub use signal::Commit;

pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cohort_shared::catalog::{Role, Tool};
use tokio::sync::broadcast;

use crate::domain::{
    CatalogAssignment, CatalogId, Change, ChangeSet, Etag, Group, GroupFilter, GroupId,
    GroupUpdate, Membership, NewGroup, NewTenant, NewUser, Page, PageRequest, Revision, Tenant,
    TenantId, User, UserFilter, UserId, UserUpdate, WriteContext,
};

/// What a write returns: its result and the tenant's revision after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written<T> {
    pub value: T,
    pub revision: Revision,
}

/// Why a storage call failed. Every variant but [`StoreError::Database`] is the
/// caller's to act on; that one is logged and reported as an opaque internal error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },

    #[error("{message}")]
    AlreadyExists { field: String, message: String },

    /// A business rule refuses the write (`domain::rules`).
    #[error(transparent)]
    Rule(#[from] crate::domain::rules::RuleViolation),

    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },

    #[error("the {kind} changed since etag {expected} (now {current})")]
    EtagMismatch {
        kind: &'static str,
        expected: Revision,
        current: Revision,
    },

    #[error("database error")]
    Database(#[from] sqlx::Error),

    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn not_found(kind: &'static str, id: impl ToString) -> Self {
        StoreError::NotFound {
            kind,
            id: id.to_string(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the directory keeps: every aggregate's store and the outbox. Reads
/// see committed state; every write is one transaction that either commits with
/// its change event and a new tenant revision, or changes nothing.
pub trait DirectoryStore:
    TenantStore + UserStore + GroupStore + MembershipStore + GroupSettingsStore + Outbox + 'static
{
    /// The connection pool's use, for the metrics.
    fn connections(&self) -> Connections;
    /// How many users this process remembers as existing (PostgreSQL's
    /// `known_users`); `None` where nothing is remembered.
    fn known_users(&self) -> Option<usize>;
}

/// Tenants: created with their first administrator, read and listed.
#[async_trait]
pub trait TenantStore: Send + Sync {
    async fn create_tenant(
        &self,
        ctx: &WriteContext,
        new: NewTenant,
    ) -> StoreResult<Written<(Tenant, User)>>;
    async fn get_tenant(&self, id: TenantId) -> StoreResult<Tenant>;
    async fn list_tenants(&self, page: &PageRequest) -> StoreResult<Page<Tenant>>;
}

/// Users and their per-tool roles.
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        new: NewUser,
    ) -> StoreResult<Written<User>>;
    /// Creates every user or none, at one revision. A user whose request id was
    /// used before for the same user is not created again: the first result stands
    /// in its place. Errors name the user by its index (`users[3].email`).
    async fn create_users(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        new: Vec<NewUser>,
    ) -> StoreResult<Written<Vec<User>>>;
    async fn get_user(&self, tenant: TenantId, id: UserId) -> StoreResult<User>;
    async fn list_users(
        &self,
        tenant: TenantId,
        filter: &UserFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<User>>;
    async fn update_user(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: UserId,
        update: UserUpdate,
    ) -> StoreResult<Written<User>>;
    async fn set_user_suspended(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: UserId,
        suspended: bool,
        etag: Option<Etag>,
    ) -> StoreResult<Written<User>>;
    async fn delete_user(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: UserId,
        etag: Option<Etag>,
    ) -> StoreResult<Written<()>>;
}

/// Groups: organizations and their nested subgroups.
#[async_trait]
pub trait GroupStore: Send + Sync {
    async fn create_group(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        new: NewGroup,
    ) -> StoreResult<Written<Group>>;
    async fn get_group(&self, tenant: TenantId, id: GroupId) -> StoreResult<Group>;
    async fn list_groups(
        &self,
        tenant: TenantId,
        filter: &GroupFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Group>>;
    async fn update_group(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: GroupId,
        update: GroupUpdate,
    ) -> StoreResult<Written<Group>>;
    async fn move_group(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: GroupId,
        new_parent: Option<GroupId>,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Group>>;
    /// Returns the ids of every group removed, the group itself first.
    async fn delete_group(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: GroupId,
        cascade: bool,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Vec<GroupId>>>;
}

/// Who belongs to a group and who administers it.
#[async_trait]
pub trait MembershipStore: Send + Sync {
    // Administrators. Each returns the group's administrator set after the change.
    async fn set_administrators(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Vec<UserId>>>;
    async fn add_administrators(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>>;
    async fn remove_administrators(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>>;
    async fn list_administrators(
        &self,
        tenant: TenantId,
        group: GroupId,
        page: &PageRequest,
    ) -> StoreResult<Page<User>>;

    // Memberships. Add and remove return the users actually added or removed.
    async fn add_members(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>>;
    async fn remove_members(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>>;
    async fn list_members(
        &self,
        tenant: TenantId,
        group: GroupId,
        include_subgroups: bool,
        page: &PageRequest,
    ) -> StoreResult<Page<User>>;
    async fn list_user_groups(
        &self,
        tenant: TenantId,
        user: UserId,
        page: &PageRequest,
    ) -> StoreResult<Page<(Membership, Group)>>;
    /// The groups `user` is a group administrator of, in group id order.
    async fn list_administered_groups(
        &self,
        tenant: TenantId,
        user: UserId,
        page: &PageRequest,
    ) -> StoreResult<Page<Group>>;
}

/// What a group passes on or offers: its inherited roles and, on organizations,
/// its catalog assignments.
#[async_trait]
pub trait GroupSettingsStore: Send + Sync {
    async fn set_inherited_role(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        role: Role,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Group>>;
    async fn clear_inherited_role(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        tool: Tool,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Group>>;

    // Catalog assignments.
    async fn assign_catalog(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        catalog: CatalogId,
    ) -> StoreResult<Written<CatalogAssignment>>;
    async fn unassign_catalog(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        catalog: CatalogId,
    ) -> StoreResult<Written<()>>;
    /// The assignments, and whether they are active (the group is an organization).
    async fn list_catalogs(
        &self,
        tenant: TenantId,
        group: GroupId,
        page: &PageRequest,
    ) -> StoreResult<(Page<CatalogAssignment>, bool)>;
}

/// The outbox: every committed change set, in revision order per tenant, as the
/// change feed reads it.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Change sets of a tenant with revisions after `after`, in order: at most
    /// `limit` of them, and no more than `max_bytes` of stored text, except that
    /// the first comes whatever its size.
    async fn read_changes(
        &self,
        tenant: TenantId,
        after: Revision,
        limit: i64,
        max_bytes: i64,
    ) -> StoreResult<Vec<ChangeSet>>;
    /// The current revision of the given tenants (all tenants for `None`). A tenant
    /// that does not exist is left out.
    async fn tenant_heads(
        &self,
        tenants: Option<&[TenantId]>,
    ) -> StoreResult<Vec<(TenantId, Revision)>>;
    /// Opens a consistent read of a tenant's whole state, at the revision it
    /// reports, to be read page by page.
    async fn snapshot(&self, tenant: TenantId) -> StoreResult<Box<dyn SnapshotReader>>;
    /// Deletes change sets committed before `before`; returns how many went.
    async fn compact_changes(&self, before: DateTime<Utc>) -> StoreResult<u64>;
    /// A signal for every commit (`(tenant, revision)`), from this process and,
    /// where the database can tell (PostgreSQL), from other replicas. A receiver
    /// that lags is told so and should re-read the tenant heads.
    fn commit_signal(&self) -> broadcast::Receiver<Commit>;
}

/// A connection pool's use at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// Connections open, idle or in use.
    pub open: u32,
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// A consistent read of one tenant's state, as the changes that rebuild it.
#[async_trait]
pub trait SnapshotReader: Send {
    /// The tenant revision the snapshot shows.
    fn revision(&self) -> Revision;
    /// The next changes of the snapshot, from at most `rows` rows (users,
    /// groups, memberships, administrator entries, catalog assignments), or
    /// `None` when it is complete. Within a snapshot, order carries no meaning:
    /// the state is whole at its end.
    async fn next_page(&mut self, rows: i64) -> StoreResult<Option<Vec<Change>>>;
}
