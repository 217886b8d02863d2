//! The server: TLS listener, per-connection identity, the tower stack.
//!
//! Layers, outermost first: panic recovery (a 500 `Status`, never a dropped
//! connection), request tracing, the in-flight limit (429 + Retry-After),
//! then [`crate::handlers::handle`], which authenticates, authorizes and
//! serves. The client certificate is verified during the TLS handshake and
//! carried to the handler as a [`PeerIdentity`] request extension.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use storage::DynStorage;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::auth::{AllowAll, Authorizer, PeerIdentity, TokenAuthenticator};
use crate::cache::WatchCache;
use crate::error::ApiError;
use crate::registry::Registry;

/// How the server is set up (flags of `tug-apiserver`).
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Extra names and addresses for the serving certificate.
    pub tls_sans: Vec<String>,
    /// The address written into `admin.kubeconfig` (defaults to the listener's).
    pub advertise_url: Option<String>,
    pub token_auth_file: Option<PathBuf>,
    /// Requests served at once, watches excluded (upstream's
    /// max-requests-inflight plus max-mutating-requests-inflight).
    pub max_in_flight: usize,
    /// Events each resource's watch cache keeps for resuming watches.
    pub watch_cache_window: usize,
    /// `--service-cluster-ip-range` and `--service-node-port-range`.
    pub service_ranges: crate::alloc::ServiceRanges,
    /// The address the `kubernetes` Service's endpoints name (default: see
    /// [`crate::default_service::advertised_address`]).
    pub advertise_address: Option<std::net::IpAddr>,
}

impl Config {
    pub fn new(data_dir: PathBuf) -> Self {
        Config {
            data_dir,
            tls_sans: Vec::new(),
            advertise_url: None,
            token_auth_file: None,
            max_in_flight: 600,
            watch_cache_window: crate::cache::DEFAULT_WINDOW,
            service_ranges: Default::default(),
            advertise_address: None,
        }
    }
}

/// What every request handler shares.
pub struct AppState {
    pub registry: Registry,
    pub tokens: TokenAuthenticator,
    pub authorizer: Box<dyn Authorizer>,
    pub server_address: String,
    /// How `pods/log` reaches kubelets.
    pub kubelet: crate::kubelet_client::KubeletClient,
    /// The built-in metrics API's last round of kubelet summaries.
    pub metrics: crate::metrics_api::MetricsCache,
    in_flight: Arc<Semaphore>,
}

impl AppState {
    /// Whether the server is ready to serve: the watch cache is loaded once
    /// the state exists, so this is about its storage feed still running.
    pub fn ready(&self) -> bool {
        self.registry.cache.is_feeding()
    }
}

/// The namespaces every cluster starts with.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn bootstrap(registry: &Registry) -> Result<(), ApiError> {
    let namespaces = api::resources::find("", "v1", "namespaces").expect("in table");
    let options = crate::registry::WriteOptions {
        field_manager: "tug-apiserver".into(),
        ..Default::default()
    };
    for name in SYSTEM_NAMESPACES {
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match registry.create(namespaces, None, ns, &options).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn tls_config(material: &crate::pki::ServingMaterial) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut material.ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut material.cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key: PrivateKeyDer<'static> =
        rustls_pemfile::private_key(&mut material.key_pem.as_bytes())?
            .ok_or_else(|| anyhow::anyhow!("no private key in the serving key file"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A running API server's address and admin kubeconfig path.
#[derive(Debug, Clone)]
pub struct Running {
    pub address: SocketAddr,
    pub url: String,
    pub kubeconfig: PathBuf,
}

/// Prepare everything (PKI, storage bootstrap, watch cache) and return the
/// server future plus where it listens. The future runs until `shutdown`.
pub async fn start(
    config: Config,
    listener: TcpListener,
    storage: DynStorage,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Running, impl Future<Output = anyhow::Result<()>>)> {
    let address = listener.local_addr()?;
    let host = match address.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let url = config
        .advertise_url
        .clone()
        .unwrap_or_else(|| format!("https://{host}:{}", address.port()));
    let material = crate::pki::ensure(&config.data_dir, &config.tls_sans, &url)?;
    let tokens = match &config.token_auth_file {
        Some(path) => TokenAuthenticator::from_file(path)?,
        None => TokenAuthenticator::default(),
    };
    let cache = WatchCache::start(storage, config.watch_cache_window).await?;
    let registry = Registry::with_services(
        cache,
        crate::alloc::ServiceAllocator::new(config.service_ranges),
    );
    bootstrap(&registry).await?;
    registry.services.repair(registry.cache.storage()).await?;
    // The namespace check reads the watch cache: let it see `default`.
    registry.cache.wait_fresh().await?;
    let endpoint = crate::default_service::Endpoint {
        cluster_ip: config.service_ranges.cluster_ip.first(),
        address: config
            .advertise_address
            .unwrap_or_else(|| crate::default_service::advertised_address(address.ip())),
        port: address.port(),
    };
    // Not fatal: the periodic reconciler tries again (as upstream, which
    // only logs, e.g. when another Service holds the address).
    if let Err(error) = crate::default_service::reconcile(&registry, &endpoint).await {
        tracing::warn!(%error, "could not set up the kubernetes Service");
    }
    let state = Arc::new(AppState {
        registry,
        tokens,
        authorizer: Box::new(AllowAll),
        server_address: format!("{host}:{}", address.port()),
        kubelet: crate::kubelet_client::KubeletClient::new(
            &material.kubelet_client_cert_pem,
            &material.kubelet_client_key_pem,
        )?,
        metrics: Default::default(),
        in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
    });
    crate::default_service::spawn_reconciler(Arc::downgrade(&state), endpoint);
    let app = router(state);
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&material)?));
    let running = Running {
        address,
        url,
        kubeconfig: crate::pki::Pki::in_dir(&config.data_dir).kubeconfig,
    };
    Ok((running, serve(listener, acceptor, app, shutdown)))
}

/// The axum app: one fallback handler behind the layers.
pub fn router(state: Arc<AppState>) -> Router {
    let limit_state = state.clone();
    Router::new()
        .fallback(crate::handlers::handle)
        .with_state(state)
        .layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| {
                let state = limit_state.clone();
                async move { limit_in_flight(state, req, next).await }
            },
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("an internal error occurred while serving the request").into_response()
}

/// Long-running requests (watches, followed logs) are not counted, as
/// upstream's `BasicLongRunningRequestCheck` (watch verbs; the `log`
/// subresource).
fn is_long_running(req: &Request) -> bool {
    if let crate::request::Target::Resource(rp) = crate::request::parse(req.uri().path()) {
        if rp.subresource.as_deref() == Some("log") {
            return true;
        }
    }
    crate::codec::Query::parse(req.uri().query()).flag("watch")
}

async fn limit_in_flight(
    state: Arc<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if is_long_running(&req) {
        return next.run(req).await;
    }
    match state.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => {
            let mut r = ApiError::TooManyRequests {
                message: "Too many requests, please try again later.".into(),
                retry_after: 1,
            }
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%error, %peer, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let identity = PeerIdentity(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|c| crate::auth::user_from_certificate(c.as_ref())),
            );
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(identity.clone());
                    let mut app = app.clone();
                    async move { app.call(req.map(axum::body::Body::new)).await }
                },
            );
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(error = %error, %peer, "connection ended with an error");
            }
        });
    }
}
