//! Logging set-up: the log format, and the subscriber with its batched writer
//! and (when asked for) the trace export.

use super::human_format::HumanFormat;
use crate::log_writer::{BatchedLogGuard, BatchedWriter};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Keeps the log writer (and the trace exporter, when traces are on) running;
/// dropping it sends what is still queued. Hold it for as long as the process
/// logs (for `main`, until it returns).
#[must_use = "logs and spans queued when the guard drops are sent then; drop it last"]
pub struct LogGuard {
    // Fields drop in order: spans first (their export may log), then the logs.
    _traces: Option<crate::telemetry::TraceExporter>,
    _logs: BatchedLogGuard,
}

/// Human-readable or JSON lines on stderr, filtered by `RUST_LOG` (default
/// `info`), and OpenTelemetry traces when the standard `OTEL_EXPORTER_OTLP_*`
/// variables ask for them ([`crate::telemetry`]; `service_name` is the default
/// `service.name`). A second call (tests) keeps the first subscriber.
///
/// A call formats its line on its own thread; a background thread writes the
/// lines, in batches, so that a busy server does not wait on stderr (a write per
/// line under a lock cost a third of the throughput of small calls), nor wake a
/// thread per line ([`crate::log_writer`]). Should the writer fall behind by
/// 32 MiB, lines are dropped (and counted) rather than calls held up.
pub fn init_tracing(format: LogFormat, service_name: &str) -> anyhow::Result<LogGuard> {
    let export = crate::telemetry::TraceExport::from_env(service_name)?;
    init_logs_and_traces(format, export.as_ref())
}

/// [`init_tracing`] with the trace export given rather than read from the
/// environment.
pub fn init_logs_and_traces(
    format: LogFormat,
    export: Option<&crate::telemetry::TraceExport>,
) -> anyhow::Result<LogGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, logs) = BatchedWriter::new(std::io::stderr());
    let ansi = std::io::stderr().is_terminal();
    let Some(export) = export else {
        // One global filter: a disabled line costs a cached callsite check.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(ansi);
        let _ = match format {
            LogFormat::Human => builder.event_format(HumanFormat::default()).try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
        return Ok(LogGuard {
            _traces: None,
            _logs: logs,
        });
    };
    use tracing_subscriber::prelude::*;
    let (traces, trace_layer) = crate::telemetry::TraceExporter::start(export)?;
    // Each output its own filter, so that RUST_LOG does not turn spans off. The
    // call spans stay out of the log lines: the call line names the call already,
    // and formatting a dozen span fields per call would cost more than the line.
    let filter = filter.add_directive(
        format!("{}=off", crate::telemetry::TRACE_TARGET)
            .parse()
            .expect("a valid directive"),
    );
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let lines = match format {
        LogFormat::Human => lines.event_format(HumanFormat::default()).boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(trace_layer)
        .try_init();
    tracing::info!(endpoint = %export.endpoint, "exporting traces (OTLP over gRPC)");
    Ok(LogGuard {
        _traces: Some(traces),
        _logs: logs,
    })
}
