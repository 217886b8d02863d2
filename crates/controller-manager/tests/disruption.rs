//! The disruption controller against an in-process API server: a
//! PodDisruptionBudget's status follows its pods' readiness, percentages
//! resolve against the owning Deployment's scale, and the eviction
//! subresource obeys the computed `disruptionsAllowed`.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};
use tugboat_controller_manager::controllers::disruption;

const WAIT: Duration = Duration::from_secs(10);

/// A client that reports a 429 at once, as kubectl shows it, instead of
/// retrying it with backoff as kube's default client does.
async fn client_without_retries(cluster: &common::Cluster) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(&cluster.server.kubeconfig).unwrap();
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

async fn create<K>(api: &Api<K>, body: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(body).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap()
}

/// Play the kubelet: the pod runs, ready or not.
async fn set_ready(pods: &Api<Pod>, name: &str, ready: bool) {
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [{
            "type": "Ready",
            "status": if ready { "True" } else { "False" },
            "lastTransitionTime": Timestamp::now().to_string(),
        }],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// The budget's (currentHealthy, desiredHealthy, expectedPods,
/// disruptionsAllowed, DisruptionAllowed reason) once it equals `want`.
async fn wait_status(
    pdbs: &Api<PodDisruptionBudget>,
    name: &str,
    want: (i32, i32, i32, i32, &str),
) -> PodDisruptionBudget {
    common::eventually(WAIT, &format!("PDB status {want:?}"), || async {
        let pdb = pdbs.get(name).await.unwrap();
        let status = pdb.status.clone().unwrap_or_default();
        let reason = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "DisruptionAllowed")
            .map(|c| c.reason.clone())
            .unwrap_or_default();
        let got = (
            status.current_healthy,
            status.desired_healthy,
            status.expected_pods,
            status.disruptions_allowed,
            reason,
        );
        ((got.0, got.1, got.2, got.3, got.4.as_str()) == want).then_some(pdb)
    })
    .await
}

#[tokio::test]
async fn budget_status_follows_readiness_and_guards_evictions() {
    let cluster = common::start(&[]).await;
    tokio::spawn(disruption::run(cluster.ctx.clone()));
    let client = cluster.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");

    // A Deployment of 3 with its ReplicaSet and pods, as the deployment and
    // replicaset controllers would leave them.
    let template = json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    });
    let deployment = create(&deployments, json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template},
    }))
    .await;
    let rs = create(&replica_sets, json!({
        "metadata": {"name": "web-1", "labels": {"app": "web"}, "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
            "uid": deployment.metadata.uid, "controller": true,
        }]},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template},
    }))
    .await;
    for name in ["web-a", "web-b", "web-c"] {
        create(
            &pods,
            json!({
                "metadata": {"name": name, "labels": {"app": "web"}, "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                    "uid": rs.metadata.uid, "controller": true,
                }]},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            }),
        )
        .await;
    }
    create(
        &pdbs,
        json!({
            "metadata": {"name": "web"},
            "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}},
        }),
    )
    .await;

    // 50% of the Deployment's 3, rounded up, must stay healthy; none is
    // ready yet.
    let pdb = wait_status(&pdbs, "web", (0, 2, 3, 0, "InsufficientPods")).await;
    assert_eq!(pdb.status.unwrap().observed_generation, Some(1));

    for name in ["web-a", "web-b", "web-c"] {
        set_ready(&pods, name, true).await;
    }
    wait_status(&pdbs, "web", (3, 2, 3, 1, "SufficientPods")).await;

    set_ready(&pods, "web-c", false).await;
    wait_status(&pdbs, "web", (2, 2, 3, 0, "InsufficientPods")).await;
    set_ready(&pods, "web-c", true).await;
    wait_status(&pdbs, "web", (3, 2, 3, 1, "SufficientPods")).await;

    // One eviction is allowed; it takes the budget's allowance, and the
    // evicted pod, now terminating, no longer counts as healthy.
    pods.evict("web-a", &EvictParams::default()).await.unwrap();
    wait_status(&pdbs, "web", (2, 2, 3, 0, "InsufficientPods")).await;
    let impatient: Api<Pod> = Api::namespaced(client_without_retries(&cluster).await, "default");
    let refused = impatient.evict("web-b", &EvictParams::default()).await;
    match refused {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 429, "{e:?}");
            assert!(
                e.message
                    .contains("disruption budget web needs 2 healthy pods and has 2 currently"),
                "{}",
                e.message
            );
        }
        other => panic!("the second eviction should be refused, got {other:?}"),
    }

    // Scaling the Deployment moves what a percentage means.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    // Any pod change makes the controller look again.
    set_ready(&pods, "web-b", true).await;
    wait_status(&pdbs, "web", (2, 2, 4, 0, "InsufficientPods")).await;
}

#[tokio::test]
async fn a_budget_without_pods_allows_nothing_and_says_so() {
    let cluster = common::start(&[]).await;
    tokio::spawn(disruption::run(cluster.ctx.clone()));
    let client = cluster.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    create(
        &pdbs,
        json!({
            "metadata": {"name": "solo"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "solo"}}},
        }),
    )
    .await;
    wait_status(&pdbs, "solo", (0, 0, 0, 0, "InsufficientPods")).await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    common::eventually(WAIT, "a NoPods event", || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("NoPods"))
            .filter(|e| e.message.as_deref() == Some("No matching pods found"))
    })
    .await;

    // A pod without a controller cannot be counted against maxUnavailable
    // (upstream: expectedPods 0, an UnmanagedPods warning); an integer
    // minAvailable counts it as is.
    create(
        &pods,
        json!({
            "metadata": {"name": "solo", "labels": {"app": "solo"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }),
    )
    .await;
    set_ready(&pods, "solo", true).await;
    wait_status(&pdbs, "solo", (1, 0, 0, 0, "InsufficientPods")).await;
    common::eventually(WAIT, "an UnmanagedPods warning", || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("UnmanagedPods"))
    })
    .await;
    pdbs.patch(
        "solo",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"maxUnavailable": null, "minAvailable": 0}})),
    )
    .await
    .unwrap();
    let pdb = wait_status(&pdbs, "solo", (1, 0, 1, 1, "SufficientPods")).await;
    assert_eq!(pdb.status.unwrap().observed_generation, Some(2));
}
