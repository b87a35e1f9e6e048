//! The projection's SQL, shared by both backends.
//!
//! `postgres.rs` and `sqlite.rs` each mount this file as their child module
//! `sql` (`#[path = "sql.rs"]`) after defining `Store` (with a `pool` field), so
//! it compiles once per backend with concrete sqlx types while the logic exists
//! once. It reaches the backend's items through `use super::*`, as the code of
//! one module would.

use super::*;

use async_trait::async_trait;
use futures::TryStreamExt;
use uuid::Uuid;

use crate::domain::{Change, Revision, TenantId, TenantState};
use crate::storage::format::{LogEntry, Page};
use crate::storage::{
    Appended, Base, Generation, ProjectionStore, StoreError, StoreResult, StoredTenant,
};

/// The tenants among `tenants` that are not in `known`, each once.
pub(super) fn unknown_among(tenants: &[Uuid], known: &[Uuid]) -> Vec<Uuid> {
    let mut unknown: Vec<Uuid> = tenants
        .iter()
        .filter(|t| !known.contains(t))
        .copied()
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    unknown
}

impl Store {
    /// Removes what unfinished bases left: pages and log rows of any generation
    /// but the live one (and of tenants that have none).
    async fn remove_leftovers(&self) -> StoreResult<()> {
        for table in ["projection_pages", "projection_log"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM projection_tenants t \
                 WHERE t.tenant_id = {table}.tenant_id AND t.generation = {table}.generation)"
            ))
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Removes everything stored for a tenant (its projection is then rebuilt from
    /// the directory).
    async fn forget(&self, tenant: TenantId) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for table in ["projection_pages", "projection_log", "projection_tenants"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                .bind(tenant.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One tenant's base and log, applied in bulk, at `revision`: this task reads
    /// rows while a thread decodes and applies them (and builds the indexes at the
    /// end). Decoding on a third thread was no faster, and held more memory.
    async fn load_tenant(
        &self,
        tenant: TenantId,
        generation: Generation,
        revision: Revision,
    ) -> StoreResult<StoredTenant> {
        let (bodies, mut to_apply) = tokio::sync::mpsc::channel::<Stored>(4);
        let applier = tokio::task::spawn_blocking(move || -> StoreResult<_> {
            let mut state = TenantState::bulk();
            let (mut base_changes, mut log_entries, mut log_changes) = (0u64, 0u64, 0u64);
            while let Some(stored) = to_apply.blocking_recv() {
                match stored {
                    Stored::Page(body) => Page::decode_into(&body, |change| {
                        base_changes += 1;
                        state.apply(change);
                    })?,
                    Stored::Log(body) => {
                        log_entries += 1;
                        LogEntry::decode_into(&body, |change| {
                            log_changes += 1;
                            state.apply(change);
                        })?;
                    }
                }
            }
            state.finish_bulk();
            Ok((state, base_changes, log_entries, log_changes))
        });
        let read = async {
            let mut pages = sqlx::query_scalar::<_, Vec<u8>>(
                "SELECT body FROM projection_pages WHERE tenant_id = $1 AND generation = $2 ORDER BY seq",
            )
            .bind(tenant.0)
            .bind(generation)
            .fetch(&self.pool);
            while let Some(body) = pages.try_next().await? {
                if bodies.send(Stored::Page(body)).await.is_err() {
                    return Ok(());
                }
            }
            drop(pages);
            let mut log = sqlx::query_scalar::<_, Vec<u8>>(
                "SELECT body FROM projection_log WHERE tenant_id = $1 AND generation = $2 ORDER BY revision",
            )
            .bind(tenant.0)
            .bind(generation)
            .fetch(&self.pool);
            while let Some(body) = log.try_next().await? {
                if bodies.send(Stored::Log(body)).await.is_err() {
                    return Ok(());
                }
            }
            Ok::<(), StoreError>(())
        };
        let read = read.await;
        drop(bodies);
        // The applier's error (a corrupt page) explains a stop better than the
        // reader's.
        let applied = applier.await.expect("applying does not panic");
        read?;
        let (mut state, base_changes, log_entries, log_changes) = applied?;
        state.revision = revision;
        Ok(StoredTenant {
            tenant,
            state,
            base_changes,
            log_entries,
            log_changes,
        })
    }
}

/// A stored row of a tenant, as read for loading.
enum Stored {
    Page(Vec<u8>),
    Log(Vec<u8>),
}

#[async_trait]
impl ProjectionStore for Store {
    async fn load(&self) -> StoreResult<Vec<StoredTenant>> {
        self.remove_leftovers().await?;
        let tenants: Vec<(Uuid, i64, i64)> = sqlx::query_as(
            "SELECT tenant_id, generation, revision FROM projection_tenants ORDER BY tenant_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(tenants.len());
        for (tenant, generation, revision) in tenants {
            let tenant = TenantId(tenant);
            match self.load_tenant(tenant, generation, revision).await {
                Ok(stored) => out.push(stored),
                Err(err @ (StoreError::Format(_) | StoreError::Corrupt(_))) => {
                    // The projection is a copy of the directory's state: rather
                    // than refuse to start, rebuild this tenant from the feed.
                    tracing::error!(%tenant, error = %err, "dropping the stored projection of a tenant; it will be rebuilt from the directory");
                    self.forget(tenant).await?;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(out)
    }

    async fn append(
        &self,
        tenant: TenantId,
        revision: Revision,
        changes: &[Change],
    ) -> StoreResult<()> {
        let body = LogEntry::encode(changes);
        let appended = self.append_entry(tenant, revision, &body).await?;
        if appended.is_some() {
            return Ok(());
        }
        // A tenant first seen through a change set: an empty base under it.
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO projection_tenants (tenant_id, generation, base_revision, revision) VALUES ($1, 1, 0, $2)",
        )
        .bind(tenant.0)
        .bind(revision)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO projection_log (tenant_id, generation, revision, body) VALUES ($1, 1, $2, $3)")
            .bind(tenant.0)
            .bind(revision)
            .bind(&body)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append_all(&self, sets: &[Appended]) -> StoreResult<()> {
        if let [one] = sets {
            return self.append(one.tenant, one.revision, &one.changes).await;
        }
        let tenants: Vec<Uuid> = sets.iter().map(|s| s.tenant.0).collect();
        let revisions: Vec<i64> = sets.iter().map(|s| s.revision).collect();
        let bodies: Vec<Vec<u8>> = sets.iter().map(|s| LogEntry::encode(&s.changes)).collect();
        let unknown = self.append_entries(&tenants, &revisions, &bodies).await?;
        // Tenants without a checkpoint yet got nothing: each of their change sets
        // as a first one.
        for set in sets.iter().filter(|s| unknown.contains(&s.tenant.0)) {
            self.append(set.tenant, set.revision, &set.changes).await?;
        }
        Ok(())
    }

    async fn begin_base(&self, tenant: TenantId) -> StoreResult<Generation> {
        let live: Option<i64> =
            sqlx::query_scalar("SELECT generation FROM projection_tenants WHERE tenant_id = $1")
                .bind(tenant.0)
                .fetch_optional(&self.pool)
                .await?;
        let live = live.unwrap_or(0);
        for table in ["projection_pages", "projection_log"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE tenant_id = $1 AND generation <> $2"
            ))
            .bind(tenant.0)
            .bind(live)
            .execute(&self.pool)
            .await?;
        }
        Ok(live + 1)
    }

    async fn write_page(
        &self,
        tenant: TenantId,
        generation: Generation,
        seq: i64,
        changes: &[Change],
    ) -> StoreResult<()> {
        let body = Page::encode(changes);
        sqlx::query(
            "INSERT INTO projection_pages (tenant_id, generation, seq, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, generation, seq) DO UPDATE SET body = excluded.body",
        )
        .bind(tenant.0)
        .bind(generation)
        .bind(seq)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn commit_base(
        &self,
        tenant: TenantId,
        generation: Generation,
        base: Base,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let carried = match base {
            Base::Snapshot { revision } => {
                sqlx::query(
                    "INSERT INTO projection_tenants (tenant_id, generation, base_revision, revision) \
                     VALUES ($1, $2, $3, $3) ON CONFLICT (tenant_id) DO UPDATE SET \
                     generation = excluded.generation, base_revision = excluded.base_revision, \
                     revision = excluded.revision",
                )
                .bind(tenant.0)
                .bind(generation)
                .bind(revision)
                .execute(&mut *tx)
                .await?;
                0
            }
            Base::Compaction { from } => {
                // The checkpoint row first: an append in flight finishes before
                // this goes on, and every later one writes to the new generation.
                sqlx::query(
                    "UPDATE projection_tenants SET generation = $2, base_revision = $3 WHERE tenant_id = $1",
                )
                .bind(tenant.0)
                .bind(generation)
                .bind(from)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE projection_log SET generation = $2 \
                     WHERE tenant_id = $1 AND generation <> $2 AND revision > $3",
                )
                .bind(tenant.0)
                .bind(generation)
                .bind(from)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            }
        };
        for table in ["projection_pages", "projection_log"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE tenant_id = $1 AND generation <> $2"
            ))
            .bind(tenant.0)
            .bind(generation)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(carried)
    }
}
