//! The application: opens the stored projection and loads it into memory, binds
//! its own listener, follows the directory's feed, and serves the authorization
//! API, health (NOT_SERVING until the feed has caught up) and reflection until a
//! shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cohort_shared::proto::authz::v1::authz_service_server::AuthzServiceServer;
use cohort_shared::serving;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tonic::server::NamedService;

use cohort_shared::auth::Auth;

use crate::compaction::Compactor;
use crate::config::{Database, Settings};
use crate::domain::TenantId;
use crate::follower::{self, Follower};
use crate::grpc::AuthzApi;
use crate::metrics::{FollowerMetrics, ProjectionCollector};
use crate::projection::Projection;
use crate::storage::postgres::PgProjection;
use crate::storage::sqlite::SqliteProjection;
use crate::storage::ProjectionStore;
use crate::upstream::Upstream;

pub struct Application {
    listener: TcpListener,
    /// Where Prometheus metrics are served, when they are.
    metrics_listener: Option<TcpListener>,
    store: Arc<dyn ProjectionStore>,
    projection: Arc<Projection>,
    compactor: Arc<Compactor>,
    directory: Upstream,
    max_wait: Duration,
    feed_staleness_bound: Duration,
    /// How long it serves on, NOT_SERVING, once a stop begins.
    shutdown_drain: Duration,
    auth: Auth,
    limits: cohort_shared::serving::Limits,
    tls: Option<cohort_shared::serving::TlsFiles>,
}

/// Opens the configured projection store and runs its migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn ProjectionStore>> {
    Ok(match settings.database()? {
        Database::Postgres(url) => Arc::new(
            PgProjection::connect(&url)
                .await
                .context("opening the PostgreSQL projection")?,
        ),
        Database::Sqlite(url) => Arc::new(
            SqliteProjection::connect(&url)
                .await
                .context("opening the SQLite projection")?,
        ),
        Database::SqliteDir(dir) => Arc::new(
            SqliteProjection::open_in(&dir)
                .await
                .with_context(|| format!("opening the SQLite projection in {}", dir.display()))?,
        ),
    })
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let store = open_store(settings).await?;
        Self::with_store(settings, store).await
    }

    /// Loads the stored projection and binds the listener.
    pub async fn with_store(
        settings: &Settings,
        store: Arc<dyn ProjectionStore>,
    ) -> anyhow::Result<Self> {
        let started = std::time::Instant::now();
        let loaded = store.load().await.context("loading the projection")?;
        let tallies: Vec<(TenantId, u64, u64)> = loaded
            .iter()
            .map(|t| (t.tenant, t.base_changes, t.log_changes))
            .collect();
        let memberships: usize = loaded.iter().map(|t| t.state.size().memberships).sum();
        tracing::info!(
            tenants = loaded.len(),
            memberships,
            elapsed = ?started.elapsed(),
            "loaded the projection"
        );
        let projection = Arc::new(Projection::new(
            loaded.into_iter().map(|t| (t.tenant, t.state)).collect(),
        ));
        // The pages read and the bulk build's buffers are free now.
        tokio::task::spawn_blocking(crate::memory::return_freed_memory);
        let compactor = Compactor::new(store.clone(), projection.clone(), tallies);
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding --listen {}", settings.listen))?;
        let metrics_listener =
            cohort_shared::metrics::bind(settings.serving.metrics_listen).await?;
        // Without a token of its own for the directory, the service presents its
        // development credential: given the directory's --dev-token-file, the two
        // work together with no set-up (the compose stack does this).
        let dev_token_file = settings.data_dir.join("dev-token");
        let directory_token = match settings
            .directory_token
            .as_ref()
            .map(ExposeSecret::expose_secret)
        {
            Some(token) if !token.trim().is_empty() => Some(token.to_owned()),
            _ => settings
                .serving
                .dev_credential(&dev_token_file)?
                .map(|dev| dev.secret().to_owned()),
        };
        Ok(Application {
            listener,
            metrics_listener,
            store,
            projection,
            compactor,
            directory: Upstream::new(settings.directory.clone(), directory_token)
                .with_ca(settings.directory_ca.as_deref())?,
            max_wait: settings.max_wait,
            feed_staleness_bound: settings.feed_staleness_bound,
            shutdown_drain: settings.serving.shutdown_drain,
            auth: settings.serving.auth(&dev_token_file)?,
            limits: settings.serving.limits(),
            tls: settings.serving.tls()?,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address metrics are served on, when they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    /// Serves until `shutdown` completes; in-flight calls finish first.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        // Health watches end when the server stops taking calls (else its
        // graceful stop would wait on them for ever).
        let (stopped, stopped_signal) = tokio::sync::watch::channel(false);
        // The service of its own API: reported in health, stopped, reflected.
        const API: [&str; 1] = [<AuthzServiceServer<AuthzApi> as NamedService>::NAME];
        let (health_reporter, health_service) = serving::health_service(stopped_signal).await;
        health_reporter
            .set_not_serving::<AuthzServiceServer<AuthzApi>>()
            .await;
        // The catalog (compiled in) serves from the start, caught up or not:
        // `health_service` says so.

        let (closing, closing_signal) = tokio::sync::watch::channel(false);
        let follower_metrics = FollowerMetrics::default();
        let follower = tokio::spawn(follower::follow(
            Follower {
                directory: self.directory.clone(),
                max_message_bytes: self.limits.max_message_bytes,
                store: self.store.clone(),
                projection: self.projection.clone(),
                compactor: self.compactor.clone(),
                metrics: follower_metrics.clone(),
            },
            closing_signal,
        ));
        let health = tokio::spawn(report_health(
            health_reporter.clone(),
            self.projection.clone(),
            self.feed_staleness_bound,
        ));
        let projection = self.projection.clone();
        let give_back = tokio::spawn(crate::memory::after_bursts(
            move || projection.applied_count(),
            crate::memory::return_freed_memory,
        ));
        // At a stop, health stops following the feed and says NOT_SERVING.
        let following_health = health.abort_handle();
        let drain = self.shutdown_drain;
        let shutdown = async move {
            let signal = async {
                shutdown.await;
                following_health.abort();
            };
            serving::stop_serving_then_drain(signal, &health_reporter, &API, drain).await;
            let _ = stopped.send(true);
        };

        let addr = self.local_addr();
        let projection = self.projection.clone();
        let (call_metrics, metrics_server) =
            cohort_shared::metrics::spawn(self.metrics_listener, |registry| {
                registry.register_collector(Box::new(ProjectionCollector::new(projection)));
                follower_metrics.register(registry);
            });

        tracing::info!(%addr, directory = %self.directory.url, "authorization service listening");
        let api = AuthzApi::new(self.projection, self.directory, self.max_wait)?;
        let served = serving::with_common_services(
            serving::server(self.auth, self.limits, self.tls.as_ref(), call_metrics)?,
            health_service,
            &API,
        )?
        .add_service(
            AuthzServiceServer::new(api)
                .max_decoding_message_size(self.limits.max_message_bytes)
                .max_encoding_message_size(self.limits.max_message_bytes),
        )
        .serve_with_incoming_shutdown(serving::incoming(self.listener), shutdown)
        .await;
        // The follower stops only now, after the calls in flight: a read waiting
        // for a revision the directory is about to commit still gets it, instead
        // of waiting out its deadline on a feed that was cut first. Those waits end
        // by themselves (the call's deadline, or --max-wait), so this is bounded.
        health.abort();
        give_back.abort();
        let _ = closing.send(true);
        let _ = follower.await;
        metrics_server.stop().await;
        served?;
        tracing::info!("authorization service stopped");
        Ok(())
    }

    /// Serves until SIGTERM or Ctrl-C; for a process that exits after.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        // The projection is stored, and the process exits next: freeing a large
        // one allocation by allocation took longer than all the rest of the
        // shutdown (1.6 s of `free` at 3M memberships), so it is left to the OS.
        let projection = self.projection.clone();
        let stopped = self.run_until(serving::shutdown_signal()).await;
        std::mem::forget(projection);
        stopped
    }
}

/// Keeps the API's health up to date: NOT_SERVING until the feed has caught up
/// after start-up, and again while it has been lost for longer than `bound`
/// (`Duration::ZERO`: never for a lost feed), so that a load balancer prefers a
/// replica that is up to date. Checked every 100 ms: cheaper than making every
/// feed event wake it, and quick enough for a probe.
async fn report_health(
    reporter: tonic_health::server::HealthReporter,
    projection: Arc<Projection>,
    bound: Duration,
) {
    let mut serving = false;
    loop {
        let lost = !bound.is_zero() && projection.feed_lost_longer_than(bound);
        let now_serving = projection.is_synced() && !lost;
        if now_serving != serving {
            serving = now_serving;
            if serving {
                reporter.set_serving::<AuthzServiceServer<AuthzApi>>().await;
            } else {
                tracing::warn!(
                    bound = ?bound,
                    "the directory's feed has been lost for longer than --feed-staleness-bound: reporting NOT_SERVING until it has caught up"
                );
                reporter
                    .set_not_serving::<AuthzServiceServer<AuthzApi>>()
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
