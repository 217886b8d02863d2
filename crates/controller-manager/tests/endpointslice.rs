//! The EndpointSlice controller against an in-process API server: this
//! test plays the kubelet, giving pods their IPs and readiness through
//! `pods/status`, and checks the slices a kubectl user would see.

mod common;

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn from<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("a valid object")
}

fn service(name: &str) -> Service {
    from(json!({
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]
        }
    }))
}

/// A pod of `app` on `node` serving its port `http` on 8080.
fn pod(name: &str, app: &str, node: &str) -> Pod {
    from(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "app",
                "image": "nginx",
                "ports": [{"name": "http", "containerPort": 8080}]
            }]
        }
    }))
}

/// Play the kubelet: the pod runs at `ip`, ready or not.
async fn set_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap();
    let status = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [{
            "type": "Ready",
            "status": if ready { "True" } else { "False" },
            "lastTransitionTime": now.to_string()
        }]
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn run_pod(pods: &Api<Pod>, pod: Pod, ip: &str, ready: bool) {
    let name = pod.metadata.name.clone().unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    set_status(pods, &name, ip, ready).await;
}

async fn add_node(client: &kube::Client, name: &str, zone: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = from(json!({
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}
    }));
    nodes.create(&PostParams::default(), &node).await.unwrap();
}

/// The slices of Service `name`.
async fn slices_of(api: &Api<EndpointSlice>, name: &str) -> Vec<EndpointSlice> {
    let selector = format!("kubernetes.io/service-name={name}");
    api.list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
}

/// The endpoint of pod `name` in any slice.
fn endpoint_of<'a>(slices: &'a [EndpointSlice], name: &str) -> Option<&'a Endpoint> {
    slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .find(|e| e.target_ref.as_ref().and_then(|t| t.name.as_deref()) == Some(name))
}

/// (ready, serving, terminating) of an endpoint.
fn conditions(e: &Endpoint) -> (bool, bool, bool) {
    let c = e.conditions.clone().unwrap_or_default();
    (
        c.ready.unwrap_or(false),
        c.serving.unwrap_or(false),
        c.terminating.unwrap_or(false),
    )
}

/// Wait until pod `name`'s endpoint has `want` conditions (`None`: is gone).
async fn wait_endpoint(
    api: &Api<EndpointSlice>,
    name: &str,
    want: Option<(bool, bool, bool)>,
    what: &str,
) {
    common::eventually(WAIT, what, || async {
        let slices = slices_of(api, "web").await;
        (endpoint_of(&slices, name).map(conditions) == want).then_some(())
    })
    .await
}

#[tokio::test]
async fn slices_carry_conditions_zone_and_follow_the_pod_lifecycle() {
    let cluster = common::start(&["endpointslice"]).await;
    let client = cluster.client.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    add_node(&client, "node-a", "zone-1").await;
    let svc = services
        .create(&PostParams::default(), &service("web"))
        .await
        .unwrap();
    run_pod(&pods, pod("web-1", "web", "node-a"), "10.1.0.1", true).await;
    run_pod(&pods, pod("web-2", "web", "node-a"), "10.1.0.2", true).await;
    // Not scheduled on a node we know (yet).
    run_pod(&pods, pod("web-3", "web", "node-b"), "10.1.0.3", true).await;

    let found = common::eventually(WAIT, "a slice with both pods", || async {
        let list = slices_of(&slices, "web").await;
        (list.len() == 1 && list[0].endpoints.len() == 2).then_some(list)
    })
    .await;
    let slice = &found[0];
    assert!(slice.metadata.name.as_deref().unwrap().starts_with("web-"));
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.clone().unwrap();
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(labels["team"], "a");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Service", "web")
    );
    assert_eq!(Some(&owner.uid), svc.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));
    let port = &slice.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), Some(8080), Some("TCP"))
    );
    let web1 = endpoint_of(&found, "web-1").unwrap();
    assert_eq!(web1.addresses, ["10.1.0.1"]);
    assert_eq!(conditions(web1), (true, true, false));
    assert_eq!(web1.node_name.as_deref(), Some("node-a"));
    assert_eq!(web1.zone.as_deref(), Some("zone-1"));
    assert!(slice
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("endpoints.kubernetes.io/last-change-trigger-time")));

    // The node appears: its pod joins, with the node's zone.
    add_node(&client, "node-b", "zone-2").await;
    wait_endpoint(&slices, "web-3", Some((true, true, false)), "web-3 joined").await;
    let list = slices_of(&slices, "web").await;
    assert_eq!(
        endpoint_of(&list, "web-3").unwrap().zone.as_deref(),
        Some("zone-2")
    );

    // Readiness lost.
    set_status(&pods, "web-2", "10.1.0.2", false).await;
    wait_endpoint(
        &slices,
        "web-2",
        Some((false, false, false)),
        "web-2 not ready",
    )
    .await;

    // Terminating: still listed, not ready, serving while its probe passes.
    pods.delete("web-1", &DeleteParams::default())
        .await
        .unwrap();
    wait_endpoint(
        &slices,
        "web-1",
        Some((false, true, true)),
        "web-1 terminating",
    )
    .await;
    // Gone.
    pods.delete("web-1", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_endpoint(&slices, "web-1", None, "web-1 gone").await;

    // A deleted slice is replaced; an edited one is repaired.
    let current = slices_of(&slices, "web").await;
    let old_name = current[0].metadata.name.clone().unwrap();
    slices
        .delete(&old_name, &DeleteParams::default())
        .await
        .unwrap();
    let replaced = common::eventually(WAIT, "the slice replaced", || async {
        let list = slices_of(&slices, "web").await;
        (list.len() == 1
            && list[0].metadata.name.as_ref() != Some(&old_name)
            && list[0].endpoints.len() == 2)
            .then_some(list)
    })
    .await;
    let mut edited = replaced[0].clone();
    edited.endpoints.clear();
    let name = edited.metadata.name.clone().unwrap();
    slices
        .replace(&name, &PostParams::default(), &edited)
        .await
        .unwrap();
    common::eventually(WAIT, "the edited slice repaired", || async {
        let slice = slices.get(&name).await.unwrap();
        (slice.endpoints.len() == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_hundred_and_fifty_pods_make_two_slices_that_go_with_their_service() {
    let cluster = common::start(&["endpoint", "endpointslice"]).await;
    let client = cluster.client.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");

    add_node(&client, "node-a", "zone-1").await;
    services
        .create(&PostParams::default(), &service("web"))
        .await
        .unwrap();
    join_all((0..150).map(|i| {
        let pods = pods.clone();
        async move {
            let ip = format!("10.5.{}.{}", i / 100, i % 100 + 1);
            run_pod(&pods, pod(&format!("web-{i}"), "web", "node-a"), &ip, true).await;
        }
    }))
    .await;

    let list = common::eventually(WAIT, "150 endpoints in two slices", || async {
        let list = slices_of(&slices, "web").await;
        let total: usize = list.iter().map(|s| s.endpoints.len()).sum();
        (total == 150).then_some(list)
    })
    .await;
    // Two slices of at most 100 (how the 150 split depends on how the pods
    // arrived: as upstream, slices are filled, never rebalanced).
    let sizes: Vec<usize> = list.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n <= 100), "{sizes:?}");
    assert!(list
        .iter()
        .flat_map(|s| &s.endpoints)
        .all(|e| conditions(e) == (true, true, false)));
    let ep = common::eventually(WAIT, "150 addresses in the Endpoints", || async {
        let ep = endpoints.get_opt("web").await.unwrap()?;
        let count: usize = ep
            .subsets
            .iter()
            .flatten()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        (count == 150).then_some(ep)
    })
    .await;
    let annotations = ep.metadata.annotations.unwrap_or_default();
    assert!(!annotations.contains_key("endpoints.kubernetes.io/over-capacity"));

    // One pod's change rewrites one slice only.
    let versions = |list: &[EndpointSlice]| -> Vec<(String, String)> {
        let mut v: Vec<_> = list
            .iter()
            .map(|s| {
                (
                    s.metadata.name.clone().unwrap(),
                    s.metadata.resource_version.clone().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = versions(&slices_of(&slices, "web").await);
    set_status(&pods, "web-42", "10.5.0.43", false).await;
    wait_endpoint(
        &slices,
        "web-42",
        Some((false, false, false)),
        "web-42 not ready",
    )
    .await;
    let after = versions(&slices_of(&slices, "web").await);
    let changed = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert_eq!(changed, 1, "{before:?} → {after:?}");

    // The Service goes: its Endpoints and slices go too.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually(WAIT, "the Endpoints and slices deleted", || async {
        let slices_left = slices_of(&slices, "web").await.len();
        let endpoints_left = endpoints.get_opt("web").await.unwrap().is_some();
        (slices_left == 0 && !endpoints_left).then_some(())
    })
    .await;
}
