//! End to end: housekeeping (upstream's `HandlePodCleanups`). A process
//! runtime kubelet runs two pods; it is stopped, one pod is force-deleted
//! (`kubectl delete --force --grace-period=0`, so the API forgets it at
//! once and no kubelet ever sees it terminate), and the kubelet is started
//! again on the same root directory: the deleted pod's process is gone
//! within seconds, while the other pod's process keeps its PID.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tugboat_e2e::{free_port, ApiServer, Component};

const V: &str = "1.33";
const PATIENCE: Duration = Duration::from_secs(30);

/// A pod whose container writes its PID (the `sleep` it execs) to `pid`
/// in its working directory, then sleeps.
fn pod(name: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 30
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo $$ > pid; exec sleep 600']
"#
    )
}

fn start_kubelet(server: &ApiServer, root: &Path, healthz: u16) -> Component {
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
    ];
    let mut kubelet = Component::start(server, "tug-kubelet", &args);
    let deadline = Instant::now() + PATIENCE;
    while !healthz_ok(healthz) {
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

/// The PID the container recorded.
fn pid_of(root: &Path, uid: &str) -> u32 {
    let file: PathBuf = root.join("pods").join(uid).join("app").join("pid");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(pid) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `pid` is a live `sleep` (not a zombie, not a reused PID).
fn sleeping(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    String::from_utf8_lossy(&cmdline).starts_with("sleep")
}

/// Deletes the pods at the end, while a kubelet runs, so that their
/// processes (whose shims outlive the kubelet) go even after a failed
/// assertion.
struct Cleanup<'a> {
    server: &'a ApiServer,
    kubelet: Option<Component>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if self.kubelet.is_some() {
            let _ = self.server.kubectl(
                V,
                &[
                    "delete",
                    "pod",
                    "keep",
                    "gone",
                    "--ignore-not-found",
                    "--wait=true",
                    "--timeout=20s",
                ],
            );
        }
    }
}

#[test]
fn pods_deleted_while_the_kubelet_was_down_are_cleaned_up() {
    let server = ApiServer::start();
    let root = server.data_dir.with_extension("kubelet-root");
    let healthz = free_port();
    let kubelet = start_kubelet(&server, &root, healthz);
    let mut cleanup = Cleanup {
        server: &server,
        kubelet: None,
    };
    let mut pids = Vec::new();
    for name in ["keep", "gone"] {
        server.kubectl_stdin(V, &["apply", "-f", "-"], &pod(name));
    }
    for name in ["keep", "gone"] {
        server.kubectl_until(
            V,
            &["get", "pod", name, "-o", "jsonpath={.status.phase}"],
            PATIENCE,
            "the pod Running",
            |out| out == "Running",
        );
        let uid = server.kubectl_ok(V, &["get", "pod", name, "-o", "jsonpath={.metadata.uid}"]);
        let pid = pid_of(&root, &uid);
        assert!(sleeping(pid), "pod {name}'s process {pid} does not run");
        pids.push((name, uid, pid));
    }

    kubelet.signal("TERM");
    drop(kubelet);
    // Force deletion removes the pod from the API at once.
    server.kubectl_ok(V, &["delete", "pod", "gone", "--force", "--grace-period=0"]);
    let out = server.kubectl(V, &["get", "pod", "gone"]);
    assert!(!out.status.success(), "the pod is still in the API");
    let (_, gone_uid, gone_pid) = pids[1].clone();
    assert!(
        sleeping(gone_pid),
        "the process must outlive the stopped kubelet"
    );

    let kubelet = cleanup
        .kubelet
        .insert(start_kubelet(&server, &root, healthz));
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeping(gone_pid) {
        assert!(
            Instant::now() < deadline,
            "the deleted pod's process {gone_pid} still runs; kubelet log:\n{}",
            kubelet.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its directory goes too, and housekeeping has had time to act on the
    // other pod, which it must not.
    let dir = root.join("pods").join(&gone_uid);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dir.exists() {
        assert!(
            Instant::now() < deadline,
            "{} outlived the pod; kubelet log:\n{}",
            dir.display(),
            kubelet.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let (_, keep_uid, keep_pid) = &pids[0];
    assert!(
        sleeping(*keep_pid),
        "the other pod's process was killed; kubelet log:\n{}",
        kubelet.log()
    );
    assert_eq!(
        pid_of(&root, keep_uid),
        *keep_pid,
        "the other pod restarted"
    );
    let phase = server.kubectl_ok(V, &["get", "pod", "keep", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Running");
    drop(cleanup);
    let deadline = Instant::now() + PATIENCE;
    while sleeping(*keep_pid) {
        assert!(
            Instant::now() < deadline,
            "the kept pod's process outlived it"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
