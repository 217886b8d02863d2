//! The ReplicaSet controller (upstream's `pkg/controller/replicaset`):
//! keeps `spec.replicas` active pods matching each ReplicaSet's selector.
//!
//! One sync of a ReplicaSet:
//! 1. claims pods: its own that still match, plus matching orphans it
//!    adopts (never while it is being deleted); its own that stopped
//!    matching are released;
//! 2. if its expectations are met (the informer has seen every pod it
//!    created or deleted before), creates the missing pods in slow-start
//!    batches (1, 2, 4, ... stopping at the first failing batch) or deletes
//!    the surplus in [`ranking`] order, at most [`BURST_REPLICAS`] either
//!    way;
//! 3. writes the [`status`] (counts, observedGeneration, `ReplicaFailure`),
//!    and looks again after `minReadySeconds` while ready pods are not yet
//!    available.
//!
//! The decisions are pure functions ([`manage_replicas`],
//! [`slow_start_batches`], [`classify_claims`], [`status::calculate_status`],
//! [`ranking::pods_to_delete`]); [`run`] carries them out.

pub mod ranking;
pub mod status;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::selector::{from_optional_label_selector, LabelSelector};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};

use component_base::events::EventRecorder;

use crate::context::Context;
use crate::framework::{
    forward, run_workers, Change, Expectations, Informer, ObjectKey, Outcome, WorkQueue,
};
use crate::pods::{
    adopt_patch, claim, controller_of, controller_ref, is_pod_active, is_pod_ready,
    pod_from_template, release_patch, Claim,
};

/// Most pods created or deleted in one sync (upstream's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// The first slow-start batch (upstream's `SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH: usize = 1;

/// What a sync does about the replica count.
#[derive(Debug, Clone, PartialEq)]
pub enum Manage {
    /// Create this many pods.
    Create(usize),
    /// Delete these pods.
    Delete(Vec<Arc<Pod>>),
    /// The count is right.
    Nothing,
}

/// Upstream's `manageReplicas` decision: the difference between the active
/// `pods` and `desired`, capped at [`BURST_REPLICAS`]; surplus pods are
/// chosen in deletion order, ranking by the `related` pods (those of every
/// ReplicaSet with the same owner) on the same node.
pub fn manage_replicas(
    desired: i32,
    pods: &[Arc<Pod>],
    related: &[Arc<Pod>],
    now: Timestamp,
) -> Manage {
    let desired = usize::try_from(desired).unwrap_or(0);
    match pods.len().cmp(&desired) {
        std::cmp::Ordering::Less => Manage::Create((desired - pods.len()).min(BURST_REPLICAS)),
        std::cmp::Ordering::Greater => {
            let surplus = (pods.len() - desired).min(BURST_REPLICAS);
            Manage::Delete(ranking::pods_to_delete(
                pods.to_vec(),
                related,
                surplus,
                now,
            ))
        }
        std::cmp::Ordering::Equal => Manage::Nothing,
    }
}

/// Upstream's `slowStartBatch` sizes for `count` calls: 1, 2, 4, ... until
/// `count` is reached (the last batch takes what is left).
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut size = remaining.min(SLOW_START_INITIAL_BATCH);
    while size > 0 {
        batches.push(size);
        remaining -= size;
        size = (2 * size).min(remaining);
    }
    batches
}

/// The claim decision over a controller's candidates (its own objects and
/// the namespace's orphans), as upstream's `ClaimPods` and
/// `ClaimReplicaSets`.
#[derive(Debug)]
pub struct Claims<K> {
    /// Ours and matching.
    pub owned: Vec<Arc<K>>,
    /// Matching orphans to adopt.
    pub adopt: Vec<Arc<K>>,
    /// Ours but no longer matching: to release.
    pub release: Vec<Arc<K>>,
}

/// Sort `candidates` into owned, to adopt and to release for the
/// controller with `uid` and `selector`. While it is `deleting` it adopts
/// and releases nothing, and an object of its own that stopped matching is
/// simply not counted (upstream's `ClaimObject`). An object being deleted
/// is never adopted.
pub fn classify_claims<K: Resource>(
    uid: &str,
    selector: &LabelSelector,
    deleting: bool,
    candidates: impl IntoIterator<Item = Arc<K>>,
) -> Claims<K> {
    let mut claims = Claims {
        owned: Vec::new(),
        adopt: Vec::new(),
        release: Vec::new(),
    };
    for object in candidates {
        let labels = object.meta().labels.clone().unwrap_or_default();
        match claim(
            uid,
            selector,
            &labels,
            controller_of(object.as_ref()),
            deleting,
        ) {
            Claim::Owned if selector.matches(&labels) => claims.owned.push(object),
            Claim::Adopt if object.meta().deletion_timestamp.is_none() => claims.adopt.push(object),
            Claim::Release => claims.release.push(object),
            _ => {}
        }
    }
    claims
}

/// Expectations with upstream's per-pod tracking of deletions
/// (`UIDTrackingControllerExpectations`): a pod seen first with a deletion
/// timestamp and then gone counts once, not twice.
#[derive(Clone, Default)]
struct Tracker {
    expectations: Expectations,
    deleting: Arc<Mutex<HashMap<ObjectKey, HashSet<ObjectKey>>>>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, HashSet<ObjectKey>>> {
        self.deleting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expect_creations(&self, rs: &ObjectKey, n: usize) {
        self.lock().remove(rs);
        self.expectations.expect(rs, n, 0);
    }

    fn expect_deletions(&self, rs: &ObjectKey, pods: &[Arc<Pod>]) {
        let keys: HashSet<ObjectKey> = pods.iter().map(|p| ObjectKey::of(p.as_ref())).collect();
        self.expectations.expect(rs, 0, keys.len());
        self.lock().insert(rs.clone(), keys);
    }

    fn creation_observed(&self, rs: &ObjectKey) {
        self.expectations.creation_observed(rs);
    }

    /// The deletion of `pod` was seen (or failed): counts once per pod.
    fn deletion_observed(&self, rs: &ObjectKey, pod: &ObjectKey) {
        let expected = self
            .lock()
            .get_mut(rs)
            .is_some_and(|pending| pending.remove(pod));
        if expected {
            self.expectations.deletion_observed(rs);
        }
    }

    fn satisfied(&self, rs: &ObjectKey) -> bool {
        self.expectations.satisfied(rs)
    }

    fn remove(&self, rs: &ObjectKey) {
        self.lock().remove(rs);
        self.expectations.remove(rs);
    }
}

/// The ReplicaSet a controller reference points at, if it is in the cache
/// with that UID.
fn resolve(
    rss: &Informer<ReplicaSet>,
    namespace: &str,
    reference: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Option<Arc<ReplicaSet>> {
    if reference.kind != "ReplicaSet" {
        return None;
    }
    let rs = rss.get(&ObjectKey::new(namespace, &reference.name))?;
    (rs.metadata.uid.as_deref() == Some(reference.uid.as_str())).then_some(rs)
}

/// The ReplicaSets in the pod's namespace whose selector matches it (for
/// orphans looking for an adopter).
fn matching_replica_sets(rss: &Informer<ReplicaSet>, pod: &Pod) -> Vec<ObjectKey> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    rss.list_namespace(&namespace)
        .iter()
        .filter(|rs| {
            from_optional_label_selector(rs.spec.as_ref().map(|s| &s.selector))
                .map(|s| !s.is_empty() && s.matches(&labels))
                .unwrap_or(false)
        })
        .map(|rs| ObjectKey::of(rs.as_ref()))
        .collect()
}

fn min_ready_seconds(rs: &ReplicaSet) -> i32 {
    rs.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// Which ReplicaSets a pod change wakes, with expectation bookkeeping and
/// the delayed availability check (upstream's addPod/updatePod/deletePod).
fn pod_changed(
    change: &Change<Pod>,
    rss: &Informer<ReplicaSet>,
    tracker: &Tracker,
    queue: &WorkQueue<ObjectKey>,
) -> Vec<ObjectKey> {
    let owner = |pod: &Pod| {
        let reference = controller_of(pod)?;
        resolve(
            rss,
            pod.metadata.namespace.as_deref().unwrap_or(""),
            reference,
        )
    };
    let deleted = |pod: &Pod| -> Vec<ObjectKey> {
        match owner(pod) {
            Some(rs) => {
                let key = ObjectKey::of(rs.as_ref());
                tracker.deletion_observed(&key, &ObjectKey::of(pod));
                vec![key]
            }
            None => Vec::new(),
        }
    };
    match change {
        Change::Added(pod) if pod.metadata.deletion_timestamp.is_some() => deleted(pod),
        Change::Added(pod) => match owner(pod) {
            Some(rs) => {
                let key = ObjectKey::of(rs.as_ref());
                tracker.creation_observed(&key);
                vec![key]
            }
            None if controller_of(pod.as_ref()).is_none() => matching_replica_sets(rss, pod),
            None => Vec::new(),
        },
        Change::Updated { old, new } => {
            let labels_changed = old.metadata.labels != new.metadata.labels;
            if new.metadata.deletion_timestamp.is_some() {
                let mut keys = deleted(new);
                if labels_changed {
                    keys.extend(deleted(old));
                }
                return keys;
            }
            let mut keys = Vec::new();
            let ref_changed = controller_of(old.as_ref()) != controller_of(new.as_ref());
            if ref_changed {
                keys.extend(owner(old).map(|rs| ObjectKey::of(rs.as_ref())));
            }
            match owner(new) {
                Some(rs) => {
                    let key = ObjectKey::of(rs.as_ref());
                    let min_ready = min_ready_seconds(&rs);
                    if !is_pod_ready(old) && is_pod_ready(new) && min_ready > 0 {
                        // Look again once the pod has been ready long
                        // enough to count as available (plus a second
                        // against clock skew, as upstream).
                        let delay = Duration::from_secs(min_ready as u64 + 1);
                        queue.add_after(key.clone(), delay);
                    }
                    keys.push(key);
                }
                None if controller_of(new.as_ref()).is_none()
                    && (labels_changed || ref_changed) =>
                {
                    keys.extend(matching_replica_sets(rss, new));
                }
                None => {}
            }
            keys
        }
        Change::Deleted(pod) => deleted(pod),
    }
}

/// The message of an API error as upstream prints it (`err.Error()`).
pub fn error_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(e) => e.message.clone(),
        other => other.to_string(),
    }
}

pub fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(e) if e.code == code)
}

/// Whether an error says the namespace is terminating (creations there
/// fail and are not worth reporting).
pub fn namespace_terminating(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(e) => {
            e.code == 403 && e.message.contains("because it is being terminated")
        }
        _ => false,
    }
}

struct Controller {
    ctx: Context,
    rss: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    tracker: Tracker,
}

impl Controller {
    async fn sync(&self, key: ObjectKey) -> anyhow::Result<Outcome> {
        let Some(rs) = self.rss.get(&key) else {
            self.tracker.remove(&key);
            return Ok(Outcome::Done);
        };
        let needs_sync = self.tracker.satisfied(&key);
        let selector = match from_optional_label_selector(rs.spec.as_ref().map(|s| &s.selector)) {
            Ok(selector) => selector,
            Err(error) => {
                // An invalid selector matches no pods; retrying cannot help.
                tracing::warn!(replicaset = %key, %error, "invalid selector");
                return Ok(Outcome::Done);
            }
        };
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let deleting = rs.metadata.deletion_timestamp.is_some();
        let candidates = self
            .pods
            .controlled_by(&uid)
            .into_iter()
            .chain(self.pods.orphans(&key.namespace))
            .filter(|p| is_pod_active(p));
        let claims = classify_claims(&uid, &selector, deleting, candidates);
        let mut pods = claims.owned;
        pods.extend(self.adopt(&rs, claims.adopt).await?);
        self.release(&rs, claims.release).await?;

        let now = Timestamp::now();
        let mut manage_error = None;
        if needs_sync && !deleting {
            if let Err(error) = self.manage(&rs, &key, &pods, now).await {
                manage_error = Some(error);
            }
        }
        let message = manage_error.as_ref().map(|e| format!("{e:#}"));
        let status = status::calculate_status(&rs, &pods, message.as_deref(), now);
        let updated = if rs.status.as_ref() != Some(&status) {
            let mut next = (*rs).clone();
            next.status = Some(status);
            let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
            api.replace_status(&key.name, &PostParams::default(), &next)
                .await?
        } else {
            (*rs).clone()
        };
        if let Some(error) = manage_error {
            return Err(error);
        }
        // Ready pods waiting out minReadySeconds become available without
        // any event: look again then.
        let min_ready = min_ready_seconds(&updated);
        let desired = updated.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = updated.status.unwrap_or_default();
        if min_ready > 0
            && st.ready_replicas.unwrap_or(0) == desired
            && st.available_replicas.unwrap_or(0) != desired
        {
            return Ok(Outcome::RequeueAfter(Duration::from_secs(min_ready as u64)));
        }
        Ok(Outcome::Done)
    }

    async fn adopt(
        &self,
        rs: &ReplicaSet,
        orphans: Vec<Arc<Pod>>,
    ) -> anyhow::Result<Vec<Arc<Pod>>> {
        if orphans.is_empty() {
            return Ok(Vec::new());
        }
        crate::pods::recheck_before_adopting(&self.ctx.client, rs).await?;
        let owner = controller_ref(rs);
        let mut adopted = Vec::new();
        for pod in orphans {
            let api: Api<Pod> = Api::namespaced(
                self.ctx.client.clone(),
                &pod.namespace().unwrap_or_default(),
            );
            let patch = adopt_patch(pod.metadata.uid.as_deref().unwrap_or(""), &owner);
            match api
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                Ok(pod) => adopted.push(Arc::new(pod)),
                // Gone meanwhile: nothing to adopt.
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(adopted)
    }

    async fn release(&self, rs: &ReplicaSet, pods: Vec<Arc<Pod>>) -> anyhow::Result<()> {
        let owner_uid = rs.metadata.uid.clone().unwrap_or_default();
        for pod in pods {
            let api: Api<Pod> = Api::namespaced(
                self.ctx.client.clone(),
                &pod.namespace().unwrap_or_default(),
            );
            let patch = release_patch(pod.metadata.uid.as_deref().unwrap_or(""), &owner_uid);
            match api
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await
            {
                Ok(_) => {}
                // Gone, or replaced by a namesake (the UID guard): nothing
                // of ours to release.
                Err(e) if is_status(&e, 404) || is_status(&e, 422) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The pods of every ReplicaSet controlled by `rs`'s controller (just
    /// `rs`'s own when it has none), to rank co-located pods.
    fn related_pods(&self, rs: &ReplicaSet) -> Vec<Arc<Pod>> {
        let siblings: Vec<Arc<ReplicaSet>> = match controller_of(rs) {
            Some(owner) => self.rss.controlled_by(&owner.uid),
            None => vec![Arc::new(rs.clone())],
        };
        siblings
            .iter()
            .flat_map(|s| {
                self.pods
                    .controlled_by(s.metadata.uid.as_deref().unwrap_or(""))
            })
            .collect()
    }

    async fn manage(
        &self,
        rs: &ReplicaSet,
        key: &ObjectKey,
        pods: &[Arc<Pod>],
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let desired = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let related = self.related_pods(rs);
        match manage_replicas(desired, pods, &related, now) {
            Manage::Nothing => Ok(()),
            Manage::Create(n) => self.create_pods(rs, key, n).await,
            Manage::Delete(victims) => self.delete_pods(rs, key, victims).await,
        }
    }

    async fn create_pods(&self, rs: &ReplicaSet, key: &ObjectKey, n: usize) -> anyhow::Result<()> {
        let template = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        let has_labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .is_some_and(|l| !l.is_empty());
        if !has_labels {
            anyhow::bail!("unable to create pods, no labels");
        }
        let pod = pod_from_template(&template, &key.namespace, &key.name, controller_ref(rs));
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        self.tracker.expect_creations(key, n);
        let mut created = 0;
        let mut failure = None;
        for batch in slow_start_batches(n) {
            let results = futures::future::join_all((0..batch).map(|_| async {
                match api.create(&PostParams::default(), &pod).await {
                    Ok(made) => {
                        self.ctx.recorder.normal(
                            rs,
                            "SuccessfulCreate",
                            format!("Created pod: {}", made.name_any()),
                        );
                        Ok(())
                    }
                    // Every create fails in a terminating namespace: not
                    // worth an event or an error.
                    Err(e) if namespace_terminating(&e) => Ok(()),
                    Err(e) => {
                        self.ctx.recorder.warning(
                            rs,
                            "FailedCreate",
                            format!("Error creating: {}", error_message(&e)),
                        );
                        Err(e)
                    }
                }
            }))
            .await;
            let failed: Vec<kube::Error> = results.into_iter().filter_map(Result::err).collect();
            created += batch - failed.len();
            if let Some(first) = failed.into_iter().next() {
                failure = Some(first);
                break;
            }
        }
        // Pods never attempted, or that failed, will never be observed.
        for _ in created..n {
            self.tracker.creation_observed(key);
        }
        match failure {
            Some(e) => Err(anyhow::anyhow!(error_message(&e))),
            None => Ok(()),
        }
    }

    async fn delete_pods(
        &self,
        rs: &ReplicaSet,
        key: &ObjectKey,
        victims: Vec<Arc<Pod>>,
    ) -> anyhow::Result<()> {
        self.tracker.expect_deletions(key, &victims);
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let results = futures::future::join_all(victims.iter().map(|pod| async {
            let name = pod.name_any();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    self.ctx.recorder.normal(
                        rs,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    );
                    Ok(())
                }
                Err(e) => {
                    // The informer will not see this deletion.
                    self.tracker
                        .deletion_observed(key, &ObjectKey::of(pod.as_ref()));
                    if is_status(&e, 404) {
                        return Ok(());
                    }
                    self.ctx.recorder.warning(
                        rs,
                        "FailedDelete",
                        format!("Error deleting: {}", error_message(&e)),
                    );
                    Err(e)
                }
            }
        }))
        .await;
        match results.into_iter().find_map(Result::err) {
            Some(e) => Err(anyhow::anyhow!(error_message(&e))),
            None => Ok(()),
        }
    }
}

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    // Events come from "replicaset-controller", as upstream's (kubectl describe shows it).
    let ctx = Context {
        recorder: EventRecorder::new(ctx.client.clone(), "replicaset-controller"),
        ..ctx
    };
    let rss = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    let tracker = Tracker::default();

    {
        let tracker = tracker.clone();
        forward(&rss, &queue, move |change| {
            if let Change::Deleted(rs) = change {
                tracker.remove(&ObjectKey::of(rs.as_ref()));
            }
            vec![ObjectKey::of(change.object().as_ref())]
        });
    }
    {
        let (rss, tracker, delayed) = (rss.clone(), tracker.clone(), queue.clone());
        forward(&pods, &queue, move |change| {
            pod_changed(change, &rss, &tracker, &delayed)
        });
    }
    rss.wait_synced().await;
    pods.wait_synced().await;

    let controller = Arc::new(Controller {
        ctx: ctx.clone(),
        rss,
        pods,
        tracker,
    });
    let workers = ctx.settings.concurrent_syncs;
    run_workers("replicaset", queue, workers, move |key: ObjectKey| {
        let controller = controller.clone();
        async move { controller.sync(key).await }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::selector::parse;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(name: &str, pod_labels: &[(&str, &str)], owner: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(labels(pod_labels)),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(true),
                        kind: "ReplicaSet".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn the_diff_creates_or_deletes_up_to_the_burst() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let three: Vec<_> = (0..3).map(|i| pod(&format!("p{i}"), &[], None)).collect();
        let cases: &[(i32, usize, &str)] = &[
            (5, 3, "create 2"),
            (3, 3, "nothing"),
            (1, 3, "delete 2"),
            (0, 3, "delete 3"),
            (2000, 0, "create 500"),
        ];
        for &(desired, have, want) in cases {
            let got = match manage_replicas(desired, &three[..have.min(3)], &[], now) {
                Manage::Create(n) => format!("create {n}"),
                Manage::Delete(pods) => format!("delete {}", pods.len()),
                Manage::Nothing => "nothing".to_string(),
            };
            assert_eq!(got, want, "desired {desired}, have {have}");
        }
    }

    #[test]
    fn slow_start_doubles_until_the_count() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), [1]);
        assert_eq!(slow_start_batches(3), [1, 2]);
        assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
        assert_eq!(slow_start_batches(500).iter().sum::<usize>(), 500);
    }

    #[test]
    fn claims_adopt_orphans_and_release_strays() {
        let selector = parse("app=web").unwrap();
        let web = [("app", "web")];
        let db = [("app", "db")];
        let mut dying = (*pod("dying-orphan", &web, None)).clone();
        dying.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(0).unwrap()));
        let candidates = vec![
            pod("mine", &web, Some("rs")),
            pod("stray", &db, Some("rs")),
            pod("orphan", &web, None),
            pod("other-orphan", &db, None),
            pod("theirs", &web, Some("other")),
            Arc::new(dying),
        ];
        let claims = classify_claims("rs", &selector, false, candidates.clone());
        assert_eq!(names(&claims.owned), ["mine"]);
        assert_eq!(names(&claims.adopt), ["orphan"]);
        assert_eq!(names(&claims.release), ["stray"]);

        // A ReplicaSet being deleted neither adopts nor releases, and does
        // not count its strays.
        let claims = classify_claims("rs", &selector, true, candidates);
        assert_eq!(names(&claims.owned), ["mine"]);
        assert!(claims.adopt.is_empty() && claims.release.is_empty());
    }

    #[test]
    fn a_deletion_seen_twice_counts_once() {
        let tracker = Tracker::default();
        let rs = ObjectKey::new("ns", "rs");
        let a = pod("a", &[], Some("rs"));
        let b = pod("b", &[], Some("rs"));
        tracker.expect_deletions(&rs, &[a.clone(), b.clone()]);
        // Pod a is seen terminating, then gone: one observation.
        tracker.deletion_observed(&rs, &ObjectKey::of(a.as_ref()));
        tracker.deletion_observed(&rs, &ObjectKey::of(a.as_ref()));
        assert!(!tracker.satisfied(&rs));
        tracker.deletion_observed(&rs, &ObjectKey::of(b.as_ref()));
        assert!(tracker.satisfied(&rs));
    }
}
