//! Running a [`Plan`]: the API server first (it makes the cluster CA on
//! first start), then each component's client certificate and kubeconfig,
//! then the scheduler, controller-manager, kubelet, hollow nodes and proxy,
//! all as futures on this process's one tokio runtime. It measures the
//! time until the cluster is ready (API `/healthz` ok and the local node
//! Ready) and stops components before the API server on shutdown, so that
//! their last writes land.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use k8s_openapi::api::core::v1::Node;
use tokio::sync::watch;

use crate::plan::{kubeconfig_path, Plan};

/// How long components get to stop before the API server goes anyway.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A future that resolves once `stop` says so (each component gets one).
fn stopped(stop: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// Whether a Node's `Ready` condition is `True` with a heartbeat at or
/// after `since_secs` (Unix seconds): on a restart the stored node still
/// says Ready from the last run, which proves nothing about this one.
pub fn node_ready_since(node: &Node, since_secs: i64) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "Ready"
                    && c.status == "True"
                    && c.last_heartbeat_time
                        .as_ref()
                        .is_some_and(|t| t.0.as_second() >= since_secs)
            })
        })
}

/// This process's resident memory in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The `VmRSS:` line of a `/proc/<pid>/status`, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What a user is told once the cluster is up.
pub fn usage(kubeconfig: &Path, elapsed: Duration, rss_kib: Option<u64>) -> String {
    let rss = rss_kib.map_or_else(String::new, |k| format!(", RSS {} MiB", k / 1024));
    format!(
        "tugboat server ready in {} ms{rss}\n\
         To use it:\n  export KUBECONFIG={}; kubectl get nodes\n",
        elapsed.as_millis(),
        kubeconfig.display()
    )
}

/// Poll until `/healthz` answers ok and `node` (if any) is Ready with a
/// heartbeat from this run (at or after `since_secs`).
async fn wait_ready(admin: &kube::Client, node: Option<&str>, since_secs: i64) {
    let nodes: kube::Api<Node> = kube::Api::all(admin.clone());
    loop {
        let healthy = match http::Request::get("/healthz").body(Vec::new()) {
            Ok(req) => admin.request_text(req).await.is_ok_and(|b| b == "ok"),
            Err(_) => false,
        };
        let ready = match node {
            None => true,
            Some(name) => nodes
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .is_some_and(|n| node_ready_since(&n, since_secs)),
        };
        if healthy && ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With `--agent-token-file`: the bootstrap token Secret, the public
/// `cluster-info`, and the join token in the file (an existing token is
/// kept while it names this cluster's CA).
async fn publish_join(
    admin: &kube::Client,
    join: &crate::plan::JoinPlan,
    ca_pem: &str,
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use kube::api::{Api, Patch, PatchParams};
    let existing = std::fs::read_to_string(&join.token_file)
        .ok()
        .and_then(|t| crate::join::JoinToken::parse(&t).ok());
    let hash = crate::join::ca_hash(ca_pem).map_err(anyhow::Error::msg)?;
    let token = match existing {
        Some(t) if t.ca_hash == hash => t,
        _ => crate::join::JoinToken::generate(ca_pem).map_err(anyhow::Error::msg)?,
    };
    let apply = PatchParams::apply("tugboat-server").force();
    let secret: Secret = serde_json::from_value(apiserver::bootstrap_token::secret(
        &token.id,
        &token.secret,
        "tugboat agent join token",
        None,
    ))?;
    Api::<Secret>::namespaced(admin.clone(), "kube-system")
        .patch(
            &apiserver::bootstrap_token::secret_name(&token.id),
            &apply,
            &Patch::Apply(&secret),
        )
        .await?;
    let info: ConfigMap =
        serde_json::from_value(crate::join::cluster_info(&join.server_url, ca_pem))?;
    Api::<ConfigMap>::namespaced(admin.clone(), "kube-public")
        .patch("cluster-info", &apply, &Patch::Apply(&info))
        .await?;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(parent) = join.token_file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&join.token_file)
            .with_context(|| format!("writing {}", join.token_file.display()))?;
        writeln!(f, "{}", token.to_text())?;
    }
    println!(
        "Agents join with:\n  tugboat agent --server {} --token-file {}\n",
        join.server_url,
        join.token_file.display()
    );
    Ok(())
}

/// Which component a finished future was, and how it ended.
type Finished = (&'static str, anyhow::Result<()>);

/// Run the whole cluster until `shutdown` resolves (or a component other
/// than the proxy fails).
pub async fn run(plan: Plan, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let started = Instant::now();
    // Heartbeats are written with whole seconds.
    let started_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let Plan {
        data_dir,
        node_name,
        apiserver: api_flags,
        scheduler,
        controller_manager,
        kubelet,
        hollow,
        proxy,
        identities,
        join,
    } = plan;
    let (stop_api, api_stop) = watch::channel(false);
    let (stop_components, components_stop) = watch::channel(false);

    let (running, api) = apiserver::cli::start(api_flags, stopped(&api_stop))
        .await
        .context("starting the API server")?;
    let mut api = tokio::spawn(api);
    tracing::info!(url = %running.url, "API server listening");
    for identity in &identities {
        let path = apiserver::pki::ensure_client_kubeconfig(&data_dir, identity, &running.url)
            .with_context(|| format!("issuing {}'s certificate", identity.user))?;
        debug_assert_eq!(path, kubeconfig_path(&data_dir, identity));
    }

    let mut components: FuturesUnordered<BoxFuture<'static, Finished>> = FuturesUnordered::new();
    let stop = || stopped(&components_stop);
    components.push(
        tugboat_scheduler::cli::run(scheduler, stop())
            .map(|r| ("scheduler", r))
            .boxed(),
    );
    components.push(
        tugboat_controller_manager::cli::run(controller_manager, stop())
            .map(|r| ("controller-manager", r))
            .boxed(),
    );
    if let Some(flags) = kubelet {
        components.push(
            kubelet::cli::run(flags, stop())
                .map(|r| ("kubelet", r))
                .boxed(),
        );
    }
    if let Some(flags) = hollow {
        components.push(
            kubelet::cli::run(flags, stop())
                .map(|r| ("hollow nodes", r))
                .boxed(),
        );
    }
    components.push(
        tugboat_kube_proxy::cli::run(proxy, stop())
            .map(|r| ("proxy", r))
            .boxed(),
    );

    let admin = component_base::client::client(Some(&running.kubeconfig)).await?;
    if let Some(join) = &join {
        let ca = std::fs::read_to_string(data_dir.join("pki").join("ca.crt"))
            .context("reading the cluster CA")?;
        publish_join(&admin, join, &ca)
            .await
            .context("publishing the agent join token")?;
    }
    let ready = wait_ready(&admin, node_name.as_deref(), started_secs);
    tokio::pin!(ready);
    tokio::pin!(shutdown);
    let mut is_ready = false;
    let mut failure = None;
    loop {
        tokio::select! {
            _ = &mut ready, if !is_ready => {
                is_ready = true;
                let elapsed = started.elapsed();
                let rss = rss_kib();
                tracing::info!(
                    ms = elapsed.as_millis() as u64,
                    rss_mib = rss.map(|k| k / 1024),
                    "ready in {} ms", elapsed.as_millis()
                );
                print!("{}", usage(&running.kubeconfig, elapsed, rss));
            }
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                break;
            }
            server = &mut api => {
                failure = Some(match server {
                    Ok(Ok(())) => anyhow::anyhow!("the API server stopped"),
                    Ok(Err(e)) => e.context("the API server failed"),
                    Err(e) => anyhow::anyhow!("the API server panicked: {e}"),
                });
                break;
            }
            Some((name, result)) = components.next() => match (name, result) {
                ("proxy", Err(error)) => {
                    tracing::warn!("the service proxy failed; continuing without one: {error:#}");
                }
                (name, Err(error)) => {
                    failure = Some(error.context(format!("the {name} failed")));
                    break;
                }
                (name, Ok(())) => {
                    failure = Some(anyhow::anyhow!("the {name} stopped"));
                    break;
                }
            },
        }
    }

    // Components first: the kubelet's and controllers' last writes need
    // the API server. The process runtime's containers keep running, for
    // the next start to re-adopt.
    let _ = stop_components.send(true);
    let drained = tokio::time::timeout(STOP_TIMEOUT, async {
        while let Some((name, result)) = components.next().await {
            match result {
                Ok(()) => tracing::info!("{name} stopped"),
                Err(error) => tracing::warn!("{name} stopped: {error:#}"),
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("components did not stop within {STOP_TIMEOUT:?}");
    }
    let _ = stop_api.send(true);
    match tokio::time::timeout(STOP_TIMEOUT, &mut api).await {
        Ok(Ok(Err(error))) => tracing::warn!("API server: {error:#}"),
        Err(_) => tracing::warn!("the API server did not stop within {STOP_TIMEOUT:?}"),
        _ => {}
    }
    tracing::info!(rss_mib = rss_kib().map(|k| k / 1024), "stopped");
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\ttugboat\nVmPeak:\t  9000 kB\nVmRSS:\t   51234 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(51234));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert!(rss_kib().is_some_and(|k| k > 0));
    }

    #[test]
    fn readiness_is_the_ready_condition() {
        let node = |status: &str, heartbeat: &str| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n"},
                "status": {"conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": status, "lastHeartbeatTime": heartbeat},
                ]}
            }))
            .unwrap()
        };
        // 2026-01-01T00:00:00Z
        let since = 1_767_225_600;
        let cases = [
            ("True", "2026-01-01T00:00:00Z", true),
            ("True", "2026-01-01T00:00:05Z", true),
            ("True", "2025-12-31T23:59:59Z", false),
            ("False", "2026-01-01T00:00:05Z", false),
            ("Unknown", "2026-01-01T00:00:05Z", false),
        ];
        for (status, heartbeat, want) in cases {
            assert_eq!(
                node_ready_since(&node(status, heartbeat), since),
                want,
                "{status} {heartbeat}"
            );
        }
        assert!(!node_ready_since(&Node::default(), since));
    }

    #[test]
    fn the_usage_says_how_to_reach_the_cluster() {
        let text = usage(
            Path::new("/d/admin.kubeconfig"),
            Duration::from_millis(812),
            Some(40 * 1024),
        );
        assert_eq!(
            text,
            "tugboat server ready in 812 ms, RSS 40 MiB\nTo use it:\n  \
             export KUBECONFIG=/d/admin.kubeconfig; kubectl get nodes\n"
        );
    }
}
