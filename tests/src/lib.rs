//! Fixtures for the cross-service tests: the real directory and authorization
//! servers on random ports, each on its own fresh PostgreSQL database (or the
//! embedded SQLite default), stopped cleanly at the end.
//!
//! Layout: `lib.rs` holds the fixtures, `oracle.rs` the reference model of the
//! role semantics; `tests/*.rs` hold the tests.

pub mod oracle;

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

/// A running directory server.
pub struct DirectoryProcess {
    pub addr: SocketAddr,
    /// The credentials it accepts, kept for a restart.
    auth: Auth,
    /// Its TLS material, if it serves TLS (kept for a restart).
    tls: Option<TlsFiles>,
    /// Its limits and feed settings (kept for a restart).
    limits: cohort_shared::serving::Limits,
    feed: cohort_directory::feed::FeedSettings,
    pub database: cohort_directory::config::Database,
    running: Option<Running>,
    data_dir: Option<PathBuf>,
}

impl DirectoryProcess {
    /// Starts a directory on the embedded SQLite default in a new folder.
    pub async fn start() -> anyhow::Result<Self> {
        let data_dir =
            std::env::temp_dir().join(format!("cohort-it-{}", uuid::Uuid::new_v4().simple()));
        let database = cohort_directory::config::Database::SqliteDir(data_dir.clone());
        let mut process = Self::start_on(database, "127.0.0.1:0".parse()?).await?;
        process.data_dir = Some(data_dir);
        Ok(process)
    }

    /// Starts a directory on `database`, listening on `listen`, accepting the test
    /// credential.
    pub async fn start_on(
        database: cohort_directory::config::Database,
        listen: SocketAddr,
    ) -> anyhow::Result<Self> {
        Self::start_with(database, listen, test_auth(Vec::new()), None).await
    }

    /// Starts a directory accepting the given credentials.
    pub async fn start_with(
        database: cohort_directory::config::Database,
        listen: SocketAddr,
        auth: Auth,
        tls: Option<TlsFiles>,
    ) -> anyhow::Result<Self> {
        Self::start_limited(
            database,
            listen,
            auth,
            tls,
            Default::default(),
            Default::default(),
        )
        .await
    }

    /// Starts a directory on the embedded SQLite default in a new folder, with
    /// other limits and feed settings than the defaults.
    pub async fn start_with_limits(
        limits: cohort_shared::serving::Limits,
        feed: cohort_directory::feed::FeedSettings,
    ) -> anyhow::Result<Self> {
        Self::start_configured(test_auth(Vec::new()), limits, feed).await
    }

    /// Starts a directory on the embedded SQLite default in a new folder, with
    /// the given credentials, limits and feed settings.
    pub async fn start_configured(
        auth: Auth,
        limits: cohort_shared::serving::Limits,
        feed: cohort_directory::feed::FeedSettings,
    ) -> anyhow::Result<Self> {
        let data_dir =
            std::env::temp_dir().join(format!("cohort-it-{}", uuid::Uuid::new_v4().simple()));
        let database = cohort_directory::config::Database::SqliteDir(data_dir.clone());
        let mut process =
            Self::start_limited(database, "127.0.0.1:0".parse()?, auth, None, limits, feed).await?;
        process.data_dir = Some(data_dir);
        Ok(process)
    }

    async fn start_limited(
        database: cohort_directory::config::Database,
        listen: SocketAddr,
        auth: Auth,
        tls: Option<TlsFiles>,
        limits: cohort_shared::serving::Limits,
        feed: cohort_directory::feed::FeedSettings,
    ) -> anyhow::Result<Self> {
        let db = database.clone();
        let kept_feed = feed.clone();
        let kept_auth = auth.clone();
        let kept_tls = tls.clone();
        let kept_limits = limits;
        let (addr, running) = spawn_server(move |addr, stop| async move {
            let store = open_store(&db, 8).await?;
            let app = Application::with_store(listen, store, feed, auth)
                .await?
                .with_limits(limits)
                .with_tls(tls);
            let _ = addr.send(app.local_addr());
            app.run_until(async {
                let _ = stop.await;
            })
            .await
        })
        .await?;
        Ok(DirectoryProcess {
            auth: kept_auth,
            tls: kept_tls,
            limits: kept_limits,
            feed: kept_feed,
            addr,
            database,
            running: Some(running),
            data_dir: None,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client presenting the test credential.
    pub async fn client(&self) -> anyhow::Result<DirectoryClient> {
        self.client_with(&test_secret()).await
    }

    /// A client presenting `secret`.
    pub async fn client_with(&self, secret: &str) -> anyhow::Result<DirectoryClient> {
        Ok(DirectoryServiceClient::with_interceptor(
            channel(self.addr).await?,
            bearer(secret),
        ))
    }

    pub async fn feed_with(&self, secret: &str) -> anyhow::Result<FeedClient> {
        Ok(ChangeFeedServiceClient::with_interceptor(
            channel(self.addr).await?,
            bearer(secret),
        ))
    }

    /// Stops the server gracefully (its data stays).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        match self.running.take() {
            Some(running) => running.stop().await,
            None => Ok(()),
        }
    }

    /// Kills the server (see [`Running::kill`]); its data stays.
    pub fn kill(&mut self) {
        if let Some(running) = self.running.take() {
            running.kill();
        }
    }

    /// Starts it again on the same address and database, accepting other
    /// credentials.
    pub async fn restart_with(&mut self, auth: Auth) -> anyhow::Result<()> {
        self.auth = auth;
        self.restart().await
    }

    /// Starts it again on the same address and database.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        let again = Self::start_limited(
            self.database.clone(),
            self.addr,
            self.auth.clone(),
            self.tls.clone(),
            self.limits,
            self.feed.clone(),
        )
        .await?;
        self.running = again.running;
        Ok(())
    }

    /// Stops the server and removes a scratch SQLite folder.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.stop().await?;
        if let Some(dir) = &self.data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(())
    }
}

/// A running authorization server.
pub struct AuthzProcess {
    pub addr: SocketAddr,
    settings: AuthzSettings,
    running: Option<Running>,
}

impl AuthzProcess {
    /// Starts the authorization service following `directory`, with its
    /// projection at `database_url`.
    pub async fn start(directory: &str, database_url: &str) -> anyhow::Result<Self> {
        let mut process = AuthzProcess::start_lazily(directory, database_url)?;
        process.launch().await?;
        Ok(process)
    }

    /// The process, configured but not started.
    fn start_lazily(directory: &str, database_url: &str) -> anyhow::Result<Self> {
        let settings = AuthzSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            directory: directory.to_owned(),
            database_url: Some(database_url.into()),
            max_wait: Duration::from_secs(2),
            directory_token: Some(TEST_SECRET.into()),
            serving: cohort_shared::serving::ServingArgs {
                auth_tokens: Some(format!("test:{TEST_SECRET}").into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Ok(AuthzProcess {
            addr: settings.listen,
            settings,
            running: None,
        })
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let settings = self.settings.clone();
        let (addr, running) = spawn_server(move |addr, stop| async move {
            let app = cohort_authz::startup::Application::build(&settings).await?;
            let _ = addr.send(app.local_addr());
            app.run_until(async {
                let _ = stop.await;
            })
            .await
        })
        .await?;
        self.addr = addr;
        self.running = Some(running);
        Ok(())
    }

    /// A client presenting the test credential.
    pub async fn client(&self) -> anyhow::Result<AuthzClient> {
        self.client_with(&test_secret()).await
    }

    /// A client presenting `secret`.
    pub async fn client_with(&self, secret: &str) -> anyhow::Result<AuthzClient> {
        Ok(AuthzServiceClient::with_interceptor(
            channel(self.addr).await?,
            bearer(secret),
        ))
    }

    /// Starts the authorization service following an https:// directory whose
    /// certificate chains to the CA in `directory_ca`.
    pub async fn start_following_tls(
        directory: &str,
        database_url: &str,
        directory_ca: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let mut process = AuthzProcess::start_lazily(directory, database_url)?;
        process.settings.directory_ca = Some(directory_ca.to_owned());
        process.launch().await?;
        Ok(process)
    }

    /// Starts the authorization service with another message limit
    /// (`--max-message-bytes`), for its API and its feed client alike.
    pub async fn start_with_message_limit(
        directory: &str,
        database_url: &str,
        max_message_bytes: usize,
    ) -> anyhow::Result<Self> {
        Self::start_configured(directory, database_url, |s| {
            s.serving.max_message_bytes = max_message_bytes
        })
        .await
    }

    /// Starts the authorization service reporting NOT_SERVING once its feed has
    /// been lost for longer than `bound` (`--feed-staleness-bound`).
    pub async fn start_with_feed_staleness_bound(
        directory: &str,
        database_url: &str,
        bound: Duration,
    ) -> anyhow::Result<Self> {
        Self::start_configured(directory, database_url, |s| s.feed_staleness_bound = bound).await
    }

    /// Starts the authorization service with the test settings as `configure`
    /// changes them.
    pub async fn start_configured(
        directory: &str,
        database_url: &str,
        configure: impl FnOnce(&mut AuthzSettings),
    ) -> anyhow::Result<Self> {
        let mut process = AuthzProcess::start_lazily(directory, database_url)?;
        configure(&mut process.settings);
        process.launch().await?;
        Ok(process)
    }

    /// Replaces the credentials it accepts (takes effect at the next start).
    pub fn set_auth_tokens(&mut self, tokens: String) {
        self.settings.serving.auth_tokens = Some(tokens.into());
    }

    /// The health of the authorization API.
    pub async fn health(&self) -> anyhow::Result<ServingStatus> {
        let mut health = HealthClient::new(channel(self.addr).await?);
        let reply = health
            .check(HealthCheckRequest {
                service: "cohort.authz.v1.AuthzService".into(),
            })
            .await?;
        Ok(reply.into_inner().status())
    }

    /// Polls health until SERVING (the feed has caught up).
    pub async fn wait_until_serving(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.health().await? != ServingStatus::Serving {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the authorization service never caught up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub async fn stop(&mut self) -> anyhow::Result<()> {
        match self.running.take() {
            Some(running) => running.stop().await,
            None => Ok(()),
        }
    }

    /// Kills the server (see [`Running::kill`]); its stored projection stays.
    pub fn kill(&mut self) {
        if let Some(running) = self.running.take() {
            running.kill();
        }
    }

    /// Stops and starts it again on its stored projection (a new port).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.launch().await
    }
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

/// Both services, each on a fresh PostgreSQL database.
pub struct Cluster {
    pub directory: DirectoryProcess,
    pub authz: AuthzProcess,
    databases: Vec<ScratchDatabase>,
}

impl Cluster {
    /// Both services on fresh databases, or the external deployment the
    /// environment names (see [`External`]).
    pub async fn start() -> anyhow::Result<Self> {
        if let Some(external) = external() {
            let directory = DirectoryProcess {
                addr: external.directory,
                auth: Auth::Open,
                tls: None,
                limits: Default::default(),
                feed: Default::default(),
                database: cohort_directory::config::Database::SqliteDir(PathBuf::new()),
                running: None,
                data_dir: None,
            };
            let authz = AuthzProcess {
                addr: external.authz,
                settings: AuthzSettings::default(),
                running: None,
            };
            authz.wait_until_serving().await?;
            return Ok(Cluster {
                directory,
                authz,
                databases: Vec::new(),
            });
        }
        let directory_db = fresh_directory_database().await?;
        let authz_db = fresh_authz_database().await?;
        let directory = DirectoryProcess::start_on(
            cohort_directory::config::Database::Postgres(directory_db.url().to_owned()),
            "127.0.0.1:0".parse()?,
        )
        .await?;
        let authz = AuthzProcess::start(&directory.endpoint(), authz_db.url()).await?;
        authz.wait_until_serving().await?;
        Ok(Cluster {
            directory,
            authz,
            databases: vec![directory_db, authz_db],
        })
    }

    /// A `cohort-client` session on both services: read-your-writes without
    /// carrying revisions.
    pub fn session(&self) -> anyhow::Result<cohort_client::Client> {
        Ok(cohort_client::Client::connect(
            cohort_client::Config::new(
                self.directory.endpoint(),
                format!("http://{}", self.authz.addr),
            )
            .token(test_secret()),
        )?)
    }

    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.authz.stop().await?;
        self.directory.stop().await?;
        for db in self.databases.drain(..) {
            db.drop_now().await?;
        }
        Ok(())
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
