//! `tug logs`: a container's log through `pods/{name}/log` (kube-rs
//! `log_stream`), for one pod, a workload's pod (`deploy/x`), or every pod
//! a label selector matches, optionally followed and prefixed with
//! `[pod/name/container]` as kubectl does.

use std::time::Duration;

use futures::io::AsyncBufReadExt;
use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};

use super::exec::usage;
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::podref;

/// Print the logs for a container in a pod or specified resource. If the
/// pod has only one container, the container name is optional.
///
/// Examples:
///   # Return snapshot logs from pod nginx with only one container
///   tug logs nginx
///
///   # Return snapshot logs from all containers in pods defined by label app=nginx
///   tug logs -l app=nginx --all-containers=true
///
///   # Begin streaming the logs of the ruby container in pod web-1
///   tug logs -f -c ruby web-1
///
///   # Display only the most recent 20 lines of output in pod nginx
///   tug logs --tail=20 nginx
///
///   # Show all logs from pod nginx written in the last hour
///   tug logs --since=1h nginx
///
///   # Return snapshot logs from first container of a job named hello
///   tug logs job/hello
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct LogsArgs {
    /// POD | TYPE/NAME, optionally followed by the container name.
    pub args: Vec<String>,
    /// Print the logs of this container.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Specify if the logs should be streamed.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Lines of recent log file to display. Defaults to -1 with no
    /// selector, showing all log lines otherwise 10, if a selector is
    /// provided.
    #[arg(long, allow_negative_numbers = true)]
    pub tail: Option<i64>,
    /// Only return logs newer than a relative duration like 5s, 2m, or 3h.
    /// Defaults to all logs. Only one of since-time / since may be used.
    #[arg(long)]
    pub since: Option<String>,
    /// Only return logs after a specific date (RFC3339). Defaults to all
    /// logs. Only one of since-time / since may be used.
    #[arg(long)]
    pub since_time: Option<String>,
    /// Include timestamps on each line in the log output.
    #[arg(long)]
    pub timestamps: bool,
    /// If true, print the logs for the previous instance of the container
    /// in a pod if it exists.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Specify maximum number of concurrent logs to follow when using by a
    /// selector. Defaults to 5.
    #[arg(long, default_value_t = 5)]
    pub max_log_requests: usize,
    /// Prefix each log line with the log source (pod name and container
    /// name).
    #[arg(long)]
    pub prefix: bool,
    /// The length of time (like 5s, 2m, or 3h, higher than zero) to wait
    /// until at least one pod is running.
    #[arg(long, default_value = "20s")]
    pub pod_running_timeout: String,
    /// Get all containers' logs in the pod(s).
    #[arg(long)]
    pub all_containers: bool,
    /// Maximum bytes of logs to return. Defaults to no limit.
    #[arg(long, default_value_t = 0)]
    pub limit_bytes: i64,
    /// If watching / following pod logs, allow for any errors that occur
    /// to be non-fatal.
    #[arg(long)]
    pub ignore_errors: bool,
}

/// One log request: pod, container and what kubectl shows as the prefix.
#[derive(Debug, Clone, PartialEq)]
struct Source {
    pod: String,
    container: String,
}

impl Source {
    fn prefix(&self) -> String {
        prefix(&self.pod, &self.container)
    }
}

/// kubectl's `--prefix` text for a line.
pub fn prefix(pod: &str, container: &str) -> String {
    format!("[pod/{pod}/{container}] ")
}

/// Parse a Go duration (`300ms`, `5s`, `1h30m`, `1.5h`) as kubectl's
/// `--since` does.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() || neg {
        // Negative durations are meaningless for --since.
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    Some(Duration::from_secs_f64(total))
}

/// The `LogParams` the flags ask for (`selector`: a `-l` request, where
/// the tail defaults to 10 lines).
fn log_params(a: &LogsArgs, selector: bool) -> Result<LogParams> {
    let mut lp = LogParams {
        follow: a.follow,
        previous: a.previous,
        timestamps: a.timestamps,
        ..LogParams::default()
    };
    if a.limit_bytes < 0 {
        return Err(CliError::client("--limit-bytes must be greater than 0"));
    }
    if a.limit_bytes > 0 {
        lp.limit_bytes = Some(a.limit_bytes);
    }
    let tail = a.tail.unwrap_or(if selector { 10 } else { -1 });
    if tail < -1 {
        return Err(CliError::client(
            "--tail must be greater than or equal to -1",
        ));
    }
    if tail >= 0 {
        lp.tail_lines = Some(tail);
    }
    if a.since.is_some() && a.since_time.is_some() {
        return Err(CliError::client(
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        ));
    }
    if let Some(s) = &a.since {
        let d = parse_go_duration(s).ok_or_else(|| {
            CliError::client(format!(
                "invalid argument {s:?} for \"--since\" flag: time: invalid duration {s:?}"
            ))
        })?;
        // kubectl rounds to the nearest second; 0 means "all logs".
        let secs = d.as_secs_f64().round() as i64;
        if secs > 0 {
            lp.since_seconds = Some(secs);
        }
    }
    if let Some(t) = &a.since_time {
        let time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time =
            serde_json::from_value(serde_json::Value::String(t.clone()))
                .map_err(|_| CliError::client("--since-time must be RFC3339 format"))?;
        lp.since_time = Some(time.0);
    }
    Ok(lp)
}

pub async fn run(ctx: &Ctx, a: LogsArgs) -> Result<()> {
    let wait = podref::running_timeout(&a.pod_running_timeout)?;
    let mut container = a.container.clone();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let pods: Vec<Pod> = match (a.selector.as_deref(), a.args.as_slice()) {
        (Some(_), [_, ..]) => {
            return Err(usage("logs", "only a selector (-l) or a POD name is allowed"))
        }
        (Some(sel), []) => {
            let list = pods_api
                .list(&ListParams::default().labels(sel))
                .await?
                .items;
            if list.is_empty() {
                eprintln!("No resources found in {} namespace.", ctx.namespace);
                return Ok(());
            }
            list
        }
        (None, []) => {
            return Err(usage(
                "logs",
                "expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]'.\nPOD or TYPE/NAME is a required argument for the logs command",
            ))
        }
        (None, [target, rest @ ..]) => {
            match rest {
                [] => {}
                [c] if container.is_none() => container = Some(c.clone()),
                [_] => {
                    return Err(CliError::client(
                        "only one of -c or an inline [CONTAINER] arg is allowed",
                    ))
                }
                _ => {
                    return Err(CliError::client(
                        "expected POD, TYPE/NAME, or --selector (-l) to be specified",
                    ))
                }
            }
            // kubectl's resource builder words a missing object its own way.
            let pod = podref::pod_for(ctx, target, true, wait).await.map_err(|e| match e {
                CliError::Server { reason, message } if reason == "NotFound" => {
                    CliError::client(format!(
                        "error from server (NotFound): {message} in namespace {:?}",
                        ctx.namespace
                    ))
                }
                other => other,
            })?;
            vec![pod]
        }
    };
    let lp = log_params(&a, a.selector.is_some())?;
    if let (true, Some(c)) = (a.all_containers, container.as_deref()) {
        return Err(CliError::client(format!(
            "--all-containers=true should not be specified with container name {c}"
        )));
    }

    let mut sources = Vec::new();
    for pod in &pods {
        sources.extend(sources_of(pod, container.as_deref(), a.all_containers)?);
    }
    if a.follow && sources.len() > a.max_log_requests {
        return Err(CliError::client(format!(
            "you are attempting to follow {} log streams, but maximum allowed concurrency is {}, use --max-log-requests to increase the limit",
            sources.len(),
            a.max_log_requests
        )));
    }
    if a.follow && sources.len() > 1 {
        // Followed streams never end: read them all at once.
        let results = futures::future::join_all(
            sources
                .iter()
                .map(|s| copy_log(&pods_api, s, &lp, a.prefix)),
        )
        .await;
        return first_error(results, a.ignore_errors);
    }
    for s in &sources {
        let r = copy_log(&pods_api, s, &lp, a.prefix).await;
        if let Err(e) = r {
            if !a.ignore_errors {
                return Err(e);
            }
            eprintln!("{e}");
        }
    }
    Ok(())
}

/// The containers of one pod to read: `-c`, all of them, or the default
/// (printing kubectl's "Defaulted container" notice).
fn sources_of(pod: &Pod, container: Option<&str>, all: bool) -> Result<Vec<Source>> {
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let source = |c: &str| Source {
        pod: pod_name.clone(),
        container: c.to_string(),
    };
    if all {
        let spec = pod.spec.clone().unwrap_or_default();
        let mut out: Vec<Source> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| source(&c.name))
            .collect();
        out.extend(spec.containers.iter().map(|c| source(&c.name)));
        out.extend(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| source(&c.name)),
        );
        return Ok(out);
    }
    let name = match container {
        Some(c) => c.to_string(),
        None => {
            let (c, notes) = podref::default_container(pod);
            notes.iter().for_each(|n| eprintln!("{n}"));
            c
        }
    };
    if !podref::has_container(pod, &name) {
        return Err(CliError::client(format!(
            "container {name} is not valid for pod {pod_name}"
        )));
    }
    Ok(vec![source(&name)])
}

fn first_error(results: Vec<Result<()>>, ignore: bool) -> Result<()> {
    for r in results {
        if let Err(e) = r {
            if !ignore {
                return Err(e);
            }
            eprintln!("{e}");
        }
    }
    Ok(())
}

/// Copy one container's log to stdout, line by line with a prefix or as
/// raw bytes without.
async fn copy_log(api: &Api<Pod>, s: &Source, lp: &LogParams, prefixed: bool) -> Result<()> {
    let lp = LogParams {
        container: Some(s.container.clone()),
        ..lp.clone()
    };
    let mut reader = api.log_stream(&s.pod, &lp).await?;
    if !prefixed {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            crate::tty::out_bytes(&buf[..n])?;
        }
    }
    let p = s.prefix();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(());
        }
        let mut text = p.clone().into_bytes();
        text.extend_from_slice(&line);
        crate::tty::out_bytes(&text)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn go_durations_parse() {
        let cases = [
            ("5s", Some(5.0)),
            ("2m", Some(120.0)),
            ("1h30m", Some(5400.0)),
            ("1.5h", Some(5400.0)),
            ("300ms", Some(0.3)),
            ("0", Some(0.0)),
            ("", None),
            ("5", None),
            ("abc", None),
            ("5x", None),
            ("-5s", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_go_duration(s).map(|d| d.as_secs_f64()), want, "{s}");
        }
    }

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: LogsArgs,
    }

    fn params(args: &[&str], selector: bool) -> Result<LogParams> {
        let t = T::try_parse_from(std::iter::once("logs").chain(args.iter().copied())).unwrap();
        log_params(&t.a, selector)
    }

    #[test]
    fn flags_become_log_params() {
        let lp = params(
            &["p", "--since=1500ms", "--tail=3", "-f", "--timestamps"],
            false,
        )
        .unwrap();
        assert_eq!(lp.since_seconds, Some(2));
        assert_eq!(lp.tail_lines, Some(3));
        assert!(lp.follow && lp.timestamps && !lp.previous);
        // A selector reads the last 10 lines unless told otherwise.
        assert_eq!(params(&[], true).unwrap().tail_lines, Some(10));
        assert_eq!(params(&["p"], false).unwrap().tail_lines, None);
        assert_eq!(
            params(&["p", "--since=0s"], false).unwrap().since_seconds,
            None
        );
        assert!(params(&["p", "--since=2024-01-01T00:00:00Z"], false)
            .unwrap_err()
            .to_string()
            .contains("invalid duration"));
        assert!(params(&["p", "--since-time=2024-01-01T00:00:00Z"], false)
            .unwrap()
            .since_time
            .is_some());
        assert!(params(
            &["p", "--since=1s", "--since-time=2024-01-01T00:00:00Z"],
            false
        )
        .is_err());
        assert!(params(&["p", "--since-time=yesterday"], false).is_err());
    }

    #[test]
    fn prefixes_name_pod_and_container() {
        assert_eq!(prefix("web-1", "app"), "[pod/web-1/app] ");
    }
}
