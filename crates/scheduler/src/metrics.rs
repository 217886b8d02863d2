//! The scheduler's `/metrics` and `/healthz`, named as kube-scheduler's
//! (`pkg/scheduler/metrics`, client-go's leader-election metrics):
//!
//! - `scheduler_schedule_attempts_total{result, profile}`: scheduling
//!   attempts by `result` (`scheduled`, `unschedulable`, `error`);
//! - `scheduler_scheduling_attempt_duration_seconds{result, profile}`: the
//!   latency of one attempt (scheduling algorithm plus binding hand-off),
//!   with upstream's buckets (exponential from 1 ms, factor 2, 15 buckets);
//! - `scheduler_pending_pods{queue}`: pods waiting in the `active`,
//!   `backoff` and `unschedulable` sub-queues, and `gated` (always 0: no
//!   scheduling gates yet);
//! - `leader_election_master_status{name}`: 1 while this process leads.
//!
//! Encoded by `prometheus-client` in OpenMetrics text (which Prometheus
//! scrapes natively). `/healthz` answers `ok` as upstream's healthz does.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::queue::PriorityQueue;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upstream's profile name for the default profile.
pub const DEFAULT_PROFILE: &str = "default-scheduler";

/// The outcome of one scheduling attempt (upstream's `result` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptResult {
    /// The pod was assigned a node (`scheduled`).
    Scheduled,
    /// The pod fits no node (`unschedulable`).
    Unschedulable,
    /// Scheduling failed for another reason (`error`).
    Error,
}

/// The scheduling queue's sub-queues (upstream's `queue` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PendingQueue {
    /// `activeQ`.
    Active,
    /// `podBackoffQ`.
    Backoff,
    /// `unschedulablePods`.
    Unschedulable,
    /// Pods held by scheduling gates.
    Gated,
}

impl AttemptResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Scheduled => "scheduled",
            AttemptResult::Unschedulable => "unschedulable",
            AttemptResult::Error => "error",
        }
    }
}

impl PendingQueue {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PendingQueue::Active => "active",
            PendingQueue::Backoff => "backoff",
            PendingQueue::Unschedulable => "unschedulable",
            PendingQueue::Gated => "gated",
        }
    }
}

impl EncodeLabelValue for AttemptResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for PendingQueue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AttemptLabels {
    result: AttemptResult,
    profile: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QueueLabels {
    queue: PendingQueue,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LeaderLabels {
    name: String,
}

/// Sizes of the scheduling queue's sub-queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingPods {
    /// Pods ready to be scheduled.
    pub active: usize,
    /// Pods waiting out their backoff.
    pub backoff: usize,
    /// Pods waiting for a cluster event.
    pub unschedulable: usize,
    /// Pods held by scheduling gates.
    pub gated: usize,
}

impl PendingPods {
    /// The sizes of `queue` now.
    pub fn of(queue: &PriorityQueue) -> Self {
        PendingPods {
            active: queue.len_active(),
            backoff: queue.len_backoff(),
            unschedulable: queue.len_unschedulable(),
            gated: 0,
        }
    }
}

fn attempt_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The scheduler's metrics; cheap to update from any thread (atomics).
pub struct Metrics {
    registry: Registry,
    attempts: Family<AttemptLabels, Counter>,
    attempt_duration: Family<AttemptLabels, Histogram, fn() -> Histogram>,
    pending: Family<QueueLabels, Gauge>,
    leader: Family<LeaderLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// All metrics registered; pending-pod gauges start at 0 for every queue.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod \
             could not be scheduled, while 'error' means an internal scheduler problem.",
            attempts.clone(),
        );
        let attempt_duration =
            Family::<AttemptLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                attempt_histogram,
            );
        registry.register_with_unit(
            "scheduler_scheduling_attempt_duration",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            Unit::Seconds,
            attempt_duration.clone(),
        );
        let pending = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in \
             activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means \
             number of pods in unschedulablePods that the scheduler attempted to schedule \
             and failed; 'gated' is the number of unschedulable pods that the scheduler \
             never attempted to schedule because they are gated.",
            pending.clone(),
        );
        let leader = Family::<LeaderLabels, Gauge>::default();
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates \
             backup, 1 indicates master. 'name' is the string used to identify the lease.",
            leader.clone(),
        );
        let metrics = Metrics {
            registry,
            attempts,
            attempt_duration,
            pending,
            leader,
        };
        metrics.set_pending_pods(PendingPods::default());
        metrics
    }

    /// Count one scheduling attempt of `profile` and observe its latency.
    pub fn observe_attempt(&self, result: AttemptResult, profile: &str, duration: Duration) {
        let labels = AttemptLabels {
            result,
            profile: profile.to_owned(),
        };
        self.attempts.get_or_create(&labels).inc();
        self.attempt_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    /// Set the `scheduler_pending_pods` gauges.
    pub fn set_pending_pods(&self, pending: PendingPods) {
        let set = |queue, n: usize| {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            self.pending.get_or_create(&QueueLabels { queue }).set(n);
        };
        set(PendingQueue::Active, pending.active);
        set(PendingQueue::Backoff, pending.backoff);
        set(PendingQueue::Unschedulable, pending.unschedulable);
        set(PendingQueue::Gated, pending.gated);
    }

    /// Set the pending-pod gauges from `queue` (call with the queue locked).
    pub fn record_queue(&self, queue: &PriorityQueue) {
        self.set_pending_pods(PendingPods::of(queue));
    }

    /// Set `leader_election_master_status{name}` to 1 or 0.
    pub fn set_leader(&self, lease_name: &str, leading: bool) {
        let labels = LeaderLabels {
            name: lease_name.to_owned(),
        };
        self.leader.get_or_create(&labels).set(i64::from(leading));
    }

    /// All metrics in OpenMetrics text format (ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// `GET /metrics` (OpenMetrics text) and `GET /healthz` (`ok`, or 500 when
/// `healthy` says otherwise).
pub fn router<H>(metrics: Arc<Metrics>, healthy: H) -> Router
where
    H: Fn() -> bool + Send + Sync + 'static,
{
    let healthy = Arc::new(healthy);
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()) }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let healthy = healthy.clone();
                async move {
                    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
                    if healthy() {
                        (StatusCode::OK, text, "ok").into_response()
                    } else {
                        (StatusCode::INTERNAL_SERVER_ERROR, text, "unhealthy").into_response()
                    }
                }
            }),
        )
}

/// Serve `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn renders_upstream_names_and_labels() {
        let metrics = Metrics::new();
        metrics.observe_attempt(
            AttemptResult::Scheduled,
            DEFAULT_PROFILE,
            Duration::from_millis(3),
        );
        metrics.observe_attempt(
            AttemptResult::Scheduled,
            DEFAULT_PROFILE,
            Duration::from_millis(20),
        );
        metrics.observe_attempt(
            AttemptResult::Unschedulable,
            DEFAULT_PROFILE,
            Duration::from_millis(1),
        );
        metrics.observe_attempt(AttemptResult::Error, DEFAULT_PROFILE, Duration::ZERO);
        metrics.set_pending_pods(PendingPods {
            active: 3,
            backoff: 2,
            unschedulable: 1,
            gated: 0,
        });
        metrics.set_leader("kube-scheduler", true);
        let text = metrics.render();
        for line in [
            "# TYPE scheduler_schedule_attempts counter",
            "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 2",
            "scheduler_schedule_attempts_total{result=\"unschedulable\",profile=\"default-scheduler\"} 1",
            "scheduler_schedule_attempts_total{result=\"error\",profile=\"default-scheduler\"} 1",
            "# TYPE scheduler_scheduling_attempt_duration_seconds histogram",
            "# UNIT scheduler_scheduling_attempt_duration_seconds seconds",
            "scheduler_scheduling_attempt_duration_seconds_count{result=\"scheduled\",profile=\"default-scheduler\"} 2",
            "scheduler_scheduling_attempt_duration_seconds_sum{result=\"scheduled\",profile=\"default-scheduler\"} 0.023",
            "scheduler_scheduling_attempt_duration_seconds_bucket{le=\"0.004\",result=\"scheduled\",profile=\"default-scheduler\"} 1",
            "scheduler_scheduling_attempt_duration_seconds_bucket{le=\"0.032\",result=\"scheduled\",profile=\"default-scheduler\"} 2",
            "scheduler_scheduling_attempt_duration_seconds_bucket{le=\"16.384\",result=\"scheduled\",profile=\"default-scheduler\"} 2",
            "scheduler_scheduling_attempt_duration_seconds_bucket{le=\"+Inf\",result=\"scheduled\",profile=\"default-scheduler\"} 2",
            "# TYPE scheduler_pending_pods gauge",
            "scheduler_pending_pods{queue=\"active\"} 3",
            "scheduler_pending_pods{queue=\"backoff\"} 2",
            "scheduler_pending_pods{queue=\"unschedulable\"} 1",
            "scheduler_pending_pods{queue=\"gated\"} 0",
            "leader_election_master_status{name=\"kube-scheduler\"} 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        // Upstream's 15 buckets, 0.001 … 16.384, plus +Inf.
        let buckets = text
            .lines()
            .filter(|l| {
                l.starts_with("scheduler_scheduling_attempt_duration_seconds_bucket")
                    && l.contains("result=\"error\"")
            })
            .count();
        assert_eq!(buckets, 16, "{text}");
    }

    #[test]
    fn pending_gauges_exist_before_any_update_and_follow_the_queue() {
        let metrics = Metrics::new();
        assert!(metrics
            .render()
            .contains("scheduler_pending_pods{queue=\"active\"} 0"));
        let queue = PriorityQueue::default();
        metrics.record_queue(&queue);
        assert!(metrics
            .render()
            .contains("scheduler_pending_pods{queue=\"unschedulable\"} 0"));
        metrics.set_leader("kube-scheduler", false);
        assert!(metrics
            .render()
            .contains("leader_election_master_status{name=\"kube-scheduler\"} 0"));
    }

    async fn get(router: Router, path: &str) -> (StatusCode, String, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn router_serves_metrics_and_healthz() {
        let metrics = Arc::new(Metrics::new());
        metrics.observe_attempt(
            AttemptResult::Scheduled,
            DEFAULT_PROFILE,
            Duration::from_millis(5),
        );
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        let router = router(metrics, move || flag.load(Ordering::Relaxed));

        let (status, content_type, body) = get(router.clone(), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, CONTENT_TYPE);
        assert!(body.contains("scheduler_schedule_attempts_total{result=\"scheduled\""));
        assert!(body.ends_with("# EOF\n"));

        let (status, _, body) = get(router.clone(), "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));

        healthy.store(false, Ordering::Relaxed);
        let (status, _, _) = get(router.clone(), "/healthz").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

        let (status, _, _) = get(router, "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
