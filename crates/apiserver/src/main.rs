//! `tug-apiserver`: parse flags, open storage, serve until Ctrl-C/SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Requests build and drop many small JSON values; mimalloc handles that
/// churn with far less time in the allocator than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Tugboat API server: the Kubernetes REST API over embedded storage.
#[derive(Debug, Parser)]
#[command(name = "tug-apiserver", version)]
struct Flags {
    /// Where objects, certificates and admin.kubeconfig live.
    #[arg(long, default_value = "./tugboat-data")]
    data_dir: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// The HTTPS port.
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// Extra DNS names or IP addresses for the serving certificate (repeatable).
    #[arg(long = "tls-san")]
    tls_sans: Vec<String>,
    /// Static bearer tokens, upstream's CSV format: token,user,uid,"group1,group2".
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// The server URL to write into admin.kubeconfig (default: from the listener).
    #[arg(long)]
    advertise_url: Option<String>,
    /// The address the `kubernetes` Service's endpoints advertise (default:
    /// the bind address, or the host's address on its default route).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// The IPv4 CIDR Service cluster IPs are allocated from; its first
    /// address is the `kubernetes` Service's.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: tugboat_apiserver::alloc::IpRange,
    /// The port range NodePort Services are allocated from (`low-high`).
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: tugboat_apiserver::alloc::PortRange,
    /// Log filter (RUST_LOG syntax), e.g. info or tugboat_apiserver=debug.
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
    std::fs::create_dir_all(&flags.data_dir)
        .with_context(|| format!("creating {}", flags.data_dir.display()))?;
    let storage = storage::sled::SledStorage::open(&flags.data_dir.join("db"), Default::default())
        .with_context(|| format!("opening storage in {}", flags.data_dir.display()))?;
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::new(flags.bind_address, flags.secure_port))
            .await
            .with_context(|| format!("binding {}:{}", flags.bind_address, flags.secure_port))?;
    let mut config = tugboat_apiserver::Config::new(flags.data_dir.clone());
    config.tls_sans = flags.tls_sans;
    config.token_auth_file = flags.token_auth_file;
    config.advertise_url = flags.advertise_url;
    config.advertise_address = flags.advertise_address;
    config.service_ranges = tugboat_apiserver::alloc::ServiceRanges {
        cluster_ip: flags.service_cluster_ip_range,
        node_port: flags.service_node_port_range,
    };
    let (running, server) =
        tugboat_apiserver::start(config, listener, storage, shutdown_signal()).await?;
    tracing::info!(url = %running.url, kubeconfig = %running.kubeconfig.display(), "serving");
    println!(
        "tug-apiserver listening on {}; kubeconfig: {}",
        running.url,
        running.kubeconfig.display()
    );
    server.await
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
