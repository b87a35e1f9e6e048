//! Users: created one by one or in batches (all or nothing, each request id
//! replayed), read, listed and searched, updated, suspended, deleted, never
//! leaving the tenant without an active Global Admin ADMIN; and the helpers the
//! other writes use to check and save users.
//!
//! Long because users are created one at a time and in all-or-nothing batches,
//! and both ways share the checks and the row writing here.

use super::*;

impl Store {
    /// Refuses a change that would leave the tenant without an active Global Admin
    /// ADMIN (`user` is the one losing the role or access).
    async fn keep_an_administrator(
        conn: &mut DbConn,
        tenant: TenantId,
        user: &User,
    ) -> StoreResult<()> {
        if !rules::is_active_admin(user) {
            return Ok(());
        }
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM user_roles r JOIN users u \
               ON u.tenant_id = r.tenant_id AND u.id = r.user_id \
             WHERE r.tenant_id = $1 AND r.role = $2 AND r.user_id <> $3 AND u.suspended = $4 LIMIT 1) AS other",
        )
        .bind(tenant.0)
        .bind(Role::GlobalAdminAdmin.as_str())
        .bind(user.id.0)
        .bind(false)
        .fetch_one(conn)
        .await?;
        Ok(rules::keep_an_administrator(user, others)?)
    }

    /// ALREADY_EXISTS naming the first of the batch's users (at `indexes`) whose
    /// email a user of the tenant already has.
    async fn refuse_taken_emails(
        conn: &mut DbConn,
        tenant: TenantId,
        new: &[NewUser],
        indexes: &[usize],
    ) -> StoreResult<()> {
        let keys: Vec<String> = indexes.iter().map(|i| new[*i].email.key()).collect();
        let taken: std::collections::HashSet<String> = emails_taken(conn, tenant.0, &keys)
            .await?
            .into_iter()
            .collect();
        match indexes
            .iter()
            .find(|i| taken.contains(&new[**i].email.key()))
        {
            None => Ok(()),
            Some(i) => Err(StoreError::AlreadyExists {
                field: format!("users[{i}].email"),
                message: format!(
                    "a user with email {} already exists in this tenant",
                    new[*i].email.as_str()
                ),
            }),
        }
    }

    /// Fails with NOT_FOUND naming the first of `users` that is not in the tenant.
    pub(super) async fn require_users(
        conn: &mut DbConn,
        tenant: TenantId,
        users: &[UserId],
    ) -> StoreResult<Vec<User>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = "
        ));
        q.push_bind(tenant.0).push(" AND u.id IN (");
        push_in_list(&mut q, users.iter().map(|user| user.0));
        let found: Vec<User> = convert_all(q.build_query_as::<UserRow>().fetch_all(conn).await?)?;
        let ids: std::collections::HashSet<UserId> = found.iter().map(|u| u.id).collect();
        match users.iter().find(|id| !ids.contains(id)) {
            Some(missing) => Err(StoreError::not_found("user", missing)),
            None => Ok(found),
        }
    }

    /// Fails with NOT_FOUND naming the first of `users` that is not in the tenant
    /// (reading only ids).
    pub(super) async fn require_user_ids(
        conn: &mut DbConn,
        tenant: TenantId,
        users: &[UserId],
    ) -> StoreResult<()> {
        let asked: Vec<Uuid> = users.iter().map(|u| u.0).collect();
        let found: std::collections::HashSet<Uuid> = users_among(conn, tenant.0, &asked)
            .await?
            .into_iter()
            .collect();
        match users.iter().find(|id| !found.contains(&id.0)) {
            Some(missing) => Err(StoreError::not_found("user", missing)),
            None => Ok(()),
        }
    }

    /// A new user, as `new` describes it, at `revision`.
    pub(in crate::storage) fn new_user(
        tenant: TenantId,
        new: &NewUser,
        time: DateTime<Utc>,
        revision: Revision,
    ) -> User {
        User {
            id: UserId::generate(),
            tenant_id: tenant,
            display_name: new.display_name.clone(),
            email: new.email.clone(),
            roles: new.roles.clone(),
            state: UserState::Active,
            create_time: time,
            update_time: time,
            revision,
        }
    }

    /// The row of a new user, as the backends' `insert_user_row` writes it.
    pub(in crate::storage) fn user_row(user: &User) -> NewUserRow<'_> {
        NewUserRow {
            tenant: user.tenant_id.0,
            id: user.id.0,
            display_name: user.display_name.as_str(),
            email: user.email.as_str(),
            email_key: user.email.key(),
            search_text: search_text(user.display_name.as_str(), user.email.as_str()),
            roles: encode_roles(user.roles.roles().iter().copied()),
            role_names: user.roles.roles().iter().map(|r| r.as_str()).collect(),
            time: user.create_time,
            revision: user.revision,
        }
    }

    pub(in crate::storage) fn email_taken(user: &User) -> impl FnOnce() -> String + '_ {
        move || {
            format!(
                "a user with email {} already exists in this tenant",
                user.email.as_str()
            )
        }
    }

    /// Inserts a new user (at the transaction's revision) and records the change.
    pub(super) async fn insert_user(w: &mut WriteTx, user: &User) -> StoreResult<()> {
        debug_assert_eq!(user.revision, w.revision);
        insert_user_row(w.conn(), &Self::user_row(user))
            .await
            .map_err(unique_as("email", Self::email_taken(user)))?;
        w.changes.push(Change::UserUpserted { user: user.clone() });
        Ok(())
    }

    async fn write_user_roles(w: &mut WriteTx, id: UserId, roles: &[Role]) -> StoreResult<()> {
        sqlx::query("DELETE FROM user_roles WHERE tenant_id = $1 AND user_id = $2")
            .bind(w.tenant.0)
            .bind(id.0)
            .execute(w.conn())
            .await?;
        let mut q = QueryBuilder::<Db>::new("INSERT INTO user_roles (tenant_id, user_id, role) ");
        q.push_values(roles, |mut row, role| {
            row.push_bind(w.tenant.0)
                .push_bind(id.0)
                .push_bind(role.as_str());
        });
        q.build().execute(w.conn()).await?;
        Ok(())
    }

    /// Writes a user's changed fields and records the change.
    async fn save_user(w: &mut WriteTx, user: &mut User) -> StoreResult<()> {
        user.update_time = now();
        user.revision = w.revision;
        let email_taken = || {
            format!(
                "a user with email {} already exists in this tenant",
                user.email.as_str()
            )
        };
        sqlx::query(
            "UPDATE users SET display_name = $3, email = $4, email_key = $5, search_text = $6, roles = $7, \
             suspended = $8, update_time = $9, revision = $10 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(w.tenant.0)
        .bind(user.id.0)
        .bind(user.display_name.as_str())
        .bind(user.email.as_str())
        .bind(user.email.key())
        .bind(search_text(user.display_name.as_str(), user.email.as_str()))
        .bind(encode_roles(user.roles.roles().iter().copied()))
        .bind(user.state == UserState::Suspended)
        .bind(user.update_time)
        .bind(user.revision)
        .execute(w.conn())
        .await
        .map_err(unique_as("email", email_taken))?;
        w.changes.push(Change::UserUpserted { user: user.clone() });
        Ok(())
    }
}

#[async_trait]
impl UserStore for Store {
    #[tracing::instrument(level = "debug", skip(self, ctx, new), err(level = "debug"))]
    async fn create_user(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        new: NewUser,
    ) -> StoreResult<Written<User>> {
        let fingerprint = fingerprint(&new);
        // Two tries: a concurrent create with the same request id makes the first
        // fail, and the second then replays its result.
        for attempt in 0..2 {
            if let Some((id, revision)) = self
                .replay_of(tenant, &new.request_id, &fingerprint)
                .await?
            {
                return Ok(Written {
                    value: self.get_user(tenant, UserId(id)).await?,
                    revision,
                });
            }
            let time = now();
            let mut user = Self::new_user(tenant, &new, time, 0);
            let shot = OneShot {
                ctx,
                tenant,
                request: new.request_id.as_ref().map(|r| (r, fingerprint.as_str())),
                time,
                changes: vec![Change::UserUpserted { user: user.clone() }],
            };
            let created = self.create_user_at_once(&shot, &user).await;
            if let Some(revision) =
                created_or_retry(created, attempt == 0, new.request_id.is_some())?
            {
                user.revision = revision;
                return Ok(Written {
                    value: user,
                    revision,
                });
            }
        }
        Err(StoreError::Corrupt(
            "a request id was taken, yet no result is stored for it".into(),
        ))
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, new), fields(users = new.len()), err(level = "debug"))]
    async fn create_users(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        new: Vec<NewUser>,
    ) -> StoreResult<Written<Vec<User>>> {
        let mut w = self.begin_write(tenant).await?;
        let fingerprints: Vec<String> = new.iter().map(fingerprint).collect();
        let replays = Self::replayed_batch(w.conn(), tenant.0, &new, &fingerprints).await?;
        let fresh: Vec<usize> = (0..new.len()).filter(|i| replays[*i].is_none()).collect();
        Self::refuse_taken_emails(w.conn(), tenant, &new, &fresh).await?;

        let now = now();
        let created: Vec<(usize, User)> = fresh
            .iter()
            .map(|i| {
                let n = &new[*i];
                let user = User {
                    id: UserId::generate(),
                    tenant_id: tenant,
                    display_name: n.display_name.clone(),
                    email: n.email.clone(),
                    roles: n.roles.clone(),
                    state: UserState::Active,
                    create_time: now,
                    update_time: now,
                    revision: w.revision,
                };
                (*i, user)
            })
            .collect();
        let users: Vec<User> = created.iter().map(|(_, u)| u.clone()).collect();
        insert_users(w.conn(), &users)
            .await
            .map_err(unique_as("users", || {
                "a user of the batch already exists in this tenant".to_owned()
            }))?;
        let keys: Vec<(&str, &str, Uuid)> = created
            .iter()
            .filter_map(|(i, u)| {
                new[*i]
                    .request_id
                    .as_ref()
                    .map(|r| (r.as_str(), fingerprints[*i].as_str(), u.id.0))
            })
            .collect();
        if !keys.is_empty() {
            let revision = w.revision;
            insert_request_ids(w.conn(), tenant.0, &keys, revision, now).await?;
        }
        w.changes.extend(
            created
                .iter()
                .map(|(_, user)| Change::UserUpserted { user: user.clone() }),
        );

        // The users in request order: the new ones, and the first results of replays.
        let replayed_ids: Vec<UserId> = replays
            .iter()
            .flatten()
            .map(|(id, _)| UserId(*id))
            .collect();
        let replayed_users = Self::require_users(w.conn(), tenant, &replayed_ids).await?;
        let mut created = created.into_iter().peekable();
        let users: Vec<User> = replays
            .iter()
            .enumerate()
            .map(|(i, replay)| match replay {
                Some((id, _)) => replayed_users
                    .iter()
                    .find(|u| u.id.0 == *id)
                    .cloned()
                    .expect("require_users found every replayed user"),
                None => {
                    created
                        .next_if(|(j, _)| *j == i)
                        .expect("every fresh user was created")
                        .1
                }
            })
            .collect();
        if w.changes.is_empty() {
            // Every user was a replay: nothing new to commit.
            w.tx.rollback().await?;
            let revision = replays.iter().flatten().map(|(_, r)| *r).max().unwrap_or(0);
            return Ok(Written {
                value: users,
                revision,
            });
        }
        self.finish(ctx, w, users).await
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn get_user(&self, tenant: TenantId, id: UserId) -> StoreResult<User> {
        let mut conn = self.pool.acquire().await?;
        let read = Self::fetch_user(&mut conn, tenant, id).await;
        Self::in_known_tenant(&mut conn, tenant, read).await
    }

    #[tracing::instrument(level = "debug", skip(self, page), err(level = "debug"))]
    async fn list_users(
        &self,
        tenant: TenantId,
        filter: &UserFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<User>> {
        let mut q = QueryBuilder::<Db>::new(format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.tenant_id = "
        ));
        q.push_bind(tenant.0);
        if let Some(query) = &filter.query {
            q.push(" AND u.search_text LIKE ")
                .push_bind(contains_pattern(query))
                .push(" ESCAPE '\\'");
        }
        if let Some(role) = filter.role {
            q.push(" AND EXISTS (SELECT 1 FROM user_roles r WHERE r.tenant_id = u.tenant_id AND r.user_id = u.id AND r.role = ")
                .push_bind(role.as_str())
                .push(")");
        }
        if let Some(group) = filter.group_id {
            q.push(" AND EXISTS (SELECT 1 FROM memberships m WHERE m.tenant_id = u.tenant_id AND m.user_id = u.id AND m.group_id = ")
                .push_bind(group.0)
                .push(")");
        }
        if let Some(state) = filter.state {
            q.push(" AND u.suspended = ")
                .push_bind(state == UserState::Suspended);
        }
        self.list_page::<UserRow, _>(q, "u", tenant, filter.group_id, page, |u: &User| {
            u.id.to_string()
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx, update), err(level = "debug"))]
    async fn update_user(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: UserId,
        update: UserUpdate,
    ) -> StoreResult<Written<User>> {
        let mut w = self.begin_write(tenant).await?;
        let before = Self::fetch_user(w.conn(), tenant, id).await?;
        check_etag("user", update.etag, before.revision)?;
        let mut user = before.clone();
        if let Some(name) = update.display_name {
            user.display_name = name;
        }
        if let Some(email) = update.email {
            user.email = email;
        }
        if let Some(roles) = update.roles {
            user.roles = roles;
        }
        if user == before {
            return self.finish(ctx, w, user).await;
        }
        if before.may_administer_groups() && !user.may_administer_groups() {
            let groups = Self::administered_groups(w.conn(), tenant, id).await?;
            rules::release_administered_groups(id, groups)?;
        }
        if !user.roles.contains(Role::GlobalAdminAdmin) {
            Self::keep_an_administrator(w.conn(), tenant, &before).await?;
        }
        if user.roles != before.roles {
            Self::write_user_roles(&mut w, id, user.roles.roles()).await?;
        }
        Self::save_user(&mut w, &mut user).await?;
        self.finish(ctx, w, user).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx), err(level = "debug"))]
    async fn set_user_suspended(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: UserId,
        suspended: bool,
        etag: Option<Etag>,
    ) -> StoreResult<Written<User>> {
        let mut w = self.begin_write(tenant).await?;
        let mut user = Self::fetch_user(w.conn(), tenant, id).await?;
        check_etag("user", etag, user.revision)?;
        let state = if suspended {
            UserState::Suspended
        } else {
            UserState::Active
        };
        if user.state != state {
            if suspended {
                Self::keep_an_administrator(w.conn(), tenant, &user).await?;
            }
            user.state = state;
            Self::save_user(&mut w, &mut user).await?;
        }
        self.finish(ctx, w, user).await
    }

    #[tracing::instrument(level = "debug", skip(self, ctx), err(level = "debug"))]
    async fn delete_user(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        id: UserId,
        etag: Option<Etag>,
    ) -> StoreResult<Written<()>> {
        let mut w = self.begin_write(tenant).await?;
        let user = Self::fetch_user(w.conn(), tenant, id).await?;
        check_etag("user", etag, user.revision)?;
        let groups = Self::administered_groups(w.conn(), tenant, id).await?;
        rules::release_administered_groups(id, groups)?;
        Self::keep_an_administrator(w.conn(), tenant, &user).await?;
        sqlx::query(
            "UPDATE groups SET member_count = member_count - 1 WHERE tenant_id = $1 AND id IN \
             (SELECT group_id FROM memberships WHERE tenant_id = $1 AND user_id = $2)",
        )
        .bind(tenant.0)
        .bind(id.0)
        .execute(w.conn())
        .await?;
        // Memberships and roles have no foreign key to cascade on PostgreSQL (see
        // migration 0003): they go explicitly.
        for sql in [
            "DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2",
            "DELETE FROM user_roles WHERE tenant_id = $1 AND user_id = $2",
            "DELETE FROM users WHERE tenant_id = $1 AND id = $2",
        ] {
            sqlx::query(sql)
                .bind(tenant.0)
                .bind(id.0)
                .execute(w.conn())
                .await?;
        }
        // Tells every process that remembers known users (`KnownUsers` on
        // PostgreSQL) that one remembered before this revision may be gone.
        sqlx::query("UPDATE tenants SET users_deleted_revision = $2 WHERE id = $1")
            .bind(tenant.0)
            .bind(w.revision)
            .execute(w.conn())
            .await?;
        w.changes.push(Change::UserDeleted { user_id: id });
        self.finish(ctx, w, ()).await
    }
}
