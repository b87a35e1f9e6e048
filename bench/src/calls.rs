//! Every call the tool drives, each built from a seeded tenant's ids at random.

use std::sync::Arc;

use cohort_shared::proto::authz::v1 as authz;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::Rng;
use tonic_health::pb::HealthCheckRequest;

use crate::client::Clients;
use crate::manifest::Manifest;

/// The permission the figures check and look up.
pub const PERMISSION: &str = "lms.reports.view";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Call {
    /// `grpc.health.v1.Health/Check`: the baseline every figure is read against.
    Health,
    /// `Check` of lms.reports.view by a random user on a random level-3 group.
    Check,
    /// `GetEffectiveRoles` of a random user (the full view).
    EffectiveRoles,
    /// `GetEffectiveRoles` of a random user in the basic view (no reaches).
    EffectiveRolesBasic,
    /// `cohort.catalog.v1.CatalogService/ListPermissions`: a fixed answer of
    /// about 1.3 KB, made once and cloned, with nothing worked out per call.
    /// What an answer of the size of `GetEffectiveRoles`' costs by itself.
    ListPermissions,
    /// `BulkCheck` of 100 items (10 users, 10 level-3 groups each).
    BulkCheck,
    /// `LookupSubjects` of lms.reports.view on a random level-3 group, a page of 100.
    LookupSubjects,
    /// `LookupGroups` of lms.reports.view for a random administrator, a page of 100.
    LookupGroups,
    /// `CreateUser` in one of the run's tenants.
    CreateUser,
    /// `AddGroupMembers` of 1,000 random users of the seeded tenant to a random
    /// group of it.
    AddMembers,
}

impl Call {
    /// How many items (checks, rows) one call carries, for per-item rates.
    pub fn items_name(self) -> Option<&'static str> {
        match self {
            Call::BulkCheck => Some("checks"),
            Call::AddMembers => Some("rows"),
            _ => None,
        }
    }
}

/// What a run's calls pick from.
pub struct Context {
    pub manifest: Arc<Manifest>,
    /// The tenants writes go to (the manifest's, or fresh ones made for the run).
    pub tenants: Vec<String>,
}

/// The view a `GetEffectiveRoles` call asks for.
fn view(call: Call) -> i32 {
    match call {
        Call::EffectiveRolesBasic => authz::EffectiveRolesView::Basic as i32,
        _ => authz::EffectiveRolesView::Full as i32,
    }
}

fn consistency() -> Option<authz::Consistency> {
    Some(authz::Consistency {
        requirement: Some(authz::consistency::Requirement::MinimizeLatency(true)),
    })
}

/// One call's request with its method path, framed as gRPC sends it (a flag
/// byte, a 4-byte length, the protobuf message), built from the manifest's first
/// ids: for h2load, which repeats one body.
pub fn framed(call: Call, m: &Manifest) -> anyhow::Result<(&'static str, Vec<u8>)> {
    use prost::Message;
    let user = m.users.first().cloned().unwrap_or_default();
    let group = m.level(3).first().cloned().unwrap_or_default();
    let resource = || {
        Some(authz::Resource {
            resource: Some(authz::resource::Resource::GroupId(group.clone())),
        })
    };
    let (path, message): (&str, Vec<u8>) = match call {
        Call::Health => (
            "/grpc.health.v1.Health/Check",
            HealthCheckRequest {
                service: String::new(),
            }
            .encode_to_vec(),
        ),
        Call::ListPermissions => (
            "/cohort.catalog.v1.CatalogService/ListPermissions",
            catalog_pb::ListPermissionsRequest::default().encode_to_vec(),
        ),
        Call::Check => (
            "/cohort.authz.v1.AuthzService/Check",
            authz::CheckRequest {
                tenant_id: m.tenant_id.clone(),
                user_id: user.clone(),
                permission: PERMISSION.into(),
                resource: resource(),
                consistency: consistency(),
                explain: false,
            }
            .encode_to_vec(),
        ),
        Call::EffectiveRoles | Call::EffectiveRolesBasic => (
            "/cohort.authz.v1.AuthzService/GetEffectiveRoles",
            authz::GetEffectiveRolesRequest {
                tenant_id: m.tenant_id.clone(),
                user_id: user.clone(),
                consistency: consistency(),
                view: view(call),
            }
            .encode_to_vec(),
        ),
        Call::BulkCheck => (
            "/cohort.authz.v1.AuthzService/BulkCheck",
            authz::BulkCheckRequest {
                tenant_id: m.tenant_id.clone(),
                items: (0..100)
                    .map(|i| authz::BulkCheckItem {
                        user_id: m.users.get(i / 10).cloned().unwrap_or_default(),
                        permission: PERMISSION.into(),
                        resource: Some(authz::Resource {
                            resource: Some(authz::resource::Resource::GroupId(
                                m.level(3).get(i % 10).cloned().unwrap_or_default(),
                            )),
                        }),
                    })
                    .collect(),
                consistency: consistency(),
                explain: false,
            }
            .encode_to_vec(),
        ),
        Call::LookupSubjects => (
            "/cohort.authz.v1.AuthzService/LookupSubjects",
            authz::LookupSubjectsRequest {
                tenant_id: m.tenant_id.clone(),
                group_id: group.clone(),
                what: Some(authz::lookup_subjects_request::What::Permission(
                    PERMISSION.into(),
                )),
                consistency: consistency(),
                page_size: 100,
                page_token: String::new(),
            }
            .encode_to_vec(),
        ),
        Call::LookupGroups => (
            "/cohort.authz.v1.AuthzService/LookupGroups",
            authz::LookupGroupsRequest {
                tenant_id: m.tenant_id.clone(),
                user_id: m.administrators.first().cloned().unwrap_or_default(),
                permission: PERMISSION.into(),
                consistency: consistency(),
                page_size: 100,
                page_token: String::new(),
            }
            .encode_to_vec(),
        ),
        Call::CreateUser | Call::AddMembers => {
            anyhow::bail!("h2load repeats one body: a write would repeat itself")
        }
    };
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    Ok((path, framed))
}

/// Makes one call; the number of items it carried.
pub async fn once(
    call: Call,
    clients: &mut Clients,
    context: &Context,
    rng: &mut SmallRng,
) -> Result<u64, tonic::Status> {
    let m = &context.manifest;
    let tenant_id = m.tenant_id.clone();
    let user = |rng: &mut SmallRng| m.users.choose(rng).cloned().unwrap_or_default();
    let level_three = |rng: &mut SmallRng| m.level(3).choose(rng).cloned().unwrap_or_default();
    match call {
        Call::Health => {
            clients
                .health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            Ok(1)
        }
        Call::Check => {
            let request = authz::CheckRequest {
                tenant_id,
                user_id: user(rng),
                permission: PERMISSION.into(),
                resource: Some(authz::Resource {
                    resource: Some(authz::resource::Resource::GroupId(level_three(rng))),
                }),
                consistency: consistency(),
                explain: false,
            };
            clients.authz.check(request).await?;
            Ok(1)
        }
        Call::ListPermissions => {
            clients
                .catalog
                .list_permissions(catalog_pb::ListPermissionsRequest::default())
                .await?;
            Ok(1)
        }
        Call::EffectiveRoles | Call::EffectiveRolesBasic => {
            let request = authz::GetEffectiveRolesRequest {
                tenant_id,
                user_id: user(rng),
                consistency: consistency(),
                view: view(call),
            };
            clients.authz.get_effective_roles(request).await?;
            Ok(1)
        }
        Call::BulkCheck => {
            let users: Vec<String> = (0..10).map(|_| user(rng)).collect();
            let items = (0..100)
                .map(|i| authz::BulkCheckItem {
                    user_id: users[i / 10].clone(),
                    permission: PERMISSION.into(),
                    resource: Some(authz::Resource {
                        resource: Some(authz::resource::Resource::GroupId(level_three(rng))),
                    }),
                })
                .collect();
            let request = authz::BulkCheckRequest {
                tenant_id,
                items,
                consistency: consistency(),
                explain: false,
            };
            let reply = clients.authz.bulk_check(request).await?.into_inner();
            Ok(reply.results.len() as u64)
        }
        Call::LookupSubjects => {
            let request = authz::LookupSubjectsRequest {
                tenant_id,
                group_id: level_three(rng),
                what: Some(authz::lookup_subjects_request::What::Permission(
                    PERMISSION.into(),
                )),
                consistency: consistency(),
                page_size: 100,
                page_token: String::new(),
            };
            let reply = clients.authz.lookup_subjects(request).await?.into_inner();
            Ok(reply.user_ids.len() as u64)
        }
        Call::LookupGroups => {
            let request = authz::LookupGroupsRequest {
                tenant_id,
                user_id: m.administrators.choose(rng).cloned().unwrap_or_default(),
                permission: PERMISSION.into(),
                consistency: consistency(),
                page_size: 100,
                page_token: String::new(),
            };
            let reply = clients.authz.lookup_groups(request).await?.into_inner();
            Ok(reply.group_ids.len() as u64)
        }
        Call::CreateUser => {
            let n: u64 = rng.random();
            let request = pb::CreateUserRequest {
                tenant_id: context.tenants.choose(rng).cloned().unwrap_or(tenant_id),
                display_name: format!("Load {n:x}"),
                email: format!("load-{n:x}@bench.test"),
                roles: vec![
                    catalog_pb::Role::GlobalAdminUser as i32,
                    catalog_pb::Role::LmsUser as i32,
                ],
                request_id: String::new(),
            };
            clients.directory.create_user(request).await?;
            Ok(1)
        }
        Call::AddMembers => {
            let groups: Vec<&String> = m.groups().collect();
            let request = pb::AddGroupMembersRequest {
                tenant_id,
                group_id: groups.choose(rng).map(|g| (*g).clone()).unwrap_or_default(),
                user_ids: m.users.choose_multiple(rng, 1000).cloned().collect(),
            };
            let reply = clients
                .directory
                .add_group_members(request)
                .await?
                .into_inner();
            Ok(reply.added_user_ids.len() as u64)
        }
    }
}
