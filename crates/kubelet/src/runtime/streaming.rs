//! The runtime side of `kubectl exec`/`attach` (CRI's `Exec` and `Attach`).
//!
//! CRI runtimes answer these with the URL of their own streaming server,
//! which the kubelet connects to as a client and bridges to the client's
//! protocol ([`StreamTarget::Url`], `crate::streaming::bridge`); the process
//! runtime has no such server, so it hands the kubelet the process itself
//! ([`StreamTarget::Local`]): its stdin, stdout and stderr, a terminal
//! resize channel and its exit code.

use std::pin::Pin;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// CRI `ExecRequest` / `AttachRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamRequest {
    pub container_id: String,
    /// The command (exec); empty for attach.
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A terminal size (upstream's `remotecommand.TerminalSize`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

pub type Reader = Pin<Box<dyn AsyncRead + Send>>;
pub type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// A process being streamed. Each pipe is there if it was asked for (with
/// a terminal, stdout carries both output streams and there is no stderr).
pub struct LocalStream {
    pub stdin: Option<Writer>,
    pub stdout: Option<Reader>,
    pub stderr: Option<Reader>,
    /// Terminal resizes; `None` without a terminal.
    pub resize: Option<mpsc::UnboundedSender<TerminalSize>>,
    /// The exit code, once it ended (attach: the container's).
    pub exit: BoxFuture<'static, Result<i32, String>>,
}

/// What a runtime's `Exec`/`Attach` gives the kubelet.
pub enum StreamTarget {
    Local(LocalStream),
    /// A runtime streaming server to connect to for the session (the
    /// kubelet bridges it to what the client speaks).
    Url(String),
}

/// A pseudo-terminal's master side reads `EIO` once the last process
/// holding the terminal exits: that is its end of file.
struct EioIsEof<R>(R);

impl<R: AsyncRead + Unpin> AsyncRead for EioIsEof<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.raw_os_error() == Some(5) => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// Starts `argv` as a host process with `env` in `cwd` for a streaming
/// exec: with a terminal if `req.tty` (a pseudo-terminal that becomes the
/// process's controlling terminal through `setsid --ctty`, since the
/// workspace forbids the `unsafe` a `pre_exec` would need), with pipes
/// otherwise. The process is killed if the returned stream is dropped
/// before it exits.
pub fn spawn_local(
    argv: &[String],
    env: &[(String, String)],
    cwd: &std::path::Path,
    req: &StreamRequest,
) -> Result<LocalStream, String> {
    use std::process::Stdio;
    let Some((program, args)) = argv.split_first() else {
        return Err("exec: no command given".into());
    };
    if !req.tty {
        let mut command = tokio::process::Command::new(program);
        let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        command
            .args(args)
            .env_clear()
            .envs(env.iter().cloned())
            .current_dir(cwd)
            .stdin(pipe(req.stdin))
            .stdout(pipe(req.stdout))
            .stderr(pipe(req.stderr))
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("exec {program:?}: {e}"))?;
        let stdin = child.stdin.take().map(|w| Box::pin(w) as Writer);
        let stdout = child.stdout.take().map(|r| Box::pin(r) as Reader);
        let stderr = child.stderr.take().map(|r| Box::pin(r) as Reader);
        return Ok(LocalStream {
            stdin,
            stdout,
            stderr,
            resize: None,
            exit: Box::pin(async move { wait(child).await }),
        });
    }
    let pty = |e: rustix::io::Errno| format!("allocating a pseudo-terminal: {e}");
    let master = rustix::pty::openpt(
        rustix::pty::OpenptFlags::RDWR
            | rustix::pty::OpenptFlags::NOCTTY
            | rustix::pty::OpenptFlags::CLOEXEC,
    )
    .map_err(pty)?;
    rustix::pty::grantpt(&master).map_err(pty)?;
    rustix::pty::unlockpt(&master).map_err(pty)?;
    let name = rustix::pty::ptsname(&master, Vec::new()).map_err(pty)?;
    let name = name
        .to_str()
        .map_err(|_| "the pseudo-terminal's name is not UTF-8".to_string())?
        .to_string();
    let slave = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            // Not the kubelet's controlling terminal.
            .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
            .open(&name)
            .map_err(|e| format!("opening {name}: {e}"))?
    };
    let io = |e: std::io::Error| format!("the pseudo-terminal: {e}");
    let mut command = tokio::process::Command::new("setsid");
    let mut envs: Vec<(String, String)> = env.to_vec();
    if !envs.iter().any(|(k, _)| k == "TERM") {
        // As CRI runtimes do for a terminal.
        envs.push(("TERM".into(), "xterm".into()));
    }
    command
        .arg("--ctty")
        .arg(program)
        .args(args)
        .env_clear()
        .envs(envs)
        .current_dir(cwd)
        .stdin(Stdio::from(slave.try_clone().map_err(io)?))
        .stdout(Stdio::from(slave.try_clone().map_err(io)?))
        .stderr(Stdio::from(slave))
        .kill_on_drop(true);
    let child = command
        .spawn()
        .map_err(|e| format!("exec {program:?} (through setsid): {e}"))?;
    // The slave's copies in `command` must go, or reads never end.
    drop(command);
    let master = std::fs::File::from(master);
    let reader = master.try_clone().map_err(io)?;
    let resizer = master.try_clone().map_err(io)?;
    let (resize, mut sizes) = mpsc::unbounded_channel::<TerminalSize>();
    tokio::spawn(async move {
        while let Some(s) = sizes.recv().await {
            let size = rustix::termios::Winsize {
                ws_row: s.height,
                ws_col: s.width,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            if let Err(e) = rustix::termios::tcsetwinsize(&resizer, size) {
                tracing::debug!(error = %e, "resizing a terminal");
            }
        }
    });
    Ok(LocalStream {
        stdin: req
            .stdin
            .then(|| Box::pin(tokio::fs::File::from_std(master)) as Writer),
        stdout: Some(Box::pin(EioIsEof(tokio::fs::File::from_std(reader))) as Reader),
        stderr: None,
        resize: Some(resize),
        exit: Box::pin(async move { wait(child).await }),
    })
}

async fn wait(mut child: tokio::process::Child) -> Result<i32, String> {
    use std::os::unix::process::ExitStatusExt;
    let status = child.wait().await.map_err(|e| format!("waiting: {e}"))?;
    Ok(super::process::exit_code_of(status.code(), status.signal()))
}

/// Attach to a process-runtime container: its output as the shim logs it
/// (the CRI log file, followed from its current end) until `exit` resolves.
/// The shim gives the container no stdin to write to, so attach carries
/// output only. With a terminal, stderr is shown on stdout.
pub fn follow_log(
    log_path: std::path::PathBuf,
    req: &StreamRequest,
    exit: BoxFuture<'static, Result<i32, String>>,
) -> Result<LocalStream, String> {
    use std::io::Seek;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut file = std::fs::File::open(&log_path)
        .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
    // The output starts where the log ends now, before any stdin is fed:
    // seeking later (in the task) could skip the container's answer to
    // input the caller sends as soon as this returns.
    file.seek(std::io::SeekFrom::End(0))
        .map_err(|e| format!("seeking {}: {e}", log_path.display()))?;
    let (mut out_w, out_r) = tokio::io::duplex(64 * 1024);
    let (mut err_w, err_r) = tokio::io::duplex(64 * 1024);
    let (want_out, want_err, tty) = (req.stdout, req.stderr, req.tty);
    let (exit_tx, mut exit_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut file = tokio::fs::File::from_std(file);
        let mut pending = Vec::new();
        let mut ended = false;
        loop {
            if file.read_to_end(&mut pending).await.is_err() {
                return;
            }
            while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                let Some(l) = crate::server::parse_cri_line(&line[..line.len() - 1]) else {
                    continue;
                };
                let mut content = l.content.to_vec();
                if !l.partial {
                    content.push(b'\n');
                }
                let target = match l.stream {
                    "stdout" if want_out => Some(&mut out_w),
                    "stderr" if tty && want_out => Some(&mut out_w),
                    "stderr" if want_err && !tty => Some(&mut err_w),
                    _ => None,
                };
                if let Some(w) = target {
                    if w.write_all(&content).await.is_err() {
                        return;
                    }
                }
            }
            if ended {
                return;
            }
            // Poll the file until the container ended, then read once more.
            ended = tokio::time::timeout(std::time::Duration::from_millis(100), &mut exit_rx)
                .await
                .is_ok();
        }
    });
    let exit = Box::pin(async move {
        let code = exit.await;
        let _ = exit_tx.send(());
        code
    });
    Ok(LocalStream {
        stdin: None,
        stdout: want_out.then(|| Box::pin(out_r) as Reader),
        stderr: (want_err && !tty).then(|| Box::pin(err_r) as Reader),
        resize: None,
        exit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn req(tty: bool, stdin: bool) -> StreamRequest {
        StreamRequest {
            container_id: "c".into(),
            cmd: vec![],
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        }
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    async fn read_all(r: Option<Reader>) -> String {
        let mut out = Vec::new();
        r.expect("a pipe").read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn pipes_carry_stdin_stdout_stderr_env_and_the_exit_code() {
        let env = [("GREETING".to_string(), "hi".to_string())];
        let dir = std::env::temp_dir();
        let mut p = spawn_local(
            &sh("cat; echo $GREETING; pwd >&2; exit 7"),
            &env,
            &dir,
            &req(false, true),
        )
        .unwrap();
        let mut stdin = p.stdin.take().unwrap();
        stdin.write_all(b"in\n").await.unwrap();
        drop(stdin);
        let (out, err) = tokio::join!(read_all(p.stdout.take()), read_all(p.stderr.take()));
        assert_eq!(out, "in\nhi\n");
        assert_eq!(err.trim(), dir.canonicalize().unwrap().to_str().unwrap());
        assert_eq!(p.exit.await, Ok(7));
        assert!(p.resize.is_none());
    }

    #[tokio::test]
    async fn a_terminal_is_a_pseudo_terminal_that_resizes() {
        let mut p = spawn_local(
            &sh("read line; tty; stty size; echo $TERM"),
            &[],
            &std::env::temp_dir(),
            &req(true, true),
        )
        .unwrap();
        p.resize
            .as_ref()
            .unwrap()
            .send(TerminalSize {
                width: 99,
                height: 33,
            })
            .unwrap();
        // Let the resize land before the command asks.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let mut stdin = p.stdin.take().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
        stdin.flush().await.unwrap();
        let out = read_all(p.stdout.take()).await;
        assert!(out.contains("/dev/pts/"), "{out:?}");
        assert!(out.contains("33 99"), "{out:?}");
        assert!(out.contains("xterm"), "{out:?}");
        assert!(p.stderr.is_none());
        assert_eq!(p.exit.await, Ok(0));
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_is_an_error() {
        let err = spawn_local(
            &["/no/such/program".to_string()],
            &[],
            &std::env::temp_dir(),
            &req(false, false),
        )
        .err()
        .unwrap();
        assert!(err.contains("/no/such/program"), "{err}");
        assert!(spawn_local(&[], &[], &std::env::temp_dir(), &req(false, false)).is_err());
    }

    #[tokio::test]
    async fn attach_follows_the_cri_log_until_the_exit() {
        let dir = std::env::temp_dir().join(format!("tug-attach-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        std::fs::write(&log, "2024-01-01T00:00:00Z stdout F old\n").unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<i32>();
        let exit = Box::pin(async move { rx.await.map_err(|e| e.to_string()) });
        let mut p = follow_log(log.clone(), &req(false, false), exit).unwrap();
        // Written at once, before the follower task first runs (the test
        // runtime has one thread): an answer to stdin fed right after
        // attaching must not be skipped.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(
            &mut f,
            b"2024-01-01T00:00:01Z stdout P new \n2024-01-01T00:00:01Z stdout F line\n2024-01-01T00:00:02Z stderr F oops\n",
        )
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        tx.send(4).unwrap();
        let (out, err, code) =
            tokio::join!(read_all(p.stdout.take()), read_all(p.stderr.take()), p.exit);
        // Only what was written after attaching; partial lines joined.
        assert_eq!(out, "new line\n");
        assert_eq!(err, "oops\n");
        assert_eq!(code, Ok(4));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
