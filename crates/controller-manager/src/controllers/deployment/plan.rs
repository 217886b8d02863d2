//! One sync of a Deployment as a pure plan (upstream's `syncDeployment`
//! with `sync.go`, `rolling.go`, `recreate.go` and `progress.go`).
//!
//! Upstream's sync is a sequence of API writes, each step reading the
//! objects the previous one returned, returning early after some of them.
//! [`plan`] follows the same steps over an in-memory model of the
//! Deployment and its ReplicaSets: every write becomes an [`Action`] and is
//! applied to the model, so later steps see it as upstream sees the
//! returned object. The executor carries the actions out in order and stops
//! at the first failure (upstream returns the error and requeues), then
//! writes the status and the revision annotation the plan ends with.
//!
//! The order of decisions:
//! 1. a Deployment being deleted only gets its status;
//! 2. the Progressing condition notes pausing and resuming;
//! 3. a paused Deployment, or one whose replicas changed (a ReplicaSet's
//!    desired-replicas annotation differs), is only scaled: the one active
//!    ReplicaSet takes the new size, or all active ones proportionally;
//! 4. otherwise it rolls out: Recreate scales old ReplicaSets to 0, waits
//!    for their pods to be gone, then scales up the new one; RollingUpdate
//!    scales the new one up within maxSurge and the old ones down within
//!    maxUnavailable, a step per sync;
//! 5. a finished rollout deletes old ReplicaSets past revisionHistoryLimit;
//! 6. the status (counts, Available, Progressing, ReplicaFailure).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::util::*;
use crate::controllers::replicaset::status::count;
use crate::pods::{controller_of, controller_ref, phase};

/// One write of a sync, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this ReplicaSet (the new one: name `<deployment>-<hash>`).
    Create(ReplicaSet),
    /// Replace this ReplicaSet (its resourceVersion guards the write).
    Update(ReplicaSet),
    /// Delete this old ReplicaSet.
    Delete { name: String },
    /// Record a Normal event about the Deployment.
    Event {
        reason: &'static str,
        message: String,
    },
}

/// What one sync does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The Deployment's revision annotation, if it must change.
    pub revision: Option<String>,
    /// The status the Deployment should have after the actions.
    pub status: DeploymentStatus,
    /// Look again then (a progress deadline to check).
    pub requeue_after: Option<Duration>,
}

/// Whether the Deployment's selector is empty (`{}`), which would select
/// every pod: upstream refuses to act on it (event `SelectingAll`).
pub fn selects_everything(d: &Deployment) -> bool {
    d.spec.as_ref().is_none_or(|s| {
        s.selector
            .match_labels
            .as_ref()
            .is_none_or(|m| m.is_empty())
            && s.selector
                .match_expressions
                .as_ref()
                .is_none_or(|e| e.is_empty())
    })
}

/// Plan one sync of `deployment` whose (claimed) ReplicaSets are
/// `replica_sets` and whose pods (those the ReplicaSets control) are
/// `pods`, at `now`. An error is a spec the controller cannot act on.
pub fn plan(
    deployment: &Deployment,
    replica_sets: Vec<ReplicaSet>,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> Result<Plan, String> {
    let mut m = Model {
        d: deployment.clone(),
        rss: replica_sets,
        pods,
        now,
        actions: Vec::new(),
    };
    if deployment.metadata.deletion_timestamp.is_some() {
        let new = m.get_new_replica_set(false)?;
        let status = m.calculate_status(new.as_deref());
        return Ok(m.finish(deployment, status, None));
    }
    m.check_paused_conditions();
    let paused = deployment
        .spec
        .as_ref()
        .and_then(|s| s.paused)
        .unwrap_or(false);
    if paused || m.is_scaling_event()? {
        return m.sync(deployment, paused);
    }
    match strategy_type(deployment) {
        "Recreate" => m.rollout_recreate(deployment),
        "RollingUpdate" => m.rollout_rolling(deployment),
        other => Err(format!("unexpected deployment strategy type: {other}")),
    }
}

/// The Deployment and its ReplicaSets as the sync has changed them so far.
struct Model<'a> {
    d: Deployment,
    rss: Vec<ReplicaSet>,
    pods: &'a [Arc<Pod>],
    now: Timestamp,
    actions: Vec<Action>,
}

fn name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

impl Model<'_> {
    fn rs(&self, name: &str) -> &ReplicaSet {
        self.rss
            .iter()
            .find(|rs| rs.metadata.name.as_deref() == Some(name))
            .expect("the model holds every ReplicaSet it names")
    }

    fn rs_mut(&mut self, name: &str) -> &mut ReplicaSet {
        self.rss
            .iter_mut()
            .find(|rs| rs.metadata.name.as_deref() == Some(name))
            .expect("the model holds every ReplicaSet it names")
    }

    fn event(&mut self, message: String) {
        self.actions.push(Action::Event {
            reason: "ScalingReplicaSet",
            message,
        });
    }

    /// Upstream's `FindNewReplicaSet`: the oldest ReplicaSet whose template
    /// equals the Deployment's (ignoring the hash label).
    fn find_new(&self) -> Option<String> {
        let template = self
            .d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let mut candidates: Vec<&ReplicaSet> = self
            .rss
            .iter()
            .filter(|rs| equal_ignore_hash(&rs_template(rs), &template))
            .collect();
        candidates.sort_by(|a, b| by_creation(a, b));
        candidates.first().map(|rs| name(rs))
    }

    /// Every ReplicaSet but the new one.
    fn old_names(&self, new: Option<&str>) -> Vec<String> {
        self.rss
            .iter()
            .map(name)
            .filter(|n| Some(n.as_str()) != new)
            .collect()
    }

    fn active_old(&self, new: Option<&str>) -> Vec<String> {
        self.old_names(new)
            .into_iter()
            .filter(|n| rs_replicas(self.rs(n)) > 0)
            .collect()
    }

    fn set_revision(&mut self, revision: String) {
        self.d
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(REVISION.into(), revision);
    }

    fn status_mut(&mut self) -> &mut DeploymentStatus {
        self.d.status.get_or_insert_with(Default::default)
    }

    /// Upstream's `getNewReplicaSet`: find the new ReplicaSet and bring its
    /// annotations (revision, copied annotations) and minReadySeconds up to
    /// date; or, with `create`, create it.
    fn get_new_replica_set(&mut self, create: bool) -> Result<Option<String>, String> {
        let existing = self.find_new();
        let old = self.old_names(existing.as_deref());
        let new_revision = max_revision(old.iter().map(|n| self.rs(n))) + 1;
        let deadline = progress_deadline(&self.d).is_some();
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);

        if let Some(new) = existing {
            let d = self.d.clone();
            let rs = self.rs_mut(&new);
            let annotations_changed = set_new_replica_set_annotations(&d, rs, new_revision, true);
            let spec = rs.spec.get_or_insert_with(Default::default);
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
            if min_ready_changed {
                spec.min_ready_seconds = min_ready;
                bump_generation(rs);
            }
            if annotations_changed || min_ready_changed {
                let updated = rs.clone();
                self.actions.push(Action::Update(updated));
            }
            if let Some(revision) = annotation(&self.rs(&new).metadata.annotations, REVISION) {
                let revision = revision.to_string();
                self.set_revision(revision);
            }
            let has_progressing = self
                .d
                .status
                .as_ref()
                .is_some_and(|s| get_condition(s, PROGRESSING).is_some());
            if deadline && !has_progressing {
                let message = format!("Found new replica set {new:?}");
                let c = condition(
                    PROGRESSING,
                    "True",
                    FOUND_NEW_REPLICA_SET,
                    message,
                    self.now,
                );
                set_condition(self.status_mut(), c);
            }
            return Ok(Some(new));
        }
        if !create {
            return Ok(None);
        }

        let d = self.d.clone();
        let spec = d.spec.clone().unwrap_or_default();
        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        let meta = template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let rs_name = format!("{}-{hash}", d.metadata.name.clone().unwrap_or_default());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: d.metadata.namespace.clone(),
                owner_references: Some(vec![controller_ref(&d)]),
                labels,
                // The newest ReplicaSet, for the orderings below.
                creation_timestamp: Some(Time(self.now)),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let mut all: Vec<&ReplicaSet> = old.iter().map(|n| self.rs(n)).collect();
        all.push(&rs);
        let replicas = new_rs_new_replicas(&d, &all, &rs)?;
        rs.spec.as_mut().expect("set above").replicas = Some(replicas);
        set_new_replica_set_annotations(&d, &mut rs, new_revision, false);
        let mut created = rs.clone();
        created.metadata.creation_timestamp = None;
        self.actions.push(Action::Create(created));
        self.rss.push(rs);
        if replicas > 0 {
            self.event(format!(
                "Scaled up replica set {rs_name} from 0 to {replicas}"
            ));
        }
        self.set_revision(new_revision.to_string());
        if deadline {
            let message = format!("Created new replica set {rs_name:?}");
            let c = condition(
                PROGRESSING,
                "True",
                NEW_REPLICA_SET_CREATED,
                message,
                self.now,
            );
            set_condition(self.status_mut(), c);
        }
        Ok(Some(rs_name))
    }

    /// Upstream's `checkPausedConditions`: Progressing says
    /// DeploymentPaused / DeploymentResumed (unless it already timed out),
    /// so a long pause is not mistaken for a stalled rollout.
    fn check_paused_conditions(&mut self) {
        if progress_deadline(&self.d).is_none() {
            return;
        }
        let status = self.d.status.clone().unwrap_or_default();
        let reason = get_condition(&status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return;
        }
        let paused_noted = reason.as_deref() == Some(PAUSED);
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let now = self.now;
        if paused && !paused_noted {
            let c = condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
                now,
            );
            set_condition(self.status_mut(), c);
        } else if !paused && paused_noted {
            let c = condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
                now,
            );
            set_condition(self.status_mut(), c);
        }
    }

    /// Upstream's `isScalingEvent`: an active ReplicaSet was sized for a
    /// different replica count than the Deployment's.
    fn is_scaling_event(&mut self) -> Result<bool, String> {
        let new = self.get_new_replica_set(false)?;
        let desired = replicas(&self.d);
        let mut active = self.active_old(new.as_deref());
        active.extend(new.filter(|n| rs_replicas(self.rs(n)) > 0));
        Ok(active.iter().any(|n| {
            int_annotation(self.rs(n), DESIRED_REPLICAS).is_some_and(|want| want != desired)
        }))
    }

    /// Upstream's `scaleReplicaSet`: set the size and the replica
    /// annotations; an event if the size changed. Whether it scaled.
    fn scale_replica_set(&mut self, rs_name: &str, size: i32) -> bool {
        let desired = replicas(&self.d);
        let max = desired + max_surge(&self.d);
        let current = rs_replicas(self.rs(rs_name));
        let resize = current != size;
        if !resize && !replicas_annotations_need_update(self.rs(rs_name), desired, max) {
            return false;
        }
        let rs = self.rs_mut(rs_name);
        rs.spec.get_or_insert_with(Default::default).replicas = Some(size);
        set_replicas_annotations(rs, desired, max);
        if resize {
            bump_generation(rs);
        }
        let updated = rs.clone();
        self.actions.push(Action::Update(updated));
        if resize {
            let direction = if current < size { "up" } else { "down" };
            self.event(format!(
                "Scaled {direction} replica set {rs_name} from {current} to {size}"
            ));
        }
        resize
    }

    /// Upstream's `scaleReplicaSetAndRecordEvent`: only if the size changes.
    fn scale_and_record(&mut self, rs_name: &str, size: i32) -> bool {
        if rs_replicas(self.rs(rs_name)) == size {
            return false;
        }
        self.scale_replica_set(rs_name, size)
    }

    /// Upstream's `scale`: a scaling event (or any sync of a paused
    /// Deployment) resizes without rolling out.
    fn scale(&mut self, new: Option<&str>) {
        let desired = replicas(&self.d);
        let old = self.old_names(new);
        if let Some(only) = find_active_or_latest(&self.rss, new, &old) {
            if rs_replicas(self.rs(&only)) != desired {
                self.scale_and_record(&only, desired);
            }
            return;
        }
        if new.is_some_and(|n| is_saturated(&self.d, self.rs(n))) {
            for rs_name in self.active_old(new) {
                self.scale_and_record(&rs_name, 0);
            }
            return;
        }
        if !is_rolling_update(&self.d) {
            return;
        }
        let mut active: Vec<ReplicaSet> = self
            .rss
            .iter()
            .filter(|rs| rs_replicas(rs) > 0)
            .cloned()
            .collect();
        let sizes = proportional_sizes(&self.d, &mut active);
        for (rs_name, size) in sizes {
            self.scale_replica_set(&rs_name, size);
        }
    }

    /// Upstream's `sync`: scale, clean up (only while paused), status.
    fn sync(mut self, observed: &Deployment, paused: bool) -> Result<Plan, String> {
        let new = self.get_new_replica_set(false)?;
        self.scale(new.as_deref());
        if paused {
            self.cleanup(new.as_deref());
        }
        let status = self.calculate_status(new.as_deref());
        Ok(self.finish(observed, status, None))
    }

    fn rollout_rolling(mut self, observed: &Deployment) -> Result<Plan, String> {
        let new = self
            .get_new_replica_set(true)?
            .expect("get_new_replica_set(true) yields a ReplicaSet");
        if self.reconcile_new_replica_set(&new)? {
            return Ok(self.sync_rollout_status(observed, Some(&new)));
        }
        if self.reconcile_old_replica_sets(&new) {
            return Ok(self.sync_rollout_status(observed, Some(&new)));
        }
        if deployment_complete(&self.d, self.d.status.as_ref()) {
            self.cleanup(Some(&new));
        }
        Ok(self.sync_rollout_status(observed, Some(&new)))
    }

    /// Upstream's `reconcileNewReplicaSet`: scale the new ReplicaSet up as
    /// far as maxSurge allows (or down if it has too many).
    fn reconcile_new_replica_set(&mut self, new: &str) -> Result<bool, String> {
        let desired = replicas(&self.d);
        let current = rs_replicas(self.rs(new));
        if current == desired {
            return Ok(false);
        }
        if current > desired {
            return Ok(self.scale_and_record(new, desired));
        }
        let all: Vec<&ReplicaSet> = self.rss.iter().collect();
        let size = new_rs_new_replicas(&self.d, &all, self.rs(new))?;
        Ok(self.scale_and_record(new, size))
    }

    /// Upstream's `reconcileOldReplicaSets`: scale old ReplicaSets down as
    /// far as maxUnavailable allows, unhealthy replicas first.
    fn reconcile_old_replica_sets(&mut self, new: &str) -> bool {
        let old = self.active_old(Some(new));
        let old_pods: i32 = old.iter().map(|n| rs_replicas(self.rs(n))).sum();
        if old_pods == 0 {
            return false;
        }
        let all_pods: i32 = self.rss.iter().map(rs_replicas).sum();
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_rs = self.rs(new);
        let new_unavailable = rs_replicas(new_rs) - rs_status_counts(new_rs).2;
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let cleaned = self.cleanup_unhealthy_replicas(&old, max_scaled_down);
        let scaled = self.scale_down_old_for_rolling_update(&old);
        cleaned + scaled > 0
    }

    /// Upstream's `cleanupUnhealthyReplicas`: drop old replicas that are
    /// not available anyway, oldest ReplicaSets first, up to `max`.
    fn cleanup_unhealthy_replicas(&mut self, old: &[String], max: i32) -> i32 {
        let mut old = old.to_vec();
        old.sort_by(|a, b| by_creation(self.rs(a), self.rs(b)));
        let mut total = 0;
        for rs_name in old {
            if total >= max {
                break;
            }
            let rs = self.rs(&rs_name);
            let size = rs_replicas(rs);
            let available = rs_status_counts(rs).2;
            // All available (or more, while a scale-down is in flight):
            // nothing unhealthy here.
            if size == 0 || available >= size {
                continue;
            }
            let down = (max - total).min(size - available);
            self.scale_and_record(&rs_name, size - down);
            total += down;
        }
        total
    }

    /// Upstream's `scaleDownOldReplicaSetsForRollingUpdate`: scale old
    /// ReplicaSets down by what availability allows, oldest first.
    fn scale_down_old_for_rolling_update(&mut self, old: &[String]) -> i32 {
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let available: i32 = self.rss.iter().map(|rs| rs_status_counts(rs).2).sum();
        if available <= min_available {
            return 0;
        }
        let allowed = available - min_available;
        let mut old = old.to_vec();
        old.sort_by(|a, b| by_creation(self.rs(a), self.rs(b)));
        let mut total = 0;
        for rs_name in old {
            if total >= allowed {
                break;
            }
            let size = rs_replicas(self.rs(&rs_name));
            if size == 0 {
                continue;
            }
            let down = size.min(allowed - total);
            self.scale_and_record(&rs_name, size - down);
            total += down;
        }
        total
    }

    fn rollout_recreate(mut self, observed: &Deployment) -> Result<Plan, String> {
        let new = self.get_new_replica_set(false)?;
        let mut scaled_down = false;
        for rs_name in self.active_old(new.as_deref()) {
            if self.scale_and_record(&rs_name, 0) {
                scaled_down = true;
            }
        }
        if scaled_down || self.old_pods_running(new.as_deref()) {
            return Ok(self.sync_rollout_status(observed, new.as_deref()));
        }
        let new = match new {
            Some(new) => new,
            None => self
                .get_new_replica_set(true)?
                .expect("get_new_replica_set(true) yields a ReplicaSet"),
        };
        let desired = replicas(&self.d);
        if self.scale_and_record(&new, desired) {
            return Ok(self.sync_rollout_status(observed, Some(&new)));
        }
        if deployment_complete(&self.d, self.d.status.as_ref()) {
            self.cleanup(Some(&new));
        }
        Ok(self.sync_rollout_status(observed, Some(&new)))
    }

    /// Upstream's `oldPodsRunning`: an old ReplicaSet still reports pods,
    /// or a pod of one is not finished (terminating pods count: Recreate
    /// waits until they are gone).
    fn old_pods_running(&self, new: Option<&str>) -> bool {
        let old = self.old_names(new);
        if old
            .iter()
            .map(|n| rs_status_counts(self.rs(n)).0)
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let new_uid = new.and_then(|n| self.rs(n).metadata.uid.clone());
        self.pods.iter().any(|pod| {
            let owner = controller_of(pod.as_ref()).map(|r| r.uid.clone());
            owner.is_some() && owner != new_uid && !matches!(phase(pod), "Failed" | "Succeeded")
        })
    }

    /// Upstream's `cleanupDeployment`: delete the oldest old ReplicaSets
    /// beyond revisionHistoryLimit, if they are scaled to 0, have no pods
    /// and their controller has caught up.
    fn cleanup(&mut self, new: Option<&str>) {
        let Some(limit) = revision_history_limit(&self.d) else {
            return;
        };
        let mut cleanable: Vec<&ReplicaSet> = self
            .old_names(new)
            .iter()
            .map(|n| self.rs(n))
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let surplus = cleanable.len() as i64 - i64::from(limit);
        if surplus <= 0 {
            return;
        }
        cleanable.sort_by(|a, b| by_revision(a, b));
        let doomed: Vec<String> = cleanable
            .iter()
            .take(surplus as usize)
            .filter(|rs| {
                let observed = rs
                    .status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .unwrap_or(0);
                rs_status_counts(rs).0 == 0
                    && rs_replicas(rs) == 0
                    && rs.metadata.generation.unwrap_or(0) <= observed
            })
            .map(|rs| name(rs))
            .collect();
        for rs_name in doomed {
            self.actions.push(Action::Delete {
                name: rs_name.clone(),
            });
            self.rss
                .retain(|rs| rs.metadata.name.as_deref() != Some(rs_name.as_str()));
        }
    }

    /// Upstream's `calculateStatus`: counts summed over the ReplicaSets
    /// and the Available condition; other conditions carried over.
    fn calculate_status(&self, new: Option<&str>) -> DeploymentStatus {
        let sum = |f: fn(&ReplicaSet) -> i32| self.rss.iter().map(f).sum::<i32>();
        let available = sum(|rs| rs_status_counts(rs).2);
        let total = sum(rs_replicas);
        let current = self.d.status.clone().unwrap_or_default();
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: count(sum(|rs| rs_status_counts(rs).0).max(0) as usize),
            updated_replicas: count(
                new.map_or(0, |n| rs_status_counts(self.rs(n)).0).max(0) as usize
            ),
            ready_replicas: count(sum(|rs| rs_status_counts(rs).1).max(0) as usize),
            available_replicas: count(available.max(0) as usize),
            unavailable_replicas: count((total - available).max(0) as usize),
            collision_count: current.collision_count,
            conditions: current.conditions,
            terminating_replicas: None,
        };
        let now = self.now;
        if available >= replicas(&self.d) - max_unavailable(&self.d) {
            let message = "Deployment has minimum availability.".to_string();
            set_condition(
                &mut status,
                condition(AVAILABLE, "True", MINIMUM_REPLICAS_AVAILABLE, message, now),
            );
        } else {
            let message = "Deployment does not have minimum availability.".to_string();
            set_condition(
                &mut status,
                condition(
                    AVAILABLE,
                    "False",
                    MINIMUM_REPLICAS_UNAVAILABLE,
                    message,
                    now,
                ),
            );
        }
        status
    }

    /// Upstream's `syncRolloutStatus`: the status, with the Progressing
    /// condition following the rollout (progressing, complete, timed out)
    /// and ReplicaSet failures surfaced.
    fn sync_rollout_status(self, observed: &Deployment, new: Option<&str>) -> Plan {
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

    fn finish(
        self,
        observed: &Deployment,
        status: DeploymentStatus,
        requeue_after: Option<Duration>,
    ) -> Plan {
        let revision = annotation(&self.d.metadata.annotations, REVISION)
            .filter(|r| annotation(&observed.metadata.annotations, REVISION) != Some(*r))
            .map(String::from);
        Plan {
            actions: self.actions,
            revision,
            status,
            requeue_after,
        }
    }
}

/// A spec change as the API server makes it (the generation bump), so a
/// ReplicaSet we just resized does not look settled to `cleanup`.
fn bump_generation(rs: &mut ReplicaSet) {
    rs.metadata.generation = Some(rs.metadata.generation.unwrap_or(0) + 1);
}

/// Upstream's `NewRSNewReplicas`: how big the new ReplicaSet may be now.
/// RollingUpdate: up to replicas + maxSurge pods in all, never above
/// replicas; Recreate: replicas.
pub fn new_rs_new_replicas(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: &ReplicaSet,
) -> Result<i32, String> {
    let desired = replicas(d);
    match strategy_type(d) {
        "RollingUpdate" => {
            let surge = raw_max_surge(d)?;
            let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
            let max_total = desired + surge;
            let size = rs_replicas(new);
            if current >= max_total {
                return Ok(size);
            }
            Ok(size + (max_total - current).min(desired - size))
        }
        "Recreate" => Ok(desired),
        other => Err(format!("deployment type {other} isn't supported")),
    }
}

/// Upstream's `FindActiveOrLatest`: the only active ReplicaSet, or the
/// newest one when none is active; `None` when several are active.
fn find_active_or_latest(rss: &[ReplicaSet], new: Option<&str>, old: &[String]) -> Option<String> {
    let get = |n: &str| rss.iter().find(|rs| rs.metadata.name.as_deref() == Some(n));
    let mut active: Vec<&str> = new
        .into_iter()
        .chain(old.iter().map(String::as_str))
        .collect();
    active.retain(|n| get(n).is_some_and(|rs| rs_replicas(rs) > 0));
    match active.as_slice() {
        [] => new.map(String::from).or_else(|| {
            old.iter()
                .filter_map(|n| get(n))
                .max_by(|a, b| by_creation(a, b))
                .map(name)
        }),
        [only] => Some(only.to_string()),
        _ => None,
    }
}

/// Upstream's `IsSaturated`: the new ReplicaSet has all the replicas,
/// believes so (annotation) and they are all available.
fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    let desired = replicas(d);
    rs_replicas(rs) == desired
        && int_annotation(rs, DESIRED_REPLICAS) == Some(desired)
        && rs_status_counts(rs).2 == desired
}

/// Upstream's proportional scaling (in `scale`): spread the difference
/// between replicas + maxSurge and the active ReplicaSets' sizes over them
/// in proportion to their size (by their max-replicas annotation), bigger
/// first (newer first when scaling up, older first when down); leftovers go
/// to the first. Returns every active ReplicaSet with its new size.
pub fn proportional_sizes(d: &Deployment, active: &mut [ReplicaSet]) -> Vec<(String, i32)> {
    let desired = replicas(d);
    let total: i32 = active.iter().map(rs_replicas).sum();
    let allowed = if desired > 0 {
        desired + max_surge(d)
    } else {
        0
    };
    let to_add = allowed - total;
    if to_add > 0 {
        active.sort_by(|a, b| {
            rs_replicas(b)
                .cmp(&rs_replicas(a))
                .then_with(|| by_creation(b, a))
        });
    } else if to_add < 0 {
        active.sort_by(|a, b| {
            rs_replicas(b)
                .cmp(&rs_replicas(a))
                .then_with(|| by_creation(a, b))
        });
    }
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in active.iter() {
        if to_add == 0 {
            sizes.push((name(rs), rs_replicas(rs)));
            continue;
        }
        let p = proportion(rs, d, to_add, added);
        sizes.push((name(rs), rs_replicas(rs) + p));
        added += p;
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    sizes
}

/// Upstream's `GetProportion`: this ReplicaSet's share of `to_add`, never
/// past what is left of it.
fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    let size = rs_replicas(rs);
    if size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Upstream's `getReplicaSetFraction`: the change that keeps this
/// ReplicaSet's share of the Deployment's (replicas + maxSurge) as it was
/// of the size in its max-replicas annotation.
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let size = rs_replicas(rs);
    let desired = replicas(d);
    if desired == 0 {
        return -size;
    }
    let deployment_replicas = desired + max_surge(d);
    let annotated = int_annotation(rs, MAX_REPLICAS)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        // Upstream would divide by zero here; no base, no change.
        return 0;
    }
    let new_size = f64::from(size) * f64::from(deployment_replicas) / f64::from(annotated);
    new_size.round() as i32 - size
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetCondition, ReplicaSetStatus,
        RollingUpdateDeployment,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    const T0: i64 = 1_800_000_000;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(T0 + s).unwrap()
    }

    fn app_labels() -> BTreeMap<String, String> {
        [("app".to_string(), "web".to_string())].into()
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(app_labels()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn ios(s: &str) -> IntOrString {
        match s.parse() {
            Ok(n) => IntOrString::Int(n),
            Err(_) => IntOrString::String(s.into()),
        }
    }

    /// A Deployment `web` with `replicas` of `image`; `strategy` is
    /// "Recreate" or "surge/unavailable" (e.g. "1/0", "25%/25%").
    fn deployment(replicas: i32, image: &str, strategy: &str) -> Deployment {
        let strategy = match strategy {
            "Recreate" => DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            },
            params => {
                let (surge, unavailable) = params.split_once('/').unwrap();
                DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(ios(surge)),
                        max_unavailable: Some(ios(unavailable)),
                    }),
                }
            }
        };
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("d-uid".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(app_labels()),
                    match_expressions: None,
                },
                template: template(image),
                strategy: Some(strategy),
                progress_deadline_seconds: Some(600),
                revision_history_limit: Some(10),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// A ReplicaSet of `web` named `name`, running `image`, sized `replicas`
    /// with all of them existing and available, at `revision`, created
    /// `created` seconds after T0, sized for a Deployment of `desired`.
    fn replica_set(
        name: &str,
        image: &str,
        replicas: i32,
        revision: i64,
        created: i64,
        desired: i32,
        max: i32,
    ) -> ReplicaSet {
        let mut t = template(image);
        let hash = name.trim_start_matches("web-").to_string();
        t.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), hash);
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                generation: Some(1),
                creation_timestamp: Some(Time(at(created))),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: "web".into(),
                    uid: "d-uid".into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                annotations: Some(
                    [
                        (REVISION.to_string(), revision.to_string()),
                        (DESIRED_REPLICAS.to_string(), desired.to_string()),
                        (MAX_REPLICAS.to_string(), max.to_string()),
                    ]
                    .into(),
                ),
                labels: t.metadata.as_ref().unwrap().labels.clone(),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                template: Some(t),
                ..Default::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: count(replicas as usize),
                available_replicas: count(replicas as usize),
                observed_generation: Some(1),
                ..Default::default()
            }),
        }
    }

    fn sizes(rss: &[ReplicaSet]) -> Vec<(String, i32)> {
        let mut out: Vec<_> = rss.iter().map(|rs| (name(rs), rs_replicas(rs))).collect();
        out.sort();
        out
    }

    fn events(plan: &Plan) -> Vec<&str> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::Event { message, .. } => Some(message.as_str()),
                _ => None,
            })
            .collect()
    }

    fn progressing(status: &DeploymentStatus) -> (String, String, String) {
        let c = get_condition(status, PROGRESSING).expect("a Progressing condition");
        (
            c.status.clone(),
            c.reason.clone().unwrap(),
            c.message.clone().unwrap(),
        )
    }

    /// Apply a plan as the API server, the ReplicaSet controller and a
    /// kubelet whose pods are ready at once would: ReplicaSets take their
    /// size, all replicas available; the Deployment takes the status.
    fn settle(d: &mut Deployment, rss: &mut Vec<ReplicaSet>, plan: &Plan) {
        for action in &plan.actions {
            match action {
                Action::Create(rs) => {
                    let mut rs = rs.clone();
                    rs.metadata.uid = Some(format!("uid-{}", name(&rs)));
                    rs.metadata.creation_timestamp = Some(Time(at(1000 + rss.len() as i64)));
                    rss.push(rs);
                }
                Action::Update(rs) => {
                    let slot = rss.iter_mut().find(|r| name(r) == name(rs)).unwrap();
                    *slot = rs.clone();
                }
                Action::Delete { name: n } => rss.retain(|r| &name(r) != n),
                Action::Event { .. } => {}
            }
        }
        for rs in rss.iter_mut() {
            let size = rs_replicas(rs);
            let status = rs.status.get_or_insert_with(Default::default);
            status.replicas = size;
            status.ready_replicas = count(size as usize);
            status.available_replicas = count(size as usize);
            status.observed_generation = rs.metadata.generation;
        }
        d.status = Some(plan.status.clone());
        if let Some(revision) = &plan.revision {
            d.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(REVISION.into(), revision.clone());
        }
    }

    #[test]
    fn a_new_deployment_creates_its_first_replica_set() {
        let d = deployment(3, "nginx:1", "25%/25%");
        let plan = plan(&d, vec![], &[], at(0)).unwrap();
        let hash = compute_hash(&template("nginx:1"), None);
        let rs_name = format!("web-{hash}");
        let Action::Create(rs) = &plan.actions[0] else {
            panic!("expected a create, got {:?}", plan.actions);
        };
        assert_eq!(name(rs), rs_name);
        let spec = rs.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH],
            hash
        );
        let labels = spec
            .template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(labels[POD_TEMPLATE_HASH], hash);
        assert_eq!(
            rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH],
            hash
        );
        let annotations = rs.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[REVISION], "1");
        assert_eq!(annotations[DESIRED_REPLICAS], "3");
        assert_eq!(annotations[MAX_REPLICAS], "4");
        assert_eq!(
            rs.metadata.owner_references.as_ref().unwrap()[0].uid,
            "d-uid"
        );
        assert_eq!(
            events(&plan),
            [format!("Scaled up replica set {rs_name} from 0 to 3")]
        );
        assert_eq!(plan.revision.as_deref(), Some("1"));
        assert_eq!(
            progressing(&plan.status),
            (
                "True".into(),
                NEW_REPLICA_SET_CREATED.into(),
                format!("Created new replica set {rs_name:?}")
            )
        );
        let available = get_condition(&plan.status, AVAILABLE).unwrap();
        assert_eq!(
            available.reason.as_deref(),
            Some(MINIMUM_REPLICAS_UNAVAILABLE)
        );
        assert_eq!(plan.status.observed_generation, Some(1));
        // A progress deadline to watch.
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(601)));
    }

    #[test]
    fn rolling_updates_step_within_surge_and_unavailability() {
        // (strategy, replicas, (new, old) sizes after each sync)
        type Steps = &'static [(i32, i32)];
        let cases: &[(&str, i32, Steps)] = &[
            ("1/0", 3, &[(1, 3), (1, 2), (2, 2), (2, 1), (3, 1), (3, 0)]),
            ("0/1", 3, &[(0, 2), (1, 2), (1, 1), (2, 1), (2, 0), (3, 0)]),
            // 25% of 4: surge 1, unavailable 1. The first sync creates the new
            // set and already takes one old pod down.
            ("25%/25%", 4, &[(1, 3), (2, 3), (2, 1), (4, 1), (4, 0)]),
            ("100%/0", 2, &[(2, 2), (2, 0)]),
            ("0/0", 2, &[(0, 1), (1, 1), (1, 0), (2, 0)]),
        ];
        for &(strategy, replicas, steps) in cases {
            let mut d = deployment(replicas, "nginx:2", strategy);
            let max = replicas + max_surge(&d);
            let mut rss = vec![replica_set(
                "web-old", "nginx:1", replicas, 1, 0, replicas, max,
            )];
            let mut seen = Vec::new();
            for _ in 0..20 {
                let p = plan(&d, rss.clone(), &[], at(10)).unwrap();
                settle(&mut d, &mut rss, &p);
                if p.actions.is_empty() {
                    break;
                }
                let new = rss
                    .iter()
                    .find(|rs| name(rs) != "web-old")
                    .map_or(0, rs_replicas);
                let old = rss
                    .iter()
                    .find(|rs| name(rs) == "web-old")
                    .map_or(0, rs_replicas);
                // Availability never drops below replicas - maxUnavailable,
                // and pods never exceed replicas + maxSurge.
                let available: i32 = rss.iter().map(|rs| rs_status_counts(rs).2).sum();
                assert!(
                    available >= replicas - max_unavailable(&d),
                    "{strategy}: {new}/{old}"
                );
                assert!(
                    new + old <= replicas + max_surge(&d),
                    "{strategy}: {new}/{old}"
                );
                seen.push((new, old));
            }
            assert_eq!(seen, steps, "{strategy}");
            let status = d.status.as_ref().unwrap();
            assert_eq!(status.updated_replicas, Some(replicas), "{strategy}");
            assert_eq!(progressing(status).1, NEW_RS_AVAILABLE, "{strategy}");
            assert_eq!(d.metadata.annotations.as_ref().unwrap()[REVISION], "2");
        }
    }

    #[test]
    fn old_replicas_that_are_not_available_go_first() {
        // The new ReplicaSet is complete; the old one still has 2 replicas,
        // none available. maxUnavailable 1 would allow one scale-down
        // step, but replicas that are unavailable anyway go at once.
        let d = deployment(3, "nginx:2", "0/1");
        let mut old = replica_set("web-old", "nginx:1", 2, 1, 0, 3, 3);
        old.status.as_mut().unwrap().available_replicas = None;
        let new_name = format!("web-{}", compute_hash(&template("nginx:2"), None));
        let new = replica_set(&new_name, "nginx:2", 3, 2, 5, 3, 3);
        let p = plan(&d, vec![old, new], &[], at(10)).unwrap();
        assert_eq!(events(&p), ["Scaled down replica set web-old from 2 to 0"]);
    }

    #[test]
    fn recreate_scales_down_waits_for_pods_then_scales_up() {
        let mut d = deployment(3, "nginx:2", "Recreate");
        let mut rss = vec![replica_set("web-old", "nginx:1", 3, 1, 0, 3, 3)];

        // 1. Old scaled to 0; nothing new yet.
        let p = plan(&d, rss.clone(), &[], at(10)).unwrap();
        assert_eq!(events(&p), ["Scaled down replica set web-old from 3 to 0"]);
        assert!(!p.actions.iter().any(|a| matches!(a, Action::Create(_))));
        settle(&mut d, &mut rss, &p);

        // 2. An old pod is still terminating: wait.
        let old_pod = Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some("web-old-abcde".into()),
                owner_references: rss[0].metadata.owner_references.clone().map(|mut refs| {
                    refs[0].uid = "uid-web-old".into();
                    refs[0].kind = "ReplicaSet".into();
                    refs
                }),
                deletion_timestamp: Some(Time(at(9))),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            }),
        });
        let p = plan(&d, rss.clone(), &[old_pod], at(11)).unwrap();
        assert!(p.actions.is_empty(), "{:?}", p.actions);

        // 3. Gone: the new ReplicaSet comes at full size.
        let p = plan(&d, rss.clone(), &[], at(12)).unwrap();
        let created: Vec<_> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Create(rs) => Some(rs_replicas(rs)),
                _ => None,
            })
            .collect();
        assert_eq!(created, [3]);
        assert_eq!(p.revision.as_deref(), Some("2"));
    }

    #[test]
    fn rolling_back_reuses_the_old_replica_set_with_a_new_revision() {
        // v1 (revision 1) was replaced by v2 (revision 2); the template is
        // back at v1, as `kubectl rollout undo` leaves it.
        let mut d = deployment(3, "nginx:1", "1/0");
        d.metadata.annotations = Some([(REVISION.to_string(), "2".to_string())].into());
        let v1 = replica_set("web-v1", "nginx:1", 0, 1, 0, 3, 4);
        let v2 = replica_set("web-v2", "nginx:2", 3, 2, 100, 3, 4);
        let p = plan(&d, vec![v1, v2], &[], at(200)).unwrap();
        assert!(!p.actions.iter().any(|a| matches!(a, Action::Create(_))));
        let Action::Update(first) = &p.actions[0] else {
            panic!("expected an update first, got {:?}", p.actions);
        };
        assert_eq!(name(first), "web-v1");
        let a = first.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            (a[REVISION].as_str(), a[REVISION_HISTORY].as_str()),
            ("3", "1")
        );
        assert_eq!(p.revision.as_deref(), Some("3"));
        assert_eq!(events(&p), ["Scaled up replica set web-v1 from 0 to 1"]);
    }

    #[test]
    fn scaling_resizes_the_only_active_replica_set() {
        let d = deployment(5, "nginx:1", "25%/25%");
        let rs = replica_set("web-v1", "nginx:1", 3, 1, 0, 3, 4);
        let p = plan(&d, vec![rs], &[], at(10)).unwrap();
        let Action::Update(updated) = &p.actions[0] else {
            panic!("expected an update, got {:?}", p.actions);
        };
        assert_eq!(rs_replicas(updated), 5);
        let a = updated.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            (a[DESIRED_REPLICAS].as_str(), a[MAX_REPLICAS].as_str()),
            ("5", "7")
        );
        assert_eq!(events(&p), ["Scaled up replica set web-v1 from 3 to 5"]);
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        // (replicas now, old size, new size, annotated max) -> (old, new)
        let cases = [
            // 10 -> 15 (maxSurge 25%: 13 -> 19 pods): +6 spread 4 / 2.
            (15, 8, 5, 13, (12, 7)),
            // 10 -> 5 (maxSurge 2: 7 pods allowed): -6 spread -4 / -2.
            (5, 8, 5, 13, (4, 3)),
            // 10 -> 11 (maxSurge 3: 14 pods): +1, all to the biggest
            // (8 * 14 / 13 rounds to 9; 5 * 14 / 13 to 5).
            (11, 8, 5, 13, (9, 5)),
            // Scaled to zero: everything goes.
            (0, 8, 5, 13, (0, 0)),
        ];
        for (replicas, old_size, new_size, max, want) in cases {
            let mut d = deployment(replicas, "nginx:2", "25%/25%");
            d.status = Some(DeploymentStatus {
                replicas: Some(old_size + new_size),
                ..Default::default()
            });
            let new_name = format!("web-{}", compute_hash(&template("nginx:2"), None));
            let mut old = replica_set("web-old", "nginx:1", old_size, 1, 0, 10, max);
            old.status.as_mut().unwrap().available_replicas = Some(old_size);
            let mut new = replica_set(&new_name, "nginx:2", new_size, 2, 100, 10, max);
            new.status.as_mut().unwrap().available_replicas = None;
            let p = plan(&d, vec![old.clone(), new.clone()], &[], at(200)).unwrap();
            let mut rss = vec![old, new];
            let mut dd = d.clone();
            settle(&mut dd, &mut rss, &p);
            let got = sizes(&rss);
            assert_eq!(
                got,
                vec![(new_name.clone(), want.1), ("web-old".into(), want.0)],
                "replicas {replicas}"
            );
        }
    }

    #[test]
    fn a_paused_deployment_scales_but_does_not_roll_out() {
        let mut d = deployment(5, "nginx:2", "25%/25%");
        d.spec.as_mut().unwrap().paused = Some(true);
        let rs = replica_set("web-v1", "nginx:1", 3, 1, 0, 3, 4);
        let p = plan(&d, vec![rs], &[], at(10)).unwrap();
        assert!(!p.actions.iter().any(|a| matches!(a, Action::Create(_))));
        assert_eq!(events(&p), ["Scaled up replica set web-v1 from 3 to 5"]);
        assert_eq!(
            progressing(&p.status),
            (
                "Unknown".into(),
                PAUSED.into(),
                "Deployment is paused".into()
            )
        );
        // Resumed: the condition says so, and the rollout starts.
        let mut resumed = deployment(5, "nginx:2", "25%/25%");
        let mut status = p.status.clone();
        // As the ReplicaSet controller reports it meanwhile.
        (
            status.replicas,
            status.ready_replicas,
            status.available_replicas,
        ) = (Some(5), Some(5), Some(5));
        resumed.status = Some(status);
        let rs = replica_set("web-v1", "nginx:1", 5, 1, 0, 5, 7);
        let p = plan(&resumed, vec![rs], &[], at(20)).unwrap();
        assert!(p.actions.iter().any(|a| matches!(a, Action::Create(_))));
        assert_eq!(progressing(&p.status).1, NEW_REPLICA_SET_CREATED);
    }

    #[test]
    fn progress_conditions_follow_the_rollout() {
        let new_name = format!("web-{}", compute_hash(&template("nginx:1"), None));
        let with_progress = |reason: &str, updated: i64| {
            let mut d = deployment(3, "nginx:1", "25%/25%");
            d.metadata.annotations = Some([(REVISION.to_string(), "1".to_string())].into());
            let mut status = DeploymentStatus {
                observed_generation: Some(1),
                replicas: Some(3),
                updated_replicas: Some(3),
                ready_replicas: Some(1),
                available_replicas: Some(1),
                ..Default::default()
            };
            set_condition(
                &mut status,
                condition(PROGRESSING, "True", reason, "x".into(), at(updated)),
            );
            d.status = Some(status);
            d
        };
        let mut partly = replica_set(&new_name, "nginx:1", 3, 1, 0, 3, 4);
        partly.status.as_mut().unwrap().ready_replicas = Some(1);
        partly.status.as_mut().unwrap().available_replicas = Some(1);
        let all = replica_set(&new_name, "nginx:1", 3, 1, 0, 3, 4);

        // All available: complete.
        let p = plan(
            &with_progress(REPLICA_SET_UPDATED, 0),
            vec![all.clone()],
            &[],
            at(10),
        )
        .unwrap();
        assert_eq!(
            progressing(&p.status),
            (
                "True".into(),
                NEW_RS_AVAILABLE.into(),
                format!("ReplicaSet {new_name:?} has successfully progressed.")
            )
        );
        assert_eq!(get_condition(&p.status, AVAILABLE).unwrap().status, "True");
        assert_eq!(p.requeue_after, None);
        // No progress for 700 s with a 600 s deadline: timed out.
        let p = plan(
            &with_progress(REPLICA_SET_UPDATED, 0),
            vec![partly.clone()],
            &[],
            at(700),
        )
        .unwrap();
        assert_eq!(
            progressing(&p.status),
            (
                "False".into(),
                TIMED_OUT.into(),
                format!("ReplicaSet {new_name:?} has timed out progressing.")
            )
        );
        // No progress for 100 s: look again when the deadline comes.
        let p = plan(
            &with_progress(REPLICA_SET_UPDATED, 0),
            vec![partly.clone()],
            &[],
            at(100),
        )
        .unwrap();
        assert_eq!(progressing(&p.status).1, REPLICA_SET_UPDATED);
        assert_eq!(p.requeue_after, Some(Duration::from_secs(501)));
        // A second pod available: progress, lastUpdateTime refreshed.
        let mut more = partly.clone();
        more.status.as_mut().unwrap().available_replicas = Some(2);
        more.status.as_mut().unwrap().ready_replicas = Some(2);
        let p = plan(
            &with_progress(REPLICA_SET_UPDATED, 0),
            vec![more],
            &[],
            at(100),
        )
        .unwrap();
        let c = get_condition(&p.status, PROGRESSING).unwrap();
        assert_eq!(
            c.message.as_deref(),
            Some(format!("ReplicaSet {new_name:?} is progressing.").as_str())
        );
        assert_eq!(c.last_update_time, Some(Time(at(100))));
        assert_eq!(c.last_transition_time, Some(Time(at(0))));
        // A ReplicaSet's failure shows on the Deployment.
        let mut failing = partly;
        failing.status.as_mut().unwrap().conditions = Some(vec![ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some("forbidden".into()),
            last_transition_time: Some(Time(at(50))),
        }]);
        let p = plan(
            &with_progress(REPLICA_SET_UPDATED, 0),
            vec![failing],
            &[],
            at(100),
        )
        .unwrap();
        let c = get_condition(&p.status, REPLICA_FAILURE).unwrap();
        assert_eq!(
            (c.reason.as_deref(), c.message.as_deref()),
            (Some("FailedCreate"), Some("forbidden"))
        );
    }

    #[test]
    fn a_finished_rollout_keeps_only_revision_history_limit_old_sets() {
        let mut d = deployment(1, "nginx:99", "25%/25%");
        d.spec.as_mut().unwrap().revision_history_limit = Some(2);
        let new_name = format!("web-{}", compute_hash(&template("nginx:99"), None));
        let mut rss: Vec<ReplicaSet> = (1..=4)
            .map(|i| replica_set(&format!("web-v{i}"), &format!("nginx:{i}"), 0, i, i, 1, 2))
            .collect();
        rss.push(replica_set(&new_name, "nginx:99", 1, 5, 10, 1, 2));
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(1),
            updated_replicas: Some(1),
            available_replicas: Some(1),
            ready_replicas: Some(1),
            ..Default::default()
        });
        let p = plan(&d, rss, &[], at(100)).unwrap();
        let deleted: Vec<_> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Delete { name } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["web-v1", "web-v2"]);
    }

    #[test]
    fn an_empty_selector_selects_everything() {
        let mut d = deployment(1, "nginx:1", "25%/25%");
        assert!(!selects_everything(&d));
        d.spec.as_mut().unwrap().selector = LabelSelector::default();
        assert!(selects_everything(&d));
    }
}
