//! Tenant isolation: unknown tenants and another tenant's ids are NOT_FOUND,
//! naming what was not found.

use super::*;

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

crate::on_both_backends!(
    unknown_tenants_and_foreign_filters_are_not_found,
    ids_from_another_tenant_are_not_found,
);
