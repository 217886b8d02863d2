//! The taints the node lifecycle controller manages, as upstream's
//! `TaintNodesByCondition` and NoExecute tainting:
//! - NoSchedule taints mirror the node's conditions (Ready False →
//!   `not-ready`, Ready Unknown → `unreachable`, MemoryPressure True →
//!   `memory-pressure`, ...) and `spec.unschedulable` (`unschedulable`), so
//!   the scheduler keeps new pods off the node;
//! - NoExecute `not-ready` / `unreachable` follow the Ready condition (and
//!   exclude each other), so the taint manager evicts the node's pods
//!   ([`super::eviction`]).
//!
//! Taints are compared by key and effect, as upstream's `MatchTaint`; an
//! added taint carries `timeAdded`, and one already present keeps its own.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

/// Upstream's `nodeConditionToTaintKeyStatusMap`: the taint a condition in
/// a given status calls for.
pub fn condition_taint_key(condition: &str, status: &str) -> Option<&'static str> {
    match (condition, status) {
        ("Ready", "False") => Some(NOT_READY),
        ("Ready", "Unknown") => Some(UNREACHABLE),
        ("MemoryPressure", "True") => Some(MEMORY_PRESSURE),
        ("DiskPressure", "True") => Some(DISK_PRESSURE),
        ("PIDPressure", "True") => Some(PID_PRESSURE),
        ("NetworkUnavailable", "True") => Some(NETWORK_UNAVAILABLE),
        _ => None,
    }
}

/// Whether `key` is one of the condition taints above.
fn is_condition_taint_key(key: &str) -> bool {
    [
        NOT_READY,
        UNREACHABLE,
        MEMORY_PRESSURE,
        DISK_PRESSURE,
        PID_PRESSURE,
        NETWORK_UNAVAILABLE,
    ]
    .contains(&key)
}

/// A taint template (no value, no time).
pub fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Default::default()
    }
}

/// Upstream's `MatchTaint`: same key and effect.
pub fn matches(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

/// The node's taints.
pub fn taints_of(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// Whether the node has a taint with `key` and `effect`.
pub fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    taints_of(node)
        .iter()
        .any(|t| t.key == key && t.effect == effect)
}

/// Upstream's `doNoScheduleTaintingPass`: the NoSchedule taints to add and
/// to remove so they mirror the node's conditions and `unschedulable`.
/// Only condition and unschedulable taints are ever removed.
pub fn no_schedule_diff(node: &Node) -> (Vec<Taint>, Vec<Taint>) {
    let mut wanted: BTreeSet<&str> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| condition_taint_key(&c.type_, &c.status))
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.insert(UNSCHEDULABLE);
    }
    let managed: Vec<&Taint> = taints_of(node)
        .iter()
        .filter(|t| t.effect == NO_SCHEDULE)
        .filter(|t| t.key == UNSCHEDULABLE || is_condition_taint_key(&t.key))
        .collect();
    let add = wanted
        .iter()
        .filter(|key| !managed.iter().any(|t| t.key == **key))
        .map(|key| taint(key, NO_SCHEDULE))
        .collect();
    let remove = managed
        .into_iter()
        .filter(|t| !wanted.contains(t.key.as_str()))
        .cloned()
        .collect();
    (add, remove)
}

/// The NoExecute taint a Ready status calls for, and the one it replaces:
/// `not-ready` and `unreachable` exclude each other, as Ready cannot be
/// both False and Unknown.
pub fn no_execute_for(ready: &str) -> Option<(&'static str, &'static str)> {
    match ready {
        "False" => Some((NOT_READY, UNREACHABLE)),
        "Unknown" => Some((UNREACHABLE, NOT_READY)),
        _ => None,
    }
}

/// Upstream's `SwapNodeControllerTaint`: `taints` with `add` added (stamped
/// `timeAdded` = `now`; one already present stays as it is) and `remove`
/// removed. `None` when nothing changes.
pub fn swap(
    taints: &[Taint],
    add: &[Taint],
    remove: &[Taint],
    now: Timestamp,
) -> Option<Vec<Taint>> {
    let mut next: Vec<Taint> = taints
        .iter()
        .filter(|t| !remove.iter().any(|r| matches(r, t)))
        .cloned()
        .collect();
    for new in add {
        if !next.iter().any(|t| matches(t, new)) {
            let mut new = new.clone();
            new.time_added = Some(Time(now));
            next.push(new);
        }
    }
    (next != taints).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn node(conditions: &[(&str, &str)], unschedulable: bool, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                unschedulable: unschedulable.then_some(true),
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| NodeCondition {
                            type_: (*t).into(),
                            status: (*s).into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn keys(taints: &[Taint]) -> Vec<String> {
        taints
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect()
    }

    #[test]
    fn no_schedule_taints_mirror_conditions_and_cordoning() {
        let user = taint("dedicated", NO_SCHEDULE);
        let cases = [
            (node(&[("Ready", "True")], false, vec![]), vec![], vec![]),
            (
                node(
                    &[("Ready", "Unknown"), ("MemoryPressure", "Unknown")],
                    false,
                    vec![],
                ),
                vec!["node.kubernetes.io/unreachable:NoSchedule"],
                vec![],
            ),
            (
                node(
                    &[("Ready", "False"), ("DiskPressure", "True")],
                    true,
                    vec![],
                ),
                vec![
                    "node.kubernetes.io/disk-pressure:NoSchedule",
                    "node.kubernetes.io/not-ready:NoSchedule",
                    "node.kubernetes.io/unschedulable:NoSchedule",
                ],
                vec![],
            ),
            // Ready again: the condition taint goes; the user's and the
            // NoExecute ones are not this pass's business.
            (
                node(
                    &[("Ready", "True")],
                    false,
                    vec![
                        taint(UNREACHABLE, NO_SCHEDULE),
                        taint(UNREACHABLE, NO_EXECUTE),
                        user.clone(),
                    ],
                ),
                vec![],
                vec!["node.kubernetes.io/unreachable:NoSchedule"],
            ),
            // Unknown → False swaps one for the other.
            (
                node(
                    &[("Ready", "False")],
                    false,
                    vec![taint(UNREACHABLE, NO_SCHEDULE)],
                ),
                vec!["node.kubernetes.io/not-ready:NoSchedule"],
                vec!["node.kubernetes.io/unreachable:NoSchedule"],
            ),
        ];
        for (node, add, remove) in cases {
            let (got_add, got_remove) = no_schedule_diff(&node);
            assert_eq!(
                (keys(&got_add), keys(&got_remove)),
                (
                    add.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    remove.iter().map(|s| s.to_string()).collect::<Vec<_>>()
                ),
                "{:?}",
                node.status
            );
        }
    }

    #[test]
    fn swapping_stamps_new_taints_and_keeps_old_ones() {
        let mut old = taint(NOT_READY, NO_EXECUTE);
        old.time_added = Some(Time(at(0)));
        let user = taint("dedicated", NO_EXECUTE);
        let unreachable = taint(UNREACHABLE, NO_EXECUTE);
        let not_ready = taint(NOT_READY, NO_EXECUTE);

        let swapped = swap(
            &[user, old.clone()],
            std::slice::from_ref(&unreachable),
            std::slice::from_ref(&not_ready),
            at(5),
        )
        .unwrap();
        assert_eq!(
            keys(&swapped),
            [
                "dedicated:NoExecute",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert_eq!(swapped[1].time_added, Some(Time(at(5))));

        // Present already: its timeAdded stays, so eviction clocks do not
        // restart; nothing to write.
        assert_eq!(swap(&[old], &[not_ready], &[unreachable], at(9)), None);
        assert_eq!(no_execute_for("Unknown"), Some((UNREACHABLE, NOT_READY)));
        assert_eq!(no_execute_for("False"), Some((NOT_READY, UNREACHABLE)));
        assert_eq!(no_execute_for("True"), None);
    }
}
