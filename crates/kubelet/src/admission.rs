//! Pod admission: whether this node takes a pod bound to it, as upstream's
//! predicate admit handler (`pkg/kubelet/lifecycle/predicate.go`) decides
//! with the scheduler's general filters. Components may not depend on each
//! other here, so the checks the kubelet needs are re-stated:
//! - the OS: a pod labelled `kubernetes.io/os` or with `spec.os` for
//!   another OS is refused (`PodOSSelectorNodeLabelDoesNotMatch`,
//!   `PodOSNotSupported`);
//! - resources ([`fits`]): a free pod slot (`OutOfpods`), then cpu, memory,
//!   ephemeral-storage and extended resources the node has, against the sum
//!   of the effective requests of the pods it already runs (`OutOfcpu`
//!   etc., with upstream's "Node didn't have enough resource" message);
//!   extended resources the node does not have at all are cluster-level
//!   and skipped (`removeMissingExtendedResources`);
//! - `nodeSelector` and required node affinity (`NodeAffinity`), host
//!   ports (`NodePorts`), and `NoExecute` taints the pod does not tolerate
//!   (`TaintToleration`): `Predicate <name> failed: <reason>`.
//!
//! Only the first failure is reported, as upstream does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A quantity in thousandths of a unit (millicores, millibytes), rounded up
/// like upstream's `MilliValue`. `None` if `s` is not a quantity.
pub fn parse_quantity_milli(s: &str) -> Option<i128> {
    let s = s.trim();
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let number_len = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_len);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    // value = digits × 10^exp10 × 2^exp2
    let (mut exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
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
        other => {
            let exp = other.strip_prefix(['e', 'E'])?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (exp.parse().ok()?, 0)
        }
    };
    let frac = frac.trim_end_matches('0');
    let mut digits: u128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        digits = digits.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
    }
    exp10 = exp10 - i32::try_from(frac.len()).ok()? + 3;
    let mut value = digits.checked_mul(1u128 << exp2)?;
    if exp10 >= 0 {
        value = value.checked_mul(10u128.checked_pow(exp10.unsigned_abs())?)?;
    } else {
        let divisor = 10u128
            .checked_pow(exp10.unsigned_abs())
            .unwrap_or(u128::MAX);
        value = value.div_ceil(divisor);
    }
    let value = i128::try_from(value).ok()?;
    Some(if negative { -value } else { value })
}

/// Amounts by resource name, in thousandths.
pub type Amounts = BTreeMap<String, i128>;

fn amounts(list: Option<&BTreeMap<String, Quantity>>) -> Amounts {
    list.into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), parse_quantity_milli(&q.0)?)))
        .collect()
}

fn add(total: &mut Amounts, other: &Amounts) {
    for (k, v) in other {
        *total.entry(k.clone()).or_insert(0) += v;
    }
}

fn max_into(total: &mut Amounts, other: &Amounts) {
    for (k, v) in other {
        let e = total.entry(k.clone()).or_insert(*v);
        *e = (*e).max(*v);
    }
}

fn requests(c: &Container) -> Amounts {
    amounts(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

/// Upstream's `PodRequests`: app containers and sidecars add up; each
/// ordinary init container needs itself plus the sidecars started before
/// it; the pod takes the larger, plus its overhead.
pub fn pod_requests(pod: &Pod) -> Amounts {
    let Some(spec) = pod.spec.as_ref() else {
        return Amounts::new();
    };
    let mut total = Amounts::new();
    for c in &spec.containers {
        add(&mut total, &requests(c));
    }
    let mut sidecars = Amounts::new();
    let mut init_peak = Amounts::new();
    for c in spec.init_containers.iter().flatten() {
        let own = requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            add(&mut total, &own);
            add(&mut sidecars, &own);
            max_into(&mut init_peak, &sidecars);
        } else {
            let mut running = own;
            add(&mut running, &sidecars);
            max_into(&mut init_peak, &running);
        }
    }
    max_into(&mut total, &init_peak);
    add(&mut total, &amounts(spec.overhead.as_ref()));
    total
}

/// Upstream's `IsExtendedResourceName`: a qualified name outside the
/// `kubernetes.io/` namespace (`example.com/gpu`).
fn is_extended(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// Whole units from thousandths, rounded up (upstream's `Value`).
fn whole(milli: i128) -> i128 {
    if milli >= 0 {
        (milli + 999) / 1000
    } else {
        milli / 1000
    }
}

/// One resource the node lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insufficient {
    pub resource: String,
    pub requested: i128,
    pub used: i128,
    pub capacity: i128,
}

/// What `pod` lacks on `node` beside `others` (upstream's `Fits`): the pod
/// slot first, then cpu (millicores), memory and ephemeral-storage (bytes),
/// then extended resources by name.
pub fn fits(pod: &Pod, node: &Node, others: &[&Pod]) -> Vec<Insufficient> {
    let allocatable = amounts(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
    let mut lacking = Vec::new();
    let slots = allocatable.get("pods").map_or(0, |p| whole(*p));
    let used_slots = i128::try_from(others.len()).unwrap_or(i128::MAX);
    if used_slots + 1 > slots {
        lacking.push(Insufficient {
            resource: "pods".into(),
            requested: 1,
            used: used_slots,
            capacity: slots,
        });
    }
    let mut wanted = pod_requests(pod);
    wanted.retain(|name, v| *v > 0 && (!is_extended(name) || allocatable.contains_key(name)));
    let mut used = Amounts::new();
    for p in others {
        add(&mut used, &pod_requests(p));
    }
    let order = |name: &str| match name {
        "cpu" => 0,
        "memory" => 1,
        "ephemeral-storage" => 2,
        _ => 3,
    };
    let mut names: Vec<&String> = wanted
        .keys()
        .filter(|n| {
            n.as_str() != "pods" && (order(n) < 3 || is_extended(n) || n.starts_with("hugepages-"))
        })
        .collect();
    names.sort_by_key(|n| (order(n), n.to_string()));
    for name in names {
        let scale = |v: i128| if name == "cpu" { v } else { whole(v) };
        let want = wanted[name];
        let capacity = allocatable.get(name).copied().unwrap_or(0);
        let in_use = used.get(name).copied().unwrap_or(0);
        if want > capacity - in_use {
            lacking.push(Insufficient {
                resource: name.clone(),
                requested: scale(want),
                used: scale(in_use),
                capacity: scale(capacity),
            });
        }
    }
    lacking
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), [bound]) = (value.and_then(number), values) else {
                return false;
            };
            let Some(bound) = number(bound) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    // An empty term matches nothing.
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = node
                .metadata
                .name
                .as_deref()
                .filter(|_| r.key == "metadata.name");
            requirement_matches(r, value)
        })
}

/// `spec.nodeSelector` and required node affinity against the node.
pub fn matches_node_selector(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(selector) = &spec.node_selector {
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// The host ports a pod binds: (IP, protocol, port), `0.0.0.0` and `TCP`
/// filled in.
fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let containers = pod.spec.iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    });
    containers
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| {
            (
                p.host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.host_port.unwrap_or(0),
            )
        })
        .collect()
}

fn ports_conflict(a: &(String, String, i32), b: &(String, String, i32)) -> bool {
    a.2 == b.2 && a.1 == b.1 && (a.0 == b.0 || a.0 == "0.0.0.0" || b.0 == "0.0.0.0")
}

fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether the node takes `pod` beside the pods it runs; `Err` carries
/// upstream's reason and message.
pub fn admit(pod: &Pod, node: &Node, others: &[&Pod]) -> Result<(), (String, String)> {
    let os_label = "kubernetes.io/os";
    let node_os = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(os_label))
        .map_or(std::env::consts::OS, String::as_str);
    let pod_os_label = pod.metadata.labels.as_ref().and_then(|l| l.get(os_label));
    if pod_os_label.is_some_and(|os| os != node_os) {
        return Err((
            "PodOSSelectorNodeLabelDoesNotMatch".into(),
            "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label".into(),
        ));
    }
    let pod_os = pod.spec.as_ref().and_then(|s| s.os.as_ref());
    if pod_os.is_some_and(|os| os.name != node_os) {
        return Err((
            "PodOSNotSupported".into(),
            "Failed to admit pod as the OS field doesn't match node OS".into(),
        ));
    }
    if let Some(r) = fits(pod, node, others).into_iter().next() {
        return Err((
            format!("OutOf{}", r.resource),
            format!(
                "Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
                r.resource, r.requested, r.used, r.capacity
            ),
        ));
    }
    let failed = |name: &str, reason: &str| {
        Err((
            name.to_string(),
            format!("Predicate {name} failed: {reason}"),
        ))
    };
    if !matches_node_selector(pod, node) {
        return failed(
            "NodeAffinity",
            "node(s) didn't match Pod's node affinity/selector",
        );
    }
    let used: Vec<_> = others.iter().flat_map(|p| host_ports(p)).collect();
    if host_ports(pod)
        .iter()
        .any(|want| used.iter().any(|have| ports_conflict(want, have)))
    {
        return failed(
            "NodePorts",
            "node(s) didn't have free ports for the requested pod ports",
        );
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    if taints
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    {
        return failed(
            "TaintToleration",
            "node(s) had taints that the pod didn't tolerate",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_parse_to_thousandths_rounding_up() {
        let cases = [
            ("1", Some(1000)),
            ("500m", Some(500)),
            ("0.5", Some(500)),
            (".25", Some(250)),
            ("1.5Gi", Some(1_610_612_736_000)),
            ("128Mi", Some(134_217_728_000)),
            ("2k", Some(2_000_000)),
            ("1e3", Some(1_000_000)),
            ("1E-3", Some(1)),
            ("100n", Some(1)),
            ("-1", Some(-1000)),
            ("", None),
            ("abc", None),
            ("1Qi", None),
            ("1.2.3", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_quantity_milli(s), want, "{s}");
        }
    }

    fn node(taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/os": "linux", "disk": "ssd", "gen": "5"}},
            "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "3"}},
        }))
        .unwrap()
    }

    fn pod(name: &str, extra: serde_json::Value) -> Pod {
        let mut spec = json!({
            "nodeName": "n1",
            "containers": [{"name": "c", "image": "busybox",
                            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}],
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    }

    fn rejection(p: &Pod, n: &Node, others: &[Pod]) -> Option<(String, String)> {
        let others: Vec<&Pod> = others.iter().collect();
        admit(p, n, &others).err()
    }

    #[test]
    fn pod_requests_count_init_containers_and_sidecars_like_upstream() {
        let p = pod(
            "p",
            json!({
                "initContainers": [
                    {"name": "big-init", "resources": {"requests": {"cpu": "2"}}},
                    {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                ],
                "overhead": {"cpu": "10m"},
            }),
        );
        // max(500m + 100m, 2) + 10m overhead.
        assert_eq!(pod_requests(&p)["cpu"], 2010);
        assert_eq!(pod_requests(&p)["memory"], 1_073_741_824_000);
    }

    #[test]
    fn pods_that_fit_are_admitted() {
        let n = node(json!([]));
        assert_eq!(rejection(&pod("a", json!({})), &n, &[]), None);
        assert_eq!(
            rejection(&pod("b", json!({})), &n, &[pod("a", json!({}))]),
            None
        );
    }

    #[test]
    fn pods_that_do_not_fit_are_rejected_like_upstream() {
        let n = node(json!([]));
        let running = [pod("a", json!({})), pod("b", json!({}))];
        let big = pod(
            "big",
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1500m"}}}]}),
        );
        assert_eq!(
            rejection(&big, &n, &running),
            Some((
                "OutOfcpu".into(),
                "Node didn't have enough resource: cpu, requested: 1500, used: 1000, capacity: 2000"
                    .into()
            ))
        );
        let mem = pod(
            "mem",
            json!({"containers": [{"name": "c", "resources": {"requests": {"memory": "3Gi"}}}]}),
        );
        assert_eq!(
            rejection(&mem, &n, &running).map(|r| r.1),
            Some("Node didn't have enough resource: memory, requested: 3221225472, used: 2147483648, capacity: 4294967296".into())
        );
        let full = [
            pod("a", json!({})),
            pod("b", json!({})),
            pod("x", json!({"containers": [{"name": "c"}]})),
        ];
        assert_eq!(
            rejection(&pod("c", json!({})), &n, &full).map(|r| r.0),
            Some("OutOfpods".into())
        );
        // An extended resource the node does not have is not the kubelet's
        // business.
        let gpu = pod(
            "gpu",
            json!({"containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": "1"}}}]}),
        );
        assert_eq!(rejection(&gpu, &n, &[]), None);
    }

    #[test]
    fn selectors_ports_and_no_execute_taints_are_checked() {
        let n = node(json!([]));
        let wrong = pod("a", json!({"nodeSelector": {"disk": "hdd"}}));
        assert_eq!(
            rejection(&wrong, &n, &[]),
            Some((
                "NodeAffinity".into(),
                "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector"
                    .into()
            ))
        );
        let affinity = |op: &str, values: serde_json::Value| {
            pod(
                "a",
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "gen", "operator": op, "values": values}]}]
                }}}}),
            )
        };
        assert_eq!(rejection(&affinity("Gt", json!(["4"])), &n, &[]), None);
        assert!(rejection(&affinity("Lt", json!(["4"])), &n, &[]).is_some());
        assert_eq!(rejection(&affinity("In", json!(["5", "6"])), &n, &[]), None);
        assert!(rejection(&affinity("NotIn", json!(["5"])), &n, &[]).is_some());

        let port = |name| {
            pod(
                name,
                json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
            )
        };
        assert_eq!(
            rejection(&port("b"), &n, &[port("a")]).map(|r| r.0),
            Some("NodePorts".into())
        );

        let tainted = node(json!([
            {"key": "gone", "effect": "NoExecute"},
            {"key": "busy", "effect": "NoSchedule"},
        ]));
        assert_eq!(
            rejection(&pod("a", json!({})), &tainted, &[]),
            Some((
                "TaintToleration".into(),
                "Predicate TaintToleration failed: node(s) had taints that the pod didn't tolerate"
                    .into()
            ))
        );
        // NoSchedule taints are the scheduler's business, not admission's.
        let tolerant = pod(
            "a",
            json!({"tolerations": [{"key": "gone", "operator": "Exists", "effect": "NoExecute"}]}),
        );
        assert_eq!(rejection(&tolerant, &tainted, &[]), None);
    }

    #[test]
    fn the_os_must_match() {
        let n = node(json!([]));
        let windows = pod("w", json!({"os": {"name": "windows"}}));
        assert_eq!(
            rejection(&windows, &n, &[]).map(|r| r.0),
            Some("PodOSNotSupported".into())
        );
    }
}
