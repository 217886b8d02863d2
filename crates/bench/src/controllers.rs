//! `tug-bench controllers`: how long the control plane takes to bring many
//! Deployments up on hollow nodes, and what the controller manager costs in
//! memory while it does — upstream's kubemark density test in small.
//!
//! 1. start the real binaries from the target directory of `tug-bench`:
//!    `tug-apiserver` (fresh temporary data dir; its `admin.kubeconfig` is
//!    what the others use), `tug-scheduler` and `tug-controller-manager`
//!    (leader election off, health ports on free ports, logs in their own
//!    temporary directories);
//! 2. start `--nodes` hollow kubelets in this process
//!    ([`kubelet::HollowNodes`], fake runtime, 8 cpu / 32Gi / 110 pods
//!    each) and wait until all are registered;
//! 3. create `--deployments` Deployments of `--replicas` pause pods
//!    (10m cpu, 16Mi each) with `--create-clients` concurrent clients;
//! 4. watch Deployments until every one reports `availableReplicas ==
//!    replicas`, sampling the resident memory of the controller manager
//!    and the API server every 250 ms (and reading their `VmHWM` at the
//!    end), or give up after `--timeout-seconds`.
//!
//! The JSON has `seconds_to_all_ready` (first create sent → last
//! Deployment seen available), the peak RSS of the controller manager,
//! API server and scheduler, and their CPU seconds over step 3-4. A timeout
//! still prints the figures, with `complete: false` and an `error`, and
//! `tug-bench` exits non-zero.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};
use tokio::process::Command;
use tokio::sync::Notify;

use crate::process::{free_port, temp_dir, wait_until, ProcStatus, Server};
use crate::stats::{cpu_time, round};
use crate::tugboat::start_apiserver;

/// The namespace of the benchmark's Deployments.
const NAMESPACE: &str = "controllers-bench";

/// Flags of one controllers benchmark run.
#[derive(Debug, Clone)]
pub struct ControllersOptions {
    pub apiserver: PathBuf,
    pub scheduler: PathBuf,
    pub controller_manager: PathBuf,
    pub deployments: usize,
    pub replicas: i32,
    pub nodes: usize,
    pub create_clients: usize,
    pub timeout: Duration,
}

/// A binary next to this executable (cargo puts a workspace's binaries in
/// one target directory).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(name))
}

fn deployment(i: usize, replicas: i32) -> anyhow::Result<Deployment> {
    pause_deployment(&format!("dep-{i}"), NAMESPACE, replicas)
}

/// A Deployment of `replicas` pause pods (10m CPU, 16Mi each) labelled
/// `app: <name>`: the workload the controller and footprint benches create.
pub fn pause_deployment(name: &str, namespace: &str, replicas: i32) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "pause",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                }]},
            },
        },
    }))?)
}

/// A memory figure of `/proc/<pid>/status` in MiB (`None`: this process).
fn proc_status_mib(pid: Option<u32>, field: fn(&ProcStatus) -> u64) -> Option<f64> {
    ProcStatus::of(pid).map(|s| ProcStatus::mib(field(&s)))
}

/// Peak resident memory seen so far, by process.
#[derive(Default)]
struct Peaks {
    mib: HashMap<&'static str, f64>,
}

/// Samples `VmRSS` of `pids` every 250 ms into `peaks`, until aborted.
async fn sample_rss(pids: Vec<(&'static str, Option<u32>)>, peaks: Arc<Mutex<Peaks>>) {
    loop {
        for (name, pid) in &pids {
            if let Some(rss) = proc_status_mib(*pid, |s| s.vm_rss) {
                let mut p = peaks.lock().unwrap_or_else(|e| e.into_inner());
                let e = p.mib.entry(name).or_insert(0.0);
                *e = e.max(rss);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The peak of a process: its `VmHWM` if still readable, or the sampled
/// maximum, whichever is larger.
fn peak(peaks: &Peaks, name: &str, pid: Option<u32>) -> Value {
    let sampled = peaks.mib.get(name).copied();
    let hwm = proc_status_mib(pid, |s| s.vm_hwm);
    match (sampled, hwm) {
        (Some(a), Some(b)) => round(a.max(b)),
        (Some(x), None) | (None, Some(x)) => round(x),
        (None, None) => Value::Null,
    }
}

/// Which Deployments are fully available, and when the last became so.
#[derive(Default)]
struct Progress {
    available: HashMap<String, i32>,
    done: usize,
    last: Option<Instant>,
}

/// Watches the benchmark's Deployments and counts those whose
/// `availableReplicas` reached `replicas`.
async fn watch_available(
    client: kube::Client,
    replicas: i32,
    want: usize,
    progress: Arc<Mutex<Progress>>,
    all: Arc<Notify>,
) {
    let api: Api<Deployment> = Api::namespaced(client, NAMESPACE);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let d = match event {
            Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => d,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("tug-bench: deployment watch error (retrying): {e}");
                continue;
            }
        };
        let name = d.metadata.name.clone().unwrap_or_default();
        let available = d
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
        let was = p.available.insert(name, available).unwrap_or(0);
        if was < replicas && available >= replicas {
            p.done += 1;
            p.last = Some(Instant::now());
            if p.done >= want {
                all.notify_one();
            }
        } else if was >= replicas && available < replicas {
            p.done -= 1;
        }
    }
}

/// Starts a component binary with the admin kubeconfig, leader election
/// off and its HTTP endpoint on a free port; waits until that port answers.
async fn start_component(
    name: &'static str,
    binary: &Path,
    kubeconfig: &Path,
    port_flag: &str,
    work_dir: Option<&Path>,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let mut cmd = Command::new(binary);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--leader-elect=false")
        .arg(port_flag)
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn");
    let mut server = Server::spawn(name, cmd, temp_dir(work_dir, name)?)?;
    wait_until(&mut server, Duration::from_secs(30), name, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        Ok(())
    })
    .await?;
    eprintln!("tug-bench: {name} running (pid {:?})", server.pid());
    Ok(server)
}

pub async fn run(opts: &ControllersOptions, work_dir: Option<&Path>) -> anyhow::Result<Value> {
    let pods = opts.deployments * usize::try_from(opts.replicas).unwrap_or(0);
    let slots = opts.nodes * 110;
    anyhow::ensure!(
        pods <= slots,
        "{pods} pods do not fit on {} nodes of 110 pods: raise --nodes",
        opts.nodes
    );
    for (name, path) in [
        ("tug-scheduler", &opts.scheduler),
        ("tug-controller-manager", &opts.controller_manager),
    ] {
        if !path.is_file() {
            bail!(
                "no {name} at {} (build it with `cargo build --bin {name}`, or pass its path)",
                path.display()
            );
        }
    }

    let (mut apiserver, creds) = start_apiserver(&opts.apiserver, work_dir).await?;
    let kube_dir = temp_dir(work_dir, "kubeconfig")?;
    let kubeconfig = kube_dir.path().join("admin.kubeconfig");
    std::fs::write(&kubeconfig, serde_yaml::to_string(&creds.kubeconfig)?)
        .context("writing the admin kubeconfig")?;
    let mut scheduler = start_component(
        "tug-scheduler",
        &opts.scheduler,
        &kubeconfig,
        "--metrics-address",
        work_dir,
    )
    .await?;
    let mut manager = start_component(
        "tug-controller-manager",
        &opts.controller_manager,
        &kubeconfig,
        "--health-address",
        work_dir,
    )
    .await?;
    let pids = [
        ("controller_manager", manager.pid()),
        ("apiserver", apiserver.pid()),
        ("scheduler", scheduler.pid()),
    ];
    let peaks = Arc::new(Mutex::new(Peaks::default()));
    let sampler = tokio::spawn(sample_rss(pids.to_vec(), peaks.clone()));

    // Hollow nodes, sharing one client (their own connection pool).
    let t = Instant::now();
    let hollow = kubelet::HollowNodes::start(
        creds.kube_client().await?,
        "hollow",
        opts.nodes,
        &kubelet::KubeletConfig::new("hollow"),
    )
    .await?;
    hollow
        .wait_ready(Duration::from_secs(120))
        .await
        .context("hollow nodes")?;
    let nodes_seconds = t.elapsed().as_secs_f64();
    eprintln!(
        "tug-bench: {} hollow nodes registered in {nodes_seconds:.1}s",
        opts.nodes
    );

    let admin = creds.kube_client().await?;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let progress = Arc::new(Mutex::new(Progress::default()));
    let all = Arc::new(Notify::new());
    let watch = tokio::spawn(watch_available(
        creds.kube_client().await?,
        opts.replicas,
        opts.deployments,
        progress.clone(),
        all.clone(),
    ));

    // The measured part.
    let cpu_before: Vec<_> = pids.iter().map(|(_, pid)| cpu_time(*pid)).collect();
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..opts.create_clients.max(1) {
        clients.push(Api::<Deployment>::namespaced(
            creds.kube_client().await?,
            NAMESPACE,
        ));
    }
    let clients = Arc::new(clients);
    stream::iter(0..opts.deployments)
        .map(|i| {
            let clients = clients.clone();
            let replicas = opts.replicas;
            async move {
                let api = &clients[i % clients.len()];
                api.create(&PostParams::default(), &deployment(i, replicas)?)
                    .await
                    .with_context(|| format!("creating dep-{i}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(opts.create_clients.max(1))
        .try_collect::<()>()
        .await?;
    let create_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "tug-bench: {} deployments created in {create_seconds:.1}s",
        opts.deployments
    );

    let deadline = started + opts.timeout;
    let mut last_report = Instant::now();
    let mut failure: Option<String> = None;
    loop {
        let (done, pods_available) = {
            let p = progress.lock().unwrap_or_else(|e| e.into_inner());
            (
                p.done,
                p.available.values().map(|v| i64::from(*v)).sum::<i64>(),
            )
        };
        if done >= opts.deployments {
            break;
        }
        for server in [&mut apiserver, &mut scheduler, &mut manager] {
            if let Err(e) = server.check_running() {
                failure = Some(format!("{e:#}"));
            }
        }
        if failure.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            failure = Some(format!(
                "timed out after {}s: {done} of {} deployments available ({pods_available} of {pods} pods)",
                opts.timeout.as_secs(),
                opts.deployments
            ));
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            eprintln!(
                "tug-bench: {done}/{} deployments available, {pods_available}/{pods} pods, {} containers running, {:.0}s",
                opts.deployments,
                hollow.running_containers(),
                started.elapsed().as_secs_f64()
            );
        }
        tokio::select! {
            _ = all.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let (done, pods_available, last) = {
        let p = progress.lock().unwrap_or_else(|e| e.into_inner());
        (
            p.done,
            p.available.values().map(|v| i64::from(*v)).sum::<i64>(),
            p.last,
        )
    };
    let cpu: Vec<Value> = pids
        .iter()
        .zip(&cpu_before)
        .map(|((_, pid), before)| match (before, cpu_time(*pid)) {
            (Some(a), Some(b)) => round(b.saturating_sub(*a).as_secs_f64()),
            _ => Value::Null,
        })
        .collect();
    let complete = failure.is_none();
    let seconds_to_all_ready = match (complete, last) {
        (true, Some(at)) => round(at.saturating_duration_since(started).as_secs_f64()),
        (true, None) => round(0.0),
        (false, _) => Value::Null,
    };
    // Peaks are read while the processes still run (VmHWM goes with them).
    let (cm_peak, api_peak, sched_peak) = {
        let p = peaks.lock().unwrap_or_else(|e| e.into_inner());
        (
            peak(&p, "controller_manager", manager.pid()),
            peak(&p, "apiserver", apiserver.pid()),
            peak(&p, "scheduler", scheduler.pid()),
        )
    };
    let bench_peak = proc_status_mib(None, |s| s.vm_hwm).map(round);
    let running = hollow.running_containers();

    sampler.abort();
    watch.abort();
    hollow.shutdown().await;
    let manager_log = manager.log_tail();
    manager.stop().await?;
    scheduler.stop().await?;
    apiserver.stop().await?;
    drop(kube_dir);

    let mut out = json!({
        "target": "controllers",
        "deployments": opts.deployments,
        "replicas": opts.replicas,
        "nodes": opts.nodes,
        "pods": pods,
        "create_clients": opts.create_clients,
        "complete": complete,
        "deployments_available": done,
        "pods_available": pods_available,
        "containers_running": running,
        "seconds_to_all_ready": seconds_to_all_ready,
        "create_phase_seconds": round(create_seconds),
        "controller_manager_peak_rss_mib": cm_peak,
        "apiserver_peak_rss_mib": api_peak,
        "scheduler_peak_rss_mib": sched_peak,
        "bench_process_peak_rss_mib": bench_peak,
        "cpu_seconds": {
            "controller_manager": cpu[0],
            "apiserver": cpu[1],
            "scheduler": cpu[2],
        },
        "setup": {"hollow_nodes_seconds": round(nodes_seconds)},
    });
    if let Some(error) = failure {
        eprintln!("tug-bench: {error}");
        out["error"] = json!(error);
        out["controller_manager_log_tail"] = json!(manager_log);
    }
    Ok(out)
}
