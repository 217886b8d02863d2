//! Fixtures shared by the plugins' unit tests: pods and nodes from JSON.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use crate::framework::{NodeInfo, Resources, ScorePlugin, Snapshot};
use crate::plugins::resources::node_info;

/// A pod named `p` with this spec.
pub fn pod_with_spec(spec: Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
}

/// A pod with one container requesting `requests`.
pub fn requesting(requests: Value) -> Pod {
    pod_with_spec(json!({"containers": [{"name": "c", "resources": {"requests": requests}}]}))
}

/// A node `n` with this allocatable, running `pods` (sums computed).
pub fn node_with_allocatable(allocatable: Value, pods: Vec<Pod>) -> NodeInfo {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "n"},
        "status": {"allocatable": allocatable},
    }))
    .unwrap();
    node_info(Arc::new(node), pods.into_iter().map(Arc::new).collect())
}

/// A node with these labels (and `kubernetes.io/hostname: <name>` unless
/// given) running `pods`; resources are left empty.
pub fn labeled_node(name: &str, labels: &[(&str, &str)], pods: Vec<Pod>) -> NodeInfo {
    let mut all: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.entry("kubernetes.io/hostname".into())
        .or_insert(name.into());
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": all}})).unwrap();
    let pods: Vec<Arc<Pod>> = pods.into_iter().map(Arc::new).collect();
    NodeInfo {
        node: Arc::new(node),
        pods_with_affinity: pods
            .iter()
            .filter(|p| crate::plugins::inter_pod_affinity::has_affinity(p))
            .cloned()
            .collect(),
        pods,
        requested: Resources::default(),
        non_zero_requested: Resources::default(),
        allocatable: Resources::default(),
        used_ports: vec![],
    }
}

/// A score plugin's normalized scores for every node of `snapshot`.
pub fn normalized_scores(plugin: &impl ScorePlugin, pod: &Pod, snapshot: &Snapshot) -> Vec<i64> {
    let mut scores: Vec<i64> = snapshot
        .nodes
        .iter()
        .map(|n| plugin.score(pod, n, snapshot))
        .collect();
    plugin.normalize(pod, &mut scores);
    scores
}
