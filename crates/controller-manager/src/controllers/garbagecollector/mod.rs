//! The garbage collector (upstream's `garbagecollector` controller):
//! deletes objects whose owners are gone, and carries out the foreground
//! and orphan deletions the API server only starts.
//!
//! - [`discovery`] finds every resource that can be listed, watched and
//!   deleted (again every 30 s, so new types are picked up); one
//!   metadata-only watch per resource feeds the ownership [`graph`].
//! - The graph answers each change with work: objects to look at
//!   (attemptToDelete) and owners to orphan from (attemptToOrphan), each
//!   a de-duplicating work queue with [`WORKERS`] workers.
//! - [`decision`] decides per object, from the graph where it knows and a
//!   live lookup where it does not; this module carries it out:
//!   - *background*: an object all of whose owners are gone is deleted
//!     (preconditions: its UID and the resourceVersion decided on);
//!     references to gone owners are removed from objects that keep one;
//!   - *foreground*: an owner with deletionTimestamp and the
//!     `foregroundDeletion` finalizer has its dependents deleted, and
//!     loses the finalizer once no dependent with `blockOwnerDeletion`
//!     remains;
//!   - *orphan*: an owner with the `orphan` finalizer is removed from its
//!     dependents' ownerReferences, then loses the finalizer.

pub mod decision;
pub mod discovery;
pub mod graph;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use component_base::events::{EventRecorder, EventType};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams, Preconditions,
};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::context::Context;
use crate::framework::{run_workers, Outcome, WorkQueue};

use decision::{Decision, Foreground, Lookup, Policy, Verdict};
use discovery::{Resource, Resources};
use graph::{Change, Graph, Identity, Observed, OwnerRef, Work, FOREGROUND, ORPHAN};

/// Workers per queue: upstream's `--concurrent-gc-syncs` default.
pub const WORKERS: usize = 20;
/// How often discovery is refreshed to pick up new resource types.
pub const DISCOVERY_PERIOD: Duration = Duration::from_secs(30);
/// How long the first lists may take before collection starts anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// How many writes one orphaning runs at once.
const ORPHAN_CONCURRENCY: usize = 16;

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let client = ctx.client.clone();
    let resources = loop {
        match discovery::discover(&client).await {
            Ok(r) => break r,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "garbage collector: discovery failed; retrying"
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let (changes, changes_rx) = mpsc::unbounded_channel();
    let collector = Arc::new(Collector {
        client: client.clone(),
        graph: Mutex::new(Graph::new()),
        resources: RwLock::new(resources.clone()),
        delete_queue: WorkQueue::new(),
        orphan_queue: WorkQueue::new(),
        recorder: ctx.recorder.clone(),
    });
    let mut monitors = Monitors {
        client: client.clone(),
        changes,
        running: HashMap::new(),
    };
    let pending: HashSet<String> = monitors.sync(&resources).into_iter().collect();
    let (synced_tx, mut synced) = watch::channel(false);
    tokio::spawn(process_graph_changes(
        collector.clone(),
        changes_rx,
        pending,
        synced_tx,
    ));
    {
        let collector = collector.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(DISCOVERY_PERIOD).await;
                match discovery::discover(&collector.client).await {
                    Ok(resources) => {
                        monitors.sync(&resources);
                        *collector
                            .resources
                            .write()
                            .unwrap_or_else(|e| e.into_inner()) = resources;
                    }
                    Err(error) => {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "garbage collector: rediscovery failed"
                        )
                    }
                }
            }
        });
    }
    // Upstream starts collecting once the graph holds every monitored
    // resource's first list.
    if tokio::time::timeout(SYNC_TIMEOUT, synced.wait_for(|s| *s))
        .await
        .is_err()
    {
        tracing::warn!("garbage collector: not every resource listed in time; collecting anyway");
    }
    let deleter = {
        let collector = collector.clone();
        run_workers(
            "garbagecollector",
            collector.delete_queue.clone(),
            WORKERS,
            move |uid: String| {
                let collector = collector.clone();
                async move { collector.attempt_to_delete(&uid).await }
            },
        )
    };
    let orphaner = {
        let collector = collector.clone();
        run_workers(
            "garbagecollector-orphan",
            collector.orphan_queue.clone(),
            WORKERS,
            move |uid: String| {
                let collector = collector.clone();
                async move { collector.attempt_to_orphan(&uid).await }
            },
        )
    };
    futures::join!(deleter, orphaner);
    Ok(())
}

/// What the monitors send the graph.
enum GraphEvent {
    Change(Change),
    /// This resource's first list is in.
    Synced(String),
}

/// One metadata watch per collectable resource.
struct Monitors {
    client: kube::Client,
    changes: mpsc::UnboundedSender<GraphEvent>,
    running: HashMap<String, tokio::task::AbortHandle>,
}

impl Monitors {
    /// Watch the collectable resources not watched yet and stop watching
    /// those no longer served; returns the keys of those started.
    fn sync(&mut self, resources: &Resources) -> Vec<String> {
        let wanted: HashMap<String, &Resource> = resources
            .preferred
            .iter()
            .filter(|r| discovery::collectable(r))
            .map(|r| (r.key(), r))
            .collect();
        self.running.retain(|key, handle| {
            let keep = wanted.contains_key(key);
            if !keep {
                tracing::info!(resource = %key, "garbage collector: no longer served; stopped watching");
                handle.abort();
            }
            keep
        });
        let mut started = Vec::new();
        for (key, resource) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            let task = tokio::spawn(monitor(
                self.client.clone(),
                resource.clone(),
                key.clone(),
                self.changes.clone(),
            ));
            self.running.insert(key.clone(), task.abort_handle());
            started.push(key);
        }
        started
    }
}

/// Watch one resource's metadata, sending every change (and, after a
/// relist, the difference to what was known) to the graph.
async fn monitor(
    client: kube::Client,
    resource: Resource,
    key: String,
    changes: mpsc::UnboundedSender<GraphEvent>,
) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource.ar);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let (api_version, kind) = (resource.ar.api_version.clone(), resource.ar.kind.clone());
    let observe = |m: &PartialObjectMeta<DynamicObject>| {
        Observed::from_meta(&api_version, &kind, &m.metadata)
    };
    let send = |event: GraphEvent| changes.send(event).is_ok();
    let mut known: HashMap<String, Observed> = HashMap::new();
    let mut relist: Option<HashMap<String, Observed>> = None;
    let mut synced = false;
    while let Some(event) = stream.next().await {
        let alive = match event {
            Ok(watcher::Event::Init) => {
                relist = Some(HashMap::new());
                true
            }
            Ok(watcher::Event::InitApply(object)) => {
                if let (Some(listed), Some(o)) = (relist.as_mut(), observe(&object)) {
                    listed.insert(o.identity.uid.clone(), o);
                }
                true
            }
            Ok(watcher::Event::InitDone) => {
                let listed = relist.take().unwrap_or_default();
                let mut alive = true;
                for (uid, old) in &known {
                    if !listed.contains_key(uid) {
                        alive &= send(GraphEvent::Change(Change::Deleted(old.clone())));
                    }
                }
                for (uid, o) in &listed {
                    if known.get(uid) != Some(o) {
                        alive &= send(GraphEvent::Change(Change::Observed(o.clone())));
                    }
                }
                known = listed;
                if !synced {
                    synced = true;
                    alive &= send(GraphEvent::Synced(key.clone()));
                }
                alive
            }
            Ok(watcher::Event::Apply(object)) => match observe(&object) {
                Some(o) => {
                    known.insert(o.identity.uid.clone(), o.clone());
                    send(GraphEvent::Change(Change::Observed(o)))
                }
                None => true,
            },
            Ok(watcher::Event::Delete(object)) => match observe(&object) {
                Some(o) => {
                    known.remove(&o.identity.uid);
                    send(GraphEvent::Change(Change::Deleted(o)))
                }
                None => true,
            },
            Err(error) => {
                tracing::debug!(resource = %key, %error, "garbage collector: watch failed; retrying");
                true
            }
        };
        if !alive {
            return;
        }
    }
}

/// The single writer of the graph's watch-fed state (upstream's
/// `processGraphChanges`), applying changes in batches.
async fn process_graph_changes(
    collector: Arc<Collector>,
    mut changes: mpsc::UnboundedReceiver<GraphEvent>,
    mut pending: HashSet<String>,
    synced: watch::Sender<bool>,
) {
    if pending.is_empty() {
        synced.send_replace(true);
    }
    let mut batch = Vec::with_capacity(256);
    while changes.recv_many(&mut batch, 256).await > 0 {
        let mut work = Vec::new();
        {
            let mut graph = collector.lock();
            for event in batch.drain(..) {
                match event {
                    GraphEvent::Change(change) => work.extend(graph.apply(change)),
                    GraphEvent::Synced(key) => {
                        pending.remove(&key);
                        if pending.is_empty() {
                            synced.send_replace(true);
                        }
                    }
                }
            }
        }
        for w in work {
            collector.dispatch(w);
        }
    }
}

/// The collector's shared state.
struct Collector {
    client: kube::Client,
    graph: Mutex<Graph>,
    resources: RwLock<Resources>,
    delete_queue: WorkQueue<String>,
    orphan_queue: WorkQueue<String>,
    recorder: EventRecorder,
}

/// The object an attemptToDelete looks at, copied out of the graph.
struct Item {
    identity: Identity,
    observed: bool,
    being_deleted: bool,
    deleting_dependents: bool,
    owners: Vec<OwnerRef>,
    resource_version: String,
    finalizers: Vec<String>,
}

impl Collector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dispatch(&self, work: Work) {
        match work {
            Work::AttemptToDelete(uid) => self.delete_queue.add(uid),
            Work::AttemptToOrphan(uid) => self.orphan_queue.add(uid),
            Work::InvalidNamespaceOwnerRef { object, message } => {
                let reference = ObjectReference {
                    api_version: Some(object.api_version),
                    kind: Some(object.kind),
                    namespace: Some(object.namespace).filter(|n| !n.is_empty()),
                    name: Some(object.name),
                    uid: Some(object.uid),
                    ..Default::default()
                };
                self.recorder.record(
                    reference,
                    EventType::Warning,
                    "OwnerRefInvalidNamespace",
                    message,
                );
            }
        }
    }

    /// Apply a change found by a worker (a virtual delete).
    fn apply(&self, change: Change) {
        let work = self.lock().apply(change);
        for w in work {
            self.dispatch(w);
        }
    }

    fn resolve(&self, api_version: &str, kind: &str) -> anyhow::Result<Resource> {
        self.resources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .resolve(api_version, kind)
            .cloned()
            .ok_or_else(|| anyhow!("unable to get REST mapping for {api_version}/{kind}"))
    }

    fn api(&self, resource: &Resource, namespace: &str) -> Api<DynamicObject> {
        if resource.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &resource.ar)
        } else {
            Api::all_with(self.client.clone(), &resource.ar)
        }
    }

    fn item(&self, uid: &str) -> Option<Item> {
        let graph = self.lock();
        let node = graph.node(uid)?;
        Some(Item {
            identity: node.identity.clone(),
            observed: node.observed,
            being_deleted: node.being_deleted,
            deleting_dependents: node.deleting_dependents,
            owners: node.owners.clone(),
            resource_version: node.resource_version.clone(),
            finalizers: node.finalizers.clone(),
        })
    }

    /// Upstream's `attemptToDeleteItem` for the object with `uid`.
    async fn attempt_to_delete(&self, uid: &str) -> anyhow::Result<Outcome> {
        let Some(mut item) = self.item(uid) else {
            return Ok(Outcome::Done);
        };
        // Being deleted is a one-way trip: its dependents are looked at
        // when it is gone.
        if item.being_deleted && !item.deleting_dependents {
            return Ok(Outcome::Done);
        }
        let resource = self.resolve(&item.identity.api_version, &item.identity.kind)?;
        if !item.observed {
            // A virtual node: only the server knows whether it exists.
            if resource.namespaced && item.identity.namespace.is_empty() {
                // Named by a cluster-scoped dependent: no such owner can
                // exist, and the dependent is left alone (see
                // `Lookup::NamespacedOwnerOfClusterScoped`).
                return Ok(Outcome::Done);
            }
            let live = self
                .api(&resource, &item.identity.namespace)
                .get_metadata_opt(&item.identity.name)
                .await?;
            match live {
                Some(live) if live.metadata.uid.as_deref() == Some(uid) => {
                    let meta = &live.metadata;
                    item.owners = meta
                        .owner_references
                        .iter()
                        .flatten()
                        .map(OwnerRef::from)
                        .collect();
                    item.resource_version = meta.resource_version.clone().unwrap_or_default();
                    item.being_deleted = meta.deletion_timestamp.is_some();
                    item.finalizers = meta.finalizers.clone().unwrap_or_default();
                }
                _ => {
                    let mut absent = item.identity.clone();
                    if !resource.namespaced {
                        absent.namespace.clear();
                    }
                    self.apply(Change::VirtualDeleted(absent));
                    return Ok(Outcome::Done);
                }
            }
        }

        if item.deleting_dependents {
            let next = decision::finish_foreground(&self.lock().blocking_dependents(uid));
            match next {
                Foreground::RemoveFinalizer => {
                    self.remove_finalizer(&resource, &item.identity, FOREGROUND)
                        .await?
                }
                Foreground::Wait(dependents) => {
                    for dependent in dependents {
                        self.delete_queue.add(dependent);
                    }
                }
            }
            return Ok(Outcome::Done);
        }

        // (Only a virtual item found live can still be being deleted here:
        // like an observed one, it is left to finish.)
        if !item.owners.is_empty() && !item.being_deleted {
            let Some(verdicts) = self.classify(&item).await? else {
                return Ok(Outcome::Done);
            };
            let (has_dependents, a_dependent_waits) = {
                let graph = self.lock();
                let dependents = graph.dependents(uid);
                (
                    !dependents.is_empty(),
                    dependents.iter().any(|d| d.deleting_dependents),
                )
            };
            match decision::decide(
                &verdicts,
                has_dependents,
                a_dependent_waits,
                &item.finalizers,
            ) {
                Decision::Keep => {}
                Decision::RemoveOwnerRefs(uids) => {
                    tracing::debug!(item = %item.identity, ?uids, "garbage collector: removing references to gone or foreground owners");
                    self.remove_owner_refs(&resource, &item.identity, &uids)
                        .await?
                }
                Decision::Delete {
                    policy,
                    unblock_owner_refs,
                } => {
                    let mut resource_version = Some(item.resource_version.clone());
                    if unblock_owner_refs {
                        self.unblock_owner_refs(&resource, &item).await?;
                        resource_version = None;
                    }
                    tracing::debug!(item = %item.identity, ?policy, "garbage collector: deleting");
                    self.delete(&resource, &item, resource_version, policy)
                        .await?;
                }
            }
        }
        if !item.observed {
            // Upstream keeps looking at a virtual node until the watch
            // observes it, so one created and deleted while a watch was
            // down cannot linger in the graph.
            return Err(anyhow!("{} exists but was not observed yet", item.identity));
        }
        Ok(Outcome::Done)
    }

    /// Classify each owner reference; `None` if the object is invalid
    /// (cluster-scoped, naming a namespaced owner) and must be left alone.
    async fn classify(&self, item: &Item) -> anyhow::Result<Option<Vec<(OwnerRef, Verdict)>>> {
        let mut verdicts = Vec::with_capacity(item.owners.len());
        for reference in &item.owners {
            let owner = self.resolve(&reference.api_version, &reference.kind)?;
            let lookup =
                decision::lookup_owner(&self.lock(), &item.identity, reference, owner.namespaced);
            let verdict = match lookup {
                Lookup::Known(verdict) => verdict,
                Lookup::NamespacedOwnerOfClusterScoped => {
                    tracing::info!(item = %item.identity, owner = %reference.name, "garbage collector: a cluster-scoped object names a namespaced owner; ignoring it");
                    return Ok(None);
                }
                Lookup::AskServer { absent } => {
                    let live = self
                        .api(&owner, &absent.namespace)
                        .get_metadata_opt(&reference.name)
                        .await?;
                    let verdict = decision::verdict_of_live(
                        reference,
                        live.as_ref().map(|m| {
                            (
                                m.metadata.uid.as_deref().unwrap_or(""),
                                m.metadata.deletion_timestamp.is_some(),
                                m.metadata.finalizers.as_deref().unwrap_or(&[]),
                            )
                        }),
                    );
                    if verdict == Verdict::Dangling {
                        self.lock().mark_absent(absent);
                    }
                    verdict
                }
            };
            verdicts.push((reference.clone(), verdict));
        }
        Ok(Some(verdicts))
    }

    /// Delete `item` with `policy`, preconditioned on its UID and (when
    /// given) the resourceVersion the decision was made at. If only
    /// something other than its owner references changed since, the delete
    /// is retried on the UID alone (upstream, so that busy objects are not
    /// starved).
    async fn delete(
        &self,
        resource: &Resource,
        item: &Item,
        resource_version: Option<String>,
        policy: Policy,
    ) -> anyhow::Result<()> {
        let api = self.api(resource, &item.identity.namespace);
        let params = |resource_version: Option<String>| DeleteParams {
            propagation_policy: Some(policy.as_kube()),
            preconditions: Some(Preconditions {
                uid: Some(item.identity.uid.clone()),
                resource_version,
            }),
            ..Default::default()
        };
        let pinned = resource_version.is_some();
        match api
            .delete(&item.identity.name, &params(resource_version))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(404) => Ok(()),
            Err(e) if code(&e) == Some(409) && pinned => {
                let Some(live) = api.get_metadata_opt(&item.identity.name).await? else {
                    return Ok(());
                };
                let live_owners: Vec<OwnerRef> = live
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .map(OwnerRef::from)
                    .collect();
                if live.metadata.uid.as_deref() != Some(&item.identity.uid)
                    || live_owners != item.owners
                {
                    return Err(e).context("the object's owners changed; deciding again");
                }
                match api.delete(&item.identity.name, &params(None)).await {
                    Ok(_) => Ok(()),
                    Err(e) if code(&e) == Some(404) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Remove the references with `uids` from `object`: a strategic merge
    /// patch by UID where the resource supports it, else a JSON merge patch
    /// of the whole list pinned to the version read.
    async fn remove_owner_refs(
        &self,
        resource: &Resource,
        object: &Identity,
        uids: &[String],
    ) -> anyhow::Result<()> {
        let patch = decision::remove_refs_strategic(&object.uid, uids);
        self.patch_owner_refs(resource, object, &patch, |refs| {
            refs.retain(|r| !uids.iter().any(|u| r["uid"] == u.as_str()))
        })
        .await
    }

    /// Make every blocking reference of `item` non-blocking.
    async fn unblock_owner_refs(&self, resource: &Resource, item: &Item) -> anyhow::Result<()> {
        let patch = decision::unblock_strategic(&item.identity.uid, &item.owners);
        self.patch_owner_refs(resource, &item.identity, &patch, |refs| {
            for r in refs.iter_mut() {
                if r["blockOwnerDeletion"] == true {
                    r["blockOwnerDeletion"] = Value::Bool(false);
                }
            }
        })
        .await
    }

    async fn patch_owner_refs(
        &self,
        resource: &Resource,
        object: &Identity,
        strategic: &Value,
        edit: impl Fn(&mut Vec<Value>),
    ) -> anyhow::Result<()> {
        let api = self.api(resource, &object.namespace);
        let params = PatchParams::default();
        match api
            .patch_metadata(&object.name, &params, &Patch::Strategic(strategic))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if code(&e) == Some(404) => return Ok(()),
            // No strategic merge for this resource (custom resources).
            Err(e) if code(&e) == Some(415) => {}
            Err(e) => return Err(e.into()),
        }
        for _ in 0..5 {
            let Some(live) = api.get_metadata_opt(&object.name).await? else {
                return Ok(());
            };
            if live.metadata.uid.as_deref() != Some(&object.uid) {
                return Ok(());
            }
            let before: Vec<Value> = serde_json::to_value(&live.metadata.owner_references)?
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut after = before.clone();
            edit(&mut after);
            if after == before {
                return Ok(());
            }
            let rv = live.metadata.resource_version.unwrap_or_default();
            let patch = decision::owner_refs_merge(&rv, &after);
            match api
                .patch_metadata(&object.name, &params, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if code(&e) == Some(404) => return Ok(()),
                Err(e) if code(&e) == Some(409) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(anyhow!("{object}: ownerReferences kept changing"))
    }

    /// Remove `finalizer` from `object`, re-reading on conflicts.
    async fn remove_finalizer(
        &self,
        resource: &Resource,
        object: &Identity,
        finalizer: &str,
    ) -> anyhow::Result<()> {
        let api = self.api(resource, &object.namespace);
        for _ in 0..5 {
            let Some(live) = api.get_metadata_opt(&object.name).await? else {
                return Ok(());
            };
            if live.metadata.uid.as_deref() != Some(&object.uid) {
                return Ok(());
            }
            let finalizers = live.metadata.finalizers.clone().unwrap_or_default();
            let rv = live.metadata.resource_version.clone().unwrap_or_default();
            let Some(patch) = decision::remove_finalizer_merge(&rv, &finalizers, finalizer) else {
                return Ok(());
            };
            match api
                .patch_metadata(&object.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if code(&e) == Some(404) => return Ok(()),
                Err(e) if code(&e) == Some(409) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(anyhow!("{object}: finalizers kept changing"))
    }

    /// Upstream's `attemptToOrphanWorker`: remove the owner from every
    /// dependent's references, then its orphan finalizer.
    async fn attempt_to_orphan(&self, uid: &str) -> anyhow::Result<Outcome> {
        let (owner, dependents) = {
            let graph = self.lock();
            let Some(node) = graph.node(uid) else {
                return Ok(Outcome::Done);
            };
            let dependents: Vec<Identity> = graph
                .dependents(uid)
                .into_iter()
                .map(|d| d.identity.clone())
                .collect();
            (node.identity.clone(), dependents)
        };
        let owner_uid = [uid.to_string()];
        let failures: Vec<String> = futures::stream::iter(dependents)
            .map(|dependent| {
                let owner_uid = &owner_uid;
                async move {
                    let resource = self.resolve(&dependent.api_version, &dependent.kind)?;
                    self.remove_owner_refs(&resource, &dependent, owner_uid)
                        .await
                        .with_context(|| format!("orphaning {dependent}"))
                }
            })
            .buffer_unordered(ORPHAN_CONCURRENCY)
            .filter_map(|r| async move { r.err().map(|e| format!("{e:#}")) })
            .collect()
            .await;
        if !failures.is_empty() {
            return Err(anyhow!(
                "failed to orphan dependents of owner {owner}: {}",
                failures.join("; ")
            ));
        }
        let resource = self.resolve(&owner.api_version, &owner.kind)?;
        self.remove_finalizer(&resource, &owner, ORPHAN).await?;
        Ok(Outcome::Done)
    }
}

/// The HTTP status of an API error.
fn code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
