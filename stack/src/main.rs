//! `cohort-stack`: both services in one process for local use (see the library).

use clap::Parser;
use cohort_shared::serving;
use cohort_stack::{Settings, Stack};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let _log = serving::init_tracing(settings.log_format, "cohort-stack")?;
    let stack = Stack::build(&settings).await?;
    print!("{}", stack.banner());
    stack.run_until(serving::shutdown_signal()).await
}
