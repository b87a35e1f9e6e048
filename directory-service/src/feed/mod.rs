//! The change feed: follows the outbox and streams every committed change set to a
//! subscriber, per tenant, in revision order, from the subscriber's cursor.
//!
//! Each `Watch` call gets one [`watcher::Watcher`] task writing into a channel
//! bounded by messages and by bytes: it reads ahead only what the subscriber
//! takes, and a subscriber that takes nothing for `send_timeout` is cut off with
//! [`FeedError::TooSlow`] (it resumes from its cursor). Every message is cut to
//! half the server's message limit ([`parts`]), so no change set, however
//! large, is ever too big to send. The watcher wakes on the store's commit signal and
//! polls slowly behind it, so a lost signal only delays delivery.
//!
//! Why tailing by revision is safe here: a tenant's writers are serialized by the
//! revision bump that opens every write transaction, and the lock is released only
//! after the commit is visible, so revisions become visible in order and a reader
//! never sees revision N+1 before N (see `storage/mod.rs`).

pub mod parts;
mod places;
mod watcher;

pub use places::{Place, Places, Refused};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::Stream;

use crate::domain::{Change, ChangeSet, Revision, TenantId};
use crate::storage::{Outbox, StoreError};

/// How the feed paces itself.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// How often an open stream receives checkpoints, also when idle.
    pub checkpoint_interval: Duration,
    /// The safety poll behind the commit signal.
    pub poll_interval: Duration,
    /// Change sets read per query.
    pub batch_size: i64,
    /// Stored bytes of change sets read per query, at most (the first always comes).
    pub batch_bytes: i64,
    /// Rows per snapshot page read from the database (then cut into messages).
    pub snapshot_page_rows: i64,
    /// The largest message the server sends: the server's `--max-message-bytes`
    /// (start-up sets it). Messages are cut to half of it.
    pub message_bytes: usize,
    /// Messages a stream buffers for its subscriber.
    pub buffer: usize,
    /// Bytes of messages a stream buffers for its subscriber (a message larger
    /// than that waits for an empty buffer).
    pub buffer_bytes: usize,
    /// How long a subscriber may take nothing before it is cut off.
    pub send_timeout: Duration,
    /// How long change sets are kept; a cursor older than that gets a snapshot.
    pub retention: Duration,
    /// Streams open at once; one more is refused.
    pub max_streams: usize,
    /// More streams, beyond `max_streams`, that only streams following every
    /// tenant may take (the authorization services): no other caller, however
    /// many streams it opens, can lock the followers out of the feed.
    pub reserved_streams: usize,
    /// Streams one credential may hold open at once, counting the reserved ones.
    pub streams_per_credential: usize,
}

impl FeedSettings {
    /// The bytes of changes one message carries at most, beside its header.
    pub fn part_budget(&self, actor: &str) -> usize {
        (self.message_bytes / 2).saturating_sub(parts::header_bytes(actor))
    }
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            checkpoint_interval: Duration::from_secs(5),
            poll_interval: Duration::from_secs(2),
            batch_size: 200,
            batch_bytes: 1 << 20,
            snapshot_page_rows: 1000,
            message_bytes: 4 << 20,
            buffer: 32,
            buffer_bytes: 2 << 20,
            send_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(7 * 24 * 3600),
            max_streams: 64,
            reserved_streams: 8,
            streams_per_credential: 16,
        }
    }
}

/// What a subscriber asked to follow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// The revision applied per tenant (0: none, start from a snapshot).
    pub cursors: BTreeMap<TenantId, Revision>,
    /// Also follow every other tenant, including tenants created later.
    pub all_tenants: bool,
}

/// One message of the feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// A committed change set, or a part of one: the header and some of its
    /// changes, in order. `continued`: more parts follow, and the change set is
    /// whole only at the last.
    Changes { set: ChangeSet, continued: bool },
    /// Drop what you hold for the tenant; its state at `revision` follows.
    SnapshotBegin {
        tenant: TenantId,
        revision: Revision,
    },
    /// Part of a snapshot.
    SnapshotPart {
        tenant: TenantId,
        revision: Revision,
        changes: Vec<Change>,
    },
    /// The snapshot is complete; live changes follow from `revision + 1`.
    SnapshotEnd {
        tenant: TenantId,
        revision: Revision,
    },
    /// No change at or below `revision` will follow for the tenant.
    Checkpoint {
        tenant: TenantId,
        revision: Revision,
        time: DateTime<Utc>,
    },
    /// Sent once: the stream has caught up with every followed tenant.
    CaughtUp { time: DateTime<Utc> },
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the subscriber took nothing for {0:?} and fell too far behind; reconnect with your cursors")]
    TooSlow(Duration),
}

/// Deletes change sets older than the retention, now and then, until dropped.
pub async fn compact_periodically(store: Arc<dyn Outbox>, retention: Duration) {
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let before =
            Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        match store.compact_changes(before).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "compacted the change feed"),
            Err(err) => tracing::warn!(error = %err, "could not compact the change feed"),
        }
    }
}

/// Opens a feed for `subscription`. Fails at once when a named tenant does not
/// exist; the stream ends with an error when the subscriber is too slow or the
/// store fails, and never skips a change.
///
/// The stream ends (cleanly) when `closing` turns true: the server is shutting down.
pub async fn watch(
    store: Arc<dyn Outbox>,
    settings: FeedSettings,
    subscription: Subscription,
    closing: tokio::sync::watch::Receiver<bool>,
    place: Option<Place>,
) -> Result<impl Stream<Item = Result<FeedEvent, FeedError>>, FeedError> {
    let named: Vec<TenantId> = subscription.cursors.keys().copied().collect();
    let found: std::collections::HashSet<TenantId> = store
        .tenant_heads(Some(&named))
        .await?
        .into_iter()
        .map(|(tenant, _)| tenant)
        .collect();
    if let Some(missing) = named.iter().find(|t| !found.contains(*t)) {
        return Err(StoreError::not_found("tenant", missing).into());
    }
    Ok(watcher::Watcher::spawn(
        store,
        settings,
        subscription,
        closing,
        place,
    ))
}
