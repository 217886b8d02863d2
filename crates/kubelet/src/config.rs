//! The kubelet's configuration and the parsing of its flag values, with
//! upstream's syntax and checks:
//! - `--register-with-taints key=value:Effect,key2:Effect` (upstream's
//!   `utiltaints` parser; the effect is required here, since a node taint
//!   without one is invalid anyway);
//! - `--node-labels k=v,...`, refusing labels in the `kubernetes.io` and
//!   `k8s.io` namespaces outside the set a kubelet may set, with upstream's
//!   message (so `node-role.kubernetes.io/worker` is refused, as upstream
//!   refuses it);
//! - Go durations (`10s`, `1m30s`, `500ms`) and resource quantities.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

use crate::admission::parse_quantity_milli;
use crate::runtime::fake::{fake_digest, FakeRuntime};
use crate::runtime::ContainerRuntime;

/// The version the kubelet reports (`nodeInfo.kubeletVersion`).
pub const KUBELET_VERSION: &str = "v1.33.0-tugboat";

/// What the node is made of: capacity and identity (upstream gets these
/// from cAdvisor; the fake runtime makes them up from flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    /// Quantities, as `status.capacity` shows them.
    pub cpu: String,
    pub memory: String,
    pub ephemeral_storage: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    /// Go's names: `amd64`, `arm64`.
    pub architecture: String,
    pub operating_system: String,
}

/// Go's `GOARCH` for the architecture we run on.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `PRETTY_NAME` of `/etc/os-release`.
fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

/// A UUID-shaped string determined by `seed`.
fn uuid_of(seed: &str) -> String {
    let h = fake_digest(seed);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl MachineInfo {
    /// A made-up machine for the fake runtime: the given capacity, IDs
    /// derived from the node name (so hollow nodes differ), the host's
    /// kernel and OS image.
    pub fn fake(node_name: &str, cpu: &str, memory: &str, ephemeral_storage: &str) -> Self {
        MachineInfo {
            cpu: cpu.into(),
            memory: memory.into(),
            ephemeral_storage: ephemeral_storage.into(),
            machine_id: fake_digest(&format!("machine/{node_name}"))[..32].to_string(),
            system_uuid: uuid_of(&format!("system/{node_name}")),
            boot_id: uuid_of(&format!("boot/{node_name}/{}", std::process::id())),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
            os_image: os_image(),
            architecture: go_arch().into(),
            operating_system: std::env::consts::OS.into(),
        }
    }
}

/// `MemTotal` of `/proc/meminfo` as a quantity (`16384256Ki`), as
/// cAdvisor reports the node's memory.
pub fn mem_total(meminfo: &str) -> Option<String> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then(|| format!("{kib}Ki"))
}

impl MachineInfo {
    /// This host, for runtimes that run pods on it: its cpus and memory
    /// (upstream's cAdvisor), its machine ID when it has one, and the given
    /// ephemeral-storage capacity.
    pub fn host(node_name: &str, ephemeral_storage: &str) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| mem_total(&m))
            .unwrap_or_else(|| "0".into());
        let mut machine =
            MachineInfo::fake(node_name, &cpus.to_string(), &memory, ephemeral_storage);
        if let Some(id) = read_trimmed("/etc/machine-id") {
            machine.machine_id = id;
        }
        if let Some(boot) = read_trimmed("/proc/sys/kernel/random/boot_id") {
            machine.boot_id = boot;
        }
        machine
    }
}

/// Everything a kubelet runs with. [`KubeletConfig::new`] gives upstream's
/// defaults and a fresh fake runtime.
#[derive(Clone)]
pub struct KubeletConfig {
    pub node_name: String,
    /// The node's `InternalIP` (and the `hostIP` of its pods).
    pub node_ip: IpAddr,
    /// Where pod IPs come from; `spec.podCIDR` of the Node wins when set.
    /// `None`: derived from the node name ([`default_pod_cidr`]).
    pub pod_cidr: Option<String>,
    /// `--node-labels`, on top of the labels every kubelet sets.
    pub node_labels: BTreeMap<String, String>,
    /// `--register-with-taints`: only applied when the Node is created.
    pub register_with_taints: Vec<Taint>,
    /// `--max-pods`: the `pods` capacity.
    pub max_pods: u32,
    pub machine: MachineInfo,
    pub runtime: Arc<dyn ContainerRuntime>,
    /// How often the node status is computed (`--node-status-update-frequency`).
    pub node_status_update_frequency: Duration,
    /// How often an unchanged status is written anyway.
    pub node_status_report_frequency: Duration,
    /// `leaseDurationSeconds` of the node Lease.
    pub node_lease_duration_seconds: i32,
    /// How often the Lease is renewed.
    pub node_lease_renew_interval: Duration,
    /// The API write rate limit (`--kube-api-qps`, `--kube-api-burst`).
    pub kube_api_qps: f64,
    pub kube_api_burst: u32,
    /// Record Events (Pulled, Created, Started, ...) as upstream does.
    pub record_events: bool,
    /// Concurrent pod status writers.
    pub status_writers: usize,
    /// The HTTPS API's port (`--port`; [`crate::server`]); 0 disables it,
    /// the default here so that tests and hollow nodes bind nothing.
    pub port: u16,
    /// The HTTPS API's address (`--address`).
    pub address: IpAddr,
    /// DER certificates of the CAs whose client certificates the HTTPS API
    /// accepts: the cluster CA from the kubeconfig.
    pub client_ca: Vec<Vec<u8>>,
    /// `--root-dir`: pod volumes go under `<root>/pods/<uid>/volumes`
    /// (upstream's layout). `None` (hollow nodes): volumes are not
    /// materialized and containers get no mounts.
    pub root_dir: Option<std::path::PathBuf>,
    /// Whether the kubelet may mount (tmpfs for `emptyDir.medium: Memory`):
    /// only as root.
    pub allow_mount: bool,
    /// `--pod-manifest-path`: the directory of static pod manifests.
    pub pod_manifest_path: Option<std::path::PathBuf>,
    /// `--file-check-frequency`: how often that directory is read.
    pub file_check_frequency: Duration,
}

impl std::fmt::Debug for KubeletConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletConfig")
            .field("node_name", &self.node_name)
            .field("node_ip", &self.node_ip)
            .field("pod_cidr", &self.pod_cidr)
            .field("node_labels", &self.node_labels)
            .field("max_pods", &self.max_pods)
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}

impl KubeletConfig {
    /// Upstream's defaults for node `node_name` with the fake runtime: 8
    /// cpus, 32Gi memory, 100Gi ephemeral storage, 110 pods, status every
    /// 10 s, a 40 s Lease renewed every 10 s, 50 writes/s (burst 100).
    pub fn new(node_name: impl Into<String>) -> Self {
        let node_name = node_name.into();
        KubeletConfig {
            machine: MachineInfo::fake(&node_name, "8", "32Gi", "100Gi"),
            node_name,
            node_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            pod_cidr: None,
            node_labels: BTreeMap::new(),
            register_with_taints: Vec::new(),
            max_pods: 110,
            runtime: Arc::new(FakeRuntime::new()),
            node_status_update_frequency: Duration::from_secs(10),
            node_status_report_frequency: Duration::from_secs(10),
            node_lease_duration_seconds: 40,
            node_lease_renew_interval: Duration::from_secs(10),
            kube_api_qps: 50.0,
            kube_api_burst: 100,
            record_events: true,
            status_writers: 2,
            port: 0,
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            client_ca: Vec::new(),
            root_dir: None,
            allow_mount: false,
            pod_manifest_path: None,
            file_check_frequency: Duration::from_secs(20),
        }
    }
}

/// A /24 in 10.244.0.0/16 chosen by the node name's hash: what a node
/// without `--pod-cidr` and without `spec.podCIDR` allocates pod IPs from.
/// Two nodes may collide; pass `--pod-cidr` when that matters.
pub fn default_pod_cidr(node_name: &str) -> String {
    let h = fake_digest(node_name);
    let octet = u8::from_str_radix(&h[..2], 16).unwrap_or(0);
    format!("10.244.{octet}.0/24")
}

/// Parses a Go duration (`10s`, `1m30s`, `500ms`, `1h`); a bare number is
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(format!("unknown unit {unit:?} in duration {s:?}")),
        };
        total += number * scale;
        rest = tail;
    }
    Ok(Duration::from_secs_f64(total))
}

/// Checks a resource quantity (`8`, `500m`, `32Gi`).
pub fn parse_quantity_flag(s: &str) -> Result<String, String> {
    match parse_quantity_milli(s) {
        Some(v) if v >= 0 => Ok(s.trim().to_string()),
        _ => Err(format!(
            "{s:?} is not a resource quantity (e.g. 8, 500m, 32Gi)"
        )),
    }
}

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Why `name` cannot name a Node (it must be a DNS subdomain), if it
/// cannot.
pub fn node_name_problem(name: &str) -> Option<String> {
    (!is_dns_subdomain(name)).then(|| {
        "a node name must be a lowercase DNS subdomain: at most 253 characters of a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit".to_string()
    })
}

/// Upstream's `IsQualifiedName`: `[prefix/]name`.
pub fn qualified_name_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !is_dns_subdomain(p) {
            return Some(format!(
                "prefix part of {key:?} must be a lowercase DNS subdomain"
            ));
        }
    }
    if !is_name_part(name) {
        return Some(format!(
            "name part of {key:?} must be 63 characters or less, alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    None
}

/// Upstream's `IsValidLabelValue`.
pub fn label_value_problem(value: &str) -> Option<String> {
    (!value.is_empty() && !is_name_part(value)).then(|| {
        format!("label value {value:?} must be 63 characters or less, alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric")
    })
}

/// The labels of the `kubernetes.io` namespace a kubelet may set
/// (upstream's `kubeletapis.KubeletLabels()`).
const KUBELET_LABELS: &[&str] = &[
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "kubernetes.io/arch",
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];
/// Namespaces in which any label is a kubelet's to set.
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

fn in_namespace(prefix: &str, namespace: &str) -> bool {
    prefix == namespace || prefix.ends_with(&format!(".{namespace}"))
}

fn is_kubelet_label(key: &str) -> bool {
    if KUBELET_LABELS.contains(&key) {
        return true;
    }
    let prefix = key.split_once('/').map_or("", |(p, _)| p);
    KUBELET_LABEL_NAMESPACES
        .iter()
        .any(|ns| in_namespace(prefix, ns))
}

fn is_kubernetes_label(key: &str) -> bool {
    let prefix = key.split_once('/').map_or("", |(p, _)| p);
    in_namespace(prefix, "kubernetes.io") || in_namespace(prefix, "k8s.io")
}

/// Parses `--node-labels` (`k=v,k2=v2`) with upstream's checks.
pub fn parse_node_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("malformed pair {pair:?}, expect string=string"))?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    let unknown: BTreeSet<&str> = labels
        .keys()
        .map(String::as_str)
        .filter(|k| is_kubernetes_label(k) && !is_kubelet_label(k))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [{}]\n--node-labels in the 'kubernetes.io' namespace must begin with an allowed prefix ({}) or be in the specifically allowed set ({})",
            unknown.into_iter().collect::<Vec<_>>().join(" "),
            KUBELET_LABEL_NAMESPACES.join(", "),
            KUBELET_LABELS.join(", ")
        ));
    }
    let problems: Vec<String> = labels
        .iter()
        .flat_map(|(k, v)| [qualified_name_problem(k), label_value_problem(v)])
        .flatten()
        .collect();
    if !problems.is_empty() {
        return Err(format!("invalid node labels: {}", problems.join("; ")));
    }
    Ok(labels)
}

const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Parses one taint, `key=value:Effect` or `key:Effect`.
pub fn parse_taint(spec: &str) -> Result<Taint, String> {
    let (kv, effect) = spec.split_once(':').ok_or_else(|| {
        format!("invalid taint spec: {spec}, expected <key>=<value>:<effect> or <key>:<effect>")
    })?;
    if effect.contains(':') {
        return Err(format!("invalid taint spec: {spec}"));
    }
    if !EFFECTS.contains(&effect) {
        return Err(format!(
            "invalid taint effect: {effect}, unsupported taint effect (one of {})",
            EFFECTS.join(", ")
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((_, v)) if v.contains('=') => return Err(format!("invalid taint spec: {spec}")),
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    if let Some(problem) = qualified_name_problem(key) {
        return Err(format!("invalid taint spec: {spec}, {problem}"));
    }
    if let Some(problem) = value.and_then(label_value_problem) {
        return Err(format!("invalid taint spec: {spec}, {problem}"));
    }
    Ok(Taint {
        key: key.to_string(),
        value: value.filter(|v| !v.is_empty()).map(str::to_string),
        effect: effect.to_string(),
        time_added: None,
    })
}

/// Parses `--register-with-taints`: comma-separated taints, no two with
/// the same key and effect.
pub fn parse_taints(s: &str) -> Result<Vec<Taint>, String> {
    let mut taints: Vec<Taint> = Vec::new();
    for spec in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let taint = parse_taint(spec)?;
        if taints
            .iter()
            .any(|t| t.key == taint.key && t.effect == taint.effect)
        {
            return Err(format!(
                "duplicated taints with the same key and effect: {spec}"
            ));
        }
        taints.push(taint);
    }
    Ok(taints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse_with_upstream_syntax() {
        let taints =
            parse_taints("dedicated=gpu:NoSchedule, spot:PreferNoSchedule,a/b=c:NoExecute")
                .unwrap();
        let got: Vec<(&str, Option<&str>, &str)> = taints
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_deref(), t.effect.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("dedicated", Some("gpu"), "NoSchedule"),
                ("spot", None, "PreferNoSchedule"),
                ("a/b", Some("c"), "NoExecute"),
            ]
        );
        assert_eq!(parse_taints("").unwrap(), []);
    }

    #[test]
    fn bad_taints_are_refused_clearly() {
        let cases = [
            ("dedicated=gpu", "expected <key>=<value>:<effect>"),
            ("dedicated=gpu:Sometimes", "unsupported taint effect"),
            ("a=b=c:NoSchedule", "invalid taint spec"),
            ("-bad:NoSchedule", "name part"),
            ("k=has space:NoSchedule", "label value"),
            ("a:NoSchedule,a=x:NoSchedule", "duplicated taints"),
        ];
        for (input, wanted) in cases {
            let err = parse_taints(input).unwrap_err();
            assert!(err.contains(wanted), "{input}: {err}");
        }
        // Same key, other effect: fine.
        assert_eq!(parse_taints("a:NoSchedule,a:NoExecute").unwrap().len(), 2);
    }

    #[test]
    fn node_labels_follow_the_kubelet_rules() {
        let labels =
            parse_node_labels("tier=web,topology.kubernetes.io/zone=z1,node.kubernetes.io/pool=a")
                .unwrap();
        assert_eq!(labels.len(), 3);
        assert_eq!(labels["tier"], "web");
        let err = parse_node_labels("node-role.kubernetes.io/worker=").unwrap_err();
        assert!(
            err.starts_with("unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [node-role.kubernetes.io/worker]"),
            "{err}"
        );
        assert!(parse_node_labels("tier")
            .unwrap_err()
            .contains("malformed pair"));
        assert!(parse_node_labels("tier=a b")
            .unwrap_err()
            .contains("invalid node labels"));
    }

    #[test]
    fn durations_and_quantities_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("40").unwrap(), Duration::from_secs(40));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_quantity_flag("32Gi").unwrap(), "32Gi");
        assert!(parse_quantity_flag("lots")
            .unwrap_err()
            .contains("quantity"));
    }

    #[test]
    fn the_default_pod_cidr_is_a_slash_24_of_10_244() {
        let cidr = default_pod_cidr("node-a");
        assert!(
            cidr.starts_with("10.244.") && cidr.ends_with(".0/24"),
            "{cidr}"
        );
        assert_eq!(cidr, default_pod_cidr("node-a"));
        // Names one letter apart spread out.
        let cidrs: std::collections::BTreeSet<String> = (1..=5)
            .map(|i| default_pod_cidr(&format!("n{i}")))
            .collect();
        assert_eq!(cidrs.len(), 5, "{cidrs:?}");
    }

    #[test]
    fn the_host_memory_comes_from_meminfo() {
        let cases = [
            (
                "MemTotal:       16384256 kB\nMemFree: 1 kB\n",
                Some("16384256Ki"),
            ),
            ("MemFree: 1 kB\n", None),
            ("MemTotal: lots kB\n", None),
            ("MemTotal: 12 MB\n", None),
        ];
        for (meminfo, wanted) in cases {
            assert_eq!(mem_total(meminfo).as_deref(), wanted, "{meminfo}");
        }
        let host = MachineInfo::host("n", "10Gi");
        assert!(host.cpu.parse::<u32>().unwrap() >= 1);
        assert_eq!(host.ephemeral_storage, "10Gi");
    }
}
