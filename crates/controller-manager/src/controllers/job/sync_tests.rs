//! Table-driven tests of the Job sync decision, with a fixed `now` and
//! every API call assumed to succeed (see [`run`]).

use super::*;
use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

fn job(spec: serde_json::Value) -> Job {
    let mut spec = spec;
    let defaults = json!({
        "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
        "suspend": false, "podReplacementPolicy": "TerminatingOrFailed",
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}},
    });
    for (k, v) in defaults.as_object().unwrap() {
        if spec.get(k).is_none() {
            spec[k] = v.clone();
        }
    }
    serde_json::from_value(json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
        "spec": spec,
    }))
    .unwrap()
}

fn with_status(mut job: Job, status: serde_json::Value) -> Job {
    job.status = Some(serde_json::from_value(status).unwrap());
    job
}

/// A pod of the Job in `phase`, created at second 0, carrying the
/// tracking finalizer.
fn pod(name: &str, phase: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            finalizers: Some(vec![TRACKING_FINALIZER.into()]),
            creation_timestamp: Some(Time(at(0))),
            ..Default::default()
        },
        spec: Some(Default::default()),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

fn indexed_pod(name: &str, index: i32, phase: &str) -> Pod {
    let mut p = pod(name, phase);
    p.metadata.annotations = Some(
        [(
            super::super::indexes::COMPLETION_INDEX.to_string(),
            index.to_string(),
        )]
        .into(),
    );
    p
}

fn ready(mut p: Pod) -> Pod {
    p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "Ready".into(),
        status: "True".into(),
        last_transition_time: Some(Time(at(1))),
        ..Default::default()
    }]);
    p
}

fn deleting(mut p: Pod) -> Pod {
    p.metadata.deletion_timestamp = Some(Time(at(5)));
    p
}

fn counted(mut p: Pod) -> Pod {
    p.metadata.finalizers = None;
    p
}

fn arcs(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
    pods.into_iter().map(Arc::new).collect()
}

/// One sync with every API call succeeding.
struct Synced {
    assessment: Assessment,
    concluded: Concluded,
    tracked: Tracked,
    /// The status after finalizers are removed and counted.
    status: JobStatus,
    finished: bool,
}

fn run(job: &Job, pods: &[Arc<Pod>], now: Timestamp) -> Synced {
    run_with(job, pods, now, BackoffRecord::default())
}

fn run_with(job: &Job, pods: &[Arc<Pod>], now: Timestamp, backoff: BackoffRecord) -> Synced {
    let removing = HashSet::new();
    let input = SyncInput {
        job,
        pods,
        expectations_satisfied: true,
        removing_finalizers: &removing,
        backoff,
        now,
    };
    let assessment = assess(&input);
    let executed = match &assessment.manage {
        Manage::Finish { delete } | Manage::Suspend { delete } | Manage::ScaleDown { delete } => {
            Executed {
                deleted: delete.len() as i32,
                deleted_ready: delete.iter().filter(|p| is_pod_ready(p)).count() as i32,
                created: 0,
            }
        }
        Manage::Create { indexes } => Executed {
            created: indexes.len() as i32,
            ..Default::default()
        },
        _ => Executed::default(),
    };
    let concluded = conclude(&input, &assessment, executed);
    let tracked = track(&input, &assessment, &concluded);
    let mut status = tracked.status.clone();
    let mut remaining = tracked.with_finalizer.clone();
    for p in &tracked.remove_finalizers {
        remaining.remove(uid(p));
    }
    settle(&mut status, &remaining);
    let finished = !tracked.reached_max
        && enact_finished(
            &mut status,
            tracked.terminal.as_ref(),
            concluded.terminating,
            now,
        );
    Synced {
        assessment,
        concluded,
        tracked,
        status,
        finished,
    }
}

fn condition_of<'a>(status: &'a JobStatus, type_: &str) -> Option<(&'a str, &'a str)> {
    condition(Some(status), type_).map(|c| (c.status.as_str(), c.reason.as_deref().unwrap_or("")))
}

fn creates(manage: &Manage) -> Option<usize> {
    match manage {
        Manage::Create { indexes } => Some(indexes.len()),
        _ => None,
    }
}

fn deletes(manage: &Manage) -> Vec<String> {
    match manage {
        Manage::Finish { delete } | Manage::Suspend { delete } | Manage::ScaleDown { delete } => {
            delete
                .iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect()
        }
        _ => Vec::new(),
    }
}

#[test]
fn pods_run_up_to_parallelism_and_the_remaining_completions() {
    // (completions, parallelism, counted succeeded, pods) → create, delete
    type Case = (Option<i32>, i32, i32, Vec<Pod>, Option<usize>, usize);
    let cases: Vec<Case> = vec![
        (Some(3), 2, 0, vec![], Some(2), 0),
        (Some(3), 2, 0, vec![pod("a", "Running")], Some(1), 0),
        // A success not yet in the status still counts.
        (
            Some(3),
            2,
            0,
            vec![pod("a", "Succeeded"), pod("b", "Succeeded")],
            Some(1),
            0,
        ),
        (Some(3), 2, 2, vec![pod("c", "Running")], None, 0),
        (Some(3), 2, 3, vec![], None, 0),
        (
            Some(1),
            1,
            0,
            vec![pod("a", "Running"), pod("b", "Pending")],
            None,
            1,
        ),
        (Some(5), 0, 0, vec![pod("a", "Running")], None, 1),
        // Work queues: parallelism until the first success, then no more.
        (None, 2, 0, vec![], Some(2), 0),
        (
            None,
            2,
            0,
            vec![pod("a", "Succeeded"), pod("b", "Running")],
            None,
            0,
        ),
    ];
    for (completions, parallelism, succeeded, pods, create, delete) in cases {
        let mut spec = json!({"parallelism": parallelism});
        if let Some(c) = completions {
            spec["completions"] = json!(c);
        }
        let j = with_status(job(spec), json!({"succeeded": succeeded}));
        let names: Vec<_> = pods.iter().map(|p| p.metadata.name.clone()).collect();
        let synced = run(&j, &arcs(pods), at(10));
        let m = &synced.assessment.manage;
        assert_eq!(
            creates(m),
            create,
            "{completions:?}/{parallelism} {names:?}: {m:?}"
        );
        assert_eq!(
            deletes(m).len(),
            delete,
            "{completions:?}/{parallelism} {names:?}"
        );
    }
}

#[test]
fn terminating_pods_are_replaced_at_once_unless_only_failed_ones_are() {
    // A pod deleted before it succeeded counts as failed, which starts a
    // backoff from its deletion (second 5); at second 30 that is over.
    let terminating = arcs(vec![deleting(pod("a", "Running"))]);
    let j = job(json!({"completions": 1}));
    let synced = run(&j, &terminating, at(30));
    assert_eq!(creates(&synced.assessment.manage), Some(1));
    assert_eq!(
        synced
            .tracked
            .status
            .uncounted_terminated_pods
            .unwrap()
            .failed,
        Some(vec!["uid-a".to_string()])
    );
    // podReplacementPolicy Failed: the terminating pod is neither counted
    // nor replaced until it has failed.
    let j = job(json!({"completions": 1, "podReplacementPolicy": "Failed"}));
    let synced = run(&j, &terminating, at(30));
    assert!(matches!(synced.assessment.manage, Manage::Steady));
    assert!(synced.tracked.remove_finalizers.is_empty());
    assert_eq!(synced.status.terminating, Some(1));
}

#[test]
fn surplus_pods_go_in_upstream_order() {
    let mut scheduled = ready(pod("old-ready", "Running"));
    scheduled.spec.as_mut().unwrap().node_name = Some("n1".into());
    let mut young = ready(pod("young-ready", "Running"));
    young.spec.as_mut().unwrap().node_name = Some("n1".into());
    young.metadata.creation_timestamp = Some(Time(at(3)));
    let mut restarted = pod("running-restarted", "Running");
    restarted.spec.as_mut().unwrap().node_name = Some("n1".into());
    restarted.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "c".into(),
        restart_count: 4,
        ..Default::default()
    }]);
    let mut running = pod("running", "Running");
    running.spec.as_mut().unwrap().node_name = Some("n1".into());
    let pending = pod("unscheduled", "Pending");
    let pods = arcs(vec![scheduled, running, restarted, young, pending]);
    let j = job(json!({"completions": 10, "parallelism": 1}));
    let order: Vec<_> = pods_for_removal(&j, &pods, 4)
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        order,
        ["unscheduled", "running-restarted", "running", "young-ready"]
    );
}

#[test]
fn each_finished_pod_is_counted_once_through_the_tracking_finalizer() {
    let j = job(json!({"completions": 3, "parallelism": 2}));
    // Sync 1: a pod succeeded and one failed. Both go into the uncounted
    // lists, written before their finalizers are removed.
    let pods = arcs(vec![
        pod("a", "Succeeded"),
        pod("b", "Failed"),
        pod("c", "Running"),
    ]);
    let first = run(&j, &pods, at(10));
    let flushed = first
        .tracked
        .status
        .uncounted_terminated_pods
        .clone()
        .unwrap();
    assert_eq!(flushed.succeeded, Some(vec!["uid-a".to_string()]));
    assert_eq!(flushed.failed, Some(vec!["uid-b".to_string()]));
    let removed: Vec<_> = first
        .tracked
        .remove_finalizers
        .iter()
        .map(|p| uid(p))
        .collect();
    assert_eq!(removed, ["uid-a", "uid-b"]);
    // Once the finalizers are gone they move into the counters.
    assert_eq!(
        (first.status.succeeded, first.status.failed),
        (Some(1), Some(1))
    );
    assert_eq!(
        normalize(Some(&first.status)).uncounted_terminated_pods,
        Some(Default::default())
    );

    // Had the finalizer removal failed, the next sync finds the pod gone
    // (deleted meanwhile) but still uncounted: it is counted, not lost.
    let j2 = with_status(
        j.clone(),
        serde_json::to_value(&first.tracked.status).unwrap(),
    );
    let gone = run(&j2, &arcs(vec![pod("c", "Running")]), at(11));
    assert_eq!(
        (gone.status.succeeded, gone.status.failed),
        (Some(1), Some(1))
    );

    // Counted pods (finalizer gone) are never counted again.
    let j3 = with_status(j.clone(), serde_json::to_value(&first.status).unwrap());
    let again = run(
        &j3,
        &arcs(vec![
            counted(pod("a", "Succeeded")),
            counted(pod("b", "Failed")),
            pod("c", "Running"),
        ]),
        at(12),
    );
    assert_eq!(
        (again.status.succeeded, again.status.failed),
        (Some(1), Some(1))
    );
    assert!(again.tracked.remove_finalizers.is_empty());
    assert_eq!(again.assessment.succeeded, 1);
    assert_eq!(creates(&again.assessment.manage), Some(1));
}

#[test]
fn completion_passes_through_success_criteria_met() {
    let j = with_status(
        job(json!({"completions": 2, "parallelism": 2})),
        json!({"succeeded": 1, "startTime": "2027-01-15T08:00:00Z"}),
    );
    let synced = run(
        &j,
        &arcs(vec![counted(pod("a", "Succeeded")), pod("b", "Succeeded")]),
        at(10),
    );
    // The interim condition is written together with the uncounted pod...
    assert_eq!(
        condition_of(&synced.tracked.status, SUCCESS_CRITERIA_MET),
        Some(("True", "CompletionsReached"))
    );
    assert_eq!(condition_of(&synced.tracked.status, COMPLETE), None);
    // ...and Complete follows once it is counted.
    assert!(synced.finished);
    assert_eq!(
        condition_of(&synced.status, COMPLETE),
        Some(("True", "CompletionsReached"))
    );
    assert_eq!(synced.status.succeeded, Some(2));
    assert_eq!(synced.status.completion_time, Some(Time(at(10))));
    assert_eq!(synced.status.active, Some(0));
    let events = finished_events(
        &j,
        &synced.status,
        synced.tracked.terminal.as_ref().unwrap(),
    );
    assert_eq!(events, [Event::normal("Completed", "Job completed")]);
}

#[test]
fn complete_waits_for_terminating_pods() {
    // Success criteria met earlier; a pod is still terminating.
    let j = with_status(
        job(json!({"completions": 1, "parallelism": 2})),
        json!({"succeeded": 1, "conditions": [{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"}]}),
    );
    let stuck = arcs(vec![
        counted(pod("a", "Succeeded")),
        counted(deleting(pod("b", "Running"))),
    ]);
    let synced = run(&j, &stuck, at(10));
    assert!(!synced.finished);
    assert_eq!(synced.concluded.terminating, 1);
    let synced = run(&j, &arcs(vec![counted(pod("a", "Succeeded"))]), at(11));
    assert!(synced.finished);
    assert_eq!(
        condition_of(&synced.status, COMPLETE),
        Some(("True", "CompletionsReached"))
    );
}

#[test]
fn exceeding_the_backoff_limit_fails_the_job() {
    let j = job(json!({"completions": 5, "parallelism": 2, "backoffLimit": 1}));
    let pods = arcs(vec![
        pod("a", "Failed"),
        pod("b", "Failed"),
        ready(pod("c", "Running")),
    ]);
    let synced = run(&j, &pods, at(10));
    let target = synced.assessment.finished.clone().unwrap();
    assert_eq!(
        (target.type_.as_str(), target.reason.as_deref()),
        (FAILURE_TARGET, Some("BackoffLimitExceeded"))
    );
    assert_eq!(
        target.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    // Active pods are deleted; their deletion makes them count as failed.
    assert_eq!(deletes(&synced.assessment.manage), ["c"]);
    assert_eq!(
        synced
            .tracked
            .status
            .uncounted_terminated_pods
            .as_ref()
            .unwrap()
            .failed
            .as_ref()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        condition_of(&synced.tracked.status, FAILURE_TARGET),
        Some(("True", "BackoffLimitExceeded"))
    );
    // The deleted pod is still terminating: not Failed yet.
    assert!(!synced.finished);
    assert_eq!(synced.status.failed, Some(3));
    assert_eq!(
        (
            synced.status.active,
            synced.status.ready,
            synced.status.terminating
        ),
        (Some(0), Some(0), Some(1))
    );

    // Next sync: the pod is gone; the FailureTarget turns into Failed.
    let j2 = with_status(j.clone(), serde_json::to_value(&synced.status).unwrap());
    let done = run(&j2, &[], at(12));
    assert!(done.finished);
    assert_eq!(
        condition_of(&done.status, FAILED),
        Some(("True", "BackoffLimitExceeded"))
    );
    assert_eq!(done.status.completion_time, None);
    let events = finished_events(&j2, &done.status, done.tracked.terminal.as_ref().unwrap());
    assert_eq!(
        events,
        [Event::warning(
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit"
        )]
    );
}

#[test]
fn restarts_count_against_the_backoff_limit_with_restart_policy_on_failure() {
    let mut j = job(json!({"backoffLimit": 2}));
    j.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .restart_policy = Some("OnFailure".into());
    for (restarts, fails) in [(1, false), (2, true)] {
        let mut p = pod("a", "Running");
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "c".into(),
            restart_count: restarts,
            ..Default::default()
        }]);
        let synced = run(&j, &arcs(vec![p]), at(10));
        assert_eq!(synced.assessment.finished.is_some(), fails, "{restarts}");
    }
}

#[test]
fn the_active_deadline_fails_the_job_or_schedules_a_look() {
    let started = json!({"startTime": "2027-01-15T08:00:00Z"});
    let start = "2027-01-15T08:00:00Z".parse::<Timestamp>().unwrap();
    let later = |s: i64| Timestamp::from_second(start.as_second() + s).unwrap();
    // (deadline, seconds since start, suspended) → fails, requeue
    let cases = [
        (60, 100, false, true, None),
        (60, 60, false, true, None),
        (300, 100, false, false, Some(200)),
        (60, 100, true, false, None),
    ];
    for (deadline, elapsed, suspend, fails, requeue) in cases {
        let j = with_status(
            job(json!({"activeDeadlineSeconds": deadline, "suspend": suspend})),
            started.clone(),
        );
        let synced = run(&j, &arcs(vec![pod("a", "Running")]), later(elapsed));
        let reason = synced
            .assessment
            .finished
            .as_ref()
            .and_then(|f| f.reason.clone());
        assert_eq!(
            reason.as_deref() == Some("DeadlineExceeded"),
            fails,
            "{deadline} {elapsed}"
        );
        assert_eq!(
            synced.assessment.requeue_after,
            requeue.map(Duration::from_secs),
            "{deadline} {elapsed}"
        );
        if fails {
            assert_eq!(
                synced.assessment.finished.unwrap().message.as_deref(),
                Some("Job was active longer than specified deadline")
            );
            assert_eq!(deletes(&synced.assessment.manage), ["a"]);
        }
    }
}

#[test]
fn suspending_deletes_active_pods_and_resuming_restarts_the_clock() {
    let j = with_status(
        job(json!({"parallelism": 2, "completions": 4, "suspend": true})),
        json!({}),
    );
    let synced = run(
        &j,
        &arcs(vec![pod("a", "Running"), ready(pod("b", "Running"))]),
        at(10),
    );
    assert_eq!(deletes(&synced.assessment.manage), ["a", "b"]);
    assert!(matches!(synced.assessment.manage, Manage::Suspend { .. }));
    assert_eq!(
        condition_of(&synced.status, SUSPENDED),
        Some(("True", "JobSuspended"))
    );
    assert_eq!(
        synced.concluded.events,
        [Event::normal("Suspended", "Job suspended")]
    );
    assert_eq!(synced.status.start_time, None);
    // Suspended pods are not failures: their deletion removes no count.
    assert_eq!(synced.status.failed, None);

    let resumed = with_status(
        job(json!({"parallelism": 2, "completions": 4})),
        serde_json::to_value(&synced.status).unwrap(),
    );
    let synced = run(&resumed, &[], at(20));
    assert_eq!(creates(&synced.assessment.manage), Some(2));
    assert_eq!(
        condition_of(&synced.status, SUSPENDED),
        Some(("False", "JobResumed"))
    );
    assert_eq!(
        synced.concluded.events,
        [Event::normal("Resumed", "Job resumed")]
    );
    assert_eq!(synced.status.start_time, Some(Time(at(20))));
}

#[test]
fn replacements_wait_for_the_failure_backoff() {
    let j = job(json!({"completions": 1, "backoffLimit": 6}));
    let mut failed = pod("a", "Failed");
    failed.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "Ready".into(),
        status: "False".into(),
        last_transition_time: Some(Time(at(100))),
        ..Default::default()
    }]);
    let pods = arcs(vec![failed]);
    // (earlier failures, now) → wait
    let cases = [
        (0, 104, Some(6)),
        (0, 111, None),
        (2, 130, Some(10)),
        (2, 140, None),
    ];
    for (earlier, now, wait) in cases {
        let record = BackoffRecord {
            failures_after_last_success: earlier,
            last_failure: Some(at(50)),
        };
        let synced = run_with(&j, &pods, at(now), record);
        assert_eq!(
            synced.assessment.backoff.failures_after_last_success,
            earlier + 1
        );
        match wait {
            Some(w) => {
                assert!(
                    matches!(synced.assessment.manage, Manage::Backoff(d) if d == Duration::from_secs(w)),
                    "{earlier} {now}: {:?}",
                    synced.assessment.manage
                );
                assert_eq!(
                    synced.assessment.requeue_after,
                    Some(Duration::from_secs(w))
                );
            }
            None => assert_eq!(
                creates(&synced.assessment.manage),
                Some(1),
                "{earlier} {now}"
            ),
        }
    }
}

#[test]
fn indexed_jobs_fill_the_lowest_pending_indexes() {
    let j = with_status(
        job(json!({"completionMode": "Indexed", "completions": 5, "parallelism": 3})),
        json!({"completedIndexes": "0", "succeeded": 1}),
    );
    let pods = arcs(vec![
        counted(indexed_pod("p0", 0, "Succeeded")),
        indexed_pod("p2", 2, "Succeeded"),
        indexed_pod("p3", 3, "Running"),
    ]);
    let synced = run(&j, &pods, at(10));
    match &synced.assessment.manage {
        Manage::Create { indexes } => assert_eq!(indexes, &[Some(1), Some(4)]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        synced.tracked.status.completed_indexes.as_deref(),
        Some("0,2")
    );
    assert_eq!(synced.status.succeeded, Some(2));
    // Indexed successes are tracked by index, not by UID.
    assert_eq!(
        normalize(Some(&synced.status)).uncounted_terminated_pods,
        Some(Default::default())
    );

    let done = with_status(
        job(json!({"completionMode": "Indexed", "completions": 5, "parallelism": 3})),
        json!({"completedIndexes": "0-2,4", "succeeded": 4}),
    );
    let synced = run(
        &done,
        &arcs(vec![indexed_pod("p3", 3, "Succeeded")]),
        at(11),
    );
    assert_eq!(synced.status.completed_indexes.as_deref(), Some("0-4"));
    assert!(synced.finished);
    assert_eq!(
        condition_of(&synced.status, COMPLETE),
        Some(("True", "CompletionsReached"))
    );
}

#[test]
fn indexed_jobs_delete_duplicate_and_invalid_indexes() {
    let j = job(json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3}));
    let pods = arcs(vec![
        indexed_pod("one-a", 1, "Pending"),
        ready(indexed_pod("one-b", 1, "Running")),
        indexed_pod("five", 5, "Running"),
        pod("none", "Running"),
        indexed_pod("zero", 0, "Running"),
    ]);
    let synced = run(&j, &pods, at(10));
    let mut deleted = deletes(&synced.assessment.manage);
    deleted.sort();
    assert_eq!(deleted, ["five", "none", "one-a"]);
}

#[test]
fn pending_expectations_hold_pod_changes_but_not_counting() {
    let j = job(json!({"completions": 2, "parallelism": 2}));
    let pods = arcs(vec![pod("a", "Succeeded")]);
    let removing = HashSet::new();
    let input = SyncInput {
        job: &j,
        pods: &pods,
        expectations_satisfied: false,
        removing_finalizers: &removing,
        backoff: BackoffRecord::default(),
        now: at(10),
    };
    let a = assess(&input);
    assert!(matches!(a.manage, Manage::Hold));
    let c = conclude(&input, &a, Executed::default());
    let t = track(&input, &a, &c);
    assert_eq!(t.remove_finalizers.len(), 1);
    assert_eq!(c.status.active, Some(0));
}

#[test]
fn pods_whose_finalizer_removal_is_in_flight_are_not_counted_again() {
    let j = with_status(job(json!({"completions": 2})), json!({"succeeded": 1}));
    // The informer still shows the finalizer we just removed.
    let pods = arcs(vec![pod("a", "Succeeded")]);
    let removing: HashSet<String> = ["uid-a".to_string()].into();
    let input = SyncInput {
        job: &j,
        pods: &pods,
        expectations_satisfied: true,
        removing_finalizers: &removing,
        backoff: BackoffRecord::default(),
        now: at(10),
    };
    let a = assess(&input);
    assert_eq!(a.succeeded, 1);
    let c = conclude(
        &input,
        &a,
        Executed {
            created: 1,
            ..Default::default()
        },
    );
    let t = track(&input, &a, &c);
    assert!(t.remove_finalizers.is_empty());
    assert_eq!(t.status.succeeded, Some(1));
}

#[test]
fn jobs_managed_elsewhere_are_recognised() {
    assert!(!managed_elsewhere(&job(json!({}))));
    assert!(!managed_elsewhere(&job(json!({"managedBy": MANAGED_BY}))));
    assert!(managed_elsewhere(&job(
        json!({"managedBy": "example.com/queue"})
    )));
}
