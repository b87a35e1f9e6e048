//! Cohort's authorization service.
//!
//! It follows the directory's change feed, keeps its projection, and answers
//! `cohort.authz.v1.AuthzService` (effective roles, checks, reverse lookups) from
//! memory. Layout, by layer:
//! - [`domain`]: the projected state of a tenant (interned ids) and the pure
//!   functions that answer from it: `resolve` (effective roles, DOMAIN.md's
//!   inherited-role rules), `check` and the lookups, which share one decision
//!   procedure that also writes the explanation.
//!
//! - [`storage`]: the persisted projection (one trait; PostgreSQL and SQLite): a
//!   base in pages and a log of change sets, each with its checkpoint.
//! - [`compaction`]: rewrites a tenant's stored base from memory when its log
//!   grows long, in the background.
//! - [`projection`]: the in-memory state every answer comes from, with waits for
//!   a revision (read-your-writes).
//! - [`follower`]: follows the directory's feed (the directory's proto types stop
//!   there), reconnecting with backoff.
//! - [`upstream`]: the directory's address and the credential presented to it.
//! - [`grpc`]: the tonic service, shaped like the directory's: handlers, one
//!   error mapping (with `ErrorInfo`), the wait for a revision, conversions and
//!   page tokens, each in its file.
//! - [`memory`]: freed memory given back to the OS after loads and resyncs.
//! - [`metrics`]: the projection's own Prometheus metrics (the call metrics are
//!   `cohort_shared::metrics`').
//! - [`config`] and [`startup`]: settings and the application that binds its
//!   listener and serves until stopped.

pub mod compaction;
pub mod config;
pub mod domain;
pub mod follower;
pub mod grpc;
pub mod memory;
pub mod metrics;
pub mod projection;
pub mod startup;
pub mod storage;
pub mod upstream;
