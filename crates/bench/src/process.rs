//! Servers the benchmark starts for itself: `tug-apiserver` and `etcd`, each
//! in a temporary directory, each killed when its guard is dropped (also on
//! an error or Ctrl-C), before the directory is removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Finds `name` in the directories of `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

/// A child process and the temporary directory it works in. Field order
/// matters: the child is killed (dropped) before the directory is removed.
pub struct Server {
    child: Child,
    /// Held only to be removed (after the child is gone) when dropped.
    _dir: TempDir,
    log: PathBuf,
    name: &'static str,
}

impl Server {
    /// Starts `command` with stdout and stderr going to `<dir>/<name>.log`.
    pub fn spawn(name: &'static str, mut command: Command, dir: TempDir) -> anyhow::Result<Server> {
        let log = dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Server {
            child,
            _dir: dir,
            log,
            name,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// An error if the process has already exited, with the end of its log.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); end of its log:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The last lines of the process' log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Resident memory in MiB, from `/proc/<pid>/status`.
    pub fn rss_mib(&self) -> Option<f64> {
        Some(ProcStatus::mib(ProcStatus::of(Some(self.pid()?))?.vm_rss))
    }

    /// Kills the process and waits for it; the directory goes with `self`.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.start_kill().ok();
        self.child.wait().await?;
        Ok(())
    }
}

/// Retries `probe` every 50 ms until it succeeds, the process exits, or
/// `timeout` passes.
pub async fn wait_until<T, F, Fut>(
    server: &mut Server,
    timeout: Duration,
    what: &str,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        server.check_running()?;
        match probe().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => {
                return Err(anyhow!(
                    "{what}: not ready after {timeout:?}: {e:#}; end of the log:\n{}",
                    server.log_tail()
                ))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A temporary directory under `work_dir` (or the system's), named for `what`.
pub fn temp_dir(work_dir: Option<&Path>, what: &str) -> anyhow::Result<TempDir> {
    let prefix = format!("tug-bench-{what}-");
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix);
    Ok(match work_dir {
        Some(dir) => b.tempdir_in(dir)?,
        None => b.tempdir()?,
    })
}

/// The memory lines of `/proc/<pid>/status`, in KiB, and the thread count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStatus {
    pub vm_rss: u64,
    pub vm_hwm: u64,
    pub rss_anon: u64,
    pub rss_file: u64,
    pub threads: u64,
}

impl ProcStatus {
    /// Parses `/proc/<pid>/status`; `None` without a `VmRSS` line (a
    /// zombie, or not Linux).
    pub fn parse(status: &str) -> Option<ProcStatus> {
        let fields: BTreeMap<&str, u64> = status
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                let number = value.split_whitespace().next()?.parse().ok()?;
                Some((key.trim(), number))
            })
            .collect();
        let get = |k: &str| fields.get(k).copied().unwrap_or(0);
        Some(ProcStatus {
            vm_rss: *fields.get("VmRSS")?,
            vm_hwm: get("VmHWM"),
            rss_anon: get("RssAnon"),
            rss_file: get("RssFile"),
            threads: get("Threads"),
        })
    }

    /// Reads a live process's status (`None`: this process).
    pub fn of(pid: Option<u32>) -> Option<ProcStatus> {
        let path = match pid {
            Some(pid) => format!("/proc/{pid}/status"),
            None => "/proc/self/status".into(),
        };
        ProcStatus::parse(&std::fs::read_to_string(path).ok()?)
    }

    /// KiB to MiB.
    pub fn mib(kib: u64) -> f64 {
        kib as f64 / 1024.0
    }
}
