//! The DaemonSet decisions, as upstream's `pkg/controller/daemon`:
//!
//! - [`manage`]: one daemon pod per eligible node. Missing pods are
//!   created; pods on nodes that are no longer eligible, extra pods on a
//!   node, succeeded pods and (with backoff) failed pods are deleted, as are
//!   unscheduled pods aimed at nodes that no longer exist.
//! - [`rolling_update`]: replace pods whose `controller-revision-hash` is
//!   not the current one. Without surge, delete old pods while no more than
//!   `maxUnavailable` are unavailable (the manage loop recreates them);
//!   with `maxSurge`, start a new pod next to an old one and delete the old
//!   one once the new one is available.
//! - [`status`]: upstream's counts.
//! - [`pod_template`]/[`pod_for_node`]: the pods created, with the default
//!   tolerations, the revision hash label and node affinity to their node.
//!
//! Nodes are visited in name order, so decisions are deterministic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::eligibility::{add_default_tolerations, pin_to_node, should_run, target_node};
use crate::controllers::history::{template_patch, POD_REVISION_LABEL};
use crate::pods::{controller_ref, is_pod_available, is_pod_ready, phase, pod_from_template};

/// The most pods created or deleted in one sync (upstream's
/// `BurstReplicas`).
pub const BURST_REPLICAS: usize = 250;
/// The annotation the API server once kept the template generation in.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// The label old daemon pods carry their template generation in.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// First and longest delay before a failed daemon pod is deleted again
/// (upstream's `failedPodsBackoff`).
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// Per DaemonSet and node: how long to wait before killing another failed
/// pod there, so a kubelet that keeps rejecting the pod is not hot-looped
/// (client-go's `flowcontrol.Backoff`, without jitter).
#[derive(Debug, Default)]
pub struct FailedPodBackoff {
    entries: HashMap<String, (Duration, Timestamp)>,
}

impl FailedPodBackoff {
    fn expired(last: Timestamp, now: Timestamp) -> bool {
        now.as_second() - last.as_second() > 2 * BACKOFF_MAX.as_secs() as i64
    }

    /// The delay still to wait at `key`, if any.
    pub fn waiting(&self, key: &str, now: Timestamp) -> Option<Duration> {
        let (delay, last) = *self.entries.get(key)?;
        if Self::expired(last, now) {
            return None;
        }
        let elapsed = now.duration_since(last).unsigned_abs();
        (elapsed < delay).then_some(delay)
    }

    /// Record a kill at `key`: the next one waits twice as long.
    pub fn next(&mut self, key: &str, now: Timestamp) {
        let delay = match self.entries.get(key) {
            Some((delay, last)) if !Self::expired(*last, now) => (*delay * 2).min(BACKOFF_MAX),
            _ => BACKOFF_INITIAL,
        };
        self.entries.insert(key.to_string(), (delay, now));
    }

    /// Forget entries idle long enough to have expired.
    pub fn gc(&mut self, now: Timestamp) {
        self.entries
            .retain(|_, (_, last)| !Self::expired(*last, now));
    }
}

/// What the controller observed about one DaemonSet.
pub struct Observed<'a> {
    pub ds: &'a DaemonSet,
    pub nodes: &'a [Arc<Node>],
    /// The DaemonSet's pods (claimed).
    pub pods: &'a [Arc<Pod>],
    /// The current revision's hash.
    pub hash: &'a str,
    pub now: Timestamp,
}

fn name(ds: &DaemonSet) -> &str {
    ds.metadata.name.as_deref().unwrap_or_default()
}

fn node_name(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or_default()
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn min_ready_seconds(ds: &DaemonSet) -> i32 {
    ds.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Failed" | "Succeeded")
}

fn deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The template generation, from the annotation the API server may keep.
fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

/// Whether `pod` is at the current revision (upstream's `IsPodUpdated`:
/// its hash label, or its legacy template generation label).
pub fn is_updated(ds: &DaemonSet, pod: &Pod, hash: &str) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let hash_matches = !hash.is_empty() && label(POD_REVISION_LABEL) == Some(hash);
    let generation_matches = template_generation(ds)
        .is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str()));
    hash_matches || generation_matches
}

/// The DaemonSet's pods by target node, leaving out pods that are both
/// finished and being deleted (nothing more to do with them) and pods
/// aimed at no node (upstream's `getNodesToDaemonPods`).
pub fn pods_by_node(pods: &[Arc<Pod>]) -> BTreeMap<&str, Vec<&Pod>> {
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        if terminal(pod) && deleting(pod) {
            continue;
        }
        if let Some(node) = target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    by_node
}

/// Scheduled pods first, then oldest, then by name (upstream's
/// `podByCreationTimestampAndPhase`).
fn sort_oldest_first(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let scheduled = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        };
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        scheduled(b)
            .cmp(&scheduled(a))
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// An int-or-percent of `total`, percentages rounded up (upstream's
/// `GetScaledValueFromIntOrPercent(.., true)`).
pub fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let scaled = (percent * i64::from(total) + 99) / 100;
            Ok(scaled as i32)
        }
    }
}

fn rolling(ds: &DaemonSet) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet> {
    let strategy = ds.spec.as_ref()?.update_strategy.as_ref()?;
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return None;
    }
    strategy.rolling_update.as_ref()
}

/// `maxSurge` of `desired` (0 without one).
pub fn surge_count(ds: &DaemonSet, desired: i32) -> Result<i32, String> {
    match rolling(ds).and_then(|r| r.max_surge.as_ref()) {
        Some(v) => scaled(v, desired),
        None => Ok(0),
    }
}

/// `maxUnavailable` of `desired` (1 when unset, the API's default).
pub fn unavailable_count(ds: &DaemonSet, desired: i32) -> Result<i32, String> {
    match rolling(ds) {
        None => Ok(0),
        Some(r) => match &r.max_unavailable {
            Some(v) => scaled(v, desired),
            None => Ok(1),
        },
    }
}

fn allows_surge(ds: &DaemonSet) -> bool {
    surge_count(ds, 1).is_ok_and(|s| s != 0)
}

/// What the manage loop decided.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Manage {
    /// Nodes to create a daemon pod on.
    pub create_on: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<String>,
    /// `FailedDaemonPod` warnings to record.
    pub failed: Vec<String>,
    /// Look again then (a failed pod waiting out its backoff).
    pub retry_after: Option<Duration>,
}

/// The backoff key of a DaemonSet's pods on one node.
fn backoff_key(ds: &DaemonSet, node: &str) -> String {
    let uid = ds.metadata.uid.as_deref().unwrap_or_default();
    format!("{uid}/{node}")
}

/// Upstream's `manage`: per node, what `podsShouldBeOnNode` says, plus
/// unscheduled pods aimed at nodes that do not exist.
pub fn manage(o: &Observed, backoff: &mut FailedPodBackoff) -> Manage {
    let by_node = pods_by_node(o.pods);
    let mut out = Manage::default();
    for node in o.nodes {
        on_node(o, node, by_node.get(node_name(node)), backoff, &mut out);
    }
    for (node, pods) in &by_node {
        if o.nodes.iter().any(|n| node_name(n) == *node) {
            continue;
        }
        for pod in pods {
            let unscheduled = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none_or(str::is_empty);
            if unscheduled {
                out.delete.push(pod_name(pod));
            }
        }
    }
    out
}

fn on_node(
    o: &Observed,
    node: &Node,
    pods: Option<&Vec<&Pod>>,
    backoff: &mut FailedPodBackoff,
    out: &mut Manage,
) {
    let ds = o.ds;
    let (run, keep) = should_run(ds, node);
    let name = node_name(node);
    let Some(pods) = pods else {
        if run {
            out.create_on.push(name.to_string());
        }
        return;
    };
    if !keep {
        out.delete
            .extend(pods.iter().filter(|p| !deleting(p)).map(|p| pod_name(p)));
        return;
    }
    let mut running: Vec<&Pod> = Vec::new();
    for pod in pods.iter().copied().filter(|p| !deleting(p)) {
        match phase(pod) {
            "Failed" => {
                let key = backoff_key(ds, name);
                if let Some(delay) = backoff.waiting(&key, o.now) {
                    out.retry_after = Some(out.retry_after.map_or(delay, |d| d.min(delay)));
                    continue;
                }
                backoff.next(&key, o.now);
                let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                out.failed.push(format!(
                    "Found failed daemon pod {ns}/{} on node {name}, will try to kill it",
                    pod_name(pod)
                ));
                out.delete.push(pod_name(pod));
            }
            "Succeeded" => out.delete.push(pod_name(pod)),
            _ => running.push(pod),
        }
    }
    sort_oldest_first(&mut running);
    if !allows_surge(ds) {
        // One pod per node: the oldest stays.
        out.delete
            .extend(running.iter().skip(1).map(|p| pod_name(p)));
        return;
    }
    if running.len() <= 1 {
        if running.is_empty() && run {
            out.create_on.push(name.to_string());
        }
        return;
    }
    // Surging: keep the oldest new and the oldest old pod, and the old one
    // only until it is not ready or the new one is available.
    let (mut newest, mut oldest): (Option<&Pod>, Option<&Pod>) = (None, None);
    for pod in running {
        let slot = if is_updated(ds, pod, o.hash) {
            &mut newest
        } else {
            &mut oldest
        };
        if slot.is_none() {
            *slot = Some(pod);
        } else {
            out.delete.push(pod_name(pod));
        }
    }
    if let (Some(new), Some(old)) = (newest, oldest) {
        if !is_pod_ready(old) || is_pod_available(new, min_ready_seconds(ds), o.now) {
            out.delete.push(pod_name(old));
        }
    }
}

/// The pod on a node split into its updated and old pod; `None` when a
/// node has more than one of either (the manage loop prunes it first).
fn updated_and_old<'a>(
    ds: &DaemonSet,
    pods: &[&'a Pod],
    hash: &str,
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().copied().filter(|p| !deleting(p)) {
        let slot = if is_updated(ds, pod, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// What the rolling update decided.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rollout {
    pub delete: Vec<String>,
    pub create_on: Vec<String>,
}

/// Upstream's `rollingUpdate`.
pub fn rolling_update(o: &Observed) -> Result<Rollout, String> {
    let ds = o.ds;
    let min_ready = min_ready_seconds(ds);
    let available = |p: &Pod| is_pod_available(p, min_ready, o.now);
    let mut by_node = pods_by_node(o.pods);
    let mut desired = 0;
    for node in o.nodes {
        if should_run(ds, node).0 {
            desired += 1;
            by_node.entry(node_name(node)).or_default();
        }
    }
    let mut max_unavailable = unavailable_count(ds, desired)?;
    let max_surge = surge_count(ds, desired)?;
    if desired > 0 && max_unavailable == 0 && max_surge == 0 {
        // An impossible configuration: accept one unavailable pod.
        max_unavailable = 1;
    }
    let mut out = Rollout::default();

    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace_now = Vec::new();
        let mut candidates = Vec::new();
        for pods in by_node.values() {
            let Some((new, old)) = updated_and_old(ds, pods, o.hash) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(old) {
                        // Already down: replacing it costs nothing.
                        replace_now.push(pod_name(old));
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(pod_name(old));
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        out.delete = replace_now;
        out.delete.extend(candidates.into_iter().take(room));
        return Ok(out);
    }

    let mut surging = 0;
    let mut available_count = 0;
    let mut new_now = Vec::new();
    let mut candidates = Vec::new();
    let mut off_nodes = Vec::new();
    for (node_name, pods) in &by_node {
        let Some((new, old)) = updated_and_old(ds, pods, o.hash) else {
            surging += 1;
            continue;
        };
        if let Some(pod) = old.or(new) {
            if available(pod) {
                available_count += 1;
            }
        }
        let eligible = || {
            o.nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(*node_name))
                .is_some_and(|n| should_run(ds, n).0)
        };
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(old) => {
                if eligible() {
                    new_now.push(node_name.to_string());
                } else {
                    out.delete.push(pod_name(old));
                }
            }
            (None, Some(old)) => {
                if !eligible() {
                    off_nodes.push(old);
                } else if surging < max_surge {
                    candidates.push(node_name.to_string());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    out.delete.push(pod_name(old));
                } else {
                    surging += 1;
                }
            }
        }
    }
    // Pods on nodes the DaemonSet left go only while enough pods stay
    // available elsewhere.
    let deletable = (available_count - desired).clamp(0, off_nodes.len() as i32) as usize;
    out.delete
        .extend(off_nodes.iter().take(deletable).map(|p| pod_name(p)));
    let room = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    out.create_on = new_now;
    out.create_on.extend(candidates.into_iter().take(room));
    Ok(out)
}

/// Upstream's `updateDaemonSetStatus` counts. `observe` says whether the
/// controller acted on this generation (expectations were satisfied).
pub fn status(o: &Observed, observe: bool) -> DaemonSetStatus {
    let ds = o.ds;
    let by_node = pods_by_node(o.pods);
    let min_ready = min_ready_seconds(ds);
    let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) =
        (0, 0, 0, 0, 0, 0);
    for node in o.nodes {
        let (run, _) = should_run(ds, node);
        let pods = by_node.get(node_name(node)).filter(|p| !p.is_empty());
        match (run, pods) {
            (true, None) => desired += 1,
            (true, Some(pods)) => {
                desired += 1;
                current += 1;
                let mut pods = pods.clone();
                sort_oldest_first(&mut pods);
                let pod = pods[0];
                if is_pod_ready(pod) {
                    ready += 1;
                    if is_pod_available(pod, min_ready, o.now) {
                        available += 1;
                    }
                }
                if is_updated(ds, pod, o.hash) {
                    updated += 1;
                }
            }
            (false, Some(_)) => misscheduled += 1,
            (false, None) => {}
        }
    }
    let old = ds.status.clone().unwrap_or_default();
    DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: Some(available),
        number_unavailable: Some(desired - available),
        updated_number_scheduled: Some(updated),
        observed_generation: if observe {
            ds.metadata.generation
        } else {
            old.observed_generation
        },
        collision_count: old.collision_count,
        conditions: old.conditions,
    }
}

/// Whether the status must be written: a count changed, or the generation
/// is newly observed (upstream's `storeDaemonSetStatus` check).
pub fn status_changed(ds: &DaemonSet, new: &DaemonSetStatus) -> bool {
    let Some(old) = ds.status.as_ref() else {
        return true;
    };
    let counts = |s: &DaemonSetStatus| {
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_misscheduled,
            s.number_ready,
            s.updated_number_scheduled.unwrap_or(0),
            s.number_available.unwrap_or(0),
            s.number_unavailable.unwrap_or(0),
        )
    };
    counts(old) != counts(new) || old.observed_generation < new.observed_generation
}

/// The template daemon pods are made from (upstream's `CreatePodTemplate`):
/// the default tolerations, the revision hash and template generation
/// labels.
pub fn pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    add_default_tolerations(template.spec.get_or_insert_with(Default::default));
    let labels = template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    if let Some(generation) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), generation.to_string());
    }
    if !hash.is_empty() {
        labels.insert(POD_REVISION_LABEL.into(), hash.to_string());
    }
    template
}

/// The daemon pod for `node`: `template` pinned to the node through its
/// required node affinity, for the scheduler to bind (upstream never sets
/// `nodeName` itself).
pub fn pod_for_node(ds: &DaemonSet, template: &PodTemplateSpec, node: &str) -> Pod {
    let namespace = ds.metadata.namespace.as_deref().unwrap_or_default();
    let mut pod = pod_from_template(template, namespace, name(ds), controller_ref(ds));
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    pod
}

/// Split claimed revisions into those holding the DaemonSet's template
/// and the others (upstream's `Match` in `constructHistory`).
pub fn split_history(
    ds: &DaemonSet,
    revisions: Vec<Arc<ControllerRevision>>,
) -> (Vec<Arc<ControllerRevision>>, Vec<Arc<ControllerRevision>>) {
    let Some(spec) = ds.spec.as_ref() else {
        return (Vec::new(), revisions);
    };
    let patch = template_patch(&spec.template);
    revisions
        .into_iter()
        .partition(|r| r.data.as_ref().map(|d| &d.0) == Some(&patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
    };
    use k8s_openapi::api::core::v1::{
        Container, NodeSpec, PodCondition, PodSpec, PodStatus, Taint,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn ds(max_unavailable: i32, max_surge: i32) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-agent".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), "agent".to_string())].into()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "agent".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "agent".into(),
                            image: Some("agent:2".into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_unavailable: Some(IntOrString::Int(max_unavailable)),
                        max_surge: Some(IntOrString::Int(max_surge)),
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn node(name: &str) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn tainted(name: &str, effect: &str) -> Arc<Node> {
        let mut n = (*node(name)).clone();
        n.spec = Some(NodeSpec {
            taints: Some(vec![Taint {
                key: "dedicated".into(),
                effect: effect.into(),
                value: None,
                time_added: None,
            }]),
            ..Default::default()
        });
        Arc::new(n)
    }

    #[derive(Clone, Copy)]
    enum S {
        Pending,
        Ready,
        Failed,
        Succeeded,
        Deleting,
    }

    /// Pod `name` for `node` at revision hash `hash` ("new" is current),
    /// created at second `created`.
    fn pod(name: &str, node: &str, hash: &str, state: S, created: i64) -> Arc<Pod> {
        let d = ds(1, 0);
        let mut pod = pod_for_node(&d, &pod_template(&d, hash), node);
        pod.metadata.name = Some(name.into());
        pod.metadata.creation_timestamp = Some(Time(at(created)));
        if matches!(state, S::Deleting) {
            pod.metadata.deletion_timestamp = Some(Time(at(100)));
        }
        let (phase, ready) = match state {
            S::Pending => ("Pending", false),
            S::Ready | S::Deleting => ("Running", true),
            S::Failed => ("Failed", false),
            S::Succeeded => ("Succeeded", false),
        };
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(at(0))),
                ..Default::default()
            }]),
            ..Default::default()
        });
        Arc::new(pod)
    }

    fn observed<'a>(
        ds: &'a DaemonSet,
        nodes: &'a [Arc<Node>],
        pods: &'a [Arc<Pod>],
    ) -> Observed<'a> {
        Observed {
            ds,
            nodes,
            pods,
            hash: "new",
            now: at(60),
        }
    }

    #[test]
    fn manage_keeps_one_pod_on_every_eligible_node() {
        use S::*;
        let d = ds(1, 0);
        type Case = (
            &'static str,
            Vec<Arc<Node>>,
            Vec<Arc<Pod>>,
            Vec<&'static str>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "a pod per node",
                vec![node("a"), node("b")],
                vec![pod("p1", "a", "new", Ready, 0)],
                vec!["b"],
                vec![],
            ),
            (
                "an untolerated NoSchedule taint gets no new pod but keeps one",
                vec![tainted("a", "NoSchedule"), tainted("b", "NoSchedule")],
                vec![pod("p1", "a", "new", Ready, 0)],
                vec![],
                vec![],
            ),
            (
                "NoExecute evicts",
                vec![tainted("a", "NoExecute")],
                vec![pod("p1", "a", "new", Ready, 0)],
                vec![],
                vec!["p1"],
            ),
            (
                "the oldest of two pods stays",
                vec![node("a")],
                vec![
                    pod("p2", "a", "new", Ready, 5),
                    pod("p1", "a", "new", Ready, 1),
                ],
                vec![],
                vec!["p2"],
            ),
            (
                "a succeeded pod is deleted",
                vec![node("a")],
                vec![pod("p1", "a", "new", Succeeded, 0)],
                vec![],
                vec!["p1"],
            ),
            (
                "a terminating pod is waited for",
                vec![node("a")],
                vec![pod("p1", "a", "new", Deleting, 0)],
                vec![],
                vec![],
            ),
            (
                "an unscheduled pod for a deleted node goes",
                vec![node("a")],
                vec![
                    pod("p1", "a", "new", Ready, 0),
                    pod("p2", "gone", "new", Pending, 0),
                ],
                vec![],
                vec!["p2"],
            ),
        ];
        for (what, nodes, pods, create, delete) in cases {
            let mut backoff = FailedPodBackoff::default();
            let got = manage(&observed(&d, &nodes, &pods), &mut backoff);
            assert_eq!(got.create_on, create, "{what}: creates");
            assert_eq!(got.delete, delete, "{what}: deletes");
        }
    }

    #[test]
    fn failed_pods_are_killed_with_backoff() {
        let d = ds(1, 0);
        let nodes = [node("a")];
        let pods = [pod("p1", "a", "new", S::Failed, 0)];
        let mut backoff = FailedPodBackoff::default();
        let mut o = observed(&d, &nodes, &pods);
        let first = manage(&o, &mut backoff);
        assert_eq!(first.delete, ["p1"]);
        assert_eq!(
            first.failed,
            ["Found failed daemon pod ns/p1 on node a, will try to kill it"]
        );
        // Failing again at once waits out 1s, then 2s.
        let held = manage(&o, &mut backoff);
        assert!(held.delete.is_empty());
        assert_eq!(held.retry_after, Some(Duration::from_secs(1)));
        o.now = at(61);
        assert_eq!(manage(&o, &mut backoff).delete, ["p1"]);
        o.now = at(62);
        assert_eq!(
            manage(&o, &mut backoff).retry_after,
            Some(Duration::from_secs(2))
        );
        o.now = at(63);
        assert_eq!(manage(&o, &mut backoff).delete, ["p1"]);
    }

    #[test]
    fn a_rolling_update_without_surge_stays_within_max_unavailable() {
        use S::*;
        let nodes = vec![node("a"), node("b"), node("c")];
        type Case = (&'static str, i32, Vec<Arc<Pod>>, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            (
                "one old pod at a time",
                1,
                vec![
                    pod("pa", "a", "old", Ready, 0),
                    pod("pb", "b", "old", Ready, 0),
                    pod("pc", "c", "old", Ready, 0),
                ],
                vec!["pa"],
            ),
            (
                "two at a time",
                2,
                vec![
                    pod("pa", "a", "old", Ready, 0),
                    pod("pb", "b", "old", Ready, 0),
                    pod("pc", "c", "old", Ready, 0),
                ],
                vec!["pa", "pb"],
            ),
            (
                "an unavailable new pod holds the rollout",
                1,
                vec![
                    pod("pa", "a", "new", Pending, 0),
                    pod("pb", "b", "old", Ready, 0),
                    pod("pc", "c", "old", Ready, 0),
                ],
                vec![],
            ),
            (
                "a node still without its pod counts as unavailable",
                1,
                vec![
                    pod("pb", "b", "old", Ready, 0),
                    pod("pc", "c", "old", Ready, 0),
                ],
                vec![],
            ),
            (
                "an unavailable old pod is replaced at once",
                1,
                vec![
                    pod("pa", "a", "new", Ready, 0),
                    pod("pb", "b", "old", Pending, 0),
                    pod("pc", "c", "old", Ready, 0),
                ],
                vec!["pb"],
            ),
            (
                "a done rollout deletes nothing",
                1,
                vec![
                    pod("pa", "a", "new", Ready, 0),
                    pod("pb", "b", "new", Ready, 0),
                    pod("pc", "c", "new", Ready, 0),
                ],
                vec![],
            ),
        ];
        for (what, max_unavailable, pods, want) in cases {
            let d = ds(max_unavailable, 0);
            let got = rolling_update(&observed(&d, &nodes, &pods)).unwrap();
            assert_eq!(got.delete, want, "{what}");
            assert!(got.create_on.is_empty(), "{what}");
        }
    }

    #[test]
    fn a_surging_rolling_update_starts_new_pods_before_deleting_old_ones() {
        use S::*;
        let d = ds(0, 1);
        let nodes = vec![node("a"), node("b")];
        let old = |n: &str| pod(&format!("old-{n}"), n, "old", Ready, 0);
        type Case = (
            &'static str,
            Vec<Arc<Pod>>,
            Vec<&'static str>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "surge onto one node",
                vec![old("a"), old("b")],
                vec!["a"],
                vec![],
            ),
            (
                "wait while the new pod starts",
                vec![old("a"), old("b"), pod("new-a", "a", "new", Pending, 1)],
                vec![],
                vec![],
            ),
            (
                "the old pod goes once the new one is available",
                vec![old("a"), old("b"), pod("new-a", "a", "new", Ready, 1)],
                vec!["b"],
                vec!["old-a"],
            ),
        ];
        for (what, pods, create, delete) in cases {
            let got = rolling_update(&observed(&d, &nodes, &pods)).unwrap();
            assert_eq!(
                (got.create_on, got.delete),
                (
                    create.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    delete.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                ),
                "{what}"
            );
        }
        // The manage loop keeps both while the new pod is not available.
        let both = [old("a"), pod("new-a", "a", "new", Pending, 1)];
        let got = manage(
            &observed(&d, &nodes[..1], &both),
            &mut FailedPodBackoff::default(),
        );
        assert!(got.delete.is_empty());
        let done = [old("a"), pod("new-a", "a", "new", Ready, 1)];
        let got = manage(
            &observed(&d, &nodes[..1], &done),
            &mut FailedPodBackoff::default(),
        );
        assert_eq!(got.delete, ["old-a"]);
    }

    #[test]
    fn percentages_round_up() {
        let cases = [
            (IntOrString::Int(2), 10, Ok(2)),
            (IntOrString::String("25%".into()), 10, Ok(3)),
            (IntOrString::String("0%".into()), 10, Ok(0)),
            (IntOrString::String("x".into()), 10, Err(())),
        ];
        for (value, total, want) in cases {
            assert_eq!(scaled(&value, total).map_err(|_| ()), want, "{value:?}");
        }
        let mut d = ds(0, 0);
        assert_eq!(unavailable_count(&d, 3), Ok(0));
        // Without a strategy nothing is allowed, and the rollout falls back
        // to one unavailable pod at a time, as upstream.
        d.spec.as_mut().unwrap().update_strategy = None;
        assert_eq!(unavailable_count(&d, 3), Ok(0));
        let nodes = [node("a"), node("b")];
        let pods = [
            pod("pa", "a", "old", S::Ready, 0),
            pod("pb", "b", "old", S::Ready, 0),
        ];
        assert_eq!(
            rolling_update(&observed(&d, &nodes, &pods)).unwrap().delete,
            ["pa"]
        );
    }

    #[test]
    fn status_counts_nodes_and_pods() {
        use S::*;
        let d = ds(1, 0);
        let nodes = vec![node("a"), node("b"), node("c"), tainted("d", "NoSchedule")];
        let pods = vec![
            pod("pa", "a", "new", Ready, 0),
            pod("pb", "b", "old", Pending, 0),
            pod("pd", "d", "new", Ready, 0),
        ];
        let st = status(&observed(&d, &nodes, &pods), true);
        assert_eq!(st.desired_number_scheduled, 3);
        assert_eq!(st.current_number_scheduled, 2);
        assert_eq!(st.number_misscheduled, 1);
        assert_eq!(st.number_ready, 1);
        assert_eq!(st.number_available, Some(1));
        assert_eq!(st.number_unavailable, Some(2));
        assert_eq!(st.updated_number_scheduled, Some(1));
        assert_eq!(st.observed_generation, Some(2));
        assert!(status_changed(&d, &st));
        let mut written = d.clone();
        written.status = Some(st.clone());
        assert!(!status_changed(&written, &st));
        // Unsatisfied expectations: the generation is not observed.
        assert_eq!(
            status(&observed(&written, &nodes, &pods), false).observed_generation,
            Some(2)
        );
        assert_eq!(
            status(&observed(&d, &nodes, &pods), false).observed_generation,
            None
        );
    }

    #[test]
    fn daemon_pods_are_pinned_labelled_and_tolerant() {
        let d = ds(1, 0);
        let pod = pod_for_node(&d, &pod_template(&d, "h1"), "node-1");
        assert_eq!(target_node(&pod), Some("node-1"));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[POD_REVISION_LABEL], "h1");
        assert_eq!(labels["app"], "agent");
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.node_name.is_none());
        assert_eq!(spec.tolerations.as_ref().unwrap().len(), 6);
        assert_eq!(
            pod.metadata.owner_references.as_ref().unwrap()[0].kind,
            "DaemonSet"
        );
    }
}
