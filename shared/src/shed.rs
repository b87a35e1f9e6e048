//! Load shedding: at most `limit` calls in flight per server; one more is refused
//! at once with RESOURCE_EXHAUSTED rather than queued without bound, and counted
//! (`grpc_server_shed_calls_total`). The gRPC health service is never shed, so
//! an overloaded server still answers its probes.
//!
//! Why not tower's `ConcurrencyLimit` under `LoadShed` (tonic turns `LoadShed`'s
//! `Overloaded` into RESOURCE_EXHAUSTED too): a server-wide layer cannot let the
//! health service past the limit, and its status says only "Too many requests",
//! not what to do; the semaphore and the exemption are the whole of this layer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tonic::codegen::http::{Request, Response};
use tower::{Layer, Service};

use crate::metrics::CallMetrics;

#[derive(Debug, Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
    metrics: Option<CallMetrics>,
}

impl ShedLayer {
    /// Sheds beyond `limit` calls in flight, counting them in `metrics` (when
    /// served).
    pub fn new(limit: usize, metrics: Option<CallMetrics>) -> Self {
        ShedLayer {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            metrics,
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            permits: self.permits.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
    metrics: Option<CallMetrics>,
}

impl<S, ReqBody> Service<Request<ReqBody>> for Shed<S>
where
    S: Service<Request<ReqBody>, Response = Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let exempt = request.uri().path().starts_with("/grpc.health.v1.Health/");
        let permit = if exempt {
            None
        } else {
            Some(self.permits.clone().try_acquire_owned())
        };
        if let Some(Err(_)) = permit {
            if let Some(metrics) = &self.metrics {
                metrics.record_shed();
            }
            let status = tonic::Status::resource_exhausted(
                "the server is at its limit of calls in flight; retry with backoff",
            );
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            // Held until the call has its response (a stream's messages then flow
            // under the feed's own bound).
            let _permit = permit;
            inner.call(request).await
        })
    }
}
