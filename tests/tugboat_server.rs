//! `tugboat server` end to end: the whole cluster in one process, driven by
//! the real kubectl 1.33 through the `admin.kubeconfig` it writes: the
//! examples/web Deployment reached through its ClusterIP and NodePort,
//! scaling, a rollout and its undo, a Job, namespace deletion; a restart on
//! the same data dir that keeps the cluster and the running containers; and
//! simulated nodes.
//!
//! The servers' proxies all program the same nftables table, so the tests
//! take turns ([`one_at_a_time`]). Needs `cargo build -p tugboat --bins`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tugboat_e2e::{binary, free_port, KUBECTL_DIR};

static TURN: Mutex<()> = Mutex::new(());

/// One server at a time (a failed test must not block the others).
fn one_at_a_time() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A `tugboat server` child process, killed when dropped.
struct Tugboat {
    child: Child,
    data_dir: PathBuf,
    log: PathBuf,
    port: u16,
    kubelet_port: u16,
}

impl Tugboat {
    fn start(data_dir: &Path, port: u16, kubelet_port: u16, node: &str, extra: &[&str]) -> Self {
        let log = data_dir.with_extension(format!("{}.log", free_port()));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(binary("tugboat"))
            .arg("server")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--https-port", &port.to_string()])
            .args(["--kubelet-port", &kubelet_port.to_string()])
            .args(["--node-name", node])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn tugboat");
        let server = Tugboat {
            child,
            data_dir: data_dir.to_path_buf(),
            log,
            port,
            kubelet_port,
        };
        server.wait_for("the ready line", Duration::from_secs(60), || {
            server.log().contains("ready in ")
        });
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The "ready in N ms" figure the server logged.
    fn ready_ms(&self) -> u64 {
        let log = self.log();
        let line = log
            .lines()
            .find_map(|l| l.split("tugboat server ready in ").nth(1))
            .unwrap_or_else(|| panic!("no ready line in:\n{log}"));
        line.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad ready line {line:?}"))
    }

    fn wait_for(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; server log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(format!("{KUBECTL_DIR}/kubectl.1.33"))
            .stdin(Stdio::null())
            .env("KUBECONFIG", self.data_dir.join("admin.kubeconfig"))
            .env("HOME", self.data_dir.parent().unwrap_or(Path::new("/tmp")))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}\nserver log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Poll `kubectl <args>` until `done(stdout)`.
    fn kubectl_until(&self, args: &[&str], what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = self.kubectl(args);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && done(&stdout) {
                return stdout;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; kubectl {} printed:\n{stdout}{}\nserver log:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn wait_node_ready(&self, node: &str) {
        let ready = "{.status.conditions[?(@.type==\"Ready\")].status}";
        self.kubectl_until(
            &["get", "node", node, "-o", &format!("jsonpath={ready}")],
            "the node to be Ready",
            |s| s == "True",
        );
    }

    /// SIGINT (Ctrl-C) and wait for a clean exit.
    fn interrupt(mut self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "exit {status}; log:\n{}", self.log());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGINT; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(self.log().contains("stopped"), "{}", self.log());
    }

    /// Delete the namespace and wait until it (and so its pods) is gone.
    fn delete_namespace(&self, ns: &str) {
        self.kubectl_ok(&["delete", "namespace", ns, "--wait=false"]);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = self.kubectl(&["get", "namespace", ns]);
            if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "namespace {ns} still there: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tugboat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 GET; the body, or an error.
fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default())
}

fn wait_page(server: &Tugboat, addr: SocketAddr, what: &str) -> String {
    let mut last = String::new();
    server.wait_for(what, Duration::from_secs(60), || {
        match http_get(addr) {
            Ok(body) if body.starts_with("hello from web-") => {
                last = body;
                return true;
            }
            Ok(body) => last = body,
            Err(e) => last = e.to_string(),
        }
        false
    });
    last
}

/// The web pods that are not being deleted, one `name image` line each.
fn web_pods(server: &Tugboat, ns: &str) -> Vec<String> {
    let out = server.kubectl_ok(&[
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    out.lines().map(str::to_string).collect()
}

fn wait_web_pods(server: &Tugboat, ns: &str, count: usize, image: &str) {
    server.wait_for(
        &format!("{count} running web pods of {image}"),
        Duration::from_secs(90),
        || {
            let pods = web_pods(server, ns);
            pods.len() == count
                && pods.iter().all(|p| {
                    let f: Vec<&str> = p.split_whitespace().collect();
                    f.len() == 3 && f[1] == image && f[2] == "Running"
                })
        },
    );
}

fn apply_web(server: &Tugboat, ns: &str) {
    server.kubectl_ok(&["create", "namespace", ns]);
    let web = examples().join("web.yaml");
    server.kubectl_ok(&["apply", "-n", ns, "-f", web.to_str().unwrap()]);
    server.kubectl_ok(&[
        "rollout",
        "status",
        "-n",
        ns,
        "deployment/web",
        "--timeout=90s",
    ]);
    wait_web_pods(server, ns, 3, "python:3.12-slim");
}

#[test]
fn the_whole_cluster_runs_the_examples() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let node = format!("tugboat-e2e-{}", std::process::id());
    let server = Tugboat::start(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &node,
        &[],
    );
    println!("tugboat server: ready in {} ms", server.ready_ms());
    assert!(server.log().contains("export KUBECONFIG="));
    server.wait_node_ready(&node);
    let healthz = server.kubectl_ok(&["get", "--raw", "/healthz"]);
    assert_eq!(healthz, "ok");

    let ns = "web-e2e";
    apply_web(&server, ns);

    // Through the Service's ClusterIP (nftables, as root) and the NodePort.
    let cluster_ip = server.kubectl_ok(&[
        "get",
        "svc",
        "-n",
        ns,
        "web",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let addr: SocketAddr = format!("{cluster_ip}:80").parse().unwrap();
    let page = wait_page(&server, addr, "the page through the ClusterIP");
    println!("ClusterIP {addr}: {page}");
    let node_port = server.kubectl_ok(&[
        "get",
        "svc",
        "-n",
        ns,
        "web-nodeport",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let addr: SocketAddr = format!("127.0.0.1:{node_port}").parse().unwrap();
    wait_page(&server, addr, "the page through the NodePort");

    // Scale out and back.
    server.kubectl_ok(&["scale", "-n", ns, "deployment/web", "--replicas=5"]);
    wait_web_pods(&server, ns, 5, "python:3.12-slim");
    server.kubectl_ok(&["scale", "-n", ns, "deployment/web", "--replicas=3"]);
    wait_web_pods(&server, ns, 3, "python:3.12-slim");

    // A new version, rolled out, then rolled back.
    server.kubectl_ok(&[
        "set",
        "image",
        "-n",
        ns,
        "deployment/web",
        "web=python:3.13-slim",
    ]);
    server.kubectl_ok(&[
        "rollout",
        "status",
        "-n",
        ns,
        "deployment/web",
        "--timeout=90s",
    ]);
    wait_web_pods(&server, ns, 3, "python:3.13-slim");
    server.kubectl_ok(&["rollout", "undo", "-n", ns, "deployment/web"]);
    server.kubectl_ok(&[
        "rollout",
        "status",
        "-n",
        ns,
        "deployment/web",
        "--timeout=90s",
    ]);
    wait_web_pods(&server, ns, 3, "python:3.12-slim");
    wait_page(&server, addr, "the page after the rollback");

    // A Job to completion.
    let job = examples().join("job.yaml");
    server.kubectl_ok(&["apply", "-n", ns, "-f", job.to_str().unwrap()]);
    server.kubectl_until(
        &[
            "get",
            "job",
            "-n",
            ns,
            "pi",
            "-o",
            "jsonpath={.status.succeeded}",
        ],
        "the job to complete",
        |s| s == "2",
    );
    let logs = server.kubectl_ok(&["logs", "-n", ns, "job/pi"]);
    assert!(logs.contains("pi is about 3.14159265358979"), "{logs}");

    // Deleting the namespace takes everything in it.
    server.delete_namespace(ns);
    let pods = server.kubectl_ok(&["get", "pods", "-A", "-o", "name"]);
    assert!(!pods.contains("web-"), "{pods}");
    server.wait_for("the web servers to stop", Duration::from_secs(60), || {
        http_get("127.0.0.1:8080".parse().unwrap()).is_err()
    });
    server.interrupt();
}

#[test]
fn a_restart_resumes_the_cluster_and_keeps_the_containers() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let node = format!("tugboat-restart-{}", std::process::id());
    let data = dir.path().join("data");
    let server = Tugboat::start(&data, free_port(), free_port(), &node, &[]);
    println!("first start: ready in {} ms", server.ready_ms());
    let ns = "restart-e2e";
    apply_web(&server, ns);
    server.kubectl_ok(&[
        "create",
        "configmap",
        "-n",
        ns,
        "kept",
        "--from-literal=k=v",
    ]);
    let containers = [
        "get",
        "pods",
        "-n",
        ns,
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}{\"\\n\"}{end}",
    ];
    let before = server.kubectl_until(&containers, "3 ready containers", |s| {
        s.lines().count() == 3 && s.lines().all(|l| l.ends_with(" 0 true"))
    });
    let ca = std::fs::read(data.join("pki/ca.crt")).unwrap();

    let (port, kubelet_port) = (server.port, server.kubelet_port);
    server.interrupt();
    // The containers outlive the server, as they outlive a kubelet restart.
    let page = http_get("127.0.0.1:8080".parse().unwrap());
    assert!(
        page.as_deref()
            .is_ok_and(|p| p.starts_with("hello from web-")),
        "{page:?}"
    );

    // The same data dir, ports and node name.
    let server = Tugboat::start(&data, port, kubelet_port, &node, &[]);
    println!("restart: ready in {} ms", server.ready_ms());
    assert_eq!(
        std::fs::read(data.join("pki/ca.crt")).unwrap(),
        ca,
        "same CA"
    );
    server.wait_node_ready(&node);
    let nodes = server.kubectl_ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(
        nodes.trim(),
        format!("node/{node}"),
        "the same, single node"
    );
    let kept = server.kubectl_ok(&[
        "get",
        "configmap",
        "-n",
        ns,
        "kept",
        "-o",
        "jsonpath={.data.k}",
    ]);
    assert_eq!(kept, "v");
    let after = server.kubectl_until(&containers, "the containers re-adopted", |s| {
        s.lines().all(|l| l.ends_with(" true"))
    });
    assert_eq!(after, before, "same pods, same container IDs, no restarts");

    server.delete_namespace(ns);
    server.interrupt();
}

#[test]
fn simulated_nodes_join_the_local_one() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let node = format!("tugboat-sim-{}", std::process::id());
    let server = Tugboat::start(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &node,
        &["--simulate-nodes", "20"],
    );
    println!("with 20 simulated nodes: ready in {} ms", server.ready_ms());
    let ready = "{range .items[*]}{.metadata.name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}";
    let nodes = server.kubectl_until(
        &["get", "nodes", "-o", &format!("jsonpath={ready}")],
        "21 Ready nodes",
        |s| s.lines().filter(|l| l.ends_with(" True")).count() == 21,
    );
    assert!(nodes.contains(&format!("{node}-sim-19 True")), "{nodes}");
    server.interrupt();
}

#[test]
fn runtime_none_is_a_control_plane_without_a_node() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let node = format!("tugboat-none-{}", std::process::id());
    let server = Tugboat::start(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &node,
        &["--runtime", "none"],
    );
    println!("control plane only: ready in {} ms", server.ready_ms());
    assert_eq!(server.kubectl_ok(&["get", "--raw", "/healthz"]), "ok");
    let nodes = server.kubectl_ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(nodes, "", "no local node");
    // The components still have their own kubeconfigs; the kubelet's is not made.
    let kubeconfigs = dir.path().join("data/kubeconfigs");
    for name in ["scheduler", "controller-manager", "kube-proxy"] {
        assert!(
            kubeconfigs.join(format!("{name}.kubeconfig")).exists(),
            "{name}"
        );
    }
    assert!(!kubeconfigs.join("kubelet.kubeconfig").exists());
    server.interrupt();
}
