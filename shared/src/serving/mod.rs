//! What every Cohort server does the same way, by concern:
//! - this file: the server itself (its layers, limits and accepted sockets) and
//!   server reflection (so grpcurl works without .proto files);
//! - `args.rs`: the serving and process flags, flattened into each service's
//!   settings;
//! - `database.rs`: which database a service opens, from its flags;
//! - `health.rs`: the health service, the graceful stop and the health probe;
//! - `logs.rs`: logging set-up;
//! - `tls.rs`: TLS material.
//!
//! Everything is re-exported here, so callers name `serving::X`.

mod args;
mod database;
mod health;
mod human_format;
mod logs;
mod tls;

pub use args::{defaults, secret, ProcessArgs, ServingArgs};
pub use database::Database;
pub use health::{
    exit_with_probe, health_service, probe_health, shutdown_signal, stop_serving_then_drain,
    EndingHealth,
};
pub use logs::{init_logs_and_traces, init_tracing, LogFormat, LogGuard};
pub use tls::TlsFiles;

use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// Accepted connections with TCP_NODELAY (without it, a response larger than one
/// segment waits ~40 ms on Nagle's algorithm and the peer's delayed ACK) and TCP
/// keepalive, so that dead peers are noticed.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)))
}

/// Server reflection (v1, and v1alpha for older clients such as grpcurl 1.8) over
/// Cohort's contracts, the health service and the `google.rpc` error details, so
/// that grpcurl decodes the details of an error as well. It lists the `served`
/// services (fully qualified names), health and reflection.
#[allow(clippy::type_complexity)]
pub fn reflection_services(
    served: &[&str],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let descriptor_sets = [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_types::pb::FILE_DESCRIPTOR_SET,
    ];
    // Only what this server serves is listed (both services' contracts are in
    // one descriptor set), with the health and reflection services.
    let listed = served.iter().copied().chain([
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]);
    let builder = || {
        let builder = descriptor_sets.iter().fold(
            tonic_reflection::server::Builder::configure(),
            |builder, set| builder.register_encoded_file_descriptor_set(set),
        );
        listed
            .clone()
            .fold(builder, |builder, name| builder.with_service_name(name))
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// How much a server takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Calls in flight at once; one more is refused with RESOURCE_EXHAUSTED.
    pub max_concurrent_calls: usize,
    /// The largest message a call may send or receive.
    pub max_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_calls: 256,
            max_message_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The layers every Cohort server puts in front of its services: one log line per
/// call (outermost, so refused calls are logged too), load shedding,
/// authentication, then the answer to undecodable requests.
pub type ServerLayers = tower::layer::util::Stack<
    crate::malformed::MalformedLayer,
    tower::layer::util::Stack<
        crate::auth::AuthLayer,
        tower::layer::util::Stack<
            crate::shed::ShedLayer,
            tower::layer::util::Stack<crate::call_log::CallLogLayer, tower::layer::util::Identity>,
        >,
    >,
>;

/// A gRPC server configured as every Cohort server is: HTTP/2 keepalive pings, so
/// that dead peers (and their streams) are noticed, one log line per call, load
/// shedding, and authentication. (The client's deadline is honoured by tonic: a
/// call past it is dropped, and with it any transaction it held, which rolls back.)
/// With `tls`, connections are TLS (rustls), optionally with client certificates.
pub fn server(
    auth: crate::auth::Auth,
    limits: Limits,
    tls: Option<&TlsFiles>,
    call_metrics: Option<crate::metrics::CallMetrics>,
) -> anyhow::Result<tonic::transport::Server<ServerLayers>> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.server_config().map_err(anyhow::Error::msg)?)?;
    }
    Ok(builder
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(crate::call_log::CallLogLayer::new(call_metrics.clone()))
        .layer(crate::shed::ShedLayer::new(
            limits.max_concurrent_calls,
            call_metrics,
        ))
        .layer(crate::auth::AuthLayer::new(auth))
        .layer(crate::malformed::MalformedLayer))
}

/// A [`server`] already serving what every Cohort server serves beside its own
/// API: `health` ([`health_service`]), server reflection (listing `served`, the
/// role catalog, health and reflection) and the role catalog
/// (`cohort.catalog.v1.CatalogService`). The caller adds its own services.
pub fn with_common_services(
    mut server: tonic::transport::Server<ServerLayers>,
    health: tonic_health::pb::health_server::HealthServer<EndingHealth>,
    served: &[&str],
) -> anyhow::Result<tonic::transport::server::Router<ServerLayers>> {
    let mut listed = served.to_vec();
    listed.push(crate::catalog_api::SERVICE_NAME);
    let (reflection, reflection_v1alpha) = reflection_services(&listed)?;
    Ok(server
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(crate::catalog_api::CatalogApi::server()))
}
