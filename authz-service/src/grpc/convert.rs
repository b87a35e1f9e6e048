//! Between the contract and the domain: ids and resources parsed (errors name
//! the field), answers built.

use cohort_shared::catalog::Tool;
use cohort_shared::proto::authz::v1 as pb;
use uuid::Uuid;

use super::error::ApiError;
use crate::domain::{
    self, Detail, GroupId, Reach, Resource, Source, SuppressReason, TenantId, TenantState, UserId,
};

pub(super) fn parse_id(field: &str, raw: &str) -> Result<Uuid, ApiError> {
    parse_id_named(|| field.to_owned(), raw)
}

/// The request's `tenant_id`.
pub(super) fn parse_tenant(raw: &str) -> Result<TenantId, ApiError> {
    parse_id("tenant_id", raw).map(TenantId)
}

/// [`parse_id`] for a field whose name is built (`items[17].user_id`): built only
/// when an error names it, not for every item of every bulk call.
pub(super) fn parse_id_named(field: impl FnOnce() -> String, raw: &str) -> Result<Uuid, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::invalid(field(), "is required"));
    }
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::invalid(field(), format!("`{raw}` is not a valid id (a UUID)")))
}

/// A resource; `field` names it in errors (built only then).
pub(super) fn parse_resource(
    field: impl Fn() -> String,
    resource: Option<pb::Resource>,
) -> Result<Resource, ApiError> {
    use pb::resource::Resource as R;
    match resource.and_then(|r| r.resource) {
        None => Err(ApiError::invalid(field(), "is required")),
        Some(R::Tenant(_)) => Ok(Resource::Tenant),
        Some(R::GroupId(g)) => Ok(Resource::Group(GroupId(parse_id_named(
            || format!("{}.group_id", field()),
            &g,
        )?))),
        Some(R::UserId(u)) => Ok(Resource::User(UserId(parse_id_named(
            || format!("{}.user_id", field()),
            &u,
        )?))),
        Some(R::CatalogId(c)) if c.is_empty() => Err(ApiError::invalid(
            format!("{}.catalog_id", field()),
            "is required",
        )),
        Some(R::CatalogId(c)) => Ok(Resource::Catalog(c)),
    }
}

/// An id as the contract writes it (hyphenated, lower case), without the
/// formatting machinery: answers carry many.
pub(super) fn id_string(id: &Uuid) -> String {
    let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut buffer).to_owned()
}

fn via(v: &domain::Via) -> pb::InheritedVia {
    pb::InheritedVia {
        group_id: id_string(&v.group.0),
        path: v.path.iter().map(|g| id_string(&g.0)).collect(),
    }
}

fn scope(reach: &Reach) -> pb::Scope {
    use pb::scope::Scope as S;
    pb::Scope {
        scope: Some(match reach {
            Reach::Tenant => S::Tenant(true),
            Reach::Own => S::Own(true),
            Reach::Groups(groups) => S::Groups(pb::GroupIds {
                group_ids: groups.iter().map(|g| id_string(&g.0)).collect(),
            }),
        }),
    }
}

/// How much a `GetEffectiveRoles` answers: unset is the full view.
pub(super) fn detail(view: i32) -> Result<Detail, ApiError> {
    match pb::EffectiveRolesView::try_from(view) {
        Ok(pb::EffectiveRolesView::Basic) => Ok(Detail::Roles),
        Ok(pb::EffectiveRolesView::Unspecified | pb::EffectiveRolesView::Full) => {
            Ok(Detail::Reaches)
        }
        Err(_) => Err(ApiError::invalid(
            "view",
            format!("{view} is not an EffectiveRolesView"),
        )),
    }
}

pub(super) fn effective_roles(
    state: &TenantState,
    user: UserId,
    detail: Detail,
) -> Result<pb::GetEffectiveRolesResponse, ApiError> {
    use cohort_shared::proto::catalog::v1::{Role as PbRole, Tool as PbTool};
    let resolution = domain::resolve_with(state, user, detail)
        .ok_or_else(|| ApiError::not_found("user", user))?;
    let tools = resolution
        .tools
        .iter()
        .filter(|(_, t)| !t.roles.is_empty() || !t.suppressed.is_empty())
        .map(|(tool, roles): &(Tool, domain::ToolRoles)| pb::ToolRoles {
            tool: PbTool::from(*tool) as i32,
            roles: roles
                .roles
                .iter()
                .map(|held| pb::EffectiveRole {
                    role: PbRole::from(held.role) as i32,
                    #[allow(deprecated)]
                    scope: held.reaches.as_ref().map(|r| scope(&r.as_a_whole)),
                    reaches: held
                        .reaches
                        .iter()
                        .flat_map(|r| &r.by_kind)
                        .map(|r| pb::PermissionReach {
                            kind: cohort_shared::proto::catalog::v1::ScopeKind::from(r.kind) as i32,
                            scope: Some(scope(&r.reach)),
                            permissions: r.permissions.iter().map(|p| p.to_string()).collect(),
                        })
                        .collect(),
                    provenance: held
                        .sources
                        .iter()
                        .map(|s| pb::Provenance {
                            source: Some(match s {
                                Source::Direct => pb::provenance::Source::Direct(true),
                                Source::Inherited(v) => pb::provenance::Source::Inherited(via(v)),
                            }),
                        })
                        .collect(),
                })
                .collect(),
            suppressed: roles
                .suppressed
                .iter()
                .map(|s| {
                    let (reason, prevailing, description) = match &s.reason {
                        SuppressReason::IncompatibleWith(held) => (
                            "INCOMPATIBLE_WITH_HELD_ROLE",
                            PbRole::from(*held) as i32,
                            format!("{} is incompatible with the held {held}, which it does not contain", s.role),
                        ),
                        SuppressReason::RequiresGlobalAdminGroupAdministrator => (
                            "REQUIRES_GLOBAL_ADMIN_GROUP_ADMINISTRATOR",
                            PbRole::Unspecified as i32,
                            "an inherited LMS GROUP_ADMINISTRATOR needs the Global Admin role GROUP_ADMINISTRATOR".to_owned(),
                        ),
                    };
                    pb::SuppressedRole {
                        role: PbRole::from(s.role) as i32,
                        via: Some(via(&s.via)),
                        reason: reason.to_owned(),
                        prevailing_role: prevailing,
                        description,
                    }
                })
                .collect(),
        })
        .collect();
    Ok(pb::GetEffectiveRolesResponse {
        tools,
        revision: state.revision,
        suspended: resolution.suspended,
    })
}
