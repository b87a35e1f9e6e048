//! What a group passes on or offers: its inherited roles (one per tool) and, on
//! organizations, its catalog assignments.

use super::*;

impl Store {
    async fn set_inherited(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        tool: Tool,
        role: Option<Role>,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Group>> {
        let mut w = self.begin_write(tenant).await?;
        let mut g = Self::fetch_group(w.conn(), tenant, group).await?;
        check_etag("group", etag, g.revision)?;
        let current = g
            .inherited_roles
            .iter()
            .find(|(t, _)| *t == tool)
            .map(|(_, r)| *r);
        if current != role {
            g.inherited_roles.retain(|(t, _)| *t != tool);
            if let Some(role) = role {
                g.inherited_roles.push((tool, role));
                g.inherited_roles.sort();
            }
            Self::save_group(&mut w, &mut g).await?;
            w.changes.push(match role {
                Some(role) => Change::InheritedRoleSet {
                    group_id: group,
                    tool,
                    role,
                },
                None => Change::InheritedRoleCleared {
                    group_id: group,
                    tool,
                },
            });
        }
        self.finish(ctx, w, g).await
    }
}

#[async_trait]
impl GroupSettingsStore for Store {
    async fn set_inherited_role(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        role: Role,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Group>> {
        self.set_inherited(ctx, tenant, group, role.tool(), Some(role), etag)
            .await
    }

    async fn clear_inherited_role(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        tool: Tool,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Group>> {
        self.set_inherited(ctx, tenant, group, tool, None, etag)
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx), err(level = "debug"))]
    async fn assign_catalog(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        catalog: CatalogId,
    ) -> StoreResult<Written<CatalogAssignment>> {
        let mut w = self.begin_write(tenant).await?;
        let g = Self::fetch_group(w.conn(), tenant, group).await?;
        rules::may_hold_catalogs(&g)?;
        let now = now();
        let inserted = sqlx::query(
            "INSERT INTO catalog_assignments (tenant_id, group_id, catalog_id, assign_time) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(tenant.0)
        .bind(group.0)
        .bind(catalog.as_str())
        .bind(now)
        .execute(w.conn())
        .await?
        .rows_affected();
        let row: CatalogRow = sqlx::query_as(
            "SELECT group_id, catalog_id, assign_time FROM catalog_assignments \
             WHERE tenant_id = $1 AND group_id = $2 AND catalog_id = $3",
        )
        .bind(tenant.0)
        .bind(group.0)
        .bind(catalog.as_str())
        .fetch_one(w.conn())
        .await?;
        if inserted > 0 {
            w.changes.push(Change::CatalogAssigned {
                group_id: group,
                catalog_id: catalog,
            });
        }
        self.finish(ctx, w, row.try_into()?).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx), err(level = "debug"))]
    async fn unassign_catalog(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        catalog: CatalogId,
    ) -> StoreResult<Written<()>> {
        let mut w = self.begin_write(tenant).await?;
        Self::fetch_group(w.conn(), tenant, group).await?;
        let deleted = sqlx::query(
            "DELETE FROM catalog_assignments WHERE tenant_id = $1 AND group_id = $2 AND catalog_id = $3",
        )
        .bind(tenant.0)
        .bind(group.0)
        .bind(catalog.as_str())
        .execute(w.conn())
        .await?
        .rows_affected();
        if deleted == 0 {
            return Err(StoreError::not_found(
                "catalog assignment",
                catalog.as_str(),
            ));
        }
        w.changes.push(Change::CatalogUnassigned {
            group_id: group,
            catalog_id: catalog,
        });
        self.finish(ctx, w, ()).await
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_catalogs(
        &self,
        tenant: TenantId,
        group: GroupId,
        page: &PageRequest,
    ) -> StoreResult<(Page<CatalogAssignment>, bool)> {
        let mut conn = self.pool.acquire().await?;
        let g = Self::fetch_group(&mut conn, tenant, group).await?;
        let rows: Vec<CatalogRow> = sqlx::query_as(
            "SELECT group_id, catalog_id, assign_time FROM catalog_assignments \
             WHERE tenant_id = $1 AND group_id = $2 AND catalog_id > $3 ORDER BY catalog_id LIMIT $4",
        )
        .bind(tenant.0)
        .bind(group.0)
        .bind(page.after().unwrap_or_default().to_owned())
        .bind(page.fetch_limit())
        .fetch_all(&mut *conn)
        .await?;
        let page = page.page(convert_all(rows)?, |c: &CatalogAssignment| {
            c.catalog_id.as_str().to_owned()
        });
        Ok((page, g.is_organization))
    }
}
