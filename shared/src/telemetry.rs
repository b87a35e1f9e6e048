//! OpenTelemetry traces: off by default, on when an OTLP endpoint is configured
//! by the standard variables (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, OTLP over gRPC, as a collector serves on 4317).
//!
//! When on, every gRPC call is a server span ([`server_span`], made by
//! [`crate::call_log`]) named `package.Service/Method`, with the OpenTelemetry
//! RPC attributes, the tenant, the request id and the final status, and a child
//! of the caller's span when the call carries a W3C `traceparent`. A service that
//! calls another makes a client span ([`client_span`]) and sends its context on
//! ([`inject`]): one request through both services is one trace.
//!
//! The spans are `tracing` spans, exported by `tracing-opentelemetry` through a
//! batch processor on the tokio runtime; the log lines are unchanged. When off,
//! nothing is built and a call pays one relaxed load of [`enabled`].
//!
//! The other standard variables apply: `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` (the service name defaults to the binary's),
//! `OTEL_TRACES_SAMPLER`/`_ARG` (default: follow the caller's decision, sample
//! all roots), `OTEL_BSP_*` for batching, `OTEL_EXPORTER_OTLP_HEADERS`/`_TIMEOUT`.
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` keep traces off.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tonic::codegen::http::HeaderMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of the spans that are exported (and only those: the
/// exporting layer ignores every other span and event).
pub const TRACE_TARGET: &str = "cohort::trace";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Where traces go, read from the standard OpenTelemetry variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// The OTLP/gRPC endpoint, `http://collector:4317`.
    pub endpoint: String,
    /// `service.name`, unless `OTEL_SERVICE_NAME` names it.
    pub default_service_name: String,
}

impl TraceExport {
    /// The export the environment asks for, if any; an error when it asks for a
    /// protocol other than gRPC (spans would go nowhere, unnoticed).
    pub fn from_env(default_service_name: &str) -> anyhow::Result<Option<TraceExport>> {
        Self::from_vars(default_service_name, |name| std::env::var(name).ok())
    }

    fn from_vars(
        default_service_name: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<TraceExport>> {
        let set = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let Some(endpoint) = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        else {
            return Ok(None);
        };
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = set(name).filter(|p| p != "grpc") {
                anyhow::bail!(
                    "{name}={protocol}: Cohort exports traces with OTLP over gRPC only \
                     (`grpc`, a collector's port 4317)"
                );
            }
        }
        Ok(Some(TraceExport {
            endpoint,
            default_service_name: default_service_name.to_owned(),
        }))
    }
}

/// Exports spans while it lives; dropping it sends what is still queued.
pub struct TraceExporter {
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for TraceExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceExporter").finish_non_exhaustive()
    }
}

impl Drop for TraceExporter {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            eprintln!("OpenTelemetry: spans still queued at exit were not all sent: {e}");
        }
    }
}

impl TraceExporter {
    /// Starts exporting to `export` (on the current tokio runtime) and returns
    /// the `tracing` layer that turns Cohort's spans into OpenTelemetry spans.
    pub fn start<S>(
        export: &TraceExport,
    ) -> anyhow::Result<(TraceExporter, impl tracing_subscriber::Layer<S>)>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        use tracing_subscriber::Layer as _;

        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(export.endpoint.clone())
            .build()
            .map_err(|e| anyhow::anyhow!("OTLP exporter to {}: {e}", export.endpoint))?;
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(export.default_service_name.clone());
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("cohort");
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        ENABLED.store(true, Ordering::Relaxed);
        // The span's own attributes only: not the source location, thread,
        // tracing target and poll timings that tracing-opentelemetry adds by
        // default (the same for every call, and work per span).
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(TRACE_TARGET, tracing::Level::INFO),
            );
        Ok((TraceExporter { provider }, layer))
    }
}

/// The server span of a call to `path` (`/package.Service/Method`), a child of
/// the caller's span when `headers` carry one.
pub fn server_span(path: &str, request_id: &str, headers: &HeaderMap) -> tracing::Span {
    let name = path.strip_prefix('/').unwrap_or(path);
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    let span = tracing::info_span!(
        target: TRACE_TARGET,
        "grpc.server",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        cohort.tenant_id = tracing::field::Empty,
        cohort.request_id = request_id,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
    span
}

/// Records how a call ended on its server span.
pub fn end_server_span(span: &tracing::Span, status: tonic::Code, tenant: Option<&str>) {
    span.record("rpc.grpc.status_code", status as i64);
    if let Some(tenant) = tenant {
        span.record("cohort.tenant_id", tenant);
    }
    // OpenTelemetry's RPC conventions: these are the server's own failures; the
    // others (a bad argument, a denial) are the caller's.
    if matches!(
        status,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    ) {
        span.record("otel.status_code", "ERROR");
    }
}

/// A client span for a call this service makes to `path`
/// (`package.Service/Method`); none when traces are off.
pub fn client_span(path: &str) -> tracing::Span {
    if !enabled() {
        return tracing::Span::none();
    }
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    tracing::info_span!(
        target: TRACE_TARGET,
        "grpc.client",
        otel.name = path,
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
    )
}

/// Adds the current span's context to an outgoing call as `traceparent` (and
/// `tracestate`), so that the callee's span joins the trace.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    if !enabled() {
        return;
    }
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata))
    });
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let key = tonic::metadata::MetadataKey::from_bytes(key.as_bytes());
        let value = tonic::metadata::MetadataValue::try_from(value);
        if let (Ok(key), Ok(value)) = (key, value) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(vars: &[(&str, &str)]) -> anyhow::Result<Option<TraceExport>> {
        TraceExport::from_vars("cohort-test", |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn traces_are_off_without_an_endpoint_or_when_disabled() {
        assert_eq!(export(&[]).unwrap(), None);
        assert_eq!(
            export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap(),
            None
        );
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")];
        assert_eq!(
            export(&on).unwrap().unwrap().endpoint,
            "http://collector:4317"
        );
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(export(&[on[0], off]).unwrap(), None, "{off:?}");
        }
    }

    #[test]
    fn the_traces_endpoint_wins_over_the_general_one() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4317"),
        ];
        assert_eq!(export(&vars).unwrap().unwrap().endpoint, "http://b:4317");
    }

    #[test]
    fn a_protocol_other_than_grpc_is_refused_with_the_variable_named() {
        let err = export(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"),
            "{err}"
        );
        let grpc = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        assert!(export(&grpc).unwrap().is_some());
    }
}
