//! The CronJob decision, as upstream's v2 controller (`syncCronJob`,
//! `cleanupFinishedJobs` and the schedule arithmetic of `utils.go`):
//!
//! - the Jobs it controls update `status.active` (finished ones leave it,
//!   `SawCompletedJob`; an unfinished one it did not record is reported
//!   `UnexpectedJob` but left alone) and `status.lastSuccessfulTime`;
//! - the most recent unmet schedule time since `lastScheduleTime` (or the
//!   CronJob's creation), within `startingDeadlineSeconds`, starts a Job
//!   named `<cronjob>-<minutes since the epoch>` unless the concurrency
//!   policy forbids it (`Forbid`) or asks to replace the running ones
//!   (`Replace`); only the most recent missed time runs, never a backlog;
//! - finished Jobs beyond `successfulJobsHistoryLimit` /
//!   `failedJobsHistoryLimit` are deleted, oldest first;
//! - the key comes back exactly at the next schedule time (plus 100 ms).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;

use super::schedule::{to_chrono, Schedule, ScheduleError, Zone};
use crate::controllers::job::sync::Event;
use crate::pods::controller_ref;

/// The annotation telling a Job when it was scheduled to start.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Added to every requeue, against clock skew (upstream's `nextScheduleDelta`).
pub const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
/// More missed schedules than this are reported `TooManyMissedTimes`.
pub const MANY_MISSED: i64 = 100;

/// How many schedule times passed unmet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    Many,
}

/// Upstream's `mostRecentScheduleTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recent {
    /// Last schedule time, else creation (moved up to the starting deadline).
    pub earliest: Timestamp,
    /// The latest schedule time at or before now, if any passed.
    pub most_recent: Option<Timestamp>,
    pub missed: Missed,
}

const INVALID_SCHEDULE: &str = "time difference between two schedules is less than 1 second";

fn created(cj: &CronJob, now: Timestamp) -> Timestamp {
    cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0)
}

fn add_seconds(t: Timestamp, seconds: i64) -> Timestamp {
    Timestamp::from_second(t.as_second().saturating_add(seconds)).unwrap_or(t)
}

/// The most recent time a Job should have started, counting missed times
/// roughly (by the interval between the next two) so a clock decades off
/// costs nothing.
pub fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    schedule: &Schedule,
    include_starting_deadline: bool,
) -> Result<Recent, String> {
    let status = cj.status.as_ref();
    let mut earliest = status
        .and_then(|s| s.last_schedule_time.as_ref())
        .map_or_else(|| created(cj, now), |t| t.0);
    let deadline = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds);
    if let (true, Some(deadline)) = (include_starting_deadline, deadline) {
        // Nothing older than the deadline will be started.
        let limit = add_seconds(now, -deadline);
        if limit > earliest {
            earliest = limit;
        }
    }
    let none = Recent {
        earliest,
        most_recent: None,
        missed: Missed::None,
    };
    let (Some(t1), Some(t2)) = (
        schedule.next_after(earliest),
        schedule
            .next_after(earliest)
            .and_then(|t| schedule.next_after(t)),
    ) else {
        return Err(INVALID_SCHEDULE.into());
    };
    if now < t1 {
        return Ok(none);
    }
    if now < t2 {
        return Ok(Recent {
            most_recent: Some(t1),
            ..none
        });
    }
    let between = (t2.as_millisecond() - t1.as_millisecond() + 500) / 1000;
    if between < 1 {
        return Err(INVALID_SCHEDULE.into());
    }
    let elapsed = (now.as_millisecond() - t1.as_millisecond()) / 1000;
    let missed_count = elapsed / between + 1;
    // Start one interval before the estimate and let the schedule find the
    // real times (irregular schedules, @every).
    let mut t = add_seconds(t1, (missed_count - 2).saturating_mul(between));
    let mut most_recent = None;
    while let Some(next) = schedule.next_after(t) {
        if next > now {
            break;
        }
        most_recent = Some(next);
        t = next;
    }
    let missed = if missed_count > MANY_MISSED {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok(Recent {
        earliest,
        most_recent,
        missed,
    })
}

/// How long until the next schedule time after the last one (plus
/// [`NEXT_SCHEDULE_DELTA`]).
pub fn next_schedule_delay(cj: &CronJob, now: Timestamp, schedule: &Schedule) -> Duration {
    let from = match most_recent_schedule_time(cj, now, schedule, false) {
        Err(_) => now,
        Ok(Recent {
            most_recent: Some(t),
            ..
        }) => t,
        Ok(Recent {
            missed: Missed::None,
            earliest,
            ..
        }) => earliest,
        Ok(_) => now,
    };
    let Some(next) = schedule.next_after(from) else {
        // Never again: look once a day in case the clock was wrong.
        return Duration::from_secs(24 * 3600);
    };
    let ms = next.as_millisecond() - now.as_millisecond();
    Duration::from_millis(ms.max(0) as u64) + NEXT_SCHEDULE_DELTA
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`: the same name
/// for the same time, so a Job is never created twice for it.
pub fn job_name(cj: &CronJob, scheduled: Timestamp) -> String {
    format!(
        "{}-{}",
        cj.metadata.name.as_deref().unwrap_or(""),
        scheduled.as_second().div_euclid(60)
    )
}

/// The Job for `scheduled`: the template's labels, annotations (plus the
/// scheduled time in the CronJob's zone, UTC without one) and spec, owned
/// by the CronJob.
pub fn job_for(cj: &CronJob, scheduled: Timestamp) -> Job {
    let spec = cj.spec.as_ref();
    let template = spec.map(|s| s.job_template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let zone = match spec.and_then(|s| s.time_zone.as_deref()) {
        None => Zone::Named(chrono_tz::Tz::UTC),
        Some(name) => Zone::parse(Some(name)).unwrap_or(Zone::Named(chrono_tz::Tz::UTC)),
    };
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), zone.rfc3339(scheduled));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

/// A reference to a Job for `status.active`.
pub fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference {
        resource_version: job.metadata.resource_version.clone(),
        ..job.object_ref(&())
    }
}

/// `Complete` or `Failed`, whichever is True.
pub fn finished_as(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn uid_of(job: &Job) -> &str {
    job.metadata.uid.as_deref().unwrap_or("")
}

fn in_active(status: &CronJobStatus, uid: &str) -> bool {
    status
        .active
        .iter()
        .flatten()
        .any(|r| r.uid.as_deref() == Some(uid))
}

/// Remove the Job with `uid` from `status.active`.
pub fn forget_active(status: &mut CronJobStatus, uid: &str) {
    if let Some(active) = status.active.as_mut() {
        active.retain(|r| r.uid.as_deref() != Some(uid));
        if active.is_empty() {
            status.active = None;
        }
    }
}

/// Finished Jobs beyond the history limits, oldest (by start time, then
/// name) first.
pub fn jobs_to_clean(cj: &CronJob, jobs: &[Arc<Job>]) -> Vec<Arc<Job>> {
    let spec = cj.spec.as_ref();
    let limits = [
        (
            "Complete",
            spec.and_then(|s| s.successful_jobs_history_limit),
        ),
        ("Failed", spec.and_then(|s| s.failed_jobs_history_limit)),
    ];
    let mut doomed = Vec::new();
    for (kind, limit) in limits {
        let Some(limit) = limit else {
            continue;
        };
        let mut finished: Vec<Arc<Job>> = jobs
            .iter()
            .filter(|j| finished_as(j) == Some(kind))
            .cloned()
            .collect();
        let excess = finished.len().saturating_sub(limit.max(0) as usize);
        if excess == 0 {
            continue;
        }
        finished.sort_by(|a, b| {
            let start = |j: &Job| {
                j.status
                    .as_ref()
                    .and_then(|s| s.start_time.as_ref())
                    .map(|t| t.0)
            };
            let by_start = match (start(a), start(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            by_start.then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        doomed.extend(finished.into_iter().take(excess));
    }
    doomed
}

/// A Job to start.
#[derive(Debug, Clone)]
pub struct Launch {
    pub scheduled: Timestamp,
    pub job: Job,
    /// Running Jobs to delete first (`concurrencyPolicy: Replace`).
    pub replace: Vec<ObjectReference>,
    /// When to look again once the Job is started.
    pub requeue_after: Duration,
}

/// What a sync decided.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The status after accounting for the Jobs (before any launch).
    pub status: CronJobStatus,
    pub events: Vec<Event>,
    pub launch: Option<Launch>,
    /// When to look again if nothing is launched; `None` for a CronJob
    /// that is suspended, being deleted or unusable until edited.
    pub requeue_after: Option<Duration>,
}

/// Decide a sync of `cj` whose controlled Jobs are `jobs` at `now`.
/// `still_exist` holds UIDs of active Jobs missing from `jobs` that the API
/// server still has (the cache lags).
pub fn decide(
    cj: &CronJob,
    jobs: &[Arc<Job>],
    still_exist: &HashSet<String>,
    now: Timestamp,
) -> Decision {
    let mut status = cj.status.clone().unwrap_or_default();
    let mut events = Vec::new();
    for job in jobs {
        let uid = uid_of(job);
        let name = job.metadata.name.as_deref().unwrap_or("");
        let found = in_active(&status, uid);
        match (found, finished_as(job)) {
            (false, None) => events.push(Event::warning(
                "UnexpectedJob",
                format!("Saw a job that the controller did not create or forgot: {name}"),
            )),
            (true, Some(how)) => {
                forget_active(&mut status, uid);
                events.push(Event::normal(
                    "SawCompletedJob",
                    format!("Saw completed job: {name}, status: {how}"),
                ));
            }
            _ => {}
        }
        if finished_as(job) == Some("Complete") {
            let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
            let newer = match (&completed, &status.last_successful_time) {
                (Some(c), Some(last)) => c.0 > last.0,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if newer {
                status.last_successful_time = completed;
            }
        }
    }
    let children: HashSet<&str> = jobs.iter().map(|j| uid_of(j)).collect();
    for reference in status.active.clone().into_iter().flatten() {
        let uid = reference.uid.as_deref().unwrap_or("");
        if children.contains(uid) || still_exist.contains(uid) {
            continue;
        }
        events.push(Event::normal(
            "MissingJob",
            format!(
                "Active job went missing: {}",
                reference.name.as_deref().unwrap_or("")
            ),
        ));
        forget_active(&mut status, uid);
    }

    let mut decision = Decision {
        status,
        events,
        launch: None,
        requeue_after: None,
    };
    if cj.metadata.deletion_timestamp.is_some() {
        return decision;
    }
    let spec = cj.spec.clone().unwrap_or_default();
    let time_zone = spec.time_zone.as_deref();
    if let Err(e) = Zone::parse(time_zone) {
        decision.events.push(Event::warning(
            "UnknownTimeZone",
            format!("invalid timeZone: {:?}: {e}", time_zone.unwrap_or("")),
        ));
        return decision;
    }
    if spec.suspend == Some(true) {
        return decision;
    }
    let schedule = match Schedule::parse(&spec.schedule, time_zone) {
        Ok(schedule) => schedule,
        Err(ScheduleError::UnknownTimeZone(_)) => return decision,
        Err(ScheduleError::Unparseable(e)) => {
            decision.events.push(Event::warning(
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return decision;
        }
    };
    // The CronJob as it stands after accounting for its Jobs.
    let mut view = cj.clone();
    view.status = Some(decision.status.clone());
    let recent = match most_recent_schedule_time(&view, now, &schedule, true) {
        Ok(recent) => recent,
        Err(e) => {
            decision.events.push(Event::warning(
                "InvalidSchedule",
                format!("invalid schedule: {} : {e}", spec.schedule),
            ));
            return decision;
        }
    };
    let Some(scheduled) = recent.most_recent.filter(|t| *t <= now) else {
        decision.requeue_after = Some(next_schedule_delay(&view, now, &schedule));
        return decision;
    };
    if recent.missed == Missed::Many {
        decision.events.push(Event::warning(
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
        ));
    }
    let requeue = next_schedule_delay(&view, now, &schedule);
    decision.requeue_after = Some(requeue);
    if let Some(deadline) = spec.starting_deadline_seconds {
        if add_seconds(scheduled, deadline) < now {
            let at = to_chrono(scheduled).format("%a, %d %b %Y %H:%M:%S %z");
            decision.events.push(Event::warning(
                "MissSchedule",
                format!("Missed scheduled time to start a job: {at}"),
            ));
            return decision;
        }
    }
    let name = job_name(cj, scheduled);
    let active = decision.status.active.clone().unwrap_or_default();
    let started = active
        .iter()
        .any(|r| r.name.as_deref() == Some(name.as_str()))
        || decision.status.last_schedule_time.as_ref().map(|t| t.0) == Some(scheduled);
    if started {
        return decision;
    }
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
    if policy == "Forbid" && !active.is_empty() {
        decision.events.push(Event::normal(
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid",
        ));
        return decision;
    }
    // Once started, the next look is after the next time past this one.
    let mut after = view;
    after
        .status
        .get_or_insert_with(Default::default)
        .last_schedule_time = Some(Time(scheduled));
    decision.launch = Some(Launch {
        scheduled,
        job: job_for(cj, scheduled),
        replace: if policy == "Replace" {
            active
        } else {
            Vec::new()
        },
        requeue_after: next_schedule_delay(&after, now, &schedule),
    });
    decision
}

#[cfg(test)]
#[path = "sync_tests.rs"]
mod tests;
