//! Which nodes a DaemonSet runs on, as upstream's
//! `NodeShouldRunDaemonPod`: the node must match the template's
//! `nodeSelector`, required node affinity and `nodeName`, and its
//! `NoSchedule`/`NoExecute` taints must be tolerated, counting the
//! tolerations every daemon pod gets ([`add_default_tolerations`]). A pod
//! already running may stay while only `NoSchedule` taints are untolerated.
//!
//! Daemon pods are placed by the scheduler: each carries a required node
//! affinity `metadata.name In [node]` ([`pin_to_node`]), which is also how
//! the controller reads back which node a pod is for ([`target_node`]).

use api::selector::{Operator, Requirement};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};

/// The field a daemon pod's affinity pins its node by.
const NAME_FIELD: &str = "metadata.name";

/// Whether `toleration` tolerates `taint` (upstream's `ToleratesTaint`):
/// an empty effect or key matches any; `Exists` ignores the value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// The first taint with one of `effects` that no toleration tolerates.
pub fn untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        value: None,
        toleration_seconds: None,
    }
}

/// The tolerations upstream gives every daemon pod
/// (`AddOrUpdateDaemonPodTolerations`): daemons survive node problems and
/// cordons, so the node lifecycle controller never evicts them.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut all = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        all.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    all
}

/// Whether two tolerations are the same rule (upstream's
/// `MatchToleration`: key, operator, value and effect).
fn same_rule(a: &Toleration, b: &Toleration) -> bool {
    let op = |t: &Toleration| match t.operator.as_deref() {
        None | Some("") => "Equal".to_string(),
        Some(o) => o.to_string(),
    };
    a.key == b.key && op(a) == op(b) && a.value == b.value && a.effect == b.effect
}

/// Add the default tolerations to `spec`, replacing a same rule the
/// template has (upstream's `AddOrUpdateTolerationInPodSpec`).
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let defaults = default_tolerations(spec.host_network == Some(true));
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for default in defaults {
        match tolerations.iter_mut().find(|t| same_rule(t, &default)) {
            Some(existing) => *existing = default,
            None => tolerations.push(default),
        }
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

/// Whether a node selector term matches `node`. An empty term, or one
/// that does not parse, matches nothing (upstream's lazy-error selector).
fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let labels_match = expressions
        .iter()
        .all(|e| label_requirement(e).is_some_and(|r| r.matches(&labels)));
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let fields_match = fields.iter().all(|f| {
        let values = f.values.as_deref().unwrap_or(&[]);
        f.key == NAME_FIELD
            && values.len() == 1
            && match f.operator.as_str() {
                "In" => values[0] == name,
                "NotIn" => values[0] != name,
                _ => false,
            }
    });
    labels_match && fields_match
}

/// Whether `node` matches the pod spec's `nodeSelector` and required node
/// affinity (upstream's `GetRequiredNodeAffinity(pod).Match(node)`).
pub fn matches_node(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    selected && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// Whether a daemon pod should run on `node` (`.0`), and whether one
/// already there may keep running (`.1`): upstream's
/// `NodeShouldRunDaemonPod`. `PreferNoSchedule` taints never matter.
pub fn should_run(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    if !matches_node(&spec, node) {
        return (false, false);
    }
    add_default_tolerations(&mut spec);
    let tolerations = spec.tolerations.unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if untolerated(&taints, &tolerations, &["NoSchedule", "NoExecute"]).is_none() {
        return (true, true);
    }
    // Untolerated NoSchedule taints keep new pods off; only NoExecute
    // ones evict a running pod.
    let evicted = untolerated(&taints, &tolerations, &["NoExecute"]).is_some();
    (false, !evicted)
}

/// Pin a pod to `node` through its required node affinity (upstream's
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`): the template's required
/// terms are replaced, its preferred terms kept.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let pinned = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(pinned);
    affinity
}

/// The node a daemon pod is for: its `nodeName` once bound, else the node
/// its affinity pins (upstream's `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == NAME_FIELD && f.operator == "In")
        .and_then(|f| match f.values.as_deref() {
            Some([one]) => Some(one.as_str()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(key, effect)| Taint {
                            key: key.to_string(),
                            effect: effect.to_string(),
                            value: Some("x".into()),
                            time_added: None,
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn ds(spec: PodSpec) -> DaemonSet {
        DaemonSet {
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(spec),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn term(key: &str, op: &str, values: &[&str]) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            match_fields: None,
        }
    }

    fn required(terms: Vec<NodeSelectorTerm>) -> PodSpec {
        PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: terms,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn eligibility_follows_selectors_affinity_and_taints() {
        let plain = PodSpec::default();
        let ssd = PodSpec {
            node_selector: Some([("disk".to_string(), "ssd".to_string())].into()),
            ..Default::default()
        };
        let zone_a_or_b = required(vec![term("zone", "In", &["a"]), term("zone", "In", &["b"])]);
        let tolerates_gpu = PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some("gpu".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let pinned_elsewhere = PodSpec {
            node_name: Some("other".into()),
            ..Default::default()
        };
        let cases: Vec<(&str, &PodSpec, Node, (bool, bool))> = vec![
            ("any node", &plain, node("n", &[], &[]), (true, true)),
            (
                "selector matches",
                &ssd,
                node("n", &[("disk", "ssd")], &[]),
                (true, true),
            ),
            (
                "selector misses",
                &ssd,
                node("n", &[("disk", "hdd")], &[]),
                (false, false),
            ),
            (
                "affinity term b",
                &zone_a_or_b,
                node("n", &[("zone", "b")], &[]),
                (true, true),
            ),
            (
                "affinity misses",
                &zone_a_or_b,
                node("n", &[("zone", "c")], &[]),
                (false, false),
            ),
            (
                "NoSchedule keeps new pods off",
                &plain,
                node("n", &[], &[("gpu", "NoSchedule")]),
                (false, true),
            ),
            (
                "NoExecute evicts",
                &plain,
                node("n", &[], &[("gpu", "NoExecute")]),
                (false, false),
            ),
            (
                "PreferNoSchedule is ignored",
                &plain,
                node("n", &[], &[("gpu", "PreferNoSchedule")]),
                (true, true),
            ),
            (
                "tolerated taint",
                &tolerates_gpu,
                node("n", &[], &[("gpu", "NoExecute")]),
                (true, true),
            ),
            (
                "cordoned nodes still run daemons",
                &plain,
                node(
                    "n",
                    &[],
                    &[("node.kubernetes.io/unschedulable", "NoSchedule")],
                ),
                (true, true),
            ),
            (
                "not-ready nodes keep their daemons",
                &plain,
                node("n", &[], &[("node.kubernetes.io/not-ready", "NoExecute")]),
                (true, true),
            ),
            (
                "network-unavailable only for host-network pods",
                &plain,
                node(
                    "n",
                    &[],
                    &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
                ),
                (false, true),
            ),
            (
                "nodeName elsewhere",
                &pinned_elsewhere,
                node("n", &[], &[]),
                (false, false),
            ),
        ];
        for (what, spec, node, want) in cases {
            assert_eq!(should_run(&ds(spec.clone()), &node), want, "{what}");
        }
        let host = PodSpec {
            host_network: Some(true),
            ..Default::default()
        };
        let unavailable = node(
            "n",
            &[],
            &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
        );
        assert_eq!(should_run(&ds(host), &unavailable), (true, true));
    }

    #[test]
    fn tolerations_match_as_upstreams() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let t =
            |key: Option<&str>, op: &str, value: Option<&str>, effect: Option<&str>| Toleration {
                key: key.map(Into::into),
                operator: Some(op.into()),
                value: value.map(Into::into),
                effect: effect.map(Into::into),
                toleration_seconds: None,
            };
        let cases = [
            (t(Some("k"), "Equal", Some("v"), Some("NoSchedule")), true),
            (t(Some("k"), "Equal", Some("w"), None), false),
            (t(Some("k"), "Exists", None, None), true),
            (t(None, "Exists", None, None), true),
            (t(Some("k"), "Exists", None, Some("NoExecute")), false),
            (t(Some("j"), "Exists", None, None), false),
        ];
        for (toleration, want) in cases {
            assert_eq!(tolerates(&toleration, &taint), want, "{toleration:?}");
        }
    }

    #[test]
    fn default_tolerations_are_added_once() {
        let mut spec = PodSpec {
            tolerations: Some(vec![toleration(
                "node.kubernetes.io/not-ready",
                "NoExecute",
            )]),
            ..Default::default()
        };
        spec.tolerations.as_mut().unwrap()[0].toleration_seconds = Some(300);
        add_default_tolerations(&mut spec);
        add_default_tolerations(&mut spec);
        let tolerations = spec.tolerations.unwrap();
        assert_eq!(tolerations.len(), 6);
        // The template's time-limited not-ready toleration became unlimited.
        assert_eq!(tolerations[0].toleration_seconds, None);
        let keys: Vec<&str> = tolerations
            .iter()
            .map(|t| t.key.as_deref().unwrap())
            .collect();
        assert!(keys.contains(&"node.kubernetes.io/unschedulable"));
        assert!(!keys.contains(&"node.kubernetes.io/network-unavailable"));
    }

    #[test]
    fn a_pinned_pod_reads_back_its_node() {
        let affinity = required(vec![term("zone", "In", &["a"])]).affinity;
        let pinned = pin_to_node(affinity, "node-1");
        let pod = Pod {
            spec: Some(PodSpec {
                affinity: Some(pinned),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(target_node(&pod), Some("node-1"));
        let terms = &pod
            .spec
            .as_ref()
            .unwrap()
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1, "the template's terms are replaced");
        let mut bound = pod.clone();
        bound.spec.as_mut().unwrap().node_name = Some("node-2".into());
        assert_eq!(target_node(&bound), Some("node-2"));
        assert_eq!(target_node(&Pod::default()), None);
        let matches = |name: &str| matches_node(pod.spec.as_ref().unwrap(), &node(name, &[], &[]));
        assert!(matches("node-1"));
        assert!(!matches("node-2"));
    }
}
