//! End to end: the real `kubectl` against the real `tug-apiserver`.
//!
//! kubectl 1.32 is exercised in depth; 1.27 and 1.33 get smoke runs. Every
//! test starts its own server (fresh data dir, free port) and asserts what a
//! user would notice: the text kubectl prints, its exit code, and the objects
//! read back with `-o json` or jsonpath.
//!
//! Upstream (a real kube-apiserver with no scheduler or controllers running)
//! is the specification. Where Tugboat disagrees, the test says what upstream
//! does and fails until the server does the same.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use serde_json::Value;
use tugboat_e2e::ApiServer;

/// The kubectl version exercised in depth.
const V: &str = "1.32";

/// Deployment `web` (2 replicas, nginx:1.25), Service `web`, ConfigMap
/// `web-config` (greeting, farewell; tier=backend) and Secret `web-secret`.
const APP: &str = include_str!("fixtures/app.yaml");

/// How long anything that should happen "at once" may take.
const PATIENCE: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// What one kubectl run printed, and how it ended.
#[derive(Debug)]
struct Run {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn new(what: String, out: Output) -> Run {
        Run {
            what,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics unless kubectl exited 0.
    #[track_caller]
    fn success(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "`kubectl {}` should succeed\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless kubectl exited 1 (kubectl's exit code for errors).
    #[track_caller]
    fn failure(self) -> Run {
        assert_eq!(
            self.code,
            Some(1),
            "`kubectl {}` should fail with exit code 1\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless stderr contains `needle`.
    #[track_caller]
    fn stderr_has(self, needle: &str) -> Run {
        assert!(
            self.stderr.contains(needle),
            "`kubectl {}`: stderr should contain {needle:?}\nstderr:\n{}\nstdout:\n{}",
            self.what,
            self.stderr,
            self.stdout
        );
        self
    }

    /// Panics unless stdout contains `needle`.
    #[track_caller]
    fn stdout_has(self, needle: &str) -> Run {
        assert!(
            self.stdout.contains(needle),
            "`kubectl {}`: stdout should contain {needle:?}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout split into trimmed, non-empty lines.
    fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect()
    }
}

/// Conveniences over the harness, all with kubectl 1.32 unless a version is
/// given.
trait Kubectl {
    fn kv(&self, version: &str, args: &[&str]) -> Run;
    fn k_stdin(&self, args: &[&str], stdin: &str) -> Run;
    /// A file in this server's temporary directory; returns its path.
    fn file(&self, name: &str, content: &str) -> String;

    fn k(&self, args: &[&str]) -> Run {
        self.kv(V, args)
    }
    /// kubectl 1.32, which must succeed; returns stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        self.k(args).success().stdout
    }
    /// `kubectl apply -f -` of `yaml`, which must succeed.
    #[track_caller]
    fn apply(&self, yaml: &str) -> String {
        self.k_stdin(&["apply", "-f", "-"], yaml).success().stdout
    }
    /// `kubectl get <what> -o json` (in the default namespace), parsed.
    #[track_caller]
    fn json(&self, what: &str) -> Value {
        let out = self.ok(&["get", what, "-o", "json"]);
        serde_json::from_str(&out).expect("kubectl -o json prints JSON")
    }
    /// Like [`Kubectl::json`], with `metadata.managedFields` kept.
    #[track_caller]
    fn json_with_managed_fields(&self, what: &str) -> Value {
        let out = self.ok(&["get", what, "-o", "json", "--show-managed-fields"]);
        serde_json::from_str(&out).expect("kubectl -o json prints JSON")
    }
    /// `kubectl get <what> -o jsonpath=<path>`.
    #[track_caller]
    fn jp(&self, what: &str, path: &str) -> String {
        self.ok(&["get", what, "-o", &format!("jsonpath={path}")])
    }
    /// The object's resourceVersion.
    #[track_caller]
    fn rv(&self, what: &str) -> String {
        self.jp(what, "{.metadata.resourceVersion}")
    }
    /// Whether `kubectl get <what>` finds it.
    fn exists(&self, what: &str) -> bool {
        let run = self.k(&["get", what, "-o", "name"]);
        match run.code {
            Some(0) => true,
            _ if run.stderr.contains("(NotFound)") => false,
            _ => panic!("`kubectl get {what}` failed oddly: {}", run.stderr),
        }
    }
}

impl Kubectl for ApiServer {
    fn kv(&self, version: &str, args: &[&str]) -> Run {
        let out = self
            .kubectl_cmd(version, args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl");
        Run::new(args.join(" "), out)
    }

    fn k_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .kubectl_cmd(V, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write kubectl's stdin");
        let out = child.wait_with_output().expect("kubectl output");
        Run::new(format!("{} < STDIN", args.join(" ")), out)
    }

    fn file(&self, name: &str, content: &str) -> String {
        let dir = self.data_dir.parent().expect("data dir has a parent");
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write test file");
        path.display().to_string()
    }
}

/// `text` with `from` replaced by `to`; panics if `from` is absent, so a
/// fixture edit cannot silently stop editing anything.
#[track_caller]
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not found in:\n{text}");
    text.replacen(from, to, 1)
}

/// The fixture after the edits a user would make between two applies:
/// replicas 2 -> 3, image nginx:1.25 -> 1.26, ConfigMap label tier
/// backend -> frontend, ConfigMap key `farewell` removed.
fn edited_app() -> String {
    let app = edit(APP, "replicas: 2", "replicas: 3");
    let app = edit(&app, "image: nginx:1.25", "image: nginx:1.26");
    let app = edit(&app, "tier: backend", "tier: frontend");
    edit(&app, "  farewell: bye\n", "")
}

/// A pod that no scheduler will ever place.
fn pod(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n\
         spec:\n  containers:\n  - name: main\n    image: busybox:1.36\n    command: [\"sleep\", \"3600\"]\n"
    )
}

fn configmap(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\ndata:\n  key: value\n"
    )
}

fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

/// The whitespace-separated cells of the table row whose first cell is
/// `first`; panics with the table if there is none.
#[track_caller]
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row starting with {first:?} in:\n{table}"))
}

/// The first line of a table, split into cells.
fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

/// The value of `Key:` in `kubectl describe` output (first occurrence).
fn field<'a>(described: &'a str, key: &str) -> Option<&'a str> {
    described.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix(key)?.strip_prefix(':')?;
        Some(rest.trim())
    })
}

/// Poll `f` until it holds, for at most [`PATIENCE`].
#[track_caller]
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait for a child to exit, polling, for at most `timeout`.
fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A long-running kubectl (`get -w`, `wait`, `delete --wait`) whose output
/// lines are read as they come. Killed when dropped.
struct Stream {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Stream {
    fn spawn(mut cmd: Command) -> Stream {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        let (tx, rx) = mpsc::channel();
        forward(child.stdout.take().expect("stdout"), "", tx.clone());
        forward(child.stderr.take().expect("stderr"), "stderr: ", tx);
        Stream {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The next line satisfying `pred`; panics after [`PATIENCE`] with
    /// everything kubectl printed so far.
    #[track_caller]
    fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "kubectl printed no line {what} within {PATIENCE:?}; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Whether kubectl is still running.
    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Wait for kubectl to exit; returns its status and everything it printed.
    #[track_caller]
    fn finish(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let status = wait_exit(&mut self.child, timeout).unwrap_or_else(|| {
            panic!(
                "kubectl still running after {timeout:?}; it printed:\n{}",
                self.seen.join("\n")
            )
        });
        // The reader threads end at EOF, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn forward(pipe: impl Read + Send + 'static, prefix: &'static str, tx: Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(format!("{prefix}{line}")).is_err() {
                break;
            }
        }
    });
}

/// The managedFields entry of `manager`, if any.
fn managed_entry<'a>(object: &'a Value, manager: &str) -> Option<&'a Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager)
}

/// `(manager, operation)` of every managedFields entry, for messages.
fn managers(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or("").to_string(),
                        e["operation"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The last-applied-configuration annotation, parsed.
#[track_caller]
fn last_applied(object: &Value) -> Value {
    let text = object["metadata"]["annotations"]
        ["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap_or_else(|| panic!("no last-applied-configuration annotation on {object:#}"));
    serde_json::from_str(text).expect("the annotation is JSON")
}

/// `curl -sk` against the server; returns (HTTP status, body).
fn curl(server: &ApiServer, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sk", "-w", "\n%{http_code}"]);
    if let Some(token) = bearer {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = cmd
        .arg(format!("{}{path}", server.url()))
        .output()
        .expect("curl is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("curl printed the status");
    (
        code.trim().parse().expect("an HTTP status"),
        body.to_string(),
    )
}

/// A kubeconfig for this server that authenticates with a bearer token
/// (and trusts the cluster CA from admin.kubeconfig).
fn token_kubeconfig(server: &ApiServer, token: &str) -> String {
    let admin = std::fs::read_to_string(&server.kubeconfig).expect("admin.kubeconfig");
    let ca = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .expect("admin.kubeconfig has certificate-authority-data")
        .trim();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url}\n    \
         certificate-authority-data: {ca}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    \
         user: u\n    namespace: default\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: {token}\n",
        url = server.url()
    );
    server.file(&format!("{token}.kubeconfig"), &text)
}

/// A server started with `--token-auth-file` holding `tok-alice` (user
/// alice, uid-1, groups dev and ops). The TempDir must outlive the server.
fn server_with_tokens() -> (tempfile::TempDir, ApiServer) {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "tok-alice,alice,uid-1,\"dev,ops\"\n").expect("write token file");
    let tokens = tokens.display().to_string();
    let server = ApiServer::start_in(
        &dir.path().join("data"),
        tugboat_e2e::free_port(),
        &["--token-auth-file", &tokens],
    );
    (dir, server)
}

// ---------------------------------------------------------------------------
// Creating and applying
// ---------------------------------------------------------------------------

#[test]
fn kubectl_1_32_create_namespace_makes_an_active_namespace() {
    let s = ApiServer::start();
    // kubectl 1.32 sends this body as protobuf (application/vnd.kubernetes.protobuf),
    // as client-go's typed clients now do; upstream accepts it.
    let out = s.k(&["create", "namespace", "demo"]).success();
    assert_eq!(out.stdout.trim(), "namespace/demo created");
    assert_eq!(s.jp("namespace/demo", "{.status.phase}"), "Active");
    s.k(&["create", "namespace", "demo"])
        .failure()
        .stderr_has(r#"Error from server (AlreadyExists): namespaces "demo" already exists"#);
}

#[test]
fn kubectl_1_32_imperative_create_commands_make_configmaps_secrets_and_deployments() {
    let s = ApiServer::start();
    let out = s.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=color=blue",
    ]);
    assert_eq!(out.trim(), "configmap/settings created");
    assert_eq!(s.jp("configmap/settings", "{.data.color}"), "blue");

    let out = s.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=hunter2",
    ]);
    assert_eq!(out.trim(), "secret/creds created");
    // base64("hunter2")
    assert_eq!(s.jp("secret/creds", "{.data.password}"), "aHVudGVyMg==");

    let out = s.ok(&[
        "create",
        "deployment",
        "hello",
        "--image=nginx:1.25",
        "--replicas=2",
    ]);
    assert_eq!(out.trim(), "deployment.apps/hello created");
    assert_eq!(
        s.jp(
            "deployment/hello",
            "{.spec.replicas} {.spec.selector.matchLabels.app}"
        ),
        "2 hello"
    );
}

#[test]
fn apply_creates_every_document_of_a_manifest_and_reapplying_it_changes_nothing() {
    let s = ApiServer::start();
    let app = s.file("app.yaml", APP);
    let out = s.k(&["apply", "-f", &app]).success();
    assert_eq!(
        out.lines(),
        [
            "deployment.apps/web created",
            "service/web created",
            "configmap/web-config created",
            "secret/web-secret created",
        ]
    );

    let deploy = s.json("deployment/web");
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    assert_eq!(deploy["metadata"]["generation"], 1);
    assert!(deploy["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));
    // Defaulted by the server, as upstream does.
    assert_eq!(deploy["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
        "TCP"
    );
    assert_eq!(last_applied(&deploy)["spec"]["replicas"], 2);

    assert_eq!(
        s.jp("service/web", "{.spec.ports[0].port} {.spec.type}"),
        "80 ClusterIP"
    );
    assert_eq!(s.jp("configmap/web-config", "{.data.greeting}"), "hello");
    let secret = s.json("secret/web-secret");
    // stringData is write-only: stored base64-encoded under data.
    assert_eq!(secret["data"]["password"], "czNjcmV0");
    assert!(
        secret.get("stringData").is_none(),
        "stringData is not stored: {secret:#}"
    );

    let rv = s.rv("deployment/web");
    let out = s.k(&["apply", "-f", &app]).success();
    let lines = out.lines();
    assert_eq!(
        lines[..3],
        [
            "deployment.apps/web unchanged",
            "service/web unchanged",
            "configmap/web-config unchanged"
        ]
    );
    // Upstream reports a Secret applied with stringData as "configured" every
    // time (the live object has data, not stringData); either is fine here.
    assert!(lines[3].starts_with("secret/web-secret "), "{lines:?}");
    assert_eq!(
        s.rv("deployment/web"),
        rv,
        "an unchanged apply must not write"
    );
}

#[test]
fn apply_after_an_edit_changes_replicas_image_and_labels_and_drops_removed_keys() {
    let s = ApiServer::start();
    s.ok(&["apply", "-f", &s.file("app.yaml", APP)]);
    let edited = s.file("app-edited.yaml", &edited_app());
    let out = s.k(&["apply", "-f", &edited]).success();
    let lines = out.lines();
    assert_eq!(
        lines[..3],
        [
            "deployment.apps/web configured",
            "service/web unchanged",
            "configmap/web-config configured"
        ]
    );

    let deploy = s.json("deployment/web");
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert_eq!(
        deploy["metadata"]["generation"], 2,
        "a spec change bumps generation"
    );
    assert_eq!(last_applied(&deploy)["spec"]["replicas"], 3);

    let cm = s.json("configmap/web-config");
    assert_eq!(cm["metadata"]["labels"]["tier"], "frontend");
    assert_eq!(cm["data"]["greeting"], "hello");
    assert!(
        cm["data"].get("farewell").is_none(),
        "a key removed from the manifest is removed from the object: {cm:#}"
    );
}

#[test]
fn diff_exits_1_with_a_diff_when_the_manifest_changed_and_0_when_not() {
    let s = ApiServer::start();
    let app = s.file("app.yaml", APP);
    s.ok(&["apply", "-f", &app]);
    let rv = s.rv("deployment/web");

    let same = s.k(&["diff", "-f", &app]).success();
    assert_eq!(same.stdout, "", "no differences, no output");

    let edited = s.file("app-edited.yaml", &edited_app());
    let changed = s.k(&["diff", "-f", &edited]);
    assert_eq!(
        changed.code,
        Some(1),
        "diff exits 1 when there are differences: {changed:?}"
    );
    let out = &changed.stdout;
    assert!(
        out.contains("-  replicas: 2") && out.contains("+  replicas: 3"),
        "{out}"
    );
    assert!(
        out.contains("-      - image: nginx:1.25") && out.contains("+      - image: nginx:1.26"),
        "{out}"
    );
    assert!(
        out.contains("-    tier: backend") && out.contains("+    tier: frontend"),
        "{out}"
    );
    assert!(out.contains("-  farewell: bye"), "{out}");
    assert!(
        !out.contains("v1.Service."),
        "the unchanged Service is not in the diff: {out}"
    );

    // diff asks the server with a dry run: nothing changed.
    assert_eq!(s.rv("deployment/web"), rv);
    assert_eq!(s.jp("deployment/web", "{.spec.replicas}"), "2");
}

#[test]
fn diff_server_side_shows_what_a_server_side_apply_would_change() {
    let s = ApiServer::start();
    let app = s.file("app.yaml", APP);
    s.ok(&["apply", "--server-side", "-f", &app]);
    let rv = s.rv("deployment/web");
    let same = s.k(&["diff", "--server-side", "-f", &app]).success();
    assert_eq!(same.stdout, "");
    let edited = s.file("app-edited.yaml", &edited_app());
    let changed = s.k(&["diff", "--server-side", "-f", &edited]);
    assert_eq!(
        changed.code,
        Some(1),
        "diff exits 1 when there are differences: {changed:?}"
    );
    assert!(
        changed.stdout.contains("-  replicas: 2") && changed.stdout.contains("+  replicas: 3"),
        "{}",
        changed.stdout
    );
    assert_eq!(s.rv("deployment/web"), rv, "diff changes nothing");
}

#[test]
fn server_side_apply_creates_and_updates_after_an_edit() {
    let s = ApiServer::start();
    let out = s
        .k(&["apply", "--server-side", "-f", &s.file("app.yaml", APP)])
        .success();
    assert_eq!(
        out.lines(),
        [
            "deployment.apps/web serverside-applied",
            "service/web serverside-applied",
            "configmap/web-config serverside-applied",
            "secret/web-secret serverside-applied",
        ]
    );
    let deploy = s.json("deployment/web");
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(
        deploy["spec"]["strategy"]["type"], "RollingUpdate",
        "defaults still apply"
    );
    assert_eq!(s.jp("secret/web-secret", "{.data.password}"), "czNjcmV0");

    let out = s
        .k(&[
            "apply",
            "--server-side",
            "-f",
            &s.file("app-edited.yaml", &edited_app()),
        ])
        .success();
    assert_eq!(out.lines()[0], "deployment.apps/web serverside-applied");
    assert_eq!(
        s.jp(
            "deployment/web",
            "{.spec.replicas} {.spec.template.spec.containers[0].image} {.metadata.generation}"
        ),
        "3 nginx:1.26 2"
    );
    assert_eq!(
        s.jp("configmap/web-config", "{.metadata.labels.tier}"),
        "frontend"
    );
}

#[test]
fn server_side_apply_removes_fields_its_manager_no_longer_applies() {
    let s = ApiServer::start();
    let v1 =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  labels: {a: \"1\", b: \"2\"}\n\
              data: {k1: v1, k2: v2}\n";
    let v2 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  labels: {a: \"1\"}\ndata: {k1: v1}\n";
    s.ok(&["apply", "--server-side", "-f", &s.file("v1.yaml", v1)]);
    s.ok(&["apply", "--server-side", "-f", &s.file("v2.yaml", v2)]);
    let cm = s.json("configmap/ssa");
    // Upstream: fields owned only by this manager and dropped from its
    // configuration are removed from the object.
    assert_eq!(
        cm["metadata"]["labels"],
        serde_json::json!({"a": "1"}),
        "{cm:#}"
    );
    assert_eq!(cm["data"], serde_json::json!({"k1": "v1"}), "{cm:#}");
}

#[test]
fn server_side_apply_after_client_side_apply_takes_the_fields_over_without_conflicts() {
    let s = ApiServer::start();
    s.ok(&["apply", "-f", &s.file("app.yaml", APP)]);
    let csa = s.json_with_managed_fields("deployment/web");
    assert!(
        managed_entry(&csa, "kubectl-client-side-apply")
            .is_some_and(|e| e["operation"] == "Update"),
        "client-side apply writes as manager kubectl-client-side-apply (Update); managers: {:?}",
        managers(&csa)
    );

    // Changing a value last set by client-side apply: upstream's
    // last-applied manager lets the `kubectl` manager take it over.
    let out = s
        .k(&[
            "apply",
            "--server-side",
            "-f",
            &s.file("app-edited.yaml", &edited_app()),
        ])
        .success();
    assert_eq!(out.lines()[0], "deployment.apps/web serverside-applied");
    let deploy = s.json_with_managed_fields("deployment/web");
    assert_eq!(deploy["spec"]["replicas"], 3);
    // Upstream keeps the annotation in step with `kubectl` server-side
    // applies, so that a later client-side apply computes the right patch.
    assert_eq!(
        last_applied(&deploy)["spec"]["replicas"],
        3,
        "last-applied-configuration follows the server-side apply"
    );
    // kubectl migrates the client-side manager's fields into `kubectl`.
    assert!(
        managed_entry(&deploy, "kubectl").is_some_and(|e| e["operation"] == "Apply"),
        "managers: {:?}",
        managers(&deploy)
    );
    assert!(
        managed_entry(&deploy, "kubectl-client-side-apply").is_none(),
        "kubectl-client-side-apply's fields were migrated; managers: {:?}",
        managers(&deploy)
    );
}

#[test]
fn server_side_apply_conflicts_between_field_managers_are_refused_unless_forced() {
    let s = ApiServer::start();
    let deployment = APP
        .split("\n---\n")
        .next()
        .expect("the Deployment document");
    s.ok(&[
        "apply",
        "--server-side",
        "-f",
        &s.file("mine.yaml", deployment),
    ]);
    let theirs = s.file(
        "theirs.yaml",
        &edit(deployment, "replicas: 2", "replicas: 5"),
    );

    s.k(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        &theirs,
    ])
    .failure()
    .stderr_has(r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas"#)
    .stderr_has("--force-conflicts");
    assert_eq!(
        s.jp("deployment/web", "{.spec.replicas}"),
        "2",
        "a refused apply changes nothing"
    );

    s.k(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        &theirs,
    ])
    .success()
    .stdout_has("deployment.apps/web serverside-applied");
    let deploy = s.json_with_managed_fields("deployment/web");
    assert_eq!(deploy["spec"]["replicas"], 5);
    let other = managed_entry(&deploy, "other")
        .unwrap_or_else(|| panic!("no manager `other`; managers: {:?}", managers(&deploy)));
    assert_eq!(other["operation"], "Apply");
    assert!(
        other["fieldsV1"]["f:spec"].get("f:replicas").is_some(),
        "`other` owns .spec.replicas after forcing: {other:#}"
    );
    let mine = managed_entry(&deploy, "kubectl").expect("manager kubectl");
    assert!(
        mine["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
        "`kubectl` lost .spec.replicas: {mine:#}"
    );
    // Fields both applied with equal values stay shared.
    assert!(
        mine["fieldsV1"]["f:spec"].get("f:selector").is_some(),
        "{mine:#}"
    );
}

#[test]
fn writes_record_their_field_manager_in_managed_fields() {
    let s = ApiServer::start();
    s.ok(&[
        "create",
        "-f",
        &s.file("cm.yaml", &configmap("created", "app: x")),
    ]);
    s.apply(&configmap("applied", "app: x"));
    s.ok(&["label", "configmap/applied", "team=blue"]);
    s.ok(&[
        "apply",
        "--server-side",
        "-f",
        &s.file("ssa.yaml", &configmap("ssa", "app: x")),
    ]);

    let created = s.json_with_managed_fields("configmap/created");
    assert!(
        managed_entry(&created, "kubectl-create").is_some_and(|e| e["operation"] == "Update"
            && e["apiVersion"] == "v1"
            && e["fieldsType"] == "FieldsV1"
            && e["fieldsV1"]["f:data"].get("f:key").is_some()),
        "managedFields: {:#}",
        created["metadata"]["managedFields"]
    );
    let applied = s.json_with_managed_fields("configmap/applied");
    assert!(
        managed_entry(&applied, "kubectl-client-side-apply").is_some(),
        "{:?}",
        managers(&applied)
    );
    let label = managed_entry(&applied, "kubectl-label")
        .unwrap_or_else(|| panic!("no kubectl-label manager: {:?}", managers(&applied)));
    assert!(
        label["fieldsV1"]["f:metadata"]["f:labels"]
            .get("f:team")
            .is_some(),
        "{label:#}"
    );
    let ssa = s.json_with_managed_fields("configmap/ssa");
    assert_eq!(
        managers(&ssa),
        [("kubectl".to_string(), "Apply".to_string())]
    );
}

#[test]
fn managed_fields_can_be_replaced_or_cleared_with_a_patch() {
    let s = ApiServer::start();
    s.apply(&configmap("owned", "app: x"));
    // What kubectl's client-side to server-side migration relies on: a
    // patch that sets metadata.managedFields replaces them.
    s.ok(&[
        "patch",
        "configmap",
        "owned",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/metadata/managedFields","value":[{"manager":"someone","operation":"Apply","apiVersion":"v1","fieldsType":"FieldsV1","fieldsV1":{"f:data":{"f:key":{}}}}]}]"#,
    ]);
    let cm = s.json_with_managed_fields("configmap/owned");
    assert!(
        managed_entry(&cm, "someone").is_some(),
        "managers: {:?}",
        managers(&cm)
    );
    assert!(
        managed_entry(&cm, "kubectl-client-side-apply").is_none(),
        "managers: {:?}",
        managers(&cm)
    );
    // The documented way to strip them: a list holding one empty entry.
    s.ok(&[
        "patch",
        "configmap",
        "owned",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/metadata/managedFields","value":[{}]}]"#,
    ]);
    let cm = s.json_with_managed_fields("configmap/owned");
    assert!(
        cm["metadata"].get("managedFields").is_none(),
        "managedFields were stripped: {:?}",
        managers(&cm)
    );
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

#[test]
fn get_prints_tables_wide_yaml_json_name_and_jsonpath() {
    let s = ApiServer::start();
    s.apply(APP);

    let table = s.ok(&["get", "deployments"]);
    assert_eq!(
        header(&table),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert_eq!(row(&table, "web")[..4], ["web", "0/2", "0", "0"]);

    let wide = s.ok(&["get", "deployment", "web", "-o", "wide"]);
    assert_eq!(
        header(&wide),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert_eq!(row(&wide, "web")[5..], ["nginx", "nginx:1.25", "app=web"]);

    let cms = s.ok(&["get", "configmaps"]);
    assert_eq!(header(&cms), ["NAME", "DATA", "AGE"]);
    assert_eq!(row(&cms, "web-config")[1], "2");
    let secrets = s.ok(&["get", "secrets"]);
    assert_eq!(row(&secrets, "web-secret")[1..3], ["Opaque", "1"]);
    let svcs = s.ok(&["get", "services", "-o", "wide"]);
    assert_eq!(
        header(&svcs)[..4],
        ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP"]
    );
    let web = row(&svcs, "web");
    assert_eq!(web[1], "ClusterIP");
    assert_eq!(web[4], "80/TCP");
    assert_eq!(web.last(), Some(&"app=web"));

    let yaml = s.ok(&["get", "deployment", "web", "-o", "yaml"]);
    assert!(
        yaml.starts_with("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("\n  replicas: 2\n") && yaml.contains("\n  name: web\n"),
        "{yaml}"
    );

    let list: Value =
        serde_json::from_str(&s.ok(&["get", "deploy,svc,cm,secret", "-o", "json"])).unwrap();
    assert_eq!(list["kind"], "List");
    let kinds: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    // `default` also holds the API server's own `kubernetes` Service.
    assert_eq!(
        kinds,
        ["Deployment", "Service", "Service", "ConfigMap", "Secret"]
    );

    let names = s.ok(&["get", "deploy,svc,cm,secret", "-o", "name"]);
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        [
            "deployment.apps/web",
            "service/kubernetes",
            "service/web",
            "configmap/web-config",
            "secret/web-secret"
        ]
    );

    assert_eq!(
        s.jp(
            "deployment/web",
            "{.metadata.name}:{.spec.template.spec.containers[0].ports[0].containerPort}"
        ),
        "web:80"
    );
    let range = s.ok(&[
        "get",
        "configmaps,secrets",
        "-o",
        r#"jsonpath={range .items[*]}{.kind}/{.metadata.name}{"\n"}{end}"#,
    ]);
    assert_eq!(range, "ConfigMap/web-config\nSecret/web-secret\n");
    let custom = s.ok(&[
        "get",
        "deploy",
        "-o",
        "custom-columns=NAME:.metadata.name,IMAGE:.spec.template.spec.containers[0].image",
    ]);
    assert_eq!(custom.lines().collect::<Vec<_>>().len(), 2);
    assert_eq!(row(&custom, "web"), ["web", "nginx:1.25"]);
}

#[test]
fn get_filters_by_labels_and_fields_across_namespaces_and_shows_labels() {
    let s = ApiServer::start();
    s.apply(&namespace("team-a"));
    s.apply(
        &[
            pod("pa", "tier: alpha"),
            pod("pb", "tier: beta"),
            pod("plain", ""),
        ]
        .join("---\n"),
    );
    s.k_stdin(
        &["apply", "-n", "team-a", "-f", "-"],
        &pod("pc", "tier: alpha"),
    )
    .success();

    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["get", "pods", "-o", "name"];
        all.extend_from_slice(args);
        s.ok(&all).lines().map(str::to_string).collect()
    };
    assert_eq!(names(&["-l", "tier=alpha"]), ["pod/pa"]);
    assert_eq!(names(&["-l", "tier in (alpha,beta)"]), ["pod/pa", "pod/pb"]);
    assert_eq!(names(&["-l", "tier!=alpha"]), ["pod/pb", "pod/plain"]);
    assert_eq!(names(&["-l", "!tier"]), ["pod/plain"]);
    assert_eq!(names(&["-l", "tier"]), ["pod/pa", "pod/pb"]);
    assert_eq!(names(&["--field-selector", "metadata.name=pb"]), ["pod/pb"]);
    assert_eq!(
        names(&["--field-selector", "status.phase=Pending"]),
        ["pod/pa", "pod/pb", "pod/plain"]
    );
    assert_eq!(
        names(&[
            "--field-selector",
            "status.phase=Pending,metadata.name!=pa",
            "-l",
            "tier"
        ]),
        ["pod/pb"]
    );
    s.k(&["get", "pods", "--field-selector", "status.phase=Running"])
        .success()
        .stderr_has("No resources found in default namespace.");
    assert_eq!(names(&["-n", "team-a"]), ["pod/pc"]);

    let all = s.ok(&["get", "pods", "-A"]);
    assert_eq!(
        header(&all),
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert_eq!(row(&all, "team-a")[..4], ["team-a", "pc", "0/1", "Pending"]);
    assert_eq!(
        all.lines().filter(|l| l.starts_with("default ")).count(),
        3,
        "{all}"
    );
    let alpha = s.ok(&[
        "get",
        "pods",
        "-A",
        "-l",
        "tier=alpha",
        "-o",
        r#"jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {end}"#,
    ]);
    assert_eq!(alpha.trim(), "default/pa team-a/pc");

    let labelled = s.ok(&["get", "pods", "--show-labels"]);
    assert_eq!(header(&labelled).last(), Some(&"LABELS"));
    assert_eq!(row(&labelled, "pa").last(), Some(&"tier=alpha"));
    assert_eq!(row(&labelled, "plain").last(), Some(&"<none>"));
    let ns = s.ok(&["get", "namespaces", "--show-labels"]);
    assert_eq!(row(&ns, "team-a")[1], "Active");
    assert_eq!(
        row(&ns, "team-a").last(),
        Some(&"kubernetes.io/metadata.name=team-a")
    );
}

#[test]
fn pods_stay_pending_without_a_scheduler_and_unscheduled_pods_are_deleted_at_once() {
    let s = ApiServer::start();
    s.apply(&pod("waiting", "app: demo"));
    let table = s.ok(&["get", "pods"]);
    assert_eq!(
        header(&table),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert_eq!(
        row(&table, "waiting")[..4],
        ["waiting", "0/1", "Pending", "0"]
    );
    let wide = s.ok(&["get", "pod", "waiting", "-o", "wide"]);
    assert_eq!(
        row(&wide, "waiting")[5..7],
        ["<none>", "<none>"],
        "no IP, no node:\n{wide}"
    );
    let p = s.json("pod/waiting");
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    assert!(p["spec"].get("nodeName").is_none(), "{p:#}");
    assert_eq!(
        p["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(p["spec"]["restartPolicy"], "Always");

    // Never scheduled, so nothing has to stop it: gone at once, and
    // `delete` (which waits by default) returns promptly.
    let started = Instant::now();
    let out = s.ok(&["delete", "pod", "waiting"]);
    assert_eq!(out.trim(), r#"pod "waiting" deleted"#);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "delete took {:?}",
        started.elapsed()
    );
    assert!(!s.exists("pod/waiting"));

    // A pod bound to a node waits for its kubelet: graceful deletion.
    let bound = edit(
        &pod("bound", "app: demo"),
        "spec:\n",
        "spec:\n  nodeName: node-a\n",
    );
    s.apply(&bound);
    assert_eq!(
        row(&s.ok(&["get", "pod", "bound", "-o", "wide"]), "bound")[6],
        "node-a"
    );
    s.ok(&["delete", "pod", "bound", "--wait=false"]);
    assert_eq!(
        row(&s.ok(&["get", "pod", "bound"]), "bound")[2],
        "Terminating"
    );
    let p = s.json("pod/bound");
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p:#}");
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    s.k(&["delete", "pod", "bound", "--grace-period=0", "--force"])
        .success()
        .stdout_has(r#"pod "bound" force deleted"#)
        .stderr_has("Immediate deletion does not wait for confirmation");
    assert!(!s.exists("pod/bound"));
}

#[test]
fn describe_shows_deployments_and_pods_in_human_form() {
    let s = ApiServer::start();
    s.apply(APP);
    s.apply(&pod("solo", "app: solo"));
    let out = s.ok(&["describe", "deployment", "web"]);
    for (key, value) in [
        ("Name", "web"),
        ("Namespace", "default"),
        ("Labels", "app=web"),
        ("Selector", "app=web"),
        (
            "Replicas",
            "2 desired | 0 updated | 0 total | 0 available | 0 unavailable",
        ),
        ("StrategyType", "RollingUpdate"),
        ("Image", "nginx:1.25"),
        ("Port", "80/TCP"),
    ] {
        assert_eq!(
            field(&out, key),
            Some(value),
            "describe deployment, {key}:\n{out}"
        );
    }
    let out = s.ok(&["describe", "pod", "solo"]);
    for (key, value) in [
        ("Name", "solo"),
        ("Node", "<none>"),
        ("Status", "Pending"),
        ("Image", "busybox:1.36"),
        ("QoS Class", "BestEffort"),
    ] {
        assert_eq!(field(&out, key), Some(value), "describe pod, {key}:\n{out}");
    }
    let out = s.ok(&["describe", "configmap", "web-config"]);
    assert!(out.contains("greeting:\n----\nhello"), "{out}");
    s.k(&["describe", "pod", "nope"])
        .failure()
        .stderr_has(r#"Error from server (NotFound): pods "nope" not found"#);
}

// ---------------------------------------------------------------------------
// Changing
// ---------------------------------------------------------------------------

#[test]
fn label_and_annotate_add_overwrite_and_remove_keys() {
    let s = ApiServer::start();
    s.apply(&[pod("one", "tier: alpha"), pod("two", "tier: alpha")].join("---\n"));

    assert_eq!(
        s.ok(&["label", "pod", "one", "env=prod"]).trim(),
        "pod/one labeled"
    );
    s.k(&["label", "pod", "one", "env=dev"])
        .failure()
        .stderr_has("'env' already has a value (prod), and --overwrite is false");
    assert_eq!(s.jp("pod/one", "{.metadata.labels.env}"), "prod");
    s.ok(&["label", "pod", "one", "env=dev", "--overwrite"]);
    assert_eq!(s.jp("pod/one", "{.metadata.labels.env}"), "dev");
    assert_eq!(
        s.ok(&["label", "pod", "one", "env-"]).trim(),
        "pod/one unlabeled"
    );
    assert_eq!(s.jp("pod/one", "{.metadata.labels}"), r#"{"tier":"alpha"}"#);

    let out = s.ok(&["label", "pods", "-l", "tier=alpha", "team=blue"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["pod/one labeled", "pod/two labeled"]
    );
    assert_eq!(
        s.ok(&["get", "pods", "-l", "team=blue", "-o", "name"]),
        "pod/one\npod/two\n"
    );

    // --resource-version makes the change conditional.
    s.k(&["label", "pod", "two", "stale=yes", "--resource-version=1"])
        .failure()
        .stderr_has(r#"Error from server (Conflict): Operation cannot be fulfilled on pods "two""#);
    let rv = s.rv("pod/two");
    s.ok(&[
        "label",
        "pod",
        "two",
        "fresh=yes",
        &format!("--resource-version={rv}"),
    ]);
    assert_eq!(s.jp("pod/two", "{.metadata.labels.fresh}"), "yes");

    assert_eq!(
        s.ok(&["annotate", "pod", "one", "owner=ops team"]).trim(),
        "pod/one annotated"
    );
    assert_eq!(s.jp("pod/one", "{.metadata.annotations.owner}"), "ops team");
    s.k(&["annotate", "pod", "one", "owner=dev"])
        .failure()
        .stderr_has("--overwrite is false");
    s.ok(&["annotate", "pod", "one", "owner=dev", "--overwrite"]);
    assert_eq!(s.jp("pod/one", "{.metadata.annotations.owner}"), "dev");
    s.ok(&["annotate", "pod", "one", "owner-"]);
    assert_eq!(s.jp("pod/one", "{.metadata.annotations.owner}"), "");
}

#[test]
fn patch_applies_strategic_merge_json_merge_and_json_patches() {
    let s = ApiServer::start();
    s.apply(APP);
    let images = || s.jp("deployment/web", "{.spec.template.spec.containers[*].name}");

    // Strategic merge (the default): containers merge by name.
    let out = s.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#,
    ]);
    assert_eq!(out.trim(), "deployment.apps/web patched");
    let mut names: Vec<String> = images().split(' ').map(str::to_string).collect();
    names.sort();
    assert_eq!(names, ["nginx", "sidecar"]);
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}"#,
    ]);
    assert_eq!(
        s.jp(
            "deployment/web",
            r#"{.spec.template.spec.containers[?(@.name=="nginx")].image}"#
        ),
        "nginx:1.27"
    );
    // $patch: delete removes a list item by key.
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","$patch":"delete"}]}}}}"#,
    ]);
    assert_eq!(images(), "nginx");

    // JSON merge patch: lists are replaced whole; null removes a key.
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"team":"blue"}},"spec":{"template":{"spec":{"containers":[{"name":"only","image":"busybox:1.36"}]}}}}"#,
    ]);
    assert_eq!(images(), "only");
    assert_eq!(s.jp("deployment/web", "{.metadata.labels.team}"), "blue");
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"team":null}}}"#,
    ]);
    assert_eq!(
        s.jp("deployment/web", "{.metadata.labels}"),
        r#"{"app":"web"}"#
    );

    // JSON patch.
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4},{"op":"add","path":"/metadata/labels/tier","value":"front"}]"#,
    ]);
    assert_eq!(
        s.jp("deployment/web", "{.spec.replicas} {.metadata.labels.tier}"),
        "4 front"
    );
    let rv = s.rv("deployment/web");
    s.k(&["patch", "deployment", "web", "--type=json", "-p", r#"[{"op":"test","path":"/spec/replicas","value":99},{"op":"replace","path":"/spec/replicas","value":7}]"#])
        .failure();
    assert_eq!(
        s.rv("deployment/web"),
        rv,
        "a failed json patch test changes nothing"
    );
    assert_eq!(s.jp("deployment/web", "{.spec.replicas}"), "4");

    // A patch that changes nothing writes nothing.
    s.k(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"replicas":4}}"#,
    ])
    .success()
    .stdout_has("deployment.apps/web patched (no change)");
    assert_eq!(s.rv("deployment/web"), rv);

    // An invalid result is refused.
    s.k(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"replicas":-1}}"#,
    ])
    .failure()
    .stderr_has(r#"The Deployment "web" is invalid"#)
    .stderr_has("spec.replicas");
    s.k(&["patch", "configmap", "nope", "-p", r#"{"data":{"a":"b"}}"#])
        .failure()
        .stderr_has(r#"Error from server (NotFound): configmaps "nope" not found"#);
}

#[test]
fn replace_swaps_the_whole_object_and_refuses_a_stale_resource_version() {
    let s = ApiServer::start();
    s.apply(APP);
    let mut cm = s.json("configmap/web-config");
    let stale = cm.clone();
    cm["data"] = serde_json::json!({"only": "this"});
    let path = s.file("replaced.json", &cm.to_string());
    assert_eq!(
        s.ok(&["replace", "-f", &path]).trim(),
        "configmap/web-config replaced"
    );
    assert_eq!(
        s.jp("configmap/web-config", "{.data}"),
        r#"{"only":"this"}"#
    );

    // The copy read before the replace carries an old resourceVersion.
    let path = s.file("stale.json", &stale.to_string());
    s.k(&["replace", "-f", &path])
        .failure()
        .stderr_has("Error from server (Conflict)")
        .stderr_has(
            r#"Operation cannot be fulfilled on configmaps "web-config": the object has been modified; please apply your changes to the latest version and try again"#,
        );
    assert_eq!(s.jp("configmap/web-config", "{.data.only}"), "this");

    // Replacing what does not exist is NotFound; --force deletes and recreates.
    let mut gone = cm.clone();
    gone["metadata"] = serde_json::json!({"name": "gone"});
    let path = s.file("gone.json", &gone.to_string());
    s.k(&["replace", "-f", &path])
        .failure()
        .stderr_has(r#"configmaps "gone" not found"#);
    let uid = s.jp("configmap/web-config", "{.metadata.uid}");
    let path = s.file("forced.json", &stale.to_string());
    s.k(&["replace", "--force", "-f", &path])
        .success()
        .stdout_has("configmap/web-config replaced");
    assert_ne!(
        s.jp("configmap/web-config", "{.metadata.uid}"),
        uid,
        "--force recreates"
    );
    assert_eq!(s.jp("configmap/web-config", "{.data.greeting}"), "hello");
}

#[test]
fn scale_sets_replicas_through_the_scale_subresource() {
    let s = ApiServer::start();
    s.apply(APP);
    assert_eq!(
        s.ok(&["scale", "deployment", "web", "--replicas=4"]).trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(s.jp("deployment/web", "{.spec.replicas}"), "4");
    let scale: Value = serde_json::from_str(&s.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]))
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 4);
    assert_eq!(scale["status"]["selector"], "app=web");
    s.k(&[
        "scale",
        "deployment",
        "web",
        "--current-replicas=2",
        "--replicas=6",
    ])
    .failure()
    .stderr_has("Expected replicas to be 2, was 4");
    assert_eq!(s.jp("deployment/web", "{.spec.replicas}"), "4");
    s.k(&["scale", "deployment", "nope", "--replicas=1"])
        .failure()
        .stderr_has(r#"deployments.apps "nope" not found"#);
}

#[test]
fn status_is_written_through_the_status_subresource_only() {
    let s = ApiServer::start();
    s.apply(APP);
    // What a controller would report, written the way controllers do.
    let status = r#"{"status":{"observedGeneration":1,"replicas":2,"updatedReplicas":2,"readyReplicas":2,"availableReplicas":2,"conditions":[{"type":"Available","status":"True","reason":"MinimumReplicasAvailable"}]}}"#;
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
    let table = s.ok(&["get", "deployment", "web"]);
    assert_eq!(row(&table, "web")[..4], ["web", "2/2", "2", "2"]);
    s.k(&[
        "wait",
        "deployment/web",
        "--for=condition=Available",
        "--timeout=5s",
    ])
    .success()
    .stdout_has("deployment.apps/web condition met");
    s.k(&["rollout", "status", "deployment/web", "--timeout=5s"])
        .success()
        .stdout_has(r#"deployment "web" successfully rolled out"#);

    // The main resource ignores status; the status subresource ignores spec.
    s.k(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":9}}"#,
    ])
    .success()
    .stdout_has("patched (no change)");
    s.ok(&[
        "patch",
        "deployment",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":9},"status":{"readyReplicas":1}}"#,
    ]);
    assert_eq!(
        s.jp(
            "deployment/web",
            "{.spec.replicas} {.status.replicas} {.status.readyReplicas}"
        ),
        "2 2 1"
    );
    let scale: Value = serde_json::from_str(&s.ok(&[
        "get",
        "deployment",
        "web",
        "--subresource=scale",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(scale["status"]["replicas"], 2);
}

#[test]
fn edit_saves_what_the_editor_wrote() {
    let s = ApiServer::start();
    s.apply(APP);
    let editor = |name: &str, script: &str| -> String {
        let path = s.file(name, &format!("#!/bin/sh\nset -e\n{script}\n"));
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let run_edit = |editor: &str, what: &str| -> Run {
        let out = s
            .kubectl_cmd(V, &["edit", what])
            .env("EDITOR", editor)
            .env_remove("KUBE_EDITOR")
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl edit");
        Run::new(format!("edit {what}"), out)
    };

    let sed = editor(
        "sed-editor.sh",
        r#"sed -i -e 's/greeting: hello/greeting: edited/' "$1""#,
    );
    run_edit(&sed, "configmap/web-config")
        .success()
        .stdout_has("configmap/web-config edited");
    assert_eq!(s.jp("configmap/web-config", "{.data.greeting}"), "edited");

    let image = editor(
        "image-editor.sh",
        r#"sed -i -e 's/image: nginx:1.25/image: nginx:1.29/' "$1""#,
    );
    run_edit(&image, "deployment/web")
        .success()
        .stdout_has("deployment.apps/web edited");
    assert_eq!(
        s.jp(
            "deployment/web",
            "{.spec.template.spec.containers[0].image} {.metadata.generation}"
        ),
        "nginx:1.29 2"
    );

    let rv = s.rv("configmap/web-config");
    let noop = editor("noop-editor.sh", "true");
    run_edit(&noop, "configmap/web-config")
        .success()
        .stderr_has("Edit cancelled, no changes made.");
    assert_eq!(s.rv("configmap/web-config"), rv);
}

// ---------------------------------------------------------------------------
// Deleting, watching, waiting
// ---------------------------------------------------------------------------

#[test]
fn delete_by_name_by_label_with_all_and_waiting_for_finalizers() {
    let s = ApiServer::start();
    s.apply(
        &[
            configmap("a1", "group: alpha"),
            configmap("a2", "group: alpha"),
            configmap("b1", "group: beta"),
            configmap("b2", "group: beta"),
            configmap("c1", "group: gamma"),
        ]
        .join("---\n"),
    );
    let names = || s.ok(&["get", "configmaps", "-o", "name"]);

    assert_eq!(
        s.ok(&["delete", "configmap", "a1"]).trim(),
        r#"configmap "a1" deleted"#
    );
    assert!(!s.exists("configmap/a1"));
    s.k(&["delete", "configmap", "a1"])
        .failure()
        .stderr_has(r#"Error from server (NotFound): configmaps "a1" not found"#);
    s.k(&["delete", "configmap", "a1", "--ignore-not-found"])
        .success();

    let out = s.ok(&["delete", "configmaps", "-l", "group=beta"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [r#"configmap "b1" deleted"#, r#"configmap "b2" deleted"#]
    );
    assert_eq!(names(), "configmap/a2\nconfigmap/c1\n");

    let out = s.ok(&["delete", "configmaps", "--all"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [r#"configmap "a2" deleted"#, r#"configmap "c1" deleted"#]
    );
    s.k(&["get", "configmaps"])
        .success()
        .stderr_has("No resources found in default namespace.");

    // --wait (the default) blocks while a finalizer holds the object.
    let held = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n";
    s.apply(held);
    let mut delete = Stream::spawn(s.kubectl_cmd(
        V,
        &[
            "delete",
            "configmap",
            "held",
            "--wait=true",
            "--timeout=30s",
        ],
    ));
    eventually("the ConfigMap has a deletionTimestamp", || {
        !s.jp("configmap/held", "{.metadata.deletionTimestamp}")
            .is_empty()
    });
    assert!(
        delete.running(),
        "delete --wait returned while a finalizer still holds the object"
    );
    s.ok(&[
        "patch",
        "configmap",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let (status, printed) = delete.finish(PATIENCE);
    assert!(status.success(), "delete --wait failed:\n{printed}");
    assert!(printed.contains(r#"configmap "held" deleted"#), "{printed}");
    assert!(!s.exists("configmap/held"));

    // --wait=false returns at once and leaves the object terminating.
    s.apply(held);
    s.ok(&["delete", "configmap", "held", "--wait=false"]);
    assert_eq!(
        s.jp("configmap/held", "{.metadata.finalizers[0]}"),
        "example.com/hold"
    );
    assert!(!s
        .jp("configmap/held", "{.metadata.deletionTimestamp}")
        .is_empty());
    s.ok(&[
        "patch",
        "configmap",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    eventually("the ConfigMap is gone", || !s.exists("configmap/held"));

    // delete -f deletes what the manifest names.
    s.apply(APP);
    let out = s.ok(&["delete", "-f", &s.file("app.yaml", APP)]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            r#"deployment.apps "web" deleted"#,
            r#"service "web" deleted"#,
            r#"configmap "web-config" deleted"#,
            r#"secret "web-secret" deleted"#,
        ]
    );
}

#[test]
fn get_watch_prints_changes_made_after_it_started() {
    let s = ApiServer::start();
    s.apply(&configmap("seed", "app: watch"));

    let mut events =
        Stream::spawn(s.kubectl_cmd(V, &["get", "configmaps", "-w", "--output-watch-events"]));
    // The initial list is printed as ADDED; changes after it are streamed.
    events.expect("for the header", |l| {
        l.split_whitespace().collect::<Vec<_>>() == ["EVENT", "NAME", "DATA", "AGE"]
    });
    events.expect("ADDED seed", |l| {
        l.starts_with("ADDED ") && l.contains(" seed ")
    });

    let mut plain = Stream::spawn(s.kubectl_cmd(V, &["get", "pods", "--watch"]));
    s.apply(&pod("first", "app: watch"));
    plain.expect("for the first pod", |l| {
        l.starts_with("first ") && l.contains("Pending")
    });

    s.apply(&configmap("later", "app: watch"));
    events.expect("ADDED later", |l| {
        l.starts_with("ADDED ") && l.contains(" later ")
    });
    s.ok(&[
        "patch",
        "configmap",
        "later",
        "-p",
        r#"{"data":{"extra":"1"}}"#,
    ]);
    let modified = events.expect("MODIFIED later", |l| {
        l.starts_with("MODIFIED ") && l.contains(" later ")
    });
    assert_eq!(
        modified.split_whitespace().nth(2),
        Some("2"),
        "the DATA column follows the change"
    );
    s.ok(&["delete", "configmap", "later"]);
    events.expect("DELETED later", |l| {
        l.starts_with("DELETED ") && l.contains(" later ")
    });

    s.apply(&pod("second", "app: watch"));
    plain.expect("for the second pod", |l| {
        l.starts_with("second ") && l.contains("Pending")
    });
    s.ok(&["label", "pod", "first", "extra=1"]);
    // A plain watch reprints the row on every change.
    plain.expect("the first pod again", |l| l.starts_with("first "));

    let mut json = Stream::spawn(s.kubectl_cmd(
        V,
        &[
            "get",
            "configmap",
            "seed",
            "-w",
            "-o",
            "jsonpath={.data.key}{\"\\n\"}",
        ],
    ));
    json.expect("the initial value", |l| l == "value");
    s.ok(&[
        "patch",
        "configmap",
        "seed",
        "-p",
        r#"{"data":{"key":"changed"}}"#,
    ]);
    json.expect("the changed value", |l| l == "changed");
}

#[test]
fn wait_returns_when_a_jsonpath_matches_or_the_object_is_deleted() {
    let s = ApiServer::start();
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: job\n  finalizers: [example.com/hold]\ndata:\n  state: running\n");

    let mut waiting = Stream::spawn(s.kubectl_cmd(
        V,
        &[
            "wait",
            "configmap/job",
            "--for=jsonpath={.data.state}=done",
            "--timeout=30s",
        ],
    ));
    s.ok(&[
        "patch",
        "configmap",
        "job",
        "-p",
        r#"{"data":{"state":"done"}}"#,
    ]);
    let (status, printed) = waiting.finish(PATIENCE);
    assert!(status.success(), "wait --for=jsonpath failed:\n{printed}");
    assert_eq!(printed.trim(), "configmap/job condition met");

    // Already true: returns at once.
    s.k(&[
        "wait",
        "configmap/job",
        "--for=jsonpath={.data.state}=done",
        "--timeout=5s",
    ])
    .success()
    .stdout_has("configmap/job condition met");

    // Deletion held by a finalizer: waiting for it times out...
    s.ok(&["delete", "configmap", "job", "--wait=false"]);
    s.k(&["wait", "configmap/job", "--for=delete", "--timeout=1s"])
        .failure()
        .stderr_has("timed out waiting for the condition on configmaps/job");

    // ...until the finalizer goes.
    let mut waiting = Stream::spawn(s.kubectl_cmd(
        V,
        &["wait", "configmap/job", "--for=delete", "--timeout=30s"],
    ));
    s.ok(&[
        "patch",
        "configmap",
        "job",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let (status, printed) = waiting.finish(PATIENCE);
    // (kubectl prints "condition met" only if it saw the object before it
    // went; the patch may win that race, so only the outcome is checked.)
    assert!(status.success(), "wait --for=delete failed:\n{printed}");
    assert!(!s.exists("configmap/job"));

    // Pods: waiting for a phase a pod already has.
    s.apply(&pod("idle", "app: idle"));
    s.k(&[
        "wait",
        "pod/idle",
        "--for=jsonpath={.status.phase}=Pending",
        "--timeout=5s",
    ])
    .success()
    .stdout_has("pod/idle condition met");
}

// ---------------------------------------------------------------------------
// Discovery and documentation
// ---------------------------------------------------------------------------

#[test]
fn explain_prints_field_documentation_from_the_openapi_schema() {
    let s = ApiServer::start();
    let out = s.ok(&["explain", "pod.spec"]);
    assert!(
        out.starts_with("KIND:       Pod\nVERSION:    v1\n"),
        "{out}"
    );
    assert!(out.contains("FIELD: spec <PodSpec>"), "{out}");
    assert!(out.contains("PodSpec is a description of a pod."), "{out}");
    assert!(
        out.contains("  containers\t<[]Container> -required-"),
        "{out}"
    );
    assert!(out.contains("  restartPolicy\t<string>"), "{out}");

    let out = s.ok(&["explain", "deployment.spec.template", "--recursive"]);
    assert!(
        out.starts_with("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n"),
        "{out}"
    );
    assert!(out.contains("FIELD: template <PodTemplateSpec>"), "{out}");
    for needle in [
        "  metadata\t<ObjectMeta>",
        "  spec\t<PodSpec>",
        "    containers\t<[]Container> -required-",
        "      imagePullPolicy\t<string>",
    ] {
        assert!(out.contains(needle), "explain --recursive lacks {needle:?}");
    }

    let out = s.ok(&["explain", "services.spec.type"]);
    assert!(out.contains("FIELD: type <string>"), "{out}");
    assert!(out.contains("ClusterIP"), "{out}");
    s.k(&["explain", "pod.spec.nosuchfield"])
        .failure()
        .stderr_has(r#"field "nosuchfield" does not exist"#);
}

#[test]
fn api_resources_and_api_versions_list_the_served_kinds_and_groups() {
    let s = ApiServer::start();
    let out = s.ok(&["api-resources"]);
    assert_eq!(
        header(&out),
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    for (name, cells) in [
        ("pods", vec!["pods", "po", "v1", "true", "Pod"]),
        ("services", vec!["services", "svc", "v1", "true", "Service"]),
        (
            "namespaces",
            vec!["namespaces", "ns", "v1", "false", "Namespace"],
        ),
        ("nodes", vec!["nodes", "no", "v1", "false", "Node"]),
        (
            "configmaps",
            vec!["configmaps", "cm", "v1", "true", "ConfigMap"],
        ),
        (
            "deployments",
            vec!["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ),
        (
            "cronjobs",
            vec!["cronjobs", "cj", "batch/v1", "true", "CronJob"],
        ),
        (
            "leases",
            vec!["leases", "coordination.k8s.io/v1", "true", "Lease"],
        ),
    ] {
        assert_eq!(row(&out, name), cells);
    }
    assert_eq!(
        row(&out, "secrets")[1..],
        ["v1", "true", "Secret"],
        "secrets have no short name"
    );

    let wide = s.ok(&["api-resources", "-o", "wide"]);
    assert_eq!(header(&wide).last(), Some(&"CATEGORIES"));
    let pods = row(&wide, "pods");
    assert_eq!(
        pods[5],
        "create,delete,deletecollection,get,list,patch,update,watch"
    );
    assert_eq!(pods[6], "all");

    let apps = s.ok(&["api-resources", "--api-group=apps", "-o", "name"]);
    for name in [
        "daemonsets.apps",
        "deployments.apps",
        "replicasets.apps",
        "statefulsets.apps",
    ] {
        assert!(
            apps.lines().any(|l| l == name),
            "--api-group=apps lacks {name}:\n{apps}"
        );
    }
    assert!(apps.lines().all(|l| l.ends_with(".apps")), "{apps}");
    let cluster = s.ok(&["api-resources", "--namespaced=false", "-o", "name"]);
    assert!(
        cluster.lines().any(|l| l == "namespaces") && !cluster.lines().any(|l| l == "pods"),
        "{cluster}"
    );

    let versions = s.ok(&["api-versions"]);
    let versions: Vec<&str> = versions.lines().collect();
    for gv in [
        "v1",
        "apps/v1",
        "batch/v1",
        "autoscaling/v2",
        "coordination.k8s.io/v1",
        "policy/v1",
    ] {
        assert!(
            versions.contains(&gv),
            "api-versions lacks {gv}: {versions:?}"
        );
    }
    let mut sorted = versions.clone();
    sorted.sort();
    assert_eq!(versions, sorted, "api-versions prints sorted");
}

#[test]
fn auth_whoami_reports_the_admin_and_a_static_token_user() {
    let (_dir, s) = server_with_tokens();
    let out = s.ok(&["auth", "whoami"]);
    assert_eq!(header(&out), ["ATTRIBUTE", "VALUE"]);
    assert_eq!(row(&out, "Username"), ["Username", "admin"]);
    assert!(
        row(&out, "Groups").join(" ").contains("system:masters"),
        "{out}"
    );

    let kubeconfig = token_kubeconfig(&s, "tok-alice");
    let out = s.ok(&["--kubeconfig", &kubeconfig, "auth", "whoami", "-o", "json"]);
    let review: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(review["kind"], "SelfSubjectReview");
    assert_eq!(review["apiVersion"], "authentication.k8s.io/v1");
    assert_eq!(review["status"]["userInfo"]["username"], "alice");
    assert_eq!(review["status"]["userInfo"]["uid"], "uid-1");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        serde_json::json!(["dev", "ops", "system:authenticated"])
    );
}

#[test]
fn auth_can_i_answers_yes_for_the_admin() {
    let s = ApiServer::start();
    s.k(&["auth", "can-i", "create", "deployments"])
        .success()
        .stdout_has("yes");
    s.k(&["auth", "can-i", "delete", "pods", "-n", "kube-system"])
        .success()
        .stdout_has("yes");
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[test]
fn errors_report_not_found_already_exists_invalid_and_malformed_input() {
    let s = ApiServer::start();
    assert_eq!(
        s.k(&["get", "pod", "nope"]).failure().stderr.trim(),
        r#"Error from server (NotFound): pods "nope" not found"#
    );
    assert_eq!(
        s.k(&["get", "deployment", "nope", "-o", "json"])
            .failure()
            .stderr
            .trim(),
        r#"Error from server (NotFound): deployments.apps "nope" not found"#
    );
    s.k(&["get", "widgets"])
        .failure()
        .stderr_has(r#"error: the server doesn't have a resource type "widgets""#);

    let dup = s.file("dup.yaml", &configmap("dup", "app: x"));
    s.k(&["create", "-f", &dup])
        .success()
        .stdout_has("configmap/dup created");
    s.k(&["create", "-f", &dup])
        .failure()
        .stderr_has(&format!(r#"Error from server (AlreadyExists): error when creating "{dup}": configmaps "dup" already exists"#));

    s.k_stdin(
        &["apply", "-n", "nowhere", "-f", "-"],
        &configmap("orphan", "app: x"),
    )
    .failure()
    .stderr_has(r#"namespaces "nowhere" not found"#);

    let bad = edit(
        APP.split("\n---\n").next().unwrap(),
        "    metadata:\n      labels:\n        app: web",
        "    metadata:\n      labels:\n        app: other",
    );
    s.k_stdin(&["apply", "-f", "-"], &bad)
        .failure()
        .stderr_has(r#"The Deployment "web" is invalid"#)
        .stderr_has("spec.template.metadata.labels")
        .stderr_has("`selector` does not match template `labels`");
    assert!(
        !s.exists("deployment/web"),
        "an invalid object is not stored"
    );

    let nameless = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n";
    s.k_stdin(&["create", "-f", "-"], nameless)
        .failure()
        .stderr_has("metadata.name")
        .stderr_has("Required value");
    let bad_name = configmap("Not_A_Name", "app: x");
    s.k_stdin(&["create", "-f", "-"], &bad_name)
        .failure()
        .stderr_has(
            r#"The ConfigMap "Not_A_Name" is invalid: metadata.name: Invalid value: "Not_A_Name""#,
        );

    let malformed = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m\n data: [\n";
    s.k_stdin(&["apply", "-f", "-"], malformed)
        .failure()
        .stderr_has("error converting YAML to JSON");
    assert!(!s.exists("configmap/m"));
}

#[test]
fn invalid_values_are_printed_the_way_upstream_prints_them() {
    let s = ApiServer::start();
    let bad = edit(
        APP.split("\n---\n").next().unwrap(),
        "    metadata:\n      labels:\n        app: web",
        "    metadata:\n      labels:\n        app: other",
    );
    // Upstream formats non-string values with Go's %#v / %v, unquoted.
    s.k_stdin(&["apply", "-f", "-"], &bad)
        .failure()
        .stderr_has(r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`"#);
    s.apply(APP);
    s.k(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"replicas":-1}}"#,
    ])
    .failure()
    .stderr_has("spec.replicas: Invalid value: -1: must be greater than or equal to 0");
}

#[test]
fn validate_strict_rejects_unknown_fields_and_warn_only_warns() {
    let s = ApiServer::start();
    let typo = edit(
        &pod("typo", "app: x"),
        "    image: busybox:1.36\n",
        "    image: busybox:1.36\n    imagePullPolcy: Always\n",
    );
    let run = s
        .k_stdin(&["create", "--validate=strict", "-f", "-"], &typo)
        .failure();
    assert!(
        !s.exists("pod/typo"),
        "a strict create with an unknown field stores nothing"
    );
    // Upstream: `Error from server (BadRequest): error when creating "STDIN":
    // Pod in version "v1" cannot be handled as a Pod: strict decoding error:
    // unknown field "spec.containers[0].imagePullPolcy"`.
    run.stderr_has("Error from server (BadRequest)")
        .stderr_has(r#"strict decoding error: unknown field "spec.containers[0].imagePullPolcy""#);

    let top = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: top\nbogus: 1\n";
    s.k_stdin(&["apply", "--validate=warn", "-f", "-"], top)
        .success()
        .stdout_has("configmap/top created")
        .stderr_has(r#"Warning: unknown field "bogus""#);
    s.k_stdin(&["create", "--validate=false", "-f", "-"], &typo)
        .success()
        .stdout_has("pod/typo created");
}

// ---------------------------------------------------------------------------
// Dry run and paging
// ---------------------------------------------------------------------------

#[test]
fn server_dry_run_create_apply_scale_and_delete_change_nothing() {
    let s = ApiServer::start();
    let dry = s
        .k_stdin(
            &[
                "create",
                "--dry-run=server",
                "-f",
                "-",
                "-o",
                "jsonpath={.metadata.name} {.metadata.uid}",
            ],
            &configmap("ghost", "app: x"),
        )
        .success();
    let (name, uid) = dry.stdout.split_once(' ').expect("name and uid");
    assert_eq!(name, "ghost");
    assert!(
        !uid.is_empty(),
        "a dry-run create returns the object as it would be stored"
    );
    s.k_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &configmap("ghost", "app: x"),
    )
    .success()
    .stdout_has("configmap/ghost created (server dry run)");
    assert!(!s.exists("configmap/ghost"));
    s.k_stdin(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        &configmap("ghost", "app: x"),
    )
    .success()
    .stdout_has("configmap/ghost serverside-applied (server dry run)");
    assert!(!s.exists("configmap/ghost"));

    s.apply(APP);
    let rv = s.rv("deployment/web");
    let edited = s.file("app-edited.yaml", &edited_app());
    s.k(&["apply", "--dry-run=server", "-f", &edited])
        .success()
        .stdout_has("deployment.apps/web configured (server dry run)");
    s.k(&["apply", "--server-side", "--dry-run=server", "-f", &edited])
        .success()
        .stdout_has("deployment.apps/web serverside-applied (server dry run)");
    s.k(&[
        "scale",
        "deployment",
        "web",
        "--replicas=9",
        "--dry-run=server",
    ])
    .success()
    .stdout_has("deployment.apps/web scaled (server dry run)");
    s.k(&["delete", "deployment", "web", "--dry-run=server"])
        .success()
        .stdout_has(r#"deployment.apps "web" deleted (server dry run)"#);
    assert_eq!(s.rv("deployment/web"), rv, "no dry run wrote anything");
    assert_eq!(s.jp("deployment/web", "{.spec.replicas}"), "2");
    assert_eq!(s.jp("configmap/web-config", "{.data.farewell}"), "bye");
}

#[test]
fn server_dry_run_create_of_an_existing_object_is_refused() {
    let s = ApiServer::start();
    s.apply(&configmap("taken", "app: x"));
    // Upstream's dry-run create still checks storage: 409 AlreadyExists.
    s.k_stdin(&["create", "--dry-run=server", "-f", "-"], &configmap("taken", "app: x"))
        .failure()
        .stderr_has(r#"Error from server (AlreadyExists): error when creating "STDIN": configmaps "taken" already exists"#);
}

#[test]
fn get_with_chunk_size_pages_through_every_object() {
    let s = ApiServer::start();
    let docs: Vec<String> = (1..=7)
        .flat_map(|i| {
            [
                pod(&format!("pod-{i}"), "batch: paged"),
                configmap(&format!("cm-{i}"), "batch: paged"),
            ]
        })
        .collect();
    s.apply(&docs.join("---\n"));

    let pods = s.ok(&["get", "pods", "--chunk-size=2", "-o", "name"]);
    assert_eq!(
        pods.lines().collect::<Vec<_>>(),
        (1..=7).map(|i| format!("pod/pod-{i}")).collect::<Vec<_>>()
    );

    // The table is printed chunk by chunk under one header; -v=6 shows the
    // pages: 7 objects, 2 a page, so 4 requests, 3 of them with `continue`.
    let run = s
        .k(&["get", "configmaps", "--chunk-size=2", "-v=6"])
        .success();
    assert_eq!(header(&run.stdout), ["NAME", "DATA", "AGE"]);
    let rows: Vec<&str> = run
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(rows, (1..=7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
    let pages: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("/configmaps?") && l.contains("limit=2"))
        .collect();
    assert_eq!(pages.len(), 4, "{pages:#?}");
    assert_eq!(
        pages.iter().filter(|l| l.contains("continue=")).count(),
        3,
        "{pages:#?}"
    );

    let all = s.ok(&[
        "get",
        "pods,configmaps",
        "-l",
        "batch=paged",
        "--chunk-size=3",
        "-o",
        "name",
    ]);
    assert_eq!(all.lines().count(), 14);
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

#[test]
fn requests_without_credentials_get_401_with_a_status_body() {
    let s = ApiServer::start();
    for bearer in [None, Some("not-a-token")] {
        let (code, body) = curl(&s, "/api/v1/namespaces", bearer);
        assert_eq!(code, 401, "bearer {bearer:?}: {body}");
        let status: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["apiVersion"], "v1");
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "Unauthorized");
        assert_eq!(status["code"], 401);
    }
    let kubeconfig = token_kubeconfig(&s, "not-a-token");
    s.k(&["--kubeconfig", &kubeconfig, "get", "namespaces"])
        .failure()
        // kubectl >= 1.27 reports the 401 of its discovery request this way.
        .stderr_has("error: You must be logged in to the server (");
}

#[test]
fn a_static_token_from_the_token_auth_file_authenticates() {
    let (_dir, s) = server_with_tokens();
    let (code, body) = curl(&s, "/api/v1/namespaces", Some("tok-alice"));
    assert_eq!(code, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "NamespaceList");

    let kubeconfig = token_kubeconfig(&s, "tok-alice");
    let out = s.ok(&["--kubeconfig", &kubeconfig, "get", "namespaces"]);
    assert_eq!(row(&out, "default")[1], "Active");
    s.k_stdin(
        &["--kubeconfig", &kubeconfig, "apply", "-f", "-"],
        &configmap("by-alice", "app: x"),
    )
    .success()
    .stdout_has("configmap/by-alice created");

    let (code, _) = curl(&s, "/api/v1/namespaces", Some("tok-mallory"));
    assert_eq!(code, 401);
}

// ---------------------------------------------------------------------------
// What a real cluster has that users see at once
// ---------------------------------------------------------------------------

#[test]
fn pod_templates_are_defaulted_like_upstream_pod_templates() {
    let s = ApiServer::start();
    s.apply(APP);
    let spec = s.json("deployment/web")["spec"]["template"]["spec"].clone();
    // Upstream defaults these on Pods only (SetDefaults_Pod and the Priority
    // admission plugin), never inside a template.
    for field in ["enableServiceLinks", "priority", "preemptionPolicy"] {
        assert!(
            spec.get(field).is_none(),
            "template spec has {field}: {spec:#}"
        );
    }
    for field in [
        "dnsPolicy",
        "restartPolicy",
        "schedulerName",
        "securityContext",
        "terminationGracePeriodSeconds",
    ] {
        assert!(
            spec.get(field).is_some(),
            "template spec lacks {field}: {spec:#}"
        );
    }
}

#[test]
fn metadata_generation_is_set_only_on_kinds_upstream_sets_it_on() {
    let s = ApiServer::start();
    s.apply(APP);
    s.apply(&namespace("plain"));
    assert_eq!(s.jp("deployment/web", "{.metadata.generation}"), "1");
    // Upstream's Service, Namespace, ConfigMap and Secret strategies never
    // set metadata.generation.
    for what in [
        "service/web",
        "namespace/plain",
        "configmap/web-config",
        "secret/web-secret",
    ] {
        assert_eq!(
            s.jp(what, "{.metadata.generation}"),
            "",
            "{what} has a generation"
        );
    }
}

#[test]
fn a_pod_with_only_limits_gets_requests_equal_to_them() {
    let s = ApiServer::start();
    let limited = edit(
        &pod("limited", "app: x"),
        "    image: busybox:1.36\n",
        "    image: busybox:1.36\n    resources:\n      limits: {cpu: 500m, memory: 64Mi}\n",
    );
    s.apply(&limited);
    let p = s.json("pod/limited");
    let resources = &p["spec"]["containers"][0]["resources"];
    // SetDefaults_Pod: requests default to limits.
    assert_eq!(
        resources["requests"],
        serde_json::json!({"cpu": "500m", "memory": "64Mi"}),
        "{resources:#}"
    );
    assert_eq!(p["status"]["qosClass"], "Guaranteed");
}

#[test]
fn a_job_gets_a_generated_selector_and_pod_template_labels() {
    let s = ApiServer::start();
    s.apply(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: once\nspec:\n  template:\n    spec:\n      \
         restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox:1.36\n",
    );
    let job = s.json("job/once");
    let uid = job["metadata"]["uid"].as_str().expect("uid");
    assert_eq!(
        job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid,
        "{:#}",
        job["spec"]
    );
    let labels = &job["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["batch.kubernetes.io/job-name"], "once", "{labels:#}");
    assert_eq!(
        labels["batch.kubernetes.io/controller-uid"], uid,
        "{labels:#}"
    );
    assert_eq!(labels["job-name"], "once", "{labels:#}");
    let table = s.ok(&["get", "jobs"]);
    assert_eq!(
        header(&table),
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    );
    assert_eq!(row(&table, "once")[..3], ["once", "Running", "0/1"]);
}

#[test]
fn a_cron_job_with_an_unparseable_schedule_is_invalid() {
    let s = ApiServer::start();
    let cron = |schedule: &str| {
        format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n  schedule: \"{schedule}\"\n  \
             jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          \
             containers:\n          - name: main\n            image: busybox:1.36\n"
        )
    };
    s.k_stdin(&["apply", "-f", "-"], &cron("every tuesday"))
        .failure()
        .stderr_has(
            r#"The CronJob "tick" is invalid: spec.schedule: Invalid value: "every tuesday""#,
        );
    assert!(!s.exists("cronjob/tick"));
    s.apply(&cron("*/5 * * * *"));
    let table = s.ok(&["get", "cronjobs"]);
    assert_eq!(row(&table, "tick")[1..6], ["*/5", "*", "*", "*", "*"]);
}

#[test]
fn create_with_generate_name_makes_a_unique_name() {
    let s = ApiServer::start();
    let generated = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: batch-\n";
    let first = s
        .k_stdin(&["create", "-f", "-", "-o", "name"], generated)
        .success()
        .stdout;
    let second = s
        .k_stdin(&["create", "-f", "-", "-o", "name"], generated)
        .success()
        .stdout;
    for name in [&first, &second] {
        let suffix = name
            .trim()
            .strip_prefix("configmap/batch-")
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(suffix.len(), 5, "{name}");
    }
    assert_ne!(first, second);
    s.k_stdin(&["apply", "-f", "-"], generated)
        .failure()
        .stderr_has("cannot use generate name with apply");
}

// ---------------------------------------------------------------------------
// Other kubectl versions
// ---------------------------------------------------------------------------

/// apply, get, delete and create namespace with one kubectl version.
fn smoke(version: &str) {
    let s = ApiServer::start();
    let app = s.file("app.yaml", APP);
    let out = s.kv(version, &["apply", "-f", &app]).success();
    assert_eq!(out.lines().len(), 4, "{out:?}");
    assert!(
        out.lines().iter().all(|l| l.ends_with(" created")),
        "{out:?}"
    );
    let table = s.kv(version, &["get", "deployments"]).success().stdout;
    assert_eq!(row(&table, "web")[1], "0/2");
    let out = s
        .kv(
            version,
            &[
                "get",
                "configmap",
                "web-config",
                "-o",
                "jsonpath={.data.greeting}",
            ],
        )
        .success();
    assert_eq!(out.stdout, "hello");
    let out = s
        .kv(
            version,
            &[
                "apply",
                "--server-side",
                "-f",
                &s.file("edited.yaml", &edited_app()),
            ],
        )
        .success();
    assert_eq!(out.lines()[0], "deployment.apps/web serverside-applied");
    let out = s.kv(version, &["delete", "-f", &app]).success();
    assert_eq!(out.lines()[0], r#"deployment.apps "web" deleted"#);
    s.kv(version, &["get", "deployment", "web"])
        .failure()
        .stderr_has(r#"deployments.apps "web" not found"#);

    let out = s.kv(version, &["create", "namespace", "smoke"]).success();
    assert_eq!(out.stdout.trim(), "namespace/smoke created");
    let out = s.kv(version, &["get", "namespace", "smoke"]).success();
    assert_eq!(row(&out.stdout, "smoke")[1], "Active");
    s.kv(version, &["delete", "namespace", "smoke", "--wait=false"])
        .success()
        .stdout_has(r#"namespace "smoke" deleted"#);
    // No namespace controller runs: upstream leaves it Terminating too.
    let out = s.kv(version, &["get", "namespace", "smoke"]).success();
    assert_eq!(row(&out.stdout, "smoke")[1], "Terminating");
}

#[test]
fn kubectl_1_27_applies_gets_deletes_and_creates_a_namespace() {
    smoke("1.27");
}

#[test]
fn kubectl_1_33_applies_gets_deletes_and_creates_a_namespace() {
    smoke("1.33");
}

#[test]
fn kubectl_1_32_lists_claims_volumes_and_controller_revisions_with_upstream_columns() {
    let s = ApiServer::start();
    s.apply(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data-web-0}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv1}
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadOnlyMany, ReadWriteOnce]
  hostPath: {path: /tmp/pv1}
  claimRef: {namespace: default, name: data-web-0}
---
apiVersion: apps/v1
kind: ControllerRevision
metadata:
  name: web-7b9c
  ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: web, uid: "u-1", controller: true}]
revision: 3
data: {spec: {template: {}}}
"#,
    );
    let pvc = s.ok(&["get", "pvc", "-o", "wide"]);
    assert_eq!(
        header(&pvc),
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE",
            "VOLUMEMODE"
        ]
    );
    let claim = row(&pvc, "data-web-0");
    assert_eq!(claim[1], "Pending");
    assert_eq!(claim[2], "<unset>");
    assert_eq!(claim[4], "Filesystem");

    let pv = s.ok(&["get", "pv"]);
    let volume = row(&pv, "pv1");
    assert_eq!(
        volume[1..6],
        ["5Gi", "RWO,ROX", "Retain", "Pending", "default/data-web-0"]
    );

    let revisions = s.ok(&["get", "controllerrevisions"]);
    assert_eq!(
        header(&revisions),
        ["NAME", "CONTROLLER", "REVISION", "AGE"]
    );
    assert_eq!(
        row(&revisions, "web-7b9c")[1..3],
        ["statefulset.apps/web", "3"]
    );
}
