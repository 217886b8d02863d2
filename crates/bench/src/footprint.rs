//! `tug-bench footprint`: what a whole `tugboat server` (API server,
//! scheduler, controller-manager, kubelet and proxy in one process) costs
//! in memory, idle and under a large workload — the figure k3s publishes
//! for its server.
//!
//! **idle**: `tugboat server --runtime process --node-name fp` on a fresh
//! data dir and free ports. `startup_ms` runs from just before the process
//! is spawned until `/healthz` answers `ok` and Node `fp` is Ready (polled
//! every 10 ms with the admin kubeconfig the server writes); the server's
//! own "ready in N ms" line is reported beside it. After `--settle-seconds`
//! of nothing, the process's `VmRSS` is `idle_rss_mib` (with `VmHWM`,
//! `RssAnon`/`RssFile` — heap against binary pages — and the thread count).
//!
//! **loaded**: a second server on a fresh data dir, `--runtime none
//! --simulate-nodes N` (hollow nodes only, so no pod runs a real process).
//! Once all N nodes are Ready, `--pods` pods are created as Deployments of
//! `--replicas` (the controllers and the scheduler place them; `--replicas
//! 0` creates bare pods the scheduler binds) by `--create-clients`
//! concurrent clients, and a pod watch opened before the first create
//! counts them until every one is Running (`seconds_to_load`, from the
//! first create). After `--settle-seconds` more, `VmRSS` is
//! `loaded_rss_mib`; the peak sampled every 500 ms (and `VmHWM`) is beside
//! it.
//!
//! A phase that fails or times out still prints what it measured, with an
//! `error`, and `tug-bench` exits non-zero.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};
use tokio::process::Command;
use tokio::sync::Notify;

use crate::client::Credentials;
use crate::process::{free_port, temp_dir, ProcStatus, Server};
use crate::stats::{cpu_time, round};

/// The idle target of issue 8, in MiB.
pub const IDLE_TARGET_MIB: f64 = 60.0;
/// The loaded target of issue 8 (1 GiB), in MiB.
pub const LOADED_TARGET_MIB: f64 = 1024.0;
/// The node name both servers get (hollow nodes are `fp-sim-<i>`).
const NODE: &str = "fp";
/// The namespace of the loaded phase's workload.
const NAMESPACE: &str = "footprint";
/// Pods one hollow node takes (the kubelet's default `maxPods`).
const PODS_PER_NODE: usize = 110;

/// Which phases to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Idle,
    Loaded,
    Both,
}

/// Flags of `tug-bench footprint`.
#[derive(Debug, Clone)]
pub struct FootprintOptions {
    pub tugboat: PathBuf,
    pub phase: Phase,
    pub nodes: usize,
    pub pods: usize,
    /// Pods per Deployment; 0 creates bare pods.
    pub replicas: usize,
    pub create_clients: usize,
    pub settle: Duration,
    pub timeout: Duration,
    /// More `tugboat server` flags, for both phases.
    pub server_args: Vec<String>,
}

/// A process's figures as JSON, memory in MiB.
fn status_json(s: ProcStatus) -> Value {
    json!({
        "rss_mib": mib(s.vm_rss),
        "hwm_mib": mib(s.vm_hwm),
        "rss_anon_mib": mib(s.rss_anon),
        "rss_file_mib": mib(s.rss_file),
        "threads": s.threads,
    })
}

/// KiB as MiB, rounded for the JSON.
fn mib(kib: u64) -> Value {
    round(kib as f64 / 1024.0)
}

/// The `ready in N ms` the server prints once it is up, from its log.
pub fn reported_ready_ms(log: &str) -> Option<u64> {
    log.lines().find_map(|l| {
        l.split_once("tugboat server ready in ")?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// How `pods` pods are split into Deployments of `replicas`: full ones,
/// then one with the rest. `replicas == 0` means no Deployments.
pub fn deployment_sizes(pods: usize, replicas: usize) -> Vec<usize> {
    if replicas == 0 {
        return Vec::new();
    }
    let mut sizes = vec![replicas; pods / replicas];
    if !pods.is_multiple_of(replicas) {
        sizes.push(pods % replicas);
    }
    sizes
}

/// A figure against its target: `{"target", "met"}` (`met` null when the
/// figure is missing).
pub fn against_target(value: Option<f64>, target: f64) -> Value {
    json!({
        "target": target,
        "met": value.map(|v| v <= target),
    })
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A started server, its admin kubeconfig (once written) and its log.
struct Started {
    server: Server,
    kubeconfig: PathBuf,
    log: PathBuf,
}

/// Starts `tugboat server` on a fresh data dir and free ports.
fn spawn_server(
    opts: &FootprintOptions,
    extra: &[&str],
    work_dir: Option<&Path>,
) -> anyhow::Result<Started> {
    if !opts.tugboat.is_file() {
        bail!(
            "no tugboat at {} (build it with `cargo build --release -p tugboat`, or pass --tugboat)",
            opts.tugboat.display()
        );
    }
    let dir = temp_dir(work_dir, "footprint")?;
    let data = dir.path().join("data");
    let mut cmd = Command::new(&opts.tugboat);
    cmd.arg("server")
        .arg("--data-dir")
        .arg(&data)
        .args(["--https-port", &free_port()?.to_string()])
        .args(["--kubelet-port", &free_port()?.to_string()])
        .args(["--node-name", NODE])
        .args(extra)
        .args(&opts.server_args)
        // Logging at info would itself cost memory and CPU under load.
        .env("RUST_LOG", "warn");
    // Server::spawn names the log after the process.
    let log = dir.path().join("tugboat.log");
    let server = Server::spawn("tugboat", cmd, dir)?;
    Ok(Started {
        server,
        kubeconfig: data.join("admin.kubeconfig"),
        log,
    })
}

/// Polls every 10 ms until `probe` succeeds, the server exits or the
/// deadline passes.
async fn poll<T, F, Fut>(
    server: &mut Server,
    deadline: Instant,
    what: &str,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    loop {
        server.check_running()?;
        match probe().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => {
                bail!("{what}: {e:#}; end of the log:\n{}", server.log_tail())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Waits for the admin kubeconfig and `/healthz` ok; returns an admin
/// client.
async fn wait_healthy(
    server: &mut Server,
    kubeconfig: &Path,
    deadline: Instant,
) -> anyhow::Result<kube::Client> {
    let creds = poll(server, deadline, "admin.kubeconfig", || async {
        Credentials::from_kubeconfig(kubeconfig)
    })
    .await?;
    let client = creds.kube_client().await?;
    poll(server, deadline, "/healthz", || async {
        let req = http::Request::get("/healthz").body(Vec::new())?;
        match client.request_text(req).await?.as_str() {
            "ok" => Ok(()),
            other => bail!("/healthz said {other:?}"),
        }
    })
    .await?;
    Ok(client)
}

/// Waits `settle`, then reads the process's status.
async fn settle(server: &mut Server, settle: Duration) -> anyhow::Result<ProcStatus> {
    tokio::time::sleep(settle).await;
    server.check_running()?;
    ProcStatus::of(server.pid()).context("reading /proc/<pid>/status")
}

/// Asks the server to stop (SIGTERM, as Ctrl-C would) so that it takes
/// down its proxy rules and leaves nothing behind; kills it after 20 s.
async fn stop(server: Server) {
    if let Some(pid) = server.pid() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && ProcStatus::of(Some(pid)).is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = server.stop().await;
}

/// The idle phase: start-up time and idle memory.
async fn idle(opts: &FootprintOptions, work_dir: Option<&Path>) -> anyhow::Result<Value> {
    let started = Instant::now();
    let Started {
        mut server,
        kubeconfig,
        log,
    } = spawn_server(opts, &["--runtime", "process"], work_dir)?;
    let deadline = started + Duration::from_secs(60);
    let client = wait_healthy(&mut server, &kubeconfig, deadline).await?;
    let nodes: Api<Node> = Api::all(client);
    poll(&mut server, deadline, "node Ready", || async {
        match nodes.get_opt(NODE).await? {
            Some(n) if is_ready(&n) => Ok(()),
            _ => bail!("node {NODE} not Ready yet"),
        }
    })
    .await?;
    let startup = started.elapsed();
    let at_ready = ProcStatus::of(server.pid());
    eprintln!(
        "tug-bench: tugboat server ready in {} ms (pid {:?}); idle for {:?}",
        startup.as_millis(),
        server.pid(),
        opts.settle
    );
    let status = settle(&mut server, opts.settle).await?;
    let reported = std::fs::read_to_string(&log)
        .ok()
        .and_then(|log| reported_ready_ms(&log));
    stop(server).await;
    let mut out = json!({
        "startup_ms": startup.as_millis() as u64,
        "server_reported_ready_ms": reported,
        "rss_mib_at_ready": at_ready.map(|s| mib(s.vm_rss)),
        "settle_seconds": opts.settle.as_secs_f64(),
    });
    merge(&mut out, status_json(status));
    Ok(out)
}

/// Counts pods of the namespace seen Running.
async fn watch_running(
    client: kube::Client,
    want: usize,
    running: Arc<Mutex<HashSet<String>>>,
    all: Arc<Notify>,
) {
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let mut events = watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let p = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("tug-bench: pod watch error (retrying): {e}");
                continue;
            }
        };
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
            r.insert(p.metadata.name.unwrap_or_default());
            if r.len() >= want {
                all.notify_one();
            }
        }
    }
}

fn deployment(i: usize, replicas: usize) -> anyhow::Result<Deployment> {
    crate::controllers::pause_deployment(
        &format!("fp-{i}"),
        NAMESPACE,
        i32::try_from(replicas).unwrap_or(i32::MAX),
    )
}

fn bare_pod(i: usize) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("fp-{i}"), "namespace": NAMESPACE, "labels": {"app": "fp"}},
        "spec": {"containers": [{
            "name": "pause",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        }]},
    }))?)
}

/// The loaded phase: hollow nodes, a workload, and the memory it costs.
async fn loaded(
    opts: &FootprintOptions,
    work_dir: Option<&Path>,
    out: &mut Value,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let nodes_arg = opts.nodes.to_string();
    let Started {
        mut server,
        kubeconfig,
        ..
    } = spawn_server(
        opts,
        &["--runtime", "none", "--simulate-nodes", &nodes_arg],
        work_dir,
    )?;
    let pid = server.pid();
    let peak = Arc::new(Mutex::new(0u64));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(s) = ProcStatus::of(pid) {
                    let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                    *p = (*p).max(s.vm_rss);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let result = async {
        let deadline = started + opts.timeout;
        let client = wait_healthy(&mut server, &kubeconfig, deadline).await?;
        let nodes: Api<Node> = Api::all(client.clone());
        let want = opts.nodes;
        poll(&mut server, deadline, "hollow nodes Ready", || async {
            let list = nodes.list(&ListParams::default()).await?;
            let ready = list.items.iter().filter(|n| is_ready(n)).count();
            if ready < want {
                bail!("{ready} of {want} nodes Ready");
            }
            Ok(())
        })
        .await?;
        out["nodes_ready_seconds"] = round(started.elapsed().as_secs_f64());
        out["rss_mib_nodes_ready"] = json!(ProcStatus::of(pid).map(|s| mib(s.vm_rss)));
        eprintln!(
            "tug-bench: {} hollow nodes Ready after {:.1}s",
            opts.nodes,
            started.elapsed().as_secs_f64()
        );

        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let running: Arc<Mutex<HashSet<String>>> = Arc::default();
        let all = Arc::new(Notify::new());
        let watch = tokio::spawn(watch_running(
            client.clone(),
            opts.pods,
            running.clone(),
            all.clone(),
        ));
        let cpu_before = cpu_time(pid);
        let load_started = Instant::now();
        let creds = Credentials::from_kubeconfig(&kubeconfig)?;
        let mut clients = Vec::new();
        for _ in 0..opts.create_clients.max(1) {
            clients.push(creds.kube_client().await?);
        }
        let clients = Arc::new(clients);
        let sizes = deployment_sizes(opts.pods, opts.replicas);
        let objects = if sizes.is_empty() {
            opts.pods
        } else {
            sizes.len()
        };
        let sizes = Arc::new(sizes);
        stream::iter(0..objects)
            .map(|i| {
                let clients = clients.clone();
                let sizes = sizes.clone();
                async move {
                    let client = clients[i % clients.len()].clone();
                    let pp = PostParams::default();
                    match sizes.get(i) {
                        Some(&replicas) => {
                            Api::<Deployment>::namespaced(client, NAMESPACE)
                                .create(&pp, &deployment(i, replicas)?)
                                .await?;
                        }
                        None => {
                            Api::<Pod>::namespaced(client, NAMESPACE)
                                .create(&pp, &bare_pod(i)?)
                                .await?;
                        }
                    }
                    anyhow::Ok(())
                }
            })
            .buffer_unordered(opts.create_clients.max(1))
            .try_collect::<()>()
            .await
            .context("creating the workload")?;
        out["create_seconds"] = round(load_started.elapsed().as_secs_f64());
        eprintln!(
            "tug-bench: {objects} {} created in {:.1}s",
            if opts.replicas == 0 {
                "pods"
            } else {
                "Deployments"
            },
            load_started.elapsed().as_secs_f64()
        );
        let count = || running.lock().map(|r| r.len()).unwrap_or(0);
        loop {
            server.check_running()?;
            if count() >= opts.pods {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "only {} of {} pods Running after {:?}",
                    count(),
                    opts.pods,
                    opts.timeout
                );
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), all.notified()).await;
            eprintln!(
                "tug-bench: {} of {} pods Running ({:.0}s)",
                count(),
                opts.pods,
                load_started.elapsed().as_secs_f64()
            );
        }
        let seconds = load_started.elapsed().as_secs_f64();
        out["seconds_to_load"] = round(seconds);
        out["cpu_seconds_to_load"] = match (cpu_before, cpu_time(pid)) {
            (Some(b), Some(a)) => round(a.saturating_sub(b).as_secs_f64()),
            _ => Value::Null,
        };
        out["rss_mib_all_running"] = json!(ProcStatus::of(pid).map(|s| mib(s.vm_rss)));
        watch.abort();
        eprintln!(
            "tug-bench: all {} pods Running after {seconds:.1}s; settling for {:?}",
            opts.pods, opts.settle
        );
        let status = settle(&mut server, opts.settle).await?;
        merge(out, status_json(status));
        anyhow::Ok(())
    }
    .await;
    sampler.abort();
    let sampled = *peak.lock().unwrap_or_else(|e| e.into_inner());
    let hwm = ProcStatus::of(pid).map_or(0, |s| s.vm_hwm);
    out["peak_rss_mib"] = mib(sampled.max(hwm));
    if result.is_err() {
        out["log_tail"] = json!(server.log_tail());
    }
    stop(server).await;
    result
}

/// Adds `extra`'s keys to `out` (both objects).
fn merge(out: &mut Value, extra: Value) {
    if let (Value::Object(out), Value::Object(extra)) = (out, extra) {
        out.extend(extra);
    }
}

pub async fn run(opts: &FootprintOptions, work_dir: Option<&Path>) -> anyhow::Result<Value> {
    let deployments = deployment_sizes(opts.pods, opts.replicas).len();
    let mut out = json!({
        "benchmark": "footprint",
        "tugboat": opts.tugboat.display().to_string(),
        "server_args": opts.server_args,
    });
    let mut errors = Vec::new();
    if matches!(opts.phase, Phase::Idle | Phase::Both) {
        match idle(opts, work_dir).await {
            Ok(idle) => {
                out["startup_ms"] = idle["startup_ms"].clone();
                out["idle_rss_mib"] = idle["rss_mib"].clone();
                out["idle_rss_target"] = against_target(idle["rss_mib"].as_f64(), IDLE_TARGET_MIB);
                out["idle"] = idle;
            }
            Err(e) => errors.push(format!("idle: {e:#}")),
        }
    }
    if matches!(opts.phase, Phase::Loaded | Phase::Both) {
        anyhow::ensure!(
            opts.pods <= opts.nodes * PODS_PER_NODE,
            "{} pods do not fit on {} nodes of {PODS_PER_NODE} pods: raise --nodes",
            opts.pods,
            opts.nodes
        );
        let mut loaded_out = json!({
            "nodes": opts.nodes,
            "pods": opts.pods,
            "workload": if opts.replicas == 0 {
                "bare pods".to_string()
            } else {
                format!("{deployments} Deployments of up to {} replicas", opts.replicas)
            },
            "create_clients": opts.create_clients,
        });
        let result = loaded(opts, work_dir, &mut loaded_out).await;
        out["loaded_rss_mib"] = loaded_out["rss_mib"].clone();
        out["seconds_to_load"] = loaded_out["seconds_to_load"].clone();
        out["loaded_rss_target"] =
            against_target(loaded_out["rss_mib"].as_f64(), LOADED_TARGET_MIB);
        out["loaded"] = loaded_out;
        if let Err(e) = result {
            errors.push(format!("loaded: {e:#}"));
        }
    }
    if !errors.is_empty() {
        out["error"] = json!(errors.join("\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\ttugboat\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t 1234567 kB\nVmHWM:\t   81920 kB\nVmRSS:\t   51200 kB\n\
        RssAnon:\t   30720 kB\nRssFile:\t   20480 kB\nRssShmem:\t       0 kB\n\
        Threads:\t7\nCpus_allowed_list:\t0-1\n";

    #[test]
    fn proc_status_memory_lines_are_read_in_kib() {
        let s = ProcStatus::parse(STATUS).unwrap();
        assert_eq!(
            s,
            ProcStatus {
                vm_rss: 51200,
                vm_hwm: 81920,
                rss_anon: 30720,
                rss_file: 20480,
                threads: 7,
            }
        );
        // A zombie has no memory lines.
        assert_eq!(ProcStatus::parse("Name:\tx\nState:\tZ (zombie)\n"), None);
        assert!(ProcStatus::of(Some(std::process::id())).is_some_and(|s| s.vm_rss > 0));
    }

    #[test]
    fn status_figures_are_reported_in_mib() {
        let json = status_json(ProcStatus::parse(STATUS).unwrap());
        assert_eq!(
            json,
            json!({
                "rss_mib": 50.0,
                "hwm_mib": 80.0,
                "rss_anon_mib": 30.0,
                "rss_file_mib": 20.0,
                "threads": 7,
            })
        );
        assert_eq!(mib(1536), json!(1.5));
    }

    #[test]
    fn the_servers_own_ready_line_is_found() {
        let log = "2026-11-28T16:00:00Z WARN something\n\
                   tugboat server ready in 812 ms, RSS 40 MiB\nTo use it:\n";
        assert_eq!(reported_ready_ms(log), Some(812));
        assert_eq!(
            reported_ready_ms("tugboat server ready in 95 ms\n"),
            Some(95)
        );
        assert_eq!(reported_ready_ms("starting\n"), None);
    }

    #[test]
    fn pods_are_split_into_deployments() {
        let cases: [(usize, usize, Vec<usize>); 5] = [
            (30_000, 10, vec![10; 3000]),
            (25, 10, vec![10, 10, 5]),
            (5, 10, vec![5]),
            (0, 10, vec![]),
            (100, 0, vec![]),
        ];
        for (pods, replicas, want) in cases {
            let sizes = deployment_sizes(pods, replicas);
            assert_eq!(sizes, want, "{pods} pods by {replicas}");
            if replicas > 0 {
                assert_eq!(sizes.iter().sum::<usize>(), pods);
            }
        }
    }

    #[test]
    fn targets_say_whether_they_are_met() {
        assert_eq!(
            against_target(Some(42.5), IDLE_TARGET_MIB),
            json!({"target": 60.0, "met": true})
        );
        assert_eq!(
            against_target(Some(1500.0), LOADED_TARGET_MIB),
            json!({"target": 1024.0, "met": false})
        );
        assert_eq!(
            against_target(None, IDLE_TARGET_MIB),
            json!({"target": 60.0, "met": null})
        );
    }

    #[test]
    fn the_workload_objects_are_valid() {
        let d = deployment(3, 10).unwrap();
        assert_eq!(d.metadata.name.as_deref(), Some("fp-3"));
        assert_eq!(d.spec.unwrap().replicas, Some(10));
        let p = bare_pod(7).unwrap();
        assert_eq!(p.metadata.namespace.as_deref(), Some(NAMESPACE));
        assert!(
            p.spec.unwrap().node_name.is_none(),
            "the scheduler places it"
        );
    }
}
