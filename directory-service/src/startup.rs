//! The application: opens the store, binds its own listener (so a test can ask for
//! port 0 and read the real one), and serves the directory, the gRPC health service
//! and reflection until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cohort_shared::proto::directory::v1::change_feed_service_server::ChangeFeedServiceServer;
use cohort_shared::proto::directory::v1::directory_service_server::DirectoryServiceServer;
use tokio::net::TcpListener;
use tonic::server::NamedService;

use cohort_shared::auth::Auth;
use cohort_shared::serving::{Limits, TlsFiles};

use crate::config::{Database, Settings};
use crate::feed::{self, FeedSettings};
use crate::grpc::{DirectoryApi, FeedApi};
use crate::metrics::DirectoryMetrics;
use crate::storage::postgres::PgStore;
use crate::storage::sqlite::SqliteStore;
use crate::storage::DirectoryStore;

/// A built directory, bound to its address, ready to serve.
pub struct Application {
    listener: TcpListener,
    /// Where Prometheus metrics are served, when they are.
    metrics_listener: Option<TcpListener>,
    store: Arc<dyn DirectoryStore>,
    feed: FeedSettings,
    auth: Auth,
    limits: Limits,
    tls: Option<TlsFiles>,
    /// How long it serves on, NOT_SERVING, once a stop begins.
    shutdown_drain: Duration,
}

impl Application {
    /// Opens (and migrates) the database and binds the listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        // Settings first: a bad one stops the start before anything is opened.
        let tls = settings.serving.tls()?;
        let auth = settings
            .serving
            .auth(&settings.data_dir.join("dev-token"))?;
        let store = open_store(&settings.database()?, settings.max_connections).await?;
        let app = Self::with_store(settings.listen, store, settings.feed(), auth).await?;
        let metrics_listener =
            cohort_shared::metrics::bind(settings.serving.metrics_listen).await?;
        Ok(app
            .with_limits(settings.serving.limits())
            .with_tls(tls)
            .with_metrics_listener(metrics_listener)
            .with_shutdown_drain(settings.serving.shutdown_drain))
    }

    /// Binds the listener for an already opened store.
    pub async fn with_store(
        listen: SocketAddr,
        store: Arc<dyn DirectoryStore>,
        feed: FeedSettings,
        auth: Auth,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding --listen {listen}"))?;
        Ok(Application {
            listener,
            metrics_listener: None,
            store,
            feed,
            auth,
            limits: Limits::default(),
            tls: None,
            shutdown_drain: Duration::ZERO,
        })
    }

    /// Serves on for `drain` after health turned NOT_SERVING at a stop
    /// ([`cohort_shared::serving::stop_serving_then_drain`]).
    pub fn with_shutdown_drain(mut self, drain: Duration) -> Self {
        self.shutdown_drain = drain;
        self
    }

    /// Serves over TLS (None: plaintext).
    pub fn with_tls(mut self, tls: Option<TlsFiles>) -> Self {
        self.tls = tls;
        self
    }

    /// Serves Prometheus metrics on this listener (None: not at all).
    pub fn with_metrics_listener(mut self, listener: Option<TcpListener>) -> Self {
        self.metrics_listener = listener;
        self
    }

    /// The address metrics are served on, when they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    /// Serves with other limits than the defaults.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The address actually bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes; in-flight calls finish first and open
    /// feed streams are closed.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        // Feed streams and health watches never end on their own; they are ended
        // when the server stops taking calls (after the drain: followers keep up
        // until then), so that its graceful stop does not wait on them forever.
        let (closing, closing_signal) = tokio::sync::watch::channel(false);
        // The services of its own API: reported in health, stopped, reflected.
        const API: [&str; 2] = [
            <DirectoryServiceServer<DirectoryApi> as NamedService>::NAME,
            <ChangeFeedServiceServer<FeedApi> as NamedService>::NAME,
        ];
        let (health_reporter, health_service) =
            cohort_shared::serving::health_service(closing_signal.clone()).await;
        health_reporter
            .set_serving::<DirectoryServiceServer<DirectoryApi>>()
            .await;
        health_reporter
            .set_serving::<ChangeFeedServiceServer<FeedApi>>()
            .await;
        let compaction = tokio::spawn(feed::compact_periodically(
            self.store.clone(),
            self.feed.retention,
        ));

        let drain = self.shutdown_drain;
        let shutdown = async move {
            cohort_shared::serving::stop_serving_then_drain(
                shutdown,
                &health_reporter,
                &API,
                drain,
            )
            .await;
            let _ = closing.send(true);
        };

        let addr = self.local_addr();
        let feed_api = FeedApi::new(
            self.store.clone(),
            FeedSettings {
                message_bytes: self.limits.max_message_bytes,
                ..self.feed
            },
            closing_signal,
        );
        let directory_metrics = self
            .metrics_listener
            .is_some()
            .then(DirectoryMetrics::default);
        let (call_metrics, metrics_server) =
            cohort_shared::metrics::spawn(self.metrics_listener, |registry| {
                if let Some(metrics) = &directory_metrics {
                    metrics.register(registry, feed_api.places(), self.store.clone());
                }
            });
        let following_commits = directory_metrics
            .clone()
            .map(|metrics| tokio::spawn(metrics.follow_commits(self.store.clone())));
        let feed_api = feed_api.with_metrics(directory_metrics);

        tracing::info!(%addr, "directory service listening");
        let served = cohort_shared::serving::with_common_services(
            cohort_shared::serving::server(
                self.auth,
                self.limits,
                self.tls.as_ref(),
                call_metrics,
            )?,
            health_service,
            &API,
        )?
        .add_service(
            DirectoryServiceServer::new(DirectoryApi::new(self.store.clone()))
                .max_decoding_message_size(self.limits.max_message_bytes)
                .max_encoding_message_size(self.limits.max_message_bytes),
        )
        .add_service(
            // The feed cuts its messages by the same limit the server applies.
            ChangeFeedServiceServer::new(feed_api)
                .max_decoding_message_size(self.limits.max_message_bytes)
                .max_encoding_message_size(self.limits.max_message_bytes),
        )
        .serve_with_incoming_shutdown(cohort_shared::serving::incoming(self.listener), shutdown)
        .await;
        compaction.abort();
        if let Some(task) = following_commits {
            task.abort();
        }
        metrics_server.stop().await;
        served?;
        tracing::info!("directory service stopped");
        Ok(())
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(cohort_shared::serving::shutdown_signal())
            .await
    }
}

/// Opens the configured database and runs its migrations.
pub async fn open_store(
    database: &Database,
    max_connections: u32,
) -> anyhow::Result<Arc<dyn DirectoryStore>> {
    Ok(match database {
        Database::Postgres(url) => Arc::new(
            PgStore::connect(url, max_connections)
                .await
                .context("opening the PostgreSQL database")?,
        ),
        Database::Sqlite(url) => Arc::new(
            SqliteStore::connect(url, max_connections)
                .await
                .context("opening the SQLite database")?,
        ),
        Database::SqliteDir(dir) => Arc::new(
            SqliteStore::open_in(dir, max_connections)
                .await
                .with_context(|| format!("opening the SQLite database in {}", dir.display()))?,
        ),
    })
}
