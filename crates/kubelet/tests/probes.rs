//! Probes end to end: the kubelet with the fake runtime against an
//! in-process API server, its probes pointed at servers this test runs on
//! 127.0.0.1. A readiness `httpGet` probe flips the pod's Ready condition
//! as the server answers 200 or 503; a `tcpSocket` liveness probe with
//! nothing listening gets the container killed and restarted.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::{Api, ListParams, PostParams};

use serde_json::json;
use test_support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tugboat_kubelet::{Kubelet, KubeletConfig};

async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start(node: &str) -> (TestServer, kube::Client, tugboat_kubelet::KubeletHandle) {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let mut config = KubeletConfig::new(node);
    config.pod_cidr = Some("10.244.7.0/24".into());
    let kubelet = Kubelet::start(client.clone(), config).await.unwrap();
    kubelet
        .wait_registered(Duration::from_secs(10))
        .await
        .unwrap();
    (server, client, kubelet)
}

fn probed_pod(name: &str, node: &str, container: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [container]},
    }))
    .unwrap()
}

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

fn app_status(pod: &Pod) -> Option<ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

/// Event messages about `pod` with `reason`.
async fn events(client: &kube::Client, pod: &str, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let Ok(list) = api.list(&ListParams::default()).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

/// An HTTP server on 127.0.0.1 answering 200 while `healthy`, else 503.
async fn health_server(healthy: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let healthy = healthy.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let code = if healthy.load(Ordering::SeqCst) {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let reply = format!("HTTP/1.1 {code}\r\nContent-Length: 2\r\n\r\nok");
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readiness_probe_flips_ready_with_the_server() {
    let (_server, client, _kubelet) = start("probe-a").await;
    let healthy = Arc::new(AtomicBool::new(false));
    let port = health_server(healthy.clone()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = probed_pod(
        "web",
        "probe-a",
        json!({
            "name": "app", "image": "nginx:1.27",
            "ports": [{"name": "http", "containerPort": port}],
            "readinessProbe": {
                "httpGet": {"host": "127.0.0.1", "port": "http", "path": "/healthz"},
                "periodSeconds": 1, "failureThreshold": 1,
            },
        }),
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();

    // Running, but not ready while the server answers 503.
    let running = eventually(Duration::from_secs(15), "web running", || async {
        let p = pods.get("web").await.ok()?;
        let s = app_status(&p)?;
        s.state.as_ref()?.running.as_ref()?;
        Some(p)
    })
    .await;
    assert_eq!(condition(&running, "Ready").as_deref(), Some("False"));
    let unhealthy = eventually(Duration::from_secs(15), "an Unhealthy event", || async {
        let list = events(&client, "web", "Unhealthy").await;
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert_eq!(
        unhealthy[0],
        "Readiness probe failed: HTTP probe failed with statuscode: 503"
    );
    let p = pods.get("web").await.unwrap();
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    assert_eq!(condition(&p, "ContainersReady").as_deref(), Some("False"));
    assert!(!app_status(&p).unwrap().ready);

    // The server answers 200: the pod becomes Ready.
    healthy.store(true, Ordering::SeqCst);
    let p = eventually(Duration::from_secs(15), "web Ready", || async {
        let p = pods.get("web").await.ok()?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
    })
    .await;
    assert_eq!(condition(&p, "ContainersReady").as_deref(), Some("True"));
    let s = app_status(&p).unwrap();
    assert!(s.ready && s.started == Some(true));
    assert_eq!(s.restart_count, 0);

    // And 503 again: not ready, without a restart.
    healthy.store(false, Ordering::SeqCst);
    let p = eventually(Duration::from_secs(15), "web not Ready", || async {
        let p = pods.get("web").await.ok()?;
        (condition(&p, "Ready").as_deref() == Some("False")).then_some(p)
    })
    .await;
    let s = app_status(&p).unwrap();
    assert!(!s.ready && s.state.unwrap().running.is_some());
    assert_eq!(s.restart_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_the_container() {
    let (_server, client, _kubelet) = start("probe-b").await;
    // A port nothing listens on.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = probed_pod(
        "live",
        "probe-b",
        json!({
            "name": "app", "image": "nginx:1.27",
            "livenessProbe": {
                "tcpSocket": {"host": "127.0.0.1", "port": port},
                "periodSeconds": 1, "failureThreshold": 2,
            },
        }),
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let s = eventually(Duration::from_secs(20), "a restart", || async {
        let s = app_status(&pods.get("live").await.ok()?)?;
        (s.restart_count >= 1).then_some(s)
    })
    .await;
    let last = s.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert_ne!(last.exit_code, 0);

    let killing = events(&client, "live", "Killing").await;
    assert!(
        killing
            .iter()
            .any(|m| m == "Container app failed liveness probe, will be restarted"),
        "{killing:?}"
    );
    let unhealthy = events(&client, "live", "Unhealthy").await;
    let refused =
        format!("Liveness probe failed: dial tcp 127.0.0.1:{port}: connect: connection refused");
    assert!(unhealthy.contains(&refused), "{unhealthy:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_startup_probe_holds_readiness_back_until_it_succeeds() {
    let (_server, client, _kubelet) = start("probe-c").await;
    let healthy = Arc::new(AtomicBool::new(false));
    let port = health_server(healthy.clone()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The readiness probe would pass at once (the port accepts
    // connections): only the startup probe holds it back.
    let pod = probed_pod(
        "slow",
        "probe-c",
        json!({
            "name": "app", "image": "nginx:1.27",
            "startupProbe": {
                "httpGet": {"host": "127.0.0.1", "port": port},
                "periodSeconds": 1, "failureThreshold": 60,
            },
            "readinessProbe": {
                "tcpSocket": {"host": "127.0.0.1", "port": port},
                "periodSeconds": 1,
            },
        }),
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();
    eventually(
        Duration::from_secs(15),
        "a failed startup probe",
        || async {
            let list = events(&client, "slow", "Unhealthy").await;
            list.iter()
                .any(|m| m == "Startup probe failed: HTTP probe failed with statuscode: 503")
                .then_some(())
        },
    )
    .await;
    // Give a readiness probe time to run, were it not held back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = pods.get("slow").await.unwrap();
    let s = app_status(&p).unwrap();
    assert!(s.state.as_ref().unwrap().running.is_some());
    assert_eq!((s.started, s.ready), (Some(false), false));
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));

    healthy.store(true, Ordering::SeqCst);
    let p = eventually(Duration::from_secs(15), "slow Ready", || async {
        let p = pods.get("slow").await.ok()?;
        (condition(&p, "Ready").as_deref() == Some("True")).then_some(p)
    })
    .await;
    let s = app_status(&p).unwrap();
    assert_eq!((s.started, s.ready, s.restart_count), (Some(true), true, 0));
}
