//! Figures as people read them and as BENCHMARKS.md records them: every call next
//! to the health check of the same server, measured in the same run.

use std::time::Duration;

use crate::driver::Outcome;

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// The markdown table header for [`row`].
pub const HEADER: &str = "| call | load | RPS | vs health | p50 / p99 / max (ms) | items/s | errors | load avg |\n|---|---|---|---|---|---|---|---|";

/// One table row: the call's figures, and its throughput as a share of the
/// health check's (`baseline`) from the same run.
pub fn row(name: &str, load: &str, outcome: &Outcome, baseline: Option<&Outcome>) -> String {
    let ratio = match baseline {
        Some(b) if b.rps() > 0.0 && outcome.rate.is_none() => {
            format!("{:.2}x", outcome.rps() / b.rps())
        }
        Some(b) if b.rps() > 0.0 => format!("(rate {:.2}x)", outcome.rps() / b.rps()),
        _ => "1.00x".to_owned(),
    };
    let items = match outcome.call.items_name() {
        Some(name) => format!("{:.0} {name}", outcome.items_per_second()),
        None => "".to_owned(),
    };
    let errors = match &outcome.first_error {
        Some(first) => format!("{} ({first})", outcome.errors),
        None => "0".to_owned(),
    };
    format!(
        "| {name} | {load} | {:.0} | {ratio} | {} / {} / {} | {items} | {errors} | {:.2} |",
        outcome.rps(),
        ms(outcome.percentile(50.0)),
        ms(outcome.percentile(99.0)),
        ms(outcome.max()),
        outcome.load_average,
    )
}
