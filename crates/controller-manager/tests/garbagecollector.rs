//! The garbage collector against an in-process API server: what a user
//! sees after deleting an owner with each propagation policy.

mod common;

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::Resource;
use serde_json::json;
use tugboat_controller_manager::controllers::garbagecollector;

const PATIENCE: Duration = Duration::from_secs(15);

/// A server with the garbage collector running.
async fn start() -> common::Cluster {
    let cluster = common::start(&[]).await;
    tokio::spawn(garbagecollector::run(cluster.ctx.clone()));
    cluster
}

fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap(),
        uid: owner.meta().uid.clone().unwrap(),
        controller: None,
        block_owner_deletion: Some(block),
    }
}

async fn config_map(
    client: &kube::Client,
    ns: &str,
    name: &str,
    owners: Vec<OwnerReference>,
) -> ConfigMap {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": owners},
        "data": {"k": "v"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap()
}

/// A pod; with `node` it is bound, so deleting it is graceful and waits
/// for the kubelet (here: the test).
async fn pod(
    client: &kube::Client,
    ns: &str,
    name: &str,
    node: Option<&str>,
    owners: Vec<OwnerReference>,
) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": owners},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "nginx"}],
        },
    }))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap()
}

async fn gone<K>(api: &Api<K>, name: &str) -> Option<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.unwrap().is_none().then_some(())
}

/// Let the collector's watches observe what was just created. A user
/// deletes an owner long after its dependents exist; the collector's graph
/// (like upstream's) only knows what its watches delivered, so a dependent
/// created a moment before a foreground or orphan deletion could be missed.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn delete_with(policy: PropagationPolicy) -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(policy),
        ..Default::default()
    }
}

#[tokio::test]
async fn background_deletion_removes_what_only_the_deleted_owner_owned() {
    let cluster = start().await;
    let client = &cluster.client;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let owner = config_map(client, "default", "owner", vec![]).await;
    let other = config_map(client, "default", "other", vec![]).await;
    config_map(client, "default", "dep-1", vec![owner_ref(&owner, false)]).await;
    config_map(client, "default", "dep-2", vec![owner_ref(&owner, true)]).await;
    pod(
        client,
        "default",
        "dep-pod",
        None,
        vec![owner_ref(&owner, true)],
    )
    .await;
    config_map(
        client,
        "default",
        "shared",
        vec![owner_ref(&owner, false), owner_ref(&other, false)],
    )
    .await;

    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();

    for name in ["dep-1", "dep-2"] {
        common::eventually(PATIENCE, &format!("{name} collected"), || gone(&cms, name)).await;
    }
    common::eventually(PATIENCE, "the pod collected", || gone(&pods, "dep-pod")).await;
    // An object with another owner alive stays, without the dangling
    // reference.
    let shared = common::eventually(PATIENCE, "shared's dangling reference removed", || async {
        let cm = cms.get("shared").await.unwrap();
        (cm.metadata.owner_references.as_ref().map(Vec::len) == Some(1)).then_some(cm)
    })
    .await;
    assert_eq!(
        shared.metadata.owner_references.unwrap()[0].name,
        "other",
        "the living owner's reference is kept"
    );
    assert!(cms.get_opt("other").await.unwrap().is_some());
}

#[tokio::test]
async fn dependents_of_owners_that_never_existed_or_were_replaced_are_collected() {
    let cluster = start().await;
    let client = &cluster.client;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // An owner the collector never saw: verified absent by a live lookup.
    let ghost = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "ghost".into(),
        uid: "00000000-0000-0000-0000-000000000000".into(),
        ..Default::default()
    };
    // An owner whose name now belongs to another object (another UID).
    let replaced = config_map(client, "default", "replaced", vec![]).await;
    let stale = owner_ref(&replaced, false);
    cms.delete("replaced", &DeleteParams::default())
        .await
        .unwrap();
    config_map(client, "default", "replaced", vec![]).await;
    // A namespaced owner named from another namespace is not its owner.
    let elsewhere = config_map(client, "kube-public", "elsewhere", vec![]).await;

    for (name, owner) in [
        ("of-ghost", ghost),
        ("of-replaced", stale),
        ("of-elsewhere", owner_ref(&elsewhere, false)),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": [owner]},
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
    for name in ["of-ghost", "of-replaced", "of-elsewhere"] {
        common::eventually(PATIENCE, &format!("{name} collected"), || {
            gone(&secrets, name)
        })
        .await;
    }
    // The namespace mismatch is reported as upstream does.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    common::eventually(PATIENCE, "an OwnerRefInvalidNamespace event", || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("OwnerRefInvalidNamespace"))
            .filter(|e| e.involved_object.name.as_deref() == Some("of-elsewhere"))
    })
    .await;
    assert!(cms.get_opt("replaced").await.unwrap().is_some());
}

#[tokio::test]
async fn a_cluster_scoped_owner_owns_objects_in_any_namespace() {
    let cluster = start().await;
    let client = &cluster.client;
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "worker-1"}})).unwrap();
    let node = nodes.create(&PostParams::default(), &node).await.unwrap();
    config_map(
        client,
        "default",
        "lease-like",
        vec![owner_ref(&node, false)],
    )
    .await;
    config_map(
        client,
        "kube-public",
        "another",
        vec![owner_ref(&node, false)],
    )
    .await;
    // Still owned while the node lives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let default_cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    assert!(default_cms.get_opt("lease-like").await.unwrap().is_some());

    nodes
        .delete("worker-1", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually(PATIENCE, "default/lease-like collected", || {
        gone(&default_cms, "lease-like")
    })
    .await;
    let public_cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-public");
    common::eventually(PATIENCE, "kube-public/another collected", || {
        gone(&public_cms, "another")
    })
    .await;
}

#[tokio::test]
async fn foreground_deletion_keeps_the_owner_until_blocking_dependents_are_gone() {
    let cluster = start().await;
    let client = &cluster.client;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let owner = config_map(client, "default", "owner", vec![]).await;
    // A bound pod: its deletion is graceful and waits for the kubelet.
    pod(
        client,
        "default",
        "running",
        Some("node-1"),
        vec![owner_ref(&owner, true)],
    )
    .await;
    config_map(client, "default", "free", vec![owner_ref(&owner, false)]).await;

    settle().await;
    cms.delete("owner", &delete_with(PropagationPolicy::Foreground))
        .await
        .unwrap();
    // Every dependent is deleted, blocking or not.
    common::eventually(PATIENCE, "the non-blocking dependent collected", || {
        gone(&cms, "free")
    })
    .await;
    common::eventually(PATIENCE, "the pod terminating", || async {
        let pod = pods.get("running").await.unwrap();
        pod.metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    // The owner waits, visibly being deleted, for the pod.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = cms.get("owner").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        waiting.metadata.finalizers.as_deref(),
        Some(&["foregroundDeletion".to_string()][..])
    );

    // The kubelet finishes the pod; the owner goes.
    pods.delete("running", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    common::eventually(PATIENCE, "the owner deleted", || gone(&cms, "owner")).await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_the_whole_tree() {
    let cluster = start().await;
    let client = &cluster.client;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // owner <- middle <- bound pod, all blocking.
    let owner = config_map(client, "default", "top", vec![]).await;
    let middle = config_map(client, "default", "middle", vec![owner_ref(&owner, true)]).await;
    pod(
        client,
        "default",
        "leaf",
        Some("node-1"),
        vec![owner_ref(&middle, true)],
    )
    .await;

    settle().await;
    cms.delete("top", &delete_with(PropagationPolicy::Foreground))
        .await
        .unwrap();
    // The middle object is deleted in the foreground too, so it waits for
    // the leaf, and the top waits for the middle.
    common::eventually(PATIENCE, "the leaf terminating", || async {
        pods.get("leaf")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .map(|_| ())
    })
    .await;
    let middle = cms.get("middle").await.unwrap();
    assert!(middle.metadata.deletion_timestamp.is_some());
    assert!(cms.get_opt("top").await.unwrap().is_some());

    pods.delete("leaf", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    common::eventually(PATIENCE, "middle deleted", || gone(&cms, "middle")).await;
    common::eventually(PATIENCE, "top deleted", || gone(&cms, "top")).await;
}

#[tokio::test]
async fn orphan_deletion_leaves_dependents_without_the_reference() {
    let cluster = start().await;
    let client = &cluster.client;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let owner = config_map(client, "default", "owner", vec![]).await;
    let other = config_map(client, "default", "other", vec![]).await;
    config_map(client, "default", "dep", vec![owner_ref(&owner, true)]).await;
    pod(
        client,
        "default",
        "dep-pod",
        None,
        vec![owner_ref(&owner, true)],
    )
    .await;
    config_map(
        client,
        "default",
        "shared",
        vec![owner_ref(&owner, true), owner_ref(&other, false)],
    )
    .await;

    settle().await;
    cms.delete("owner", &delete_with(PropagationPolicy::Orphan))
        .await
        .unwrap();
    common::eventually(PATIENCE, "the owner deleted", || gone(&cms, "owner")).await;
    let dep = cms.get("dep").await.unwrap();
    assert_eq!(dep.metadata.owner_references.unwrap_or_default(), []);
    let pod = pods.get("dep-pod").await.unwrap();
    assert_eq!(pod.metadata.owner_references.unwrap_or_default(), []);
    let shared = cms.get("shared").await.unwrap();
    let refs = shared.metadata.owner_references.unwrap_or_default();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "other");
    // And they stay.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cms.get_opt("dep").await.unwrap().is_some());
    assert!(pods.get_opt("dep-pod").await.unwrap().is_some());
}

/// The real kubectl's `--cascade` flag on ReplicaSets and their pods (no
/// ReplicaSet controller runs, so only the collector acts).
#[tokio::test]
async fn kubectl_delete_cascade_orphan_foreground_and_background() {
    let cluster = start().await;
    let client = &cluster.client;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut owned = Vec::new();
    for rs_name in ["kept-pods", "fg", "bg"] {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": rs_name},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": rs_name}},
                "template": {
                    "metadata": {"labels": {"app": rs_name}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                },
            },
        }))
        .unwrap();
        let rs = rss.create(&PostParams::default(), &rs).await.unwrap();
        let mut reference = owner_ref(&rs, true);
        reference.controller = Some(true);
        for i in 0..2 {
            let name = format!("{rs_name}-{i}");
            pod(client, "default", &name, None, vec![reference.clone()]).await;
            owned.push(name);
        }
    }
    let kubectl = |args: &'static [&'static str]| {
        let kubeconfig = cluster.server.kubeconfig.clone();
        async move {
            let out = tokio::process::Command::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(args)
                .output()
                .await
                .expect("kubectl 1.33 runs");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "kubectl {args:?} failed:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            stdout
        }
    };

    settle().await;
    let out = kubectl(&["delete", "replicaset", "kept-pods", "--cascade=orphan"]).await;
    assert_eq!(out.trim(), "replicaset.apps \"kept-pods\" deleted");
    assert!(rss.get_opt("kept-pods").await.unwrap().is_none());
    for name in ["kept-pods-0", "kept-pods-1"] {
        let pod = pods.get(name).await.unwrap();
        assert_eq!(pod.metadata.owner_references.unwrap_or_default(), []);
    }

    // kubectl waits for a foreground deletion to finish, which takes the
    // collector deleting the pods first.
    let out = kubectl(&["delete", "replicaset", "fg", "--cascade=foreground"]).await;
    assert_eq!(out.trim(), "replicaset.apps \"fg\" deleted");
    assert!(rss.get_opt("fg").await.unwrap().is_none());
    for name in ["fg-0", "fg-1"] {
        assert!(
            pods.get_opt(name).await.unwrap().is_none(),
            "{name} deleted before its owner"
        );
    }

    kubectl(&["delete", "replicaset", "bg"]).await;
    for name in ["bg-0", "bg-1"] {
        common::eventually(PATIENCE, &format!("{name} collected"), || gone(&pods, name)).await;
    }
    let left = kubectl(&["get", "pods", "-o", "name"]).await;
    assert_eq!(left.trim(), "pod/kept-pods-0\npod/kept-pods-1");
}

/// Many owners deleted at once: the collector keeps up (upstream's
/// concern is thousands of Deployments with their pods).
#[tokio::test]
async fn deleting_many_owners_collects_their_dependents_quickly() {
    const OWNERS: usize = 500;
    const EACH: usize = 10;
    let cluster = start().await;
    let client = cluster.client.clone();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owners: Vec<ConfigMap> = futures::stream::iter(0..OWNERS)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": format!("owner-{i}"), "labels": {"role": "owner"}},
                }))
                .unwrap();
                cms.create(&PostParams::default(), &cm).await.unwrap()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let dependents = owners
        .iter()
        .flat_map(|o| (0..EACH).map(move |j| (o, j)))
        .map(|(owner, j)| {
            let pods = pods.clone();
            let name = format!("{}-{j}", owner.metadata.name.as_deref().unwrap());
            let reference = owner_ref(owner, true);
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"role": "dependent"}, "ownerReferences": [reference]},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]},
                }))
                .unwrap();
                pods.create(&PostParams::default(), &pod).await.unwrap();
            }
        });
    futures::stream::iter(dependents)
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    let started = Instant::now();
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("role=owner"),
    )
    .await
    .unwrap();
    // One item is enough to know whether any is left.
    let dependents = ListParams::default().labels("role=dependent").limit(1);
    common::eventually(
        Duration::from_secs(25),
        "every dependent collected",
        || async {
            pods.list_metadata(&dependents)
                .await
                .unwrap()
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "collecting {} pods took {took:?}",
        OWNERS * EACH
    );
}
