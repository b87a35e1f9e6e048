//! The authorization domain: the projected state of a tenant, its reverse indexes,
//! and the pure functions that answer from them (effective roles, checks,
//! lookups). No I/O and no proto types.
//!
//! - `state`: users, groups and relations with interned ids, and how changes apply;
//! - `index`: the reverse indexes lookups start from, kept in step with the state;
//! - `resolve`: effective roles (DOMAIN.md's inherited-role rules);
//! - `check`: the one decision procedure, with its explanation;
//! - `lookup`: reverse lookups, paged, deciding each candidate like a check.

mod check;
mod index;
mod lookup;
mod resolve;
mod state;

#[cfg(test)]
mod seed_examples;

pub use check::{check, CheckError, Checker, Decision, Reach, Resource};
pub use lookup::{
    lookup_groups, lookup_groups_page, lookup_subjects, lookup_subjects_page, Holding, Page,
};
pub use resolve::{
    resolve, resolve_with, Detail, HeldRole, PermissionReach, Reaches, Resolution, Source,
    SuppressReason, SuppressedRole, ToolRoles, Via, REACH_ORDER,
};
pub use state::{Change, ExportCursor, GroupId, Revision, Size, TenantId, TenantState, UserId};
