//! `cohort-authz`: reads its settings, sets up logging, and serves until stopped.
//! Everything else lives in the library.

use clap::Parser;
use cohort_authz::config::Settings;
use cohort_authz::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    if settings.health_probe {
        let healthy =
            cohort_shared::serving::probe_health(settings.listen, "cohort.authz.v1.AuthzService")
                .await;
        std::process::exit(if healthy { 0 } else { 1 });
    }
    let _log = cohort_shared::serving::init_tracing(settings.log_format);
    let app = Application::build(&settings).await?;
    app.run_until_stopped().await
}
