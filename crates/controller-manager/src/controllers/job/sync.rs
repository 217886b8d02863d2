//! The Job sync decision, as upstream's `syncJob` (1.33), in pure steps the
//! executor interleaves with its API calls:
//!
//! 1. [`assess`]: count the Job's pods (new successes and failures not yet
//!    in its status), decide whether it has failed (backoff limit, active
//!    deadline) or already met its success criteria, and what to do with
//!    pods: delete all active ones (finishing or suspended), delete
//!    surplus ones, create missing ones (after the failure backoff), or
//!    hold while expectations are pending.
//! 2. [`conclude`]: after the pods were created or deleted, the new
//!    `active`/`ready`/`terminating` counts, whether the Job has now
//!    reached its completions, and the Suspended condition.
//! 3. [`track`]: pod tracking with the `batch.kubernetes.io/job-tracking`
//!    finalizer. Every finished pod still carrying the finalizer is first
//!    written into `status.uncountedTerminatedPods` (with the interim
//!    `FailureTarget` / `SuccessCriteriaMet` condition), and only then is
//!    its finalizer removed. [`settle`] moves pods whose finalizer is gone
//!    from the uncounted lists into `succeeded`/`failed`. A finished pod
//!    is therefore counted exactly once even if it is deleted at any point.
//! 4. [`enact_finished`]: the terminal `Complete` or `Failed` condition,
//!    once nothing is uncounted and no pod is still terminating.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::backoff::BackoffRecord;
use super::indexes::{completion_index, first_pending, Intervals};
use crate::pods::{is_pod_active, is_pod_ready, phase, ready_since};

/// The finalizer that keeps a Job's finished pods until they are counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// `spec.managedBy` of Jobs this controller manages (also the default).
pub const MANAGED_BY: &str = "kubernetes.io/job-controller";
/// Most pods held in `status.uncountedTerminatedPods` at once.
pub const MAX_UNCOUNTED_PODS: usize = 500;
/// Most pods created or deleted in one sync.
pub const MAX_POD_CHANGES_PER_SYNC: usize = 500;
/// Pod events sync their Job at most this often (upstream's
/// `syncJobBatchPeriod`), and a delayed creation waits at least this long.
pub const SYNC_BATCH_PERIOD: Duration = Duration::from_secs(1);

pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const FAILURE_TARGET: &str = "FailureTarget";
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
pub const SUSPENDED: &str = "Suspended";

/// An event to record on the Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

impl Event {
    pub fn normal(reason: &str, message: impl Into<String>) -> Self {
        Event {
            warning: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn warning(reason: &str, message: impl Into<String>) -> Self {
        Event {
            warning: true,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The condition of `type_`, if the status has one.
pub fn condition<'a>(status: Option<&'a JobStatus>, type_: &str) -> Option<&'a JobCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Whether the Job has its terminal `Complete` or `Failed` condition.
pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| (c.type_ == COMPLETE || c.type_ == FAILED) && c.status == "True")
}

pub fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// Whether another controller manages the Job (`spec.managedBy`).
pub fn managed_elsewhere(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.managed_by.as_deref())
        .is_some_and(|m| m != MANAGED_BY)
}

fn completions(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.completions)
}

fn parallelism(job: &Job) -> i32 {
    job.spec.as_ref().and_then(|s| s.parallelism).unwrap_or(1)
}

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Being deleted but not finished yet (upstream's `IsPodTerminating`).
pub fn is_pod_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !is_terminal(pod)
}

/// Whether replacements wait until a terminating pod has fully failed
/// (`podReplacementPolicy: Failed`, implied by a pod failure policy).
fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// Whether the pod counts as failed: phase Failed, or (unless only failed
/// pods are replaced) deleted before it succeeded, which covers pods that
/// never get the chance to reach a terminal phase.
pub fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    if only_replace_failed(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Add or update the condition of `type_`; a False condition is not
/// added where there was none. Returns whether anything changed.
pub fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        let same = existing.status == status
            && existing.reason.as_deref().unwrap_or("") == reason
            && existing.message.as_deref().unwrap_or("") == message;
        if same {
            return false;
        }
        *existing = new_condition(type_, status, reason, message, now);
        return true;
    }
    if status == "False" {
        return false;
    }
    conditions.push(new_condition(type_, status, reason, message, now));
    true
}

/// The status with `uncountedTerminatedPods` always present and empty
/// lists left out, so two statuses compare by meaning.
pub fn normalize(status: Option<&JobStatus>) -> JobStatus {
    let mut status = status.cloned().unwrap_or_default();
    let uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: uncounted.succeeded.filter(|v| !v.is_empty()),
        failed: uncounted.failed.filter(|v| !v.is_empty()),
    });
    status
}

/// The UIDs in `status.uncountedTerminatedPods`.
#[derive(Debug, Clone, Default)]
struct Uncounted {
    succeeded: HashSet<String>,
    failed: HashSet<String>,
}

impl Uncounted {
    fn of(job: &Job) -> Self {
        let lists = job
            .status
            .as_ref()
            .and_then(|s| s.uncounted_terminated_pods.as_ref());
        let set = |v: Option<&Vec<String>>| v.into_iter().flatten().cloned().collect();
        Uncounted {
            succeeded: set(lists.and_then(|l| l.succeeded.as_ref())),
            failed: set(lists.and_then(|l| l.failed.as_ref())),
        }
    }
}

/// What a sync observed.
pub struct SyncInput<'a> {
    pub job: &'a Job,
    /// The pods the Job owns (after adoption and release).
    pub pods: &'a [Arc<Pod>],
    /// Whether the informer has seen the creations and deletions asked
    /// for before.
    pub expectations_satisfied: bool,
    /// Pods whose finalizer removal is in flight (not yet seen).
    pub removing_finalizers: &'a HashSet<String>,
    /// The Job's failure backoff before this sync.
    pub backoff: BackoffRecord,
    pub now: Timestamp,
}

/// What to do with the Job's pods.
#[derive(Debug, Clone)]
pub enum Manage {
    /// The Job failed or met its success criteria: delete every active pod,
    /// keeping their finalizers so they get counted.
    Finish { delete: Vec<Arc<Pod>> },
    /// Expectations are pending or the Job is being deleted: touch nothing.
    Hold,
    /// Suspended: delete every active pod (they are not failures).
    Suspend { delete: Vec<Arc<Pod>> },
    /// More pods run than wanted: delete these.
    ScaleDown { delete: Vec<Arc<Pod>> },
    /// Create pods: one per entry, with its completion index when Indexed.
    Create { indexes: Vec<Option<i32>> },
    /// Replacements wait for the failure backoff.
    Backoff(Duration),
    /// Nothing to change.
    Steady,
}

/// The first step's findings.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub succeeded: i32,
    pub failed: i32,
    pub active: Vec<Arc<Pod>>,
    pub ready: i32,
    pub terminating: i32,
    pub start_time: Option<Timestamp>,
    /// `SuccessCriteriaMet`, `FailureTarget`, or `Failed` (when the Job
    /// already carries `FailureTarget`).
    pub finished: Option<JobCondition>,
    pub backoff: BackoffRecord,
    pub prev_succeeded_indexes: Intervals,
    pub succeeded_indexes: Intervals,
    pub manage: Manage,
    /// When to look again (active deadline, failure backoff).
    pub requeue_after: Option<Duration>,
}

/// Pods with the finalizer, not yet in the uncounted lists, that pass
/// `filter` (upstream's `getValidPodsWithFilter`).
fn uncounted_new<'p>(
    input: &SyncInput<'p>,
    already: &HashSet<String>,
    filter: impl Fn(&Pod) -> bool,
) -> Vec<&'p Pod> {
    let indexed = is_indexed(input.job);
    let completions = completions(input.job).unwrap_or(0);
    input
        .pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| {
            let uid = uid(p);
            has_tracking_finalizer(p)
                && !already.contains(uid)
                && !input.removing_finalizers.contains(uid)
        })
        .filter(|p| !indexed || completion_index(p).is_some_and(|i| i < completions))
        .filter(|p| filter(p))
        .collect()
}

/// Sum of container restarts of running or pending pods reached the
/// backoff limit (restartPolicy OnFailure, where pods never fail).
fn past_backoff_limit_on_failure(job: &Job, pods: &[Arc<Pod>], limit: i32) -> bool {
    let restart_policy = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref());
    if restart_policy != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// The succeeded indexes before and after this sync's succeeded pods.
fn succeeded_indexes(job: &Job, pods: &[Arc<Pod>]) -> (Intervals, Intervals) {
    let completions = completions(job).unwrap_or(0);
    let previous = Intervals::parse(
        job.status
            .as_ref()
            .and_then(|s| s.completed_indexes.as_deref())
            .unwrap_or(""),
        completions,
    );
    let new: BTreeSet<i32> = pods
        .iter()
        .filter(|p| phase(p) == "Succeeded" && has_tracking_finalizer(p))
        .filter_map(|p| completion_index(p))
        .filter(|i| *i < completions)
        .collect();
    let all = previous.with_indexes(new);
    (previous, all)
}

/// Step 1: count, judge and decide what to do with pods.
pub fn assess(input: &SyncInput) -> Assessment {
    let job = input.job;
    let spec = job.spec.as_ref();
    let status = job.status.as_ref();
    let now = input.now;
    let uncounted = Uncounted::of(job);

    let active: Vec<Arc<Pod>> = input
        .pods
        .iter()
        .filter(|p| is_pod_active(p))
        .cloned()
        .collect();
    let ready = active.iter().filter(|p| is_pod_ready(p)).count() as i32;
    let terminating = input.pods.iter().filter(|p| is_pod_terminating(p)).count() as i32;

    let new_succeeded = uncounted_new(input, &uncounted.succeeded, |p| phase(p) == "Succeeded");
    let new_failed = uncounted_new(input, &uncounted.failed, |p| is_pod_failed(p, job));
    let mut succeeded = status.and_then(|s| s.succeeded).unwrap_or(0)
        + new_succeeded.len() as i32
        + uncounted.succeeded.len() as i32;
    let failed = status.and_then(|s| s.failed).unwrap_or(0)
        + new_failed.len() as i32
        + uncounted.failed.len() as i32;

    let suspended = is_suspended(job);
    let start_time = status
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .or((!suspended).then_some(now));
    let backoff = input.backoff.after(&new_succeeded, &new_failed);

    let mut requeue_after = None;
    let mut finished = condition(status, SUCCESS_CRITERIA_MET)
        .filter(|c| c.status == "True")
        .cloned();
    if finished.is_none() {
        if let Some(target) = condition(status, FAILURE_TARGET).filter(|c| c.status == "True") {
            finished = Some(new_condition(
                FAILED,
                "True",
                target.reason.as_deref().unwrap_or(""),
                target.message.as_deref().unwrap_or(""),
                now,
            ));
        }
    }
    if finished.is_none() {
        let backoff_limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6);
        let deadline = spec.and_then(|s| s.active_deadline_seconds);
        let running_for = start_time.map(|t| now.as_millisecond() - t.as_millisecond());
        if failed > backoff_limit || past_backoff_limit_on_failure(job, input.pods, backoff_limit) {
            finished = Some(new_condition(
                FAILURE_TARGET,
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now,
            ));
        } else if let (Some(deadline), Some(ran), false) = (deadline, running_for, suspended) {
            let allowed = deadline.saturating_mul(1000);
            if ran >= allowed {
                finished = Some(new_condition(
                    FAILURE_TARGET,
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                ));
            } else {
                requeue_after = Some(Duration::from_millis((allowed - ran) as u64));
            }
        }
    }

    let (prev_succeeded_indexes, succeeded_indexes) = if is_indexed(job) {
        let (previous, all) = succeeded_indexes(job, input.pods);
        succeeded = all.total();
        (previous, all)
    } else {
        (Intervals::default(), Intervals::default())
    };

    let mut assessment = Assessment {
        succeeded,
        failed,
        active,
        ready,
        terminating,
        start_time,
        finished,
        backoff,
        prev_succeeded_indexes,
        succeeded_indexes,
        manage: Manage::Hold,
        requeue_after,
    };
    assessment.manage = if assessment.finished.is_some() {
        Manage::Finish {
            delete: assessment.active.clone(),
        }
    } else if !input.expectations_satisfied || job.metadata.deletion_timestamp.is_some() {
        Manage::Hold
    } else {
        manage(input, &assessment)
    };
    if let Manage::Backoff(wait) = assessment.manage {
        assessment.requeue_after = Some(assessment.requeue_after.map_or(wait, |r| r.min(wait)));
    }
    assessment
}

/// Upstream's `manageJob` decision: how many pods should run, and which to
/// delete or which indexes to create.
fn manage(input: &SyncInput, a: &Assessment) -> Manage {
    let job = input.job;
    let active = a.active.len() as i32;
    if is_suspended(job) {
        return Manage::Suspend {
            delete: pods_for_removal(job, &a.active, a.active.len()),
        };
    }
    let parallelism = parallelism(job);
    let want = match completions(job) {
        // A work queue: once any pod succeeded, let the rest finish.
        None if a.succeeded > 0 => active,
        None => parallelism,
        Some(completions) => (completions - a.succeeded).min(parallelism).max(0),
    };
    let mut delete = pods_for_removal(job, &a.active, (active - want).max(0) as usize);
    if !delete.is_empty() {
        delete.truncate(MAX_POD_CHANGES_PER_SYNC);
        return Manage::ScaleDown { delete };
    }
    let terminating = if only_replace_failed(job) {
        a.terminating
    } else {
        0
    };
    let missing = want - terminating - active;
    if missing <= 0 {
        return Manage::Steady;
    }
    let wait = a.backoff.remaining(input.now);
    if !wait.is_zero() {
        return Manage::Backoff(wait.max(SYNC_BATCH_PERIOD));
    }
    let missing = (missing as usize).min(MAX_POD_CHANGES_PER_SYNC);
    if is_indexed(job) {
        let mut taken: BTreeSet<i32> = a
            .active
            .iter()
            .filter_map(|p| completion_index(p))
            .collect();
        if only_replace_failed(job) {
            taken.extend(
                input
                    .pods
                    .iter()
                    .filter(|p| is_pod_terminating(p))
                    .filter_map(|p| completion_index(p)),
            );
        }
        let indexes = first_pending(
            &taken,
            &a.succeeded_indexes,
            missing,
            completions(job).unwrap_or(0),
        );
        if indexes.is_empty() {
            return Manage::Steady;
        }
        return Manage::Create {
            indexes: indexes.into_iter().map(Some).collect(),
        };
    }
    Manage::Create {
        indexes: vec![None; missing],
    }
}

/// Upstream's `controller.ActivePods` order: the pod earlier in this order
/// is deleted first (unscheduled < scheduled, Pending < Unknown < Running,
/// not ready < ready, ready for less time < longer, more restarts < fewer,
/// newer < older).
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match phase(p) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .map(|c| c.restart_count)
            .max()
            .unwrap_or(0)
    };
    // Later (or unknown) times first.
    let later_first = |x: Option<Timestamp>, y: Option<Timestamp>| match (x, y) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Less,
        (_, None) => Ordering::Greater,
        (Some(x), Some(y)) => y.cmp(&x),
    };
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_pod_ready(a).cmp(&is_pod_ready(b)))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            (Some(x), Some(y)) => later_first(x, y),
            _ => Ordering::Equal,
        })
        .then(restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            later_first(
                a.metadata.creation_timestamp.as_ref().map(|t| t.0),
                b.metadata.creation_timestamp.as_ref().map(|t| t.0),
            )
        })
}

/// Active pods to delete: for Indexed Jobs every pod without a valid index
/// and all but the most advanced pod of a repeated index; then, until at
/// least `at_least` are chosen, the pods earliest in [`deletion_order`].
pub fn pods_for_removal(job: &Job, active: &[Arc<Pod>], at_least: usize) -> Vec<Arc<Pod>> {
    let mut remove = Vec::new();
    let mut keep: Vec<Arc<Pod>> = Vec::new();
    if is_indexed(job) {
        let completions = completions(job).unwrap_or(0);
        let mut by_index: Vec<Arc<Pod>> = active.to_vec();
        by_index.sort_by_key(|p| completion_index(p).unwrap_or(-1));
        let mut groups: Vec<Vec<Arc<Pod>>> = Vec::new();
        for pod in by_index {
            match groups.last_mut() {
                Some(group) if completion_index(&group[0]) == completion_index(&pod) => {
                    group.push(pod)
                }
                _ => groups.push(vec![pod]),
            }
        }
        for mut group in groups {
            match completion_index(&group[0]) {
                Some(i) if i < completions => {
                    group.sort_by(|a, b| deletion_order(a, b));
                    let best = group.pop().expect("groups are not empty");
                    remove.extend(group);
                    keep.push(best);
                }
                _ => remove.extend(group),
            }
        }
    } else {
        keep = active.to_vec();
    }
    if remove.len() < at_least {
        keep.sort_by(|a, b| deletion_order(a, b));
        let more = (at_least - remove.len()).min(keep.len());
        remove.extend(keep.into_iter().take(more));
    }
    remove
}

/// What the executor achieved with [`Assessment::manage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Executed {
    /// Pods whose deletion was accepted (or that were already gone).
    pub deleted: i32,
    /// Of those, how many were ready.
    pub deleted_ready: i32,
    /// Pods created.
    pub created: i32,
}

/// The second step's result.
#[derive(Debug, Clone)]
pub struct Concluded {
    /// The status with new counters and conditions, before tracking.
    pub status: JobStatus,
    pub finished: Option<JobCondition>,
    pub terminating: i32,
    pub events: Vec<Event>,
}

/// Step 2: the counters after the pod changes, completion, suspension.
pub fn conclude(input: &SyncInput, a: &Assessment, done: Executed) -> Concluded {
    let job = input.job;
    let now = input.now;
    let mut status = normalize(job.status.as_ref());
    let mut conditions = status.conditions.take().unwrap_or_default();
    let mut active = a.active.len() as i32;
    let mut ready = a.ready;
    let mut terminating = a.terminating;
    let mut finished = a.finished.clone();
    let mut start_time = a.start_time;
    let mut events = Vec::new();
    match &a.manage {
        Manage::Finish { delete } => {
            // The Job may only be declared finished once every active pod
            // is being deleted and no pod is missing from the cache.
            if done.deleted != delete.len() as i32 || !input.expectations_satisfied {
                finished = None;
            }
            active -= done.deleted;
            terminating += done.deleted;
            ready -= done.deleted_ready;
        }
        manage => {
            match manage {
                Manage::Suspend { .. } | Manage::ScaleDown { .. } => {
                    active -= done.deleted;
                    terminating += done.deleted;
                    ready -= done.deleted_ready;
                }
                Manage::Create { .. } => active += done.created,
                _ => {}
            }
            let complete = match completions(job) {
                // A work queue is done once any pod succeeded and none runs.
                None => a.succeeded > 0 && active == 0,
                Some(completions) => a.succeeded >= completions && active == 0,
            };
            if complete {
                finished = Some(new_condition(
                    SUCCESS_CRITERIA_MET,
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                ));
            } else if !matches!(manage, Manage::Hold) {
                if is_suspended(job) {
                    let changed = ensure_condition(
                        &mut conditions,
                        SUSPENDED,
                        "True",
                        "JobSuspended",
                        "Job suspended",
                        now,
                    );
                    if changed {
                        events.push(Event::normal("Suspended", "Job suspended"));
                    }
                } else {
                    let changed = ensure_condition(
                        &mut conditions,
                        SUSPENDED,
                        "False",
                        "JobResumed",
                        "Job resumed",
                        now,
                    );
                    if changed {
                        events.push(Event::normal("Resumed", "Job resumed"));
                        // activeDeadlineSeconds counts continuous activity.
                        start_time = Some(now);
                    }
                }
            }
        }
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    status.active = Some(active);
    status.ready = Some(ready);
    status.terminating = Some(terminating);
    status.start_time = start_time.map(Time);
    Concluded {
        status,
        finished,
        terminating,
        events,
    }
}

/// The third step's result.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// The status to write before any finalizer is removed.
    pub status: JobStatus,
    /// Pods whose finalizer may go once `status` is written.
    pub remove_finalizers: Vec<Arc<Pod>>,
    /// UIDs of pods carrying the finalizer; the executor drops those whose
    /// finalizer it removed before [`settle`].
    pub with_finalizer: HashSet<String>,
    /// The terminal condition to add once everything is counted.
    pub terminal: Option<JobCondition>,
    /// The uncounted lists are full; finishing waits for another sync.
    pub reached_max: bool,
}

/// Step 3: put newly finished pods in the uncounted lists, choose the pods
/// whose finalizer may be removed, add the interim condition.
pub fn track(input: &SyncInput, a: &Assessment, c: &Concluded) -> Tracked {
    let job = input.job;
    let indexed = is_indexed(job);
    let completions = completions(job).unwrap_or(0);
    let original = Uncounted::of(job);
    let mut status = c.status.clone();

    let with_finalizer: HashSet<String> = input
        .pods
        .iter()
        .filter(|p| has_tracking_finalizer(p) && !input.removing_finalizers.contains(uid(p)))
        .map(|p| uid(p).to_string())
        .collect();
    settle(&mut status, &with_finalizer);
    let lists = status.uncounted_terminated_pods.take().unwrap_or_default();
    let mut succeeded_uids = lists.succeeded.unwrap_or_default();
    let mut failed_uids = lists.failed.unwrap_or_default();

    let mut pods: Vec<&Arc<Pod>> = input.pods.iter().collect();
    if indexed {
        pods.sort_by_key(|p| completion_index(p).unwrap_or(-1));
    }
    let job_finishing = c.finished.is_some();
    let job_failing = c
        .finished
        .as_ref()
        .is_some_and(|f| f.type_ != SUCCESS_CRITERIA_MET);
    let mut remove_finalizers = Vec::new();
    let mut new_indexes = Vec::new();
    let mut reached_max = false;
    for pod in pods {
        let id = uid(pod);
        if !has_tracking_finalizer(pod) || input.removing_finalizers.contains(id) {
            // Counted in an earlier sync.
            continue;
        }
        let failed = is_pod_failed(pod, job);
        let removable = job.metadata.deletion_timestamp.is_some()
            || job_finishing
            || phase(pod) == "Succeeded"
            || failed;
        if !removable {
            continue;
        }
        remove_finalizers.push(pod.clone());
        let index = completion_index(pod);
        if phase(pod) == "Succeeded" && !original.failed.contains(id) {
            if indexed {
                // The index alone prevents counting a success twice.
                if let Some(i) = index.filter(|i| *i < completions) {
                    if !a.prev_succeeded_indexes.contains(i) {
                        new_indexes.push(i);
                    }
                }
            } else if !original.succeeded.contains(id) {
                succeeded_uids.push(id.to_string());
            }
        } else if failed || job_failing {
            // Once the Job fails, every pod not succeeded counts as failed.
            let valid = !indexed || index.is_some_and(|i| i < completions);
            if !original.failed.contains(id) && valid {
                failed_uids.push(id.to_string());
            }
        }
        if new_indexes.len() + succeeded_uids.len() + failed_uids.len() >= MAX_UNCOUNTED_PODS {
            reached_max = true;
            break;
        }
    }
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: (!succeeded_uids.is_empty()).then_some(succeeded_uids),
        failed: (!failed_uids.is_empty()).then_some(failed_uids),
    });
    if indexed {
        new_indexes.sort_unstable();
        let all = a.succeeded_indexes.with_indexes(new_indexes);
        status.succeeded = Some(all.total());
        let text = all.to_string();
        status.completed_indexes = (!text.is_empty()).then_some(text);
    }

    let now = input.now;
    let terminal = match &c.finished {
        Some(f) if f.type_ == FAILURE_TARGET => {
            // Record why the Job fails before the pods that prove it go.
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(f.clone());
            Some(new_condition(
                FAILED,
                "True",
                f.reason.as_deref().unwrap_or(""),
                f.message.as_deref().unwrap_or(""),
                now,
            ))
        }
        Some(f) if f.type_ == SUCCESS_CRITERIA_MET => {
            if condition(Some(&status), SUCCESS_CRITERIA_MET).is_none() {
                status
                    .conditions
                    .get_or_insert_with(Vec::new)
                    .push(f.clone());
            }
            Some(new_condition(
                COMPLETE,
                "True",
                f.reason.as_deref().unwrap_or(""),
                f.message.as_deref().unwrap_or(""),
                now,
            ))
        }
        other => other.clone(),
    };
    Tracked {
        status,
        remove_finalizers,
        with_finalizer,
        terminal,
        reached_max,
    }
}

/// Count the uncounted pods whose finalizer is gone (not in
/// `with_finalizer`). Returns whether the status changed.
pub fn settle(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let lists = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let mut changed = false;
    let mut count = |list: &mut Option<Vec<String>>, counter: &mut Option<i32>| {
        let Some(uids) = list.as_mut() else {
            return;
        };
        let before = uids.len();
        uids.retain(|u| with_finalizer.contains(u));
        let gone = (before - uids.len()) as i32;
        if gone > 0 {
            changed = true;
            *counter = Some(counter.unwrap_or(0) + gone);
        }
        if uids.is_empty() {
            *list = None;
        }
    };
    count(&mut lists.succeeded, &mut status.succeeded);
    count(&mut lists.failed, &mut status.failed);
    changed
}

/// Step 4: add the terminal condition once nothing is uncounted and no pod
/// is still terminating. Returns whether the Job is now finished.
pub fn enact_finished(
    status: &mut JobStatus,
    terminal: Option<&JobCondition>,
    terminating: i32,
    now: Timestamp,
) -> bool {
    let Some(terminal) = terminal else {
        return false;
    };
    let uncounted = status.uncounted_terminated_pods.as_ref();
    let pending = uncounted
        .and_then(|u| u.succeeded.as_ref())
        .map_or(0, Vec::len)
        + uncounted
            .and_then(|u| u.failed.as_ref())
            .map_or(0, Vec::len);
    if pending > 0 || terminating > 0 {
        return false;
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    ensure_condition(
        conditions,
        &terminal.type_,
        &terminal.status,
        terminal.reason.as_deref().unwrap_or(""),
        terminal.message.as_deref().unwrap_or(""),
        now,
    );
    if terminal.type_ == COMPLETE {
        let at = condition(Some(status), COMPLETE)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        status.completion_time = Some(at);
    }
    true
}

/// The events of a Job that just finished.
pub fn finished_events(job: &Job, status: &JobStatus, terminal: &JobCondition) -> Vec<Event> {
    if terminal.type_ == COMPLETE {
        let mut events = Vec::new();
        if completions(job).is_some_and(|c| status.succeeded.unwrap_or(0) > c) {
            events.push(Event::warning(
                "TooManySucceededPods",
                "Too many succeeded pods running after completion count reached",
            ));
        }
        events.push(Event::normal("Completed", "Job completed"));
        events
    } else {
        vec![Event::warning(
            terminal.reason.as_deref().unwrap_or(FAILED),
            terminal.message.as_deref().unwrap_or(""),
        )]
    }
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
