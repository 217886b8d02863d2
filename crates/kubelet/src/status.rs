//! A pod's status as the kubelet reports it, computed purely from the pod,
//! what the container runtime shows of it and the worker's own notes (why
//! a container waits, whether the pod is being terminated). Mirrors
//! upstream's `generateAPIPodStatus` (`pkg/kubelet/kubelet_pods.go`): the
//! phase (`getPhase`), the container statuses
//! (`convertToAPIContainerStatuses`), the kubelet's own conditions
//! (`pkg/kubelet/status/generate.go`), the status manager's
//! `lastTransitionTime` bookkeeping and its `TerminatePod` defaults.
//!
//! Probes ([`crate::probe`]): a running container is `started` once its
//! startup probe succeeded (at once without one) and `ready` once started
//! and its readiness probe succeeded (at once without one), as upstream's
//! prober manager `UpdatePodStatus` sets them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiContainerState, ContainerStateRunning,
    ContainerStateTerminated, ContainerStateWaiting, ContainerStatus as ApiContainerStatus, HostIP,
    Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::probe::ProbeView;
use crate::runtime::{ContainerState, ContainerStatus, PodSandboxStatus, SandboxState};

pub const PENDING: &str = "Pending";
pub const RUNNING: &str = "Running";
pub const SUCCEEDED: &str = "Succeeded";
pub const FAILED: &str = "Failed";

/// Condition types the kubelet owns (upstream's `PodConditionByKubelet`).
pub const POD_SCHEDULED: &str = "PodScheduled";
pub const READY_TO_START: &str = "PodReadyToStartContainers";
pub const INITIALIZED: &str = "Initialized";
pub const CONTAINERS_READY: &str = "ContainersReady";
pub const READY: &str = "Ready";

/// Waiting reasons.
pub const CONTAINER_CREATING: &str = "ContainerCreating";
pub const POD_INITIALIZING: &str = "PodInitializing";
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";

/// Whether `phase` is one a pod never leaves.
pub fn is_terminal(phase: &str) -> bool {
    phase == SUCCEEDED || phase == FAILED
}

/// A `metav1.Time` of `t`, to the second as the API stores it, so that a
/// status computed twice compares equal to itself.
pub fn time(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// Upstream's `format.Pod`: `name_namespace(uid)`.
pub fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's `spec.restartPolicy` (API default `Always`).
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// What the runtime shows of one pod.
#[derive(Debug, Clone, Default)]
pub struct PodRuntimeState {
    /// The pod's newest sandbox.
    pub sandbox: Option<PodSandboxStatus>,
    /// Its containers by name, newest attempt first.
    pub containers: BTreeMap<String, Vec<ContainerStatus>>,
}

impl PodRuntimeState {
    /// The newest container named `name`.
    pub fn latest(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers.get(name).and_then(|v| v.first())
    }

    /// The one before it (the pod's `lastState`).
    pub fn previous(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers.get(name).and_then(|v| v.get(1))
    }

    /// Whether the newest sandbox is ready and networked: no new one is
    /// needed (upstream's `PodSandboxChanged` is false).
    pub fn sandbox_ready(&self, host_network: bool) -> bool {
        self.sandbox
            .as_ref()
            .is_some_and(|s| s.state == SandboxState::Ready && (host_network || s.ip.is_some()))
    }
}

/// Everything a status is computed from.
#[derive(Debug, Clone)]
pub struct StatusInputs<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a PodRuntimeState,
    /// The scheme of container IDs (`fake` → `fake://<id>`).
    pub runtime_name: &'a str,
    /// The node's IPs (`hostIPs`; the pod IPs of host-network pods).
    pub host_ips: &'a [String],
    /// Why containers wait instead of running (`CrashLoopBackOff`,
    /// `CreateContainerError`), by container name: reason and message.
    pub waiting: &'a BTreeMap<String, (String, String)>,
    /// The pod is being terminated (deleted, past its deadline, finished):
    /// its phase must end up terminal (upstream's `podIsTerminal`).
    pub terminal: bool,
    /// A pod-level reason and message (`DeadlineExceeded`, ...).
    pub reason: Option<&'a (String, String)>,
    /// When the kubelet first took the pod on (`startTime`).
    pub start_time: Timestamp,
    /// The status last computed (or the API's), for transition times and
    /// IPs that outlive the sandbox.
    pub previous: Option<&'a PodStatus>,
    /// Probe results by container id; a container with probes and no
    /// entry has the probes' initial results (not started, not ready).
    pub probes: &'a BTreeMap<String, ProbeView>,
    pub now: Timestamp,
}

/// How one container of the spec currently stands, as `getPhase` counts.
fn api_state(status: &ApiContainerStatus) -> (&str, Option<i32>) {
    let state = status.state.as_ref();
    if state.is_some_and(|s| s.running.is_some()) {
        ("running", None)
    } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        ("terminated", Some(t.exit_code))
    } else if state.is_some_and(|s| s.waiting.is_some()) {
        ("waiting", None)
    } else {
        ("unknown", None)
    }
}

fn last_terminated(status: &ApiContainerStatus) -> Option<i32> {
    status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code)
}

fn find<'a>(statuses: &'a [ApiContainerStatus], name: &str) -> Option<&'a ApiContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

/// Upstream's `getPhase`: the pod phase from its container statuses.
pub fn pod_phase(
    pod: &Pod,
    init_statuses: &[ApiContainerStatus],
    statuses: &[ApiContainerStatus],
    pod_is_terminal: bool,
) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return PENDING;
    };
    let policy = restart_policy(pod);
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let mut pending_init = 0;
    let mut failed_init = 0;
    for c in inits.iter().filter(|c| !is_sidecar(c)) {
        match find(init_statuses, &c.name).map(|s| (api_state(s), last_terminated(s))) {
            None => pending_init += 1,
            Some((("running", _), _)) => pending_init += 1,
            Some((("terminated", code), _)) => {
                if code != Some(0) {
                    failed_init += 1;
                }
            }
            Some((("waiting", _), Some(last))) => {
                if last != 0 {
                    failed_init += 1;
                }
            }
            Some(_) => pending_init += 1,
        }
    }
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    let mut pending_sidecars = 0;
    for c in inits.iter().filter(|c| is_sidecar(c)) {
        let Some(s) = find(init_statuses, &c.name) else {
            unknown += 1;
            continue;
        };
        match api_state(s).0 {
            "running" => {
                if s.started != Some(true) {
                    pending_sidecars += 1;
                }
                running += 1;
            }
            // A stopped sidecar does not count either way.
            "terminated" => {}
            "waiting" => {
                if last_terminated(s).is_none() {
                    pending_sidecars += 1;
                    waiting += 1;
                }
            }
            _ => {
                pending_sidecars += 1;
                unknown += 1;
            }
        }
    }
    for c in &spec.containers {
        let Some(s) = find(statuses, &c.name) else {
            unknown += 1;
            continue;
        };
        match api_state(s) {
            ("running", _) => running += 1,
            ("terminated", code) => {
                stopped += 1;
                if code == Some(0) {
                    succeeded += 1;
                }
            }
            ("waiting", _) => {
                if last_terminated(s).is_some() {
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
            _ => unknown += 1,
        }
    }
    if failed_init > 0 && policy == "Never" {
        return FAILED;
    }
    // A pending sidecar holds the pod back only until an app container ran
    // (upstream's `HasAnyRegularContainerStarted` workaround).
    let regular_started = statuses.iter().any(|s| s.container_id.is_some());
    if pending_init > 0 || (pending_sidecars > 0 && !regular_started) {
        return PENDING;
    }
    if waiting > 0 {
        return PENDING;
    }
    if running > 0 && unknown == 0 {
        return RUNNING;
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if pod_is_terminal {
            return if stopped == succeeded {
                SUCCEEDED
            } else {
                FAILED
            };
        }
        if policy == "Always" {
            return RUNNING;
        }
        if stopped == succeeded {
            return SUCCEEDED;
        }
        if policy == "Never" {
            return FAILED;
        }
        return RUNNING;
    }
    PENDING
}

/// Whether container `name` would be started again after it exited
/// (upstream's `ShouldContainerBeRestarted` for one exited container):
/// `Always` restarts everything, `OnFailure` only failures, `Never` nothing;
/// sidecars always restart.
pub fn should_restart(policy: &str, sidecar: bool, exit_code: i32) -> bool {
    if sidecar {
        return true;
    }
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

fn runtime_state(
    c: &ContainerStatus,
    runtime_name: &str,
    default_waiting: &str,
) -> ApiContainerState {
    match c.state {
        ContainerState::Running => ApiContainerState {
            running: Some(ContainerStateRunning {
                started_at: c.started_at.map(time),
            }),
            ..Default::default()
        },
        ContainerState::Exited => ApiContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: c.exit_code,
                reason: (!c.reason.is_empty()).then(|| c.reason.clone()),
                message: (!c.message.is_empty()).then(|| c.message.clone()),
                started_at: c.started_at.map(time),
                finished_at: c.finished_at.map(time),
                container_id: Some(format!("{runtime_name}://{}", c.id)),
                signal: None,
            }),
            ..Default::default()
        },
        ContainerState::Created | ContainerState::Unknown => ApiContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(default_waiting.to_string()),
                message: None,
            }),
            ..Default::default()
        },
    }
}

fn waiting_state(reason: &str, message: &str) -> ApiContainerState {
    ApiContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: (!message.is_empty()).then(|| message.to_string()),
        }),
        ..Default::default()
    }
}

/// One container's API status (upstream's `convertContainerStatus` plus the
/// waiting-reason override of `convertToAPIContainerStatuses`).
fn container_status(
    spec: &Container,
    init: bool,
    inputs: &StatusInputs<'_>,
    default_waiting: &str,
) -> ApiContainerStatus {
    let policy = restart_policy(inputs.pod);
    let sidecar = init && is_sidecar(spec);
    let latest = inputs.runtime.latest(&spec.name);
    let mut status = ApiContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(waiting_state(default_waiting, "")),
        ..Default::default()
    };
    if let Some(c) = latest {
        status.container_id = Some(format!("{}://{}", inputs.runtime_name, c.id));
        status.image_id = c.image_ref.clone();
        status.restart_count = i32::try_from(c.metadata.attempt).unwrap_or(i32::MAX);
        status.state = Some(runtime_state(c, inputs.runtime_name, CONTAINER_CREATING));
        status.started = Some(started(spec, c, inputs.probes));
        if let Some(prev) = inputs.runtime.previous(&spec.name) {
            if prev.state == ContainerState::Exited {
                status.last_state = Some(runtime_state(prev, inputs.runtime_name, ""));
            }
        }
    }
    // A container that will be started again but is held back says why.
    if let Some((reason, message)) = inputs.waiting.get(&spec.name) {
        let restarting = match latest {
            None => true,
            Some(c) if c.state == ContainerState::Exited => {
                should_restart(policy, sidecar, c.exit_code)
            }
            Some(_) => false,
        };
        if restarting && !inputs.terminal {
            if status
                .state
                .as_ref()
                .is_some_and(|s| s.terminated.is_some())
            {
                status.last_state = status.state.take();
            }
            status.state = Some(waiting_state(reason, message));
        }
    }
    status.ready = if init && !sidecar {
        latest.is_some_and(|c| c.state == ContainerState::Exited && c.exit_code == 0)
    } else {
        latest.is_some_and(|c| {
            started(spec, c, inputs.probes)
                && (spec.readiness_probe.is_none()
                    || inputs.probes.get(&c.id).is_some_and(|v| v.ready))
        })
    };
    status
}

/// Whether container `c` of `spec` is running and past its startup probe.
fn started(spec: &Container, c: &ContainerStatus, probes: &BTreeMap<String, ProbeView>) -> bool {
    c.state == ContainerState::Running
        && (spec.startup_probe.is_none() || probes.get(&c.id).is_some_and(|v| v.started))
}

/// Upstream's `TerminatePod` defaults: a terminated pod reports no
/// container as running or waiting, and ends in a terminal phase.
fn terminate(status: &mut PodStatus) {
    let unknown = || ApiContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 137,
            reason: Some("ContainerStatusUnknown".into()),
            message: Some("The container could not be located when the pod was terminated".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let not_terminated =
        |s: &ApiContainerStatus| s.state.as_ref().is_none_or(|st| st.terminated.is_none());
    let regular_started = status
        .container_statuses
        .iter()
        .flatten()
        .any(|s| s.container_id.is_some());
    for s in status.container_statuses.iter_mut().flatten() {
        if not_terminated(s) {
            s.state = Some(unknown());
            s.ready = false;
            s.started = Some(false);
        }
    }
    // Init containers that never ran stay waiting unless the app
    // containers ran after them (then they must have finished somehow).
    for s in status.init_container_statuses.iter_mut().flatten() {
        let running = s.state.as_ref().is_some_and(|st| st.running.is_some());
        if not_terminated(s) && (running || regular_started) {
            s.state = Some(unknown());
            s.ready = false;
            s.started = Some(false);
        }
    }
    if !status.phase.as_deref().is_some_and(is_terminal) {
        status.phase = Some(FAILED.into());
    }
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: kind.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.map(str::to_string),
        message,
        ..Default::default()
    }
}

/// Go's `%s` of a `[]string`: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// Upstream's `GeneratePodInitializedCondition`.
fn initialized_condition(
    pod: &Pod,
    init_statuses: &[ApiContainerStatus],
    statuses: &[ApiContainerStatus],
    phase: &str,
) -> PodCondition {
    let inits = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    if inits.is_empty() {
        return condition(INITIALIZED, true, None, None);
    }
    let mut unknown = Vec::new();
    let mut incomplete = Vec::new();
    for c in inits {
        let Some(s) = find(init_statuses, &c.name) else {
            unknown.push(c.name.as_str());
            continue;
        };
        let done = if is_sidecar(c) {
            s.started == Some(true)
        } else {
            api_state(s) == ("terminated", Some(0))
        };
        if !done {
            incomplete.push(c.name.as_str());
        }
    }
    if phase == SUCCEEDED && unknown.is_empty() {
        return condition(INITIALIZED, true, Some("PodCompleted"), None);
    }
    // A regular container that ever started means initialization finished.
    let regular_started = statuses.iter().any(|s| {
        s.container_id.is_some()
            || s.last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some() || l.running.is_some())
    });
    if regular_started {
        return condition(INITIALIZED, true, None, None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !incomplete.is_empty() {
        messages.push(format!(
            "containers with incomplete status: {}",
            go_list(&incomplete)
        ));
    }
    if messages.is_empty() {
        return condition(INITIALIZED, true, None, None);
    }
    condition(
        INITIALIZED,
        false,
        Some("ContainersNotInitialized"),
        Some(messages.join(", ")),
    )
}

/// Upstream's `GenerateContainersReadyCondition`.
fn containers_ready_condition(
    pod: &Pod,
    init_statuses: &[ApiContainerStatus],
    statuses: &[ApiContainerStatus],
    phase: &str,
) -> PodCondition {
    let Some(spec) = pod.spec.as_ref() else {
        return condition(
            CONTAINERS_READY,
            false,
            Some("UnknownContainerStatuses"),
            None,
        );
    };
    let mut unknown = Vec::new();
    let mut unready = Vec::new();
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c))
        .map(|c| (c, init_statuses));
    let regular = spec.containers.iter().map(|c| (c, statuses));
    for (c, list) in sidecars.chain(regular) {
        match find(list, &c.name) {
            Some(s) if !s.ready => unready.push(c.name.as_str()),
            Some(_) => {}
            None => unknown.push(c.name.as_str()),
        }
    }
    if phase == SUCCEEDED && unknown.is_empty() {
        return condition(CONTAINERS_READY, false, Some("PodCompleted"), None);
    }
    if phase == FAILED {
        return condition(CONTAINERS_READY, false, Some("PodFailed"), None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !unready.is_empty() {
        messages.push(format!(
            "containers with unready status: {}",
            go_list(&unready)
        ));
    }
    if messages.is_empty() {
        return condition(CONTAINERS_READY, true, None, None);
    }
    condition(
        CONTAINERS_READY,
        false,
        Some("ContainersNotReady"),
        Some(messages.join(", ")),
    )
}

/// Upstream's `GeneratePodReadyCondition`: ContainersReady, then the
/// readiness gates (conditions other components set on the pod).
fn ready_condition(pod: &Pod, containers_ready: &PodCondition) -> PodCondition {
    if containers_ready.status != "True" {
        return PodCondition {
            type_: READY.into(),
            ..containers_ready.clone()
        };
    }
    let api_conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let mut messages = Vec::new();
    for gate in pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or_default()
    {
        let kind = &gate.condition_type;
        match api_conditions.iter().find(|c| &c.type_ == kind) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate \"{kind}\" does not exist."
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate \"{kind}\" is not \"True\", but {}",
                c.status
            )),
            Some(_) => {}
        }
    }
    if messages.is_empty() {
        condition(READY, true, None, None)
    } else {
        condition(
            READY,
            false,
            Some("ReadinessGatesNotReady"),
            Some(messages.join(", ")),
        )
    }
}

/// Keeps `lastTransitionTime` of conditions whose status did not change
/// since `previous`, stamps `now` on the others (the status manager's
/// `updateLastTransitionTime`).
pub fn carry_transition_times(
    conditions: &mut [PodCondition],
    previous: Option<&PodStatus>,
    now: Timestamp,
) {
    let old = previous
        .and_then(|p| p.conditions.as_deref())
        .unwrap_or_default();
    for c in conditions {
        c.last_transition_time = match old.iter().find(|o| o.type_ == c.type_) {
            Some(o) if o.status == c.status && o.last_transition_time.is_some() => {
                o.last_transition_time.clone()
            }
            _ => Some(time(now)),
        };
    }
}

/// The pod's status (upstream's `generateAPIPodStatus`, the status
/// manager's merge and, for terminated pods, `TerminatePod`).
pub fn pod_status(inputs: &StatusInputs<'_>) -> PodStatus {
    let pod = inputs.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let default_waiting = if inits.is_empty() {
        CONTAINER_CREATING
    } else {
        POD_INITIALIZING
    };

    let init_statuses: Vec<ApiContainerStatus> = inits
        .iter()
        .map(|c| container_status(c, true, inputs, default_waiting))
        .collect();
    let mut statuses: Vec<ApiContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, false, inputs, default_waiting))
        .collect();
    // Upstream sorts app container statuses by name; init ones keep the
    // spec's order.
    statuses.sort_by(|a, b| a.name.cmp(&b.name));

    let mut phase = pod_phase(pod, &init_statuses, &statuses, inputs.terminal);
    // A terminal phase the API already shows is never left.
    let api_phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if let Some(p) = api_phase.filter(|p| is_terminal(p)) {
        phase = if p == SUCCEEDED { SUCCEEDED } else { FAILED };
    }

    let mut status = PodStatus {
        phase: Some(phase.to_string()),
        host_ip: inputs.host_ips.first().cloned(),
        host_ips: (!inputs.host_ips.is_empty()).then(|| {
            inputs
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        start_time: Some(time(inputs.start_time)),
        // Set by the API server when the pod is created and never changed:
        // carried, so the status the kubelet keeps is the API's whole
        // status (see `status_manager::KeptStatus`).
        qos_class: pod.status.as_ref().and_then(|s| s.qos_class.clone()),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        ..Default::default()
    };
    let ips: Vec<String> = if host_network {
        inputs.host_ips.to_vec()
    } else if let Some(ip) = inputs.runtime.sandbox.as_ref().and_then(|s| s.ip.clone()) {
        vec![ip]
    } else {
        // The sandbox is gone: a pod keeps the IPs it had.
        inputs
            .previous
            .and_then(|p| p.pod_ips.as_ref())
            .map(|ips| ips.iter().map(|i| i.ip.clone()).collect())
            .unwrap_or_default()
    };
    if !ips.is_empty() {
        status.pod_ip = Some(ips[0].clone());
        status.pod_ips = Some(ips.into_iter().map(|ip| PodIP { ip }).collect());
    }
    if let Some((reason, message)) = inputs.reason {
        status.reason = Some(reason.clone());
        status.message = Some(message.clone());
    }
    if inputs.terminal {
        terminate(&mut status);
    }

    let phase = status.phase.clone().unwrap_or_default();
    let init_statuses = status.init_container_statuses.clone().unwrap_or_default();
    let statuses = status.container_statuses.clone().unwrap_or_default();
    let containers_ready = containers_ready_condition(pod, &init_statuses, &statuses, &phase);
    let mut conditions = vec![
        condition(
            READY_TO_START,
            inputs.runtime.sandbox_ready(host_network),
            None,
            None,
        ),
        initialized_condition(pod, &init_statuses, &statuses, &phase),
        ready_condition(pod, &containers_ready),
        containers_ready,
        condition(POD_SCHEDULED, true, None, None),
    ];
    carry_transition_times(&mut conditions, inputs.previous, inputs.now);
    status.conditions = Some(conditions);
    status
}

/// The condition of type `kind`, if the status has it.
pub fn find_condition<'a>(status: &'a PodStatus, kind: &str) -> Option<&'a PodCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == kind)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::runtime::{ContainerMetadata, ImageSpec, PodSandboxMetadata};

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

    fn sandbox(ip: &str) -> PodSandboxStatus {
        PodSandboxStatus {
            id: "s1".into(),
            metadata: PodSandboxMetadata::default(),
            state: SandboxState::Ready,
            created_at: at(0),
            ip: Some(ip.into()),
            labels: Default::default(),
            annotations: Default::default(),
        }
    }

    fn container(name: &str, attempt: u32, state: ContainerState, exit: i32) -> ContainerStatus {
        ContainerStatus {
            id: format!("{name}-{attempt}"),
            metadata: ContainerMetadata {
                name: name.into(),
                attempt,
            },
            state,
            created_at: at(1),
            started_at: (state != ContainerState::Created).then(|| at(2)),
            finished_at: (state == ContainerState::Exited).then(|| at(3)),
            exit_code: exit,
            image: ImageSpec {
                image: "busybox".into(),
            },
            image_ref: "docker.io/library/busybox@sha256:0".into(),
            reason: match (state, exit) {
                (ContainerState::Exited, 0) => "Completed".into(),
                (ContainerState::Exited, _) => "Error".into(),
                _ => String::new(),
            },
            message: String::new(),
            labels: Default::default(),
            annotations: Default::default(),
        }
    }

    fn runtime(sandbox_ip: Option<&str>, containers: Vec<ContainerStatus>) -> PodRuntimeState {
        let mut state = PodRuntimeState {
            sandbox: sandbox_ip.map(sandbox),
            ..Default::default()
        };
        for c in containers {
            state
                .containers
                .entry(c.metadata.name.clone())
                .or_default()
                .push(c);
        }
        for list in state.containers.values_mut() {
            list.sort_by_key(|c| std::cmp::Reverse(c.metadata.attempt));
        }
        state
    }

    struct Case<'a> {
        pod: &'a Pod,
        runtime: PodRuntimeState,
        waiting: BTreeMap<String, (String, String)>,
        terminal: bool,
        probes: BTreeMap<String, ProbeView>,
    }

    impl Case<'_> {
        fn status(&self) -> PodStatus {
            pod_status(&StatusInputs {
                pod: self.pod,
                runtime: &self.runtime,
                runtime_name: "fake",
                host_ips: &["172.16.0.2".to_string()],
                waiting: &self.waiting,
                terminal: self.terminal,
                reason: None,
                start_time: at(0),
                previous: None,
                probes: &self.probes,
                now: at(10),
            })
        }
    }

    fn case(pod: &Pod, runtime: PodRuntimeState) -> Case<'_> {
        Case {
            pod,
            runtime,
            waiting: BTreeMap::new(),
            terminal: false,
            probes: BTreeMap::new(),
        }
    }

    fn conditions(status: &PodStatus) -> Vec<(String, String, Option<String>)> {
        status
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect()
    }

    fn cond(kind: &str, status: &str, reason: Option<&str>) -> (String, String, Option<String>) {
        (kind.into(), status.into(), reason.map(str::to_string))
    }

    #[test]
    fn a_pod_without_containers_yet_is_pending_and_creating() {
        let p = pod(json!({"containers": [{"name": "app", "image": "nginx"}]}));
        let status = case(&p, runtime(None, vec![])).status();
        assert_eq!(status.phase.as_deref(), Some(PENDING));
        assert_eq!(status.pod_ip, None);
        assert_eq!(status.host_ip.as_deref(), Some("172.16.0.2"));
        let c = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some(CONTAINER_CREATING)
        );
        assert_eq!(
            (c.ready, c.started, c.restart_count),
            (false, Some(false), 0)
        );
        assert_eq!(c.image, "nginx");
        assert_eq!(
            conditions(&status),
            [
                cond(READY_TO_START, "False", None),
                cond(INITIALIZED, "True", None),
                cond(READY, "False", Some("ContainersNotReady")),
                cond(CONTAINERS_READY, "False", Some("ContainersNotReady")),
                cond(POD_SCHEDULED, "True", None),
            ]
        );
        assert_eq!(
            find_condition(&status, READY).unwrap().message.as_deref(),
            Some("containers with unready status: [app]")
        );
    }

    #[test]
    fn a_running_pod_is_ready_with_its_sandbox_ip() {
        let p = pod(json!({"containers": [
            {"name": "b", "image": "busybox"},
            {"name": "a", "image": "busybox"},
        ]}));
        let rt = runtime(
            Some("10.244.0.5"),
            vec![
                container("a", 0, ContainerState::Running, 0),
                container("b", 0, ContainerState::Running, 0),
            ],
        );
        let status = case(&p, rt).status();
        assert_eq!(status.phase.as_deref(), Some(RUNNING));
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.5"));
        let statuses = status.container_statuses.as_ref().unwrap();
        // Sorted by name, as upstream reports them.
        assert_eq!(statuses[0].name, "a");
        assert_eq!(statuses[0].container_id.as_deref(), Some("fake://a-0"));
        assert_eq!(statuses[0].image_id, "docker.io/library/busybox@sha256:0");
        assert!(statuses.iter().all(|s| s.ready && s.started == Some(true)));
        assert_eq!(
            conditions(&status),
            [
                cond(READY_TO_START, "True", None),
                cond(INITIALIZED, "True", None),
                cond(READY, "True", None),
                cond(CONTAINERS_READY, "True", None),
                cond(POD_SCHEDULED, "True", None),
            ]
        );
        assert!(status
            .conditions
            .iter()
            .flatten()
            .all(|c| c.last_transition_time == Some(time(at(10)))));
    }

    #[test]
    fn probe_results_gate_started_and_ready() {
        let p = pod(json!({"containers": [
            {"name": "app", "image": "busybox",
             "startupProbe": {"tcpSocket": {"port": 80}},
             "readinessProbe": {"httpGet": {"port": 80}}},
            {"name": "plain", "image": "busybox"},
        ]}));
        let view = |started, ready| ProbeView { started, ready };
        // (probe results of app-0, app started, app ready, ContainersReady, its message)
        let cases = [
            (
                None,
                false,
                false,
                "False",
                Some("containers with unready status: [app]"),
            ),
            (
                Some(view(false, true)),
                false,
                false,
                "False",
                Some("containers with unready status: [app]"),
            ),
            (
                Some(view(true, false)),
                true,
                false,
                "False",
                Some("containers with unready status: [app]"),
            ),
            (Some(view(true, true)), true, true, "True", None),
        ];
        for (i, (probes, started, ready, cond_status, message)) in cases.into_iter().enumerate() {
            let rt = runtime(
                Some("10.244.0.5"),
                vec![
                    container("app", 0, ContainerState::Running, 0),
                    container("plain", 0, ContainerState::Running, 0),
                ],
            );
            let mut c = case(&p, rt);
            if let Some(v) = probes {
                c.probes.insert("app-0".into(), v);
            }
            // Results of an older container do not count.
            c.probes.insert("app-9".into(), view(true, true));
            let status = c.status();
            let statuses = status.container_statuses.as_ref().unwrap();
            assert_eq!(
                (statuses[0].started, statuses[0].ready),
                (Some(started), ready),
                "case {i}"
            );
            // A container without probes is started and ready at once.
            assert!(statuses[1].ready && statuses[1].started == Some(true));
            let cr = find_condition(&status, CONTAINERS_READY).unwrap();
            assert_eq!(
                (cr.status.as_str(), cr.message.as_deref()),
                (cond_status, message),
                "case {i}"
            );
            let ready_cond = find_condition(&status, READY).unwrap();
            assert_eq!(ready_cond.status, cond_status, "case {i}");
            assert_eq!(status.phase.as_deref(), Some(RUNNING));
        }
    }

    #[test]
    fn phases_follow_exit_codes_and_the_restart_policy() {
        let cases = [
            ("Never", 0, SUCCEEDED),
            ("Never", 1, FAILED),
            ("OnFailure", 0, SUCCEEDED),
            // OnFailure restarts failures: still running.
            ("OnFailure", 1, RUNNING),
            // Always restarts everything.
            ("Always", 0, RUNNING),
            ("Always", 1, RUNNING),
        ];
        for (policy, code, phase) in cases {
            let p = pod(json!({
                "restartPolicy": policy,
                "containers": [{"name": "app", "image": "busybox"}],
            }));
            let rt = runtime(
                Some("10.244.0.5"),
                vec![container("app", 0, ContainerState::Exited, code)],
            );
            let status = case(&p, rt).status();
            assert_eq!(status.phase.as_deref(), Some(phase), "{policy} exit {code}");
            let term = status.container_statuses.as_ref().unwrap()[0]
                .state
                .as_ref()
                .unwrap()
                .terminated
                .clone()
                .unwrap();
            assert_eq!(term.exit_code, code);
            assert_eq!(
                term.reason.as_deref(),
                Some(if code == 0 { "Completed" } else { "Error" })
            );
        }
    }

    #[test]
    fn terminal_pods_report_completed_or_failed_conditions() {
        let p = pod(json!({"restartPolicy": "Never", "containers": [{"name": "app"}]}));
        let ok = case(
            &p,
            runtime(None, vec![container("app", 0, ContainerState::Exited, 0)]),
        )
        .status();
        assert_eq!(
            conditions(&ok)[1..4],
            [
                cond(INITIALIZED, "True", None),
                cond(READY, "False", Some("PodCompleted")),
                cond(CONTAINERS_READY, "False", Some("PodCompleted")),
            ]
        );
        let failed = case(
            &p,
            runtime(None, vec![container("app", 0, ContainerState::Exited, 2)]),
        )
        .status();
        assert_eq!(
            conditions(&failed)[2],
            cond(READY, "False", Some("PodFailed"))
        );
    }

    #[test]
    fn a_backed_off_container_waits_with_its_last_exit_recorded() {
        let p = pod(json!({"containers": [{"name": "app"}]}));
        let mut c = case(
            &p,
            runtime(
                Some("10.244.0.5"),
                vec![
                    container("app", 1, ContainerState::Exited, 1),
                    container("app", 0, ContainerState::Exited, 1),
                ],
            ),
        );
        c.waiting.insert(
            "app".into(),
            (CRASH_LOOP_BACK_OFF.into(), "back-off 10s ...".into()),
        );
        let status = c.status();
        let s = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(s.restart_count, 1);
        let waiting = s.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some(CRASH_LOOP_BACK_OFF));
        assert_eq!(waiting.message.as_deref(), Some("back-off 10s ..."));
        let last = s.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.container_id.as_deref(), Some("fake://app-1"));
        assert_eq!(status.phase.as_deref(), Some(RUNNING));
    }

    #[test]
    fn init_containers_gate_initialization() {
        let p = pod(json!({
            "initContainers": [{"name": "one"}, {"name": "two"}],
            "containers": [{"name": "app"}],
        }));
        // `one` done, `two` running: still initializing.
        let status = case(
            &p,
            runtime(
                Some("10.244.0.5"),
                vec![
                    container("one", 0, ContainerState::Exited, 0),
                    container("two", 0, ContainerState::Running, 0),
                ],
            ),
        )
        .status();
        assert_eq!(status.phase.as_deref(), Some(PENDING));
        let init = find_condition(&status, INITIALIZED).unwrap();
        assert_eq!(init.status, "False");
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [two]")
        );
        let app = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            app.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some(POD_INITIALIZING)
        );
        let inits = status.init_container_statuses.as_ref().unwrap();
        assert!(inits[0].ready && !inits[1].ready);

        // A failed init container fails a Never pod, not an Always one.
        for (policy, phase) in [("Never", FAILED), ("Always", PENDING)] {
            let p = pod(json!({
                "restartPolicy": policy,
                "initContainers": [{"name": "one"}],
                "containers": [{"name": "app"}],
            }));
            let status = case(
                &p,
                runtime(
                    Some("10.244.0.5"),
                    vec![container("one", 0, ContainerState::Exited, 1)],
                ),
            )
            .status();
            assert_eq!(status.phase.as_deref(), Some(phase), "{policy}");
        }
    }

    #[test]
    fn a_running_sidecar_keeps_the_pod_running_and_counts_for_readiness() {
        let p = pod(json!({
            "restartPolicy": "Never",
            "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "app"}],
        }));
        let status = case(
            &p,
            runtime(
                Some("10.244.0.5"),
                vec![
                    container("proxy", 0, ContainerState::Running, 0),
                    container("app", 0, ContainerState::Exited, 0),
                ],
            ),
        )
        .status();
        assert_eq!(status.phase.as_deref(), Some(RUNNING));
        // Once the sidecar is stopped the app's success decides.
        let status = case(
            &p,
            runtime(
                Some("10.244.0.5"),
                vec![
                    container("proxy", 0, ContainerState::Exited, 143),
                    container("app", 0, ContainerState::Exited, 0),
                ],
            ),
        )
        .status();
        assert_eq!(status.phase.as_deref(), Some(SUCCEEDED));
    }

    #[test]
    fn terminated_pods_never_report_running_containers() {
        let p = pod(json!({"containers": [{"name": "app"}, {"name": "late"}]}));
        let mut c = case(
            &p,
            runtime(
                Some("10.244.0.5"),
                vec![container("app", 0, ContainerState::Exited, 143)],
            ),
        );
        c.terminal = true;
        let status = c.status();
        assert_eq!(status.phase.as_deref(), Some(FAILED));
        let late = &status.container_statuses.as_ref().unwrap()[1];
        let t = late.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (t.exit_code, t.reason.as_deref()),
            (137, Some("ContainerStatusUnknown"))
        );
        // All stopped cleanly: the pod succeeded.
        let mut c = case(
            &p,
            runtime(
                None,
                vec![
                    container("app", 0, ContainerState::Exited, 0),
                    container("late", 0, ContainerState::Exited, 0),
                ],
            ),
        );
        c.terminal = true;
        assert_eq!(c.status().phase.as_deref(), Some(SUCCEEDED));
    }

    #[test]
    fn readiness_gates_hold_ready_back() {
        let mut p = pod(json!({
            "readinessGates": [{"conditionType": "example.com/lb"}],
            "containers": [{"name": "app"}],
        }));
        let rt = runtime(
            Some("10.244.0.5"),
            vec![container("app", 0, ContainerState::Running, 0)],
        );
        let status = case(&p, rt.clone()).status();
        let ready = find_condition(&status, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("ReadinessGatesNotReady"))
        );
        assert_eq!(
            ready.message.as_deref(),
            Some(
                "corresponding condition of pod readiness gate \"example.com/lb\" does not exist."
            )
        );
        p.status = Some(
            serde_json::from_value(json!({"conditions": [
                {"type": "example.com/lb", "status": "True"}
            ]}))
            .unwrap(),
        );
        let status = case(&p, rt).status();
        assert_eq!(find_condition(&status, READY).unwrap().status, "True");
    }

    #[test]
    fn transition_times_move_only_when_a_status_changes() {
        let previous = PodStatus {
            conditions: Some(vec![
                PodCondition {
                    type_: READY.into(),
                    status: "True".into(),
                    last_transition_time: Some(time(at(1))),
                    ..Default::default()
                },
                PodCondition {
                    type_: INITIALIZED.into(),
                    status: "False".into(),
                    last_transition_time: Some(time(at(1))),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let mut conditions = vec![
            condition(READY, true, None, None),
            condition(INITIALIZED, true, None, None),
            condition(POD_SCHEDULED, true, None, None),
        ];
        carry_transition_times(&mut conditions, Some(&previous), at(5));
        let times: Vec<_> = conditions
            .iter()
            .map(|c| c.last_transition_time.clone().unwrap())
            .collect();
        assert_eq!(times, [time(at(1)), time(at(5)), time(at(5))]);
    }

    #[test]
    fn a_terminal_phase_is_never_left() {
        let mut p = pod(json!({"containers": [{"name": "app"}]}));
        p.status = Some(PodStatus {
            phase: Some(SUCCEEDED.into()),
            ..Default::default()
        });
        let status = case(&p, runtime(None, vec![])).status();
        assert_eq!(status.phase.as_deref(), Some(SUCCEEDED));
    }

    #[test]
    fn restart_decisions_follow_the_policy() {
        assert!(should_restart("Always", false, 0));
        assert!(should_restart("Always", false, 1));
        assert!(!should_restart("OnFailure", false, 0));
        assert!(should_restart("OnFailure", false, 1));
        assert!(!should_restart("Never", false, 1));
        // Sidecars restart whatever the pod's policy.
        assert!(should_restart("Never", true, 0));
    }
}
