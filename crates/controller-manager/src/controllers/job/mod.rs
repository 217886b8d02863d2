//! The Job controller (upstream's `job-controller`, pkg/controller/job, as
//! of 1.33) and, alongside it, upstream's separate `ttl-after-finished`
//! controller ([`ttl`]), which deletes finished Jobs once their
//! `ttlSecondsAfterFinished` has passed; [`run`] starts both.
//!
//! - [`sync`]: the pure decision (counting, conditions, which pods to
//!   create or delete, pod tracking with the `batch.kubernetes.io/job-tracking`
//!   finalizer);
//! - [`indexes`]: completion indexes of Indexed Jobs;
//! - [`backoff`]: the delay before failed pods are replaced;
//! - this module: the executor. Pod events sync their Job batched (at most
//!   once a second, as upstream), Job creations and spec changes at once.
//!   Pods are claimed (orphans matching the selector adopted, with the
//!   tracking finalizer; owned pods that no longer match released), created
//!   in slow-start batches, deleted, and the status is written through
//!   `jobs/status` before any finalizer is removed. A second queue removes
//!   the tracking finalizer from pods whose Job is gone or finished.
//!
//! Not implemented (upstream features the Job is synced without):
//! `podFailurePolicy` rules, `backoffLimitPerIndex`/`maxFailedIndexes` and
//! `successPolicy`.

pub mod backoff;
pub mod indexes;
pub mod sync;
pub mod ttl;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use component_base::events::EventRecorder;
use futures::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::context::Context;
use crate::framework::{
    run_workers, Change, Expectations, Informer, ObjectKey, Outcome, WorkQueue,
};
use crate::pods::{
    adopt_patch, claim, controller_of, controller_ref, is_pod_ready, is_terminating,
    pod_from_template, release_patch, Claim,
};
use backoff::BackoffStore;
use sync::{
    assess, conclude, enact_finished, finished_events, has_tracking_finalizer, is_finished,
    is_indexed, managed_elsewhere, normalize, settle, track, uid, Event, Executed, Manage,
    SyncInput, SYNC_BATCH_PERIOD, TRACKING_FINALIZER,
};

/// Pods created at once in the first slow-start batch (upstream's
/// `SlowStartInitialBatchSize`); each successful batch doubles it.
const SLOW_START_INITIAL_BATCH: usize = 1;

/// Per Job, the pods whose tracking finalizer we removed but whose update
/// the informer has not shown yet (upstream's `uidTrackingExpectations`):
/// they must not be counted a second time meanwhile.
#[derive(Debug, Clone, Default)]
struct FinalizerExpectations {
    inner: Arc<Mutex<HashMap<ObjectKey, HashSet<String>>>>,
}

impl FinalizerExpectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, HashSet<String>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expect(&self, job: &ObjectKey, uids: impl IntoIterator<Item = String>) {
        self.lock().entry(job.clone()).or_default().extend(uids);
    }

    fn observed(&self, job: &ObjectKey, uid: &str) {
        let mut map = self.lock();
        if let Some(set) = map.get_mut(job) {
            set.remove(uid);
            if set.is_empty() {
                map.remove(job);
            }
        }
    }

    fn get(&self, job: &ObjectKey) -> HashSet<String> {
        self.lock().get(job).cloned().unwrap_or_default()
    }

    fn remove(&self, job: &ObjectKey) {
        self.lock().remove(job);
    }
}

#[derive(Clone)]
struct Controller {
    ctx: Context,
    /// Events come from `job-controller`, as upstream's.
    recorder: EventRecorder,
    jobs: Informer<Job>,
    pods: Informer<Pod>,
    queue: WorkQueue<ObjectKey>,
    orphans: WorkQueue<ObjectKey>,
    expectations: Expectations,
    finalizers: FinalizerExpectations,
    backoff: BackoffStore,
}

/// Run the Job controller and the TTL-after-finished controller.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let controller = Controller {
        recorder: EventRecorder::new(ctx.client.clone(), "job-controller"),
        jobs: ctx.informers.get::<Job>(),
        pods: ctx.informers.get::<Pod>(),
        ctx: ctx.clone(),
        queue: WorkQueue::new(),
        orphans: WorkQueue::new(),
        expectations: Expectations::new(),
        finalizers: FinalizerExpectations::default(),
        backoff: BackoffStore::default(),
    };
    controller.watch_jobs();
    controller.watch_pods();
    controller.jobs.wait_synced().await;
    controller.pods.wait_synced().await;
    let workers = ctx.settings.concurrent_syncs;
    let syncer = controller.clone();
    let jobs = run_workers("job", controller.queue.clone(), workers, move |key| {
        let c = syncer.clone();
        async move { c.sync_job(key).await }
    });
    let cleaner = controller.clone();
    let orphans = run_workers(
        "job-orphan-pod",
        controller.orphans.clone(),
        1,
        move |key| {
            let c = cleaner.clone();
            async move { c.sync_orphan_pod(key).await }
        },
    );
    let (_, _, ttl) = tokio::join!(jobs, orphans, ttl::run(ctx));
    ttl
}

impl Controller {
    /// The Job a controller reference points to, if it still exists.
    fn resolve(&self, namespace: &str, owner: &OwnerReference) -> Option<Arc<Job>> {
        if owner.kind != "Job" {
            return None;
        }
        self.jobs
            .get(&ObjectKey::new(namespace, &owner.name))
            .filter(|j| j.metadata.uid.as_deref() == Some(owner.uid.as_str()))
    }

    /// Jobs in the pod's namespace whose selector matches it.
    fn matching_jobs(&self, pod: &Pod) -> Vec<Arc<Job>> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        self.jobs
            .list_namespace(namespace)
            .into_iter()
            .filter(|j| {
                let selector = j.spec.as_ref().and_then(|s| s.selector.as_ref());
                api::selector::from_optional_label_selector(selector)
                    .is_ok_and(|s| !s.matches_nothing() && s.matches(&labels))
            })
            .collect()
    }

    fn enqueue_batched(&self, job: &Job) {
        self.queue.add_after(ObjectKey::of(job), SYNC_BATCH_PERIOD);
    }

    /// Finished or deleted Jobs no longer remove their pods' finalizers in
    /// a sync; the orphan queue does.
    fn cleanup_pod_finalizers(&self, job: &Job) {
        let Some(uid) = job.metadata.uid.as_deref() else {
            return;
        };
        for pod in self.pods.controlled_by(uid) {
            if has_tracking_finalizer(&pod) {
                self.orphans.add(ObjectKey::of(pod.as_ref()));
            }
        }
    }

    fn watch_jobs(&self) {
        let mut changes = self.jobs.subscribe();
        let c = self.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                match change {
                    Change::Added(job) => c.queue.add(ObjectKey::of(job.as_ref())),
                    Change::Updated { old, new } => c.job_updated(&old, &new),
                    Change::Deleted(job) => {
                        c.queue.add(ObjectKey::of(job.as_ref()));
                        c.cleanup_pod_finalizers(&job);
                    }
                }
            }
        });
    }

    fn job_updated(&self, old: &Job, new: &Job) {
        let key = ObjectKey::of(new);
        if old.metadata.generation == new.metadata.generation {
            // Status updates (often our own) sync batched.
            self.queue.add_after(key.clone(), SYNC_BATCH_PERIOD);
        } else {
            self.queue.add(key.clone());
        }
        if is_finished(new) {
            self.cleanup_pod_finalizers(new);
        }
        // A changed activeDeadlineSeconds needs a look when it expires.
        let deadline = |j: &Job| j.spec.as_ref().and_then(|s| s.active_deadline_seconds);
        let started = new.status.as_ref().and_then(|s| s.start_time.as_ref());
        if let (Some(started), Some(seconds)) = (started, deadline(new)) {
            if deadline(old) != Some(seconds) {
                let passed = Timestamp::now().as_millisecond() - started.0.as_millisecond();
                let left = (seconds.saturating_mul(1000) - passed).max(0) as u64;
                self.queue
                    .add_after(key, std::time::Duration::from_millis(left));
            }
        }
    }

    fn watch_pods(&self) {
        let mut changes = self.pods.subscribe();
        let c = self.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                match change {
                    Change::Added(pod) => c.pod_added(&pod),
                    Change::Updated { old, new } => c.pod_updated(&old, &new),
                    Change::Deleted(pod) => c.pod_deleted(&pod, true),
                }
            }
        });
    }

    fn pod_added(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            // Seen already being deleted (e.g. after a restart): not a
            // creation we wait for.
            self.pod_deleted(pod, false);
            return;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        if let Some(owner) = controller_of(pod) {
            if let Some(job) = self.resolve(namespace, owner) {
                self.expectations
                    .creation_observed(&ObjectKey::of(job.as_ref()));
                self.enqueue_batched(&job);
            }
            return;
        }
        if has_tracking_finalizer(pod) {
            self.orphans.add(ObjectKey::of(pod));
        }
        for job in self.matching_jobs(pod) {
            self.enqueue_batched(&job);
        }
    }

    fn pod_updated(&self, old: &Pod, new: &Pod) {
        if old.metadata.resource_version == new.metadata.resource_version {
            return;
        }
        if new.metadata.deletion_timestamp.is_some() {
            // React when graceful deletion starts, not when it ends.
            self.pod_deleted(new, false);
            return;
        }
        let namespace = new.metadata.namespace.as_deref().unwrap_or("");
        let finalizer_removed = !has_tracking_finalizer(new);
        let (old_owner, new_owner) = (controller_of(old), controller_of(new));
        let owner_changed = old_owner != new_owner;
        if owner_changed {
            if let Some(job) = old_owner.and_then(|o| self.resolve(namespace, o)) {
                if finalizer_removed {
                    self.finalizers
                        .observed(&ObjectKey::of(job.as_ref()), uid(new));
                }
                self.enqueue_batched(&job);
            }
        }
        if let Some(owner) = new_owner {
            if let Some(job) = self.resolve(namespace, owner) {
                if finalizer_removed {
                    self.finalizers
                        .observed(&ObjectKey::of(job.as_ref()), uid(new));
                }
                self.enqueue_batched(&job);
            }
            return;
        }
        if has_tracking_finalizer(new) {
            self.orphans.add(ObjectKey::of(new));
        }
        if owner_changed || old.metadata.labels != new.metadata.labels {
            for job in self.matching_jobs(new) {
                self.enqueue_batched(&job);
            }
        }
    }

    /// A pod is being deleted (`gone`: it has left the store).
    fn pod_deleted(&self, pod: &Pod, gone: bool) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let has_finalizer = has_tracking_finalizer(pod);
        let Some(owner) = controller_of(pod) else {
            if has_finalizer {
                self.orphans.add(ObjectKey::of(pod));
            }
            return;
        };
        let job = self.resolve(namespace, owner).filter(|j| !is_finished(j));
        let Some(job) = job else {
            // No sync will remove this finalizer.
            if has_finalizer {
                self.orphans.add(ObjectKey::of(pod));
            }
            return;
        };
        let key = ObjectKey::of(job.as_ref());
        self.expectations.deletion_observed(&key);
        if gone || !has_finalizer {
            self.finalizers.observed(&key, uid(pod));
        }
        self.enqueue_batched(&job);
    }

    fn record(&self, job: &Job, event: &Event) {
        if event.warning {
            self.recorder
                .warning(job, &event.reason, event.message.clone());
        } else {
            self.recorder
                .normal(job, &event.reason, event.message.clone());
        }
    }

    fn job_api(&self, namespace: &str) -> Api<Job> {
        Api::namespaced(self.ctx.client.clone(), namespace)
    }

    fn pod_api(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), namespace)
    }

    async fn sync_job(&self, key: ObjectKey) -> anyhow::Result<Outcome> {
        let Some(job) = self.jobs.get(&key) else {
            self.expectations.remove(&key);
            self.finalizers.remove(&key);
            self.backoff.remove(&key);
            return Ok(Outcome::Done);
        };
        if managed_elsewhere(&job) {
            return Ok(Outcome::Done);
        }
        if is_finished(&job) {
            self.backoff.remove(&key);
            return Ok(Outcome::Done);
        }
        let mode = job.spec.as_ref().and_then(|s| s.completion_mode.as_deref());
        if !matches!(mode, None | Some("NonIndexed") | Some("Indexed")) {
            self.record(
                &job,
                &Event::warning(
                    "UnknownCompletionMode",
                    "Skipped Job sync because completion mode is unknown",
                ),
            );
            return Ok(Outcome::Done);
        }
        // Check expectations before listing pods, so a pod created after
        // the check can only make the next sync wait, never this one err.
        let satisfied = self.expectations.satisfied(&key);
        let pods = self.claim_pods(&job).await?;
        let removing = self.finalizers.get(&key);
        // Whole seconds: that is what the API keeps of a time.
        let now = Timestamp::from_second(Timestamp::now().as_second())?;
        let input = SyncInput {
            job: &job,
            pods: &pods,
            expectations_satisfied: satisfied,
            removing_finalizers: &removing,
            backoff: self.backoff.get(&key),
            now,
        };
        let assessment = assess(&input);
        let (executed, manage_error) = self.execute(&job, &key, &assessment.manage).await;
        let concluded = conclude(&input, &assessment, executed);
        for event in &concluded.events {
            self.record(&job, event);
        }
        let tracked = track(&input, &assessment, &concluded);

        // Record the finished pods before their finalizers go.
        let mut current: Job = (*job).clone();
        if tracked.status != normalize(current.status.as_ref()) {
            current = self
                .write_status(&current, tracked.status.clone())
                .await
                .context("adding uncounted pods to status")?;
            self.backoff.set(&key, assessment.backoff);
        }
        let (removed, remove_error) = self
            .remove_finalizers(&key, &tracked.remove_finalizers)
            .await;
        let mut with_finalizer = tracked.with_finalizer.clone();
        for id in &removed {
            with_finalizer.remove(id);
        }
        let mut status = tracked.status.clone();
        let counted = settle(&mut status, &with_finalizer);
        if let Some(error) = remove_error {
            if counted {
                self.write_status(&current, status).await?;
            }
            return Err(error);
        }
        let finished = !tracked.reached_max
            && enact_finished(
                &mut status,
                tracked.terminal.as_ref(),
                concluded.terminating,
                now,
            );
        if status != normalize(current.status.as_ref()) {
            self.write_status(&current, status.clone())
                .await
                .context("removing uncounted pods from status")?;
        }
        if let (true, Some(terminal)) = (finished, tracked.terminal.as_ref()) {
            for event in finished_events(&job, &status, terminal) {
                self.record(&job, &event);
            }
        }
        if let Some(error) = manage_error {
            return Err(error);
        }
        Ok(match assessment.requeue_after {
            Some(after) => Outcome::RequeueAfter(after),
            None => Outcome::Done,
        })
    }

    async fn write_status(&self, job: &Job, status: JobStatus) -> anyhow::Result<Job> {
        let mut updated = job.clone();
        updated.status = Some(status);
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        let name = job.metadata.name.as_deref().unwrap_or("");
        Ok(self
            .job_api(namespace)
            .replace_status(name, &PostParams::default(), &updated)
            .await?)
    }

    /// The pods the Job owns: its own that still match, plus matching
    /// orphans it adopts (adding the tracking finalizer); owned pods that
    /// no longer match are released.
    async fn claim_pods(&self, job: &Job) -> anyhow::Result<Vec<Arc<Pod>>> {
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        let job_uid = job.metadata.uid.as_deref().unwrap_or("");
        let selector = api::selector::from_optional_label_selector(
            job.spec.as_ref().and_then(|s| s.selector.as_ref()),
        )
        .map_err(|e| anyhow::anyhow!("couldn't convert Job selector: {e}"))?;
        let mut candidates = self.pods.controlled_by(job_uid);
        candidates.extend(self.pods.orphans(namespace));
        let api = self.pod_api(namespace);
        let owner = controller_ref(job);
        let mut may_adopt: Option<bool> = None;
        let mut owned = Vec::new();
        let empty = BTreeMap::new();
        for pod in candidates {
            let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
            let name = pod.metadata.name.as_deref().unwrap_or("");
            match claim(
                job_uid,
                &selector,
                labels,
                controller_of(pod.as_ref()),
                is_terminating(&pod),
            ) {
                Claim::Owned => owned.push(pod),
                Claim::Adopt => {
                    if may_adopt.is_none() {
                        may_adopt = Some(self.may_adopt(job).await?);
                    }
                    if may_adopt != Some(true) {
                        continue;
                    }
                    let mut patch = adopt_patch(uid(&pod), &owner);
                    patch["metadata"]["finalizers"] = json!([TRACKING_FINALIZER]);
                    match api
                        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
                        .await
                    {
                        Ok(adopted) => owned.push(Arc::new(adopted)),
                        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Release => {
                    let patch = release_patch(uid(&pod), job_uid);
                    match api
                        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Ignore => {}
            }
        }
        Ok(owned)
    }

    /// Adoption re-reads the Job from the API: a Job being deleted (or
    /// replaced by a namesake) must not adopt.
    async fn may_adopt(&self, job: &Job) -> anyhow::Result<bool> {
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        let name = job.metadata.name.as_deref().unwrap_or("");
        let fresh = self.job_api(namespace).get(name).await?;
        if fresh.metadata.uid != job.metadata.uid {
            anyhow::bail!("original Job {namespace}/{name} is gone");
        }
        Ok(fresh.metadata.deletion_timestamp.is_none())
    }

    /// Carry out the pod changes; returns what succeeded and the first
    /// error.
    async fn execute(
        &self,
        job: &Job,
        key: &ObjectKey,
        manage: &Manage,
    ) -> (Executed, Option<anyhow::Error>) {
        match manage {
            // Finishing keeps the finalizers: the pods are counted first.
            Manage::Finish { delete } => self.delete_pods(job, None, delete, true).await,
            Manage::Suspend { delete } | Manage::ScaleDown { delete } => {
                self.expectations.expect(key, 0, delete.len());
                self.delete_pods(job, Some(key), delete, false).await
            }
            Manage::Create { indexes } => {
                self.expectations.expect(key, indexes.len(), 0);
                self.create_pods(job, key, indexes).await
            }
            Manage::Hold | Manage::Backoff(_) | Manage::Steady => (Executed::default(), None),
        }
    }

    async fn delete_pods(
        &self,
        job: &Job,
        expecting: Option<&ObjectKey>,
        pods: &[Arc<Pod>],
        keep_finalizer: bool,
    ) -> (Executed, Option<anyhow::Error>) {
        let results = join_all(pods.iter().map(|pod| async move {
            let result = self.delete_pod(job, pod, keep_finalizer).await;
            if result.is_err() {
                if let Some(key) = expecting {
                    self.expectations.deletion_observed(key);
                }
            }
            (pod, result)
        }))
        .await;
        let mut done = Executed::default();
        let mut error = None;
        for (pod, result) in results {
            match result {
                Ok(()) => {
                    done.deleted += 1;
                    if is_pod_ready(pod) {
                        done.deleted_ready += 1;
                    }
                }
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        (done, error)
    }

    /// Delete one pod (already gone counts as deleted), removing the
    /// tracking finalizer first unless it must stay.
    async fn delete_pod(&self, job: &Job, pod: &Pod, keep_finalizer: bool) -> anyhow::Result<()> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let api = self.pod_api(namespace);
        if !keep_finalizer && has_tracking_finalizer(pod) {
            match api
                .patch(name, &PatchParams::default(), &remove_finalizer_patch())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(e) => {
                    return Err(anyhow::Error::from(e).context("removing completion finalizer"))
                }
            }
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                self.record(
                    job,
                    &Event::normal("SuccessfulDelete", format!("Deleted pod: {name}")),
                );
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => {
                self.record(
                    job,
                    &Event::warning("FailedDelete", format!("Error deleting: {e}")),
                );
                Err(anyhow::Error::from(e).context(format!("deleting pod {namespace}/{name}")))
            }
        }
    }

    /// Create pods in slow-start batches (1, 2, 4, ...): after a batch with
    /// a failure the rest are not attempted (a quota or admission error
    /// would fail them all).
    async fn create_pods(
        &self,
        job: &Job,
        key: &ObjectKey,
        indexes: &[Option<i32>],
    ) -> (Executed, Option<anyhow::Error>) {
        let mut done = Executed::default();
        let mut error: Option<anyhow::Error> = None;
        let mut rest = indexes;
        let mut batch = SLOW_START_INITIAL_BATCH.min(rest.len());
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch);
            let results = join_all(now.iter().map(|index| self.create_pod(job, *index))).await;
            let mut failed = false;
            for result in results {
                match result {
                    Ok(true) => done.created += 1,
                    // The namespace is going away: nothing to retry.
                    Ok(false) => self.expectations.creation_observed(key),
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        failed = true;
                        error.get_or_insert(e);
                    }
                }
            }
            rest = later;
            if failed {
                for _ in rest {
                    self.expectations.creation_observed(key);
                }
                break;
            }
            batch = (batch * 2).min(rest.len());
        }
        (done, error)
    }

    /// Create one pod; `Ok(false)` when the namespace is terminating.
    async fn create_pod(&self, job: &Job, index: Option<i32>) -> anyhow::Result<bool> {
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        let pod = pod_for(job, index);
        match self
            .pod_api(namespace)
            .create(&PostParams::default(), &pod)
            .await
        {
            Ok(created) => {
                let name = created.metadata.name.unwrap_or_default();
                self.record(
                    job,
                    &Event::normal("SuccessfulCreate", format!("Created pod: {name}")),
                );
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("being terminated") => {
                Ok(false)
            }
            Err(e) => {
                self.record(
                    job,
                    &Event::warning("FailedCreate", format!("Error creating: {e}")),
                );
                Err(e.into())
            }
        }
    }

    /// Remove the tracking finalizer from `pods`; returns the UIDs whose
    /// finalizer is gone (a pod already deleted counts) and the first error.
    async fn remove_finalizers(
        &self,
        key: &ObjectKey,
        pods: &[Arc<Pod>],
    ) -> (Vec<String>, Option<anyhow::Error>) {
        if pods.is_empty() {
            return (Vec::new(), None);
        }
        self.finalizers
            .expect(key, pods.iter().map(|p| uid(p).to_string()));
        let results = join_all(pods.iter().map(|pod| async move {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
            let name = pod.metadata.name.as_deref().unwrap_or("");
            let result = self
                .pod_api(namespace)
                .patch(name, &PatchParams::default(), &remove_finalizer_patch())
                .await;
            (pod, result)
        }))
        .await;
        let mut removed = Vec::new();
        let mut error = None;
        for (pod, result) in results {
            match result {
                Ok(_) => removed.push(uid(pod).to_string()),
                Err(e) => {
                    // No update will show this removal.
                    self.finalizers.observed(key, uid(pod));
                    match e {
                        kube::Error::Api(ref a) if a.code == 404 => {
                            removed.push(uid(pod).to_string())
                        }
                        e => {
                            error.get_or_insert(
                                anyhow::Error::from(e).context("removing tracking finalizer"),
                            );
                        }
                    }
                }
            }
        }
        (removed, error)
    }

    /// Remove the tracking finalizer from a pod no running Job will count.
    async fn sync_orphan_pod(&self, key: ObjectKey) -> anyhow::Result<Outcome> {
        let Some(pod) = self.pods.get(&key) else {
            return Ok(Outcome::Done);
        };
        if let Some(owner) = controller_of(pod.as_ref()) {
            if owner.kind != "Job" || owner.api_version != "batch/v1" {
                return Ok(Outcome::Done);
            }
            if let Some(job) = self.resolve(&key.namespace, owner) {
                if managed_elsewhere(&job) || !is_finished(&job) {
                    // Still (or again) counted by its Job.
                    return Ok(Outcome::Done);
                }
            }
        }
        if has_tracking_finalizer(&pod) {
            let api = self.pod_api(&key.namespace);
            match api
                .patch(
                    &key.name,
                    &PatchParams::default(),
                    &remove_finalizer_patch(),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Outcome::Done)
    }
}

/// The strategic merge patch removing the tracking finalizer.
fn remove_finalizer_patch() -> Patch<serde_json::Value> {
    Patch::Strategic(json!({
        "metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}
    }))
}

/// The pod a Job creates (for `index`, when Indexed): its template with
/// the tracking finalizer and a controller reference, named `<job>-xxxxx`;
/// an indexed pod also carries its index (annotation, label,
/// `JOB_COMPLETION_INDEX`), hostname `<job>-<index>` and is named
/// `<job>-<index>-xxxxx`.
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let namespace = job.metadata.namespace.as_deref().unwrap_or("");
    let name = job.metadata.name.as_deref().unwrap_or("");
    let mut template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    if is_indexed(job) {
        if let Some(spec) = template.spec.as_mut() {
            let containers = spec
                .init_containers
                .iter_mut()
                .flatten()
                .chain(spec.containers.iter_mut());
            for container in containers {
                let env = container.env.get_or_insert_with(Vec::new);
                if !env.iter().any(|e| e.name == indexes::COMPLETION_INDEX_ENV) {
                    env.push(EnvVar {
                        name: indexes::COMPLETION_INDEX_ENV.into(),
                        value: None,
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector {
                                api_version: None,
                                field_path: format!(
                                    "metadata.labels['{}']",
                                    indexes::COMPLETION_INDEX
                                ),
                            }),
                            ..Default::default()
                        }),
                    });
                }
            }
        }
    }
    let meta = template.metadata.get_or_insert_with(Default::default);
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    let mut pod = pod_from_template(&template, namespace, name, controller_ref(job));
    if let Some(index) = index {
        let value = index.to_string();
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(indexes::COMPLETION_INDEX.into(), value.clone());
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(indexes::COMPLETION_INDEX.into(), value);
        if let Some(spec) = pod.spec.as_mut() {
            spec.hostname = Some(format!("{name}-{index}"));
        }
        pod.metadata.generate_name = Some(indexes::generate_name(name, index));
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(mode: &str) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "ns", "uid": "u1"},
            "spec": {
                "completionMode": mode,
                "completions": 3,
                "template": {
                    "metadata": {"labels": {"batch.kubernetes.io/job-name": "pi"}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
                }
            }
        }))
        .unwrap()
    }

    #[test]
    fn pods_carry_the_finalizer_and_the_jobs_controller_reference() {
        let pod = pod_for(&job("NonIndexed"), None);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-"));
        assert_eq!(
            pod.metadata.finalizers,
            Some(vec![TRACKING_FINALIZER.to_string()])
        );
        let owner = controller_of(&pod).unwrap();
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Job", "u1"));
        assert_eq!(
            pod.metadata.labels.unwrap()["batch.kubernetes.io/job-name"],
            "pi"
        );
        let containers = pod.spec.unwrap().containers;
        assert!(containers[0].env.is_none());
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let pod = pod_for(&job("Indexed"), Some(2));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(
            pod.metadata.annotations.unwrap()[indexes::COMPLETION_INDEX],
            "2"
        );
        assert_eq!(pod.metadata.labels.unwrap()[indexes::COMPLETION_INDEX], "2");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = spec.containers[0].env.as_ref().unwrap();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
        let field = env[0]
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            field.field_path,
            "metadata.labels['batch.kubernetes.io/job-completion-index']"
        );
    }

    #[test]
    fn finalizer_expectations_clear_when_observed() {
        let e = FinalizerExpectations::default();
        let key = ObjectKey::new("ns", "pi");
        e.expect(&key, ["a".to_string(), "b".to_string()]);
        e.observed(&key, "a");
        assert_eq!(e.get(&key), ["b".to_string()].into());
        e.observed(&key, "b");
        assert!(e.get(&key).is_empty());
    }
}
