//! The directory's business rules, as pure functions over the facts a write
//! reads under its tenant's lock (the storage layer reads them, calls these, and
//! writes only when they pass). A refusal is one [`RuleViolation`], which names
//! the resources that block the write; the gRPC layer turns it into
//! FAILED_PRECONDITION with its reason in `ErrorInfo` and its subjects in
//! `PreconditionFailure`.
//!
//! The rules (DOMAIN.md):
//! - a tenant always keeps an active Global Admin ADMIN ([`keep_an_administrator`]);
//! - only users whose Global Admin role is GROUP_ADMINISTRATOR administer groups
//!   ([`eligible_as_administrators`]), and a user who administers groups cannot
//!   lose that role or be deleted until they are removed as administrator
//!   ([`release_administered_groups`]);
//! - only top-level groups are organizations ([`may_be_organization`]); an
//!   organization is never nested, a group never moves into its own subtree,
//!   and a group holding catalog assignments stays top-level ([`may_move`]);
//! - catalogs are assigned to organizations only ([`may_hold_catalogs`]);
//! - a group with subgroups or members is deleted only with `cascade`
//!   ([`may_delete`]).

use super::{Group, GroupId, User, UserId, UserState};
use cohort_shared::catalog::Role;

/// A write the directory's rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleViolation {
    #[error("user {user} is the tenant's last active Global Admin ADMIN")]
    LastGlobalAdmin { user: UserId },
    #[error(
        "only users whose Global Admin role is GROUP_ADMINISTRATOR can administer groups: {}",
        joined(.users)
    )]
    NotEligibleAsAdministrator { users: Vec<UserId> },
    #[error(
        "user {user} still administers groups {}; remove them as administrator first",
        joined(.groups)
    )]
    StillAdministersGroups { user: UserId, groups: Vec<GroupId> },
    #[error("group {group} is a subgroup; only top-level groups can be organizations")]
    NotTopLevel { group: GroupId },
    #[error("group {group} is an organization; an organization cannot be moved under a parent")]
    OrganizationCannotBeNested { group: GroupId },
    #[error("group {parent} is {group} itself or one of its subgroups")]
    WouldCreateCycle { group: GroupId, parent: GroupId },
    #[error(
        "group {group} has {assignments} catalog assignments; a subgroup cannot hold them (unassign first)"
    )]
    HasCatalogAssignments { group: GroupId, assignments: i64 },
    #[error(
        "group {group} has {subgroups} subgroups and {members} members; remove them first or delete with cascade"
    )]
    GroupNotEmpty {
        group: GroupId,
        subgroups: i64,
        members: i64,
    },
    #[error("group {group} is not an organization; catalogs are assigned to organizations")]
    NotAnOrganization { group: GroupId },
}

impl RuleViolation {
    /// The machine-readable reason (`ErrorInfo.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            RuleViolation::LastGlobalAdmin { .. } => "LAST_GLOBAL_ADMIN",
            RuleViolation::NotEligibleAsAdministrator { .. } => "NOT_ELIGIBLE_AS_ADMINISTRATOR",
            RuleViolation::StillAdministersGroups { .. } => "STILL_ADMINISTERS_GROUPS",
            RuleViolation::NotTopLevel { .. } => "NOT_TOP_LEVEL",
            RuleViolation::OrganizationCannotBeNested { .. } => "ORGANIZATION_CANNOT_BE_NESTED",
            RuleViolation::WouldCreateCycle { .. } => "WOULD_CREATE_CYCLE",
            RuleViolation::HasCatalogAssignments { .. } => "HAS_CATALOG_ASSIGNMENTS",
            RuleViolation::GroupNotEmpty { .. } => "GROUP_NOT_EMPTY",
            RuleViolation::NotAnOrganization { .. } => "NOT_AN_ORGANIZATION",
        }
    }

    /// The resources that block the write (`PreconditionFailure` subjects).
    pub fn subjects(&self) -> Vec<String> {
        match self {
            RuleViolation::LastGlobalAdmin { user } => vec![user.to_string()],
            RuleViolation::NotEligibleAsAdministrator { users } => {
                users.iter().map(ToString::to_string).collect()
            }
            RuleViolation::StillAdministersGroups { groups, .. } => {
                groups.iter().map(ToString::to_string).collect()
            }
            RuleViolation::WouldCreateCycle { parent, .. } => vec![parent.to_string()],
            RuleViolation::NotTopLevel { group }
            | RuleViolation::OrganizationCannotBeNested { group }
            | RuleViolation::HasCatalogAssignments { group, .. }
            | RuleViolation::GroupNotEmpty { group, .. }
            | RuleViolation::NotAnOrganization { group } => vec![group.to_string()],
        }
    }
}

fn joined(ids: &[impl ToString]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub type RuleResult = Result<(), RuleViolation>;

/// Whether `user` counts as one of the tenant's active Global Admin ADMINs.
pub fn is_active_admin(user: &User) -> bool {
    user.state == UserState::Active && user.roles.contains(Role::GlobalAdminAdmin)
}

/// `before` is about to lose the role or be suspended or deleted; `others` is
/// how many other active Global Admin ADMINs the tenant has (asked only when
/// [`is_active_admin`] holds for `before`).
pub fn keep_an_administrator(before: &User, others: i64) -> RuleResult {
    if is_active_admin(before) && others == 0 {
        return Err(RuleViolation::LastGlobalAdmin { user: before.id });
    }
    Ok(())
}

/// The users who are to administer groups must hold Global Admin
/// GROUP_ADMINISTRATOR.
pub fn eligible_as_administrators(users: &[User]) -> RuleResult {
    let ineligible: Vec<UserId> = users
        .iter()
        .filter(|u| !u.may_administer_groups())
        .map(|u| u.id)
        .collect();
    if ineligible.is_empty() {
        Ok(())
    } else {
        Err(RuleViolation::NotEligibleAsAdministrator { users: ineligible })
    }
}

/// A user leaving administration (losing GROUP_ADMINISTRATOR, or being deleted)
/// must administer no group any more.
pub fn release_administered_groups(user: UserId, administered: Vec<GroupId>) -> RuleResult {
    if administered.is_empty() {
        Ok(())
    } else {
        Err(RuleViolation::StillAdministersGroups {
            user,
            groups: administered,
        })
    }
}

/// Turning the organization flag on: top-level groups only.
pub fn may_be_organization(group: &Group, flag: bool) -> RuleResult {
    if flag && group.parent_id.is_some() {
        return Err(RuleViolation::NotTopLevel { group: group.id });
    }
    Ok(())
}

/// The facts a move under a new parent depends on.
#[derive(Debug, Clone, Copy)]
pub struct MoveFacts {
    /// The new parent is the group itself or in its subtree.
    pub parent_in_subtree: bool,
    /// How many catalogs are assigned to the group.
    pub catalog_assignments: i64,
}

/// Moving `group` under `parent` (moving to the top level breaks no rule).
/// Storage asks [`may_be_nested`] before it reads the facts, which a refused
/// organization does not need.
pub fn may_move(group: &Group, parent: GroupId, facts: MoveFacts) -> RuleResult {
    may_be_nested(group)?;
    if facts.parent_in_subtree {
        return Err(RuleViolation::WouldCreateCycle {
            group: group.id,
            parent,
        });
    }
    if facts.catalog_assignments > 0 {
        return Err(RuleViolation::HasCatalogAssignments {
            group: group.id,
            assignments: facts.catalog_assignments,
        });
    }
    Ok(())
}

/// An organization is never nested (the first part of [`may_move`]).
pub fn may_be_nested(group: &Group) -> RuleResult {
    if group.is_organization {
        return Err(RuleViolation::OrganizationCannotBeNested { group: group.id });
    }
    Ok(())
}

/// Assigning catalogs: organizations only.
pub fn may_hold_catalogs(group: &Group) -> RuleResult {
    if !group.is_organization {
        return Err(RuleViolation::NotAnOrganization { group: group.id });
    }
    Ok(())
}

/// Deleting a group: without `cascade`, only an empty one.
pub fn may_delete(group: &Group, cascade: bool) -> RuleResult {
    if !cascade && (group.subgroup_count > 0 || group.member_count > 0) {
        return Err(RuleViolation::GroupNotEmpty {
            group: group.id,
            subgroups: group.subgroup_count,
            members: group.member_count,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DisplayName, Email, TenantId};
    use chrono::Utc;
    use cohort_shared::catalog::RoleSet;

    fn user(roles: &[Role], state: UserState) -> User {
        User {
            id: UserId::generate(),
            tenant_id: TenantId(uuid::Uuid::nil()),
            display_name: DisplayName::parse("name", "Ada").unwrap(),
            email: Email::parse("email", "ada@example.test").unwrap(),
            roles: RoleSet::new(roles.iter().copied()).unwrap(),
            state,
            create_time: Utc::now(),
            update_time: Utc::now(),
            revision: 1,
        }
    }

    fn group(parent: Option<GroupId>, organization: bool) -> Group {
        Group {
            id: GroupId::generate(),
            tenant_id: TenantId(uuid::Uuid::nil()),
            display_name: DisplayName::parse("name", "Team").unwrap(),
            parent_id: parent,
            is_organization: organization,
            subgroup_count: 0,
            member_count: 0,
            administrator_count: 0,
            inherited_roles: Default::default(),
            create_time: Utc::now(),
            update_time: Utc::now(),
            revision: 1,
        }
    }

    #[test]
    fn the_last_active_global_admin_admin_is_kept() {
        let admin = user(&[Role::GlobalAdminAdmin], UserState::Active);
        let refused = keep_an_administrator(&admin, 0).unwrap_err();
        assert_eq!(refused.reason(), "LAST_GLOBAL_ADMIN");
        assert_eq!(refused.subjects(), [admin.id.to_string()]);
        assert!(keep_an_administrator(&admin, 1).is_ok());
        // A suspended admin or a plain user is no last admin to keep.
        let suspended = user(&[Role::GlobalAdminAdmin], UserState::Suspended);
        assert!(keep_an_administrator(&suspended, 0).is_ok());
        let plain = user(&[Role::GlobalAdminUser], UserState::Active);
        assert!(keep_an_administrator(&plain, 0).is_ok());
    }

    #[test]
    fn only_group_administrators_administer_and_keep_their_role_while_they_do() {
        let eligible = user(&[Role::GlobalAdminGroupAdministrator], UserState::Active);
        let admin = user(&[Role::GlobalAdminAdmin], UserState::Active);
        let plain = user(&[Role::GlobalAdminUser], UserState::Active);
        assert!(eligible_as_administrators(std::slice::from_ref(&eligible)).is_ok());
        let refused = eligible_as_administrators(&[eligible.clone(), admin.clone(), plain.clone()])
            .unwrap_err();
        assert_eq!(refused.reason(), "NOT_ELIGIBLE_AS_ADMINISTRATOR");
        assert_eq!(
            refused.subjects(),
            [admin.id.to_string(), plain.id.to_string()]
        );

        let groups = vec![GroupId::generate(), GroupId::generate()];
        let refused = release_administered_groups(eligible.id, groups.clone()).unwrap_err();
        assert_eq!(refused.reason(), "STILL_ADMINISTERS_GROUPS");
        assert_eq!(
            refused.subjects(),
            groups.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
        assert!(release_administered_groups(eligible.id, Vec::new()).is_ok());
    }

    #[test]
    fn organizations_are_top_level_never_nested_and_alone_hold_catalogs() {
        let org = group(None, true);
        let team = group(Some(org.id), false);
        let top = group(None, false);
        assert_eq!(
            may_be_organization(&team, true).unwrap_err().reason(),
            "NOT_TOP_LEVEL"
        );
        assert!(may_be_organization(&team, false).is_ok());
        assert!(may_be_organization(&top, true).is_ok());
        assert_eq!(
            may_hold_catalogs(&team).unwrap_err().subjects(),
            [team.id.to_string()]
        );
        assert!(may_hold_catalogs(&org).is_ok());
        assert_eq!(
            may_be_nested(&org).unwrap_err().reason(),
            "ORGANIZATION_CANNOT_BE_NESTED"
        );
    }

    #[test]
    fn moves_refuse_cycles_nested_organizations_and_nested_catalogs() {
        let org = group(None, true);
        let top = group(None, false);
        let fine = MoveFacts {
            parent_in_subtree: false,
            catalog_assignments: 0,
        };
        assert!(may_move(&top, org.id, fine).is_ok());
        assert_eq!(
            may_move(&org, top.id, fine).unwrap_err().reason(),
            "ORGANIZATION_CANNOT_BE_NESTED"
        );
        let cycle = may_move(
            &top,
            org.id,
            MoveFacts {
                parent_in_subtree: true,
                ..fine
            },
        )
        .unwrap_err();
        assert_eq!(cycle.reason(), "WOULD_CREATE_CYCLE");
        assert_eq!(
            cycle.subjects(),
            [org.id.to_string()],
            "the parent in the way"
        );
        let catalogs = may_move(
            &top,
            org.id,
            MoveFacts {
                catalog_assignments: 2,
                ..fine
            },
        )
        .unwrap_err();
        assert_eq!(catalogs.reason(), "HAS_CATALOG_ASSIGNMENTS");
    }

    #[test]
    fn only_empty_groups_are_deleted_without_cascade() {
        let mut team = group(None, false);
        assert!(may_delete(&team, false).is_ok());
        team.member_count = 1;
        let refused = may_delete(&team, false).unwrap_err();
        assert_eq!(refused.reason(), "GROUP_NOT_EMPTY");
        assert_eq!(refused.subjects(), [team.id.to_string()]);
        assert!(may_delete(&team, true).is_ok());
        team.member_count = 0;
        team.subgroup_count = 3;
        assert!(may_delete(&team, false).is_err());
    }
}
