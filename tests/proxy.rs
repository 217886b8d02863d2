//! End to end, as root: the real `tug-apiserver`, a process-runtime
//! `tug-kubelet`, `tug-controller-manager` (for EndpointSlices) and
//! `tug-proxy`, in nftables mode and in userspace mode. Two pods serve a
//! file naming themselves with `python3 -m http.server` on different ports
//! behind one named target port (`http`); requests from this host through
//! the ClusterIP and the NodePort spread over both, move to the survivor
//! within a second of the other pod's deletion, and a Service port no
//! endpoint has is refused without breaking anything else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tugboat_e2e::{free_port, ApiServer, Component};

const V: &str = "1.33";
const PATIENCE: Duration = Duration::from_secs(60);

/// Addresses one run uses; distinct per mode so both tests may run at once.
struct Addrs {
    mode: &'static str,
    cluster_ip: &'static str,
    node_port_ip: &'static str,
    bad_ip: &'static str,
    sticky_ip: &'static str,
    drain_ip: &'static str,
    node_port: u16,
}

/// Removes what a run may leave on the host, even when it fails: the nft
/// table and ClusterIPs on `lo`.
struct HostCleanup(Vec<&'static str>, bool);

impl Drop for HostCleanup {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", "tugboat"])
                .output();
        }
        for ip in &self.0 {
            let _ = Command::new("ip")
                .args(["addr", "del", &format!("{ip}/32"), "dev", "lo"])
                .output();
        }
    }
}

/// One HTTP/1.0 GET; the body, or the error (refused, reset, timeout).
fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    match out.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") =>
        {
            Ok(body.trim().to_string())
        }
        _ => Err(std::io::Error::other(format!("unexpected answer: {out}"))),
    }
}

fn pod(name: &str, app: &str, port: u16, dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {app}}}}}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: python
    command: [/usr/bin/python3, -m, http.server, "{port}", --bind, 127.0.0.1, --directory, "{dir}"]
    ports: [{{name: http, containerPort: {port}}}]
"#
    )
}

/// Counts answers of `n` GETs of /who by body; errors count under "error".
fn spread(addr: SocketAddr, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        let key = get(addr, "/who").unwrap_or_else(|e| format!("error: {e}"));
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn wait_for(what: &str, log: impl Fn() -> String, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; proxy log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(addrs: Addrs) {
    let nft = addrs.mode == "nftables";
    let _cleanup = HostCleanup(
        vec![
            addrs.cluster_ip,
            addrs.node_port_ip,
            addrs.bad_ip,
            addrs.sticky_ip,
            addrs.drain_ip,
        ],
        nft,
    );
    let server = ApiServer::start();
    let root = server.data_dir.with_extension("kubelet-root");
    let _kubelet = Component::start(
        &server,
        "tug-kubelet",
        &[
            "--node-name",
            "worker",
            "--runtime",
            "process",
            "--root-dir",
            root.to_str().unwrap(),
            "--node-ip",
            "127.0.0.1",
            "--port",
            "0",
            "--healthz-port",
            "0",
        ],
    );
    let cm_health = format!("127.0.0.1:{}", free_port());
    let _cm = Component::start(
        &server,
        "tug-controller-manager",
        &["--health-address", &cm_health],
    );
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let healthz_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Component::start(
        &server,
        "tug-proxy",
        &[
            "--mode",
            addrs.mode,
            "--node-name",
            "worker",
            "--metrics-bind-address",
            &metrics_addr.to_string(),
            "--healthz-bind-address",
            &healthz_addr.to_string(),
            // The periodic check repairs a damaged table; keep it short.
            "--sync-period",
            "2s",
        ],
    );

    // Two pods, one named port `http` on different numbers.
    let app = format!("web-{}", addrs.mode);
    let files = tempfile::tempdir().unwrap();
    let mut ports = Vec::new();
    for name in ["pod-a", "pod-b"] {
        let dir = files.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("who"), format!("{name}\n")).unwrap();
        let port = free_port();
        ports.push(port);
        server.kubectl_stdin(V, &["apply", "-f", "-"], &pod(name, &app, port, &dir));
    }
    let services = format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  clusterIP: {cip}
  selector: {{app: {app}}}
  ports: [{{name: web, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web-np}}
spec:
  type: NodePort
  clusterIP: {npip}
  selector: {{app: {app}}}
  ports: [{{name: web, port: 8080, targetPort: http, nodePort: {np}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: sticky}}
spec:
  clusterIP: {sticky}
  selector: {{app: {app}}}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 60}}}}
  ports: [{{name: web, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: bad}}
spec:
  clusterIP: {bad}
  ports: [{{name: web, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: bad-1
  labels: {{kubernetes.io/service-name: bad}}
addressType: IPv4
ports: [{{name: other, port: {pa}, protocol: TCP}}]
endpoints: [{{addresses: [127.0.0.1]}}]
"#,
        cip = addrs.cluster_ip,
        npip = addrs.node_port_ip,
        bad = addrs.bad_ip,
        sticky = addrs.sticky_ip,
        np = addrs.node_port,
        pa = ports[0],
    );
    server.kubectl_stdin(V, &["apply", "-f", "-"], &services);

    let cluster: SocketAddr = format!("{}:80", addrs.cluster_ip).parse().unwrap();
    let node_port: SocketAddr = format!("127.0.0.1:{}", addrs.node_port).parse().unwrap();
    let log = || proxy.log();
    // Both pods answer through the ClusterIP once they run and their
    // endpoints are programmed.
    wait_for("both pods behind the ClusterIP", log, || {
        let counts = spread(cluster, 4);
        counts.contains_key("pod-a") && counts.contains_key("pod-b")
    });

    let counts = spread(cluster, 100);
    for name in ["pod-a", "pod-b"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!((40..=60).contains(&n), "ClusterIP spread {counts:?}");
    }
    // The NodePort is programmed apart from the ClusterIP: wait until it
    // reaches both pods too before counting.
    wait_for("both pods behind the NodePort", log, || {
        let counts = spread(node_port, 4);
        counts.contains_key("pod-a") && counts.contains_key("pod-b")
    });
    let counts = spread(node_port, 100);
    for name in ["pod-a", "pod-b"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!((40..=60).contains(&n), "NodePort spread {counts:?}");
    }

    // ClientIP affinity: every request from this host lands on one pod.
    let sticky: SocketAddr = format!("{}:80", addrs.sticky_ip).parse().unwrap();
    wait_for("the sticky service", log, || get(sticky, "/who").is_ok());
    let counts = spread(sticky, 20);
    assert_eq!(
        counts.len(),
        1,
        "ClientIP affinity spread requests: {counts:?}"
    );

    // A port name no endpoint has: refused, nothing else broken.
    let bad: SocketAddr = format!("{}:80", addrs.bad_ip).parse().unwrap();
    wait_for("the endpoint-less service programmed", log, || {
        matches!(
            TcpStream::connect_timeout(&bad, Duration::from_secs(1)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        ) && (!nft
            || Command::new("nft")
                .args(["list", "map", "ip", "tugboat", "no-endpoint-services"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(addrs.bad_ip)))
    });
    if nft {
        let out = Command::new("nft")
            .args(["list", "table", "ip", "tugboat"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        get(cluster, "/who").is_ok(),
        "other services still carry traffic"
    );

    drain(&server, &addrs, &log);

    if nft {
        // Someone deletes our table: the periodic check (2 s here) puts it back.
        let out = Command::new("nft")
            .args(["delete", "table", "ip", "tugboat"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let t = Instant::now();
        wait_for("the table rewritten", log, || get(cluster, "/who").is_ok());
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t.elapsed()
        );
    }

    // Health and metrics.
    let health = get(healthz_addr, "/healthz").expect("healthz 200");
    assert!(health.contains("lastUpdated"), "{health}");
    let metrics = get(metrics_addr, "/metrics").expect("metrics");
    assert!(
        metrics.contains("kubeproxy_sync_proxy_rules_duration_seconds_count"),
        "{metrics}"
    );

    // Scale to one: all traffic moves to pod-a within a second.
    let start = Instant::now();
    server.kubectl_ok(V, &["delete", "pod", "pod-b", "--wait=false"]);
    let mut streak = 0;
    let mut moved_at = None;
    while streak < 20 {
        assert!(
            start.elapsed() < PATIENCE,
            "traffic never settled on pod-a; log:\n{}",
            proxy.log()
        );
        let t = start.elapsed();
        if get(cluster, "/who").is_ok_and(|b| b == "pod-a") {
            if streak == 0 {
                moved_at = Some(t);
            }
            streak += 1;
        } else {
            streak = 0;
        }
    }
    let moved = moved_at.unwrap();
    eprintln!(
        "{}: traffic moved to the remaining pod {moved:?} after the delete",
        addrs.mode
    );
    assert!(moved <= Duration::from_secs(1), "took {moved:?}");
    // The NodePort Service has slices of its own, updated separately.
    wait_for("the NodePort moved too", log, || {
        spread(node_port, 5).get("pod-a") == Some(&5)
    });
    assert_eq!(spread(node_port, 20).get("pod-a"), Some(&20));

    // Removing the Service removes its rules.
    server.kubectl_ok(V, &["delete", "service", "web"]);
    wait_for("the ClusterIP gone", log, || get(cluster, "/who").is_err());
    assert!(get(node_port, "/who").is_ok());
    server.kubectl_ok(V, &["delete", "pod", "pod-a", "--wait=false"]);
}

/// An echo server on 127.0.0.1 (answers each line with itself).
fn echo_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut writer = conn;
                let mut line = String::new();
                while std::io::BufRead::read_line(&mut reader, &mut line).is_ok_and(|n| n > 0) {
                    if writer.write_all(line.as_bytes()).is_err() {
                        break;
                    }
                    line.clear();
                }
            });
        }
    });
    port
}

/// Sends `line` and reads the echo.
fn echo(conn: &mut TcpStream, line: &str) -> std::io::Result<String> {
    conn.write_all(format!("{line}\n").as_bytes())?;
    let mut buf = vec![0u8; line.len() + 1];
    conn.read_exact(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).trim().to_string())
}

/// An endpoint leaving a Service stops new connections (refused) while a
/// connection already made through the ClusterIP keeps working: it drains
/// rather than being cut.
fn drain(server: &ApiServer, addrs: &Addrs, log: &dyn Fn() -> String) {
    let port = echo_server();
    server.kubectl_stdin(
        V,
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: drain}}
spec:
  clusterIP: {ip}
  ports: [{{name: echo, port: 7}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: drain-1
  labels: {{kubernetes.io/service-name: drain}}
addressType: IPv4
ports: [{{name: echo, port: {port}, protocol: TCP}}]
endpoints: [{{addresses: [127.0.0.1]}}]
"#,
            ip = addrs.drain_ip
        ),
    );
    let target: SocketAddr = format!("{}:7", addrs.drain_ip).parse().unwrap();
    let connect = || -> std::io::Result<TcpStream> {
        let mut c = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
        c.set_read_timeout(Some(Duration::from_secs(1)))?;
        match echo(&mut c, "hello")?.as_str() {
            "hello" => Ok(c),
            other => Err(std::io::Error::other(format!("echoed {other:?}"))),
        }
    };
    wait_for("the echo service", log, || connect().is_ok());
    let mut held = connect().unwrap();
    server.kubectl_ok(V, &["delete", "endpointslice", "drain-1"]);
    wait_for("new connections refused", log, || {
        matches!(
            TcpStream::connect_timeout(&target, Duration::from_secs(1)),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
    });
    assert_eq!(
        echo(&mut held, "still there").unwrap(),
        "still there",
        "the established connection drains"
    );
}

#[test]
fn nftables_mode_balances_moves_and_rejects() {
    run(Addrs {
        mode: "nftables",
        cluster_ip: "10.111.222.1",
        node_port_ip: "10.111.222.2",
        bad_ip: "10.111.222.3",
        sticky_ip: "10.111.222.4",
        drain_ip: "10.111.222.5",
        node_port: 31871,
    });
}

#[test]
fn userspace_mode_balances_moves_and_rejects() {
    run(Addrs {
        mode: "userspace",
        cluster_ip: "10.111.222.11",
        node_port_ip: "10.111.222.12",
        bad_ip: "10.111.222.13",
        sticky_ip: "10.111.222.14",
        drain_ip: "10.111.222.15",
        node_port: 31872,
    });
}
