//! Reverse lookups: who holds a role or permission on a group, and on which groups
//! a user holds a permission. Both page in id order and stop as soon as a page is
//! full, and both decide every candidate with the checks' own procedure
//! ([`decide`]), so a lookup can never disagree with a check. A subject lookup
//! spares two kinds of candidates that resolution, by rules of the resolution
//! itself: a user given a role that grants the permission tenant-wide holds it
//! (inherited roles only ever add), and a user who could hold none of the roles
//! that give it does not ([`super::resolve`]'s `may_hold_any`); the tests hold
//! both against brute force on random worlds.
//!
//! Who can hold a permission on a group `g` (the candidates, from the indexes of
//! `index.rs`), by the scope of the grants that give it:
//! - tenant-wide grants: the role's direct holders, and the users a group setting
//!   offers it to;
//! - administered-group grants: the administrators of `g` and of its ancestors,
//!   and the users offered the role by `g` or one of its ancestors who could
//!   take the offer;
//! - member-group grants: the users with a membership in `g`'s tree (a member
//!   anywhere in the tree is in the organization, and so reaches `g`);
//! - own grants never reach a group: a permission granted only on own content
//!   and tenant-wide is no question about groups (INVALID_ARGUMENT, as in checks).
//!
//! Which groups a user holds a permission on: every group when a tenant-wide grant
//! gives it (walked in id order until the page is full), else the subtrees of the
//! scope's groups.

use std::ops::Bound;

use cohort_shared::catalog::{self, ResourceKind, Role, ScopeKind};
use uuid::Uuid;

use super::check::{decide, require_applicable, CheckError, Scope, Target, Why};
use super::index::OrderedUsers;
use super::resolve::{may_hold_any, resolve_slot, role_kind, Resolved};
use super::state::{GroupId, GroupSlot, RoleMask, TenantState, UserId, UserSlot};

/// What a subject lookup asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    Role(Role),
    Permission(String),
}

/// One page of a lookup's answer, and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

/// Every user who holds the role or permission on `group` (through direct roles,
/// inheritance, subgroup membership or administration), in id order.
pub fn lookup_subjects(
    state: &TenantState,
    group: GroupId,
    holding: &Holding,
) -> Result<Vec<UserId>, CheckError> {
    Ok(lookup_subjects_page(state, group, holding, None, usize::MAX)?.items)
}

/// The holders of the role or permission on `group` whose ids follow `after`, at
/// most `limit` of them, in id order.
pub fn lookup_subjects_page(
    state: &TenantState,
    group: GroupId,
    holding: &Holding,
    after: Option<UserId>,
    limit: usize,
) -> Result<Page<UserId>, CheckError> {
    let target = state
        .group_slot(group)
        .ok_or(CheckError::GroupNotFound(group))?;
    if let Holding::Permission(p) = holding {
        require_applicable(p, ResourceKind::Group)?;
        if catalog::is_organization_feature(p) && !state.is_active_organization(state.root(target))
        {
            // An organization feature reaches no group outside an active one.
            return Ok(Page {
                items: Vec::new(),
                more: false,
            });
        }
    }
    let after = after.map(|u| u.0);
    let reach = HoldingReach::of(holding);
    // Users given a role that grants the permission tenant-wide hold it here
    // whatever their groups offer: inherited roles only ever add (an offer
    // displaces a held role only if it contains it, scope included). They are
    // answered without resolving them.
    let given_everywhere = match holding {
        Holding::Permission(_) => reach.tenant_wide,
        Holding::Role(_) => RoleMask::default(),
    };
    let candidates = Merge::new(
        candidate_sources(state, target, &reach, after.as_ref()),
        &state.user_ids,
    );
    let holds = |resolved: &Resolved| match holding {
        Holding::Permission(p) => {
            decide(state, resolved, p, Target::Group(target), &mut Why::none())
        }
        Holding::Role(role) => holds_role_on(state, resolved, *role, target),
    };
    let mut page = Page {
        items: Vec::new(),
        more: false,
    };
    for slot in candidates {
        let user = state.user(slot);
        let given = !user.suspended && !user.roles.and(given_everywhere).is_empty();
        // Most candidates an offer brings could not take it (a suspended user;
        // an LMS GROUP_ADMINISTRATOR without the Global Admin one): passed over
        // without resolving them.
        if given || (may_hold_any(state, slot, reach.roles) && holds(&resolve_slot(state, slot))) {
            if page.items.len() == limit {
                page.more = true;
                break;
            }
            page.items.push(state.user_id(slot));
        }
    }
    Ok(page)
}

/// The roles that give what a subject lookup asks for, by the kind of scope
/// they give it in.
#[derive(Clone, Copy)]
struct HoldingReach {
    /// Every role that gives it, in any kind of scope that reaches a group.
    roles: RoleMask,
    tenant_wide: RoleMask,
    administered: RoleMask,
    members: bool,
}

impl HoldingReach {
    fn of(holding: &Holding) -> Self {
        let mut reach = HoldingReach {
            roles: RoleMask::default(),
            tenant_wide: RoleMask::default(),
            administered: RoleMask::default(),
            members: false,
        };
        let mut by_kind = |role: Role, kind: ScopeKind| {
            if kind != ScopeKind::Own {
                reach.roles.insert(role);
            }
            match kind {
                ScopeKind::Tenant => reach.tenant_wide.insert(role),
                ScopeKind::AdministeredGroups => reach.administered.insert(role),
                ScopeKind::MemberGroups => reach.members = true,
                ScopeKind::Own => {}
            }
        };
        match holding {
            Holding::Permission(p) => {
                for role in Role::ALL {
                    for grant in role.grants().iter().filter(|g| g.permission == p) {
                        by_kind(role, grant.scope);
                    }
                }
            }
            // A role's reach is its characteristic scope; an own-only role
            // reaches where the user is a member.
            Holding::Role(role) => match role_kind(*role) {
                ScopeKind::Own => by_kind(*role, ScopeKind::MemberGroups),
                kind => by_kind(*role, kind),
            },
        }
        reach
    }
}

/// Sorted streams of user slots that together hold every possible holder.
fn candidate_sources<'a>(
    state: &'a TenantState,
    target: GroupSlot,
    reach: &HoldingReach,
    after: Option<&Uuid>,
) -> Vec<Box<dyn Iterator<Item = UserSlot> + 'a>> {
    let HoldingReach {
        tenant_wide,
        administered,
        members,
        ..
    } = *reach;
    let ids = &state.user_ids;
    let index = &state.index;
    let root = state.root(target);
    let mut sources: Vec<Box<dyn Iterator<Item = UserSlot> + 'a>> = Vec::new();
    let mut add = |set: &'a OrderedUsers| {
        if !set.is_empty() {
            sources.push(Box::new(set.iter_after(after, ids)));
        }
    };
    for role in tenant_wide.iter() {
        add(index.direct(role));
        add(index.offered(role));
    }
    if members {
        add(index.tree(root));
    }
    for role in administered.iter() {
        // An inherited role with an administered-groups grant reaches the
        // target only when a group on the target's chain offers it (those who
        // administer the target themselves are the administrators' stream
        // below).
        for granting in state.chain(target) {
            add(index.offered_by(granting, role));
        }
    }
    if !administered.is_empty() {
        let mut admins: Vec<UserSlot> = state
            .chain(target)
            .flat_map(|g| state.group(g).administrators.iter().copied())
            .filter(|u| after.is_none_or(|a| ids[*u as usize] > *a))
            .collect();
        admins.sort_unstable_by_key(|u| ids[*u as usize]);
        admins.dedup();
        sources.push(Box::new(admins.into_iter()));
    }
    sources
}

/// Merges streams of user slots, each in id order, into one in id order, each slot
/// once.
struct Merge<'a> {
    heads: Vec<(UserSlot, Box<dyn Iterator<Item = UserSlot> + 'a>)>,
    ids: &'a [Uuid],
    last: Option<UserSlot>,
}

impl<'a> Merge<'a> {
    fn new(sources: Vec<Box<dyn Iterator<Item = UserSlot> + 'a>>, ids: &'a [Uuid]) -> Self {
        let heads = sources
            .into_iter()
            .filter_map(|mut s| s.next().map(|head| (head, s)))
            .collect();
        Merge {
            heads,
            ids,
            last: None,
        }
    }
}

impl Iterator for Merge<'_> {
    type Item = UserSlot;

    fn next(&mut self) -> Option<UserSlot> {
        loop {
            let ids = self.ids;
            let (i, _) = self
                .heads
                .iter()
                .enumerate()
                .min_by_key(|(_, (head, _))| ids[*head as usize])?;
            let slot = self.heads[i].0;
            match self.heads[i].1.next() {
                Some(next) => self.heads[i].0 = next,
                None => drop(self.heads.swap_remove(i)),
            }
            if self.last != Some(slot) {
                self.last = Some(slot);
                return Some(slot);
            }
        }
    }
}

fn holds_role_on(state: &TenantState, resolved: &Resolved, role: Role, group: GroupSlot) -> bool {
    let Some(held) = resolved.held.iter().find(|h| h.role == role) else {
        return false;
    };
    let kind = match role_kind(role) {
        ScopeKind::Tenant => return true,
        ScopeKind::Own => ScopeKind::MemberGroups,
        kind => kind,
    };
    Scope::of(resolved, held, kind)
        .covering(state, group)
        .is_some()
}

/// Every group on which `user` holds `permission`, in id order.
pub fn lookup_groups(
    state: &TenantState,
    user: UserId,
    permission: &str,
) -> Result<Vec<GroupId>, CheckError> {
    Ok(lookup_groups_page(state, user, permission, None, usize::MAX)?.items)
}

/// The groups whose ids follow `after` on which `user` holds `permission`, at
/// most `limit` of them, in id order.
pub fn lookup_groups_page(
    state: &TenantState,
    user: UserId,
    permission: &str,
    after: Option<GroupId>,
    limit: usize,
) -> Result<Page<GroupId>, CheckError> {
    let slot = state
        .user_slot(user)
        .ok_or(CheckError::UserNotFound(user))?;
    require_applicable(permission, ResourceKind::Group)?;
    let resolved = resolve_slot(state, slot);
    let mut tenant_wide = false;
    let mut scope_groups: Vec<GroupSlot> = Vec::new();
    for held in &resolved.held {
        for grant in held
            .role
            .grants()
            .iter()
            .filter(|g| g.permission == permission)
        {
            match grant.scope {
                ScopeKind::Tenant => tenant_wide = true,
                ScopeKind::Own => {}
                kind => scope_groups.extend(Scope::of(&resolved, held, kind).groups(state)),
            }
        }
    }
    let after = after.map(|g| g.0);
    let candidates: Box<dyn Iterator<Item = GroupSlot>> = if tenant_wide {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Box::new(
            state
                .group_slots
                .range((from, Bound::Unbounded))
                .map(|(_, slot)| *slot),
        )
    } else {
        scope_groups.sort_unstable();
        scope_groups.dedup();
        let mut reached: Vec<(Uuid, GroupSlot)> = scope_groups
            .into_iter()
            .flat_map(|g| state.subtree(g))
            .map(|g| (state.group_ids[g as usize], g))
            .filter(|(id, _)| after.is_none_or(|a| *id > a))
            .collect();
        reached.sort_unstable();
        reached.dedup();
        Box::new(reached.into_iter().map(|(_, g)| g))
    };
    let mut page = Page {
        items: Vec::new(),
        more: false,
    };
    for group in candidates {
        if decide(
            state,
            &resolved,
            permission,
            Target::Group(group),
            &mut Why::none(),
        ) {
            if page.items.len() == limit {
                page.more = true;
                break;
            }
            page.items.push(state.group_id(group));
        }
    }
    Ok(page)
}
