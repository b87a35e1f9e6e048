//! The authorization domain: the projected state of a tenant and the pure
//! functions that answer from it (effective roles, checks, lookups). No I/O and no
//! proto types.

mod check;
mod resolve;
mod state;

#[cfg(test)]
mod seed_examples;

pub use check::{
    check, lookup_groups, lookup_subjects, CheckError, Decision, Holding, Reach, Resource,
};
pub use resolve::{
    resolve, HeldRole, Resolution, Source, SuppressReason, SuppressedRole, ToolRoles, Via,
};
pub use state::{Change, GroupId, Revision, TenantState, UserId};

/// Where a held role applies as a whole (for reports of effective roles).
pub fn role_reach(state: &TenantState, user: UserId, held: &HeldRole) -> Option<Reach> {
    let slot = state.user_slot(user)?;
    Some(check::role_reach(state, slot, held))
}
