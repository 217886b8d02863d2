//! The Deployment controller (upstream's `pkg/controller/deployment`):
//! rolls a Deployment's pod template out through ReplicaSets named
//! `<deployment>-<pod-template-hash>`.
//!
//! - [`util`]: the template hash, revisions and annotations, maxSurge /
//!   maxUnavailable, conditions;
//! - [`plan`]: one sync as a pure plan (scale, RollingUpdate, Recreate,
//!   cleanup, status), unit-tested without a server;
//! - this module: the executor. A sync claims the ReplicaSets the
//!   Deployment's selector matches (adopting orphans, releasing strays),
//!   plans, then carries the plan out in order: ReplicaSet creates,
//!   updates (resourceVersion-guarded, so a stale cache cannot scale twice),
//!   deletes and `ScalingReplicaSet` events; then the status (through the
//!   status subresource, only when it changed) and the revision annotation.
//!
//! A Deployment is synced when it changes, when one of its ReplicaSets
//! changes (or an orphan its selector matches appears), when a pod of a
//! Recreate Deployment is deleted (it may be waiting for old pods to be
//! gone), and when its progress deadline comes.

pub mod plan;
pub mod util;

use std::collections::HashMap;
use std::sync::Arc;

use api::selector::from_label_selector;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use component_base::events::EventRecorder;

use crate::context::Context;
use crate::controllers::replicaset::{
    classify_claims, error_message, is_status, namespace_terminating,
};
use crate::framework::{forward, run_workers, Change, Informer, ObjectKey, Outcome, WorkQueue};
use crate::pods::{adopt_patch, controller_of, controller_ref, release_patch};
use plan::{Action, Plan};
use util::*;

/// The Deployment a controller reference points at, if it is in the cache
/// with that UID.
fn resolve(
    deployments: &Informer<Deployment>,
    namespace: &str,
    reference: &OwnerReference,
) -> Option<Arc<Deployment>> {
    if reference.kind != "Deployment" {
        return None;
    }
    let d = deployments.get(&ObjectKey::new(namespace, &reference.name))?;
    (d.metadata.uid.as_deref() == Some(reference.uid.as_str())).then_some(d)
}

/// The Deployments whose selector matches an orphaned ReplicaSet (upstream's
/// `getDeploymentsForReplicaSet`), so they may adopt it.
fn matching_deployments(deployments: &Informer<Deployment>, rs: &ReplicaSet) -> Vec<ObjectKey> {
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    deployments
        .list_namespace(&namespace)
        .iter()
        .filter(|d| {
            d.spec
                .as_ref()
                .and_then(|s| from_label_selector(&s.selector).ok())
                .is_some_and(|s| !s.is_empty() && s.matches(&labels))
        })
        .map(|d| ObjectKey::of(d.as_ref()))
        .collect()
}

/// Which Deployments a ReplicaSet change wakes (upstream's
/// addReplicaSet/updateReplicaSet/deleteReplicaSet).
fn replica_set_changed(
    change: &Change<ReplicaSet>,
    deployments: &Informer<Deployment>,
) -> Vec<ObjectKey> {
    let owner = |rs: &ReplicaSet| {
        let reference = controller_of(rs)?;
        resolve(
            deployments,
            rs.metadata.namespace.as_deref().unwrap_or(""),
            reference,
        )
        .map(|d| ObjectKey::of(d.as_ref()))
    };
    match change {
        Change::Added(rs) | Change::Deleted(rs) => match controller_of(rs.as_ref()) {
            Some(_) => owner(rs).into_iter().collect(),
            None if matches!(change, Change::Added(_)) => matching_deployments(deployments, rs),
            None => Vec::new(),
        },
        Change::Updated { old, new } => {
            let mut keys = Vec::new();
            let ref_changed = controller_of(old.as_ref()) != controller_of(new.as_ref());
            if ref_changed {
                keys.extend(owner(old));
            }
            match controller_of(new.as_ref()) {
                Some(_) => keys.extend(owner(new)),
                None if ref_changed || old.metadata.labels != new.metadata.labels => {
                    keys.extend(matching_deployments(deployments, new));
                }
                None => {}
            }
            keys
        }
    }
}

/// A deleted pod wakes its Recreate Deployment, which may be waiting for
/// the old pods to be gone (upstream's deletePod).
fn pod_changed(
    change: &Change<Pod>,
    rss: &Informer<ReplicaSet>,
    deployments: &Informer<Deployment>,
) -> Vec<ObjectKey> {
    let Change::Deleted(pod) = change else {
        return Vec::new();
    };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(rs_ref) = controller_of(pod.as_ref()) else {
        return Vec::new();
    };
    let Some(rs) = rss.get(&ObjectKey::new(&namespace, &rs_ref.name)) else {
        return Vec::new();
    };
    if rs_ref.kind != "ReplicaSet" || rs.metadata.uid.as_deref() != Some(rs_ref.uid.as_str()) {
        return Vec::new();
    }
    let Some(d) = controller_of(rs.as_ref()).and_then(|r| resolve(deployments, &namespace, r))
    else {
        return Vec::new();
    };
    if strategy_type(&d) == "Recreate" {
        vec![ObjectKey::of(d.as_ref())]
    } else {
        Vec::new()
    }
}

struct Controller {
    ctx: Context,
    deployments: Informer<Deployment>,
    rss: Informer<ReplicaSet>,
    pods: Informer<Pod>,
}

impl Controller {
    fn rs_api(&self, namespace: &str) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), namespace)
    }

    fn deployment_api(&self, namespace: &str) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), namespace)
    }

    async fn sync(&self, key: ObjectKey) -> anyhow::Result<Outcome> {
        let Some(d) = self.deployments.get(&key) else {
            return Ok(Outcome::Done);
        };
        if plan::selects_everything(&d) {
            self.ctx.recorder.warning(
                d.as_ref(),
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            let observed = d.status.as_ref().and_then(|s| s.observed_generation);
            if observed.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
                let mut status = d.status.clone().unwrap_or_default();
                status.observed_generation = d.metadata.generation;
                self.write_status(&d, status).await?;
            }
            return Ok(Outcome::Done);
        }
        let selector = match from_label_selector(
            &d.spec
                .as_ref()
                .map(|s| s.selector.clone())
                .unwrap_or_default(),
        ) {
            Ok(selector) => selector,
            Err(error) => {
                // Validation rejects such selectors; retrying cannot help.
                tracing::warn!(deployment = %key, %error, "invalid selector");
                return Ok(Outcome::Done);
            }
        };
        let replica_sets = self.claim_replica_sets(&d, &selector).await?;
        let pods: Vec<Arc<Pod>> = replica_sets
            .iter()
            .flat_map(|rs| {
                self.pods
                    .controlled_by(rs.metadata.uid.as_deref().unwrap_or(""))
            })
            .filter(|p| selector.matches(&p.metadata.labels.clone().unwrap_or_default()))
            .collect();
        let plan =
            plan::plan(&d, replica_sets, &pods, Timestamp::now()).map_err(anyhow::Error::msg)?;
        self.execute(&d, plan).await
    }

    /// Upstream's `getReplicaSetsForDeployment`: the ReplicaSets the
    /// Deployment controls and still selects, plus matching orphans it
    /// adopts; strays are released.
    async fn claim_replica_sets(
        &self,
        d: &Deployment,
        selector: &api::selector::LabelSelector,
    ) -> anyhow::Result<Vec<ReplicaSet>> {
        let namespace = d.namespace().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let candidates = self
            .rss
            .controlled_by(&uid)
            .into_iter()
            .chain(self.rss.orphans(&namespace));
        let claims = classify_claims(&uid, selector, deleting, candidates);
        let api = self.rs_api(&namespace);
        let mut owned: Vec<ReplicaSet> = claims.owned.iter().map(|rs| (**rs).clone()).collect();
        if !claims.adopt.is_empty() {
            crate::pods::recheck_before_adopting(&self.ctx.client, d).await?;
            let reference = controller_ref(d);
            for rs in claims.adopt {
                let patch = adopt_patch(rs.metadata.uid.as_deref().unwrap_or(""), &reference);
                match api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Strategic(&patch),
                    )
                    .await
                {
                    Ok(adopted) => owned.push(adopted),
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for rs in claims.release {
            let patch = release_patch(rs.metadata.uid.as_deref().unwrap_or(""), &uid);
            match api
                .patch(
                    &rs.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) || is_status(&e, 422) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(owned)
    }

    async fn write_status(&self, d: &Deployment, status: DeploymentStatus) -> anyhow::Result<()> {
        let mut next = d.clone();
        next.status = Some(status);
        self.deployment_api(&d.namespace().unwrap_or_default())
            .replace_status(&d.name_any(), &PostParams::default(), &next)
            .await?;
        Ok(())
    }

    async fn execute(&self, d: &Deployment, plan: Plan) -> anyhow::Result<Outcome> {
        let namespace = d.namespace().unwrap_or_default();
        let api = self.rs_api(&namespace);
        // A ReplicaSet written twice in one sync is written the second time
        // over the version the first write returned.
        let mut versions: HashMap<String, Option<String>> = HashMap::new();
        for action in plan.actions {
            match action {
                Action::Create(rs) => match api.create(&PostParams::default(), &rs).await {
                    Ok(created) => {
                        versions.insert(created.name_any(), created.metadata.resource_version);
                    }
                    Err(e) if is_status(&e, 409) => return self.already_exists(d, &rs).await,
                    Err(e) if namespace_terminating(&e) => return Err(e.into()),
                    Err(e) => {
                        let message = format!(
                            "Failed to create new replica set {:?}: {}",
                            rs.name_any(),
                            error_message(&e)
                        );
                        if progress_deadline(d).is_some() {
                            let mut status = d.status.clone().unwrap_or_default();
                            let c = condition(
                                PROGRESSING,
                                "False",
                                FAILED_RS_CREATE,
                                message.clone(),
                                Timestamp::now(),
                            );
                            set_condition(&mut status, c);
                            // The create error is the one worth returning.
                            let _ = self.write_status(d, status).await;
                        }
                        self.ctx.recorder.warning(d, FAILED_RS_CREATE, message);
                        return Err(e.into());
                    }
                },
                Action::Update(mut rs) => {
                    let name = rs.name_any();
                    if let Some(version) = versions.get(&name) {
                        rs.metadata.resource_version = version.clone();
                    }
                    let updated = api.replace(&name, &PostParams::default(), &rs).await?;
                    versions.insert(name, updated.metadata.resource_version);
                }
                Action::Delete { name } => {
                    match api.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(e) if is_status(&e, 404) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Action::Event { reason, message } => self.ctx.recorder.normal(d, reason, message),
            }
        }
        if d.status.as_ref() != Some(&plan.status) {
            self.write_status(d, plan.status).await?;
        }
        if let Some(revision) = plan.revision {
            let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
            self.deployment_api(&namespace)
                .patch(
                    &d.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
        Ok(match plan.requeue_after {
            Some(after) => Outcome::RequeueAfter(after),
            None => Outcome::Done,
        })
    }

    /// The new ReplicaSet's name is taken. If it is ours with our template,
    /// the cache has not caught up: retry. Otherwise it is a hash
    /// collision: bump `status.collisionCount` so the next hash differs.
    async fn already_exists(&self, d: &Deployment, wanted: &ReplicaSet) -> anyhow::Result<Outcome> {
        let name = wanted.name_any();
        let existing = self
            .rs_api(&d.namespace().unwrap_or_default())
            .get(&name)
            .await?;
        let ours =
            controller_of(&existing).is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
        let template = d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        if ours && equal_ignore_hash(&rs_template(&existing), &template) {
            anyhow::bail!("replica set {name} exists but is not in the cache yet");
        }
        let mut status = d.status.clone().unwrap_or_default();
        status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
        self.write_status(d, status).await?;
        anyhow::bail!("hash collision: replica set {name} already exists; collisionCount bumped")
    }
}

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    // Events come from "deployment-controller", as upstream's (kubectl describe shows it).
    let ctx = Context {
        recorder: EventRecorder::new(ctx.client.clone(), "deployment-controller"),
        ..ctx
    };
    let deployments = ctx.informers.get::<Deployment>();
    let rss = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    forward(&deployments, &queue, |change| {
        vec![ObjectKey::of(change.object().as_ref())]
    });
    {
        let deployments = deployments.clone();
        forward(&rss, &queue, move |change| {
            replica_set_changed(change, &deployments)
        });
    }
    {
        let (rss, deployments) = (rss.clone(), deployments.clone());
        forward(&pods, &queue, move |change| {
            pod_changed(change, &rss, &deployments)
        });
    }
    deployments.wait_synced().await;
    rss.wait_synced().await;
    pods.wait_synced().await;

    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        deployments,
        rss,
        pods,
    });
    let workers = ctx.settings.concurrent_syncs;
    run_workers("deployment", queue, workers, move |key: ObjectKey| {
        let controller = controller.clone();
        async move { controller.sync(key).await }
    })
    .await;
    Ok(())
}
