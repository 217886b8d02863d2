//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only
//! pods that tolerate the `node.kubernetes.io/unschedulable:NoSchedule`
//! taint.
//!
//! Mirrors upstream's `pkg/scheduler/framework/plugins/nodeunschedulable`.

use k8s_openapi::api::core::v1::{Pod, Taint};

use crate::framework::{Filter, FilterPlugin, NodeInfo, Snapshot};
use crate::plugins::taint_toleration::{
    pod_tolerations, tolerations_tolerate_taint, EFFECT_NO_SCHEDULE,
};

/// Upstream's plugin name.
pub const NAME: &str = "NodeUnschedulable";

/// Upstream's `ErrReasonUnschedulable`.
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";

/// The taint a cordoned node stands for (`v1.TaintNodeUnschedulable`).
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// The NodeUnschedulable filter plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> Filter {
        let unschedulable = node
            .node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if !unschedulable {
            return Filter::Pass;
        }
        let taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.to_string(),
            effect: EFFECT_NO_SCHEDULE.to_string(),
            ..Taint::default()
        };
        if tolerations_tolerate_taint(pod_tolerations(pod), &taint) {
            Filter::Pass
        } else {
            Filter::Unresolvable(vec![ERR_REASON_UNSCHEDULABLE.to_string()])
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};

    use super::*;
    use crate::plugins::resources::node_info;

    #[test]
    fn cordoned_nodes_take_only_pods_tolerating_the_unschedulable_taint() {
        let unschedulable = || Filter::Unresolvable(vec!["node(s) were unschedulable".into()]);
        let cases: Vec<(&str, Value, Value, Filter)> = vec![
            (
                "a schedulable node passes",
                json!({}),
                json!([]),
                Filter::Pass,
            ),
            (
                "unschedulable false passes",
                json!({"unschedulable": false}),
                json!([]),
                Filter::Pass,
            ),
            (
                "a cordoned node rejects a pod without tolerations",
                json!({"unschedulable": true}),
                json!([]),
                unschedulable(),
            ),
            (
                "a pod tolerating the taint passes",
                json!({"unschedulable": true}),
                json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                        "effect": "NoSchedule"}]),
                Filter::Pass,
            ),
            (
                "a pod tolerating everything passes",
                json!({"unschedulable": true}),
                json!([{"operator": "Exists"}]),
                Filter::Pass,
            ),
            (
                "a toleration for NoExecute only does not help",
                json!({"unschedulable": true}),
                json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                        "effect": "NoExecute"}]),
                unschedulable(),
            ),
        ];
        for (name, spec, tolerations, want) in cases {
            let node: Node =
                serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": spec})).unwrap();
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": "p"},
                "spec": {"containers": [], "tolerations": tolerations},
            }))
            .unwrap();
            let info = node_info(Arc::new(node), vec![]);
            assert_eq!(
                NodeUnschedulable.filter(&pod, &info, &Snapshot::default()),
                want,
                "{name}"
            );
        }
    }
}
