//! Hollow nodes: many fake kubelets in one process sharing one client, as
//! upstream's kubemark runs hollow kubelets to load a control plane without
//! machines. Node `i` of prefix `p` is named `p-<i>`, gets its own fake
//! runtime, pod CIDR [`hollow_pod_cidr`] (`10.244.<i>.0/24`, continuing
//! into `10.245.0.0/16` and up past 256 nodes) and InternalIP
//! [`hollow_node_ip`] (from `172.16.0.2` up). The nodes share one pod watch
//! ([`crate::pods::dispatch_pods`]) and one Node watch
//! ([`crate::node::dispatch_nodes`]): a watch per node would be an HTTP/1.1
//! connection (and a TLS session) per node, most of a hollow node's memory.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::future::try_join_all;

use crate::config::{KubeletConfig, MachineInfo};
use crate::runtime::fake::FakeRuntime;
use crate::{Kubelet, KubeletHandle};

/// The most hollow nodes [`hollow_pod_cidr`] has room for (10.244.0.0 to
/// 10.255.255.0).
pub const MAX_HOLLOW_NODES: usize = 12 * 256;

/// The pod CIDR of hollow node `i`.
pub fn hollow_pod_cidr(i: usize) -> anyhow::Result<String> {
    anyhow::ensure!(
        i < MAX_HOLLOW_NODES,
        "at most {MAX_HOLLOW_NODES} hollow nodes fit in 10.244.0.0-10.255.255.255"
    );
    Ok(format!("10.{}.{}.0/24", 244 + i / 256, i % 256))
}

/// The InternalIP of hollow node `i`: 172.16.0.0/12 from `.0.2`.
pub fn hollow_node_ip(i: usize) -> IpAddr {
    let offset = u32::try_from(i).unwrap_or(u32::MAX).saturating_add(2) & 0x000f_ffff;
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(172, 16, 0, 0)) | offset,
    ))
}

/// The hollow nodes of one prefix.
pub struct HollowNodes {
    nodes: Vec<KubeletHandle>,
    runtimes: Vec<FakeRuntime>,
    /// The shared pod watch.
    dispatch: tokio::task::JoinHandle<()>,
    /// The shared Node watch.
    dispatch_nodes: tokio::task::JoinHandle<()>,
}

impl Drop for HollowNodes {
    fn drop(&mut self) {
        self.dispatch.abort();
        self.dispatch_nodes.abort();
    }
}

impl HollowNodes {
    /// Starts `count` hollow kubelets `<prefix>-0` … with `template`'s
    /// settings (its node name, IP, pod CIDR and runtime are replaced; its
    /// machine's capacity is kept).
    pub async fn start(
        client: kube::Client,
        prefix: &str,
        count: usize,
        template: &KubeletConfig,
    ) -> anyhow::Result<HollowNodes> {
        let mut configs = Vec::with_capacity(count);
        let mut runtimes = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("{prefix}-{i}");
            let runtime = FakeRuntime::new();
            let mut config = template.clone();
            let m = &template.machine;
            config.machine = MachineInfo::fake(&name, &m.cpu, &m.memory, &m.ephemeral_storage);
            config.node_name = name;
            config.node_ip = hollow_node_ip(i);
            config.pod_cidr = Some(hollow_pod_cidr(i)?);
            config.runtime = Arc::new(runtime.clone());
            configs.push(config);
            runtimes.push(runtime);
        }
        let mut feeds = std::collections::HashMap::new();
        let mut node_feeds = std::collections::HashMap::new();
        let mut starts = Vec::with_capacity(count);
        for config in configs {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            feeds.insert(config.node_name.clone(), tx);
            let (node_tx, node_rx) = tokio::sync::mpsc::unbounded_channel();
            node_feeds.insert(config.node_name.clone(), node_tx);
            starts.push(Kubelet::start_with_feeds(
                client.clone(),
                config,
                Some(rx),
                Some(node_rx),
            ));
        }
        let dispatch = tokio::spawn(crate::pods::dispatch_pods(client.clone(), feeds));
        let dispatch_nodes = tokio::spawn(crate::node::dispatch_nodes(client.clone(), node_feeds));
        let nodes = match try_join_all(starts).await {
            Ok(nodes) => nodes,
            Err(e) => {
                dispatch.abort();
                dispatch_nodes.abort();
                return Err(e).context("starting hollow nodes");
            }
        };
        Ok(HollowNodes {
            nodes,
            runtimes,
            dispatch,
            dispatch_nodes,
        })
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node names, in index order.
    pub fn names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.node_name().to_string())
            .collect()
    }

    /// The kubelets.
    pub fn kubelets(&self) -> &[KubeletHandle] {
        &self.nodes
    }

    /// Containers running on all the nodes together.
    pub fn running_containers(&self) -> usize {
        self.runtimes
            .iter()
            .map(FakeRuntime::running_containers)
            .sum()
    }

    /// Waits until every node is registered.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for node in &self.nodes {
            let left = deadline.saturating_duration_since(Instant::now());
            node.wait_registered(left).await?;
        }
        Ok(())
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        self.dispatch.abort();
        self.dispatch_nodes.abort();
        for node in std::mem::take(&mut self.nodes) {
            node.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hollow_nodes_get_distinct_cidrs_and_ips() {
        assert_eq!(hollow_pod_cidr(0).unwrap(), "10.244.0.0/24");
        assert_eq!(hollow_pod_cidr(7).unwrap(), "10.244.7.0/24");
        assert_eq!(hollow_pod_cidr(256).unwrap(), "10.245.0.0/24");
        assert_eq!(hollow_pod_cidr(3071).unwrap(), "10.255.255.0/24");
        assert!(hollow_pod_cidr(3072).is_err());
        assert_eq!(hollow_node_ip(0).to_string(), "172.16.0.2");
        assert_eq!(hollow_node_ip(300).to_string(), "172.16.1.46");
    }
}
