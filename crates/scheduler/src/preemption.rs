//! Preemption, pure: for a pod that fits nowhere, the node where evicting
//! the fewest, least important lower-priority pods lets it fit.
//!
//! Mirrors upstream's DefaultPreemption plugin
//! (`pkg/scheduler/framework/plugins/defaultpreemption/default_preemption.go`:
//! `PodEligibleToPreemptOthers`, `SelectVictimsOnNode`,
//! `filterPodsWithPDBViolation`) and the evaluator of
//! `pkg/scheduler/framework/preemption/preemption.go` (`findCandidates`,
//! `nodesWherePreemptionMightHelp`, `DryRunPreemption`,
//! `pickOneNodeForPreemption`):
//! - only nodes whose filter failure was not `Unresolvable` are tried;
//! - on each, every lower-priority pod is removed; if the pod then fits, the
//!   removed pods are reprieved one by one (PDB-violating ones first, each
//!   group from the most important down) as long as the pod still fits;
//!   the ones that cannot be reprieved are the victims;
//! - the dry run stops after `max(10% of the nodes, 100)` candidates;
//! - the best candidate has the fewest PDB violations, then the lowest
//!   highest-victim priority, the smallest priority sum, the fewest victims,
//!   the latest start time of its most important victims, then comes first.
//!
//! Differences: upstream starts the dry run at a random offset and breaks
//! the final tie by map order; here both follow the snapshot's order. The
//! caller does the I/O: deleting the victims, setting
//! `status.nominatedNodeName`, clearing lower-priority nominations.

use std::cmp::Ordering;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::cycle::{FitError, PreparedFilters, Profile};
use crate::framework::{Filter, NodeInfo, Snapshot};
use crate::plugins::inter_pod_affinity::has_required_anti_affinity;
use crate::plugins::resources::node_info;

/// Upstream's `MinCandidateNodesPercentage`.
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// Upstream's `MinCandidateNodesAbsolute`.
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;
/// The status of a node preemption could not help on.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// The status of a node without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Where the pod can go once `victims` are evicted.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<Pod>>,
    /// How many victims are protected by an exhausted PodDisruptionBudget.
    pub pdb_violations: usize,
}

/// `spec.priority`, 0 when unset (upstream's `PodPriority`).
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// `status.startTime` in nanoseconds; a pod not started counts as starting
/// last (upstream uses "now").
fn start_time(pod: &Pod) -> i128 {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or(i128::MAX, |t| t.0.as_nanosecond())
}

/// Upstream's `MoreImportantPod` as an ordering: higher priority first, then
/// earlier start.
fn more_important_first(a: &Arc<Pod>, b: &Arc<Pod>) -> Ordering {
    pod_priority(b)
        .cmp(&pod_priority(a))
        .then_with(|| start_time(a).cmp(&start_time(b)))
}

/// Whether the pod was deleted by a scheduler's preemption and is still
/// terminating (upstream's `podTerminatingByPreemption`).
fn terminating_by_preemption(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| {
                c.type_ == "DisruptionTarget"
                    && c.status == "True"
                    && c.reason.as_deref() == Some("PreemptionByScheduler")
            })
}

/// Upstream's `PodEligibleToPreemptOthers`: `Err` with upstream's message
/// when the pod may not preempt.
pub fn pod_eligible_to_preempt_others(
    pod: &Pod,
    snapshot: &Snapshot,
    fit_error: &FitError,
) -> Result<(), String> {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never.".to_string());
    }
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .unwrap_or("");
    if nominated.is_empty() || fit_error.unresolvable.contains(nominated) {
        return Ok(());
    }
    let priority = pod_priority(pod);
    let node = snapshot.nodes.iter().find(|n| n.name() == nominated);
    let terminating = node.is_some_and(|n| {
        n.pods
            .iter()
            .any(|p| pod_priority(p) < priority && terminating_by_preemption(p))
    });
    if terminating {
        return Err("not eligible due to a terminating pod on the nominated node.".to_string());
    }
    Ok(())
}

/// Upstream's `filterPodsWithPDBViolation`: splits `pods` (kept in order)
/// into those whose eviction would exceed some PDB's `disruptionsAllowed`
/// and the others.
pub fn filter_pods_with_pdb_violation(
    pods: &[Arc<Pod>],
    pdbs: &[PodDisruptionBudget],
) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut allowed: Vec<i32> = pdbs
        .iter()
        .map(|p| p.status.as_ref().map_or(0, |s| s.disruptions_allowed))
        .collect();
    let selectors: Vec<Option<api::selector::LabelSelector>> = pdbs
        .iter()
        .map(|pdb| {
            let selector = pdb.spec.as_ref()?.selector.as_ref()?;
            let selector = api::selector::from_label_selector(selector).ok()?;
            // A nil or empty selector matches nothing.
            (!selector.is_empty()).then_some(selector)
        })
        .collect();
    let (mut violating, mut non_violating) = (Vec::new(), Vec::new());
    for pod in pods {
        let mut violated = false;
        if let Some(labels) = pod.metadata.labels.as_ref().filter(|l| !l.is_empty()) {
            let name = pod.metadata.name.as_deref().unwrap_or("");
            for (i, pdb) in pdbs.iter().enumerate() {
                if pdb.metadata.namespace != pod.metadata.namespace {
                    continue;
                }
                let Some(selector) = &selectors[i] else {
                    continue;
                };
                if !selector.matches(labels) {
                    continue;
                }
                let already_disrupted = pdb
                    .status
                    .as_ref()
                    .and_then(|s| s.disrupted_pods.as_ref())
                    .is_some_and(|d| d.contains_key(name));
                if already_disrupted {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated {
            violating.push(pod.clone());
        } else {
            non_violating.push(pod.clone());
        }
    }
    (violating, non_violating)
}

/// Runs the profile's filters for `pod` on node `index` as if only `pods`
/// ran there.
struct NodeTrial<'a> {
    profile: &'a Profile,
    pod: &'a Pod,
    snapshot: &'a Snapshot,
    /// Filters prepared on the unchanged snapshot, usable when no
    /// snapshot-wide rule (pod affinity, spread, existing anti-affinity) can
    /// change with the node's pods.
    local: Option<PreparedFilters<'a>>,
}

impl NodeTrial<'_> {
    fn fits(&self, index: usize, pods: &[Arc<Pod>]) -> Result<(), Filter> {
        let node: &NodeInfo = &self.snapshot.nodes[index];
        let info = node_info(node.node.clone(), pods.to_vec());
        match &self.local {
            Some(filters) => filters
                .run(self.pod, &info, self.snapshot)
                .map_err(|(_, status)| status),
            None => {
                let mut snapshot = self.snapshot.clone();
                snapshot.nodes[index] = Arc::new(info);
                let filters = PreparedFilters::new(self.profile, self.pod, &snapshot)
                    .map_err(|(_, msg)| Filter::Unresolvable(vec![msg]))?;
                filters
                    .run(self.pod, &snapshot.nodes[index], &snapshot)
                    .map_err(|(_, status)| status)
            }
        }
    }

    /// Upstream's `SelectVictimsOnNode`: the victims and how many of them
    /// violate a PDB, or the node's failure.
    fn select_victims(
        &self,
        index: usize,
        pdbs: &[PodDisruptionBudget],
    ) -> Result<(Vec<Arc<Pod>>, usize), Filter> {
        let priority = pod_priority(self.pod);
        let node = &self.snapshot.nodes[index];
        let (mut potential, mut remaining): (Vec<Arc<Pod>>, Vec<Arc<Pod>>) = node
            .pods
            .iter()
            .cloned()
            .partition(|p| pod_priority(p) < priority);
        if potential.is_empty() {
            return Err(Filter::Unresolvable(vec![NO_VICTIMS.to_string()]));
        }
        self.fits(index, &remaining)?;
        potential.sort_by(more_important_first);
        let (violating, non_violating) = filter_pods_with_pdb_violation(&potential, pdbs);
        let mut victims = Vec::new();
        let mut violations = 0;
        for (group, is_violating) in [(&violating, true), (&non_violating, false)] {
            for pod in group {
                remaining.push(pod.clone());
                if self.fits(index, &remaining).is_err() {
                    remaining.pop();
                    victims.push(pod.clone());
                    violations += usize::from(is_violating);
                }
            }
        }
        if !violating.is_empty() && !non_violating.is_empty() {
            victims.sort_by(more_important_first);
        }
        Ok((victims, violations))
    }
}

fn has_pod_affinity_or_spread(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.topology_spread_constraints
            .as_ref()
            .is_some_and(|c| !c.is_empty())
            || s.affinity
                .as_ref()
                .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
    })
}

/// Upstream's `GetOffsetAndNumCandidates` without the random offset.
fn num_candidates(potential_nodes: usize) -> usize {
    (potential_nodes * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(potential_nodes)
}

/// Upstream's `pickOneNodeForPreemption`.
fn pick_one(candidates: Vec<Candidate>) -> Option<Candidate> {
    type Criterion = fn(&Candidate) -> i128;
    let criteria: [Criterion; 5] = [
        |c| -(c.pdb_violations as i128),
        |c| -i128::from(c.victims.first().map_or(i32::MIN, |p| pod_priority(p))),
        |c| {
            -c.victims
                .iter()
                .map(|p| i128::from(pod_priority(p)) + i128::from(i32::MAX) + 1)
                .sum::<i128>()
        },
        |c| -(c.victims.len() as i128),
        |c| {
            // The earliest start among the most important victims; later is
            // better.
            let top = c.victims.iter().map(|p| pod_priority(p)).max();
            c.victims
                .iter()
                .filter(|p| Some(pod_priority(p)) == top)
                .map(|p| start_time(p))
                .min()
                .unwrap_or(i128::MIN)
        },
    ];
    let mut remaining = candidates;
    for criterion in criteria {
        if remaining.len() <= 1 {
            break;
        }
        let best = remaining.iter().map(criterion).max()?;
        remaining.retain(|c| criterion(c) == best);
    }
    remaining.into_iter().next()
}

/// Upstream's `Preempt` up to choosing the node: the best candidate, or the
/// message upstream puts after `preemption: ` (see
/// [`crate::cycle::preemption_message`]).
pub fn preempt(
    profile: &Profile,
    pod: &Pod,
    snapshot: &Snapshot,
    fit_error: &FitError,
    pdbs: &[PodDisruptionBudget],
) -> Result<Candidate, String> {
    pod_eligible_to_preempt_others(pod, snapshot, fit_error)?;
    let num_all_nodes = snapshot.nodes.len();
    // nodesWherePreemptionMightHelp.
    let potential: Vec<usize> = (0..num_all_nodes)
        .filter(|&i| !fit_error.unresolvable.contains(snapshot.nodes[i].name()))
        .collect();
    let wanted = num_candidates(potential.len());

    let needs_global = has_pod_affinity_or_spread(pod)
        || snapshot
            .nodes
            .iter()
            .any(|n| n.pods.iter().any(|p| has_required_anti_affinity(p)));
    let local = if needs_global {
        None
    } else {
        Some(
            PreparedFilters::new(profile, pod, snapshot)
                .map_err(|(_, msg)| format!("0/{num_all_nodes} nodes are available: {msg}."))?,
        )
    };
    let trial = NodeTrial {
        profile,
        pod,
        snapshot,
        local,
    };

    let mut candidates = Vec::new();
    let mut statuses = FitError {
        num_all_nodes,
        ..FitError::default()
    };
    let mut explicit = 0;
    for index in potential {
        if candidates.len() >= wanted {
            break;
        }
        match trial.select_victims(index, pdbs) {
            Ok((victims, pdb_violations)) if !victims.is_empty() => candidates.push(Candidate {
                node: snapshot.nodes[index].name().to_string(),
                victims,
                pdb_violations,
            }),
            Ok(_) => {}
            Err(status) => {
                explicit += 1;
                for reason in status.reasons() {
                    *statuses.diagnosis.entry(reason.clone()).or_default() += 1;
                }
            }
        }
    }
    if candidates.is_empty() {
        let absent = num_all_nodes - explicit;
        if absent > 0 {
            *statuses
                .diagnosis
                .entry(NOT_HELPFUL.to_string())
                .or_default() += absent;
        }
        return Err(statuses.to_string());
    }
    pick_one(candidates).ok_or_else(|| NOT_HELPFUL.to_string())
}

/// [`preempt`]'s candidate, if any.
pub fn find_candidate(
    profile: &Profile,
    pod: &Pod,
    snapshot: &Snapshot,
    fit_error: &FitError,
    pdbs: &[PodDisruptionBudget],
) -> Option<Candidate> {
    preempt(profile, pod, snapshot, fit_error, pdbs).ok()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};

    use super::*;
    use crate::cycle::{preemption_message, schedule};

    fn node(name: &str, cpu: &str, extra: Value) -> Node {
        let mut value = json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}},
        });
        if let Value::Object(extra) = extra {
            for (key, v) in extra {
                value[key.as_str()] = v;
            }
        }
        serde_json::from_value(value).unwrap()
    }

    fn pod(name: &str, cpu: &str, priority: i32, labels: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {
                "priority": priority,
                "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}],
            },
        }))
        .unwrap()
    }

    fn snapshot(nodes: Vec<(Node, Vec<Pod>)>) -> Snapshot {
        Snapshot::new(
            nodes
                .into_iter()
                .map(|(n, pods)| node_info(Arc::new(n), pods.into_iter().map(Arc::new).collect()))
                .collect(),
        )
    }

    fn pdb(app: &str, allowed: i32) -> PodDisruptionBudget {
        serde_json::from_value(json!({
            "metadata": {"name": app, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": app}}},
            "status": {
                "disruptionsAllowed": allowed,
                "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1,
            },
        }))
        .unwrap()
    }

    /// Schedules `pod`, expects a FitError, and runs preemption.
    fn run(pod: &Pod, snap: &Snapshot, pdbs: &[PodDisruptionBudget]) -> Result<Candidate, String> {
        let profile = Profile::default_profile();
        let err = schedule(&profile, pod, snap, 0).expect_err("pod must not fit");
        preempt(&profile, pod, snap, &err, pdbs)
    }

    fn names(c: &Candidate) -> Vec<&str> {
        c.victims
            .iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn evicts_the_single_lowest_priority_pod() {
        let snap = snapshot(vec![(
            node("n", "3", Value::Null),
            vec![
                pod("low", "1", 1, Value::Null),
                pod("mid", "1", 5, Value::Null),
                pod("lowish", "1", 2, Value::Null),
            ],
        )]);
        let c = run(&pod("p", "1", 10, Value::Null), &snap, &[]).unwrap();
        assert_eq!(
            (c.node.as_str(), names(&c), c.pdb_violations),
            ("n", vec!["low"], 0)
        );
        // Needing two cpus evicts the two least important.
        let c = run(&pod("p", "2", 10, Value::Null), &snap, &[]).unwrap();
        assert_eq!(names(&c), vec!["lowish", "low"]);
    }

    #[test]
    fn never_evicts_equal_or_higher_priority() {
        let snap = snapshot(vec![(
            node("n", "2", Value::Null),
            vec![
                pod("same", "1", 10, Value::Null),
                pod("high", "1", 20, Value::Null),
            ],
        )]);
        let msg = run(&pod("p", "1", 10, Value::Null), &snap, &[]).unwrap_err();
        assert_eq!(msg, format!("0/1 nodes are available: 1 {NO_VICTIMS}."));
        // Victims of lower priority that would not free enough: no candidate.
        let snap = snapshot(vec![(
            node("n", "2", Value::Null),
            vec![
                pod("low", "1", 1, Value::Null),
                pod("high", "1", 20, Value::Null),
            ],
        )]);
        let msg = run(&pod("p", "2", 10, Value::Null), &snap, &[]).unwrap_err();
        assert_eq!(msg, "0/1 nodes are available: 1 Insufficient cpu.");
    }

    #[test]
    fn prefers_a_node_without_pdb_violations() {
        let snap = snapshot(vec![
            (
                node("a", "1", Value::Null),
                vec![pod("guarded", "1", 1, json!({"app": "db"}))],
            ),
            (
                node("b", "1", Value::Null),
                vec![pod("free", "1", 5, json!({"app": "web"}))],
            ),
        ]);
        let p = pod("p", "1", 10, Value::Null);
        // Without budgets the lower victim priority wins.
        assert_eq!(run(&p, &snap, &[]).unwrap().node, "a");
        let c = run(&p, &snap, &[pdb("db", 0)]).unwrap();
        assert_eq!(
            (c.node.as_str(), names(&c), c.pdb_violations),
            ("b", vec!["free"], 0)
        );
        // A budget with room is no violation.
        assert_eq!(run(&p, &snap, &[pdb("db", 1)]).unwrap().node, "a");
        // Violating everywhere: still a candidate, violation counted.
        let c = run(&p, &snap, &[pdb("db", 0), pdb("web", 0)]).unwrap();
        assert_eq!((c.node.as_str(), c.pdb_violations), ("a", 1));
    }

    #[test]
    fn pdb_violating_pods_are_reprieved_first() {
        let (violating, non_violating) = filter_pods_with_pdb_violation(
            &[
                Arc::new(pod("x1", "1", 1, json!({"app": "db"}))),
                Arc::new(pod("x2", "1", 1, json!({"app": "db"}))),
                Arc::new(pod("y", "1", 1, json!({"app": "web"}))),
            ],
            &[pdb("db", 1)],
        );
        let names = |v: &[Arc<Pod>]| {
            v.iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&violating), ["x2"]);
        assert_eq!(names(&non_violating), ["x1", "y"]);
        // One slot to free among a protected and an unprotected pod of equal
        // priority: the protected one is reprieved.
        let snap = snapshot(vec![(
            node("n", "2", Value::Null),
            vec![
                pod("db", "1", 1, json!({"app": "db"})),
                pod("web", "1", 1, json!({"app": "web"})),
            ],
        )]);
        let c = run(&pod("p", "1", 10, Value::Null), &snap, &[pdb("db", 0)]).unwrap();
        assert_eq!(
            (names(&c.victims), c.pdb_violations),
            (vec!["web".to_string()], 0)
        );
    }

    #[test]
    fn skips_unresolvable_nodes_and_ineligible_pods() {
        let taint = json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}});
        let snap = snapshot(vec![
            (
                node("tainted", "1", taint),
                vec![pod("a", "1", 1, Value::Null)],
            ),
            (
                node("small", "1", Value::Null),
                vec![pod("b", "1", 1, Value::Null)],
            ),
        ]);
        let c = run(&pod("p", "1", 10, Value::Null), &snap, &[]).unwrap();
        assert_eq!(c.node, "small");
        // Too big for any node: nothing helps.
        let msg = run(&pod("p", "2", 10, Value::Null), &snap, &[]).unwrap_err();
        assert_eq!(msg, format!("0/2 nodes are available: 2 {NOT_HELPFUL}."));
        // preemptionPolicy: Never.
        let mut never = pod("p", "1", 10, Value::Null);
        never.spec.as_mut().unwrap().preemption_policy = Some("Never".to_string());
        let profile = Profile::default_profile();
        let mut err = schedule(&profile, &never, &snap, 0).unwrap_err();
        let msg = preempt(&profile, &never, &snap, &err, &[]).unwrap_err();
        err.post_filter_msg = Some(preemption_message(&msg));
        assert_eq!(
            err.to_string(),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint \
             {k: }. preemption: not eligible due to preemptionPolicy=Never."
        );
    }

    #[test]
    fn anti_affinity_victim_is_found_through_the_snapshot() {
        // An existing low-priority pod's anti-affinity rejects the incoming
        // pod; evicting it resolves that.
        let mut blocker = pod("blocker", "100m", 1, json!({"app": "x"}));
        blocker.spec.as_mut().unwrap().affinity = Some(
            serde_json::from_value(json!({"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "y"}},
                    "topologyKey": "kubernetes.io/hostname",
                }]
            }}))
            .unwrap(),
        );
        let labels = json!({"metadata": {"name": "n", "labels": {"kubernetes.io/hostname": "n"}}});
        let snap = snapshot(vec![(
            node("n", "4", labels),
            vec![blocker, pod("other", "100m", 1, Value::Null)],
        )]);
        let c = run(&pod("p", "100m", 10, json!({"app": "y"})), &snap, &[]).unwrap();
        assert_eq!(names(&c), vec!["blocker"]);
    }
}
