//! `tugboat agent --server URL --token T`: a kubelet and a service proxy
//! that join a `tugboat server`'s cluster (see [`crate::join`]).
//!
//! On first start the agent has nothing but the join token: it fetches the
//! public `cluster-info` (without trusting the server yet), checks the CA in
//! it against the hash the token carries, then, authenticated by the
//! bootstrap token and trusting that CA, asks for its node credential with
//! a CertificateSigningRequest and waits for the controller manager to
//! approve and sign it. The credential goes to
//! `<data-dir>/kubeconfigs/node.kubeconfig`; later starts use it directly.
//! The kubelet and the proxy then run in this process with it.

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use crate::join::{self, JoinToken};
use crate::plan::RuntimeChoice;

/// How long the agent waits for its certificate to be issued.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(120);

/// `tugboat agent`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The server's API URL, e.g. https://10.0.0.1:6443.
    #[arg(long)]
    pub server: String,
    /// The join token (`K10<ca-hash>::<id>.<secret>`) from the server's
    /// `--agent-token-file`.
    #[arg(long, env = "TUGBOAT_TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the join token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Where the agent keeps its credential and the kubelet's state
    /// [default: /var/lib/tugboat-agent as root, else ./tugboat-agent-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// This node's name [default: the host name].
    #[arg(long)]
    pub node_name: Option<String>,
    /// This node's InternalIP [default: the address on the default route].
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// The container runtime.
    #[arg(long, value_enum, default_value_t = RuntimeChoice::Process)]
    pub runtime: RuntimeChoice,
    /// Cri runtime: the CRI runtime's gRPC socket.
    #[arg(long, default_value = kubelet::runtime::cri::DEFAULT_ENDPOINT)]
    pub container_runtime_endpoint: String,
    /// The kubelet's HTTPS port (logs, exec, port-forward).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Log filter (RUST_LOG syntax).
    #[arg(
        short = 'v',
        long = "log-level",
        default_value = "info",
        env = "RUST_LOG"
    )]
    pub log_level: String,
}

/// The default data dir for an agent.
pub fn default_data_dir(is_root: bool) -> PathBuf {
    if is_root {
        PathBuf::from("/var/lib/tugboat-agent")
    } else {
        PathBuf::from("tugboat-agent-data")
    }
}

/// Where the node credential lives.
pub fn node_kubeconfig(data_dir: &Path) -> PathBuf {
    data_dir.join("kubeconfigs").join("node.kubeconfig")
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A kubeconfig for `server` with the given cluster and user parts.
fn kubeconfig_text(server: &str, cluster_extra: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: tugboat\n  cluster:\n    server: {server}\n{cluster_extra}users:\n- name: agent\n  user:\n{user}contexts:\n- name: tugboat\n  context:\n    cluster: tugboat\n    user: agent\ncurrent-context: tugboat\n"
    )
}

/// A client from kubeconfig text, kept in memory (the bootstrap token
/// never touches the disk).
async fn client_from(text: &str) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(text)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Joins the cluster: returns the node kubeconfig's path, making the
/// credential first when there is none.
pub async fn ensure_credential(
    server: &str,
    token: &JoinToken,
    data_dir: &Path,
    node: &str,
) -> anyhow::Result<PathBuf> {
    use base64::Engine;
    let path = node_kubeconfig(data_dir);
    if path.is_file() {
        return Ok(path);
    }
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    // 1. The public cluster-info, read before trusting anything.
    let untrusted = client_from(&kubeconfig_text(
        server,
        "    insecure-skip-tls-verify: true\n",
        "    {}\n",
    ))
    .await?;
    let info = Api::<ConfigMap>::namespaced(untrusted, "kube-public")
        .get("cluster-info")
        .await
        .with_context(|| format!("reading cluster-info from {server}"))?;
    let kubeconfig = info
        .data
        .as_ref()
        .and_then(|d| d.get("kubeconfig"))
        .context("cluster-info has no kubeconfig")?;
    let ca = join::trusted_ca(kubeconfig, token).map_err(anyhow::Error::msg)?;
    let cluster = format!("    certificate-authority-data: {}\n", b64(&ca));

    // 2. The node credential, asked for with the bootstrap token.
    let bootstrap = client_from(&kubeconfig_text(
        server,
        &cluster,
        &format!("    token: {}\n", token.bootstrap()),
    ))
    .await?;
    let (key, request) = join::node_request(node).map_err(anyhow::Error::msg)?;
    let csrs: Api<CertificateSigningRequest> = Api::all(bootstrap);
    let csr: CertificateSigningRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": format!("node-csr-{node}-")},
        "spec": {
            "request": b64(&request),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        },
    }))?;
    let created = csrs
        .create(&PostParams::default(), &csr)
        .await
        .context("asking for the node credential (is the join token still valid?)")?;
    let name = created.metadata.name.unwrap_or_default();
    tracing::info!(csr = %name, "asked for the node credential; waiting for it to be issued");
    let deadline = Instant::now() + ISSUE_TIMEOUT;
    let cert = loop {
        let current = csrs.get(&name).await?;
        let status = current.status.unwrap_or_default();
        if let Some(c) = status
            .conditions
            .unwrap_or_default()
            .iter()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        {
            bail!(
                "the node credential request {name} was {}: {}",
                c.type_.to_lowercase(),
                c.message.clone().unwrap_or_default()
            );
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            break String::from_utf8(cert.0).context("the issued certificate is not PEM")?;
        }
        if Instant::now() >= deadline {
            bail!("the node credential request {name} was not issued within {ISSUE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let text =
        apiserver::pki::kubeconfig_for(&format!("system:node:{node}"), server, &ca, &cert, &key);
    write_private(&path, &text)?;
    tracing::info!(path = %path.display(), "node credential issued");
    Ok(path)
}

/// The token from `--token` or `--token-file`.
pub fn read_token(args: &AgentArgs) -> anyhow::Result<JoinToken> {
    let text = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the join token from {}", f.display()))?,
        (None, None) => bail!("give the join token with --token or --token-file"),
    };
    JoinToken::parse(&text).map_err(anyhow::Error::msg)
}

/// The kubelet's and the proxy's flags for this agent.
pub fn component_flags(
    args: &AgentArgs,
    data_dir: &Path,
    node: &str,
    node_ip: IpAddr,
    kubeconfig: &Path,
    is_root: bool,
) -> (kubelet::cli::Flags, tugboat_kube_proxy::cli::Flags) {
    let k = crate::plan::node_kubelet(
        &crate::plan::NodeSpec {
            name: node,
            ip: node_ip,
            runtime: args.runtime,
            container_runtime_endpoint: &args.container_runtime_endpoint,
            kubelet_port: args.kubelet_port,
        },
        data_dir,
        kubeconfig,
    );
    let proxy = crate::plan::node_proxy(node, kubeconfig, is_root);
    (k, proxy)
}

/// Joins, then runs the kubelet and the proxy until `shutdown`.
pub async fn run(
    args: AgentArgs,
    data_dir: PathBuf,
    node: String,
    node_ip: IpAddr,
    is_root: bool,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let token = read_token(&args)?;
    // Not interrupted by the shutdown signal: it finishes or fails within
    // its own timeout.
    let kubeconfig = ensure_credential(&args.server, &token, &data_dir, &node).await?;
    let (kubelet_flags, proxy_flags) =
        component_flags(&args, &data_dir, &node, node_ip, &kubeconfig, is_root);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut running: FuturesUnordered<BoxFuture<'static, (&'static str, anyhow::Result<()>)>> =
        FuturesUnordered::new();
    running.push(
        kubelet::cli::run(kubelet_flags, stop())
            .map(|r| ("kubelet", r))
            .boxed(),
    );
    running.push(
        tugboat_kube_proxy::cli::run(proxy_flags, stop())
            .map(|r| ("proxy", r))
            .boxed(),
    );
    println!("tugboat agent: node {node} joined {}", args.server);
    tokio::pin!(shutdown);
    let mut failure = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some((name, result)) = running.next() => {
                match result {
                    Err(e) if name == "proxy" => {
                        tracing::error!(error = %format!("{e:#}"), "the proxy stopped; the agent continues without it");
                    }
                    Err(e) => {
                        failure = Some(e.context(format!("{name} failed")));
                        break;
                    }
                    Ok(()) if running.is_empty() => break,
                    Ok(()) => {}
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while running.next().await.is_some() {}
    })
    .await;
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_runs_a_kubelet_and_a_proxy_as_its_node() {
        let args = AgentArgs {
            server: "https://10.0.0.1:6443".into(),
            token: None,
            token_file: None,
            data_dir: None,
            node_name: None,
            node_ip: None,
            runtime: RuntimeChoice::Process,
            container_runtime_endpoint: "unix:///run/containerd/containerd.sock".into(),
            kubelet_port: 10250,
            log_level: "info".into(),
        };
        let d = Path::new("/d");
        let kc = node_kubeconfig(d);
        assert_eq!(kc, Path::new("/d/kubeconfigs/node.kubeconfig"));
        let (k, p) = component_flags(&args, d, "n2", IpAddr::from([10, 0, 0, 2]), &kc, true);
        assert_eq!(k.kubeconfig.as_deref(), Some(kc.as_path()));
        assert_eq!(p.kubeconfig.as_deref(), Some(kc.as_path()));
        assert_eq!(k.node_name.as_deref(), Some("n2"));
        assert_eq!(p.node_name.as_deref(), Some("n2"));
        assert_eq!(k.root_dir, Path::new("/d/kubelet"));
        assert_eq!(k.node_ip, Some(IpAddr::from([10, 0, 0, 2])));
        assert!(matches!(
            p.mode,
            Some(tugboat_kube_proxy::cli::Mode::Nftables)
        ));
        assert!(read_token(&args)
            .unwrap_err()
            .to_string()
            .contains("--token"));
    }
}
