//! The Endpoints controller against an in-process API server: this test
//! plays the kubelet, giving pods their IPs and readiness through
//! `pods/status`, and checks the Endpoints a kubectl user would see.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

fn from<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("a valid object")
}

/// A Service `name` selecting `app=<app>` with one port `http` (80 →
/// the pods' port named `http`).
fn service(name: &str, app: &str) -> Service {
    from(json!({
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {
            "selector": {"app": app},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]
        }
    }))
}

/// A pod labelled `app=<app>` on node-a with container ports (name, number).
fn pod(name: &str, app: &str, ports: &[(&str, i32)]) -> Pod {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p)| json!({"name": n, "containerPort": p}))
        .collect();
    from(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "nodeName": "node-a",
            "containers": [{"name": "app", "image": "nginx", "ports": ports}]
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

/// (ready IPs, not-ready IPs, ports as "name:port/protocol") over all
/// subsets, sorted.
type Summary = (Vec<String>, Vec<String>, Vec<String>);

fn summary(endpoints: &Endpoints) -> Summary {
    let (mut ready, mut not_ready, mut ports) = (Vec::new(), Vec::new(), Vec::new());
    for subset in endpoints.subsets.iter().flatten() {
        ready.extend(subset.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| a.ip.clone()),
        );
        for p in subset.ports.iter().flatten() {
            let port = format!(
                "{}:{}/{}",
                p.name.as_deref().unwrap_or(""),
                p.port,
                p.protocol.as_deref().unwrap_or("")
            );
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
    }
    ready.sort();
    not_ready.sort();
    ports.sort();
    (ready, not_ready, ports)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Wait until the Endpoints `name` summarise as `want`.
async fn wait_for(api: &Api<Endpoints>, name: &str, want: Summary, what: &str) -> Endpoints {
    common::eventually(WAIT, what, || async {
        api.get_opt(name)
            .await
            .unwrap()
            .filter(|e| summary(e) == want)
    })
    .await
}

#[tokio::test]
async fn endpoints_list_ready_and_not_ready_pods_and_follow_their_changes() {
    let cluster = common::start(&["endpoint"]).await;
    let client = cluster.client.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");

    services
        .create(&PostParams::default(), &service("web", "web"))
        .await
        .unwrap();
    run_pod(
        &pods,
        pod("web-1", "web", &[("http", 8080)]),
        "10.1.0.1",
        true,
    )
    .await;
    run_pod(
        &pods,
        pod("web-2", "web", &[("http", 8080)]),
        "10.1.0.2",
        true,
    )
    .await;
    // No port named http: not an endpoint of this port.
    run_pod(
        &pods,
        pod("web-3", "web", &[("grpc", 9090)]),
        "10.1.0.3",
        true,
    )
    .await;
    // Not selected.
    run_pod(
        &pods,
        pod("db-1", "db", &[("http", 8080)]),
        "10.1.0.4",
        true,
    )
    .await;
    // Selected but without an IP yet (not started).
    pods.create(
        &PostParams::default(),
        &pod("web-4", "web", &[("http", 8080)]),
    )
    .await
    .unwrap();

    let ep = wait_for(
        &endpoints,
        "web",
        (
            strings(&["10.1.0.1", "10.1.0.2"]),
            vec![],
            strings(&["http:8080/TCP"]),
        ),
        "both ready pods in the Endpoints",
    )
    .await;
    let labels = ep.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    assert_eq!(
        labels
            .get("endpoints.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpoint-controller")
    );
    let annotations = ep.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations.contains_key("endpoints.kubernetes.io/last-change-trigger-time"));
    let address = &ep.subsets.as_ref().unwrap()[0].addresses.as_ref().unwrap()[0];
    assert_eq!(address.node_name.as_deref(), Some("node-a"));
    let target = address.target_ref.as_ref().unwrap();
    assert_eq!(
        (target.kind.as_deref(), target.name.as_deref()),
        (Some("Pod"), Some("web-1"))
    );

    // A sync that changes nothing writes nothing (a Service annotation
    // requeues the Service).
    let settled = ep.metadata.resource_version.clone();
    let note = json!({"metadata": {"annotations": {"note": "requeue me"}}});
    services
        .patch("web", &PatchParams::default(), &Patch::Merge(&note))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now = endpoints.get("web").await.unwrap();
    assert_eq!(now.metadata.resource_version, settled);

    // Readiness lost: the address moves to notReadyAddresses.
    set_status(&pods, "web-2", "10.1.0.2", false).await;
    wait_for(
        &endpoints,
        "web",
        (
            strings(&["10.1.0.1"]),
            strings(&["10.1.0.2"]),
            strings(&["http:8080/TCP"]),
        ),
        "web-2 not ready",
    )
    .await;

    // The pod that was not started gets its IP.
    set_status(&pods, "web-4", "10.1.0.5", true).await;
    wait_for(
        &endpoints,
        "web",
        (
            strings(&["10.1.0.1", "10.1.0.5"]),
            strings(&["10.1.0.2"]),
            strings(&["http:8080/TCP"]),
        ),
        "web-4 ready",
    )
    .await;

    // A terminating pod leaves at once; a deleted one too.
    pods.delete("web-4", &DeleteParams::default())
        .await
        .unwrap();
    pods.delete("web-1", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    wait_for(
        &endpoints,
        "web",
        (vec![], strings(&["10.1.0.2"]), strings(&["http:8080/TCP"])),
        "web-1 and web-4 gone",
    )
    .await;

    // Tampering is repaired.
    let mut tampered = endpoints.get("web").await.unwrap();
    tampered.subsets = Some(vec![from(json!({
        "addresses": [{"ip": "192.0.2.99"}],
        "ports": [{"port": 1}]
    }))]);
    endpoints
        .replace("web", &PostParams::default(), &tampered)
        .await
        .unwrap();
    wait_for(
        &endpoints,
        "web",
        (vec![], strings(&["10.1.0.2"]), strings(&["http:8080/TCP"])),
        "the tampered Endpoints repaired",
    )
    .await;

    // The Service goes, and its Endpoints with it.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually(WAIT, "the Endpoints deleted", || async {
        endpoints
            .get_opt("web")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn publish_not_ready_addresses_lists_every_pod_as_ready() {
    let cluster = common::start(&["endpoint"]).await;
    let client = cluster.client.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");

    let mut svc = service("db", "db");
    svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    services.create(&PostParams::default(), &svc).await.unwrap();
    let mut db0 = pod("db-0", "db", &[("http", 5432)]);
    // A StatefulSet-style pod of this headless Service: it gets a hostname.
    let spec = db0.spec.as_mut().unwrap();
    spec.hostname = Some("db-0".into());
    spec.subdomain = Some("db".into());
    run_pod(&pods, db0, "10.2.0.1", false).await;
    run_pod(
        &pods,
        pod("db-1", "db", &[("http", 5432)]),
        "10.2.0.2",
        true,
    )
    .await;

    let ep = wait_for(
        &endpoints,
        "db",
        (
            strings(&["10.2.0.1", "10.2.0.2"]),
            vec![],
            strings(&["http:5432/TCP"]),
        ),
        "both pods listed as ready",
    )
    .await;
    let addresses = ep.subsets.as_ref().unwrap()[0].addresses.clone().unwrap();
    let hostnames: BTreeMap<String, Option<String>> =
        addresses.into_iter().map(|a| (a.ip, a.hostname)).collect();
    assert_eq!(hostnames["10.2.0.1"].as_deref(), Some("db-0"));
    assert_eq!(hostnames["10.2.0.2"], None);
    let labels = ep.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels
            .get("service.kubernetes.io/headless")
            .map(String::as_str),
        Some("")
    );

    // Even a terminating pod stays listed.
    pods.delete("db-1", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("db-1").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ep = endpoints.get("db").await.unwrap();
    assert_eq!(summary(&ep).0, strings(&["10.2.0.1", "10.2.0.2"]));
}

#[tokio::test]
async fn services_without_a_selector_keep_the_endpoints_their_user_wrote() {
    let cluster = common::start(&["endpoint"]).await;
    let client = cluster.client.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");

    let manual: Service = from(json!({
        "metadata": {"name": "external-db"},
        "spec": {"ports": [{"port": 5432}]}
    }));
    services
        .create(&PostParams::default(), &manual)
        .await
        .unwrap();
    let written: Endpoints = from(json!({
        "metadata": {"name": "external-db"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}]
    }));
    let written = endpoints
        .create(&PostParams::default(), &written)
        .await
        .unwrap();

    // A selector Service next to it is served, which shows the controller
    // has been through both.
    services
        .create(&PostParams::default(), &service("web", "web"))
        .await
        .unwrap();
    run_pod(
        &pods,
        pod("web-1", "web", &[("http", 8080)]),
        "10.3.0.1",
        true,
    )
    .await;
    wait_for(
        &endpoints,
        "web",
        (strings(&["10.3.0.1"]), vec![], strings(&["http:8080/TCP"])),
        "the selector Service's Endpoints",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = endpoints.get("external-db").await.unwrap();
    assert_eq!(
        now.metadata.resource_version,
        written.metadata.resource_version
    );
    assert_eq!(summary(&now).0, strings(&["192.0.2.10"]));
}

async fn kubectl(cluster: &common::Cluster, args: &[&str]) -> String {
    let home = cluster.server.kubeconfig.parent().unwrap().to_path_buf();
    let out = tokio::process::Command::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
        .arg("--kubeconfig")
        .arg(&cluster.server.kubeconfig)
        .args(args)
        .env("HOME", home)
        .output()
        .await
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn kubectl_shows_the_endpoints_of_a_service() {
    let cluster = common::start(&["endpoint", "endpointslice"]).await;
    let client = cluster.client.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    nodes
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "node-a"}})),
        )
        .await
        .unwrap();
    services
        .create(&PostParams::default(), &service("web", "web"))
        .await
        .unwrap();
    run_pod(
        &pods,
        pod("web-1", "web", &[("http", 8080)]),
        "10.4.0.1",
        true,
    )
    .await;
    run_pod(
        &pods,
        pod("web-2", "web", &[("http", 8080)]),
        "10.4.0.2",
        true,
    )
    .await;
    wait_for(
        &endpoints,
        "web",
        (
            strings(&["10.4.0.1", "10.4.0.2"]),
            vec![],
            strings(&["http:8080/TCP"]),
        ),
        "the Endpoints",
    )
    .await;
    let by_service = ListParams::default().labels("kubernetes.io/service-name=web");
    common::eventually(WAIT, "the EndpointSlice", || async {
        let list = slices.list(&by_service).await.unwrap();
        let count: usize = list.items.iter().map(|s| s.endpoints.len()).sum();
        (count == 2).then_some(())
    })
    .await;

    let got = kubectl(&cluster, &["get", "endpoints", "web"]).await;
    let row = got
        .lines()
        .find(|l| l.starts_with("web "))
        .unwrap_or_default();
    assert!(row.contains("10.4.0.1:8080,10.4.0.2:8080"), "{got}");

    let described = kubectl(&cluster, &["describe", "service", "web"]).await;
    let line = described
        .lines()
        .find(|l| l.starts_with("Endpoints:"))
        .unwrap_or_default();
    assert!(
        line.contains("10.4.0.1:8080") && line.contains("10.4.0.2:8080"),
        "{described}"
    );

    let got = kubectl(
        &cluster,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
    )
    .await;
    assert!(
        got.contains("IPv4") && got.contains("10.4.0.1,10.4.0.2"),
        "{got}"
    );
}
