//! `tug port-forward`: listen on local ports and forward each accepted
//! connection to a port of a pod over `pods/{name}/portforward`.
//!
//! Like kubectl up to 1.30 it upgrades once to SPDY/3.1
//! (`portforward.k8s.io`) and opens an `error` and a `data` stream per
//! local connection ([`crate::spdy`]); kube-rs's `Api::portforward` (the
//! WebSocket channel protocol, which the kubelet also serves) would need a
//! WebSocket per forwarded connection and has no way to report one
//! connection's error apart from the session's. `svc/x` and workloads resolve to a pod,
//! with a service port translated to its target port as kubectl does.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::podref;
use crate::spdy;

/// Forward one or more local ports to a pod.
///
/// Use resource type/name such as deployment/mydeployment to select a pod.
/// Resource type defaults to 'pod' if omitted.
///
/// If there are multiple pods matching the criteria, a pod will be
/// selected automatically. The forwarding session ends when the selected
/// pod terminates, and a rerun of the command is needed to resume
/// forwarding.
///
/// Examples:
///   # Listen on ports 5000 and 6000 locally, forwarding data to/from ports 5000 and 6000 in the pod
///   tug port-forward pod/mypod 5000 6000
///
///   # Listen on port 8888 locally, forwarding to 5000 in the pod
///   tug port-forward pod/mypod 8888:5000
///
///   # Listen on a random port locally, forwarding to 5000 in the pod
///   tug port-forward pod/mypod :5000
///
///   # Listen on port 8443 locally, forwarding to the targetPort of the service's port named "https"
///   tug port-forward service/myservice 8443:https
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct PortForwardArgs {
    /// TYPE/NAME, then [LOCAL_PORT:]REMOTE_PORT ...
    pub args: Vec<String>,
    /// The length of time (like 5s, 2m, or 3h, higher than zero) to wait
    /// until at least one pod is running.
    #[arg(long, default_value = "1m0s")]
    pub pod_running_timeout: String,
    /// Addresses to listen on (comma separated). Only accepts IP addresses
    /// or localhost as a value. When localhost is supplied, tug will try to
    /// bind on both 127.0.0.1 and ::1 and will fail if neither of these
    /// addresses are available to bind.
    #[arg(long, value_delimiter = ',', default_value = "localhost")]
    pub address: Vec<String>,
}

/// A `[LOCAL:]REMOTE` argument: the local port (0 for a random one) and
/// the remote port, a number or a port name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub local: u16,
    pub remote: String,
}

/// Parse `8080:80`, `:80` (random local port) or `80` (the same port).
pub fn parse_port_spec(s: &str) -> Result<PortSpec, String> {
    let (local, remote) = match s.split_once(':') {
        Some((l, r)) => (Some(l), r),
        None => (None, s),
    };
    if remote.is_empty() || remote.contains(':') {
        return Err(format!("invalid port format '{s}'"));
    }
    let local = match local {
        Some("") => 0,
        Some(l) => parse_port("local", l)?,
        None => {
            // `80` listens on 80; a bare name needs the translated number.
            if remote.chars().all(|c| c.is_ascii_digit()) {
                parse_port("local", remote)?
            } else {
                0
            }
        }
    };
    if remote.chars().all(|c| c.is_ascii_digit()) {
        parse_port("remote", remote)?;
    }
    Ok(PortSpec {
        local,
        remote: remote.to_string(),
    })
}

fn parse_port(which: &str, s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 || which == "local" => Ok(p),
        _ => Err(format!("Error parsing {which} port '{s}': invalid port")),
    }
}

/// A container port number for a remote port given by number or by the
/// name of one of the pod's container ports.
pub fn pod_port(pod: &Pod, remote: &str) -> Result<u16, String> {
    if let Ok(p) = remote.parse::<u16>() {
        return Ok(p);
    }
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(remote))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .ok_or_else(|| {
            format!(
                "Pod '{}' does not have a named port '{remote}'",
                pod.metadata.name.as_deref().unwrap_or("")
            )
        })
}

/// A service port (by number or name) translated to the pod's port, as
/// kubectl's `translateServicePortToTargetPort`: an int targetPort, a
/// named one looked up in the pod, or the port itself when unset. A
/// listen port left implicit stays the service port.
pub fn service_to_pod(
    svc: &Service,
    pod: &Pod,
    spec: &PortSpec,
    explicit_local: bool,
) -> Result<PortSpec, String> {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let by_number = spec.remote.parse::<i32>().ok();
    let Some(port) = ports.iter().find(|p| match by_number {
        Some(n) => p.port == n,
        None => p.name.as_deref() == Some(spec.remote.as_str()),
    }) else {
        return Err(format!(
            "Service {} does not have a service port {}",
            svc.metadata.name.as_deref().unwrap_or(""),
            spec.remote
        ));
    };
    let target = match &port.target_port {
        Some(IntOrString::Int(0)) | None => port.port as u16,
        Some(IntOrString::Int(n)) => *n as u16,
        Some(IntOrString::String(name)) => pod_port(pod, name)?,
    };
    let local = if explicit_local {
        spec.local
    } else {
        port.port as u16
    };
    Ok(PortSpec {
        local,
        remote: target.to_string(),
    })
}

/// The addresses `--address` names: `localhost` is 127.0.0.1 and ::1.
pub fn listen_addresses(flags: &[String]) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for a in flags {
        if a == "localhost" {
            out.push(IpAddr::from([127, 0, 0, 1]));
            out.push(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
        } else {
            out.push(a.parse().map_err(|_| format!("{a} is not a valid IP"))?);
        }
    }
    Ok(out)
}

/// How kubectl writes a listening address: `[::1]:8080`.
fn show(addr: SocketAddr) -> String {
    addr.to_string()
}

pub async fn run(ctx: &Ctx, a: PortForwardArgs) -> Result<()> {
    let wait = podref::running_timeout(&a.pod_running_timeout)?;
    if a.args.len() < 2 {
        return Err(super::exec::usage(
            "port-forward",
            "TYPE/NAME and list of ports are required for port-forward",
        ));
    }
    let mut specs = Vec::new();
    for s in &a.args[1..] {
        specs.push(parse_port_spec(s).map_err(CliError::client)?);
    }
    let addresses = listen_addresses(&a.address).map_err(CliError::client)?;
    let target = &a.args[0];
    let pod = podref::pod_for(ctx, target, false, wait).await?;
    // A service's ports are its own; translate them to the pod's.
    if let Some(("svc" | "service" | "services", name)) = target.split_once('/') {
        let svc: Service = Api::namespaced(ctx.client.clone(), &ctx.namespace)
            .get(name)
            .await?;
        for (spec, raw) in specs.iter_mut().zip(&a.args[1..]) {
            *spec =
                service_to_pod(&svc, &pod, spec, raw.contains(':')).map_err(CliError::client)?;
        }
    } else {
        for spec in specs.iter_mut() {
            let remote = pod_port(&pod, &spec.remote).map_err(CliError::client)?;
            spec.remote = remote.to_string();
        }
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase != "Running" {
        return Err(CliError::client(format!(
            "unable to forward port because pod is not running. Current status={phase}"
        )));
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    let conn = Arc::new(connect(ctx, &name).await?);

    let mut listeners = Vec::new();
    for spec in &specs {
        let mut local = spec.local;
        let mut bound = false;
        for ip in &addresses {
            // A random port is chosen by the first bind and reused for the
            // other addresses, as kubectl does.
            match TcpListener::bind(SocketAddr::new(*ip, local)).await {
                Ok(l) => {
                    let addr = l.local_addr()?;
                    local = addr.port();
                    crate::out(&format!(
                        "Forwarding from {} -> {}\n",
                        show(addr),
                        spec.remote
                    ))?;
                    listeners.push((l, spec.remote.clone()));
                    bound = true;
                }
                Err(_) if ip.is_ipv6() && bound => {}
                Err(e) => eprintln!("Unable to listen on port {local}: {e}"),
            }
        }
        if !bound {
            return Err(CliError::client(format!(
                "unable to listen on any of the requested ports: [{{{} {}}}]",
                spec.local, spec.remote
            )));
        }
    }
    let ids = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (listener, remote) in listeners {
        let conn = conn.clone();
        let ids = ids.clone();
        tasks.spawn(async move {
            let local = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            while let Ok((sock, _)) = listener.accept().await {
                let _ = crate::out(&format!("Handling connection for {local}\n"));
                let id = ids.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(forward(conn.clone(), sock, local, remote.clone(), id));
            }
        });
    }
    conn.closed().await;
    Err(CliError::client("lost connection to pod"))
}

/// Upgrade `pods/{name}/portforward` to SPDY/3.1 with the port-forward
/// protocol.
async fn connect(ctx: &Ctx, pod: &str) -> Result<spdy::Connection> {
    let url = format!(
        "/api/v1/namespaces/{}/pods/{pod}/portforward",
        ctx.namespace
    );
    let req = http::Request::post(url)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", "portforward.k8s.io")
        .body(kube::client::Body::empty())
        .map_err(CliError::client)?;
    let mut res = ctx.client.send(req).await?;
    if res.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(match serde_json::from_slice::<kube::core::Status>(&body) {
            Ok(s) if !s.message.is_empty() => crate::error::from_status(&s),
            _ => CliError::client(format!(
                "error upgrading connection: unable to upgrade connection: {}",
                String::from_utf8_lossy(&body).trim()
            )),
        });
    }
    let upgraded = hyper::upgrade::on(&mut res)
        .await
        .map_err(|e| CliError::client(format!("error upgrading connection: {e}")))?;
    Ok(spdy::Connection::client(TokioIo::new(upgraded)))
}

/// One local connection: an error and a data stream for the port, bytes
/// copied both ways, and whatever the server reports on the error stream.
async fn forward(
    conn: Arc<spdy::Connection>,
    sock: TcpStream,
    local: u16,
    remote: String,
    id: u64,
) {
    let headers = |kind: &str| {
        vec![
            ("streamType".to_string(), kind.to_string()),
            ("port".to_string(), remote.clone()),
            ("requestID".to_string(), id.to_string()),
        ]
    };
    let mut error = match conn.open_stream(headers("error")).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: error creating error stream for port {local} -> {remote}: {e}");
            return;
        }
    };
    // We never write on the error stream.
    error.writer.close().await;
    let data = match conn.open_stream(headers("data")).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: error creating forwarding stream for port {local} -> {remote}: {e}");
            return;
        }
    };
    let spdy::Stream {
        mut incoming,
        writer,
        ..
    } = data;
    let (mut rd, mut wr) = sock.into_split();
    let upload = {
        let writer = writer.clone();
        async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if writer.write(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            writer.close().await;
        }
    };
    let download = async move {
        while let Some(d) = incoming.recv().await {
            if wr.write_all(&d).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let errors = async move {
        let mut text = Vec::new();
        while let Some(d) = error.incoming.recv().await {
            text.extend_from_slice(&d);
        }
        if !text.is_empty() {
            eprintln!(
                "error: an error occurred forwarding {local} -> {remote}: {}",
                String::from_utf8_lossy(&text)
            );
        }
    };
    // The connection is done when the pod's side ended; a client that
    // only half-closed still gets the rest of the answer.
    let up = tokio::spawn(upload);
    tokio::join!(download, errors);
    up.abort();
    writer.reset().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn port_specs_parse() {
        let ok = |l: u16, r: &str| {
            Ok(PortSpec {
                local: l,
                remote: r.to_string(),
            })
        };
        let cases = [
            ("8080:80", ok(8080, "80")),
            (":80", ok(0, "80")),
            ("80", ok(80, "80")),
            ("8443:https", ok(8443, "https")),
            ("http", ok(0, "http")),
            ("0:80", ok(0, "80")),
        ];
        for (s, want) in cases {
            assert_eq!(parse_port_spec(s), want, "{s}");
        }
        for bad in ["", "80:", "abc:80", "70000", "8080:0", "1:2:3"] {
            assert!(parse_port_spec(bad).is_err(), "{bad}");
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]}}))
        .unwrap()
    }

    #[test]
    fn named_ports_resolve_in_the_pod() {
        assert_eq!(pod_port(&pod(), "http"), Ok(8080));
        assert_eq!(pod_port(&pod(), "81"), Ok(81));
        assert_eq!(
            pod_port(&pod(), "grpc"),
            Err("Pod 'p' does not have a named port 'grpc'".to_string())
        );
    }

    #[test]
    fn service_ports_translate_to_target_ports() {
        let svc: Service =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": {"ports": [
            {"name": "web", "port": 80, "targetPort": 8080},
            {"name": "named", "port": 81, "targetPort": "http"},
            {"name": "same", "port": 82}]}}))
            .unwrap();
        let spec = |l: u16, r: &str| PortSpec {
            local: l,
            remote: r.to_string(),
        };
        let cases = [
            (spec(80, "80"), false, Ok(spec(80, "8080"))),
            (spec(0, "80"), true, Ok(spec(0, "8080"))),
            (spec(9000, "web"), true, Ok(spec(9000, "8080"))),
            (spec(0, "web"), false, Ok(spec(80, "8080"))),
            (spec(81, "81"), false, Ok(spec(81, "8080"))),
            (spec(82, "82"), false, Ok(spec(82, "82"))),
            (
                spec(90, "90"),
                false,
                Err("Service s does not have a service port 90".to_string()),
            ),
        ];
        for (input, explicit, want) in cases {
            assert_eq!(
                service_to_pod(&svc, &pod(), &input, explicit),
                want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn localhost_means_both_loopbacks() {
        let got = listen_addresses(&["localhost".to_string()]).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ipv4() && got[1].is_ipv6());
        assert!(listen_addresses(&["nope".to_string()]).is_err());
    }
}
