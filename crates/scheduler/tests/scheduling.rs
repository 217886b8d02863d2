//! The scheduler against an in-process API server: pods get bound where
//! the constraints allow, and a pod that fits nowhere is reported the way
//! kube-scheduler reports it.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};

use serde_json::json;
use test_support::TestServer;

fn node(name: &str, cpu: &str, taints: serde_json::Value) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                   "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"}},
    }))
    .unwrap()
}

fn pod(name: &str, cpu: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]},
    }))
    .unwrap()
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..100 {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_to_a_node_that_fits_and_the_rest_are_reported_unschedulable() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(&PostParams::default(), &node("small", "1", json!([])))
        .await
        .unwrap();
    nodes
        .create(
            &PostParams::default(),
            &node(
                "tainted",
                "8",
                json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
            ),
        )
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn(tugboat_scheduler::run::run(
        client.clone(),
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("fits", "500m"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("too-big", "2"))
        .await
        .unwrap();

    let bound = eventually("the small pod to be bound", async || {
        let p = pods.get("fits").await.ok()?;
        p.spec?.node_name
    })
    .await;
    assert_eq!(bound, "small", "the tainted node is not tolerated");

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let message = eventually("a FailedScheduling event", async || {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=too-big"))
            .await
            .ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedScheduling"))
            .and_then(|e| e.message)
    })
    .await;
    // 2 cpu is more than the small node has at all, and the taint is not
    // tolerated: preemption cannot help on either node (upstream's wording).
    assert_eq!(
        message,
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}. \
         preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    let condition = eventually("PodScheduled=False", async || {
        let p = pods.get("too-big").await.ok()?;
        p.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled")
    })
    .await;
    assert_eq!(condition.status, "False");
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    assert!(pods
        .get("too-big")
        .await
        .unwrap()
        .spec
        .unwrap()
        .node_name
        .is_none());

    // The event is written after the binding is answered: wait for it.
    let scheduled = eventually("the Scheduled event", async || {
        let list = events
            .list(&ListParams::default().fields("involvedObject.name=fits"))
            .await
            .ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("Scheduled"))
            .and_then(|e| e.message)
    })
    .await;
    assert_eq!(scheduled, "Successfully assigned default/fits to small");

    let _ = stop.send(());
    scheduler.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_pod_preempts_a_lower_priority_one_and_takes_its_place() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(&PostParams::default(), &node("only", "1", json!([])))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut victim = pod("low", "800m");
    victim.spec.as_mut().unwrap().node_name = Some("only".into());
    pods.create(&PostParams::default(), &victim).await.unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn(tugboat_scheduler::run::run(
        client.clone(),
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut preemptor = pod("high", "800m");
    preemptor.spec.as_mut().unwrap().priority = Some(1000);
    pods.create(&PostParams::default(), &preemptor)
        .await
        .unwrap();

    // No kubelet here: finish the victim's graceful deletion as one would.
    eventually("the victim to be terminating", async || {
        let p = pods.get_opt("low").await.ok()??;
        p.metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    let nominated = pods
        .get("high")
        .await
        .unwrap()
        .status
        .unwrap()
        .nominated_node_name;
    assert_eq!(nominated.as_deref(), Some("only"));
    pods.delete(
        "low",
        &kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let bound = eventually("the preemptor to be bound", async || {
        pods.get("high").await.ok()?.spec?.node_name
    })
    .await;
    assert_eq!(bound, "only");
    let _ = stop.send(());
    scheduler.await.unwrap().unwrap();
}
