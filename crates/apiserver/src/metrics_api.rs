//! A built-in metrics-server: `metrics.k8s.io/v1beta1` NodeMetrics and
//! PodMetrics, gathered from the kubelets' `/stats/summary`, so that
//! `kubectl top` works and the HorizontalPodAutoscaler has its input.
//!
//! - Discovery lists the group like an aggregated API (legacy and
//!   aggregated forms; [`group_json`], [`resource_list`],
//!   [`aggregated_item`]); `nodes` is cluster-scoped, `pods` namespaced,
//!   both `get` and `list` only. Anything else is 405, as upstream's
//!   metrics-server answers.
//! - A request scrapes the summary of every Ready node's kubelet at once,
//!   each with [`SCRAPE_TIMEOUT`]; the answers are kept for [`CACHE_TTL`]
//!   so `kubectl top` twice in a row costs one round. A kubelet that does
//!   not answer (or answers for another node) leaves its node and pods out
//!   (metrics-server does the same), never failing the whole list.
//! - The values are the kubelet's: `usageNanoCores` (its rate over its
//!   housekeeping window, reported as [`WINDOW`]) as a nano-core quantity
//!   and the working set as a binary quantity ([`cpu_quantity`],
//!   [`memory_quantity`]). PodMetrics exist for pods the API knows (same
//!   UID) whose every container reported both; they carry the pod's labels,
//!   which list `labelSelector`s match ([`node_metrics`], [`pod_metrics`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::codec::Query;
use crate::error::{ApiError, ApiResult, Subject};
use crate::kubelet_client::KubeletClient;
use crate::registry::Registry;

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
const API_VERSION: &str = "metrics.k8s.io/v1beta1";
/// How long one kubelet may take to answer.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a round of scrapes is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(5);
/// The window the kubelet's rates are averaged over (its housekeeping
/// interval).
pub const WINDOW: &str = "10s";
/// The most of a summary read (a node with thousands of containers stays
/// well under it).
const MAX_SUMMARY: usize = 64 * 1024 * 1024;

// ---------------------------------------------------------------------
// Discovery.
// ---------------------------------------------------------------------

/// The group as `/apis` and `/apis/metrics.k8s.io` list it.
pub fn group_json() -> Value {
    let gv = json!({"groupVersion": API_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [gv], "preferredVersion": gv})
}

/// `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    })
}

/// The group's entry in the aggregated `/apis` document.
pub fn aggregated_item() -> Value {
    let resource = |plural: &str, kind: &str, scope: &str| {
        json!({
            "resource": plural,
            "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
            "scope": scope,
            "singularResource": "",
            "verbs": ["get", "list"],
        })
    };
    json!({
        "metadata": {"name": GROUP, "creationTimestamp": null},
        "versions": [{
            "version": VERSION,
            "resources": [resource("nodes", "NodeMetrics", "Cluster"), resource("pods", "PodMetrics", "Namespaced")],
            "freshness": "Current",
        }],
    })
}

// ---------------------------------------------------------------------
// Paths.
// ---------------------------------------------------------------------

/// A request for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsPath {
    /// `nodes` or `pods`.
    pub resource: &'static str,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// What a path under `/apis/metrics.k8s.io/v1beta1/` asks for. `None` for
/// paths outside it (and for its discovery documents); `Some(Err(_))` for
/// one inside that names nothing served (404).
pub fn parse_path(path: &str) -> Option<Result<MetricsPath, String>> {
    let rest = path.strip_prefix("/apis/metrics.k8s.io/v1beta1/")?;
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let found = |resource, namespace: Option<&str>, name: Option<&str>| {
        Some(Ok(MetricsPath {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
        }))
    };
    match segments.as_slice() {
        [""] => None,
        ["nodes"] => found("nodes", None, None),
        ["nodes", name] if !name.is_empty() => found("nodes", None, Some(name)),
        ["pods"] => found("pods", None, None),
        ["namespaces", ns, "pods"] if !ns.is_empty() => found("pods", Some(ns), None),
        ["namespaces", ns, "pods", name] if !ns.is_empty() && !name.is_empty() => {
            found("pods", Some(ns), Some(name))
        }
        _ => Some(Err(rest.to_string())),
    }
}

// ---------------------------------------------------------------------
// Quantities and the objects (pure).
// ---------------------------------------------------------------------

/// Nano-cores as a canonical decimal quantity: `1234567n`, `250m`, `2`.
pub fn cpu_quantity(nanos: u64) -> String {
    if nanos == 0 {
        return "0".into();
    }
    let mut v = nanos;
    for suffix in ["n", "u", "m"] {
        if !v.is_multiple_of(1000) {
            return format!("{v}{suffix}");
        }
        v /= 1000;
    }
    v.to_string()
}

/// Bytes as a canonical binary quantity: `12345Ki`, `1Mi`, `1000`.
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    let mut v = bytes;
    let mut suffix = "";
    for next in ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"] {
        if !v.is_multiple_of(1024) {
            break;
        }
        v /= 1024;
        suffix = next;
    }
    format!("{v}{suffix}")
}

fn usage_of(stats: &Value) -> Option<(Value, String)> {
    let nanos = stats.pointer("/cpu/usageNanoCores")?.as_u64()?;
    let ws = stats.pointer("/memory/workingSetBytes")?.as_u64()?;
    let time = stats
        .pointer("/cpu/time")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Some((
        json!({"cpu": cpu_quantity(nanos), "memory": memory_quantity(ws)}),
        time,
    ))
}

fn labels_of(obj: &Value) -> Value {
    obj.pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// The NodeMetrics of `node` from its kubelet's summary; `None` when the
/// summary lacks the node's cpu rate or working set.
pub fn node_metrics(node: &Value, summary: &Value, now: &str) -> Option<Value> {
    let (usage, time) = usage_of(summary.get("node")?)?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": node.pointer("/metadata/name")?,
            "creationTimestamp": now,
            "labels": labels_of(node),
        },
        "timestamp": time,
        "window": WINDOW,
        "usage": usage,
    }))
}

/// The PodMetrics of `pod` from its entry in a summary; `None` unless the
/// entry is for the same pod (UID) and every container has figures.
pub fn pod_metrics(pod: &Value, stats: &Value, now: &str) -> Option<Value> {
    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str);
    if uid.is_some() && stats.pointer("/podRef/uid").and_then(Value::as_str) != uid {
        return None;
    }
    let mut containers = Vec::new();
    let mut latest = String::new();
    for c in stats.get("containers")?.as_array()? {
        let (usage, time) = usage_of(c)?;
        latest = latest.max(time);
        containers.push(json!({"name": c.get("name")?, "usage": usage}));
    }
    if containers.is_empty() {
        return None;
    }
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": {
            "name": pod.pointer("/metadata/name")?,
            "namespace": pod.pointer("/metadata/namespace")?,
            "creationTimestamp": now,
            "labels": labels_of(pod),
        },
        "timestamp": latest,
        "window": WINDOW,
        "containers": containers,
    }))
}

/// Whether a summary is the named node's own.
pub fn summary_is_for(summary: &Value, node_name: &str) -> bool {
    summary.pointer("/node/nodeName").and_then(Value::as_str) == Some(node_name)
}

/// Whether a node's Ready condition is True.
pub fn node_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Every pod entry of the summaries, by namespace and name.
pub fn pod_entries(summaries: &HashMap<String, Arc<Value>>) -> HashMap<(String, String), Value> {
    let mut out = HashMap::new();
    for summary in summaries.values() {
        for p in summary
            .get("pods")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ns = p.pointer("/podRef/namespace").and_then(Value::as_str);
            let name = p.pointer("/podRef/name").and_then(Value::as_str);
            if let (Some(ns), Some(name)) = (ns, name) {
                out.insert((ns.to_string(), name.to_string()), p.clone());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------
// Scraping and serving.
// ---------------------------------------------------------------------

/// Kubelet summaries by node name.
type Summaries = Arc<HashMap<String, Arc<Value>>>;

/// The last round of kubelet summaries and when it was made.
#[derive(Default)]
pub struct MetricsCache {
    last: tokio::sync::Mutex<Option<(tokio::time::Instant, Summaries)>>,
}

async fn scrape(kubelet: &KubeletClient, node: &Value) -> Result<Value, String> {
    let hosts = crate::logs::preferred_addresses(node);
    if hosts.is_empty() {
        return Err(crate::logs::no_address_message(node));
    }
    let port = crate::logs::kubelet_port(node);
    let answer = tokio::time::timeout(SCRAPE_TIMEOUT, async {
        let answer = kubelet.get(&hosts, port, "/stats/summary").await?;
        let status = answer.status;
        let body = answer.read_prefix(MAX_SUMMARY).await;
        Ok::<_, String>((status, body))
    })
    .await
    .map_err(|_| format!("no answer within {SCRAPE_TIMEOUT:?}"))??;
    if answer.0 != 200 {
        return Err(format!(
            "kubelet answered {}: {}",
            answer.0,
            String::from_utf8_lossy(&answer.1)
        ));
    }
    serde_json::from_slice(&answer.1).map_err(|e| format!("decoding the summary: {e}"))
}

impl MetricsCache {
    /// The summaries of the Ready nodes, scraped now unless a round is at
    /// most [`CACHE_TTL`] old.
    async fn summaries(
        &self,
        registry: &Registry,
        kubelet: &KubeletClient,
    ) -> ApiResult<(Vec<Value>, Summaries)> {
        let nodes_info = api::resources::find("", "v1", "nodes").expect("in table");
        let nodes = registry.list_values(nodes_info, None).await?;
        let mut last = self.last.lock().await;
        if let Some((at, summaries)) = last.as_ref() {
            if at.elapsed() < CACHE_TTL {
                return Ok((nodes, summaries.clone()));
            }
        }
        let ready: Vec<&Value> = nodes.iter().filter(|n| node_ready(n)).collect();
        let answers = futures::future::join_all(ready.iter().map(|node| async move {
            let name = node
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let result = scrape(kubelet, node).await;
            (name, result)
        }))
        .await;
        let mut summaries = HashMap::new();
        for (name, result) in answers {
            match result {
                // A node whose address leads to another node's kubelet
                // (a shared host, a hollow node on the default port) must
                // not get that node's figures.
                Ok(summary) if !summary_is_for(&summary, &name) => {
                    let answered = summary.pointer("/node/nodeName").cloned();
                    tracing::warn!(node = %name, ?answered, "a kubelet for another node answered");
                }
                Ok(summary) => {
                    summaries.insert(name, Arc::new(summary));
                }
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "scraping the kubelet's summary")
                }
            }
        }
        let summaries = Arc::new(summaries);
        *last = Some((tokio::time::Instant::now(), summaries.clone()));
        Ok((nodes, summaries))
    }
}

fn json_response(value: &Value) -> Response {
    let mut response = (
        StatusCode::OK,
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn not_found(resource: &str, name: String) -> ApiError {
    ApiError::not_found(Subject {
        group: GROUP.into(),
        resource: resource.into(),
        name,
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": API_VERSION, "metadata": {}, "items": items})
}

fn selector(query: &Query) -> ApiResult<api::selector::LabelSelector> {
    match query.non_empty("labelSelector") {
        Some(s) => api::selector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}"))),
        None => Ok(api::selector::LabelSelector::everything()),
    }
}

fn label_match(selector: &api::selector::LabelSelector, obj: &Value) -> bool {
    match obj.pointer("/metadata/labels").and_then(Value::as_object) {
        Some(labels) => selector.matches_labels(labels),
        None => selector.matches_labels(&serde_json::Map::new()),
    }
}

/// Authorizes and serves a request [`parse_path`] recognized.
pub async fn handle(
    state: &crate::server::AppState,
    user: &crate::auth::UserInfo,
    target: Result<MetricsPath, String>,
    method: &Method,
    query: &Query,
) -> ApiResult<Response> {
    let target = target.map_err(|_| ApiError::NotFound {
        message: "the server could not find the requested resource".into(),
        subject: Default::default(),
    })?;
    let verb = if target.name.is_some() { "get" } else { "list" };
    state
        .authorizer
        .authorize(&crate::auth::Attributes {
            user,
            verb,
            group: GROUP,
            resource: target.resource,
            subresource: None,
            namespace: target.namespace.as_deref(),
            name: target.name.as_deref(),
            path: None,
        })
        .map_err(|reason| ApiError::Forbidden {
            message: format!(
                "{}.{GROUP} \"{}\" is forbidden: User \"{}\" cannot {verb} resource \"{}\" in API group \"{GROUP}\": {reason}",
                target.resource,
                target.name.as_deref().unwrap_or(""),
                user.name,
                target.resource
            ),
        })?;
    serve(
        &state.registry,
        &state.kubelet,
        &state.metrics,
        target,
        method,
        query,
    )
    .await
}

/// Serves a metrics request.
pub async fn serve(
    registry: &Registry,
    kubelet: &KubeletClient,
    cache: &MetricsCache,
    target: MetricsPath,
    method: &Method,
    query: &Query,
) -> ApiResult<Response> {
    if (method != Method::GET && method != Method::HEAD) || query.flag("watch") {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({}.{GROUP})",
            target.resource
        )));
    }
    let labels = selector(query)?;
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    if target.resource == "nodes" {
        let (nodes, summaries) = cache.summaries(registry, kubelet).await?;
        let metrics = |node: &Value| {
            let name = node.pointer("/metadata/name").and_then(Value::as_str)?;
            node_metrics(node, summaries.get(name)?, &now)
        };
        return match target.name {
            Some(name) => nodes
                .iter()
                .find(|n| n.pointer("/metadata/name").and_then(Value::as_str) == Some(&name))
                .and_then(metrics)
                .map(|m| json_response(&m))
                .ok_or_else(|| not_found("nodemetrics", name)),
            None => {
                let items = nodes
                    .iter()
                    .filter(|n| label_match(&labels, n))
                    .filter_map(metrics)
                    .collect();
                Ok(json_response(&list("NodeMetricsList", items)))
            }
        };
    }
    let pods_info = api::resources::find("", "v1", "pods").expect("in table");
    let namespace = target.namespace.as_deref();
    if let Some(name) = &target.name {
        // A pod that does not exist is the pod's own 404, as upstream.
        let pod = registry.get(pods_info, namespace, name).await?;
        let (_, summaries) = cache.summaries(registry, kubelet).await?;
        let entries = pod_entries(&summaries);
        let key = (namespace.unwrap_or_default().to_string(), name.clone());
        return entries
            .get(&key)
            .and_then(|stats| pod_metrics(&pod, stats, &now))
            .map(|m| json_response(&m))
            .ok_or_else(|| not_found("podmetrics", format!("{}/{name}", key.0)));
    }
    let pods = registry.list_values(pods_info, namespace).await?;
    let (_, summaries) = cache.summaries(registry, kubelet).await?;
    let entries = pod_entries(&summaries);
    let mut items: Vec<Value> = pods
        .iter()
        .filter(|p| label_match(&labels, p))
        .filter_map(|pod| {
            let ns = pod.pointer("/metadata/namespace")?.as_str()?.to_string();
            let name = pod.pointer("/metadata/name")?.as_str()?.to_string();
            pod_metrics(pod, entries.get(&(ns, name))?, &now)
        })
        .collect();
    items.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["metadata"]["namespace"].to_string(),
                v["metadata"]["name"].to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(json_response(&list("PodMetricsList", items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_canonical() {
        let cpu = [
            (0, "0"),
            (1, "1n"),
            (1_234_567, "1234567n"),
            (1_000, "1u"),
            (250_000_000, "250m"),
            (1_500_000_000, "1500m"),
            (2_000_000_000, "2"),
        ];
        for (n, want) in cpu {
            assert_eq!(cpu_quantity(n), want, "{n}");
        }
        let mem = [
            (0, "0"),
            (1000, "1000"),
            (1024, "1Ki"),
            (12_641_280, "12345Ki"),
            (1 << 20, "1Mi"),
            (3 << 30, "3Gi"),
            (1025, "1025"),
        ];
        for (n, want) in mem {
            assert_eq!(memory_quantity(n), want, "{n}");
        }
    }

    #[test]
    fn paths_name_nodes_and_pods() {
        let ok = |resource, ns: Option<&str>, name: Option<&str>| {
            Some(Ok(MetricsPath {
                resource,
                namespace: ns.map(Into::into),
                name: name.map(Into::into),
            }))
        };
        let cases = [
            (
                "/apis/metrics.k8s.io/v1beta1/nodes",
                ok("nodes", None, None),
            ),
            (
                "/apis/metrics.k8s.io/v1beta1/nodes/n1",
                ok("nodes", None, Some("n1")),
            ),
            ("/apis/metrics.k8s.io/v1beta1/pods", ok("pods", None, None)),
            (
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods",
                ok("pods", Some("default"), None),
            ),
            (
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web",
                ok("pods", Some("default"), Some("web")),
            ),
            ("/apis/metrics.k8s.io/v1beta1/", None),
            ("/apis/metrics.k8s.io/v1beta1", None),
            ("/apis/apps/v1/deployments", None),
            (
                "/apis/metrics.k8s.io/v1beta1/nodes/n1/status",
                Some(Err("nodes/n1/status".into())),
            ),
            (
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/services",
                Some(Err("namespaces/default/services".into())),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse_path(path), want, "{path}");
        }
    }

    fn summary() -> Value {
        json!({
            "node": {
                "nodeName": "n1",
                "cpu": {"time": "2026-01-01T00:00:10Z", "usageNanoCores": 250_000_000u64, "usageCoreNanoSeconds": 9u64},
                "memory": {"time": "2026-01-01T00:00:10Z", "workingSetBytes": 2u64 << 30},
            },
            "pods": [{
                "podRef": {"name": "web", "namespace": "default", "uid": "u1"},
                "containers": [
                    {"name": "busy", "cpu": {"time": "2026-01-01T00:00:09Z", "usageNanoCores": 1_000_000_000u64}, "memory": {"time": "t", "workingSetBytes": 1_048_576u64}},
                    {"name": "idle", "cpu": {"time": "2026-01-01T00:00:10Z", "usageNanoCores": 0u64}, "memory": {"time": "t", "workingSetBytes": 4096u64}},
                ],
            }],
        })
    }

    #[test]
    fn summaries_become_node_and_pod_metrics() {
        let node = json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}});
        let m = node_metrics(&node, &summary(), "NOW").unwrap();
        assert_eq!(m["kind"], "NodeMetrics");
        assert_eq!(m["metadata"]["labels"]["zone"], "a");
        assert_eq!(m["usage"], json!({"cpu": "250m", "memory": "2Gi"}));
        assert_eq!(m["timestamp"], "2026-01-01T00:00:10Z");
        assert_eq!(m["window"], WINDOW);

        let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web"}}});
        let summaries = HashMap::from([("n1".to_string(), Arc::new(summary()))]);
        let entries = pod_entries(&summaries);
        let stats = &entries[&("default".to_string(), "web".to_string())];
        let m = pod_metrics(&pod, stats, "NOW").unwrap();
        assert_eq!(m["metadata"]["labels"]["app"], "web");
        assert_eq!(m["timestamp"], "2026-01-01T00:00:10Z");
        assert_eq!(
            m["containers"],
            json!([
                {"name": "busy", "usage": {"cpu": "1", "memory": "1Mi"}},
                {"name": "idle", "usage": {"cpu": "0", "memory": "4Ki"}},
            ])
        );
        // A same-named pod with another UID is not this one.
        let other = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u2"}});
        assert!(pod_metrics(&other, stats, "NOW").is_none());
        // A container without a rate yet: no PodMetrics (metrics-server skips it).
        let mut partial = stats.clone();
        partial["containers"][1]["cpu"]
            .as_object_mut()
            .unwrap()
            .remove("usageNanoCores");
        assert!(pod_metrics(&pod, &partial, "NOW").is_none());
        // A node summary without memory: no NodeMetrics.
        let mut bare = summary();
        bare["node"].as_object_mut().unwrap().remove("memory");
        assert!(node_metrics(&node, &bare, "NOW").is_none());
    }

    #[test]
    fn a_summary_counts_only_for_its_own_node() {
        assert!(summary_is_for(&summary(), "n1"));
        assert!(!summary_is_for(&summary(), "hollow-7"));
        assert!(!summary_is_for(&json!({}), "n1"));
    }

    #[test]
    fn only_ready_nodes_are_scraped() {
        let with =
            |status: &str| json!({"status": {"conditions": [{"type": "Ready", "status": status}]}});
        assert!(node_ready(&with("True")));
        assert!(!node_ready(&with("Unknown")));
        assert!(!node_ready(&json!({"metadata": {}})));
    }

    #[test]
    fn discovery_lists_both_resources_read_only() {
        let list = resource_list();
        assert_eq!(list["groupVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(list["resources"][0]["kind"], "NodeMetrics");
        assert_eq!(list["resources"][1]["namespaced"], true);
        let item = aggregated_item();
        assert_eq!(item["metadata"]["name"], GROUP);
        assert_eq!(item["versions"][0]["resources"][1]["scope"], "Namespaced");
        assert_eq!(group_json()["preferredVersion"]["version"], VERSION);
    }
}
