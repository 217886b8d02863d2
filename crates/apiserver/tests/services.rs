//! Service cluster IPs and node ports through a real client: allocation
//! under concurrency, release on delete and type change, upstream's 422
//! messages, dry runs, restarts on sled, and the `kubernetes` Service.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use test_support::TestServer;

fn service(name: &str, spec: Value) -> Service {
    let mut spec = spec;
    if spec.get("ports").is_none() {
        spec["ports"] = json!([{"port": 80}]);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn cluster_ip(svc: &Service) -> String {
    svc.spec
        .as_ref()
        .unwrap()
        .cluster_ip
        .clone()
        .unwrap_or_default()
}

fn node_ports(svc: &Service) -> Vec<i32> {
    let spec = svc.spec.as_ref().unwrap();
    spec.ports
        .iter()
        .flatten()
        .filter_map(|p| p.node_port)
        .collect()
}

/// The message of a failed request, with its HTTP code.
fn api_error(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn services(server: &TestServer) -> Api<Service> {
    Api::namespaced(server.client().await.unwrap(), "default")
}

fn in_default_range(ip: &str) -> bool {
    let ip: Ipv4Addr = ip.parse().unwrap();
    let [a, b, ..] = ip.octets();
    a == 10 && (96..112).contains(&b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_creates_get_distinct_addresses_and_node_ports() {
    let storage = Arc::new(storage::memory::MemoryStorage::new());
    let server = TestServer::start_with(storage.clone()).await.unwrap();
    let api = services(&server).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let spec = if i % 2 == 0 {
                json!({})
            } else {
                json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]})
            };
            api.create(&PostParams::default(), &service(&format!("s{i}"), spec))
                .await
        }));
    }
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for task in tasks {
        let created = task.await.unwrap().unwrap();
        let ip = cluster_ip(&created);
        assert!(in_default_range(&ip), "{ip}");
        assert_ne!(ip, "10.96.0.1", "the kubernetes Service's address");
        assert!(ips.insert(ip.clone()), "{ip} handed out twice");
        for port in node_ports(&created) {
            assert!((30000..=32767).contains(&port), "{port}");
            assert!(ports.insert(port), "node port {port} handed out twice");
        }
    }
    assert_eq!((ips.len(), ports.len()), (200, 200));
    // What is stored agrees: one claim per value (plus the kubernetes one).
    let claims = storage::Storage::list(
        storage.as_ref(),
        "/registry/tugboat.io/serviceips/",
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(claims.items.len(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_address_or_port_is_refused_until_its_service_is_deleted() {
    let server = TestServer::start().await.unwrap();
    let api = services(&server).await;
    let spec = json!({"type": "NodePort", "clusterIP": "10.96.1.10", "ports": [{"port": 80, "nodePort": 30080}]});
    let first = api
        .create(&PostParams::default(), &service("first", spec))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&first), "10.96.1.10");
    assert_eq!(
        first.spec.as_ref().unwrap().cluster_ips,
        Some(vec!["10.96.1.10".to_string()])
    );

    let same_ip = service("second", json!({"clusterIP": "10.96.1.10"}));
    let (code, message) = api_error(
        api.create(&PostParams::default(), &same_ip)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert_eq!(
        message,
        "Service \"second\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.1.10\"}: failed to allocate IP 10.96.1.10: provided IP is already allocated"
    );
    let same_port = service(
        "second",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
    );
    let (code, message) = api_error(
        api.create(&PostParams::default(), &same_port)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert_eq!(
        message,
        "Service \"second\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    );

    api.delete("first", &DeleteParams::default()).await.unwrap();
    let both = service(
        "second",
        json!({"type": "NodePort", "clusterIP": "10.96.1.10", "ports": [{"port": 80, "nodePort": 30080}]}),
    );
    let second = api.create(&PostParams::default(), &both).await.unwrap();
    assert_eq!(cluster_ip(&second), "10.96.1.10");
    assert_eq!(node_ports(&second), vec![30080]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_values_are_refused_and_failed_creates_hold_nothing() {
    let server = TestServer::start().await.unwrap();
    let api = services(&server).await;
    let outside = service("a", json!({"clusterIP": "10.0.0.1"}));
    let (code, message) = api_error(
        api.create(&PostParams::default(), &outside)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    assert_eq!(
        message,
        "Service \"a\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.0.0.1\"}: failed to allocate IP 10.0.0.1: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"
    );
    // A valid address with a bad node port: the create fails whole.
    let half = service(
        "a",
        json!({"type": "NodePort", "clusterIP": "10.96.2.2", "ports": [{"port": 80, "nodePort": 29999}]}),
    );
    let (code, message) = api_error(api.create(&PostParams::default(), &half).await.unwrap_err());
    assert_eq!(code, 422);
    assert_eq!(
        message,
        "Service \"a\" is invalid: spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    // A name that exists: 409, and the requested address stays free.
    api.create(&PostParams::default(), &service("taken", json!({})))
        .await
        .unwrap();
    let clash = service("taken", json!({"clusterIP": "10.96.2.2"}));
    let (code, _) = api_error(
        api.create(&PostParams::default(), &clash)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 409);
    let ok = api
        .create(
            &PostParams::default(),
            &service("b", json!({"clusterIP": "10.96.2.2"})),
        )
        .await
        .unwrap();
    assert_eq!(cluster_ip(&ok), "10.96.2.2");

    // Validation problems are 422 too, with upstream's wording.
    let bad = service("c", json!({"clusterIP": "not-an-ip"}));
    let (code, message) = api_error(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(message.contains("must be a valid IP address"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_changes_take_and_release_node_ports_and_the_address_is_immutable() {
    let server = TestServer::start().await.unwrap();
    let api = services(&server).await;
    let created = api
        .create(&PostParams::default(), &service("web", json!({})))
        .await
        .unwrap();
    let ip = cluster_ip(&created);
    let spec = &created.spec.as_ref().unwrap();
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
    assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
    assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
    assert_eq!(spec.session_affinity.as_deref(), Some("None"));
    assert!(node_ports(&created).is_empty());

    let patch = |body: Value| Patch::Merge(body);
    let node_port = api
        .patch(
            "web",
            &PatchParams::default(),
            &patch(json!({"spec": {"type": "NodePort"}})),
        )
        .await
        .unwrap();
    assert_eq!(cluster_ip(&node_port), ip, "the address stays");
    let ports = node_ports(&node_port);
    assert_eq!(ports.len(), 1);
    assert_eq!(
        node_port
            .spec
            .as_ref()
            .unwrap()
            .external_traffic_policy
            .as_deref(),
        Some("Cluster")
    );

    let back = api
        .patch(
            "web",
            &PatchParams::default(),
            &patch(json!({"spec": {"type": "ClusterIP"}})),
        )
        .await
        .unwrap();
    assert!(node_ports(&back).is_empty());
    // The released port is free for another Service.
    let reuse = service(
        "other",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": ports[0]}]}),
    );
    api.create(&PostParams::default(), &reuse).await.unwrap();

    let moved = api
        .patch(
            "web",
            &PatchParams::default(),
            &patch(json!({"spec": {"clusterIP": "10.96.3.3", "clusterIPs": ["10.96.3.3"]}})),
        )
        .await
        .unwrap_err();
    let (code, message) = api_error(moved);
    assert_eq!(code, 422);
    assert!(
        message
            .contains("spec.clusterIPs[0]: Invalid value: \"10.96.3.3\": may not change once set"),
        "{message}"
    );

    // To ExternalName the address goes (and is free again); back, a new one.
    let external = api
        .patch(
            "web",
            &PatchParams::default(),
            &patch(json!({"spec": {"type": "ExternalName", "externalName": "example.com"}})),
        )
        .await
        .unwrap();
    assert_eq!(cluster_ip(&external), "");
    let reuse_ip = service("takes-ip", json!({"clusterIP": ip}));
    api.create(&PostParams::default(), &reuse_ip).await.unwrap();
    let again = api
        .patch(
            "web",
            &PatchParams::default(),
            &patch(json!({"spec": {"type": "ClusterIP", "externalName": null}})),
        )
        .await
        .unwrap();
    assert!(in_default_range(&cluster_ip(&again)));
    assert_ne!(cluster_ip(&again), ip);

    // A PUT that leaves the allocated values out keeps them.
    let mut replaced = again.clone();
    replaced.spec.as_mut().unwrap().cluster_ip = None;
    replaced.spec.as_mut().unwrap().cluster_ips = None;
    let kept = api
        .replace("web", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(cluster_ip(&kept), cluster_ip(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_values_but_holds_none() {
    let server = TestServer::start().await.unwrap();
    let api = services(&server).await;
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let spec = json!({"type": "NodePort", "clusterIP": "10.96.4.4", "ports": [{"port": 80, "nodePort": 30444}]});
    let shown = api.create(&dry, &service("d", spec.clone())).await.unwrap();
    assert_eq!(cluster_ip(&shown), "10.96.4.4");
    assert_eq!(node_ports(&shown), vec![30444]);
    let dynamic = api
        .create(&dry, &service("e", json!({"type": "NodePort"})))
        .await
        .unwrap();
    assert!(in_default_range(&cluster_ip(&dynamic)));
    assert_eq!(node_ports(&dynamic).len(), 1);
    // Nothing was held: the real create gets the same values.
    let real = api
        .create(&PostParams::default(), &service("d", spec.clone()))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&real), "10.96.4.4");
    // ...and now a dry run for them is refused like a real create.
    let (code, _) = api_error(api.create(&dry, &service("f", spec)).await.unwrap_err());
    assert_eq!(code, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_ranges_are_used_and_a_full_range_says_so() {
    let storage = Arc::new(storage::memory::MemoryStorage::new());
    let server = TestServer::start_configured(storage, |c| {
        c.service_ranges = tugboat_apiserver::alloc::ServiceRanges {
            cluster_ip: "10.0.0.0/24".parse().unwrap(),
            node_port: "30000-30004".parse().unwrap(),
        };
    })
    .await
    .unwrap();
    let api = services(&server).await;
    let kubernetes = api.get("kubernetes").await.unwrap();
    assert_eq!(cluster_ip(&kubernetes), "10.0.0.1");
    let mut ports = HashSet::new();
    for i in 0..5 {
        let created = api
            .create(
                &PostParams::default(),
                &service(&format!("n{i}"), json!({"type": "NodePort"})),
            )
            .await
            .unwrap();
        assert!(cluster_ip(&created).starts_with("10.0.0."));
        ports.extend(node_ports(&created));
    }
    assert_eq!(ports, (30000..=30004).collect());
    let full = api
        .create(
            &PostParams::default(),
            &service("n5", json!({"type": "NodePort"})),
        )
        .await
        .unwrap_err();
    let (code, message) = api_error(full);
    assert_eq!(code, 500);
    assert!(
        message.contains("failed to allocate a nodePort: range is full"),
        "{message}"
    );
    let outside = service(
        "x",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
    );
    let (_, message) = api_error(
        api.create(&PostParams::default(), &outside)
            .await
            .unwrap_err(),
    );
    assert!(
        message.ends_with("The range of valid ports is 30000-30004"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_service_points_at_the_api_server_and_is_repaired() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let port: i32 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = api.get("kubernetes").await.unwrap();
    assert_eq!(cluster_ip(&svc), "10.96.0.1");
    let spec = svc.spec.as_ref().unwrap();
    assert_eq!(spec.selector, None);
    let https = &spec.ports.as_ref().unwrap()[0];
    assert_eq!((https.name.as_deref(), https.port), (Some("https"), 443));
    assert_eq!(
        https.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port))
    );
    let labels = svc.metadata.labels.clone().unwrap();
    assert_eq!(labels["component"], "apiserver");
    assert_eq!(labels["provider"], "kubernetes");

    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = endpoints.get("kubernetes").await.unwrap();
    let subset = &ep.subsets.as_ref().unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "127.0.0.1");
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, port);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = slices.get("kubernetes").await.unwrap();
    assert_eq!(slice.endpoints[0].addresses, vec!["127.0.0.1".to_string()]);

    // Someone deletes the Endpoints: the API server puts them back.
    endpoints
        .delete("kubernetes", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if endpoints.get_opt("kubernetes").await.unwrap().is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not recreated");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_survive_a_restart_on_sled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut held = HashSet::new();
    {
        let store = storage::sled::SledStorage::open(&path, Default::default()).unwrap();
        let server = TestServer::start_with(store.clone()).await.unwrap();
        let api = services(&server).await;
        for i in 0..20 {
            let created = api
                .create(
                    &PostParams::default(),
                    &service(&format!("s{i}"), json!({"type": "NodePort"})),
                )
                .await
                .unwrap();
            held.insert(cluster_ip(&created));
            held.extend(node_ports(&created).iter().map(i32::to_string));
        }
        drop(api);
        drop(server);
        tokio::time::sleep(Duration::from_millis(200)).await;
        store.close().await.unwrap();
    }
    let store = storage::sled::SledStorage::open(&path, Default::default()).unwrap();
    let server = TestServer::start_with(store.clone()).await.unwrap();
    let api = services(&server).await;
    let s0 = api.get("s0").await.unwrap();
    let taken = service("again", json!({"clusterIP": cluster_ip(&s0)}));
    let (code, _) = api_error(
        api.create(&PostParams::default(), &taken)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422, "a held address stays held after the restart");
    for i in 0..20 {
        let created = api
            .create(
                &PostParams::default(),
                &service(&format!("t{i}"), json!({"type": "NodePort"})),
            )
            .await
            .unwrap();
        assert!(
            held.insert(cluster_ip(&created)),
            "duplicate address after restart"
        );
        for port in node_ports(&created) {
            assert!(
                held.insert(port.to_string()),
                "duplicate port after restart"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_load_balancer_gets_a_health_check_port_until_it_goes_cluster_wide() {
    let server = TestServer::start().await.unwrap();
    let api = services(&server).await;
    let spec = json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"});
    let created = api
        .create(&PostParams::default(), &service("lb", spec))
        .await
        .unwrap();
    let health = created
        .spec
        .as_ref()
        .unwrap()
        .health_check_node_port
        .unwrap();
    let ports = node_ports(&created);
    assert_eq!(ports.len(), 1);
    assert!((30000..=32767).contains(&health));
    assert_ne!(ports[0], health);

    let cluster_wide = api
        .patch(
            "lb",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"externalTrafficPolicy": "Cluster"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        cluster_wide.spec.as_ref().unwrap().health_check_node_port,
        None
    );
    assert_eq!(
        node_ports(&cluster_wide),
        ports,
        "the service port keeps its node port"
    );
    // The health-check port was released.
    let reuse = service(
        "reuse",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": health}]}),
    );
    api.create(&PostParams::default(), &reuse).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_adopts_services_stored_without_claims_and_drops_orphan_claims() {
    use storage::Storage;
    let store = Arc::new(storage::memory::MemoryStorage::new());
    // Data from before claims existed: a Service holding an address and a
    // node port, and a claim whose Service is long gone.
    let legacy = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "old", "namespace": "default", "uid": "u-old"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"],
                 "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30555}]},
    });
    store
        .create(
            "/registry/core/services/default/old",
            serde_json::to_vec(&legacy).unwrap().into(),
        )
        .await
        .unwrap();
    let orphan = json!({"namespace": "default", "name": "gone", "uid": "u-gone"});
    store
        .create(
            "/registry/tugboat.io/serviceips/10.96.6.6",
            serde_json::to_vec(&orphan).unwrap().into(),
        )
        .await
        .unwrap();

    let server = TestServer::start_with(store.clone()).await.unwrap();
    let api = services(&server).await;
    let same_ip = service("new", json!({"clusterIP": "10.96.5.5"}));
    let (code, _) = api_error(
        api.create(&PostParams::default(), &same_ip)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422, "the stored Service's address is held");
    let same_port = service(
        "new",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30555}]}),
    );
    let (code, _) = api_error(
        api.create(&PostParams::default(), &same_port)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422, "the stored Service's node port is held");
    let freed = service("new", json!({"clusterIP": "10.96.6.6"}));
    api.create(&PostParams::default(), &freed).await.unwrap();
    // Deleting the adopted Service releases what it held.
    api.delete("old", &DeleteParams::default()).await.unwrap();
    api.create(
        &PostParams::default(),
        &service("again", json!({"clusterIP": "10.96.5.5"})),
    )
    .await
    .unwrap();
}
