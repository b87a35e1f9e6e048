//! The SQLite backend, the embedded default that needs no set-up. Opens (and
//! creates) the database file in WAL mode, runs the embedded migrations
//! (`migrations/sqlite`) at start-up, and serves the shared SQL in `sql.rs` with
//! SQLite's types.
//!
//! SQLite has one writer at a time: a write transaction takes the database's write
//! lock at its first statement (the tenant revision bump) and others wait on the
//! busy timeout. Readers are not blocked (WAL).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use tokio::sync::broadcast;

use crate::domain::{Revision, TenantId};

type Db = sqlx::Sqlite;
type DbConn = sqlx::SqliteConnection;
type Store = SqliteStore;

/// The directory on SQLite.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Announces commits to this process's feed streams. Another process writing
    /// the same file is only seen by the feed's safety poll.
    commits: broadcast::Sender<(TenantId, Revision)>,
}

impl SqliteStore {
    /// Opens the database at `url` (`sqlite://path`; created if missing) and brings
    /// the schema up to date.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore {
            pool,
            commits: super::signal::channel(),
        })
    }

    /// Opens `dir/directory.db`, creating the folder if needed.
    pub async fn open_in(dir: &Path, max_connections: u32) -> Result<Self, sqlx::Error> {
        std::fs::create_dir_all(dir)?;
        let url = format!("sqlite://{}", dir.join("directory.db").display());
        Self::connect(&url, max_connections).await
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Announces a commit to this process's feed streams.
    fn after_commit(&self, tenant: TenantId, revision: Revision) {
        let _ = self.commits.send((tenant, revision));
    }

    /// A read transaction: in WAL mode it sees one consistent state from its first
    /// read on, without blocking writers.
    async fn begin_snapshot(&self) -> Result<Transaction<'static, Db>, sqlx::Error> {
        self.pool.begin().await
    }
}

include!("sql.rs");
