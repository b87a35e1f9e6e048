//! Fixtures for the cross-service tests: the real directory and authorization
//! servers on random ports, each on its own fresh PostgreSQL database (or the
//! embedded SQLite default), stopped cleanly at the end.
//!
//! Layout: `directory.rs` and `authz.rs` start, stop and restart one server
//! each, `cluster.rs` both; this file holds what they share (the in-process
//! server task, credentials, channels) and small helpers for tests; `oracle.rs`
//! is the reference model of the role semantics; `tests/*.rs` hold the tests.

mod authz;
mod cluster;
mod directory;
pub mod oracle;

pub use authz::AuthzProcess;
pub use cluster::Cluster;
pub use directory::DirectoryProcess;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use cohort_authz::config::Settings as AuthzSettings;
use cohort_directory::startup::{open_store, Application};
use cohort_shared::auth::{Auth, Credential};
use cohort_shared::proto::authz::v1::authz_service_client::AuthzServiceClient;
use cohort_shared::proto::directory::v1::change_feed_service_client::ChangeFeedServiceClient;
use cohort_shared::proto::directory::v1::directory_service_client::DirectoryServiceClient;
use cohort_shared::serving::TlsFiles;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

pub use cohort_test_support::{admin_database_url, ScratchDatabase, ScratchDir};

/// A new PostgreSQL database with the directory's schema (copied from a template
/// migrated once), dropped with its guard (also when the test fails).
pub async fn fresh_directory_database() -> anyhow::Result<ScratchDatabase> {
    ScratchDatabase::migrated(
        "cohort_it",
        &cohort_directory::storage::postgres::MIGRATIONS,
    )
    .await
}

/// A new PostgreSQL database with the authorization service's schema, as
/// [`fresh_directory_database`].
pub async fn fresh_authz_database() -> anyhow::Result<ScratchDatabase> {
    ScratchDatabase::migrated("cohort_it", &cohort_authz::storage::postgres::MIGRATIONS).await
}

/// A server running on a runtime of its own, so that killing it ends every task it
/// spawned (connections, feed streams) at once, as a killed process would.
struct Running {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Starts a server on its own runtime: `serve` builds it there, reports its
/// address, and serves until the stop signal.
async fn spawn_server<F, Fut>(serve: F) -> anyhow::Result<(SocketAddr, Running)>
where
    F: FnOnce(oneshot::Sender<SocketAddr>, oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (addr_tx, addr_rx) = oneshot::channel();
    let (shutdown, stop) = oneshot::channel();
    let task = runtime.spawn(serve(addr_tx, stop));
    match addr_rx.await {
        Ok(addr) => Ok((
            addr,
            Running {
                runtime: Some(runtime),
                shutdown,
                task,
            },
        )),
        Err(_) => {
            let failure = task.await?;
            runtime.shutdown_background();
            Err(failure
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the server stopped before it listened")))
        }
    }
}

impl Running {
    async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        let result = (&mut self.task).await;
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        result?
    }

    /// Ends the server at once: its runtime goes, with the listener, every
    /// connection and stream, and nothing is flushed.
    fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A process handle's server, while it runs: stopping or killing it twice, or
/// one that never started, does nothing.
#[derive(Default)]
struct ServerSlot(Option<Running>);

impl ServerSlot {
    fn holding(running: Running) -> Self {
        Self(Some(running))
    }

    /// Stops the server gracefully.
    async fn stop(&mut self) -> anyhow::Result<()> {
        match self.0.take() {
            Some(running) => running.stop().await,
            None => Ok(()),
        }
    }

    /// Kills the server (see [`Running::kill`]).
    fn kill(&mut self) {
        if let Some(running) = self.0.take() {
            running.kill();
        }
    }
}

/// The credential every test server accepts (unrestricted).
pub const TEST_SECRET: &str = "cohort-test-secret-0123456789";

/// Services already running elsewhere (a compose deployment, a `cohort-stack`),
/// named by `COHORT_TEST_DIRECTORY` and `COHORT_TEST_AUTHZ` (`host:port`), with
/// the unrestricted secret they accept in `COHORT_TEST_TOKEN`. The cross-service
/// tests then run against them; tests that must start, kill or reconfigure
/// servers skip themselves, saying so.
#[derive(Debug, Clone)]
pub struct External {
    pub directory: SocketAddr,
    pub authz: SocketAddr,
    pub secret: String,
}

/// The external deployment named by the environment, if any.
pub fn external() -> Option<External> {
    use std::net::ToSocketAddrs;
    let resolve = |var: &str| -> Option<SocketAddr> {
        std::env::var(var).ok()?.to_socket_addrs().ok()?.next()
    };
    Some(External {
        directory: resolve("COHORT_TEST_DIRECTORY")?,
        authz: resolve("COHORT_TEST_AUTHZ")?,
        secret: std::env::var("COHORT_TEST_TOKEN").ok()?,
    })
}

/// The unrestricted secret of the servers under test.
pub fn test_secret() -> String {
    external()
        .map(|e| e.secret)
        .unwrap_or_else(|| TEST_SECRET.to_owned())
}

/// True (and says so) when a test that needs servers of its own must skip.
pub fn skip_against_external(test: &str) -> bool {
    let skip = external().is_some();
    if skip {
        eprintln!("{test}: skipped: it starts, kills or reconfigures servers, which an external deployment does not allow");
    }
    skip
}

/// The credentials of the test servers: the unrestricted test credential, plus
/// any `extra` (for instance one limited to some tenants).
pub fn test_auth(extra: Vec<Credential>) -> Auth {
    let mut credentials = vec![Credential::new("test", TEST_SECRET, None)];
    credentials.extend(extra);
    Auth::required(credentials)
}

pub use cohort_client::Bearer;

/// The credential `secret` on every call.
pub fn bearer(secret: &str) -> Bearer {
    Bearer::new(Some(secret)).expect("a test secret is ASCII")
}

pub type Authed = InterceptedService<Channel, Bearer>;
pub type DirectoryClient = DirectoryServiceClient<Authed>;
pub type FeedClient = ChangeFeedServiceClient<Authed>;
pub type AuthzClient = AuthzServiceClient<Authed>;

pub async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?,
    )
}

/// Creates a tenant named `name` (a word: its lower case names the first
/// admin's email domain), with its first admin, Ada.
pub async fn create_tenant(
    directory: &mut DirectoryClient,
    name: &str,
) -> Result<cohort_shared::proto::directory::v1::CreateTenantResponse, tonic::Status> {
    use cohort_shared::proto::directory::v1 as dir;
    let created = directory
        .create_tenant(dir::CreateTenantRequest {
            display_name: name.to_owned(),
            admin_display_name: "Ada".into(),
            admin_email: format!("ada@{}.test", name.to_lowercase()),
            request_id: String::new(),
        })
        .await?;
    Ok(created.into_inner())
}

/// A `Check` of `permission` on the whole tenant, read as `consistency` asks
/// (None: the service's latest).
pub fn tenant_check(
    tenant: &str,
    user: &str,
    permission: &str,
    consistency: Option<cohort_shared::proto::authz::v1::consistency::Requirement>,
) -> cohort_shared::proto::authz::v1::CheckRequest {
    use cohort_shared::proto::authz::v1 as authz;
    authz::CheckRequest {
        tenant_id: tenant.to_owned(),
        user_id: user.to_owned(),
        permission: permission.to_owned(),
        resource: Some(authz::Resource {
            resource: Some(authz::resource::Resource::Tenant(true)),
        }),
        consistency: consistency.map(|requirement| authz::Consistency {
            requirement: Some(requirement),
        }),
        explain: false,
    }
}

/// Log output captured in memory, for a test's tracing subscriber
/// (`tracing_subscriber::fmt().with_writer(captured.clone())`).
#[derive(Clone, Default)]
pub struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("log output is UTF-8")
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The fields a failed call names in its `BadRequest` details.
pub fn field_violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}
