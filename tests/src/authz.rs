//! An authorization server for a test, following a directory: restartable,
//! with its projection kept or fresh.

use super::*;

/// A running authorization server.
pub struct AuthzProcess {
    pub addr: SocketAddr,
    settings: AuthzSettings,
    running: ServerSlot,
}

impl AuthzProcess {
    /// An authorization service started elsewhere (see [`External`]): this
    /// handle neither stops nor restarts it.
    pub(crate) fn external(addr: SocketAddr) -> Self {
        AuthzProcess {
            addr,
            settings: AuthzSettings::default(),
            running: ServerSlot::default(),
        }
    }

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
            running: ServerSlot::default(),
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
        self.running = ServerSlot::holding(running);
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
        self.running.stop().await
    }

    /// Kills the server (see [`Running::kill`]); its stored projection stays.
    pub fn kill(&mut self) {
        self.running.kill();
    }

    /// Stops and starts it again on its stored projection (a new port).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        self.launch().await
    }
}
