//! End-to-end harness: start the real `tug-apiserver` binary on a free port
//! with a fresh data dir, and drive it with the real `kubectl`.
//!
//! The binaries are found in the workspace target dir (`cargo build
//! --workspace --bins` first; the README's test command does that), or where
//! `TUG_BIN_DIR` points.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where kubectl versions are installed on this project's machines.
pub const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// The directory holding our built binaries.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TUG_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest.join("..").join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target.join(profile)
}

/// The path of one of our binaries; panics with a hint when it is missing.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `tug-apiserver`, killed when dropped.
pub struct ApiServer {
    pub child: Child,
    pub port: u16,
    pub data_dir: PathBuf,
    pub kubeconfig: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl ApiServer {
    /// Start on a fresh temporary data dir and wait until it is ready.
    pub fn start() -> ApiServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        // Port 0: the server binds a free port itself and writes it into
        // its admin kubeconfig. A port picked here and passed on could be
        // taken before the server binds it (outgoing connections draw
        // their local ports from the same range).
        let mut server = Self::start_in(&data_dir, 0, &[]);
        server._dir = Some(dir);
        server
    }

    /// Start on a given data dir and port (restarts reuse both; port 0
    /// lets the server pick one, read back from its kubeconfig).
    pub fn start_in(data_dir: &Path, port: u16, extra_args: &[&str]) -> ApiServer {
        let log = std::fs::File::create(data_dir.with_extension("log"))
            .or_else(|_| {
                std::fs::create_dir_all(data_dir.parent().unwrap_or(Path::new("/tmp")))?;
                std::fs::File::create(data_dir.with_extension("log"))
            })
            .expect("log file");
        let child = Command::new(binary("tug-apiserver"))
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &port.to_string(),
            ])
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tug-apiserver");
        let mut server = ApiServer {
            child,
            port,
            data_dir: data_dir.to_path_buf(),
            kubeconfig: data_dir.join("admin.kubeconfig"),
            _dir: None,
        };
        server.wait_ready(Duration::from_secs(30));
        if port == 0 {
            server.port = server.kubeconfig_port();
        }
        server
    }

    /// The port of the `server:` URL in the admin kubeconfig.
    fn kubeconfig_port(&self) -> u16 {
        let config = std::fs::read_to_string(&self.kubeconfig).expect("admin kubeconfig");
        config
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: https://"))
            .and_then(|hostport| hostport.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("no server port in the admin kubeconfig:\n{config}"))
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Wait until `/readyz` answers; panics with the server's log if it
    /// does not in time or exits first.
    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut exited = None;
        while Instant::now() < deadline && exited.is_none() {
            if self.kubeconfig.exists() {
                let out = self.kubectl("1.32", &["get", "--raw", "/readyz"]);
                if out.status.success() {
                    return;
                }
            }
            exited = self.child.try_wait().ok().flatten();
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "tug-apiserver did not become ready (exited: {exited:?}); log:\n{}",
            std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
        );
    }

    /// Run `kubectl.<version>` with this server's kubeconfig.
    pub fn kubectl(&self, version: &str, args: &[&str]) -> Output {
        self.kubectl_cmd(version, args)
            .output()
            .expect("run kubectl")
    }

    /// A `kubectl` command ready to run (for stdin, env or spawn).
    pub fn kubectl_cmd(&self, version: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(format!("{KUBECTL_DIR}/kubectl.{version}"));
        cmd.stdin(Stdio::null())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.data_dir.parent().unwrap_or(Path::new("/tmp")))
            .args(args);
        cmd
    }

    /// Run kubectl and return stdout, panicking with stderr on failure.
    pub fn kubectl_ok(&self, version: &str, args: &[&str]) -> String {
        let out = self.kubectl(version, args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kill the server the hard way (SIGKILL), as a crash would.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ApiServer {
    /// Run kubectl with `stdin` as its standard input (`apply -f -` and the
    /// like); returns stdout, panicking with stderr on failure.
    pub fn kubectl_stdin(&self, version: &str, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(version, args)
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
            .expect("write stdin");
        let out = child.wait_with_output().expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {} failed: {}\n{stdin}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Poll `kubectl <args>` every 200 ms until `done(stdout)` holds;
    /// panics after `timeout` with the last output and `what`.
    pub fn kubectl_until(
        &self,
        version: &str,
        args: &[&str],
        timeout: Duration,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.kubectl(version, args);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && done(&stdout) {
                return stdout;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; kubectl {} printed:\n{stdout}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One of our component binaries running against an [`ApiServer`]
/// (`--kubeconfig` is passed), logging to a file beside the data dir;
/// killed when dropped.
pub struct Component {
    pub child: Child,
    pub log: PathBuf,
}

impl Component {
    /// Start `name` (e.g. `tug-controller-manager`) with `args`.
    pub fn start(server: &ApiServer, name: &str, args: &[&str]) -> Component {
        let log = server
            .data_dir
            .with_extension(format!("{name}-{}.log", free_port()));
        let file = std::fs::File::create(&log).expect("component log file");
        let child = Command::new(binary(name))
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            // tracing's fmt subscriber logs to stdout; errors go to stderr.
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Component { child, log }
    }

    /// A process-runtime `tug-kubelet` for node `node`, its root directory
    /// beside the server's data and its HTTPS API on a free port: returns
    /// the kubelet, its root directory and that port.
    pub fn process_kubelet(server: &ApiServer, node: &str) -> (Component, PathBuf, String) {
        let root = server.data_dir.with_extension("kubelet-root");
        let port = free_port().to_string();
        let root_arg = root.to_str().expect("a UTF-8 temporary path");
        let kubelet = Component::start(
            server,
            "tug-kubelet",
            &[
                "--node-name",
                node,
                "--runtime",
                "process",
                "--root-dir",
                root_arg,
                "--port",
                &port,
                "--healthz-port",
                "0",
            ],
        );
        (kubelet, root, port)
    }

    /// What the component has logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send a signal by name (`STOP`, `CONT`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
