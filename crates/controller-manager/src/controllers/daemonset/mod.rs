//! The DaemonSet controller (upstream's `pkg/controller/daemon`): one pod
//! on every eligible node, rolled to new templates through
//! ControllerRevisions.
//!
//! - [`eligibility`]: which nodes run a daemon pod (selectors, affinity,
//!   taints and the default daemon tolerations);
//! - [`plan`]: the pure decisions (manage, rolling update, status);
//! - this module: the executor. A sync claims the DaemonSet's revisions
//!   and pods, finds or snapshots the current revision (its hash labels new
//!   pods), and unless earlier creations and deletions are still unseen
//!   (expectations) runs the manage loop, then the rolling update, cleans
//!   up history and writes the status.
//!
//! Pods are created with a required node affinity to their node and bound
//! by the scheduler, as upstream. Events: `SuccessfulCreate` "Created pod:
//! x", `SuccessfulDelete` "Deleted pod: x", `FailedCreate`/`FailedDelete`,
//! `FailedDaemonPod` for failed pods, `SelectingAll` for an empty
//! selector.

pub mod eligibility;
pub mod plan;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use api::selector::{from_label_selector, LabelSelector};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::context::Context;
use crate::controllers::history::{self, POD_REVISION_LABEL};
use crate::framework::{
    forward, run_workers, Change, Expectations, Informer, ObjectKey, Outcome, WorkQueue,
};
use crate::pods::{controller_of, controller_ref};
use plan::{FailedPodBackoff, Observed, BURST_REPLICAS};

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let daemons = ctx.informers.get::<DaemonSet>();
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let revisions = ctx.informers.get::<ControllerRevision>();
    let queue = WorkQueue::new();
    let expectations = Expectations::new();

    let forget = expectations.clone();
    forward(&daemons, &queue, move |change| {
        let key = ObjectKey::of(&**change.object());
        if let Change::Deleted(_) = change {
            forget.remove(&key);
        }
        vec![key]
    });
    let (lookup, observed) = (daemons.clone(), expectations.clone());
    forward(&pods, &queue, move |change| {
        daemons_for_pod(&lookup, &observed, change)
    });
    let lookup = daemons.clone();
    forward(&nodes, &queue, move |change| {
        daemons_for_node(&lookup, change)
    });
    let lookup = daemons.clone();
    forward(&revisions, &queue, move |change| {
        daemons_for_revision(&lookup, change)
    });
    daemons.wait_synced().await;
    pods.wait_synced().await;
    nodes.wait_synced().await;
    revisions.wait_synced().await;

    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        daemons,
        pods,
        nodes,
        revisions,
        expectations,
        backoff: Mutex::default(),
    });
    let workers = ctx.settings.concurrent_syncs;
    run_workers("daemonset", queue, workers, move |key: ObjectKey| {
        let controller = controller.clone();
        async move { controller.sync(&key).await }
    })
    .await;
    Ok(())
}

/// The DaemonSet controlling `object`, if it is one we know (same UID).
fn owner_key<K: kube::Resource>(daemons: &Informer<DaemonSet>, object: &K) -> Option<ObjectKey> {
    let owner = controller_of(object)?;
    if owner.kind != "DaemonSet" {
        return None;
    }
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let key = ObjectKey::new(namespace, &owner.name);
    let ds = daemons.get(&key)?;
    (ds.metadata.uid.as_deref() == Some(owner.uid.as_str())).then_some(key)
}

/// The DaemonSets in the object's namespace whose selector matches it (for
/// orphans they might adopt).
fn selecting<K: kube::Resource>(daemons: &Informer<DaemonSet>, object: &K) -> Vec<ObjectKey> {
    let meta = object.meta();
    let labels = meta.labels.clone().unwrap_or_default();
    daemons
        .list_namespace(meta.namespace.as_deref().unwrap_or_default())
        .iter()
        .filter(|ds| {
            ds.spec
                .as_ref()
                .and_then(|s| from_label_selector(&s.selector).ok())
                .is_some_and(|sel| !sel.is_empty() && sel.matches(&labels))
        })
        .map(|ds| ObjectKey::of(&**ds))
        .collect()
}

/// The DaemonSets a pod change concerns, recording observed creations and
/// deletions (upstream's pod handlers). A pod that starts terminating
/// counts as deleted: the DaemonSet may replace it without waiting for the
/// kubelet.
fn daemons_for_pod(
    daemons: &Informer<DaemonSet>,
    expectations: &Expectations,
    change: &Change<Pod>,
) -> Vec<ObjectKey> {
    let mut keys = Vec::new();
    match change {
        Change::Added(pod) => match owner_key(daemons, &**pod) {
            Some(key) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    expectations.deletion_observed(&key);
                } else {
                    expectations.creation_observed(&key);
                }
                keys.push(key);
            }
            None if controller_of(&**pod).is_none() => keys.extend(selecting(daemons, &**pod)),
            None => {}
        },
        Change::Updated { old, new } => {
            let owner = owner_key(daemons, &**new);
            if let Some(key) = &owner {
                if new.metadata.deletion_timestamp.is_some()
                    && old.metadata.deletion_timestamp.is_none()
                {
                    expectations.deletion_observed(key);
                }
            }
            keys.extend(owner);
            keys.extend(owner_key(daemons, &**old));
            let relabelled = old.metadata.labels != new.metadata.labels;
            let reowned = controller_of(&**old) != controller_of(&**new);
            if controller_of(&**new).is_none() && (relabelled || reowned) {
                keys.extend(selecting(daemons, &**new));
            }
        }
        Change::Deleted(pod) => {
            if let Some(key) = owner_key(daemons, &**pod) {
                expectations.deletion_observed(&key);
                keys.push(key);
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// The DaemonSets whose placement a node change may alter (upstream's node
/// handlers). A deleted node concerns every DaemonSet: unscheduled pods
/// aimed at it must go.
fn daemons_for_node(daemons: &Informer<DaemonSet>, change: &Change<Node>) -> Vec<ObjectKey> {
    let all = daemons.list();
    let keys = all.iter().filter(|ds| match change {
        Change::Added(node) => eligibility::should_run(ds, node).0,
        Change::Updated { old, new } => {
            eligibility::should_run(ds, old) != eligibility::should_run(ds, new)
        }
        Change::Deleted(_) => true,
    });
    keys.map(|ds| ObjectKey::of(&**ds)).collect()
}

/// The DaemonSets a revision change concerns (upstream's history handlers).
fn daemons_for_revision(
    daemons: &Informer<DaemonSet>,
    change: &Change<ControllerRevision>,
) -> Vec<ObjectKey> {
    let revision = &**change.object();
    match owner_key(daemons, revision) {
        Some(key) => vec![key],
        None if controller_of(revision).is_none() && !matches!(change, Change::Deleted(_)) => {
            selecting(daemons, revision)
        }
        None => Vec::new(),
    }
}

struct Controller {
    ctx: Context,
    daemons: Informer<DaemonSet>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    revisions: Informer<ControllerRevision>,
    expectations: Expectations,
    backoff: Mutex<FailedPodBackoff>,
}

fn message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(e) => e.message.clone(),
        other => other.to_string(),
    }
}

fn is_status(error: &kube::Error, codes: &[u16]) -> bool {
    matches!(error, kube::Error::Api(e) if codes.contains(&e.code))
}

/// A create refused because the namespace is going away: every later one
/// would be too, and no event is wanted (upstream's
/// `NamespaceTerminatingCause`).
fn namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(e) if e.code == 403 && e.message.contains("being terminated"))
}

fn name(ds: &DaemonSet) -> &str {
    ds.metadata.name.as_deref().unwrap_or_default()
}

fn namespace(ds: &DaemonSet) -> &str {
    ds.metadata.namespace.as_deref().unwrap_or_default()
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Outcome> {
        let Some(ds) = self.daemons.get(key) else {
            self.expectations.remove(key);
            return Ok(Outcome::Done);
        };
        let Some(spec) = ds.spec.as_ref() else {
            return Ok(Outcome::Done);
        };
        let selector = match from_label_selector(&spec.selector) {
            Ok(selector) if !selector.is_empty() => selector,
            Ok(_) => {
                self.ctx.recorder.warning(
                    &*ds,
                    "SelectingAll",
                    "This daemon set is selecting all pods. A non-empty selector is required.",
                );
                return Ok(Outcome::Done);
            }
            Err(error) => {
                tracing::warn!(daemonset = %key, %error, "invalid selector");
                return Ok(Outcome::Done);
            }
        };
        // A DaemonSet being deleted may have lost its history to the
        // garbage collector already; its status cannot be trusted.
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Outcome::Done);
        }
        let (current, old) = self.construct_history(&ds, &selector).await?;
        let hash = current
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_REVISION_LABEL))
            .cloned()
            .unwrap_or_default();
        let pods = self.claim_pods(&ds, &selector).await?;
        let nodes = self.nodes.list();
        let now = Timestamp::now();
        let observed = Observed {
            ds: &ds,
            nodes: &nodes,
            pods: &pods,
            hash: &hash,
            now,
        };

        if !self.expectations.satisfied(key) {
            // Earlier creations or deletions are not seen yet: only the
            // status, without observing this generation.
            self.write_status(&ds, &plan::status(&observed, false))
                .await?;
            return Ok(Outcome::Done);
        }
        let managed = {
            let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
            backoff.gc(now);
            plan::manage(&observed, &mut backoff)
        };
        for message in &managed.failed {
            self.ctx
                .recorder
                .warning(&*ds, "FailedDaemonPod", message.clone());
        }
        let mut result = self
            .sync_nodes(&ds, key, &managed.delete, &managed.create_on, &hash)
            .await;
        if result.is_ok() && self.expectations.satisfied(key) && spec_rolls(&ds) {
            result = match plan::rolling_update(&observed) {
                Ok(rollout) => {
                    self.sync_nodes(&ds, key, &rollout.delete, &rollout.create_on, &hash)
                        .await
                }
                Err(error) => Err(anyhow::anyhow!(error)),
            };
        }
        let cleaned = self.cleanup_history(&ds, old, &pods).await;
        let status = plan::status(&observed, true);
        let written = self.write_status(&ds, &status).await;
        result?;
        cleaned?;
        written?;

        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let mut retry = managed.retry_after;
        if min_ready > 0 && status.number_ready != status.number_available.unwrap_or(0) {
            let wait = Duration::from_secs(min_ready as u64);
            retry = Some(retry.map_or(wait, |r| r.min(wait)));
        }
        Ok(retry.map_or(Outcome::Done, Outcome::RequeueAfter))
    }

    fn api<K>(&self, ds: &DaemonSet) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), namespace(ds))
    }

    /// The DaemonSet's pods: orphans it selects adopted, pods it no longer
    /// selects released (upstream's `getDaemonPods`).
    async fn claim_pods(
        &self,
        ds: &DaemonSet,
        selector: &LabelSelector,
    ) -> anyhow::Result<Vec<Arc<Pod>>> {
        let uid = ds.metadata.uid.as_deref().unwrap_or_default();
        let candidates = self
            .pods
            .controlled_by(uid)
            .into_iter()
            .chain(self.pods.orphans(namespace(ds)));
        let claimed = history::classify(candidates, uid, selector, |_| true);
        let api = self.api::<Pod>(ds);
        let mut pods = claimed.owned;
        if !claimed.adopt.is_empty() {
            crate::pods::recheck_before_adopting(&self.ctx.client, ds).await?;
            for orphan in &claimed.adopt {
                if let Some(adopted) = history::adopt(&api, &**orphan, &controller_ref(ds)).await? {
                    pods.push(Arc::new(adopted));
                }
            }
        }
        for pod in &claimed.release {
            history::release(&api, &**pod, uid).await?;
        }
        Ok(pods)
    }

    /// The current revision and the old ones (upstream's
    /// `constructHistory`): revisions are claimed, the one holding the
    /// template is current (duplicates folded into the newest), else a new
    /// snapshot is taken; the current one is renumbered above the old ones.
    async fn construct_history(
        &self,
        ds: &DaemonSet,
        selector: &LabelSelector,
    ) -> anyhow::Result<(Arc<ControllerRevision>, Vec<Arc<ControllerRevision>>)> {
        let uid = ds.metadata.uid.as_deref().unwrap_or_default();
        let api = self.api::<ControllerRevision>(ds);
        let claimed = history::claim_revisions(&self.revisions, namespace(ds), uid, selector);
        let mut revisions = claimed.owned;
        if !claimed.adopt.is_empty() {
            crate::pods::recheck_before_adopting(&self.ctx.client, ds).await?;
            for orphan in &claimed.adopt {
                if let Some(adopted) = history::adopt(&api, &**orphan, &controller_ref(ds)).await? {
                    revisions.push(Arc::new(adopted));
                }
            }
        }
        for revision in &claimed.release {
            history::release(&api, &**revision, uid).await?;
        }
        // Revisions without the hash label get their name as one (upstream
        // uses the name, so a hash collision cannot matter).
        for revision in revisions.iter_mut() {
            let labelled = revision
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(POD_REVISION_LABEL));
            if !labelled {
                let revision_name = revision.metadata.name.clone().unwrap_or_default();
                let patch = json!({"metadata": {"labels": {POD_REVISION_LABEL: revision_name}}});
                let patched = api
                    .patch(
                        &revision_name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                *revision = Arc::new(patched);
            }
        }
        let (current, old) = plan::split_history(ds, revisions);
        let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let current = match current.len() {
            0 => Arc::new(self.snapshot(ds, next).await?),
            _ => {
                let keep = self.dedup_current(ds, current).await?;
                if keep.revision < next {
                    Arc::new(history::renumber(&api, &keep, next).await?)
                } else {
                    keep
                }
            }
        };
        Ok((current, old))
    }

    /// Fold several revisions holding the same template into the newest:
    /// pods of the others are relabelled with its hash, the others deleted
    /// (upstream's `dedupCurHistories`).
    async fn dedup_current(
        &self,
        ds: &DaemonSet,
        mut current: Vec<Arc<ControllerRevision>>,
    ) -> anyhow::Result<Arc<ControllerRevision>> {
        current.sort_by_key(|r| r.revision);
        let keep = current.pop().context("no current revision")?;
        if current.is_empty() {
            return Ok(keep);
        }
        let hash_of = |r: &ControllerRevision| {
            r.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(POD_REVISION_LABEL))
                .cloned()
                .unwrap_or_default()
        };
        let keep_hash = hash_of(&keep);
        let duplicates: HashSet<String> = current.iter().map(|r| hash_of(r)).collect();
        let uid = ds.metadata.uid.as_deref().unwrap_or_default();
        let pods_api = self.api::<Pod>(ds);
        for pod in self.pods.controlled_by(uid) {
            let hash = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(POD_REVISION_LABEL));
            if hash.is_some_and(|h| duplicates.contains(h)) {
                let patch = json!({"metadata": {"labels": {POD_REVISION_LABEL: keep_hash}}});
                let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
                match pods_api
                    .patch(pod_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_status(&e, &[404]) => {}
                    Err(e) => return Err(e).context("relabelling a pod to the kept revision"),
                }
            }
        }
        let api = self.api::<ControllerRevision>(ds);
        for duplicate in &current {
            history::delete(&api, duplicate.metadata.name.as_deref().unwrap_or_default()).await?;
        }
        Ok(keep)
    }

    /// Record the template as revision `number` (upstream's `snapshot`). On
    /// a name clash with another template the collision count in the
    /// status goes up and the sync is retried with the new name.
    async fn snapshot(&self, ds: &DaemonSet, number: i64) -> anyhow::Result<ControllerRevision> {
        let spec = ds.spec.as_ref().context("no spec")?;
        let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = history::hash_template(&spec.template, collision_count);
        let patch = history::template_patch(&spec.template);
        let mut labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(POD_REVISION_LABEL.into(), hash.clone());
        let revision = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(history::revision_name(name(ds), &hash)),
                namespace: Some(namespace(ds).to_string()),
                labels: Some(labels),
                annotations: ds.metadata.annotations.clone(),
                owner_references: Some(vec![controller_ref(ds)]),
                ..Default::default()
            },
            data: Some(RawExtension(patch.clone())),
            revision: number,
        };
        let api = self.api::<ControllerRevision>(ds);
        let error = match api.create(&PostParams::default(), &revision).await {
            Ok(created) => return Ok(created),
            Err(e) if is_status(&e, &[409]) => e,
            Err(e) => return Err(e).context("creating ControllerRevision"),
        };
        let revision_name = revision.metadata.name.as_deref().unwrap_or_default();
        let existing = api.get(revision_name).await?;
        if existing.data.as_ref().map(|d| &d.0) == Some(&patch) {
            return Ok(existing);
        }
        // A different template hashed to the same name. Bump the collision
        // count unless ours was stale, and try again on the next sync.
        let daemons = self.api::<DaemonSet>(ds);
        let mut fresh = daemons.get(name(ds)).await?;
        let status = fresh.status.get_or_insert_with(Default::default);
        if status.collision_count != collision_count {
            anyhow::bail!(
                "found a stale collision count ({:?}, expected {collision_count:?}) of DaemonSet {}; will retry",
                status.collision_count,
                name(ds)
            );
        }
        let bumped = collision_count.unwrap_or(0) + 1;
        status.collision_count = Some(bumped);
        daemons
            .replace_status(name(ds), &PostParams::default(), &fresh)
            .await?;
        tracing::info!(
            daemonset = name(ds),
            collision_count = bumped,
            "hash collision; bumped collisionCount"
        );
        Err(error).context("ControllerRevision name collision")
    }

    /// Delete old revisions beyond the history limit, oldest first, unless
    /// a pod still runs them (upstream's `cleanupHistory`).
    async fn cleanup_history(
        &self,
        ds: &DaemonSet,
        mut old: Vec<Arc<ControllerRevision>>,
        pods: &[Arc<Pod>],
    ) -> anyhow::Result<()> {
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(history::DEFAULT_HISTORY_LIMIT);
        let live: HashSet<&str> = plan::pods_by_node(pods)
            .values()
            .flatten()
            .filter_map(|p| p.metadata.labels.as_ref()?.get(POD_REVISION_LABEL))
            .map(String::as_str)
            .collect();
        history::sort_revisions(&mut old);
        let is_live = |r: &ControllerRevision| {
            r.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(POD_REVISION_LABEL))
                .is_some_and(|h| live.contains(h.as_str()))
        };
        let api = self.api::<ControllerRevision>(ds);
        for revision in history::to_truncate(&old, is_live, limit) {
            history::delete(&api, revision.metadata.name.as_deref().unwrap_or_default()).await?;
        }
        Ok(())
    }

    /// Create pods on `create_on` and delete `delete`, at most
    /// [`BURST_REPLICAS`] of each, expecting to see them (upstream's
    /// `syncNodes`). Creations go in slow-start batches (1, 2, 4, ...) so
    /// a failing create is not repeated for every node.
    async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        key: &ObjectKey,
        delete: &[String],
        create_on: &[String],
        hash: &str,
    ) -> anyhow::Result<()> {
        let creates = &create_on[..create_on.len().min(BURST_REPLICAS)];
        let deletes = &delete[..delete.len().min(BURST_REPLICAS)];
        self.expectations.expect(key, creates.len(), deletes.len());
        let template = plan::pod_template(ds, hash);
        let api = self.api::<Pod>(ds);
        let mut errors: Vec<anyhow::Error> = Vec::new();

        let mut rest = creates;
        let mut batch = 1;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            let results = join_all(now.iter().map(|node| {
                let pod = plan::pod_for_node(ds, &template, node);
                let api = api.clone();
                async move { api.create(&PostParams::default(), &pod).await }
            }))
            .await;
            let mut failed = false;
            for result in results {
                match result {
                    Ok(pod) => self.ctx.recorder.normal(
                        ds,
                        "SuccessfulCreate",
                        format!("Created pod: {}", pod.metadata.name.unwrap_or_default()),
                    ),
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        if namespace_terminating(&e) {
                            continue;
                        }
                        self.ctx.recorder.warning(
                            ds,
                            "FailedCreate",
                            format!("Error creating: {}", message(&e)),
                        );
                        errors.push(anyhow::Error::new(e).context("creating a daemon pod"));
                        failed = true;
                    }
                }
            }
            rest = later;
            if failed {
                // The pods never tried are not expected either.
                for _ in rest {
                    self.expectations.creation_observed(key);
                }
                break;
            }
            batch *= 2;
        }

        let results = join_all(deletes.iter().map(|pod| {
            let api = api.clone();
            async move { (pod, api.delete(pod, &DeleteParams::default()).await) }
        }))
        .await;
        for (pod, result) in results {
            match result {
                Ok(_) => {
                    self.ctx
                        .recorder
                        .normal(ds, "SuccessfulDelete", format!("Deleted pod: {pod}"))
                }
                Err(e) => {
                    self.expectations.deletion_observed(key);
                    if !is_status(&e, &[404]) {
                        self.ctx.recorder.warning(
                            ds,
                            "FailedDelete",
                            format!("Error deleting: {}", message(&e)),
                        );
                        errors.push(anyhow::Error::new(e).context(format!("deleting pod {pod}")));
                    }
                }
            }
        }
        match errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Write the status when a count changed or the generation is newly
    /// observed.
    async fn write_status(
        &self,
        ds: &DaemonSet,
        status: &k8s_openapi::api::apps::v1::DaemonSetStatus,
    ) -> anyhow::Result<()> {
        if !plan::status_changed(ds, status) {
            return Ok(());
        }
        let patch = json!({ "status": status });
        match self
            .api::<DaemonSet>(ds)
            .patch_status(name(ds), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, &[404]) => Ok(()),
            Err(e) => Err(e).context("writing DaemonSet status"),
        }
    }
}

/// Whether the update strategy is RollingUpdate (the default).
fn spec_rolls(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, PodTemplateSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector as Selector, OwnerReference,
    };

    fn ds(name: &str, node_selector: Option<(&str, &str)>) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                selector: Selector {
                    match_labels: Some([("app".to_string(), name.to_string())].into()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        node_selector: node_selector
                            .map(|(k, v)| [(k.to_string(), v.to_string())].into()),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn node(labels: &[(&str, &str)], taint: Option<&str>) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: taint.map(|effect| {
                    vec![Taint {
                        key: "k".into(),
                        effect: effect.into(),
                        value: None,
                        time_added: None,
                    }]
                }),
                ..Default::default()
            }),
            status: None,
        })
    }

    #[test]
    fn node_changes_reach_the_daemonsets_whose_placement_they_change() {
        let daemons = Informer::<DaemonSet>::empty();
        daemons.apply(ds("all", None));
        daemons.apply(ds("ssd", Some(("disk", "ssd"))));
        let keys = |change: Change<Node>| -> Vec<String> {
            let mut names: Vec<String> = daemons_for_node(&daemons, &change)
                .into_iter()
                .map(|k| k.name)
                .collect();
            names.sort();
            names
        };
        assert_eq!(keys(Change::Added(node(&[], None))), ["all"]);
        assert_eq!(
            keys(Change::Added(node(&[("disk", "ssd")], None))),
            ["all", "ssd"]
        );
        let relabelled = Change::Updated {
            old: node(&[], None),
            new: node(&[("disk", "ssd")], None),
        };
        assert_eq!(keys(relabelled), ["ssd"]);
        let tainted = Change::Updated {
            old: node(&[], None),
            new: node(&[], Some("NoExecute")),
        };
        assert_eq!(keys(tainted), ["all"]);
        let heartbeat = Change::Updated {
            old: node(&[], None),
            new: node(&[], None),
        };
        assert!(keys(heartbeat).is_empty());
        assert_eq!(keys(Change::Deleted(node(&[], None))), ["all", "ssd"]);
    }

    #[test]
    fn only_rolling_update_daemonsets_replace_pods_themselves() {
        use k8s_openapi::api::apps::v1::DaemonSetUpdateStrategy;
        let strategy = |kind: Option<&str>| {
            let mut d = ds("agent", None);
            d.spec.as_mut().unwrap().update_strategy = kind.map(|k| DaemonSetUpdateStrategy {
                type_: Some(k.into()),
                rolling_update: None,
            });
            spec_rolls(&d)
        };
        assert!(strategy(Some("RollingUpdate")));
        assert!(strategy(None));
        assert!(!strategy(Some("OnDelete")));
    }

    #[test]
    fn pod_events_settle_expectations() {
        let daemons = Informer::<DaemonSet>::empty();
        daemons.apply(ds("agent", None));
        let key = ObjectKey::new("ns", "agent");
        let expectations = Expectations::new();
        expectations.expect(&key, 1, 1);
        let pod = |deleting: bool| {
            Arc::new(Pod {
                metadata: ObjectMeta {
                    name: Some("agent-x".into()),
                    namespace: Some("ns".into()),
                    owner_references: Some(vec![OwnerReference {
                        kind: "DaemonSet".into(),
                        name: "agent".into(),
                        uid: "uid-agent".into(),
                        controller: Some(true),
                        ..Default::default()
                    }]),
                    deletion_timestamp: deleting.then(|| {
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now())
                    }),
                    ..Default::default()
                },
                ..Default::default()
            })
        };
        let keys = daemons_for_pod(&daemons, &expectations, &Change::Added(pod(false)));
        assert_eq!(keys, std::slice::from_ref(&key));
        assert!(!expectations.satisfied(&key));
        let started_deleting = Change::Updated {
            old: pod(false),
            new: pod(true),
        };
        daemons_for_pod(&daemons, &expectations, &started_deleting);
        assert!(expectations.satisfied(&key));
    }
}
