//! `--target etcd`: the same write load straight into etcd, the peer a
//! Kubernetes API server stores its objects in.
//!
//! N clients, each with its own gRPC connection (etcd-client over tonic, as
//! an API server talks to etcd), write the same Pod bytes the tugboat
//! create phase sends under `/registry/pods/bench/<name>`, one request at a
//! time each, for S seconds. etcd answers a write once it is committed to
//! its raft log and fsynced (etcd batches concurrent proposals into one
//! fsync), so both targets measure durable writes. `--etcd-op txn` writes as
//! kube-apiserver creates do: a transaction "put if the key does not exist".

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, Txn, TxnOp};
use serde_json::{json, Value};
use tokio::process::Command;

use crate::pod::{pod_bytes, NAMESPACE};
use crate::process::{free_port, on_path, temp_dir, wait_until, Server};
use crate::stats::{round, CpuMeter, Summary};
use crate::Load;

/// How each object is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EtcdOp {
    /// A plain put.
    Put,
    /// A transaction: put only if the key's create revision is 0 (new).
    Txn,
}

/// Where the etcd under test comes from.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// An etcd already running; without it one is started.
    pub endpoint: Option<String>,
    /// The etcd binary to start (default: `etcd` on PATH).
    pub binary: Option<PathBuf>,
    pub op: EtcdOp,
}

async fn connect(endpoint: &str) -> anyhow::Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(30));
    Ok(Client::connect([endpoint], Some(options)).await?)
}

/// Starts a one-member etcd on free loopback ports in a temporary directory.
async fn start_etcd(
    binary: Option<&Path>,
    work_dir: Option<&Path>,
) -> anyhow::Result<(Server, String)> {
    let binary = match binary {
        Some(b) => b.to_path_buf(),
        None => on_path("etcd").ok_or_else(|| {
            anyhow!("no etcd on PATH (apt-get install etcd-server), or pass --etcd-endpoint")
        })?,
    };
    let dir = temp_dir(work_dir, "etcd")?;
    let client_url = format!("http://127.0.0.1:{}", free_port()?);
    let peer_url = format!("http://127.0.0.1:{}", free_port()?);
    let mut cmd = Command::new(&binary);
    cmd.args(["--name", "bench", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("bench={peer_url}")])
        .args(["--logger", "zap", "--log-level", "warn"]);
    let mut server = Server::spawn("etcd", cmd, dir)?;
    wait_until(&mut server, Duration::from_secs(30), "etcd", || async {
        connect(&client_url).await?.status().await?;
        Ok(())
    })
    .await?;
    eprintln!(
        "tug-bench: etcd ready on {client_url} (pid {:?})",
        server.pid()
    );
    Ok((server, client_url))
}

pub async fn run(
    load: &Load,
    opts: &EtcdOptions,
    work_dir: Option<&Path>,
) -> anyhow::Result<Value> {
    let (server, endpoint) = match &opts.endpoint {
        Some(e) => (None, e.clone()),
        None => {
            let (s, e) = start_etcd(opts.binary.as_deref(), work_dir).await?;
            (Some(s), e)
        }
    };
    let pid = server.as_ref().and_then(Server::pid);
    let version = connect(&endpoint)
        .await
        .with_context(|| format!("connecting to etcd at {endpoint}"))?
        .status()
        .await?
        .version()
        .to_string();
    let mut clients = Vec::with_capacity(load.clients);
    for _ in 0..load.clients {
        clients.push(connect(&endpoint).await?.kv_client());
    }
    // Against an etcd of one's own, names are as in the tugboat run; against
    // a shared one, a run id keeps them apart from an earlier run's.
    let run = match server {
        Some(_) => String::new(),
        None => format!(
            "{}-",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
        ),
    };

    eprintln!(
        "tug-bench: etcd {version}: {:?} from {} clients for {} s",
        opts.op, load.clients, load.seconds
    );
    let cpu = CpuMeter::start(pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(load.seconds);
    let op = opts.op;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut kv)| {
            let run = run.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0usize;
                let mut first_error = None;
                let mut seq = 0u64;
                while Instant::now() < deadline && errors < 100 {
                    let name = format!("bench-{run}{i}-{seq}");
                    seq += 1;
                    let key = format!("/registry/pods/{NAMESPACE}/{name}");
                    let value = pod_bytes(&name);
                    let t = Instant::now();
                    let result = match op {
                        EtcdOp::Put => kv.put(key, value, None).await.map(|_| true),
                        EtcdOp::Txn => {
                            let txn = Txn::new()
                                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                                .and_then([TxnOp::put(key, value, None)]);
                            kv.txn(txn).await.map(|r| r.succeeded())
                        }
                    };
                    match result {
                        Ok(true) => latencies.push(t.elapsed()),
                        Ok(false) => {
                            errors += 1;
                            first_error
                                .get_or_insert_with(|| "the key already existed".to_string());
                        }
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (l, e, f) = t.await?;
        latencies.extend(l);
        errors += e;
        first_error = first_error.or(f);
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu.finish();
    let s = Summary::of(latencies);
    let per_second = s.count as f64 / wall;
    eprintln!(
        "tug-bench: etcd: {per_second:.0}/s, p99 {:.2} ms, {errors} errors",
        s.p99_ms
    );
    let rss = server.as_ref().and_then(Server::rss_mib);
    if let Some(server) = server {
        server.stop().await?;
    }
    if s.count == 0 {
        bail!(
            "no etcd write succeeded: {}",
            first_error.unwrap_or_default()
        );
    }
    Ok(json!({
        "target": "etcd",
        "etcd_version": version,
        "etcd_op": match op { EtcdOp::Put => "put", EtcdOp::Txn => "txn" },
        "clients": load.clients,
        "seconds": load.seconds,
        "objects": s.count,
        "object_bytes": pod_bytes("bench-0-0").len(),
        "create_per_second": round(per_second),
        "create_mean_ms": round(s.mean_ms),
        "create_p50_ms": round(s.p50_ms),
        "create_p90_ms": round(s.p90_ms),
        "create_p99_ms": round(s.p99_ms),
        "create_max_ms": round(s.max_ms),
        "create_errors": errors,
        "create_first_error": first_error,
        "create_cpu": cpu,
        "server_rss_mib": rss.map(round),
    }))
}
