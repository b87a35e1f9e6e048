//! Health and stopping: the health service whose streams end at a stop, the
//! graceful stop (NOT_SERVING, drain, stop), the shutdown signal and the
//! `--health-probe` client.

use std::time::Duration;

/// Completes on Ctrl-C or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

/// The gRPC health service, whose `Watch` streams end (with a last NOT_SERVING)
/// once `stopped` turns true: a server stops gracefully only when every stream
/// has ended, and a load balancer watching health would otherwise hold it open
/// for ever. Give it the signal that the server has stopped taking calls.
///
/// The catalog, which every server serves beside its API
/// ([`super::with_common_services`]) and which is compiled in, is SERVING from
/// the start; the service sets its own API's status.
pub async fn health_service(
    stopped: tokio::sync::watch::Receiver<bool>,
) -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<EndingHealth>,
) {
    let reporter = tonic_health::server::HealthReporter::new();
    reporter
        .set_service_status(
            crate::catalog_api::SERVICE_NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let inner = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
    (
        reporter,
        tonic_health::pb::health_server::HealthServer::new(EndingHealth { inner, stopped }),
    )
}

/// tonic-health's service, with `Watch` streams that end at a stop
/// ([`health_service`]).
pub struct EndingHealth {
    inner: tonic_health::server::HealthService,
    stopped: tokio::sync::watch::Receiver<bool>,
}

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for EndingHealth {
    async fn check(
        &self,
        request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        self.inner.check(request).await
    }

    type WatchStream = std::pin::Pin<
        Box<
            dyn futures::Stream<Item = Result<tonic_health::pb::HealthCheckResponse, tonic::Status>>
                + Send,
        >,
    >;

    async fn watch(
        &self,
        request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        use futures::StreamExt;
        let statuses = self.inner.watch(request).await?.into_inner();
        let mut stopped = self.stopped.clone();
        let stopping = async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        };
        let last = tonic_health::pb::HealthCheckResponse {
            status: tonic_health::pb::health_check_response::ServingStatus::NotServing as i32,
        };
        Ok(tonic::Response::new(Box::pin(
            statuses
                .take_until(stopping)
                .chain(futures::stream::once(async move { Ok(last) })),
        )))
    }
}

/// The start of a graceful stop. When `signal` completes, health reports each of
/// `services`, the catalog and the server as a whole NOT_SERVING, so that probes and load
/// balancers stop sending calls here; after `drain` (time for them to notice,
/// while calls are still served) this completes, and the server stops taking
/// calls and finishes those in flight.
pub async fn stop_serving_then_drain(
    signal: impl std::future::Future<Output = ()>,
    health: &tonic_health::server::HealthReporter,
    services: &[&str],
    drain: Duration,
) {
    signal.await;
    for service in services
        .iter()
        .copied()
        .chain([crate::catalog_api::SERVICE_NAME, ""])
    {
        health
            .set_service_status(service, tonic_health::ServingStatus::NotServing)
            .await;
    }
    if !drain.is_zero() {
        tracing::info!(
            ?drain,
            "stopping: health reports NOT_SERVING; calls are still served until the drain ends"
        );
        tokio::time::sleep(drain).await;
    }
}

/// Asks the gRPC health service at `addr` whether `service` is serving: for
/// container health checks (`--health-probe`), with no extra binary in the image.
pub async fn probe_health(addr: std::net::SocketAddr, service: &str) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    // A wildcard listen address is probed on the loopback.
    let host = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let probe = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{host}"))
            .map_err(|e| format!("{host}: {e}"))?
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {host}: {e}"))?;
        let reply = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map_err(|status| {
                format!("{host} answered {:?}: {}", status.code(), status.message())
            })?;
        match reply.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(format!(
                "{service} is {} at {host}{}",
                other.as_str_name(),
                if service.contains("authz") {
                    " (it serves once it has caught up with the directory's feed; see its log)"
                } else {
                    ""
                }
            )),
        }
    };
    tokio::time::timeout(Duration::from_secs(3), probe)
        .await
        .unwrap_or_else(|_| Err(format!("{host} did not answer within 3 s")))
}

/// The end of a `--health-probe` run: says what it found, exits 0 when serving.
pub fn exit_with_probe(service: &str, probed: Result<(), String>) -> ! {
    match probed {
        Ok(()) => {
            println!("{service}: SERVING");
            std::process::exit(0)
        }
        Err(why) => {
            println!("unhealthy: {why}");
            std::process::exit(1)
        }
    }
}
