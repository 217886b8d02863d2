//! The TTL-after-finished controller (upstream's separate
//! `ttl-after-finished-controller`, pkg/controller/ttlafterfinished), run
//! by the Job controller here: a finished Job with
//! `spec.ttlSecondsAfterFinished` is deleted that many seconds after its
//! `Complete` or `Failed` condition became True.
//!
//! Before deleting, the Job is read again from the API server, so a TTL
//! changed meanwhile is honoured, and the deletion is guarded by the Job's
//! UID. The deletion propagates in the background: the Job goes at once
//! and the garbage collector removes its pods (upstream asks for
//! foreground propagation, which keeps the Job until its pods are gone).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};

use super::sync::{is_finished, COMPLETE, FAILED};
use crate::context::Context;
use crate::framework::{run_workers, Change, ObjectKey, Outcome, WorkQueue};

/// When the Job should be deleted: `Ok(None)` if it needs no cleanup (no
/// TTL, not finished, already being deleted), an error if it finished
/// without saying when.
pub fn expires_at(job: &Job) -> Result<Option<Timestamp>, String> {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    let Some(ttl) = ttl else {
        return Ok(None);
    };
    if job.metadata.deletion_timestamp.is_some() || !is_finished(job) {
        return Ok(None);
    }
    let name = format!(
        "{}/{}",
        job.metadata.namespace.as_deref().unwrap_or(""),
        job.metadata.name.as_deref().unwrap_or("")
    );
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| (c.type_ == COMPLETE || c.type_ == FAILED) && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .ok_or_else(|| format!("unable to find the time when the Job {name} finished"))?;
    Timestamp::from_second(finished.0.as_second() + i64::from(ttl))
        .map(Some)
        .map_err(|e| e.to_string())
}

/// How long until `at`, zero if it has passed.
fn until(at: Timestamp, now: Timestamp) -> Duration {
    let ms = at.as_millisecond() - now.as_millisecond();
    Duration::from_millis(ms.max(0) as u64)
}

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let jobs = ctx.informers.get::<Job>();
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    let mut changes = jobs.subscribe();
    let feed = queue.clone();
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            if let Change::Added(job) | Change::Updated { new: job, .. } = change {
                if matches!(expires_at(&job), Ok(Some(_)) | Err(_)) {
                    feed.add(ObjectKey::of(job.as_ref()));
                }
            }
        }
    });
    jobs.wait_synced().await;
    let workers = ctx.settings.concurrent_syncs;
    run_workers(
        "ttl-after-finished",
        queue,
        workers,
        move |key: ObjectKey| {
            let ctx = ctx.clone();
            let jobs = jobs.clone();
            async move {
                let Some(job) = jobs.get(&key) else {
                    return Ok(Outcome::Done);
                };
                let now = Timestamp::now();
                let Some(at) = expires_at(&job).map_err(anyhow::Error::msg)? else {
                    return Ok(Outcome::Done);
                };
                if at > now {
                    return Ok(Outcome::RequeueAfter(until(at, now)));
                }
                // The cached TTL may be stale: decide on the Job as it is now.
                let api: Api<Job> = Api::namespaced(ctx.client.clone(), &key.namespace);
                let Some(fresh) = api.get_opt(&key.name).await? else {
                    return Ok(Outcome::Done);
                };
                let Some(at) = expires_at(&fresh).map_err(anyhow::Error::msg)? else {
                    return Ok(Outcome::Done);
                };
                if at > now {
                    return Ok(Outcome::RequeueAfter(until(at, now)));
                }
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    preconditions: Some(Preconditions {
                        uid: fresh.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                tracing::debug!(job = %key, "cleaning up finished Job");
                match api.delete(&key.name, &params).await {
                    Ok(_) => Ok(Outcome::Done),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(Outcome::Done),
                    Err(e) => Err(e.into()),
                }
            }
        },
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, conditions: serde_json::Value) -> Job {
        let mut spec = json!({"template": {}});
        if let Some(ttl) = ttl {
            spec["ttlSecondsAfterFinished"] = json!(ttl);
        }
        serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "ns"},
            "spec": spec,
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn finished_jobs_expire_ttl_seconds_after_finishing() {
        let complete = json!([
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2027-01-01T00:00:00Z"},
            {"type": "Complete", "status": "True", "lastTransitionTime": "2027-01-01T00:00:05Z"},
        ]);
        let failed = json!([{"type": "Failed", "status": "True", "lastTransitionTime": "2027-01-01T00:00:00Z"}]);
        let running = json!([{"type": "Suspended", "status": "False", "lastTransitionTime": "2027-01-01T00:00:00Z"}]);
        let at = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        let cases = [
            (
                job(Some(100), complete.clone()),
                Ok(at("2027-01-01T00:01:45Z")),
            ),
            (job(Some(0), failed.clone()), Ok(at("2027-01-01T00:00:00Z"))),
            (job(None, complete.clone()), Ok(None)),
            (job(Some(10), running), Ok(None)),
            (
                job(Some(10), json!([{"type": "Complete", "status": "True"}])),
                Err("unable to find the time when the Job ns/pi finished".to_string()),
            ),
        ];
        for (job, want) in cases {
            assert_eq!(expires_at(&job), want);
        }
        let mut deleting = job(Some(1), failed);
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        );
        assert_eq!(expires_at(&deleting), Ok(None));
        let now: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            until(at("2027-01-01T00:00:03Z").unwrap(), now),
            Duration::from_secs(3)
        );
        assert_eq!(
            until(now, at("2027-01-01T00:00:03Z").unwrap()),
            Duration::ZERO
        );
    }
}
