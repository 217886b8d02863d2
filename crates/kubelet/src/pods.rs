//! The pods bound to this node: a watch with `fieldSelector
//! spec.nodeName=<node>` feeds one [`crate::worker`] per pod UID (a pod
//! recreated under the same name is a new pod), as upstream's pod config
//! and `HandlePodAdditions` / `HandlePodUpdates` / `HandlePodRemoves` do:
//! - a new pod is admitted first ([`crate::admission`], upstream's
//!   predicate admit handler): pods that already finished are never run
//!   again, and pods that do not fit are rejected (phase `Failed`, reason
//!   `OutOfcpu` etc.); pods listed together at start are admitted oldest
//!   first;
//! - updates go to the pod's worker (it always sees the newest version);
//! - a pod gone from the API stops its worker, which cleans the runtime up;
//!   after a re-list, pods no longer listed count as gone;
//! - the runtime's container events wake the worker of the pod they
//!   concern; if events were lost, every worker is woken;
//! - static pods ([`crate::static_pods`]) come as a whole set from their
//!   own channel and run like the others; their mirror pods in the API are
//!   never run (they are how the API sees the static pods);
//! - hollow nodes share one pod watch ([`dispatch_pods`]) that routes each
//!   event to its node's manager, instead of a watch (an HTTP/1.1
//!   connection) per node.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinSet;

use crate::admission::admit;
use crate::status::is_terminal;
use crate::worker::{PodWorker, Start, WorkerContext};

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn is_finished(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(is_terminal)
}

struct WorkerHandle {
    updates: watch::Sender<Option<Arc<Pod>>>,
    poke: Arc<Notify>,
    active: Arc<AtomicBool>,
}

/// The pod watch events of one node, when a [`dispatch_pods`] watch
/// shared by several nodes feeds its manager.
pub type PodFeed = mpsc::UnboundedReceiver<watcher::Event<Pod>>;

type PodEventStream =
    Pin<Box<dyn futures::Stream<Item = Result<watcher::Event<Pod>, watcher::Error>> + Send>>;

/// Where one event of a watch over every pod goes, given the nodes fed:
/// the start and end of a (re-)list go to all of them, a pod to its node's.
pub fn route<'a>(event: &'a watcher::Event<Pod>, nodes: &'a [String]) -> Vec<&'a str> {
    match event {
        watcher::Event::Init | watcher::Event::InitDone => {
            nodes.iter().map(String::as_str).collect()
        }
        watcher::Event::InitApply(pod)
        | watcher::Event::Apply(pod)
        | watcher::Event::Delete(pod) => {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            nodes
                .iter()
                .map(String::as_str)
                .filter(|n| Some(*n) == node)
                .collect()
        }
    }
}

/// One watch over every pod, feeding the managers of `feeds` (by node
/// name) until they are all gone.
pub async fn dispatch_pods(
    client: kube::Client,
    feeds: HashMap<String, mpsc::UnboundedSender<watcher::Event<Pod>>>,
) {
    let nodes: Vec<String> = feeds.keys().cloned().collect();
    let api: Api<Pod> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(error) => {
                tracing::warn!(%error, "shared pod watch failed; retrying");
                continue;
            }
        };
        for node in route(&event, &nodes) {
            if let Some(tx) = feeds.get(node) {
                let _ = tx.send(event.clone());
            }
        }
        if feeds.values().all(|tx| tx.is_closed()) {
            return;
        }
    }
}

/// Runs the pods of one node.
pub struct PodManager {
    ctx: Arc<WorkerContext>,
    node_name: String,
    /// The node as last seen (for admission).
    node: watch::Receiver<Arc<Node>>,
    workers: HashMap<String, WorkerHandle>,
    tasks: JoinSet<()>,
    /// The static pods' set, whenever it changes.
    static_pods: Option<mpsc::UnboundedReceiver<Vec<Arc<Pod>>>>,
    /// The UIDs of the static pods running.
    static_uids: HashSet<String>,
    /// Pod events from a shared watch instead of a watch of its own.
    feed: Option<PodFeed>,
}

impl PodManager {
    pub fn new(
        ctx: Arc<WorkerContext>,
        node_name: String,
        node: watch::Receiver<Arc<Node>>,
    ) -> Self {
        PodManager {
            ctx,
            node_name,
            node,
            workers: HashMap::new(),
            tasks: JoinSet::new(),
            static_pods: None,
            static_uids: HashSet::new(),
            feed: None,
        }
    }

    /// Takes the node's pod events from `feed` (a shared watch) instead of
    /// watching by itself.
    pub fn with_feed(mut self, feed: PodFeed) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Also runs the static pods sent on `pods`.
    pub fn with_static_pods(mut self, pods: mpsc::UnboundedReceiver<Vec<Arc<Pod>>>) -> Self {
        self.static_pods = Some(pods);
        self
    }

    /// A new set of static pods: start the new ones, stop those gone.
    fn apply_static(&mut self, pods: Vec<Arc<Pod>>) {
        let uids: HashSet<String> = pods.iter().map(|p| uid(p)).collect();
        let gone: Vec<String> = self.static_uids.difference(&uids).cloned().collect();
        for key in gone {
            self.remove(&key);
        }
        for pod in pods {
            self.apply(Pod::clone(&pod));
        }
        self.static_uids = uids;
    }

    /// The pods admitted and still holding resources.
    fn active_pods(&self) -> Vec<Arc<Pod>> {
        self.workers
            .values()
            .filter(|w| w.active.load(Ordering::SeqCst))
            .filter_map(|w| w.updates.borrow().clone())
            .collect()
    }

    fn spawn(&mut self, pod: Arc<Pod>, start: Start) {
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let poke = Arc::new(Notify::new());
        let active = Arc::new(AtomicBool::new(false));
        let worker = PodWorker::new(self.ctx.clone(), rx, poke.clone(), active.clone(), start);
        self.tasks.spawn(worker.run());
        self.workers.insert(
            uid(&pod),
            WorkerHandle {
                updates: tx,
                poke,
                active,
            },
        );
    }

    /// A pod was added or changed.
    fn apply(&mut self, pod: Pod) {
        let key = uid(&pod);
        if key.is_empty() || crate::static_pods::is_mirror(&pod) {
            return;
        }
        let pod = Arc::new(pod);
        if let Some(w) = self.workers.get(&key) {
            w.updates.send_replace(Some(pod));
            return;
        }
        let start = if is_finished(&pod) {
            Start::Finished
        } else if pod.metadata.deletion_timestamp.is_some() {
            // Being deleted before it ever ran here: no admission, the
            // worker goes straight to termination.
            Start::Run
        } else {
            let node = self.node.borrow().clone();
            let active = self.active_pods();
            let others: Vec<&Pod> = active.iter().map(|p| p.as_ref()).collect();
            match admit(&pod, &node, &others) {
                Ok(()) => Start::Run,
                Err((reason, message)) => {
                    tracing::info!(pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or("")), %reason, %message, "pod rejected");
                    Start::Rejected(reason, message)
                }
            }
        };
        self.spawn(pod, start);
    }

    /// A pod left the API.
    fn remove(&mut self, key: &str) {
        if let Some(w) = self.workers.remove(key) {
            w.updates.send_replace(None);
        }
    }

    fn poke(&self, pod_uid: &str) {
        if let Some(w) = self.workers.get(pod_uid) {
            w.poke.notify_one();
        }
    }

    fn poke_all(&self) {
        for w in self.workers.values() {
            w.poke.notify_one();
        }
    }

    /// Watches the node's pods until the task is aborted.
    pub async fn run(mut self) {
        let mut stream: PodEventStream = match self.feed.take() {
            Some(feed) => futures::stream::unfold(feed, |mut rx| async move {
                rx.recv().await.map(|e| (Ok(e), rx))
            })
            .boxed(),
            None => {
                let api: Api<Pod> = Api::all(self.ctx.client.clone());
                let config =
                    watcher::Config::default().fields(&format!("spec.nodeName={}", self.node_name));
                watcher(api, config).default_backoff().boxed()
            }
        };
        let mut events = self.ctx.runtime.container_events();
        let mut relist: Option<Vec<Pod>> = None;
        let mut static_pods = self.static_pods.take();
        loop {
            let next_static = async {
                match static_pods.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(pods) = next_static => self.apply_static(pods),
                event = stream.next() => {
                    let Some(event) = event else { return };
                    match event {
                        Ok(watcher::Event::Init) => relist = Some(Vec::new()),
                        Ok(watcher::Event::InitApply(pod)) => match relist.as_mut() {
                            Some(list) => list.push(pod),
                            None => self.apply(pod),
                        },
                        Ok(watcher::Event::InitDone) => {
                            let mut pods = relist.take().unwrap_or_default();
                            let listed: HashSet<String> = pods.iter().map(uid).collect();
                            let gone: Vec<String> = self
                                .workers
                                .keys()
                                .filter(|k| !listed.contains(*k) && !self.static_uids.contains(*k))
                                .cloned()
                                .collect();
                            for key in gone {
                                self.remove(&key);
                            }
                            // Upstream admits pods in creation order.
                            pods.sort_by(|a, b| {
                                let ts = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                                ts(a).cmp(&ts(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
                            });
                            for pod in pods {
                                self.apply(pod);
                            }
                        }
                        Ok(watcher::Event::Apply(pod)) => self.apply(pod),
                        Ok(watcher::Event::Delete(pod)) => self.remove(&uid(&pod)),
                        Err(error) => tracing::warn!(%error, "pod watch failed; retrying"),
                    }
                }
                event = events.recv() => match event {
                    Ok(e) => self.poke(&e.pod_uid),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.poke_all(),
                    Err(broadcast::error::RecvError::Closed) => {
                        events = self.ctx.runtime.container_events();
                    }
                },
                Some(done) = self.tasks.join_next() => {
                    if let Err(e) = done {
                        if e.is_panic() {
                            tracing::error!(error = %e, "a pod worker panicked");
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: Option<&str>) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            node_name: node.map(String::from),
            ..Default::default()
        });
        p
    }

    #[test]
    fn shared_watch_events_go_to_their_node() {
        let nodes = vec!["a".to_string(), "b".to_string()];
        let cases = [
            (watcher::Event::Init, vec!["a", "b"]),
            (watcher::Event::InitDone, vec!["a", "b"]),
            (watcher::Event::InitApply(pod("p", Some("a"))), vec!["a"]),
            (watcher::Event::Apply(pod("p", Some("b"))), vec!["b"]),
            (watcher::Event::Delete(pod("p", Some("b"))), vec!["b"]),
            // Unscheduled, or on a node not fed here: nobody.
            (watcher::Event::Apply(pod("p", None)), vec![]),
            (watcher::Event::Apply(pod("p", Some("c"))), vec![]),
        ];
        for (event, want) in cases {
            assert_eq!(route(&event, &nodes), want, "{event:?}");
        }
    }
}
