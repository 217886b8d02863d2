//! `tug rollout status|history|undo|restart|pause|resume` for Deployments,
//! DaemonSets and StatefulSets, as kubectl's rollout commands.
//!
//! The pure parts are upstream's: the status viewers (the progress line a
//! workload's status gives, and whether it is done), the history table
//! built from ReplicaSets' `deployment.kubernetes.io/revision` (or
//! ControllerRevisions' `revision`), and the rollback choice (which
//! revision, and whether the current template already matches it). The I/O
//! around them: `status` watches the object (never polls), `undo` writes
//! the chosen template back with a JSON patch (Deployments) or the
//! ControllerRevision's own strategic-merge patch (DaemonSets,
//! StatefulSets), `restart` patches `kubectl.kubernetes.io/restartedAt`
//! into the pod template, `pause`/`resume` flip `spec.paused`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::watch_until::{selector_string, until, Seen};
use super::{get_one, patch_raw, select, DryRun, Target};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};

/// Manage the rollout of one or many resources.
///
/// Valid resource types include: deployments, daemonsets, statefulsets.
///
/// Examples:
///   # Rollback to the previous deployment
///   tug rollout undo deployment/abc
///
///   # Check the rollout status of a daemonset
///   tug rollout status daemonset/foo
///
///   # Restart a deployment
///   tug rollout restart deployment/abc
#[derive(Debug, Clone, clap::Subcommand)]
#[command(verbatim_doc_comment)]
pub enum RolloutCommand {
    Status(StatusArgs),
    History(HistoryArgs),
    Undo(UndoArgs),
    /// Restart a resource: its pods are replaced by a rolling update
    #[command(
        long_about = "Restart a resource.\n\nResource rollout will be restarted: the pod template gets a kubectl.kubernetes.io/restartedAt annotation, so its pods are replaced by a rolling update."
    )]
    Restart(TargetArgs),
    /// Mark the provided resource as paused
    #[command(
        long_about = "Mark the provided resource as paused.\n\nPaused resources will not be reconciled by a controller. Use \"tug rollout resume\" to resume a paused resource. Currently only deployments support being paused."
    )]
    Pause(TargetArgs),
    /// Resume a paused resource
    #[command(
        long_about = "Resume a paused resource.\n\nPaused resources will not be reconciled by a controller. By resuming a resource, we allow it to be reconciled again. Currently only deployments support being resumed."
    )]
    Resume(TargetArgs),
}

/// Show the status of the rollout.
///
/// By default 'rollout status' watches the status of the latest rollout
/// until it is done. Use --watch=false to print the current status once.
/// Use --revision=N to pin a revision and fail if it is rolled over by
/// another one.
///
/// Examples:
///   # Watch the rollout status of a deployment
///   tug rollout status deployment/nginx
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    /// (TYPE NAME | TYPE/NAME)
    pub resources: Vec<String>,
    /// Files identifying the resource.
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
    /// Watch the status of the rollout until it's done.
    #[arg(short = 'w', long, default_value = "true", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub watch: bool,
    /// Pin to a specific revision for showing its status. Defaults to 0
    /// (last revision).
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
    /// The length of time to wait before ending watch, zero means never.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// View previous rollout revisions and configurations.
///
/// Examples:
///   # View the rollout history of a deployment
///   tug rollout history deployment/abc
///
///   # View the details of daemonset revision 3
///   tug rollout history daemonset/abc --revision=3
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct HistoryArgs {
    /// (TYPE NAME | TYPE/NAME) ...
    pub resources: Vec<String>,
    /// Files identifying the resources.
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
    /// See the details, including podTemplate of the revision specified.
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// Roll back to a previous rollout.
///
/// Examples:
///   # Roll back to the previous deployment
///   tug rollout undo deployment/abc
///
///   # Roll back to daemonset revision 3
///   tug rollout undo daemonset/abc --to-revision=3
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct UndoArgs {
    /// (TYPE NAME | TYPE/NAME) ...
    pub resources: Vec<String>,
    /// Files identifying the resources.
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
    /// The revision to rollback to. Default to 0 (last revision).
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
    /// Must be "none", "server", or "client". With client, only print the
    /// template that would be rolled back to.
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// The resources `restart`, `pause` and `resume` act on.
///
/// Examples:
///   tug rollout restart deployment/nginx
///   tug rollout pause deployment/nginx
///   tug rollout resume deployment/nginx
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct TargetArgs {
    /// RESOURCE ...
    pub resources: Vec<String>,
    /// Files identifying the resources.
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

pub async fn run(ctx: &Ctx, c: RolloutCommand) -> Result<()> {
    match c {
        RolloutCommand::Status(a) => status(ctx, a).await,
        RolloutCommand::History(a) => history(ctx, a).await,
        RolloutCommand::Undo(a) => undo(ctx, a).await,
        RolloutCommand::Restart(a) => restart(ctx, a).await,
        RolloutCommand::Pause(a) => pause(ctx, a, true).await,
        RolloutCommand::Resume(a) => pause(ctx, a, false).await,
    }
}

/// The rollout-capable kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Deployment,
    DaemonSet,
    StatefulSet,
}

impl Kind {
    fn of(t: &Target) -> Option<Kind> {
        match (t.0.group.as_str(), t.0.kind.as_str()) {
            ("apps", "Deployment") => Some(Kind::Deployment),
            ("apps", "DaemonSet") => Some(Kind::DaemonSet),
            ("apps", "StatefulSet") => Some(Kind::StatefulSet),
            _ => None,
        }
    }
}

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

/// Upstream's status viewers: the line to print for the object's current
/// state and whether the rollout is done; `Err` ends the watch.
pub fn rollout_status(kind: Kind, obj: &Value, revision: i64) -> Result<(String, bool), String> {
    let name = name_of(obj);
    let generation = i(&obj["metadata"]["generation"]);
    let st = &obj["status"];
    let spec = &obj["spec"];
    match kind {
        Kind::Deployment => {
            if revision > 0 {
                let running = obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .and_then(|r| r.parse::<i64>().ok())
                    .unwrap_or(0);
                if revision != running {
                    return Err(format!(
                        "desired revision ({revision}) is different from the running revision ({running})"
                    ));
                }
            }
            if generation > i(&st["observedGeneration"]) {
                return Ok((
                    "Waiting for deployment spec update to be observed...\n".into(),
                    false,
                ));
            }
            let timed_out = st["conditions"]
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or(&[])
                .iter()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded");
            if timed_out {
                return Err(format!(
                    "deployment {name:?} exceeded its progress deadline"
                ));
            }
            let updated = i(&st["updatedReplicas"]);
            if let Some(want) = spec["replicas"].as_i64() {
                if updated < want {
                    return Ok((format!("Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated...\n"), false));
                }
            }
            let replicas = i(&st["replicas"]);
            if replicas > updated {
                return Ok((format!("Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...\n", replicas - updated), false));
            }
            let available = i(&st["availableReplicas"]);
            if available < updated {
                return Ok((format!("Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available...\n"), false));
            }
            Ok((
                format!("deployment {name:?} successfully rolled out\n"),
                true,
            ))
        }
        Kind::DaemonSet => {
            if spec["updateStrategy"]["type"] != "RollingUpdate" {
                return Err(
                    "rollout status is only available for RollingUpdate strategy type".into(),
                );
            }
            if generation > i(&st["observedGeneration"]) {
                return Ok((
                    "Waiting for daemon set spec update to be observed...\n".into(),
                    false,
                ));
            }
            let desired = i(&st["desiredNumberScheduled"]);
            let updated = i(&st["updatedNumberScheduled"]);
            if updated < desired {
                return Ok((format!("Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated...\n"), false));
            }
            let available = i(&st["numberAvailable"]);
            if available < desired {
                return Ok((format!("Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available...\n"), false));
            }
            Ok((
                format!("daemon set {name:?} successfully rolled out\n"),
                true,
            ))
        }
        Kind::StatefulSet => {
            if spec["updateStrategy"]["type"] != "RollingUpdate" {
                return Err(
                    "rollout status is only available for RollingUpdate strategy type".into(),
                );
            }
            let observed = i(&st["observedGeneration"]);
            if observed == 0 || generation > observed {
                return Ok((
                    "Waiting for statefulset spec update to be observed...\n".into(),
                    false,
                ));
            }
            let want = spec["replicas"].as_i64();
            let ready = i(&st["readyReplicas"]);
            if let Some(want) = want {
                if ready < want {
                    return Ok((
                        format!("Waiting for {} pods to be ready...\n", want - ready),
                        false,
                    ));
                }
            }
            let updated = i(&st["updatedReplicas"]);
            let rolling = &spec["updateStrategy"]["rollingUpdate"];
            if rolling.is_object() {
                if let (Some(want), Some(partition)) = (want, rolling["partition"].as_i64()) {
                    if updated < want - partition {
                        return Ok((format!("Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...\n", want - partition), false));
                    }
                }
                return Ok((
                    format!(
                        "partitioned roll out complete: {updated} new pods have been updated...\n"
                    ),
                    true,
                ));
            }
            let update_rev = st["updateRevision"].as_str().unwrap_or("");
            let current_rev = st["currentRevision"].as_str().unwrap_or("");
            if update_rev != current_rev {
                return Ok((format!("waiting for statefulset rolling update to complete {updated} pods at revision {update_rev}...\n"), false));
            }
            Ok((
                format!(
                    "statefulset rolling update complete {} pods at revision {current_rev}...\n",
                    i(&st["currentReplicas"])
                ),
                true,
            ))
        }
    }
}

/// Parse a Go duration as kubectl's duration flags take it (`30s`, `1m30s`,
/// `500ms`, `0`); negative values are allowed.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {s:?}"))?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        total += n * secs;
        rest = &rest[unit_end..];
    }
    if neg {
        // Callers treat any negative duration as "a very long time".
        return Ok(Duration::MAX);
    }
    Ok(Duration::from_secs_f64(total))
}

/// Exactly one object for `status`.
async fn one_target(
    ctx: &Ctx,
    resources: &[String],
    files: &[String],
    sel: Option<&str>,
) -> Result<Vec<Target>> {
    if resources.is_empty() && files.is_empty() {
        return Err(CliError::client("required resource not specified"));
    }
    let targets = select(ctx, resources, files, sel, false).await?;
    if targets.is_empty() {
        return Err(CliError::client("no objects passed to rollout"));
    }
    Ok(targets)
}

/// The error for a kind without a status viewer, history viewer or
/// rollbacker, worded as kubectl's: kinds its GroupKind visitor knows get
/// "no X has been implemented", others the visitor's own complaint.
fn unsupported(t: &Target, what: &str) -> CliError {
    let (group, kind) = (t.0.group.as_str(), t.0.kind.as_str());
    if what == "status viewer" {
        return CliError::client(format!("no {what} has been implemented for {kind}"));
    }
    let known = matches!(
        (group, kind),
        (
            "apps" | "extensions",
            "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet"
        ) | ("", "Pod" | "ReplicationController")
            | ("batch", "Job" | "CronJob")
    );
    if known {
        let gk = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        CliError::client(format!("no {what} has been implemented for {gk:?}"))
    } else {
        let verb = if what == "rollbacker" {
            "rollbacker"
        } else {
            "history"
        };
        CliError::client(format!(
            "error retrieving {verb} for {kind:?}, no visitor method exists for {{{group} {kind}}}"
        ))
    }
}

/// A bad duration flag, worded as kubectl's flag parser words it.
pub fn bad_flag(flag: &str, value: &str, err: &str, command: &str) -> CliError {
    CliError::client(format!(
        "invalid argument {value:?} for \"--{flag}\" flag: {err}\nSee 'tug {command} --help' for usage."
    ))
}

async fn status(ctx: &Ctx, a: StatusArgs) -> Result<()> {
    let timeout = parse_duration(&a.timeout)
        .map_err(|e| bad_flag("timeout", &a.timeout, &e, "rollout status"))?;
    let targets = one_target(ctx, &a.resources, &a.filename, a.selector.as_deref()).await?;
    // One after the other, as kubectl.
    for t in &targets {
        status_one(ctx, &a, t, timeout).await?;
    }
    Ok(())
}

async fn status_one(ctx: &Ctx, a: &StatusArgs, t: &Target, timeout: Duration) -> Result<()> {
    // The object must exist (kubectl's builder fetches it first).
    let obj = get_one(ctx, t).await?;
    let kind = Kind::of(t).ok_or_else(|| unsupported(t, "status viewer"))?;
    if !a.watch {
        let (line, _) = rollout_status(kind, &obj, a.revision).map_err(CliError::Client)?;
        return crate::out(&line);
    }
    let watch = until(ctx, &t.0, t.1.as_deref(), &t.2, |seen| match seen {
        Seen::Present(o) => {
            let (line, done) = rollout_status(kind, o, a.revision).map_err(CliError::Client)?;
            crate::out(&line)?;
            Ok(done)
        }
        Seen::Deleted(_) => Err(CliError::client("object has been deleted")),
        Seen::Absent => Ok(false),
    });
    if timeout.is_zero() {
        watch.await.map(|_| ())
    } else {
        match tokio::time::timeout(timeout, watch).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(CliError::client("timed out waiting for the condition")),
        }
    }
}

/// One revision of a workload: its number, change cause and pod template
/// (ReplicaSet template, or the ControllerRevision's saved template).
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub number: i64,
    pub change_cause: String,
    pub template: Value,
    /// The whole ReplicaSet or ControllerRevision.
    pub source: Value,
}

const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// The revisions of a workload from the objects it owns: ReplicaSets carry
/// their number in an annotation, ControllerRevisions in `.revision`.
/// Objects without a readable number are skipped, as upstream does.
pub fn revisions(kind: Kind, owned: &[Value]) -> Vec<Revision> {
    let mut out: Vec<Revision> = owned
        .iter()
        .filter_map(|o| {
            let md = &o["metadata"];
            let change_cause = md["annotations"][CHANGE_CAUSE]
                .as_str()
                .unwrap_or("")
                .to_string();
            let (number, template) = match kind {
                Kind::Deployment => (
                    md["annotations"][REVISION_ANNOTATION]
                        .as_str()?
                        .parse::<i64>()
                        .ok()?,
                    o["spec"]["template"].clone(),
                ),
                Kind::DaemonSet | Kind::StatefulSet => {
                    let mut t = o["data"]["spec"]["template"].clone();
                    if let Some(m) = t.as_object_mut() {
                        m.remove("$patch");
                    }
                    (o["revision"].as_i64()?, t)
                }
            };
            Some(Revision {
                number,
                change_cause,
                template,
                source: o.clone(),
            })
        })
        .collect();
    out.sort_by_key(|r| r.number);
    out
}

/// Is `obj` controlled by the owner with this UID?
fn controlled_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["controller"] == true && r["uid"].as_str() == Some(uid))
        })
}

/// Go's tabwriter as `tabbedString` sets it up (no minimum width, padding
/// 2; a line's last cell is not padded).
pub fn tabbed(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            if widths.len() <= i {
                widths.resize(i + 1, 0);
            }
            widths[i] = widths[i].max(cell.chars().count() + 2);
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                out.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// The `REVISION  CHANGE-CAUSE` table (the same revision number twice, as
/// a ReplicaSet and a restored one can carry, shows once).
pub fn history_table(revs: &[Revision]) -> String {
    let mut by_number: BTreeMap<i64, &str> = BTreeMap::new();
    for r in revs {
        by_number.insert(r.number, &r.change_cause);
    }
    let mut rows = vec![vec!["REVISION".to_string(), "CHANGE-CAUSE".to_string()]];
    for (n, cause) in by_number {
        let cause = if cause.is_empty() { "<none>" } else { cause };
        rows.push(vec![n.to_string(), cause.to_string()]);
    }
    tabbed(&rows)
}

/// The revision to roll back to: `to` when given, else the one before the
/// newest.
pub fn rollback_target(
    kind: Kind,
    name: &str,
    revs: &[Revision],
    to: i64,
) -> Result<Revision, String> {
    if to > 0 {
        return revs
            .iter()
            .find(|r| r.number == to)
            .cloned()
            .ok_or_else(|| format!("unable to find specified revision {to} in history"));
    }
    let mut sorted: Vec<&Revision> = revs.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.number));
    sorted.dedup_by_key(|r| r.number);
    match sorted.get(1) {
        Some(r) => Ok((*r).clone()),
        None if kind == Kind::Deployment => {
            Err(format!("no rollout history found for deployment {name:?}"))
        }
        None => Err("no last revision to roll back to".into()),
    }
}

/// A pod template without the `pod-template-hash` label the Deployment
/// controller adds to its ReplicaSets (and with empty label/annotation maps
/// treated as absent), for comparing with the Deployment's template.
pub fn template_without_hash(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(md) = t.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        if let Some(l) = md.get_mut("labels").and_then(|l| l.as_object_mut()) {
            l.remove("pod-template-hash");
        }
        md.retain(|k, v| {
            !(k == "creationTimestamp"
                || (v.as_object().is_some_and(|m| m.is_empty()))
                || v.is_null())
        });
    }
    t
}

/// The annotations a Deployment keeps through a rollback; the rest come
/// from the ReplicaSet of the chosen revision.
const KEEP_ANNOTATIONS: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// The JSON patch that puts a ReplicaSet's template (without its hash
/// label) and annotations back into a Deployment, as upstream's
/// rollbacker.
pub fn deployment_rollback_patch(deploy: &Value, rs: &Value) -> Value {
    let mut template = rs["spec"]["template"].clone();
    if let Some(l) = template["metadata"]["labels"].as_object_mut() {
        l.remove("pod-template-hash");
    }
    let mut annotations = serde_json::Map::new();
    for k in KEEP_ANNOTATIONS {
        if let Some(v) = deploy["metadata"]["annotations"].get(k) {
            annotations.insert(k.to_string(), v.clone());
        }
    }
    if let Some(m) = rs["metadata"]["annotations"].as_object() {
        for (k, v) in m {
            if !KEEP_ANNOTATIONS.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }
    json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ])
}

/// The objects a workload owns that record its revisions.
async fn owned_revisions(ctx: &Ctx, kind: Kind, obj: &Value) -> Result<Vec<Revision>> {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    let uid = obj["metadata"]["uid"].as_str().unwrap_or("");
    let selector = selector_string(&obj["spec"]["selector"]);
    let plural = match kind {
        Kind::Deployment => "replicasets",
        _ => "controllerrevisions",
    };
    let mut url = format!("/apis/apps/v1/namespaces/{ns}/{plural}");
    if !selector.is_empty() {
        url.push_str("?labelSelector=");
        url.push_str(&url_escape(&selector));
    }
    let req = http::Request::get(url)
        .body(Vec::new())
        .map_err(CliError::client)?;
    let list = ctx.send(req).await?;
    let owned: Vec<Value> = list["items"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
        .iter()
        .filter(|o| controlled_by(o, uid))
        .cloned()
        .collect();
    Ok(revisions(kind, &owned))
}

/// Percent-encode a query value.
fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn history(ctx: &Ctx, a: HistoryArgs) -> Result<()> {
    let targets = one_target(ctx, &a.resources, &a.filename, a.selector.as_deref()).await?;
    let mut errors = Vec::new();
    for t in &targets {
        let result = async {
            let obj = get_one(ctx, t).await?;
            let kind = Kind::of(t).ok_or_else(|| unsupported(t, "history viewer"))?;
            let revs = owned_revisions(ctx, kind, &obj).await?;
            let name = format!("{}/{}", t.0.kind_group(), t.2);
            if a.revision > 0 {
                let r = revs
                    .iter()
                    .rev()
                    .find(|r| r.number == a.revision)
                    .ok_or_else(|| CliError::client("unable to find the specified revision"))?;
                let mut template = r.template.clone();
                // Upstream shows the change cause among the template's
                // annotations.
                if !r.change_cause.is_empty() {
                    template["metadata"]["annotations"][CHANGE_CAUSE] = json!(r.change_cause);
                }
                let body = template_text(&template);
                crate::out(&format!("{name} with revision #{}\n{body}\n", a.revision))
            } else {
                crate::out(&format!("{name} \n{}\n", history_table(&revs)))
            }
        }
        .await;
        if let Err(e) = result {
            errors.push(e);
        }
    }
    super::last_error(errors)
}

/// A pod template as upstream's `printTemplate`: describe's block without
/// its tabwriter, where multi-line fields continue with a bare tab (the
/// indent is part of the field's title).
fn template_text(template: &Value) -> String {
    super::describe::pod_template(template).replace("\n  \t", "\n\t")
}

async fn undo(ctx: &Ctx, a: UndoArgs) -> Result<()> {
    let dry = DryRun::parse(&a.dry_run)?;
    let targets = one_target(ctx, &a.resources, &a.filename, a.selector.as_deref()).await?;
    let mut errors = Vec::new();
    for t in &targets {
        let result = async {
            let obj = get_one(ctx, t).await?;
            let kind = Kind::of(t).ok_or_else(|| unsupported(t, "rollbacker"))?;
            if kind == Kind::Deployment && obj["spec"]["paused"] == true {
                return Err(CliError::client(
                    "you cannot rollback a paused deployment; resume it first with 'tug rollout resume' and try again",
                ));
            }
            let revs = owned_revisions(ctx, kind, &obj).await?;
            let target = rollback_target(kind, name_of(&obj), &revs, a.to_revision)
                .map_err(CliError::Client)?;
            let name = format!("{}/{}", t.0.kind_group(), t.2);
            if dry == DryRun::Client {
                // Upstream shows the template it would restore, before
                // deciding whether that would change anything.
                let will = if kind == Kind::Deployment {
                    ""
                } else {
                    "will roll back to "
                };
                return crate::out(&format!(
                    "{name} {will}{} (dry run)\n",
                    template_text(&target.template)
                ));
            }
            if template_without_hash(&target.template)
                == template_without_hash(&obj["spec"]["template"])
            {
                return crate::out(&format!(
                    "{name} skipped rollback (current template already matches revision {})\n",
                    a.to_revision
                ));
            }
            match kind {
                Kind::Deployment => {
                    let patch = deployment_rollback_patch(&obj, &target.source);
                    patch_raw(ctx, t, None, "application/json-patch+json", &patch, dry)
                        .await
                        .map_err(|e| {
                            CliError::client(format!(
                                "failed restoring revision {}: {e}",
                                target.number
                            ))
                        })?;
                }
                _ => {
                    let patch = target.source["data"].clone();
                    patch_raw(
                        ctx,
                        t,
                        None,
                        "application/strategic-merge-patch+json",
                        &patch,
                        dry,
                    )
                    .await?;
                }
            }
            crate::out(&format!("{name} rolled back{}\n", dry.suffix()))
        }
        .await;
        if let Err(e) = result {
            errors.push(e);
        }
    }
    super::last_error(errors)
}

/// `error: deployments.apps "x" <what>`, as kubectl reports a per-object
/// refusal of restart/pause/resume.
fn refusal(t: &Target, what: &str) -> CliError {
    CliError::client(format!("{} {:?} {what}", t.0.plural_group(), t.2))
}

async fn restart(ctx: &Ctx, a: TargetArgs) -> Result<()> {
    let targets = one_target(ctx, &a.resources, &a.filename, a.selector.as_deref()).await?;
    let mut errors = Vec::new();
    for t in &targets {
        let result = async {
            let obj = get_one(ctx, t).await?;
            let kind = Kind::of(t).ok_or_else(|| refusal(t, "restarting is not supported"))?;
            if kind == Kind::Deployment && obj["spec"]["paused"] == true {
                return Err(refusal(
                    t,
                    "can't restart paused deployment (run rollout resume first)",
                ));
            }
            let now = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": now}}}}});
            patch_raw(
                ctx,
                t,
                None,
                "application/strategic-merge-patch+json",
                &patch,
                DryRun::None,
            )
            .await?;
            crate::out(&format!("{}/{} restarted\n", t.0.kind_group(), t.2))
        }
        .await;
        if let Err(e) = result {
            errors.push(e);
        }
    }
    super::last_error(errors)
}

async fn pause(ctx: &Ctx, a: TargetArgs, paused: bool) -> Result<()> {
    let targets = one_target(ctx, &a.resources, &a.filename, a.selector.as_deref()).await?;
    let (verb, refused) = if paused {
        ("paused", "is already paused")
    } else {
        ("resumed", "is not paused")
    };
    let mut errors = Vec::new();
    for t in &targets {
        let result = async {
            let obj = get_one(ctx, t).await?;
            if Kind::of(t) != Some(Kind::Deployment) {
                return Err(refusal(
                    t,
                    &format!(
                        "{} is not supported",
                        if paused { "pausing" } else { "resuming" }
                    ),
                ));
            }
            if (obj["spec"]["paused"] == true) == paused {
                return Err(refusal(t, refused));
            }
            let patch = json!({"spec": {"paused": paused}});
            patch_raw(
                ctx,
                t,
                None,
                "application/strategic-merge-patch+json",
                &patch,
                DryRun::None,
            )
            .await?;
            crate::out(&format!("{}/{} {verb}\n", t.0.kind_group(), t.2))
        }
        .await;
        if let Err(e) = result {
            errors.push(e);
        }
    }
    super::last_error(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected line and done flag, or the error.
    type Want = Result<(&'static str, bool), &'static str>;

    fn deploy(gen: i64, status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": gen,
            "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"replicas": 3}, "status": status})
    }

    #[test]
    fn deployment_status_lines() {
        let cases: Vec<(Value, i64, Want)> = vec![
            (
                deploy(2, json!({"observedGeneration": 1})),
                0,
                Ok(("Waiting for deployment spec update to be observed...\n", false)),
            ),
            (
                deploy(1, json!({"observedGeneration": 1, "updatedReplicas": 1, "replicas": 1})),
                0,
                Ok(("Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n", false)),
            ),
            (
                deploy(1, json!({"observedGeneration": 1, "updatedReplicas": 3, "replicas": 4})),
                0,
                Ok(("Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n", false)),
            ),
            (
                deploy(1, json!({"observedGeneration": 1, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 1})),
                0,
                Ok(("Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available...\n", false)),
            ),
            (
                deploy(1, json!({"observedGeneration": 1, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3})),
                0,
                Ok(("deployment \"web\" successfully rolled out\n", true)),
            ),
            (
                deploy(1, json!({"observedGeneration": 1, "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]})),
                0,
                Err("deployment \"web\" exceeded its progress deadline"),
            ),
            (
                deploy(1, json!({"observedGeneration": 1})),
                5,
                Err("desired revision (5) is different from the running revision (2)"),
            ),
        ];
        for (obj, rev, want) in cases {
            let got = rollout_status(Kind::Deployment, &obj, rev);
            let want = want.map(|(s, d)| (s.to_string(), d)).map_err(String::from);
            assert_eq!(got, want, "{obj}");
        }
    }

    #[test]
    fn daemonset_and_statefulset_status_lines() {
        let ds = |status: Value| {
            json!({"metadata": {"name": "d", "generation": 1},
                "spec": {"updateStrategy": {"type": "RollingUpdate"}}, "status": status})
        };
        let sts = |spec: Value, status: Value| json!({"metadata": {"name": "s", "generation": 1}, "spec": spec, "status": status});
        let rolling = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}});
        let cases: Vec<(Kind, Value, Want)> = vec![
            (Kind::DaemonSet, ds(json!({})), Ok(("Waiting for daemon set spec update to be observed...\n", false))),
            (Kind::DaemonSet, ds(json!({"observedGeneration": 1, "desiredNumberScheduled": 2, "updatedNumberScheduled": 1})),
                Ok(("Waiting for daemon set \"d\" rollout to finish: 1 out of 2 new pods have been updated...\n", false))),
            (Kind::DaemonSet, ds(json!({"observedGeneration": 1, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 1})),
                Ok(("Waiting for daemon set \"d\" rollout to finish: 1 of 2 updated pods are available...\n", false))),
            (Kind::DaemonSet, ds(json!({"observedGeneration": 1, "desiredNumberScheduled": 2, "updatedNumberScheduled": 2, "numberAvailable": 2})),
                Ok(("daemon set \"d\" successfully rolled out\n", true))),
            (Kind::DaemonSet, json!({"metadata": {"name": "d"}, "spec": {"updateStrategy": {"type": "OnDelete"}}}),
                Err("rollout status is only available for RollingUpdate strategy type")),
            (Kind::StatefulSet, sts(json!({"replicas": 2, "updateStrategy": rolling}), json!({})),
                Ok(("Waiting for statefulset spec update to be observed...\n", false))),
            (Kind::StatefulSet, sts(json!({"replicas": 2, "updateStrategy": rolling}), json!({"observedGeneration": 1, "readyReplicas": 1})),
                Ok(("Waiting for 1 pods to be ready...\n", false))),
            (Kind::StatefulSet, sts(json!({"replicas": 2, "updateStrategy": rolling}), json!({"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 1})),
                Ok(("Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...\n", false))),
            (Kind::StatefulSet, sts(json!({"replicas": 2, "updateStrategy": rolling}), json!({"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2})),
                Ok(("partitioned roll out complete: 2 new pods have been updated...\n", true))),
            (Kind::StatefulSet, sts(json!({"replicas": 1, "updateStrategy": {"type": "RollingUpdate"}}),
                json!({"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1, "currentReplicas": 1, "updateRevision": "s-2", "currentRevision": "s-1"})),
                Ok(("waiting for statefulset rolling update to complete 1 pods at revision s-2...\n", false))),
            (Kind::StatefulSet, sts(json!({"replicas": 1, "updateStrategy": {"type": "RollingUpdate"}}),
                json!({"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1, "currentReplicas": 1, "updateRevision": "s-2", "currentRevision": "s-2"})),
                Ok(("statefulset rolling update complete 1 pods at revision s-2...\n", true))),
        ];
        for (kind, obj, want) in cases {
            let got = rollout_status(kind, &obj, 0);
            let want = want.map(|(s, d)| (s.to_string(), d)).map_err(String::from);
            assert_eq!(got, want, "{obj}");
        }
    }

    fn rs(rev: &str, cause: Option<&str>, image: &str) -> Value {
        let mut annotations = json!({"deployment.kubernetes.io/revision": rev});
        if let Some(c) = cause {
            annotations[CHANGE_CAUSE] = json!(c);
        }
        json!({"metadata": {"annotations": annotations},
            "spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": rev}},
                "spec": {"containers": [{"name": "main", "image": image}]}}}})
    }

    #[test]
    fn history_lists_revisions_in_order() {
        let owned = [
            rs("3", None, "c"),
            rs("1", None, "a"),
            rs("x", None, "bad"),
            rs("12", Some("set image"), "b"),
        ];
        let revs = revisions(Kind::Deployment, &owned);
        assert_eq!(
            revs.iter().map(|r| r.number).collect::<Vec<_>>(),
            [1, 3, 12]
        );
        assert_eq!(
            history_table(&revs),
            "REVISION  CHANGE-CAUSE\n1         <none>\n3         <none>\n12        set image\n"
        );
        let cr = json!({"revision": 2, "metadata": {"annotations": {CHANGE_CAUSE: "x"}},
            "data": {"spec": {"template": {"$patch": "replace", "spec": {}}}}});
        let revs = revisions(Kind::DaemonSet, &[cr]);
        assert_eq!(revs[0].template, json!({"spec": {}}));
        assert_eq!(revs[0].change_cause, "x");
    }

    #[test]
    fn rollback_picks_the_previous_or_named_revision() {
        let revs = revisions(
            Kind::Deployment,
            &[rs("1", None, "a"), rs("3", None, "c"), rs("2", None, "b")],
        );
        let pick = |to| rollback_target(Kind::Deployment, "web", &revs, to).map(|r| r.number);
        assert_eq!(pick(0), Ok(2));
        assert_eq!(pick(1), Ok(1));
        assert_eq!(
            pick(7),
            Err("unable to find specified revision 7 in history".into())
        );
        let one = &revs[..1];
        assert_eq!(
            rollback_target(Kind::Deployment, "web", one, 0).unwrap_err(),
            "no rollout history found for deployment \"web\""
        );
        assert_eq!(
            rollback_target(Kind::StatefulSet, "s", &[], 0).unwrap_err(),
            "no last revision to roll back to"
        );
        // The ReplicaSet's hash label does not make templates differ.
        let deploy_template = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "main", "image": "b"}]}});
        assert_eq!(
            template_without_hash(&revs[1].template),
            template_without_hash(&deploy_template)
        );
        assert_ne!(
            template_without_hash(&revs[0].template),
            template_without_hash(&deploy_template)
        );
    }

    #[test]
    fn rollback_patch_restores_template_and_annotations() {
        let deploy = json!({"metadata": {"annotations": {
            "deployment.kubernetes.io/revision": "3", "team": "x"}}});
        let rs = json!({"metadata": {"annotations": {
            "deployment.kubernetes.io/revision": "1", CHANGE_CAUSE: "first"}},
            "spec": {"template": {"metadata": {"labels": {"app": "w", "pod-template-hash": "h"}}}}});
        assert_eq!(
            deployment_rollback_patch(&deploy, &rs),
            json!([
                {"op": "replace", "path": "/spec/template", "value": {"metadata": {"labels": {"app": "w"}}}},
                {"op": "replace", "path": "/metadata/annotations", "value": {
                    "deployment.kubernetes.io/revision": "3", CHANGE_CAUSE: "first"}},
            ])
        );
    }

    #[test]
    fn durations_parse_like_go() {
        let cases = [
            ("0", Some(Duration::ZERO)),
            ("0s", Some(Duration::ZERO)),
            ("30s", Some(Duration::from_secs(30))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("500ms", Some(Duration::from_millis(500))),
            ("-1s", Some(Duration::MAX)),
            ("5", None),
            ("x", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_duration(s).ok(), want, "{s}");
        }
    }
}
