//! The object every write phase creates: a small, realistic Pod (~1 KB of
//! JSON), the shape a Deployment's pod template gives, with a unique name.

use serde_json::{json, Value};

/// The namespace all benchmark objects live in.
pub const NAMESPACE: &str = "bench";

/// A Pod named `name` as JSON: one container with env, ports, resources and
/// probes, labels and annotations as controllers and tools leave them.
pub fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {
                "app": "web",
                "tier": "frontend",
                "pod-template-hash": "5d8f7c9b6d",
                "bench.tugboat.dev/run": "api"
            },
            "annotations": {
                "bench.tugboat.dev/note": "created by tug-bench api",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090"
            }
        },
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "containers": [{
                "name": "web",
                "image": "registry.example/web/frontend:1.25.3",
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/web"],
                "args": ["--port=8080", "--metrics-port=9090", "--log-level=info"],
                "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}
                ],
                "env": [
                    {"name": "MODE", "value": "production"},
                    {"name": "CACHE_SIZE", "value": "256Mi"},
                    {"name": "UPSTREAM", "value": "http://api.default.svc:8080"}
                ],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "500m", "memory": "256Mi"}
                },
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": 8080},
                    "periodSeconds": 10
                }
            }]
        }
    })
}

/// The request body for [`pod`]: what both targets write.
pub fn pod_bytes(name: &str) -> Vec<u8> {
    serde_json::to_vec(&pod(name)).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_is_about_a_kilobyte_and_a_valid_k8s_pod() {
        let bytes = pod_bytes("bench-0-0");
        assert!((800..1400).contains(&bytes.len()), "{} bytes", bytes.len());
        let typed: k8s_openapi::api::core::v1::Pod = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(typed.metadata.name.as_deref(), Some("bench-0-0"));
    }
}
