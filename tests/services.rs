//! End to end: Service addresses and node ports as kubectl 1.33 sees them
//! against the real `tug-apiserver` — `kubectl create service`, upstream's
//! 422 for a taken node port, and the `kubernetes` Service with its
//! Endpoints naming the API server, left alone by the controller manager;
//! the range and address flags.

use std::time::Duration;

use tugboat_e2e::{free_port, ApiServer, Component};

const V: &str = "1.33";

/// The whitespace-separated cells of the row starting with `name`.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
}

#[test]
fn kubectl_creates_services_and_sees_the_kubernetes_service() {
    let server = ApiServer::start();
    let port = server.port.to_string();

    let out = server.kubectl_ok(
        V,
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
    );
    assert_eq!(out.trim(), "service/web created");
    let out = server.kubectl_ok(
        V,
        &[
            "create",
            "service",
            "nodeport",
            "np",
            "--tcp=80:8080",
            "--node-port=30080",
        ],
    );
    assert_eq!(out.trim(), "service/np created");

    let again = server.kubectl(
        V,
        &[
            "create",
            "service",
            "nodeport",
            "np2",
            "--tcp=80:8080",
            "--node-port=30080",
        ],
    );
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        stderr.trim(),
        "error: failed to create NodePort service: Service \"np2\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    );

    let outside = server.kubectl(
        V,
        &[
            "create",
            "service",
            "clusterip",
            "x",
            "--clusterip=10.0.0.1",
            "--tcp=80",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&outside.stderr).trim(),
        "error: failed to create ClusterIP service: Service \"x\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.0.0.1\"}: failed to allocate IP 10.0.0.1: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"
    );

    let table = server.kubectl_ok(V, &["get", "services", "-o", "wide"]);
    let kubernetes = row(&table, "kubernetes");
    assert_eq!(
        kubernetes[1..5],
        ["ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    );
    assert_eq!(kubernetes.last(), Some(&"<none>"), "no selector");
    let web = row(&table, "web");
    assert_eq!(web[1], "ClusterIP");
    assert!(
        web[2].starts_with("10.9") || web[2].starts_with("10.1"),
        "{}",
        web[2]
    );
    assert_ne!(web[2], "10.96.0.1");
    assert_eq!(web[4], "80/TCP");
    assert_eq!(row(&table, "np")[1..2], ["NodePort"]);
    assert_eq!(row(&table, "np")[4], "80:30080/TCP");

    let endpoints = server.kubectl_ok(V, &["get", "endpoints", "kubernetes"]);
    assert_eq!(
        row(&endpoints, "kubernetes")[1],
        format!("127.0.0.1:{port}")
    );
    let target = server.kubectl_ok(
        V,
        &[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.ports[0].targetPort}",
        ],
    );
    assert_eq!(target, port);
    let slice = server.kubectl_ok(
        V,
        &[
            "get",
            "endpointslices",
            "kubernetes",
            "-o",
            "jsonpath={.endpoints[0].addresses[0]}",
        ],
    );
    assert_eq!(slice, "127.0.0.1");

    // Deleting a Service frees its node port for the next one.
    server.kubectl_ok(V, &["delete", "service", "np"]);
    let out = server.kubectl_ok(
        V,
        &[
            "create",
            "service",
            "nodeport",
            "np2",
            "--tcp=80:8080",
            "--node-port=30080",
        ],
    );
    assert_eq!(out.trim(), "service/np2 created");
}

#[test]
fn the_range_and_advertise_flags_shape_the_kubernetes_service() {
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start_in(
        &dir.path().join("data"),
        free_port(),
        &[
            "--service-cluster-ip-range",
            "10.100.0.0/16",
            "--service-node-port-range",
            "31000-31009",
            "--advertise-address",
            "127.0.0.9",
        ],
    );
    let table = server.kubectl_ok(V, &["get", "svc", "kubernetes", "-o", "wide"]);
    assert_eq!(row(&table, "kubernetes")[2], "10.100.0.1");
    let endpoints = server.kubectl_ok(V, &["get", "endpoints", "kubernetes"]);
    assert_eq!(
        row(&endpoints, "kubernetes")[1],
        format!("127.0.0.9:{}", server.port)
    );
    let refused = server.kubectl(
        V,
        &[
            "create",
            "service",
            "nodeport",
            "np",
            "--tcp=80",
            "--node-port=30080",
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("spec.ports[0].nodePort: Invalid value: 30080: provided port is not in the valid range. The range of valid ports is 31000-31009"),
        "{stderr}"
    );
    let made = server.kubectl_ok(V, &["create", "service", "nodeport", "np", "--tcp=80"]);
    assert_eq!(made.trim(), "service/np created");
    let port = server.kubectl_ok(
        V,
        &[
            "get",
            "svc",
            "np",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ],
    );
    let port: u16 = port.parse().unwrap();
    assert!((31000..=31009).contains(&port), "{port}");
}

#[test]
fn the_endpoint_controllers_leave_the_kubernetes_endpoints_alone() {
    let server = ApiServer::start();
    let health = format!("127.0.0.1:{}", free_port());
    let _controllers = Component::start(
        &server,
        "tug-controller-manager",
        &["--health-address", &health],
    );
    // A Service with a selector shows both controllers at work...
    server.kubectl_ok(V, &["create", "service", "clusterip", "web", "--tcp=80"]);
    server.kubectl_until(
        V,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "name",
        ],
        Duration::from_secs(30),
        "the EndpointSlice controller to serve web",
        |out| !out.trim().is_empty(),
    );
    server.kubectl_until(
        V,
        &["get", "endpoints", "web", "-o", "name"],
        Duration::from_secs(30),
        "the Endpoints controller to serve web",
        |out| !out.trim().is_empty(),
    );
    // ...while the kubernetes Service's objects stay the API server's.
    let slices = server.kubectl_ok(
        V,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=kubernetes",
            "-o",
            "name",
        ],
    );
    assert_eq!(slices.trim(), "endpointslice.discovery.k8s.io/kubernetes");
    let endpoints = server.kubectl_ok(V, &["get", "endpoints", "kubernetes"]);
    assert_eq!(
        row(&endpoints, "kubernetes")[1],
        format!("127.0.0.1:{}", server.port)
    );
}
