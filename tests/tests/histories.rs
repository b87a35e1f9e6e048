//! Random directory histories through the real services: users, nested groups,
//! memberships, administrators, inherited roles, flag toggles, moves, suspensions
//! and deletions are made through the directory's API; the world is then read
//! back from the directory, and every answer of the authorization service at the
//! history's last revision (effective roles with their sources, checks of every
//! permission on every resource, both lookups) must be the reference model's.
//!
//! One file on purpose: the history generator, the read-back and the
//! comparison are one randomized test.

use cohort_authz::domain::{GroupId, Resource, SuppressReason, UserId};
use cohort_shared::catalog::{self, Role, Tool};
use cohort_shared::convert::role_from_proto;
use cohort_shared::proto::authz::v1 as authz;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as dir;
use cohort_tests::oracle::{random_inherited, random_roles, Group, World};
use cohort_tests::Cluster;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tonic::Code;
use uuid::Uuid;

type Directory = cohort_tests::DirectoryClient;
type Authz = cohort_tests::AuthzClient;

const HISTORIES: u64 = 3;
const STEPS: usize = 70;

fn ids(list: &[String]) -> Vec<Uuid> {
    list.iter().map(|s| Uuid::parse_str(s).unwrap()).collect()
}

async fn all_users(d: &mut Directory, tenant: &str) -> Vec<dir::User> {
    let req = dir::ListUsersRequest {
        tenant_id: tenant.into(),
        page_size: 1000,
        ..Default::default()
    };
    d.list_users(req).await.unwrap().into_inner().users
}

async fn all_groups(d: &mut Directory, tenant: &str) -> Vec<dir::Group> {
    let req = dir::ListGroupsRequest {
        tenant_id: tenant.into(),
        page_size: 1000,
        ..Default::default()
    };
    d.list_groups(req).await.unwrap().into_inner().groups
}

/// One random write; refusals the directory is entitled to are fine.
async fn random_write(d: &mut Directory, tenant: &str, rng: &mut StdRng, step: usize) {
    let users = all_users(d, tenant).await;
    let groups = all_groups(d, tenant).await;
    let user = users.choose(rng).unwrap().id.clone();
    let group = groups.choose(rng).map(|g| g.id.clone());
    let roles = |list: Vec<Role>| {
        list.into_iter()
            .map(|r| catalog_pb::Role::from(r) as i32)
            .collect::<Vec<_>>()
    };
    let t = tenant.to_owned();
    // Keep a few groups around, so the history has a tree to work on.
    let pick = if groups.len() < 3 {
        2
    } else {
        rng.random_range(0..14)
    };
    let result = match (pick, group) {
        (2, _) => d
            .create_group(dir::CreateGroupRequest {
                tenant_id: t,
                display_name: format!("Org {step}"),
                is_organization: rng.random_bool(0.8),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        (0 | 1, _) | (_, None) => d
            .create_user(dir::CreateUserRequest {
                tenant_id: t,
                display_name: format!("User {step}"),
                email: format!("user{step}@history.test"),
                roles: roles(random_roles(rng)),
                request_id: String::new(),
            })
            .await
            .map(|_| ()),
        (3, Some(g)) => d
            .create_group(dir::CreateGroupRequest {
                tenant_id: t,
                display_name: format!("Group {step}"),
                parent_id: g,
                ..Default::default()
            })
            .await
            .map(|_| ()),
        (4 | 5, Some(g)) => d
            .add_group_members(dir::AddGroupMembersRequest {
                tenant_id: t,
                group_id: g,
                user_ids: vec![user],
            })
            .await
            .map(|_| ()),
        (6, Some(g)) => d
            .remove_group_members(dir::RemoveGroupMembersRequest {
                tenant_id: t,
                group_id: g,
                user_ids: vec![user],
            })
            .await
            .map(|_| ()),
        (7, Some(g)) => d
            .add_group_administrators(dir::AddGroupAdministratorsRequest {
                tenant_id: t,
                group_id: g,
                user_ids: vec![user],
            })
            .await
            .map(|_| ()),
        (8, Some(g)) => {
            let inherited = random_inherited(rng);
            match inherited.values().next() {
                Some(role) => d
                    .set_inherited_role(dir::SetInheritedRoleRequest {
                        tenant_id: t,
                        group_id: g,
                        role: catalog_pb::Role::from(*role) as i32,
                        etag: String::new(),
                    })
                    .await
                    .map(|_| ()),
                None => d
                    .clear_inherited_role(dir::ClearInheritedRoleRequest {
                        tenant_id: t,
                        group_id: g,
                        tool: catalog_pb::Tool::from(*Tool::ALL.choose(rng).unwrap()) as i32,
                        etag: String::new(),
                    })
                    .await
                    .map(|_| ()),
            }
        }
        (9, Some(g)) => d
            .update_group(dir::UpdateGroupRequest {
                tenant_id: t,
                group_id: g,
                is_organization: Some(rng.random_bool(0.5)),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        (10, Some(g)) => {
            let target = if rng.random_bool(0.3) {
                String::new()
            } else {
                groups.choose(rng).unwrap().id.clone()
            };
            d.move_group(dir::MoveGroupRequest {
                tenant_id: t,
                group_id: g,
                new_parent_id: target,
                etag: String::new(),
            })
            .await
            .map(|_| ())
        }
        (11, Some(g)) if rng.random_bool(0.3) => d
            .delete_group(dir::DeleteGroupRequest {
                tenant_id: t,
                group_id: g,
                cascade: true,
                etag: String::new(),
            })
            .await
            .map(|_| ()),
        (11, Some(g)) => d
            .assign_catalog(dir::AssignCatalogRequest {
                tenant_id: t,
                group_id: g,
                catalog_id: format!("cat-{}", rng.random_range(0..3)),
            })
            .await
            .map(|_| ()),
        (12, _) => d
            .update_user(dir::UpdateUserRequest {
                tenant_id: t,
                user_id: user,
                roles: roles(random_roles(rng)),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        (_, _) if rng.random_bool(0.5) => d
            .suspend_user(dir::SuspendUserRequest {
                tenant_id: t,
                user_id: user,
                etag: String::new(),
            })
            .await
            .map(|_| ()),
        (_, _) => d
            .reactivate_user(dir::ReactivateUserRequest {
                tenant_id: t,
                user_id: user,
                etag: String::new(),
            })
            .await
            .map(|_| ()),
    };
    if let Err(status) = result {
        let expected = [
            Code::FailedPrecondition,
            Code::AlreadyExists,
            Code::InvalidArgument,
        ];
        assert!(expected.contains(&status.code()), "step {step}: {status:?}");
    }
}

/// The directory's state of the tenant, as the oracle's world.
async fn read_world(d: &mut Directory, tenant: &str) -> World {
    let mut world = World::default();
    let users = all_users(d, tenant).await;
    for user in &users {
        let roles = user
            .roles
            .iter()
            .map(|r| role_from_proto(*r).unwrap())
            .collect();
        let suspended = user.state == dir::UserState::Suspended as i32;
        world.users.insert(
            UserId(Uuid::parse_str(&user.id).unwrap()),
            (roles, suspended),
        );
        let memberships = d
            .list_user_groups(dir::ListUserGroupsRequest {
                tenant_id: tenant.into(),
                user_id: user.id.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .groups;
        for m in memberships.iter().map(|g| g.membership.as_ref().unwrap()) {
            let key = (
                UserId(Uuid::parse_str(&m.user_id).unwrap()),
                GroupId(Uuid::parse_str(&m.group_id).unwrap()),
            );
            world.members.insert(key, m.join_revision);
        }
    }
    for group in all_groups(d, tenant).await {
        let id = GroupId(Uuid::parse_str(&group.id).unwrap());
        let inherited = group
            .inherited_roles
            .iter()
            .map(|r| role_from_proto(r.role).unwrap())
            .map(|r| (r.tool(), r))
            .collect();
        let parent = (!group.parent_id.is_empty())
            .then(|| GroupId(Uuid::parse_str(&group.parent_id).unwrap()));
        world.groups.insert(
            id,
            Group {
                parent,
                organization: group.is_organization,
                inherited,
            },
        );
        let admins = d
            .list_group_administrators(dir::ListGroupAdministratorsRequest {
                tenant_id: tenant.into(),
                group_id: group.id.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .users;
        for admin in ids(&admins.iter().map(|u| u.id.clone()).collect::<Vec<_>>()) {
            world.admins.insert((id, UserId(admin)));
        }
        let catalogs = d
            .list_catalog_assignments(dir::ListCatalogAssignmentsRequest {
                tenant_id: tenant.into(),
                group_id: group.id.clone(),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .assignments;
        for c in catalogs {
            world.catalogs.insert((id, c.catalog_id));
        }
    }
    world
}

fn at(revision: i64) -> Option<authz::Consistency> {
    Some(authz::Consistency {
        requirement: Some(authz::consistency::Requirement::AtLeastRevision(revision)),
    })
}

fn proto_resource(resource: &Resource) -> authz::Resource {
    use authz::resource::Resource as R;
    authz::Resource {
        resource: Some(match resource {
            Resource::Tenant => R::Tenant(true),
            Resource::Group(g) => R::GroupId(g.to_string()),
            Resource::User(u) => R::UserId(u.to_string()),
            Resource::Catalog(c) => R::CatalogId(c.clone()),
        }),
    }
}

async fn compare(a: &mut Authz, tenant: &str, revision: i64, world: &World, context: &str) {
    let users: Vec<UserId> = world.users.keys().copied().collect();
    let groups: Vec<GroupId> = world.groups.keys().copied().collect();

    for user in &users {
        let reply = a
            .get_effective_roles(authz::GetEffectiveRolesRequest {
                tenant_id: tenant.into(),
                user_id: user.to_string(),
                consistency: at(revision),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(reply.revision >= revision);
        let expected = world.roles(*user);
        for tool in Tool::ALL {
            let got = reply
                .tools
                .iter()
                .find(|t| t.tool == catalog_pb::Tool::from(tool) as i32);
            let held: Vec<(Role, Vec<Option<GroupId>>)> = got
                .map(|t| {
                    t.roles
                        .iter()
                        .map(|r| {
                            let sources = r
                                .provenance
                                .iter()
                                .map(|p| match p.source.as_ref().unwrap() {
                                    authz::provenance::Source::Inherited(via) => {
                                        Some(GroupId(Uuid::parse_str(&via.group_id).unwrap()))
                                    }
                                    _ => None,
                                })
                                .collect();
                            (role_from_proto(r.role).unwrap(), sources)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let suppressed: Vec<(Role, String, i32)> = got
                .map(|t| {
                    t.suppressed
                        .iter()
                        .map(|s| {
                            (
                                role_from_proto(s.role).unwrap(),
                                s.reason.clone(),
                                s.prevailing_role,
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let (want_held, want_suppressed) = expected.get(&tool).cloned().unwrap_or_default();
            assert_eq!(held, want_held, "{context}: {tool:?} roles of {user}");
            let want_suppressed: Vec<(Role, String, i32)> = want_suppressed
                .into_iter()
                .map(|(role, reason)| match reason {
                    SuppressReason::IncompatibleWith(p) => (
                        role,
                        "INCOMPATIBLE_WITH_HELD_ROLE".into(),
                        catalog_pb::Role::from(p) as i32,
                    ),
                    SuppressReason::RequiresGlobalAdminGroupAdministrator => {
                        (role, "REQUIRES_GLOBAL_ADMIN_GROUP_ADMINISTRATOR".into(), 0)
                    }
                })
                .collect();
            assert_eq!(
                suppressed, want_suppressed,
                "{context}: suppressed {tool:?} roles of {user}"
            );
        }
    }

    let mut resources = vec![Resource::Tenant];
    resources.extend(groups.iter().map(|g| Resource::Group(*g)));
    resources.extend(users.iter().map(|u| Resource::User(*u)));
    resources.extend((0..3).map(|i| Resource::Catalog(format!("cat-{i}"))));
    let mut questions = Vec::new();
    for user in &users {
        for permission in catalog::permissions() {
            for resource in &resources {
                if World::applies(permission, resource) {
                    questions.push((*user, permission, resource.clone()));
                }
            }
        }
    }
    let mut outcomes: std::collections::BTreeMap<bool, usize> = Default::default();
    for chunk in questions.chunks(1000) {
        let items = chunk
            .iter()
            .map(|(u, p, r)| authz::BulkCheckItem {
                user_id: u.to_string(),
                permission: p.to_string(),
                resource: Some(proto_resource(r)),
            })
            .collect();
        let reply = a
            .bulk_check(authz::BulkCheckRequest {
                tenant_id: tenant.into(),
                items,
                consistency: at(revision),
                explain: false,
            })
            .await
            .unwrap()
            .into_inner();
        for ((user, permission, resource), result) in chunk.iter().zip(reply.results) {
            *outcomes.entry(result.allowed).or_default() += 1;
            assert_eq!(
                result.allowed,
                world.check(*user, permission, resource),
                "{context}: {user} {permission} on {resource:?}"
            );
        }
    }

    assert!(
        outcomes.len() == 2,
        "{context}: checks must both allow and deny: {outcomes:?}"
    );
    let inherited = world.users.keys().any(|u| {
        world
            .roles(*u)
            .values()
            .any(|(held, _)| held.iter().any(|(_, s)| s.iter().any(Option::is_some)))
    });
    assert!(inherited, "{context}: some role must be inherited");

    // A check that is no question (own content on anything but its owner) is
    // refused whole, naming the item.
    let refused = a
        .bulk_check(authz::BulkCheckRequest {
            tenant_id: tenant.into(),
            items: vec![
                authz::BulkCheckItem {
                    user_id: users[0].to_string(),
                    permission: "lms.reports.view".into(),
                    resource: Some(proto_resource(&Resource::Tenant)),
                },
                authz::BulkCheckItem {
                    user_id: users[0].to_string(),
                    permission: "share.playlists.create".into(),
                    resource: Some(proto_resource(&Resource::Tenant)),
                },
            ],
            consistency: at(revision),
            explain: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{context}");
    assert_eq!(
        cohort_tests::field_violations(&refused),
        ["items[1].resource"],
        "{context}"
    );

    let group_permissions = catalog::permissions()
        .into_iter()
        .filter(|p| World::applies(p, &Resource::Group(GroupId(uuid::Uuid::nil()))));
    for permission in group_permissions {
        for group in &groups {
            let reply = a
                .lookup_subjects(authz::LookupSubjectsRequest {
                    tenant_id: tenant.into(),
                    group_id: group.to_string(),
                    what: Some(authz::lookup_subjects_request::What::Permission(
                        permission.into(),
                    )),
                    consistency: at(revision),
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            let expected: Vec<Uuid> = users
                .iter()
                .filter(|u| world.check(**u, permission, &Resource::Group(*group)))
                .map(|u| u.0)
                .collect();
            assert_eq!(
                ids(&reply.user_ids),
                expected,
                "{context}: holders of {permission} on {group}"
            );
        }
        for user in &users {
            let reply = a
                .lookup_groups(authz::LookupGroupsRequest {
                    tenant_id: tenant.into(),
                    user_id: user.to_string(),
                    permission: permission.into(),
                    consistency: at(revision),
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            let expected: Vec<Uuid> = groups
                .iter()
                .filter(|g| world.check(*user, permission, &Resource::Group(**g)))
                .map(|g| g.0)
                .collect();
            assert_eq!(
                ids(&reply.group_ids),
                expected,
                "{context}: groups of {user} for {permission}"
            );
        }
    }
    for group in &groups {
        for role in Role::ALL {
            let reply = a
                .lookup_subjects(authz::LookupSubjectsRequest {
                    tenant_id: tenant.into(),
                    group_id: group.to_string(),
                    what: Some(authz::lookup_subjects_request::What::Role(
                        catalog_pb::Role::from(role) as i32,
                    )),
                    consistency: at(revision),
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            let expected: Vec<Uuid> = users
                .iter()
                .filter(|u| world.holds_role_on(**u, role, *group))
                .map(|u| u.0)
                .collect();
            assert_eq!(
                ids(&reply.user_ids),
                expected,
                "{context}: holders of {role} on {group}"
            );
        }
    }
}

#[tokio::test]
async fn random_directory_histories_are_answered_as_the_reference_model_says() {
    let cluster = Cluster::start().await.unwrap();
    let mut d = cluster.directory.client().await.unwrap();
    let mut a = cluster.authz.client().await.unwrap();
    for seed in 0..HISTORIES {
        let mut rng = StdRng::seed_from_u64(seed);
        let tenant = d
            .create_tenant(dir::CreateTenantRequest {
                display_name: format!("History {seed}"),
                admin_display_name: "Admin".into(),
                admin_email: format!("admin{seed}@history.test"),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .tenant
            .unwrap()
            .id;
        for step in 0..STEPS {
            random_write(&mut d, &tenant, &mut rng, step).await;
        }
        let revision = d
            .get_tenant(dir::GetTenantRequest {
                tenant_id: tenant.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .tenant
            .unwrap()
            .revision;
        let world = read_world(&mut d, &tenant).await;
        assert!(
            world.groups.len() >= 2 && world.users.len() >= 3,
            "a history worth checking"
        );
        compare(
            &mut a,
            &tenant,
            revision,
            &world,
            &format!("history {seed}"),
        )
        .await;
    }
    cluster.finish().await.unwrap();
}
