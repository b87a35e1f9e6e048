//! `cohort-directory`: reads its settings, sets up logging, and serves until
//! stopped. Everything else lives in the library.

use clap::Parser;
use cohort_directory::config::Settings;
use cohort_directory::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    if settings.health_probe {
        let service = "cohort.directory.v1.DirectoryService";
        let probed = cohort_shared::serving::probe_health(settings.listen, service).await;
        cohort_shared::serving::exit_with_probe(service, probed);
    }
    let _log = cohort_shared::serving::init_tracing(settings.log_format, "cohort-directory")?;
    let app = Application::build(&settings).await?;
    // One line on standard output that scripts can read the bound port from.
    println!("listening on {}", app.local_addr());
    app.run_until_stopped().await
}
