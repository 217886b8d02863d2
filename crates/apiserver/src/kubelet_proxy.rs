//! `pods/exec`, `pods/attach`, `pods/portforward` and `nodes/{name}/proxy`:
//! requests relayed to the kubelet of the pod's node, the API server
//! authenticating as itself (its kubelet-client certificate), as upstream's
//! `UpgradeAwareHandler` does.
//!
//! - The pod is validated first ([`pod_target`]): it must exist (404), the
//!   container is chosen as for logs ([`crate::logs::choose_container`];
//!   400), and it must be on a node and not finished (400).
//! - The request goes to the kubelet (`/exec/{ns}/{pod}/{container}`,
//!   `/attach/...`, `/portForward/{ns}/{pod}`, or the node proxy's path)
//!   with its query and end-to-end headers, never the client's
//!   credentials. An upgrade (WebSocket or SPDY) is answered with the
//!   kubelet's 101 and the two upgraded connections are spliced; anything
//!   else is relayed as the kubelet answered it.
//! - A kubelet that cannot be reached is a 503 `error dialing backend`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::codec::Query;
use crate::error::{ApiError, ApiResult};
use crate::kubelet_client::KubeletClient;
use crate::logs::{choose_container, kubelet_port, no_address_message, preferred_addresses};
use crate::registry::Registry;

/// Hop-by-hop headers (RFC 7230 §6.1) and credentials: never forwarded.
/// `Connection` and `Upgrade` are put back for upgrades.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "cookie",
    "impersonate-user",
    "impersonate-group",
    "impersonate-uid",
];

/// The headers sent on: end-to-end ones, plus `Connection: Upgrade` and
/// `Upgrade` when the client asks for an upgrade.
pub fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        if DROPPED.contains(&n) || n.starts_with("impersonate-extra-") {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(up) = headers.get("upgrade") {
        out.insert(
            HeaderName::from_static("connection"),
            "Upgrade".parse().expect("static"),
        );
        out.insert(HeaderName::from_static("upgrade"), up.clone());
    }
    out
}

/// The kubelet path of a pod subresource: `/exec/{ns}/{pod}/{container}`,
/// `/attach/...` or `/portForward/{ns}/{pod}`.
pub fn kubelet_path(subresource: &str, namespace: &str, pod: &str, container: &str) -> String {
    match subresource {
        "portforward" => format!("/portForward/{namespace}/{pod}"),
        other => format!("/{other}/{namespace}/{pod}/{container}"),
    }
}

/// The query sent to the kubelet: the client's, less `container` (it is in
/// the path).
pub fn kubelet_query(raw: Option<&str>) -> String {
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("container="))
        .collect::<Vec<_>>()
        .join("&")
}

/// Validates a pod for a streaming subresource; returns the kubelet's
/// addresses, port and the container.
pub async fn pod_target(
    registry: &Registry,
    namespace: &str,
    name: &str,
    subresource: &str,
    query: &Query,
) -> ApiResult<(Vec<String>, u16, String)> {
    let pods = api::resources::find("", "v1", "pods").expect("in table");
    let pod = registry.get(pods, Some(namespace), name).await?;
    let container = if subresource == "portforward" {
        String::new()
    } else {
        choose_container(&pod, query.get("container").unwrap_or(""))?
    };
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if phase == "Succeeded" || phase == "Failed" {
        let verb = if subresource == "portforward" {
            "port-forward to"
        } else if subresource == "attach" {
            "attach to"
        } else {
            "exec into"
        };
        return Err(ApiError::bad_request(format!(
            "cannot {verb} a container in a completed pod; current phase is {phase}"
        )));
    }
    let (hosts, port) = node_target(registry, node_name).await?;
    Ok((hosts, port, container))
}

async fn node_target(registry: &Registry, node_name: &str) -> ApiResult<(Vec<String>, u16)> {
    let nodes = api::resources::find("", "v1", "nodes").expect("in table");
    let node = registry.get(nodes, None, node_name).await?;
    let hosts = preferred_addresses(&node);
    if hosts.is_empty() {
        return Err(crate::logs::unknown_error(no_address_message(&node)));
    }
    Ok((hosts, kubelet_port(&node)))
}

/// Serves `pods/{name}/{exec|attach|portforward}`.
pub async fn pod_subresource(
    registry: &Registry,
    kubelet: &KubeletClient,
    namespace: &str,
    name: &str,
    subresource: &str,
    req: Request,
) -> ApiResult<Response> {
    let query = Query::parse(req.uri().query());
    let (hosts, port, container) =
        pod_target(registry, namespace, name, subresource, &query).await?;
    let mut path = kubelet_path(subresource, namespace, name, &container);
    let q = kubelet_query(req.uri().query());
    if !q.is_empty() {
        path.push('?');
        path.push_str(&q);
    }
    forward(kubelet, &hosts, port, path, req).await
}

/// `/api/v1/nodes/{name}/proxy[/{path}]`: the node's name and the kubelet
/// path (at least `/`).
pub fn node_proxy_target(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/api/v1/nodes/")?;
    let (node, rest) = rest.split_once('/')?;
    let tail = rest.strip_prefix("proxy")?;
    if node.is_empty() || !(tail.is_empty() || tail.starts_with('/')) {
        return None;
    }
    let tail = if tail.is_empty() { "/" } else { tail };
    Some((node.to_string(), tail.to_string()))
}

/// Serves `nodes/{name}/proxy/{path}`, any method, upgrades too.
pub async fn node_proxy(
    registry: &Registry,
    kubelet: &KubeletClient,
    node: &str,
    kubelet_path: &str,
    req: Request,
) -> ApiResult<Response> {
    let (hosts, port) = node_target(registry, node).await?;
    let mut path = kubelet_path.to_string();
    if let Some(q) = req.uri().query().filter(|q| !q.is_empty()) {
        path.push('?');
        path.push_str(q);
    }
    forward(kubelet, &hosts, port, path, req).await
}

/// Sends `req` to the kubelet at `path_and_query` and relays its answer;
/// an upgrade is spliced.
async fn forward(
    kubelet: &KubeletClient,
    hosts: &[String],
    port: u16,
    path_and_query: String,
    mut req: Request,
) -> ApiResult<Response> {
    let method = req.method().clone();
    let (tls, authority) = kubelet
        .connect(hosts, port, method.as_str(), &path_and_query)
        .await
        .map_err(dial_failed)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(tls))
            .await
            .map_err(|e| dial_failed(e.to_string()))?;
    // Runs until the kubelet's answer is read, or hands the connection
    // over to the upgrade.
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    let upgrading = req.headers().contains_key("upgrade");
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
    let mut out = hyper::Request::builder()
        .method(method)
        .uri(&path_and_query)
        .body(if upgrading {
            Body::empty()
        } else {
            std::mem::take(req.body_mut())
        })
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    *out.headers_mut() = forwarded_headers(req.headers());
    out.headers_mut().insert(
        HeaderName::from_static("host"),
        authority
            .parse()
            .map_err(|_| ApiError::internal("the kubelet address is not a valid Host"))?,
    );
    let mut answer = sender
        .send_request(out)
        .await
        .map_err(|e| dial_failed(e.to_string()))?;
    let status = answer.status();
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers() {
        let n = name.as_str();
        let keep =
            status == StatusCode::SWITCHING_PROTOCOLS && (n == "connection" || n == "upgrade");
        if keep || !DROPPED.contains(&n) {
            response = response.header(name, value);
        }
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::internal("the kubelet upgraded a plain request"));
        };
        let kubelet_upgrade = hyper::upgrade::on(&mut answer);
        tokio::spawn(async move {
            let (Ok(client), Ok(node)) = tokio::join!(client_upgrade, kubelet_upgrade) else {
                tracing::debug!("a proxied upgrade failed");
                return;
            };
            let (mut client, mut node) = (TokioIo::new(client), TokioIo::new(node));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut node).await;
        });
        return response
            .body(Body::empty())
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    response
        .body(Body::new(answer.into_body()))
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn dial_failed(message: String) -> ApiError {
    ApiError::Relayed {
        code: StatusCode::SERVICE_UNAVAILABLE,
        reason: "ServiceUnavailable",
        message: format!("error dialing backend: {message}"),
        details: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_paths_and_queries() {
        assert_eq!(
            kubelet_path("exec", "default", "web", "app"),
            "/exec/default/web/app"
        );
        assert_eq!(kubelet_path("attach", "ns", "p", "c"), "/attach/ns/p/c");
        assert_eq!(
            kubelet_path("portforward", "ns", "p", ""),
            "/portForward/ns/p"
        );
        assert_eq!(
            kubelet_query(Some("command=sh&container=app&stdout=true")),
            "command=sh&stdout=true"
        );
        assert_eq!(kubelet_query(None), "");
    }

    #[test]
    fn node_proxy_paths() {
        let t = |p: &str| node_proxy_target(p);
        assert_eq!(
            t("/api/v1/nodes/n1/proxy/healthz"),
            Some(("n1".into(), "/healthz".into()))
        );
        assert_eq!(t("/api/v1/nodes/n1/proxy"), Some(("n1".into(), "/".into())));
        assert_eq!(
            t("/api/v1/nodes/n1/proxy/containerLogs/a/b/c"),
            Some(("n1".into(), "/containerLogs/a/b/c".into()))
        );
        assert_eq!(t("/api/v1/nodes/n1/proxyx"), None);
        assert_eq!(t("/api/v1/nodes/n1/status"), None);
        assert_eq!(t("/api/v1/nodes/n1"), None);
    }

    #[test]
    fn credentials_and_hop_by_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer secret"),
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("impersonate-user", "admin"),
            ("impersonate-extra-scopes", "x"),
        ] {
            h.append(k, v.parse().unwrap());
        }
        h.append(
            "x-stream-protocol-version",
            "v3.channel.k8s.io".parse().unwrap(),
        );
        let out = forwarded_headers(&h);
        assert!(out.get("authorization").is_none());
        assert!(out.get("impersonate-user").is_none());
        assert!(out.get("impersonate-extra-scopes").is_none());
        assert_eq!(out.get("upgrade").unwrap(), "SPDY/3.1");
        assert_eq!(out.get("connection").unwrap(), "Upgrade");
        assert_eq!(out.get_all("x-stream-protocol-version").iter().count(), 2);
    }
}
