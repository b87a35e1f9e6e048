//! Cohort's authorization service (skeleton).
//!
//! It will follow the directory's change feed, keep its projection in its own
//! database, and answer `cohort.authz.v1.AuthzService` (effective roles, checks,
//! reverse lookups) from an in-memory index. The contract is in
//! `proto/cohort/authz/v1/`; the role catalog it resolves roles with is
//! `cohort_shared::catalog`.
//!
//! Planned layout, by layer: `domain/` (the effective-role resolution, a pure
//! function of the projected state), `index/` (the in-memory index), `storage/`
//! (projection and checkpoints, PostgreSQL and SQLite), `feed/` (the directory
//! client), `grpc/`, `config.rs`, `startup.rs`.

/// The address the service will listen on by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50052";
