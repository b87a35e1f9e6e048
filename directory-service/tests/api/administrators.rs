//! Group administrators: eligibility (Global Admin GROUP_ADMINISTRATOR only), set,
//! add, remove, list; administrators are part of the group without being members.

use cohort_shared::proto::directory::v1 as pb;
use tonic::Code;

use crate::helpers::{assert_error, reason, TestApp};

async fn only_global_admin_group_administrators_are_eligible(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await;
    let gina = app.group_admin(&t, "Gina").await;
    let plain = app.user(&t, "Plain").await;
    let before = app.revision(&t).await;

    for candidates in [
        vec![plain.as_str()],
        vec![gina.as_str(), plain.as_str()],
        vec![t.admin_id.as_str()],
    ] {
        let status = assert_error(
            app.set_admins(&t, &org.id, &candidates).await,
            Code::FailedPrecondition,
            None,
        );
        assert_eq!(reason(&status), "NOT_ELIGIBLE_AS_ADMINISTRATOR");
    }
    let add = app
        .client()
        .add_group_administrators(pb::AddGroupAdministratorsRequest {
            tenant_id: t.id.clone(),
            group_id: org.id.clone(),
            user_ids: vec![plain],
        })
        .await;
    assert_error(add, Code::FailedPrecondition, None);
    assert_eq!(app.revision(&t).await, before, "no partial write");
    assert_eq!(app.get_group(&t, &org.id).await.administrator_count, 0);

    let unknown = app
        .set_admins(&t, &org.id, &[&uuid::Uuid::now_v7().to_string()])
        .await;
    assert_error(unknown, Code::NotFound, None);
    assert_error(
        app.set_admins(&t, &org.id, &["nope"]).await,
        Code::InvalidArgument,
        Some("user_ids[0]"),
    );
}

async fn administrators_are_set_added_removed_and_listed(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await;
    let a = app.group_admin(&t, "Ann").await;
    let b = app.group_admin(&t, "Ben").await;
    let c = app.group_admin(&t, "Cid").await;
    let mut sorted = vec![a.clone(), b.clone()];
    sorted.sort();

    assert_eq!(
        app.set_admins(&t, &org.id, &[&b, &a, &a]).await.unwrap(),
        sorted
    );
    let added = app
        .client()
        .add_group_administrators(pb::AddGroupAdministratorsRequest {
            tenant_id: t.id.clone(),
            group_id: org.id.clone(),
            user_ids: vec![c.clone(), a.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.administrator_ids.len(), 3);
    let removed = app
        .client()
        .remove_group_administrators(pb::RemoveGroupAdministratorsRequest {
            tenant_id: t.id.clone(),
            group_id: org.id.clone(),
            user_ids: vec![a.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!removed.administrator_ids.contains(&a));
    assert_eq!(removed.revision, app.revision(&t).await);

    let group = app.get_group(&t, &org.id).await;
    assert_eq!(group.administrator_count, 2);
    assert_eq!(group.member_count, 0, "administrators are not members");
    assert!(app.all_members(&t, &org.id, true).await.is_empty());

    let listed = app
        .client()
        .list_group_administrators(pb::ListGroupAdministratorsRequest {
            tenant_id: t.id.clone(),
            group_id: org.id.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.users.len(), 1);
    assert!(!listed.next_page_token.is_empty());

    // A set with a stale etag changes nothing.
    let stale = pb::SetGroupAdministratorsRequest {
        tenant_id: t.id.clone(),
        group_id: org.id.clone(),
        user_ids: vec![],
        etag: org.etag.clone(),
    };
    assert_error(
        app.client().set_group_administrators(stale).await,
        Code::Aborted,
        None,
    );
    assert_eq!(app.get_group(&t, &org.id).await.administrator_count, 2);
    // Setting the same set again is not a change.
    let before = app.revision(&t).await;
    let mut current = vec![b.clone(), c.clone()];
    current.sort();
    let same = app.set_admins(&t, &org.id, &[&c, &b]).await.unwrap();
    assert_eq!(same, current);
    assert_eq!(app.revision(&t).await, before);
}

crate::on_both_backends!(
    only_global_admin_group_administrators_are_eligible,
    administrators_are_set_added_removed_and_listed
);
