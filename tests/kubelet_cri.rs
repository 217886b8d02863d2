//! End to end: the real `tug-apiserver` and `tug-kubelet --runtime cri` on
//! containerd (CRI v1 over its socket, CNI bridge networking), driven by
//! kubectl 1.33. Needs containerd answering with the local busybox and
//! pause images: `scripts/setup-containerd` (as root) prepares all of it,
//! and this test fails, not skips, when it has not run.
//!
//! One pod's story after another, on one node:
//! - a busybox pod runs, `kubectl logs` shows its output (read from the
//!   CRI log file containerd writes), its memory limit is the container's
//!   cgroup limit, and it gets an IP on the bridge;
//! - a second pod fetches a page from the first at that IP;
//! - an absent image shows `ErrImagePull`, then `ImagePullBackOff`
//!   (`ErrImageNeverPull` with `imagePullPolicy: Never`), while the other
//!   pods keep running;
//! - a failing exec liveness probe (CRI `ExecSync`) restarts its container;
//! - a pod whose sandbox dies gets a new one (new IP, container restarted);
//! - a restarted kubelet adopts the running containers (same IDs, same
//!   restart counts);
//! - `kubectl delete pod` ends within the grace period and its sandbox,
//!   containers and logs leave the node.
//!
//! And `kubectl exec`, `attach` and `port-forward` into containerd's pods
//! with kubectl 1.33 (WebSocket v5, which the kubelet bridges to SPDY v4
//! towards containerd's streaming server) and 1.29 (SPDY all the way).
//! Port-forward reaches a server bound to the pod's own 127.0.0.1 (the
//! kubelet connects from inside the pod's network namespace, as containerd
//! does), and a closed port shows the kubelet's refusal.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tugboat_e2e::{free_port, ApiServer, Component, KUBECTL_DIR};

const V: &str = "1.33";
const PATIENCE: Duration = Duration::from_secs(60);
const SOCKET: &str = "/run/containerd/containerd.sock";

/// Fails with what to do when containerd or its images are missing.
fn require_containerd() {
    let images = Command::new("ctr")
        .args(["--address", SOCKET, "-n", "k8s.io", "images", "ls", "-q"])
        .output();
    let listed = match images {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => panic!(
            "containerd is not answering on {SOCKET} ({}): run scripts/setup-containerd as root",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("ctr not runnable ({e}): run scripts/setup-containerd as root"),
    };
    assert!(
        listed
            .lines()
            .any(|l| l == "docker.io/library/busybox:latest"),
        "containerd has no busybox image: run scripts/setup-containerd as root"
    );
}

fn start_kubelet(server: &ApiServer, node: &str, port: &str) -> Component {
    Component::start(
        server,
        "tug-kubelet",
        &[
            "--node-name",
            node,
            "--runtime",
            "cri",
            "--container-runtime-endpoint",
            &format!("unix://{SOCKET}"),
            "--port",
            port,
            "--healthz-port",
            "0",
        ],
    )
}

/// Deletes the test's pods while a kubelet still runs and waits until
/// their containers have left containerd, so that a failed test leaves
/// nothing behind in the machine's containerd.
struct DeletePods<'a>(&'a ApiServer);

impl Drop for DeletePods<'_> {
    fn drop(&mut self) {
        let out = self.0.kubectl(
            V,
            &["get", "pods", "-o", "jsonpath={.items[*].metadata.uid}"],
        );
        let uids = String::from_utf8_lossy(&out.stdout).into_owned();
        let _ = self.0.kubectl(
            V,
            &["delete", "pods", "--all", "--wait=true", "--timeout=60s"],
        );
        let deadline = Instant::now() + PATIENCE;
        for uid in uids.split_whitespace() {
            while !pod_containers(uid).trim().is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// The ids of containerd's containers (sandboxes included) of pod `uid`.
fn pod_containers(uid: &str) -> String {
    let filter = format!("labels.\"io.kubernetes.pod.uid\"=={uid}");
    let out = Command::new("ctr")
        .args([
            "--address",
            SOCKET,
            "-n",
            "k8s.io",
            "containers",
            "ls",
            "-q",
            &filter,
        ])
        .output()
        .expect("ctr");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn jsonpath(server: &ApiServer, pod: &str, path: &str) -> String {
    let out = server.kubectl(V, &["get", "pod", pod, "-o", &format!("jsonpath={path}")]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_phase(server: &ApiServer, pod: &str, phase: &str) {
    server.kubectl_until(
        V,
        &["get", "pod", pod, "-o", "jsonpath={.status.phase}"],
        PATIENCE,
        &format!("pod {pod} {phase}"),
        |out| out == phase,
    );
}

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 3
  containers:
  - name: app
    image: busybox
    imagePullPolicy: IfNotPresent
    command:
    - sh
    - -c
    - |
      echo hello from busybox
      echo "memory limit $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"
      mkdir -p /www && echo served-by-web > /www/index.html
      exec httpd -f -p 8080 -h /www
    resources:
      limits: {cpu: 200m, memory: 64Mi}
"#;

const FETCH: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: fetch}
spec:
  nodeName: NODE
  restartPolicy: Never
  containers:
  - name: app
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [wget, -qO-, "http://IP:8080/"]
"#;

const GHOSTS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ghost}
spec:
  nodeName: NODE
  containers:
  - name: app
    image: registry.invalid/ghost:1
---
apiVersion: v1
kind: Pod
metadata: {name: never}
spec:
  nodeName: NODE
  containers:
  - name: app
    image: registry.invalid/ghost:1
    imagePullPolicy: Never
"#;

const SICK: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: sick}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo feeling fine; touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600']
    livenessProbe:
      exec: {command: [cat, /tmp/healthy]}
      periodSeconds: 1
      failureThreshold: 1
"#;

const PHOENIX: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: phoenix}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
"#;

#[test]
fn pods_run_on_containerd_with_cni_networking() {
    require_containerd();
    let server = ApiServer::start();
    let node = format!("cri-{}", free_port());
    let port = free_port().to_string();
    let mut kubelet = start_kubelet(&server, &node, &port);
    let _cleanup = DeletePods(&server);
    server.kubectl_until(
        V,
        &[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.status.nodeInfo.containerRuntimeVersion}",
        ],
        PATIENCE,
        "the node registered with containerd as its runtime",
        |out| out.starts_with("containerd://"),
    );

    // A pod runs, its output is in `kubectl logs`, its limit is enforced.
    let created = Instant::now();
    server.kubectl_stdin(V, &["apply", "-f", "-"], &WEB.replace("NODE", &node));
    wait_phase(&server, "web", "Running");
    eprintln!("web: created to Running in {:?}", created.elapsed());
    let logs = server.kubectl_until(V, &["logs", "web"], PATIENCE, "web's output", |out| {
        out.contains("memory limit")
    });
    assert!(logs.starts_with("hello from busybox\n"), "{logs}");
    assert!(
        logs.contains(&format!("memory limit {}", 64 << 20)),
        "{logs}\n{}",
        kubelet.log()
    );

    // It has an IP on the bridge, and another pod reaches it there.
    let ip = jsonpath(&server, "web", "{.status.podIP}");
    assert!(ip.starts_with("10.88."), "pod IP {ip:?}");
    assert_eq!(jsonpath(&server, "web", "{.status.podIPs[0].ip}"), ip);
    server.kubectl_stdin(
        V,
        &["apply", "-f", "-"],
        &FETCH.replace("NODE", &node).replace("IP", &ip),
    );
    wait_phase(&server, "fetch", "Succeeded");
    assert_eq!(server.kubectl_ok(V, &["logs", "fetch"]), "served-by-web\n");

    // A host-network pod runs in the node's network (and UTS) namespace:
    // its sandbox gets no hostname of its own, which runc would refuse.
    let host_pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: on-host}}\nspec:\n  nodeName: {node}\n  hostNetwork: true\n  restartPolicy: Never\n  containers:\n  - name: c\n    image: docker.io/library/busybox:latest\n    imagePullPolicy: IfNotPresent\n    command: [\"hostname\"]\n"
    );
    server.kubectl_stdin(V, &["apply", "-f", "-"], &host_pod);
    wait_phase(&server, "on-host", "Succeeded");
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    assert_eq!(
        server.kubectl_ok(V, &["logs", "on-host"]),
        host_name,
        "a host-network pod sees the node's hostname"
    );
    let fetch_ip = jsonpath(&server, "fetch", "{.status.podIP}");
    assert!(
        fetch_ip.starts_with("10.88.") && fetch_ip != ip,
        "{fetch_ip}"
    );

    // An image no registry has: ErrImagePull, then ImagePullBackOff.
    server.kubectl_stdin(V, &["apply", "-f", "-"], &GHOSTS.replace("NODE", &node));
    let reason = |pod: &str| {
        jsonpath(
            &server,
            pod,
            "{.status.containerStatuses[0].state.waiting.reason}",
        )
    };
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while !(seen.iter().any(|r| r == "ErrImagePull")
        && seen.last().is_some_and(|r| r == "ImagePullBackOff"))
    {
        assert!(Instant::now() < deadline, "waiting reasons seen: {seen:?}");
        let r = reason("ghost");
        if !r.is_empty() && seen.last() != Some(&r) {
            seen.push(r);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let message = jsonpath(
        &server,
        "ghost",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert_eq!(
        message,
        "Back-off pulling image \"registry.invalid/ghost:1\""
    );
    server.kubectl_until(
        V,
        &["get", "pod", "never"],
        PATIENCE,
        "ErrImageNeverPull",
        |out| out.contains("ErrImageNeverPull"),
    );
    assert_eq!(jsonpath(&server, "ghost", "{.status.phase}"), "Pending");

    // A failing exec liveness probe restarts its container.
    server.kubectl_stdin(V, &["apply", "-f", "-"], &SICK.replace("NODE", &node));
    server.kubectl_until(
        V,
        &[
            "get",
            "pod",
            "sick",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ],
        PATIENCE,
        "the unhealthy container restarted",
        |out| out.parse::<u32>().is_ok_and(|n| n >= 1),
    );
    let events = server.kubectl_ok(
        V,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=sick",
        ],
    );
    assert!(
        events.contains("Container app failed liveness probe, will be restarted"),
        "{events}"
    );
    // The killed container's log is still there for `--previous`.
    assert_eq!(
        server.kubectl_ok(V, &["logs", "sick", "--previous"]),
        "feeling fine\n"
    );

    // A sandbox that dies (its pause process killed) is replaced: a new
    // IP, the container restarted in it.
    server.kubectl_stdin(V, &["apply", "-f", "-"], &PHOENIX.replace("NODE", &node));
    wait_phase(&server, "phoenix", "Running");
    let old_ip = jsonpath(&server, "phoenix", "{.status.podIP}");
    let phoenix = jsonpath(&server, "phoenix", "{.metadata.uid}");
    let sandbox = pod_containers(&phoenix)
        .lines()
        .find(|id| {
            let out = Command::new("ctr")
                .args([
                    "--address",
                    SOCKET,
                    "-n",
                    "k8s.io",
                    "containers",
                    "info",
                    id,
                ])
                .output()
                .expect("ctr");
            String::from_utf8_lossy(&out.stdout).contains("localhost/tugboat/pause:1")
        })
        .expect("phoenix's sandbox")
        .to_string();
    let killed = Command::new("ctr")
        .args([
            "--address",
            SOCKET,
            "-n",
            "k8s.io",
            "tasks",
            "kill",
            "-s",
            "KILL",
            &sandbox,
        ])
        .status()
        .expect("ctr");
    assert!(killed.success());
    server.kubectl_until(
        V,
        &[
            "get",
            "pod",
            "phoenix",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready} {.status.podIP}",
        ],
        PATIENCE,
        "phoenix running again in a new sandbox",
        |out| out.starts_with("1 true ") && !out.ends_with(&format!(" {old_ip}")),
    );

    // The other pods ran on, untouched.
    let web_container = jsonpath(&server, "web", "{.status.containerStatuses[0].containerID}");
    assert!(
        web_container.starts_with("containerd://"),
        "{web_container}"
    );
    assert_eq!(
        jsonpath(
            &server,
            "web",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );

    // A restarted kubelet adopts what runs: same container, no restart.
    drop(kubelet);
    kubelet = start_kubelet(&server, &node, &port);
    std::thread::sleep(Duration::from_secs(3));
    wait_phase(&server, "web", "Running");
    assert_eq!(
        jsonpath(&server, "web", "{.status.containerStatuses[0].containerID}"),
        web_container,
        "{}",
        kubelet.log()
    );
    assert_eq!(
        jsonpath(
            &server,
            "web",
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
    assert!(server
        .kubectl_ok(V, &["logs", "web"])
        .starts_with("hello from busybox\n"));

    // Delete: httpd ignores SIGTERM as PID 1, so the grace period (3 s)
    // runs out and the container is killed; then the container and the
    // sandbox leave containerd.
    let id = web_container
        .trim_start_matches("containerd://")
        .to_string();
    let uid = jsonpath(&server, "web", "{.metadata.uid}");
    assert!(pod_containers(&uid).contains(&id));
    let asked = Instant::now();
    server.kubectl_ok(V, &["delete", "pod", "web", "--wait=true"]);
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(3 + 5), "delete took {took:?}");
    let deadline = Instant::now() + PATIENCE;
    let logs = std::path::PathBuf::from(format!("/var/log/pods/default_web_{uid}"));
    while !pod_containers(&uid).trim().is_empty() || logs.exists() {
        assert!(
            Instant::now() < deadline,
            "pod web left in containerd or its logs in {}",
            logs.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("web: deleted in {took:?}");
}

/// The kubelet's CRI client against containerd directly, without an API
/// server: a sandbox with an IP, a container in it with its config,
/// `ExecSync` output and exit codes, the streaming `Exec` URL, stop and
/// removal.
#[test]
fn the_cri_client_drives_containerd() {
    use kubelet::runtime::cri::{CriRuntime, StreamCall};
    use kubelet::runtime::{
        ContainerConfig, ContainerFilter, ContainerMetadata, ContainerRuntime, ContainerState,
        ImageSpec, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, SandboxState,
        LABEL_POD_UID,
    };

    require_containerd();
    let uid = format!("cri-client-{}", free_port());
    let logs = tempfile::tempdir().expect("log dir");
    tokio::runtime::Runtime::new()
        .expect("tokio")
        .block_on(async {
            let rt = CriRuntime::connect(&format!("unix://{SOCKET}"))
                .await
                .expect("containerd answers");
            let version = rt.version().await.expect("version");
            assert_eq!(
                (
                    version.runtime_name.as_str(),
                    version.runtime_api_version.as_str()
                ),
                ("containerd", "v1")
            );
            let labels: std::collections::BTreeMap<String, String> =
                [(LABEL_POD_UID.to_string(), uid.clone())].into();
            let sandbox_config = PodSandboxConfig {
                metadata: PodSandboxMetadata {
                    name: "direct".into(),
                    namespace: "default".into(),
                    uid: uid.clone(),
                    attempt: 0,
                },
                hostname: "direct".into(),
                log_directory: logs.path().to_string_lossy().into_owned(),
                labels: labels.clone(),
                ..Default::default()
            };
            let sandbox = rt.run_pod_sandbox(&sandbox_config).await.expect("sandbox");
            let status = rt
                .pod_sandbox_status(&sandbox)
                .await
                .expect("sandbox status");
            assert_eq!(status.state, SandboxState::Ready);
            let ip = status.ip.clone().unwrap_or_default();
            assert!(ip.starts_with("10.88."), "sandbox IP {ip:?}");
            let listed = rt
                .list_pod_sandbox(&PodSandboxFilter {
                    label_selector: labels.clone(),
                    ..Default::default()
                })
                .await
                .expect("list sandboxes");
            assert_eq!(listed.len(), 1);

            let config = ContainerConfig {
                metadata: ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                },
                image: ImageSpec {
                    image: "busybox".into(),
                },
                command: vec!["sh".into(), "-c".into()],
                args: vec!["echo started; exec sleep 3600".into()],
                working_dir: "/tmp".into(),
                envs: vec![("GREETING".into(), "ahoy".into())],
                labels: labels.clone(),
                log_path: "app/0.log".into(),
                ..Default::default()
            };
            let id = rt
                .create_container(&sandbox, &config, &sandbox_config)
                .await
                .expect("create");
            rt.start_container(&id).await.expect("start");
            let status = rt.container_status(&id).await.expect("status");
            assert_eq!(status.state, ContainerState::Running);
            assert_eq!(status.image.image, "busybox");
            assert!(
                status.image_ref.starts_with("sha256:"),
                "{}",
                status.image_ref
            );

            let exec = rt
                .exec_sync(
                    &id,
                    &[
                        "sh".into(),
                        "-c".into(),
                        "echo $GREETING from $(pwd); exit 3".into(),
                    ],
                    Duration::from_secs(10),
                )
                .await
                .expect("exec");
            assert_eq!(exec.exit_code, 3);
            assert_eq!(String::from_utf8_lossy(&exec.stdout), "ahoy from /tmp\n");

            let url = rt
                .exec_url(&StreamCall {
                    container_id: id.clone(),
                    cmd: vec!["sh".into()],
                    stdin: true,
                    stdout: true,
                    tty: true,
                    ..Default::default()
                })
                .await
                .expect("exec url");
            assert!(
                url.starts_with("http://127.0.0.1:") && url.contains("/exec/"),
                "{url}"
            );

            let log = rt.container_log_path(&id).await.expect("log path");
            assert_eq!(log, logs.path().join("app/0.log"));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(text.contains(" stdout F started"), "{text:?}");

            // `sleep` as PID 1 ignores SIGTERM: it is killed once the
            // timeout runs out. A missing container is no error.
            let asked = Instant::now();
            rt.stop_container(&id, Duration::from_secs(1))
                .await
                .expect("stop");
            let took = asked.elapsed();
            assert!(
                took >= Duration::from_secs(1) && took < Duration::from_secs(5),
                "stop took {took:?}"
            );
            assert_eq!(
                rt.container_status(&id).await.expect("status").state,
                ContainerState::Exited
            );
            rt.stop_container("no-such-container", Duration::ZERO)
                .await
                .expect("stopping nothing");
            rt.stop_pod_sandbox(&sandbox).await.expect("stop sandbox");
            rt.remove_pod_sandbox(&sandbox)
                .await
                .expect("remove sandbox");
            let left = rt
                .list_containers(&ContainerFilter {
                    label_selector: labels,
                    ..Default::default()
                })
                .await
                .expect("list containers");
            assert!(left.is_empty(), "{left:?}");
            assert!(matches!(
                rt.container_status(&id).await,
                Err(kubelet::runtime::RuntimeError::NotFound(_))
            ));
        });
}

const STREAMING_PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    imagePullPolicy: IfNotPresent
    env: [{name: GREETING, value: hello-from-env}]
    command: [sh, -c, 'while true; do echo tick; sleep 0.3; done']
---
apiVersion: v1
kind: Pod
metadata: {name: site}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'mkdir -p /www && echo served-through-port-forward > /www/index.html && exec httpd -f -p 8080 -h /www']
---
apiVersion: v1
kind: Pod
metadata: {name: echoer}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    imagePullPolicy: IfNotPresent
    stdin: true
    command: [sh, -c, 'while read l; do echo got-$l; done']
---
apiVersion: v1
kind: Pod
metadata: {name: loopback}
spec:
  nodeName: NODE
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'mkdir -p /www && echo served-from-the-pods-loopback > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www']
"#;

/// Runs kubectl with `input` on its stdin: (exit code, stdout, stderr).
fn kubectl_with_input(
    server: &ApiServer,
    v: &str,
    args: &[&str],
    input: &str,
) -> (i32, String, String) {
    let mut child = server
        .kubectl_cmd(v, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing kubectl's stdin");
    let out = child.wait_with_output().expect("kubectl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One HTTP/1.0 GET on the loopback; the whole answer.
fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn streaming_session(server: &ApiServer, kubelet: &Component, v: &str) {
    let log = || kubelet.log();

    // Output, the container's environment, and the exit code.
    let out = server.kubectl(
        v,
        &[
            "exec",
            "ticker",
            "--",
            "sh",
            "-c",
            "echo hi; echo $GREETING; echo oops >&2; exit 3",
        ],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(stdout, "hi\nhello-from-env\n", "{stderr}\n{}", log());
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("oops"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 3"),
        "{stderr}"
    );
    assert_eq!(
        server.kubectl_ok(v, &["exec", "ticker", "--", "cat", "/etc/hostname"]),
        "ticker\n"
    );

    // A command the image does not have: kubectl fails with the runtime's
    // Status, as upstream shows it.
    let out = server.kubectl(v, &["exec", "ticker", "--", "/no/such/command"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .starts_with("error: Internal error occurred: error executing command in container: ")
            && stderr.contains("/no/such/command"),
        "{stderr}"
    );

    // stdin reaches the command, and its end ends `cat`.
    let (code, stdout, stderr) = kubectl_with_input(
        server,
        v,
        &["exec", "-i", "ticker", "--", "cat"],
        "one\ntwo\n",
    );
    assert_eq!((code, stdout.as_str()), (0, "one\ntwo\n"), "{stderr}");

    // -t: a terminal in the container, of the size of kubectl's own
    // (`script` gives kubectl one).
    let kubectl = format!("{KUBECTL_DIR}/kubectl.{v}");
    let out = Command::new("script")
        .args([
            "-qec",
            &format!(
                "stty cols 101 rows 41; {kubectl} exec -it ticker -- sh -c 'tty; sleep 0.5; stty size'"
            ),
            "/dev/null",
        ])
        .env("KUBECONFIG", &server.kubeconfig)
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", log());
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("41 101"), "the resize did not arrive: {text}");

    // attach streams the main process's output as it is written.
    let mut attach = server
        .kubectl_cmd(v, &["attach", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl attach");
    let mut lines = BufReader::new(attach.stdout.take().expect("stdout")).lines();
    let first = lines.next();
    let second = lines.next();
    let _ = attach.kill();
    let _ = attach.wait();
    assert_eq!(
        (first.and_then(Result::ok), second.and_then(Result::ok)),
        (Some("tick".to_string()), Some("tick".to_string())),
        "{}",
        log()
    );

    // attach -i: what is typed reaches the main process's stdin.
    let mut attach = server
        .kubectl_cmd(v, &["attach", "-i", "echoer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl attach -i");
    let mut input = attach.stdin.take().expect("stdin");
    input
        .write_all(format!("ping-{v}\n").as_bytes())
        .expect("writing to kubectl attach");
    let mut lines = BufReader::new(attach.stdout.take().expect("stdout")).lines();
    let answer = lines.next();
    let _ = attach.kill();
    let _ = attach.wait();
    assert_eq!(
        answer.and_then(Result::ok),
        Some(format!("got-ping-{v}")),
        "{}",
        log()
    );

    // port-forward reaches httpd in the pod's own network namespace,
    // connection after connection.
    let local = free_port();
    let mapping = format!("{local}:8080");
    let mut forward = server
        .kubectl_cmd(v, &["port-forward", "pod/site", &mapping])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut ready = BufReader::new(forward.stdout.take().expect("stdout"));
    let mut line = String::new();
    ready.read_line(&mut line).expect("port-forward's output");
    assert!(line.starts_with("Forwarding from"), "{line}");
    let deadline = Instant::now() + PATIENCE;
    let (mut answers, mut failures) = (Vec::new(), Vec::new());
    while answers.len() < 3 && Instant::now() < deadline {
        match http_get(local) {
            // busybox httpd answers HTTP/1.1.
            Ok(a) if a.starts_with("HTTP/1.1 200") => answers.push(a),
            Ok(a) => {
                failures.push(a);
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                failures.push(e.to_string());
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let _ = forward.kill();
    let forwarder = forward.wait_with_output().expect("port-forward");
    assert_eq!(
        answers.len(),
        3,
        "{failures:?}\n{}\n{}",
        String::from_utf8_lossy(&forwarder.stderr),
        log()
    );
    assert!(
        answers[0].ends_with("served-through-port-forward\n"),
        "{}",
        answers[0]
    );

    // A server bound to the pod's own 127.0.0.1 is reached too (the
    // kubelet connects from inside the pod's network namespace, as
    // containerd does), with a local port kubectl picks.
    let answer = forward_and_get(server, v, "loopback", 8080, &log);
    assert!(
        answer.ends_with("served-from-the-pods-loopback\n"),
        "{answer}"
    );
    // A port nothing listens on: kubectl reports the kubelet's refusal.
    forward_refused(server, v, "loopback", 8081, &log);

    // And only the loopback: the pod IP does not reach that server.
    let ip = jsonpath(server, "loopback", "{.status.podIP}");
    let direct = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::new(ip.parse().expect("pod IP"), 8080),
        Duration::from_secs(5),
    );
    assert!(direct.is_err(), "{ip}:8080 answered from outside the pod");
}

/// `kubectl port-forward pod/<pod> :<port>` to a closed port: a connection
/// through it ends and kubectl prints the kubelet's error.
fn forward_refused(server: &ApiServer, v: &str, pod: &str, port: u16, log: &dyn Fn() -> String) {
    let mut forward = server
        .kubectl_cmd(
            v,
            &["port-forward", &format!("pod/{pod}"), &format!(":{port}")],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut ready = BufReader::new(forward.stdout.take().expect("stdout"));
    let mut line = String::new();
    ready.read_line(&mut line).expect("port-forward's output");
    let local: u16 = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_once(&format!(" -> {port}")))
        .and_then(|(local, _)| local.parse().ok())
        .unwrap_or_else(|| panic!("port-forward printed {line:?}"));
    // kubectl's stderr, line by line, as it comes.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = forward.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    let answer = http_get(local);
    let want = format!("error forwarding port {port} to pod default/{pod}: Connection refused");
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains(&want)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
    }
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(
        seen.iter().any(|l| l.contains(&want)),
        "no {want:?} from kubectl {v}: {seen:?} (the connection got {answer:?})\n{}",
        log()
    );
}

/// `kubectl port-forward pod/<pod> :<port>` (kubectl picks the local port)
/// and one HTTP GET through it, retried until the deadline: the answer.
fn forward_and_get(
    server: &ApiServer,
    v: &str,
    pod: &str,
    port: u16,
    log: &dyn Fn() -> String,
) -> String {
    let mut forward = server
        .kubectl_cmd(
            v,
            &["port-forward", &format!("pod/{pod}"), &format!(":{port}")],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut ready = BufReader::new(forward.stdout.take().expect("stdout"));
    let mut line = String::new();
    ready.read_line(&mut line).expect("port-forward's output");
    // "Forwarding from 127.0.0.1:41234 -> 8080"
    let local: Option<u16> = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_once(&format!(" -> {port}")))
        .and_then(|(local, _)| local.parse().ok());
    let deadline = Instant::now() + PATIENCE;
    let mut failures = vec![line.clone()];
    let answer = local.and_then(|local| loop {
        match http_get(local) {
            Ok(a) if a.starts_with("HTTP/1.1 200") => break Some(a),
            Ok(a) => failures.push(a),
            Err(e) => failures.push(e.to_string()),
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    });
    let _ = forward.kill();
    let forwarder = forward.wait_with_output().expect("port-forward");
    answer.unwrap_or_else(|| {
        panic!(
            "port-forward to {pod}:{port}: {failures:?}\n{}\n{}",
            String::from_utf8_lossy(&forwarder.stderr),
            log()
        )
    })
}

#[test]
fn exec_attach_and_port_forward_into_containerd_pods() {
    require_containerd();
    let server = ApiServer::start();
    let node = format!("cri-stream-{}", free_port());
    let port = free_port().to_string();
    let kubelet = start_kubelet(&server, &node, &port);
    let _cleanup = DeletePods(&server);
    server.kubectl_until(
        V,
        &["get", "node", &node, "-o", "name"],
        PATIENCE,
        "the node registered",
        |out| !out.is_empty(),
    );
    server.kubectl_stdin(
        V,
        &["apply", "-f", "-"],
        &STREAMING_PODS.replace("NODE", &node),
    );
    for pod in ["ticker", "site", "echoer", "loopback"] {
        wait_phase(&server, pod, "Running");
    }
    for v in ["1.33", "1.29"] {
        let started = Instant::now();
        streaming_session(&server, &kubelet, v);
        eprintln!(
            "kubectl {v}: exec, attach and port-forward in {:?}",
            started.elapsed()
        );
    }
}
