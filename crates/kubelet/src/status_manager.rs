//! Writing pod statuses to the API server, as upstream's status manager
//! (`pkg/kubelet/status`) does:
//! - pod workers [`StatusManager::set`] a status whenever they compute one;
//!   a status equal to the last one set is dropped, and several set before
//!   the writer gets to the pod collapse into one write of the newest;
//! - a pod is never written by two writers at once, so writes land in
//!   order; every write waits for the kubelet's API rate limiter;
//! - a write is a strategic merge patch of `pods/status` carrying only the
//!   kubelet's fields, so conditions other components own (readiness gates,
//!   `DisruptionTarget`) survive: conditions merge by `type` and container
//!   statuses by `name`, with explicit nulls for fields that went away (a
//!   container state switching from `running` to `terminated`), which is
//!   what upstream's two-way diff produces. The patch carries
//!   `metadata.uid` as upstream's does;
//! - a pod that is gone (404) is forgotten; other failures retry after a
//!   second;
//! - a static pod ([`crate::static_pods`]) runs under its own UID, and its
//!   status goes to its mirror pod ([`StatusManager::set_mirror`]), as
//!   upstream's status manager translates static pod UIDs: nothing is
//!   written while there is no mirror pod, and everything again once a
//!   new one appears.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Deref;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Map, Value};
use tokio::sync::{oneshot, Notify};

use crate::ratelimit::RateLimiter;

/// Sets `keys` that `obj` lacks to null, so a merge patch removes them.
fn null_missing(obj: &mut Value, keys: &[&str]) {
    if let Value::Object(map) = obj {
        for key in keys {
            map.entry(key.to_string()).or_insert(Value::Null);
        }
    }
}

fn null_missing_state(state: &mut Value) {
    if state.is_object() {
        null_missing(state, &["running", "terminated", "waiting"]);
        for inner in ["running", "terminated", "waiting"] {
            let keys: &[&str] = match inner {
                "running" => &["startedAt"],
                "terminated" => &[
                    "reason",
                    "message",
                    "startedAt",
                    "finishedAt",
                    "containerID",
                    "signal",
                ],
                _ => &["reason", "message"],
            };
            if let Some(v) = state.get_mut(inner) {
                null_missing(v, keys);
            }
        }
    }
}

/// The `pods/status` strategic merge patch that makes the kubelet's fields
/// of the live status equal `status`.
pub fn status_patch(uid: &str, status: &PodStatus) -> Value {
    let mut status = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
    null_missing(
        &mut status,
        &[
            "phase",
            "reason",
            "message",
            "hostIP",
            "hostIPs",
            "podIP",
            "podIPs",
            "startTime",
        ],
    );
    for list in ["conditions", "containerStatuses", "initContainerStatuses"] {
        let Some(Value::Array(items)) = status.get_mut(list) else {
            continue;
        };
        for item in items {
            if list == "conditions" {
                null_missing(item, &["reason", "message", "lastProbeTime"]);
                continue;
            }
            null_missing(item, &["containerID", "lastState", "started"]);
            if let Some(state) = item.get_mut("state") {
                null_missing_state(state);
            }
            if let Some(last) = item.get_mut("lastState") {
                null_missing_state(last);
            }
        }
    }
    let mut meta = Map::new();
    meta.insert("uid".into(), json!(uid));
    json!({"metadata": meta, "status": status})
}

/// A pod status the kubelet keeps: one it computed, or, once the API
/// server's copy of the pod shows the same status, that copy's. A running
/// pod's status is ~3 KB and a hollow node process keeps tens of thousands,
/// while the pod the kubelet holds anyway (shared with the other
/// components, [`component_base::intern`]) already carries it.
#[derive(Debug, Clone)]
pub enum KeptStatus {
    Own(Arc<PodStatus>),
    /// The status of this pod, which has one.
    Api(Arc<Pod>),
}

impl KeptStatus {
    /// The status of `pod`, kept as part of it, if it has one.
    pub fn of_api(pod: &Arc<Pod>) -> Option<KeptStatus> {
        pod.status.is_some().then(|| KeptStatus::Api(pod.clone()))
    }

    /// Whether this is the status of exactly `pod` (that version).
    fn is_of(&self, pod: &Arc<Pod>) -> bool {
        matches!(self, KeptStatus::Api(p) if Arc::ptr_eq(p, pod))
    }
}

impl Deref for KeptStatus {
    type Target = PodStatus;

    fn deref(&self) -> &PodStatus {
        static NONE: LazyLock<PodStatus> = LazyLock::new(PodStatus::default);
        match self {
            KeptStatus::Own(status) => status,
            // `of_api` only keeps pods that have a status.
            KeptStatus::Api(pod) => pod.status.as_ref().unwrap_or(&NONE),
        }
    }
}

/// What a worker keeps of its last status when the API's copy of its pod
/// (`pod`, just received) is known: the pod's own status when it says the
/// same, a copy of its own when the pod it borrowed from has moved on to
/// another status, `None` when nothing changes.
pub fn follow_api(last: Option<&KeptStatus>, pod: &Arc<Pod>) -> Option<KeptStatus> {
    let last = last?;
    if last.is_of(pod) {
        return None;
    }
    if pod.status.as_ref() == Some(&**last) {
        return KeptStatus::of_api(pod);
    }
    match last {
        KeptStatus::Api(_) => Some(KeptStatus::Own(Arc::new(PodStatus::clone(last)))),
        KeptStatus::Own(_) => None,
    }
}

struct Entry {
    namespace: String,
    name: String,
    /// The same as the pod's worker keeps.
    desired: KeptStatus,
    version: u64,
    written: u64,
    waiters: Vec<oneshot::Sender<()>>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    processing: HashSet<String>,
    /// Static pod UID → its mirror pod's UID (`None`: no mirror yet).
    mirrors: HashMap<String, Option<String>>,
}

impl State {
    fn enqueue(&mut self, uid: &str) {
        if !self.processing.contains(uid) && self.queued.insert(uid.to_string()) {
            self.queue.push_back(uid.to_string());
        }
    }
}

struct Inner {
    client: kube::Client,
    limiter: Arc<RateLimiter>,
    state: Mutex<State>,
    wake: Notify,
}

/// The kubelet's pod status writer. Cheap to clone.
#[derive(Clone)]
pub struct StatusManager {
    inner: Arc<Inner>,
}

impl StatusManager {
    pub fn new(client: kube::Client, limiter: Arc<RateLimiter>) -> Self {
        StatusManager {
            inner: Arc::new(Inner {
                client,
                limiter,
                state: Mutex::new(State::default()),
                wake: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for `status` to be written to pod `namespace/name` with `uid`.
    pub fn set(&self, uid: &str, namespace: &str, name: &str, status: Arc<PodStatus>) {
        let mut state = self.lock();
        match state.entries.get_mut(uid) {
            Some(e) if *e.desired == *status => return,
            Some(e) => {
                e.desired = KeptStatus::Own(status);
                e.version += 1;
            }
            None => {
                state.entries.insert(
                    uid.to_string(),
                    Entry {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                        desired: KeptStatus::Own(status),
                        version: 1,
                        written: 0,
                        waiters: Vec::new(),
                    },
                );
            }
        }
        state.enqueue(uid);
        drop(state);
        self.inner.wake.notify_one();
    }

    /// Keeps `kept` in place of the status last set for `uid`, if they say
    /// the same: the worker found the API's copy of the pod agreeing.
    pub fn keep(&self, uid: &str, kept: &KeptStatus) {
        let mut state = self.lock();
        if let Some(e) = state.entries.get_mut(uid) {
            if *e.desired == **kept {
                e.desired = kept.clone();
            }
        }
    }

    /// The status last set for pod `namespace/name`.
    pub fn status_of(&self, namespace: &str, name: &str) -> Option<PodStatus> {
        self.lock()
            .entries
            .values()
            .find(|e| e.namespace == namespace && e.name == name)
            .map(|e| PodStatus::clone(&e.desired))
    }

    /// The status last set for `uid`.
    pub fn desired(&self, uid: &str) -> Option<PodStatus> {
        self.lock()
            .entries
            .get(uid)
            .map(|e| PodStatus::clone(&e.desired))
    }

    /// Waits until the status last set for `uid` is written (or dropped
    /// because the pod is gone).
    pub async fn flush(&self, uid: &str) {
        let rx = {
            let mut state = self.lock();
            match state.entries.get_mut(uid) {
                Some(e) if e.written < e.version => {
                    let (tx, rx) = oneshot::channel();
                    e.waiters.push(tx);
                    rx
                }
                _ => return,
            }
        };
        let _ = rx.await;
    }

    /// Says which mirror pod (by UID) the status of static pod `uid` goes
    /// to; a new mirror gets the whole status written again.
    pub fn set_mirror(&self, uid: &str, mirror: Option<String>) {
        let mut state = self.lock();
        let previous = state.mirrors.insert(uid.to_string(), mirror.clone());
        if previous.as_ref() == Some(&mirror) || mirror.is_none() {
            return;
        }
        let Some(e) = state.entries.get_mut(uid) else {
            return;
        };
        e.written = 0;
        state.enqueue(uid);
        drop(state);
        self.inner.wake.notify_one();
    }

    /// Forgets a pod that is gone; pending writes are dropped.
    pub fn forget(&self, uid: &str) {
        let mut state = self.lock();
        state.entries.remove(uid);
        state.mirrors.remove(uid);
        if state.queued.remove(uid) {
            state.queue.retain(|u| u != uid);
        }
    }

    /// The next pod to write, waiting for one.
    async fn next(&self) -> String {
        loop {
            let notified = self.inner.wake.notified();
            {
                let mut state = self.lock();
                if let Some(uid) = state.queue.pop_front() {
                    state.queued.remove(&uid);
                    state.processing.insert(uid.clone());
                    // More work: let another writer take it.
                    if !state.queue.is_empty() {
                        self.inner.wake.notify_one();
                    }
                    return uid;
                }
            }
            notified.await;
        }
    }

    /// Marks `uid` done up to `version`; requeues it if it changed since.
    fn done(&self, uid: &str, version: u64, written: bool) {
        let mut state = self.lock();
        state.processing.remove(uid);
        let Some(e) = state.entries.get_mut(uid) else {
            return;
        };
        if written {
            e.written = e.written.max(version);
        }
        if e.written >= e.version {
            for w in e.waiters.drain(..) {
                let _ = w.send(());
            }
        } else {
            state.enqueue(uid);
            drop(state);
            self.inner.wake.notify_one();
        }
    }

    async fn write_one(&self, uid: String) {
        let (job, mirror) = {
            let state = self.lock();
            let job = state.entries.get(&uid).map(|e| {
                (
                    e.namespace.clone(),
                    e.name.clone(),
                    e.desired.clone(),
                    e.version,
                )
            });
            (job, state.mirrors.get(&uid).cloned())
        };
        let Some((namespace, name, status, version)) = job else {
            self.lock().processing.remove(&uid);
            return;
        };
        // A static pod: written to its mirror, once there is one.
        let target_uid = match mirror {
            None => uid.clone(),
            Some(Some(m)) => m,
            Some(None) => {
                self.lock().processing.remove(&uid);
                return;
            }
        };
        self.inner.limiter.acquire().await;
        let api: Api<Pod> = Api::namespaced(self.inner.client.clone(), &namespace);
        let patch = status_patch(&target_uid, &status);
        tracing::trace!(pod = %format!("{namespace}/{name}"), %patch, "writing pod status");
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {
                tracing::debug!(pod = %format!("{namespace}/{name}"), phase = ?status.phase, "pod status written");
                self.done(&uid, version, true)
            }
            Err(kube::Error::Api(e)) if (e.code == 404 || e.code == 409) && target_uid != uid => {
                // The mirror pod went away: wait for the next one.
                self.lock().processing.remove(&uid);
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                // The pod is gone: nothing to write, nobody to wait for.
                let mut state = self.lock();
                state.processing.remove(&uid);
                if let Some(mut e) = state.entries.remove(&uid) {
                    for w in e.waiters.drain(..) {
                        let _ = w.send(());
                    }
                }
            }
            Err(error) => {
                tracing::warn!(pod = %format!("{namespace}/{name}"), %error, "updating pod status failed; retrying");
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    this.done(&uid, version, false);
                });
            }
        }
    }

    /// One writer: runs until the task is aborted.
    pub async fn run_writer(self) {
        loop {
            let uid = self.next().await;
            // Boxed: a write's future is kilobytes, and inline it would make
            // every idle writer (two per kubelet, hollow ones included) that
            // big.
            Box::pin(self.write_one(uid)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition,
    };

    use super::*;

    #[test]
    fn the_patch_nulls_what_went_away() {
        let status = PodStatus {
            phase: Some("Succeeded".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: Some("PodCompleted".into()),
                ..Default::default()
            }]),
            container_statuses: Some(vec![ContainerStatus {
                name: "app".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 0,
                        reason: Some("Completed".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let patch = status_patch("u1", &status);
        assert_eq!(patch["metadata"]["uid"], "u1");
        let s = &patch["status"];
        assert_eq!(s["phase"], "Succeeded");
        assert!(s["podIP"].is_null() && s.get("podIP").is_some());
        let cond = &s["conditions"][0];
        assert_eq!(cond["reason"], "PodCompleted");
        assert!(cond.get("message").is_some_and(Value::is_null));
        let state = &s["containerStatuses"][0]["state"];
        assert!(state.get("running").is_some_and(Value::is_null));
        assert!(state.get("waiting").is_some_and(Value::is_null));
        assert_eq!(state["terminated"]["exitCode"], 0);
        assert!(state["terminated"]
            .get("message")
            .is_some_and(Value::is_null));
        assert!(s["containerStatuses"][0]
            .get("lastState")
            .is_some_and(Value::is_null));
        // Fields the kubelet does not own are left alone.
        assert!(s.get("qosClass").is_none());
        assert!(s.get("nominatedNodeName").is_none());
    }

    fn pod_with_phase(phase: &str) -> Arc<Pod> {
        Arc::new(Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn own(phase: &str) -> KeptStatus {
        KeptStatus::Own(Arc::new(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }))
    }

    #[test]
    fn a_status_the_api_agrees_with_is_kept_as_the_apis() {
        let running = pod_with_phase("Running");
        // Ours, and the API says the same: keep the API's.
        let kept = follow_api(Some(&own("Running")), &running).unwrap();
        assert!(kept.is_of(&running));
        // Already the API's copy of this version: nothing to do.
        assert!(follow_api(Some(&kept), &running).is_none());
        // A newer version saying the same: follow it, let the old go.
        let newer = pod_with_phase("Running");
        assert!(follow_api(Some(&kept), &newer).unwrap().is_of(&newer));
        // The API has not caught up with ours yet: keep ours.
        assert!(follow_api(Some(&own("Succeeded")), &running).is_none());
        // The pod we borrowed from moved on to another status (someone
        // else wrote it): keep a copy of what we had, not the old pod.
        let other = pod_with_phase("Failed");
        match follow_api(Some(&kept), &other) {
            Some(KeptStatus::Own(status)) => assert_eq!(status.phase.as_deref(), Some("Running")),
            other => panic!("expected our own copy, got {other:?}"),
        }
        assert!(follow_api(None, &running).is_none());
        // A pod without a status has nothing to borrow.
        assert!(KeptStatus::of_api(&Arc::new(Pod::default())).is_none());
    }

    #[tokio::test]
    async fn the_status_manager_keeps_the_apis_copy_only_when_it_says_the_same() {
        // No writer runs: nothing is sent.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let manager = StatusManager::new(client, Arc::new(RateLimiter::new(10.0, 10)));
        let ours = Arc::new(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        });
        manager.set("u1", "default", "web", ours.clone());
        let running = pod_with_phase("Running");
        manager.keep("u1", &KeptStatus::of_api(&running).unwrap());
        assert_eq!(Arc::strong_count(&ours), 1);
        assert_eq!(Arc::strong_count(&running), 2);
        assert_eq!(
            manager.desired("u1").unwrap().phase.as_deref(),
            Some("Running")
        );
        // Another status is not taken for ours.
        manager.keep(
            "u1",
            &KeptStatus::of_api(&pod_with_phase("Failed")).unwrap(),
        );
        assert_eq!(
            manager.desired("u1").unwrap().phase.as_deref(),
            Some("Running")
        );
        // Setting the same status again changes nothing; a new one replaces.
        manager.set("u1", "default", "web", ours);
        assert_eq!(Arc::strong_count(&running), 2);
        manager.set("u1", "default", "web", own_status("Succeeded"));
        assert_eq!(Arc::strong_count(&running), 1);
    }

    fn own_status(phase: &str) -> Arc<PodStatus> {
        Arc::new(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        })
    }
}
