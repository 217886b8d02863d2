//! Durable create throughput of the sled store under concurrent writers.
//!
//! Group commit is what makes durability affordable: many writers share one
//! atomic batch and one flush. This prints how many acknowledged (flushed)
//! creates per second N concurrent tasks reach on a temporary directory.
//!
//! `cargo run --release -p tugboat-storage --example sled_throughput -- [writers] [creates] [value bytes]`
//! (defaults: 64 writers, 50000 creates, 1000-byte values).

use std::time::Instant;

use bytes::Bytes;
use tugboat_storage::sled::{SledConfig, SledStorage};
use tugboat_storage::{Result, Storage};

fn arg(index: usize, default: usize) -> usize {
    std::env::args()
        .nth(index)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<()> {
    let writers = arg(1, 64).max(1);
    let creates = arg(2, 50_000);
    let value = Bytes::from(vec![b'x'; arg(3, 1000)]);
    let dir = tempfile::tempdir().map_err(|e| tugboat_storage::Error::Io(e.to_string()))?;
    let store = SledStorage::open(dir.path(), SledConfig::default())?;

    let per_writer = creates / writers;
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (store, value) = (store.clone(), value.clone());
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let key = format!("/registry/pods/bench/w{writer:03}-{i:07}");
                    store.create(&key, value.clone()).await?;
                }
                Ok::<_, tugboat_storage::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| tugboat_storage::Error::Io(e.to_string()))??;
    }
    let elapsed = started.elapsed();
    let done = (per_writer * writers) as f64;
    println!(
        "{:.0} durable creates/s: {writers} writers, {done} creates of {} bytes in {elapsed:.2?} (revision {})",
        done / elapsed.as_secs_f64(),
        value.len(),
        store.current_revision(),
    );
    store.close().await
}
