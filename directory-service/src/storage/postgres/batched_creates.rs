//! Creates written together (see `group_commit`): one statement judges and
//! writes a batch of users or of groups, each at its own revision.

use std::sync::LazyLock;

use super::group_commit::{commit_failed, PendingCreate, PendingGroup, PendingUser};
use super::*;

impl PgStore {
    /// One statement for the whole batch (`CREATE_USERS`): a request id already
    /// stored or used earlier in the batch is a twin to replay, an email already
    /// stored or used earlier in the batch is taken, the others are written, each
    /// at its own revision. `None` when the statement failed and nothing was
    /// written (a concurrent writer got past the judgement: the constraints still
    /// hold): the caller writes the users one at a time.
    pub(super) async fn create_users_together(
        &self,
        tenant: TenantId,
        batch: &[PendingUser],
    ) -> Option<Vec<StoreResult<Created>>> {
        let shared = CreateColumns::of(batch);
        let mut columns = UserColumns::default();
        for pending in batch {
            columns.push(pending);
        }
        let mut tx = self.pool.begin().await.ok()?;
        let _turn = self.turns.take(tenant).await;
        let judged = sqlx::query_as::<_, (i64, Option<String>, Option<i64>)>(&CREATE_USERS)
            .bind(tenant.0)
            .bind(&columns.id)
            .bind(&columns.display_name)
            .bind(&columns.email)
            .bind(&columns.email_key)
            .bind(&columns.search_text)
            .bind(&columns.roles)
            .bind(&shared.time)
            .bind(&shared.request_id)
            .bind(&shared.fingerprint)
            .bind(&shared.actor)
            .bind(&shared.changes)
            .bind(&columns.role_user)
            .bind(&columns.role_name)
            .fetch_all(&mut *tx)
            .await
            .ok()?;
        self.created_together(tenant, tx, batch, judged, |refusal, user| match refusal {
            "email" => Err(StoreError::AlreadyExists {
                field: "email".into(),
                message: Store::email_taken(user)(),
            }),
            _ => Err(StoreError::Corrupt(format!("an unknown refusal {refusal}"))),
        })
        .await
    }

    /// How a batch of creates ended, from its statement's judgement of each item
    /// (`place`, refusal, revision): committed and announced at their revisions,
    /// a twin to replay (`request_id`), refused (`refused` names the error), or,
    /// when an item is neither refused nor written (nothing was bumped), the
    /// tenant not found. `None` when the statement did not answer for every item.
    pub(super) async fn created_together<E: Clone>(
        &self,
        tenant: TenantId,
        tx: Transaction<'static, Db>,
        batch: &[PendingCreate<E>],
        judged: Vec<(i64, Option<String>, Option<i64>)>,
        refused: impl Fn(&str, &E) -> StoreResult<Created>,
    ) -> Option<Vec<StoreResult<Created>>> {
        if judged.len() != batch.len() {
            return None;
        }
        if judged
            .iter()
            .any(|(_, refusal, revision)| refusal.is_none() && revision.is_none())
        {
            return Some(
                batch
                    .iter()
                    .map(|_| Err(StoreError::not_found("tenant", tenant)))
                    .collect(),
            );
        }
        if let Err(err) = tx.commit().await {
            return Some(batch.iter().map(|_| commit_failed(&err)).collect());
        }
        let answers = batch
            .iter()
            .zip(judged)
            .map(
                |(waiting, (_, refusal, revision))| match (refusal.as_deref(), revision) {
                    (_, Some(revision)) => {
                        self.after_commit(waiting.shot().committed(revision));
                        Ok(Created::At(revision))
                    }
                    (Some("request_id"), None) => Ok(Created::RequestIdTaken),
                    (refusal, None) => refused(refusal.unwrap_or_default(), &waiting.value),
                },
            )
            .collect();
        Some(answers)
    }

    /// One statement for a batch of groups (`CREATE_GROUPS`), judged and written
    /// as `create_users_together` does users.
    pub(super) async fn create_groups_together(
        &self,
        tenant: TenantId,
        batch: &[PendingGroup],
    ) -> Option<Vec<StoreResult<Created>>> {
        let shared = CreateColumns::of(batch);
        let ids: Vec<Uuid> = batch.iter().map(|p| p.value.id.0).collect();
        let parents: Vec<Option<Uuid>> = batch
            .iter()
            .map(|p| p.value.parent_id.map(|g| g.0))
            .collect();
        let names: Vec<&str> = batch
            .iter()
            .map(|p| p.value.display_name.as_str())
            .collect();
        let name_keys: Vec<String> = batch.iter().map(|p| p.value.display_name.key()).collect();
        let organizations: Vec<bool> = batch.iter().map(|p| p.value.is_organization).collect();
        let inherited: Vec<String> = batch.iter().map(|p| p.value.inherited_column()).collect();
        let mut tx = self.pool.begin().await.ok()?;
        let _turn = self.turns.take(tenant).await;
        let judged = sqlx::query_as::<_, (i64, Option<String>, Option<i64>)>(&CREATE_GROUPS)
            .bind(tenant.0)
            .bind(&ids)
            .bind(&parents)
            .bind(&names)
            .bind(&name_keys)
            .bind(&organizations)
            .bind(&inherited)
            .bind(&shared.time)
            .bind(&shared.request_id)
            .bind(&shared.fingerprint)
            .bind(&shared.actor)
            .bind(&shared.changes)
            .fetch_all(&mut *tx)
            .await
            .ok()?;
        self.created_together(tenant, tx, batch, judged, |refusal, group| {
            match (refusal, group.parent_id) {
                ("parent", Some(parent)) => Err(StoreError::not_found("group", parent)),
                _ => Err(StoreError::AlreadyExists {
                    field: "display_name".into(),
                    message: Store::name_taken(group)(),
                }),
            }
        })
        .await
    }
}

/// What every create of a batch carries besides its entity, as the columns of
/// one `UNNEST`.
struct CreateColumns<'a> {
    time: Vec<DateTime<Utc>>,
    request_id: Vec<Option<&'a str>>,
    fingerprint: Vec<Option<&'a str>>,
    actor: Vec<&'a str>,
    changes: Vec<&'a str>,
}

impl<'a> CreateColumns<'a> {
    fn of<E>(batch: &'a [PendingCreate<E>]) -> Self {
        CreateColumns {
            time: batch.iter().map(|p| p.time).collect(),
            request_id: batch
                .iter()
                .map(|p| p.request.as_ref().map(|(r, _)| r.as_str()))
                .collect(),
            fingerprint: batch
                .iter()
                .map(|p| p.request.as_ref().map(|(_, f)| f.as_str()))
                .collect(),
            actor: batch.iter().map(|p| p.ctx.actor.as_str()).collect(),
            changes: batch.iter().map(|p| p.payload.as_str()).collect(),
        }
    }
}

/// A batch of new users' own columns for one `UNNEST`.
#[derive(Default)]
pub(super) struct UserColumns {
    pub(super) id: Vec<Uuid>,
    pub(super) display_name: Vec<String>,
    pub(super) email: Vec<String>,
    pub(super) email_key: Vec<String>,
    pub(super) search_text: Vec<String>,
    pub(super) roles: Vec<String>,
    /// One entry per role of every user.
    pub(super) role_user: Vec<Uuid>,
    pub(super) role_name: Vec<&'static str>,
}

impl UserColumns {
    pub(super) fn push(&mut self, pending: &PendingUser) {
        let row = Store::user_row(&pending.value);
        self.id.push(row.id);
        self.display_name.push(row.display_name.to_owned());
        self.email.push(row.email.to_owned());
        self.email_key.push(row.email_key);
        self.search_text.push(row.search_text);
        self.roles.push(row.roles);
        for role in row.role_names {
            self.role_user.push(row.id);
            self.role_name.push(role);
        }
    }
}

/// The statement of a batch of creates, for `created_together`. One shape for
/// every kind: `item` unnests the batch (the kind's own columns from `$2`, then
/// the columns of `CreateColumns`, then `place`), `judged` gives each item a
/// `refusal` (a twin's `request_id` first, then the kind's own `refusals`, from
/// its `seen` window columns and its `probes`), `ok` ranks the others, `bump`
/// takes as many revisions, the kind's `writes` insert its rows at
/// `base + rank`, then come the request ids and the change sets, and one row
/// answers for each item.
///
/// Each probe is a `LATERAL ... LIMIT 1`, one index probe per item whatever the
/// statistics say: as a join or `EXISTS`, PostgreSQL planned it from the
/// statistics of a smaller tenant as a hash of every user of the tenant (3 ms a
/// batch at 4,000 users, growing with them).
struct CreateStatement {
    /// The `UNNEST` arguments of the kind's own columns, and their names.
    unnest: &'static str,
    columns: &'static str,
    seen: &'static str,
    refusals: &'static str,
    probes: &'static str,
    writes: &'static str,
}

impl CreateStatement {
    fn sql(&self) -> String {
        let CreateStatement {
            unnest,
            columns,
            seen,
            refusals,
            probes,
            writes,
        } = self;
        // The shared columns' parameters follow the kind's own.
        let time = unnest.matches('$').count() + 2;
        let (request_id, fingerprint, actor, changes) = (time + 1, time + 2, time + 3, time + 4);
        format!(
            "WITH item AS (SELECT * FROM UNNEST({unnest}, ${time}::timestamptz[], ${request_id}::text[], \
                 ${fingerprint}::text[], ${actor}::text[], ${changes}::text[]) \
                 WITH ORDINALITY AS i({columns}, time, request_id, fingerprint, actor, changes, place)), \
             marked AS (SELECT i.*, row_number() OVER (PARTITION BY request_id ORDER BY place) AS request_seen, \
                 {seen} FROM item i), \
             judged AS (SELECT m.*, CASE \
                 WHEN m.request_id IS NOT NULL AND (m.request_seen > 1 OR k.taken) THEN 'request_id' \
                 {refusals} END AS refusal \
                 FROM marked m \
                 LEFT JOIN LATERAL (SELECT TRUE AS taken FROM idempotency_keys \
                     WHERE scope = $1 AND request_id = m.request_id LIMIT 1) k ON TRUE \
                 {probes}), \
             ok AS (SELECT j.*, row_number() OVER (ORDER BY place) AS rank FROM judged j WHERE refusal IS NULL), \
             bump AS (UPDATE tenants SET revision = revision + (SELECT count(*) FROM ok) WHERE id = $1 \
                 RETURNING revision - (SELECT count(*) FROM ok) AS base), \
             {writes}, \
             request AS (INSERT INTO idempotency_keys (scope, request_id, fingerprint, resource_id, revision, \
                 create_time) SELECT $1, request_id, fingerprint, id, base + rank, time FROM ok, bump \
                 WHERE request_id IS NOT NULL), \
             event AS (INSERT INTO change_events (tenant_id, revision, commit_time, actor, changes) \
                 SELECT $1, base + rank, time, actor, changes FROM ok, bump) \
             SELECT j.place, j.refusal, (SELECT base FROM bump) + ok.rank \
             FROM judged j LEFT JOIN ok ON ok.place = j.place ORDER BY j.place"
        )
    }
}

/// Users: an email stored or used earlier in the batch is taken. The users'
/// roles (`$13`, `$14`: one entry per role of every user) come after the shared
/// columns.
static CREATE_USERS: LazyLock<String> = LazyLock::new(|| {
    CreateStatement {
        unnest: "$2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]",
        columns: "id, display_name, email, email_key, search_text, roles",
        seen: "row_number() OVER (PARTITION BY email_key ORDER BY place) AS email_seen",
        refusals: "WHEN m.email_seen > 1 OR u.taken THEN 'email'",
        probes: "LEFT JOIN LATERAL (SELECT TRUE AS taken FROM users \
            WHERE tenant_id = $1 AND email_key = m.email_key LIMIT 1) u ON TRUE",
        writes: "new_user AS (INSERT INTO users (tenant_id, id, display_name, email, email_key, search_text, \
                roles, suspended, create_time, update_time, revision) \
                SELECT $1, id, display_name, email, email_key, search_text, roles, FALSE, time, time, base + rank \
                FROM ok, bump), \
            new_roles AS (INSERT INTO user_roles (tenant_id, user_id, role) \
                SELECT $1, x.u, x.r FROM UNNEST($13::uuid[], $14::text[]) AS x(u, r) JOIN ok ON ok.id = x.u, bump)",
    }
    .sql()
});

/// Groups: a parent not in the tenant is not found, then a sibling name stored
/// or used earlier in the batch under the same parent is taken; the parents'
/// subgroup counters are written with the groups.
static CREATE_GROUPS: LazyLock<String> = LazyLock::new(|| {
    CreateStatement {
        unnest: "$2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::bool[], $7::text[]",
        columns: "id, parent_id, display_name, name_key, is_organization, inherited_roles",
        seen: "row_number() OVER (PARTITION BY parent_id, name_key ORDER BY place) AS name_seen",
        refusals: "WHEN m.parent_id IS NOT NULL AND p.found IS NULL THEN 'parent' \
            WHEN m.name_seen > 1 OR s.taken THEN 'name'",
        probes: "LEFT JOIN LATERAL (SELECT TRUE AS found FROM groups \
                WHERE tenant_id = $1 AND id = m.parent_id LIMIT 1) p ON TRUE \
            LEFT JOIN LATERAL (SELECT TRUE AS taken FROM groups WHERE tenant_id = $1 \
                AND COALESCE(parent_id, '00000000-0000-0000-0000-000000000000'::uuid) \
                    = COALESCE(m.parent_id, '00000000-0000-0000-0000-000000000000'::uuid) \
                AND name_key = m.name_key LIMIT 1) s ON TRUE",
        writes: "new_group AS (INSERT INTO groups (tenant_id, id, parent_id, display_name, name_key, \
                is_organization, inherited_roles, create_time, update_time, revision) \
                SELECT $1, id, parent_id, display_name, name_key, is_organization, inherited_roles, time, time, \
                base + rank FROM ok, bump), \
            parent AS (UPDATE groups SET subgroup_count = subgroup_count + \
                (SELECT count(*) FROM ok WHERE ok.parent_id = groups.id) \
                WHERE tenant_id = $1 AND id IN (SELECT parent_id FROM ok) AND EXISTS (SELECT 1 FROM bump))",
    }
    .sql()
});
