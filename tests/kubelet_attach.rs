//! End to end: `kubectl attach -i` to process-runtime containers created
//! with `stdin: true`, with kubectl 1.33. Input piped into `kubectl attach
//! -i` reaches the container (its `got <line>` shows in `kubectl logs` and
//! in attach's own output); the container's stdin stays open between
//! attach sessions and across a kubelet restart (the shim holds it), and
//! with `stdinOnce` the first session's end is the container's EOF, as
//! `kubectl run -i --rm` relies on.

use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tugboat_e2e::{free_port, ApiServer, Component};

const V: &str = "1.33";
const PATIENCE: Duration = Duration::from_secs(30);

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: echo}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    stdin: true
    command: [sh, -c, 'while read l; do echo "got $l"; done; echo eof']
---
apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  nodeName: worker
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    stdin: true
    stdinOnce: true
    command: [sh, -c, 'while read l; do echo "got $l"; done; echo eof']
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'exec sleep 600']
"#;

struct Cluster {
    server: ApiServer,
    kubelet: Option<Component>,
    args: Vec<String>,
    healthz: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let server = ApiServer::start();
        let root = server.data_dir.with_extension("kubelet-root");
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
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut c = Cluster {
            server,
            kubelet: None,
            args,
            healthz,
        };
        c.start_kubelet();
        c
    }

    /// Starts the kubelet and waits until it serves /healthz.
    fn start_kubelet(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut kubelet = Component::start(&self.server, "tug-kubelet", &args);
        let deadline = Instant::now() + PATIENCE;
        while !healthz_ok(self.healthz) {
            if let Ok(Some(status)) = kubelet.child.try_wait() {
                panic!("the kubelet exited ({status}):\n{}", kubelet.log());
            }
            assert!(Instant::now() < deadline, "no /healthz:\n{}", kubelet.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kubelet = Some(kubelet);
    }

    fn log(&self) -> String {
        self.kubelet
            .as_ref()
            .map(Component::log)
            .unwrap_or_default()
    }

    fn phase(&self, pod: &str) -> String {
        self.server
            .kubectl_ok(V, &["get", "pod", pod, "-o", "jsonpath={.status.phase}"])
    }

    fn logs_until(&self, pod: &str, want: &str) -> String {
        self.server.kubectl_until(
            V,
            &["logs", pod],
            PATIENCE,
            &format!("{want:?} in the logs of {pod}"),
            |out| out.contains(want),
        )
    }

    /// `echo <line> | kubectl attach -i <pod>`, running.
    fn attach(&self, pod: &str, line: &str) -> Child {
        let mut child = self
            .server
            .kubectl_cmd(V, &["attach", "-i", pod])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl attach");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        // Dropping stdin is the end of the input, as after `echo`.
        drop(stdin);
        child
    }
}

impl Drop for Cluster {
    /// The pods' processes outlive the kubelet (their shims are detached):
    /// deleting the pods stops them, even after a failed assertion.
    fn drop(&mut self) {
        if self.kubelet.is_some() {
            let _ = self.server.kubectl(
                V,
                &[
                    "delete",
                    "pod",
                    "echo",
                    "once",
                    "plain",
                    "--wait=true",
                    "--timeout=20s",
                ],
            );
        }
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

/// Stops an attach that would go on (the container keeps running) and
/// returns what it printed.
fn finish(mut child: Child) -> String {
    let _ = child.kill();
    let out = child.wait_with_output().expect("kubectl attach");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn attach_stdin_reaches_process_runtime_containers() {
    let mut c = Cluster::start();
    c.server.kubectl_stdin(V, &["apply", "-f", "-"], PODS);
    for pod in ["echo", "once", "plain"] {
        c.server.kubectl_until(
            V,
            &["get", "pod", pod, "-o", "jsonpath={.status.phase}"],
            PATIENCE,
            "the pod Running",
            |out| out == "Running",
        );
    }

    // echo hello | kubectl attach -i echo
    let attach = c.attach("echo", "hello");
    c.logs_until("echo", "got hello");
    std::thread::sleep(Duration::from_millis(500));
    let out = finish(attach);
    assert!(out.contains("got hello"), "kubectl attach printed {out:?}");

    // The first attacher left: the container must not have seen EOF.
    std::thread::sleep(Duration::from_secs(1));
    let logs = c.server.kubectl_ok(V, &["logs", "echo"]);
    assert!(
        !logs.contains("eof"),
        "stdin closed after one attach: {logs:?}"
    );
    assert_eq!(c.phase("echo"), "Running");
    let again = c.attach("echo", "again");
    c.logs_until("echo", "got again");
    finish(again);

    // The shim outlives the kubelet, and so does the container's stdin.
    if let Some(k) = c.kubelet.take() {
        k.signal("TERM");
        drop(k);
    }
    c.start_kubelet();
    let after = c.attach("echo", "after-restart");
    let logs = c.logs_until("echo", "got after-restart");
    finish(after);
    assert_eq!(logs, "got hello\ngot again\ngot after-restart\n");
    let restarts = c.server.kubectl_ok(
        V,
        &[
            "get",
            "pod",
            "echo",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ],
    );
    assert_eq!(restarts, "0", "kubelet log:\n{}", c.log());

    // stdinOnce: the end of the first session is the container's EOF.
    let once = c.attach("once", "one");
    c.logs_until("once", "eof");
    finish(once);
    assert_eq!(c.server.kubectl_ok(V, &["logs", "once"]), "got one\neof\n");
    c.server.kubectl_until(
        V,
        &["get", "pod", "once", "-o", "jsonpath={.status.phase}"],
        PATIENCE,
        "the stdinOnce pod Succeeded",
        |out| out == "Succeeded",
    );

    // `kubectl run -i --rm`: stdin and stdinOnce, attached as soon as the
    // pod runs; the input is the container's, its output kubectl's, and
    // the end of the input ends the container.
    let overrides =
        r#"{"apiVersion":"v1","spec":{"nodeName":"worker","terminationGracePeriodSeconds":1}}"#;
    let mut run = c
        .server
        .kubectl_cmd(
            V,
            &[
                "run",
                "-i",
                "--rm",
                "runner",
                "--image=busybox",
                "--restart=Never",
                "--overrides",
                overrides,
                "--command",
                "--",
                "sh",
                "-c",
                "while read l; do echo \"got $l\"; done; echo done",
            ],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl run");
    run.stdin.take().unwrap().write_all(b"ran\n").unwrap();
    let deadline = Instant::now() + PATIENCE;
    while run.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = run.kill();
            let out = run.wait_with_output().unwrap();
            panic!(
                "kubectl run -i did not end: {}\n{}\nkubelet log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                c.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("got ran\ndone"),
        "kubectl run -i: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A container without `stdin: true` has no stdin to attach to.
    let out = c
        .server
        .kubectl_cmd(V, &["attach", "-i", "plain"])
        .stdin(Stdio::piped())
        .output()
        .expect("kubectl attach");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "attach -i to plain succeeded: {stderr}"
    );
}
