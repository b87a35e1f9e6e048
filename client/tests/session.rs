//! The client against real services: read-your-writes without passing
//! revisions, a caller's own consistency kept, retries that create once, and a
//! feed follower that resumes across a directory restart without losing or
//! repeating a change set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use cohort_client::proto::authz::v1 as authz;
use cohort_client::proto::catalog::v1 as catalog;
use cohort_client::proto::directory::v1 as directory;
use cohort_client::{Client, Config, FeedEvent, Resource, Retries};

fn new_tenant(name: &str) -> directory::CreateTenantRequest {
    directory::CreateTenantRequest {
        display_name: name.into(),
        admin_display_name: "Ada".into(),
        admin_email: format!("ada@{}.test", name.to_lowercase()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_see_the_session_s_writes_unless_told_otherwise() {
    let stack = cohort_stack::Ephemeral::start().await.unwrap();
    let client =
        Client::connect(Config::new(stack.directory_url(), stack.authz_url()).token(stack.token()))
            .unwrap();

    let created = client.call(new_tenant("Acme")).await.unwrap();
    let tenant = created.tenant.unwrap().id;
    assert_eq!(client.revision(&tenant), Some(created.revision));
    let admin = created.admin.unwrap().id;
    let group = client
        .call(directory::CreateGroupRequest {
            tenant_id: tenant.clone(),
            display_name: "Org".into(),
            is_organization: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(client.revision(&tenant), Some(group.revision));
    // A read does not move the session's revision.
    client
        .call(directory::GetTenantRequest {
            tenant_id: tenant.clone(),
        })
        .await
        .unwrap();
    assert_eq!(client.revision(&tenant), Some(group.revision));

    // Every read right after a write is answered at that write's revision or
    // later, with nothing passed by hand; a clone shares the session.
    let reader = client.clone();
    for _ in 0..20 {
        let written = client
            .call(directory::AddGroupMembersRequest {
                tenant_id: tenant.clone(),
                group_id: group.group.as_ref().unwrap().id.clone(),
                user_ids: vec![admin.clone()],
            })
            .await
            .unwrap();
        let roles = reader.effective_roles(&tenant, &admin).await.unwrap();
        assert!(roles.revision >= written.revision);
        let removed = client
            .call(directory::RemoveGroupMembersRequest {
                tenant_id: tenant.clone(),
                group_id: group.group.as_ref().unwrap().id.clone(),
                user_ids: vec![admin.clone()],
            })
            .await
            .unwrap();
        let check = reader
            .read(authz::CheckRequest {
                tenant_id: tenant.clone(),
                user_id: admin.clone(),
                permission: "global_admin.configuration.access".into(),
                resource: Some(Resource::Tenant.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(check.allowed && check.revision >= removed.revision);
    }

    // A consistency the caller sets is theirs: a revision far ahead is waited
    // for, and refused when the deadline comes.
    let ahead = client
        .read(authz::CheckRequest {
            tenant_id: tenant.clone(),
            user_id: admin.clone(),
            permission: "global_admin.configuration.access".into(),
            resource: Some(Resource::Tenant.into()),
            consistency: Some(authz::Consistency {
                requirement: Some(authz::consistency::Requirement::AtLeastRevision(
                    group.revision + 1_000,
                )),
            }),
            ..Default::default()
        })
        .await;
    assert_eq!(ahead.unwrap_err().code(), tonic::Code::DeadlineExceeded);

    // The catalog, typed like the rest.
    let permissions = client
        .catalog(catalog::ListPermissionsRequest {})
        .await
        .unwrap();
    assert!(permissions
        .permissions
        .iter()
        .any(|p| p.name == "lms.reports.view"));

    stack.stop().await.unwrap();
}

/// A free local port (bound, then released for the test to use).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn stack_on(
    data_dir: &std::path::Path,
    directory: SocketAddr,
    token: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let settings = cohort_stack::Settings {
        data_dir: data_dir.to_owned(),
        directory_listen: directory,
        authz_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        auth_tokens: Some(format!("test:{token}").into()),
        directory_token: Some(token.to_owned().into()),
        ..Default::default()
    };
    let stack = cohort_stack::Stack::build(&settings).await.unwrap();
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(stack.run_until(async {
        let _ = stopping.await;
    }));
    (stop, serving)
}

/// A create sent while the directory is down is retried until it is up, and
/// creates one tenant: the client gave it a `request_id`.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_is_retried_while_the_directory_is_down_and_creates_once() {
    let data_dir = std::env::temp_dir().join(format!("cohort-client-{}", uuid::Uuid::new_v4()));
    let token = format!("secret-{}", uuid::Uuid::new_v4().simple());
    let directory = free_port();
    let client = Client::connect(
        Config::new(format!("http://{directory}"), "http://127.0.0.1:9")
            .token(token.clone())
            .retries(Retries {
                attempts: 100,
                first_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(100),
            }),
    )
    .unwrap();
    let create = tokio::spawn({
        let client = client.clone();
        async move { client.call(new_tenant("Late")).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!create.is_finished(), "still retrying");
    let (stop, serving) = stack_on(&data_dir, directory, &token).await;

    let created = create.await.unwrap().unwrap();
    let tenants = client
        .call(directory::ListTenantsRequest::default())
        .await
        .unwrap()
        .tenants;
    assert_eq!(tenants.len(), 1);
    assert_eq!(Some(&tenants[0].id), created.tenant.as_ref().map(|t| &t.id));

    // A delete is not repeated: against a service that is down it fails at once.
    let dead = Client::connect(
        Config::new("http://127.0.0.1:9", "http://127.0.0.1:9").retries(Retries {
            attempts: 100,
            first_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(60),
        }),
    )
    .unwrap();
    let refused = dead
        .call(directory::DeleteUserRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// The directory restarts under a follower: the feed resumes from its cursors,
/// and every change set arrives once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn the_feed_follower_resumes_across_a_directory_restart() {
    let data_dir = std::env::temp_dir().join(format!("cohort-client-{}", uuid::Uuid::new_v4()));
    let token = format!("secret-{}", uuid::Uuid::new_v4().simple());
    let directory = free_port();
    let (stop, serving) = stack_on(&data_dir, directory, &token).await;
    let client = Client::connect(
        Config::new(format!("http://{directory}"), "http://127.0.0.1:9").token(token.clone()),
    )
    .unwrap();
    let created = client.call(new_tenant("Acme")).await.unwrap();
    let tenant = created.tenant.unwrap().id;

    let mut feed = client.watch(false, BTreeMap::from([(tenant.clone(), created.revision)]));
    let mut seen = Vec::new();
    let group = |name: &str| directory::CreateGroupRequest {
        tenant_id: tenant.clone(),
        display_name: name.into(),
        ..Default::default()
    };
    let mut written = vec![client.call(group("One")).await.unwrap().revision];
    while seen.is_empty() {
        if let FeedEvent::Changes(set) = feed.next().await.unwrap() {
            seen.push(set.revision);
        }
    }

    // Restart the directory (the same data, the same port), writing while the
    // follower is cut off.
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    let (stop, serving) = stack_on(&data_dir, directory, &token).await;
    for name in ["Two", "Three", "Four"] {
        written.push(client.call(group(name)).await.unwrap().revision);
    }
    while seen.len() < written.len() {
        if let FeedEvent::Changes(set) = feed.next().await.unwrap() {
            assert!(!set.in_snapshot);
            seen.push(set.revision);
        }
    }
    assert_eq!(seen, written, "each change set once, in order");
    assert_eq!(feed.cursors()[&tenant], *written.last().unwrap());

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&data_dir);
}
