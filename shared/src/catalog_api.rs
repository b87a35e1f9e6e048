//! The `cohort.catalog.v1.CatalogService`: the role catalog over gRPC, so that
//! callers discover tools, roles and permission names without reading
//! `docs/ROLES.md`. Both services serve it. The answers are built once from
//! [`crate::catalog`] (the catalog is fixed for a build) and cloned per call.

use std::sync::LazyLock;

use tonic::{Request, Response, Status};

use crate::catalog::{self, Compatibility, Role, Tool};
use crate::proto::catalog::v1 as pb;
use pb::catalog_service_server::{CatalogService, CatalogServiceServer};

/// The catalog service; stateless.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatalogApi;

impl CatalogApi {
    /// The service, ready to add to a server.
    pub fn server() -> CatalogServiceServer<CatalogApi> {
        CatalogServiceServer::new(CatalogApi)
    }
}

/// The fully qualified name of the service (for health and reflection).
pub const SERVICE_NAME: &str = "cohort.catalog.v1.CatalogService";

static TOOLS: LazyLock<pb::ListToolsResponse> = LazyLock::new(|| pb::ListToolsResponse {
    tools: Tool::ALL.into_iter().map(tool_info).collect(),
});

static PERMISSIONS: LazyLock<pb::ListPermissionsResponse> =
    LazyLock::new(|| pb::ListPermissionsResponse {
        permissions: catalog::permissions()
            .into_iter()
            .map(permission_info)
            .collect(),
    });

fn role_value(role: Role) -> i32 {
    pb::Role::from(role) as i32
}

fn tool_info(tool: Tool) -> pb::ToolInfo {
    let (compatibility, joker) = match tool.compatibility() {
        Compatibility::Exclusive => (pb::Compatibility::Exclusive, None),
        Compatibility::Combinable => (pb::Compatibility::Combinable, None),
        Compatibility::OneCombinesWithAny(joker) => {
            (pb::Compatibility::OneCombinesWithAny, Some(joker))
        }
    };
    pb::ToolInfo {
        tool: pb::Tool::from(tool) as i32,
        title: tool.title().to_owned(),
        compatibility: compatibility as i32,
        combines_with_any: joker.map_or(pb::Role::Unspecified as i32, role_value),
        implied_role: tool
            .implied_role()
            .map_or(pb::Role::Unspecified as i32, role_value),
        roles: tool.roles().iter().map(|role| role_info(*role)).collect(),
    }
}

fn role_info(role: Role) -> pb::RoleInfo {
    let others = || {
        role.tool()
            .roles()
            .iter()
            .copied()
            .filter(move |o| *o != role)
    };
    pb::RoleInfo {
        role: role_value(role),
        short_name: role.short_name().to_owned(),
        grants: role
            .grants()
            .iter()
            .map(|g| pb::Grant {
                permission: g.permission.to_owned(),
                scope: pb::ScopeKind::from(g.scope) as i32,
            })
            .collect(),
        contains: others()
            .filter(|o| role.contains(*o))
            .map(role_value)
            .collect(),
        incompatible_with: others()
            .filter(|o| !role.is_compatible_with(*o))
            .map(role_value)
            .collect(),
    }
}

fn permission_info(permission: &'static str) -> pb::Permission {
    let tool = Tool::ALL
        .into_iter()
        .find(|t| {
            t.roles()
                .iter()
                .any(|r| r.grants().iter().any(|g| g.permission == permission))
        })
        .expect("every catalog permission is granted by a role");
    pb::Permission {
        name: permission.to_owned(),
        tool: pb::Tool::from(tool) as i32,
        organization_feature: catalog::is_organization_feature(permission),
        resource_kinds: catalog::resource_kinds(permission)
            .iter()
            .map(|k| pb::ResourceKind::from(*k) as i32)
            .collect(),
        granted_by: Role::ALL
            .into_iter()
            .flat_map(|role| {
                role.grants()
                    .iter()
                    .filter(|g| g.permission == permission)
                    .map(move |g| pb::RoleGrant {
                        role: role_value(role),
                        scope: pb::ScopeKind::from(g.scope) as i32,
                    })
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    async fn list_tools(
        &self,
        _request: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        Ok(Response::new(TOOLS.clone()))
    }

    async fn list_permissions(
        &self,
        _request: Request<pb::ListPermissionsRequest>,
    ) -> Result<Response<pb::ListPermissionsResponse>, Status> {
        Ok(Response::new(PERMISSIONS.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_and_permission_is_listed_once() {
        let roles: Vec<i32> = TOOLS
            .tools
            .iter()
            .flat_map(|t| t.roles.iter().map(|r| r.role))
            .collect();
        assert_eq!(roles.len(), Role::ALL.len());
        for role in Role::ALL {
            assert!(roles.contains(&role_value(role)), "{role}");
        }
        let names: Vec<&str> = PERMISSIONS
            .permissions
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, catalog::permissions());
    }

    #[test]
    fn a_permission_lists_every_granting_role_with_its_scope() {
        let publish = PERMISSIONS
            .permissions
            .iter()
            .find(|p| p.name == "lms.content.publish")
            .unwrap();
        let granted: Vec<(i32, i32)> = publish
            .granted_by
            .iter()
            .map(|g| (g.role, g.scope))
            .collect();
        assert_eq!(
            granted,
            [
                (pb::Role::LmsAdmin as i32, pb::ScopeKind::Tenant as i32),
                (
                    pb::Role::LmsGroupAdministrator as i32,
                    pb::ScopeKind::AdministeredGroups as i32
                ),
                (pb::Role::LmsAuthor as i32, pb::ScopeKind::Own as i32),
                (
                    pb::Role::LmsValidator as i32,
                    pb::ScopeKind::MemberGroups as i32
                ),
            ]
        );
        let take = PERMISSIONS
            .permissions
            .iter()
            .find(|p| p.name == "lms.courses.take")
            .unwrap();
        assert_eq!(take.resource_kinds, [pb::ResourceKind::User as i32]);
        assert!(!take.organization_feature);
    }

    #[test]
    fn author_author_combines_and_global_admin_roles_exclude_each_other() {
        let author = &TOOLS.tools[2];
        assert_eq!(author.tool, pb::Tool::Author as i32);
        assert_eq!(
            author.compatibility,
            pb::Compatibility::OneCombinesWithAny as i32
        );
        assert_eq!(author.combines_with_any, pb::Role::AuthorAuthor as i32);
        let global_admin = &TOOLS.tools[0].roles[0];
        assert_eq!(global_admin.role, pb::Role::GlobalAdminAdmin as i32);
        assert_eq!(
            global_admin.incompatible_with,
            [
                pb::Role::GlobalAdminGroupAdministrator as i32,
                pb::Role::GlobalAdminUser as i32
            ]
        );
        assert!(global_admin
            .contains
            .contains(&(pb::Role::GlobalAdminUser as i32)));
    }
}
