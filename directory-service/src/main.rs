//! `cohort-directory`: reads its settings, sets up logging, and serves until
//! stopped. Everything else lives in the library.

use clap::Parser;
use cohort_directory::config::Settings;
use cohort_directory::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    cohort_shared::serving::init_tracing(settings.log_format);
    let app = Application::build(&settings).await?;
    app.run_until_stopped().await
}
