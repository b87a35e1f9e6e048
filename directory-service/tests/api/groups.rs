//! Groups and organizations: the flag (top-level only, toggled at will), sibling
//! names, moves without cycles, deletion with and without cascade, listings.
//!
//! One file on purpose: each rule of the group tree is tried here once, next to
//! the others it interacts with (a move is refused by the same cycle and nesting
//! rules that a create is).

use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use tonic::Code;

use crate::helpers::{assert_error, reason, reason_and_subjects, Tenant, TestApp};

fn update_flag(t: &Tenant, group: &str, flag: bool) -> pb::UpdateGroupRequest {
    pb::UpdateGroupRequest {
        tenant_id: t.id.clone(),
        group_id: group.into(),
        is_organization: Some(flag),
        ..Default::default()
    }
}

fn move_request(t: &Tenant, group: &str, parent: &str) -> pb::MoveGroupRequest {
    pb::MoveGroupRequest {
        tenant_id: t.id.clone(),
        group_id: group.into(),
        new_parent_id: parent.into(),
        etag: String::new(),
    }
}

fn delete_request(t: &Tenant, group: &str, cascade: bool) -> pb::DeleteGroupRequest {
    pb::DeleteGroupRequest {
        tenant_id: t.id.clone(),
        group_id: group.into(),
        cascade,
        etag: String::new(),
    }
}

async fn organizations_are_top_level_groups_with_the_flag(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await;
    assert!(org.is_organization);
    assert!(org.parent_id.is_empty());
    let team = app.subgroup(&t, "Team", &org.id).await;
    assert!(!team.is_organization);
    assert_eq!(team.parent_id, org.id);
    assert_eq!(app.get_group(&t, &org.id).await.subgroup_count, 1);

    let before = app.revision(&t).await;
    let nested_org = pb::CreateGroupRequest {
        tenant_id: t.id.clone(),
        display_name: "Nested".into(),
        parent_id: org.id.clone(),
        is_organization: true,
        request_id: String::new(),
        inherited_roles: Vec::new(),
    };
    assert_error(
        app.client().create_group(nested_org).await,
        Code::InvalidArgument,
        Some("is_organization"),
    );
    let flag_on_subgroup = app
        .client()
        .update_group(update_flag(&t, &team.id, true))
        .await;
    assert_eq!(
        reason_and_subjects(&assert_error(
            flag_on_subgroup,
            Code::FailedPrecondition,
            None
        )),
        ("NOT_TOP_LEVEL".into(), vec![team.id.clone()])
    );
    assert_eq!(app.revision(&t).await, before);

    let unknown_parent = pb::CreateGroupRequest {
        tenant_id: t.id.clone(),
        display_name: "Orphan".into(),
        parent_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    };
    assert_error(
        app.client().create_group(unknown_parent).await,
        Code::NotFound,
        None,
    );
    let bad_parent = pb::CreateGroupRequest {
        tenant_id: t.id.clone(),
        display_name: "X".into(),
        parent_id: "x".into(),
        ..Default::default()
    };
    assert_error(
        app.client().create_group(bad_parent).await,
        Code::InvalidArgument,
        Some("parent_id"),
    );
}

async fn the_flag_toggles_and_keeps_what_is_attached(app: &TestApp) {
    let t = app.tenant().await;
    let plain = app.create_top_level(&t, "Plain").await;
    assert!(!plain.is_organization);
    let gina = app.group_admin(&t, "Gina").await;
    let member = app.user(&t, "Mo").await;
    let on = app
        .client()
        .update_group(update_flag(&t, &plain.id, true))
        .await
        .unwrap()
        .into_inner();
    assert!(
        on.group.unwrap().is_organization,
        "a group created without the flag can be turned into an organization"
    );
    app.set_admins(&t, &plain.id, &[&gina]).await.unwrap();
    app.add_members(&t, &plain.id, &[&member]).await.unwrap();
    app.client()
        .assign_catalog(pb::AssignCatalogRequest {
            tenant_id: t.id.clone(),
            group_id: plain.id.clone(),
            catalog_id: "cat-1".into(),
        })
        .await
        .unwrap();

    let off = app
        .client()
        .update_group(update_flag(&t, &plain.id, false))
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert!(!off.is_organization);
    assert_eq!(off.member_count, 1);
    assert_eq!(off.administrator_count, 1);
    let catalogs = app
        .client()
        .list_catalog_assignments(pb::ListCatalogAssignmentsRequest {
            tenant_id: t.id.clone(),
            group_id: plain.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        catalogs.assignments.len(),
        1,
        "turning the flag off keeps catalog assignments"
    );
    assert!(!catalogs.active);
    app.client()
        .update_group(update_flag(&t, &plain.id, true))
        .await
        .unwrap();
    let catalogs = app
        .client()
        .list_catalog_assignments(pb::ListCatalogAssignmentsRequest {
            tenant_id: t.id.clone(),
            group_id: plain.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(catalogs.active);
}

async fn sibling_names_are_unique_case_insensitively(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let other = app.organization(&t, "Other").await.id;
    app.subgroup(&t, "Sales", &org).await;
    let dup = pb::CreateGroupRequest {
        tenant_id: t.id.clone(),
        display_name: "SALES".into(),
        parent_id: org.clone(),
        ..Default::default()
    };
    assert_error(
        app.client().create_group(dup).await,
        Code::AlreadyExists,
        Some("display_name"),
    );
    let top_dup = pb::CreateGroupRequest {
        tenant_id: t.id.clone(),
        display_name: "org".into(),
        ..Default::default()
    };
    assert_error(
        app.client().create_group(top_dup).await,
        Code::AlreadyExists,
        Some("display_name"),
    );
    let sales_elsewhere = app.subgroup(&t, "Sales", &other).await.id;
    let collide = app
        .client()
        .move_group(move_request(&t, &sales_elsewhere, &org))
        .await;
    assert_error(collide, Code::AlreadyExists, Some("display_name"));
    let rename = pb::UpdateGroupRequest {
        tenant_id: t.id.clone(),
        group_id: other.clone(),
        display_name: Some("ORG".into()),
        ..Default::default()
    };
    assert_error(
        app.client().update_group(rename).await,
        Code::AlreadyExists,
        Some("display_name"),
    );
}

async fn moves_never_create_cycles_or_nest_organizations(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let a = app.subgroup(&t, "A", &org).await.id;
    let b = app.subgroup(&t, "B", &a).await.id;
    let c = app.subgroup(&t, "C", &b).await.id;
    let before = app.revision(&t).await;

    for target in [&a, &b, &c] {
        let status = assert_error(
            app.client().move_group(move_request(&t, &a, target)).await,
            Code::FailedPrecondition,
            None,
        );
        assert_eq!(reason(&status), "WOULD_CREATE_CYCLE");
    }
    let other_org = app.organization(&t, "Other").await.id;
    let nest = app
        .client()
        .move_group(move_request(&t, &other_org, &c))
        .await;
    assert_eq!(
        reason_and_subjects(&assert_error(nest, Code::FailedPrecondition, None)),
        (
            "ORGANIZATION_CANNOT_BE_NESTED".into(),
            vec![other_org.clone()]
        )
    );
    assert_eq!(
        app.revision(&t).await,
        before + 1,
        "only the Other organization was created"
    );
    assert_eq!(app.get_group(&t, &a).await.parent_id, org);

    // B moves up to the organization; C comes with it.
    let moved = app
        .client()
        .move_group(move_request(&t, &b, &org))
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert_eq!(moved.parent_id, org);
    assert_eq!(app.get_group(&t, &org).await.subgroup_count, 2);
    assert_eq!(app.get_group(&t, &a).await.subgroup_count, 0);
    assert_eq!(app.get_group(&t, &c).await.parent_id, b);

    // A subgroup can become top-level (without the flag), then an organization.
    let top = app
        .client()
        .move_group(move_request(&t, &a, ""))
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap();
    assert!(top.parent_id.is_empty() && !top.is_organization);
    assert_eq!(app.get_group(&t, &org).await.subgroup_count, 1);
    app.client()
        .update_group(update_flag(&t, &a, true))
        .await
        .unwrap();

    // A flag-off top-level group still holding catalogs cannot become a subgroup.
    app.client()
        .assign_catalog(pb::AssignCatalogRequest {
            tenant_id: t.id.clone(),
            group_id: a.clone(),
            catalog_id: "c1".into(),
        })
        .await
        .unwrap();
    app.client()
        .update_group(update_flag(&t, &a, false))
        .await
        .unwrap();
    let with_catalogs = app.client().move_group(move_request(&t, &a, &org)).await;
    assert_eq!(
        reason_and_subjects(&assert_error(with_catalogs, Code::FailedPrecondition, None)),
        ("HAS_CATALOG_ASSIGNMENTS".into(), vec![a.to_string()])
    );

    let unknown = app
        .client()
        .move_group(move_request(&t, &b, &uuid::Uuid::now_v7().to_string()))
        .await;
    assert_error(unknown, Code::NotFound, None);
    let stale = pb::MoveGroupRequest {
        etag: "1".into(),
        ..move_request(&t, &b, "")
    };
    assert_error(app.client().move_group(stale).await, Code::Aborted, None);
}

async fn deletion_is_refused_for_non_empty_groups_unless_cascading(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let team = app.subgroup(&t, "Team", &org).await.id;
    let squad = app.subgroup(&t, "Squad", &team).await.id;
    let gina = app.group_admin(&t, "Gina").await;
    let mo = app.user(&t, "Mo").await;
    app.add_members(&t, &squad, &[&mo]).await.unwrap();
    app.set_admins(&t, &team, &[&gina]).await.unwrap();

    let before = app.revision(&t).await;
    for group in [&org, &team, &squad] {
        let status = assert_error(
            app.client()
                .delete_group(delete_request(&t, group, false))
                .await,
            Code::FailedPrecondition,
            None,
        );
        assert_eq!(
            reason_and_subjects(&status),
            ("GROUP_NOT_EMPTY".into(), vec![group.to_string()])
        );
    }
    assert_eq!(app.revision(&t).await, before);

    let deleted = app
        .client()
        .delete_group(delete_request(&t, &team, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted_group_ids, vec![team.clone(), squad.clone()]);
    assert_eq!(app.get_group(&t, &org).await.subgroup_count, 0);
    for gone in [&team, &squad] {
        let get = app
            .client()
            .get_group(pb::GetGroupRequest {
                tenant_id: t.id.clone(),
                group_id: gone.to_string(),
            })
            .await;
        assert_error(get, Code::NotFound, None);
    }
    let groups = app
        .client()
        .list_user_groups(pb::ListUserGroupsRequest {
            tenant_id: t.id.clone(),
            user_id: mo.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert!(groups.is_empty(), "memberships went with the groups");
    // Gina no longer administers anything, so she can be demoted.
    let demote = pb::UpdateUserRequest {
        tenant_id: t.id.clone(),
        user_id: gina,
        roles: vec![catalog_pb::Role::GlobalAdminUser as i32],
        ..Default::default()
    };
    app.client()
        .update_group(update_flag(&t, &org, true))
        .await
        .unwrap();
    app.client().update_user(demote).await.unwrap();
    app.client()
        .delete_group(delete_request(&t, &org, false))
        .await
        .expect("an empty group deletes without cascade");
}

async fn groups_are_listed_with_their_counts(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Acme Org").await.id;
    let plain = app.create_top_level(&t, "Plain top").await.id;
    let team = app.subgroup(&t, "Team one", &org).await.id;
    let team2 = app.subgroup(&t, "Team two", &org).await.id;
    let mo = app.user(&t, "Mo").await;
    let jo = app.user(&t, "Jo").await;
    app.add_members(&t, &org, &[&mo, &jo]).await.unwrap();

    let list = |req: pb::ListGroupsRequest| {
        let mut client = app.client();
        async move { client.list_groups(req).await.map(|r| r.into_inner().groups) }
    };
    let base = pb::ListGroupsRequest {
        tenant_id: t.id.clone(),
        ..Default::default()
    };
    let all = list(base.clone()).await.unwrap();
    assert_eq!(
        all.iter().map(|g| g.id.clone()).collect::<Vec<_>>(),
        vec![org.clone(), plain.clone(), team.clone(), team2.clone()]
    );
    let org_row = &all[0];
    assert_eq!(
        (
            org_row.subgroup_count,
            org_row.member_count,
            org_row.is_organization
        ),
        (2, 2, true)
    );

    let ids = |groups: Vec<pb::Group>| groups.into_iter().map(|g| g.id).collect::<Vec<_>>();
    assert_eq!(
        ids(list(pb::ListGroupsRequest {
            parent_id: org.clone(),
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![team.clone(), team2.clone()]
    );
    assert_eq!(
        ids(list(pb::ListGroupsRequest {
            top_level_only: true,
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![org.clone(), plain.clone()]
    );
    assert_eq!(
        ids(list(pb::ListGroupsRequest {
            organizations_only: true,
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![org.clone()]
    );
    assert_eq!(
        ids(list(pb::ListGroupsRequest {
            query: "TEAM".into(),
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![team.clone(), team2]
    );
    assert_error(
        list(pb::ListGroupsRequest {
            query: "te\0am".into(),
            ..base.clone()
        })
        .await,
        Code::InvalidArgument,
        Some("query"),
    );
    let both = list(pb::ListGroupsRequest {
        parent_id: org,
        top_level_only: true,
        ..base.clone()
    })
    .await;
    assert_error(both, Code::InvalidArgument, Some("top_level_only"));

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client()
            .list_groups(pb::ListGroupsRequest {
                page_size: 3,
                page_token: token,
                ..base.clone()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.groups.into_iter().map(|g| g.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 4);
}

async fn group_creation_is_idempotent_by_request_id(app: &TestApp) {
    let t = app.tenant().await;
    let request = pb::CreateGroupRequest {
        tenant_id: t.id.clone(),
        display_name: "Once".into(),
        request_id: "group-once".into(),
        is_organization: true,
        ..Default::default()
    };
    let first = app
        .client()
        .create_group(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = app
        .client()
        .create_group(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.group.unwrap().id, again.group.unwrap().id);
    assert_eq!(app.revision(&t).await, first.revision);
}

crate::on_both_backends!(
    organizations_are_top_level_groups_with_the_flag,
    the_flag_toggles_and_keeps_what_is_attached,
    sibling_names_are_unique_case_insensitively,
    moves_never_create_cycles_or_nest_organizations,
    deletion_is_refused_for_non_empty_groups_unless_cascading,
    groups_are_listed_with_their_counts,
    group_creation_is_idempotent_by_request_id,
);
