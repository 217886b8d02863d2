//! The StatefulSet controller against an in-process API server. The tests
//! play scheduler and kubelet: they bind pods, report them Running and
//! Ready, and finish their graceful deletion.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn web(replicas: i32, extra_spec: Value) -> StatefulSet {
    let mut spec = json!({
        "replicas": replicas,
        "serviceName": "nginx",
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}
        }
    });
    for (k, v) in extra_spec.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": spec})).unwrap()
}

/// Play scheduler and kubelet for `name`: bind it to node-1, then report it
/// Running and Ready.
async fn run_pod(pods: &Api<Pod>, name: &str) {
    let pod = pods.get(name).await.unwrap();
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_none()
    {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}
        });
        let _: Value = pods
            .create_subresource("binding", name, &PostParams::default(), &binding)
            .await
            .unwrap();
    }
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": Timestamp::now().to_string()}]
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Finish a graceful deletion, as the kubelet does once containers stop.
async fn finish_deletion(pods: &Api<Pod>, name: &str) {
    let _ = pods
        .delete(name, &DeleteParams::default().grace_period(0))
        .await;
}

async fn pod(pods: &Api<Pod>, name: &str) -> Option<Pod> {
    pods.get_opt(name).await.unwrap()
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn label<'a>(pod: &'a Pod, key: &str) -> &'a str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map_or("", String::as_str)
}

/// Wait for pod `name` to exist (a new one, if `not_uid` is given).
async fn created(pods: &Api<Pod>, name: &str, not_uid: Option<&str>) -> Pod {
    common::eventually(WAIT, &format!("pod {name} created"), || async {
        pod(pods, name)
            .await
            .filter(|p| not_uid.is_none() || p.metadata.uid.as_deref() != not_uid)
    })
    .await
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

async fn event_recorded(client: &kube::Client, reason: &str, message: &str) {
    common::eventually(WAIT, &format!("event {reason} {message:?}"), || async {
        events(client, reason)
            .await
            .iter()
            .any(|m| m == message)
            .then_some(())
    })
    .await;
}

async fn status_where(
    sets: &Api<StatefulSet>,
    what: &str,
    check: impl Fn(&k8s_openapi::api::apps::v1::StatefulSetStatus) -> bool,
) -> StatefulSet {
    common::eventually(WAIT, what, || async {
        let set = sets.get("web").await.unwrap();
        set.status.as_ref().is_some_and(&check).then_some(set)
    })
    .await
}

#[tokio::test]
async fn pods_are_created_in_order_and_scaled_down_in_reverse() {
    let cluster = common::start(&["statefulset"]).await;
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    sets.create(&PostParams::default(), &web(3, json!({})))
        .await
        .unwrap();

    let web0 = created(&pods, "web-0", None).await;
    // web-1 waits for web-0 to be Running and Ready.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pod(&pods, "web-1").await.is_none(),
        "web-1 before web-0 is ready"
    );

    let set = sets.get("web").await.unwrap();
    let spec = web0.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    assert_eq!(label(&web0, "statefulset.kubernetes.io/pod-name"), "web-0");
    assert_eq!(label(&web0, "apps.kubernetes.io/pod-index"), "0");
    let revision = label(&web0, "controller-revision-hash");
    assert!(revision.starts_with("web-"), "{revision}");
    let owner = &web0.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, set.metadata.uid.clone().unwrap());
    event_recorded(
        &cluster.client,
        "SuccessfulCreate",
        "create Pod web-0 in StatefulSet web successful",
    )
    .await;

    run_pod(&pods, "web-0").await;
    created(&pods, "web-1", None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pod(&pods, "web-2").await.is_none(),
        "web-2 before web-1 is ready"
    );
    run_pod(&pods, "web-1").await;
    created(&pods, "web-2", None).await;
    run_pod(&pods, "web-2").await;

    let ready = status_where(&sets, "3 ready replicas", |s| {
        s.ready_replicas == Some(3) && s.available_replicas == Some(3)
    })
    .await;
    let status = ready.status.unwrap();
    assert_eq!(status.replicas, 3);
    assert_eq!(status.current_replicas, Some(3));
    assert_eq!(status.current_revision.as_deref(), Some(revision));
    assert_eq!(status.update_revision.as_deref(), Some(revision));
    assert_eq!(status.observed_generation, ready.metadata.generation);

    // Scale to 1: web-2 goes first, and web-1 only once web-2 is gone.
    let scale = json!({"spec": {"replicas": 1}});
    sets.patch("web", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .unwrap();
    common::eventually(WAIT, "web-2 terminating", || async {
        pod(&pods, "web-2").await.filter(terminating)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !terminating(&pod(&pods, "web-1").await.unwrap()),
        "web-1 deleted before web-2 finished"
    );
    finish_deletion(&pods, "web-2").await;
    common::eventually(WAIT, "web-1 terminating", || async {
        pod(&pods, "web-1").await.filter(terminating)
    })
    .await;
    finish_deletion(&pods, "web-1").await;
    status_where(&sets, "1 replica", |s| {
        s.replicas == 1 && s.ready_replicas == Some(1)
    })
    .await;
    assert!(!terminating(&pod(&pods, "web-0").await.unwrap()));
    event_recorded(
        &cluster.client,
        "SuccessfulDelete",
        "delete Pod web-2 in StatefulSet web successful",
    )
    .await;
}

#[tokio::test]
async fn a_partitioned_rolling_update_replaces_pods_from_the_top_down_to_the_partition() {
    let cluster = common::start(&["statefulset"]).await;
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let strategy =
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}});
    sets.create(&PostParams::default(), &web(3, strategy))
        .await
        .unwrap();
    for name in ["web-0", "web-1", "web-2"] {
        created(&pods, name, None).await;
        run_pod(&pods, name).await;
    }
    let before = status_where(&sets, "3 ready", |s| s.ready_replicas == Some(3)).await;
    let old = before.status.unwrap().current_revision.unwrap();
    let web0_uid = pod(&pods, "web-0").await.unwrap().metadata.uid;

    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:2"}]}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Strategic(&image))
        .await
        .unwrap();

    // The highest ordinal goes first, alone.
    let web2 = common::eventually(WAIT, "web-2 terminating", || async {
        pod(&pods, "web-2").await.filter(terminating)
    })
    .await;
    assert!(!terminating(&pod(&pods, "web-1").await.unwrap()));
    finish_deletion(&pods, "web-2").await;
    let new2 = created(&pods, "web-2", web2.metadata.uid.as_deref()).await;
    let new = label(&new2, "controller-revision-hash").to_string();
    assert_ne!(new, old);
    assert_eq!(
        new2.spec.as_ref().unwrap().containers[0].image.as_deref(),
        Some("nginx:2")
    );
    // web-1 waits for the new web-2 to be ready.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !terminating(&pod(&pods, "web-1").await.unwrap()),
        "web-1 replaced before web-2 was ready"
    );
    run_pod(&pods, "web-2").await;

    let web1 = common::eventually(WAIT, "web-1 terminating", || async {
        pod(&pods, "web-1").await.filter(terminating)
    })
    .await;
    finish_deletion(&pods, "web-1").await;
    let new1 = created(&pods, "web-1", web1.metadata.uid.as_deref()).await;
    assert_eq!(label(&new1, "controller-revision-hash"), new);
    run_pod(&pods, "web-1").await;

    // Below the partition nothing changes, and the update stays open.
    let partial = status_where(&sets, "2 updated", |s| {
        s.updated_replicas == Some(2) && s.ready_replicas == Some(3)
    })
    .await
    .status
    .unwrap();
    assert_eq!(partial.current_revision.as_deref(), Some(old.as_str()));
    assert_eq!(partial.update_revision.as_deref(), Some(new.as_str()));
    assert_eq!(partial.current_replicas, Some(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let web0 = pod(&pods, "web-0").await.unwrap();
    assert_eq!(web0.metadata.uid, web0_uid);
    assert!(!terminating(&web0));
    assert_eq!(label(&web0, "controller-revision-hash"), old);

    // Both templates are kept as numbered ControllerRevisions.
    let revisions: Api<ControllerRevision> = Api::namespaced(cluster.client.clone(), "default");
    let mut numbered: Vec<(String, i64)> = revisions
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| (r.metadata.name.unwrap(), r.revision))
        .collect();
    numbered.sort_by_key(|(_, n)| *n);
    assert_eq!(numbered, [(old.clone(), 1), (new.clone(), 2)]);

    // Partition 0 finishes the rollout: the current revision moves.
    let all = json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Merge(&all))
        .await
        .unwrap();
    common::eventually(WAIT, "web-0 terminating", || async {
        pod(&pods, "web-0").await.filter(terminating)
    })
    .await;
    finish_deletion(&pods, "web-0").await;
    created(&pods, "web-0", web0_uid.as_deref()).await;
    run_pod(&pods, "web-0").await;
    let done = status_where(&sets, "update complete", |s| {
        s.current_revision.as_deref() == Some(new.as_str())
    })
    .await
    .status
    .unwrap();
    assert_eq!(done.current_replicas, Some(3));
    assert_eq!(done.updated_replicas, Some(3));
    let out = kubectl(
        &cluster,
        &["rollout", "status", "statefulset/web", "--timeout=10s"],
    )
    .await;
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );

    // kubectl rollout undo puts the first template back: the equal
    // revision is reused, renumbered 3, and becomes the update revision.
    kubectl(&cluster, &["rollout", "undo", "statefulset/web"]).await;
    status_where(&sets, "the undo observed", |s| {
        s.update_revision.as_deref() == Some(old.as_str())
    })
    .await;
    let renumbered = revisions.get(&old).await.unwrap();
    assert_eq!(renumbered.revision, 3);
}

#[tokio::test]
async fn claims_are_created_for_each_pod_and_parallel_sets_do_not_wait() {
    let cluster = common::start(&["statefulset"]).await;
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client.clone(), "default");
    let extra = json!({
        "podManagementPolicy": "Parallel",
        "volumeClaimTemplates": [{
            "metadata": {"name": "www"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }]
    });
    sets.create(&PostParams::default(), &web(2, extra))
        .await
        .unwrap();

    // Parallel: both pods come without either being ready.
    for ordinal in 0..2 {
        let name = format!("web-{ordinal}");
        let pod = created(&pods, &name, None).await;
        let volume = pod
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "www")
            .cloned()
            .unwrap();
        let claim_name = format!("www-web-{ordinal}");
        assert_eq!(
            volume.persistent_volume_claim.unwrap().claim_name,
            claim_name
        );
        let claim = claims.get(&claim_name).await.unwrap();
        assert_eq!(claim.metadata.labels.unwrap()["app"], "web");
        let requests = claim.spec.unwrap().resources.unwrap().requests.unwrap();
        assert_eq!(requests["storage"].0, "1Gi");
    }
    event_recorded(
        &cluster.client,
        "SuccessfulCreate",
        "create Claim www-web-0 Pod web-0 in StatefulSet web success",
    )
    .await;
}

#[tokio::test]
async fn orphans_are_adopted_and_rolled_and_failed_pods_recreated() {
    let cluster = common::start(&["statefulset"]).await;
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    // An orphan named as the set's first member, with its labels.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-0", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}
    }))
    .unwrap();
    let orphan = pods.create(&PostParams::default(), &orphan).await.unwrap();
    let set = sets
        .create(&PostParams::default(), &web(1, json!({})))
        .await
        .unwrap();
    let adopted = common::eventually(WAIT, "web-0 adopted", || async {
        pod(&pods, "web-0")
            .await
            .filter(|p| p.metadata.owner_references.is_some())
    })
    .await;
    assert_eq!(adopted.metadata.uid, orphan.metadata.uid);
    assert_eq!(
        adopted.metadata.owner_references.unwrap()[0].uid,
        set.metadata.uid.unwrap()
    );
    // Once it runs, its identity labels are put back.
    run_pod(&pods, "web-0").await;
    common::eventually(WAIT, "web-0 relabelled", || async {
        pod(&pods, "web-0")
            .await
            .filter(|p| label(p, "statefulset.kubernetes.io/pod-name") == "web-0")
    })
    .await;

    // It is not at the set's revision, so the rolling update replaces it.
    common::eventually(WAIT, "the adopted pod replaced", || async {
        pod(&pods, "web-0").await.filter(terminating)
    })
    .await;
    finish_deletion(&pods, "web-0").await;
    let current = created(&pods, "web-0", orphan.metadata.uid.as_deref()).await;
    let set = sets.get("web").await.unwrap();
    let update = set
        .status
        .and_then(|s| s.update_revision)
        .unwrap_or_default();
    assert_eq!(label(&current, "controller-revision-hash"), update);
    run_pod(&pods, "web-0").await;

    // A failed pod is deleted (a terminal pod goes at once) and made again.
    let failed = json!({"status": {"phase": "Failed"}});
    pods.patch_status("web-0", &PatchParams::default(), &Patch::Merge(&failed))
        .await
        .unwrap();
    let again = created(&pods, "web-0", current.metadata.uid.as_deref()).await;
    assert_eq!(label(&again, "statefulset.kubernetes.io/pod-name"), "web-0");
    assert!(!events(&cluster.client, "SuccessfulDelete").await.is_empty());
}
