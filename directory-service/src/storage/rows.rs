//! Rows as both databases return them, and their conversion into domain types.
//! `FromRow` is derived generically, so one definition serves both backends.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use cohort_shared::catalog::{Role, RoleSet, Tool};
use uuid::Uuid;

use super::{StoreError, StoreResult};
use crate::domain::{
    CatalogAssignment, CatalogId, ChangeSet, DisplayName, Email, Group, GroupId, Membership,
    Tenant, TenantId, User, UserId, UserState,
};

/// What adding users to a group found and did (one backend call).
pub(crate) struct MembershipsAdded {
    pub group_found: bool,
    /// The asked users that exist in the tenant.
    pub found: Vec<Uuid>,
    /// The users that were not members and now are, in id order.
    pub added: Vec<Uuid>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct TenantRow {
    id: Uuid,
    display_name: String,
    revision: i64,
    create_time: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    id: Uuid,
    tenant_id: Uuid,
    display_name: String,
    email: String,
    roles: String,
    suspended: bool,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    revision: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct GroupRow {
    id: Uuid,
    tenant_id: Uuid,
    parent_id: Option<Uuid>,
    display_name: String,
    is_organization: bool,
    subgroup_count: i64,
    member_count: i64,
    administrator_count: i64,
    inherited_roles: String,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    revision: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MembershipRow {
    group_id: Uuid,
    user_id: Uuid,
    join_revision: i64,
    join_time: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserGroupRow {
    #[sqlx(flatten)]
    membership: MembershipRow,
    #[sqlx(flatten)]
    group: GroupRow,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CatalogRow {
    group_id: Uuid,
    catalog_id: String,
    assign_time: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ChangeRow {
    tenant_id: Uuid,
    revision: i64,
    commit_time: DateTime<Utc>,
    actor: String,
    /// The change set as the encoder wrote it (`storage::events`).
    changes: String,
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

fn name(raw: &str) -> StoreResult<DisplayName> {
    DisplayName::parse("display_name", raw).map_err(|e| corrupt("display name", e))
}

/// Encodes roles for a `roles`/`inherited_roles` column.
pub(crate) fn encode_roles(roles: impl IntoIterator<Item = Role>) -> String {
    roles
        .into_iter()
        .map(Role::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

impl Group {
    /// The group's inherited roles as its `inherited_roles` column holds them.
    pub(crate) fn inherited_column(&self) -> String {
        encode_roles(self.inherited_roles.iter().map(|(_, role)| *role))
    }
}

fn decode_roles(raw: &str) -> StoreResult<Vec<Role>> {
    raw.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| Role::from_str(s).map_err(|e| corrupt("role", e)))
        .collect()
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(row: TenantRow) -> StoreResult<Self> {
        Ok(Tenant {
            id: TenantId(row.id),
            display_name: name(&row.display_name)?,
            revision: row.revision,
            create_time: row.create_time,
        })
    }
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(row: UserRow) -> StoreResult<Self> {
        Ok(User {
            id: UserId(row.id),
            tenant_id: TenantId(row.tenant_id),
            display_name: name(&row.display_name)?,
            email: Email::parse("email", &row.email).map_err(|e| corrupt("email", e))?,
            // Stored roles were valid when written; they are read without re-checking
            // the rules, so that a later catalog change cannot make a user unreadable.
            roles: RoleSet::from_stored(decode_roles(&row.roles)?)
                .map_err(|e| corrupt("roles", e))?,
            state: if row.suspended {
                UserState::Suspended
            } else {
                UserState::Active
            },
            create_time: row.create_time,
            update_time: row.update_time,
            revision: row.revision,
        })
    }
}

impl TryFrom<GroupRow> for Group {
    type Error = StoreError;
    fn try_from(row: GroupRow) -> StoreResult<Self> {
        let mut inherited_roles: Vec<(Tool, Role)> = decode_roles(&row.inherited_roles)?
            .into_iter()
            .map(|r| (r.tool(), r))
            .collect();
        inherited_roles.sort();
        Ok(Group {
            id: GroupId(row.id),
            tenant_id: TenantId(row.tenant_id),
            display_name: name(&row.display_name)?,
            parent_id: row.parent_id.map(GroupId),
            is_organization: row.is_organization,
            subgroup_count: row.subgroup_count,
            member_count: row.member_count,
            administrator_count: row.administrator_count,
            inherited_roles,
            create_time: row.create_time,
            update_time: row.update_time,
            revision: row.revision,
        })
    }
}

impl From<MembershipRow> for Membership {
    fn from(row: MembershipRow) -> Self {
        Membership {
            group_id: GroupId(row.group_id),
            user_id: UserId(row.user_id),
            join_revision: row.join_revision,
            join_time: row.join_time,
        }
    }
}

impl TryFrom<UserGroupRow> for (Membership, Group) {
    type Error = StoreError;
    fn try_from(row: UserGroupRow) -> StoreResult<Self> {
        Ok((row.membership.into(), row.group.try_into()?))
    }
}

impl TryFrom<CatalogRow> for CatalogAssignment {
    type Error = StoreError;
    fn try_from(row: CatalogRow) -> StoreResult<Self> {
        Ok(CatalogAssignment {
            group_id: GroupId(row.group_id),
            catalog_id: CatalogId::parse("catalog_id", &row.catalog_id)
                .map_err(|e| corrupt("catalog id", e))?,
            assign_time: row.assign_time,
        })
    }
}

impl TryFrom<ChangeRow> for ChangeSet {
    type Error = StoreError;
    fn try_from(row: ChangeRow) -> StoreResult<Self> {
        let mut set = ChangeSet {
            tenant_id: TenantId(row.tenant_id),
            revision: row.revision,
            commit_time: row.commit_time,
            actor: row.actor,
            changes: crate::storage::events::decode_text(&row.changes)?,
        };
        set.stamp();
        Ok(set)
    }
}

/// Converts fetched rows, failing on the first corrupt one.
pub(crate) fn convert_all<R, T: TryFrom<R, Error = StoreError>>(
    rows: Vec<R>,
) -> StoreResult<Vec<T>> {
    rows.into_iter().map(T::try_from).collect()
}
