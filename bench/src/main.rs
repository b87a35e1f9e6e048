//! `cohort-bench`: Cohort's load tool. It seeds a tenant of a given shape through
//! the directory's API and drives the real servers over gRPC with many
//! concurrent streams, always measuring the same server's health check in the
//! same run, so that figures from a noisy machine are read as ratios.
//!
//! Layout: `client` (connections with the bearer credential), `seed` (a tenant
//! through the API's bulk calls) and `manifest` (the ids it leaves for load runs),
//! `calls` (every call the tool drives), `driver` (connections × streams, closed
//! loop or fixed rate, latencies), `report` (rows for BENCHMARKS.md) and `suite`
//! (every row of the scale work's table in one run).

mod calls;
mod client;
mod driver;
mod manifest;
mod report;
mod seed;
mod suite;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use calls::Call;
use client::Bearer;
use driver::Load;
use manifest::Manifest;

#[derive(Debug, Parser)]
#[command(name = "cohort-bench", about = "Cohort's load tool", version)]
struct Cli {
    /// The secret to present (`authorization: Bearer <secret>`).
    #[arg(
        long,
        env = "COHORT_BENCH_TOKEN",
        global = true,
        hide_env_values = true
    )]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates a tenant of the given shape through the directory's API and writes
    /// its manifest.
    Seed {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        directory: String,
        #[command(flatten)]
        shape: seed::Shape,
        /// Calls in flight at once. 32 is where loading stops gaining on two
        /// cores: the calls of a tenant that wait while one batch commits go in
        /// the next (100k users: 38.7 s at 8, 25.7 s at 32, 25.5 s at 64).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Where to write the manifest.
        #[arg(long, default_value = "tenant.json")]
        out: PathBuf,
    },
    /// Drives one call against a server, after its health check as the baseline.
    Run {
        /// The server: the directory for writes, the authorization service else.
        #[arg(long)]
        target: String,
        #[arg(long, value_enum)]
        call: Call,
        #[arg(long, default_value = "tenant.json")]
        manifest: PathBuf,
        /// Writes go to this many fresh tenants (0: the manifest's tenant).
        #[arg(long, default_value_t = 0)]
        tenants: usize,
        /// Skip the health-check baseline.
        #[arg(long)]
        no_baseline: bool,
        #[command(flatten)]
        load: Load,
    },
    /// Every row of the scale table: the authorization service's answers and the
    /// directory's writes, each against its server's health check.
    Suite {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        directory: String,
        #[arg(long, default_value = "http://127.0.0.1:50052")]
        authz: String,
        #[arg(long, default_value = "tenant.json")]
        manifest: PathBuf,
        #[command(flatten)]
        load: Load,
        /// Only these calls (all without it).
        #[arg(long, value_enum, value_delimiter = ',')]
        only: Vec<Call>,
    },
    /// Waits until a server's health check answers SERVING; prints how long it took.
    WaitServing {
        #[arg(long)]
        target: String,
        /// The service to ask about ("" for the server as a whole); the
        /// authorization service serves `cohort.authz.v1.AuthzService` once it has
        /// caught up with the directory.
        #[arg(long, default_value = "")]
        service: String,
        /// Give up after this long.
        #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Writes one call's request as a gRPC-framed body for h2load (`-d`), and prints
    /// the h2load command that sends it, for cross-checks with another client.
    Payload {
        #[arg(long, value_enum)]
        call: Call,
        #[arg(long, default_value = "tenant.json")]
        manifest: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The server h2load should call.
        #[arg(long, default_value = "http://127.0.0.1:50052")]
        target: String,
    },
    /// Opens feed streams on the manifest's tenant from `--after` and reads
    /// nothing for `--hold`, each on its own connection: what stalled
    /// subscribers behind a backlog cost the directory (read its memory while
    /// they are held).
    Stall {
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        directory: String,
        #[arg(long, default_value = "tenant.json")]
        manifest: PathBuf,
        #[arg(long, default_value_t = 8)]
        streams: usize,
        /// The cursor the streams resume from (1: just after the tenant's creation).
        #[arg(long, default_value_t = 1)]
        after: i64,
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        hold: std::time::Duration,
    },
    /// Waits until the authorization service reflects a tenant's revision (the
    /// manifest's, by default); prints how long it took.
    WaitRevision {
        #[arg(long, default_value = "http://127.0.0.1:50052")]
        authz: String,
        #[arg(long, default_value = "tenant.json")]
        manifest: PathBuf,
        /// The revision to wait for (the manifest's without it).
        #[arg(long)]
        revision: Option<i64>,
        #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bearer = Bearer::new(cli.token.as_deref())?;
    match cli.command {
        Command::Seed {
            directory,
            shape,
            concurrency,
            out,
        } => {
            let clients = client::connect(&directory, &bearer).await?;
            let manifest = seed::seed(&clients, &shape, concurrency).await?;
            manifest.save(&out)?;
            println!("{}", manifest.tenant_id);
        }
        Command::Run {
            target,
            call,
            manifest,
            tenants,
            no_baseline,
            load,
        } => {
            let manifest = Arc::new(Manifest::load(&manifest)?);
            let context = Arc::new(suite::context(&target, &bearer, manifest, tenants).await?);
            println!("{}", report::HEADER);
            let describe = suite::describe(&load);
            let baseline = if no_baseline {
                None
            } else {
                let health =
                    driver::drive(&target, &bearer, Call::Health, context.clone(), &load).await?;
                println!(
                    "{}",
                    report::row("health (baseline)", &describe, &health, None)
                );
                Some(health)
            };
            let outcome = driver::drive(&target, &bearer, call, context, &load).await?;
            let name = format!("{call:?}");
            println!(
                "{}",
                report::row(&name, &describe, &outcome, baseline.as_ref())
            );
        }
        Command::Suite {
            directory,
            authz,
            manifest,
            load,
            only,
        } => {
            let manifest = Arc::new(Manifest::load(&manifest)?);
            suite::run(&directory, &authz, &bearer, manifest, &load, &only).await?;
        }
        Command::Stall {
            directory,
            manifest,
            streams,
            after,
            hold,
        } => {
            let manifest = Manifest::load(&manifest)?;
            let mut held = Vec::with_capacity(streams);
            for _ in 0..streams {
                let mut clients = client::connect(&directory, &bearer).await?;
                let request = cohort_shared::proto::directory::v1::WatchRequest {
                    cursors: vec![cohort_shared::proto::directory::v1::TenantCursor {
                        tenant_id: manifest.tenant_id.clone(),
                        revision: after,
                    }],
                    all_tenants: false,
                };
                held.push(clients.feed.watch(request).await?.into_inner());
            }
            println!("holding {streams} streams for {hold:?}");
            tokio::time::sleep(hold).await;
        }
        Command::WaitServing {
            target,
            service,
            timeout,
        } => {
            let took = suite::wait_serving(&target, &service, timeout).await?;
            println!("{:.2}", took.as_secs_f64());
        }
        Command::Payload {
            call,
            manifest,
            out,
            target,
        } => {
            let manifest = Manifest::load(&manifest)?;
            let (path, body) = calls::framed(call, &manifest)?;
            std::fs::write(&out, body)?;
            let auth = match &cli.token {
                Some(_) => " -H \"authorization: Bearer $COHORT_BENCH_TOKEN\"",
                None => "",
            };
            println!(
                "h2load -c 2 -m 8 -D 10 --warm-up-time=2 -H 'content-type: application/grpc' -H 'te: trailers'{auth} -d {} {target}{path}",
                out.display()
            );
        }
        Command::WaitRevision {
            authz,
            manifest,
            revision,
            timeout,
        } => {
            let manifest = Manifest::load(&manifest)?;
            let wanted = revision.unwrap_or(manifest.revision);
            let took =
                suite::wait_revision(&authz, &bearer, &manifest.tenant_id, wanted, timeout).await?;
            println!("{:.2}", took.as_secs_f64());
        }
    }
    Ok(())
}
