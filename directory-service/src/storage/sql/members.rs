//! Memberships and group administrators: added, removed, replaced and listed,
//! in bulk. Administrators must be eligible (`rules::eligible_as_administrators`).
//!
//! Long because members and administrators are both sets of a group's users:
//! their writes share the id checks, the counters and the listing here.

use super::*;

/// How a write changes a group's administrator set (already checked), which also
/// decides how the change is recorded.
#[derive(Debug, Clone)]
enum AdministratorEdit {
    Replace(Vec<UserId>),
    Add(Vec<UserId>),
    Remove(Vec<UserId>),
}

impl Store {
    /// Checks that every user exists and may administer groups.
    pub(super) async fn require_eligible(
        conn: &mut DbConn,
        tenant: TenantId,
        users: &[UserId],
    ) -> StoreResult<()> {
        let found = Self::require_users(conn, tenant, users).await?;
        Ok(rules::eligible_as_administrators(&found)?)
    }

    /// Adds members in a write of their own (the backends' `add_members_at_once`
    /// on SQLite, and on PostgreSQL for a call that comes alone).
    pub(in crate::storage) async fn add_members_alone(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        let mut w = self.begin_write(tenant).await?;
        let mut asked: Vec<Uuid> = users.iter().map(|u| u.0).collect();
        asked.sort();
        asked.dedup();
        let now = now();
        let revision = w.revision;
        let MembershipsAdded {
            group_found,
            found,
            added,
        } = add_memberships(w.conn(), tenant.0, group.0, &asked, revision, now).await?;
        if !group_found {
            return Err(StoreError::not_found("group", group));
        }
        if found.len() < asked.len() {
            let found: std::collections::HashSet<Uuid> = found.into_iter().collect();
            if let Some(missing) = users.iter().find(|u| !found.contains(&u.0)) {
                return Err(StoreError::not_found("user", missing));
            }
        }
        let added: Vec<UserId> = added.into_iter().map(UserId).collect();
        w.changes
            .extend(added.iter().map(|user| Change::MembershipAdded {
                membership: Membership {
                    group_id: group,
                    user_id: *user,
                    join_revision: revision,
                    join_time: now,
                },
            }));
        self.finish(ctx, w, added).await
    }

    /// The groups a user administers, in id order.
    pub(super) async fn administered_groups(
        conn: &mut DbConn,
        tenant: TenantId,
        user: UserId,
    ) -> StoreResult<Vec<GroupId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT group_id FROM group_administrators WHERE tenant_id = $1 AND user_id = $2 ORDER BY group_id",
        )
        .bind(tenant.0)
        .bind(user.0)
        .fetch_all(conn)
        .await?;
        Ok(ids.into_iter().map(GroupId).collect())
    }

    pub(super) async fn administrator_ids(
        conn: &mut DbConn,
        tenant: TenantId,
        group: GroupId,
    ) -> StoreResult<Vec<UserId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM group_administrators WHERE tenant_id = $1 AND group_id = $2 ORDER BY user_id",
        )
        .bind(tenant.0)
        .bind(group.0)
        .fetch_all(conn)
        .await?;
        Ok(ids.into_iter().map(UserId).collect())
    }

    /// Applies `edit` to a group's administrator set: reads the set once, writes
    /// only the difference, keeps the counter, and records what changed, as the
    /// whole set for a replacement and as the ids added or removed for an
    /// addition or removal. Returns the new set.
    async fn write_administrators(
        w: &mut WriteTx,
        group: &mut Group,
        edit: AdministratorEdit,
    ) -> StoreResult<Vec<UserId>> {
        let tenant = w.tenant;
        let mut current = Self::administrator_ids(w.conn(), tenant, group.id).await?;
        // Sorted here too, so that lookups below do not rest on the database's
        // order of ids.
        current.sort_unstable();
        let mut wanted = match &edit {
            AdministratorEdit::Replace(users) => users.clone(),
            AdministratorEdit::Add(users) => current.iter().chain(users).copied().collect(),
            AdministratorEdit::Remove(users) => {
                let mut leaving = users.clone();
                leaving.sort_unstable();
                current
                    .iter()
                    .copied()
                    .filter(|id| leaving.binary_search(id).is_err())
                    .collect()
            }
        };
        wanted.sort_unstable();
        wanted.dedup();
        if current == wanted {
            return Ok(current);
        }
        let removed: Vec<UserId> = current
            .iter()
            .copied()
            .filter(|id| wanted.binary_search(id).is_err())
            .collect();
        let added: Vec<UserId> = wanted
            .iter()
            .copied()
            .filter(|id| current.binary_search(id).is_err())
            .collect();
        for chunk in removed.chunks(ID_CHUNK) {
            let mut q =
                QueryBuilder::<Db>::new("DELETE FROM group_administrators WHERE tenant_id = ");
            q.push_bind(tenant.0)
                .push(" AND group_id = ")
                .push_bind(group.id.0)
                .push(" AND user_id IN (");
            push_in_list(&mut q, chunk.iter().map(|user| user.0));
            q.build().execute(w.conn()).await?;
        }
        for chunk in added.chunks(ID_CHUNK) {
            let mut q = QueryBuilder::<Db>::new(
                "INSERT INTO group_administrators (tenant_id, group_id, user_id) ",
            );
            q.push_values(chunk, |mut row, user| {
                row.push_bind(tenant.0)
                    .push_bind(group.id.0)
                    .push_bind(user.0);
            });
            q.build().execute(w.conn()).await?;
        }
        sqlx::query("UPDATE groups SET administrator_count = $3 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.0)
            .bind(group.id.0)
            .bind(wanted.len() as i64)
            .execute(w.conn())
            .await?;
        group.administrator_count = wanted.len() as i64;
        Self::save_group(w, group).await?;
        let group_id = group.id;
        w.changes.push(match edit {
            AdministratorEdit::Replace(_) => Change::AdministratorsChanged {
                group_id,
                administrator_ids: wanted.clone(),
            },
            AdministratorEdit::Add(_) => Change::AdministratorsAdded {
                group_id,
                administrator_ids: added,
            },
            AdministratorEdit::Remove(_) => Change::AdministratorsRemoved {
                group_id,
                administrator_ids: removed,
            },
        });
        Ok(wanted)
    }
}

impl Store {
    /// One write of a group's administrators. Those it adds must be eligible;
    /// those it removes need only exist (an administrator who has since lost
    /// eligibility can still be removed).
    async fn edit_administrators(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        edit: AdministratorEdit,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        let mut w = self.begin_write(tenant).await?;
        let mut g = Self::fetch_group(w.conn(), tenant, group).await?;
        check_etag("group", etag, g.revision)?;
        match &edit {
            AdministratorEdit::Replace(users) | AdministratorEdit::Add(users) => {
                Self::require_eligible(w.conn(), tenant, users).await?
            }
            AdministratorEdit::Remove(users) => {
                Self::require_users(w.conn(), tenant, users).await?;
            }
        }
        let admins = Self::write_administrators(&mut w, &mut g, edit).await?;
        self.finish(ctx, w, admins).await
    }
}

#[async_trait]
impl MembershipStore for Store {
    #[tracing::instrument(level = "debug", skip(self, ctx, users), err(level = "debug"))]
    async fn set_administrators(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        self.edit_administrators(ctx, tenant, group, AdministratorEdit::Replace(users), etag)
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, users), err(level = "debug"))]
    async fn add_administrators(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        self.edit_administrators(ctx, tenant, group, AdministratorEdit::Add(users), None)
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, users), err(level = "debug"))]
    async fn remove_administrators(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        self.edit_administrators(ctx, tenant, group, AdministratorEdit::Remove(users), None)
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_administrators(
        &self,
        tenant: TenantId,
        group: GroupId,
        page: &PageRequest,
    ) -> StoreResult<Page<User>> {
        let mut conn = self.pool.acquire().await?;
        Self::fetch_group(&mut conn, tenant, group).await?;
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {USER_COLUMNS} FROM group_administrators a JOIN users u ON u.tenant_id = a.tenant_id AND u.id = a.user_id \
             WHERE a.tenant_id = "
        ));
        q.push_bind(tenant.0)
            .push(" AND a.group_id = ")
            .push_bind(group.0);
        if let Some(after) = after_id(page)? {
            q.push(" AND a.user_id > ").push_bind(after);
        }
        q.push(" ORDER BY a.user_id LIMIT ")
            .push_bind(page.fetch_limit());
        let rows = q.build_query_as::<UserRow>().fetch_all(&mut *conn).await?;
        Ok(page.page(convert_all(rows)?, |u: &User| u.id.to_string()))
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, users), err(level = "debug"))]
    async fn add_members(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        self.add_members_at_once(ctx, tenant, group, users).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, users), err(level = "debug"))]
    async fn remove_members(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        let mut w = self.begin_write(tenant).await?;
        Self::fetch_group(w.conn(), tenant, group).await?;
        Self::require_user_ids(w.conn(), tenant, &users).await?;
        let mut removed: Vec<UserId> = Vec::new();
        if !users.is_empty() {
            let ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
            removed = delete_memberships(w.conn(), tenant.0, group.0, &ids)
                .await?
                .into_iter()
                .map(UserId)
                .collect();
            removed.sort();
        }
        Self::adjust_count(&mut w, group, Counter::Members, -(removed.len() as i64)).await?;
        w.changes
            .extend(removed.iter().map(|user| Change::MembershipRemoved {
                group_id: group,
                user_id: *user,
            }));
        self.finish(ctx, w, removed).await
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_members(
        &self,
        tenant: TenantId,
        group: GroupId,
        include_subgroups: bool,
        page: &PageRequest,
    ) -> StoreResult<Page<User>> {
        let mut conn = self.pool.acquire().await?;
        Self::fetch_group(&mut conn, tenant, group).await?;
        let after = after_id(page)?.unwrap_or(Uuid::nil());
        let groups = if include_subgroups {
            Self::subtree(&mut conn, tenant, group).await?
        } else {
            vec![group]
        };
        // The first page of distinct member ids after the cursor: per group, its
        // smallest member ids after the cursor, read as one range of the
        // memberships' primary key (tenant, group, user); merged per chunk of
        // groups, then across chunks. Spelled per group so that no plan walks a
        // tenant's memberships in user order and filters them by group (the
        // user-ordered index holds no group: see migration 0007).
        let mut member_ids: Vec<Uuid> = Vec::new();
        for chunk in groups.chunks(GROUPS_PER_MEMBER_QUERY) {
            let mut q = QueryBuilder::<Db>::new("SELECT DISTINCT user_id FROM (");
            for (i, group) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(" UNION ALL ");
                }
                q.push("SELECT user_id FROM (SELECT user_id FROM memberships WHERE tenant_id = ")
                    .push_bind(tenant.0)
                    .push(" AND group_id = ")
                    .push_bind(group.0)
                    .push(" AND user_id > ")
                    .push_bind(after)
                    .push(" ORDER BY user_id LIMIT ")
                    .push_bind(page.fetch_limit())
                    .push(format!(") AS g{i}"));
            }
            q.push(") AS m ORDER BY user_id LIMIT ")
                .push_bind(page.fetch_limit());
            member_ids.extend(q.build_query_scalar::<Uuid>().fetch_all(&mut *conn).await?);
        }
        member_ids.sort();
        member_ids.dedup();
        member_ids.truncate(page.fetch_limit() as usize);
        let mut rows: Vec<UserRow> = Vec::new();
        if !member_ids.is_empty() {
            let mut q = QueryBuilder::<Db>::new(format!(
                "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = "
            ));
            q.push_bind(tenant.0).push(" AND u.id IN (");
            push_in_list(&mut q, member_ids.iter().copied());
            q.push(" ORDER BY u.id");
            rows = q.build_query_as().fetch_all(&mut *conn).await?;
        }
        Ok(page.page(convert_all(rows)?, |u: &User| u.id.to_string()))
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_user_groups(
        &self,
        tenant: TenantId,
        user: UserId,
        page: &PageRequest,
    ) -> StoreResult<Page<(Membership, Group)>> {
        let mut conn = self.pool.acquire().await?;
        Self::fetch_user(&mut conn, tenant, user).await?;
        let after = after_id(page)?.unwrap_or(Uuid::nil());
        let rows: Vec<UserGroupRow> = sqlx::query_as(&format!(
            "SELECT m.group_id, m.user_id, m.join_revision, m.join_time, {GROUP_COLUMNS} \
             FROM memberships m JOIN groups g ON g.tenant_id = m.tenant_id AND g.id = m.group_id \
             WHERE m.tenant_id = $1 AND m.user_id = $2 AND m.group_id > $3 ORDER BY m.group_id LIMIT $4"
        ))
        .bind(tenant.0)
        .bind(user.0)
        .bind(after)
        .bind(page.fetch_limit())
        .fetch_all(&mut *conn)
        .await?;
        Ok(
            page.page(convert_all(rows)?, |(m, _): &(Membership, Group)| {
                m.group_id.to_string()
            }),
        )
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_administered_groups(
        &self,
        tenant: TenantId,
        user: UserId,
        page: &PageRequest,
    ) -> StoreResult<Page<Group>> {
        let mut conn = self.pool.acquire().await?;
        Self::fetch_user(&mut conn, tenant, user).await?;
        let after = after_id(page)?.unwrap_or(Uuid::nil());
        let rows: Vec<GroupRow> = sqlx::query_as(&format!(
            "SELECT {GROUP_COLUMNS} \
             FROM group_administrators a JOIN groups g ON g.tenant_id = a.tenant_id AND g.id = a.group_id \
             WHERE a.tenant_id = $1 AND a.user_id = $2 AND a.group_id > $3 ORDER BY a.group_id LIMIT $4"
        ))
        .bind(tenant.0)
        .bind(user.0)
        .bind(after)
        .bind(page.fetch_limit())
        .fetch_all(&mut *conn)
        .await?;
        Ok(page.page(convert_all(rows)?, |g: &Group| g.id.to_string()))
    }
}
