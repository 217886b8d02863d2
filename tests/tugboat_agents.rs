//! `tugboat server` plus two `tugboat agent`s, each agent in a network
//! namespace of its own on this machine (ip netns and a veth pair, as
//! root), joined with the token the server writes: all three nodes Ready,
//! a Deployment's pods spread over them, the agents' pods reachable for
//! `kubectl logs` and `exec`; then one agent is frozen (`kill -STOP`): its
//! node goes NotReady and its pods are recreated on the other two.
//!
//! Needs root, `ip`, and `cargo build -p tugboat --bins`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tugboat_e2e::{binary, free_port, KUBECTL_DIR};

const V: &str = "1.33";

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

fn ok(cmd: &str, args: &[&str]) {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to the host by a veth pair: the host end is
/// `10.<net>.<i>.1`, the namespace end `10.<net>.<i>.2` with its default
/// route through the host end. Removed when dropped.
struct Netns {
    name: String,
    host_link: String,
    host_ip: String,
    ip: String,
}

impl Netns {
    fn create(tag: &str, net: u8, i: u8) -> Netns {
        let name = format!("tb{tag}{i}");
        let host_link = format!("tb{tag}{i}h");
        let peer = format!("tb{tag}{i}p");
        let host_ip = format!("10.{net}.{i}.1");
        let ip = format!("10.{net}.{i}.2");
        let _ = run("ip", &["netns", "del", &name]);
        let _ = run("ip", &["link", "del", &host_link]);
        ok("ip", &["netns", "add", &name]);
        ok(
            "ip",
            &[
                "link", "add", &host_link, "type", "veth", "peer", "name", &peer,
            ],
        );
        ok("ip", &["link", "set", &peer, "netns", &name]);
        ok(
            "ip",
            &["addr", "add", &format!("{host_ip}/24"), "dev", &host_link],
        );
        ok("ip", &["link", "set", &host_link, "up"]);
        let exec = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &name];
            all.extend_from_slice(args);
            ok("ip", &all);
        };
        exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &peer]);
        exec(&["ip", "link", "set", &peer, "up"]);
        exec(&["ip", "link", "set", "lo", "up"]);
        exec(&["ip", "route", "add", "default", "via", &host_ip]);
        Netns {
            name,
            host_link,
            host_ip,
            ip,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
        let _ = run("ip", &["link", "del", &self.host_link]);
    }
}

/// A child process with its log in a file; killed when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn");
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        ok("kill", &[&format!("-{sig}"), &self.child.id().to_string()]);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = run("kill", &["-CONT", &self.child.id().to_string()]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    kubeconfig: PathBuf,
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(Path::new(KUBECTL_DIR).join(format!("kubectl.{V}")))
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn until(
        &self,
        what: &str,
        timeout: Duration,
        logs: &dyn Fn() -> String,
        args: &[&str],
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let out = self.kubectl(args);
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() && done(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "timed out waiting for {what}; kubectl {} printed:\n{last}\n{}",
            args.join(" "),
            logs()
        );
    }
}

const SPREAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 6
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      terminationGracePeriodSeconds: 1
      # Leave an unreachable or not-ready node 5 s after it is noticed
      # (the API server's default is 300 s).
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      topologySpreadConstraints:
      # A preference: once a node is lost, its pods must fit elsewhere.
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: spread}}}
      containers:
      - name: app
        image: busybox
        command: ["sh", "-c", "echo started on $(hostname -i 2>/dev/null || true); exec sleep 3600"]
"#;

/// `name → node` of the Deployment's Running pods that are not being
/// deleted.
fn placement(cluster: &Cluster) -> Vec<(String, String)> {
    let out = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=spread",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[2] == "Running").then(|| (f[0].to_string(), f[1].to_string()))
        })
        .collect()
}

#[test]
fn agents_join_share_the_work_and_take_over_a_lost_node() {
    assert!(
        is_root(),
        "this test needs root (network namespaces), as CI runs it"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = format!("{:03}", std::process::id() % 1000);
    let net = 230 + (std::process::id() % 20) as u8;
    let a = Netns::create(&tag, net, 1);
    let b = Netns::create(&tag, net, 2);
    let port = free_port();
    let server_node = format!("srv-{tag}");
    let token = dir.path().join("token");
    let mut cmd = Command::new(binary("tugboat"));
    cmd.arg("server")
        .arg("--data-dir")
        .arg(dir.path().join("server"))
        .args(["--https-port", &port.to_string()])
        .args(["--kubelet-port", &free_port().to_string()])
        .args(["--node-name", &server_node])
        .arg("--agent-token-file")
        .arg(&token)
        .args(["--tls-san", &a.host_ip, "--tls-san", &b.host_ip])
        .args(["--node-monitor-grace-period", "8s"]);
    let server = Proc::spawn(cmd, dir.path().join("server.log"));
    let started = Instant::now();
    while !token.exists() || !server.log().contains("ready in ") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "server not ready:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cluster = Cluster {
        kubeconfig: dir.path().join("server").join("admin.kubeconfig"),
    };

    let agent = |ns: &Netns, name: &str| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name])
            .arg(binary("tugboat"))
            .arg("agent")
            .args(["--server", &format!("https://{}:{port}", ns.host_ip)])
            .arg("--token-file")
            .arg(&token)
            .arg("--data-dir")
            .arg(dir.path().join(name))
            .args(["--node-name", name])
            .args(["--kubelet-port", &free_port().to_string()]);
        Proc::spawn(cmd, dir.path().join(format!("{name}.log")))
    };
    let (node_a, node_b) = (format!("agent-a-{tag}"), format!("agent-b-{tag}"));
    let agent_a = agent(&a, &node_a);
    let agent_b = agent(&b, &node_b);
    let logs = || {
        format!(
            "--- server\n{}\n--- agent a\n{}\n--- agent b\n{}",
            tail(&server.log()),
            tail(&agent_a.log()),
            tail(&agent_b.log())
        )
    };

    // Three nodes Ready; each agent's node has its namespace's address and
    // was admitted through a CSR the cluster approved and signed.
    let nodes = cluster.until(
        "three Ready nodes",
        Duration::from_secs(90),
        &logs,
        &["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status} {.status.addresses[?(@.type==\"InternalIP\")].address}{\"\\n\"}{end}"],
        |out| out.lines().filter(|l| l.split_whitespace().nth(1) == Some("True")).count() == 3,
    );
    assert!(
        nodes.contains(&format!("{node_a} True {}", a.ip)),
        "{nodes}"
    );
    assert!(
        nodes.contains(&format!("{node_b} True {}", b.ip)),
        "{nodes}"
    );
    let csrs = cluster.kubectl_ok(&["get", "csr"]);
    assert_eq!(csrs.matches("Approved,Issued").count(), 2, "{csrs}");
    assert!(csrs.contains("system:bootstrap:"), "{csrs}");

    // A Deployment spreads over the three nodes.
    let manifest = dir.path().join("spread.yaml");
    std::fs::write(&manifest, SPREAD).unwrap();
    cluster.kubectl_ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let spread = loop {
        let p = placement(&cluster);
        if p.len() == 6 {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "6 pods not Running: {p:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for node in [&server_node, &node_a, &node_b] {
        let on = spread.iter().filter(|(_, n)| n == node).count();
        assert!(on >= 1, "every node runs some: {spread:?}");
    }
    // The API server reaches an agent's kubelet for logs and exec.
    let (pod_on_b, _) = spread.iter().find(|(_, n)| n == &node_b).unwrap().clone();
    cluster.until(
        "the pod's log",
        Duration::from_secs(30),
        &logs,
        &["logs", &pod_on_b],
        |o| o.contains("started on"),
    );
    let said = cluster.kubectl_ok(&["exec", &pod_on_b, "--", "sh", "-c", "echo exec-ok"]);
    assert_eq!(said, "exec-ok\n");

    // Agent b freezes: its node goes NotReady, its pods are recreated on
    // the other two.
    agent_b.signal("STOP");
    let frozen = Instant::now();
    cluster.until(
        "agent b's node NotReady",
        Duration::from_secs(60),
        &logs,
        &[
            "get",
            "node",
            &node_b,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        |out| out.trim() == "Unknown" || out.trim() == "False",
    );
    eprintln!("node NotReady {:?} after the agent froze", frozen.elapsed());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let p = placement(&cluster);
        let elsewhere = p.iter().filter(|(_, n)| n != &node_b).count();
        if elsewhere == 6 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pods not moved off {node_b}: {p:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "6 pods Running on the other nodes {:?} after the agent froze",
        frozen.elapsed()
    );
    drop(agent_b);
    drop(agent_a);
    drop(server);
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| l.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}
