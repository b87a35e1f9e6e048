//! A request that is not valid protobuf is the caller's error: tonic reports it as
//! INTERNAL ("failed to decode Protobuf message: Type.field: ..."), which would
//! blame the server and invite retries. This layer turns exactly that answer into
//! INVALID_ARGUMENT, keeping tonic's message (it names the field). (No library
//! layer does this: it corrects one tonic answer.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

/// How tonic's decode failures begin (`tonic::Status::from_error` on a codec error).
const DECODE_FAILURE: &str = "failed to decode Protobuf message";

#[derive(Debug, Clone, Copy, Default)]
pub struct MalformedLayer;

impl<S> Layer<S> for MalformedLayer {
    type Service = Malformed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Malformed { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Malformed<S> {
    inner: S,
}

/// Whether a (trailers-only) response is tonic's decode failure.
fn is_decode_failure<B>(response: &Response<B>) -> bool {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
    header("grpc-status") == Some("13")
        && header("grpc-message").is_some_and(|m| percent_decode(m).starts_with(DECODE_FAILURE))
}

/// grpc-message is percent-encoded; enough decoding to read its start.
fn percent_decode(raw: &str) -> String {
    raw.replace("%20", " ")
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Malformed<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
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
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            if is_decode_failure(&response) {
                let code = HeaderValue::from_static("3"); // INVALID_ARGUMENT
                response.headers_mut().insert("grpc-status", code);
            }
            Ok(response)
        })
    }
}
