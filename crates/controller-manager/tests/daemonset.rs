//! The DaemonSet controller against an in-process API server. The tests
//! create the Node objects, and a small loop plays scheduler and kubelet:
//! it binds each daemon pod to the node its affinity names, reports it
//! Running and Ready, and finishes graceful deletions.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

async fn add_node(client: &kube::Client, name: &str, labels: Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
}

async fn patch_node(client: &kube::Client, name: &str, patch: Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn daemon(name: &str, image: &str, node_selector: Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": node_selector,
                    "containers": [{"name": "agent", "image": image}]
                }
            }
        }
    }))
    .unwrap()
}

/// The node a daemon pod is pinned to by its required node affinity.
fn pinned_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let field = terms.first()?.match_fields.as_ref()?.first()?;
    (field.key == "metadata.name" && field.operator == "In")
        .then(|| field.values.as_ref()?.first().cloned())
        .flatten()
}

/// Scheduler and kubelet for the default namespace, until dropped.
struct Kubelet(tokio::task::JoinHandle<()>);

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn kubelet(client: &kube::Client) -> Kubelet {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    Kubelet(tokio::spawn(async move {
        loop {
            for pod in pods.list(&ListParams::default()).await.unwrap().items {
                let name = pod.metadata.name.clone().unwrap();
                if pod.metadata.deletion_timestamp.is_some() {
                    let _ = pods
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await;
                    continue;
                }
                let bound = pod.spec.as_ref().and_then(|s| s.node_name.clone());
                if bound.is_none() {
                    let Some(node) = pinned_node(&pod) else {
                        continue;
                    };
                    let binding = json!({
                        "apiVersion": "v1", "kind": "Binding",
                        "metadata": {"name": name},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": node}
                    });
                    let _: Result<Value, _> = pods
                        .create_subresource("binding", &name, &PostParams::default(), &binding)
                        .await;
                    continue;
                }
                let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                if phase == Some("Pending") {
                    let status = json!({"status": {
                        "phase": "Running",
                        "conditions": [{"type": "Ready", "status": "True",
                                        "lastTransitionTime": Timestamp::now().to_string()}]
                    }});
                    let _ = pods
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }))
}

/// The live (not terminating) pods of `app`, as node -> pod.
async fn pods_of(pods: &Api<Pod>, app: &str) -> Vec<(String, Pod)> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap();
    let mut by_node: Vec<(String, Pod)> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (pinned_node(&p).unwrap_or_default(), p))
        .collect();
    by_node.sort_by(|a, b| a.0.cmp(&b.0));
    by_node
}

/// Wait until `app` has exactly one live pod on each of `nodes`.
async fn on_nodes(pods: &Api<Pod>, app: &str, nodes: &[&str]) -> Vec<Pod> {
    let want: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    common::eventually(WAIT, &format!("{app} pods on {nodes:?}"), || async {
        let found = pods_of(pods, app).await;
        let placed: Vec<String> = found.iter().map(|(n, _)| n.clone()).collect();
        (placed == want).then(|| found.into_iter().map(|(_, p)| p).collect())
    })
    .await
}

async fn events(client: &kube::Client, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

/// Run the real kubectl against the cluster; its stdout, or a panic with
/// its stderr.
async fn kubectl(cluster: &common::Cluster, args: &[&str]) -> String {
    let mut command = std::process::Command::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33");
    command
        .arg("--kubeconfig")
        .arg(&cluster.server.kubeconfig)
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kubectl {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn daemon_pods_follow_nodes_as_they_come_are_tainted_and_relabelled() {
    let cluster = common::start(&["daemonset"]).await;
    let client = &cluster.client;
    let _kubelet = kubelet(client);
    let daemons: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    add_node(client, "n1", json!({})).await;
    add_node(client, "n2", json!({})).await;
    daemons
        .create(
            &PostParams::default(),
            &daemon("agent", "agent:1", json!({})),
        )
        .await
        .unwrap();
    daemons
        .create(
            &PostParams::default(),
            &daemon("ssd", "ssd:1", json!({"disk": "ssd"})),
        )
        .await
        .unwrap();

    // One pod per node, pinned by affinity for the scheduler to bind.
    let placed = on_nodes(&pods, "agent", &["n1", "n2"]).await;
    let tolerations: BTreeSet<String> = placed[0]
        .spec
        .as_ref()
        .unwrap()
        .tolerations
        .iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t.key.as_deref().unwrap_or(""),
                t.effect.as_deref().unwrap_or("")
            )
        })
        .collect();
    for wanted in [
        "node.kubernetes.io/not-ready:NoExecute",
        "node.kubernetes.io/unreachable:NoExecute",
        "node.kubernetes.io/disk-pressure:NoSchedule",
        "node.kubernetes.io/memory-pressure:NoSchedule",
        "node.kubernetes.io/pid-pressure:NoSchedule",
        "node.kubernetes.io/unschedulable:NoSchedule",
    ] {
        assert!(tolerations.contains(wanted), "{wanted} in {tolerations:?}");
    }
    let first = placed[0].metadata.name.clone().unwrap();
    common::eventually(WAIT, "a SuccessfulCreate event", || async {
        events(client, "SuccessfulCreate")
            .await
            .contains(&format!("Created pod: {first}"))
            .then_some(())
    })
    .await;

    // A new node gets its pod; the ssd DaemonSet runs nowhere yet.
    add_node(client, "n3", json!({})).await;
    on_nodes(&pods, "agent", &["n1", "n2", "n3"]).await;
    assert!(pods_of(&pods, "ssd").await.is_empty());
    let status = common::eventually(WAIT, "agent status", || async {
        let ds = daemons.get("agent").await.unwrap();
        ds.status
            .filter(|s| s.number_ready == 3 && s.number_available == Some(3))
    })
    .await;
    assert_eq!(status.desired_number_scheduled, 3);
    assert_eq!(status.current_number_scheduled, 3);
    assert_eq!(status.number_misscheduled, 0);
    assert_eq!(status.updated_number_scheduled, Some(3));
    assert_eq!(status.number_unavailable, Some(0));

    // An untolerated NoExecute taint evicts the daemon pod; a NoSchedule
    // one keeps new pods off but leaves a running one alone.
    patch_node(
        client,
        "n3",
        json!({"spec": {"taints": [{"key": "maintenance", "effect": "NoExecute"}]}}),
    )
    .await;
    on_nodes(&pods, "agent", &["n1", "n2"]).await;
    patch_node(
        client,
        "n2",
        json!({"spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    on_nodes(&pods, "agent", &["n1", "n2"]).await;
    common::eventually(WAIT, "n2 counted misscheduled", || async {
        let ds = daemons.get("agent").await.unwrap();
        ds.status
            .filter(|s| s.desired_number_scheduled == 1 && s.number_misscheduled == 1)
    })
    .await;

    // Labelling a node brings the ssd DaemonSet there; unlabelling removes it.
    patch_node(
        client,
        "n1",
        json!({"metadata": {"labels": {"disk": "ssd"}}}),
    )
    .await;
    on_nodes(&pods, "ssd", &["n1"]).await;
    patch_node(
        client,
        "n1",
        json!({"metadata": {"labels": {"disk": null}}}),
    )
    .await;
    on_nodes(&pods, "ssd", &[]).await;
    assert!(!events(client, "SuccessfulDelete").await.is_empty());

    // A failed daemon pod is killed (with a warning) and replaced.
    let victim = pods_of(&pods, "agent").await[0].1.clone();
    let victim_name = victim.metadata.name.clone().unwrap();
    let failed = json!({"status": {"phase": "Failed"}});
    pods.patch_status(
        &victim_name,
        &PatchParams::default(),
        &Patch::Merge(&failed),
    )
    .await
    .unwrap();
    common::eventually(WAIT, "the failed pod replaced", || async {
        let now = pods_of(&pods, "agent").await;
        let replaced = now
            .iter()
            .all(|(_, p)| p.metadata.name.as_deref() != Some(victim_name.as_str()));
        (replaced && now.len() == 2).then_some(())
    })
    .await;
    let warnings = events(client, "FailedDaemonPod").await;
    assert!(
        warnings
            .iter()
            .any(|m| m.contains(&format!("Found failed daemon pod default/{victim_name}"))),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn a_new_image_rolls_out_node_by_node_and_kubectl_sees_it_finish() {
    let cluster = common::start(&["daemonset"]).await;
    let client = &cluster.client;
    let _kubelet = kubelet(client);
    let daemons: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for node in ["n1", "n2", "n3"] {
        add_node(client, node, json!({})).await;
    }
    daemons
        .create(
            &PostParams::default(),
            &daemon("agent", "agent:1", json!({})),
        )
        .await
        .unwrap();
    let out = kubectl(
        &cluster,
        &["rollout", "status", "daemonset/agent", "--timeout=20s"],
    )
    .await;
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );
    let before = on_nodes(&pods, "agent", &["n1", "n2", "n3"]).await;
    let label = |p: &Pod| p.metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
    let old_hash = label(&before[0]);
    assert!(before.iter().all(|p| label(p) == old_hash));

    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}}});
    daemons
        .patch("agent", &PatchParams::default(), &Patch::Strategic(&image))
        .await
        .unwrap();
    let out = kubectl(
        &cluster,
        &["rollout", "status", "daemonset/agent", "--timeout=20s"],
    )
    .await;
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );

    let after = on_nodes(&pods, "agent", &["n1", "n2", "n3"]).await;
    let new_hash = label(&after[0]);
    assert_ne!(new_hash, old_hash);
    for pod in &after {
        assert_eq!(label(pod), new_hash);
        let image = pod.spec.as_ref().unwrap().containers[0].image.as_deref();
        assert_eq!(image, Some("agent:2"));
    }
    let ds = daemons.get("agent").await.unwrap();
    let status = ds.status.unwrap();
    assert_eq!(status.observed_generation, ds.metadata.generation);
    assert_eq!(status.updated_number_scheduled, Some(3));

    // Both templates are kept as ControllerRevisions named for their hash.
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let mut kept: Vec<(String, i64)> = revisions
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| (r.metadata.name.unwrap(), r.revision))
        .collect();
    kept.sort_by_key(|(_, n)| *n);
    assert_eq!(
        kept,
        [
            (format!("agent-{old_hash}"), 1),
            (format!("agent-{new_hash}"), 2)
        ]
    );
    let history = kubectl(&cluster, &["rollout", "history", "daemonset/agent"]).await;
    assert!(history.contains('1') && history.contains('2'), "{history}");
}
