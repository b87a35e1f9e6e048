//! The feed's message limit, on both sides (`--max-message-bytes`, one setting
//! both services read): with a larger limit, the follower takes messages over
//! tonic's 4 MiB default; with the smallest, change sets and administrator sets
//! far larger than a message still reach the authorization service, whole.

use catalog_pb::Role;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use cohort_tests::{AuthzProcess, DirectoryProcess};
use pb::batch_create_users_request::NewUser;

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
        // Snapshot pages of up to 200,000 rows, cut into messages of up to half
        // the limit: the administrator page below makes one of about 4.6 MB.
        cohort_directory::feed::FeedSettings {
            snapshot_page_rows: 200_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut client = directory.client().await.unwrap();
    let tenant = create_tenant(&mut client, "Large administrator sets", "admin@large.test").await;
    // 600 eligible administrators of each of 200 groups, 120,000 rows in one
    // snapshot page and one message of about 4.6 MB, over tonic's 4 MiB default.
    let admins = eligible_users(&mut client, &tenant, 600).await;
    for i in 0..200 {
        let group = create_group(&mut client, &tenant, &format!("Group {i}"), false).await;
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
    let database = cohort_tests::fresh_authz_database().await.unwrap();
    let url = database.url().to_owned();
    let mut authz = AuthzProcess::start_with_message_limit(&directory.endpoint(), &url, LIMIT)
        .await
        .unwrap();
    let synced = authz.wait_until_serving().await;
    authz.stop().await.unwrap();
    synced.expect("the authorization service syncs from a snapshot with a 4.6 MB message");
    directory.finish().await.unwrap();
    database.drop_now().await.unwrap();
}

const SMALL: usize = 64 * 1024;

async fn create_tenant(
    client: &mut cohort_tests::DirectoryClient,
    name: &str,
    admin_email: &str,
) -> String {
    client
        .create_tenant(pb::CreateTenantRequest {
            display_name: name.into(),
            admin_display_name: "Admin".into(),
            admin_email: admin_email.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .expect("a tenant")
        .id
}

async fn create_group(
    client: &mut cohort_tests::DirectoryClient,
    tenant: &str,
    name: &str,
    is_organization: bool,
) -> String {
    client
        .create_group(pb::CreateGroupRequest {
            tenant_id: tenant.to_owned(),
            display_name: name.into(),
            is_organization,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .expect("a group")
        .id
}

/// `n` users who may administer groups, in calls that fit a 64 KiB message.
async fn eligible_users(
    client: &mut cohort_tests::DirectoryClient,
    tenant: &str,
    n: usize,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for batch in 0..n.div_ceil(200) {
        let users = client
            .batch_create_users(pb::BatchCreateUsersRequest {
                tenant_id: tenant.to_owned(),
                users: (batch * 200..((batch + 1) * 200).min(n))
                    .map(|i| NewUser {
                        display_name: format!("User {i}"),
                        email: format!("user{i}@small.test"),
                        roles: vec![Role::GlobalAdminGroupAdministrator as i32],
                        request_id: String::new(),
                    })
                    .collect(),
            })
            .await
            .unwrap()
            .into_inner()
            .users;
        ids.extend(users.into_iter().map(|u| u.id));
    }
    ids
}

/// Whether `user` may do `permission` on `group`, at `revision` at least.
async fn allowed(
    authz: &AuthzProcess,
    tenant: &str,
    user: &str,
    permission: &str,
    group: &str,
    revision: i64,
) -> bool {
    use cohort_shared::proto::authz::v1 as authz;
    authz
        .client()
        .await
        .unwrap()
        .check(authz::CheckRequest {
            tenant_id: tenant.to_owned(),
            user_id: user.to_owned(),
            permission: permission.to_owned(),
            resource: Some(authz::Resource {
                resource: Some(authz::resource::Resource::GroupId(group.to_owned())),
            }),
            consistency: Some(authz::Consistency {
                requirement: Some(authz::consistency::Requirement::AtLeastRevision(revision)),
            }),
            explain: false,
        })
        .await
        .expect("answered at the revision: the change sets before it were delivered")
        .into_inner()
        .allowed
}

/// At the smallest limit (64 KiB, so 32 KiB a message), a 1,000-member add
/// (about 100 KB of changes), a 1,000-id administrator replacement and a group
/// administered by 1,500 users reach a following authorization service live,
/// and a new one through a snapshot. Before the feed cut its messages, the
/// member add was acknowledged but could never be sent: the feed stopped there
/// for every subscriber.
#[tokio::test]
async fn at_the_smallest_message_limit_no_write_is_too_large_for_the_feed() {
    if cohort_tests::skip_against_external(
        "at_the_smallest_message_limit_no_write_is_too_large_for_the_feed",
    ) {
        return;
    }
    let directory = DirectoryProcess::start_with_limits(
        cohort_shared::serving::Limits {
            max_message_bytes: SMALL,
            ..Default::default()
        },
        Default::default(),
    )
    .await
    .unwrap();
    let database = cohort_tests::fresh_authz_database().await.unwrap();
    let url = database.url().to_owned();
    let mut live = AuthzProcess::start_with_message_limit(&directory.endpoint(), &url, SMALL)
        .await
        .unwrap();
    live.wait_until_serving().await.unwrap();

    let mut client = directory.client().await.unwrap();
    let tenant = create_tenant(&mut client, "Small messages", "admin@small.test").await;
    let users = eligible_users(&mut client, &tenant, 1500).await;
    let org = create_group(&mut client, &tenant, "Organization", true).await;
    let team = create_group(&mut client, &tenant, "Team", false).await;
    client
        .set_inherited_role(pb::SetInheritedRoleRequest {
            tenant_id: tenant.clone(),
            group_id: org.clone(),
            role: Role::LmsValidator as i32,
            etag: String::new(),
        })
        .await
        .unwrap();
    client
        .add_group_members(pb::AddGroupMembersRequest {
            tenant_id: tenant.clone(),
            group_id: org.clone(),
            user_ids: users[..1000].to_vec(),
        })
        .await
        .unwrap();
    for chunk in users.chunks(1000) {
        client
            .add_group_administrators(pb::AddGroupAdministratorsRequest {
                tenant_id: tenant.clone(),
                group_id: org.clone(),
                user_ids: chunk.to_vec(),
            })
            .await
            .unwrap();
    }
    let revision = client
        .set_group_administrators(pb::SetGroupAdministratorsRequest {
            tenant_id: tenant.clone(),
            group_id: team.clone(),
            user_ids: users[500..1500].to_vec(),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .revision;

    let database2 = cohort_tests::fresh_authz_database().await.unwrap();
    let url2 = database2.url().to_owned();
    let mut fresh = AuthzProcess::start_with_message_limit(&directory.endpoint(), &url2, SMALL)
        .await
        .unwrap();
    fresh.wait_until_serving().await.unwrap();
    for authz in [&live, &fresh] {
        // The last member and the last administrator of each set.
        assert!(
            allowed(
                authz,
                &tenant,
                &users[999],
                "lms.content.publish",
                &org,
                revision
            )
            .await
        );
        assert!(
            !allowed(
                authz,
                &tenant,
                &users[1000],
                "lms.content.publish",
                &org,
                revision
            )
            .await
        );
        assert!(
            allowed(
                authz,
                &tenant,
                &users[1499],
                "global_admin.users.manage",
                &org,
                revision
            )
            .await
        );
        assert!(
            allowed(
                authz,
                &tenant,
                &users[1499],
                "global_admin.users.manage",
                &team,
                revision
            )
            .await
        );
        assert!(
            !allowed(
                authz,
                &tenant,
                &users[499],
                "global_admin.users.manage",
                &team,
                revision
            )
            .await
        );
    }
    live.stop().await.unwrap();
    fresh.stop().await.unwrap();
    directory.finish().await.unwrap();
    database.drop_now().await.unwrap();
    database2.drop_now().await.unwrap();
}

/// No credential can lock the authorization service out of the feed: a caller
/// is held to its quota of streams, another still gets a place, and the
/// authorization service, following every tenant, syncs on a place kept for it
/// while the general places are all taken.
#[tokio::test]
async fn no_credential_can_lock_the_authorization_service_out_of_the_feed() {
    if cohort_tests::skip_against_external(
        "no_credential_can_lock_the_authorization_service_out_of_the_feed",
    ) {
        return;
    }
    use cohort_shared::auth::Credential;
    use tonic::Code;

    const GREEDY: &str = "greedy-0123456789abcdef0123456789abcdef";
    const OTHER: &str = "other-0123456789abcdef0123456789abcdef";
    let directory = DirectoryProcess::start_configured(
        cohort_tests::test_auth(vec![
            Credential::new("greedy", GREEDY, None),
            Credential::new("other", OTHER, None),
        ]),
        Default::default(),
        cohort_directory::feed::FeedSettings {
            max_streams: 4,
            reserved_streams: 1,
            streams_per_credential: 3,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let tenant = create_tenant(
        &mut directory.client().await.unwrap(),
        "Fair feed",
        "admin@fair.test",
    )
    .await;
    let watch = || pb::WatchRequest {
        cursors: vec![pb::TenantCursor {
            tenant_id: tenant.clone(),
            revision: 0,
        }],
        all_tenants: false,
    };
    let mut held = Vec::new();
    let mut greedy = directory.feed_with(GREEDY).await.unwrap();
    for _ in 0..3 {
        held.push(greedy.watch(watch()).await.unwrap().into_inner());
    }
    let refused = greedy.watch(watch()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(refused.message().contains("quota"), "{refused:?}");
    let mut other = directory.feed_with(OTHER).await.unwrap();
    held.push(
        other
            .watch(watch())
            .await
            .expect("another credential gets a place")
            .into_inner(),
    );
    let full = other.watch(watch()).await.unwrap_err();
    assert_eq!(
        full.code(),
        Code::ResourceExhausted,
        "every general place is taken"
    );

    let database = cohort_tests::fresh_authz_database().await.unwrap();
    let url = database.url().to_owned();
    let mut authz = AuthzProcess::start(&directory.endpoint(), &url)
        .await
        .unwrap();
    let synced = authz.wait_until_serving().await;
    authz.stop().await.unwrap();
    synced.expect("the authorization service syncs on its reserved place");
    drop(held);
    directory.finish().await.unwrap();
    database.drop_now().await.unwrap();
}
