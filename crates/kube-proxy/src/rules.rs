//! The pure heart of the proxy: Services and EndpointSlices (and this
//! node's name) in, the service ports a node must serve out, each with the
//! backends traffic goes to. Both backends (nftables and userspace) program
//! exactly this, so what traffic does is decided here and unit-tested here.
//!
//! It follows upstream kube-proxy's reading of the API:
//! - only `ClusterIP`, `NodePort` and `LoadBalancer` Services with an IPv4
//!   `spec.clusterIP` are proxied; headless (`None`) and `ExternalName`
//!   Services are not;
//! - endpoints come from IPv4 slices labelled `kubernetes.io/service-name`;
//!   a service port uses the slice port with the *same name* (the slice's
//!   port number already is the pod's resolved `targetPort`, so named
//!   target ports may map to different numbers in different slices);
//! - an endpoint is used when `conditions.ready` is true or unset; when none
//!   is ready, serving-and-terminating endpoints are used instead (as
//!   upstream does, so connections keep working during a rollout);
//! - `internalTrafficPolicy: Local` keeps only this node's endpoints for
//!   the ClusterIP, `externalTrafficPolicy: Local` for the NodePort (which
//!   then keeps the client's address: no masquerade).
//!
//! Bad input never fails the whole computation: a Service that cannot be
//! proxied is skipped with a warning naming it, so one broken object never
//! breaks every other Service's traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// `sessionAffinityConfig.clientIP.timeoutSeconds` when unset (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;
/// The largest affinity timeout upstream validation accepts (one day).
const MAX_AFFINITY_TIMEOUT_SECONDS: i32 = 86400;

/// A transport protocol a Service port may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The API spelling (`TCP`); unset means TCP as the API defaults it.
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The nftables (and lower-case) name.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One port of one Service: what upstream calls a `ServicePortName`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    /// The port's name; empty for a Service's single unnamed port.
    pub port: String,
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.port.is_empty() {
            write!(f, ":{}", self.port)?;
        }
        write!(f, "/{}", self.protocol.name())
    }
}

/// Where NodePort traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePortRule {
    pub node_port: u16,
    /// Usually the same as the ClusterIP's; only this node's endpoints
    /// under `externalTrafficPolicy: Local`.
    pub endpoints: Vec<SocketAddrV4>,
    /// Source-NAT the traffic (so replies come back through this node);
    /// false under `externalTrafficPolicy: Local`, which keeps client IPs.
    pub masquerade: bool,
}

/// Everything needed to program one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortRule {
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    /// Ready backends, sorted and without duplicates. Empty means traffic
    /// is rejected ("has no endpoints").
    pub endpoints: Vec<SocketAddrV4>,
    /// ClientIP session affinity: the stickiness timeout in seconds.
    pub affinity_timeout: Option<u32>,
    pub node_port: Option<NodePortRule>,
}

/// The computed rules plus what was skipped and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredRules {
    pub ports: BTreeMap<ServicePortName, ServicePortRule>,
    /// One line per Service (or port) that cannot be proxied.
    pub warnings: Vec<String>,
}

/// One endpoint as a slice describes it, reduced to what selection needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    addr: SocketAddrV4,
    ready: bool,
    serving_terminating: bool,
    local: bool,
}

/// Computes the rules for `node_name` from every Service and EndpointSlice.
pub fn desired_rules<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node_name: &str,
) -> DesiredRules {
    // Endpoints by (namespace, service, port name, protocol).
    let mut candidates: BTreeMap<(String, String, String, Protocol), BTreeSet<Candidate>> =
        BTreeMap::new();
    for slice in slices {
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        if slice.address_type != "IPv4" {
            continue;
        }
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        for port in slice.ports.iter().flatten() {
            let (Some(number), Some(protocol)) = (
                port.port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0),
                Protocol::parse(port.protocol.as_deref()),
            ) else {
                continue;
            };
            let key = (
                namespace.clone(),
                service.clone(),
                port.name.clone().unwrap_or_default(),
                protocol,
            );
            let set = candidates.entry(key).or_default();
            for endpoint in &slice.endpoints {
                // Upstream uses an endpoint's first address.
                let Some(ip) = endpoint
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<Ipv4Addr>().ok())
                else {
                    continue;
                };
                let conditions = endpoint.conditions.as_ref();
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                let serving_terminating = conditions
                    .is_some_and(|c| c.serving.unwrap_or(ready) && c.terminating.unwrap_or(false));
                set.insert(Candidate {
                    addr: SocketAddrV4::new(ip, number),
                    ready,
                    serving_terminating,
                    local: endpoint.node_name.as_deref() == Some(node_name),
                });
            }
        }
    }

    let mut out = DesiredRules::default();
    for service in services {
        add_service(service, &candidates, &mut out);
    }
    out
}

type Candidates = BTreeMap<(String, String, String, Protocol), BTreeSet<Candidate>>;

fn add_service(service: &Service, candidates: &Candidates, out: &mut DesiredRules) {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let Some(spec) = &service.spec else {
        return;
    };
    // Names become nftables identifiers: anything but a DNS label could
    // break (or inject into) the script, so such a Service is skipped.
    if !is_label(&namespace) || !is_label(&name) {
        out.warnings.push(format!(
            "service {namespace:?}/{name:?}: namespace and name must be DNS labels, not proxied"
        ));
        return;
    }
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !matches!(kind, "ClusterIP" | "NodePort" | "LoadBalancer") {
        return; // ExternalName: DNS only.
    }
    let cluster_ip = match spec.cluster_ip.as_deref() {
        Some("None") => return, // Headless: DNS only.
        None | Some("") => {
            out.warnings.push(format!(
                "service {namespace}/{name}: no spec.clusterIP yet, not proxied"
            ));
            return;
        }
        Some(ip) => match ip.parse::<Ipv4Addr>() {
            Ok(ip) => ip,
            Err(_) => {
                out.warnings.push(format!(
                    "service {namespace}/{name}: spec.clusterIP {ip:?} is not an IPv4 address, not proxied"
                ));
                return;
            }
        },
    };
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let timeout = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds);
        match timeout {
            Some(t) if (1..=MAX_AFFINITY_TIMEOUT_SECONDS).contains(&t) => t as u32,
            _ => DEFAULT_AFFINITY_TIMEOUT_SECONDS,
        }
    });
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let wants_node_port = kind != "ClusterIP";

    for port in spec.ports.iter().flatten() {
        let port_name = port.name.clone().unwrap_or_default();
        if !port_name.is_empty() && !is_label(&port_name) {
            out.warnings.push(format!(
                "service {namespace}/{name}: port name {port_name:?} is not a valid name, not proxied"
            ));
            continue;
        }
        let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else {
            out.warnings.push(format!(
                "service {namespace}/{name} port {port_name:?}: unsupported protocol {:?}",
                port.protocol.as_deref().unwrap_or_default()
            ));
            continue;
        };
        let Some(number) = u16::try_from(port.port).ok().filter(|p| *p > 0) else {
            out.warnings.push(format!(
                "service {namespace}/{name} port {port_name:?}: invalid port {}",
                port.port
            ));
            continue;
        };
        let all: Vec<Candidate> = candidates
            .get(&(namespace.clone(), name.clone(), port_name.clone(), protocol))
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let endpoints = select(&all, internal_local);
        let node_port = match port.node_port {
            Some(n) if wants_node_port => match u16::try_from(n).ok().filter(|p| *p > 0) {
                Some(node_port) => Some(NodePortRule {
                    node_port,
                    endpoints: select(&all, external_local),
                    masquerade: !external_local,
                }),
                None => {
                    out.warnings.push(format!(
                        "service {namespace}/{name} port {port_name:?}: invalid nodePort {n}"
                    ));
                    None
                }
            },
            _ => None,
        };
        out.ports.insert(
            ServicePortName {
                namespace: namespace.clone(),
                name: name.clone(),
                port: port_name,
                protocol,
            },
            ServicePortRule {
                cluster_ip,
                port: number,
                protocol,
                endpoints,
                affinity_timeout,
                node_port,
            },
        );
    }
}

/// A DNS label (RFC 1123): what namespaces, Service names and port names
/// are made of.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The endpoints traffic may use: the ready ones, else (as upstream) the
/// serving-but-terminating ones; only local ones when `local_only`.
fn select(all: &[Candidate], local_only: bool) -> Vec<SocketAddrV4> {
    let usable = all.iter().filter(|c| !local_only || c.local);
    let ready: BTreeSet<SocketAddrV4> =
        usable.clone().filter(|c| c.ready).map(|c| c.addr).collect();
    let chosen = if ready.is_empty() {
        usable
            .filter(|c| c.serving_terminating)
            .map(|c| c.addr)
            .collect()
    } else {
        ready
    };
    chosen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("a Service")
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).expect("an EndpointSlice")
    }

    fn web(extra: serde_json::Value) -> Service {
        let mut base = json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {
                "clusterIP": "10.96.0.10",
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}]
            }
        });
        merge(&mut base, extra);
        service(base)
    }

    fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
        match (base, extra) {
            (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
                for (k, v) in e {
                    merge(b.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (b, e) => *b = e,
        }
    }

    fn web_slice(name: &str, port: u16, endpoints: serde_json::Value) -> EndpointSlice {
        slice(json!({
            "metadata": {"namespace": "default", "name": name,
                         "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": endpoints
        }))
    }

    fn ep(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn key(port: &str, protocol: Protocol) -> ServicePortName {
        ServicePortName {
            namespace: "default".into(),
            name: "web".into(),
            port: port.into(),
            protocol,
        }
    }

    /// A table of services × slices → the endpoints (or absence) of
    /// `default/web:http/tcp`, its affinity and NodePort.
    #[test]
    fn rules_table() {
        struct Case {
            what: &'static str,
            service: Service,
            slices: Vec<EndpointSlice>,
            endpoints: Option<Vec<&'static str>>,
            affinity: Option<u32>,
            node_port: Option<(u16, Vec<&'static str>, bool)>,
        }
        let two_pods = || {
            vec![
                web_slice(
                    "a",
                    8001,
                    json!([{"addresses": ["10.0.0.1"], "nodeName": "n1"}]),
                ),
                web_slice(
                    "b",
                    8002,
                    json!([{"addresses": ["10.0.0.2"], "nodeName": "n2",
                            "conditions": {"ready": true}}]),
                ),
            ]
        };
        let cases = vec![
            Case {
                what: "ClusterIP over two slices with different target port numbers",
                service: web(json!({})),
                slices: two_pods(),
                endpoints: Some(vec!["10.0.0.1:8001", "10.0.0.2:8002"]),
                affinity: None,
                node_port: None,
            },
            Case {
                what: "NodePort",
                service: web(json!({"spec": {"type": "NodePort",
                    "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}})),
                slices: two_pods(),
                endpoints: Some(vec!["10.0.0.1:8001", "10.0.0.2:8002"]),
                affinity: None,
                node_port: Some((30080, vec!["10.0.0.1:8001", "10.0.0.2:8002"], true)),
            },
            Case {
                what: "a nodePort on a ClusterIP Service is ignored",
                service: web(json!({"spec": {
                    "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}})),
                slices: two_pods(),
                endpoints: Some(vec!["10.0.0.1:8001", "10.0.0.2:8002"]),
                affinity: None,
                node_port: None,
            },
            Case {
                what: "externalTrafficPolicy Local: local endpoints, client IP kept",
                service: web(
                    json!({"spec": {"type": "NodePort", "externalTrafficPolicy": "Local",
                    "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}}),
                ),
                slices: two_pods(),
                endpoints: Some(vec!["10.0.0.1:8001", "10.0.0.2:8002"]),
                affinity: None,
                node_port: Some((30080, vec!["10.0.0.1:8001"], false)),
            },
            Case {
                what: "internalTrafficPolicy Local",
                service: web(json!({"spec": {"internalTrafficPolicy": "Local"}})),
                slices: two_pods(),
                endpoints: Some(vec!["10.0.0.1:8001"]),
                affinity: None,
                node_port: None,
            },
            Case {
                what: "ClientIP affinity defaults to 10800 s",
                service: web(json!({"spec": {"sessionAffinity": "ClientIP"}})),
                slices: two_pods(),
                endpoints: Some(vec!["10.0.0.1:8001", "10.0.0.2:8002"]),
                affinity: Some(10800),
                node_port: None,
            },
            Case {
                what: "ClientIP affinity with a timeout",
                service: web(json!({"spec": {"sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}})),
                slices: two_pods(),
                endpoints: Some(vec!["10.0.0.1:8001", "10.0.0.2:8002"]),
                affinity: Some(60),
                node_port: None,
            },
            Case {
                what: "an out-of-range affinity timeout falls back to the default",
                service: web(json!({"spec": {"sessionAffinity": "ClientIP",
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": -5}}}})),
                slices: two_pods(),
                endpoints: Some(vec!["10.0.0.1:8001", "10.0.0.2:8002"]),
                affinity: Some(10800),
                node_port: None,
            },
            Case {
                what: "no slices: no endpoints",
                service: web(json!({})),
                slices: vec![],
                endpoints: Some(vec![]),
                affinity: None,
                node_port: None,
            },
            Case {
                what: "unready endpoints are left out",
                service: web(json!({})),
                slices: vec![web_slice(
                    "a",
                    8001,
                    json!([{"addresses": ["10.0.0.1"], "conditions": {"ready": false}},
                           {"addresses": ["10.0.0.2"], "conditions": {"ready": true}}]),
                )],
                endpoints: Some(vec!["10.0.0.2:8001"]),
                affinity: None,
                node_port: None,
            },
            Case {
                what: "serving terminating endpoints when none is ready",
                service: web(json!({})),
                slices: vec![web_slice(
                    "a",
                    8001,
                    json!([{"addresses": ["10.0.0.1"],
                            "conditions": {"ready": false, "serving": true, "terminating": true}},
                           {"addresses": ["10.0.0.2"],
                            "conditions": {"ready": false, "serving": false, "terminating": true}}]),
                )],
                endpoints: Some(vec!["10.0.0.1:8001"]),
                affinity: None,
                node_port: None,
            },
            Case {
                what: "a slice of another service is not used",
                service: web(json!({})),
                slices: vec![slice(json!({
                    "metadata": {"namespace": "default", "name": "x",
                                 "labels": {SERVICE_NAME_LABEL: "other"}},
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 9000}],
                    "endpoints": [{"addresses": ["10.0.0.9"]}]
                }))],
                endpoints: Some(vec![]),
                affinity: None,
                node_port: None,
            },
            Case {
                what: "a slice in another namespace is not used",
                service: web(json!({})),
                slices: vec![slice(json!({
                    "metadata": {"namespace": "prod", "name": "x",
                                 "labels": {SERVICE_NAME_LABEL: "web"}},
                    "addressType": "IPv4",
                    "ports": [{"name": "http", "port": 9000}],
                    "endpoints": [{"addresses": ["10.0.0.9"]}]
                }))],
                endpoints: Some(vec![]),
                affinity: None,
                node_port: None,
            },
            Case {
                what: "an unlabelled slice and an IPv6 slice are not used",
                service: web(json!({})),
                slices: vec![
                    slice(json!({
                        "metadata": {"namespace": "default", "name": "x"},
                        "addressType": "IPv4",
                        "ports": [{"name": "http", "port": 9000}],
                        "endpoints": [{"addresses": ["10.0.0.9"]}]
                    })),
                    slice(json!({
                        "metadata": {"namespace": "default", "name": "y",
                                     "labels": {SERVICE_NAME_LABEL: "web"}},
                        "addressType": "IPv6",
                        "ports": [{"name": "http", "port": 9000}],
                        "endpoints": [{"addresses": ["fd00::9"]}]
                    })),
                ],
                endpoints: Some(vec![]),
                affinity: None,
                node_port: None,
            },
            Case {
                what: "the same endpoint in two slices counts once",
                service: web(json!({})),
                slices: vec![
                    web_slice("a", 8001, json!([{"addresses": ["10.0.0.1"]}])),
                    web_slice("b", 8001, json!([{"addresses": ["10.0.0.1"]}])),
                ],
                endpoints: Some(vec!["10.0.0.1:8001"]),
                affinity: None,
                node_port: None,
            },
            Case {
                what: "a bad endpoint address is skipped",
                service: web(json!({})),
                slices: vec![web_slice(
                    "a",
                    8001,
                    json!([{"addresses": ["not-an-ip"]}, {"addresses": ["10.0.0.3"]}]),
                )],
                endpoints: Some(vec!["10.0.0.3:8001"]),
                affinity: None,
                node_port: None,
            },
            Case {
                what: "headless",
                service: web(json!({"spec": {"clusterIP": "None"}})),
                slices: two_pods(),
                endpoints: None,
                affinity: None,
                node_port: None,
            },
            Case {
                what: "ExternalName",
                service: web(json!({"spec": {"type": "ExternalName",
                                             "externalName": "example.com"}})),
                slices: two_pods(),
                endpoints: None,
                affinity: None,
                node_port: None,
            },
            Case {
                what: "no clusterIP yet",
                service: web(json!({"spec": {"clusterIP": ""}})),
                slices: two_pods(),
                endpoints: None,
                affinity: None,
                node_port: None,
            },
            Case {
                what: "a garbage clusterIP",
                service: web(json!({"spec": {"clusterIP": "10.96.0.300"}})),
                slices: two_pods(),
                endpoints: None,
                affinity: None,
                node_port: None,
            },
            Case {
                what: "an IPv6 clusterIP",
                service: web(json!({"spec": {"clusterIP": "fd00::10"}})),
                slices: two_pods(),
                endpoints: None,
                affinity: None,
                node_port: None,
            },
        ];
        for case in cases {
            let rules = desired_rules([&case.service], &case.slices, "n1");
            let got = rules.ports.get(&key("http", Protocol::Tcp));
            match (&case.endpoints, got) {
                (None, None) => continue,
                (None, Some(r)) => panic!("{}: expected no rule, got {r:?}", case.what),
                (Some(_), None) => panic!("{}: no rule; warnings {:?}", case.what, rules.warnings),
                (Some(want), Some(got)) => {
                    let want: Vec<_> = want.iter().map(|s| ep(s)).collect();
                    assert_eq!(got.endpoints, want, "{}", case.what);
                    assert_eq!(
                        got.cluster_ip,
                        Ipv4Addr::new(10, 96, 0, 10),
                        "{}",
                        case.what
                    );
                    assert_eq!(got.port, 80, "{}", case.what);
                    assert_eq!(got.affinity_timeout, case.affinity, "{}", case.what);
                    let node_port = got
                        .node_port
                        .as_ref()
                        .map(|n| (n.node_port, n.endpoints.clone(), n.masquerade));
                    let want_np = case
                        .node_port
                        .as_ref()
                        .map(|(p, e, m)| (*p, e.iter().map(|s| ep(s)).collect::<Vec<_>>(), *m));
                    assert_eq!(node_port, want_np, "{}", case.what);
                }
            }
        }
    }

    #[test]
    fn bad_services_warn_by_name_and_do_not_hide_good_ones() {
        let bad = web(json!({"metadata": {"name": "broken"}, "spec": {"clusterIP": "nope"}}));
        let good = web(json!({}));
        let rules = desired_rules([&bad, &good], &[], "n1");
        assert_eq!(rules.ports.len(), 1);
        assert_eq!(rules.warnings.len(), 1);
        assert!(
            rules.warnings[0].contains("default/broken"),
            "{:?}",
            rules.warnings
        );
    }

    #[test]
    fn names_that_are_not_dns_labels_are_skipped() {
        let cases = [
            json!({"metadata": {"name": "x; flush ruleset"}}),
            json!({"metadata": {"name": "Web"}}),
            json!({"metadata": {"namespace": ""}}),
            json!({"metadata": {"name": "-web"}}),
            json!({"spec": {"ports": [{"name": "a b", "port": 80}]}}),
            json!({"spec": {"ports": [{"name": "x".repeat(64), "port": 80}]}}),
        ];
        for extra in cases {
            let svc = web(extra.clone());
            let rules = desired_rules([&svc], &[], "n1");
            assert!(rules.ports.is_empty(), "{extra}: {:?}", rules.ports);
            assert_eq!(rules.warnings.len(), 1, "{extra}");
        }
        assert!(is_label("web-1") && is_label("a") && is_label(&"x".repeat(63)));
    }

    #[test]
    fn multiple_ports_take_their_own_slice_ports() {
        let svc = web(json!({"spec": {"ports": [
            {"name": "http", "port": 80},
            {"name": "metrics", "port": 9090},
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "nobody-has-this", "port": 81}
        ]}}));
        let slices = vec![slice(json!({
            "metadata": {"namespace": "default", "name": "a",
                         "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080},
                      {"name": "metrics", "port": 9100},
                      {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [{"addresses": ["10.0.0.1"]}]
        }))];
        let rules = desired_rules([&svc], &slices, "n1");
        let eps = |port: &str, proto| rules.ports[&key(port, proto)].endpoints.clone();
        assert_eq!(eps("http", Protocol::Tcp), vec![ep("10.0.0.1:8080")]);
        assert_eq!(eps("metrics", Protocol::Tcp), vec![ep("10.0.0.1:9100")]);
        assert_eq!(eps("dns", Protocol::Udp), vec![ep("10.0.0.1:5353")]);
        // A port name no endpoint has: the port exists, with no backends
        // (so traffic is rejected), and the other ports are unaffected.
        assert_eq!(eps("nobody-has-this", Protocol::Tcp), vec![]);
        assert_eq!(rules.ports[&key("dns", Protocol::Udp)].port, 53);
    }

    #[test]
    fn unsupported_protocols_and_ports_are_warnings() {
        let svc = web(json!({"spec": {"ports": [
            {"name": "a", "port": 80, "protocol": "ICMP"},
            {"name": "b", "port": 70000},
            {"name": "c", "port": 81, "nodePort": 0}
        ], "type": "NodePort"}}));
        let rules = desired_rules([&svc], &[], "n1");
        assert_eq!(rules.warnings.len(), 3, "{:?}", rules.warnings);
        // Port c is still served on its ClusterIP, just without a NodePort.
        assert!(rules.ports[&key("c", Protocol::Tcp)].node_port.is_none());
        assert_eq!(rules.ports.len(), 1);
    }

    #[test]
    fn service_port_names_print_like_upstream() {
        assert_eq!(
            key("http", Protocol::Tcp).to_string(),
            "default/web:http/tcp"
        );
        assert_eq!(key("", Protocol::Udp).to_string(), "default/web/udp");
    }
}
