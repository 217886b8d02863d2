//! How a component is told to stop: Ctrl-C (SIGINT) or SIGTERM (what
//! systemd, kill and container runtimes send), both meaning a graceful
//! shutdown, as upstream's `SetupSignalHandler`.

/// Resolves at the first SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        // No SIGTERM handler (unlikely): Ctrl-C still works.
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
