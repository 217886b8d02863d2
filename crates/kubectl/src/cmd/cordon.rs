//! `tug cordon` / `tug uncordon`: set or clear a node's
//! `spec.unschedulable`, as kubectl's cordon helper does (a strategic merge
//! patch of just that field, only when it has to change). `drain` cordons
//! through the same code.

use serde_json::{json, Value};

use super::{patch_raw, DryRun, Target};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};

/// Mark node as unschedulable.
///
/// Examples:
///   # Mark node "foo" as unschedulable
///   tug cordon foo
///
///   # Mark every node labelled pool=blue as unschedulable
///   tug cordon -l pool=blue
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct CordonArgs {
    /// The nodes to cordon.
    pub node: Vec<String>,
    /// Selector (label query) to filter nodes on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Must be "none", "server", or "client".
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
}

/// Mark node as schedulable.
///
/// Examples:
///   # Mark node "foo" as schedulable
///   tug uncordon foo
///
///   # Mark every node labelled pool=blue as schedulable
///   tug uncordon -l pool=blue
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct UncordonArgs {
    #[command(flatten)]
    pub inner: CordonArgs,
}

/// The word kubectl prints after `node/x`.
pub fn verb(desired: bool, changed: bool) -> &'static str {
    match (desired, changed) {
        (true, true) => "cordoned",
        (true, false) => "already cordoned",
        (false, true) => "uncordoned",
        (false, false) => "already uncordoned",
    }
}

/// The strategic merge patch that brings `spec.unschedulable` to
/// `desired`; kubectl's two-way diff drops the field rather than writing
/// `false`.
pub fn unschedulable_patch(desired: bool) -> Value {
    if desired {
        json!({"spec": {"unschedulable": true}})
    } else {
        json!({"spec": {"unschedulable": null}})
    }
}

/// Check the node arguments the way kubectl's cordon/drain do.
pub fn check_node_args(verb: &str, nodes: &[String], selector: Option<&str>) -> Result<()> {
    let has_selector = selector.is_some_and(|s| !s.is_empty());
    if !nodes.is_empty() && has_selector {
        return Err(CliError::client(format!(
            "cannot specify both a node name and a --selector option\nSee 'tug {verb} -h' for help and examples"
        )));
    }
    if nodes.is_empty() && !has_selector {
        return Err(CliError::client(format!(
            "USAGE: {verb} NODE [flags]\nSee 'tug {verb} -h' for help and examples"
        )));
    }
    Ok(())
}

/// The nodes named or selected, as full objects.
pub async fn nodes(ctx: &Ctx, names: &[String], selector: Option<&str>) -> Result<Vec<Value>> {
    let r = node_resource(ctx).await?;
    let mut out = Vec::new();
    if let Some(sel) = selector.filter(|s| !s.is_empty()) {
        let lp = kube::api::ListParams::default().labels(sel);
        let list = ctx.send(ctx.request(&r, None).list(&lp)?).await?;
        out.extend(list["items"].as_array().cloned().unwrap_or_default());
    }
    for name in names {
        out.push(super::get_one(ctx, &(r.clone(), None, name.clone())).await?);
    }
    Ok(out)
}

async fn node_resource(ctx: &Ctx) -> Result<crate::discovery::Resource> {
    ctx.resolve("nodes")
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| CliError::client("the server doesn't have a resource type \"nodes\""))
}

/// Bring one node's `spec.unschedulable` to `desired` and return the line
/// kubectl prints (`node/x cordoned`, `node/x already cordoned`, ...).
pub async fn set_unschedulable(
    ctx: &Ctx,
    node: &Value,
    desired: bool,
    dry: DryRun,
) -> Result<String> {
    let name = node["metadata"]["name"].as_str().unwrap_or("").to_string();
    let current = node["spec"]["unschedulable"].as_bool().unwrap_or(false);
    let changed = current != desired;
    if changed && dry != DryRun::Client {
        let target: Target = (node_resource(ctx).await?, None, name.clone());
        let body = unschedulable_patch(desired);
        let ct = "application/strategic-merge-patch+json";
        patch_raw(ctx, &target, None, ct, &body, dry).await?;
    }
    Ok(format!(
        "node/{name} {}{}",
        verb(desired, changed),
        dry.suffix()
    ))
}

/// Cordon (`desired`) or uncordon every node the arguments name.
pub async fn run(ctx: &Ctx, a: CordonArgs, desired: bool) -> Result<()> {
    let word = if desired { "cordon" } else { "uncordon" };
    check_node_args(word, &a.node, a.selector.as_deref())?;
    let dry = DryRun::parse(&a.dry_run)?;
    let mut failed = false;
    for node in nodes(ctx, &a.node, a.selector.as_deref()).await? {
        match set_unschedulable(ctx, &node, desired, dry).await {
            Ok(line) => crate::out(&format!("{line}\n"))?,
            Err(e) => {
                // kubectl reports each node's failure and goes on.
                let name = node["metadata"]["name"].as_str().unwrap_or("");
                eprintln!("error: unable to {word} node {name:?}: {}", bare(&e));
                failed = true;
            }
        }
    }
    if failed {
        return Err(CliError::Plain(String::new()));
    }
    Ok(())
}

/// An error's message without kubectl's "error: " / "Error from server"
/// framing, for embedding in another message (Go's `%v` of the error).
pub fn bare(e: &CliError) -> String {
    match e {
        CliError::Server { message, .. } => message.clone(),
        CliError::Client(m) | CliError::Plain(m) => m.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_patches() {
        let cases = [
            (true, true, "cordoned"),
            (true, false, "already cordoned"),
            (false, true, "uncordoned"),
            (false, false, "already uncordoned"),
        ];
        for (desired, changed, want) in cases {
            assert_eq!(verb(desired, changed), want);
        }
        assert_eq!(unschedulable_patch(true)["spec"]["unschedulable"], true);
        assert!(unschedulable_patch(false)["spec"]["unschedulable"].is_null());
    }

    #[test]
    fn node_arguments() {
        let one = vec!["a".to_string()];
        let two = vec!["a".to_string(), "b".to_string()];
        let cases: [(&[String], Option<&str>, Option<&str>); 5] = [
            (&two, None, None),
            (&one, None, None),
            (&[], Some("x=y"), None),
            (&[], None, Some("USAGE: cordon NODE [flags]")),
            (&one, Some("x=y"), Some("cannot specify both")),
        ];
        for (nodes, sel, want) in cases {
            let got = check_node_args("cordon", nodes, sel);
            match want {
                None => assert!(got.is_ok(), "{nodes:?} {sel:?}"),
                Some(text) => assert!(
                    got.unwrap_err().to_string().contains(text),
                    "{nodes:?} {sel:?}"
                ),
            }
        }
    }
}
