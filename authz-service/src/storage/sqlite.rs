//! The projection on SQLite, the embedded default: a WAL-mode file, the embedded
//! migrations (`migrations/sqlite`), and the shared SQL of `sql.rs`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

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

include!("sql.rs");
