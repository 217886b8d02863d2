//! `tug-scheduler`'s command line as a library: [`Flags`] and [`run`], so
//! that `tug-scheduler` is a thin `main` and `tugboat server` runs the same
//! scheduler in its own process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use component_base::leader;
use futures::FutureExt;

use crate::{metrics, run};

/// The Tugboat scheduler: binds unscheduled pods to nodes.
#[derive(Debug, Parser)]
#[command(name = "tug-scheduler", version)]
pub struct Flags {
    /// Kubeconfig to reach the API server (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Schedule pods whose spec.schedulerName is this.
    #[arg(long, default_value = "default-scheduler")]
    pub scheduler_name: String,
    /// Elect a leader through a Lease, so several copies can run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "kube-scheduler")]
    pub leader_elect_resource_name: String,
    /// How long a leader's lease lasts without renewal, in seconds.
    #[arg(long, default_value_t = 15)]
    pub leader_elect_lease_duration: u64,
    /// How long a leader keeps trying to renew before it gives up, in seconds.
    #[arg(long, default_value_t = 10)]
    pub leader_elect_renew_deadline: u64,
    /// How often candidates retry and leaders renew, in seconds.
    #[arg(long, default_value_t = 2)]
    pub leader_elect_retry_period: u64,
    /// Where /metrics and /healthz are served (plain HTTP).
    #[arg(long, default_value = "0.0.0.0:10259")]
    pub metrics_address: SocketAddr,
    /// Log filter (RUST_LOG syntax).
    #[arg(
        short = 'v',
        long = "log-level",
        default_value = "info",
        env = "RUST_LOG"
    )]
    pub log_level: String,
}

impl Flags {
    /// The defaults, as if no flag were given.
    pub fn defaults() -> Self {
        Flags::parse_from(["tug-scheduler"])
    }
}

/// Schedule (after winning the election, with `--leader-elect`) until
/// `shutdown` resolves or leadership is lost.
pub async fn run(flags: Flags, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let shutdown = shutdown.boxed().shared();
    let client = component_base::client::client(flags.kubeconfig.as_deref()).await?;

    let recorder = Arc::new(metrics::Metrics::new());
    let listener = tokio::net::TcpListener::bind(flags.metrics_address)
        .await
        .with_context(|| format!("binding {}", flags.metrics_address))?;
    tokio::spawn(metrics::serve(
        listener,
        metrics::router(recorder.clone(), || true),
        std::future::pending(),
    ));
    let scheduler = run::Config {
        scheduler_name: flags.scheduler_name.clone(),
        metrics: recorder.clone(),
    };
    if !flags.leader_elect {
        tracing::info!(name = %scheduler.scheduler_name, "scheduling");
        return run::run(client, scheduler, shutdown.clone()).await;
    }

    let mut election = leader::LeaderElectionConfig::new(
        flags.leader_elect_resource_name.clone(),
        leader::default_identity(),
    );
    election.namespace = flags.leader_elect_resource_namespace.clone();
    election.lease_duration = Duration::from_secs(flags.leader_elect_lease_duration);
    election.renew_deadline = Duration::from_secs(flags.leader_elect_renew_deadline);
    election.retry_period = Duration::from_secs(flags.leader_elect_retry_period);
    let lease = election.name.clone();
    recorder.set_leader(&lease, false);
    tracing::info!(lease = %lease, identity = %election.identity, "waiting for leadership");
    let leadership = tokio::select! {
        won = leader::LeaderElector::new(client.clone(), election).acquire() => won?,
        _ = shutdown.clone() => return Ok(()),
    };
    recorder.set_leader(&lease, true);
    tracing::info!(name = %scheduler.scheduler_name, "leading; scheduling");
    let lost = leadership.lost();
    run::run(client, scheduler, async {
        tokio::select! {
            _ = lost => {}
            _ = shutdown.clone() => {}
        }
    })
    .await?;
    if !leadership.is_leader() {
        recorder.set_leader(&lease, false);
        // As upstream's kube-scheduler: a process that lost the lease exits
        // and lets its supervisor restart it as a candidate.
        anyhow::bail!("leader election lost");
    }
    // A clean shutdown hands the lease over at once.
    leadership.release().await;
    Ok(())
}
