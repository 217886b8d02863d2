//! `tug delete`: delete objects named on the command line, in files (`-f`),
//! or selected by label (`-l`) or `--all`; by default waits until they are
//! gone, like kubectl.

use std::io::Write;
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, GetParams, ListParams, PropagationPolicy};

use super::{locate, DryRun, Target};
use crate::args::parse_resource_args;
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::manifest;

/// Delete resources by file names, stdin, resources and names, or by
/// resources and label selector.
///
/// Examples:
///   # Delete a pod using the type and name specified in pod.json
///   tug delete -f ./pod.json
///
///   # Delete pods and services with same names "baz" and "foo"
///   tug delete pod,service baz foo
///
///   # Delete pods and services with label name=myLabel
///   tug delete pods,services -l name=myLabel
///
///   # Delete a pod with minimal delay
///   tug delete pod foo --now
///
///   # Force delete a pod on a dead node
///   tug delete pod foo --force
///
///   # Delete all pods
///   tug delete pods --all
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct DeleteArgs {
    /// TYPE [NAME ...] | TYPE/NAME ...
    pub resources: Vec<String>,
    /// Files containing the resources to delete ('-' for stdin).
    #[arg(short = 'f', long = "filename")]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Delete all resources of the given types in the namespace.
    #[arg(long)]
    pub all: bool,
    /// With --all or a selector, across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// "background", "foreground", or "orphan": how dependents are deleted.
    #[arg(long, default_value = "background", num_args = 0..=1, default_missing_value = "background")]
    pub cascade: String,
    /// Seconds given to the resource to terminate gracefully (-1: the
    /// resource's default).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// Delete immediately (grace period 1 second).
    #[arg(long)]
    pub now: bool,
    /// Remove the resource immediately without waiting for confirmation
    /// that it has terminated.
    #[arg(long)]
    pub force: bool,
    /// Wait for the resources to be gone before returning.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub wait: bool,
    /// How long to wait (e.g. 30s, 5m); 0 waits forever.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Treat "resource not found" as a successful delete.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Must be "none", "server", or "client".
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
}

/// The delete options the flags ask for.
pub fn delete_params(a: &DeleteArgs, dry: DryRun) -> Result<DeleteParams> {
    let propagation_policy = Some(match a.cascade.as_str() {
        "background" | "true" => PropagationPolicy::Background,
        "foreground" => PropagationPolicy::Foreground,
        "orphan" | "false" => PropagationPolicy::Orphan,
        other => {
            return Err(CliError::client(format!(
                "invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\"."
            )))
        }
    });
    let mut grace = a.grace_period;
    if a.now {
        if grace >= 0 {
            return Err(CliError::client(
                "--now and --grace-period cannot be specified together",
            ));
        }
        grace = 1;
    }
    if a.force && grace < 0 {
        grace = 0;
    }
    // Zero means "immediately" only together with --force, as in kubectl.
    if grace == 0 && !a.force {
        grace = 1;
    }
    Ok(DeleteParams {
        dry_run: dry == DryRun::Server,
        grace_period_seconds: u32::try_from(grace).ok(),
        propagation_policy,
        preconditions: None,
    })
}

/// `30s`, `5m`, `1h`, `0` into a duration.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let bad = || {
        CliError::client(format!(
            "invalid argument {s:?} for \"--timeout\" flag: time: invalid duration {s:?}"
        ))
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: u64 = s[..split].parse().map_err(|_| bad())?;
    let secs = match &s[split..] {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

pub async fn run(ctx: &Ctx, a: DeleteArgs) -> Result<()> {
    let dry = DryRun::parse(&a.dry_run)?;
    let dp = delete_params(&a, dry)?;
    let timeout = parse_duration(&a.timeout)?;
    let mut targets: Vec<Target> = Vec::new();
    let mut errors: Vec<CliError> = Vec::new();
    if !a.filename.is_empty() {
        if !a.resources.is_empty() {
            return Err(CliError::client(
                "resource(s) were provided, but -f was also given",
            ));
        }
        for m in manifest::load(&a.filename, a.recursive)? {
            let (r, ns) = locate(ctx, &m.object, &m.source).await?;
            targets.push((
                r,
                ns,
                m.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            ));
        }
    } else {
        let type_names = parse_resource_args(&a.resources).map_err(CliError::Client)?;
        if type_names.is_empty() {
            return Err(CliError::client(
                "You must provide one or more resources by argument or filename.",
            ));
        }
        let selecting = a.all || a.selector.is_some() || a.field_selector.is_some();
        let ns = if a.all_namespaces {
            None
        } else {
            Some(ctx.namespace.clone())
        };
        for (word, names) in &type_names {
            for r in ctx.resolve(word).await? {
                if !names.is_empty() {
                    if selecting {
                        return Err(CliError::client(
                            "name cannot be provided when a selector is specified",
                        ));
                    }
                    let ns = r.namespaced.then(|| ctx.namespace.clone());
                    targets.extend(names.iter().map(|n| (r.clone(), ns.clone(), n.clone())));
                } else if !selecting {
                    return Err(CliError::client(
                        "resource(s) were provided, but no name was specified",
                    ));
                } else {
                    let mut lp = ListParams::default();
                    if let Some(l) = &a.selector {
                        lp = lp.labels(l);
                    }
                    if let Some(f) = &a.field_selector {
                        lp = lp.fields(f);
                    }
                    let list = ctx.send(ctx.request(&r, ns.as_deref()).list(&lp)?).await?;
                    for item in list["items"]
                        .as_array()
                        .map(|v| v.as_slice())
                        .unwrap_or(&[])
                    {
                        let md = &item["metadata"];
                        targets.push((
                            r.clone(),
                            md["namespace"].as_str().map(String::from),
                            md["name"].as_str().unwrap_or("").to_string(),
                        ));
                    }
                }
            }
        }
        if targets.is_empty() && selecting {
            // kubectl's delete reports this on stdout (get uses stderr).
            crate::out("No resources found\n")?;
            return Ok(());
        }
    }
    if a.force {
        eprintln!("Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.");
    }
    let verb = if a.force { "force deleted" } else { "deleted" };
    let mut deleted: Vec<(Target, String)> = Vec::new();
    for t in targets {
        let (r, ns, name) = &t;
        let uid = if dry == DryRun::Client {
            // Client dry run only checks that the object exists.
            match ctx
                .send(
                    ctx.request(r, ns.as_deref())
                        .get(name, &GetParams::default())?,
                )
                .await
            {
                Ok(_) => String::new(),
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
        } else {
            match ctx
                .send(ctx.request(r, ns.as_deref()).delete(name, &dp)?)
                .await
            {
                Ok(obj) => obj["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            }
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{} \"{name}\" {verb}{}", r.kind_group(), dry.suffix())?;
        out.flush()?;
        deleted.push((t, uid));
    }
    if a.wait && dry == DryRun::None {
        wait_gone(ctx, &deleted, timeout).await?;
    }
    let errors: Vec<CliError> = errors
        .into_iter()
        .filter(|e| !(a.ignore_not_found && e.is_not_found()))
        .collect();
    match errors.split_last() {
        None => Ok(()),
        Some((last, rest)) => {
            rest.iter().for_each(|e| eprintln!("{e}"));
            Err(last.clone())
        }
    }
}

/// Poll until every deleted object is gone (or replaced by a new one with
/// another uid).
async fn wait_gone(ctx: &Ctx, deleted: &[(Target, String)], timeout: Duration) -> Result<()> {
    let start = Instant::now();
    for ((r, ns, name), uid) in deleted {
        loop {
            match ctx
                .send(
                    ctx.request(r, ns.as_deref())
                        .get(name, &GetParams::default())?,
                )
                .await
            {
                Err(e) if e.is_not_found() => break,
                Err(e) => return Err(e),
                Ok(obj) if obj["metadata"]["uid"].as_str().unwrap_or("") != uid => break,
                Ok(_) => {}
            }
            if !timeout.is_zero() && start.elapsed() > timeout {
                return Err(CliError::client(format!(
                    "timed out waiting for the condition on {}/{name}",
                    r.plural_group()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: DeleteArgs,
    }

    fn params(args: &[&str]) -> Result<DeleteParams> {
        let mut v = vec!["delete"];
        v.extend_from_slice(args);
        let a = T::parse_from(v).a;
        delete_params(&a, DryRun::parse(&a.dry_run)?)
    }

    #[test]
    fn flags_translate_to_delete_options() {
        let cases: &[(&[&str], Option<u32>, &str)] = &[
            (&["pod", "x"], None, "Background"),
            (&["pod", "x", "--cascade=orphan"], None, "Orphan"),
            (
                &["pod", "x", "--cascade=foreground", "--grace-period=5"],
                Some(5),
                "Foreground",
            ),
            (&["pod", "x", "--force"], Some(0), "Background"),
            (
                &["pod", "x", "--force", "--grace-period=0"],
                Some(0),
                "Background",
            ),
            (&["pod", "x", "--grace-period=0"], Some(1), "Background"),
            (&["pod", "x", "--now"], Some(1), "Background"),
        ];
        for (args, grace, policy) in cases {
            let dp = params(args).unwrap();
            assert_eq!(dp.grace_period_seconds, *grace, "{args:?}");
            assert_eq!(
                format!("{:?}", dp.propagation_policy.unwrap()),
                *policy,
                "{args:?}"
            );
        }
        assert!(params(&["pod", "x", "--cascade=sideways"]).is_err());
        assert!(params(&["pod", "x", "--now", "--grace-period=3"]).is_err());
        assert!(params(&["pod", "x", "--dry-run=server"]).unwrap().dry_run);
    }

    #[test]
    fn wait_flag_and_timeouts_parse() {
        assert!(T::parse_from(["delete", "pod", "x"]).a.wait);
        assert!(!T::parse_from(["delete", "pod", "x", "--wait=false"]).a.wait);
        for (s, want) in [("0", 0), ("0s", 0), ("30s", 30), ("5m", 300), ("1h", 3600)] {
            assert_eq!(parse_duration(s).unwrap(), Duration::from_secs(want), "{s}");
        }
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
