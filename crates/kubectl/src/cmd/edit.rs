//! `tug edit`: open an object as YAML in `$KUBE_EDITOR`/`$EDITOR` (default
//! `vi`), send the result back, and re-open the file with the error at the
//! top when the edit cannot be parsed or the server rejects it, as kubectl
//! does. An unchanged or emptied file cancels the edit.

use std::io::Write;

use serde_json::Value;

use super::{get_one, last_error, select, Target};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::manifest;
use crate::printers::yaml::to_yaml;

/// Edit a resource from the default editor.
///
/// The editor is the first of KUBE_EDITOR and EDITOR that is set, else vi.
/// Lines beginning with '#' are ignored; an empty file aborts the edit.
///
/// Examples:
///   # Edit the service named 'registry'
///   tug edit svc/registry
///
///   # Use an alternative editor
///   KUBE_EDITOR="nano" tug edit deploy/web
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct EditArgs {
    /// TYPE NAME | TYPE/NAME
    #[arg(required = true)]
    pub resources: Vec<String>,
}

const HEADER: &str =
    "# Please edit the object below. Lines beginning with a '#' will be ignored,\n\
# and an empty file will abort the edit. If an error occurs while saving this file will be\n\
# reopened with the relevant failures.\n#\n";

/// The editor command kubectl would use.
pub fn editor() -> String {
    for var in ["KUBE_EDITOR", "EDITOR"] {
        if let Some(e) = std::env::var(var).ok().filter(|e| !e.trim().is_empty()) {
            return e;
        }
    }
    "vi".into()
}

/// The file text without comment lines.
pub fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The file re-opened after a failure: the error as comments on top.
pub fn with_error(what: &str, error: &str, body: &str) -> String {
    let mut out = String::from(HEADER);
    out.push_str(&format!("# {what} was not valid:\n"));
    for line in error.lines() {
        out.push_str(&format!("# * {line}\n"));
    }
    out.push_str("#\n");
    out.push_str(body);
    out
}

pub async fn run(ctx: &Ctx, a: EditArgs) -> Result<()> {
    let targets = select(ctx, &a.resources, &[], None, false).await?;
    let mut errors = Vec::new();
    for t in &targets {
        if let Err(e) = edit_one(ctx, t).await {
            errors.push(e);
        }
    }
    last_error(errors)
}

async fn edit_one(ctx: &Ctx, t: &Target) -> Result<()> {
    let mut original = get_one(ctx, t).await?;
    if let Some(m) = original["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    let what = format!("{} {:?}", t.0.plural_group(), t.2);
    let dir = std::env::temp_dir();
    let path = dir.join(format!("tug-edit-{}-{}.yaml", std::process::id(), t.2));
    let mut text = format!("{HEADER}{}", to_yaml(&original));
    loop {
        std::fs::write(&path, &text)?;
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{} \"$1\"", editor()))
            .arg("sh")
            .arg(&path)
            .status()
            .map_err(|e| CliError::client(format!("unable to launch the editor: {e}")))?;
        if !status.success() {
            return Err(CliError::client(format!(
                "there was a problem with the editor {:?}",
                editor()
            )));
        }
        let edited = std::fs::read_to_string(&path)?;
        let body = strip_comments(&edited);
        if body.trim().is_empty() {
            let _ = std::fs::remove_file(&path);
            crate::out("Edit cancelled, no changes made.\n")?;
            return Ok(());
        }
        if edited == text && text.contains("was not valid:") {
            // Re-opened with an error and saved unchanged: give up.
            return Err(CliError::client(format!(
                "Edit cancelled, no valid changes were saved.\nA copy of your changes has been stored to {:?}",
                path.display().to_string()
            )));
        }
        let parsed = manifest::parse(&body, "edited file").and_then(|docs| match docs.as_slice() {
            [one] => Ok(one.object.clone()),
            _ => Err(CliError::client(
                "the edited file must contain exactly one object",
            )),
        });
        let obj: Value = match parsed {
            Ok(o) => o,
            Err(e) => {
                text = with_error(&what, &e.to_string(), &body);
                continue;
            }
        };
        if obj == original {
            let _ = std::fs::remove_file(&path);
            crate::out("Edit cancelled, no changes made.\n")?;
            return Ok(());
        }
        let (r, ns, name) = t;
        let req = ctx.request(r, ns.as_deref()).replace(
            name,
            &Default::default(),
            serde_json::to_vec(&obj)?,
        )?;
        match ctx.send(req).await {
            Ok(_) => {
                let _ = std::fs::remove_file(&path);
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}/{name} edited", r.kind_group())?;
                return Ok(());
            }
            Err(e) => text = with_error(&what, &e.to_string(), &body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_errors() {
        assert_eq!(
            strip_comments("# a\nkind: Pod\n  # b\nx: 1\n"),
            "kind: Pod\nx: 1\n"
        );
        let t = with_error("pods \"p\"", "bad one\nbad two", "kind: Pod\n");
        assert!(
            t.ends_with("# pods \"p\" was not valid:\n# * bad one\n# * bad two\n#\nkind: Pod\n"),
            "{t}"
        );
        assert!(t.starts_with(HEADER));
    }
}
