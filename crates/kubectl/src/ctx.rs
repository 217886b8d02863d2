//! The connection every command shares: kubeconfig loading (`--kubeconfig`,
//! `KUBECONFIG`, `~/.kube/config`, `--context`), the effective namespace,
//! the discovered resource catalog, and request helpers built on kube-rs's
//! dynamic `ApiResource`/`DynamicObject` URLs.

use std::path::PathBuf;

use futures::future::join_all;
use http::header::{HeaderValue, ACCEPT};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{DynamicObject, Request};
use kube::{Client, Config, Resource as _};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::discovery::{parse_resource_list, Catalog, Resource};
use crate::error::{CliError, Result};

/// Accept header asking for the server-side table, like kubectl.
pub const TABLE_ACCEPT: &str =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

/// Connection flags shared by every command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnectArgs {
    /// Path to the kubeconfig file to use for CLI requests.
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// If present, the namespace scope for this CLI request.
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// A connected client.
pub struct Ctx {
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    catalog: OnceCell<Catalog>,
}

/// Load the kubeconfig the flags and environment select.
pub fn load_kubeconfig(args: &ConnectArgs) -> Result<Kubeconfig> {
    let kc = match &args.kubeconfig {
        Some(p) => Kubeconfig::read_from(p),
        None => Kubeconfig::read(),
    };
    kc.map_err(|e| CliError::client(format!("unable to load kubeconfig: {e}")))
}

impl Ctx {
    /// Connect using the kubeconfig.
    pub async fn connect(args: &ConnectArgs) -> Result<Ctx> {
        let kc = load_kubeconfig(args)?;
        let opts = KubeConfigOptions {
            context: args.context.clone(),
            cluster: None,
            user: None,
        };
        let config = Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| CliError::client(e.to_string()))?;
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| CliError::client(e.to_string()))?;
        Ok(Ctx {
            client,
            namespace,
            catalog: OnceCell::new(),
        })
    }

    /// The server's resources (discovered once per run).
    pub async fn catalog(&self) -> Result<&Catalog> {
        self.catalog
            .get_or_try_init(|| discover(&self.client))
            .await
    }

    /// Resolve a type word to resources, with kubectl's client error.
    pub async fn resolve(&self, word: &str) -> Result<Vec<Resource>> {
        self.catalog()
            .await?
            .resolve(word)
            .map_err(CliError::Client)
    }

    /// The collection URL of a resource (`None`: all namespaces or
    /// cluster-scoped).
    pub fn url(&self, r: &Resource, ns: Option<&str>) -> String {
        let ns = if r.namespaced { ns } else { None };
        DynamicObject::url_path(&r.api_resource(), ns)
    }

    /// A kube-rs request builder for the resource's collection.
    pub fn request(&self, r: &Resource, ns: Option<&str>) -> Request {
        Request::new(self.url(r, ns))
    }

    /// Send a request and decode the JSON answer.
    pub async fn send(&self, req: http::Request<Vec<u8>>) -> Result<Value> {
        Ok(self.client.request::<Value>(req).await?)
    }

    /// Send a request asking for a Table.
    pub async fn send_table(&self, mut req: http::Request<Vec<u8>>) -> Result<Value> {
        req.headers_mut()
            .insert(ACCEPT, HeaderValue::from_static(TABLE_ACCEPT));
        self.send(req).await
    }
}

/// Read `/api/v1` and every group's preferred version.
async fn discover(client: &Client) -> Result<Catalog> {
    let get = |path: String| async move {
        let req = http::Request::get(path)
            .body(Vec::new())
            .map_err(CliError::client)?;
        client.request::<Value>(req).await.map_err(CliError::from)
    };
    let groups = get("/apis".into()).await?;
    let mut paths = vec!["/api/v1".to_string()];
    for g in groups["groups"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        if let Some(gv) = g["preferredVersion"]["groupVersion"].as_str() {
            paths.push(format!("/apis/{gv}"));
        }
    }
    let docs = join_all(paths.into_iter().map(get)).await;
    let mut resources = Vec::new();
    // A group that fails discovery (e.g. an unavailable aggregated API)
    // must not break every command, as with kubectl.
    for doc in docs.into_iter().flatten() {
        resources.extend(parse_resource_list(&doc));
    }
    Ok(Catalog { resources })
}
