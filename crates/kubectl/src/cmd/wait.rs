//! `tug wait`: block until objects are deleted, created, have a condition,
//! or a JSONPath value, as kubectl's `wait`. Each object is watched (never
//! polled) until its condition holds; one deadline covers them all; each
//! met object prints `kind/name condition met`.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::rollout::parse_duration;
use super::watch_until::{until, Seen};
use super::Target;
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::printers::jsonpath::{text_of, JsonPath};

/// Wait for a specific condition on one or many resources.
///
/// The command takes multiple resources and waits until the specified
/// condition is seen in the Status field of every given resource.
///
/// Examples:
///   # Wait for the pod "busybox1" to contain the status condition of type "Ready"
///   tug wait --for=condition=Ready pod/busybox1
///
///   # Wait for the pod "busybox1" to contain the status phase to be "Running"
///   tug wait --for=jsonpath='{.status.phase}'=Running pod/busybox1
///
///   # Wait for pod "busybox1" to be deleted, with a timeout of 60s
///   tug wait --for=delete pod/busybox1 --timeout=60s
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct WaitArgs {
    /// (TYPE NAME | TYPE/NAME | TYPE -l sel | TYPE --all)
    pub resources: Vec<String>,
    /// The condition to wait on: [create|delete|condition=condition-name[=condition-value]|jsonpath='{JSONPath expression}'=[JSONPath value]].
    #[arg(long = "for")]
    pub for_: Option<String>,
    /// The length of time to wait before giving up. Zero means check once
    /// and don't wait, negative means wait for a week.
    #[arg(long, default_value = "30s", allow_hyphen_values = true)]
    pub timeout: String,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Select all resources in the namespace of the specified resource types.
    #[arg(long)]
    pub all: bool,
    /// Look in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Selector (field query) to filter on.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Files identifying the resources.
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
}

/// What `--for` asks.
#[derive(Debug, Clone)]
pub enum Condition {
    Delete,
    Create,
    /// A status condition type and the status it must have.
    Status {
        name: String,
        value: String,
    },
    /// A JSONPath and the value it must have (`None`: must exist).
    JsonPath {
        path: JsonPath,
        text: String,
        value: Option<String>,
    },
}

impl PartialEq for Condition {
    fn eq(&self, other: &Condition) -> bool {
        match (self, other) {
            (Condition::Delete, Condition::Delete) | (Condition::Create, Condition::Create) => true,
            (
                Condition::Status { name, value },
                Condition::Status {
                    name: n2,
                    value: v2,
                },
            ) => name == n2 && value == v2,
            (
                Condition::JsonPath { text, value, .. },
                Condition::JsonPath {
                    text: t2,
                    value: v2,
                    ..
                },
            ) => text == t2 && value == v2,
            _ => false,
        }
    }
}

/// Parse `--for`.
pub fn parse_for(s: &str) -> Result<Condition, String> {
    let lower = s.to_lowercase();
    if lower == "delete" {
        return Ok(Condition::Delete);
    }
    if lower == "create" {
        return Ok(Condition::Create);
    }
    if let Some(rest) = s
        .strip_prefix("condition=")
        .or_else(|| s.strip_prefix("Condition="))
    {
        let (name, value) = match rest.split_once('=') {
            Some((n, v)) => (n, v),
            None => (rest, "true"),
        };
        if name.is_empty() {
            return Err(format!("unrecognized condition: {s:?}"));
        }
        return Ok(Condition::Status {
            name: name.to_string(),
            value: value.to_string(),
        });
    }
    if let Some(rest) = s.strip_prefix("jsonpath=") {
        // `{.a.b}=value`: the value starts after the closing brace;
        // `.a.b=value` (relaxed) splits at the first '='.
        let (expr, value) = if rest.starts_with('{') {
            match rest.find('}') {
                Some(end) => {
                    let (e, tail) = rest.split_at(end + 1);
                    match tail.strip_prefix('=') {
                        Some(v) => (e, Some(v)),
                        None if tail.is_empty() => (e, None),
                        None => return Err(format!("unrecognized condition: {s:?}")),
                    }
                }
                None => return Err("unclosed action".into()),
            }
        } else {
            match rest.split_once('=') {
                Some((e, v)) => (e, Some(v)),
                None => (rest, None),
            }
        };
        if expr.is_empty() || expr == "{}" {
            return Err("jsonpath expression cannot be empty".into());
        }
        let path = JsonPath::parse(expr)?;
        return Ok(Condition::JsonPath {
            path,
            text: expr.to_string(),
            value: value.map(String::from),
        });
    }
    Err(format!("unrecognized condition: {s:?}"))
}

/// Does the object have condition `name` with status `value` (both
/// case-insensitive), observed at its current generation?
pub fn condition_met(obj: &Value, name: &str, value: &str) -> bool {
    let generation = obj["metadata"]["generation"].as_i64();
    let Some(conds) = obj["status"]["conditions"].as_array() else {
        return false;
    };
    for c in conds {
        if !c["type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case(name))
        {
            continue;
        }
        if let Some(generation) = generation {
            // A condition written for an older generation says nothing
            // about the current spec.
            let observed = c["observedGeneration"]
                .as_i64()
                .or_else(|| obj["status"]["observedGeneration"].as_i64());
            if observed.is_some_and(|o| o < generation) {
                return false;
            }
        }
        return text_of(&c["status"]).eq_ignore_ascii_case(value);
    }
    false
}

/// Does the JSONPath select exactly one value equal to `value` (or, with
/// no value, anything at all)? Nested objects and several results are
/// errors, as upstream.
pub fn jsonpath_met(obj: &Value, path: &JsonPath, value: Option<&str>) -> Result<bool, String> {
    let found = path.values(obj);
    match found.as_slice() {
        [] => Ok(false),
        [one] => {
            if value.is_none() {
                return Ok(true);
            }
            if one.is_object() || one.is_array() {
                return Err(
                    "jsonpath leads to a nested object or list which is not supported".into(),
                );
            }
            Ok(value == Some(text_of(one).as_str()))
        }
        _ => Err("given jsonpath expression matches more than one value".into()),
    }
}

pub async fn run(ctx: &Ctx, a: WaitArgs) -> Result<()> {
    let cond = parse_for(a.for_.as_deref().unwrap_or("")).map_err(CliError::Client)?;
    let timeout = parse_duration(&a.timeout)
        .map_err(|e| super::rollout::bad_flag("timeout", &a.timeout, &e, "wait"))?;
    // A negative timeout means a week.
    let timeout = timeout.min(Duration::from_secs(7 * 24 * 3600));
    let deadline = Instant::now() + timeout;

    let targets = targets(ctx, &a, &cond).await?;
    if targets.is_empty() {
        // Nothing there is already deleted.
        if cond == Condition::Delete {
            return Ok(());
        }
        return Err(CliError::client("no matching resources found"));
    }
    let mut errors = Vec::new();
    for t in &targets {
        match wait_one(ctx, t, &cond, deadline, timeout.is_zero()).await {
            Ok(obj) => {
                let name = if obj.is_object() {
                    crate::cmd::get::object_name(&with_type(obj, &t.0))
                } else {
                    format!("{}/{}", t.0.kind_group(), t.2)
                };
                crate::out(&format!("{name} condition met\n"))?;
            }
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        // Several failures print as kubectl's aggregate: one bare message
        // per line.
        _ => Err(CliError::Plain(
            errors
                .iter()
                .map(|e| match e {
                    CliError::Client(m) => m.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n"),
        )),
    }
}

/// Watch events of typed lists carry apiVersion/kind, but be safe.
fn with_type(mut obj: Value, r: &crate::discovery::Resource) -> Value {
    if obj["kind"].as_str().is_none_or(|k| k.is_empty()) {
        obj["kind"] = Value::String(r.kind.clone());
        obj["apiVersion"] = Value::String(r.api_version());
    }
    obj
}

/// The objects to wait on; a named object that does not exist is an error
/// except when waiting for its deletion (nothing to wait for) or creation.
async fn targets(ctx: &Ctx, a: &WaitArgs, cond: &Condition) -> Result<Vec<Target>> {
    if !a.filename.is_empty() {
        return super::select(ctx, &[], &a.filename, None, false).await;
    }
    let type_names = crate::args::parse_resource_args(&a.resources).map_err(CliError::Client)?;
    if type_names.is_empty() {
        return Err(CliError::client(
            "You must provide one or more resources by argument or filename.\nExample resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   '<resource> <name>'\n   '<resource>'",
        ));
    }
    let mut out = Vec::new();
    for (word, names) in type_names {
        for r in ctx.resolve(&word).await? {
            let ns = r
                .namespaced
                .then(|| ctx.namespace.clone())
                .filter(|_| !a.all_namespaces);
            if !names.is_empty() {
                for n in &names {
                    let t: Target = (
                        r.clone(),
                        r.namespaced.then(|| ctx.namespace.clone()),
                        n.clone(),
                    );
                    if matches!(cond, Condition::Create) {
                        out.push(t);
                        continue;
                    }
                    match super::get_one(ctx, &t).await {
                        Ok(_) => out.push(t),
                        Err(e) if e.is_not_found() && *cond == Condition::Delete => {}
                        Err(e) => return Err(e),
                    }
                }
            } else if a.selector.is_some() || a.all || a.field_selector.is_some() {
                let mut lp = kube::api::ListParams::default();
                if let Some(l) = &a.selector {
                    lp = lp.labels(l);
                }
                if let Some(f) = &a.field_selector {
                    lp = lp.fields(f);
                }
                let list = ctx.send(ctx.request(&r, ns.as_deref()).list(&lp)?).await?;
                for item in list["items"]
                    .as_array()
                    .map(|v| v.as_slice())
                    .unwrap_or(&[])
                {
                    let item_ns = item["metadata"]["namespace"].as_str().map(String::from);
                    out.push((
                        r.clone(),
                        item_ns.or_else(|| ns.clone()),
                        item["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    ));
                }
            } else {
                return Err(CliError::client(
                    "resource(s) were provided, but no name was specified",
                ));
            }
        }
    }
    Ok(out)
}

/// Watch one object until the condition holds or the deadline passes.
async fn wait_one(
    ctx: &Ctx,
    t: &Target,
    cond: &Condition,
    deadline: Instant,
    once: bool,
) -> Result<Value> {
    let (r, ns, name) = t;
    let timed_out = || match cond {
        Condition::Create => CliError::client("timed out waiting for the condition"),
        _ => CliError::client(format!(
            "timed out waiting for the condition on {}/{name}",
            r.plural
        )),
    };
    let mut uid: Option<String> = None;
    let check = |seen: Seen<'_>, uid: &mut Option<String>| -> Result<bool> {
        match (cond, seen) {
            (Condition::Delete, Seen::Absent | Seen::Deleted(_)) => Ok(true),
            (Condition::Delete, Seen::Present(o)) => {
                // A new object under the same name means ours is gone.
                let this = o["metadata"]["uid"].as_str().map(String::from);
                match uid {
                    None => {
                        *uid = this;
                        Ok(false)
                    }
                    Some(first) => Ok(this.as_deref() != Some(first.as_str())),
                }
            }
            (Condition::Create, Seen::Present(_)) => Ok(true),
            (Condition::Status { name, value }, Seen::Present(o)) => {
                Ok(condition_met(o, name, value))
            }
            (Condition::JsonPath { path, value, .. }, Seen::Present(o)) => {
                jsonpath_met(o, path, value.as_deref()).map_err(CliError::Client)
            }
            (_, Seen::Deleted(_)) => Err(CliError::client(format!(
                "{}/{name} was deleted while waiting",
                r.plural
            ))),
            (_, Seen::Absent) => Ok(false),
        }
    };
    if once {
        // Zero timeout: look once.
        let obj = match super::get_one(ctx, t).await {
            Ok(o) => Some(o),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let seen = match &obj {
            Some(o) => Seen::Present(o),
            None => Seen::Absent,
        };
        let met = match (cond, &seen) {
            (Condition::Delete, Seen::Present(_)) => false,
            _ => check(seen, &mut uid)?,
        };
        return if met {
            Ok(obj.unwrap_or(Value::Null))
        } else {
            Err(timed_out())
        };
    }
    let watch = until(ctx, r, ns.as_deref(), name, |seen| check(seen, &mut uid));
    match tokio::time::timeout_at(deadline, watch).await {
        Ok(result) => result,
        Err(_) => Err(timed_out()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn for_flags_parse() {
        let st = |n: &str, v: &str| Condition::Status {
            name: n.into(),
            value: v.into(),
        };
        let jp = |t: &str, v: Option<&str>| Condition::JsonPath {
            path: JsonPath::parse(t).unwrap(),
            text: t.into(),
            value: v.map(String::from),
        };
        let cases = [
            ("delete", Ok(Condition::Delete)),
            ("create", Ok(Condition::Create)),
            ("condition=Ready", Ok(st("Ready", "true"))),
            ("condition=Available=false", Ok(st("Available", "false"))),
            (
                "jsonpath={.status.phase}=Running",
                Ok(jp("{.status.phase}", Some("Running"))),
            ),
            ("jsonpath={.status.phase}", Ok(jp("{.status.phase}", None))),
            (
                "jsonpath=.status.phase=Running",
                Ok(jp(".status.phase", Some("Running"))),
            ),
            (
                "bogus",
                Err("unrecognized condition: \"bogus\"".to_string()),
            ),
            (
                "condition=",
                Err("unrecognized condition: \"condition=\"".to_string()),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(parse_for(s), want, "{s}");
        }
    }

    #[test]
    fn conditions_match_at_the_current_generation() {
        let obj = |gen: i64, observed: i64, status: &str| {
            json!({"metadata": {"generation": gen}, "status": {"observedGeneration": observed,
                "conditions": [{"type": "Available", "status": status}]}})
        };
        let cases = [
            (obj(1, 1, "True"), "Available", "true", true),
            (obj(1, 1, "True"), "available", "TRUE", true),
            (obj(1, 1, "False"), "Available", "true", false),
            (obj(1, 1, "False"), "Available", "false", true),
            (obj(2, 1, "True"), "Available", "true", false),
            (obj(1, 1, "True"), "Ready", "true", false),
            (json!({"status": {}}), "Ready", "true", false),
        ];
        for (o, name, value, want) in cases {
            assert_eq!(condition_met(&o, name, value), want, "{o} {name}={value}");
        }
    }

    #[test]
    fn jsonpath_values_match() {
        let pod = json!({"status": {"phase": "Running", "n": 3, "c": [{"a": 1}, {"a": 2}]}});
        let p = |s: &str| JsonPath::parse(s).unwrap();
        assert_eq!(
            jsonpath_met(&pod, &p("{.status.phase}"), Some("Running")),
            Ok(true)
        );
        assert_eq!(
            jsonpath_met(&pod, &p("{.status.phase}"), Some("Pending")),
            Ok(false)
        );
        assert_eq!(jsonpath_met(&pod, &p("{.status.n}"), Some("3")), Ok(true));
        assert_eq!(jsonpath_met(&pod, &p("{.status.phase}"), None), Ok(true));
        assert_eq!(jsonpath_met(&pod, &p("{.status.gone}"), None), Ok(false));
        assert!(jsonpath_met(&pod, &p("{.status.c[*].a}"), Some("1")).is_err());
        assert!(jsonpath_met(&pod, &p("{.status}"), Some("x")).is_err());
    }
}
