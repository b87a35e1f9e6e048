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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangeSet {
    pub tenant_id: TenantId,
    pub revision: Revision,
    pub commit_time: DateTime<Utc>,
    pub actor: String,
    pub changes: Vec<Change>,
}
