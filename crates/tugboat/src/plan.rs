//! `tugboat server`'s flags and their translation into each component's
//! own flags (the same `Flags` structs the standalone binaries parse), as
//! pure functions of the flags and a few facts about the host.
//!
//! The choices that differ from the standalone defaults, and why:
//! - no leader election: one process is the only candidate, and a lease
//!   left by a killed server would delay the restart by its duration;
//! - the scheduler's and controller-manager's plain-HTTP health ports and
//!   the kubelet's and proxy's are off or ephemeral on loopback: the
//!   API server's `/healthz` is the cluster's, and several servers (tests)
//!   may run on one host;
//! - every component reads its own kubeconfig under `<data>/kubeconfigs/`
//!   (a client certificate of its own, as k3s issues them);
//! - the kubelet keeps its state under `<data>/kubelet`, so a restart on
//!   the same data dir re-adopts the process runtime's containers;
//! - the API server's storage cache is 32 MiB instead of 128
//!   (`--storage-cache-mib`): one process holds the whole cluster, and the
//!   watch cache already keeps every object in memory.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use apiserver::pki::ClientIdentity;
use clap::{Parser, ValueEnum};

/// The data dir of a root `tugboat server`.
pub const ROOT_DATA_DIR: &str = "/var/lib/tugboat";
/// The data dir of a non-root one (relative to the working directory).
pub const USER_DATA_DIR: &str = "tugboat-data";

/// `--storage-cache-mib`'s default for `tugboat server`.
pub const DEFAULT_STORAGE_CACHE_MIB: u64 = 32;

/// The local node's container runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeChoice {
    /// Containers as host processes (no container engine needed).
    Process,
    /// A CRI runtime such as containerd, at --container-runtime-endpoint.
    Cri,
    /// No local node: a control plane only.
    None,
}

/// `tugboat server`: the whole cluster in this process.
#[derive(Debug, Clone, Parser)]
pub struct ServerArgs {
    /// Where the cluster lives: storage, certificates, kubeconfigs and the
    /// kubelet's state [default: /var/lib/tugboat as root, else ./tugboat-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The local node's name [default: the host name].
    #[arg(long)]
    pub node_name: Option<String>,
    /// The local node's container runtime (`none`: no local node).
    #[arg(long, value_enum, default_value_t = RuntimeChoice::Process)]
    pub runtime: RuntimeChoice,
    /// The API server's HTTPS port.
    #[arg(long, default_value_t = 6443)]
    pub https_port: u16,
    /// Also run this many hollow nodes (fake runtime) named `<node-name>-sim-<i>`.
    #[arg(long, default_value_t = 0)]
    pub simulate_nodes: usize,
    /// The local kubelet's HTTPS port (logs, exec, port-forward).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Cri runtime: the CRI runtime's gRPC socket.
    #[arg(long, default_value = kubelet::runtime::cri::DEFAULT_ENDPOINT)]
    pub container_runtime_endpoint: String,
    /// Write a join token for `tugboat agent` to this file (reused across
    /// restarts while the cluster CA stays the same).
    #[arg(long)]
    pub agent_token_file: Option<PathBuf>,
    /// Extra names and IPs for the API server's serving certificate (the
    /// address agents use, when it is not this host's default-route one).
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
    /// How long a node may go without a heartbeat before it is NotReady
    /// (its pods are then evicted after their `tolerationSeconds`).
    #[arg(long, default_value = "50s", value_parser = tugboat_controller_manager::parse_duration)]
    pub node_monitor_grace_period: std::time::Duration,
    /// The API server's storage page cache, in MiB (`tug-apiserver`
    /// defaults to 128). The watch cache serves reads, so the store's own
    /// cache mostly buffers writes, and a small one keeps a small cluster
    /// small.
    #[arg(long, default_value_t = DEFAULT_STORAGE_CACHE_MIB)]
    pub storage_cache_mib: u64,
    /// Log filter (RUST_LOG syntax).
    #[arg(
        short = 'v',
        long = "log-level",
        default_value = "info",
        env = "RUST_LOG"
    )]
    pub log_level: String,
}

/// Where `tugboat server --agent-token-file` publishes what agents need.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub token_file: PathBuf,
    /// The URL agents are told to use (`https://<node IP>:<port>`).
    pub server_url: String,
}

/// What the plan needs to know about the host.
#[derive(Debug, Clone)]
pub struct Host {
    pub is_root: bool,
    pub hostname: String,
    /// The local node's InternalIP (the address on the default route).
    pub node_ip: IpAddr,
}

/// Each component's flags, ready to run.
#[derive(Debug)]
pub struct Plan {
    pub data_dir: PathBuf,
    /// The local node, if there is one.
    pub node_name: Option<String>,
    pub apiserver: apiserver::cli::Flags,
    pub scheduler: tugboat_scheduler::cli::Flags,
    pub controller_manager: tugboat_controller_manager::cli::Flags,
    pub kubelet: Option<kubelet::cli::Flags>,
    pub hollow: Option<kubelet::cli::Flags>,
    pub proxy: tugboat_kube_proxy::cli::Flags,
    /// The client certificates to issue before the components start.
    pub identities: Vec<ClientIdentity>,
    /// Agent joins, with `--agent-token-file`.
    pub join: Option<JoinPlan>,
}

/// The default data dir: upstream's place under /var/lib as root, a
/// directory of the working directory otherwise (a user cannot write
/// /var/lib, and a per-user default in $HOME would hide where state is).
pub fn default_data_dir(is_root: bool) -> PathBuf {
    PathBuf::from(if is_root {
        ROOT_DATA_DIR
    } else {
        USER_DATA_DIR
    })
}

/// Where a component's kubeconfig is written (see
/// [`apiserver::pki::ensure_client_kubeconfig`]).
pub fn kubeconfig_path(data_dir: &Path, identity: &ClientIdentity) -> PathBuf {
    data_dir
        .join("kubeconfigs")
        .join(format!("{}.kubeconfig", identity.stem))
}

/// The identity all hollow nodes share: they are simulated, so one
/// credential in the nodes group stands for them all.
pub fn hollow_identity() -> ClientIdentity {
    ClientIdentity {
        stem: "hollow-nodes".into(),
        user: "system:node:hollow".into(),
        groups: vec!["system:nodes".into()],
    }
}

/// An ephemeral loopback port for a health endpoint nobody needs to find.
fn ephemeral_loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A node the kubelet runs (the server's local one, or an agent's).
#[derive(Debug, Clone, Copy)]
pub struct NodeSpec<'a> {
    pub name: &'a str,
    pub ip: IpAddr,
    pub runtime: RuntimeChoice,
    pub container_runtime_endpoint: &'a str,
    pub kubelet_port: u16,
}

/// The kubelet's flags for `node`, its state under `<data_dir>/kubelet`.
pub fn node_kubelet(
    node: &NodeSpec<'_>,
    data_dir: &Path,
    kubeconfig: &Path,
) -> kubelet::cli::Flags {
    let mut k = kubelet::cli::Flags::defaults();
    k.kubeconfig = Some(kubeconfig.to_path_buf());
    k.node_name = Some(node.name.to_string());
    k.runtime = match node.runtime {
        RuntimeChoice::Cri => kubelet::cli::Runtime::Cri,
        _ => kubelet::cli::Runtime::Process,
    };
    k.root_dir = data_dir.join("kubelet");
    k.container_runtime_endpoint = node.container_runtime_endpoint.to_string();
    k.node_ip = Some(node.ip);
    k.port = node.kubelet_port;
    k.healthz_port = 0;
    k
}

/// The service proxy's flags for `node`.
pub fn node_proxy(node: &str, kubeconfig: &Path, is_root: bool) -> tugboat_kube_proxy::cli::Flags {
    let mut proxy = tugboat_kube_proxy::cli::Flags::defaults();
    proxy.kubeconfig = Some(kubeconfig.to_path_buf());
    proxy.node_name = Some(node.to_string());
    // nftables needs root; the userspace relay is the fallback (and needs
    // root too for its addresses on lo: without, the proxy just fails and
    // the rest continues without one).
    proxy.mode = Some(if is_root {
        tugboat_kube_proxy::cli::Mode::Nftables
    } else {
        tugboat_kube_proxy::cli::Mode::Userspace
    });
    proxy.metrics_bind_address = SocketAddr::from(([127, 0, 0, 1], 0));
    proxy.healthz_bind_address = SocketAddr::from(([127, 0, 0, 1], 0));
    proxy
}

/// Translate `tugboat server`'s flags into every component's.
pub fn plan(args: &ServerArgs, host: &Host) -> anyhow::Result<Plan> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir(host.is_root));
    let node_name = args.node_name.clone().unwrap_or(host.hostname.clone());
    anyhow::ensure!(!node_name.is_empty(), "--node-name must not be empty");
    anyhow::ensure!(
        args.simulate_nodes <= kubelet::hollow::MAX_HOLLOW_NODES,
        "--simulate-nodes must be at most {}",
        kubelet::hollow::MAX_HOLLOW_NODES
    );
    let mut identities = vec![
        ClientIdentity::scheduler(),
        ClientIdentity::controller_manager(),
        ClientIdentity::proxy(),
    ];

    let mut api = apiserver::cli::Flags::with_data_dir(data_dir.clone());
    api.secure_port = args.https_port;
    api.log_level = args.log_level.clone();
    api.tls_sans.extend(args.tls_san.iter().cloned());
    api.tls_sans.push(host.node_ip.to_string());
    api.storage_cache_mib = args.storage_cache_mib;

    let mut scheduler = tugboat_scheduler::cli::Flags::defaults();
    scheduler.kubeconfig = Some(kubeconfig_path(&data_dir, &ClientIdentity::scheduler()));
    scheduler.leader_elect = false;
    scheduler.metrics_address = ephemeral_loopback();

    let mut cm = tugboat_controller_manager::cli::Flags::defaults();
    cm.kubeconfig = Some(kubeconfig_path(
        &data_dir,
        &ClientIdentity::controller_manager(),
    ));
    cm.leader_elect = false;
    cm.health_address = ephemeral_loopback();
    cm.node_monitor_grace_period = args.node_monitor_grace_period;
    // csrsigning issues joining agents' node credentials with the CA.
    cm.cluster_signing_cert_file = Some(data_dir.join("pki").join("ca.crt"));
    cm.cluster_signing_key_file = Some(data_dir.join("pki").join("ca.key"));

    let local_node = match args.runtime {
        RuntimeChoice::None => None,
        RuntimeChoice::Process | RuntimeChoice::Cri => Some(node_name.clone()),
    };
    let kubelet = local_node.as_ref().map(|node| {
        let identity = ClientIdentity::node(node);
        let k = node_kubelet(
            &NodeSpec {
                name: node,
                ip: host.node_ip,
                runtime: args.runtime,
                container_runtime_endpoint: &args.container_runtime_endpoint,
                kubelet_port: args.kubelet_port,
            },
            &data_dir,
            &kubeconfig_path(&data_dir, &identity),
        );
        identities.push(identity);
        k
    });

    let hollow = (args.simulate_nodes > 0).then(|| {
        let identity = hollow_identity();
        let mut k = kubelet::cli::Flags::defaults();
        k.kubeconfig = Some(kubeconfig_path(&data_dir, &identity));
        k.node_name = Some(format!("{node_name}-sim"));
        k.runtime = kubelet::cli::Runtime::Fake;
        k.nodes = Some(args.simulate_nodes);
        k.root_dir = data_dir.join("hollow");
        k.port = 0;
        k.healthz_port = 0;
        identities.push(identity);
        k
    });

    let proxy = node_proxy(
        &node_name,
        &kubeconfig_path(&data_dir, &ClientIdentity::proxy()),
        host.is_root,
    );

    Ok(Plan {
        data_dir,
        node_name: local_node,
        apiserver: api,
        scheduler,
        controller_manager: cm,
        kubelet,
        hollow,
        proxy,
        identities,
        join: args.agent_token_file.as_ref().map(|f| JoinPlan {
            token_file: f.clone(),
            server_url: format!(
                "https://{}",
                std::net::SocketAddr::new(host.node_ip, args.https_port)
            ),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ServerArgs {
        let mut argv = vec!["server"];
        argv.extend_from_slice(extra);
        ServerArgs::try_parse_from(argv).unwrap()
    }

    fn host(is_root: bool) -> Host {
        Host {
            is_root,
            hostname: "box".into(),
            node_ip: IpAddr::from([192, 168, 1, 5]),
        }
    }

    #[test]
    fn the_data_dir_defaults_by_user() {
        let cases = [(true, "/var/lib/tugboat"), (false, "tugboat-data")];
        for (root, want) in cases {
            let p = plan(&args(&[]), &host(root)).unwrap();
            assert_eq!(p.data_dir, PathBuf::from(want), "root={root}");
            assert_eq!(p.apiserver.data_dir, PathBuf::from(want));
        }
        let p = plan(&args(&["--data-dir", "/tmp/x"]), &host(true)).unwrap();
        assert_eq!(p.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn every_component_gets_its_own_kubeconfig() {
        let p = plan(
            &args(&[
                "--data-dir",
                "/d",
                "--node-name",
                "n1",
                "--simulate-nodes",
                "3",
            ]),
            &host(true),
        )
        .unwrap();
        let kc = |f: &Option<PathBuf>| f.clone().unwrap();
        assert_eq!(
            kc(&p.scheduler.kubeconfig),
            PathBuf::from("/d/kubeconfigs/scheduler.kubeconfig")
        );
        assert_eq!(
            kc(&p.controller_manager.kubeconfig),
            PathBuf::from("/d/kubeconfigs/controller-manager.kubeconfig")
        );
        let kubelet = p.kubelet.as_ref().unwrap();
        assert_eq!(
            kc(&kubelet.kubeconfig),
            PathBuf::from("/d/kubeconfigs/kubelet.kubeconfig")
        );
        assert_eq!(
            kc(&p.proxy.kubeconfig),
            PathBuf::from("/d/kubeconfigs/kube-proxy.kubeconfig")
        );
        let users: Vec<&str> = p.identities.iter().map(|i| i.user.as_str()).collect();
        assert_eq!(
            users,
            [
                "system:kube-scheduler",
                "system:kube-controller-manager",
                "system:kube-proxy",
                "system:node:n1",
                "system:node:hollow"
            ]
        );
        for identity in &p.identities {
            assert!(kubeconfig_path(&p.data_dir, identity).starts_with("/d/kubeconfigs"));
        }
    }

    #[test]
    fn flags_translate_to_component_flags() {
        let p = plan(
            &args(&["--https-port", "7443", "--kubelet-port", "11250"]),
            &host(true),
        )
        .unwrap();
        assert_eq!(p.apiserver.secure_port, 7443);
        assert_eq!(p.apiserver.storage_cache_mib, DEFAULT_STORAGE_CACHE_MIB);
        let p2 = plan(&args(&["--storage-cache-mib", "8"]), &host(true)).unwrap();
        assert_eq!(p2.apiserver.storage_cache_mib, 8);
        assert!(!p.scheduler.leader_elect && !p.controller_manager.leader_elect);
        assert_eq!(
            p.node_name.as_deref(),
            Some("box"),
            "default: the host name"
        );
        let kubelet = p.kubelet.unwrap();
        assert_eq!(kubelet.node_name.as_deref(), Some("box"));
        assert_eq!(kubelet.runtime, kubelet::cli::Runtime::Process);
        assert_eq!(kubelet.port, 11250);
        assert_eq!(kubelet.healthz_port, 0);
        assert_eq!(kubelet.root_dir, PathBuf::from("/var/lib/tugboat/kubelet"));
        assert_eq!(kubelet.node_ip, Some(IpAddr::from([192, 168, 1, 5])));
        assert!(p.hollow.is_none());
        assert_eq!(
            p.scheduler.metrics_address.ip(),
            IpAddr::from([127, 0, 0, 1])
        );
    }

    #[test]
    fn the_runtime_choice_picks_the_local_node() {
        let none = plan(&args(&["--runtime", "none"]), &host(true)).unwrap();
        assert!(none.kubelet.is_none() && none.node_name.is_none());
        assert!(!none.identities.iter().any(|i| i.stem == "kubelet"));
        let cri = plan(&args(&["--runtime", "cri"]), &host(true)).unwrap();
        assert_eq!(cri.kubelet.unwrap().runtime, kubelet::cli::Runtime::Cri);
    }

    #[test]
    fn simulated_nodes_are_hollow_kubelets() {
        let p = plan(
            &args(&["--node-name", "n1", "--simulate-nodes", "20"]),
            &host(false),
        )
        .unwrap();
        let hollow = p.hollow.unwrap();
        assert_eq!(hollow.runtime, kubelet::cli::Runtime::Fake);
        assert_eq!(hollow.nodes, Some(20));
        assert_eq!(hollow.node_name.as_deref(), Some("n1-sim"));
        assert!(plan(&args(&["--simulate-nodes", "999999"]), &host(true)).is_err());
    }

    #[test]
    fn the_proxy_mode_follows_root() {
        use tugboat_kube_proxy::cli::Mode;
        let cases = [(true, Mode::Nftables), (false, Mode::Userspace)];
        for (root, mode) in cases {
            let p = plan(&args(&[]), &host(root)).unwrap();
            assert_eq!(p.proxy.mode, Some(mode));
            assert_eq!(p.proxy.node_name.as_deref(), Some("box"));
        }
    }
}
