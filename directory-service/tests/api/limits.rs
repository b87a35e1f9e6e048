//! Serving limits: calls in flight beyond the limit are shed with
//! RESOURCE_EXHAUSTED (health still answers), open feed streams are bounded,
//! oversized messages are refused without effect, and a call cancelled by its
//! deadline leaves no transaction open.

use std::time::Duration;

use cohort_directory::feed::FeedSettings;
use cohort_shared::proto::directory::v1 as pb;
use cohort_shared::serving::Limits;
use tonic::Code;
use uuid::Uuid;

use crate::feed::HeldWrite;
use crate::helpers::{spawn_app_limited, Backend, TestApp};

fn group_request(tenant: &str, name: &str) -> pb::CreateGroupRequest {
    pb::CreateGroupRequest {
        tenant_id: tenant.into(),
        display_name: name.into(),
        ..Default::default()
    }
}

async fn calls_beyond_the_limit_are_shed_and_health_still_answers(app: &TestApp) {
    let t = app.tenant().await;
    // Two writes wait behind a transaction holding the tenant: two calls in flight.
    let tenant = Uuid::parse_str(&t.id).unwrap();
    let (held, revision) = HeldWrite::open(app, tenant).await;
    let mut waiting = Vec::new();
    for i in 0..2 {
        let mut client = app.client();
        let request = group_request(&t.id, &format!("Queued {i}"));
        waiting.push(tokio::spawn(async move {
            client
                .create_group(request)
                .await
                .map(|r| r.into_inner().revision)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shed = app
        .client()
        .get_tenant(pb::GetTenantRequest {
            tenant_id: t.id.clone(),
        })
        .await;
    assert_eq!(
        shed.unwrap_err().code(),
        Code::ResourceExhausted,
        "a third call is shed, not queued"
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(health.is_ok(), "health answers under load: {health:?}");

    held.commit(tenant, revision).await;
    for call in waiting {
        call.await.unwrap().expect("the queued writes complete");
    }
    app.client()
        .get_tenant(pb::GetTenantRequest {
            tenant_id: t.id.clone(),
        })
        .await
        .expect("responsive again");
}

async fn open_feed_streams_are_bounded(app: &TestApp) {
    let t = app.tenant().await;
    let request = || pb::WatchRequest {
        cursors: vec![pb::TenantCursor {
            tenant_id: t.id.clone(),
            revision: 0,
        }],
        all_tenants: false,
    };
    let first = app
        .feed
        .clone()
        .watch(request())
        .await
        .unwrap()
        .into_inner();
    let second = app.feed.clone().watch(request()).await;
    assert_eq!(second.unwrap_err().code(), Code::ResourceExhausted);
    // Streams that follow every tenant (the authorization services) have places of
    // their own: however many streams others hold, they get in.
    let follower = || pb::WatchRequest {
        cursors: Vec::new(),
        all_tenants: true,
    };
    let reserved = FeedSettings::default().reserved_streams;
    let mut followers = Vec::new();
    for _ in 0..reserved {
        followers.push(
            app.feed
                .clone()
                .watch(follower())
                .await
                .unwrap()
                .into_inner(),
        );
    }
    // Past those, they share the general places like everyone.
    let one_more = app.feed.clone().watch(follower()).await;
    assert_eq!(one_more.unwrap_err().code(), Code::ResourceExhausted);
    drop(followers);
    drop(first);
    // The server notices the closed stream and frees its place.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match app.feed.clone().watch(request()).await {
            Ok(_) => break,
            Err(status)
                if status.code() == Code::ResourceExhausted
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
}

async fn oversized_messages_are_refused_without_effect(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let before = app.revision(&t).await;
    let ids: Vec<String> = (0..3000).map(|_| Uuid::now_v7().to_string()).collect();
    let request = pb::AddGroupMembersRequest {
        tenant_id: t.id.clone(),
        group_id: org,
        user_ids: ids,
    };
    let status = app.client().add_group_members(request).await.unwrap_err();
    assert!(
        matches!(
            status.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{status:?}"
    );
    assert!(
        status.message().contains("too large") || status.message().contains("length"),
        "{status:?}"
    );
    assert_eq!(app.revision(&t).await, before);
}

fn limited() -> (FeedSettings, Limits) {
    let feed = FeedSettings {
        max_streams: 1,
        ..Default::default()
    };
    (
        feed,
        Limits {
            max_concurrent_calls: 2,
            max_message_bytes: 64 * 1024,
        },
    )
}

macro_rules! limited_tests {
    ($($test:ident),*) => {
        $(
            mod $test {
                #[tokio::test]
                async fn postgres() {
                    let (feed, limits) = super::limited();
                    let app = super::spawn_app_limited(super::Backend::Postgres, feed, limits).await;
                    super::$test(&app).await;
                    app.cleanup().await;
                }
                #[tokio::test]
                async fn sqlite() {
                    let (feed, limits) = super::limited();
                    let app = super::spawn_app_limited(super::Backend::Sqlite, feed, limits).await;
                    super::$test(&app).await;
                    app.cleanup().await;
                }
            }
        )*
    };
}

limited_tests!(
    calls_beyond_the_limit_are_shed_and_health_still_answers,
    open_feed_streams_are_bounded,
    oversized_messages_are_refused_without_effect
);

/// PostgreSQL: a write cancelled by its deadline while it waits for the tenant
/// leaves no transaction open on a pooled connection.
#[tokio::test]
async fn a_call_cancelled_by_its_deadline_leaves_no_transaction_open() {
    let (feed, limits) = limited();
    let app = spawn_app_limited(Backend::Postgres, feed, limits).await;
    let t = app.tenant().await;
    let tenant = Uuid::parse_str(&t.id).unwrap();
    let (held, revision) = HeldWrite::open(&app, tenant).await;
    let mut request = tonic::Request::new(group_request(&t.id, "Too late"));
    request.set_timeout(Duration::from_millis(300));
    let status = app.client().create_group(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    held.commit(tenant, revision).await;

    // Nothing of the cancelled call stays behind: no open transaction, no group.
    let database = app.database_url.rsplit('/').next().unwrap().to_owned();
    let monitor = sqlx::PgPool::connect(&crate::helpers::admin_database_url())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'",
        )
        .bind(&database)
        .fetch_one(&monitor)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} transactions left open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let groups = app
        .client()
        .list_groups(pb::ListGroupsRequest {
            tenant_id: t.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        groups.into_inner().groups.is_empty(),
        "the cancelled write did not happen"
    );
    app.client()
        .create_group(group_request(&t.id, "In time"))
        .await
        .expect("the pool is healthy");
    app.cleanup().await;
}
