//! `tug-bench pod-startup` and `tug-bench hollow-nodes`: the node agent
//! measured as upstream's node e2e density test and kubemark measure it.
//!
//! **pod-startup**: a `tug-apiserver` and one `tug-kubelet` (`--runtime
//! process` or `cri`, its root directory in a temporary directory) are
//! started; once the Node is Ready, a watch on the benchmark's namespace is
//! opened, then `--pods` pods bound to the node (`spec.nodeName`, one
//! container running `sleep`) are created `--concurrency` at a time: a
//! burst, as upstream's density test creates a batch; with `--qps` they
//! are paced instead, pod `i` sent `i / qps` seconds after the first. A
//! pod's startup latency runs from just before its create request is sent
//! (`creationTimestamp` only has seconds) to the watch event showing
//! `status.phase: Running`. The JSON also has the CPU seconds the kubelet
//! and the API server used from the first create to the last pod Running.
//! The pods are deleted at the end, so their processes go too.
//!
//! **hollow-nodes**: a `tug-apiserver` and one `tug-kubelet --runtime fake
//! --nodes N`; the time from starting the kubelet until every node is
//! Ready and every node's Lease has been renewed at least once (a second
//! write after the one that created it), then the kubelet's resident
//! memory and the CPU seconds the kubelet and the API server used so far.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};
use tokio::process::Command;
use tokio::sync::Notify;

use crate::process::{free_port, temp_dir, wait_until, Server};
use crate::stats::{cpu_time, round, Summary};
use crate::tugboat::start_apiserver;

const NAMESPACE: &str = "pod-startup-bench";
const NODE: &str = "bench-node";

/// Flags of `tug-bench pod-startup`.
#[derive(Debug, Clone)]
pub struct PodStartupOptions {
    pub apiserver: PathBuf,
    pub kubelet: PathBuf,
    pub pods: usize,
    /// `process` or `cri`.
    pub runtime: String,
    pub concurrency: usize,
    /// Pods created per second; `None` sends them as fast as creates return.
    pub qps: Option<f64>,
    pub image: String,
    /// More `tug-kubelet` flags (`--container-runtime-endpoint ...`).
    pub kubelet_args: Vec<String>,
    pub timeout: Duration,
}

/// Flags of `tug-bench hollow-nodes`.
#[derive(Debug, Clone)]
pub struct HollowOptions {
    pub apiserver: PathBuf,
    pub kubelet: PathBuf,
    pub nodes: usize,
    pub lease_renew_interval: Duration,
    pub timeout: Duration,
}

/// Writes the admin kubeconfig for child processes.
fn write_kubeconfig(
    creds: &crate::client::Credentials,
    dir: &tempfile::TempDir,
) -> anyhow::Result<PathBuf> {
    let path = dir.path().join("admin.kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&creds.kubeconfig)?)
        .context("writing the admin kubeconfig")?;
    Ok(path)
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn bench_pod(i: usize, image: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("startup-{i}"), "namespace": NAMESPACE},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "sleep",
                "image": image,
                // The image is on the node (no registry is reachable here);
                // `:latest` would otherwise default to pulling Always.
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "600"],
            }],
        },
    }))?)
}

/// Starts `tug-kubelet` with `args` and the admin kubeconfig; its log and
/// root directory live in a temporary directory.
fn start_kubelet(
    binary: &Path,
    kubeconfig: &Path,
    args: &[String],
    work_dir: Option<&Path>,
) -> anyhow::Result<(Server, PathBuf)> {
    if !binary.is_file() {
        bail!(
            "no tug-kubelet at {} (build it with `cargo build --bin tug-kubelet`, or pass --kubelet)",
            binary.display()
        );
    }
    let dir = temp_dir(work_dir, "kubelet")?;
    let root = dir.path().join("root");
    let mut cmd = Command::new(binary);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--root-dir")
        .arg(&root)
        .args(["--port", "0", "--healthz-port"])
        .arg(free_port()?.to_string())
        .args(args)
        // TUG_BENCH_KUBELET_LOG sets the kubelet's RUST_LOG, to see where
        // the time goes; its log stays in the temporary directory.
        .env(
            "RUST_LOG",
            std::env::var("TUG_BENCH_KUBELET_LOG").unwrap_or_else(|_| "warn".into()),
        );
    Ok((Server::spawn("tug-kubelet", cmd, dir)?, root))
}

pub async fn pod_startup(
    opts: &PodStartupOptions,
    work_dir: Option<&Path>,
) -> anyhow::Result<Value> {
    let (apiserver, creds) = start_apiserver(&opts.apiserver, work_dir).await?;
    let kube_dir = temp_dir(work_dir, "kubeconfig")?;
    let kubeconfig = write_kubeconfig(&creds, &kube_dir)?;
    let mut args: Vec<String> = ["--node-name", NODE, "--runtime", &opts.runtime]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(opts.kubelet_args.iter().cloned());
    let (mut kubelet, _root) = start_kubelet(&opts.kubelet, &kubeconfig, &args, work_dir)?;
    let client = creds.kube_client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    wait_until(
        &mut kubelet,
        Duration::from_secs(60),
        "the node Ready",
        || async {
            match nodes.get_opt(NODE).await? {
                Some(n) if is_ready(&n) => Ok(()),
                _ => bail!("not Ready yet"),
            }
        },
    )
    .await?;
    eprintln!(
        "tug-bench: node {NODE} Ready (kubelet pid {:?})",
        kubelet.pid()
    );

    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);

    // The watch is open before the first create.
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let all_running = Arc::new(Notify::new());
    let mut events = watcher(pods.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    // The first event is the (empty) initial list: the watch is established.
    let _ = events.next().await;
    let watch = {
        let running = running.clone();
        let all_running = all_running.clone();
        let want = opts.pods;
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = event else {
                    continue;
                };
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                if phase == Some("Running") {
                    let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
                    r.entry(p.metadata.name.clone().unwrap_or_default())
                        .or_insert_with(Instant::now);
                    if r.len() >= want {
                        all_running.notify_one();
                    }
                }
            }
        })
    };

    let cpu_before = (cpu_time(kubelet.pid()), cpu_time(apiserver.pid()));
    let started = Instant::now();
    let qps = opts.qps;
    let sent: Vec<anyhow::Result<(String, Instant)>> = stream::iter(0..opts.pods)
        .map(|i| {
            let pods = pods.clone();
            let image = opts.image.clone();
            async move {
                if let Some(qps) = qps {
                    let due = started + Duration::from_secs_f64(i as f64 / qps);
                    tokio::time::sleep_until(due.into()).await;
                }
                let pod = bench_pod(i, &image)?;
                let name = pod.metadata.name.clone().unwrap_or_default();
                let at = Instant::now();
                pods.create(&PostParams::default(), &pod)
                    .await
                    .with_context(|| format!("creating pod {name}"))?;
                Ok((name, at))
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect()
        .await;
    let mut created = HashMap::new();
    for s in sent {
        let (name, at) = s?;
        created.insert(name, at);
    }
    let complete = tokio::time::timeout(opts.timeout, all_running.notified())
        .await
        .is_ok()
        || running
            .lock()
            .map(|r| r.len() >= opts.pods)
            .unwrap_or(false);
    let total = started.elapsed();
    let cpu_seconds = |before: Option<Duration>, pid: Option<u32>| match (before, cpu_time(pid)) {
        (Some(b), Some(a)) => round(a.saturating_sub(b).as_secs_f64()),
        _ => Value::Null,
    };
    let kubelet_cpu = cpu_seconds(cpu_before.0, kubelet.pid());
    let apiserver_cpu = cpu_seconds(cpu_before.1, apiserver.pid());
    watch.abort();
    let running = running.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let latencies: Vec<Duration> = created
        .iter()
        .filter_map(|(name, at)| running.get(name).map(|r| r.saturating_duration_since(*at)))
        .collect();
    let summary = Summary::of(latencies);
    let rss = kubelet.rss_mib();

    // Clean up: the pods' processes end with them.
    let _ = pods
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match pods.list(&ListParams::default()).await {
            Ok(l) if l.items.is_empty() => break,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    kubelet.check_running().ok();

    let mut out = json!({
        "benchmark": "pod-startup",
        "pods": opts.pods,
        "runtime": opts.runtime,
        "concurrency": opts.concurrency,
        "qps": opts.qps,
        "running": running.len(),
        "complete": complete,
        "p50_ms": round(summary.p50_ms),
        "p90_ms": round(summary.p90_ms),
        "p99_ms": round(summary.p99_ms),
        "max_ms": round(summary.max_ms),
        "mean_ms": round(summary.mean_ms),
        "seconds_to_all_running": round(total.as_secs_f64()),
        "kubelet_rss_mib": rss.map_or(Value::Null, round),
        "kubelet_cpu_seconds": kubelet_cpu,
        "apiserver_cpu_seconds": apiserver_cpu,
    });
    if !complete {
        out["error"] = json!(format!(
            "only {} of {} pods Running after {:?}; end of the kubelet's log:\n{}",
            running.len(),
            opts.pods,
            opts.timeout,
            kubelet.log_tail()
        ));
    }
    Ok(out)
}

pub async fn hollow_nodes(opts: &HollowOptions, work_dir: Option<&Path>) -> anyhow::Result<Value> {
    let (apiserver, creds) = start_apiserver(&opts.apiserver, work_dir).await?;
    let kube_dir = temp_dir(work_dir, "kubeconfig")?;
    let kubeconfig = write_kubeconfig(&creds, &kube_dir)?;
    let client = creds.kube_client().await?;

    // Ready nodes, and Leases seen written at least twice (created, then
    // renewed), watched from before the kubelet starts.
    let ready: Arc<Mutex<HashSet<String>>> = Arc::default();
    let renewed: Arc<Mutex<HashSet<String>>> = Arc::default();
    let progress = Arc::new(Notify::new());
    let node_watch = {
        let ready = ready.clone();
        let progress = progress.clone();
        let mut events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .boxed();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) = event {
                    if is_ready(&n) {
                        ready
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(n.metadata.name.clone().unwrap_or_default());
                        progress.notify_one();
                    }
                }
            }
        })
    };
    let lease_watch = {
        let renewed = renewed.clone();
        let progress = progress.clone();
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        let mut events = watcher(leases, watcher::Config::default())
            .default_backoff()
            .boxed();
        tokio::spawn(async move {
            let mut first: HashMap<String, String> = HashMap::new();
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) = event {
                    let name = l.metadata.name.clone().unwrap_or_default();
                    let rv = l.metadata.resource_version.clone().unwrap_or_default();
                    match first.get(&name) {
                        None => {
                            first.insert(name, rv);
                        }
                        Some(seen) if *seen != rv => {
                            renewed
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(name);
                            progress.notify_one();
                        }
                        Some(_) => {}
                    }
                }
            }
        })
    };

    let interval = format!("{}ms", opts.lease_renew_interval.as_millis());
    let args: Vec<String> = [
        "--runtime",
        "fake",
        "--node-name",
        "hollow",
        "--nodes",
        &opts.nodes.to_string(),
        "--node-lease-renew-interval",
        &interval,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let started = Instant::now();
    let (mut kubelet, _root) = start_kubelet(&opts.kubelet, &kubeconfig, &args, work_dir)?;
    let mut all_ready_at = None;
    let mut peak_rss: f64 = 0.0;
    let deadline = started + opts.timeout;
    let complete = loop {
        kubelet.check_running()?;
        let n_ready = ready.lock().map(|r| r.len()).unwrap_or(0);
        let n_renewed = renewed.lock().map(|r| r.len()).unwrap_or(0);
        peak_rss = peak_rss.max(kubelet.rss_mib().unwrap_or(0.0));
        if n_ready >= opts.nodes && all_ready_at.is_none() {
            all_ready_at = Some(started.elapsed());
            eprintln!(
                "tug-bench: {} nodes Ready after {:.1}s",
                opts.nodes,
                started.elapsed().as_secs_f64()
            );
        }
        if n_ready >= opts.nodes && n_renewed >= opts.nodes {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        let _ = tokio::time::timeout(Duration::from_millis(250), progress.notified()).await;
    };
    let renewed_at = started.elapsed();
    let kubelet_cpu = cpu_time(kubelet.pid()).map_or(Value::Null, |d| round(d.as_secs_f64()));
    let apiserver_cpu = cpu_time(apiserver.pid()).map_or(Value::Null, |d| round(d.as_secs_f64()));
    // Let it settle a few renewals for a steady-state RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = kubelet.rss_mib();
    node_watch.abort();
    lease_watch.abort();
    let n_ready = ready.lock().map(|r| r.len()).unwrap_or(0);
    let n_renewed = renewed.lock().map(|r| r.len()).unwrap_or(0);
    let mut out = json!({
        "benchmark": "hollow-nodes",
        "nodes": opts.nodes,
        "ready": n_ready,
        "leases_renewed": n_renewed,
        "complete": complete,
        "seconds_to_all_ready": all_ready_at.map_or(Value::Null, |d| round(d.as_secs_f64())),
        "seconds_to_all_leases_renewed": round(renewed_at.as_secs_f64()),
        "lease_renew_interval_seconds": round(opts.lease_renew_interval.as_secs_f64()),
        "kubelet_rss_mib": rss.map_or(Value::Null, round),
        "kubelet_peak_rss_mib": round(peak_rss),
        "kubelet_cpu_seconds": kubelet_cpu,
        "apiserver_cpu_seconds": apiserver_cpu,
    });
    if !complete {
        out["error"] = json!(format!(
            "{n_ready} of {} nodes Ready, {n_renewed} Leases renewed after {:?}; end of the kubelet's log:\n{}",
            opts.nodes,
            opts.timeout,
            kubelet.log_tail()
        ));
    }
    Ok(out)
}
