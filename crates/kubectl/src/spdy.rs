//! The client half of SPDY/3.1 that `tug port-forward` needs (client-go's
//! `httpstream/spdy` over an `Upgrade: SPDY/3.1` connection): opening
//! streams with `SYN_STREAM` and waiting for the `SYN_REPLY`, data frames
//! both ways with `FIN` half-closes, `RST_STREAM`, answering the server's
//! `PING`s, and `GOAWAY`.
//!
//! Header blocks are zlib-compressed as one stream per direction. We send
//! ours without SPDY's preset dictionary (a zlib stream says in its header
//! whether it uses one, and both spdystream and our kubelet read either);
//! the server's header blocks are never needed by port-forward, so they
//! are skipped rather than inflated. There is no flow control, as in
//! spdystream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// `RST_STREAM` status CANCEL.
const CANCEL: u32 = 5;
/// Largest data frame we send (spdystream's chunking is similar).
const CHUNK: usize = 32 * 1024;
/// Largest frame we accept from the server.
const MAX_FRAME: usize = 1 << 24;
/// client-go's stream creation timeout.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Frames the writer task sends, in order.
enum Out {
    Syn {
        id: u32,
        headers: Vec<(String, String)>,
    },
    Data {
        id: u32,
        fin: bool,
        data: Bytes,
    },
    Rst {
        id: u32,
    },
    Ping(u32),
}

/// The uncompressed header block of SPDY/3 (lower-case names).
pub fn header_block(headers: &[(String, String)]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (k, v) in headers {
        b.extend_from_slice(&(k.len() as u32).to_be_bytes());
        b.extend_from_slice(k.to_ascii_lowercase().as_bytes());
        b.extend_from_slice(&(v.len() as u32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
    }
    b
}

/// A control frame: version, type, flags, 24-bit length, payload.
pub fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// A data frame: 31-bit stream id, flags, 24-bit length, data.
pub fn data_frame(id: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    f.push(if fin { FLAG_FIN } else { 0 });
    f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(data);
    f
}

/// Compress a header block as the next part of the connection's zlib
/// stream (sync flush: the server can inflate it at once).
fn compress(z: &mut Compress, plain: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(plain.len() + 64);
    let mut pos = 0;
    loop {
        out.reserve(plain.len() + 64);
        let before = z.total_in();
        z.compress_vec(&plain[pos..], &mut out, FlushCompress::Sync)
            .map_err(|e| format!("compressing headers: {e}"))?;
        pos += (z.total_in() - before) as usize;
        // The flush is complete once output space was left over.
        if pos >= plain.len() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

/// A frame read from the server, as far as a client cares.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Data { id: u32, fin: bool, data: Bytes },
    Reply { id: u32, fin: bool },
    Reset { id: u32 },
    Ping(u32),
    GoAway,
    Other,
}

/// Parse one frame from its 8-byte head and payload.
pub fn parse_frame(head: [u8; 8], payload: Bytes) -> Frame {
    let flags = head[4];
    let fin = flags & FLAG_FIN != 0;
    if head[0] & 0x80 == 0 {
        let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
        return Frame::Data {
            id,
            fin,
            data: payload,
        };
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let word = |i: usize| {
        payload
            .get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    match (kind, word(0)) {
        (SYN_REPLY, Some(id)) => Frame::Reply {
            id: id & 0x7fff_ffff,
            fin,
        },
        (RST_STREAM, Some(id)) => Frame::Reset {
            id: id & 0x7fff_ffff,
        },
        (PING, Some(id)) => Frame::Ping(id),
        (GOAWAY, _) => Frame::GoAway,
        _ => Frame::Other,
    }
}

#[derive(Default)]
struct State {
    next_id: u32,
    open: HashMap<u32, mpsc::UnboundedSender<Bytes>>,
    replies: HashMap<u32, oneshot::Sender<Result<(), String>>>,
    ended: bool,
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A client connection.
pub struct Connection {
    out: mpsc::Sender<Out>,
    state: Arc<Mutex<State>>,
    closed: watch::Receiver<bool>,
}

/// One stream: what the server sends (the channel ends at its `FIN` or
/// reset) and a handle to write.
pub struct Stream {
    pub id: u32,
    pub incoming: mpsc::UnboundedReceiver<Bytes>,
    pub writer: StreamWriter,
}

/// Writes to one stream; cheap to clone.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
}

impl StreamWriter {
    /// Send bytes; fails once the connection is gone.
    pub async fn write(&self, data: &[u8]) -> Result<(), ()> {
        for chunk in data.chunks(CHUNK) {
            let f = Out::Data {
                id: self.id,
                fin: false,
                data: Bytes::copy_from_slice(chunk),
            };
            self.out.send(f).await.map_err(|_| ())?;
        }
        Ok(())
    }

    /// Half-close: the server reads EOF.
    pub async fn close(&self) {
        let f = Out::Data {
            id: self.id,
            fin: true,
            data: Bytes::new(),
        };
        let _ = self.out.send(f).await;
    }

    /// Reset the stream (both directions end).
    pub async fn reset(&self) {
        let _ = self.out.send(Out::Rst { id: self.id }).await;
    }
}

impl Connection {
    /// Run the client side on an upgraded connection.
    pub fn client<T>(io: T) -> Connection
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(io);
        let (out_tx, mut out_rx) = mpsc::channel::<Out>(256);
        let state = Arc::new(Mutex::new(State {
            next_id: 1,
            ..State::default()
        }));
        let (closed_tx, closed) = watch::channel(false);
        let closed_tx = Arc::new(closed_tx);
        let writer_closed = closed_tx.clone();
        tokio::spawn(async move {
            let mut z = Compress::new(Compression::default(), true);
            while let Some(o) = out_rx.recv().await {
                let bytes = match o {
                    Out::Syn { id, headers } => {
                        let Ok(block) = compress(&mut z, &header_block(&headers)) else {
                            break;
                        };
                        let mut p = Vec::with_capacity(10 + block.len());
                        p.extend_from_slice(&id.to_be_bytes());
                        p.extend_from_slice(&0u32.to_be_bytes());
                        p.extend_from_slice(&[0, 0]);
                        p.extend_from_slice(&block);
                        control_frame(SYN_STREAM, 0, &p)
                    }
                    Out::Data { id, fin, data } => data_frame(id, fin, &data),
                    Out::Rst { id } => {
                        let mut p = id.to_be_bytes().to_vec();
                        p.extend_from_slice(&CANCEL.to_be_bytes());
                        control_frame(RST_STREAM, 0, &p)
                    }
                    Out::Ping(id) => control_frame(PING, 0, &id.to_be_bytes()),
                };
                if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
            let _ = writer_closed.send(true);
        });
        let reader_state = state.clone();
        let pong = out_tx.clone();
        tokio::spawn(async move {
            loop {
                let mut head = [0u8; 8];
                if rd.read_exact(&mut head).await.is_err() {
                    break;
                }
                let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
                if len > MAX_FRAME {
                    break;
                }
                let mut payload = vec![0u8; len];
                if rd.read_exact(&mut payload).await.is_err() {
                    break;
                }
                match parse_frame(head, payload.into()) {
                    Frame::Data { id, fin, data } => {
                        let mut s = lock(&reader_state);
                        if let Some(tx) = s.open.get(&id) {
                            if !data.is_empty() {
                                let _ = tx.send(data);
                            }
                        }
                        if fin {
                            s.open.remove(&id);
                        }
                    }
                    Frame::Reply { id, fin } => {
                        let mut s = lock(&reader_state);
                        if let Some(tx) = s.replies.remove(&id) {
                            let _ = tx.send(Ok(()));
                        }
                        if fin {
                            s.open.remove(&id);
                        }
                    }
                    Frame::Reset { id } => {
                        let mut s = lock(&reader_state);
                        s.open.remove(&id);
                        if let Some(tx) = s.replies.remove(&id) {
                            let _ = tx.send(Err(format!("stream {id} was reset")));
                        }
                    }
                    // Pings the server started (even ids) are echoed.
                    Frame::Ping(id) if id % 2 == 0 => {
                        let _ = pong.send(Out::Ping(id)).await;
                    }
                    Frame::GoAway => break,
                    Frame::Ping(_) | Frame::Other => {}
                }
            }
            let mut s = lock(&reader_state);
            s.ended = true;
            s.open.clear();
            s.replies.clear();
            drop(s);
            let _ = closed_tx.send(true);
        });
        Connection {
            out: out_tx,
            state,
            closed,
        }
    }

    /// Open a stream with these headers and wait for the server's reply.
    pub async fn open_stream(&self, headers: Vec<(String, String)>) -> Result<Stream, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        let id = {
            let mut s = lock(&self.state);
            if s.ended {
                return Err("the connection is closed".into());
            }
            let id = s.next_id;
            s.next_id += 2;
            s.open.insert(id, tx);
            s.replies.insert(id, reply_tx);
            id
        };
        if self.out.send(Out::Syn { id, headers }).await.is_err() {
            return Err("the connection is closed".into());
        }
        match tokio::time::timeout(REPLY_TIMEOUT, reply_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err("the connection closed while opening a stream".into()),
            Err(_) => {
                lock(&self.state).replies.remove(&id);
                return Err(format!("timed out waiting for a reply to stream {id}"));
            }
        }
        Ok(Stream {
            id,
            incoming: rx,
            writer: StreamWriter {
                id,
                out: self.out.clone(),
            },
        })
    }

    /// Resolves once the server's side of the connection ended.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.clone();
        async move {
            let _ = rx.wait_for(|done| *done).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    #[test]
    fn frames_encode_as_spdy3() {
        assert_eq!(
            control_frame(PING, 0, &7u32.to_be_bytes()),
            vec![0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]
        );
        assert_eq!(
            data_frame(3, true, b"hi"),
            vec![0, 0, 0, 3, 1, 0, 0, 2, b'h', b'i']
        );
    }

    #[test]
    fn frames_parse() {
        let head = |b: &[u8]| -> [u8; 8] { b.try_into().unwrap() };
        let cases = [
            (
                data_frame(5, false, b"abc"),
                Frame::Data {
                    id: 5,
                    fin: false,
                    data: Bytes::from_static(b"abc"),
                },
            ),
            (
                control_frame(SYN_REPLY, FLAG_FIN, &[0, 0, 0, 1, 9, 9]),
                Frame::Reply { id: 1, fin: true },
            ),
            (
                control_frame(RST_STREAM, 0, &[0, 0, 0, 3, 0, 0, 0, 5]),
                Frame::Reset { id: 3 },
            ),
            (control_frame(PING, 0, &[0, 0, 0, 2]), Frame::Ping(2)),
            (
                control_frame(GOAWAY, 0, &[0, 0, 0, 0, 0, 0, 0, 0]),
                Frame::GoAway,
            ),
            (control_frame(9, 0, &[0, 0, 0, 1, 0, 0, 0, 1]), Frame::Other),
            // A truncated reply is ignored rather than misread.
            (control_frame(SYN_REPLY, 0, &[0, 0]), Frame::Other),
        ];
        for (bytes, want) in cases {
            let got = parse_frame(head(&bytes[..8]), Bytes::copy_from_slice(&bytes[8..]));
            assert_eq!(got, want);
        }
    }

    #[test]
    fn header_blocks_inflate_one_after_another() {
        let mut z = Compress::new(Compression::default(), true);
        let mut d = Decompress::new(true);
        for id in ["0", "1"] {
            let headers = vec![
                ("streamType".to_string(), "data".to_string()),
                ("port".to_string(), "80".to_string()),
                ("requestID".to_string(), id.to_string()),
            ];
            let block = compress(&mut z, &header_block(&headers)).unwrap();
            let mut plain = Vec::with_capacity(4096);
            d.decompress_vec(&block, &mut plain, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(plain, header_block(&headers));
            // Names go lower-case on the wire.
            assert!(plain.windows(10).any(|w| w == b"streamtype"));
        }
    }
}
