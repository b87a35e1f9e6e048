//! Cohort's directory service.
//!
//! Layout, by layer:
//! - [`domain`]: validated types (ids, names, emails, role sets from the shared
//!   catalog), resources and change events. No I/O, no proto types.
//! - [`storage`]: one trait per aggregate and the [`storage::Outbox`], together
//!   [`storage::DirectoryStore`], with PostgreSQL and SQLite implementations (the
//!   shared SQL in `storage/sql/`, a file per aggregate); every write is one
//!   transaction with its outbox event. The business rules it checks are in
//!   `domain::rules`.
//! - [`feed`]: the change feed: per-subscriber watchers that stream the outbox
//!   (snapshot, live changes, checkpoints) with backpressure.
//! - [`grpc`]: the tonic services: converts requests into domain types, calls the
//!   store, converts results back; one mapping from errors to `tonic::Status`.
//! - [`metrics`]: the directory's own Prometheus metrics (feed, commits, pool).
//! - [`config`] and [`startup`]: typed settings from flags and environment, and the
//!   [`startup::Application`] that binds its listener and serves until stopped.

pub mod config;
pub mod domain;
pub mod feed;
pub mod grpc;
pub mod metrics;
pub mod startup;
pub mod storage;
