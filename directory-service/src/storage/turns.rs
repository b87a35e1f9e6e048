//! Writers of one tenant take turns in this process before they take the tenant's
//! row lock in the database.
//!
//! The row lock (the revision bump that opens every write) is what serializes a
//! tenant's writers, across replicas too. But PostgreSQL wakes every transaction
//! waiting on a row lock when its holder commits, and each re-checks the row
//! before all but one wait again: with eight concurrent writers of one tenant,
//! that herd cost the database several times the write itself (3 ms of CPU per
//! `CreateUser`). Waiting here instead, a commit lets exactly one writer on, and
//! the others wait for free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

use crate::domain::TenantId;

/// A writer's turn: the tenant's writers of this process wait while it is held.
pub type Turn = OwnedMutexGuard<()>;

/// Entries above this many are swept of tenants nobody is writing to.
const SWEEP_ABOVE: usize = 1024;

#[derive(Debug, Default)]
pub struct Turns {
    tenants: Mutex<HashMap<TenantId, Weak<tokio::sync::Mutex<()>>>>,
}

impl Turns {
    /// Waits for the tenant's next turn (first come, first served).
    pub async fn take(&self, tenant: TenantId) -> Turn {
        let lock = {
            let mut tenants = self.tenants.lock().expect("not poisoned");
            if tenants.len() > SWEEP_ABOVE {
                tenants.retain(|_, lock| lock.strong_count() > 0);
            }
            match tenants.get(&tenant).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    tenants.insert(tenant, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn writers_of_a_tenant_take_turns_and_others_do_not_wait() {
        let turns = Arc::new(Turns::default());
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let first = turns.take(a).await;
        let waiting = {
            let turns = turns.clone();
            tokio::spawn(async move { turns.take(a).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "the second writer of a tenant waits"
        );
        let _other = tokio::time::timeout(Duration::from_secs(1), turns.take(b))
            .await
            .expect("another tenant's writer does not wait");
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the next writer goes on")
            .unwrap();
    }

    #[tokio::test]
    async fn idle_tenants_are_swept() {
        let turns = Turns::default();
        for _ in 0..SWEEP_ABOVE + 10 {
            drop(turns.take(TenantId::generate()).await);
            assert!(turns.tenants.lock().unwrap().len() <= SWEEP_ABOVE + 1);
        }
        // Swept once past the bound: only the tenants taken since remain.
        assert!(turns.tenants.lock().unwrap().len() <= 10);
    }
}
