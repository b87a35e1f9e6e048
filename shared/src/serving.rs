//! What every Cohort server does the same way: server reflection (so grpcurl works
//! without .proto files), accepted-socket options, the shutdown signal, and
//! logging set-up.

use std::io::IsTerminal;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tracing_subscriber::EnvFilter;

use crate::log_writer::{BatchedLogGuard, BatchedWriter};
use secrecy::{ExposeSecret, SecretString};

/// A setting that holds a secret (credentials, database URLs with passwords):
/// kept as a [`SecretString`], which `Debug` prints redacted.
pub fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw))
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Keeps the log writer (and the trace exporter, when traces are on) running;
/// dropping it sends what is still queued. Hold it for as long as the process
/// logs (for `main`, until it returns).
#[must_use = "logs and spans queued when the guard drops are sent then; drop it last"]
pub struct LogGuard {
    // Fields drop in order: spans first (their export may log), then the logs.
    _traces: Option<crate::telemetry::TraceExporter>,
    _logs: BatchedLogGuard,
}

/// Human-readable or JSON lines on stderr, filtered by `RUST_LOG` (default
/// `info`), and OpenTelemetry traces when the standard `OTEL_EXPORTER_OTLP_*`
/// variables ask for them ([`crate::telemetry`]; `service_name` is the default
/// `service.name`). A second call (tests) keeps the first subscriber.
///
/// A call formats its line on its own thread; a background thread writes the
/// lines, in batches, so that a busy server does not wait on stderr (a write per
/// line under a lock cost a third of the throughput of small calls), nor wake a
/// thread per line ([`crate::log_writer`]). Should the writer fall behind by
/// 32 MiB, lines are dropped (and counted) rather than calls held up.
pub fn init_tracing(format: LogFormat, service_name: &str) -> anyhow::Result<LogGuard> {
    let export = crate::telemetry::TraceExport::from_env(service_name)?;
    init_logs_and_traces(format, export.as_ref())
}

/// [`init_tracing`] with the trace export given rather than read from the
/// environment.
pub fn init_logs_and_traces(
    format: LogFormat,
    export: Option<&crate::telemetry::TraceExport>,
) -> anyhow::Result<LogGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, logs) = BatchedWriter::new(std::io::stderr());
    let ansi = std::io::stderr().is_terminal();
    let Some(export) = export else {
        // One global filter: a disabled line costs a cached callsite check.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_ansi(ansi);
        let _ = match format {
            LogFormat::Human => builder.try_init(),
            LogFormat::Json => builder.json().try_init(),
        };
        return Ok(LogGuard {
            _traces: None,
            _logs: logs,
        });
    };
    use tracing_subscriber::prelude::*;
    let (traces, trace_layer) = crate::telemetry::TraceExporter::start(export)?;
    // Each output its own filter, so that RUST_LOG does not turn spans off. The
    // call spans stay out of the log lines: the call line names the call already,
    // and formatting a dozen span fields per call would cost more than the line.
    let filter = filter.add_directive(
        format!("{}=off", crate::telemetry::TRACE_TARGET)
            .parse()
            .expect("a valid directive"),
    );
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let lines = match format {
        LogFormat::Human => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(trace_layer)
        .try_init();
    tracing::info!(endpoint = %export.endpoint, "exporting traces (OTLP over gRPC)");
    Ok(LogGuard {
        _traces: Some(traces),
        _logs: logs,
    })
}

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
pub fn health_service(
    stopped: tokio::sync::watch::Receiver<bool>,
) -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<EndingHealth>,
) {
    let reporter = tonic_health::server::HealthReporter::new();
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
/// `services` (and the server as a whole) NOT_SERVING, so that probes and load
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
    for service in services.iter().copied().chain([""]) {
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

/// Where a server's TLS material lives (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// When set, clients may present a certificate signed by this CA, and it is
    /// verified; `require_client_cert` makes it mandatory.
    pub client_ca: Option<std::path::PathBuf>,
    pub require_client_cert: bool,
}

impl TlsFiles {
    /// The settings, when both a certificate and a key are given; an error naming
    /// the setting when only one is, or a file cannot be read.
    pub fn from_settings(
        cert: &Option<std::path::PathBuf>,
        key: &Option<std::path::PathBuf>,
        client_ca: &Option<std::path::PathBuf>,
        require_client_cert: bool,
    ) -> Result<Option<TlsFiles>, String> {
        match (cert, key) {
            (None, None) if client_ca.is_none() && !require_client_cert => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: client_ca.clone(),
                require_client_cert,
            })),
            _ => {
                Err("--tls-cert and --tls-key go together (and --tls-client-ca needs both)".into())
            }
        }
    }

    /// The server's TLS configuration.
    pub fn server_config(&self) -> Result<tonic::transport::ServerTlsConfig, String> {
        let read = |path: &std::path::Path, setting: &str| {
            std::fs::read(path).map_err(|e| format!("{setting} {}: {e}", path.display()))
        };
        let identity = tonic::transport::Identity::from_pem(
            read(&self.cert, "--tls-cert")?,
            read(&self.key, "--tls-key")?,
        );
        let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(read(
                    ca,
                    "--tls-client-ca",
                )?))
                .client_auth_optional(!self.require_client_cert);
        }
        Ok(config)
    }
}

/// The value every flag of `T` defaults to, ignoring the environment: where a
/// program that embeds a service (the stack, the tests) starts its settings,
/// named field by field, so that its own `COHORT_*` variables (meant for it, or
/// for another process) cannot leak into the service. The defaults stay where
/// the flags declare them.
pub fn defaults<T: clap::Args>() -> T {
    let command = T::augment_args(clap::Command::new("defaults"))
        .mut_args(|arg| arg.env(None::<&'static str>));
    let matches = command
        .try_get_matches_from(["defaults"])
        .expect("every flag has a default or is optional");
    T::from_arg_matches(&matches).expect("the defaults parse")
}

/// The serving options every Cohort server takes (flattened into each service's
/// settings): limits, TLS and the callers' credentials.
#[derive(Debug, Clone, clap::Args)]
pub struct ServingArgs {
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP), for
    /// example 127.0.0.1:9464; not served when unset.
    #[arg(long, env = "COHORT_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// How long a stopping server keeps serving after its health turned
    /// NOT_SERVING (at SIGTERM), so that load balancers move callers elsewhere
    /// before it stops taking calls; for example 5s behind a load balancer.
    #[arg(long, env = "COHORT_SHUTDOWN_DRAIN", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_drain: Duration,

    /// Calls in flight at once; one more is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "COHORT_MAX_CONCURRENT_CALLS", default_value_t = 256)]
    pub max_concurrent_calls: usize,

    /// The largest message a call may send or receive, in bytes (at least 64 KiB).
    /// Give both services the same value: the directory cuts its feed messages to
    /// half of it, and the authorization service takes feed messages up to it.
    #[arg(long, env = "COHORT_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(65_536..=(1 << 31)))]
    pub max_message_bytes: usize,

    /// TLS certificate (PEM) to serve with; with --tls-key, connections are TLS.
    #[arg(long, env = "COHORT_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "COHORT_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,

    /// CA (PEM) whose client certificates are accepted and verified.
    #[arg(long, env = "COHORT_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<std::path::PathBuf>,

    /// Refuse clients without a certificate from --tls-client-ca.
    #[arg(long, env = "COHORT_TLS_REQUIRE_CLIENT_CERT")]
    pub tls_require_client_cert: bool,

    /// Credentials of the services that may call, `name:secret[:tenant,...]`,
    /// separated by `;` or spaces. Without any, the development credential of
    /// --dev-token-file is accepted.
    #[arg(long, env = "COHORT_AUTH_TOKENS", hide_env_values = true, value_parser = secret)]
    pub auth_tokens: Option<SecretString>,

    /// Where the development credential (`dev`) is kept when no credentials are
    /// configured (default: `dev-token` in the service's data folder). It is
    /// generated once, written with mode 0600, and reused at every start, so a
    /// pasted token keeps working; services given the same file accept the same
    /// credential (and the authorization service presents it to the directory).
    #[arg(long, env = "COHORT_DEV_TOKEN_FILE")]
    pub dev_token_file: Option<std::path::PathBuf>,
}

impl Default for ServingArgs {
    /// The flags' defaults, without the environment ([`defaults`]).
    fn default() -> Self {
        defaults()
    }
}

impl ServingArgs {
    /// What the server takes on.
    pub fn limits(&self) -> Limits {
        Limits {
            max_concurrent_calls: self.max_concurrent_calls,
            max_message_bytes: self.max_message_bytes,
        }
    }

    /// The TLS settings, if any; a half-given pair is an error naming the settings.
    pub fn tls(&self) -> anyhow::Result<Option<TlsFiles>> {
        TlsFiles::from_settings(
            &self.tls_cert,
            &self.tls_key,
            &self.tls_client_ca,
            self.tls_require_client_cert,
        )
        .map_err(anyhow::Error::msg)
    }

    /// The configured credentials; an invalid one is an error naming the setting.
    /// A setting that is empty (as an unset variable in a compose file gives)
    /// counts as none.
    pub fn credentials(&self) -> anyhow::Result<Vec<crate::auth::Credential>> {
        match self.auth_tokens.as_ref().map(|t| t.expose_secret().trim()) {
            None | Some("") => Ok(Vec::new()),
            Some(raw) => crate::auth::Credential::parse_list(raw)
                .map_err(|e| anyhow::anyhow!("COHORT_AUTH_TOKENS / --auth-tokens: {e}")),
        }
    }

    /// The development credential, when no credentials are configured: read
    /// from --dev-token-file (`default_file` without it), or generated there.
    pub fn dev_credential(
        &self,
        default_file: &std::path::Path,
    ) -> anyhow::Result<Option<crate::auth::Credential>> {
        if !self.credentials()?.is_empty() {
            return Ok(None);
        }
        let file = self.dev_token_file.as_deref().unwrap_or(default_file);
        crate::auth::Credential::dev_kept_in(file).map(Some)
    }

    /// How the server authenticates: the configured credentials or, without any,
    /// the development credential (a server never runs open), announced with the
    /// command that uses it.
    pub fn auth(&self, default_dev_file: &std::path::Path) -> anyhow::Result<crate::auth::Auth> {
        let mut credentials = self.credentials()?;
        if let Some(dev) = self.dev_credential(default_dev_file)? {
            let file = self.dev_token_file.as_deref().unwrap_or(default_dev_file);
            // The secret itself is never logged (logs travel to aggregators);
            // the command reads it from its file.
            tracing::warn!(
                file = %file.display(),
                "no credentials configured (--auth-tokens): accepting the development credential \
                 kept in {0}; call with: grpcurl -plaintext -H \"authorization: Bearer $(cat {0})\" \
                 <address> list",
                file.display()
            );
            credentials.push(dev);
        }
        Ok(crate::auth::Auth::required(credentials))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[command(flatten)]
        serving: ServingArgs,
    }

    /// The flags read the environment; the defaults an embedding program starts
    /// from do not. (This variable is read by no other test of this crate.)
    #[test]
    fn defaults_ignore_the_environment() {
        std::env::set_var("COHORT_MAX_CONCURRENT_CALLS", "3");
        let from_flags = Flags::try_parse_from(["flags"]).unwrap();
        let defaults = ServingArgs::default();
        std::env::remove_var("COHORT_MAX_CONCURRENT_CALLS");
        assert_eq!(from_flags.serving.max_concurrent_calls, 3);
        assert_eq!(defaults.max_concurrent_calls, 256);
        assert_eq!(defaults.max_message_bytes, 4 * 1024 * 1024);
        assert!(defaults.auth_tokens.is_none());
    }
}
