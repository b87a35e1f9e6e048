//! Fixtures for the cross-service tests: real servers on random ports, on a fresh
//! embedded database, stopped cleanly at the end.
//!
//! Layout: `lib.rs` holds the fixtures; `tests/*.rs` hold the tests.

use std::net::SocketAddr;
use std::path::PathBuf;

use cohort_directory::startup::{open_store, Application};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running directory server on a random port, with its data in a scratch folder.
pub struct DirectoryProcess {
    pub addr: SocketAddr,
    data_dir: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl DirectoryProcess {
    /// Starts a directory on the embedded SQLite default in a new folder.
    pub async fn start() -> anyhow::Result<Self> {
        let data_dir =
            std::env::temp_dir().join(format!("cohort-it-{}", uuid::Uuid::new_v4().simple()));
        let database = cohort_directory::config::Database::SqliteDir(data_dir.clone());
        let store = open_store(&database, 4).await?;
        let app =
            Application::with_store("127.0.0.1:0".parse()?, store, Default::default()).await?;
        let addr = app.local_addr();
        let (shutdown, stop) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stop.await;
        }));
        Ok(DirectoryProcess {
            addr,
            data_dir,
            shutdown: Some(shutdown),
            server: Some(server),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server gracefully and removes its data.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await??;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        Ok(())
    }
}
