//! The kubelet's Prometheus endpoints (upstream names, OpenMetrics text
//! from `prometheus-client`, as the scheduler serves):
//! - `GET /metrics`: `kubelet_node_name`, `kubelet_running_pods` (pods
//!   with a ready sandbox) and `kubelet_running_containers` by
//!   `container_state`, counted from the runtime at scrape time; and the
//!   pod workers' histograms ([`PodMetrics`]):
//!   `kubelet_pod_start_duration_seconds` (from the kubelet first seeing a
//!   pod to its first `Running` status) and
//!   `kubelet_pod_worker_duration_seconds` by `operation_type`;
//! - `GET /metrics/resource`: the resource metrics upstream's kubelet
//!   serves for metrics-server (`node_`, `pod_` and `container_`
//!   `cpu_usage_seconds_total` and `memory_working_set_bytes`), made from
//!   the same [`Summary`] as `/stats/summary`.
//!
//! The gauges are read when scraped, so each scrape builds a small registry
//! ([`render_kubelet`], [`render_resource`] are pure); the histograms are
//! process-wide, like upstream's legacy registry ([`pod_metrics`]).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::runtime::{ContainerFilter, ContainerState, PodSandboxFilter, SandboxState};
use crate::stats::{StatsProvider, Summary};

/// What both endpoints answer with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

/// Upstream's `podStartupDurationBuckets`: roughly exponential, round in
/// everyday units.
pub const POD_START_BUCKETS: [f64; 25] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];
/// Prometheus' default buckets (upstream's `metrics.DefBuckets`).
pub const DEF_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// The pod workers' histograms.
#[derive(Clone)]
pub struct PodMetrics {
    start: Histogram,
    worker: HistogramFamily,
}

impl Default for PodMetrics {
    fn default() -> Self {
        PodMetrics {
            start: Histogram::new(POD_START_BUCKETS),
            worker: Family::new_with_constructor(|| Histogram::new(DEF_BUCKETS)),
        }
    }
}

impl PodMetrics {
    /// A pod became `Running` for the first time, `since_seen` after the
    /// kubelet first saw it.
    pub fn observe_start(&self, since_seen: Duration) {
        self.start.observe(since_seen.as_secs_f64());
    }

    /// One pass of a pod worker: `create` (its first), `update` (after a
    /// change of the pod) or `sync`.
    pub fn observe_worker(&self, operation: &str, took: Duration) {
        self.worker
            .get_or_create(&vec![("operation_type".into(), operation.into())])
            .observe(took.as_secs_f64());
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            self.start.clone(),
        );
        registry.register(
            "kubelet_pod_worker_duration_seconds",
            "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
            self.worker.clone(),
        );
    }
}

static POD_METRICS: LazyLock<PodMetrics> = LazyLock::new(PodMetrics::default);

/// The process's pod worker histograms, which `/metrics` serves.
pub fn pod_metrics() -> &'static PodMetrics {
    &POD_METRICS
}

fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

fn state_name(state: ContainerState) -> &'static str {
    match state {
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
        ContainerState::Unknown => "unknown",
    }
}

/// `/metrics`: the node's name, its running pods and its containers by
/// state.
pub fn render_kubelet(
    node_name: &str,
    running_pods: usize,
    containers: &BTreeMap<&'static str, usize>,
    workers: &PodMetrics,
) -> String {
    let mut registry = Registry::default();
    let node = Family::<Labels, Gauge>::default();
    node.get_or_create(&vec![("node".into(), node_name.into())])
        .set(1);
    registry.register(
        "kubelet_node_name",
        "The node's name. The count is always 1.",
        node.clone(),
    );
    let pods = Gauge::<i64>::default();
    pods.set(running_pods as i64);
    registry.register(
        "kubelet_running_pods",
        "Number of pods that have a running pod sandbox",
        pods,
    );
    let by_state = Family::<Labels, Gauge>::default();
    for (state, n) in containers {
        by_state
            .get_or_create(&vec![("container_state".into(), (*state).into())])
            .set(*n as i64);
    }
    registry.register(
        "kubelet_running_containers",
        "Number of containers currently running",
        by_state,
    );
    workers.register(&mut registry);
    encode(&registry)
}

fn seconds(nanos: Option<u64>) -> Option<f64> {
    nanos.map(|n| n as f64 / 1e9)
}

/// `/metrics/resource` from a summary.
pub fn render_resource(summary: &Summary) -> String {
    let mut registry = Registry::default();
    let node_cpu = FloatCounter::default();
    let node_mem = FloatGauge::default();
    if let Some(v) = summary
        .node
        .cpu
        .as_ref()
        .and_then(|c| seconds(c.usage_core_nano_seconds))
    {
        node_cpu.inc_by(v);
    }
    if let Some(m) = &summary.node.memory {
        node_mem.set(m.working_set_bytes as f64);
    }
    registry.register(
        "node_cpu_usage_seconds",
        "Cumulative cpu time consumed by the node in core-seconds",
        node_cpu,
    );
    registry.register(
        "node_memory_working_set_bytes",
        "Current working set of the node in bytes",
        node_mem,
    );
    let pod_cpu = Family::<Labels, FloatCounter>::default();
    let pod_mem = Family::<Labels, FloatGauge>::default();
    let c_cpu = Family::<Labels, FloatCounter>::default();
    let c_mem = Family::<Labels, FloatGauge>::default();
    for pod in &summary.pods {
        let pod_labels: Labels = vec![
            ("namespace".into(), pod.pod_ref.namespace.clone()),
            ("pod".into(), pod.pod_ref.name.clone()),
        ];
        if let Some(v) = pod
            .cpu
            .as_ref()
            .and_then(|c| seconds(c.usage_core_nano_seconds))
        {
            pod_cpu.get_or_create(&pod_labels).inc_by(v);
        }
        if let Some(m) = &pod.memory {
            pod_mem
                .get_or_create(&pod_labels)
                .set(m.working_set_bytes as f64);
        }
        for c in &pod.containers {
            let mut labels = vec![("container".to_string(), c.name.clone())];
            labels.extend(pod_labels.iter().cloned());
            if let Some(v) = c
                .cpu
                .as_ref()
                .and_then(|c| seconds(c.usage_core_nano_seconds))
            {
                c_cpu.get_or_create(&labels).inc_by(v);
            }
            if let Some(m) = &c.memory {
                c_mem.get_or_create(&labels).set(m.working_set_bytes as f64);
            }
        }
    }
    registry.register(
        "container_cpu_usage_seconds",
        "Cumulative cpu time consumed by the container in core-seconds",
        c_cpu,
    );
    registry.register(
        "container_memory_working_set_bytes",
        "Current working set of the container in bytes",
        c_mem,
    );
    registry.register(
        "pod_cpu_usage_seconds",
        "Cumulative cpu time consumed by the pod in core-seconds",
        pod_cpu,
    );
    registry.register(
        "pod_memory_working_set_bytes",
        "Current working set of the pod in bytes",
        pod_mem,
    );
    let scrape_error = Gauge::<i64>::default();
    registry.register(
        "scrape_error",
        "1 if there was an error while getting container metrics, 0 otherwise",
        scrape_error,
    );
    encode(&registry)
}

/// `GET /metrics` and `GET /metrics/resource`.
pub fn routes(provider: Arc<StatsProvider>, node_name: &str) -> axum::Router {
    let node_name: Arc<str> = node_name.into();
    axum::Router::new()
        .route(
            "/metrics",
            get(move |State(p): State<Arc<StatsProvider>>| async move {
                let runtime = p.runtime();
                let pods = runtime
                    .list_pod_sandbox(&PodSandboxFilter {
                        state: Some(SandboxState::Ready),
                        ..Default::default()
                    })
                    .await
                    .map(|s| s.len())
                    .unwrap_or(0);
                let mut states = BTreeMap::new();
                for c in runtime
                    .list_containers(&ContainerFilter::default())
                    .await
                    .unwrap_or_default()
                {
                    *states.entry(state_name(c.state)).or_insert(0) += 1;
                }
                let body = render_kubelet(&node_name, pods, &states, pod_metrics());
                ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
            }),
        )
        .route(
            "/metrics/resource",
            get(|State(p): State<Arc<StatsProvider>>| async move {
                let body = render_resource(p.summary().await.as_ref());
                ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
            }),
        )
        .with_state(provider)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{
        ContainerSummary, CpuStats, MemoryStats, NodeStats, PodReference, PodStats,
    };

    #[test]
    fn kubelet_metrics_count_pods_and_containers_by_state() {
        let states = BTreeMap::from([("running", 3), ("exited", 1)]);
        let text = render_kubelet("node-a", 2, &states, &PodMetrics::default());
        for line in [
            "kubelet_node_name{node=\"node-a\"} 1",
            "kubelet_running_pods 2",
            "kubelet_running_containers{container_state=\"running\"} 3",
            "kubelet_running_containers{container_state=\"exited\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn pod_start_and_worker_durations_are_histograms_with_upstream_buckets() {
        let pods = PodMetrics::default();
        pods.observe_start(Duration::from_millis(2500));
        pods.observe_start(Duration::from_secs(7200));
        pods.observe_worker("create", Duration::from_millis(20));
        let text = render_kubelet("node-a", 0, &BTreeMap::new(), &pods);
        for line in [
            "# TYPE kubelet_pod_start_duration_seconds histogram",
            "kubelet_pod_start_duration_seconds_bucket{le=\"2.0\"} 0",
            "kubelet_pod_start_duration_seconds_bucket{le=\"3.0\"} 1",
            "kubelet_pod_start_duration_seconds_bucket{le=\"3600.0\"} 1",
            "kubelet_pod_start_duration_seconds_bucket{le=\"+Inf\"} 2",
            "kubelet_pod_start_duration_seconds_count 2",
            "kubelet_pod_worker_duration_seconds_bucket{le=\"0.01\",operation_type=\"create\"} 0",
            "kubelet_pod_worker_duration_seconds_bucket{le=\"0.025\",operation_type=\"create\"} 1",
            "kubelet_pod_worker_duration_seconds_count{operation_type=\"create\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn resource_metrics_follow_the_summary() {
        let cpu = |ns| {
            Some(CpuStats {
                time: String::new(),
                usage_nano_cores: None,
                usage_core_nano_seconds: Some(ns),
            })
        };
        let mem = |ws| {
            Some(MemoryStats {
                working_set_bytes: ws,
                ..Default::default()
            })
        };
        let summary = Summary {
            node: NodeStats {
                node_name: "n".into(),
                start_time: None,
                cpu: cpu(2_500_000_000),
                memory: mem(1024),
                network: None,
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u".into(),
                },
                start_time: String::new(),
                containers: vec![ContainerSummary {
                    name: "app".into(),
                    start_time: String::new(),
                    cpu: cpu(500_000_000),
                    memory: mem(512),
                }],
                cpu: cpu(500_000_000),
                memory: mem(512),
            }],
        };
        let text = render_resource(&summary);
        for line in [
            "node_cpu_usage_seconds_total 2.5",
            "node_memory_working_set_bytes 1024.0",
            "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web\"} 0.5",
            "container_memory_working_set_bytes{container=\"app\",namespace=\"default\",pod=\"web\"} 512.0",
            "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"} 0.5",
            "pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"} 512.0",
            "scrape_error 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
