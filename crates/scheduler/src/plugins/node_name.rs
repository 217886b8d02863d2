//! NodeName: a pod that names its node (`spec.nodeName`) fits only there.
//!
//! Mirrors upstream's `pkg/scheduler/framework/plugins/nodename`.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{Filter, FilterPlugin, NodeInfo, Snapshot};

/// Upstream's plugin name.
pub const NAME: &str = "NodeName";

/// Upstream's `ErrReason`.
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

/// The NodeName filter plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> Filter {
        match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(name) if !name.is_empty() && name != node.name() => {
                Filter::Unresolvable(vec![ERR_REASON.to_string()])
            }
            _ => Filter::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    use super::*;
    use crate::plugins::resources::node_info;

    #[test]
    fn pods_naming_a_node_fit_only_that_node() {
        let mismatch = || Filter::Unresolvable(vec![ERR_REASON.to_string()]);
        let cases = [
            (
                "a pod without a node name fits anywhere",
                json!({}),
                Filter::Pass,
            ),
            (
                "an empty node name fits anywhere",
                json!({"nodeName": ""}),
                Filter::Pass,
            ),
            (
                "the named node fits",
                json!({"nodeName": "n1"}),
                Filter::Pass,
            ),
            (
                "another node does not fit",
                json!({"nodeName": "n2"}),
                mismatch(),
            ),
        ];
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
        let info = node_info(Arc::new(node), vec![]);
        for (name, mut spec, want) in cases {
            spec["containers"] = json!([]);
            let pod: Pod =
                serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap();
            assert_eq!(
                NodeName.filter(&pod, &info, &Snapshot::default()),
                want,
                "{name}"
            );
        }
    }
}
