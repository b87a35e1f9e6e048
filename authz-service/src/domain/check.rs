//! Checks, decided by one function, [`decide`], which writes its reasons as it
//! goes: an explanation can never disagree with the decision. Lookups
//! (`lookup.rs`) decide every candidate with the same function.
//!
//! Where a permission reaches (the scope of the grant, made concrete):
//! - tenant: everything in the tenant;
//! - own: the user themself (their content, projects, assigned trainings);
//! - administered groups: the groups the user administers (direct role) or the
//!   group granting the role (inherited role), each with its subgroups;
//! - member groups: the groups the user belongs to, counting every ancestor of a
//!   group they are a direct member of, each with its subgroups.
//!
//! A group is covered when a scope group is the group or one of its ancestors; a
//! user when one of their direct memberships is in a covered group; a catalog when
//! it is assigned to a covered active organization (or the scope is the tenant).
//! Organization features (reports, catalog access) reach only through groups whose
//! organization (top-level ancestor) has its flag on.
//!
//! One file on purpose: the decision and the explanation it writes are one function,
//! and the scope walks it takes are its helpers.

use cohort_shared::catalog::{self, ResourceKind, ScopeKind};
use smallvec::SmallVec;

use super::resolve::{resolve_slot, Held, Resolved};
use super::state::{GroupId, GroupSlot, TenantState, UserId, UserSlot};

/// What a check is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Tenant,
    Group(GroupId),
    User(UserId),
    Catalog(String),
}

impl Resource {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::Tenant => ResourceKind::Tenant,
            Resource::Group(_) => ResourceKind::Group,
            Resource::User(_) => ResourceKind::User,
            Resource::Catalog(_) => ResourceKind::Catalog,
        }
    }
}

/// A resource, with its slot looked up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Tenant,
    Group(GroupSlot),
    User(UserSlot),
    Catalog(&'a str),
}

/// Why a check could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("unknown permission `{0}`")]
    UnknownPermission(String),
    #[error("user {0} not found")]
    UserNotFound(UserId),
    #[error("group {0} not found")]
    GroupNotFound(GroupId),
    /// The permission is never granted on this kind of resource (the catalog's
    /// `resource_kinds`): asking would be a silent denial.
    #[error(
        "`{permission}` is checked on {} only (own content: its owner), not on {}",
        kinds_text(.applies_to),
        .asked.as_str()
    )]
    NotApplicable {
        permission: String,
        asked: ResourceKind,
        applies_to: &'static [ResourceKind],
    },
}

fn kinds_text(kinds: &[ResourceKind]) -> String {
    kinds
        .iter()
        .map(|k| format!("a {}", k.as_str()))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// A decision and, when asked for, the facts behind it in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub explanation: Vec<String>,
}

/// Records the facts a decision rests on, when an explanation was asked for.
pub(crate) struct Why(pub Option<Vec<String>>);

impl Why {
    pub fn none() -> Self {
        Why(None)
    }

    fn note(&mut self, fact: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.0 {
            lines.push(fact());
        }
    }
}

/// Where a role grants a permission, made concrete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Tenant,
    Own,
    /// These groups (in id order), each with its subgroups.
    Groups(Vec<GroupId>),
}

/// Where a held role grants a permission of one scope kind, worked out only as
/// far as a decision asks (no list is built unless it is reported).
pub(crate) enum Scope<'r> {
    Tenant,
    Own,
    /// The groups the user administers (for a role held directly) and the groups
    /// whose setting grants the role.
    Administered {
        resolved: &'r Resolved,
        held: Held,
    },
    /// The groups the user is in, with every ancestor.
    Members {
        resolved: &'r Resolved,
    },
}

impl<'r> Scope<'r> {
    pub fn of(resolved: &'r Resolved, held: &Held, kind: ScopeKind) -> Self {
        match kind {
            ScopeKind::Tenant => Scope::Tenant,
            ScopeKind::Own => Scope::Own,
            ScopeKind::AdministeredGroups => Scope::Administered {
                resolved,
                held: *held,
            },
            ScopeKind::MemberGroups => Scope::Members { resolved },
        }
    }

    /// Whether `group` is one of the scope's groups (not counting subgroups).
    fn contains(&self, state: &TenantState, group: GroupSlot) -> bool {
        match self {
            Scope::Tenant | Scope::Own => false,
            Scope::Administered { resolved, held } => {
                (held.direct && state.administers(resolved.user, group))
                    || resolved
                        .inherited_sources(held.role)
                        .any(|offer| offer.granting == group)
            }
            Scope::Members { resolved } => state
                .user(resolved.user)
                .memberships
                .iter()
                .any(|m| state.chain(m.group).any(|g| g == group)),
        }
    }

    /// The scope's groups, unordered and possibly repeated.
    pub fn groups(&self, state: &TenantState) -> SmallVec<[GroupSlot; 8]> {
        match self {
            Scope::Tenant | Scope::Own => SmallVec::new(),
            Scope::Administered { resolved, held } => {
                let mut groups: SmallVec<[GroupSlot; 8]> = SmallVec::new();
                if held.direct {
                    groups.extend(state.administered(resolved.user).iter().copied());
                }
                groups.extend(resolved.inherited_sources(held.role).map(|o| o.granting));
                groups
            }
            Scope::Members { resolved } => state
                .user(resolved.user)
                .memberships
                .iter()
                .flat_map(|m| state.chain(m.group))
                .collect(),
        }
    }

    /// The scope as reported.
    pub fn reach(&self, state: &TenantState) -> Reach {
        match self {
            Scope::Tenant => Reach::Tenant,
            Scope::Own => Reach::Own,
            _ => {
                let mut ids: Vec<GroupId> = self
                    .groups(state)
                    .into_iter()
                    .map(|g| state.group_id(g))
                    .collect();
                ids.sort();
                ids.dedup();
                Reach::Groups(ids)
            }
        }
    }

    /// The first of the group and its ancestors that is a scope group.
    pub fn covering(&self, state: &TenantState, group: GroupSlot) -> Option<GroupSlot> {
        state.chain(group).find(|g| self.contains(state, *g))
    }

    fn is_groups(&self) -> bool {
        matches!(self, Scope::Administered { .. } | Scope::Members { .. })
    }
}

pub fn check(
    state: &TenantState,
    user: UserId,
    permission: &str,
    resource: &Resource,
    explain: bool,
) -> Result<Decision, CheckError> {
    let (slot, target) = parse(state, user, permission, resource)?;
    Ok(decision(
        state,
        &resolve_slot(state, slot),
        permission,
        target,
        explain,
    ))
}

/// The user's slot and the target, or why there is nothing to decide.
fn parse<'a>(
    state: &TenantState,
    user: UserId,
    permission: &str,
    resource: &'a Resource,
) -> Result<(UserSlot, Target<'a>), CheckError> {
    let slot = state
        .user_slot(user)
        .ok_or(CheckError::UserNotFound(user))?;
    require_applicable(permission, resource.kind())?;
    Ok((slot, target(state, resource)?))
}

fn decision(
    state: &TenantState,
    resolved: &Resolved,
    permission: &str,
    target: Target<'_>,
    explain: bool,
) -> Decision {
    let mut why = Why(explain.then(Vec::new));
    let allowed = decide(state, resolved, permission, target, &mut why);
    Decision {
        allowed,
        explanation: why.0.unwrap_or_default(),
    }
}

/// Checks against one state that share the work of resolving a user between the
/// checks of the same user (a bulk check).
pub struct Checker<'s> {
    state: &'s TenantState,
    resolved: hashbrown::HashMap<UserSlot, Resolved>,
    /// The last user looked up, and the last permission found in the catalog:
    /// a bulk check's items usually come a user at a time and ask one thing.
    last_user: Option<(UserId, UserSlot)>,
    last_permission: Option<(String, &'static [ResourceKind])>,
}

impl<'s> Checker<'s> {
    pub fn new(state: &'s TenantState) -> Self {
        Checker {
            state,
            resolved: hashbrown::HashMap::new(),
            last_user: None,
            last_permission: None,
        }
    }

    pub fn check(
        &mut self,
        user: UserId,
        permission: &str,
        resource: &Resource,
        explain: bool,
    ) -> Result<Decision, CheckError> {
        let state = self.state;
        let slot = match self.last_user {
            Some((last, slot)) if last == user => slot,
            _ => {
                let slot = state
                    .user_slot(user)
                    .ok_or(CheckError::UserNotFound(user))?;
                self.last_user = Some((user, slot));
                slot
            }
        };
        let applies_to = match &self.last_permission {
            Some((last, kinds)) if last == permission => kinds,
            _ => {
                let kinds = require_permission(permission)?;
                &self
                    .last_permission
                    .insert((permission.to_owned(), kinds))
                    .1
            }
        };
        require_kind(permission, applies_to, resource.kind())?;
        let target = target(state, resource)?;
        let resolved = self
            .resolved
            .entry(slot)
            .or_insert_with(|| resolve_slot(state, slot));
        Ok(decision(state, resolved, permission, target, explain))
    }
}

/// The kinds of resource a catalog permission is checked on, or why the name is
/// no permission.
pub(crate) fn require_permission(permission: &str) -> Result<&'static [ResourceKind], CheckError> {
    catalog::applicable_kinds(permission)
        .ok_or_else(|| CheckError::UnknownPermission(permission.to_owned()))
}

/// That the permission exists and can be checked on this kind of resource.
pub(crate) fn require_applicable(permission: &str, asked: ResourceKind) -> Result<(), CheckError> {
    require_kind(permission, require_permission(permission)?, asked)
}

fn require_kind(
    permission: &str,
    applies_to: &'static [ResourceKind],
    asked: ResourceKind,
) -> Result<(), CheckError> {
    if applies_to.contains(&asked) {
        Ok(())
    } else {
        Err(CheckError::NotApplicable {
            permission: permission.to_owned(),
            asked,
            applies_to,
        })
    }
}

fn target<'a>(state: &TenantState, resource: &'a Resource) -> Result<Target<'a>, CheckError> {
    Ok(match resource {
        Resource::Tenant => Target::Tenant,
        Resource::Group(g) => {
            Target::Group(state.group_slot(*g).ok_or(CheckError::GroupNotFound(*g))?)
        }
        Resource::User(u) => Target::User(state.user_slot(*u).ok_or(CheckError::UserNotFound(*u))?),
        Resource::Catalog(c) => Target::Catalog(c),
    })
}

/// The one decision procedure behind checks and lookups.
pub(crate) fn decide(
    state: &TenantState,
    resolved: &Resolved,
    permission: &str,
    target: Target<'_>,
    why: &mut Why,
) -> bool {
    let user = state.user_id(resolved.user);
    if resolved.suspended {
        why.note(|| format!("user {user} is suspended: nothing is granted"));
        why.note(|| "denied".to_owned());
        return false;
    }
    let feature = catalog::is_organization_feature(permission);
    let mut granted = false;
    for held in &resolved.held {
        for grant in held
            .role
            .grants()
            .iter()
            .filter(|g| g.permission == permission)
        {
            granted = true;
            let scope = Scope::of(resolved, held, grant.scope);
            why.note(|| {
                format!(
                    "{} ({}) grants {permission} in {}",
                    held.role,
                    describe_sources(state, resolved, held),
                    describe(&scope.reach(state))
                )
            });
            if covers(state, resolved.user, &scope, target, feature, why) {
                why.note(|| "allowed".to_owned());
                return true;
            }
        }
    }
    if !granted {
        why.note(|| format!("no effective role of user {user} grants {permission}"));
    }
    why.note(|| "denied".to_owned());
    false
}

fn describe_sources(state: &TenantState, resolved: &Resolved, held: &Held) -> String {
    let direct = held.direct.then(|| "direct".to_owned());
    direct
        .into_iter()
        .chain(
            resolved
                .inherited_sources(held.role)
                .map(|o| format!("inherited from group {}", state.group_id(o.granting))),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(reach: &Reach) -> String {
    match reach {
        Reach::Tenant => "the whole tenant".to_owned(),
        Reach::Own => "the user's own content".to_owned(),
        Reach::Groups(groups) if groups.is_empty() => "no group".to_owned(),
        Reach::Groups(groups) => format!(
            "groups {} and their subgroups",
            groups
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn active_root(state: &TenantState, group: GroupSlot) -> bool {
    state.is_active_organization(state.root(group))
}

fn covers(
    state: &TenantState,
    user: UserSlot,
    scope: &Scope<'_>,
    target: Target<'_>,
    feature: bool,
    why: &mut Why,
) -> bool {
    match (scope, target) {
        (Scope::Own, Target::User(target)) if target == user => {
            why.note(|| "the resource is the user themself".to_owned());
            true
        }
        (Scope::Own, _) => false,
        (Scope::Tenant, Target::Tenant) => true,
        (_, Target::Tenant) => {
            why.note(|| "a group scope does not reach the whole tenant".to_owned());
            false
        }
        (_, Target::Catalog(catalog)) => {
            let organizations = state.catalogs.get(catalog).map_or(&[][..], Vec::as_slice);
            let reached = organizations.iter().find(|o| {
                state.is_active_organization(**o)
                    && (!scope.is_groups() || scope.covering(state, **o).is_some())
            });
            match reached {
                Some(o) => {
                    why.note(|| {
                        format!(
                            "catalog {catalog} is assigned to active organization {} in reach",
                            state.group_id(*o)
                        )
                    });
                    true
                }
                None => {
                    why.note(|| {
                        format!("catalog {catalog} is assigned to no active organization in reach")
                    });
                    false
                }
            }
        }
        (_, Target::Group(group)) => {
            let reached = if scope.is_groups() {
                scope.covering(state, group)
            } else {
                Some(group)
            };
            let Some(via) = reached else {
                why.note(|| {
                    format!(
                        "group {} is under none of those groups",
                        state.group_id(group)
                    )
                });
                return false;
            };
            if feature && !active_root(state, group) {
                why.note(|| {
                    format!(
                        "group {} is not in an active organization (an organization feature)",
                        state.group_id(group)
                    )
                });
                return false;
            }
            why.note(|| {
                format!(
                    "group {} is reached through group {}",
                    state.group_id(group),
                    state.group_id(via)
                )
            });
            true
        }
        (_, Target::User(target)) => {
            let reached = state.user(target).memberships.iter().find_map(|m| {
                let through = if scope.is_groups() {
                    scope.covering(state, m.group)?
                } else {
                    m.group
                };
                (!feature || active_root(state, m.group)).then_some((m.group, through))
            });
            match reached {
                Some((member_of, through)) => {
                    why.note(|| {
                        format!(
                            "user {} is a member of group {}, reached through group {}",
                            state.user_id(target),
                            state.group_id(member_of),
                            state.group_id(through)
                        )
                    });
                    true
                }
                None if !feature && matches!(scope, Scope::Tenant) => true,
                None => {
                    why.note(|| {
                        format!(
                            "user {} is in no group within reach{}",
                            state.user_id(target),
                            if feature {
                                " of an active organization"
                            } else {
                                ""
                            }
                        )
                    });
                    false
                }
            }
        }
    }
}
