//! The kubelet with the fake runtime against an in-process API server,
//! checked the way `kubectl get/describe` would show it: the Node
//! registers Ready, its Lease is renewed, bound pods run, finish, crash
//! and back off, get rejected when they do not fit, and a graceful delete
//! completes.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use serde_json::json;
use test_support::TestServer;
use tugboat_kubelet::config::{parse_node_labels, parse_taints};
use tugboat_kubelet::{HollowNodes, Kubelet, KubeletConfig};

/// A kubelet config with one-second heartbeats, so tests see them move.
fn fast(node: &str) -> KubeletConfig {
    let mut config = KubeletConfig::new(node);
    config.node_status_update_frequency = Duration::from_secs(1);
    config.node_status_report_frequency = Duration::from_secs(1);
    config.node_lease_renew_interval = Duration::from_secs(1);
    config.pod_cidr = Some("10.244.9.0/24".into());
    config
}

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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod(name: &str, node: &str, extra: serde_json::Value) -> Pod {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "nginx:1.27"}],
        },
    });
    merge(&mut pod, extra);
    serde_json::from_value(pod).unwrap()
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn condition(pod: &Pod, kind: &str) -> Option<(String, Option<String>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

async fn phase_is(pods: &Api<Pod>, name: &str, wanted: &str) -> Pod {
    eventually(
        Duration::from_secs(15),
        &format!("{name} {wanted}"),
        || async { pods.get(name).await.ok().filter(|p| phase(p) == wanted) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_registers_ready_and_its_lease_is_renewed() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let mut config = fast("node-a");
    config.node_labels = parse_node_labels("tier=web").unwrap();
    config.register_with_taints = parse_taints("dedicated=gpu:NoSchedule").unwrap();
    let kubelet = Kubelet::start(client.clone(), config).await.unwrap();
    kubelet
        .wait_registered(Duration::from_secs(10))
        .await
        .unwrap();

    let nodes: Api<Node> = Api::all(client.clone());
    let node = eventually(Duration::from_secs(10), "node Ready", || async {
        let node = nodes.get("node-a").await.ok()?;
        let ready = node
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready")?
            .clone();
        (ready.status == "True").then_some(node)
    })
    .await;
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "node-a");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["tier"], "web");
    let taints = node.spec.clone().unwrap().taints.unwrap();
    assert_eq!(taints[0].key, "dedicated");
    let status = node.status.clone().unwrap();
    assert_eq!(status.capacity.as_ref().unwrap()["cpu"].0, "8");
    assert_eq!(status.allocatable.as_ref().unwrap()["pods"].0, "110");
    let info = status.node_info.clone().unwrap();
    assert_eq!(info.kubelet_version, "v1.33.0-tugboat");
    assert_eq!(info.container_runtime_version, "fake://0.1");
    let conditions = status.conditions.clone().unwrap();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
    assert_eq!(
        ready.message.as_deref(),
        Some("kubelet is posting ready status")
    );
    for (kind, reason) in [
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
    ] {
        let c = conditions.iter().find(|c| c.type_ == kind).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some(reason))
        );
    }

    // The Lease: held by the node, owned by it, renewed.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = eventually(Duration::from_secs(10), "the node lease", || async {
        let lease = leases.get("node-a").await.ok()?;
        lease.metadata.owner_references.is_some().then_some(lease)
    })
    .await;
    let spec = lease.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("node-a"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let owner = &lease.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Node", "node-a")
    );
    assert_eq!(Some(&owner.uid), node.metadata.uid.as_ref());
    let first = spec.renew_time.unwrap().0;
    eventually(Duration::from_secs(10), "a lease renewal", || async {
        let renewed = leases.get("node-a").await.ok()?.spec?.renew_time?.0;
        (renewed > first).then_some(())
    })
    .await;

    // The status heartbeat moves too, the transition time does not.
    let beat = ready.last_heartbeat_time.clone().unwrap().0;
    let moved = eventually(Duration::from_secs(10), "a node heartbeat", || async {
        let node = nodes.get("node-a").await.ok()?;
        let ready = node
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.last_heartbeat_time.as_ref()?.0 > beat).then_some(ready)
    })
    .await;
    assert_eq!(moved.last_transition_time, ready.last_transition_time);

    // Events a user sees with `kubectl get events`.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(Duration::from_secs(10), "the NodeReady event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("NodeReady"))
            .then_some(())
    })
    .await;
    kubelet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_pods_run_finish_and_are_deleted_gracefully() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let kubelet = Kubelet::start(client.clone(), fast("node-a"))
        .await
        .unwrap();
    kubelet
        .wait_registered(Duration::from_secs(10))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    pods.create(&pp, &pod("web", "node-a", json!({})))
        .await
        .unwrap();
    let web = eventually(Duration::from_secs(15), "web Ready", || async {
        let p = pods.get("web").await.ok()?;
        (condition(&p, "Ready")?.0 == "True").then_some(p)
    })
    .await;
    assert_eq!(phase(&web), "Running");
    let status = web.status.clone().unwrap();
    let ip = status.pod_ip.clone().unwrap();
    assert!(ip.starts_with("10.244.9."), "{ip}");
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(status.start_time.is_some());
    for kind in [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "PodReadyToStartContainers",
    ] {
        assert_eq!(
            condition(&web, kind).map(|c| c.0).as_deref(),
            Some("True"),
            "{kind}"
        );
    }
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(ready.last_transition_time.is_some());
    let c = &status.container_statuses.unwrap()[0];
    assert!(c.ready && c.started == Some(true) && c.restart_count == 0);
    assert!(c.state.as_ref().unwrap().running.is_some());
    assert!(c.container_id.as_deref().unwrap().starts_with("fake://"));
    assert_eq!(c.image, "nginx:1.27");
    assert!(
        c.image_id.starts_with("docker.io/library/nginx@sha256:"),
        "{}",
        c.image_id
    );

    // A Job-like pod that succeeds, and one that fails.
    let job = |name: &str, code: &str| {
        pod(
            name,
            "node-a",
            json!({
                "metadata": {"annotations": {"tugboat.dev/fake-exit-code": code}},
                "spec": {"restartPolicy": "Never"},
            }),
        )
    };
    pods.create(&pp, &job("ok", "0")).await.unwrap();
    pods.create(&pp, &job("bad", "3")).await.unwrap();
    let ok = phase_is(&pods, "ok", "Succeeded").await;
    let term = ok.status.clone().unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (term.exit_code, term.reason.as_deref()),
        (0, Some("Completed"))
    );
    assert_eq!(
        condition(&ok, "Ready"),
        Some(("False".into(), Some("PodCompleted".into())))
    );
    let bad = phase_is(&pods, "bad", "Failed").await;
    let term = bad.status.clone().unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((term.exit_code, term.reason.as_deref()), (3, Some("Error")));

    // A graceful delete: the API server only marks the pod; the kubelet
    // stops it and finishes the deletion.
    let deleting = pods.delete("web", &DeleteParams::default()).await.unwrap();
    assert!(deleting.left().is_some(), "the delete only started");
    eventually(Duration::from_secs(15), "web gone", || async {
        match pods.get("web").await {
            Err(kube::Error::Api(e)) if e.code == 404 => Some(()),
            _ => None,
        }
    })
    .await;

    // Events as `kubectl describe pod` lists them.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("web"))
        .filter_map(|e| e.reason)
        .collect();
    for wanted in ["Pulling", "Pulled", "Created", "Started"] {
        assert!(
            reasons.iter().any(|r| r == wanted),
            "{wanted} in {reasons:?}"
        );
    }
    kubelet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_containers_back_off_init_containers_run_and_misfits_are_rejected() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let kubelet = Kubelet::start(client.clone(), fast("node-a"))
        .await
        .unwrap();
    kubelet
        .wait_registered(Duration::from_secs(10))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    // restartPolicy Always with a container that keeps failing: restarted
    // once at once, then held back.
    pods.create(
        &pp,
        &pod(
            "crash",
            "node-a",
            json!({"metadata": {"annotations": {"tugboat.dev/fake-exit-code": "1"}}}),
        ),
    )
    .await
    .unwrap();
    let crash = eventually(Duration::from_secs(15), "CrashLoopBackOff", || async {
        let p = pods.get("crash").await.ok()?;
        let c = p
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .first()?
            .clone();
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        (waiting.reason.as_deref() == Some("CrashLoopBackOff")).then_some(c)
    })
    .await;
    assert_eq!(crash.restart_count, 1);
    let last = crash.last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    let message = crash.state.unwrap().waiting.unwrap().message.unwrap();
    assert!(
        message.starts_with("back-off 10s restarting failed container=app pod=crash_default("),
        "{message}"
    );
    assert_eq!(phase(&pods.get("crash").await.unwrap()), "Running");

    // Init containers run first, in order.
    pods.create(
        &pp,
        &pod(
            "init",
            "node-a",
            json!({"spec": {"initContainers": [
                {"name": "one", "image": "busybox"},
                {"name": "two", "image": "busybox"},
            ]}}),
        ),
    )
    .await
    .unwrap();
    let init = phase_is(&pods, "init", "Running").await;
    assert_eq!(
        condition(&init, "Initialized").map(|c| c.0).as_deref(),
        Some("True")
    );
    let inits = init.status.unwrap().init_container_statuses.unwrap();
    let names: Vec<&str> = inits.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    for c in &inits {
        let t = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
        assert!(c.ready);
    }

    // A pod that does not fit is rejected, as upstream's admission does.
    pods.create(
        &pp,
        &pod(
            "huge",
            "node-a",
            json!({"spec": {"containers": [{"name": "app", "image": "nginx",
                "resources": {"requests": {"cpu": "100"}}}]}}),
        ),
    )
    .await
    .unwrap();
    let huge = phase_is(&pods, "huge", "Failed").await;
    let status = huge.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("OutOfcpu"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was rejected: Node didn't have enough resource: cpu, requested: 100000, used: 0, capacity: 8000")
    );
    // Deleting the rejected pod still completes.
    pods.delete("huge", &DeleteParams::default()).await.unwrap();
    eventually(Duration::from_secs(15), "huge gone", || async {
        pods.get_opt("huge").await.ok()?.is_none().then_some(())
    })
    .await;
    kubelet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_share_a_client_and_run_pods() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let hollow = HollowNodes::start(client.clone(), "hollow", 3, &fast(""))
        .await
        .unwrap();
    hollow.wait_ready(Duration::from_secs(15)).await.unwrap();
    assert_eq!(hollow.names(), ["hollow-0", "hollow-1", "hollow-2"]);
    let nodes: Api<Node> = Api::all(client.clone());
    let listed = nodes.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(listed.len(), 3);

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("p2", "hollow-2", json!({})))
        .await
        .unwrap();
    let p = phase_is(&pods, "p2", "Running").await;
    let status = p.status.unwrap();
    assert!(status.pod_ip.unwrap().starts_with("10.244.2."));
    assert_eq!(status.host_ip.as_deref(), Some("172.16.0.4"));
    assert_eq!(hollow.running_containers(), 1);
    hollow.shutdown().await;
}
