//! The ServiceAccount controller against an in-process API server.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn every_namespace_gets_a_default_account_and_keeps_it() {
    let cluster = common::start(&["serviceaccount"]).await;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), "team-a");
    let wait = || async { accounts.get_opt("default").await.unwrap() };
    let first = common::eventually(Duration::from_secs(10), "the default account", wait).await;
    // Bootstrap namespaces get one too.
    let system: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), "kube-system");
    common::eventually(
        Duration::from_secs(10),
        "kube-system's default account",
        || async { system.get_opt("default").await.unwrap() },
    )
    .await;

    accounts
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    let again = common::eventually(Duration::from_secs(10), "the account recreated", || async {
        accounts
            .get_opt("default")
            .await
            .unwrap()
            .filter(|sa| sa.metadata.uid != first.metadata.uid)
    })
    .await;
    assert_eq!(again.metadata.name.as_deref(), Some("default"));
}
