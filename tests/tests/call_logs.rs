//! One log line per call, with the request id carried across the services: a
//! fully consistent read in the authorization service asks the directory for its
//! revision, and both services' lines name the caller's request id.

use cohort_shared::proto::authz::v1 as authz;
use cohort_shared::proto::directory::v1 as dir;
use cohort_tests::Cluster;

#[tokio::test]
async fn calls_are_logged_once_each_with_their_request_id_across_services() {
    if cohort_tests::skip_against_external(
        "calls_are_logged_once_each_with_their_request_id_across_services",
    ) {
        return;
    }
    let captured = cohort_tests::CapturedLog::default();
    tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();
    let cluster = Cluster::start().await.unwrap();

    let mut d = cluster.directory.client().await.unwrap();
    let created = d
        .create_tenant(dir::CreateTenantRequest {
            display_name: "Logs".into(),
            admin_display_name: "Ada".into(),
            admin_email: "ada@logs.test".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let generated = created
        .metadata()
        .get("x-request-id")
        .expect("a request id comes back")
        .to_str()
        .unwrap()
        .to_owned();
    let created = created.into_inner();
    let (tenant, admin) = (created.tenant.unwrap().id, created.admin.unwrap().id);

    let mut request = tonic::Request::new(cohort_tests::tenant_check(
        &tenant,
        &admin,
        "global_admin.groups.manage",
        Some(authz::consistency::Requirement::FullyConsistent(true)),
    ));
    request
        .metadata_mut()
        .insert("x-request-id", "trace-me-42".parse().unwrap());
    let reply = cluster
        .authz
        .client()
        .await
        .unwrap()
        .check(request)
        .await
        .unwrap();
    assert_eq!(reply.metadata().get("x-request-id").unwrap(), "trace-me-42");
    assert!(reply.into_inner().allowed);
    cluster.finish().await.unwrap();

    let logs = captured.text();
    let lines_of = |id: &str| {
        logs.lines()
            .filter(|l| l.contains(id) && l.contains(" call "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let traced = lines_of("trace-me-42");
    assert!(
        traced
            .iter()
            .any(|l| l.contains("/cohort.authz.v1.AuthzService/Check")),
        "{logs}"
    );
    assert!(
        traced
            .iter()
            .any(|l| l.contains("/cohort.directory.v1.DirectoryService/GetTenant")),
        "forwarded:\n{logs}"
    );
    assert!(
        traced
            .iter()
            .all(|l| l.contains(&format!("tenant={tenant}"))
                && l.contains("status=Ok")
                && l.contains("elapsed_ms")),
        "{traced:?}"
    );
    let created_lines = lines_of(&generated);
    assert_eq!(
        created_lines.len(),
        1,
        "one line per call: {created_lines:?}"
    );
    assert!(created_lines[0].contains("CreateTenant"));
}
