//! An in-process API server for integration tests.
//!
//! [`TestServer::start`] runs `tug-apiserver`'s library on `127.0.0.1:0`
//! with in-memory storage and a temporary data dir, and hands back its URL
//! and admin kubeconfig; dropping it stops the server. No binary, no disk
//! storage, no fixed ports: tests can run many in parallel.

use std::path::PathBuf;

use storage::memory::MemoryStorage;
use tokio::sync::oneshot;

/// A running in-process API server.
pub struct TestServer {
    pub url: String,
    pub kubeconfig: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Start a server on memory storage; it serves until dropped.
    pub async fn start() -> anyhow::Result<TestServer> {
        Self::start_with(std::sync::Arc::new(MemoryStorage::new())).await
    }

    /// Start a server on the given storage (tests that compact, or that
    /// inspect storage directly, keep a handle to it).
    pub async fn start_with(storage: storage::DynStorage) -> anyhow::Result<TestServer> {
        Self::start_configured(storage, |_| {}).await
    }

    /// Start with storage and a chance to adjust the server's config.
    pub async fn start_configured(
        storage: storage::DynStorage,
        configure: impl FnOnce(&mut apiserver::Config),
    ) -> anyhow::Result<TestServer> {
        let dir = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let (stop, stopped) = oneshot::channel::<()>();
        let mut config = apiserver::Config::new(dir.path().to_path_buf());
        configure(&mut config);
        let (running, server) = apiserver::start(config, listener, storage, async {
            let _ = stopped.await;
        })
        .await?;
        tokio::spawn(server);
        Ok(TestServer {
            url: running.url,
            kubeconfig: running.kubeconfig,
            stop: Some(stop),
            _dir: dir,
        })
    }
}

impl TestServer {
    /// A kube-rs client with the admin credentials of this server.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        Ok(kube::Client::try_from(self.config().await?)?)
    }

    /// A client that hands every 429/503/504 straight back: kube-rs's
    /// default client retries those up to 15 times with backoff growing to
    /// minutes, which a test asserting the status itself must not wait for.
    pub async fn client_without_retries(&self) -> anyhow::Result<kube::Client> {
        let mut config = self.config().await?;
        config.default_retry = false;
        Ok(kube::Client::try_from(config)?)
    }

    async fn config(&self) -> anyhow::Result<kube::Config> {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)?;
        Ok(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
