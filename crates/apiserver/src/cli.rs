//! `tug-apiserver`'s command line as a library: [`Flags`] (the clap
//! struct) and [`start`]/[`run`], so that `tug-apiserver` is a thin `main`
//! and `tugboat server` builds the same flags in code and runs the server
//! on its own runtime.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// `--storage-cache-mib`'s default: storage's own default cache size.
pub const DEFAULT_STORAGE_CACHE_MIB: u64 = 128;

/// The Tugboat API server: the Kubernetes REST API over embedded storage.
#[derive(Debug, Parser)]
#[command(name = "tug-apiserver", version)]
pub struct Flags {
    /// Where objects, certificates and admin.kubeconfig live.
    #[arg(long, default_value = "./tugboat-data")]
    pub data_dir: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The HTTPS port.
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// Extra DNS names or IP addresses for the serving certificate (repeatable).
    #[arg(long = "tls-san")]
    pub tls_sans: Vec<String>,
    /// Static bearer tokens, upstream's CSV format: token,user,uid,"group1,group2".
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// The server URL to write into admin.kubeconfig (default: from the listener).
    #[arg(long)]
    pub advertise_url: Option<String>,
    /// The address the `kubernetes` Service's endpoints advertise (default:
    /// the bind address, or the host's address on its default route).
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// The IPv4 CIDR Service cluster IPs are allocated from; its first
    /// address is the `kubernetes` Service's.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: crate::alloc::IpRange,
    /// The port range NodePort Services are allocated from (`low-high`).
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: crate::alloc::PortRange,
    /// sled's page cache for the object store, in MiB. The watch cache
    /// already holds every object, so this mostly buffers writes.
    #[arg(long, default_value_t = DEFAULT_STORAGE_CACHE_MIB)]
    pub storage_cache_mib: u64,
    /// Log filter (RUST_LOG syntax), e.g. info or tugboat_apiserver=debug.
    #[arg(
        short = 'v',
        long = "log-level",
        default_value = "info",
        env = "RUST_LOG"
    )]
    pub log_level: String,
}

impl Flags {
    /// The defaults, as if no flag were given, with this data dir.
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        let mut flags = Flags::parse_from(["tug-apiserver"]);
        flags.data_dir = data_dir;
        flags
    }
}

/// Open storage, bind the listener, prepare the server (PKI, bootstrap):
/// returns where it listens and the future that serves until `shutdown`.
pub async fn start(
    flags: Flags,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(
    crate::Running,
    impl Future<Output = anyhow::Result<()>> + Send,
)> {
    std::fs::create_dir_all(&flags.data_dir)
        .with_context(|| format!("creating {}", flags.data_dir.display()))?;
    let storage_config = storage::sled::SledConfig {
        cache_capacity: flags.storage_cache_mib.saturating_mul(1024 * 1024),
        ..Default::default()
    };
    let storage = storage::sled::SledStorage::open(&flags.data_dir.join("db"), storage_config)
        .with_context(|| format!("opening storage in {}", flags.data_dir.display()))?;
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::new(flags.bind_address, flags.secure_port))
            .await
            .with_context(|| format!("binding {}:{}", flags.bind_address, flags.secure_port))?;
    let mut config = crate::Config::new(flags.data_dir.clone());
    config.tls_sans = flags.tls_sans;
    config.token_auth_file = flags.token_auth_file;
    config.advertise_url = flags.advertise_url;
    config.advertise_address = flags.advertise_address;
    config.service_ranges = crate::alloc::ServiceRanges {
        cluster_ip: flags.service_cluster_ip_range,
        node_port: flags.service_node_port_range,
    };
    crate::start(config, listener, storage, shutdown).await
}

/// `tug-apiserver`: serve until `shutdown`.
pub async fn run(
    flags: Flags,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (running, server) = start(flags, shutdown).await?;
    tracing::info!(url = %running.url, kubeconfig = %running.kubeconfig.display(), "serving");
    println!(
        "tug-apiserver listening on {}; kubeconfig: {}",
        running.url,
        running.kubeconfig.display()
    );
    server.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_storage_cache_defaults_to_storages_own() {
        let flags = Flags::parse_from(["tug-apiserver"]);
        assert_eq!(
            flags.storage_cache_mib * 1024 * 1024,
            storage::sled::SledConfig::default().cache_capacity
        );
        let flags = Flags::parse_from(["tug-apiserver", "--storage-cache-mib", "16"]);
        assert_eq!(flags.storage_cache_mib, 16);
    }
}
