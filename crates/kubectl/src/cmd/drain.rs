//! `tug drain`: cordon a node, then evict (or delete) its pods, as
//! kubectl's drain helper (`k8s.io/kubectl/pkg/drain`) does.
//!
//! The pods on the node pass kubectl's filters in its order (deleted too
//! long ago, DaemonSet-managed, mirror, local storage, unreplicated); the
//! first filter that keeps a pod decides, and a refusal anywhere stops the
//! whole node with kubectl's aggregated error. The rest are evicted
//! concurrently through `pods/eviction`; a 429 (a PodDisruptionBudget
//! would be violated) is retried every 5 s until `--timeout`, and each
//! eviction is followed until the pod is gone. Filters, messages and Go
//! durations are pure functions with unit tests; the I/O is in `run`.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::cordon::{bare, check_node_args, nodes, set_unschedulable};
use super::DryRun;
use kube::config::KubeConfigOptions;

use crate::ctx::{load_kubeconfig, ConnectArgs, Ctx};
use crate::error::{CliError, Result};

/// Drain node in preparation for maintenance.
///
/// The given node will be marked unschedulable to prevent new pods from
/// arriving. 'drain' evicts the pods through the eviction API, honouring
/// PodDisruptionBudgets (or deletes them with --disable-eviction). Mirror
/// pods are left alone. DaemonSet-managed pods are never deleted, and drain
/// will not proceed without --ignore-daemonsets while there are any. Pods
/// with emptyDir volumes need --delete-emptydir-data, and pods no controller
/// manages need --force.
///
/// 'drain' waits for graceful termination. When you are ready to put the
/// node back into service, use 'tug uncordon'.
///
/// Examples:
///   # Drain node "foo", even if there are pods not managed by a controller
///   tug drain foo --force
///
///   # As above, but abort if there are pods not managed by a controller,
///   # and use a grace period of 15 minutes
///   tug drain foo --grace-period=900
///
///   # Drain a node running DaemonSet pods and pods with emptyDir volumes,
///   # giving up after two minutes
///   tug drain foo --ignore-daemonsets --delete-emptydir-data --timeout=2m
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct DrainArgs {
    /// The node to drain.
    pub node: Vec<String>,
    /// Selector (label query) to filter nodes on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Label selector to filter pods on the node.
    #[arg(long)]
    pub pod_selector: Option<String>,
    /// Ignore DaemonSet-managed pods.
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Continue even if there are pods using emptyDir (local data that will
    /// be deleted when the node is drained).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    /// Continue even if there are pods that do not declare a controller.
    #[arg(long)]
    pub force: bool,
    /// Period of time in seconds given to each pod to terminate gracefully.
    /// If negative, the default value specified in the pod will be used.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// The length of time to wait before giving up, zero means infinite.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Force drain to use delete, even if eviction is supported.
    #[arg(long)]
    pub disable_eviction: bool,
    /// If positive, skip waiting for pods deleted longer ago than this many
    /// seconds.
    #[arg(long, default_value_t = 0)]
    pub skip_wait_for_delete_timeout: i64,
    /// Must be "none", "server", or "client".
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
}

const DAEMONSET_FATAL: &str = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)";
const DAEMONSET_WARNING: &str = "ignoring DaemonSet-managed Pods";
const LOCAL_STORAGE_FATAL: &str =
    "Pods with local storage (use --delete-emptydir-data to override)";
const LOCAL_STORAGE_WARNING: &str = "deleting Pods with local storage";
const UNMANAGED_FATAL: &str =
    "cannot delete Pods that declare no controller (use --force to override)";
const UNMANAGED_WARNING: &str = "deleting Pods that declare no controller";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What the filters decided for one pod (kubectl's `PodDeleteStatus`).
#[derive(Debug, Clone, PartialEq)]
pub struct PodStatus {
    pub delete: bool,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    Okay,
    Skip,
    Warning(String),
    Error(String),
}

impl PodStatus {
    fn okay() -> PodStatus {
        PodStatus {
            delete: true,
            reason: Reason::Okay,
        }
    }
    fn skip() -> PodStatus {
        PodStatus {
            delete: false,
            reason: Reason::Skip,
        }
    }
    fn warning(delete: bool, m: &str) -> PodStatus {
        PodStatus {
            delete,
            reason: Reason::Warning(m.to_string()),
        }
    }
    fn error(m: &str) -> PodStatus {
        PodStatus {
            delete: false,
            reason: Reason::Error(m.to_string()),
        }
    }
}

/// The flags the filters read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    pub ignore_daemonsets: bool,
    pub delete_emptydir_data: bool,
    pub force: bool,
    pub skip_wait_for_delete_timeout: i64,
}

/// What a GET of a pod's owning DaemonSet found.
#[derive(Debug, Clone, PartialEq)]
pub enum DaemonSetLookup {
    Found,
    /// NotFound, with the server's message.
    Missing(String),
    /// Any other failure, with its message.
    Failed(String),
}

/// The pod's controller owner reference, if any.
fn controller_of(pod: &Value) -> Option<&Value> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true))
}

/// The DaemonSet controlling the pod, if one does: its name.
pub fn daemonset_owner(pod: &Value) -> Option<&str> {
    controller_of(pod)
        .filter(|r| r["kind"] == "DaemonSet")
        .and_then(|r| r["name"].as_str())
}

fn finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// Deleted more than `skip` seconds ago (kubectl's `shouldSkipPod`).
fn should_skip(pod: &Value, skip: i64, now: DateTime<Utc>) -> bool {
    let Some(ts) = pod["metadata"]["deletionTimestamp"].as_str() else {
        return false;
    };
    let Ok(ts) = DateTime::parse_from_rfc3339(ts) else {
        return false;
    };
    skip > 0 && (now - ts.with_timezone(&Utc)).num_seconds() > skip
}

/// Run kubectl's filters over one pod, in kubectl's order; the first that
/// does not delete the pod decides, otherwise the last one's verdict
/// stands (so only its warning survives, as upstream notes).
pub fn filter_pod(
    pod: &Value,
    flags: &Flags,
    ds: Option<&DaemonSetLookup>,
    now: DateTime<Utc>,
) -> PodStatus {
    let filters: [&dyn Fn() -> PodStatus; 5] = [
        &|| {
            if should_skip(pod, flags.skip_wait_for_delete_timeout, now) {
                PodStatus::skip()
            } else {
                PodStatus::okay()
            }
        },
        &|| {
            if daemonset_owner(pod).is_none() || finished(pod) {
                return PodStatus::okay();
            }
            match ds {
                Some(DaemonSetLookup::Missing(m)) if flags.force => PodStatus::warning(true, m),
                Some(DaemonSetLookup::Missing(m) | DaemonSetLookup::Failed(m)) => {
                    PodStatus::error(m)
                }
                _ if !flags.ignore_daemonsets => PodStatus::error(DAEMONSET_FATAL),
                _ => PodStatus::warning(false, DAEMONSET_WARNING),
            }
        },
        &|| {
            if pod["metadata"]["annotations"]
                .get(MIRROR_ANNOTATION)
                .is_some()
            {
                PodStatus::skip()
            } else {
                PodStatus::okay()
            }
        },
        &|| {
            let local = pod["spec"]["volumes"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v.get("emptyDir").is_some()));
            if !local || finished(pod) {
                PodStatus::okay()
            } else if !flags.delete_emptydir_data {
                PodStatus::error(LOCAL_STORAGE_FATAL)
            } else {
                PodStatus::warning(true, LOCAL_STORAGE_WARNING)
            }
        },
        &|| {
            if finished(pod) || controller_of(pod).is_some() {
                PodStatus::okay()
            } else if flags.force {
                PodStatus::warning(true, UNMANAGED_WARNING)
            } else {
                PodStatus::error(UNMANAGED_FATAL)
            }
        },
    ];
    let mut status = PodStatus::okay();
    for f in filters {
        status = f();
        if !status.delete {
            break;
        }
    }
    status
}

/// `namespace/name` of a pod.
fn pod_key(pod: &Value) -> String {
    format!(
        "{}/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or(""),
        pod["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// Group pod keys by message, in order of first appearance (kubectl uses a
/// Go map, so its order varies between runs when there are several).
fn grouped(
    items: &[(Value, PodStatus)],
    pick: fn(&Reason) -> Option<&str>,
) -> Vec<(&str, Vec<String>)> {
    let mut out: Vec<(&str, Vec<String>)> = Vec::new();
    for (pod, status) in items {
        let Some(m) = pick(&status.reason) else {
            continue;
        };
        let m = if m.is_empty() { "unexpected error" } else { m };
        match out.iter_mut().find(|(k, _)| *k == m) {
            Some((_, pods)) => pods.push(pod_key(pod)),
            None => out.push((m, vec![pod_key(pod)])),
        }
    }
    out
}

/// kubectl's `errors()`: one "cannot delete MSG: ns/a, ns/b" per message.
pub fn refusals(items: &[(Value, PodStatus)]) -> Vec<String> {
    fn pick(r: &Reason) -> Option<&str> {
        match r {
            Reason::Error(m) => Some(m),
            _ => None,
        }
    }
    grouped(items, pick)
        .into_iter()
        .map(|(m, pods)| format!("cannot delete {m}: {}", pods.join(", ")))
        .collect()
}

/// kubectl's `Warnings()`: "MSG: ns/a, ns/b; MSG2: ..." (empty: none).
pub fn warnings(items: &[(Value, PodStatus)]) -> String {
    fn pick(r: &Reason) -> Option<&str> {
        match r {
            Reason::Warning(m) => Some(m),
            _ => None,
        }
    }
    grouped(items, pick)
        .into_iter()
        .map(|(m, pods)| format!("{m}: {}", pods.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Go's `utilerrors.NewAggregate(errs).Error()`: one message as is,
/// several in brackets.
pub fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Parse a Go duration (`10s`, `1m30s`, `1.5h`, `500ms`, `0`).
pub fn parse_go_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {s:?}"))?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(format!("time: unknown unit {other:?} in duration {s:?}")),
        };
        total += n * nanos;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Format a duration as Go's `Duration.String()` does (`10s`, `1m30s`,
/// `2h0m0s`, `1.5s`, `500ms`).
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let frac = |v: u128, unit: u128| -> String {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let digits = unit.to_string().len() - 1;
        let f = format!("{rest:0digits$}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", frac(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", frac(nanos, 1_000_000));
    }
    let secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let s = frac(s * 1_000_000_000 + sub, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// The options a node's drain runs with.
struct Plan {
    flags: Flags,
    pod_selector: Option<String>,
    grace_period: i64,
    disable_eviction: bool,
    dry: DryRun,
    /// `None`: no timeout.
    timeout: Option<Duration>,
    deadline: Option<Instant>,
}

impl Plan {
    fn timeout_text(&self) -> String {
        // Go prints the MaxInt64 duration kubectl uses for "no timeout".
        self.timeout
            .map(go_duration)
            .unwrap_or_else(|| "2562047h47m16.854775807s".into())
    }

    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Print a line to stdout; a closed pipe must not stop a drain half-way.
fn say(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// A client like `ctx`'s but without kube-rs's automatic retry of 429s:
/// a disruption budget's 429 must reach drain, which reports it and
/// retries on kubectl's schedule.
async fn eviction_client(connect: &ConnectArgs) -> Result<kube::Client> {
    let kc = load_kubeconfig(connect)?;
    let opts = KubeConfigOptions {
        context: connect.context.clone(),
        cluster: None,
        user: None,
    };
    let mut config = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| CliError::client(e.to_string()))?;
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| CliError::client(e.to_string()))
}

pub async fn run(ctx: &Ctx, connect: &ConnectArgs, a: DrainArgs) -> Result<()> {
    check_node_args("drain", &a.node, a.selector.as_deref())?;
    let dry = DryRun::parse(&a.dry_run)?;
    let timeout = parse_go_duration(&a.timeout).map_err(|e| {
        CliError::client(format!(
            "invalid argument {:?} for \"--timeout\" flag: {e}\nSee 'tug drain --help' for usage.",
            a.timeout
        ))
    })?;
    let timeout = (!timeout.is_zero()).then_some(timeout);
    if let Some(sel) = a.pod_selector.as_deref().filter(|s| !s.is_empty()) {
        if api::selector::parse(sel).is_err() {
            return Err(CliError::client(
                "--pod-selector=<pod_selector> must be a valid label selector",
            ));
        }
    }
    let plan = Plan {
        flags: Flags {
            ignore_daemonsets: a.ignore_daemonsets,
            delete_emptydir_data: a.delete_emptydir_data,
            force: a.force,
            skip_wait_for_delete_timeout: a.skip_wait_for_delete_timeout,
        },
        pod_selector: a.pod_selector.clone().filter(|s| !s.is_empty()),
        grace_period: a.grace_period,
        disable_eviction: a.disable_eviction,
        dry,
        timeout,
        deadline: None,
    };
    let nodes = nodes(ctx, &a.node, a.selector.as_deref()).await?;
    let evictor = eviction_client(connect).await?;
    // kubectl cordons every node first, then drains them one by one.
    for node in &nodes {
        match set_unschedulable(ctx, node, true, dry).await {
            Ok(line) => say(&line),
            Err(e) => eprintln!(
                "error: unable to cordon node {:?}: {}",
                node["metadata"]["name"].as_str().unwrap_or(""),
                bare(&e)
            ),
        }
    }
    let mut pending = Vec::new();
    let mut errors = Vec::new();
    for node in &nodes {
        let name = node["metadata"]["name"].as_str().unwrap_or("");
        let plan = Plan {
            deadline: plan.timeout.map(|t| Instant::now() + t),
            pod_selector: plan.pod_selector.clone(),
            ..plan
        };
        match drain_node(ctx, &evictor, name, &plan).await {
            Ok(()) => say(&format!("node/{name} drained{}", dry.suffix())),
            Err(errs) => {
                eprintln!(
                    "error: unable to drain node {name:?} due to error: {}, continuing command...",
                    aggregate(&errs)
                );
                pending.push(name.to_string());
                errors.extend(errs);
            }
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let mut text = String::from("There are pending nodes to be drained:\n");
    for n in &pending {
        text.push_str(&format!(" {n}\n"));
    }
    // kubectl prints a multi-error aggregate one message per line, bare.
    text.push_str(&errors.join("\n"));
    Err(CliError::Plain(text))
}

/// The pods on `node` the selector picks.
async fn pods_on(ctx: &Ctx, node: &str, plan: &Plan) -> Result<Vec<Value>> {
    let mut lp = kube::api::ListParams::default().fields(&format!("spec.nodeName={node}"));
    if let Some(sel) = &plan.pod_selector {
        lp = lp.labels(sel);
    }
    let req = kube::core::Request::new("/api/v1/pods").list(&lp)?;
    let list = ctx.send(req).await?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// Filter the node's pods: every pod with kubectl's verdict.
async fn classify(ctx: &Ctx, node: &str, plan: &Plan) -> Result<Vec<(Value, PodStatus)>> {
    let pods = pods_on(ctx, node, plan).await?;
    let now = Utc::now();
    let mut out = Vec::with_capacity(pods.len());
    for pod in pods {
        let ds = match daemonset_owner(&pod) {
            Some(ds) if !finished(&pod) => {
                let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
                let url = format!("/apis/apps/v1/namespaces/{ns}/daemonsets/{ds}");
                let req = http::Request::get(url)
                    .body(Vec::new())
                    .map_err(CliError::client)?;
                Some(match ctx.send(req).await {
                    Ok(_) => DaemonSetLookup::Found,
                    Err(e) if e.is_not_found() => DaemonSetLookup::Missing(bare(&e)),
                    Err(e) => DaemonSetLookup::Failed(bare(&e)),
                })
            }
            _ => None,
        };
        let status = filter_pod(&pod, &plan.flags, ds.as_ref(), now);
        out.push((pod, status));
    }
    Ok(out)
}

/// Drain one node; `Err` holds kubectl's error messages.
async fn drain_node(
    ctx: &Ctx,
    evictor: &kube::Client,
    node: &str,
    plan: &Plan,
) -> std::result::Result<(), Vec<String>> {
    let items = classify(ctx, node, plan)
        .await
        .map_err(|e| vec![bare(&e)])?;
    let refused = refusals(&items);
    if !refused.is_empty() {
        return Err(refused);
    }
    let w = warnings(&items);
    if !w.is_empty() {
        eprintln!("Warning: {w}");
    }
    let pods: Vec<&Value> = items
        .iter()
        .filter(|(_, s)| s.delete)
        .map(|(p, _)| p)
        .collect();
    if plan.dry == DryRun::Client {
        for p in &pods {
            say(&format!("evicting pod {} (dry run)", pod_key(p)));
        }
        return Ok(());
    }
    let result = if plan.disable_eviction {
        delete_pods(ctx, &pods, plan).await
    } else {
        let outcomes = join_all(pods.iter().map(|p| evict_pod(ctx, evictor, p, plan))).await;
        let errs: Vec<String> = outcomes.into_iter().filter_map(|r| r.err()).collect();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    };
    if let Err(errs) = &result {
        // As kubectl: say which pods are still there.
        if let Ok(now) = classify(ctx, node, plan).await {
            let left: Vec<&Value> = now
                .iter()
                .filter(|(_, s)| s.delete)
                .map(|(p, _)| p)
                .collect();
            if !left.is_empty() {
                eprintln!(
                    "There are pending pods in node {node:?} when an error occurred: {}",
                    aggregate(errs)
                );
                for p in left {
                    eprintln!("pod/{}", p["metadata"]["name"].as_str().unwrap_or(""));
                }
            }
        }
    }
    result
}

fn delete_options(plan: &Plan) -> Value {
    let mut o = json!({});
    if plan.grace_period >= 0 {
        o["gracePeriodSeconds"] = json!(plan.grace_period);
    }
    if plan.dry == DryRun::Server {
        o["dryRun"] = json!(["All"]);
    }
    o
}

fn pod_url(pod: &Value) -> String {
    format!(
        "/api/v1/namespaces/{}/pods/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or(""),
        pod["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// Evict one pod, retrying while a disruption budget forbids it, then wait
/// for it to be gone.
async fn evict_pod(
    ctx: &Ctx,
    evictor: &kube::Client,
    pod: &Value,
    plan: &Plan,
) -> std::result::Result<(), String> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let body = json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns},
        "deleteOptions": delete_options(plan),
    });
    loop {
        let note = if plan.dry == DryRun::Server {
            " (server dry run)"
        } else {
            ""
        };
        say(&format!("evicting pod {ns}/{name}{note}"));
        if plan.expired() {
            return Err(format!(
                "error when evicting pods/{name:?} -n {ns:?}: global timeout reached: {}",
                plan.timeout_text()
            ));
        }
        let req = http::Request::post(format!("{}/eviction", pod_url(pod)))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .map_err(|e| e.to_string())?;
        match evictor.request::<Value>(req).await.map_err(CliError::from) {
            Ok(_) => break,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(CliError::Server { reason, message }) if reason == "TooManyRequests" => {
                eprintln!(
                    "error when evicting pods/{name:?} -n {ns:?} (will retry after 5s): {message}"
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => {
                return Err(format!(
                    "error when evicting pods/{name:?} -n {ns:?}: {}",
                    bare(&e)
                ))
            }
        }
    }
    if plan.dry == DryRun::Server {
        return Ok(());
    }
    wait_gone(ctx, &[pod], plan, "evicted").await.map_err(|e| {
        format!("error when waiting for pod {name:?} in namespace {ns:?} to terminate: {e}")
    })
}

/// Delete the pods (`--disable-eviction`), then wait for them to go.
async fn delete_pods(
    ctx: &Ctx,
    pods: &[&Value],
    plan: &Plan,
) -> std::result::Result<(), Vec<String>> {
    for pod in pods {
        let req = http::Request::delete(pod_url(pod))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&delete_options(plan)).unwrap_or_default())
            .map_err(|e| vec![e.to_string()])?;
        match ctx.send(req).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(vec![bare(&e)]),
        }
    }
    if plan.dry == DryRun::Server {
        return Ok(());
    }
    wait_gone(ctx, pods, plan, "deleted")
        .await
        .map_err(|e| vec![e])
}

/// Poll every second until each pod is gone (or replaced by a pod of the
/// same name with another UID), printing `pod/x <verb>` for each.
async fn wait_gone(
    ctx: &Ctx,
    pods: &[&Value],
    plan: &Plan,
    verb: &str,
) -> std::result::Result<(), String> {
    let mut left: Vec<&Value> = pods.to_vec();
    loop {
        let mut still = Vec::new();
        for pod in left {
            let req = http::Request::get(pod_url(pod))
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            match ctx.send(req).await {
                Err(e) if e.is_not_found() => say(&format!(
                    "pod/{} {verb}",
                    pod["metadata"]["name"].as_str().unwrap_or("")
                )),
                Err(e) => return Err(bare(&e)),
                Ok(now) if now["metadata"]["uid"] != pod["metadata"]["uid"] => say(&format!(
                    "pod/{} {verb}",
                    pod["metadata"]["name"].as_str().unwrap_or("")
                )),
                Ok(now) => {
                    let skip = plan.flags.skip_wait_for_delete_timeout;
                    if should_skip(&now, skip, Utc::now()) {
                        say(&format!(
                            "pod {} deletionTimestamp older than {skip} seconds, skipping waiting for pod",
                            pod["metadata"]["name"].as_str().unwrap_or("")
                        ));
                    } else {
                        still.push(pod);
                    }
                }
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if plan.expired() {
            return Err(format!("global timeout reached: {}", plan.timeout_text()));
        }
        left = still;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, owner: Option<&str>, empty_dir: bool, phase: &str) -> Value {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": phase},
        });
        if let Some(kind) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": kind, "name": "owner", "controller": true}]);
        }
        if empty_dir {
            p["spec"]["volumes"] = json!([{"name": "s", "emptyDir": {}}]);
        }
        p
    }

    #[test]
    fn filters_follow_kubectl() {
        let none = Flags::default();
        let all = Flags {
            ignore_daemonsets: true,
            delete_emptydir_data: true,
            force: true,
            skip_wait_for_delete_timeout: 0,
        };
        let found = DaemonSetLookup::Found;
        let missing = DaemonSetLookup::Missing("daemonsets.apps \"owner\" not found".into());
        let mut mirror = pod("m", None, false, "Running");
        mirror["metadata"]["annotations"] = json!({MIRROR_ANNOTATION: "x"});
        let cases = [
            (
                pod("rs", Some("ReplicaSet"), false, "Running"),
                none,
                None,
                PodStatus::okay(),
            ),
            (
                pod("ds", Some("DaemonSet"), false, "Running"),
                none,
                Some(&found),
                PodStatus::error(DAEMONSET_FATAL),
            ),
            (
                pod("ds", Some("DaemonSet"), false, "Running"),
                all,
                Some(&found),
                PodStatus::warning(false, DAEMONSET_WARNING),
            ),
            (
                pod("ds", Some("DaemonSet"), false, "Succeeded"),
                none,
                None,
                PodStatus::okay(),
            ),
            (
                pod("ds", Some("DaemonSet"), false, "Running"),
                none,
                Some(&missing),
                PodStatus::error("daemonsets.apps \"owner\" not found"),
            ),
            // An orphan is deleted with --force; as upstream, the later
            // filters overwrite its warning.
            (
                pod("ds", Some("DaemonSet"), false, "Running"),
                all,
                Some(&missing),
                PodStatus::okay(),
            ),
            (mirror, none, None, PodStatus::skip()),
            (
                pod("e", Some("ReplicaSet"), true, "Running"),
                none,
                None,
                PodStatus::error(LOCAL_STORAGE_FATAL),
            ),
            // The local-storage warning is overwritten by the last filter.
            (
                pod("e", Some("ReplicaSet"), true, "Running"),
                all,
                None,
                PodStatus::okay(),
            ),
            (
                pod("e", None, true, "Running"),
                none,
                None,
                PodStatus::error(LOCAL_STORAGE_FATAL),
            ),
            (
                pod("b", None, false, "Running"),
                none,
                None,
                PodStatus::error(UNMANAGED_FATAL),
            ),
            (
                pod("b", None, false, "Running"),
                all,
                None,
                PodStatus::warning(true, UNMANAGED_WARNING),
            ),
            (
                pod("b", None, false, "Failed"),
                none,
                None,
                PodStatus::okay(),
            ),
        ];
        let now = Utc::now();
        for (p, flags, ds, want) in cases {
            assert_eq!(filter_pod(&p, &flags, ds, now), want, "{p}");
        }
    }

    #[test]
    fn pods_deleted_long_ago_are_skipped_when_asked() {
        let mut p = pod("old", Some("ReplicaSet"), false, "Running");
        p["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        let flags = Flags {
            skip_wait_for_delete_timeout: 10,
            ..Flags::default()
        };
        assert_eq!(filter_pod(&p, &flags, None, Utc::now()), PodStatus::skip());
        assert_eq!(
            filter_pod(&p, &Flags::default(), None, Utc::now()),
            PodStatus::okay()
        );
    }

    #[test]
    fn messages_match_kubectl() {
        let items = vec![
            (
                pod("bare", None, false, "Running"),
                PodStatus::error(UNMANAGED_FATAL),
            ),
            (
                pod("ds-a", None, false, "Running"),
                PodStatus::error(DAEMONSET_FATAL),
            ),
            (pod("rs-a", None, false, "Running"), PodStatus::okay()),
            (
                pod("scratch", None, false, "Running"),
                PodStatus::error(UNMANAGED_FATAL),
            ),
        ];
        assert_eq!(
            refusals(&items),
            [
                "cannot delete cannot delete Pods that declare no controller (use --force to override): default/bare, default/scratch",
                "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/ds-a",
            ]
        );
        let items = vec![
            (
                pod("bare", None, false, "Running"),
                PodStatus::warning(true, UNMANAGED_WARNING),
            ),
            (
                pod("ds-a", None, false, "Running"),
                PodStatus::warning(false, DAEMONSET_WARNING),
            ),
            (
                pod("x", None, false, "Running"),
                PodStatus::warning(true, UNMANAGED_WARNING),
            ),
        ];
        assert_eq!(
            warnings(&items),
            "deleting Pods that declare no controller: default/bare, default/x; ignoring DaemonSet-managed Pods: default/ds-a"
        );
        assert_eq!(warnings(&[]), "");
        assert_eq!(aggregate(&["a".into()]), "a");
        assert_eq!(aggregate(&["a".into(), "b".into()]), "[a, b]");
    }

    #[test]
    fn go_durations() {
        let cases = [
            ("10s", 10_000, "10s"),
            ("90s", 90_000, "1m30s"),
            ("5m", 300_000, "5m0s"),
            ("1h", 3_600_000, "1h0m0s"),
            ("1.5s", 1_500, "1.5s"),
            ("500ms", 500, "500ms"),
            ("1m30s", 90_000, "1m30s"),
            ("0", 0, "0s"),
            ("0s", 0, "0s"),
        ];
        for (text, ms, shown) in cases {
            let d = parse_go_duration(text).unwrap();
            assert_eq!(d, Duration::from_millis(ms), "{text}");
            assert_eq!(go_duration(d), shown, "{text}");
        }
        for bad in ["", "abc", "10", "10x", "s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_go_duration("abc").unwrap_err(),
            "time: invalid duration \"abc\""
        );
    }
}
