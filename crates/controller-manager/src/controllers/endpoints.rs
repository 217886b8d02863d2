//! The Endpoints controller (upstream's `endpoint-controller`): every
//! Service with a selector gets a core/v1 `Endpoints` of the same name
//! listing the pods it selects — ready ones under `addresses`, the others
//! under `notReadyAddresses` (all under `addresses` with
//! `publishNotReadyAddresses`) — with each Service port resolved per pod.
//!
//! - [`desired_subsets`] builds one subset per (address, port) and
//!   [`repack_subsets`] folds them as upstream's `RepackSubsets` does:
//!   addresses offering the same ports with the same readiness share a
//!   subset;
//! - [`truncate`] keeps at most [`MAX_CAPACITY`] addresses, ready ones
//!   first, and the object then carries `endpoints.kubernetes.io/over-capacity:
//!   truncated`;
//! - [`reconcile`] compares with what exists and says whether to create,
//!   update or leave it, so an unchanged Service is never rewritten;
//! - [`run`] is the executor. Services without a selector (and
//!   ExternalName Services) are left alone: their Endpoints are the
//!   user's. The Endpoints of a deleted Service are deleted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use component_base::events::EventRecorder;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};

use super::endpointslice::util::{
    cluster_ip, find_port, forward_after, is_ipv6, is_service_ip_set, on_pod_change,
    on_service_change, pod_ips, protocol, publish_not_ready, selector_matches, service_ports,
    service_selector, should_pod_be_in_endpoints, should_set_hostname, Selection,
    TriggerTimeTracker, WriteTracker, IS_HEADLESS_SERVICE, LAST_CHANGE_TRIGGER_TIME,
};
use super::endpointslice::{lock, STALE_RETRY};
use crate::context::Context;
use crate::framework::{forward, run_workers, Change, Informer, ObjectKey, Outcome, WorkQueue};
use crate::pods::is_pod_ready;

/// Most addresses one Endpoints object holds.
pub const MAX_CAPACITY: usize = 1000;
/// Set (to [`TRUNCATED`]) when addresses were left out.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const TRUNCATED: &str = "truncated";
/// The label marking Endpoints this controller manages (upstream 1.33).
pub const LABEL_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
/// Our value of [`LABEL_MANAGED_BY`].
pub const CONTROLLER_NAME: &str = "endpoint-controller";
/// Endpoints carrying this are leader-election records, never a Service's.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// The address of `pod` for `service` (upstream's
/// `podToEndpointAddressForService`): the pod IP of the Service's first IP
/// family (without families: the cluster IP's, or for a headless Service
/// the pod IP's), its node and a reference to it. `None` when the pod has
/// no IP of that family.
pub fn address_for(service: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let families = service.spec.as_ref().and_then(|s| s.ip_families.as_ref());
    let want_v6 = match families.and_then(|f| f.first()) {
        Some(family) => family == "IPv6",
        None if is_service_ip_set(service) => is_ipv6(cluster_ip(service)),
        None => pod_ips(pod).first().is_some_and(|ip| is_ipv6(ip)),
    };
    let ip = pod_ips(pod).into_iter().find(|ip| is_ipv6(ip) == want_v6)?;
    let spec = pod.spec.as_ref();
    Some(EndpointAddress {
        ip: ip.to_string(),
        node_name: spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        hostname: should_set_hostname(pod, service)
            .then(|| spec.and_then(|s| s.hostname.clone()))
            .flatten(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
    })
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

/// The subsets for `service` over the pods its selector matches, repacked.
/// A pod lacking a named target port is left out of that port only; a
/// Service without ports lists addresses only when headless.
pub fn desired_subsets(service: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let tolerate_unready = publish_not_ready(service);
    let headless = cluster_ip(service) == "None";
    let ports = service_ports(service);
    let mut subsets = Vec::new();
    let mut add = |address: &EndpointAddress, port: Option<EndpointPort>, ready: bool| {
        let addresses = vec![address.clone()];
        subsets.push(EndpointSubset {
            addresses: ready.then(|| addresses.clone()),
            not_ready_addresses: (!ready).then_some(addresses),
            ports: port.map(|p| vec![p]),
        });
    };
    for &pod in pods {
        if !should_pod_be_in_endpoints(pod, tolerate_unready) {
            continue;
        }
        let Some(address) = address_for(service, pod) else {
            continue;
        };
        let ready = tolerate_unready || is_pod_ready(pod);
        if ports.is_empty() {
            if headless {
                add(&address, None, ready);
            }
            continue;
        }
        for port in ports {
            let Some(number) = find_port(pod, port) else {
                continue;
            };
            let endpoint_port = EndpointPort {
                name: port.name.clone().filter(|n| !n.is_empty()),
                port: number,
                protocol: Some(protocol(port.protocol.as_ref()).to_string()),
                app_protocol: port.app_protocol.clone(),
            };
            add(&address, Some(endpoint_port), ready);
        }
    }
    repack_subsets(&subsets)
}

/// An address's identity: IP and the pod it stands for.
type AddressKey = (String, String);
/// A port's identity: name, number, protocol, appProtocol.
type PortKey = (String, i32, String, String);

fn address_key(a: &EndpointAddress) -> AddressKey {
    let uid = a.target_ref.as_ref().and_then(|t| t.uid.clone());
    (a.ip.clone(), uid.unwrap_or_default())
}

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        protocol(p.protocol.as_ref()).to_string(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

/// Upstream's `RepackSubsets`: expand subsets to (address, port, ready)
/// and fold them back so that addresses offering the same ports with the
/// same readiness share one subset. An address not ready on a port in any
/// input is not ready on it. Addresses are sorted by IP, ports by name and
/// number, subsets by their addresses.
pub fn repack_subsets(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    // Port (`None`: a subset without ports) → address → ready.
    type ByPort = BTreeMap<Option<PortKey>, (Option<EndpointPort>, BTreeMap<AddressKey, bool>)>;
    let mut by_port: ByPort = BTreeMap::new();
    for subset in subsets {
        let ports: Vec<Option<&EndpointPort>> = match subset.ports.as_deref() {
            None | Some([]) => vec![None],
            Some(ports) => ports.iter().map(Some).collect(),
        };
        let listed = subset.addresses.iter().flatten().map(|a| (a, true)).chain(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| (a, false)),
        );
        let listed: Vec<(&EndpointAddress, bool)> = listed.collect();
        for port in ports {
            let (_, readiness) = by_port
                .entry(port.map(port_key))
                .or_insert_with(|| (port.cloned(), BTreeMap::new()));
            for &(address, ready) in &listed {
                let key = address_key(address);
                addresses
                    .entry(key.clone())
                    .or_insert_with(|| address.clone());
                let slot = readiness.entry(key).or_insert(ready);
                *slot &= ready;
            }
        }
    }
    // Address set (with readiness) → the ports it offers.
    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (port, readiness) in by_port.into_values() {
        if readiness.is_empty() {
            continue;
        }
        let ports = groups.entry(readiness.into_iter().collect()).or_default();
        ports.extend(port);
    }
    groups
        .into_iter()
        .map(|(members, ports)| {
            let pick = |want: bool| -> Vec<EndpointAddress> {
                members
                    .iter()
                    .filter(|(_, ready)| *ready == want)
                    .map(|(key, _)| addresses[key].clone())
                    .collect()
            };
            EndpointSubset {
                addresses: non_empty(pick(true)),
                not_ready_addresses: non_empty(pick(false)),
                ports: non_empty(ports),
            }
        })
        .collect()
}

/// Upstream's `truncateEndpoints`: keep at most [`MAX_CAPACITY`]
/// addresses. Ready addresses are kept first; what is cut is cut from each
/// subset in proportion to its share. Returns whether anything was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |list: &Option<Vec<EndpointAddress>>| list.as_ref().map_or(0, Vec::len);
    let total_ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let total_not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if total_ready + total_not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = total_ready > MAX_CAPACITY;
    let (room, total) = if truncate_ready {
        (MAX_CAPACITY, total_ready)
    } else {
        (MAX_CAPACITY - total_ready, total_not_ready)
    };
    let mut left = room;
    for subset in subsets.iter_mut() {
        let list = if truncate_ready {
            // Not-ready addresses all go when even the ready ones do not fit.
            subset.not_ready_addresses = None;
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        let here = count(list);
        // Rounded up, so the last subsets may get less than their share.
        let share = (here * room).div_ceil(total).min(left);
        if let Some(addresses) = list.as_mut() {
            addresses.truncate(share);
        }
        left -= count(list);
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
    }
    true
}

/// The Endpoints' labels: the Service's, plus the headless marker when it
/// has no cluster IP and our manager label.
pub fn desired_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if is_service_ip_set(service) {
        labels.remove(IS_HEADLESS_SERVICE);
    } else {
        labels.insert(IS_HEADLESS_SERVICE.into(), String::new());
    }
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

/// Subsets in comparable form: empty lists as absent, and the pods'
/// resourceVersions (which change with every pod write) left out.
fn comparable(subsets: Option<&Vec<EndpointSubset>>) -> Vec<EndpointSubset> {
    let addresses = |list: &Option<Vec<EndpointAddress>>| {
        let list: Vec<EndpointAddress> = list
            .iter()
            .flatten()
            .cloned()
            .map(|mut a| {
                if let Some(t) = a.target_ref.as_mut() {
                    t.resource_version = None;
                }
                a
            })
            .collect();
        non_empty(list)
    };
    subsets
        .into_iter()
        .flatten()
        .map(|s| EndpointSubset {
            addresses: addresses(&s.addresses),
            not_ready_addresses: addresses(&s.not_ready_addresses),
            ports: s.ports.clone().filter(|p| !p.is_empty()),
        })
        .collect()
}

/// What to do about a Service's Endpoints.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// They are right already.
    Nothing,
    Create(Endpoints),
    /// Replace them (resourceVersion kept: a conflict means we were stale).
    Update(Endpoints),
}

/// The decision for one Service: `pods` are those its selector matches,
/// `current` its Endpoints if any, `trigger` the time of the change being
/// processed (see [`TriggerTimeTracker`]).
pub fn reconcile(
    service: &Service,
    pods: &[&Pod],
    current: Option<&Endpoints>,
    trigger: Option<Timestamp>,
) -> Action {
    let mut subsets = desired_subsets(service, pods);
    let truncated = truncate(&mut subsets);
    let labels = desired_labels(service);
    if let Some(current) = current {
        let over = current
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(OVER_CAPACITY));
        if comparable(current.subsets.as_ref()) == subsets
            && current.metadata.labels.clone().unwrap_or_default() == labels
            && over == truncated
        {
            return Action::Nothing;
        }
    }
    let mut endpoints = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            ..Default::default()
        },
        subsets: None,
    });
    endpoints.subsets = non_empty(subsets);
    endpoints.metadata.labels = Some(labels);
    let annotations = endpoints
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    match trigger {
        Some(t) => annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), t.to_string()),
        None => annotations.remove(LAST_CHANGE_TRIGGER_TIME),
    };
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), TRUNCATED.into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    if annotations.is_empty() {
        endpoints.metadata.annotations = None;
    }
    match current {
        Some(_) => Action::Update(endpoints),
        None => Action::Create(endpoints),
    }
}

/// The Service to sync after a change to an Endpoints: after a delete
/// (upstream), and after someone else's write to the Endpoints of a
/// Service we manage (tampering); never for the echo of our own write.
fn on_endpoints_change(
    services: &Informer<Service>,
    writes: &mut WriteTracker,
    change: &Change<Endpoints>,
) -> Vec<ObjectKey> {
    let endpoints = change.object();
    let key = ObjectKey::of(endpoints.as_ref());
    match change {
        Change::Deleted(_) => {
            if writes.observe_deletion(&key, &key.name) {
                Vec::new()
            } else {
                vec![key]
            }
        }
        _ => {
            let rv = endpoints.metadata.resource_version.as_deref();
            let managed = services
                .get(&key)
                .is_some_and(|s| service_selector(&s).is_some());
            if managed && !writes.is_own_write(&key, &key.name, rv) {
                vec![key]
            } else {
                Vec::new()
            }
        }
    }
}

/// Whether an Endpoints without a Service is a leftover of ours: it carries
/// our label and is no leader-election record.
fn is_leftover(endpoints: &Endpoints) -> bool {
    let ours = endpoints
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == CONTROLLER_NAME);
    let leader = endpoints
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    ours && !leader
}

struct Controller {
    client: kube::Client,
    recorder: EventRecorder,
    services: Informer<Service>,
    pods: Informer<Pod>,
    endpoints: Informer<Endpoints>,
    selection: Arc<Mutex<Selection>>,
    writes: Arc<Mutex<WriteTracker>>,
    triggers: Mutex<TriggerTimeTracker>,
}

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        recorder: EventRecorder::new(ctx.client.clone(), "endpoint-controller"),
        services: ctx.informers.get::<Service>(),
        pods: ctx.informers.get::<Pod>(),
        endpoints: ctx.informers.get::<Endpoints>(),
        selection: Arc::default(),
        writes: Arc::default(),
        triggers: Mutex::default(),
    });
    let queue = WorkQueue::new();
    let c = &controller;
    let selection = c.selection.clone();
    forward(&c.services, &queue, move |change| {
        vec![on_service_change(&mut lock(&selection), change)]
    });
    let selection = c.selection.clone();
    let batch = ctx.settings.endpoint_updates_batch_period;
    forward_after(&c.pods, &queue, batch, move |change| {
        on_pod_change(&mut lock(&selection), change)
    });
    let (services, writes) = (c.services.clone(), c.writes.clone());
    forward(&c.endpoints, &queue, move |change| {
        on_endpoints_change(&services, &mut lock(&writes), change)
    });
    c.services.wait_synced().await;
    c.pods.wait_synced().await;
    c.endpoints.wait_synced().await;

    // Endpoints whose Service went while we were not running (upstream's
    // checkLeftoverEndpoints, limited to those we manage).
    for endpoints in c.endpoints.list() {
        let key = ObjectKey::of(endpoints.as_ref());
        if c.services.get(&key).is_none() && is_leftover(&endpoints) {
            queue.add(key);
        }
    }

    let workers = ctx.settings.concurrent_syncs;
    run_workers("endpoint", queue, workers, move |key: ObjectKey| {
        let controller = controller.clone();
        async move { controller.sync(&key).await }
    })
    .await;
    Ok(())
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Outcome> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let Some(service) = self.services.get(key) else {
            lock(&self.triggers).forget(key);
            let known = self.endpoints.get(key).is_some() || lock(&self.writes).has(key);
            if known {
                match api.delete(&key.name, &DeleteParams::default()).await {
                    Ok(_) => lock(&self.writes).deleted(key, &key.name),
                    Err(kube::Error::Api(e)) if e.code == 404 => lock(&self.writes).forget(key),
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(Outcome::Done);
        };
        // No selector: the Service's Endpoints are the user's.
        let Some(selector) = service_selector(&service) else {
            return Ok(Outcome::Done);
        };
        let pods: Vec<Arc<Pod>> = lock(&self.selection)
            .pods_for(&key.namespace, selector)
            .iter()
            .filter_map(|k| self.pods.get(k))
            .filter(|p| selector_matches(selector, p.metadata.labels.as_ref()))
            .collect();
        let current = self.endpoints.get(key);
        let observed = current.iter().map(|e| {
            (
                e.metadata.name.as_deref().unwrap_or(""),
                e.metadata.resource_version.as_deref(),
            )
        });
        if lock(&self.writes).stale(key, observed) {
            return Ok(Outcome::RequeueAfter(STALE_RETRY));
        }
        let pods: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
        // Computed even when nothing is written, so the tracker's view
        // stays current (as upstream).
        let trigger = lock(&self.triggers).compute(key, &service, &pods);
        let (ns, name) = (&key.namespace, &key.name);
        match reconcile(&service, &pods, current.as_deref(), trigger) {
            Action::Nothing => {}
            Action::Create(endpoints) => match api.create(&PostParams::default(), &endpoints).await
            {
                Ok(created) => lock(&self.writes).written(
                    key,
                    name,
                    created.metadata.resource_version.as_deref(),
                ),
                // The namespace is going away: creates keep failing, and
                // its deletion takes the Service with it.
                Err(kube::Error::Api(e))
                    if e.code == 403 && e.message.contains("being terminated") => {}
                Err(e) => {
                    self.recorder.warning(
                        &endpoints,
                        "FailedToCreateEndpoint",
                        format!("Failed to create endpoint for service {ns}/{name}: {e}"),
                    );
                    return Err(e.into());
                }
            },
            Action::Update(endpoints) => {
                match api.replace(name, &PostParams::default(), &endpoints).await {
                    Ok(updated) => lock(&self.writes).written(
                        key,
                        name,
                        updated.metadata.resource_version.as_deref(),
                    ),
                    Err(e) => {
                        self.recorder.warning(
                            &endpoints,
                            "FailedToUpdateEndpoint",
                            format!("Failed to update endpoint {ns}/{name}: {e}"),
                        );
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServicePort, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

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
                cluster_ip: Some("10.96.0.10".into()),
                ip_families: Some(vec!["IPv4".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn port(name: &str, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port: 80,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    fn named(name: &str) -> IntOrString {
        IntOrString::String(name.into())
    }

    /// A running pod `name` with IP `ip`, ready or not, with container ports
    /// (name, number).
    fn pod(name: &str, ip: &str, ready: bool, ports: &[(&str, i32)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(
                        ports
                            .iter()
                            .map(|(n, p)| ContainerPort {
                                name: Some(n.to_string()),
                                container_port: *p,
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: (!ip.is_empty()).then(|| ip.to_string()),
                pod_ips: (!ip.is_empty()).then(|| vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn terminating(mut p: Pod) -> Pod {
        p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        p
    }

    /// (ready IPs, not-ready IPs, ports as "name:port") per subset.
    type Summary = Vec<(Vec<String>, Vec<String>, Vec<String>)>;

    fn summary(subsets: &[EndpointSubset]) -> Summary {
        let ips = |l: &Option<Vec<EndpointAddress>>| -> Vec<String> {
            l.iter().flatten().map(|a| a.ip.clone()).collect()
        };
        subsets
            .iter()
            .map(|s| {
                let ports = s
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| format!("{}:{}", p.name.as_deref().unwrap_or(""), p.port))
                    .collect();
                (ips(&s.addresses), ips(&s.not_ready_addresses), ports)
            })
            .collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn subsets_follow_readiness_ports_and_publishing() {
        let http = || port("http", named("http"));
        let numeric = || port("", IntOrString::Int(9376));
        let with = |f: fn(&mut ServiceSpec), ports: Vec<ServicePort>| {
            let mut s = service(ports);
            f(s.spec.as_mut().unwrap());
            s
        };
        let publish = |s: &mut ServiceSpec| s.publish_not_ready_addresses = Some(true);
        let headless = |s: &mut ServiceSpec| s.cluster_ip = Some("None".into());
        let plain = |_: &mut ServiceSpec| {};
        let mut finished = pod("done", "10.0.0.9", false, &[("http", 8080)]);
        finished.status.as_mut().unwrap().phase = Some("Succeeded".into());

        let cases: Vec<(&str, Service, Vec<Pod>, Summary)> = vec![
            (
                "ready and not ready pods split",
                with(plain, vec![numeric()]),
                vec![
                    pod("a", "10.0.0.1", true, &[]),
                    pod("b", "10.0.0.2", false, &[]),
                ],
                vec![(
                    strings(&["10.0.0.1"]),
                    strings(&["10.0.0.2"]),
                    strings(&[":9376"]),
                )],
            ),
            (
                "pods without an IP, finished or terminating are left out",
                with(plain, vec![numeric()]),
                vec![
                    pod("a", "10.0.0.1", true, &[]),
                    pod("no-ip", "", true, &[]),
                    terminating(pod("t", "10.0.0.3", true, &[])),
                    finished.clone(),
                ],
                vec![(strings(&["10.0.0.1"]), vec![], strings(&[":9376"]))],
            ),
            (
                "publishNotReadyAddresses lists everyone as ready, terminating too",
                with(publish, vec![numeric()]),
                vec![
                    pod("a", "10.0.0.1", true, &[]),
                    pod("b", "10.0.0.2", false, &[]),
                    terminating(pod("t", "10.0.0.3", false, &[])),
                ],
                vec![(
                    strings(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
                    vec![],
                    strings(&[":9376"]),
                )],
            ),
            (
                "named ports resolve per pod; a pod lacking the name is skipped",
                with(plain, vec![http()]),
                vec![
                    pod("a", "10.0.0.1", true, &[("http", 8080)]),
                    pod("b", "10.0.0.2", true, &[("http", 8080)]),
                    pod("c", "10.0.0.3", true, &[("http", 9090)]),
                    pod("d", "10.0.0.4", true, &[("grpc", 7070)]),
                ],
                vec![
                    (
                        strings(&["10.0.0.1", "10.0.0.2"]),
                        vec![],
                        strings(&["http:8080"]),
                    ),
                    (strings(&["10.0.0.3"]), vec![], strings(&["http:9090"])),
                ],
            ),
            (
                "ports offered by the same addresses share one subset",
                with(plain, vec![http(), port("metrics", IntOrString::Int(9100))]),
                vec![
                    pod("a", "10.0.0.1", true, &[("http", 8080)]),
                    pod("b", "10.0.0.2", false, &[("http", 8080)]),
                ],
                vec![(
                    strings(&["10.0.0.1"]),
                    strings(&["10.0.0.2"]),
                    strings(&["http:8080", "metrics:9100"]),
                )],
            ),
            (
                "ports offered by different addresses get a subset each",
                with(plain, vec![http(), port("metrics", IntOrString::Int(9100))]),
                vec![
                    pod("a", "10.0.0.1", true, &[("http", 8080)]),
                    pod("b", "10.0.0.2", false, &[("http", 8080)]),
                    pod("c", "10.0.0.3", true, &[]),
                ],
                vec![
                    (
                        strings(&["10.0.0.1"]),
                        strings(&["10.0.0.2"]),
                        strings(&["http:8080"]),
                    ),
                    (
                        strings(&["10.0.0.1", "10.0.0.3"]),
                        strings(&["10.0.0.2"]),
                        strings(&["metrics:9100"]),
                    ),
                ],
            ),
            (
                "a headless Service without ports lists bare addresses",
                with(headless, vec![]),
                vec![pod("a", "10.0.0.1", true, &[])],
                vec![(strings(&["10.0.0.1"]), vec![], vec![])],
            ),
            (
                "a Service with an IP but no ports lists nothing",
                with(plain, vec![]),
                vec![pod("a", "10.0.0.1", true, &[])],
                vec![],
            ),
        ];
        for (name, svc, pods, want) in cases {
            let pods: Vec<&Pod> = pods.iter().collect();
            assert_eq!(summary(&desired_subsets(&svc, &pods)), want, "{name}");
        }
    }

    #[test]
    fn addresses_carry_node_target_and_hostname_for_their_subdomain() {
        let svc = service(vec![port("", IntOrString::Int(80))]);
        let mut p = pod("web-0", "10.0.0.1", true, &[]);
        let spec = p.spec.as_mut().unwrap();
        spec.hostname = Some("web-0".into());
        spec.subdomain = Some("web".into());
        let subsets = desired_subsets(&svc, &[&p]);
        let address = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(address.hostname.as_deref(), Some("web-0"));
        assert_eq!(address.node_name.as_deref(), Some("node-a"));
        let target = address.target_ref.as_ref().unwrap();
        assert_eq!(
            (
                target.kind.as_deref(),
                target.name.as_deref(),
                target.uid.as_deref()
            ),
            (Some("Pod"), Some("web-0"), Some("uid-web-0"))
        );
        // Another subdomain: no hostname.
        p.spec.as_mut().unwrap().subdomain = Some("other".into());
        let subsets = desired_subsets(&svc, &[&p]);
        assert_eq!(subsets[0].addresses.as_ref().unwrap()[0].hostname, None);
    }

    #[test]
    fn the_address_family_follows_the_service() {
        let mut svc = service(vec![port("", IntOrString::Int(80))]);
        let mut dual = pod("a", "10.0.0.1", true, &[]);
        dual.status.as_mut().unwrap().pod_ips = Some(vec![
            PodIP {
                ip: "10.0.0.1".into(),
            },
            PodIP {
                ip: "fd00::1".into(),
            },
        ]);
        assert_eq!(address_for(&svc, &dual).unwrap().ip, "10.0.0.1");
        svc.spec.as_mut().unwrap().ip_families = Some(vec!["IPv6".into()]);
        assert_eq!(address_for(&svc, &dual).unwrap().ip, "fd00::1");
        let v4_only = pod("b", "10.0.0.2", true, &[]);
        assert!(address_for(&svc, &v4_only).is_none());
    }

    fn address(ip: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        }
    }

    fn core_port(name: &str, number: i32) -> EndpointPort {
        EndpointPort {
            name: Some(name.into()),
            port: number,
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    #[test]
    fn repacking_never_lets_ready_override_not_ready() {
        let subsets = [
            EndpointSubset {
                addresses: Some(vec![address("10.0.0.1")]),
                ports: Some(vec![core_port("a", 1)]),
                ..Default::default()
            },
            EndpointSubset {
                not_ready_addresses: Some(vec![address("10.0.0.1")]),
                ports: Some(vec![core_port("a", 1)]),
                ..Default::default()
            },
            EndpointSubset {
                addresses: Some(vec![address("10.0.0.1")]),
                ports: Some(vec![core_port("b", 2)]),
                ..Default::default()
            },
        ];
        assert_eq!(
            summary(&repack_subsets(&subsets)),
            vec![
                (vec![], strings(&["10.0.0.1"]), strings(&["a:1"])),
                (strings(&["10.0.0.1"]), vec![], strings(&["b:2"])),
            ]
        );
    }

    fn many(ready: usize, not_ready: usize) -> EndpointSubset {
        let ips = |n: usize, base: usize| -> Vec<EndpointAddress> {
            (0..n)
                .map(|i| address(&format!("10.{}.{}.{}", base, i / 250, i % 250)))
                .collect()
        };
        EndpointSubset {
            addresses: non_empty(ips(ready, 1)),
            not_ready_addresses: non_empty(ips(not_ready, 2)),
            ports: Some(vec![core_port("", 80)]),
        }
    }

    fn counts(subsets: &[EndpointSubset]) -> Vec<(usize, usize)> {
        subsets
            .iter()
            .map(|s| {
                (
                    s.addresses.as_ref().map_or(0, Vec::len),
                    s.not_ready_addresses.as_ref().map_or(0, Vec::len),
                )
            })
            .collect()
    }

    #[test]
    fn truncation_keeps_ready_addresses_first_and_in_proportion() {
        let cases = [
            (vec![many(1000, 0)], false, vec![(1000, 0)]),
            (vec![many(1200, 0)], true, vec![(1000, 0)]),
            (vec![many(900, 300)], true, vec![(900, 100)]),
            (vec![many(1200, 50)], true, vec![(1000, 0)]),
            (
                vec![many(600, 0), many(600, 0)],
                true,
                vec![(500, 0), (500, 0)],
            ),
            (
                vec![many(300, 100), many(300, 300)],
                false,
                vec![(300, 100), (300, 300)],
            ),
            (
                vec![many(300, 100), many(300, 400)],
                true,
                vec![(300, 80), (300, 320)],
            ),
            (
                vec![many(500, 200), many(300, 600)],
                true,
                vec![(500, 50), (300, 150)],
            ),
        ];
        for (mut subsets, cut, want) in cases {
            assert_eq!(truncate(&mut subsets), cut, "{want:?}");
            assert_eq!(counts(&subsets), want);
        }
    }

    #[test]
    fn endpoints_are_created_once_and_rewritten_only_on_change() {
        let svc = service(vec![port("http", named("http"))]);
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        let a = pod("a", "10.0.0.1", true, &[("http", 8080)]);
        let b = pod("b", "10.0.0.2", true, &[("http", 8080)]);
        let Action::Create(created) = reconcile(&svc, &[&a, &b], None, Some(at)) else {
            panic!("expected a create");
        };
        assert_eq!(created.metadata.name.as_deref(), Some("web"));
        let labels = created.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "a");
        assert_eq!(labels[LABEL_MANAGED_BY], CONTROLLER_NAME);
        assert!(!labels.contains_key(IS_HEADLESS_SERVICE));
        let annotations = created.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            annotations[LAST_CHANGE_TRIGGER_TIME],
            "2023-11-14T22:13:20Z"
        );
        assert!(!annotations.contains_key(OVER_CAPACITY));

        // Stored as written: nothing to do, whatever the trigger time.
        let mut stored = created.clone();
        stored.metadata.resource_version = Some("5".into());
        assert_eq!(
            reconcile(&svc, &[&a, &b], Some(&stored), None),
            Action::Nothing
        );

        // A readiness flip is an update that keeps what others set.
        stored
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("note".into(), "kept".into());
        let b_down = pod("b", "10.0.0.2", false, &[("http", 8080)]);
        let Action::Update(updated) = reconcile(&svc, &[&a, &b_down], Some(&stored), None) else {
            panic!("expected an update");
        };
        assert_eq!(updated.metadata.resource_version.as_deref(), Some("5"));
        assert_eq!(
            updated.metadata.annotations.as_ref().unwrap()["note"],
            "kept"
        );
        assert!(!updated
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key(LAST_CHANGE_TRIGGER_TIME));
        assert_eq!(
            summary(updated.subsets.as_ref().unwrap()),
            vec![(
                strings(&["10.0.0.1"]),
                strings(&["10.0.0.2"]),
                strings(&["http:8080"])
            )]
        );

        // A Service label change is an update too.
        let mut relabelled = svc.clone();
        relabelled.metadata.labels = Some([("team".to_string(), "b".to_string())].into());
        assert!(matches!(
            reconcile(&relabelled, &[&a, &b], Some(&stored), None),
            Action::Update(_)
        ));

        // Headless Services are marked.
        let mut headless = svc.clone();
        headless.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let Action::Create(created) = reconcile(&headless, &[&a], None, None) else {
            panic!("expected a create");
        };
        assert_eq!(
            created.metadata.labels.as_ref().unwrap()[IS_HEADLESS_SERVICE],
            ""
        );
    }

    #[test]
    fn an_over_capacity_service_is_truncated_once() {
        let svc = service(vec![port("", IntOrString::Int(80))]);
        let pods: Vec<Pod> = (0..1100)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.0.{}.{}", i / 250, i % 250 + 1),
                    true,
                    &[],
                )
            })
            .collect();
        let pods: Vec<&Pod> = pods.iter().collect();
        let Action::Create(created) = reconcile(&svc, &pods, None, None) else {
            panic!("expected a create");
        };
        assert_eq!(
            created.metadata.annotations.as_ref().unwrap()[OVER_CAPACITY],
            TRUNCATED
        );
        let total: usize = counts(created.subsets.as_ref().unwrap())
            .iter()
            .map(|(r, n)| r + n)
            .sum();
        assert_eq!(total, MAX_CAPACITY);
        assert_eq!(
            reconcile(&svc, &pods, Some(&created), None),
            Action::Nothing
        );
        // Back under capacity: the annotation goes.
        let Action::Update(updated) = reconcile(&svc, &pods[..10], Some(&created), None) else {
            panic!("expected an update");
        };
        assert!(updated.metadata.annotations.is_none());
    }

    #[test]
    fn endpoints_changes_queue_repairs_but_not_our_own_echo() {
        let services = Informer::<Service>::empty();
        services.apply(service(vec![]));
        let mut writes = WriteTracker::default();
        let key = ObjectKey::new("ns", "web");
        let endpoints = |rv: &str| {
            Arc::new(Endpoints {
                metadata: ObjectMeta {
                    name: Some("web".into()),
                    namespace: Some("ns".into()),
                    resource_version: Some(rv.into()),
                    ..Default::default()
                },
                subsets: None,
            })
        };
        writes.written(&key, "web", Some("3"));
        let echo = Change::Added(endpoints("3"));
        assert!(on_endpoints_change(&services, &mut writes, &echo).is_empty());
        let tampered = Change::Updated {
            old: endpoints("3"),
            new: endpoints("4"),
        };
        assert_eq!(
            on_endpoints_change(&services, &mut writes, &tampered),
            vec![key.clone()]
        );
        let deleted = Change::Deleted(endpoints("4"));
        assert_eq!(
            on_endpoints_change(&services, &mut writes, &deleted),
            vec![key.clone()]
        );
        // Endpoints of a Service we do not manage are left alone.
        let other = Arc::new(Endpoints {
            metadata: ObjectMeta {
                name: Some("manual".into()),
                namespace: Some("ns".into()),
                resource_version: Some("9".into()),
                ..Default::default()
            },
            subsets: None,
        });
        assert!(on_endpoints_change(&services, &mut writes, &Change::Added(other)).is_empty());
    }
}
