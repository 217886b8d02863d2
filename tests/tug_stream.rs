//! End to end: tug's streaming verbs (`logs`, `exec`, `attach`,
//! `port-forward`) against the real `tug-apiserver` and a process-runtime
//! `tug-kubelet`, compared with kubectl 1.33 where the output is
//! deterministic. Needs `cargo build -p tugboat-kubectl -p
//! tugboat-apiserver -p tugboat-kubelet --bins` first.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tugboat_e2e::{binary, free_port, ApiServer, Component};

const V: &str = "1.33";
const PATIENCE: Duration = Duration::from_secs(60);

/// Pods on node `worker` (no scheduler needed): `fixed` writes five lines
/// and a stderr line then idles; `two` has two such containers; `ticker`
/// counts forever; `crashy` exits after a line and is restarted; `web`
/// serves HTTP on `http_port` (process pods share the host network).
fn pods(http_port: u16) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: fixed, labels: {{set: fixed}}}}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'for i in 1 2 3 4 5; do echo line $i; done; sleep 0.3; echo oops >&2; exec sleep 100000']
---
apiVersion: v1
kind: Pod
metadata: {{name: two, labels: {{set: fixed}}}}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: busybox
    command: [sh, -c, 'echo a-one; echo a-two; exec sleep 100000']
  - name: b
    image: busybox
    command: [sh, -c, 'echo b-one; exec sleep 100000']
---
apiVersion: v1
kind: Pod
metadata: {{name: ticker}}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done']
---
apiVersion: v1
kind: Pod
metadata: {{name: crashy}}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo ran; sleep 1; exit 1']
---
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: python
    ports: [{{name: http, containerPort: {http_port}}}]
    command: [python3, -m, http.server, "{http_port}", --bind, 127.0.0.1]
---
apiVersion: v1
kind: Pod
metadata: {{name: echo}}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    stdin: true
    command: [sh, -c, 'while read l; do echo "got $l"; done']
---
apiVersion: v1
kind: Pod
metadata: {{name: ghost}}
spec:
  nodeName: ghost
  containers:
  - name: main
    image: busybox
    command: [sleep, "100000"]
---
apiVersion: v1
kind: Service
metadata: {{name: websvc}}
spec:
  selector: {{app: web}}
  ports: [{{name: web, port: 80, targetPort: http}}]
"#
    )
}

struct Cluster {
    server: ApiServer,
    kubelet: Component,
    http_port: u16,
}

impl Drop for Cluster {
    /// The pods' processes outlive the kubelet: deleting the pods stops
    /// them, even after a failed assertion.
    fn drop(&mut self) {
        // No kubelet will confirm the ghost pod's deletion.
        let _ = self.server.kubectl(
            V,
            &["delete", "pod", "ghost", "--grace-period=0", "--force"],
        );
        let _ = self.server.kubectl(
            V,
            &["delete", "pod", "--all", "--wait=true", "--timeout=30s"],
        );
    }
}

fn start() -> Cluster {
    let server = ApiServer::start();
    let (kubelet, _root, _port) = Component::process_kubelet(&server, "worker");
    let http_port = free_port();
    server.kubectl_until(
        V,
        &["get", "node", "worker", "-o", "name"],
        PATIENCE,
        "the node registered",
        |out| !out.is_empty(),
    );
    server.kubectl_stdin(V, &["apply", "-f", "-"], &pods(http_port));
    for pod in ["fixed", "two", "ticker", "web", "echo"] {
        server.kubectl_until(
            V,
            &["get", "pod", pod, "-o", "jsonpath={.status.phase}"],
            PATIENCE,
            "the pods Running",
            |out| out == "Running",
        );
    }
    // The fixed pods' output is complete before anything compares it.
    for (args, last) in [
        (["logs", "fixed", "-c", "main"], "oops"),
        (["logs", "two", "-c", "a"], "a-two"),
        (["logs", "two", "-c", "b"], "b-one"),
    ] {
        server.kubectl_until(V, &args, PATIENCE, "the pods' output", |out| {
            out.contains(last)
        });
    }
    Cluster {
        server,
        kubelet,
        http_port,
    }
}

fn tug_cmd(server: &ApiServer, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary("tug"));
    cmd.stdin(Stdio::null())
        .env("KUBECONFIG", &server.kubeconfig)
        .args(args);
    cmd
}

fn tug(server: &ApiServer, args: &[&str]) -> Output {
    tug_cmd(server, args).output().expect("run tug")
}

/// Run with `input` on stdin.
fn with_input(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn shown(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}\nexit: {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    )
}

/// `tug ARGS` prints what `kubectl ARGS` prints (stdout, stderr, status;
/// kubectl's "See 'kubectl exec -h'" hints name tug).
#[track_caller]
fn same_as_kubectl(server: &ApiServer, args: &[&str]) -> String {
    let ours = shown(&tug(server, args));
    let theirs = shown(&server.kubectl(V, args)).replace("'kubectl ", "'tug ");
    assert_eq!(
        ours,
        theirs,
        "`tug {}` differs from kubectl",
        args.join(" ")
    );
    ours
}

/// Like [`same_as_kubectl`] with stdout's lines in any order: kubectl
/// reads several containers' logs in map order.
#[track_caller]
fn same_lines_as_kubectl(server: &ApiServer, args: &[&str]) -> String {
    let sorted = |o: Output| {
        let mut lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(String::from)
            .collect();
        lines.sort();
        (
            lines,
            String::from_utf8_lossy(&o.stderr).into_owned(),
            o.status.code(),
        )
    };
    let ours = sorted(tug(server, args));
    let theirs = sorted(server.kubectl(V, args));
    assert_eq!(
        ours,
        theirs,
        "`tug {}` differs from kubectl",
        args.join(" ")
    );
    ours.0.join("\n")
}

/// A spawned child killed when dropped, so a failed assertion leaves no
/// process behind holding the test's output open.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines a child prints on stdout, read on a thread (with a deadline
/// per line on the receiving side).
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Wait for a line satisfying `want`; panics with what came instead.
#[track_caller]
fn wait_line(rx: &mpsc::Receiver<String>, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if want(&l) => return l,
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
    }
    panic!("no expected line; saw {seen:?}");
}

/// One plain HTTP/1.0 GET; the whole answer.
fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// One replica (a choice among several is not deterministic in kubectl
/// either), placed on `worker` by its template.
const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: dep}
spec:
  replicas: 1
  selector: {matchLabels: {app: dep}}
  template:
    metadata: {labels: {app: dep}}
    spec:
      nodeName: worker
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [sh, -c, 'echo dep-line; exec sleep 100000']
"#;

#[test]
fn logs_match_kubectl() {
    let c = start();
    let s = &c.server;
    let health = format!("127.0.0.1:{}", free_port());
    let _controllers =
        Component::start(s, "tug-controller-manager", &["--health-address", &health]);
    s.kubectl_stdin(V, &["apply", "-f", "-"], DEPLOYMENT);
    let out = same_as_kubectl(s, &["logs", "fixed"]);
    assert!(
        out.contains("line 1\nline 2\nline 3\nline 4\nline 5\noops\n"),
        "{out}"
    );
    let out = same_as_kubectl(s, &["logs", "pod/fixed", "--tail=2"]);
    assert!(
        out.starts_with("stdout:\nline 5\noops\n\nstderr:\n\n"),
        "{out}"
    );
    same_as_kubectl(s, &["logs", "fixed", "--timestamps", "--tail=1"]);
    // A multi-container pod defaults to its first container with a notice.
    let out = same_as_kubectl(s, &["logs", "two"]);
    assert!(
        out.contains("Defaulted container \"a\" out of: a, b"),
        "{out}"
    );
    let out = same_as_kubectl(s, &["logs", "two", "-c", "b"]);
    assert!(out.starts_with("stdout:\nb-one\n"), "{out}");
    same_lines_as_kubectl(s, &["logs", "two", "--all-containers"]);
    same_as_kubectl(s, &["logs", "two", "-c", "nope"]);
    same_as_kubectl(s, &["logs", "nosuch"]);
    // A selector reads every matching pod, prefixed with pod and container.
    let out = same_lines_as_kubectl(
        s,
        &["logs", "-l", "set=fixed", "--prefix", "--all-containers"],
    );
    assert!(out.contains("[pod/two/b] b-one"), "{out}");
    assert!(out.contains("[pod/fixed/main] line 5"), "{out}");
    same_as_kubectl(s, &["logs", "-l", "set=none"]);
    // Flag checks, with kubectl's words.
    for args in [
        &["logs", "fixed", "-c", "main", "--all-containers"][..],
        &["logs", "fixed", "--tail=-5"],
        &["logs", "fixed", "--limit-bytes=-1"],
        &[
            "logs",
            "fixed",
            "--since=1s",
            "--since-time=2024-01-01T00:00:00Z",
        ],
        &["logs", "fixed", "main", "-c", "main"],
    ] {
        same_as_kubectl(s, args);
    }
    // --since: everything within the hour, nothing from the last second
    // once the pod has been quiet for longer.
    let out = same_as_kubectl(s, &["logs", "fixed", "--since=1h"]);
    assert!(out.contains("line 1\n"), "{out}");
    let deadline = Instant::now() + PATIENCE;
    let recent = || tug(s, &["logs", "fixed", "--since=1s"]).stdout;
    while String::from_utf8_lossy(&recent()).contains("line") {
        assert!(
            Instant::now() < deadline,
            "--since=1s still shows old lines"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = same_as_kubectl(s, &["logs", "fixed", "--since=1s"]);
    assert!(!out.contains("line"), "{out}");

    // A workload or service stands for one of its pods.
    s.kubectl_until(
        V,
        &["logs", "deploy/dep"],
        PATIENCE,
        "the deployment's pod logging",
        |out| out.contains("dep-line"),
    );
    let out = same_as_kubectl(s, &["logs", "deploy/dep"]);
    assert!(out.starts_with("stdout:\ndep-line\n"), "{out}");
    same_as_kubectl(s, &["exec", "deploy/dep", "--", "echo", "in-dep"]);
    same_as_kubectl(s, &["logs", "svc/websvc"]);
    same_as_kubectl(s, &["logs", "deploy/nosuch"]);
    // No pod yet: both wait --pod-running-timeout for one, then give up.
    s.kubectl_ok(
        V,
        &[
            "create",
            "deployment",
            "empty",
            "--image=busybox",
            "--replicas=0",
        ],
    );
    same_as_kubectl(s, &["logs", "deploy/empty", "--pod-running-timeout=1s"]);
    same_as_kubectl(
        s,
        &[
            "exec",
            "deploy/empty",
            "--pod-running-timeout=1s",
            "--",
            "true",
        ],
    );

    // --previous: the server's error without a previous instance, the
    // last instance's log once the container restarted.
    same_as_kubectl(s, &["logs", "fixed", "--previous"]);
    s.kubectl_until(
        V,
        &[
            "get",
            "pod",
            "crashy",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ],
        PATIENCE,
        "crashy restarted",
        |out| out.parse::<u32>().unwrap_or(0) >= 1,
    );
    let out = same_as_kubectl(s, &["logs", "crashy", "-p"]);
    assert!(out.starts_with("stdout:\nran\n"), "{out}");

    // -f with a selector follows every container at once, within
    // --max-log-requests.
    same_as_kubectl(
        s,
        &[
            "logs",
            "-f",
            "-l",
            "set=fixed",
            "--all-containers",
            "--max-log-requests=2",
        ],
    );
    let mut follow = Running(
        tug_cmd(
            s,
            &[
                "logs",
                "-f",
                "-l",
                "set=fixed",
                "--all-containers",
                "--prefix",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("tug logs -f -l"),
    );
    let rx = lines_of(&mut follow.0);
    let mut want = vec![
        "[pod/fixed/main] oops",
        "[pod/two/a] a-two",
        "[pod/two/b] b-one",
    ];
    while !want.is_empty() {
        let l = wait_line(&rx, |l| want.contains(&l));
        want.retain(|w| *w != l);
    }
    drop(follow);

    // -f streams lines written after it started.
    let last: u64 = String::from_utf8_lossy(&tug(s, &["logs", "ticker", "--tail=1"]).stdout)
        .trim()
        .trim_start_matches("line ")
        .parse()
        .expect("a counted line");
    let mut follow = Running(
        tug_cmd(s, &["logs", "-f", "ticker", "--tail=1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tug logs -f"),
    );
    let rx = lines_of(&mut follow.0);
    wait_line(&rx, |l| {
        l.trim_start_matches("line ")
            .parse::<u64>()
            .is_ok_and(|n| n > last + 3)
    });
    drop(follow);
}

#[test]
fn exec_attach_and_port_forward() {
    let c = start();
    let s = &c.server;

    // The remote exit code becomes tug's, with kubectl's message.
    let out = same_as_kubectl(s, &["exec", "fixed", "--", "sh", "-c", "echo hi; exit 3"]);
    assert!(out.starts_with("stdout:\nhi\n"), "{out}");
    assert!(out.contains("command terminated with exit code 3"), "{out}");
    assert!(out.ends_with("exit: Some(3)"), "{out}");
    same_as_kubectl(s, &["exec", "fixed", "--", "sh", "-c", "echo err >&2"]);
    same_as_kubectl(s, &["exec", "two", "-c", "b", "--", "echo", "in-b"]);
    same_as_kubectl(s, &["exec", "nosuch", "--", "true"]);
    same_as_kubectl(s, &["exec", "fixed"]);
    same_as_kubectl(s, &["exec", "fixed", "ls"]);

    // stdin reaches the command, and its end ends `cat`.
    let out = with_input(
        tug_cmd(s, &["exec", "-i", "fixed", "--", "cat"]),
        "data\nmore\n",
    );
    assert_eq!(
        shown(&out),
        "stdout:\ndata\nmore\n\nstderr:\n\nexit: Some(0)"
    );
    // -t without a terminal is dropped with kubectl's warning.
    let ours = with_input(tug_cmd(s, &["exec", "-it", "fixed", "--", "cat"]), "x\n");
    let theirs = with_input(
        s.kubectl_cmd(V, &["exec", "-it", "fixed", "--", "cat"]),
        "x\n",
    );
    assert_eq!(shown(&ours), shown(&theirs));
    assert!(
        shown(&ours).contains("Unable to use a TTY"),
        "{}",
        shown(&ours)
    );

    // With a terminal (`script` gives tug one) the command gets a
    // pseudo-terminal of the local terminal's size.
    let tug_path = binary("tug");
    let out = Command::new("script")
        .args([
            "-qec",
            &format!(
                "stty cols 101 rows 41; {} exec -it fixed -- sh -c 'tty; sleep 0.5; stty size'",
                tug_path.display()
            ),
            "/dev/null",
        ])
        .env("KUBECONFIG", &s.kubeconfig)
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", c.kubelet.log());
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("41 101"), "the size did not arrive: {text}");

    // attach streams the container's output as it is written.
    let mut attach = Running(
        tug_cmd(s, &["attach", "ticker"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tug attach"),
    );
    let rx = lines_of(&mut attach.0);
    wait_line(&rx, |l| l.starts_with("line "));
    drop(attach);

    // attach -i: piped input reaches the container's own stdin. Output
    // is only seen from the moment the session attached, so the line is
    // repeated until its answer shows (the pipe breaks when tug is gone).
    let mut attach = tug_cmd(s, &["attach", "-i", "echo"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tug attach -i");
    let mut input = attach.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline && input.write_all(b"hello\n").is_ok() {
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let rx = lines_of(&mut attach);
    let seen = rx.recv_timeout(PATIENCE);
    let _ = attach.kill();
    let out = attach.wait_with_output().expect("tug attach");
    let _ = writer.join();
    assert_eq!(
        seen.as_deref(),
        Ok("got hello"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.kubelet.log()
    );

    // port-forward: the page through the local port, each connection
    // announced.
    let local = free_port();
    let mapping = format!("{local}:{}", c.http_port);
    let mut forward = Running(
        tug_cmd(s, &["port-forward", "pod/web", &mapping])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tug port-forward"),
    );
    let rx = lines_of(&mut forward.0);
    let first = wait_line(&rx, |l| l.starts_with("Forwarding from"));
    assert_eq!(
        first,
        format!("Forwarding from 127.0.0.1:{local} -> {}", c.http_port)
    );
    // localhost is both loopbacks, as with kubectl, where IPv6 exists.
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let second = wait_line(&rx, |l| l.starts_with("Forwarding from"));
        assert_eq!(
            second,
            format!("Forwarding from [::1]:{local} -> {}", c.http_port)
        );
    }
    for _ in 0..2 {
        let page = http_get(local).expect("GET through the forward");
        assert!(page.starts_with("HTTP/1.0 200"), "{page}");
        assert!(page.contains("Directory listing"), "{page}");
        wait_line(&rx, |l| l == format!("Handling connection for {local}"));
    }
    drop(forward);

    // A service port goes to its target port in a pod; `:80` listens on
    // a random port.
    let mut forward = Running(
        tug_cmd(s, &["port-forward", "svc/websvc", ":80"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tug port-forward svc"),
    );
    let rx = lines_of(&mut forward.0);
    let first = wait_line(&rx, |l| l.starts_with("Forwarding from 127.0.0.1:"));
    let suffix = format!(" -> {}", c.http_port);
    assert!(first.ends_with(&suffix), "{first}");
    let port: u16 = first["Forwarding from 127.0.0.1:".len()..first.len() - suffix.len()]
        .parse()
        .expect("a port");
    let page = http_get(port).expect("GET through the service forward");
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    drop(forward);

    // Pods that cannot serve: not running, or a command that is missing.
    same_as_kubectl(s, &["logs", "ghost"]);
    same_as_kubectl(s, &["exec", "ghost", "--", "true"]);
    same_as_kubectl(s, &["port-forward", "ghost", "80"]);
    same_as_kubectl(s, &["exec", "fixed", "--", "no-such-command"]);
    same_as_kubectl(s, &["port-forward", "pod/web"]);
    same_as_kubectl(s, &["port-forward", "nosuch", "80"]);
}
