//! Integration tests against an in-process API server on memory storage,
//! through kube-rs as a real client.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use test_support::TestServer;

async fn client(server: &TestServer) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

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
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
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
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
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
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "nowhere");
    let err = cms
        .create(&PostParams::default(), &config_map("c"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}
