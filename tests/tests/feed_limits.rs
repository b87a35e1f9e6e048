//! The feed's message limit, on both sides: a directory and an authorization
//! service configured with a larger `--max-message-bytes` carry messages over
//! the 4 MiB default (here a snapshot page, from a directory told to make pages
//! of up to 200,000 administrator ids).

use cohort_shared::proto::directory::v1 as pb;
use cohort_tests::{fresh_database, AuthzProcess, DirectoryProcess};
use pb::batch_create_users_request::NewUser;
use pb::Role;

const LIMIT: usize = 16 * 1024 * 1024;

#[tokio::test]
async fn the_follower_takes_feed_messages_up_to_the_configured_limit() {
    if cohort_tests::skip_against_external(
        "the_follower_takes_feed_messages_up_to_the_configured_limit",
    ) {
        return;
    }
    let directory = DirectoryProcess::start_with_limits(
        cohort_shared::serving::Limits {
            max_message_bytes: LIMIT,
            ..Default::default()
        },
        cohort_directory::feed::FeedSettings {
            snapshot_page_administrators: 200_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut client = directory.client().await.unwrap();
    let tenant = client
        .create_tenant(pb::CreateTenantRequest {
            display_name: "Large administrator sets".into(),
            admin_display_name: "Admin".into(),
            admin_email: "admin@large.test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .expect("a tenant")
        .id;
    // 600 eligible administrators of each of 200 groups, all in one snapshot page
    // of about 4.5 MB, over tonic's 4 MiB default.
    let admins: Vec<String> = client
        .batch_create_users(pb::BatchCreateUsersRequest {
            tenant_id: tenant.clone(),
            users: (0..600)
                .map(|i| NewUser {
                    display_name: format!("Administrator {i}"),
                    email: format!("admin{i}@large.test"),
                    roles: vec![Role::GlobalAdminGroupAdministrator as i32],
                    request_id: String::new(),
                })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .users
        .into_iter()
        .map(|u| u.id)
        .collect();
    for i in 0..200 {
        let group = client
            .create_group(pb::CreateGroupRequest {
                tenant_id: tenant.clone(),
                display_name: format!("Group {i}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .group
            .expect("a group")
            .id;
        client
            .set_group_administrators(pb::SetGroupAdministratorsRequest {
                tenant_id: tenant.clone(),
                group_id: group,
                user_ids: admins.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    // A new authorization service syncs from a snapshot: it must take the large
    // page, or stay NOT_SERVING for good.
    let (url, database) = fresh_database().await.unwrap();
    let mut authz = AuthzProcess::start_with_message_limit(&directory.endpoint(), &url, LIMIT)
        .await
        .unwrap();
    let synced = authz.wait_until_serving().await;
    authz.stop().await.unwrap();
    synced.expect("the authorization service syncs from a snapshot with a 4.5 MB page");
    directory.finish().await.unwrap();
    cohort_tests::drop_database(&database).await.unwrap();
}
