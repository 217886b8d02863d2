//! End to end: restarting `tug-kubelet` (process runtime) leaves its pods
//! alone, as restarting upstream's kubelet does. Three pods run (one with a
//! liveness probe, one with a readiness probe); the kubelet is stopped ten
//! times, with SIGTERM and SIGKILL in turn, and started again on the same
//! root directory, each time until it serves /healthz and its Node is
//! Ready. Afterwards every container has the same containerID and
//! restartCount, every process the same PID, and every pod is Running and
//! Ready.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tugboat_e2e::{free_port, ApiServer, Component};

const V: &str = "1.33";
const PATIENCE: Duration = Duration::from_secs(30);
const PODS: [&str; 3] = ["plain", "alive", "ready"];

/// A pod whose container writes its PID (the `sleep` it execs) to `pid` in
/// its working directory, then sleeps.
fn pod(name: &str) -> String {
    let probe = match name {
        "alive" => "    livenessProbe: {exec: {command: [sh, -c, 'test -f pid']}, periodSeconds: 1, failureThreshold: 1}\n",
        "ready" => "    readinessProbe: {exec: {command: [sh, -c, 'test -f pid']}, periodSeconds: 1}\n",
        _ => "",
    };
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo $$ > pid; exec sleep 600']
{probe}"#
    )
}

struct Kubelet {
    args: Vec<String>,
    healthz: u16,
}

impl Kubelet {
    fn new(root: &Path) -> Kubelet {
        let healthz = free_port();
        let args = [
            "--node-name",
            "worker",
            "--runtime",
            "process",
            "--root-dir",
            root.to_str().unwrap(),
            "--port",
            &free_port().to_string(),
            "--healthz-port",
            &healthz.to_string(),
            "--node-status-update-frequency",
            "1s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Kubelet { args, healthz }
    }

    /// Starts the kubelet and waits until it serves /healthz.
    fn start(&self, server: &ApiServer) -> Component {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut kubelet = Component::start(server, "tug-kubelet", &args);
        let deadline = Instant::now() + PATIENCE;
        while !healthz_ok(self.healthz) {
            if let Ok(Some(status)) = kubelet.child.try_wait() {
                panic!("the kubelet exited ({status}):\n{}", kubelet.log());
            }
            assert!(
                Instant::now() < deadline,
                "the kubelet does not serve /healthz:\n{}",
                kubelet.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        kubelet
    }
}

fn healthz_ok(port: u16) -> bool {
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    if conn
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200") && reply.ends_with("ok")
}

/// containerID, restartCount, phase and Ready of a pod.
fn state(server: &ApiServer, name: &str) -> String {
    server.kubectl_ok(
        V,
        &[
            "get",
            "pod",
            name,
            "-o",
            "jsonpath={.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount} {.status.phase} {.status.conditions[?(@.type==\"Ready\")].status}",
        ],
    )
}

/// The PID the container recorded.
fn pid_of(root: &Path, uid: &str) -> u32 {
    let file: PathBuf = root.join("pods").join(uid).join("app").join("pid");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .parse()
        .expect("a PID")
}

fn node_ready(server: &ApiServer) {
    server.kubectl_until(
        V,
        &[
            "get",
            "node",
            "worker",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        PATIENCE,
        "the node Ready",
        |out| out == "True",
    );
}

#[test]
fn restarting_the_kubelet_leaves_running_pods_alone() {
    let server = ApiServer::start();
    let root = server.data_dir.with_extension("kubelet-root");
    let config = Kubelet::new(&root);
    let mut kubelet = config.start(&server);
    node_ready(&server);
    for name in PODS {
        server.kubectl_stdin(V, &["apply", "-f", "-"], &pod(name));
    }
    let mut before = Vec::new();
    for name in PODS {
        let s = server.kubectl_until(
            V,
            &[
                "get",
                "pod",
                name,
                "-o",
                "jsonpath={.status.phase} {.status.conditions[?(@.type==\"Ready\")].status}",
            ],
            PATIENCE,
            "the pod Running and Ready",
            |out| out == "Running True",
        );
        assert_eq!(s, "Running True");
        let uid = server.kubectl_ok(V, &["get", "pod", name, "-o", "jsonpath={.metadata.uid}"]);
        let st = state(&server, name);
        assert!(
            st.starts_with("process://") && st.ends_with(" 0 Running True"),
            "{st}"
        );
        before.push((name, uid.clone(), st, pid_of(&root, &uid)));
    }

    for round in 0..10 {
        let signal = if round % 2 == 0 { "TERM" } else { "KILL" };
        kubelet.signal(signal);
        let _ = kubelet.child.wait();
        drop(kubelet);
        kubelet = config.start(&server);
        node_ready(&server);
    }
    // Give the new kubelet's workers and probes time to act on anything
    // they would wrongly act on.
    std::thread::sleep(Duration::from_secs(3));

    for (name, uid, st, pid) in &before {
        assert_eq!(
            &state(&server, name),
            st,
            "pod {name} changed; kubelet log:\n{}",
            kubelet.log()
        );
        assert_eq!(
            pid_of(&root, uid),
            *pid,
            "pod {name}'s process was replaced"
        );
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_else(|e| panic!("pod {name}'s process {pid} is gone: {e}"));
        assert!(
            String::from_utf8_lossy(&cmdline).starts_with("sleep"),
            "{pid}: {cmdline:?}"
        );
    }
    server.kubectl_ok(
        V,
        &["delete", "pod", "plain", "alive", "ready", "--wait=true"],
    );
    for (name, _, _, pid) in &before {
        let deadline = Instant::now() + PATIENCE;
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                Instant::now() < deadline,
                "pod {name}'s process outlived it"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
