//! The kubelet's HTTPS API with the process runtime against an in-process
//! API server: `containerLogs` returns a pod's log (whole, tailed, one
//! stream, followed, the previous attempt's) to a client certificate of the
//! cluster CA; 401 without one, 404 for an unknown container or pod.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use test_support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tugboat_kubelet::runtime::process::{ProcessOptions, ProcessRuntime};
use tugboat_kubelet::runtime::{ContainerFilter, ContainerRuntime};
use tugboat_kubelet::{Kubelet, KubeletConfig};

/// A root directory removed at the end (see tests/process.rs).
struct Root(PathBuf);

impl Root {
    fn new(test: &str) -> Root {
        let dir = std::env::temp_dir().join(format!(
            "tugboat-server-{}-{test}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Root(dir)
    }

    fn runtime(&self) -> ProcessRuntime {
        let mut options = ProcessOptions::new(self.0.join("runtime"), "127.0.0.1");
        options.shim = PathBuf::from(env!("CARGO_BIN_EXE_tug-kubelet"));
        options.cgroup_root = None;
        ProcessRuntime::open(options).unwrap()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test server's kubeconfig: its CA (DER) and the admin client
/// certificate and key (PEM), decoded from the embedded `*-data` fields.
fn credentials(kubeconfig: &std::path::Path) -> (String, String) {
    use base64::Engine as _;
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let field = |name: &str| {
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in the kubeconfig"));
        let der = base64::engine::general_purpose::STANDARD
            .decode(line.trim())
            .unwrap();
        String::from_utf8(der).unwrap()
    };
    (field("client-certificate-data:"), field("client-key-data:"))
}

/// The kubelet's certificate is self-signed: like the API server by
/// default, the test does not verify it.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connector(client_cert: Option<(&str, &str)>) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let config = match client_cert {
        Some((cert, key)) => {
            let certs = rustls_pemfile::certs(&mut cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.as_bytes())
                .unwrap()
                .unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Sends `GET path` over HTTP/1.1 and returns the TLS stream to read the
/// response from.
async fn get(
    addr: std::net::SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    path: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut stream = tls.connect(name, tcp).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// The whole response: status code and body (chunk framing left in, the
/// tests only look for lines in it).
async fn fetch(
    addr: std::net::SocketAddr,
    tls: &tokio_rustls::TlsConnector,
    path: &str,
) -> (u16, String) {
    let mut stream = get(addr, tls, path).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The body of a successful response, without chunk framing.
async fn logs(addr: std::net::SocketAddr, tls: &tokio_rustls::TlsConnector, path: &str) -> String {
    let (status, body) = fetch(addr, tls, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_logs_over_https() {
    let server = TestServer::start().await.unwrap();
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let kube_config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
    let client_ca = kube_config.root_cert.clone().unwrap();
    let client = kube::Client::try_from(kube_config).unwrap();
    let root = Root::new("logs");
    let runtime = root.runtime();

    let mut config = KubeletConfig::new("logs-a");
    config.node_status_update_frequency = Duration::from_secs(1);
    config.runtime = Arc::new(runtime.clone());
    config.port = free_port();
    config.address = "127.0.0.1".parse().unwrap();
    config.client_ca = client_ca;
    let kubelet = Kubelet::start(client.clone(), config).await.unwrap();
    kubelet
        .wait_registered(Duration::from_secs(10))
        .await
        .unwrap();
    let addr = kubelet.server_addr().unwrap();
    let port = kubelet
        .node()
        .status
        .as_ref()
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map(|e| e.port);
    assert_eq!(port, Some(i32::from(addr.port())));

    let (cert, key) = credentials(&server.kubeconfig);
    let admin = connector(Some((&cert, &key)));
    let anonymous = connector(None);

    // stdout and stderr are copied by separate pumps: a pause keeps their
    // order in the file. "later" is written only once the trigger file exists, so that the
    // follow below sees it arrive.
    let trigger = root.0.join("go");
    let script = format!(
        "echo one; sleep 0.3; echo two >&2; while [ ! -e {} ]; do sleep 0.1; done; echo later; sleep 30",
        trigger.display()
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let spec: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "talker"},
        "spec": {
            "nodeName": "logs-a",
            "containers": [{"name": "app", "image": "busybox", "command": ["sh", "-c", script]}],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &spec).await.unwrap();

    let (status, body) = fetch(addr, &admin, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    let base = "/containerLogs/default/talker/app";
    let deadline = Instant::now() + Duration::from_secs(20);
    let all = loop {
        let (status, body) = fetch(addr, &admin, base).await;
        if status == 200 && body.contains("one\n") && body.contains("two\n") {
            break body;
        }
        assert!(Instant::now() < deadline, "no log yet: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!all.contains("stdout"), "raw content, not CRI lines: {all}");

    let tail = logs(addr, &admin, &format!("{base}?tailLines=1")).await;
    assert!(tail.contains("two\n") && !tail.contains("one"), "{tail}");
    let stderr = logs(addr, &admin, &format!("{base}?stream=Stderr")).await;
    assert!(
        stderr.contains("two\n") && !stderr.contains("one"),
        "{stderr}"
    );
    let stamped = logs(addr, &admin, &format!("{base}?tailLines=1&timestamps=true")).await;
    let stamp = stamped
        .lines()
        .find_map(|l| l.strip_suffix(" two"))
        .unwrap_or_else(|| panic!("a timestamped line: {stamped}"));
    assert!(
        stamp.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
        "{stamp}"
    );

    // Follow: the stream stays open and brings the line written later.
    let mut stream = get(addr, &admin, &format!("{base}?follow=true")).await;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let first_deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains("two\n") {
        assert!(
            Instant::now() < first_deadline,
            "follow: {}",
            String::from_utf8_lossy(&seen)
        );
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "follow ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(!String::from_utf8_lossy(&seen).contains("later"));
    std::fs::write(&trigger, "").unwrap();
    while !String::from_utf8_lossy(&seen).contains("later\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("the later line is streamed")
            .unwrap();
        assert!(
            n > 0,
            "follow ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    drop(stream);

    let (status, _) = fetch(addr, &anonymous, base).await;
    assert_eq!(status, 401);
    let (status, body) = fetch(addr, &admin, "/containerLogs/default/talker/nope").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains(r#"container "nope" in pod "talker" is not available"#),
        "{body}"
    );
    let (status, body) = fetch(addr, &admin, "/containerLogs/default/ghost/app").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains(r#"pod "ghost" not found"#), "{body}");
    let (status, body) = fetch(addr, &admin, &format!("{base}?previous=true")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("previous terminated container"), "{body}");
    let (status, _) = fetch(addr, &admin, &format!("{base}?tailLines=x")).await;
    assert_eq!(status, 400);

    // previous: the log of the attempt before a restart.
    let mark = root.0.join("ran-once");
    let script = format!(
        "if [ -e {m} ]; then echo second; sleep 30; else touch {m}; echo first; exit 1; fi",
        m = mark.display()
    );
    let spec: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "crasher"},
        "spec": {
            "nodeName": "logs-a",
            "containers": [{"name": "app", "image": "busybox", "command": ["sh", "-c", script]}],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &spec).await.unwrap();
    let crasher = "/containerLogs/default/crasher/app";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = fetch(addr, &admin, crasher).await;
        if status == 200 && body.contains("second\n") {
            break;
        }
        assert!(Instant::now() < deadline, "no restart yet: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let previous = logs(addr, &admin, &format!("{crasher}?previous=true")).await;
    assert!(
        previous.contains("first\n") && !previous.contains("second"),
        "{previous}"
    );

    pods.delete("crasher", &Default::default()).await.unwrap();
    pods.delete("talker", &Default::default()).await.unwrap();
    kubelet.shutdown().await;
    for c in runtime
        .list_containers(&ContainerFilter::default())
        .await
        .unwrap()
    {
        let _ = runtime.remove_container(&c.id).await;
    }
}
