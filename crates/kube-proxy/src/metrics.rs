//! What the proxy reports about itself, named as upstream kube-proxy does:
//! `kubeproxy_sync_proxy_rules_duration_seconds` (histogram),
//! `kubeproxy_sync_proxy_rules_last_timestamp_seconds` and the number of
//! rules programmed, served on `/metrics` (OpenMetrics text); and
//! `/healthz`, which answers 200 while syncs succeed and 503 once the last
//! successful sync is too old (or there was none yet), with upstream's
//! `lastUpdated` / `currentTime` JSON body.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The proxy's metrics and health.
pub struct Metrics {
    registry: Registry,
    sync_duration: Histogram,
    rules: Gauge,
    last_sync: Gauge<f64, AtomicU64>,
    last_success: Mutex<Option<SystemTime>>,
    /// A sync older than this makes `/healthz` fail.
    stale_after: Duration,
}

impl Metrics {
    /// Metrics whose health turns bad when no sync succeeded for `stale_after`.
    pub fn new(stale_after: Duration) -> Arc<Metrics> {
        let mut registry = Registry::default();
        // 1 ms … ~16 s.
        let sync_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let rules = Gauge::default();
        let last_sync = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "How long one sync of the proxy rules took, in seconds",
            sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_total",
            "Rules (and map elements) programmed, or listeners in userspace mode",
            rules.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "When the proxy rules were last synced successfully (Unix time)",
            last_sync.clone(),
        );
        Arc::new(Metrics {
            registry,
            sync_duration,
            rules,
            last_sync,
            last_success: Mutex::new(None),
            stale_after,
        })
    }

    /// Records a successful sync.
    pub fn synced(&self, took: Duration, rules: usize) {
        self.sync_duration.observe(took.as_secs_f64());
        self.rules.set(i64::try_from(rules).unwrap_or(i64::MAX));
        let now = SystemTime::now();
        self.last_sync.set(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
        *self.last_success.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Whether healthy at `now`, and the `/healthz` body.
    pub fn health(&self, now: SystemTime) -> (bool, serde_json::Value) {
        let last = *self.last_success.lock().unwrap_or_else(|e| e.into_inner());
        healthz(last, now, self.stale_after)
    }
}

/// Pure health verdict: healthy when a sync succeeded within `stale_after`.
fn healthz(
    last: Option<SystemTime>,
    now: SystemTime,
    stale_after: Duration,
) -> (bool, serde_json::Value) {
    let stamp = |t: SystemTime| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339();
    let healthy = last.is_some_and(|t| now.duration_since(t).unwrap_or_default() <= stale_after);
    let body = serde_json::json!({
        "lastUpdated": last.map(stamp).unwrap_or_default(),
        "currentTime": stamp(now),
    });
    (healthy, body)
}

async fn healthz_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    let (ok, body) = m.health(SystemTime::now());
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}

async fn metrics_handler(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}

/// The router for the metrics address: `/metrics` and `/healthz`.
pub fn metrics_router(m: Arc<Metrics>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .with_state(m)
}

/// The router for the healthz address: `/healthz` only.
pub fn healthz_router(m: Arc<Metrics>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz_handler))
        .with_state(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_needs_a_recent_sync() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let stale = Duration::from_secs(60);
        assert!(!healthz(None, now, stale).0, "no sync yet");
        assert!(healthz(Some(now - Duration::from_secs(10)), now, stale).0);
        assert!(!healthz(Some(now - Duration::from_secs(61)), now, stale).0);
        let body = healthz(Some(now), now, stale).1;
        assert_eq!(body["lastUpdated"], body["currentTime"]);
    }

    #[test]
    fn metrics_are_named_like_upstream() {
        let m = Metrics::new(Duration::from_secs(60));
        m.synced(Duration::from_millis(3), 42);
        let text = m.encode();
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_total 42"),
            "{text}"
        );
        assert!(
            text.contains("kubeproxy_sync_proxy_rules_last_timestamp_seconds "),
            "{text}"
        );
    }
}
