//! The change events the directory writes to its outbox, one [`ChangeSet`] per
//! committed transaction. Each change carries the new state of what it touches
//! (or its removal), so a subscriber can apply it idempotently.
//!
//! A `GroupDeleted` or `UserDeleted` also removes everything attached to that group
//! or user (memberships, administrator entries, inherited roles, catalog
//! assignments): subscribers drop those without a change of their own.

use chrono::{DateTime, Utc};
use cohort_shared::catalog::{Role, Tool};

use super::{CatalogId, Group, GroupId, Membership, Revision, Tenant, TenantId, User, UserId};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    TenantCreated {
        tenant: Tenant,
    },
    UserUpserted {
        user: User,
    },
    UserDeleted {
        user_id: UserId,
    },
    /// The group's own fields (name, parent, flag, inherited roles).
    GroupUpserted {
        group: Group,
    },
    GroupDeleted {
        group_id: GroupId,
    },
    MembershipAdded {
        membership: Membership,
    },
    MembershipRemoved {
        group_id: GroupId,
        user_id: UserId,
    },
    /// The group's complete administrator set after the change.
    AdministratorsChanged {
        group_id: GroupId,
        administrator_ids: Vec<UserId>,
    },
    /// Users who joined the group's administrator set (the rest stays). Adds and
    /// removals carry only what changed: a change set's size follows the call,
    /// not the size of the set, so adding to a large set 1,000 at a time costs
    /// the feed linear, not quadratic, volume.
    AdministratorsAdded {
        group_id: GroupId,
        administrator_ids: Vec<UserId>,
    },
    /// Users who left the group's administrator set (the rest stays).
    AdministratorsRemoved {
        group_id: GroupId,
        administrator_ids: Vec<UserId>,
    },
    InheritedRoleSet {
        group_id: GroupId,
        tool: Tool,
        role: Role,
    },
    InheritedRoleCleared {
        group_id: GroupId,
        tool: Tool,
    },
    CatalogAssigned {
        group_id: GroupId,
        catalog_id: CatalogId,
    },
    CatalogUnassigned {
        group_id: GroupId,
        catalog_id: CatalogId,
    },
}

/// Everything one transaction changed in one tenant, under one revision.
///
/// Every entity a change set carries is at the change set's revision: a tenant,
/// user or group it upserts has that revision as its etag, and a membership it
/// adds was joined at it. A write that stores its change set before it knows its
/// revision (one statement bumps the revision and writes everything) leaves those
/// fields at 0; [`ChangeSet::stamp`] fills them in on reading.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChangeSet {
    pub tenant_id: TenantId,
    pub revision: Revision,
    pub commit_time: DateTime<Utc>,
    pub actor: String,
    pub changes: Vec<Change>,
}

impl ChangeSet {
    /// Sets the revision of every entity the change set carries to its own.
    pub fn stamp(&mut self) {
        for change in &mut self.changes {
            change.stamp(self.revision);
        }
    }
}

impl Change {
    /// Sets the revision of the entity this change carries, if any.
    pub fn stamp(&mut self, revision: Revision) {
        match self {
            Change::TenantCreated { tenant } => tenant.revision = revision,
            Change::UserUpserted { user } => user.revision = revision,
            Change::GroupUpserted { group } => group.revision = revision,
            Change::MembershipAdded { membership } => membership.join_revision = revision,
            Change::UserDeleted { .. }
            | Change::GroupDeleted { .. }
            | Change::MembershipRemoved { .. }
            | Change::AdministratorsChanged { .. }
            | Change::AdministratorsAdded { .. }
            | Change::AdministratorsRemoved { .. }
            | Change::InheritedRoleSet { .. }
            | Change::InheritedRoleCleared { .. }
            | Change::CatalogAssigned { .. }
            | Change::CatalogUnassigned { .. } => {}
        }
    }
}
