//! One module per verb. Each exposes its clap arguments (with kubectl-style
//! help and examples) and an async `run`; shared pieces used by several
//! verbs live here.

pub mod annotate;
pub mod api_resources;
pub mod apply;
pub mod attach;
pub mod completion;
pub mod config;
pub mod cordon;
pub mod create;
pub mod delete;
pub mod describe;
pub mod drain;
pub mod edit;
pub mod exec;
pub mod explain;
pub mod get;
pub mod label;
pub mod logs;
pub mod patch;
pub mod port_forward;
pub mod rollout;
pub mod scale;
pub mod top;
pub mod version;
pub mod wait;
pub mod watch_until;

use serde_json::Value;

use crate::ctx::Ctx;
use crate::discovery::Resource;
use crate::error::{CliError, Result};

/// `--dry-run`: none, client or server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DryRun {
    None,
    Client,
    Server,
}

impl DryRun {
    /// Parse kubectl's values (`--dry-run` alone means client).
    pub fn parse(s: &str) -> Result<DryRun> {
        match s {
            "none" | "false" => Ok(DryRun::None),
            "client" | "true" => Ok(DryRun::Client),
            "server" => Ok(DryRun::Server),
            other => Err(CliError::client(format!(
                "Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."
            ))),
        }
    }

    /// The suffix kubectl adds to its one-line reports.
    pub fn suffix(self) -> &'static str {
        match self {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }
}

/// The resource and namespace a manifest object belongs to; the object's
/// own namespace wins over `-n`.
pub async fn locate(ctx: &Ctx, obj: &Value, source: &str) -> Result<(Resource, Option<String>)> {
    let api_version = obj["apiVersion"].as_str().unwrap_or("");
    let kind = obj["kind"].as_str().unwrap_or("");
    let Some(r) = ctx.catalog().await?.by_kind(api_version, kind) else {
        return Err(CliError::client(format!(
            "resource mapping not found for name: {:?} namespace: {:?} from {source:?}: no matches for kind {kind:?} in version {api_version:?}\nensure CRDs are installed first",
            obj["metadata"]["name"].as_str().unwrap_or(""),
            obj["metadata"]["namespace"].as_str().unwrap_or(""),
        )));
    };
    let ns = r.namespaced.then(|| {
        obj["metadata"]["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(String::from)
            .unwrap_or_else(|| ctx.namespace.clone())
    });
    Ok((r, ns))
}

/// Add "error when creating \"file\": " to a server error, as kubectl does.
pub fn when(e: CliError, verb: &str, source: &str) -> CliError {
    match e {
        CliError::Server { reason, message } => CliError::Server {
            reason,
            message: format!("error when {verb} {source:?}: {message}"),
        },
        other => other,
    }
}

/// An object a verb acts on: resource, namespace, name.
pub type Target = (Resource, Option<String>, String);

/// The objects named by resource arguments, `-f` files, or a label
/// selector / `--all` over the given types (label, annotate, patch, scale).
pub async fn select(
    ctx: &Ctx,
    resources: &[String],
    files: &[String],
    selector: Option<&str>,
    all: bool,
) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    if !files.is_empty() {
        for m in crate::manifest::load(files, false)? {
            let (r, ns) = locate(ctx, &m.object, &m.source).await?;
            out.push((
                r,
                ns,
                m.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            ));
        }
        return Ok(out);
    }
    let type_names = crate::args::parse_resource_args(resources).map_err(CliError::Client)?;
    if type_names.is_empty() {
        return Err(CliError::client(
            "You must provide one or more resources by argument or filename.",
        ));
    }
    for (word, names) in type_names {
        for r in ctx.resolve(&word).await? {
            let ns = r.namespaced.then(|| ctx.namespace.clone());
            if !names.is_empty() {
                out.extend(names.iter().map(|n| (r.clone(), ns.clone(), n.clone())));
            } else if selector.is_some() || all {
                let mut lp = kube::api::ListParams::default();
                if let Some(l) = selector {
                    lp = lp.labels(l);
                }
                let list = ctx.send(ctx.request(&r, ns.as_deref()).list(&lp)?).await?;
                for item in list["items"]
                    .as_array()
                    .map(|v| v.as_slice())
                    .unwrap_or(&[])
                {
                    out.push((
                        r.clone(),
                        ns.clone(),
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

/// Print every error but the last, which becomes the command's result.
pub fn last_error(errors: Vec<CliError>) -> Result<()> {
    match errors.split_last() {
        None => Ok(()),
        Some((last, rest)) => {
            rest.iter().for_each(|e| eprintln!("{e}"));
            Err(last.clone())
        }
    }
}

/// `PATCH` an object (or a subresource) with a raw body and content type.
pub async fn patch_raw(
    ctx: &Ctx,
    t: &Target,
    subresource: Option<&str>,
    content_type: &str,
    body: &Value,
    dry: DryRun,
) -> Result<Value> {
    let (r, ns, name) = t;
    let mut url = format!("{}/{name}", ctx.url(r, ns.as_deref()));
    if let Some(s) = subresource {
        url = format!("{url}/{s}");
    }
    if dry == DryRun::Server {
        url.push_str("?dryRun=All");
    }
    let req = http::Request::patch(url)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(serde_json::to_vec(body)?)
        .map_err(CliError::client)?;
    ctx.send(req).await
}

/// `GET` one target.
pub async fn get_one(ctx: &Ctx, t: &Target) -> Result<Value> {
    let (r, ns, name) = t;
    ctx.send(
        ctx.request(r, ns.as_deref())
            .get(name, &kube::api::GetParams::default())?,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_values() {
        let cases = [
            ("none", DryRun::None, ""),
            ("client", DryRun::Client, " (dry run)"),
            ("server", DryRun::Server, " (server dry run)"),
        ];
        for (s, want, suffix) in cases {
            assert_eq!(DryRun::parse(s).unwrap(), want);
            assert_eq!(want.suffix(), suffix);
        }
        assert!(DryRun::parse("maybe")
            .unwrap_err()
            .to_string()
            .contains("Invalid dry-run value (maybe)"));
    }

    #[test]
    fn server_errors_name_the_file() {
        let e = CliError::Server {
            reason: "AlreadyExists".into(),
            message: "x".into(),
        };
        assert_eq!(
            when(e, "creating", "a.yaml").to_string(),
            "Error from server (AlreadyExists): error when creating \"a.yaml\": x"
        );
    }
}
