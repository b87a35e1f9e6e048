//! A directory server for a test: on its own database, restartable on the
//! same address and database.

use super::*;

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
    running: ServerSlot,
    data_dir: Option<PathBuf>,
}

impl DirectoryProcess {
    /// A directory started elsewhere (see [`External`]): this handle neither
    /// stops nor restarts it.
    pub(crate) fn external(addr: SocketAddr) -> Self {
        DirectoryProcess {
            addr,
            auth: Auth::Open,
            tls: None,
            limits: Default::default(),
            feed: Default::default(),
            database: cohort_directory::config::Database::SqliteDir(PathBuf::new()),
            running: ServerSlot::default(),
            data_dir: None,
        }
    }

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
            running: ServerSlot::holding(running),
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
        self.running.stop().await
    }

    /// Kills the server (see [`Running::kill`]); its data stays.
    pub fn kill(&mut self) {
        self.running.kill();
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
