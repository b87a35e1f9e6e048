//! Checks and reverse lookups, decided by one function, [`decide`], which writes
//! its reasons as it goes: an explanation can never disagree with the decision.
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

use cohort_shared::catalog::{self, Role, ScopeKind};

use super::resolve::{resolve_slot, HeldRole, Resolution, Source};
use super::state::{GroupId, GroupSlot, TenantState, UserId, UserSlot};

/// What a check is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Tenant,
    Group(GroupId),
    User(UserId),
    Catalog(String),
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
}

/// A decision and, when asked for, the facts behind it in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub explanation: Vec<String>,
}

/// Records the facts a decision rests on, when an explanation was asked for.
struct Why(Option<Vec<String>>);

impl Why {
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
    /// These groups, each with its subgroups.
    Groups(Vec<GroupId>),
}

pub fn check(
    state: &TenantState,
    user: UserId,
    permission: &str,
    resource: &Resource,
    explain: bool,
) -> Result<Decision, CheckError> {
    let slot = state
        .user_slot(user)
        .ok_or(CheckError::UserNotFound(user))?;
    require_permission(permission)?;
    require_resource(state, resource)?;
    let resolution = resolve_slot(state, slot);
    let mut why = Why(explain.then(Vec::new));
    let allowed = decide(state, slot, &resolution, permission, resource, &mut why);
    Ok(Decision {
        allowed,
        explanation: why.0.unwrap_or_default(),
    })
}

fn require_permission(permission: &str) -> Result<(), CheckError> {
    if catalog::is_permission(permission) {
        Ok(())
    } else {
        Err(CheckError::UnknownPermission(permission.to_owned()))
    }
}

fn require_resource(state: &TenantState, resource: &Resource) -> Result<(), CheckError> {
    match resource {
        Resource::Group(g) if !state.has_group(*g) => Err(CheckError::GroupNotFound(*g)),
        Resource::User(u) if !state.has_user(*u) => Err(CheckError::UserNotFound(*u)),
        _ => Ok(()),
    }
}

/// The one decision procedure behind checks and lookups.
fn decide(
    state: &TenantState,
    slot: UserSlot,
    resolution: &Resolution,
    permission: &str,
    resource: &Resource,
    why: &mut Why,
) -> bool {
    let user = state.user(slot).id;
    if resolution.suspended {
        why.note(|| format!("user {user} is suspended: nothing is granted"));
        why.note(|| "denied".to_owned());
        return false;
    }
    let feature = catalog::is_organization_feature(permission);
    let mut granted = false;
    for held in resolution.held() {
        for grant in held
            .role
            .grants()
            .iter()
            .filter(|g| g.permission == permission)
        {
            granted = true;
            let reach = reach(state, slot, held, grant.scope);
            why.note(|| {
                format!(
                    "{} ({}) grants {permission} in {}",
                    held.role,
                    describe_sources(held),
                    describe(&reach)
                )
            });
            if covers(state, slot, &reach, resource, feature, why) {
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

fn describe_sources(held: &HeldRole) -> String {
    held.sources
        .iter()
        .map(|s| match s {
            Source::Direct => "direct".to_owned(),
            Source::Inherited(via) => format!("inherited from group {}", via.group),
        })
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

/// Where `held` grants a permission of scope `kind`.
pub(crate) fn reach(
    state: &TenantState,
    slot: UserSlot,
    held: &HeldRole,
    kind: ScopeKind,
) -> Reach {
    let user = state.user(slot);
    let mut groups: Vec<GroupId> = match kind {
        ScopeKind::Tenant => return Reach::Tenant,
        ScopeKind::Own => return Reach::Own,
        ScopeKind::AdministeredGroups => held
            .sources
            .iter()
            .flat_map(|source| match source {
                Source::Direct => user
                    .administers
                    .iter()
                    .map(|g| state.group(*g).id)
                    .collect::<Vec<_>>(),
                Source::Inherited(via) => vec![via.group],
            })
            .collect(),
        ScopeKind::MemberGroups => user
            .memberships
            .iter()
            .flat_map(|(g, _)| state.ancestors_or_self(*g))
            .map(|g| state.group(g).id)
            .collect(),
    };
    groups.sort();
    groups.dedup();
    Reach::Groups(groups)
}

/// The reach that characterizes a role as a whole (for reporting and role
/// lookups): its group scope if it has one, else the tenant, else the user's own
/// member groups.
pub(crate) fn role_reach(state: &TenantState, slot: UserSlot, held: &HeldRole) -> Reach {
    let kinds: Vec<ScopeKind> = held.role.grants().iter().map(|g| g.scope).collect();
    for kind in [
        ScopeKind::AdministeredGroups,
        ScopeKind::MemberGroups,
        ScopeKind::Tenant,
    ] {
        if kinds.contains(&kind) {
            return reach(state, slot, held, kind);
        }
    }
    reach(state, slot, held, ScopeKind::Own)
}

fn in_scope(state: &TenantState, scope: &[GroupId], group: GroupSlot) -> Option<GroupId> {
    state
        .ancestors_or_self(group)
        .into_iter()
        .map(|g| state.group(g).id)
        .find(|g| scope.contains(g))
}

fn active_root(state: &TenantState, group: GroupSlot) -> bool {
    state.is_active_organization(state.root(group))
}

fn covers(
    state: &TenantState,
    slot: UserSlot,
    reach: &Reach,
    resource: &Resource,
    feature: bool,
    why: &mut Why,
) -> bool {
    let user = state.user(slot);
    match (reach, resource) {
        (Reach::Own, Resource::User(target)) if *target == user.id => {
            why.note(|| "the resource is the user themself".to_owned());
            true
        }
        (Reach::Own, _) => false,
        (Reach::Tenant, Resource::Tenant) => true,
        (Reach::Groups(_), Resource::Tenant) => {
            why.note(|| "a group scope does not reach the whole tenant".to_owned());
            false
        }
        (_, Resource::Catalog(catalog)) => {
            let organizations = state.catalogs.get(catalog).cloned().unwrap_or_default();
            let reached = organizations.iter().find(|o| {
                state.is_active_organization(**o)
                    && match reach {
                        Reach::Groups(scope) => in_scope(state, scope, **o).is_some(),
                        _ => true,
                    }
            });
            match reached {
                Some(o) => {
                    why.note(|| {
                        format!(
                            "catalog {catalog} is assigned to active organization {} in reach",
                            state.group(*o).id
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
        (_, Resource::Group(group)) => {
            let slot = state
                .group_slot(*group)
                .expect("checked by require_resource");
            let reached = match reach {
                Reach::Groups(scope) => in_scope(state, scope, slot),
                _ => Some(*group),
            };
            let Some(via) = reached else {
                why.note(|| format!("group {group} is under none of those groups"));
                return false;
            };
            if feature && !active_root(state, slot) {
                why.note(|| {
                    format!(
                        "group {group} is not in an active organization (an organization feature)"
                    )
                });
                return false;
            }
            why.note(|| format!("group {group} is reached through group {via}"));
            true
        }
        (_, Resource::User(target)) => {
            let target_slot = state
                .user_slot(*target)
                .expect("checked by require_resource");
            let memberships = &state.user(target_slot).memberships;
            let reached = memberships.iter().find_map(|(g, _)| {
                let through = match reach {
                    Reach::Groups(scope) => in_scope(state, scope, *g)?,
                    _ => state.group(*g).id,
                };
                (!feature || active_root(state, *g)).then_some((state.group(*g).id, through))
            });
            match reached {
                Some((member_of, through)) => {
                    why.note(|| format!("user {target} is a member of group {member_of}, reached through group {through}"));
                    true
                }
                None if !feature && matches!(reach, Reach::Tenant) => true,
                None => {
                    why.note(|| {
                        format!(
                            "user {target} is in no group within reach{}",
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

/// What a subject lookup asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    Role(Role),
    Permission(String),
}

/// Every user who holds the role or permission on `group` (through direct roles,
/// inheritance, subgroup membership or administration), in id order.
pub fn lookup_subjects(
    state: &TenantState,
    group: GroupId,
    holding: &Holding,
) -> Result<Vec<UserId>, CheckError> {
    let target = state
        .group_slot(group)
        .ok_or(CheckError::GroupNotFound(group))?;
    if let Holding::Permission(p) = holding {
        require_permission(p)?;
    }
    let relevant = |role: Role| match holding {
        Holding::Role(r) => role == *r,
        Holding::Permission(p) => role.grants().iter().any(|g| g.permission == p),
    };
    // Everyone who could hold it on the group; the exact decision filters them.
    // Holders of a relevant direct role; administrators of the group or of an
    // ancestor; members anywhere in the group's tree (member and administered
    // scopes reach no further); members under any group that passes a relevant
    // role on (its grants may be tenant-wide).
    let mut candidates: Vec<UserSlot> = Vec::new();
    for (slot, user) in state.users.iter().enumerate() {
        if user
            .as_ref()
            .is_some_and(|u| u.roles.iter().any(|r| relevant(*r)))
        {
            candidates.push(slot as UserSlot);
        }
    }
    for g in state.ancestors_or_self(target) {
        candidates.extend(state.group(g).administrators.iter().copied());
    }
    let mut roots = vec![state.root(target)];
    for (slot, g) in state.groups.iter().enumerate() {
        if g.as_ref()
            .is_some_and(|g| g.inherited.iter().any(|r| relevant(*r)))
        {
            roots.push(slot as GroupSlot);
        }
    }
    for root in roots {
        for g in state.subtree(root) {
            candidates.extend(state.group(g).members.iter().copied());
        }
    }
    candidates.sort();
    candidates.dedup();

    let resource = Resource::Group(group);
    let mut holders: Vec<UserId> = candidates
        .into_iter()
        .filter(|slot| {
            let resolution = resolve_slot(state, *slot);
            match holding {
                Holding::Permission(p) => {
                    decide(state, *slot, &resolution, p, &resource, &mut Why(None))
                }
                Holding::Role(role) => holds_role_on(state, *slot, &resolution, *role, target),
            }
        })
        .map(|slot| state.user(slot).id)
        .collect();
    holders.sort();
    Ok(holders)
}

fn holds_role_on(
    state: &TenantState,
    slot: UserSlot,
    resolution: &Resolution,
    role: Role,
    group: GroupSlot,
) -> bool {
    let Some(held) = resolution.held().find(|h| h.role == role) else {
        return false;
    };
    match role_reach(state, slot, held) {
        Reach::Tenant => true,
        Reach::Groups(scope) => in_scope(state, &scope, group).is_some(),
        Reach::Own => {
            let members: Vec<GroupId> = state
                .user(slot)
                .memberships
                .iter()
                .flat_map(|(g, _)| state.ancestors_or_self(*g))
                .map(|g| state.group(g).id)
                .collect();
            in_scope(state, &members, group).is_some()
        }
    }
}

/// Every group on which `user` holds `permission`, in id order.
pub fn lookup_groups(
    state: &TenantState,
    user: UserId,
    permission: &str,
) -> Result<Vec<GroupId>, CheckError> {
    let slot = state
        .user_slot(user)
        .ok_or(CheckError::UserNotFound(user))?;
    require_permission(permission)?;
    let resolution = resolve_slot(state, slot);
    // `group_ids` is in id order, and filtering keeps it.
    let groups: Vec<GroupId> = state
        .group_ids()
        .into_iter()
        .filter(|g| {
            decide(
                state,
                slot,
                &resolution,
                permission,
                &Resource::Group(*g),
                &mut Why(None),
            )
        })
        .collect();
    Ok(groups)
}
