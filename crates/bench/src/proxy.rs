//! `tug-bench proxy`: how fast the real `tug-proxy` (nftables mode, run as
//! root) puts a Service change into the kernel when the node already
//! carries many Services — upstream's "sync proxy rules" latency, measured
//! from outside, as a client would notice it.
//!
//! 1. start `tug-apiserver` (fresh temporary data dir) and create
//!    `--services` ClusterIP Services (10.104.0.0/14, port 80, named port
//!    `http`) each with one EndpointSlice of `--endpoints-per-service`
//!    endpoints. The endpoints are 127.0.0.x on a port where this process
//!    listens and greets every connection with a token, so a ClusterIP
//!    answers with the token only once its DNAT rules exist (a bare
//!    connect proves nothing: some networks accept any TCP connection);
//! 2. start `tug-proxy --mode nftables` and time its first full sync
//!    (until its rule-count metric covers every Service);
//! 3. `--changes` times, one at a time: change one Service's port (80 →
//!    81; each Service at most once), and time from sending the PATCH until a connection to
//!    the ClusterIP's new port reads the token (probed continuously with a
//!    10 ms read timeout, so the figure is precise to ~10 ms); pause
//!    `--gap-ms` between changes so syncs are not rate-limited.
//!
//! JSON: `p50_sync_ms`, `p99_sync_ms` (step 3), `full_sync_seconds`
//! (step 2) and the object counts. The proxy's table is removed at the end.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

use crate::process::{free_port, temp_dir, Server};
use crate::stats::{round, Summary};
use crate::tugboat::start_apiserver;

const NAMESPACE: &str = "proxy-bench";
/// The first ClusterIP (inside the default 10.96.0.0/12 service range).
const FIRST_IP: Ipv4Addr = Ipv4Addr::new(10, 104, 0, 1);

/// Flags of one proxy benchmark run.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    pub apiserver: PathBuf,
    pub proxy: PathBuf,
    pub services: usize,
    pub endpoints_per_service: usize,
    pub changes: usize,
    pub gap: Duration,
    pub create_clients: usize,
    pub timeout: Duration,
    /// The proxy's RUST_LOG (its last lines end up in the JSON).
    pub proxy_log_level: String,
}

fn cluster_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(FIRST_IP) + i as u32)
}

fn service(i: usize, port: u16) -> anyhow::Result<Service> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("svc-{i}"), "namespace": NAMESPACE},
        "spec": {
            "clusterIP": cluster_ip(i).to_string(),
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}]
        }
    }))?)
}

fn slice(i: usize, ports: &[u16]) -> anyhow::Result<EndpointSlice> {
    // One address with many ports is not a slice shape: endpoints differ
    // by address, so each endpoint is its own 127.0.0.x (all of 127/8 is
    // local) and the port is the one every endpoint uses.
    let endpoints: Vec<Value> = (0..ports.len())
        .map(
            |k| json!({"addresses": [format!("127.0.0.{}", k + 1)], "conditions": {"ready": true}}),
        )
        .collect();
    Ok(serde_json::from_value(json!({
        "metadata": {
            "name": format!("svc-{i}-1"),
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": format!("svc-{i}")}
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": ports[0], "protocol": "TCP"}],
        "endpoints": endpoints
    }))?)
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

/// What the benchmark's endpoints say first on every connection.
const TOKEN: &[u8] = b"tugboat-endpoint\n";

/// Whether a connection to `addr` reaches one of our endpoints (reads the
/// token) within `patience`.
async fn reaches_endpoint(addr: SocketAddr, patience: Duration) -> bool {
    tokio::time::timeout(patience, async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let mut buf = [0u8; TOKEN.len()];
        s.read_exact(&mut buf).await.ok()?;
        (buf == TOKEN).then_some(())
    })
    .await
    .ok()
    .flatten()
    .is_some()
}

/// Probes `addr` until it reaches an endpoint; the probe's timeout bounds
/// how late a success is noticed.
async fn until_reaches(addr: SocketAddr, deadline: Instant) -> anyhow::Result<()> {
    while !reaches_endpoint(addr, Duration::from_millis(10)).await {
        if Instant::now() > deadline {
            bail!("{addr} never reached an endpoint");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Removes the proxy's table whatever happens.
struct TableGuard;

impl Drop for TableGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", "tugboat"])
            .output();
    }
}

pub async fn run(opts: &ProxyOptions, work_dir: Option<&Path>) -> anyhow::Result<Value> {
    anyhow::ensure!(opts.services > 0, "--services must be at least 1");
    anyhow::ensure!(
        (1..=250).contains(&opts.endpoints_per_service),
        "--endpoints-per-service must be 1-250"
    );
    anyhow::ensure!(
        opts.changes <= opts.services,
        "--changes must be at most --services (each Service changes once)"
    );
    anyhow::ensure!(
        opts.services < 200_000,
        "--services must be under 200000 (ClusterIPs come from 10.104.0.0/14)"
    );
    if !opts.proxy.is_file() {
        bail!(
            "no tug-proxy at {} (build it with `cargo build --bin tug-proxy`, or pass --proxy)",
            opts.proxy.display()
        );
    }
    let (mut apiserver, creds) = start_apiserver(&opts.apiserver, work_dir).await?;
    let kube_dir = temp_dir(work_dir, "kubeconfig")?;
    let kubeconfig = kube_dir.path().join("admin.kubeconfig");
    std::fs::write(&kubeconfig, serde_yaml::to_string(&creds.kubeconfig)?)
        .context("writing the admin kubeconfig")?;

    // Endpoints: one listener port, reachable on every 127.0.0.x.
    let listener = TcpListener::bind("0.0.0.0:0").await?;
    let port = listener.local_addr()?.port();
    let accept = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = conn.write_all(TOKEN).await;
            });
        }
    });
    let ports = vec![port; opts.endpoints_per_service];

    let admin = creds.kube_client().await?;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let t = Instant::now();
    let services: Api<Service> = Api::namespaced(admin.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(admin.clone(), NAMESPACE);
    stream::iter(0..opts.services)
        .map(|i| {
            let (services, slices, ports) = (&services, &slices, &ports);
            async move {
                services
                    .create(&PostParams::default(), &service(i, 80)?)
                    .await
                    .with_context(|| format!("creating svc-{i}"))?;
                slices
                    .create(&PostParams::default(), &slice(i, ports)?)
                    .await
                    .with_context(|| format!("creating the slice of svc-{i}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(opts.create_clients.max(1))
        .try_collect::<()>()
        .await?;
    eprintln!(
        "tug-bench: {} services and slices created in {:.1}s",
        opts.services,
        t.elapsed().as_secs_f64()
    );

    let _table = TableGuard;
    let metrics_port = free_port()?;
    let metrics_addr: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    let mut cmd = Command::new(&opts.proxy);
    cmd.arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--mode", "nftables", "--node-name", "bench"])
        .arg("--metrics-bind-address")
        .arg(metrics_addr.to_string())
        .args(["--healthz-bind-address", "127.0.0.1:0"])
        .env("RUST_LOG", &opts.proxy_log_level);
    let started = Instant::now();
    let mut proxy = Server::spawn("tug-proxy", cmd, temp_dir(work_dir, "tug-proxy")?)?;
    // One transaction programs everything: once the last Service
    // answers, all do.
    let last: SocketAddr = (cluster_ip(opts.services - 1), 80).into();
    let deadline = started + opts.timeout;
    while !reaches_endpoint(last, Duration::from_millis(20)).await {
        proxy.check_running()?;
        if Instant::now() > deadline {
            bail!(
                "tug-proxy did not program {last} within {:?}; end of its log:\n{}",
                opts.timeout,
                proxy.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let full_sync = started.elapsed();
    eprintln!(
        "tug-bench: tug-proxy programmed {} services in {:.1}s",
        opts.services,
        full_sync.as_secs_f64()
    );
    apiserver.check_running()?;

    // The measured part: one change at a time.
    let mut samples = Vec::with_capacity(opts.changes);
    let step = (opts.services / opts.changes.max(1)).max(1);
    for k in 0..opts.changes {
        let i = k * step;
        let new_port: u16 = 81;
        let target: SocketAddr = (cluster_ip(i), new_port).into();
        // Nothing answers there yet, or the probe would prove nothing.
        anyhow::ensure!(
            !reaches_endpoint(target, Duration::from_millis(50)).await,
            "{target} reached an endpoint before its change"
        );
        let patch =
            json!({"spec": {"ports": [{"name": "http", "port": new_port, "protocol": "TCP"}]}});
        let t = Instant::now();
        services
            .patch(
                &format!("svc-{i}"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .with_context(|| format!("patching svc-{i}"))?;
        until_reaches(target, t + Duration::from_secs(30))
            .await
            .with_context(|| format!("change {k} (svc-{i} to port {new_port})"))?;
        samples.push(t.elapsed());
        proxy.check_running()?;
        tokio::time::sleep(opts.gap).await;
    }
    let summary = Summary::of(samples);
    let rss = proxy.rss_mib();
    // At the default RUST_LOG=warn anything the proxy logged is news.
    let proxy_log = proxy.log_tail();
    let text = scrape(metrics_addr).await.unwrap_or_default();
    accept.abort();
    proxy.stop().await?;
    apiserver.stop().await?;
    Ok(json!({
        "benchmark": "proxy",
        "mode": "nftables",
        "driver": "the real tug-proxy against a tug-apiserver; a change is in place when a connection to the new ClusterIP:port reads the endpoints' token",
        "services": opts.services,
        "endpoints_per_service": opts.endpoints_per_service,
        "rules": metric(&text, "kubeproxy_sync_proxy_rules_total"),
        "changes": summary.count,
        "gap_ms": opts.gap.as_millis() as u64,
        "full_sync_seconds": round(full_sync.as_secs_f64()),
        "p50_sync_ms": round(summary.p50_ms),
        "p90_sync_ms": round(summary.p90_ms),
        "p99_sync_ms": round(summary.p99_ms),
        "max_sync_ms": round(summary.max_ms),
        "proxy_sync_seconds_sum": metric(&text, "kubeproxy_sync_proxy_rules_duration_seconds_sum"),
        "proxy_syncs": metric(&text, "kubeproxy_sync_proxy_rules_duration_seconds_count"),
        "proxy_rss_mib": rss.map(round),
        "proxy_log_tail": proxy_log,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ips_count_up_from_the_first() {
        assert_eq!(cluster_ip(0), FIRST_IP);
        assert_eq!(cluster_ip(255), Ipv4Addr::new(10, 104, 1, 0));
        assert_eq!(cluster_ip(9999), Ipv4Addr::new(10, 104, 39, 16));
    }

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "# HELP x\nkubeproxy_sync_proxy_rules_total 120\nkubeproxy_sync_proxy_rules_total_x 3\n";
        assert_eq!(
            metric(text, "kubeproxy_sync_proxy_rules_total"),
            Some(120.0)
        );
        assert_eq!(metric(text, "nope"), None);
    }

    #[test]
    fn slices_have_distinct_endpoint_addresses() {
        let s = slice(7, &[9000, 9000, 9000]).unwrap();
        let addrs: Vec<_> = s.endpoints.iter().map(|e| e.addresses[0].clone()).collect();
        assert_eq!(addrs, ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
        assert_eq!(s.ports.unwrap()[0].port, Some(9000));
    }
}
