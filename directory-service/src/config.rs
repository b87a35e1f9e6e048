//! Typed settings, from flags and environment variables, with defaults that run
//! with no set-up (SQLite in `./data/directory`, listening on 127.0.0.1:50051).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use secrecy::SecretString;

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
    #[arg(long, env = "COHORT_DIRECTORY_DATABASE_URL", hide_env_values = true, value_parser = cohort_shared::serving::secret)]
    pub database_url: Option<SecretString>,

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

    /// Feed streams open at once; one more is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "COHORT_FEED_MAX_STREAMS", default_value_t = 64)]
    pub feed_max_streams: usize,

    /// More feed streams, beyond --feed-max-streams, kept for streams that follow
    /// every tenant (the authorization services), so that no other caller can
    /// lock them out.
    #[arg(long, env = "COHORT_FEED_RESERVED_STREAMS", default_value_t = 8)]
    pub feed_reserved_streams: usize,

    /// Feed streams one credential may hold open at once (reserved ones
    /// included); one more is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "COHORT_FEED_STREAMS_PER_CREDENTIAL", default_value_t = 16,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub feed_streams_per_credential: usize,

    #[command(flatten)]
    pub serving: cohort_shared::serving::ServingArgs,

    #[command(flatten)]
    pub process: cohort_shared::serving::ProcessArgs,
}

pub use cohort_shared::serving::LogFormat;

pub use cohort_shared::serving::Database;

impl Default for Settings {
    /// The flags' defaults, without the environment: what a program that embeds
    /// the service starts from (`Settings { listen, ..Default::default() }`).
    fn default() -> Self {
        cohort_shared::serving::defaults()
    }
}

impl Settings {
    /// The change feed's settings.
    pub fn feed(&self) -> crate::feed::FeedSettings {
        crate::feed::FeedSettings {
            checkpoint_interval: self.feed_checkpoint_interval,
            poll_interval: self.feed_poll_interval,
            send_timeout: self.feed_send_timeout,
            retention: self.feed_retention,
            max_streams: self.feed_max_streams,
            reserved_streams: self.feed_reserved_streams,
            streams_per_credential: self.feed_streams_per_credential,
            ..Default::default()
        }
    }

    /// The database to use; an unknown URL scheme is an error naming the setting.
    pub fn database(&self) -> anyhow::Result<Database> {
        Database::choose(
            self.database_url.as_ref(),
            &self.data_dir,
            "COHORT_DIRECTORY_DATABASE_URL",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_the_flags_defaults() {
        let settings = Settings::default();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(settings.data_dir, PathBuf::from("data/directory"));
        assert!(settings.database_url.is_none());
        assert_eq!(settings.serving.max_concurrent_calls, 256);
    }

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

    #[test]
    fn serving_settings_are_checked_and_named() {
        let half_tls =
            Settings::try_parse_from(["cohort-directory", "--tls-cert", "cert.pem"]).unwrap();
        assert!(half_tls
            .serving
            .tls()
            .unwrap_err()
            .to_string()
            .contains("--tls-key"));
        let bad_token =
            Settings::try_parse_from(["cohort-directory", "--auth-tokens", "short:x"]).unwrap();
        assert!(bad_token
            .serving
            .credentials()
            .unwrap_err()
            .to_string()
            .contains("--auth-tokens"));
        let limited =
            Settings::try_parse_from(["cohort-directory", "--max-concurrent-calls", "3"]).unwrap();
        assert_eq!(limited.serving.limits().max_concurrent_calls, 3);
    }
}
