//! Volumes on disk: configMap and secret materialization, the atomic
//! `..data` swap of an update seen by concurrent readers, item modes, and
//! hostPath type errors, through the entry points the pod worker uses.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use tugboat_kubelet::env::{container_env, EnvContext, FetchedObjects};
use tugboat_kubelet::volumes::{
    container_mounts, refresh_pod_volumes, set_up_pod_volumes, tear_down_pod_volumes, AtomicWriter,
    FileProjection, Payload, VolumeContext, DATA_DIR,
};

/// A directory removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "kvol-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn objects(version: &str) -> FetchedObjects {
    let mut o = FetchedObjects::default();
    o.config_maps.insert(
        "app-config".into(),
        Ok(serde_json::from_value(serde_json::json!({
            "metadata": {"name": "app-config", "namespace": "prod"},
            "data": {"app.yaml": format!("version: {version}\n"), "LOG_LEVEL": "debug"}
        }))
        .unwrap()),
    );
    o.secrets.insert(
        "db".into(),
        Ok(serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "prod"},
            // "admin" and "hunter2"
            "data": {"user": "YWRtaW4=", "password": "aHVudGVyMg=="}
        }))
        .unwrap()),
    );
    o
}

fn pod(volumes: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "prod", "uid": "u-1"},
        "spec": {
            "containers": [{
                "name": "app", "image": "app:1",
                "envFrom": [{"configMapRef": {"name": "app-config"}}],
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/app"},
                    {"name": "creds", "mountPath": "/var/run/db", "readOnly": false},
                    {"name": "scratch", "mountPath": "/scratch/$(LOG_LEVEL)", "subPathExpr": "logs/$(LOG_LEVEL)"},
                ]
            }],
            "volumes": volumes
        }
    }))
    .unwrap()
}

fn ctx<'a>(
    pod: &'a Pod,
    dir: &'a Path,
    objects: &'a FetchedObjects,
    alloc: &'a BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> VolumeContext<'a> {
    VolumeContext {
        pod,
        pod_dir: dir,
        objects,
        node_allocatable: alloc,
        allow_mount: false,
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn config_map_and_secret_volumes_are_materialized_and_mounted() {
    let tmp = TempDir::new();
    let pod = pod(serde_json::json!([
        {"name": "config", "configMap": {"name": "app-config"}},
        {"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o440, "items": [
            {"key": "user", "path": "user"},
            {"key": "password", "path": "secret/password", "mode": 0o400}]}},
        {"name": "scratch", "emptyDir": {}},
    ]));
    let objects = objects("1");
    let alloc = BTreeMap::new();
    let ctx = ctx(&pod, &tmp.0, &objects, &alloc);
    let (volumes, errors) = set_up_pod_volumes(&ctx);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(volumes.len(), 3);

    let config = &volumes["config"].host_path;
    assert_eq!(
        fs::read_to_string(config.join("app.yaml")).unwrap(),
        "version: 1\n"
    );
    assert_eq!(
        fs::read_to_string(config.join("LOG_LEVEL")).unwrap(),
        "debug"
    );
    assert_eq!(mode(&config.join("app.yaml")), 0o644, "the default mode");
    assert!(fs::symlink_metadata(config.join("app.yaml"))
        .unwrap()
        .file_type()
        .is_symlink());

    let creds = &volumes["creds"].host_path;
    assert_eq!(fs::read_to_string(creds.join("user")).unwrap(), "admin");
    assert_eq!(
        fs::read_to_string(creds.join("secret/password")).unwrap(),
        "hunter2"
    );
    assert_eq!(mode(&creds.join("user")), 0o440, "the volume's defaultMode");
    assert_eq!(
        mode(&creds.join("secret/password")),
        0o400,
        "the item's mode"
    );
    let visible: Vec<String> = fs::read_dir(creds)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(visible, ["secret", "user"], "only the items are visible");

    // The container's mounts, with its environment for subPathExpr.
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let env_ctx = EnvContext {
        pod: &pod,
        host_ips: &[],
        pod_ips: &[],
        node_allocatable: &alloc,
        objects: &objects,
    };
    let env = container_env(&env_ctx, container).unwrap();
    let mounts = container_mounts(container, &volumes, &env.vars).unwrap();
    let got: Vec<_> = mounts
        .iter()
        .map(|m| (m.host_path.clone(), m.container_path.as_str(), m.read_only))
        .collect();
    assert_eq!(
        got,
        [
            (config.clone(), "/etc/app", true),
            (creds.clone(), "/var/run/db", true),
            (
                volumes["scratch"].host_path.join("logs/debug"),
                "/scratch/$(LOG_LEVEL)",
                false
            ),
        ]
    );

    tear_down_pod_volumes(&tmp.0, false).unwrap();
    assert!(!tmp.0.join("volumes").exists());
}

#[test]
fn refresh_rewrites_only_what_changed() {
    let tmp = TempDir::new();
    let pod = pod(serde_json::json!([
        {"name": "config", "configMap": {"name": "app-config", "items": [{"key": "app.yaml", "path": "app.yaml"}]}},
        {"name": "creds", "secret": {"secretName": "db"}},
        {"name": "scratch", "emptyDir": {}},
    ]));
    let alloc = BTreeMap::new();
    let v1 = objects("1");
    let (volumes, errors) = set_up_pod_volumes(&ctx(&pod, &tmp.0, &v1, &alloc));
    assert!(errors.is_empty(), "{errors:?}");
    let config = volumes["config"].host_path.clone();
    let before = fs::read_link(config.join(DATA_DIR)).unwrap();

    let (updated, errors) = refresh_pod_volumes(&ctx(&pod, &tmp.0, &v1, &alloc));
    assert!(
        errors.is_empty() && updated.is_empty(),
        "{updated:?} {errors:?}"
    );
    assert_eq!(fs::read_link(config.join(DATA_DIR)).unwrap(), before);

    let v2 = objects("2");
    let (updated, errors) = refresh_pod_volumes(&ctx(&pod, &tmp.0, &v2, &alloc));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(updated, ["config"]);
    assert_ne!(fs::read_link(config.join(DATA_DIR)).unwrap(), before);
    assert!(!config.join(&before).exists(), "the old data dir is gone");
    assert_eq!(
        fs::read_to_string(config.join("app.yaml")).unwrap(),
        "version: 2\n"
    );

    // The ConfigMap is deleted: the refresh fails and the files stay.
    let gone = FetchedObjects::default();
    let (_, errors) = refresh_pod_volumes(&ctx(&pod, &tmp.0, &gone, &alloc));
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "MountVolume.SetUp failed for volume \"config\" : configmap \"app-config\" not found",
            "MountVolume.SetUp failed for volume \"creds\" : secret \"db\" not found",
        ]
    );
    assert_eq!(
        fs::read_to_string(config.join("app.yaml")).unwrap(),
        "version: 2\n"
    );
}

/// Three files always hold the same generation; a reader that resolves
/// `..data` once must never see two generations or a missing file, and a
/// reader of any visible path must only ever see a whole value.
#[test]
fn readers_never_see_a_half_written_update() {
    let tmp = TempDir::new();
    let dir = tmp.0.join("vol");
    let payload = |generation: u32| -> Payload {
        ["a", "b", "sub/c"]
            .into_iter()
            .map(|name| {
                (
                    name.to_string(),
                    FileProjection {
                        data: format!("generation {generation} {}", "x".repeat(4096)).into_bytes(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    };
    let writer = AtomicWriter::new(&dir);
    assert_eq!(writer.write(&payload(0)), Ok(true));

    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let dir = dir.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut consistent_reads = 0u32;
                // At least one read after the last write, however the
                // threads were scheduled.
                while !done.load(Ordering::Relaxed) || consistent_reads == 0 {
                    // Through `..data`, resolved once: one whole generation.
                    let Ok(ts) = fs::read_link(dir.join(DATA_DIR)) else {
                        panic!("..data must always exist");
                    };
                    let snapshot: Result<Vec<String>, _> = ["a", "b", "sub/c"]
                        .iter()
                        .map(|n| fs::read_to_string(dir.join(&ts).join(n)))
                        .collect();
                    match snapshot {
                        Ok(values) => {
                            assert!(
                                values.iter().all(|v| v == &values[0]),
                                "mixed generations: {:?}",
                                values.iter().map(|v| &v[..14]).collect::<Vec<_>>()
                            );
                            consistent_reads += 1;
                        }
                        // The writer removed that generation after the swap.
                        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
                    }
                    // Through the visible symlinks: always a whole value.
                    // (A lookup that resolved `..data` to a generation just
                    // as the writer deleted it finds nothing, as upstream;
                    // it never finds a partial file.)
                    for n in ["a", "b", "sub/c"] {
                        match fs::read_to_string(dir.join(n)) {
                            Ok(v) => assert!(
                                v.starts_with("generation ") && v.ends_with(&"x".repeat(4096)),
                                "partial file {n}"
                            ),
                            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
                        }
                    }
                }
                consistent_reads
            })
        })
        .collect();
    for generation in 1..=200 {
        assert_eq!(writer.write(&payload(generation)), Ok(true));
    }
    done.store(true, Ordering::Relaxed);
    let reads: u32 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 0, "the readers read something");
    assert!(fs::read_to_string(dir.join("a"))
        .unwrap()
        .starts_with("generation 200 "));
    // Exactly one data dir remains, plus `..data` and the visible names.
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(&names[1..], ["..data", "a", "b", "sub"]);
}

#[test]
fn host_path_type_errors_and_unsupported_volumes_are_reported() {
    let tmp = TempDir::new();
    let file = tmp.0.join("a-file");
    fs::write(&file, "x").unwrap();
    let dir = tmp.0.join("a-dir");
    fs::create_dir(&dir).unwrap();
    let created = tmp.0.join("created/deep");
    let pod = pod(serde_json::json!([
        {"name": "want-dir", "hostPath": {"path": file, "type": "Directory"}},
        {"name": "want-file", "hostPath": {"path": dir, "type": "File"}},
        {"name": "want-socket", "hostPath": {"path": file, "type": "Socket"}},
        {"name": "missing", "hostPath": {"path": tmp.0.join("nope"), "type": "Directory"}},
        {"name": "create", "hostPath": {"path": created, "type": "DirectoryOrCreate"}},
        {"name": "untyped", "hostPath": {"path": tmp.0.join("nope")}},
        {"name": "ebs", "awsElasticBlockStore": {"volumeID": "vol-1"}},
        {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}},
    ]));
    let objects = FetchedObjects::default();
    let alloc = BTreeMap::new();
    let (volumes, errors) = set_up_pod_volumes(&ctx(&pod, &tmp.0, &objects, &alloc));
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let d = |p: &Path| p.display().to_string();
    assert_eq!(
        messages,
        [
            format!("MountVolume.SetUp failed for volume \"want-dir\" : hostPath type check failed: {} is not a directory", d(&file)),
            format!("MountVolume.SetUp failed for volume \"want-file\" : hostPath type check failed: {} is not a file", d(&dir)),
            format!("MountVolume.SetUp failed for volume \"want-socket\" : hostPath type check failed: {} is not a socket file", d(&file)),
            format!("MountVolume.SetUp failed for volume \"missing\" : hostPath type check failed: {} is not a directory", d(&tmp.0.join("nope"))),
            "MountVolume.SetUp failed for volume \"ebs\" : volume type awsElasticBlockStore is not supported by this kubelet".to_string(),
            "MountVolume.SetUp failed for volume \"claim\" : volume type persistentVolumeClaim is not supported by this kubelet".to_string(),
        ]
    );
    assert_eq!(
        volumes.keys().collect::<Vec<_>>(),
        ["create", "untyped"],
        "the others are still set up"
    );
    assert!(created.is_dir());
    assert_eq!(mode(&created), 0o755);
    assert_eq!(volumes["create"].host_path, created);
    assert!(!volumes["create"].read_only);
}

async fn api_client(server: &test_support::TestServer) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// The worker's path: the pod's references, fetched from the API server,
/// feed both the environment and the volumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_fetched_from_the_api_server_feed_env_and_volumes() {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use kube::api::PostParams;
    use tugboat_kubelet::env::{fetch_objects, referenced_objects};

    let server = test_support::TestServer::start().await.unwrap();
    let client = api_client(&server).await;
    let cms: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), "default");
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "app-config"}, "data": {"LOG_LEVEL": "info"}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "db"}, "stringData": {"password": "s3cret"}
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "containers": [{"name": "app", "image": "app:1",
                "envFrom": [{"configMapRef": {"name": "app-config"}}],
                "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                        {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": true}}}]}],
            "volumes": [{"name": "creds", "secret": {"secretName": "db"}},
                        {"name": "gone", "configMap": {"name": "absent"}}]
        }
    }))
    .unwrap();
    let refs = referenced_objects(&pod);
    let objects = fetch_objects(&client, "default", &refs).await;
    assert!(objects.config_maps.contains_key("app-config"));
    assert!(
        !objects.config_maps.contains_key("absent"),
        "not found is absent"
    );

    let alloc = BTreeMap::new();
    let env = container_env(
        &EnvContext {
            pod: &pod,
            host_ips: &[],
            pod_ips: &[],
            node_allocatable: &alloc,
            objects: &objects,
        },
        &pod.spec.as_ref().unwrap().containers[0],
    )
    .unwrap();
    assert_eq!(
        env.vars,
        [
            ("LOG_LEVEL".to_string(), "info".to_string()),
            ("PW".to_string(), "s3cret".to_string())
        ]
    );

    let tmp = TempDir::new();
    let (volumes, errors) = set_up_pod_volumes(&ctx(&pod, &tmp.0, &objects, &alloc));
    assert_eq!(
        fs::read_to_string(volumes["creds"].host_path.join("password")).unwrap(),
        "s3cret"
    );
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        ["MountVolume.SetUp failed for volume \"gone\" : configmap \"absent\" not found"]
    );
}
