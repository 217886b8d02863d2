//! Table-driven tests of the CronJob decision, driving `now` by hand and
//! applying each launch as the executor would.

use super::*;
use serde_json::json;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cronjob(schedule: &str, created: &str, spec: serde_json::Value) -> CronJob {
    let mut full = json!({
        "schedule": schedule,
        "concurrencyPolicy": "Allow",
        "suspend": false,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 1,
        "jobTemplate": {
            "metadata": {"labels": {"app": "report"}, "annotations": {"team": "a"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
        },
    });
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    serde_json::from_value(json!({
        "metadata": {"name": "report", "namespace": "default", "uid": "cj-uid", "creationTimestamp": created},
        "spec": full,
    }))
    .unwrap()
}

fn with_status(mut cj: CronJob, status: serde_json::Value) -> CronJob {
    cj.status = Some(serde_json::from_value(status).unwrap());
    cj
}

/// A Job the CronJob started, finished as `how` ("" for running).
fn child(name: &str, how: &str, started: &str) -> Arc<Job> {
    let mut status = json!({"startTime": started});
    if !how.is_empty() {
        status["conditions"] = json!([{"type": how, "status": "True"}]);
        if how == "Complete" {
            status["completionTime"] = json!(started);
        }
    }
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "status": status,
        }))
        .unwrap(),
    )
}

fn active_ref(name: &str) -> serde_json::Value {
    json!({"kind": "Job", "apiVersion": "batch/v1", "name": name, "namespace": "default", "uid": format!("uid-{name}")})
}

/// Sync at `now`; a launched Job is created (running) and recorded in the
/// status as the executor does.
fn step(cj: &mut CronJob, jobs: &mut Vec<Arc<Job>>, now: &str) -> Decision {
    let decision = decide(cj, jobs, &HashSet::new(), ts(now));
    let mut status = decision.status.clone();
    if let Some(launch) = &decision.launch {
        for r in &launch.replace {
            let uid = r.uid.clone().unwrap();
            jobs.retain(|j| uid_of(j) != uid);
            forget_active(&mut status, &uid);
        }
        let mut job = launch.job.clone();
        let name = job.metadata.name.clone().unwrap();
        job.metadata.uid = Some(format!("uid-{name}"));
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(job_reference(&job));
        status.last_schedule_time = Some(Time(launch.scheduled));
        jobs.push(Arc::new(job));
    }
    cj.status = Some(status);
    decision
}

fn launched(d: &Decision) -> Option<String> {
    d.launch
        .as_ref()
        .map(|l| l.job.metadata.name.clone().unwrap())
}

fn reasons(d: &Decision) -> Vec<&str> {
    d.events.iter().map(|e| e.reason.as_str()).collect()
}

fn minutes(t: &str) -> i64 {
    ts(t).as_second() / 60
}

#[test]
fn an_every_minute_schedule_starts_one_job_per_minute() {
    let mut cj = cronjob("* * * * *", "2026-05-04T10:00:30Z", json!({}));
    let mut jobs = Vec::new();
    // (now, job started, next look in ms)
    let steps = [
        ("2026-05-04T10:00:31Z", None, 29_100),
        ("2026-05-04T10:00:59.5Z", None, 600),
        (
            "2026-05-04T10:01:00.1Z",
            Some("2026-05-04T10:01:00Z"),
            60_000,
        ),
        ("2026-05-04T10:01:30Z", None, 30_100),
        (
            "2026-05-04T10:02:00.1Z",
            Some("2026-05-04T10:02:00Z"),
            60_000,
        ),
    ];
    for (now, started, next_ms) in steps {
        let d = step(&mut cj, &mut jobs, now);
        let want = started.map(|t| format!("report-{}", minutes(t)));
        assert_eq!(launched(&d), want, "{now}");
        let requeue = d
            .launch
            .as_ref()
            .map_or(d.requeue_after, |l| Some(l.requeue_after));
        assert_eq!(requeue, Some(Duration::from_millis(next_ms)), "{now}");
    }
    // Allow: both runs are active.
    let status = cj.status.clone().unwrap();
    assert_eq!(status.active.unwrap().len(), 2);
    assert_eq!(
        status.last_schedule_time,
        Some(Time(ts("2026-05-04T10:02:00Z")))
    );
}

#[test]
fn started_jobs_carry_the_template_the_schedule_time_and_the_owner() {
    let cj = cronjob(
        "0 9 * * *",
        "2026-05-01T00:00:00Z",
        json!({"timeZone": "Asia/Tokyo"}),
    );
    let d = decide(&cj, &[], &HashSet::new(), ts("2026-05-04T00:00:10Z"));
    let job = d.launch.unwrap().job;
    assert_eq!(
        job.metadata.name,
        Some(format!("report-{}", minutes("2026-05-04T00:00:00Z")))
    );
    let annotations = job.metadata.annotations.unwrap();
    assert_eq!(
        annotations[SCHEDULED_TIMESTAMP],
        "2026-05-04T09:00:00+09:00"
    );
    assert_eq!(annotations["team"], "a");
    assert_eq!(job.metadata.labels.unwrap()["app"], "report");
    let owner = &job.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("CronJob", "cj-uid", Some(true))
    );
    assert!(job.spec.unwrap().template.spec.is_some());
    // Without a time zone the annotation is in UTC.
    let utc = cronjob(
        "0 9 * * *",
        "2026-05-01T00:00:00Z",
        json!({"timeZone": "UTC"}),
    );
    let d = decide(&utc, &[], &HashSet::new(), ts("2026-05-04T09:00:01Z"));
    assert_eq!(
        d.launch.unwrap().job.metadata.annotations.unwrap()[SCHEDULED_TIMESTAMP],
        "2026-05-04T09:00:00Z"
    );
}

#[test]
fn missed_runs_start_only_the_most_recent_one_within_the_deadline() {
    let last = json!({"lastScheduleTime": "2026-05-04T10:00:00Z"});
    // (starting deadline, now) → started, events, next look (ms)
    type Case = (
        Option<i64>,
        &'static str,
        Option<&'static str>,
        Vec<&'static str>,
        u64,
    );
    let cases: Vec<Case> = vec![
        (
            None,
            "2026-05-04T10:05:30Z",
            Some("2026-05-04T10:05:00Z"),
            vec![],
            30_100,
        ),
        (
            Some(60),
            "2026-05-04T10:05:30Z",
            Some("2026-05-04T10:05:00Z"),
            vec![],
            30_100,
        ),
        // The 10:05 run is older than 20 s: skipped, next look at 10:06.
        (Some(20), "2026-05-04T10:05:30Z", None, vec![], 30_100),
        // Down for two days: more than 100 times missed.
        (
            None,
            "2026-05-06T10:05:30Z",
            Some("2026-05-06T10:05:00Z"),
            vec!["TooManyMissedTimes"],
            30_100,
        ),
        // A deadline keeps the count small.
        (
            Some(200),
            "2026-05-06T10:05:30Z",
            Some("2026-05-06T10:05:00Z"),
            vec![],
            30_100,
        ),
    ];
    for (deadline, now, started, events, next_ms) in cases {
        let spec = match deadline {
            Some(d) => json!({"startingDeadlineSeconds": d}),
            None => json!({}),
        };
        let cj = with_status(
            cronjob("* * * * *", "2026-05-01T00:00:00Z", spec),
            last.clone(),
        );
        let d = decide(&cj, &[], &HashSet::new(), ts(now));
        assert_eq!(
            launched(&d),
            started.map(|t| format!("report-{}", minutes(t))),
            "{deadline:?} {now}"
        );
        assert_eq!(reasons(&d), events, "{deadline:?} {now}");
        let requeue = d
            .launch
            .as_ref()
            .map_or(d.requeue_after, |l| Some(l.requeue_after));
        assert_eq!(
            requeue,
            Some(Duration::from_millis(next_ms)),
            "{deadline:?} {now}"
        );
    }
}

#[test]
fn concurrency_policies_decide_about_running_jobs() {
    let status =
        json!({"lastScheduleTime": "2026-05-04T10:00:00Z", "active": [active_ref("report-1")]});
    let running = vec![child("report-1", "", "2026-05-04T10:00:00Z")];
    // (policy) → started, replaced, events
    let cases = [
        ("Allow", true, 0, vec![]),
        ("Forbid", false, 0, vec!["JobAlreadyActive"]),
        ("Replace", true, 1, vec![]),
    ];
    for (policy, starts, replaced, events) in cases {
        let cj = with_status(
            cronjob(
                "* * * * *",
                "2026-05-01T00:00:00Z",
                json!({"concurrencyPolicy": policy}),
            ),
            status.clone(),
        );
        let d = decide(&cj, &running, &HashSet::new(), ts("2026-05-04T10:01:00Z"));
        assert_eq!(d.launch.is_some(), starts, "{policy}");
        assert_eq!(
            d.launch.as_ref().map_or(0, |l| l.replace.len()),
            replaced,
            "{policy}"
        );
        assert_eq!(reasons(&d), events, "{policy}");
        assert_eq!(
            d.requeue_after,
            Some(Duration::from_millis(60_100)),
            "{policy}"
        );
    }
    // Forbid starts again once the running Job finished.
    let cj = with_status(
        cronjob(
            "* * * * *",
            "2026-05-01T00:00:00Z",
            json!({"concurrencyPolicy": "Forbid"}),
        ),
        status,
    );
    let done = vec![child("report-1", "Complete", "2026-05-04T10:00:05Z")];
    let d = decide(&cj, &done, &HashSet::new(), ts("2026-05-04T10:01:00Z"));
    assert!(d.launch.is_some());
    assert_eq!(reasons(&d), ["SawCompletedJob"]);
}

#[test]
fn jobs_update_the_active_list_and_the_last_success() {
    let cj = with_status(
        cronjob("0 * * * *", "2026-05-01T00:00:00Z", json!({})),
        json!({
            "lastScheduleTime": "2026-05-04T10:00:00Z",
            "lastSuccessfulTime": "2026-05-04T08:00:30Z",
            "active": [active_ref("done"), active_ref("failed"), active_ref("running"), active_ref("gone"), active_ref("lagging")],
        }),
    );
    let jobs = vec![
        child("done", "Complete", "2026-05-04T09:00:30Z"),
        child("failed", "Failed", "2026-05-04T09:30:00Z"),
        child("running", "", "2026-05-04T10:00:00Z"),
        child("manual", "", "2026-05-04T10:10:00Z"),
        child("older", "Complete", "2026-05-04T07:00:00Z"),
    ];
    let still: HashSet<String> = ["uid-lagging".to_string()].into();
    let d = decide(&cj, &jobs, &still, ts("2026-05-04T10:20:00Z"));
    let active: Vec<_> = d
        .status
        .active
        .unwrap()
        .into_iter()
        .map(|r| r.name.unwrap())
        .collect();
    assert_eq!(active, ["running", "lagging"]);
    assert_eq!(
        d.status.last_successful_time,
        Some(Time(ts("2026-05-04T09:00:30Z")))
    );
    let messages: Vec<_> = d
        .events
        .iter()
        .map(|e| (e.reason.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        messages,
        [
            (
                "SawCompletedJob",
                "Saw completed job: done, status: Complete"
            ),
            (
                "SawCompletedJob",
                "Saw completed job: failed, status: Failed"
            ),
            (
                "UnexpectedJob",
                "Saw a job that the controller did not create or forgot: manual"
            ),
            ("MissingJob", "Active job went missing: gone"),
        ]
    );
    assert!(d.events[2].warning);
    assert!(d.launch.is_none());
}

#[test]
fn suspended_deleted_or_broken_cronjobs_start_nothing() {
    let now = ts("2026-05-04T10:01:00Z");
    let created = "2026-05-04T10:00:00Z";
    // (spec) → events, looks again
    let cases = [
        (json!({"suspend": true}), vec![], false),
        (
            json!({"timeZone": "Mars/Olympus"}),
            vec!["UnknownTimeZone"],
            false,
        ),
        (
            json!({"schedule": "61 * * * *"}),
            vec!["UnparseableSchedule"],
            false,
        ),
        (
            json!({"schedule": "59 23 31 2 *"}),
            vec!["InvalidSchedule"],
            false,
        ),
        (json!({}), vec![], true),
    ];
    for (spec, events, looks) in cases {
        let cj = cronjob("30 * * * *", created, spec.clone());
        let d = decide(&cj, &[], &HashSet::new(), now);
        assert!(d.launch.is_none(), "{spec}");
        assert_eq!(reasons(&d), events, "{spec}");
        assert_eq!(d.requeue_after.is_some(), looks, "{spec}");
    }
    let cj = cronjob("30 * * * *", created, json!({}));
    let d = decide(&cj, &[], &HashSet::new(), now);
    assert_eq!(
        d.requeue_after,
        Some(Duration::from_millis(29 * 60_000 + 100))
    );
    let unknown = decide(
        &cronjob("* * * * *", created, json!({"timeZone": "Mars/Olympus"})),
        &[],
        &HashSet::new(),
        now,
    );
    assert_eq!(
        unknown.events[0].message,
        "invalid timeZone: \"Mars/Olympus\": unknown time zone Mars/Olympus"
    );
    let mut deleting = cronjob("* * * * *", created, json!({}));
    deleting.metadata.deletion_timestamp = Some(Time(now));
    let d = decide(&deleting, &[], &HashSet::new(), now);
    assert!(d.launch.is_none() && d.requeue_after.is_none());
}

#[test]
fn runs_follow_the_time_zone_across_daylight_saving_time() {
    // 02:30 in New York; 8 March 2026 has no 02:30.
    let mut cj = cronjob(
        "30 2 * * *",
        "2026-03-06T12:00:00Z",
        json!({"timeZone": "America/New_York"}),
    );
    let mut jobs = Vec::new();
    let steps = [
        ("2026-03-07T07:30:01Z", Some("2026-03-07T07:30:00Z")),
        ("2026-03-08T06:59:59Z", None),
        ("2026-03-08T07:00:01Z", Some("2026-03-08T07:00:00Z")),
        ("2026-03-09T06:30:01Z", Some("2026-03-09T06:30:00Z")),
    ];
    for (now, started) in steps {
        let d = step(&mut cj, &mut jobs, now);
        assert_eq!(
            launched(&d),
            started.map(|t| format!("report-{}", minutes(t))),
            "{now}"
        );
    }
    let annotation =
        |j: &Arc<Job>| j.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP].clone();
    let stamps: Vec<_> = jobs.iter().map(annotation).collect();
    assert_eq!(
        stamps,
        [
            "2026-03-07T02:30:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T02:30:00-04:00"
        ]
    );
}

#[test]
fn finished_jobs_beyond_the_history_limits_go_oldest_first() {
    let jobs = vec![
        child("s1", "Complete", "2026-05-04T01:00:00Z"),
        child("s3", "Complete", "2026-05-04T03:00:00Z"),
        child("s2", "Complete", "2026-05-04T02:00:00Z"),
        child("s4", "Complete", "2026-05-04T04:00:00Z"),
        child("f1", "Failed", "2026-05-04T01:30:00Z"),
        child("f2", "Failed", "2026-05-04T02:30:00Z"),
        child("running", "", "2026-05-04T00:00:00Z"),
    ];
    // (successful limit, failed limit) → deleted
    let cases: Vec<(Option<i32>, Option<i32>, Vec<&str>)> = vec![
        (Some(3), Some(1), vec!["s1", "f1"]),
        (Some(1), Some(0), vec!["s1", "s2", "s3", "f1", "f2"]),
        (Some(10), Some(10), vec![]),
        (None, None, vec![]),
    ];
    for (successful, failed, want) in cases {
        let mut cj = cronjob("* * * * *", "2026-05-01T00:00:00Z", json!({}));
        let spec = cj.spec.as_mut().unwrap();
        spec.successful_jobs_history_limit = successful;
        spec.failed_jobs_history_limit = failed;
        let names: Vec<_> = jobs_to_clean(&cj, &jobs)
            .iter()
            .map(|j| j.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, want, "{successful:?}/{failed:?}");
    }
}

#[test]
fn the_most_recent_time_is_found_without_walking_every_missed_one() {
    let schedule = Schedule::parse("*/5 * * * *", Some("UTC")).unwrap();
    let cj = cronjob("*/5 * * * *", "2016-05-04T10:02:00Z", json!({}));
    let recent =
        most_recent_schedule_time(&cj, ts("2026-05-04T10:07:00Z"), &schedule, false).unwrap();
    assert_eq!(recent.most_recent, Some(ts("2026-05-04T10:05:00Z")));
    assert_eq!(recent.missed, Missed::Many);
    let recent =
        most_recent_schedule_time(&cj, ts("2016-05-04T10:04:00Z"), &schedule, false).unwrap();
    assert_eq!((recent.most_recent, recent.missed), (None, Missed::None));
    let recent =
        most_recent_schedule_time(&cj, ts("2016-05-04T10:06:00Z"), &schedule, false).unwrap();
    assert_eq!(
        (recent.most_recent, recent.missed),
        (Some(ts("2016-05-04T10:05:00Z")), Missed::None)
    );
    let recent =
        most_recent_schedule_time(&cj, ts("2016-05-04T10:16:00Z"), &schedule, false).unwrap();
    assert_eq!(
        (recent.most_recent, recent.missed),
        (Some(ts("2016-05-04T10:15:00Z")), Missed::Few)
    );
}
