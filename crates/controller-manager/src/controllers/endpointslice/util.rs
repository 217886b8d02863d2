//! What the Endpoints and EndpointSlice controllers share, as upstream's
//! `k8s.io/endpointslice/util` and `pkg/api/v1/pod`:
//!
//! - which pods belong in endpoints, their addresses, and how a Service
//!   port resolves against a pod ([`find_port`]);
//! - which pod changes matter to endpoints ([`services_for_pod_change`]);
//! - the `endpoints.kubernetes.io/last-change-trigger-time` bookkeeping
//!   ([`TriggerTimeTracker`]);
//! - a record of our own writes ([`WriteTracker`]), so an informer that has
//!   not caught up with them is never mistaken for the truth (upstream's
//!   `EndpointSliceTracker` and `staleEndpointsTracker`);
//! - the [`Selection`] index: Services by one of their selector pairs and
//!   pods by label, so mapping a pod change to the Services selecting it,
//!   and a Service to its pods, never scans a whole namespace.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::framework::{informer::Object, Change, Informer, ObjectKey, WorkQueue};
use crate::pods::is_pod_ready;

/// When the change that caused an endpoints write happened (upstream's
/// `v1.EndpointsLastChangeTriggerTime`).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Set on the endpoints of Services without a cluster IP.
pub const IS_HEADLESS_SERVICE: &str = "service.kubernetes.io/headless";
/// The node label the endpoint's zone comes from.
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";

/// The Service's selector if this controller manages its endpoints: not
/// for ExternalName Services, nor for Services without a selector, whose
/// endpoints are the user's. An empty selector counts as none (the API
/// server's storage does not tell `{}` from absent).
pub fn service_selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether `labels` has every key/value of `selector`.
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The Service's cluster IP, "" when unset.
pub fn cluster_ip(service: &Service) -> &str {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("")
}

/// Whether the Service has a virtual IP (neither headless nor unallocated).
pub fn is_service_ip_set(service: &Service) -> bool {
    !matches!(cluster_ip(service), "" | "None")
}

/// Whether the Service asks for not-ready pods to be published.
pub fn publish_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The Service's ports.
pub fn service_ports(service: &Service) -> &[ServicePort] {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[])
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(crate::pods::phase(pod), "Succeeded" | "Failed")
}

/// The pod's IPs: `status.podIPs`, or `status.podIP` when only that is set.
pub fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    status
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .into_iter()
        .collect()
}

/// Whether an address is IPv6. One that does not parse counts as IPv6 if
/// it has a colon, which no IPv4 address has.
pub fn is_ipv6(ip: &str) -> bool {
    match ip.parse::<IpAddr>() {
        Ok(addr) => addr.is_ipv6(),
        Err(_) => ip.contains(':'),
    }
}

/// The address in canonical form (`fd00:0::1` → `fd00::1`), as upstream
/// re-stringifies pod IPs.
pub fn canonical_ip(ip: &str) -> String {
    ip.parse::<IpAddr>()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| ip.to_string())
}

/// Upstream's `ShouldPodBeInEndpoints`: not finished, has an IP, and not
/// terminating unless `include_terminating`.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if is_terminal(pod) || pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Whether an endpoint for `pod` carries its hostname: the pod asked for
/// one and its subdomain is this Service (headless-Service DNS).
pub fn should_set_hostname(pod: &Pod, service: &Service) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.hostname.as_deref().is_some_and(|h| !h.is_empty())
        && spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace
}

/// The protocol of a Service or container port (TCP when unset, the API
/// default).
pub fn protocol(protocol: Option<&String>) -> &str {
    protocol.map(String::as_str).unwrap_or("TCP")
}

/// Upstream's `FindPort`: the pod port a Service port targets. A numeric
/// targetPort is taken as is; a named one is looked up among the
/// containers' ports (then sidecars', init containers that always restart)
/// with the same name and protocol. `None` when the pod has no such port.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let target = port
        .target_port
        .clone()
        .unwrap_or(IntOrString::Int(port.port));
    let name = match target {
        IntOrString::Int(n) => return Some(n),
        IntOrString::String(name) => name,
    };
    let spec = pod.spec.as_ref()?;
    let want = protocol(port.protocol.as_ref());
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name.as_str()) && protocol(p.protocol.as_ref()) == want)
        .map(|p| p.container_port)
}

fn ready_transition(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

/// Upstream's `podEndpointsChanged`: (whether the pod changed in a way its
/// endpoint shows, whether it changed in a way that may change which
/// Services select it).
pub fn pod_endpoints_changed(old: &Pod, new: &Pod) -> (bool, bool) {
    let host = |p: &Pod| {
        p.spec
            .as_ref()
            .map(|s| (s.hostname.clone(), s.subdomain.clone()))
    };
    let labels_changed = old.metadata.labels != new.metadata.labels || host(old) != host(new);
    let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone());
    // Beyond upstream's list (deletion, readiness, IPs) the phase and the
    // node count too: a pod that finished leaves its endpoints, and an
    // endpoint names its node.
    let changed = old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || is_pod_ready(old) != is_pod_ready(new)
        || pod_ips(old) != pod_ips(new)
        || is_terminal(old) != is_terminal(new)
        || node(old) != node(new);
    (changed, labels_changed)
}

/// The Services (keys) to sync after a pod change, as upstream's
/// `GetServicesToUpdateOnPodChange`; `services_for` maps a namespace and
/// labels to the Services selecting them.
pub fn services_for_pod_change(
    change: &Change<Pod>,
    services_for: impl Fn(&str, Option<&BTreeMap<String, String>>) -> BTreeSet<ObjectKey>,
) -> BTreeSet<ObjectKey> {
    let ns = |p: &Pod| p.metadata.namespace.clone().unwrap_or_default();
    match change {
        Change::Added(pod) | Change::Deleted(pod) => {
            services_for(&ns(pod), pod.metadata.labels.as_ref())
        }
        Change::Updated { old, new } => {
            if old.metadata.resource_version == new.metadata.resource_version {
                return BTreeSet::new();
            }
            let (pod_changed, labels_changed) = pod_endpoints_changed(old, new);
            let now = services_for(&ns(new), new.metadata.labels.as_ref());
            if !labels_changed {
                return if pod_changed { now } else { BTreeSet::new() };
            }
            let before = services_for(&ns(old), old.metadata.labels.as_ref());
            if pod_changed {
                now.union(&before).cloned().collect()
            } else {
                // Only membership moved: the Services it joined or left.
                now.symmetric_difference(&before).cloned().collect()
            }
        }
    }
}

/// Upstream's `TriggerTimeTracker`: the time of the first change not yet
/// reflected in a Service's endpoints, to be published as
/// [`LAST_CHANGE_TRIGGER_TIME`]. A pod's change time is its Ready
/// condition's transition; a Service's is its creation.
#[derive(Debug, Default)]
pub struct TriggerTimeTracker {
    states: HashMap<ObjectKey, TriggerState>,
}

#[derive(Debug, Default)]
struct TriggerState {
    service: Option<Timestamp>,
    pods: HashMap<String, Timestamp>,
}

impl TriggerTimeTracker {
    /// Record the Service's and its pods' change times and return the
    /// earliest that changed since the last call (the Service's creation on
    /// the first call); `None` when nothing did.
    pub fn compute(
        &mut self,
        key: &ObjectKey,
        service: &Service,
        pods: &[&Pod],
    ) -> Option<Timestamp> {
        let created = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let known = self.states.contains_key(key);
        let state = self.states.entry(key.clone()).or_default();
        let mut earliest: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| {
            earliest = Some(earliest.map_or(t, |e| e.min(t)));
        };
        let mut now = HashMap::with_capacity(pods.len());
        for pod in pods {
            let Some(t) = ready_transition(pod) else {
                continue;
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if state.pods.get(&name).is_none_or(|last| t > *last) {
                consider(t);
            }
            now.insert(name, t);
        }
        if let Some(t) = created {
            if state.service.is_none_or(|last| t > last) {
                consider(t);
            }
        }
        state.pods = now;
        state.service = created;
        if known {
            earliest
        } else {
            created
        }
    }

    /// Forget a deleted Service.
    pub fn forget(&mut self, key: &ObjectKey) {
        self.states.remove(key);
    }
}

/// A resourceVersion as a number, when it is one (ours always are).
fn revision(rv: Option<&str>) -> Option<u64> {
    rv?.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// We wrote it; this is the resourceVersion the server answered.
    Written(String),
    /// We deleted it.
    Deleted,
}

/// Our own writes per Service (upstream's `EndpointSliceTracker`): which
/// objects we created, updated (and at what resourceVersion) or deleted,
/// so that a sync against an informer that has not seen them yet waits
/// instead of acting twice, and the informer's echo of our own write does
/// not trigger another sync.
#[derive(Debug, Default)]
pub struct WriteTracker {
    owners: HashMap<ObjectKey, HashMap<String, Expect>>,
}

impl WriteTracker {
    /// We wrote `name` (owned by `owner`) and the server answered `rv`.
    pub fn written(&mut self, owner: &ObjectKey, name: &str, rv: Option<&str>) {
        let expect = Expect::Written(rv.unwrap_or_default().to_string());
        self.owners
            .entry(owner.clone())
            .or_default()
            .insert(name.to_string(), expect);
    }

    /// We deleted `name`.
    pub fn deleted(&mut self, owner: &ObjectKey, name: &str) {
        self.owners
            .entry(owner.clone())
            .or_default()
            .insert(name.to_string(), Expect::Deleted);
    }

    /// Whether the informer's view of `owner`'s objects (name,
    /// resourceVersion) predates our writes: something we wrote is missing
    /// or older, or something we deleted is still there.
    pub fn stale<'a>(
        &self,
        owner: &ObjectKey,
        observed: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> bool {
        let Some(expected) = self.owners.get(owner) else {
            return false;
        };
        let mut seen = 0;
        for (name, rv) in observed {
            match expected.get(name) {
                None => {}
                Some(Expect::Deleted) => return true,
                Some(Expect::Written(want)) => {
                    seen += 1;
                    if let (Some(have), Some(want)) = (revision(rv), revision(Some(want))) {
                        if have < want {
                            return true;
                        }
                    }
                }
            }
        }
        let written = expected
            .values()
            .filter(|e| matches!(e, Expect::Written(_)))
            .count();
        seen < written
    }

    /// Whether the informer's (name, rv) is the echo of our own last write.
    pub fn is_own_write(&self, owner: &ObjectKey, name: &str, rv: Option<&str>) -> bool {
        matches!(
            self.owners.get(owner).and_then(|o| o.get(name)),
            Some(Expect::Written(want)) if Some(want.as_str()) == rv
        )
    }

    /// The informer saw `name` deleted: forget it, and say whether that
    /// was our doing.
    pub fn observe_deletion(&mut self, owner: &ObjectKey, name: &str) -> bool {
        let Some(objects) = self.owners.get_mut(owner) else {
            return false;
        };
        let ours = objects.remove(name) == Some(Expect::Deleted);
        if objects.is_empty() {
            self.owners.remove(owner);
        }
        ours
    }

    /// Whether anything of `owner`'s was written by us.
    pub fn has(&self, owner: &ObjectKey) -> bool {
        self.owners.contains_key(owner)
    }

    /// Forget a deleted Service.
    pub fn forget(&mut self, owner: &ObjectKey) {
        self.owners.remove(owner);
    }
}

/// namespace → label key → value → names.
#[derive(Debug, Default)]
struct LabelIndex {
    map: HashMap<String, HashMap<String, HashMap<String, BTreeSet<String>>>>,
}

impl LabelIndex {
    fn insert(&mut self, ns: &str, key: &str, value: &str, name: &str) {
        self.map
            .entry(ns.to_string())
            .or_default()
            .entry(key.to_string())
            .or_default()
            .entry(value.to_string())
            .or_default()
            .insert(name.to_string());
    }

    fn remove(&mut self, ns: &str, key: &str, value: &str, name: &str) {
        let Some(keys) = self.map.get_mut(ns) else {
            return;
        };
        if let Some(values) = keys.get_mut(key) {
            if let Some(names) = values.get_mut(value) {
                names.remove(name);
                if names.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                keys.remove(key);
            }
        }
        if keys.is_empty() {
            self.map.remove(ns);
        }
    }

    fn get(&self, ns: &str, key: &str, value: &str) -> Option<&BTreeSet<String>> {
        self.map.get(ns)?.get(key)?.get(value)
    }
}

/// Which Services select which pods, kept current from the informers'
/// changes. A Service is filed under one pair of its selector (its
/// anchor): every pod it selects carries that pair, so the Services of a
/// pod are among those filed under the pod's own labels. Pods are filed
/// under every label, so a Service's pods are among those carrying its
/// rarest pair. Both lookups cost the candidates, not the namespace.
#[derive(Debug, Default)]
pub struct Selection {
    anchors: LabelIndex,
    selectors: HashMap<ObjectKey, BTreeMap<String, String>>,
    pods: LabelIndex,
    /// Each pod as last filed: the informer's own copy, so its labels and
    /// node are not kept a second time (a pod's labels map alone is half a
    /// kilobyte).
    pod_objects: HashMap<ObjectKey, Arc<Pod>>,
    nodes: HashMap<String, BTreeSet<ObjectKey>>,
    slices: HashMap<ObjectKey, BTreeSet<String>>,
    slice_owner: HashMap<ObjectKey, ObjectKey>,
}

impl Selection {
    /// Record a Service's selector (`None`: it selects nothing).
    pub fn set_service(&mut self, key: &ObjectKey, selector: Option<&BTreeMap<String, String>>) {
        if self.selectors.get(key).map(Some) == Some(selector) {
            return;
        }
        self.remove_service(key);
        let Some(selector) = selector else {
            return;
        };
        if let Some((k, v)) = selector.iter().next() {
            self.anchors.insert(&key.namespace, k, v, &key.name);
            self.selectors.insert(key.clone(), selector.clone());
        }
    }

    /// Forget a Service.
    pub fn remove_service(&mut self, key: &ObjectKey) {
        if let Some(selector) = self.selectors.remove(key) {
            if let Some((k, v)) = selector.iter().next() {
                self.anchors.remove(&key.namespace, k, v, &key.name);
            }
        }
    }

    /// The Services in `ns` whose selector matches `labels`.
    pub fn services_for(
        &self,
        ns: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> BTreeSet<ObjectKey> {
        let mut found = BTreeSet::new();
        for (k, v) in labels.into_iter().flatten() {
            for name in self.anchors.get(ns, k, v).into_iter().flatten() {
                let key = ObjectKey::new(ns, name.as_str());
                if self
                    .selectors
                    .get(&key)
                    .is_some_and(|s| selector_matches(s, labels))
                {
                    found.insert(key);
                }
            }
        }
        found
    }

    /// Record a pod's labels and node.
    pub fn set_pod(&mut self, pod: &Arc<Pod>) {
        let key = ObjectKey::of(pod.as_ref());
        let old = self.pod_objects.insert(key.clone(), pod.clone());
        let old = old.as_deref();
        if old.map(pod_labels) != Some(pod_labels(pod)) {
            if let Some(old) = old {
                self.unindex_labels(&key, old);
            }
            for (k, v) in pod_labels(pod).into_iter().flatten() {
                self.pods.insert(&key.namespace, k, v, &key.name);
            }
        }
        let (old_node, node) = (old.map(pod_node), pod_node(pod));
        if old_node != Some(node) {
            if let Some(old_node) = old_node {
                self.unindex_node(&key, old_node);
            }
            if !node.is_empty() {
                self.nodes.entry(node.to_string()).or_default().insert(key);
            }
        }
    }

    fn unindex_labels(&mut self, key: &ObjectKey, pod: &Pod) {
        for (k, v) in pod_labels(pod).into_iter().flatten() {
            self.pods.remove(&key.namespace, k, v, &key.name);
        }
    }

    fn unindex_node(&mut self, key: &ObjectKey, node: &str) {
        if let Some(pods) = self.nodes.get_mut(node) {
            pods.remove(key);
            if pods.is_empty() {
                self.nodes.remove(node);
            }
        }
    }

    /// The labels of the pod filed under `key`.
    fn labels_of(&self, key: &ObjectKey) -> Option<&BTreeMap<String, String>> {
        self.pod_objects.get(key).and_then(|p| pod_labels(p))
    }

    /// Forget a pod.
    pub fn remove_pod(&mut self, key: &ObjectKey) {
        if let Some(old) = self.pod_objects.remove(key) {
            self.unindex_labels(key, &old);
            self.unindex_node(key, pod_node(&old));
        }
    }

    /// The pods in `ns` (keys) that `selector` matches, as last recorded.
    pub fn pods_for(&self, ns: &str, selector: &BTreeMap<String, String>) -> Vec<ObjectKey> {
        let rarest = selector
            .iter()
            .map(|(k, v)| self.pods.get(ns, k, v))
            .min_by_key(|names| names.map_or(0, BTreeSet::len));
        let Some(Some(candidates)) = rarest else {
            return Vec::new();
        };
        candidates
            .iter()
            .map(|name| ObjectKey::new(ns, name.as_str()))
            .filter(|key| selector_matches(selector, self.labels_of(key)))
            .collect()
    }

    /// The Services selecting any pod on `node`.
    pub fn services_on_node(&self, node: &str) -> BTreeSet<ObjectKey> {
        let mut found = BTreeSet::new();
        for pod in self.nodes.get(node).into_iter().flatten() {
            found.extend(self.services_for(&pod.namespace, self.labels_of(pod)));
        }
        found
    }

    /// Record that slice `slice` belongs to Service `service` (`None`: to
    /// none of ours).
    pub fn set_slice(&mut self, slice: &ObjectKey, service: Option<ObjectKey>) {
        if self.slice_owner.get(slice) == service.as_ref() {
            return;
        }
        self.remove_slice(slice);
        if let Some(service) = service {
            self.slices
                .entry(service.clone())
                .or_default()
                .insert(slice.name.clone());
            self.slice_owner.insert(slice.clone(), service);
        }
    }

    /// Forget a slice.
    pub fn remove_slice(&mut self, slice: &ObjectKey) {
        if let Some(service) = self.slice_owner.remove(slice) {
            if let Some(names) = self.slices.get_mut(&service) {
                names.remove(&slice.name);
                if names.is_empty() {
                    self.slices.remove(&service);
                }
            }
        }
    }

    /// The slices (keys) recorded for `service`.
    pub fn slices_of(&self, service: &ObjectKey) -> Vec<ObjectKey> {
        self.slices
            .get(service)
            .into_iter()
            .flatten()
            .map(|name| ObjectKey::new(service.namespace.as_str(), name.as_str()))
            .collect()
    }
}

/// Keep `selection` current from Service changes and return the Service
/// to sync.
pub fn on_service_change(selection: &mut Selection, change: &Change<Service>) -> ObjectKey {
    let service = change.object();
    let key = ObjectKey::of(service.as_ref());
    match change {
        Change::Deleted(_) => selection.remove_service(&key),
        _ => selection.set_service(&key, service_selector(service)),
    }
    key
}

fn pod_labels(pod: &Pod) -> Option<&BTreeMap<String, String>> {
    pod.metadata.labels.as_ref().filter(|l| !l.is_empty())
}

/// The pod's node, empty while it is unscheduled.
fn pod_node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Keep `selection` current from a pod change and return the Services to
/// sync.
pub fn on_pod_change(selection: &mut Selection, change: &Change<Pod>) -> BTreeSet<ObjectKey> {
    // Services are looked up before the pod is re-filed, so a delete still
    // finds the Services it left.
    let services = services_for_pod_change(change, |ns, labels| selection.services_for(ns, labels));
    match change {
        Change::Deleted(pod) => selection.remove_pod(&ObjectKey::of(pod.as_ref())),
        Change::Added(pod) | Change::Updated { new: pod, .. } => selection.set_pod(pod),
    }
    services
}

/// The Services to sync after a node change: those selecting pods on a
/// node that appeared, went away, or moved zone.
pub fn on_node_change(selection: &Selection, change: &Change<Node>) -> BTreeSet<ObjectKey> {
    let zone = |n: &Node| {
        n.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_TOPOLOGY_ZONE).cloned())
    };
    let node = change.object();
    let relevant = match change {
        Change::Added(_) | Change::Deleted(_) => true,
        Change::Updated { old, new } => zone(old) != zone(new),
    };
    if !relevant {
        return BTreeSet::new();
    }
    selection.services_on_node(node.metadata.name.as_deref().unwrap_or(""))
}

/// Like [`crate::framework::forward`], but each key waits `delay` before it
/// is queued, so a burst of changes to one Service's pods is synced once
/// (upstream's `--endpoint(slice)-updates-batch-period`).
pub fn forward_after<K, F>(
    informer: &Informer<K>,
    queue: &WorkQueue<ObjectKey>,
    delay: Duration,
    keys: F,
) where
    K: Object,
    F: Fn(&Change<K>) -> BTreeSet<ObjectKey> + Send + 'static,
{
    let mut changes = informer.subscribe();
    let queue = queue.clone();
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            for key in keys(&change) {
                queue.add_after(key, delay);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(name: &str, pairs: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some(labels(pairs)),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("ns", name)
    }

    #[test]
    fn the_selection_index_finds_services_of_a_pod_and_pods_of_a_service() {
        let mut sel = Selection::default();
        sel.set_service(&key("web"), Some(&labels(&[("app", "web")])));
        sel.set_service(
            &key("web-canary"),
            Some(&labels(&[("app", "web"), ("track", "canary")])),
        );
        sel.set_service(&key("db"), Some(&labels(&[("app", "db")])));
        sel.set_service(
            &ObjectKey::new("other", "web"),
            Some(&labels(&[("app", "web")])),
        );
        sel.set_service(&key("manual"), None);

        let stable = Arc::new(pod("p1", &[("app", "web"), ("track", "stable")]));
        let canary = Arc::new(pod("p2", &[("app", "web"), ("track", "canary")]));
        sel.set_pod(&stable);
        sel.set_pod(&canary);
        assert_eq!(
            sel.services_for("ns", stable.metadata.labels.as_ref()),
            [key("web")].into()
        );
        assert_eq!(
            sel.services_for("ns", canary.metadata.labels.as_ref()),
            [key("web"), key("web-canary")].into()
        );
        assert_eq!(
            sel.pods_for("ns", &labels(&[("app", "web")])),
            [key("p1"), key("p2")]
        );
        assert_eq!(
            sel.pods_for("ns", &labels(&[("app", "web"), ("track", "canary")])),
            [key("p2")]
        );
        assert!(sel.pods_for("ns", &labels(&[("app", "db")])).is_empty());
        assert!(sel.pods_for("other", &labels(&[("app", "web")])).is_empty());
        assert_eq!(
            sel.services_on_node("node-a"),
            [key("web"), key("web-canary")].into()
        );

        // A selector change re-files the Service; a pod relabel re-files the pod.
        sel.set_service(&key("web-canary"), Some(&labels(&[("track", "canary")])));
        sel.set_pod(&Arc::new(pod("p2", &[("app", "db"), ("track", "canary")])));
        assert_eq!(
            sel.services_for("ns", Some(&labels(&[("app", "db"), ("track", "canary")]))),
            [key("db"), key("web-canary")].into()
        );
        assert_eq!(sel.pods_for("ns", &labels(&[("app", "web")])), [key("p1")]);
        sel.remove_pod(&key("p1"));
        assert!(sel.pods_for("ns", &labels(&[("app", "web")])).is_empty());
        assert!(sel.services_on_node("node-a").contains(&key("db")));
        sel.remove_service(&key("db"));
        assert!(!sel.services_on_node("node-a").contains(&key("db")));
    }

    #[test]
    fn a_pod_moving_node_or_going_is_refiled() {
        let mut sel = Selection::default();
        sel.set_service(&key("web"), Some(&labels(&[("app", "web")])));
        let mut p = pod("p", &[("app", "web")]);
        sel.set_pod(&Arc::new(p.clone()));
        assert_eq!(sel.services_on_node("node-a"), [key("web")].into());
        p.spec.as_mut().unwrap().node_name = Some("node-b".into());
        sel.set_pod(&Arc::new(p));
        assert!(sel.services_on_node("node-a").is_empty());
        assert_eq!(sel.services_on_node("node-b"), [key("web")].into());
        sel.remove_pod(&key("p"));
        assert!(sel.services_on_node("node-b").is_empty());
        assert!(sel.pods_for("ns", &labels(&[("app", "web")])).is_empty());
        assert!(sel.pod_objects.is_empty() && sel.nodes.is_empty());
    }

    #[test]
    fn the_selection_index_stays_cheap_at_scale() {
        // 1,000 Services and 10,000 pods in one namespace: a pod lookup
        // touches the Services filed under its labels, not all of them.
        let mut sel = Selection::default();
        for s in 0..1000 {
            let app = format!("app-{s}");
            sel.set_service(&key(&format!("svc-{s}")), Some(&labels(&[("app", &app)])));
        }
        for p in 0..10_000 {
            let app = format!("app-{}", p % 1000);
            sel.set_pod(&Arc::new(pod(
                &format!("pod-{p}"),
                &[("app", &app), ("tier", "web")],
            )));
        }
        let start = std::time::Instant::now();
        for p in 0..10_000 {
            let app = format!("app-{}", p % 1000);
            let found = sel.services_for("ns", Some(&labels(&[("app", &app), ("tier", "web")])));
            assert_eq!(found.len(), 1);
        }
        for s in 0..1000 {
            let app = format!("app-{s}");
            assert_eq!(sel.pods_for("ns", &labels(&[("app", &app)])).len(), 10);
        }
        // Generous for a debug build on a shared machine; a scan per event
        // (10^7 selector checks each way) takes far longer.
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn pod_changes_map_to_the_services_that_care() {
        let mut sel = Selection::default();
        sel.set_service(&key("web"), Some(&labels(&[("app", "web")])));
        sel.set_service(&key("db"), Some(&labels(&[("app", "db")])));
        let web = std::sync::Arc::new(pod("p", &[("app", "web")]));
        assert_eq!(
            on_pod_change(&mut sel, &Change::Added(web.clone())),
            [key("web")].into()
        );

        // An annotation change matters to nobody.
        let mut annotated = (*web).clone();
        annotated.metadata.resource_version = Some("2".into());
        annotated.metadata.annotations = Some(labels(&[("a", "b")]));
        let annotated = std::sync::Arc::new(annotated);
        let change = Change::Updated {
            old: web.clone(),
            new: annotated.clone(),
        };
        assert!(on_pod_change(&mut sel, &change).is_empty());

        // Readiness matters to the Services selecting it.
        let mut ready = (*annotated).clone();
        ready.metadata.resource_version = Some("3".into());
        ready.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let ready = std::sync::Arc::new(ready);
        let change = Change::Updated {
            old: annotated.clone(),
            new: ready.clone(),
        };
        assert_eq!(on_pod_change(&mut sel, &change), [key("web")].into());

        // A relabel alone matters to the Service it left and the one it joined.
        let mut moved = (*ready).clone();
        moved.metadata.resource_version = Some("4".into());
        moved.metadata.labels = Some(labels(&[("app", "db")]));
        let moved = std::sync::Arc::new(moved);
        let change = Change::Updated {
            old: ready.clone(),
            new: moved.clone(),
        };
        assert_eq!(
            on_pod_change(&mut sel, &change),
            [key("db"), key("web")].into()
        );
        assert_eq!(
            on_pod_change(&mut sel, &Change::Deleted(moved)),
            [key("db")].into()
        );
        assert!(sel.pods_for("ns", &labels(&[("app", "db")])).is_empty());
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let mut p = pod("p", &[]);
        p.spec = Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![
                    ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        ..Default::default()
                    },
                    ContainerPort {
                        name: Some("dns".into()),
                        container_port: 53,
                        protocol: Some("UDP".into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }],
            init_containers: Some(vec![Container {
                name: "sidecar".into(),
                restart_policy: Some("Always".into()),
                ports: Some(vec![ContainerPort {
                    name: Some("metrics".into()),
                    container_port: 9090,
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let port = |target: IntOrString, proto: Option<&str>| ServicePort {
            port: 80,
            target_port: Some(target),
            protocol: proto.map(String::from),
            ..Default::default()
        };
        let name = |n: &str| IntOrString::String(n.into());
        assert_eq!(
            find_port(&p, &port(IntOrString::Int(9376), None)),
            Some(9376)
        );
        assert_eq!(find_port(&p, &port(name("http"), Some("TCP"))), Some(8080));
        assert_eq!(find_port(&p, &port(name("dns"), Some("UDP"))), Some(53));
        assert_eq!(find_port(&p, &port(name("dns"), Some("TCP"))), None);
        assert_eq!(find_port(&p, &port(name("metrics"), None)), Some(9090));
        assert_eq!(find_port(&p, &port(name("grpc"), None)), None);
        let unset = ServicePort {
            port: 443,
            ..Default::default()
        };
        assert_eq!(find_port(&p, &unset), Some(443));
    }

    #[test]
    fn pods_without_ips_finished_or_terminating_are_left_out() {
        let mut p = pod("p", &[]);
        assert!(!should_pod_be_in_endpoints(&p, true));
        p.status = Some(PodStatus {
            pod_ips: Some(vec![PodIP {
                ip: "10.0.0.1".into(),
            }]),
            phase: Some("Running".into()),
            ..Default::default()
        });
        assert!(should_pod_be_in_endpoints(&p, false));
        p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(!should_pod_be_in_endpoints(&p, false));
        assert!(should_pod_be_in_endpoints(&p, true));
        p.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!should_pod_be_in_endpoints(&p, true));
        // podIP alone (no podIPs) is enough.
        let mut q = pod("q", &[]);
        q.status = Some(PodStatus {
            pod_ip: Some("fd00::1".into()),
            ..Default::default()
        });
        assert_eq!(pod_ips(&q), ["fd00::1"]);
        assert!(is_ipv6("fd00::1") && !is_ipv6("10.0.0.1"));
    }

    #[test]
    fn the_trigger_time_is_the_first_unprocessed_change() {
        let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
        let service = Service {
            metadata: ObjectMeta {
                creation_timestamp: Some(Time(at(0))),
                ..Default::default()
            },
            spec: Some(ServiceSpec::default()),
            ..Default::default()
        };
        let ready_at = |name: &str, t: i64| {
            let mut p = pod(name, &[]);
            p.status = Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(at(t))),
                    ..Default::default()
                }]),
                ..Default::default()
            });
            p
        };
        let mut tracker = TriggerTimeTracker::default();
        let k = key("web");
        let a = ready_at("a", 5);
        // A new Service: its creation.
        assert_eq!(tracker.compute(&k, &service, &[&a]), Some(at(0)));
        // Nothing changed.
        assert_eq!(tracker.compute(&k, &service, &[&a]), None);
        // Two pods changed: the earlier change.
        let a2 = ready_at("a", 20);
        let b = ready_at("b", 10);
        assert_eq!(tracker.compute(&k, &service, &[&a2, &b]), Some(at(10)));
        tracker.forget(&k);
        assert_eq!(tracker.compute(&k, &service, &[&a2, &b]), Some(at(0)));
    }

    #[test]
    fn the_write_tracker_spots_a_lagging_informer() {
        let mut t = WriteTracker::default();
        let svc = key("web");
        assert!(!t.stale(&svc, [("web-abc", Some("5"))]));
        t.written(&svc, "web-abc", Some("7"));
        // The informer still has the old version, or not the object at all.
        assert!(t.stale(&svc, [("web-abc", Some("5"))]));
        assert!(t.stale(&svc, []));
        assert!(!t.stale(&svc, [("web-abc", Some("7"))]));
        // Someone else wrote after us: not stale, and not our echo.
        assert!(!t.stale(&svc, [("web-abc", Some("9"))]));
        assert!(t.is_own_write(&svc, "web-abc", Some("7")));
        assert!(!t.is_own_write(&svc, "web-abc", Some("9")));
        t.deleted(&svc, "web-abc");
        assert!(t.stale(&svc, [("web-abc", Some("9"))]));
        assert!(t.observe_deletion(&svc, "web-abc"));
        assert!(!t.stale(&svc, []));
        assert!(!t.observe_deletion(&svc, "web-abc"));
    }
}
