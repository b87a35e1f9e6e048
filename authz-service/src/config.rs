//! Typed settings, from flags and environment variables, with defaults that run
//! with no set-up: listen on 127.0.0.1:50052, follow the directory at
//! 127.0.0.1:50051, keep the projection in SQLite under `./data/authz`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
pub use cohort_shared::serving::{Database, LogFormat};
use secrecy::SecretString;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "cohort-authz",
    about = "Cohort's authorization service (gRPC)",
    version
)]
pub struct Settings {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "COHORT_AUTHZ_LISTEN", default_value = "127.0.0.1:50052")]
    pub listen: SocketAddr,

    /// The directory service to follow.
    #[arg(
        long,
        env = "COHORT_AUTHZ_DIRECTORY",
        default_value = "http://127.0.0.1:50051"
    )]
    pub directory: String,

    /// Database URL for the projection: `postgres://...` or `sqlite://path`.
    /// Without it, SQLite in `--data-dir`.
    #[arg(long, env = "COHORT_AUTHZ_DATABASE_URL", hide_env_values = true, value_parser = cohort_shared::serving::secret)]
    pub database_url: Option<SecretString>,

    /// Folder for the embedded SQLite projection when no database URL is given.
    #[arg(long, env = "COHORT_AUTHZ_DATA_DIR", default_value = "data/authz")]
    pub data_dir: PathBuf,

    /// The longest a read waits for the revision it asks for, when the call itself
    /// sets no deadline.
    #[arg(long, env = "COHORT_AUTHZ_MAX_WAIT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_wait: Duration,

    /// Health reports NOT_SERVING once the directory's feed has been lost (and
    /// not caught up again) for this long, so that load balancers send reads to
    /// a replica that is up to date; SERVING again once it has caught up. 0s:
    /// never for a lost feed.
    #[arg(long, env = "COHORT_AUTHZ_FEED_STALENESS_BOUND", default_value = "60s", value_parser = humantime::parse_duration)]
    pub feed_staleness_bound: Duration,

    /// The secret this service presents to the directory (a credential the
    /// directory accepts, unrestricted: it follows every tenant).
    #[arg(long, env = "COHORT_AUTHZ_DIRECTORY_TOKEN", hide_env_values = true, value_parser = cohort_shared::serving::secret)]
    pub directory_token: Option<SecretString>,

    /// CA (PEM) that signed the directory's certificate, for an https:// directory.
    #[arg(long, env = "COHORT_AUTHZ_DIRECTORY_CA")]
    pub directory_ca: Option<PathBuf>,

    #[command(flatten)]
    pub serving: cohort_shared::serving::ServingArgs,

    #[command(flatten)]
    pub process: cohort_shared::serving::ProcessArgs,
}

impl Default for Settings {
    /// The flags' defaults, without the environment: what a program that embeds
    /// the service starts from (`Settings { listen, ..Default::default() }`).
    fn default() -> Self {
        cohort_shared::serving::defaults()
    }
}

impl Settings {
    /// The projection's database; an unknown URL scheme is an error naming the
    /// setting.
    pub fn database(&self) -> anyhow::Result<Database> {
        Database::choose(
            self.database_url.as_ref(),
            &self.data_dir,
            "COHORT_AUTHZ_DATABASE_URL",
        )
    }

    /// Checks what clap cannot: the directory address and the database URL.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.serving.tls()?;
        if !(self.directory.starts_with("http://") || self.directory.starts_with("https://")) {
            anyhow::bail!("COHORT_AUTHZ_DIRECTORY / --directory: expected http://host:port");
        }
        self.serving.credentials()?;
        self.database()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_settings_are_the_flags_defaults() {
        let settings = Settings::default();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:50052");
        assert_eq!(settings.data_dir, PathBuf::from("data/authz"));
        assert!(settings.database_url.is_none());
        assert_eq!(settings.serving.max_concurrent_calls, 256);
    }

    #[test]
    fn defaults_run_without_set_up() {
        let settings = Settings::try_parse_from(["cohort-authz"]).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:50052");
        assert_eq!(settings.directory, "http://127.0.0.1:50051");
        settings.validate().unwrap();
    }

    #[test]
    fn invalid_settings_are_named() {
        let settings =
            Settings::try_parse_from(["cohort-authz", "--directory", "localhost:1"]).unwrap();
        assert!(settings
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--directory"));
        let err = Settings::try_parse_from(["cohort-authz", "--max-wait", "later"]).unwrap_err();
        assert!(err.to_string().contains("--max-wait"), "{err}");
    }
}
