//! NodePorts: a pod's host ports must be free on the node.
//!
//! Mirrors upstream's `pkg/scheduler/framework/plugins/nodeports` and the
//! conflict rule of `framework.HostPortInfo.CheckConflict`: two host ports
//! conflict when protocol and port are equal and the host IPs are equal or
//! either is `0.0.0.0` (an empty IP means `0.0.0.0`, an empty protocol
//! `TCP`). Like upstream, only app containers' ports count.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{Filter, FilterPlugin, HostPort, NodeInfo, Snapshot};
use crate::plugins::resources::pod_host_ports;

/// Upstream's plugin name.
pub const NAME: &str = "NodePorts";

/// Upstream's `ErrReason`.
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

const BIND_ALL: &str = "0.0.0.0";

/// Whether `wanted` (sanitized, as [`pod_host_ports`] gives it) conflicts
/// with a port in `used` (upstream's `HostPortInfo.CheckConflict`).
pub fn conflicts(used: &[HostPort], wanted: &HostPort) -> bool {
    let (ip, protocol, port) = wanted;
    if *port <= 0 {
        return false;
    }
    used.iter().any(|(used_ip, used_protocol, used_port)| {
        used_port == port
            && used_protocol == protocol
            && (ip == BIND_ALL || used_ip == BIND_ALL || used_ip == ip)
    })
}

/// The NodePorts filter plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> Filter {
        if pod_host_ports(pod)
            .iter()
            .any(|wanted| conflicts(&node.used_ports, wanted))
        {
            Filter::Unschedulable(vec![ERR_REASON.to_string()])
        } else {
            Filter::Pass
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

    fn pod(ports: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "ports": ports}]},
        }))
        .unwrap()
    }

    #[test]
    fn host_port_conflicts_follow_upstream() {
        let conflict = || Filter::Unschedulable(vec![ERR_REASON.to_string()]);
        let cases = [
            ("no ports fit", json!([]), json!([]), Filter::Pass),
            (
                "container ports without host ports never conflict",
                json!([{"containerPort": 80}]),
                json!([{"containerPort": 80}]),
                Filter::Pass,
            ),
            (
                "the same host port conflicts",
                json!([{"containerPort": 80, "hostPort": 8080}]),
                json!([{"containerPort": 81, "hostPort": 8080}]),
                conflict(),
            ),
            (
                "another host port fits",
                json!([{"containerPort": 80, "hostPort": 8080}]),
                json!([{"containerPort": 80, "hostPort": 8081}]),
                Filter::Pass,
            ),
            (
                "another protocol fits",
                json!([{"containerPort": 53, "hostPort": 53, "protocol": "UDP"}]),
                json!([{"containerPort": 53, "hostPort": 53}]),
                Filter::Pass,
            ),
            (
                "an empty protocol means TCP",
                json!([{"containerPort": 53, "hostPort": 53, "protocol": "TCP"}]),
                json!([{"containerPort": 53, "hostPort": 53}]),
                conflict(),
            ),
            (
                "different host IPs fit",
                json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]),
                json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}]),
                Filter::Pass,
            ),
            (
                "the same host IP conflicts",
                json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]),
                json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]),
                conflict(),
            ),
            (
                "a wanted 0.0.0.0 conflicts with any IP",
                json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]),
                json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "0.0.0.0"}]),
                conflict(),
            ),
            (
                "a used empty IP conflicts with any IP",
                json!([{"containerPort": 80, "hostPort": 8080}]),
                json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]),
                conflict(),
            ),
        ];
        for (name, used, wanted, want) in cases {
            let node: Node = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
            let info = node_info(Arc::new(node), vec![Arc::new(pod(used))]);
            assert_eq!(
                NodePorts.filter(&pod(wanted), &info, &Snapshot::default()),
                want,
                "{name}"
            );
        }
    }
}
