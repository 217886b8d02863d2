//! Resource usage: the kubelet's `GET /stats/summary` (upstream's
//! `stats/v1alpha1` `Summary`), which the API server's built-in metrics
//! API turns into `metrics.k8s.io` NodeMetrics and PodMetrics for
//! `kubectl top` and the HorizontalPodAutoscaler.
//!
//! - The node's numbers come from `/proc/stat`, `/proc/meminfo` and
//!   `/proc/net/dev` ([`procfs`]); each running container's from the runtime's CRI-shaped
//!   [`ContainerRuntime::container_stats`] (cumulative CPU time, memory).
//! - A CPU *rate* (`usageNanoCores`) needs two samples of the cumulative
//!   counter. Like cadvisor's housekeeping, a [`StatsProvider`] samples
//!   every [`HOUSEKEEPING_INTERVAL`] and keeps the last two samples per
//!   container and for the node; a request samples afresh and computes
//!   the rate against the newest kept sample at least [`MIN_WINDOW`] old
//!   ([`pick_base`], [`nano_cores`]). A container seen for the first time
//!   is measured from its start (its counter was zero then).
//! - Requests within [`REUSE_WITHIN`] of the last one get the same summary,
//!   so a burst of scrapes costs one walk of `/proc`.
//!
//! [`observe`] does the I/O; [`assemble`] turns what was observed plus the
//! kept samples into the [`Summary`], purely.

pub mod procfs;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::runtime::{
    ContainerFilter, ContainerRuntime, ContainerState, ContainerStats, PodSandboxFilter,
    SandboxState, LABEL_CONTAINER_NAME,
};

/// How often the node and every container are sampled (cadvisor's
/// default housekeeping interval).
pub const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest window a CPU rate is computed over: shorter ones are
/// mostly scheduling noise.
pub const MIN_WINDOW: Duration = Duration::from_secs(2);
/// A summary this fresh is served again instead of sampling anew.
pub const REUSE_WITHIN: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------
// The Summary API (stats/v1alpha1), the fields Tugboat fills.
// ---------------------------------------------------------------------

/// `stats/v1alpha1.Summary`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

/// `stats/v1alpha1.NodeStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
}

/// `stats/v1alpha1.InterfaceStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// `stats/v1alpha1.NetworkStats`: the default interface's counters inline
/// plus every interface's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStats {
    pub time: String,
    #[serde(flatten)]
    pub default: InterfaceStats,
    pub interfaces: Vec<InterfaceStats>,
}

/// The interface upstream's kubelet reports as the node's own
/// (`eth0`), else the first that is not loopback.
pub fn network_stats(interfaces: &[procfs::Interface], time: &str) -> Option<NetworkStats> {
    let convert = |i: &procfs::Interface| InterfaceStats {
        name: i.name.clone(),
        rx_bytes: i.rx_bytes,
        rx_errors: i.rx_errors,
        tx_bytes: i.tx_bytes,
        tx_errors: i.tx_errors,
    };
    let default = interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .or_else(|| interfaces.iter().find(|i| i.name != "lo"))?;
    Some(NetworkStats {
        time: time.to_string(),
        default: convert(default),
        interfaces: interfaces.iter().map(convert).collect(),
    })
}

/// `stats/v1alpha1.CPUStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: String,
    /// The rate over the sampling window, in billionths of a core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    /// Cumulative since the container (or node) started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

/// `stats/v1alpha1.MemoryStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    pub usage_bytes: u64,
    pub working_set_bytes: u64,
    pub rss_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

/// `stats/v1alpha1.PodReference`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// `stats/v1alpha1.PodStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    pub start_time: String,
    pub containers: Vec<ContainerSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

/// `stats/v1alpha1.ContainerStats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSummary {
    pub name: String,
    pub start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

/// `metav1.Time` as Go marshals it: RFC 3339, whole seconds, UTC.
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

// ---------------------------------------------------------------------
// Samples and rates (pure).
// ---------------------------------------------------------------------

/// One reading of a cumulative CPU counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: Timestamp,
    pub cpu_ns: u64,
}

/// The last two housekeeping samples of one counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Samples {
    pub prev: Option<Sample>,
    pub cur: Option<Sample>,
}

impl Samples {
    fn push(&mut self, s: Sample) {
        self.prev = self.cur.replace(s);
    }
}

/// The average rate between two readings, in nano-cores; `None` when the
/// window is empty or the counter went backwards (a restarted container
/// whose id was reused, a reset counter).
pub fn nano_cores(base: Sample, now: Sample) -> Option<u64> {
    let window = now.at.duration_since(base.at).as_nanos();
    if window <= 0 || now.cpu_ns < base.cpu_ns {
        return None;
    }
    let used = i128::from(now.cpu_ns - base.cpu_ns);
    u64::try_from(used * 1_000_000_000 / window).ok()
}

/// The sample to compute a rate at `now` against: the newest kept one at
/// least `min_window` old, else `fallback` (the counter's zero point).
pub fn pick_base(
    kept: &Samples,
    now: Timestamp,
    min_window: Duration,
    fallback: Option<Sample>,
) -> Option<Sample> {
    let old_enough = |s: &Sample| {
        now.duration_since(s.at) >= SignedDuration::try_from(min_window).unwrap_or_default()
    };
    kept.cur
        .filter(old_enough)
        .or(kept.prev.filter(old_enough))
        .or(fallback)
}

// ---------------------------------------------------------------------
// What one sampling observed, and the summary made of it.
// ---------------------------------------------------------------------

/// The node's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservedNode {
    pub cpu_ns: Option<u64>,
    pub memory: Option<procfs::NodeMemory>,
    pub boot_time: Option<Timestamp>,
    pub interfaces: Vec<procfs::Interface>,
}

/// A running container's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub start_time: Timestamp,
    pub stats: Option<ContainerStats>,
}

/// A pod with a ready sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedPod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub start_time: Timestamp,
    pub containers: Vec<ObservedContainer>,
}

/// Everything one sampling read.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub at: Timestamp,
    pub node: ObservedNode,
    pub pods: Vec<ObservedPod>,
}

/// The kept samples: the node's and each container's (by container id).
#[derive(Debug, Clone, Default)]
pub struct History {
    pub node: Samples,
    pub containers: HashMap<String, Samples>,
}

impl History {
    /// Keeps a housekeeping sampling; forgets containers no longer running.
    pub fn record(&mut self, observed: &Observed) {
        if let Some(cpu_ns) = observed.node.cpu_ns {
            self.node.push(Sample {
                at: observed.at,
                cpu_ns,
            });
        }
        let mut seen = HashSet::new();
        for c in observed.pods.iter().flat_map(|p| &p.containers) {
            seen.insert(c.id.as_str());
            if let Some((at, cpu)) = c.stats.as_ref().and_then(|s| Some((s.timestamp, s.cpu?))) {
                self.containers
                    .entry(c.id.clone())
                    .or_default()
                    .push(Sample {
                        at,
                        cpu_ns: cpu.usage_core_nano_seconds,
                    });
            }
        }
        self.containers.retain(|id, _| seen.contains(id.as_str()));
    }
}

fn container_summary(c: &ObservedContainer, history: &History) -> ContainerSummary {
    let stats = c.stats.as_ref();
    let time = stats.map(|s| rfc3339(s.timestamp)).unwrap_or_default();
    let cpu = stats.and_then(|s| {
        let usage = s.cpu?;
        let now = Sample {
            at: s.timestamp,
            cpu_ns: usage.usage_core_nano_seconds,
        };
        let zero = Sample {
            at: c.start_time,
            cpu_ns: 0,
        };
        let kept = history.containers.get(&c.id).copied().unwrap_or_default();
        let base = pick_base(&kept, s.timestamp, MIN_WINDOW, Some(zero));
        Some(CpuStats {
            time: time.clone(),
            usage_nano_cores: base.and_then(|b| nano_cores(b, now)),
            usage_core_nano_seconds: Some(usage.usage_core_nano_seconds),
        })
    });
    let memory = stats.and_then(|s| {
        let m = s.memory?;
        Some(MemoryStats {
            time: time.clone(),
            available_bytes: None,
            usage_bytes: m.usage_bytes,
            working_set_bytes: m.working_set_bytes,
            rss_bytes: m.rss_bytes,
            page_faults: m.page_faults,
            major_page_faults: m.major_page_faults,
        })
    });
    ContainerSummary {
        name: c.name.clone(),
        start_time: rfc3339(c.start_time),
        cpu,
        memory,
    }
}

/// A pod's usage is its containers' summed; a figure any container lacks
/// is left out rather than under-reported.
fn pod_totals(containers: &[ContainerSummary]) -> (Option<CpuStats>, Option<MemoryStats>) {
    if containers.is_empty() {
        return (None, None);
    }
    let cpus: Option<Vec<&CpuStats>> = containers.iter().map(|c| c.cpu.as_ref()).collect();
    let cpu = cpus.map(|cpus| CpuStats {
        time: cpus
            .iter()
            .map(|c| c.time.clone())
            .max()
            .unwrap_or_default(),
        usage_nano_cores: cpus.iter().map(|c| c.usage_nano_cores).sum(),
        usage_core_nano_seconds: cpus.iter().map(|c| c.usage_core_nano_seconds).sum(),
    });
    let mems: Option<Vec<&MemoryStats>> = containers.iter().map(|c| c.memory.as_ref()).collect();
    let memory = mems.map(|mems| MemoryStats {
        time: mems
            .iter()
            .map(|m| m.time.clone())
            .max()
            .unwrap_or_default(),
        available_bytes: None,
        usage_bytes: mems.iter().map(|m| m.usage_bytes).sum(),
        working_set_bytes: mems.iter().map(|m| m.working_set_bytes).sum(),
        rss_bytes: mems.iter().map(|m| m.rss_bytes).sum(),
        page_faults: mems.iter().map(|m| m.page_faults).sum(),
        major_page_faults: mems.iter().map(|m| m.major_page_faults).sum(),
    });
    (cpu, memory)
}

/// The summary of what was observed, with CPU rates against `history`.
pub fn assemble(node_name: &str, observed: &Observed, history: &History) -> Summary {
    let time = rfc3339(observed.at);
    let node = &observed.node;
    let cpu = node.cpu_ns.map(|cpu_ns| {
        let now = Sample {
            at: observed.at,
            cpu_ns,
        };
        let zero = node.boot_time.map(|at| Sample { at, cpu_ns: 0 });
        let base = pick_base(&history.node, observed.at, MIN_WINDOW, zero);
        CpuStats {
            time: time.clone(),
            usage_nano_cores: base.and_then(|b| nano_cores(b, now)),
            usage_core_nano_seconds: Some(cpu_ns),
        }
    });
    let memory = node.memory.map(|m| MemoryStats {
        time: time.clone(),
        available_bytes: Some(m.available_bytes),
        usage_bytes: m.usage_bytes,
        working_set_bytes: m.working_set_bytes,
        rss_bytes: m.rss_bytes,
        page_faults: 0,
        major_page_faults: 0,
    });
    let pods = observed
        .pods
        .iter()
        .map(|p| {
            let containers: Vec<ContainerSummary> = p
                .containers
                .iter()
                .map(|c| container_summary(c, history))
                .collect();
            let (cpu, memory) = pod_totals(&containers);
            PodStats {
                pod_ref: PodReference {
                    name: p.name.clone(),
                    namespace: p.namespace.clone(),
                    uid: p.uid.clone(),
                },
                start_time: rfc3339(p.start_time),
                containers,
                cpu,
                memory,
            }
        })
        .collect();
    Summary {
        node: NodeStats {
            node_name: node_name.to_string(),
            start_time: node.boot_time.map(rfc3339),
            cpu,
            memory,
            network: network_stats(&node.interfaces, &time),
        },
        pods,
    }
}

// ---------------------------------------------------------------------
// Sampling (I/O).
// ---------------------------------------------------------------------

/// Reads the node's figures from `/proc`.
pub fn observe_node() -> ObservedNode {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    ObservedNode {
        cpu_ns: procfs::parse_proc_stat_cpu(&stat),
        memory: procfs::parse_meminfo(&meminfo),
        boot_time: procfs::parse_boot_time(&stat).and_then(|s| Timestamp::from_second(s).ok()),
        interfaces: procfs::parse_net_dev(
            &std::fs::read_to_string("/proc/net/dev").unwrap_or_default(),
        ),
    }
}

/// Reads the node and every running container of every ready sandbox.
pub async fn observe(runtime: &dyn ContainerRuntime) -> Observed {
    let at = Timestamp::now();
    let node = tokio::task::spawn_blocking(observe_node)
        .await
        .unwrap_or_default();
    let sandboxes = runtime
        .list_pod_sandbox(&PodSandboxFilter {
            state: Some(SandboxState::Ready),
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    let containers = runtime
        .list_containers(&ContainerFilter {
            state: Some(ContainerState::Running),
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    let mut pods: Vec<ObservedPod> = Vec::new();
    let mut by_uid: HashMap<String, usize> = HashMap::new();
    for s in &sandboxes {
        let mut observed = Vec::new();
        for c in containers.iter().filter(|c| c.pod_sandbox_id == s.id) {
            let start_time = match runtime.container_status(&c.id).await {
                Ok(st) => st.started_at.unwrap_or(st.created_at),
                Err(_) => c.created_at,
            };
            let name = c
                .labels
                .get(LABEL_CONTAINER_NAME)
                .cloned()
                .unwrap_or_else(|| c.metadata.name.clone());
            observed.push(ObservedContainer {
                id: c.id.clone(),
                name,
                start_time,
                stats: runtime.container_stats(&c.id).await.ok(),
            });
        }
        let pod = ObservedPod {
            name: s.metadata.name.clone(),
            namespace: s.metadata.namespace.clone(),
            uid: s.metadata.uid.clone(),
            start_time: s.created_at,
            containers: observed,
        };
        // One entry per pod: a newer sandbox of the same pod wins.
        match by_uid.get(&pod.uid) {
            Some(&i) if pods[i].start_time >= pod.start_time => {}
            Some(&i) => pods[i] = pod,
            None => {
                by_uid.insert(pod.uid.clone(), pods.len());
                pods.push(pod);
            }
        }
    }
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Observed { at, node, pods }
}

/// Samples the node and its containers and serves summaries.
pub struct StatsProvider {
    runtime: Arc<dyn ContainerRuntime>,
    node_name: String,
    history: Mutex<History>,
    last: tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<Summary>)>>,
}

impl StatsProvider {
    /// A provider whose housekeeping runs on this tokio runtime for as long
    /// as the provider is referenced.
    pub fn start(runtime: Arc<dyn ContainerRuntime>, node_name: &str) -> Arc<StatsProvider> {
        let provider = Arc::new(StatsProvider {
            runtime,
            node_name: node_name.to_string(),
            history: Mutex::new(History::default()),
            last: tokio::sync::Mutex::new(None),
        });
        tokio::spawn(housekeeping(Arc::downgrade(&provider)));
        provider
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One housekeeping round: sample and keep the samples.
    pub async fn housekeep(&self) {
        let observed = observe(self.runtime.as_ref()).await;
        let summary = {
            let mut history = self.history();
            let summary = assemble(&self.node_name, &observed, &history);
            history.record(&observed);
            summary
        };
        *self.last.lock().await = Some((tokio::time::Instant::now(), Arc::new(summary)));
    }

    /// The current summary (sampled now unless one was made within
    /// [`REUSE_WITHIN`]).
    pub async fn summary(&self) -> Arc<Summary> {
        let mut last = self.last.lock().await;
        if let Some((at, summary)) = last.as_ref() {
            if at.elapsed() < REUSE_WITHIN {
                return summary.clone();
            }
        }
        let observed = observe(self.runtime.as_ref()).await;
        let summary = Arc::new(assemble(&self.node_name, &observed, &self.history()));
        *last = Some((tokio::time::Instant::now(), summary.clone()));
        summary
    }

    pub fn runtime(&self) -> &Arc<dyn ContainerRuntime> {
        &self.runtime
    }
}

async fn housekeeping(provider: Weak<StatsProvider>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(provider) = provider.upgrade() else {
            return;
        };
        provider.housekeep().await;
    }
}

/// `GET /stats/summary` (upstream's `only_cpu_and_memory` query is
/// accepted: the summary has nothing else).
pub fn routes(provider: Arc<StatsProvider>) -> axum::Router {
    axum::Router::new()
        .route("/stats/summary", get(serve_summary))
        .with_state(provider)
}

async fn serve_summary(State(provider): State<Arc<StatsProvider>>) -> Response {
    let summary = provider.summary().await;
    match serde_json::to_vec(summary.as_ref()) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{CpuUsage, MemoryUsage};

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn s(secs: i64, cpu_ns: u64) -> Sample {
        Sample {
            at: t(secs),
            cpu_ns,
        }
    }

    #[test]
    fn rates_are_counter_deltas_over_time() {
        let cases = [
            // one core busy for 10 s
            (s(0, 0), s(10, 10_000_000_000), Some(1_000_000_000)),
            // a quarter core
            (s(0, 5_000_000_000), s(4, 6_000_000_000), Some(250_000_000)),
            (s(0, 7), s(3, 7), Some(0)),
            (s(5, 0), s(5, 100), None),
            (s(6, 0), s(5, 100), None),
            (s(0, 100), s(5, 50), None),
        ];
        for (base, now, want) in cases {
            assert_eq!(nano_cores(base, now), want, "{base:?} -> {now:?}");
        }
    }

    #[test]
    fn the_base_is_the_newest_sample_old_enough() {
        let both = Samples {
            prev: Some(s(0, 1)),
            cur: Some(s(10, 2)),
        };
        let zero = Some(s(-100, 0));
        let w = Duration::from_secs(2);
        assert_eq!(pick_base(&both, t(15), w, zero), Some(s(10, 2)));
        assert_eq!(pick_base(&both, t(11), w, zero), Some(s(0, 1)));
        assert_eq!(pick_base(&both, t(1), w, zero), zero);
        assert_eq!(pick_base(&Samples::default(), t(1), w, None), None);
    }

    fn stats(at: i64, cpu_ns: u64, ws: u64) -> ContainerStats {
        ContainerStats {
            timestamp: t(at),
            cpu: Some(CpuUsage {
                usage_core_nano_seconds: cpu_ns,
            }),
            memory: Some(MemoryUsage {
                working_set_bytes: ws,
                usage_bytes: ws,
                rss_bytes: ws,
                page_faults: 1,
                major_page_faults: 0,
            }),
        }
    }

    fn observed(at: i64, busy_cpu: u64, node_cpu: u64) -> Observed {
        Observed {
            at: t(at),
            node: ObservedNode {
                cpu_ns: Some(node_cpu),
                memory: Some(procfs::NodeMemory {
                    available_bytes: 600,
                    usage_bytes: 500,
                    working_set_bytes: 400,
                    rss_bytes: 300,
                }),
                boot_time: Some(t(-1000)),
                interfaces: vec![
                    procfs::Interface {
                        name: "lo".into(),
                        rx_bytes: 1,
                        ..Default::default()
                    },
                    procfs::Interface {
                        name: "ens4".into(),
                        rx_bytes: 7,
                        tx_bytes: 9,
                        ..Default::default()
                    },
                ],
            },
            pods: vec![ObservedPod {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                start_time: t(-10),
                containers: vec![
                    ObservedContainer {
                        id: "c1".into(),
                        name: "busy".into(),
                        start_time: t(-10),
                        stats: Some(stats(at, busy_cpu, 1000)),
                    },
                    ObservedContainer {
                        id: "c2".into(),
                        name: "idle".into(),
                        start_time: t(-10),
                        stats: Some(stats(at, 0, 24)),
                    },
                ],
            }],
        }
    }

    #[test]
    fn a_summary_rates_containers_from_their_start_then_from_samples() {
        let mut history = History::default();
        // First sight: ten seconds of one full core since the start.
        let first = observed(0, 10_000_000_000, 1_000_000_000_000);
        let sum = assemble("node-a", &first, &history);
        let pod = &sum.pods[0];
        assert_eq!(pod.pod_ref.name, "web");
        assert_eq!(
            pod.containers[0].cpu.as_ref().unwrap().usage_nano_cores,
            Some(1_000_000_000)
        );
        assert_eq!(
            pod.containers[1].cpu.as_ref().unwrap().usage_nano_cores,
            Some(0)
        );
        assert_eq!(
            pod.cpu.as_ref().unwrap().usage_nano_cores,
            Some(1_000_000_000)
        );
        assert_eq!(pod.memory.as_ref().unwrap().working_set_bytes, 1024);
        // The node is measured from boot without a sample: 1000 s over 1000 s.
        assert_eq!(
            sum.node.cpu.as_ref().unwrap().usage_nano_cores,
            Some(1_000_000_000)
        );
        assert_eq!(sum.node.memory.as_ref().unwrap().available_bytes, Some(600));
        assert_eq!(sum.node.start_time.as_deref(), Some("2027-01-15T07:43:20Z"));
        history.record(&first);
        // Ten seconds later the busy container used half a core.
        let second = observed(10, 15_000_000_000, 1_002_000_000_000);
        let sum = assemble("node-a", &second, &history);
        assert_eq!(
            sum.pods[0].containers[0]
                .cpu
                .as_ref()
                .unwrap()
                .usage_nano_cores,
            Some(500_000_000)
        );
        assert_eq!(
            sum.node.cpu.as_ref().unwrap().usage_nano_cores,
            Some(200_000_000)
        );
        assert_eq!(sum.node.cpu.as_ref().unwrap().time, "2027-01-15T08:00:10Z");
    }

    #[test]
    fn history_forgets_containers_that_stopped() {
        let mut history = History::default();
        let mut o = observed(0, 1, 1);
        history.record(&o);
        assert_eq!(history.containers.len(), 2);
        o.pods[0].containers.pop();
        history.record(&o);
        assert_eq!(history.containers.keys().collect::<Vec<_>>(), vec!["c1"]);
        assert_eq!(history.node.prev, Some(s(0, 1)));
    }

    #[test]
    fn a_container_without_figures_leaves_its_pod_total_out() {
        let mut o = observed(0, 1, 1);
        o.pods[0].containers[1].stats = None;
        let sum = assemble("n", &o, &History::default());
        assert!(sum.pods[0].containers[1].cpu.is_none());
        assert!(sum.pods[0].cpu.is_none());
        assert!(sum.pods[0].memory.is_none());
        let json = serde_json::to_value(&sum).unwrap();
        assert_eq!(json["pods"][0]["podRef"]["namespace"], "default");
        assert_eq!(
            json["pods"][0]["containers"][0]["cpu"]["usageCoreNanoSeconds"],
            1
        );
        assert!(json["pods"][0].get("cpu").is_none());
        assert_eq!(json["node"]["nodeName"], "n");
        // The first non-loopback interface stands for the node's network.
        assert_eq!(json["node"]["network"]["name"], "ens4");
        assert_eq!(json["node"]["network"]["rxBytes"], 7);
        assert_eq!(json["node"]["network"]["interfaces"][0]["name"], "lo");
    }

    #[tokio::test]
    async fn the_fake_runtime_reports_its_running_containers() {
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(crate::runtime::fake::FakeRuntime::new());
        let provider = StatsProvider::start(runtime, "hollow-1");
        let summary = provider.summary().await;
        assert_eq!(summary.node.node_name, "hollow-1");
        assert!(summary.pods.is_empty());
        assert!(summary.node.memory.is_some());
    }
}
