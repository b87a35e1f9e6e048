//! The PostgreSQL backend, for production. Connects a pool, runs the embedded
//! migrations (`migrations/postgres`) at start-up, and serves the shared SQL in
//! `sql.rs` with PostgreSQL's types.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::broadcast;

use super::signal;
use crate::domain::{Revision, TenantId};

type Db = sqlx::Postgres;
type DbConn = sqlx::PgConnection;
type Store = PgStore;

/// The directory on PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    /// Shared by every request; sqlx returns a connection whose transaction was left
    /// open (a cancelled call) only after rolling it back.
    pool: PgPool,
    /// Announces commits to this process's feed streams (see `signal`).
    commits: broadcast::Sender<(TenantId, Revision)>,
    /// Keeps the NOTIFY listener alive as long as a handle to the store is.
    _listener: Arc<signal::ListenerGuard>,
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
        let commits = signal::channel();
        let listener = signal::spawn_listener(pool.clone(), commits.clone());
        Ok(PgStore {
            pool,
            commits,
            _listener: listener,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Announces a commit: at once to this process, and with NOTIFY (after the
    /// commit, off the caller's path) to every replica.
    fn after_commit(&self, tenant: TenantId, revision: Revision) {
        let _ = self.commits.send((tenant, revision));
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let notified = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(signal::NOTIFY_CHANNEL)
                .bind(signal::encode(tenant, revision))
                .execute(&pool)
                .await;
            if let Err(err) = notified {
                tracing::warn!(error = %err, "could not announce a commit; feeds will catch up on their next poll");
            }
        });
    }

    /// A read-only transaction that sees one consistent state throughout.
    async fn begin_snapshot(&self) -> Result<Transaction<'static, Db>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

include!("sql.rs");
