//! `tug-kubelet`: the node agent. It registers a Node, heartbeats its
//! Lease, and runs the pods bound to the node through a container runtime,
//! reporting their status the way upstream's kubelet does, so that the
//! controllers, the scheduler and kubectl see real nodes.
//!
//! - [`config`]: [`KubeletConfig`] and the parsing of flag values;
//! - [`runtime`]: the CRI-shaped [`runtime::ContainerRuntime`] trait, the
//!   [`runtime::process`] runtime (host processes behind a detached shim,
//!   CRI-format logs, cgroup v2 limits where writable, re-adopted after a
//!   kubelet restart; the default) and the in-memory [`runtime::fake`]
//!   runtime (annotation-driven exits, hollow nodes);
//! - [`node`]: registration and node status; [`lease`]: the node Lease;
//! - [`pods`]: the pod watch, one worker per pod and the housekeeping of
//!   orphans (pods deleted while the kubelet was down); [`admission`]:
//!   whether a pod fits;
//!   [`worker`]: the pod state machine; [`status`]: pod status computation;
//!   [`status_manager`]: coalesced, rate-limited `pods/status` writes;
//!   [`backoff`]: `CrashLoopBackOff`; [`probe`]: liveness, readiness and
//!   startup probes (exec through the runtime's `ExecSync`, httpGet,
//!   tcpSocket); [`env`](mod@env): a container's environment (`valueFrom`,
//!   `envFrom`, `$(VAR)` expansion);
//! - [`volumes`]: materializing emptyDir, hostPath, configMap, secret,
//!   downwardAPI and projected volumes into the pod directory with atomic
//!   updates, which the workers set up before a pod's containers start
//!   and hand to the runtime as mounts;
//! - [`server`]: the HTTPS API (`/healthz`, `/containerLogs/...` for
//!   `kubectl logs`), client certificates from the cluster CA;
//!   [`streaming`]: its `/exec`, `/attach` and `/portForward` upgrades
//!   (WebSocket and SPDY/3.1) for `kubectl exec`, `attach`, `port-forward`;
//! - [`stats`]: resource usage sampling and `/stats/summary`;
//!   [`metrics`]: `/metrics` (with the pod start and pod worker duration
//!   histograms) and `/metrics/resource`;
//! - [`static_pods`]: pods from `--pod-manifest-path` files, with mirror
//!   pods in the API;
//! - [`hollow`]: many fake nodes in one process ([`HollowNodes`]), like
//!   upstream's kubemark hollow nodes;
//! - [`cli`]: the command line `tug-kubelet` and `tugboat` share.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> anyhow::Result<()> {
//! use tugboat_kubelet::{HollowNodes, Kubelet, KubeletConfig};
//! let node = Kubelet::start(client.clone(), KubeletConfig::new("node-a")).await?;
//! node.wait_registered(std::time::Duration::from_secs(10)).await?;
//! let hollow = HollowNodes::start(client, "hollow", 100, &KubeletConfig::new("")).await?;
//! hollow.wait_ready(std::time::Duration::from_secs(60)).await?;
//! # Ok(()) }
//! ```
//!
//! Not built yet: resource reservations and eviction.

pub mod admission;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod env;
pub mod hollow;
pub mod lease;
pub mod metrics;
pub mod node;
pub mod pods;
pub mod probe;
pub mod ratelimit;
pub mod runtime;
pub mod server;
pub mod static_pods;
pub mod stats;
pub mod status;
pub mod status_manager;
pub mod streaming;
pub mod volumes;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use component_base::events::EventRecorder;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

pub use config::{KubeletConfig, MachineInfo};
pub use hollow::HollowNodes;

use crate::node::NodeAgent;
use crate::pods::PodManager;
use crate::ratelimit::RateLimiter;
use crate::status_manager::StatusManager;
use crate::worker::WorkerContext;

/// Starts kubelets.
pub struct Kubelet;

/// A running kubelet. Dropping it (or [`KubeletHandle::shutdown`]) stops
/// every task; like upstream's kubelet stopping, that leaves the Node and
/// its pods in the API as they are.
pub struct KubeletHandle {
    node_name: String,
    registered: watch::Receiver<bool>,
    node: watch::Receiver<Arc<k8s_openapi::api::core::v1::Node>>,
    server_addr: Option<std::net::SocketAddr>,
    tasks: JoinSet<()>,
}

impl Kubelet {
    /// Starts a kubelet for `config.node_name` on this tokio runtime:
    /// registration and node status, the Lease, the pod watch and workers.
    /// Returns once everything is spawned; see
    /// [`KubeletHandle::wait_registered`].
    pub async fn start(
        client: kube::Client,
        config: KubeletConfig,
    ) -> anyhow::Result<KubeletHandle> {
        Self::start_with_feed(client, config, None).await
    }

    /// [`Kubelet::start`], with the node's pod events from `feed` (a watch
    /// shared by hollow nodes, [`pods::dispatch_pods`]) when given.
    pub async fn start_with_feed(
        client: kube::Client,
        config: KubeletConfig,
        feed: Option<pods::PodFeed>,
    ) -> anyhow::Result<KubeletHandle> {
        Self::start_with_feeds(client, config, feed, None).await
    }

    /// [`Kubelet::start_with_feed`], with its Node's events from
    /// `node_feed` (a Node watch shared by hollow nodes,
    /// [`node::dispatch_nodes`]) when given.
    pub async fn start_with_feeds(
        client: kube::Client,
        config: KubeletConfig,
        feed: Option<pods::PodFeed>,
        node_feed: Option<node::NodeFeed>,
    ) -> anyhow::Result<KubeletHandle> {
        if let Some(problem) = crate::config::node_name_problem(&config.node_name) {
            anyhow::bail!("invalid node name {:?}: {problem}", config.node_name);
        }
        let runtime = config.runtime.clone();
        let version = runtime
            .version()
            .await
            .context("asking the runtime its version")?;
        let pod_cidr = config
            .pod_cidr
            .clone()
            .unwrap_or_else(|| crate::config::default_pod_cidr(&config.node_name));
        runtime
            .update_runtime_config(&pod_cidr)
            .await
            .with_context(|| format!("handing pod CIDR {pod_cidr} to the runtime"))?;
        let runtime_status = runtime.status().await.unwrap_or_default();

        let config = Arc::new(config);
        let limiter = Arc::new(RateLimiter::new(config.kube_api_qps, config.kube_api_burst));
        let status = StatusManager::new(client.clone(), limiter.clone());
        let mut server_addr = None;
        let mut server_task = None;
        if config.port != 0 {
            let (addr, serve) = server::start(server::ServerConfig {
                address: std::net::SocketAddr::new(config.address, config.port),
                node_name: config.node_name.clone(),
                node_ips: vec![config.node_ip.to_string()],
                client_ca: config.client_ca.clone(),
                runtime: runtime.clone(),
                pod_statuses: Some(status.clone()),
            })
            .await?;
            server_addr = Some(addr);
            server_task = Some(serve);
        }
        let recorder = config
            .record_events
            .then(|| EventRecorder::new(client.clone(), "kubelet"));
        let initial = node::initial_node(&config, &version, &runtime_status, Timestamp::now());
        let (node_tx, node_rx) = watch::channel(Arc::new(initial));
        let (registered_tx, registered_rx) = watch::channel(false);
        let poke = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        if let Some(serve) = server_task {
            tasks.spawn(serve);
        }

        let agent = NodeAgent {
            client: client.clone(),
            config: config.clone(),
            version: version.clone(),
            recorder: recorder.clone(),
            node: node_tx.clone(),
            registered: registered_tx,
            poke: poke.clone(),
        };
        tasks.spawn(agent.run());
        tasks.spawn(node::watch_node(
            client.clone(),
            config.clone(),
            node_tx,
            registered_rx.clone(),
            poke,
            pod_cidr,
            node_feed,
        ));
        tasks.spawn(lease::run(
            client.clone(),
            config.node_name.clone(),
            config.node_lease_duration_seconds,
            config.node_lease_renew_interval,
            node_rx.clone(),
        ));

        for _ in 0..config.status_writers.max(1) {
            tasks.spawn(status.clone().run_writer());
        }
        let ctx = Arc::new(WorkerContext {
            client: client.clone(),
            runtime,
            runtime_name: version.runtime_name.clone(),
            host_ips: vec![config.node_ip.to_string()],
            status: status.clone(),
            recorder,
            limiter,
            node: node_rx.clone(),
            pods_dir: config.root_dir.as_ref().map(|r| r.join("pods")),
            allow_mount: config.allow_mount,
            node_name: config.node_name.clone(),
        });
        let mut pods = PodManager::new(ctx, config.node_name.clone(), node_rx.clone());
        if let Some(feed) = feed {
            pods = pods.with_feed(feed);
        }
        if let Some(dir) = &config.pod_manifest_path {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            pods = pods.with_static_pods(rx);
            tasks.spawn(
                static_pods::StaticPods {
                    client: client.clone(),
                    node_name: config.node_name.clone(),
                    dir: dir.clone(),
                    file_check_frequency: config.file_check_frequency,
                    pods: tx,
                    status: status.clone(),
                    node: node_rx.clone(),
                }
                .run(),
            );
        }
        tasks.spawn(pods.run());
        tracing::info!(node = %config.node_name, runtime = %version.runtime_name, "kubelet started");
        Ok(KubeletHandle {
            node_name: config.node_name.clone(),
            registered: registered_rx,
            node: node_rx,
            server_addr,
            tasks,
        })
    }
}

impl KubeletHandle {
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Where the HTTPS API listens (`None` with `port` 0).
    pub fn server_addr(&self) -> Option<std::net::SocketAddr> {
        self.server_addr
    }

    /// Whether the Node has been registered.
    pub fn is_registered(&self) -> bool {
        *self.registered.borrow()
    }

    /// The newest copy of the Node the kubelet has.
    pub fn node(&self) -> Arc<k8s_openapi::api::core::v1::Node> {
        self.node.borrow().clone()
    }

    /// Waits until the Node is registered.
    pub async fn wait_registered(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut registered = self.registered.clone();
        tokio::time::timeout(timeout, registered.wait_for(|r| *r))
            .await
            .with_context(|| format!("node {} not registered within {timeout:?}", self.node_name))?
            .context("the kubelet stopped")?;
        Ok(())
    }

    /// Stops the kubelet and waits for its tasks to end.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }

    /// Resolves if a kubelet task ends by itself (it should not).
    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        match self.tasks.join_next().await {
            Some(Err(e)) if e.is_panic() => anyhow::bail!("a kubelet task panicked: {e}"),
            _ => anyhow::bail!("a kubelet task ended"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Node;
    use tokio::sync::{watch, Notify};

    /// The loops every kubelet keeps waiting (a hollow node process runs
    /// thousands) stay small: their requests' futures are boxed.
    #[tokio::test]
    async fn idle_loops_stay_small() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let limiter = Arc::new(crate::ratelimit::RateLimiter::new(10.0, 10));
        let status = crate::status_manager::StatusManager::new(client.clone(), limiter);
        let writer = status.run_writer();
        assert!(std::mem::size_of_val(&writer) <= 256);
        let (node_tx, node_rx) = watch::channel(Arc::new(Node::default()));
        let interval = std::time::Duration::from_secs(10);
        let lease = crate::lease::run(client.clone(), "n".into(), 40, interval, node_rx);
        assert!(std::mem::size_of_val(&lease) <= 2048);
        let (_registered_tx, registered_rx) = watch::channel(false);
        let config = Arc::new(crate::config::KubeletConfig::new("n"));
        let poke = Arc::new(Notify::new());
        let node = crate::node::watch_node(
            client.clone(),
            config.clone(),
            node_tx.clone(),
            registered_rx,
            poke.clone(),
            String::new(),
            None,
        );
        assert!(std::mem::size_of_val(&node) <= 2560);
        let (registered_tx, _) = watch::channel(false);
        let agent = crate::node::NodeAgent {
            client,
            config,
            version: crate::runtime::VersionInfo {
                runtime_name: "fake".into(),
                runtime_version: "0.1".into(),
                runtime_api_version: "v1".into(),
            },
            recorder: None,
            node: node_tx,
            registered: registered_tx,
            poke,
        };
        // ~7 KB (heaptrack's task allocation) before its state was boxed.
        assert!(std::mem::size_of_val(&agent.run()) <= 1024);
    }
}
