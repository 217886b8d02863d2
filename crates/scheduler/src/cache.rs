//! The scheduler's view of the cluster: nodes, the pods counted on them, and
//! the pods this scheduler has assumed onto a node before the API server's
//! watch confirms the binding.
//!
//! Mirrors upstream's scheduler cache (`pkg/scheduler/backend/cache`):
//! informer events feed it, each scheduling cycle takes a [`Snapshot`], and
//! an assumed pod counts on its node from the moment the scheduler decides,
//! so the next cycle does not place a second pod into the same free space.
//! A failed binding `forget`s the assumption; the watch event of the bound
//! pod replaces it. Pure: no I/O, the driver owns the locking.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::{NodeInfo, Snapshot};
use crate::plugins::resources::node_info;
use crate::queue::pod_key;

/// Nodes, counted pods and assumptions.
#[derive(Debug, Default)]
pub struct SchedulerCache {
    nodes: BTreeMap<String, Arc<Node>>,
    /// Pods counted on each node name (known node or not yet), by pod key.
    pods: BTreeMap<String, BTreeMap<String, Arc<Pod>>>,
    /// The node each counted pod is on.
    placement: HashMap<String, String>,
    /// Keys of pods counted because this scheduler assumed them.
    assumed: BTreeSet<String>,
    /// Node infos computed for the last snapshot, and which need recomputing.
    /// A node's info goes as soon as it is out of date: it holds the pods as
    /// they were, and after the last cycle of a burst nothing recomputes it,
    /// so keeping it would keep an older version of every pod it counts.
    infos: BTreeMap<String, Arc<NodeInfo>>,
    dirty: BTreeSet<String>,
}

/// Whether a pod still uses its node's resources (upstream's scheduler only
/// watches assigned pods that are neither Succeeded nor Failed).
fn is_active(pod: &Pod) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    phase != "Succeeded" && phase != "Failed"
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

impl SchedulerCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add or replace a node.
    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.nodes.insert(name.clone(), node);
        self.mark_dirty(name);
    }

    /// Forget a node; pods still bound to it keep being counted against its
    /// name, as upstream does, until they are deleted.
    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
        self.infos.remove(name);
        self.dirty.remove(name);
    }

    /// A pod event from the informer. Bound, active pods are counted on
    /// their node (confirming any assumption); others are not counted.
    pub fn upsert_pod(&mut self, pod: Arc<Pod>) {
        let key = pod_key(&pod);
        match node_of(&pod).map(str::to_string) {
            Some(node) if is_active(&pod) => {
                self.assumed.remove(&key);
                self.place(key, node, pod);
            }
            _ => {
                if !self.assumed.contains(&key) {
                    self.unplace(&key);
                }
            }
        }
    }

    /// A pod was deleted.
    pub fn remove_pod(&mut self, key: &str) {
        self.assumed.remove(key);
        self.unplace(key);
    }

    /// Count `pod` on `node` now, before the binding is confirmed.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        let mut bound = pod.clone();
        bound.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
        let key = pod_key(pod);
        self.assumed.insert(key.clone());
        self.place(key, node.to_string(), Arc::new(bound));
    }

    /// The binding failed: stop counting the assumed pod.
    pub fn forget(&mut self, key: &str) {
        if self.assumed.remove(key) {
            self.unplace(key);
        }
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.assumed.contains(key)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The nodes and their pods, for one scheduling cycle. Only nodes whose
    /// node or pods changed since the last snapshot are recomputed.
    pub fn snapshot(&mut self) -> Snapshot {
        for name in std::mem::take(&mut self.dirty) {
            let Some(node) = self.nodes.get(&name) else {
                continue;
            };
            let pods = self
                .pods
                .get(&name)
                .map(|p| p.values().cloned().collect())
                .unwrap_or_default();
            self.infos
                .insert(name, Arc::new(node_info(node.clone(), pods)));
        }
        Snapshot {
            nodes: self.infos.values().cloned().collect(),
        }
    }

    fn place(&mut self, key: String, node: String, pod: Arc<Pod>) {
        if let Some(previous) = self.placement.get(&key).cloned() {
            if previous != node {
                self.unplace(&key);
            }
        }
        self.pods
            .entry(node.clone())
            .or_default()
            .insert(key.clone(), pod);
        self.mark_dirty(node.clone());
        self.placement.insert(key, node);
    }

    fn unplace(&mut self, key: &str) {
        if let Some(node) = self.placement.remove(key) {
            if let Some(pods) = self.pods.get_mut(&node) {
                pods.remove(key);
                if pods.is_empty() {
                    self.pods.remove(&node);
                }
            }
            self.mark_dirty(node);
        }
    }

    /// `node`'s info is out of date: drop it, recompute it at the next
    /// snapshot.
    fn mark_dirty(&mut self, node: String) {
        self.infos.remove(&node);
        self.dirty.insert(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}},
            }))
            .unwrap(),
        )
    }

    fn pod(name: &str, node: Option<&str>, phase: &str) -> Arc<Pod> {
        let mut spec =
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": spec,
                "status": {"phase": phase},
            }))
            .unwrap(),
        )
    }

    fn cpu_on(cache: &mut SchedulerCache, node: &str) -> i64 {
        let snapshot = cache.snapshot();
        snapshot
            .nodes
            .iter()
            .find(|n| n.name() == node)
            .map(|n| n.requested.milli_cpu)
            .unwrap()
    }

    #[test]
    fn an_assumed_pod_counts_on_its_node_until_the_watch_confirms_it() {
        let mut cache = SchedulerCache::new();
        cache.upsert_node(node("n1"));
        let p = pod("p", None, "Pending");
        cache.assume(&p, "n1");
        assert_eq!(cpu_on(&mut cache, "n1"), 500);
        assert!(cache.is_assumed("default/p"));
        // The watch still shows the pod unbound: the assumption holds.
        cache.upsert_pod(p.clone());
        assert_eq!(cpu_on(&mut cache, "n1"), 500);
        // The bound pod arrives: confirmed, counted once.
        cache.upsert_pod(pod("p", Some("n1"), "Pending"));
        assert!(!cache.is_assumed("default/p"));
        assert_eq!(cpu_on(&mut cache, "n1"), 500);
    }

    #[test]
    fn a_failed_binding_forgets_the_assumption() {
        let mut cache = SchedulerCache::new();
        cache.upsert_node(node("n1"));
        cache.assume(&pod("p", None, "Pending"), "n1");
        cache.forget("default/p");
        assert_eq!(cpu_on(&mut cache, "n1"), 0);
    }

    #[test]
    fn finished_and_deleted_pods_stop_counting() {
        let mut cache = SchedulerCache::new();
        cache.upsert_node(node("n1"));
        cache.upsert_pod(pod("a", Some("n1"), "Running"));
        cache.upsert_pod(pod("b", Some("n1"), "Running"));
        assert_eq!(cpu_on(&mut cache, "n1"), 1000);
        cache.upsert_pod(pod("a", Some("n1"), "Succeeded"));
        assert_eq!(cpu_on(&mut cache, "n1"), 500);
        cache.remove_pod("default/b");
        assert_eq!(cpu_on(&mut cache, "n1"), 0);
    }

    #[test]
    fn pods_seen_before_their_node_are_counted_once_it_arrives() {
        let mut cache = SchedulerCache::new();
        cache.upsert_pod(pod("early", Some("late"), "Running"));
        assert!(cache.snapshot().nodes.is_empty());
        cache.upsert_node(node("late"));
        assert_eq!(cpu_on(&mut cache, "late"), 500);
        cache.remove_node("late");
        assert!(cache.snapshot().nodes.is_empty());
    }

    #[test]
    fn a_replaced_pod_version_is_not_kept_by_the_last_snapshot() {
        let mut cache = SchedulerCache::new();
        cache.upsert_node(node("n1"));
        let pending = pod("p", Some("n1"), "Pending");
        cache.upsert_pod(pending.clone());
        drop(cache.snapshot());
        // The cycle's snapshot is gone, but the cache's node info counts
        // this version of the pod.
        assert_eq!(Arc::strong_count(&pending), 3);
        // The kubelet's update arrives and no cycle follows (the burst is
        // over): only the new version is held.
        let running = pod("p", Some("n1"), "Running");
        cache.upsert_pod(running.clone());
        assert_eq!(Arc::strong_count(&pending), 1);
        assert_eq!(cpu_on(&mut cache, "n1"), 500);
        assert!(Arc::strong_count(&running) > 1);
    }
}
