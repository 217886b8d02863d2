//! `tug-controller-manager`: parse flags, serve `/healthz`, win the leader
//! election, run the enabled controllers until Ctrl-C or until leadership
//! is lost (the work is in [`tugboat_controller_manager::cli`]).

use clap::Parser;
use tugboat_controller_manager::cli::{run, Flags};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&flags.log_level))
        .init();
    run(flags, component_base::signals::shutdown_signal()).await
}
