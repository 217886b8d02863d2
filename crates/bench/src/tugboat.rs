//! `--target tugboat`: start a `tug-apiserver`, then run four phases
//! against it over HTTPS with the admin client certificate.
//!
//! 1. create: N clients create unique pods, one request at a time each, for
//!    S seconds (every acknowledged create is on disk: the server answers
//!    after its group-commit flush);
//! 2. get: N clients get random pods made in phase 1, for S seconds;
//! 3. list: one client lists the whole namespace `--lists` times;
//! 4. watch: a watch opened at the current revision, then one client creates
//!    `--watch-objects` pods at `--watch-rate` per second; each pod's latency
//!    is from sending its create to its ADDED event arriving.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::process::Command;

use crate::client::{ApiClient, ClientKind, Credentials, ListSize, RawConn};
use crate::pod::{pod, pod_bytes, NAMESPACE};
use crate::process::{free_port, temp_dir, wait_until, Server};
use crate::stats::{round, CpuMeter, Summary};
use crate::Load;

/// Flags of the tugboat phases beyond the shared load.
#[derive(Debug, Clone)]
pub struct TugboatOptions {
    pub apiserver: PathBuf,
    pub client: ClientKind,
    pub lists: usize,
    pub watch_objects: usize,
    pub watch_rate: f64,
}

/// The `tug-apiserver` next to this executable (cargo puts both binaries in
/// one target directory).
pub fn default_apiserver() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("tug-apiserver"))
}

pub async fn start_apiserver(
    path: &Path,
    work_dir: Option<&Path>,
) -> anyhow::Result<(Server, Credentials)> {
    if !path.is_file() {
        bail!(
            "no tug-apiserver at {} (build it, or pass --apiserver)",
            path.display()
        );
    }
    let dir = temp_dir(work_dir, "apiserver")?;
    let data_dir = dir.path().join("data");
    let port = free_port()?;
    let mut cmd = Command::new(path);
    cmd.arg("--data-dir")
        .arg(&data_dir)
        .args([
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            &port.to_string(),
        ])
        .env("RUST_LOG", "warn");
    let mut server = Server::spawn("tug-apiserver", cmd, dir)?;
    let kubeconfig = data_dir.join("admin.kubeconfig");
    let creds = wait_until(
        &mut server,
        Duration::from_secs(60),
        "admin.kubeconfig",
        || async { Credentials::from_kubeconfig(&kubeconfig) },
    )
    .await?;
    wait_until(&mut server, Duration::from_secs(60), "/readyz", || async {
        let mut conn = RawConn::connect(&creds).await?;
        let (status, _) = conn.request(http::Method::GET, "/readyz", None).await?;
        if !status.is_success() {
            bail!("/readyz answered {status}");
        }
        Ok(())
    })
    .await?;
    eprintln!(
        "tug-bench: tug-apiserver ready on {} (pid {:?})",
        creds.authority,
        server.pid()
    );
    Ok((server, creds))
}

/// What one client did in a timed phase.
#[derive(Default)]
struct Done {
    latencies: Vec<Duration>,
    names: Vec<String>,
    errors: usize,
    first_error: Option<String>,
}

impl Done {
    fn failed(&mut self, e: anyhow::Error) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| format!("{e:#}"));
    }
}

/// A phase's merged results plus its wall time.
struct PhaseResult {
    summary: Summary,
    per_second: f64,
    names: Vec<String>,
    errors: usize,
    first_error: Option<String>,
    cpu: Value,
}

/// Runs `work` on every client at once and merges what they did.
async fn timed_phase<F, Fut>(
    clients: Vec<ApiClient>,
    server_pid: Option<u32>,
    work: F,
) -> anyhow::Result<(Vec<ApiClient>, PhaseResult)>
where
    F: Fn(usize, ApiClient) -> Fut,
    Fut: std::future::Future<Output = (ApiClient, Done)> + Send + 'static,
{
    let cpu = CpuMeter::start(server_pid);
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(work(i, c)))
        .collect();
    let mut clients = Vec::new();
    let mut all = Done::default();
    for t in tasks {
        let (client, done) = t.await?;
        clients.push(client);
        all.latencies.extend(done.latencies);
        all.names.extend(done.names);
        all.errors += done.errors;
        if all.first_error.is_none() {
            all.first_error = done.first_error;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu.finish();
    let summary = Summary::of(all.latencies);
    Ok((
        clients,
        PhaseResult {
            per_second: summary.count as f64 / wall,
            summary,
            names: all.names,
            errors: all.errors,
            first_error: all.first_error,
            cpu,
        },
    ))
}

/// A client gives up after this many failures in a row (a dead connection
/// fails instantly and would otherwise spin).
const MAX_CONSECUTIVE_ERRORS: usize = 100;

async fn create_phase(
    clients: Vec<ApiClient>,
    seconds: f64,
    pid: Option<u32>,
) -> anyhow::Result<(Vec<ApiClient>, PhaseResult)> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    timed_phase(clients, pid, move |i, mut client| async move {
        let mut done = Done::default();
        let mut in_a_row = 0;
        let mut seq = 0u64;
        while Instant::now() < deadline && in_a_row < MAX_CONSECUTIVE_ERRORS {
            let name = format!("bench-{i}-{seq}");
            seq += 1;
            let body = Bytes::from(pod_bytes(&name));
            // Only kube-rs needs the typed object; made before the clock starts.
            let typed: Option<Pod> = matches!(client, ApiClient::Kube(_))
                .then(|| serde_json::from_slice(&body).expect("the pod template is a Pod"));
            let t = Instant::now();
            match client.create(typed.as_ref(), &body).await {
                Ok(()) => {
                    done.latencies.push(t.elapsed());
                    done.names.push(name);
                    in_a_row = 0;
                }
                Err(e) => {
                    done.failed(e);
                    in_a_row += 1;
                }
            }
        }
        (client, done)
    })
    .await
}

async fn get_phase(
    clients: Vec<ApiClient>,
    names: Arc<Vec<String>>,
    seconds: f64,
    pid: Option<u32>,
) -> anyhow::Result<(Vec<ApiClient>, PhaseResult)> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    timed_phase(clients, pid, move |i, mut client| {
        let names = names.clone();
        async move {
            let mut done = Done::default();
            let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
            let mut in_a_row = 0;
            while Instant::now() < deadline && in_a_row < MAX_CONSECUTIVE_ERRORS {
                let name = &names[rng.gen_range(0..names.len())];
                let t = Instant::now();
                match client.get(name).await {
                    Ok(()) => {
                        done.latencies.push(t.elapsed());
                        in_a_row = 0;
                    }
                    Err(e) => {
                        done.failed(e);
                        in_a_row += 1;
                    }
                }
            }
            (client, done)
        }
    })
    .await
}

/// Phase 4. Returns the JSON fields of the watch figures.
async fn watch_phase(client: &kube::Client, objects: usize, rate: f64) -> anyhow::Result<Value> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let rv = api
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .ok_or_else(|| anyhow!("the list has no resourceVersion"))?;
    let mut stream = api
        .watch(&WatchParams::default().timeout(290), &rv)
        .await?
        .boxed();

    // The watcher records when each watch-* pod's ADDED event arrives.
    let (arrived_tx, arrived_rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(async move {
        let mut arrived = HashMap::new();
        while arrived.len() < objects {
            match stream.try_next().await {
                Ok(Some(WatchEvent::Added(p))) => {
                    let now = Instant::now();
                    if let Some(name) = p.metadata.name.filter(|n| n.starts_with("watch-")) {
                        arrived.entry(name).or_insert(now);
                    }
                }
                Ok(Some(WatchEvent::Error(e))) => {
                    let _ = arrived_tx.send(Err(anyhow!("watch error: {}", e.message)));
                    return;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    let _ = arrived_tx.send(Err(e.into()));
                    return;
                }
            }
        }
        let _ = arrived_tx.send(Ok(arrived));
    });

    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut sent = Vec::with_capacity(objects);
    for k in 0..objects {
        tokio::time::sleep_until(start + interval * k as u32).await;
        let name = format!("watch-{k}");
        let typed: Pod = serde_json::from_value(pod(&name))?;
        let t_send = Instant::now();
        api.create(&PostParams::default(), &typed).await?;
        sent.push((name, t_send, Instant::now()));
    }
    let arrived = tokio::time::timeout(Duration::from_secs(30), arrived_rx)
        .await
        .context("watch events did not all arrive within 30 s")??;
    watcher.abort();
    let arrived = arrived?;

    let mut from_send = Vec::new();
    let mut from_ack = Vec::new();
    let mut before_ack = 0;
    for (name, t_send, t_ack) in &sent {
        let Some(t) = arrived.get(name) else { continue };
        from_send.push(t.saturating_duration_since(*t_send));
        match t.checked_duration_since(*t_ack) {
            Some(d) => from_ack.push(d),
            None => {
                before_ack += 1;
                from_ack.push(Duration::ZERO);
            }
        }
    }
    let missing = sent.len() - from_send.len();
    let s = Summary::of(from_send);
    let a = Summary::of(from_ack);
    Ok(json!({
        "watch_events": s.count,
        "watch_events_missing": missing,
        "watch_event_p50_ms": round(s.p50_ms),
        "watch_event_p99_ms": round(s.p99_ms),
        "watch_event_max_ms": round(s.max_ms),
        "watch_after_ack_p50_ms": round(a.p50_ms),
        "watch_after_ack_p99_ms": round(a.p99_ms),
        "watch_events_before_ack": before_ack,
    }))
}

pub async fn run(
    load: &Load,
    opts: &TugboatOptions,
    work_dir: Option<&Path>,
) -> anyhow::Result<Value> {
    let (server, creds) = start_apiserver(&opts.apiserver, work_dir).await?;
    let pid = server.pid();
    let admin = creds.kube_client().await?;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await?;

    let mut clients = Vec::with_capacity(load.clients);
    for _ in 0..load.clients {
        clients.push(ApiClient::connect(opts.client, &creds).await?);
    }
    let object_bytes = pod_bytes("bench-0-0").len();

    eprintln!(
        "tug-bench: create: {} {} clients for {} s",
        load.clients,
        opts.client.name(),
        load.seconds
    );
    let (clients, create) = create_phase(clients, load.seconds, pid).await?;
    eprintln!(
        "tug-bench: create: {:.0}/s, p99 {:.2} ms, {} errors",
        create.per_second, create.summary.p99_ms, create.errors
    );
    if create.names.is_empty() {
        bail!(
            "no create succeeded: {}",
            create.first_error.unwrap_or_default()
        );
    }
    let stored_object_bytes = stored_size(&creds, &create.names[0]).await.ok();
    let rss_after_create = server.rss_mib();

    let names = Arc::new(create.names.clone());
    eprintln!(
        "tug-bench: get: {} clients for {} s over {} pods",
        load.clients,
        load.seconds,
        names.len()
    );
    let (mut clients, get) = get_phase(clients, names.clone(), load.seconds, pid).await?;
    eprintln!(
        "tug-bench: get: {:.0}/s, p99 {:.2} ms, {} errors",
        get.per_second, get.summary.p99_ms, get.errors
    );

    eprintln!(
        "tug-bench: list: {} lists of {} pods",
        opts.lists,
        names.len()
    );
    let cpu = CpuMeter::start(pid);
    let mut list_latencies = Vec::new();
    let mut list_size = ListSize::default();
    for _ in 0..opts.lists {
        let t = Instant::now();
        list_size = clients[0].list().await?;
        list_latencies.push(t.elapsed());
    }
    let list_cpu = cpu.finish();
    let rss_after_list = server.rss_mib();
    let list = Summary::of(list_latencies);
    eprintln!("tug-bench: list: p99 {:.1} ms", list.p99_ms);
    drop(clients);

    eprintln!(
        "tug-bench: watch: {} creates at {}/s",
        opts.watch_objects, opts.watch_rate
    );
    let watch = watch_phase(&admin, opts.watch_objects, opts.watch_rate).await?;
    eprintln!("tug-bench: watch: {watch}");

    let rss = server.rss_mib();
    server.stop().await?;

    let mut out = json!({
        "target": "tugboat",
        "client": opts.client.name(),
        "clients": load.clients,
        "seconds": load.seconds,
        "objects": names.len(),
        "object_bytes": object_bytes,
        "stored_object_bytes": stored_object_bytes,
        "create_per_second": round(create.per_second),
        "create_mean_ms": round(create.summary.mean_ms),
        "create_p50_ms": round(create.summary.p50_ms),
        "create_p90_ms": round(create.summary.p90_ms),
        "create_p99_ms": round(create.summary.p99_ms),
        "create_max_ms": round(create.summary.max_ms),
        "create_errors": create.errors,
        "create_first_error": create.first_error,
        "create_cpu": create.cpu,
        "gets": get.summary.count,
        "get_per_second": round(get.per_second),
        "get_mean_ms": round(get.summary.mean_ms),
        "get_p50_ms": round(get.summary.p50_ms),
        "get_p99_ms": round(get.summary.p99_ms),
        "get_max_ms": round(get.summary.max_ms),
        "get_errors": get.errors,
        "get_first_error": get.first_error,
        "get_cpu": get.cpu,
        "lists": list.count,
        "list_items": list_size.items,
        "list_response_bytes": list_size.bytes,
        "list_p50_ms": round(list.p50_ms),
        "list_p99_ms": round(list.p99_ms),
        "list_cpu": list_cpu,
        "server_rss_mib_after_create": rss_after_create.map(round),
        "server_rss_mib_after_list": rss_after_list.map(round),
        "server_rss_mib": rss.map(round),
    });
    if let (Value::Object(out), Value::Object(watch)) = (&mut out, watch) {
        out.extend(watch);
    }
    Ok(out)
}

/// The size of one pod as the server returns it (with uid, timestamps,
/// managedFields): what it stores per object.
async fn stored_size(creds: &Credentials, name: &str) -> anyhow::Result<usize> {
    let mut conn = RawConn::connect(creds).await?;
    let (_, len) = conn
        .request(
            http::Method::GET,
            &format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}"),
            None,
        )
        .await?;
    Ok(len)
}
