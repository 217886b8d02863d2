//! The horizontal pod autoscaler against an in-process API server: it
//! reads a Deployment's `/scale`, its pods' requests and (from a fake
//! metrics source) their usage, and writes the scale and its status as
//! `kubectl get hpa` / `describe hpa` show them.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tugboat_controller_manager::context::Settings;
use tugboat_controller_manager::controllers::hpa::{
    self, ContainerMetrics, MetricsSource, PodMetrics,
};

const WAIT: Duration = Duration::from_secs(15);

/// Usage per pod name, set by the test.
#[derive(Default, Clone)]
struct FakeMetrics(Arc<Mutex<BTreeMap<String, i64>>>);

impl FakeMetrics {
    fn set(&self, pod: &str, millicores: i64) {
        self.0.lock().unwrap().insert(pod.to_string(), millicores);
    }
}

impl MetricsSource for FakeMetrics {
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        _selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, String>> {
        let usage = self.0.lock().unwrap().clone();
        Box::pin(async move {
            Ok(usage
                .into_iter()
                .map(|(name, cpu)| PodMetrics {
                    namespace: namespace.to_string(),
                    name,
                    timestamp: Timestamp::now(),
                    window: Duration::from_secs(15),
                    containers: vec![ContainerMetrics {
                        name: "web".into(),
                        usage: [("cpu".to_string(), Quantity(format!("{cpu}m")))].into(),
                    }],
                })
                .collect())
        })
    }
}

fn settings() -> Settings {
    Settings {
        hpa_sync_period: Duration::from_millis(500),
        hpa_downscale_stabilization: Duration::from_secs(2),
        ..Settings::default()
    }
}

async fn deployment(client: &kube::Client, replicas: i32) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "100m"}}}]},
            },
        },
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
}

/// A running, ready pod of the Deployment, started an hour ago (as the
/// kubelet would report it), requesting 100m cpu.
async fn pod(client: &kube::Client, name: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "100m"}}}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let started = Timestamp::now() - SignedDuration::from_hours(1);
    let status = json!({"status": {
        "phase": "Running",
        "startTime": started.to_string(),
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": started.to_string()}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

async fn create_hpa(client: &kube::Client, target: &str) {
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let h: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
        },
    }))
    .unwrap();
    hpas.create(&PostParams::default(), &h).await.unwrap();
}

async fn replicas(client: &kube::Client) -> i32 {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = deployments.get("web").await.unwrap();
    d.spec.unwrap().replicas.unwrap()
}

/// The HPA's condition of `type_`: (status, reason, message).
fn condition(hpa: &HorizontalPodAutoscaler, type_: &str) -> Option<(String, String, String)> {
    let c = hpa
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

async fn event(client: &kube::Client, reason: &str) -> Event {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    common::eventually(WAIT, &format!("a {reason} event"), || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason))
    })
    .await
}

#[tokio::test]
async fn hot_pods_scale_a_deployment_up_and_cold_ones_down_after_the_window() {
    let cluster = common::start_with(&[], settings()).await;
    let client = cluster.client.clone();
    let metrics = FakeMetrics::default();
    tokio::spawn(hpa::run_with_metrics(
        cluster.ctx.clone(),
        Arc::new(metrics.clone()),
    ));

    deployment(&client, 2).await;
    for name in ["web-a", "web-b"] {
        pod(&client, name).await;
        // 100m of 100m requested: 100% against a 50% target.
        metrics.set(name, 100);
    }
    create_hpa(&client, "web").await;

    // Twice the target: twice the replicas, through the Deployment's scale.
    common::eventually(WAIT, "the Deployment scaled to 4", || async {
        (replicas(&client).await == 4).then_some(())
    })
    .await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let h = common::eventually(WAIT, "the HPA status", || async {
        let h = hpas.get("web").await.unwrap();
        (h.status.as_ref()?.desired_replicas == 4).then_some(h)
    })
    .await;
    let status = h.status.clone().unwrap();
    assert_eq!(status.current_replicas, Some(2));
    assert!(status.last_scale_time.is_some());
    let current = &status.current_metrics.unwrap()[0];
    assert_eq!(current.type_, "Resource");
    let cpu = current.resource.as_ref().unwrap();
    assert_eq!(
        (cpu.name.as_str(), cpu.current.average_utilization),
        ("cpu", Some(100))
    );
    assert_eq!(cpu.current.average_value, Some(Quantity("100m".into())));
    assert_eq!(
        condition(&h, "AbleToScale").map(|c| c.1),
        Some("SucceededRescale".into())
    );
    assert_eq!(
        condition(&h, "ScalingActive"),
        Some((
            "True".into(),
            "ValidMetricFound".into(),
            "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)".into()
        ))
    );
    let rescaled = event(&client, "SuccessfulRescale").await;
    assert_eq!(
        rescaled.message.as_deref(),
        Some("New size: 4; reason: cpu resource utilization (percentage of request) above target")
    );
    assert_eq!(
        rescaled.source.and_then(|s| s.component).as_deref(),
        Some("horizontal-pod-autoscaler")
    );

    // The Deployment's new pods arrive; the load falls to 10%: one pod
    // would do, but only once the 2 s stabilization window has passed.
    for name in ["web-c", "web-d"] {
        pod(&client, name).await;
    }
    let dropped = Instant::now();
    for name in ["web-a", "web-b", "web-c", "web-d"] {
        metrics.set(name, 10);
    }
    common::eventually(WAIT, "the Deployment scaled down to 1", || async {
        (replicas(&client).await == 1).then_some(())
    })
    .await;
    assert!(
        dropped.elapsed() >= Duration::from_secs(1),
        "scaled down after {:?}, inside the stabilization window",
        dropped.elapsed()
    );
    let h = common::eventually(WAIT, "the HPA status after the scale-down", || async {
        let h = hpas.get("web").await.unwrap();
        (h.status.as_ref()?.desired_replicas == 1).then_some(h)
    })
    .await;
    assert_eq!(h.status.unwrap().current_replicas, Some(4));
}

#[tokio::test]
async fn without_pod_metrics_scaling_is_inactive_and_says_why() {
    // The API server's built-in metrics API answers, but no kubelet
    // reports the pod: upstream's words for an empty PodMetricsList.
    let cluster = common::start_with(&[], settings()).await;
    let client = cluster.client.clone();
    tokio::spawn(hpa::run(cluster.ctx.clone()));
    deployment(&client, 2).await;
    pod(&client, "web-a").await;
    create_hpa(&client, "web").await;

    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let h = common::eventually(WAIT, "ScalingActive False", || async {
        let h = hpas.get("web").await.unwrap();
        condition(&h, "ScalingActive")
            .filter(|c| c.0 == "False")
            .map(|_| h)
    })
    .await;
    let (_, reason, message) = condition(&h, "ScalingActive").unwrap();
    assert_eq!(reason, "FailedGetResourceMetric");
    assert_eq!(
        message,
        "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: no metrics returned from resource metrics API"
    );
    assert_eq!(
        condition(&h, "AbleToScale").map(|c| c.1),
        Some("SucceededGetScale".into())
    );
    let status = h.status.unwrap();
    assert_eq!(
        (status.current_replicas, status.desired_replicas),
        (Some(2), 0)
    );
    event(&client, "FailedGetResourceMetric").await;
    event(&client, "FailedComputeMetricsReplicas").await;
    // Nothing was scaled.
    assert_eq!(replicas(&client).await, 2);
}

#[tokio::test]
async fn a_missing_target_cannot_be_scaled() {
    let cluster = common::start_with(&[], settings()).await;
    let client = cluster.client.clone();
    tokio::spawn(hpa::run_with_metrics(
        cluster.ctx.clone(),
        Arc::new(FakeMetrics::default()),
    ));
    create_hpa(&client, "nope").await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let h = common::eventually(WAIT, "AbleToScale False", || async {
        let h = hpas.get("web").await.unwrap();
        condition(&h, "AbleToScale")
            .filter(|c| c.0 == "False")
            .map(|_| h)
    })
    .await;
    assert_eq!(
        condition(&h, "AbleToScale"),
        Some((
            "False".into(),
            "FailedGetScale".into(),
            "the HPA controller was unable to get the target's current scale: deployments.apps \"nope\" not found".into()
        ))
    );
    event(&client, "FailedGetScale").await;
}
