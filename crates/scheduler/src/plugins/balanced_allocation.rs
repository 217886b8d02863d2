//! NodeResourcesBalancedAllocation: favour nodes whose cpu and memory would
//! be used in equal proportions with the pod on them.
//!
//! Mirrors upstream's `pkg/scheduler/framework/plugins/noderesources/balanced_allocation.go`:
//! the score is `(1 - std) * 100`, where `std` is the standard deviation of
//! the requested fractions (capped at 1) of the resources the node has,
//! counting plain requests (no non-zero defaults). Best-effort pods (no
//! requests of the scored resources) are not scored (upstream skips the
//! plugin for them); here every node gets 0.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{NodeInfo, ScorePlugin, Snapshot, MAX_NODE_SCORE};
use crate::plugins::node_resources_fit::{
    allocatable_and_requested, default_resources, pod_request_list, ResourceSpec,
};

/// Upstream's plugin name.
pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// The NodeResourcesBalancedAllocation score plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancedAllocation {
    /// The resources whose fractions are balanced (weights are ignored,
    /// as upstream does).
    pub resources: Vec<ResourceSpec>,
}

impl Default for BalancedAllocation {
    fn default() -> Self {
        BalancedAllocation {
            resources: default_resources(),
        }
    }
}

fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let fractions: Vec<f64> = requested
        .iter()
        .zip(allocatable)
        .filter(|(_, &alloc)| alloc != 0)
        .map(|(&req, &alloc)| (req as f64 / alloc as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            let variance = fractions
                .iter()
                .map(|f| (f - mean) * (f - mean))
                .sum::<f64>();
            (variance / n as f64).sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl BalancedAllocation {
    /// The pod's plain requests of the scored resources, once per cycle.
    pub fn pod_requests(&self, pod: &Pod) -> Vec<i64> {
        pod_request_list(pod, &self.resources, true)
    }

    /// [`ScorePlugin::score`] given [`Self::pod_requests`].
    pub fn score_requests(&self, pod_requests: &[i64], node: &NodeInfo) -> i64 {
        if pod_requests.iter().all(|&r| r == 0) {
            return 0;
        }
        let (allocatable, requested) =
            allocatable_and_requested(node, &self.resources, pod_requests, true);
        balanced_score(&requested, &allocatable)
    }
}

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }

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

    #[test]
    fn score_is_one_minus_the_deviation_of_fractions() {
        let cases: Vec<(&str, Pod, Value, Vec<Pod>, i64)> = vec![
            (
                "equal fractions score 100",
                requesting(json!({"cpu": "3", "memory": "5Gi"})),
                json!({"cpu": "6", "memory": "10Gi"}),
                vec![],
                100,
            ),
            (
                "fractions 0.75 and 0.5 score 87",
                requesting(json!({"cpu": "3", "memory": "5Gi"})),
                json!({"cpu": "4", "memory": "10Gi"}),
                vec![],
                87,
            ),
            (
                "pods on the node count with their plain requests",
                requesting(json!({"cpu": "1", "memory": "1Gi"})),
                json!({"cpu": "4", "memory": "4Gi"}),
                vec![
                    requesting(json!({"cpu": "1"})),
                    pod(json!({"containers": [{"name": "c"}]})),
                ],
                // cpu 2/4, memory 1/4: std 0.125.
                87,
            ),
            (
                "fractions above one are capped",
                requesting(json!({"cpu": "8", "memory": "2Gi"})),
                json!({"cpu": "4", "memory": "4Gi"}),
                vec![],
                75,
            ),
            (
                "a best-effort pod is not scored",
                pod(json!({"containers": [{"name": "c"}]})),
                json!({"cpu": "4", "memory": "4Gi"}),
                vec![requesting(json!({"cpu": "4"}))],
                0,
            ),
            (
                "a pod requesting only cpu is still balanced against memory",
                requesting(json!({"cpu": "2"})),
                json!({"cpu": "4", "memory": "4Gi"}),
                vec![],
                75,
            ),
            (
                "a node with only one scored resource scores 100",
                requesting(json!({"cpu": "2", "memory": "1Gi"})),
                json!({"cpu": "4"}),
                vec![],
                100,
            ),
        ];
        for (name, p, alloc, pods, want) in cases {
            let info = node(alloc, pods);
            assert_eq!(
                BalancedAllocation::default().score(&p, &info, &Snapshot::default()),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn three_resources_use_the_full_standard_deviation() {
        // Fractions 0.2, 0.5, 0.8: mean 0.5, std sqrt(0.06) ~ 0.2449.
        assert_eq!(balanced_score(&[2, 5, 8], &[10, 10, 10]), 75);
        assert_eq!(balanced_score(&[1], &[0]), 100);
    }
}
