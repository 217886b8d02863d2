//! The rollout's progress (upstream's `progress.go`): the Progressing
//! condition (progressing, complete, timed out after
//! progressDeadlineSeconds), ReplicaSet failures surfaced as the
//! Deployment's ReplicaFailure, and when to look again for the deadline.

use super::*;

impl Model<'_> {
    /// Upstream's `syncRolloutStatus`: the status, with the Progressing
    /// condition following the rollout (progressing, complete, timed out)
    /// and ReplicaSet failures surfaced.
    pub(super) fn sync_rollout_status(self, observed: &Deployment, new: Option<&str>) -> Plan {
        let mut status = self.calculate_status(new);
        let deadline = progress_deadline(&self.d);
        if deadline.is_none() {
            remove_condition(&mut status, PROGRESSING);
        }
        let before = self.d.status.clone().unwrap_or_default();
        let current = get_condition(&before, PROGRESSING).cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
        let subject = match new {
            Some(n) => format!("ReplicaSet {n:?}"),
            None => format!(
                "Deployment {:?}",
                self.d.metadata.name.clone().unwrap_or_default()
            ),
        };
        if deadline.is_some() && !complete_before {
            if deployment_complete(&self.d, Some(&status)) {
                let message = format!("{subject} has successfully progressed.");
                set_condition(
                    &mut status,
                    condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message, self.now),
                );
            } else if deployment_progressing(&before, &status) {
                let message = format!("{subject} is progressing.");
                let mut c = condition(PROGRESSING, "True", REPLICA_SET_UPDATED, message, self.now);
                // Progress refreshes lastUpdateTime even with the same
                // reason; the transition time stays while it holds True.
                if let Some(current) = &current {
                    if current.status == "True" {
                        c.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, c);
            } else if deployment_timed_out(&self.d, &status, self.now) {
                let message = format!("{subject} has timed out progressing.");
                set_condition(
                    &mut status,
                    condition(PROGRESSING, "False", TIMED_OUT, message, self.now),
                );
            }
        }
        match replica_failure(&self.rss, new) {
            Some(failure) => set_condition(&mut status, failure),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        let requeue = requeue_for_deadline(&self.d, &status, self.now);
        self.finish(observed, status, requeue)
    }
}

/// Upstream's `DeploymentComplete`: every replica updated and available,
/// no old ones left, and this generation observed.
pub fn deployment_complete(d: &Deployment, status: Option<&DeploymentStatus>) -> bool {
    let Some(s) = status else {
        return false;
    };
    let desired = replicas(d);
    s.updated_replicas.unwrap_or(0) == desired
        && s.replicas.unwrap_or(0) == desired
        && s.available_replicas.unwrap_or(0) == desired
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Upstream's `DeploymentProgressing`: more updated, ready or available
/// replicas than before, or fewer old ones.
pub fn deployment_progressing(before: &DeploymentStatus, after: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_before = n(before.replicas) - n(before.updated_replicas);
    let old_after = n(after.replicas) - n(after.updated_replicas);
    n(after.updated_replicas) > n(before.updated_replicas)
        || old_after < old_before
        || n(after.ready_replicas) > n(before.ready_replicas)
        || n(after.available_replicas) > n(before.available_replicas)
}

/// Upstream's `DeploymentTimedOut`: no progress reported for
/// progressDeadlineSeconds (measured from the Progressing condition's
/// lastUpdateTime).
pub fn deployment_timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = get_condition(status, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => match &c.last_update_time {
            Some(from) => from.0.as_second() + i64::from(deadline) < now.as_second(),
            None => false,
        },
    }
}

/// Upstream's `requeueStuckDeployment`: when an unfinished rollout would
/// hit its progress deadline, so the timeout is noticed on time.
fn requeue_for_deadline(
    d: &Deployment,
    status: &DeploymentStatus,
    now: Timestamp,
) -> Option<Duration> {
    let deadline = progress_deadline(d)?;
    let c = get_condition(status, PROGRESSING)?;
    if deployment_complete(d, Some(status)) || c.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let from = c.last_update_time.as_ref()?.0.as_second();
    let after = (from + i64::from(deadline) - now.as_second()).max(0);
    // A second more against clock skew, as upstream.
    Some(Duration::from_secs(after as u64 + 1))
}

/// The ReplicaFailure condition to surface: the new ReplicaSet's first,
/// else any old one's.
fn replica_failure(
    rss: &[ReplicaSet],
    new: Option<&str>,
) -> Option<k8s_openapi::api::apps::v1::DeploymentCondition> {
    let failure = |rs: &ReplicaSet| {
        rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == REPLICA_FAILURE)
            .cloned()
    };
    let new_rs = new.and_then(|n| rss.iter().find(|rs| rs.metadata.name.as_deref() == Some(n)));
    let found = new_rs
        .and_then(failure)
        .or_else(|| rss.iter().find_map(failure))?;
    Some(k8s_openapi::api::apps::v1::DeploymentCondition {
        type_: found.type_,
        status: found.status,
        reason: found.reason,
        message: found.message,
        last_update_time: found.last_transition_time.clone(),
        last_transition_time: found.last_transition_time,
    })
}
