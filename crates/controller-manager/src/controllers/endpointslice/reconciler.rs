//! The EndpointSlice reconciler, as upstream's `k8s.io/endpointslice`
//! `Reconciler`: from a Service, the pods it selects, their nodes and the
//! slices that exist, the slices to create, update and delete. Pure: the
//! executor in the parent module carries the [`Plan`] out.
//!
//! The approach is upstream's, which keeps churn low when one pod changes:
//!
//! 1. Slices are grouped by address type (one per IP family the Service
//!    has) and, within that, by port set: pods whose named ports resolve
//!    differently land in different slices.
//! 2. Each existing slice keeps the endpoints still wanted (refreshed if
//!    they changed) and drops the rest; a slice left empty is deleted.
//! 3. New endpoints fill the slices already being updated, fullest first,
//!    then the existing slice they fit best, and only then new slices of at
//!    most `max_endpoints_per_slice` endpoints.
//! 4. A create paired with a delete becomes an update of the deleted slice,
//!    and a Service with no endpoints keeps one empty placeholder slice.
//!
//! Slices that did not change are not written.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::util::{
    canonical_ip, cluster_ip, find_port, is_ipv6, is_service_ip_set, pod_ips, protocol,
    publish_not_ready, service_ports, should_pod_be_in_endpoints, should_set_hostname,
    IS_HEADLESS_SERVICE, LABEL_TOPOLOGY_ZONE, LAST_CHANGE_TRIGGER_TIME,
};
use crate::pods::{controller_ref, is_pod_ready};

/// The label naming a slice's Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming a slice's manager.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Our value of [`LABEL_MANAGED_BY`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";

/// What to write to make a Service's slices right.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// New slices (named by `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Existing slices, rewritten whole (resourceVersion set: a conflict
    /// means our view was stale).
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
    /// Pods left out because their node is not known: (pod, node). The
    /// sync is retried until the node appears (or the pod goes).
    pub missing_nodes: Vec<(String, String)>,
}

impl Plan {
    /// Whether nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// The address types a Service's slices carry: one per IP family it has
/// (upstream's `getAddressTypesForService`; without families, the cluster
/// IP's, or both for a headless Service).
pub fn address_types(service: &Service) -> BTreeSet<&'static str> {
    let mut types = BTreeSet::new();
    let families = service.spec.as_ref().and_then(|s| s.ip_families.as_ref());
    for family in families.into_iter().flatten() {
        match family.as_str() {
            "IPv4" => types.insert("IPv4"),
            "IPv6" => types.insert("IPv6"),
            _ => false,
        };
    }
    if !types.is_empty() {
        return types;
    }
    if is_service_ip_set(service) {
        types.insert(if is_ipv6(cluster_ip(service)) {
            "IPv6"
        } else {
            "IPv4"
        });
    } else {
        types.extend(["IPv4", "IPv6"]);
    }
    types
}

/// A port set, order-free: (name, port, protocol, appProtocol) sorted.
type PortsKey = Vec<(String, i32, String, String)>;

fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut key: PortsKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                protocol(p.protocol.as_ref()).to_string(),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    key.sort();
    key
}

/// What makes two endpoints the same endpoint (upstream's endpoint hash):
/// addresses, hostname and the pod it stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct EndpointKey {
    namespace: String,
    name: String,
    hostname: String,
    addresses: Vec<String>,
}

fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    let target = endpoint.target_ref.as_ref();
    EndpointKey {
        namespace: target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
        name: target.and_then(|t| t.name.clone()).unwrap_or_default(),
        hostname: endpoint.hostname.clone().unwrap_or_default(),
        addresses,
    }
}

/// Whether two endpoints with the same key also agree on everything else
/// the controller sets (upstream's `EndpointsEqualBeyondHash`; the pod's
/// resourceVersion in targetRef does not count).
fn same_endpoint(a: &Endpoint, b: &Endpoint) -> bool {
    let conditions = |e: &Endpoint| {
        let c = e.conditions.clone().unwrap_or_default();
        (c.ready, c.serving, c.terminating)
    };
    let target = |e: &Endpoint| {
        e.target_ref.clone().map(|mut t| {
            t.resource_version = None;
            t
        })
    };
    a.node_name == b.node_name
        && a.zone == b.zone
        && conditions(a) == conditions(b)
        && target(a) == target(b)
}

/// The slice ports for `pod`: each Service port it resolves (upstream's
/// `getEndpointPorts`); a Service port the pod lacks is left out.
pub fn endpoint_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    service_ports(service)
        .iter()
        .filter_map(|port| {
            let number = find_port(pod, port)?;
            Some(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(protocol(port.protocol.as_ref()).to_string()),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

/// The endpoint for `pod` in a slice of `address_type` (upstream's
/// `podToEndpoint`). A terminating pod stays, not ready, serving while it
/// still passes its readiness probe.
pub fn pod_to_endpoint(
    pod: &Pod,
    node: Option<&Node>,
    service: &Service,
    address_type: &str,
) -> Endpoint {
    let serving = is_pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish_not_ready(service) || (serving && !terminating);
    let want_v6 = address_type == "IPv6";
    let addresses = pod_ips(pod)
        .into_iter()
        .filter(|ip| is_ipv6(ip) == want_v6)
        .map(canonical_ip)
        .collect();
    let spec = pod.spec.as_ref();
    let zone = node
        .and_then(|n| n.metadata.labels.as_ref())
        .and_then(|l| l.get(LABEL_TOPOLOGY_ZONE))
        .filter(|z| !z.is_empty())
        .cloned();
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        zone,
        hostname: should_set_hostname(pod, service)
            .then(|| spec.and_then(|s| s.hostname.clone()))
            .flatten(),
        ..Default::default()
    }
}

fn is_reserved_label(key: &str) -> bool {
    matches!(
        key,
        LABEL_SERVICE_NAME | LABEL_MANAGED_BY | IS_HEADLESS_SERVICE
    )
}

/// A slice's labels: the Service's (but the reserved ones), the headless
/// marker when the Service has no cluster IP, the Service name and our
/// manager name; and whether the copied Service labels differ from the
/// slice's (upstream's `setEndpointSliceLabels`).
pub fn slice_labels(
    current: Option<&BTreeMap<String, String>>,
    service: &Service,
) -> (BTreeMap<String, String>, bool) {
    let copy = |labels: Option<&BTreeMap<String, String>>| -> BTreeMap<String, String> {
        labels
            .into_iter()
            .flatten()
            .filter(|(k, _)| !is_reserved_label(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut labels = copy(service.metadata.labels.as_ref());
    let changed = copy(current) != labels;
    if !is_service_ip_set(service) {
        labels.insert(IS_HEADLESS_SERVICE.into(), String::new());
    }
    labels.insert(
        LABEL_SERVICE_NAME.into(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    (labels, changed)
}

/// Whether `slice` is controlled by `service` (this incarnation of it).
pub fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref().unwrap_or("");
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.kind == "Service" && o.api_version == "v1")
}

/// A new, empty slice for `service` with `ports` (upstream's
/// `newEndpointSlice`): named `<service>-<random>`, controlled by the
/// Service.
pub fn new_slice(service: &Service, ports: Vec<EndpointPort>, address_type: &str) -> EndpointSlice {
    let name = service.metadata.name.clone().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: service.metadata.namespace.clone(),
            labels: Some(slice_labels(None, service).0),
            owner_references: Some(vec![controller_ref(service)]),
            ..Default::default()
        },
        address_type: address_type.to_string(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// Whether `slice` is already the placeholder we would create (upstream's
/// `placeholderSliceCompare`: namespace, labels, owners, no endpoints, no
/// ports, same address type).
fn is_placeholder(slice: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    let labels = |s: &EndpointSlice| s.metadata.labels.clone().unwrap_or_default();
    let owners = |s: &EndpointSlice| s.metadata.owner_references.clone().unwrap_or_default();
    slice.metadata.namespace == placeholder.metadata.namespace
        && labels(slice) == labels(placeholder)
        && owners(slice) == owners(placeholder)
        && slice.address_type == placeholder.address_type
        && slice.endpoints.is_empty()
        && slice.ports.as_ref().is_none_or(Vec::is_empty)
}

/// Set or clear the trigger-time annotation on a slice about to be written.
fn set_trigger_time(slice: &mut EndpointSlice, trigger: Option<Timestamp>) {
    let annotations = slice.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match trigger {
        Some(t) => {
            annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), t.to_string());
        }
        None => {
            annotations.remove(LAST_CHANGE_TRIGGER_TIME);
        }
    }
}

/// The desired endpoints of one port set.
struct Desired {
    ports: Vec<EndpointPort>,
    endpoints: BTreeMap<EndpointKey, Endpoint>,
}

impl Desired {
    fn pop(&mut self) -> Option<Endpoint> {
        self.endpoints.pop_first().map(|(_, e)| e)
    }
}

/// The whole decision for one Service: `pods` are those its selector
/// matches, `existing` the slices labelled as ours for it (not being
/// deleted), `nodes` looks a node up by name.
pub fn reconcile(
    service: &Service,
    pods: &[&Pod],
    existing: &[&EndpointSlice],
    nodes: &dyn Fn(&str) -> Option<Arc<Node>>,
    max_endpoints_per_slice: usize,
    trigger: Option<Timestamp>,
) -> Plan {
    let max = max_endpoints_per_slice.max(1);
    let types = address_types(service);
    let mut existing = existing.to_vec();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut plan = Plan::default();
    let mut unsupported = Vec::new();
    let mut by_type: BTreeMap<&str, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        match types.get(slice.address_type.as_str()) {
            Some(t) => by_type.entry(t).or_default().push(slice),
            // The Service no longer has this IP family.
            None => unsupported.push(slice.clone()),
        }
    }
    for address_type in &types {
        let slices = by_type.remove(address_type).unwrap_or_default();
        reconcile_address_type(
            service,
            pods,
            &slices,
            address_type,
            nodes,
            max,
            trigger,
            &mut plan,
        );
    }
    plan.delete.extend(unsupported);
    plan
}

#[allow(clippy::too_many_arguments)]
fn reconcile_address_type(
    service: &Service,
    pods: &[&Pod],
    existing: &[&EndpointSlice],
    address_type: &str,
    nodes: &dyn Fn(&str) -> Option<Arc<Node>>,
    max: usize,
    trigger: Option<Timestamp>,
    plan: &mut Plan,
) {
    let mut create = Vec::new();
    let mut update = Vec::new();
    let mut delete = Vec::new();

    let mut existing_by_ports: BTreeMap<PortsKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for &slice in existing {
        if owned_by(slice, service) {
            let key = ports_key(slice.ports.as_deref().unwrap_or(&[]));
            existing_by_ports.entry(key).or_default().push(slice);
        } else {
            // Left over from an earlier Service of the same name.
            delete.push(slice.clone());
        }
    }

    let publish = publish_not_ready(service);
    let mut desired: BTreeMap<PortsKey, Desired> = BTreeMap::new();
    for &pod in pods {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = endpoint_ports(service, pod);
        let group = desired.entry(ports_key(&ports)).or_insert_with(|| Desired {
            ports,
            endpoints: BTreeMap::new(),
        });
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        let node = nodes(node_name);
        if node.is_none() && !publish {
            // Upstream leaves such a pod out and retries the Service; with
            // publishNotReadyAddresses the user asked for it regardless.
            let missing = (
                pod.metadata.name.clone().unwrap_or_default(),
                node_name.to_string(),
            );
            if !plan.missing_nodes.contains(&missing) {
                plan.missing_nodes.push(missing);
            }
            continue;
        }
        let endpoint = pod_to_endpoint(pod, node.as_deref(), service, address_type);
        if !endpoint.addresses.is_empty() {
            group.endpoints.insert(endpoint_key(&endpoint), endpoint);
        }
    }

    for (key, want) in desired.iter_mut() {
        let slices = existing_by_ports.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let (c, u, d) = reconcile_ports(service, slices, want, address_type, max);
        create.extend(c);
        update.extend(u);
        delete.extend(d);
    }
    // Port sets no pod has any more.
    for (key, slices) in &existing_by_ports {
        if !desired.contains_key(key) {
            delete.extend(slices.iter().map(|s| (*s).clone()));
        }
    }

    // A Service without endpoints keeps one empty slice, so consumers can
    // tell "no endpoints" from "not processed yet".
    if existing.len() == delete.len() && create.is_empty() {
        let placeholder = new_slice(service, Vec::new(), address_type);
        if delete.len() == 1 && is_placeholder(&delete[0], &placeholder) {
            delete.clear();
        } else {
            create.push(placeholder);
        }
    }

    finalize(service, create, update, delete, trigger, plan);
}

/// Upstream's `reconcileByPortMapping` for the slices of one port set:
/// (to create, to update, to delete).
fn reconcile_ports(
    service: &Service,
    existing: &[&EndpointSlice],
    desired: &mut Desired,
    address_type: &str,
    max: usize,
) -> (Vec<EndpointSlice>, Vec<EndpointSlice>, Vec<EndpointSlice>) {
    let mut by_name: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged: BTreeSet<String> = BTreeSet::new();
    let mut to_update: BTreeSet<String> = BTreeSet::new();
    let mut to_delete: BTreeSet<String> = BTreeSet::new();

    // 1. Keep the endpoints still wanted, refreshed; drop the others.
    for &slice in existing {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let mut kept = Vec::with_capacity(slice.endpoints.len());
        let mut refreshed = false;
        for endpoint in &slice.endpoints {
            if let Some(want) = desired.endpoints.remove(&endpoint_key(endpoint)) {
                refreshed |= !same_endpoint(&want, endpoint);
                kept.push(want);
            }
        }
        let (labels, labels_changed) = slice_labels(slice.metadata.labels.as_ref(), service);
        let mut copy = slice.clone();
        if refreshed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                to_delete.insert(name.clone());
            } else {
                copy.endpoints = kept;
                copy.metadata.labels = Some(labels);
                to_update.insert(name.clone());
            }
        } else if labels_changed {
            copy.metadata.labels = Some(labels);
            to_update.insert(name.clone());
        } else {
            unchanged.insert(name.clone());
        }
        by_name.insert(name, copy);
    }

    // 2. Fill the slices being written anyway, fullest first.
    if !desired.endpoints.is_empty() && !to_update.is_empty() {
        let mut names: Vec<&String> = to_update.iter().collect();
        names.sort_by_key(|n| std::cmp::Reverse(by_name[*n].endpoints.len()));
        for name in names {
            let slice = by_name.get_mut(name).expect("updated slices are known");
            while slice.endpoints.len() < max {
                let Some(endpoint) = desired.pop() else { break };
                slice.endpoints.push(endpoint);
            }
        }
    }

    // 3. The rest: into the unchanged slice they fit best, else new slices.
    let mut create = Vec::new();
    while !desired.endpoints.is_empty() {
        let mut target = None;
        if desired.endpoints.len() < max {
            target = slice_to_fill(&unchanged, &by_name, desired.endpoints.len(), max);
        }
        match target {
            Some(name) => {
                let slice = by_name.get_mut(&name).expect("unchanged slices are known");
                while slice.endpoints.len() < max {
                    let Some(endpoint) = desired.pop() else { break };
                    slice.endpoints.push(endpoint);
                }
                unchanged.remove(&name);
                to_update.insert(name);
            }
            None => {
                let mut slice = new_slice(service, desired.ports.clone(), address_type);
                while slice.endpoints.len() < max {
                    let Some(endpoint) = desired.pop() else { break };
                    slice.endpoints.push(endpoint);
                }
                create.push(slice);
            }
        }
    }

    let take = |names: &BTreeSet<String>| -> Vec<EndpointSlice> {
        names.iter().map(|n| by_name[n].clone()).collect()
    };
    (create, take(&to_update), take(&to_delete))
}

/// The unchanged slice that `count` more endpoints fill closest to full
/// (upstream's `getSliceToFill`).
fn slice_to_fill(
    unchanged: &BTreeSet<String>,
    by_name: &BTreeMap<String, EndpointSlice>,
    count: usize,
    max: usize,
) -> Option<String> {
    let mut best: Option<(usize, &String)> = None;
    for name in unchanged {
        let used = by_name[name].endpoints.len() + count;
        if used > max {
            continue;
        }
        let room = max - used;
        if best.is_none_or(|(r, _)| room < r) {
            best = Some((room, name));
            if room == 0 {
                break;
            }
        }
    }
    best.map(|(_, n)| n.clone())
}

/// Upstream's `finalize`: creates that can reuse a slice about to be
/// deleted become updates of it; nothing is created for a Service being
/// deleted; written slices carry the trigger time.
fn finalize(
    service: &Service,
    mut create: Vec<EndpointSlice>,
    mut update: Vec<EndpointSlice>,
    mut delete: Vec<EndpointSlice>,
    trigger: Option<Timestamp>,
    plan: &mut Plan,
) {
    let mut i = 0;
    while i < delete.len() && !create.is_empty() {
        let reusable = owned_by(&delete[i], service)
            && create
                .last()
                .is_some_and(|c| c.address_type == delete[i].address_type);
        if !reusable {
            i += 1;
            continue;
        }
        let old = delete.remove(i);
        let mut slice = create.pop().expect("checked non-empty");
        slice.metadata.name = old.metadata.name;
        slice.metadata.resource_version = old.metadata.resource_version;
        update.push(slice);
    }
    // Creating while the Service is being deleted would race the garbage
    // collector.
    if service.metadata.deletion_timestamp.is_some() {
        create.clear();
    }
    for slice in create.iter_mut().chain(update.iter_mut()) {
        set_trigger_time(slice, trigger);
    }
    plan.create.extend(create);
    plan.update.extend(update);
    plan.delete.extend(delete);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use std::collections::HashMap;

    fn service(ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("svc-uid".into()),
                labels: Some([("team".to_string(), "a".to_string())].into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ports: Some(ports),
                ip_families: Some(vec!["IPv4".into()]),
                cluster_ip: Some("10.96.0.10".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn http_port() -> ServicePort {
        ServicePort {
            name: Some("http".into()),
            port: 80,
            target_port: Some(IntOrString::String("http".into())),
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    fn numeric_port() -> ServicePort {
        ServicePort {
            port: 80,
            target_port: Some(IntOrString::Int(9376)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    fn pod(i: usize, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("pod-{i}")),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{i}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip(i)),
                pod_ips: Some(vec![PodIP { ip: ip(i) }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn ip(i: usize) -> String {
        format!("10.0.{}.{}", i / 250, i % 250 + 1)
    }

    fn nodes() -> impl Fn(&str) -> Option<Arc<Node>> {
        let mut known = HashMap::new();
        let node = |zone: &str| {
            Arc::new(Node {
                metadata: ObjectMeta {
                    labels: Some([(LABEL_TOPOLOGY_ZONE.to_string(), zone.to_string())].into()),
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        known.insert("node-a".to_string(), node("zone-1"));
        move |name: &str| known.get(name).cloned()
    }

    /// Carry a plan out as the API server would: creates get names and
    /// UIDs, updates replace, deletes remove.
    fn apply(slices: &mut Vec<EndpointSlice>, plan: &Plan, next: &mut usize) {
        for s in &plan.delete {
            slices.retain(|x| x.metadata.name != s.metadata.name);
        }
        for s in &plan.update {
            let at = slices
                .iter()
                .position(|x| x.metadata.name == s.metadata.name)
                .expect("updated slice exists");
            slices[at] = s.clone();
        }
        for s in &plan.create {
            let mut s = s.clone();
            *next += 1;
            s.metadata.name = Some(format!("web-{next}"));
            slices.push(s);
        }
    }

    fn run(svc: &Service, pods: &[Pod], slices: &[EndpointSlice], max: usize) -> Plan {
        let pods: Vec<&Pod> = pods.iter().collect();
        let slices: Vec<&EndpointSlice> = slices.iter().collect();
        reconcile(svc, &pods, &slices, &nodes(), max, None)
    }

    fn converge(svc: &Service, pods: &[Pod], slices: &mut Vec<EndpointSlice>, next: &mut usize) {
        let plan = run(svc, pods, slices, 100);
        apply(slices, &plan, next);
        assert!(run(svc, pods, slices, 100).is_empty(), "converged");
    }

    fn endpoint_count(slices: &[EndpointSlice]) -> usize {
        slices.iter().map(|s| s.endpoints.len()).sum()
    }

    #[test]
    fn one_slice_carries_pods_with_conditions_zone_and_ports() {
        let svc = service(vec![http_port()]);
        let mut terminating = pod(2, true);
        terminating.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let mut no_ip = pod(3, true);
        no_ip.status.as_mut().unwrap().pod_ips = None;
        no_ip.status.as_mut().unwrap().pod_ip = None;
        let pods = [pod(0, true), pod(1, false), terminating, no_ip];
        let plan = run(&svc, &pods, &[], 100);
        assert_eq!(plan.create.len(), 1);
        let slice = &plan.create[0];
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(slice.address_type, "IPv4");
        let labels = slice.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_SERVICE_NAME], "web");
        assert_eq!(labels[LABEL_MANAGED_BY], CONTROLLER_NAME);
        assert_eq!(labels["team"], "a");
        assert!(!labels.contains_key(IS_HEADLESS_SERVICE));
        let owner: &OwnerReference = &slice.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Service", "svc-uid", Some(true))
        );
        let port = &slice.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some("http"), Some(8080), Some("TCP"))
        );

        // (address, ready, serving, terminating)
        let seen: Vec<_> = slice
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.as_ref().unwrap();
                (
                    e.addresses[0].as_str(),
                    c.ready.unwrap(),
                    c.serving.unwrap(),
                    c.terminating.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("10.0.0.1", true, true, false),
                ("10.0.0.2", false, false, false),
                // Terminating: kept, not ready, still serving.
                ("10.0.0.3", false, true, true),
            ]
        );
        let first = &slice.endpoints[0];
        assert_eq!(first.node_name.as_deref(), Some("node-a"));
        assert_eq!(first.zone.as_deref(), Some("zone-1"));
        let target = first.target_ref.as_ref().unwrap();
        assert_eq!(
            (
                target.kind.as_deref(),
                target.name.as_deref(),
                target.uid.as_deref()
            ),
            (Some("Pod"), Some("pod-0"), Some("uid-0"))
        );
    }

    #[test]
    fn publish_not_ready_addresses_marks_every_endpoint_ready() {
        let mut svc = service(vec![numeric_port()]);
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let mut terminating = pod(1, false);
        terminating.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let plan = run(&svc, &[pod(0, false), terminating], &[], 100);
        let ready: Vec<_> = plan.create[0]
            .endpoints
            .iter()
            .map(|e| e.conditions.as_ref().unwrap().ready)
            .collect();
        assert_eq!(ready, [Some(true), Some(true)]);
    }

    #[test]
    fn pods_resolving_named_ports_differently_get_separate_slices() {
        let svc = service(vec![http_port()]);
        let mut other = pod(1, true);
        other.spec.as_mut().unwrap().containers[0]
            .ports
            .as_mut()
            .unwrap()[0]
            .container_port = 9090;
        let mut lacking = pod(2, true);
        lacking.spec.as_mut().unwrap().containers[0].ports = None;
        let plan = run(&svc, &[pod(0, true), other, lacking], &[], 100);
        let mut by_port: Vec<(Option<i32>, usize)> = plan
            .create
            .iter()
            .map(|s| {
                (
                    s.ports.as_ref().unwrap().first().and_then(|p| p.port),
                    s.endpoints.len(),
                )
            })
            .collect();
        by_port.sort();
        // The pod without the named port is an endpoint with no ports.
        assert_eq!(by_port, [(None, 1), (Some(8080), 1), (Some(9090), 1)]);
    }

    #[test]
    fn pods_on_unknown_nodes_wait_unless_published_regardless() {
        let svc = service(vec![numeric_port()]);
        let mut stray = pod(1, true);
        stray.spec.as_mut().unwrap().node_name = Some("node-gone".into());
        let plan = run(&svc, &[pod(0, true), stray.clone()], &[], 100);
        assert_eq!(plan.create[0].endpoints.len(), 1);
        assert_eq!(
            plan.missing_nodes,
            [("pod-1".to_string(), "node-gone".to_string())]
        );

        let mut published = svc.clone();
        published.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let plan = run(&published, &[pod(0, true), stray], &[], 100);
        assert_eq!(plan.create[0].endpoints.len(), 2);
        assert!(plan.missing_nodes.is_empty());
    }

    #[test]
    fn slices_hold_at_most_max_endpoints() {
        let svc = service(vec![numeric_port()]);
        let pods: Vec<Pod> = (0..250).map(|i| pod(i, true)).collect();
        let plan = run(&svc, &pods, &[], 100);
        let sizes: Vec<usize> = plan.create.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let plan = run(&svc, &pods, &[], 1000);
        assert_eq!(plan.create.len(), 1);
    }

    #[test]
    fn a_change_to_one_pod_touches_one_slice() {
        let svc = service(vec![numeric_port()]);
        let mut pods: Vec<Pod> = (0..250).map(|i| pod(i, true)).collect();
        let (mut slices, mut next) = (Vec::new(), 0);
        converge(&svc, &pods, &mut slices, &mut next);
        assert_eq!(slices.len(), 3);

        // Readiness flips: one slice rewritten, in place.
        pods[137] = pod(137, false);
        let plan = run(&svc, &pods, &slices, 100);
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        assert_eq!(plan.update.len(), 1);
        let updated = &plan.update[0];
        let flipped = updated
            .endpoints
            .iter()
            .find(|e| e.target_ref.as_ref().unwrap().name.as_deref() == Some("pod-137"))
            .unwrap();
        assert_eq!(flipped.conditions.as_ref().unwrap().ready, Some(false));
        assert!(updated.metadata.name.is_some());
        apply(&mut slices, &plan, &mut next);

        // A pod goes: one slice loses it.
        pods.remove(3);
        let plan = run(&svc, &pods, &slices, 100);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 1, 0)
        );
        apply(&mut slices, &plan, &mut next);

        // A pod comes: it fills the slice being written or the one with room,
        // never a new slice.
        pods.push(pod(300, true));
        let plan = run(&svc, &pods, &slices, 100);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 1, 0)
        );
        apply(&mut slices, &plan, &mut next);
        assert_eq!(endpoint_count(&slices), 250);
        assert!(run(&svc, &pods, &slices, 100).is_empty());
    }

    #[test]
    fn new_endpoints_fill_partial_slices_before_new_ones() {
        let svc = service(vec![numeric_port()]);
        let mut pods: Vec<Pod> = (0..150).map(|i| pod(i, true)).collect();
        let (mut slices, mut next) = (Vec::new(), 0);
        converge(&svc, &pods, &mut slices, &mut next);
        let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        assert_eq!(sizes, [50, 100]);
        // 40 more fit in the slice with 50.
        pods.extend((150..190).map(|i| pod(i, true)));
        let plan = run(&svc, &pods, &slices, 100);
        assert_eq!((plan.create.len(), plan.update.len()), (0, 1));
        assert_eq!(plan.update[0].endpoints.len(), 90);
        apply(&mut slices, &plan, &mut next);
        // 60 more do not fit: one new slice.
        pods.extend((190..250).map(|i| pod(i, true)));
        let plan = run(&svc, &pods, &slices, 100);
        assert_eq!((plan.create.len(), plan.update.len()), (1, 0));
    }

    #[test]
    fn emptied_slices_go_and_an_empty_service_keeps_one_placeholder() {
        let svc = service(vec![numeric_port()]);
        let pods: Vec<Pod> = (0..150).map(|i| pod(i, true)).collect();
        let (mut slices, mut next) = (Vec::new(), 0);
        converge(&svc, &pods, &mut slices, &mut next);
        assert_eq!(slices.len(), 2);

        // All pods gone: one slice is reused as the placeholder (a create
        // turned update), the other deleted.
        let plan = run(&svc, &[], &slices, 100);
        assert_eq!(
            (plan.create.len(), plan.update.len(), plan.delete.len()),
            (0, 1, 1)
        );
        assert!(plan.update[0].endpoints.is_empty());
        assert!(plan.update[0].metadata.name.is_some());
        apply(&mut slices, &plan, &mut next);
        assert_eq!(slices.len(), 1);
        // The placeholder is left alone.
        assert!(run(&svc, &[], &slices, 100).is_empty());

        // A Service never with pods gets just the placeholder.
        let plan = run(&svc, &[], &[], 100);
        assert_eq!(plan.create.len(), 1);
        assert!(plan.create[0].endpoints.is_empty());
        assert_eq!(plan.create[0].ports.as_deref(), Some(&[][..]));
    }

    #[test]
    fn service_label_changes_reach_every_slice_and_foreign_slices_go() {
        let svc = service(vec![numeric_port()]);
        let pods: Vec<Pod> = (0..150).map(|i| pod(i, true)).collect();
        let (mut slices, mut next) = (Vec::new(), 0);
        converge(&svc, &pods, &mut slices, &mut next);

        let mut relabelled = svc.clone();
        relabelled.metadata.labels = Some([("team".to_string(), "b".to_string())].into());
        let plan = run(&relabelled, &pods, &slices, 100);
        assert_eq!(plan.update.len(), 2);
        assert!(plan
            .update
            .iter()
            .all(|s| s.metadata.labels.as_ref().unwrap()["team"] == "b"));

        // A recreated Service (new UID) replaces its predecessor's slices.
        let mut recreated = svc.clone();
        recreated.metadata.uid = Some("new-uid".into());
        let plan = run(&recreated, &pods, &slices, 100);
        assert_eq!(plan.delete.len(), 2);
        assert_eq!(plan.create.len(), 2);
        assert!(plan.create.iter().all(|s| owned_by(s, &recreated)));
    }

    #[test]
    fn address_types_follow_the_service_families() {
        let mut svc = service(vec![numeric_port()]);
        svc.spec.as_mut().unwrap().ip_families = Some(vec!["IPv6".into()]);
        let mut v6 = pod(0, true);
        v6.status.as_mut().unwrap().pod_ips = Some(vec![
            PodIP {
                ip: "fd00:0::a".into(),
            },
            PodIP {
                ip: "10.0.0.1".into(),
            },
        ]);
        let plan = run(&svc, &[v6.clone()], &[], 100);
        assert_eq!(plan.create[0].address_type, "IPv6");
        assert_eq!(plan.create[0].endpoints[0].addresses, ["fd00::a"]);

        // Switching families deletes the other family's slices.
        let mut v4 = svc.clone();
        v4.spec.as_mut().unwrap().ip_families = Some(vec!["IPv4".into()]);
        let mut slices = plan.create.clone();
        slices[0].metadata.name = Some("web-1".into());
        let plan = run(&v4, &[v6], &slices, 100);
        assert_eq!(plan.delete.len(), 1);
        assert_eq!(plan.create[0].address_type, "IPv4");

        // Headless without families: both.
        let mut headless = svc.clone();
        let spec = headless.spec.as_mut().unwrap();
        spec.ip_families = None;
        spec.cluster_ip = Some("None".into());
        assert_eq!(address_types(&headless), ["IPv4", "IPv6"].into());
    }

    #[test]
    fn hostnames_for_the_services_subdomain_and_headless_labels() {
        let mut svc = service(vec![]);
        svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let mut p = pod(0, true);
        let spec = p.spec.as_mut().unwrap();
        spec.hostname = Some("web-0".into());
        spec.subdomain = Some("web".into());
        let plan = run(&svc, &[p], &[], 100);
        let slice = &plan.create[0];
        assert_eq!(slice.endpoints[0].hostname.as_deref(), Some("web-0"));
        assert_eq!(slice.ports.as_deref(), Some(&[][..]));
        assert_eq!(
            slice.metadata.labels.as_ref().unwrap()[IS_HEADLESS_SERVICE],
            ""
        );
    }

    #[test]
    fn written_slices_carry_the_trigger_time() {
        let svc = service(vec![numeric_port()]);
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        let pods = [pod(0, true)];
        let pods: Vec<&Pod> = pods.iter().collect();
        let plan = reconcile(&svc, &pods, &[], &nodes(), 100, Some(at));
        let annotations = plan.create[0].metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations[LAST_CHANGE_TRIGGER_TIME],
            "2023-11-14T22:13:20Z"
        );
    }
}
