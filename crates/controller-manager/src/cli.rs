//! `tug-controller-manager`'s command line as a library: [`Flags`] and
//! [`run`], so that `tug-controller-manager` is a thin `main` and `tugboat
//! server` runs the same controllers in its own process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::get;
use clap::Parser;
use component_base::leader;
use futures::FutureExt;

use crate::context::{Context, Settings};
use crate::controllers::{enabled, CONTROLLERS};
use crate::parse_duration;

/// The Tugboat controller manager: upstream's built-in controllers.
#[derive(Debug, Parser)]
#[command(name = "tug-controller-manager", version)]
pub struct Flags {
    /// Kubeconfig to reach the API server (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Controllers to run: `*` for all, `foo` to enable, `-foo` to disable.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// Workers per controller.
    #[arg(long, default_value_t = 5)]
    pub concurrent_syncs: usize,
    /// Heartbeat age after which a node is marked Unknown.
    #[arg(long, default_value = "50s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub node_monitor_period: Duration,
    /// How long a new node may take before its first heartbeat.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub node_startup_grace_period: Duration,
    /// How often HorizontalPodAutoscalers are evaluated.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub horizontal_pod_autoscaler_sync_period: Duration,
    /// How far back HPA scale-down recommendations are considered.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub horizontal_pod_autoscaler_downscale_stabilization: Duration,
    /// Most endpoints one EndpointSlice holds (1-1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub max_endpoints_per_slice: u16,
    /// How long pod changes are gathered before a Service's Endpoints sync.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub endpoint_updates_batch_period: Duration,
    /// How long pod changes are gathered before a Service's EndpointSlices sync.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub endpointslice_updates_batch_period: Duration,
    /// PEM CA certificate csrsigning issues certificates with (the API
    /// server's `<data-dir>/pki/ca.crt`); without it nothing is signed.
    #[arg(long, requires = "cluster_signing_key_file")]
    pub cluster_signing_cert_file: Option<PathBuf>,
    /// PEM private key of `--cluster-signing-cert-file`.
    #[arg(long, requires = "cluster_signing_cert_file")]
    pub cluster_signing_key_file: Option<PathBuf>,
    /// How long signed certificates live (a CSR's shorter
    /// `spec.expirationSeconds` wins).
    #[arg(long, default_value = "8760h", value_parser = parse_duration)]
    pub cluster_signing_duration: Duration,
    /// Elect a leader through a Lease, so several copies can run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "kube-controller-manager")]
    pub leader_elect_resource_name: String,
    /// Where /healthz is served (plain HTTP).
    #[arg(long, default_value = "0.0.0.0:10257")]
    pub health_address: SocketAddr,
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
        Flags::parse_from(["tug-controller-manager"])
    }
}

/// Run the enabled controllers (after winning the election, with
/// `--leader-elect`) until `shutdown` resolves or leadership is lost.
pub async fn run(flags: Flags, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let shutdown = shutdown.boxed().shared();
    let client = component_base::client::client(flags.kubeconfig.as_deref()).await?;

    let listener = tokio::net::TcpListener::bind(flags.health_address)
        .await
        .with_context(|| format!("binding {}", flags.health_address))?;
    let health = axum::Router::new().route("/healthz", get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, health).await });

    let settings = Settings {
        concurrent_syncs: flags.concurrent_syncs,
        node_monitor_grace_period: flags.node_monitor_grace_period,
        node_monitor_period: flags.node_monitor_period,
        node_startup_grace_period: flags.node_startup_grace_period,
        hpa_sync_period: flags.horizontal_pod_autoscaler_sync_period,
        hpa_downscale_stabilization: flags.horizontal_pod_autoscaler_downscale_stabilization,
        max_endpoints_per_slice: usize::from(flags.max_endpoints_per_slice),
        endpoint_updates_batch_period: flags.endpoint_updates_batch_period,
        endpointslice_updates_batch_period: flags.endpointslice_updates_batch_period,
        cluster_signing: match (
            &flags.cluster_signing_cert_file,
            &flags.cluster_signing_key_file,
        ) {
            (Some(cert), Some(key)) => Some(crate::controllers::certificates::load_signing(
                cert,
                key,
                flags.cluster_signing_duration,
            )?),
            _ => None,
        },
        ..Settings::default()
    };

    let leadership = if flags.leader_elect {
        let mut election = leader::LeaderElectionConfig::new(
            flags.leader_elect_resource_name.clone(),
            leader::default_identity(),
        );
        election.namespace = flags.leader_elect_resource_namespace.clone();
        tracing::info!(lease = %election.name, identity = %election.identity, "waiting for leadership");
        let won = tokio::select! {
            won = leader::LeaderElector::new(client.clone(), election).acquire() => won?,
            _ = shutdown.clone() => return Ok(()),
        };
        Some(won)
    } else {
        None
    };

    let ctx = Context::new(client, settings, "controller-manager");
    let mut running = tokio::task::JoinSet::new();
    for (name, start) in CONTROLLERS {
        if !enabled(name, &flags.controllers) {
            tracing::info!(controller = name, "disabled");
            continue;
        }
        tracing::info!(controller = name, "starting");
        let run = start(ctx.clone());
        running.spawn(async move { (*name, run.await) });
    }

    let lost = async {
        match &leadership {
            Some(l) => l.lost().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown.clone() => {}
        _ = lost => {
            // As upstream: a manager that lost its lease exits and lets its
            // supervisor restart it as a candidate.
            anyhow::bail!("leader election lost");
        }
        Some(done) = running.join_next() => {
            if let Ok((name, Err(error))) = done {
                anyhow::bail!("controller {name} failed: {error:#}");
            }
        }
    }
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    Ok(())
}
