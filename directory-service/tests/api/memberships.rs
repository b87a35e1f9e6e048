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

/// A subtree of more groups than one statement reads (the listing reads its
/// groups' members in chunks and merges them): paged, every member once, in
/// id order, whichever groups they are in.
async fn members_of_a_large_subtree_are_listed_once_each_in_order(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(app.user(&t, &format!("U{i}")).await);
    }
    let mut expected = std::collections::BTreeSet::new();
    for g in 0..130 {
        let group = app.subgroup(&t, &format!("G{g}"), &org).await.id;
        // Every seventh group gets members; users overlap across groups.
        if g % 7 == 0 {
            let members: Vec<&str> = users
                .iter()
                .skip(g % 12)
                .take(3)
                .map(String::as_str)
                .collect();
            app.add_members(&t, &group, &members).await.unwrap();
            expected.extend(members.into_iter().map(str::to_owned));
        }
    }
    let listed = app.all_members(&t, &org, true).await;
    assert_eq!(listed, expected.into_iter().collect::<Vec<_>>());
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

/// The groups a user administers are listed like their memberships: by group
/// id, paged, with a token that is bound to the relation asked for.
async fn the_groups_a_user_administers_are_listed(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let team = app.subgroup(&t, "Team", &org).await.id;
    let squad = app.subgroup(&t, "Squad", &team).await.id;
    let admin = app.group_admin(&t, "Admin").await;
    let other = app.group_admin(&t, "Other").await;
    app.set_admins(&t, &squad, &[&admin]).await.unwrap();
    app.set_admins(&t, &org, &[&admin, &other]).await.unwrap();
    app.set_admins(&t, &team, &[&other]).await.unwrap();
    app.add_members(&t, &team, &[&admin]).await.unwrap();

    let list = |user: &str, relation: pb::GroupRelation, page_size: i32, page_token: String| {
        let mut client = app.client();
        let request = pb::ListUserGroupsRequest {
            tenant_id: t.id.clone(),
            user_id: user.to_owned(),
            relation: relation as i32,
            page_size,
            page_token,
        };
        async move {
            client
                .list_user_groups(request)
                .await
                .map(|r| r.into_inner())
        }
    };
    let ids = |groups: &[pb::UserGroup]| -> Vec<String> {
        groups
            .iter()
            .map(|g| g.group.as_ref().unwrap().id.clone())
            .collect()
    };

    let mut administered = [org.clone(), squad.clone()];
    administered.sort();
    let first = list(&admin, pb::GroupRelation::Administrator, 1, String::new())
        .await
        .unwrap();
    assert_eq!(ids(&first.groups), administered[..1]);
    assert!(first.groups.iter().all(|g| g.membership.is_none()));
    assert!(!first.next_page_token.is_empty());
    let second = list(
        &admin,
        pb::GroupRelation::Administrator,
        1,
        first.next_page_token.clone(),
    )
    .await
    .unwrap();
    assert_eq!(ids(&second.groups), administered[1..]);
    assert!(second.next_page_token.is_empty());
    // The administrator counts come with each group.
    let org_listed = first
        .groups
        .iter()
        .chain(&second.groups)
        .find(|g| g.group.as_ref().unwrap().id == org)
        .unwrap();
    assert_eq!(org_listed.group.as_ref().unwrap().administrator_count, 2);

    // Memberships stay the default, and a token is not carried across relations.
    let member = list(&admin, pb::GroupRelation::Unspecified, 0, String::new())
        .await
        .unwrap();
    assert_eq!(ids(&member.groups), std::slice::from_ref(&team));
    let crossed = list(
        &admin,
        pb::GroupRelation::Member,
        1,
        first.next_page_token.clone(),
    )
    .await;
    assert_error(crossed, Code::InvalidArgument, Some("page_token"));

    let mut theirs = [org.clone(), team.clone()];
    theirs.sort();
    let other_groups = list(&other, pb::GroupRelation::Administrator, 0, String::new())
        .await
        .unwrap();
    assert_eq!(ids(&other_groups.groups), theirs);

    let nobody = app.user(&t, "Nobody").await;
    let none = list(&nobody, pb::GroupRelation::Administrator, 0, String::new())
        .await
        .unwrap();
    assert!(none.groups.is_empty() && none.next_page_token.is_empty());
    assert_error(
        list(
            &uuid::Uuid::now_v7().to_string(),
            pb::GroupRelation::Administrator,
            0,
            String::new(),
        )
        .await,
        Code::NotFound,
        None,
    );
    let mut unknown = app.client();
    assert_error(
        unknown
            .list_user_groups(pb::ListUserGroupsRequest {
                tenant_id: t.id.clone(),
                user_id: admin.clone(),
                relation: 9,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        Some("relation"),
    );
    // Another tenant's user is not found, administrator or not.
    let foreign = app.tenant().await;
    let mut client = app.client();
    assert_error(
        client
            .list_user_groups(pb::ListUserGroupsRequest {
                tenant_id: foreign.id.clone(),
                user_id: admin.clone(),
                relation: pb::GroupRelation::Administrator as i32,
                ..Default::default()
            })
            .await,
        Code::NotFound,
        None,
    );
}

/// A group's members counted down to none again: adding members judges each
/// as new from the count (no probe), and the one already back is not added twice.
async fn a_group_emptied_again_takes_its_members_back(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let (a, b) = (app.user(&t, "A").await, app.user(&t, "B").await);
    app.add_members(&t, &org, &[&a, &b]).await.unwrap();
    app.client()
        .remove_group_members(pb::RemoveGroupMembersRequest {
            tenant_id: t.id.clone(),
            group_id: org.clone(),
            user_ids: vec![a.clone(), b.clone()],
        })
        .await
        .unwrap();
    assert_eq!(app.get_group(&t, &org).await.member_count, 0);
    let back = app.add_members(&t, &org, &[&a]).await.unwrap();
    assert_eq!(back.added_user_ids, vec![a.clone()]);
    let again = app.add_members(&t, &org, &[&a, &b]).await.unwrap();
    assert_eq!(again.added_user_ids, vec![b.clone()]);
    assert_eq!(app.get_group(&t, &org).await.member_count, 2);
    let mut ab = vec![a, b];
    ab.sort();
    let mut members = app.all_members(&t, &org, false).await;
    members.sort();
    assert_eq!(members, ab);
}

/// A server remembers the users it created or found (PostgreSQL's
/// `known_users`); one deleted through another server on the same database is
/// not found by it afterwards, and gains no membership.
#[tokio::test]
async fn a_user_deleted_through_another_replica_is_not_found_when_added() {
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await;
    let replica = crate::helpers::spawn_replica(&app, Default::default()).await;
    let t = app.tenant().await;
    let (first, second) = (
        app.organization(&t, "First").await.id,
        app.organization(&t, "Second").await.id,
    );
    let (gone, kept) = (app.user(&t, "Gone").await, app.user(&t, "Kept").await);
    // This server now knows both: it created them, and found them again here.
    app.add_members(&t, &first, &[&gone, &kept]).await.unwrap();
    replica
        .client()
        .delete_user(pb::DeleteUserRequest {
            tenant_id: t.id.clone(),
            user_id: gone.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let before = app.revision(&t).await;
    let status = assert_error(
        app.add_members(&t, &second, &[&kept, &gone]).await,
        Code::NotFound,
        None,
    );
    assert!(status.message().contains(&gone), "{status:?}");
    assert_eq!(app.revision(&t).await, before, "nothing written");
    assert_eq!(
        app.count_rows("memberships", &format!("user_id = '{gone}'"))
            .await,
        0
    );
    // The user still there is still added.
    let added = app.add_members(&t, &second, &[&kept]).await.unwrap();
    assert_eq!(added.added_user_ids, vec![kept.clone()]);
    replica.cleanup().await;
    app.cleanup().await;
}

/// A group of many members against the ids asked (PostgreSQL probes each id) and
/// of few (it reads the group's member list): either way a member already there is
/// left as it is, and a new one is added.
async fn members_are_judged_alike_in_large_and_small_groups(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(app.user(&t, &format!("U{i}")).await);
    }
    let refs: Vec<&str> = users[..10].iter().map(String::as_str).collect();
    app.add_members(&t, &org, &refs).await.unwrap();
    let before = app.revision(&t).await;
    // 10 members, 1 id asked: probed.
    let again = app.add_members(&t, &org, &[&users[3]]).await.unwrap();
    assert!(again.added_user_ids.is_empty());
    assert_eq!(again.revision, before);
    let added = app.add_members(&t, &org, &[&users[10]]).await.unwrap();
    assert_eq!(added.added_user_ids, vec![users[10].clone()]);
    // 11 members, 3 ids asked: listed.
    let mixed = app
        .add_members(&t, &org, &[&users[0], &users[11], &users[10]])
        .await
        .unwrap();
    assert_eq!(mixed.added_user_ids, vec![users[11].clone()]);
    assert_eq!(app.get_group(&t, &org).await.member_count, 12);
}

crate::on_both_backends!(
    members_are_judged_alike_in_large_and_small_groups,
    a_group_emptied_again_takes_its_members_back,
    the_groups_a_user_administers_are_listed,
    deleted_users_and_groups_leave_no_membership_behind,
    members_are_added_and_removed_in_batches,
    a_batch_with_one_bad_id_adds_nobody,
    members_are_listed_with_or_without_subgroups,
    members_of_a_large_subtree_are_listed_once_each_in_order,
);
