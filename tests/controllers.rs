//! End to end: the real `tug-apiserver`, `tug-scheduler`,
//! `tug-controller-manager` and `tug-kubelet`s (fake runtime), driven by
//! the real kubectl 1.33 the way a user drives a cluster: deployments roll
//! out, back and away, and a node that stops heartbeating loses its pods
//! to the others.

use std::time::Duration;

use tugboat_e2e::{free_port, ApiServer, Component};

/// The kubectl version used throughout.
const V: &str = "1.33";

/// How long a convergence may take on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// A whole cluster: API server, scheduler, controller manager, kubelets.
struct Cluster {
    server: ApiServer,
    _scheduler: Component,
    controller_manager: Component,
    kubelets: Vec<Component>,
}

impl Cluster {
    /// `nodes` fake-runtime kubelets named `node-1`...; `cm_args` go to the
    /// controller manager.
    fn start(nodes: usize, cm_args: &[&str]) -> Cluster {
        let server = ApiServer::start();
        let scheduler = Component::start(
            &server,
            "tug-scheduler",
            &["--metrics-address", &format!("127.0.0.1:{}", free_port())],
        );
        let health = format!("127.0.0.1:{}", free_port());
        let mut args = vec!["--health-address", health.as_str()];
        args.extend_from_slice(cm_args);
        let controller_manager = Component::start(&server, "tug-controller-manager", &args);
        let kubelets = (1..=nodes)
            .map(|i| {
                Component::start(
                    &server,
                    "tug-kubelet",
                    &[
                        "--node-name",
                        &format!("node-{i}"),
                        "--runtime",
                        "fake",
                        "--node-lease-renew-interval",
                        "1s",
                        "--node-status-update-frequency",
                        "1s",
                        "--healthz-port",
                        "0",
                        "--port",
                        "0",
                    ],
                )
            })
            .collect();
        let cluster = Cluster {
            server,
            _scheduler: scheduler,
            controller_manager,
            kubelets,
        };
        for i in 1..=nodes {
            cluster.wait(
                &[
                    "get",
                    "node",
                    &format!("node-{i}"),
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
                "the node to be Ready",
                |out| out == "True",
            );
        }
        cluster
    }

    fn ok(&self, args: &[&str]) -> String {
        self.server.kubectl_ok(V, args)
    }

    fn apply(&self, manifest: &str) -> String {
        self.server
            .kubectl_stdin(V, &["apply", "-f", "-"], manifest)
    }

    /// Poll kubectl until `done` holds, failing with the components' logs.
    fn wait(&self, args: &[&str], what: &str, done: impl Fn(&str) -> bool) -> String {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.server.kubectl_until(V, args, PATIENCE, what, &done)
        }));
        match result {
            Ok(out) => out,
            Err(panic) => {
                eprintln!(
                    "controller-manager log:\n{}",
                    tail(&self.controller_manager.log())
                );
                for (i, kubelet) in self.kubelets.iter().enumerate() {
                    eprintln!("kubelet {} log:\n{}", i + 1, tail(&kubelet.log()));
                }
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// `kubectl get <what> -o jsonpath=<path>`.
    fn jp(&self, what: &str, path: &str) -> String {
        self.ok(&["get", what, "-o", &format!("jsonpath={path}")])
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn deployment(name: &str, replicas: u32, image: &str, extra_pod_spec: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 1}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: {name}, image: "{image}"}}]
{extra_pod_spec}
"#
    )
}

/// Count the words of a jsonpath range output.
fn words(out: &str) -> Vec<String> {
    out.split_whitespace().map(str::to_string).collect()
}

#[test]
fn a_deployment_runs_rolls_out_rolls_back_and_goes_away() {
    let c = Cluster::start(2, &[]);
    // The controller manager leads through its Lease, as upstream's.
    c.wait(
        &[
            "-n",
            "kube-system",
            "get",
            "lease",
            "kube-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        "the controller manager's leader Lease",
        |out| !out.trim().is_empty(),
    );
    c.apply(&deployment("web", 3, "nginx:1.25", ""));
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    c.wait(
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ],
        "3 Running pods",
        |out| words(out) == ["Running"; 3],
    );

    // Watch availability through the whole rollout (every status write is
    // an event): with 3 replicas and maxUnavailable 1 it never drops below 2.
    let mut watch = c
        .server
        .kubectl_cmd(
            V,
            &[
                "get",
                "deployment",
                "web",
                "--watch",
                "-o",
                "jsonpath={.status.availableReplicas}{\"\\n\"}",
            ],
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl --watch");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // The first line is the current state: the watch is running.
    let first = rx
        .recv_timeout(PATIENCE)
        .expect("the watch prints the current state");
    assert_eq!(first.trim(), "3");
    let generation = c.jp("deployment/web", "{.metadata.generation}");
    c.ok(&["set", "image", "deployment/web", "web=nginx:1.26"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert_ne!(c.jp("deployment/web", "{.metadata.generation}"), generation);
    std::thread::sleep(Duration::from_millis(500));
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();
    let samples: Vec<u32> = std::iter::once(first)
        .chain(rx.try_iter())
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(samples.len() >= 2, "the watch saw no rollout: {samples:?}");
    assert!(
        samples.iter().all(|&n| n >= 2),
        "available replicas dropped below replicas - maxUnavailable: {samples:?}"
    );
    c.wait(
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ],
        "every pod on the new image",
        |out| words(out) == ["nginx:1.26"; 3],
    );
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );

    c.ok(&["rollout", "undo", "deployment/web"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert_eq!(
        c.jp(
            "deployment/web",
            "{.spec.template.spec.containers[0].image}"
        ),
        "nginx:1.25"
    );
    c.wait(
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ],
        "every pod back on the old image",
        |out| words(out) == ["nginx:1.25"; 3],
    );
    // Rolling back reuses the first ReplicaSet: still two of them.
    assert_eq!(
        words(&c.jp("replicasets", "{.items[*].metadata.name}")).len(),
        2
    );

    // Background cascade: the ReplicaSets and pods go with the deployment.
    c.ok(&["delete", "deployment", "web"]);
    c.wait(
        &["get", "replicasets,pods", "-o", "name"],
        "ReplicaSets and pods gone",
        |out| out.trim().is_empty(),
    );

    // Orphan cascade: the ReplicaSet stays without owner, and deleting that
    // with --cascade=orphan leaves its pods running without owner.
    c.apply(&deployment("api", 2, "nginx:1.25", ""));
    c.ok(&["rollout", "status", "deployment/api", "--timeout=60s"]);
    c.ok(&["delete", "deployment", "api", "--cascade=orphan"]);
    let rs = c.wait(
        &[
            "get",
            "replicasets",
            "-l",
            "app=api",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
        "the orphaned ReplicaSet",
        |out| words(out).len() == 1,
    );
    let rs = rs.trim().to_string();
    c.wait(
        &[
            "get",
            "replicaset",
            &rs,
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ],
        "the ReplicaSet released",
        |out| out.trim().is_empty(),
    );
    assert_eq!(c.jp("deployments", "{.items[*].metadata.name}"), "");
    c.ok(&["delete", "replicaset", &rs, "--cascade=orphan"]);
    c.wait(
        &[
            "get",
            "pods",
            "-l",
            "app=api",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.ownerReferences}{\"\\n\"}{end}",
        ],
        "two pods without owners",
        |out| {
            let lines: Vec<&str> = out.lines().collect();
            lines.len() == 2 && lines.iter().all(|l| l.ends_with('='))
        },
    );
    assert!(c
        .jp("replicasets", "{.items[*].metadata.name}")
        .trim()
        .is_empty());
}

#[test]
fn a_node_that_stops_heartbeating_loses_its_pods_and_its_taint_goes_when_it_returns() {
    let c = Cluster::start(
        2,
        &[
            "--node-monitor-grace-period",
            "4s",
            "--node-monitor-period",
            "1s",
        ],
    );
    let tolerations = r#"      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}"#;
    c.apply(&deployment("web", 4, "nginx:1.25", tolerations));
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let placed = c.jp("pods", "{.items[*].spec.nodeName}");
    assert!(
        words(&placed).contains(&"node-1".to_string()),
        "no pod on node-1: {placed}"
    );

    // node-1's kubelet freezes: no lease renewals, no status.
    c.kubelets[0].signal("STOP");
    c.wait(
        &[
            "get",
            "node",
            "node-1",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        "node-1 Unknown",
        |out| out == "Unknown",
    );
    c.wait(
        &[
            "get",
            "node",
            "node-1",
            "-o",
            "jsonpath={.spec.taints[*].key}",
        ],
        "the unreachable taint",
        |out| out.contains("node.kubernetes.io/unreachable"),
    );
    // Its pods are evicted once their 2 s toleration runs out and replaced
    // on node-2.
    c.wait(
        &["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[?(@.status.phase==\"Running\")]}{.spec.nodeName}{\" \"}{.metadata.deletionTimestamp}{\"\\n\"}{end}"],
        "4 live pods, all on node-2",
        |out| {
            let live: Vec<&str> = out.lines().filter(|l| l.split_whitespace().count() == 1).collect();
            live.len() == 4 && live.iter().all(|l| l.trim() == "node-2")
        },
    );

    // The kubelet comes back: the node is Ready and untainted again.
    c.kubelets[0].signal("CONT");
    c.wait(
        &[
            "get",
            "node",
            "node-1",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        "node-1 Ready again",
        |out| out == "True",
    );
    c.wait(
        &["get", "node", "node-1", "-o", "jsonpath={.spec.taints}"],
        "the taints removed",
        |out| !out.contains("unreachable") && !out.contains("not-ready"),
    );
}
