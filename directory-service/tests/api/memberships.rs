//! Memberships: many at once, all or nothing, idempotent, counted, listed with
//! subgroups, and per user.

use cohort_shared::proto::directory::v1 as pb;
use tonic::Code;

use crate::helpers::{assert_error, TestApp};

async fn members_are_added_and_removed_in_batches(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let a = app.user(&t, "A").await;
    let b = app.user(&t, "B").await;
    let c = app.user(&t, "C").await;

    let added = app.add_members(&t, &org, &[&a, &b, &a]).await.unwrap();
    let mut ab = vec![a.clone(), b.clone()];
    ab.sort();
    assert_eq!(added.added_user_ids, ab);
    let again = app.add_members(&t, &org, &[&b, &c]).await.unwrap();
    assert_eq!(
        again.added_user_ids,
        vec![c.clone()],
        "existing members are left as they are"
    );
    assert_eq!(app.get_group(&t, &org).await.member_count, 3);

    let before = app.revision(&t).await;
    let nothing_new = app.add_members(&t, &org, &[&a]).await.unwrap();
    assert!(nothing_new.added_user_ids.is_empty());
    assert_eq!(nothing_new.revision, before, "no change, no new revision");

    let removed = app
        .client()
        .remove_group_members(pb::RemoveGroupMembersRequest {
            tenant_id: t.id.clone(),
            group_id: org.clone(),
            user_ids: vec![a.clone(), a.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.removed_user_ids, vec![a.clone()]);
    assert_eq!(app.get_group(&t, &org).await.member_count, 2);
}

async fn a_batch_with_one_bad_id_adds_nobody(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let a = app.user(&t, "A").await;
    let before = app.revision(&t).await;
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_error(
        app.add_members(&t, &org, &[&a, &unknown]).await,
        Code::NotFound,
        None,
    );
    assert_error(
        app.add_members(&t, &org, &[&a, "bad"]).await,
        Code::InvalidArgument,
        Some("user_ids[1]"),
    );
    let too_many: Vec<String> = (0..1001)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let refs: Vec<&str> = too_many.iter().map(String::as_str).collect();
    assert_error(
        app.add_members(&t, &org, &refs).await,
        Code::InvalidArgument,
        Some("user_ids"),
    );
    assert_error(
        app.add_members(&t, &uuid::Uuid::now_v7().to_string(), &[&a])
            .await,
        Code::NotFound,
        None,
    );
    assert_eq!(app.revision(&t).await, before);
    assert_eq!(app.get_group(&t, &org).await.member_count, 0);
}

async fn members_are_listed_with_or_without_subgroups(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let team = app.subgroup(&t, "Team", &org).await.id;
    let squad = app.subgroup(&t, "Squad", &team).await.id;
    let a = app.user(&t, "A").await;
    let b = app.user(&t, "B").await;
    let c = app.user(&t, "C").await;
    let d = app.user(&t, "D").await;
    app.add_members(&t, &org, &[&a]).await.unwrap();
    app.add_members(&t, &team, &[&a, &b]).await.unwrap();
    app.add_members(&t, &squad, &[&b, &c]).await.unwrap();
    let _ = d;

    let mut everyone = vec![a.clone(), b.clone(), c.clone()];
    everyone.sort();
    assert_eq!(
        app.all_members(&t, &org, true).await,
        everyone,
        "each user once, across the subtree"
    );
    assert_eq!(app.all_members(&t, &org, false).await, vec![a.clone()]);
    let mut team_all = vec![a.clone(), b.clone(), c.clone()];
    team_all.sort();
    assert_eq!(app.all_members(&t, &team, true).await, team_all);

    let groups = app
        .client()
        .list_user_groups(pb::ListUserGroupsRequest {
            tenant_id: t.id.clone(),
            user_id: b.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    let mut expected = vec![team.clone(), squad.clone()];
    expected.sort();
    assert_eq!(
        groups
            .iter()
            .map(|g| g.group.as_ref().unwrap().id.clone())
            .collect::<Vec<_>>(),
        expected
    );
    assert!(groups
        .iter()
        .all(|g| g.membership.as_ref().unwrap().join_revision > 0));

    let unknown_user = app
        .client()
        .list_user_groups(pb::ListUserGroupsRequest {
            tenant_id: t.id.clone(),
            user_id: uuid::Uuid::now_v7().to_string(),
            ..Default::default()
        })
        .await;
    assert_error(unknown_user, Code::NotFound, None);
}

/// Deleting a user or a group deletes its memberships with it (on PostgreSQL no
/// foreign key cascades them: the write does).
async fn deleted_users_and_groups_leave_no_membership_behind(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let team = app.subgroup(&t, "Team", &org).await.id;
    let squad = app.subgroup(&t, "Squad", &team).await.id;
    let a = app.user(&t, "A").await;
    let b = app.user(&t, "B").await;
    for group in [&org, &team, &squad] {
        app.add_members(&t, group, &[&a, &b]).await.unwrap();
    }
    let of = |column: &str, id: &str| match app.backend {
        crate::helpers::Backend::Postgres => format!("{column} = '{id}'"),
        crate::helpers::Backend::Sqlite => format!("{column} = x'{}'", id.replace('-', "")),
    };
    assert_eq!(app.count_rows("memberships", &of("user_id", &a)).await, 3);

    app.client()
        .delete_user(pb::DeleteUserRequest {
            tenant_id: t.id.clone(),
            user_id: a.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(app.count_rows("memberships", &of("user_id", &a)).await, 0);
    assert_eq!(app.get_group(&t, &squad).await.member_count, 1);

    app.client()
        .delete_group(pb::DeleteGroupRequest {
            tenant_id: t.id.clone(),
            group_id: team.clone(),
            cascade: true,
            etag: String::new(),
        })
        .await
        .unwrap();
    for group in [&team, &squad] {
        assert_eq!(
            app.count_rows("memberships", &of("group_id", group)).await,
            0
        );
    }
    assert_eq!(
        app.count_rows("memberships", &of("user_id", &b)).await,
        1,
        "the organization's membership stays"
    );
}

crate::on_both_backends!(
    deleted_users_and_groups_leave_no_membership_behind,
    members_are_added_and_removed_in_batches,
    a_batch_with_one_bad_id_adds_nobody,
    members_are_listed_with_or_without_subgroups,
);
