//! The `kubernetes` Service in `default`: how Pods find the API server.
//!
//! Upstream's API server keeps three objects itself (the "kubernetes
//! service" controller and the endpoint reconciler): the Service
//! `default/kubernetes` (no selector, the first address of the service
//! range, port 443 `https` to the server's secure port, labels
//! `component=apiserver` and `provider=kubernetes`), its Endpoints (the
//! server's advertised address; labelled `skip-mirror` so no mirroring
//! controller copies it) and an EndpointSlice of the same name (labelled
//! only with `kubernetes.io/service-name`, so the EndpointSlice controller,
//! which manages slices carrying its managed-by label, leaves it alone; the
//! Endpoints controller skips Services without a selector).
//!
//! [`reconcile`] creates them when missing and puts back what was changed,
//! at start and then every [`INTERVAL`]. The advertised address is
//! `--advertise-address`, else the bind address when it is a specific one,
//! else the host's address on its default route ([`host_address`]).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::registry::{Registry, WriteOptions};

/// How often the objects are checked (upstream's endpoint reconciler runs
/// every 10 seconds).
pub const INTERVAL: Duration = Duration::from_secs(10);

const NAME: &str = "kubernetes";
const NAMESPACE: &str = "default";
const FIELD_MANAGER: &str = "kube-apiserver";

/// Where Pods reach this API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The Service's cluster IP (the first of the range).
    pub cluster_ip: Ipv4Addr,
    /// The advertised address and the secure port.
    pub address: IpAddr,
    pub port: u16,
}

/// The Service as the API server wants it.
pub fn service(endpoint: &Endpoint) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": endpoint.cluster_ip.to_string(),
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": endpoint.port}],
        },
    })
}

fn endpoint_port(endpoint: &Endpoint) -> Value {
    json!({"name": "https", "port": endpoint.port, "protocol": "TCP"})
}

pub fn endpoints(endpoint: &Endpoint) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [{
            "addresses": [{"ip": endpoint.address.to_string()}],
            "ports": [endpoint_port(endpoint)],
        }],
    })
}

pub fn endpoint_slice(endpoint: &Endpoint) -> Value {
    let family = if endpoint.address.is_ipv6() {
        "IPv6"
    } else {
        "IPv4"
    };
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": NAME},
        },
        "addressType": family,
        "endpoints": [{
            "addresses": [endpoint.address.to_string()],
            "conditions": {"ready": true},
        }],
        "ports": [endpoint_port(endpoint)],
    })
}

/// The fields of `current` the API server owns, replaced by `want`'s;
/// `None` when they already agree. The Service's cluster IP is never
/// changed (it is immutable; upstream only logs a mismatch either).
fn repaired(kind: &str, current: &Value, want: &Value) -> Option<Value> {
    let owned: &[&str] = match kind {
        "Service" => &["/spec/ports", "/spec/type"],
        "Endpoints" => &["/subsets"],
        _ => &["/addressType", "/endpoints", "/ports"],
    };
    let mut next = current.clone();
    let mut changed = false;
    for pointer in owned {
        if current.pointer(pointer) != want.pointer(pointer) {
            let field = pointer.rsplit('/').next().unwrap_or("");
            let parent = &pointer[..pointer.len() - field.len() - 1];
            let target = if parent.is_empty() {
                Some(&mut next)
            } else {
                next.pointer_mut(parent)
            };
            if let Some(target) = target.and_then(Value::as_object_mut) {
                target.insert(
                    field.to_string(),
                    want.pointer(pointer).cloned().unwrap_or(Value::Null),
                );
                changed = true;
            }
        }
    }
    let want_labels = want.pointer("/metadata/labels").and_then(Value::as_object);
    for (key, value) in want_labels.into_iter().flatten() {
        if current.pointer("/metadata/labels").and_then(|l| l.get(key)) != Some(value) {
            next["metadata"]["labels"][key] = value.clone();
            changed = true;
        }
    }
    changed.then_some(next)
}

/// Create or repair the three objects.
pub async fn reconcile(registry: &Registry, endpoint: &Endpoint) -> Result<(), ApiError> {
    let options = WriteOptions {
        field_manager: FIELD_MANAGER.into(),
        field_manager_given: true,
        ..Default::default()
    };
    let wanted = [
        (("", "v1", "services"), service(endpoint)),
        (("", "v1", "endpoints"), endpoints(endpoint)),
        (
            ("discovery.k8s.io", "v1", "endpointslices"),
            endpoint_slice(endpoint),
        ),
    ];
    for ((group, version, plural), want) in wanted {
        let resource = api::resources::find(group, version, plural).expect("in table");
        match registry.get(resource, Some(NAMESPACE), NAME).await {
            Err(ApiError::NotFound { .. }) => {
                match registry
                    .create(resource, Some(NAMESPACE), want, &options)
                    .await
                {
                    Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
            Ok(current) => {
                if repaired(resource.kind, &current, &want).is_none() {
                    continue;
                }
                let updated = registry
                    .update(resource, Some(NAMESPACE), NAME, None, &options, |current| {
                        let mut next = repaired(resource.kind, current, &want)
                            .unwrap_or_else(|| current.clone());
                        // Unpinned: a concurrent writer makes the registry
                        // re-read and repair again.
                        if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut)
                        {
                            meta.remove("resourceVersion");
                        }
                        Ok(next)
                    })
                    .await;
                match updated {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// Reconcile every [`INTERVAL`] until the server's state is dropped.
pub fn spawn_reconciler(registry: std::sync::Weak<crate::server::AppState>, endpoint: Endpoint) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(INTERVAL).await;
            let Some(state) = registry.upgrade() else {
                return;
            };
            if let Err(error) = reconcile(&state.registry, &endpoint).await {
                tracing::warn!(%error, "could not reconcile the kubernetes Service");
            }
        }
    });
}

/// The address to advertise when none was given: the bind address if it is
/// a specific one, else the host's address toward its default route, else
/// its first non-loopback address, else loopback.
pub fn advertised_address(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    host_address(&route, &trie)
        .map(IpAddr::V4)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Pick from the host's local addresses (`/proc/net/fib_trie`) the one in
/// a subnet routed through the default route's interface
/// (`/proc/net/route`), else the first non-loopback one.
pub fn host_address(route: &str, fib_trie: &str) -> Option<Ipv4Addr> {
    let locals = local_addresses(fib_trie);
    let routes: Vec<(String, u32, u32)> = route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // /proc/net/route prints the network-order bytes as a
            // little-endian number.
            let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::swap_bytes);
            Some((
                fields.first()?.to_string(),
                hex(fields.get(1)?)?,
                hex(fields.get(7)?)?,
            ))
        })
        .collect();
    let default_iface = routes
        .iter()
        .find(|(_, dest, mask)| *dest == 0 && *mask == 0)
        .map(|(iface, ..)| iface.clone());
    if let Some(iface) = default_iface {
        let subnets: Vec<(u32, u32)> = routes
            .iter()
            .filter(|(i, dest, _)| *i == iface && *dest != 0)
            .map(|(_, dest, mask)| (*dest, *mask))
            .collect();
        let on_default = locals.iter().find(|ip| {
            let ip = u32::from(**ip);
            subnets.iter().any(|(dest, mask)| ip & mask == *dest)
        });
        if let Some(ip) = on_default {
            return Some(*ip);
        }
    }
    locals.into_iter().next()
}

/// The non-loopback addresses the kernel marks `/32 host LOCAL`.
fn local_addresses(fib_trie: &str) -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("|-- ") {
            last = rest.trim().parse().ok();
        } else if line.contains("/32 host LOCAL") {
            if let Some(ip) = last.filter(|ip| !ip.is_loopback() && !found.contains(ip)) {
                found.push(ip);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIB_TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
        +-- 10.88.0.0/16 2 0 2
              |-- 10.88.0.1
                 /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
";

    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
tug0\t0000580A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
";

    #[test]
    fn the_host_address_is_the_one_on_the_default_route() {
        assert_eq!(
            local_addresses(FIB_TRIE),
            vec![Ipv4Addr::new(10, 88, 0, 1), Ipv4Addr::new(192, 0, 2, 2)]
        );
        assert_eq!(
            host_address(ROUTE, FIB_TRIE),
            Some(Ipv4Addr::new(192, 0, 2, 2))
        );
        // Without a default route: the first non-loopback address.
        assert_eq!(
            host_address("", FIB_TRIE),
            Some(Ipv4Addr::new(10, 88, 0, 1))
        );
        assert_eq!(host_address("", ""), None);
        let bound: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(advertised_address(bound), bound);
    }

    fn endpoint() -> Endpoint {
        Endpoint {
            cluster_ip: Ipv4Addr::new(10, 96, 0, 1),
            address: "192.0.2.2".parse().unwrap(),
            port: 6443,
        }
    }

    #[test]
    fn the_objects_point_at_the_api_server() {
        let svc = service(&endpoint());
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 6443);
        assert_eq!(
            svc["spec"].get("selector"),
            None,
            "controllers must leave it alone"
        );
        let ep = endpoints(&endpoint());
        assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "192.0.2.2");
        let slice = endpoint_slice(&endpoint());
        assert_eq!(slice["endpoints"][0]["addresses"][0], "192.0.2.2");
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "kubernetes"
        );
        assert_eq!(
            slice["metadata"]["labels"].get("endpointslice.kubernetes.io/managed-by"),
            None
        );
    }

    #[test]
    fn repairs_touch_only_what_the_api_server_owns() {
        let want = service(&endpoint());
        let mut current = want.clone();
        current["spec"]["clusterIP"] = json!("10.96.0.50");
        current["metadata"]["labels"]["team"] = json!("x");
        assert_eq!(
            repaired("Service", &current, &want),
            None,
            "cluster IP and extra labels stay"
        );
        current["spec"]["ports"][0]["targetPort"] = json!(1234);
        current["metadata"]["labels"]["provider"] = json!("someone");
        let fixed = repaired("Service", &current, &want).unwrap();
        assert_eq!(fixed["spec"]["ports"][0]["targetPort"], 6443);
        assert_eq!(fixed["metadata"]["labels"]["provider"], "kubernetes");
        assert_eq!(fixed["metadata"]["labels"]["team"], "x");
        assert_eq!(fixed["spec"]["clusterIP"], "10.96.0.50");

        let ep = endpoints(&endpoint());
        let mut moved = ep.clone();
        moved["subsets"][0]["addresses"][0]["ip"] = json!("192.0.2.9");
        assert_eq!(repaired("Endpoints", &moved, &ep), Some(ep.clone()));
    }
}
