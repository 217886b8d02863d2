//! `tug label` (and, sharing the code, `tug annotate`): add, change or
//! remove labels with `KEY=VALUE` / `KEY-` arguments, sent as a JSON merge
//! patch of `metadata.labels`. An existing value is only replaced with
//! `--overwrite`, as in kubectl.

use std::io::Write;

use serde_json::{json, Map, Value};

use super::{get_one, last_error, patch_raw, select, DryRun};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};

/// Update the labels on a resource.
///
/// A label key and value must begin with a letter or number, and may
/// contain letters, numbers, hyphens, dots, and underscores.
///
/// Examples:
///   # Update pod 'foo' with the label 'unhealthy' and the value 'true'
///   tug label pods foo unhealthy=true
///
///   # Overwrite the 'status' label of pod 'foo'
///   tug label --overwrite pods foo status=unhealthy
///
///   # Label all pods in the namespace
///   tug label pods --all status=unhealthy
///
///   # Remove the label named 'bar'
///   tug label pods foo bar-
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct LabelArgs {
    /// TYPE NAME | TYPE/NAME, then KEY_1=VAL_1 ... KEY_N=VAL_N or KEY-.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Files identifying the resources to update.
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
    /// Allow replacing existing values.
    #[arg(long)]
    pub overwrite: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Select all resources of the given types in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Must be "none", "server", or "client".
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
}

/// Which metadata map a run edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Labels,
    Annotations,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Labels => "labels",
            Field::Annotations => "annotations",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Field::Labels => "label",
            Field::Annotations => "annotation",
        }
    }
}

/// One requested change: set a value, or remove the key.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Set(String, String),
    Remove(String),
}

/// Split arguments into resource words and changes.
pub fn split_args(args: &[String]) -> (Vec<String>, Vec<Change>) {
    let mut resources = Vec::new();
    let mut changes = Vec::new();
    for a in args {
        if let Some((k, v)) = a.split_once('=') {
            changes.push(Change::Set(k.to_string(), v.to_string()));
        } else if let Some(k) = a
            .strip_suffix('-')
            .filter(|k| !k.is_empty() && !a.contains('/'))
        {
            changes.push(Change::Remove(k.to_string()));
        } else {
            resources.push(a.clone());
        }
    }
    (resources, changes)
}

/// What applying `changes` to `current` would send: a merge patch map
/// (null removes), whether anything changes, and messages for keys to
/// remove that are absent.
pub fn plan(
    current: &Map<String, Value>,
    changes: &[Change],
    overwrite: bool,
    noun: &str,
) -> Result<(Map<String, Value>, Vec<String>)> {
    let mut patch = Map::new();
    let mut notes = Vec::new();
    for c in changes {
        match c {
            Change::Set(k, v) => match current.get(k).and_then(|x| x.as_str()) {
                Some(old) if old == v => {}
                Some(old) if !overwrite => {
                    return Err(CliError::client(format!(
                        "'{k}' already has a value ({old}), and --overwrite is false"
                    )));
                }
                _ => {
                    patch.insert(k.clone(), json!(v));
                }
            },
            Change::Remove(k) => {
                if current.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                } else {
                    notes.push(format!("{noun} {k:?} not found."));
                }
            }
        }
    }
    Ok((patch, notes))
}

pub async fn run(ctx: &Ctx, a: LabelArgs, field: Field) -> Result<()> {
    let dry = DryRun::parse(&a.dry_run)?;
    let (resources, changes) = split_args(&a.args);
    if changes.is_empty() {
        return Err(CliError::client(format!(
            "at least one {} update is required",
            field.noun()
        )));
    }
    let targets = select(ctx, &resources, &a.filename, a.selector.as_deref(), a.all).await?;
    let mut errors = Vec::new();
    for t in &targets {
        let result = async {
            let obj = get_one(ctx, t).await?;
            let empty = Map::new();
            let current = obj["metadata"][field.key()].as_object().unwrap_or(&empty);
            let (patch, notes) = plan(current, &changes, a.overwrite, field.noun())?;
            for n in notes {
                crate::out(&format!("{n}\n"))?;
            }
            let verb = match field {
                Field::Labels if !patch.is_empty() && patch.values().all(Value::is_null) => {
                    "unlabeled"
                }
                Field::Labels => "labeled",
                Field::Annotations => "annotated",
            };
            let name = format!("{}/{}", t.0.kind_group(), t.2);
            if patch.is_empty() {
                crate::out(&format!("{name} not {verb}\n"))?;
                return Ok(());
            }
            if dry != DryRun::Client {
                let body = json!({"metadata": {field.key(): patch}});
                patch_raw(ctx, t, None, "application/merge-patch+json", &body, dry).await?;
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{name} {verb}{}", dry.suffix())?;
            Ok::<(), CliError>(())
        }
        .await;
        if let Err(e) = result {
            errors.push(e);
        }
    }
    last_error(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments_split_into_resources_and_changes() {
        let (r, c) = split_args(&s(&["pods", "foo", "a=b", "c-", "pod/x"]));
        assert_eq!(r, s(&["pods", "foo", "pod/x"]));
        assert_eq!(
            c,
            [
                Change::Set("a".into(), "b".into()),
                Change::Remove("c".into())
            ]
        );
    }

    #[test]
    fn plans_follow_kubectls_rules() {
        let current: Map<String, Value> =
            serde_json::from_value(json!({"a": "1", "b": "2"})).unwrap();
        let set = |k: &str, v: &str| Change::Set(k.into(), v.into());
        let (p, notes) = plan(
            &current,
            &[
                set("c", "3"),
                Change::Remove("b".into()),
                Change::Remove("z".into()),
            ],
            false,
            "label",
        )
        .unwrap();
        assert_eq!(Value::Object(p), json!({"c": "3", "b": null}));
        assert_eq!(notes, ["label \"z\" not found."]);
        // Same value: nothing to do; another value: needs --overwrite.
        assert!(plan(&current, &[set("a", "1")], false, "label")
            .unwrap()
            .0
            .is_empty());
        let err = plan(&current, &[set("a", "9")], false, "label").unwrap_err();
        assert_eq!(
            err.to_string(),
            "error: 'a' already has a value (1), and --overwrite is false"
        );
        assert_eq!(
            Value::Object(plan(&current, &[set("a", "9")], true, "label").unwrap().0),
            json!({"a": "9"})
        );
    }
}
