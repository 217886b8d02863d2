//! `tug config`: read and switch kubeconfig contexts (`view`,
//! `current-context`, `get-contexts`, `use-context`), working on the same
//! files kube-rs loads (`--kubeconfig`, the first `KUBECONFIG` entry, or
//! `~/.kube/config`).

use std::path::PathBuf;

use serde_json::Value;

use crate::ctx::ConnectArgs;
use crate::error::{CliError, Result};
use crate::printers::table::TabWriter;
use crate::printers::yaml::to_yaml;

/// Modify kubeconfig files.
///
/// Examples:
///   # Show the merged kubeconfig settings
///   tug config view
///
///   # List the contexts, marking the current one
///   tug config get-contexts
///
///   # Switch to the context named 'prod'
///   tug config use-context prod
#[derive(Debug, Clone, clap::Subcommand)]
#[command(verbatim_doc_comment)]
pub enum ConfigCommand {
    /// Display merged kubeconfig settings (secrets omitted unless --raw)
    View {
        /// Show certificate data and tokens.
        #[arg(long)]
        raw: bool,
        /// Only the current context and what it refers to.
        #[arg(long)]
        minify: bool,
    },
    /// Display the current-context
    CurrentContext,
    /// Describe one or many contexts
    GetContexts {
        /// Only these contexts.
        names: Vec<String>,
        /// Don't print headers.
        #[arg(long)]
        no_headers: bool,
        /// Output format: name.
        #[arg(short = 'o', long = "output")]
        output: Option<String>,
    },
    /// Set the current-context in a kubeconfig file
    UseContext { name: String },
}

/// The kubeconfig file to read and write.
fn config_path(c: &ConnectArgs) -> Result<PathBuf> {
    if let Some(p) = &c.kubeconfig {
        return Ok(p.clone());
    }
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME").ok_or_else(|| CliError::client("HOME is not set"))?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}

fn load(c: &ConnectArgs) -> Result<(PathBuf, Value)> {
    let path = config_path(c)?;
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let v: Value = if text.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_yaml::from_str(&text).map_err(|e| {
            CliError::client(format!(
                "error loading config file {:?}: {e}",
                path.display().to_string()
            ))
        })?
    };
    Ok((path, v))
}

fn named<'a>(cfg: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    cfg[list].as_array()?.iter().find(|e| e["name"] == name)
}

/// `config view`: a normalized kubeconfig with secrets replaced, as kubectl
/// shows it.
pub fn view(cfg: &Value, raw: bool, minify: bool) -> Result<String> {
    let mut out = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": cfg.get("preferences").cloned().unwrap_or(serde_json::json!({})),
        "clusters": cfg["clusters"].as_array().cloned().unwrap_or_default(),
        "contexts": cfg["contexts"].as_array().cloned().unwrap_or_default(),
        "users": cfg["users"].as_array().cloned().unwrap_or_default(),
        "current-context": cfg["current-context"].as_str().unwrap_or(""),
    });
    if minify {
        let cur = cfg["current-context"].as_str().unwrap_or("").to_string();
        let ctx = named(cfg, "contexts", &cur)
            .cloned()
            .ok_or_else(|| CliError::client("current-context must exist in order to minify"))?;
        let cluster = ctx["context"]["cluster"].as_str().unwrap_or("");
        let user = ctx["context"]["user"].as_str().unwrap_or("");
        out["contexts"] = serde_json::json!([ctx]);
        out["clusters"] = serde_json::json!(named(cfg, "clusters", cluster)
            .into_iter()
            .collect::<Vec<_>>());
        out["users"] = serde_json::json!(named(cfg, "users", user).into_iter().collect::<Vec<_>>());
    }
    if !raw {
        redact(&mut out);
    }
    Ok(to_yaml(&out))
}

/// Certificate data becomes DATA+OMITTED, tokens and passwords REDACTED.
fn redact(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k.ends_with("-data") && val.is_string() {
                    *val = Value::String("DATA+OMITTED".into());
                } else if (k == "token" || k == "password") && val.is_string() {
                    *val = Value::String("REDACTED".into());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

/// `config get-contexts` rows.
pub fn contexts_table(
    cfg: &Value,
    names: &[String],
    no_headers: bool,
    name_only: bool,
) -> Result<String> {
    let cur = cfg["current-context"].as_str().unwrap_or("");
    let all = cfg["contexts"].as_array().cloned().unwrap_or_default();
    let mut chosen: Vec<&Value> = Vec::new();
    for n in names {
        chosen.push(
            all.iter()
                .find(|c| c["name"] == n.as_str())
                .ok_or_else(|| CliError::client(format!("context {n} not found")))?,
        );
    }
    if names.is_empty() {
        chosen = all.iter().collect();
        chosen.sort_by_key(|c| c["name"].as_str().unwrap_or("").to_string());
    }
    if name_only {
        return Ok(chosen
            .iter()
            .map(|c| format!("{}\n", c["name"].as_str().unwrap_or("")))
            .collect());
    }
    let mut rows = Vec::new();
    if !no_headers {
        rows.push(
            ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]
                .map(String::from)
                .to_vec(),
        );
    }
    for c in chosen {
        let name = c["name"].as_str().unwrap_or("");
        let field = |k: &str| c["context"][k].as_str().unwrap_or("").to_string();
        rows.push(vec![
            if name == cur {
                "*".into()
            } else {
                String::new()
            },
            name.to_string(),
            field("cluster"),
            field("user"),
            field("namespace"),
        ]);
    }
    Ok(TabWriter::default().write(&rows))
}

pub fn run(connect: &ConnectArgs, cmd: ConfigCommand) -> Result<()> {
    let (path, mut cfg) = load(connect)?;
    match cmd {
        ConfigCommand::View { raw, minify } => crate::out(&view(&cfg, raw, minify)?)?,
        ConfigCommand::CurrentContext => {
            match cfg["current-context"].as_str().filter(|c| !c.is_empty()) {
                Some(c) => crate::out(&format!("{c}\n"))?,
                None => return Err(CliError::client("current-context is not set")),
            }
        }
        ConfigCommand::GetContexts {
            names,
            no_headers,
            output,
        } => {
            let name_only = match output.as_deref() {
                None => false,
                Some("name") => true,
                Some(o) => {
                    return Err(CliError::client(format!(
                        "output must be one of '' or 'name': {o}"
                    )))
                }
            };
            crate::out(&contexts_table(&cfg, &names, no_headers, name_only)?)?;
        }
        ConfigCommand::UseContext { name } => {
            if named(&cfg, "contexts", &name).is_none() {
                return Err(CliError::client(format!(
                    "no context exists with the name: {name:?}"
                )));
            }
            cfg["current-context"] = Value::String(name.clone());
            let text = serde_yaml::to_string(&cfg).map_err(CliError::client)?;
            std::fs::write(&path, text)?;
            crate::out(&format!("Switched to context {name:?}.\n"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "a",
            "clusters": [{"name": "c1", "cluster": {"server": "https://x", "certificate-authority-data": "QUJD"}},
                         {"name": "c2", "cluster": {"server": "https://y"}}],
            "contexts": [{"name": "b", "context": {"cluster": "c2", "user": "u2"}},
                         {"name": "a", "context": {"cluster": "c1", "user": "u1", "namespace": "dev"}}],
            "users": [{"name": "u1", "user": {"token": "secret"}}, {"name": "u2", "user": {}}]
        })
    }

    #[test]
    fn contexts_list_like_kubectl() {
        assert_eq!(
            contexts_table(&cfg(), &[], false, false).unwrap(),
            "CURRENT   NAME   CLUSTER   AUTHINFO   NAMESPACE\n*         a      c1        u1         dev\n          b      c2        u2         \n"
        );
        assert_eq!(contexts_table(&cfg(), &[], false, true).unwrap(), "a\nb\n");
        assert!(contexts_table(&cfg(), &["zz".into()], false, false).is_err());
    }

    #[test]
    fn view_redacts_and_minifies() {
        let v = view(&cfg(), false, true).unwrap();
        assert!(
            v.contains("certificate-authority-data: DATA+OMITTED"),
            "{v}"
        );
        assert!(v.contains("token: REDACTED"), "{v}");
        assert!(!v.contains("c2"), "{v}");
        assert!(v.contains("preferences: {}\n"), "{v}");
        assert!(view(&cfg(), true, false).unwrap().contains("QUJD"));
    }
}
