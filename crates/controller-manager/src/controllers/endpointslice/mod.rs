//! The EndpointSlice controller (upstream's `endpointslice-controller`):
//! every Service with a selector gets `discovery.k8s.io/v1` EndpointSlices
//! listing the pods it selects — their addresses, ready/serving/terminating
//! conditions, node, zone and resolved ports — at most
//! `--max-endpoints-per-slice` (100) endpoints a slice, named
//! `<service>-<random>`, labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by`, and controlled by the Service.
//!
//! - [`reconciler`]: the pure decision (Service, pods, nodes, slices → the
//!   slices to create, update and delete);
//! - [`util`]: what this and the Endpoints controller share (pod
//!   membership, ports, trigger times, write tracking, the selection index);
//! - here, the executor: Services, pods, nodes and slices feed a queue of
//!   Service keys; a pod change queues only the Services selecting it
//!   (found through the [`util::Selection`] index), and a change to one of
//!   our slices that is not the echo of our own write queues its Service,
//!   so tampering is repaired.
//!
//! Unlike upstream, which leaves that to the garbage collector through the
//! owner reference, a deleted Service's slices are deleted here too.

pub mod reconciler;
pub mod util;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use component_base::events::EventRecorder;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};

use crate::context::Context;
use crate::framework::{forward, run_workers, Change, Informer, ObjectKey, Outcome, WorkQueue};
use reconciler::{Plan, CONTROLLER_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME};
use util::{
    forward_after, on_node_change, on_pod_change, on_service_change, selector_matches,
    service_selector, Selection, TriggerTimeTracker, WriteTracker,
};

/// How soon a sync that found the informer behind our own writes looks
/// again (the informer's echo of our write queues nothing by itself).
pub const STALE_RETRY: Duration = Duration::from_millis(100);

/// Lock a mutex, ignoring poisoning (the state stays consistent: every
/// critical section is a few map operations).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Service a slice belongs to, if it is one of ours.
pub fn slice_service(slice: &EndpointSlice) -> Option<ObjectKey> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    let name = labels.get(LABEL_SERVICE_NAME).filter(|n| !n.is_empty())?;
    let ns = slice.metadata.namespace.clone().unwrap_or_default();
    Some(ObjectKey::new(ns, name.as_str()))
}

/// Keep `selection` current from a slice change and return the Services to
/// sync: the slice's, unless the change is our own write echoed back (or
/// our own delete); both, when its Service label moved.
pub fn on_slice_change(
    selection: &mut Selection,
    writes: &mut WriteTracker,
    change: &Change<EndpointSlice>,
) -> Vec<ObjectKey> {
    let slice = change.object();
    let key = ObjectKey::of(slice.as_ref());
    let rv = slice.metadata.resource_version.as_deref();
    match change {
        Change::Deleted(_) => {
            selection.remove_slice(&key);
            match slice_service(slice) {
                Some(service) if !writes.observe_deletion(&service, &key.name) => vec![service],
                _ => Vec::new(),
            }
        }
        Change::Added(_) => {
            let service = slice_service(slice);
            selection.set_slice(&key, service.clone());
            service
                .filter(|s| !writes.is_own_write(s, &key.name, rv))
                .into_iter()
                .collect()
        }
        Change::Updated { old, new } => {
            let before = slice_service(old);
            let after = slice_service(new);
            selection.set_slice(&key, after.clone());
            if before != after {
                // Relabelled away from its Service: what we wrote to it no
                // longer says anything about that Service's slices.
                if let Some(before) = &before {
                    writes.observe_deletion(before, &key.name);
                }
                before.into_iter().chain(after).collect()
            } else {
                after
                    .filter(|s| !writes.is_own_write(s, &key.name, rv))
                    .into_iter()
                    .collect()
            }
        }
    }
}

struct Controller {
    client: kube::Client,
    recorder: EventRecorder,
    services: Informer<Service>,
    pods: Informer<Pod>,
    slices: Informer<EndpointSlice>,
    nodes: Informer<Node>,
    selection: Arc<Mutex<Selection>>,
    writes: Arc<Mutex<WriteTracker>>,
    triggers: Mutex<TriggerTimeTracker>,
    max_endpoints_per_slice: usize,
}

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        recorder: EventRecorder::new(ctx.client.clone(), "endpoint-slice-controller"),
        services: ctx.informers.get::<Service>(),
        pods: ctx.informers.get::<Pod>(),
        slices: ctx.informers.get::<EndpointSlice>(),
        nodes: ctx.informers.get::<Node>(),
        selection: Arc::default(),
        writes: Arc::default(),
        triggers: Mutex::default(),
        max_endpoints_per_slice: ctx.settings.max_endpoints_per_slice,
    });
    let queue = WorkQueue::new();
    let c = &controller;
    let selection = c.selection.clone();
    forward(&c.services, &queue, move |change| {
        vec![on_service_change(&mut lock(&selection), change)]
    });
    let selection = c.selection.clone();
    let batch = ctx.settings.endpointslice_updates_batch_period;
    forward_after(&c.pods, &queue, batch, move |change| {
        on_pod_change(&mut lock(&selection), change)
    });
    let selection = c.selection.clone();
    forward(&c.nodes, &queue, move |change| {
        on_node_change(&lock(&selection), change)
            .into_iter()
            .collect()
    });
    let (selection, writes) = (c.selection.clone(), c.writes.clone());
    forward(&c.slices, &queue, move |change| {
        on_slice_change(&mut lock(&selection), &mut lock(&writes), change)
    });
    c.services.wait_synced().await;
    c.pods.wait_synced().await;
    c.slices.wait_synced().await;
    c.nodes.wait_synced().await;

    let workers = ctx.settings.concurrent_syncs;
    run_workers("endpointslice", queue, workers, move |key: ObjectKey| {
        let controller = controller.clone();
        async move { controller.sync(&key).await }
    })
    .await;
    Ok(())
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Outcome> {
        let Some(service) = self.services.get(key) else {
            self.service_gone(key).await?;
            return Ok(Outcome::Done);
        };
        // No selector: the Service's endpoints are the user's.
        let Some(selector) = service_selector(&service) else {
            return Ok(Outcome::Done);
        };
        let pods: Vec<Arc<Pod>> = lock(&self.selection)
            .pods_for(&key.namespace, selector)
            .iter()
            .filter_map(|k| self.pods.get(k))
            .filter(|p| selector_matches(selector, p.metadata.labels.as_ref()))
            .collect();
        let slices = self.slices_of(key);
        let observed = slices.iter().map(|s| {
            (
                s.metadata.name.as_deref().unwrap_or(""),
                s.metadata.resource_version.as_deref(),
            )
        });
        if lock(&self.writes).stale(key, observed) {
            return Ok(Outcome::RequeueAfter(STALE_RETRY));
        }
        let pods: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
        let trigger = lock(&self.triggers).compute(key, &service, &pods);
        // Slices being deleted are as good as gone (upstream's
        // dropEndpointSlicesPendingDeletion); they counted above only so
        // that one we wrote is not mistaken for one the informer missed.
        let slices: Vec<&EndpointSlice> = slices
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .collect();
        let nodes = |name: &str| -> Option<Arc<Node>> {
            (!name.is_empty())
                .then(|| self.nodes.get(&ObjectKey::cluster(name)))
                .flatten()
        };
        let plan = reconciler::reconcile(
            &service,
            &pods,
            &slices,
            &nodes,
            self.max_endpoints_per_slice,
            trigger,
        );
        let mut result = self.apply(key, &plan).await;
        if result.is_ok() {
            if let Some((pod, node)) = plan.missing_nodes.first() {
                result = Err(anyhow::anyhow!(
                    "skipping Pod {pod} for Service {key}: Node {node} Not Found"
                ));
            }
        }
        if let Err(error) = &result {
            self.recorder.warning(
                service.as_ref(),
                "FailedToUpdateEndpointSlices",
                format!("Error updating Endpoint Slices for Service {key}: {error:#}"),
            );
        }
        result.map(|()| Outcome::Done)
    }

    /// Our slices for `service`, from the informer (those being deleted
    /// too).
    fn slices_of(&self, service: &ObjectKey) -> Vec<Arc<EndpointSlice>> {
        lock(&self.selection)
            .slices_of(service)
            .iter()
            .filter_map(|k| self.slices.get(k))
            .filter(|s| slice_service(s).as_ref() == Some(service))
            .collect()
    }

    /// Carry out a plan, recording each write so the next sync can tell a
    /// lagging informer.
    async fn apply(&self, key: &ObjectKey, plan: &Plan) -> anyhow::Result<()> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        for slice in &plan.create {
            match api.create(&PostParams::default(), slice).await {
                Ok(created) => lock(&self.writes).written(
                    key,
                    created.metadata.name.as_deref().unwrap_or(""),
                    created.metadata.resource_version.as_deref(),
                ),
                // The namespace is going away: creates keep failing, and
                // its deletion takes the Service with it.
                Err(kube::Error::Api(e))
                    if e.code == 403 && e.message.contains("being terminated") =>
                {
                    return Ok(());
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("failed to create EndpointSlice for Service {key}")
                    });
                }
            }
        }
        for slice in &plan.update {
            let name = slice.metadata.name.as_deref().unwrap_or("");
            let updated = api
                .replace(name, &PostParams::default(), slice)
                .await
                .with_context(|| {
                    format!("failed to update {name} EndpointSlice for Service {key}")
                })?;
            lock(&self.writes).written(key, name, updated.metadata.resource_version.as_deref());
        }
        for slice in &plan.delete {
            let name = slice.metadata.name.as_deref().unwrap_or("");
            self.delete(&api, key, name).await?;
        }
        Ok(())
    }

    async fn delete(
        &self,
        api: &Api<EndpointSlice>,
        service: &ObjectKey,
        name: &str,
    ) -> anyhow::Result<()> {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => lock(&self.writes).deleted(service, name),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("failed to delete {name} EndpointSlice for Service {service}")
                });
            }
        }
        Ok(())
    }

    /// The Service is gone: delete its slices (the garbage collector would
    /// too, through their owner reference) and forget it.
    async fn service_gone(&self, key: &ObjectKey) -> anyhow::Result<()> {
        lock(&self.triggers).forget(key);
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &key.namespace);
        for slice in self.slices_of(key) {
            self.delete(&api, key, slice.metadata.name.as_deref().unwrap_or(""))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn slice(name: &str, rv: &str, service: &str, manager: &str) -> Arc<EndpointSlice> {
        Arc::new(EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                labels: Some(
                    [
                        (LABEL_SERVICE_NAME.to_string(), service.to_string()),
                        (LABEL_MANAGED_BY.to_string(), manager.to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn slice_changes_queue_their_service_unless_they_echo_our_writes() {
        let (mut sel, mut writes) = (Selection::default(), WriteTracker::default());
        let web = ObjectKey::new("ns", "web");
        writes.written(&web, "web-1", Some("5"));
        let ours = slice("web-1", "5", "web", CONTROLLER_NAME);
        // Our own create, echoed: nothing to do, but the slice is indexed.
        assert!(on_slice_change(&mut sel, &mut writes, &Change::Added(ours.clone())).is_empty());
        assert_eq!(sel.slices_of(&web), [ObjectKey::new("ns", "web-1")]);

        // Someone edits it: repair.
        let edited = slice("web-1", "6", "web", CONTROLLER_NAME);
        let change = Change::Updated {
            old: ours.clone(),
            new: edited.clone(),
        };
        assert_eq!(
            on_slice_change(&mut sel, &mut writes, &change),
            vec![web.clone()]
        );

        // Someone takes it over: the Service needs a slice of its own again.
        let taken = slice("web-1", "7", "web", "someone-else");
        let change = Change::Updated {
            old: edited.clone(),
            new: taken.clone(),
        };
        assert_eq!(
            on_slice_change(&mut sel, &mut writes, &change),
            vec![web.clone()]
        );
        assert!(sel.slices_of(&web).is_empty());
        // ...and our record of writing it no longer makes the Service's
        // slices look stale.
        assert!(!writes.stale(&web, []));

        // Slices of other managers are none of our business.
        let change = Change::Deleted(taken);
        assert!(on_slice_change(&mut sel, &mut writes, &change).is_empty());

        // Our own delete, echoed: nothing; someone else's: resync.
        writes.deleted(&web, "web-2");
        let gone = slice("web-2", "8", "web", CONTROLLER_NAME);
        assert!(on_slice_change(&mut sel, &mut writes, &Change::Deleted(gone.clone())).is_empty());
        assert_eq!(
            on_slice_change(&mut sel, &mut writes, &Change::Deleted(gone)),
            [web]
        );
    }
}
