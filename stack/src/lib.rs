//! `cohort-stack`: the directory and the authorization service in one process,
//! for trying Cohort locally with no set-up. Both keep their data under one folder
//! (SQLite, kept across restarts); the authorization service follows the
//! directory; Ctrl-C stops both cleanly (in-flight calls finish, streams close).
//! Both accept a development credential kept in `<data>/dev-token` (generated at
//! the first start, mode 0600, reused after), or the credentials of
//! `COHORT_AUTH_TOKENS` (with `COHORT_AUTHZ_DIRECTORY_TOKEN`, the one the
//! authorization service presents to the directory).
//!
//! In production, run `cohort-directory` and `cohort-authz` separately.
//!
//! [`Ephemeral`] starts a throwaway stack on random ports for examples and tests.
//!
//! Layout: [`Settings`] (flags and environment), [`Stack::build`] (opens both
//! services and binds their listeners), [`Stack::banner`] (what `main` prints)
//! and [`Stack::run_until`]; `main.rs` only wires them to the process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use cohort_shared::auth::Credential;
use cohort_shared::serving::{LogFormat, ServingArgs};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "cohort-stack",
    about = "Cohort's directory and authorization services, together, on embedded SQLite",
    version,
    after_help = "Credentials: without COHORT_AUTH_TOKENS, both services accept the development \
credential kept in <data-dir>/dev-token, created at the first start and reused after; \
delete the file for a new one. To pin your own, set COHORT_AUTH_TOKENS=name:secret and \
COHORT_AUTHZ_DIRECTORY_TOKEN=secret."
)]
pub struct Settings {
    /// Folder for both services' data.
    #[arg(long, env = "COHORT_STACK_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// The directory's address.
    #[arg(
        long,
        env = "COHORT_DIRECTORY_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub directory_listen: SocketAddr,
    /// The authorization service's address.
    #[arg(long, env = "COHORT_AUTHZ_LISTEN", default_value = "127.0.0.1:50052")]
    pub authz_listen: SocketAddr,
    /// Credentials both services accept instead of the development one.
    #[arg(long, env = "COHORT_AUTH_TOKENS", hide_env_values = true, value_parser = cohort_shared::serving::secret)]
    pub auth_tokens: Option<SecretString>,
    /// With --auth-tokens: the secret the authorization service presents to the
    /// directory.
    #[arg(long, env = "COHORT_AUTHZ_DIRECTORY_TOKEN", hide_env_values = true, value_parser = cohort_shared::serving::secret)]
    pub directory_token: Option<SecretString>,
    /// Log format.
    #[arg(long, env = "COHORT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

impl Default for Settings {
    /// The flags' defaults, without the environment.
    fn default() -> Self {
        cohort_shared::serving::defaults()
    }
}

/// Both services, built and bound, not serving yet.
pub struct Stack {
    directory: cohort_directory::startup::Application,
    authz: cohort_authz::startup::Application,
    data_dir: PathBuf,
    token_file: PathBuf,
    dev: Option<Credential>,
}

impl Stack {
    pub async fn build(settings: &Settings) -> anyhow::Result<Stack> {
        // One development credential for both services (and for the authorization
        // service's calls to the directory), unless --auth-tokens names others.
        std::fs::create_dir_all(&settings.data_dir)?;
        let data_dir = std::fs::canonicalize(&settings.data_dir)?;
        let token_file = data_dir.join("dev-token");
        let configured = settings
            .auth_tokens
            .as_ref()
            .map(|t| t.expose_secret().to_owned())
            .filter(|t| !t.trim().is_empty());
        let dev = match configured {
            Some(_) => None,
            None => Some(Credential::dev_kept_in(&token_file)?),
        };
        let tokens = configured
            .clone()
            .unwrap_or_else(|| format!("dev:{}", dev.as_ref().expect("kept").secret()));
        let directory_token = settings
            .directory_token
            .as_ref()
            .map(|t| t.expose_secret().to_owned())
            .filter(|t| !t.trim().is_empty())
            .or_else(|| dev.as_ref().map(|d| d.secret().to_owned()))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "COHORT_AUTH_TOKENS is set: set COHORT_AUTHZ_DIRECTORY_TOKEN to one of its secrets too"
                )
            })?;

        // Each service's settings, named field by field from the stack's own:
        // the services' environment variables (a metrics address, a database
        // URL) are for separate services and must not reach these two.
        let serving = || ServingArgs {
            auth_tokens: Some(tokens.clone().into()),
            ..ServingArgs::default()
        };
        let directory_settings = cohort_directory::config::Settings {
            listen: settings.directory_listen,
            data_dir: data_dir.join("directory"),
            serving: serving(),
            ..Default::default()
        };
        let directory = cohort_directory::startup::Application::build(&directory_settings).await?;
        let directory_addr = directory.local_addr();

        let authz_settings = cohort_authz::config::Settings {
            listen: settings.authz_listen,
            directory: format!("http://{directory_addr}"),
            directory_token: Some(directory_token.into()),
            data_dir: data_dir.join("authz"),
            serving: serving(),
            ..Default::default()
        };
        let authz = cohort_authz::startup::Application::build(&authz_settings).await?;
        Ok(Stack {
            directory,
            authz,
            data_dir,
            token_file,
            dev,
        })
    }

    pub fn directory_addr(&self) -> SocketAddr {
        self.directory.local_addr()
    }

    pub fn authz_addr(&self) -> SocketAddr {
        self.authz.local_addr()
    }

    /// What the stack prints at start: addresses, data folder, credential and a
    /// command that works as pasted.
    pub fn banner(&self) -> String {
        let (directory_addr, authz_addr) = (self.directory_addr(), self.authz_addr());
        let mut banner = format!(
            "directory service:     {directory_addr}  (cohort.directory.v1.DirectoryService, ChangeFeedService)\n\
             authorization service: {authz_addr}  (cohort.authz.v1.AuthzService)\n\
             data:                  {}\n",
            self.data_dir.display()
        );
        match &self.dev {
            Some(dev) => {
                banner += &format!(
                    "credential:            {} (kept in {})\n\
                     try:                   grpcurl -plaintext -H 'authorization: Bearer {}' {directory_addr} list\n",
                    dev.secret(),
                    self.token_file.display(),
                    dev.secret()
                );
            }
            None => banner += "credential:            those of COHORT_AUTH_TOKENS\n",
        }
        banner
    }

    /// Serves until `shutdown` completes, then stops both: the authorization
    /// service first, so that it does not see its feed close and spend its last
    /// moments reconnecting.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_authz, authz_stopping) = oneshot::channel::<()>();
        let (stop_directory, directory_stopping) = oneshot::channel::<()>();
        let authz_task = tokio::spawn(self.authz.run_until(async {
            let _ = authz_stopping.await;
        }));
        let directory_task = tokio::spawn(self.directory.run_until(async {
            let _ = directory_stopping.await;
        }));
        shutdown.await;
        let _ = stop_authz.send(());
        authz_task.await??;
        let _ = stop_directory.send(());
        directory_task.await??;
        Ok(())
    }
}

/// A whole stack on random local ports, in a fresh temporary folder, with a
/// generated credential: for examples and tests that need real services and
/// nothing set up. Stop it with [`Ephemeral::stop`]; dropped, it stops in the
/// background and its folder is removed.
pub struct Ephemeral {
    directory: SocketAddr,
    authz: SocketAddr,
    token: String,
    data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Ephemeral {
    /// Starts both services and waits until the authorization service has
    /// caught up with the directory.
    pub async fn start() -> anyhow::Result<Ephemeral> {
        let data_dir = std::env::temp_dir().join(format!(
            "cohort-ephemeral-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        // Random, as the services require of any secret (a v4 UUID: 122 bits).
        let token = format!("ephemeral-{}", uuid::Uuid::new_v4().simple());
        let settings = Settings {
            data_dir: data_dir.clone(),
            directory_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            authz_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            auth_tokens: Some(format!("ephemeral:{token}").into()),
            directory_token: Some(token.clone().into()),
            ..Default::default()
        };
        let stack = Stack::build(&settings).await?;
        let (directory, authz) = (stack.directory_addr(), stack.authz_addr());
        let (stop, stopping) = oneshot::channel::<()>();
        let serving = tokio::spawn(stack.run_until(async {
            let _ = stopping.await;
        }));
        let ephemeral = Ephemeral {
            directory,
            authz,
            token,
            data_dir,
            stop: Some(stop),
            serving: Some(serving),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while cohort_shared::serving::probe_health(authz, "cohort.authz.v1.AuthzService")
            .await
            .is_err()
        {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the authorization service did not catch up within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(ephemeral)
    }

    /// The directory's URL (`http://127.0.0.1:port`).
    pub fn directory_url(&self) -> String {
        format!("http://{}", self.directory)
    }

    /// The authorization service's URL.
    pub fn authz_url(&self) -> String {
        format!("http://{}", self.authz)
    }

    /// The secret both services accept.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Stops both services (calls in flight finish) and removes the folder.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await??;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        Ok(())
    }
}

impl Drop for Ephemeral {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
