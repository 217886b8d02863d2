//! Integration tests against an in-process API server on memory storage,
//! through kube-rs as a real client.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use test_support::TestServer;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "data": {"k": "v"},
    }))
    .unwrap()
}

#[tokio::test]
async fn objects_are_created_read_patched_listed_and_deleted() {
    let server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let created = cms
        .create(&PostParams::default(), &config_map("a"))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"k2": "v2"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap().len(), 2);
    assert_ne!(
        patched.metadata.resource_version,
        created.metadata.resource_version
    );
    let listed = cms
        .list(&ListParams::default().labels("app=demo"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let err = cms.get("a").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict() {
    let server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
    let created = cms
        .create(&PostParams::default(), &config_map("b"))
        .await
        .unwrap();
    let mut first = created.clone();
    first.data = Some([("k".to_string(), "1".to_string())].into());
    cms.replace("b", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut stale = created;
    stale.data = Some([("k".to_string(), "2".to_string())].into());
    let err = cms
        .replace("b", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );
}

#[tokio::test]
async fn creating_in_a_missing_namespace_is_not_found() {
    let server = TestServer::start().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "nowhere");
    let err = cms
        .create(&PostParams::default(), &config_map("c"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}

mod subresources {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use kube::api::{EvictParams, PostParams};

    fn pod(name: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "guarded"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap()
    }

    async fn bind(client: &kube::Client, name: &str, node: &str) -> Result<(), kube::Error> {
        let request =
            http::Request::post(format!("/api/v1/namespaces/default/pods/{name}/binding"))
                .header("Content-Type", "application/json")
                .body(
                    serde_json::to_vec(&serde_json::json!({
                        "apiVersion": "v1", "kind": "Binding",
                        "metadata": {"name": name},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
                    }))
                    .unwrap(),
                )
                .unwrap();
        client
            .request::<serde_json::Value>(request)
            .await
            .map(|_| ())
    }

    #[tokio::test]
    async fn binding_assigns_a_node_once_and_marks_the_pod_scheduled() {
        let server = TestServer::start().await.unwrap();
        let client = server.client().await.unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        pods.create(&PostParams::default(), &pod("p"))
            .await
            .unwrap();
        bind(&client, "p", "n1").await.unwrap();
        let bound = pods.get("p").await.unwrap();
        assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
        let conditions = bound.status.unwrap().conditions.unwrap();
        assert!(conditions
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True"));
        let err = bind(&client, "p", "n2").await.unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 409),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_bound_pod_is_deleted_gracefully_and_a_forced_delete_finishes_it() {
        let server = TestServer::start().await.unwrap();
        let client = server.client().await.unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        pods.create(&PostParams::default(), &pod("g"))
            .await
            .unwrap();
        bind(&client, "g", "n1").await.unwrap();
        pods.delete("g", &DeleteParams::default()).await.unwrap();
        let terminating = pods.get("g").await.unwrap();
        assert!(terminating.metadata.deletion_timestamp.is_some());
        assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
        pods.delete(
            "g",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(pods.get_opt("g").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn eviction_honours_a_disruption_budget_that_allows_nothing() {
        let server = TestServer::start().await.unwrap();
        let client = server.client_without_retries().await.unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        pods.create(&PostParams::default(), &pod("e"))
            .await
            .unwrap();
        pods.patch_status(
            "e",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
        let budget: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "b"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
        }))
        .unwrap();
        pdbs.create(&PostParams::default(), &budget).await.unwrap();

        pdbs.patch_status(
            "b",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1, "observedGeneration": 1}})),
        )
        .await
        .unwrap();
        let err = pods.evict("e", &EvictParams::default()).await.unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 429),
            "{err:?}"
        );
        assert!(pods.get_opt("e").await.unwrap().is_some());
        pdbs.patch_status(
            "b",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"disruptionsAllowed": 1}})),
        )
        .await
        .unwrap();
        pods.evict("e", &EvictParams::default()).await.unwrap();
        assert!(pods.get_opt("e").await.unwrap().is_none());
        let after = pdbs.get_status("b").await.unwrap().status.unwrap();
        assert_eq!(after.disruptions_allowed, 0);
    }

    #[tokio::test]
    async fn scale_reads_and_writes_replicas_of_the_parent() {
        let server = TestServer::start().await.unwrap();
        let deployments: Api<Deployment> =
            Api::namespaced(server.client().await.unwrap(), "default");
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}},
                     "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        }))
        .unwrap();
        deployments
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        let scale = deployments.get_scale("d").await.unwrap();
        assert_eq!(scale.spec.unwrap().replicas, Some(2));
        assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=d"));
        deployments
            .patch_scale(
                "d",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 4}})),
            )
            .await
            .unwrap();
        let after = deployments.get("d").await.unwrap();
        assert_eq!(after.spec.unwrap().replicas, Some(4));
        assert_eq!(after.metadata.generation, Some(2));
    }
}

mod history {
    use super::*;
    use futures::StreamExt;
    use kube::api::WatchParams;
    use std::sync::Arc;
    use storage::Storage;

    #[tokio::test]
    async fn a_watch_or_continue_from_a_compacted_revision_is_gone() {
        let storage = Arc::new(storage::memory::MemoryStorage::new());
        // A window of 2 events: the watch from `old` is older than the cache
        // holds, so it is served from storage history, which is compacted.
        let server = TestServer::start_configured(storage.clone(), |c| c.watch_cache_window = 2)
            .await
            .unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(server.client().await.unwrap(), "default");
        let first = cms
            .create(&PostParams::default(), &config_map("h0"))
            .await
            .unwrap();
        let old = first.metadata.resource_version.unwrap();
        for i in 1..5 {
            cms.create(&PostParams::default(), &config_map(&format!("h{i}")))
                .await
                .unwrap();
        }
        let page = cms.list(&ListParams::default().limit(2)).await.unwrap();
        let token = page.metadata.continue_.clone().unwrap();
        // One more write, then compaction past the list's revision.
        cms.create(&PostParams::default(), &config_map("h5"))
            .await
            .unwrap();
        storage.compact(storage.current_revision()).await.unwrap();

        let mut events = cms
            .watch(&WatchParams::default(), &old)
            .await
            .unwrap()
            .boxed();
        match events.next().await {
            Some(Ok(kube::api::WatchEvent::Error(status))) => assert_eq!(status.code, 410),
            other => panic!("expected a 410 ERROR event, got {other:?}"),
        }
        let err = cms
            .list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 410),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn requests_past_the_in_flight_limit_get_429_while_watches_still_open() {
    let storage = std::sync::Arc::new(storage::memory::MemoryStorage::new());
    let server = TestServer::start_configured(storage, |c| c.max_in_flight = 0)
        .await
        .unwrap();
    let cms: Api<ConfigMap> =
        Api::namespaced(server.client_without_retries().await.unwrap(), "default");
    let err = cms.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 429 && s.reason == "TooManyRequests"),
        "{err:?}"
    );
    // Long-running requests are not counted, as upstream.
    let watch = cms.watch(&kube::api::WatchParams::default(), "0").await;
    assert!(watch.is_ok(), "{:?}", watch.err());
}

#[tokio::test]
async fn a_lease_is_created_by_put_and_never_overwritten_blindly() {
    use k8s_openapi::api::coordination::v1::Lease;
    let server = TestServer::start().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(server.client().await.unwrap(), "kube-node-lease");
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "n1"},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40},
    }))
    .unwrap();
    let created = leases
        .replace("n1", &PostParams::default(), &lease)
        .await
        .unwrap();
    assert!(created.metadata.resource_version.is_some());
    let err = leases
        .replace("n1", &PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err:?}"
    );
    let mut renewed = created.clone();
    renewed.spec.as_mut().unwrap().lease_duration_seconds = Some(20);
    leases
        .replace("n1", &PostParams::default(), &renewed)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_apply_patch_without_a_field_manager_is_a_bad_request() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n".to_vec();
    let request = |query: &str| {
        http::Request::patch(format!("/api/v1/namespaces/default/configmaps/a{query}"))
            .header("Content-Type", "application/apply-patch+yaml")
            .body(body.clone())
            .unwrap()
    };
    let err = client
        .request::<serde_json::Value>(request(""))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 400),
        "{err:?}"
    );
    let created = client
        .request::<serde_json::Value>(request("?fieldManager=me"))
        .await
        .unwrap();
    assert_eq!(created["metadata"]["managedFields"][0]["manager"], "me");
}

/// Events are not in the watch cache (as upstream's default): lists and
/// watches of them read storage, with the same selectors and event types.
mod events_from_storage {
    use super::*;
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::Event;
    use kube::api::{WatchEvent, WatchParams};

    fn event(name: &str, about: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": about},
            "reason": "Started", "message": "started", "type": "Normal", "count": 1,
        }))
        .unwrap()
    }

    /// Creates event `name` about pod `about`.
    async fn create(events: &Api<Event>, name: &str, about: &str) {
        events
            .create(&PostParams::default(), &event(name, about))
            .await
            .unwrap();
    }

    async fn next(
        events: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<Event>>> + Unpin),
    ) -> WatchEvent<Event> {
        tokio::time::timeout(std::time::Duration::from_secs(10), events.try_next())
            .await
            .expect("a watch event within 10 s")
            .unwrap()
            .expect("the watch still open")
    }

    #[tokio::test]
    async fn lists_and_watches_of_events_select_and_follow_changes() {
        let server = TestServer::start().await.unwrap();
        let events: Api<Event> = Api::namespaced(server.client().await.unwrap(), "default");
        create(&events, "a.1", "a").await;
        create(&events, "b.1", "b").await;

        let about_a = ListParams::default().fields("involvedObject.name=a");
        let listed = events.list(&about_a).await.unwrap();
        let names: Vec<_> = listed
            .iter()
            .map(|e| e.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a.1"]);
        let rv = listed.metadata.resource_version.unwrap();
        assert_eq!(
            events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
            2
        );

        // From the list's revision: only changes, only those about `a`.
        let wp = WatchParams::default().fields("involvedObject.name=a");
        let mut changes = events.watch(&wp, &rv).await.unwrap().boxed();
        create(&events, "b.2", "b").await;
        create(&events, "a.2", "a").await;
        match next(&mut changes).await {
            WatchEvent::Added(e) => assert_eq!(e.metadata.name.as_deref(), Some("a.2")),
            other => panic!("expected a.2 ADDED, got {other:?}"),
        }
        events
            .patch(
                "a.2",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"count": 2})),
            )
            .await
            .unwrap();
        match next(&mut changes).await {
            WatchEvent::Modified(e) => assert_eq!(e.count, Some(2)),
            other => panic!("expected a.2 MODIFIED, got {other:?}"),
        }
        events
            .delete("a.2", &DeleteParams::default())
            .await
            .unwrap();
        match next(&mut changes).await {
            WatchEvent::Deleted(e) => assert_eq!(e.metadata.name.as_deref(), Some("a.2")),
            other => panic!("expected a.2 DELETED, got {other:?}"),
        }

        // Without a revision: the current events first, as ADDED.
        let mut initial = events.watch(&wp, "0").await.unwrap().boxed();
        match next(&mut initial).await {
            WatchEvent::Added(e) => assert_eq!(e.metadata.name.as_deref(), Some("a.1")),
            other => panic!("expected a.1 ADDED, got {other:?}"),
        }
    }
}
