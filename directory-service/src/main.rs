//! `cohort-directory`: reads its settings, sets up logging, and serves until
//! stopped. Everything else lives in the library.

use clap::Parser;
use cohort_directory::config::Settings;
use cohort_directory::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let _log = settings
        .process
        .probe_or_init_logs(
            settings.listen,
            "cohort.directory.v1.DirectoryService",
            "cohort-directory",
        )
        .await?;
    let app = Application::build(&settings).await?;
    // One line on standard output that scripts can read the bound port from.
    println!("listening on {}", app.local_addr());
    app.run_until_stopped().await
}
