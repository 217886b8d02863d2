//! `tug patch`: a strategic merge, JSON merge or JSON patch sent as is;
//! reports `patched (no change)` when the object came back unchanged.

use std::io::Write;

use serde_json::Value;

use super::{get_one, last_error, patch_raw, select, DryRun};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};

/// Update fields of a resource using strategic merge patch, a JSON merge
/// patch, or a JSON patch.
///
/// Examples:
///   # Partially update a node using a strategic merge patch
///   tug patch node k8s-node-1 -p '{"spec":{"unschedulable":true}}'
///
///   # Update a deployment's replicas through a JSON merge patch
///   tug patch deploy web --type=merge -p '{"spec":{"replicas":3}}'
///
///   # Update a container's image using a JSON patch
///   tug patch pod valid-pod --type='json' -p='[{"op": "replace", "path": "/spec/containers/0/image", "value":"new image"}]'
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct PatchArgs {
    /// TYPE NAME | TYPE/NAME
    pub resources: Vec<String>,
    /// Files identifying the resources to patch.
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
    /// The patch to be applied to the resource JSON (or YAML).
    #[arg(short = 'p', long)]
    pub patch: Option<String>,
    /// A file containing the patch.
    #[arg(long)]
    pub patch_file: Option<String>,
    /// The type of patch: json, merge or strategic.
    #[arg(long = "type", default_value = "strategic")]
    pub patch_type: String,
    /// Patch this subresource (status, scale).
    #[arg(long)]
    pub subresource: Option<String>,
    /// Must be "none", "server", or "client".
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
}

/// The content type for `--type`.
pub fn content_type(t: &str) -> Result<&'static str> {
    match t {
        "strategic" => Ok("application/strategic-merge-patch+json"),
        "merge" => Ok("application/merge-patch+json"),
        "json" => Ok("application/json-patch+json"),
        other => Err(CliError::client(format!(
            "--type must be one of [json merge strategic], not {other:?}"
        ))),
    }
}

/// Parse the patch text (JSON or YAML) and check its shape for the type.
pub fn parse_patch(text: &str, patch_type: &str) -> Result<Value> {
    let v: Value = serde_yaml::from_str(text)
        .map_err(|e| CliError::client(format!("unable to parse {text:?}: {e}")))?;
    match (patch_type, &v) {
        ("json", Value::Array(_)) | ("strategic" | "merge", Value::Object(_)) => Ok(v),
        ("json", _) => Err(CliError::client(
            "unable to parse the json patch: expected a list of operations",
        )),
        _ => Err(CliError::client(format!(
            "unable to parse {text:?}: expected a JSON object"
        ))),
    }
}

pub async fn run(ctx: &Ctx, a: PatchArgs) -> Result<()> {
    let dry = DryRun::parse(&a.dry_run)?;
    let ct = content_type(&a.patch_type)?;
    let text = match (&a.patch, &a.patch_file) {
        (Some(p), None) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)?,
        _ => {
            return Err(CliError::client(
                "must specify --patch or --patch-file containing the contents of the patch",
            ))
        }
    };
    let body = parse_patch(&text, &a.patch_type)?;
    let targets = select(ctx, &a.resources, &a.filename, None, false).await?;
    let mut errors = Vec::new();
    for t in &targets {
        let result = async {
            let before = get_one(ctx, t).await?;
            let after = if dry == DryRun::Client {
                before.clone()
            } else {
                patch_raw(ctx, t, a.subresource.as_deref(), ct, &body, dry).await?
            };
            let same = a.subresource.is_none() && before == after && dry != DryRun::Client;
            let mut out = std::io::stdout().lock();
            let note = if same { " (no change)" } else { "" };
            writeln!(
                out,
                "{}/{} patched{note}{}",
                t.0.kind_group(),
                t.2,
                dry.suffix()
            )?;
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

    #[test]
    fn patch_types_and_bodies() {
        assert_eq!(
            content_type("strategic").unwrap(),
            "application/strategic-merge-patch+json"
        );
        assert_eq!(
            content_type("merge").unwrap(),
            "application/merge-patch+json"
        );
        assert_eq!(content_type("json").unwrap(), "application/json-patch+json");
        assert!(content_type("xml").is_err());
        let cases = [
            (r#"{"spec":{"replicas":3}}"#, "strategic", true),
            ("spec:\n  replicas: 3\n", "merge", true),
            (
                r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
                "json",
                true,
            ),
            (r#"{"spec":{}}"#, "json", false),
            ("[1]", "merge", false),
            ("{", "strategic", false),
        ];
        for (text, t, ok) in cases {
            assert_eq!(parse_patch(text, t).is_ok(), ok, "{text} as {t}");
        }
    }
}
