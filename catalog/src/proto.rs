//! Conversions between the catalog's [`Role`]/[`Tool`] and their proto enums
//! (the `proto` feature, which adds the generated code of `cohort-api`).
//!
//! Names match by construction (`ROLE_` + [`Role::as_str`]), matched once into a
//! table; the tests check that every proto value has a catalog counterpart and
//! back.

use std::sync::LazyLock;

use cohort_api::catalog::v1 as pb;

use crate::{ResourceKind, Role, ScopeKind, Tool};

/// A proto enum value that is unspecified or unknown to this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEnum(pub String);

/// Every role with its proto value, matched by name once: answers convert many
/// roles, and a name built and parsed per role was a visible share of a
/// `GetEffectiveRoles` call.
static ROLES: LazyLock<Vec<(Role, pb::Role)>> = LazyLock::new(|| {
    Role::ALL
        .iter()
        .map(|role| {
            let value = pb::Role::from_str_name(&format!("ROLE_{}", role.as_str()))
                .expect("every catalog role has a proto value (checked by a test)");
            (*role, value)
        })
        .collect()
});

/// Every tool with its proto value, matched by name once.
static TOOLS: LazyLock<Vec<(Tool, pb::Tool)>> = LazyLock::new(|| {
    Tool::ALL
        .iter()
        .map(|tool| {
            let value = pb::Tool::from_str_name(&format!("TOOL_{}", tool.as_str()))
                .expect("every catalog tool has a proto value (checked by a test)");
            (*tool, value)
        })
        .collect()
});

impl From<Role> for pb::Role {
    fn from(role: Role) -> Self {
        ROLES
            .iter()
            .find_map(|(r, value)| (*r == role).then_some(*value))
            .expect("every role is in Role::ALL")
    }
}

impl From<Tool> for pb::Tool {
    fn from(tool: Tool) -> Self {
        TOOLS
            .iter()
            .find_map(|(t, value)| (*t == tool).then_some(*value))
            .expect("every tool is in Tool::ALL")
    }
}

impl From<ScopeKind> for pb::ScopeKind {
    fn from(kind: ScopeKind) -> Self {
        match kind {
            ScopeKind::Tenant => pb::ScopeKind::Tenant,
            ScopeKind::AdministeredGroups => pb::ScopeKind::AdministeredGroups,
            ScopeKind::MemberGroups => pb::ScopeKind::MemberGroups,
            ScopeKind::Own => pb::ScopeKind::Own,
        }
    }
}

impl From<ResourceKind> for pb::ResourceKind {
    fn from(kind: ResourceKind) -> Self {
        match kind {
            ResourceKind::Tenant => pb::ResourceKind::Tenant,
            ResourceKind::Group => pb::ResourceKind::Group,
            ResourceKind::User => pb::ResourceKind::User,
            ResourceKind::Catalog => pb::ResourceKind::Catalog,
        }
    }
}

/// Reads a role from its wire value (an `i32`, as prost keeps enums).
pub fn role_from_proto(value: i32) -> Result<Role, InvalidEnum> {
    let value = pb::Role::try_from(value)
        .map_err(|_| InvalidEnum(format!("unknown role value {value}")))?;
    ROLES
        .iter()
        .find_map(|(role, v)| (*v == value).then_some(*role))
        .ok_or_else(|| InvalidEnum("a role must be specified".to_owned()))
}

/// Reads a tool from its wire value.
pub fn tool_from_proto(value: i32) -> Result<Tool, InvalidEnum> {
    let value = pb::Tool::try_from(value)
        .map_err(|_| InvalidEnum(format!("unknown tool value {value}")))?;
    TOOLS
        .iter()
        .find_map(|(tool, v)| (*v == value).then_some(*tool))
        .ok_or_else(|| InvalidEnum("a tool must be specified".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_and_tool_round_trips_through_proto() {
        for role in Role::ALL {
            assert_eq!(role_from_proto(pb::Role::from(role) as i32), Ok(role));
        }
        for tool in Tool::ALL {
            assert_eq!(tool_from_proto(pb::Tool::from(tool) as i32), Ok(tool));
        }
    }

    #[test]
    fn every_proto_value_but_unspecified_is_in_the_catalog() {
        for value in 0..64 {
            if let Ok(role) = pb::Role::try_from(value) {
                assert_eq!(
                    role_from_proto(value).is_ok(),
                    role != pb::Role::Unspecified
                );
            }
            if let Ok(tool) = pb::Tool::try_from(value) {
                assert_eq!(
                    tool_from_proto(value).is_ok(),
                    tool != pb::Tool::Unspecified
                );
            }
        }
        assert!(role_from_proto(999).is_err());
    }
}
