//! What the controller integration tests share: an in-process API server,
//! a client for it, the named controllers running against it, and polling.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use test_support::TestServer;
use tugboat_controller_manager::context::{Context, Settings};
use tugboat_controller_manager::controllers::CONTROLLERS;

pub struct Cluster {
    pub server: TestServer,
    pub client: kube::Client,
    pub ctx: Context,
}

/// An API server with `controllers` (upstream names) running against it.
pub async fn start(controllers: &[&str]) -> Cluster {
    start_with(controllers, Settings::default()).await
}

pub async fn start_with(controllers: &[&str], settings: Settings) -> Cluster {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let ctx = Context::new(client.clone(), settings, "controller-manager");
    for name in controllers {
        let (_, start) = CONTROLLERS
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no controller {name}"));
        tokio::spawn(start(ctx.clone()));
    }
    Cluster {
        server,
        client,
        ctx,
    }
}

/// Poll `check` every 50 ms until it returns `Some`, or panic after
/// `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
