//! Validated sets of a user's direct roles.

use crate::{compatibility_rule, Role, Tool};

/// Why a set of direct roles is not a valid assignment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleSetError {
    #[error("a user must hold exactly one Global Admin role")]
    MissingGlobalAdminRole,
    #[error("{first} and {second} are incompatible: {tool} roles {rule}")]
    Incompatible {
        tool: &'static str,
        first: Role,
        second: Role,
        rule: &'static str,
    },
    #[error("{role} requires the Global Admin role GROUP_ADMINISTRATOR")]
    RequiresGlobalAdminGroupAdministrator { role: Role },
}

/// A valid set of direct roles: sorted, without duplicates, with implied roles
/// added.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RoleSet(Vec<Role>);

impl RoleSet {
    /// Validates a user's direct roles against the catalog rules. Duplicates are
    /// folded and implied roles (LMS USER) are added.
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Result<Self, RoleSetError> {
        let mut roles: Vec<Role> = roles.into_iter().collect();
        for tool in Tool::ALL {
            if let Some(implied) = tool.implied_role() {
                if roles.iter().any(|r| r.tool() == tool) && !roles.contains(&implied) {
                    roles.push(implied);
                }
            }
        }
        roles.sort();
        roles.dedup();

        for (i, &first) in roles.iter().enumerate() {
            if let Some(&second) = roles[i + 1..]
                .iter()
                .find(|&&r| !first.is_compatible_with(r))
            {
                return Err(RoleSetError::Incompatible {
                    tool: first.tool().title(),
                    first,
                    second,
                    rule: compatibility_rule(first.tool()),
                });
            }
        }
        if !roles.iter().any(|r| r.tool() == Tool::GlobalAdmin) {
            return Err(RoleSetError::MissingGlobalAdminRole);
        }
        if roles.contains(&Role::LmsGroupAdministrator)
            && !roles.contains(&Role::GlobalAdminGroupAdministrator)
        {
            return Err(RoleSetError::RequiresGlobalAdminGroupAdministrator {
                role: Role::LmsGroupAdministrator,
            });
        }
        Ok(RoleSet(roles))
    }

    /// Rebuilds a set that was valid when it was stored, without re-checking the
    /// compatibility rules (so that a later catalog change cannot make stored users
    /// unreadable). It still requires the Global Admin role every user holds.
    pub fn from_stored(roles: impl IntoIterator<Item = Role>) -> Result<Self, RoleSetError> {
        let mut roles: Vec<Role> = roles.into_iter().collect();
        roles.sort();
        roles.dedup();
        if !roles.iter().any(|r| r.tool() == Tool::GlobalAdmin) {
            return Err(RoleSetError::MissingGlobalAdminRole);
        }
        Ok(RoleSet(roles))
    }

    pub fn roles(&self) -> &[Role] {
        &self.0
    }

    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    /// The user's one Global Admin role.
    pub fn global_admin_role(&self) -> Role {
        self.0
            .iter()
            .copied()
            .find(|r| r.tool() == Tool::GlobalAdmin)
            .expect("a RoleSet always holds a Global Admin role")
    }
}
