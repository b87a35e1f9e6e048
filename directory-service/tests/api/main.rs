//! The directory's API tests: every rule, every error path, through the real gRPC
//! server, on PostgreSQL and on SQLite (each test runs once per backend).

mod helpers;

mod administrators;
mod batch_users;
mod concurrency;
mod feed;
mod groups;
mod limits;
mod memberships;
mod outbox;
mod settings;
mod tenants;
mod tree_model;
mod users;
