//! The pods bound to this node: a watch with `fieldSelector
//! spec.nodeName=<node>` feeds one [`crate::worker`] per pod UID (a pod
//! recreated under the same name is a new pod), as upstream's pod config
//! and `HandlePodAdditions` / `HandlePodUpdates` / `HandlePodRemoves` do:
//! - a new pod is admitted first ([`admit`], upstream's predicate admit
//!   handler): pods that already finished are never run again, and pods
//!   that do not fit are rejected (phase `Failed`, reason `OutOfcpu` etc.);
//!   pods listed together at start are admitted oldest first;
//! - updates go to the pod's worker (it always sees the newest version);
//! - a pod gone from the API stops its worker, which cleans the runtime up;
//!   after a re-list, pods no longer listed count as gone;
//! - the runtime's container events wake the worker of the pod they
//!   concern; if events were lost, every worker is woken.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinSet;
use tugboat_scheduler::plugins::node_affinity::matches_required_node_affinity;
use tugboat_scheduler::plugins::node_ports::conflicts;
use tugboat_scheduler::plugins::node_resources_fit::fits;
use tugboat_scheduler::plugins::resources::{node_info, pod_host_ports};
use tugboat_scheduler::plugins::taint_toleration::{
    pod_tolerations, tolerations_tolerate_taint, EFFECT_NO_EXECUTE,
};

use crate::status::is_terminal;
use crate::worker::{PodWorker, Start, WorkerContext};

/// The node OS label.
const LABEL_OS: &str = "kubernetes.io/os";

/// Upstream's `IsExtendedResourceName`: a qualified name outside the
/// `kubernetes.io/` namespace (`example.com/gpu`).
fn is_extended_resource_name(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// Extended resources (`example.com/gpu`) the node does not have at all are
/// cluster-level resources, not the kubelet's to check (upstream's
/// `removeMissingExtendedResources`).
fn without_missing_extended_resources(pod: &Pod, node: &Node) -> Pod {
    let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let has = |name: &str| allocatable.is_some_and(|a| a.contains_key(name));
    let mut pod = pod.clone();
    if let Some(spec) = pod.spec.as_mut() {
        let all = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for c in all {
            if let Some(requests) = c.resources.as_mut().and_then(|r| r.requests.as_mut()) {
                requests.retain(|name, _| !is_extended_resource_name(name) || has(name));
            }
        }
    }
    pod
}

/// Whether the node takes `pod`, given the pods it already runs (upstream's
/// `predicateAdmitHandler.Admit`): the OS checks, then the scheduler's
/// resource fit, node affinity and host ports, then `NoExecute` taints.
/// `Err` carries upstream's reason and message.
pub fn admit(pod: &Pod, node: &Arc<Node>, others: Vec<Arc<Pod>>) -> Result<(), (String, String)> {
    let node_os = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_OS))
        .map_or("linux", String::as_str);
    if pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_OS))
        .is_some_and(|os| os != node_os)
    {
        return Err((
            "PodOSSelectorNodeLabelDoesNotMatch".into(),
            "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label".into(),
        ));
    }
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.os.as_ref())
        .is_some_and(|os| os.name != node_os)
    {
        return Err((
            "PodOSNotSupported".into(),
            "Failed to admit pod as the OS field doesn't match node OS".into(),
        ));
    }
    let info = node_info(node.clone(), others);
    let pod = without_missing_extended_resources(pod, node);
    if let Some(r) = fits(&pod, &info).first() {
        let reason = format!("OutOf{}", r.resource);
        let message = format!(
            "Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
            r.resource, r.requested, r.used, r.capacity
        );
        return Err((reason, message));
    }
    let predicate = |name: &str, desc: &str| {
        Err((name.to_string(), format!("Predicate {name} failed: {desc}")))
    };
    if !matches_required_node_affinity(&pod, &info) {
        return predicate(
            "NodeAffinity",
            "node(s) didn't match Pod's node affinity/selector",
        );
    }
    if pod_host_ports(&pod)
        .iter()
        .any(|wanted| conflicts(&info.used_ports, wanted))
    {
        return predicate(
            "NodePorts",
            "node(s) didn't have free ports for the requested pod ports",
        );
    }
    let taints: &[Taint] = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = pod_tolerations(&pod);
    if taints
        .iter()
        .filter(|t| t.effect == EFFECT_NO_EXECUTE)
        .any(|t| !tolerations_tolerate_taint(tolerations, t))
    {
        return predicate(
            "TaintToleration",
            "node(s) had taints that the pod didn't tolerate",
        );
    }
    Ok(())
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn is_finished(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(is_terminal)
}

struct WorkerHandle {
    updates: watch::Sender<Option<Arc<Pod>>>,
    poke: Arc<Notify>,
    active: Arc<AtomicBool>,
}

/// Runs the pods of one node.
pub struct PodManager {
    ctx: Arc<WorkerContext>,
    node_name: String,
    /// The node as last seen (for admission).
    node: watch::Receiver<Arc<Node>>,
    workers: HashMap<String, WorkerHandle>,
    tasks: JoinSet<()>,
}

impl PodManager {
    pub fn new(
        ctx: Arc<WorkerContext>,
        node_name: String,
        node: watch::Receiver<Arc<Node>>,
    ) -> Self {
        PodManager {
            ctx,
            node_name,
            node,
            workers: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    /// The pods admitted and still holding resources.
    fn active_pods(&self) -> Vec<Arc<Pod>> {
        self.workers
            .values()
            .filter(|w| w.active.load(Ordering::SeqCst))
            .filter_map(|w| w.updates.borrow().clone())
            .collect()
    }

    fn spawn(&mut self, pod: Arc<Pod>, start: Start) {
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let poke = Arc::new(Notify::new());
        let active = Arc::new(AtomicBool::new(false));
        let worker = PodWorker::new(self.ctx.clone(), rx, poke.clone(), active.clone(), start);
        self.tasks.spawn(worker.run());
        self.workers.insert(
            uid(&pod),
            WorkerHandle {
                updates: tx,
                poke,
                active,
            },
        );
    }

    /// A pod was added or changed.
    fn apply(&mut self, pod: Pod) {
        let key = uid(&pod);
        if key.is_empty() {
            return;
        }
        let pod = Arc::new(pod);
        if let Some(w) = self.workers.get(&key) {
            w.updates.send_replace(Some(pod));
            return;
        }
        let start = if is_finished(&pod) {
            Start::Finished
        } else if pod.metadata.deletion_timestamp.is_some() {
            // Being deleted before it ever ran here: no admission, the
            // worker goes straight to termination.
            Start::Run
        } else {
            let node = self.node.borrow().clone();
            match admit(&pod, &node, self.active_pods()) {
                Ok(()) => Start::Run,
                Err((reason, message)) => {
                    tracing::info!(pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or("")), %reason, %message, "pod rejected");
                    Start::Rejected(reason, message)
                }
            }
        };
        self.spawn(pod, start);
    }

    /// A pod left the API.
    fn remove(&mut self, key: &str) {
        if let Some(w) = self.workers.remove(key) {
            w.updates.send_replace(None);
        }
    }

    fn poke(&self, pod_uid: &str) {
        if let Some(w) = self.workers.get(pod_uid) {
            w.poke.notify_one();
        }
    }

    fn poke_all(&self) {
        for w in self.workers.values() {
            w.poke.notify_one();
        }
    }

    /// Watches the node's pods until the task is aborted.
    pub async fn run(mut self) {
        let api: Api<Pod> = Api::all(self.ctx.client.clone());
        let config =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.node_name));
        let mut stream = watcher(api, config).default_backoff().boxed();
        let mut events = self.ctx.runtime.container_events();
        let mut relist: Option<Vec<Pod>> = None;
        loop {
            tokio::select! {
                event = stream.next() => {
                    let Some(event) = event else { return };
                    match event {
                        Ok(watcher::Event::Init) => relist = Some(Vec::new()),
                        Ok(watcher::Event::InitApply(pod)) => match relist.as_mut() {
                            Some(list) => list.push(pod),
                            None => self.apply(pod),
                        },
                        Ok(watcher::Event::InitDone) => {
                            let mut pods = relist.take().unwrap_or_default();
                            let listed: HashSet<String> = pods.iter().map(uid).collect();
                            let gone: Vec<String> = self
                                .workers
                                .keys()
                                .filter(|k| !listed.contains(*k))
                                .cloned()
                                .collect();
                            for key in gone {
                                self.remove(&key);
                            }
                            // Upstream admits pods in creation order.
                            pods.sort_by(|a, b| {
                                let ts = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                                ts(a).cmp(&ts(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
                            });
                            for pod in pods {
                                self.apply(pod);
                            }
                        }
                        Ok(watcher::Event::Apply(pod)) => self.apply(pod),
                        Ok(watcher::Event::Delete(pod)) => self.remove(&uid(&pod)),
                        Err(error) => tracing::warn!(%error, "pod watch failed; retrying"),
                    }
                }
                event = events.recv() => match event {
                    Ok(e) => self.poke(&e.pod_uid),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.poke_all(),
                    Err(broadcast::error::RecvError::Closed) => {
                        events = self.ctx.runtime.container_events();
                    }
                },
                Some(done) = self.tasks.join_next() => {
                    if let Err(e) = done {
                        if e.is_panic() {
                            tracing::error!(error = %e, "a pod worker panicked");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(taints: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "n1", "labels": {"kubernetes.io/os": "linux", "disk": "ssd"}},
                "spec": {"taints": taints},
                "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "3"}},
            }))
            .unwrap(),
        )
    }

    fn pod(name: &str, extra: serde_json::Value) -> Arc<Pod> {
        let mut spec = json!({
            "nodeName": "n1",
            "containers": [{"name": "c", "image": "busybox",
                            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}],
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap())
    }

    fn rejection(p: &Pod, node: &Arc<Node>, others: Vec<Arc<Pod>>) -> Option<(String, String)> {
        admit(p, node, others).err()
    }

    #[test]
    fn pods_that_fit_are_admitted() {
        let n = node(json!([]));
        assert_eq!(rejection(&pod("a", json!({})), &n, vec![]), None);
        assert_eq!(
            rejection(&pod("b", json!({})), &n, vec![pod("a", json!({}))]),
            None
        );
    }

    #[test]
    fn pods_that_do_not_fit_are_rejected_like_upstream() {
        let n = node(json!([]));
        let running = vec![pod("a", json!({})), pod("b", json!({}))];
        let big = pod(
            "big",
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1500m"}}}]}),
        );
        assert_eq!(
            rejection(&big, &n, running.clone()),
            Some((
                "OutOfcpu".into(),
                "Node didn't have enough resource: cpu, requested: 1500, used: 1000, capacity: 2000"
                    .into()
            ))
        );
        let third = pod("c", json!({}));
        let mut full = running.clone();
        full.push(pod("x", json!({"containers": [{"name": "c"}]})));
        assert_eq!(
            rejection(&third, &n, full).map(|r| r.0),
            Some("OutOfpods".into())
        );
        // An extended resource the node does not have is not the kubelet's
        // business; one it has too little of is.
        let gpu = pod(
            "gpu",
            json!({"containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": "1"}}}]}),
        );
        assert_eq!(rejection(&gpu, &n, vec![]), None);
    }

    #[test]
    fn selectors_ports_and_no_execute_taints_are_checked() {
        let n = node(json!([]));
        let wrong = pod("a", json!({"nodeSelector": {"disk": "hdd"}}));
        assert_eq!(
            rejection(&wrong, &n, vec![]),
            Some((
                "NodeAffinity".into(),
                "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector"
                    .into()
            ))
        );
        let port = |name| {
            pod(
                name,
                json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
            )
        };
        assert_eq!(
            rejection(&port("b"), &n, vec![port("a")]).map(|r| r.0),
            Some("NodePorts".into())
        );

        let tainted = node(json!([
            {"key": "gone", "effect": "NoExecute"},
            {"key": "busy", "effect": "NoSchedule"},
        ]));
        assert_eq!(
            rejection(&pod("a", json!({})), &tainted, vec![]).map(|r| r.0),
            Some("TaintToleration".into())
        );
        // NoSchedule taints are the scheduler's business, not admission's.
        let tolerant = pod(
            "a",
            json!({"tolerations": [{"key": "gone", "operator": "Exists", "effect": "NoExecute"}]}),
        );
        assert_eq!(rejection(&tolerant, &tainted, vec![]), None);
    }

    #[test]
    fn the_os_must_match() {
        let n = node(json!([]));
        let windows = pod("w", json!({"os": {"name": "windows"}}));
        assert_eq!(
            rejection(&windows, &n, vec![]).map(|r| r.0),
            Some("PodOSNotSupported".into())
        );
    }
}
