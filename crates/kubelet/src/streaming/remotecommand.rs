//! exec and attach sessions (upstream's `kubelet/cri/streaming/remotecommand`
//! and client-go's `tools/remotecommand`): the process's pipes carried over
//! WebSocket channels or SPDY streams, its end reported as a
//! `metav1.Status` on the error channel/stream (protocol v4 and later):
//! `Success`, or `Failure` with reason `NonZeroExitCode` and an `ExitCode`
//! cause, from which kubectl takes its own exit code.

use std::future::Future;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::spdy;
use super::websocket as ws;
use crate::runtime::streaming::{LocalStream, Reader, TerminalSize, Writer};

/// How long the client may take to open its SPDY streams (upstream's
/// default stream creation timeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The error-channel Status for how the command ended: `Ok(exit code)` or
/// an error starting or running it.
pub fn exit_status(result: &Result<i32, String>) -> Value {
    match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => json!({
            "metadata": {},
            "status": "Failure",
            "message": e,
            "reason": "InternalError",
            "details": {"causes": [{"message": e}]},
            "code": 500,
        }),
    }
}

/// Decodes the resize stream: concatenated JSON `TerminalSize` objects
/// that may arrive cut anywhere. Returns the complete ones; `buf` keeps the
/// rest.
pub fn decode_sizes(buf: &mut Vec<u8>) -> Vec<TerminalSize> {
    let mut sizes = Vec::new();
    let mut consumed = 0;
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<TerminalSize>();
    loop {
        match it.next() {
            Some(Ok(s)) => {
                sizes.push(s);
                consumed = it.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(_)) => {
                // Garbage: drop what is buffered rather than stall.
                consumed = buf.len();
                break;
            }
            None => {
                consumed = buf.len();
                break;
            }
        }
    }
    buf.drain(..consumed);
    sizes
}

/// Copies `from` to `to` until EOF or either fails.
async fn pump<F, Fut>(mut from: Reader, mut to: F)
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !to(buf[..n].to_vec()).await {
                    return;
                }
            }
        }
    }
}

/// How long output may still flow after the command exited: a background
/// process it left may hold its pipes or terminal open for good (the shim
/// gives containers the same grace).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Waits for the command to exit and its output to be copied; output still
/// open [`OUTPUT_GRACE`] after the exit is abandoned.
async fn exit_and_output<E, P>(exit: E, pumps: P) -> Result<i32, String>
where
    E: Future<Output = Result<i32, String>>,
    P: Future<Output = ()>,
{
    tokio::pin!(exit, pumps);
    tokio::select! {
        code = &mut exit => {
            let _ = tokio::time::timeout(OUTPUT_GRACE, &mut pumps).await;
            code
        }
        _ = &mut pumps => exit.await,
    }
}

async fn write_stdin(stdin: &mut Option<Writer>, data: &[u8]) {
    if let Some(w) = stdin.as_mut() {
        if w.write_all(data).await.is_err() || w.flush().await.is_err() {
            *stdin = None;
        }
    }
}

/// Runs a session over a WebSocket with a channel protocol (v4 or v5).
/// `start` starts the process once the connection is up; its error goes
/// on the error channel.
pub async fn serve_websocket<S>(socket: ws::Socket, start: S)
where
    S: Future<Output = Result<LocalStream, String>>,
{
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(Message::Binary(m.into())).await.is_err() {
                return;
            }
        }
        let _ = sink.send(ws::close_message()).await;
        let _ = sink.close().await;
    });
    let local = match start.await {
        Ok(l) => l,
        Err(e) => {
            let status = exit_status(&Err(e)).to_string();
            let _ = tx.send(ws::frame(ws::ERROR, status.as_bytes())).await;
            drop(tx);
            let _ = writer.await;
            return;
        }
    };
    let LocalStream {
        mut stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = local;
    let reader = async move {
        let mut sizes = Vec::new();
        while let Some(Ok(m)) = source.next().await {
            let data = match m {
                Message::Binary(b) => b.to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            match ws::unframe(&data) {
                Some((ws::STDIN, d)) => write_stdin(&mut stdin, d).await,
                Some((ws::RESIZE, d)) => {
                    sizes.extend_from_slice(d);
                    for s in decode_sizes(&mut sizes) {
                        if let Some(r) = &resize {
                            let _ = r.send(s);
                        }
                    }
                }
                Some((ws::CLOSE, [ws::STDIN])) => stdin = None,
                _ => {}
            }
        }
    };
    let out = |channel: u8| {
        let tx = tx.clone();
        move |data: Vec<u8>| {
            let tx = tx.clone();
            async move { tx.send(ws::frame(channel, &data)).await.is_ok() }
        }
    };
    let work = async {
        let out_pump = async {
            if let Some(r) = stdout {
                pump(r, out(ws::STDOUT)).await;
            }
        };
        let err_pump = async {
            if let Some(r) = stderr {
                pump(r, out(ws::STDERR)).await;
            }
        };
        let code = exit_and_output(exit, async {
            tokio::join!(out_pump, err_pump);
        })
        .await;
        let status = exit_status(&code).to_string();
        let _ = tx.send(ws::frame(ws::ERROR, status.as_bytes())).await;
    };
    tokio::select! {
        _ = work => {}
        // The client went away: dropping the session kills the process.
        _ = reader => {}
    }
    drop(tx);
    let _ = writer.await;
}

/// The streams of a SPDY session, by `streamType`.
#[derive(Default)]
struct SpdyStreams {
    error: Option<spdy::Stream>,
    stdin: Option<spdy::Stream>,
    stdout: Option<spdy::Stream>,
    stderr: Option<spdy::Stream>,
    resize: Option<spdy::Stream>,
}

/// Runs a session over SPDY (protocol v4): waits for the streams the
/// request asks for, then starts the process.
pub async fn serve_spdy<S>(
    mut conn: spdy::Connection,
    want: crate::runtime::streaming::StreamRequest,
    start: S,
) where
    S: Future<Output = Result<LocalStream, String>>,
{
    let mut s = SpdyStreams::default();
    let expected = 1
        + usize::from(want.stdin)
        + usize::from(want.stdout)
        + usize::from(want.stderr && !want.tty)
        + usize::from(want.tty);
    let mut got = 0;
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while got < expected {
        let stream = tokio::select! {
            s = conn.streams.recv() => s,
            _ = &mut deadline => None,
        };
        let Some(stream) = stream else {
            tracing::debug!("exec: the client did not open its streams");
            conn.shutdown().await;
            return;
        };
        let slot = match stream.stream_type() {
            "error" => &mut s.error,
            "stdin" => &mut s.stdin,
            "stdout" => &mut s.stdout,
            "stderr" => &mut s.stderr,
            "resize" => &mut s.resize,
            other => {
                tracing::debug!(stream_type = other, "exec: unexpected stream");
                stream.writer.reset().await;
                continue;
            }
        };
        *slot = Some(stream);
        got += 1;
    }
    let Some(error) = s.error.take() else {
        conn.shutdown().await;
        return;
    };
    let local = match start.await {
        Ok(l) => l,
        Err(e) => {
            let status = exit_status(&Err(e)).to_string();
            let _ = error.writer.write(status.as_bytes()).await;
            error.writer.close().await;
            conn.shutdown().await;
            return;
        }
    };
    let LocalStream {
        mut stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = local;
    if let Some(mut st) = s.stdin.take() {
        tokio::spawn(async move {
            while let Some(d) = st.incoming.recv().await {
                write_stdin(&mut stdin, &d).await;
            }
            // EOF closes the process's stdin.
        });
    }
    if let (Some(mut rs), Some(resize)) = (s.resize.take(), resize) {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Some(d) = rs.incoming.recv().await {
                buf.extend_from_slice(&d);
                for size in decode_sizes(&mut buf) {
                    let _ = resize.send(size);
                }
            }
        });
    }
    let to_stream = |st: Option<spdy::Stream>| {
        let w = st.map(|s| s.writer);
        move |data: Vec<u8>| {
            let w = w.clone();
            async move {
                match &w {
                    Some(w) => w.write(&data).await.is_ok(),
                    None => true,
                }
            }
        }
    };
    let (out_w, err_w) = (
        s.stdout.as_ref().map(|s| s.writer.clone()),
        s.stderr.as_ref().map(|s| s.writer.clone()),
    );
    let mut out_sink = to_stream(s.stdout.take());
    let mut err_sink = to_stream(s.stderr.take());
    let work = async {
        let out_pump = async {
            if let Some(r) = stdout {
                pump(r, &mut out_sink).await;
            }
        };
        let err_pump = async {
            if let Some(r) = stderr {
                pump(r, &mut err_sink).await;
            }
        };
        let code = exit_and_output(exit, async {
            tokio::join!(out_pump, err_pump);
        })
        .await;
        // kubectl reads the error stream once stdout and stderr ended.
        for w in [&out_w, &err_w].into_iter().flatten() {
            w.close().await;
        }
        let status = exit_status(&code).to_string();
        let _ = error.writer.write(status.as_bytes()).await;
        error.writer.close().await;
    };
    let gone = conn.closed();
    tokio::select! {
        _ = work => {}
        _ = gone => {}
    }
    conn.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_upstreams() {
        assert_eq!(
            exit_status(&Ok(0)),
            json!({"metadata": {}, "status": "Success"})
        );
        let failed = exit_status(&Ok(3));
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"],
            json!([{"reason": "ExitCode", "message": "3"}])
        );
        let err = exit_status(&Err("exec \"nope\": No such file".into()));
        assert_eq!(err["status"], "Failure");
        assert_eq!(err["message"], "exec \"nope\": No such file");
    }

    #[tokio::test]
    async fn output_held_open_after_the_exit_is_abandoned_after_a_grace() {
        let start = std::time::Instant::now();
        let code = exit_and_output(async { Ok(5) }, std::future::pending()).await;
        assert_eq!(code, Ok(5));
        assert!(start.elapsed() >= OUTPUT_GRACE);
        // Output that ends first is waited for, then the exit.
        let code = exit_and_output(
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(0)
            },
            async {},
        )
        .await;
        assert_eq!(code, Ok(0));
    }

    #[test]
    fn resize_messages_may_arrive_in_pieces() {
        let size = |w, h| TerminalSize {
            width: w,
            height: h,
        };
        let mut buf = br#"{"Width":80,"Height":24}{"Width":1"#.to_vec();
        assert_eq!(decode_sizes(&mut buf), vec![size(80, 24)]);
        assert_eq!(buf, br#"{"Width":1"#.to_vec());
        buf.extend_from_slice(br#"00,"Height":50}"#);
        assert_eq!(decode_sizes(&mut buf), vec![size(100, 50)]);
        assert!(buf.is_empty());
        let mut junk = b"not json".to_vec();
        assert_eq!(decode_sizes(&mut junk), vec![]);
        assert!(junk.is_empty());
    }
}
