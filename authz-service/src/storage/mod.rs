//! Storage layer: the projection, persisted. One trait, [`ProjectionStore`], with
//! one implementation per database; as in the directory, the SQL is written once
//! (`sql.rs`) and compiled into each backend module with its sqlx types.

pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{Change, Revision, TenantState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How a batch of changes relates to what is stored for its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// Changes on top of the stored state.
    Incremental,
    /// A whole new state (a snapshot): what was stored for the tenant goes first.
    Replace,
}

#[async_trait]
pub trait ProjectionStore: Send + Sync + 'static {
    /// Every stored tenant's state, at its checkpoint.
    async fn load(&self) -> StoreResult<Vec<(Uuid, TenantState)>>;
    /// Applies changes and moves the tenant's checkpoint to `revision`, in one
    /// transaction.
    async fn apply(
        &self,
        tenant: Uuid,
        revision: Revision,
        mode: Apply,
        changes: &[Change],
    ) -> StoreResult<()>;
}
