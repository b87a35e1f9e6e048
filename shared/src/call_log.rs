//! One log line per gRPC call, with a request id carried across the services.
//!
//! [`CallLogLayer`] wraps a server: every call gets a request id (the caller's
//! `x-request-id`, or a new one), handlers record the call's tenant
//! ([`record_tenant`], into a slot the layer keeps for the call), and when the
//! call ends one line says method, request id, tenant, status and duration.
//! The request id goes back in the response headers, and a service calling
//! another forwards it ([`REQUEST_ID_HEADER`]).
//!
//! A call ends when its trailers go out ([`CallBody`] watches the response
//! body): a unary call with its answer, a stream when it closes, with its final
//! status. An error answered "trailers-only" ends at once, and a call whose
//! caller goes away first ends as CANCELLED. The same moment feeds the call
//! metrics ([`crate::metrics`]), when they are served.
//!
//! The line is one event, formatted once. A `grpc` span with the method and the
//! request id (so that lines logged during the call carry them) is made only when
//! DEBUG is on, or when traces are exported ([`crate::telemetry`]: then it is the
//! call's server span, ended with the record): a span per call, entered at every
//! poll of the call, cost more than the line itself.
//!
//! Why not tower-http's `TraceLayer::new_for_grpc` with its request-id layers:
//! its callbacks see the call only through a span (the end-of-stream callback
//! gets the trailers and the duration, not the method, the request id or the
//! start), so every call would pay for a span, which is what this layer avoids;
//! and the tenant, recorded by the handler, and the metrics would still need a
//! layer of their own. Here one record serves the line, the metrics and the
//! span.
//!
//! Health checks and reflection are logged at DEBUG: orchestrators probe every
//! few seconds and grpcurl asks reflection before every call, and neither is
//! what an operator reads the call log for.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::metrics::{CallInFlight, CallMetrics};

/// The target of the call lines ([`crate::serving`]'s human format writes them
/// on a fast path).
pub(crate) const TARGET: &str = module_path!();

/// The header that carries a request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    /// The tenant of the call being served, once its handler records it.
    static CALL_TENANT: Arc<OnceLock<String>>;
}

/// Records the tenant of the call being served, for its log line (the first one
/// recorded stands).
pub fn record_tenant(tenant: impl std::fmt::Display) {
    let _ = CALL_TENANT.try_with(|slot| slot.get_or_init(|| tenant.to_string()).len());
}

/// The request id of the call being served, for forwarding to another service.
pub fn request_id<T>(request: &tonic::Request<T>) -> Option<String> {
    request
        .metadata()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Logs every call, and records it in the call metrics when they are served.
#[derive(Debug, Clone, Default)]
pub struct CallLogLayer {
    metrics: Option<CallMetrics>,
}

impl CallLogLayer {
    /// Records every call in `metrics` too (None: metrics are not served, and
    /// calls pay nothing for them).
    pub fn new(metrics: Option<CallMetrics>) -> Self {
        CallLogLayer { metrics }
    }
}

impl<S> Layer<S> for CallLogLayer {
    type Service = CallLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLog {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CallLog<S> {
    inner: S,
    metrics: Option<CallMetrics>,
}

/// Calls logged at DEBUG: health checks and reflection.
fn is_quiet(method: &str) -> bool {
    method.starts_with("/grpc.health.v1.Health/") || method.starts_with("/grpc.reflection.")
}

/// Milliseconds, printed to the microsecond.
struct Millis(f64);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3}", self.0)
    }
}

/// A usable request id: printable ASCII, at most 128 characters.
/// A new request id: a random UUID (version 4) from the thread's generator.
/// `Uuid::new_v4` asks the kernel for randomness on every call, one system call
/// per request on the hot path.
fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .simple()
        .to_string()
}

fn valid_request_id(value: &HeaderValue) -> Option<String> {
    let id = value.to_str().ok()?;
    (!id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| id.to_owned())
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CallLog<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display,
    ReqBody: Send + 'static,
{
    type Response = Response<CallBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let request_id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(valid_request_id)
            .unwrap_or_else(new_request_id);
        let header = HeaderValue::from_str(&request_id)
            .expect("a checked or generated id is a valid header");
        request
            .headers_mut()
            .insert(REQUEST_ID_HEADER, header.clone());
        // The exported span when traces are on; else the DEBUG span for the lines
        // logged during the call, when DEBUG is on.
        let trace = crate::telemetry::enabled()
            .then(|| crate::telemetry::server_span(&method, &request_id, request.headers()));
        let span = match &trace {
            Some(trace) => trace.clone(),
            None if tracing::enabled!(tracing::Level::DEBUG) => {
                tracing::debug_span!("grpc", %method, %request_id)
            }
            None => tracing::Span::none(),
        };
        let tenant: Arc<OnceLock<String>> = Arc::default();
        // Take the service that was polled ready, leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let record = CallRecord {
            in_flight: self.metrics.as_ref().map(|m| m.start(&method)),
            quiet: is_quiet(&method),
            method,
            request_id,
            tenant: tenant.clone(),
            started: Instant::now(),
            trace,
        };
        Box::pin(async move {
            // Dropped with this future if the caller goes first: logged as
            // CANCELLED.
            let mut record = FinishOnDrop(Some(record));
            let result = CALL_TENANT
                .scope(tenant, inner.call(request).instrument(span))
                .await;
            match result {
                Ok(mut response) => {
                    response.headers_mut().insert(REQUEST_ID_HEADER, header);
                    // Errors come "trailers-only", with the status in the headers,
                    // and end here; other calls end with their trailers, when the
                    // body (a whole stream, for a streaming call) has been sent.
                    if let Some(status) = grpc_status(response.headers()) {
                        record.end(status, None);
                    }
                    Ok(response.map(|inner| CallBody { inner, record }))
                }
                Err(err) => {
                    record.end(tonic::Code::Unknown, Some(&err));
                    Err(err)
                }
            }
        })
    }
}

fn grpc_status(headers: &tonic::codegen::http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}

/// What is known of a call until it ends: its one log line and its metrics are
/// written then.
struct CallRecord {
    method: String,
    request_id: String,
    tenant: Arc<OnceLock<String>>,
    started: Instant,
    quiet: bool,
    in_flight: Option<CallInFlight>,
    /// The call's exported span, when traces are on: it ends with the record.
    trace: Option<tracing::Span>,
}

impl CallRecord {
    fn finish(self, status: tonic::Code, transport_error: Option<&dyn std::fmt::Display>) {
        let elapsed = self.started.elapsed().as_secs_f64();
        if let Some(in_flight) = self.in_flight {
            in_flight.finish(status, elapsed);
        }
        let elapsed_ms = tracing::field::display(Millis(elapsed * 1000.0));
        let (method, request_id) = (&self.method, &self.request_id);
        let tenant = self.tenant.get().map_or("", String::as_str);
        if let Some(span) = &self.trace {
            crate::telemetry::end_server_span(span, status, self.tenant.get().map(String::as_str));
        }
        if let Some(error) = transport_error {
            tracing::warn!(%method, %request_id, %tenant, %error, elapsed_ms, "call failed in transport");
        } else if matches!(
            status,
            tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss
        ) {
            tracing::warn!(%method, %request_id, %tenant, status = ?status, elapsed_ms, "call");
        } else if self.quiet {
            tracing::debug!(%method, %request_id, %tenant, status = ?status, elapsed_ms, "call");
        } else {
            tracing::info!(%method, %request_id, %tenant, status = ?status, elapsed_ms, "call");
        }
    }
}

/// A call's record, finished as CANCELLED if it is dropped unfinished (the caller
/// went away before the answer, or in the middle of a stream).
struct FinishOnDrop(Option<CallRecord>);

impl FinishOnDrop {
    /// Finishes the record, the first time only.
    fn end(&mut self, status: tonic::Code, transport_error: Option<&dyn std::fmt::Display>) {
        if let Some(record) = self.0.take() {
            record.finish(status, transport_error);
        }
    }
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.end(tonic::Code::Cancelled, None);
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its call's record when its trailers go out.
    pub struct CallBody<B> {
        #[pin]
        inner: B,
        record: FinishOnDrop,
    }
}

impl<B: http_body::Body> http_body::Body for CallBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame
                .trailers_ref()
                .map(|trailers| grpc_status(trailers).unwrap_or(tonic::Code::Unknown)),
            Poll::Ready(Some(Err(_))) => Some(tonic::Code::Unknown),
            // Over without trailers: not a gRPC answer.
            Poll::Ready(None) => Some(tonic::Code::Unknown),
            Poll::Pending => None,
        };
        if let Some(status) = ended {
            this.record.end(status, None);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
