//! `tug-proxy`'s command line as a library: [`Flags`] and [`run`], so that
//! `tug-proxy` is a thin `main` and `tugboat server` runs the same proxy in
//! its own process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::metrics::{healthz_router, metrics_router, Metrics};
use crate::nftables::{self, Cidr, NftConfig};
use crate::sync::{run as sync_loop, Backend, NftBackend, SyncConfig};
use crate::userspace::Userspace;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// An `ip tugboat` nftables table (DNAT in the kernel).
    Nftables,
    /// A TCP/UDP relay in this process.
    Userspace,
}

/// The Tugboat kube-proxy: makes Service ClusterIPs and NodePorts work on this node.
#[derive(Debug, Parser)]
#[command(name = "tug-proxy", version)]
pub struct Flags {
    /// Kubeconfig to reach the API server (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// This node's name (for traffic policies `Local`) [default: the host name].
    #[arg(long, alias = "hostname-override")]
    pub node_name: Option<String>,
    /// The backend [default: nftables when `nft` works here, else userspace].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Pod CIDR of the cluster: ClusterIP traffic from outside it is masqueraded.
    #[arg(long, value_parser = Cidr::parse)]
    pub cluster_cidr: Option<Cidr>,
    /// Comma-separated CIDRs: NodePorts answer only on local addresses in them [default: all].
    #[arg(long, value_delimiter = ',', value_parser = Cidr::parse)]
    pub nodeport_addresses: Vec<Cidr>,
    /// How often the rules are checked and resynced without any change.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub sync_period: Duration,
    /// The least time between syncs on average (bursts of two are allowed).
    /// Upstream's default is 1s; ours is shorter so that a change is in
    /// place within a second even right after another sync.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub min_sync_period: Duration,
    /// Where `/metrics` (and `/healthz`) are served; port 0 disables.
    #[arg(long, default_value = "127.0.0.1:10249")]
    pub metrics_bind_address: SocketAddr,
    /// Where `/healthz` is served; port 0 disables.
    #[arg(long, default_value = "0.0.0.0:10256")]
    pub healthz_bind_address: SocketAddr,
    /// Remove the nftables table and exit.
    #[arg(long)]
    pub cleanup: bool,
    /// Log filter (RUST_LOG syntax).
    #[arg(
        short = 'v',
        long = "log-level",
        default_value = "info",
        env = "RUST_LOG"
    )]
    pub log_level: String,
}

/// `30s`, `500ms`, `1m`, `1h`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 30s, 500ms, 1m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {s:?}"))
}

pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

async fn serve(addr: SocketAddr, router: axum::Router, what: &str) -> anyhow::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("{what} on {addr}: {e}"))?;
    tracing::info!("serving {what} on {addr}");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(())
}

impl Flags {
    /// The defaults, as if no flag were given.
    pub fn defaults() -> Self {
        Flags::parse_from(["tug-proxy"])
    }
}

/// Pick the backend, serve `/metrics` and `/healthz`, and sync until
/// `shutdown` resolves (or, with `--cleanup`, remove the table and return).
pub async fn run(flags: Flags, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    anyhow::ensure!(
        !flags.sync_period.is_zero(),
        "--sync-period must be positive"
    );
    if flags.cleanup {
        nftables::delete_table().await?;
        tracing::info!("removed table ip {}", nftables::TABLE);
        return Ok(());
    }

    let mode = match flags.mode {
        Some(Mode::Nftables) => {
            anyhow::ensure!(
                nftables::available().await,
                "--mode nftables: `nft list tables` fails here (is nftables installed, are we root?)"
            );
            Mode::Nftables
        }
        Some(Mode::Userspace) => Mode::Userspace,
        None if nftables::available().await => Mode::Nftables,
        None => {
            tracing::warn!("nft does not work here; falling back to --mode userspace");
            Mode::Userspace
        }
    };
    let backend = match mode {
        Mode::Nftables => {
            // As upstream's iptables mode does, so NodePorts answer on
            // 127.0.0.1 even when endpoints are elsewhere.
            if let Err(e) = std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1") {
                tracing::warn!("setting net.ipv4.conf.all.route_localnet=1: {e}; NodePorts on 127.0.0.1 may not work");
            }
            Backend::Nftables(NftBackend::new(NftConfig {
                cluster_cidr: flags.cluster_cidr,
                nodeport_addresses: flags.nodeport_addresses.clone(),
            }))
        }
        Mode::Userspace => Backend::Userspace(Userspace::default()),
    };
    tracing::info!("proxy mode: {mode:?}");

    let metrics = Metrics::new((flags.sync_period * 2).max(Duration::from_secs(60)));
    serve(
        flags.metrics_bind_address,
        metrics_router(metrics.clone()),
        "metrics",
    )
    .await?;
    serve(
        flags.healthz_bind_address,
        healthz_router(metrics.clone()),
        "healthz",
    )
    .await?;

    let client = component_base::client::client(flags.kubeconfig.as_deref()).await?;
    let config = SyncConfig {
        node_name: flags.node_name.unwrap_or_else(host_name),
        sync_period: flags.sync_period,
        min_sync_period: flags.min_sync_period,
    };
    sync_loop(client, config, backend, metrics, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }
}
