//! Effective roles: a pure function of the projected state (DOMAIN.md, Inherited
//! roles).
//!
//! 1. Candidates: every inherited role of every group the user is in. Membership
//!    of a subgroup counts as membership of each ancestor, so a direct membership
//!    in `g` reaches the settings of `g` and of every ancestor of `g`.
//! 2. Order of acquisition: by the join revision of the membership that reaches
//!    the granting group (the earliest, when several do), then by the granting
//!    group's id.
//! 3. Per tool, "held" starts with the direct roles; each candidate in order is
//!    - merged when the same role is held (one more provenance, a wider scope);
//!    - added when compatible with every held role;
//!    - otherwise it replaces the held roles it conflicts with, but only if it
//!      contains every one of them; else it is suppressed, the held role prevails.
//! 4. Global Admin is resolved first: an inherited LMS GROUP_ADMINISTRATOR is
//!    suppressed unless the resulting Global Admin role is GROUP_ADMINISTRATOR.
//!
//! A suspended user holds nothing.

use cohort_shared::catalog::{Role, Tool};

use super::state::{GroupId, GroupSlot, Revision, TenantState, UserId, UserSlot};

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
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

/// An inherited role on offer, with its acquisition order.
struct Candidate {
    key: (Revision, GroupId),
    role: Role,
    via: Via,
}

/// Resolves a user's effective roles; `None` for an unknown user.
pub fn resolve(state: &TenantState, user: UserId) -> Option<Resolution> {
    let slot = state.user_slot(user)?;
    Some(resolve_slot(state, slot))
}

pub(crate) fn resolve_slot(state: &TenantState, slot: UserSlot) -> Resolution {
    let entry = state.user(slot);
    if entry.suspended {
        return Resolution {
            user: entry.id,
            suspended: true,
            tools: Tool::ALL
                .iter()
                .map(|t| (*t, ToolRoles::default()))
                .collect(),
        };
    }
    let candidates = candidates(state, slot);
    let global_admin = resolve_tool(Tool::GlobalAdmin, &entry.roles, &candidates, None);
    let ga_role = global_admin.roles.first().map(|h| h.role);
    let mut tools = vec![(Tool::GlobalAdmin, global_admin)];
    for tool in Tool::ALL.into_iter().filter(|t| *t != Tool::GlobalAdmin) {
        tools.push((tool, resolve_tool(tool, &entry.roles, &candidates, ga_role)));
    }
    Resolution {
        user: entry.id,
        suspended: false,
        tools,
    }
}

/// Every inherited role the user's memberships reach, in acquisition order, each
/// (role, granting group) once with its earliest acquisition.
fn candidates(state: &TenantState, slot: UserSlot) -> Vec<Candidate> {
    let mut found: Vec<Candidate> = Vec::new();
    for (member_of, joined) in &state.user(slot).memberships {
        let chain: Vec<GroupSlot> = state.ancestors_or_self(*member_of);
        for (depth, granting) in chain.iter().enumerate() {
            let group = state.group(*granting);
            for role in &group.inherited {
                let key = (*joined, group.id);
                let path: Vec<GroupId> =
                    chain[..=depth].iter().map(|g| state.group(*g).id).collect();
                match found
                    .iter_mut()
                    .find(|c| c.role == *role && c.via.group == group.id)
                {
                    Some(existing) if (key, &path) < (existing.key, &existing.via.path) => {
                        existing.key = key;
                        existing.via.path = path;
                    }
                    Some(_) => {}
                    None => found.push(Candidate {
                        key,
                        role: *role,
                        via: Via {
                            group: group.id,
                            path,
                        },
                    }),
                }
            }
        }
    }
    found.sort_by_key(|c| (c.key, c.role));
    found
}

fn resolve_tool(
    tool: Tool,
    direct: &[Role],
    candidates: &[Candidate],
    global_admin: Option<Role>,
) -> ToolRoles {
    let mut out = ToolRoles {
        roles: direct
            .iter()
            .filter(|r| r.tool() == tool)
            .map(|r| HeldRole {
                role: *r,
                sources: vec![Source::Direct],
            })
            .collect(),
        suppressed: Vec::new(),
    };
    for candidate in candidates.iter().filter(|c| c.role.tool() == tool) {
        let role = candidate.role;
        let suppress = |reason| SuppressedRole {
            role,
            via: candidate.via.clone(),
            reason,
        };
        if role == Role::LmsGroupAdministrator
            && global_admin != Some(Role::GlobalAdminGroupAdministrator)
        {
            out.suppressed.push(suppress(
                SuppressReason::RequiresGlobalAdminGroupAdministrator,
            ));
            continue;
        }
        if let Some(held) = out.roles.iter_mut().find(|h| h.role == role) {
            held.sources.push(Source::Inherited(candidate.via.clone()));
            continue;
        }
        let conflicts: Vec<Role> = out
            .roles
            .iter()
            .map(|h| h.role)
            .filter(|h| !role.is_compatible_with(*h))
            .collect();
        if let Some(prevailing) = conflicts.iter().find(|held| !role.contains(**held)) {
            out.suppressed
                .push(suppress(SuppressReason::IncompatibleWith(*prevailing)));
            continue;
        }
        out.roles.retain(|h| !conflicts.contains(&h.role));
        out.roles.push(HeldRole {
            role,
            sources: vec![Source::Inherited(candidate.via.clone())],
        });
    }
    out
}
