//! Resource quantities and a pod's effective requests, as the scheduler
//! counts them.
//!
//! Mirrors upstream's `resource.Quantity` parsing (`k8s.io/apimachinery`),
//! `resource.PodRequests` (`k8s.io/component-helpers/resource`), the
//! scheduler's `framework.Resource` bookkeeping and the constructor of
//! `framework.NodeInfo` (requested resources, allocatable, used host ports).
//!
//! Upstream sums exact quantities and rounds once at the end; here each
//! quantity is read in milli-units (rounded up, away from zero, like
//! `MilliValue`) and the per-resource sums are rounded up to whole units
//! (like `Value`) at the end, which is exact to a thousandth of a unit.
//!
//! Not mirrored: pod-level `spec.resources` (the `PodLevelResources` feature,
//! off by default in 1.33) and in-place resize status resources.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::framework::{HostPort, NodeInfo, Resources};

/// `v1.ResourceCPU`.
pub const CPU: &str = "cpu";
/// `v1.ResourceMemory`.
pub const MEMORY: &str = "memory";
/// `v1.ResourceEphemeralStorage`.
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
/// `v1.ResourcePods`.
pub const PODS: &str = "pods";

/// The cpu a container without a cpu request counts as when scoring
/// (upstream's `DefaultMilliCPURequest`, 0.1 core).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory a container without a memory request counts as when scoring
/// (upstream's `DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A quantity split into its exact parts: `mantissa * 10^exp10 * 2^exp2`.
struct Parts {
    negative: bool,
    mantissa: u128,
    exp10: i64,
    exp2: u32,
}

fn parse_parts(s: &str) -> Option<Parts> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut negative = false;
    if let Some(&c) = bytes.first() {
        if c == b'+' || c == b'-' {
            negative = c == b'-';
            i = 1;
        }
    }
    let int_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = &s[int_start..i];
    let mut frac_digits = "";
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = &s[frac_start..i];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let (exp10, exp2) = match &s[i..] {
        "" => (0, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        suffix => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (exponent.parse::<i64>().ok()?, 0)
        }
    };
    // Trailing zeros of the fraction carry no value; leading zeros neither.
    let frac_digits = frac_digits.trim_end_matches('0');
    let mut mantissa: u128 = 0;
    let mut exp10 = exp10 - frac_digits.len() as i64;
    for d in int_digits.bytes().chain(frac_digits.bytes()) {
        match mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(d - b'0')))
        {
            Some(m) => mantissa = m,
            // Too many digits to hold: drop the rest (they only matter for
            // values far beyond what any resource holds).
            None => exp10 += 1,
        }
    }
    Some(Parts {
        negative,
        mantissa,
        exp10,
        exp2,
    })
}

/// `value * 10^scale`, rounded away from zero, saturating.
fn scaled(parts: &Parts, scale: i64) -> i128 {
    let exp10 = parts.exp10.saturating_add(scale);
    let magnitude: u128 = if parts.mantissa == 0 {
        0
    } else {
        let with_binary = parts.mantissa.checked_mul(1u128 << parts.exp2);
        match with_binary {
            None => u128::MAX,
            Some(m) if exp10 >= 0 => u32::try_from(exp10)
                .ok()
                .and_then(|e| 10u128.checked_pow(e))
                .and_then(|p| m.checked_mul(p))
                .unwrap_or(u128::MAX),
            Some(m) => match u32::try_from(-exp10)
                .ok()
                .and_then(|e| 10u128.checked_pow(e))
            {
                Some(divisor) => m.div_ceil(divisor),
                // A positive amount smaller than the unit rounds up to one.
                None => 1,
            },
        }
    };
    let magnitude = i128::try_from(magnitude).unwrap_or(i128::MAX);
    if parts.negative {
        -magnitude
    } else {
        magnitude
    }
}

/// Parses a quantity (`500m`, `1.5Gi`, `1e3`, `2`) to its value in whole
/// units (bytes for memory), rounded up like upstream's `Quantity.Value()`.
/// `None` if the string is not a quantity.
pub fn parse_quantity(s: &str) -> Option<i128> {
    parse_parts(s).map(|p| scaled(&p, 0))
}

/// Parses a quantity to thousandths of a unit (millicores for cpu), rounded
/// up like upstream's `Quantity.MilliValue()`. `None` if the string is not a
/// quantity.
pub fn parse_quantity_milli(s: &str) -> Option<i128> {
    parse_parts(s).map(|p| scaled(&p, 3))
}

/// Whether upstream keeps a resource in `ScalarResources`: extended
/// resources (`example.com/gpu`), `kubernetes.io/`-prefixed ones, hugepages
/// and attachable volumes (upstream's `IsScalarResourceName`).
pub fn is_scalar_resource_name(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || name.contains("kubernetes.io/")
        || (name.contains('/') && !name.starts_with("requests."))
}

/// Amounts by resource name, in thousandths of a unit: the exact working
/// form of upstream's `v1.ResourceList` arithmetic.
type MilliList = BTreeMap<String, i128>;

fn milli_list(list: Option<&BTreeMap<String, Quantity>>) -> MilliList {
    list.into_iter()
        .flatten()
        .filter_map(|(name, q)| Some((name.clone(), parse_quantity_milli(&q.0)?)))
        .collect()
}

fn add_into(total: &mut MilliList, other: &MilliList) {
    for (name, amount) in other {
        *total.entry(name.clone()).or_insert(0) += amount;
    }
}

fn max_into(total: &mut MilliList, other: &MilliList) {
    for (name, amount) in other {
        let entry = total.entry(name.clone()).or_insert(*amount);
        *entry = (*entry).max(*amount);
    }
}

/// A container's requests; with `defaults`, cpu and memory requests that
/// are missing (not zero) count as the scoring defaults (upstream's
/// `NonMissingContainerRequests`).
fn container_requests(container: &Container, defaults: bool) -> MilliList {
    let mut requests = milli_list(
        container
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref()),
    );
    if defaults {
        requests
            .entry(CPU.to_string())
            .or_insert(i128::from(DEFAULT_MILLI_CPU_REQUEST));
        requests
            .entry(MEMORY.to_string())
            .or_insert(i128::from(DEFAULT_MEMORY_REQUEST) * 1000);
    }
    requests
}

/// Upstream's `PodRequests`: the sum of the app containers and the
/// restartable (sidecar) init containers, raised to what each ordinary init
/// container needs while it runs (itself plus the sidecars started before
/// it), plus the pod overhead.
fn pod_request_list(pod: &Pod, defaults: bool) -> MilliList {
    let Some(spec) = pod.spec.as_ref() else {
        return MilliList::new();
    };
    let mut requests = MilliList::new();
    for container in &spec.containers {
        add_into(&mut requests, &container_requests(container, defaults));
    }
    let mut sidecars = MilliList::new();
    let mut init_max = MilliList::new();
    for container in spec.init_containers.iter().flatten() {
        let own = container_requests(container, defaults);
        let while_running = if container.restart_policy.as_deref() == Some("Always") {
            add_into(&mut requests, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut sum = own;
            add_into(&mut sum, &sidecars);
            sum
        };
        max_into(&mut init_max, &while_running);
    }
    max_into(&mut requests, &init_max);
    add_into(&mut requests, &milli_list(spec.overhead.as_ref()));
    requests
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Whole units from thousandths, rounded away from zero.
fn whole(milli: i128) -> i64 {
    let magnitude = milli.unsigned_abs().div_ceil(1000);
    let magnitude = i128::try_from(magnitude).unwrap_or(i128::MAX);
    clamp(if milli < 0 { -magnitude } else { magnitude })
}

/// Upstream's `framework.Resource.Add` of a resource list: cpu in
/// millicores, the rest in whole units, unknown native names dropped.
fn to_resources(list: &MilliList) -> Resources {
    let mut resources = Resources::default();
    for (name, &milli) in list {
        match name.as_str() {
            CPU => resources.milli_cpu = clamp(milli),
            MEMORY => resources.memory = whole(milli),
            EPHEMERAL_STORAGE => resources.ephemeral_storage = whole(milli),
            PODS => resources.pods = whole(milli),
            other if is_scalar_resource_name(other) => {
                resources.scalar.insert(other.to_string(), whole(milli));
            }
            _ => {}
        }
    }
    resources
}

/// The effective requests of `pod` (upstream's `resource.PodRequests`,
/// without pod-level resources), with `pods` = 1 for the slot it takes.
pub fn pod_requests(pod: &Pod) -> Resources {
    let mut resources = to_resources(&pod_request_list(pod, false));
    resources.pods = 1;
    resources
}

/// Like [`pod_requests`], but containers that request no cpu or no memory
/// count as [`DEFAULT_MILLI_CPU_REQUEST`] and [`DEFAULT_MEMORY_REQUEST`]:
/// what upstream's least/most-allocated scoring counts (`NonZeroRequested`).
pub fn non_zero_pod_requests(pod: &Pod) -> Resources {
    let mut resources = to_resources(&pod_request_list(pod, true));
    resources.pods = 1;
    resources
}

fn add_resources(total: &mut Resources, other: &Resources) {
    total.milli_cpu = total.milli_cpu.saturating_add(other.milli_cpu);
    total.memory = total.memory.saturating_add(other.memory);
    total.ephemeral_storage = total
        .ephemeral_storage
        .saturating_add(other.ephemeral_storage);
    total.pods = total.pods.saturating_add(other.pods);
    for (name, amount) in &other.scalar {
        let entry = total.scalar.entry(name.clone()).or_insert(0);
        *entry = entry.saturating_add(*amount);
    }
}

/// The sum of [`non_zero_pod_requests`] over the pods on a node (upstream's
/// `NodeInfo.NonZeroRequested`).
pub fn non_zero_requested(node: &NodeInfo) -> Resources {
    let mut total = Resources::default();
    for pod in &node.pods {
        add_resources(&mut total, &non_zero_pod_requests(pod));
    }
    total
}

/// A node's `status.allocatable` in scheduler units (upstream's
/// `NewResource(node.Status.Allocatable)`; `pods` is the allowed pod count).
pub fn node_allocatable(node: &Node) -> Resources {
    let list = milli_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
    to_resources(&list)
}

/// The host ports a pod's containers bind: `(host IP, protocol, port)` with
/// an empty IP read as `0.0.0.0` and an empty protocol as `TCP`, ports of
/// zero (no host port) left out, as upstream's `HostPortInfo` records them.
pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    let mut ports: Vec<HostPort> = Vec::new();
    let containers = pod.spec.iter().flat_map(|s| &s.containers);
    for port in containers.flat_map(|c| c.ports.iter().flatten()) {
        let host_port = port.host_port.unwrap_or(0);
        if host_port <= 0 {
            continue;
        }
        let ip = match port.host_ip.as_deref() {
            None | Some("") => "0.0.0.0",
            Some(ip) => ip,
        };
        let protocol = match port.protocol.as_deref() {
            None | Some("") => "TCP",
            Some(p) => p,
        };
        ports.push((ip.to_string(), protocol.to_string(), host_port));
    }
    ports
}

/// Builds the scheduler's view of a node with `pods` on it: their summed
/// requests, the node's allocatable and the host ports in use.
pub fn node_info(node: Arc<Node>, pods: Vec<Arc<Pod>>) -> NodeInfo {
    let mut requested = Resources::default();
    let mut non_zero_requested = Resources::default();
    let mut used_ports: Vec<HostPort> = Vec::new();
    for pod in &pods {
        add_resources(&mut requested, &pod_requests(pod));
        add_resources(&mut non_zero_requested, &non_zero_pod_requests(pod));
        for port in pod_host_ports(pod) {
            if !used_ports.contains(&port) {
                used_ports.push(port);
            }
        }
    }
    let allocatable = node_allocatable(&node);
    let pods_with_affinity = pods
        .iter()
        .filter(|p| crate::plugins::inter_pod_affinity::has_affinity(p))
        .cloned()
        .collect();
    NodeInfo {
        node,
        pods,
        requested,
        non_zero_requested,
        allocatable,
        used_ports,
        pods_with_affinity,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    #[test]
    fn quantities_parse_like_upstream() {
        let cases: &[(&str, Option<i128>, Option<i128>)] = &[
            ("1", Some(1), Some(1000)),
            ("0", Some(0), Some(0)),
            ("500m", Some(1), Some(500)),
            ("0.5", Some(1), Some(500)),
            (".5", Some(1), Some(500)),
            ("1.", Some(1), Some(1000)),
            ("1.5Gi", Some(1610612736), Some(1610612736000)),
            ("1Ki", Some(1024), Some(1024000)),
            ("128Mi", Some(134217728), Some(134217728000)),
            ("1Ti", Some(1 << 40), Some((1 << 40) * 1000)),
            ("2Pi", Some(2 << 50), Some((2 << 50) * 1000)),
            ("1Ei", Some(1 << 60), Some((1 << 60) * 1000)),
            ("1k", Some(1000), Some(1_000_000)),
            ("1M", Some(1_000_000), Some(1_000_000_000)),
            ("2G", Some(2_000_000_000), Some(2_000_000_000_000)),
            ("1T", Some(1_000_000_000_000), Some(1_000_000_000_000_000)),
            ("1P", Some(10i128.pow(15)), Some(10i128.pow(18))),
            ("1E", Some(10i128.pow(18)), Some(10i128.pow(21))),
            ("1e3", Some(1000), Some(1_000_000)),
            ("1E3", Some(1000), Some(1_000_000)),
            ("1e-3", Some(1), Some(1)),
            ("12e+2", Some(1200), Some(1_200_000)),
            ("0.1m", Some(1), Some(1)),
            ("100m", Some(1), Some(100)),
            ("2.000", Some(2), Some(2000)),
            ("+3", Some(3), Some(3000)),
            ("-1.5", Some(-2), Some(-1500)),
            ("1e-100", Some(1), Some(1)),
            ("", None, None),
            (".", None, None),
            ("1K", None, None),
            ("1e", None, None),
            ("1 Gi", None, None),
            ("abc", None, None),
            ("1.2.3", None, None),
        ];
        for (s, value, milli) in cases {
            assert_eq!(parse_quantity(s), *value, "value of {s:?}");
            assert_eq!(parse_quantity_milli(s), *milli, "milli-value of {s:?}");
        }
    }

    #[test]
    fn scalar_resource_names_are_extended_hugepages_and_prefixed_ones() {
        assert!(is_scalar_resource_name("nvidia.com/gpu"));
        assert!(is_scalar_resource_name("hugepages-2Mi"));
        assert!(is_scalar_resource_name("kubernetes.io/something"));
        assert!(is_scalar_resource_name("attachable-volumes-aws-ebs"));
        assert!(!is_scalar_resource_name("cpu"));
        assert!(!is_scalar_resource_name("storage"));
        assert!(!is_scalar_resource_name("requests.example.com/foo"));
    }

    #[test]
    fn pod_requests_follow_upstream_pod_requests() {
        let cases = [
            (
                "a pod with no containers requests only its slot",
                json!({"containers": []}),
                Resources {
                    pods: 1,
                    ..Resources::default()
                },
            ),
            (
                "app containers are summed",
                json!({"containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "0.25", "memory": "512Mi",
                        "nvidia.com/gpu": "1"}}},
                ]}),
                Resources {
                    milli_cpu: 350,
                    memory: 1536 << 20,
                    pods: 1,
                    scalar: [("nvidia.com/gpu".to_string(), 1)].into(),
                    ..Resources::default()
                },
            ),
            (
                "an init container larger than the app containers raises the request",
                json!({
                    "initContainers": [
                        {"name": "i1", "resources": {"requests": {"cpu": "2"}}},
                        {"name": "i2", "resources": {"requests": {"memory": "3Gi"}}},
                    ],
                    "containers": [
                        {"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
                    ],
                }),
                Resources {
                    milli_cpu: 2000,
                    memory: 3 << 30,
                    pods: 1,
                    ..Resources::default()
                },
            ),
            (
                "sidecars add to the sum and to later init containers",
                json!({
                    "initContainers": [
                        {"name": "s", "restartPolicy": "Always",
                            "resources": {"requests": {"cpu": "500m"}}},
                        {"name": "i", "resources": {"requests": {"cpu": "2"}}},
                    ],
                    "containers": [
                        {"name": "a", "resources": {"requests": {"cpu": "1"}}},
                    ],
                }),
                Resources {
                    milli_cpu: 2500,
                    pods: 1,
                    ..Resources::default()
                },
            ),
            (
                "an init container before a sidecar does not count the sidecar",
                json!({
                    "initContainers": [
                        {"name": "i", "resources": {"requests": {"cpu": "1200m"}}},
                        {"name": "s", "restartPolicy": "Always",
                            "resources": {"requests": {"cpu": "500m"}}},
                    ],
                    "containers": [
                        {"name": "a", "resources": {"requests": {"cpu": "600m"}}},
                    ],
                }),
                Resources {
                    milli_cpu: 1200,
                    pods: 1,
                    ..Resources::default()
                },
            ),
            (
                "the overhead is added on top",
                json!({
                    "overhead": {"cpu": "250m", "memory": "120Mi"},
                    "initContainers": [
                        {"name": "i", "resources": {"requests": {"cpu": "2"}}},
                    ],
                    "containers": [
                        {"name": "a", "resources": {"requests": {"cpu": "1",
                            "ephemeral-storage": "1G"}}},
                    ],
                }),
                Resources {
                    milli_cpu: 2250,
                    memory: 120 << 20,
                    ephemeral_storage: 1_000_000_000,
                    pods: 1,
                    ..Resources::default()
                },
            ),
        ];
        for (name, spec, want) in cases {
            assert_eq!(pod_requests(&pod(spec)), want, "{name}");
        }
    }

    #[test]
    fn non_zero_requests_default_only_missing_cpu_and_memory() {
        let p = pod(json!({
            "initContainers": [{"name": "i"}],
            "containers": [
                {"name": "a"},
                {"name": "b", "resources": {"requests": {"cpu": "0", "memory": "1Gi"}}},
            ],
        }));
        let want = Resources {
            milli_cpu: 100,
            memory: (1 << 30) + DEFAULT_MEMORY_REQUEST,
            pods: 1,
            ..Resources::default()
        };
        assert_eq!(non_zero_pod_requests(&p), want);
    }

    #[test]
    fn node_info_sums_pods_and_reads_allocatable_and_ports() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110",
                "ephemeral-storage": "100Gi", "example.com/foo": "3"}},
        }))
        .unwrap();
        let a = pod(json!({"containers": [{"name": "a",
            "resources": {"requests": {"cpu": "1", "example.com/foo": "1"}},
            "ports": [{"containerPort": 80, "hostPort": 8080},
                      {"containerPort": 53, "hostPort": 53, "protocol": "UDP",
                       "hostIP": "10.0.0.1"},
                      {"containerPort": 9090}]}]}));
        let b = pod(json!({"containers": [{"name": "b",
            "resources": {"requests": {"memory": "1Gi"}}}]}));
        let info = node_info(Arc::new(node), vec![Arc::new(a), Arc::new(b)]);
        assert_eq!(info.name(), "n1");
        assert_eq!(
            info.requested,
            Resources {
                milli_cpu: 1000,
                memory: 1 << 30,
                pods: 2,
                scalar: [("example.com/foo".to_string(), 1)].into(),
                ..Resources::default()
            }
        );
        assert_eq!(
            info.allocatable,
            Resources {
                milli_cpu: 4000,
                memory: 8 << 30,
                ephemeral_storage: 100 << 30,
                pods: 110,
                scalar: [("example.com/foo".to_string(), 3)].into(),
            }
        );
        assert_eq!(
            info.used_ports,
            vec![
                ("0.0.0.0".to_string(), "TCP".to_string(), 8080),
                ("10.0.0.1".to_string(), "UDP".to_string(), 53),
            ]
        );
        let nz = non_zero_requested(&info);
        assert_eq!(
            (nz.milli_cpu, nz.memory),
            (1100, DEFAULT_MEMORY_REQUEST + (1 << 30))
        );
    }
}
