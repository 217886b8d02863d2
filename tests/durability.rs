//! Crash durability of the real `tug-apiserver`: what the API acknowledged
//! survives a SIGKILL, revisions never go backwards across a restart, and
//! optimistic concurrency loses no update under contention.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use tugboat_e2e::ApiServer;

async fn client(server: &ApiServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).expect("read admin.kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config from admin.kubeconfig");
    Client::try_from(config).expect("kube client")
}

fn configmap(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": data,
    }))
    .expect("configmap")
}

fn rv_number(rv: &str) -> u64 {
    rv.parse()
        .unwrap_or_else(|_| panic!("resourceVersion {rv:?} is not a decimal revision"))
}

/// Restart on the same data dir and port, as an operator would after a crash.
fn restart(server: &ApiServer) -> ApiServer {
    ApiServer::start_in(&server.data_dir, server.port, &[])
}

async fn all_configmaps(cms: &Api<ConfigMap>) -> Vec<ConfigMap> {
    cms.list(&ListParams::default())
        .await
        .expect("list configmaps")
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_create_survives_a_sigkill_under_concurrent_load() {
    let mut server = ApiServer::start();
    let client = client(&server).await;
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let failures = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..16)
        .map(|writer| {
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
            let (acknowledged, failures, stop) =
                (acknowledged.clone(), failures.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("load-{writer:02}-{i:05}");
                    i += 1;
                    let cm = configmap(
                        &name,
                        json!({"writer": writer.to_string(), "seq": i.to_string()}),
                    );
                    match cms.create(&PostParams::default(), &cm).await {
                        Ok(created) => {
                            assert_eq!(created.name_any(), name);
                            acknowledged.lock().unwrap().insert(name);
                        }
                        Err(_) => {
                            // The server is gone: an unanswered request proves nothing.
                            failures.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect();

    // Let the load run, then crash the server in the middle of it.
    let load_started = tokio::time::Instant::now();
    let deadline = load_started + Duration::from_secs(10);
    while acknowledged.lock().unwrap().len() < 200
        || load_started.elapsed() < Duration::from_millis(1500)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the load made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let acked_before_kill = acknowledged.lock().unwrap().len();
    tokio::task::block_in_place(|| server.kill_hard());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer task");
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        failures.load(Ordering::Relaxed) > 0,
        "requests after the kill failed (the kill happened mid-load)"
    );

    let restarted = tokio::task::block_in_place(|| restart(&server));
    let cms: Api<ConfigMap> = Api::namespaced(self::client(&restarted).await, "default");
    let stored: BTreeMap<String, ConfigMap> = all_configmaps(&cms)
        .await
        .into_iter()
        .map(|cm| (cm.name_any(), cm))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !stored.contains_key(*n))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates were lost in the crash (first: {:?})",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
    // What survived is whole, not torn.
    for name in &acknowledged {
        let data = stored[name].data.clone().unwrap_or_default();
        assert!(
            data.contains_key("writer") && data.contains_key("seq"),
            "{name} came back intact: {data:?}"
        );
    }
    eprintln!(
        "{} creates acknowledged ({acked_before_kill} before the kill), all present after restart",
        acknowledged.len()
    );
}

/// What must survive a restart: uid, resourceVersion and data.
type Identity = (Option<String>, Option<String>, BTreeMap<String, String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_object_and_resource_versions_never_go_backwards() {
    let mut server = ApiServer::start();
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..20 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("keep-{i:02}"), json!({"i": i.to_string()})),
        )
        .await
        .expect("create");
    }
    let before = cms.list(&ListParams::default()).await.expect("list");
    let list_rv = rv_number(
        before
            .metadata
            .resource_version
            .as_deref()
            .expect("list resourceVersion"),
    );
    let snapshot = |items: &[ConfigMap]| -> BTreeMap<String, Identity> {
        items
            .iter()
            .map(|cm| {
                (
                    cm.name_any(),
                    (
                        cm.uid(),
                        cm.resource_version(),
                        cm.data.clone().unwrap_or_default(),
                    ),
                )
            })
            .collect()
    };
    let expected = snapshot(&before.items);

    tokio::task::block_in_place(|| server.kill_hard());
    let restarted = tokio::task::block_in_place(|| restart(&server));

    // The client built before the crash still works: same CA, same credentials.
    let after = cms
        .list(&ListParams::default())
        .await
        .expect("list after restart with the old client");
    assert_eq!(
        snapshot(&after.items),
        expected,
        "every object, uid, resourceVersion and data survives"
    );
    let after_rv = rv_number(
        after
            .metadata
            .resource_version
            .as_deref()
            .expect("list resourceVersion"),
    );
    assert!(
        after_rv >= list_rv,
        "the list resourceVersion went backwards: {after_rv} < {list_rv}"
    );

    let created = cms
        .create(
            &PostParams::default(),
            &configmap("after-restart", json!({})),
        )
        .await
        .expect("create after restart");
    let new_rv = rv_number(&created.resource_version().unwrap());
    assert!(
        new_rv > list_rv,
        "a write after the restart got resourceVersion {new_rv}, not above {list_rv}"
    );

    // A second crash right after a write keeps that write and the ordering.
    let mut restarted = restarted;
    tokio::task::block_in_place(|| restarted.kill_hard());
    let _again = tokio::task::block_in_place(|| restart(&server));
    let got = cms
        .get("after-restart")
        .await
        .expect("the last write survived a second crash");
    assert_eq!(got.resource_version(), created.resource_version());
    let newest = cms
        .create(
            &PostParams::default(),
            &configmap("after-second-restart", json!({})),
        )
        .await
        .expect("create after second restart");
    assert!(rv_number(&newest.resource_version().unwrap()) > new_rv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_write_on_one_key_loses_no_update() {
    const WRITERS: usize = 8;
    const INCREMENTS_EACH: u64 = 10;
    let server = ApiServer::start();
    let cms: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    cms.create(
        &PostParams::default(),
        &configmap("counter", json!({"n": "0"})),
    )
    .await
    .expect("create counter");

    let successes = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let others = Arc::new(Mutex::new(Vec::new()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let cms = cms.clone();
            let (successes, conflicts, others) =
                (successes.clone(), conflicts.clone(), others.clone());
            tokio::spawn(async move {
                let mut mine = 0;
                while mine < INCREMENTS_EACH && tokio::time::Instant::now() < deadline {
                    let mut cm = cms.get("counter").await.expect("get counter");
                    let data = cm.data.get_or_insert_default();
                    let n: u64 = data["n"].parse().expect("a number");
                    data.insert("n".into(), (n + 1).to_string());
                    match cms.replace("counter", &PostParams::default(), &cm).await {
                        Ok(_) => {
                            mine += 1;
                            successes.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(kube::Error::Api(status)) if status.code == 409 => {
                            assert_eq!(status.reason, "Conflict");
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(other) => others.lock().unwrap().push(other.to_string()),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }

    let others = others.lock().unwrap().clone();
    assert!(
        others.is_empty(),
        "every failed replace was a 409 Conflict; also got: {others:?}"
    );
    let successes = successes.load(Ordering::Relaxed);
    assert_eq!(
        successes,
        WRITERS as u64 * INCREMENTS_EACH,
        "every writer finished in time"
    );
    let final_count: u64 = cms
        .get("counter")
        .await
        .expect("get")
        .data
        .unwrap_or_default()["n"]
        .parse()
        .expect("a number");
    assert_eq!(
        final_count,
        successes,
        "one increment per acknowledged replace ({} conflicts retried)",
        conflicts.load(Ordering::Relaxed)
    );
}
