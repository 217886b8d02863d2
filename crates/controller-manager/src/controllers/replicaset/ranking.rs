//! Which pods a ReplicaSet deletes first when it has too many: upstream's
//! `ActivePodsWithRanks` order with `getPodsToDelete`.
//!
//! Earlier in the order is deleted first:
//! 1. unassigned (no node) before assigned;
//! 2. Pending before Unknown before Running;
//! 3. not ready before ready;
//! 4. lower `controller.kubernetes.io/pod-deletion-cost` before higher;
//! 5. pods sharing their node with more related pods (pods of the same
//!    owner's ReplicaSets) before pods on emptier nodes;
//! 6. ready for less time before ready for longer;
//! 7. more container restarts before fewer (regular containers, then
//!    restartable init containers);
//! 8. newer before older;
//! 9. the pod UID, so the order is total.
//!
//! Times (6, 8) compare on upstream's logarithmic scale
//! (`LogarithmicScaleDown`, on by default): durations falling into the same
//! power-of-two bucket of nanoseconds count as equal, so a scale-down does not
//! always kill the very newest pods but any of roughly equally young ones.
//! Upstream breaks such a tie on the UID at once; we fall through to the
//! remaining criteria first, which keeps the order a plain lexicographic key
//! (Rust's sort needs a total order).

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::pods::{is_pod_active, is_pod_ready, phase, ready_since};

/// The annotation with a pod's deletion cost (upstream's `PodDeletionCost`).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A pod's place in the deletion order; smaller keys are deleted first.
type Key = (
    bool,                // assigned to a node
    u8,                  // phase ordinal
    bool,                // ready
    i32,                 // deletion cost
    Reverse<usize>,      // related pods on the same node
    (u8, i64),           // ready time: (0 = unknown, 1 = known), log2 bucket
    Reverse<(i32, i32)>, // restarts: regular, sidecar
    (u8, i64),           // creation time: (0 = unknown, 1 = known), log2 bucket
    String,              // UID
);

/// Upstream's `podPhaseToOrdinal`: Pending (and unset) 0, Unknown 1,
/// Running 2; other phases are not active.
fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

/// The deletion cost annotation; absent or unparseable counts as 0, as
/// upstream's `GetDeletionCostFromPodAnnotations` callers treat it.
fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Upstream's `logarithmicRankDiff` bucket: `floor(log2(now - t))` in
/// nanoseconds, -1 for a time not in the past.
fn age_bucket(t: Timestamp, now: Timestamp) -> i64 {
    let nanos = now.as_nanosecond() - t.as_nanosecond();
    if nanos <= 0 {
        -1
    } else {
        // ilog2 is floor(log2) exactly, without float rounding.
        i64::from(nanos.ilog2())
    }
}

/// The ordering of a time where unknown sorts first, then younger (a
/// smaller bucket) before older.
fn time_key(t: Option<Timestamp>, now: Timestamp) -> (u8, i64) {
    match t {
        None => (0, 0),
        Some(t) => (1, age_bucket(t, now)),
    }
}

/// The highest restart count among regular containers, and among
/// restartable (sidecar) init containers.
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else {
        return (0, 0);
    };
    let regular = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    let sidecars: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(&c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn key(pod: &Pod, colocated: usize, now: Timestamp) -> Key {
    let ready = is_pod_ready(pod);
    let ready_time = if ready {
        time_key(ready_since(pod).flatten(), now)
    } else {
        (0, 0)
    };
    (
        !node_name(pod).is_empty(),
        phase_ordinal(pod),
        ready,
        deletion_cost(pod),
        Reverse(colocated),
        ready_time,
        Reverse(max_restarts(pod)),
        time_key(pod.metadata.creation_timestamp.as_ref().map(|t| t.0), now),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

/// Sort `pods` into deletion order. `related` are the active pods of every
/// ReplicaSet controlled by the same owner (upstream's
/// `getIndirectlyRelatedPods`); a pod's rank is how many of them share its
/// node.
pub fn rank_for_deletion(pods: &mut [Arc<Pod>], related: &[Arc<Pod>], now: Timestamp) {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in related.iter().filter(|p| is_pod_active(p)) {
        *on_node.entry(node_name(pod)).or_default() += 1;
    }
    let keys: HashMap<String, Key> = pods
        .iter()
        .map(|p| {
            let colocated = on_node.get(node_name(p)).copied().unwrap_or(0);
            (identity(p), key(p, colocated, now))
        })
        .collect();
    pods.sort_by(|a, b| keys[&identity(a)].cmp(&keys[&identity(b)]));
}

/// What tells pods apart in one sort: the UID, or the name for pods built
/// in memory without one.
fn identity(pod: &Pod) -> String {
    match &pod.metadata.uid {
        Some(uid) => uid.clone(),
        None => pod.metadata.name.clone().unwrap_or_default(),
    }
}

/// Upstream's `getPodsToDelete`: the first `count` pods of `pods` in
/// deletion order (no sorting when all of them go).
pub fn pods_to_delete(
    mut pods: Vec<Arc<Pod>>,
    related: &[Arc<Pod>],
    count: usize,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    if count < pods.len() {
        rank_for_deletion(&mut pods, related, now);
    }
    pods.truncate(count);
    pods
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerStatus, PodCondition, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    /// A pod named `name`, created at `created` (seconds), optionally on a
    /// node, in a phase, ready since a time.
    struct P {
        name: &'static str,
        node: Option<&'static str>,
        phase: &'static str,
        ready_since: Option<i64>,
        restarts: i32,
        created: i64,
        cost: Option<&'static str>,
    }

    impl Default for P {
        fn default() -> Self {
            P {
                name: "",
                node: Some("n1"),
                phase: "Running",
                ready_since: Some(0),
                restarts: 0,
                created: 0,
                cost: None,
            }
        }
    }

    fn pod(p: P) -> Arc<Pod> {
        let conditions = p.ready_since.map(|s| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(at(s))),
                ..Default::default()
            }]
        });
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(p.name.into()),
                uid: Some(format!("uid-{}", p.name)),
                creation_timestamp: Some(Time(at(p.created))),
                annotations: p
                    .cost
                    .map(|c| [(POD_DELETION_COST.to_string(), c.to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: p.node.map(String::from),
                containers: vec![Container {
                    name: "c".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(p.phase.into()),
                conditions,
                container_statuses: Some(vec![ContainerStatus {
                    name: "c".into(),
                    restart_count: p.restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn each_criterion_decides_which_pod_goes_first() {
        let now = at(100_000);
        // (why, the pod deleted first, the pod kept)
        let cases: Vec<(&str, P, P)> = vec![
            (
                "unassigned before assigned",
                P {
                    name: "a",
                    node: None,
                    ready_since: None,
                    phase: "Pending",
                    ..P::default()
                },
                P {
                    name: "b",
                    ..P::default()
                },
            ),
            (
                "pending before unknown",
                P {
                    name: "a",
                    phase: "Pending",
                    ready_since: None,
                    ..P::default()
                },
                P {
                    name: "b",
                    phase: "Unknown",
                    ready_since: None,
                    ..P::default()
                },
            ),
            (
                "unknown before running",
                P {
                    name: "a",
                    phase: "Unknown",
                    ready_since: None,
                    ..P::default()
                },
                P {
                    name: "b",
                    phase: "Running",
                    ready_since: None,
                    ..P::default()
                },
            ),
            (
                "not ready before ready",
                P {
                    name: "a",
                    ready_since: None,
                    ..P::default()
                },
                P {
                    name: "b",
                    ..P::default()
                },
            ),
            (
                "lower deletion cost first",
                P {
                    name: "a",
                    cost: Some("-5"),
                    ..P::default()
                },
                P {
                    name: "b",
                    ..P::default()
                },
            ),
            (
                "ready for less time first",
                P {
                    name: "a",
                    ready_since: Some(99_990),
                    ..P::default()
                },
                P {
                    name: "b",
                    ready_since: Some(10),
                    ..P::default()
                },
            ),
            (
                "more restarts first",
                P {
                    name: "a",
                    restarts: 3,
                    ..P::default()
                },
                P {
                    name: "b",
                    restarts: 1,
                    ..P::default()
                },
            ),
            (
                "newer first",
                P {
                    name: "a",
                    created: 99_000,
                    ready_since: Some(0),
                    ..P::default()
                },
                P {
                    name: "b",
                    created: 10,
                    ready_since: Some(0),
                    ..P::default()
                },
            ),
        ];
        for (why, first, kept) in cases {
            // Listed in the wrong order on purpose.
            let pods = vec![pod(kept), pod(first)];
            let chosen = pods_to_delete(pods, &[], 1, now);
            assert_eq!(names(&chosen), ["a"], "{why}");
        }
    }

    #[test]
    fn doubled_up_pods_go_before_pods_alone_on_their_node() {
        let now = at(100_000);
        let a = pod(P {
            name: "a",
            node: Some("crowded"),
            ..P::default()
        });
        let b = pod(P {
            name: "b",
            node: Some("quiet"),
            ..P::default()
        });
        // A sibling ReplicaSet's pod also runs on "crowded".
        let sibling = pod(P {
            name: "s",
            node: Some("crowded"),
            ..P::default()
        });
        let related = vec![a.clone(), b.clone(), sibling];
        let chosen = pods_to_delete(vec![b, a], &related, 1, now);
        assert_eq!(names(&chosen), ["a"]);
    }

    #[test]
    fn close_ages_tie_and_fall_through_to_later_criteria() {
        let now = at(100_000);
        // Ready 600 s and 900 s ago: the same log2 bucket of nanoseconds
        // (2^39 ns is about 550 s, 2^40 about 1100 s), so the restart count
        // decides.
        let young = pod(P {
            name: "young",
            ready_since: Some(99_400),
            ..P::default()
        });
        let restarted = pod(P {
            name: "restarted",
            ready_since: Some(99_100),
            restarts: 2,
            ..P::default()
        });
        let chosen = pods_to_delete(vec![young, restarted], &[], 1, now);
        assert_eq!(names(&chosen), ["restarted"]);
    }

    #[test]
    fn deleting_everything_keeps_the_given_order() {
        let pods = vec![
            pod(P {
                name: "x",
                ..P::default()
            }),
            pod(P {
                name: "y",
                node: None,
                ..P::default()
            }),
        ];
        let chosen = pods_to_delete(pods, &[], 2, at(0));
        assert_eq!(names(&chosen), ["x", "y"]);
    }
}
