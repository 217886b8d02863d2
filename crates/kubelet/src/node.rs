//! The Node object, as upstream's kubelet keeps it
//! (`kubelet_node_status.go` and the setters of `pkg/kubelet/nodestatus`):
//! - **registration**: create the Node with its labels (`kubernetes.io/
//!   hostname`, `kubernetes.io/os`, `kubernetes.io/arch` and their `beta.`
//!   forms, plus `--node-labels`), the controller-managed attach/detach
//!   annotation, `--register-with-taints` and a full status. If it exists
//!   already, only the default labels and the annotation are reconciled
//!   (as upstream: `--node-labels` and taints apply at creation only),
//!   retrying with back-off (100 ms doubling to 7 s) until it works;
//! - **status**: capacity and allocatable (cpu, memory, ephemeral-storage,
//!   pods = `--max-pods`, hugepages 0), addresses (`InternalIP`,
//!   `Hostname`), `nodeInfo`, the kubelet endpoint and the conditions
//!   `MemoryPressure`, `DiskPressure`, `PIDPressure` (False, upstream's
//!   reasons) and `Ready`, True (`KubeletReady`) while the runtime reports
//!   `RuntimeReady` and `NetworkReady`. It is computed every
//!   `--node-status-update-frequency` (or when poked) and patched through
//!   `nodes/status` when it changed or `--node-status-report-frequency`
//!   passed; `lastHeartbeatTime` is the time of the write,
//!   `lastTransitionTime` moves only when a condition's status does, and a
//!   transition records upstream's event (`NodeReady`, ...);
//! - **its own Node, watched**: the newest copy feeds admission and the
//!   Lease's owner reference, and a `spec.podCIDR` set by the node IPAM
//!   controller is handed to the runtime. Hollow nodes share one Node
//!   watch ([`dispatch_nodes`]) that routes each Node to its kubelet, as
//!   they share the pod watch: a watch per node is a long request (an
//!   HTTP/1.1 connection, a TLS session, a watcher on the server) per node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use component_base::events::EventRecorder;
use component_base::transform::for_cache;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::config::{KubeletConfig, KUBELET_VERSION};
use crate::runtime::{RuntimeStatus, VersionInfo, NETWORK_READY, RUNTIME_READY};
use crate::status::time;

/// The annotation telling the attach/detach controller it manages the
/// node's volumes.
pub const ANNOTATION_CMAD: &str = "volumes.kubernetes.io/controller-managed-attach-detach";
/// The kubelet's port, as `status.daemonEndpoints` reports it.
pub const KUBELET_PORT: i32 = 10250;

/// The labels every kubelet sets on its Node (upstream's
/// `updateDefaultLabels` set, without cloud labels).
pub fn default_labels(config: &KubeletConfig) -> BTreeMap<String, String> {
    let os = &config.machine.operating_system;
    let arch = &config.machine.architecture;
    [
        ("kubernetes.io/hostname", config.node_name.as_str()),
        ("kubernetes.io/os", os),
        ("kubernetes.io/arch", arch),
        ("beta.kubernetes.io/os", os),
        ("beta.kubernetes.io/arch", arch),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn condition(
    kind: &str,
    ok_is_true: bool,
    healthy: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) -> NodeCondition {
    let status = if healthy == ok_is_true {
        "True"
    } else {
        "False"
    };
    NodeCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_heartbeat_time: Some(time(now)),
        last_transition_time: Some(time(now)),
    }
}

/// Upstream's Ready condition: the runtime's problems, if any, in the
/// message of `KubeletNotReady`.
fn ready_condition(runtime: &RuntimeStatus, now: Timestamp) -> NodeCondition {
    let mut problems = Vec::new();
    let find = |kind: &str| runtime.conditions.iter().find(|c| c.kind == kind);
    match find(RUNTIME_READY) {
        Some(c) if c.status => {}
        Some(c) => problems.push(format!(
            "container runtime is down: RuntimeReady=false reason:{} message:{}",
            c.reason, c.message
        )),
        None => problems.push("container runtime status check may not have completed yet".into()),
    }
    match find(NETWORK_READY) {
        Some(c) if c.status => {}
        Some(c) => problems.push(format!(
            "container runtime network not ready: NetworkReady=false reason:{} message:{}",
            c.reason, c.message
        )),
        None => problems.push("container runtime network not ready".into()),
    }
    if problems.is_empty() {
        condition(
            "Ready",
            true,
            true,
            "KubeletReady",
            "kubelet is posting ready status".into(),
            now,
        )
    } else {
        condition(
            "Ready",
            true,
            false,
            "KubeletNotReady",
            problems.join(", "),
            now,
        )
    }
}

/// The four conditions, with `lastTransitionTime` carried over from
/// `previous` where the status did not change.
pub fn node_conditions(
    runtime: &RuntimeStatus,
    previous: &[NodeCondition],
    now: Timestamp,
) -> Vec<NodeCondition> {
    // The fake machine never runs short; real runtimes will measure.
    let mut conditions = vec![
        condition(
            "MemoryPressure",
            false,
            true,
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available".into(),
            now,
        ),
        condition(
            "DiskPressure",
            false,
            true,
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure".into(),
            now,
        ),
        condition(
            "PIDPressure",
            false,
            true,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available".into(),
            now,
        ),
        ready_condition(runtime, now),
    ];
    for c in &mut conditions {
        if let Some(old) = previous.iter().find(|o| o.type_ == c.type_) {
            if old.status == c.status && old.last_transition_time.is_some() {
                c.last_transition_time = old.last_transition_time.clone();
            }
        }
    }
    conditions
}

/// The node event a condition's new status records (upstream's
/// `recordNodeStatusEvent` reasons).
pub fn condition_event(c: &NodeCondition) -> Option<&'static str> {
    let healthy = match c.type_.as_str() {
        "Ready" => c.status == "True",
        _ => c.status == "False",
    };
    Some(match (c.type_.as_str(), healthy) {
        ("MemoryPressure", true) => "NodeHasSufficientMemory",
        ("MemoryPressure", false) => "NodeHasInsufficientMemory",
        ("DiskPressure", true) => "NodeHasNoDiskPressure",
        ("DiskPressure", false) => "NodeHasDiskPressure",
        ("PIDPressure", true) => "NodeHasSufficientPID",
        ("PIDPressure", false) => "NodeHasInsufficientPID",
        ("Ready", true) => "NodeReady",
        ("Ready", false) => "NodeNotReady",
        _ => return None,
    })
}

fn quantities(config: &KubeletConfig) -> BTreeMap<String, Quantity> {
    let m = &config.machine;
    [
        ("cpu", m.cpu.clone()),
        ("memory", m.memory.clone()),
        ("ephemeral-storage", m.ephemeral_storage.clone()),
        ("pods", config.max_pods.to_string()),
        ("hugepages-1Gi", "0".to_string()),
        ("hugepages-2Mi", "0".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect()
}

/// The node's status at `now`.
pub fn node_status(
    config: &KubeletConfig,
    version: &VersionInfo,
    runtime: &RuntimeStatus,
    previous: &[NodeCondition],
    now: Timestamp,
) -> NodeStatus {
    let m = &config.machine;
    NodeStatus {
        capacity: Some(quantities(config)),
        // No reservations or eviction thresholds yet: all of it is
        // allocatable.
        allocatable: Some(quantities(config)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.node_name.clone(),
            },
        ]),
        conditions: Some(node_conditions(runtime, previous, now)),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: if config.port == 0 {
                    KUBELET_PORT
                } else {
                    i32::from(config.port)
                },
            }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: m.machine_id.clone(),
            system_uuid: m.system_uuid.clone(),
            boot_id: m.boot_id.clone(),
            kernel_version: m.kernel_version.clone(),
            os_image: m.os_image.clone(),
            container_runtime_version: format!(
                "{}://{}",
                version.runtime_name, version.runtime_version
            ),
            kubelet_version: KUBELET_VERSION.into(),
            kube_proxy_version: String::new(),
            operating_system: m.operating_system.clone(),
            architecture: m.architecture.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Node the kubelet registers (upstream's `initialNode`).
pub fn initial_node(
    config: &KubeletConfig,
    version: &VersionInfo,
    runtime: &RuntimeStatus,
    now: Timestamp,
) -> Node {
    let mut labels = config.node_labels.clone();
    labels.extend(default_labels(config));
    Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels),
            annotations: Some([(ANNOTATION_CMAD.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!config.register_with_taints.is_empty())
                .then(|| config.register_with_taints.clone()),
            ..Default::default()
        }),
        status: Some(node_status(config, version, runtime, &[], now)),
    }
}

/// The labels and annotations an existing Node must be patched with to
/// carry the defaults (`None`: nothing to do).
pub fn reconcile_patch(existing: &Node, config: &KubeletConfig) -> Option<Value> {
    let labels = existing.metadata.labels.clone().unwrap_or_default();
    let annotations = existing.metadata.annotations.clone().unwrap_or_default();
    let stale: BTreeMap<String, String> = default_labels(config)
        .into_iter()
        .filter(|(k, v)| labels.get(k) != Some(v))
        .collect();
    let cmad = annotations.get(ANNOTATION_CMAD).map(String::as_str) != Some("true");
    if stale.is_empty() && !cmad {
        return None;
    }
    let mut meta = json!({});
    if !stale.is_empty() {
        meta["labels"] = json!(stale);
    }
    if cmad {
        meta["annotations"] = json!({ ANNOTATION_CMAD: "true" });
    }
    Some(json!({ "metadata": meta }))
}

/// A status with the heartbeat times blanked: what "changed" compares.
fn without_heartbeats(status: &NodeStatus) -> NodeStatus {
    let mut s = status.clone();
    for c in s.conditions.iter_mut().flatten() {
        c.last_heartbeat_time = None;
    }
    s
}

/// What the node loops share.
pub struct NodeAgent {
    pub client: kube::Client,
    pub config: Arc<KubeletConfig>,
    pub version: VersionInfo,
    pub recorder: Option<EventRecorder>,
    /// The newest copy of the Node.
    pub node: watch::Sender<Arc<Node>>,
    /// Set once the Node exists.
    pub registered: watch::Sender<bool>,
    /// Wakes the status loop early.
    pub poke: Arc<Notify>,
}

const REGISTER_BACKOFF_START: Duration = Duration::from_millis(100);
const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(7);

impl NodeAgent {
    async fn runtime_status(&self) -> RuntimeStatus {
        match self.config.runtime.status().await {
            Ok(s) => s,
            Err(error) => RuntimeStatus {
                conditions: vec![crate::runtime::RuntimeCondition {
                    kind: RUNTIME_READY.into(),
                    status: false,
                    reason: "StatusFailed".into(),
                    message: error.to_string(),
                }],
            },
        }
    }

    /// Creates the Node (true), or reconciles the existing one (false);
    /// retries until done.
    async fn register(&self) -> (Node, bool) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut delay = REGISTER_BACKOFF_START;
        loop {
            let runtime = self.runtime_status().await;
            let node = initial_node(&self.config, &self.version, &runtime, Timestamp::now());
            let result = match api.create(&PostParams::default(), &node).await {
                Ok(created) => Ok((created, true)),
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    self.reconcile(&api).await.map(|n| (n, false))
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(registered) => {
                    tracing::info!(node = %self.config.node_name, "node registered");
                    return registered;
                }
                Err(error) => {
                    tracing::warn!(node = %self.config.node_name, %error, "registering the node failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(REGISTER_BACKOFF_MAX);
                }
            }
        }
    }

    async fn reconcile(&self, api: &Api<Node>) -> kube::Result<Node> {
        let existing = api.get(&self.config.node_name).await?;
        match reconcile_patch(&existing, &self.config) {
            Some(patch) => {
                api.patch(
                    &self.config.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            }
            None => Ok(existing),
        }
    }

    fn record_transitions(&self, node: &Node, previous: &[NodeCondition], now: &[NodeCondition]) {
        let Some(recorder) = &self.recorder else {
            return;
        };
        for c in now {
            let changed = previous
                .iter()
                .find(|o| o.type_ == c.type_)
                .is_none_or(|o| o.status != c.status);
            if let (true, Some(reason)) = (changed, condition_event(c)) {
                recorder.normal(
                    node,
                    reason,
                    format!("Node {} status is now: {reason}", self.config.node_name),
                );
            }
        }
    }

    /// Registers the Node, then keeps its status up to date.
    pub async fn run(self) {
        // Everything but the wait between reports is boxed (the start, each
        // report, and what is remembered between them: Node statuses are
        // large inline), so this long-lived future (one per hollow node)
        // stays small.
        let mut reported = Box::pin(self.start()).await;
        let api: Api<Node> = Api::all(self.client.clone());
        loop {
            Box::pin(self.report(&api, &mut reported)).await;
            tokio::select! {
                _ = tokio::time::sleep(self.config.node_status_update_frequency) => {}
                _ = self.poke.notified() => {}
            }
        }
    }

    /// Registers the Node and publishes it.
    async fn start(&self) -> Box<Reported> {
        let (mut registered, created) = self.register().await;
        for_cache(&mut registered);
        if let Some(r) = &self.recorder {
            r.normal(&registered, "Starting", "Starting kubelet.");
        }
        let status = registered.status.clone().unwrap_or_default();
        // Transition times carry over from what the Node shows; events are
        // recorded for every condition once per kubelet start.
        let mut reported = Box::new(Reported {
            conditions: status.conditions.clone().unwrap_or_default(),
            announced: Vec::new(),
            last: None,
        });
        if created {
            // The Node was created with a full status: nothing to write yet.
            self.record_transitions(&registered, &[], &reported.conditions);
            reported.announced = reported.conditions.clone();
            reported.last = Some((without_heartbeats(&status), Instant::now()));
        }
        self.node.send_replace(Arc::new(registered));
        self.registered.send_replace(true);
        reported
    }

    /// Writes the node's status if it changed or is due.
    async fn report(&self, api: &Api<Node>, reported: &mut Reported) {
        let runtime = self.runtime_status().await;
        let status = node_status(
            &self.config,
            &self.version,
            &runtime,
            &reported.conditions,
            Timestamp::now(),
        );
        let comparable = without_heartbeats(&status);
        let due = reported.last.as_ref().is_none_or(|(s, at)| {
            *s != comparable || at.elapsed() >= self.config.node_status_report_frequency
        });
        if !due {
            return;
        }
        let patch = json!({ "status": status });
        match api
            .patch_status(
                &self.config.node_name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(mut node) => {
                // Kept and shared like the watch's copies, which have no
                // managedFields: the same transform first.
                for_cache(&mut node);
                let now = status.conditions.clone().unwrap_or_default();
                self.record_transitions(&node, &reported.announced, &now);
                reported.announced = now.clone();
                reported.conditions = now;
                reported.last = Some((comparable, Instant::now()));
                self.node.send_replace(component_base::intern::shared(node));
            }
            Err(error) => {
                tracing::warn!(node = %self.config.node_name, %error, "updating node status failed");
            }
        }
    }
}

/// What the status loop remembers between reports.
struct Reported {
    /// The conditions last written (their transition times carry over).
    conditions: Vec<NodeCondition>,
    /// The conditions events were last recorded for.
    announced: Vec<NodeCondition>,
    /// The status last written, without heartbeats, and when.
    last: Option<(NodeStatus, Instant)>,
}

/// Watches the kubelet's own Node: keeps `node` current and hands a
/// `spec.podCIDR` (node IPAM) to the runtime.
/// The Node watch events of one kubelet, when a [`dispatch_nodes`] watch
/// shared by several feeds it. Boxed, as [`crate::pods::PodFeed`]: a
/// channel allocates 32 slots at a time.
pub type NodeFeed = tokio::sync::mpsc::UnboundedReceiver<Box<watcher::Event<Node>>>;

/// Which of `nodes` a Node watch event concerns: a Node its own kubelet
/// only; the start and end of a (re-)list nobody (each kubelet only acts
/// on copies of its Node).
pub fn node_route<'a>(
    event: &'a watcher::Event<Node>,
    nodes: &'a HashSet<String>,
) -> Option<&'a str> {
    match event {
        watcher::Event::Init | watcher::Event::InitDone => None,
        watcher::Event::InitApply(n) | watcher::Event::Apply(n) | watcher::Event::Delete(n) => n
            .metadata
            .name
            .as_deref()
            .filter(|name| nodes.contains(*name)),
    }
}

/// One watch over every Node, feeding the kubelets of `feeds` (by node
/// name) until they are all gone.
pub async fn dispatch_nodes(
    client: kube::Client,
    feeds: HashMap<String, tokio::sync::mpsc::UnboundedSender<Box<watcher::Event<Node>>>>,
) {
    let nodes: HashSet<String> = feeds.keys().cloned().collect();
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .modify(for_cache)
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(error) => {
                tracing::warn!(%error, "shared node watch failed; retrying");
                continue;
            }
        };
        if let Some(tx) = node_route(&event, &nodes).and_then(|n| feeds.get(n)) {
            let _ = tx.send(Box::new(event));
        }
        if feeds.values().all(|tx| tx.is_closed()) {
            return;
        }
    }
}

type NodeEventStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<watcher::Event<Node>, watcher::Error>> + Send>,
>;

pub async fn watch_node(
    client: kube::Client,
    config: Arc<KubeletConfig>,
    node: watch::Sender<Arc<Node>>,
    registered: watch::Receiver<bool>,
    poke: Arc<Notify>,
    mut pod_cidr: String,
    feed: Option<NodeFeed>,
) {
    // Before registration the Node may not exist; its first copy comes
    // from the registration itself. (A shared watch's events meanwhile
    // wait in the feed.)
    let mut registered = registered;
    if registered.wait_for(|r| *r).await.is_err() {
        return;
    }
    let mut stream: NodeEventStream = match feed {
        Some(feed) => futures::stream::unfold(feed, |mut rx| async move {
            rx.recv().await.map(|e| (Ok(*e), rx))
        })
        .boxed(),
        None => {
            let api: Api<Node> = Api::all(client);
            let cfg =
                watcher::Config::default().fields(&format!("metadata.name={}", config.node_name));
            watcher(api, cfg)
                .modify(for_cache)
                .default_backoff()
                .boxed()
        }
    };
    while let Some(event) = stream.next().await {
        let Some(seen) = shared_node(event) else {
            continue;
        };
        let cidr = seen
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.clone())
            .filter(|c| !c.is_empty());
        if let Some(cidr) = cidr.filter(|c| *c != pod_cidr) {
            match config.runtime.update_runtime_config(&cidr).await {
                Ok(()) => {
                    tracing::info!(%cidr, "pod CIDR from the Node");
                    pod_cidr = cidr;
                    poke.notify_one();
                }
                Err(error) => tracing::warn!(%cidr, %error, "the runtime refused the pod CIDR"),
            }
        }
        node.send_replace(seen);
    }
}

/// The Node of a watch event, shared with the other components of a
/// `tugboat server`. Not inline in [`watch_node`]: a `Node` held in an
/// async fn's frame makes every idle node loop (one per hollow node) that
/// much bigger while it waits.
fn shared_node(event: Result<watcher::Event<Node>, watcher::Error>) -> Option<Arc<Node>> {
    match event {
        Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
            Some(component_base::intern::shared(n))
        }
        Ok(_) => None,
        Err(error) => {
            tracing::warn!(%error, "node watch failed; retrying");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeCondition;

    #[test]
    fn shared_node_watch_events_go_to_their_kubelet() {
        let node = |name: &str| {
            let mut n = Node::default();
            n.metadata.name = Some(name.into());
            n
        };
        let nodes: HashSet<String> = ["a".to_string(), "b".to_string()].into();
        let cases = [
            (watcher::Event::Init, None),
            (watcher::Event::InitDone, None),
            (watcher::Event::InitApply(node("a")), Some("a")),
            (watcher::Event::Apply(node("b")), Some("b")),
            (watcher::Event::Delete(node("a")), Some("a")),
            // Another kubelet's node, or a nameless one: nobody.
            (watcher::Event::Apply(node("c")), None),
            (watcher::Event::Apply(Node::default()), None),
        ];
        for (event, want) in cases {
            assert_eq!(node_route(&event, &nodes), want, "{event:?}");
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn runtime(network: bool) -> RuntimeStatus {
        RuntimeStatus {
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
                    reason: "NetworkPluginNotReady".into(),
                    message: "no pod CIDR".into(),
                },
            ],
        }
    }

    fn version() -> VersionInfo {
        VersionInfo {
            runtime_name: "fake".into(),
            runtime_version: "0.1".into(),
            runtime_api_version: "v1".into(),
        }
    }

    fn config() -> KubeletConfig {
        let mut c = KubeletConfig::new("node-a");
        c.node_labels = [("tier".to_string(), "web".to_string())].into();
        c.register_with_taints = crate::config::parse_taints("dedicated=gpu:NoSchedule").unwrap();
        c
    }

    #[test]
    fn the_registered_node_carries_labels_taints_capacity_and_info() {
        let node = initial_node(&config(), &version(), &runtime(true), at(0));
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "node-a");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["tier"], "web");
        assert!(labels.contains_key("kubernetes.io/arch"));
        assert_eq!(node.metadata.annotations.unwrap()[ANNOTATION_CMAD], "true");
        let taints = node.spec.unwrap().taints.unwrap();
        assert_eq!(
            (taints[0].key.as_str(), taints[0].effect.as_str()),
            ("dedicated", "NoSchedule")
        );
        let status = node.status.unwrap();
        let capacity = status.capacity.unwrap();
        assert_eq!(capacity["cpu"].0, "8");
        assert_eq!(capacity["memory"].0, "32Gi");
        assert_eq!(capacity["pods"].0, "110");
        assert_eq!(status.allocatable.unwrap()["ephemeral-storage"].0, "100Gi");
        let info = status.node_info.unwrap();
        assert_eq!(info.kubelet_version, "v1.33.0-tugboat");
        assert_eq!(info.container_runtime_version, "fake://0.1");
        assert_eq!(info.operating_system, "linux");
        let addresses: Vec<(String, String)> = status
            .addresses
            .unwrap()
            .into_iter()
            .map(|a| (a.type_, a.address))
            .collect();
        assert_eq!(
            addresses,
            [
                ("InternalIP".to_string(), "127.0.0.1".to_string()),
                ("Hostname".to_string(), "node-a".to_string())
            ]
        );
    }

    #[test]
    fn conditions_are_healthy_with_upstream_reasons() {
        let conditions = node_conditions(&runtime(true), &[], at(0));
        let got: Vec<(&str, &str, &str)> = conditions
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.reason.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID"),
                ("Ready", "True", "KubeletReady"),
            ]
        );
        assert_eq!(
            conditions[3].message.as_deref(),
            Some("kubelet is posting ready status")
        );
        let events: Vec<_> = conditions.iter().filter_map(condition_event).collect();
        assert_eq!(
            events,
            [
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeHasSufficientPID",
                "NodeReady"
            ]
        );
    }

    #[test]
    fn a_runtime_without_network_makes_the_node_not_ready() {
        let conditions = node_conditions(&runtime(false), &[], at(0));
        let ready = &conditions[3];
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:no pod CIDR")
        );
    }

    #[test]
    fn transition_times_stay_while_heartbeats_move() {
        let first = node_conditions(&runtime(true), &[], at(0));
        let second = node_conditions(&runtime(true), &first, at(10));
        assert_eq!(second[3].last_transition_time, Some(time(at(0))));
        assert_eq!(second[3].last_heartbeat_time, Some(time(at(10))));
        let third = node_conditions(&runtime(false), &second, at(20));
        assert_eq!(third[3].last_transition_time, Some(time(at(20))));
        assert_eq!(third[0].last_transition_time, Some(time(at(0))));
    }

    #[test]
    fn an_existing_node_gets_only_the_default_labels_reconciled() {
        let mut existing = initial_node(&config(), &version(), &runtime(true), at(0));
        assert_eq!(reconcile_patch(&existing, &config()), None);
        existing.metadata.labels =
            Some([("kubernetes.io/os".to_string(), "plan9".to_string())].into());
        existing.metadata.annotations = None;
        let patch = reconcile_patch(&existing, &config()).unwrap();
        assert_eq!(patch["metadata"]["labels"]["kubernetes.io/os"], "linux");
        assert_eq!(
            patch["metadata"]["labels"]["kubernetes.io/hostname"],
            "node-a"
        );
        // --node-labels are not re-applied to an existing Node.
        assert!(patch["metadata"]["labels"].get("tier").is_none());
        assert_eq!(patch["metadata"]["annotations"][ANNOTATION_CMAD], "true");
    }
}
