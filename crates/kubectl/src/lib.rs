//! `tug`: a kubectl-style command-line client.
//!
//! Everything goes through kube-rs: the kubeconfig (`--kubeconfig`,
//! `KUBECONFIG`, `~/.kube/config`, `--context`, `-n`), discovery of every
//! served resource (so short names, categories and custom types work), and
//! dynamic requests built from `ApiResource`. Verbs live in `cmd/`, pure
//! formatting in `printers/`; errors print the way kubectl prints them and
//! exit with status 1.

pub mod args;
pub mod cmd;
pub mod ctx;
pub mod discovery;
pub mod error;
pub mod manifest;
pub mod podref;
pub mod printers;
/// SPDY framing and connections (shared with the kubelet).
pub use spdy;
pub mod tty;

use clap::{Parser, Subcommand};

use ctx::{ConnectArgs, Ctx};
use error::Result;

/// tug controls a Tugboat (or any Kubernetes) cluster.
///
/// Find more information in the project's README.
#[derive(Debug, Parser)]
#[command(name = "tug", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs. Each one's help (summary line, details, examples) comes
/// from its argument struct's doc comment.
#[derive(Debug, Subcommand)]
pub enum Command {
    Get(cmd::get::GetArgs),
    Create(cmd::create::CreateArgs),
    Apply(cmd::apply::ApplyArgs),
    Delete(cmd::delete::DeleteArgs),
    Describe(cmd::describe::DescribeArgs),
    Edit(cmd::edit::EditArgs),
    Label(cmd::label::LabelArgs),
    #[command(about = "Update the annotations on a resource", long_about = cmd::annotate::LONG_HELP)]
    Annotate(cmd::label::LabelArgs),
    Patch(cmd::patch::PatchArgs),
    Scale(cmd::scale::ScaleArgs),
    // No doc comments on these: they would replace the subcommands' own
    // help (and its examples).
    #[command(subcommand)]
    Rollout(cmd::rollout::RolloutCommand),
    Wait(cmd::wait::WaitArgs),
    #[command(subcommand)]
    Top(cmd::top::TopCommand),
    // No doc comment here: it would replace ConfigCommand's help (and its
    // examples).
    #[command(subcommand)]
    Config(cmd::config::ConfigCommand),
    Version(cmd::version::VersionArgs),
    ApiResources(cmd::api_resources::ApiResourcesArgs),
    Explain(cmd::explain::ExplainArgs),
    Completion(cmd::completion::CompletionArgs),
    Cordon(cmd::cordon::CordonArgs),
    Uncordon(cmd::cordon::UncordonArgs),
    Drain(cmd::drain::DrainArgs),
    Logs(cmd::logs::LogsArgs),
    Exec(cmd::exec::ExecArgs),
    Attach(cmd::attach::AttachArgs),
    PortForward(cmd::port_forward::PortForwardArgs),
}

/// Write to stdout; a closed pipe (`tug get pods | head`) ends the
/// command quietly instead of panicking like `print!`.
pub fn out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())?;
    o.flush()?;
    Ok(())
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    // Commands that need no server (or connect themselves) come first.
    match cli.command {
        Command::Config(c) => return cmd::config::run(&cli.connect, c),
        Command::Version(a) => return cmd::version::run(&cli.connect, a).await,
        Command::Completion(a) => return cmd::completion::run(a),
        _ => {}
    }
    let ctx = Ctx::connect(&cli.connect).await?;
    match cli.command {
        Command::Get(a) => cmd::get::run(&ctx, a).await,
        Command::Create(a) => cmd::create::run(&ctx, a).await,
        Command::Apply(a) => cmd::apply::run(&ctx, a).await,
        Command::Delete(a) => cmd::delete::run(&ctx, a).await,
        Command::Describe(a) => cmd::describe::run(&ctx, a).await,
        Command::Edit(a) => cmd::edit::run(&ctx, a).await,
        Command::Label(a) => cmd::label::run(&ctx, a, cmd::label::Field::Labels).await,
        Command::Annotate(a) => cmd::annotate::run(&ctx, a).await,
        Command::Patch(a) => cmd::patch::run(&ctx, a).await,
        Command::Scale(a) => cmd::scale::run(&ctx, a).await,
        Command::Rollout(c) => cmd::rollout::run(&ctx, c).await,
        Command::Wait(a) => cmd::wait::run(&ctx, a).await,
        Command::Top(c) => cmd::top::run(&ctx, c).await,
        Command::ApiResources(a) => cmd::api_resources::run(&ctx, a).await,
        Command::Explain(a) => cmd::explain::run(&ctx, a).await,
        Command::Cordon(a) => cmd::cordon::run(&ctx, a, true).await,
        Command::Uncordon(a) => cmd::cordon::run(&ctx, a.inner, false).await,
        Command::Drain(a) => cmd::drain::run(&ctx, &cli.connect, a).await,
        Command::Logs(a) => cmd::logs::run(&ctx, a).await,
        Command::Exec(a) => cmd::exec::run(&ctx, a).await,
        Command::Attach(a) => cmd::attach::run(&ctx, a).await,
        Command::PortForward(a) => cmd::port_forward::run(&ctx, a).await,
        Command::Config(_) | Command::Version(_) | Command::Completion(_) => Ok(()),
    }
}
