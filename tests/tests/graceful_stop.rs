//! Stopping the authorization service gracefully: calls in flight are answered,
//! including reads waiting for a revision the directory commits after the stop
//! began (the follower keeps following until those calls are done). Health says
//! NOT_SERVING from the moment a stop begins, and calls are served through the
//! drain that follows.

use std::time::Duration;

use cohort_directory::config::Database;
use cohort_directory::startup::{open_store, Application};
use cohort_shared::proto::authz::v1 as authz;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as dir;
use cohort_tests::{AuthzProcess, DirectoryProcess};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test]
async fn a_read_waiting_for_a_revision_is_answered_while_the_service_stops() {
    if cohort_tests::skip_against_external(
        "a_read_waiting_for_a_revision_is_answered_while_the_service_stops",
    ) {
        return;
    }
    let directory = DirectoryProcess::start().await.unwrap();
    let database = cohort_tests::fresh_authz_database().await.unwrap();
    let url = database.url().to_owned();
    let mut authz = AuthzProcess::start(&directory.endpoint(), &url)
        .await
        .unwrap();
    let mut d = directory.client().await.unwrap();
    let created = cohort_tests::create_tenant(&mut d, "Stopping")
        .await
        .unwrap();
    let tenant = created.tenant.unwrap().id;
    let tenant_id = tenant.clone();
    let admin = created.admin.unwrap().id;
    authz.wait_until_serving().await.unwrap();

    // A read at the next revision: it waits (the test settings' --max-wait is 2 s).
    let mut client = authz.client().await.unwrap();
    let read = tokio::spawn(async move {
        client
            .check(cohort_tests::tenant_check(
                &tenant,
                &admin,
                "global_admin.configuration.access",
                Some(authz::consistency::Requirement::AtLeastRevision(
                    created.revision + 1,
                )),
            ))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The stop begins; then the directory commits the revision the read waits for.
    let write = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        d.create_user(dir::CreateUserRequest {
            tenant_id: tenant_id.clone(),
            display_name: "Late".into(),
            email: "late@stopping.test".into(),
            roles: vec![catalog_pb::Role::GlobalAdminUser as i32],
            request_id: String::new(),
        })
        .await
        .unwrap();
    };
    let (stopped, ()) = tokio::join!(authz.stop(), write);
    stopped.unwrap();
    let answer = read
        .await
        .unwrap()
        .expect("answered at the new revision, not cut off");
    assert_eq!(answer.into_inner().revision, created.revision + 1);

    directory.finish().await.unwrap();
    database.drop_now().await.unwrap();
}

/// Reads a health `Watch` stream until it reports `wanted`.
async fn watch_until(
    statuses: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
    wanted: ServingStatus,
) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(reply) = statuses.message().await.unwrap() {
            if reply.status() == wanted {
                return;
            }
        }
        panic!("the health stream ended before {wanted:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {wanted:?} within 10 s"));
}

async fn watch(
    addr: std::net::SocketAddr,
    service: &str,
) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    HealthClient::new(cohort_tests::channel(addr).await.unwrap())
        .watch(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn health_turns_not_serving_when_a_stop_begins_and_calls_are_served_while_draining() {
    if cohort_tests::skip_against_external(
        "health_turns_not_serving_when_a_stop_begins_and_calls_are_served_while_draining",
    ) {
        return;
    }
    let drain = Duration::from_millis(1500);
    let data_dir =
        std::env::temp_dir().join(format!("cohort-it-{}", uuid::Uuid::new_v4().simple()));
    let store = open_store(&Database::SqliteDir(data_dir.clone()), 4)
        .await
        .unwrap();
    let app = Application::with_store(
        "127.0.0.1:0".parse().unwrap(),
        store,
        Default::default(),
        cohort_tests::test_auth(Vec::new()),
    )
    .await
    .unwrap()
    .with_shutdown_drain(drain);
    let directory_addr = app.local_addr();
    let (stop_directory, stopped) = tokio::sync::oneshot::channel::<()>();
    let directory = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let directory_url = format!("http://{directory_addr}");
    let database = cohort_tests::fresh_authz_database().await.unwrap();
    let url = database.url().to_owned();
    let mut authz =
        AuthzProcess::start_configured(&directory_url, &url, |s| s.serving.shutdown_drain = drain)
            .await
            .unwrap();
    authz.wait_until_serving().await.unwrap();

    // The authorization service: NOT_SERVING at once, answers while draining.
    let mut authz_health = watch(authz.addr, "cohort.authz.v1.AuthzService").await;
    watch_until(&mut authz_health, ServingStatus::Serving).await;
    let mut overall = watch(authz.addr, "").await;
    watch_until(&mut overall, ServingStatus::Serving).await;
    let mut client = authz.client().await.unwrap();
    let draining = async {
        watch_until(&mut authz_health, ServingStatus::NotServing).await;
        watch_until(&mut overall, ServingStatus::NotServing).await;
        let began = std::time::Instant::now();
        let served = client
            .check(cohort_tests::tenant_check(
                &uuid::Uuid::new_v4().to_string(),
                &uuid::Uuid::new_v4().to_string(),
                "global_admin.configuration.access",
                None,
            ))
            .await;
        // Answered by the API (an unknown tenant), not refused by a stopped server.
        assert_eq!(served.unwrap_err().code(), tonic::Code::NotFound);
        began
    };
    let began = std::time::Instant::now();
    // Bounded: a health watch left open must not hold the stop up for ever.
    let stopping = tokio::time::timeout(Duration::from_secs(20), authz.stop());
    let (stopped, _) = tokio::join!(stopping, draining);
    stopped
        .expect("stopped although health watches are open")
        .unwrap();
    assert!(
        began.elapsed() >= drain,
        "stopped after {:?}, before the drain of {drain:?} ended",
        began.elapsed()
    );

    // The directory: both of its services, the same way.
    let mut api_health = watch(directory_addr, "cohort.directory.v1.DirectoryService").await;
    let mut feed_health = watch(directory_addr, "cohort.directory.v1.ChangeFeedService").await;
    watch_until(&mut api_health, ServingStatus::Serving).await;
    watch_until(&mut feed_health, ServingStatus::Serving).await;
    let mut d = dir::directory_service_client::DirectoryServiceClient::with_interceptor(
        cohort_tests::channel(directory_addr).await.unwrap(),
        cohort_tests::bearer(&cohort_tests::test_secret()),
    );
    let began = std::time::Instant::now();
    stop_directory.send(()).unwrap();
    watch_until(&mut api_health, ServingStatus::NotServing).await;
    watch_until(&mut feed_health, ServingStatus::NotServing).await;
    cohort_tests::create_tenant(&mut d, "Draining")
        .await
        .expect("a write is still served while draining");
    tokio::time::timeout(Duration::from_secs(20), directory)
        .await
        .expect("stopped although health watches are open")
        .unwrap()
        .unwrap();
    assert!(began.elapsed() >= drain);

    database.drop_now().await.unwrap();
    let _ = std::fs::remove_dir_all(data_dir);
}
