//! Prometheus metrics: a registry per server, the gRPC call metrics every server
//! records (in [`crate::call_log`], which already sees every call's method,
//! status and duration), and the admin HTTP listener that serves them
//! (`--metrics-listen`, off by default).
//!
//! The call metrics take the names of go-grpc-prometheus, which most gRPC
//! dashboards and alerts already expect:
//!
//! - `grpc_server_started_total{grpc_service, grpc_method}`
//! - `grpc_server_handled_total{grpc_service, grpc_method, grpc_code}`
//! - `grpc_server_handling_seconds{grpc_service, grpc_method}` (histogram)
//! - `grpc_server_in_flight_calls` (calls started and not yet answered)
//! - `grpc_server_shed_calls_total` (calls refused at the limit of calls in flight)
//!
//! `prometheus-client` (the Prometheus project's own Rust client) rather than a
//! global recorder: each server owns its registry, so the many servers of one
//! test process keep their figures apart. A service adds its own metrics to the
//! registry ([`MetricsRegistry::registry_mut`]) before it serves.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// Latency buckets, in seconds: from 100 µs (an in-memory check) to 10 s (a
/// read waiting out its consistency bound).
const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_service: String,
    grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

/// The gRPC call metrics; cloning shares them.
#[derive(Clone)]
pub struct CallMetrics {
    started: Family<MethodLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling: Family<MethodLabels, Histogram>,
    in_flight: Gauge,
    /// Calls refused by load shedding ([`crate::shed`]).
    shed: Counter,
    /// Each method's metrics, found by its path without building label sets:
    /// labels built per call (two strings, three map lookups) cost the cheapest
    /// calls a tenth of their CPU.
    methods: Arc<RwLock<HashMap<String, Arc<MethodMetrics>>>>,
}

/// One method's metrics (clones of the families' members, which share them).
struct MethodMetrics {
    labels: MethodLabels,
    started: Counter,
    handling: Histogram,
    /// By status code, made at its first use.
    handled: [OnceLock<Counter>; 17],
}

impl std::fmt::Debug for CallMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMetrics").finish_non_exhaustive()
    }
}

/// "/pkg.Service/Method" as its service and method (all of it as the method if
/// it has no such shape).
fn split_path(path: &str) -> (&str, &str) {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .unwrap_or(("", path))
}

impl CallMetrics {
    fn new(registry: &mut Registry) -> Self {
        let metrics = CallMetrics {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(|| {
                Histogram::new(LATENCY_BUCKETS.iter().copied())
            }),
            in_flight: Gauge::default(),
            shed: Counter::default(),
            methods: Arc::default(),
        };
        registry.register(
            "grpc_server_started",
            "gRPC calls started",
            metrics.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "gRPC calls answered, by status code",
            metrics.handled.clone(),
        );
        registry.register_with_unit(
            "grpc_server_handling",
            "Time from a call's start to its answer",
            prometheus_client::registry::Unit::Seconds,
            metrics.handling.clone(),
        );
        registry.register(
            "grpc_server_in_flight_calls",
            "gRPC calls started and not yet answered",
            metrics.in_flight.clone(),
        );
        registry.register(
            "grpc_server_shed_calls",
            "gRPC calls refused with RESOURCE_EXHAUSTED because the server was at its limit of calls in flight",
            metrics.shed.clone(),
        );
        metrics
    }

    /// Counts a call refused by load shedding.
    pub fn record_shed(&self) {
        self.shed.inc();
    }

    fn method(&self, path: &str) -> Arc<MethodMetrics> {
        if let Some(found) = self
            .methods
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
        {
            return found.clone();
        }
        let (service, method) = split_path(path);
        let labels = MethodLabels {
            grpc_service: service.to_owned(),
            grpc_method: method.to_owned(),
        };
        let made = Arc::new(MethodMetrics {
            started: self.started.get_or_create(&labels).clone(),
            handling: self.handling.get_or_create(&labels).clone(),
            handled: Default::default(),
            labels,
        });
        self.methods
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(path.to_owned())
            .or_insert(made)
            .clone()
    }

    /// Records a call's start; the returned guard counts it in flight until it
    /// is [`CallInFlight::finish`]ed or dropped.
    pub fn start(&self, path: &str) -> CallInFlight {
        let method = self.method(path);
        method.started.inc();
        self.in_flight.inc();
        CallInFlight {
            metrics: self.clone(),
            method,
        }
    }
}

/// A call being served (see [`CallMetrics::start`]).
pub struct CallInFlight {
    metrics: CallMetrics,
    method: Arc<MethodMetrics>,
}

impl CallInFlight {
    /// Records the call's answer and how long it took.
    pub fn finish(self, code: tonic::Code, seconds: f64) {
        let method = &self.method;
        method.handling.observe(seconds);
        method.handled[code as usize]
            .get_or_init(|| {
                self.metrics
                    .handled
                    .get_or_create(&HandledLabels {
                        grpc_service: method.labels.grpc_service.clone(),
                        grpc_method: method.labels.grpc_method.clone(),
                        grpc_code: code_name(code),
                    })
                    .clone()
            })
            .inc();
    }
}

impl Drop for CallInFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

/// The status code as gRPC spells it (`NOT_FOUND`), as go-grpc-prometheus labels it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A server's metrics: its registry and the call metrics in it.
pub struct MetricsRegistry {
    registry: Registry,
    calls: CallMetrics,
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        let mut registry = Registry::default();
        let calls = CallMetrics::new(&mut registry);
        MetricsRegistry { registry, calls }
    }
}

impl MetricsRegistry {
    /// The call metrics, for [`crate::serving::server`].
    pub fn calls(&self) -> CallMetrics {
        self.calls.clone()
    }

    /// For a service to add its own metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The registry in the text exposition format (OpenMetrics 1.0).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// Serves `GET /metrics` from `registry` on `listener`, until the task is
/// dropped or aborted. HTTP/1.1, no TLS: bind it to a local or private address.
pub async fn serve(listener: TcpListener, registry: Arc<MetricsRegistry>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, typically: wait rather than spin.
                tracing::warn!(error = %err, "accepting a metrics connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(answer(&registry, &request)) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %err, "metrics connection ended");
            }
        });
    }
}

fn answer(registry: &MetricsRegistry, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        Response::builder()
            .status(status)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("a static response is valid")
    };
    match (request.method(), request.uri().path()) {
        (&hyper::Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            registry.encode(),
        ),
        (_, "/metrics") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET only\n".to_owned(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "metrics are at /metrics\n".to_owned(),
        ),
    }
}

/// A server's metrics listener at work (nothing, when metrics are off).
pub struct MetricsServer(Option<tokio::task::JoinHandle<()>>);

impl MetricsServer {
    /// Closes the listener (when this returns, it is closed).
    pub async fn stop(self) {
        if let Some(task) = self.0 {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Starts serving metrics on `listener`, if there is one: the call metrics
/// for [`crate::serving::server`] (None when metrics are off), after
/// `register` has added the service's own metrics.
pub fn spawn(
    listener: Option<TcpListener>,
    register: impl FnOnce(&mut Registry),
) -> (Option<CallMetrics>, MetricsServer) {
    let Some(listener) = listener else {
        return (None, MetricsServer(None));
    };
    let mut metrics = MetricsRegistry::default();
    register(metrics.registry_mut());
    let calls = metrics.calls();
    let task = tokio::spawn(serve(listener, Arc::new(metrics)));
    (Some(calls), MetricsServer(Some(task)))
}

/// Binds the metrics listener when an address is configured.
pub async fn bind(address: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    use anyhow::Context;
    match address {
        None => Ok(None),
        Some(address) => {
            Ok(Some(TcpListener::bind(address).await.with_context(
                || format!("binding --metrics-listen {address}"),
            )?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_path_splits_into_service_and_method() {
        assert_eq!(
            split_path("/cohort.authz.v1.AuthzService/Check"),
            ("cohort.authz.v1.AuthzService", "Check")
        );
        assert_eq!(split_path("weird"), ("", "weird"));
    }

    #[test]
    fn a_finished_call_is_counted_by_code_and_timed_and_leaves_the_in_flight_gauge() {
        let metrics = MetricsRegistry::default();
        let calls = metrics.calls();
        let first = calls.start("/pkg.Svc/Get");
        let second = calls.start("/pkg.Svc/Get");
        assert_eq!(calls.in_flight.get(), 2);
        first.finish(tonic::Code::NotFound, 0.002);
        drop(second); // cancelled: in flight no more, never handled
        assert_eq!(calls.in_flight.get(), 0);
        let text = metrics.encode();
        assert!(text
            .contains(r#"grpc_server_started_total{grpc_service="pkg.Svc",grpc_method="Get"} 2"#));
        assert!(text.contains(
            r#"grpc_server_handled_total{grpc_service="pkg.Svc",grpc_method="Get",grpc_code="NOT_FOUND"} 1"#
        ));
        assert!(text.contains(
            r#"grpc_server_handling_seconds_bucket{le="0.0025",grpc_service="pkg.Svc",grpc_method="Get"} 1"#
        ), "{text}");
    }
}
