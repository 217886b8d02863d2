//! `tug exec`: run a command in a container over `pods/exec` (kube-rs's
//! WebSocket `v5`/`v4.channel.k8s.io` client), piping stdin/stdout/stderr;
//! with `-t` on a terminal the local terminal goes raw and its size
//! follows into the container. The exit status is the remote command's,
//! with kubectl's "command terminated with exit code N". [`stream`] is
//! shared with `tug attach`.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, AttachedProcess, TerminalSize};

use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::podref;
use crate::tty::{self, RawMode};

/// Execute a command in a container.
///
/// Examples:
///   # Get output from running the 'date' command from pod mypod, using the first container by default
///   tug exec mypod -- date
///
///   # Get output from running the 'date' command in ruby-container from pod mypod
///   tug exec mypod -c ruby-container -- date
///
///   # Switch to raw terminal mode; sends stdin to 'bash' in ruby-container from pod mypod
///   # and sends stdout/stderr from 'bash' back to the client
///   tug exec mypod -c ruby-container -i -t -- bash -il
///
///   # Get output from running 'date' command from the first pod of the deployment mydeployment
///   tug exec deploy/mydeployment -- date
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ExecArgs {
    /// POD | TYPE/NAME (a command before `--` is no longer supported, as
    /// in kubectl).
    pub target: Vec<String>,
    /// The command and its arguments (after `--`).
    #[arg(last = true)]
    pub command: Vec<String>,
    /// Container name. If omitted, use the kubectl.kubernetes.io/default-
    /// container annotation for selecting the container to be attached or
    /// the first container in the pod will be chosen.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// The length of time (like 5s, 2m, or 3h, higher than zero) to wait
    /// until at least one pod is running.
    #[arg(long, default_value = "1m0s")]
    pub pod_running_timeout: String,
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Only print output from the remote session.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// A usage error with kubectl's pointer to the verb's help.
pub fn usage(verb: &str, message: &str) -> CliError {
    CliError::Plain(format!(
        "error: {message}\nSee 'tug {verb} -h' for help and examples"
    ))
}

/// How a session uses the local streams once the flags met the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streams {
    pub stdin: bool,
    pub tty: bool,
    /// Put the local terminal in raw mode.
    pub raw: bool,
}

/// kubectl's `SetupTTY`: `-t` without `-i` is dropped silently, `-t`
/// with a stdin that is no terminal is dropped with a warning (the
/// returned text, unless quiet).
pub fn setup_tty(
    stdin: bool,
    tty: bool,
    stdin_is_terminal: bool,
    quiet: bool,
) -> (Streams, Option<&'static str>) {
    if !stdin || !tty {
        let s = Streams {
            stdin,
            tty: false,
            raw: false,
        };
        return (s, None);
    }
    if !stdin_is_terminal {
        let warn = (!quiet)
            .then_some("Unable to use a TTY - input is not a terminal or the right kind of file");
        let s = Streams {
            stdin,
            tty: false,
            raw: false,
        };
        return (s, warn);
    }
    let s = Streams {
        stdin: true,
        tty: true,
        raw: true,
    };
    (s, None)
}

/// What a finished session's status means: `Ok(None)` success,
/// `Ok(Some(n))` the command exited with `n`, `Err` a failure to report.
pub fn exit_code(status: Option<&Status>) -> Result<Option<i32>> {
    let Some(s) = status else {
        return Ok(None);
    };
    if s.status.as_deref() == Some("Success") {
        return Ok(None);
    }
    if s.reason.as_deref() == Some("NonZeroExitCode") {
        let code = s
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|causes| {
                causes
                    .iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
                    .and_then(|c| c.message.as_deref()?.parse::<i32>().ok())
            })
            .unwrap_or(1);
        return Ok(Some(code));
    }
    // client-go's error-stream decoder turns any other failure into a
    // plain error carrying the status message.
    Err(CliError::client(s.message.clone().unwrap_or_default()))
}

/// The pod to stream with, checked to be running, and the container
/// (`-c` or the default, with kubectl's notice unless quiet).
pub async fn target(
    ctx: &Ctx,
    arg: &str,
    wait: std::time::Duration,
    container: Option<&str>,
    quiet: bool,
    verb: &str,
) -> Result<(Pod, String)> {
    let pod = podref::pod_for(ctx, arg, false, wait).await?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return Err(CliError::client(format!(
            "cannot {verb} a container in a completed pod; current phase is {phase}"
        )));
    }
    let c = match container {
        Some(c) => c.to_string(),
        None => {
            let (c, notes) = podref::default_container(&pod);
            if !quiet {
                notes.iter().for_each(|n| eprintln!("{n}"));
            }
            c
        }
    };
    Ok((pod, c))
}

pub async fn run(ctx: &Ctx, a: ExecArgs) -> Result<()> {
    let wait = podref::running_timeout(&a.pod_running_timeout)?;
    let Some((target_arg, extra)) = a.target.split_first() else {
        return Err(CliError::client(
            "pod, type/name or --filename must be specified",
        ));
    };
    if !extra.is_empty() {
        return Err(usage(
            "exec",
            "exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead",
        ));
    }
    if a.command.is_empty() {
        return Err(CliError::client(
            "you must specify at least one command for the container",
        ));
    }
    let (pod, container) = target(
        ctx,
        target_arg,
        wait,
        a.container.as_deref(),
        a.quiet,
        "exec into",
    )
    .await?;
    let (streams, warn) = setup_tty(a.stdin, a.tty, tty::stdin_is_terminal(), a.quiet);
    if let Some(w) = warn {
        eprintln!("{w}");
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let ap = params(&container, streams);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let raw = streams.raw.then(RawMode::enter).flatten();
    let proc = api.exec(&name, a.command.clone(), &ap).await;
    let result = match proc {
        Ok(p) => stream(p, streams).await,
        Err(e) => Err(e.into()),
    };
    drop(raw);
    finish(result, streams.stdin)
}

/// The attach/exec parameters for a container and the streams in use;
/// with a TTY the container's stderr arrives on stdout.
pub fn params(container: &str, s: Streams) -> AttachParams {
    AttachParams {
        container: Some(container.to_string()),
        stdin: s.stdin,
        stdout: true,
        stderr: !s.tty,
        tty: s.tty,
        ..AttachParams::default()
    }
}

/// Exit as the remote command did: kubectl's message and its code. With
/// stdin streamed the process exits here even on success: the thread
/// blocked reading the local stdin cannot be cancelled and would hold the
/// runtime's shutdown until the next key press.
pub fn finish(result: Result<Option<i32>>, stdin: bool) -> Result<()> {
    match result? {
        None if !stdin => Ok(()),
        None => {
            use std::io::Write;
            let _ = std::io::stdout().flush();
            std::process::exit(0);
        }
        Some(code) => {
            eprintln!("command terminated with exit code {code}");
            std::process::exit(code);
        }
    }
}

/// Pipe the local streams through a running session until the remote end
/// finishes; returns the remote exit code if it failed.
pub async fn stream(mut p: AttachedProcess, s: Streams) -> Result<Option<i32>> {
    let status = p.take_status();
    if s.stdin {
        if let Some(mut w) = p.stdin() {
            // The local stdin blocks a thread until input comes, so it
            // runs detached: the session's end does not wait for it.
            tokio::spawn(async move {
                let mut input = tokio::io::stdin();
                let _ = tokio::io::copy(&mut input, &mut w).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut w).await;
            });
        }
    }
    if s.tty {
        if let Some(mut sizes) = p.terminal_size() {
            tokio::spawn(async move {
                use futures::SinkExt;
                let send = |(width, height): (u16, u16)| TerminalSize { width, height };
                if let Some(size) = tty::window_size() {
                    let _ = sizes.send(send(size)).await;
                }
                let Ok(mut winch) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
                else {
                    return;
                };
                while winch.recv().await.is_some() {
                    if let Some(size) = tty::window_size() {
                        if sizes.send(send(size)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }
    let (stdout, stderr) = (p.stdout(), p.stderr());
    let out = async {
        if let Some(mut r) = stdout {
            let mut o = tokio::io::stdout();
            copy_flushing(&mut r, &mut o).await;
        }
    };
    let err = async {
        if let Some(mut r) = stderr {
            let mut e = tokio::io::stderr();
            copy_flushing(&mut r, &mut e).await;
        }
    };
    tokio::join!(out, err);
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    p.join()
        .await
        .map_err(|e| CliError::client(e.to_string()))?;
    exit_code(status.as_ref())
}

/// Copy until EOF, flushing each chunk so interactive output shows at once.
async fn copy_flushing<R, W>(r: &mut R, w: &mut W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if w.write_all(&buf[..n]).await.is_err() || w.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tty_setup_follows_kubectl() {
        let s = |stdin, tty, raw| Streams { stdin, tty, raw };
        let warn = Some("Unable to use a TTY - input is not a terminal or the right kind of file");
        let cases = [
            // (-i, -t, terminal, quiet) -> streams, warning
            ((false, false, true, false), (s(false, false, false), None)),
            ((false, true, true, false), (s(false, false, false), None)),
            ((true, false, true, false), (s(true, false, false), None)),
            ((true, true, false, false), (s(true, false, false), warn)),
            ((true, true, false, true), (s(true, false, false), None)),
            ((true, true, true, false), (s(true, true, true), None)),
        ];
        for ((i, t, term, q), want) in cases {
            assert_eq!(setup_tty(i, t, term, q), want, "{i} {t} {term} {q}");
        }
    }

    #[test]
    fn statuses_become_exit_codes() {
        let status = |v| serde_json::from_value::<Status>(v).unwrap();
        let ok = status(json!({"status": "Success"}));
        assert_eq!(exit_code(None).unwrap(), None);
        assert_eq!(exit_code(Some(&ok)).unwrap(), None);
        let three = status(json!({"status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: 3",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}));
        assert_eq!(exit_code(Some(&three)).unwrap(), Some(3));
        let broken = status(json!({"status": "Failure", "reason": "InternalError",
            "message": "exec failed"}));
        assert_eq!(
            exit_code(Some(&broken)).unwrap_err().to_string(),
            "error: exec failed"
        );
    }
}
