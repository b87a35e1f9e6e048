//! Group commit: a tenant's concurrent writes of one kind queued and written
//! together (the queues are `storage/batches.rs`). What each kind writes is in
//! `batched_creates.rs` and `batched_members.rs`.

use super::*;

/// A create (of a user or a group) waiting for its tenant's next batch: what
/// `OneShot` borrows, owned, since the batch is written by another task.
pub(super) struct PendingCreate<E> {
    pub(super) value: E,
    pub(super) tenant: TenantId,
    pub(super) ctx: WriteContext,
    pub(super) request: Option<(RequestId, String)>,
    pub(super) time: DateTime<Utc>,
    pub(super) changes: Vec<Change>,
    /// The change set as stored.
    pub(super) payload: String,
}

pub(super) type PendingUser = PendingCreate<User>;
pub(super) type PendingGroup = PendingCreate<Group>;

impl<E: Clone> PendingCreate<E> {
    pub(super) fn new(shot: &OneShot<'_>, value: &E) -> StoreResult<Self> {
        Ok(PendingCreate {
            value: value.clone(),
            tenant: shot.tenant,
            ctx: shot.ctx.clone(),
            request: shot.request.map(|(r, f)| (r.clone(), f.to_owned())),
            time: shot.time,
            changes: shot.changes.clone(),
            payload: shot.payload()?,
        })
    }

    pub(super) fn shot(&self) -> OneShot<'_> {
        OneShot {
            ctx: &self.ctx,
            tenant: self.tenant,
            request: self.request.as_ref().map(|(r, f)| (r, f.as_str())),
            time: self.time,
            changes: self.changes.clone(),
        }
    }
}

/// At most this many creates are written in one statement: a batch's commit
/// answers all of them at once, so a larger one only delays the first.
pub(super) const MAX_BATCH: usize = 128;

/// At most this many `AddGroupMembers` calls (of up to 1,000 users each) in one
/// batch.
pub(super) const MAX_MEMBER_BATCH: usize = 16;

/// A write that concurrent callers of one tenant make together (see `batches`).
#[async_trait::async_trait]
pub(super) trait Batched: Sized + Send + Sync + 'static {
    type Answer: Send + 'static;
    /// At most this many in one batch.
    const MAX_BATCH: usize;
    /// Whether a batch of one item is written by `write_alone` (cheaper for a
    /// create: one statement) rather than by `write_together`.
    const ONE_WRITTEN_ALONE: bool = true;
    /// The store's queues of this write.
    fn batches(store: &PgStore) -> &Arc<Batches<Self, StoreResult<Self::Answer>>>;
    /// Writes the batch in one transaction and answers each item; `None` when
    /// that failed and nothing was written.
    async fn write_together(
        store: &PgStore,
        tenant: TenantId,
        batch: &[Self],
    ) -> Option<Vec<StoreResult<Self::Answer>>>;
    /// Writes this item alone.
    async fn write_alone(&self, store: &PgStore, tenant: TenantId) -> StoreResult<Self::Answer>;
}

#[async_trait::async_trait]
impl Batched for PendingUser {
    type Answer = Created;
    const MAX_BATCH: usize = MAX_BATCH;
    fn batches(store: &PgStore) -> &Arc<Batches<Self, StoreResult<Created>>> {
        &store.user_batches
    }
    async fn write_together(
        store: &PgStore,
        tenant: TenantId,
        batch: &[Self],
    ) -> Option<Vec<StoreResult<Created>>> {
        store.create_users_together(tenant, batch).await
    }
    async fn write_alone(&self, store: &PgStore, _tenant: TenantId) -> StoreResult<Created> {
        store.create_user_alone(self).await
    }
}

#[async_trait::async_trait]
impl Batched for PendingGroup {
    type Answer = Created;
    const MAX_BATCH: usize = MAX_BATCH;
    fn batches(store: &PgStore) -> &Arc<Batches<Self, StoreResult<Created>>> {
        &store.group_batches
    }
    async fn write_together(
        store: &PgStore,
        tenant: TenantId,
        batch: &[Self],
    ) -> Option<Vec<StoreResult<Created>>> {
        store.create_groups_together(tenant, batch).await
    }
    async fn write_alone(&self, store: &PgStore, _tenant: TenantId) -> StoreResult<Created> {
        store.create_group_alone(self).await
    }
}

#[async_trait::async_trait]
impl Batched for PendingMembers {
    type Answer = Written<Vec<UserId>>;
    const MAX_BATCH: usize = MAX_MEMBER_BATCH;
    /// The batched write probes only what this process does not know (see
    /// `known_users`), so it serves a call that comes alone too.
    const ONE_WRITTEN_ALONE: bool = false;
    fn batches(store: &PgStore) -> &Arc<Batches<Self, StoreResult<Self::Answer>>> {
        &store.member_batches
    }
    async fn write_together(
        store: &PgStore,
        tenant: TenantId,
        batch: &[Self],
    ) -> Option<Vec<StoreResult<Self::Answer>>> {
        store.add_members_together(tenant, batch).await
    }
    async fn write_alone(&self, store: &PgStore, tenant: TenantId) -> StoreResult<Self::Answer> {
        store
            .add_members_alone(&self.ctx, tenant, self.group, self.users.clone())
            .await
    }
}

impl PgStore {
    /// Queues `item` for its tenant's next batch (starting the tenant's runner,
    /// a task of its own, if none runs) and waits for its answer.
    pub(super) async fn in_batch<T: Batched>(
        &self,
        tenant: TenantId,
        item: T,
    ) -> StoreResult<T::Answer> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let batches = T::batches(self).clone();
        if batches.push(tenant, Waiting { item, reply }) {
            let store = self.clone();
            tokio::spawn(async move {
                while let Some(batch) = batches.next(tenant, T::MAX_BATCH) {
                    store.write_batch(tenant, batch).await;
                }
            });
        }
        // The runner answers every item it takes; no answer means it died.
        answer
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::WorkerCrashed))?
    }

    /// Writes one batch and answers each item: all together, or one at a time
    /// when that fails (nothing written), each with its own answer.
    ///
    /// A caller that gives up (its deadline, a cancelled call) before its write
    /// is done leaves it undone, as a write of its own would be: items already
    /// abandoned are left out, a write of one item is dropped (rolled back) when
    /// its caller goes, and a batch when all of its callers go. In a batch that
    /// others still wait for, a caller that gave up gets the outcome of every
    /// cancelled call: unknown.
    pub(super) async fn write_batch<T: Batched>(
        &self,
        tenant: TenantId,
        batch: Vec<Waiting<T, StoreResult<T::Answer>>>,
    ) {
        let (items, mut replies): (Vec<T>, Vec<_>) = batch
            .into_iter()
            .filter(|w| !w.abandoned())
            .map(|w| (w.item, w.reply))
            .unzip();
        let written = match items.len() {
            0 => return,
            1 if T::ONE_WRITTEN_ALONE => None,
            _ => tokio::select! {
                written = T::write_together(self, tenant, &items) => written,
                () = every_caller_gone(&mut replies) => return,
            },
        };
        match written {
            Some(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            None => {
                for (item, mut reply) in items.iter().zip(replies) {
                    let answer = tokio::select! {
                        answer = item.write_alone(self, tenant) => Some(answer),
                        () = reply.closed() => None,
                    };
                    if let Some(answer) = answer {
                        let _ = reply.send(answer);
                    }
                }
            }
        }
    }
}

/// Completes once every caller of a batch has given up.
pub(super) async fn every_caller_gone<R>(replies: &mut [tokio::sync::oneshot::Sender<R>]) {
    for reply in replies {
        reply.closed().await;
    }
}

/// What a caller whose write was in a batch whose commit failed is told: whether
/// the commit took effect is unknown, so the write is not tried again (that
/// could apply it twice), and the caller gets the failure.
pub(super) fn commit_failed<A>(err: &sqlx::Error) -> StoreResult<A> {
    Err(StoreError::Database(sqlx::Error::Protocol(format!(
        "commit failed: {err}"
    ))))
}
