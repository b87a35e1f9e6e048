//! Change-feed propagation: how long from a write's commit until an open `Watch`
//! stream on the same server delivers it, on PostgreSQL and on SQLite.
//!
//! Run: `cargo bench -p cohort-directory --bench feed_latency`
//! (PostgreSQL at `COHORT_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! One writer adds and removes a member, one write at a time; a subscriber on the
//! same server times each change set from the write call's start to its arrival
//! (an upper bound of commit-to-delivery: it includes the write's own round
//! trip), and separately the write call alone. The safety poll is set to an hour,
//! so every delivery comes from the commit signal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_directory::feed::FeedSettings;
use cohort_directory::startup::Application;
use cohort_directory::storage::postgres::PgStore;
use cohort_directory::storage::sqlite::SqliteStore;
use cohort_directory::storage::DirectoryStore;
use cohort_shared::proto::directory::v1 as pb;
use cohort_shared::proto::directory::v1::change_feed_service_client::ChangeFeedServiceClient;
use cohort_shared::proto::directory::v1::directory_service_client::DirectoryServiceClient;

use cohort_test_support::{ScratchDatabase, ScratchDir};

const WRITES: usize = 500;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let database = ScratchDatabase::create("cohort_bench").await?;
    let pg: Arc<dyn DirectoryStore> = Arc::new(PgStore::connect(database.url(), 8).await?);
    println!("| backend | write call, median | write to delivery, median | p99 | max |");
    println!("|---|---|---|---|---|");
    let result = measure("PostgreSQL", pg).await;
    database.drop_now().await?;
    result?;

    let dir = ScratchDir::create("cohort-bench")?;
    let sqlite: Arc<dyn DirectoryStore> = Arc::new(SqliteStore::open_in(dir.path(), 8).await?);
    measure("SQLite", sqlite).await
}

async fn measure(backend: &str, store: Arc<dyn DirectoryStore>) -> anyhow::Result<()> {
    let feed = FeedSettings {
        poll_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let app = Application::with_store(
        "127.0.0.1:0".parse()?,
        store,
        feed,
        cohort_shared::auth::Auth::Open,
    )
    .await?;
    let endpoint = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    let channel = tonic::transport::Endpoint::from_shared(endpoint)?
        .connect()
        .await?;
    let mut directory = DirectoryServiceClient::new(channel.clone());
    let mut watcher = ChangeFeedServiceClient::new(channel);

    let created = directory
        .create_tenant(pb::CreateTenantRequest {
            display_name: "Bench".into(),
            admin_display_name: "Admin".into(),
            admin_email: "admin@bench.test".into(),
            request_id: String::new(),
        })
        .await?
        .into_inner();
    let tenant = created.tenant.unwrap().id;
    let user = created.admin.unwrap().id;
    let group = directory
        .create_group(pb::CreateGroupRequest {
            tenant_id: tenant.clone(),
            display_name: "Org".into(),
            is_organization: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut stream = watcher
        .watch(pb::WatchRequest {
            cursors: vec![pb::TenantCursor {
                tenant_id: tenant.clone(),
                revision: group.revision,
            }],
            all_tenants: false,
        })
        .await?
        .into_inner();

    let mut write_calls = Vec::with_capacity(WRITES);
    let mut deliveries = Vec::with_capacity(WRITES);
    for i in 0..WRITES {
        let started = Instant::now();
        let revision = if i % 2 == 0 {
            let request = pb::AddGroupMembersRequest {
                tenant_id: tenant.clone(),
                group_id: group.group.as_ref().unwrap().id.clone(),
                user_ids: vec![user.clone()],
            };
            directory
                .add_group_members(request)
                .await?
                .into_inner()
                .revision
        } else {
            let request = pb::RemoveGroupMembersRequest {
                tenant_id: tenant.clone(),
                group_id: group.group.as_ref().unwrap().id.clone(),
                user_ids: vec![user.clone()],
            };
            directory
                .remove_group_members(request)
                .await?
                .into_inner()
                .revision
        };
        write_calls.push(started.elapsed());
        loop {
            let message = stream.message().await?.expect("the feed stays open");
            if let Some(pb::watch_response::Event::Change(event)) = message.event {
                anyhow::ensure!(
                    event.revision == revision,
                    "out of order: {} != {revision}",
                    event.revision
                );
                deliveries.push(started.elapsed());
                break;
            }
        }
    }
    write_calls.sort();
    deliveries.sort();
    let at = |samples: &[Duration], q: f64| {
        samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]
    };
    println!(
        "| {backend} | {:.2?} | {:.2?} | {:.2?} | {:.2?} |",
        at(&write_calls, 0.5),
        at(&deliveries, 0.5),
        at(&deliveries, 0.99),
        deliveries[deliveries.len() - 1]
    );
    Ok(())
}
