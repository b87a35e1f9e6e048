//! The rules that refuse or shape a change to a user: administrators stay
//! eligible, the last Global Admin ADMIN stays, deletion takes memberships with
//! it, creation is idempotent by request id.

use super::*;

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

crate::on_both_backends!(
    an_administrator_cannot_lose_eligibility_while_administering,
    the_last_global_admin_is_kept,
    deleting_a_user_removes_their_memberships,
    user_creation_is_idempotent_by_request_id,
);
