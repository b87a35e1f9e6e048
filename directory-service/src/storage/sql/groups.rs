//! Groups: organizations and nested subgroups, created, read, listed, updated,
//! moved (never under their own subtree) and deleted (with their subtree when
//! asked), with the counters each group keeps.

use super::*;

impl Store {
    pub(in crate::storage) fn name_taken(group: &Group) -> impl FnOnce() -> String + '_ {
        move || {
            format!(
                "a sibling group named {} already exists",
                group.display_name.as_str()
            )
        }
    }

    /// Writes a group's own fields and records the change.
    pub(super) async fn save_group(w: &mut WriteTx, group: &mut Group) -> StoreResult<()> {
        group.update_time = now();
        group.revision = w.revision;
        let name_taken = || {
            format!(
                "a sibling group named {} already exists",
                group.display_name.as_str()
            )
        };
        sqlx::query(
            "UPDATE groups SET display_name = $3, name_key = $4, parent_id = $5, is_organization = $6, \
             inherited_roles = $7, update_time = $8, revision = $9 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(w.tenant.0)
        .bind(group.id.0)
        .bind(group.display_name.as_str())
        .bind(group.display_name.key())
        .bind(group.parent_id.map(|p| p.0))
        .bind(group.is_organization)
        .bind(group.inherited_column())
        .bind(group.update_time)
        .bind(group.revision)
        .execute(w.conn())
        .await
        .map_err(unique_as("display_name", name_taken))?;
        Ok(())
    }

    /// Adds `delta` to one of a group's counters.
    pub(in crate::storage) async fn adjust_count(
        w: &mut WriteTx,
        group: GroupId,
        column: Counter,
        delta: i64,
    ) -> StoreResult<()> {
        if delta == 0 {
            return Ok(());
        }
        let column = column.as_str();
        sqlx::query(&format!(
            "UPDATE groups SET {column} = {column} + $3 WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(w.tenant.0)
        .bind(group.0)
        .bind(delta)
        .execute(w.conn())
        .await?;
        Ok(())
    }

    /// The ids of a group and all its descendants, the group first, level by level.
    ///
    /// Walked here rather than with `WITH RECURSIVE`: PostgreSQL cannot estimate a
    /// recursive query's size and hash-joins it against whole tables (a scan of the
    /// tenant's groups per level); each level here is one lookup on
    /// `groups_by_parent`.
    pub(super) async fn subtree(
        conn: &mut DbConn,
        tenant: TenantId,
        root: GroupId,
    ) -> StoreResult<Vec<GroupId>> {
        let mut all = vec![root];
        let mut level = vec![root.0];
        while !level.is_empty() {
            let mut next: Vec<Uuid> = Vec::new();
            for chunk in level.chunks(ID_CHUNK) {
                let mut q = QueryBuilder::<Db>::new("SELECT id FROM groups WHERE tenant_id = ");
                q.push_bind(tenant.0).push(" AND parent_id IN (");
                push_in_list(&mut q, chunk.iter().copied());
                q.push(" ORDER BY id");
                next.extend(q.build_query_scalar::<Uuid>().fetch_all(&mut *conn).await?);
            }
            all.extend(next.iter().copied().map(GroupId));
            level = next;
        }
        Ok(all)
    }

    /// Whether `ancestor` is `group` or one of its ancestors: a walk up the parent
    /// links, one primary-key lookup per level.
    async fn is_ancestor_or_self(
        conn: &mut DbConn,
        tenant: TenantId,
        ancestor: GroupId,
        group: GroupId,
    ) -> StoreResult<bool> {
        let mut current = Some(group.0);
        while let Some(id) = current {
            if id == ancestor.0 {
                return Ok(true);
            }
            current =
                sqlx::query_scalar("SELECT parent_id FROM groups WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.0)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .flatten();
        }
        Ok(false)
    }
}

#[async_trait]
impl GroupStore for Store {
    #[tracing::instrument(level = "debug", skip(self, ctx, new), err(level = "debug"))]
    async fn create_group(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        new: NewGroup,
    ) -> StoreResult<Written<Group>> {
        let fingerprint = fingerprint(&new);
        // Two tries, as for users.
        for attempt in 0..2 {
            if let Some((id, revision)) = self
                .replay_of(tenant, &new.request_id, &fingerprint)
                .await?
            {
                return Ok(Written {
                    value: self.get_group(tenant, GroupId(id)).await?,
                    revision,
                });
            }
            if new.is_organization && new.parent_id.is_some() {
                return Err(StoreError::InvalidArgument {
                    field: "is_organization".into(),
                    message: "a subgroup cannot be an organization".into(),
                });
            }
            let time = now();
            let mut group = Group {
                id: GroupId::generate(),
                tenant_id: tenant,
                display_name: new.display_name.clone(),
                parent_id: new.parent_id,
                is_organization: new.is_organization,
                subgroup_count: 0,
                member_count: 0,
                administrator_count: 0,
                inherited_roles: new.inherited_roles.clone(),
                create_time: time,
                update_time: time,
                revision: 0,
            };
            let shot = OneShot {
                ctx,
                tenant,
                request: new.request_id.as_ref().map(|r| (r, fingerprint.as_str())),
                time,
                changes: vec![Change::GroupUpserted {
                    group: group.clone(),
                }],
            };
            let created = self.create_group_at_once(&shot, &group).await;
            if let Some(revision) =
                created_or_retry(created, attempt == 0, new.request_id.is_some())?
            {
                group.revision = revision;
                return Ok(Written {
                    value: group,
                    revision,
                });
            }
        }
        Err(StoreError::Corrupt(
            "a request id was taken, yet no result is stored for it".into(),
        ))
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn get_group(&self, tenant: TenantId, id: GroupId) -> StoreResult<Group> {
        let mut conn = self.pool.acquire().await?;
        let read = Self::fetch_group(&mut conn, tenant, id).await;
        Self::in_known_tenant(&mut conn, tenant, read).await
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_groups(
        &self,
        tenant: TenantId,
        filter: &GroupFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Group>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {GROUP_COLUMNS} FROM groups g WHERE g.tenant_id = "
        ));
        q.push_bind(tenant.0);
        if let Some(parent) = filter.parent_id {
            q.push(" AND g.parent_id = ").push_bind(parent.0);
        }
        if filter.top_level_only || filter.organizations_only {
            q.push(" AND g.parent_id IS NULL");
        }
        if filter.organizations_only {
            q.push(" AND g.is_organization = ").push_bind(true);
        }
        if let Some(query) = &filter.query {
            q.push(" AND g.name_key LIKE ")
                .push_bind(contains_pattern(query))
                .push(" ESCAPE '\\'");
        }
        self.list_page::<GroupRow, _>(q, "g", tenant, filter.parent_id, page, |g: &Group| {
            g.id.to_string()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, update), err(level = "debug"))]
    async fn update_group(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: GroupId,
        update: GroupUpdate,
    ) -> StoreResult<Written<Group>> {
        let mut w = self.begin_write(tenant).await?;
        let before = Self::fetch_group(w.conn(), tenant, id).await?;
        check_etag("group", update.etag, before.revision)?;
        let mut group = before.clone();
        if let Some(name) = update.display_name {
            group.display_name = name;
        }
        if let Some(flag) = update.is_organization {
            rules::may_be_organization(&group, flag)?;
            group.is_organization = flag;
        }
        if group != before {
            Self::save_group(&mut w, &mut group).await?;
            w.changes.push(Change::GroupUpserted {
                group: group.clone(),
            });
        }
        self.finish(ctx, w, group).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx), err(level = "debug"))]
    async fn move_group(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: GroupId,
        new_parent: Option<GroupId>,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Group>> {
        let mut w = self.begin_write(tenant).await?;
        let mut group = Self::fetch_group(w.conn(), tenant, id).await?;
        check_etag("group", etag, group.revision)?;
        if group.parent_id == new_parent {
            return self.finish(ctx, w, group).await;
        }
        if let Some(parent) = new_parent {
            rules::may_be_nested(&group)?;
            Self::fetch_group(w.conn(), tenant, parent).await?;
            let parent_in_subtree = Self::is_ancestor_or_self(w.conn(), tenant, id, parent).await?;
            let catalog_assignments: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM catalog_assignments WHERE tenant_id = $1 AND group_id = $2",
            )
            .bind(tenant.0)
            .bind(id.0)
            .fetch_one(w.conn())
            .await?;
            rules::may_move(
                &group,
                parent,
                rules::MoveFacts {
                    parent_in_subtree,
                    catalog_assignments,
                },
            )?;
        }
        if let Some(old) = group.parent_id {
            Self::adjust_count(&mut w, old, Counter::Subgroups, -1).await?;
        }
        if let Some(parent) = new_parent {
            Self::adjust_count(&mut w, parent, Counter::Subgroups, 1).await?;
        }
        group.parent_id = new_parent;
        Self::save_group(&mut w, &mut group).await?;
        w.changes.push(Change::GroupUpserted {
            group: group.clone(),
        });
        self.finish(ctx, w, group).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx), err(level = "debug"))]
    async fn delete_group(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: GroupId,
        cascade: bool,
        etag: Option<Etag>,
    ) -> StoreResult<Written<Vec<GroupId>>> {
        let mut w = self.begin_write(tenant).await?;
        let group = Self::fetch_group(w.conn(), tenant, id).await?;
        check_etag("group", etag, group.revision)?;
        rules::may_delete(&group, cascade)?;
        let subtree = Self::subtree(w.conn(), tenant, id).await?;
        // Memberships first (no foreign key cascades them on PostgreSQL), then the
        // groups, deepest first so that no group outlives its parent.
        for chunk in subtree.chunks(ID_CHUNK) {
            let mut q = QueryBuilder::<Db>::new("DELETE FROM memberships WHERE tenant_id = ");
            q.push_bind(tenant.0).push(" AND group_id IN (");
            push_in_list(&mut q, chunk.iter().map(|group| group.0));
            q.build().execute(w.conn()).await?;
        }
        for chunk in subtree.rchunks(ID_CHUNK) {
            let mut q = QueryBuilder::<Db>::new("DELETE FROM groups WHERE tenant_id = ");
            q.push_bind(tenant.0).push(" AND id IN (");
            push_in_list(&mut q, chunk.iter().map(|group| group.0));
            q.build().execute(w.conn()).await?;
        }
        if let Some(parent) = group.parent_id {
            Self::adjust_count(&mut w, parent, Counter::Subgroups, -1).await?;
        }
        w.changes.extend(
            subtree
                .iter()
                .map(|g| Change::GroupDeleted { group_id: *g }),
        );
        self.finish(ctx, w, subtree).await
    }
}
