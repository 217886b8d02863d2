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
//!   connection) per node;
//! - housekeeping (upstream's `HandlePodCleanups`): after the first full
//!   pod list and every [`HOUSEKEEPING_PERIOD`], sandboxes, containers and
//!   pod directories of pods no worker owns (deleted while the kubelet was
//!   down, or force-deleted) are stopped and removed. Runtime objects are
//!   listed *before* they are compared with the workers, so a pod whose
//!   worker starts meanwhile is never taken for an orphan; static pods'
//!   sandboxes are left alone until the static pod set has arrived. Only
//!   sandboxes and containers labelled with this node's name
//!   ([`LABEL_NODE_NAME`]) count: several kubelets (or tests) may share
//!   one containerd, and each must leave the others' pods alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use component_base::transform::for_cache;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinSet;

use crate::admission::admit;
use crate::runtime::{
    Container, ContainerFilter, ContainerRuntime, ContainerState, PodSandbox, PodSandboxFilter,
    LABEL_POD_UID,
};
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

/// The label with the node name on the sandboxes and containers a
/// kubelet creates: which of a shared runtime's pods are its own.
pub const LABEL_NODE_NAME: &str = "tugboat.dev/node-name";

/// How often housekeeping looks for orphans (upstream's
/// `housekeepingPeriod`).
pub const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(2);
/// The grace period orphans' containers get (upstream kills orphaned
/// runtime pods with a one-second override).
const ORPHAN_GRACE: Duration = Duration::from_secs(1);
/// How long after the start static pods' orphans are protected when no
/// static pod set has come: the reader reads the directory at once, but
/// sends nothing while it is empty.
const STATIC_SET_PATIENCE: Duration = Duration::from_secs(20);

/// What the runtime and the pods directory hold of a pod no worker owns.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Orphan {
    pub sandboxes: Vec<String>,
    /// Container ids, with whether they still run.
    pub containers: Vec<(String, bool)>,
    /// Whether it has a directory under the pods directory.
    pub dir: bool,
}

/// The pods (by UID) that have sandboxes, containers or directories but
/// are not `known`. Runtime objects without the pod UID label, or not
/// labelled as `node`'s, are not this kubelet's and are left alone.
pub fn find_orphans(
    node: &str,
    sandboxes: &[PodSandbox],
    containers: &[Container],
    dirs: &[String],
    known: impl Fn(&str) -> bool,
) -> BTreeMap<String, Orphan> {
    let mut orphans: BTreeMap<String, Orphan> = BTreeMap::new();
    let unknown = |uid: Option<&String>| uid.filter(|u| !u.is_empty() && !known(u)).cloned();
    let ours =
        |labels: &BTreeMap<String, String>| labels.get(LABEL_NODE_NAME).is_some_and(|n| n == node);
    for s in sandboxes.iter().filter(|s| ours(&s.labels)) {
        if let Some(uid) = unknown(s.labels.get(LABEL_POD_UID)) {
            orphans.entry(uid).or_default().sandboxes.push(s.id.clone());
        }
    }
    for c in containers.iter().filter(|c| ours(&c.labels)) {
        if let Some(uid) = unknown(c.labels.get(LABEL_POD_UID)) {
            let running = c.state == ContainerState::Running;
            orphans
                .entry(uid)
                .or_default()
                .containers
                .push((c.id.clone(), running));
        }
    }
    for d in dirs {
        if let Some(uid) = unknown(Some(d)) {
            orphans.entry(uid).or_default().dir = true;
        }
    }
    orphans
}

/// Whether a sandbox's annotations say it runs a static pod.
fn is_static_sandbox(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(crate::static_pods::ANNOTATION_CONFIG_SOURCE)
        .is_some_and(|s| s == "file")
}

/// Stops and removes one orphan: its running containers get
/// [`ORPHAN_GRACE`], then its sandboxes, containers and volumes go. With
/// `spare_static`, a pod whose sandbox is a static pod's is left alone.
async fn remove_orphan(
    runtime: &dyn ContainerRuntime,
    pods_dir: Option<&std::path::Path>,
    allow_mount: bool,
    uid: &str,
    orphan: &Orphan,
    spare_static: bool,
) {
    if spare_static {
        // Without a sandbox to ask, it may be a static pod's not yet
        // (re)started: wait for the static pod set.
        if orphan.sandboxes.is_empty() {
            return;
        }
        for id in &orphan.sandboxes {
            match runtime.pod_sandbox_status(id).await {
                Ok(status) if !is_static_sandbox(&status.annotations) => {}
                _ => return,
            }
        }
    }
    if orphan.sandboxes.is_empty() && orphan.containers.is_empty() {
        tracing::debug!(pod_uid = %uid, "removing an orphaned pod directory");
    } else {
        tracing::info!(pod_uid = %uid, sandboxes = orphan.sandboxes.len(), containers = orphan.containers.len(), "removing an orphaned pod");
    }
    let mut removed = true;
    for (id, running) in &orphan.containers {
        if *running {
            removed &= runtime.stop_container(id, ORPHAN_GRACE).await.is_ok();
        }
    }
    for id in &orphan.sandboxes {
        removed &= runtime.stop_pod_sandbox(id).await.is_ok();
        removed &= runtime.remove_pod_sandbox(id).await.is_ok();
    }
    for (id, _) in &orphan.containers {
        removed &= runtime.remove_container(id).await.is_ok();
    }
    // The directory only once nothing runs from it (the process runtime's
    // containers work in it), and only without mounts left in it.
    let Some(dir) = pods_dir
        .map(|d| d.join(uid))
        .filter(|d| removed && d.is_dir())
    else {
        return;
    };
    match crate::volumes::tear_down_pod_volumes(&dir, allow_mount) {
        Ok(()) => {
            if let Err(error) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(pod_uid = %uid, %error, "removing an orphan's directory failed");
            }
        }
        Err(error) => {
            tracing::warn!(pod_uid = %uid, %error, "tearing an orphan's volumes down failed")
        }
    }
}

/// The pod UIDs with a directory under `pods_dir`.
fn pod_dirs(pods_dir: Option<&std::path::Path>) -> Vec<String> {
    let Some(Ok(entries)) = pods_dir.map(std::fs::read_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

struct WorkerHandle {
    updates: watch::Sender<Option<Arc<Pod>>>,
    poke: Arc<Notify>,
    active: Arc<AtomicBool>,
}

/// The pod watch events of one node, when a [`dispatch_pods`] watch
/// shared by several nodes feeds its manager. Boxed: a channel allocates
/// its slots 32 at a time, and 32 inline Pods are ~40 KiB per hollow node.
pub type PodFeed = mpsc::UnboundedReceiver<Box<watcher::Event<Pod>>>;

/// Pod events, boxed: an event holds a whole `Pod` (~2 KB inline), and the
/// manager's loop, one per hollow node, would otherwise keep room for one.
type PodEventStream =
    Pin<Box<dyn futures::Stream<Item = Result<Box<watcher::Event<Pod>>, watcher::Error>> + Send>>;

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
    feeds: HashMap<String, mpsc::UnboundedSender<Box<watcher::Event<Pod>>>>,
) {
    let nodes: Vec<String> = feeds.keys().cloned().collect();
    let api: Api<Pod> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .modify(for_cache)
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
        let targets: Vec<_> = route(&event, &nodes)
            .into_iter()
            .filter_map(|node| feeds.get(node))
            .collect();
        // A pod goes to one node: moved there, not copied (the copy would
        // be the one its kubelet keeps).
        match targets.as_slice() {
            [only] => {
                let _ = only.send(Box::new(event));
            }
            all => {
                for tx in all {
                    let _ = tx.send(Box::new(event.clone()));
                }
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
    /// Whether the first full pod list has been applied: until then no
    /// pod counts as an orphan.
    synced: bool,
    /// Whether the static pod set has come (or none is configured).
    static_synced: bool,
    started: Instant,
    /// The orphan removal under way, if any.
    cleaning: Option<tokio::task::JoinHandle<()>>,
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
            synced: false,
            static_synced: true,
            started: Instant::now(),
            cleaning: None,
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
        self.static_synced = false;
        self
    }

    /// One housekeeping pass: lists what the runtime and the pods
    /// directory hold, and removes (in a task of its own) what belongs to
    /// no worker. The listing comes first, so anything in it that a worker
    /// owns had its worker already.
    async fn housekeeping(&mut self) {
        if !self.synced || self.cleaning.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let runtime = self.ctx.runtime.clone();
        let sandboxes = match runtime.list_pod_sandbox(&PodSandboxFilter::default()).await {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(%error, "housekeeping: listing sandboxes failed");
                return;
            }
        };
        let containers = match runtime.list_containers(&ContainerFilter::default()).await {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "housekeeping: listing containers failed");
                return;
            }
        };
        let pods_dir = self.ctx.pods_dir.clone();
        let dirs = pod_dirs(pods_dir.as_deref());
        let orphans = find_orphans(&self.node_name, &sandboxes, &containers, &dirs, |uid| {
            self.workers.contains_key(uid) || self.static_uids.contains(uid)
        });
        if orphans.is_empty() {
            return;
        }
        let spare_static = !self.static_synced && self.started.elapsed() < STATIC_SET_PATIENCE;
        let allow_mount = self.ctx.allow_mount;
        self.cleaning = Some(tokio::spawn(async move {
            for (uid, orphan) in &orphans {
                remove_orphan(
                    runtime.as_ref(),
                    pods_dir.as_deref(),
                    allow_mount,
                    uid,
                    orphan,
                    spare_static,
                )
                .await;
            }
        }));
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
        self.tasks.spawn(Box::new(worker).run());
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
        // Shared with the other components of a `tugboat server`.
        let pod = component_base::intern::shared(pod);
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
    /// Apply one event of the pod watch; `relist` gathers a (re-)list
    /// until it is complete. True when this completed the first full list,
    /// after which housekeeping runs.
    fn on_pod_event(
        &mut self,
        event: Result<Box<watcher::Event<Pod>>, watcher::Error>,
        relist: &mut Option<Vec<Pod>>,
    ) -> bool {
        let event = match event {
            Ok(event) => *event,
            Err(error) => {
                tracing::warn!(%error, "pod watch failed; retrying");
                return false;
            }
        };
        match event {
            watcher::Event::Init => *relist = Some(Vec::new()),
            watcher::Event::InitApply(pod) => match relist.as_mut() {
                Some(list) => list.push(pod),
                None => self.apply(pod),
            },
            watcher::Event::InitDone => {
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
                    ts(a)
                        .cmp(&ts(b))
                        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
                });
                for pod in pods {
                    self.apply(pod);
                }
                if !self.synced {
                    self.synced = true;
                    return true;
                }
            }
            watcher::Event::Apply(pod) => self.apply(pod),
            watcher::Event::Delete(pod) => self.remove(&uid(&pod)),
        }
        false
    }

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
                watcher(api, config)
                    .modify(for_cache)
                    .default_backoff()
                    .map_ok(Box::new)
                    .boxed()
            }
        };
        let mut events = self.ctx.runtime.container_events();
        let mut relist: Option<Vec<Pod>> = None;
        let mut static_pods = self.static_pods.take();
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_PERIOD);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_static = async {
                match static_pods.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(pods) = next_static => {
                    self.apply_static(pods);
                    self.static_synced = true;
                }
                // Boxed: an inline housekeeping pass would enlarge this
                // long-lived future (one per hollow node).
                _ = housekeeping.tick() => Box::pin(self.housekeeping()).await,
                event = stream.next() => {
                    let Some(event) = event else { return };
                    if self.on_pod_event(event, &mut relist) {
                        // Upstream's first housekeeping follows the first
                        // full pod list.
                        Box::pin(self.housekeeping()).await;
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

    /// Labels of pod `uid` on node `node`.
    fn labelled(uid: Option<&str>, node: &str) -> BTreeMap<String, String> {
        uid.map(|u| (LABEL_POD_UID.to_string(), u.to_string()))
            .into_iter()
            .chain([(LABEL_NODE_NAME.to_string(), node.to_string())])
            .collect()
    }

    fn sandbox(id: &str, uid: Option<&str>, node: &str) -> PodSandbox {
        PodSandbox {
            id: id.into(),
            metadata: Default::default(),
            state: crate::runtime::SandboxState::Ready,
            created_at: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            labels: labelled(uid, node),
        }
    }

    fn container(id: &str, uid: Option<&str>, state: ContainerState) -> Container {
        Container {
            id: id.into(),
            pod_sandbox_id: String::new(),
            metadata: Default::default(),
            image: Default::default(),
            image_ref: String::new(),
            state,
            created_at: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            labels: labelled(uid, "n"),
        }
    }

    #[test]
    fn orphans_are_what_no_worker_owns() {
        let mut unlabelled = sandbox("s-old", Some("old-kubelet"), "n");
        unlabelled.labels.remove(LABEL_NODE_NAME);
        let sandboxes = [
            sandbox("s-known", Some("known"), "n"),
            sandbox("s-gone", Some("gone"), "n"),
            sandbox("s-foreign", None, "n"),
            // Another kubelet's pod on a shared runtime, and one from a
            // kubelet that labelled nothing: not ours to remove.
            sandbox("s-other", Some("theirs"), "other-node"),
            unlabelled,
        ];
        let containers = [
            container("c-known", Some("known"), ContainerState::Running),
            container("c-gone-1", Some("gone"), ContainerState::Running),
            container("c-gone-0", Some("gone"), ContainerState::Exited),
            container("c-foreign", None, ContainerState::Running),
            container("c-lost", Some("lost"), ContainerState::Exited),
        ];
        let dirs = ["known".to_string(), "gone".to_string(), "old".to_string()];
        let got = find_orphans("n", &sandboxes, &containers, &dirs, |u| u == "known");
        let want: BTreeMap<String, Orphan> = [
            (
                "gone".to_string(),
                Orphan {
                    sandboxes: vec!["s-gone".into()],
                    containers: vec![("c-gone-1".into(), true), ("c-gone-0".into(), false)],
                    dir: true,
                },
            ),
            (
                "lost".to_string(),
                Orphan {
                    containers: vec![("c-lost".into(), false)],
                    ..Default::default()
                },
            ),
            (
                "old".to_string(),
                Orphan {
                    dir: true,
                    ..Default::default()
                },
            ),
        ]
        .into();
        assert_eq!(got, want);
        // Everything known: nothing to do.
        assert!(find_orphans("n", &sandboxes, &containers, &[], |_| true).is_empty());
    }

    #[test]
    fn static_sandboxes_are_told_by_their_source() {
        let cases = [
            (vec![("kubernetes.io/config.source", "file")], true),
            (vec![("kubernetes.io/config.source", "api")], false),
            (vec![], false),
        ];
        for (annotations, want) in cases {
            let a: BTreeMap<String, String> = annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(is_static_sandbox(&a), want, "{a:?}");
        }
    }

    /// A sandbox of pod `uid` on node `node` in `rt`.
    async fn run_sandbox(
        rt: &crate::runtime::fake::FakeRuntime,
        uid: &str,
        node: &str,
        source: &str,
    ) -> String {
        let config = crate::runtime::PodSandboxConfig {
            metadata: crate::runtime::PodSandboxMetadata {
                name: uid.into(),
                namespace: "default".into(),
                uid: uid.into(),
                attempt: 0,
            },
            labels: labelled(Some(uid), node),
            annotations: [(
                crate::static_pods::ANNOTATION_CONFIG_SOURCE.to_string(),
                source.to_string(),
            )]
            .into(),
            ..Default::default()
        };
        rt.run_pod_sandbox(&config).await.unwrap()
    }

    async fn sandbox_uids(rt: &crate::runtime::fake::FakeRuntime) -> Vec<String> {
        let mut uids: Vec<String> = rt
            .list_pod_sandbox(&PodSandboxFilter::default())
            .await
            .unwrap()
            .into_iter()
            .filter_map(|s| s.labels.get(LABEL_POD_UID).cloned())
            .collect();
        uids.sort();
        uids
    }

    /// Polls until the sandboxes left are `want`.
    async fn wait_sandboxes(rt: &crate::runtime::fake::FakeRuntime, want: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = sandbox_uids(rt).await;
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sandboxes {got:?}, wanted {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A worker context on `runtime`, with a client that reaches nothing,
    /// and the sender of its Node.
    fn context(
        runtime: crate::runtime::fake::FakeRuntime,
    ) -> (Arc<WorkerContext>, watch::Sender<Arc<Node>>) {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let limiter = Arc::new(crate::ratelimit::RateLimiter::new(50.0, 100));
        let (node_tx, node_rx) = watch::channel(Arc::new(Node::default()));
        let ctx = Arc::new(WorkerContext {
            client: client.clone(),
            runtime: Arc::new(runtime),
            runtime_name: "fake".into(),
            host_ips: vec![],
            status: crate::status_manager::StatusManager::new(client, limiter.clone()),
            recorder: None,
            limiter,
            node: node_rx,
            pods_dir: None,
            allow_mount: false,
            node_name: "n".into(),
        });
        (ctx, node_tx)
    }

    /// Every pod has a worker task waiting for most of its life, and every
    /// node a pod manager: their futures stay small (the worker's state is
    /// boxed, and so are its passes and the manager's pod events), or
    /// thousands of pods cost a KiB each for nothing.
    #[tokio::test]
    async fn idle_pod_loops_are_small() {
        let (ctx, _node_tx) = context(crate::runtime::fake::FakeRuntime::new());
        let (_tx, rx) = watch::channel(Some(Arc::new(Pod::default())));
        // The manager's loop, one per node: ~6 KB (heaptrack's task
        // allocation) while it kept room for an unboxed pod event.
        let manager = PodManager::new(ctx.clone(), "n".into(), ctx.node.clone()).run();
        assert!(std::mem::size_of_val(&manager) <= 1024);
        let worker = PodWorker::new(
            ctx,
            rx,
            Arc::new(Notify::new()),
            Arc::new(AtomicBool::new(false)),
            Start::Run,
        );
        // 1.5 KiB before the worker was boxed.
        assert!(std::mem::size_of_val(&Box::new(worker).run()) <= 512);
    }

    #[tokio::test]
    async fn housekeeping_waits_for_the_pod_list_and_the_static_pods() {
        use crate::runtime::fake::FakeRuntime;
        let rt = FakeRuntime::new();
        rt.update_runtime_config("10.244.0.0/24").await.unwrap();
        run_sandbox(&rt, "orphan", "n", "api").await;
        run_sandbox(&rt, "static", "n", "file").await;
        run_sandbox(&rt, "theirs", "other", "api").await;
        let (ctx, node_tx) = context(rt.clone());
        let node_rx = node_tx.subscribe();
        let (feed_tx, feed_rx) = mpsc::unbounded_channel();
        let (static_tx, static_rx) = mpsc::unbounded_channel();
        let manager = PodManager::new(ctx, "n".into(), node_rx)
            .with_feed(feed_rx)
            .with_static_pods(static_rx);
        let task = tokio::spawn(manager.run());

        // Before the first full pod list nothing is an orphan.
        tokio::time::sleep(HOUSEKEEPING_PERIOD + Duration::from_millis(500)).await;
        assert_eq!(sandbox_uids(&rt).await, ["orphan", "static", "theirs"]);

        // Listed (with none of them): the orphan goes at once; the static
        // pod's sandbox waits for the static pod set, another node's stays.
        feed_tx.send(Box::new(watcher::Event::Init)).unwrap();
        feed_tx.send(Box::new(watcher::Event::InitDone)).unwrap();
        wait_sandboxes(&rt, &["static", "theirs"]).await;
        tokio::time::sleep(HOUSEKEEPING_PERIOD + Duration::from_millis(500)).await;
        assert_eq!(sandbox_uids(&rt).await, ["static", "theirs"]);

        // The static pod set came without it: its file is gone.
        static_tx.send(Vec::new()).unwrap();
        wait_sandboxes(&rt, &["theirs"]).await;
        task.abort();
    }
}
