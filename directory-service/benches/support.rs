//! What both directory benchmarks need: a scratch PostgreSQL database.

use sqlx::Connection;

/// The server's admin URL (`COHORT_TEST_DATABASE_URL`, as the tests use).
pub fn admin_url() -> String {
    std::env::var("COHORT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A new database: its URL and name.
pub async fn create_database() -> anyhow::Result<(String, String)> {
    let admin_url = admin_url();
    let name = format!("cohort_bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("a database URL names a database");
    Ok((format!("{base}/{name}"), name))
}

pub async fn drop_database(name: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(&admin_url()).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}
