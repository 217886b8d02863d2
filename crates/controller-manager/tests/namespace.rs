//! The namespace controller against an in-process API server: deleting a
//! namespace deletes everything in it, then the namespace itself.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, NamespaceCondition, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tugboat_controller_manager::controllers::{garbagecollector, namespace};

const PATIENCE: Duration = Duration::from_secs(15);

/// A server with the namespace controller (and the garbage collector, if
/// asked) running.
async fn start(with_gc: bool) -> common::Cluster {
    let cluster = common::start(&[]).await;
    tokio::spawn(namespace::run(cluster.ctx.clone()));
    if with_gc {
        tokio::spawn(garbagecollector::run(cluster.ctx.clone()));
    }
    cluster
}

async fn create<K>(client: &kube::Client, ns: &str, object: serde_json::Value) -> K
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let object: K = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap()
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
}

fn pod_json(name: &str, node: Option<&str>, grace: i64) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": grace,
            "containers": [{"name": "c", "image": "nginx"}],
        },
    })
}

async fn namespace_gone(namespaces: &Api<Namespace>, name: &str) -> Option<()> {
    namespaces
        .get_opt(name)
        .await
        .unwrap()
        .is_none()
        .then_some(())
}

fn condition(ns: &Namespace, type_: &str) -> Option<NamespaceCondition> {
    ns.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_content_then_the_namespace() {
    let cluster = start(false).await;
    let client = &cluster.client;
    create_namespace(client, "team-a").await;
    create::<Pod>(client, "team-a", pod_json("web", None, 30)).await;
    create::<ConfigMap>(client, "team-a", json!({"metadata": {"name": "config"}})).await;
    create::<Secret>(client, "team-a", json!({"metadata": {"name": "token"}})).await;
    create::<Service>(
        client,
        "team-a",
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    // A neighbour is left alone.
    create_namespace(client, "team-b").await;
    create::<ConfigMap>(client, "team-b", json!({"metadata": {"name": "config"}})).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("team-a", &DeleteParams::default())
        .await
        .unwrap();
    common::eventually(PATIENCE, "team-a deleted", || {
        namespace_gone(&namespaces, "team-a")
    })
    .await;

    let in_a = |kind: &str| format!("{kind} in team-a");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team-a");
    assert!(
        pods.get_opt("web").await.unwrap().is_none(),
        "{}",
        in_a("pod")
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    assert!(
        cms.get_opt("config").await.unwrap().is_none(),
        "{}",
        in_a("configmap")
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team-a");
    assert!(
        secrets.get_opt("token").await.unwrap().is_none(),
        "{}",
        in_a("secret")
    );
    let services: Api<Service> = Api::namespaced(client.clone(), "team-a");
    assert!(
        services.get_opt("web").await.unwrap().is_none(),
        "{}",
        in_a("service")
    );

    let b_cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team-b");
    assert!(b_cms.get_opt("config").await.unwrap().is_some());
    assert!(namespaces.get_opt("team-b").await.unwrap().is_some());
}

#[tokio::test]
async fn a_pod_in_its_grace_period_holds_the_namespace_until_the_kubelet_is_done() {
    let cluster = start(false).await;
    let client = &cluster.client;
    create_namespace(client, "draining").await;
    // Bound to a node: its deletion waits for the kubelet.
    create::<Pod>(client, "draining", pod_json("worker", Some("node-1"), 4)).await;
    create::<ConfigMap>(client, "draining", json!({"metadata": {"name": "config"}})).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("draining", &DeleteParams::default())
        .await
        .unwrap();
    let ns = common::eventually(PATIENCE, "the remaining pod reported", || async {
        let ns = namespaces.get("draining").await.unwrap();
        let remaining = condition(&ns, "NamespaceContentRemaining")?;
        (remaining.status == "True").then_some(ns)
    })
    .await;
    let remaining = condition(&ns, "NamespaceContentRemaining").unwrap();
    assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
    assert_eq!(
        remaining.message.as_deref(),
        Some("Some resources are remaining: pods. has 1 resource instances")
    );
    assert_eq!(
        condition(&ns, "NamespaceDeletionContentFailure")
            .unwrap()
            .status,
        "False"
    );
    assert_eq!(
        ns.status.as_ref().unwrap().phase.as_deref(),
        Some("Terminating")
    );
    // Everything else is already gone; the pod is terminating.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "draining");
    assert!(cms.get_opt("config").await.unwrap().is_none());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "draining");
    let pod = pods.get("worker").await.unwrap();
    assert!(pod.metadata.deletion_timestamp.is_some());

    // Still held a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(namespaces.get_opt("draining").await.unwrap().is_some());

    // The kubelet finishes the pod.
    pods.delete("worker", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    common::eventually(PATIENCE, "the namespace deleted", || {
        namespace_gone(&namespaces, "draining")
    })
    .await;
}

#[tokio::test]
async fn an_object_held_by_a_finalizer_holds_the_namespace() {
    let cluster = start(false).await;
    let client = &cluster.client;
    create_namespace(client, "held").await;
    create::<ConfigMap>(
        client,
        "held",
        json!({"metadata": {"name": "precious", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let ns = common::eventually(PATIENCE, "the finalizer reported", || async {
        let ns = namespaces.get("held").await.unwrap();
        let finalizers = condition(&ns, "NamespaceFinalizersRemaining")?;
        (finalizers.status == "True").then_some(ns)
    })
    .await;
    assert_eq!(
        condition(&ns, "NamespaceFinalizersRemaining")
            .unwrap()
            .message
            .as_deref(),
        Some("Some finalizers are remaining: example.com/hold in 1 resource instances")
    );
    assert_eq!(
        condition(&ns, "NamespaceContentRemaining")
            .unwrap()
            .message
            .as_deref(),
        Some("Some resources are remaining: configmaps. has 1 resource instances")
    );

    // Whoever owns the finalizer lets go.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    cms.patch(
        "precious",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    common::eventually(Duration::from_secs(20), "the namespace deleted", || {
        namespace_gone(&namespaces, "held")
    })
    .await;
}

/// Both controllers, driven by the real kubectl: `kubectl delete namespace`
/// waits until the namespace is gone.
#[tokio::test]
async fn kubectl_delete_namespace_with_owned_objects() {
    let cluster = start(true).await;
    let client = &cluster.client;
    create_namespace(client, "shop").await;
    let owner: ConfigMap = create(client, "shop", json!({"metadata": {"name": "owner"}})).await;
    for i in 0..3 {
        create::<Pod>(
            client,
            "shop",
            json!({
                "metadata": {
                    "name": format!("owned-{i}"),
                    "ownerReferences": [{
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner.metadata.uid,
                        "blockOwnerDeletion": true,
                    }],
                },
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            }),
        )
        .await;
    }
    let out = tokio::process::Command::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
        .arg("--kubeconfig")
        .arg(&cluster.server.kubeconfig)
        .args(["delete", "namespace", "shop", "--timeout=20s"])
        .output()
        .await
        .expect("kubectl 1.33 runs");
    assert!(
        out.status.success(),
        "kubectl delete namespace failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace \"shop\" deleted"
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt("shop").await.unwrap().is_none());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    assert!(pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty());
}
