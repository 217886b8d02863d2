//! The pod-failure backoff, as upstream's `backoff_utils.go`: after
//! consecutive pod failures a Job waits 10 s, 20 s, 40 s, ... (at most
//! 10 minutes, upstream 1.33's `MaxJobPodFailureBackOff`) from the last
//! failure before it creates a replacement. A success newer than the
//! failures resets the count. The record lives in the controller's memory
//! only, as upstream's does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::framework::ObjectKey;

/// The delay after the first failure.
pub const BASE_DELAY: Duration = Duration::from_secs(10);
/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(10 * 60);

/// Failures since the last success, and when the last one happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures_after_last_success: u32,
    pub last_failure: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record after this sync's newly finished pods (not yet counted
    /// in the Job's status).
    pub fn after(self, new_succeeded: &[&Pod], new_failed: &[&Pod]) -> BackoffRecord {
        let mut failed: Vec<Timestamp> = new_failed.iter().map(|p| finished_time(p)).collect();
        failed.sort();
        let last_success = new_succeeded.iter().map(|p| finished_time(p)).max();
        match last_success {
            None => match failed.last() {
                None => self,
                Some(last) => BackoffRecord {
                    failures_after_last_success: self.failures_after_last_success
                        + failed.len() as u32,
                    last_failure: Some(*last),
                },
            },
            // Only failures after the newest success count.
            Some(success) => {
                let after: Vec<&Timestamp> = failed.iter().filter(|t| **t > success).collect();
                BackoffRecord {
                    failures_after_last_success: after.len() as u32,
                    last_failure: after.last().map(|t| **t),
                }
            }
        }
    }

    /// How long until a replacement pod may be created.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure else {
            return Duration::ZERO;
        };
        if self.failures_after_last_success == 0 {
            return Duration::ZERO;
        }
        let delay = delay_for(self.failures_after_last_success);
        let elapsed_ms = now.as_millisecond() - last.as_millisecond();
        if elapsed_ms < 0 {
            return delay;
        }
        delay.saturating_sub(Duration::from_millis(elapsed_ms as u64))
    }
}

/// The wait after `failures` consecutive failures (at least one).
pub fn delay_for(failures: u32) -> Duration {
    let mut delay = BASE_DELAY;
    for _ in 1..failures {
        delay = delay.saturating_mul(2);
        if delay >= MAX_DELAY {
            return MAX_DELAY;
        }
    }
    delay
}

/// When a pod finished, as upstream's `getFinishedTime`: the last
/// container to terminate (if all have), else when Ready turned False,
/// else when its deletion began (minus the grace period), else its
/// creation.
pub fn finished_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let containers = status.and_then(|s| s.container_statuses.as_deref());
    if let Some(containers) = containers.filter(|c| !c.is_empty()) {
        let finished: Option<Vec<Timestamp>> = containers
            .iter()
            .map(|c| {
                c.state
                    .as_ref()?
                    .terminated
                    .as_ref()?
                    .finished_at
                    .as_ref()
                    .map(|t| t.0)
            })
            .collect();
        if let Some(latest) = finished.and_then(|f| f.into_iter().max()) {
            return latest;
        }
    }
    let ready_false = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.as_ref());
    if let Some(t) = ready_false {
        return t.0;
    }
    if let Some(deleted) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return Timestamp::from_second(deleted.0.as_second() - grace).unwrap_or(deleted.0);
    }
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Backoff records per Job. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct BackoffStore {
    inner: Arc<Mutex<HashMap<ObjectKey, BackoffRecord>>>,
}

impl BackoffStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, BackoffRecord>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, job: &ObjectKey) -> BackoffRecord {
        self.lock().get(job).copied().unwrap_or_default()
    }

    pub fn set(&self, job: &ObjectKey, record: BackoffRecord) {
        self.lock().insert(job.clone(), record);
    }

    pub fn remove(&self, job: &ObjectKey) {
        self.lock().remove(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    /// A pod whose Ready condition turned False at `second`.
    fn finished_at(second: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                creation_timestamp: Some(Time(at(-1000))),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "False".into(),
                    last_transition_time: Some(Time(at(second))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn delays_double_from_ten_seconds_to_ten_minutes() {
        let cases = [(1, 10), (2, 20), (3, 40), (6, 320), (7, 600), (30, 600)];
        for (failures, seconds) in cases {
            assert_eq!(
                delay_for(failures),
                Duration::from_secs(seconds),
                "{failures}"
            );
        }
    }

    #[test]
    fn remaining_time_counts_from_the_last_failure() {
        let record = BackoffRecord {
            failures_after_last_success: 2,
            last_failure: Some(at(0)),
        };
        assert_eq!(record.remaining(at(5)), Duration::from_secs(15));
        assert_eq!(record.remaining(at(20)), Duration::ZERO);
        assert_eq!(record.remaining(at(60)), Duration::ZERO);
        assert_eq!(BackoffRecord::default().remaining(at(0)), Duration::ZERO);
    }

    #[test]
    fn records_count_failures_since_the_newest_success() {
        let none = BackoffRecord::default();
        let (f1, f2, s, f3) = (
            finished_at(1),
            finished_at(2),
            finished_at(3),
            finished_at(4),
        );
        // (record, new successes, new failures) → failures, last failure
        type Case<'a> = (BackoffRecord, Vec<&'a Pod>, Vec<&'a Pod>, u32, Option<i64>);
        let cases: Vec<Case> = vec![
            (none, vec![], vec![], 0, None),
            (none, vec![], vec![&f2, &f1], 2, Some(2)),
            (
                BackoffRecord {
                    failures_after_last_success: 3,
                    last_failure: Some(at(0)),
                },
                vec![],
                vec![&f1],
                4,
                Some(1),
            ),
            // A success resets; only the failure after it counts.
            (none, vec![&s], vec![&f1, &f3], 1, Some(4)),
            (
                BackoffRecord {
                    failures_after_last_success: 5,
                    last_failure: Some(at(0)),
                },
                vec![&s],
                vec![],
                0,
                None,
            ),
        ];
        for (previous, succeeded, failed, failures, last) in cases {
            let next = previous.after(&succeeded, &failed);
            assert_eq!(next.failures_after_last_success, failures, "{previous:?}");
            assert_eq!(next.last_failure, last.map(at), "{previous:?}");
        }
    }

    #[test]
    fn finish_time_prefers_containers_then_readiness_then_deletion() {
        use k8s_openapi::api::core::v1::{
            ContainerState, ContainerStateTerminated, ContainerStatus,
        };
        let mut pod = finished_at(7);
        assert_eq!(finished_time(&pod), at(7));
        pod.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "c".into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    finished_at: Some(Time(at(9))),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        assert_eq!(finished_time(&pod), at(9));
        let deleted = Pod {
            metadata: ObjectMeta {
                deletion_timestamp: Some(Time(at(40))),
                deletion_grace_period_seconds: Some(30),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(finished_time(&deleted), at(10));
    }
}
