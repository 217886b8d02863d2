//! One pod's worker: a task that drives the pod through its life, as
//! upstream's pod workers (`pkg/kubelet/pod_workers.go`) with `SyncPod` /
//! `SyncTerminatingPod` / `SyncTerminatedPod` and kuberuntime's
//! `computePodActions`:
//!
//! ```text
//! Syncing ──(deleted, past activeDeadlineSeconds, or terminal phase)──▶ Terminating ──▶ Terminated
//!   │ sandbox → init containers one by one → sidecars + containers → running (restarts)
//! ```
//!
//! - **Syncing**: every pass observes what the runtime has for the pod,
//!   computes and publishes its status ([`crate::status`]), then applies
//!   [`compute_actions`]: create the sandbox, start the next init container
//!   (each must exit 0 before the next; a failure is retried with back-off
//!   unless `restartPolicy: Never`, which fails the pod), start sidecars and
//!   app containers, restart exited ones as the restart policy says (with
//!   [`crate::backoff`]: `CrashLoopBackOff`), restart one whose image
//!   changed, and stop leftover sidecars once the app containers are done.
//! - **Terminating**: stop every container and the sandbox (the fake
//!   runtime stops at once; the grace period is passed on), publish the
//!   final status, whose phase is always terminal (`TerminatePod`).
//! - **Terminated**: nothing runs. If the pod has a `deletionTimestamp`,
//!   wait for the final status to be written, then delete the pod with
//!   grace period 0 and a UID precondition: that is what ends a graceful
//!   `kubectl delete pod`.
//!
//! When the pod disappears from the API (a forced delete, or the end of
//! the above), the worker removes its sandbox and containers and ends.
//! A worker wakes on pod updates, on runtime events for its containers
//! (CRI's container events, routed by [`crate::pods`]), and on timers
//! (back-off expiry, `activeDeadlineSeconds`), and on probe results
//! ([`crate::probe`]): readiness and startup results feed the status, a
//! liveness or startup probe failing past its threshold kills the
//! container (`Killing`: "Container app failed liveness probe, will be
//! restarted"), which is then restarted as the restart policy says.
//!
//! Volumes ([`crate::volumes`]) are set up under
//! `<root-dir>/pods/<uid>/volumes` before the sandbox is created (upstream's
//! `WaitForAttachAndMount`). One that cannot be (an unsupported type such
//! as `nfs` or `csi`, a missing ConfigMap or Secret) is a `FailedMount`
//! warning event and keeps the containers waiting (`ContainerCreating`,
//! with the error as the message) while the worker retries every
//! [`MOUNT_RETRY`]; the other pods are not affected. Each container gets its
//! `volumeMounts` (`mountPath`, `subPath`, `subPathExpr`, `readOnly`) as
//! the runtime's mounts. ConfigMap, Secret, downward API and projected
//! volumes are rewritten every [`VOLUME_REFRESH`] when their source
//! changed (upstream resyncs them about once a minute), atomically, so
//! running containers see the new files. They are torn down when the pod
//! leaves the API. A kubelet without a root directory (hollow nodes)
//! materializes no volumes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use component_base::events::{EventRecorder, EventType};
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::Resource;
use tokio::sync::{watch, Notify};

use crate::backoff::{go_seconds, Backoff};
use crate::probe::{ProbeKind, ProbeManager, RuntimeExec};
use crate::ratelimit::RateLimiter;
use crate::runtime::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerRuntime, ContainerState,
    ImageSpec, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, RuntimeError, KIND_INIT,
    KIND_REGULAR, KIND_SIDECAR, LABEL_CONTAINER_KIND, LABEL_CONTAINER_NAME, LABEL_POD_NAME,
    LABEL_POD_NAMESPACE, LABEL_POD_UID,
};
use crate::status::{
    format_pod, is_sidecar, is_terminal, pod_status, restart_policy, should_restart, time,
    PodRuntimeState, StatusInputs, CRASH_LOOP_BACK_OFF, FAILED,
};
use crate::status_manager::{follow_api, KeptStatus, StatusManager};
use crate::volumes::{MountedVolume, VolumeContext};

/// A container of the pod spec: init container `i` or app container `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Init(usize),
    App(usize),
}

/// What a sync pass should do (upstream's `podActions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodActions {
    /// No ready sandbox: create one first (nothing else happens this pass).
    pub create_sandbox: bool,
    /// Containers to (re)start, in order; restarts are subject to back-off.
    pub start: Vec<Which>,
    /// Running containers whose spec changed (image): stop them so they
    /// restart with the new one.
    pub stop_changed: Vec<(Which, String)>,
    /// Nothing runs or will run again but leftovers (sidecars): stop them so
    /// the pod can finish.
    pub kill_pod: bool,
}

fn spec_container(pod: &Pod, which: Which) -> Option<&Container> {
    let spec = pod.spec.as_ref()?;
    match which {
        Which::Init(i) => spec.init_containers.as_ref()?.get(i),
        Which::App(i) => spec.containers.get(i),
    }
}

/// Upstream's `computePodActions` for one observation of the runtime.
pub fn compute_actions(pod: &Pod, rt: &PodRuntimeState) -> PodActions {
    let mut actions = PodActions::default();
    let Some(spec) = pod.spec.as_ref() else {
        return actions;
    };
    let policy = restart_policy(pod);
    let host_network = spec.host_network == Some(true);
    if !rt.sandbox_ready(host_network) {
        // A `Never` pod whose containers already ran does not get a second
        // sandbox: it is over.
        if policy == "Never" && !rt.containers.is_empty() {
            actions.kill_pod = true;
        } else {
            actions.create_sandbox = true;
        }
        return actions;
    }
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    // Once an app container ran, the pod is initialized for good.
    let initialized = spec.containers.iter().any(|c| rt.latest(&c.name).is_some());
    for (i, c) in inits.iter().enumerate() {
        let latest = rt.latest(&c.name);
        let state = latest.map(|l| (l.state, l.exit_code));
        if is_sidecar(c) {
            match state {
                None | Some((ContainerState::Created, _)) => {
                    actions.start.push(Which::Init(i));
                    if !initialized {
                        // The next init container waits for this one.
                        return actions;
                    }
                }
                Some((ContainerState::Exited, _)) => actions.start.push(Which::Init(i)),
                _ => {}
            }
            continue;
        }
        if initialized {
            continue;
        }
        match state {
            None | Some((ContainerState::Created, _)) => {
                actions.start.push(Which::Init(i));
                return actions;
            }
            Some((ContainerState::Exited, 0)) => {}
            Some((ContainerState::Exited, _)) => {
                if policy != "Never" {
                    actions.start.push(Which::Init(i));
                }
                return actions;
            }
            // Running (or unknown): wait for it.
            _ => return actions,
        }
    }
    let mut keep = 0;
    let mut apps_to_start = 0;
    for (i, c) in spec.containers.iter().enumerate() {
        match rt.latest(&c.name) {
            None => {
                actions.start.push(Which::App(i));
                apps_to_start += 1;
            }
            Some(l) => match l.state {
                ContainerState::Created => {
                    actions.start.push(Which::App(i));
                    apps_to_start += 1;
                }
                ContainerState::Running => {
                    if c.image.as_deref().is_some_and(|img| img != l.image.image) {
                        actions.stop_changed.push((Which::App(i), l.id.clone()));
                    } else {
                        keep += 1;
                    }
                }
                ContainerState::Exited => {
                    if should_restart(policy, false, l.exit_code) {
                        actions.start.push(Which::App(i));
                        apps_to_start += 1;
                    }
                }
                ContainerState::Unknown => keep += 1,
            },
        }
    }
    if keep == 0 && apps_to_start == 0 && actions.stop_changed.is_empty() {
        // Sidecars must not keep a finished pod alive.
        actions.kill_pod = true;
        actions.start.clear();
    }
    actions
}

/// Go's `time.Duration` string, roughly: `850µs`, `12.5ms`, `1.2s`.
fn go_duration(d: Duration) -> String {
    let trim = |s: String| s.trim_end_matches('0').trim_end_matches('.').to_string();
    if d < Duration::from_micros(1) {
        format!("{}ns", d.as_nanos())
    } else if d < Duration::from_millis(1) {
        format!("{}µs", trim(format!("{:.3}", d.as_nanos() as f64 / 1e3)))
    } else if d < Duration::from_secs(1) {
        format!("{}ms", trim(format!("{:.6}", d.as_nanos() as f64 / 1e6)))
    } else if d < Duration::from_secs(60) {
        format!("{}s", trim(format!("{:.9}", d.as_secs_f64())))
    } else {
        go_seconds(d)
    }
}

/// What every pod worker of one kubelet shares.
pub struct WorkerContext {
    pub client: kube::Client,
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The runtime's name: the scheme of container IDs.
    pub runtime_name: String,
    pub host_ips: Vec<String>,
    pub status: StatusManager,
    pub recorder: Option<EventRecorder>,
    pub limiter: Arc<RateLimiter>,
    /// This node as last registered or updated.
    pub node: tokio::sync::watch::Receiver<Arc<k8s_openapi::api::core::v1::Node>>,
    /// Where pod directories (and so volumes) go: `<root-dir>/pods`.
    /// `None`: volumes are not materialized.
    pub pods_dir: Option<PathBuf>,
    /// Whether the kubelet may mount (tmpfs for Memory emptyDirs).
    pub allow_mount: bool,
    /// This node's name, put on every sandbox and container
    /// ([`crate::pods::LABEL_NODE_NAME`]).
    pub node_name: String,
}

impl WorkerContext {
    /// The node's allocatable resources (`resourceFieldRef` defaults).
    fn node_allocatable(
        &self,
    ) -> BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
        self.node
            .borrow()
            .status
            .as_ref()
            .and_then(|s| s.allocatable.clone())
            .unwrap_or_default()
    }
}

/// How a worker begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Admitted: run it.
    Run,
    /// Refused by admission: reason and message.
    Rejected(String, String),
    /// Already finished in the API (Succeeded or Failed): never run again.
    Finished,
}

#[derive(Debug)]
enum Stage {
    Syncing,
    Terminating,
    Terminated,
}

enum Next {
    Again,
    Wait(Option<Instant>),
}

/// How a start attempt went.
enum Started {
    Yes,
    /// Held back until then (back-off, or a failure to retry).
    Later(Instant),
}

/// How long a failed runtime call waits before the next try.
const RETRY: Duration = Duration::from_secs(1);
/// How long a container that failed to be created waits.
const CREATE_RETRY: Duration = Duration::from_secs(10);
/// How long a pod whose volumes could not be set up waits for the next try.
pub const MOUNT_RETRY: Duration = Duration::from_secs(2);
/// How often ConfigMap, Secret and downward API volumes are refreshed.
pub const VOLUME_REFRESH: Duration = Duration::from_secs(10);
/// What starts the waiting message of containers held back by volumes.
const MOUNT_WAIT_PREFIX: &str = "Unable to attach or mount volumes: ";
/// How often the same `FailedMount` event is recorded again.
const MOUNT_EVENT_EVERY: Duration = Duration::from_secs(30);

pub struct PodWorker {
    ctx: Arc<WorkerContext>,
    uid: String,
    pod: Arc<Pod>,
    updates: watch::Receiver<Option<Arc<Pod>>>,
    poke: Arc<Notify>,
    /// Whether the pod counts against the node's resources (admission).
    active: Arc<AtomicBool>,
    stage: Stage,
    backoff: Backoff,
    /// Why containers wait (reason cache): reason and message by name.
    waiting: BTreeMap<String, (String, String)>,
    /// Pod-level reason and message (`DeadlineExceeded`).
    reason: Option<(String, String)>,
    start_time: Timestamp,
    /// The status last published, shared with the status manager (one
    /// copy per pod, not one each).
    last_status: Option<KeptStatus>,
    /// Until when a container's `BackOff` event was last recorded.
    backoff_events: HashMap<String, Timestamp>,
    /// When each `<container>/<image>` last failed to pull: its image
    /// back-off (in `backoff`) runs from then (`ImagePullBackOff`).
    pull_failed: HashMap<String, Timestamp>,
    deleted: bool,
    /// The pod's probe workers. Exec probes error until the runtime
    /// trait has `ExecSync`.
    probes: ProbeManager,
    /// The pod's volumes, once all are set up.
    volumes: Option<BTreeMap<String, MountedVolume>>,
    /// When the projected volumes were last refreshed.
    volumes_refreshed: Instant,
    /// The last `FailedMount` message and when it was recorded.
    mount_event: Option<(String, Instant)>,
    /// When this kubelet first saw the pod (`kubelet_pod_start_duration_seconds`
    /// runs from then).
    first_seen: Instant,
}

/// The sandbox's hostname: `spec.hostname` or the pod name (at most 63
/// characters), and none for a host-network pod, which shares the node's
/// UTS namespace (upstream's `generatePodSandboxConfig` sets it only for
/// pods with their own network; runc refuses a hostname without a private
/// UTS namespace).
fn sandbox_hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network) == Some(true) {
        return String::new();
    }
    spec.and_then(|s| s.hostname.clone()).unwrap_or_else(|| {
        pod.metadata
            .name
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(63)
            .collect()
    })
}

/// Whether a status publication is the pod's start (upstream observes
/// `kubelet_pod_start_duration_seconds` when the phase turns `Running`): a
/// pod already running when the kubelet (re)started is not starting.
fn became_running(previous: Option<&PodStatus>, next: &PodStatus) -> bool {
    let phase = |s: Option<&PodStatus>| s.and_then(|s| s.phase.clone());
    phase(Some(next)).as_deref() == Some("Running") && phase(previous).as_deref() != Some("Running")
}

impl PodWorker {
    /// A worker for `pod` (newest version in `updates`), woken by `poke`.
    pub fn new(
        ctx: Arc<WorkerContext>,
        updates: watch::Receiver<Option<Arc<Pod>>>,
        poke: Arc<Notify>,
        active: Arc<AtomicBool>,
        start: Start,
    ) -> Self {
        let pod = updates
            .borrow()
            .clone()
            .unwrap_or_else(|| Arc::new(Pod::default()));
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let api_status = KeptStatus::of_api(&pod);
        let start_time = api_status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map_or_else(Timestamp::now, |t| t.0);
        let probes = ProbeManager::new(
            poke.clone(),
            ctx.recorder.clone(),
            Arc::new(RuntimeExec(ctx.runtime.clone())),
        );
        let mut worker = PodWorker {
            ctx,
            uid,
            pod,
            updates,
            poke,
            active,
            stage: Stage::Syncing,
            backoff: Backoff::default(),
            waiting: BTreeMap::new(),
            reason: None,
            start_time,
            last_status: api_status,
            backoff_events: HashMap::new(),
            pull_failed: HashMap::new(),
            deleted: false,
            probes,
            volumes: None,
            volumes_refreshed: Instant::now(),
            mount_event: None,
            first_seen: Instant::now(),
        };
        match start {
            Start::Run => worker.active.store(true, Ordering::SeqCst),
            Start::Finished => {
                worker.active.store(false, Ordering::SeqCst);
                worker.stage = Stage::Terminated;
            }
            Start::Rejected(reason, message) => {
                worker.active.store(false, Ordering::SeqCst);
                worker.stage = Stage::Terminated;
                if let Some(r) = &worker.ctx.recorder {
                    r.warning(&*worker.pod, &reason, message.clone());
                }
                // Upstream's `rejectPod`: only phase, reason and message.
                let status = PodStatus {
                    phase: Some(FAILED.into()),
                    reason: Some(reason),
                    message: Some(format!("Pod was rejected: {message}")),
                    start_time: Some(time(worker.start_time)),
                    ..Default::default()
                };
                worker.publish(status);
            }
        }
        worker
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or("")
    }

    fn publish(&mut self, status: PodStatus) {
        if became_running(self.last_status.as_deref(), &status) {
            crate::metrics::pod_metrics().observe_start(self.first_seen.elapsed());
        }
        // Nothing new: keep what is kept (perhaps the API's copy, see
        // `follow_api`) rather than a fresh copy of the same status. A
        // status equal to the API's at the start is not written, as
        // upstream's status manager finds nothing to update.
        if self.last_status.as_deref() == Some(&status) {
            return;
        }
        let (ns, name) = (self.namespace().to_string(), self.name().to_string());
        tracing::debug!(pod = %format!("{ns}/{name}"), phase = ?status.phase, "status computed");
        let status = Arc::new(status);
        self.ctx.status.set(&self.uid, &ns, &name, status.clone());
        self.last_status = Some(KeptStatus::Own(status));
    }

    fn event(&self, which: Option<Which>, kind: EventType, reason: &str, message: String) {
        let Some(recorder) = &self.ctx.recorder else {
            return;
        };
        let mut object = self.pod.object_ref(&());
        if let Some(which) = which {
            if let Some(c) = spec_container(&self.pod, which) {
                let list = match which {
                    Which::Init(_) => "initContainers",
                    Which::App(_) => "containers",
                };
                object.field_path = Some(format!("spec.{list}{{{}}}", c.name));
            }
        }
        recorder.record(object, kind, reason, message);
    }

    /// Runs the worker until the pod is gone from the API. Takes the
    /// worker boxed: an async fn keeps its arguments twice in its future
    /// (as passed and as moved in), and this future lives as long as the
    /// pod, one per pod.
    pub async fn run(mut self: Box<Self>) {
        // `kubelet_pod_worker_duration_seconds`' operation of the next pass.
        let mut operation = "create";
        loop {
            let current = self.updates.borrow_and_update().clone();
            let Some(pod) = current else {
                Box::pin(self.cleanup()).await;
                return;
            };
            self.pod = pod;
            if let Some(kept) = follow_api(self.last_status.as_ref(), &self.pod) {
                self.ctx.status.keep(&self.uid, &kept);
                self.last_status = Some(kept);
            }
            let began = Instant::now();
            tracing::debug!(pod = %format_pod(&self.pod), stage = ?self.stage, "worker pass");
            // Boxed: the passes' futures are several KiB, and inline they
            // would make every idle worker (one per pod, mostly waiting)
            // that big for the pod's whole life.
            let next = match self.stage {
                Stage::Syncing => Box::pin(self.sync()).await,
                Stage::Terminating => Box::pin(self.terminate()).await,
                Stage::Terminated => Box::pin(self.finish()).await,
            };
            crate::metrics::pod_metrics().observe_worker(operation, began.elapsed());
            operation = "sync";
            let Next::Wait(until) = next else { continue };
            let sleep = async {
                match until {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.updates.changed() => {
                    if changed.is_err() {
                        // The kubelet is shutting down.
                        return;
                    }
                    operation = "update";
                }
                _ = self.poke.notified() => {}
                _ = sleep => {}
            }
        }
    }

    /// What the runtime has for this pod.
    async fn observe(&self) -> Result<PodRuntimeState, RuntimeError> {
        let rt = &self.ctx.runtime;
        let selector: BTreeMap<String, String> =
            [(LABEL_POD_UID.to_string(), self.uid.clone())].into();
        let sandboxes = rt
            .list_pod_sandbox(&PodSandboxFilter {
                label_selector: selector.clone(),
                ..Default::default()
            })
            .await?;
        let newest = sandboxes
            .iter()
            .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let mut state = PodRuntimeState::default();
        if let Some(s) = newest {
            match rt.pod_sandbox_status(&s.id).await {
                Ok(status) => state.sandbox = Some(status),
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let containers = rt
            .list_containers(&ContainerFilter {
                label_selector: selector,
                ..Default::default()
            })
            .await?;
        for c in containers {
            match rt.container_status(&c.id).await {
                Ok(status) => state
                    .containers
                    .entry(status.metadata.name.clone())
                    .or_default()
                    .push(status),
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        for list in state.containers.values_mut() {
            list.sort_by_key(|c| std::cmp::Reverse(c.metadata.attempt));
        }
        Ok(state)
    }

    fn compute(&self, rt: &PodRuntimeState, terminal: bool) -> PodStatus {
        let probes = self.probes.views();
        pod_status(&StatusInputs {
            pod: &self.pod,
            runtime: rt,
            runtime_name: &self.ctx.runtime_name,
            host_ips: &self.ctx.host_ips,
            waiting: &self.waiting,
            terminal,
            reason: self.reason.as_ref(),
            start_time: self.start_time,
            previous: self.last_status.as_deref(),
            probes: &probes,
            now: Timestamp::now(),
        })
    }

    /// When `spec.activeDeadlineSeconds` runs out, if it is set.
    fn deadline(&self) -> Option<Timestamp> {
        let secs = self.pod.spec.as_ref()?.active_deadline_seconds?;
        self.start_time
            .checked_add(SignedDuration::from_secs(secs))
            .ok()
    }

    async fn sync(&mut self) -> Next {
        if self.pod.metadata.deletion_timestamp.is_some() {
            self.stage = Stage::Terminating;
            return Next::Again;
        }
        let now = Timestamp::now();
        let deadline = self.deadline();
        if deadline.is_some_and(|d| d <= now) {
            // Upstream's active deadline handler.
            self.reason = Some((
                "DeadlineExceeded".into(),
                "Pod was active on the node longer than the specified deadline".into(),
            ));
            self.stage = Stage::Terminating;
            return Next::Again;
        }
        let rt = match self.observe().await {
            Ok(rt) => rt,
            Err(error) => {
                tracing::warn!(pod = %format_pod(&self.pod), %error, "reading the runtime failed");
                return Next::Wait(Some(Instant::now() + RETRY));
            }
        };
        let host_network = self.pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        let pod_ip = if host_network {
            self.ctx.host_ips.first().cloned()
        } else {
            rt.sandbox.as_ref().and_then(|s| s.ip.clone())
        };
        self.probes.sync(&self.pod, &rt, pod_ip.as_deref());
        let status = self.compute(&rt, false);
        let phase = status.phase.clone().unwrap_or_default();
        self.publish(status);
        if is_terminal(&phase) {
            self.stage = Stage::Terminating;
            return Next::Again;
        }
        if self.kill_unhealthy(&rt).await {
            return Next::Again;
        }
        if let Err(message) = self.ensure_volumes().await {
            self.volumes_waiting(&message);
            let status = self.compute(&rt, false);
            self.publish(status);
            return Next::Wait(Some(Instant::now() + MOUNT_RETRY));
        }

        let actions = compute_actions(&self.pod, &rt);
        if actions.create_sandbox {
            return self.create_sandbox(&rt).await;
        }
        if actions.kill_pod {
            let running = rt
                .containers
                .values()
                .flatten()
                .any(|c| c.state == ContainerState::Running);
            if running {
                self.stop_running(&rt).await;
            } else {
                // Nothing runs and nothing will: the pod is over.
                self.stage = Stage::Terminating;
            }
            return Next::Again;
        }
        if !actions.stop_changed.is_empty() {
            for (which, id) in &actions.stop_changed {
                let name = spec_container(&self.pod, *which).map_or("", |c| c.name.as_str());
                self.event(
                    Some(*which),
                    EventType::Normal,
                    "Killing",
                    format!("Container {name} definition changed, will be restarted"),
                );
                if let Err(error) = self.ctx.runtime.stop_container(id, self.grace()).await {
                    tracing::warn!(pod = %format_pod(&self.pod), %error, "stopping a container failed");
                }
            }
            return Next::Again;
        }
        let mut wake = deadline.and_then(|d| instant_of(d, now));
        if let Some(at) = self.next_volume_refresh() {
            wake = Some(wake.map_or(at, |w| w.min(at)));
        }
        let mut progressed = false;
        let waiting = self.waiting.clone();
        for which in actions.start {
            match self.start_container(which, &rt).await {
                Started::Yes => progressed = true,
                Started::Later(at) => wake = Some(wake.map_or(at, |w| w.min(at))),
            }
        }
        // A new waiting reason (ImagePullBackOff after ErrImagePull, ...)
        // is published by the next pass, now rather than at the next wake.
        if progressed || self.waiting != waiting {
            Next::Again
        } else {
            Next::Wait(wake)
        }
    }

    /// Kills the running containers whose liveness or startup probe
    /// failed (upstream's `computePodActions`); the next pass restarts them
    /// as the restart policy says. Returns whether it killed any.
    async fn kill_unhealthy(&self, rt: &PodRuntimeState) -> bool {
        let kills = self.probes.kills(&self.pod, rt);
        let restart = restart_policy(&self.pod) != "Never";
        for kill in &kills {
            let probe = match kill.kind {
                ProbeKind::Startup => "startup",
                _ => "liveness",
            };
            let mut message = format!("Container {} failed {probe} probe", kill.container);
            if restart {
                message.push_str(", will be restarted");
            }
            self.event(
                self.which(&kill.container),
                EventType::Normal,
                "Killing",
                message,
            );
            // A probe's own grace period wins over the pod's.
            let grace = kill.grace_seconds.map_or_else(
                || self.grace(),
                |s| Duration::from_secs(u64::try_from(s).unwrap_or(0)),
            );
            if let Err(error) = self
                .ctx
                .runtime
                .stop_container(&kill.container_id, grace)
                .await
            {
                tracing::warn!(pod = %format_pod(&self.pod), %error, "stopping an unhealthy container failed");
            }
        }
        !kills.is_empty()
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    fn sandbox_config(&self, attempt: u32) -> PodSandboxConfig {
        let pod = &self.pod;
        let spec = pod.spec.as_ref();
        let mut labels: BTreeMap<String, String> = pod.metadata.labels.clone().unwrap_or_default();
        labels.insert(LABEL_POD_NAME.into(), self.name().into());
        labels.insert(LABEL_POD_NAMESPACE.into(), self.namespace().into());
        labels.insert(LABEL_POD_UID.into(), self.uid.clone());
        labels.insert(
            crate::pods::LABEL_NODE_NAME.into(),
            self.ctx.node_name.clone(),
        );
        PodSandboxConfig {
            metadata: PodSandboxMetadata {
                name: self.name().into(),
                namespace: self.namespace().into(),
                uid: self.uid.clone(),
                attempt,
            },
            hostname: sandbox_hostname(pod),
            log_directory: format!(
                "/var/log/pods/{}_{}_{}",
                self.namespace(),
                self.name(),
                self.uid
            ),
            labels,
            annotations: pod.metadata.annotations.clone().unwrap_or_default(),
            host_network: spec.and_then(|s| s.host_network) == Some(true),
        }
    }

    async fn create_sandbox(&mut self, rt: &PodRuntimeState) -> Next {
        let attempt = rt
            .sandbox
            .as_ref()
            .map_or(0, |s| s.metadata.attempt.saturating_add(1));
        let config = self.sandbox_config(attempt);
        if let Some(old) = &rt.sandbox {
            // Whatever ran in the old sandbox goes with it.
            let _ = self.ctx.runtime.stop_pod_sandbox(&old.id).await;
        }
        match self.ctx.runtime.run_pod_sandbox(&config).await {
            Ok(_) => Next::Again,
            Err(error) => {
                self.event(
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {error}"),
                );
                Next::Wait(Some(Instant::now() + CREATE_RETRY))
            }
        }
    }

    /// Stops every running container of the pod.
    async fn stop_running(&self, rt: &PodRuntimeState) {
        let grace = self.grace();
        for (name, list) in &rt.containers {
            for c in list.iter().filter(|c| c.state == ContainerState::Running) {
                let which = self.which(name);
                self.event(
                    which,
                    EventType::Normal,
                    "Killing",
                    format!("Stopping container {name}"),
                );
                if let Err(error) = self.ctx.runtime.stop_container(&c.id, grace).await {
                    tracing::warn!(pod = %format_pod(&self.pod), %error, "stopping a container failed");
                }
            }
        }
    }

    fn which(&self, name: &str) -> Option<Which> {
        let spec = self.pod.spec.as_ref()?;
        if let Some(i) = spec.containers.iter().position(|c| c.name == name) {
            return Some(Which::App(i));
        }
        spec.init_containers
            .as_ref()?
            .iter()
            .position(|c| c.name == name)
            .map(Which::Init)
    }

    /// The container's environment as upstream builds it (`env`,
    /// `envFrom`, `valueFrom` of ConfigMaps, Secrets, fields and
    /// resources); an error is the `CreateContainerConfigError` message.
    async fn container_env(
        &self,
        c: &Container,
        sandbox: Option<&crate::runtime::PodSandboxStatus>,
    ) -> Result<Vec<(String, String)>, String> {
        let refs = crate::env::referenced_objects(&self.pod);
        let objects = crate::env::fetch_objects(&self.ctx.client, self.namespace(), &refs).await;
        let host_network = self.pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        let pod_ips: Vec<String> = if host_network {
            self.ctx.host_ips.clone()
        } else {
            sandbox.and_then(|s| s.ip.clone()).into_iter().collect()
        };
        let allocatable = self.ctx.node_allocatable();
        let ctx = crate::env::EnvContext {
            pod: &self.pod,
            host_ips: &self.ctx.host_ips,
            pod_ips: &pod_ips,
            node_allocatable: &allocatable,
            objects: &objects,
        };
        let environment = crate::env::container_env(&ctx, c)?;
        for warning in &environment.warnings {
            self.event(
                None,
                EventType::Warning,
                warning.reason,
                warning.message.clone(),
            );
        }
        Ok(environment.vars)
    }

    fn container_config(
        &self,
        which: Which,
        c: &Container,
        attempt: u32,
        envs: Vec<(String, String)>,
    ) -> ContainerConfig {
        let kind = match which {
            Which::Init(_) if is_sidecar(c) => KIND_SIDECAR,
            Which::Init(_) => KIND_INIT,
            Which::App(_) => KIND_REGULAR,
        };
        let labels: BTreeMap<String, String> = [
            (LABEL_POD_NAME, self.name()),
            (LABEL_POD_NAMESPACE, self.namespace()),
            (LABEL_POD_UID, self.uid.as_str()),
            (LABEL_CONTAINER_NAME, c.name.as_str()),
            (LABEL_CONTAINER_KIND, kind),
            (crate::pods::LABEL_NODE_NAME, self.ctx.node_name.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut annotations: BTreeMap<String, String> = [
            (
                "io.kubernetes.container.restartCount".to_string(),
                attempt.to_string(),
            ),
            (
                "io.kubernetes.container.terminationMessagePath".to_string(),
                c.termination_message_path
                    .clone()
                    .unwrap_or_else(|| "/dev/termination-log".into()),
            ),
        ]
        .into();
        // The process runtime enforces these with cgroups where it can.
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        for resource in ["cpu", "memory"] {
            if let Some(q) = limits.and_then(|l| l.get(resource)) {
                annotations.insert(format!("tugboat.dev/limits.{resource}"), q.0.clone());
            }
        }
        // The cri runtime's cpu shares come from the request; it also
        // passes tty and stdin on to CRI.
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        if let Some(q) = requests.and_then(|r| r.get("cpu")) {
            annotations.insert("tugboat.dev/requests.cpu".into(), q.0.clone());
        }
        for (flag, on) in [
            ("tty", c.tty),
            ("stdin", c.stdin),
            ("stdin-once", c.stdin_once),
        ] {
            if on == Some(true) {
                annotations.insert(format!("tugboat.dev/{flag}"), "true".into());
            }
        }
        ContainerConfig {
            metadata: ContainerMetadata {
                name: c.name.clone(),
                attempt,
            },
            image: ImageSpec {
                image: c.image.clone().unwrap_or_default(),
            },
            command: c.command.clone().unwrap_or_default(),
            args: c.args.clone().unwrap_or_default(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            envs,
            labels,
            annotations,
            log_path: format!("{}/{attempt}.log", c.name),
            mounts: Vec::new(),
        }
    }

    /// Makes sure the image is there, as the pull policy says; on failure
    /// the container waits with the reason.
    async fn ensure_image(&mut self, which: Which, c: &Container) -> Result<(), (String, String)> {
        let image = c.image.clone().unwrap_or_default();
        let spec = ImageSpec {
            image: image.clone(),
        };
        let policy = c.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
        let present = match self.ctx.runtime.image_status(&spec).await {
            Ok(i) => i.is_some(),
            Err(e) => return Err(("ErrImagePull".into(), e.to_string())),
        };
        if present && policy != "Always" {
            self.event(
                Some(which),
                EventType::Normal,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            );
            return Ok(());
        }
        if policy == "Never" {
            let message =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            self.event(
                Some(which),
                EventType::Warning,
                "ErrImageNeverPull",
                message.clone(),
            );
            return Err(("ErrImageNeverPull".into(), message));
        }
        // Upstream's image puller: after a failed pull, none until the
        // back-off (10 s, doubling to 5 min) has passed. A `/` cannot be in
        // a container name, so these keys never meet the crash-loop ones.
        let key = format!("{}/{image}", c.name);
        let now = Timestamp::now();
        if let Some(failed) = self.pull_failed.get(&key).copied() {
            if self.backoff.waiting_until(&key, failed, now).is_some() {
                let shown = self
                    .waiting
                    .get(&c.name)
                    .filter(|(r, _)| r == "ErrImagePull");
                if let Some(error) = shown.filter(|_| {
                    now.duration_since(failed)
                        < SignedDuration::try_from(PULL_ERROR_SHOWN).unwrap_or_default()
                }) {
                    return Err(error.clone());
                }
                let message = format!("Back-off pulling image \"{image}\"");
                self.event(Some(which), EventType::Normal, "BackOff", message.clone());
                return Err(("ImagePullBackOff".into(), message));
            }
        }
        self.event(
            Some(which),
            EventType::Normal,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let t = Instant::now();
        match self.ctx.runtime.pull_image(&spec).await {
            Ok(_) => {
                let took = go_duration(t.elapsed());
                let size = self
                    .ctx
                    .runtime
                    .image_status(&spec)
                    .await
                    .ok()
                    .flatten()
                    .map_or(0, |i| i.size);
                self.event(
                    Some(which),
                    EventType::Normal,
                    "Pulled",
                    format!("Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes."),
                );
                Ok(())
            }
            Err(e) => {
                self.backoff.next(&key, now);
                self.pull_failed.insert(key, now);
                let message = format!("Failed to pull image \"{image}\": {e}");
                self.event(Some(which), EventType::Warning, "Failed", message.clone());
                Err(("ErrImagePull".into(), message))
            }
        }
    }

    /// Starts (or restarts) one container, honouring back-off.
    async fn start_container(&mut self, which: Which, rt: &PodRuntimeState) -> Started {
        let Some(c) = spec_container(&self.pod, which).cloned() else {
            return Started::Later(Instant::now() + RETRY);
        };
        let now = Timestamp::now();
        let latest = rt.latest(&c.name);
        let key = c.name.clone();
        if let Some(l) = latest.filter(|l| l.state == ContainerState::Exited) {
            let finished = l.finished_at.unwrap_or(now);
            if let Some(until) = self.backoff.waiting_until(&key, finished, now) {
                let message = format!(
                    "back-off {} restarting failed container={} pod={}",
                    go_seconds(self.backoff.get(&key)),
                    c.name,
                    format_pod(&self.pod)
                );
                self.waiting
                    .insert(c.name.clone(), (CRASH_LOOP_BACK_OFF.into(), message));
                if self.backoff_events.get(&key) != Some(&until) {
                    self.backoff_events.insert(key.clone(), until);
                    self.event(
                        Some(which),
                        EventType::Warning,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}",
                            c.name,
                            format_pod(&self.pod)
                        ),
                    );
                }
                return Started::Later(instant_of(until, now).unwrap_or_else(Instant::now));
            }
            self.backoff.next(&key, finished);
        }

        let Some(sandbox) = rt.sandbox.clone() else {
            return Started::Later(Instant::now() + RETRY);
        };
        let id = match latest.filter(|l| l.state == ContainerState::Created) {
            Some(l) => l.id.clone(),
            None => {
                if let Err((reason, message)) = self.ensure_image(which, &c).await {
                    let retry = if reason == "ErrImagePull" {
                        PULL_ERROR_SHOWN
                    } else {
                        CREATE_RETRY
                    };
                    self.waiting.insert(c.name.clone(), (reason, message));
                    return Started::Later(Instant::now() + retry);
                }
                let attempt = latest.map_or(0, |l| l.metadata.attempt.saturating_add(1));
                let envs = match self.container_env(&c, rt.sandbox.as_ref()).await {
                    Ok(envs) => envs,
                    Err(message) => {
                        self.event(
                            Some(which),
                            EventType::Warning,
                            "Failed",
                            format!("Error: {message}"),
                        );
                        self.waiting.insert(
                            c.name.clone(),
                            ("CreateContainerConfigError".into(), message),
                        );
                        return Started::Later(Instant::now() + CREATE_RETRY);
                    }
                };
                let mounts = match self.container_mounts(&c, &envs) {
                    Ok(mounts) => mounts,
                    Err(message) => {
                        self.event(
                            Some(which),
                            EventType::Warning,
                            "Failed",
                            format!("Error: {message}"),
                        );
                        self.waiting.insert(
                            c.name.clone(),
                            ("CreateContainerConfigError".into(), message),
                        );
                        return Started::Later(Instant::now() + CREATE_RETRY);
                    }
                };
                let mut config = self.container_config(which, &c, attempt, envs);
                config.mounts = mounts;
                let sandbox_config = self.sandbox_config(sandbox.metadata.attempt);
                match self
                    .ctx
                    .runtime
                    .create_container(&sandbox.id, &config, &sandbox_config)
                    .await
                {
                    Ok(id) => {
                        self.event(
                            Some(which),
                            EventType::Normal,
                            "Created",
                            format!("Created container: {}", c.name),
                        );
                        id
                    }
                    Err(e) => {
                        self.event(
                            Some(which),
                            EventType::Warning,
                            "Failed",
                            format!("Error: {e}"),
                        );
                        self.waiting.insert(
                            c.name.clone(),
                            ("CreateContainerError".into(), e.to_string()),
                        );
                        return Started::Later(Instant::now() + CREATE_RETRY);
                    }
                }
            }
        };
        if let Err(e) = self.ctx.runtime.start_container(&id).await {
            self.event(
                Some(which),
                EventType::Warning,
                "Failed",
                format!("Error: {e}"),
            );
            self.waiting
                .insert(c.name.clone(), ("RunContainerError".into(), e.to_string()));
            return Started::Later(Instant::now() + CREATE_RETRY);
        }
        self.event(
            Some(which),
            EventType::Normal,
            "Started",
            format!("Started container {}", c.name),
        );
        self.waiting.remove(&c.name);
        self.prune(rt, &c.name).await;
        Started::Yes
    }

    /// This pod's directory on the node, if volumes are materialized.
    fn pod_dir(&self) -> Option<PathBuf> {
        self.ctx.pods_dir.as_ref().map(|d| d.join(&self.uid))
    }

    /// Sets up the pod's volumes unless they are; on failure, the
    /// `FailedMount` message (also recorded as an event).
    async fn ensure_volumes(&mut self) -> Result<(), String> {
        if self.volumes.is_some() {
            if self
                .next_volume_refresh()
                .is_some_and(|at| at <= Instant::now())
            {
                self.refresh_volumes().await;
            }
            return Ok(());
        }
        let Some(pod_dir) = self.pod_dir() else {
            self.volumes = Some(BTreeMap::new());
            return Ok(());
        };
        let has_volumes = self
            .pod
            .spec
            .as_ref()
            .is_some_and(|s| s.volumes.as_ref().is_some_and(|v| !v.is_empty()));
        let objects = if has_volumes {
            let refs = crate::env::referenced_objects(&self.pod);
            crate::env::fetch_objects(&self.ctx.client, self.namespace(), &refs).await
        } else {
            Default::default()
        };
        let allocatable = self.ctx.node_allocatable();
        let ctx = VolumeContext {
            pod: &self.pod,
            pod_dir: &pod_dir,
            objects: &objects,
            node_allocatable: &allocatable,
            allow_mount: self.ctx.allow_mount,
        };
        let (mounted, errors) = crate::volumes::set_up_pod_volumes(&ctx);
        if !errors.is_empty() {
            let message = errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            let repeat = self
                .mount_event
                .as_ref()
                .is_some_and(|(m, at)| *m == message && at.elapsed() < MOUNT_EVENT_EVERY);
            if !repeat {
                for e in &errors {
                    self.event(None, EventType::Warning, "FailedMount", e.to_string());
                }
                self.mount_event = Some((message.clone(), Instant::now()));
            }
            return Err(message);
        }
        for v in mounted.values() {
            for note in &v.notes {
                self.event(None, EventType::Warning, "FailedMount", note.clone());
            }
        }
        self.volumes = Some(mounted);
        self.volumes_refreshed = Instant::now();
        self.mount_event = None;
        // The containers stop waiting for their volumes.
        self.waiting
            .retain(|_, (_, message)| !message.starts_with(MOUNT_WAIT_PREFIX));
        Ok(())
    }

    /// Every container waits for the volumes, saying why.
    fn volumes_waiting(&mut self, message: &str) {
        let Some(spec) = self.pod.spec.as_ref() else {
            return;
        };
        let reason = if spec.init_containers.as_ref().is_some_and(|i| !i.is_empty()) {
            crate::status::POD_INITIALIZING
        } else {
            crate::status::CONTAINER_CREATING
        };
        let names: Vec<String> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c| c.name.clone())
            .collect();
        for name in names {
            self.waiting.insert(
                name,
                (reason.to_string(), format!("{MOUNT_WAIT_PREFIX}{message}")),
            );
        }
    }

    /// When the projected volumes are next refreshed, if the pod has any.
    fn next_volume_refresh(&self) -> Option<Instant> {
        let volumes = self.volumes.as_ref()?;
        volumes
            .values()
            .any(|v| {
                matches!(
                    v.kind.as_str(),
                    "configMap" | "secret" | "downwardAPI" | "projected"
                )
            })
            .then(|| self.volumes_refreshed + VOLUME_REFRESH)
    }

    /// Rewrites the ConfigMap, Secret and downward API volumes whose source
    /// changed (a failure keeps the old files, as upstream does).
    async fn refresh_volumes(&mut self) {
        self.volumes_refreshed = Instant::now();
        let Some(pod_dir) = self.pod_dir() else {
            return;
        };
        let refs = crate::env::referenced_objects(&self.pod);
        let objects = crate::env::fetch_objects(&self.ctx.client, self.namespace(), &refs).await;
        let allocatable = self.ctx.node_allocatable();
        let ctx = VolumeContext {
            pod: &self.pod,
            pod_dir: &pod_dir,
            objects: &objects,
            node_allocatable: &allocatable,
            allow_mount: self.ctx.allow_mount,
        };
        let (updated, errors) = crate::volumes::refresh_pod_volumes(&ctx);
        if !updated.is_empty() {
            tracing::debug!(pod = %format_pod(&self.pod), volumes = ?updated, "volumes refreshed");
        }
        for e in errors {
            self.event(None, EventType::Warning, "FailedMount", e.to_string());
        }
    }

    /// The runtime mounts of container `c` (with environment `envs`, for
    /// `subPathExpr`).
    fn container_mounts(
        &self,
        c: &Container,
        envs: &[(String, String)],
    ) -> Result<Vec<crate::runtime::Mount>, String> {
        if self.ctx.pods_dir.is_none() {
            return Ok(Vec::new());
        }
        let volumes = self.volumes.clone().unwrap_or_default();
        let mut mounts = crate::volumes::container_mounts(c, &volumes, envs)?;
        crate::volumes::prepare_sub_paths(&mut mounts)?;
        Ok(mounts
            .into_iter()
            .map(|m| crate::runtime::Mount {
                container_path: m.container_path,
                host_path: m.host_path,
                readonly: m.read_only,
            })
            .collect())
    }

    /// Unmounts and removes the pod's volumes and its directory.
    fn tear_down_volumes(&self) {
        let Some(pod_dir) = self.pod_dir() else {
            return;
        };
        match crate::volumes::tear_down_pod_volumes(&pod_dir, self.ctx.allow_mount) {
            // Only empty now, unless a runtime keeps things there.
            Ok(()) => {
                let _ = std::fs::remove_dir(&pod_dir);
            }
            Err(error) => {
                tracing::warn!(pod = %format_pod(&self.pod), %error, "tearing the volumes down failed")
            }
        }
    }

    /// Removes dead containers of `name` older than the one kept for
    /// `lastState` (upstream's container GC keeps one per container).
    async fn prune(&self, rt: &PodRuntimeState, name: &str) {
        let Some(list) = rt.containers.get(name) else {
            return;
        };
        // `list` predates the container just started: its newest entry is
        // now the previous one; anything older goes.
        for old in list.iter().skip(1) {
            if old.state == ContainerState::Exited {
                let _ = self.ctx.runtime.remove_container(&old.id).await;
            }
        }
    }

    async fn terminate(&mut self) -> Next {
        let rt = match self.observe().await {
            Ok(rt) => rt,
            Err(error) => {
                tracing::warn!(pod = %format_pod(&self.pod), %error, "reading the runtime failed");
                return Next::Wait(Some(Instant::now() + RETRY));
            }
        };
        self.stop_running(&rt).await;
        if let Some(sandbox) = &rt.sandbox {
            if let Err(error) = self.ctx.runtime.stop_pod_sandbox(&sandbox.id).await {
                tracing::warn!(pod = %format_pod(&self.pod), %error, "stopping the sandbox failed");
                return Next::Wait(Some(Instant::now() + RETRY));
            }
        }
        let rt = match self.observe().await {
            Ok(rt) => rt,
            Err(_) => return Next::Wait(Some(Instant::now() + RETRY)),
        };
        let status = self.compute(&rt, true);
        self.publish(status);
        self.active.store(false, Ordering::SeqCst);
        self.stage = Stage::Terminated;
        Next::Again
    }

    async fn finish(&mut self) -> Next {
        if self.deleted || self.pod.metadata.deletion_timestamp.is_none() {
            return Next::Wait(None);
        }
        // The final status first, so watchers see how the pod ended.
        self.ctx.status.flush(&self.uid).await;
        self.ctx.limiter.acquire().await;
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(self.name(), &params).await {
            Ok(_) => {
                self.deleted = true;
                Next::Wait(None)
            }
            // Gone already, or a new pod of the same name: not ours.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                self.deleted = true;
                Next::Wait(None)
            }
            Err(error) => {
                tracing::warn!(pod = %format_pod(&self.pod), %error, "deleting the pod failed; retrying");
                Next::Wait(Some(Instant::now() + RETRY))
            }
        }
    }

    /// The pod left the API: remove everything the runtime has of it.
    async fn cleanup(&self) {
        self.active.store(false, Ordering::SeqCst);
        self.ctx.status.forget(&self.uid);
        // Unmount first: removing a sandbox may remove the pod directory,
        // which must not happen through a mount.
        self.tear_down_volumes();
        let rt = &self.ctx.runtime;
        let selector: BTreeMap<String, String> =
            [(LABEL_POD_UID.to_string(), self.uid.clone())].into();
        if let Ok(sandboxes) = rt
            .list_pod_sandbox(&PodSandboxFilter {
                label_selector: selector.clone(),
                ..Default::default()
            })
            .await
        {
            for s in sandboxes {
                let _ = rt.remove_pod_sandbox(&s.id).await;
            }
        }
        if let Ok(containers) = rt
            .list_containers(&ContainerFilter {
                label_selector: selector,
                ..Default::default()
            })
            .await
        {
            for c in containers {
                let _ = rt.remove_container(&c.id).await;
            }
        }
    }
}

/// How long a failed pull shows `ErrImagePull` before `ImagePullBackOff`:
/// upstream's next sync comes seconds later, while a worker here also
/// wakes on its own status write and would replace the error at once.
const PULL_ERROR_SHOWN: Duration = Duration::from_secs(2);

/// The `Instant` at which wall-clock `at` arrives, seen from `now`.
fn instant_of(at: Timestamp, now: Timestamp) -> Option<Instant> {
    let ahead: Duration = at.duration_since(now).try_into().unwrap_or(Duration::ZERO);
    Instant::now().checked_add(ahead)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::runtime::{ContainerStatus, PodSandboxStatus, SandboxState};

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn rt(sandbox: bool, containers: &[(&str, ContainerState, i32)]) -> PodRuntimeState {
        let mut state = PodRuntimeState::default();
        if sandbox {
            state.sandbox = Some(PodSandboxStatus {
                id: "s".into(),
                metadata: Default::default(),
                state: SandboxState::Ready,
                created_at: at(0),
                ip: Some("10.244.0.2".into()),
                labels: Default::default(),
                annotations: Default::default(),
            });
        }
        for (name, state_, code) in containers {
            state
                .containers
                .entry(name.to_string())
                .or_default()
                .push(ContainerStatus {
                    id: format!("{name}-id"),
                    metadata: ContainerMetadata {
                        name: name.to_string(),
                        attempt: 0,
                    },
                    state: *state_,
                    created_at: at(1),
                    started_at: Some(at(1)),
                    finished_at: Some(at(2)),
                    exit_code: *code,
                    image: ImageSpec {
                        image: "busybox".into(),
                    },
                    image_ref: String::new(),
                    reason: String::new(),
                    message: String::new(),
                    labels: Default::default(),
                    annotations: Default::default(),
                });
        }
        state
    }

    use ContainerState::{Created, Exited, Running};

    #[test]
    fn the_sandbox_comes_first() {
        let p = pod(json!({"containers": [{"name": "app", "image": "busybox"}]}));
        let a = compute_actions(&p, &rt(false, &[]));
        assert_eq!(
            a,
            PodActions {
                create_sandbox: true,
                ..Default::default()
            }
        );
    }

    #[test]
    fn init_containers_run_one_at_a_time_then_the_app_containers() {
        let p = pod(json!({
            "initContainers": [{"name": "one", "image": "busybox"}, {"name": "two", "image": "busybox"}],
            "containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}],
        }));
        type Step<'a> = (&'a [(&'a str, ContainerState, i32)], Vec<Which>);
        let steps: &[Step] = &[
            (&[], vec![Which::Init(0)]),
            // Running: wait.
            (&[("one", Running, 0)], vec![]),
            (&[("one", Exited, 0)], vec![Which::Init(1)]),
            (
                &[("one", Exited, 0), ("two", Created, 0)],
                vec![Which::Init(1)],
            ),
            (
                &[("one", Exited, 0), ("two", Exited, 0)],
                vec![Which::App(0), Which::App(1)],
            ),
            // A failed init container is retried (policy Always).
            (
                &[("one", Exited, 0), ("two", Exited, 1)],
                vec![Which::Init(1)],
            ),
            // Once app containers ran, init containers are not rerun.
            (&[("a", Running, 0), ("b", Running, 0)], vec![]),
        ];
        for (containers, start) in steps {
            let a = compute_actions(&p, &rt(true, containers));
            assert_eq!(&a.start, start, "{containers:?}");
            assert!(!a.kill_pod && !a.create_sandbox, "{containers:?}");
        }
    }

    #[test]
    fn a_failed_init_container_ends_a_never_pod() {
        let p = pod(json!({
            "restartPolicy": "Never",
            "initContainers": [{"name": "one", "image": "busybox"}],
            "containers": [{"name": "a", "image": "busybox"}],
        }));
        let a = compute_actions(&p, &rt(true, &[("one", Exited, 1)]));
        assert_eq!(a, PodActions::default());
    }

    #[test]
    fn exited_containers_restart_as_the_policy_says() {
        let cases = [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 0, false),
            ("OnFailure", 1, true),
            ("Never", 1, false),
        ];
        for (policy, code, restart) in cases {
            let p = pod(json!({
                "restartPolicy": policy,
                "containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}],
            }));
            let a = compute_actions(&p, &rt(true, &[("a", Exited, code), ("b", Running, 0)]));
            assert_eq!(
                a.start == [Which::App(0)],
                restart,
                "{policy} exit {code}: {a:?}"
            );
            assert!(!a.kill_pod);
        }
    }

    #[test]
    fn sidecars_start_first_restart_always_and_are_stopped_at_the_end() {
        let p = pod(json!({
            "restartPolicy": "Never",
            "initContainers": [
                {"name": "proxy", "image": "busybox", "restartPolicy": "Always"},
                {"name": "setup", "image": "busybox"},
            ],
            "containers": [{"name": "app", "image": "busybox"}],
        }));
        // The sidecar starts before the next init container.
        let a = compute_actions(&p, &rt(true, &[]));
        assert_eq!(a.start, [Which::Init(0)]);
        let a = compute_actions(&p, &rt(true, &[("proxy", Running, 0)]));
        assert_eq!(a.start, [Which::Init(1)]);
        // A sidecar that exits is restarted even in a Never pod.
        let a = compute_actions(
            &p,
            &rt(
                true,
                &[
                    ("proxy", Exited, 1),
                    ("setup", Exited, 0),
                    ("app", Running, 0),
                ],
            ),
        );
        assert_eq!(a.start, [Which::Init(0)]);
        // The app is done: stop the sidecar rather than restart anything.
        let a = compute_actions(
            &p,
            &rt(
                true,
                &[
                    ("proxy", Running, 0),
                    ("setup", Exited, 0),
                    ("app", Exited, 0),
                ],
            ),
        );
        assert!(a.kill_pod && a.start.is_empty(), "{a:?}");
    }

    #[test]
    fn a_changed_image_restarts_the_container() {
        let p = pod(json!({"containers": [{"name": "a", "image": "nginx:2"}]}));
        let a = compute_actions(&p, &rt(true, &[("a", Running, 0)]));
        assert_eq!(a.stop_changed, [(Which::App(0), "a-id".to_string())]);
        assert!(!a.kill_pod);
    }

    #[test]
    fn a_never_pod_gets_no_second_sandbox() {
        let p = pod(json!({
            "restartPolicy": "Never",
            "containers": [{"name": "a", "image": "busybox"}],
        }));
        let a = compute_actions(&p, &rt(false, &[("a", Exited, 0)]));
        assert!(a.kill_pod && !a.create_sandbox);
    }

    #[test]
    fn the_pod_start_is_its_first_running_status() {
        let st = |phase: Option<&str>| PodStatus {
            phase: phase.map(String::from),
            ..Default::default()
        };
        let cases = [
            // Nothing published yet, or still pending: starting now.
            (None, Some("Running"), true),
            (Some(st(Some("Pending"))), Some("Running"), true),
            (Some(st(None)), Some("Running"), true),
            // Running already (a kubelet restart, a later status): no.
            (Some(st(Some("Running"))), Some("Running"), false),
            // Not running: no.
            (None, Some("Pending"), false),
            (Some(st(Some("Running"))), Some("Succeeded"), false),
            (Some(st(Some("Pending"))), Some("Failed"), false),
        ];
        for (previous, next, want) in cases {
            assert_eq!(
                became_running(previous.as_ref(), &st(next)),
                want,
                "{previous:?} -> {next:?}"
            );
        }
    }

    #[test]
    fn host_network_pods_get_no_sandbox_hostname() {
        let named = pod(serde_json::json!({"containers": []}));
        assert_eq!(sandbox_hostname(&named), "web");
        let own = pod(serde_json::json!({"hostname": "web-0", "containers": []}));
        assert_eq!(sandbox_hostname(&own), "web-0");
        let host = pod(serde_json::json!({"hostNetwork": true, "containers": []}));
        assert_eq!(sandbox_hostname(&host), "");
    }

    #[test]
    fn go_durations_read_like_go() {
        assert_eq!(go_duration(Duration::from_micros(850)), "850µs");
        assert_eq!(go_duration(Duration::from_micros(12_500)), "12.5ms");
        assert_eq!(go_duration(Duration::from_millis(1_200)), "1.2s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
    }
}
