//! `tugboat server`: parse flags, run the whole cluster until Ctrl-C or
//! SIGTERM. `tugboat process-shim <dir>` (hidden) is the process runtime's
//! shim, as in `tug-kubelet`: the local kubelet starts its containers
//! through this same binary.

use clap::{Parser, Subcommand};
use kubelet::runtime::process::SHIM_SUBCOMMAND;
use tugboat::agent::AgentArgs;
use tugboat::plan::{default_data_dir, plan, Host, ServerArgs};

/// jemalloc, configured in `.cargo/config.toml` (one arena, freed pages
/// returned to the kernel at once): a `tugboat server`
/// keeps a whole cluster's objects for its lifetime among a stream of
/// short-lived request and decode buffers, and with 1,000 hollow nodes and
/// 30,000 pods this kept ~8% less resident than mimalloc (1,003-1,009
/// against 1,088-1,105 MiB; docs/BENCHMARKS.md), which
/// `tug-apiserver` keeps for its request throughput. The
/// `system-allocator` feature leaves the system's malloc in place, so heap
/// profilers that hook it (heaptrack, valgrind's massif) see every
/// allocation.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tugboat: a Kubernetes-style cluster in one binary.
#[derive(Debug, Parser)]
#[command(name = "tugboat", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API server, scheduler, controller-manager, a kubelet and the
    /// service proxy in this process.
    Server(ServerArgs),
    /// Run a kubelet and a service proxy that join a `tugboat server`.
    Agent(AgentArgs),
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == SHIM_SUBCOMMAND) {
        // A shim: no tokio, no flags, just the container.
        let Some(dir) = args.next() else {
            anyhow::bail!("usage: tugboat {SHIM_SUBCOMMAND} <container dir>");
        };
        std::process::exit(kubelet::runtime::process::shim_main(std::path::Path::new(
            &dir,
        )));
    }
    let is_root = kubelet::cli::running_as_root();
    let mut server = match Cli::parse().command {
        Command::Server(server) => server,
        Command::Agent(agent) => return run_agent(agent, is_root),
    };
    // Absolute, so that kubeconfigs and the kubelet's state name the same
    // place whatever directory a shim or a later start runs in.
    let data_dir = server
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir(is_root));
    server.data_dir = Some(std::path::absolute(data_dir)?);
    let host = Host {
        is_root,
        hostname: kubelet::cli::host_name(),
        node_ip: apiserver::default_service::advertised_address(std::net::IpAddr::from([
            0, 0, 0, 0,
        ])),
    };
    let plan = plan(&server, &host)?;
    // One runtime for every component (no per-component thread pools).
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(&server.log_level))
                .init();
            tugboat::server::run(plan, component_base::signals::shutdown_signal()).await
        })
}

fn run_agent(agent: AgentArgs, is_root: bool) -> anyhow::Result<()> {
    let data_dir = std::path::absolute(
        agent
            .data_dir
            .clone()
            .unwrap_or_else(|| tugboat::agent::default_data_dir(is_root)),
    )?;
    let node = agent
        .node_name
        .clone()
        .unwrap_or_else(kubelet::cli::host_name);
    anyhow::ensure!(!node.is_empty(), "--node-name must not be empty");
    let node_ip = agent.node_ip.unwrap_or_else(|| {
        apiserver::default_service::advertised_address(std::net::IpAddr::from([0, 0, 0, 0]))
    });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(&agent.log_level))
                .init();
            tugboat::agent::run(
                agent,
                data_dir,
                node,
                node_ip,
                is_root,
                component_base::signals::shutdown_signal(),
            )
            .await
        })
}
