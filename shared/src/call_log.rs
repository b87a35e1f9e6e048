//! One log line per gRPC call, with a request id carried across the services.
//!
//! [`CallLogLayer`] wraps a server: every call gets a request id (the caller's
//! `x-request-id`, or a new one), handlers record the call's tenant
//! ([`record_tenant`], into a slot the layer keeps for the call), and when the
//! call returns one line says method, request id, tenant, status and duration.
//! The request id goes back in the response headers, and a service calling
//! another forwards it ([`REQUEST_ID_HEADER`]).
//!
//! The line is one event, formatted once. A `grpc` span with the method and the
//! request id (so that lines logged during the call carry them) is made only when
//! DEBUG is on: a span per call, entered at every poll of the call, cost more
//! than the line itself.
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

#[derive(Debug, Clone, Copy, Default)]
pub struct CallLogLayer;

impl<S> Layer<S> for CallLogLayer {
    type Service = CallLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLog { inner }
    }
}

#[derive(Debug, Clone)]
pub struct CallLog<S> {
    inner: S,
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
    type Response = S::Response;
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
        let quiet = is_quiet(&method);
        let span = if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug_span!("grpc", %method, %request_id)
        } else {
            tracing::Span::none()
        };
        let tenant: Arc<OnceLock<String>> = Arc::default();
        // Take the service that was polled ready, leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let started = Instant::now();
        Box::pin(async move {
            let result = CALL_TENANT
                .scope(tenant.clone(), inner.call(request).instrument(span))
                .await;
            let elapsed_ms =
                tracing::field::display(Millis(started.elapsed().as_secs_f64() * 1000.0));
            let tenant = tenant.get().map_or("", String::as_str);
            match result {
                Ok(mut response) => {
                    // Errors come "trailers-only", with the status in the headers;
                    // a successful call's status follows in the trailers.
                    let status = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map(tonic::Code::from_i32)
                        .unwrap_or(tonic::Code::Ok);
                    response.headers_mut().insert(REQUEST_ID_HEADER, header);
                    if matches!(
                        status,
                        tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss
                    ) {
                        tracing::warn!(%method, %request_id, %tenant, status = ?status, elapsed_ms, "call");
                    } else if quiet {
                        tracing::debug!(%method, %request_id, %tenant, status = ?status, elapsed_ms, "call");
                    } else {
                        tracing::info!(%method, %request_id, %tenant, status = ?status, elapsed_ms, "call");
                    }
                    Ok(response)
                }
                Err(err) => {
                    tracing::warn!(%method, %request_id, %tenant, error = %err, elapsed_ms, "call failed in transport");
                    Err(err)
                }
            }
        })
    }
}
