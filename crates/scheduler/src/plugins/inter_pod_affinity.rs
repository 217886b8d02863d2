//! Upstream's `InterPodAffinity` plugin: pods placed by the labels of the
//! pods already running in the same topology domain.
//!
//! A topology domain is a `(topologyKey, value)` pair of node labels: all
//! nodes with `topology.kubernetes.io/zone=a` form one domain, every
//! `kubernetes.io/hostname` value is one node.
//!
//! The filter (upstream's `PreFilter` + `Filter`) checks, in this order:
//! 1. the incoming pod's required pod affinity: for every term, the node has
//!    the term's topology key and some pod matching *all* terms runs in that
//!    domain. A node without the key fails. Upstream's bootstrap exception:
//!    if no pod anywhere matches the terms and the pod matches its own terms,
//!    any node with all the keys passes (`UnschedulableAndUnresolvable`,
//!    "node(s) didn't match pod affinity rules");
//! 2. the incoming pod's required anti-affinity: no pod matching a term runs
//!    in the node's domain of that term (`Unschedulable`, "node(s) didn't
//!    match pod anti-affinity rules");
//! 3. symmetry: no existing pod whose required anti-affinity term matches the
//!    incoming pod runs in the node's domain of that term (`Unschedulable`,
//!    "node(s) didn't satisfy existing pods anti-affinity rules").
//!
//! The score (upstream's `PreScore` + `Score` + `NormalizeScore`) sums, per
//! topology domain, the weights of the incoming pod's preferred affinity
//! (+) and anti-affinity (-) terms matched by existing pods, the existing
//! pods' required affinity terms (`hardPodAffinityWeight`, +) and preferred
//! affinity (+) / anti-affinity (-) terms matched by the incoming pod. A
//! node's raw score is the sum over the domains it belongs to; the raw
//! scores are then min-max normalized to `0..=100`.
//!
//! A term selects pods in its `namespaces`, plus those in namespaces whose
//! labels match its `namespaceSelector` (`{}` = all namespaces, absent =
//! none); with neither, the namespace of the pod that owns the term. The
//! snapshot carries no Namespace objects, so namespace labels come from
//! [`InterPodAffinity::namespace_labels`]; a namespace missing there is
//! taken to carry only its `kubernetes.io/metadata.name` label (which the API
//! server sets on every namespace). `matchLabelKeys` / `mismatchLabelKeys`
//! are merged into a term's selector with the owning pod's label values
//! (`key in (v)` / `key notin (v)`), as the API server does at creation;
//! merging twice is harmless.
//!
//! Every call recomputes the pre-filter (pre-score) state from the snapshot,
//! which is O(pods in the cluster) per node; a driver that filters many
//! nodes for one pod should call [`InterPodAffinity::pre_filter`] once and
//! [`InterPodAffinity::filter_with_state`] per node (likewise
//! [`InterPodAffinity::pre_score`] / [`InterPodAffinity::score_with_state`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use api::selector::{self, LabelSelector, Operator, Requirement, SelectorError};
use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm};

use crate::framework::{Filter, FilterPlugin, NodeInfo, ScorePlugin, Snapshot, MAX_NODE_SCORE};

/// Upstream's plugin name.
pub const NAME: &str = "InterPodAffinity";
/// The incoming pod's required affinity is not satisfied on the node.
pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
/// The incoming pod's required anti-affinity is violated on the node.
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't match pod anti-affinity rules";
/// An existing pod's required anti-affinity rejects the incoming pod there.
pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// The label the API server puts on every namespace, valued with its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Counts per topology domain: topology key → value → count.
type TopologyCounts = BTreeMap<String, BTreeMap<String, i64>>;

fn add_count(counts: &mut TopologyCounts, node: &Node, key: &str, delta: i64) {
    if let Some(value) = node_labels(node).get(key) {
        *counts
            .entry(key.to_string())
            .or_default()
            .entry(value.clone())
            .or_default() += delta;
    }
}

fn get_count(counts: &TopologyCounts, key: &str, value: &str) -> i64 {
    counts
        .get(key)
        .and_then(|values| values.get(value))
        .copied()
        .unwrap_or(0)
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("")
}

/// One parsed pod (anti-)affinity term (upstream's `framework.AffinityTerm`).
#[derive(Debug, Clone)]
struct AffinityTerm {
    namespaces: BTreeSet<String>,
    namespace_selector: LabelSelector,
    selector: LabelSelector,
    topology_key: String,
    weight: i64,
}

impl AffinityTerm {
    fn new(term: &PodAffinityTerm, owner: &Pod, weight: i64) -> Result<Self, SelectorError> {
        let mut selector = selector::from_optional_label_selector(term.label_selector.as_ref())?;
        if term.label_selector.is_some() {
            let labels = pod_labels(owner);
            for key in term.match_label_keys.iter().flatten() {
                if let Some(value) = labels.get(key) {
                    let r = Requirement::new(key.as_str(), Operator::In, vec![value.clone()])?;
                    selector = selector.with_requirement(r);
                }
            }
            for key in term.mismatch_label_keys.iter().flatten() {
                if let Some(value) = labels.get(key) {
                    let r = Requirement::new(key.as_str(), Operator::NotIn, vec![value.clone()])?;
                    selector = selector.with_requirement(r);
                }
            }
        }
        let mut namespaces: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.insert(pod_namespace(owner).to_string());
        }
        let namespace_selector =
            selector::from_optional_label_selector(term.namespace_selector.as_ref())?;
        Ok(AffinityTerm {
            namespaces,
            namespace_selector,
            selector,
            topology_key: term.topology_key.clone(),
            weight,
        })
    }

    /// Whether `pod`, whose namespace carries `namespace_labels`, is
    /// selected by this term.
    fn matches(&self, pod: &Pod, namespace_labels: &BTreeMap<String, String>) -> bool {
        (self.namespaces.contains(pod_namespace(pod))
            || self.namespace_selector.matches(namespace_labels))
            && self.selector.matches(pod_labels(pod))
    }
}

/// The parsed terms of one pod (upstream's `framework.PodInfo` affinity
/// fields).
#[derive(Debug, Clone, Default)]
struct PodTerms {
    required_affinity: Vec<AffinityTerm>,
    required_anti_affinity: Vec<AffinityTerm>,
    preferred_affinity: Vec<AffinityTerm>,
    preferred_anti_affinity: Vec<AffinityTerm>,
}

impl PodTerms {
    /// Parses all terms of `pod`. With `strict`, the first invalid selector
    /// is an error (the incoming pod); otherwise invalid terms are dropped
    /// (existing pods, whose parse errors upstream only logs).
    fn of(pod: &Pod, strict: bool) -> Result<Self, SelectorError> {
        let mut terms = PodTerms::default();
        let Some(affinity) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
            return Ok(terms);
        };
        let push = |list: &mut Vec<AffinityTerm>, term: &PodAffinityTerm, weight: i64| {
            match AffinityTerm::new(term, pod, weight) {
                Ok(term) => list.push(term),
                Err(err) if strict => return Err(err),
                Err(_) => {}
            }
            Ok(())
        };
        if let Some(a) = &affinity.pod_affinity {
            for term in a
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                push(&mut terms.required_affinity, term, 1)?;
            }
            for w in a
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                let weight = i64::from(w.weight);
                push(&mut terms.preferred_affinity, &w.pod_affinity_term, weight)?;
            }
        }
        if let Some(a) = &affinity.pod_anti_affinity {
            for term in a
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                push(&mut terms.required_anti_affinity, term, 1)?;
            }
            for w in a
                .preferred_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
            {
                let weight = i64::from(w.weight);
                push(
                    &mut terms.preferred_anti_affinity,
                    &w.pod_affinity_term,
                    weight,
                )?;
            }
        }
        Ok(terms)
    }

    fn is_empty(&self) -> bool {
        self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty()
    }
}

/// Whether `pod` matches every one of `terms` (false for no terms).
fn matches_all(
    terms: &[AffinityTerm],
    pod: &Pod,
    namespace_labels: &BTreeMap<String, String>,
) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, namespace_labels))
}

/// What the filter needs to know about the cluster for one incoming pod
/// (upstream's `preFilterState`), computed once by
/// [`InterPodAffinity::pre_filter`].
#[derive(Debug, Clone)]
pub struct PreFilterState {
    terms: PodTerms,
    /// Whether the incoming pod matches all of its own required affinity
    /// terms (the bootstrap exception).
    matches_own_affinity: bool,
    /// Domains with pods matching all required affinity terms.
    affinity_counts: TopologyCounts,
    /// Domains with pods matching some required anti-affinity term.
    anti_affinity_counts: TopologyCounts,
    /// Domains with existing pods whose required anti-affinity term matches
    /// the incoming pod.
    existing_anti_affinity_counts: TopologyCounts,
}

/// The per-domain score sums for one incoming pod (upstream's
/// `preScoreState`), computed once by [`InterPodAffinity::pre_score`].
#[derive(Debug, Clone, Default)]
pub struct PreScoreState {
    topology_score: TopologyCounts,
}

/// Upstream's `InterPodAffinity` filter and score plugin.
#[derive(Debug, Clone)]
pub struct InterPodAffinity {
    /// Labels of namespaces by name, for terms with a `namespaceSelector`.
    /// Namespaces not listed carry only `kubernetes.io/metadata.name`.
    pub namespace_labels: BTreeMap<String, BTreeMap<String, String>>,
    /// Upstream's `hardPodAffinityWeight` argument (default 1, 0..=100):
    /// the score weight of existing pods' required affinity terms.
    pub hard_pod_affinity_weight: i64,
    /// Upstream's `ignorePreferredTermsOfExistingPods` argument (default
    /// false).
    pub ignore_preferred_terms_of_existing_pods: bool,
}

impl Default for InterPodAffinity {
    fn default() -> Self {
        InterPodAffinity {
            namespace_labels: BTreeMap::new(),
            hard_pod_affinity_weight: 1,
            ignore_preferred_terms_of_existing_pods: false,
        }
    }
}

impl InterPodAffinity {
    /// The plugin with upstream's default arguments and no namespace labels.
    pub fn new() -> Self {
        InterPodAffinity::default()
    }

    /// The labels of namespace `name`.
    fn labels_of_namespace<'a>(&'a self, name: &str) -> Cow<'a, BTreeMap<String, String>> {
        match self.namespace_labels.get(name) {
            Some(labels) => Cow::Borrowed(labels),
            None => Cow::Owned(BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_string(),
                name.to_string(),
            )])),
        }
    }

    /// Computes what [`filter_with_state`](Self::filter_with_state) needs
    /// for `pod` over the whole snapshot. Fails (with a message) if one of
    /// the pod's own terms has an invalid selector.
    pub fn pre_filter(&self, pod: &Pod, snapshot: &Snapshot) -> Result<PreFilterState, String> {
        let terms = PodTerms::of(pod, true).map_err(|e| format!("invalid affinity term: {e}"))?;
        let own_ns_labels = self.labels_of_namespace(pod_namespace(pod));
        let mut state = PreFilterState {
            matches_own_affinity: matches_all(&terms.required_affinity, pod, &own_ns_labels),
            terms,
            affinity_counts: TopologyCounts::new(),
            anti_affinity_counts: TopologyCounts::new(),
            existing_anti_affinity_counts: TopologyCounts::new(),
        };
        // Without required terms of its own, only existing pods with terms
        // can matter (their anti-affinity against this pod).
        let own_required = !state.terms.required_affinity.is_empty()
            || !state.terms.required_anti_affinity.is_empty();
        for info in &snapshot.nodes {
            let node = &info.node;
            let existing_pods = if own_required {
                &info.pods
            } else {
                &info.pods_with_affinity
            };
            for existing in existing_pods {
                // The existing pods' anti-affinity against the incoming pod.
                if has_required_anti_affinity(existing) {
                    let existing_terms = PodTerms::of(existing, false).unwrap_or_default();
                    for term in &existing_terms.required_anti_affinity {
                        if term.matches(pod, &own_ns_labels) {
                            add_count(
                                &mut state.existing_anti_affinity_counts,
                                node,
                                &term.topology_key,
                                1,
                            );
                        }
                    }
                }
                // The incoming pod's terms against the existing pod.
                let required = &state.terms.required_affinity;
                let anti = &state.terms.required_anti_affinity;
                if required.is_empty() && anti.is_empty() {
                    continue;
                }
                let ns_labels = self.labels_of_namespace(pod_namespace(existing));
                if matches_all(required, existing, &ns_labels) {
                    for term in required {
                        add_count(&mut state.affinity_counts, node, &term.topology_key, 1);
                    }
                }
                for term in anti {
                    if term.matches(existing, &ns_labels) {
                        add_count(&mut state.anti_affinity_counts, node, &term.topology_key, 1);
                    }
                }
            }
        }
        Ok(state)
    }

    /// Upstream's `Filter`, given the pre-computed state.
    pub fn filter_with_state(&self, state: &PreFilterState, node: &NodeInfo) -> Filter {
        let labels = node.labels();

        // 1. The incoming pod's required affinity.
        let mut pods_exist = true;
        for term in &state.terms.required_affinity {
            match labels.get(&term.topology_key) {
                None => return unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH),
                Some(value) => {
                    if get_count(&state.affinity_counts, &term.topology_key, value) <= 0 {
                        pods_exist = false;
                    }
                }
            }
        }
        // The bootstrap exception: no pod anywhere matches, but the pod
        // matches its own terms.
        let first_of_group = state.affinity_counts.is_empty() && state.matches_own_affinity;
        if !pods_exist && !first_of_group {
            return unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
        }

        // 2. The incoming pod's required anti-affinity.
        for term in &state.terms.required_anti_affinity {
            if let Some(value) = labels.get(&term.topology_key) {
                if get_count(&state.anti_affinity_counts, &term.topology_key, value) > 0 {
                    return unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
                }
            }
        }

        // 3. The existing pods' required anti-affinity.
        for (key, value) in labels {
            if get_count(&state.existing_anti_affinity_counts, key, value) > 0 {
                return unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
            }
        }
        Filter::Pass
    }

    /// Computes the per-domain score sums for `pod` over the whole snapshot
    /// (upstream's `PreScore`). A pod whose own terms are invalid scores 0
    /// everywhere (it fails the filter anyway).
    pub fn pre_score(&self, pod: &Pod, snapshot: &Snapshot) -> PreScoreState {
        let mut state = PreScoreState::default();
        let Ok(terms) = PodTerms::of(pod, true) else {
            return state;
        };
        let own_ns_labels = self.labels_of_namespace(pod_namespace(pod));
        let scores = &mut state.topology_score;
        // Without preferred terms of its own, only existing pods with terms
        // contribute.
        let own_preferred =
            !terms.preferred_affinity.is_empty() || !terms.preferred_anti_affinity.is_empty();
        for info in &snapshot.nodes {
            let node: &Node = &info.node;
            if node_labels(node).is_empty() {
                continue;
            }
            let existing_pods = if own_preferred {
                &info.pods
            } else {
                &info.pods_with_affinity
            };
            for existing in existing_pods {
                let mut process =
                    |term: &AffinityTerm, target: &Pod, ns: &BTreeMap<String, String>, w: i64| {
                        if term.matches(target, ns) {
                            add_count(scores, node, &term.topology_key, w);
                        }
                    };
                if !terms.preferred_affinity.is_empty() || !terms.preferred_anti_affinity.is_empty()
                {
                    let ns_labels = self.labels_of_namespace(pod_namespace(existing));
                    for term in &terms.preferred_affinity {
                        process(term, existing, &ns_labels, term.weight);
                    }
                    for term in &terms.preferred_anti_affinity {
                        process(term, existing, &ns_labels, -term.weight);
                    }
                }
                if !has_affinity(existing) {
                    continue;
                }
                let existing_terms = PodTerms::of(existing, false).unwrap_or_default();
                if existing_terms.is_empty() {
                    continue;
                }
                if self.hard_pod_affinity_weight > 0 {
                    for term in &existing_terms.required_affinity {
                        process(term, pod, &own_ns_labels, self.hard_pod_affinity_weight);
                    }
                }
                if !self.ignore_preferred_terms_of_existing_pods {
                    for term in &existing_terms.preferred_affinity {
                        process(term, pod, &own_ns_labels, term.weight);
                    }
                    for term in &existing_terms.preferred_anti_affinity {
                        process(term, pod, &own_ns_labels, -term.weight);
                    }
                }
            }
        }
        state
    }

    /// Upstream's `Score`, given the pre-computed state: the sum of the
    /// scores of the domains the node belongs to (may be negative; see
    /// [`ScorePlugin::normalize`]).
    pub fn score_with_state(&self, state: &PreScoreState, node: &NodeInfo) -> i64 {
        let labels = node.labels();
        state
            .topology_score
            .iter()
            .filter_map(|(key, values)| labels.get(key).and_then(|v| values.get(v)))
            .sum()
    }
}

/// Whether the pod has pod affinity or anti-affinity terms.
pub(crate) fn has_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

/// Whether the pod has required anti-affinity terms (preemption asks too).
pub(crate) fn has_required_anti_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|terms| !terms.is_empty())
}

fn unresolvable(reason: &str) -> Filter {
    Filter::Unresolvable(vec![reason.to_string()])
}

fn unschedulable(reason: &str) -> Filter {
    Filter::Unschedulable(vec![reason.to_string()])
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, pod: &Pod, node: &NodeInfo, snapshot: &Snapshot) -> Filter {
        match self.pre_filter(pod, snapshot) {
            Ok(state) => self.filter_with_state(&state, node),
            Err(message) => Filter::Unresolvable(vec![message]),
        }
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, pod: &Pod, node: &NodeInfo, snapshot: &Snapshot) -> i64 {
        self.score_with_state(&self.pre_score(pod, snapshot), node)
    }

    /// Min-max normalization to `0..=MAX_NODE_SCORE`; all equal → all 0.
    fn normalize(&self, _pod: &Pod, scores: &mut [i64]) {
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        let diff = max - min;
        for score in scores.iter_mut() {
            *score = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*score - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
    }

    /// Upstream's default weight in the default profile.
    fn weight(&self) -> i64 {
        2
    }
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;
    use crate::plugins::testing::{labeled_node as node, normalized_scores};

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("valid pod")
    }

    /// A pod `name` in namespace `default` with `labels` and an optional
    /// `spec.affinity`.
    fn labeled(name: &str, labels: serde_json::Value, affinity: serde_json::Value) -> Pod {
        let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
        if !affinity.is_null() {
            spec["affinity"] = affinity;
        }
        pod(json!({
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": spec,
        }))
    }

    fn term(app: &str, key: &str) -> serde_json::Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    fn required(kind: &str, terms: Vec<serde_json::Value>) -> serde_json::Value {
        json!({kind: {"requiredDuringSchedulingIgnoredDuringExecution": terms}})
    }

    fn preferred(kind: &str, weight: i32, term: serde_json::Value) -> serde_json::Value {
        json!({kind: {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": weight, "podAffinityTerm": term}
        ]}})
    }

    const HOST: &str = "kubernetes.io/hostname";
    const ZONE: &str = "topology.kubernetes.io/zone";

    /// Filters `pod` on every node of the snapshot; the outcome per node.
    fn filter_all(plugin: &InterPodAffinity, pod: &Pod, snapshot: &Snapshot) -> Vec<Filter> {
        snapshot
            .nodes
            .iter()
            .map(|n| FilterPlugin::filter(plugin, pod, n, snapshot))
            .collect()
    }

    fn pass() -> Filter {
        Filter::Pass
    }

    #[test]
    fn filters_follow_upstream_rules() {
        let web = || json!({"app": "web"});
        let db = || json!({"app": "db"});
        let anti_web_host = required("podAntiAffinity", vec![term("web", HOST)]);
        struct Case {
            name: &'static str,
            pod: Pod,
            nodes: Vec<NodeInfo>,
            want: Vec<Filter>,
        }
        let cases = vec![
            Case {
                name: "a pod without affinity passes everywhere",
                pod: labeled("p", web(), json!(null)),
                nodes: vec![node("n1", &[], vec![labeled("a", web(), json!(null))])],
                want: vec![pass()],
            },
            Case {
                name: "anti-affinity on hostname spreads replicas to empty nodes",
                pod: labeled("web-3", web(), anti_web_host.clone()),
                nodes: vec![
                    node(
                        "n1",
                        &[],
                        vec![labeled("web-1", web(), anti_web_host.clone())],
                    ),
                    node(
                        "n2",
                        &[],
                        vec![labeled("web-2", web(), anti_web_host.clone())],
                    ),
                    node("n3", &[], vec![labeled("db-1", db(), json!(null))]),
                ],
                want: vec![
                    unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH),
                    unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH),
                    pass(),
                ],
            },
            Case {
                name: "anti-affinity ignores matching pods in other namespaces",
                pod: labeled("web-2", web(), anti_web_host.clone()),
                nodes: vec![node(
                    "n1",
                    &[],
                    vec![pod(json!({
                        "metadata": {"name": "web-1", "namespace": "other", "labels": web()},
                    }))],
                )],
                want: vec![pass()],
            },
            Case {
                name: "zone affinity admits every node of the zone with a matching pod",
                pod: labeled("p", db(), required("podAffinity", vec![term("web", ZONE)])),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], vec![labeled("w", web(), json!(null))]),
                    node("a2", &[(ZONE, "a")], vec![]),
                    node("b1", &[(ZONE, "b")], vec![labeled("d", db(), json!(null))]),
                    node("nozone", &[], vec![]),
                ],
                want: vec![
                    pass(),
                    pass(),
                    unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH),
                    unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH),
                ],
            },
            Case {
                name:
                    "affinity with no matching pod anywhere fails if the pod does not match itself",
                pod: labeled("p", db(), required("podAffinity", vec![term("web", ZONE)])),
                nodes: vec![node("a1", &[(ZONE, "a")], vec![])],
                want: vec![unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH)],
            },
            Case {
                name: "the first pod of a self-affine group may go to any node with the key",
                pod: labeled(
                    "web-1",
                    web(),
                    required("podAffinity", vec![term("web", ZONE)]),
                ),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], vec![labeled("d", db(), json!(null))]),
                    node("nozone", &[], vec![]),
                ],
                want: vec![pass(), unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH)],
            },
            Case {
                name: "a self-affine pod must follow its group once one member runs",
                pod: labeled(
                    "web-2",
                    web(),
                    required("podAffinity", vec![term("web", ZONE)]),
                ),
                nodes: vec![
                    node(
                        "a1",
                        &[(ZONE, "a")],
                        vec![labeled("web-1", web(), json!(null))],
                    ),
                    node("b1", &[(ZONE, "b")], vec![]),
                ],
                want: vec![pass(), unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH)],
            },
            Case {
                name: "existing pods' anti-affinity repels the incoming pod from their domain",
                pod: labeled("p", web(), json!(null)),
                nodes: vec![
                    node(
                        "a1",
                        &[(ZONE, "a")],
                        vec![labeled(
                            "lonely",
                            db(),
                            required("podAntiAffinity", vec![term("web", ZONE)]),
                        )],
                    ),
                    node("a2", &[(ZONE, "a")], vec![]),
                    node("b1", &[(ZONE, "b")], vec![]),
                ],
                want: vec![
                    unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH),
                    unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH),
                    pass(),
                ],
            },
            Case {
                name: "existing pods' anti-affinity does not repel non-matching pods",
                pod: labeled("p", db(), json!(null)),
                nodes: vec![node(
                    "a1",
                    &[(ZONE, "a")],
                    vec![labeled(
                        "x",
                        db(),
                        required("podAntiAffinity", vec![term("web", ZONE)]),
                    )],
                )],
                want: vec![pass()],
            },
            Case {
                name: "an empty namespaceSelector selects pods in all namespaces",
                pod: labeled(
                    "p",
                    db(),
                    required(
                        "podAntiAffinity",
                        vec![json!({
                            "labelSelector": {"matchLabels": {"app": "web"}},
                            "namespaceSelector": {},
                            "topologyKey": HOST,
                        })],
                    ),
                ),
                nodes: vec![node(
                    "n1",
                    &[],
                    vec![pod(json!({
                        "metadata": {"name": "w", "namespace": "other", "labels": web()},
                    }))],
                )],
                want: vec![unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH)],
            },
            Case {
                name: "a term without labelSelector selects no pods",
                pod: labeled(
                    "p",
                    db(),
                    required("podAntiAffinity", vec![json!({"topologyKey": HOST})]),
                ),
                nodes: vec![node("n1", &[], vec![labeled("w", web(), json!(null))])],
                want: vec![pass()],
            },
        ];
        let plugin = InterPodAffinity::new();
        for case in cases {
            let snapshot = Snapshot::new(case.nodes);
            assert_eq!(
                filter_all(&plugin, &case.pod, &snapshot),
                case.want,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn namespace_selectors_use_the_configured_namespace_labels() {
        let mut plugin = InterPodAffinity::new();
        plugin.namespace_labels.insert(
            "team-a".into(),
            BTreeMap::from([("team".into(), "a".into())]),
        );
        let incoming = labeled(
            "p",
            json!({"app": "db"}),
            required(
                "podAntiAffinity",
                vec![json!({
                    "labelSelector": {"matchLabels": {"app": "web"}},
                    "namespaceSelector": {"matchLabels": {"team": "a"}},
                    "topologyKey": HOST,
                })],
            ),
        );
        let in_ns = |ns: &str| {
            pod(json!({"metadata": {"name": "w", "namespace": ns, "labels": {"app": "web"}}}))
        };
        let snapshot = Snapshot::new(vec![
            node("n1", &[], vec![in_ns("team-a")]),
            node("n2", &[], vec![in_ns("team-b")]),
        ]);
        assert_eq!(
            filter_all(&plugin, &incoming, &snapshot),
            vec![
                unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH),
                pass()
            ]
        );
    }

    #[test]
    fn scores_prefer_domains_by_weighted_terms_and_normalize_min_max() {
        let web = || json!({"app": "web"});
        struct Case {
            name: &'static str,
            pod: Pod,
            nodes: Vec<NodeInfo>,
            want: Vec<i64>,
        }
        let cases = vec![
            Case {
                name: "preferred affinity favours the zone of matching pods",
                pod: labeled(
                    "p",
                    json!({}),
                    preferred("podAffinity", 10, term("web", ZONE)),
                ),
                nodes: vec![
                    node("a1", &[(ZONE, "a")], vec![labeled("w", web(), json!(null))]),
                    node("a2", &[(ZONE, "a")], vec![]),
                    node("b1", &[(ZONE, "b")], vec![]),
                ],
                want: vec![100, 100, 0],
            },
            Case {
                name: "preferred anti-affinity avoids hosts with matching pods",
                pod: labeled(
                    "p",
                    web(),
                    preferred("podAntiAffinity", 5, term("web", HOST)),
                ),
                nodes: vec![
                    node(
                        "n1",
                        &[],
                        vec![
                            labeled("w1", web(), json!(null)),
                            labeled("w2", web(), json!(null)),
                        ],
                    ),
                    node("n2", &[], vec![labeled("w3", web(), json!(null))]),
                    node("n3", &[], vec![]),
                ],
                want: vec![0, 50, 100],
            },
            Case {
                name: "existing pods' preferred anti-affinity is symmetric",
                pod: labeled("p", web(), json!(null)),
                nodes: vec![
                    node(
                        "n1",
                        &[],
                        vec![labeled(
                            "x",
                            json!({}),
                            preferred("podAntiAffinity", 7, term("web", HOST)),
                        )],
                    ),
                    node("n2", &[], vec![]),
                ],
                want: vec![0, 100],
            },
            Case {
                name: "existing pods' required affinity attracts with the hard weight",
                pod: labeled("p", web(), json!(null)),
                nodes: vec![
                    node("n1", &[], vec![]),
                    node(
                        "n2",
                        &[],
                        vec![labeled(
                            "x",
                            json!({}),
                            required("podAffinity", vec![term("web", HOST)]),
                        )],
                    ),
                ],
                want: vec![0, 100],
            },
            Case {
                name: "no terms anywhere score every node 0",
                pod: labeled("p", web(), json!(null)),
                nodes: vec![node("n1", &[], vec![]), node("n2", &[], vec![])],
                want: vec![0, 0],
            },
        ];
        let plugin = InterPodAffinity::new();
        for case in cases {
            let snapshot = Snapshot::new(case.nodes);
            let scores = normalized_scores(&plugin, &case.pod, &snapshot);
            assert_eq!(scores, case.want, "{}", case.name);
        }
    }
}
