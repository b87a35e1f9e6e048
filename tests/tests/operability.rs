//! What every Cohort server must offer an operator or a client with no .proto
//! files: the standard health service and server reflection.

use cohort_tests::{Bearer, DirectoryProcess, TEST_SECRET};
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

#[tokio::test]
async fn the_directory_reports_health_and_lists_its_services() {
    if cohort_tests::skip_against_external("the_directory_reports_health_and_lists_its_services") {
        return;
    }
    let directory = DirectoryProcess::start().await.unwrap();

    let channel = tonic::transport::Endpoint::from_shared(directory.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "cohort.directory.v1.DirectoryService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            ServingStatus::Serving as i32,
            "health of `{service}`"
        );
    }

    // Reflection, like every call but health, needs a credential.
    let refused = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([list_services()]))
        .await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
    let mut reflection =
        ServerReflectionClient::with_interceptor(channel, Bearer::new(TEST_SECRET));
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([list_services()]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    // What it serves, and nothing it does not (the authorization service's
    // contract is in the same descriptor set, but not served here).
    assert_eq!(
        names,
        [
            "cohort.directory.v1.ChangeFeedService",
            "cohort.directory.v1.DirectoryService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    );

    directory.finish().await.unwrap();
}

fn list_services() -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }
}
