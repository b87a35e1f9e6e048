//! The PostgreSQL backend, for production. Connects a pool, runs the embedded
//! migrations (`migrations/postgres`) at start-up, and serves the shared SQL in
//! `sql.rs` with PostgreSQL's types.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

type Db = sqlx::Postgres;
type DbConn = sqlx::PgConnection;
type Store = PgStore;

/// The directory on PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    /// Shared by every request; sqlx returns a connection whose transaction was left
    /// open (a cancelled call) only after rolling it back.
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` with at most `max_connections` and brings the schema up to
    /// date.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name("cohort-directory");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Called after every commit that produced a change set.
    fn after_commit(&self, _tenant: TenantId, _revision: Revision) {}
}

include!("sql.rs");
