//! The Deployment controller (with the ReplicaSet controller) against an
//! in-process API server, observed as a kubectl user would. There is no
//! kubelet: a background task plays it, marking pods Running and Ready
//! through `pods/status` a moment after they appear.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

fn deployment(name: &str, replicas: i32, image: &str, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]}
            }
        }
    }))
    .unwrap()
}

fn rolling(surge: serde_json::Value, unavailable: serde_json::Value) -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A stand-in kubelet: every pod in the namespace becomes Running and
/// Ready `delay` after it was first seen. Stops when dropped.
struct Kubelet(tokio::task::JoinHandle<()>);

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn kubelet(client: &kube::Client, ns: &str, delay: Duration) -> Kubelet {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    Kubelet(tokio::spawn(async move {
        let mut first_seen: HashMap<String, Instant> = HashMap::new();
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for pod in list.items {
                    let uid = pod.uid().unwrap_or_default();
                    let seen = *first_seen.entry(uid).or_insert_with(Instant::now);
                    if is_ready(&pod)
                        || pod.metadata.deletion_timestamp.is_some()
                        || seen.elapsed() < delay
                    {
                        continue;
                    }
                    let now = k8s_openapi::jiff::Timestamp::now().to_string();
                    let status = json!({"status": {
                        "phase": "Running",
                        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]
                    }});
                    let _ = pods
                        .patch_status(
                            &pod.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&status),
                        )
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }))
}

/// The lowest count of ready pods and the highest count of pods of `app`
/// seen while sampling.
#[derive(Debug, Default, Clone, Copy)]
struct Extremes {
    min_ready: usize,
    max_pods: usize,
    samples: usize,
}

/// Sample the pods of `app` every 20 ms until dropped; read the extremes
/// with `get`.
struct Sampler {
    task: tokio::task::JoinHandle<()>,
    seen: Arc<Mutex<Extremes>>,
}

impl Sampler {
    fn start(client: &kube::Client, ns: &str, app: &str) -> Sampler {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let seen = Arc::new(Mutex::new(Extremes {
            min_ready: usize::MAX,
            ..Default::default()
        }));
        let selector = format!("app={app}");
        let out = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
                    let live: Vec<&Pod> = list
                        .items
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .collect();
                    let ready = live.iter().filter(|p| is_ready(p)).count();
                    let mut e = out.lock().unwrap();
                    e.min_ready = e.min_ready.min(ready);
                    e.max_pods = e.max_pods.max(live.len());
                    e.samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Sampler { task, seen }
    }

    fn get(&self) -> Extremes {
        *self.seen.lock().unwrap()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The ReplicaSets the Deployment with `uid` controls, by name.
async fn owned_replica_sets(rss: &Api<ReplicaSet>, uid: &str) -> BTreeMap<String, ReplicaSet> {
    rss.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| {
            rs.owner_references()
                .iter()
                .any(|r| r.uid == uid && r.controller == Some(true))
        })
        .map(|rs| (rs.name_any(), rs))
        .collect()
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn annotation<'a>(object: &'a impl ResourceExt, key: &str) -> Option<&'a str> {
    object.annotations().get(key).map(String::as_str)
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String, String)> {
    let c = d
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

/// Wait until the deployment's rollout of its current generation is
/// complete (as `kubectl rollout status` judges it) and return it.
async fn rolled_out(deployments: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    common::eventually(WAIT, "the rollout to finish", || async {
        let d = deployments.get(name).await.unwrap();
        let st = d.status.clone()?;
        let done = st.observed_generation >= d.metadata.generation
            && st.updated_replicas == Some(replicas)
            && st.replicas == Some(replicas)
            && st.available_replicas == Some(replicas);
        done.then_some(d)
    })
    .await
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

async fn kubectl(cluster: &common::Cluster, args: &[&str]) -> String {
    let output = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&cluster.server.kubeconfig)
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {stdout}{stderr}"
    );
    stdout
}

#[tokio::test]
async fn three_replicas_become_available() {
    let cluster = common::start(&["replicaset", "deployment"]).await;
    let _kubelet = kubelet(&cluster.client, "default", Duration::ZERO);
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let created = deployments
        .create(
            &PostParams::default(),
            &deployment("web", 3, "nginx:1.26", rolling(json!(1), json!(0))),
        )
        .await
        .unwrap();

    let d = rolled_out(&deployments, "web", 3).await;
    let st = d.status.clone().unwrap();
    assert_eq!(
        (st.ready_replicas, st.unavailable_replicas),
        (Some(3), None)
    );
    assert_eq!(st.observed_generation, Some(1));
    let available = condition(&d, "Available").unwrap();
    assert_eq!(
        available,
        (
            "True".into(),
            "MinimumReplicasAvailable".into(),
            "Deployment has minimum availability.".into()
        )
    );
    assert_eq!(
        annotation(&d, "deployment.kubernetes.io/revision"),
        Some("1")
    );

    let owned = owned_replica_sets(&rss, &created.uid().unwrap()).await;
    assert_eq!(owned.len(), 1);
    let (rs_name, rs) = owned.iter().next().unwrap();
    let hash = rs.labels()["pod-template-hash"].clone();
    assert_eq!(rs_name, &format!("web-{hash}"));
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()["pod-template-hash"],
        hash
    );
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/revision"),
        Some("1")
    );
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/desired-replicas"),
        Some("3")
    );
    assert_eq!(
        annotation(rs, "deployment.kubernetes.io/max-replicas"),
        Some("4")
    );
    let progressing = condition(&d, "Progressing");
    common::eventually(WAIT, "Progressing NewReplicaSetAvailable", || async {
        let d = deployments.get("web").await.unwrap();
        let c = condition(&d, "Progressing")?;
        (c == (
            "True".into(),
            "NewReplicaSetAvailable".into(),
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
        ))
            .then_some(())
    })
    .await;
    assert!(progressing.is_some());

    // Pods carry the hash and are named after the ReplicaSet.
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 3);
    for pod in &list.items {
        assert_eq!(pod.labels()["pod-template-hash"], hash);
        assert!(pod.name_any().starts_with(&format!("{rs_name}-")));
    }
    let scaled = events(&cluster.client, "default", "ScalingReplicaSet").await;
    assert_eq!(
        scaled,
        [format!("Scaled up replica set {rs_name} from 0 to 3")]
    );
}

#[tokio::test]
async fn an_image_change_rolls_out_without_dropping_below_min_available() {
    let cluster = common::start(&["replicaset", "deployment"]).await;
    // Pods take a moment to become ready, so the rollout has steps to see.
    let _kubelet = kubelet(&cluster.client, "default", Duration::from_millis(150));
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let created = deployments
        .create(
            &PostParams::default(),
            &deployment("web", 3, "nginx:1.26", rolling(json!(1), json!(0))),
        )
        .await
        .unwrap();
    let uid = created.uid().unwrap();
    rolled_out(&deployments, "web", 3).await;
    let first = owned_replica_sets(&rss, &uid)
        .await
        .into_keys()
        .next()
        .unwrap();

    let sampler = Sampler::start(&cluster.client, "default", "web");
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let d = common::eventually(WAIT, "the new template rolled out", || async {
        let d = deployments.get("web").await.unwrap();
        let st = d.status.clone()?;
        let done = st.observed_generation == Some(2)
            && st.updated_replicas == Some(3)
            && st.replicas == Some(3)
            && st.available_replicas == Some(3);
        done.then_some(d)
    })
    .await;
    let seen = sampler.get();
    drop(sampler);
    // maxUnavailable 0: never fewer than 3 ready; maxSurge 1: never more
    // than 4 pods.
    assert!(seen.samples > 5, "{seen:?}");
    assert!(seen.min_ready >= 3, "{seen:?}");
    assert!(seen.max_pods <= 4, "{seen:?}");

    let owned = owned_replica_sets(&rss, &uid).await;
    assert_eq!(owned.len(), 2);
    assert_eq!(replicas(&owned[&first]), 0);
    let (second, new_rs) = owned.iter().find(|(n, _)| **n != first).unwrap();
    assert_eq!(replicas(new_rs), 3);
    assert_eq!(
        annotation(new_rs, "deployment.kubernetes.io/revision"),
        Some("2")
    );
    common::eventually(WAIT, "revision 2 on the deployment", || async {
        let d = deployments.get("web").await.unwrap();
        (annotation(&d, "deployment.kubernetes.io/revision") == Some("2")).then_some(())
    })
    .await;
    assert_eq!(d.status.unwrap().unavailable_replicas, None);

    // Step by step, as upstream words it.
    let scaled = events(&cluster.client, "default", "ScalingReplicaSet").await;
    for message in [
        format!("Scaled up replica set {second} from 0 to 1"),
        format!("Scaled down replica set {first} from 3 to 2"),
        format!("Scaled down replica set {first} from 1 to 0"),
    ] {
        assert!(scaled.contains(&message), "{message} not in {scaled:?}");
    }
}

#[tokio::test]
async fn kubectl_rollout_status_history_and_undo_reuse_the_old_replica_set() {
    let cluster = common::start(&["replicaset", "deployment"]).await;
    let _kubelet = kubelet(&cluster.client, "default", Duration::from_millis(50));
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let uid = deployments
        .create(
            &PostParams::default(),
            &deployment("web", 2, "nginx:1.26", rolling(json!("25%"), json!("25%"))),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    let out = kubectl(
        &cluster,
        &["rollout", "status", "deployment/web", "--timeout=20s"],
    )
    .await;
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let v1 = owned_replica_sets(&rss, &uid)
        .await
        .into_keys()
        .next()
        .unwrap();

    // A second revision, with a change cause.
    let patch = json!({
        "metadata": {"annotations": {"kubernetes.io/change-cause": "image 1.27"}},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}
    });
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let out = kubectl(
        &cluster,
        &["rollout", "status", "deployment/web", "--timeout=20s"],
    )
    .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let history = kubectl(&cluster, &["rollout", "history", "deployment/web"]).await;
    let rows: Vec<Vec<&str>> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [vec!["1", "<none>"], vec!["2", "image", "1.27"]],
        "{history}"
    );

    // Undo: back to the first template, on the first ReplicaSet.
    let out = kubectl(&cluster, &["rollout", "undo", "deployment/web"]).await;
    assert!(out.contains("rolled back"), "{out}");
    let out = kubectl(
        &cluster,
        &["rollout", "status", "deployment/web", "--timeout=20s"],
    )
    .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let owned = owned_replica_sets(&rss, &uid).await;
    assert_eq!(owned.len(), 2, "no third ReplicaSet: {:?}", owned.keys());
    let reused = &owned[&v1];
    assert_eq!(replicas(reused), 2);
    assert_eq!(
        annotation(reused, "deployment.kubernetes.io/revision"),
        Some("3")
    );
    assert_eq!(
        annotation(reused, "deployment.kubernetes.io/revision-history"),
        Some("1")
    );
    let d = deployments.get("web").await.unwrap();
    assert_eq!(
        annotation(&d, "deployment.kubernetes.io/revision"),
        Some("3")
    );
    let image = d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("nginx:1.26"));

    let history = kubectl(&cluster, &["rollout", "history", "deployment/web"]).await;
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");

    // A restart is a new template (an annotation): a new ReplicaSet.
    let out = kubectl(&cluster, &["rollout", "restart", "deployment/web"]).await;
    assert!(out.contains("restarted"), "{out}");
    let out = kubectl(
        &cluster,
        &["rollout", "status", "deployment/web", "--timeout=20s"],
    )
    .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let owned = owned_replica_sets(&rss, &uid).await;
    assert_eq!(owned.len(), 3);
    let restarted: Vec<&ReplicaSet> = owned.values().filter(|rs| replicas(rs) == 2).collect();
    assert_eq!(restarted.len(), 1);
    assert_eq!(
        annotation(restarted[0], "deployment.kubernetes.io/revision"),
        Some("4")
    );
}

#[tokio::test]
async fn a_paused_deployment_scales_but_rolls_out_only_when_resumed() {
    let cluster = common::start(&["replicaset", "deployment"]).await;
    let _kubelet = kubelet(&cluster.client, "default", Duration::ZERO);
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let uid = deployments
        .create(
            &PostParams::default(),
            &deployment("web", 2, "nginx:1.26", rolling(json!(1), json!(0))),
        )
        .await
        .unwrap()
        .uid()
        .unwrap();
    rolled_out(&deployments, "web", 2).await;
    let first = owned_replica_sets(&rss, &uid)
        .await
        .into_keys()
        .next()
        .unwrap();

    // Paused, a new image and more replicas: the old ReplicaSet grows, no
    // new one appears.
    let patch = json!({
        "spec": {
            "paused": true,
            "replicas": 4,
            "template": {"spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}
        }
    });
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    common::eventually(WAIT, "Progressing DeploymentPaused", || async {
        let d = deployments.get("web").await.unwrap();
        let c = condition(&d, "Progressing")?;
        (c == (
            "Unknown".into(),
            "DeploymentPaused".into(),
            "Deployment is paused".into(),
        ))
            .then_some(())
    })
    .await;
    common::eventually(WAIT, "the old ReplicaSet scaled to 4", || async {
        let owned = owned_replica_sets(&rss, &uid).await;
        (replicas(&owned[&first]) == 4).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(owned_replica_sets(&rss, &uid).await.len(), 1);

    // Resumed: the rollout happens.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": false}})),
        )
        .await
        .unwrap();
    rolled_out(&deployments, "web", 4).await;
    let owned = owned_replica_sets(&rss, &uid).await;
    assert_eq!(owned.len(), 2);
    assert_eq!(replicas(&owned[&first]), 0);
    let d = deployments.get("web").await.unwrap();
    assert_eq!(
        annotation(&d, "deployment.kubernetes.io/revision"),
        Some("2")
    );
}

#[tokio::test]
async fn recreate_removes_every_old_pod_before_starting_new_ones() {
    let cluster = common::start(&["replicaset", "deployment"]).await;
    let _kubelet = kubelet(&cluster.client, "default", Duration::ZERO);
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment("db", 2, "postgres:16", json!({"type": "Recreate"})),
        )
        .await
        .unwrap();
    rolled_out(&deployments, "db", 2).await;
    let old_hash = pods
        .list(&ListParams::default().labels("app=db"))
        .await
        .unwrap()
        .items[0]
        .labels()["pod-template-hash"]
        .clone();

    // Watch for old and new pods at the same time.
    let mixed = Arc::new(Mutex::new(false));
    let watcher = {
        let (pods, mixed, old_hash) = (pods.clone(), mixed.clone(), old_hash.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(list) = pods.list(&ListParams::default().labels("app=db")).await {
                    let hashes: Vec<String> = list
                        .items
                        .iter()
                        .map(|p| p.labels()["pod-template-hash"].clone())
                        .collect();
                    if hashes.contains(&old_hash) && hashes.iter().any(|h| *h != old_hash) {
                        *mixed.lock().unwrap() = true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "postgres:17"}]}}}});
    deployments
        .patch("db", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    common::eventually(WAIT, "the new template rolled out", || async {
        let d = deployments.get("db").await.unwrap();
        let st = d.status.clone()?;
        (st.observed_generation == Some(2)
            && st.updated_replicas == Some(2)
            && st.available_replicas == Some(2))
        .then_some(())
    })
    .await;
    watcher.abort();
    assert!(!*mixed.lock().unwrap(), "old and new pods ran side by side");
    let scaled = events(&cluster.client, "default", "ScalingReplicaSet").await;
    assert!(
        scaled.contains(&format!(
            "Scaled down replica set db-{old_hash} from 2 to 0"
        )),
        "{scaled:?}"
    );
}

#[tokio::test]
async fn a_stalled_rollout_exceeds_its_progress_deadline() {
    let cluster = common::start(&["replicaset", "deployment"]).await;
    // No kubelet: the pods never become ready.
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let mut d = deployment("stuck", 2, "nginx:1.26", rolling(json!(1), json!(0)));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(1);
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let (status, reason, message) =
        common::eventually(WAIT, "ProgressDeadlineExceeded", || async {
            let d = deployments.get("stuck").await.unwrap();
            condition(&d, "Progressing").filter(|c| c.1 == "ProgressDeadlineExceeded")
        })
        .await;
    assert_eq!(status, "False");
    assert!(
        message.starts_with("ReplicaSet \"stuck-")
            && message.ends_with("\" has timed out progressing."),
        "{reason}: {message}"
    );
    let output = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&cluster.server.kubeconfig)
        .args(["rollout", "status", "deployment/stuck", "--timeout=10s"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("exceeded its progress deadline"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_hash_collision_bumps_collision_count_and_picks_another_name() {
    use tugboat_controller_manager::controllers::deployment::util::compute_hash;

    let cluster = common::start(&["replicaset", "deployment"]).await;
    let _kubelet = kubelet(&cluster.client, "default", Duration::ZERO);
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    // Paused, so we can learn the (defaulted) template before any
    // ReplicaSet exists, and take its name first.
    let mut d = deployment("web", 1, "nginx:1.26", rolling(json!(1), json!(0)));
    d.spec.as_mut().unwrap().paused = Some(true);
    let d = deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let template = d.spec.clone().unwrap().template;
    let taken = format!("web-{}", compute_hash(&template, None));
    let blocker: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": taken, "labels": {"app": "other"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "other"}},
            "template": {
                "metadata": {"labels": {"app": "other"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}
            }
        }
    }))
    .unwrap();
    rss.create(&PostParams::default(), &blocker).await.unwrap();

    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": false}})),
        )
        .await
        .unwrap();
    let d = rolled_out(&deployments, "web", 1).await;
    assert_eq!(d.status.unwrap().collision_count, Some(1));
    let owned = owned_replica_sets(&rss, &d.metadata.uid.unwrap()).await;
    let names: Vec<&String> = owned.keys().collect();
    assert_eq!(
        names,
        [&format!("web-{}", compute_hash(&template, Some(1)))]
    );
    // The namesake is left alone.
    let blocker = rss.get(&taken).await.unwrap();
    assert!(blocker.owner_references().is_empty());
}
