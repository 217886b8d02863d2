//! NodeResourcesFit: a pod fits a node only if the node's allocatable
//! resources minus what its pods request cover the pod's effective requests
//! and a pod slot is free; nodes are scored by a strategy (LeastAllocated
//! by default, weights cpu 1 and memory 1).
//!
//! Mirrors upstream's `pkg/scheduler/framework/plugins/noderesources`
//! (`fit.go`, `least_allocated.go`, `most_allocated.go` and the shared
//! `resource_allocation.go`). The profile arguments for ignored extended
//! resources and `RequestedToCapacityRatio` are not supported.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{
    Filter, FilterPlugin, NodeInfo, Resources, ScorePlugin, Snapshot, MAX_NODE_SCORE,
};
use crate::plugins::resources::{
    is_scalar_resource_name, non_zero_pod_requests, pod_requests, CPU, EPHEMERAL_STORAGE, MEMORY,
};

/// Upstream's plugin name.
pub const NAME: &str = "NodeResourcesFit";

/// Why a pod does not fit a node's resources: upstream's
/// `InsufficientResource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientResource {
    /// `pods`, `cpu`, `memory`, `ephemeral-storage` or a scalar name.
    pub resource: String,
    /// `Too many pods`, `Insufficient cpu`, ...
    pub reason: String,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
    /// The request exceeds the node's whole allocatable amount, so no
    /// preemption on the node could help.
    pub unresolvable: bool,
}

fn insufficient(
    resource: &str,
    reason: String,
    requested: i64,
    used: i64,
    capacity: i64,
) -> InsufficientResource {
    InsufficientResource {
        resource: resource.to_string(),
        reason,
        requested,
        used,
        capacity,
        unresolvable: requested > capacity,
    }
}

/// Every resource the pod lacks on the node (upstream's `Fits` /
/// `fitsRequest`), in upstream's order: pods, cpu, memory,
/// ephemeral-storage, then scalar resources by name.
pub fn fits(pod: &Pod, node: &NodeInfo) -> Vec<InsufficientResource> {
    fits_request(&pod_requests(pod), node)
}

/// The filter for a pod whose effective requests are already summed (the
/// cycle sums them once per pod rather than once per node).
pub fn filter_request(request: &Resources, node: &NodeInfo) -> Filter {
    let lacking = fits_request(request, node);
    if lacking.is_empty() {
        return Filter::Pass;
    }
    let unresolvable = lacking.iter().any(|r| r.unresolvable);
    let reasons = lacking.into_iter().map(|r| r.reason).collect();
    if unresolvable {
        Filter::Unresolvable(reasons)
    } else {
        Filter::Unschedulable(reasons)
    }
}

fn fits_request(request: &Resources, node: &NodeInfo) -> Vec<InsufficientResource> {
    let mut result = Vec::new();
    let allocatable = &node.allocatable;
    let requested = &node.requested;
    let pods = i64::try_from(node.pods.len()).unwrap_or(i64::MAX);
    if pods.saturating_add(1) > allocatable.pods {
        result.push(InsufficientResource {
            resource: "pods".to_string(),
            reason: "Too many pods".to_string(),
            requested: 1,
            used: pods,
            capacity: allocatable.pods,
            unresolvable: false,
        });
    }
    if request.milli_cpu == 0
        && request.memory == 0
        && request.ephemeral_storage == 0
        && request.scalar.is_empty()
    {
        return result;
    }
    let natives = [
        (
            CPU,
            request.milli_cpu,
            requested.milli_cpu,
            allocatable.milli_cpu,
        ),
        (MEMORY, request.memory, requested.memory, allocatable.memory),
        (
            EPHEMERAL_STORAGE,
            request.ephemeral_storage,
            requested.ephemeral_storage,
            allocatable.ephemeral_storage,
        ),
    ];
    for (name, want, used, capacity) in natives {
        if want > 0 && want > capacity.saturating_sub(used) {
            result.push(insufficient(
                name,
                format!("Insufficient {name}"),
                want,
                used,
                capacity,
            ));
        }
    }
    for (name, &want) in &request.scalar {
        if want == 0 {
            continue;
        }
        let used = requested.scalar.get(name).copied().unwrap_or(0);
        let capacity = allocatable.scalar.get(name).copied().unwrap_or(0);
        if want > capacity.saturating_sub(used) {
            result.push(insufficient(
                name,
                format!("Insufficient {name}"),
                want,
                used,
                capacity,
            ));
        }
    }
    result
}

/// How [`NodeResourcesFit`] scores nodes (upstream's
/// `ScoringStrategyType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoringStrategy {
    /// Favour nodes with the most room left (spreading; the default).
    #[default]
    LeastAllocated,
    /// Favour nodes with the least room left (bin packing).
    MostAllocated,
}

/// One scored resource and its weight (upstream's `ResourceSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    pub name: String,
    pub weight: i64,
}

/// Upstream's default scored resources: cpu and memory, weight 1 each.
pub fn default_resources() -> Vec<ResourceSpec> {
    [CPU, MEMORY]
        .into_iter()
        .map(|name| ResourceSpec {
            name: name.to_string(),
            weight: 1,
        })
        .collect()
}

fn resource_amount(resources: &Resources, name: &str) -> i64 {
    match name {
        CPU => resources.milli_cpu,
        MEMORY => resources.memory,
        EPHEMERAL_STORAGE => resources.ephemeral_storage,
        other => resources.scalar.get(other).copied().unwrap_or(0),
    }
}

/// The pod's request of each of `resources`: with `use_requested` its
/// plain requests, otherwise with the non-zero cpu/memory defaults
/// (upstream's `calculatePodResourceRequestList`).
pub(crate) fn pod_request_list(
    pod: &Pod,
    resources: &[ResourceSpec],
    use_requested: bool,
) -> Vec<i64> {
    let requests = if use_requested {
        pod_requests(pod)
    } else {
        non_zero_pod_requests(pod)
    };
    resources
        .iter()
        .map(|r| resource_amount(&requests, &r.name))
        .collect()
}

/// Per resource, the node's allocatable amount and what would be requested
/// with the pod on it; `(0, 0)` for resources to leave out of the score
/// (upstream's `resourceAllocationScorer.score` with
/// `calculateResourceAllocatableRequest`). cpu and memory count the node's
/// non-zero requests unless `use_requested`.
pub(crate) fn allocatable_and_requested(
    node: &NodeInfo,
    resources: &[ResourceSpec],
    pod_requests: &[i64],
    use_requested: bool,
) -> (Vec<i64>, Vec<i64>) {
    let counted = if use_requested {
        &node.requested
    } else {
        &node.non_zero_requested
    };
    let mut allocatable = vec![0; resources.len()];
    let mut requested = vec![0; resources.len()];
    for (i, (spec, &pod_request)) in resources.iter().zip(pod_requests).enumerate() {
        let name = spec.name.as_str();
        if pod_request == 0 && is_scalar_resource_name(name) {
            continue;
        }
        let (alloc, used) = match name {
            CPU => (node.allocatable.milli_cpu, counted.milli_cpu),
            MEMORY => (node.allocatable.memory, counted.memory),
            EPHEMERAL_STORAGE => (
                node.allocatable.ephemeral_storage,
                node.requested.ephemeral_storage,
            ),
            other => match node.allocatable.scalar.get(other) {
                Some(&alloc) => (alloc, resource_amount(&node.requested, other)),
                None => (0, 0),
            },
        };
        if alloc == 0 {
            continue;
        }
        allocatable[i] = alloc;
        requested[i] = used.saturating_add(pod_request);
    }
    (allocatable, requested)
}

fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// The NodeResourcesFit filter and score plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeResourcesFit {
    pub strategy: ScoringStrategy,
    pub resources: Vec<ResourceSpec>,
}

impl Default for NodeResourcesFit {
    fn default() -> Self {
        NodeResourcesFit {
            strategy: ScoringStrategy::default(),
            resources: default_resources(),
        }
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Unschedulable with every reason from [`fits`]; unresolvable if some
    /// request exceeds the node's allocatable amount outright.
    fn filter(&self, pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> Filter {
        filter_request(&pod_requests(pod), node)
    }
}

impl NodeResourcesFit {
    /// The pod's scored requests (with upstream's non-zero defaults), once
    /// per cycle.
    pub fn pod_requests(&self, pod: &Pod) -> Vec<i64> {
        pod_request_list(pod, &self.resources, false)
    }

    /// [`ScorePlugin::score`] given [`Self::pod_requests`].
    pub fn score_requests(&self, pod_requests: &[i64], node: &NodeInfo) -> i64 {
        let (allocatable, requested) =
            allocatable_and_requested(node, &self.resources, pod_requests, false);
        let mut score = 0;
        let mut weights = 0;
        for (i, spec) in self.resources.iter().enumerate() {
            if allocatable[i] == 0 {
                continue;
            }
            let resource_score = match self.strategy {
                ScoringStrategy::LeastAllocated => {
                    least_requested_score(requested[i], allocatable[i])
                }
                ScoringStrategy::MostAllocated => {
                    most_requested_score(requested[i], allocatable[i])
                }
            };
            score += resource_score * spec.weight;
            weights += spec.weight;
        }
        if weights == 0 {
            0
        } else {
            score / weights
        }
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The weighted average, over the scored resources the node has, of the
    /// strategy's per-resource score.
    fn score(&self, pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> i64 {
        self.score_requests(&self.pod_requests(pod), node)
    }
}

#[cfg(test)]
mod tests {

    use serde_json::{json, Value};

    use super::*;
    use crate::plugins::testing::{
        node_with_allocatable as node, pod_with_spec as pod, requesting,
    };

    fn unschedulable(reasons: &[&str]) -> Filter {
        Filter::Unschedulable(reasons.iter().map(|r| r.to_string()).collect())
    }

    fn unresolvable(reasons: &[&str]) -> Filter {
        Filter::Unresolvable(reasons.iter().map(|r| r.to_string()).collect())
    }

    #[test]
    fn filter_checks_requests_against_free_allocatable() {
        let alloc = json!({"cpu": "10", "memory": "20", "pods": "32",
            "ephemeral-storage": "20", "example.com/aaa": "5"});
        let used = || vec![requesting(json!({"cpu": "5", "memory": "19"}))];
        let cases: Vec<(&str, Pod, Vec<Pod>, Filter)> = vec![
            (
                "a pod without requests fits a full node",
                pod(json!({"containers": [{"name": "c"}]})),
                vec![requesting(json!({"cpu": "10", "memory": "20"}))],
                Filter::Pass,
            ),
            (
                "a pod fitting the free room passes",
                requesting(json!({"cpu": "5", "memory": "1"})),
                used(),
                Filter::Pass,
            ),
            (
                "too much cpu",
                requesting(json!({"cpu": "6", "memory": "1"})),
                used(),
                unschedulable(&["Insufficient cpu"]),
            ),
            (
                "too much memory",
                requesting(json!({"cpu": "1", "memory": "2"})),
                used(),
                unschedulable(&["Insufficient memory"]),
            ),
            (
                "every lacking resource is reported",
                requesting(json!({"cpu": "6", "memory": "2"})),
                used(),
                unschedulable(&["Insufficient cpu", "Insufficient memory"]),
            ),
            (
                "a request beyond the whole node is unresolvable",
                requesting(json!({"cpu": "11", "memory": "2"})),
                used(),
                unresolvable(&["Insufficient cpu", "Insufficient memory"]),
            ),
            (
                "an init container larger than the free room does not fit",
                pod(json!({
                    "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "6"}}}],
                    "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
                })),
                used(),
                unschedulable(&["Insufficient cpu"]),
            ),
            (
                "an init container within the free room fits",
                pod(json!({
                    "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "5",
                        "memory": "1"}}}],
                    "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
                })),
                used(),
                Filter::Pass,
            ),
            (
                "a sidecar adds to the app containers",
                pod(json!({
                    "initContainers": [{"name": "s", "restartPolicy": "Always",
                        "resources": {"requests": {"cpu": "3"}}}],
                    "containers": [{"name": "c", "resources": {"requests": {"cpu": "3"}}}],
                })),
                used(),
                unschedulable(&["Insufficient cpu"]),
            ),
            (
                "the overhead counts",
                pod(json!({
                    "overhead": {"memory": "1"},
                    "containers": [{"name": "c", "resources": {"requests": {"memory": "1"}}}],
                })),
                used(),
                unschedulable(&["Insufficient memory"]),
            ),
            (
                "pods already on the node count with their init containers and overhead",
                requesting(json!({"cpu": "3"})),
                vec![pod(json!({
                    "overhead": {"cpu": "1"},
                    "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "7"}}}],
                    "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
                }))],
                unschedulable(&["Insufficient cpu"]),
            ),
            (
                "too much ephemeral storage",
                requesting(json!({"ephemeral-storage": "25"})),
                vec![],
                unresolvable(&["Insufficient ephemeral-storage"]),
            ),
            (
                "an extended resource within the allocatable fits",
                requesting(json!({"example.com/aaa": "5"})),
                vec![],
                Filter::Pass,
            ),
            (
                "an extended resource used up by other pods",
                requesting(json!({"example.com/aaa": "3"})),
                vec![requesting(json!({"example.com/aaa": "3"}))],
                unschedulable(&["Insufficient example.com/aaa"]),
            ),
            (
                "an extended resource the node lacks is unresolvable",
                requesting(json!({"example.com/bbb": "1"})),
                vec![],
                unresolvable(&["Insufficient example.com/bbb"]),
            ),
            (
                "a zero extended request is ignored",
                requesting(json!({"example.com/bbb": "0"})),
                vec![],
                Filter::Pass,
            ),
        ];
        for (name, p, pods, want) in cases {
            let info = node(alloc.clone(), pods);
            let got = NodeResourcesFit::default().filter(&p, &info, &Snapshot::default());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn filter_needs_a_free_pod_slot_even_without_requests() {
        let full = || {
            vec![
                pod(json!({"containers": []})),
                pod(json!({"containers": []})),
            ]
        };
        let cases: Vec<(&str, Pod, Vec<Pod>, Filter)> = vec![
            (
                "a pod without requests needs a slot",
                pod(json!({"containers": [{"name": "c"}]})),
                full(),
                unschedulable(&["Too many pods"]),
            ),
            (
                "too many pods is reported with other reasons",
                requesting(json!({"cpu": "2"})),
                full(),
                unresolvable(&["Too many pods", "Insufficient cpu"]),
            ),
            (
                "a free slot passes",
                pod(json!({"containers": [{"name": "c"}]})),
                vec![pod(json!({"containers": []}))],
                Filter::Pass,
            ),
        ];
        for (name, p, pods, want) in cases {
            let info = node(json!({"cpu": "1", "memory": "1Gi", "pods": "2"}), pods);
            let got = NodeResourcesFit::default().filter(&p, &info, &Snapshot::default());
            assert_eq!(got, want, "{name}");
        }
        let no_pods_allowed = node(json!({"cpu": "1"}), vec![]);
        assert_eq!(
            NodeResourcesFit::default().filter(
                &pod(json!({"containers": []})),
                &no_pods_allowed,
                &Snapshot::default()
            ),
            unschedulable(&["Too many pods"]),
            "a node without allocatable pods takes none"
        );
    }

    #[test]
    fn least_allocated_scores_the_room_left() {
        let gi = |n: i64| n << 30;
        let cases: Vec<(&str, Pod, Value, Vec<Pod>, i64)> = vec![
            (
                "half the cpu and memory left scores 50",
                requesting(json!({"cpu": "2", "memory": "4Gi"})),
                json!({"cpu": "4", "memory": "8Gi", "pods": "10"}),
                vec![],
                50,
            ),
            (
                "cpu and memory are averaged with equal weights",
                requesting(json!({"cpu": "3", "memory": "4Gi"})),
                json!({"cpu": "4", "memory": "8Gi", "pods": "10"}),
                vec![],
                (25 + 50) / 2,
            ),
            (
                "pods on the node count",
                requesting(json!({"cpu": "1", "memory": "2Gi"})),
                json!({"cpu": "4", "memory": "8Gi", "pods": "10"}),
                vec![requesting(json!({"cpu": "1", "memory": "2Gi"}))],
                50,
            ),
            (
                "containers without requests count as 100m and 200Mi",
                pod(json!({"containers": [{"name": "c"}]})),
                json!({"cpu": "1", "memory": "1000Mi", "pods": "10"}),
                vec![pod(json!({"containers": [{"name": "c"}]}))],
                (80 + 60) / 2,
            ),
            (
                "an over-committed resource scores zero",
                requesting(json!({"cpu": "5", "memory": "4Gi"})),
                json!({"cpu": "4", "memory": "8Gi", "pods": "10"}),
                vec![],
                25,
            ),
            (
                "a node without allocatable resources scores zero",
                requesting(json!({"cpu": "1"})),
                json!({"pods": "10"}),
                vec![],
                0,
            ),
        ];
        for (name, p, alloc, pods, want) in cases {
            let info = node(alloc, pods);
            assert_eq!(
                NodeResourcesFit::default().score(&p, &info, &Snapshot::default()),
                want,
                "{name}"
            );
        }
        // Upstream's "differently sized nodes" case.
        let p = requesting(json!({"cpu": "3", "memory": "5Gi"}));
        let small = node(json!({"cpu": "4", "memory": gi(10).to_string()}), vec![]);
        let large = node(json!({"cpu": "6", "memory": gi(10).to_string()}), vec![]);
        let plugin = NodeResourcesFit::default();
        assert_eq!(plugin.score(&p, &small, &Snapshot::default()), 37);
        assert_eq!(plugin.score(&p, &large, &Snapshot::default()), 50);
    }

    #[test]
    fn most_allocated_scores_the_room_used() {
        let plugin = NodeResourcesFit {
            strategy: ScoringStrategy::MostAllocated,
            ..NodeResourcesFit::default()
        };
        let p = requesting(json!({"cpu": "3", "memory": "5Gi"}));
        let info = node(json!({"cpu": "4", "memory": "10Gi"}), vec![]);
        assert_eq!(plugin.score(&p, &info, &Snapshot::default()), (75 + 50) / 2);
    }

    #[test]
    fn weighted_extended_resources_score_only_when_requested() {
        let plugin = NodeResourcesFit {
            strategy: ScoringStrategy::LeastAllocated,
            resources: vec![
                ResourceSpec {
                    name: "cpu".into(),
                    weight: 1,
                },
                ResourceSpec {
                    name: "example.com/gpu".into(),
                    weight: 3,
                },
            ],
        };
        let info = node(json!({"cpu": "4", "example.com/gpu": "4"}), vec![]);
        let with_gpu = requesting(json!({"cpu": "2", "example.com/gpu": "1"}));
        let without_gpu = requesting(json!({"cpu": "2"}));
        assert_eq!(
            plugin.score(&with_gpu, &info, &Snapshot::default()),
            (50 + 75 * 3) / 4
        );
        assert_eq!(plugin.score(&without_gpu, &info, &Snapshot::default()), 50);
    }
}
