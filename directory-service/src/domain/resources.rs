//! The directory's resources as the domain sees them, and the inputs of the
//! operations that change them.

use chrono::{DateTime, Utc};
use cohort_shared::catalog::{Role, RoleSet, Tool};

use super::{
    CatalogId, DisplayName, Email, Etag, GroupId, RequestId, Revision, TenantId, UserId,
    ValidationError,
};

/// Who is making a change, recorded with its change event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteContext {
    /// The authenticated caller, or `anonymous` until authentication is configured.
    pub actor: String,
}

impl WriteContext {
    pub fn new(actor: impl Into<String>) -> Self {
        WriteContext {
            actor: actor.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub display_name: DisplayName,
    pub revision: Revision,
    pub create_time: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum UserState {
    Active,
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub display_name: DisplayName,
    pub email: Email,
    pub roles: RoleSet,
    pub state: UserState,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    /// The tenant revision of the user's last change (its etag).
    pub revision: Revision,
}

impl User {
    /// Only users whose Global Admin role is GROUP_ADMINISTRATOR may administer
    /// groups. Eligibility follows the direct role: the directory enforces it at
    /// write time, where it can refuse a change that would break it.
    pub fn may_administer_groups(&self) -> bool {
        self.roles.global_admin_role() == Role::GlobalAdminGroupAdministrator
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Group {
    pub id: GroupId,
    pub tenant_id: TenantId,
    pub display_name: DisplayName,
    pub parent_id: Option<GroupId>,
    pub is_organization: bool,
    /// Direct subgroups. Kept by the writers; not part of change events.
    #[serde(skip)]
    pub subgroup_count: i64,
    /// Direct members ("registered users"). Kept by the writers.
    #[serde(skip)]
    pub member_count: i64,
    /// Kept by the writers.
    #[serde(skip)]
    pub administrator_count: i64,
    /// At most one per tool, ordered by tool.
    pub inherited_roles: Vec<(Tool, Role)>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    /// The tenant revision of the group's last change (its etag).
    pub revision: Revision,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Membership {
    pub group_id: GroupId,
    pub user_id: UserId,
    /// Inherited roles are acquired in join order; the revision orders joins exactly.
    pub join_revision: Revision,
    pub join_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CatalogAssignment {
    pub group_id: GroupId,
    pub catalog_id: CatalogId,
    pub assign_time: DateTime<Utc>,
}

/// A tenant to create, with its first user (a Global Admin ADMIN).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewTenant {
    pub display_name: DisplayName,
    pub admin_display_name: DisplayName,
    pub admin_email: Email,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewUser {
    pub display_name: DisplayName,
    pub email: Email,
    pub roles: RoleSet,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserUpdate {
    pub display_name: Option<DisplayName>,
    pub email: Option<Email>,
    pub roles: Option<RoleSet>,
    pub etag: Option<Etag>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NewGroup {
    pub display_name: DisplayName,
    pub parent_id: Option<GroupId>,
    pub is_organization: bool,
    /// One per tool, in tool order (see [`NewGroup::inherited_roles`]). Left
    /// out of the request fingerprint when empty, so that a retry sent before
    /// this field existed still matches its first call.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inherited_roles: Vec<(Tool, Role)>,
    #[serde(skip)]
    pub request_id: Option<RequestId>,
}

impl NewGroup {
    /// The roles a new group's members inherit, as given in `field` (each named
    /// `field[i]`): at most one per tool, as `SetInheritedRole` keeps them.
    pub fn inherited_roles(
        field: &str,
        roles: &[Role],
    ) -> Result<Vec<(Tool, Role)>, ValidationError> {
        let mut by_tool: Vec<(Tool, Role)> = Vec::with_capacity(roles.len());
        for (i, role) in roles.iter().enumerate() {
            if let Some((tool, earlier)) = by_tool.iter().find(|(t, _)| *t == role.tool()) {
                return Err(ValidationError::new(
                    format!("{field}[{i}]"),
                    format!(
                        "{role} is a second role for {tool} after {earlier}: a group passes on at most one role per tool"
                    ),
                ));
            }
            by_tool.push((role.tool(), *role));
        }
        by_tool.sort();
        Ok(by_tool)
    }
}

/// Changes to a group's own fields; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupUpdate {
    pub display_name: Option<DisplayName>,
    pub is_organization: Option<bool>,
    pub etag: Option<Etag>,
}

/// Filters of a user listing; all given filters must match.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct UserFilter {
    /// Lower-cased substring of the display name or email.
    pub query: Option<String>,
    pub role: Option<Role>,
    pub group_id: Option<GroupId>,
    pub state: Option<UserState>,
}

/// Which groups a listing returns.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct GroupFilter {
    pub parent_id: Option<GroupId>,
    pub top_level_only: bool,
    pub organizations_only: bool,
    /// Lower-cased substring of the display name.
    pub query: Option<String>,
}
