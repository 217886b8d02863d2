//! The API server's HTTPS client for kubelets: [`KubeletClient::get`] for
//! logs, [`KubeletClient::connect`] for the proxied subresources.
//!
//! It authenticates with the server's own client certificate
//! (`apiserver-kubelet-client`, made by [`crate::pki`]) and, like upstream
//! without `--kubelet-certificate-authority`, does not verify the kubelet's
//! self-signed serving certificate. One connection per request, HTTP/1.1;
//! the answer's body is handed on as a stream, so a followed log flows
//! through chunk by chunk. Failures read like Go's `net/http` ones
//! (`Get "https://...": dial tcp ...: connect: connection refused`), which is
//! what upstream shows clients.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::{BodyExt, BodyStream};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How long dialing a kubelet may take (Go's dialer timeout upstream).
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the TLS handshake may take (upstream's transport default).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts any kubelet serving certificate; signatures are still checked.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A kubelet's answer: its status and a body still to be read.
pub struct KubeletResponse {
    pub status: u16,
    body: Incoming,
    /// Ends the connection task when the answer is dropped (a client that
    /// stops following a log closes the kubelet connection too).
    connection: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl KubeletResponse {
    /// Up to `limit` bytes of the body (for error messages).
    pub async fn read_prefix(mut self, limit: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < limit {
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        out.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
        out.truncate(limit);
        out
    }

    /// The body as a stream of chunks, as they arrive.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, hyper::Error>> + Send {
        let guard = self.connection;
        BodyStream::new(self.body).filter_map(move |frame| {
            let _keep_connection = &guard;
            let data = match frame {
                Ok(frame) => frame.into_data().ok().map(Ok),
                Err(e) => Some(Err(e)),
            };
            std::future::ready(data)
        })
    }
}

/// An HTTPS client holding the API server's kubelet client certificate.
#[derive(Clone)]
pub struct KubeletClient {
    tls: TlsConnector,
}

/// Go's wording of a dial error (`connect: connection refused`).
fn dial_error(address: &str, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            format!("connect: {}", text.to_lowercase())
        }
    };
    format!("dial tcp {address}: {what}")
}

/// `host:port`, IPv6 literals bracketed (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl KubeletClient {
    /// A client presenting the given certificate and key (PEM).
    pub fn new(cert_pem: &str, key_pem: &str) -> anyhow::Result<KubeletClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<_, _>>()?;
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())?
            .ok_or_else(|| anyhow::anyhow!("no private key in the kubelet client key file"))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
            .with_client_auth_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// `GET https://{host}:{port}{path_and_query}` on the first of `hosts`
    /// whose name resolves. The error is the message clients see.
    pub async fn get(
        &self,
        hosts: &[String],
        port: u16,
        path_and_query: &str,
    ) -> Result<KubeletResponse, String> {
        let (tls, authority) = self.connect(hosts, port, "GET", path_and_query).await?;
        let url = format!("https://{authority}{path_and_query}");
        let fail = |why: String| format!("Get \"{url}\": {why}");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let connection = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let request = hyper::Request::get(path_and_query)
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::USER_AGENT, "tug-apiserver")
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(KubeletResponse {
            status: response.status().as_u16(),
            body: response.into_body(),
            connection,
        })
    }

    /// A TLS connection (HTTP/1.1) to the first of `hosts` whose name
    /// resolves, and the `host:port` it reached; `method` and
    /// `path_and_query` only word the error (Go's `Get "https://...": ...`).
    pub async fn connect(
        &self,
        hosts: &[String],
        port: u16,
        method: &str,
        path_and_query: &str,
    ) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, String), String> {
        let go_method = {
            let lower = method.to_ascii_lowercase();
            let mut c = lower.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        };
        let mut last_error = String::new();
        for (i, host) in hosts.iter().enumerate() {
            let authority = join_host_port(host, port);
            let url = format!("https://{authority}{path_and_query}");
            let fail = |why: String| format!("{go_method} \"{url}\": {why}");
            let resolved: Vec<std::net::SocketAddr> =
                match tokio::net::lookup_host((host.as_str(), port)).await {
                    Ok(addrs) => addrs.collect(),
                    Err(_) => Vec::new(),
                };
            if resolved.is_empty() {
                last_error = fail(format!("dial tcp: lookup {host}: no such host"));
                // A name that does not resolve falls back to the next address.
                if i + 1 < hosts.len() {
                    continue;
                }
                return Err(last_error);
            }
            let mut stream = None;
            let mut dial_failure = String::new();
            for addr in &resolved {
                match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
                    Ok(Ok(s)) => {
                        stream = Some(s);
                        break;
                    }
                    Ok(Err(e)) => dial_failure = dial_error(&authority, &e),
                    Err(_) => dial_failure = format!("dial tcp {authority}: i/o timeout"),
                }
            }
            let Some(stream) = stream else {
                return Err(fail(dial_failure));
            };
            let _ = stream.set_nodelay(true);
            let server_name = ServerName::try_from(host.clone())
                .map_err(|e| fail(format!("tls: invalid server name: {e}")))?;
            let tls =
                tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, self.tls.connect(server_name, stream))
                    .await
                    .map_err(|_| fail("net/http: TLS handshake timeout".into()))?
                    .map_err(|e| fail(e.to_string()))?;
            return Ok((tls, authority));
        }
        Err(last_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_errors_read_like_go() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            dial_error("127.0.0.1:1", &refused),
            "dial tcp 127.0.0.1:1: connect: connection refused"
        );
        assert_eq!(join_host_port("::1", 10250), "[::1]:10250");
        assert_eq!(join_host_port("node-a", 10250), "node-a:10250");
    }

    #[tokio::test]
    async fn an_unreachable_kubelet_is_a_connection_refused_message() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let dir = tempfile::tempdir().unwrap();
        let m = crate::pki::ensure(dir.path(), &[], "https://127.0.0.1:6443").unwrap();
        let client =
            KubeletClient::new(&m.kubelet_client_cert_pem, &m.kubelet_client_key_pem).unwrap();
        let err = client
            .get(
                &["no-such-host.invalid".into(), "127.0.0.1".into()],
                port,
                "/containerLogs/default/web/app",
            )
            .await
            .err()
            .unwrap();
        assert_eq!(
            err,
            format!(
                "Get \"https://127.0.0.1:{port}/containerLogs/default/web/app\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
    }
}
