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
//!
//! This module holds the model, finding and creating the new ReplicaSet,
//! scaling (proportional included), cleanup and the status counts;
//! `rolling`, `recreate` and `progress` hold the rest, as upstream's
//! files of those names.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::util::*;
use crate::controllers::replicaset::status::count;
use crate::pods::controller_ref;

mod progress;
mod recreate;
mod rolling;
#[cfg(test)]
mod tests;

pub use progress::{deployment_complete, deployment_progressing, deployment_timed_out};

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
