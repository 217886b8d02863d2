//! The StatefulSet decision, as upstream's `updateStatefulSet`: given the
//! set, its current and update revisions and its pods, what to create,
//! delete or relabel next, and the status to report.
//!
//! - Pods `[start, start+replicas)` are the set's replicas; pods with other
//!   ordinals are condemned.
//! - `OrderedReady` ("monotonic") goes one step at a time: a missing pod is
//!   created only once every lower ordinal is Running, Ready and available;
//!   a condemned pod is deleted, highest ordinal first, only once every
//!   replica is healthy and the previous deletion finished. `Parallel`
//!   creates and deletes everything at once.
//! - Finished (Failed or Succeeded) pods are deleted, to be recreated.
//! - RollingUpdate replaces pods whose revision is not the update revision,
//!   highest ordinal first, one at a time, waiting for each replacement to
//!   be available, never below `partition`; OnDelete only makes new pods at
//!   the update revision.
//! - The status counts the pods; once every pod is updated and ready the
//!   update revision becomes the current one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;

use super::identity::{
    claims, identity_labels, identity_matches, in_range, is_created, is_finished,
    is_running_and_ready, is_terminating, is_unavailable, new_pod, ordinal, replicas, revision,
    start_ordinal,
};
use crate::pods::{is_pod_available, phase};

/// A revision: its name (the pods' `controller-revision-hash`) and the
/// template it restores.
#[derive(Debug, Clone, Copy)]
pub struct Revision<'a> {
    pub name: &'a str,
    pub template: &'a PodTemplateSpec,
}

/// Why a pod is deleted (its event and log differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Failed or Succeeded: replaced by a new pod.
    Finished,
    /// Its ordinal is no longer wanted.
    ScaleDown,
    /// It is not at the update revision.
    Update,
}

/// One step the executor carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the claims that do not exist yet, then the pod.
    Create {
        pod: Box<Pod>,
        claims: Vec<PersistentVolumeClaim>,
    },
    /// A pending pod whose claims went missing: create them again.
    CreateClaims {
        pod: String,
        claims: Vec<PersistentVolumeClaim>,
    },
    /// Delete the pod (guarded by its UID).
    Delete {
        pod: String,
        uid: Option<String>,
        why: Why,
    },
    /// Put back the pod's identity labels.
    Relabel {
        pod: String,
        labels: BTreeMap<String, String>,
    },
}

/// What the controller observed.
pub struct Observed<'a> {
    pub set: &'a StatefulSet,
    pub current: Revision<'a>,
    pub update: Revision<'a>,
    pub collision_count: i32,
    /// The set's pods (claimed, members by name).
    pub pods: &'a [Arc<Pod>],
    /// Whether the claim of that name exists.
    pub claim_exists: &'a dyn Fn(&str) -> bool,
    pub now: Timestamp,
}

/// The decision: actions in order, and the status to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: StatefulSetStatus,
    /// Look again then (pods becoming available after minReadySeconds).
    pub requeue_after: Option<Duration>,
    /// OrderedReady: the actions are meant one after another.
    pub monotonic: bool,
}

/// A replica slot: the pod there, or the one to create.
enum Slot<'a> {
    Existing(&'a Pod),
    Missing(Box<Pod>),
}

impl Slot<'_> {
    fn pod(&self) -> &Pod {
        match self {
            Slot::Existing(p) => p,
            Slot::Missing(p) => p,
        }
    }
}

/// The update strategy's type (default RollingUpdate) and partition (None
/// without a `rollingUpdate` block).
fn strategy(set: &StatefulSet) -> (&str, Option<i32>) {
    let strategy = set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    let kind = strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate");
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .map(|r| r.partition.unwrap_or(0));
    (kind, partition)
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// Which revision a new pod at `ordinal` gets (upstream's
/// `newVersionedStatefulSetPod`): below the partition (or, without a
/// rollingUpdate block, below the current replica count) it stays at the
/// current revision; otherwise it is made at the update revision.
pub fn versioned_pod(set: &StatefulSet, current: Revision, update: Revision, ordinal: i32) -> Pod {
    let (kind, partition) = strategy(set);
    let start = start_ordinal(set);
    let current_replicas = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let keep_current = match partition {
        Some(partition) => ordinal < start + partition,
        None => kind == "RollingUpdate" && ordinal < start + current_replicas,
    };
    let revision = if keep_current { current } else { update };
    new_pod(set, revision.template, ordinal, revision.name)
}

/// The claims pod `ordinal` needs that do not exist.
fn missing_claims(o: &Observed, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    claims(o.set, ordinal)
        .into_iter()
        .map(|(_, claim)| claim)
        .filter(|c| !(o.claim_exists)(c.metadata.name.as_deref().unwrap_or_default()))
        .collect()
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn delete(pod: &Pod, why: Why) -> Action {
    Action::Delete {
        pod: name_of(pod),
        uid: pod.metadata.uid.clone(),
        why,
    }
}

/// Decide the next steps for a set.
pub fn plan(o: &Observed) -> Plan {
    let set = o.set;
    let min_ready = min_ready_seconds(set);
    let monotonic = set
        .spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        != Some("Parallel");
    let start = start_ordinal(set);
    let count = replicas(set) as usize;

    // Sort pods into replica slots and condemned pods.
    let mut existing: Vec<Option<&Pod>> = vec![None; count];
    let mut condemned: Vec<&Pod> = Vec::new();
    for pod in o.pods {
        match ordinal(pod) {
            Some(ord) if in_range(set, ord) => existing[(ord - start) as usize] = Some(pod),
            Some(_) => condemned.push(pod),
            None => {}
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
    let slots: Vec<Slot> = existing
        .into_iter()
        .enumerate()
        .map(|(i, pod)| match pod {
            Some(pod) => Slot::Existing(pod),
            None => Slot::Missing(Box::new(versioned_pod(
                set,
                o.current,
                o.update,
                start + i as i32,
            ))),
        })
        .collect();

    // The first unavailable pod: the lowest replica, else the lowest
    // condemned one. It alone may be deleted while unhealthy.
    let first_unavailable = slots
        .iter()
        .map(Slot::pod)
        .chain(condemned.iter().rev().copied())
        .find(|p| is_unavailable(p, min_ready, o.now))
        .map(name_of);

    let mut plan = Plan {
        actions: Vec::new(),
        status: StatefulSetStatus::default(),
        requeue_after: None,
        monotonic,
    };
    let decided = set.metadata.deletion_timestamp.is_some()
        || replica_steps(o, &slots, monotonic, min_ready, &mut plan.actions)
        || condemned_steps(
            &condemned,
            first_unavailable.as_deref(),
            monotonic,
            min_ready,
            o.now,
            &mut plan.actions,
        );
    plan.status = status(o, &slots, &condemned);
    let (kind, partition) = strategy(set);
    if !decided && kind == "RollingUpdate" {
        // Replace the highest ordinal not at the update revision, waiting
        // for each replacement to be available.
        let update_min = partition.unwrap_or(0).max(0) as usize;
        for slot in slots.iter().skip(update_min).rev() {
            let pod = slot.pod();
            if revision(pod) != o.update.name && !is_terminating(pod) {
                if let Slot::Existing(pod) = slot {
                    plan.actions.push(delete(pod, Why::Update));
                    let current = plan.status.current_replicas.unwrap_or(0);
                    plan.status.current_replicas = Some(current - 1);
                }
                break;
            }
            if is_unavailable(pod, min_ready, o.now) {
                break;
            }
        }
    }
    complete_rolling_update(set, &mut plan.status);
    let wanted = replicas(set);
    if min_ready > 0 && plan.status.available_replicas != Some(wanted) {
        plan.requeue_after = Some(Duration::from_secs(min_ready as u64));
    }
    plan
}

/// Upstream's `processReplica` over every slot. Returns whether the
/// decision is made (monotonic mode blocked or acted).
fn replica_steps(
    o: &Observed,
    slots: &[Slot],
    monotonic: bool,
    min_ready: i32,
    actions: &mut Vec<Action>,
) -> bool {
    for slot in slots {
        let pod = match slot {
            Slot::Missing(pod) => {
                let ord = ordinal(pod).unwrap_or_default();
                actions.push(Action::Create {
                    pod: pod.clone(),
                    claims: missing_claims(o, ord),
                });
                if monotonic {
                    return true;
                }
                continue;
            }
            Slot::Existing(pod) => *pod,
        };
        if is_finished(pod) {
            if !is_terminating(pod) {
                actions.push(delete(pod, Why::Finished));
            }
            if monotonic {
                return true;
            }
            continue;
        }
        let ord = ordinal(pod).unwrap_or_default();
        if phase(pod) == "Pending" {
            let claims = missing_claims(o, ord);
            if !claims.is_empty() {
                actions.push(Action::CreateClaims {
                    pod: name_of(pod),
                    claims,
                });
            }
        }
        if monotonic
            && (is_terminating(pod)
                || !is_running_and_ready(pod)
                || !is_pod_available(pod, min_ready, o.now))
        {
            return true;
        }
        // Hostname, subdomain and volumes are immutable once the pod
        // exists (upstream's attempt to change them is refused by the API
        // server), so only the identity labels are repaired.
        if !identity_matches(o.set, pod) {
            actions.push(Action::Relabel {
                pod: name_of(pod),
                labels: identity_labels(o.set, ord),
            });
        }
    }
    false
}

/// Upstream's `processCondemned`, highest ordinal first. Returns whether
/// the decision is made.
fn condemned_steps(
    condemned: &[&Pod],
    first_unavailable: Option<&str>,
    monotonic: bool,
    min_ready: i32,
    now: Timestamp,
    actions: &mut Vec<Action>,
) -> bool {
    for pod in condemned {
        if is_terminating(pod) {
            if monotonic {
                return true;
            }
            continue;
        }
        let first = first_unavailable == pod.metadata.name.as_deref();
        if monotonic
            && !first
            && (!is_running_and_ready(pod) || !is_pod_available(pod, min_ready, now))
        {
            return true;
        }
        actions.push(delete(pod, Why::ScaleDown));
        if monotonic {
            return true;
        }
    }
    false
}

/// Count the pods (upstream's `computeReplicaStatus`).
fn status(o: &Observed, slots: &[Slot], condemned: &[&Pod]) -> StatefulSetStatus {
    let min_ready = min_ready_seconds(o.set);
    let pods = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Existing(p) => Some(*p),
            Slot::Missing(_) => None,
        })
        .chain(condemned.iter().copied());
    let (mut total, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods {
        if is_created(pod) {
            total += 1;
        }
        if is_running_and_ready(pod) {
            ready += 1;
            if is_pod_available(pod, min_ready, o.now) {
                available += 1;
            }
        }
        if is_created(pod) && !is_terminating(pod) {
            if revision(pod) == o.current.name {
                current += 1;
            }
            if revision(pod) == o.update.name {
                updated += 1;
            }
        }
    }
    StatefulSetStatus {
        observed_generation: o.set.metadata.generation,
        replicas: total,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(o.current.name.to_string()),
        update_revision: Some(o.update.name.to_string()),
        collision_count: Some(o.collision_count),
        conditions: o.set.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

/// Once every pod is updated and ready the update revision is the current
/// one (upstream's `completeRollingUpdate`).
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let (kind, _) = strategy(set);
    if kind == "RollingUpdate"
        && status.updated_replicas == Some(status.replicas)
        && status.ready_replicas == Some(status.replicas)
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::history::POD_REVISION_LABEL;
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{Container, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

    fn now() -> Timestamp {
        "2026-01-01T00:10:00Z".parse().unwrap()
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "nginx".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn set(replicas: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-web".into()),
                generation: Some(4),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                service_name: Some("nginx".into()),
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                },
                template: template("nginx:2"),
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateStatefulSetStrategy {
                        partition: Some(0),
                        max_unavailable: None,
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn parallel(mut s: StatefulSet) -> StatefulSet {
        s.spec.as_mut().unwrap().pod_management_policy = Some("Parallel".into());
        s
    }

    fn partitioned(mut s: StatefulSet, partition: i32) -> StatefulSet {
        let ru = s.spec.as_mut().unwrap().update_strategy.as_mut().unwrap();
        ru.rolling_update.as_mut().unwrap().partition = Some(partition);
        s
    }

    fn on_delete(mut s: StatefulSet) -> StatefulSet {
        s.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        s
    }

    /// A pod's state, as the test tables write it.
    #[derive(Clone, Copy)]
    enum S {
        Pending,
        Ready,
        NotReady,
        Terminating,
        Failed,
    }

    /// Pod `ordinal` at revision `rev` ("a" current, "b" update).
    fn pod(ordinal: i32, rev: &str, state: S) -> Arc<Pod> {
        let ready = matches!(state, S::Ready | S::Terminating);
        let phase = match state {
            S::Pending => "Pending",
            S::Failed => "Failed",
            _ => "Running",
        };
        let t = template(if rev == "web-a" { "nginx:1" } else { "nginx:2" });
        let mut pod = new_pod(&set(1), &t, ordinal, rev);
        pod.metadata.uid = Some(format!("uid-{ordinal}"));
        if matches!(state, S::Terminating) {
            pod.metadata.deletion_timestamp = Some(Time(now()));
        }
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time("2026-01-01T00:00:00Z".parse().unwrap())),
                ..Default::default()
            }]),
            ..Default::default()
        });
        Arc::new(pod)
    }

    fn decide(set: &StatefulSet, pods: &[Arc<Pod>]) -> Plan {
        decide_with_claims(set, pods, &|_| true)
    }

    fn decide_with_claims(
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        claim_exists: &dyn Fn(&str) -> bool,
    ) -> Plan {
        let (t1, t2) = (template("nginx:1"), template("nginx:2"));
        plan(&Observed {
            set,
            current: Revision {
                name: "web-a",
                template: &t1,
            },
            update: Revision {
                name: "web-b",
                template: &t2,
            },
            collision_count: 0,
            pods,
            claim_exists,
            now: now(),
        })
    }

    /// The actions as short strings: `+web-0@web-b`, `-web-2(ScaleDown)`.
    /// A table row: what it shows, the set, its pods, the actions wanted.
    type Case = (&'static str, StatefulSet, Vec<Arc<Pod>>, Vec<&'static str>);

    fn summary(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .map(|a| match a {
                Action::Create { pod, claims } => {
                    let rev = &pod.metadata.labels.as_ref().unwrap()[POD_REVISION_LABEL];
                    let mut s = format!("+{}@{rev}", name_of(pod));
                    for c in claims {
                        s.push_str(&format!("+{}", c.metadata.name.as_deref().unwrap()));
                    }
                    s
                }
                Action::CreateClaims { pod, claims } => format!("claims:{pod}:{}", claims.len()),
                Action::Delete { pod, why, .. } => format!("-{pod}({why:?})"),
                Action::Relabel { pod, .. } => format!("relabel:{pod}"),
            })
            .collect()
    }

    #[test]
    fn ordered_ready_creates_and_deletes_one_pod_at_a_time() {
        use S::*;
        let b = "web-b";
        let cases: Vec<Case> = vec![
            (
                "empty set starts at web-0",
                set(3),
                vec![],
                vec!["+web-0@web-b"],
            ),
            (
                "web-0 pending blocks web-1",
                set(3),
                vec![pod(0, b, Pending)],
                vec![],
            ),
            (
                "web-0 not ready blocks web-1",
                set(3),
                vec![pod(0, b, NotReady)],
                vec![],
            ),
            (
                "web-0 ready: web-1 next",
                set(3),
                vec![pod(0, b, Ready)],
                vec!["+web-1@web-b"],
            ),
            (
                "a gap is filled in order",
                set(3),
                vec![pod(0, b, Ready), pod(2, b, Ready)],
                vec!["+web-1@web-b"],
            ),
            (
                "scale down deletes the highest ordinal",
                set(1),
                vec![pod(0, b, Ready), pod(1, b, Ready), pod(2, b, Ready)],
                vec!["-web-2(ScaleDown)"],
            ),
            (
                "scale down waits for a terminating pod",
                set(1),
                vec![pod(0, b, Ready), pod(1, b, Ready), pod(2, b, Terminating)],
                vec![],
            ),
            (
                "scale down waits for an unhealthy replica",
                set(1),
                vec![pod(0, b, NotReady), pod(1, b, Ready)],
                vec![],
            ),
            (
                "an unhealthy condemned pod goes first only if it is the first unhealthy",
                set(1),
                vec![pod(0, b, Ready), pod(1, b, NotReady), pod(2, b, Ready)],
                vec!["-web-2(ScaleDown)"],
            ),
            (
                "the first unhealthy condemned pod may go",
                set(1),
                vec![pod(0, b, Ready), pod(1, b, NotReady)],
                vec!["-web-1(ScaleDown)"],
            ),
            (
                "a failed pod is deleted, then recreated",
                set(2),
                vec![pod(0, b, Failed), pod(1, b, Ready)],
                vec!["-web-0(Finished)"],
            ),
            (
                "a terminating failed pod is waited for",
                set(2),
                vec![pod(0, b, Terminating), pod(1, b, Ready)],
                vec![],
            ),
            (
                "parallel creates every missing pod",
                parallel(set(3)),
                vec![pod(1, b, Pending)],
                vec!["+web-0@web-b", "+web-2@web-b"],
            ),
            (
                "parallel deletes every condemned pod",
                parallel(set(1)),
                vec![pod(0, b, NotReady), pod(1, b, Ready), pod(2, b, Pending)],
                vec!["-web-2(ScaleDown)", "-web-1(ScaleDown)"],
            ),
        ];
        for (what, set, pods, want) in cases {
            assert_eq!(summary(&decide(&set, &pods)), want, "{what}");
        }
    }

    #[test]
    fn rolling_updates_go_down_from_the_highest_ordinal_and_stop_at_the_partition() {
        use S::*;
        let (a, b) = ("web-a", "web-b");
        let cases: Vec<Case> = vec![
            (
                "the highest old pod goes first",
                set(3),
                vec![pod(0, a, Ready), pod(1, a, Ready), pod(2, a, Ready)],
                vec!["-web-2(Update)"],
            ),
            (
                "its replacement is recreated at the update revision",
                set(3),
                vec![pod(0, a, Ready), pod(1, a, Ready)],
                vec!["+web-2@web-b"],
            ),
            (
                "the next waits for the replacement to be ready",
                set(3),
                vec![pod(0, a, Ready), pod(1, a, Ready), pod(2, b, NotReady)],
                vec![],
            ),
            (
                "then the next one goes",
                set(3),
                vec![pod(0, a, Ready), pod(1, a, Ready), pod(2, b, Ready)],
                vec!["-web-1(Update)"],
            ),
            (
                "a partition keeps lower ordinals",
                partitioned(set(3), 2),
                vec![pod(0, a, Ready), pod(1, a, Ready), pod(2, b, Ready)],
                vec![],
            ),
            (
                "below the partition a new pod keeps the current revision",
                partitioned(set(3), 2),
                vec![pod(1, a, Ready), pod(2, b, Ready)],
                vec!["+web-0@web-a"],
            ),
            (
                "OnDelete replaces nothing",
                on_delete(set(3)),
                vec![pod(0, a, Ready), pod(1, a, Ready), pod(2, a, Ready)],
                vec![],
            ),
            (
                "OnDelete makes a deleted pod at the update revision",
                on_delete(set(3)),
                vec![pod(0, a, Ready), pod(2, a, Ready)],
                vec!["+web-1@web-b"],
            ),
            (
                "scaling comes before updating",
                set(2),
                vec![pod(0, a, Ready), pod(1, a, Ready), pod(2, a, Ready)],
                vec!["-web-2(ScaleDown)"],
            ),
        ];
        for (what, set, pods, want) in cases {
            assert_eq!(summary(&decide(&set, &pods)), want, "{what}");
        }
    }

    #[test]
    fn claims_are_created_with_their_pod_and_again_for_a_pending_pod() {
        let mut s = set(2);
        s.spec.as_mut().unwrap().volume_claim_templates = Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("www".into()),
                ..Default::default()
            },
            ..Default::default()
        }]);
        let none = |_: &str| false;
        assert_eq!(
            summary(&decide_with_claims(&s, &[], &none)),
            ["+web-0@web-b+www-web-0"]
        );
        let only_first = |name: &str| name == "www-web-0";
        assert_eq!(
            summary(&decide_with_claims(&s, &[], &only_first)),
            ["+web-0@web-b"]
        );
        let pending = [pod(0, "web-b", S::Pending)];
        assert_eq!(
            summary(&decide_with_claims(&s, &pending, &none)),
            ["claims:web-0:1"]
        );
    }

    #[test]
    fn a_pod_without_its_identity_labels_is_relabelled() {
        let mut bare = (*pod(0, "web-b", S::Ready)).clone();
        bare.metadata.labels = Some(
            [
                ("app".to_string(), "web".to_string()),
                (POD_REVISION_LABEL.to_string(), "web-b".to_string()),
            ]
            .into(),
        );
        let plan = decide(&set(1), &[Arc::new(bare)]);
        assert_eq!(summary(&plan), ["relabel:web-0"]);
    }

    #[test]
    fn status_counts_pods_and_completes_the_update() {
        use S::*;
        let (a, b) = ("web-a", "web-b");
        let mid = decide(
            &set(3),
            &[pod(0, a, Ready), pod(1, a, Ready), pod(2, b, NotReady)],
        );
        let st = &mid.status;
        assert_eq!(st.observed_generation, Some(4));
        assert_eq!(st.replicas, 3);
        assert_eq!(st.ready_replicas, Some(2));
        assert_eq!(st.available_replicas, Some(2));
        assert_eq!(st.current_replicas, Some(2));
        assert_eq!(st.updated_replicas, Some(1));
        assert_eq!(st.current_revision.as_deref(), Some("web-a"));
        assert_eq!(st.update_revision.as_deref(), Some("web-b"));
        assert_eq!(st.collision_count, Some(0));

        // Deleting for the update counts the pod out of currentReplicas.
        let deleting = decide(&set(2), &[pod(0, a, Ready), pod(1, a, Ready)]);
        assert_eq!(deleting.status.current_replicas, Some(1));

        let done = decide(&set(2), &[pod(0, b, Ready), pod(1, b, Ready)]);
        assert_eq!(done.status.current_revision.as_deref(), Some("web-b"));
        assert_eq!(done.status.current_replicas, Some(2));
        assert!(done.actions.is_empty());

        // A partitioned update never completes.
        let part = decide(
            &partitioned(set(2), 1),
            &[pod(0, a, Ready), pod(1, b, Ready)],
        );
        assert_eq!(part.status.current_revision.as_deref(), Some("web-a"));
    }

    #[test]
    fn min_ready_seconds_holds_the_next_pod_and_requeues() {
        let mut s = set(2);
        s.spec.as_mut().unwrap().min_ready_seconds = Some(3600);
        // Ready since 00:00, now 00:10: not yet available for an hour.
        let plan = decide(&s, &[pod(0, "web-b", S::Ready)]);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.status.ready_replicas, Some(1));
        assert_eq!(plan.status.available_replicas, Some(0));
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn a_set_being_deleted_only_reports_status() {
        let mut s = set(3);
        s.metadata.deletion_timestamp = Some(Time(now()));
        let plan = decide(&s, &[pod(0, "web-b", S::Ready)]);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.status.replicas, 1);
    }
}
