//! The kubelet's streaming API (upstream's `pkg/kubelet/server` exec,
//! attach and port-forward handlers with `kubelet/cri/streaming`), which
//! the API server proxies `pods/exec`, `pods/attach` and `pods/portforward`
//! to:
//! - `GET|POST /exec/{namespace}/{pod}/{container}?command=..&command=..&stdin=1&stdout=1&stderr=1&tty=1`
//! - `GET|POST /attach/{namespace}/{pod}/{container}?stdin=..&stdout=..`
//! - `GET|POST /portForward/{namespace}/{pod}`
//!
//! Each is an HTTP/1.1 upgrade, either to WebSocket ([`websocket`]; exec
//! and attach with `v5.channel.k8s.io`/`v4.channel.k8s.io`, port-forward
//! with SPDY tunnelled in binary messages) or to SPDY/3.1 ([`spdy`]; exec
//! and attach with `v4.channel.k8s.io`, port-forward with
//! `portforward.k8s.io`). [`remotecommand`] and [`portforward`] run the
//! sessions; the runtime starts the process
//! ([`crate::runtime::ContainerRuntime::exec_stream`]): either a local one,
//! or a URL on a CRI runtime's streaming server, which [`bridge`] connects
//! to as a SPDY client and presents as a local process, so the session
//! code is the same for both.
//!
//! Errors found before the upgrade (bad query, no such pod or container,
//! no protocol in common) are plain HTTP errors; errors starting the
//! command go on the session's error channel, as upstream.

pub mod bridge;
pub mod portforward;
pub mod remotecommand;
/// SPDY framing and connections (shared with `tug`).
pub use spdy;
pub mod websocket;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;

use crate::runtime::streaming::{LocalStream, StreamRequest, StreamTarget};
use crate::runtime::{
    ContainerFilter, ContainerRuntime, ContainerState, PodSandbox, PodSandboxFilter, SandboxState,
    LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE,
};

/// exec/attach over SPDY: only v4 (the exit-code Status) is served.
pub const SPDY_EXEC_PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];
/// exec/attach over WebSocket.
pub const WS_EXEC_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// port-forward's SPDY tunnelled through a WebSocket (kubectl 1.31+).
pub const WS_PORT_FORWARD_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// WebSocket port-forward with a channel per port (kube-rs, the Python
/// client): upstream's `v4.channel.k8s.io` and the older unversioned name.
pub const WS_CHANNEL_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "channel.k8s.io"];

/// The routes, for the kubelet's server.
pub fn routes(runtime: Arc<dyn ContainerRuntime>) -> axum::Router {
    axum::Router::new()
        .route("/exec/{namespace}/{pod}/{container}", get(exec).post(exec))
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(attach).post(attach),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(port_forward).post(port_forward),
        )
        .with_state(runtime)
}

/// The query of an exec or attach (upstream's `PodExecOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamQuery {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
pub fn url_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("invalid escape in {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8"))
}

fn parse_flag(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "" | "1" | "true" | "True" | "TRUE" => Ok(true),
        "0" | "false" | "False" | "FALSE" => Ok(false),
        _ => Err(format!("{name}: invalid boolean {v:?}")),
    }
}

/// Parses and validates an exec/attach query as upstream's kubelet does:
/// at least one stream; a terminal has no separate stderr.
pub fn parse_query(raw: &str, exec: bool) -> Result<StreamQuery, String> {
    let mut q = StreamQuery::default();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (url_decode(k)?, url_decode(v)?);
        match k.as_str() {
            "command" => q.command.push(v),
            "stdin" | "input" => q.stdin = parse_flag(&k, &v)?,
            "stdout" | "output" => q.stdout = parse_flag(&k, &v)?,
            "stderr" | "error" => q.stderr = parse_flag(&k, &v)?,
            "tty" => q.tty = parse_flag(&k, &v)?,
            _ => {}
        }
    }
    if !(q.stdin || q.stdout || q.stderr) {
        return Err("you must specify at least 1 of stdin, stdout, stderr".into());
    }
    if exec && q.command.is_empty() {
        return Err("you must specify at least one command for the container".into());
    }
    if q.tty {
        // Upstream drops stderr with a terminal: the terminal merges them.
        q.stderr = false;
    }
    Ok(q)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// The pod's sandbox (the newest ready one, else the newest), which must
/// exist: its id.
async fn pod_sandbox(
    runtime: &dyn ContainerRuntime,
    namespace: &str,
    pod: &str,
) -> Result<String, Response> {
    let labels = BTreeMap::from([
        (LABEL_POD_NAMESPACE.to_string(), namespace.to_string()),
        (LABEL_POD_NAME.to_string(), pod.to_string()),
    ]);
    let mut sandboxes = runtime
        .list_pod_sandbox(&PodSandboxFilter {
            label_selector: labels,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    pick_sandbox(&mut sandboxes)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("pod {pod:?} not found")))
}

/// The sandbox a pod's streams go to: the newest ready one (a pod whose
/// sandbox died has a new one beside the old), else the newest.
pub fn pick_sandbox(sandboxes: &mut [PodSandbox]) -> Option<String> {
    sandboxes.sort_by_key(|s| (s.state == SandboxState::Ready, s.created_at));
    sandboxes.last().map(|s| s.id.clone())
}

fn internal(e: crate::runtime::RuntimeError) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The pod's sandbox must exist; the newest running container of that
/// name is the one.
async fn running_container(
    runtime: &dyn ContainerRuntime,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<String, Response> {
    pod_sandbox(runtime, namespace, pod).await?;
    let labels = BTreeMap::from([
        (LABEL_POD_NAMESPACE.to_string(), namespace.to_string()),
        (LABEL_POD_NAME.to_string(), pod.to_string()),
        (LABEL_CONTAINER_NAME.to_string(), container.to_string()),
    ]);
    let mut containers = runtime
        .list_containers(&ContainerFilter {
            label_selector: labels,
            state: Some(ContainerState::Running),
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    containers.first().map(|c| c.id.clone()).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("container {container:?} in pod {pod:?} is not running"),
        )
    })
}

fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

/// Which upgrade the client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    WebSocket,
    Spdy,
}

/// The upgrade the request asks for, from `Upgrade:`.
pub fn requested_upgrade(headers: &HeaderMap) -> Option<Upgrade> {
    let up = headers.get("upgrade")?.to_str().ok()?.to_ascii_lowercase();
    if up.contains("websocket") {
        Some(Upgrade::WebSocket)
    } else if up.starts_with("spdy/3.1") {
        Some(Upgrade::Spdy)
    } else {
        None
    }
}

/// The 101 response for `upgrade` with `protocol`, or the HTTP error.
fn switching(
    req: &Request,
    upgrade: Upgrade,
    supported: &[&str],
) -> Result<Response, (StatusCode, String)> {
    let headers = req.headers();
    let (offered_header, upgrade_name) = match upgrade {
        Upgrade::WebSocket => ("sec-websocket-protocol", "websocket"),
        Upgrade::Spdy => ("x-stream-protocol-version", "SPDY/3.1"),
    };
    let offered = header_values(headers, offered_header);
    let Some(protocol) = websocket::negotiate(&offered, supported) else {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {supported:?}"
            ),
        ));
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert("connection", HeaderValue::from_static("Upgrade"));
    h.insert("upgrade", HeaderValue::from_static(upgrade_name));
    let proto =
        HeaderValue::from_str(protocol).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    match upgrade {
        Upgrade::WebSocket => {
            let key = headers
                .get("sec-websocket-key")
                .and_then(|k| k.to_str().ok())
                .ok_or_else(|| {
                    (
                        StatusCode::BAD_REQUEST,
                        "missing Sec-WebSocket-Key".to_string(),
                    )
                })?;
            let accept = HeaderValue::from_str(&websocket::accept_key(key))
                .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
            h.insert("sec-websocket-accept", accept);
            h.insert("sec-websocket-protocol", proto);
        }
        Upgrade::Spdy => {
            h.insert("x-stream-protocol-version", proto);
        }
    }
    Ok(resp)
}

/// Upgrades the request, then runs `session` on the upgraded connection.
fn upgrade_then<F, Fut>(mut req: Request, resp: Response, session: F) -> Response
where
    F: FnOnce(hyper::upgrade::Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on.await {
            Ok(upgraded) => session(upgraded).await,
            Err(e) => tracing::debug!(error = %e, "upgrading a streaming request"),
        }
    });
    resp
}

async fn exec(
    State(runtime): State<Arc<dyn ContainerRuntime>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    remote_command(runtime, namespace, pod, container, req, true).await
}

async fn attach(
    State(runtime): State<Arc<dyn ContainerRuntime>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    remote_command(runtime, namespace, pod, container, req, false).await
}

async fn remote_command(
    runtime: Arc<dyn ContainerRuntime>,
    namespace: String,
    pod: String,
    container: String,
    req: Request,
    exec: bool,
) -> Response {
    let q = match parse_query(req.uri().query().unwrap_or(""), exec) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let id = match running_container(runtime.as_ref(), &namespace, &pod, &container).await {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    let Some(upgrade) = requested_upgrade(req.headers()) else {
        return error(StatusCode::BAD_REQUEST, "Upgrade request required");
    };
    let supported = match upgrade {
        Upgrade::WebSocket => WS_EXEC_PROTOCOLS,
        Upgrade::Spdy => SPDY_EXEC_PROTOCOLS,
    };
    let resp = match switching(&req, upgrade, supported) {
        Ok(r) => r,
        Err((status, message)) => return error(status, message),
    };
    let sreq = StreamRequest {
        container_id: id,
        cmd: q.command,
        tty: q.tty,
        stdin: q.stdin,
        stdout: q.stdout,
        stderr: q.stderr,
    };
    let start = {
        let sreq = sreq.clone();
        async move {
            let target = if exec {
                runtime.exec_stream(&sreq).await
            } else {
                runtime.attach_stream(&sreq).await
            };
            match target.map_err(|e| e.to_string())? {
                StreamTarget::Local(l) => Ok::<LocalStream, String>(l),
                StreamTarget::Url(url) => bridge::connect(&url, &sreq).await,
            }
        }
    };
    upgrade_then(req, resp, move |upgraded| async move {
        let io = TokioIo::new(upgraded);
        match upgrade {
            Upgrade::WebSocket => {
                let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    io,
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                remotecommand::serve_websocket(socket, start).await;
            }
            Upgrade::Spdy => {
                remotecommand::serve_spdy(spdy::Connection::serve(io), sreq, start).await;
            }
        }
    })
}

async fn port_forward(
    State(runtime): State<Arc<dyn ContainerRuntime>>,
    Path((namespace, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    let sandbox = match pod_sandbox(runtime.as_ref(), &namespace, &pod).await {
        Ok(id) => id,
        Err(resp) => return resp,
    };
    // The runtime must know where the pod's ports are before the upgrade,
    // so that a sandbox it cannot reach fails the request as a whole; each
    // forwarded connection is then dialed by the runtime
    // (`port_forward_dial`: from inside the pod's network namespace for a
    // CRI runtime).
    if let Err(e) = runtime.port_forward_address(&sandbox).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let Some(upgrade) = requested_upgrade(req.headers()) else {
        return error(StatusCode::BAD_REQUEST, "Upgrade request required");
    };
    let supported: &[&str] = match upgrade {
        Upgrade::WebSocket => &[
            WS_PORT_FORWARD_PROTOCOL,
            WS_CHANNEL_PROTOCOLS[0],
            WS_CHANNEL_PROTOCOLS[1],
        ],
        Upgrade::Spdy => &[PORT_FORWARD_PROTOCOL],
    };
    let resp = match switching(&req, upgrade, supported) {
        Ok(r) => r,
        Err((status, message)) => return error(status, message),
    };
    let channels = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| WS_CHANNEL_PROTOCOLS.contains(&p));
    // Channel port-forward names its ports up front, in the query.
    let ports = if channels {
        match portforward::websocket_ports(req.uri().query()) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    } else {
        Vec::new()
    };
    let name = format!("{namespace}/{pod}");
    upgrade_then(req, resp, move |upgraded| async move {
        let io = TokioIo::new(upgraded);
        let conn = match upgrade {
            Upgrade::WebSocket => {
                let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    io,
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                if channels {
                    portforward::serve_websocket(socket, runtime, sandbox, name, ports).await;
                    return;
                }
                spdy::Connection::serve(websocket::tunnel(socket))
            }
            Upgrade::Spdy => spdy::Connection::serve(io),
        };
        portforward::serve(conn, runtime, sandbox, name).await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_parsed_and_validated() {
        let ok = |raw: &str, exec: bool| parse_query(raw, exec).unwrap();
        assert_eq!(
            ok(
                "command=sh&command=-c&command=echo+hi%21&stdout=1&stderr=true",
                true
            ),
            StreamQuery {
                command: vec!["sh".into(), "-c".into(), "echo hi!".into()],
                stdout: true,
                stderr: true,
                ..Default::default()
            }
        );
        // A terminal has no separate stderr.
        let t = ok("command=sh&stdin=1&stdout=1&stderr=1&tty=1", true);
        assert!(t.tty && t.stdin && t.stdout && !t.stderr);
        assert_eq!(ok("stdout=1", false).command, Vec::<String>::new());
        for (raw, exec, want) in [
            ("command=ls", true, "at least 1 of stdin"),
            ("stdout=1", true, "at least one command"),
            ("command=ls&stdout=maybe", true, "invalid boolean"),
            ("command=%zz&stdout=1", true, "invalid escape"),
        ] {
            let e = parse_query(raw, exec).unwrap_err();
            assert!(e.contains(want), "{raw}: {e}");
        }
    }

    #[test]
    fn upgrades_answer_101_with_the_negotiated_protocol_or_403() {
        fn request(pairs: &[(&'static str, &str)]) -> Request {
            let mut r = Request::new(Body::empty());
            for (k, v) in pairs {
                r.headers_mut()
                    .append(*k, HeaderValue::from_str(v).unwrap());
            }
            r
        }
        let spdy = request(&[
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("x-stream-protocol-version", "v3.channel.k8s.io"),
        ]);
        let r = switching(&spdy, Upgrade::Spdy, SPDY_EXEC_PROTOCOLS).unwrap();
        assert_eq!(r.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(r.headers()["upgrade"], "SPDY/3.1");
        assert_eq!(
            r.headers()["x-stream-protocol-version"],
            "v4.channel.k8s.io"
        );

        let ws = request(&[
            ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
        ]);
        let r = switching(&ws, Upgrade::WebSocket, WS_EXEC_PROTOCOLS).unwrap();
        assert_eq!(r.headers()["sec-websocket-protocol"], "v5.channel.k8s.io");
        assert_eq!(
            r.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );

        let old = request(&[
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v2.channel.k8s.io"),
        ]);
        let (status, message) = switching(&old, Upgrade::Spdy, SPDY_EXEC_PROTOCOLS).unwrap_err();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            message.contains("unable to negotiate protocol"),
            "{message}"
        );
        let keyless = request(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
        ]);
        let (status, _) = switching(&keyless, Upgrade::WebSocket, WS_EXEC_PROTOCOLS).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn the_newest_ready_sandbox_is_picked() {
        let sandbox = |id: &str, ready: bool, second: i64| PodSandbox {
            id: id.into(),
            metadata: Default::default(),
            state: if ready {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            created_at: k8s_openapi::jiff::Timestamp::from_second(second).unwrap(),
            labels: Default::default(),
        };
        let cases: Vec<(Vec<PodSandbox>, Option<&str>)> = vec![
            (vec![], None),
            (vec![sandbox("a", false, 1)], Some("a")),
            (
                vec![sandbox("old", true, 1), sandbox("dead", false, 2)],
                Some("old"),
            ),
            (
                vec![sandbox("new", true, 3), sandbox("old", true, 1)],
                Some("new"),
            ),
            (
                vec![sandbox("a", false, 1), sandbox("b", false, 2)],
                Some("b"),
            ),
        ];
        for (mut list, want) in cases {
            assert_eq!(pick_sandbox(&mut list).as_deref(), want);
        }
    }

    #[test]
    fn upgrades_are_recognized() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert("upgrade", HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(requested_upgrade(&h("websocket")), Some(Upgrade::WebSocket));
        assert_eq!(requested_upgrade(&h("SPDY/3.1")), Some(Upgrade::Spdy));
        assert_eq!(requested_upgrade(&h("h2c")), None);
        assert_eq!(requested_upgrade(&HeaderMap::new()), None);
    }
}
