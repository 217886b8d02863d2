//! `tug apply -f`: server-side apply of every object in the files, as
//! `kubectl apply --server-side` does (field manager `tug`, conflicts are
//! errors unless `--force-conflicts`).

use std::io::Write;

use kube::api::{Patch, PatchParams};

use super::{locate, when, DryRun};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::manifest;
use crate::printers::table::TabWriter;
use crate::printers::Output;

/// Apply a configuration to a resource by file name or stdin.
///
/// Objects are sent with server-side apply: the server merges them and
/// records which fields this manager owns. JSON and YAML are accepted.
///
/// Examples:
///   # Apply the configuration in pod.json to a pod
///   tug apply -f ./pod.json
///
///   # Apply every manifest under a directory tree
///   tug apply -R -f ./manifests/
///
///   # Apply the JSON passed into stdin
///   cat pod.json | tug apply -f -
///
///   # Take ownership of fields another manager set
///   tug apply -f app.yaml --force-conflicts
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ApplyArgs {
    /// The files that contain the configurations to apply ('-' for stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Server-side apply (the only mode tug implements; kept for kubectl
    /// compatibility).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub server_side: bool,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "tug")]
    pub field_manager: String,
    /// Take ownership of fields other managers own instead of failing.
    #[arg(long)]
    pub force_conflicts: bool,
    /// Must be "none", "server", or "client".
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    /// Output format: json, yaml, name, jsonpath=..., custom-columns=...
    #[arg(short = 'o', long = "output")]
    pub output: Option<String>,
}

/// The patch parameters the flags ask for.
pub fn patch_params(a: &ApplyArgs, dry: DryRun) -> PatchParams {
    let mut pp = PatchParams::apply(&a.field_manager);
    pp.force = a.force_conflicts;
    pp.dry_run = dry == DryRun::Server;
    pp
}

pub async fn run(ctx: &Ctx, a: ApplyArgs) -> Result<()> {
    if !a.server_side {
        return Err(CliError::client(
            "tug implements server-side apply only; drop --server-side=false",
        ));
    }
    let dry = DryRun::parse(&a.dry_run)?;
    let output = a
        .output
        .as_deref()
        .map(Output::parse)
        .transpose()
        .map_err(CliError::Client)?;
    let pp = patch_params(&a, dry);
    let mut last_err: Option<CliError> = None;
    for m in manifest::load(&a.filename, a.recursive)? {
        let result = async {
            let (r, ns) = locate(ctx, &m.object, &m.source).await?;
            let name = m.object["metadata"]["name"].as_str().unwrap_or("").to_string();
            if name.is_empty() {
                return Err(CliError::client(format!("error when retrieving current configuration of:\nResource: {:?}, Name: \"\"\nfrom server for: {:?}: resource name may not be empty", r.plural_group(), m.source)));
            }
            let applied = if dry == DryRun::Client {
                m.object.clone()
            } else {
                let req = ctx.request(&r, ns.as_deref()).patch(&name, &pp, &Patch::Apply(&m.object))?;
                ctx.send(req).await.map_err(|e| when(e, "patching", &m.source))?
            };
            let text = match &output {
                Some(o) => super::get::print_objects(o, std::slice::from_ref(&applied), true, false, &mut TabWriter::default()),
                None => format!("{}/{name} serverside-applied{}\n", r.kind_group(), dry.suffix()),
            };
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            if let Some(prev) = last_err.replace(e) {
                eprintln!("{prev}");
            }
        }
    }
    last_err.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ApplyArgs,
    }

    #[test]
    fn flags_translate_to_apply_requests() {
        let cases = [
            (vec!["apply", "-f", "x"], "?&fieldManager=tug"),
            (
                vec![
                    "apply",
                    "-f",
                    "x",
                    "--force-conflicts",
                    "--field-manager=me",
                ],
                "?&force=true&fieldManager=me",
            ),
            (
                vec!["apply", "-f", "x", "--dry-run=server"],
                "?&dryRun=All&fieldManager=tug",
            ),
        ];
        for (args, query) in cases {
            let a = T::parse_from(args.clone()).a;
            let pp = patch_params(&a, DryRun::parse(&a.dry_run).unwrap());
            let obj = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
            let req = kube::core::Request::new("/api/v1/namespaces/default/configmaps")
                .patch("c", &pp, &Patch::Apply(&obj))
                .unwrap();
            assert_eq!(req.method(), http::Method::PATCH);
            assert_eq!(
                req.uri().to_string(),
                format!("/api/v1/namespaces/default/configmaps/c{query}"),
                "{args:?}"
            );
            assert_eq!(
                req.headers()["content-type"],
                "application/apply-patch+yaml"
            );
        }
    }
}
