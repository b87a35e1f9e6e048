//! Cohort's shared crate: the serving plumbing both servers use, and what they
//! must agree on. The generated API code and the role catalog are crates of
//! their own (`cohort-api`, `cohort-catalog`, which clients can take alone),
//! re-exported here.
//!
//! - [`proto`]: the code generated from `proto/` (the `cohort-api` crate,
//!   re-exported).
//! - [`catalog`]: the role catalog (tools, roles, permissions, compatibility), the
//!   one definition both services use (the `cohort-catalog` crate, re-exported).
//! - [`catalog_api`]: the catalog served over gRPC (`cohort.catalog.v1.CatalogService`).
//! - [`convert`]: conversions between catalog types and their proto enums.
//! - [`auth`]: bearer credentials per calling service, tenant restrictions.
//! - [`call_log`]: one log line per call, request ids across services.
//! - [`malformed`]: undecodable requests answered as INVALID_ARGUMENT.
//! - [`page_token`]: opaque, request-bound page tokens (both services).
//! - [`metrics`]: Prometheus metrics and the listener that serves them.
//! - [`shed`]: load shedding (a bound on calls in flight).
//! - [`serving`]: what every server does alike (flags, the database it opens,
//!   reflection, sockets, shutdown, logs).
//! - [`telemetry`]: OpenTelemetry traces (off unless an OTLP endpoint is set).
//! - [`log_writer`]: the log output, written out in batches by a background thread.

pub mod auth;
pub mod call_log;
pub mod catalog_api;
pub mod log_writer;
pub mod malformed;
pub mod metrics;
pub mod page_token;
pub mod serving;
pub mod shed;
pub mod telemetry;

/// Generated gRPC code, one module per proto package: the `cohort-api` crate,
/// which clients can depend on alone.
pub use cohort_api as proto;

/// The role catalog: the `cohort-catalog` crate, which depends on nothing of the
/// serving stack.
pub use cohort_catalog as catalog;

/// Conversions between catalog types and their proto enums (the catalog crate's
/// `proto` feature).
pub use cohort_catalog::proto as convert;
