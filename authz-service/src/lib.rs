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
//! Still to come (see the issue): the feed follower and its persisted projection,
//! the gRPC service, configuration and start-up.

pub mod domain;

/// The address the service will listen on by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50052";
