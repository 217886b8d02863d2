//! End to end: `kubectl exec`, `attach`, `port-forward` and
//! `get --raw .../nodes/<n>/proxy/...` against the real `tug-apiserver` and
//! a process-runtime `tug-kubelet`, with kubectl 1.33 (exec/attach over
//! WebSocket v5, port-forward's SPDY tunnelled through a WebSocket) and
//! kubectl 1.29 (everything over SPDY/3.1). The API server proxies each
//! upgrade to the kubelet with its own client certificate.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tugboat_e2e::{free_port, ApiServer, Component, KUBECTL_DIR};

const PATIENCE: Duration = Duration::from_secs(30);

/// A busy-box style pod printing `tick` every 300 ms, and one serving HTTP
/// on `http_port` (process-runtime pods share the host network).
fn pods(http_port: u16) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: box}}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    env: [{{name: GREETING, value: hello-from-env}}]
    command: [sh, -c, 'while true; do echo tick; sleep 0.3; done']
---
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: python
    command: [python3, -m, http.server, "{http_port}", --bind, 127.0.0.1]
"#
    )
}

struct Cluster {
    server: ApiServer,
    kubelet: Component,
    http_port: u16,
}

fn start() -> Cluster {
    let server = ApiServer::start();
    let (kubelet, _root, _port) = Component::process_kubelet(&server, "worker");
    let http_port = free_port();
    server.kubectl_until(
        "1.33",
        &["get", "node", "worker", "-o", "name"],
        PATIENCE,
        "the node registered",
        |out| !out.is_empty(),
    );
    server.kubectl_stdin("1.33", &["apply", "-f", "-"], &pods(http_port));
    for pod in ["box", "web"] {
        server.kubectl_until(
            "1.33",
            &["get", "pod", pod, "-o", "jsonpath={.status.phase}"],
            PATIENCE,
            "the pods Running",
            |out| out == "Running",
        );
    }
    Cluster {
        server,
        kubelet,
        http_port,
    }
}

impl Drop for Cluster {
    /// The pods' processes outlive the kubelet (their shims are detached):
    /// deleting the pods stops them, even after a failed assertion.
    fn drop(&mut self) {
        let _ = self.server.kubectl(
            "1.33",
            &[
                "delete",
                "pod",
                "box",
                "web",
                "--wait=true",
                "--timeout=30s",
            ],
        );
    }
}

/// Runs kubectl with a stdin and returns (exit code, stdout, stderr).
fn kubectl_with_input(c: &Cluster, v: &str, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = c
        .server
        .kubectl_cmd(v, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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

fn exercise(c: &Cluster, v: &str) {
    let log = || c.kubelet.log();

    // Output, and the container's environment.
    assert_eq!(
        c.server.kubectl_ok(
            v,
            &["exec", "box", "--", "sh", "-c", "echo hi; echo $GREETING"]
        ),
        "hi\nhello-from-env\n",
        "{}",
        log()
    );

    // The command's exit code is kubectl's, with upstream's message.
    let out = c.server.kubectl(
        v,
        &["exec", "box", "--", "sh", "-c", "echo oops >&2; exit 3"],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("oops"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );

    // A background process holding the output open does not hold kubectl.
    let started = Instant::now();
    assert_eq!(
        c.server
            .kubectl_ok(v, &["exec", "box", "--", "sh", "-c", "sleep 5 & echo bg"]),
        "bg\n"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // stdin reaches the command and its end ends `cat`.
    let (code, stdout, stderr) =
        kubectl_with_input(c, v, &["exec", "-i", "box", "--", "cat"], "one\ntwo\n");
    assert_eq!((code, stdout.as_str()), (0, "one\ntwo\n"), "{stderr}");

    // With -t the command gets a pseudo-terminal of the terminal's size
    // (kubectl needs a terminal of its own: `script` gives it one).
    let kubectl = format!("{KUBECTL_DIR}/kubectl.{v}");
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("stty cols 101 rows 41; {kubectl} exec -it box -- sh -c 'tty; sleep 0.5; stty size'"),
            "/dev/null",
        ])
        .env("KUBECONFIG", &c.server.kubeconfig)
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", log());
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("41 101"), "the resize did not arrive: {text}");

    // attach streams the container's output as it is written.
    let mut attach = c
        .server
        .kubectl_cmd(v, &["attach", "box"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl attach");
    let mut lines = BufReader::new(attach.stdout.take().unwrap()).lines();
    let first = lines.next();
    let second = lines.next();
    let _ = attach.kill();
    let _ = attach.wait();
    assert_eq!(
        (first.and_then(Result::ok), second.and_then(Result::ok)),
        (Some("tick".to_string()), Some("tick".to_string())),
        "{}",
        log()
    );

    // port-forward reaches the pod's HTTP server, connection after
    // connection.
    let local = free_port();
    let mapping = format!("{local}:{}", c.http_port);
    let mut forward = c
        .server
        .kubectl_cmd(v, &["port-forward", "pod/web", &mapping])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut ready = BufReader::new(forward.stdout.take().unwrap());
    let mut line = String::new();
    ready.read_line(&mut line).unwrap();
    assert!(line.starts_with("Forwarding from"), "{line}");
    let deadline = Instant::now() + PATIENCE;
    let mut answers = Vec::new();
    while answers.len() < 3 && Instant::now() < deadline {
        match http_get(local) {
            Ok(a) if a.starts_with("HTTP/1.0 200") => answers.push(a),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let _ = forward.kill();
    let _ = forward.wait();
    assert_eq!(answers.len(), 3, "{}", log());
    assert!(answers[0].contains("Directory listing"), "{}", answers[0]);

    // Errors before the upgrade are API errors.
    let out = c
        .server
        .kubectl(v, &["exec", "box", "-c", "nope", "--", "true"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("container nope is not valid for pod box"),
        "{out:?}"
    );
    let out = c.server.kubectl(v, &["exec", "nopod", "--", "true"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pods \"nopod\" not found"),
        "{out:?}"
    );

    // nodes/<n>/proxy reaches the kubelet's own API.
    assert_eq!(
        c.server
            .kubectl_ok(v, &["get", "--raw", "/api/v1/nodes/worker/proxy/healthz"]),
        "ok"
    );
}

#[test]
fn exec_attach_port_forward_and_node_proxy_with_kubectl_1_33() {
    let c = start();
    exercise(&c, "1.33");
}

#[test]
fn exec_attach_port_forward_and_node_proxy_with_kubectl_1_29_over_spdy() {
    let c = start();
    exercise(&c, "1.29");
}

/// kube-rs's `Api::portforward` speaks WebSocket port-forward with a
/// channel per port (`v4.channel.k8s.io`, as the Python client does): the
/// kubelet serves it too, through the API server.
#[test]
fn kube_rs_port_forwards_over_websocket_channels() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let c = start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let kubeconfig = Kubeconfig::read_from(&c.server.kubeconfig).expect("kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("config");
        let pods: kube::Api<Pod> =
            kube::Api::default_namespaced(kube::Client::try_from(config).expect("client"));
        // Twice: each forwarding session is its own WebSocket.
        for _ in 0..2 {
            let mut forwarder = pods
                .portforward("web", &[c.http_port])
                .await
                .expect("portforward");
            let mut stream = forwarder
                .take_stream(c.http_port)
                .expect("the port's stream");
            stream
                .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .await
                .expect("send the request");
            let mut answer = Vec::new();
            tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
                .await
                .expect("an answer in time")
                .expect("read the answer");
            let answer = String::from_utf8_lossy(&answer);
            assert!(
                answer.starts_with("HTTP/1.0 200"),
                "{answer}\n{}",
                c.kubelet.log()
            );
            drop(stream);
            forwarder.abort();
        }
        // A port nobody listens on: the error channel says so.
        let mut forwarder = pods.portforward("web", &[1]).await.expect("portforward");
        let errors = forwarder.take_error(1).expect("the port's error channel");
        let message = tokio::time::timeout(PATIENCE, errors)
            .await
            .expect("an error in time")
            .expect("an error message");
        assert!(
            message.contains("error forwarding port 1 to pod default/web"),
            "{message}"
        );
    });
}
