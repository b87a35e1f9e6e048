//! The directory's own metrics, next to the gRPC call metrics every server has
//! ([`cohort_shared::metrics`]); made only when metrics are served:
//!
//! - `cohort_directory_feed_streams{credential}`: feed streams open, by the
//!   credential that opened them (read at each scrape).
//! - `cohort_directory_feed_messages_sent_total{credential}`: feed messages sent
//!   (change sets and their parts, snapshot parts, checkpoints).
//! - `cohort_directory_commits_total`: writes this process committed, one tenant
//!   revision each.
//! - `cohort_directory_tenant_revision{tenant}`: each tenant's latest revision, as
//!   this process knows it (its own commits and, on PostgreSQL, other replicas').
//!   Against the authorization service's `cohort_authz_tenant_revision`, it is the
//!   follower's lag in revisions.
//! - `cohort_directory_db_connections{state="idle"|"in_use"}` and
//!   `cohort_directory_db_max_connections`: the database pool's use.
//! - `cohort_directory_known_users`: the users this process remembers as existing
//!   (PostgreSQL only; about 25 bytes each, see `storage/postgres/known_users.rs`).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast::error::RecvError;

use crate::feed::Places;
use crate::storage::DirectoryStore;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabel {
    credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// The metrics the directory counts as it works; cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct DirectoryMetrics {
    feed_messages: Family<CredentialLabel, Counter>,
    commits: Counter,
    tenant_revisions: Family<TenantLabel, Gauge>,
}

impl DirectoryMetrics {
    /// Adds them to `registry`, with what is read at each scrape: the open feed
    /// streams of `places` and the pool of `store`.
    pub fn register(
        &self,
        registry: &mut Registry,
        places: Places,
        store: Arc<dyn DirectoryStore>,
    ) {
        registry.register(
            "cohort_directory_feed_messages_sent",
            "Feed messages sent, by the credential of the stream",
            self.feed_messages.clone(),
        );
        registry.register(
            "cohort_directory_commits",
            "Writes committed by this process (one tenant revision each)",
            self.commits.clone(),
        );
        registry.register(
            "cohort_directory_tenant_revision",
            "Each tenant's latest revision as this process knows it",
            self.tenant_revisions.clone(),
        );
        registry.register_collector(Box::new(ScrapedCollector { places, store }));
    }

    /// The counter of messages sent on streams of `credential`.
    pub fn feed_messages(&self, credential: &str) -> Counter {
        self.feed_messages
            .get_or_create(&CredentialLabel {
                credential: credential.to_owned(),
            })
            .clone()
    }

    /// Keeps the commit count and the tenant revisions up to date from the
    /// store's commit signal, until the task is aborted.
    pub async fn follow_commits(self, store: Arc<dyn DirectoryStore>) {
        let mut commits = store.commit_signal();
        self.read_heads(store.as_ref()).await;
        loop {
            match commits.recv().await {
                Ok(commit) => {
                    if commit.changes.is_some() {
                        self.commits.inc();
                    }
                    self.raise(&commit.tenant.to_string(), commit.revision);
                }
                // Announcements were missed: the heads say where tenants are.
                Err(RecvError::Lagged(_)) => self.read_heads(store.as_ref()).await,
                Err(RecvError::Closed) => return,
            }
        }
    }

    async fn read_heads(&self, store: &dyn DirectoryStore) {
        match store.tenant_heads(None).await {
            Ok(heads) => {
                for (tenant, revision) in heads {
                    self.raise(&tenant.to_string(), revision);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "metrics: could not read the tenant revisions")
            }
        }
    }

    /// Revisions only go up (announcements of other replicas may come late).
    fn raise(&self, tenant: &str, revision: i64) {
        let gauge = self.tenant_revisions.get_or_create(&TenantLabel {
            tenant: tenant.to_owned(),
        });
        if revision > gauge.get() {
            gauge.set(revision);
        }
    }
}

/// What is read at each scrape rather than counted.
struct ScrapedCollector {
    places: Places,
    store: Arc<dyn DirectoryStore>,
}

impl std::fmt::Debug for ScrapedCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapedCollector").finish_non_exhaustive()
    }
}

impl Collector for ScrapedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut streams = encoder.encode_descriptor(
            "cohort_directory_feed_streams",
            "Feed streams open, by the credential that opened them",
            None,
            MetricType::Gauge,
        )?;
        for (credential, open) in self.places.open_streams() {
            ConstGauge::new(open as i64)
                .encode(streams.encode_family(&CredentialLabel { credential })?)?;
        }
        if let Some(known) = self.store.known_users() {
            let known_users = encoder.encode_descriptor(
                "cohort_directory_known_users",
                "Users this process remembers as existing (so that bulk membership writes need not probe them)",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(known as i64).encode(known_users)?;
        }
        let connections = self.store.connections();
        let mut pool = encoder.encode_descriptor(
            "cohort_directory_db_connections",
            "Database connections open, by state",
            None,
            MetricType::Gauge,
        )?;
        for (state, value) in [
            ("idle", connections.idle),
            ("in_use", connections.open.saturating_sub(connections.idle)),
        ] {
            ConstGauge::new(i64::from(value)).encode(pool.encode_family(&StateLabel { state })?)?;
        }
        ConstGauge::new(i64::from(connections.max)).encode(encoder.encode_descriptor(
            "cohort_directory_db_max_connections",
            "The most database connections the pool opens",
            None,
            MetricType::Gauge,
        )?)
    }
}
