//! Users: role validation against the catalog, unique emails, filters and
//! pagination, updates with etags, suspension, deletion, and the rules that refuse
//! a change (still administering groups, last Global Admin ADMIN).

use catalog_pb::Role;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::helpers::{
    assert_error, reason, reason_and_subjects, roles, Tenant, TestApp, GA_GROUP_ADMIN, GA_USER,
};

fn new_user(tenant: &Tenant, email: &str, role_list: &[Role]) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        tenant_id: tenant.id.clone(),
        display_name: "Someone".into(),
        email: email.into(),
        roles: roles(role_list),
        request_id: String::new(),
    }
}

fn update_roles(tenant: &Tenant, user: &str, role_list: &[Role]) -> pb::UpdateUserRequest {
    pb::UpdateUserRequest {
        tenant_id: tenant.id.clone(),
        user_id: user.into(),
        roles: roles(role_list),
        ..Default::default()
    }
}

async fn role_assignments_follow_the_catalog_rules(app: &TestApp) {
    let t = app.tenant().await;
    let before = app.revision(&t).await;
    let refused: &[(&[Role], &str)] = &[
        (&[], "roles"),
        (&[Role::LmsAuthor], "roles"),
        (
            &[Role::GlobalAdminAdmin, Role::GlobalAdminGroupAdministrator],
            "roles",
        ),
        (&[Role::GlobalAdminAdmin, Role::GlobalAdminUser], "roles"),
        (&[GA_USER, Role::LmsGroupAdministrator], "roles"),
        (
            &[Role::GlobalAdminAdmin, Role::LmsGroupAdministrator],
            "roles",
        ),
        (
            &[GA_USER, Role::AuthorManager, Role::AuthorReviewer],
            "roles",
        ),
        (
            &[
                GA_USER,
                Role::AuthorAdministrator,
                Role::AuthorManager,
                Role::AuthorAuthor,
            ],
            "roles",
        ),
        (&[GA_USER, Role::ShareAdmin, Role::ShareConsumer], "roles"),
        (&[GA_USER, Role::Unspecified], "roles[1]"),
    ];
    for (i, (role_list, field)) in refused.iter().enumerate() {
        let result = app
            .client()
            .create_user(new_user(&t, &format!("u{i}@acme.test"), role_list))
            .await;
        assert_error(result, Code::InvalidArgument, Some(field));
    }
    let unknown_value = pb::CreateUserRequest {
        roles: vec![GA_USER as i32, 999],
        ..new_user(&t, "x@acme.test", &[])
    };
    assert_error(
        app.client().create_user(unknown_value).await,
        Code::InvalidArgument,
        Some("roles[1]"),
    );
    assert_eq!(
        app.revision(&t).await,
        before,
        "a refused create writes nothing"
    );

    let accepted: &[&[Role]] = &[
        &[GA_USER],
        &[GA_GROUP_ADMIN, Role::LmsGroupAdministrator, Role::LmsAuthor],
        &[
            GA_USER,
            Role::LmsAdmin,
            Role::LmsAuthor,
            Role::LmsTeacher,
            Role::LmsValidator,
        ],
        &[GA_USER, Role::AuthorAuthor, Role::AuthorManager],
        &[GA_USER, Role::ShareConsumer],
        &[Role::GlobalAdminAdmin, Role::GlobalAdminAdmin],
    ];
    for (i, role_list) in accepted.iter().enumerate() {
        app.client()
            .create_user(new_user(&t, &format!("ok{i}@acme.test"), role_list))
            .await
            .unwrap();
    }
}

async fn lms_user_comes_with_any_lms_role(app: &TestApp) {
    let t = app.tenant().await;
    let teacher = app
        .user_with(&t, "Tess", &[GA_USER, Role::LmsTeacher])
        .await;
    assert_eq!(
        teacher.roles,
        roles(&[GA_USER, Role::LmsTeacher, Role::LmsUser])
    );
    let no_lms = app.user_with(&t, "Nora", &[GA_USER]).await;
    assert_eq!(
        no_lms.roles,
        roles(&[GA_USER]),
        "no LMS role means no LMS access"
    );
}

async fn emails_are_unique_per_tenant_case_insensitively(app: &TestApp) {
    let t = app.tenant().await;
    app.client()
        .create_user(new_user(&t, "Bob@Acme.test", &[GA_USER]))
        .await
        .unwrap();
    let before = app.revision(&t).await;
    let dup = app
        .client()
        .create_user(new_user(&t, "bob@ACME.TEST", &[GA_USER]))
        .await;
    assert_error(dup, Code::AlreadyExists, Some("email"));
    assert_eq!(app.revision(&t).await, before);

    let other = app.tenant().await;
    app.client()
        .create_user(new_user(&other, "bob@acme.test", &[GA_USER]))
        .await
        .expect("another tenant may use it");

    let carol = app.user(&t, "Carol").await;
    let steal = pb::UpdateUserRequest {
        tenant_id: t.id.clone(),
        user_id: carol,
        email: Some("BOB@acme.test".into()),
        ..Default::default()
    };
    assert_error(
        app.client().update_user(steal).await,
        Code::AlreadyExists,
        Some("email"),
    );
}

/// Emails are stored as typed, case included, but for surrounding whitespace
/// (a paste's artefact), which is trimmed on create and update alike; the
/// trimmed form is what uniqueness compares.
async fn emails_keep_their_case_and_lose_only_surrounding_whitespace(app: &TestApp) {
    let t = app.tenant().await;
    let created = app
        .client()
        .create_user(new_user(&t, "  Dana.Lee@Acme.test\t", &[GA_USER]))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(created.email, "Dana.Lee@Acme.test");
    assert_eq!(
        app.get_user(&t, &created.id).await.email,
        "Dana.Lee@Acme.test"
    );
    let twin = app
        .client()
        .create_user(new_user(&t, " dana.lee@acme.test ", &[GA_USER]))
        .await;
    assert_error(twin, Code::AlreadyExists, Some("email"));

    let updated = app
        .client()
        .update_user(pb::UpdateUserRequest {
            tenant_id: t.id.clone(),
            user_id: created.id.clone(),
            email: Some(" D.Lee@Acme.test  ".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(updated.email, "D.Lee@Acme.test");
    // Whitespace inside is not trimmed away: it is refused.
    assert_error(
        app.client()
            .create_user(new_user(&t, "dana lee@acme.test", &[GA_USER]))
            .await,
        Code::InvalidArgument,
        Some("email"),
    );
}

/// The resource a NOT_FOUND names (its `ResourceInfo`): kind and id.
fn not_found_resource<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> (String, String) {
    let status = assert_error(result, Code::NotFound, None);
    let info = status
        .get_error_details()
        .resource_info()
        .cloned()
        .expect("a NOT_FOUND names its resource");
    (info.resource_type, info.resource_name)
}

/// A filter naming another tenant's group, or none at all, is NOT_FOUND (not an
/// empty page, which would say the group has no members); a read in a tenant
/// that does not exist names the tenant, not what was asked for in it.
async fn unknown_tenants_and_foreign_filters_are_not_found(app: &TestApp) {
    let a = app.tenant().await;
    let b = app.tenant().await;
    let alice = app.user(&a, "Alice").await;
    let org_a = app.organization(&a, "Org A").await.id;
    let org_b = app.organization(&b, "Org B").await.id;
    let nowhere = Uuid::new_v4().to_string();

    for group in [org_b.clone(), nowhere.clone()] {
        let listed = app
            .client()
            .list_users(pb::ListUsersRequest {
                tenant_id: a.id.clone(),
                group_id: group.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(not_found_resource(listed), ("group".into(), group.clone()));
        let listed = app
            .client()
            .list_groups(pb::ListGroupsRequest {
                tenant_id: a.id.clone(),
                parent_id: group.clone(),
                ..Default::default()
            })
            .await;
        assert_eq!(not_found_resource(listed), ("group".into(), group.clone()));
    }
    // A group of the tenant with no members (or subgroups) is an empty page.
    let empty = app
        .client()
        .list_users(pb::ListUsersRequest {
            tenant_id: a.id.clone(),
            group_id: org_a.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.users.is_empty());

    let got = app
        .client()
        .get_user(pb::GetUserRequest {
            tenant_id: nowhere.clone(),
            user_id: alice.clone(),
        })
        .await;
    assert_eq!(not_found_resource(got), ("tenant".into(), nowhere.clone()));
    let got = app
        .client()
        .get_group(pb::GetGroupRequest {
            tenant_id: nowhere.clone(),
            group_id: org_a.clone(),
        })
        .await;
    assert_eq!(not_found_resource(got), ("tenant".into(), nowhere.clone()));
    let listed = app
        .client()
        .list_users(pb::ListUsersRequest {
            tenant_id: nowhere.clone(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        not_found_resource(listed),
        ("tenant".into(), nowhere.clone())
    );
    // In a tenant that exists, the user is what is not found.
    let got = app
        .client()
        .get_user(pb::GetUserRequest {
            tenant_id: b.id.clone(),
            user_id: alice.clone(),
        })
        .await;
    assert_eq!(not_found_resource(got), ("user".into(), alice));
}

async fn ids_from_another_tenant_are_not_found(app: &TestApp) {
    let a = app.tenant().await;
    let b = app.tenant().await;
    let alice = app.user(&a, "Alice").await;
    let group_a = app.organization(&a, "Org A").await.id;
    let group_b = app.organization(&b, "Org B").await.id;
    let before = app.revision(&b).await;

    let get = app
        .client()
        .get_user(pb::GetUserRequest {
            tenant_id: b.id.clone(),
            user_id: alice.clone(),
        })
        .await;
    assert_error(get, Code::NotFound, None);
    assert_error(
        app.client()
            .update_user(update_roles(&b, &alice, &[GA_USER]))
            .await,
        Code::NotFound,
        None,
    );
    let delete = pb::DeleteUserRequest {
        tenant_id: b.id.clone(),
        user_id: alice.clone(),
        etag: String::new(),
    };
    assert_error(app.client().delete_user(delete).await, Code::NotFound, None);
    assert_error(
        app.add_members(&b, &group_b, &[&alice]).await,
        Code::NotFound,
        None,
    );
    assert_error(
        app.add_members(&b, &group_a, &[&b.admin_id]).await,
        Code::NotFound,
        None,
    );
    let get_group = app
        .client()
        .get_group(pb::GetGroupRequest {
            tenant_id: b.id.clone(),
            group_id: group_a.clone(),
        })
        .await;
    assert_error(get_group, Code::NotFound, None);
    let sub = pb::CreateGroupRequest {
        tenant_id: b.id.clone(),
        display_name: "Sneaky".into(),
        parent_id: group_a.clone(),
        ..Default::default()
    };
    assert_error(app.client().create_group(sub).await, Code::NotFound, None);
    let list = pb::ListUsersRequest {
        tenant_id: b.id.clone(),
        ..Default::default()
    };
    let users = app
        .client()
        .list_users(list)
        .await
        .unwrap()
        .into_inner()
        .users;
    assert!(users.iter().all(|u| u.tenant_id == b.id));
    assert_eq!(
        app.revision(&b).await,
        before,
        "nothing was written in tenant B"
    );
    assert_eq!(app.get_group(&a, &group_a).await.member_count, 0);
}

async fn users_are_filtered_and_paged(app: &TestApp) {
    let t = app.tenant().await;
    let ann = app
        .user_with(&t, "Ann Author", &[GA_USER, Role::LmsAuthor])
        .await
        .id;
    let ben = app
        .user_with(&t, "Ben Teacher", &[GA_USER, Role::LmsTeacher])
        .await
        .id;
    let cat = app
        .user_with(&t, "Cat 100% Author", &[GA_USER, Role::LmsAuthor])
        .await
        .id;
    let org = app.organization(&t, "Org").await.id;
    app.add_members(&t, &org, &[&ben, &cat]).await.unwrap();
    app.client()
        .suspend_user(pb::SuspendUserRequest {
            tenant_id: t.id.clone(),
            user_id: cat.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();

    let list = |req: pb::ListUsersRequest| {
        let mut client = app.client();
        async move { client.list_users(req).await.map(|r| r.into_inner()) }
    };
    let base = pb::ListUsersRequest {
        tenant_id: t.id.clone(),
        ..Default::default()
    };
    let ids = |r: pb::ListUsersResponse| r.users.into_iter().map(|u| u.id).collect::<Vec<_>>();

    assert_eq!(
        ids(list(pb::ListUsersRequest {
            query: "AUTHOR".into(),
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![ann.clone(), cat.clone()]
    );
    assert_eq!(
        ids(list(pb::ListUsersRequest {
            query: "ben.teacher@".into(),
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![ben.clone()]
    );
    assert_eq!(
        ids(list(pb::ListUsersRequest {
            query: "100%".into(),
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![cat.clone()]
    );
    // A NUL (which PostgreSQL refuses in text) or any control character is bad
    // input, named, not a database error.
    for query in ["a\0b", "tab\there"] {
        assert_error(
            list(pb::ListUsersRequest {
                query: query.into(),
                ..base.clone()
            })
            .await,
            Code::InvalidArgument,
            Some("query"),
        );
    }
    assert!(
        ids(list(pb::ListUsersRequest {
            query: "_".into(),
            ..base.clone()
        })
        .await
        .unwrap())
        .is_empty(),
        "LIKE wildcards are literal"
    );
    assert_eq!(
        ids(list(pb::ListUsersRequest {
            role: Role::LmsTeacher as i32,
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![ben.clone()]
    );
    assert_eq!(
        ids(list(pb::ListUsersRequest {
            group_id: org.clone(),
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![ben.clone(), cat.clone()]
    );
    assert_eq!(
        ids(list(pb::ListUsersRequest {
            state: pb::UserState::Suspended as i32,
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![cat.clone()]
    );
    assert_eq!(
        ids(list(pb::ListUsersRequest {
            role: Role::LmsAuthor as i32,
            state: pb::UserState::Active as i32,
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![ann.clone()]
    );

    // Pages of one, each user exactly once, in creation order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(pb::ListUsersRequest {
            page_size: 1,
            page_token: token,
            ..base.clone()
        })
        .await
        .unwrap();
        assert!(page.users.len() <= 1);
        seen.extend(page.users.iter().map(|u| u.id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, vec![t.admin_id.clone(), ann, ben, cat]);

    let first = list(pb::ListUsersRequest {
        page_size: 1,
        ..base.clone()
    })
    .await
    .unwrap();
    let other_filter = list(pb::ListUsersRequest {
        page_size: 1,
        page_token: first.next_page_token,
        query: "x".into(),
        ..base.clone()
    })
    .await;
    assert_error(other_filter, Code::InvalidArgument, Some("page_token"));
    assert_error(
        list(pb::ListUsersRequest {
            page_size: -1,
            ..base.clone()
        })
        .await,
        Code::InvalidArgument,
        Some("page_size"),
    );
    assert_error(
        list(pb::ListUsersRequest {
            group_id: "x".into(),
            ..base.clone()
        })
        .await,
        Code::InvalidArgument,
        Some("group_id"),
    );
}

async fn updates_honour_etags_and_change_only_what_is_given(app: &TestApp) {
    let t = app.tenant().await;
    let user = app.user_with(&t, "Ursula", &[GA_USER]).await;
    let stale = user.etag.clone();
    let rename = pb::UpdateUserRequest {
        tenant_id: t.id.clone(),
        user_id: user.id.clone(),
        display_name: Some("Ursula K".into()),
        etag: stale.clone(),
        ..Default::default()
    };
    let updated = app
        .client()
        .update_user(rename.clone())
        .await
        .unwrap()
        .into_inner();
    let renamed = updated.user.unwrap();
    assert_eq!(renamed.display_name, "Ursula K");
    assert_eq!(renamed.email, user.email, "fields not given are kept");
    assert_eq!(renamed.roles, user.roles);
    assert_eq!(renamed.etag, updated.revision.to_string());

    let before = app.revision(&t).await;
    let conflict = app
        .client()
        .update_user(pb::UpdateUserRequest {
            display_name: Some("Other".into()),
            ..rename
        })
        .await;
    assert_error(conflict, Code::Aborted, None);
    assert_eq!(app.get_user(&t, &user.id).await.display_name, "Ursula K");
    assert_eq!(app.revision(&t).await, before);

    let same = pb::UpdateUserRequest {
        tenant_id: t.id.clone(),
        user_id: user.id.clone(),
        display_name: Some("Ursula K".into()),
        ..Default::default()
    };
    assert_eq!(
        app.client()
            .update_user(same)
            .await
            .unwrap()
            .into_inner()
            .revision,
        before,
        "an update that changes nothing is not a change"
    );

    let bad_roles = app
        .client()
        .update_user(update_roles(&t, &user.id, &[Role::LmsAuthor]))
        .await;
    assert_error(bad_roles, Code::InvalidArgument, Some("roles"));
    let bad_etag = pb::UpdateUserRequest {
        tenant_id: t.id.clone(),
        user_id: user.id.clone(),
        etag: "abc".into(),
        ..Default::default()
    };
    assert_error(
        app.client().update_user(bad_etag).await,
        Code::InvalidArgument,
        Some("etag"),
    );
}

async fn an_administrator_cannot_lose_eligibility_while_administering(app: &TestApp) {
    let t = app.tenant().await;
    let gina = app
        .user_with(&t, "Gina", &[GA_GROUP_ADMIN, Role::LmsGroupAdministrator])
        .await
        .id;
    let org = app.organization(&t, "Org").await.id;
    let team = app.subgroup(&t, "Team", &org).await.id;
    app.set_admins(&t, &org, &[&gina]).await.unwrap();
    app.set_admins(&t, &team, &[&gina]).await.unwrap();

    let before = app.revision(&t).await;
    let demote = app
        .client()
        .update_user(update_roles(&t, &gina, &[GA_USER]))
        .await;
    let status = assert_error(demote, Code::FailedPrecondition, None);
    assert_eq!(reason(&status), "STILL_ADMINISTERS_GROUPS");
    assert!(
        status.message().contains(&org) && status.message().contains(&team),
        "{}",
        status.message()
    );
    assert_eq!(app.revision(&t).await, before);
    assert_eq!(
        app.get_user(&t, &gina).await.roles,
        roles(&[GA_GROUP_ADMIN, Role::LmsGroupAdministrator, Role::LmsUser])
    );

    let delete = pb::DeleteUserRequest {
        tenant_id: t.id.clone(),
        user_id: gina.clone(),
        etag: String::new(),
    };
    let status = assert_error(
        app.client().delete_user(delete.clone()).await,
        Code::FailedPrecondition,
        None,
    );
    assert_eq!(reason(&status), "STILL_ADMINISTERS_GROUPS");

    // Other changes that keep eligibility are fine.
    app.client()
        .update_user(update_roles(&t, &gina, &[GA_GROUP_ADMIN, Role::LmsAuthor]))
        .await
        .unwrap();

    app.set_admins(&t, &org, &[]).await.unwrap();
    app.set_admins(&t, &team, &[]).await.unwrap();
    app.client()
        .update_user(update_roles(&t, &gina, &[GA_USER]))
        .await
        .expect("no longer administers anything");
}

async fn the_last_global_admin_is_kept(app: &TestApp) {
    let t = app.tenant().await;
    let admin = t.admin_id.clone();
    let refused = [
        app.client()
            .update_user(update_roles(&t, &admin, &[GA_USER]))
            .await
            .map(|_| ()),
        app.client()
            .suspend_user(pb::SuspendUserRequest {
                tenant_id: t.id.clone(),
                user_id: admin.clone(),
                etag: String::new(),
            })
            .await
            .map(|_| ()),
        app.client()
            .delete_user(pb::DeleteUserRequest {
                tenant_id: t.id.clone(),
                user_id: admin.clone(),
                etag: String::new(),
            })
            .await
            .map(|_| ()),
    ];
    for result in refused {
        assert_eq!(
            reason_and_subjects(&assert_error(result, Code::FailedPrecondition, None)),
            ("LAST_GLOBAL_ADMIN".into(), vec![admin.to_string()])
        );
    }
    let second = app
        .user_with(&t, "Second", &[Role::GlobalAdminAdmin])
        .await
        .id;
    // A suspended admin does not count as one.
    app.client()
        .suspend_user(pb::SuspendUserRequest {
            tenant_id: t.id.clone(),
            user_id: second.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert_error(
        app.client()
            .update_user(update_roles(&t, &admin, &[GA_USER]))
            .await,
        Code::FailedPrecondition,
        None,
    );
    app.client()
        .reactivate_user(pb::ReactivateUserRequest {
            tenant_id: t.id.clone(),
            user_id: second.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    app.client()
        .update_user(update_roles(&t, &admin, &[GA_USER]))
        .await
        .expect("another active admin remains");
}

async fn suspension_is_reversible_and_checked_by_etag(app: &TestApp) {
    let t = app.tenant().await;
    let user = app.user_with(&t, "Sam", &[GA_USER]).await;
    let suspended = app
        .client()
        .suspend_user(pb::SuspendUserRequest {
            tenant_id: t.id.clone(),
            user_id: user.id.clone(),
            etag: user.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        suspended.user.unwrap().state,
        pb::UserState::Suspended as i32
    );
    let stale = app
        .client()
        .reactivate_user(pb::ReactivateUserRequest {
            tenant_id: t.id.clone(),
            user_id: user.id.clone(),
            etag: user.etag.clone(),
        })
        .await;
    assert_error(stale, Code::Aborted, None);
    let active = app
        .client()
        .reactivate_user(pb::ReactivateUserRequest {
            tenant_id: t.id.clone(),
            user_id: user.id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        active.into_inner().user.unwrap().state,
        pb::UserState::Active as i32
    );
}

async fn deleting_a_user_removes_their_memberships(app: &TestApp) {
    let t = app.tenant().await;
    let dan = app.user(&t, "Dan").await;
    let eve = app.user(&t, "Eve").await;
    let org = app.organization(&t, "Org").await.id;
    let team = app.subgroup(&t, "Team", &org).await.id;
    app.add_members(&t, &org, &[&dan, &eve]).await.unwrap();
    app.add_members(&t, &team, &[&dan]).await.unwrap();
    let deleted = app
        .client()
        .delete_user(pb::DeleteUserRequest {
            tenant_id: t.id.clone(),
            user_id: dan.clone(),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.revision, app.revision(&t).await);
    assert_eq!(app.get_group(&t, &org).await.member_count, 1);
    assert_eq!(app.get_group(&t, &team).await.member_count, 0);
    assert_eq!(app.all_members(&t, &org, true).await, vec![eve]);
    let gone = app
        .client()
        .get_user(pb::GetUserRequest {
            tenant_id: t.id.clone(),
            user_id: dan,
        })
        .await;
    assert_error(gone, Code::NotFound, None);
}

async fn user_creation_is_idempotent_by_request_id(app: &TestApp) {
    let t = app.tenant().await;
    let request = pb::CreateUserRequest {
        request_id: "create-ivy".into(),
        ..new_user(&t, "ivy@acme.test", &[GA_USER])
    };
    let first = app
        .client()
        .create_user(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = app
        .client()
        .create_user(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.user.unwrap().id, again.user.unwrap().id);
    assert_eq!(first.revision, again.revision);
    assert_eq!(
        app.revision(&t).await,
        first.revision,
        "the retry wrote nothing"
    );
    let changed = pb::CreateUserRequest {
        email: "ivy2@acme.test".into(),
        ..request
    };
    assert_error(
        app.client().create_user(changed).await,
        Code::InvalidArgument,
        Some("request_id"),
    );
}

/// An update mask (AIP-134) names exactly what changes: fields outside it are
/// ignored even when set, a named field that is not set is cleared (and so
/// refused where empty is invalid), and an unknown path changes nothing.
async fn an_update_mask_names_exactly_the_fields_that_change(app: &TestApp) {
    use prost_types::FieldMask;
    let t = app.tenant().await;
    let user = app.user_with(&t, "Mona", &[GA_USER]).await;
    let mask = |paths: &[&str]| {
        Some(FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        })
    };
    let request = |paths: &[&str]| pb::UpdateUserRequest {
        tenant_id: t.id.clone(),
        user_id: user.id.clone(),
        display_name: Some("Mona L".into()),
        email: Some("mona.l@example.test".into()),
        roles: roles(&[GA_GROUP_ADMIN]),
        update_mask: mask(paths),
        ..Default::default()
    };

    let updated = app
        .client()
        .update_user(request(&["email"]))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(updated.email, "mona.l@example.test");
    assert_eq!(updated.display_name, user.display_name, "not in the mask");
    assert_eq!(updated.roles, user.roles, "not in the mask");

    let before = app.revision(&t).await;
    for (paths, field) in [
        (&["display_name", "nope"][..], "update_mask"),
        (&["roles.roles"][..], "update_mask"),
    ] {
        let refused = app.client().update_user(request(paths)).await;
        assert_error(refused, Code::InvalidArgument, Some(field));
    }
    let cleared = app
        .client()
        .update_user(pb::UpdateUserRequest {
            display_name: None,
            ..request(&["display_name"])
        })
        .await;
    assert_error(cleared, Code::InvalidArgument, Some("display_name"));
    let no_roles = app
        .client()
        .update_user(pb::UpdateUserRequest {
            roles: Vec::new(),
            ..request(&["roles"])
        })
        .await;
    assert_error(no_roles, Code::InvalidArgument, Some("roles"));
    assert_eq!(app.revision(&t).await, before, "refusals change nothing");
    assert_eq!(app.get_user(&t, &user.id).await.display_name, "Mona");

    let all = app
        .client()
        .update_user(request(&["*"]))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(all.display_name, "Mona L");
    assert_eq!(all.roles, roles(&[GA_GROUP_ADMIN]));

    // Groups take a mask the same way: the flag named but not set is cleared.
    let org = app.organization(&t, "Org").await;
    let group = app
        .client()
        .update_group(pb::UpdateGroupRequest {
            tenant_id: t.id.clone(),
            group_id: org.id.clone(),
            display_name: Some("Renamed".into()),
            update_mask: mask(&["is_organization"]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert!(!group.is_organization);
    assert_eq!(group.display_name, "Org");
    let refused = app
        .client()
        .update_group(pb::UpdateGroupRequest {
            tenant_id: t.id.clone(),
            group_id: org.id.clone(),
            update_mask: mask(&["parent_id"]),
            ..Default::default()
        })
        .await;
    assert_error(refused, Code::InvalidArgument, Some("update_mask"));
}

crate::on_both_backends!(
    an_update_mask_names_exactly_the_fields_that_change,
    role_assignments_follow_the_catalog_rules,
    lms_user_comes_with_any_lms_role,
    emails_are_unique_per_tenant_case_insensitively,
    emails_keep_their_case_and_lose_only_surrounding_whitespace,
    unknown_tenants_and_foreign_filters_are_not_found,
    ids_from_another_tenant_are_not_found,
    users_are_filtered_and_paged,
    updates_honour_etags_and_change_only_what_is_given,
    an_administrator_cannot_lose_eligibility_while_administering,
    the_last_global_admin_is_kept,
    suspension_is_reversible_and_checked_by_etag,
    deleting_a_user_removes_their_memberships,
    user_creation_is_idempotent_by_request_id,
);
