//! SPDY/3 framing as Kubernetes uses it (`Upgrade: SPDY/3.1`, the moby
//! `spdystream` library behind client-go's `httpstream/spdy`): kubectl
//! before 1.30 runs exec/attach over it, and every kubectl runs
//! port-forward over it (1.31+ inside WebSocket binary messages).
//!
//! - [`Frame`] encodes and decodes the frames (control frames: version 3,
//!   type, flags, 24-bit length; data frames: 31-bit stream id, flags,
//!   24-bit length);
//! - [`HeaderCodec`] is the per-connection header compression: one zlib
//!   stream per direction, primed with SPDY/3's dictionary and flushed with
//!   a sync flush after each header block;
//! - [`Connection`] runs either side over any byte stream. As a server it
//!   replies to each `SYN_STREAM` at once (as upstream's server does) and
//!   hands the stream to the caller; as a client ([`Connection::client`],
//!   what the kubelet is towards a CRI runtime's streaming server) it
//!   opens odd-numbered streams and waits for their `SYN_REPLY`
//!   ([`Connection::open_stream`]; what `tug port-forward` is towards
//!   the API server). Either side echoes the peer's `PING`s
//!   and writes frames from one task.
//!
//! spdystream does not do SPDY/3.1 flow control, so neither do we:
//! `WINDOW_UPDATE` and `SETTINGS` are read and ignored.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

const VERSION: u16 = 3;
const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status: the stream was cancelled.
pub const RST_CANCEL: u32 = 5;

/// The largest frame payload accepted: more than any header block or data
/// chunk a Kubernetes client sends, small enough to bound memory.
pub const MAX_FRAME: usize = 16 << 20;
/// Data written is cut into frames of at most this many bytes.
pub const DATA_CHUNK: usize = 32 * 1024;

/// Name/value pairs of a header block, names lower-case as SPDY/3 wants.
pub type Headers = Vec<(String, String)>;

/// The value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// Entries: (flags, id, value).
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping(u32),
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
}

/// SPDY/3's header compression dictionary (draft 3, section 2.6.10.1):
/// length-prefixed common header names and values, then a run of common
/// status codes, dates, MIME types and tokens. Built from readable parts;
/// the bytes must match the peer's exactly or its inflate fails.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410",
            "411412413414415416417502504505",
            "203 Non-Authoritative Information",
            "204 No Content",
            "301 Moved Permanently",
            "400 Bad Request",
            "401 Unauthorized",
            "403 Forbidden",
            "404 Not Found",
            "500 Internal Server Error",
            "501 Not Implemented",
            "503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec ",
            "00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,",
            "application/xml,application/xhtml+xml,text/plain,",
            "text/javascript,publicprivatemax-age=gzip,deflate,sdch",
            "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut d = Vec::with_capacity(1423);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

/// The two zlib streams of a connection's header blocks.
pub struct HeaderCodec {
    deflate: Compress,
    inflate: Decompress,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCodec {
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // Priming a fresh deflate stream cannot fail.
        let _ = deflate.set_dictionary(dictionary());
        HeaderCodec {
            deflate,
            inflate: Decompress::new(true),
        }
    }

    /// The compressed header block of `headers`.
    pub fn encode(&mut self, headers: &Headers) -> Result<Vec<u8>, String> {
        let mut plain = Vec::new();
        plain.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            plain.extend_from_slice(&(k.len() as u32).to_be_bytes());
            plain.extend_from_slice(k.to_ascii_lowercase().as_bytes());
            plain.extend_from_slice(&(v.len() as u32).to_be_bytes());
            plain.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(plain.len() + 64);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&plain[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| format!("compressing headers: {e}"))?;
            pos += (self.deflate.total_in() - before) as usize;
            // A sync flush is complete once output space was left over.
            if pos >= plain.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// The headers of a compressed header block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, String> {
        let mut plain = Vec::with_capacity(block.len() * 4 + 256);
        let mut pos = 0;
        loop {
            if plain.capacity() - plain.len() < 256 {
                plain.reserve(4096);
            }
            if plain.len() > MAX_FRAME {
                return Err("header block too large".into());
            }
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let result =
                self.inflate
                    .decompress_vec(&block[pos..], &mut plain, FlushDecompress::Sync);
            pos += (self.inflate.total_in() - in_before) as usize;
            match result {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(dictionary())
                        .map_err(|e| format!("header dictionary: {e}"))?;
                    continue;
                }
                Err(e) => return Err(format!("decompressing headers: {e}")),
            }
            let progressed =
                self.inflate.total_in() != in_before || self.inflate.total_out() != out_before;
            if (pos >= block.len() && plain.len() < plain.capacity()) || !progressed {
                break;
            }
        }
        parse_header_block(&plain)
    }
}

/// Parses an uncompressed header block; values with NULs are several
/// values of one name.
pub fn parse_header_block(b: &[u8]) -> Result<Headers, String> {
    let mut r = Reader { b, pos: 0 };
    let n = r.u32()?;
    let mut headers = Vec::new();
    for _ in 0..n {
        let k = r.string()?;
        let v = r.string()?;
        for part in v.split('\0') {
            headers.push((k.to_ascii_lowercase(), part.to_string()));
        }
    }
    Ok(headers)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or("truncated SPDY frame")?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "header is not UTF-8".to_string())
    }
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out
}

impl Frame {
    /// The frame's bytes; header blocks go through `codec`.
    pub fn encode(&self, codec: &mut HeaderCodec) -> Result<Vec<u8>, String> {
        let id = |i: &u32| (i & 0x7fff_ffff).to_be_bytes();
        Ok(match self {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let mut p = Vec::new();
                p.extend_from_slice(&id(stream_id));
                p.extend_from_slice(&id(associated_to));
                p.push((priority & 0x7) << 5);
                p.push(0);
                p.extend_from_slice(&codec.encode(headers)?);
                control(TYPE_SYN_STREAM, *flags, &p)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let mut p = id(stream_id).to_vec();
                p.extend_from_slice(&codec.encode(headers)?);
                control(TYPE_SYN_REPLY, *flags, &p)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let mut p = id(stream_id).to_vec();
                p.extend_from_slice(&codec.encode(headers)?);
                control(TYPE_HEADERS, *flags, &p)
            }
            Frame::RstStream { stream_id, status } => {
                let mut p = id(stream_id).to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(TYPE_RST_STREAM, 0, &p)
            }
            Frame::Settings { flags, entries } => {
                let mut p = (entries.len() as u32).to_be_bytes().to_vec();
                for (f, i, v) in entries {
                    p.push(*f);
                    p.extend_from_slice(&i.to_be_bytes()[1..]);
                    p.extend_from_slice(&v.to_be_bytes());
                }
                control(TYPE_SETTINGS, *flags, &p)
            }
            Frame::Ping(n) => control(TYPE_PING, 0, &n.to_be_bytes()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                let mut p = id(last_good_stream_id).to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(TYPE_GOAWAY, 0, &p)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut p = id(stream_id).to_vec();
                p.extend_from_slice(&id(delta));
                control(TYPE_WINDOW_UPDATE, 0, &p)
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() >= 1 << 24 {
                    return Err("data frame too large".into());
                }
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&id(stream_id));
                out.push(*flags);
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
                out
            }
        })
    }

    /// Decodes one frame from its 8-byte head and payload. `Ok(None)`: a
    /// control frame of a type this side ignores (NOOP, CREDENTIAL).
    pub fn decode(
        head: &[u8; 8],
        payload: &[u8],
        codec: &mut HeaderCodec,
    ) -> Result<Option<Frame>, String> {
        let flags = head[4];
        let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if head[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: word & 0x7fff_ffff,
                flags,
                data: Bytes::copy_from_slice(payload),
            }));
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(format!("unsupported SPDY version {version}"));
        }
        let kind = (word & 0xffff) as u16;
        let mut r = Reader { b: payload, pos: 0 };
        let frame = match kind {
            TYPE_SYN_STREAM => {
                let stream_id = r.u32()? & 0x7fff_ffff;
                let associated_to = r.u32()? & 0x7fff_ffff;
                let pri = r.take(2)?[0] >> 5;
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority: pri,
                    flags,
                    headers: codec.decode(&payload[r.pos..])?,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                let stream_id = r.u32()? & 0x7fff_ffff;
                let headers = codec.decode(&payload[r.pos..])?;
                if kind == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            TYPE_RST_STREAM => Frame::RstStream {
                stream_id: r.u32()? & 0x7fff_ffff,
                status: r.u32()?,
            },
            TYPE_SETTINGS => {
                let n = r.u32()?;
                let mut entries = Vec::new();
                for _ in 0..n {
                    let w = r.u32()?;
                    entries.push(((w >> 24) as u8, w & 0xff_ffff, r.u32()?));
                }
                Frame::Settings { flags, entries }
            }
            TYPE_PING => Frame::Ping(r.u32()?),
            TYPE_GOAWAY => Frame::GoAway {
                last_good_stream_id: r.u32()? & 0x7fff_ffff,
                status: r.u32().unwrap_or(0),
            },
            TYPE_WINDOW_UPDATE => Frame::WindowUpdate {
                stream_id: r.u32()? & 0x7fff_ffff,
                delta: r.u32()? & 0x7fff_ffff,
            },
            _ => return Ok(None),
        };
        Ok(Some(frame))
    }
}

/// Reads one frame; `Ok(None)` at a clean end of the byte stream.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    codec: &mut HeaderCodec,
) -> Result<Option<Frame>, String> {
    loop {
        let mut head = [0u8; 8];
        match r.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Err(format!("SPDY frame of {len} bytes is too large"));
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(f) = Frame::decode(&head, &payload, codec)? {
            return Ok(Some(f));
        }
    }
}

/// A stream (opened by either side): its headers, what the peer sends on
/// it, and a handle to write to it.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    pub incoming: mpsc::UnboundedReceiver<Bytes>,
    pub writer: StreamWriter,
}

impl Stream {
    /// The `streamType` header.
    pub fn stream_type(&self) -> &str {
        header(&self.headers, "streamtype").unwrap_or("")
    }
}

enum Out {
    Frame(Frame),
    Shutdown,
}

/// Writes to one stream; cheap to clone.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
}

impl StreamWriter {
    /// Sends `data` in frames of at most [`DATA_CHUNK`] bytes. Fails once
    /// the connection is gone.
    pub async fn write(&self, data: &[u8]) -> Result<(), ()> {
        for chunk in data.chunks(DATA_CHUNK) {
            self.send(Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: Bytes::copy_from_slice(chunk),
            })
            .await?;
        }
        Ok(())
    }

    /// Half-closes the stream: the peer reads EOF.
    pub async fn close(&self) {
        let _ = self
            .send(Frame::Data {
                stream_id: self.id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            })
            .await;
    }

    /// Resets the stream (both directions end).
    pub async fn reset(&self) {
        let _ = self
            .send(Frame::RstStream {
                stream_id: self.id,
                status: RST_CANCEL,
            })
            .await;
    }

    async fn send(&self, f: Frame) -> Result<(), ()> {
        self.out.send(Out::Frame(f)).await.map_err(|_| ())
    }
}

/// Which end of the connection this side is: clients open odd-numbered
/// streams and pings, servers even-numbered ones (SPDY/3 section 2.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

impl Role {
    /// The first id this side gives its own streams.
    fn first_stream_id(self) -> u32 {
        match self {
            Role::Client => 1,
            Role::Server => 2,
        }
    }

    /// Whether an id (stream or ping) was chosen by the peer.
    fn peers(self, id: u32) -> bool {
        (id % 2 == 1) == (self == Role::Server)
    }
}

/// How long [`Connection::open_stream`] waits for the peer's `SYN_REPLY`
/// (client-go's stream creation timeout).
pub const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The streams open on a connection, shared by the reader task and
/// [`Connection::open_stream`].
#[derive(Default)]
struct Streams {
    /// Where each open stream's incoming data goes.
    open: HashMap<u32, mpsc::UnboundedSender<Bytes>>,
    /// Streams this side opened that await the peer's `SYN_REPLY`.
    replies: HashMap<u32, tokio::sync::oneshot::Sender<Result<(), String>>>,
    next_id: u32,
    /// The peer's side ended: no stream can be opened any more.
    ended: bool,
}

type SharedStreams = std::sync::Arc<std::sync::Mutex<Streams>>;

fn lock(s: &SharedStreams) -> std::sync::MutexGuard<'_, Streams> {
    // A poisoned lock only means another task panicked mid-update; the
    // maps are still usable.
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// One side of a SPDY connection.
pub struct Connection {
    /// Streams the peer opened, each already replied to.
    pub streams: mpsc::UnboundedReceiver<Stream>,
    out: mpsc::Sender<Out>,
    shared: SharedStreams,
    reader: tokio::task::JoinHandle<()>,
    writer: Option<tokio::task::JoinHandle<()>>,
    closed: tokio::sync::watch::Receiver<bool>,
}

impl Connection {
    /// Serves SPDY on `io` (an upgraded HTTP connection or a WebSocket
    /// tunnel).
    pub fn serve<T>(io: T) -> Connection
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::start(io, Role::Server)
    }

    /// The client side on `io` (an upgraded HTTP connection): streams are
    /// opened with [`Connection::open_stream`].
    pub fn client<T>(io: T) -> Connection
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::start(io, Role::Client)
    }

    fn start<T>(io: T, role: Role) -> Connection
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(io);
        let (out_tx, mut out_rx) = mpsc::channel::<Out>(256);
        let writer = tokio::spawn(async move {
            let mut codec = HeaderCodec::new();
            while let Some(o) = out_rx.recv().await {
                let Out::Frame(f) = o else { break };
                let bytes = match f.encode(&mut codec) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!(error = %e, "encoding a SPDY frame");
                        continue;
                    }
                };
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
                // Write whatever else is queued before flushing.
                if out_rx.is_empty() && wr.flush().await.is_err() {
                    break;
                }
            }
            let _ = wr.flush().await;
            let _ = wr.shutdown().await;
        });
        let (streams_tx, streams_rx) = mpsc::unbounded_channel();
        let out = out_tx.clone();
        let (closed_tx, closed) = tokio::sync::watch::channel(false);
        let shared = SharedStreams::new(std::sync::Mutex::new(Streams {
            next_id: role.first_stream_id(),
            ..Default::default()
        }));
        let state = shared.clone();
        let reader = tokio::spawn(async move {
            let mut codec = HeaderCodec::new();
            loop {
                let frame = match read_frame(&mut rd, &mut codec).await {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "reading a SPDY frame");
                        break;
                    }
                };
                match frame {
                    Frame::SynStream {
                        stream_id,
                        flags,
                        headers,
                        ..
                    } => {
                        let reply = Frame::SynReply {
                            stream_id,
                            flags: 0,
                            headers: Vec::new(),
                        };
                        if out.send(Out::Frame(reply)).await.is_err() {
                            break;
                        }
                        let (tx, rx) = mpsc::unbounded_channel();
                        if flags & FLAG_FIN == 0 {
                            lock(&state).open.insert(stream_id, tx);
                        }
                        let stream = Stream {
                            id: stream_id,
                            headers,
                            incoming: rx,
                            writer: StreamWriter {
                                id: stream_id,
                                out: out.clone(),
                            },
                        };
                        if streams_tx.send(stream).is_err() {
                            break;
                        }
                    }
                    Frame::SynReply {
                        stream_id, flags, ..
                    } => {
                        let mut s = lock(&state);
                        if let Some(tx) = s.replies.remove(&stream_id) {
                            let _ = tx.send(Ok(()));
                        }
                        if flags & FLAG_FIN != 0 {
                            s.open.remove(&stream_id);
                        }
                    }
                    Frame::Data {
                        stream_id,
                        flags,
                        data,
                    } => {
                        let mut s = lock(&state);
                        if let Some(tx) = s.open.get(&stream_id) {
                            if !data.is_empty() {
                                let _ = tx.send(data);
                            }
                        }
                        if flags & FLAG_FIN != 0 {
                            s.open.remove(&stream_id);
                        }
                    }
                    Frame::RstStream { stream_id, status } => {
                        let mut s = lock(&state);
                        s.open.remove(&stream_id);
                        if let Some(tx) = s.replies.remove(&stream_id) {
                            let _ = tx.send(Err(format!(
                                "the peer refused stream {stream_id} (status {status})"
                            )));
                        }
                    }
                    Frame::Ping(n) => {
                        // Only the peer's pings get an echo; ours come back.
                        if role.peers(n) && out.send(Out::Frame(Frame::Ping(n))).await.is_err() {
                            break;
                        }
                    }
                    Frame::GoAway { .. } => break,
                    Frame::Headers {
                        stream_id, flags, ..
                    } => {
                        if flags & FLAG_FIN != 0 {
                            lock(&state).open.remove(&stream_id);
                        }
                    }
                    Frame::Settings { .. } | Frame::WindowUpdate { .. } => {}
                }
            }
            // Every stream's reader sees EOF; waiting openers fail.
            let mut s = lock(&state);
            s.open.clear();
            s.replies.clear();
            s.ended = true;
            drop(s);
            let _ = closed_tx.send(true);
        });
        Connection {
            streams: streams_rx,
            out: out_tx,
            shared,
            reader,
            writer: Some(writer),
            closed,
        }
    }

    /// Opens a stream with `headers` and waits for the peer's `SYN_REPLY`
    /// (at most [`REPLY_TIMEOUT`]), as client-go's `CreateStream` does.
    pub async fn open_stream(&self, headers: Headers) -> Result<Stream, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let id = {
            let mut s = lock(&self.shared);
            if s.ended {
                return Err("the connection is closed".into());
            }
            let id = s.next_id;
            if id > 0x7fff_ffff {
                return Err("no stream ids left on the connection".into());
            }
            s.next_id += 2;
            s.open.insert(id, tx);
            s.replies.insert(id, reply_tx);
            id
        };
        let syn = Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: headers.clone(),
        };
        if self.out.send(Out::Frame(syn)).await.is_err() {
            return Err("the connection is closed".into());
        }
        match tokio::time::timeout(REPLY_TIMEOUT, reply_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err("the connection closed while opening a stream".into()),
            Err(_) => {
                lock(&self.shared).replies.remove(&id);
                return Err(format!("timed out waiting for a reply to stream {id}"));
            }
        }
        Ok(Stream {
            id,
            headers,
            incoming: rx,
            writer: StreamWriter {
                id,
                out: self.out.clone(),
            },
        })
    }

    /// Resolves once the peer's side of the connection ended.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.clone();
        async move {
            let _ = rx.wait_for(|done| *done).await;
        }
    }

    /// Writes what is queued, then closes the connection.
    pub async fn shutdown(mut self) {
        let _ = self.out.send(Out::Shutdown).await;
        if let Some(w) = self.writer.take() {
            let _ = w.await;
        }
        self.reader.abort();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b"enq=0."));
    }

    #[test]
    fn frames_round_trip() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: h(&[
                    ("streamtype", "error"),
                    ("port", "8080"),
                    ("requestid", "0"),
                ]),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 2,
                flags: FLAG_FIN,
                headers: h(&[("streamtype", "stdout")]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::RstStream {
                stream_id: 5,
                status: RST_CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, 7, 65536)],
            },
            Frame::Ping(3),
            Frame::GoAway {
                last_good_stream_id: 9,
                status: 0,
            },
            Frame::Headers {
                stream_id: 1,
                flags: FLAG_FIN,
                headers: h(&[("a", "b")]),
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 1000,
            },
            Frame::Data {
                stream_id: 7,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 7,
                flags: 0,
                data: Bytes::new(),
            },
        ];
        // One codec per direction, as on a connection: the zlib state
        // carries over from block to block.
        let (mut tx, mut rx) = (HeaderCodec::new(), HeaderCodec::new());
        for f in frames {
            let bytes = f.encode(&mut tx).unwrap();
            let head: [u8; 8] = bytes[..8].try_into().unwrap();
            let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
            assert_eq!(len, bytes.len() - 8, "{f:?}");
            let back = Frame::decode(&head, &bytes[8..], &mut rx).unwrap();
            assert_eq!(back, Some(f));
        }
    }

    #[test]
    fn control_frame_heads_follow_the_spec() {
        let mut c = HeaderCodec::new();
        // PING: version 3, type 6, no flags, length 4.
        assert_eq!(
            Frame::Ping(1).encode(&mut c).unwrap(),
            vec![0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]
        );
        // DATA: stream id, FIN, length.
        let data = Frame::Data {
            stream_id: 3,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"x"),
        };
        assert_eq!(
            data.encode(&mut c).unwrap(),
            vec![0, 0, 0, 3, 1, 0, 0, 1, b'x']
        );
    }

    #[test]
    fn header_blocks_use_the_dictionary_and_split_nul_values() {
        let mut c = HeaderCodec::new();
        let block = c
            .encode(&h(&[(
                "X-Stream-Protocol-Version",
                "v4.channel.k8s.io\0v3.channel.k8s.io",
            )]))
            .unwrap();
        // A zlib header with FDICT set, and SPDY/3's dictionary id.
        assert_eq!(block[1] & 0x20, 0x20);
        let got = HeaderCodec::new().decode(&block).unwrap();
        assert_eq!(
            got,
            h(&[
                ("x-stream-protocol-version", "v4.channel.k8s.io"),
                ("x-stream-protocol-version", "v3.channel.k8s.io"),
            ])
        );
        assert_eq!(
            header(&got, "X-Stream-Protocol-Version"),
            Some("v4.channel.k8s.io")
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut c = HeaderCodec::new();
        for (head, payload) in [
            // Version 2.
            ([0x80, 2, 0, 6, 0, 0, 0, 4], vec![0, 0, 0, 1]),
            // Truncated RST_STREAM.
            ([0x80, 3, 0, 3, 0, 0, 0, 2], vec![0, 0]),
            // Garbage header block.
            ([0x80, 3, 0, 2, 0, 0, 0, 8], vec![0, 0, 0, 1, 9, 9, 9, 9]),
        ] {
            assert!(Frame::decode(&head, &payload, &mut c).is_err(), "{head:?}");
        }
        assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
    }

    #[tokio::test]
    async fn a_connection_replies_to_streams_and_pings_and_carries_data() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut conn = Connection::serve(server);
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut tx = HeaderCodec::new();
        let mut rx = HeaderCodec::new();
        let syn = Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: h(&[("streamtype", "stdin")]),
        };
        for f in [
            syn,
            Frame::Ping(1),
            Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"in"),
            },
        ] {
            cwr.write_all(&f.encode(&mut tx).unwrap()).await.unwrap();
        }
        let mut stream = conn.streams.recv().await.unwrap();
        assert_eq!(stream.stream_type(), "stdin");
        assert_eq!(
            stream.incoming.recv().await.unwrap(),
            Bytes::from_static(b"in")
        );
        assert_eq!(stream.incoming.recv().await, None);
        stream.writer.write(b"out").await.unwrap();
        stream.writer.close().await;
        conn.shutdown().await;
        let mut got = Vec::new();
        while let Some(f) = read_frame(&mut crd, &mut rx).await.unwrap() {
            got.push(f);
        }
        assert_eq!(
            got,
            vec![
                Frame::SynReply {
                    stream_id: 1,
                    flags: 0,
                    headers: vec![]
                },
                Frame::Ping(1),
                Frame::Data {
                    stream_id: 1,
                    flags: 0,
                    data: Bytes::from_static(b"out")
                },
                Frame::Data {
                    stream_id: 1,
                    flags: FLAG_FIN,
                    data: Bytes::new()
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_client_opens_odd_streams_that_a_server_accepts() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client = Connection::client(a);
        let mut server = Connection::serve(b);
        let (first, second) =
            tokio::join!(client.open_stream(h(&[("streamType", "error")])), async {
                let s = server.streams.recv().await.unwrap();
                assert_eq!((s.id, s.stream_type()), (1, "error"));
                s
            });
        let (mut c_err, mut s_err) = (first.unwrap(), second);
        let (c_out, s_out) = tokio::join!(
            client.open_stream(h(&[("streamType", "stdout")])),
            server.streams.recv()
        );
        let (mut c_out, s_out) = (c_out.unwrap(), s_out.unwrap());
        assert_eq!((c_out.id, s_out.id, s_out.stream_type()), (3, 3, "stdout"));
        // Server to client, then EOF on the client's side.
        s_out.writer.write(b"hi\n").await.unwrap();
        s_out.writer.close().await;
        assert_eq!(
            c_out.incoming.recv().await.unwrap(),
            Bytes::from_static(b"hi\n")
        );
        assert_eq!(c_out.incoming.recv().await, None);
        // Client to server.
        c_err.writer.write(b"up").await.unwrap();
        c_err.writer.close().await;
        assert_eq!(
            s_err.incoming.recv().await.unwrap(),
            Bytes::from_static(b"up")
        );
        assert_eq!(s_err.incoming.recv().await, None);
        // The server's status reaches the client, then the server goes.
        s_err.writer.write(b"{}").await.unwrap();
        s_err.writer.close().await;
        assert_eq!(
            c_err.incoming.recv().await.unwrap(),
            Bytes::from_static(b"{}")
        );
        assert_eq!(c_err.incoming.recv().await, None);
        let gone = client.closed();
        server.shutdown().await;
        gone.await;
        let err = client.open_stream(h(&[("streamType", "stdin")])).await;
        assert!(err.is_err());
    }

    #[tokio::test]
    async fn a_client_sees_a_refused_stream_and_echoes_only_server_pings() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client = Connection::client(a);
        let (mut srd, mut swr) = tokio::io::split(b);
        let (mut tx, mut rx) = (HeaderCodec::new(), HeaderCodec::new());
        let opening = tokio::spawn(async move {
            let r = client.open_stream(h(&[("streamType", "stdin")])).await;
            (client, r)
        });
        match read_frame(&mut srd, &mut rx).await.unwrap() {
            Some(Frame::SynStream {
                stream_id, headers, ..
            }) => {
                assert_eq!(stream_id, 1);
                assert_eq!(header(&headers, "streamtype"), Some("stdin"));
            }
            other => panic!("{other:?}"),
        }
        for f in [
            Frame::Ping(1),
            Frame::Ping(2),
            Frame::RstStream {
                stream_id: 1,
                status: RST_CANCEL,
            },
        ] {
            swr.write_all(&f.encode(&mut tx).unwrap()).await.unwrap();
        }
        let (client, result) = opening.await.unwrap();
        assert!(result.err().unwrap().contains("refused"));
        client.shutdown().await;
        let mut got = Vec::new();
        while let Some(f) = read_frame(&mut srd, &mut rx).await.unwrap() {
            got.push(f);
        }
        assert_eq!(got, vec![Frame::Ping(2)]);
    }
}
