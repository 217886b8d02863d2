//! End to end: the real `tug-apiserver` and a real `tug-kubelet` on the
//! process runtime, driven by kubectl 1.33: a pod's command runs as a host
//! process, and `kubectl logs` (plain, `--tail`, `-f`) reads it through the
//! API server's `pods/log` proxy and the kubelet's HTTPS server.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use tugboat_e2e::{ApiServer, Component};

const V: &str = "1.33";
const PATIENCE: Duration = Duration::from_secs(30);

/// A pod on `node` whose shell prints `count` numbered lines a little apart,
/// then keeps running.
fn pod(name: &str, node: &str, count: u32) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'for i in $(seq 1 {count}); do echo "line $i"; sleep 0.2; done; sleep 60']
"#
    )
}

#[test]
fn kubectl_logs_reads_a_process_runtime_pod_through_the_kubelet() {
    let server = ApiServer::start();
    let (kubelet, _root, port) = Component::process_kubelet(&server, "worker");
    server.kubectl_until(
        V,
        &[
            "get",
            "node",
            "worker",
            "-o",
            "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
        ],
        PATIENCE,
        "the node registered with its kubelet port",
        |out| out == port,
    );
    server.kubectl_stdin(V, &["apply", "-f", "-"], &pod("talker", "worker", 5));
    server.kubectl_until(
        V,
        &["get", "pod", "talker", "-o", "jsonpath={.status.phase}"],
        PATIENCE,
        "the pod Running",
        |out| out == "Running",
    );
    let all = server.kubectl_until(V, &["logs", "talker"], PATIENCE, "five lines", |out| {
        out.lines().count() == 5
    });
    assert_eq!(all.lines().next(), Some("line 1"), "{}", kubelet.log());
    assert_eq!(
        server.kubectl_ok(V, &["logs", "talker", "--tail=2"]),
        "line 4\nline 5\n"
    );

    // -f streams lines as they are written.
    server.kubectl_stdin(V, &["apply", "-f", "-"], &pod("slow", "worker", 30));
    server.kubectl_until(
        V,
        &["get", "pod", "slow", "-o", "jsonpath={.status.phase}"],
        PATIENCE,
        "the second pod Running",
        |out| out == "Running",
    );
    let mut follow = server
        .kubectl_cmd(V, &["logs", "-f", "slow"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    while seen.len() < 12 {
        match lines.next() {
            Some(Ok(line)) => seen.push(line),
            _ => break,
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(seen.len(), 12, "kubectl logs -f stopped early: {seen:?}");
    assert_eq!(seen[11], "line 12");

    // Errors come from the server the way kubectl shows them.
    let out = server.kubectl(V, &["logs", "talker", "-c", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("container nope is not valid for pod talker"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.kubectl_ok(V, &["delete", "pod", "talker", "slow", "--wait=true"]);
}
