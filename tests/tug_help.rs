//! `tug`'s help is complete: every verb `tug --help` lists answers
//! `tug <verb> --help` with status 0, a description, a `Usage:` line and a
//! kubectl-style `Examples:` section; and `tug completion` emits scripts
//! the shells load. Needs `cargo build -p tugboat-kubectl --bins` first.

use std::process::{Command, Output};

use tugboat_e2e::binary;

fn tug(args: &[&str]) -> Output {
    Command::new(binary("tug"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run tug")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The verbs in the `Commands:` section of `tug --help` (continuation
/// lines of long summaries are indented further and skipped).
fn verbs(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|v| v != "help")
        .collect()
}

#[test]
fn every_verb_has_a_description_usage_and_examples() {
    let out = tug(&["--help"]);
    assert!(out.status.success(), "tug --help failed");
    let verbs = verbs(&text(&out));
    // A spot check that the parsing found the list.
    for v in ["get", "apply", "config", "cordon", "drain", "completion"] {
        assert!(verbs.iter().any(|x| x == v), "{v} missing from {verbs:?}");
    }
    let mut missing = Vec::new();
    for verb in &verbs {
        let out = tug(&[verb, "--help"]);
        let help = text(&out);
        let description = help.lines().next().unwrap_or("").trim();
        let ok = out.status.success()
            && !description.is_empty()
            && !description.starts_with("Usage:")
            && help.lines().any(|l| l.starts_with("Usage: tug "))
            && help
                .split("\nExamples:\n")
                .nth(1)
                .is_some_and(|ex| ex.lines().any(|l| l.trim_start().starts_with("tug ")));
        if !ok {
            missing.push(format!("--- tug {verb} --help\n{help}"));
        }
    }
    assert!(
        missing.is_empty(),
        "incomplete help:\n{}",
        missing.join("\n")
    );
}

/// Run `shell -c script`; `None` when the shell is not installed.
fn shell(name: &str, script: &str) -> Option<Output> {
    let out = Command::new(name)
        .arg("-c")
        .arg(script)
        .env("TUG", binary("tug"))
        .output()
        .ok()?;
    Some(out)
}

#[test]
fn completion_scripts_load() {
    let bash = shell(
        "bash",
        r#"source <("$TUG" completion bash) && complete -p tug"#,
    )
    .expect("bash is installed");
    assert!(
        bash.status.success() && text(&bash).contains("tug"),
        "bash: {}{}",
        text(&bash),
        String::from_utf8_lossy(&bash.stderr)
    );
    // zsh and fish are checked where installed.
    if let Some(zsh) = shell(
        "zsh",
        r#"autoload -U compinit && compinit -u && source <("$TUG" completion zsh) && whence -w _tug"#,
    ) {
        assert!(
            zsh.status.success(),
            "zsh: {}",
            String::from_utf8_lossy(&zsh.stderr)
        );
    }
    if let Some(fish) = shell(
        "fish",
        r#""$TUG" completion fish | source; and complete -c tug | string length -q"#,
    ) {
        assert!(
            fish.status.success(),
            "fish: {}",
            String::from_utf8_lossy(&fish.stderr)
        );
    }
    // A bad shell name is a usage error with kubectl's status.
    let out = tug(&["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(1));
}
