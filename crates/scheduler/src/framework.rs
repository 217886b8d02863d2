//! The scheduling framework's data: what a cycle knows about each node, and
//! the shape of filter and score plugins.
//!
//! Mirrors upstream's `framework.NodeInfo`, `framework.Status` and plugin
//! interfaces, reduced to what a pure function needs: every plugin sees the
//! pod, one node's info, and the cycle's snapshot of all nodes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

/// Amounts of resources, in upstream's units: cpu in millicores, memory and
/// ephemeral storage in bytes, pods as a count, extended resources as
/// integers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    /// Extended and hugepage resources by name (`nvidia.com/gpu`).
    pub scalar: BTreeMap<String, i64>,
}

/// One host port in use on a node: (host IP, protocol, port).
pub type HostPort = (String, String, i32);

/// What a scheduling cycle knows about one node: the node, the pods counted
/// on it (bound, or assumed by this scheduler), and their sums.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub pods: Vec<Arc<Pod>>,
    /// Sum of the effective requests of `pods` (see `plugins::resources`).
    pub requested: Resources,
    /// The same sum with upstream's scoring defaults (100m cpu, 200Mi
    /// memory) for containers that request nothing; kept here so scoring
    /// does not re-read every pod's requests in every cycle.
    pub non_zero_requested: Resources,
    /// `status.allocatable` of the node.
    pub allocatable: Resources,
    /// Host ports used by `pods`.
    pub used_ports: Vec<HostPort>,
    /// The pods with pod affinity or anti-affinity terms (upstream's
    /// `PodsWithAffinity`): inter-pod rules of a pod without terms of its
    /// own only need these, not every pod.
    pub pods_with_affinity: Vec<Arc<Pod>>,
}

impl Snapshot {
    /// A snapshot owning these node infos.
    pub fn new(nodes: Vec<NodeInfo>) -> Self {
        Snapshot {
            nodes: nodes.into_iter().map(Arc::new).collect(),
        }
    }
}

impl NodeInfo {
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }
}

/// The result of one filter plugin on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// The pod may run here.
    Pass,
    /// It may not, for these reasons; preempting pods on the node could
    /// change that (upstream's `Unschedulable`).
    Unschedulable(Vec<String>),
    /// It may not, and no preemption would help (upstream's
    /// `UnschedulableAndUnresolvable`).
    Unresolvable(Vec<String>),
}

impl Filter {
    pub fn is_pass(&self) -> bool {
        matches!(self, Filter::Pass)
    }

    /// The reasons, in the words `FailedScheduling` events use
    /// (`Insufficient cpu`, `node(s) didn't match Pod's node affinity/selector`).
    pub fn reasons(&self) -> &[String] {
        match self {
            Filter::Pass => &[],
            Filter::Unschedulable(r) | Filter::Unresolvable(r) => r,
        }
    }
}

/// Everything a cycle filters and scores against: one consistent view of
/// all nodes and the pods on them. Node infos are shared with the cache, so
/// taking a snapshot copies pointers, not nodes (upstream's UpdateSnapshot
/// serves the same purpose).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<Arc<NodeInfo>>,
}

/// A filter plugin: may `pod` run on `node`? Pure: no I/O, no shared state
/// beyond the snapshot.
pub trait FilterPlugin: Send + Sync {
    /// Upstream's plugin name (`NodeResourcesFit`).
    fn name(&self) -> &'static str;
    fn filter(&self, pod: &Pod, node: &NodeInfo, snapshot: &Snapshot) -> Filter;
}

/// The highest score a plugin gives (upstream's `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// A score plugin: how good is `node` for `pod`, from 0 to [`MAX_NODE_SCORE`]?
/// Scores of the feasible nodes may be normalized together afterwards.
pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn score(&self, pod: &Pod, node: &NodeInfo, snapshot: &Snapshot) -> i64;
    /// Rescale the raw scores of all feasible nodes (in place) to
    /// 0..=MAX_NODE_SCORE where the plugin needs to (upstream's
    /// NormalizeScore); the default leaves them as they are.
    fn normalize(&self, _pod: &Pod, _scores: &mut [i64]) {}
    /// Upstream's default weight of this plugin.
    fn weight(&self) -> i64 {
        1
    }
}
