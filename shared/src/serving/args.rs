//! The serving flags every server takes ([`ServingArgs`]), secret-valued
//! settings, and the flags' defaults without the environment.

use super::{Limits, TlsFiles};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// A setting that holds a secret (credentials, database URLs with passwords):
/// kept as a [`SecretString`], which `Debug` prints redacted.
pub fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw))
}

/// The value every flag of `T` defaults to, ignoring the environment: where a
/// program that embeds a service (the stack, the tests) starts its settings,
/// named field by field, so that its own `COHORT_*` variables (meant for it, or
/// for another process) cannot leak into the service. The defaults stay where
/// the flags declare them.
pub fn defaults<T: clap::Args>() -> T {
    let command = T::augment_args(clap::Command::new("defaults"))
        .mut_args(|arg| arg.env(None::<&'static str>));
    let matches = command
        .try_get_matches_from(["defaults"])
        .expect("every flag has a default or is optional");
    T::from_arg_matches(&matches).expect("the defaults parse")
}

/// The serving options every Cohort server takes (flattened into each service's
/// settings): limits, TLS and the callers' credentials.
#[derive(Debug, Clone, clap::Args)]
pub struct ServingArgs {
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP), for
    /// example 127.0.0.1:9464; not served when unset.
    #[arg(long, env = "COHORT_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// How long a stopping server keeps serving after its health turned
    /// NOT_SERVING (at SIGTERM), so that load balancers move callers elsewhere
    /// before it stops taking calls; for example 5s behind a load balancer.
    #[arg(long, env = "COHORT_SHUTDOWN_DRAIN", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_drain: Duration,

    /// Calls in flight at once; one more is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "COHORT_MAX_CONCURRENT_CALLS", default_value_t = 256)]
    pub max_concurrent_calls: usize,

    /// The largest message a call may send or receive, in bytes (at least 64 KiB).
    /// Give both services the same value: the directory cuts its feed messages to
    /// half of it, and the authorization service takes feed messages up to it.
    #[arg(long, env = "COHORT_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(65_536..=(1 << 31)))]
    pub max_message_bytes: usize,

    /// TLS certificate (PEM) to serve with; with --tls-key, connections are TLS.
    #[arg(long, env = "COHORT_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "COHORT_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,

    /// CA (PEM) whose client certificates are accepted and verified.
    #[arg(long, env = "COHORT_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// Refuse clients without a certificate from --tls-client-ca.
    #[arg(long, env = "COHORT_TLS_REQUIRE_CLIENT_CERT")]
    pub tls_require_client_cert: bool,

    /// Credentials of the services that may call, `name:secret[:tenant,...]`,
    /// separated by `;` or spaces. Without any, the development credential of
    /// --dev-token-file is accepted.
    #[arg(long, env = "COHORT_AUTH_TOKENS", hide_env_values = true, value_parser = secret)]
    pub auth_tokens: Option<SecretString>,

    /// Where the development credential (`dev`) is kept when no credentials are
    /// configured (default: `dev-token` in the service's data folder). It is
    /// generated once, written with mode 0600, and reused at every start, so a
    /// pasted token keeps working; services given the same file accept the same
    /// credential (and the authorization service presents it to the directory).
    #[arg(long, env = "COHORT_DEV_TOKEN_FILE")]
    pub dev_token_file: Option<std::path::PathBuf>,
}

/// What every service binary takes besides its serving options: the log
/// format, and the health-probe mode for container health checks.
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessArgs {
    /// Instead of serving, ask the service listening on `--listen` whether it is
    /// healthy, and exit 0 (serving) or 1: for container health checks.
    #[arg(long)]
    pub health_probe: bool,

    /// Log format.
    #[arg(long, env = "COHORT_LOG_FORMAT", value_enum, default_value_t = super::LogFormat::Human)]
    pub log_format: super::LogFormat,
}

impl ProcessArgs {
    /// A service binary's first step: with `--health-probe`, asks the service
    /// `api` listening on `listen` whether it is healthy and exits with the
    /// answer; otherwise sets up the logs (and traces) of `program`.
    pub async fn probe_or_init_logs(
        &self,
        listen: std::net::SocketAddr,
        api: &str,
        program: &str,
    ) -> anyhow::Result<super::LogGuard> {
        if self.health_probe {
            let probed = super::probe_health(listen, api).await;
            super::exit_with_probe(api, probed);
        }
        super::init_tracing(self.log_format, program)
    }
}

impl Default for ServingArgs {
    /// The flags' defaults, without the environment ([`defaults`]).
    fn default() -> Self {
        defaults()
    }
}

impl ServingArgs {
    /// What the server takes on.
    pub fn limits(&self) -> Limits {
        Limits {
            max_concurrent_calls: self.max_concurrent_calls,
            max_message_bytes: self.max_message_bytes,
        }
    }

    /// The TLS settings, if any; a half-given pair is an error naming the settings.
    pub fn tls(&self) -> anyhow::Result<Option<TlsFiles>> {
        TlsFiles::from_settings(
            &self.tls_cert,
            &self.tls_key,
            &self.tls_client_ca,
            self.tls_require_client_cert,
        )
        .map_err(anyhow::Error::msg)
    }

    /// The configured credentials; an invalid one is an error naming the setting.
    /// A setting that is empty (as an unset variable in a compose file gives)
    /// counts as none.
    pub fn credentials(&self) -> anyhow::Result<Vec<crate::auth::Credential>> {
        match self.auth_tokens.as_ref().map(|t| t.expose_secret().trim()) {
            None | Some("") => Ok(Vec::new()),
            Some(raw) => crate::auth::Credential::parse_list(raw)
                .map_err(|e| anyhow::anyhow!("COHORT_AUTH_TOKENS / --auth-tokens: {e}")),
        }
    }

    /// The development credential, when no credentials are configured: read
    /// from --dev-token-file (`default_file` without it), or generated there.
    pub fn dev_credential(
        &self,
        default_file: &std::path::Path,
    ) -> anyhow::Result<Option<crate::auth::Credential>> {
        if !self.credentials()?.is_empty() {
            return Ok(None);
        }
        let file = self.dev_token_file.as_deref().unwrap_or(default_file);
        crate::auth::Credential::dev_kept_in(file).map(Some)
    }

    /// How the server authenticates: the configured credentials or, without any,
    /// the development credential (a server never runs open), announced with the
    /// command that uses it.
    pub fn auth(&self, default_dev_file: &std::path::Path) -> anyhow::Result<crate::auth::Auth> {
        let mut credentials = self.credentials()?;
        if let Some(dev) = self.dev_credential(default_dev_file)? {
            let file = self.dev_token_file.as_deref().unwrap_or(default_dev_file);
            // The secret itself is never logged (logs travel to aggregators);
            // the command reads it from its file.
            tracing::warn!(
                file = %file.display(),
                "no credentials configured (--auth-tokens): accepting the development credential \
                 kept in {0}; call with: grpcurl -plaintext -H \"authorization: Bearer $(cat {0})\" \
                 <address> list",
                file.display()
            );
            credentials.push(dev);
        }
        Ok(crate::auth::Auth::required(credentials))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[command(flatten)]
        serving: ServingArgs,
    }

    /// The flags read the environment; the defaults an embedding program starts
    /// from do not. (This variable is read by no other test of this crate.)
    #[test]
    fn defaults_ignore_the_environment() {
        std::env::set_var("COHORT_MAX_CONCURRENT_CALLS", "3");
        let from_flags = Flags::try_parse_from(["flags"]).unwrap();
        let defaults = ServingArgs::default();
        std::env::remove_var("COHORT_MAX_CONCURRENT_CALLS");
        assert_eq!(from_flags.serving.max_concurrent_calls, 3);
        assert_eq!(defaults.max_concurrent_calls, 256);
        assert_eq!(defaults.max_message_bytes, 4 * 1024 * 1024);
        assert!(defaults.auth_tokens.is_none());
    }
}
