//! Storage layer: the projection, persisted. One trait, [`ProjectionStore`], with
//! one implementation per database; as in the directory, the SQL is written once
//! (`sql.rs`), mounted as a child module of each backend and compiled with its sqlx
//! types.
//!
//! A tenant is stored as a **base** (pages of its state, [`format::Page`]) and a
//! **log** of the change sets applied since ([`format::LogEntry`]), under a
//! *generation* number. A change set is one log row and a checkpoint, in one
//! transaction. A new base (a snapshot from the directory, or a compaction of a
//! long log) is written page by page under a new generation, apart from the live
//! one, which keeps serving; [`ProjectionStore::commit_base`] makes it live in one
//! small transaction. A base left unfinished (the service killed midway) is
//! removed by the next [`ProjectionStore::begin_base`] of its tenant or at start.

pub mod format;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;

use crate::domain::{Change, Revision, TenantId, TenantState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("corrupt projection: {0}")]
    Corrupt(String),
    #[error("the projection was written in format {0}, which this version does not read")]
    Format(u32),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A generation of a tenant's stored base.
pub type Generation = i64;

/// A tenant as stored: its state at its checkpoint, and what it was loaded from.
#[derive(Debug)]
pub struct StoredTenant {
    pub tenant: TenantId,
    pub state: TenantState,
    /// Changes in the base.
    pub base_changes: u64,
    /// Change sets in the log on top of it.
    pub log_entries: u64,
    /// Changes in those change sets.
    pub log_changes: u64,
}

/// What a new base is, for [`ProjectionStore::commit_base`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// The directory's consistent snapshot at `revision`: the base is the whole
    /// state at that revision; every earlier log row goes.
    Snapshot { revision: Revision },
    /// The state as kept in memory, written out page by page while changes kept
    /// applying: each page shows the state at some revision from `from` on. Log
    /// rows after `from` stay on top of it; applied again, they bring every part to
    /// the checkpoint (every change sets or adds, so a change applied twice is
    /// applied once).
    Compaction { from: Revision },
}

/// One change set for [`ProjectionStore::append_all`].
#[derive(Debug, Clone)]
pub struct Appended {
    pub tenant: TenantId,
    pub revision: Revision,
    pub changes: Vec<Change>,
}

#[async_trait]
pub trait ProjectionStore: Send + Sync + 'static {
    /// Every stored tenant's state, at its checkpoint: its base, then its log.
    async fn load(&self) -> StoreResult<Vec<StoredTenant>>;

    /// Appends one change set to the tenant's log and moves its checkpoint to
    /// `revision`, in one transaction.
    async fn append(
        &self,
        tenant: TenantId,
        revision: Revision,
        changes: &[Change],
    ) -> StoreResult<()>;

    /// Appends several change sets (of one or more tenants, each tenant's in
    /// revision order) and moves each tenant's checkpoint to its last, with one
    /// commit where it can: a follower that receives change sets faster than it
    /// commits writes them together.
    async fn append_all(&self, sets: &[Appended]) -> StoreResult<()>;

    /// Starts a new base for the tenant, kept apart from the live one; removes
    /// what an unfinished base left. Its generation.
    async fn begin_base(&self, tenant: TenantId) -> StoreResult<Generation>;

    /// Writes the page `seq` of a base being built (changes that add or set).
    async fn write_page(
        &self,
        tenant: TenantId,
        generation: Generation,
        seq: i64,
        changes: &[Change],
    ) -> StoreResult<()>;

    /// Makes a base live and removes the old one; the number of log rows that now
    /// lie on top of it.
    async fn commit_base(
        &self,
        tenant: TenantId,
        generation: Generation,
        base: Base,
    ) -> StoreResult<u64>;
}
