//! The kubelet with the process runtime against an in-process API server:
//! pods run as host processes under a temporary root directory, log in the
//! CRI format, exit with their codes, stop on a graceful delete, and a
//! restarted kubelet re-adopts a running container instead of restarting
//! it.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, DeleteParams, PostParams};

use serde_json::json;
use test_support::TestServer;
use tugboat_kubelet::runtime::process::{
    ProcessOptions, ProcessRuntime, ANNOTATION_LIMIT_CPU, ANNOTATION_LIMIT_MEMORY, LIMITS_ENFORCED,
};
use tugboat_kubelet::runtime::{
    ContainerConfig, ContainerEventType, ContainerFilter, ContainerMetadata, ContainerRuntime,
    ContainerState, ImageSpec, PodSandboxConfig, PodSandboxMetadata, LABEL_POD_UID,
};
use tugboat_kubelet::{Kubelet, KubeletConfig};

/// A root directory removed at the end, with every container of the
/// runtimes opened on it killed first.
struct Root(PathBuf);

impl Root {
    fn new(test: &str) -> Root {
        let dir = std::env::temp_dir().join(format!(
            "tugboat-process-{}-{test}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Root(dir)
    }

    fn runtime(&self) -> ProcessRuntime {
        let mut options = ProcessOptions::new(&self.0, "127.0.0.1");
        options.shim = PathBuf::from(env!("CARGO_BIN_EXE_tug-kubelet"));
        // Never the host's cgroups from a test; see the cgroup test.
        options.cgroup_root = None;
        ProcessRuntime::open(options).unwrap()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn kill_all(runtime: &ProcessRuntime) {
    for c in runtime
        .list_containers(&ContainerFilter::default())
        .await
        .unwrap()
    {
        let _ = runtime.remove_container(&c.id).await;
    }
}

fn config(node: &str, runtime: &ProcessRuntime) -> KubeletConfig {
    let mut config = KubeletConfig::new(node);
    config.node_status_update_frequency = Duration::from_secs(1);
    config.node_status_report_frequency = Duration::from_secs(1);
    config.runtime = Arc::new(runtime.clone());
    config
}

async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod(name: &str, node: &str, command: &[&str], restart_policy: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart_policy,
            "containers": [{"name": "app", "image": "busybox", "command": command}],
        },
    }))
    .unwrap()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn container(pod: &Pod) -> Option<ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

async fn phase_is(pods: &Api<Pod>, name: &str, wanted: &str) -> Pod {
    eventually(
        Duration::from_secs(20),
        &format!("{name} {wanted}"),
        || async { pods.get(name).await.ok().filter(|p| phase(p) == wanted) },
    )
    .await
}

/// `process://<id>` → `<id>`.
fn runtime_id(status: &ContainerStatus) -> String {
    let id = status.container_id.clone().unwrap();
    id.strip_prefix("process://").unwrap().to_string()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim().starts_with('Z'))
}

fn is_cri_line(line: &str, stream: &str, content: &str) -> bool {
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next().unwrap_or("");
    ts.parse::<k8s_openapi::jiff::Timestamp>().is_ok()
        && parts.next() == Some(stream)
        && parts.next() == Some("F")
        && parts.next() == Some(content)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_logs_and_stops_on_a_graceful_delete() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let root = Root::new("run");
    let runtime = root.runtime();
    let kubelet = Kubelet::start(client.clone(), config("proc-a", &runtime))
        .await
        .unwrap();
    kubelet
        .wait_registered(Duration::from_secs(10))
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let spec = pod(
        "hello",
        "proc-a",
        &["sh", "-c", "echo hello; echo oops >&2; sleep 30"],
        "Always",
    );
    pods.create(&PostParams::default(), &spec).await.unwrap();
    let running = phase_is(&pods, "hello", "Running").await;
    let status = running.status.clone().unwrap();
    // Host network: the pod IP is the node IP.
    assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.1"));
    let c = container(&running).unwrap();
    assert!(c.container_id.as_deref().unwrap().starts_with("process://"));
    let id = runtime_id(&c);
    let pid = runtime.pid(&id).expect("a running container has a pid");
    assert!(alive(pid));

    let uid = running.metadata.uid.clone().unwrap();
    let log = root.0.join("pods").join(&uid).join("app/0.log");
    assert_eq!(runtime.log_path(&id).as_deref(), Some(log.as_path()));
    let text = eventually(Duration::from_secs(5), "the log lines", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.lines().count() >= 2).then_some(text)
    })
    .await;
    assert!(
        text.lines().any(|l| is_cri_line(l, "stdout", "hello")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| is_cri_line(l, "stderr", "oops")),
        "{text}"
    );

    // A graceful delete: SIGTERM ends `sh` and `sleep` well within the
    // grace period, and the pod goes away.
    let deleted = Instant::now();
    pods.delete(
        "hello",
        &DeleteParams {
            grace_period_seconds: Some(10),
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "the process gone", || async {
        (!alive(pid)).then_some(())
    })
    .await;
    assert!(deleted.elapsed() < Duration::from_secs(10));
    eventually(Duration::from_secs(10), "the pod deleted", || async {
        pods.get_opt("hello").await.ok()?.is_none().then_some(())
    })
    .await;
    kubelet.shutdown().await;
    kill_all(&runtime).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_missing_commands_are_reported() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let root = Root::new("exit");
    let runtime = root.runtime();
    let kubelet = Kubelet::start(client.clone(), config("proc-b", &runtime))
        .await
        .unwrap();
    kubelet
        .wait_registered(Duration::from_secs(10))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    pods.create(
        &PostParams::default(),
        &pod("three", "proc-b", &["sh", "-c", "exit 3"], "Never"),
    )
    .await
    .unwrap();
    let failed = phase_is(&pods, "three", "Failed").await;
    let term = container(&failed)
        .unwrap()
        .state
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(term.exit_code, 3);
    assert_eq!(term.reason.as_deref(), Some("Error"));
    assert!(term.started_at.is_some() && term.finished_at.is_some());

    // No command, no image entrypoint to fall back to.
    pods.create(&PostParams::default(), &pod("bare", "proc-b", &[], "Never"))
        .await
        .unwrap();
    let waiting = eventually(Duration::from_secs(20), "CreateContainerError", || async {
        let pod = pods.get("bare").await.ok()?;
        let waiting = container(&pod)?.state?.waiting?;
        (waiting.reason.as_deref() == Some("CreateContainerError")).then_some(waiting)
    })
    .await;
    assert!(
        waiting
            .message
            .as_deref()
            .unwrap_or("")
            .contains("no command"),
        "{waiting:?}"
    );
    kubelet.shutdown().await;
    kill_all(&runtime).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_kubelet_readopts_running_containers() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let root = Root::new("adopt");
    let first = root.runtime();
    let kubelet = Kubelet::start(client.clone(), config("proc-c", &first))
        .await
        .unwrap();
    kubelet
        .wait_registered(Duration::from_secs(10))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod("long", "proc-c", &["sleep", "60"], "Always"),
    )
    .await
    .unwrap();
    let running = phase_is(&pods, "long", "Running").await;
    let before = container(&running).unwrap();
    let id = runtime_id(&before);
    let pid = first.pid(&id).unwrap();

    // The kubelet goes away; its container does not.
    kubelet.shutdown().await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(alive(pid), "the container died with the kubelet");

    let second = root.runtime();
    assert_eq!(second.pid(&id), Some(pid), "re-adopted with its pid");
    let kubelet = Kubelet::start(client.clone(), config("proc-c", &second))
        .await
        .unwrap();
    kubelet
        .wait_registered(Duration::from_secs(10))
        .await
        .unwrap();
    // Give the new kubelet's pod worker time to sync (and to restart the
    // container, were it going to).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = second
        .list_containers(&ContainerFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "no second container was started");
    assert_eq!(second.pid(&id), Some(pid));
    let now = pods.get("long").await.unwrap();
    assert_eq!(phase(&now), "Running");
    let after = container(&now).unwrap();
    assert_eq!(after.container_id, before.container_id);
    assert_eq!(after.restart_count, 0);

    // And it can still stop it: the exit code is the shim's (SIGTERM).
    kubelet.shutdown().await;
    second
        .stop_container(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!alive(pid));
    let status = second.container_status(&id).await.unwrap();
    assert_eq!((status.exit_code, status.reason.as_str()), (143, "Error"));
    kill_all(&second).await;
}

fn sandbox_config(uid: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: "p".into(),
            namespace: "default".into(),
            uid: uid.into(),
            attempt: 0,
        },
        hostname: "p".into(),
        labels: [(LABEL_POD_UID.to_string(), uid.to_string())].into(),
        ..Default::default()
    }
}

fn container_config(name: &str, script: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: ImageSpec {
            image: "busybox".into(),
        },
        command: vec!["sh".into(), "-c".into()],
        args: vec![script.into()],
        envs: vec![("FOO".into(), "bar".into())],
        labels: [(LABEL_POD_UID.to_string(), "u1".to_string())].into(),
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_in_the_container_and_stops_escalate_to_sigkill() {
    let root = Root::new("exec");
    let rt = root.runtime();
    let mut events = rt.container_events();
    let sandbox = sandbox_config("u1");
    let sid = rt.run_pod_sandbox(&sandbox).await.unwrap();
    assert_eq!(
        rt.pod_sandbox_status(&sid).await.unwrap().ip.as_deref(),
        Some("127.0.0.1")
    );
    // Ignores SIGTERM (and so does `sleep`, which inherits that).
    let id = rt
        .create_container(
            &sid,
            &container_config("app", "trap '' TERM; sleep 30"),
            &sandbox,
        )
        .await
        .unwrap();
    rt.start_container(&id).await.unwrap();

    let cmd = |s: &str| vec!["sh".to_string(), "-c".to_string(), s.to_string()];
    let out = rt
        .exec_sync(
            &id,
            &cmd("echo $FOO; pwd; echo err >&2; exit 4"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let cwd = root.0.join("pods/u1/app");
    assert_eq!(out.exit_code, 4);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("bar\n{}\n", cwd.display())
    );
    assert_eq!(out.stderr, b"err\n");
    let started = Instant::now();
    let err = rt
        .exec_sync(&id, &cmd("sleep 10"), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let pid = rt.pid(&id).unwrap();
    let started = Instant::now();
    rt.stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for TERM"
    );
    assert!(!alive(pid));
    let status = rt.container_status(&id).await.unwrap();
    assert_eq!(
        (status.state, status.exit_code, status.reason.as_str()),
        (ContainerState::Exited, 137, "Error")
    );
    assert!(status.started_at.is_some() && status.finished_at.is_some());
    assert!(rt
        .exec_sync(&id, &cmd("true"), Duration::ZERO)
        .await
        .is_err());

    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(e.kind);
    }
    use ContainerEventType::*;
    assert_eq!(kinds, [Created, Started, Stopped]);

    // A command that does not exist fails to start, with the reason.
    let bad = ContainerConfig {
        command: vec!["/no/such/program".into()],
        args: vec![],
        ..container_config("bad", "")
    };
    let bad = rt.create_container(&sid, &bad, &sandbox).await.unwrap();
    let err = rt.start_container(&bad).await.unwrap_err();
    assert!(err.to_string().contains("/no/such/program"), "{err}");
    let status = rt.container_status(&bad).await.unwrap();
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (128, "StartError")
    );

    rt.remove_pod_sandbox(&sid).await.unwrap();
    assert!(!root.0.join("pods/u1").exists());
    assert!(rt
        .list_containers(&ContainerFilter::default())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_while_no_runtime_watches_is_known_afterwards() {
    let root = Root::new("offline");
    let first = root.runtime();
    let sandbox = sandbox_config("u1");
    let sid = first.run_pod_sandbox(&sandbox).await.unwrap();
    let id = first
        .create_container(&sid, &container_config("app", "sleep 1; exit 7"), &sandbox)
        .await
        .unwrap();
    let created = first
        .create_container(&sid, &container_config("later", "true"), &sandbox)
        .await
        .unwrap();
    first.start_container(&id).await.unwrap();
    let started_at = first.container_status(&id).await.unwrap().started_at;
    drop(first);
    // The kubelet is "down" while the container ends.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let second = root.runtime();
    let status = second.container_status(&id).await.unwrap();
    assert_eq!(
        (status.state, status.exit_code, status.reason.as_str()),
        (ContainerState::Exited, 7, "Error")
    );
    assert_eq!(status.started_at, started_at);
    assert!(status.finished_at > started_at);
    // A created container stays created, and can still be started.
    assert_eq!(
        second.container_status(&created).await.unwrap().state,
        ContainerState::Created
    );
    second.start_container(&created).await.unwrap();
    let sandboxes = second.list_pod_sandbox(&Default::default()).await.unwrap();
    assert_eq!(sandboxes.len(), 1);
    assert_eq!(sandboxes[0].id, sid);
    second.remove_pod_sandbox(&sid).await.unwrap();
}

/// A directory standing in for cgroupfs: the runtime writes the limit
/// files, the shim enters the cgroup by writing its pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_go_into_the_container_cgroup() {
    let root = Root::new("cgroup");
    let cgroups = root.0.join("cgroupfs");
    let mut options = ProcessOptions::new(root.0.join("state"), "127.0.0.1");
    options.shim = PathBuf::from(env!("CARGO_BIN_EXE_tug-kubelet"));
    options.cgroup_root = Some(cgroups.clone());
    let rt = ProcessRuntime::open(options).unwrap();
    let limits = rt
        .status()
        .await
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.kind == LIMITS_ENFORCED)
        .unwrap();
    assert!(limits.status, "{limits:?}");

    let sandbox = sandbox_config("u1");
    let sid = rt.run_pod_sandbox(&sandbox).await.unwrap();
    let mut config = container_config("app", "sleep 30");
    config.annotations = [
        (ANNOTATION_LIMIT_CPU.to_string(), "250m".to_string()),
        (ANNOTATION_LIMIT_MEMORY.to_string(), "64Mi".to_string()),
    ]
    .into();
    let id = rt.create_container(&sid, &config, &sandbox).await.unwrap();
    let cgroup = cgroups.join("pod-u1").join(&id);
    assert_eq!(
        std::fs::read_to_string(cgroup.join("cpu.max")).unwrap(),
        "25000 100000"
    );
    assert_eq!(
        std::fs::read_to_string(cgroup.join("memory.max")).unwrap(),
        "67108864"
    );
    rt.start_container(&id).await.unwrap();
    let shim: u32 = std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(alive(shim), "the shim entered the cgroup");

    // A malformed limit is refused at create time.
    config.annotations = [(ANNOTATION_LIMIT_MEMORY.to_string(), "much".to_string())].into();
    let err = rt
        .create_container(&sid, &config, &sandbox)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("memory limit"), "{err}");
    kill_all(&rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_comes_from_configmaps_and_fields_and_exec_probes_gate_readiness() {
    let server = TestServer::start().await.unwrap();
    let client = server.client().await.unwrap();
    let root = Root::new("env");
    let runtime = root.runtime();
    let kubelet = Kubelet::start(client.clone(), config("proc-env", &runtime))
        .await
        .unwrap();
    kubelet
        .wait_registered(Duration::from_secs(10))
        .await
        .unwrap();
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "default");
    configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "greeting"}, "data": {"word": "hello"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The readiness probe passes once the container has written its file.
    let ready_file = root.0.join("ready-flag");
    let spec: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "env"},
        "spec": {
            "nodeName": "proc-env",
            "containers": [{
                "name": "app", "image": "busybox",
                "command": ["sh", "-c", format!("echo $WORD $ME; sleep 1; touch {}; sleep 30", ready_file.display())],
                "env": [
                    {"name": "WORD", "valueFrom": {"configMapKeyRef": {"name": "greeting", "key": "word"}}},
                    {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "readinessProbe": {"exec": {"command": ["test", "-f", ready_file.display().to_string()]}, "periodSeconds": 1},
            }],
        },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &spec).await.unwrap();
    let running = phase_is(&pods, "env", "Running").await;
    let uid = running.metadata.uid.clone().unwrap();
    let log = root.0.join("pods").join(&uid).join("app/0.log");
    eventually(
        Duration::from_secs(10),
        "the environment in the log",
        || async {
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines()
                .any(|l| is_cri_line(l, "stdout", "hello env"))
                .then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "ready through the exec probe",
        || async {
            let pod = pods.get("env").await.ok()?;
            container(&pod)?.ready.then_some(())
        },
    )
    .await;

    // A missing ConfigMap is CreateContainerConfigError, and says which.
    let mut broken = spec.clone();
    broken.metadata.name = Some("broken".into());
    let env = &mut broken.spec.as_mut().unwrap().containers[0]
        .env
        .as_mut()
        .unwrap()[0];
    env.value_from
        .as_mut()
        .unwrap()
        .config_map_key_ref
        .as_mut()
        .unwrap()
        .name = "absent".into();
    pods.create(&PostParams::default(), &broken).await.unwrap();
    let waiting = eventually(
        Duration::from_secs(10),
        "CreateContainerConfigError",
        || async {
            let pod = pods.get("broken").await.ok()?;
            let waiting = container(&pod)?.state?.waiting?;
            (waiting.reason.as_deref() == Some("CreateContainerConfigError")).then_some(waiting)
        },
    )
    .await;
    assert_eq!(
        waiting.message.as_deref(),
        Some("configmap \"absent\" not found")
    );
    kubelet.shutdown().await;
    kill_all(&runtime).await;
}
