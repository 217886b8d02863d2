//! End to end: static pods. A process-runtime `tug-kubelet` runs the pods
//! in its `--pod-manifest-path` directory and mirrors them in the API
//! server: the mirror pod `<name>-<node>` carries the config hash and an
//! ownerReference to the Node and shows the static pod's status; deleting
//! it brings it back while the pod keeps running; editing the file
//! restarts the pod; removing the file stops it and deletes the mirror.

use std::path::Path;
use std::time::{Duration, Instant};

use tugboat_e2e::{free_port, ApiServer, Component};

const V: &str = "1.33";
const PATIENCE: Duration = Duration::from_secs(30);

fn manifest(message: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {{tier: static}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'echo $$ > pid; echo {message}; exec sleep 600']
"#
    )
}

/// The mirror pod's hash annotation, owner, phase and containerID, once
/// it is Running (with a container other than `not_id`).
fn running_mirror(server: &ApiServer, what: &str, not_id: Option<&str>) -> Vec<String> {
    let out = server.kubectl_until(
        V,
        &[
            "get",
            "pod",
            "web-worker",
            "-o",
            "jsonpath={.metadata.annotations.kubernetes\\.io/config\\.mirror} {.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.status.phase} {.status.containerStatuses[0].containerID}",
        ],
        PATIENCE,
        what,
        |out| {
            let fields: Vec<&str> = out.split(' ').collect();
            fields.len() == 4
                && fields[2] == "Running"
                && fields[3].starts_with("process://")
                && Some(fields[3]) != not_id
        },
    );
    out.split(' ').map(String::from).collect()
}

fn pid_of(root: &Path, hash: &str) -> u32 {
    let file = root.join("pods").join(hash).join("app").join("pid");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .parse()
        .expect("a PID")
}

fn wait_gone(pid: u32, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "{what}: process {pid} still runs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn static_pods_run_from_files_and_are_mirrored() {
    let server = ApiServer::start();
    let root = server.data_dir.with_extension("kubelet-root");
    let manifests = server.data_dir.with_extension("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("web.yaml"), manifest("one")).unwrap();
    // A broken manifest beside it is skipped, not fatal.
    std::fs::write(manifests.join("broken.yaml"), "kind: [").unwrap();
    let port = free_port().to_string();
    let kubelet = Component::start(
        &server,
        "tug-kubelet",
        &[
            "--node-name",
            "worker",
            "--runtime",
            "process",
            "--root-dir",
            root.to_str().unwrap(),
            "--pod-manifest-path",
            manifests.to_str().unwrap(),
            "--file-check-frequency",
            "1s",
            "--port",
            &port,
            "--healthz-port",
            "0",
        ],
    );

    let first = running_mirror(&server, "the mirror pod Running", None);
    assert_eq!(first[1], "Node/worker", "{first:?}");
    assert_eq!(first[0].len(), 32, "{first:?}");
    let annotations = server.kubectl_ok(
        V,
        &[
            "get",
            "pod",
            "web-worker",
            "-o",
            "jsonpath={.metadata.annotations.kubernetes\\.io/config\\.hash} {.metadata.annotations.kubernetes\\.io/config\\.source} {.spec.nodeName} {.metadata.labels.tier}",
        ],
    );
    assert_eq!(annotations, format!("{} file worker static", first[0]));
    let pid = pid_of(&root, &first[0]);
    server.kubectl_until(V, &["logs", "web-worker"], PATIENCE, "its log", |out| {
        out.trim() == "one"
    });

    // Deleting the mirror: it comes back, the pod kept running.
    let uid_of = || {
        server.kubectl_ok(
            V,
            &["get", "pod", "web-worker", "-o", "jsonpath={.metadata.uid}"],
        )
    };
    let mirror_uid = uid_of();
    server.kubectl_ok(V, &["delete", "pod", "web-worker", "--wait=true"]);
    let again = running_mirror(&server, "the mirror pod back", None);
    assert_ne!(uid_of(), mirror_uid, "a new mirror pod");
    assert_eq!(again, first, "{}", kubelet.log());
    assert_eq!(pid_of(&root, &first[0]), pid);
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    // Editing the file: a new pod (new hash, new container).
    std::fs::write(manifests.join("web.yaml"), manifest("two")).unwrap();
    let edited = running_mirror(&server, "the edited pod Running", Some(&first[3]));
    assert_ne!(edited[0], first[0]);
    wait_gone(pid, "the old pod's process");
    server.kubectl_until(V, &["logs", "web-worker"], PATIENCE, "the new log", |out| {
        out.trim() == "two"
    });
    let new_pid = pid_of(&root, &edited[0]);

    // Removing the file: the pod stops and its mirror goes.
    std::fs::remove_file(manifests.join("web.yaml")).unwrap();
    server.kubectl_until(
        V,
        &["get", "pods", "-o", "name"],
        PATIENCE,
        "the mirror pod deleted",
        |out| out.trim().is_empty(),
    );
    wait_gone(new_pid, "the removed pod's process");
}
