//! Following the directory's change feed: [`Watch`] keeps a cursor per tenant,
//! gathers the parts of a change set into one [`FeedEvent::Changes`], and when
//! the stream breaks (UNAVAILABLE, the server going away) opens a new one from
//! its cursors, so a subscriber sees every change set once, in order, across
//! disconnects.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cohort_api::directory::v1 as pb;
use futures::StreamExt;
use pb::watch_response::Event;

use crate::Channels;

/// What the feed says, typed and whole.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// A tenant's snapshot starts: drop what you hold for it.
    SnapshotBegin { tenant_id: String, revision: i64 },
    /// Changes to apply, in order: a whole change set (its parts gathered), or
    /// a part of a snapshot.
    Changes(ChangeSet),
    /// The end of a tenant's snapshot: the state is the tenant's at `revision`.
    SnapshotEnd { tenant_id: String, revision: i64 },
    /// Nothing newer than `revision` exists in the tenant.
    Checkpoint { tenant_id: String, revision: i64 },
    /// The stream has caught up with every tenant it follows.
    CaughtUp,
}

/// Changes of one tenant at one revision.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeSet {
    pub tenant_id: String,
    pub revision: i64,
    pub commit_time: Option<prost_types::Timestamp>,
    /// Who made the change.
    pub actor: String,
    pub changes: Vec<pb::Change>,
    /// Whether it belongs to a snapshot (applied as a whole at its end).
    pub in_snapshot: bool,
}

/// A follower of the change feed that resumes across disconnects. Read it with
/// [`Watch::next`].
pub struct Watch {
    channels: Channels,
    all_tenants: bool,
    /// The last revision applied per tenant: where a new stream resumes.
    cursors: BTreeMap<String, i64>,
    stream: Option<tonic::Streaming<pb::WatchResponse>>,
    /// The parts of a change set received so far.
    parts: Option<ChangeSet>,
    /// The tenants inside a snapshot.
    in_snapshot: BTreeSet<String>,
    reconnect_delay: Duration,
}

impl Watch {
    pub(crate) fn new(
        channels: Channels,
        all_tenants: bool,
        cursors: BTreeMap<String, i64>,
    ) -> Self {
        Watch {
            channels,
            all_tenants,
            cursors,
            stream: None,
            parts: None,
            in_snapshot: BTreeSet::new(),
            reconnect_delay: Duration::from_millis(100),
        }
    }

    /// The last revision applied per tenant (what a new stream, or a new
    /// `Watch` after a restart, resumes from).
    pub fn cursors(&self) -> &BTreeMap<String, i64> {
        &self.cursors
    }

    /// The next event. Reconnects (after a short, growing pause) when the
    /// stream breaks with UNAVAILABLE or ends; any other error is returned
    /// (a refused credential, an invalid cursor).
    pub async fn next(&mut self) -> Result<FeedEvent, tonic::Status> {
        loop {
            if self.stream.is_none() {
                self.connect().await?;
            }
            let stream = self.stream.as_mut().expect("connected");
            match stream.next().await {
                Some(Ok(message)) => {
                    self.reconnect_delay = Duration::from_millis(100);
                    if let Some(event) = self.take(message) {
                        return Ok(event);
                    }
                }
                Some(Err(status)) if status.code() != tonic::Code::Unavailable => {
                    self.drop_stream();
                    return Err(status);
                }
                Some(Err(_)) | None => {
                    tracing::debug!(delay = ?self.reconnect_delay, "the feed broke: resuming from the cursors");
                    self.drop_stream();
                    tokio::time::sleep(self.reconnect_delay).await;
                    self.reconnect_delay = (self.reconnect_delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn connect(&mut self) -> Result<(), tonic::Status> {
        let request = pb::WatchRequest {
            cursors: self
                .cursors
                .iter()
                .map(|(tenant_id, revision)| pb::TenantCursor {
                    tenant_id: tenant_id.clone(),
                    revision: *revision,
                })
                .collect(),
            all_tenants: self.all_tenants,
        };
        let mut feed = self.channels.feed.clone();
        loop {
            match feed.watch(request.clone()).await {
                Ok(stream) => {
                    self.stream = Some(stream.into_inner());
                    return Ok(());
                }
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(self.reconnect_delay).await;
                    self.reconnect_delay = (self.reconnect_delay * 2).min(Duration::from_secs(5));
                }
                Err(status) => return Err(status),
            }
        }
    }

    /// A broken stream loses its unfinished parts and snapshots: the new one
    /// sends them again whole, from the cursors.
    fn drop_stream(&mut self) {
        self.stream = None;
        self.parts = None;
        self.in_snapshot.clear();
    }

    fn take(&mut self, message: pb::WatchResponse) -> Option<FeedEvent> {
        match message.event? {
            Event::SnapshotBegin(begin) => {
                self.in_snapshot.insert(begin.tenant_id.clone());
                Some(FeedEvent::SnapshotBegin {
                    tenant_id: begin.tenant_id,
                    revision: begin.revision,
                })
            }
            Event::SnapshotEnd(end) => {
                self.in_snapshot.remove(&end.tenant_id);
                self.cursors.insert(end.tenant_id.clone(), end.revision);
                Some(FeedEvent::SnapshotEnd {
                    tenant_id: end.tenant_id,
                    revision: end.revision,
                })
            }
            Event::Checkpoint(checkpoint) => Some(FeedEvent::Checkpoint {
                tenant_id: checkpoint.tenant_id,
                revision: checkpoint.revision,
            }),
            Event::CaughtUp(_) => Some(FeedEvent::CaughtUp),
            Event::Change(part) => {
                let in_snapshot = self.in_snapshot.contains(&part.tenant_id);
                let set = self.parts.get_or_insert_with(|| ChangeSet {
                    tenant_id: part.tenant_id.clone(),
                    revision: part.revision,
                    commit_time: part.commit_time,
                    actor: part.actor.clone(),
                    changes: Vec::new(),
                    in_snapshot,
                });
                set.changes.extend(part.changes);
                if part.continued {
                    return None;
                }
                let set = self.parts.take().expect("gathered");
                if !set.in_snapshot {
                    self.cursors.insert(set.tenant_id.clone(), set.revision);
                }
                Some(FeedEvent::Changes(set))
            }
        }
    }
}
