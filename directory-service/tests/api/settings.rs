//! Inherited roles per group and tool, and catalog assignments on organizations.

use catalog_pb::{Role, Tool};
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use tonic::Code;

use crate::helpers::{assert_error, reason_and_subjects, TestApp};

async fn inherited_roles_are_set_per_tool_and_cleared(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let set = |role: Role| pb::SetInheritedRoleRequest {
        tenant_id: t.id.clone(),
        group_id: org.clone(),
        role: role as i32,
        etag: String::new(),
    };
    app.client()
        .set_inherited_role(set(Role::LmsValidator))
        .await
        .unwrap();
    app.client()
        .set_inherited_role(set(Role::ShareAuthor))
        .await
        .unwrap();
    let replaced = app
        .client()
        .set_inherited_role(set(Role::LmsGroupAdministrator))
        .await
        .unwrap()
        .into_inner();
    let inherited = replaced.group.unwrap().inherited_roles;
    assert_eq!(
        inherited,
        vec![
            pb::InheritedRole {
                tool: Tool::Lms as i32,
                role: Role::LmsGroupAdministrator as i32
            },
            pb::InheritedRole {
                tool: Tool::Share as i32,
                role: Role::ShareAuthor as i32
            },
        ],
        "one role per tool; a new one replaces the old"
    );

    let cleared = app
        .client()
        .clear_inherited_role(pb::ClearInheritedRoleRequest {
            tenant_id: t.id.clone(),
            group_id: org.clone(),
            tool: Tool::Share as i32,
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleared.group.unwrap().inherited_roles.len(), 1);

    let before = app.revision(&t).await;
    assert_error(
        app.client()
            .set_inherited_role(set(Role::Unspecified))
            .await,
        Code::InvalidArgument,
        Some("role"),
    );
    let no_tool = pb::ClearInheritedRoleRequest {
        tenant_id: t.id.clone(),
        group_id: org.clone(),
        tool: 0,
        etag: String::new(),
    };
    assert_error(
        app.client().clear_inherited_role(no_tool).await,
        Code::InvalidArgument,
        Some("tool"),
    );
    let stale = pb::SetInheritedRoleRequest {
        etag: "1".into(),
        ..set(Role::LmsAuthor)
    };
    assert_error(
        app.client().set_inherited_role(stale).await,
        Code::Aborted,
        None,
    );
    assert_eq!(app.revision(&t).await, before);
}

async fn catalogs_are_assigned_to_organizations_only(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let team = app.subgroup(&t, "Team", &org).await.id;
    let assign = |group: &str, catalog: &str| pb::AssignCatalogRequest {
        tenant_id: t.id.clone(),
        group_id: group.into(),
        catalog_id: catalog.into(),
    };

    let first = app
        .client()
        .assign_catalog(assign(&org, "cat-b"))
        .await
        .unwrap()
        .into_inner();
    app.client()
        .assign_catalog(assign(&org, "cat-a"))
        .await
        .unwrap();
    let before = app.revision(&t).await;
    let again = app
        .client()
        .assign_catalog(assign(&org, "cat-b"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.assignment, first.assignment,
        "assigning twice is one assignment"
    );
    assert_eq!(again.revision, before);

    let status = assert_error(
        app.client().assign_catalog(assign(&team, "cat-c")).await,
        Code::FailedPrecondition,
        None,
    );
    assert_eq!(
        reason_and_subjects(&status),
        ("NOT_AN_ORGANIZATION".into(), vec![team.to_string()])
    );
    assert_error(
        app.client().assign_catalog(assign(&org, "has space")).await,
        Code::InvalidArgument,
        Some("catalog_id"),
    );

    let listed = app
        .client()
        .list_catalog_assignments(pb::ListCatalogAssignmentsRequest {
            tenant_id: t.id.clone(),
            group_id: org.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.assignments[0].catalog_id, "cat-a");
    let rest = app
        .client()
        .list_catalog_assignments(pb::ListCatalogAssignmentsRequest {
            tenant_id: t.id.clone(),
            group_id: org.clone(),
            page_size: 1,
            page_token: listed.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.assignments[0].catalog_id, "cat-b");
    assert!(rest.next_page_token.is_empty());

    let unassign = |catalog: &str| pb::UnassignCatalogRequest {
        tenant_id: t.id.clone(),
        group_id: org.clone(),
        catalog_id: catalog.into(),
    };
    app.client()
        .unassign_catalog(unassign("cat-a"))
        .await
        .unwrap();
    assert_error(
        app.client().unassign_catalog(unassign("cat-a")).await,
        Code::NotFound,
        None,
    );
}

async fn inherited_roles_can_be_given_when_a_group_is_created(app: &TestApp) {
    let t = app.tenant().await;
    let create = |name: &str, roles: &[i32]| pb::CreateGroupRequest {
        tenant_id: t.id.clone(),
        display_name: name.into(),
        is_organization: true,
        inherited_roles: roles.to_vec(),
        ..Default::default()
    };
    let created = app
        .client()
        .create_group(create(
            "Given",
            &[Role::ShareConsumer as i32, Role::LmsTeacher as i32],
        ))
        .await
        .unwrap()
        .into_inner();
    let group = created.group.unwrap();
    let expected = vec![
        pb::InheritedRole {
            tool: Tool::Lms as i32,
            role: Role::LmsTeacher as i32,
        },
        pb::InheritedRole {
            tool: Tool::Share as i32,
            role: Role::ShareConsumer as i32,
        },
    ];
    assert_eq!(group.inherited_roles, expected, "kept in tool order");
    assert_eq!(
        app.get_group(&t, &group.id).await.inherited_roles,
        expected,
        "stored with the group"
    );
    assert_eq!(app.revision(&t).await, created.revision, "in the one write");

    let before = app.revision(&t).await;
    let two_of_a_tool = create(
        "Twice",
        &[
            Role::LmsTeacher as i32,
            Role::ShareAuthor as i32,
            Role::LmsValidator as i32,
        ],
    );
    let status = assert_error(
        app.client().create_group(two_of_a_tool).await,
        Code::InvalidArgument,
        Some("inherited_roles[2]"),
    );
    assert!(
        status.message().contains("LMS"),
        "names the tool: {status:?}"
    );
    assert_error(
        app.client()
            .create_group(create("Unknown", &[Role::Unspecified as i32]))
            .await,
        Code::InvalidArgument,
        Some("inherited_roles[0]"),
    );
    assert_error(
        app.client()
            .create_group(create("Unknown", &[Role::LmsTeacher as i32, 999]))
            .await,
        Code::InvalidArgument,
        Some("inherited_roles[1]"),
    );
    assert_eq!(
        app.revision(&t).await,
        before,
        "a refused create writes nothing"
    );
}

crate::on_both_backends!(
    inherited_roles_can_be_given_when_a_group_is_created,
    inherited_roles_are_set_per_tool_and_cleared,
    catalogs_are_assigned_to_organizations_only
);
