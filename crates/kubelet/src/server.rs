//! The kubelet's HTTPS API (upstream's `pkg/kubelet/server`), the part
//! `kubectl logs` needs:
//! - TLS with a serving certificate self-signed at start for the node name
//!   and node IP (upstream self-signs when no `--tls-cert-file` is given; the
//!   API server does not verify it by default);
//! - client certificates signed by the cluster CA (the kubeconfig's
//!   `certificate-authority-data`); a request without one gets 401. Any such
//!   certificate may read (upstream asks a SubjectAccessReview instead);
//! - `GET /healthz` and `GET /containerLogs/{namespace}/{pod}/{container}`
//!   with upstream's query parameters (`follow`, `tailLines`,
//!   `sinceSeconds`, `sinceTime`, `timestamps`, `previous`, `limitBytes`,
//!   `stream`);
//! - `GET /stats/summary` ([`crate::stats`]), `GET /metrics` and
//!   `GET /metrics/resource` ([`crate::metrics`]).
//!
//! Logs are CRI log files (`<RFC3339Nano> <stream> <P|F> <content>`): the
//! pure parsing and selection ([`parse_cri_line`], [`render_logs`]) is
//! separate from the file reading and following.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

use crate::runtime::{
    ContainerFilter, ContainerRuntime, ContainerState, PodSandboxFilter, LABEL_CONTAINER_NAME,
    LABEL_POD_NAME, LABEL_POD_NAMESPACE,
};

/// Where and how the server listens.
pub struct ServerConfig {
    pub address: SocketAddr,
    /// Names and IPs the serving certificate is for.
    pub node_name: String,
    pub node_ips: Vec<String>,
    /// DER certificates of the CAs whose client certificates are accepted.
    pub client_ca: Vec<Vec<u8>>,
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The pods' statuses, so that logs of a container that has not
    /// started yet get upstream's "waiting to start" error.
    pub pod_statuses: Option<crate::status_manager::StatusManager>,
}

/// The status manager, for the handlers (an extension, beside the
/// runtime as state).
#[derive(Clone)]
struct PodStatuses(Option<crate::status_manager::StatusManager>);

/// Upstream's `validateContainerLogStatus` for the current (not previous)
/// log: why container `container` of pod `pod` has no log to serve yet,
/// if its status says it is waiting to start and has never run.
pub fn waiting_to_start(
    status: &k8s_openapi::api::core::v1::PodStatus,
    pod: &str,
    container: &str,
) -> Option<String> {
    let c = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find(|c| c.name == container)?;
    let waiting = c.state.as_ref()?.waiting.as_ref()?;
    // A restarting container still has its last run's log.
    if c.last_state
        .as_ref()
        .is_some_and(|l| l.terminated.is_some())
    {
        return None;
    }
    Some(match waiting.reason.as_deref().filter(|r| !r.is_empty()) {
        Some(reason) => {
            format!("container {container:?} in pod {pod:?} is waiting to start: {reason}")
        }
        None => format!("container {container:?} in pod {pod:?} is waiting to start - no logs yet"),
    })
}

/// Binds the listener and returns the bound address and the serving task.
pub async fn start(
    config: ServerConfig,
) -> anyhow::Result<(SocketAddr, impl std::future::Future<Output = ()> + Send)> {
    let tls = tls_config(&config)?;
    let listener = tokio::net::TcpListener::bind(config.address)
        .await
        .with_context(|| format!("binding {} (--port 0 disables it)", config.address))?;
    let bound = listener.local_addr()?;
    if config.client_ca.is_empty() {
        tracing::warn!("no cluster CA in the kubeconfig: every kubelet API request gets 401");
    }
    tracing::info!(address = %bound, "kubelet API serving HTTPS");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let stats = crate::stats::StatsProvider::start(config.runtime.clone(), &config.node_name);
    let app = router(config.runtime.clone())
        .merge(crate::stats::routes(stats.clone()))
        .merge(crate::metrics::routes(stats, &config.node_name))
        .layer(axum::Extension(PodStatuses(config.pod_statuses.clone())));
    Ok((bound, serve(listener, acceptor, app)))
}

fn tls_config(config: &ServerConfig) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut names = vec![config.node_name.clone()];
    names.extend(config.node_ips.iter().cloned());
    let cert = rcgen::generate_simple_self_signed(names)
        .context("self-signing the kubelet serving certificate")?;
    let mut roots = rustls::RootCertStore::empty();
    for der in &config.client_ca {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .context("adding the client CA")?;
    }
    // A client without a certificate still completes the handshake so that
    // it gets upstream's 401 instead of a TLS alert.
    let verifier = if roots.is_empty() {
        rustls::server::WebPkiClientVerifier::no_client_auth()
    } else {
        rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")?
    };
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .context("the serving certificate")?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a kubelet API connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "kubelet API TLS handshake");
                    return;
                }
            };
            // Only a CA-verified certificate gets here (the verifier rejects
            // others in the handshake); none at all means anonymous.
            let authenticated = tls
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let service = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    if !authenticated {
                        return Ok::<_, std::convert::Infallible>(
                            (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
                        );
                    }
                    let req = req.map(Body::new);
                    Ok(tower::ServiceExt::oneshot(app, req).await.into_response())
                }
            });
            let io = hyper_util::rt::TokioIo::new(tls);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let service = hyper_util::service::TowerToHyperService::new(service);
            if let Err(e) = builder.serve_connection_with_upgrades(io, service).await {
                tracing::debug!(%peer, error = %e, "kubelet API connection");
            }
        });
    }
}

fn router(runtime: Arc<dyn ContainerRuntime>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(runtime.clone())
        .merge(crate::streaming::routes(runtime))
}

/// Upstream's `v1.PodLogOptions` query parameters, as strings so that a bad
/// value gets a 400 naming it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogQuery {
    follow: Option<String>,
    previous: Option<String>,
    timestamps: Option<String>,
    tail_lines: Option<String>,
    since_seconds: Option<String>,
    since_time: Option<String>,
    limit_bytes: Option<String>,
    /// `All`, `Stdout` or `Stderr` (1.32's `PodLogsQuerySplitStreams`).
    stream: Option<String>,
}

/// What to select from a log, parsed from [`LogQuery`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<u64>,
    /// Only this CRI stream (`stdout` or `stderr`); `None`: both.
    pub stream: Option<&'static str>,
}

fn parse_bool(name: &str, v: &Option<String>) -> Result<bool, String> {
    match v.as_deref() {
        None | Some("") => Ok(false),
        Some("true") | Some("1") | Some("True") | Some("TRUE") => Ok(true),
        Some("false") | Some("0") | Some("False") | Some("FALSE") => Ok(false),
        Some(other) => Err(format!("{name}: invalid boolean {other:?}")),
    }
}

fn parse_int(name: &str, v: &Option<String>) -> Result<Option<i64>, String> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>()
                .map_err(|_| format!("{name}: invalid integer {s:?}"))
        })
        .transpose()
}

/// Validates the query as upstream's `ValidatePodLogOptions` does.
pub fn log_options(q: &LogQuery, now: Timestamp) -> Result<LogOptions, String> {
    let tail = parse_int("tailLines", &q.tail_lines)?;
    let since_seconds = parse_int("sinceSeconds", &q.since_seconds)?;
    let limit = parse_int("limitBytes", &q.limit_bytes)?;
    if tail.is_some_and(|t| t < 0) {
        return Err("tailLines: must be greater than or equal to 0".into());
    }
    if limit.is_some_and(|l| l < 1) {
        return Err("limitBytes: must be greater than 0".into());
    }
    if since_seconds.is_some_and(|s| s < 1) {
        return Err("sinceSeconds: must be greater than 0".into());
    }
    let since_time = match q.since_time.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<Timestamp>()
                .map_err(|e| format!("sinceTime: invalid RFC3339 time {s:?}: {e}"))?,
        ),
        None => None,
    };
    if since_seconds.is_some() && since_time.is_some() {
        return Err("at most one of sinceTime or sinceSeconds may be specified".into());
    }
    let stream = match q.stream.as_deref() {
        None | Some("") | Some("All") => None,
        Some("Stdout") => Some("stdout"),
        Some("Stderr") => Some("stderr"),
        Some(other) => {
            return Err(format!(
                "stream: Unsupported value: {other:?}: supported values: \"All\", \"Stderr\", \"Stdout\""
            ))
        }
    };
    if stream.is_some() && tail.is_some() {
        return Err(
            "stream: Forbidden: `tailLines` and specific `stream` are mutually exclusive for now"
                .into(),
        );
    }
    let since = match since_seconds {
        Some(s) => Some(
            now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(s))
                .unwrap_or(Timestamp::MIN),
        ),
        None => since_time,
    };
    Ok(LogOptions {
        follow: parse_bool("follow", &q.follow)?,
        previous: parse_bool("previous", &q.previous)?,
        timestamps: parse_bool("timestamps", &q.timestamps)?,
        tail_lines: tail.map(|t| t as usize),
        since,
        limit_bytes: limit.map(|l| l as u64),
        stream,
    })
}

/// One CRI log line: `<timestamp> <stream> <P|F> <content>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLine<'a> {
    pub timestamp: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one line (without its newline). Older runtimes wrote no tag: a
/// line without `P`/`F` is a full line.
pub fn parse_cri_line(line: &[u8]) -> Option<CriLine<'_>> {
    let (ts, rest) = split_space(line)?;
    let (stream, rest) = split_space(rest)?;
    let timestamp = std::str::from_utf8(ts).ok()?;
    let stream = std::str::from_utf8(stream).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let (partial, content) = match split_space(rest) {
        Some((b"P", c)) => (true, c),
        Some((b"F", c)) => (false, c),
        _ if rest == b"P" => (true, &b""[..]),
        _ if rest == b"F" => (false, &b""[..]),
        _ => (false, rest),
    };
    Some(CriLine {
        timestamp,
        stream,
        partial,
        content,
    })
}

fn split_space(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&c| c == b' ')?;
    Some((&b[..i], &b[i + 1..]))
}

/// A whole log line: partial parts of a stream joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The timestamp of its first part, as written (RFC3339Nano).
    pub timestamp: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub content: Vec<u8>,
}

/// Joins CRI lines into whole lines, in file order; partial parts of each
/// stream are held until their `F` part. Unparseable lines are skipped
/// (upstream logs and skips them too). Returns the remaining partials.
#[derive(Debug, Default)]
pub struct Joiner {
    pending: BTreeMap<String, LogLine>,
}

impl Joiner {
    pub fn push(&mut self, raw: &[u8], out: &mut Vec<LogLine>) {
        let Some(line) = parse_cri_line(raw) else {
            return;
        };
        let entry = self
            .pending
            .entry(line.stream.to_string())
            .or_insert_with(|| LogLine {
                timestamp: line.timestamp.to_string(),
                stream: line.stream.to_string(),
                content: Vec::new(),
            });
        entry.content.extend_from_slice(line.content);
        if !line.partial {
            if let Some(mut whole) = self.pending.remove(line.stream) {
                whole.content.push(b'\n');
                out.push(whole);
            }
        }
    }
}

/// Whether the line is of the wanted stream and at or after `since`.
fn selected(line: &LogLine, opts: &LogOptions) -> bool {
    opts.stream.is_none_or(|s| s == line.stream)
        && match opts.since {
            None => true,
            Some(s) => line.timestamp.parse::<Timestamp>().is_ok_and(|t| t >= s),
        }
}

/// Renders one line as the client gets it.
fn render(line: &LogLine, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(line.timestamp.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&line.content);
}

/// The selection of a whole log: the last `tail_lines`, those since
/// `since`, with timestamps, cut at `limit_bytes`.
pub fn render_logs(lines: &[LogLine], opts: &LogOptions) -> Vec<u8> {
    let start = opts.tail_lines.map_or(0, |t| lines.len().saturating_sub(t));
    let mut out = Vec::new();
    for line in lines[start..].iter().filter(|l| selected(l, opts)) {
        render(line, opts.timestamps, &mut out);
    }
    if let Some(limit) = opts.limit_bytes {
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    out
}

/// Joins the complete lines of `data` (a trailing fragment is left for a
/// later read): the whole lines, the joiner holding unfinished partial
/// lines, and how many bytes were consumed.
fn join_lines(data: &[u8]) -> (Vec<LogLine>, Joiner, usize) {
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut joiner = Joiner::default();
    let mut lines = Vec::new();
    for raw in data[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
    {
        joiner.push(raw, &mut lines);
    }
    (lines, joiner, complete)
}

/// The first window read from the end of a log for `tailLines`.
const TAIL_WINDOW: u64 = 64 * 1024;

/// Reads a log for serving: all of it, or with `tailLines` only a window at
/// its end, doubled until it holds more than `tail` whole lines (the first
/// one may be cut, and is dropped by the tail) or reaches the start. So
/// `--tail` on a large log reads little of it, as upstream's kubelet seeks
/// from the end. Returns where the read started, the joined lines, the
/// joiner, and how many bytes from the start were consumed.
async fn read_log(
    file: &mut tokio::fs::File,
    tail: Option<usize>,
) -> std::io::Result<(u64, Vec<LogLine>, Joiner, usize)> {
    let len = file.metadata().await?.len();
    let mut window = TAIL_WINDOW;
    loop {
        let start = match tail {
            Some(_) => len.saturating_sub(window),
            None => 0,
        };
        file.seek(std::io::SeekFrom::Start(start)).await?;
        let mut data = Vec::new();
        // Bytes written since `len` was taken are read too: the follow
        // continues from what was consumed.
        file.read_to_end(&mut data).await?;
        // A window starting mid-file starts after its first newline.
        let skip = if start == 0 {
            0
        } else {
            data.iter()
                .position(|&b| b == b'\n')
                .map_or(data.len(), |i| i + 1)
        };
        let (lines, joiner, complete) = join_lines(&data[skip..]);
        if start == 0 || tail.is_some_and(|t| lines.len() > t) {
            return Ok((start + skip as u64, lines, joiner, complete));
        }
        window = window.saturating_mul(2);
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

/// The container (by id) whose log to serve, with its log path.
async fn find_container(
    runtime: &dyn ContainerRuntime,
    namespace: &str,
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<(String, PathBuf), Response> {
    let pod_labels = BTreeMap::from([
        (LABEL_POD_NAMESPACE.to_string(), namespace.to_string()),
        (LABEL_POD_NAME.to_string(), pod.to_string()),
    ]);
    let internal =
        |e: crate::runtime::RuntimeError| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let sandboxes = runtime
        .list_pod_sandbox(&PodSandboxFilter {
            label_selector: pod_labels.clone(),
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    if sandboxes.is_empty() {
        return Err(error(
            StatusCode::NOT_FOUND,
            format!("pod {pod:?} not found"),
        ));
    }
    let mut labels = pod_labels;
    labels.insert(LABEL_CONTAINER_NAME.to_string(), container.to_string());
    let mut containers = runtime
        .list_containers(&ContainerFilter {
            label_selector: labels,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    // Newest attempt first: a newer sandbox's attempt 0 is newer than an
    // older sandbox's attempt 3, so creation time decides.
    containers.sort_by(|a, b| {
        (b.created_at, b.metadata.attempt).cmp(&(a.created_at, a.metadata.attempt))
    });
    let index = usize::from(previous);
    let Some(c) = containers.get(index) else {
        let message = if previous {
            format!("previous terminated container {container:?} in pod {pod:?} not found")
        } else {
            format!("container {container:?} in pod {pod:?} is not available")
        };
        let status = if previous {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::NOT_FOUND
        };
        return Err(error(status, message));
    };
    let path = runtime
        .container_log_path(&c.id)
        .await
        .map_err(|e| error(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok((c.id.clone(), path))
}

async fn container_logs(
    State(runtime): State<Arc<dyn ContainerRuntime>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<LogQuery>,
    statuses: Option<axum::Extension<PodStatuses>>,
) -> Response {
    let opts = match log_options(&query, Timestamp::now()) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let status = statuses
        .and_then(|axum::Extension(PodStatuses(s))| s)
        .and_then(|s| s.status_of(&namespace, &pod));
    if let Some(message) = status
        .filter(|_| !opts.previous)
        .and_then(|s| waiting_to_start(&s, &pod, &container))
    {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let (id, path) = match find_container(
        runtime.as_ref(),
        &namespace,
        &pod,
        &container,
        opts.previous,
    )
    .await
    {
        Ok(found) => found,
        Err(response) => return response,
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("reading the log of container {container:?} in pod {pod:?}: {e}"),
            )
        }
    };
    let (start, lines, mut joiner, complete) = match read_log(&mut file, opts.tail_lines).await {
        Ok(read) => read,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading {}: {e}", path.display()),
            )
        }
    };
    let first = render_logs(&lines, &opts);
    let text = || [("content-type", "text/plain")];
    if !opts.follow || opts.previous {
        return (text(), first).into_response();
    }
    let mut budget = opts
        .limit_bytes
        .map(|l| l.saturating_sub(first.len() as u64));
    if budget == Some(0) {
        return (text(), first).into_response();
    }
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    let _ = tx.send(Bytes::from(first)).await;
    let offset = start + complete as u64;
    tokio::spawn(async move {
        let mut offset = offset;
        let mut buf = Vec::new();
        loop {
            // Check whether the container is still running before reading,
            // so that the lines it wrote before exiting are still sent.
            let running = matches!(
                runtime.container_status(&id).await.map(|s| s.state),
                Ok(ContainerState::Running | ContainerState::Created)
            );
            let mut chunk = Vec::new();
            if file.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                let _ = file.read_to_end(&mut chunk).await;
            }
            offset += chunk.len() as u64;
            buf.extend_from_slice(&chunk);
            let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let mut lines = Vec::new();
            for raw in buf[..complete]
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
            {
                joiner.push(raw, &mut lines);
            }
            buf.drain(..complete);
            let mut out = Vec::new();
            for line in lines.iter().filter(|l| selected(l, &opts)) {
                render(line, opts.timestamps, &mut out);
            }
            if let Some(b) = budget.as_mut() {
                out.truncate(usize::try_from(*b).unwrap_or(usize::MAX));
                *b -= out.len() as u64;
            }
            if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                return; // the client went away
            }
            if !running || budget == Some(0) || tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(Ok::<_, std::convert::Infallible>))
    });
    (text(), Body::from_stream(stream)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(raw: &str) -> Vec<LogLine> {
        let mut j = Joiner::default();
        let mut out = Vec::new();
        for l in raw.lines() {
            j.push(l.as_bytes(), &mut out);
        }
        out
    }

    const LOG: &str = "2026-01-01T00:00:01.000000001Z stdout F one\n\
        2026-01-01T00:00:02Z stderr P tw\n\
        2026-01-01T00:00:02.5Z stdout F three\n\
        2026-01-01T00:00:03Z stderr F o\n\
        garbage\n\
        2026-01-01T00:00:04Z stdout F four\n";

    #[test]
    fn cri_lines_parse() {
        type Want = Option<(&'static str, &'static str, bool, &'static str)>;
        let cases: &[(&str, Want)] = &[
            (
                "2026-01-01T00:00:00Z stdout F hi there",
                Some(("2026-01-01T00:00:00Z", "stdout", false, "hi there")),
            ),
            (
                "2026-01-01T00:00:00Z stderr P part",
                Some(("2026-01-01T00:00:00Z", "stderr", true, "part")),
            ),
            (
                "2026-01-01T00:00:00Z stdout F",
                Some(("2026-01-01T00:00:00Z", "stdout", false, "")),
            ),
            (
                "2026-01-01T00:00:00Z stdout untagged",
                Some(("2026-01-01T00:00:00Z", "stdout", false, "untagged")),
            ),
            ("2026-01-01T00:00:00Z other F x", None),
            ("nospace", None),
        ];
        for (raw, want) in cases {
            let got = parse_cri_line(raw.as_bytes()).map(|l| {
                (
                    l.timestamp,
                    l.stream,
                    l.partial,
                    std::str::from_utf8(l.content).unwrap(),
                )
            });
            assert_eq!(got, *want, "{raw}");
        }
    }

    #[test]
    fn partial_lines_join_per_stream_in_order() {
        let got: Vec<_> = lines(LOG)
            .into_iter()
            .map(|l| (l.timestamp, String::from_utf8(l.content).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "2026-01-01T00:00:01.000000001Z".to_string(),
                    "one\n".to_string()
                ),
                ("2026-01-01T00:00:02.5Z".into(), "three\n".into()),
                ("2026-01-01T00:00:02Z".into(), "two\n".into()),
                ("2026-01-01T00:00:04Z".into(), "four\n".into()),
            ]
        );
    }

    #[test]
    fn selection() {
        let all = lines(LOG);
        let ts = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        let cases: Vec<(LogOptions, &str)> = vec![
            (LogOptions::default(), "one\nthree\ntwo\nfour\n"),
            (
                LogOptions {
                    tail_lines: Some(1),
                    ..Default::default()
                },
                "four\n",
            ),
            (
                LogOptions {
                    tail_lines: Some(0),
                    ..Default::default()
                },
                "",
            ),
            (
                LogOptions {
                    tail_lines: Some(99),
                    ..Default::default()
                },
                "one\nthree\ntwo\nfour\n",
            ),
            (
                LogOptions {
                    since: ts("2026-01-01T00:00:02.1Z"),
                    ..Default::default()
                },
                "three\nfour\n",
            ),
            (
                LogOptions {
                    limit_bytes: Some(6),
                    ..Default::default()
                },
                "one\nth",
            ),
            (
                LogOptions {
                    stream: Some("stderr"),
                    ..Default::default()
                },
                "two\n",
            ),
            (
                LogOptions {
                    stream: Some("stdout"),
                    ..Default::default()
                },
                "one\nthree\nfour\n",
            ),
            (
                LogOptions {
                    timestamps: true,
                    tail_lines: Some(1),
                    ..Default::default()
                },
                "2026-01-01T00:00:04Z four\n",
            ),
        ];
        for (opts, want) in cases {
            assert_eq!(
                String::from_utf8(render_logs(&all, &opts)).unwrap(),
                want,
                "{opts:?}"
            );
        }
    }

    #[test]
    fn logs_of_containers_that_never_started_say_why() {
        let status: k8s_openapi::api::core::v1::PodStatus = serde_json::from_value(serde_json::json!({
            "initContainerStatuses": [
                {"name": "init", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "PodInitializing"}}},
            ],
            "containerStatuses": [
                {"name": "new", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}},
                {"name": "blank", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"waiting": {}}},
                {"name": "looping", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1}}},
                {"name": "up", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                 "state": {"running": {}}},
            ],
        }))
        .unwrap();
        let cases = [
            (
                "new",
                Some(r#"container "new" in pod "web" is waiting to start: ContainerCreating"#),
            ),
            (
                "init",
                Some(r#"container "init" in pod "web" is waiting to start: PodInitializing"#),
            ),
            (
                "blank",
                Some(r#"container "blank" in pod "web" is waiting to start - no logs yet"#),
            ),
            ("looping", None),
            ("up", None),
            ("other", None),
        ];
        for (container, want) in cases {
            assert_eq!(
                waiting_to_start(&status, "web", container).as_deref(),
                want,
                "{container}"
            );
        }
    }

    #[test]
    fn tls_config_self_signs_and_rejects_a_bad_ca() {
        let config = |client_ca: Vec<Vec<u8>>| ServerConfig {
            address: "127.0.0.1:0".parse().unwrap(),
            node_name: "node-a".into(),
            node_ips: vec!["10.0.0.1".into(), "fd00::1".into()],
            client_ca,
            runtime: Arc::new(crate::runtime::fake::FakeRuntime::new()),
            pod_statuses: None,
        };
        assert!(tls_config(&config(Vec::new())).is_ok());
        let err = tls_config(&config(vec![b"not a certificate".to_vec()])).unwrap_err();
        assert!(format!("{err:#}").contains("client CA"), "{err:#}");
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_string()]).unwrap();
        assert!(tls_config(&config(vec![ca.cert.der().to_vec()])).is_ok());
    }

    #[tokio::test]
    async fn tail_reads_a_window_at_the_end() {
        let path = std::env::temp_dir().join(format!("tugboat-tail-{}.log", std::process::id()));
        let mut log = String::new();
        for i in 0..10_000 {
            log.push_str(&format!("2026-01-01T00:00:00Z stdout F line {i}\n"));
        }
        log.push_str("2026-01-01T00:00:00Z stdout P unfinished");
        std::fs::write(&path, &log).unwrap();
        let mut file = tokio::fs::File::open(&path).await.unwrap();
        let cases: &[(Option<usize>, usize, &str)] = &[
            (Some(3), 3, "line 9997\nline 9998\nline 9999\n"),
            (Some(0), 0, ""),
            (Some(20_000), 10_000, "line 0\n"),
            (None, 10_000, "line 0\n"),
        ];
        for (tail, count, prefix) in cases {
            let (start, lines, _, complete) = read_log(&mut file, *tail).await.unwrap();
            let opts = LogOptions {
                tail_lines: *tail,
                ..Default::default()
            };
            let out = String::from_utf8(render_logs(&lines, &opts)).unwrap();
            assert_eq!(out.lines().count(), *count, "{tail:?}");
            assert!(
                out.starts_with(prefix),
                "{tail:?}: {}",
                &out[..out.len().min(80)]
            );
            // Consumed up to the unfinished line, which a follow re-reads.
            let unfinished = log.rfind('\n').unwrap() as u64 + 1;
            assert_eq!(start + complete as u64, unfinished, "{tail:?}");
            if tail == &Some(3) {
                assert!(start > 0, "a small tail reads only the end");
            }
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn options_validate() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let q = |f: fn(&mut LogQuery)| {
            let mut q = LogQuery::default();
            f(&mut q);
            log_options(&q, now)
        };
        assert_eq!(q(|_| {}), Ok(LogOptions::default()));
        let o = q(|q| {
            q.follow = Some("true".into());
            q.tail_lines = Some("3".into());
            q.since_seconds = Some("60".into());
        })
        .unwrap();
        assert!(o.follow);
        assert_eq!(o.tail_lines, Some(3));
        assert_eq!(o.since, Some("2026-01-01T00:00:00Z".parse().unwrap()));
        assert!(q(|q| q.tail_lines = Some("-1".into())).is_err());
        assert!(q(|q| q.tail_lines = Some("x".into())).is_err());
        assert!(q(|q| q.limit_bytes = Some("0".into())).is_err());
        assert!(q(|q| q.follow = Some("maybe".into())).is_err());
        assert!(q(|q| q.since_time = Some("yesterday".into())).is_err());
        assert_eq!(
            q(|q| q.stream = Some("Stderr".into())).map(|o| o.stream),
            Ok(Some("stderr"))
        );
        assert_eq!(
            q(|q| q.stream = Some("All".into())).map(|o| o.stream),
            Ok(None)
        );
        assert!(q(|q| q.stream = Some("stdout".into())).is_err());
        assert!(q(|q| {
            q.stream = Some("Stdout".into());
            q.tail_lines = Some("1".into());
        })
        .is_err());
        assert!(q(|q| {
            q.since_time = Some("2026-01-01T00:00:00Z".into());
            q.since_seconds = Some("5".into());
        })
        .is_err());
    }
}
