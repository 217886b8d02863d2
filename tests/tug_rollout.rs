//! End to end: `tug rollout`, `tug wait` and `tug top` against a real
//! cluster (API server, scheduler, controller manager and a
//! process-runtime kubelet whose pods are host processes), with kubectl
//! 1.33 as the reference: where both can run the same command on the same
//! state, stdout, stderr and exit status must be byte for byte the same.
//! Needs `cargo build -p tugboat-kubectl -p tugboat-apiserver
//! -p tugboat-kubelet -p tugboat-controller-manager -p tugboat-scheduler
//! --bins` first.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tugboat_e2e::{binary, free_port, ApiServer, Component};

const V: &str = "1.33";
/// How long a convergence may take on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(90);

/// Its pods turn Ready two seconds after they start, so every rollout
/// shows progress lines before it completes.
const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [sh, -c, 'sleep 3600']
        readinessProbe:
          exec: {command: ['true']}
          initialDelaySeconds: 2
          periodSeconds: 1
"#;

/// Never Ready, so its rollout exceeds the progress deadline.
const STUCK: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck}
spec:
  replicas: 1
  progressDeadlineSeconds: 8
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [sh, -c, 'sleep 3600']
        readinessProbe:
          exec: {command: [sh, -c, 'exit 1']}
          periodSeconds: 1
"#;

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: [sh, -c, 'sleep 3600']
"#;

/// The API server, scheduler, controller manager and one process-runtime
/// kubelet (`node-a`). Dropping it deletes the workloads and waits for
/// their processes to stop before the kubelet goes.
struct Cluster {
    // Field order is drop order: clean up while the kubelet still runs.
    _cleanup: Cleanup,
    _kubelet: Component,
    _scheduler: Component,
    _controller_manager: Component,
    server: ApiServer,
}

impl Cluster {
    fn start() -> Cluster {
        let server = ApiServer::start();
        let scheduler = Component::start(
            &server,
            "tug-scheduler",
            &["--metrics-address", &format!("127.0.0.1:{}", free_port())],
        );
        let health = format!("127.0.0.1:{}", free_port());
        let controller_manager = Component::start(
            &server,
            "tug-controller-manager",
            &["--health-address", &health],
        );
        let (kubelet, _root, _port) = Component::process_kubelet(&server, "node-a");
        server.kubectl_until(
            V,
            &[
                "get",
                "node",
                "node-a",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
            PATIENCE,
            "node-a Ready",
            |out| out == "True",
        );
        Cluster {
            _cleanup: Cleanup {
                kubeconfig: server.kubeconfig.clone(),
            },
            _kubelet: kubelet,
            _scheduler: scheduler,
            _controller_manager: controller_manager,
            server,
        }
    }
}

/// Deletes every workload and waits until no pod is left, so no `sleep`
/// process outlives the test, also when it fails.
struct Cleanup {
    kubeconfig: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let kubectl = |args: &[&str]| {
            Command::new(format!("{}/kubectl.{V}", tugboat_e2e::KUBECTL_DIR))
                .env("KUBECONFIG", &self.kubeconfig)
                .args(args)
                .output()
        };
        let _ = kubectl(&["delete", "deploy,ds", "--all", "--wait=false"]);
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            match kubectl(&["get", "pods", "-o", "name"]) {
                Ok(o) if o.status.success() && o.stdout.is_empty() => return,
                Err(_) => return,
                _ => {}
            }
            let _ = kubectl(&[
                "delete",
                "pods",
                "--all",
                "--grace-period=1",
                "--wait=false",
            ]);
            std::thread::sleep(Duration::from_millis(500));
        }
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

/// `tug ARGS`, which must succeed; its stdout.
#[track_caller]
fn tug_ok(server: &ApiServer, args: &[&str]) -> String {
    let out = tug(server, args);
    assert!(
        out.status.success(),
        "tug {} failed:\n{}",
        args.join(" "),
        shown(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tug rollout status ARGS --timeout=90s`, which must succeed; on failure
/// the cluster's state and the components' logs say why.
#[track_caller]
fn status_ok(cluster: &Cluster, target: &str) -> String {
    let server = &cluster.server;
    let out = tug(server, &["rollout", "status", target, "--timeout=90s"]);
    if !out.status.success() {
        let state = server.kubectl(V, &["get", "deploy,ds,rs,pods", "-o", "wide"]);
        let tail = |log: String| log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
        panic!(
            "tug rollout status {target} failed:\n{}\n--- cluster\n{}\n--- controller-manager (last lines first)\n{}\n--- kubelet\n{}",
            shown(&out),
            shown(&state),
            tail(cluster._controller_manager.log()),
            tail(cluster._kubelet.log()),
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn shown(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}\nexit: {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    )
}

/// Run `tug ARGS` and `kubectl ARGS`; they must print the same (retried a
/// few times in case the cluster moved between the two runs).
#[track_caller]
fn same_as_kubectl(server: &ApiServer, args: &[&str]) -> String {
    let mut last = (String::new(), String::new());
    for _ in 0..3 {
        let ours = shown(&tug(server, args));
        let theirs = shown(&server.kubectl(V, args));
        if ours == theirs {
            return ours;
        }
        last = (ours, theirs);
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "`tug {}` differs from kubectl\n--- tug\n{}\n--- kubectl\n{}",
        args.join(" "),
        last.0,
        last.1
    );
}

/// Wait until exactly `n` pods labelled `app=web` exist, none terminating.
fn settle(server: &ApiServer, n: usize) {
    server.kubectl_until(
        V,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ],
        PATIENCE,
        "the old pods to go",
        |out| {
            out.lines().count() == n
                && out
                    .lines()
                    // No deletionTimestamp: name and phase only.
                    .all(|l| l.split_whitespace().nth(1) == Some("Running") && l.split_whitespace().count() == 2)
        },
    );
}

fn image(server: &ApiServer) -> String {
    server.kubectl_ok(
        V,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    )
}

#[test]
fn deployment_rollout_status_history_undo_restart_pause_and_wait() {
    let cluster = Cluster::start();
    let server = &cluster.server;
    server.kubectl_stdin(V, &["apply", "-f", "-"], DEPLOYMENT);

    // Status follows the rollout as it happens and ends on success.
    let status = status_ok(&cluster, "deploy/web");
    assert!(status.contains("Waiting for deployment"), "{status}");
    assert!(
        status.ends_with("deployment \"web\" successfully rolled out\n"),
        "{status}"
    );
    same_as_kubectl(server, &["rollout", "status", "deploy/web"]);
    same_as_kubectl(
        server,
        &["rollout", "status", "deploy/web", "--watch=false"],
    );
    same_as_kubectl(server, &["rollout", "status", "deploy/nope"]);
    same_as_kubectl(
        server,
        &["rollout", "status", "deploy/web", "--revision", "7"],
    );

    // A second revision.
    server.kubectl_ok(
        V,
        &[
            "patch",
            "deploy",
            "web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"busybox:1.36"}]}}}}"#,
        ],
    );
    let status = status_ok(&cluster, "deploy/web");
    assert!(status.ends_with("successfully rolled out\n"), "{status}");
    let history = same_as_kubectl(server, &["rollout", "history", "deploy/web"]);
    assert!(
        history.contains(
            "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
        ),
        "{history}"
    );
    // The revision's pod template, as describe prints one (compared byte
    // for byte with kubectl on the DaemonSet, whose template has no probe:
    // describe does not print probes yet).
    let rev1 = tug_ok(
        server,
        &["rollout", "history", "deploy/web", "--revision", "1"],
    );
    assert!(
        rev1.starts_with(
            "deployment.apps/web with revision #1\nPod Template:\n  Labels:\tapp=web\n\tpod-template-hash="
        ),
        "{rev1}"
    );
    assert!(rev1.contains("\n    Image:\tbusybox\n"), "{rev1}");
    same_as_kubectl(
        server,
        &["rollout", "history", "deploy/web", "--revision", "9"],
    );
    same_as_kubectl(
        server,
        &["rollout", "undo", "deploy/web", "--to-revision", "9"],
    );
    same_as_kubectl(
        server,
        &["rollout", "undo", "deploy/web", "--to-revision", "2"],
    );
    let dry = tug_ok(
        server,
        &["rollout", "undo", "deploy/web", "--dry-run=client"],
    );
    assert!(
        dry.starts_with("deployment.apps/web Pod Template:\n"),
        "{dry}"
    );
    assert!(dry.ends_with("\n (dry run)\n"), "{dry}");
    same_as_kubectl(
        server,
        &["rollout", "undo", "deploy/web", "--dry-run=server"],
    );
    assert_eq!(image(server), "busybox:1.36", "a dry run changes nothing");

    // Undo puts revision 1's template back as revision 3.
    assert_eq!(
        tug_ok(server, &["rollout", "undo", "deploy/web"]),
        "deployment.apps/web rolled back\n"
    );
    assert_eq!(image(server), "busybox");
    status_ok(&cluster, "deploy/web");
    let history = same_as_kubectl(server, &["rollout", "history", "deploy/web"]);
    assert!(
        history.contains("2         <none>\n3         <none>\n\n"),
        "{history}"
    );
    assert!(!history.contains("\n1 "), "{history}");

    // Restart stamps the template, and a fourth ReplicaSet rolls out.
    assert_eq!(
        tug_ok(server, &["rollout", "restart", "deploy/web"]),
        "deployment.apps/web restarted\n"
    );
    let stamped = server.kubectl_ok(
        V,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
        ],
    );
    // RFC 3339, e.g. 2026-01-02T03:04:05Z.
    let b = stamped.as_bytes();
    assert!(
        stamped.len() >= 20 && b[4] == b'-' && b[10] == b'T' && b[13] == b':',
        "{stamped:?}"
    );
    let status = status_ok(&cluster, "deploy/web");
    assert!(status.ends_with("successfully rolled out\n"), "{status}");
    let rs = server.kubectl_ok(V, &["get", "rs", "-l", "app=web", "-o", "name"]);
    assert_eq!(rs.lines().count(), 3, "{rs}");
    let history = same_as_kubectl(server, &["rollout", "history", "deploy/web"]);
    assert!(history.contains("\n4         <none>\n"), "{history}");

    // Pause and resume, and what a paused deployment refuses.
    assert_eq!(
        tug_ok(server, &["rollout", "pause", "deploy/web"]),
        "deployment.apps/web paused\n"
    );
    same_as_kubectl(server, &["rollout", "pause", "deploy/web"]);
    same_as_kubectl(server, &["rollout", "restart", "deploy/web"]);
    let undo = tug(server, &["rollout", "undo", "deploy/web"]);
    assert_eq!(undo.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&undo.stderr)
            .starts_with("error: you cannot rollback a paused deployment"),
        "{}",
        shown(&undo)
    );
    assert_eq!(
        tug_ok(server, &["rollout", "resume", "deploy/web"]),
        "deployment.apps/web resumed\n"
    );
    same_as_kubectl(server, &["rollout", "resume", "deploy/web"]);

    // wait: conditions, JSONPath, timeouts, deletion.
    settle(server, 2);
    same_as_kubectl(server, &["wait", "--for=condition=Available", "deploy/web"]);
    same_as_kubectl(
        server,
        &["wait", "--for=condition=Ready", "pod", "-l", "app=web"],
    );
    same_as_kubectl(
        server,
        &[
            "wait",
            "--for=jsonpath={.status.phase}=Running",
            "pod",
            "--all",
        ],
    );
    same_as_kubectl(
        server,
        &[
            "wait",
            "--for=condition=Available=false",
            "deploy/web",
            "--timeout=1s",
        ],
    );
    same_as_kubectl(
        server,
        &[
            "wait",
            "--for=jsonpath={.status.phase}=Failed",
            "pod",
            "-l",
            "app=web",
            "--timeout=1s",
        ],
    );
    same_as_kubectl(server, &["wait", "--for=delete", "pod/nope"]);
    same_as_kubectl(server, &["wait", "--for=condition=Ready", "pod/nope"]);
    same_as_kubectl(
        server,
        &["wait", "--for=condition=Ready", "pod", "-l", "app=nope"],
    );
    same_as_kubectl(server, &["wait", "--for=bogus", "pod", "--all"]);
    same_as_kubectl(server, &["wait", "--for=condition=Ready"]);
    same_as_kubectl(server, &["wait", "deploy/web"]);
    same_as_kubectl(server, &["rollout", "status"]);
    same_as_kubectl(server, &["rollout", "history", "svc/kubernetes"]);
    same_as_kubectl(server, &["rollout", "undo", "svc/kubernetes"]);
    same_as_kubectl(server, &["rollout", "status", "svc/kubernetes"]);

    // --for=create: a timeout, then an object that appears while watched.
    same_as_kubectl(
        server,
        &["wait", "--for=create", "cm/later", "--timeout=1s"],
    );
    let creation = tug_cmd(
        server,
        &["wait", "--for=create", "cm/later", "--timeout=60s"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start tug wait");
    std::thread::sleep(Duration::from_millis(500));
    server.kubectl_ok(V, &["create", "configmap", "later"]);
    let out = creation.wait_with_output().expect("tug wait");
    assert!(out.status.success(), "{}", shown(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configmap/later condition met\n"
    );

    // --for=delete: a ConfigMap held by a finalizer is deleted while the
    // waiter watches; it goes when the finalizer is removed. (Should the
    // waiter only start looking after that, it finds nothing to wait for
    // and prints nothing, like kubectl: try again with another object.)
    let mut seen = String::new();
    for attempt in 0..3 {
        let name = format!("doomed-{attempt}");
        server.kubectl_stdin(
            V,
            &["apply", "-f", "-"],
            &format!("{{apiVersion: v1, kind: ConfigMap, metadata: {{name: {name}, finalizers: [example.com/hold]}}}}"),
        );
        let waiter = tug_cmd(
            server,
            &[
                "wait",
                "--for=delete",
                &format!("cm/{name}"),
                "--timeout=60s",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tug wait");
        server.kubectl_ok(V, &["delete", "cm", &name, "--wait=false"]);
        std::thread::sleep(Duration::from_millis(1500));
        server.kubectl_ok(
            V,
            &[
                "patch",
                "cm",
                &name,
                "--type=json",
                "-p",
                r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
            ],
        );
        let out = waiter.wait_with_output().expect("tug wait");
        assert!(out.status.success(), "{}", shown(&out));
        seen = String::from_utf8_lossy(&out.stdout).into_owned();
        if !seen.is_empty() {
            assert_eq!(seen, format!("configmap/{name} condition met\n"));
            break;
        }
    }
    assert!(!seen.is_empty(), "the waiter never saw a deletion");
}

#[test]
fn rollout_status_times_out_and_reports_an_exceeded_progress_deadline() {
    let cluster = Cluster::start();
    let server = &cluster.server;
    server.kubectl_stdin(V, &["apply", "-f", "-"], STUCK);
    let out = tug(
        server,
        &["rollout", "status", "deploy/stuck", "--timeout=1s"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: timed out waiting for the condition\n"
    );
    server.kubectl_until(
        V,
        &[
            "get",
            "deploy",
            "stuck",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
        PATIENCE,
        "the progress deadline to pass",
        |out| out == "ProgressDeadlineExceeded",
    );
    let shown = same_as_kubectl(server, &["rollout", "status", "deploy/stuck"]);
    assert!(
        shown.contains("error: deployment \"stuck\" exceeded its progress deadline\n"),
        "{shown}"
    );
    same_as_kubectl(
        server,
        &["rollout", "status", "deploy/stuck", "--watch=false"],
    );
    same_as_kubectl(
        server,
        &[
            "wait",
            "--for=condition=Available",
            "deploy/stuck",
            "--timeout=1s",
        ],
    );
}

/// The header's words and each row's leading name cells (namespace, pod,
/// container); every cell after them must parse as `123m`, `45Mi` or `6%`.
fn top_shape(out: &str, headers: bool) -> (String, Vec<String>) {
    let mut lines = out.lines();
    let header = if headers {
        lines
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        String::new()
    };
    let value = |c: &str| {
        c.strip_suffix('m')
            .or_else(|| c.strip_suffix("Mi"))
            .or_else(|| c.strip_suffix('%'))
            .is_some_and(|n| n.parse::<u64>().is_ok())
    };
    let mut names = Vec::new();
    for l in lines {
        let cells: Vec<&str> = l.split_whitespace().collect();
        let first_value = cells.iter().position(|c| value(c)).unwrap_or(cells.len());
        assert!(first_value < cells.len(), "no values in {l:?}");
        assert!(cells[first_value..].iter().all(|c| value(c)), "{l:?}");
        names.push(cells[..first_value].join(" "));
    }
    // Rows sorted by usage may swap as values move between the runs.
    names.sort();
    (header, names)
}

#[test]
fn daemonset_rollout_and_top() {
    let cluster = Cluster::start();
    let server = &cluster.server;
    server.kubectl_stdin(V, &["apply", "-f", "-"], DAEMONSET);
    let status = status_ok(&cluster, "ds/agent");
    assert!(
        status.ends_with("daemon set \"agent\" successfully rolled out\n"),
        "{status}"
    );
    assert!(
        status
            .lines()
            .all(|l| l.starts_with("Waiting for daemon set") || l.starts_with("daemon set")),
        "{status}"
    );
    same_as_kubectl(server, &["rollout", "status", "ds/agent"]);
    // Several objects are followed one after the other.
    server.kubectl_stdin(V, &["apply", "-f", "-"], DEPLOYMENT);
    status_ok(&cluster, "deploy/web");
    let both = same_as_kubectl(server, &["rollout", "status", "deploy/web", "ds/agent"]);
    assert!(
        both.contains("deployment \"web\" successfully rolled out\ndaemon set \"agent\" successfully rolled out\n"),
        "{both}"
    );
    server.kubectl_ok(
        V,
        &[
            "patch",
            "ds",
            "agent",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"busybox:1.36"}]}}}}"#,
        ],
    );
    let status = status_ok(&cluster, "ds/agent");
    assert!(status.ends_with("successfully rolled out\n"), "{status}");
    same_as_kubectl(server, &["rollout", "history", "ds/agent"]);
    same_as_kubectl(
        server,
        &["rollout", "history", "ds/agent", "--revision", "1"],
    );
    same_as_kubectl(server, &["rollout", "undo", "ds/agent", "--dry-run=client"]);
    assert_eq!(
        tug_ok(server, &["rollout", "undo", "ds/agent"]),
        "daemonset.apps/agent rolled back\n"
    );
    let img = server.kubectl_ok(
        V,
        &[
            "get",
            "ds",
            "agent",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert_eq!(img, "busybox");
    status_ok(&cluster, "ds/agent");

    // top: once the pod's metrics are scraped, the same table shape as
    // kubectl (values may move between the two runs).
    server.kubectl_until(
        V,
        &["top", "pod", "--no-headers"],
        PATIENCE,
        "pod metrics",
        |out| out.lines().count() == 3,
    );
    for args in [
        &["top", "pod"][..],
        &["top", "pod", "-A", "--containers"],
        &["top", "pod", "--sort-by", "memory", "--no-headers"],
        &["top", "node"],
        &["top", "node", "node-a", "--show-capacity"],
    ] {
        let ours = tug_ok(server, args);
        let theirs = server.kubectl_ok(V, args);
        let headers = !args.contains(&"--no-headers");
        assert_eq!(
            top_shape(&ours, headers),
            top_shape(&theirs, headers),
            "tug {}:\n{ours}\nkubectl:\n{theirs}",
            args.join(" ")
        );
        assert!(!ours.is_empty());
    }
    // --sort-by memory: largest first.
    let sorted = tug_ok(
        server,
        &["top", "pod", "--sort-by", "memory", "--no-headers"],
    );
    let mib: Vec<u64> = sorted
        .lines()
        .map(|l| {
            let cell = l.split_whitespace().nth(2).unwrap_or("");
            cell.trim_end_matches("Mi").parse().unwrap_or(0)
        })
        .collect();
    assert!(mib.windows(2).all(|w| w[0] >= w[1]), "{sorted}");
    same_as_kubectl(server, &["top", "pod", "nope"]);
    same_as_kubectl(server, &["top", "node", "nope"]);
    same_as_kubectl(server, &["top", "pod", "-n", "kube-system"]);
    same_as_kubectl(server, &["top", "pod", "--sort-by", "disk"]);
}
