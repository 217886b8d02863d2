//! The node lifecycle controller (upstream's `pkg/controller/nodelifecycle`,
//! with its NoExecute taint manager, `pkg/controller/tainteviction`).
//!
//! Every `--node-monitor-period` it looks at every node ([`health`]):
//! - a node silent (no Lease renewal, no new Ready heartbeat) for longer
//!   than the grace period gets its kubelet conditions set to Unknown
//!   ("Kubelet stopped posting node status."), a `NodeNotReady` event, and
//!   its pods' Ready condition set to False (upstream's `MarkPodsNotReady`);
//! - a node whose Ready condition is Unknown or False is queued for the
//!   NoExecute `unreachable` / `not-ready` taint, tainted at the zone's
//!   eviction rate ([`zones`]); a Ready node has those taints removed;
//! - the zones' states decide the rates, and when every node is down the
//!   controller stops tainting altogether ([`zones::Zones::handle_disruption`]).
//!
//! On every node change the NoSchedule taints are made to mirror the
//! node's conditions and `unschedulable` ([`taints::no_schedule_diff`]),
//! and the taint manager ([`eviction`]) deletes the pods the NoExecute
//! taints no longer let stay.
//!
//! Upstream's rate settings (`--node-eviction-rate` 0.1/s,
//! `--secondary-node-eviction-rate` 0.01/s, `--large-cluster-size-threshold`
//! 50, `--unhealthy-zone-threshold` 0.55) are fixed at their defaults.

pub mod eviction;
pub mod health;
pub mod taints;
pub mod zones;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use component_base::events::EventRecorder;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::context::Context;
use crate::framework::{forward, run_workers, Change, Informer, ObjectKey, Outcome, WorkQueue};
use health::{Grace, NodeHealth};
use taints::{has_taint, no_execute_for, taint, NOT_READY, NO_EXECUTE, UNREACHABLE};
use zones::{DisruptionAction, Zones};

/// Events are recorded as upstream's node lifecycle controller records them.
pub const COMPONENT: &str = "node-controller";
/// Where kubelets renew their heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often the NoExecute tainting queues are worked (upstream's
/// `NodeEvictionPeriod`).
const TAINTING_PERIOD: Duration = Duration::from_millis(100);
/// Attempts at a taint write that keeps conflicting.
const TAINT_RETRIES: usize = 5;

/// What the controller remembers between passes.
#[derive(Default)]
struct State {
    /// Nodes seen, by name (the last copy, for the RemovingNode event).
    known: HashMap<String, Arc<Node>>,
    health: HashMap<String, NodeHealth>,
    /// The Ready status each node was left with by the last pass.
    ready: HashMap<String, Option<String>>,
    /// Nodes whose pods could not all be marked not ready.
    retry: HashSet<String>,
    zones: Zones,
}

#[derive(Clone)]
struct Controller {
    ctx: Context,
    recorder: EventRecorder,
    nodes: Informer<Node>,
    pods: Informer<Pod>,
    leases: Informer<Lease>,
    state: Arc<Mutex<State>>,
}

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let controller = Controller {
        recorder: EventRecorder::new(ctx.client.clone(), COMPONENT),
        nodes: ctx.informers.get::<Node>(),
        pods: ctx.informers.get::<Pod>(),
        leases: ctx.informers.get::<Lease>(),
        state: Arc::default(),
        ctx: ctx.clone(),
    };

    // NoSchedule taints, on every node change.
    let node_updates = WorkQueue::new();
    forward(&controller.nodes, &node_updates, |change| match change {
        Change::Deleted(_) => Vec::new(),
        change => vec![change.object().metadata.name.clone().unwrap_or_default()],
    });
    // Pods newly bound to a node that is not ready are marked not ready
    // (upstream's `podUpdated` / `processPod`).
    let bound_pods = WorkQueue::new();
    forward(&controller.pods, &bound_pods, |change| {
        let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
        match change {
            Change::Added(pod) if node(pod).is_some() => vec![ObjectKey::of(pod.as_ref())],
            Change::Updated { old, new } if node(new).is_some() && node(old) != node(new) => {
                vec![ObjectKey::of(new.as_ref())]
            }
            _ => Vec::new(),
        }
    });

    controller.nodes.wait_synced().await;
    controller.pods.wait_synced().await;
    controller.leases.wait_synced().await;

    tokio::spawn(eviction::run(ctx.clone()));
    let workers = ctx.settings.concurrent_syncs;
    {
        let c = controller.clone();
        tokio::spawn(run_workers(
            "node-taints",
            node_updates,
            workers,
            move |name: String| {
                let c = c.clone();
                async move { c.sync_no_schedule_taints(&name).await }
            },
        ));
    }
    {
        let c = controller.clone();
        tokio::spawn(run_workers(
            "node-pods",
            bound_pods,
            workers,
            move |key: ObjectKey| {
                let c = c.clone();
                async move { c.sync_bound_pod(&key).await }
            },
        ));
    }
    {
        let c = controller.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TAINTING_PERIOD);
            loop {
                tick.tick().await;
                c.no_execute_tainting_pass().await;
            }
        });
    }
    let mut tick = tokio::time::interval(ctx.settings.node_monitor_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        controller.monitor_node_health().await;
    }
}

impl Controller {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nodes_api(&self) -> Api<Node> {
        Api::all(self.ctx.client.clone())
    }

    fn grace(&self) -> Grace {
        Grace {
            monitor: self.ctx.settings.node_monitor_grace_period,
            startup: self.ctx.settings.node_startup_grace_period,
        }
    }

    /// Upstream's `monitorNodeHealth`: one pass over every node.
    async fn monitor_node_health(&self) {
        let nodes = self.nodes.list();
        let now = Timestamp::now();
        let (added, deleted) = {
            let mut state = self.lock();
            let added: Vec<Arc<Node>> = nodes
                .iter()
                .filter(|n| !state.known.contains_key(name(n)))
                .cloned()
                .collect();
            let present: HashSet<&str> = nodes.iter().map(|n| name(n)).collect();
            let deleted: Vec<Arc<Node>> = state
                .known
                .values()
                .filter(|n| !present.contains(name(n)))
                .cloned()
                .collect();
            for node in &added {
                state.known.insert(name(node).to_string(), node.clone());
                state.zones.ensure_zone(&zones::zone_key(node), now);
            }
            for node in &deleted {
                let n = name(node);
                state.known.remove(n);
                state.health.remove(n);
                state.ready.remove(n);
                state.retry.remove(n);
                state.zones.forget(&zones::zone_key(node), n);
            }
            (added, deleted)
        };
        for node in &added {
            let n = name(node);
            self.recorder.normal(
                node.as_ref(),
                "RegisteredNode",
                format!("Registered Node {n} in Controller"),
            );
            if let Err(e) = self.mark_reachable(node).await {
                tracing::info!(node = n, error = %e, "removing NoExecute taints failed");
            }
        }
        for node in &deleted {
            let n = name(node);
            self.recorder.normal(
                node.as_ref(),
                "RemovingNode",
                format!("Removing Node {n} from Controller"),
            );
        }

        let mut zone_ready: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for node in &nodes {
            if let Some(ready) = self.update_node(node, now).await {
                if !zones::excluded(node) {
                    zone_ready
                        .entry(zones::zone_key(node))
                        .or_default()
                        .push(ready);
                }
            }
        }

        let action = self.lock().zones.handle_disruption(&zone_ready, now);
        match action {
            DisruptionAction::Nothing => {}
            DisruptionAction::EnterMasterDisruption => {
                tracing::info!("all nodes are not ready: entering master disruption mode");
                for node in &nodes {
                    if let Err(e) = self.mark_reachable(node).await {
                        tracing::info!(node = name(node), error = %e, "removing NoExecute taints failed");
                    }
                }
            }
            DisruptionAction::ExitMasterDisruption => {
                tracing::info!("some nodes are ready: leaving master disruption mode");
                let mut state = self.lock();
                for health in state.health.values_mut() {
                    health.reset_probe(now);
                }
            }
        }
    }

    /// One node of the pass: judge its health, write Unknown if it is
    /// overdue, taint or untaint it, mark its pods. Returns the node's Ready
    /// status for the zone (`Some(None)`: no Ready condition), `None` when
    /// the node could not be updated.
    async fn update_node(&self, node: &Arc<Node>, now: Timestamp) -> Option<Option<String>> {
        let n = name(node);
        let lease = self.leases.get(&ObjectKey::new(LEASE_NAMESPACE, n));
        let saved = self.lock().health.get(n).cloned();
        let observation =
            health::observe(saved.as_ref(), node, lease.as_deref(), now, self.grace());
        self.lock()
            .health
            .insert(n.to_string(), observation.health.clone());
        let mut node = node.clone();
        if let Some(conditions) = observation.new_conditions.clone() {
            let mut updated = (*node).clone();
            updated
                .status
                .get_or_insert_with(Default::default)
                .conditions = Some(conditions);
            match self
                .nodes_api()
                .replace_status(n, &PostParams::default(), &updated)
                .await
            {
                Ok(written) => node = Arc::new(written),
                Err(e) => {
                    // Retried next pass, from the informer's fresher copy.
                    tracing::info!(node = n, error = %e, "marking the node Unknown failed; skipping it this pass");
                    return None;
                }
            }
        }
        let current = observation.current_ready.as_ref().map(|c| c.status.clone());
        self.lock().ready.insert(n.to_string(), current.clone());
        let Some(current) = current else {
            return Some(None);
        };
        let observed = observation.observed_ready.status.as_str();
        if let Err(e) = self
            .process_taint_based_eviction(&node, observed, now)
            .await
        {
            tracing::info!(node = n, error = %e, "tainting failed; retrying next pass");
        }
        let transitioned = current != "True" && observed == "True";
        if transitioned {
            // Upstream's `RecordNodeStatusChange`.
            self.recorder.normal(
                node.as_ref(),
                "NodeNotReady",
                format!("Node {n} status is now: NodeNotReady"),
            );
        }
        let retry = self.lock().retry.contains(n);
        if transitioned || (retry && observed != "True") {
            let pods = self.pods_on(n);
            if let Err(e) = self.mark_pods_not_ready(&pods, n).await {
                tracing::info!(node = n, error = %e, "marking pods not ready failed; retrying next pass");
                self.lock().retry.insert(n.to_string());
                return Some(Some(current));
            }
        }
        self.lock().retry.remove(n);
        Some(Some(current))
    }

    /// Upstream's `processTaintBaseEviction`, from the Ready status the
    /// node reported.
    async fn process_taint_based_eviction(
        &self,
        node: &Node,
        observed: &str,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let Some((wanted, opposite)) = no_execute_for(observed) else {
            if observed == "True" {
                self.mark_reachable(node).await?;
            }
            return Ok(());
        };
        if has_taint(node, opposite, NO_EXECUTE) {
            // Ready flipped between False and Unknown: swap at once.
            self.swap_taints(
                name(node),
                &[taint(wanted, NO_EXECUTE)],
                &[taint(opposite, NO_EXECUTE)],
            )
            .await?;
        } else {
            let zone = zones::zone_key(node);
            let has = has_taint(node, wanted, NO_EXECUTE);
            self.lock()
                .zones
                .mark_for_tainting(&zone, name(node), has, now);
        }
        Ok(())
    }

    /// Upstream's `markNodeAsReachable`: no NoExecute node-lifecycle taints,
    /// and out of the tainting queue.
    async fn mark_reachable(&self, node: &Node) -> anyhow::Result<()> {
        let n = name(node);
        if has_taint(node, UNREACHABLE, NO_EXECUTE) || has_taint(node, NOT_READY, NO_EXECUTE) {
            self.swap_taints(
                n,
                &[],
                &[taint(UNREACHABLE, NO_EXECUTE), taint(NOT_READY, NO_EXECUTE)],
            )
            .await?;
        }
        self.lock().zones.forget(&zones::zone_key(node), n);
        Ok(())
    }

    /// Upstream's `doNoExecuteTaintingPass`: taint the nodes whose turn it
    /// is, by the Ready status they have now.
    async fn no_execute_tainting_pass(&self) {
        let due = self.lock().zones.due(Timestamp::now());
        for (zone, n) in due {
            let Some(node) = self.nodes.get(&ObjectKey::cluster(&n)) else {
                continue;
            };
            let Some(ready) = health::ready_status(&node) else {
                self.lock().zones.retry(&zone, &n);
                continue;
            };
            // Ready again meanwhile: nothing to do.
            let Some((wanted, opposite)) = no_execute_for(ready) else {
                continue;
            };
            let result = self
                .swap_taints(
                    &n,
                    &[taint(wanted, NO_EXECUTE)],
                    &[taint(opposite, NO_EXECUTE)],
                )
                .await;
            if let Err(e) = result {
                tracing::info!(node = n, error = %e, "tainting failed; retrying");
                self.lock().zones.retry(&zone, &n);
            }
        }
    }

    /// Upstream's `doNoScheduleTaintingPass` for one node.
    async fn sync_no_schedule_taints(&self, n: &str) -> anyhow::Result<Outcome> {
        let Some(node) = self.nodes.get(&ObjectKey::cluster(n)) else {
            return Ok(Outcome::Done);
        };
        let (add, remove) = taints::no_schedule_diff(&node);
        if !add.is_empty() || !remove.is_empty() {
            self.swap_taints(n, &add, &remove).await?;
        }
        Ok(Outcome::Done)
    }

    /// A pod newly bound to a node the last pass left not ready is marked
    /// not ready at once.
    async fn sync_bound_pod(&self, key: &ObjectKey) -> anyhow::Result<Outcome> {
        let Some(pod) = self.pods.get(key) else {
            return Ok(Outcome::Done);
        };
        let Some(n) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return Ok(Outcome::Done);
        };
        let ready = self.lock().ready.get(&n).cloned();
        if let Some(Some(status)) = ready {
            if status != "True" {
                self.mark_pods_not_ready(&[pod], &n).await?;
            }
        }
        Ok(Outcome::Done)
    }

    /// Upstream's `SwapNodeControllerTaint` (with `AddOrUpdateTaintOnNode`'s
    /// retries): add and remove taints, guarded by the node's
    /// resourceVersion, re-reading it after a conflict.
    async fn swap_taints(&self, n: &str, add: &[Taint], remove: &[Taint]) -> anyhow::Result<()> {
        let api = self.nodes_api();
        let mut node = self.nodes.get(&ObjectKey::cluster(n));
        for _ in 0..TAINT_RETRIES {
            let current = match node.take() {
                Some(node) => node,
                None => match api.get_opt(n).await? {
                    Some(node) => Arc::new(node),
                    None => return Ok(()),
                },
            };
            let Some(next) =
                taints::swap(taints::taints_of(&current), add, remove, Timestamp::now())
            else {
                return Ok(());
            };
            let taints = if next.is_empty() {
                Value::Null
            } else {
                json!(next)
            };
            let patch = json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "spec": {"taints": taints},
            });
            match api
                .patch(n, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(e) => {
                    return Err(e).with_context(|| format!("updating the taints of node {n}"))
                }
            }
        }
        anyhow::bail!("updating the taints of node {n}: conflicts persisted")
    }

    /// The pods bound to node `n`.
    fn pods_on(&self, n: &str) -> Vec<Arc<Pod>> {
        self.pods
            .list()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(n))
            .collect()
    }

    /// Upstream's `MarkPodsNotReady`: the Ready condition of each pod on the
    /// node goes False (with a `NodeNotReady` warning on the pod).
    async fn mark_pods_not_ready(&self, pods: &[Arc<Pod>], n: &str) -> anyhow::Result<()> {
        let mut failed = None;
        for pod in pods {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(n) {
                continue;
            }
            let Some(patch) = not_ready_patch(pod, Timestamp::now()) else {
                continue;
            };
            let api: Api<Pod> = Api::namespaced(
                self.ctx.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or_default(),
            );
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => self
                    .recorder
                    .warning(pod.as_ref(), "NodeNotReady", "Node is not ready"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// The status patch that makes a pod's Ready condition False, or `None`
/// when it has none or it is False already (upstream's `UpdatePodCondition`
/// moving `lastTransitionTime` with the status).
pub fn not_ready_patch(pod: &Pod, now: Timestamp) -> Option<Value> {
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    if ready.status == "False" {
        return None;
    }
    Some(json!({"status": {"conditions": [{
        "type": "Ready",
        "status": "False",
        "lastTransitionTime": now.to_string(),
    }]}}))
}

fn name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    #[test]
    fn only_ready_pods_are_marked_not_ready() {
        let pod = |status: Option<&str>| Pod {
            status: Some(PodStatus {
                conditions: status.map(|s| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: s.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let patch = not_ready_patch(&pod(Some("True")), now).unwrap();
        assert_eq!(patch["status"]["conditions"][0]["status"], "False");
        assert_eq!(
            patch["status"]["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
        assert!(not_ready_patch(&pod(Some("Unknown")), now).is_some());
        assert!(not_ready_patch(&pod(Some("False")), now).is_none());
        assert!(not_ready_patch(&pod(None), now).is_none());
    }
}
