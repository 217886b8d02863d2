//! kube-rs, the Rust client every Tugboat component uses, against the real
//! `tug-apiserver`: typed CRUD, the four patch types, watches, reflectors
//! and paginated lists, each with the client built from the
//! `admin.kubeconfig` the server writes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use tugboat_e2e::ApiServer;

/// Generous bound for anything that should happen "soon"; tests poll.
const SOON: Duration = Duration::from_secs(15);

async fn client(server: &ApiServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).expect("read admin.kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config from admin.kubeconfig");
    Client::try_from(config).expect("kube client")
}

fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let data: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": data,
    }))
    .expect("configmap")
}

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]}
            }
        }
    }))
    .expect("deployment")
}

/// The status code and reason of an API error, or a panic with the error.
fn api_error<T: std::fmt::Debug>(result: kube::Result<T>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn data_of(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

fn rv_number(rv: &str) -> u64 {
    rv.parse()
        .unwrap_or_else(|_| panic!("resourceVersion {rv:?} is not a decimal revision"))
}

#[tokio::test]
async fn configmaps_support_typed_create_get_replace_patch_and_delete() {
    let server = ApiServer::start();
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");

    let created = cms
        .create(
            &PostParams::default(),
            &configmap("settings", &[("color", "blue")]),
        )
        .await
        .expect("create");
    assert_eq!(created.namespace().as_deref(), Some("default"));
    assert!(created.uid().is_some(), "a created object has a uid");
    assert!(
        created.creation_timestamp().is_some(),
        "and a creationTimestamp"
    );
    let first_rv = created.resource_version().expect("resourceVersion");

    // Creating the same name again is 409 AlreadyExists.
    let (code, reason) = api_error(
        cms.create(&PostParams::default(), &configmap("settings", &[]))
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let fetched = cms.get("settings").await.expect("get");
    assert_eq!(data_of(&fetched)["color"], "blue");
    assert_eq!(fetched.uid(), created.uid());

    // Replace with the current resourceVersion succeeds and bumps it.
    let mut update = fetched.clone();
    update
        .data
        .get_or_insert_default()
        .insert("color".into(), "green".into());
    let replaced = cms
        .replace("settings", &PostParams::default(), &update)
        .await
        .expect("replace");
    assert_eq!(data_of(&replaced)["color"], "green");
    assert_ne!(replaced.resource_version().unwrap(), first_rv);

    // Replacing from the stale copy is a 409 Conflict and changes nothing.
    let mut stale = fetched.clone();
    stale
        .data
        .get_or_insert_default()
        .insert("color".into(), "red".into());
    let (code, reason) = api_error(
        cms.replace("settings", &PostParams::default(), &stale)
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        data_of(&cms.get("settings").await.unwrap())["color"],
        "green"
    );

    // JSON merge patch: null deletes a key.
    let merged = cms
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"size": "L", "color": null}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(
        data_of(&merged),
        BTreeMap::from([("size".to_string(), "L".to_string())])
    );

    // Strategic merge patch on a map merges keys.
    let strategic = cms
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"shape": "round"}})),
        )
        .await
        .expect("strategic patch");
    assert_eq!(data_of(&strategic).len(), 2);
    assert_eq!(data_of(&strategic)["shape"], "round");

    // A patch that pins an old resourceVersion is a conflict too.
    let (code, _) = api_error(
        cms.patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": first_rv}, "data": {"x": "y"}})),
        )
        .await,
    );
    assert_eq!(code, 409);

    // Server-side apply takes over a field and records the manager.
    let applied = cms
        .patch(
            "settings",
            &PatchParams::apply("clients-test").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings"},
                "data": {"size": "XL"}
            })),
        )
        .await
        .expect("apply");
    assert_eq!(data_of(&applied)["size"], "XL");
    assert!(
        applied
            .managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some("clients-test")
                && m.operation.as_deref() == Some("Apply")),
        "managedFields record the apply manager: {:?}",
        applied.managed_fields()
    );

    cms.delete("settings", &DeleteParams::default())
        .await
        .expect("delete");
    let (code, reason) = api_error(cms.get("settings").await);
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    let (code, _) = api_error(cms.delete("settings", &DeleteParams::default()).await);
    assert_eq!(code, 404);
}

#[tokio::test]
async fn deleting_a_configmap_answers_with_a_success_status_naming_it() {
    let server = ApiServer::start();
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let created = cms
        .create(&PostParams::default(), &configmap("gone", &[]))
        .await
        .expect("create");
    // Upstream's generic store returns the deleted object only for kinds
    // with ReturnDeletedObject (pods, serviceaccounts...); a ConfigMap
    // delete answers `Status{status: Success, details: {name, kind, uid}}`.
    let deleted = cms
        .delete("gone", &DeleteParams::default())
        .await
        .expect("delete");
    let status = deleted
        .right()
        .expect("a Status, not the deleted ConfigMap");
    assert!(status.is_success(), "{status:?}");
    let details = status.details.expect("status details");
    assert_eq!(details.name, "gone");
    assert_eq!(details.kind, "configmaps");
    assert_eq!(Some(details.uid), created.uid());
}

#[tokio::test]
async fn deployments_support_typed_create_replace_patch_and_delete() {
    let server = ApiServer::start();
    let deploys: Api<Deployment> = Api::namespaced(client(&server).await, "default");

    let created = deploys
        .create(&PostParams::default(), &deployment("web", "nginx:1.25"))
        .await
        .expect("create deployment");
    assert_eq!(created.metadata.generation, Some(1));
    let spec = created.spec.as_ref().expect("spec");
    // Defaulting as upstream: strategy and revisionHistoryLimit are filled in.
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("RollingUpdate")
    );

    // Replace with a stale resourceVersion after someone else's update: 409.
    let stale = created.clone();
    let mut fresh = deploys.get("web").await.expect("get");
    fresh.spec.as_mut().unwrap().replicas = Some(2);
    let replaced = deploys
        .replace("web", &PostParams::default(), &fresh)
        .await
        .expect("replace");
    assert_eq!(replaced.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(
        replaced.metadata.generation,
        Some(2),
        "a spec change bumps generation"
    );
    let (code, reason) = api_error(deploys.replace("web", &PostParams::default(), &stale).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));

    // Strategic merge patch merges the containers list by name...
    let patched = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "image": "busybox"}
            ]}}}})),
        )
        .await
        .expect("strategic patch");
    let names: Vec<String> = containers(&patched).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names.len(),
        2,
        "strategic patch adds to the list: {names:?}"
    );
    assert!(names.contains(&"main".to_string()) && names.contains(&"sidecar".to_string()));

    // ...while a JSON merge patch replaces it whole.
    let merged = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": "nginx:1.27"}
            ]}}}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(
        containers(&merged),
        vec![("main".to_string(), "nginx:1.27".to_string())]
    );

    deploys
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete web");
    let left = deploys.list(&ListParams::default()).await.expect("list");
    assert!(
        left.items.is_empty(),
        "no deployments left: {:?}",
        left.items.iter().map(|d| d.name_any()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn server_side_apply_creates_a_deployment_and_the_same_manager_can_change_it() {
    let server = ApiServer::start();
    let deploys: Api<Deployment> = Api::namespaced(client(&server).await, "default");
    // As `kubectl apply --server-side` twice: creates, then updates.
    let apply = |image: &str, replicas: i32| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "labels": {"app": "api"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "api"}},
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"name": "api", "image": image}]}
                }
            }
        })
    };
    let params = PatchParams::apply("deployer");
    let first = deploys
        .patch("api", &params, &Patch::Apply(apply("api:v1", 3)))
        .await
        .expect("apply creates");
    assert_eq!(first.spec.as_ref().unwrap().replicas, Some(3));
    assert!(
        first
            .managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some("deployer")
                && m.operation.as_deref() == Some("Apply")),
        "the object created by apply records its manager: {:?}",
        first.managed_fields()
    );
    let second = deploys
        .patch("api", &params, &Patch::Apply(apply("api:v2", 3)))
        .await
        .expect("apply updates");
    assert_eq!(
        containers(&second),
        vec![("api".to_string(), "api:v2".to_string())]
    );
    assert_eq!(second.metadata.generation, Some(2));
    assert!(second.managed_fields().iter().any(
        |m| m.manager.as_deref() == Some("deployer") && m.operation.as_deref() == Some("Apply")
    ));

    // Apply without a field manager is refused.
    let (code, _) = api_error(
        deploys
            .patch(
                "api",
                &PatchParams::default(),
                &Patch::Apply(apply("api:v3", 3)),
            )
            .await,
    );
    assert_eq!(code, 400);
}

fn containers(d: &Deployment) -> Vec<(String, String)> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| {
            p.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn server_side_apply_removes_fields_a_manager_stops_applying_and_reports_conflicts() {
    let server = ApiServer::start();
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let config = |data: serde_json::Value| {
        Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "owned"},
            "data": data,
        }))
    };

    cms.patch(
        "owned",
        &PatchParams::apply("alice"),
        &config(json!({"a": "1", "b": "2"})),
    )
    .await
    .expect("first apply");
    // alice no longer applies b: upstream removes the field she owned alone.
    let second = cms
        .patch(
            "owned",
            &PatchParams::apply("alice"),
            &config(json!({"a": "1"})),
        )
        .await
        .expect("second apply");
    assert_eq!(
        data_of(&second),
        BTreeMap::from([("a".to_string(), "1".to_string())]),
        "a field dropped from the applied configuration is removed"
    );

    // bob applying a different value for alice's field is a conflict...
    let (code, reason) = api_error(
        cms.patch(
            "owned",
            &PatchParams::apply("bob"),
            &config(json!({"a": "9"})),
        )
        .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(data_of(&cms.get("owned").await.unwrap())["a"], "1");
    // ...unless he forces it, which moves ownership to him.
    let forced = cms
        .patch(
            "owned",
            &PatchParams::apply("bob").force(),
            &config(json!({"a": "9"})),
        )
        .await
        .expect("forced apply");
    assert_eq!(data_of(&forced)["a"], "9");
    let owners: Vec<&str> = forced
        .managed_fields()
        .iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:data/f:a").is_some())
        })
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert_eq!(
        owners,
        vec!["bob"],
        "after a forced apply only bob owns data.a"
    );
}

/// Wait for the next event of a kube-runtime watcher stream.
async fn next_event<S>(stream: &mut S) -> watcher::Event<ConfigMap>
where
    S: futures::Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Unpin,
{
    tokio::time::timeout(SOON, stream.next())
        .await
        .expect("a watcher event in time")
        .expect("the watcher stream goes on")
        .expect("no watcher error")
}

/// Skip the initial list (Init, InitApply..., InitDone) of a watcher.
async fn initial_names<S>(stream: &mut S) -> BTreeSet<String>
where
    S: futures::Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Unpin,
{
    let mut names = BTreeSet::new();
    loop {
        match next_event(stream).await {
            watcher::Event::Init => {}
            watcher::Event::InitApply(cm) => {
                names.insert(cm.name_any());
            }
            watcher::Event::InitDone => return names,
            other => panic!("unexpected event during the initial list: {other:?}"),
        }
    }
}

async fn create_modify_delete_is_seen(
    cms: &Api<ConfigMap>,
    stream: &mut (impl futures::Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>>
              + Unpin),
) {
    cms.create(&PostParams::default(), &configmap("watched", &[("v", "1")]))
        .await
        .expect("create");
    match next_event(stream).await {
        watcher::Event::Apply(cm) => {
            assert_eq!(cm.name_any(), "watched");
            assert_eq!(data_of(&cm)["v"], "1");
        }
        other => panic!("expected the creation, got {other:?}"),
    }
    cms.patch(
        "watched",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .expect("patch");
    match next_event(stream).await {
        watcher::Event::Apply(cm) => assert_eq!(data_of(&cm)["v"], "2"),
        other => panic!("expected the modification, got {other:?}"),
    }
    cms.delete("watched", &DeleteParams::default())
        .await
        .expect("delete");
    match next_event(stream).await {
        watcher::Event::Delete(cm) => assert_eq!(cm.name_any(), "watched"),
        other => panic!("expected the deletion, got {other:?}"),
    }
}

#[tokio::test]
async fn runtime_watcher_sees_objects_added_modified_and_deleted_after_it_starts() {
    let server = ApiServer::start();
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    cms.create(&PostParams::default(), &configmap("before", &[]))
        .await
        .expect("create before");

    let mut stream = watcher(cms.clone(), watcher::Config::default()).boxed();
    let initial = initial_names(&mut stream).await;
    assert!(
        initial.contains("before"),
        "the initial list has the existing object: {initial:?}"
    );
    create_modify_delete_is_seen(&cms, &mut stream).await;

    // The raw watch names the event types as the wire does.
    let list = cms.list(&ListParams::default()).await.expect("list");
    let rv = list
        .metadata
        .resource_version
        .expect("list resourceVersion");
    let mut raw = cms
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .expect("watch")
        .boxed();
    cms.create(&PostParams::default(), &configmap("raw", &[("v", "1")]))
        .await
        .unwrap();
    cms.patch(
        "raw",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("raw", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let event = tokio::time::timeout(SOON, raw.try_next())
            .await
            .expect("a watch event in time")
            .expect("no watch error")
            .expect("the watch goes on");
        match event {
            WatchEvent::Added(cm) => kinds.push(("ADDED", cm.name_any())),
            WatchEvent::Modified(cm) => kinds.push(("MODIFIED", cm.name_any())),
            WatchEvent::Deleted(cm) => kinds.push(("DELETED", cm.name_any())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error event: {e:?}"),
        }
    }
    assert_eq!(
        kinds,
        vec![
            ("ADDED", "raw".to_string()),
            ("MODIFIED", "raw".to_string()),
            ("DELETED", "raw".to_string())
        ]
    );
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_then_live_changes() {
    let server = ApiServer::start();
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    for name in ["one", "two", "three"] {
        cms.create(&PostParams::default(), &configmap(name, &[]))
            .await
            .expect("create");
    }
    // sendInitialEvents=true&resourceVersionMatch=NotOlderThan with bookmarks.
    let mut stream = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let initial = initial_names(&mut stream).await;
    for name in ["one", "two", "three"] {
        assert!(
            initial.contains(name),
            "{name} is among the initial events: {initial:?}"
        );
    }
    create_modify_delete_is_seen(&cms, &mut stream).await;
}

#[tokio::test]
async fn reflector_store_converges_after_a_burst_of_creates_and_deletes() {
    let server = ApiServer::start();
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let (store, writer) = reflector::store::<ConfigMap>();
    let reflector_task = tokio::spawn(
        reflector(writer, watcher(cms.clone(), watcher::Config::default()))
            .applied_objects()
            .for_each(|_| async {}),
    );
    tokio::time::timeout(SOON, store.wait_until_ready())
        .await
        .expect("store ready in time")
        .expect("store ready");

    futures::stream::iter(0..50)
        .map(|i| {
            let cms = cms.clone();
            async move {
                cms.create(
                    &PostParams::default(),
                    &configmap(&format!("burst-{i:02}"), &[("i", &i.to_string())]),
                )
                .await
                .expect("create")
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    futures::stream::iter(0..10)
        .map(|i| {
            let cms = cms.clone();
            async move {
                cms.delete(&format!("burst-{:02}", i * 5), &DeleteParams::default())
                    .await
                    .expect("delete")
            }
        })
        .buffer_unordered(10)
        .collect::<Vec<_>>()
        .await;

    let server_state: BTreeMap<String, String> = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|cm| (cm.name_any(), cm.resource_version().unwrap_or_default()))
        .collect();
    assert_eq!(
        server_state
            .keys()
            .filter(|n| n.starts_with("burst-"))
            .count(),
        40
    );
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let cached: BTreeMap<String, String> = store
            .state()
            .iter()
            .map(|cm| (cm.name_any(), cm.resource_version().unwrap_or_default()))
            .collect();
        if cached == server_state {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reflector store did not converge:\nstore:  {cached:?}\nserver: {server_state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reflector_task.abort();
}

#[tokio::test]
async fn paginated_list_with_limit_three_returns_every_object_exactly_once() {
    let server = ApiServer::start();
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    for i in 0..20 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("page-{i:02}"), &[]),
        )
        .await
        .expect("create");
    }
    let expected: Vec<String> = cms
        .list(&ListParams::default())
        .await
        .expect("full list")
        .items
        .iter()
        .map(|cm| cm.name_any())
        .collect();
    assert!(expected.len() >= 20);

    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(3);
    let mut first_rv = None;
    let mut pages = 0;
    loop {
        let page = cms.list(&params).await.expect("list page");
        pages += 1;
        assert!(
            page.items.len() <= 3,
            "a page holds at most `limit` items, got {}",
            page.items.len()
        );
        let rv = page
            .metadata
            .resource_version
            .clone()
            .expect("page resourceVersion");
        match &first_rv {
            None => {
                first_rv = Some(rv);
                // Created after the first page: a consistent list leaves it out.
                cms.create(&PostParams::default(), &configmap("zz-late", &[]))
                    .await
                    .expect("create late");
            }
            Some(first) => assert_eq!(
                &rv, first,
                "every page is served at the first page's resourceVersion"
            ),
        }
        seen.extend(page.items.iter().map(|cm| cm.name_any()));
        match page.metadata.continue_.as_deref() {
            Some(token) if !token.is_empty() => {
                params = ListParams::default().limit(3).continue_token(token)
            }
            _ => break,
        }
        assert!(pages < 50, "pagination does not end");
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "no object is listed twice: {seen:?}"
    );
    assert_eq!(
        seen, expected,
        "paging returns the same objects, in the same order, as one list"
    );
    assert!(
        pages >= 7,
        "20 objects at 3 per page take at least 7 pages, took {pages}"
    );
}

#[tokio::test]
async fn watch_from_a_listed_resource_version_delivers_exactly_the_later_events_in_order() {
    let server = ApiServer::start();
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    for name in ["old-a", "old-b", "old-c"] {
        cms.create(&PostParams::default(), &configmap(name, &[]))
            .await
            .expect("create");
    }
    let list = cms.list(&ListParams::default()).await.expect("list");
    let listed_rv = list
        .metadata
        .resource_version
        .expect("list resourceVersion");

    // Changes made after the list, before the watch starts.
    cms.create(&PostParams::default(), &configmap("new-x", &[("n", "1")]))
        .await
        .unwrap();
    cms.patch(
        "old-a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"touched": "yes"}})),
    )
    .await
    .unwrap();
    cms.patch(
        "new-x",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"n": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("old-b", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &configmap("new-y", &[]))
        .await
        .unwrap();

    let mut stream = cms
        .watch(&WatchParams::default().timeout(30), &listed_rv)
        .await
        .expect("watch")
        .boxed();
    let expected = [
        ("ADDED", "new-x"),
        ("MODIFIED", "old-a"),
        ("MODIFIED", "new-x"),
        ("DELETED", "old-b"),
        ("ADDED", "new-y"),
        // A change made while watching, to show nothing else came before it.
        ("ADDED", "sentinel"),
    ];
    let mut got = Vec::new();
    let mut last_rv = rv_number(&listed_rv);
    let mut sentinel_created = false;
    while got.len() < expected.len() {
        if got.len() == expected.len() - 1 && !sentinel_created {
            cms.create(&PostParams::default(), &configmap("sentinel", &[]))
                .await
                .unwrap();
            sentinel_created = true;
        }
        let event = tokio::time::timeout(SOON, stream.try_next())
            .await
            .unwrap_or_else(|_| panic!("timed out after events {got:?}"))
            .expect("no watch error")
            .expect("the watch goes on");
        let (kind, cm) = match event {
            WatchEvent::Added(cm) => ("ADDED", cm),
            WatchEvent::Modified(cm) => ("MODIFIED", cm),
            WatchEvent::Deleted(cm) => ("DELETED", cm),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error event: {e:?}"),
        };
        let rv = rv_number(&cm.resource_version().unwrap_or_default());
        assert!(
            rv > last_rv,
            "event resourceVersions increase: {rv} after {last_rv}"
        );
        last_rv = rv;
        got.push((kind, cm.name_any()));
    }
    let expected: Vec<(&str, String)> = expected.iter().map(|(k, n)| (*k, n.to_string())).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn metadata_only_requests_and_label_selected_collections_work() {
    let server = ApiServer::start();
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    for (name, tier) in [("m-1", "web"), ("m-2", "web"), ("m-3", "db")] {
        let mut cm = configmap(name, &[("big", "payload")]);
        cm.metadata.labels = Some(BTreeMap::from([("tier".to_string(), tier.to_string())]));
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
    }

    // Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1
    let meta = cms.get_metadata("m-1").await.expect("get metadata");
    assert_eq!(
        meta.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    assert_eq!(meta.name_any(), "m-1");
    assert_eq!(meta.labels().get("tier").map(String::as_str), Some("web"));
    let metas = cms
        .list_metadata(&ListParams::default().labels("tier=web"))
        .await
        .expect("list metadata");
    let names: BTreeSet<String> = metas.items.iter().map(|m| m.name_any()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["m-1".to_string(), "m-2".to_string()])
    );

    // A metadata-only watcher, as controllers use it, sees a label change.
    let metadata: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(client(&server).await, "default");
    let mut stream = watcher(metadata, watcher::Config::default().labels("tier=db")).boxed();
    let initial = loop {
        match tokio::time::timeout(SOON, stream.next()).await {
            Ok(Some(Ok(watcher::Event::InitDone))) => break true,
            Ok(Some(Ok(_))) => continue,
            other => panic!("metadata watcher failed to list: {other:?}"),
        }
    };
    assert!(initial);
    cms.patch(
        "m-2",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "db"}}})),
    )
    .await
    .expect("relabel");
    match tokio::time::timeout(SOON, stream.next()).await {
        Ok(Some(Ok(watcher::Event::Apply(m)))) => assert_eq!(m.name_any(), "m-2"),
        other => panic!("expected m-2 to enter the tier=db selection, got {other:?}"),
    }

    // deletecollection with a label selector removes exactly the matches.
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("tier=db"),
    )
    .await
    .expect("delete collection");
    let left: BTreeSet<String> = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|cm| cm.name_any())
        .collect();
    assert_eq!(left, BTreeSet::from(["m-1".to_string()]));
}
