//! `tug scale`: set `spec.replicas` through the `/scale` subresource,
//! optionally only when the current count matches `--current-replicas`.

use std::io::Write;

use serde_json::json;

use super::{last_error, patch_raw, select, DryRun};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};

/// Set a new size for a deployment, replica set, replication controller,
/// or stateful set.
///
/// Examples:
///   # Scale a deployment named 'web' to 3
///   tug scale --replicas=3 deployment/web
///
///   # If the deployment's current size is 2, scale it to 3
///   tug scale --current-replicas=2 --replicas=3 deployment/web
///
///   # Scale several deployments
///   tug scale --replicas=5 deploy/foo deploy/bar
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ScaleArgs {
    /// TYPE NAME | TYPE/NAME ...
    pub resources: Vec<String>,
    /// The new desired number of replicas.
    #[arg(long, required = true)]
    pub replicas: i64,
    /// Precondition for current size; -1 means no condition.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub current_replicas: i64,
    /// Files identifying the resources to scale.
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
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

pub async fn run(ctx: &Ctx, a: ScaleArgs) -> Result<()> {
    let dry = DryRun::parse(&a.dry_run)?;
    if a.replicas < 0 {
        return Err(CliError::client(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0",
        ));
    }
    let targets = select(ctx, &a.resources, &a.filename, a.selector.as_deref(), a.all).await?;
    let mut errors = Vec::new();
    for t in &targets {
        let result = async {
            if a.current_replicas >= 0 {
                let (r, ns, name) = t;
                let url = format!("{}/{name}/scale", ctx.url(r, ns.as_deref()));
                let req = http::Request::get(url)
                    .body(Vec::new())
                    .map_err(CliError::client)?;
                let scale = ctx.send(req).await?;
                let now = scale["spec"]["replicas"].as_i64().unwrap_or(0);
                if now != a.current_replicas {
                    return Err(CliError::client(format!(
                        "Expected replicas to be {}, was {now}",
                        a.current_replicas
                    )));
                }
            }
            if dry != DryRun::Client {
                let body = json!({"spec": {"replicas": a.replicas}});
                patch_raw(
                    ctx,
                    t,
                    Some("scale"),
                    "application/merge-patch+json",
                    &body,
                    dry,
                )
                .await?;
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}/{} scaled{}", t.0.kind_group(), t.2, dry.suffix())?;
            Ok::<(), CliError>(())
        }
        .await;
        if let Err(e) = result {
            errors.push(e);
        }
    }
    last_error(errors)
}
