//! Updates: etags, update masks, suspension.

use super::*;

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
    updates_honour_etags_and_change_only_what_is_given,
    suspension_is_reversible_and_checked_by_etag,
    an_update_mask_names_exactly_the_fields_that_change,
);
