//! `tug-proxy`: parse flags, pick the backend (nftables when `nft` works,
//! else userspace), serve `/metrics` and `/healthz`, run the sync loop
//! until Ctrl-C or SIGTERM (the work is in [`tugboat_kube_proxy::cli`]).

use clap::Parser;
use tugboat_kube_proxy::cli::{run, Flags};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&flags.log_level))
        .init();
    run(flags, component_base::signals::shutdown_signal()).await
}
