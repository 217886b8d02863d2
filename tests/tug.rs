//! End to end: `tug`, our kubectl-style CLI, against the real
//! `tug-apiserver`, with the real `kubectl` 1.33 as the golden reference.
//!
//! Every comparison runs both clients with the same arguments and asserts
//! the same stdout, stderr and exit status, byte for byte (AGE cells are the
//! same because both runs happen within a second; a comparison is retried
//! when a second boundary falls between them). Needs
//! `cargo build -p tugboat-kubectl -p tugboat-apiserver --bins` first.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tugboat_e2e::{binary, ApiServer};

/// The kubectl release tug follows.
const V: &str = "1.33";

const APP: &str = include_str!("fixtures/app.yaml");

/// `tug` with the server's kubeconfig.
fn tug_cmd(server: &ApiServer, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary("tug"));
    cmd.stdin(Stdio::null())
        .env("KUBECONFIG", &server.kubeconfig)
        .env_remove("NO_COLOR")
        .args(args);
    cmd
}

fn tug(server: &ApiServer, args: &[&str]) -> Output {
    tug_cmd(server, args).output().expect("run tug")
}

/// stdout, stderr and exit status as one comparable text.
fn shown(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}\nexit: {:?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        out.status.code()
    )
}

/// Run `tug ARGS` and `kubectl ARGS`; they must print the same.
#[track_caller]
fn same_as_kubectl(server: &ApiServer, args: &[&str]) -> String {
    let mut last = (String::new(), String::new());
    for _ in 0..3 {
        let ours = shown(&tug(server, args));
        let theirs = shown(&server.kubectl(V, args));
        if ours == theirs {
            return ours;
        }
        last = (ours, theirs);
    }
    panic!(
        "`tug {}` differs from kubectl\n--- tug\n{}\n--- kubectl\n{}",
        args.join(" "),
        last.0,
        last.1
    );
}

/// A server with the fixture app (deployment, service, configmap, secret)
/// and two pods, created by kubectl.
fn server_with_app() -> ApiServer {
    let server = ApiServer::start();
    server.kubectl_stdin(V, &["create", "-f", "-"], APP);
    server.kubectl_ok(V, &["run", "p1", "--image=nginx", "-l", "app=x,tier=web"]);
    server.kubectl_ok(V, &["run", "a-longer-pod-name", "--image=busybox:1.36"]);
    server.kubectl_ok(V, &["create", "namespace", "other"]);
    server.kubectl_ok(
        V,
        &[
            "-n",
            "other",
            "create",
            "configmap",
            "c1",
            "--from-literal=k=v",
        ],
    );
    server
}

#[test]
fn get_tables_match_kubectl() {
    let server = server_with_app();
    let cases: &[&[&str]] = &[
        &["get", "pods"],
        &["get", "po", "-o", "wide"],
        &["get", "deploy,po,svc,cm"],
        &["get", "deployments.apps", "-o", "wide"],
        &["get", "all"],
        &["get", "pod/p1"],
        &["get", "pods", "p1", "a-longer-pod-name"],
        &["get", "cm", "-A"],
        &["get", "pods", "--show-labels"],
        &["get", "pods", "-l", "app=x"],
        &["get", "pods", "--sort-by=.metadata.name"],
        &["get", "cm,deploy", "--no-headers"],
        &["get", "ns"],
        &["get", "-n", "other", "configmaps"],
    ];
    for args in cases {
        same_as_kubectl(&server, args);
    }
    // A spot check that the comparison shows what a user sees.
    let out = same_as_kubectl(&server, &["get", "deploy,svc"]);
    assert!(out.contains("deployment.apps/web   0/2"), "{out}");
    // The second type's table follows after a blank line; `default` also
    // holds the `kubernetes` Service, as in every cluster.
    assert!(out.contains("\n\nNAME "), "{out}");
    assert!(
        out.contains("service/kubernetes   ClusterIP   10.96.0.1"),
        "{out}"
    );
}

#[test]
fn get_object_formats_match_kubectl() {
    let server = server_with_app();
    let cases: &[&[&str]] = &[
        &["get", "pod", "p1", "-o", "yaml"],
        &["get", "deploy", "web", "-o", "yaml"],
        &["get", "svc,cm,secret", "-o", "yaml"],
        &["get", "pod", "p1", "-o", "json"],
        &["get", "all", "-o", "json"],
        &["get", "ns", "default", "-o", "json"],
        &["get", "deploy,po,cm", "-o", "name"],
        &["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"],
        &[
            "get",
            "pods",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}{"\t"}{.spec.containers[0].image}{"\n"}{end}"#,
        ],
        &["get", "cm", "web-config", "-o", "jsonpath={.data}"],
        &[
            "get",
            "pods",
            "-o",
            "custom-columns=NAME:.metadata.name,IMAGES:.spec.containers[*].image,NODE:.spec.nodeName",
        ],
        &["get", "pods", "-o", "custom-columns=N:.metadata.name", "--no-headers"],
        &["get", "pods", "--sort-by=.metadata.name", "-o", "name"],
    ];
    for args in cases {
        same_as_kubectl(&server, args);
    }
}

#[test]
fn errors_match_kubectl() {
    let server = server_with_app();
    let cases: &[&[&str]] = &[
        &["get", "pod", "nope"],
        &["get", "pods", "p1", "nope"],
        &["get", "nosuchtype"],
        &["get", "pods", "-l", "app=none"],
        &["get", "-n", "empty", "pods"],
    ];
    for args in cases {
        same_as_kubectl(&server, args);
    }
    // A usage error exits 1 as kubectl's do (clap's wording differs).
    assert_eq!(tug(&server, &["get", "pods", "-o"]).status.code(), Some(1));
    // tug lists only the formats it implements.
    let out = tug(&server, &["get", "pods", "-o", "bogus"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with(
        "error: unable to match a printer suitable for the output format \"bogus\", allowed formats are: "
    ));
    let out = tug(&server, &["get", "pod", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
}

#[test]
fn get_watch_prints_rows_as_objects_change() {
    let server = server_with_app();
    let mut child = tug_cmd(&server, &["get", "pods", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tug get -w");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let wait_for = |what: &str, lines: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !lines.iter().any(|l| l.starts_with(what)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => lines.push(l),
                Err(_) => panic!(
                    "no `{what}` row from tug get -w; got:\n{}",
                    lines.join("\n")
                ),
            }
        }
    };
    wait_for("p1 ", &mut lines);
    server.kubectl_ok(V, &["run", "late", "--image=nginx"]);
    wait_for("late ", &mut lines);
    server.kubectl_ok(V, &["delete", "pod", "p1", "--wait=false"]);
    let before = lines.iter().filter(|l| l.starts_with("p1 ")).count();
    let deadline = Instant::now() + Duration::from_secs(15);
    while lines.iter().filter(|l| l.starts_with("p1 ")).count() == before {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("no row for the deleted p1; got:\n{}", lines.join("\n")),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // The header once, then rows aligned under it (widths remembered).
    assert!(lines[0].starts_with("NAME "), "{lines:?}");
    let status_col = lines[0].find("STATUS").expect("STATUS header");
    let late = lines
        .iter()
        .find(|l| l.starts_with("late "))
        .expect("late row");
    assert_eq!(&late[status_col..status_col + 7], "Pending", "{lines:#?}");
}

/// Run `tug -n ours ARGS` and `kubectl -n theirs ARGS` (so both can create
/// the same names) and compare what they print, namespaces aside.
#[track_caller]
fn same_in_namespaces(server: &ApiServer, args: &[&str], stdin: Option<&str>) -> String {
    let run = |mut cmd: Command| {
        let out = match stdin {
            Some(text) => {
                use std::io::Write;
                let mut child = cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn");
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(text.as_bytes())
                    .expect("stdin");
                child.wait_with_output().expect("wait")
            }
            None => cmd.output().expect("run"),
        };
        shown(&out)
    };
    let mut ours_args = vec!["-n", "ours"];
    ours_args.extend_from_slice(args);
    let mut theirs_args = vec!["-n", "theirs"];
    theirs_args.extend_from_slice(args);
    if args[0] == "apply" {
        theirs_args.push("--server-side");
    }
    let ours = run(tug_cmd(server, &ours_args)).replace("ours", "NS");
    let theirs = run(server.kubectl_cmd(V, &theirs_args)).replace("theirs", "NS");
    assert_eq!(
        ours,
        theirs,
        "`tug {}` differs from kubectl",
        args.join(" ")
    );
    ours
}

/// A jsonpath read with kubectl.
fn read(server: &ApiServer, args: &[&str]) -> String {
    server.kubectl_ok(V, args)
}

#[test]
fn create_apply_delete_match_kubectl() {
    let server = ApiServer::start();
    for ns in ["ours", "theirs"] {
        server.kubectl_ok(V, &["create", "namespace", ns]);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app.yaml");
    std::fs::write(&app, APP).expect("write app.yaml");
    let app = app.to_str().expect("utf-8 path");
    let data = dir.path().join("greeting.txt");
    std::fs::write(&data, "hello\n").expect("write data");
    let from_file = format!("--from-file={}", data.display());

    let out = same_in_namespaces(&server, &["create", "-f", app], None);
    assert!(
        out.contains("deployment.apps/web created\nservice/web created\n"),
        "{out}"
    );
    // Creating again: AlreadyExists for each object, naming the file.
    let out = same_in_namespaces(&server, &["create", "-f", app], None);
    assert!(
        out.contains("Error from server (AlreadyExists): error when creating"),
        "{out}"
    );
    assert!(out.ends_with("exit: Some(1)"), "{out}");
    let generators: &[&[&str]] = &[
        &[
            "create",
            "deployment",
            "d1",
            "--image=reg.io/team/api:1.0",
            "--replicas=3",
        ],
        &[
            "create",
            "configmap",
            "c1",
            "--from-literal=a=b",
            &from_file,
        ],
        &[
            "create",
            "secret",
            "generic",
            "s1",
            "--from-literal=password=hunter2",
        ],
        &["create", "service", "clusterip", "svc1", "--tcp=80:8080"],
        &[
            "create",
            "cm",
            "c2",
            "--from-literal=x=y",
            "--dry-run=server",
        ],
        &[
            "create",
            "cm",
            "c3",
            "--from-literal=x=y",
            "--dry-run=client",
        ],
    ];
    for args in generators {
        same_in_namespaces(&server, args, None);
    }
    // The generated objects are the same objects kubectl makes.
    for what in ["deploy/d1", "cm/c1", "secret/s1", "svc/svc1"] {
        let spec = |ns: &str| {
            read(
                &server,
                &[
                    "-n",
                    ns,
                    "get",
                    what,
                    "-o",
                    "jsonpath={.metadata.labels} {.spec} {.data}",
                ],
            )
            .replace(ns, "NS")
        };
        let (ours, theirs) = (spec("ours"), spec("theirs"));
        // Cluster IPs are allocated per service.
        if what == "svc/svc1" {
            assert!(ours.contains(r#""targetPort":8080"#), "{ours}");
        } else {
            assert_eq!(ours, theirs, "{what}");
        }
    }
    assert_eq!(
        read(
            &server,
            &[
                "-n",
                "ours",
                "get",
                "cm",
                "c1",
                "-o",
                "jsonpath={.data.greeting\\.txt}"
            ]
        ),
        "hello\n"
    );
    assert!(
        server
            .kubectl(V, &["-n", "ours", "get", "cm", "c2"])
            .status
            .code()
            == Some(1),
        "server dry run persisted"
    );

    // Server-side apply: dry run, real, from stdin, then a change.
    same_in_namespaces(&server, &["delete", "-f", app], None);
    let out = same_in_namespaces(&server, &["apply", "-f", app, "--dry-run=server"], None);
    assert!(
        out.contains("deployment.apps/web serverside-applied (server dry run)"),
        "{out}"
    );
    let out = same_in_namespaces(&server, &["apply", "-f", "-"], Some(APP));
    assert!(
        out.contains("configmap/web-config serverside-applied"),
        "{out}"
    );
    let changed = APP.replace("replicas: 2", "replicas: 5");
    same_in_namespaces(&server, &["apply", "-f", "-"], Some(&changed));
    assert_eq!(
        read(
            &server,
            &[
                "-n",
                "ours",
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "5"
    );
    let managers = read(
        &server,
        &[
            "-n",
            "ours",
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
            "--show-managed-fields",
        ],
    );
    assert!(
        managers.split(' ').any(|m| m == "tug"),
        "field manager: {managers}"
    );

    // Another manager takes replicas; applying again conflicts unless forced.
    server.kubectl_stdin(
        V,
        &[
            "-n",
            "ours",
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &APP.replace("replicas: 2", "replicas: 7"),
    );
    let out = tug_cmd(&server, &["-n", "ours", "apply", "-f", app])
        .output()
        .expect("tug apply");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("Error from server (Conflict)"), "{err}");
    let out = tug_cmd(
        &server,
        &["-n", "ours", "apply", "-f", app, "--force-conflicts"],
    )
    .output()
    .expect("tug apply");
    assert_eq!(out.status.code(), Some(0), "{}", shown(&out));
    assert_eq!(
        read(
            &server,
            &[
                "-n",
                "ours",
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "2"
    );

    // Directories, recursively.
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("nested")).expect("mkdir");
    let cm = |n: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {n}\ndata:\n  k: v\n")
    };
    std::fs::write(tree.join("top.yaml"), cm("top")).expect("write");
    std::fs::write(tree.join("nested/deep.yml"), cm("deep")).expect("write");
    let tree = tree.to_str().expect("utf-8");
    let out = same_in_namespaces(&server, &["apply", "-f", tree], None);
    assert!(
        out.starts_with("stdout:\nconfigmap/top serverside-applied\n\n"),
        "{out}"
    );
    let out = same_in_namespaces(&server, &["apply", "-R", "-f", tree], None);
    assert!(out.contains("configmap/deep serverside-applied"), "{out}");

    // Deleting: by name, by label, everything, errors.
    let deletes: &[&[&str]] = &[
        &["delete", "deploy", "d1"],
        &["delete", "cm", "-l", "tier=backend"],
        &["delete", "cm", "nope"],
        &["delete", "cm", "nope", "--ignore-not-found"],
        // Foreground deletion waits for the garbage collector, which this
        // test does not run: don't wait.
        &[
            "delete",
            "secret",
            "--all",
            "--cascade=foreground",
            "--wait=false",
        ],
        &["delete", "svc/svc1", "svc/web", "--wait=false"],
        &["delete", "cm", "-l", "nothing=here"],
        &["delete", "cm"],
    ];
    for args in deletes {
        same_in_namespaces(&server, args, None);
    }
    assert_eq!(
        read(&server, &["-n", "ours", "get", "svc,deploy", "-o", "name"]),
        "deployment.apps/web\n"
    );
    let secret = read(
        &server,
        &[
            "-n",
            "ours",
            "get",
            "secret",
            "web-secret",
            "-o",
            "jsonpath={.metadata.finalizers}",
        ],
    );
    assert_eq!(secret, r#"["foregroundDeletion"]"#);
}

#[test]
fn label_annotate_patch_scale_match_kubectl() {
    let server = ApiServer::start();
    for ns in ["ours", "theirs"] {
        server.kubectl_ok(V, &["create", "namespace", ns]);
        server.kubectl_stdin(V, &["-n", ns, "create", "-f", "-"], APP);
        server.kubectl_ok(V, &["-n", ns, "run", "p1", "--image=nginx"]);
    }
    let steps: &[&[&str]] = &[
        &["label", "pod", "p1", "a=b"],
        &["label", "pod", "p1", "a=c"],
        &["label", "pod", "p1", "a=b"],
        &["label", "pod", "p1", "--overwrite", "a=z", "x=y"],
        &["label", "pod", "p1", "gone-"],
        &["label", "pod", "p1", "x-"],
        &["label", "cm", "--all", "team=blue"],
        &[
            "label",
            "cm",
            "-l",
            "tier=backend",
            "tier=frontend",
            "--overwrite",
        ],
        &["annotate", "deploy/web", "note=first"],
        &["annotate", "deploy/web", "note=second", "--overwrite"],
        &["annotate", "deploy/web", "note-"],
        &["patch", "deploy", "web", "-p", r#"{"spec":{"replicas":3}}"#],
        &["patch", "deploy", "web", "-p", r#"{"spec":{"replicas":3}}"#],
        &[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"q":"1"}}}"#,
        ],
        &[
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
        ],
        &["patch", "deploy", "nope", "-p", "{}"],
        &[
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
        ],
        &["scale", "deploy", "web", "--replicas=6"],
        &[
            "scale",
            "deploy/web",
            "--replicas=2",
            "--current-replicas=5",
        ],
        &[
            "scale",
            "deploy/web",
            "--replicas=1",
            "--current-replicas=6",
        ],
    ];
    for args in steps {
        same_in_namespaces(&server, args, None);
    }
    // Both namespaces ended up with the same labels, annotations and sizes.
    let state = |ns: &str| {
        read(
            &server,
            &[
                "-n",
                ns,
                "get",
                "pod/p1",
                "deploy/web",
                "cm/web-config",
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.name} {.metadata.labels} {.metadata.annotations.note} {.spec.replicas}{"\n"}{end}"#,
            ],
        )
    };
    let ours = state("ours");
    assert_eq!(ours, state("theirs"));
    assert!(ours.contains(r#"p1 {"a":"z","run":"p1"}"#), "{ours}");
    assert!(ours.contains(r#"web {"app":"web","q":"1"}  1"#), "{ours}");
    assert!(
        ours.contains(r#""team":"blue","tier":"frontend""#),
        "{ours}"
    );
}

/// A replica set and a pod using more of the describers' fields.
const RICH: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs1, labels: {app: rs1}}
spec:
  replicas: 2
  selector: {matchLabels: {app: rs1}}
  template:
    metadata: {labels: {app: rs1}}
    spec:
      containers:
      - name: c
        image: busybox
        command: [sleep, "3600"]
        env: [{name: A, value: b}]
        resources: {limits: {cpu: 100m, memory: 64Mi}}
        volumeMounts: [{name: cfg, mountPath: /cfg}]
      volumes:
      - name: cfg
        configMap: {name: web-config}
      - name: tmp
        emptyDir: {}
---
apiVersion: v1
kind: Pod
metadata: {name: rich, labels: {app: rs1}, annotations: {note: hi}}
spec:
  containers:
  - name: c
    image: busybox
    args: [a, b]
    ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]
    resources: {requests: {cpu: 50m}}
  tolerations: [{key: k, operator: Equal, value: v, effect: NoSchedule}]
  nodeSelector: {disk: ssd}
"#;

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {kubernetes.io/hostname: n1, node-role.kubernetes.io/worker: ""}}
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24]
  taints: [{key: dedicated, value: gpu, effect: NoSchedule}]
---
apiVersion: v1
kind: Pod
metadata: {name: bound}
spec:
  nodeName: n1
  containers:
  - {name: a, image: nginx, resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: "1", memory: 128Mi}}}
  - {name: b, image: busybox, resources: {requests: {cpu: 100m}}}
"#;

const NODE_STATUS: &str = r#"{"status":{"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},"allocatable":{"cpu":"3800m","memory":"7Gi","pods":"110"},"addresses":[{"type":"InternalIP","address":"10.0.0.5"},{"type":"Hostname","address":"n1"}],"nodeInfo":{"machineID":"m","systemUUID":"u","bootID":"b","kernelVersion":"6.1","osImage":"Debian","operatingSystem":"linux","architecture":"amd64","containerRuntimeVersion":"tug://1","kubeletVersion":"v1.33.0","kubeProxyVersion":""},"conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":"2026-11-28T14:00:00Z","lastTransitionTime":"2026-11-28T13:00:00Z","reason":"KubeletReady","message":"kubelet is posting ready status"}]}}"#;

#[test]
fn describe_matches_kubectl() {
    let server = server_with_app();
    server.kubectl_ok(
        V,
        &[
            "create",
            "service",
            "clusterip",
            "second",
            "--tcp=443:https",
            "--tcp=80:8080",
        ],
    );
    server.kubectl_ok(V, &["annotate", "deploy", "web", "team=blue", "owner=ops"]);
    // An event about the deployment (what the controller would record).
    let uid = server.kubectl_ok(
        V,
        &["get", "deploy", "web", "-o", "jsonpath={.metadata.uid}"],
    );
    let event = format!(
        r#"{{"apiVersion": "v1", "kind": "Event", "metadata": {{"name": "web.1"}},
            "involvedObject": {{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "default", "uid": "{uid}"}},
            "reason": "ScalingReplicaSet", "message": "Scaled up replica set web-abc to 2", "type": "Normal", "count": 2,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T01:00:00Z",
            "source": {{"component": "deployment-controller"}}}}"#
    );
    server.kubectl_stdin(V, &["create", "-f", "-"], &event);
    server.kubectl_stdin(V, &["create", "-f", "-"], RICH);
    // A node with status (as a kubelet would report it) and a pod bound to
    // it, for the node describer's resource tables.
    server.kubectl_stdin(V, &["create", "-f", "-"], NODE);
    server.kubectl_ok(
        V,
        &[
            "patch",
            "node",
            "n1",
            "--subresource=status",
            "--type=merge",
            "-p",
            NODE_STATUS,
        ],
    );
    let cases: &[&[&str]] = &[
        &["describe", "pod", "p1"],
        &["describe", "pod", "rich"],
        &["describe", "pods"],
        &["describe", "rs", "rs1"],
        &["describe", "node", "n1"],
        &["describe", "nodes"],
        &["describe", "svc", "web"],
        &["describe", "services"],
        &["describe", "deploy", "web"],
        &["describe", "deployment/web", "--show-events=false"],
        &["describe", "deploy", "nope"],
    ];
    for args in cases {
        same_as_kubectl(&server, args);
    }
    let out = same_as_kubectl(&server, &["describe", "deploy", "web"]);
    assert!(
        out.contains(
            "Replicas:               2 desired | 0 updated | 0 total | 0 available | 0 unavailable"
        ),
        "{out}"
    );
    assert!(out.contains("  Normal  ScalingReplicaSet"), "{out}");
    let out = same_as_kubectl(&server, &["describe", "node", "n1"]);
    assert!(
        out.contains("  cpu                350m (9%)  1 (26%)"),
        "{out}"
    );
}

#[test]
fn edit_reopens_on_error_and_saves() {
    let server = server_with_app();
    let dir = tempfile::tempdir().expect("tempdir");
    // First pass breaks replicas; when re-opened with the error on top, the
    // "user" fixes it.
    let script = dir.path().join("editor.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nif grep -q 'was not valid' \"$1\"; then\n  sed -i 's/replicas: notanumber/replicas: 4/' \"$1\"\nelse\n  sed -i 's/^  replicas: .*/  replicas: notanumber/' \"$1\"\nfi\n",
    )
    .expect("write editor");
    let run = |editor: &str| {
        tug_cmd(&server, &["edit", "deploy", "web"])
            .env("KUBE_EDITOR", editor)
            .output()
            .expect("tug edit")
    };
    let out = run(&format!("sh {}", script.display()));
    assert_eq!(
        shown(&out),
        "stdout:\ndeployment.apps/web edited\n\nstderr:\n\nexit: Some(0)"
    );
    assert_eq!(
        read(
            &server,
            &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]
        ),
        "4"
    );
    // Saving without changes cancels.
    let out = run("true");
    assert_eq!(
        shown(&out),
        "stdout:\nEdit cancelled, no changes made.\n\nstderr:\n\nexit: Some(0)"
    );
    // An emptied file cancels too; EDITOR is used when KUBE_EDITOR is unset.
    let out = tug_cmd(&server, &["edit", "cm/web-config"])
        .env_remove("KUBE_EDITOR")
        .env("EDITOR", "truncate -s 0")
        .output()
        .expect("tug edit");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Edit cancelled, no changes made.\n"
    );
}

#[test]
fn config_version_and_api_resources_match_kubectl() {
    let server = ApiServer::start();
    let cases: &[&[&str]] = &[
        &["config", "view"],
        &["config", "view", "--minify"],
        &["config", "get-contexts"],
        &["config", "current-context"],
        &["config", "use-context", "nope"],
        &["api-resources"],
        &["api-resources", "-o", "wide"],
        &["api-resources", "--namespaced=false", "-o", "name"],
        &["api-resources", "--api-group=apps"],
    ];
    for args in cases {
        same_as_kubectl(&server, args);
    }
    let out = tug(&server, &["version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let server_version = server.kubectl_ok(V, &["version", "-o", "json"]);
    let want: serde_json::Value = serde_json::from_str(&server_version).expect("json");
    let git = want["serverVersion"]["gitVersion"]
        .as_str()
        .expect("gitVersion");
    assert!(text.starts_with("Client Version: v"), "{text}");
    assert!(
        text.ends_with(&format!("Server Version: {git}\n")),
        "{text}"
    );
    // use-context switches the file's current context, as kubectl's does.
    let kc = std::fs::read_to_string(&server.kubeconfig).expect("kubeconfig");
    let cfg: serde_json::Value =
        serde_json::from_str(&server.kubectl_ok(V, &["config", "view", "-o", "json"]))
            .expect("json");
    let ctx = cfg["current-context"]
        .as_str()
        .expect("context")
        .to_string();
    std::fs::write(
        &server.kubeconfig,
        kc.replace(&format!("current-context: {ctx}"), "current-context: other"),
    )
    .expect("write");
    let out = tug(&server, &["config", "use-context", &ctx]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Switched to context \"{ctx}\".\n")
    );
    assert_eq!(
        server.kubectl_ok(V, &["config", "current-context"]),
        format!("{ctx}\n")
    );
    same_as_kubectl(&server, &["get", "ns", "default", "-o", "name"]);
}

#[test]
fn explain_matches_kubectl() {
    let server = ApiServer::start();
    let cases: &[&[&str]] = &[
        &["explain", "cm"],
        &["explain", "pods"],
        &["explain", "deploy.spec.replicas"],
        &["explain", "deploy.spec.template.spec.containers"],
        &["explain", "pods.spec.containers.ports"],
        &["explain", "pods.metadata.labels"],
        &["explain", "svc.spec"],
        &["explain", "node.status"],
    ];
    for args in cases {
        same_as_kubectl(&server, args);
    }
    let out = tug(&server, &["explain", "pods.spec.nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("field \"nope\" does not exist"));
}
