//! Tenants: created with their first administrator in one write, read, listed.

use super::*;

#[async_trait]
impl TenantStore for Store {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn create_tenant(
        &self,
        ctx: &WriteContext,
        new: NewTenant,
    ) -> StoreResult<Written<(Tenant, User)>> {
        let fingerprint = fingerprint(&new);
        // Two tries: a concurrent create with the same request id makes the first
        // fail on the idempotency key, and the second then replays its result.
        for attempt in 0..2 {
            let mut conn = self.pool.acquire().await?;
            if let Some((id, revision)) =
                Self::replayed(&mut conn, GLOBAL_SCOPE, &new.request_id, &fingerprint).await?
            {
                let tenant = self.get_tenant(TenantId(id)).await?;
                let first_admin: UserRow = sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = $1 ORDER BY u.id LIMIT 1"
                ))
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
                return Ok(Written {
                    value: (tenant, first_admin.try_into()?),
                    revision,
                });
            }
            drop(conn);

            let tenant = Tenant {
                id: TenantId::generate(),
                display_name: new.display_name.clone(),
                revision: 1,
                create_time: now(),
            };
            let mut tx = self.pool.begin().await?;
            sqlx::query("INSERT INTO tenants (id, display_name, revision, create_time) VALUES ($1, $2, $3, $4)")
                .bind(tenant.id.0)
                .bind(tenant.display_name.as_str())
                .bind(tenant.revision)
                .bind(tenant.create_time)
                .execute(&mut *tx)
                .await?;
            let turn = self.turns.take(tenant.id).await;
            let mut w = WriteTx {
                tx,
                tenant: tenant.id,
                revision: tenant.revision,
                changes: Vec::new(),
                _turn: turn,
            };
            w.changes.push(Change::TenantCreated {
                tenant: tenant.clone(),
            });
            let admin = NewUser {
                display_name: new.admin_display_name.clone(),
                email: new.admin_email.clone(),
                roles: cohort_shared::catalog::RoleSet::new([Role::GlobalAdminAdmin])
                    .expect("ADMIN alone is a valid role set"),
                request_id: None,
            };
            let admin = Self::new_user(tenant.id, &admin, tenant.create_time, tenant.revision);
            Self::insert_user(&mut w, &admin).await?;
            match Self::remember_request(
                w.conn(),
                GLOBAL_SCOPE,
                &new.request_id,
                &fingerprint,
                tenant.id.0,
                1,
            )
            .await
            {
                Ok(()) => return self.finish(ctx, w, (tenant, admin)).await,
                Err(err) if is_unique_violation(&err) && attempt == 0 => continue,
                Err(err) => return Err(err.into()),
            }
        }
        unreachable!("the second attempt either replays or returns")
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn get_tenant(&self, id: TenantId) -> StoreResult<Tenant> {
        let row: Option<TenantRow> = sqlx::query_as(
            "SELECT id, display_name, revision, create_time FROM tenants WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| StoreError::not_found("tenant", id))?
            .try_into()
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list_tenants(&self, page: &PageRequest) -> StoreResult<Page<Tenant>> {
        let mut q = QueryBuilder::<Db>::new(
            "SELECT id, display_name, revision, create_time FROM tenants WHERE TRUE",
        );
        if let Some(after) = after_id(page)? {
            q.push(" AND id > ").push_bind(after);
        }
        q.push(" ORDER BY id LIMIT ").push_bind(page.fetch_limit());
        let rows = q
            .build_query_as::<TenantRow>()
            .fetch_all(&self.pool)
            .await?;
        Ok(page.page(convert_all(rows)?, |t: &Tenant| t.id.to_string()))
    }
}
