//! NodeAffinity: a pod fits only nodes matching its `spec.nodeSelector` and
//! its required node affinity, and prefers nodes matching its preferred
//! node affinity terms.
//!
//! Mirrors upstream's `pkg/scheduler/framework/plugins/nodeaffinity` and the
//! node selector matching of `k8s.io/component-helpers/scheduling/corev1/nodeaffinity`:
//! terms are ORed, the requirements of a term ANDed; an empty term, or one
//! that does not parse (unknown operator, wrong number of values, a
//! non-integer for `Gt`/`Lt`, a field other than `metadata.name`), matches
//! nothing. The scheduler profile's `addedAffinity` argument is not
//! supported.

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};

use api::selector::{Operator, Requirement};

use crate::framework::{Filter, FilterPlugin, NodeInfo, ScorePlugin, Snapshot, MAX_NODE_SCORE};

/// Upstream's plugin name.
pub const NAME: &str = "NodeAffinity";

/// Upstream's `ErrReasonPod`.
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";

/// The only field a `matchFields` requirement may name.
const FIELD_METADATA_NAME: &str = "metadata.name";

/// Upstream's `helper.DefaultNormalizeScore`: scales `scores` so the highest
/// becomes `max_priority` (and, with `reverse`, flips them so the lowest
/// raw score gets `max_priority`). All zero stays all zero, or becomes all
/// `max_priority` when reversed.
pub fn default_normalize_score(max_priority: i64, reverse: bool, scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max_priority);
        }
        return;
    }
    for score in scores.iter_mut() {
        let scaled = max_priority * *score / max;
        *score = if reverse {
            max_priority - scaled
        } else {
            scaled
        };
    }
}

fn label_requirement(expr: &NodeSelectorRequirement) -> Option<Requirement> {
    let operator = match expr.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return None,
    };
    Requirement::new(&expr.key, operator, expr.values.clone().unwrap_or_default()).ok()
}

/// Whether a node with `labels` and `name` matches one selector term; `None`
/// if the term does not parse (upstream skips such terms).
fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> Option<bool> {
    let expressions = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if expressions.is_empty() && fields.is_empty() {
        // An empty term selects no objects.
        return Some(false);
    }
    let requirements: Vec<Requirement> = expressions
        .iter()
        .map(label_requirement)
        .collect::<Option<_>>()?;
    let mut field_terms: Vec<(bool, &str)> = Vec::new();
    for expr in fields {
        let values = expr.values.as_deref().unwrap_or(&[]);
        if expr.key != FIELD_METADATA_NAME || values.len() != 1 {
            return None;
        }
        match expr.operator.as_str() {
            "In" => field_terms.push((true, &values[0])),
            "NotIn" => field_terms.push((false, &values[0])),
            _ => return None,
        }
    }
    let labels = node.labels();
    if !requirements.iter().all(|r| r.matches(labels)) {
        return Some(false);
    }
    // Upstream has no fields to match for a node without a name, and then
    // ignores the field requirements.
    let name = node.name();
    if !name.is_empty() && !field_terms.iter().all(|&(eq, v)| (name == v) == eq) {
        return Some(false);
    }
    Some(true)
}

/// Whether `node` satisfies the pod's `spec.nodeSelector` and its
/// `requiredDuringSchedulingIgnoredDuringExecution` node affinity
/// (upstream's `GetRequiredNodeAffinity(pod).Match(node)`).
pub fn matches_required_node_affinity(pod: &Pod, node: &NodeInfo) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = node.labels();
    if let Some(selector) = &spec.node_selector {
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(selector) => selector
            .node_selector_terms
            .iter()
            .any(|term| term_matches(term, node) == Some(true)),
    }
}

/// The NodeAffinity filter and score plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeAffinity;

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> Filter {
        if matches_required_node_affinity(pod, node) {
            Filter::Pass
        } else {
            Filter::Unresolvable(vec![ERR_REASON_POD.to_string()])
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The sum of the weights of the preferred terms the node matches
    /// (terms of weight zero and empty terms are ignored; upstream fails
    /// the cycle on a term that does not parse, here it just does not
    /// match).
    fn score(&self, pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> i64 {
        let preferred = pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        preferred
            .into_iter()
            .flatten()
            .filter(|term| term.weight != 0)
            .filter(|term| term_matches(&term.preference, node) == Some(true))
            .map(|term| i64::from(term.weight))
            .sum()
    }

    fn normalize(&self, _pod: &Pod, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
    }

    fn weight(&self) -> i64 {
        2
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};

    use super::*;
    use crate::plugins::resources::node_info;

    fn pod(spec: Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([]);
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn required(terms: Value) -> Value {
        json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
        }}})
    }

    fn node(name: &str, labels: Value) -> NodeInfo {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        node_info(Arc::new(node), vec![])
    }

    #[test]
    fn default_normalize_scales_to_the_maximum() {
        let cases = [
            (
                "scaled so the best gets 100",
                false,
                vec![0, 5, 10],
                vec![0, 50, 100],
            ),
            ("all zero stays zero", false, vec![0, 0], vec![0, 0]),
            ("reversed flips", true, vec![0, 5, 10], vec![100, 50, 0]),
            (
                "reversed all zero becomes the maximum",
                true,
                vec![0, 0],
                vec![100, 100],
            ),
            (
                "integer division rounds down",
                false,
                vec![1, 3],
                vec![33, 100],
            ),
        ];
        for (name, reverse, mut scores, want) in cases {
            default_normalize_score(MAX_NODE_SCORE, reverse, &mut scores);
            assert_eq!(scores, want, "{name}");
        }
    }

    #[test]
    fn filter_matches_node_selector_and_required_affinity() {
        let labels = json!({"zone": "a", "disk": "ssd", "cores": "8"});
        let cases = [
            ("a pod without constraints fits", json!({}), true),
            (
                "a matching node selector fits",
                json!({"nodeSelector": {"zone": "a"}}),
                true,
            ),
            (
                "a node selector needs every label",
                json!({"nodeSelector": {"zone": "a", "gpu": "yes"}}),
                false,
            ),
            (
                "In matches one of the values",
                required(json!([{"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["b", "a"]}]}])),
                true,
            ),
            (
                "In does not match a missing label",
                required(json!([{"matchExpressions": [
                    {"key": "gpu", "operator": "In", "values": ["yes"]}]}])),
                false,
            ),
            (
                "NotIn matches a missing label",
                required(json!([{"matchExpressions": [
                    {"key": "gpu", "operator": "NotIn", "values": ["yes"]}]}])),
                true,
            ),
            (
                "NotIn rejects a listed value",
                required(json!([{"matchExpressions": [
                    {"key": "zone", "operator": "NotIn", "values": ["a"]}]}])),
                false,
            ),
            (
                "Exists and DoesNotExist",
                required(json!([{"matchExpressions": [
                    {"key": "disk", "operator": "Exists"},
                    {"key": "gpu", "operator": "DoesNotExist"}]}])),
                true,
            ),
            (
                "Gt compares integers",
                required(json!([{"matchExpressions": [
                    {"key": "cores", "operator": "Gt", "values": ["4"]}]}])),
                true,
            ),
            (
                "Lt compares integers",
                required(json!([{"matchExpressions": [
                    {"key": "cores", "operator": "Lt", "values": ["4"]}]}])),
                false,
            ),
            (
                "Gt on a non-integer label does not match",
                required(json!([{"matchExpressions": [
                    {"key": "zone", "operator": "Gt", "values": ["4"]}]}])),
                false,
            ),
            (
                "expressions of a term are ANDed",
                required(json!([{"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a"]},
                    {"key": "disk", "operator": "In", "values": ["hdd"]}]}])),
                false,
            ),
            (
                "terms are ORed",
                required(json!([
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]},
                ])),
                true,
            ),
            (
                "an empty term matches nothing",
                required(json!([{}])),
                false,
            ),
            ("no terms match nothing", required(json!([])), false),
            (
                "an invalid term is skipped but others still match",
                required(json!([
                    {"matchExpressions": [{"key": "zone", "operator": "Bogus"}]},
                    {"matchExpressions": [{"key": "zone", "operator": "Exists"}]},
                ])),
                true,
            ),
            (
                "Gt with a non-integer value is invalid",
                required(json!([{"matchExpressions": [
                    {"key": "cores", "operator": "Gt", "values": ["x"]}]}])),
                false,
            ),
            (
                "matchFields In on metadata.name",
                required(json!([{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])),
                true,
            ),
            (
                "matchFields NotIn on metadata.name",
                required(json!([{"matchFields": [
                    {"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}])),
                false,
            ),
            (
                "matchFields on another field is invalid",
                required(json!([{"matchFields": [
                    {"key": "metadata.uid", "operator": "In", "values": ["n1"]}]}])),
                false,
            ),
            (
                "matchFields In needs exactly one value",
                required(json!([{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["n1", "n2"]}]}])),
                false,
            ),
            (
                "fields and expressions of a term are ANDed",
                required(json!([{
                    "matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}],
                    "matchFields": [
                        {"key": "metadata.name", "operator": "In", "values": ["n1"]}],
                }])),
                false,
            ),
            (
                "node selector and affinity must both match",
                {
                    let mut spec = required(json!([{"matchExpressions": [
                        {"key": "zone", "operator": "Exists"}]}]));
                    spec["nodeSelector"] = json!({"disk": "hdd"});
                    spec
                },
                false,
            ),
        ];
        let info = node("n1", labels);
        for (name, spec, fits) in cases {
            let want = if fits {
                Filter::Pass
            } else {
                Filter::Unresolvable(vec![ERR_REASON_POD.to_string()])
            };
            assert_eq!(
                NodeAffinity.filter(&pod(spec), &info, &Snapshot::default()),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn score_sums_matching_preferred_weights_and_normalizes() {
        let preferred = |terms: Value| {
            json!({"affinity": {"nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": terms
            }}})
        };
        let nodes = || {
            vec![
                node("n1", json!({"zone": "a"})),
                node("n2", json!({"zone": "a", "disk": "ssd"})),
                node("n3", json!({})),
            ]
        };
        let cases = [
            (
                "no preferences give zero everywhere",
                json!({}),
                vec![0, 0, 0],
                vec![0, 0, 0],
            ),
            (
                "weights of matching terms are summed",
                preferred(json!([
                    {"weight": 2, "preference": {"matchExpressions": [
                        {"key": "zone", "operator": "In", "values": ["a"]}]}},
                    {"weight": 6, "preference": {"matchExpressions": [
                        {"key": "disk", "operator": "Exists"}]}},
                ])),
                vec![2, 8, 0],
                vec![25, 100, 0],
            ),
            (
                "empty preferences are ignored",
                preferred(json!([{"weight": 5, "preference": {}}])),
                vec![0, 0, 0],
                vec![0, 0, 0],
            ),
            (
                "matchFields preferences pick a node by name",
                preferred(json!([{"weight": 1, "preference": {"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["n3"]}]}}])),
                vec![0, 0, 1],
                vec![0, 0, 100],
            ),
        ];
        for (name, spec, raw, want) in cases {
            let p = pod(spec);
            let mut scores: Vec<i64> = nodes()
                .iter()
                .map(|n| NodeAffinity.score(&p, n, &Snapshot::default()))
                .collect();
            assert_eq!(scores, raw, "{name}: raw");
            NodeAffinity.normalize(&p, &mut scores);
            assert_eq!(scores, want, "{name}: normalized");
        }
    }
}
