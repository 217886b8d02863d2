//! `tug-kubelet`'s command line as a library: [`Flags`] and [`run`], so
//! that `tug-kubelet` is a thin `main` and `tugboat server` runs the same
//! kubelet (or hollow nodes) in its own process.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{parse_duration, parse_node_labels, parse_quantity_flag, parse_taints};
use crate::runtime::cri::CriRuntime;
use crate::runtime::fake::FakeRuntime;
use crate::runtime::process::{ProcessOptions, ProcessRuntime};
use crate::runtime::ContainerRuntime;
use crate::{HollowNodes, Kubelet, KubeletConfig, MachineInfo};
use anyhow::Context as _;
use axum::routing::get;
use clap::{Parser, ValueEnum};
use k8s_openapi::api::core::v1::Taint;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// In-memory containers: nothing is executed (hollow nodes).
    Fake,
    /// Containers as host processes, state under --root-dir.
    Process,
    /// A CRI runtime such as containerd, at --container-runtime-endpoint.
    Cri,
}

/// The Tugboat kubelet: registers a Node and runs the pods bound to it.
#[derive(Debug, Parser)]
#[command(name = "tug-kubelet", version)]
pub struct Flags {
    /// Kubeconfig to reach the API server (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The Node's name [default: the host name].
    #[arg(long, alias = "hostname-override")]
    pub node_name: Option<String>,
    /// The container runtime.
    #[arg(long, value_enum, default_value_t = Runtime::Process)]
    pub runtime: Runtime,
    /// Where pod directories (volumes) and, for the process runtime, container state and logs live.
    #[arg(long, default_value = crate::runtime::process::DEFAULT_ROOT_DIR)]
    pub root_dir: PathBuf,
    /// Cri runtime: the CRI runtime's gRPC socket.
    #[arg(long, default_value = crate::runtime::cri::DEFAULT_ENDPOINT)]
    pub container_runtime_endpoint: String,
    /// Fake runtime: the node's cpu capacity (the process runtime reports the host's).
    #[arg(long, default_value = "8", value_parser = parse_quantity_flag)]
    pub fake_cpu: String,
    /// Fake runtime: the node's memory capacity (the process runtime reports the host's).
    #[arg(long, default_value = "32Gi", value_parser = parse_quantity_flag)]
    pub fake_memory: String,
    /// The node's ephemeral-storage capacity.
    #[arg(long, default_value = "100Gi", value_parser = parse_quantity_flag)]
    pub fake_ephemeral_storage: String,
    /// The most pods the node runs (its `pods` capacity).
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// The node's InternalIP [default: the local address that reaches the API server].
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// The CIDR pod IPs come from (the Node's spec.podCIDR wins when set) [default: a /24 of 10.244.0.0/16 chosen by the node name].
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// Labels to add when registering the Node (`k=v,k2=v2`).
    #[arg(long, default_value = "", value_parser = parse_node_labels)]
    pub node_labels: BTreeMap<String, String>,
    /// Taints to register the Node with (`key=value:Effect,key:Effect`).
    #[arg(long, default_value = "", value_parser = parse_taints_flag)]
    pub register_with_taints: Taints,
    /// How often the node status is computed and written when it changed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub node_status_update_frequency: Duration,
    /// How often an unchanged node status is written anyway [default: the update frequency].
    #[arg(long, value_parser = parse_duration)]
    pub node_status_report_frequency: Option<Duration>,
    /// `leaseDurationSeconds` of the node Lease.
    #[arg(long, default_value_t = 40)]
    pub node_lease_duration_seconds: i32,
    /// How often the node Lease is renewed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub node_lease_renew_interval: Duration,
    /// API writes per second (0: unlimited).
    #[arg(long, default_value_t = 50.0)]
    pub kube_api_qps: f64,
    /// API writes allowed in a burst.
    #[arg(long, default_value_t = 100)]
    pub kube_api_burst: u32,
    /// Where /healthz is served (plain HTTP).
    #[arg(long, default_value = "127.0.0.1")]
    pub healthz_bind_address: IpAddr,
    /// The /healthz port; 0 disables it.
    #[arg(long, default_value_t = 10248)]
    pub healthz_port: u16,
    /// The HTTPS API's port (`kubectl logs`); 0 disables it.
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// The HTTPS API's address.
    #[arg(long, default_value = "0.0.0.0")]
    pub address: IpAddr,
    /// A directory of static pod manifests (YAML or JSON Pods) to run
    /// without the API server; each gets a mirror pod in the API.
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// How often --pod-manifest-path is read.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub file_check_frequency: Duration,
    /// Fake runtime: run this many hollow nodes in this process, named
    /// `<node-name>-0` … `<node-name>-<N-1>` (upstream's kubemark), each
    /// registering, renewing its Lease and running its pods.
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Log filter (RUST_LOG syntax).
    #[arg(
        short = 'v',
        long = "log-level",
        default_value = "info",
        env = "RUST_LOG"
    )]
    pub log_level: String,
}

/// A parsed `--register-with-taints` (a newtype so clap does not take the
/// `Vec` for a repeated flag).
#[derive(Debug, Clone)]
pub struct Taints(pub Vec<Taint>);

fn parse_taints_flag(s: &str) -> Result<Taints, String> {
    parse_taints(s).map(Taints)
}

/// Requests the hollow nodes' shared client has in flight at once (a
/// watch counts until its response headers arrive, not while it streams).
const HOLLOW_MAX_IN_FLIGHT: usize = 64;
/// Idle connections hollow nodes keep to the API server.
const HOLLOW_IDLE_CONNECTIONS: usize = 32;

/// The API client of hollow nodes: kube's client, with at most
/// [`HOLLOW_MAX_IN_FLIGHT`] requests in flight and at most
/// [`HOLLOW_IDLE_CONNECTIONS`] idle connections pooled. HTTP/1.1 (all
/// kube's client speaks) carries one request per connection, so without a
/// limit a thousand nodes registering, renewing leases and writing pod
/// statuses and events at once open a connection per request, each with
/// its TLS session and buffers on both the client's and (in a `tugboat
/// server`) the API server's side: most of the memory of many hollow
/// nodes. Each hollow node still has its own rate limiter; this only
/// queues the requests beyond what a real node's own client would have
/// open.
fn pooled_client(config: kube::Config) -> anyhow::Result<kube::Client> {
    use kube::client::ConfigExt;
    let https = config.rustls_https_connector()?;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(HOLLOW_IDLE_CONNECTIONS)
        .build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
        .concurrency_limit(HOLLOW_MAX_IN_FLIGHT)
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// Whether the effective user is root (`Uid:` of `/proc/self/status`):
/// only then may the kubelet mount tmpfs volumes.
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The local address the kernel would use to reach `server` (a UDP
/// "connection" sends nothing): upstream's default node IP is the one of
/// the interface with the default route, this is the one toward the API
/// server.
async fn local_ip_towards(server: &http::Uri) -> Option<IpAddr> {
    let host = server.host()?.trim_matches(['[', ']']);
    let port = server.port_u16().unwrap_or(443);
    let target = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

impl Flags {
    /// The defaults, as if no flag were given.
    pub fn defaults() -> Self {
        Flags::parse_from(["tug-kubelet"])
    }
}

/// Register the node (or `--nodes` hollow nodes) and run its pods until
/// `shutdown` resolves. The process runtime's containers keep running
/// after it returns, for the next kubelet on the same `--root-dir`.
pub async fn run(flags: Flags, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    anyhow::ensure!(flags.max_pods > 0, "--max-pods must be at least 1");
    if let Some(n) = flags.nodes {
        anyhow::ensure!(
            flags.runtime == Runtime::Fake,
            "--nodes runs hollow nodes: it needs --runtime fake"
        );
        anyhow::ensure!(
            (1..=crate::hollow::MAX_HOLLOW_NODES).contains(&n),
            "--nodes must be between 1 and {}",
            crate::hollow::MAX_HOLLOW_NODES
        );
    }
    anyhow::ensure!(
        flags.node_lease_duration_seconds > 0,
        "--node-lease-duration-seconds must be positive"
    );
    anyhow::ensure!(
        !flags.node_lease_renew_interval.is_zero(),
        "--node-lease-renew-interval must be positive"
    );
    anyhow::ensure!(
        !flags.file_check_frequency.is_zero(),
        "--file-check-frequency must be positive"
    );
    anyhow::ensure!(
        !flags.node_status_update_frequency.is_zero(),
        "--node-status-update-frequency must be positive"
    );
    if let Some(cidr) = &flags.pod_cidr {
        crate::runtime::fake::Cidr::parse(cidr).map_err(|e| anyhow::anyhow!("--pod-cidr: {e}"))?;
    }

    let kube_config = component_base::client::config(flags.kubeconfig.as_deref()).await?;
    let node_ip = match flags.node_ip {
        Some(ip) => ip,
        None => local_ip_towards(&kube_config.cluster_url)
            .await
            .unwrap_or(IpAddr::from([127, 0, 0, 1])),
    };
    let client_ca = kube_config.root_cert.clone().unwrap_or_default();
    let client = match flags.nodes {
        Some(_) => pooled_client(kube_config)?,
        None => kube::Client::try_from(kube_config)?,
    };
    let node_name = flags.node_name.clone().unwrap_or_else(host_name);

    let mut config = KubeletConfig::new(node_name.clone());
    config.machine = MachineInfo::fake(
        &node_name,
        &flags.fake_cpu,
        &flags.fake_memory,
        &flags.fake_ephemeral_storage,
    );
    config.runtime = match flags.runtime {
        Runtime::Process => {
            config.machine = MachineInfo::host(&node_name, &flags.fake_ephemeral_storage);
            let mut options = ProcessOptions::new(&flags.root_dir, node_ip.to_string());
            options.use_log_directory = true;
            let runtime = ProcessRuntime::open(options)
                .with_context(|| format!("--root-dir {}", flags.root_dir.display()))?;
            // Conditions beyond RuntimeReady/NetworkReady (limits not
            // enforced) do not change the node's Ready: say them here.
            for c in runtime.status().await?.conditions {
                if !c.status {
                    tracing::warn!(condition = %c.kind, reason = %c.reason, "{}", c.message);
                }
            }
            Arc::new(runtime) as Arc<dyn ContainerRuntime>
        }
        Runtime::Cri => {
            config.machine = MachineInfo::host(&node_name, &flags.fake_ephemeral_storage);
            let runtime = CriRuntime::connect(&flags.container_runtime_endpoint)
                .await
                .context(
                    "--container-runtime-endpoint (scripts/setup-containerd starts containerd)",
                )?;
            Arc::new(runtime) as Arc<dyn ContainerRuntime>
        }
        Runtime::Fake => Arc::new(FakeRuntime::new()),
    };
    config.node_ip = node_ip;
    config.pod_cidr = flags.pod_cidr.clone();
    config.node_labels = flags.node_labels.clone();
    config.register_with_taints = flags.register_with_taints.0.clone();
    config.max_pods = flags.max_pods;
    config.node_status_update_frequency = flags.node_status_update_frequency;
    config.node_status_report_frequency = flags
        .node_status_report_frequency
        .unwrap_or(flags.node_status_update_frequency);
    config.node_lease_duration_seconds = flags.node_lease_duration_seconds;
    config.node_lease_renew_interval = flags.node_lease_renew_interval;
    config.kube_api_qps = flags.kube_api_qps;
    config.kube_api_burst = flags.kube_api_burst;
    config.port = flags.port;
    config.address = flags.address;
    config.client_ca = client_ca;
    if let Some(dir) = flags.pod_manifest_path.as_ref().filter(|d| !d.is_dir()) {
        // Upstream starts anyway and picks files up once the directory exists.
        tracing::warn!(path = %dir.display(), "--pod-manifest-path is not a directory (yet): no static pods until it is");
    }
    config.pod_manifest_path = flags.pod_manifest_path.clone();
    config.file_check_frequency = flags.file_check_frequency;
    if flags.runtime != Runtime::Fake {
        config.root_dir = Some(flags.root_dir.clone());
        config.allow_mount = running_as_root();
    }

    if flags.healthz_port != 0 {
        let address = SocketAddr::new(flags.healthz_bind_address, flags.healthz_port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address} (--healthz-port 0 disables it)"))?;
        let health = axum::Router::new().route("/healthz", get(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, health).await });
    }

    if let Some(count) = flags.nodes {
        let hollow = HollowNodes::start(client, &node_name, count, &config).await?;
        tracing::info!(nodes = count, prefix = %node_name, "hollow nodes started");
        shutdown.await;
        hollow.shutdown().await;
        return Ok(());
    }
    let mut kubelet = Kubelet::start(client, config).await?;
    tokio::select! {
        _ = shutdown => {}
        stopped = kubelet.stopped() => stopped?,
    }
    kubelet.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A thousand hollow nodes writing at once must not open a connection
    /// (and a TLS session) per request: the shared client keeps at most
    /// `HOLLOW_MAX_IN_FLIGHT` requests open, and the rest wait their turn
    /// instead of failing.
    #[tokio::test]
    async fn the_hollow_client_bounds_requests_in_flight() {
        #[derive(Default)]
        struct Counts {
            now: AtomicUsize,
            most: AtomicUsize,
        }
        let counts = Arc::new(Counts::default());
        let app = axum::Router::new().route(
            "/slow",
            axum::routing::get({
                let counts = counts.clone();
                move || {
                    let counts = counts.clone();
                    async move {
                        let now = counts.now.fetch_add(1, Ordering::SeqCst) + 1;
                        counts.most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        counts.now.fetch_sub(1, Ordering::SeqCst);
                        "ok"
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let url: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
        let client = pooled_client(kube::Config::new(url)).unwrap();
        let requests = (0..4 * HOLLOW_MAX_IN_FLIGHT).map(|_| {
            let client = client.clone();
            async move {
                let req = http::Request::get("/slow").body(Vec::new()).unwrap();
                client.request_text(req).await
            }
        });
        let answers = futures::future::join_all(requests).await;
        assert!(answers.iter().all(|a| a.as_deref().ok() == Some("ok")));
        let most = counts.most.load(Ordering::SeqCst);
        assert!(
            most <= HOLLOW_MAX_IN_FLIGHT,
            "{most} requests were in flight at once"
        );
        assert!(most > 1, "requests did not run concurrently");
    }
}
