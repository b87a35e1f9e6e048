//! OpenTelemetry traces across both services: a fully consistent `Check` sent
//! with a W3C `traceparent` asks the directory for its revision, and the spans
//! that reach an OTLP receiver (a small one in this test, speaking the real
//! OTLP/gRPC protocol) make one trace: the caller's span, the authorization
//! service's server span, its client span for the directory, and the directory's
//! server span, each the parent of the next, with method, tenant and status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_shared::proto::authz::v1 as authz;
use cohort_shared::serving::{init_logs_and_traces, LogFormat};
use cohort_shared::telemetry::TraceExport;
use cohort_tests::Cluster;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};

/// An OTLP trace receiver that keeps every span it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.0.lock().unwrap().extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// The spans of `trace_id` (hex) received, once there are `at_least`, or
    /// after 10 s.
    async fn trace(&self, trace_id: &str, at_least: usize) -> Vec<Span> {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut trace = Vec::new();
        for _ in 0..200 {
            trace = self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|s| hex(&s.trace_id) == trace_id)
                .cloned()
                .collect();
            if trace.len() >= at_least {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(trace.len() >= at_least, "spans of {trace_id}: {trace:#?}");
        trace
    }
}

/// `message` as a call made inside the caller's span `span_id` of `trace_id`
/// (a W3C `traceparent`).
fn in_trace<T>(message: T, trace_id: &str, span_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{span_id}-01").parse().unwrap(),
    );
    request
}

fn attributes(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let value = match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => s.clone(),
                Value::IntValue(i) => i.to_string(),
                Value::BoolValue(b) => b.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), value))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_through_both_services_is_one_trace() {
    if cohort_tests::skip_against_external("one_request_through_both_services_is_one_trace") {
        return;
    }
    // Export batches every 50 ms rather than 5 s (read when the exporter starts;
    // this test binary has no other test).
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "50");
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let _guard = init_logs_and_traces(
        LogFormat::Human,
        Some(&TraceExport {
            endpoint,
            default_service_name: "cohort-test".into(),
        }),
    )
    .unwrap();
    assert!(cohort_shared::telemetry::enabled());

    let cluster = Cluster::start().await.unwrap();
    let mut d = cluster.directory.client().await.unwrap();
    let created = cohort_tests::create_tenant(&mut d, "Traces").await.unwrap();
    let (tenant, admin) = (created.tenant.unwrap().id, created.admin.unwrap().id);

    // The caller's trace and span.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut a = cluster.authz.client().await.unwrap();
    let request = cohort_tests::tenant_check(
        &tenant,
        &admin,
        "global_admin.groups.manage",
        Some(authz::consistency::Requirement::FullyConsistent(true)),
    );
    let reply = a
        .check(in_trace(request, trace_id, caller_span))
        .await
        .unwrap();
    assert!(reply.into_inner().allowed);

    // The three spans of the trace, once exported.
    let trace = receiver.trace(trace_id, 3).await;
    let named = |name: &str| {
        trace
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name} in {trace:#?}"))
    };
    let check = named("cohort.authz.v1.AuthzService/Check");
    let client = named("cohort.directory.v1.DirectoryService/GetTenant");
    let client = if client.kind == SpanKind::Client as i32 {
        client
    } else {
        trace
            .iter()
            .find(|s| s.name == client.name && s.kind == SpanKind::Client as i32)
            .expect("a client span for the directory call")
    };
    let served = trace
        .iter()
        .find(|s| s.name == client.name && s.kind == SpanKind::Server as i32)
        .expect("the directory's server span");

    assert_eq!(trace.len(), 3, "{trace:#?}");
    assert_eq!(check.kind, SpanKind::Server as i32);
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(hex(&check.parent_span_id), caller_span, "the caller's span");
    assert_eq!(client.parent_span_id, check.span_id);
    assert_eq!(served.parent_span_id, client.span_id);
    for span in [check, served] {
        let attributes = attributes(span);
        assert_eq!(attributes["rpc.system"], "grpc", "{attributes:?}");
        assert_eq!(attributes["rpc.grpc.status_code"], "0", "{attributes:?}");
        assert_eq!(attributes["cohort.tenant_id"], tenant, "{attributes:?}");
        assert!(!attributes["cohort.request_id"].is_empty());
        assert_ne!(
            span.status.as_ref().map(|s| s.code),
            Some(StatusCode::Error as i32)
        );
    }
    assert_eq!(attributes(check)["rpc.method"], "Check");
    assert_eq!(
        attributes(served)["rpc.service"],
        "cohort.directory.v1.DirectoryService"
    );
    // Both services' spans of one call carry the same request id, too.
    assert_eq!(
        attributes(check)["cohort.request_id"],
        attributes(served)["cohort.request_id"]
    );

    // A failed call is marked so: a Check in an unknown tenant is NOT_FOUND,
    // the caller's error, so its span is not an error; its status code says it.
    let unknown = uuid::Uuid::new_v4().to_string();
    let request = cohort_tests::tenant_check(
        &unknown,
        &uuid::Uuid::new_v4().to_string(),
        "global_admin.groups.manage",
        None,
    );
    let failed_trace = "0af7651916cd43dd8448eb211c80319c";
    let status = a
        .check(in_trace(request, failed_trace, "b7ad6b7169203331"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let failed = receiver.trace(failed_trace, 1).await.remove(0);
    assert_eq!(attributes(&failed)["rpc.grpc.status_code"], "5");
    assert_eq!(attributes(&failed)["cohort.tenant_id"], unknown);
    cluster.finish().await.unwrap();
}
