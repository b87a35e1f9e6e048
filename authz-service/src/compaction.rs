//! Keeps each tenant's stored log short, so that a restart reads little more than
//! a base: once the change sets logged on top of a tenant's base outnumber both
//! [`MIN_LOG_ENTRIES`] and an eighth of the base's changes, a new base is written
//! from memory in the background, page by page, and made live with the log rows
//! after it carried over (`storage::Base::Compaction`).
//!
//! Each page is taken under the tenant's read lock and written without it: the
//! follower keeps applying change sets meanwhile, and readers never wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use crate::domain::{ExportCursor, TenantId};
use crate::projection::Projection;
use crate::storage::{Base, ProjectionStore, StoreResult};

/// Log entries a tenant may gather before a compaction is considered.
pub const MIN_LOG_ENTRIES: u64 = 10_000;

/// Changes per page of a base.
pub const PAGE_CHANGES: usize = 16_384;

/// What is known of a tenant's stored base and log.
#[derive(Debug, Default)]
struct Tally {
    base_changes: u64,
    /// Change sets on top of the base (approximate while a compaction commits).
    log_entries: u64,
    running: Option<JoinHandle<()>>,
}

impl Tally {
    fn due(&self) -> bool {
        self.running.is_none() && self.log_entries >= MIN_LOG_ENTRIES.max(self.base_changes / 8)
    }
}

pub struct Compactor {
    store: Arc<dyn ProjectionStore>,
    projection: Arc<Projection>,
    tenants: Mutex<HashMap<TenantId, Tally>>,
}

impl Compactor {
    /// `stored`: per tenant, the changes of its base and the entries of its log.
    pub fn new(
        store: Arc<dyn ProjectionStore>,
        projection: Arc<Projection>,
        stored: impl IntoIterator<Item = (TenantId, u64, u64)>,
    ) -> Arc<Self> {
        let tenants = stored
            .into_iter()
            .map(|(tenant, base_changes, log_entries)| {
                (
                    tenant,
                    Tally {
                        base_changes,
                        log_entries,
                        running: None,
                    },
                )
            })
            .collect();
        Arc::new(Compactor {
            store,
            projection,
            tenants: Mutex::new(tenants),
        })
    }

    /// A change set was appended to the tenant's log: compacts it when due.
    pub fn appended(self: &Arc<Self>, tenant: TenantId) {
        let mut tenants = self.tenants.lock().expect("not poisoned");
        let tally = tenants.entry(tenant).or_default();
        tally.log_entries += 1;
        if tally.due() {
            let this = self.clone();
            tally.running = Some(tokio::spawn(async move {
                match this.compact(tenant).await {
                    Ok((base_changes, carried)) => {
                        tracing::info!(%tenant, base_changes, carried, "compacted the stored projection");
                        this.based(tenant, base_changes, carried);
                    }
                    Err(err) => {
                        tracing::warn!(%tenant, error = %err, "could not compact the stored projection; will try again");
                        let mut tenants = this.tenants.lock().expect("not poisoned");
                        if let Some(tally) = tenants.get_mut(&tenant) {
                            tally.running = None;
                            tally.log_entries /= 2; // not at once again
                        }
                    }
                }
            }));
        }
    }

    /// A new base of `base_changes` changes is live, under `log_entries` change sets.
    pub fn based(&self, tenant: TenantId, base_changes: u64, log_entries: u64) {
        let mut tenants = self.tenants.lock().expect("not poisoned");
        let tally = tenants.entry(tenant).or_default();
        tally.base_changes = base_changes;
        tally.log_entries = log_entries;
        tally.running = None;
    }

    /// Stops a compaction of the tenant (a snapshot is about to replace its base).
    pub async fn stop(&self, tenant: TenantId) {
        let running = self
            .tenants
            .lock()
            .expect("not poisoned")
            .get_mut(&tenant)
            .and_then(|t| t.running.take());
        if let Some(task) = running {
            task.abort();
            let _ = task.await;
        }
    }

    /// Writes the tenant's state as a new base, page by page; its number of
    /// changes, and the log rows carried over onto it.
    async fn compact(&self, tenant: TenantId) -> StoreResult<(u64, u64)> {
        let Some(shared) = self.projection.tenant(tenant) else {
            return Ok((0, 0));
        };
        let generation = self.store.begin_base(tenant).await?;
        // Every page shows the state at this revision or later.
        let from = shared.read().expect("not poisoned").revision;
        let mut cursor = ExportCursor::default();
        let (mut seq, mut changes) = (0, 0u64);
        while !cursor.is_done() {
            let page = shared
                .read()
                .expect("not poisoned")
                .export(&mut cursor, PAGE_CHANGES);
            if page.is_empty() {
                continue;
            }
            changes += page.len() as u64;
            self.store
                .write_page(tenant, generation, seq, &page)
                .await?;
            seq += 1;
        }
        let carried = self
            .store
            .commit_base(tenant, generation, Base::Compaction { from })
            .await?;
        Ok((changes, carried))
    }
}
