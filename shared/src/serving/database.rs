//! Where a service keeps its data, chosen the same way by both services from
//! their `--database-url` and `--data-dir` flags.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// The database a service opens.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A PostgreSQL URL (`postgres://` or `postgresql://`).
    Postgres(String),
    /// A SQLite URL (`sqlite:...`).
    Sqlite(String),
    /// The embedded default: a SQLite file in this folder.
    SqliteDir(PathBuf),
}

impl Database {
    /// The database of `url`, or SQLite in `data_dir` without one. An unknown
    /// scheme is an error naming the setting (`env` and its flag).
    pub fn choose(url: Option<&SecretString>, data_dir: &Path, env: &str) -> anyhow::Result<Self> {
        match url.map(ExposeSecret::expose_secret) {
            None => Ok(Database::SqliteDir(data_dir.to_owned())),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Database::Postgres(url.to_owned()))
            }
            Some(url) if url.starts_with("sqlite:") => Ok(Database::Sqlite(url.to_owned())),
            Some(_) => {
                anyhow::bail!("{env} / --database-url: expected postgres://... or sqlite://...")
            }
        }
    }
}

/// A PostgreSQL URL's password stays out of `Debug` output.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Postgres(_) => f.write_str("Postgres([REDACTED])"),
            Database::Sqlite(url) => f.debug_tuple("Sqlite").field(url).finish(),
            Database::SqliteDir(dir) => f.debug_tuple("SqliteDir").field(dir).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(url: Option<&str>) -> anyhow::Result<Database> {
        let url = url.map(|u| SecretString::from(u.to_owned()));
        Database::choose(url.as_ref(), Path::new("data/x"), "COHORT_X_DATABASE_URL")
    }

    #[test]
    fn the_url_scheme_chooses_the_database() {
        assert_eq!(choose(None).unwrap(), Database::SqliteDir("data/x".into()));
        for url in ["postgres://u:p@h/db", "postgresql://h/db"] {
            assert_eq!(choose(Some(url)).unwrap(), Database::Postgres(url.into()));
        }
        assert_eq!(
            choose(Some("sqlite://a.db")).unwrap(),
            Database::Sqlite("sqlite://a.db".into())
        );
        let err = choose(Some("mysql://h/db")).unwrap_err().to_string();
        assert!(
            err.contains("COHORT_X_DATABASE_URL / --database-url"),
            "{err}"
        );
    }

    #[test]
    fn a_postgres_password_stays_out_of_debug() {
        let debug = format!("{:?}", choose(Some("postgres://u:hunter2@h/db")).unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
