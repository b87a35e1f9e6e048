//! Scratch places for tests and benchmarks, each removed when its guard drops,
//! whether the test passed or panicked (a failed run used to leave its databases
//! behind):
//!
//! - [`ScratchDatabase`]: a new PostgreSQL database on the server of
//!   `COHORT_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//!   empty or already migrated ([`ScratchDatabase::migrated`]: a copy of a
//!   template database migrated once per schema, so that a hundred server boots
//!   do not each run the migrations), dropped `WITH (FORCE)`, so connections a
//!   stopped or crashed server left open do not keep it.
//! - [`ScratchDir`]: a new folder under the system's temporary folder.
//!
//! One crate for the directory's API tests, the cross-service tests and the
//! benchmarks, which each had their own copy.

use std::path::{Path, PathBuf};

use sqlx::Connection;

/// The PostgreSQL server's admin URL (`COHORT_TEST_DATABASE_URL`).
pub fn admin_database_url() -> String {
    std::env::var("COHORT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A new PostgreSQL database, dropped with its guard.
#[derive(Debug)]
pub struct ScratchDatabase {
    url: String,
    name: String,
    /// Dropped already ([`ScratchDatabase::drop_now`]).
    dropped: bool,
}

impl ScratchDatabase {
    /// Creates `<prefix>_<random>` (a prefix of lowercase letters, digits and
    /// underscores, so that a leaked one says who made it).
    pub async fn create(prefix: &str) -> anyhow::Result<Self> {
        Self::create_from(prefix, None).await
    }

    /// Creates `<prefix>_<random>` with `migrations` already applied: a copy of
    /// a template database that the first caller (in any test process) migrates,
    /// named after the migrations' checksums, so a changed schema gets a new
    /// one. A server opening it finds nothing left to migrate.
    pub async fn migrated(
        prefix: &str,
        migrations: &sqlx::migrate::Migrator,
    ) -> anyhow::Result<Self> {
        let template = template(migrations).await?;
        Self::create_from(prefix, Some(&template)).await
    }

    async fn create_from(prefix: &str, template: Option<&str>) -> anyhow::Result<Self> {
        let admin_url = admin_database_url();
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
        let from = template
            .map(|t| format!(" TEMPLATE {t}"))
            .unwrap_or_default();
        sqlx::query(&format!("CREATE DATABASE {name}{from}"))
            .execute(&mut admin)
            .await?;
        let (base, _) = admin_url
            .rsplit_once('/')
            .ok_or_else(|| anyhow::anyhow!("COHORT_TEST_DATABASE_URL names no database"))?;
        Ok(ScratchDatabase {
            url: format!("{base}/{name}"),
            name,
            dropped: false,
        })
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops it now, reporting a failure (a guard that drops can only print it).
    pub async fn drop_now(mut self) -> anyhow::Result<()> {
        self.dropped = true;
        drop_database(&self.name).await
    }
}

/// The template database for `migrations`, created and migrated if it does not
/// exist yet. Test processes run side by side: an advisory lock makes one of
/// them build it, under a temporary name that is renamed only once migrated, so
/// nobody copies a half-built one (and a build cut off is dropped and redone).
async fn template(migrations: &sqlx::migrate::Migrator) -> anyhow::Result<String> {
    // Per process: the name of each template already made sure of.
    static READY: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut fingerprint: u64 = 0xcbf2_9ce4_8422_2325;
    for migration in migrations.iter() {
        for byte in migration
            .version
            .to_le_bytes()
            .iter()
            .chain(migration.checksum.iter())
        {
            fingerprint = (fingerprint ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let name = format!("cohort_template_{fingerprint:016x}");
    if READY.lock().expect("not poisoned").contains(&name) {
        return Ok(name);
    }
    let admin_url = admin_database_url();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    // Any fixed key: only these builds take it.
    const LOCK: i64 = 0x636f_686f_7274;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK)
        .execute(&mut admin)
        .await?;
    let built = async {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut admin)
                .await?;
        if !exists {
            let building = format!("{name}_building");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
            sqlx::query(&format!("CREATE DATABASE {building}"))
                .execute(&mut admin)
                .await?;
            let (base, _) = admin_url
                .rsplit_once('/')
                .ok_or_else(|| anyhow::anyhow!("COHORT_TEST_DATABASE_URL names no database"))?;
            let mut conn = sqlx::PgConnection::connect(&format!("{base}/{building}")).await?;
            migrations.run(&mut conn).await?;
            conn.close().await?;
            sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {name}"))
                .execute(&mut admin)
                .await?;
        }
        anyhow::Ok(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut admin)
        .await?;
    built?;
    READY.lock().expect("not poisoned").push(name.clone());
    Ok(name)
}

async fn drop_database(name: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(&admin_database_url()).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Drop may run on a runtime's thread (or while unwinding from a panic on
        // one), where blocking on another future is not allowed: the statement
        // runs on a thread and runtime of its own, and is waited for, so that the
        // database is gone before the test process exits.
        let name = self.name.clone();
        let dropping = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(drop_database(&name))
        });
        match dropping.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop the scratch database {}: {e}", self.name),
            Err(_) => eprintln!("dropping the scratch database {} panicked", self.name),
        }
    }
}

/// A new folder under the temporary folder, removed with its guard.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `<tmp>/<prefix>-<random>`.
    pub fn create(prefix: &str) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path)?;
        Ok(ScratchDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exists(name: &str) -> bool {
        let mut admin = sqlx::PgConnection::connect(&admin_database_url())
            .await
            .unwrap();
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
        )
        .bind(name)
        .fetch_one(&mut admin)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_scratch_database_is_dropped_with_its_guard_even_while_connected() {
        let database = ScratchDatabase::create("cohort_support").await.unwrap();
        let name = database.name().to_owned();
        assert!(exists(&name).await);
        // A connection left open, as a server that was not stopped leaves.
        let _open = sqlx::PgConnection::connect(database.url()).await.unwrap();
        drop(database);
        assert!(!exists(&name).await);
    }

    #[tokio::test]
    async fn a_test_that_panics_still_drops_its_database() {
        let created = tokio::spawn(async {
            let database = ScratchDatabase::create("cohort_support").await.unwrap();
            let name = database.name().to_owned();
            let _keep = database;
            if !name.is_empty() {
                panic!("{name}");
            }
        })
        .await
        .unwrap_err();
        let name = created
            .into_panic()
            .downcast::<String>()
            .expect("the panic names the database");
        assert!(!exists(&name).await, "{name} was left behind");
    }

    #[tokio::test]
    async fn drop_now_drops_at_once_and_the_guard_then_does_nothing() {
        let database = ScratchDatabase::create("cohort_support").await.unwrap();
        let name = database.name().to_owned();
        database.drop_now().await.unwrap();
        assert!(!exists(&name).await);
    }

    #[test]
    fn a_scratch_dir_is_removed_with_its_guard() {
        let dir = ScratchDir::create("cohort-support").unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let path = dir.path().to_owned();
        drop(dir);
        assert!(!path.exists());
    }
}
