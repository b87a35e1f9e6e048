//! The in-memory projection every answer comes from: one [`TenantState`] per
//! tenant behind a read-write lock, and a signal that wakes readers waiting for a
//! revision (read-your-writes). Lookups touch no database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::domain::{Change, Revision, TenantId, TenantState};

pub type SharedTenant = Arc<RwLock<TenantState>>;

/// Why a wanted revision was not reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReached {
    pub wanted: Revision,
    pub current: Revision,
}

pub struct Projection {
    tenants: RwLock<HashMap<TenantId, SharedTenant>>,
    /// Bumped after every applied change set; readers waiting for a revision wake
    /// on it.
    applied: watch::Sender<u64>,
    /// True once the feed has caught up after start-up.
    synced: watch::Sender<bool>,
    /// Whether the feed is open now.
    connected: AtomicBool,
    /// Since when the feed has been lost: from the moment a stream ends until a
    /// new one has caught up (None while it is up to date).
    feed_lost_since: Mutex<Option<Instant>>,
    /// Per tenant: the last revision the directory vouched for, and when.
    vouched: Mutex<HashMap<TenantId, (Revision, SystemTime)>>,
}

impl Projection {
    pub fn new(loaded: Vec<(TenantId, TenantState)>) -> Self {
        let tenants = loaded
            .into_iter()
            .map(|(id, state)| (id, Arc::new(RwLock::new(state))))
            .collect();
        Projection {
            tenants: RwLock::new(tenants),
            applied: watch::channel(0).0,
            synced: watch::channel(false).0,
            connected: AtomicBool::new(false),
            feed_lost_since: Mutex::default(),
            vouched: Mutex::default(),
        }
    }

    pub fn tenant(&self, id: TenantId) -> Option<SharedTenant> {
        self.tenants.read().expect("not poisoned").get(&id).cloned()
    }

    /// How many change sets (and snapshots) have been applied since start: it
    /// moves whenever the state does.
    pub fn applied_count(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The revision held for a tenant (0 when it is unknown).
    pub fn revision(&self, id: TenantId) -> Revision {
        self.tenant(id)
            .map(|t| t.read().expect("not poisoned").revision)
            .unwrap_or(0)
    }

    /// Every tenant with the revision held, for resuming the feed.
    pub fn cursors(&self) -> Vec<(TenantId, Revision)> {
        let tenants = self.tenants.read().expect("not poisoned");
        tenants
            .iter()
            .map(|(id, state)| (*id, state.read().expect("not poisoned").revision))
            .collect()
    }

    /// Replaces a tenant's state (after a snapshot).
    ///
    /// The state replaced is freed on a thread of its own, after the map's lock
    /// is released: freeing a million-user state takes a second or more of
    /// `free`, which under the lock would stall every call of every tenant, and
    /// on the caller's thread an async worker. That thread then gives the
    /// snapshot's freed buffers back too ([`crate::memory`]).
    pub fn replace(&self, id: TenantId, state: TenantState) {
        let replaced = self
            .tenants
            .write()
            .expect("not poisoned")
            .insert(id, Arc::new(RwLock::new(state)));
        self.applied.send_modify(|n| *n += 1);
        let freeing = std::thread::Builder::new()
            .name("free-replaced".into())
            .spawn(move || {
                // Readers may still hold it: freed when the last one lets go.
                drop(replaced);
                crate::memory::return_freed_memory();
            });
        if let Err(error) = freeing {
            tracing::warn!(%error, "no thread to free a replaced state");
        }
    }

    /// Applies one committed change set at `revision`.
    pub fn apply(&self, id: TenantId, revision: Revision, changes: Vec<Change>) {
        let tenant = self
            .tenants
            .write()
            .expect("not poisoned")
            .entry(id)
            .or_default()
            .clone();
        {
            let mut state = tenant.write().expect("not poisoned");
            state.apply_all(changes);
            state.revision = revision;
        }
        self.applied.send_modify(|n| *n += 1);
    }

    /// Records that the directory vouched, now, that `revision` is the tenant's latest.
    pub fn vouch(&self, id: TenantId, revision: Revision) {
        self.vouched
            .lock()
            .expect("not poisoned")
            .insert(id, (revision, SystemTime::now()));
    }

    /// When the directory last vouched for the tenant's revision.
    pub fn vouched(&self, id: TenantId) -> Option<SystemTime> {
        self.vouched
            .lock()
            .expect("not poisoned")
            .get(&id)
            .map(|(_, at)| *at)
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        if !connected {
            self.feed_lost_since
                .lock()
                .expect("not poisoned")
                .get_or_insert_with(Instant::now);
        }
    }

    /// Whether the feed has been lost, and not caught up since, for longer
    /// than `bound`.
    pub fn feed_lost_longer_than(&self, bound: Duration) -> bool {
        self.feed_lost_since
            .lock()
            .expect("not poisoned")
            .is_some_and(|since| since.elapsed() > bound)
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Whether the feed has caught up since start-up.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Every tenant held.
    pub fn tenant_ids(&self) -> Vec<TenantId> {
        let mut ids: Vec<TenantId> = self
            .tenants
            .read()
            .expect("not poisoned")
            .keys()
            .copied()
            .collect();
        ids.sort();
        ids
    }

    /// The feed has caught up (at start-up, or again after it was lost).
    pub fn set_synced(&self) {
        *self.feed_lost_since.lock().expect("not poisoned") = None;
        self.synced.send_replace(true);
    }

    pub fn synced(&self) -> watch::Receiver<bool> {
        self.synced.subscribe()
    }

    /// Waits until the tenant is at `wanted` or later, until `deadline`.
    pub async fn wait_for(
        &self,
        id: TenantId,
        wanted: Revision,
        deadline: Instant,
    ) -> Result<(), NotReached> {
        let mut applied = self.applied.subscribe();
        loop {
            let current = self.revision(id);
            if current >= wanted {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => continue,
                _ => {
                    return Err(NotReached {
                        wanted,
                        current: self.revision(id),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn readers_wait_for_the_revision_they_need() {
        let projection = Arc::new(Projection::new(Vec::new()));
        let tenant = TenantId(uuid::Uuid::new_v4());
        let soon = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            projection.wait_for(tenant, 1, soon).await,
            Err(NotReached {
                wanted: 1,
                current: 0
            })
        );

        let waiter = {
            let projection = projection.clone();
            tokio::spawn(async move {
                projection
                    .wait_for(tenant, 2, Instant::now() + Duration::from_secs(5))
                    .await
            })
        };
        projection.apply(tenant, 1, Vec::new());
        projection.apply(tenant, 2, Vec::new());
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(projection.cursors(), vec![(tenant, 2)]);
    }
}
