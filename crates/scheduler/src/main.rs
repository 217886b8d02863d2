//! `tug-scheduler`: parse flags, connect to the API server, schedule until
//! Ctrl-C/SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The Tugboat scheduler: binds unscheduled pods to nodes.
#[derive(Debug, Parser)]
#[command(name = "tug-scheduler", version)]
struct Flags {
    /// Kubeconfig to reach the API server (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Schedule pods whose spec.schedulerName is this.
    #[arg(long, default_value = "default-scheduler")]
    scheduler_name: String,
    /// Log filter (RUST_LOG syntax).
    #[arg(
        short = 'v',
        long = "log-level",
        default_value = "info",
        env = "RUST_LOG"
    )]
    log_level: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&flags.log_level))
        .init();
    let config = match &flags.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let client = kube::Client::try_from(config)?;
    let scheduler = tugboat_scheduler::run::Config {
        scheduler_name: flags.scheduler_name,
    };
    tracing::info!(name = %scheduler.scheduler_name, "scheduling");
    tugboat_scheduler::run::run(client, scheduler, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
