//! The CronJob controller against an in-process API server. Schedules are
//! chosen so that a run is due at once (a CronJob whose last run was long
//! ago starts its most recent missed run) or within the minute; the
//! minute-by-minute behaviour is unit-tested with a hand-driven clock.

mod common;

use std::time::Duration;

use chrono::{DurationRound, Timelike, Utc};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);
const SCHEDULED: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

async fn create_cronjob(client: &kube::Client, name: &str, spec: Value) -> CronJob {
    let mut spec = spec;
    spec["jobTemplate"] = json!({
        "metadata": {"labels": {"app": name}},
        "spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "work", "image": "busybox"}],
        }}},
    });
    let cj: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    Api::<CronJob>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &cj)
        .await
        .unwrap()
}

async fn get_cronjob(client: &kube::Client, name: &str) -> CronJob {
    Api::<CronJob>::namespaced(client.clone(), "default")
        .get(name)
        .await
        .unwrap()
}

/// Jobs whose controller is the CronJob `owner`.
async fn owned_jobs(client: &kube::Client, owner: &CronJob) -> Vec<Job> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.controller == Some(true) && Some(&r.uid) == owner.metadata.uid.as_ref())
        })
        .collect()
}

async fn events(client: &kube::Client, object: &str) -> Vec<(String, String, String)> {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(object))
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
                e.source.and_then(|s| s.component).unwrap_or_default(),
            )
        })
        .collect()
}

async fn wait_for_event(client: &kube::Client, object: &str, reason: &str) -> (String, String) {
    common::eventually(WAIT, &format!("a {reason} event for {object}"), || async {
        events(client, object)
            .await
            .into_iter()
            .find(|(r, _, _)| r == reason)
            .map(|(_, message, source)| (message, source))
    })
    .await
}

/// Say the CronJob last ran `ago` before now, as a controller that was
/// down for a while would find it.
async fn last_ran(client: &kube::Client, name: &str, ago: chrono::Duration) {
    let at = (Utc::now() - ago)
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap();
    let status = json!({"status": {"lastScheduleTime": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}});
    Api::<CronJob>::namespaced(client.clone(), "default")
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

/// A schedule that last fired about half an hour ago (and not again for
/// another half hour).
fn half_an_hour_off() -> String {
    format!("{} * * * *", (Utc::now().minute() + 30) % 60)
}

fn scheduled_minutes(job: &Job) -> i64 {
    let stamp = &job.metadata.annotations.as_ref().unwrap()[SCHEDULED];
    chrono::DateTime::parse_from_rfc3339(stamp)
        .unwrap()
        .timestamp()
        / 60
}

#[tokio::test]
async fn a_missed_run_starts_at_once_and_is_followed_to_completion() {
    let cluster = common::start(&["cronjob", "job"]).await;
    let client = &cluster.client;
    let cj = create_cronjob(
        client,
        "report",
        json!({"schedule": half_an_hour_off(), "timeZone": "UTC"}),
    )
    .await;
    last_ran(client, "report", chrono::Duration::hours(2)).await;

    let job = common::eventually(WAIT, "the missed run's job", || async {
        owned_jobs(client, &cj).await.pop()
    })
    .await;
    let name = job.metadata.name.clone().unwrap();
    assert_eq!(name, format!("report-{}", scheduled_minutes(&job)));
    let stamp = job.metadata.annotations.as_ref().unwrap()[SCHEDULED].clone();
    assert!(stamp.ends_with(":00Z"), "{stamp}");
    let ago = Utc::now().timestamp() - scheduled_minutes(&job) * 60;
    assert!((0..=3700).contains(&ago), "scheduled {ago} s ago");
    assert_eq!(job.metadata.labels.as_ref().unwrap()["app"], "report");
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("CronJob", "report")
    );

    let running = common::eventually(WAIT, "the job in status.active", || async {
        let cj = get_cronjob(client, "report").await;
        let status = cj.status.clone().unwrap_or_default();
        let listed = status
            .active
            .iter()
            .flatten()
            .any(|r| r.name.as_deref() == Some(name.as_str()));
        listed.then_some(status)
    })
    .await;
    let last = running.last_schedule_time.unwrap().0;
    assert_eq!(last.as_second() / 60, scheduled_minutes(&job));
    let (created, source) = wait_for_event(client, "report", "SuccessfulCreate").await;
    assert_eq!(created, format!("Created job {name}"));
    assert_eq!(source, "cronjob-controller");

    // Play the kubelet: the job's pod succeeds; the job completes.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = common::eventually(WAIT, "the job's pod", || async {
        let selector = format!("batch.kubernetes.io/job-name={name}");
        pods.list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .pop()
    })
    .await;
    pods.patch_status(
        pod.metadata.name.as_deref().unwrap(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();

    common::eventually(WAIT, "the run recorded as successful", || async {
        let status = get_cronjob(client, "report")
            .await
            .status
            .unwrap_or_default();
        (status.last_successful_time.is_some() && status.active.unwrap_or_default().is_empty())
            .then_some(())
    })
    .await;
    let (saw, _) = wait_for_event(client, "report", "SawCompletedJob").await;
    assert_eq!(saw, format!("Saw completed job: {name}, status: Complete"));
    // Within the history limit (3) the finished job stays; one run only,
    // the next is half an hour away.
    assert_eq!(owned_jobs(client, &cj).await.len(), 1);
    assert_eq!(
        events(client, "report")
            .await
            .iter()
            .filter(|(r, _, _)| r == "SuccessfulCreate")
            .count(),
        1
    );
}

async fn create_job(client: &kube::Client, name: &str, owner: Option<&CronJob>) -> Job {
    let mut meta = json!({"name": name, "labels": {"app": "nightly"}});
    if let Some(cj) = owner {
        // What `kubectl create job --from=cronjob/nightly` sends.
        meta["annotations"] = json!({"cronjob.kubernetes.io/instantiate": "manual"});
        meta["ownerReferences"] = json!([{
            "apiVersion": "batch/v1", "kind": "CronJob", "controller": true,
            "name": cj.metadata.name, "uid": cj.metadata.uid,
        }]);
    }
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox"}]}}},
    }))
    .unwrap();
    Api::<Job>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &job)
        .await
        .unwrap()
}

/// Play the Job controller: mark the job complete.
async fn complete(client: &kube::Client, name: &str) {
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = json!({"status": {
        "succeeded": 1, "startTime": now, "completionTime": now,
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}],
    }});
    Api::<Job>::namespaced(client.clone(), "default")
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

#[tokio::test]
async fn jobs_started_by_hand_are_reported_but_not_taken_over() {
    let cluster = common::start(&["cronjob"]).await;
    let client = &cluster.client;
    let cj = create_cronjob(
        client,
        "nightly",
        json!({"schedule": "0 3 * * *", "successfulJobsHistoryLimit": 0}),
    )
    .await;
    create_job(client, "nightly-manual", Some(&cj)).await;
    create_job(client, "bystander", None).await;

    let (message, _) = wait_for_event(client, "nightly", "UnexpectedJob").await;
    assert_eq!(
        message,
        "Saw a job that the controller did not create or forgot: nightly-manual"
    );
    let status = get_cronjob(client, "nightly")
        .await
        .status
        .unwrap_or_default();
    assert!(status.active.unwrap_or_default().is_empty());

    // A job without the CronJob as controller is none of its business,
    // even finished and matching its labels.
    complete(client, "bystander").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    assert!(jobs.get_opt("bystander").await.unwrap().is_some());
    assert!(jobs.get_opt("nightly-manual").await.unwrap().is_some());
    assert!(!events(client, "nightly")
        .await
        .iter()
        .any(|(r, _, _)| r == "SuccessfulDelete"));

    // The manual run is the CronJob's, so once finished it counts against
    // the history limit, as upstream's.
    complete(client, "nightly-manual").await;
    common::eventually(WAIT, "the finished manual run cleaned up", || async {
        jobs.get_opt("nightly-manual")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let (deleted, _) = wait_for_event(client, "nightly", "SuccessfulDelete").await;
    assert_eq!(deleted, "Deleted job nightly-manual");
    common::eventually(WAIT, "the manual run's success recorded", || async {
        let status = get_cronjob(client, "nightly")
            .await
            .status
            .unwrap_or_default();
        status.last_successful_time
    })
    .await;
    assert!(jobs.get_opt("bystander").await.unwrap().is_some());
}

/// The real clock: a CronJob due at the next minute of India Standard
/// Time (UTC+05:30) starts its Job right then, not before and not a poll
/// interval later. Takes up to a minute.
#[tokio::test]
async fn a_cronjob_starts_its_job_on_the_minute_in_its_time_zone() {
    let cluster = common::start(&["cronjob"]).await;
    let client = &cluster.client;
    let kolkata: chrono_tz::Tz = "Asia/Kolkata".parse().unwrap();
    // The next minute at least a second ahead (creation times are whole
    // seconds), so the CronJob exists before its time: at most 61 s away.
    let due = (Utc::now() + chrono::Duration::seconds(61))
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap();
    let local = due.with_timezone(&kolkata);
    let schedule = format!("{} {} * * *", local.minute(), local.hour());
    let cj = create_cronjob(
        client,
        "standup",
        json!({"schedule": schedule, "timeZone": "Asia/Kolkata"}),
    )
    .await;

    let job = common::eventually(Duration::from_secs(75), "the job on the minute", || async {
        owned_jobs(client, &cj).await.pop()
    })
    .await;
    let created = job
        .metadata
        .creation_timestamp
        .clone()
        .unwrap()
        .0
        .as_second();
    assert!(
        created >= due.timestamp(),
        "created {} s early",
        due.timestamp() - created
    );
    assert!(
        created <= due.timestamp() + 5,
        "created {} s late",
        created - due.timestamp()
    );
    assert_eq!(
        job.metadata.name.clone().unwrap(),
        format!("standup-{}", due.timestamp() / 60)
    );
    let stamp = job.metadata.annotations.unwrap()[SCHEDULED].clone();
    assert_eq!(
        stamp,
        local.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert!(stamp.ends_with("+05:30"), "{stamp}");
}
