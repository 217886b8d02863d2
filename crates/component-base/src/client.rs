//! A kube-rs client the way upstream components find their kubeconfig:
//! `--kubeconfig` if given, else `KUBECONFIG`, `~/.kube/config` or the
//! in-cluster service account.

use std::path::Path;

use anyhow::Context;

/// The client configuration from `kubeconfig`, or inferred when `None`.
pub async fn config(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Config> {
    match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(kube::Config::from_custom_kubeconfig(file, &Default::default()).await?)
        }
        None => Ok(kube::Config::infer().await?),
    }
}

/// A client from `kubeconfig`, or inferred when `None`.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(config(kubeconfig).await?)?)
}
