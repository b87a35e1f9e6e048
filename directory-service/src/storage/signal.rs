//! The commit signal: every commit is announced as `(tenant, revision)` on an
//! in-process broadcast channel, so open feed streams wake at once instead of
//! polling. On PostgreSQL the announcement also goes out with NOTIFY, after the
//! commit (NOTIFY inside a transaction takes a lock at commit that serializes every
//! notifying commit), and a listener feeds other replicas' announcements into the
//! same channel. A lost announcement (a crash between commit and NOTIFY, a lagging
//! receiver) only delays delivery until the feed's safety poll.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::{Revision, TenantId};

/// The PostgreSQL channel commits are announced on.
pub const NOTIFY_CHANNEL: &str = "cohort_directory_commits";

/// How many announcements a slow receiver may fall behind before it is told it
/// lagged (it then re-reads the tenant heads).
const SIGNAL_BUFFER: usize = 4096;

pub fn channel() -> broadcast::Sender<(TenantId, Revision)> {
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

/// Stops the listener task when the last store handle goes.
pub struct ListenerGuard(tokio::task::AbortHandle);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Forwards NOTIFY announcements (from every replica) into `commits`, reconnecting
/// with a pause when the connection drops.
pub fn spawn_listener(
    pool: PgPool,
    commits: broadcast::Sender<(TenantId, Revision)>,
) -> Arc<ListenerGuard> {
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

async fn listen(
    pool: &PgPool,
    commits: &broadcast::Sender<(TenantId, Revision)>,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    loop {
        let notification = listener.recv().await?;
        if let Some(commit) = decode(notification.payload()) {
            // No receiver is fine: nobody is watching.
            let _ = commits.send(commit);
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
