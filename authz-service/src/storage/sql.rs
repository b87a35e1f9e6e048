// The projection's SQL, shared by both backends.
//
// Not a module of its own: `postgres.rs` and `sqlite.rs` each `include!` it after
// defining `DbConn` and `Store` (with a `pool` field), so it compiles once
// per backend with concrete sqlx types.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cohort_shared::catalog::Role;
use uuid::Uuid;

use crate::domain::{Change, GroupId, Revision, TenantState, UserId};
use crate::storage::{Apply, ProjectionStore, StoreError, StoreResult};

/// Every table of the projection but the checkpoints, each keyed by tenant.
const TENANT_TABLES: [&str; 5] = ["users", "groups", "memberships", "administrators", "catalogs"];

fn encode_roles(roles: &[Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

fn decode_roles(raw: &str) -> StoreResult<Vec<Role>> {
    raw.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| Role::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect()
}

async fn apply_change(conn: &mut DbConn, tenant: Uuid, change: &Change) -> StoreResult<()> {
    match change {
        Change::UserUpserted { id, roles, suspended } => {
            sqlx::query(
                "INSERT INTO users (tenant_id, id, roles, suspended) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, id) DO UPDATE SET roles = excluded.roles, suspended = excluded.suspended",
            )
            .bind(tenant)
            .bind(id.0)
            .bind(encode_roles(roles))
            .bind(*suspended)
            .execute(&mut *conn)
            .await?;
        }
        Change::UserDeleted { id } => {
            for sql in [
                "DELETE FROM users WHERE tenant_id = $1 AND id = $2",
                "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2",
                "DELETE FROM administrators WHERE tenant_id = $1 AND user_id = $2",
            ] {
                sqlx::query(sql).bind(tenant).bind(id.0).execute(&mut *conn).await?;
            }
        }
        Change::GroupUpserted { id, parent, is_organization, inherited } => {
            sqlx::query(
                "INSERT INTO groups (tenant_id, id, parent_id, is_organization, inherited_roles) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, id) DO UPDATE SET \
                 parent_id = excluded.parent_id, is_organization = excluded.is_organization, \
                 inherited_roles = excluded.inherited_roles",
            )
            .bind(tenant)
            .bind(id.0)
            .bind(parent.map(|p| p.0))
            .bind(*is_organization)
            .bind(encode_roles(inherited))
            .execute(&mut *conn)
            .await?;
        }
        Change::GroupDeleted { id } => {
            for sql in [
                "DELETE FROM groups WHERE tenant_id = $1 AND id = $2",
                "DELETE FROM memberships WHERE tenant_id = $1 AND group_id = $2",
                "DELETE FROM administrators WHERE tenant_id = $1 AND group_id = $2",
                "DELETE FROM catalogs WHERE tenant_id = $1 AND group_id = $2",
            ] {
                sqlx::query(sql).bind(tenant).bind(id.0).execute(&mut *conn).await?;
            }
        }
        Change::MembershipAdded { group, user, join_revision } => {
            sqlx::query(
                "INSERT INTO memberships (tenant_id, group_id, user_id, join_revision) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(group.0)
            .bind(user.0)
            .bind(*join_revision)
            .execute(&mut *conn)
            .await?;
        }
        Change::MembershipRemoved { group, user } => {
            sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND group_id = $2 AND user_id = $3")
                .bind(tenant)
                .bind(group.0)
                .bind(user.0)
                .execute(&mut *conn)
                .await?;
        }
        Change::AdministratorsChanged { group, users } => {
            sqlx::query("DELETE FROM administrators WHERE tenant_id = $1 AND group_id = $2")
                .bind(tenant)
                .bind(group.0)
                .execute(&mut *conn)
                .await?;
            for user in users {
                sqlx::query("INSERT INTO administrators (tenant_id, group_id, user_id) VALUES ($1, $2, $3)")
                    .bind(tenant)
                    .bind(group.0)
                    .bind(user.0)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Change::InheritedRoleChanged { group, tool, role } => {
            let current: Option<String> =
                sqlx::query_scalar("SELECT inherited_roles FROM groups WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(group.0)
                    .fetch_optional(&mut *conn)
                    .await?;
            let mut roles = decode_roles(&current.unwrap_or_default())?;
            roles.retain(|r| r.tool() != *tool);
            roles.extend(role);
            roles.sort();
            sqlx::query(
                "INSERT INTO groups (tenant_id, id, parent_id, is_organization, inherited_roles) \
                 VALUES ($1, $2, NULL, $3, $4) ON CONFLICT (tenant_id, id) DO UPDATE SET \
                 inherited_roles = excluded.inherited_roles",
            )
            .bind(tenant)
            .bind(group.0)
            .bind(false)
            .bind(encode_roles(&roles))
            .execute(&mut *conn)
            .await?;
        }
        Change::CatalogAssigned { group, catalog } => {
            sqlx::query(
                "INSERT INTO catalogs (tenant_id, group_id, catalog_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(group.0)
            .bind(catalog)
            .execute(&mut *conn)
            .await?;
        }
        Change::CatalogUnassigned { group, catalog } => {
            sqlx::query("DELETE FROM catalogs WHERE tenant_id = $1 AND group_id = $2 AND catalog_id = $3")
                .bind(tenant)
                .bind(group.0)
                .bind(catalog)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// One tenant's stored state, as the changes that rebuild it.
async fn load_tenant(conn: &mut DbConn, tenant: Uuid) -> StoreResult<Vec<Change>> {
    let mut changes = Vec::new();
    let users: Vec<(Uuid, String, bool)> =
        sqlx::query_as("SELECT id, roles, suspended FROM users WHERE tenant_id = $1").bind(tenant).fetch_all(&mut *conn).await?;
    for (id, roles, suspended) in users {
        changes.push(Change::UserUpserted { id: UserId(id), roles: decode_roles(&roles)?, suspended });
    }
    let groups: Vec<(Uuid, Option<Uuid>, bool, String)> = sqlx::query_as(
        "SELECT id, parent_id, is_organization, inherited_roles FROM groups WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await?;
    for (id, parent, is_organization, inherited) in groups {
        changes.push(Change::GroupUpserted {
            id: GroupId(id),
            parent: parent.map(GroupId),
            is_organization,
            inherited: decode_roles(&inherited)?,
        });
    }
    let memberships: Vec<(Uuid, Uuid, i64)> =
        sqlx::query_as("SELECT group_id, user_id, join_revision FROM memberships WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(&mut *conn)
            .await?;
    for (group, user, join_revision) in memberships {
        changes.push(Change::MembershipAdded { group: GroupId(group), user: UserId(user), join_revision });
    }
    let admins: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT group_id, user_id FROM administrators WHERE tenant_id = $1 ORDER BY group_id, user_id")
            .bind(tenant)
            .fetch_all(&mut *conn)
            .await?;
    let mut by_group: BTreeMap<Uuid, Vec<UserId>> = BTreeMap::new();
    for (group, user) in admins {
        by_group.entry(group).or_default().push(UserId(user));
    }
    for (group, users) in by_group {
        changes.push(Change::AdministratorsChanged { group: GroupId(group), users });
    }
    let catalogs: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT group_id, catalog_id FROM catalogs WHERE tenant_id = $1").bind(tenant).fetch_all(&mut *conn).await?;
    for (group, catalog) in catalogs {
        changes.push(Change::CatalogAssigned { group: GroupId(group), catalog });
    }
    Ok(changes)
}

#[async_trait]
impl ProjectionStore for Store {
    async fn load(&self) -> StoreResult<Vec<(Uuid, TenantState)>> {
        let mut conn = self.pool.acquire().await?;
        let tenants: Vec<(Uuid, i64)> =
            sqlx::query_as("SELECT tenant_id, revision FROM checkpoints ORDER BY tenant_id").fetch_all(&mut *conn).await?;
        let mut out = Vec::with_capacity(tenants.len());
        for (tenant, revision) in tenants {
            let mut state = TenantState::default();
            for change in load_tenant(&mut conn, tenant).await? {
                state.apply(change);
            }
            state.revision = revision;
            out.push((tenant, state));
        }
        Ok(out)
    }

    async fn apply(&self, tenant: Uuid, revision: Revision, mode: Apply, changes: &[Change]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        if mode == Apply::Replace {
            for table in TENANT_TABLES {
                sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1")).bind(tenant).execute(&mut *tx).await?;
            }
        }
        for change in changes {
            apply_change(&mut tx, tenant, change).await?;
        }
        sqlx::query(
            "INSERT INTO checkpoints (tenant_id, revision) VALUES ($1, $2) \
             ON CONFLICT (tenant_id) DO UPDATE SET revision = excluded.revision",
        )
        .bind(tenant)
        .bind(revision)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
