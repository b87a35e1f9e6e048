//! Typed settings, from flags and environment variables, with defaults that run
//! with no set-up (SQLite in `./data/directory`, listening on 127.0.0.1:50051).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "cohort-directory",
    about = "Cohort's directory service (gRPC)",
    version
)]
pub struct Settings {
    /// Address to listen on (port 0 picks a free one).
    #[arg(
        long,
        env = "COHORT_DIRECTORY_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,

    /// Database URL: `postgres://...` or `sqlite://path`. Without it, SQLite in
    /// `--data-dir`.
    #[arg(long, env = "COHORT_DIRECTORY_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Folder for the embedded SQLite database when no database URL is given.
    #[arg(
        long,
        env = "COHORT_DIRECTORY_DATA_DIR",
        default_value = "data/directory"
    )]
    pub data_dir: PathBuf,

    /// Most database connections in the pool.
    #[arg(long, env = "COHORT_DIRECTORY_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_connections: u32,

    /// How long the change feed keeps events (`7d`, `12h`); a subscriber whose
    /// cursor is older gets a snapshot.
    #[arg(long, env = "COHORT_FEED_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub feed_retention: Duration,

    /// How often an open feed stream receives checkpoints, also when idle.
    #[arg(long, env = "COHORT_FEED_CHECKPOINT_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub feed_checkpoint_interval: Duration,

    /// The feed's safety poll behind commit notifications.
    #[arg(long, env = "COHORT_FEED_POLL_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub feed_poll_interval: Duration,

    /// How long a feed subscriber may take nothing before it is cut off.
    #[arg(long, env = "COHORT_FEED_SEND_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub feed_send_timeout: Duration,

    /// Calls in flight at once; one more is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "COHORT_MAX_CONCURRENT_CALLS", default_value_t = 256)]
    pub max_concurrent_calls: usize,

    /// The largest message a call may send or receive, in bytes.
    #[arg(long, env = "COHORT_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Feed streams open at once; one more is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "COHORT_FEED_MAX_STREAMS", default_value_t = 64)]
    pub feed_max_streams: usize,

    /// TLS certificate (PEM) to serve with; with --tls-key, connections are TLS.
    #[arg(long, env = "COHORT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "COHORT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// CA (PEM) whose client certificates are accepted and verified.
    #[arg(long, env = "COHORT_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// Refuse clients without a certificate from --tls-client-ca.
    #[arg(long, env = "COHORT_TLS_REQUIRE_CLIENT_CERT")]
    pub tls_require_client_cert: bool,

    /// Credentials of the services that may call, `name:secret[:tenant,...]`,
    /// separated by `;` or spaces. Without any, a development credential is
    /// generated at start and printed in the log.
    #[arg(long, env = "COHORT_AUTH_TOKENS", hide_env_values = true)]
    pub auth_tokens: Option<String>,

    /// Instead of serving, ask the service listening on `--listen` whether it is
    /// healthy, and exit 0 (serving) or 1: for container health checks.
    #[arg(long)]
    pub health_probe: bool,

    /// Log format.
    #[arg(long, env = "COHORT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

pub use cohort_shared::serving::LogFormat;

/// Where the directory keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Postgres(String),
    Sqlite(String),
    SqliteDir(PathBuf),
}

impl Settings {
    /// The TLS settings, if any; a half-given pair is an error naming the settings.
    pub fn tls(&self) -> anyhow::Result<Option<cohort_shared::serving::TlsFiles>> {
        cohort_shared::serving::TlsFiles::from_settings(
            &self.tls_cert,
            &self.tls_key,
            &self.tls_client_ca,
            self.tls_require_client_cert,
        )
        .map_err(anyhow::Error::msg)
    }

    /// What the server takes on.
    pub fn limits(&self) -> cohort_shared::serving::Limits {
        cohort_shared::serving::Limits {
            max_concurrent_calls: self.max_concurrent_calls,
            max_message_bytes: self.max_message_bytes,
        }
    }

    /// The configured credentials; an invalid one is an error naming the setting.
    pub fn credentials(&self) -> anyhow::Result<Vec<cohort_shared::auth::Credential>> {
        match &self.auth_tokens {
            None => Ok(Vec::new()),
            Some(raw) => cohort_shared::auth::Credential::parse_list(raw)
                .map_err(|e| anyhow::anyhow!("COHORT_AUTH_TOKENS / --auth-tokens: {e}")),
        }
    }

    /// The change feed's settings.
    pub fn feed(&self) -> crate::feed::FeedSettings {
        crate::feed::FeedSettings {
            checkpoint_interval: self.feed_checkpoint_interval,
            poll_interval: self.feed_poll_interval,
            send_timeout: self.feed_send_timeout,
            retention: self.feed_retention,
            max_streams: self.feed_max_streams,
            ..Default::default()
        }
    }

    /// The database to use; an unknown URL scheme is an error naming the setting.
    pub fn database(&self) -> anyhow::Result<Database> {
        match &self.database_url {
            None => Ok(Database::SqliteDir(self.data_dir.clone())),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Database::Postgres(url.clone()))
            }
            Some(url) if url.starts_with("sqlite:") => Ok(Database::Sqlite(url.clone())),
            Some(_) => anyhow::bail!(
                "COHORT_DIRECTORY_DATABASE_URL / --database-url: expected postgres://... or sqlite://..."
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_without_set_up() {
        let settings = Settings::try_parse_from(["cohort-directory"]).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(
            settings.database().unwrap(),
            Database::SqliteDir(PathBuf::from("data/directory"))
        );
    }

    #[test]
    fn invalid_settings_are_named() {
        let err = Settings::try_parse_from(["cohort-directory", "--listen", "nope"]).unwrap_err();
        assert!(err.to_string().contains("--listen"), "{err}");
        let settings =
            Settings::try_parse_from(["cohort-directory", "--database-url", "mysql://x"]).unwrap();
        assert!(settings
            .database()
            .unwrap_err()
            .to_string()
            .contains("database-url"));
    }
}
