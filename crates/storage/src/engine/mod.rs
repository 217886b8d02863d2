//! The storage semantics, written once for every backend.
//!
//! [`MemoryStorage`](crate::memory::MemoryStorage) and
//! [`SledStorage`](crate::sled::SledStorage) must behave identically (the
//! memory one exists so tests of the layers above exercise the same contract
//! as production), so everything that decides *what* happens lives here and a
//! backend only says *how* bytes are kept, through the small [`Backend`]
//! trait: read a key, scan keys, scan the log, apply one atomic batch, flush,
//! drop old log entries.
//!
//! The moving parts:
//! - writes are validated and turned into [`Event`]s by one writer at a time
//!   ([`write`]), either inline (memory) or by a group-commit task (sled);
//! - a batch is applied under the write side of a gate ([`View`]) and becomes
//!   visible to readers only once it is durable ("published"); until then
//!   readers see the previous values through an undo overlay;
//! - reads ([`read`]) rebuild older states by undoing log events;
//! - watches ([`watch`]) replay the log, then follow a broadcast channel;
//! - compaction ([`history`]) keeps a window of the log.

mod history;
mod read;
mod watch;
mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::{broadcast, mpsc, watch as signal};
use tokio::task::JoinHandle;

use crate::{Error, Event, KeyValue, ListOptions, ListResult, Result, Revision, WatchStream};

use history::History;
pub(crate) use history::HistoryPolicy;
use write::{Op, Outcome, Request, WriterState};

/// How many event batches the live channel buffers per watcher before a slow
/// watcher lags and falls back to reading the log.
const LIVE_CHANNEL_CAPACITY: usize = 1024;

/// The revisions a backend persisted: where to resume after a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub current: Revision,
    pub compacted: Revision,
}

/// One key seen by [`Backend::scan`]; the value is decoded only on demand so
/// that counting keys (`remaining`) does not copy values.
pub(crate) trait ScanEntry {
    fn key(&self) -> &str;
    fn load(&self) -> Result<KeyValue>;
}

/// A visitor: returns `Ok(false)` to stop the scan early.
pub(crate) type Visit<'a, T> = &'a mut dyn FnMut(T) -> Result<bool>;

/// A visitor of scanned keys (each entry borrowed only for the call).
pub(crate) type ScanVisit<'a> = &'a mut dyn FnMut(&dyn ScanEntry) -> Result<bool>;

/// How a backend keeps the current values, the log and the meta record.
///
/// The engine guarantees that `apply` and `compact` are never called
/// concurrently with themselves, and that `apply` is never concurrent with a
/// read that needs a consistent cut (it holds the gate).
pub(crate) trait Backend: Send + Sync + 'static {
    /// The current value of `key`, including writes not yet flushed.
    fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Keys starting with `prefix` and greater than `start_after`, ascending.
    fn scan(&self, prefix: &str, start_after: Option<&str>, visit: ScanVisit<'_>) -> Result<()>;
    /// Log events with a revision greater than `after`, ascending.
    fn scan_log(&self, after: Revision, visit: Visit<'_, Event>) -> Result<()>;
    /// Atomically: apply each event to the current values, append it to the
    /// log, and record `current` as the current revision.
    fn apply(&self, events: &[Event], current: Revision) -> Result<()>;
    /// Make everything applied so far durable.
    fn flush(&self) -> BoxFuture<'_, Result<()>>;
    /// Drop log events at or below `upto` and record it as compacted.
    fn compact(&self, upto: Revision) -> Result<()>;
}

/// What readers may see: the last durable revision, and for keys written by
/// an applied but not yet durable batch, their value as of that revision.
#[derive(Debug, Default)]
struct View {
    current: Revision,
    pending: HashMap<String, Option<KeyValue>>,
}

/// State shared by the handle, the writer, the compactor and every watch.
pub(crate) struct Shared<B> {
    backend: B,
    /// The gate: batches are applied under its write lock, so a reader
    /// holding the read lock never sees half a batch.
    view: RwLock<View>,
    /// Mirror of `view.current` for lock-free reads.
    current: AtomicU64,
    compacted: AtomicU64,
    /// Live events; `None` once the store shut down (watch streams then end).
    live: Mutex<Option<broadcast::Sender<Arc<[Event]>>>>,
    /// Set after a failed apply or flush: the store then refuses writes.
    failure: Mutex<Option<Error>>,
    policy: HistoryPolicy,
    /// Compaction samples; the lock also serialises compactions.
    history: Mutex<History>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<B: Backend> Shared<B> {
    fn new(backend: B, meta: Meta, policy: HistoryPolicy) -> Self {
        let (live, _) = broadcast::channel(LIVE_CHANNEL_CAPACITY);
        Shared {
            backend,
            view: RwLock::new(View {
                current: meta.current,
                pending: HashMap::new(),
            }),
            current: AtomicU64::new(meta.current),
            compacted: AtomicU64::new(meta.compacted),
            live: Mutex::new(Some(live)),
            failure: Mutex::new(None),
            policy,
            history: Mutex::new(History::default()),
        }
    }

    /// The last durable (published) revision.
    pub(crate) fn current(&self) -> Revision {
        self.current.load(Ordering::Acquire)
    }

    pub(crate) fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }

    fn read_view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_view(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Err(Expired)` if history after `rev` may already be gone.
    fn ensure_not_compacted(&self, rev: Revision) -> Result<()> {
        let compacted = self.compacted();
        if rev < compacted {
            return Err(Error::Expired {
                requested: rev,
                compacted,
            });
        }
        Ok(())
    }

    fn subscribe(&self) -> Result<broadcast::Receiver<Arc<[Event]>>> {
        lock(&self.live)
            .as_ref()
            .map(broadcast::Sender::subscribe)
            .ok_or(Error::Closed)
    }

    fn broadcast(&self, events: Arc<[Event]>) {
        if let Some(live) = lock(&self.live).as_ref() {
            // No receiver is fine: nobody watches.
            let _ = live.send(events);
        }
    }

    /// End every watch stream (they see the channel close).
    fn close_live(&self) {
        lock(&self.live).take();
    }
}

/// How writes reach the shared commit path.
enum Writes {
    /// The caller commits its own write under a lock (no flush to batch).
    Direct(tokio::sync::Mutex<DirectWriter>),
    /// Writes are queued to a group-commit task.
    Grouped(mpsc::Sender<Request>),
}

struct DirectWriter {
    state: WriterState,
    next_compaction: Instant,
}

/// A running store over some backend: what `MemoryStorage` and
/// `SledStorage` wrap.
pub(crate) struct Engine<B: Backend> {
    shared: Arc<Shared<B>>,
    writes: Writes,
    shutdown: signal::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Capacity of the group-commit request queue.
const REQUEST_QUEUE: usize = 4096;

impl<B: Backend> Engine<B> {
    /// A store whose writers commit inline; compaction runs inline too, at
    /// most once per `policy.interval`. Needs no runtime to construct.
    /// `meta` is what the backend persisted.
    pub(crate) fn direct(backend: B, meta: Meta, policy: HistoryPolicy) -> Self {
        let shared = Arc::new(Shared::new(backend, meta, policy));
        let writer = DirectWriter {
            state: WriterState::new(shared.current()),
            next_compaction: Instant::now() + policy.interval,
        };
        let (shutdown, _) = signal::channel(false);
        Engine {
            shared,
            writes: Writes::Direct(tokio::sync::Mutex::new(writer)),
            shutdown,
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// A store with a group-commit writer task and a background compactor,
    /// spawned on the current tokio runtime. `meta` is what the backend
    /// persisted.
    pub(crate) fn grouped(
        backend: B,
        meta: Meta,
        policy: HistoryPolicy,
        max_batch: usize,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Io("storage must be opened inside a tokio runtime".into()))?;
        let shared = Arc::new(Shared::new(backend, meta, policy));
        let (shutdown, _) = signal::channel(false);
        let (requests, queue) = mpsc::channel(REQUEST_QUEUE);
        let writer = runtime.spawn(write::run_writer(
            shared.clone(),
            queue,
            shutdown.subscribe(),
            max_batch.max(1),
        ));
        let compactor = runtime.spawn(history::run_compactor(
            Arc::downgrade(&shared),
            shutdown.subscribe(),
            policy.interval,
        ));
        Ok(Engine {
            shared,
            writes: Writes::Grouped(requests),
            shutdown,
            tasks: Mutex::new(vec![writer, compactor]),
        })
    }

    /// Stop accepting writes, finish the queued ones, stop background tasks
    /// and end every watch stream. Later writes fail with `Closed`.
    pub(crate) async fn close(&self) -> Result<()> {
        self.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for task in tasks {
            task.await
                .map_err(|e| Error::Io(format!("storage task failed: {e}")))?;
        }
        self.shared.close_live();
        Ok(())
    }

    async fn write(&self, op: Op) -> Result<Outcome> {
        match &self.writes {
            Writes::Direct(writer) => self.write_direct(writer, op).await,
            Writes::Grouped(queue) => write::submit(queue, op).await,
        }
    }

    async fn write_direct(
        &self,
        writer: &tokio::sync::Mutex<DirectWriter>,
        op: Op,
    ) -> Result<Outcome> {
        if *self.shutdown.borrow() {
            return Err(Error::Closed);
        }
        let mut writer = writer.lock().await;
        let outcome = self.shared.commit_one(&mut writer.state, op).await;
        let now = Instant::now();
        if now >= writer.next_compaction {
            writer.next_compaction = now + self.shared.policy.interval;
            if let Err(error) = self.shared.compaction_tick(now) {
                tracing::warn!(%error, "storage compaction failed");
            }
        }
        outcome
    }

    pub(crate) async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let op = Op::Create {
            key: key.to_owned(),
            value,
        };
        self.write(op).await?.into_put()
    }

    pub(crate) async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        let op = Op::Update {
            key: key.to_owned(),
            value,
            expected,
        };
        self.write(op).await?.into_put()
    }

    pub(crate) async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision)> {
        let op = Op::Delete {
            key: key.to_owned(),
            expected,
        };
        self.write(op).await?.into_deleted()
    }

    pub(crate) async fn transact(&self, ops: Vec<crate::TxnOp>) -> Result<Vec<crate::TxnResult>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let ops = ops.into_iter().map(Op::from).collect();
        self.write(Op::Txn(ops)).await?.into_txn()
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.shared.get(key)
    }

    pub(crate) async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        self.shared.list(prefix, &options)
    }

    pub(crate) fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        watch::open(self.shared.clone(), prefix, after)
    }

    pub(crate) fn current_revision(&self) -> Revision {
        self.shared.current()
    }

    pub(crate) fn compacted_revision(&self) -> Revision {
        self.shared.compacted()
    }

    /// Compaction may delete many log entries: run it off the async threads.
    pub(crate) async fn compact(&self, revision: Revision) -> Result<()> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.compact(revision))
            .await
            .map_err(|e| Error::Io(format!("compaction task failed: {e}")))?
    }
}

impl<B: Backend> Drop for Engine<B> {
    fn drop(&mut self) {
        // The writer drains its queue and exits; the compactor exits.
        self.shutdown.send_replace(true);
        self.shared.close_live();
    }
}

/// Default interval between compaction checks.
pub(crate) const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(30);

/// Implements [`crate::Storage`] for a wrapper with an `engine` field.
macro_rules! delegate_storage {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::Storage for $ty {
            async fn create(
                &self,
                key: &str,
                value: ::bytes::Bytes,
            ) -> $crate::Result<$crate::KeyValue> {
                self.engine.create(key, value).await
            }

            async fn update(
                &self,
                key: &str,
                value: ::bytes::Bytes,
                expected: Option<$crate::Revision>,
            ) -> $crate::Result<$crate::KeyValue> {
                self.engine.update(key, value, expected).await
            }

            async fn delete(
                &self,
                key: &str,
                expected: Option<$crate::Revision>,
            ) -> $crate::Result<($crate::KeyValue, $crate::Revision)> {
                self.engine.delete(key, expected).await
            }

            async fn transact(
                &self,
                ops: Vec<$crate::TxnOp>,
            ) -> $crate::Result<Vec<$crate::TxnResult>> {
                self.engine.transact(ops).await
            }

            async fn get(&self, key: &str) -> $crate::Result<Option<$crate::KeyValue>> {
                self.engine.get(key).await
            }

            async fn list(
                &self,
                prefix: &str,
                options: $crate::ListOptions,
            ) -> $crate::Result<$crate::ListResult> {
                self.engine.list(prefix, options).await
            }

            fn watch(
                &self,
                prefix: &str,
                after: $crate::Revision,
            ) -> $crate::Result<$crate::WatchStream> {
                self.engine.watch(prefix, after)
            }

            fn current_revision(&self) -> $crate::Revision {
                self.engine.current_revision()
            }

            fn compacted_revision(&self) -> $crate::Revision {
                self.engine.compacted_revision()
            }

            async fn compact(&self, revision: $crate::Revision) -> $crate::Result<()> {
                self.engine.compact(revision).await
            }
        }
    };
}
pub(crate) use delegate_storage;
