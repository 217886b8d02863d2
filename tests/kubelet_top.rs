//! End to end: resource usage from a real `tug-kubelet` on the process
//! runtime, through the API server's built-in `metrics.k8s.io`, as
//! `kubectl top` (1.33) shows it: a pod spinning a shell loop uses most of
//! a core, a sleeping one next to nothing, and the node is listed. The
//! kubelet's own `/stats/summary`, `/metrics` and `/metrics/resource` are
//! read with the cluster's admin certificate.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tugboat_e2e::{free_port, ApiServer, Component};

const V: &str = "1.33";
const PATIENCE: Duration = Duration::from_secs(30);

fn pod(name: &str, command: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sh, -c, '{command}']
"#
    )
}

/// `kubectl top pod` columns of one pod: millicores and MiB.
fn top_row(out: &str, name: &str) -> Option<(u64, u64)> {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    let cpu = cols.get(1)?.strip_suffix('m')?.parse().ok()?;
    let mem = cols.get(2)?.strip_suffix("Mi")?.parse().ok()?;
    Some((cpu, mem))
}

/// Deletes the test's workloads and waits until the kubelet has stopped
/// every pod, also when the test fails: process-runtime containers are host
/// processes that outlive the kubelet, and busy loops must not linger.
/// Declared after the kubelet, so it runs while the kubelet still does.
struct Cleanup<'a> {
    server: &'a ApiServer,
    delete: &'a [&'a str],
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let mut args = vec!["delete", "--ignore-not-found", "--wait=false"];
        args.extend(self.delete);
        let _ = self.server.kubectl(V, &args);
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            let pods = self.server.kubectl(V, &["get", "pods", "-o", "name"]);
            if pods.status.success() && pods.stdout.is_empty() {
                return;
            }
            let _ = self.server.kubectl(
                V,
                &[
                    "delete",
                    "pods",
                    "--all",
                    "--grace-period=1",
                    "--wait=false",
                ],
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// `curl` the kubelet's HTTPS API with a certificate of the cluster CA.
fn kubelet_get(server: &ApiServer, port: &str, path: &str) -> String {
    let pki = server.data_dir.join("pki");
    let out = Command::new("curl")
        .args(["-sSfk", "--max-time", "10", "--cert"])
        .arg(pki.join("admin.crt"))
        .arg("--key")
        .arg(pki.join("admin.key"))
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "GET {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn kubectl_top_shows_a_busy_and_an_idle_process_pod_and_the_node() {
    let server = ApiServer::start();
    let (kubelet, _root, port) = Component::process_kubelet(&server, "worker");
    let _cleanup = Cleanup {
        server: &server,
        delete: &["pod", "busy", "idle"],
    };
    server.kubectl_stdin(
        V,
        &["apply", "-f", "-"],
        &pod("busy", "while :; do :; done"),
    );
    server.kubectl_stdin(V, &["apply", "-f", "-"], &pod("idle", "exec sleep 3600"));
    for name in ["busy", "idle"] {
        server.kubectl_until(
            V,
            &["get", "pod", name, "-o", "jsonpath={.status.phase}"],
            PATIENCE,
            "the pod Running",
            |out| out == "Running",
        );
    }

    // Discovery lists the group kubectl top looks for.
    let groups = server.kubectl_ok(V, &["api-versions"]);
    assert!(
        groups.lines().any(|l| l == "metrics.k8s.io/v1beta1"),
        "{groups}"
    );

    let top = server.kubectl_until(
        V,
        &["top", "pod"],
        PATIENCE,
        "both pods in kubectl top",
        |out| {
            matches!(
                (top_row(out, "busy"), top_row(out, "idle")),
                (Some((busy, _)), Some((idle, _))) if busy > 100 && idle <= 10
            )
        },
    );
    assert!(top.starts_with("NAME"), "{top}");

    // The sleeping pod's memory is there, in the raw PodMetrics.
    let raw = server.kubectl_ok(
        V,
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/idle",
        ],
    );
    let idle: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(idle["kind"], "PodMetrics", "{raw}");
    assert_eq!(idle["metadata"]["labels"]["app"], "idle");
    assert_eq!(idle["containers"][0]["name"], "main");
    let memory = idle["containers"][0]["usage"]["memory"].as_str().unwrap();
    assert!(memory != "0" && memory.ends_with("Ki"), "{raw}");

    // A label selector narrows the list, and pods by name work too.
    let selected = server.kubectl_ok(V, &["top", "pod", "-l", "app=busy", "--no-headers"]);
    assert_eq!(selected.lines().count(), 1, "{selected}");
    assert!(selected.starts_with("busy "), "{selected}");
    let missing = server.kubectl(V, &["top", "pod", "nope"]);
    assert!(!missing.status.success());

    // Every namespace, and per container.
    let all = server.kubectl_ok(V, &["top", "pod", "-A", "--no-headers"]);
    assert!(
        all.lines()
            .any(|l| l.split_whitespace().take(2).eq(["default", "busy"])),
        "{all}"
    );
    let containers = server.kubectl_ok(V, &["top", "pod", "idle", "--containers", "--no-headers"]);
    assert!(
        containers.split_whitespace().take(2).eq(["idle", "main"]),
        "{containers}"
    );

    // Older kubectls find the group through the older discovery forms.
    for old in ["1.27", "1.30"] {
        let out = server.kubectl_ok(old, &["top", "pod", "--no-headers"]);
        assert!(top_row(&out, "busy").is_some(), "kubectl {old}:\n{out}");
    }

    let nodes = server.kubectl_ok(V, &["top", "node"]);
    let row = nodes
        .lines()
        .find(|l| l.starts_with("worker "))
        .unwrap_or_else(|| panic!("no worker in\n{nodes}\n{}", kubelet.log()));
    let cols: Vec<&str> = row.split_whitespace().collect();
    let node_cpu: u64 = cols[1].trim_end_matches('m').parse().unwrap();
    assert!(node_cpu >= 100, "the busy loop runs on this node: {row}");
    assert!(cols[3].ends_with("Mi"), "{row}");

    let raw = server.kubectl_ok(V, &["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"]);
    let list: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(list["kind"], "NodeMetricsList", "{raw}");
    assert_eq!(list["apiVersion"], "metrics.k8s.io/v1beta1");
    assert_eq!(list["items"][0]["metadata"]["name"], "worker");
    assert_eq!(list["items"][0]["window"], "10s");

    // Read-only, as upstream's metrics-server.
    let delete = server.kubectl(
        V,
        &[
            "delete",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/nodes/worker",
        ],
    );
    assert!(!delete.status.success());
    assert!(
        String::from_utf8_lossy(&delete.stderr).contains("MethodNotAllowed")
            || String::from_utf8_lossy(&delete.stderr).contains("405"),
        "{}",
        String::from_utf8_lossy(&delete.stderr)
    );

    // The kubelet's endpoints behind it.
    let summary: Value =
        serde_json::from_str(&kubelet_get(&server, &port, "/stats/summary")).unwrap();
    assert_eq!(summary["node"]["nodeName"], "worker");
    assert!(
        summary["node"]["memory"]["availableBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    let busy = summary["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["name"] == "busy")
        .expect("the busy pod in the summary");
    assert!(
        busy["containers"][0]["cpu"]["usageCoreNanoSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );
    let metrics = kubelet_get(&server, &port, "/metrics");
    assert!(
        metrics.lines().any(|l| l == "kubelet_running_pods 2"),
        "{metrics}"
    );
    let resource = kubelet_get(&server, &port, "/metrics/resource");
    assert!(
        resource.lines().any(|l| l.starts_with(
            "container_cpu_usage_seconds_total{container=\"main\",namespace=\"default\",pod=\"busy\"}"
        )),
        "{resource}"
    );
    assert!(
        resource.contains("node_memory_working_set_bytes "),
        "{resource}"
    );
}

const BUSY_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: spinner}
spec:
  replicas: 1
  selector: {matchLabels: {app: spinner}}
  template:
    metadata: {labels: {app: spinner}}
    spec:
      nodeName: worker
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [sh, -c, 'while :; do :; done']
        resources: {requests: {cpu: 100m}}
"#;

const HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: spinner}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: spinner}
  minReplicas: 1
  maxReplicas: 2
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
"#;

#[test]
fn the_autoscaler_scales_a_busy_deployment_from_pod_metrics() {
    let server = ApiServer::start();
    let root = server.data_dir.with_extension("kubelet-root");
    let port = free_port().to_string();
    let _kubelet = Component::start(
        &server,
        "tug-kubelet",
        &[
            "--node-name",
            "worker",
            "--runtime",
            "process",
            "--root-dir",
            root.to_str().unwrap(),
            "--port",
            &port,
            "--healthz-port",
            "0",
        ],
    );
    let controllers = Component::start(
        &server,
        "tug-controller-manager",
        &["--horizontal-pod-autoscaler-sync-period", "2s"],
    );
    let _cleanup = Cleanup {
        server: &server,
        delete: &["hpa/spinner", "deployment/spinner"],
    };
    server.kubectl_stdin(V, &["apply", "-f", "-"], BUSY_DEPLOYMENT);
    server.kubectl_stdin(V, &["apply", "-f", "-"], HPA);
    // One spinning pod uses about ten times its 100m request: the
    // autoscaler goes to its maximum.
    server.kubectl_until(
        V,
        &[
            "get",
            "deployment",
            "spinner",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        Duration::from_secs(90),
        "the autoscaler to scale the deployment to 2",
        |out| out == "2",
    );
    let status = server.kubectl_ok(
        V,
        &[
            "get",
            "hpa",
            "spinner",
            "-o",
            "jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}",
        ],
    );
    let utilization: u64 = status
        .parse()
        .unwrap_or_else(|_| panic!("utilization {status:?}\n{}", controllers.log()));
    assert!(utilization > 100, "{utilization}%");
}
