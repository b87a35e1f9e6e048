//! Listing at scale: a tenant with 100,000 groups, 1,000,000 users and 1,000,000
//! memberships on PostgreSQL, listed through the real gRPC server.
//!
//! Run: `cargo bench -p cohort-directory --bench list_scale`
//! (PostgreSQL at `COHORT_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; sizes with `COHORT_BENCH_USERS`
//! and `COHORT_BENCH_GROUPS`).
//!
//! The data is seeded with set-based SQL (the API would take hours for a million
//! users); every figure is then measured through gRPC, next to the standard health
//! check on the same client and connection, so the ratio says what listing costs
//! beyond a round trip on this machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_directory::startup::Application;
use cohort_directory::storage::postgres::PgStore;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use cohort_shared::proto::directory::v1::directory_service_client::DirectoryServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use cohort_test_support::ScratchDatabase;

const SAMPLES: usize = 200;

fn env_number(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let users = env_number("COHORT_BENCH_USERS", 1_000_000);
    let groups = env_number("COHORT_BENCH_GROUPS", 100_000);
    let database = ScratchDatabase::create("cohort_bench").await?;
    let result = run(database.url(), users, groups).await;
    database.drop_now().await?;
    result
}

async fn run(url: &str, users: i64, groups: i64) -> anyhow::Result<()> {
    let store = PgStore::connect(url, 8).await?;
    let started = Instant::now();
    let tenant = seed(store.pool(), users, groups).await?;
    eprintln!(
        "seeded {users} users, {groups} groups, {users} memberships in {:.1?}",
        started.elapsed()
    );

    let app = Application::with_store(
        "127.0.0.1:0".parse()?,
        Arc::new(store),
        Default::default(),
        cohort_shared::auth::Auth::Open,
    )
    .await?;
    let endpoint = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    let channel = tonic::transport::Endpoint::from_shared(endpoint)?
        .connect()
        .await?;
    let mut directory = DirectoryServiceClient::new(channel.clone());
    let health = HealthClient::new(channel);

    let t = tenant.to_string();
    let some_org = first_group(&mut directory, &t, true).await?;
    let later_token = later_page_token(&mut directory, &t).await?;

    let baseline = measure(|| {
        let mut health = health.clone();
        async move {
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            Ok(())
        }
    })
    .await?;
    println!("| call | median | p99 | median / health check |");
    println!("|---|---|---|---|");
    report("health check (baseline)", &baseline, &baseline);

    let cases: Vec<(&str, pb::ListUsersRequest)> = vec![
        (
            "ListUsers, first page of 50",
            pb::ListUsersRequest {
                tenant_id: t.clone(),
                ..Default::default()
            },
        ),
        (
            "ListUsers, page of 50 after 5,000 users",
            pb::ListUsersRequest {
                tenant_id: t.clone(),
                page_token: later_token.clone(),
                ..Default::default()
            },
        ),
        (
            "ListUsers, role filter (LMS AUTHOR, 1 in 10)",
            pb::ListUsersRequest {
                tenant_id: t.clone(),
                role: catalog_pb::Role::LmsAuthor as i32,
                ..Default::default()
            },
        ),
        (
            "ListUsers, group filter",
            pb::ListUsersRequest {
                tenant_id: t.clone(),
                group_id: some_org.clone(),
                ..Default::default()
            },
        ),
        (
            "ListUsers, text query (common)",
            pb::ListUsersRequest {
                tenant_id: t.clone(),
                query: "user 12".into(),
                ..Default::default()
            },
        ),
    ];
    for (name, request) in cases {
        let samples = measure(|| {
            let (mut client, request) = (directory.clone(), request.clone());
            async move {
                client.list_users(request).await?;
                Ok(())
            }
        })
        .await?;
        report(name, &samples, &baseline);
    }

    let group_cases: Vec<(&str, pb::ListGroupsRequest)> = vec![
        (
            "ListGroups, first page of 50",
            pb::ListGroupsRequest {
                tenant_id: t.clone(),
                ..Default::default()
            },
        ),
        (
            "ListGroups, organizations only",
            pb::ListGroupsRequest {
                tenant_id: t.clone(),
                organizations_only: true,
                ..Default::default()
            },
        ),
        (
            "ListGroups, subgroups of one organization",
            pb::ListGroupsRequest {
                tenant_id: t.clone(),
                parent_id: some_org.clone(),
                ..Default::default()
            },
        ),
    ];
    for (name, request) in group_cases {
        let samples = measure(|| {
            let (mut client, request) = (directory.clone(), request.clone());
            async move {
                client.list_groups(request).await?;
                Ok(())
            }
        })
        .await?;
        report(name, &samples, &baseline);
    }

    let members = measure(|| {
        let mut client = directory.clone();
        let request = pb::ListGroupMembersRequest {
            tenant_id: t.clone(),
            group_id: some_org.clone(),
            include_subgroups: true,
            ..Default::default()
        };
        async move {
            client.list_group_members(request).await?;
            Ok(())
        }
    })
    .await?;
    report(
        "ListGroupMembers, organization with its subgroups",
        &members,
        &baseline,
    );
    Ok(())
}

/// Seeds one tenant with set-based SQL: `groups / 100` organizations, the rest
/// subgroups spread over them; every user in one group; one user in ten an LMS
/// author. Sizes are integers of ours, so they are written into the SQL; the tenant
/// is bound.
async fn seed(pool: &sqlx::PgPool, users: i64, groups: i64) -> anyhow::Result<uuid::Uuid> {
    let tenant = uuid::Uuid::now_v7();
    let orgs = (groups / 100).max(1);
    let subgroups = groups - orgs;
    let statements = [
        "INSERT INTO tenants (id, display_name, revision, create_time) VALUES ($1, 'Scale', 1, now())".to_owned(),
        format!(
            "INSERT INTO groups (tenant_id, id, parent_id, display_name, name_key, is_organization, create_time, update_time, revision)
             SELECT $1, gen_random_uuid(), NULL, 'Org ' || i, 'org ' || i, true, now(), now(), 1 FROM generate_series(1, {orgs}) i"
        ),
        format!(
            "INSERT INTO groups (tenant_id, id, parent_id, display_name, name_key, is_organization, create_time, update_time, revision)
             SELECT $1, gen_random_uuid(), o.id, 'Team ' || i, 'team ' || i, false, now(), now(), 1
             FROM generate_series(1, {subgroups}) i
             JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM groups WHERE tenant_id = $1) o ON o.n = i % {orgs}"
        ),
        "UPDATE groups g SET subgroup_count = c.n FROM
           (SELECT parent_id, count(*) AS n FROM groups WHERE tenant_id = $1 AND parent_id IS NOT NULL GROUP BY parent_id) c
         WHERE g.tenant_id = $1 AND g.id = c.parent_id"
            .to_owned(),
        format!(
            "INSERT INTO users (tenant_id, id, display_name, email, email_key, search_text, roles, suspended, create_time, update_time, revision)
             SELECT $1, gen_random_uuid(), 'User ' || i, 'user' || i || '@scale.test', 'user' || i || '@scale.test',
                    'user ' || i || chr(10) || 'user' || i || '@scale.test',
                    CASE WHEN i % 10 = 0 THEN 'GLOBAL_ADMIN_USER,LMS_AUTHOR,LMS_USER' ELSE 'GLOBAL_ADMIN_USER' END,
                    false, now(), now(), 1
             FROM generate_series(1, {users}) i"
        ),
        "INSERT INTO user_roles (tenant_id, user_id, role)
         SELECT u.tenant_id, u.id, r FROM users u, unnest(string_to_array(u.roles, ',')) r WHERE u.tenant_id = $1"
            .to_owned(),
        format!(
            "INSERT INTO memberships (tenant_id, group_id, user_id, join_revision, join_time)
             SELECT $1, g.id, u.id, 1, now()
             FROM (SELECT id, row_number() OVER () AS n FROM users WHERE tenant_id = $1) u
             JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM groups WHERE tenant_id = $1) g
               ON g.n = u.n % {groups}"
        ),
        "UPDATE groups g SET member_count = c.n FROM
           (SELECT group_id, count(*) AS n FROM memberships WHERE tenant_id = $1 GROUP BY group_id) c
         WHERE g.tenant_id = $1 AND g.id = c.group_id"
            .to_owned(),
    ];
    for sql in &statements {
        sqlx::query(sql).bind(tenant).execute(pool).await?;
    }
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(tenant)
}

async fn first_group(
    client: &mut DirectoryServiceClient<Channel>,
    tenant: &str,
    orgs: bool,
) -> anyhow::Result<String> {
    let request = pb::ListGroupsRequest {
        tenant_id: tenant.into(),
        organizations_only: orgs,
        page_size: 1,
        ..Default::default()
    };
    Ok(client.list_groups(request).await?.into_inner().groups[0]
        .id
        .clone())
}

/// A page token 5,000 users into the tenant (keyset: any depth costs one seek).
async fn later_page_token(
    client: &mut DirectoryServiceClient<Channel>,
    tenant: &str,
) -> anyhow::Result<String> {
    let mut token = String::new();
    for _ in 0..5 {
        let request = pb::ListUsersRequest {
            tenant_id: tenant.into(),
            page_size: 1000,
            page_token: token,
            ..Default::default()
        };
        token = client
            .list_users(request)
            .await?
            .into_inner()
            .next_page_token;
    }
    Ok(token)
}

async fn measure<F, Fut>(mut call: F) -> anyhow::Result<Vec<Duration>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for _ in 0..20 {
        call().await?;
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let started = Instant::now();
        call().await?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples)
}

fn report(name: &str, samples: &[Duration], baseline: &[Duration]) {
    let median = samples[samples.len() / 2];
    let p99 = samples[samples.len() * 99 / 100];
    let ratio = median.as_secs_f64() / baseline[baseline.len() / 2].as_secs_f64();
    println!("| {name} | {median:.2?} | {p99:.2?} | {ratio:.1}x |");
}
