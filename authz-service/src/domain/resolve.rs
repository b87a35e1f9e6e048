//! Effective roles: a pure function of the projected state (DOMAIN.md, Inherited
//! roles).
//!
//! 1. Offers: every inherited role of every group the user is in. Membership of a
//!    subgroup counts as membership of each ancestor, so a direct membership in
//!    `g` reaches the settings of `g` and of every ancestor of `g`.
//! 2. Order of acquisition: by the join revision of the membership that reaches
//!    the granting group (the earliest, when several do), then by the granting
//!    group's id.
//! 3. Per tool, "held" starts with the direct roles; each offer in order is
//!    - merged when the same role is held (one more provenance, a wider scope);
//!    - added when compatible with every held role;
//!    - otherwise it replaces the held roles it conflicts with, but only if it
//!      contains every one of them; else it is suppressed, the held role prevails.
//! 4. Global Admin is resolved first: an inherited LMS GROUP_ADMINISTRATOR is
//!    suppressed unless the resulting Global Admin role is GROUP_ADMINISTRATOR.
//!
//! A suspended user holds nothing.
//!
//! The resolution is worked out once, in the compact form [`Resolved`] (slots and
//! offer indexes on the stack, no allocation for a typical user), which checks
//! and lookups decide from; [`Resolution`], with ids and paths, is derived from
//! it for reports.
//!
//! One file on purpose: the resolution steps above are one pure function and its
//! helpers, written in the order of DOMAIN.md.

use std::cmp::Ordering;

use cohort_shared::catalog::{Role, ScopeKind, Tool};
use smallvec::SmallVec;

use super::check::{Reach, Scope};
use super::state::{GroupId, GroupSlot, Revision, RoleMask, TenantState, UserId, UserSlot};

/// Why a user holds a role.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// Assigned on the user.
    Direct,
    /// From a group's inherited-role setting.
    Inherited(Via),
}

/// How an inherited role reached the user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Via {
    /// The group whose setting grants the role.
    pub group: GroupId,
    /// From the group the user is a direct member of, up to `group`.
    pub path: Vec<GroupId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRole {
    pub role: Role,
    pub sources: Vec<Source>,
    /// Where the role reaches; worked out only for [`Detail::Reaches`].
    pub reaches: Option<Reaches>,
}

/// How much of a resolution to work out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// The held roles with their sources, and the suppressed offers.
    Roles,
    /// Also where each held role reaches: group lists, the costly part.
    Reaches,
}

/// Where a held role reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaches {
    /// Where the role applies as a whole: its group scope if it has one, else the
    /// tenant, else the user's own content. Lossy (a role's permissions reach
    /// different places): `by_kind` says exactly where.
    pub as_a_whole: Reach,
    /// Where each of the role's permissions reaches: one entry per scope kind
    /// the role grants in, in the order of [`REACH_ORDER`].
    pub by_kind: Vec<PermissionReach>,
}

/// Some of a held role's permissions, all granted in one kind of scope, and
/// where that scope reaches for this user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionReach {
    pub kind: ScopeKind,
    pub reach: Reach,
    /// The permissions, sorted by name.
    pub permissions: &'static [&'static str],
}

/// The permissions a role grants in one kind of scope.
type KindPermissions = (ScopeKind, Vec<&'static str>);

/// A role's permissions grouped by the kind of scope they are granted in, in
/// [`REACH_ORDER`], each group sorted: fixed by the catalog, so made once, not
/// per answer.
fn permissions_by_kind(role: Role) -> &'static [KindPermissions] {
    static GROUPED: std::sync::LazyLock<Vec<Vec<KindPermissions>>> =
        std::sync::LazyLock::new(|| {
            Role::ALL
                .iter()
                .map(|role| {
                    REACH_ORDER
                        .into_iter()
                        .filter_map(|kind| {
                            let mut permissions: Vec<&'static str> = role
                                .grants()
                                .iter()
                                .filter(|g| g.scope == kind)
                                .map(|g| g.permission)
                                .collect();
                            permissions.sort_unstable();
                            (!permissions.is_empty()).then_some((kind, permissions))
                        })
                        .collect()
                })
                .collect()
        });
    let index = Role::ALL
        .iter()
        .position(|r| *r == role)
        .expect("every role is in Role::ALL");
    &GROUPED[index]
}

/// The order of a role's reaches: widest first, own content last.
pub const REACH_ORDER: [ScopeKind; 4] = [
    ScopeKind::Tenant,
    ScopeKind::AdministeredGroups,
    ScopeKind::MemberGroups,
    ScopeKind::Own,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuppressReason {
    /// Incompatible with a held role it does not contain: that role prevails.
    IncompatibleWith(Role),
    /// An inherited LMS GROUP_ADMINISTRATOR needs Global Admin GROUP_ADMINISTRATOR.
    RequiresGlobalAdminGroupAdministrator,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressedRole {
    pub role: Role,
    pub via: Via,
    pub reason: SuppressReason,
}

/// One tool's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolRoles {
    pub roles: Vec<HeldRole>,
    pub suppressed: Vec<SuppressedRole>,
}

/// A user's effective roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub user: UserId,
    pub suspended: bool,
    /// Every tool, in catalog order (empty for tools without access).
    pub tools: Vec<(Tool, ToolRoles)>,
}

impl Resolution {
    pub fn tool(&self, tool: Tool) -> &ToolRoles {
        &self
            .tools
            .iter()
            .find(|(t, _)| *t == tool)
            .expect("every tool is listed")
            .1
    }

    /// Every held role, across tools.
    pub fn held(&self) -> impl Iterator<Item = &HeldRole> {
        self.tools.iter().flat_map(|(_, t)| t.roles.iter())
    }
}

/// An inherited role on offer to a user.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Offer {
    /// The join revision of the membership it comes through.
    pub joined: Revision,
    /// The group whose setting offers it.
    pub granting: GroupSlot,
    pub role: Role,
    /// The group the user is a direct member of, where the path to `granting`
    /// starts.
    pub member_of: GroupSlot,
}

/// A held role.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub role: Role,
    /// Whether one of its sources is the user's own role.
    pub direct: bool,
}

/// A user's effective roles, in compact form.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub user: UserSlot,
    pub suspended: bool,
    /// Every offer, in order of acquisition.
    pub offers: SmallVec<[Offer; 4]>,
    /// Held roles: tools in catalog order, each tool's roles in held order.
    pub held: SmallVec<[Held; 6]>,
    /// The inherited sources of held roles, as (role, offer index), in the order
    /// they were taken.
    pub sources: SmallVec<[(Role, u16); 4]>,
    /// Suppressed offers (offer index) with the reason, tools in catalog order.
    pub suppressed: SmallVec<[(u16, SuppressReason); 2]>,
}

impl Resolved {
    /// The offers through which `role` is held, in order.
    pub fn inherited_sources(&self, role: Role) -> impl Iterator<Item = &Offer> + '_ {
        self.sources
            .iter()
            .filter(move |(r, _)| *r == role)
            .map(|(_, i)| &self.offers[*i as usize])
    }
}

/// Resolves a user's effective roles, with where each reaches; `None` for an
/// unknown user.
pub fn resolve(state: &TenantState, user: UserId) -> Option<Resolution> {
    resolve_with(state, user, Detail::Reaches)
}

/// Resolves a user's effective roles in as much detail as asked; `None` for an
/// unknown user.
pub fn resolve_with(state: &TenantState, user: UserId, detail: Detail) -> Option<Resolution> {
    let slot = state.user_slot(user)?;
    Some(resolution(state, &resolve_slot(state, slot), detail))
}

pub(crate) fn resolve_slot(state: &TenantState, slot: UserSlot) -> Resolved {
    let entry = state.user(slot);
    let mut out = Resolved {
        user: slot,
        suspended: entry.suspended,
        offers: SmallVec::new(),
        held: SmallVec::new(),
        sources: SmallVec::new(),
        suppressed: SmallVec::new(),
    };
    if entry.suspended {
        return out;
    }
    offers(state, slot, &mut out.offers);
    let mut global_admin = None;
    for tool in Tool::ALL {
        let start = out.held.len();
        resolve_tool(tool, entry.roles.iter(), global_admin, &mut out);
        if tool == Tool::GlobalAdmin {
            global_admin = out.held.get(start).map(|h| h.role);
        }
    }
    out
}

/// Whether `user` could hold one of `roles`: given one, or offered one they
/// could take. Held roles are given or offered; an offer is never taken by a
/// suspended user, nor, for an LMS GROUP_ADMINISTRATOR, by a user neither given
/// nor offered the Global Admin GROUP_ADMINISTRATOR (step 4). A necessary
/// condition, cheap (no order of acquisition, no ids): lookups test it before
/// resolving a candidate.
pub(crate) fn may_hold_any(state: &TenantState, user: UserSlot, roles: RoleMask) -> bool {
    let entry = state.user(user);
    if entry.suspended {
        return false;
    }
    if !entry.roles.and(roles).is_empty() {
        return true;
    }
    let offered = entry.offered;
    let global_admin_group_administrator = entry
        .roles
        .union(offered)
        .contains(Role::GlobalAdminGroupAdministrator);
    offered
        .and(roles)
        .iter()
        .any(|role| role != Role::LmsGroupAdministrator || global_admin_group_administrator)
}

/// Every inherited role the user's memberships reach, in order of acquisition,
/// each (role, granting group) once with its earliest acquisition.
fn offers(state: &TenantState, slot: UserSlot, found: &mut SmallVec<[Offer; 4]>) {
    let user = state.user(slot);
    if user.offered.is_empty() {
        return;
    }
    for membership in user.memberships.iter() {
        let joined = state.joined(slot, *membership);
        for granting in state.chain(membership.group) {
            for role in state.inherited(granting).iter() {
                let offer = Offer {
                    joined,
                    granting,
                    role,
                    member_of: membership.group,
                };
                match found
                    .iter_mut()
                    .find(|o| o.role == role && o.granting == granting)
                {
                    Some(existing) if earlier(state, &offer, existing) => *existing = offer,
                    Some(_) => {}
                    None => found.push(offer),
                }
            }
        }
    }
    found.sort_by(|a, b| {
        (a.joined, state.group_id(a.granting), a.role).cmp(&(
            b.joined,
            state.group_id(b.granting),
            b.role,
        ))
    });
}

/// Whether `a` reaches the same granting group earlier than `b`: by join revision,
/// then by path (group ids from the member group up).
fn earlier(state: &TenantState, a: &Offer, b: &Offer) -> bool {
    match a.joined.cmp(&b.joined) {
        Ordering::Equal => {
            path_ids(state, a.member_of, a.granting) < path_ids(state, b.member_of, b.granting)
        }
        order => order == Ordering::Less,
    }
}

/// The ids from `from` up to `to` (an ancestor-or-self of `from`), both included.
fn path_ids(state: &TenantState, from: GroupSlot, to: GroupSlot) -> Vec<GroupId> {
    let mut path = Vec::new();
    for group in state.chain(from) {
        path.push(state.group_id(group));
        if group == to {
            break;
        }
    }
    path
}

fn resolve_tool(
    tool: Tool,
    direct: impl Iterator<Item = Role>,
    global_admin: Option<Role>,
    out: &mut Resolved,
) {
    let start = out.held.len();
    out.held.extend(
        direct
            .filter(|r| r.tool() == tool)
            .map(|role| Held { role, direct: true }),
    );
    for i in 0..out.offers.len() {
        let role = out.offers[i].role;
        if role.tool() != tool {
            continue;
        }
        let i = i as u16;
        if role == Role::LmsGroupAdministrator
            && global_admin != Some(Role::GlobalAdminGroupAdministrator)
        {
            out.suppressed
                .push((i, SuppressReason::RequiresGlobalAdminGroupAdministrator));
            continue;
        }
        if out.held[start..].iter().any(|h| h.role == role) {
            out.sources.push((role, i));
            continue;
        }
        let conflicts: SmallVec<[Role; 4]> = out.held[start..]
            .iter()
            .map(|h| h.role)
            .filter(|h| !role.is_compatible_with(*h))
            .collect();
        if let Some(prevailing) = conflicts.iter().find(|held| !role.contains(**held)) {
            out.suppressed
                .push((i, SuppressReason::IncompatibleWith(*prevailing)));
            continue;
        }
        out.held.retain(|h| !conflicts.contains(&h.role));
        out.sources.retain(|(r, _)| !conflicts.contains(r));
        out.held.push(Held {
            role,
            direct: false,
        });
        out.sources.push((role, i));
    }
}

/// The scope kind that characterizes a role as a whole (for reporting and role
/// lookups): its group scope if it has one, else the tenant, else the user's own.
pub(crate) fn role_kind(role: Role) -> ScopeKind {
    let kinds = || role.grants().iter().map(|g| g.scope);
    [
        ScopeKind::AdministeredGroups,
        ScopeKind::MemberGroups,
        ScopeKind::Tenant,
    ]
    .into_iter()
    .find(|kind| kinds().any(|k| k == *kind))
    .unwrap_or(ScopeKind::Own)
}

/// Where a held role reaches, as a whole and per kind of scope.
fn reaches(state: &TenantState, resolved: &Resolved, held: &Held) -> Reaches {
    let by_kind: Vec<PermissionReach> = permissions_by_kind(held.role)
        .iter()
        .map(|(kind, permissions)| PermissionReach {
            kind: *kind,
            reach: Scope::of(resolved, held, *kind).reach(state),
            permissions,
        })
        .collect();
    // The role's reach as a whole is one of those (its kind is one the role
    // grants in): not worked out a second time.
    let kind = role_kind(held.role);
    let as_a_whole = match by_kind.iter().find(|r| r.kind == kind) {
        Some(r) => r.reach.clone(),
        None => Scope::of(resolved, held, kind).reach(state),
    };
    Reaches {
        as_a_whole,
        by_kind,
    }
}

fn via(state: &TenantState, offer: &Offer) -> Via {
    Via {
        group: state.group_id(offer.granting),
        path: path_ids(state, offer.member_of, offer.granting),
    }
}

/// The resolution with ids and paths, and each role's reach if asked.
pub(crate) fn resolution(state: &TenantState, resolved: &Resolved, detail: Detail) -> Resolution {
    let tools = Tool::ALL
        .into_iter()
        .map(|tool| {
            let roles = resolved
                .held
                .iter()
                .filter(|h| h.role.tool() == tool)
                .map(|held| {
                    let mut sources = Vec::new();
                    if held.direct {
                        sources.push(Source::Direct);
                    }
                    sources.extend(
                        resolved
                            .inherited_sources(held.role)
                            .map(|offer| Source::Inherited(via(state, offer))),
                    );
                    HeldRole {
                        role: held.role,
                        sources,
                        reaches: (detail == Detail::Reaches)
                            .then(|| reaches(state, resolved, held)),
                    }
                })
                .collect();
            let suppressed = resolved
                .suppressed
                .iter()
                .map(|(i, reason)| (&resolved.offers[*i as usize], reason))
                .filter(|(offer, _)| offer.role.tool() == tool)
                .map(|(offer, reason)| SuppressedRole {
                    role: offer.role,
                    via: via(state, offer),
                    reason: *reason,
                })
                .collect();
            (tool, ToolRoles { roles, suppressed })
        })
        .collect();
    Resolution {
        user: state.user_id(resolved.user),
        suspended: resolved.suspended,
        tools,
    }
}
