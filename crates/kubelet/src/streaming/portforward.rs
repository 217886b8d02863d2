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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_validated() {
        assert_eq!(parse_port(Some("8080")), Ok(8080));
        for bad in [None, Some(""), Some("0"), Some("65536"), Some("http")] {
            assert!(parse_port(bad).is_err(), "{bad:?}");
        }
    }
}
