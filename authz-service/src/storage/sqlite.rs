//! The projection on SQLite, the embedded default: a WAL-mode file, the embedded
//! migrations (`migrations/sqlite`), and the shared SQL of `sql.rs`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use uuid::Uuid;

use crate::domain::TenantId;
use crate::storage::StoreResult;
use sql::unknown_among;

type Store = SqliteProjection;

#[derive(Clone)]
pub struct SqliteProjection {
    pool: SqlitePool,
}

impl SqliteProjection {
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteProjection { pool })
    }

    /// Opens `dir/authz.db`, creating the folder if needed.
    pub async fn open_in(dir: &Path) -> Result<Self, sqlx::Error> {
        std::fs::create_dir_all(dir)?;
        Self::connect(&format!("sqlite://{}", dir.join("authz.db").display())).await
    }
}

// The shared SQL, compiled once per backend with this backend's sqlx types.
#[allow(
    clippy::duplicate_mod,
    reason = "mounted by both backends on purpose: the same SQL over each backend's types"
)]
#[path = "sql.rs"]
mod sql;

impl SqliteProjection {
    /// Appends a log entry and moves the checkpoint, in one transaction. `None`
    /// when the tenant has no checkpoint yet.
    async fn append_entry(
        &self,
        tenant: TenantId,
        revision: i64,
        body: &[u8],
    ) -> StoreResult<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let generation = Self::append_in(&mut tx, tenant, revision, body).await?;
        tx.commit().await?;
        Ok(generation)
    }

    /// Appends log entries of several tenants and moves each one's checkpoint, in
    /// one transaction (as `append_entry`, for many). The tenants that have no
    /// checkpoint yet, of which nothing was written.
    async fn append_entries(
        &self,
        tenants: &[Uuid],
        revisions: &[i64],
        bodies: &[Vec<u8>],
    ) -> StoreResult<Vec<Uuid>> {
        let mut tx = self.pool.begin().await?;
        let mut known = Vec::new();
        for ((tenant, revision), body) in tenants.iter().zip(revisions).zip(bodies) {
            if Self::append_in(&mut tx, TenantId(*tenant), *revision, body)
                .await?
                .is_some()
            {
                known.push(*tenant);
            }
        }
        tx.commit().await?;
        Ok(unknown_among(tenants, &known))
    }

    /// The checkpoint row first, then the log row in the generation it names;
    /// nothing and `None` when the tenant has no checkpoint.
    async fn append_in(
        tx: &mut sqlx::SqliteConnection,
        tenant: TenantId,
        revision: i64,
        body: &[u8],
    ) -> StoreResult<Option<i64>> {
        let generation: Option<i64> = sqlx::query_scalar(
            "UPDATE projection_tenants SET revision = $2 WHERE tenant_id = $1 RETURNING generation",
        )
        .bind(tenant.0)
        .bind(revision)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(generation) = generation else {
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO projection_log (tenant_id, generation, revision, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, generation, revision) DO UPDATE SET body = excluded.body",
        )
        .bind(tenant.0)
        .bind(generation)
        .bind(revision)
        .bind(body)
        .execute(&mut *tx)
        .await?;
        Ok(Some(generation))
    }
}
