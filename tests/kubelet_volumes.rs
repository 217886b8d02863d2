//! End to end: pod volumes on a process-runtime `tug-kubelet`, driven by
//! kubectl 1.33. A configMap volume's file is readable by the container
//! (through the link the process runtime puts in its directory) and
//! changes after the ConfigMap is applied again; a volume type the kubelet
//! does not support, a missing ConfigMap and a mount naming no volume each
//! keep their pod from starting with a clear status (and `kubectl logs`
//! says the container is waiting to start), while other pods run.

use std::time::Duration;

use tugboat_e2e::{free_port, ApiServer, Component};

const V: &str = "1.33";
const PATIENCE: Duration = Duration::from_secs(30);

fn start_kubelet(server: &ApiServer) -> Component {
    let root = server.data_dir.with_extension("kubelet-root");
    let port = free_port().to_string();
    let kubelet = Component::start(
        server,
        "tug-kubelet",
        &[
            "--node-name",
            "worker",
            "--runtime",
            "process",
            "--root-dir",
            root.to_str().unwrap(),
            "--port",
            &port,
            "--healthz-port",
            "0",
        ],
    );
    server.kubectl_until(
        V,
        &["get", "node", "worker", "-o", "name"],
        PATIENCE,
        "the node registered",
        |out| out.trim() == "node/worker",
    );
    kubelet
}

fn config_map(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{greeting: {value}}}\n"
    )
}

/// A pod printing `etc/config/greeting` (its configMap volume, mounted at
/// `/etc/config`) every 200 ms.
const READER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  volumes:
  - name: config
    configMap: {name: settings}
  - name: scratch
    emptyDir: {}
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo written > scratch/file; for i in $(seq 1 600); do echo "greeting=$(cat etc/config/greeting) scratch=$(cat scratch/file)"; sleep 0.2; done']
    volumeMounts:
    - {name: config, mountPath: /etc/config, readOnly: true}
    - {name: scratch, mountPath: /scratch}
"#;

const NFS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: remote}
spec:
  nodeName: worker
  volumes:
  - name: share
    nfs: {server: nfs.example.com, path: /exports}
  containers:
  - name: app
    image: busybox
    command: [sleep, "60"]
    volumeMounts:
    - {name: share, mountPath: /share}
"#;

const LATER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: patient}
spec:
  nodeName: worker
  terminationGracePeriodSeconds: 1
  volumes:
  - name: config
    configMap: {name: later}
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo "$(cat etc/config/key)"; sleep 60']
    volumeMounts:
    - {name: config, mountPath: /etc/config}
"#;

const NO_VOLUME: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: dangling}
spec:
  nodeName: worker
  containers:
  - name: app
    image: busybox
    command: [sleep, "60"]
    volumeMounts:
    - {name: ghost, mountPath: /ghost}
"#;

fn events_of(server: &ApiServer, pod: &str) -> String {
    server.kubectl_ok(
        V,
        &[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod}"),
            "-o",
            "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
        ],
    )
}

#[test]
fn volumes_reach_the_containers_and_bad_ones_say_why() {
    let server = ApiServer::start();
    let kubelet = start_kubelet(&server);
    server.kubectl_stdin(V, &["apply", "-f", "-"], &config_map("hello"));
    server.kubectl_stdin(V, &["apply", "-f", "-"], READER);
    server.kubectl_stdin(V, &["apply", "-f", "-"], NFS);
    server.kubectl_stdin(V, &["apply", "-f", "-"], LATER);
    server.kubectl_stdin(V, &["apply", "-f", "-"], NO_VOLUME);

    server.kubectl_until(
        V,
        &["get", "pod", "reader", "-o", "jsonpath={.status.phase}"],
        PATIENCE,
        "the reader Running",
        |out| out == "Running",
    );
    server.kubectl_until(
        V,
        &["logs", "reader", "--tail=1"],
        PATIENCE,
        "the ConfigMap's value and the emptyDir's file in the container",
        |out| out.trim() == "greeting=hello scratch=written",
    );

    // An unsupported volume type: the pod waits, saying why.
    let waiting = server.kubectl_until(
        V,
        &[
            "get",
            "pod",
            "remote",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}",
        ],
        PATIENCE,
        "the nfs pod waiting with a message",
        |out| out.contains("nfs"),
    );
    assert!(
        waiting.starts_with("ContainerCreating|")
            && waiting.contains("volume type nfs is not supported"),
        "{waiting}\n{}",
        kubelet.log()
    );
    let events = events_of(&server, "remote");
    assert!(
        events.contains("FailedMount: MountVolume.SetUp failed for volume \"share\""),
        "{events}"
    );
    assert_eq!(
        server.kubectl_ok(
            V,
            &["get", "pod", "remote", "-o", "jsonpath={.status.phase}"]
        ),
        "Pending"
    );
    // Its container never started: `kubectl logs` says so, as upstream's.
    let logs = server.kubectl(V, &["logs", "remote"]);
    assert!(!logs.status.success());
    let stderr = String::from_utf8_lossy(&logs.stderr);
    assert!(
        stderr
            .contains(r#"container "app" in pod "remote" is waiting to start: ContainerCreating"#),
        "{stderr}"
    );

    // A mount naming no volume: the container cannot be configured.
    let dangling = server.kubectl_until(
        V,
        &[
            "get",
            "pod",
            "dangling",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}",
        ],
        PATIENCE,
        "the dangling mount's pod waiting",
        |out| out.starts_with("CreateContainerConfigError"),
    );
    assert!(
        dangling.contains("cannot find volume \"ghost\""),
        "{dangling}"
    );

    // A missing ConfigMap: FailedMount until it appears, then the pod runs.
    server.kubectl_until(
        V,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=patient,reason=FailedMount",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        PATIENCE,
        "a FailedMount event for the missing ConfigMap",
        |out| out.contains("\"later\" not found"),
    );
    assert_eq!(
        server.kubectl_ok(
            V,
            &["get", "pod", "patient", "-o", "jsonpath={.status.phase}"]
        ),
        "Pending"
    );
    server.kubectl_ok(
        V,
        &["create", "configmap", "later", "--from-literal=key=finally"],
    );
    server.kubectl_until(
        V,
        &["logs", "patient"],
        PATIENCE,
        "the patient pod reading the new ConfigMap",
        |out| out.trim() == "finally",
    );

    // Changing the ConfigMap changes the file the running container reads.
    server.kubectl_stdin(V, &["apply", "-f", "-"], &config_map("bonjour"));
    server.kubectl_until(
        V,
        &["logs", "reader", "--tail=1"],
        PATIENCE,
        "the new value in the running container",
        |out| out.trim() == "greeting=bonjour scratch=written",
    );

    // Deleting the pod removes its volumes from the node.
    let uid = server.kubectl_ok(
        V,
        &["get", "pod", "reader", "-o", "jsonpath={.metadata.uid}"],
    );
    let pod_dir = server
        .data_dir
        .with_extension("kubelet-root")
        .join("pods")
        .join(&uid);
    assert!(pod_dir.join("volumes").exists(), "{}", pod_dir.display());
    server.kubectl_ok(
        V,
        &[
            "delete",
            "pod",
            "reader",
            "patient",
            "remote",
            "dangling",
            "--wait=true",
        ],
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    while pod_dir.join("volumes").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the volumes outlived the pod:\n{}",
            kubelet.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
