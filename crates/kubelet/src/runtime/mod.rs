//! The container runtime interface the kubelet drives, shaped after CRI
//! (`k8s.io/cri-api`, `RuntimeService` and `ImageService`) so that a CRI
//! client over gRPC can implement it later without the kubelet changing:
//! - a pod is a *sandbox* (`run_pod_sandbox` → id; it owns the pod's network
//!   namespace and so its IP) plus *containers* created in it;
//! - containers are created, started, stopped and removed by id; a restart
//!   is a new container with `metadata.attempt` one higher, so the runtime's
//!   list is the kubelet's memory of restarts (`restartCount`);
//! - the kubelet finds a pod's sandboxes and containers through the labels it
//!   put on them ([`LABEL_POD_UID`] etc.), as upstream's kuberuntime does, so
//!   it keeps no state of its own that a restart would lose;
//! - [`ContainerRuntime::container_events`] is CRI's `GetContainerEvents`
//!   stream (the "evented PLEG"): it wakes the pod worker that owns the
//!   container instead of the kubelet polling every pod.
//!
//! Names and semantics follow CRI: stopping or removing something that does
//! not exist succeeds (the calls are idempotent), `container_status` of an
//! unknown id is [`RuntimeError::NotFound`].
//!
//! Only [`fake`] exists for now: containers "run" in memory, which is what
//! hollow nodes (upstream's kubemark) need to exercise the control plane.

pub mod cri;
pub mod fake;
pub mod packed;
pub mod process;
pub mod streaming;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::broadcast;

/// The pod name label on sandboxes and containers (upstream's
/// `io.kubernetes.pod.name`).
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// The pod namespace label.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The pod UID label: how the kubelet finds a pod's sandboxes and containers.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// The container name label on containers.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// What kind of container of the pod spec a container is: [`KIND_INIT`],
/// [`KIND_SIDECAR`] (an init container with `restartPolicy: Always`) or
/// [`KIND_REGULAR`]. Not an upstream label: runtimes ignore it, the fake
/// runtime reads it to know which containers must exit on their own.
pub const LABEL_CONTAINER_KIND: &str = "tugboat.dev/container-kind";
pub const KIND_INIT: &str = "init";
pub const KIND_SIDECAR: &str = "sidecar";
pub const KIND_REGULAR: &str = "regular";

/// CRI's errors, reduced to what the kubelet acts on.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RuntimeError {
    /// No such sandbox, container or image (gRPC `NotFound`).
    #[error("{0} not found")]
    NotFound(String),
    /// Anything else, with the runtime's message.
    #[error("{0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

/// CRI `VersionResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// `fake`, `containerd`, ...: the scheme of container IDs and of the
    /// node's `containerRuntimeVersion`.
    pub runtime_name: String,
    pub runtime_version: String,
    pub runtime_api_version: String,
}

/// CRI `RuntimeCondition`: `RuntimeReady` or `NetworkReady`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCondition {
    pub kind: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// CRI `RuntimeStatus`: the conditions the node's Ready condition reflects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeStatus {
    pub conditions: Vec<RuntimeCondition>,
}

/// CRI's condition names.
pub const RUNTIME_READY: &str = "RuntimeReady";
pub const NETWORK_READY: &str = "NetworkReady";

/// CRI `PodSandboxMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSandboxMetadata {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
}

/// CRI `PodSandboxConfig`, the parts a runtime needs so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSandboxConfig {
    pub metadata: PodSandboxMetadata,
    pub hostname: String,
    /// Where container logs go (`/var/log/pods/<ns>_<name>_<uid>`).
    pub log_directory: String,
    pub labels: BTreeMap<String, String>,
    /// The pod's annotations, as upstream passes them.
    pub annotations: BTreeMap<String, String>,
    /// `spec.hostNetwork`: no network namespace, so no pod IP of its own.
    pub host_network: bool,
}

/// CRI `PodSandboxState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// CRI `PodSandbox` (a list entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandbox {
    pub id: String,
    pub metadata: PodSandboxMetadata,
    pub state: SandboxState,
    pub created_at: Timestamp,
    pub labels: BTreeMap<String, String>,
}

/// CRI `PodSandboxStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSandboxStatus {
    pub id: String,
    pub metadata: PodSandboxMetadata,
    pub state: SandboxState,
    pub created_at: Timestamp,
    /// The pod IP (`network.ip`); none for host-network sandboxes.
    pub ip: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// CRI `PodSandboxFilter`: every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSandboxFilter {
    pub id: Option<String>,
    pub state: Option<SandboxState>,
    pub label_selector: BTreeMap<String, String>,
}

impl PodSandboxFilter {
    /// Whether a sandbox passes every field set in the filter.
    pub fn matches(&self, id: &str, state: SandboxState, labels: &impl StrMap) -> bool {
        self.id.as_ref().is_none_or(|f| f == id)
            && self.state.is_none_or(|f| f == state)
            && labels_match(&self.label_selector, labels)
    }
}

/// A read-only string map, as CRI filters read a record's labels (and the
/// fake runtime its annotations): runtimes keep them as they like (the
/// fake runtime packs them, [`packed::PackedMap`]).
pub trait StrMap {
    fn get_str(&self, key: &str) -> Option<&str>;
}

impl StrMap for BTreeMap<String, String> {
    fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// CRI's label selectors: every pair must be present.
fn labels_match(selector: &BTreeMap<String, String>, labels: &impl StrMap) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.get_str(k) == Some(v.as_str()))
}

/// CRI `ImageSpec`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSpec {
    pub image: String,
}

/// CRI `Image`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size: u64,
}

/// CRI `ContainerMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMetadata {
    pub name: String,
    /// 0 for the first container of this name in the sandbox, one more for
    /// each restart.
    pub attempt: u32,
}

/// CRI `Mount`: a host path (a volume, or a path in one) the container
/// sees at `container_path`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    pub host_path: std::path::PathBuf,
    pub readonly: bool,
}

/// CRI `ContainerConfig`, the parts a runtime needs so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    pub metadata: ContainerMetadata,
    pub image: ImageSpec,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    pub envs: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Relative to the sandbox's log directory.
    pub log_path: String,
    /// The container's volume mounts, in the pod spec's order.
    pub mounts: Vec<Mount>,
}

/// CRI `ContainerState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// CRI `Container` (a list entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub pod_sandbox_id: String,
    pub metadata: ContainerMetadata,
    pub image: ImageSpec,
    pub image_ref: String,
    pub state: ContainerState,
    pub created_at: Timestamp,
    pub labels: BTreeMap<String, String>,
}

/// CRI `ContainerStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    pub id: String,
    pub metadata: ContainerMetadata,
    pub state: ContainerState,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub exit_code: i32,
    pub image: ImageSpec,
    /// The digest-pinned image the container runs (the pod's `imageID`).
    pub image_ref: String,
    /// `Completed`, `Error`, `OOMKilled`, ... for exited containers.
    pub reason: String,
    pub message: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// CRI `ContainerFilter`: every given field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerFilter {
    pub id: Option<String>,
    pub pod_sandbox_id: Option<String>,
    pub state: Option<ContainerState>,
    pub label_selector: BTreeMap<String, String>,
}

impl ContainerFilter {
    /// Whether a container passes every field set in the filter.
    pub fn matches(
        &self,
        id: &str,
        sandbox_id: &str,
        state: ContainerState,
        labels: &impl StrMap,
    ) -> bool {
        self.id.as_ref().is_none_or(|f| f == id)
            && self.pod_sandbox_id.as_ref().is_none_or(|f| f == sandbox_id)
            && self.state.is_none_or(|f| f == state)
            && labels_match(&self.label_selector, labels)
    }
}

/// CRI `ContainerEventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerEventType {
    Created,
    Started,
    Stopped,
    Deleted,
}

/// CRI `ContainerEventResponse`, reduced: which pod it concerns (its UID,
/// from the sandbox metadata) is what the kubelet routes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub container_id: String,
    pub pod_sandbox_id: String,
    pub pod_uid: String,
    pub kind: ContainerEventType,
}

/// CRI `ExecSyncResponse`: how a command run in a container ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSyncResult {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// CRI `CpuUsage`: cumulative CPU time since the container started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuUsage {
    pub usage_core_nano_seconds: u64,
}

/// CRI `MemoryUsage` (cgroup or process-tree figures, in bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// What the OOM killer and eviction look at: usage minus reclaimable
    /// (inactive file) pages.
    pub working_set_bytes: u64,
    pub usage_bytes: u64,
    pub rss_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

/// CRI `ContainerStats`, the parts the kubelet's `/stats/summary` needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// When the figures were read.
    pub timestamp: Timestamp,
    pub cpu: Option<CpuUsage>,
    pub memory: Option<MemoryUsage>,
}

/// A container runtime, as CRI's `RuntimeService` and `ImageService`.
#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// CRI `Version`.
    async fn version(&self) -> Result<VersionInfo>;
    /// CRI `Status`.
    async fn status(&self) -> Result<RuntimeStatus>;
    /// CRI `UpdateRuntimeConfig`: the node's pod CIDR, from which the
    /// network plugin hands out pod IPs.
    async fn update_runtime_config(&self, pod_cidr: &str) -> Result<()>;

    /// CRI `RunPodSandbox`: creates and starts a sandbox, returns its id.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String>;
    /// CRI `StopPodSandbox`: stops its containers and releases its network.
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    /// CRI `RemovePodSandbox`: removes it and its containers.
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    /// CRI `PodSandboxStatus`.
    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus>;
    /// CRI `ListPodSandbox`.
    async fn list_pod_sandbox(&self, filter: &PodSandboxFilter) -> Result<Vec<PodSandbox>>;

    /// CRI `CreateContainer`: a container in the sandbox, not yet started.
    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String>;
    /// CRI `StartContainer`.
    async fn start_container(&self, id: &str) -> Result<()>;
    /// CRI `StopContainer`: asks it to stop, kills it after `timeout`.
    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()>;
    /// CRI `RemoveContainer`.
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// CRI `ListContainers`.
    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<Container>>;
    /// CRI `ContainerStatus`.
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;

    /// CRI `ExecSync`: runs `cmd` in running container `container_id` and
    /// returns its exit code and output; fails if it has not ended within
    /// `timeout` (zero: no limit). What exec probes run.
    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResult>;

    /// CRI `ImageStatus`: `None` when the image is not on the node.
    async fn image_status(&self, image: &ImageSpec) -> Result<Option<Image>>;
    /// CRI `PullImage`: returns the image reference (`imageID`).
    async fn pull_image(&self, image: &ImageSpec) -> Result<String>;

    /// Where container `id`'s CRI-format log file is (CRI's
    /// `ContainerStatus.log_path`, what the kubelet reads for
    /// `containerLogs`). Runtimes that keep no logs say so.
    async fn container_log_path(&self, id: &str) -> Result<std::path::PathBuf> {
        Err(RuntimeError::Failed(format!(
            "the runtime keeps no log for container {id}"
        )))
    }

    /// CRI `Exec` (streaming): runs `req.cmd` in a running container with
    /// the requested pipes, for `kubectl exec`.
    async fn exec_stream(&self, req: &streaming::StreamRequest) -> Result<streaming::StreamTarget> {
        Err(RuntimeError::Failed(format!(
            "the runtime does not support exec into container {}",
            req.container_id
        )))
    }

    /// CRI `Attach`: the running container's own output (and stdin), for
    /// `kubectl attach`.
    async fn attach_stream(
        &self,
        req: &streaming::StreamRequest,
    ) -> Result<streaming::StreamTarget> {
        Err(RuntimeError::Failed(format!(
            "the runtime does not support attaching to container {}",
            req.container_id
        )))
    }

    /// CRI `ContainerStats`: the resource usage of running container `id`.
    /// Runtimes that measure nothing say so; the summary then leaves the
    /// container's cpu and memory out.
    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        Err(RuntimeError::Failed(format!(
            "the runtime reports no stats for container {id}"
        )))
    }

    /// The address port-forward dials for pod sandbox `pod_sandbox_id`'s
    /// ports. By default the loopback: the pod shares the host's network
    /// (upstream dials localhost inside the pod's network namespace).
    async fn port_forward_address(&self, pod_sandbox_id: &str) -> Result<String> {
        let _ = pod_sandbox_id;
        Ok("127.0.0.1".into())
    }

    /// A connection to `port` of pod sandbox `pod_sandbox_id`, for one
    /// forwarded port-forward connection. By default a dial to
    /// [`port_forward_address`](Self::port_forward_address); runtimes whose
    /// pods have their own network namespace connect from inside it, so
    /// that a server bound to the pod's loopback is reached too (upstream's
    /// CRI `PortForward`).
    async fn port_forward_dial(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream> {
        let host = self.port_forward_address(pod_sandbox_id).await?;
        tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| RuntimeError::Failed(e.to_string()))
    }

    /// CRI `GetContainerEvents`: every container state change from now on.
    /// A receiver that lags must assume it missed events and re-list.
    fn container_events(&self) -> broadcast::Receiver<ContainerEvent>;
}
