//! The load driver: `connections` HTTP/2 connections, `streams` callers on each,
//! calling in a closed loop (each caller sends its next call when the last one
//! returns) or at a fixed total rate (each caller on its own schedule; a call's
//! latency is counted from when it was due, so a server that falls behind is not
//! flattered by the callers waiting for it).

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng as _;
use tokio::time::Instant;

use crate::calls::{self, Call, Context};
use crate::client::{self, Bearer};

#[derive(Debug, Clone, clap::Args)]
pub struct Load {
    /// HTTP/2 connections to the server.
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    /// Concurrent callers on each connection.
    #[arg(long, default_value_t = 8)]
    pub streams: usize,
    /// How long calls are measured.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Calls before measuring starts (connections warm, caches filled).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// A fixed total rate in calls per second (closed loop without it).
    #[arg(long)]
    pub rate: Option<f64>,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub call: Call,
    pub calls: u64,
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    pub items: u64,
    pub elapsed: Duration,
    /// Every measured call's latency in microseconds, sorted.
    pub latencies: Vec<u32>,
    /// The machine's 1-minute load average at the end.
    pub load_average: f64,
    pub rate: Option<f64>,
}

impl Outcome {
    pub fn rps(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    pub fn items_per_second(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }

    /// A latency percentile (0 to 100).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        Duration::from_micros(u64::from(self.latencies[rank]))
    }

    pub fn max(&self) -> Duration {
        Duration::from_micros(u64::from(self.latencies.last().copied().unwrap_or(0)))
    }
}

/// The machine's 1-minute load average (Linux; 0 elsewhere).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}

#[derive(Default)]
struct Tally {
    calls: u64,
    errors: u64,
    items: u64,
    first_error: Option<String>,
    latencies: Vec<u32>,
}

/// Drives `call` against `target` as `load` says.
pub async fn drive(
    target: &str,
    bearer: &Bearer,
    call: Call,
    context: Arc<Context>,
    load: &Load,
) -> anyhow::Result<Outcome> {
    let callers = load.connections.max(1) * load.streams.max(1);
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let mut tasks = Vec::with_capacity(callers);
    for connection in 0..load.connections.max(1) {
        let clients = client::connect(target, bearer).await?;
        for stream in 0..load.streams.max(1) {
            let mut clients = clients.clone();
            let context = context.clone();
            let caller = connection * load.streams.max(1) + stream;
            // Each caller keeps its own schedule, offset so that together they
            // call evenly.
            let interval = load
                .rate
                .map(|rate| Duration::from_secs_f64(callers as f64 / rate.max(1e-3)));
            tasks.push(tokio::spawn(async move {
                // Seeded afresh each run: writes (new emails) must not repeat a
                // run before them.
                let mut rng = SmallRng::from_rng(&mut rand::rng());
                let mut tally = Tally::default();
                let mut due = match interval {
                    Some(interval) => start + interval.mul_f64(caller as f64 / callers as f64),
                    None => start,
                };
                tokio::time::sleep_until(start).await;
                loop {
                    if let Some(_interval) = interval {
                        tokio::time::sleep_until(due).await;
                    }
                    let sent = if interval.is_some() {
                        due
                    } else {
                        Instant::now()
                    };
                    if sent >= end {
                        break;
                    }
                    let result = calls::once(call, &mut clients, &context, &mut rng).await;
                    let done = Instant::now();
                    if sent >= measure_from {
                        tally.calls += 1;
                        tally.latencies.push(
                            done.duration_since(sent).as_micros().min(u32::MAX as u128) as u32,
                        );
                        match result {
                            Ok(items) => tally.items += items,
                            Err(status) => {
                                tally.errors += 1;
                                tally.first_error.get_or_insert_with(|| {
                                    format!("{:?}: {}", status.code(), status.message())
                                });
                            }
                        }
                    }
                    if let Some(interval) = interval {
                        due += interval;
                    }
                }
                tally
            }));
        }
    }
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await?;
        total.calls += tally.calls;
        total.errors += tally.errors;
        total.items += tally.items;
        if total.first_error.is_none() {
            total.first_error = tally.first_error;
        }
        total.latencies.extend(tally.latencies);
    }
    total.latencies.sort_unstable();
    Ok(Outcome {
        call,
        calls: total.calls,
        errors: total.errors,
        first_error: total.first_error,
        items: total.items,
        elapsed: load.duration,
        latencies: total.latencies,
        load_average: load_average(),
        rate: load.rate,
    })
}
