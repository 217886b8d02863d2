//! `tug-apiserver`: parse flags, open storage, serve until Ctrl-C/SIGTERM
//! (the work is in [`tugboat_apiserver::cli`]).

use clap::Parser;
use tugboat_apiserver::cli::{run, Flags};

/// Requests build and drop many small JSON values; mimalloc handles that
/// churn with far less time in the allocator than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&flags.log_level))
        .init();
    run(flags, shutdown_signal()).await
}
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return ctrl_c.await.unwrap_or(()),
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
