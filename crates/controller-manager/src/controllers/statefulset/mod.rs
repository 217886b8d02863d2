//! The StatefulSet controller (upstream's `pkg/controller/statefulset`):
//! pods with stable names, hostnames and claims, created and deleted in
//! ordinal order, rolled to new templates through ControllerRevisions.
//!
//! - [`identity`]: a pod's name, labels, hostname, claims and health;
//! - [`plan`]: the pure decision (what to create, delete or relabel, and
//!   the status);
//! - this module: the executor. Each sync claims the set's revisions and
//!   pods (adopting orphans, releasing what no longer matches), finds or
//!   makes the update revision, carries out the plan (claims before their
//!   pod; `Parallel` sets in slow-start batches), writes the status when it
//!   changed, and truncates the revision history.
//!
//! Events are upstream's: `SuccessfulCreate` "create Pod web-0 in
//! StatefulSet web successful", `SuccessfulCreate` "create Claim www-web-0
//! Pod web-0 in StatefulSet web success", `SuccessfulDelete`, and
//! `FailedCreate`/`FailedDelete` warnings with the API error.
//!
//! Left out: PVC retention (`persistentVolumeClaimRetentionPolicy`), and
//! `maxUnavailable` for rolling updates (alpha upstream; one pod at a time
//! as with the gate off).

pub mod identity;
pub mod plan;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::Context as _;
use api::selector::{from_label_selector, LabelSelector};
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use crate::context::Context;
use crate::controllers::history::{self, UpdateRevision};
use crate::framework::{forward, run_workers, Change, Informer, ObjectKey, Outcome, WorkQueue};
use crate::pods::{controller_of, controller_ref};
use plan::{Action, Observed, Plan, Revision, Why};

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let sets = ctx.informers.get::<StatefulSet>();
    let pods = ctx.informers.get::<Pod>();
    let revisions = ctx.informers.get::<ControllerRevision>();
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let queue = WorkQueue::new();
    forward(&sets, &queue, |change| {
        vec![ObjectKey::of(&**change.object())]
    });
    let lookup = sets.clone();
    forward(&pods, &queue, move |change| sets_for_pod(&lookup, change));
    sets.wait_synced().await;
    pods.wait_synced().await;
    revisions.wait_synced().await;
    claims.wait_synced().await;
    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        sets,
        pods,
        revisions,
        claims,
    });
    let workers = ctx.settings.concurrent_syncs;
    run_workers("statefulset", queue, workers, move |key: ObjectKey| {
        let controller = controller.clone();
        async move { controller.sync(&key).await }
    })
    .await;
    Ok(())
}

/// The set that controls `pod`, if it is a StatefulSet we know (the UID
/// must match, as upstream's `resolveControllerRef`).
fn owner_key(sets: &Informer<StatefulSet>, pod: &Pod) -> Option<ObjectKey> {
    let owner = controller_of(pod)?;
    if owner.kind != "StatefulSet" {
        return None;
    }
    let key = ObjectKey::new(
        pod.metadata.namespace.clone().unwrap_or_default(),
        &owner.name,
    );
    let set = sets.get(&key)?;
    (set.metadata.uid.as_deref() == Some(owner.uid.as_str())).then_some(key)
}

/// The sets that might adopt an orphan `pod`: same namespace, selecting it,
/// and naming it as a member.
fn adopters(sets: &Informer<StatefulSet>, pod: &Pod) -> Vec<ObjectKey> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sets.list_namespace(namespace)
        .iter()
        .filter(|set| identity::is_member_of(set, pod))
        .filter(|set| {
            set.spec
                .as_ref()
                .and_then(|s| from_label_selector(&s.selector).ok())
                .is_some_and(|sel| !sel.is_empty() && sel.matches(&labels))
        })
        .map(|set| ObjectKey::of(&**set))
        .collect()
}

/// The sets a pod change concerns (upstream's pod event handlers).
fn sets_for_pod(sets: &Informer<StatefulSet>, change: &Change<Pod>) -> Vec<ObjectKey> {
    let mut keys = Vec::new();
    match change {
        Change::Added(pod) => match owner_key(sets, pod) {
            Some(key) => keys.push(key),
            None if controller_of(&**pod).is_none() => keys.extend(adopters(sets, pod)),
            None => {}
        },
        Change::Deleted(pod) => keys.extend(owner_key(sets, pod)),
        Change::Updated { old, new } => {
            keys.extend(owner_key(sets, new));
            keys.extend(owner_key(sets, old));
            let relabelled = old.metadata.labels != new.metadata.labels;
            let reowned = controller_of(&**old) != controller_of(&**new);
            if controller_of(&**new).is_none() && (relabelled || reowned) {
                keys.extend(adopters(sets, new));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

struct Controller {
    ctx: Context,
    sets: Informer<StatefulSet>,
    pods: Informer<Pod>,
    revisions: Informer<ControllerRevision>,
    claims: Informer<PersistentVolumeClaim>,
}

/// The message of an API error (what upstream's events quote).
fn message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(e) => e.message.clone(),
        other => other.to_string(),
    }
}

fn is_status(error: &kube::Error, codes: &[u16]) -> bool {
    matches!(error, kube::Error::Api(e) if codes.contains(&e.code))
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Outcome> {
        let Some(set) = self.sets.get(key) else {
            return Ok(Outcome::Done);
        };
        let Some(spec) = set.spec.as_ref() else {
            return Ok(Outcome::Done);
        };
        let selector = match from_label_selector(&spec.selector) {
            Ok(selector) => selector,
            Err(error) => {
                // Not transient: retrying cannot help (upstream drops it).
                tracing::warn!(set = %key, %error, "invalid selector");
                return Ok(Outcome::Done);
            }
        };
        let revisions = self.claim_revisions(&set, &selector).await?;
        let pods = self.claim_pods(&set, &selector).await?;
        let (sorted, current, update, collision_count) =
            self.resolve_revisions(&set, revisions).await?;

        let current_template = history::template_of(&current).unwrap_or(spec.template.clone());
        let update_template = history::template_of(&update).unwrap_or(spec.template.clone());
        let current_name = current.metadata.name.clone().unwrap_or_default();
        let update_name = update.metadata.name.clone().unwrap_or_default();
        let claims = &self.claims;
        let claim_exists = |name: &str| claims.get(&ObjectKey::new(&key.namespace, name)).is_some();
        let plan = plan::plan(&Observed {
            set: &set,
            current: Revision {
                name: &current_name,
                template: &current_template,
            },
            update: Revision {
                name: &update_name,
                template: &update_template,
            },
            collision_count,
            pods: &pods,
            claim_exists: &claim_exists,
            now: Timestamp::now(),
        });

        // As upstream: the status is written even when an action failed,
        // and history is kept in bounds either way.
        let acted = self.execute(&set, &plan).await;
        let status = self.write_status(&set, &plan.status).await;
        let live: HashSet<&str> = pods
            .iter()
            .map(|p| identity::revision(p))
            .chain([current_name.as_str(), update_name.as_str()])
            .collect();
        let limit = spec
            .revision_history_limit
            .unwrap_or(history::DEFAULT_HISTORY_LIMIT);
        let truncated = self.truncate(&set, &sorted, &live, limit).await;
        acted?;
        status?;
        truncated?;
        Ok(plan
            .requeue_after
            .map_or(Outcome::Done, Outcome::RequeueAfter))
    }

    fn sets_api(&self, set: &StatefulSet) -> Api<StatefulSet> {
        Api::namespaced(self.ctx.client.clone(), namespace(set))
    }

    fn revisions_api(&self, set: &StatefulSet) -> Api<ControllerRevision> {
        Api::namespaced(self.ctx.client.clone(), namespace(set))
    }

    fn pods_api(&self, set: &StatefulSet) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), namespace(set))
    }

    /// The set's revisions, orphans that match adopted (upstream's
    /// `adoptOrphanRevisions` + `ListRevisions`).
    async fn claim_revisions(
        &self,
        set: &StatefulSet,
        selector: &LabelSelector,
    ) -> anyhow::Result<Vec<Arc<ControllerRevision>>> {
        let uid = set.metadata.uid.as_deref().unwrap_or_default();
        let claimed = history::claim_revisions(&self.revisions, namespace(set), uid, selector);
        let mut revisions = claimed.owned;
        if !claimed.adopt.is_empty() && set.metadata.deletion_timestamp.is_none() {
            crate::pods::recheck_before_adopting(&self.ctx.client, set).await?;
            let api = self.revisions_api(set);
            for orphan in &claimed.adopt {
                if let Some(adopted) = history::adopt(&api, &**orphan, &controller_ref(set)).await?
                {
                    revisions.push(Arc::new(adopted));
                }
            }
        }
        Ok(revisions)
    }

    /// The set's pods: its members by name that it selects, orphans adopted
    /// and pods it no longer selects released (upstream's
    /// `getPodsForStatefulSet`).
    async fn claim_pods(
        &self,
        set: &StatefulSet,
        selector: &LabelSelector,
    ) -> anyhow::Result<Vec<Arc<Pod>>> {
        let uid = set.metadata.uid.as_deref().unwrap_or_default();
        let candidates = self
            .pods
            .controlled_by(uid)
            .into_iter()
            .chain(self.pods.orphans(namespace(set)));
        let claimed = history::classify(candidates, uid, selector, |pod| {
            identity::is_member_of(set, pod)
        });
        let api = self.pods_api(set);
        let mut pods = claimed.owned;
        if !claimed.adopt.is_empty() && set.metadata.deletion_timestamp.is_none() {
            crate::pods::recheck_before_adopting(&self.ctx.client, set).await?;
            for orphan in &claimed.adopt {
                if let Some(adopted) = history::adopt(&api, &**orphan, &controller_ref(set)).await?
                {
                    pods.push(Arc::new(adopted));
                }
            }
        }
        for pod in &claimed.release {
            history::release(&api, &**pod, uid).await?;
        }
        Ok(pods)
    }

    /// The sorted history, the current and update revisions, and the
    /// collision count (upstream's `getStatefulSetRevisions`).
    async fn resolve_revisions(
        &self,
        set: &StatefulSet,
        mut sorted: Vec<Arc<ControllerRevision>>,
    ) -> anyhow::Result<(
        Vec<Arc<ControllerRevision>>,
        Arc<ControllerRevision>,
        Arc<ControllerRevision>,
        i32,
    )> {
        history::sort_revisions(&mut sorted);
        let status = set.status.clone().unwrap_or_default();
        let mut collision_count = status.collision_count.unwrap_or(0);
        let template = &set.spec.as_ref().context("no spec")?.template;
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let mut candidate = history::new_revision(
            controller_ref(set),
            namespace(set),
            &labels,
            history::template_patch(template),
            history::next_revision(&sorted),
            collision_count,
        );
        // Upstream copies the set's annotations onto each revision.
        candidate.metadata.annotations = set.metadata.annotations.clone();
        let api = self.revisions_api(set);
        let update = match history::resolve_update(&sorted, candidate) {
            UpdateRevision::Reuse(revision) => revision,
            UpdateRevision::Renumber(revision, number) => {
                Arc::new(history::renumber(&api, &revision, number).await?)
            }
            UpdateRevision::Create(revision) => {
                Arc::new(history::create(&api, name(set), &revision, &mut collision_count).await?)
            }
        };
        let current = status
            .current_revision
            .as_deref()
            .and_then(|n| {
                sorted
                    .iter()
                    .find(|r| r.metadata.name.as_deref() == Some(n))
            })
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((sorted, current, update, collision_count))
    }

    /// Carry out the plan. OrderedReady plans are a single step (plus
    /// relabels) done in order; Parallel plans go phase by phase (replica
    /// steps, then scale-down deletions, then the update deletion), each in
    /// slow-start batches so a failing create is not repeated hundreds of
    /// times, stopping at the first failing phase.
    async fn execute(&self, set: &StatefulSet, plan: &Plan) -> anyhow::Result<()> {
        if plan.monotonic {
            for action in &plan.actions {
                self.act(set, action).await?;
            }
            return Ok(());
        }
        let phase = |a: &Action| match a {
            Action::Delete {
                why: Why::ScaleDown,
                ..
            } => 1,
            Action::Delete {
                why: Why::Update, ..
            } => 2,
            _ => 0,
        };
        for wanted in 0..3 {
            let actions: Vec<&Action> =
                plan.actions.iter().filter(|a| phase(a) == wanted).collect();
            let mut rest = actions.as_slice();
            let mut batch = 1;
            while !rest.is_empty() {
                let (now, later) = rest.split_at(batch.min(rest.len()));
                let results = join_all(now.iter().map(|a| self.act(set, a))).await;
                if let Some(error) = results.into_iter().find_map(Result::err) {
                    return Err(error);
                }
                rest = later;
                batch *= 2;
            }
        }
        Ok(())
    }

    async fn act(&self, set: &StatefulSet, action: &Action) -> anyhow::Result<()> {
        match action {
            Action::Create { pod, claims } => self.create_pod(set, pod, claims).await,
            Action::CreateClaims { pod, claims } => self.create_claims(set, pod, claims).await,
            Action::Delete { pod, uid, .. } => self.delete_pod(set, pod, uid.as_deref()).await,
            Action::Relabel { pod, labels } => self.relabel(set, pod, labels).await,
        }
    }

    /// Create `claims` for `pod` (upstream's `createPersistentVolumeClaims`).
    /// One that exists already is fine; a 404 (the server serves no
    /// PersistentVolumeClaims, or the namespace is gone) is recorded as a
    /// warning and tolerated, so pods still come up where storage is not
    /// served.
    async fn create_claims(
        &self,
        set: &StatefulSet,
        pod: &str,
        claims: &[PersistentVolumeClaim],
    ) -> anyhow::Result<()> {
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.ctx.client.clone(), namespace(set));
        let mut failures = Vec::new();
        for claim in claims {
            let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
            match api.create(&PostParams::default(), claim).await {
                Ok(_) => self.ctx.recorder.normal(
                    set,
                    "SuccessfulCreate",
                    format!(
                        "create Claim {claim_name} Pod {pod} in StatefulSet {} success",
                        name(set)
                    ),
                ),
                Err(e) if is_status(&e, &[409]) => {}
                Err(e) => {
                    self.ctx.recorder.warning(
                        set,
                        "FailedCreate",
                        format!(
                            "create Claim {claim_name} for Pod {pod} in StatefulSet {} failed error: {}",
                            name(set),
                            message(&e)
                        ),
                    );
                    if !is_status(&e, &[404]) {
                        failures.push(format!(
                            "failed to create PVC {claim_name}: {}",
                            message(&e)
                        ));
                    }
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(failures.join("; "))
        }
    }

    /// Create the pod after its claims (upstream's `CreateStatefulPod`).
    async fn create_pod(
        &self,
        set: &StatefulSet,
        pod: &Pod,
        claims: &[PersistentVolumeClaim],
    ) -> anyhow::Result<()> {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        let failed = |error: String| {
            self.ctx.recorder.warning(
                set,
                "FailedCreate",
                format!(
                    "create Pod {pod_name} in StatefulSet {} failed error: {error}",
                    name(set)
                ),
            );
        };
        if let Err(error) = self.create_claims(set, pod_name, claims).await {
            failed(format!("{error:#}"));
            return Err(error);
        }
        match self.pods_api(set).create(&PostParams::default(), pod).await {
            Ok(_) => {
                self.ctx.recorder.normal(
                    set,
                    "SuccessfulCreate",
                    format!(
                        "create Pod {pod_name} in StatefulSet {} successful",
                        name(set)
                    ),
                );
                Ok(())
            }
            // Already there: our cache lags; its event brings us back.
            Err(e) if is_status(&e, &[409]) => Ok(()),
            Err(e) => {
                failed(message(&e));
                Err(e).with_context(|| format!("creating pod {pod_name}"))
            }
        }
    }

    /// Delete the pod, guarded by its UID so a newer namesake survives a
    /// stale cache.
    async fn delete_pod(
        &self,
        set: &StatefulSet,
        pod: &str,
        uid: Option<&str>,
    ) -> anyhow::Result<()> {
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.pods_api(set).delete(pod, &params).await {
            Ok(_) => {
                self.ctx.recorder.normal(
                    set,
                    "SuccessfulDelete",
                    format!("delete Pod {pod} in StatefulSet {} successful", name(set)),
                );
                Ok(())
            }
            Err(e) if is_status(&e, &[404, 409]) => Ok(()),
            Err(e) => {
                self.ctx.recorder.warning(
                    set,
                    "FailedDelete",
                    format!(
                        "delete Pod {pod} in StatefulSet {} failed error: {}",
                        name(set),
                        message(&e)
                    ),
                );
                Err(e).with_context(|| format!("deleting pod {pod}"))
            }
        }
    }

    /// Restore a pod's identity labels (upstream's `UpdateStatefulPod`).
    async fn relabel(
        &self,
        set: &StatefulSet,
        pod: &str,
        labels: &BTreeMap<String, String>,
    ) -> anyhow::Result<()> {
        let patch = json!({"metadata": {"labels": labels}});
        match self
            .pods_api(set)
            .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.ctx.recorder.normal(
                    set,
                    "SuccessfulUpdate",
                    format!("update Pod {pod} in StatefulSet {} successful", name(set)),
                );
                Ok(())
            }
            Err(e) if is_status(&e, &[404]) => Ok(()),
            Err(e) => {
                self.ctx.recorder.warning(
                    set,
                    "FailedUpdate",
                    format!(
                        "update Pod {pod} in StatefulSet {} failed error: {}",
                        name(set),
                        message(&e)
                    ),
                );
                Err(e).with_context(|| format!("relabelling pod {pod}"))
            }
        }
    }

    /// Write the status through the status subresource when it changed.
    async fn write_status(
        &self,
        set: &StatefulSet,
        status: &StatefulSetStatus,
    ) -> anyhow::Result<()> {
        if set.status.as_ref() == Some(status) {
            return Ok(());
        }
        let patch = json!({ "status": status });
        match self
            .sets_api(set)
            .patch_status(name(set), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, &[404]) => Ok(()),
            Err(e) => Err(e).context("writing StatefulSet status"),
        }
    }

    /// Delete the oldest revisions beyond the limit that nothing uses.
    async fn truncate(
        &self,
        set: &StatefulSet,
        sorted: &[Arc<ControllerRevision>],
        live: &HashSet<&str>,
        limit: i32,
    ) -> anyhow::Result<()> {
        let is_live =
            |r: &ControllerRevision| live.contains(r.metadata.name.as_deref().unwrap_or_default());
        let api = self.revisions_api(set);
        for revision in history::to_truncate(sorted, is_live, limit) {
            history::delete(&api, revision.metadata.name.as_deref().unwrap_or_default()).await?;
        }
        Ok(())
    }
}

fn name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or_default()
}

fn namespace(set: &StatefulSet) -> &str {
    set.metadata.namespace.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector as Selector, ObjectMeta, OwnerReference,
    };

    fn set(name: &str, uid: &str) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                selector: Selector {
                    match_labels: Some([("app".to_string(), name.to_string())].into()),
                    ..Default::default()
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, app: &str, owner: Option<(&str, &str)>, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some(rv.into()),
                labels: Some([("app".to_string(), app.to_string())].into()),
                owner_references: owner.map(|(name, uid)| {
                    vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "StatefulSet".into(),
                        name: name.into(),
                        uid: uid.into(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn pod_changes_reach_their_owner_or_the_sets_that_would_adopt_them() {
        let sets = Informer::<StatefulSet>::empty();
        sets.apply(set("web", "uid-web"));
        sets.apply(set("db", "uid-db"));
        let key = |n: &str| ObjectKey::new("ns", n);
        let added = |p: Pod| sets_for_pod(&sets, &Change::Added(Arc::new(p)));
        let cases = [
            (
                "owned",
                added(pod("web-0", "web", Some(("web", "uid-web")), "1")),
                vec![key("web")],
            ),
            (
                "stale owner uid",
                added(pod("web-0", "web", Some(("web", "old")), "1")),
                vec![],
            ),
            (
                "orphan member",
                added(pod("web-3", "web", None, "1")),
                vec![key("web")],
            ),
            (
                "orphan not named as a member",
                added(pod("cache-0", "web", None, "1")),
                vec![],
            ),
            (
                "orphan not selected",
                added(pod("db-0", "web", None, "1")),
                vec![],
            ),
        ];
        for (what, got, want) in cases {
            assert_eq!(got, want, "{what}");
        }
        let old = Arc::new(pod("web-0", "web", Some(("web", "uid-web")), "1"));
        let new = Arc::new(pod("web-0", "web", None, "2"));
        let released = sets_for_pod(&sets, &Change::Updated { old, new });
        assert_eq!(released, [key("web")]);
    }

    #[test]
    fn only_members_by_name_are_claimed() {
        let web = set("web", "uid-web");
        let selector = from_label_selector(&web.spec.as_ref().unwrap().selector).unwrap();
        let pods = [
            pod("web-0", "web", Some(("web", "uid-web")), "1"),
            pod("web-1", "web", None, "1"),
            pod("other-0", "web", Some(("web", "uid-web")), "1"),
            pod("other-1", "web", None, "1"),
        ];
        let claimed = history::classify(pods.map(Arc::new), "uid-web", &selector, |p| {
            identity::is_member_of(&web, p)
        });
        let names = |v: &[Arc<Pod>]| -> Vec<String> {
            v.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
        };
        assert_eq!(names(&claimed.owned), ["web-0"]);
        assert_eq!(names(&claimed.adopt), ["web-1"]);
        assert_eq!(names(&claimed.release), ["other-0"]);
    }
}
