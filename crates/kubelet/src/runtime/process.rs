//! The `process` runtime: containers are host processes. It needs no
//! container engine, which makes it Tugboat's zero-setup default.
//!
//! - A pod sandbox is a directory `<root>/pods/<uid>/`; pods share the host
//!   network, so the pod IP is the node IP.
//! - Images are not pulled: the name is recorded and every image counts as
//!   present. With no image there is no entrypoint, so a container without
//!   `command` fails `CreateContainer`.
//! - A container runs `command` + `args` with its env and `workingDir`
//!   (default: its own directory in the pod directory), in a process group
//!   of its own.
//! - Each container is started through a *shim* (`tug-kubelet
//!   process-shim <dir>`, like containerd's shim): a detached process (a new
//!   session, via `setsid --fork` where available) that starts the
//!   container, writes its stdout/stderr to the log file in the CRI format
//!   (`<RFC3339Nano> stdout|stderr F|P <line>`), waits for it and records
//!   its exit code. So containers outlive the kubelet, and an exit that
//!   happens while no kubelet runs is still known afterwards.
//! - Everything the runtime knows lives in files under `<root>`:
//!   `sandboxes/<id>.json`, and per container `containers/<id>/` with
//!   `config.json` (written at create), `pid.json` (the shim, once the
//!   process runs) and `exit.json` (the shim, once it ended). A new runtime
//!   on the same root (a restarted kubelet) reads them back and re-adopts
//!   running processes if `/proc/<pid>/stat` shows the same process (same
//!   start time), keeping their container IDs ([`decide`]).
//! - Stopping sends SIGTERM to the process group, SIGKILL after the
//!   timeout (the `kill` binary: the workspace forbids `unsafe`, and there
//!   is no signal crate in it). A process killed by a signal exits with
//!   128 + the signal: 143 for SIGTERM, 137 for SIGKILL.
//! - `exec_sync` runs a command with the container's env and working
//!   directory, in a process group of its own that a timeout kills;
//!   `exec_stream` (`kubectl exec`) does the same with live pipes, or a
//!   pseudo-terminal for `-t` ([`super::streaming::spawn_local`]);
//!   `attach_stream` follows the container's log, and for a container
//!   created with `stdin: true` writes the attacher's input to the FIFO
//!   `containers/<id>/stdin`. The shim reads that FIFO one attach session
//!   at a time into a pipe it holds open to the process's stdin, so the
//!   process sees no EOF when an attacher leaves — unless `stdinOnce`,
//!   where the end of the first session closes the process's stdin
//!   ([`feed_stdin`]). The FIFO and the shim outlive the kubelet, so a
//!   restarted kubelet attaches as before.
//! - Limits use cgroup v2 where the host has a writable hierarchy: each
//!   container gets `tugboat.slice/pod-<uid>/<id>` with `cpu.max` and
//!   `memory.max` from the container config's annotations
//!   [`ANNOTATION_LIMIT_CPU`] and [`ANNOTATION_LIMIT_MEMORY`] (quantities,
//!   as in the pod spec), and the shim enters it before starting the
//!   process. Without cgroup v2, containers run unconfined and
//!   [`ContainerRuntime::status`] says so with a
//!   `ResourceLimitsEnforced=false` condition ([`limits_condition`]).
//! - Mounts cannot be bind mounts (the processes share the host's mount
//!   namespace): each is a symlink inside the container's directory, its
//!   default working directory, at the mount path without its leading
//!   `/` ([`link_mounts`]). A container with volume `config` mounted at
//!   `/etc/config` reads `etc/config/key` (relative), or the absolute
//!   host path. `readOnly` is not enforced.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

use super::fake::{exit_reason, fake_digest, normalize_image};
use super::{
    Container, ContainerConfig, ContainerEvent, ContainerEventType, ContainerFilter,
    ContainerMetadata, ContainerRuntime, ContainerState, ContainerStatus, ExecSyncResult, Image,
    ImageSpec, PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata,
    PodSandboxStatus, Result, RuntimeCondition, RuntimeError, RuntimeStatus, SandboxState,
    VersionInfo, NETWORK_READY, RUNTIME_READY,
};

/// The runtime name: container IDs read `process://<id>`.
pub const RUNTIME_NAME: &str = "process";
pub const RUNTIME_VERSION: &str = "0.1";
/// The default `--root-dir`.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/tugboat-kubelet";
/// The hidden subcommand of `tug-kubelet` (and the argument of
/// `tug-shim`) that runs a shim.
pub const SHIM_SUBCOMMAND: &str = "process-shim";
/// The dedicated shim binary, preferred when it sits next to the kubelet.
pub const SHIM_BINARY: &str = "tug-shim";
/// The runtime condition telling whether cpu/memory limits are enforced.
pub const LIMITS_ENFORCED: &str = "ResourceLimitsEnforced";
/// The container config annotation with the cpu limit (`500m`).
pub const ANNOTATION_LIMIT_CPU: &str = "tugboat.dev/limits.cpu";
/// The container config annotation with the memory limit (`128Mi`).
pub const ANNOTATION_LIMIT_MEMORY: &str = "tugboat.dev/limits.memory";
/// The cgroup under which containers go, when the host allows it.
pub const CGROUP_SLICE: &str = "/sys/fs/cgroup/tugboat.slice";
/// The CFS period `cpu.max` quotas are given in (upstream's default).
const CPU_PERIOD_US: i128 = 100_000;
/// containerd's `PATH` for containers whose image sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// CRI's maximum log line: longer lines are split into `P` parts.
pub const MAX_LOG_LINE: usize = 16 * 1024;
/// How long a shim may take to report the process started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a SIGKILLed process may take to be reported gone.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often running containers are checked for an exit.
const POLL: Duration = Duration::from_millis(100);

fn failed(what: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Failed(what.to_string())
}

// ---------------------------------------------------------------------
// Pure pieces: log lines, /proc parsing, exit reasons, re-adoption.
// ---------------------------------------------------------------------

/// One log line (without its newline) as CRI log lines: parts of at most
/// [`MAX_LOG_LINE`] bytes, all tagged `P` (partial) but the last, `F`.
pub fn cri_log_lines(at: Timestamp, stream: &str, line: &[u8]) -> Vec<u8> {
    // Go's RFC3339Nano, which jiff's Display matches: UTC, `Z`, trailing
    // zeros of the fraction dropped.
    let ts = at.to_string();
    let mut out = Vec::with_capacity(line.len() + 48);
    let mut chunks: Vec<&[u8]> = line.chunks(MAX_LOG_LINE).collect();
    if chunks.is_empty() {
        chunks.push(b"");
    }
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let tag = if i == last { "F" } else { "P" };
        out.extend_from_slice(format!("{ts} {stream} {tag} ").as_bytes());
        out.extend_from_slice(chunk);
        out.push(b'\n');
    }
    out
}

/// What `/proc/<pid>/stat` says: the start time (field 22, clock ticks
/// after boot) of a live process; `None` for a zombie or garbage. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted from its last `)`.
pub fn parse_proc_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `state` is field 3; the start time is field 22.
    fields.nth(18)?.parse().ok()
}

/// The start time of process `pid` if it is alive.
pub fn proc_start_time(pid: u32) -> Option<u64> {
    parse_proc_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The exit code of a process: its own, or 128 + the signal that ended it.
pub fn exit_code_of(code: Option<i32>, signal: Option<i32>) -> i32 {
    match (code, signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 255,
    }
}

/// How a container ended, from the shim's `exit.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: i32,
    pub finished_at: Timestamp,
    /// Overrides the reason from the code (`StartError`).
    pub reason: Option<String>,
    pub message: String,
}

impl ExitInfo {
    /// containerd's reason: `Completed` for 0, `Error` otherwise, unless
    /// the process never started.
    pub fn reason(&self) -> String {
        self.reason
            .clone()
            .unwrap_or_else(|| exit_reason(self.code).to_string())
    }
}

/// A started container process, from the shim's `pid.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub pid: u32,
    /// `/proc/<pid>/stat` start time: tells the process from a later one
    /// that got the same pid.
    pub start_time: u64,
    pub shim_pid: u32,
    pub shim_start_time: u64,
    pub started_at: Timestamp,
}

/// What a container's files and `/proc` say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Created,
    Running,
    Exited(ExitInfo),
}

/// Decides a container's state: an exit record wins; a started process
/// still alive (same start time) runs; a dead one whose shim still lives
/// is about to get its exit record, so it still counts as running; with
/// both gone and no record, the exit code is unknown (containerd reports
/// 255 for a task whose shim vanished).
pub fn decide(
    started: Option<&Started>,
    exit: Option<&ExitInfo>,
    process_alive: bool,
    shim_alive: bool,
    now: Timestamp,
) -> Observed {
    if let Some(exit) = exit {
        return Observed::Exited(exit.clone());
    }
    match started {
        None => Observed::Created,
        Some(_) if process_alive || shim_alive => Observed::Running,
        Some(_) => Observed::Exited(ExitInfo {
            code: 255,
            finished_at: now,
            reason: Some("Unknown".into()),
            message: "the process and its shim ended without recording an exit code".into(),
        }),
    }
}

/// The condition [`ContainerRuntime::status`] reports about limits, given
/// the cgroup containers go under, if any.
pub fn limits_condition(cgroup_root: Option<&Path>) -> RuntimeCondition {
    match cgroup_root {
        Some(root) => RuntimeCondition {
            kind: LIMITS_ENFORCED.into(),
            status: true,
            reason: String::new(),
            message: format!(
                "cpu and memory limits are enforced with cgroup v2 under {}",
                root.display()
            ),
        },
        None => RuntimeCondition {
            kind: LIMITS_ENFORCED.into(),
            status: false,
            reason: "CgroupV2Unavailable".into(),
            message: "/sys/fs/cgroup is not a writable cgroup v2 hierarchy: cpu and memory limits are not enforced".into(),
        },
    }
}

/// [`CGROUP_SLICE`] if this host has a writable cgroup v2 hierarchy
/// (creating it, and delegating the cpu and memory controllers to it).
pub fn detect_cgroup_root() -> Option<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("cgroup.controllers").exists() {
        return None;
    }
    let slice = PathBuf::from(CGROUP_SLICE);
    std::fs::create_dir_all(&slice).ok()?;
    // Best effort: systemd usually delegates these already.
    let _ = std::fs::write(root.join("cgroup.subtree_control"), "+cpu +memory");
    Some(slice)
}

/// The cgroup v2 files (`cpu.max`, `memory.max`) and values for the limits
/// a container config's annotations give: `500m` cpu is a quota of 50000
/// µs per 100000 µs period, memory is in bytes.
pub fn cgroup_limits(
    annotations: &BTreeMap<String, String>,
) -> std::result::Result<Vec<(&'static str, String)>, String> {
    let mut files = Vec::new();
    if let Some(cpu) = annotations.get(ANNOTATION_LIMIT_CPU) {
        let milli = crate::admission::parse_quantity_milli(cpu)
            .filter(|m| *m > 0)
            .ok_or_else(|| format!("cpu limit {cpu:?} is not a positive quantity"))?;
        // The kernel refuses quotas under 1 ms.
        let quota = (milli * CPU_PERIOD_US / 1000).max(1000);
        files.push(("cpu.max", format!("{quota} {CPU_PERIOD_US}")));
    }
    if let Some(memory) = annotations.get(ANNOTATION_LIMIT_MEMORY) {
        let bytes = crate::admission::parse_quantity_milli(memory)
            .map(|m| (m + 999) / 1000)
            .filter(|b| *b > 0)
            .ok_or_else(|| format!("memory limit {memory:?} is not a positive quantity"))?;
        files.push(("memory.max", bytes.to_string()));
    }
    Ok(files)
}

/// A path the runtime builds from a name it was given must stay inside
/// its directory.
fn safe_relative(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Links each mount into `container_dir` at its container path (made
/// relative), replacing a link left by an earlier attempt: what stands in
/// for bind mounts when containers are host processes.
pub fn link_mounts(
    container_dir: &Path,
    mounts: &[super::Mount],
) -> std::result::Result<(), String> {
    for m in mounts {
        let relative = m.container_path.trim_start_matches('/');
        if !safe_relative(relative) {
            return Err(format!(
                "mount path {:?} cannot be linked into the container directory",
                m.container_path
            ));
        }
        let link = container_dir.join(relative);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        if std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(&link);
        }
        std::os::unix::fs::symlink(&m.host_path, &link).map_err(|e| {
            format!(
                "linking {} to {}: {e}",
                link.display(),
                m.host_path.display()
            )
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------
// JSON files.
// ---------------------------------------------------------------------

/// Writes `value` to `path` atomically (a temporary file renamed over it),
/// so a reader never sees half a file.
fn write_json(path: &Path, value: &Value) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)?;
    std::fs::rename(&tmp, path)
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn map_of(v: &Value, key: &str) -> BTreeMap<String, String> {
    v.get(key)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn strings_of(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn time_of(v: &Value, key: &str) -> Option<Timestamp> {
    v.get(key)?.as_str()?.parse().ok()
}

fn u64_of(v: &Value, key: &str) -> Option<u64> {
    v.get(key)?.as_u64()
}

fn exit_from_json(v: &Value) -> Option<ExitInfo> {
    Some(ExitInfo {
        code: i32::try_from(v.get("exitCode")?.as_i64()?).ok()?,
        finished_at: time_of(v, "finishedAt")?,
        reason: v.get("reason").and_then(Value::as_str).map(String::from),
        message: str_of(v, "message"),
    })
}

fn started_from_json(v: &Value) -> Option<Started> {
    Some(Started {
        pid: u32::try_from(u64_of(v, "pid")?).ok()?,
        start_time: u64_of(v, "startTime")?,
        shim_pid: u32::try_from(u64_of(v, "shimPid")?).ok()?,
        shim_start_time: u64_of(v, "shimStartTime")?,
        started_at: time_of(v, "startedAt")?,
    })
}

/// Opens a container's stdin FIFO for an attach session. Between two
/// sessions the shim reopens its end, so a missing reader is waited for a
/// little; one that stays missing means the stdin is closed (`stdinOnce`
/// used up, or the shim gone).
async fn open_stdin(fifo: &Path) -> std::io::Result<tokio::net::unix::pipe::Sender> {
    let mut tries = 0;
    loop {
        match tokio::net::unix::pipe::OpenOptions::new().open_sender(fifo) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {
                tries += 1;
                if tries >= 40 {
                    return Err(std::io::Error::other(
                        "the container's stdin is closed (stdinOnce, or its shim ended)",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

// ---------------------------------------------------------------------
// The shim.
// ---------------------------------------------------------------------

/// The FIFO in a container's directory that feeds its stdin.
const STDIN_FIFO: &str = "stdin";

/// The shim's stdin feeder: each attach session opens [`STDIN_FIFO`] for
/// writing; what it writes goes to the process. The shim holding `input`
/// (the pipe to the process) across sessions is what keeps the process
/// from seeing EOF between attachers; with `once`, the first session's end
/// closes it, as `stdinOnce` says.
fn feed_stdin(fifo: &Path, mut input: impl Write, once: bool) {
    loop {
        // Blocks until an attacher opens the FIFO; reads end (EOF) when
        // every writer of the session has closed it.
        let Ok(mut session) = std::fs::File::open(fifo) else {
            return;
        };
        if std::io::copy(&mut session, &mut input).is_err() {
            // The process closed its stdin or ended.
            return;
        }
        if once {
            return;
        }
    }
}

fn write_exit(dir: &Path, code: i32, reason: Option<&str>, message: &str) {
    let value = json!({
        "exitCode": code,
        "finishedAt": Timestamp::now().to_string(),
        "reason": reason,
        "message": message,
    });
    if let Err(e) = write_json(&dir.join("exit.json"), &value) {
        eprintln!("process-shim: writing the exit record: {e}");
    }
    tell_kubelet();
}

/// Tells the kubelet waiting on the shim's stdout that the container's
/// start is recorded (`pid.json` or `exit.json`), then points stdout at
/// /dev/null so the pipe closes. Repeated calls are harmless.
fn tell_kubelet() {
    let mut out = std::io::stdout();
    let _ = out.write_all(b"started\n").and_then(|_| out.flush());
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
}

/// Copies one stream of the container to the log file, line by line.
fn pump(stream: impl Read, name: &'static str, log: Arc<Mutex<std::fs::File>>) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                let out = cri_log_lines(Timestamp::now(), name, &line);
                let mut file = log.lock().unwrap_or_else(|e| e.into_inner());
                if file.write_all(&out).is_err() {
                    return;
                }
            }
        }
    }
}

/// The shim's body (`tug-kubelet process-shim <container dir>`): starts the
/// container described by `<dir>/spec.json`, records `pid.json`, logs its
/// output, waits for it and records `exit.json`. Returns the shim's exit
/// code.
pub fn shim_main(dir: &Path) -> i32 {
    let Some(spec) = read_json(&dir.join("spec.json")) else {
        write_exit(
            dir,
            128,
            Some("StartError"),
            "the container spec is unreadable",
        );
        return 1;
    };
    let argv = strings_of(&spec, "argv");
    let Some((program, args)) = argv.split_first() else {
        write_exit(dir, 128, Some("StartError"), "no command to run");
        return 1;
    };
    let log_path = PathBuf::from(str_of(&spec, "logPath"));
    if let Some(parent) = log_path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
    {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            let message = format!("opening the log file {}: {e}", log_path.display());
            write_exit(dir, 128, Some("StartError"), &message);
            return 1;
        }
    };
    if let Some(cgroup) = spec.get("cgroup").and_then(Value::as_str) {
        // The container inherits the shim's cgroup.
        if let Err(e) = std::fs::write(
            Path::new(cgroup).join("cgroup.procs"),
            std::process::id().to_string(),
        ) {
            eprintln!("process-shim: entering cgroup {cgroup}: {e}; running unconfined");
        }
    }
    let flag = |key: &str| spec.get(key).and_then(Value::as_bool) == Some(true);
    let (with_stdin, stdin_once) = (flag("stdin"), flag("stdinOnce"));
    let fifo = dir.join(STDIN_FIFO);
    if with_stdin {
        match rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        ) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                let message = format!("creating the stdin FIFO {}: {e}", fifo.display());
                write_exit(dir, 128, Some("StartError"), &message);
                return 1;
            }
        }
    }
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .current_dir(str_of(&spec, "cwd"))
        .stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a stop signals everything it started
        // but not the shim, which must live on to record the exit.
        .process_group(0);
    if let Some(env) = spec.get("env").and_then(Value::as_array) {
        for pair in env {
            if let (Some(k), Some(v)) = (
                pair.get(0).and_then(Value::as_str),
                pair.get(1).and_then(Value::as_str),
            ) {
                command.env(k, v);
            }
        }
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let message = format!("failed to start {program:?}: {e}");
            write_exit(dir, 128, Some("StartError"), &message);
            return 1;
        }
    };
    let pid = child.id();
    let me = std::process::id();
    let started = json!({
        "pid": pid,
        "startTime": proc_start_time(pid).unwrap_or(0),
        "shimPid": me,
        "shimStartTime": proc_start_time(me).unwrap_or(0),
        "startedAt": Timestamp::now().to_string(),
    });
    if let Err(e) = write_json(&dir.join("pid.json"), &started) {
        eprintln!("process-shim: writing the pid record: {e}");
    }
    if let Some(input) = child.stdin.take() {
        std::thread::spawn(move || feed_stdin(&fifo, input, stdin_once));
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut pumps = 0;
    if let Some(out) = child.stdout.take() {
        let (log, done) = (log.clone(), done_tx.clone());
        std::thread::spawn(move || {
            pump(out, "stdout", log);
            let _ = done.send(());
        });
        pumps += 1;
    }
    if let Some(err) = child.stderr.take() {
        let (log, done) = (log.clone(), done_tx.clone());
        std::thread::spawn(move || {
            pump(err, "stderr", log);
            let _ = done.send(());
        });
        pumps += 1;
    }
    // Only now is the container fully wired (its stdin feeder waiting for
    // an attacher, its output pumped): an attach right after the kubelet
    // reports it started finds it so.
    tell_kubelet();
    let status = child.wait();
    // The pipes close when the last holder exits; a background process the
    // container left behind may hold them, so do not wait long for it.
    for _ in 0..pumps {
        if done_rx.recv_timeout(Duration::from_secs(1)).is_err() {
            break;
        }
    }
    match status {
        Ok(status) => write_exit(dir, exit_code_of(status.code(), status.signal()), None, ""),
        Err(e) => write_exit(dir, 255, Some("Unknown"), &format!("waiting: {e}")),
    }
    0
}

// ---------------------------------------------------------------------
// The runtime.
// ---------------------------------------------------------------------

/// How a [`ProcessRuntime`] is set up.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// Where sandboxes, containers, state and (by default) logs live.
    pub root_dir: PathBuf,
    /// The node IP: every pod's IP, since pods share the host network.
    pub node_ip: String,
    /// The program run as `<shim> process-shim <dir>`: `tug-shim` (a small
    /// binary, quick to start) next to this program when there is one,
    /// else this program, which must handle `process-shim` itself.
    pub shim: PathBuf,
    /// Write logs under the sandbox's `log_directory` (`/var/log/pods/…`),
    /// as upstream does, when it can be created; otherwise (and when
    /// false) under `<root>/pods/<uid>/`.
    pub use_log_directory: bool,
    /// The cgroup v2 directory containers go under; `None`: unconfined.
    pub cgroup_root: Option<PathBuf>,
}

impl ProcessOptions {
    /// Options for a kubelet on `node_ip` with root `root_dir`, whose shim
    /// is this very program.
    pub fn new(root_dir: impl Into<PathBuf>, node_ip: impl Into<String>) -> Self {
        ProcessOptions {
            root_dir: root_dir.into(),
            node_ip: node_ip.into(),
            shim: default_shim(),
            use_log_directory: false,
            cgroup_root: detect_cgroup_root(),
        }
    }
}

/// `tug-shim` beside the running program, else the program itself.
fn default_shim() -> PathBuf {
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("tug-kubelet"));
    match me.parent().map(|d| d.join(SHIM_BINARY)) {
        Some(shim) if shim.is_file() => shim,
        _ => me,
    }
}

struct SandboxRecord {
    metadata: PodSandboxMetadata,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    log_directory: String,
    state: SandboxState,
    created_at: Timestamp,
}

impl SandboxRecord {
    fn to_json(&self, id: &str) -> Value {
        json!({
            "id": id,
            "name": self.metadata.name,
            "namespace": self.metadata.namespace,
            "uid": self.metadata.uid,
            "attempt": self.metadata.attempt,
            "labels": self.labels,
            "annotations": self.annotations,
            "logDirectory": self.log_directory,
            "ready": self.state == SandboxState::Ready,
            "createdAt": self.created_at.to_string(),
        })
    }

    fn from_json(v: &Value) -> Option<(String, SandboxRecord)> {
        Some((
            v.get("id")?.as_str()?.to_string(),
            SandboxRecord {
                metadata: PodSandboxMetadata {
                    name: str_of(v, "name"),
                    namespace: str_of(v, "namespace"),
                    uid: str_of(v, "uid"),
                    attempt: u32::try_from(u64_of(v, "attempt")?).ok()?,
                },
                labels: map_of(v, "labels"),
                annotations: map_of(v, "annotations"),
                log_directory: str_of(v, "logDirectory"),
                state: if v.get("ready")?.as_bool()? {
                    SandboxState::Ready
                } else {
                    SandboxState::NotReady
                },
                created_at: time_of(v, "createdAt")?,
            },
        ))
    }
}

struct ContainerRecord {
    sandbox_id: String,
    metadata: ContainerMetadata,
    image: ImageSpec,
    image_ref: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    log_path: PathBuf,
    /// Its cgroup, if it has one.
    cgroup: Option<PathBuf>,
    created_at: Timestamp,
    started: Option<Started>,
    exit: Option<ExitInfo>,
}

impl ContainerRecord {
    fn state(&self) -> ContainerState {
        match (&self.started, &self.exit) {
            (_, Some(_)) => ContainerState::Exited,
            (Some(_), None) => ContainerState::Running,
            (None, None) => ContainerState::Created,
        }
    }

    /// The shim's spec: what to run.
    fn spec_json(&self) -> Value {
        json!({
            "argv": self.argv,
            "env": self.env.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "cwd": self.cwd,
            "logPath": self.log_path,
            "cgroup": self.cgroup,
            "stdin": self.annotation_set(super::cri::ANNOTATION_STDIN),
            "stdinOnce": self.annotation_set(super::cri::ANNOTATION_STDIN_ONCE),
        })
    }

    /// Whether the worker set one of the `true` flag annotations.
    fn annotation_set(&self, key: &str) -> bool {
        self.annotations.get(key).is_some_and(|v| v == "true")
    }

    fn to_json(&self, id: &str) -> Value {
        json!({
            "id": id,
            "sandboxId": self.sandbox_id,
            "name": self.metadata.name,
            "attempt": self.metadata.attempt,
            "image": self.image.image,
            "imageRef": self.image_ref,
            "labels": self.labels,
            "annotations": self.annotations,
            "argv": self.argv,
            "env": self.env.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "cwd": self.cwd,
            "logPath": self.log_path,
            "cgroup": self.cgroup,
            "createdAt": self.created_at.to_string(),
        })
    }

    fn from_json(v: &Value) -> Option<(String, ContainerRecord)> {
        let env = v
            .get("env")?
            .as_array()?
            .iter()
            .filter_map(|p| {
                Some((
                    p.get(0)?.as_str()?.to_string(),
                    p.get(1)?.as_str()?.to_string(),
                ))
            })
            .collect();
        Some((
            v.get("id")?.as_str()?.to_string(),
            ContainerRecord {
                sandbox_id: str_of(v, "sandboxId"),
                metadata: ContainerMetadata {
                    name: str_of(v, "name"),
                    attempt: u32::try_from(u64_of(v, "attempt")?).ok()?,
                },
                image: ImageSpec {
                    image: str_of(v, "image"),
                },
                image_ref: str_of(v, "imageRef"),
                labels: map_of(v, "labels"),
                annotations: map_of(v, "annotations"),
                argv: strings_of(v, "argv"),
                env,
                cwd: PathBuf::from(str_of(v, "cwd")),
                log_path: PathBuf::from(str_of(v, "logPath")),
                cgroup: v.get("cgroup").and_then(Value::as_str).map(PathBuf::from),
                created_at: time_of(v, "createdAt")?,
                started: None,
                exit: None,
            },
        ))
    }
}

#[derive(Default)]
struct State {
    sandboxes: HashMap<String, SandboxRecord>,
    containers: HashMap<String, ContainerRecord>,
}

struct Inner {
    options: ProcessOptions,
    state: Mutex<State>,
    events: broadcast::Sender<ContainerEvent>,
    next_id: AtomicU64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sandboxes_dir(&self) -> PathBuf {
        self.options.root_dir.join("sandboxes")
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.options.root_dir.join("containers").join(id)
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.options.root_dir.join("pods").join(uid)
    }

    fn new_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut out = String::with_capacity(64);
        for part in 0u64..4 {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(n);
            h.write_u64(part);
            h.write_u32(std::process::id());
            h.write_i128(Timestamp::now().as_nanosecond());
            out.push_str(&format!("{:016x}", h.finish()));
        }
        out
    }

    fn emit(&self, id: &str, c: &ContainerRecord, kind: ContainerEventType) {
        let pod_uid = c
            .labels
            .get(super::LABEL_POD_UID)
            .cloned()
            .unwrap_or_default();
        let _ = self.events.send(ContainerEvent {
            container_id: id.to_string(),
            pod_sandbox_id: c.sandbox_id.clone(),
            pod_uid,
            kind,
        });
    }

    /// Reads a container's shim records and `/proc`, updating its state;
    /// emits `Started` and `Stopped` when it is newly seen so.
    fn refresh(&self, state: &mut State, id: &str) {
        let dir = self.container_dir(id);
        let Some(c) = state.containers.get_mut(id) else {
            return;
        };
        if c.exit.is_some() {
            return;
        }
        if c.started.is_none() {
            c.started = read_json(&dir.join("pid.json"))
                .as_ref()
                .and_then(started_from_json);
            if c.started.is_some() {
                self.emit(id, c, ContainerEventType::Started);
            }
        }
        let alive = |pid: u32, start: u64| proc_start_time(pid) == Some(start);
        let (process_alive, shim_alive) = c.started.as_ref().map_or((false, false), |s| {
            (
                alive(s.pid, s.start_time),
                alive(s.shim_pid, s.shim_start_time),
            )
        });
        // Read after looking at the processes: a shim writes the exit
        // record and then ends, so once it is seen gone its record is
        // there to read. Read before, a shim finishing in between looked
        // like one that vanished without a record (exit code 255; seen
        // once in a loaded test run).
        let exit = read_json(&dir.join("exit.json"))
            .as_ref()
            .and_then(exit_from_json);
        let observed = decide(
            c.started.as_ref(),
            exit.as_ref(),
            process_alive,
            shim_alive,
            Timestamp::now(),
        );
        if let Observed::Exited(info) = observed {
            if c.exit.is_none() {
                if exit.is_none() {
                    // Keep what was decided: the next look must agree.
                    write_exit_info(&dir, &info);
                }
                c.exit = Some(info);
                if c.started.is_some() {
                    self.emit(id, c, ContainerEventType::Stopped);
                }
            }
        }
    }

    fn refresh_running(&self) {
        let mut state = self.lock();
        let running: Vec<String> = state
            .containers
            .iter()
            .filter(|(_, c)| c.state() == ContainerState::Running)
            .map(|(id, _)| id.clone())
            .collect();
        for id in running {
            self.refresh(&mut state, &id);
        }
    }

    /// Loads everything a previous runtime left under the root.
    fn load(&self) {
        let mut state = self.lock();
        if let Ok(entries) = std::fs::read_dir(self.sandboxes_dir()) {
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "json") {
                    if let Some((id, s)) =
                        read_json(&path).as_ref().and_then(SandboxRecord::from_json)
                    {
                        state.sandboxes.insert(id, s);
                    }
                }
            }
        }
        let mut ids = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.options.root_dir.join("containers")) {
            for e in entries.flatten() {
                let config = read_json(&e.path().join("config.json"));
                match config.as_ref().and_then(ContainerRecord::from_json) {
                    Some((id, c)) => {
                        ids.push(id.clone());
                        state.containers.insert(id, c);
                    }
                    None => {
                        tracing::warn!(dir = %e.path().display(), "unreadable container record left alone")
                    }
                }
            }
        }
        for id in ids {
            self.refresh(&mut state, &id);
        }
        let running = state
            .containers
            .values()
            .filter(|c| c.state() == ContainerState::Running)
            .count();
        tracing::info!(
            root = %self.options.root_dir.display(),
            sandboxes = state.sandboxes.len(),
            containers = state.containers.len(),
            running,
            "process runtime state loaded"
        );
    }
}

/// Creates `<root>/pod-<uid>/<id>` with `limits` written into it; `None`
/// (and a warning: the container then runs unconfined) if the host refuses.
fn make_cgroup(
    root: &Path,
    uid: &str,
    id: &str,
    limits: &[(&'static str, String)],
) -> Option<PathBuf> {
    let pod = root.join(format!("pod-{uid}"));
    let cgroup = pod.join(id);
    let result = std::fs::create_dir_all(&cgroup).and_then(|_| {
        // Delegate the controllers down to the container's cgroup; best
        // effort, as a parent may have them already.
        for dir in [root, pod.as_path()] {
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory");
        }
        for (file, value) in limits {
            std::fs::write(cgroup.join(file), value)?;
        }
        Ok(())
    });
    match result {
        Ok(()) => Some(cgroup),
        Err(error) => {
            tracing::warn!(cgroup = %cgroup.display(), %error, "cannot set up the container's cgroup; it runs without limits");
            let _ = std::fs::remove_dir(&cgroup);
            None
        }
    }
}

fn write_exit_info(dir: &Path, info: &ExitInfo) {
    let value = json!({
        "exitCode": info.code,
        "finishedAt": info.finished_at.to_string(),
        "reason": info.reason,
        "message": info.message,
    });
    let _ = write_json(&dir.join("exit.json"), &value);
}

/// Sends `signal` (`TERM`, `KILL`) to process group `pgid`.
async fn signal_group(pgid: u32, signal: &str) {
    let result = tokio::process::Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(error) = result {
        tracing::warn!(pgid, signal, %error, "running kill failed");
    }
}

/// The runtime. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

impl ProcessRuntime {
    /// Opens (creating it if needed) the root directory, re-adopts what a
    /// previous runtime left there, and starts watching for exits. Must be
    /// called within a tokio runtime.
    pub fn open(options: ProcessOptions) -> Result<Self> {
        for dir in ["sandboxes", "containers", "pods"] {
            let path = options.root_dir.join(dir);
            std::fs::create_dir_all(&path)
                .map_err(|e| failed(format!("creating {}: {e}", path.display())))?;
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| failed("the process runtime needs a tokio runtime"))?;
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            options,
            state: Mutex::new(State::default()),
            events,
            next_id: AtomicU64::new(0),
        });
        inner.load();
        handle.spawn(watch_exits(Arc::downgrade(&inner)));
        Ok(ProcessRuntime { inner })
    }

    /// Where a container's log file is.
    pub fn log_path(&self, container_id: &str) -> Option<PathBuf> {
        self.inner
            .lock()
            .containers
            .get(container_id)
            .map(|c| c.log_path.clone())
    }

    /// The pid of a running container's main process.
    pub fn pid(&self, container_id: &str) -> Option<u32> {
        let state = self.inner.lock();
        let c = state.containers.get(container_id)?;
        (c.state() == ContainerState::Running).then(|| c.started.as_ref().map(|s| s.pid))?
    }

    /// Waits until the container is no longer running, up to `timeout`.
    async fn wait_exit(&self, id: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let mut state = self.inner.lock();
                self.inner.refresh(&mut state, id);
                match state.containers.get(id) {
                    Some(c) if c.state() == ContainerState::Running => {}
                    _ => return true,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The pid of a running container if it is still the process started.
    fn live_pid(&self, id: &str) -> Option<u32> {
        let state = self.inner.lock();
        let c = state.containers.get(id)?;
        let s = c.started.as_ref()?;
        (c.exit.is_none() && proc_start_time(s.pid) == Some(s.start_time)).then_some(s.pid)
    }

    async fn kill_now(&self, id: &str) -> Result<()> {
        if let Some(pid) = self.live_pid(id) {
            signal_group(pid, "KILL").await;
        }
        if self.wait_exit(id, KILL_TIMEOUT).await {
            Ok(())
        } else {
            Err(failed(format!("container {id} did not exit after SIGKILL")))
        }
    }

    /// Starts the shim for the container in `dir`. Its stdout is a pipe
    /// on which it says when the container has started (or failed to):
    /// the returned reader, so the caller waits without polling.
    fn spawn_shim(&self, dir: &Path) -> Result<tokio::process::ChildStdout> {
        let shim_log = std::fs::File::create(dir.join("shim.log"))
            .map_err(|e| failed(format!("creating the shim log: {e}")))?;
        let shim = &self.inner.options.shim;
        // A process group of its own: a Ctrl-C or a signal to the kubelet's
        // group does not reach it, and it lives on whatever happens to the
        // kubelet (a restarted kubelet re-adopts it). Spawned directly
        // (posix_spawn, no intermediate `setsid` process): starting
        // processes is most of a pod's start-up cost on this runtime.
        let mut child = tokio::process::Command::new(shim)
            .arg(SHIM_SUBCOMMAND)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| failed(format!("starting the shim {}: {e}", shim.display())))?;
        let ready = child
            .stdout
            .take()
            .ok_or_else(|| failed("the shim's stdout pipe is missing"))?;
        // Reap it when it ends (with its container), so no zombie is left.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(ready)
    }
}

/// Checks running containers for exits until the runtime is dropped.
async fn watch_exits(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(POLL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.refresh_running();
    }
}

fn image_ref(image: &str) -> String {
    let (repo, tag) = normalize_image(image);
    match tag.strip_prefix("sha256:") {
        Some(digest) => format!("{repo}@sha256:{digest}"),
        None => format!("{repo}@sha256:{}", fake_digest(&format!("{repo}:{tag}"))),
    }
}

#[async_trait]
impl ContainerRuntime for ProcessRuntime {
    async fn version(&self) -> Result<VersionInfo> {
        Ok(VersionInfo {
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: RUNTIME_VERSION.into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn status(&self) -> Result<RuntimeStatus> {
        let ready = |kind: &str| RuntimeCondition {
            kind: kind.into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        Ok(RuntimeStatus {
            conditions: vec![
                ready(RUNTIME_READY),
                // Pods use the host network: nothing to set up.
                ready(NETWORK_READY),
                limits_condition(self.inner.options.cgroup_root.as_deref()),
            ],
        })
    }

    async fn update_runtime_config(&self, _pod_cidr: &str) -> Result<()> {
        // Pods share the host network: the pod CIDR is not used.
        Ok(())
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let uid = &config.metadata.uid;
        if !safe_relative(uid) {
            return Err(failed(format!("pod UID {uid:?} cannot name a directory")));
        }
        let pod_dir = self.inner.pod_dir(uid);
        std::fs::create_dir_all(&pod_dir)
            .map_err(|e| failed(format!("creating {}: {e}", pod_dir.display())))?;
        let id = self.inner.new_id();
        let record = SandboxRecord {
            metadata: config.metadata.clone(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            log_directory: config.log_directory.clone(),
            state: SandboxState::Ready,
            created_at: Timestamp::now(),
        };
        let path = self.inner.sandboxes_dir().join(format!("{id}.json"));
        write_json(&path, &record.to_json(&id))
            .map_err(|e| failed(format!("writing {}: {e}", path.display())))?;
        self.inner.lock().sandboxes.insert(id.clone(), record);
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let running: Vec<String> = {
            let state = self.inner.lock();
            state
                .containers
                .iter()
                .filter(|(_, c)| c.sandbox_id == id && c.state() == ContainerState::Running)
                .map(|(cid, _)| cid.clone())
                .collect()
        };
        for cid in running {
            self.kill_now(&cid).await?;
        }
        let mut state = self.inner.lock();
        if let Some(s) = state.sandboxes.get_mut(id) {
            if s.state == SandboxState::Ready {
                s.state = SandboxState::NotReady;
                let path = self.inner.sandboxes_dir().join(format!("{id}.json"));
                write_json(&path, &s.to_json(id))
                    .map_err(|e| failed(format!("writing {}: {e}", path.display())))?;
            }
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.stop_pod_sandbox(id).await?;
        let containers: Vec<String> = {
            let state = self.inner.lock();
            state
                .containers
                .iter()
                .filter(|(_, c)| c.sandbox_id == id)
                .map(|(cid, _)| cid.clone())
                .collect()
        };
        for cid in containers {
            self.remove_container(&cid).await?;
        }
        let mut state = self.inner.lock();
        let Some(s) = state.sandboxes.remove(id) else {
            return Ok(());
        };
        let _ = std::fs::remove_file(self.inner.sandboxes_dir().join(format!("{id}.json")));
        let uid = s.metadata.uid;
        // The pod directory (logs, working directories) goes with the
        // pod's last sandbox.
        if !state.sandboxes.values().any(|o| o.metadata.uid == uid) {
            let _ = std::fs::remove_dir_all(self.inner.pod_dir(&uid));
            if self.inner.options.use_log_directory && !s.log_directory.is_empty() {
                let _ = std::fs::remove_dir_all(&s.log_directory);
            }
            if let Some(root) = &self.inner.options.cgroup_root {
                let _ = std::fs::remove_dir(root.join(format!("pod-{uid}")));
            }
        }
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        let state = self.inner.lock();
        let s = state
            .sandboxes
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("pod sandbox {id}")))?;
        Ok(PodSandboxStatus {
            id: id.to_string(),
            metadata: s.metadata.clone(),
            state: s.state,
            created_at: s.created_at,
            ip: Some(self.inner.options.node_ip.clone()),
            labels: s.labels.clone(),
            annotations: s.annotations.clone(),
        })
    }

    async fn list_pod_sandbox(&self, filter: &PodSandboxFilter) -> Result<Vec<PodSandbox>> {
        let state = self.inner.lock();
        Ok(state
            .sandboxes
            .iter()
            .filter(|(id, s)| filter.matches(id, s.state, &s.labels))
            .map(|(id, s)| PodSandbox {
                id: id.clone(),
                metadata: s.metadata.clone(),
                state: s.state,
                created_at: s.created_at,
                labels: s.labels.clone(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        pod_sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String> {
        let name = &config.metadata.name;
        let (uid, log_directory) = {
            let state = self.inner.lock();
            let s = state
                .sandboxes
                .get(pod_sandbox_id)
                .ok_or_else(|| RuntimeError::NotFound(format!("pod sandbox {pod_sandbox_id}")))?;
            if s.state != SandboxState::Ready {
                return Err(failed(format!("pod sandbox {pod_sandbox_id} is not ready")));
            }
            (s.metadata.uid.clone(), s.log_directory.clone())
        };
        if config.command.is_empty() {
            return Err(failed(format!(
                "container {name:?} has no command: the process runtime runs no images, so there is no image entrypoint to fall back to; set `command`"
            )));
        }
        if !safe_relative(name) {
            return Err(failed(format!(
                "container name {name:?} cannot name a directory"
            )));
        }
        let container_dir = self.inner.pod_dir(&uid).join(name);
        std::fs::create_dir_all(&container_dir)
            .map_err(|e| failed(format!("creating {}: {e}", container_dir.display())))?;
        link_mounts(&container_dir, &config.mounts)
            .map_err(|e| failed(format!("container {name:?}: {e}")))?;
        let cwd = if config.working_dir.is_empty() {
            container_dir.clone()
        } else {
            let dir = PathBuf::from(&config.working_dir);
            if !dir.is_dir() {
                return Err(failed(format!(
                    "working directory {} does not exist on the host",
                    dir.display()
                )));
            }
            dir
        };
        let relative = if config.log_path.is_empty() {
            format!("{name}/{}.log", config.metadata.attempt)
        } else {
            config.log_path.clone()
        };
        if !safe_relative(&relative) {
            return Err(failed(format!("log path {relative:?} must be relative")));
        }
        let log_path = match (self.inner.options.use_log_directory, log_directory.as_str()) {
            (true, dir) if !dir.is_empty() && std::fs::create_dir_all(dir).is_ok() => {
                PathBuf::from(dir).join(&relative)
            }
            _ => self.inner.pod_dir(&uid).join(&relative),
        };
        let mut env = vec![
            ("PATH".to_string(), DEFAULT_PATH.to_string()),
            ("HOSTNAME".to_string(), sandbox_config.hostname.clone()),
        ];
        for (k, v) in &config.envs {
            // A container's own value wins, as in an image's env.
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        let mut record = ContainerRecord {
            sandbox_id: pod_sandbox_id.to_string(),
            metadata: config.metadata.clone(),
            image: config.image.clone(),
            image_ref: image_ref(&config.image.image),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            argv: config
                .command
                .iter()
                .chain(config.args.iter())
                .cloned()
                .collect(),
            env,
            cwd,
            log_path,
            cgroup: None,
            created_at: Timestamp::now(),
            started: None,
            exit: None,
        };
        let limits = cgroup_limits(&config.annotations)
            .map_err(|e| failed(format!("container {name:?}: {e}")))?;
        let id = self.inner.new_id();
        record.cgroup = self
            .inner
            .options
            .cgroup_root
            .as_ref()
            .and_then(|root| make_cgroup(root, &uid, &id, &limits));
        let dir = self.inner.container_dir(&id);
        std::fs::create_dir_all(&dir)
            .and_then(|_| write_json(&dir.join("spec.json"), &record.spec_json()))
            .and_then(|_| write_json(&dir.join("config.json"), &record.to_json(&id)))
            .map_err(|e| failed(format!("writing {}: {e}", dir.display())))?;
        let mut state = self.inner.lock();
        self.inner.emit(&id, &record, ContainerEventType::Created);
        state.containers.insert(id.clone(), record);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        {
            let state = self.inner.lock();
            let c = state
                .containers
                .get(id)
                .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
            if c.state() != ContainerState::Created {
                return Err(failed(format!("container {id} is not in created state")));
            }
        }
        let dir = self.inner.container_dir(id);
        let mut ready = self.spawn_shim(&dir)?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        // The shim writes a line once `pid.json` or `exit.json` is there
        // (or closes the pipe by dying); the loop below then reads the
        // record, polling only as a fallback.
        let mut line = [0u8; 16];
        let _ = tokio::time::timeout_at(deadline, ready.read(&mut line)).await;
        drop(ready);
        loop {
            {
                let mut state = self.inner.lock();
                self.inner.refresh(&mut state, id);
                let Some(c) = state.containers.get(id) else {
                    return Err(RuntimeError::NotFound(format!("container {id}")));
                };
                match (&c.started, &c.exit) {
                    // `refresh` announced it.
                    (Some(_), _) => return Ok(()),
                    (None, Some(exit)) => {
                        return Err(failed(format!(
                            "failed to start container {id}: {}",
                            exit.message
                        )))
                    }
                    (None, None) => {}
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(failed(format!(
                    "container {id}: the shim did not report the process started within {START_TIMEOUT:?} (see {})",
                    dir.join("shim.log").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let Some(pid) = self.live_pid(id) else {
            // Not running (or gone): make sure its exit is recorded.
            self.wait_exit(id, Duration::ZERO).await;
            return Ok(());
        };
        if !timeout.is_zero() {
            signal_group(pid, "TERM").await;
            if self.wait_exit(id, timeout).await {
                return Ok(());
            }
        }
        self.kill_now(id).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        if !self.inner.lock().containers.contains_key(id) {
            return Ok(());
        }
        self.kill_now(id).await?;
        let mut state = self.inner.lock();
        if let Some(c) = state.containers.remove(id) {
            self.inner.emit(id, &c, ContainerEventType::Deleted);
            if let Some(cgroup) = &c.cgroup {
                // Empty once the shim is gone; cgroupfs directories go
                // with rmdir, not by removing their files.
                let _ = std::fs::remove_dir(cgroup);
            }
        }
        let _ = std::fs::remove_dir_all(self.inner.container_dir(id));
        Ok(())
    }

    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<Container>> {
        let state = self.inner.lock();
        Ok(state
            .containers
            .iter()
            .filter(|(id, c)| filter.matches(id, &c.sandbox_id, c.state(), &c.labels))
            .map(|(id, c)| Container {
                id: id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.metadata.clone(),
                image: c.image.clone(),
                image_ref: c.image_ref.clone(),
                state: c.state(),
                created_at: c.created_at,
                labels: c.labels.clone(),
            })
            .collect())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let state = self.inner.lock();
        let c = state
            .containers
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        Ok(ContainerStatus {
            id: id.to_string(),
            metadata: c.metadata.clone(),
            state: c.state(),
            created_at: c.created_at,
            started_at: c.started.as_ref().map(|s| s.started_at),
            finished_at: c.exit.as_ref().map(|e| e.finished_at),
            exit_code: c.exit.as_ref().map_or(0, |e| e.code),
            image: c.image.clone(),
            image_ref: c.image_ref.clone(),
            reason: c.exit.as_ref().map(ExitInfo::reason).unwrap_or_default(),
            message: c
                .exit
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default(),
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
        })
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResult> {
        let (argv0, env, cwd) = {
            let mut state = self.inner.lock();
            self.inner.refresh(&mut state, container_id);
            let c = state
                .containers
                .get(container_id)
                .ok_or_else(|| RuntimeError::NotFound(format!("container {container_id}")))?;
            if c.state() != ContainerState::Running {
                return Err(failed(format!("container {container_id} is not running")));
            }
            (cmd.first().cloned(), c.env.clone(), c.cwd.clone())
        };
        let Some(program) = argv0 else {
            return Err(failed("exec: no command given"));
        };
        let mut command = tokio::process::Command::new(&program);
        command
            .args(&cmd[1..])
            .env_clear()
            .envs(env)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| failed(format!("exec {program:?} in container {container_id}: {e}")))?;
        let pgid = child.id();
        let output = child.wait_with_output();
        let output = if timeout.is_zero() {
            output.await
        } else {
            match tokio::time::timeout(timeout, output).await {
                Ok(output) => output,
                Err(_) => {
                    // Whatever it started goes too.
                    if let Some(pgid) = pgid {
                        signal_group(pgid, "KILL").await;
                    }
                    return Err(failed(format!(
                        "command {cmd:?} timed out after {timeout:?}"
                    )));
                }
            }
        }
        .map_err(|e| failed(format!("exec {program:?}: {e}")))?;
        Ok(ExecSyncResult {
            exit_code: exit_code_of(output.status.code(), output.status.signal()),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }

    async fn image_status(&self, image: &ImageSpec) -> Result<Option<Image>> {
        // Nothing is pulled: every image is "present", recorded by name.
        let (repo, tag) = normalize_image(&image.image);
        let id = image_ref(&image.image);
        Ok(Some(Image {
            id: id.clone(),
            repo_tags: vec![format!("{repo}:{tag}")],
            repo_digests: vec![id],
            size: 0,
        }))
    }

    async fn pull_image(&self, image: &ImageSpec) -> Result<String> {
        Ok(image_ref(&image.image))
    }

    async fn exec_stream(
        &self,
        req: &super::streaming::StreamRequest,
    ) -> Result<super::streaming::StreamTarget> {
        let id = &req.container_id;
        let (env, cwd) = {
            let mut state = self.inner.lock();
            self.inner.refresh(&mut state, id);
            let c = state
                .containers
                .get(id)
                .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
            if c.state() != ContainerState::Running {
                return Err(failed(format!("container {id} is not running")));
            }
            (c.env.clone(), c.cwd.clone())
        };
        super::streaming::spawn_local(&req.cmd, &env, &cwd, req)
            .map(super::streaming::StreamTarget::Local)
            .map_err(failed)
    }

    async fn attach_stream(
        &self,
        req: &super::streaming::StreamRequest,
    ) -> Result<super::streaming::StreamTarget> {
        let id = req.container_id.clone();
        let log = {
            let mut state = self.inner.lock();
            self.inner.refresh(&mut state, &id);
            let c = state
                .containers
                .get(&id)
                .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
            if c.state() != ContainerState::Running {
                return Err(failed(format!("container {id} is not running")));
            }
            if req.stdin && !c.annotation_set(super::cri::ANNOTATION_STDIN) {
                return Err(failed(format!(
                    "container {id} has no stdin to attach to: its spec does not set `stdin: true`"
                )));
            }
            c.log_path.clone()
        };
        let stdin = if req.stdin {
            let fifo = self.inner.container_dir(&id).join(STDIN_FIFO);
            Some(
                open_stdin(&fifo)
                    .await
                    .map_err(|e| failed(format!("container {id}: attaching to its stdin: {e}")))?,
            )
        } else {
            None
        };
        // The exit: the runtime's record of it, polled (the shim writes it).
        let inner = Arc::downgrade(&self.inner);
        let exit = Box::pin(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let Some(inner) = inner.upgrade() else {
                    return Err("the runtime stopped".to_string());
                };
                let mut state = inner.lock();
                inner.refresh(&mut state, &id);
                match state.containers.get(&id) {
                    Some(c) => {
                        if let Some(e) = &c.exit {
                            return Ok(e.code);
                        }
                    }
                    None => return Err(format!("container {id} was removed")),
                }
            }
        });
        let mut local = super::streaming::follow_log(log, req, exit).map_err(failed)?;
        if let Some(stdin) = stdin {
            local.stdin = Some(Box::pin(stdin));
        }
        Ok(super::streaming::StreamTarget::Local(local))
    }

    /// From the container's cgroup when it has one (it holds the shim too,
    /// a few hundred KiB), else summed over its process tree (see
    /// [`crate::stats::procfs`]).
    async fn container_stats(&self, id: &str) -> Result<super::ContainerStats> {
        let (cgroup, pid) = {
            let mut state = self.inner.lock();
            self.inner.refresh(&mut state, id);
            let c = state
                .containers
                .get(id)
                .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
            match (c.state(), &c.started) {
                (ContainerState::Running, Some(s)) => (c.cgroup.clone(), s.pid),
                _ => return Err(failed(format!("container {id} is not running"))),
            }
        };
        let usage = tokio::task::spawn_blocking(move || {
            cgroup
                .as_deref()
                .and_then(crate::stats::procfs::read_cgroup)
                .or_else(|| crate::stats::procfs::read_process_tree(pid))
        })
        .await
        .map_err(|e| failed(format!("reading the stats of container {id}: {e}")))?
        .ok_or_else(|| failed(format!("container {id} has no process to measure")))?;
        Ok(super::ContainerStats {
            timestamp: Timestamp::now(),
            cpu: Some(usage.0),
            memory: Some(usage.1),
        })
    }

    async fn container_log_path(&self, id: &str) -> Result<PathBuf> {
        self.log_path(id)
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))
    }

    fn container_events(&self) -> broadcast::Receiver<ContainerEvent> {
        self.inner.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    /// A `Write` whose bytes the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn stdin_sessions_reach_the_process_and_stdin_once_ends_after_one() {
        for once in [false, true] {
            let dir = std::env::temp_dir().join(format!("tug-stdin-{}-{once}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let fifo = dir.join(STDIN_FIFO);
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                &fifo,
                rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            )
            .unwrap();
            let sink = Sink::default();
            let feeder = {
                let (fifo, sink) = (fifo.clone(), sink.clone());
                std::thread::spawn(move || feed_stdin(&fifo, sink, once))
            };
            let send = |line: &'static str| {
                let fifo = fifo.clone();
                async move {
                    use tokio::io::AsyncWriteExt;
                    let mut w = open_stdin(&fifo).await?;
                    w.write_all(line.as_bytes()).await?;
                    // Dropped: the session ends.
                    std::io::Result::Ok(())
                }
            };
            send("one\n").await.unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline && !(once && feeder.is_finished()) {
                if !once && sink.0.lock().unwrap().len() == 4 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if once {
                // The first session's end closed the process's stdin, and
                // a later attacher is told so.
                assert!(feeder.is_finished(), "stdinOnce kept stdin open");
                let e = send("two\n").await.unwrap_err();
                assert!(e.to_string().contains("stdin is closed"), "{e}");
                assert_eq!(&*sink.0.lock().unwrap(), b"one\n");
            } else {
                // Still open after the first attacher left: a second one
                // gets through.
                assert!(!feeder.is_finished());
                send("two\n").await.unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while sink.0.lock().unwrap().len() < 8 {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the second session was lost"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert_eq!(&*sink.0.lock().unwrap(), b"one\ntwo\n");
                assert!(!feeder.is_finished());
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn log_lines_are_in_the_cri_format() {
        let ts: Timestamp = "2024-05-01T10:00:00.120Z".parse().unwrap();
        let cases: &[(&[u8], &str)] = &[
            (b"hello", "2024-05-01T10:00:00.12Z stdout F hello\n"),
            (b"", "2024-05-01T10:00:00.12Z stdout F \n"),
        ];
        for (line, wanted) in cases {
            let got = cri_log_lines(ts, "stdout", line);
            assert_eq!(String::from_utf8(got).unwrap(), *wanted);
        }
        let whole: Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
        let got = String::from_utf8(cri_log_lines(whole, "stderr", b"x")).unwrap();
        assert_eq!(got, "2024-05-01T10:00:00Z stderr F x\n");

        // A long line is split: P parts, then F.
        let long = vec![b'a'; MAX_LOG_LINE * 2 + 3];
        let got = String::from_utf8(cri_log_lines(whole, "stdout", &long)).unwrap();
        let tags: Vec<&str> = got.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
        assert_eq!(tags, ["P", "P", "F"]);
        assert!(got.lines().last().unwrap().ends_with(" F aaa"));
    }

    #[test]
    fn proc_stat_gives_the_start_time_of_live_processes() {
        let fields = |state: &str| {
            let mut f: Vec<String> = (3..=30).map(|i| i.to_string()).collect();
            f[0] = state.into();
            f.join(" ")
        };
        let cases = [
            (format!("42 (sleep) {}", fields("S")), Some(22)),
            (format!("42 (my (odd) name) {}", fields("R")), Some(22)),
            (format!("42 (sh) {}", fields("Z")), None),
            ("42 (sh) S 1 2".to_string(), None),
            ("garbage".to_string(), None),
        ];
        for (stat, wanted) in cases {
            assert_eq!(parse_proc_stat(&stat), wanted, "{stat}");
        }
        // And the real thing: this process.
        assert!(proc_start_time(std::process::id()).is_some());
    }

    #[test]
    fn exit_codes_and_reasons() {
        let cases = [
            (Some(0), None, 0, "Completed"),
            (Some(3), None, 3, "Error"),
            (None, Some(15), 143, "Error"),
            (None, Some(9), 137, "Error"),
            (None, None, 255, "Error"),
        ];
        for (code, signal, wanted, reason) in cases {
            let code = exit_code_of(code, signal);
            assert_eq!(code, wanted);
            let info = ExitInfo {
                code,
                finished_at: at(0),
                reason: None,
                message: String::new(),
            };
            assert_eq!(info.reason(), reason);
        }
        let start_error = ExitInfo {
            code: 128,
            finished_at: at(0),
            reason: Some("StartError".into()),
            message: "no such file".into(),
        };
        assert_eq!(start_error.reason(), "StartError");
    }

    #[test]
    fn readoption_decisions() {
        let started = Started {
            pid: 10,
            start_time: 5,
            shim_pid: 9,
            shim_start_time: 4,
            started_at: at(0),
        };
        let exit = ExitInfo {
            code: 3,
            finished_at: at(5),
            reason: None,
            message: String::new(),
        };
        let cases = [
            // (started, exit, process alive, shim alive) → state
            (None, None, false, false, "created"),
            (Some(&started), None, true, true, "running"),
            // The shim is about to record the exit.
            (Some(&started), None, false, true, "running"),
            (Some(&started), None, false, false, "lost"),
            (Some(&started), Some(&exit), false, false, "exited 3"),
            // The record wins over a pid that happens to be alive.
            (Some(&started), Some(&exit), true, true, "exited 3"),
        ];
        for (s, e, alive, shim, wanted) in cases {
            let got = match decide(s, e, alive, shim, at(9)) {
                Observed::Created => "created".to_string(),
                Observed::Running => "running".to_string(),
                Observed::Exited(i) if i.reason.as_deref() == Some("Unknown") => {
                    assert_eq!((i.code, i.finished_at), (255, at(9)));
                    "lost".to_string()
                }
                Observed::Exited(i) => format!("exited {}", i.code),
            };
            assert_eq!(got, wanted, "{s:?} {e:?} {alive} {shim}");
        }
    }

    #[test]
    fn records_survive_a_round_trip() {
        let record = ContainerRecord {
            sandbox_id: "s1".into(),
            metadata: ContainerMetadata {
                name: "app".into(),
                attempt: 2,
            },
            image: ImageSpec {
                image: "busybox".into(),
            },
            image_ref: image_ref("busybox"),
            labels: [("a".to_string(), "b".to_string())].into(),
            annotations: BTreeMap::new(),
            argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec![("K".into(), "V".into())],
            cwd: "/tmp".into(),
            log_path: "/tmp/app/2.log".into(),
            cgroup: Some("/sys/fs/cgroup/tugboat.slice/pod-u/c1".into()),
            created_at: at(1),
            started: None,
            exit: None,
        };
        let (id, back) = ContainerRecord::from_json(&record.to_json("c1")).unwrap();
        assert_eq!(id, "c1");
        assert_eq!(back.to_json("c1"), record.to_json("c1"));
        assert!(ContainerRecord::from_json(&json!({"id": "x"})).is_none());

        let sandbox = SandboxRecord {
            metadata: PodSandboxMetadata {
                name: "p".into(),
                namespace: "default".into(),
                uid: "u".into(),
                attempt: 1,
            },
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            log_directory: "/var/log/pods/x".into(),
            state: SandboxState::NotReady,
            created_at: at(2),
        };
        let (_, back) = SandboxRecord::from_json(&sandbox.to_json("s1")).unwrap();
        assert_eq!(back.to_json("s1"), sandbox.to_json("s1"));

        let started = json!({"pid": 1, "startTime": 2, "shimPid": 3, "shimStartTime": 4, "startedAt": at(0).to_string()});
        assert_eq!(started_from_json(&started).unwrap().shim_pid, 3);
        let exit = json!({"exitCode": 137, "finishedAt": at(0).to_string(), "reason": null, "message": ""});
        assert_eq!(exit_from_json(&exit).unwrap().code, 137);
        assert!(exit_from_json(&json!({"exitCode": "x"})).is_none());
    }

    #[test]
    fn mounts_become_links_in_the_container_directory() {
        let dir = std::env::temp_dir().join(format!("tug-links-{}", std::process::id()));
        let volume = dir.join("volume");
        std::fs::create_dir_all(&volume).unwrap();
        std::fs::write(volume.join("key"), "value").unwrap();
        let container = dir.join("app");
        let mount = |path: &str| super::super::Mount {
            container_path: path.into(),
            host_path: volume.clone(),
            readonly: true,
        };
        // Twice: a restarted container relinks over the old link.
        for _ in 0..2 {
            link_mounts(&container, &[mount("/etc/config")]).unwrap();
        }
        let read = std::fs::read_to_string(container.join("etc/config/key")).unwrap();
        assert_eq!(read, "value");
        let err = link_mounts(&container, &[mount("/../escape")]).unwrap_err();
        assert!(err.contains("cannot be linked"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_plain_relative_paths_are_accepted() {
        for (path, ok) in [
            ("app/0.log", true),
            ("uid-1", true),
            ("", false),
            ("/etc/passwd", false),
            ("../x", false),
            ("a/../../x", false),
        ] {
            assert_eq!(safe_relative(path), ok, "{path}");
        }
    }

    #[test]
    fn the_limits_condition_says_whether_cgroups_are_used() {
        let c = limits_condition(None);
        assert_eq!((c.kind.as_str(), c.status), (LIMITS_ENFORCED, false));
        assert!(c.message.contains("not enforced"));
        let c = limits_condition(Some(Path::new(CGROUP_SLICE)));
        assert!(c.status && c.message.contains(CGROUP_SLICE));
    }

    #[test]
    fn limits_become_cgroup_files() {
        type Pairs<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Pairs, std::result::Result<Pairs, &str>)] = &[
            (&[], Ok(&[])),
            (
                &[
                    (ANNOTATION_LIMIT_CPU, "500m"),
                    (ANNOTATION_LIMIT_MEMORY, "128Mi"),
                ],
                Ok(&[("cpu.max", "50000 100000"), ("memory.max", "134217728")]),
            ),
            (
                &[(ANNOTATION_LIMIT_CPU, "2")],
                Ok(&[("cpu.max", "200000 100000")]),
            ),
            // Under the kernel's minimum quota.
            (
                &[(ANNOTATION_LIMIT_CPU, "1m")],
                Ok(&[("cpu.max", "1000 100000")]),
            ),
            (
                &[(ANNOTATION_LIMIT_MEMORY, "1G")],
                Ok(&[("memory.max", "1000000000")]),
            ),
            (&[(ANNOTATION_LIMIT_CPU, "lots")], Err("cpu limit")),
            (&[(ANNOTATION_LIMIT_MEMORY, "0")], Err("memory limit")),
        ];
        for (pairs, wanted) in cases {
            let annotations: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            match (cgroup_limits(&annotations), wanted) {
                (Ok(got), Ok(files)) => {
                    let got: Vec<(&str, &str)> =
                        got.iter().map(|(f, v)| (*f, v.as_str())).collect();
                    assert_eq!(got, *files, "{pairs:?}");
                }
                (Err(e), Err(w)) => assert!(e.contains(w), "{e}"),
                (got, wanted) => panic!("{pairs:?}: {got:?} but wanted {wanted:?}"),
            }
        }
    }
}
