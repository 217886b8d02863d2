//! The controller runtime every controller is built on:
//! - [`informer`]: shared informers with old/new change notifications;
//! - [`queue`]: de-duplicating, rate-limited work queues;
//! - [`expectations`]: upstream's guard against acting twice on a stale
//!   cache;
//! - [`run_workers`]: workers taking keys from a queue and reconciling them,
//!   requeueing on error with backoff and when a reconcile asks for it.

pub mod expectations;
pub mod informer;
pub mod queue;

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

pub use expectations::Expectations;
pub use informer::{Change, Informer, ObjectKey};
pub use queue::WorkQueue;

/// What a reconcile asks for after a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing until the next change.
    Done,
    /// Look again after this long (a deadline, a minReadySeconds...).
    RequeueAfter(Duration),
}

/// Run `workers` workers reconciling keys from `queue` until it shuts down.
/// An error requeues the key with backoff; a success forgets its failures.
pub async fn run_workers<T, F, Fut>(
    name: &'static str,
    queue: WorkQueue<T>,
    workers: usize,
    reconcile: F,
) where
    T: Clone + Eq + Hash + Send + Sync + std::fmt::Display + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Outcome>> + Send + 'static,
{
    let reconcile = Arc::new(reconcile);
    let mut handles = Vec::new();
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let reconcile = reconcile.clone();
        handles.push(tokio::spawn(async move {
            while let Some(key) = queue.get().await {
                let outcome = reconcile(key.clone()).await;
                match outcome {
                    Ok(outcome) => {
                        queue.forget(&key);
                        if let Outcome::RequeueAfter(delay) = outcome {
                            queue.add_after(key.clone(), delay);
                        }
                    }
                    Err(error) => {
                        tracing::info!(controller = name, %key, error = format!("{error:#}"), "sync failed; requeueing");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        }));
    }
    for handle in handles {
        let _ = handle.await;
    }
}

/// Feed `queue` from `informer`'s changes through `keys`, until the
/// informer's subscription ends.
pub fn forward<K, T, F>(informer: &Informer<K>, queue: &WorkQueue<T>, keys: F)
where
    K: informer::Object,
    T: Clone + Eq + Hash + Send + 'static,
    F: Fn(&Change<K>) -> Vec<T> + Send + 'static,
{
    let mut changes = informer.subscribe();
    let queue = queue.clone();
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            for key in keys(&change) {
                queue.add(key);
            }
        }
    });
}
