//! port-forward over SPDY (`portforward.k8s.io`, upstream's
//! `kubelet/cri/streaming/portforward/httpstream.go`): for each forwarded
//! connection the client opens an `error` and a `data` stream with the same
//! `requestID` and `port` headers; the kubelet has the runtime connect to
//! the port in the pod ([`ContainerRuntime::port_forward_dial`]) and copies
//! bytes both ways. A failure is written as text on the
//! error stream, which kubectl prints as "an error occurred forwarding".

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::spdy::{self, Connection, Stream};
use crate::runtime::ContainerRuntime;

/// A stream pair being assembled.
#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
}

/// Parses the `port` header as upstream does: a number in 1..=65535.
pub fn parse_port(value: Option<&str>) -> Result<u16, String> {
    let Some(v) = value else {
        return Err("port header is missing".into());
    };
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("invalid port header {v:?}")),
    }
}

/// Serves port-forward streams until the client closes the connection.
/// `sandbox` is the pod's sandbox in `runtime`, which dials its ports;
/// `pod` names it in error messages.
pub async fn serve(
    mut conn: Connection,
    runtime: Arc<dyn ContainerRuntime>,
    sandbox: String,
    pod: String,
) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = conn.streams.recv().await {
        let Some(id) = spdy::header(&stream.headers, "requestid").map(str::to_string) else {
            tracing::debug!("port-forward: a stream without requestID");
            stream.writer.reset().await;
            continue;
        };
        let pair = pairs.entry(id.clone()).or_default();
        match stream.stream_type() {
            "error" => pair.error = Some(stream),
            "data" => pair.data = Some(stream),
            other => {
                tracing::debug!(stream_type = other, "port-forward: unexpected stream");
                stream.writer.reset().await;
                continue;
            }
        }
        if pair.error.is_some() && pair.data.is_some() {
            if let Some(Pair {
                error: Some(error),
                data: Some(data),
            }) = pairs.remove(&id)
            {
                tokio::spawn(forward(
                    error,
                    data,
                    runtime.clone(),
                    sandbox.clone(),
                    pod.clone(),
                ));
            }
        }
    }
    conn.shutdown().await;
}

async fn forward(
    error: Stream,
    data: Stream,
    runtime: Arc<dyn ContainerRuntime>,
    sandbox: String,
    pod: String,
) {
    let port = match parse_port(spdy::header(&data.headers, "port")) {
        Ok(p) => p,
        Err(e) => {
            let _ = error.writer.write(e.as_bytes()).await;
            error.writer.close().await;
            data.writer.reset().await;
            return;
        }
    };
    let tcp = match runtime.port_forward_dial(&sandbox, port).await {
        Ok(t) => t,
        Err(e) => {
            let message = format!("error forwarding port {port} to pod {pod}: {e}");
            let _ = error.writer.write(message.as_bytes()).await;
            error.writer.close().await;
            data.writer.reset().await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let Stream {
        mut incoming,
        writer,
        ..
    } = data;
    let to_pod = async move {
        while let Some(d) = incoming.recv().await {
            if wr.write_all(&d).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    let from_pod = async {
        let mut buf = vec![0u8; spdy::DATA_CHUNK];
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
    };
    // The pod's side ending ends the pair (as CRI runtimes return at the
    // first copy to end): kubectl waits for the error stream to close
    // before it closes its local connection. The client's side ending only
    // half-closes the pod's connection.
    tokio::spawn(to_pod);
    from_pod.await;
    error.writer.close().await;
}

/// The ports of a WebSocket port-forward request: every `port` (what the
/// API server sends, upstream's `PortHeader`) or `ports` (the API's
/// `PodPortForwardOptions`, as clients send it) query value, each a
/// comma-separated list of ports in 1..=65535.
pub fn websocket_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (super::url_decode(key)?, super::url_decode(value)?);
        if key != "port" && key != "ports" {
            continue;
        }
        if value.is_empty() {
            return Err(format!("query parameter {key:?} cannot be empty"));
        }
        for p in value.split(',') {
            match p.trim().parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => return Err(format!("unable to parse {p:?} as a port: must be 1-65535")),
            }
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(ports)
}

/// Port-forward over WebSocket channels (`v4.channel.k8s.io`, upstream's
/// `portforward/websocket.go`; what kube-rs and the Python client speak):
/// port `i` of the request gets channel `2i` for data and `2i+1` for
/// errors; the kubelet first writes the port number (2 bytes, little
/// endian) on both, then copies bytes between the data channel and a
/// connection to the port in the pod. The session ends when every port's
/// connection has ended.
pub async fn serve_websocket(
    socket: super::websocket::Socket,
    runtime: Arc<dyn ContainerRuntime>,
    sandbox: String,
    pod: String,
    ports: Vec<u16>,
) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    use super::websocket::{frame, unframe};

    let (mut sink, mut source) = socket.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    // Writes go through one task, in order.
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(Message::binary(m)).await.is_err() {
                break;
            }
        }
        let _ = sink.send(super::websocket::close_message()).await;
    });
    let mut to_ports = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let Ok(index) = u8::try_from(i) else { break };
        let (data, error) = (index * 2, index * 2 + 1);
        for ch in [data, error] {
            let _ = out_tx.send(frame(ch, &port.to_le_bytes())).await;
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        to_ports.push(tx);
        let (runtime, sandbox, pod, out) = (
            runtime.clone(),
            sandbox.clone(),
            pod.clone(),
            out_tx.clone(),
        );
        tasks.spawn(async move {
            let tcp = match runtime.port_forward_dial(&sandbox, port).await {
                Ok(t) => t,
                Err(e) => {
                    let message = format!("error forwarding port {port} to pod {pod}: {e}");
                    let _ = out.send(frame(error, message.as_bytes())).await;
                    return;
                }
            };
            let (mut rd, mut wr) = tcp.into_split();
            let to_pod = async move {
                while let Some(d) = rx.recv().await {
                    if wr.write_all(&d).await.is_err() {
                        return;
                    }
                }
                let _ = wr.shutdown().await;
            };
            let from_pod = async {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if out.send(frame(data, &buf[..n])).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            };
            tokio::select! {
                _ = from_pod => {}
                _ = to_pod => {}
            }
        });
    }
    drop(out_tx);
    let reader = async {
        while let Some(Ok(message)) = source.next().await {
            match message {
                Message::Binary(bytes) => {
                    let Some((ch, payload)) = unframe(&bytes) else {
                        continue;
                    };
                    // Data for port `ch / 2`; the client writes nothing
                    // meaningful on error channels.
                    if ch % 2 == 0 {
                        if let Some(tx) = to_ports.get(usize::from(ch / 2)) {
                            let _ = tx.send(payload.to_vec()).await;
                        }
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::select! {
        _ = reader => {}
        _ = async { while tasks.join_next().await.is_some() {} } => {}
    }
    tasks.abort_all();
    drop(to_ports);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_ports_come_from_port_or_ports() {
        assert_eq!(websocket_ports(Some("port=80")), Ok(vec![80]));
        assert_eq!(websocket_ports(Some("ports=80%2C8080")), Ok(vec![80, 8080]));
        assert_eq!(websocket_ports(Some("port=80&port=81")), Ok(vec![80, 81]));
        assert!(websocket_ports(None).unwrap_err().contains("is required"));
        assert!(websocket_ports(Some("ports="))
            .unwrap_err()
            .contains("cannot be empty"));
        assert!(websocket_ports(Some("ports=0"))
            .unwrap_err()
            .contains("1-65535"));
        assert!(websocket_ports(Some("ports=http")).is_err());
    }

    #[test]
    fn ports_are_validated() {
        assert_eq!(parse_port(Some("8080")), Ok(8080));
        for bad in [None, Some(""), Some("0"), Some("65536"), Some("http")] {
            assert!(parse_port(bad).is_err(), "{bad:?}");
        }
    }
}
