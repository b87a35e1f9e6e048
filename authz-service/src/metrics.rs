//! The authorization service's own metrics, read from the projection at each
//! scrape (nothing is counted on the hot path):
//!
//! - `cohort_authz_feed_connected`: 1 while the directory's feed is open.
//! - `cohort_authz_caught_up`: 1 once the feed has caught up after start.
//! - `cohort_authz_tenants`, and `cohort_authz_users`, `cohort_authz_groups`,
//!   `cohort_authz_memberships` summed over tenants: the projection's size.
//! - `cohort_authz_tenant_revision{tenant}`: the revision each tenant is served at.
//! - `cohort_authz_tenant_staleness_seconds{tenant}`: how long ago the directory
//!   last vouched that this revision was its latest (the bound a
//!   `minimize_latency` read may be behind by); absent until it first has.
//!
//! And what the follower counts as it works ([`FollowerMetrics`]):
//!
//! - `cohort_authz_change_propagation_seconds`: from a change set's commit in the
//!   directory (its clock) to its being applied here (this one's): the
//!   follower's lag in seconds, as a histogram.
//! - `cohort_authz_snapshots_applied_total` and `cohort_authz_snapshot_seconds`:
//!   tenant resyncs, and how long each took from its first message to serving.
//! - `cohort_authz_feed_losses_total`: times the feed was lost (and reopened with
//!   backoff).
//!
//! The lag in revisions is the directory's `cohort_directory_tenant_revision`
//! minus `cohort_authz_tenant_revision`, per tenant.

use std::sync::Arc;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::projection::Projection;

/// What the follower counts; cloning shares them.
#[derive(Clone, Debug)]
pub struct FollowerMetrics {
    pub propagation_seconds: Histogram,
    pub snapshots: Counter,
    pub snapshot_seconds: Histogram,
    pub feed_losses: Counter,
}

impl Default for FollowerMetrics {
    fn default() -> Self {
        FollowerMetrics {
            // From a millisecond (same host, idle) to a minute (a long resync).
            propagation_seconds: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ]),
            snapshots: Counter::default(),
            snapshot_seconds: Histogram::new([
                0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ]),
            feed_losses: Counter::default(),
        }
    }
}

impl FollowerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "cohort_authz_change_propagation",
            "From a change set's commit in the directory to its being applied here",
            Unit::Seconds,
            self.propagation_seconds.clone(),
        );
        registry.register(
            "cohort_authz_snapshots_applied",
            "Tenant snapshots (resyncs) applied",
            self.snapshots.clone(),
        );
        registry.register_with_unit(
            "cohort_authz_snapshot",
            "How long a tenant snapshot took, from its first message to serving",
            Unit::Seconds,
            self.snapshot_seconds.clone(),
        );
        registry.register(
            "cohort_authz_feed_losses",
            "Times the directory's feed was lost",
            self.feed_losses.clone(),
        );
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

/// Reads the projection at each scrape.
pub struct ProjectionCollector {
    projection: Arc<Projection>,
}

impl std::fmt::Debug for ProjectionCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionCollector")
            .finish_non_exhaustive()
    }
}

impl ProjectionCollector {
    pub fn new(projection: Arc<Projection>) -> Self {
        ProjectionCollector { projection }
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for ProjectionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let projection = &self.projection;
        gauge(
            &mut encoder,
            "cohort_authz_feed_connected",
            "1 while the directory's change feed is open",
            projection.connected().into(),
        )?;
        gauge(
            &mut encoder,
            "cohort_authz_caught_up",
            "1 once the feed has caught up after start-up",
            projection.is_synced().into(),
        )?;
        let tenants = projection.tenant_ids();
        let (mut users, mut groups, mut memberships) = (0, 0, 0);
        let mut revisions = Vec::with_capacity(tenants.len());
        for tenant in &tenants {
            if let Some(state) = projection.tenant(*tenant) {
                let state = state.read().expect("not poisoned");
                let size = state.size();
                users += size.users;
                groups += size.groups;
                memberships += size.memberships;
                revisions.push((*tenant, state.revision));
            }
        }
        gauge(
            &mut encoder,
            "cohort_authz_tenants",
            "Tenants in the projection",
            tenants.len() as i64,
        )?;
        gauge(
            &mut encoder,
            "cohort_authz_users",
            "Users in the projection, all tenants",
            users as i64,
        )?;
        gauge(
            &mut encoder,
            "cohort_authz_groups",
            "Groups in the projection, all tenants",
            groups as i64,
        )?;
        gauge(
            &mut encoder,
            "cohort_authz_memberships",
            "Memberships in the projection, all tenants",
            memberships as i64,
        )?;

        let mut family = encoder.encode_descriptor(
            "cohort_authz_tenant_revision",
            "The directory revision each tenant is served at",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, revision) in &revisions {
            let label = TenantLabel {
                tenant: tenant.to_string(),
            };
            ConstGauge::new(*revision).encode(family.encode_family(&label)?)?;
        }

        let now = SystemTime::now();
        let mut family = encoder.encode_descriptor(
            "cohort_authz_tenant_staleness",
            "Time since the directory last vouched that the tenant's revision was its latest",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (tenant, _) in &revisions {
            let Some(vouched) = projection.vouched(*tenant) else {
                continue;
            };
            let seconds = now
                .duration_since(vouched)
                .unwrap_or_default()
                .as_secs_f64();
            let label = TenantLabel {
                tenant: tenant.to_string(),
            };
            ConstGauge::new(seconds).encode(family.encode_family(&label)?)?;
        }
        Ok(())
    }
}
