//! The authorization service's stored projection, on PostgreSQL and on SQLite: a
//! base and its log load back as the state they were written from; a base left
//! unfinished (the service killed midway through a resync) leaves the old
//! projection and is removed; a compaction written page by page while change sets
//! keep arriving loads back as the live state; change sets of several tenants
//! appended together load back as if appended one by one; a tenant stored in a format this
//! version does not read is dropped, to be rebuilt from the directory.

use std::sync::Arc;

use cohort_authz::domain::{Change, ExportCursor, TenantId, TenantState};
use cohort_authz::storage::postgres::PgProjection;
use cohort_authz::storage::sqlite::SqliteProjection;
use cohort_authz::storage::{Appended, Base, ProjectionStore, StoredTenant};
use cohort_tests::oracle::{Shape, World};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Connection;
use uuid::Uuid;

const SHAPE: Shape = Shape {
    users: 10..40,
    groups: 4..20,
    memberships: 10..80,
    administrators: 1..8,
    catalogs: 0..3,
};

/// A store on a fresh database, and how to reach that database directly.
struct Backend {
    store: Arc<dyn ProjectionStore>,
    url: String,
    cleanup: Option<cohort_tests::ScratchDatabase>,
}

impl Backend {
    async fn postgres() -> Backend {
        let database = cohort_tests::fresh_authz_database().await.unwrap();
        let url = database.url().to_owned();
        Backend {
            store: Arc::new(PgProjection::connect(&url).await.unwrap()),
            url,
            cleanup: Some(database),
        }
    }

    async fn sqlite() -> Backend {
        let path =
            std::env::temp_dir().join(format!("cohort-store-{}.db", Uuid::new_v4().simple()));
        let url = format!("sqlite://{}", path.display());
        Backend {
            store: Arc::new(SqliteProjection::connect(&url).await.unwrap()),
            url,
            cleanup: None,
        }
    }

    async fn both() -> Vec<(&'static str, Backend)> {
        vec![
            ("postgres", Backend::postgres().await),
            ("sqlite", Backend::sqlite().await),
        ]
    }

    async fn finish(self) {
        match self.cleanup {
            Some(database) => database.drop_now().await.unwrap(),
            None => {
                let path = self.url.trim_start_matches("sqlite://");
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{path}{suffix}"));
                }
            }
        }
    }

    async fn execute(&self, sql: &str) {
        if self.cleanup.is_some() {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        if self.cleanup.is_some() {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap()
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap()
        }
    }
}

/// A state's content, comparable whatever its slots.
fn content(state: &TenantState) -> Vec<String> {
    let mut lines: Vec<String> = state.changes().iter().map(|c| format!("{c:?}")).collect();
    lines.sort();
    lines
}

fn assert_same(stored: &StoredTenant, live: &TenantState, context: &str) {
    assert_eq!(stored.state.revision, live.revision, "{context}: revision");
    assert_eq!(content(&stored.state), content(live), "{context}: content");
    stored
        .state
        .check_indexes()
        .unwrap_or_else(|e| panic!("{context}: {e}"));
}

/// Writes `changes` as a snapshot base at `revision`, in pages of `page` changes.
async fn write_snapshot(
    store: &dyn ProjectionStore,
    tenant: TenantId,
    changes: &[Change],
    revision: i64,
    page: usize,
) {
    let generation = store.begin_base(tenant).await.unwrap();
    for (seq, chunk) in changes.chunks(page).enumerate() {
        store
            .write_page(tenant, generation, seq as i64, chunk)
            .await
            .unwrap();
    }
    store
        .commit_base(tenant, generation, Base::Snapshot { revision })
        .await
        .unwrap();
}

fn bulk(changes: &[Change], revision: i64) -> TenantState {
    let mut state = TenantState::bulk();
    for change in changes {
        state.apply(change.clone());
    }
    state.finish_bulk();
    state.revision = revision;
    state
}

/// Applies one random change set to the world, the store and the live state.
async fn change_set(
    store: &dyn ProjectionStore,
    tenant: TenantId,
    world: &mut World,
    live: &mut TenantState,
    rng: &mut StdRng,
) {
    let changes = world.mutate(rng);
    let revision = live.revision + 1;
    store.append(tenant, revision, &changes).await.unwrap();
    for change in changes {
        live.apply(change);
    }
    live.revision = revision;
}

#[tokio::test]
async fn a_base_and_its_log_load_back_as_the_state_they_were_written_from() {
    for (name, backend) in Backend::both().await {
        let store = &*backend.store;
        let mut rng = StdRng::seed_from_u64(7);
        let tenants: Vec<TenantId> = (0..3).map(|_| TenantId(Uuid::new_v4())).collect();
        let mut lives = Vec::new();
        for tenant in &tenants {
            let mut world = World::random_shaped(&mut rng, &SHAPE);
            let changes = world.changes();
            write_snapshot(store, *tenant, &changes, 10, 7).await;
            let mut live = bulk(&changes, 10);
            for _ in 0..25 {
                change_set(store, *tenant, &mut world, &mut live, &mut rng).await;
            }
            lives.push(live);
        }
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.len(), 3, "{name}");
        for stored in &loaded {
            let i = tenants.iter().position(|t| *t == stored.tenant).unwrap();
            assert_same(stored, &lives[i], name);
            assert_eq!(stored.log_entries, 25, "{name}");
        }

        // A second snapshot replaces base and log alike.
        let world = World::random_shaped(&mut rng, &SHAPE);
        write_snapshot(store, tenants[0], &world.changes(), 40, 5).await;
        let loaded = store.load().await.unwrap();
        let first = loaded.iter().find(|t| t.tenant == tenants[0]).unwrap();
        assert_same(first, &bulk(&world.changes(), 40), name);
        assert_eq!(first.log_entries, 0, "{name}: the old log is gone");
        backend.finish().await;
    }
}

#[tokio::test]
async fn change_sets_appended_together_load_back_as_if_appended_one_by_one() {
    for (name, backend) in Backend::both().await {
        let store = &*backend.store;
        let mut rng = StdRng::seed_from_u64(11);
        // Two tenants with a base, and one first seen through its change sets.
        let tenants: Vec<TenantId> = (0..3).map(|_| TenantId(Uuid::new_v4())).collect();
        let mut worlds = Vec::new();
        let mut lives = Vec::new();
        let mut first = Vec::new();
        for (i, tenant) in tenants.iter().enumerate() {
            let world = World::random_shaped(&mut rng, &SHAPE);
            let changes = world.changes();
            if i < 2 {
                write_snapshot(store, *tenant, &changes, 10, 7).await;
                lives.push(bulk(&changes, 10));
            } else {
                // Its first change set goes in the first batch.
                lives.push(bulk(&changes, 1));
                first.push(Appended {
                    tenant: *tenant,
                    revision: 1,
                    changes,
                });
            }
            worlds.push(world);
        }
        let mut appended = [0, 0, 1];
        for _ in 0..12 {
            // A batch of 1 to 8 change sets, tenants interleaved.
            let mut batch = std::mem::take(&mut first);
            for _ in 0..rng.random_range(1..=8) {
                let i = rng.random_range(0..3);
                let changes = worlds[i].mutate(&mut rng);
                let revision = lives[i].revision + 1;
                for change in &changes {
                    lives[i].apply(change.clone());
                }
                lives[i].revision = revision;
                appended[i] += 1;
                batch.push(Appended {
                    tenant: tenants[i],
                    revision,
                    changes,
                });
            }
            store.append_all(&batch).await.unwrap();
        }
        let loaded = store.load().await.unwrap();
        for (i, tenant) in tenants.iter().enumerate() {
            let context = format!("{name}, tenant {i}");
            let stored = loaded.iter().find(|t| t.tenant == *tenant).unwrap();
            assert_same(stored, &lives[i], &context);
            assert_eq!(stored.log_entries, appended[i], "{context}: log entries");
        }
        backend.finish().await;
    }
}

#[tokio::test]
async fn an_unfinished_base_leaves_the_old_projection_and_is_removed() {
    for (name, backend) in Backend::both().await {
        let store = &*backend.store;
        let mut rng = StdRng::seed_from_u64(11);
        let tenant = TenantId(Uuid::new_v4());
        let old = World::random_shaped(&mut rng, &SHAPE);
        write_snapshot(store, tenant, &old.changes(), 5, 9).await;
        let pages_of_old = backend.count("projection_pages").await;

        // A resync cut off after some pages (the process killed before the end).
        let new = World::random_shaped(&mut rng, &SHAPE);
        let generation = store.begin_base(tenant).await.unwrap();
        for (seq, chunk) in new.changes().chunks(4).take(3).enumerate() {
            store
                .write_page(tenant, generation, seq as i64, chunk)
                .await
                .unwrap();
        }

        let loaded = store.load().await.unwrap();
        assert_same(&loaded[0], &bulk(&old.changes(), 5), name);
        assert_eq!(
            backend.count("projection_pages").await,
            pages_of_old,
            "{name}: the unfinished pages are removed"
        );

        // The next resync completes.
        write_snapshot(store, tenant, &new.changes(), 9, 4).await;
        let loaded = store.load().await.unwrap();
        assert_same(&loaded[0], &bulk(&new.changes(), 9), name);
        backend.finish().await;
    }
}

#[tokio::test]
async fn a_compaction_written_while_change_sets_arrive_loads_back_as_the_live_state() {
    for (name, backend) in Backend::both().await {
        let store = &*backend.store;
        for seed in 0..12 {
            let mut rng = StdRng::seed_from_u64(100 + seed);
            let tenant = TenantId(Uuid::new_v4());
            let mut world = World::random_shaped(&mut rng, &SHAPE);
            let changes = world.changes();
            write_snapshot(store, tenant, &changes, 1, 16).await;
            let mut live = bulk(&changes, 1);
            for _ in 0..rng.random_range(0..10) {
                change_set(store, tenant, &mut world, &mut live, &mut rng).await;
            }

            // The compaction: each page taken from the live state as it is then,
            // with change sets applied between pages.
            let generation = store.begin_base(tenant).await.unwrap();
            let from = live.revision;
            let mut cursor = ExportCursor::default();
            let mut seq = 0;
            while !cursor.is_done() {
                for _ in 0..rng.random_range(0..3) {
                    change_set(store, tenant, &mut world, &mut live, &mut rng).await;
                }
                let page = live.export(&mut cursor, rng.random_range(1..12));
                if !page.is_empty() {
                    store
                        .write_page(tenant, generation, seq, &page)
                        .await
                        .unwrap();
                    seq += 1;
                }
            }
            let during = live.revision - from;
            let carried = store
                .commit_base(tenant, generation, Base::Compaction { from })
                .await
                .unwrap();
            assert_eq!(
                carried as i64, during,
                "{name}, seed {seed}: the log after the base carries over"
            );
            for _ in 0..rng.random_range(0..5) {
                change_set(store, tenant, &mut world, &mut live, &mut rng).await;
            }
            let loaded = store.load().await.unwrap();
            let stored = loaded.iter().find(|t| t.tenant == tenant).unwrap();
            assert_same(stored, &live, &format!("{name}, seed {seed}"));
        }
        backend.finish().await;
    }
}

#[tokio::test]
async fn a_tenant_stored_in_another_format_is_dropped_to_be_rebuilt() {
    for (name, backend) in Backend::both().await {
        let store = &*backend.store;
        let mut rng = StdRng::seed_from_u64(3);
        let (kept, unreadable) = (TenantId(Uuid::new_v4()), TenantId(Uuid::new_v4()));
        for tenant in [kept, unreadable] {
            let world = World::random_shaped(&mut rng, &SHAPE);
            write_snapshot(store, tenant, &world.changes(), 2, 50).await;
        }
        // A log entry of a format from the future: field 1 (format) = 99.
        let bytes = if backend.cleanup.is_some() {
            format!("'\\x0863'::bytea, '{unreadable}'")
        } else {
            format!("x'0863', x'{}'", unreadable.0.simple())
        };
        let (body, id) = bytes.split_once(", ").unwrap();
        backend
            .execute(&format!(
                "INSERT INTO projection_log (tenant_id, generation, revision, body) \
                 SELECT tenant_id, generation, 3, {body} FROM projection_tenants WHERE tenant_id = {id}"
            ))
            .await;
        let loaded = store.load().await.unwrap();
        let tenants: Vec<TenantId> = loaded.iter().map(|t| t.tenant).collect();
        assert_eq!(tenants, vec![kept], "{name}");
        assert_eq!(
            backend.count("projection_tenants").await,
            1,
            "{name}: dropped"
        );
        backend.finish().await;
    }
}
