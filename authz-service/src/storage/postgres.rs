//! The projection on PostgreSQL: a pool, the embedded migrations
//! (`migrations/postgres`), and the shared SQL of `sql.rs`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::TenantId;
use crate::storage::StoreResult;
use sql::unknown_among;

/// The schema of the authorization service on PostgreSQL (also what test templates are migrated
/// with).
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

type Store = PgProjection;

#[derive(Clone)]
pub struct PgProjection {
    pool: PgPool,
}

impl PgProjection {
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name("cohort-authz");
        let pool = PgPoolOptions::new()
            // No ping before each use: a round trip per transaction. A broken
            // connection fails its statement, and sqlx discards it.
            .test_before_acquire(false)
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        MIGRATIONS.run(&pool).await?;
        Ok(PgProjection { pool })
    }
}

// The shared SQL, compiled once per backend with this backend's sqlx types.
#[allow(
    clippy::duplicate_mod,
    reason = "mounted by both backends on purpose: the same SQL over each backend's types"
)]
#[path = "sql.rs"]
mod sql;

impl PgProjection {
    /// Appends a log entry and moves the checkpoint, in one statement (its own
    /// transaction): the checkpoint row first, which orders the append with a base
    /// being made live, then the log row in the generation that row names. `None`
    /// when the tenant has no checkpoint yet.
    async fn append_entry(
        &self,
        tenant: TenantId,
        revision: i64,
        body: &[u8],
    ) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "WITH checkpoint AS (UPDATE projection_tenants SET revision = $2 WHERE tenant_id = $1 \
             RETURNING generation) \
             INSERT INTO projection_log (tenant_id, generation, revision, body) \
             SELECT $1, generation, $2, $3 FROM checkpoint \
             ON CONFLICT (tenant_id, generation, revision) DO UPDATE SET body = excluded.body \
             RETURNING generation",
        )
        .bind(tenant.0)
        .bind(revision)
        .bind(body)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Appends log entries of several tenants and moves each one's checkpoint to
    /// its last, in one statement (as `append_entry`, for many). The tenants that
    /// have no checkpoint yet, of which nothing was written.
    async fn append_entries(
        &self,
        tenants: &[Uuid],
        revisions: &[i64],
        bodies: &[Vec<u8>],
    ) -> StoreResult<Vec<Uuid>> {
        let known: Vec<Uuid> = sqlx::query_scalar(
            "WITH entry AS (SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::bytea[]) AS e(tenant_id, revision, body)), \
             checkpoint AS (UPDATE projection_tenants p SET revision = l.revision \
                 FROM (SELECT tenant_id, max(revision) AS revision FROM entry GROUP BY tenant_id) l \
                 WHERE p.tenant_id = l.tenant_id RETURNING p.tenant_id, p.generation), \
             logged AS (INSERT INTO projection_log (tenant_id, generation, revision, body) \
                 SELECT e.tenant_id, c.generation, e.revision, e.body FROM entry e JOIN checkpoint c USING (tenant_id) \
                 ON CONFLICT (tenant_id, generation, revision) DO UPDATE SET body = excluded.body) \
             SELECT tenant_id FROM checkpoint",
        )
        .bind(tenants)
        .bind(revisions)
        .bind(bodies)
        .fetch_all(&self.pool)
        .await?;
        Ok(unknown_among(tenants, &known))
    }
}
