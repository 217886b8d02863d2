//! End to end: the real `tug-scheduler` binary, leader election on, against
//! the real `tug-apiserver`, observed through the real `kubectl` 1.32 and
//! the scheduler's own `/metrics` and `/healthz`.
//!
//! Upstream (kube-scheduler 1.32 against kube-apiserver) is the
//! specification: the same events, messages, conditions and Lease.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tugboat_e2e::{binary, free_port, ApiServer};

/// The kubectl version used throughout.
const V: &str = "1.32";

/// How long anything that should happen "at once" may take.
const PATIENCE: Duration = Duration::from_secs(15);

/// A Ready node with 1 cpu, 1Gi of memory and room for 10 pods.
const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: worker-1
  labels:
    kubernetes.io/hostname: worker-1
status:
  capacity:
    cpu: "1"
    memory: 1Gi
    pods: "10"
  allocatable:
    cpu: "1"
    memory: 1Gi
    pods: "10"
  conditions:
  - type: Ready
    status: "True"
    reason: KubeletReady
    message: kubelet is posting ready status
"#;

/// Upstream's full `FailedScheduling` message for a pod asking for more cpu
/// than the only node has in all. Since kubernetes/kubernetes#131345
/// (v1.34) NodeResourcesFit calls a request beyond the node's whole
/// allocatable `UnschedulableAndUnresolvable`, so preemption skips the node
/// ("not helpful"); kube-scheduler 1.32/1.33 still tried it and said
/// "1 No preemption victims found for incoming pod." Tugboat follows the
/// newer rule (see `node_resources_fit.rs`).
const TOO_BIG: &str = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes \
                       are available: 1 Preemption is not helpful for scheduling.";

/// Upstream's message (every version) for a pod that would fit the empty
/// node but not next to a pod of equal priority: preemption tries the node
/// and finds nothing it may evict.
const NO_ROOM: &str = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes \
                       are available: 1 No preemption victims found for incoming pod.";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A running `tug-scheduler`, killed when dropped.
struct Scheduler {
    child: Child,
    metrics_port: u16,
    log: PathBuf,
}

impl Scheduler {
    /// Start against `server` with leader election on (the default).
    fn start(server: &ApiServer) -> Scheduler {
        let metrics_port = free_port();
        let log = server.data_dir.with_extension("scheduler.log");
        let file = std::fs::File::create(&log).expect("scheduler log file");
        let child = Command::new(binary("tug-scheduler"))
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .arg("--metrics-address")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn tug-scheduler");
        Scheduler {
            child,
            metrics_port,
            log,
        }
    }

    /// What the scheduler has logged so far (for failure messages).
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `curl` a path of the metrics endpoint: `Some(body)` on HTTP success.
    fn get(&self, path: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "2"])
            .arg(format!("http://127.0.0.1:{}{path}", self.metrics_port))
            .output()
            .expect("run curl");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kubectl create -f -` with `manifest` on stdin.
fn create(server: &ApiServer, manifest: &str) {
    let mut child = server
        .kubectl_cmd(V, &["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("write manifest");
    let out = child.wait_with_output().expect("kubectl create");
    assert!(
        out.status.success(),
        "kubectl create -f - failed: {}\n{manifest}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pod with one container requesting `cpu`.
fn pod(name: &str, cpu: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: app
    image: nginx:1.25
    resources:
      requests:
        cpu: "{cpu}"
        memory: 64Mi
"#
    )
}

/// Poll until `check` returns `Some`, or panic with `what` and the last
/// value seen, plus the scheduler's log.
#[track_caller]
fn eventually<T>(
    scheduler: &Scheduler,
    what: &str,
    mut check: impl FnMut() -> (Option<T>, String),
) -> T {
    let deadline = Instant::now() + PATIENCE;
    let mut last = String::new();
    while Instant::now() < deadline {
        let (found, seen) = check();
        if let Some(found) = found {
            return found;
        }
        last = seen;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "timed out waiting for {what}; last seen:\n{last}\nscheduler log:\n{}",
        scheduler.log()
    );
}

/// Start a server, a scheduler, and create the node.
fn cluster() -> (ApiServer, Scheduler) {
    let server = ApiServer::start();
    let scheduler = Scheduler::start(&server);
    create(&server, NODE);
    (server, scheduler)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn a_pod_that_fits_is_bound_to_the_node_and_a_scheduled_event_is_recorded() {
    let (server, scheduler) = cluster();
    create(&server, &pod("small", "500m"));

    eventually(&scheduler, "spec.nodeName of pod small", || {
        let node = server.kubectl_ok(
            V,
            &["get", "pod", "small", "-o", "jsonpath={.spec.nodeName}"],
        );
        ((node == "worker-1").then_some(()), node)
    });

    let events = eventually(&scheduler, "the Scheduled event of pod small", || {
        let out = server.kubectl_ok(
            V,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=small",
            ],
        );
        (out.contains("Scheduled").then(|| out.clone()), out)
    });
    assert!(
        events.contains("Successfully assigned default/small to worker-1"),
        "kubectl get events should show the Scheduled message:\n{events}"
    );
    assert!(
        events
            .lines()
            .any(|l| l.contains("Normal") && l.contains("Scheduled")),
        "the Scheduled event should be Normal:\n{events}"
    );
}

#[test]
fn a_pod_too_big_for_any_node_stays_pending_with_a_failed_scheduling_event() {
    let (server, scheduler) = cluster();
    create(&server, &pod("huge", "4"));

    let described = eventually(
        &scheduler,
        "FailedScheduling in `describe pod huge`",
        || {
            let out = server.kubectl_ok(V, &["describe", "pod", "huge"]);
            let done = out.contains("FailedScheduling")
                && out
                    .lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["PodScheduled", "False"]);
            (done.then(|| out.clone()), out)
        },
    );
    let event = described
        .lines()
        .find(|l| l.contains("FailedScheduling"))
        .expect("an event line");
    assert!(
        event.contains("Warning") && event.contains("default-scheduler"),
        "the event should be a Warning from default-scheduler:\n{described}"
    );
    assert!(
        event.trim_end().ends_with(TOO_BIG),
        "the event should say upstream's reasons `{TOO_BIG}`:\n{described}"
    );

    let phase = server.kubectl_ok(V, &["get", "pod", "huge"]);
    assert!(
        phase.lines().nth(1).is_some_and(|l| l.contains("Pending")),
        "kubectl get pod should show Pending:\n{phase}"
    );
    let node = server.kubectl_ok(
        V,
        &["get", "pod", "huge", "-o", "jsonpath={.spec.nodeName}"],
    );
    assert_eq!(node, "", "an unschedulable pod must not be bound");
    let reason = server.kubectl_ok(
        V,
        &[
            "get",
            "pod",
            "huge",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}",
        ],
    );
    assert_eq!(reason, "Unschedulable");
}

#[test]
fn the_scheduler_serves_metrics_and_healthz_and_holds_the_leader_lease() {
    let (server, scheduler) = cluster();

    let health = eventually(&scheduler, "/healthz", || {
        let body = scheduler.get("/healthz");
        (body.clone(), format!("{body:?}"))
    });
    assert_eq!(health.trim(), "ok");

    let holder = eventually(&scheduler, "the kube-system/kube-scheduler Lease", || {
        let out = server.kubectl(
            V,
            &[
                "-n",
                "kube-system",
                "get",
                "lease",
                "kube-scheduler",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        );
        let holder = String::from_utf8_lossy(&out.stdout).into_owned();
        let seen = format!("{holder}{}", String::from_utf8_lossy(&out.stderr));
        (
            (out.status.success() && !holder.is_empty()).then_some(holder),
            seen,
        )
    });
    assert!(!holder.trim().is_empty());

    create(&server, &pod("counted", "100m"));
    let metrics = eventually(&scheduler, "a scheduled attempt in /metrics", || {
        let body = scheduler.get("/metrics").unwrap_or_default();
        let line = body
            .lines()
            .find(|l| {
                l.starts_with("scheduler_schedule_attempts_total{")
                    && l.contains("result=\"scheduled\"")
            })
            .map(str::to_owned);
        (line.map(|_| body.clone()), body)
    });
    let line = metrics
        .lines()
        .find(|l| l.contains("result=\"scheduled\"") && l.starts_with("scheduler_schedule_"))
        .expect("the scheduled line");
    let count: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a numeric sample: {line}"));
    assert!(count >= 1.0, "one pod was scheduled: {line}");
    assert!(
        metrics.contains("# TYPE scheduler_schedule_attempts_total counter")
            || metrics.contains("# TYPE scheduler_schedule_attempts counter"),
        "the counter should be typed:\n{metrics}"
    );
}

#[test]
fn a_pod_that_fits_only_an_empty_node_reports_no_preemption_victims() {
    let (server, scheduler) = cluster();
    create(&server, &pod("first", "800m"));
    eventually(&scheduler, "pod first to be bound", || {
        let node = server.kubectl_ok(
            V,
            &["get", "pod", "first", "-o", "jsonpath={.spec.nodeName}"],
        );
        ((node == "worker-1").then_some(()), node)
    });
    create(&server, &pod("second", "500m"));

    let message = eventually(
        &scheduler,
        "the PodScheduled=False message of pod second",
        || {
            let out = server.kubectl_ok(
                V,
                &[
                    "get",
                    "pod",
                    "second",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
                ],
            );
            ((!out.is_empty()).then(|| out.clone()), out)
        },
    );
    assert_eq!(message, NO_ROOM);
    let events = server.kubectl_ok(
        V,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=second",
        ],
    );
    assert!(
        events.contains("FailedScheduling") && events.contains(NO_ROOM),
        "kubectl get events should show the FailedScheduling event:\n{events}"
    );
}
