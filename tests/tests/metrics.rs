//! Prometheus metrics, scraped from both real servers after real calls and read
//! with a Prometheus text-format parser (`prometheus-parse`): the call metrics by
//! service, method and status code, and the authorization service's projection.

use std::time::Duration;

use cohort_shared::proto::authz::v1 as authz;
use cohort_shared::proto::authz::v1::authz_service_client::AuthzServiceClient;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as dir;
use cohort_shared::proto::directory::v1::directory_service_client::DirectoryServiceClient;
use cohort_tests::{channel, test_auth, TEST_SECRET};
use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path`, the whole response (HTTP/1.1 by hand: the test needs nothing more).
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// `GET /metrics`, parsed.
async fn scrape(addr: std::net::SocketAddr) -> (Scrape, String) {
    let response = get(addr, "/metrics").await;
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    (Scrape::parse(lines).unwrap(), body.to_owned())
}

/// The value of the sample `name` whose labels include `labels`.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("no summaries here"),
        })
}

/// `grpc_server_handled_total` of one method and code.
fn handled(scrape: &Scrape, service: &str, method: &str, code: &str) -> Option<f64> {
    value(
        scrape,
        "grpc_server_handled_total",
        &[
            ("grpc_service", service),
            ("grpc_method", method),
            ("grpc_code", code),
        ],
    )
}

/// `Check` of the admin's tenant-wide `global_admin.groups.manage`, at or after
/// `revision`.
fn check_request(tenant: &str, user: &str, revision: i64) -> authz::CheckRequest {
    cohort_tests::tenant_check(
        tenant,
        user,
        "global_admin.groups.manage",
        Some(authz::consistency::Requirement::AtLeastRevision(revision)),
    )
}

/// A directory serving on `database`, with its metrics on a port of their own.
struct ServedDirectory {
    addr: std::net::SocketAddr,
    metrics: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl ServedDirectory {
    async fn start(database: cohort_directory::config::Database) -> Self {
        let store = cohort_directory::startup::open_store(&database, 4)
            .await
            .unwrap();
        let directory = cohort_directory::startup::Application::with_store(
            "127.0.0.1:0".parse().unwrap(),
            store,
            Default::default(),
            test_auth(Vec::new()),
        )
        .await
        .unwrap()
        .with_metrics_listener(Some(
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        ));
        let (addr, metrics) = (directory.local_addr(), directory.metrics_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(directory.run_until(async {
            let _ = stopped.await;
        }));
        ServedDirectory {
            addr,
            metrics,
            stop,
            task,
        }
    }

    /// Stops it and waits for it to end cleanly.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn both_services_serve_call_and_projection_metrics_that_a_prometheus_parser_reads() {
    if cohort_tests::skip_against_external(
        "both_services_serve_call_and_projection_metrics_that_a_prometheus_parser_reads",
    ) {
        return;
    }
    let data =
        std::env::temp_dir().join(format!("cohort-metrics-{}", uuid::Uuid::new_v4().simple()));
    let directory = ServedDirectory::start(cohort_directory::config::Database::SqliteDir(
        data.join("directory"),
    ))
    .await;
    let (directory_addr, directory_metrics) = (directory.addr, directory.metrics);

    let localhost = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let settings = cohort_authz::config::Settings {
        listen: localhost,
        directory: format!("http://{directory_addr}"),
        directory_token: Some(TEST_SECRET.into()),
        data_dir: data.join("authz"),
        serving: cohort_shared::serving::ServingArgs {
            metrics_listen: Some(localhost),
            // One call at a time: a second one while a read waits is shed.
            max_concurrent_calls: 1,
            auth_tokens: Some(format!("test:{TEST_SECRET}").into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let authz = cohort_authz::startup::Application::build(&settings)
        .await
        .unwrap();
    let (authz_addr, authz_metrics) = (authz.local_addr(), authz.metrics_addr().unwrap());
    let (stop_authz, authz_stopped) = tokio::sync::oneshot::channel::<()>();
    let authz_task = tokio::spawn(authz.run_until(async {
        let _ = authz_stopped.await;
    }));

    let mut d = DirectoryServiceClient::with_interceptor(
        channel(directory_addr).await.unwrap(),
        cohort_tests::bearer(TEST_SECRET),
    );
    let created = cohort_tests::create_tenant(&mut d, "Metrics")
        .await
        .unwrap();
    let tenant_revision = created.revision;
    let (tenant, admin) = (created.tenant.unwrap(), created.admin.unwrap());
    let missing = d
        .get_user(dir::GetUserRequest {
            tenant_id: tenant.id.clone(),
            user_id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // A live change set after the tenant's snapshot: the authorization service
    // has the tenant (a read at its revision waits for the snapshot) before the
    // user is made, else the user could come inside the snapshot.
    let mut a = AuthzServiceClient::with_interceptor(
        channel(authz_addr).await.unwrap(),
        cohort_tests::bearer(TEST_SECRET),
    );
    a.get_effective_roles(authz::GetEffectiveRolesRequest {
        tenant_id: tenant.id.clone(),
        user_id: admin.id.clone(),
        consistency: Some(authz::Consistency {
            requirement: Some(authz::consistency::Requirement::AtLeastRevision(
                tenant_revision,
            )),
        }),
        view: authz::EffectiveRolesView::Basic as i32,
    })
    .await
    .unwrap();
    let later = d
        .create_user(dir::CreateUserRequest {
            tenant_id: tenant.id.clone(),
            display_name: "Bo".into(),
            email: "bo@metrics.test".into(),
            roles: vec![catalog_pb::Role::GlobalAdminUser as i32],
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .revision;

    for _ in 0..2 {
        let allowed = a
            .check(check_request(&tenant.id, &admin.id, later))
            .await
            .unwrap()
            .into_inner();
        assert!(allowed.allowed);
    }

    // A caller that gives up on a read waiting for a revision to come: the
    // call is recorded as cancelled when the server sees the stream reset.
    // Meanwhile, a second call finds the only place taken and is shed.
    let mut waiting = a.clone();
    let (tenant_id, admin_id) = (tenant.id.clone(), admin.id.clone());
    let gave_up = tokio::spawn(async move {
        tokio::time::timeout(
            Duration::from_secs(2),
            waiting.check(check_request(&tenant_id, &admin_id, later + 1_000)),
        )
        .await
    });
    // Once the server has it in flight (not after a guessed sleep).
    let mut waited = 0;
    while value(
        &scrape(authz_metrics).await.0,
        "grpc_server_in_flight_calls",
        &[],
    ) != Some(1.0)
    {
        waited += 1;
        assert!(waited < 100, "the waiting read never reached the server");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shed = a.check(check_request(&tenant.id, &admin.id, later)).await;
    assert_eq!(shed.unwrap_err().code(), tonic::Code::ResourceExhausted);
    let gave_up = gave_up.await.unwrap();
    assert!(
        gave_up.is_err(),
        "the read does not answer before its revision"
    );
    let check_code = |code: &'static str| {
        [
            ("grpc_service", "cohort.authz.v1.AuthzService"),
            ("grpc_method", "Check"),
            ("grpc_code", code),
        ]
    };
    let mut waited = 0;
    while value(
        &scrape(authz_metrics).await.0,
        "grpc_server_handled_total",
        &check_code("CANCELLED"),
    )
    .is_none()
    {
        waited += 1;
        assert!(waited < 100, "the cancelled call was never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (scraped, text) = scrape(directory_metrics).await;
    let service = "cohort.directory.v1.DirectoryService";
    let created_labels = [("grpc_service", service), ("grpc_method", "CreateTenant")];
    assert_eq!(
        value(&scraped, "grpc_server_started_total", &created_labels),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        handled(&scraped, service, "CreateTenant", "OK"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        handled(&scraped, service, "GetUser", "NOT_FOUND"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&scraped, "grpc_server_handling_seconds", &created_labels),
        Some(1.0),
        "one timed call, in the histogram's +Inf bucket: {text}"
    );
    // The authorization service's feed stream stays open: in flight, and not
    // counted as answered until it ends.
    assert!(
        value(&scraped, "grpc_server_in_flight_calls", &[]).unwrap() >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &scraped,
            "grpc_server_handled_total",
            &[("grpc_method", "Watch")]
        ),
        None,
        "{text}"
    );

    // The directory's own: the follower's stream and what it was sent, the
    // commits and the tenant's revision, the pool.
    let gauge = |name: &str| value(&scraped, name, &[]);
    assert_eq!(gauge("cohort_directory_feed_streams"), Some(1.0), "{text}");
    assert!(
        gauge("cohort_directory_feed_messages_sent_total").unwrap() >= 4.0,
        "caught up, the snapshot's begin, part and end, the change set: {text}"
    );
    assert_eq!(gauge("cohort_directory_commits_total"), Some(2.0), "{text}");
    assert_eq!(
        value(
            &scraped,
            "cohort_directory_tenant_revision",
            &[("tenant", &tenant.id)]
        ),
        Some(later as f64),
        "{text}"
    );
    assert_eq!(
        gauge("cohort_directory_db_max_connections"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        gauge("cohort_directory_known_users"),
        None,
        "SQLite remembers no users: {text}"
    );
    assert!(
        value(
            &scraped,
            "cohort_directory_db_connections",
            &[("state", "idle")]
        )
        .is_some(),
        "{text}"
    );

    let (scraped, text) = scrape(authz_metrics).await;
    assert_eq!(
        handled(&scraped, "cohort.authz.v1.AuthzService", "Check", "OK"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            &scraped,
            "grpc_server_handled_total",
            &check_code("CANCELLED")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&scraped, "grpc_server_in_flight_calls", &[]),
        Some(0.0),
        "{text}"
    );
    let gauge = |name: &str| value(&scraped, name, &[]);
    assert_eq!(gauge("cohort_authz_feed_connected"), Some(1.0), "{text}");
    assert_eq!(gauge("cohort_authz_caught_up"), Some(1.0), "{text}");
    assert_eq!(gauge("cohort_authz_tenants"), Some(1.0), "{text}");
    assert_eq!(gauge("cohort_authz_users"), Some(2.0), "{text}");
    assert_eq!(gauge("grpc_server_shed_calls_total"), Some(1.0), "{text}");
    assert_eq!(
        handled(
            &scraped,
            "cohort.authz.v1.AuthzService",
            "Check",
            "RESOURCE_EXHAUSTED"
        ),
        Some(1.0),
        "{text}"
    );
    // The tenant came as a snapshot, the user as a live change set.
    assert_eq!(
        gauge("cohort_authz_snapshots_applied_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(gauge("cohort_authz_snapshot_seconds"), Some(1.0), "{text}");
    assert_eq!(
        gauge("cohort_authz_change_propagation_seconds"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(gauge("cohort_authz_feed_losses_total"), Some(0.0), "{text}");
    assert_eq!(gauge("cohort_authz_groups"), Some(0.0), "{text}");
    assert_eq!(gauge("cohort_authz_memberships"), Some(0.0), "{text}");
    assert_eq!(
        value(
            &scraped,
            "cohort_authz_tenant_revision",
            &[("tenant", &tenant.id)]
        ),
        Some(later as f64),
        "{text}"
    );

    // Anything but /metrics is not found.
    let response = get(authz_metrics, "/").await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");

    let _ = stop_authz.send(());
    tokio::time::timeout(Duration::from_secs(10), authz_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    directory.stop().await;
    // The metrics listeners close with their servers.
    assert!(tokio::net::TcpStream::connect(authz_metrics).await.is_err());
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test]
async fn without_a_metrics_address_nothing_is_served() {
    let data =
        std::env::temp_dir().join(format!("cohort-metrics-{}", uuid::Uuid::new_v4().simple()));
    let settings = cohort_authz::config::Settings {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data.clone(),
        ..Default::default()
    };
    assert_eq!(settings.serving.metrics_listen, None);
    let authz = cohort_authz::startup::Application::build(&settings)
        .await
        .unwrap();
    assert_eq!(authz.metrics_addr(), None);
    drop(authz);
    let _ = std::fs::remove_dir_all(&data);
}

/// On PostgreSQL the directory remembers the users it knows exist, and says how
/// many: the tenant's first administrator and a user created after it, then one
/// fewer once that user is deleted. SQLite remembers none and has no such gauge
/// (the test above scrapes a SQLite directory).
#[tokio::test]
async fn the_directory_on_postgres_counts_the_users_it_remembers() {
    if cohort_tests::skip_against_external(
        "the_directory_on_postgres_counts_the_users_it_remembers",
    ) {
        return;
    }
    let database = cohort_tests::fresh_directory_database().await.unwrap();
    let directory = ServedDirectory::start(cohort_directory::config::Database::Postgres(
        database.url().to_owned(),
    ))
    .await;
    let (addr, metrics) = (directory.addr, directory.metrics);
    let known = || async {
        let (scraped, text) = scrape(metrics).await;
        (value(&scraped, "cohort_directory_known_users", &[]), text)
    };
    assert_eq!(known().await.0, Some(0.0));

    let mut d = DirectoryServiceClient::with_interceptor(
        channel(addr).await.unwrap(),
        cohort_tests::bearer(TEST_SECRET),
    );
    let tenant = cohort_tests::create_tenant(&mut d, "Remembered")
        .await
        .unwrap()
        .tenant
        .unwrap();
    let user = d
        .create_user(dir::CreateUserRequest {
            tenant_id: tenant.id.clone(),
            display_name: "Ada".into(),
            email: "ada@example.test".into(),
            roles: vec![catalog_pb::Role::GlobalAdminUser as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let (count, text) = known().await;
    assert_eq!(count, Some(2.0), "{text}");
    d.delete_user(dir::DeleteUserRequest {
        tenant_id: tenant.id.clone(),
        user_id: user.id.clone(),
        etag: String::new(),
    })
    .await
    .unwrap();
    let (count, text) = known().await;
    assert_eq!(count, Some(1.0), "{text}");

    directory.stop().await;
    database.drop_now().await.unwrap();
}
