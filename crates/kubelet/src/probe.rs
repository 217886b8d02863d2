//! Container probes, as upstream's `pkg/kubelet/prober` (`prober.go`,
//! `prober_manager.go`, `worker.go`) and `pkg/probe/{http,tcp}`:
//!
//! - [`ProbeState`] is the pure state machine of one (container, probe
//!   kind): the initial result (readiness `Failure`, liveness `Success`,
//!   startup `Unknown`), `initialDelaySeconds` counted from the container's
//!   start, the failure/success thresholds (a result is only reported after
//!   that many identical outcomes in a row), the startup probe gating the
//!   other two until it succeeds, and the "on hold" state after a liveness
//!   or startup failure (nothing is probed until a new container replaces
//!   the one about to be killed).
//! - [`http_get`] and [`tcp_socket`] are the network probers; `exec` goes
//!   through the [`ExecProber`] trait (the runtime's `ExecSync`), `grpc`
//!   is reported as unsupported.
//! - [`ProbeManager`] runs one task per probe of a pod, every
//!   `periodSeconds`, records the `Unhealthy` events and wakes the pod
//!   worker when a result changes; the worker reads [`ProbeManager::views`]
//!   for the status (`started`, `ready`) and [`ProbeManager::kills`] for the
//!   containers to restart.
//!
//! A probe that *errors* (cannot be run at all, e.g. a named port that does
//! not exist) keeps the previous result, as upstream's worker throws such
//! results away; it is reported with an `Unhealthy` "probe errored" event.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use component_base::events::{EventRecorder, EventType};
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Pod, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Resource;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::runtime::ContainerState;
use crate::status::{is_sidecar, PodRuntimeState};

/// Which probe of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// As upstream's events spell it (`Liveness probe failed: ...`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    /// Upstream's `initialValue`: readiness starts failed (not ready until
    /// proven), liveness succeeded (not killed until proven dead), startup
    /// unknown.
    pub fn initial(self) -> ProbeResult {
        match self {
            ProbeKind::Liveness => ProbeResult::Success,
            ProbeKind::Readiness => ProbeResult::Failure,
            ProbeKind::Startup => ProbeResult::Unknown,
        }
    }
}

/// A reported probe result (upstream's `results.Result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Unknown,
    Success,
    Failure,
}

/// What running a probe once gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// With the output (an HTTP body, exec output).
    Success(String),
    /// Counted as a success, with a `ProbeWarning` event: an `httpGet`
    /// redirected to another host, which is not followed.
    Warning(String),
    /// With why: `HTTP probe failed with statuscode: 500`.
    Failure(String),
    /// The probe could not be run: its result is thrown away.
    Error(String),
}

/// The timing fields of a probe, defaulted and clamped as the API's
/// defaulting and validation would (everything at least 1 but the delay;
/// liveness and startup succeed after one success).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

fn secs(v: Option<i32>, default: i32, min: i32) -> u64 {
    u64::try_from(v.unwrap_or(default).max(min)).unwrap_or(0)
}

impl Timing {
    pub fn of(probe: &Probe, kind: ProbeKind) -> Self {
        let success = if kind == ProbeKind::Readiness {
            secs(probe.success_threshold, 1, 1)
        } else {
            1
        };
        Timing {
            initial_delay: Duration::from_secs(secs(probe.initial_delay_seconds, 0, 0)),
            period: Duration::from_secs(secs(probe.period_seconds, 10, 1)),
            timeout: Duration::from_secs(secs(probe.timeout_seconds, 1, 1)),
            failure_threshold: u32::try_from(secs(probe.failure_threshold, 3, 1))
                .unwrap_or(u32::MAX),
            success_threshold: u32::try_from(success).unwrap_or(u32::MAX),
        }
    }
}

/// What a probe worker sees of its container on a tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The newest container of this name.
    pub container_id: Option<String>,
    pub running: bool,
    pub started_at: Option<Timestamp>,
    /// Whether the startup probe succeeded (or there is none).
    pub started: bool,
    /// The pod's IP (the default host of network probes).
    pub pod_ip: Option<String>,
}

/// Whether a tick runs the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Skip,
    Probe,
}

/// One probe's state machine (upstream's prober `worker.doProbe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeState {
    kind: ProbeKind,
    timing: Timing,
    container_id: Option<String>,
    result: ProbeResult,
    last: Option<ProbeResult>,
    run: u32,
    on_hold: bool,
}

impl ProbeState {
    pub fn new(kind: ProbeKind, timing: Timing) -> Self {
        ProbeState {
            kind,
            timing,
            container_id: None,
            result: kind.initial(),
            last: None,
            run: 0,
            on_hold: false,
        }
    }

    /// The reported result and the container it is about.
    pub fn result(&self) -> (Option<&str>, ProbeResult) {
        (self.container_id.as_deref(), self.result)
    }

    /// Takes in the container as it is now; says whether to probe.
    pub fn observe(&mut self, seen: &Observed, now: Timestamp) -> Step {
        if seen.container_id.is_some() && seen.container_id != self.container_id {
            // A new container: start over from the initial result.
            self.container_id = seen.container_id.clone();
            self.result = self.kind.initial();
            self.last = None;
            self.run = 0;
            self.on_hold = false;
        }
        if !seen.running {
            // A container that does not run is not ready; its liveness is
            // moot (only running containers are killed).
            if self.kind == ProbeKind::Readiness && self.container_id.is_some() {
                self.result = ProbeResult::Failure;
            }
            return Step::Skip;
        }
        if self.on_hold {
            return Step::Skip;
        }
        let started_at = seen.started_at.unwrap_or(now);
        let delay = SignedDuration::try_from(self.timing.initial_delay).unwrap_or_default();
        if started_at.checked_add(delay).is_ok_and(|ready| now < ready) {
            return Step::Skip;
        }
        // The startup probe runs until it succeeds; the others only after.
        match (self.kind == ProbeKind::Startup, seen.started) {
            (true, true) | (false, false) => Step::Skip,
            _ => Step::Probe,
        }
    }

    /// Takes in one probe's outcome; returns whether the reported result
    /// changed.
    pub fn record(&mut self, outcome: &Outcome) -> bool {
        let result = match outcome {
            Outcome::Success(_) | Outcome::Warning(_) => ProbeResult::Success,
            Outcome::Failure(_) => ProbeResult::Failure,
            Outcome::Error(_) => return false,
        };
        if self.last == Some(result) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(result);
            self.run = 1;
        }
        let threshold = match result {
            ProbeResult::Failure => self.timing.failure_threshold,
            _ => self.timing.success_threshold,
        };
        if self.run < threshold {
            return false;
        }
        let changed = self.result != result;
        self.result = result;
        if self.kind != ProbeKind::Readiness && result == ProbeResult::Failure {
            // The container is about to be killed: do not probe it again.
            self.on_hold = true;
            self.run = 0;
        }
        changed
    }
}

/// Runs a command in a container (the runtime's CRI `ExecSync`).
#[async_trait]
pub trait ExecProber: Send + Sync + 'static {
    /// The exit code and combined output, or why it could not run.
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<(i32, String), String>;
}

/// Exec probes through the container runtime's `ExecSync`.
pub struct RuntimeExec(pub std::sync::Arc<dyn crate::runtime::ContainerRuntime>);

#[async_trait]
impl ExecProber for RuntimeExec {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<(i32, String), String> {
        let result = self
            .0
            .exec_sync(container_id, cmd, timeout)
            .await
            .map_err(|e| e.to_string())?;
        let mut output = String::from_utf8_lossy(&result.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&result.stderr));
        Ok((result.exit_code, output))
    }
}

/// `host:port`, with brackets around an IPv6 host (Go's `JoinHostPort`).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves a probe's port: a number, or the name of one of the
/// container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| {
                    format!("port {name:?} not found in container {}", container.name)
                })?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// Go's wording of a failed dial.
fn dial_error(addr: &str, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => e.to_string(),
    };
    format!("dial tcp {addr}: {what}")
}

/// A resolved `tcpSocket` probe: success if a connection opens in time.
pub async fn tcp_socket(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = join_host_port(host, port);
    match tokio::time::timeout(timeout, TcpStream::connect(addr.as_str())).await {
        Ok(Ok(_)) => Outcome::Success(String::new()),
        Ok(Err(e)) => Outcome::Failure(dial_error(&addr, &e)),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// A resolved `httpGet` probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub host: String,
    pub port: u16,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl HttpTarget {
    pub fn url(&self) -> String {
        format!(
            "http://{}{}",
            join_host_port(&self.host, self.port),
            self.path
        )
    }

    /// The request, with upstream's default `User-Agent` and `Accept`
    /// unless the probe sets them; the probe's `Host` header wins.
    pub fn request(&self) -> String {
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        let mut req = format!("GET {} HTTP/1.1\r\n", self.path);
        if !has("host") {
            req.push_str(&format!(
                "Host: {}\r\n",
                join_host_port(&self.host, self.port)
            ));
        }
        if !has("user-agent") {
            req.push_str("User-Agent: kube-probe/1.33\r\n");
        }
        if !has("accept") {
            req.push_str("Accept: */*\r\n");
        }
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case("connection") {
                continue;
            }
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Connection: close\r\n\r\n");
        req
    }
}

/// How much of a response body a probe keeps (upstream's 10 KiB).
const MAX_BODY: usize = 10 * 1024;
/// How large a response head may be.
const MAX_HEAD: usize = 64 * 1024;

/// The status code of an HTTP/1.x status line.
pub fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// An HTTP response, as much of it as a probe looks at.
struct Response {
    code: u16,
    location: Option<String>,
    body: String,
}

/// The value of header `name` in a response head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads the head and up to [`MAX_BODY`] of the body.
/// Until the response head arrives everything must happen before
/// `deadline`; the body is read until then at most, and what came of it
/// kept: a server that keeps the connection open does not turn a good
/// status into a timeout.
async fn exchange(target: &HttpTarget, deadline: Instant) -> Result<Response, String> {
    let addr = join_host_port(&target.host, target.port);
    let mut stream = before(deadline, TcpStream::connect(addr.as_str()))
        .await?
        .map_err(|e| dial_error(&addr, &e))?;
    before(deadline, stream.write_all(target.request().as_bytes()))
        .await?
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err("malformed HTTP response: head too large".into());
        }
        let n = before(deadline, stream.read(&mut chunk))
            .await?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("EOF".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let code = head
        .lines()
        .next()
        .and_then(parse_status_line)
        .ok_or_else(|| "malformed HTTP response".to_string())?;
    let length = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok());
    let want = length.unwrap_or(usize::MAX).min(MAX_BODY);
    let mut body = buf[head_end..].to_vec();
    while body.len() < want {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => break,
            Ok(Ok(n)) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(want);
    Ok(Response {
        code,
        location: header(&head, "location").map(str::to_string),
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// Go's wording of an HTTP client timeout.
const HTTP_TIMEOUT: &str =
    "context deadline exceeded (Client.Timeout exceeded while awaiting headers)";

/// `fut`, unless `deadline` passes first.
async fn before<T>(deadline: Instant, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .map_err(|_| HTTP_TIMEOUT.to_string())
}

/// Where a redirect's `Location` leads from `from`, if it is followed:
/// only to the same host over HTTP, as upstream's probe client follows
/// only local redirects.
pub fn redirect_target(from: &HttpTarget, location: &str) -> Option<HttpTarget> {
    let location = location.split('#').next().unwrap_or_default();
    let (authority, path) = if let Some(rest) = location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("//"))
    {
        match rest.find(['/', '?']) {
            Some(i) => (Some(&rest[..i]), rest[i..].to_string()),
            None => (Some(rest), "/".to_string()),
        }
    } else if location.contains("://") {
        // Another scheme (https): not followed.
        return None;
    } else if location.starts_with('/') {
        (None, location.to_string())
    } else {
        let dir = from.path.rfind('/').map_or("/", |i| &from.path[..=i]);
        (None, format!("{dir}{location}"))
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (host, port) = match authority {
        None => (from.host.clone(), from.port),
        Some(a) => {
            let (host, port) = match a.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (h, p.parse().ok()?),
                _ => (a, 80),
            };
            (
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
            )
        }
    };
    (host.eq_ignore_ascii_case(&from.host)).then(|| HttpTarget {
        host,
        port,
        path,
        headers: from.headers.clone(),
    })
}

/// How many redirects a probe follows.
const MAX_REDIRECTS: usize = 10;

/// GETs `target`, following local redirects; on error, the URL that
/// failed and why.
async fn get_following(
    target: &HttpTarget,
    deadline: Instant,
) -> Result<Response, (String, String)> {
    let mut current = target.clone();
    for _ in 0..=MAX_REDIRECTS {
        let response = exchange(&current, deadline)
            .await
            .map_err(|e| (current.url(), e))?;
        let next = response
            .location
            .as_deref()
            .filter(|_| (300..400).contains(&response.code))
            .and_then(|l| redirect_target(&current, l));
        match next {
            Some(next) => current = next,
            None => return Ok(response),
        }
    }
    Err((
        current.url(),
        format!("stopped after {MAX_REDIRECTS} redirects"),
    ))
}

/// Runs an `httpGet` probe: 200-299 succeeds; a redirect to the same host
/// is followed, one to another host is not and counts as a success with a
/// warning (upstream's `probe.Warning`); anything else fails with the
/// status code.
pub async fn http_get(target: &HttpTarget, timeout: Duration) -> Outcome {
    match get_following(target, Instant::now() + timeout).await {
        Ok(r) if (200..300).contains(&r.code) => Outcome::Success(r.body),
        Ok(r) if (300..400).contains(&r.code) => Outcome::Warning(format!(
            "Probe terminated redirects, Response body: {}",
            r.body
        )),
        Ok(r) => Outcome::Failure(format!("HTTP probe failed with statuscode: {}", r.code)),
        Err((url, e)) => Outcome::Failure(format!("Get {url:?}: {e}")),
    }
}

/// The `httpGet` target of a probe on `container` of a pod at `pod_ip`.
pub fn http_target(
    action: &HTTPGetAction,
    container: &Container,
    pod_ip: Option<&str>,
) -> Result<HttpTarget, String> {
    if action
        .scheme
        .as_deref()
        .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP"))
    {
        return Err(format!(
            "scheme {:?} is not supported yet (only HTTP)",
            action.scheme.as_deref().unwrap_or_default()
        ));
    }
    let host = action
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .or_else(|| pod_ip.map(str::to_string))
        .ok_or("the pod has no IP yet")?;
    let path = match action.path.as_deref() {
        None | Some("") => "/".to_string(),
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("invalid path {path:?}"));
    }
    let headers = action
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .filter(|(k, v)| !k.contains(['\r', '\n', ':']) && !v.contains(['\r', '\n']))
        .collect();
    Ok(HttpTarget {
        host,
        port: resolve_port(&action.port, container)?,
        path,
        headers,
    })
}

fn tcp_target(
    action: &TCPSocketAction,
    container: &Container,
    pod_ip: Option<&str>,
) -> Result<(String, u16), String> {
    let host = action
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .or_else(|| pod_ip.map(str::to_string))
        .ok_or("the pod has no IP yet")?;
    Ok((host, resolve_port(&action.port, container)?))
}

/// Runs `probe` once against the container `seen` shows.
pub async fn run_probe(
    probe: &Probe,
    container: &Container,
    seen: &Observed,
    timeout: Duration,
    exec: &dyn ExecProber,
) -> Outcome {
    let pod_ip = seen.pod_ip.as_deref();
    if let Some(action) = &probe.http_get {
        match http_target(action, container, pod_ip) {
            Ok(target) => http_get(&target, timeout).await,
            Err(e) => Outcome::Error(e),
        }
    } else if let Some(action) = &probe.tcp_socket {
        match tcp_target(action, container, pod_ip) {
            Ok((host, port)) => tcp_socket(&host, port, timeout).await,
            Err(e) => Outcome::Error(e),
        }
    } else if let Some(action) = &probe.exec {
        let cmd = action.command.clone().unwrap_or_default();
        let id = seen.container_id.as_deref().unwrap_or_default();
        match exec.exec(id, &cmd, timeout).await {
            Ok((0, output)) => Outcome::Success(output),
            Ok((code, output)) if output.is_empty() => {
                Outcome::Failure(format!("command {cmd:?} exited with {code}"))
            }
            Ok((_, output)) => Outcome::Failure(output),
            Err(e) => Outcome::Error(e),
        }
    } else if probe.grpc.is_some() {
        Outcome::Error("gRPC probes are not supported yet".into())
    } else {
        Outcome::Error("the probe has no handler (exec, httpGet, tcpSocket or grpc)".into())
    }
}

/// The warning event a probe outcome gives, if any: reason and message
/// (upstream's `Unhealthy` and `ProbeWarning`).
pub fn outcome_event(kind: ProbeKind, outcome: &Outcome) -> Option<(&'static str, String)> {
    let kind = kind.as_str();
    match outcome {
        Outcome::Success(_) => None,
        Outcome::Warning(why) => Some(("ProbeWarning", format!("{kind} probe warning: {why}"))),
        Outcome::Failure(why) => Some(("Unhealthy", format!("{kind} probe failed: {why}"))),
        Outcome::Error(why) => Some(("Unhealthy", format!("{kind} probe errored: {why}"))),
    }
}

/// What the status needs of one container's probes (by container id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeView {
    /// The startup probe succeeded.
    pub started: bool,
    /// The readiness probe succeeded.
    pub ready: bool,
}

/// A container to kill because a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeKill {
    pub container: String,
    pub container_id: String,
    pub kind: ProbeKind,
    /// The probe's `terminationGracePeriodSeconds`, if it sets one.
    pub grace_seconds: Option<i64>,
}

type Key = (String, ProbeKind);
type Results = HashMap<Key, (String, ProbeResult)>;

#[derive(Default)]
struct Shared {
    results: Mutex<Results>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Results> {
        self.results.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Task {
    observed: watch::Sender<Observed>,
    handle: JoinHandle<()>,
}

/// The probe workers of one pod.
pub struct ProbeManager {
    shared: Arc<Shared>,
    tasks: HashMap<Key, Task>,
    poke: Arc<Notify>,
    recorder: Option<EventRecorder>,
    exec: Arc<dyn ExecProber>,
}

impl Drop for ProbeManager {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.handle.abort();
        }
    }
}

/// The containers of a pod that are probed (app containers and sidecars),
/// with the event field path of each.
fn probed(pod: &Pod) -> Vec<(&Container, String)> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c));
    sidecars
        .map(|c| (c, format!("spec.initContainers{{{}}}", c.name)))
        .chain(
            spec.containers
                .iter()
                .map(|c| (c, format!("spec.containers{{{}}}", c.name))),
        )
        .collect()
}

fn probes_of(c: &Container) -> [(ProbeKind, Option<&Probe>); 3] {
    [
        (ProbeKind::Startup, c.startup_probe.as_ref()),
        (ProbeKind::Liveness, c.liveness_probe.as_ref()),
        (ProbeKind::Readiness, c.readiness_probe.as_ref()),
    ]
}

impl ProbeManager {
    /// Probes wake the pod worker through `poke` when a result changes.
    pub fn new(
        poke: Arc<Notify>,
        recorder: Option<EventRecorder>,
        exec: Arc<dyn ExecProber>,
    ) -> Self {
        ProbeManager {
            shared: Arc::default(),
            tasks: HashMap::new(),
            poke,
            recorder,
            exec,
        }
    }

    /// Starts the probe workers `pod` needs and tells each what the runtime
    /// shows of its container.
    pub fn sync(&mut self, pod: &Pod, rt: &PodRuntimeState, pod_ip: Option<&str>) {
        for (c, field_path) in probed(pod) {
            let latest = rt.latest(&c.name);
            let seen = Observed {
                container_id: latest.map(|l| l.id.clone()),
                running: latest.is_some_and(|l| l.state == ContainerState::Running),
                started_at: latest.and_then(|l| l.started_at),
                started: false,
                pod_ip: pod_ip.map(str::to_string),
            };
            for (kind, probe) in probes_of(c) {
                let Some(probe) = probe else { continue };
                let key = (c.name.clone(), kind);
                if let Some(task) = self.tasks.get(&key) {
                    task.observed.send_if_modified(|old| {
                        let changed = *old != seen;
                        *old = seen.clone();
                        changed
                    });
                    continue;
                }
                let (tx, rx) = watch::channel(seen.clone());
                let mut object = pod.object_ref(&());
                object.field_path = Some(field_path.clone());
                let worker = ProbeWorker {
                    kind,
                    probe: probe.clone(),
                    container: c.clone(),
                    has_startup: c.startup_probe.is_some(),
                    observed: rx,
                    shared: self.shared.clone(),
                    poke: self.poke.clone(),
                    recorder: self.recorder.clone().map(|r| (r, object)),
                    exec: self.exec.clone(),
                };
                let handle = tokio::spawn(worker.run());
                self.tasks.insert(
                    key,
                    Task {
                        observed: tx,
                        handle,
                    },
                );
            }
        }
    }

    /// The probe results by container id, for the status.
    pub fn views(&self) -> BTreeMap<String, ProbeView> {
        let mut views: BTreeMap<String, ProbeView> = BTreeMap::new();
        for ((_, kind), (id, result)) in self.shared.lock().iter() {
            let view = views.entry(id.clone()).or_default();
            let ok = *result == ProbeResult::Success;
            match kind {
                ProbeKind::Startup => view.started |= ok,
                ProbeKind::Readiness => view.ready |= ok,
                ProbeKind::Liveness => {}
            }
        }
        views
    }

    /// Running containers whose liveness or startup probe failed.
    pub fn kills(&self, pod: &Pod, rt: &PodRuntimeState) -> Vec<ProbeKill> {
        let results = self.shared.lock();
        let mut kills = Vec::new();
        for (c, _) in probed(pod) {
            let Some(latest) = rt
                .latest(&c.name)
                .filter(|l| l.state == ContainerState::Running)
            else {
                continue;
            };
            // Startup first: a container failing it never got to liveness.
            for (kind, probe) in probes_of(c) {
                let (Some(probe), false) = (probe, kind == ProbeKind::Readiness) else {
                    continue;
                };
                let failed = results
                    .get(&(c.name.clone(), kind))
                    .is_some_and(|(id, r)| *id == latest.id && *r == ProbeResult::Failure);
                if failed {
                    kills.push(ProbeKill {
                        container: c.name.clone(),
                        container_id: latest.id.clone(),
                        kind,
                        grace_seconds: probe.termination_grace_period_seconds,
                    });
                    break;
                }
            }
        }
        kills
    }
}

/// One probe's task.
struct ProbeWorker {
    kind: ProbeKind,
    probe: Probe,
    container: Container,
    has_startup: bool,
    observed: watch::Receiver<Observed>,
    shared: Arc<Shared>,
    poke: Arc<Notify>,
    recorder: Option<(EventRecorder, k8s_openapi::api::core::v1::ObjectReference)>,
    exec: Arc<dyn ExecProber>,
}

impl ProbeWorker {
    async fn run(self) {
        let timing = Timing::of(&self.probe, self.kind);
        let mut state = ProbeState::new(self.kind, timing);
        let mut ticker = tokio::time::interval(timing.period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let key = (self.container.name.clone(), self.kind);
        loop {
            ticker.tick().await;
            let mut seen = self.observed.borrow().clone();
            seen.started =
                !self.has_startup || self.startup_succeeded(seen.container_id.as_deref());
            if state.observe(&seen, Timestamp::now()) == Step::Probe {
                let outcome = run_probe(
                    &self.probe,
                    &self.container,
                    &seen,
                    timing.timeout,
                    &*self.exec,
                )
                .await;
                if let (Some((reason, message)), Some((recorder, object))) =
                    (outcome_event(self.kind, &outcome), &self.recorder)
                {
                    recorder.record(object.clone(), EventType::Warning, reason, message);
                }
                state.record(&outcome);
            }
            if let (Some(id), result) = state.result() {
                let entry = (id.to_string(), result);
                let changed = self.shared.lock().insert(key.clone(), entry.clone()) != Some(entry);
                if changed {
                    self.poke.notify_one();
                }
            }
        }
    }

    fn startup_succeeded(&self, id: Option<&str>) -> bool {
        let key = (self.container.name.clone(), ProbeKind::Startup);
        self.shared
            .lock()
            .get(&key)
            .is_some_and(|(i, r)| Some(i.as_str()) == id && *r == ProbeResult::Success)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tokio::net::TcpListener;

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn timing(delay: u64, failure: u32, success: u32) -> Timing {
        Timing {
            initial_delay: Duration::from_secs(delay),
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            failure_threshold: failure,
            success_threshold: success,
        }
    }

    fn running(id: &str, started: bool) -> Observed {
        Observed {
            container_id: Some(id.into()),
            running: true,
            started_at: Some(at(0)),
            started,
            pod_ip: None,
        }
    }

    use Outcome::{Error as E, Failure as F, Success as S, Warning as W};
    use ProbeResult::{Failure, Success, Unknown};

    #[test]
    fn initial_results_follow_upstream() {
        for (kind, initial) in [
            (ProbeKind::Readiness, Failure),
            (ProbeKind::Liveness, Success),
            (ProbeKind::Startup, Unknown),
        ] {
            let mut s = ProbeState::new(kind, timing(0, 1, 1));
            assert_eq!(s.result(), (None, initial));
            s.observe(&running("c1", kind != ProbeKind::Startup), at(5));
            assert_eq!(s.result(), (Some("c1"), initial), "{kind:?}");
        }
    }

    #[test]
    fn thresholds_need_runs_of_identical_outcomes() {
        // (kind, failure threshold, success threshold, outcomes, results after each)
        type Case<'a> = (ProbeKind, u32, u32, &'a [Outcome], &'a [ProbeResult]);
        let cases: &[Case] = &[
            (
                ProbeKind::Readiness,
                3,
                2,
                &[
                    S(String::new()),
                    S(String::new()),
                    F("x".into()),
                    F("x".into()),
                    F("x".into()),
                ],
                &[Failure, Success, Success, Success, Failure],
            ),
            (
                ProbeKind::Readiness,
                2,
                1,
                // An error is thrown away and does not break a run.
                &[F("x".into()), E("e".into()), F("x".into())],
                &[Failure, Failure, Failure],
            ),
            (
                ProbeKind::Liveness,
                3,
                1,
                &[
                    F("x".into()),
                    F("x".into()),
                    S(String::new()),
                    F("x".into()),
                    F("x".into()),
                    F("x".into()),
                ],
                &[Success, Success, Success, Success, Success, Failure],
            ),
            // A warning (a redirect not followed) counts as a success.
            (ProbeKind::Readiness, 1, 1, &[W("r".into())], &[Success]),
            (
                ProbeKind::Startup,
                2,
                1,
                &[F("x".into()), S(String::new())],
                &[Unknown, Success],
            ),
        ];
        for (kind, failure, success, outcomes, results) in cases {
            let mut s = ProbeState::new(*kind, timing(0, *failure, *success));
            for (i, (o, want)) in outcomes.iter().zip(results.iter()).enumerate() {
                let started = *kind != ProbeKind::Startup;
                assert_eq!(s.observe(&running("c1", started), at(1)), Step::Probe);
                s.record(o);
                assert_eq!(s.result().1, *want, "{kind:?} step {i}");
            }
        }
    }

    #[test]
    fn when_to_probe() {
        let not_running = Observed {
            container_id: Some("c1".into()),
            ..running("c1", true)
        };
        let not_running = Observed {
            running: false,
            ..not_running
        };
        // (kind, initial delay, observed, now, step)
        let cases = [
            (
                ProbeKind::Readiness,
                5,
                running("c1", true),
                at(4),
                Step::Skip,
            ),
            (
                ProbeKind::Readiness,
                5,
                running("c1", true),
                at(5),
                Step::Probe,
            ),
            (
                ProbeKind::Liveness,
                0,
                running("c1", false),
                at(5),
                Step::Skip,
            ),
            (
                ProbeKind::Readiness,
                0,
                running("c1", false),
                at(5),
                Step::Skip,
            ),
            (
                ProbeKind::Startup,
                0,
                running("c1", false),
                at(5),
                Step::Probe,
            ),
            (
                ProbeKind::Startup,
                0,
                running("c1", true),
                at(5),
                Step::Skip,
            ),
            (
                ProbeKind::Liveness,
                0,
                not_running.clone(),
                at(5),
                Step::Skip,
            ),
        ];
        for (i, (kind, delay, seen, now, step)) in cases.into_iter().enumerate() {
            let mut s = ProbeState::new(kind, timing(delay, 1, 1));
            assert_eq!(s.observe(&seen, now), step, "case {i}");
        }
    }

    #[test]
    fn a_liveness_failure_holds_until_a_new_container() {
        let mut s = ProbeState::new(ProbeKind::Liveness, timing(0, 1, 1));
        assert_eq!(s.observe(&running("c1", true), at(1)), Step::Probe);
        assert!(s.record(&F("down".into())));
        assert_eq!(s.result(), (Some("c1"), Failure));
        assert_eq!(s.observe(&running("c1", true), at(2)), Step::Skip);
        // The restarted container starts over from Success.
        assert_eq!(s.observe(&running("c2", true), at(3)), Step::Probe);
        assert_eq!(s.result(), (Some("c2"), Success));
    }

    #[test]
    fn a_stopped_container_is_not_ready() {
        let mut s = ProbeState::new(ProbeKind::Readiness, timing(0, 1, 1));
        s.observe(&running("c1", true), at(1));
        s.record(&S(String::new()));
        assert_eq!(s.result().1, Success);
        let stopped = Observed {
            running: false,
            ..running("c1", true)
        };
        assert_eq!(s.observe(&stopped, at(2)), Step::Skip);
        assert_eq!(s.result().1, Failure);
    }

    #[test]
    fn timing_defaults_and_clamps() {
        let p: Probe =
            serde_json::from_value(json!({"successThreshold": 3, "periodSeconds": 0})).unwrap();
        let t = Timing::of(&p, ProbeKind::Liveness);
        assert_eq!(
            (
                t.period,
                t.timeout,
                t.failure_threshold,
                t.success_threshold
            ),
            (Duration::from_secs(1), Duration::from_secs(1), 3, 1)
        );
        assert_eq!(Timing::of(&p, ProbeKind::Readiness).success_threshold, 3);
        let d = Timing::of(&Probe::default(), ProbeKind::Readiness);
        assert_eq!(d.period, Duration::from_secs(10));
    }

    #[test]
    fn ports_resolve_by_number_or_name() {
        let c: Container = serde_json::from_value(
            json!({"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .unwrap();
        let cases = [
            (IntOrString::Int(80), Ok(80)),
            (IntOrString::String("http".into()), Ok(8080)),
            (IntOrString::String("9090".into()), Ok(9090)),
            (
                IntOrString::Int(0),
                Err("invalid port number: 0".to_string()),
            ),
            (
                IntOrString::Int(70000),
                Err("invalid port number: 70000".to_string()),
            ),
            (
                IntOrString::String("grpc".into()),
                Err("port \"grpc\" not found in container app".to_string()),
            ),
        ];
        for (port, want) in cases {
            assert_eq!(resolve_port(&port, &c), want, "{port:?}");
        }
    }

    #[test]
    fn http_targets_default_to_the_pod_ip() {
        let c = Container::default();
        let action: HTTPGetAction = serde_json::from_value(json!({
            "port": 8080, "path": "healthz",
            "httpHeaders": [{"name": "Host", "value": "example.com"}, {"name": "X-Bad\r\n", "value": "v"}],
        }))
        .unwrap();
        let t = http_target(&action, &c, Some("10.0.0.5")).unwrap();
        assert_eq!(t.url(), "http://10.0.0.5:8080/healthz");
        let req = t.request();
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains("Host: example.com\r\n") && !req.contains("10.0.0.5"),
            "{req}"
        );
        assert!(req.contains("User-Agent: kube-probe/1.33\r\n") && !req.contains("X-Bad"));
        assert!(http_target(&action, &c, None).is_err());
        let https: HTTPGetAction =
            serde_json::from_value(json!({"port": 443, "scheme": "HTTPS"})).unwrap();
        assert!(http_target(&https, &c, Some("10.0.0.5")).is_err());
    }

    #[test]
    fn redirects_are_followed_to_the_same_host_only() {
        let from = HttpTarget {
            host: "10.0.0.5".into(),
            port: 8080,
            path: "/app/healthz".into(),
            headers: vec![("X-A".into(), "b".into())],
        };
        let to = |host: &str, port: u16, path: &str| {
            Some(HttpTarget {
                host: host.into(),
                port,
                path: path.into(),
                headers: from.headers.clone(),
            })
        };
        let cases = [
            ("/other", to("10.0.0.5", 8080, "/other")),
            ("ready", to("10.0.0.5", 8080, "/app/ready")),
            (
                "http://10.0.0.5:9090/x?y=1#frag",
                to("10.0.0.5", 9090, "/x?y=1"),
            ),
            ("http://10.0.0.5", to("10.0.0.5", 80, "/")),
            ("//10.0.0.5:81/z", to("10.0.0.5", 81, "/z")),
            ("http://10.0.0.6/", None),
            ("https://10.0.0.5/", None),
            ("http://10.0.0.5:notaport/", None),
        ];
        for (location, want) in cases {
            assert_eq!(redirect_target(&from, location), want, "{location}");
        }
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line("HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line("SSH-2.0"), None);
        assert_eq!(parse_status_line("HTTP/1.1 abc"), None);
    }

    /// A server answering every connection with `status`, or after `delay`.
    async fn serve(status: u16, delay: Duration) -> u16 {
        serve_with(status, String::new(), delay).await
    }

    /// The same with `headers` (`Name: value\r\n` lines) in the reply.
    async fn serve_with(status: u16, headers: String, delay: Duration) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let headers = headers.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let body = "ok";
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\n{headers}Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                });
            }
        });
        port
    }

    async fn refused_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
        // Dropped here: nothing listens any more.
    }

    fn target(port: u16) -> HttpTarget {
        HttpTarget {
            host: "127.0.0.1".into(),
            port,
            path: "/".into(),
            headers: vec![],
        }
    }

    #[tokio::test]
    async fn http_probes_against_a_test_server() {
        let second = Duration::from_secs(1);
        let ok = serve(200, Duration::ZERO).await;
        assert_eq!(http_get(&target(ok), second).await, S("ok".into()));
        let broken = serve(500, Duration::ZERO).await;
        let terminated = W("Probe terminated redirects, Response body: ok".into());
        // (Location of a 302, outcome)
        let redirects = [
            (None, terminated.clone()),
            (Some("http://example.invalid/".to_string()), terminated),
            // Same host: followed, to a 500.
            (
                Some(format!("http://127.0.0.1:{broken}/x")),
                F("HTTP probe failed with statuscode: 500".into()),
            ),
            (Some(format!("http://127.0.0.1:{ok}/x")), S("ok".into())),
        ];
        for (location, want) in redirects {
            let headers = location
                .as_ref()
                .map(|l| format!("Location: {l}\r\n"))
                .unwrap_or_default();
            let port = serve_with(302, headers, Duration::ZERO).await;
            assert_eq!(http_get(&target(port), second).await, want, "{location:?}");
        }
        let looping = serve_with(302, "Location: /again\r\n".into(), Duration::ZERO).await;
        assert_eq!(
            http_get(&target(looping), second).await,
            F(format!(
                "Get \"http://127.0.0.1:{looping}/again\": stopped after 10 redirects"
            ))
        );
        assert_eq!(
            http_get(&target(broken), second).await,
            F("HTTP probe failed with statuscode: 500".into())
        );
        let refused = refused_port().await;
        assert_eq!(
            http_get(&target(refused), second).await,
            F(format!(
                "Get \"http://127.0.0.1:{refused}/\": dial tcp 127.0.0.1:{refused}: connect: connection refused"
            ))
        );
        // A 200 whose body never ends is still a 200.
        let open = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open_port = open.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = open.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\npartial").await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                });
            }
        });
        assert_eq!(
            http_get(&target(open_port), Duration::from_millis(300)).await,
            S("partial".into())
        );
        let slow = serve(200, Duration::from_secs(5)).await;
        let timeout = http_get(&target(slow), Duration::from_millis(200)).await;
        assert!(
            matches!(&timeout, F(m) if m.contains("context deadline exceeded")),
            "{timeout:?}"
        );
    }

    #[tokio::test]
    async fn tcp_probes_against_a_test_server() {
        let second = Duration::from_secs(1);
        let ok = serve(200, Duration::ZERO).await;
        assert_eq!(tcp_socket("127.0.0.1", ok, second).await, S(String::new()));
        let refused = refused_port().await;
        assert_eq!(
            tcp_socket("127.0.0.1", refused, second).await,
            F(format!(
                "dial tcp 127.0.0.1:{refused}: connect: connection refused"
            ))
        );
        assert_eq!(
            outcome_event(
                ProbeKind::Readiness,
                &tcp_socket("127.0.0.1", refused, second).await
            ),
            Some((
                "Unhealthy",
                format!("Readiness probe failed: dial tcp 127.0.0.1:{refused}: connect: connection refused")
            ))
        );
    }

    /// An exec prober answering with a fixed exit code.
    struct Exits(i32);

    #[async_trait]
    impl ExecProber for Exits {
        async fn exec(&self, _: &str, _: &[String], _: Duration) -> Result<(i32, String), String> {
            Ok((self.0, "output".into()))
        }
    }

    #[tokio::test]
    async fn exec_probes_succeed_on_exit_zero_and_grpc_errors_clearly() {
        let c = Container::default();
        let seen = running("c1", true);
        let exec: Probe = serde_json::from_value(json!({"exec": {"command": ["true"]}})).unwrap();
        let ok = run_probe(&exec, &c, &seen, Duration::from_secs(1), &Exits(0)).await;
        assert!(!matches!(ok, E(_)), "{ok:?}");
        let failed = run_probe(&exec, &c, &seen, Duration::from_secs(1), &Exits(1)).await;
        assert!(!matches!(failed, E(_)), "{failed:?}");
        assert_ne!(format!("{ok:?}"), format!("{failed:?}"));
        let grpc: Probe = serde_json::from_value(json!({"grpc": {"port": 9000}})).unwrap();
        let out = run_probe(&grpc, &c, &seen, Duration::from_secs(1), &Exits(0)).await;
        assert!(matches!(out, E(_)));
    }
}
