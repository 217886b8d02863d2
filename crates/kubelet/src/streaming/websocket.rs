//! WebSocket for the streaming API (upstream's `httpstream/wsstream`):
//! kubectl 1.30+ runs exec/attach over `v5.channel.k8s.io` (each binary
//! message is a channel byte then data: 0 stdin, 1 stdout, 2 stderr,
//! 3 error, 4 resize; v5 adds 255 "close": `[255, channel]` half-closes a
//! channel), and 1.31+ tunnels port-forward's SPDY through binary messages
//! (`SPDY/3.1+portforward.k8s.io`, no channel byte).

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: `[CLOSE, channel]` half-closes `channel`.
pub const CLOSE: u8 = 255;

pub type Socket =
    tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455).
pub fn accept_key(key: &str) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// The first protocol the client offers (comma-separated, possibly over
/// several headers) that the server supports, as upstream negotiates.
pub fn negotiate<'a>(offered: &[String], supported: &[&'a str]) -> Option<&'a str> {
    offered
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .find_map(|p| supported.iter().find(|s| **s == p).copied())
}

/// A channel message.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(data.len() + 1);
    m.push(channel);
    m.extend_from_slice(data);
    m
}

/// Splits a channel message; an empty message has no channel.
pub fn unframe(message: &[u8]) -> Option<(u8, &[u8])> {
    message.split_first().map(|(c, d)| (*c, d))
}

/// A normal close frame.
pub fn close_message() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// Turns a WebSocket into a byte stream: binary messages in, each write
/// out as one binary message (client-go's `TunnelingConnection`).
pub fn tunnel(ws: Socket) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut sink, mut source) = ws.split();
    tokio::spawn(async move {
        let inbound = async {
            while let Some(Ok(m)) = source.next().await {
                let bytes = match m {
                    Message::Binary(b) => b,
                    Message::Close(_) => break,
                    _ => continue,
                };
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        };
        let outbound = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let m = Message::Binary(buf[..n].to_vec().into());
                        if sink.send(m).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = sink.send(close_message()).await;
            let _ = sink.close().await;
        };
        // Either side ending ends the tunnel.
        tokio::select! {
            _ = inbound => {}
            _ = outbound => {}
        }
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_negotiated_in_the_clients_order() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let supported = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["v5.channel.k8s.io"], Some("v5.channel.k8s.io")),
            (
                &["v4.channel.k8s.io, v5.channel.k8s.io"],
                Some("v4.channel.k8s.io"),
            ),
            (
                &["base64.channel.k8s.io", "v4.channel.k8s.io"],
                Some("v4.channel.k8s.io"),
            ),
            (&["channel.k8s.io"], None),
            (&[], None),
        ];
        for (offered, want) in cases {
            assert_eq!(negotiate(&s(offered), &supported), *want, "{offered:?}");
        }
    }

    #[test]
    fn channel_messages() {
        assert_eq!(frame(STDOUT, b"hi"), vec![1, b'h', b'i']);
        assert_eq!(unframe(&[3, b'{']), Some((ERROR, &b"{"[..])));
        assert_eq!(unframe(&[CLOSE, STDIN]), Some((CLOSE, &[STDIN][..])));
        assert_eq!(unframe(&[]), None);
    }

    #[test]
    fn the_accept_key_is_rfc6455s() {
        // The example of RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
