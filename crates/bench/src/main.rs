//! `tug-bench`: benchmark programs that print their figures as one JSON
//! object on stdout (progress goes to stderr), so runs can be recorded in
//! `docs/BENCHMARKS.md` and compared.
//!
//! `tug-bench api` measures the API server end to end, as clients see it:
//! - [`tugboat`] starts a real `tug-apiserver` in a temporary directory and
//!   runs create / get / list / watch phases against it over HTTPS with the
//!   admin client certificate;
//! - [`etcd`] runs the same write load as raw etcd writes, the peer that
//!   upstream Kubernetes stores objects in, so one session gives both
//!   figures (`--target both`) and they can be compared as a ratio;
//! - [`client`] holds the two client kinds (kube-rs, or raw hyper+rustls);
//! - [`pod`] the ~1 KB Pod every write phase sends;
//! - [`process`] starting, watching and killing the servers under test;
//! - [`stats`] exact percentiles and per-phase CPU use from `/proc`.
//!
//! `tug-bench scheduler` ([`scheduler`]) measures scheduling throughput end
//! to end, as upstream's scheduler_perf SchedulingBasic does: Node objects
//! and pods created through a `tug-apiserver`, the scheduler in process.
//!
//! `tug-bench controllers` ([`controllers`]) brings Deployments up on hollow
//! kubelets with the real API server, scheduler and controller manager, and
//! reports the time to all available and the controller manager's memory.
//!
//! `tug-bench pod-startup` and `tug-bench hollow-nodes` ([`kubelet_bench`])
//! measure `tug-kubelet`: pod startup latency on one node, and many hollow
//! nodes in one kubelet process.
//!
//! `tug-bench proxy` ([`proxy`]) times a Service change until a real
//! `tug-proxy` (nftables) has it in the kernel, among many Services.
//!
//! `tug-bench footprint` ([`footprint`]) measures a whole `tugboat server`:
//! start-up time, idle memory, and memory with hollow nodes and many pods.

mod client;
mod controllers;
mod etcd;
mod footprint;
mod kubelet_bench;
mod pod;
mod process;
mod proxy;
mod scheduler;
mod stats;
mod tugboat;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::client::ClientKind;
use crate::etcd::{EtcdOp, EtcdOptions};
use crate::tugboat::TugboatOptions;

/// Tugboat benchmarks: each prints one JSON object on stdout.
#[derive(Debug, Parser)]
#[command(name = "tug-bench", version)]
struct Flags {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// API server throughput and latency: create, get, list and watch pods
    /// against a tug-apiserver the benchmark starts, and/or the same writes
    /// against etcd.
    Api(ApiFlags),
    /// Scheduling throughput: N Node objects and M pods created through a
    /// tug-apiserver the benchmark starts, scheduled by the scheduler
    /// running in this process, until every pod's binding is persisted.
    Scheduler(SchedulerFlags),
    /// Control plane end to end: tug-apiserver, tug-scheduler and
    /// tug-controller-manager started from this target directory, hollow
    /// kubelets in this process, N Deployments until all are available.
    Controllers(ControllersFlags),
    /// Pod startup latency: a tug-apiserver and one tug-kubelet, N pods
    /// bound to its node, from create to the watch seeing them Running.
    PodStartup(PodStartupFlags),
    /// Hollow nodes: a tug-apiserver and `tug-kubelet --runtime fake
    /// --nodes N`, until every node is Ready and every Lease renewed.
    HollowNodes(HollowNodesFlags),
    /// Service change → rules in place: a tug-proxy (nftables, as root)
    /// over many Services of a tug-apiserver the benchmark starts.
    Proxy(ProxyFlags),
    /// A whole `tugboat server`: start-up time and idle memory, then
    /// memory with hollow nodes and a workload of many pods.
    Footprint(FootprintFlags),
}

#[derive(Debug, clap::Args)]
struct FootprintFlags {
    /// Which phases to run.
    #[arg(long, value_enum, default_value_t = footprint::Phase::Both)]
    phase: footprint::Phase,
    /// Hollow nodes of the loaded server (`--simulate-nodes`).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pods of the loaded server's workload.
    #[arg(long, default_value_t = 30000)]
    pods: usize,
    /// Pods per Deployment (0: bare pods the scheduler places).
    #[arg(long, default_value_t = 10)]
    replicas: usize,
    /// Concurrent clients creating the workload.
    #[arg(long, default_value_t = 16)]
    create_clients: usize,
    /// Seconds of quiet before memory is read, in each phase.
    #[arg(long, default_value_t = 10.0)]
    settle_seconds: f64,
    /// Give up the loaded phase (with a JSON error) after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_seconds: u64,
    /// An extra `tugboat server` flag (repeatable), for both phases.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// The tugboat binary [default: next to tug-bench].
    #[arg(long)]
    tugboat: Option<PathBuf>,
    /// Where the temporary data directories go.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct PodStartupFlags {
    /// Pods to create.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// The kubelet's runtime: process or cri.
    #[arg(long, default_value = "process", value_parser = ["process", "cri"])]
    runtime: String,
    /// Creates in flight at once.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Pace the creates at this many pods per second [default: a burst,
    /// as fast as creates return].
    #[arg(long)]
    qps: Option<f64>,
    /// The pods' image (the process runtime only records it).
    #[arg(long, default_value = "docker.io/library/busybox:latest")]
    image: String,
    /// An extra tug-kubelet flag (repeatable), e.g.
    /// `--kubelet-arg=--container-runtime-endpoint=unix:///run/containerd/containerd.sock`.
    #[arg(long = "kubelet-arg", allow_hyphen_values = true)]
    kubelet_args: Vec<String>,
    /// Give up (with a JSON error) after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
    /// The tug-apiserver binary [default: next to tug-bench].
    #[arg(long)]
    apiserver: Option<PathBuf>,
    /// The tug-kubelet binary [default: next to tug-bench].
    #[arg(long)]
    kubelet: Option<PathBuf>,
    /// Where the temporary data directories go.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ProxyFlags {
    /// ClusterIP Services (each with one EndpointSlice) on the node.
    #[arg(long, default_value_t = 10000)]
    services: usize,
    /// Ready endpoints of each Service.
    #[arg(long, default_value_t = 5)]
    endpoints_per_service: usize,
    /// Service changes to time, one at a time.
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// Pause between changes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    gap_ms: u64,
    /// Concurrent clients creating the Services and slices.
    #[arg(long, default_value_t = 16)]
    create_clients: usize,
    /// Give up waiting for the first full sync after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    /// The tug-apiserver binary [default: next to tug-bench].
    #[arg(long)]
    apiserver: Option<PathBuf>,
    /// The tug-proxy binary [default: next to tug-bench].
    #[arg(long)]
    proxy: Option<PathBuf>,
    /// tug-proxy's log filter (its last lines are in the JSON).
    #[arg(long, default_value = "warn")]
    proxy_log_level: String,
    /// Where the temporary data and log directories go.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct HollowNodesFlags {
    /// Hollow nodes in the one kubelet process.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// The kubelet's `--node-lease-renew-interval` in seconds.
    #[arg(long, default_value_t = 10.0)]
    lease_renew_seconds: f64,
    /// Give up (with a JSON error) after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
    /// The tug-apiserver binary [default: next to tug-bench].
    #[arg(long)]
    apiserver: Option<PathBuf>,
    /// The tug-kubelet binary [default: next to tug-bench].
    #[arg(long)]
    kubelet: Option<PathBuf>,
    /// Where the temporary data directories go.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ControllersFlags {
    /// Deployments to create.
    #[arg(long, default_value_t = 1000)]
    deployments: usize,
    /// Replicas of each Deployment.
    #[arg(long, default_value_t = 10)]
    replicas: i32,
    /// Hollow nodes (fake kubelets in this process; 110 pods each).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Concurrent clients creating the Deployments.
    #[arg(long, default_value_t = 8)]
    create_clients: usize,
    /// Give up (with a JSON error) after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    /// The tug-apiserver binary [default: next to tug-bench].
    #[arg(long)]
    apiserver: Option<PathBuf>,
    /// The tug-scheduler binary [default: next to tug-bench].
    #[arg(long)]
    scheduler: Option<PathBuf>,
    /// The tug-controller-manager binary [default: next to tug-bench].
    #[arg(long)]
    controller_manager: Option<PathBuf>,
    /// Where the temporary data and log directories go.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct SchedulerFlags {
    /// Node objects to create (no kubelets).
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods to create and schedule (the measured ones).
    #[arg(long, default_value_t = 10000)]
    pods: usize,
    /// Pods created already bound (spec.nodeName set) before measuring.
    #[arg(long, default_value_t = 0)]
    existing_pods: usize,
    /// Give each measured pod required pod anti-affinity by hostname against
    /// its own group (ceil(pods / nodes) groups, so it stays satisfiable).
    #[arg(long)]
    anti_affinity: bool,
    /// Concurrent requests when creating nodes and pods.
    #[arg(long, default_value_t = 32)]
    create_clients: usize,
    /// Seconds to wait for every pod to be bound before giving up.
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
    /// The tug-apiserver binary [default: tug-apiserver next to tug-bench].
    #[arg(long)]
    apiserver: Option<PathBuf>,
    /// Where the API server's temporary data directory goes.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ApiFlags {
    /// Concurrent clients; each sends one request at a time.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Length of each timed phase (create, get) in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// What to measure: tugboat, etcd, or both in one run.
    #[arg(long, value_enum, default_value_t = Target::Tugboat)]
    target: Target,
    /// The tug-apiserver binary [default: tug-apiserver next to tug-bench].
    #[arg(long)]
    apiserver: Option<PathBuf>,
    /// Client used against tugboat: kube (kube-rs, typed) or raw (hyper +
    /// rustls, pre-serialized bodies, responses unread).
    #[arg(long, value_enum, default_value_t = ClientKind::Kube)]
    client: ClientKind,
    /// How many times the list phase lists the whole namespace.
    #[arg(long, default_value_t = 20)]
    lists: usize,
    /// Pods created during the watch phase.
    #[arg(long, default_value_t = 200)]
    watch_objects: usize,
    /// Creates per second during the watch phase.
    #[arg(long, default_value_t = 100.0)]
    watch_rate: f64,
    /// An etcd to write to, e.g. http://127.0.0.1:2379 [default: start `etcd`
    /// from PATH on free ports in a temporary directory].
    #[arg(long)]
    etcd_endpoint: Option<String>,
    /// The etcd binary to start when no --etcd-endpoint is given.
    #[arg(long)]
    etcd_binary: Option<PathBuf>,
    /// etcd write: put, or txn (put if absent, as kube-apiserver creates).
    #[arg(long, value_enum, default_value_t = EtcdOp::Put)]
    etcd_op: EtcdOp,
    /// Where temporary data directories go [default: the system temp dir].
    /// Put both targets on the same file system: fsync cost differs.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    Tugboat,
    Etcd,
    Both,
}

/// The load shared by both targets.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub clients: usize,
    pub seconds: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    // Both rustls users here (kube-rs and the raw client) use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // On Ctrl-C the run future is dropped: servers are killed and their
    // temporary directories removed by the guards' destructors.
    let load_before = loadavg();
    let run = async {
        match flags.command {
            Cmd::Api(api) => run_api(api).await,
            Cmd::Scheduler(s) => run_scheduler(s).await,
            Cmd::Controllers(c) => run_controllers(c).await,
            Cmd::PodStartup(p) => run_pod_startup(p).await,
            Cmd::HollowNodes(h) => run_hollow_nodes(h).await,
            Cmd::Proxy(p) => run_proxy(p).await,
            Cmd::Footprint(f) => run_footprint(f).await,
        }
    };
    let mut result = tokio::select! {
        r = run => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    }?;
    if let Value::Object(out) = &mut result {
        out.insert("host".into(), host(load_before));
    }
    println!("{}", serde_json::to_string_pretty(&result)?);
    if result.get("error").is_some() {
        // The figures are printed; the exit status says the run failed.
        std::process::exit(1);
    }
    Ok(())
}

/// `/proc/loadavg`'s first three fields: other work on the machine skews
/// figures, so each run records how busy it was.
fn loadavg() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| json!(s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")))
        .unwrap_or(Value::Null)
}

/// The machine the figures come from.
fn host(load_before: Value) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu_model": model,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    })
}

async fn run_scheduler(flags: SchedulerFlags) -> anyhow::Result<Value> {
    anyhow::ensure!(flags.nodes > 0, "--nodes must be at least 1");
    anyhow::ensure!(flags.timeout > 0.0, "--timeout must be positive");
    let opts = scheduler::SchedulerOptions {
        apiserver: match flags.apiserver {
            Some(p) => p,
            None => tugboat::default_apiserver()?,
        },
        nodes: flags.nodes,
        pods: flags.pods,
        existing_pods: flags.existing_pods,
        anti_affinity: flags.anti_affinity,
        create_clients: flags.create_clients,
        timeout: std::time::Duration::from_secs_f64(flags.timeout),
    };
    scheduler::run(&opts, flags.work_dir.as_deref())
        .await
        .context("scheduler benchmark")
}

async fn run_controllers(flags: ControllersFlags) -> anyhow::Result<Value> {
    anyhow::ensure!(flags.nodes > 0, "--nodes must be at least 1");
    anyhow::ensure!(flags.replicas >= 0, "--replicas must not be negative");
    anyhow::ensure!(
        flags.timeout_seconds > 0,
        "--timeout-seconds must be positive"
    );
    anyhow::ensure!(
        flags.nodes <= kubelet::hollow::MAX_HOLLOW_NODES,
        "--nodes must be at most {}",
        kubelet::hollow::MAX_HOLLOW_NODES
    );
    let opts = controllers::ControllersOptions {
        apiserver: binary_or_sibling(flags.apiserver, "tug-apiserver")?,
        scheduler: binary_or_sibling(flags.scheduler, "tug-scheduler")?,
        controller_manager: binary_or_sibling(flags.controller_manager, "tug-controller-manager")?,
        deployments: flags.deployments,
        replicas: flags.replicas,
        nodes: flags.nodes,
        create_clients: flags.create_clients,
        timeout: std::time::Duration::from_secs(flags.timeout_seconds),
    };
    controllers::run(&opts, flags.work_dir.as_deref())
        .await
        .context("controllers benchmark")
}

async fn run_pod_startup(flags: PodStartupFlags) -> anyhow::Result<Value> {
    anyhow::ensure!(flags.pods > 0, "--pods must be at least 1");
    anyhow::ensure!(flags.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(
        flags.qps.is_none_or(|q| q > 0.0 && q.is_finite()),
        "--qps must be a positive number"
    );
    let opts = kubelet_bench::PodStartupOptions {
        apiserver: binary_or_sibling(flags.apiserver, "tug-apiserver")?,
        kubelet: binary_or_sibling(flags.kubelet, "tug-kubelet")?,
        pods: flags.pods,
        runtime: flags.runtime,
        concurrency: flags.concurrency,
        qps: flags.qps,
        image: flags.image,
        kubelet_args: flags.kubelet_args,
        timeout: std::time::Duration::from_secs(flags.timeout_seconds),
    };
    kubelet_bench::pod_startup(&opts, flags.work_dir.as_deref())
        .await
        .context("pod-startup benchmark")
}

async fn run_hollow_nodes(flags: HollowNodesFlags) -> anyhow::Result<Value> {
    anyhow::ensure!(flags.nodes > 0, "--nodes must be at least 1");
    anyhow::ensure!(
        flags.lease_renew_seconds > 0.0,
        "--lease-renew-seconds must be positive"
    );
    let opts = kubelet_bench::HollowOptions {
        apiserver: binary_or_sibling(flags.apiserver, "tug-apiserver")?,
        kubelet: binary_or_sibling(flags.kubelet, "tug-kubelet")?,
        nodes: flags.nodes,
        lease_renew_interval: std::time::Duration::from_secs_f64(flags.lease_renew_seconds),
        timeout: std::time::Duration::from_secs(flags.timeout_seconds),
    };
    kubelet_bench::hollow_nodes(&opts, flags.work_dir.as_deref())
        .await
        .context("hollow-nodes benchmark")
}

async fn run_proxy(flags: ProxyFlags) -> anyhow::Result<Value> {
    let opts = proxy::ProxyOptions {
        apiserver: binary_or_sibling(flags.apiserver, "tug-apiserver")?,
        proxy: binary_or_sibling(flags.proxy, "tug-proxy")?,
        services: flags.services,
        endpoints_per_service: flags.endpoints_per_service,
        changes: flags.changes,
        gap: std::time::Duration::from_millis(flags.gap_ms),
        create_clients: flags.create_clients,
        timeout: std::time::Duration::from_secs(flags.timeout_seconds),
        proxy_log_level: flags.proxy_log_level,
    };
    proxy::run(&opts, flags.work_dir.as_deref())
        .await
        .context("proxy benchmark")
}

async fn run_footprint(flags: FootprintFlags) -> anyhow::Result<Value> {
    anyhow::ensure!(flags.nodes > 0, "--nodes must be at least 1");
    anyhow::ensure!(
        flags.nodes <= kubelet::hollow::MAX_HOLLOW_NODES,
        "--nodes must be at most {}",
        kubelet::hollow::MAX_HOLLOW_NODES
    );
    anyhow::ensure!(
        flags.create_clients > 0,
        "--create-clients must be at least 1"
    );
    anyhow::ensure!(
        flags.settle_seconds >= 0.0 && flags.settle_seconds.is_finite(),
        "--settle-seconds must not be negative"
    );
    let opts = footprint::FootprintOptions {
        tugboat: binary_or_sibling(flags.tugboat, "tugboat")?,
        phase: flags.phase,
        nodes: flags.nodes,
        pods: flags.pods,
        replicas: flags.replicas,
        create_clients: flags.create_clients,
        settle: std::time::Duration::from_secs_f64(flags.settle_seconds),
        timeout: std::time::Duration::from_secs(flags.timeout_seconds),
        server_args: flags.server_args,
    };
    footprint::run(&opts, flags.work_dir.as_deref())
        .await
        .context("footprint benchmark")
}

/// The binary given by a flag, else the one named `name` beside tug-bench.
fn binary_or_sibling(given: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    match given {
        Some(p) => Ok(p),
        None => controllers::sibling_binary(name),
    }
}

async fn run_api(flags: ApiFlags) -> anyhow::Result<Value> {
    anyhow::ensure!(flags.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(flags.seconds > 0.0, "--seconds must be positive");
    anyhow::ensure!(flags.watch_rate > 0.0, "--watch-rate must be positive");
    let load = Load {
        clients: flags.clients,
        seconds: flags.seconds,
    };
    let work_dir = flags.work_dir.as_deref();
    let tugboat = || async {
        let opts = TugboatOptions {
            apiserver: match &flags.apiserver {
                Some(p) => p.clone(),
                None => tugboat::default_apiserver()?,
            },
            client: flags.client,
            lists: flags.lists,
            watch_objects: flags.watch_objects,
            watch_rate: flags.watch_rate,
        };
        tugboat::run(&load, &opts, work_dir)
            .await
            .context("tugboat benchmark")
    };
    let etcd = || async {
        let opts = EtcdOptions {
            endpoint: flags.etcd_endpoint.clone(),
            binary: flags.etcd_binary.clone(),
            op: flags.etcd_op,
        };
        etcd::run(&load, &opts, work_dir)
            .await
            .context("etcd benchmark")
    };
    Ok(match flags.target {
        Target::Tugboat => tugboat().await?,
        Target::Etcd => etcd().await?,
        Target::Both => {
            let t = tugboat().await?;
            let e = etcd().await?;
            let ratio = match (
                t["create_per_second"].as_f64(),
                e["create_per_second"].as_f64(),
            ) {
                (Some(t), Some(e)) if e > 0.0 => stats::round(t / e),
                _ => Value::Null,
            };
            json!({
                "target": "both",
                "clients": load.clients,
                "seconds": load.seconds,
                "tugboat_over_etcd_creates": ratio,
                "tugboat": t,
                "etcd": e,
            })
        }
    })
}
