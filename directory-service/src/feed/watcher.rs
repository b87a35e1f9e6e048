//! One subscriber's feed: a task that catches each followed tenant up from its
//! cursor (by snapshot when there is no cursor, or when the events after it were
//! compacted), then tails the outbox on commit signals and a slow poll, and sends
//! checkpoints. A commit of this process that is exactly the next revision of a
//! tenant the stream is up to date with is sent from the signal itself; anything
//! else (another replica's commit, a gap) is read from the outbox.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::{Stream, StreamExt};
use tokio::sync::{broadcast, mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

use super::parts::{cut, event_bytes};
use super::{FeedError, FeedEvent, FeedSettings, Place, Subscription};
use crate::domain::{ChangeSet, Revision, TenantId};
use crate::storage::{Commit, Outbox};

/// Why a watcher stopped early.
enum Stop {
    /// The subscriber went away: nothing to report.
    Gone,
    /// Report this error as the stream's last item.
    Failed(FeedError),
}

/// What woke the watcher up.
enum Wake {
    /// A commit was announced.
    Commit(Commit),
    /// Time to re-read every followed tenant's head (safety poll, lost signals).
    Rescan,
    Checkpoint,
    /// The subscriber left or the server is closing.
    Stop,
}

/// A message on its way to the subscriber, with its share of the stream's byte
/// budget, given back as the gRPC layer takes it.
type Buffered = (FeedEvent, OwnedSemaphorePermit);
type Out = mpsc::Sender<Buffered>;

pub(super) struct Watcher {
    store: Arc<dyn Outbox>,
    settings: FeedSettings,
    cursors: BTreeMap<TenantId, Revision>,
    all_tenants: bool,
    out: Out,
    /// The bytes the stream may buffer (`buffer_bytes`), one permit a byte.
    buffered: Arc<Semaphore>,
    /// Turns true when the server shuts down.
    closing: watch::Receiver<bool>,
    /// The stream's place among the open streams, held by the task rather than
    /// by the response: a subscriber cut off for reading nothing frees it as the
    /// task ends, even while its connection is alive and its last messages wait
    /// in the buffer.
    _place: Option<Place>,
}

impl Watcher {
    /// Starts the watcher task and returns the subscriber's stream. When the task
    /// fails, its error is the stream's last item, after everything it buffered.
    pub(super) fn spawn(
        store: Arc<dyn Outbox>,
        settings: FeedSettings,
        subscription: Subscription,
        closing: watch::Receiver<bool>,
        place: Option<Place>,
    ) -> impl Stream<Item = Result<FeedEvent, FeedError>> {
        let (out, receiver) = mpsc::channel(settings.buffer.max(1));
        let last_error: Arc<Mutex<Option<FeedError>>> = Arc::default();
        let watcher = Watcher {
            store,
            cursors: subscription.cursors,
            all_tenants: subscription.all_tenants,
            buffered: Arc::new(Semaphore::new(buffer_permits(&settings) as usize)),
            settings,
            out,
            closing,
            _place: place,
        };
        let report = last_error.clone();
        tokio::spawn(async move {
            let mut watcher = watcher;
            if let Err(Stop::Failed(err)) = watcher.run().await {
                tracing::info!(error = %err, "feed stream ended");
                *report.lock().expect("not poisoned") = Some(err);
            }
            // Closing the channel only now guarantees the subscriber sees the error
            // after the buffered messages.
            drop(watcher);
        });
        // The permit is dropped, and its bytes given back, as the message leaves.
        ReceiverStream::new(receiver)
            .map(|(event, _bytes)| Ok(event))
            .chain(futures::stream::iter(std::iter::from_fn(move || {
                last_error.lock().expect("not poisoned").take().map(Err)
            })))
    }

    async fn run(&mut self) -> Result<(), Stop> {
        // Subscribe before the first read, so no commit between the two is missed.
        let mut signal = self.store.commit_signal();
        let mut poll = tokio::time::interval(self.settings.poll_interval);
        let mut checkpoint = tokio::time::interval(self.settings.checkpoint_interval);
        checkpoint.tick().await;
        self.catch_up_all().await?;
        self.send_checkpoints().await?;
        self.send(FeedEvent::CaughtUp { time: Utc::now() }).await?;
        let mut rescan = false;
        let mut dirty: BTreeSet<TenantId> = BTreeSet::new();
        loop {
            if rescan {
                self.catch_up_all().await?;
                rescan = false;
            }
            for tenant in std::mem::take(&mut dirty) {
                self.catch_up(tenant).await?;
            }
            let wake = tokio::select! {
                received = signal.recv() => match received {
                    Ok(commit) => Wake::Commit(commit),
                    Err(broadcast::error::RecvError::Lagged(_)) => Wake::Rescan,
                    Err(broadcast::error::RecvError::Closed) => Wake::Stop,
                },
                _ = poll.tick() => Wake::Rescan,
                _ = checkpoint.tick() => Wake::Checkpoint,
                _ = self.out.closed() => Wake::Stop,
                _ = self.closing.wait_for(|closing| *closing) => Wake::Stop,
            };
            match wake {
                Wake::Commit(Commit {
                    tenant,
                    revision,
                    changes,
                }) => match (self.cursors.get(&tenant).copied(), changes) {
                    (Some(cursor), Some(set))
                        if cursor > 0 && cursor + 1 == revision && !dirty.contains(&tenant) =>
                    {
                        self.send_change_set((*set).clone()).await?;
                        self.cursors.insert(tenant, revision);
                    }
                    (Some(cursor), _) if cursor < revision => {
                        dirty.insert(tenant);
                    }
                    (None, _) if self.all_tenants => rescan = true,
                    _ => {}
                },
                Wake::Rescan => rescan = true,
                Wake::Checkpoint => {
                    self.catch_up_all().await?;
                    self.send_checkpoints().await?;
                }
                Wake::Stop => return Err(Stop::Gone),
            }
        }
    }

    /// Reads the heads of every followed tenant (discovering new tenants when
    /// following all) and catches up those that moved.
    async fn catch_up_all(&mut self) -> Result<(), Stop> {
        let named: Vec<TenantId> = self.cursors.keys().copied().collect();
        let filter = if self.all_tenants {
            None
        } else {
            Some(named.as_slice())
        };
        let heads = self
            .store
            .tenant_heads(filter)
            .await
            .map_err(|e| Stop::Failed(e.into()))?;
        for (tenant, head) in heads {
            let cursor = *self.cursors.entry(tenant).or_insert(0);
            if cursor != head {
                self.catch_up(tenant).await?;
            }
        }
        Ok(())
    }

    /// Sends everything after the tenant's cursor, by snapshot when there is no
    /// usable cursor.
    async fn catch_up(&mut self, tenant: TenantId) -> Result<(), Stop> {
        loop {
            let cursor = self.cursors.get(&tenant).copied().unwrap_or(0);
            if cursor == 0 {
                self.send_snapshot(tenant).await?;
                continue;
            }
            // The head is read before the batch: every event up to it was committed
            // by then, so an empty batch behind it can only mean compaction (read
            // the other way round, a commit in between would look like one).
            let head = self.head(tenant).await?;
            let batch = self
                .store
                .read_changes(
                    tenant,
                    cursor,
                    self.settings.batch_size,
                    self.settings.batch_bytes,
                )
                .await
                .map_err(|e| Stop::Failed(e.into()))?;
            let Some(first) = batch.first() else {
                // Nothing after the cursor. Behind the head, the events after it were
                // compacted away; ahead of it (a restored database), it cannot be
                // continued. Either way: start over from a snapshot.
                if cursor != head {
                    self.cursors.insert(tenant, 0);
                    continue;
                }
                return Ok(());
            };
            if first.revision != cursor + 1 {
                // The events after the cursor were compacted away.
                self.cursors.insert(tenant, 0);
                continue;
            }
            // A batch cut short by its size is followed by another read; the
            // cursor catching up with the head ends the loop.
            let full = batch.len() as i64 == self.settings.batch_size;
            let mut last = cursor;
            for set in batch {
                last = set.revision;
                self.send_change_set(set).await?;
                self.cursors.insert(tenant, last);
            }
            if !full && last >= head {
                return Ok(());
            }
        }
    }

    async fn head(&self, tenant: TenantId) -> Result<Revision, Stop> {
        let heads = self
            .store
            .tenant_heads(Some(&[tenant]))
            .await
            .map_err(|e| Stop::Failed(e.into()))?;
        Ok(heads.first().map(|(_, head)| *head).unwrap_or(0))
    }

    async fn send_snapshot(&mut self, tenant: TenantId) -> Result<(), Stop> {
        let mut snapshot = self
            .store
            .snapshot(tenant)
            .await
            .map_err(|e| Stop::Failed(e.into()))?;
        let revision = snapshot.revision();
        self.send(FeedEvent::SnapshotBegin { tenant, revision })
            .await?;
        while let Some(changes) = snapshot
            .next_page(self.settings.snapshot_page_rows)
            .await
            .map_err(|e| Stop::Failed(e.into()))?
        {
            if changes.is_empty() {
                continue;
            }
            for changes in cut(changes, self.settings.part_budget("")) {
                self.send(FeedEvent::SnapshotPart {
                    tenant,
                    revision,
                    changes,
                })
                .await?;
            }
        }
        self.send(FeedEvent::SnapshotEnd { tenant, revision })
            .await?;
        self.cursors.insert(tenant, revision);
        Ok(())
    }

    async fn send_checkpoints(&mut self) -> Result<(), Stop> {
        let time = Utc::now();
        let cursors: Vec<(TenantId, Revision)> =
            self.cursors.iter().map(|(t, r)| (*t, *r)).collect();
        for (tenant, revision) in cursors {
            if revision > 0 {
                self.send(FeedEvent::Checkpoint {
                    tenant,
                    revision,
                    time,
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Sends a change set, in as many parts as its size needs.
    async fn send_change_set(&self, set: ChangeSet) -> Result<(), Stop> {
        let ChangeSet {
            tenant_id,
            revision,
            commit_time,
            actor,
            changes,
        } = set;
        let parts = cut(changes, self.settings.part_budget(&actor));
        let last = parts.len() - 1;
        for (i, changes) in parts.into_iter().enumerate() {
            let part = ChangeSet {
                tenant_id,
                revision,
                commit_time,
                actor: actor.clone(),
                changes,
            };
            self.send(FeedEvent::Changes {
                set: part,
                continued: i < last,
            })
            .await?;
        }
        Ok(())
    }

    /// Hands one message to the subscriber, waiting while its buffer is full (in
    /// messages or bytes), for at most `send_timeout`.
    async fn send(&self, event: FeedEvent) -> Result<(), Stop> {
        let bytes = event_bytes(&event).clamp(1, buffer_permits(&self.settings) as usize);
        let hand_over = async {
            let permit = self
                .buffered
                .clone()
                .acquire_many_owned(bytes as u32)
                .await
                .expect("the budget is never closed");
            self.out.send((event, permit)).await
        };
        match tokio::time::timeout(self.settings.send_timeout, hand_over).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop::Gone),
            Err(_) => Err(Stop::Failed(FeedError::TooSlow(self.settings.send_timeout))),
        }
    }
}

/// The stream's byte budget in permits (a semaphore counts in `u32`).
fn buffer_permits(settings: &FeedSettings) -> u32 {
    settings.buffer_bytes.clamp(1, u32::MAX as usize >> 1) as u32
}
