//! The cross-service tests that share nothing process-wide, as one test binary.
//!
//! Each module is one subject (its own `//!` says which). They are linked once
//! rather than once each: every test binary links the whole stack, and thirteen
//! copies cost minutes of linking and gigabytes of disk. The tests that install a
//! global tracing subscriber or set environment variables (`call_logs`, `secrets`,
//! `traces`) stay binaries of their own, declared in Cargo.toml.
//!
//! One module: `cargo test -p cohort-tests --test cross_service cluster::`.

mod auth;
mod cluster;
mod engine_oracle;
mod feed_limits;
mod graceful_stop;
mod histories;
mod lookup_pages;
mod metrics;
mod operability;
mod projection_store;
mod readme;
mod tls;
mod walkthrough;
