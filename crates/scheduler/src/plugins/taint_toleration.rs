//! TaintToleration: a pod may only land on a node whose `NoSchedule` and
//! `NoExecute` taints it tolerates, and prefers nodes with fewer
//! `PreferNoSchedule` taints it does not tolerate.
//!
//! Mirrors upstream's `pkg/scheduler/framework/plugins/tainttoleration`
//! and the toleration matching of `v1.Toleration.ToleratesTaint`.

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use crate::framework::{Filter, FilterPlugin, NodeInfo, ScorePlugin, Snapshot, MAX_NODE_SCORE};
use crate::plugins::node_affinity::default_normalize_score;

/// Upstream's plugin name.
pub const NAME: &str = "TaintToleration";

/// `v1.TaintEffectNoSchedule`.
pub const EFFECT_NO_SCHEDULE: &str = "NoSchedule";
/// `v1.TaintEffectNoExecute`.
pub const EFFECT_NO_EXECUTE: &str = "NoExecute";
/// `v1.TaintEffectPreferNoSchedule`.
pub const EFFECT_PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";

/// Whether `toleration` tolerates `taint` (upstream's
/// `Toleration.ToleratesTaint`): an empty effect matches every effect, an
/// empty key (with `Exists`) every key; `Exists` ignores the value, `Equal`
/// (or no operator) needs the same value; any other operator tolerates
/// nothing.
pub fn toleration_tolerates_taint(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint` (upstream's
/// `TolerationsTolerateTaint`).
pub fn tolerations_tolerate_taint(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations
        .iter()
        .any(|t| toleration_tolerates_taint(t, taint))
}

/// The pod's tolerations (empty when it has none).
pub fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

fn node_taints(node: &NodeInfo) -> &[Taint] {
    node.node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// The upstream filter reason for an untolerated taint:
/// `node(s) had untolerated taint {key: value}`.
pub fn untolerated_taint_reason(taint: &Taint) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or("")
    )
}

/// The TaintToleration filter and score plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Unresolvable on the first `NoSchedule` or `NoExecute` taint (in the
    /// node's order) that no toleration of the pod tolerates.
    fn filter(&self, pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> Filter {
        let tolerations = pod_tolerations(pod);
        let untolerated = node_taints(node).iter().find(|taint| {
            (taint.effect == EFFECT_NO_SCHEDULE || taint.effect == EFFECT_NO_EXECUTE)
                && !tolerations_tolerate_taint(tolerations, taint)
        });
        match untolerated {
            None => Filter::Pass,
            Some(taint) => Filter::Unresolvable(vec![untolerated_taint_reason(taint)]),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The raw score is the number of `PreferNoSchedule` taints the pod does
    /// not tolerate (only its tolerations with that effect or no effect
    /// count); [`ScorePlugin::normalize`] turns fewer into higher.
    fn score(&self, pod: &Pod, node: &NodeInfo, _snapshot: &Snapshot) -> i64 {
        let tolerations: Vec<Toleration> = pod_tolerations(pod)
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some(EFFECT_PREFER_NO_SCHEDULE)
                )
            })
            .cloned()
            .collect();
        node_taints(node)
            .iter()
            .filter(|taint| {
                taint.effect == EFFECT_PREFER_NO_SCHEDULE
                    && !tolerations_tolerate_taint(&tolerations, taint)
            })
            .count() as i64
    }

    fn normalize(&self, _pod: &Pod, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
    }

    fn weight(&self) -> i64 {
        3
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};

    use super::*;
    use crate::plugins::resources::node_info;

    fn pod(tolerations: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "tolerations": tolerations},
        }))
        .unwrap()
    }

    fn node(taints: Value) -> NodeInfo {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "spec": {"taints": taints},
        }))
        .unwrap();
        node_info(Arc::new(node), vec![])
    }

    #[test]
    fn toleration_matching_follows_upstream_rules() {
        let taint: Taint =
            serde_json::from_value(json!({"key": "k", "value": "v", "effect": "NoSchedule"}))
                .unwrap();
        let cases = [
            (
                "equal key, value and effect",
                json!({"key": "k", "value": "v",
                "effect": "NoSchedule"}),
                true,
            ),
            (
                "no operator means Equal",
                json!({"key": "k", "value": "v"}),
                true,
            ),
            (
                "Equal with another value",
                json!({"key": "k", "operator": "Equal",
                "value": "w"}),
                false,
            ),
            (
                "Exists ignores the value",
                json!({"key": "k", "operator": "Exists"}),
                true,
            ),
            (
                "empty key with Exists tolerates everything",
                json!({"operator": "Exists"}),
                true,
            ),
            (
                "another key",
                json!({"key": "j", "operator": "Exists"}),
                false,
            ),
            (
                "another effect",
                json!({"key": "k", "operator": "Exists",
                "effect": "NoExecute"}),
                false,
            ),
            (
                "empty effect matches every effect",
                json!({"key": "k", "value": "v",
                "effect": ""}),
                true,
            ),
            (
                "an unknown operator tolerates nothing",
                json!({"key": "k", "operator": "Gt",
                "value": "v"}),
                false,
            ),
        ];
        for (name, toleration, want) in cases {
            let toleration: Toleration = serde_json::from_value(toleration).unwrap();
            assert_eq!(
                toleration_tolerates_taint(&toleration, &taint),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn filter_rejects_untolerated_no_schedule_and_no_execute_taints() {
        let cases = [
            (
                "a node without taints passes",
                json!([]),
                json!([]),
                Filter::Pass,
            ),
            (
                "an untolerated NoSchedule taint is unresolvable",
                json!([]),
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
                Filter::Unresolvable(vec![
                    "node(s) had untolerated taint {dedicated: gpu}".to_string()
                ]),
            ),
            (
                "a taint without value prints an empty value",
                json!([]),
                json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
                Filter::Unresolvable(vec![
                    "node(s) had untolerated taint {node.kubernetes.io/unschedulable: }"
                        .to_string(),
                ]),
            ),
            (
                "an untolerated NoExecute taint is unresolvable",
                json!([{"key": "a", "operator": "Exists"}]),
                json!([{"key": "a", "effect": "NoSchedule"},
                       {"key": "b", "value": "x", "effect": "NoExecute"}]),
                Filter::Unresolvable(vec!["node(s) had untolerated taint {b: x}".to_string()]),
            ),
            (
                "PreferNoSchedule taints do not filter",
                json!([]),
                json!([{"key": "a", "effect": "PreferNoSchedule"}]),
                Filter::Pass,
            ),
            (
                "tolerated taints pass",
                json!([{"key": "dedicated", "operator": "Equal", "value": "gpu",
                        "effect": "NoSchedule"}]),
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
                Filter::Pass,
            ),
            (
                "a toleration for another effect does not help",
                json!([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]),
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
                Filter::Unresolvable(vec![
                    "node(s) had untolerated taint {dedicated: gpu}".to_string()
                ]),
            ),
        ];
        for (name, tolerations, taints, want) in cases {
            let got =
                TaintToleration.filter(&pod(tolerations), &node(taints), &Snapshot::default());
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn score_prefers_nodes_with_fewer_untolerated_prefer_no_schedule_taints() {
        let cases = [
            (
                "no taints anywhere gives every node the top score",
                json!([]),
                vec![json!([]), json!([])],
                vec![100, 100],
            ),
            (
                "more untolerated taints score lower",
                json!([]),
                vec![
                    json!([]),
                    json!([{"key": "a", "effect": "PreferNoSchedule"}]),
                    json!([{"key": "a", "effect": "PreferNoSchedule"},
                           {"key": "b", "effect": "PreferNoSchedule"}]),
                ],
                vec![100, 50, 0],
            ),
            (
                "tolerated taints and other effects do not count",
                json!([{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"},
                       {"key": "c", "operator": "Exists", "effect": "NoSchedule"}]),
                vec![
                    json!([{"key": "a", "effect": "PreferNoSchedule"},
                           {"key": "b", "effect": "NoSchedule"}]),
                    json!([{"key": "c", "effect": "PreferNoSchedule"}]),
                ],
                vec![100, 0],
            ),
            (
                "a toleration without effect tolerates PreferNoSchedule",
                json!([{"key": "a", "operator": "Exists"}]),
                vec![json!([{"key": "a", "effect": "PreferNoSchedule"}])],
                vec![100],
            ),
        ];
        for (name, tolerations, nodes, want) in cases {
            let p = pod(tolerations);
            let mut scores: Vec<i64> = nodes
                .into_iter()
                .map(|taints| TaintToleration.score(&p, &node(taints), &Snapshot::default()))
                .collect();
            TaintToleration.normalize(&p, &mut scores);
            assert_eq!(scores, want, "{name}");
        }
    }
}
