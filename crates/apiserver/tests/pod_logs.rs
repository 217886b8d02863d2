//! `pods/log` end to end: an in-process API server proxies to a fake kubelet
//! (HTTPS with a self-signed serving certificate, client certificates
//! verified against the cluster CA, as a real kubelet's `--client-ca-file`).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use futures::{AsyncBufReadExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, LogParams, Patch, PatchParams, PostParams};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use serde_json::json;
use test_support::TestServer;
use tokio::sync::{mpsc, Notify};

/// The cluster CA, from the admin kubeconfig.
fn cluster_ca(server: &TestServer) -> Vec<CertificateDer<'static>> {
    let text = std::fs::read_to_string(&server.kubeconfig).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let b64 = doc["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .unwrap();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// What the fake kubelet saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    client_user: Option<String>,
}

struct FakeKubelet {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Lets a followed log send its second line.
    release: Arc<Notify>,
}

type Body = BoxBody<Bytes, Infallible>;

fn full(text: &'static str) -> Body {
    Full::new(Bytes::from_static(text.as_bytes())).boxed()
}

/// Answers `/containerLogs/{ns}/{pod}/{container}`: container `app` has two
/// lines (the second, when following, only after `release`); container
/// `gone` is a kubelet 404.
async fn answer(path: &str, query: &str, release: Arc<Notify>) -> hyper::Response<Body> {
    let container = path.rsplit('/').next().unwrap_or("");
    if !path.starts_with("/containerLogs/") || container == "gone" {
        return hyper::Response::builder()
            .status(404)
            .body(full("container not found (\"gone\")"))
            .unwrap();
    }
    if query.contains("follow=true") {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            let _ = tx.send(Ok(Frame::data(Bytes::from("first\n")))).await;
            release.notified().await;
            let _ = tx.send(Ok(Frame::data(Bytes::from("second\n")))).await;
        });
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        return hyper::Response::builder()
            .header("content-type", "text/plain")
            .body(BodyExt::boxed(body))
            .unwrap();
    }
    hyper::Response::new(full("line 1\nline 2\n"))
}

async fn start_fake_kubelet(ca: Vec<CertificateDer<'static>>) -> FakeKubelet {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in ca {
        roots.add(c).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let release = Arc::new(Notify::new());
    let (seen2, release2) = (seen.clone(), release.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen2.clone();
            let release = release2.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let client_user = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| tugboat_apiserver::auth::user_from_certificate(c.as_ref()))
                    .map(|u| u.name);
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let path = req.uri().path().to_string();
                    let query = req.uri().query().unwrap_or("").to_string();
                    seen.lock().unwrap().push(Seen {
                        path_and_query: if query.is_empty() {
                            path.clone()
                        } else {
                            format!("{path}?{query}")
                        },
                        client_user: client_user.clone(),
                    });
                    let release = release.clone();
                    async move { Ok::<_, Infallible>(answer(&path, &query, release).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    FakeKubelet {
        port,
        seen,
        release,
    }
}

async fn add_node(client: &kube::Client, name: &str, port: u16) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "addresses": [
                    // Not resolvable: the InternalIP is used instead.
                    {"type": "Hostname", "address": "tugboat-no-such-node.invalid"},
                    {"type": "InternalIP", "address": "127.0.0.1"},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            }})),
        )
        .await
        .unwrap();
}

async fn add_pod(client: &kube::Client, name: &str, node: Option<&str>, containers: &[&str]) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut spec = json!({
        "containers": containers.iter().map(|c| json!({"name": c, "image": "busybox"})).collect::<Vec<_>>(),
    });
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
}

fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("not an API error: {other:?}"),
    }
}

async fn raw_get(client: &kube::Client, path: &str) -> (u16, String) {
    let req = http::Request::get(path).body(Vec::new()).unwrap();
    match client.request_text(req).await {
        Ok(text) => (200, text),
        Err(e) => api_error(e),
    }
}

#[tokio::test]
async fn pod_logs_are_proxied_from_the_kubelet() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let kubelet = start_fake_kubelet(cluster_ca(&server)).await;
    add_node(&client, "n1", kubelet.port).await;
    add_pod(&client, "web", Some("n1"), &["app"]).await;
    add_pod(&client, "multi", Some("n1"), &["app", "gone"]).await;
    add_pod(&client, "pending", None, &["app"]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // The only container, no options.
    let text = pods.logs("web", &LogParams::default()).await.unwrap();
    assert_eq!(text, "line 1\nline 2\n");
    let first = kubelet.seen.lock().unwrap()[0].clone();
    assert_eq!(first.path_and_query, "/containerLogs/default/web/app");
    assert_eq!(
        first.client_user.as_deref(),
        Some("kube-apiserver-kubelet-client")
    );

    // Options travel under the kubelet's names, sorted.
    let lp = LogParams {
        tail_lines: Some(5),
        timestamps: true,
        limit_bytes: Some(100),
        container: Some("app".into()),
        ..LogParams::default()
    };
    pods.logs("multi", &lp).await.unwrap();
    assert_eq!(
        kubelet.seen.lock().unwrap().last().unwrap().path_and_query,
        "/containerLogs/default/multi/app?limitBytes=100&tailLines=5&timestamps=true"
    );

    // Following streams each chunk as the kubelet sends it.
    let follow = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let mut lines = pods.log_stream("web", &follow).await.unwrap().lines();
    assert_eq!(lines.next().await.unwrap().unwrap(), "first");
    kubelet.release.notify_one();
    assert_eq!(lines.next().await.unwrap().unwrap(), "second");
    assert!(lines.next().await.is_none());

    // Container choice.
    let (code, message) = api_error(pods.logs("multi", &LogParams::default()).await.unwrap_err());
    assert_eq!(code, 400);
    assert_eq!(
        message,
        "a container name must be specified for pod multi, choose one of: [app gone]"
    );
    let lp = LogParams {
        container: Some("nope".into()),
        ..LogParams::default()
    };
    let (code, message) = api_error(pods.logs("web", &lp).await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (400, "container nope is not valid for pod web")
    );

    // A kubelet 404 reaches the client.
    let lp = LogParams {
        container: Some("gone".into()),
        ..LogParams::default()
    };
    let (code, message) = api_error(pods.logs("multi", &lp).await.unwrap_err());
    assert_eq!(code, 404);
    assert_eq!(
        message,
        "the server could not find the requested resource ( pods/log multi)"
    );

    // A pod on no node has no log yet: upstream's empty answer.
    assert_eq!(
        pods.logs("pending", &LogParams::default()).await.unwrap(),
        ""
    );

    // Validation.
    let (code, message) = raw_get(
        &client,
        "/api/v1/namespaces/default/pods/web/log?sinceSeconds=10&sinceTime=2024-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        message,
        "PodLogOptions \"web\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
    );
    let (code, message) = raw_get(
        &client,
        "/api/v1/namespaces/default/pods/web/log?tailLines=-3",
    )
    .await;
    assert_eq!(code, 422);
    assert!(
        message.contains("tailLines: Invalid value: -3"),
        "{message}"
    );
    let (code, _) = raw_get(
        &client,
        "/api/v1/namespaces/default/pods/web/log?tailLines=x",
    )
    .await;
    assert_eq!(code, 400);
    let (code, message) = raw_get(&client, "/api/v1/namespaces/default/pods/absent/log").await;
    assert_eq!((code, message.as_str()), (404, "pods \"absent\" not found"));
}

#[tokio::test]
async fn an_unreachable_kubelet_is_a_server_error_naming_the_dial() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    add_node(&client, "lost-node", port).await;
    add_pod(&client, "lost", Some("lost-node"), &["app"]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (code, message) = api_error(pods.logs("lost", &LogParams::default()).await.unwrap_err());
    assert_eq!(code, 500);
    assert_eq!(
        message,
        format!(
            "Get \"https://127.0.0.1:{port}/containerLogs/default/lost/app\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        )
    );
}

#[tokio::test]
async fn kubectl_logs_prints_the_kubelet_answer() {
    let kubectl = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let kubelet = start_fake_kubelet(cluster_ca(&server)).await;
    add_node(&client, "n1", kubelet.port).await;
    add_pod(&client, "web", Some("n1"), &["app"]).await;
    let kubeconfig = server.kubeconfig.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["logs", "web", "--tail=2"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line 1\nline 2\n");
    assert_eq!(
        kubelet.seen.lock().unwrap().last().unwrap().path_and_query,
        "/containerLogs/default/web/app?tailLines=2"
    );

    // `kubectl logs -f` prints the first line before the kubelet sends the
    // second one.
    let mut child = tokio::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["logs", "-f", "web"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("first"));
    kubelet.release.notify_one();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("second"));
    assert_eq!(lines.next_line().await.unwrap(), None);
    assert!(child.wait().await.unwrap().success());
}
