//! The local end of `exec`/`attach`/`logs`: raw bytes to stdout, the
//! terminal put in raw mode for `-t` (and always put back, also when the
//! command fails or panics), and the terminal's size with its changes
//! (SIGWINCH), which the container's pseudo-terminal follows.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use rustix::termios::{self, OptionalActions, Termios};

use crate::error::Result;

/// Write raw bytes to stdout and flush (log lines appear as they come).
pub fn out_bytes(bytes: &[u8]) -> Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes)?;
    o.flush()?;
    Ok(())
}

/// Is stdin a terminal (what `-t` needs, as kubectl's `IsTerminalIn`)?
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The settings to put back, shared with the panic hook.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

fn restore_saved() {
    let saved = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = saved {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &t);
    }
}

/// Stdin in raw mode until dropped: keys (Ctrl-C included) go to the
/// container unchanged, as with kubectl's `term.TTY.Safe`.
pub struct RawMode(());

impl RawMode {
    /// Switch stdin to raw mode; `None` when it is not a terminal.
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        // A panic must not leave the user's shell in raw mode.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_saved();
            previous(info);
        }));
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw).ok()?;
        Some(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_saved();
    }
}

/// The terminal's size (columns, rows) from stdout, else stdin, as
/// kubectl's `TTY.GetSize`; `None` without a terminal or with a 0 size.
pub fn window_size() -> Option<(u16, u16)> {
    let ws = termios::tcgetwinsize(std::io::stdout())
        .or_else(|_| termios::tcgetwinsize(std::io::stdin()))
        .ok()?;
    usable_size(ws.ws_col, ws.ws_row)
}

/// A size worth sending: a terminal reporting 0x0 (e.g. a fresh pty
/// nobody sized) would squash the remote one.
pub fn usable_size(cols: u16, rows: u16) -> Option<(u16, u16)> {
    (cols > 0 && rows > 0).then_some((cols, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_sizes_are_not_sent() {
        assert_eq!(usable_size(80, 24), Some((80, 24)));
        assert_eq!(usable_size(0, 24), None);
        assert_eq!(usable_size(80, 0), None);
    }
}
