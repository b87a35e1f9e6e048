//! The outbox: change sets read in revision order, tenant heads, compaction,
//! and consistent snapshots of a tenant read page by page.

use super::*;

#[async_trait]
impl Outbox for Store {
    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn read_changes(
        &self,
        tenant: TenantId,
        after: Revision,
        limit: i64,
        max_bytes: i64,
    ) -> StoreResult<Vec<ChangeSet>> {
        // The running total of the sizes before each row decides where the batch
        // ends, so it always holds the first change set, however large.
        let rows: Vec<ChangeRow> = sqlx::query_as(&format!(
            "SELECT tenant_id, revision, commit_time, actor, changes FROM ( \
               SELECT tenant_id, revision, commit_time, actor, changes, \
                      SUM({CHANGES_BYTES}) OVER (ORDER BY revision) - {CHANGES_BYTES} AS bytes_before \
               FROM change_events WHERE tenant_id = $1 AND revision > $2 ORDER BY revision LIMIT $3 \
             ) batch WHERE bytes_before < $4 ORDER BY revision"
        ))
        .bind(tenant.0)
        .bind(after)
        .bind(limit)
        .bind(max_bytes)
        .fetch_all(&self.pool)
        .await?;
        convert_all(rows)
    }

    async fn tenant_heads(
        &self,
        tenants: Option<&[TenantId]>,
    ) -> StoreResult<Vec<(TenantId, Revision)>> {
        let Some(tenants) = tenants else {
            let rows: Vec<(Uuid, i64)> =
                sqlx::query_as("SELECT id, revision FROM tenants ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?;
            return Ok(rows
                .into_iter()
                .map(|(id, revision)| (TenantId(id), revision))
                .collect());
        };
        // In chunks: both databases cap the parameters of one statement.
        let mut heads = Vec::with_capacity(tenants.len());
        for chunk in tenants.chunks(ID_CHUNK) {
            let mut q = QueryBuilder::<Db>::new("SELECT id, revision FROM tenants WHERE id IN (");
            push_in_list(&mut q, chunk.iter().map(|tenant| tenant.0));
            let rows: Vec<(Uuid, i64)> = q.build_query_as().fetch_all(&self.pool).await?;
            heads.extend(
                rows.into_iter()
                    .map(|(id, revision)| (TenantId(id), revision)),
            );
        }
        heads.sort_unstable();
        Ok(heads)
    }

    #[tracing::instrument(level = "debug", skip(self), err(level = "debug"))]
    async fn snapshot(&self, tenant: TenantId) -> StoreResult<Box<dyn SnapshotReader>> {
        let mut tx = self.begin_snapshot().await?;
        let row: Option<TenantRow> = sqlx::query_as(
            "SELECT id, display_name, revision, create_time FROM tenants WHERE id = $1",
        )
        .bind(tenant.0)
        .fetch_optional(&mut *tx)
        .await?;
        let tenant_state: Tenant = row
            .ok_or_else(|| StoreError::not_found("tenant", tenant))?
            .try_into()?;
        Ok(Box::new(Snapshot {
            revision: tenant_state.revision,
            tx,
            tenant,
            stage: SnapshotStage::Tenant(tenant_state),
        }))
    }

    async fn compact_changes(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let deleted = sqlx::query("DELETE FROM change_events WHERE commit_time < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }

    fn commit_signal(&self) -> tokio::sync::broadcast::Receiver<crate::storage::Commit> {
        self.commits.subscribe()
    }
}

/// Where a snapshot read has got to: each stage pages by its own key.
enum SnapshotStage {
    Tenant(Tenant),
    Users(Uuid),
    Groups(Uuid),
    Memberships(Uuid, Uuid),
    Administrators(Uuid, Uuid),
    Catalogs(Uuid, String),
    Done,
}

/// A tenant's state read in one read-only transaction (repeatable read on
/// PostgreSQL, a WAL read snapshot on SQLite), so every page shows one revision.
struct Snapshot {
    tx: Transaction<'static, Db>,
    tenant: TenantId,
    revision: Revision,
    stage: SnapshotStage,
}

impl Snapshot {
    /// The next rows of `select` (a query over one table of the tenant) from a
    /// server-side cursor, declared on the stage's first page: rows come in the
    /// order the table holds them, without walking an index (a keyset page fetched
    /// every row at random from the heap, several times slower).
    async fn fetch_from_cursor<R>(
        &mut self,
        name: &str,
        select: &str,
        first: bool,
        limit: i64,
    ) -> StoreResult<Vec<R>>
    where
        R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
    {
        if first {
            sqlx::query(&format!("DECLARE {name} NO SCROLL CURSOR FOR {select}"))
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(sqlx::query_as(&format!("FETCH {limit} FROM {name}"))
            .fetch_all(&mut *self.tx)
            .await?)
    }

    /// A page of the tenant's rows of one table (`from`: columns, table and its
    /// `alias`) in id order after `after` (nil: from the first): from a cursor
    /// where the database has them, else by key.
    async fn page_by_id<R>(
        &mut self,
        cursor: &str,
        from: &str,
        alias: &str,
        after: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<R>>
    where
        R: for<'r> sqlx::FromRow<'r, <Db as sqlx::Database>::Row> + Send + Unpin,
    {
        let tenant = self.tenant.0;
        if SNAPSHOT_BY_CURSOR {
            let select = format!("SELECT {from} WHERE {alias}.tenant_id = '{tenant}'");
            return self
                .fetch_from_cursor(cursor, &select, after.is_nil(), limit)
                .await;
        }
        Ok(sqlx::query_as(&format!(
            "SELECT {from} WHERE {alias}.tenant_id = $1 AND {alias}.id > $2 ORDER BY {alias}.id LIMIT $3"
        ))
        .bind(tenant)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }
}

/// Where a snapshot goes on after a page: on in this stage after its last row
/// when the page came full (more may follow), else to the `done` stage.
fn next_stage<T>(
    page: &[T],
    limit: i64,
    done: SnapshotStage,
    after: impl FnOnce(&T) -> SnapshotStage,
) -> SnapshotStage {
    match page.last() {
        Some(last) if page.len() as i64 == limit => after(last),
        _ => done,
    }
}

#[async_trait]
impl SnapshotReader for Snapshot {
    fn revision(&self) -> Revision {
        self.revision
    }

    async fn next_page(&mut self, rows: i64) -> StoreResult<Option<Vec<Change>>> {
        let limit = rows;
        let tenant = self.tenant.0;
        let nil = Uuid::nil();
        let stage = std::mem::replace(&mut self.stage, SnapshotStage::Done);
        let (changes, next) = match stage {
            SnapshotStage::Done => return Ok(None),
            SnapshotStage::Tenant(state) => (
                vec![Change::TenantCreated { tenant: state }],
                SnapshotStage::Users(nil),
            ),
            SnapshotStage::Users(after) => {
                let from = format!("{USER_COLUMNS} FROM users u");
                let rows: Vec<UserRow> = self
                    .page_by_id("snapshot_users", &from, "u", after, limit)
                    .await?;
                let users: Vec<User> = convert_all(rows)?;
                let next = next_stage(&users, limit, SnapshotStage::Groups(nil), |last| {
                    SnapshotStage::Users(last.id.0)
                });
                let changes = users
                    .into_iter()
                    .map(|user| Change::UserUpserted { user })
                    .collect();
                (changes, next)
            }
            SnapshotStage::Groups(after) => {
                let from = format!("{GROUP_COLUMNS} FROM groups g");
                let rows: Vec<GroupRow> = self
                    .page_by_id("snapshot_groups", &from, "g", after, limit)
                    .await?;
                let groups: Vec<Group> = convert_all(rows)?;
                let done = SnapshotStage::Memberships(nil, nil);
                let next = next_stage(&groups, limit, done, |last| {
                    SnapshotStage::Groups(last.id.0)
                });
                let changes = groups
                    .into_iter()
                    .map(|group| Change::GroupUpserted { group })
                    .collect();
                (changes, next)
            }
            SnapshotStage::Memberships(after_group, after_user) => {
                let rows: Vec<MembershipRow> = if SNAPSHOT_BY_CURSOR {
                    let select = format!(
                        "SELECT group_id, user_id, join_revision, join_time FROM memberships WHERE tenant_id = '{tenant}'"
                    );
                    self.fetch_from_cursor(
                        "snapshot_memberships",
                        &select,
                        after_group == nil && after_user == nil,
                        limit,
                    )
                    .await?
                } else {
                    // A row comparison, which both databases answer with one range of
                    // the primary key; spelled as `group_id > $2 OR (...)`, PostgreSQL
                    // filters every row before the cursor, and a snapshot slows down
                    // quadratically with the tenant.
                    sqlx::query_as(
                        "SELECT group_id, user_id, join_revision, join_time FROM memberships \
                         WHERE tenant_id = $1 AND (group_id, user_id) > ($2, $3) \
                         ORDER BY group_id, user_id LIMIT $4",
                    )
                    .bind(tenant)
                    .bind(after_group)
                    .bind(after_user)
                    .bind(limit)
                    .fetch_all(&mut *self.tx)
                    .await?
                };
                let memberships: Vec<Membership> = rows.into_iter().map(Membership::from).collect();
                let done = SnapshotStage::Administrators(nil, nil);
                let next = next_stage(&memberships, limit, done, |last| {
                    SnapshotStage::Memberships(last.group_id.0, last.user_id.0)
                });
                (
                    memberships
                        .into_iter()
                        .map(|membership| Change::MembershipAdded { membership })
                        .collect(),
                    next,
                )
            }
            SnapshotStage::Administrators(after_group, after_user) => {
                // Rows like any other table: a large set spans pages, each part an
                // addition (the subscriber started the tenant from nothing).
                let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
                    "SELECT group_id, user_id FROM group_administrators \
                     WHERE tenant_id = $1 AND (group_id, user_id) > ($2, $3) \
                     ORDER BY group_id, user_id LIMIT $4",
                )
                .bind(tenant)
                .bind(after_group)
                .bind(after_user)
                .bind(limit)
                .fetch_all(&mut *self.tx)
                .await?;
                let done = SnapshotStage::Catalogs(nil, String::new());
                let next = next_stage(&rows, limit, done, |&(group, user)| {
                    SnapshotStage::Administrators(group, user)
                });
                let changes = rows
                    .chunk_by(|a, b| a.0 == b.0)
                    .map(|run| Change::AdministratorsAdded {
                        group_id: GroupId(run[0].0),
                        administrator_ids: run.iter().map(|(_, user)| UserId(*user)).collect(),
                    })
                    .collect();
                (changes, next)
            }
            SnapshotStage::Catalogs(after_group, after_catalog) => {
                let rows: Vec<CatalogRow> = sqlx::query_as(
                    "SELECT group_id, catalog_id, assign_time FROM catalog_assignments \
                     WHERE tenant_id = $1 AND (group_id, catalog_id) > ($2, $3) \
                     ORDER BY group_id, catalog_id LIMIT $4",
                )
                .bind(tenant)
                .bind(after_group)
                .bind(&after_catalog)
                .bind(limit)
                .fetch_all(&mut *self.tx)
                .await?;
                let assignments: Vec<CatalogAssignment> = convert_all(rows)?;
                let next = next_stage(&assignments, limit, SnapshotStage::Done, |last| {
                    SnapshotStage::Catalogs(last.group_id.0, last.catalog_id.as_str().to_owned())
                });
                let changes = assignments
                    .into_iter()
                    .map(|a| Change::CatalogAssigned {
                        group_id: a.group_id,
                        catalog_id: a.catalog_id,
                    })
                    .collect();
                (changes, next)
            }
        };
        self.stage = next;
        Ok(Some(changes))
    }
}
