//! Every row of the scale table in one run, each call next to its own server's
//! health check, and what runs need around them (fresh tenants for writes,
//! waiting for a server to serve).

use std::sync::Arc;
use std::time::Duration;

use cohort_shared::proto::directory::v1 as pb;
use tokio::time::Instant;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::HealthCheckRequest;

use crate::calls::{Call, Context};
use crate::client::{self, Bearer};
use crate::driver::{self, Load, Outcome};
use crate::manifest::Manifest;
use crate::report;

/// What a load says about itself in a table.
pub fn describe(load: &Load) -> String {
    match load.rate {
        Some(rate) => format!(
            "{} conn × {} streams at {rate:.0}/s",
            load.connections, load.streams
        ),
        None => format!("{} conn × {} streams", load.connections, load.streams),
    }
}

/// The run's context: `tenants` fresh tenants for writes (made on `target`, a
/// directory), or the manifest's own.
pub async fn context(
    target: &str,
    bearer: &Bearer,
    manifest: Arc<Manifest>,
    tenants: usize,
) -> anyhow::Result<Context> {
    let mut made = Vec::new();
    if tenants > 0 {
        let mut client = client::connect(target, bearer).await?.directory;
        for i in 0..tenants {
            let reply = client
                .create_tenant(pb::CreateTenantRequest {
                    display_name: format!("Load {i} {}", uuid::Uuid::now_v7().simple()),
                    admin_display_name: "Load Admin".into(),
                    admin_email: "admin@load.test".into(),
                    request_id: String::new(),
                })
                .await?
                .into_inner();
            made.push(reply.tenant.expect("a tenant").id);
        }
    } else {
        made.push(manifest.tenant_id.clone());
    }
    Ok(Context {
        manifest,
        tenants: made,
    })
}

/// Waits until `target` answers SERVING for `service` ("" for the server as a
/// whole); how long that took.
pub async fn wait_serving(
    target: &str,
    service: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Ok(clients) = client::connect(target, &Bearer::new(None)?).await {
            let mut health = clients.health;
            loop {
                match health
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await
                {
                    Ok(reply) if reply.get_ref().status() == ServingStatus::Serving => {
                        return Ok(started.elapsed())
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
                anyhow::ensure!(
                    started.elapsed() < timeout,
                    "{target} not serving after {timeout:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "{target} not serving after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the authorization service at `target` answers at `revision` of
/// `tenant` or later; how long that took.
pub async fn wait_revision(
    target: &str,
    bearer: &Bearer,
    tenant: &str,
    revision: i64,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    use cohort_shared::proto::authz::v1::GetSyncStatusRequest;
    let started = Instant::now();
    loop {
        if let Ok(clients) = client::connect(target, bearer).await {
            let mut authz = clients.authz;
            while let Ok(reply) = authz
                .get_sync_status(GetSyncStatusRequest {
                    tenant_id: tenant.to_owned(),
                })
                .await
            {
                if reply
                    .get_ref()
                    .tenants
                    .iter()
                    .any(|t| t.revision >= revision)
                {
                    return Ok(started.elapsed());
                }
                anyhow::ensure!(
                    started.elapsed() < timeout,
                    "revision {revision} not reached after {timeout:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "revision {revision} not reached after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn measure(
    target: &str,
    bearer: &Bearer,
    call: Call,
    context: &Arc<Context>,
    load: &Load,
    baseline: Option<&Outcome>,
) -> anyhow::Result<Outcome> {
    let outcome = driver::drive(target, bearer, call, context.clone(), load).await?;
    let name = match call {
        Call::Health => format!("health ({target}, baseline)"),
        other => format!("{other:?}"),
    };
    println!(
        "{}",
        report::row(&name, &describe(load), &outcome, baseline)
    );
    Ok(outcome)
}

pub async fn run(
    directory: &str,
    authz: &str,
    bearer: &Bearer,
    manifest: Arc<Manifest>,
    load: &Load,
    only: &[Call],
) -> anyhow::Result<()> {
    let wanted = |call: Call| only.is_empty() || only.contains(&call);
    let context = Arc::new(context(directory, bearer, manifest.clone(), 0).await?);
    println!("{}", report::HEADER);

    let reads = [
        Call::Check,
        Call::EffectiveRoles,
        Call::EffectiveRolesBasic,
        Call::ListPermissions,
        Call::BulkCheck,
        Call::LookupSubjects,
        Call::LookupGroups,
    ];
    if reads.iter().any(|c| wanted(*c)) {
        let health = measure(authz, bearer, Call::Health, &context, load, None).await?;
        for call in reads.into_iter().filter(|c| wanted(*c)) {
            let outcome = measure(authz, bearer, call, &context, load, Some(&health)).await?;
            if matches!(call, Call::LookupSubjects | Call::LookupGroups) {
                // Latency at half the load the server sustains.
                let half = Load {
                    rate: Some(outcome.rps() / 2.0),
                    ..load.clone()
                };
                measure(authz, bearer, call, &context, &half, Some(&health)).await?;
            }
        }
    }

    // Writes at concurrency 8, as the scale work states them.
    let writers = Load {
        connections: 1,
        streams: 8,
        rate: None,
        ..load.clone()
    };
    if wanted(Call::CreateUser) || wanted(Call::AddMembers) {
        let health = measure(directory, bearer, Call::Health, &context, &writers, None).await?;
        if wanted(Call::CreateUser) {
            measure(
                directory,
                bearer,
                Call::CreateUser,
                &context,
                &writers,
                Some(&health),
            )
            .await?;
            let spread = Arc::new(self::context(directory, bearer, manifest.clone(), 8).await?);
            let outcome =
                driver::drive(directory, bearer, Call::CreateUser, spread, &writers).await?;
            println!(
                "{}",
                report::row(
                    "CreateUser, 8 tenants",
                    &describe(&writers),
                    &outcome,
                    Some(&health)
                )
            );
        }
        if wanted(Call::AddMembers) {
            measure(
                directory,
                bearer,
                Call::AddMembers,
                &context,
                &writers,
                Some(&health),
            )
            .await?;
        }
    }
    Ok(())
}
