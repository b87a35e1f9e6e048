//! What every Cohort server must offer an operator or a client with no .proto
//! files: the standard health service and server reflection.

use cohort_tests::{DirectoryProcess, TEST_SECRET};
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
        ServerReflectionClient::with_interceptor(channel, cohort_tests::bearer(TEST_SECRET));
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
            "cohort.catalog.v1.CatalogService",
            "cohort.directory.v1.ChangeFeedService",
            "cohort.directory.v1.DirectoryService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    );

    directory.finish().await.unwrap();
}

/// Both services serve the role catalog, with the same answers, to any caller
/// with a credential; health reports it.
#[tokio::test]
async fn both_services_serve_the_same_role_catalog() {
    use catalog::catalog_service_client::CatalogServiceClient;
    use cohort_shared::proto::catalog::v1 as catalog;

    let cluster = cohort_tests::Cluster::start().await.unwrap();
    let mut answers = Vec::new();
    for addr in [cluster.directory.addr, cluster.authz.addr] {
        let channel = cohort_tests::channel(addr).await.unwrap();
        let refused = CatalogServiceClient::new(channel.clone())
            .list_tools(catalog::ListToolsRequest {})
            .await;
        assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: "cohort.catalog.v1.CatalogService".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{addr}");

        let mut client = CatalogServiceClient::with_interceptor(
            channel,
            cohort_tests::bearer(&cohort_tests::test_secret()),
        );
        let tools = client
            .list_tools(catalog::ListToolsRequest {})
            .await
            .unwrap()
            .into_inner();
        let permissions = client
            .list_permissions(catalog::ListPermissionsRequest {})
            .await
            .unwrap()
            .into_inner();
        answers.push((tools, permissions));
    }
    assert_eq!(answers[0], answers[1]);
    let (tools, permissions) = &answers[0];
    let names: Vec<&str> = tools.tools.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(names, ["Global Admin", "LMS", "Author", "Share"]);
    let lms = &tools.tools[1];
    assert_eq!(lms.implied_role, catalog::Role::LmsUser as i32);
    assert_eq!(lms.roles.len(), 6);
    let names: Vec<&str> = permissions
        .permissions
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, cohort_shared::catalog::permissions());
    let reports = permissions
        .permissions
        .iter()
        .find(|p| p.name == "lms.reports.view")
        .unwrap();
    assert!(reports.organization_feature);
    assert_eq!(reports.tool, catalog::Tool::Lms as i32);
    let playlists = permissions
        .permissions
        .iter()
        .find(|p| p.name == "share.playlists.create")
        .unwrap();
    assert_eq!(
        playlists.resource_kinds,
        [catalog::ResourceKind::User as i32]
    );

    cluster.finish().await.unwrap();
}

fn list_services() -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }
}
