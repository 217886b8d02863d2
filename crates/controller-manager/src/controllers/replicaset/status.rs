//! A ReplicaSet's status from the pods it owns (upstream's
//! `calculateStatus`): how many exist, carry the template's labels, are
//! ready, are available; and the `ReplicaFailure` condition while creating
//! or deleting pods fails.

use std::sync::Arc;

use api::selector::LabelSelector;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::pods::{is_pod_available, is_pod_ready};

/// The condition type reporting failed creations or deletions.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Go's `omitempty`: a zero count is left out, as upstream writes it, so
/// a status read back compares equal to the one we computed.
pub fn count(n: usize) -> Option<i32> {
    (n != 0).then(|| i32::try_from(n).unwrap_or(i32::MAX))
}

/// The status `rs` should have given its active, claimed `pods`.
/// `manage_error` is the error of this sync's creations or deletions, if
/// they failed; `now` decides availability and stamps a new condition.
pub fn calculate_status(
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    manage_error: Option<&str>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    // Template labels are validated label values, so this cannot fail; an
    // unparseable set would match nothing rather than everything.
    let template_selector =
        LabelSelector::from_set(&template_labels).unwrap_or_else(|_| LabelSelector::nothing());

    let mut fully_labeled = 0;
    let mut ready = 0;
    let mut available = 0;
    for pod in pods {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        if template_selector.matches(&labels) {
            fully_labeled += 1;
        }
        if is_pod_ready(pod) {
            ready += 1;
            if is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
    }

    let mut status = rs.status.clone().unwrap_or_default();
    let has_failure = conditions(&status)
        .iter()
        .any(|c| c.type_ == REPLICA_FAILURE);
    match manage_error {
        Some(message) if !has_failure => {
            let diff = pods.len() as i64 - i64::from(desired);
            let reason = match diff {
                d if d < 0 => "FailedCreate",
                d if d > 0 => "FailedDelete",
                _ => "",
            };
            let mut list = conditions(&status).to_vec();
            list.push(ReplicaSetCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_transition_time: Some(Time(truncate(now))),
            });
            status.conditions = Some(list);
        }
        None if has_failure => {
            let list: Vec<_> = conditions(&status)
                .iter()
                .filter(|c| c.type_ != REPLICA_FAILURE)
                .cloned()
                .collect();
            status.conditions = (!list.is_empty()).then_some(list);
        }
        _ => {}
    }
    status.replicas = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    status.fully_labeled_replicas = count(fully_labeled);
    status.ready_replicas = count(ready);
    status.available_replicas = count(available);
    status.observed_generation = rs.metadata.generation;
    status
}

fn conditions(status: &ReplicaSetStatus) -> &[ReplicaSetCondition] {
    status.conditions.as_deref().unwrap_or(&[])
}

/// `now` to whole seconds, the precision a `Time` is written with.
pub fn truncate(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                generation: Some(4),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web"), ("tier", "front")])),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(pod_labels: &[(&str, &str)], ready_since: Option<i64>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                labels: Some(labels(pod_labels)),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                conditions: ready_since.map(|s| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(at(s))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn counts_labeled_ready_and_available_pods() {
        let full = [("app", "web"), ("tier", "front")];
        let pods = vec![
            pod(&full, Some(0)),
            pod(&full, Some(95)),
            pod(&[("app", "web")], None),
        ];
        // At 100 s with minReadySeconds 10: two ready, one of them long
        // enough to be available; the third lacks the tier label.
        let status = calculate_status(&rs(3, 10), &pods, None, at(100));
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(4));
        assert!(status.conditions.is_none());
        // Zero counts are left out, as upstream writes them.
        let empty = calculate_status(&rs(3, 0), &[], None, at(100));
        assert_eq!(empty.ready_replicas, None);
        assert_eq!(empty.replicas, 0);
    }

    #[test]
    fn a_failed_create_sets_replica_failure_until_a_sync_succeeds() {
        let message = "pods \"web-x\" is forbidden: exceeded quota";
        let mut set = rs(2, 0);
        let failed = calculate_status(&set, &[], Some(message), at(5));
        let condition = &failed.conditions.as_ref().unwrap()[0];
        assert_eq!(condition.type_, REPLICA_FAILURE);
        assert_eq!(condition.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(condition.message.as_deref(), Some(message));
        // A second failure keeps the first condition (and its time).
        set.status = Some(failed.clone());
        let again = calculate_status(&set, &[], Some("other"), at(50));
        assert_eq!(again.conditions, failed.conditions);
        // Success clears it.
        let ok = calculate_status(&set, &[], None, at(60));
        assert!(ok.conditions.is_none());
    }
}
