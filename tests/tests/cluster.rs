//! The two services together: real servers on random ports, each on its own fresh
//! PostgreSQL database. A write in the directory is seen by a read-your-writes
//! read in the authorization service; revocations are never answered stale;
//! restarting either service loses nothing.
//!
//! One file on purpose: the tests share one scenario (`scenario`) and its
//! read-your-writes helpers.

use std::time::Duration;

use cohort_shared::proto::authz::v1 as authz;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as dir;
use cohort_tests::{field_violations, AuthzProcess, Cluster, DirectoryProcess};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

fn at(revision: i64) -> Option<authz::Consistency> {
    Some(authz::Consistency {
        requirement: Some(authz::consistency::Requirement::AtLeastRevision(revision)),
    })
}

fn on_group(group: &str) -> Option<authz::Resource> {
    Some(authz::Resource {
        resource: Some(authz::resource::Resource::GroupId(group.into())),
    })
}

/// The source documents' scenario: a tenant, an organization with a subgroup that
/// passes on LMS GROUP_ADMINISTRATOR, and an LMS author who joins it.
struct Scenario {
    tenant: String,
    author: String,
    org: String,
    team: String,
    /// The revision of the last write.
    revision: i64,
}

async fn scenario(cluster: &Cluster) -> Scenario {
    let session = cluster.session().unwrap();
    let created = session
        .call(dir::CreateTenantRequest {
            display_name: "Acme".into(),
            admin_display_name: "Ada".into(),
            admin_email: "ada@acme.test".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let tenant = created.tenant.unwrap().id;
    let author = session
        .call(dir::CreateUserRequest {
            tenant_id: tenant.clone(),
            display_name: "Alex Author".into(),
            email: "alex@acme.test".into(),
            roles: vec![
                catalog_pb::Role::GlobalAdminGroupAdministrator as i32,
                catalog_pb::Role::LmsAuthor as i32,
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .user
        .unwrap()
        .id;
    let group = |name: &str, parent: &str| dir::CreateGroupRequest {
        tenant_id: tenant.clone(),
        display_name: name.into(),
        parent_id: parent.into(),
        is_organization: parent.is_empty(),
        ..Default::default()
    };
    let org = session
        .call(group("Org", ""))
        .await
        .unwrap()
        .group
        .unwrap()
        .id;
    let team = session
        .call(group("Team", &org))
        .await
        .unwrap()
        .group
        .unwrap()
        .id;
    session
        .call(dir::SetInheritedRoleRequest {
            tenant_id: tenant.clone(),
            group_id: team.clone(),
            role: catalog_pb::Role::LmsGroupAdministrator as i32,
            etag: String::new(),
        })
        .await
        .unwrap();
    session
        .call(dir::AddGroupMembersRequest {
            tenant_id: tenant.clone(),
            group_id: team.clone(),
            user_ids: vec![author.clone()],
        })
        .await
        .unwrap();
    Scenario {
        revision: session.revision(&tenant).unwrap(),
        tenant,
        author,
        org,
        team,
    }
}

async fn may_manage_trainings(cluster: &Cluster, s: &Scenario, group: &str, revision: i64) -> bool {
    let mut a = cluster.authz.client().await.unwrap();
    let reply = a
        .check(authz::CheckRequest {
            tenant_id: s.tenant.clone(),
            user_id: s.author.clone(),
            permission: "lms.trainings.manage".into(),
            resource: on_group(group),
            consistency: at(revision),
            explain: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.revision >= revision,
        "answered at {} for a read at least at {revision}",
        reply.revision
    );
    reply.allowed
}

#[tokio::test]
async fn a_directory_write_is_seen_by_a_read_your_writes_read() {
    let cluster = Cluster::start().await.unwrap();
    let s = scenario(&cluster).await;
    let mut a = cluster.authz.client().await.unwrap();
    let roles = a
        .get_effective_roles(authz::GetEffectiveRolesRequest {
            tenant_id: s.tenant.clone(),
            user_id: s.author.clone(),
            consistency: at(s.revision),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(roles.revision >= s.revision);
    let lms = roles
        .tools
        .iter()
        .find(|t| t.tool == catalog_pb::Tool::Lms as i32)
        .unwrap();
    let held: Vec<i32> = lms.roles.iter().map(|r| r.role).collect();
    assert!(
        held.contains(&(catalog_pb::Role::LmsAuthor as i32))
            && held.contains(&(catalog_pb::Role::LmsGroupAdministrator as i32))
    );
    let group_admin = lms
        .roles
        .iter()
        .find(|r| r.role == catalog_pb::Role::LmsGroupAdministrator as i32)
        .unwrap();
    let administered = group_admin
        .reaches
        .iter()
        .find(|r| r.kind == catalog_pb::ScopeKind::AdministeredGroups as i32)
        .unwrap();
    assert_eq!(
        administered.scope.as_ref().unwrap().scope,
        Some(authz::scope::Scope::Groups(authz::GroupIds {
            group_ids: vec![s.team.clone()]
        })),
        "the inherited administration applies to that group only"
    );
    assert!(administered
        .permissions
        .contains(&"lms.trainings.manage".to_owned()));
    assert!(may_manage_trainings(&cluster, &s, &s.team, s.revision).await);
    assert!(!may_manage_trainings(&cluster, &s, &s.org, s.revision).await);

    // A revision the directory has not reached yet is refused, not answered stale.
    let future = a
        .check(authz::CheckRequest {
            tenant_id: s.tenant.clone(),
            user_id: s.author.clone(),
            permission: "lms.trainings.manage".into(),
            resource: on_group(&s.team),
            consistency: at(s.revision + 100),
            explain: false,
        })
        .await;
    let mut request = tonic::Request::new(authz::CheckRequest {
        tenant_id: s.tenant.clone(),
        user_id: s.author.clone(),
        permission: "lms.trainings.manage".into(),
        resource: on_group(&s.team),
        consistency: at(s.revision + 100),
        explain: false,
    });
    request.set_timeout(Duration::from_millis(300));
    let with_deadline = a.check(request).await;
    assert_eq!(with_deadline.unwrap_err().code(), Code::DeadlineExceeded);
    assert_eq!(future.unwrap_err().code(), Code::DeadlineExceeded);
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn the_basic_view_answers_the_roles_without_their_reaches() {
    let cluster = Cluster::start().await.unwrap();
    let s = scenario(&cluster).await;
    let mut a = cluster.authz.client().await.unwrap();
    let roles = |view: authz::EffectiveRolesView| authz::GetEffectiveRolesRequest {
        tenant_id: s.tenant.clone(),
        user_id: s.author.clone(),
        consistency: at(s.revision),
        view: view as i32,
    };
    let full = a
        .get_effective_roles(roles(authz::EffectiveRolesView::Full))
        .await
        .unwrap()
        .into_inner();
    let unset = a
        .get_effective_roles(roles(authz::EffectiveRolesView::Unspecified))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unset, full, "unset is the full view");
    let basic = a
        .get_effective_roles(roles(authz::EffectiveRolesView::Basic))
        .await
        .unwrap()
        .into_inner();
    let mut expected = full.clone();
    for role in expected.tools.iter_mut().flat_map(|t| t.roles.iter_mut()) {
        assert!(!role.reaches.is_empty(), "the full view says where");
        role.reaches.clear();
        #[allow(deprecated)]
        {
            role.scope = None;
        }
    }
    assert_eq!(
        basic, expected,
        "the same roles, provenance and suppressions"
    );

    let mut bad = roles(authz::EffectiveRolesView::Basic);
    bad.view = 7;
    let refused = a.get_effective_roles(bad).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(field_violations(&refused), ["view"]);
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn a_revocation_is_never_answered_stale_under_concurrent_writes() {
    let cluster = Cluster::start().await.unwrap();
    let s = scenario(&cluster).await;
    // Another writer keeps the tenant busy, so the service is always catching up.
    let noise = {
        let mut d = cluster.directory.client().await.unwrap();
        let tenant = s.tenant.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                let _ = d
                    .create_group(dir::CreateGroupRequest {
                        tenant_id: tenant.clone(),
                        display_name: format!("Noise {i}"),
                        ..Default::default()
                    })
                    .await;
            }
        })
    };
    let mut d = cluster.directory.client().await.unwrap();
    for _ in 0..15 {
        let removed = d
            .remove_group_members(dir::RemoveGroupMembersRequest {
                tenant_id: s.tenant.clone(),
                group_id: s.team.clone(),
                user_ids: vec![s.author.clone()],
            })
            .await
            .unwrap()
            .into_inner()
            .revision;
        assert!(
            !may_manage_trainings(&cluster, &s, &s.team, removed).await,
            "a revoked permission was still granted"
        );
        let added = d
            .add_group_members(dir::AddGroupMembersRequest {
                tenant_id: s.tenant.clone(),
                group_id: s.team.clone(),
                user_ids: vec![s.author.clone()],
            })
            .await
            .unwrap()
            .into_inner()
            .revision;
        assert!(may_manage_trainings(&cluster, &s, &s.team, added).await);
    }
    noise.await.unwrap();
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn killing_and_restarting_the_authorization_service_loses_nothing() {
    if cohort_tests::skip_against_external(
        "killing_and_restarting_the_authorization_service_loses_nothing",
    ) {
        return;
    }
    let mut cluster = Cluster::start().await.unwrap();
    let s = scenario(&cluster).await;
    assert!(may_manage_trainings(&cluster, &s, &s.team, s.revision).await);
    cluster.authz.kill();

    // Changes while it is down.
    let mut d = cluster.directory.client().await.unwrap();
    let removed = d
        .remove_group_members(dir::RemoveGroupMembersRequest {
            tenant_id: s.tenant.clone(),
            group_id: s.team.clone(),
            user_ids: vec![s.author.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .revision;

    cluster.authz.restart().await.unwrap();
    // Before catching up it still answers, from its stored projection.
    let mut a = cluster.authz.client().await.unwrap();
    let early = a
        .check(authz::CheckRequest {
            tenant_id: s.tenant.clone(),
            user_id: s.author.clone(),
            permission: "lms.trainings.manage".into(),
            resource: on_group(&s.team),
            consistency: None,
            explain: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        early.revision >= s.revision,
        "the stored projection was loaded (revision {})",
        early.revision
    );
    cluster.authz.wait_until_serving().await.unwrap();
    assert!(!may_manage_trainings(&cluster, &s, &s.team, removed).await);
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn killing_the_directory_mid_stream_loses_nothing() {
    if cohort_tests::skip_against_external("killing_the_directory_mid_stream_loses_nothing") {
        return;
    }
    let mut cluster = Cluster::start().await.unwrap();
    let s = scenario(&cluster).await;
    assert!(may_manage_trainings(&cluster, &s, &s.team, s.revision).await);
    cluster.directory.kill();

    // The authorization service keeps answering from what it has, saying at which
    // revision.
    let mut a = cluster.authz.client().await.unwrap();
    let meanwhile = a
        .get_effective_roles(authz::GetEffectiveRolesRequest {
            tenant_id: s.tenant.clone(),
            user_id: s.author.clone(),
            consistency: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meanwhile.revision, s.revision);
    let fully = a
        .get_effective_roles(authz::GetEffectiveRolesRequest {
            tenant_id: s.tenant.clone(),
            user_id: s.author.clone(),
            consistency: Some(authz::Consistency {
                requirement: Some(authz::consistency::Requirement::FullyConsistent(true)),
            }),
            ..Default::default()
        })
        .await;
    assert_eq!(
        fully.unwrap_err().code(),
        Code::Unavailable,
        "a fully consistent read cannot be had without the directory"
    );

    // The lag is observable: the follower notices the feed is gone (a killed peer
    // takes a moment to be noticed), and the vouching ages.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = a
            .get_sync_status(authz::GetSyncStatusRequest {
                tenant_id: s.tenant.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if !status.connected || tokio::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.connected && status.caught_up, "{status:?}");
    assert_eq!(status.tenants[0].revision, s.revision);

    cluster.directory.restart().await.unwrap();
    let mut d = cluster.directory.client().await.unwrap();
    let removed = d
        .remove_group_members(dir::RemoveGroupMembersRequest {
            tenant_id: s.tenant.clone(),
            group_id: s.team.clone(),
            user_ids: vec![s.author.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .revision;
    assert!(
        !may_manage_trainings(&cluster, &s, &s.team, removed).await,
        "the follower came back and caught up"
    );
    let status = a
        .get_sync_status(authz::GetSyncStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(status.connected, "{status:?}");
    let tenant = status
        .tenants
        .iter()
        .find(|t| t.tenant_id == s.tenant)
        .unwrap();
    assert!(tenant.revision >= removed);
    assert!(
        tenant.lag.as_ref().is_some_and(|lag| lag.seconds < 10),
        "{tenant:?}"
    );
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn health_is_not_serving_until_the_feed_has_caught_up() {
    if cohort_tests::skip_against_external("health_is_not_serving_until_the_feed_has_caught_up") {
        return;
    }
    let name = cohort_tests::fresh_authz_database().await.unwrap();
    let url = name.url().to_owned();
    // Nothing listens there: the service starts, but never catches up.
    let mut authz = AuthzProcess::start("http://127.0.0.1:9", &url)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(authz.health().await.unwrap(), ServingStatus::NotServing);
    authz.stop().await.unwrap();
    name.drop_now().await.unwrap();
}

#[tokio::test]
async fn health_is_not_serving_while_the_feed_has_been_lost_for_longer_than_its_bound() {
    if cohort_tests::skip_against_external(
        "health_is_not_serving_while_the_feed_has_been_lost_for_longer_than_its_bound",
    ) {
        return;
    }
    let mut directory = DirectoryProcess::start().await.unwrap();
    let name = cohort_tests::fresh_authz_database().await.unwrap();
    let url = name.url().to_owned();
    let authz = AuthzProcess::start_with_feed_staleness_bound(
        &directory.endpoint(),
        &url,
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    authz.wait_until_serving().await.unwrap();

    let status_after = |wanted: ServingStatus| {
        let authz = &authz;
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                let status = authz.health().await.unwrap();
                if status == wanted {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "health stayed {status:?}, not {wanted:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The directory goes away: still SERVING within the bound, then NOT_SERVING.
    directory.stop().await.unwrap();
    let lost = tokio::time::Instant::now();
    status_after(ServingStatus::NotServing).await;
    assert!(
        lost.elapsed() >= Duration::from_millis(500),
        "NOT_SERVING only past the bound"
    );
    // It comes back: SERVING again once the feed has caught up.
    directory.restart().await.unwrap();
    status_after(ServingStatus::Serving).await;

    let mut authz = authz;
    authz.stop().await.unwrap();
    directory.finish().await.unwrap();
    name.drop_now().await.unwrap();
}

/// What the authorization service did not find, it names: the kind and id in a
/// `ResourceInfo`, and an `ErrorInfo` reason a program can switch on. Another
/// tenant's user is not found, like an unknown one.
#[tokio::test]
async fn the_authorization_service_names_what_it_did_not_find() {
    use tonic_types::StatusExt;
    let cluster = Cluster::start().await.unwrap();
    let s = scenario(&cluster).await;
    let mut d = cluster.directory.client().await.unwrap();
    let other = cohort_tests::create_tenant(&mut d, "Other").await.unwrap();
    let stranger = other.admin.unwrap().id;
    let mut a = cluster.authz.client().await.unwrap();

    let unknown = uuid::Uuid::now_v7().to_string();
    let check = |tenant: &str, user: &str, resource: Option<authz::Resource>| authz::CheckRequest {
        tenant_id: tenant.to_owned(),
        user_id: user.to_owned(),
        permission: "lms.trainings.manage".into(),
        resource,
        consistency: at(other.revision.max(s.revision)),
        explain: false,
    };
    let cases = [
        (
            check(&unknown, &s.author, on_group(&s.team)),
            "tenant",
            &unknown,
        ),
        (
            check(&s.tenant, &unknown, on_group(&s.team)),
            "user",
            &unknown,
        ),
        (
            check(&s.tenant, &stranger, on_group(&s.team)),
            "user",
            &stranger,
        ),
        (
            check(&s.tenant, &s.author, on_group(&unknown)),
            "group",
            &unknown,
        ),
    ];
    for (request, kind, id) in cases {
        let status = if kind == "tenant" {
            // A tenant the service has never seen: no revision to wait for.
            a.check(authz::CheckRequest {
                consistency: None,
                ..request
            })
            .await
            .unwrap_err()
        } else {
            a.check(request).await.unwrap_err()
        };
        assert_eq!(status.code(), Code::NotFound, "{kind}: {status:?}");
        let details = status.get_error_details();
        let info = details.resource_info().expect("a ResourceInfo");
        assert_eq!(
            (info.resource_type.as_str(), info.resource_name.as_str()),
            (kind, id.as_str())
        );
        let reason = details.error_info().expect("an ErrorInfo");
        assert_eq!(reason.reason, format!("{}_NOT_FOUND", kind.to_uppercase()));
        assert!(status.message().contains(id.as_str()), "{status:?}");
    }
    cluster.finish().await.unwrap();
}
