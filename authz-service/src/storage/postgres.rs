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
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(PgProjection { pool })
    }
}

include!("sql.rs");
