//! The `fake` runtime: sandboxes and containers that live in memory, as
//! upstream's kubemark hollow kubelet runs pods. Nothing is executed; a
//! container's command is never interpreted. Instead a container runs until
//! it is stopped, unless the pod's annotations give it a program:
//!
//! | annotation (on the pod)                     | meaning |
//! |---------------------------------------------|---------|
//! | `tugboat.dev/fake-exit-code: "<n>"`         | every container of `spec.containers` exits with code `n` |
//! | `tugboat.dev/fake-run-seconds: "<s>"`       | ... after running `s` seconds (decimals allowed; default 0 once an exit code is given; alone, it means exit 0 after `s`) |
//! | `tugboat.dev/fake-exit-code.<container>`    | the same for the one container named `<container>`; the only way to make an init container fail or a sidecar exit |
//! | `tugboat.dev/fake-run-seconds.<container>`  | ditto |
//! | `tugboat.dev/fake-stop-exit-code: "<n>"`    | the exit code of a container the kubelet stops (default 143, a process ended by SIGTERM; `0` for an app that exits cleanly) |
//! | `tugboat.dev/fake-exec-exit-code: "<n>"`    | the exit code of every command exec'd in the pod's containers (exec probes; default 0); `.<container>` for one container |
//! | `tugboat.dev/fake-exec-stdout: "<text>"`    | their standard output (default empty); `.<container>` for one container |
//!
//! So `restartPolicy: Never` plus `tugboat.dev/fake-exit-code: "0"` makes a
//! Job's pod succeed at once, `"1"` makes it fail, and `fake-run-seconds`
//! keeps it active for a while first. Init containers (not sidecars) exit 0
//! at once unless their own `.<container>` keys say otherwise. An exit code
//! of 0 is reported with reason `Completed`, anything else `Error`, as
//! containerd does. A malformed value fails `CreateContainer`, so the pod
//! shows `CreateContainerError` with the reason.
//!
//! The network: pod IPs come from the pod CIDR handed over by
//! `UpdateRuntimeConfig` (IPv4 only), from `.2` upwards (`.1` is the
//! gateway by CNI convention), round-robin like the `host-local` IPAM
//! plugin so a freed IP is not reused at once; a stopped sandbox gives its
//! IP back. Until a CIDR is configured `NetworkReady` is false and
//! sandboxes cannot be created. Images are "pulled" instantly and get a
//! made-up digest; the image store starts empty, so the first pod on a node
//! pulls and later ones find the image present.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{
    Container, ContainerConfig, ContainerEvent, ContainerEventType, ContainerFilter,
    ContainerMetadata, ContainerRuntime, ContainerState, ContainerStatus, Image, ImageSpec,
    PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxStatus, Result,
    RuntimeCondition, RuntimeError, RuntimeStatus, SandboxState, StrMap, VersionInfo, KIND_INIT,
    KIND_REGULAR, LABEL_CONTAINER_KIND, LABEL_POD_UID, NETWORK_READY, RUNTIME_READY,
};
use crate::runtime::packed::PackedMap;

/// The pod annotation giving containers an exit code.
pub const ANNOTATION_EXIT_CODE: &str = "tugboat.dev/fake-exit-code";
/// The pod annotation giving containers a run time in seconds.
pub const ANNOTATION_RUN_SECONDS: &str = "tugboat.dev/fake-run-seconds";
/// The pod annotation giving the exit code of a stopped container.
pub const ANNOTATION_STOP_EXIT_CODE: &str = "tugboat.dev/fake-stop-exit-code";
/// The pod annotation giving exec'd commands an exit code.
pub const ANNOTATION_EXEC_EXIT_CODE: &str = "tugboat.dev/fake-exec-exit-code";
/// The pod annotation giving exec'd commands their stdout.
pub const ANNOTATION_EXEC_STDOUT: &str = "tugboat.dev/fake-exec-stdout";

/// What a command exec'd in container `name` of a pod with `annotations`
/// returns: the container's own key wins over the pod-wide one.
pub fn exec_result(
    annotations: &impl StrMap,
    name: &str,
) -> std::result::Result<super::ExecSyncResult, String> {
    let lookup = |base: &str| -> Option<(String, &str)> {
        let own = format!("{base}.{name}");
        match annotations.get_str(&own) {
            Some(v) => Some((own, v)),
            None => annotations.get_str(base).map(|v| (base.to_string(), v)),
        }
    };
    let exit_code = lookup(ANNOTATION_EXEC_EXIT_CODE)
        .map(|(k, v)| parse_exit_code(&k, v))
        .transpose()?
        .unwrap_or(0);
    let stdout = lookup(ANNOTATION_EXEC_STDOUT)
        .map(|(_, v)| v.as_bytes().to_vec())
        .unwrap_or_default();
    Ok(super::ExecSyncResult {
        exit_code,
        stdout,
        stderr: Vec::new(),
    })
}

/// The exit code of a stopped container by default: 128 + SIGTERM.
pub const DEFAULT_STOP_EXIT_CODE: i32 = 143;

/// The runtime name: container IDs read `fake://<id>`.
pub const RUNTIME_NAME: &str = "fake";
/// The runtime version, so the node reports `containerRuntimeVersion:
/// fake://0.1`.
pub const RUNTIME_VERSION: &str = "0.1";

/// What a fake container does once started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Program {
    /// Exit by itself with this code after this long; `None` runs until
    /// stopped.
    pub exit: Option<(i32, Duration)>,
    /// The exit code when stopped.
    pub stop_exit_code: i32,
}

fn parse_exit_code(key: &str, value: &str) -> std::result::Result<i32, String> {
    value
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|c| (0..=255).contains(c))
        .ok_or_else(|| format!("annotation {key}: {value:?} is not an exit code (0-255)"))
}

fn parse_seconds(key: &str, value: &str) -> std::result::Result<Duration, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("annotation {key}: {value:?} is not a number of seconds"))
}

impl Program {
    /// The program of container `name` of kind `kind` (a
    /// [`LABEL_CONTAINER_KIND`] value) in a pod with `annotations`.
    pub fn from_annotations(
        annotations: &impl StrMap,
        name: &str,
        kind: &str,
    ) -> std::result::Result<Program, String> {
        // The container's own key wins; the pod-wide keys only speak for
        // regular containers (init containers must end, sidecars must not
        // end with the app).
        let lookup = |base: &str| -> Option<(String, &str)> {
            let own = format!("{base}.{name}");
            if let Some(v) = annotations.get_str(&own) {
                return Some((own, v));
            }
            (kind == KIND_REGULAR)
                .then(|| annotations.get_str(base).map(|v| (base.to_string(), v)))
                .flatten()
        };
        let code = lookup(ANNOTATION_EXIT_CODE)
            .map(|(k, v)| parse_exit_code(&k, v))
            .transpose()?;
        let seconds = lookup(ANNOTATION_RUN_SECONDS)
            .map(|(k, v)| parse_seconds(&k, v))
            .transpose()?;
        let exit = match (code, seconds) {
            (None, None) if kind == KIND_INIT => Some((0, Duration::ZERO)),
            (None, None) => None,
            (code, seconds) => Some((code.unwrap_or(0), seconds.unwrap_or_default())),
        };
        let stop_exit_code = match annotations.get_str(ANNOTATION_STOP_EXIT_CODE) {
            Some(v) => parse_exit_code(ANNOTATION_STOP_EXIT_CODE, v)?,
            None => DEFAULT_STOP_EXIT_CODE,
        };
        Ok(Program {
            exit,
            stop_exit_code,
        })
    }
}

/// containerd's reason for an exit code.
pub fn exit_reason(code: i32) -> &'static str {
    if code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// `nginx` → `docker.io/library/nginx`, `nginx:1.25` → `(…/nginx, 1.25)`,
/// `repo@sha256:…` keeps its digest: the repository and tag (or digest) of
/// an image reference, normalised as container runtimes do.
pub fn normalize_image(image: &str) -> (String, String) {
    let (name, tag) = if let Some((name, digest)) = image.split_once('@') {
        (name, digest.to_string())
    } else {
        // A colon after the last slash separates the tag; one before it is
        // a registry port.
        let slash = image.rfind('/').map_or(0, |i| i + 1);
        match image[slash..].rfind(':') {
            Some(i) => (&image[..slash + i], image[slash + i + 1..].to_string()),
            None => (image, "latest".to_string()),
        }
    };
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repo = if has_registry {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    (repo, tag)
}

/// 64 hex digits determined by `input`: made-up image digests. Not a real
/// hash function, only stable and well spread.
pub(crate) fn fake_digest(input: &str) -> String {
    let mut out = String::with_capacity(64);
    for round in 0u64..4 {
        // FNV-1a, seeded per round.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in input.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // splitmix64's finalizer: names differing in one letter must not
        // share leading digits (they pick pod CIDRs).
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// An IPv4 CIDR the fake network plugin allocates from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `10.244.3.0/24`; the fake network is IPv4 only, and a range
    /// needs room for a gateway and at least one pod (prefix at most 30).
    pub fn parse(s: &str) -> std::result::Result<Cidr, String> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("pod CIDR {s:?} is not of the form a.b.c.d/n"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("pod CIDR {s:?}: the fake runtime supports IPv4 only"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 30)
            .ok_or_else(|| format!("pod CIDR {s:?}: the prefix must be a number up to 30"))?;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Cidr {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }

    /// Host offsets that may be handed out: `.2` up to the last before the
    /// broadcast address.
    fn offsets(self) -> std::ops::Range<u32> {
        let size = 1u32 << (32 - u32::from(self.prefix));
        2..size - 1
    }
}

/// Round-robin allocation of pod IPs from a [`Cidr`].
#[derive(Debug, Default)]
pub struct IpAllocator {
    cidr: Option<Cidr>,
    used: HashSet<Ipv4Addr>,
    next: u32,
}

impl IpAllocator {
    pub fn set_cidr(&mut self, cidr: Cidr) {
        if self.cidr != Some(cidr) {
            self.cidr = Some(cidr);
            self.next = 0;
        }
    }

    pub fn cidr(&self) -> Option<Cidr> {
        self.cidr
    }

    /// The next free IP after the last one handed out.
    pub fn allocate(&mut self) -> std::result::Result<Ipv4Addr, String> {
        let cidr = self
            .cidr
            .ok_or("network plugin is not ready: no pod CIDR configured")?;
        let range = cidr.offsets();
        let len = range.end - range.start;
        for i in 0..len {
            let offset = range.start + (self.next + i) % len;
            let ip = Ipv4Addr::from(u32::from(cidr.base) + offset);
            if self.used.insert(ip) {
                self.next = (offset - range.start + 1) % len;
                return Ok(ip);
            }
        }
        Err(format!(
            "no free IP left in pod CIDR {}/{}",
            cidr.base, cidr.prefix
        ))
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }
}

/// A sandbox. Its label and annotation maps are packed: hollow nodes keep
/// one per pod.
struct FakeSandbox {
    metadata: PodSandboxMetadata,
    labels: PackedMap,
    annotations: PackedMap,
    state: SandboxState,
    created_at: Timestamp,
    ip: Option<Ipv4Addr>,
    /// Whether `ip` is still held in the allocator.
    holds_ip: bool,
}

struct FakeContainer {
    sandbox_id: String,
    metadata: ContainerMetadata,
    image: ImageSpec,
    image_ref: String,
    labels: PackedMap,
    annotations: PackedMap,
    program: Program,
    state: ContainerState,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    exit_code: i32,
    /// The task that makes the container exit by itself.
    timer: Option<JoinHandle<()>>,
}

impl FakeContainer {
    /// Marks a running container exited with `code`; false if it was not
    /// running.
    fn exit(&mut self, code: i32) -> bool {
        if self.state != ContainerState::Running {
            return false;
        }
        self.state = ContainerState::Exited;
        self.exit_code = code;
        self.finished_at = Some(Timestamp::now());
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
        true
    }

    fn status(&self, id: &str) -> ContainerStatus {
        let exited = self.state == ContainerState::Exited;
        ContainerStatus {
            id: id.to_string(),
            metadata: self.metadata.clone(),
            state: self.state,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            image: self.image.clone(),
            image_ref: self.image_ref.clone(),
            reason: if exited {
                exit_reason(self.exit_code).to_string()
            } else {
                String::new()
            },
            message: String::new(),
            labels: self.labels.to_map(),
            annotations: self.annotations.to_map(),
        }
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    network: IpAllocator,
    sandboxes: HashMap<String, FakeSandbox>,
    containers: HashMap<String, FakeContainer>,
    /// Pulled images by normalised `repo:tag`.
    images: HashMap<String, Image>,
}

struct Inner {
    state: Mutex<State>,
    events: broadcast::Sender<ContainerEvent>,
    /// Makes IDs differ between runtimes (hollow nodes share a process).
    seed: u64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_id(&self, state: &mut State) -> String {
        state.next_id += 1;
        let mut out = String::with_capacity(64);
        for part in 0u64..4 {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(self.seed);
            h.write_u64(state.next_id);
            h.write_u64(part);
            out.push_str(&format!("{:016x}", h.finish()));
        }
        out
    }

    fn emit(&self, state: &State, container_id: &str, kind: ContainerEventType) {
        let Some(c) = state.containers.get(container_id) else {
            return;
        };
        let pod_uid = c.labels.get(LABEL_POD_UID).unwrap_or_default().to_string();
        // No receiver is fine: nobody is watching yet.
        let _ = self.events.send(ContainerEvent {
            container_id: container_id.to_string(),
            pod_sandbox_id: c.sandbox_id.clone(),
            pod_uid,
            kind,
        });
    }
}

/// The CPU a running fake container uses, in millicores.
pub const FAKE_MILLICORES: u64 = 1;
/// The memory a running fake container uses.
pub const FAKE_MEMORY_BYTES: u64 = 4 * 1024 * 1024;

/// The in-memory runtime. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct FakeRuntime {
    inner: Arc<Inner>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        // Tokio allocates every slot up front: 4096 events were ~400 KiB
        // per hollow node, 256 still 27 KiB. A receiver that lags re-lists
        // (the pod manager wakes every worker), so a small buffer loses
        // nothing.
        let (events, _) = broadcast::channel(32);
        FakeRuntime {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                events,
                seed: RandomState::new().hash_one(std::process::id()),
            }),
        }
    }

    /// How many containers are running (for tests and benchmarks).
    pub fn running_containers(&self) -> usize {
        self.inner
            .lock()
            .containers
            .values()
            .filter(|c| c.state == ContainerState::Running)
            .count()
    }
}

/// Makes container `id` exit with its program's code after `after`, unless
/// it was stopped meanwhile (the runtime may be gone too). The caller holds
/// the state lock while spawning and stores the handle, so the task cannot
/// run before its handle is in place.
fn exit_later(
    inner: Weak<Inner>,
    id: String,
    started_at: Timestamp,
    code: i32,
    after: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let Some(inner) = inner.upgrade() else { return };
        let mut state = inner.lock();
        let Some(c) = state.containers.get_mut(&id) else {
            return;
        };
        if c.started_at != Some(started_at) {
            return;
        }
        // This task is the timer: forget it rather than abort it.
        c.timer = None;
        if c.exit(code) {
            inner.emit(&state, &id, ContainerEventType::Stopped);
        }
    })
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn version(&self) -> Result<VersionInfo> {
        Ok(VersionInfo {
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: RUNTIME_VERSION.into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn status(&self) -> Result<RuntimeStatus> {
        let network = self.inner.lock().network.cidr().is_some();
        Ok(RuntimeStatus {
            conditions: vec![
                RuntimeCondition {
                    kind: RUNTIME_READY.into(),
                    status: true,
                    reason: String::new(),
                    message: String::new(),
                },
                RuntimeCondition {
                    kind: NETWORK_READY.into(),
                    status: network,
                    reason: if network {
                        String::new()
                    } else {
                        "NetworkPluginNotReady".into()
                    },
                    message: if network {
                        String::new()
                    } else {
                        "Network plugin returns error: no pod CIDR configured".into()
                    },
                },
            ],
        })
    }

    async fn update_runtime_config(&self, pod_cidr: &str) -> Result<()> {
        let cidr = Cidr::parse(pod_cidr).map_err(RuntimeError::Failed)?;
        self.inner.lock().network.set_cidr(cidr);
        Ok(())
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let mut state = self.inner.lock();
        let ip = if config.host_network {
            None
        } else {
            Some(state.network.allocate().map_err(RuntimeError::Failed)?)
        };
        let id = self.inner.new_id(&mut state);
        state.sandboxes.insert(
            id.clone(),
            FakeSandbox {
                metadata: config.metadata.clone(),
                labels: PackedMap::from(&config.labels),
                annotations: PackedMap::from(&config.annotations),
                state: SandboxState::Ready,
                created_at: Timestamp::now(),
                ip,
                holds_ip: ip.is_some(),
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut guard = self.inner.lock();
        let state = &mut *guard;
        let Some(sandbox) = state.sandboxes.get_mut(id) else {
            return Ok(());
        };
        sandbox.state = SandboxState::NotReady;
        if sandbox.holds_ip {
            sandbox.holds_ip = false;
            if let Some(ip) = sandbox.ip {
                state.network.release(ip);
            }
        }
        let mut stopped = Vec::new();
        for (cid, c) in state.containers.iter_mut() {
            if c.sandbox_id == id && c.exit(c.program.stop_exit_code) {
                stopped.push(cid.clone());
            }
        }
        for cid in stopped {
            self.inner.emit(state, &cid, ContainerEventType::Stopped);
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.stop_pod_sandbox(id).await?;
        let mut state = self.inner.lock();
        let ids: Vec<String> = state
            .containers
            .iter()
            .filter(|(_, c)| c.sandbox_id == id)
            .map(|(cid, _)| cid.clone())
            .collect();
        for cid in ids {
            self.inner.emit(&state, &cid, ContainerEventType::Deleted);
            if let Some(mut c) = state.containers.remove(&cid) {
                if let Some(t) = c.timer.take() {
                    t.abort();
                }
            }
        }
        state.sandboxes.remove(id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        let state = self.inner.lock();
        let s = state
            .sandboxes
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("sandbox {id}")))?;
        Ok(PodSandboxStatus {
            id: id.to_string(),
            metadata: s.metadata.clone(),
            state: s.state,
            created_at: s.created_at,
            ip: s.ip.map(|ip| ip.to_string()),
            labels: s.labels.to_map(),
            annotations: s.annotations.to_map(),
        })
    }

    async fn list_pod_sandbox(&self, filter: &PodSandboxFilter) -> Result<Vec<PodSandbox>> {
        let state = self.inner.lock();
        Ok(state
            .sandboxes
            .iter()
            .filter(|(id, s)| filter.matches(id, s.state, &s.labels))
            .map(|(id, s)| PodSandbox {
                id: id.clone(),
                metadata: s.metadata.clone(),
                state: s.state,
                created_at: s.created_at,
                labels: s.labels.to_map(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: &ContainerConfig,
        _sandbox_config: &PodSandboxConfig,
    ) -> Result<String> {
        let mut state = self.inner.lock();
        let sandbox = state
            .sandboxes
            .get(pod_sandbox_id)
            .ok_or_else(|| RuntimeError::NotFound(format!("sandbox {pod_sandbox_id}")))?;
        if sandbox.state != SandboxState::Ready {
            return Err(RuntimeError::Failed(format!(
                "sandbox {pod_sandbox_id} is not ready"
            )));
        }
        let kind = config
            .labels
            .get(LABEL_CONTAINER_KIND)
            .map_or(KIND_REGULAR, String::as_str);
        let program = Program::from_annotations(&sandbox.annotations, &config.metadata.name, kind)
            .map_err(RuntimeError::Failed)?;
        let (repo, tag) = normalize_image(&config.image.image);
        let image_ref = state
            .images
            .get(&format!("{repo}:{tag}"))
            .map(|i| i.id.clone())
            .unwrap_or_else(|| format!("{repo}@sha256:{}", fake_digest(&format!("{repo}:{tag}"))));
        // CRI runtimes keep the sandbox's labels reachable from containers
        // (the kubelet sets the pod UID on both anyway).
        let labels = PackedMap::with_defaults(&config.labels, &sandbox.labels);
        let id = self.inner.new_id(&mut state);
        state.containers.insert(
            id.clone(),
            FakeContainer {
                sandbox_id: pod_sandbox_id.to_string(),
                metadata: config.metadata.clone(),
                image: config.image.clone(),
                image_ref,
                labels,
                annotations: PackedMap::from(&config.annotations),
                program,
                state: ContainerState::Created,
                created_at: Timestamp::now(),
                started_at: None,
                finished_at: None,
                exit_code: 0,
                timer: None,
            },
        );
        self.inner.emit(&state, &id, ContainerEventType::Created);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut state = self.inner.lock();
        let c = state
            .containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        if c.state != ContainerState::Created {
            return Err(RuntimeError::Failed(format!(
                "container {id} is not in created state"
            )));
        }
        let now = Timestamp::now();
        c.state = ContainerState::Running;
        c.started_at = Some(now);
        let program = c.program;
        self.inner.emit(&state, id, ContainerEventType::Started);
        if let Some((code, after)) = program.exit {
            if after.is_zero() {
                // Exits at once: no timer, and the kubelet sees it exited
                // on its next look (it gets the event too).
                if let Some(c) = state.containers.get_mut(id) {
                    c.exit(code);
                }
                self.inner.emit(&state, id, ContainerEventType::Stopped);
            } else {
                let timer = exit_later(
                    Arc::downgrade(&self.inner),
                    id.to_string(),
                    now,
                    code,
                    after,
                );
                if let Some(c) = state.containers.get_mut(id) {
                    c.timer = Some(timer);
                }
            }
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, _timeout: Duration) -> Result<()> {
        let mut state = self.inner.lock();
        let stopped = match state.containers.get_mut(id) {
            Some(c) => c.exit(c.program.stop_exit_code),
            None => false,
        };
        if stopped {
            self.inner.emit(&state, id, ContainerEventType::Stopped);
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut state = self.inner.lock();
        if state.containers.contains_key(id) {
            self.inner.emit(&state, id, ContainerEventType::Deleted);
        }
        if let Some(mut c) = state.containers.remove(id) {
            if let Some(t) = c.timer.take() {
                t.abort();
            }
        }
        Ok(())
    }

    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<Container>> {
        let state = self.inner.lock();
        Ok(state
            .containers
            .iter()
            .filter(|(id, c)| filter.matches(id, &c.sandbox_id, c.state, &c.labels))
            .map(|(id, c)| Container {
                id: id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.metadata.clone(),
                image: c.image.clone(),
                image_ref: c.image_ref.clone(),
                state: c.state,
                created_at: c.created_at,
                labels: c.labels.to_map(),
            })
            .collect())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let state = self.inner.lock();
        state
            .containers
            .get(id)
            .map(|c| c.status(id))
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))
    }

    /// Hollow containers use a steady [`FAKE_MILLICORES`] of CPU since they
    /// started and [`FAKE_MEMORY_BYTES`] of memory, so hollow nodes report
    /// plausible, non-zero usage to `kubectl top` and the autoscaler.
    async fn container_stats(&self, id: &str) -> Result<super::ContainerStats> {
        let state = self.inner.lock();
        let c = state
            .containers
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        let (ContainerState::Running, Some(started)) = (c.state, c.started_at) else {
            return Err(RuntimeError::Failed(format!(
                "container {id} is not running"
            )));
        };
        let now = Timestamp::now();
        let ran = now.duration_since(started).as_nanos().max(0) as u64;
        Ok(super::ContainerStats {
            timestamp: now,
            cpu: Some(super::CpuUsage {
                usage_core_nano_seconds: ran / 1000 * FAKE_MILLICORES,
            }),
            memory: Some(super::MemoryUsage {
                working_set_bytes: FAKE_MEMORY_BYTES,
                usage_bytes: FAKE_MEMORY_BYTES,
                rss_bytes: FAKE_MEMORY_BYTES,
                page_faults: 0,
                major_page_faults: 0,
            }),
        })
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        _cmd: &[String],
        _timeout: Duration,
    ) -> Result<super::ExecSyncResult> {
        let state = self.inner.lock();
        let c = state
            .containers
            .get(container_id)
            .ok_or_else(|| RuntimeError::NotFound(format!("container {container_id}")))?;
        if c.state != ContainerState::Running {
            return Err(RuntimeError::Failed(format!(
                "container {container_id} is not running"
            )));
        }
        let none = PackedMap::default();
        let annotations = state
            .sandboxes
            .get(&c.sandbox_id)
            .map_or(&none, |s| &s.annotations);
        exec_result(annotations, &c.metadata.name).map_err(RuntimeError::Failed)
    }

    async fn image_status(&self, image: &ImageSpec) -> Result<Option<Image>> {
        let (repo, tag) = normalize_image(&image.image);
        Ok(self
            .inner
            .lock()
            .images
            .get(&format!("{repo}:{tag}"))
            .cloned())
    }

    async fn pull_image(&self, image: &ImageSpec) -> Result<String> {
        let (repo, tag) = normalize_image(&image.image);
        let key = format!("{repo}:{tag}");
        let mut state = self.inner.lock();
        let image = state.images.entry(key.clone()).or_insert_with(|| {
            let digest = if tag.starts_with("sha256:") {
                tag.trim_start_matches("sha256:").to_string()
            } else {
                fake_digest(&key)
            };
            Image {
                id: format!("{repo}@sha256:{digest}"),
                repo_tags: vec![key.clone()],
                repo_digests: vec![format!("{repo}@sha256:{digest}")],
                size: 0,
            }
        });
        Ok(image.id.clone())
    }

    fn container_events(&self) -> broadcast::Receiver<ContainerEvent> {
        self.inner.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::runtime::KIND_SIDECAR;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn programs_come_from_pod_and_container_annotations() {
        let secs = Duration::from_secs_f64;
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a str,
            &'a str,
            Option<(i32, Duration)>,
        );
        let cases: &[Case] = &[
            (&[], "app", KIND_REGULAR, None),
            (&[], "setup", KIND_INIT, Some((0, Duration::ZERO))),
            (&[], "proxy", KIND_SIDECAR, None),
            (
                &[(ANNOTATION_EXIT_CODE, "0")],
                "app",
                KIND_REGULAR,
                Some((0, Duration::ZERO)),
            ),
            (
                &[(ANNOTATION_EXIT_CODE, "3"), (ANNOTATION_RUN_SECONDS, "1.5")],
                "app",
                KIND_REGULAR,
                Some((3, secs(1.5))),
            ),
            (
                &[(ANNOTATION_RUN_SECONDS, "2")],
                "app",
                KIND_REGULAR,
                Some((0, secs(2.0))),
            ),
            // Pod-wide keys leave init containers and sidecars alone.
            (
                &[(ANNOTATION_EXIT_CODE, "1")],
                "setup",
                KIND_INIT,
                Some((0, Duration::ZERO)),
            ),
            (&[(ANNOTATION_EXIT_CODE, "1")], "proxy", KIND_SIDECAR, None),
            // A container's own key wins over the pod-wide one.
            (
                &[
                    (ANNOTATION_EXIT_CODE, "1"),
                    ("tugboat.dev/fake-exit-code.setup", "7"),
                ],
                "setup",
                KIND_INIT,
                Some((7, Duration::ZERO)),
            ),
            (
                &[
                    (ANNOTATION_EXIT_CODE, "1"),
                    ("tugboat.dev/fake-exit-code.main", "0"),
                ],
                "main",
                KIND_REGULAR,
                Some((0, Duration::ZERO)),
            ),
        ];
        for (pairs, name, kind, exit) in cases {
            let program = Program::from_annotations(&annotations(pairs), name, kind).unwrap();
            assert_eq!(program.exit, *exit, "{pairs:?} {name} {kind}");
            assert_eq!(program.stop_exit_code, DEFAULT_STOP_EXIT_CODE);
        }
        let program = Program::from_annotations(
            &annotations(&[(ANNOTATION_STOP_EXIT_CODE, "0")]),
            "app",
            KIND_REGULAR,
        )
        .unwrap();
        assert_eq!(program.stop_exit_code, 0);
    }

    #[test]
    fn malformed_annotations_are_reported() {
        for (key, value, wanted) in [
            (ANNOTATION_EXIT_CODE, "x", "is not an exit code"),
            (ANNOTATION_EXIT_CODE, "300", "is not an exit code"),
            (ANNOTATION_RUN_SECONDS, "-1", "is not a number of seconds"),
            (ANNOTATION_STOP_EXIT_CODE, "", "is not an exit code"),
        ] {
            let err = Program::from_annotations(&annotations(&[(key, value)]), "app", KIND_REGULAR)
                .unwrap_err();
            assert!(err.contains(key) && err.contains(wanted), "{err}");
        }
    }

    #[test]
    fn exec_results_come_from_annotations() {
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a str,
            std::result::Result<(i32, &'a str), &'a str>,
        );
        let cases: &[Case] = &[
            (&[], "app", Ok((0, ""))),
            (&[(ANNOTATION_EXEC_EXIT_CODE, "1")], "app", Ok((1, ""))),
            (
                &[
                    (ANNOTATION_EXEC_EXIT_CODE, "1"),
                    ("tugboat.dev/fake-exec-exit-code.app", "0"),
                    (ANNOTATION_EXEC_STDOUT, "pong"),
                ],
                "app",
                Ok((0, "pong")),
            ),
            (
                &[(ANNOTATION_EXEC_EXIT_CODE, "x")],
                "app",
                Err("is not an exit code"),
            ),
        ];
        for (pairs, name, wanted) in cases {
            let got = exec_result(&annotations(pairs), name);
            match (got, wanted) {
                (Ok(r), Ok((code, out))) => {
                    assert_eq!((r.exit_code, r.stdout.as_slice()), (*code, out.as_bytes()))
                }
                (Err(e), Err(w)) => assert!(e.contains(w), "{e}"),
                (got, wanted) => panic!("{pairs:?}: {got:?} but wanted {wanted:?}"),
            }
        }
    }

    #[test]
    fn images_normalise_like_container_runtimes() {
        let cases = [
            ("nginx", "docker.io/library/nginx", "latest"),
            ("nginx:1.25", "docker.io/library/nginx", "1.25"),
            ("bitnami/redis:7", "docker.io/bitnami/redis", "7"),
            (
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io/pause",
                "3.10",
            ),
            ("localhost:5000/app", "localhost:5000/app", "latest"),
            ("localhost:5000/app:v2", "localhost:5000/app", "v2"),
            (
                "busybox@sha256:abc",
                "docker.io/library/busybox",
                "sha256:abc",
            ),
        ];
        for (image, repo, tag) in cases {
            assert_eq!(
                normalize_image(image),
                (repo.to_string(), tag.to_string()),
                "{image}"
            );
        }
    }

    #[test]
    fn pod_ips_are_handed_out_round_robin_within_the_cidr() {
        let mut ips = IpAllocator::default();
        assert!(ips.allocate().unwrap_err().contains("no pod CIDR"));
        ips.set_cidr(Cidr::parse("10.244.7.9/29").unwrap());
        // 10.244.7.8/29: .8 network, .9 gateway, .15 broadcast.
        let got: Vec<String> = (0..5)
            .map(|_| ips.allocate().unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "10.244.7.10",
                "10.244.7.11",
                "10.244.7.12",
                "10.244.7.13",
                "10.244.7.14"
            ]
        );
        assert!(ips.allocate().unwrap_err().contains("no free IP"));
        ips.release("10.244.7.11".parse().unwrap());
        assert_eq!(ips.allocate().unwrap().to_string(), "10.244.7.11");
    }

    #[test]
    fn cidrs_must_be_ipv4_with_room() {
        assert!(Cidr::parse("fd00::/64").unwrap_err().contains("IPv4 only"));
        assert!(Cidr::parse("10.0.0.0/31").unwrap_err().contains("up to 30"));
        assert!(Cidr::parse("10.0.0.0").unwrap_err().contains("a.b.c.d/n"));
        assert_eq!(
            Cidr::parse("10.1.2.3/16").unwrap().base.to_string(),
            "10.1.0.0"
        );
    }

    fn sandbox_config(uid: &str, pairs: &[(&str, &str)]) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: PodSandboxMetadata {
                name: "p".into(),
                namespace: "default".into(),
                uid: uid.into(),
                attempt: 0,
            },
            labels: annotations(&[(LABEL_POD_UID, uid)]),
            annotations: annotations(pairs),
            ..Default::default()
        }
    }

    fn container_config(name: &str, kind: &str) -> ContainerConfig {
        ContainerConfig {
            metadata: ContainerMetadata {
                name: name.into(),
                attempt: 0,
            },
            image: ImageSpec {
                image: "busybox".into(),
            },
            labels: annotations(&[(LABEL_CONTAINER_KIND, kind)]),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn containers_run_exit_and_stop_as_annotated() {
        let rt = FakeRuntime::new();
        let mut events = rt.container_events();
        let sandbox = sandbox_config("u1", &[(ANNOTATION_EXIT_CODE, "2")]);
        assert!(rt.run_pod_sandbox(&sandbox).await.is_err(), "no CIDR yet");
        rt.update_runtime_config("10.244.0.0/24").await.unwrap();
        let sid = rt.run_pod_sandbox(&sandbox).await.unwrap();
        assert_eq!(
            rt.pod_sandbox_status(&sid).await.unwrap().ip.as_deref(),
            Some("10.244.0.2")
        );

        // The app exits 2 at once; the sidecar runs until stopped.
        let app = rt
            .create_container(&sid, &container_config("app", KIND_REGULAR), &sandbox)
            .await
            .unwrap();
        let proxy = rt
            .create_container(&sid, &container_config("proxy", KIND_SIDECAR), &sandbox)
            .await
            .unwrap();
        rt.start_container(&app).await.unwrap();
        rt.start_container(&proxy).await.unwrap();
        let status = rt.container_status(&app).await.unwrap();
        assert_eq!(
            (status.state, status.exit_code, status.reason.as_str()),
            (ContainerState::Exited, 2, "Error")
        );
        assert!(status
            .image_ref
            .starts_with("docker.io/library/busybox@sha256:"));
        assert_eq!(
            rt.container_status(&proxy).await.unwrap().state,
            ContainerState::Running
        );
        let exec = rt.exec_sync(&proxy, &[], Duration::ZERO).await.unwrap();
        assert_eq!(exec, crate::runtime::ExecSyncResult::default());
        assert!(rt.exec_sync(&app, &[], Duration::ZERO).await.is_err());
        rt.stop_container(&proxy, Duration::ZERO).await.unwrap();
        let status = rt.container_status(&proxy).await.unwrap();
        assert_eq!(
            (status.state, status.exit_code),
            (ContainerState::Exited, 143)
        );

        let mut kinds = Vec::new();
        while let Ok(e) = events.try_recv() {
            assert_eq!(e.pod_uid, "u1");
            kinds.push(e.kind);
        }
        use ContainerEventType::*;
        assert_eq!(
            kinds,
            [Created, Created, Started, Stopped, Started, Stopped]
        );

        rt.remove_pod_sandbox(&sid).await.unwrap();
        assert!(matches!(
            rt.container_status(&app).await,
            Err(RuntimeError::NotFound(_))
        ));
        // The IP went back to the pool (round robin: .3 comes first).
        let again = rt.run_pod_sandbox(&sandbox).await.unwrap();
        assert_eq!(
            rt.pod_sandbox_status(&again).await.unwrap().ip.as_deref(),
            Some("10.244.0.3")
        );
    }

    #[tokio::test]
    async fn a_run_time_delays_the_exit() {
        let rt = FakeRuntime::new();
        let mut events = rt.container_events();
        rt.update_runtime_config("10.244.0.0/24").await.unwrap();
        let sandbox = sandbox_config(
            "u1",
            &[(ANNOTATION_EXIT_CODE, "0"), (ANNOTATION_RUN_SECONDS, "0.3")],
        );
        let sid = rt.run_pod_sandbox(&sandbox).await.unwrap();
        let id = rt
            .create_container(&sid, &container_config("app", KIND_REGULAR), &sandbox)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        rt.start_container(&id).await.unwrap();
        assert_eq!(
            rt.container_status(&id).await.unwrap().state,
            ContainerState::Running
        );
        // Created, Started, then Stopped when the run time is over.
        for _ in 0..2 {
            events.recv().await.unwrap();
        }
        let stopped = events.recv().await.unwrap();
        assert_eq!(stopped.kind, ContainerEventType::Stopped);
        assert!(started.elapsed() >= Duration::from_millis(300));
        let status = rt.container_status(&id).await.unwrap();
        assert_eq!(
            (status.state, status.reason.as_str()),
            (ContainerState::Exited, "Completed")
        );
    }
}
