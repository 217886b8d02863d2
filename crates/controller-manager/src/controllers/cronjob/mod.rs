//! The CronJob controller (upstream's v2 `cronjob-controller`,
//! pkg/controller/cronjob): starts a Job at each schedule time of a
//! CronJob, as [`sync::decide`] says, and requeues the CronJob exactly at
//! its next schedule time instead of polling.
//!
//! - [`schedule`]: parsing (croner, robfig's rules) and time zones;
//! - [`sync`]: the pure decision and the schedule arithmetic;
//! - this module: the executor. It acts only on Jobs whose controller
//!   reference is the CronJob: Jobs it did not start but controls (e.g.
//!   `kubectl create job --from=cronjob/x`) are reported `UnexpectedJob`
//!   and never deleted while they run; Jobs without that reference are
//!   none of its business.

pub mod schedule;
pub mod sync;

use std::collections::HashSet;
use std::sync::Arc;

use component_base::events::EventRecorder;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};

use crate::context::Context;
use crate::controllers::job::sync::Event;
use crate::framework::{run_workers, Change, Informer, ObjectKey, Outcome, WorkQueue};
use crate::pods::controller_of;
use schedule::Schedule;
use sync::{decide, finished_as, forget_active, job_reference, jobs_to_clean, next_schedule_delay};

#[derive(Clone)]
struct Controller {
    ctx: Context,
    /// Events come from `cronjob-controller`, as upstream's.
    recorder: EventRecorder,
    cronjobs: Informer<CronJob>,
    jobs: Informer<Job>,
    queue: WorkQueue<ObjectKey>,
}

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let controller = Controller {
        recorder: EventRecorder::new(ctx.client.clone(), "cronjob-controller"),
        cronjobs: ctx.informers.get::<CronJob>(),
        jobs: ctx.informers.get::<Job>(),
        ctx: ctx.clone(),
        queue: WorkQueue::new(),
    };
    controller.watch_cronjobs();
    controller.watch_jobs();
    controller.cronjobs.wait_synced().await;
    controller.jobs.wait_synced().await;
    let workers = ctx.settings.concurrent_syncs;
    let syncer = controller.clone();
    run_workers("cronjob", controller.queue.clone(), workers, move |key| {
        let c = syncer.clone();
        async move { c.sync(key).await }
    })
    .await;
    Ok(())
}

/// A CronJob's status with an empty active list left out.
fn normalize(status: Option<&CronJobStatus>) -> CronJobStatus {
    let mut status = status.cloned().unwrap_or_default();
    if status.active.as_ref().is_some_and(Vec::is_empty) {
        status.active = None;
    }
    status
}

impl Controller {
    fn watch_cronjobs(&self) {
        let mut changes = self.cronjobs.subscribe();
        let c = self.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                match change {
                    Change::Added(cj) | Change::Deleted(cj) => {
                        c.queue.add(ObjectKey::of(cj.as_ref()))
                    }
                    Change::Updated { old, new } => c.cronjob_updated(&old, &new),
                }
            }
        });
    }

    /// A new schedule is looked at when it is due; any other change now.
    fn cronjob_updated(&self, old: &CronJob, new: &CronJob) {
        let key = ObjectKey::of(new);
        let spec = |cj: &CronJob| {
            let s = cj.spec.as_ref();
            (
                s.map(|s| s.schedule.clone()),
                s.and_then(|s| s.time_zone.clone()),
            )
        };
        if spec(old) == spec(new) {
            self.queue.add(key);
            return;
        }
        let (schedule, time_zone) = spec(new);
        let schedule = schedule.unwrap_or_default();
        match Schedule::parse(&schedule, time_zone.as_deref()) {
            Ok(parsed) => {
                let delay = next_schedule_delay(new, Timestamp::now(), &parsed);
                self.queue.add_after(key, delay);
            }
            Err(_) => self.recorder.warning(
                new,
                "UnParseableCronJobSchedule",
                format!("unparseable schedule for cronjob: {schedule}"),
            ),
        }
    }

    /// The CronJob a controller reference points to, if it still exists.
    fn resolve(&self, namespace: &str, owner: &OwnerReference) -> Option<Arc<CronJob>> {
        if owner.kind != "CronJob" {
            return None;
        }
        self.cronjobs
            .get(&ObjectKey::new(namespace, &owner.name))
            .filter(|cj| cj.metadata.uid.as_deref() == Some(owner.uid.as_str()))
    }

    fn enqueue_owner(&self, job: &Job) {
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        if let Some(cj) = controller_of(job).and_then(|o| self.resolve(namespace, o)) {
            self.queue.add(ObjectKey::of(cj.as_ref()));
        }
    }

    fn watch_jobs(&self) {
        let mut changes = self.jobs.subscribe();
        let c = self.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                match change {
                    Change::Added(job) | Change::Deleted(job) => c.enqueue_owner(&job),
                    Change::Updated { old, new } => {
                        if old.metadata.resource_version == new.metadata.resource_version {
                            continue;
                        }
                        if controller_of(old.as_ref()) != controller_of(new.as_ref()) {
                            c.enqueue_owner(&old);
                        }
                        c.enqueue_owner(&new);
                    }
                }
            }
        });
    }

    fn record(&self, cj: &CronJob, event: &Event) {
        if event.warning {
            self.recorder
                .warning(cj, &event.reason, event.message.clone());
        } else {
            self.recorder
                .normal(cj, &event.reason, event.message.clone());
        }
    }

    fn job_api(&self, namespace: &str) -> Api<Job> {
        Api::namespaced(self.ctx.client.clone(), namespace)
    }

    /// Delete a Job the CronJob is done with (its pods follow in the
    /// background); a Job already gone counts as deleted.
    async fn delete_job(&self, cj: &CronJob, namespace: &str, name: &str) -> bool {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match self.job_api(namespace).delete(name, &params).await {
            Ok(_) => {
                self.record(
                    cj,
                    &Event::normal("SuccessfulDelete", format!("Deleted job {name}")),
                );
                true
            }
            Err(kube::Error::Api(e)) if e.code == 404 => true,
            Err(e) => {
                self.record(
                    cj,
                    &Event::warning("FailedDelete", format!("Deleted job: {e}")),
                );
                false
            }
        }
    }

    async fn write_status(&self, cj: &CronJob, status: CronJobStatus) -> anyhow::Result<()> {
        if status == normalize(cj.status.as_ref()) {
            return Ok(());
        }
        let mut updated = cj.clone();
        updated.status = Some(status);
        let namespace = cj.metadata.namespace.as_deref().unwrap_or("");
        let name = cj.metadata.name.as_deref().unwrap_or("");
        Api::<CronJob>::namespaced(self.ctx.client.clone(), namespace)
            .replace_status(name, &PostParams::default(), &updated)
            .await?;
        Ok(())
    }

    async fn sync(&self, key: ObjectKey) -> anyhow::Result<Outcome> {
        let Some(cached) = self.cronjobs.get(&key) else {
            return Ok(Outcome::Done);
        };
        let uid = cached.metadata.uid.clone().unwrap_or_default();
        let jobs = self.jobs.controlled_by(&uid);
        let api: Api<CronJob> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        // `base` is the CronJob as read; status writes compare against it.
        let mut base: CronJob = (*cached).clone();
        // A running child missing from the active list may be one just
        // started whose status write the cache has not shown yet: re-read
        // before calling it unexpected.
        let unlisted = jobs.iter().any(|j| {
            let active = base.status.as_ref().and_then(|s| s.active.as_ref());
            let listed = active
                .into_iter()
                .flatten()
                .any(|r| r.uid.as_deref() == j.metadata.uid.as_deref());
            finished_as(j).is_none() && !listed
        });
        if unlisted {
            match api.get_opt(&key.name).await? {
                Some(fresh) if fresh.metadata.uid.as_deref() == Some(uid.as_str()) => base = fresh,
                _ => return Ok(Outcome::Done),
            }
        }
        let mut cj = base.clone();
        let mut status = normalize(cj.status.as_ref());

        for job in jobs_to_clean(&cj, &jobs) {
            let name = job.metadata.name.as_deref().unwrap_or("");
            if self.delete_job(&cj, &key.namespace, name).await {
                forget_active(&mut status, job.metadata.uid.as_deref().unwrap_or(""));
            }
        }
        cj.status = Some(status);

        // Active Jobs the cache lacks: ask the API server before dropping them.
        let known: HashSet<&str> = jobs
            .iter()
            .filter_map(|j| j.metadata.uid.as_deref())
            .collect();
        let mut still_exist = HashSet::new();
        let active = cj
            .status
            .as_ref()
            .and_then(|s| s.active.clone())
            .unwrap_or_default();
        for reference in active {
            let ref_uid = reference.uid.clone().unwrap_or_default();
            if known.contains(ref_uid.as_str()) {
                continue;
            }
            let name = reference.name.as_deref().unwrap_or("");
            if self.job_api(&key.namespace).get_opt(name).await?.is_some() {
                still_exist.insert(ref_uid);
            }
        }

        let now = Timestamp::now();
        let decision = decide(&cj, &jobs, &still_exist, now);
        for event in &decision.events {
            self.record(&cj, event);
        }
        let mut status = decision.status;
        let Some(launch) = decision.launch else {
            self.write_status(&base, status).await?;
            return Ok(decision
                .requeue_after
                .map_or(Outcome::Done, Outcome::RequeueAfter));
        };

        for reference in &launch.replace {
            let name = reference.name.as_deref().unwrap_or("");
            if !self.delete_job(&cj, &key.namespace, name).await {
                self.write_status(&base, status).await?;
                anyhow::bail!("could not replace job {}/{name}", key.namespace);
            }
            forget_active(&mut status, reference.uid.as_deref().unwrap_or(""));
        }

        let job_api = self.job_api(&key.namespace);
        let started = match job_api.create(&PostParams::default(), &launch.job).await {
            Ok(created) => {
                let name = created.metadata.name.as_deref().unwrap_or("");
                self.record(
                    &cj,
                    &Event::normal("SuccessfulCreate", format!("Created job {name}")),
                );
                created
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Created before, but the status write was lost?
                let name = launch.job.metadata.name.as_deref().unwrap_or("");
                let existing = job_api.get(name).await?;
                let ours = controller_of(&existing).is_some_and(|o| o.uid == uid);
                let listed = status
                    .active
                    .iter()
                    .flatten()
                    .any(|r| r.uid == existing.metadata.uid);
                if !ours || listed {
                    self.write_status(&base, status).await?;
                    return Ok(decision
                        .requeue_after
                        .map_or(Outcome::Done, Outcome::RequeueAfter));
                }
                existing
            }
            Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("being terminated") => {
                self.write_status(&base, status).await?;
                anyhow::bail!("namespace {} is terminating", key.namespace);
            }
            Err(e) => {
                self.record(
                    &cj,
                    &Event::warning("FailedCreate", format!("Error creating job: {e}")),
                );
                self.write_status(&base, status).await?;
                return Err(e.into());
            }
        };
        status
            .active
            .get_or_insert_with(Vec::new)
            .push(job_reference(&started));
        status.last_schedule_time = Some(Time(launch.scheduled));
        self.write_status(&base, status).await?;
        Ok(Outcome::RequeueAfter(launch.requeue_after))
    }
}
