//! The Job controller against an in-process API server. There is no
//! kubelet: the tests play it by setting pod phases through `pods/status`.
//! Pods are never scheduled, so a deleted pod goes as soon as its
//! finalizers are gone.

mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
const WAIT: Duration = Duration::from_secs(15);

async fn create_job(client: &kube::Client, name: &str, spec: Value) -> Job {
    let mut spec = spec;
    spec["template"] = json!({"spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "work", "image": "busybox"}],
    }});
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap();
    Api::<Job>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &job)
        .await
        .unwrap()
}

async fn job_pods(client: &kube::Client, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let selector = format!("batch.kubernetes.io/job-name={job}");
    let mut list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items;
    list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    list
}

/// Wait until the job has `count` unfinished pods not being deleted.
async fn wait_for_pods(client: &kube::Client, job: &str, count: usize) -> Vec<Pod> {
    common::eventually(WAIT, &format!("{count} pods of {job}"), || async {
        let pods: Vec<Pod> = job_pods(client, job)
            .await
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| matches!(phase(p), "" | "Pending" | "Running"))
            .collect();
        (pods.len() == count).then_some(pods)
    })
    .await
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap()
}

/// Play the kubelet: report `phase` for the pod, with a Ready condition
/// matching it, and for finished pods a terminated container.
async fn set_phase(client: &kube::Client, pod: &str, phase: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let running = phase == "Running";
    let mut status = json!({
        "phase": phase,
        "conditions": [{"type": "Ready", "status": if running {"True"} else {"False"}, "lastTransitionTime": now}],
    });
    if !running {
        let exit = if phase == "Succeeded" { 0 } else { 1 };
        status["containerStatuses"] = json!([{
            "name": "work", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit, "finishedAt": now, "startedAt": now}},
        }]);
    }
    Api::<Pod>::namespaced(client.clone(), "default")
        .patch_status(
            pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
}

async fn get_job(client: &kube::Client, name: &str) -> Option<Job> {
    Api::<Job>::namespaced(client.clone(), "default")
        .get_opt(name)
        .await
        .unwrap()
}

/// The job, once `condition` is True on it.
async fn wait_for_condition(client: &kube::Client, job: &str, condition: &str) -> Job {
    common::eventually(WAIT, &format!("{job} {condition}"), || async {
        get_job(client, job)
            .await
            .filter(|j| has_condition(j, condition))
    })
    .await
}

fn has_condition(job: &Job, type_: &str) -> bool {
    condition(job, type_).is_some_and(|c| c.0 == "True")
}

/// (status, reason, message) of the condition.
fn condition(job: &Job, type_: &str) -> Option<(String, String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// (reason, message) of every event about the job.
async fn events(client: &kube::Client, job: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(job))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

async fn wait_for_event(client: &kube::Client, job: &str, reason: &str) -> String {
    common::eventually(WAIT, &format!("a {reason} event for {job}"), || async {
        events(client, job)
            .await
            .into_iter()
            .find(|(r, _)| r == reason)
            .map(|(_, m)| m)
    })
    .await
}

#[tokio::test]
async fn a_job_runs_three_completions_two_at_a_time() {
    let cluster = common::start(&["job"]).await;
    let client = &cluster.client;
    let job = create_job(client, "pi", json!({"completions": 3, "parallelism": 2})).await;
    let uid = job.metadata.uid.clone().unwrap();

    let pods = wait_for_pods(client, "pi", 2).await;
    for pod in &pods {
        assert!(name(pod).starts_with("pi-"), "{}", name(pod));
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        assert_eq!(labels["controller-uid"], uid);
        assert_eq!(labels["job-name"], "pi");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Job", uid.as_str(), Some(true))
        );
        assert_eq!(
            pod.metadata.finalizers,
            Some(vec![TRACKING_FINALIZER.to_string()])
        );
    }
    for pod in &pods {
        set_phase(client, &name(pod), "Running").await;
    }
    let running = common::eventually(WAIT, "two ready pods in the status", || async {
        get_job(client, "pi").await.filter(|j| {
            let s = j.status.clone().unwrap_or_default();
            s.active == Some(2) && s.ready == Some(2)
        })
    })
    .await;
    assert!(running.status.unwrap().start_time.is_some());

    // One succeeds: a third pod starts for the last completion.
    set_phase(client, &name(&pods[0]), "Succeeded").await;
    let third = common::eventually(WAIT, "a third pod", || async {
        job_pods(client, "pi")
            .await
            .into_iter()
            .find(|p| !pods.iter().any(|q| name(q) == name(p)))
    })
    .await;
    set_phase(client, &name(&pods[1]), "Succeeded").await;
    set_phase(client, &name(&third), "Succeeded").await;

    let done = wait_for_condition(client, "pi", "Complete").await;
    let status = done.status.clone().unwrap();
    assert_eq!(
        (status.succeeded, status.failed, status.active),
        (Some(3), None, Some(0))
    );
    assert!(status.completion_time.is_some());
    assert_eq!(
        condition(&done, "SuccessCriteriaMet").map(|c| (c.0, c.1)),
        Some(("True".into(), "CompletionsReached".into()))
    );
    // Counted pods lose their tracking finalizer.
    for pod in job_pods(client, "pi").await {
        assert_eq!(
            pod.metadata.finalizers.clone().unwrap_or_default(),
            Vec::<String>::new(),
            "{}",
            name(&pod)
        );
    }
    assert_eq!(
        wait_for_event(client, "pi", "Completed").await,
        "Job completed"
    );
    let created: Vec<_> = events(client, "pi")
        .await
        .into_iter()
        .filter(|(r, _)| r == "SuccessfulCreate")
        .map(|(_, m)| m)
        .collect();
    assert_eq!(created.len(), 3, "{created:?}");
    assert!(
        created.contains(&format!("Created pod: {}", name(&third))),
        "{created:?}"
    );
}

#[tokio::test]
async fn a_failing_job_is_retried_after_a_backoff_then_stops_at_its_limit() {
    let cluster = common::start(&["job"]).await;
    let client = &cluster.client;
    create_job(client, "flaky", json!({"backoffLimit": 1})).await;

    let first = wait_for_pods(client, "flaky", 1).await.remove(0);
    set_phase(client, &name(&first), "Failed").await;
    let failed_at = Instant::now();
    // The replacement waits for the 10 s failure backoff.
    let second = common::eventually(Duration::from_secs(20), "a replacement pod", || async {
        job_pods(client, "flaky")
            .await
            .into_iter()
            .find(|p| name(p) != name(&first))
    })
    .await;
    let waited = failed_at.elapsed();
    assert!(
        waited >= Duration::from_secs(8),
        "replaced after {waited:?}"
    );
    let status = get_job(client, "flaky").await.unwrap().status.unwrap();
    assert_eq!(status.failed, Some(1));

    set_phase(client, &name(&second), "Failed").await;
    let failed = wait_for_condition(client, "flaky", "Failed").await;
    let reason = (
        "True".to_string(),
        "BackoffLimitExceeded".to_string(),
        "Job has reached the specified backoff limit".to_string(),
    );
    assert_eq!(condition(&failed, "Failed"), Some(reason.clone()));
    assert_eq!(condition(&failed, "FailureTarget"), Some(reason));
    let status = failed.status.unwrap();
    assert_eq!(
        (status.failed, status.active, status.completion_time),
        (Some(2), Some(0), None)
    );
    assert_eq!(
        wait_for_event(client, "flaky", "BackoffLimitExceeded").await,
        "Job has reached the specified backoff limit"
    );
    // No third attempt.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(job_pods(client, "flaky").await.len(), 2);
}

#[tokio::test]
async fn an_indexed_job_completes_every_index() {
    let cluster = common::start(&["job"]).await;
    let client = &cluster.client;
    create_job(
        client,
        "idx",
        json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
    )
    .await;
    let pods = wait_for_pods(client, "idx", 3).await;
    let mut by_index = Vec::new();
    for pod in &pods {
        let index = pod.metadata.annotations.as_ref().unwrap()
            ["batch.kubernetes.io/job-completion-index"]
            .clone();
        assert_eq!(
            pod.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"],
            index
        );
        assert!(
            name(pod).starts_with(&format!("idx-{index}-")),
            "{}",
            name(pod)
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.hostname.as_deref(),
            Some(format!("idx-{index}").as_str())
        );
        let env = spec.containers[0].env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
        by_index.push((index, name(pod)));
    }
    by_index.sort();
    let indexes: Vec<_> = by_index.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(indexes, ["0", "1", "2"]);

    set_phase(client, &by_index[0].1, "Succeeded").await;
    set_phase(client, &by_index[2].1, "Succeeded").await;
    common::eventually(WAIT, "indexes 0 and 2 completed", || async {
        get_job(client, "idx")
            .await
            .and_then(|j| j.status)
            .filter(|s| s.completed_indexes.as_deref() == Some("0,2") && s.succeeded == Some(2))
    })
    .await;
    set_phase(client, &by_index[1].1, "Succeeded").await;
    let done = wait_for_condition(client, "idx", "Complete").await;
    let status = done.status.unwrap();
    assert_eq!(
        (status.completed_indexes.as_deref(), status.succeeded),
        (Some("0-2"), Some(3))
    );
}

#[tokio::test]
async fn the_active_deadline_fails_the_job_and_deletes_its_pods() {
    let cluster = common::start(&["job"]).await;
    let client = &cluster.client;
    create_job(
        client,
        "slow",
        json!({"parallelism": 2, "completions": 2, "activeDeadlineSeconds": 2}),
    )
    .await;
    for pod in wait_for_pods(client, "slow", 2).await {
        set_phase(client, &name(&pod), "Running").await;
    }
    let failed = wait_for_condition(client, "slow", "Failed").await;
    assert_eq!(
        condition(&failed, "Failed").map(|c| (c.1, c.2)),
        Some((
            "DeadlineExceeded".into(),
            "Job was active longer than specified deadline".into()
        ))
    );
    let status = failed.status.unwrap();
    assert_eq!(
        (status.failed, status.active, status.terminating),
        (Some(2), Some(0), Some(0))
    );
    common::eventually(WAIT, "the pods deleted", || async {
        job_pods(client, "slow").await.is_empty().then_some(())
    })
    .await;
    wait_for_event(client, "slow", "DeadlineExceeded").await;
    let deleted = wait_for_event(client, "slow", "SuccessfulDelete").await;
    assert!(deleted.starts_with("Deleted pod: slow-"), "{deleted}");
}

#[tokio::test]
async fn a_suspended_job_starts_when_resumed() {
    let cluster = common::start(&["job"]).await;
    let client = &cluster.client;
    create_job(client, "later", json!({"suspend": true})).await;
    let suspended = wait_for_condition(client, "later", "Suspended").await;
    assert_eq!(
        condition(&suspended, "Suspended").map(|c| (c.1, c.2)),
        Some(("JobSuspended".into(), "Job suspended".into()))
    );
    assert!(suspended.status.unwrap().start_time.is_none());
    assert!(job_pods(client, "later").await.is_empty());

    Api::<Job>::namespaced(client.clone(), "default")
        .patch(
            "later",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    wait_for_pods(client, "later", 1).await;
    let resumed = common::eventually(WAIT, "the job resumed", || async {
        get_job(client, "later")
            .await
            .filter(|j| condition(j, "Suspended").is_some_and(|c| c.0 == "False"))
    })
    .await;
    assert_eq!(
        condition(&resumed, "Suspended").map(|c| c.1),
        Some("JobResumed".into())
    );
    assert!(resumed.status.unwrap().start_time.is_some());
    wait_for_event(client, "later", "Resumed").await;
}

#[tokio::test]
async fn a_finished_job_is_deleted_after_its_ttl() {
    let cluster = common::start(&["job"]).await;
    let client = &cluster.client;
    create_job(client, "brief", json!({"ttlSecondsAfterFinished": 1})).await;
    let pod = wait_for_pods(client, "brief", 1).await.remove(0);
    set_phase(client, &name(&pod), "Succeeded").await;
    // Condition times are whole seconds, so a one-second TTL may expire
    // moments after the Job completes: wait for it to go, then check it
    // had completed.
    common::eventually(WAIT, "the job deleted", || async {
        get_job(client, "brief").await.is_none().then_some(())
    })
    .await;
    assert_eq!(
        wait_for_event(client, "brief", "Completed").await,
        "Job completed"
    );
}
