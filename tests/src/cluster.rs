//! Both services for a test, the authorization service following the directory.

use super::*;

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
            let directory = DirectoryProcess::external(external.directory);
            let authz = AuthzProcess::external(external.authz);
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
