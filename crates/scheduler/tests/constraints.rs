//! Each kind of scheduling constraint against an in-process API server:
//! resources, node selectors and affinity, taints, pod anti-affinity and
//! topology spread place pods where kube-scheduler would.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};

use serde_json::{json, Value};
use test_support::TestServer;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An API server, a client to it and a running scheduler.
struct Cluster {
    client: kube::Client,
    stop: oneshot::Sender<()>,
    scheduler: JoinHandle<anyhow::Result<()>>,
    _server: TestServer,
}

impl Cluster {
    /// Starts the server, creates `nodes`, then starts the scheduler.
    async fn start(nodes: Vec<Node>) -> Cluster {
        let server = TestServer::start().await.unwrap();
        let client = server.client().await.unwrap();
        let api: Api<Node> = Api::all(client.clone());
        for n in nodes {
            api.create(&PostParams::default(), &n).await.unwrap();
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let scheduler = tokio::spawn(tugboat_scheduler::run::run(
            client.clone(),
            Default::default(),
            async {
                let _ = stopped.await;
            },
        ));
        Cluster {
            client,
            stop,
            scheduler,
            _server: server,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn add_node(&self, n: Node) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes.create(&PostParams::default(), &n).await.unwrap();
    }

    async fn create(&self, p: Pod) {
        self.pods()
            .create(&PostParams::default(), &p)
            .await
            .unwrap();
    }

    /// The node `name` gets bound to, waiting for it.
    async fn bound(&self, name: &str) -> String {
        let pods = self.pods();
        eventually(&format!("{name} to be bound"), async || {
            pods.get(name).await.ok()?.spec?.node_name
        })
        .await
    }

    /// The message of `name`'s FailedScheduling event, waiting for it; the
    /// pod must still be unbound once it is reported.
    async fn unschedulable(&self, name: &str) -> String {
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let message = eventually(
            &format!("a FailedScheduling event for {name}"),
            async || {
                let list = events
                    .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
                    .await
                    .ok()?;
                list.items
                    .into_iter()
                    .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
                    .and_then(|e| e.message)
            },
        )
        .await;
        let node = self.pods().get(name).await.unwrap().spec.unwrap().node_name;
        assert_eq!(node, None, "{name} was reported unschedulable but is bound");
        message
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.scheduler.await.unwrap().unwrap();
    }
}

/// A Ready node with the given cpu allocatable, labels (besides its
/// hostname) and taints.
fn node(name: &str, cpu: &str, labels: Value, taints: Value) -> Node {
    let mut all = json!({"kubernetes.io/hostname": name});
    all.as_object_mut()
        .unwrap()
        .extend(labels.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": all},
        "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                   "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap()
}

/// A pod requesting `cpu`, labelled `labels`, with `extra` merged into its spec.
fn pod(name: &str, cpu: &str, labels: Value, extra: Value) -> Pod {
    let mut spec = json!({
        "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}],
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))
    .unwrap()
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..100 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// How many of `names` are bound to each node, waiting for all of them.
async fn placement(cluster: &Cluster, names: &[String]) -> BTreeMap<String, usize> {
    let mut per_node = BTreeMap::new();
    for name in names {
        *per_node.entry(cluster.bound(name).await).or_insert(0) += 1;
    }
    per_node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_land_only_on_nodes_with_enough_free_cpu_and_one_too_big_for_all_stays_unbound() {
    let cluster = Cluster::start(vec![
        node("small", "1", json!({}), json!([])),
        node("medium", "2", json!({}), json!([])),
        node("large", "4", json!({}), json!([])),
    ])
    .await;

    // Only the large node has 3 cpu free.
    cluster
        .create(pod("three", "3", json!({}), json!({})))
        .await;
    assert_eq!(cluster.bound("three").await, "large");

    // Now the large node has 1 cpu free, the small one 1: only medium fits.
    cluster
        .create(pod("one-and-a-half", "1500m", json!({}), json!({})))
        .await;
    assert_eq!(cluster.bound("one-and-a-half").await, "medium");

    // 1 cpu free on small and large, 500m on medium: nowhere fits 1100m,
    // and nothing ever could fit 5 cpu.
    cluster
        .create(pod("eleven-hundred", "1100m", json!({}), json!({})))
        .await;
    cluster.create(pod("five", "5", json!({}), json!({}))).await;
    // Preemption could only help where the request is within allocatable
    // (upstream's wording; there are no lower-priority victims anyway).
    assert_eq!(
        cluster.unschedulable("eleven-hundred").await,
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: \
         1 Preemption is not helpful for scheduling, \
         2 No preemption victims found for incoming pod."
    );
    assert_eq!(
        cluster.unschedulable("five").await,
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: \
         3 Preemption is not helpful for scheduling."
    );

    // A pod that fits in what is left is still placed.
    cluster.create(pod("one", "1", json!({}), json!({}))).await;
    let one = cluster.bound("one").await;
    assert!(one == "small" || one == "large", "bound to {one}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_and_required_node_affinity_place_pods_only_on_matching_nodes() {
    let zone = "topology.kubernetes.io/zone";
    let cluster = Cluster::start(vec![
        node(
            "a",
            "4",
            json!({zone: "zone-a", "disktype": "ssd"}),
            json!([]),
        ),
        node("b", "4", json!({zone: "zone-b"}), json!([])),
        node("c", "4", json!({zone: "zone-c"}), json!([])),
    ])
    .await;

    let selected: Vec<String> = (0..3).map(|i| format!("ssd-{i}")).collect();
    for name in &selected {
        let extra = json!({"nodeSelector": {"disktype": "ssd"}});
        cluster.create(pod(name, "100m", json!({}), extra)).await;
    }
    let required: Vec<String> = (0..3).map(|i| format!("zone-{i}")).collect();
    for name in &required {
        let extra = json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [
                    {"key": zone, "operator": "In", "values": ["zone-b", "elsewhere"]},
                ]},
            ]},
        }}});
        cluster.create(pod(name, "100m", json!({}), extra)).await;
    }
    assert_eq!(
        placement(&cluster, &selected).await,
        BTreeMap::from([("a".to_string(), 3)])
    );
    assert_eq!(
        placement(&cluster, &required).await,
        BTreeMap::from([("b".to_string(), 3)])
    );

    // A selector no node matches leaves the pod unbound.
    let extra = json!({"nodeSelector": {"disktype": "nvme"}});
    cluster
        .create(pod("no-match", "100m", json!({}), extra))
        .await;
    assert_eq!(
        cluster.unschedulable("no-match").await,
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_node_affinity_picks_the_preferred_node_when_both_fit() {
    let zone = "topology.kubernetes.io/zone";
    let cluster = Cluster::start(vec![
        node("busy", "4", json!({zone: "zone-a"}), json!([])),
        node("idle", "4", json!({zone: "zone-b"}), json!([])),
    ])
    .await;
    // The preferred node is the more loaded one, so resource scoring alone
    // would pick the other.
    let mut load = pod("load", "1", json!({}), json!({}));
    load.spec.as_mut().unwrap().node_name = Some("busy".into());
    cluster.create(load).await;
    cluster
        .create(pod("spread-first", "100m", json!({}), json!({})))
        .await;
    assert_eq!(cluster.bound("spread-first").await, "idle");

    let extra = json!({"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchExpressions": [
                {"key": zone, "operator": "In", "values": ["zone-a"]},
            ]}},
        ],
    }}});
    cluster
        .create(pod("prefers-a", "100m", json!({}), extra))
        .await;
    assert_eq!(cluster.bound("prefers-a").await, "busy");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_schedule_taint_repels_pods_without_a_toleration_and_admits_those_with_one() {
    let taint = json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
    let cluster = Cluster::start(vec![node("gpu", "4", json!({}), taint)]).await;

    cluster
        .create(pod("intolerant", "100m", json!({}), json!({})))
        .await;
    let equal = json!({"tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
    ]});
    cluster
        .create(pod("tolerates-equal", "100m", json!({}), equal))
        .await;
    let exists = json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]});
    cluster
        .create(pod("tolerates-exists", "100m", json!({}), exists))
        .await;
    let other = json!({"tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "tpu", "effect": "NoSchedule"},
    ]});
    cluster
        .create(pod("tolerates-other", "100m", json!({}), other))
        .await;

    assert_eq!(cluster.bound("tolerates-equal").await, "gpu");
    assert_eq!(cluster.bound("tolerates-exists").await, "gpu");
    for name in ["intolerant", "tolerates-other"] {
        assert_eq!(
            cluster.unschedulable(name).await,
            "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}. \
             preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
            "{name}"
        );
    }

    // An untainted node arriving lets the repelled pods in, there only.
    cluster
        .add_node(node("plain", "4", json!({}), json!([])))
        .await;
    assert_eq!(cluster.bound("intolerant").await, "plain");
    assert_eq!(cluster.bound("tolerates-other").await, "plain");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_pod_anti_affinity_spreads_replicas_one_per_node_and_a_fourth_stays_unbound() {
    let cluster = Cluster::start(vec![
        node("n1", "4", json!({}), json!([])),
        node("n2", "4", json!({}), json!([])),
        node("n3", "4", json!({}), json!([])),
    ])
    .await;
    let anti = json!({"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "web"}},
            "topologyKey": "kubernetes.io/hostname",
        }],
    }}});
    // Created together: the scheduler must see its own assumed pods.
    let replicas: Vec<String> = (0..3).map(|i| format!("web-{i}")).collect();
    for name in &replicas {
        let p = pod(name, "100m", json!({"app": "web"}), anti.clone());
        cluster.create(p).await;
    }
    assert_eq!(
        placement(&cluster, &replicas).await,
        BTreeMap::from([
            ("n1".to_string(), 1),
            ("n2".to_string(), 1),
            ("n3".to_string(), 1)
        ])
    );

    cluster
        .create(pod("web-3", "100m", json!({"app": "web"}), anti))
        .await;
    let message = cluster.unschedulable("web-3").await;
    assert!(
        message.contains("didn't match pod anti-affinity rules"),
        "{message}"
    );
    // Equal-priority replicas are no victims (upstream's wording).
    assert_eq!(
        message,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
    // The replicas' anti-affinity does not repel a pod of another app.
    cluster
        .create(pod("other", "100m", json!({"app": "db"}), json!({})))
        .await;
    cluster.bound("other").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_spread_with_max_skew_one_puts_two_of_four_pods_in_each_zone() {
    let zone = "topology.kubernetes.io/zone";
    let cluster = Cluster::start(vec![
        // Zone a's nodes are far bigger: resource scoring alone would put
        // every pod there, so only the constraint's filter can balance.
        node("a1", "32", json!({zone: "a"}), json!([])),
        node("a2", "32", json!({zone: "a"}), json!([])),
        node("b1", "4", json!({zone: "b"}), json!([])),
        node("b2", "4", json!({zone: "b"}), json!([])),
    ])
    .await;
    let spread = json!({"topologySpreadConstraints": [{
        "maxSkew": 1,
        "topologyKey": zone,
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "spread"}},
    }]});
    let names: Vec<String> = (0..4).map(|i| format!("spread-{i}")).collect();
    for name in &names {
        let p = pod(name, "1", json!({"app": "spread"}), spread.clone());
        cluster.create(p).await;
    }
    let per_node = placement(&cluster, &names).await;
    let mut per_zone = BTreeMap::new();
    for (node, count) in &per_node {
        *per_zone.entry(&node[..1]).or_insert(0) += count;
    }
    assert_eq!(
        per_zone,
        BTreeMap::from([("a", 2), ("b", 2)]),
        "per node: {per_node:?}"
    );
    cluster.shutdown().await;
}
