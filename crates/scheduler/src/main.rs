//! `tug-scheduler`: parse flags, serve `/metrics` and `/healthz`, win the
//! leader election, schedule until Ctrl-C or until leadership is lost (the
//! work is in [`tugboat_scheduler::cli`]).

use clap::Parser;
use tugboat_scheduler::cli::{run, Flags};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&flags.log_level))
        .init();
    run(flags, component_base::signals::shutdown_signal()).await
}
