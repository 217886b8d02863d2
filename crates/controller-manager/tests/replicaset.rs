//! The ReplicaSet controller against an in-process API server. There is no
//! kubelet: the tests mark pods Running and Ready through `pods/status`.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}
            }
        }
    }))
    .unwrap()
}

/// Play the kubelet: the pod is Running and Ready (since now).
async fn mark_ready(pods: &Api<Pod>, name: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// The pods the ReplicaSet with `uid` controls.
async fn owned_pods(pods: &Api<Pod>, uid: &str) -> Vec<Pod> {
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|r| r.uid == uid && r.controller == Some(true))
        })
        .collect()
}

async fn events(client: &kube::Client, ns: &str, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

#[tokio::test]
async fn scales_up_and_down_deleting_unready_pods_first() {
    let cluster = common::start(&["replicaset"]).await;
    let rss: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let rs = rss
        .create(&PostParams::default(), &replica_set("web", 3))
        .await
        .unwrap();
    let uid = rs.uid().unwrap();

    let created = common::eventually(WAIT, "three pods", || async {
        let list = owned_pods(&pods, &uid).await;
        (list.len() == 3).then_some(list)
    })
    .await;
    for pod in &created {
        let name = pod.name_any();
        assert!(
            name.starts_with("web-") && name.len() == "web-".len() + 5,
            "{name}"
        );
        assert_eq!(pod.labels().get("app").map(String::as_str), Some("web"));
    }
    let messages = common::eventually(WAIT, "SuccessfulCreate events", || async {
        let m = events(&cluster.client, "default", "SuccessfulCreate").await;
        (m.len() == 3).then_some(m)
    })
    .await;
    for pod in &created {
        assert!(messages.contains(&format!("Created pod: {}", pod.name_any())));
    }

    // Two become ready; the status follows.
    let (ready, unready) = (&created[..2], &created[2]);
    for pod in ready {
        mark_ready(&pods, &pod.name_any()).await;
    }
    common::eventually(WAIT, "status 3 replicas, 2 ready", || async {
        let st = rss.get("web").await.unwrap().status?;
        (st.replicas == 3
            && st.ready_replicas == Some(2)
            && st.available_replicas == Some(2)
            && st.fully_labeled_replicas == Some(3)
            && st.observed_generation == Some(1))
        .then_some(())
    })
    .await;

    // Down to 2: the unready pod goes first.
    rss.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    let left = common::eventually(WAIT, "two pods left", || async {
        let list = owned_pods(&pods, &uid).await;
        (list.len() == 2).then_some(list)
    })
    .await;
    assert!(left.iter().all(|p| p.name_any() != unready.name_any()));
    let deleted = common::eventually(WAIT, "a SuccessfulDelete event", || async {
        let m = events(&cluster.client, "default", "SuccessfulDelete").await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(deleted, [format!("Deleted pod: {}", unready.name_any())]);
    common::eventually(WAIT, "status 2 replicas, generation 2", || async {
        let st = rss.get("web").await.unwrap().status?;
        (st.replicas == 2 && st.ready_replicas == Some(2) && st.observed_generation == Some(2))
            .then_some(())
    })
    .await;

    // A deleted pod is replaced.
    pods.delete(&left[0].name_any(), &Default::default())
        .await
        .unwrap();
    common::eventually(WAIT, "a replacement pod", || async {
        let list = owned_pods(&pods, &uid).await;
        (list.len() == 2 && list.iter().all(|p| p.name_any() != left[0].name_any())).then_some(())
    })
    .await;
}

#[tokio::test]
async fn adopts_matching_orphans_and_releases_pods_that_stop_matching() {
    let cluster = common::start(&["replicaset"]).await;
    let rss: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "handmade", "labels": {"app": "api"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();

    let rs = rss
        .create(&PostParams::default(), &replica_set("api", 2))
        .await
        .unwrap();
    let uid = rs.uid().unwrap();
    // The orphan is adopted and only one pod is created beside it.
    let owned = common::eventually(WAIT, "two owned pods", || async {
        let list = owned_pods(&pods, &uid).await;
        (list.len() == 2).then_some(list)
    })
    .await;
    assert!(owned.iter().any(|p| p.name_any() == "handmade"));
    let handmade = pods.get("handmade").await.unwrap();
    let reference = &handmade.owner_references()[0];
    assert_eq!(
        (reference.kind.as_str(), reference.name.as_str()),
        ("ReplicaSet", "api")
    );
    assert_eq!(reference.block_owner_deletion, Some(true));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );

    // Relabelled, it is released and replaced.
    pods.patch(
        "handmade",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "debug"}}})),
    )
    .await
    .unwrap();
    common::eventually(WAIT, "the pod released", || async {
        let pod = pods.get("handmade").await.unwrap();
        pod.owner_references().is_empty().then_some(())
    })
    .await;
    common::eventually(WAIT, "a replacement", || async {
        let list = owned_pods(&pods, &uid).await;
        (list.len() == 2 && list.iter().all(|p| p.name_any() != "handmade")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn min_ready_seconds_delays_availability() {
    let cluster = common::start(&["replicaset"]).await;
    let rss: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let mut rs = replica_set("slow", 1);
    rs.spec.as_mut().unwrap().min_ready_seconds = Some(2);
    let uid = rss
        .create(&PostParams::default(), &rs)
        .await
        .unwrap()
        .uid()
        .unwrap();
    let pod = common::eventually(WAIT, "a pod", || async {
        owned_pods(&pods, &uid).await.into_iter().next()
    })
    .await;
    mark_ready(&pods, &pod.name_any()).await;
    common::eventually(WAIT, "ready but not yet available", || async {
        let st = rss.get("slow").await.unwrap().status?;
        (st.ready_replicas == Some(1) && st.available_replicas.is_none()).then_some(())
    })
    .await;
    // Nothing else happens to the pod: the controller looks again by itself.
    common::eventually(WAIT, "available after minReadySeconds", || async {
        let st = rss.get("slow").await.unwrap().status?;
        (st.available_replicas == Some(1)).then_some(())
    })
    .await;
}
