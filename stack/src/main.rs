//! `cohort-stack`: the directory and the authorization service in one process,
//! for trying Cohort locally with no set-up. Both keep their data under one folder
//! (SQLite, kept across restarts); the authorization service follows the
//! directory; Ctrl-C stops both cleanly (in-flight calls finish, streams close).
//! Both accept a development credential generated at each start, printed and
//! written to `<data>/dev-token` (or the credentials of `COHORT_AUTH_TOKENS`).
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
    about = "Cohort's directory and authorization services, together, on embedded SQLite"
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
    let dev = Credential::generate("dev");
    let token_file = settings.data_dir.join("dev-token");
    std::fs::write(&token_file, dev.secret())?;
    let tokens =
        std::env::var("COHORT_AUTH_TOKENS").unwrap_or_else(|_| format!("dev:{}", dev.secret()));
    let directory_token =
        std::env::var("COHORT_AUTHZ_DIRECTORY_TOKEN").unwrap_or_else(|_| dev.secret().to_owned());

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
    println!("data:                  {}", settings.data_dir.display());
    println!(
        "credential:            authorization: Bearer $(cat {})",
        token_file.display()
    );
    println!(
        "try:                   grpcurl -plaintext -H \"authorization: Bearer $(cat {})\" {directory_addr} list",
        token_file.display()
    );

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
