//! The node lifecycle controller against an in-process API server, with
//! short settings (grace 2 s, a pass every 500 ms). The tests play the
//! kubelets: they renew the nodes' Leases and post their Ready conditions.

mod common;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tugboat_controller_manager::context::Settings;
use tugboat_controller_manager::controllers::nodelifecycle;

const WAIT: Duration = Duration::from_secs(15);

fn settings() -> Settings {
    Settings {
        node_monitor_grace_period: Duration::from_secs(2),
        node_monitor_period: Duration::from_millis(500),
        node_startup_grace_period: Duration::from_secs(2),
        ..Settings::default()
    }
}

async fn start() -> common::Cluster {
    let cluster = common::start_with(&[], settings()).await;
    tokio::spawn(nodelifecycle::run(cluster.ctx.clone()));
    cluster
}

fn now() -> String {
    Timestamp::now().to_string()
}

/// A node as a kubelet registers it, Ready (or not), and its Lease.
async fn register(client: &kube::Client, name: &str, ready: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"conditions": [
            {"type": "Ready", "status": ready, "reason": "KubeletReady", "message": "kubelet is posting ready status",
             "lastHeartbeatTime": now(), "lastTransitionTime": now()},
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
             "lastHeartbeatTime": now(), "lastTransitionTime": now()},
        ]},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
}

fn micro_now() -> String {
    Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The kubelet's heartbeat: renew the Lease.
async fn renew(client: &kube::Client, name: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let patch = json!({"spec": {"renewTime": micro_now()}});
    leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Keep renewing a node's Lease in the background, as a live kubelet.
fn keep_alive(client: &kube::Client, name: &str) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    let name = name.to_string();
    tokio::spawn(async move {
        loop {
            renew(&client, &name).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

/// The kubelet posting its Ready condition.
async fn post_ready(client: &kube::Client, name: &str, ready: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = nodes.get_status(name).await.unwrap();
    let conditions = node.status.as_mut().unwrap().conditions.as_mut().unwrap();
    for c in conditions.iter_mut() {
        let status = if c.type_ == "Ready" { ready } else { "False" };
        if c.status != status {
            c.last_transition_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                Timestamp::now(),
            ));
        }
        c.status = status.into();
        c.reason = Some(
            if c.type_ == "Ready" {
                "KubeletReady"
            } else {
                "KubeletHasSufficientMemory"
            }
            .into(),
        );
        c.last_heartbeat_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::now(),
        ));
    }
    nodes
        .replace_status(name, &PostParams::default(), &node)
        .await
        .unwrap();
}

async fn create_pod(client: &kube::Client, name: &str, node: &str, tolerations: Value) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}], "tolerations": tolerations},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now()},
    ]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap()
}

fn taint_keys(node: &Node) -> Vec<String> {
    let mut keys: Vec<String> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect();
    keys.sort();
    keys
}

fn taint<'a>(node: &'a Node, key: &str, effect: &str) -> Option<&'a Taint> {
    node.spec
        .as_ref()?
        .taints
        .as_ref()?
        .iter()
        .find(|t| t.key == key && t.effect == effect)
}

fn ready_of(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

async fn event(client: &kube::Client, reason: &str, message: &str) -> Event {
    let events: Api<Event> = Api::all(client.clone());
    common::eventually(WAIT, &format!("a {reason} event {message:?}"), || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason) && e.message.as_deref() == Some(message))
    })
    .await
}

#[tokio::test]
async fn a_silent_node_goes_unknown_is_tainted_and_its_pods_evicted_by_their_tolerations() {
    let cluster = start().await;
    let client = cluster.client.clone();
    register(&client, "alive", "True").await;
    register(&client, "silent", "True").await;
    let _alive = keep_alive(&client, "alive");

    let unreachable = |seconds: Option<i64>| {
        let mut t = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"});
        if let Some(s) = seconds {
            t["tolerationSeconds"] = json!(s);
        }
        t
    };
    create_pod(&client, "short", "silent", json!([unreachable(Some(2))])).await;
    create_pod(&client, "forever", "silent", json!([unreachable(None)])).await;
    // Admission gives this one the five-minute defaults.
    let default = create_pod(&client, "default", "silent", json!(null)).await;
    let seconds: Vec<Option<i64>> = default
        .spec
        .unwrap()
        .tolerations
        .unwrap()
        .iter()
        .map(|t| t.toleration_seconds)
        .collect();
    assert_eq!(seconds, [Some(300), Some(300)]);
    create_pod(&client, "elsewhere", "alive", json!(null)).await;

    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // After the grace period the silent node is Unknown, with the upstream
    // reason and message on every kubelet condition, and tainted.
    let silent = common::eventually(WAIT, "the silent node Unknown and tainted", || async {
        let node = nodes.get("silent").await.unwrap();
        let tainted = taint(&node, "node.kubernetes.io/unreachable", "NoExecute").is_some()
            && taint(&node, "node.kubernetes.io/unreachable", "NoSchedule").is_some();
        tainted.then_some(node)
    })
    .await;
    let conditions = silent.status.as_ref().unwrap().conditions.as_ref().unwrap();
    for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = conditions.iter().find(|c| c.type_ == type_).unwrap();
        assert_eq!(c.status, "Unknown", "{type_}");
        if type_ != "DiskPressure" && type_ != "PIDPressure" {
            assert_eq!(c.reason.as_deref(), Some("NodeStatusUnknown"), "{type_}");
            assert_eq!(
                c.message.as_deref(),
                Some("Kubelet stopped posting node status.")
            );
        }
    }
    let added = taint(&silent, "node.kubernetes.io/unreachable", "NoExecute")
        .unwrap()
        .time_added
        .clone()
        .expect("the NoExecute taint carries timeAdded")
        .0;
    assert_eq!(
        taint_keys(&silent),
        [
            "node.kubernetes.io/unreachable:NoExecute",
            "node.kubernetes.io/unreachable:NoSchedule"
        ]
    );
    // The live node is left alone.
    let alive = nodes.get("alive").await.unwrap();
    assert!(taint_keys(&alive).is_empty(), "{:?}", taint_keys(&alive));
    event(
        &client,
        "NodeNotReady",
        "Node silent status is now: NodeNotReady",
    )
    .await;

    // Its pods are no longer ready; the other node's pod still is.
    common::eventually(WAIT, "the silent node's pods not ready", || async {
        let list = pods.list(&ListParams::default()).await.unwrap();
        let all = list.items.iter().all(|p| {
            let on_silent = p.spec.as_ref().unwrap().node_name.as_deref() == Some("silent");
            ready_of(p).as_deref() == Some(if on_silent { "False" } else { "True" })
        });
        all.then_some(())
    })
    .await;

    // The pod tolerating it for 2 s is deleted 2 s after the taint came.
    let short = common::eventually(WAIT, "the short-tolerating pod deleted", || async {
        let pod = pods.get("short").await.unwrap();
        pod.metadata.deletion_timestamp.is_some().then_some(pod)
    })
    .await;
    // Times are whole seconds: 2 s later is at least one second later.
    let grace = short.metadata.deletion_grace_period_seconds.unwrap_or(0);
    let deleted_at = short.metadata.deletion_timestamp.unwrap().0.as_second() - grace;
    assert!(
        deleted_at > added.as_second(),
        "deleted at {deleted_at}, the taint was added at {added}"
    );
    let disruption = short
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "DisruptionTarget").cloned())
        .expect("a DisruptionTarget condition");
    assert_eq!(disruption.reason.as_deref(), Some("DeletionByTaintManager"));
    event(
        &client,
        "TaintManagerEviction",
        "Marking for deletion Pod default/short",
    )
    .await;

    // The kubelet comes back: Lease renewed and Ready posted. The taints go,
    // and the pods still there stay.
    let _silent = keep_alive(&client, "silent");
    post_ready(&client, "silent", "True").await;
    common::eventually(WAIT, "the node untainted", || async {
        let node = nodes.get("silent").await.unwrap();
        taint_keys(&node).is_empty().then_some(())
    })
    .await;
    event(
        &client,
        "TaintManagerEviction",
        "Cancelling deletion of Pod default/default",
    )
    .await;
    for name in ["forever", "default", "elsewhere"] {
        let pod = pods.get(name).await.unwrap();
        assert!(
            pod.metadata.deletion_timestamp.is_none(),
            "{name} was deleted"
        );
    }
}

#[tokio::test]
async fn not_ready_nodes_and_custom_no_execute_taints() {
    let cluster = start().await;
    let client = cluster.client.clone();
    register(&client, "a", "True").await;
    register(&client, "b", "True").await;
    let _a = keep_alive(&client, "a");
    let _b = keep_alive(&client, "b");
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // A kubelet that reports NotReady (while heartbeating): not-ready
    // taints, both effects.
    post_ready(&client, "b", "False").await;
    common::eventually(WAIT, "node b tainted not-ready", || async {
        let node = nodes.get("b").await.unwrap();
        let want = [
            "node.kubernetes.io/not-ready:NoExecute",
            "node.kubernetes.io/not-ready:NoSchedule",
        ];
        (taint_keys(&node) == want).then_some(())
    })
    .await;
    post_ready(&client, "b", "True").await;
    common::eventually(WAIT, "node b untainted", || async {
        let node = nodes.get("b").await.unwrap();
        taint_keys(&node).is_empty().then_some(())
    })
    .await;

    // A cordoned node gets the unschedulable taint.
    nodes
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"unschedulable": true}})),
        )
        .await
        .unwrap();
    common::eventually(WAIT, "node b tainted unschedulable", || async {
        let node = nodes.get("b").await.unwrap();
        (taint_keys(&node) == ["node.kubernetes.io/unschedulable:NoSchedule"]).then_some(())
    })
    .await;

    // A NoExecute taint a pod does not tolerate evicts it at once; one it
    // tolerates does not.
    create_pod(&client, "plain", "a", json!(null)).await;
    let dedicated =
        json!({"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoExecute"});
    create_pod(&client, "db", "a", json!([dedicated])).await;
    let taint = json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoExecute", "timeAdded": now()}]}});
    nodes
        .patch("a", &PatchParams::default(), &Patch::Merge(&taint))
        .await
        .unwrap();
    common::eventually(WAIT, "the untolerating pod deleted", || async {
        let pod = pods.get("plain").await.unwrap();
        pod.metadata.deletion_timestamp.is_some().then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let db = pods.get("db").await.unwrap();
    assert!(
        db.metadata.deletion_timestamp.is_none(),
        "the tolerating pod stays"
    );
}

#[tokio::test]
async fn a_whole_cluster_going_silent_is_not_evicted() {
    // Upstream's master disruption mode: when every node is down, the
    // problem is more likely the control plane's network, so nothing is
    // tainted for eviction.
    let cluster = start().await;
    let client = cluster.client.clone();
    register(&client, "only", "True").await;
    let nodes: Api<Node> = Api::all(client.clone());
    common::eventually(WAIT, "the node Unknown", || async {
        let node = nodes.get("only").await.unwrap();
        let ready = node
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready")?
            .status
            .clone();
        (ready == "Unknown").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let node = nodes.get("only").await.unwrap();
    // Only the scheduling taint: no NoExecute.
    assert_eq!(
        taint_keys(&node),
        ["node.kubernetes.io/unreachable:NoSchedule"]
    );
}
