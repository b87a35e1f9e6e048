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

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use cohort_shared::auth::Credential;
use cohort_shared::serving::{self, LogFormat};
use tokio::sync::oneshot;

#[derive(Debug, Parser)]
#[command(
    name = "cohort-stack",
    about = "Cohort's directory and authorization services, together, on embedded SQLite",
    version,
    after_help = "Credentials: without COHORT_AUTH_TOKENS, both services accept the development \
credential kept in <data-dir>/dev-token, created at the first start and reused after; \
delete the file for a new one. To pin your own, set COHORT_AUTH_TOKENS=name:secret and \
COHORT_AUTHZ_DIRECTORY_TOKEN=secret."
)]
struct Settings {
    /// Folder for both services' data.
    #[arg(long, env = "COHORT_STACK_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// The directory's address.
    #[arg(
        long,
        env = "COHORT_DIRECTORY_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    directory_listen: SocketAddr,
    /// The authorization service's address.
    #[arg(long, env = "COHORT_AUTHZ_LISTEN", default_value = "127.0.0.1:50052")]
    authz_listen: SocketAddr,
    /// Log format.
    #[arg(long, env = "COHORT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let _log = serving::init_tracing(settings.log_format);

    // One development credential for both services (and for the authorization
    // service's calls to the directory), unless COHORT_AUTH_TOKENS names others.
    std::fs::create_dir_all(&settings.data_dir)?;
    let data_dir = std::fs::canonicalize(&settings.data_dir)?;
    let token_file = data_dir.join("dev-token");
    let configured = std::env::var("COHORT_AUTH_TOKENS")
        .ok()
        .filter(|t| !t.trim().is_empty());
    let dev = match configured {
        Some(_) => None,
        None => Some(Credential::dev_kept_in(&token_file)?),
    };
    let tokens = configured
        .clone()
        .unwrap_or_else(|| format!("dev:{}", dev.as_ref().expect("kept").secret()));
    let directory_token = std::env::var("COHORT_AUTHZ_DIRECTORY_TOKEN")
        .ok()
        .or_else(|| dev.as_ref().map(|d| d.secret().to_owned()))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "COHORT_AUTH_TOKENS is set: set COHORT_AUTHZ_DIRECTORY_TOKEN to one of its secrets too"
            )
        })?;

    let directory_settings = cohort_directory::config::Settings::try_parse_from([
        "cohort-directory",
        "--auth-tokens",
        &tokens,
        "--listen",
        &settings.directory_listen.to_string(),
        "--data-dir",
        &settings.data_dir.join("directory").display().to_string(),
    ])?;
    let directory = cohort_directory::startup::Application::build(&directory_settings).await?;
    let directory_addr = directory.local_addr();

    let authz_settings = cohort_authz::config::Settings::try_parse_from([
        "cohort-authz",
        "--auth-tokens",
        &tokens,
        "--directory-token",
        &directory_token,
        "--listen",
        &settings.authz_listen.to_string(),
        "--directory",
        &format!("http://{directory_addr}"),
        "--data-dir",
        &settings.data_dir.join("authz").display().to_string(),
    ])?;
    let authz = cohort_authz::startup::Application::build(&authz_settings).await?;
    let authz_addr = authz.local_addr();

    println!("directory service:     {directory_addr}  (cohort.directory.v1.DirectoryService, ChangeFeedService)");
    println!("authorization service: {authz_addr}  (cohort.authz.v1.AuthzService)");
    println!("data:                  {}", data_dir.display());
    match &dev {
        Some(dev) => {
            println!(
                "credential:            {} (kept in {})",
                dev.secret(),
                token_file.display()
            );
            println!(
                "try:                   grpcurl -plaintext -H 'authorization: Bearer {}' {directory_addr} list",
                dev.secret()
            );
        }
        None => println!("credential:            those of COHORT_AUTH_TOKENS"),
    }

    // One Ctrl-C stops both: the authorization service first, so that it does not
    // see its feed close and spend its last moments reconnecting.
    let (stop_authz, authz_stopping) = oneshot::channel::<()>();
    let (stop_directory, directory_stopping) = oneshot::channel::<()>();
    let authz_task = tokio::spawn(authz.run_until(async {
        let _ = authz_stopping.await;
    }));
    let directory_task = tokio::spawn(directory.run_until(async {
        let _ = directory_stopping.await;
    }));
    serving::shutdown_signal().await;
    let _ = stop_authz.send(());
    authz_task.await??;
    let _ = stop_directory.send(());
    directory_task.await??;
    Ok(())
}
