//! The scheduler's I/O edges: informers in, bindings, events and pod
//! conditions out, around the pure core (queue, cache, cycle).
//!
//! Two kube-rs watchers feed one [`State`] (cache + queue) behind a std
//! mutex: every critical section is short and never awaits, which is why a
//! std mutex and not tokio's. The scheduling loop pops a pod, takes a
//! snapshot, runs one cycle, assumes the pod on the chosen node and binds it
//! in a spawned task so the next cycle does not wait for the API server.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use tokio::sync::Notify;

use crate::cache::SchedulerCache;
use crate::cycle::{self, Profile};
use crate::metrics::{AttemptResult, Metrics};
use crate::preemption;
use crate::queue::{pod_key, ClusterEvent, PriorityQueue, QueuedPod};
use component_base::events::EventRecorder;
use component_base::intern;
use component_base::transform::for_cache;

/// How the scheduler is set up.
#[derive(Clone)]
pub struct Config {
    /// Pods whose `spec.schedulerName` is this are ours.
    pub scheduler_name: String,
    /// Where attempts, latencies and queue lengths are recorded.
    pub metrics: Arc<Metrics>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            scheduler_name: "default-scheduler".into(),
            metrics: Arc::new(Metrics::new()),
        }
    }
}

/// What the watchers and the scheduling loop share.
#[derive(Default)]
struct State {
    cache: SchedulerCache,
    queue: PriorityQueue,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    config: Config,
    /// Scheduled, FailedScheduling and Preempted events, from
    /// `default-scheduler` as upstream's.
    events: EventRecorder,
    /// Whether the node and the pod watch have each delivered their first
    /// complete list: like upstream's WaitForCacheSync, nothing is
    /// scheduled before, or a pod could be found unschedulable against a
    /// cache that has not heard of the nodes yet.
    nodes_synced: AtomicBool,
    pods_synced: AtomicBool,
}

impl Shared {
    fn synced(&self) -> bool {
        self.nodes_synced.load(Ordering::Acquire) && self.pods_synced.load(Ordering::Acquire)
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let out = f(&mut state);
        self.config.metrics.record_queue(&state.queue);
        out
    }

    fn observe(&self, result: AttemptResult, started: Instant) {
        self.config
            .metrics
            .observe_attempt(result, &self.config.scheduler_name, started.elapsed());
    }
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_unassigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty)
}

fn is_ours(pod: &Pod, config: &Config) -> bool {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or("default-scheduler");
    name == config.scheduler_name
}

/// Run until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Notify::new(),
        config,
        events: EventRecorder::new(client.clone(), "default-scheduler"),
        nodes_synced: AtomicBool::new(false),
        pods_synced: AtomicBool::new(false),
    });
    let nodes = tokio::spawn(watch_nodes(client.clone(), shared.clone()));
    let pods = tokio::spawn(watch_pods(client.clone(), shared.clone()));
    tokio::select! {
        _ = shutdown => {}
        _ = schedule_loop(client, shared) => {}
    }
    nodes.abort();
    pods.abort();
    Ok(())
}

async fn watch_nodes(client: kube::Client, shared: Arc<Shared>) {
    let api: Api<Node> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default())
        .modify(for_cache)
        .boxed();
    while let Some(event) = events.next().await {
        let now = Instant::now();
        match event {
            Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => {
                shared.with(|s| {
                    s.cache.upsert_node(intern::shared(node));
                    s.queue
                        .move_all_to_active_or_backoff(ClusterEvent::NodeUpdate, now);
                });
                shared.wake.notify_one();
            }
            Ok(watcher::Event::Delete(node)) => {
                let name = node.metadata.name.unwrap_or_default();
                shared.with(|s| s.cache.remove_node(&name));
            }
            Ok(watcher::Event::Init) => {}
            Ok(watcher::Event::InitDone) => {
                shared.nodes_synced.store(true, Ordering::Release);
                shared.wake.notify_one();
            }
            Err(error) => {
                tracing::warn!(%error, "node watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn watch_pods(client: kube::Client, shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default())
        .modify(for_cache)
        .boxed();
    while let Some(event) = events.next().await {
        let now = Instant::now();
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                // Shared with the other components of a `tugboat server`.
                let pod = intern::shared(pod);
                let key = pod_key(&pod);
                shared.with(|s| {
                    if !is_unassigned(&pod) {
                        s.queue.delete(&key);
                        s.cache.upsert_pod(pod.clone());
                        s.queue
                            .move_all_to_active_or_backoff(ClusterEvent::AssignedPodUpdate, now);
                    } else if is_ours(&pod, &shared.config)
                        && !is_terminating(&pod)
                        && !s.cache.is_assumed(&key)
                    {
                        s.queue.update(pod.clone(), now);
                    }
                });
                shared.wake.notify_one();
            }
            Ok(watcher::Event::Delete(pod)) => {
                let key = pod_key(&pod);
                shared.with(|s| {
                    s.queue.delete(&key);
                    s.cache.remove_pod(&key);
                    s.queue
                        .move_all_to_active_or_backoff(ClusterEvent::PodDelete, now);
                });
                shared.wake.notify_one();
            }
            Ok(watcher::Event::Init) => {}
            Ok(watcher::Event::InitDone) => {
                shared.pods_synced.store(true, Ordering::Release);
                shared.wake.notify_one();
            }
            Err(error) => {
                tracing::warn!(%error, "pod watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn schedule_loop(client: kube::Client, shared: Arc<Shared>) {
    let profile = Arc::new(Profile::default_profile());
    let mut start_index = 0;
    while !shared.synced() {
        shared.wake.notified().await;
    }
    loop {
        let now = Instant::now();
        let next = shared.with(|s| match s.queue.pop(now) {
            Some(qp) => Ok((qp, s.cache.snapshot())),
            None => Err(s.queue.next_ready_in(now)),
        });
        let (queued, snapshot) = match next {
            Ok(found) => found,
            Err(wait) => {
                let sleep = wait.unwrap_or(Duration::from_secs(1));
                tokio::select! {
                    _ = shared.wake.notified() => {}
                    _ = tokio::time::sleep(sleep) => {}
                }
                continue;
            }
        };
        let started = Instant::now();
        let pod = queued.pod.clone();
        match cycle::schedule(&profile, &pod, &snapshot, start_index) {
            Ok(result) => {
                start_index = result.next_start_index;
                // The pod stays in flight until its binding is answered,
                // so a failed binding goes to backoff (upstream's binding
                // cycle), not straight back to the active queue.
                shared.with(|s| s.cache.assume(&pod, &result.node));
                tokio::spawn(bind(
                    client.clone(),
                    shared.clone(),
                    queued,
                    result.node,
                    started,
                ));
            }
            Err(fit) => {
                shared.observe(AttemptResult::Unschedulable, started);
                shared.with(|s| s.queue.add_unschedulable(queued, false, Instant::now()));
                tokio::spawn(post_filter(
                    client.clone(),
                    shared.events.clone(),
                    profile.clone(),
                    pod,
                    snapshot,
                    fit,
                ));
            }
        }
    }
}

/// `pods/binding`, then the `Scheduled` event; a failed binding forgets the
/// assumption and sends the pod back to the queue.
async fn bind(
    client: kube::Client,
    shared: Arc<Shared>,
    queued: QueuedPod,
    node: String,
    started: Instant,
) {
    let pod = queued.pod.clone();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let request = http::Request::post(format!(
        "/api/v1/namespaces/{namespace}/pods/{name}/binding"
    ))
    .header("Content-Type", "application/json")
    .body(serde_json::to_vec(&binding).unwrap_or_default());
    let result = match request {
        Ok(r) => client.request::<serde_json::Value>(r).await.map(|_| ()),
        Err(e) => Err(kube::Error::HttpError(e)),
    };
    match result {
        Ok(()) => {
            shared.with(|s| s.queue.done(&queued.key));
            // Upstream counts an attempt scheduled once its binding is.
            shared.observe(AttemptResult::Scheduled, started);
            let message = format!("Successfully assigned {namespace}/{name} to {node}");
            shared.events.normal(pod.as_ref(), "Scheduled", message);
        }
        Err(error) => {
            shared.observe(AttemptResult::Error, started);
            tracing::warn!(%error, pod = %format!("{namespace}/{name}"), "bind failed");
            shared.with(|s| {
                s.cache.forget(&queued.key);
                // Back off; a pod deleted meanwhile is not in flight any
                // more and is dropped here.
                s.queue.add_unschedulable(queued, true, Instant::now());
            });
            shared.wake.notify_one();
        }
    }
}

/// Upstream's PostFilter: try preemption, then report. When victims are
/// found they are deleted and the pod is nominated to their node; it is
/// scheduled there once the victims are gone (their deletion moves it back
/// to the active queue).
async fn post_filter(
    client: kube::Client,
    events: EventRecorder,
    profile: Arc<Profile>,
    pod: Arc<Pod>,
    snapshot: crate::framework::Snapshot,
    mut fit: cycle::FitError,
) {
    let budgets: Api<PodDisruptionBudget> = Api::all(client.clone());
    let pdbs = match budgets.list(&Default::default()).await {
        Ok(list) => list.items,
        Err(error) => {
            tracing::warn!(%error, "could not list PodDisruptionBudgets; preempting without them");
            Vec::new()
        }
    };
    match preemption::preempt(&profile, &pod, &snapshot, &fit, &pdbs) {
        Ok(candidate) => {
            nominate(&client, &pod, &candidate.node).await;
            for victim in &candidate.victims {
                evict_victim(&client, &events, &pod, victim, &candidate.node).await;
            }
            fit.post_filter_msg = Some(cycle::preemption_message(&format!(
                "{} victims on node {}",
                candidate.victims.len(),
                candidate.node
            )));
        }
        Err(message) => fit.post_filter_msg = Some(cycle::preemption_message(&message)),
    }
    report_unschedulable(client, &events, pod, fit.to_string()).await;
}

/// `status.nominatedNodeName`: where the pod will go once room is made.
async fn nominate(client: &kube::Client, pod: &Pod, node: &str) {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let patch = kube::api::Patch::Merge(json!({"status": {"nominatedNodeName": node}}));
    if let Err(error) = pods
        .patch_status(&name, &kube::api::PatchParams::default(), &patch)
        .await
    {
        tracing::warn!(%error, pod = %name, "could not nominate");
    }
}

/// Delete one victim, with its own grace period, and say why on it.
async fn evict_victim(
    client: &kube::Client,
    events: &EventRecorder,
    preemptor: &Pod,
    victim: &Pod,
    node: &str,
) {
    let namespace = victim.metadata.namespace.clone().unwrap_or_default();
    let name = victim.metadata.name.clone().unwrap_or_default();
    let message = format!(
        "Preempted by pod {} on node {node}",
        preemptor.metadata.uid.as_deref().unwrap_or("")
    );
    events.normal(victim, "Preempted", message);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    if let Err(error) = pods.delete(&name, &Default::default()).await {
        tracing::warn!(%error, victim = %name, "could not delete preemption victim");
    }
}

/// `FailedScheduling` event and the `PodScheduled=False` condition.
async fn report_unschedulable(
    client: kube::Client,
    events: &EventRecorder,
    pod: Arc<Pod>,
    message: String,
) {
    events.warning(pod.as_ref(), "FailedScheduling", message.clone());
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let now = api::meta::format_time(chrono_now());
    let patch = json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": now,
    }]}});
    let params = kube::api::PatchParams::default();
    if let Err(error) = pods
        .patch_status(&name, &params, &kube::api::Patch::Strategic(patch))
        .await
    {
        tracing::debug!(%error, pod = %name, "could not set PodScheduled=False");
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
