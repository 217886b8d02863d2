//! One module per verb. Each exposes its clap arguments (with kubectl-style
//! help and examples) and an async `run`; shared pieces used by several
//! verbs live here.

pub mod apply;
pub mod create;
pub mod delete;
pub mod get;

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
