//! Group commit: one tenant's concurrent creates written together.
//!
//! A tenant's writes are serialized (the revision bump's row lock), so its
//! throughput is one write per turn: on a small machine about 600 `CreateUser`
//! calls a second, nearly all of it round trips, commits and wake-ups rather than
//! work. Creates that arrive while one is being written wait here instead, and the
//! next turn writes all of them in one statement and one commit, each still with
//! its own revision, change set and answer.
//!
//! A tenant has a queue while, and only while, a runner task is draining it: the
//! caller that finds no queue starts the runner, and the runner removes the queue
//! when it finds it empty (both under the same lock, so no item is ever left
//! without a runner). The runner is a task of its own, so a cancelled caller
//! never cancels a batch that others still wait for; a write that no caller
//! waits for any more is dropped, and so rolled back, as a call's own
//! transaction would be.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::domain::TenantId;

/// An item waiting for its batch, and where its answer goes.
pub struct Waiting<T, R> {
    pub item: T,
    pub reply: oneshot::Sender<R>,
}

impl<T, R> Waiting<T, R> {
    /// Whether the caller gave up (cancelled) before its batch was taken: such
    /// items are left out, so a cancelled call does not take effect later.
    pub fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

/// The tenants' queues of waiting items.
pub struct Batches<T, R> {
    tenants: Mutex<HashMap<TenantId, Vec<Waiting<T, R>>>>,
}

impl<T, R> Default for Batches<T, R> {
    fn default() -> Self {
        Batches {
            tenants: Mutex::default(),
        }
    }
}

impl<T, R> Batches<T, R> {
    /// Queues an item for its tenant. True when no runner is draining the tenant's
    /// queue: the caller must start one.
    #[must_use = "when true, the caller must start the tenant's runner"]
    pub fn push(&self, tenant: TenantId, waiting: Waiting<T, R>) -> bool {
        match self.tenants.lock().expect("not poisoned").entry(tenant) {
            Entry::Occupied(mut queue) => {
                queue.get_mut().push(waiting);
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(vec![waiting]);
                true
            }
        }
    }

    /// The runner's next batch: up to `max` items in arrival order, or `None` when
    /// the queue is empty, which ends the runner (and removes the queue, so the
    /// next push starts a new one).
    pub fn next(&self, tenant: TenantId, max: usize) -> Option<Vec<Waiting<T, R>>> {
        let mut tenants = self.tenants.lock().expect("not poisoned");
        let queue = tenants.get_mut(&tenant)?;
        if queue.is_empty() {
            tenants.remove(&tenant);
            return None;
        }
        let take = queue.len().min(max);
        Some(queue.drain(..take).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(item: u32) -> (Waiting<u32, u32>, oneshot::Receiver<u32>) {
        let (reply, answer) = oneshot::channel();
        (Waiting { item, reply }, answer)
    }

    #[test]
    fn the_first_item_starts_a_runner_and_the_runner_ends_on_an_empty_queue() {
        let batches = Batches::default();
        let (tenant, other) = (TenantId::generate(), TenantId::generate());
        let mut answers = Vec::new();
        for item in 0..5 {
            let (w, a) = waiting(item);
            answers.push(a);
            assert_eq!(
                batches.push(tenant, w),
                item == 0,
                "only the first starts a runner"
            );
        }
        let (w, _a) = waiting(9);
        assert!(batches.push(other, w), "another tenant has its own runner");

        let first: Vec<u32> = batches
            .next(tenant, 3)
            .unwrap()
            .into_iter()
            .map(|w| w.item)
            .collect();
        assert_eq!(first, [0, 1, 2], "in arrival order, at most max");
        let (w, _a) = waiting(5);
        assert!(!batches.push(tenant, w), "the runner is still draining");
        let rest: Vec<u32> = batches
            .next(tenant, 3)
            .unwrap()
            .into_iter()
            .map(|w| w.item)
            .collect();
        assert_eq!(rest, [3, 4, 5]);
        assert!(
            batches.next(tenant, 3).is_none(),
            "an empty queue ends the runner"
        );
        let (w, _a) = waiting(6);
        assert!(batches.push(tenant, w), "so the next item starts a new one");
    }

    #[test]
    fn a_cancelled_caller_is_seen_as_abandoned() {
        let (w, answer) = waiting(1);
        assert!(!w.abandoned());
        drop(answer);
        assert!(w.abandoned());
    }
}
