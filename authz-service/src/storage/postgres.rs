//! The projection on PostgreSQL: a pool, the embedded migrations
//! (`migrations/postgres`), and the shared SQL of `sql.rs`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

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
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PgProjection { pool })
    }
}

include!("sql.rs");

impl PgProjection {
    /// Appends a log entry and moves the checkpoint, in one statement (its own
    /// transaction): the checkpoint row first, which orders the append with a base
    /// being made live, then the log row in the generation that row names. `None`
    /// when the tenant has no checkpoint yet.
    async fn append_entry(
        &self,
        tenant: Uuid,
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
        .bind(tenant)
        .bind(revision)
        .bind(body)
        .fetch_optional(&self.pool)
        .await?)
    }
}
