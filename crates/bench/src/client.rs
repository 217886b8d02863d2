//! The two ways the benchmark talks to the API server.
//!
//! `kube` is what every Tugboat component uses: a kube-rs [`kube::Client`] per
//! benchmark client, typed `Api<Pod>` calls, so each request pays kube-rs'
//! serialization, typed decoding and tower stack. `raw` is one HTTP/1.1
//! connection per benchmark client over rustls with the same admin
//! certificate, sending pre-serialized bytes and discarding the response
//! body unread: the least client work possible, so that on a machine where
//! client and server share two cores the figures are closer to what the
//! server alone can do. Running both in one session shows what the client
//! costs.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::pod::NAMESPACE;

/// Which client library the load goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientKind {
    /// kube-rs `Api<Pod>`, as Tugboat's own components talk to the server.
    Kube,
    /// hyper HTTP/1.1 over rustls, pre-serialized bodies, responses unread.
    Raw,
}

impl ClientKind {
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Kube => "kube",
            ClientKind::Raw => "raw",
        }
    }
}

/// The server address and admin credentials from `admin.kubeconfig`.
#[derive(Clone)]
pub struct Credentials {
    /// `host:port`, from the cluster's `server` URL.
    pub authority: String,
    pub kubeconfig: kube::config::Kubeconfig,
    tls: Arc<rustls::ClientConfig>,
}

impl Credentials {
    /// Reads the first cluster and user of a kubeconfig with embedded
    /// (`*-data`) certificates, as `tug-apiserver` writes it.
    pub fn from_kubeconfig(path: &Path) -> anyhow::Result<Credentials> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&text).context("parsing the kubeconfig")?;
        let field = |section: &str, inner: &str, key: &str| -> anyhow::Result<String> {
            doc[section][0][inner][key]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("the kubeconfig has no {section}[0].{inner}.{key}"))
        };
        let decode = |s: String| base64::engine::general_purpose::STANDARD.decode(s.trim());
        let server = field("clusters", "cluster", "server")?;
        let ca = decode(field("clusters", "cluster", "certificate-authority-data")?)?;
        let cert = decode(field("users", "user", "client-certificate-data")?)?;
        let key = decode(field("users", "user", "client-key-data")?)?;
        let authority = server
            .strip_prefix("https://")
            .ok_or_else(|| anyhow!("server {server} is not https"))?
            .trim_end_matches('/')
            .to_string();

        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut ca.as_slice()) {
            roots.add(c?)?;
        }
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut cert.as_slice()).collect::<Result<_, _>>()?;
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.as_slice())?
            .ok_or_else(|| anyhow!("no client key in the kubeconfig"))?;
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Credentials {
            authority,
            kubeconfig: kube::config::Kubeconfig::from_yaml(&text)?,
            tls: Arc::new(tls),
        })
    }

    /// A kube-rs client with its own connection pool.
    pub async fn kube_client(&self) -> anyhow::Result<kube::Client> {
        let config =
            kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &Default::default())
                .await?;
        Ok(kube::Client::try_from(config)?)
    }
}

/// One HTTP/1.1 connection over TLS: requests go one at a time, as one
/// synchronous client would send them.
pub struct RawConn {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

impl RawConn {
    pub async fn connect(creds: &Credentials) -> anyhow::Result<RawConn> {
        let tcp = TcpStream::connect(&creds.authority)
            .await
            .with_context(|| format!("connecting to {}", creds.authority))?;
        tcp.set_nodelay(true)?;
        let host = creds
            .authority
            .rsplit_once(':')
            .map_or(creds.authority.as_str(), |(h, _)| h);
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())?;
        let tls = TlsConnector::from(creds.tls.clone())
            .connect(name, tcp)
            .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            // The connection ends when the sender is dropped or the server goes.
            let _ = conn.await;
        });
        Ok(RawConn {
            sender,
            authority: creds.authority.clone(),
        })
    }

    /// Sends one request; returns the status and the body length.
    pub async fn request(
        &mut self,
        method: http::Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(http::StatusCode, usize)> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.authority)
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut len = 0;
        // Read to the end (so the connection can be reused) without keeping it.
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                len += data.len();
            }
        }
        Ok((status, len))
    }
}

/// What a list returned: what the client kind can tell cheaply.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListSize {
    pub items: Option<usize>,
    pub bytes: Option<usize>,
}

/// One benchmark client: a kube-rs `Api<Pod>` or a raw connection.
pub enum ApiClient {
    /// Boxed: kube-rs' `Api` is several times a raw connection's size.
    Kube(Box<Api<Pod>>),
    Raw(RawConn),
}

fn pods_path() -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/pods")
}

impl ApiClient {
    pub async fn connect(kind: ClientKind, creds: &Credentials) -> anyhow::Result<ApiClient> {
        Ok(match kind {
            ClientKind::Kube => ApiClient::Kube(Box::new(Api::namespaced(
                creds.kube_client().await?,
                NAMESPACE,
            ))),
            ClientKind::Raw => ApiClient::Raw(RawConn::connect(creds).await?),
        })
    }

    /// Creates a pod. `pod` and `body` are the same object, typed and as
    /// bytes, both made before the clock starts.
    pub async fn create(&mut self, pod: Option<&Pod>, body: &Bytes) -> anyhow::Result<()> {
        match self {
            ApiClient::Kube(api) => {
                let pod = pod.ok_or_else(|| anyhow!("kube-rs creates need the typed pod"))?;
                api.create(&PostParams::default(), pod).await?;
            }
            ApiClient::Raw(conn) => {
                let (status, _) = conn
                    .request(http::Method::POST, &pods_path(), Some(body.clone()))
                    .await?;
                if status != http::StatusCode::CREATED {
                    bail!("create answered {status}");
                }
            }
        }
        Ok(())
    }

    pub async fn get(&mut self, name: &str) -> anyhow::Result<()> {
        match self {
            ApiClient::Kube(api) => {
                api.get(name).await?;
            }
            ApiClient::Raw(conn) => {
                let (status, _) = conn
                    .request(http::Method::GET, &format!("{}/{name}", pods_path()), None)
                    .await?;
                if status != http::StatusCode::OK {
                    bail!("get answered {status}");
                }
            }
        }
        Ok(())
    }

    /// Lists the whole namespace. `kube` decodes every item (and counts
    /// them); `raw` only counts the response's bytes.
    pub async fn list(&mut self) -> anyhow::Result<ListSize> {
        match self {
            ApiClient::Kube(api) => Ok(ListSize {
                items: Some(api.list(&ListParams::default()).await?.items.len()),
                bytes: None,
            }),
            ApiClient::Raw(conn) => {
                let (status, len) = conn.request(http::Method::GET, &pods_path(), None).await?;
                if status != http::StatusCode::OK {
                    bail!("list answered {status}");
                }
                Ok(ListSize {
                    items: None,
                    bytes: Some(len),
                })
            }
        }
    }
}
