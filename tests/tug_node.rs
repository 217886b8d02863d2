//! End to end: `tug cordon`, `uncordon`, `drain` and client-side `apply`
//! against the real API server, controller manager, scheduler and two
//! process-runtime kubelets, with `kubectl` 1.33 as the reference. Needs
//! `cargo build -p tugboat-kubectl -p tugboat-apiserver -p tugboat-kubelet
//! -p tugboat-controller-manager -p tugboat-scheduler --bins` first.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tugboat_e2e::{binary, free_port, ApiServer, Component};

const V: &str = "1.33";

fn tug(server: &ApiServer, args: &[&str]) -> Output {
    Command::new(binary("tug"))
        .stdin(Stdio::null())
        .env("KUBECONFIG", &server.kubeconfig)
        .args(args)
        .output()
        .expect("run tug")
}

/// stdout, stderr and exit status as one comparable text.
fn shown(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}\nexit: {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    )
}

/// Run the same arguments through kubectl and tug; they must print the
/// same. `between` runs after kubectl to undo what it changed.
#[track_caller]
fn same(server: &ApiServer, args: &[&str], between: &[&str]) -> String {
    let theirs = shown(&server.kubectl(V, args));
    if !between.is_empty() {
        server.kubectl_ok(V, between);
    }
    let ours = shown(&tug(server, args));
    assert_eq!(
        ours,
        theirs,
        "`tug {}` differs from kubectl",
        args.join(" ")
    );
    ours
}

fn node(name: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}","labels":{{"pool":"blue"}}}}}}"#
    )
}

#[test]
fn cordon_and_uncordon_match_kubectl() {
    let server = ApiServer::start();
    server.kubectl_stdin(V, &["create", "-f", "-"], &node("n1"));
    server.kubectl_stdin(V, &["create", "-f", "-"], &node("n2"));
    let unschedulable = |n: &str| {
        server.kubectl_ok(
            V,
            &["get", "node", n, "-o", "jsonpath={.spec.unschedulable}"],
        )
    };
    let out = same(&server, &["cordon", "n1"], &["uncordon", "n1"]);
    assert!(out.contains("node/n1 cordoned\n"), "{out}");
    assert_eq!(unschedulable("n1"), "true");
    same(&server, &["cordon", "n1"], &[]);
    same(
        &server,
        &["cordon", "-l", "pool=blue", "--dry-run=client"],
        &[],
    );
    same(&server, &["cordon", "n2", "--dry-run=server"], &[]);
    assert_eq!(unschedulable("n2"), "");
    let out = same(&server, &["uncordon", "n1"], &["cordon", "n1"]);
    assert!(out.contains("node/n1 uncordoned\n"), "{out}");
    assert_eq!(unschedulable("n1"), "");
    same(&server, &["uncordon", "n1"], &[]);
    same(
        &server,
        &["cordon", "-l", "pool=blue"],
        &["uncordon", "-l", "pool=blue"],
    );
    assert_eq!(unschedulable("n2"), "true");
    let out = same(&server, &["cordon", "nope"], &[]);
    assert!(out.contains("nodes \"nope\" not found"), "{out}");
}

const APP_V1: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: web}
data:
  a: "1"
  b: "2"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: main, image: "busybox:1.36", command: [sleep, "3600"]}
      - {name: side, image: busybox, command: [sleep, "3600"]}
"#;

#[test]
fn client_side_apply_matches_kubectl() {
    let server = ApiServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let v1 = dir.path().join("v1.yaml");
    let v2 = dir.path().join("v2.yaml");
    std::fs::write(&v1, APP_V1).expect("write");
    // v2 changes a value, drops a key and a container, changes an image
    // and switches the rollout strategy (whose old settings must go).
    let changed = APP_V1
        .replace("a: \"1\"", "a: \"9\"")
        .replace(
            "{type: RollingUpdate, rollingUpdate: {maxSurge: 1}}",
            "{type: Recreate}",
        )
        .replace("  b: \"2\"\n", "")
        .replace("busybox:1.36", "busybox:1.37")
        .replace(
            "      - {name: side, image: busybox, command: [sleep, \"3600\"]}\n",
            "",
        );
    std::fs::write(&v2, changed).expect("write");
    let (v1, v2) = (v1.to_str().unwrap(), v2.to_str().unwrap());
    for ns in ["k", "t"] {
        server.kubectl_ok(V, &["create", "namespace", ns]);
    }
    let steps = [
        (v1, "created"),
        (v1, "unchanged"),
        (v2, "configured"),
        (v2, "unchanged"),
    ];
    for (file, word) in steps {
        // kubectl's default is client-side apply; tug's is server-side.
        let theirs = shown(&server.kubectl(V, &["-n", "k", "apply", "-f", file]));
        let ours = shown(&tug(
            &server,
            &["-n", "t", "apply", "--server-side=false", "-f", file],
        ));
        assert_eq!(ours, theirs, "apply {file}");
        assert!(
            ours.contains(&format!(
                "configmap/settings {word}\ndeployment.apps/web {word}\n"
            )),
            "{ours}"
        );
    }
    // Same live objects and the same recorded configuration.
    for (what, path) in [
        ("configmap/settings", "{.data}"),
        ("deploy/web", "{.spec}"),
        (
            "deploy/web",
            "{.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}",
        ),
        (
            "configmap/settings",
            "{.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}",
        ),
    ] {
        let get = |ns: &str| {
            server
                .kubectl_ok(
                    V,
                    &["-n", ns, "get", what, "-o", &format!("jsonpath={path}")],
                )
                .replace("\"namespace\":\"k\"", "\"namespace\":\"t\"")
        };
        let ours = get("t");
        assert_eq!(ours, get("k"), "{what} {path}");
        assert!(!ours.is_empty(), "{what} {path}");
    }
    let images = server.kubectl_ok(
        V,
        &[
            "-n",
            "t",
            "get",
            "deploy/web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image}",
        ],
    );
    assert_eq!(images, "busybox:1.37");
    let strategy = server.kubectl_ok(
        V,
        &[
            "-n",
            "t",
            "get",
            "deploy/web",
            "-o",
            "jsonpath={.spec.strategy}",
        ],
    );
    assert_eq!(strategy, r#"{"type":"Recreate"}"#);
}

/// A cluster: API server, controller manager, scheduler, two nodes.
struct Cluster {
    server: ApiServer,
    _components: Vec<Component>,
    _dirs: tempfile::TempDir,
}

fn cluster() -> Cluster {
    let server = ApiServer::start();
    let health = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let cm = Component::start(
        &server,
        "tug-controller-manager",
        &["--health-address", &health],
    );
    let sched = Component::start(&server, "tug-scheduler", &["--metrics-address", &metrics]);
    let (a, _, _) = Component::process_kubelet(&server, "node-a");
    // The second kubelet needs its own root directory.
    let dirs = tempfile::tempdir().expect("temp dir");
    let root = dirs.path().join("node-b");
    let port = free_port().to_string();
    let b = Component::start(
        &server,
        "tug-kubelet",
        &[
            "--node-name",
            "node-b",
            "--runtime",
            "process",
            "--root-dir",
            root.to_str().expect("utf-8 path"),
            "--port",
            &port,
            "--healthz-port",
            "0",
        ],
    );
    server.kubectl_until(
        V,
        &["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}"],
        Duration::from_secs(60),
        "two Ready nodes",
        |s| s.contains("node-a=True") && s.contains("node-b=True"),
    );
    Cluster {
        server,
        _components: vec![cm, sched, a, b],
        _dirs: dirs,
    }
}

impl Drop for Cluster {
    /// The pods' processes outlive the kubelets (their shims are detached):
    /// delete the workloads and pods while the kubelets still run, even
    /// after a failed assertion.
    fn drop(&mut self) {
        let s = &self.server;
        let _ = s.kubectl(
            V,
            &["delete", "rs,ds", "--all", "--wait=true", "--timeout=20s"],
        );
        let _ = s.kubectl(
            V,
            &["delete", "pods", "--all", "--wait=true", "--timeout=30s"],
        );
    }
}

const WORKLOADS: &str = r#"apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec:
  replicas: 2
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds}
spec:
  selector: {matchLabels: {app: ds}}
  template:
    metadata: {labels: {app: ds}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: bare}
spec:
  nodeName: node-a
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: scratch}
spec:
  nodeName: node-a
  terminationGracePeriodSeconds: 1
  volumes: [{name: s, emptyDir: {}}]
  containers: [{name: c, image: busybox, command: [sleep, "3600"], volumeMounts: [{name: s, mountPath: /s}]}]
"#;

/// `name=node phase` of every pod.
const PODS: &str =
    "jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName} {.status.phase};{end}";

/// Sort the items of kubectl's aggregated errors (`[a, b]`) and the lines,
/// since kubectl builds both from Go maps and goroutines, whose order
/// varies from run to run.
fn unordered(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| match (l.find('['), l.rfind(']')) {
            (Some(i), Some(j)) if i < j => {
                // Items start with "cannot delete " or "error when ".
                let inner = l[i + 1..j]
                    .replace(", cannot delete ", "\0cannot delete ")
                    .replace(", error when ", "\0error when ");
                let mut items: Vec<&str> = inner.split('\0').collect();
                items.sort();
                format!("{}[{}]{}", &l[..i], items.join("|"), &l[j + 1..])
            }
            _ => l.to_string(),
        })
        .collect();
    lines.sort();
    lines.dedup();
    lines
}

#[test]
fn drain_evicts_what_kubectl_would_and_honours_disruption_budgets() {
    let c = cluster();
    let s = &c.server;
    // Everything starts on node-a.
    assert!(tug(s, &["cordon", "node-b"]).status.success());
    s.kubectl_stdin(V, &["create", "-f", "-"], WORKLOADS);
    let pods = s.kubectl_until(
        V,
        &["get", "pods", "-o", PODS],
        Duration::from_secs(90),
        "pods running on node-a",
        |out| out.matches("=node-a Running;").count() == 5,
    );
    let ds_a = pods
        .split(';')
        .find_map(|p| p.strip_prefix("ds-").filter(|p| p.contains("=node-a")))
        .map(|p| format!("ds-{}", p.split('=').next().unwrap_or("")))
        .expect("a DaemonSet pod on node-a");
    assert!(tug(s, &["uncordon", "node-b"]).status.success());

    // Without flags, drain refuses with kubectl's reasons.
    let theirs = s.kubectl(V, &["drain", "node-a"]);
    s.kubectl_ok(V, &["uncordon", "node-a"]);
    let ours = tug(s, &["drain", "node-a"]);
    assert_eq!(ours.status.code(), Some(1));
    assert_eq!(ours.stdout, theirs.stdout);
    let (ours_err, theirs_err) = (
        String::from_utf8_lossy(&ours.stderr).into_owned(),
        String::from_utf8_lossy(&theirs.stderr).into_owned(),
    );
    assert_eq!(
        unordered(&ours_err),
        unordered(&theirs_err),
        "{ours_err}\n---\n{theirs_err}"
    );
    let expected = format!(
        "error: unable to drain node \"node-a\" due to error: [cannot delete cannot delete Pods that declare no controller (use --force to override): default/bare, cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/{ds_a}, cannot delete Pods with local storage (use --delete-emptydir-data to override): default/scratch], continuing command...\n\
         There are pending nodes to be drained:\n node-a\n\
         cannot delete cannot delete Pods that declare no controller (use --force to override): default/bare\n\
         cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/{ds_a}\n\
         cannot delete Pods with local storage (use --delete-emptydir-data to override): default/scratch\n"
    );
    assert_eq!(ours_err, expected);

    // With the flags, every pod but the DaemonSet's goes; the ReplicaSet's
    // come back on node-b.
    let out = tug(
        s,
        &[
            "drain",
            "node-a",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stderr,
        format!("Warning: deleting Pods that declare no controller: default/bare, default/scratch; ignoring DaemonSet-managed Pods: default/{ds_a}\n")
    );
    assert!(
        stdout.starts_with("node/node-a already cordoned\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with("node/node-a drained\n"), "{stdout}");
    for p in pods
        .split(';')
        .filter_map(|p| p.split('=').next())
        .filter(|p| !p.is_empty() && !p.starts_with("ds-"))
    {
        assert!(
            stdout.contains(&format!("evicting pod default/{p}\n")),
            "{p}: {stdout}"
        );
        assert!(
            stdout.contains(&format!("pod/{p} evicted\n")),
            "{p}: {stdout}"
        );
    }
    s.kubectl_until(
        V,
        &["get", "pods", "-l", "app=rs", "-o", PODS],
        Duration::from_secs(90),
        "ReplicaSet pods running on node-b",
        |out| out.matches("=node-b Running;").count() == 2,
    );
    let left = s.kubectl_ok(V, &["get", "pods", "-o", PODS]);
    assert!(
        !left.contains("bare=") && !left.contains("scratch="),
        "{left}"
    );

    // A budget that allows no disruption blocks eviction until --timeout.
    s.kubectl_ok(
        V,
        &[
            "create",
            "pdb",
            "rs",
            "--selector",
            "app=rs",
            "--min-available",
            "2",
        ],
    );
    s.kubectl_until(
        V,
        &[
            "get",
            "pdb",
            "rs",
            "-o",
            "jsonpath={.status.currentHealthy}/{.status.disruptionsAllowed}",
        ],
        Duration::from_secs(30),
        "the budget's status",
        |out| out == "2/0",
    );
    let args = ["drain", "node-b", "--ignore-daemonsets", "--timeout", "10s"];
    let theirs = s.kubectl(V, &args);
    let ours = tug(s, &args);
    assert_eq!(ours.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&ours.stderr).into_owned();
    assert!(
        stderr.contains("\" -n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );
    assert!(
        stderr.contains("\" -n \"default\": global timeout reached: 10s\n"),
        "{stderr}"
    );
    assert_eq!(
        unordered(&String::from_utf8_lossy(&ours.stdout))
            .into_iter()
            .filter(|l| !l.contains("cordoned"))
            .collect::<Vec<_>>(),
        unordered(&String::from_utf8_lossy(&theirs.stdout))
            .into_iter()
            .filter(|l| !l.contains("cordoned"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        unordered(&stderr),
        unordered(&String::from_utf8_lossy(&theirs.stderr)),
        "{stderr}"
    );

    // Relaxed, the same drain succeeds.
    s.kubectl_ok(
        V,
        &[
            "patch",
            "pdb",
            "rs",
            "--type=merge",
            "-p",
            r#"{"spec":{"minAvailable":0}}"#,
        ],
    );
    s.kubectl_until(
        V,
        &[
            "get",
            "pdb",
            "rs",
            "-o",
            "jsonpath={.status.disruptionsAllowed}",
        ],
        Duration::from_secs(30),
        "a relaxed budget",
        |out| out == "2",
    );
    assert!(tug(s, &["uncordon", "node-a"]).status.success());
    let out = tug(
        s,
        &["drain", "node-b", "--ignore-daemonsets", "--timeout", "90s"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.ends_with("node/node-b drained\n"), "{stdout}");
    s.kubectl_until(
        V,
        &["get", "pods", "-l", "app=rs", "-o", PODS],
        Duration::from_secs(90),
        "ReplicaSet pods back on node-a",
        |out| out.matches("=node-a Running;").count() == 2,
    );
}
