//! The commit signal: every commit is announced as a [`Commit`] on an in-process
//! broadcast channel, so open feed streams wake at once instead of polling. A
//! commit of this process carries its change set, which a stream that is up to
//! date sends on without reading it back. On PostgreSQL the announcement also goes
//! out with NOTIFY, after the commit (NOTIFY inside a transaction takes a lock at
//! commit that serializes every notifying commit), in batches: one statement for
//! every commit announced while the last was sent. A listener feeds other
//! replicas' announcements into the same channel. A lost announcement (a crash
//! between commit and NOTIFY, a lagging receiver) only delays delivery until the
//! feed's safety poll.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::domain::{ChangeSet, Revision, TenantId};

/// A commit, as announced.
#[derive(Debug, Clone)]
pub struct Commit {
    pub tenant: TenantId,
    pub revision: Revision,
    /// The change set, when this process committed it.
    pub changes: Option<Arc<ChangeSet>>,
}

/// The PostgreSQL channel commits are announced on.
pub const NOTIFY_CHANNEL: &str = "cohort_directory_commits";

/// How many announcements a slow receiver may fall behind before it is told it
/// lagged (it then re-reads the tenant heads).
const SIGNAL_BUFFER: usize = 4096;

pub fn channel() -> broadcast::Sender<Commit> {
    broadcast::channel(SIGNAL_BUFFER).0
}

pub fn encode(tenant: TenantId, revision: Revision) -> String {
    format!("{tenant}:{revision}")
}

pub fn decode(payload: &str) -> Option<(TenantId, Revision)> {
    let (tenant, revision) = payload.split_once(':')?;
    Some((
        TenantId(Uuid::parse_str(tenant).ok()?),
        revision.parse().ok()?,
    ))
}

/// Stops the listener and notifier tasks when the last store handle goes.
pub struct ListenerGuard(tokio::task::AbortHandle);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Forwards NOTIFY announcements (from every replica) into `commits`, reconnecting
/// with a pause when the connection drops.
pub fn spawn_listener(pool: PgPool, commits: broadcast::Sender<Commit>) -> Arc<ListenerGuard> {
    let task = tokio::spawn(async move {
        loop {
            match listen(&pool, &commits).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "commit listener lost its connection; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Arc::new(ListenerGuard(task.abort_handle()))
}

/// The least time between two NOTIFY statements. Each is a transaction of its
/// own (a commit record, and a wake-up of every listening session, this
/// process's own listener included); sent as fast as they completed, they cost
/// PostgreSQL a fifth of its work under single writes across many tenants
/// (BENCHMARKS.md, "NOTIFY at most every 10 ms"). A replica's subscribers hear
/// of a commit at most this much later; a quiet tenant's first commit goes out
/// at once.
pub(crate) const NOTIFY_PAUSE: Duration = Duration::from_millis(10);

/// Announces commits with NOTIFY, off the writers' path: every commit queued
/// while the last statement ran, or during the [`NOTIFY_PAUSE`] after it, goes
/// out in the next one (the latest revision per tenant is all a replica needs
/// to catch up).
pub fn spawn_notifier(
    pool: PgPool,
) -> (
    mpsc::UnboundedSender<(TenantId, Revision)>,
    Arc<ListenerGuard>,
) {
    let (queue, mut queued) = mpsc::unbounded_channel::<(TenantId, Revision)>();
    let task = tokio::spawn(async move {
        while let Some(first) = queued.recv().await {
            let mut latest: HashMap<TenantId, Revision> = HashMap::from([first]);
            while let Ok((tenant, revision)) = queued.try_recv() {
                let entry = latest.entry(tenant).or_default();
                *entry = (*entry).max(revision);
            }
            let payloads: Vec<String> = latest.into_iter().map(|(t, r)| encode(t, r)).collect();
            let notified = sqlx::query("SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p")
                .bind(NOTIFY_CHANNEL)
                .bind(&payloads)
                .execute(&pool)
                .await;
            if let Err(err) = notified {
                tracing::warn!(error = %err, "could not announce commits; other replicas' feeds catch up on their next poll");
            }
            tokio::time::sleep(NOTIFY_PAUSE).await;
        }
    });
    (queue, Arc::new(ListenerGuard(task.abort_handle())))
}

async fn listen(pool: &PgPool, commits: &broadcast::Sender<Commit>) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    loop {
        let notification = listener.recv().await?;
        if let Some((tenant, revision)) = decode(notification.payload()) {
            // No receiver is fine: nobody is watching.
            let _ = commits.send(Commit {
                tenant,
                revision,
                changes: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip() {
        let tenant = TenantId::generate();
        assert_eq!(decode(&encode(tenant, 42)), Some((tenant, 42)));
        assert_eq!(decode("garbage"), None);
    }
}
