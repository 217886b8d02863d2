//! Upstream's `PodTopologySpread` plugin: spread matching pods evenly over
//! topology domains (`spec.topologySpreadConstraints`).
//!
//! Filter (constraints with `whenUnsatisfiable: DoNotSchedule`, upstream's
//! `PreFilter` + `Filter`):
//! - Domains are counted over the *eligible* nodes: nodes carrying every
//!   constraint's topology key and, per constraint, passing its node
//!   inclusion policies (`nodeAffinityPolicy: Honor`, the default, requires
//!   the pod's `nodeSelector` and required node affinity to match;
//!   `nodeTaintsPolicy: Honor`, default `Ignore`, requires the pod to
//!   tolerate the node's `NoSchedule`/`NoExecute` taints).
//! - A domain's count is the number of pods on its eligible nodes in the
//!   incoming pod's namespace, not terminating, matching the constraint's
//!   `labelSelector` (plus `matchLabelKeys` with the incoming pod's values).
//!   As upstream, an empty selector (`{}`) counts no pods and a missing one
//!   matches nothing.
//! - A node without a constraint's key fails `Unresolvable` with "node(s)
//!   didn't match pod topology spread constraints (missing required label)".
//!   Otherwise `count(domain) + (1 if the pod matches the selector) -
//!   global minimum` must be `<= maxSkew`, or the node fails `Unschedulable`
//!   with "node(s) didn't match pod topology spread constraints". The global
//!   minimum is the smallest count over eligible domains, or 0 when there
//!   are fewer of them than `minDomains` (default 1).
//!
//! Score (constraints with `whenUnsatisfiable: ScheduleAnyway`, upstream's
//! `PreScore` + `Score` + `NormalizeScore`): for each constraint, a node gets
//! `count(domain) * ln(domains + 2) + (maxSkew - 1)` (for
//! `kubernetes.io/hostname` the count is the node's own, the domain number
//! the node count); lower is better, and normalization maps a raw score `s`
//! to `100 * (max + min - s) / max`. Nodes lacking a constraint's key score
//! 0. Differences from upstream, forced by the plugin interface:
//! - upstream sizes domains over the nodes that passed the filters; here the
//!   candidates are the snapshot's nodes that match the pod's required node
//!   affinity (only the logarithmic weights can differ);
//! - `score` reports a node lacking a key as `-1`, and `normalize` turns it
//!   into 0 (upstream keeps a set of ignored node names instead).
//!
//! Left out: the cluster-level default constraints (`defaultingType:
//! System`), which need the Services/ReplicaSets/StatefulSets selecting the
//! pod; a pod without constraints is neither filtered nor scored.
//!
//! Every call recomputes the state from the snapshot; a driver may call
//! [`PodTopologySpread::pre_filter`] once per pod and
//! [`PodTopologySpread::filter_with_state`] per node.

use std::collections::BTreeMap;

use api::selector::{self, LabelSelector, Operator, Requirement};
use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{Filter, FilterPlugin, NodeInfo, ScorePlugin, Snapshot, MAX_NODE_SCORE};
use crate::plugins::node_affinity::matches_required_node_affinity;
use crate::plugins::taint_toleration::{pod_tolerations, tolerations_tolerate_taint};

/// Upstream's plugin name.
pub const NAME: &str = "PodTopologySpread";
/// The node would make some domain exceed `maxSkew`.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
/// The node lacks a constraint's topology key.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

fn labels_of(map: &Option<BTreeMap<String, String>>) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    map.as_ref().unwrap_or(&EMPTY)
}

/// One parsed constraint (upstream's internal `topologySpreadConstraint`).
#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: LabelSelector,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

impl Constraint {
    /// Whether the node counts for this constraint at all (upstream's
    /// `matchNodeInclusionPolicies`).
    fn includes(&self, pod: &Pod, node: &NodeInfo) -> bool {
        (!self.honor_node_affinity || matches_required_node_affinity(pod, node))
            && (!self.honor_node_taints || tolerates_scheduling_taints(pod, &node.node))
    }

    /// Matching pods on `node` in namespace `namespace` (upstream's
    /// `countPodsMatchSelector`).
    fn count(&self, node: &NodeInfo, namespace: &str) -> i64 {
        if self.selector.is_empty() {
            return 0;
        }
        node.pods
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.metadata.namespace.as_deref().unwrap_or("") == namespace
                    && self.selector.matches(labels_of(&p.metadata.labels))
            })
            .count() as i64
    }
}

/// The pod's constraints with `whenUnsatisfiable == action`.
fn constraints(pod: &Pod, action: &str) -> Result<Vec<Constraint>, String> {
    let pod_labels = labels_of(&pod.metadata.labels);
    let mut out = Vec::new();
    let all = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref());
    for c in all
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == action)
    {
        let invalid =
            |e: selector::SelectorError| format!("invalid topology spread constraint: {e}");
        let mut selector =
            selector::from_optional_label_selector(c.label_selector.as_ref()).map_err(invalid)?;
        // matchLabelKeys; a selector that matches nothing stays so.
        for key in c.match_label_keys.iter().flatten() {
            if let Some(value) = pod_labels.get(key) {
                let r = Requirement::new(key.as_str(), Operator::Equals, vec![value.clone()])
                    .map_err(invalid)?;
                selector = selector.with_requirement(r);
            }
        }
        out.push(Constraint {
            max_skew: i64::from(c.max_skew),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: i64::from(c.min_domains.unwrap_or(1)),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        });
    }
    Ok(out)
}

fn has_all_keys(labels: &BTreeMap<String, String>, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

/// What the filter needs for one incoming pod (upstream's
/// `preFilterState`), computed once by [`PodTopologySpread::pre_filter`].
#[derive(Debug, Clone, Default)]
pub struct PreFilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: eligible domain value → matching pods.
    counts: Vec<BTreeMap<String, i64>>,
}

impl PreFilterState {
    /// The global minimum of constraint `i`, taking `minDomains` into
    /// account.
    fn min_match(&self, i: usize) -> i64 {
        let counts = &self.counts[i];
        if (counts.len() as i64) < self.constraints[i].min_domains {
            return 0;
        }
        counts
            .values()
            .copied()
            .min()
            .unwrap_or(i64::from(i32::MAX))
    }
}

/// Upstream's `PodTopologySpread` filter and score plugin (without
/// cluster-level default constraints).
#[derive(Debug, Clone, Default)]
pub struct PodTopologySpread;

impl PodTopologySpread {
    pub fn new() -> Self {
        PodTopologySpread
    }

    /// Counts matching pods per eligible domain for the pod's
    /// `DoNotSchedule` constraints. Fails (with a message) on an invalid
    /// selector.
    pub fn pre_filter(&self, pod: &Pod, snapshot: &Snapshot) -> Result<PreFilterState, String> {
        let constraints = constraints(pod, "DoNotSchedule")?;
        let mut counts = vec![BTreeMap::new(); constraints.len()];
        if constraints.is_empty() {
            return Ok(PreFilterState::default());
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        for info in &snapshot.nodes {
            let labels = info.labels();
            if !has_all_keys(labels, &constraints) {
                continue;
            }
            for (c, counts) in constraints.iter().zip(counts.iter_mut()) {
                if !c.includes(pod, info) {
                    continue;
                }
                let value = labels[&c.topology_key].clone();
                *counts.entry(value).or_insert(0) += c.count(info, namespace);
            }
        }
        Ok(PreFilterState {
            constraints,
            counts,
        })
    }

    /// Upstream's `Filter`, given the pre-computed state.
    pub fn filter_with_state(&self, state: &PreFilterState, pod: &Pod, node: &NodeInfo) -> Filter {
        let labels = node.labels();
        let pod_labels = labels_of(&pod.metadata.labels);
        for (i, c) in state.constraints.iter().enumerate() {
            let Some(value) = labels.get(&c.topology_key) else {
                return Filter::Unresolvable(vec![ERR_REASON_NODE_LABEL_NOT_MATCH.to_string()]);
            };
            let self_match = i64::from(c.selector.matches(pod_labels));
            let match_num = state.counts[i].get(value).copied().unwrap_or(0);
            if match_num + self_match - state.min_match(i) > c.max_skew {
                return Filter::Unschedulable(vec![ERR_REASON_CONSTRAINTS_NOT_MATCH.to_string()]);
            }
        }
        Filter::Pass
    }

    /// Upstream's raw `Score` for `node`: `-1` if the node lacks a
    /// `ScheduleAnyway` constraint's key, else the rounded sum described in
    /// the module documentation (0 for a pod without such constraints).
    pub fn raw_score(&self, pod: &Pod, node: &NodeInfo, snapshot: &Snapshot) -> i64 {
        let Ok(constraints) = constraints(pod, "ScheduleAnyway") else {
            return 0;
        };
        if constraints.is_empty() {
            return 0;
        }
        if !has_all_keys(node.labels(), &constraints) {
            return -1;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        // The candidate nodes (upstream: those that passed the filters).
        let candidates: Vec<&NodeInfo> = snapshot
            .nodes
            .iter()
            .map(|n| n.as_ref())
            .filter(|n| matches_required_node_affinity(pod, n))
            .filter(|n| has_all_keys(n.labels(), &constraints))
            .collect();
        let mut score = 0.0;
        for c in &constraints {
            let value = &node.labels()[&c.topology_key];
            let (count, domains) = if c.topology_key == LABEL_HOSTNAME {
                (c.count(node, namespace), candidates.len())
            } else {
                let mut domains: Vec<&String> = candidates
                    .iter()
                    .map(|n| &n.labels()[&c.topology_key])
                    .collect();
                domains.sort();
                domains.dedup();
                let count = snapshot
                    .nodes
                    .iter()
                    .filter(|n| n.labels().get(&c.topology_key) == Some(value))
                    .filter(|n| has_all_keys(n.labels(), &constraints))
                    .filter(|n| c.includes(pod, n))
                    .map(|n| c.count(n, namespace))
                    .sum::<i64>();
                (count, domains.len())
            };
            let weight = ((domains + 2) as f64).ln();
            score += count as f64 * weight + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, pod: &Pod, node: &NodeInfo, snapshot: &Snapshot) -> Filter {
        match self.pre_filter(pod, snapshot) {
            Ok(state) => self.filter_with_state(&state, pod, node),
            Err(message) => Filter::Unresolvable(vec![message]),
        }
    }
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, pod: &Pod, node: &NodeInfo, snapshot: &Snapshot) -> i64 {
        self.raw_score(pod, node, snapshot)
    }

    /// Upstream's `NormalizeScore`: fewer matching pods is better; nodes
    /// reported as `-1` (missing a key) get 0.
    fn normalize(&self, pod: &Pod, scores: &mut [i64]) {
        if constraints(pod, "ScheduleAnyway").map_or(true, |c| c.is_empty()) {
            return;
        }
        let counted = scores.iter().copied().filter(|s| *s >= 0);
        let min = counted.clone().min().unwrap_or(0);
        let max = counted.max().unwrap_or(0);
        for score in scores.iter_mut() {
            *score = if *score < 0 {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
    }

    /// Upstream's default weight in the default profile.
    fn weight(&self) -> i64 {
        2
    }
}

/// Whether the pod tolerates every `NoSchedule`/`NoExecute` taint of the
/// node (upstream's `FindMatchingUntoleratedTaint` with
/// `DoNotScheduleTaintsFilterFunc`).
fn tolerates_scheduling_taints(pod: &Pod, node: &Node) -> bool {
    let tolerations = pod_tolerations(pod);
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| tolerations_tolerate_taint(tolerations, taint))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{labeled_node as node, normalized_scores};

    const ZONE: &str = "topology.kubernetes.io/zone";

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("valid pod")
    }

    /// A pod `name` in `default` labelled `app: <app>`.
    fn app(name: &str, app: &str) -> Pod {
        pod(json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": app}}}))
    }

    /// A `web` pod with the given constraints and extra spec fields.
    fn incoming(constraints: serde_json::Value, extra: serde_json::Value) -> Pod {
        let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
        spec["topologySpreadConstraints"] = constraints;
        if let serde_json::Value::Object(fields) = extra {
            for (k, v) in fields {
                spec[k] = v;
            }
        }
        pod(json!({
            "metadata": {"name": "new", "namespace": "default", "labels": {"app": "web"}},
            "spec": spec,
        }))
    }

    fn constraint(key: &str, max_skew: i32, when: &str) -> serde_json::Value {
        json!({
            "maxSkew": max_skew,
            "topologyKey": key,
            "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}},
        })
    }

    /// `n` web pods named after `prefix`.
    fn webs(prefix: &str, n: usize) -> Vec<Pod> {
        (0..n)
            .map(|i| app(&format!("{prefix}-{i}"), "web"))
            .collect()
    }

    fn skew() -> Filter {
        Filter::Unschedulable(vec![ERR_REASON_CONSTRAINTS_NOT_MATCH.into()])
    }

    fn missing() -> Filter {
        Filter::Unresolvable(vec![ERR_REASON_NODE_LABEL_NOT_MATCH.into()])
    }

    #[test]
    fn filters_follow_upstream_rules() {
        let zone1 = || json!([constraint(ZONE, 1, "DoNotSchedule")]);
        struct Case {
            name: &'static str,
            pod: Pod,
            nodes: Vec<NodeInfo>,
            want: Vec<Filter>,
        }
        let cases = vec![
            Case {
                name: "a pod without constraints passes everywhere",
                pod: app("p", "web"),
                nodes: vec![node("n1", &[], webs("w", 3))],
                want: vec![Filter::Pass],
            },
            Case {
                name: "maxSkew 1 across zones admits only the emptiest zone",
                pod: incoming(zone1(), json!({})),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], webs("a", 1)),
                    node("b1", &[(ZONE, "b")], webs("b", 1)),
                    node("c1", &[(ZONE, "c")], vec![]),
                    node("c2", &[(ZONE, "c")], vec![app("db", "db")]),
                ],
                want: vec![skew(), skew(), Filter::Pass, Filter::Pass],
            },
            Case {
                name: "balanced zones admit every zone",
                pod: incoming(zone1(), json!({})),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], webs("a", 1)),
                    node("b1", &[(ZONE, "b")], webs("b", 1)),
                ],
                want: vec![Filter::Pass, Filter::Pass],
            },
            Case {
                name: "nodes missing the topology key fail as unresolvable and are not domains",
                pod: incoming(zone1(), json!({})),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], webs("a", 1)),
                    node("nozone", &[], vec![]),
                ],
                want: vec![Filter::Pass, missing()],
            },
            Case {
                name: "minDomains above the domain count makes the global minimum 0",
                pod: incoming(
                    json!([{
                        "maxSkew": 1,
                        "minDomains": 3,
                        "topologyKey": ZONE,
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"app": "web"}},
                    }]),
                    json!({}),
                ),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], webs("a", 1)),
                    node("b1", &[(ZONE, "b")], webs("b", 1)),
                ],
                want: vec![skew(), skew()],
            },
            Case {
                name: "minDomains met keeps the real global minimum",
                pod: incoming(
                    json!([{
                        "maxSkew": 1,
                        "minDomains": 2,
                        "topologyKey": ZONE,
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"app": "web"}},
                    }]),
                    json!({}),
                ),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], webs("a", 1)),
                    node("b1", &[(ZONE, "b")], webs("b", 1)),
                ],
                want: vec![Filter::Pass, Filter::Pass],
            },
            Case {
                name: "nodes excluded by node affinity are not domains",
                pod: incoming(zone1(), json!({"nodeSelector": {"disk": "ssd"}})),
                nodes: vec![
                    node("a1", &[(ZONE, "a"), ("disk", "ssd")], webs("a", 1)),
                    node("b1", &[(ZONE, "b")], vec![]),
                ],
                want: vec![Filter::Pass, Filter::Pass],
            },
            Case {
                name: "nodeAffinityPolicy Ignore counts nodes the pod cannot use",
                pod: incoming(
                    json!([{
                        "maxSkew": 1,
                        "nodeAffinityPolicy": "Ignore",
                        "topologyKey": ZONE,
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"app": "web"}},
                    }]),
                    json!({"nodeSelector": {"disk": "ssd"}}),
                ),
                nodes: vec![
                    node("a1", &[(ZONE, "a"), ("disk", "ssd")], webs("a", 1)),
                    node("b1", &[(ZONE, "b")], vec![]),
                ],
                want: vec![skew(), Filter::Pass],
            },
            Case {
                name: "pods in other namespaces and terminating pods are not counted",
                pod: incoming(zone1(), json!({})),
                nodes: vec![
                    node(
                        "a1",
                        &[(ZONE, "a")],
                        vec![
                            pod(json!({"metadata": {
                                "name": "o", "namespace": "other", "labels": {"app": "web"},
                            }})),
                            pod(json!({"metadata": {
                                "name": "t", "namespace": "default", "labels": {"app": "web"},
                                "deletionTimestamp": "2024-01-01T00:00:00Z",
                            }})),
                        ],
                    ),
                    node("b1", &[(ZONE, "b")], vec![]),
                ],
                want: vec![Filter::Pass, Filter::Pass],
            },
            Case {
                name: "a pod not matching its own selector adds nothing to the skew",
                pod: pod(json!({
                    "metadata": {"name": "x", "namespace": "default", "labels": {"app": "db"}},
                    "spec": {
                        "containers": [{"name": "c", "image": "i"}],
                        "topologySpreadConstraints": zone1(),
                    },
                })),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], webs("a", 1)),
                    node("b1", &[(ZONE, "b")], vec![]),
                ],
                want: vec![Filter::Pass, Filter::Pass],
            },
            Case {
                name: "ScheduleAnyway constraints never filter",
                pod: incoming(json!([constraint(ZONE, 1, "ScheduleAnyway")]), json!({})),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], webs("a", 5)),
                    node("nozone", &[], vec![]),
                ],
                want: vec![Filter::Pass, Filter::Pass],
            },
            Case {
                name: "matchLabelKeys narrow the count to pods with the same values",
                pod: pod(json!({
                    "metadata": {"name": "x", "namespace": "default",
                                 "labels": {"app": "web", "rev": "2"}},
                    "spec": {
                        "containers": [{"name": "c", "image": "i"}],
                        "topologySpreadConstraints": [{
                            "maxSkew": 1,
                            "topologyKey": ZONE,
                            "whenUnsatisfiable": "DoNotSchedule",
                            "labelSelector": {"matchLabels": {"app": "web"}},
                            "matchLabelKeys": ["rev"],
                        }],
                    },
                })),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], webs("old", 3)),
                    node("b1", &[(ZONE, "b")], vec![]),
                ],
                want: vec![Filter::Pass, Filter::Pass],
            },
        ];
        let plugin = PodTopologySpread::new();
        for case in cases {
            let snapshot = Snapshot::new(case.nodes);
            let got: Vec<Filter> = snapshot
                .nodes
                .iter()
                .map(|n| FilterPlugin::filter(&plugin, &case.pod, n, &snapshot))
                .collect();
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn scores_favour_domains_with_fewer_matching_pods() {
        struct Case {
            name: &'static str,
            pod: Pod,
            nodes: Vec<NodeInfo>,
            want: Vec<i64>,
        }
        let cases = vec![
            Case {
                name: "the emptier zone scores highest and nodes without the key 0",
                pod: incoming(json!([constraint(ZONE, 1, "ScheduleAnyway")]), json!({})),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], webs("a", 2)),
                    node("b1", &[(ZONE, "b")], webs("b", 1)),
                    node("c1", &[(ZONE, "c")], vec![]),
                    node("nozone", &[], vec![]),
                ],
                // ln(5) ≈ 1.61: raw 3, 2, 0 → 100·(3+0-s)/3.
                want: vec![0, 33, 100, 0],
            },
            Case {
                name: "hostname spreading counts each node's own pods",
                pod: incoming(
                    json!([constraint(LABEL_HOSTNAME, 1, "ScheduleAnyway")]),
                    json!({}),
                ),
                nodes: vec![node("n1", &[], webs("a", 1)), node("n2", &[], vec![])],
                // ln(4) ≈ 1.39: raw 1, 0.
                want: vec![0, 100],
            },
            Case {
                name: "an even spread scores every node 100",
                pod: incoming(json!([constraint(ZONE, 1, "ScheduleAnyway")]), json!({})),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], vec![]),
                    node("b1", &[(ZONE, "b")], vec![]),
                ],
                want: vec![100, 100],
            },
            Case {
                name: "a pod without ScheduleAnyway constraints scores 0",
                pod: incoming(json!([constraint(ZONE, 1, "DoNotSchedule")]), json!({})),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], webs("a", 1)),
                    node("b1", &[(ZONE, "b")], vec![]),
                ],
                want: vec![0, 0],
            },
        ];
        let plugin = PodTopologySpread::new();
        for case in cases {
            let snapshot = Snapshot::new(case.nodes);
            let scores = normalized_scores(&plugin, &case.pod, &snapshot);
            assert_eq!(scores, case.want, "{}", case.name);
        }
    }

    #[test]
    fn taint_policy_honor_skips_untolerated_nodes() {
        let pod = incoming(
            json!([{
                "maxSkew": 1,
                "nodeTaintsPolicy": "Honor",
                "topologyKey": ZONE,
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "web"}},
            }]),
            json!({}),
        );
        let mut tainted = node("b1", &[(ZONE, "b")], vec![]);
        let mut n = (*tainted.node).clone();
        n.spec = Some(
            serde_json::from_value(json!({"taints": [{"key": "k", "effect": "NoSchedule"}]}))
                .unwrap(),
        );
        tainted.node = Arc::new(n);
        let snapshot = Snapshot::new(vec![node("a1", &[(ZONE, "a")], webs("a", 1)), tainted]);
        // Zone b is not a domain, so zone a's count is also the minimum.
        let state = PodTopologySpread.pre_filter(&pod, &snapshot).unwrap();
        assert_eq!(
            PodTopologySpread.filter_with_state(&state, &pod, &snapshot.nodes[0]),
            Filter::Pass
        );
        // With the default Ignore policy, zone b (0 pods) is the minimum.
        let mut ignoring = pod.clone();
        let spec = ignoring.spec.as_mut().unwrap();
        spec.topology_spread_constraints.as_mut().unwrap()[0].node_taints_policy = None;
        let state = PodTopologySpread.pre_filter(&ignoring, &snapshot).unwrap();
        assert_eq!(
            PodTopologySpread.filter_with_state(&state, &ignoring, &snapshot.nodes[0]),
            skew()
        );
    }
}
