//! `AddGroupMembers` calls written together (see `group_commit`).

use super::group_commit::commit_failed;
use super::*;
use std::collections::{HashMap, HashSet};

/// An `AddGroupMembers` call waiting for its tenant's next batch.
pub(super) struct PendingMembers {
    pub(super) ctx: WriteContext,
    pub(super) group: GroupId,
    /// As asked: a missing user is named as the call alone would name it.
    pub(super) users: Vec<UserId>,
    pub(super) time: DateTime<Utc>,
}

/// `AddGroupMembers` calls of one tenant written together: each judged as if it
/// came alone after the ones before it in the batch, each with its own revision
/// (or none, when it adds nothing) and change set.
impl PgStore {
    pub(super) async fn add_members_at_once(
        &self,
        ctx: &WriteContext,
        tenant: TenantId,
        group: GroupId,
        users: Vec<UserId>,
    ) -> StoreResult<Written<Vec<UserId>>> {
        let pending = PendingMembers {
            ctx: ctx.clone(),
            group,
            users,
            time: now(),
        };
        self.in_batch(tenant, pending).await
    }

    /// The batch in one transaction: the tenant's row lock first (so what is
    /// judged stays true until the commit), one statement probing every group,
    /// user and membership, the judgement here, then one statement writing the
    /// memberships, counters, revision and change sets. `None` when a statement
    /// failed and nothing was written.
    pub(super) async fn add_members_together(
        &self,
        tenant: TenantId,
        batch: &[PendingMembers],
    ) -> Option<Vec<StoreResult<Written<Vec<UserId>>>>> {
        let mut tx = self.pool.begin().await.ok()?;
        let _turn = self.turns.take(tenant).await;
        let locked: Option<(i64, i64)> = sqlx::query_as(
            "SELECT revision, users_deleted_revision FROM tenants WHERE id = $1 FOR NO KEY UPDATE",
        )
        .bind(tenant.0)
        .fetch_optional(&mut *tx)
        .await
        .ok()?;
        let Some((mut revision, users_deleted)) = locked else {
            return Some(
                batch
                    .iter()
                    .map(|_| Err(StoreError::not_found("tenant", tenant)))
                    .collect(),
            );
        };
        // Each call's users, sorted and distinct, as one list of (group, user).
        let asked: Vec<Vec<Uuid>> = batch
            .iter()
            .map(|w| {
                let mut users: Vec<Uuid> = w.users.iter().map(|u| u.0).collect();
                users.sort_unstable();
                users.dedup();
                users
            })
            .collect();
        let groups: Vec<Uuid> = batch.iter().map(|w| w.group.0).collect();
        let found_groups: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT id, member_count FROM groups WHERE tenant_id = $1 AND id = ANY($2)",
        )
        .bind(tenant.0)
        .bind(&groups)
        .fetch_all(&mut *tx)
        .await
        .ok()?;
        let probes = self
            .probe_members(
                &mut tx,
                tenant,
                revision,
                users_deleted,
                batch,
                &asked,
                &found_groups,
            )
            .await?;
        let found_groups: Vec<Uuid> = found_groups.into_iter().map(|(id, _)| id).collect();

        let mut answers = Vec::with_capacity(batch.len());
        let mut claimed = HashSet::new();
        let mut rows = MembershipColumns::default();
        let mut sets: Vec<ChangeSet> = Vec::new();
        let mut probes = probes.into_iter();
        for (p, users) in batch.iter().zip(&asked) {
            let probed: Vec<(bool, bool)> = probes.by_ref().take(users.len()).collect();
            if !found_groups.contains(&p.group.0) {
                answers.push(Err(StoreError::not_found("group", p.group)));
                continue;
            }
            let missing: Vec<Uuid> = users
                .iter()
                .zip(&probed)
                .filter(|(_, (user, _))| !user)
                .map(|(u, _)| *u)
                .collect();
            if let Some(first) = p.users.iter().find(|u| missing.contains(&u.0)) {
                answers.push(Err(StoreError::not_found("user", first)));
                continue;
            }
            // New members: not members yet, nor added by an earlier call.
            let added: Vec<UserId> = users
                .iter()
                .zip(&probed)
                .filter(|(u, (_, member))| !member && claimed.insert((p.group.0, **u)))
                .map(|(u, _)| UserId(*u))
                .collect();
            if added.is_empty() {
                // Nothing changes: no revision, as a call alone.
                answers.push(Ok(Written {
                    value: added,
                    revision,
                }));
                continue;
            }
            revision += 1;
            rows.push(p.group.0, &added, revision, p.time);
            sets.push(ChangeSet {
                tenant_id: tenant,
                revision,
                commit_time: p.time,
                actor: p.ctx.actor.clone(),
                changes: added
                    .iter()
                    .map(|user| Change::MembershipAdded {
                        membership: Membership {
                            group_id: p.group,
                            user_id: *user,
                            join_revision: revision,
                            join_time: p.time,
                        },
                    })
                    .collect(),
            });
            answers.push(Ok(Written {
                value: added,
                revision,
            }));
        }
        if sets.is_empty() {
            tx.rollback().await.ok()?;
            return Some(answers);
        }
        let payloads: Vec<String> = sets
            .iter()
            .map(|s| crate::storage::events::encode(&s.changes))
            .collect::<Result<_, _>>()
            .ok()?;
        let (count_groups, counts) = rows.counts();
        sqlx::query(
            "WITH bump AS (UPDATE tenants SET revision = $2 WHERE id = $1), \
             added AS (INSERT INTO memberships (tenant_id, group_id, user_id, join_revision, join_time) \
                 SELECT $1, g, u, r, t FROM UNNEST($3::uuid[], $4::uuid[], $5::bigint[], $6::timestamptz[]) \
                 AS a(g, u, r, t)), \
             counted AS (UPDATE groups SET member_count = member_count + \
                 (SELECT n FROM UNNEST($7::uuid[], $8::bigint[]) AS c(g, n) WHERE c.g = groups.id) \
                 WHERE tenant_id = $1 AND id = ANY($7)), \
             event AS (INSERT INTO change_events (tenant_id, revision, commit_time, actor, changes) \
                 SELECT $1, r, t, a, c \
                 FROM UNNEST($9::bigint[], $10::timestamptz[], $11::text[], $12::text[]) AS e(r, t, a, c)) \
             SELECT 1",
        )
        .bind(tenant.0)
        .bind(revision)
        .bind(&rows.group)
        .bind(&rows.user)
        .bind(&rows.revision)
        .bind(&rows.time)
        .bind(&count_groups)
        .bind(&counts)
        .bind(sets.iter().map(|s| s.revision).collect::<Vec<_>>())
        .bind(sets.iter().map(|s| s.commit_time).collect::<Vec<_>>())
        .bind(sets.iter().map(|s| s.actor.as_str()).collect::<Vec<_>>())
        .bind(&payloads)
        .execute(&mut *tx)
        .await
        .ok()?;
        if let Err(err) = tx.commit().await {
            // Each call that wrote gets the failure.
            return Some(
                answers
                    .into_iter()
                    .map(|answer| match answer {
                        Ok(written) if !written.value.is_empty() => commit_failed(&err),
                        other => other,
                    })
                    .collect(),
            );
        }
        for set in sets {
            self.after_commit(Arc::new(set));
        }
        Some(answers)
    }
}

impl PgStore {
    /// For each (group, user) pair of the batch, in order: whether the user
    /// exists and whether it is a member of the group already.
    ///
    /// Only what is not known is asked of the database: a user this process knows
    /// to exist (`known_users`) is not probed, and a group's memberships are judged
    /// as `member_check` says from its `member_count` (kept in the same
    /// transactions as its memberships; were it ever wrong, the insert's primary
    /// key would still refuse a repeated membership, and the batch would be written
    /// call by call). One index probe per row whatever the statistics say (see
    /// `create_users_together`). The membership probe spells the user as
    /// a range so that only the primary key (tenant, group, user) serves it with
    /// an equality on its leading columns: with `user_id = ...` PostgreSQL took
    /// `memberships_by_user` as readily, which scatters a call's probes over the
    /// whole index (813 pages read for 1,000 probes at 3M memberships, against 2
    /// in the group's own range of the primary key).
    #[allow(
        clippy::too_many_arguments,
        reason = "one batch's judgement, taken apart"
    )]
    async fn probe_members(
        &self,
        tx: &mut Transaction<'static, Db>,
        tenant: TenantId,
        revision: Revision,
        users_deleted: Revision,
        batch: &[PendingMembers],
        asked: &[Vec<Uuid>],
        groups: &[(Uuid, i64)],
    ) -> Option<Vec<(bool, bool)>> {
        // How many ids the batch asks about in each group.
        let mut asked_in: HashMap<Uuid, i64> = HashMap::new();
        for (waiting, users) in batch.iter().zip(asked) {
            *asked_in.entry(waiting.group.0).or_default() += users.len() as i64;
        }
        let mut listed: Vec<Uuid> = Vec::new();
        let mut probed: HashSet<Uuid> = HashSet::new();
        for (group, members) in groups {
            match member_check(*members, asked_in.get(group).copied().unwrap_or(0)) {
                MemberCheck::None => {}
                MemberCheck::Listed => listed.push(*group),
                MemberCheck::Probed => {
                    probed.insert(*group);
                }
            }
        }
        let members: HashSet<(Uuid, Uuid)> = if listed.is_empty() {
            HashSet::new()
        } else {
            sqlx::query_as::<_, (Uuid, Uuid)>(
                "SELECT l.group_id, m.user_id FROM UNNEST($2::uuid[]) AS l(group_id) \
                 CROSS JOIN LATERAL (SELECT user_id FROM memberships \
                     WHERE tenant_id = $1 AND group_id = l.group_id) m",
            )
            .bind(tenant.0)
            .bind(&listed)
            .fetch_all(&mut **tx)
            .await
            .ok()?
            .into_iter()
            .collect()
        };
        let mut pairs: Vec<(Uuid, Uuid, bool)> = Vec::new();
        for (waiting, users) in batch.iter().zip(asked) {
            let probe_member = probed.contains(&waiting.group.0);
            pairs.extend(users.iter().map(|u| (waiting.group.0, *u, probe_member)));
        }
        let known = self
            .known_users
            .known(tenant, users_deleted, pairs.iter().map(|(_, u, _)| *u));
        // Answers as known (or listed), then the rest asked of the database.
        let mut answers: Vec<(bool, bool)> = known
            .iter()
            .zip(&pairs)
            .map(|(k, (group, user, _))| (*k, members.contains(&(*group, *user))))
            .collect();
        let asked_at: Vec<usize> = (0..pairs.len())
            .filter(|i| !known[*i] || pairs[*i].2)
            .collect();
        if asked_at.is_empty() {
            return Some(answers);
        }
        let column = |f: fn(&(Uuid, Uuid, bool)) -> Uuid| -> Vec<Uuid> {
            asked_at.iter().map(|i| f(&pairs[*i])).collect()
        };
        let probe_users: Vec<bool> = asked_at.iter().map(|i| !known[*i]).collect();
        let probe_memberships: Vec<bool> = asked_at.iter().map(|i| pairs[*i].2).collect();
        let found: Vec<(bool, bool)> = sqlx::query_as(
            "SELECT NOT p.probe_user OR u.found IS NOT NULL, m.found IS NOT NULL \
             FROM UNNEST($2::uuid[], $3::uuid[], $4::bool[], $5::bool[]) WITH ORDINALITY \
                 AS p(group_id, user_id, probe_user, probe_member, n) \
             LEFT JOIN LATERAL (SELECT TRUE AS found FROM users \
                 WHERE p.probe_user AND tenant_id = $1 AND id = p.user_id LIMIT 1) u ON TRUE \
             LEFT JOIN LATERAL (SELECT TRUE AS found FROM memberships \
                 WHERE p.probe_member AND tenant_id = $1 AND group_id = p.group_id \
                 AND user_id >= p.user_id AND user_id <= p.user_id LIMIT 1) m ON TRUE \
             ORDER BY p.n",
        )
        .bind(tenant.0)
        .bind(column(|p| p.0))
        .bind(column(|p| p.1))
        .bind(&probe_users)
        .bind(&probe_memberships)
        .fetch_all(&mut **tx)
        .await
        .ok()?;
        if found.len() != asked_at.len() {
            return None;
        }
        let mut existing = Vec::new();
        for (i, (user, member)) in asked_at.into_iter().zip(found) {
            if !known[i] && user {
                existing.push(pairs[i].1);
            }
            // A listed group's answer stands; the probe asked only of the user.
            let member = if pairs[i].2 { member } else { answers[i].1 };
            answers[i] = (user, member);
        }
        self.known_users.found(tenant, &existing, revision);
        Some(answers)
    }
}

/// How a batch learns which of the ids it asks about in a group are members
/// already.
#[derive(Debug, PartialEq, Eq)]
enum MemberCheck {
    /// The group has no members: none is.
    None,
    /// Its whole member list is read (one range of the primary key): it has few
    /// members against the ids asked.
    Listed,
    /// One probe per id: its members far outnumber the ids asked.
    Probed,
}

/// A group's member list is read whole while it holds at most this many members
/// per id asked about in it: reading a member of a list costs a small fraction of
/// a probe (a descent of the primary key).
const LISTED_MEMBERS_PER_ID: i64 = 8;

fn member_check(members: i64, asked: i64) -> MemberCheck {
    if members <= 0 {
        MemberCheck::None
    } else if members <= LISTED_MEMBERS_PER_ID * asked {
        MemberCheck::Listed
    } else {
        MemberCheck::Probed
    }
}

/// New memberships as the columns of one `UNNEST`.
#[derive(Default)]
pub(super) struct MembershipColumns {
    pub(super) group: Vec<Uuid>,
    pub(super) user: Vec<Uuid>,
    pub(super) revision: Vec<i64>,
    pub(super) time: Vec<DateTime<Utc>>,
}

impl MembershipColumns {
    pub(super) fn push(
        &mut self,
        group: Uuid,
        users: &[UserId],
        revision: Revision,
        time: DateTime<Utc>,
    ) {
        for user in users {
            self.group.push(group);
            self.user.push(user.0);
            self.revision.push(revision);
            self.time.push(time);
        }
    }

    /// How many members each group gains.
    pub(super) fn counts(&self) -> (Vec<Uuid>, Vec<i64>) {
        let mut counts: std::collections::BTreeMap<Uuid, i64> = Default::default();
        for group in &self.group {
            *counts.entry(*group).or_default() += 1;
        }
        counts.into_iter().unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_groups_members_are_listed_while_few_against_the_ids_asked() {
        assert_eq!(member_check(0, 1000), MemberCheck::None);
        assert_eq!(member_check(30, 1000), MemberCheck::Listed);
        assert_eq!(member_check(8, 1), MemberCheck::Listed);
        assert_eq!(member_check(9, 1), MemberCheck::Probed);
        assert_eq!(member_check(100_000, 1000), MemberCheck::Probed);
    }
}
