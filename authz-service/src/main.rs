//! `cohort-authz`: reads its settings, sets up logging, and serves until stopped.
//! Everything else lives in the library.

use clap::Parser;
use cohort_authz::config::Settings;
use cohort_authz::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let _log = settings
        .process
        .probe_or_init_logs(
            settings.listen,
            "cohort.authz.v1.AuthzService",
            "cohort-authz",
        )
        .await?;
    let app = Application::build(&settings).await?;
    // One line on standard output that scripts can read the bound port from.
    println!("listening on {}", app.local_addr());
    app.run_until_stopped().await
}
