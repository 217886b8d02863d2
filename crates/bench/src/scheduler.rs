//! `tug-bench scheduler`: scheduling throughput end to end, in the style of
//! upstream's scheduler_perf `SchedulingBasic` / `SchedulingPodAntiAffinity`.
//!
//! 1. start a `tug-apiserver` (as `tug-bench api` does);
//! 2. create `--nodes` Node objects (no kubelets): allocatable cpu 4,
//!    memory 32Gi, 110 pods, a hostname and one of 10 zone labels, Ready;
//! 3. optionally create `--existing-pods` pods already bound (`nodeName`
//!    set), spread round-robin over the nodes;
//! 4. start the scheduler in this process (`tugboat_scheduler::run::run`
//!    with an admin kube-rs client, on this tokio runtime) and wait until it
//!    has seen every node;
//! 5. open a pod watch, then create `--pods` pods (100m cpu, 100Mi) with
//!    `--create-clients` concurrent clients, and wait until the watch shows
//!    every one with `spec.nodeName` set, which is when the API server has
//!    persisted its binding.
//!
//! `pods_per_second` is M over the time from the first create sent to the
//! last binding observed; a pod's latency is from its create being
//! acknowledged to its binding being observed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};

use crate::stats::{round, CpuMeter, Summary};
use crate::tugboat::start_apiserver;

/// The namespace of the pods the benchmark creates.
const NAMESPACE: &str = "sched-bench";
/// Zones the nodes are spread over (`topology.kubernetes.io/zone`).
const ZONES: usize = 10;

/// Flags of one scheduler benchmark run.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub apiserver: PathBuf,
    pub nodes: usize,
    pub pods: usize,
    pub existing_pods: usize,
    pub anti_affinity: bool,
    /// Concurrent creators of nodes and pods.
    pub create_clients: usize,
    /// Give up waiting for bindings after this long.
    pub timeout: Duration,
}

fn node(i: usize) -> anyhow::Result<Node> {
    let name = format!("node-{i}");
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": format!("zone-{}", i % ZONES),
            },
        },
        "spec": {},
        "status": {
            "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "phase": "Running",
        },
    }))?)
}

/// A small pod; `node` binds it at creation, `anti_affinity_group` gives it
/// required anti-affinity by hostname against pods of its own group (as
/// upstream's `pod-with-pod-anti-affinity.yaml`).
fn pod(name: &str, node: Option<&str>, anti_affinity_group: Option<usize>) -> anyhow::Result<Pod> {
    let app = match anti_affinity_group {
        Some(g) => format!("anti-{g}"),
        None if node.is_some() => "existing".to_string(),
        None => "basic".to_string(),
    };
    let mut spec = json!({
        "containers": [{
            "name": "pause",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
        }],
    });
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    if anti_affinity_group.is_some() {
        spec["affinity"] = json!({"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": app}},
                "topologyKey": "kubernetes.io/hostname",
            }],
        }});
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": app}},
        "spec": spec,
    }))?)
}

/// Runs `make(i)` for `0..count` with `clients` requests in flight; returns
/// each acknowledgement's time, by index.
async fn create_all<F, Fut>(count: usize, clients: usize, make: F) -> anyhow::Result<Vec<Instant>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut acked: Vec<(usize, Instant)> = stream::iter(0..count)
        .map(|i| {
            let fut = make(i);
            async move { fut.await.map(|()| (i, Instant::now())) }
        })
        .buffer_unordered(clients.max(1))
        .try_collect()
        .await?;
    acked.sort_unstable_by_key(|(i, _)| *i);
    Ok(acked.into_iter().map(|(_, t)| t).collect())
}

/// When the watch first showed each benchmark pod bound.
#[derive(Default)]
struct Bound {
    at: HashMap<String, Instant>,
}

/// Watches pods in [`NAMESPACE`] and records the first time each measured
/// pod (name starting `pod-`) shows a `nodeName`; `done` is notified when
/// `want` have.
async fn watch_bound(
    client: kube::Client,
    bound: Arc<Mutex<Bound>>,
    want: usize,
    done: Arc<Notify>,
) {
    let api: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("tug-bench: pod watch error (retrying): {e}");
                continue;
            }
        };
        let now = Instant::now();
        let name = pod.metadata.name.unwrap_or_default();
        let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
        if node.is_empty() || !name.starts_with("pod-") {
            continue;
        }
        let mut b = bound.lock().unwrap_or_else(|e| e.into_inner());
        b.at.entry(name).or_insert(now);
        if b.at.len() >= want {
            done.notify_one();
        }
    }
}

pub async fn run(opts: &SchedulerOptions, work_dir: Option<&Path>) -> anyhow::Result<Value> {
    let (server, creds) = start_apiserver(&opts.apiserver, work_dir).await?;
    let pid = server.pid();
    let admin = creds.kube_client().await?;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let clients = opts.create_clients;

    // Nodes.
    let t = Instant::now();
    let nodes: Api<Node> = Api::all(admin.clone());
    create_all(opts.nodes, clients, |i| {
        let nodes = nodes.clone();
        async move {
            nodes.create(&PostParams::default(), &node(i)?).await?;
            Ok(())
        }
    })
    .await
    .context("creating nodes")?;
    let nodes_seconds = t.elapsed().as_secs_f64();
    eprintln!("tug-bench: {} nodes in {nodes_seconds:.1}s", opts.nodes);

    // Pods already bound.
    let t = Instant::now();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    let n = opts.nodes.max(1);
    create_all(opts.existing_pods, clients, |i| {
        let pods = pods.clone();
        async move {
            let p = pod(
                &format!("existing-{i}"),
                Some(&format!("node-{}", i % n)),
                None,
            )?;
            pods.create(&PostParams::default(), &p).await?;
            Ok(())
        }
    })
    .await
    .context("creating existing pods")?;
    let existing_seconds = t.elapsed().as_secs_f64();
    if opts.existing_pods > 0 {
        eprintln!(
            "tug-bench: {} existing pods in {existing_seconds:.1}s",
            opts.existing_pods
        );
    }

    // The scheduler, in process, with its own client (connection pool).
    let sched_client = creds.kube_client().await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let scheduler = tokio::spawn(tugboat_scheduler::run::run(
        sched_client,
        tugboat_scheduler::run::Config::default(),
        async move {
            let _ = stopped.await;
        },
    ));

    // The watch that sees bindings, synced before the first create.
    let bound = Arc::new(Mutex::new(Bound::default()));
    let done = Arc::new(Notify::new());
    let watch = tokio::spawn(watch_bound(
        creds.kube_client().await?,
        bound.clone(),
        opts.pods,
        done.clone(),
    ));
    // Let the scheduler's and the benchmark's watchers list nodes and pods
    // first: scheduling an empty cluster is not what is measured. There is
    // no hook into the scheduler's cache, so wait for its node list to be
    // served, plus a margin proportional to the list size.
    let t = Instant::now();
    pods.list(&ListParams::default().limit(1)).await?;
    tokio::time::sleep(Duration::from_millis(500 + (opts.nodes as u64) / 5)).await;
    let warmup_seconds = t.elapsed().as_secs_f64();

    // Measured pods.
    let groups = if opts.anti_affinity {
        opts.pods.div_ceil(n).max(1)
    } else {
        0
    };
    let meter = CpuMeter::start(pid);
    let started = Instant::now();
    let measured = opts.pods;
    let acked = create_all(measured, clients, |i| {
        let pods = pods.clone();
        async move {
            let p = pod(
                &format!("pod-{i}"),
                None,
                opts.anti_affinity.then(|| i % groups),
            )?;
            pods.create(&PostParams::default(), &p).await?;
            Ok(())
        }
    })
    .await
    .context("creating pods")?;
    let create_seconds = started.elapsed().as_secs_f64();
    eprintln!("tug-bench: {measured} pods created in {create_seconds:.1}s");

    let deadline = started + opts.timeout;
    loop {
        let count = bound.lock().unwrap_or_else(|e| e.into_inner()).at.len();
        if count >= measured || Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            _ = done.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let cpu = meter.finish();
    let rss = server.rss_mib();
    let bound = std::mem::take(&mut *bound.lock().unwrap_or_else(|e| e.into_inner()));
    let last = bound.at.values().max().copied().unwrap_or(started);
    let wall = last.saturating_duration_since(started).as_secs_f64();
    let latencies = (0..measured)
        .filter_map(|i| {
            let at = bound.at.get(&format!("pod-{i}"))?;
            Some(at.saturating_duration_since(acked[i]))
        })
        .collect();
    let summary = Summary::of(latencies);
    let complete = bound.at.len() >= measured;
    if !complete {
        eprintln!(
            "tug-bench: timed out: {} of {measured} pods bound after {:?}",
            bound.at.len(),
            opts.timeout
        );
    }

    let _ = stop.send(());
    watch.abort();
    match tokio::time::timeout(Duration::from_secs(5), scheduler).await {
        Ok(Ok(Err(e))) => eprintln!("tug-bench: scheduler ended with an error: {e:#}"),
        Ok(_) => {}
        Err(_) => eprintln!("tug-bench: scheduler did not stop within 5s"),
    }
    server.stop().await?;

    Ok(json!({
        "target": "scheduler",
        "nodes": opts.nodes,
        "pods": measured,
        "existing_pods": opts.existing_pods,
        "anti_affinity": opts.anti_affinity,
        "anti_affinity_groups": groups,
        "create_clients": clients,
        "complete": complete,
        "bound": bound.at.len(),
        "pods_per_second": if wall > 0.0 { round(bound.at.len() as f64 / wall) } else { Value::Null },
        "schedule_seconds": round(wall),
        "p50_schedule_latency_ms": round(summary.p50_ms),
        "p90_schedule_latency_ms": round(summary.p90_ms),
        "p99_schedule_latency_ms": round(summary.p99_ms),
        "max_schedule_latency_ms": round(summary.max_ms),
        "create_phase_seconds": round(create_seconds),
        "create_per_second": round(measured as f64 / create_seconds.max(1e-9)),
        "setup": {
            "nodes_seconds": round(nodes_seconds),
            "existing_pods_seconds": round(existing_seconds),
            "warmup_seconds": round(warmup_seconds),
        },
        "cpu": cpu,
        "server_rss_mib": rss.map(round),
    }))
}
