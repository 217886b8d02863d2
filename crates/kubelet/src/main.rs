//! `tug-kubelet`: parse flags, serve `/healthz`, run the kubelet until
//! Ctrl-C (the work is in [`tugboat_kubelet::cli`]). `tug-kubelet
//! process-shim <dir>` (hidden) is the shim of the process runtime, which
//! runs one container detached from the kubelet.

use clap::Parser;
use tugboat_kubelet::cli::{run, Flags};
use tugboat_kubelet::runtime::process::SHIM_SUBCOMMAND;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == SHIM_SUBCOMMAND) {
        // A shim: no tokio, no flags, just the container.
        let Some(dir) = args.next() else {
            anyhow::bail!("usage: tug-kubelet {SHIM_SUBCOMMAND} <container dir>");
        };
        std::process::exit(tugboat_kubelet::runtime::process::shim_main(
            std::path::Path::new(&dir),
        ));
    }
    let flags = Flags::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(&flags.log_level))
                .init();
            run(flags, component_base::signals::shutdown_signal()).await
        })
}
