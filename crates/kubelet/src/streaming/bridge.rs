//! The kubelet as a SPDY client of a CRI runtime's streaming server (what
//! upstream's API server `StreamTranslator` does): CRI `Exec`/`Attach`
//! answer with a URL on the runtime's own server (containerd:
//! `http://127.0.0.1:<port>/exec/<token>`), which speaks the channel
//! protocols only up to `v4.channel.k8s.io`, while kubectl 1.30+ speaks
//! `v5.channel.k8s.io` over WebSocket to the kubelet. So the kubelet keeps
//! speaking the client's protocol and [`connect`]s to the URL itself:
//!
//! - an HTTP/1.1 upgrade to `SPDY/3.1` with
//!   `X-Stream-Protocol-Version: v4.channel.k8s.io` ([`upgrade_request`],
//!   [`check_upgrade_response`]);
//! - one stream per channel, as client-go's remotecommand v4 opens them:
//!   `error`, then `stdin`, `stdout`, `stderr` as asked, `resize` with a
//!   terminal (the runtime's server waits for exactly the streams its
//!   `ExecRequest` asked for);
//! - the result is a [`LocalStream`], the same shape as a process of the
//!   process runtime, so the session code does not know about CRI: stdin
//!   is a writer (its end half-closes the `stdin` stream), stdout and
//!   stderr are readers, resizes are JSON `TerminalSize`s on `resize`, and
//!   the exit code comes from the `metav1.Status` the runtime writes on
//!   `error` ([`exit_code`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;

use super::spdy::{self, Connection};
use crate::runtime::streaming::{LocalStream, Reader, StreamRequest, TerminalSize, Writer};

/// The channel protocol spoken to the runtime (the newest containerd 1.6
/// and CRI-O serve over SPDY).
pub const PROTOCOL: &str = "v4.channel.k8s.io";
/// How long connecting and the upgrade may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The most of an upgrade response's head (and error body) read.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// A runtime streaming URL, split: `host:port` to dial and the path (with
/// query) to request. Only plain `http://` is served: runtimes bind their
/// streaming server to the loopback without TLS by default.
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("unsupported runtime streaming URL {url:?}: only http:// URLs are served")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("invalid runtime streaming URL {url:?}"));
    }
    // An IPv6 literal is bracketed; a port follows the last colon.
    let has_port = if authority.starts_with('[') {
        authority.contains("]:")
    } else {
        authority.contains(':')
    };
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_string()))
}

/// The upgrade request client-go's SPDY round tripper sends.
pub fn upgrade_request(authority: &str, path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\n\
         Host: {authority}\r\n\
         User-Agent: tug-kubelet\r\n\
         Content-Length: 0\r\n\
         Connection: Upgrade\r\n\
         Upgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: {PROTOCOL}\r\n\
         \r\n"
    )
}

/// Checks the response head (status line and headers, without the blank
/// line): `101 Switching Protocols` to SPDY/3.1 with our protocol.
/// Otherwise the error names the status and the body the runtime sent.
pub fn check_upgrade_response(head: &str, body: &str) -> Result<(), String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    if code != "101" {
        let body = body.trim();
        return Err(if body.is_empty() {
            format!("the runtime's streaming server answered {status_line:?}")
        } else {
            format!("the runtime's streaming server answered {status_line:?}: {body}")
        });
    }
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    match header("upgrade") {
        Some(u) if u.eq_ignore_ascii_case("spdy/3.1") => {}
        other => {
            return Err(format!(
                "the runtime's streaming server upgraded to {other:?}, not SPDY/3.1"
            ))
        }
    }
    // A server that negotiated nothing would speak the legacy protocol,
    // which has no exit status.
    match header("x-stream-protocol-version") {
        Some(PROTOCOL) => Ok(()),
        other => Err(format!(
            "the runtime's streaming server does not speak {PROTOCOL} (it chose {other:?})"
        )),
    }
}

/// The exit code from the error stream's content (v4): empty or `Success`
/// is 0; `NonZeroExitCode` carries the code in its `ExitCode` cause; any
/// other Status (or text) is an error with its message.
pub fn exit_code(content: &[u8]) -> Result<i32, String> {
    if content.iter().all(u8::is_ascii_whitespace) {
        return Ok(0);
    }
    let status: serde_json::Value = match serde_json::from_slice(content) {
        Ok(v) => v,
        Err(_) => return Err(String::from_utf8_lossy(content).trim().to_string()),
    };
    if status["status"] == "Success" {
        return Ok(0);
    }
    let message = status["message"]
        .as_str()
        .unwrap_or("the command failed")
        .to_string();
    if status["reason"] == "NonZeroExitCode" {
        let code = status["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["reason"] == "ExitCode")
            .find_map(|c| c["message"].as_str()?.parse::<i32>().ok());
        if let Some(code) = code {
            return Ok(code);
        }
        return Err(format!("{message} (no exit code given)"));
    }
    Err(message)
}

/// The `streamType`s to open for `req`, in client-go's order.
pub fn stream_types(req: &StreamRequest) -> Vec<&'static str> {
    let mut types = vec!["error"];
    if req.stdin {
        types.push("stdin");
    }
    if req.stdout {
        types.push("stdout");
    }
    if req.stderr && !req.tty {
        types.push("stderr");
    }
    if req.tty {
        types.push("resize");
    }
    types
}

/// A stream's incoming data as an [`AsyncRead`]; EOF once the peer
/// half-closed it (or the connection ended).
struct StreamReader {
    incoming: mpsc::UnboundedReceiver<Bytes>,
    pending: Bytes,
}

impl AsyncRead for StreamReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.pending.is_empty() {
            match self.incoming.poll_recv(cx) {
                Poll::Ready(Some(b)) => self.pending = b,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.pending.len().min(buf.remaining());
        let chunk = self.pending.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

/// Reads the upgrade response head byte by byte, so that no SPDY frame
/// after it is consumed; then, for an error, up to `Content-Length` bytes
/// of body.
async fn read_response(tcp: &mut tokio::net::TcpStream) -> Result<(String, String), String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_RESPONSE_HEAD {
            return Err("the runtime's streaming server sent an oversized response".into());
        }
        match tcp.read(&mut byte).await {
            Ok(0) => {
                return Err("the runtime's streaming server closed the connection".into());
            }
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(format!("reading the runtime's upgrade response: {e}")),
        }
    }
    head.truncate(head.len() - 4);
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut body = String::new();
    if !head.starts_with("HTTP/1.1 101") && !head.starts_with("HTTP/1.0 101") {
        let len = head
            .split("\r\n")
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0)
            .min(MAX_RESPONSE_HEAD);
        let mut b = vec![0u8; len];
        if tcp.read_exact(&mut b).await.is_ok() {
            body = String::from_utf8_lossy(&b).into_owned();
        }
    }
    Ok((head, body))
}

/// Connects to the runtime's streaming `url` for `req` and returns the
/// remote process as a [`LocalStream`]. Dropping the stream (and its
/// exit future) closes the connection, which ends the runtime's session.
pub async fn connect(url: &str, req: &StreamRequest) -> Result<LocalStream, String> {
    let (authority, path) = parse_url(url)?;
    let setup = async {
        let mut tcp = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| {
                format!("connecting to the runtime's streaming server {authority}: {e}")
            })?;
        tcp.write_all(upgrade_request(&authority, &path).as_bytes())
            .await
            .map_err(|e| format!("writing to the runtime's streaming server: {e}"))?;
        let (head, body) = read_response(&mut tcp).await?;
        check_upgrade_response(&head, &body)?;
        let conn = Connection::client(tcp);
        let mut streams = Vec::new();
        for t in stream_types(req) {
            let s = conn
                .open_stream(vec![("streamtype".to_string(), t.to_string())])
                .await
                .map_err(|e| format!("opening the {t} stream to the runtime: {e}"))?;
            streams.push((t, s));
        }
        Ok::<_, String>((conn, streams))
    };
    let (conn, streams) = tokio::time::timeout(CONNECT_TIMEOUT, setup)
        .await
        .map_err(|_| format!("timed out connecting to the runtime's streaming server {url}"))??;
    let mut local = LocalStream {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
        exit: Box::pin(async { Ok(0) }),
    };
    let mut error = None;
    for (t, s) in streams {
        let spdy::Stream {
            incoming, writer, ..
        } = s;
        let reader = || {
            Box::pin(StreamReader {
                incoming,
                pending: Bytes::new(),
            }) as Reader
        };
        match t {
            "error" => error = Some(reader()),
            "stdout" => local.stdout = Some(reader()),
            "stderr" => local.stderr = Some(reader()),
            "stdin" => {
                // Our writes go through a pipe to a task that forwards
                // them; its EOF (the client closed stdin) half-closes the
                // stream, which the runtime passes on as the process's EOF.
                let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; spdy::DATA_CHUNK];
                    loop {
                        match theirs.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if writer.write(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    writer.close().await;
                });
                local.stdin = Some(Box::pin(ours) as Writer);
            }
            "resize" => {
                let (tx, mut rx) = mpsc::unbounded_channel::<TerminalSize>();
                tokio::spawn(async move {
                    while let Some(size) = rx.recv().await {
                        let Ok(json) = serde_json::to_vec(&size) else {
                            continue;
                        };
                        if writer.write(&json).await.is_err() {
                            return;
                        }
                    }
                });
                local.resize = Some(tx);
            }
            // `stream_types` opens no other.
            _ => {}
        }
    }
    let Some(mut error) = error else {
        return Err("no error stream to the runtime".into());
    };
    local.exit = Box::pin(async move {
        let mut content = Vec::new();
        let read = error.read_to_end(&mut content).await;
        // The connection lives until the runtime reported the exit.
        drop(conn);
        read.map_err(|e| format!("reading the exit status from the runtime: {e}"))?;
        exit_code(&content)
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_split_into_address_and_path() {
        let ok = |u: &str| parse_url(u).unwrap();
        assert_eq!(
            ok("http://127.0.0.1:35697/exec/Ab_c"),
            ("127.0.0.1:35697".into(), "/exec/Ab_c".into())
        );
        assert_eq!(
            ok("http://[::1]:10010/attach/x?y=1"),
            ("[::1]:10010".into(), "/attach/x?y=1".into())
        );
        assert_eq!(ok("http://localhost"), ("localhost:80".into(), "/".into()));
        for bad in [
            "https://127.0.0.1:1/exec/a",
            "/exec/a",
            "http:///exec",
            "http://u@h/x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_upgrade_request_asks_for_spdy_and_v4() {
        let r = upgrade_request("127.0.0.1:1", "/exec/t");
        assert!(
            r.starts_with("POST /exec/t HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"),
            "{r}"
        );
        for h in [
            "Connection: Upgrade\r\n",
            "Upgrade: SPDY/3.1\r\n",
            "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n",
        ] {
            assert!(r.contains(h), "{h}");
        }
        assert!(r.ends_with("\r\n\r\n"));
    }

    #[test]
    fn upgrade_responses_are_checked() {
        let good = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io";
        assert_eq!(check_upgrade_response(good, ""), Ok(()));
        let cases = [
            (
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0",
                "",
                "404 Not Found",
            ),
            (
                "HTTP/1.1 400 Bad Request",
                "invalid token\n",
                "invalid token",
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket",
                "",
                "not SPDY/3.1",
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1",
                "",
                "does not speak v4.channel.k8s.io",
            ),
        ];
        for (head, body, want) in cases {
            let err = check_upgrade_response(head, body).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn statuses_map_to_exit_codes() {
        let failed = |code: &str| {
            json!({
                "metadata": {}, "status": "Failure",
                "message": format!("command terminated with non-zero exit code: exit status {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code}]},
            })
            .to_string()
        };
        assert_eq!(exit_code(b""), Ok(0));
        assert_eq!(exit_code(br#"{"metadata":{},"status":"Success"}"#), Ok(0));
        assert_eq!(exit_code(failed("3").as_bytes()), Ok(3));
        assert_eq!(exit_code(failed("137").as_bytes()), Ok(137));
        assert!(exit_code(failed("x").as_bytes())
            .unwrap_err()
            .contains("no exit code"));
        let internal = json!({
            "status": "Failure", "reason": "InternalError",
            "message": "executable file not found in $PATH",
        });
        assert_eq!(
            exit_code(internal.to_string().as_bytes()),
            Err("executable file not found in $PATH".into())
        );
        assert_eq!(exit_code(b"plain trouble\n"), Err("plain trouble".into()));
    }

    #[test]
    fn streams_are_those_the_request_asks_for() {
        let req = |stdin, stdout, stderr, tty| StreamRequest {
            stdin,
            stdout,
            stderr,
            tty,
            ..Default::default()
        };
        assert_eq!(
            stream_types(&req(false, true, true, false)),
            ["error", "stdout", "stderr"]
        );
        assert_eq!(
            stream_types(&req(true, true, false, true)),
            ["error", "stdin", "stdout", "resize"]
        );
        assert_eq!(
            stream_types(&req(true, false, false, false)),
            ["error", "stdin"]
        );
    }

    /// The bridge against this module's own SPDY server, playing the
    /// runtime: the upgrade, the streams, stdin to stdout, resizes, the
    /// exit status.
    #[tokio::test]
    async fn a_remote_process_looks_like_a_local_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let runtime = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                tcp.read_exact(&mut b).await.unwrap();
                head.push(b[0]);
            }
            let head = String::from_utf8(head).unwrap();
            assert!(head.starts_with("POST /exec/token HTTP/1.1\r\n"), "{head}");
            tcp.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n").await.unwrap();
            let mut conn = Connection::serve(tcp);
            let mut by_type = std::collections::HashMap::new();
            for _ in 0..4 {
                let s = conn.streams.recv().await.unwrap();
                by_type.insert(s.stream_type().to_string(), s);
            }
            let mut resize = by_type.remove("resize").unwrap();
            assert_eq!(
                resize.incoming.recv().await.unwrap(),
                Bytes::from_static(br#"{"Width":80,"Height":24}"#)
            );
            let mut stdin = by_type.remove("stdin").unwrap();
            let stdout = by_type.remove("stdout").unwrap();
            while let Some(d) = stdin.incoming.recv().await {
                stdout.writer.write(&d).await.unwrap();
            }
            stdout.writer.close().await;
            let error = by_type.remove("error").unwrap();
            let status = crate::streaming::remotecommand::exit_status(&Ok(3)).to_string();
            error.writer.write(status.as_bytes()).await.unwrap();
            error.writer.close().await;
            conn.shutdown().await;
        });
        let req = StreamRequest {
            stdin: true,
            stdout: true,
            tty: true,
            ..Default::default()
        };
        let mut p = connect(&format!("http://{addr}/exec/token"), &req)
            .await
            .unwrap();
        assert!(p.stderr.is_none());
        p.resize
            .as_ref()
            .unwrap()
            .send(TerminalSize {
                width: 80,
                height: 24,
            })
            .unwrap();
        let mut stdin = p.stdin.take().unwrap();
        stdin.write_all(b"echo me").await.unwrap();
        drop(stdin);
        let mut out = String::new();
        p.stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert_eq!(out, "echo me");
        assert_eq!(p.exit.await, Ok(3));
        runtime.await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_upgrade_is_an_error_with_the_runtimes_words() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\n\r\nunknown token")
                .await;
        });
        let req = StreamRequest {
            stdout: true,
            ..Default::default()
        };
        let err = connect(&format!("http://{addr}/exec/x"), &req)
            .await
            .err()
            .unwrap();
        assert!(
            err.contains("404") && err.contains("unknown token"),
            "{err}"
        );
    }
}
