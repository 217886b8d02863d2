//! `tug attach`: connect to a running container's own stdin/stdout/stderr
//! over `pods/attach`, streamed exactly like `tug exec`.

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

use super::exec::{finish, params, setup_tty, stream, target};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::podref;
use crate::tty::{self, RawMode};

/// Attach to a process that is already running inside an existing
/// container.
///
/// Examples:
///   # Get output from running pod mypod; use the first container by default
///   tug attach mypod
///
///   # Switch to raw terminal mode; sends stdin to 'bash' in ruby-container from pod mypod
///   # and sends stdout/stderr from 'bash' back to the client
///   tug attach mypod -c ruby-container -i -t
///
///   # Get output from the first pod of a replica set named nginx
///   tug attach rs/nginx
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct AttachArgs {
    /// POD | TYPE/NAME
    pub target: Option<String>,
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

pub async fn run(ctx: &Ctx, a: AttachArgs) -> Result<()> {
    let wait = podref::running_timeout(&a.pod_running_timeout)?;
    let Some(target_arg) = a.target.as_deref() else {
        return Err(CliError::client(
            "at least 1 argument is required for attach",
        ));
    };
    let (pod, container) = target(
        ctx,
        target_arg,
        wait,
        a.container.as_deref(),
        a.quiet,
        "attach to",
    )
    .await?;
    let mut want_tty = a.tty;
    // A TTY only exists if the container asked for one (`tty: true`).
    let spec_tty = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == container))
        .is_some_and(|c| c.tty == Some(true));
    if want_tty && !spec_tty {
        want_tty = false;
        if !a.quiet {
            eprintln!("error: Unable to use a TTY - container {container} did not allocate one");
        }
    }
    let (streams, warn) = setup_tty(a.stdin, want_tty, tty::stdin_is_terminal(), a.quiet);
    if let Some(w) = warn {
        eprintln!("{w}");
    }
    if !a.quiet && streams.raw {
        eprintln!("If you don't see a command prompt, try pressing enter.");
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ap = params(&container, streams);
    let raw = streams.raw.then(RawMode::enter).flatten();
    let result = match api.attach(&name, &ap).await {
        Ok(p) => stream(p, streams).await,
        Err(e) => Err(e.into()),
    };
    drop(raw);
    finish(result, streams.stdin)
}
