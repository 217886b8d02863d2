//! The embedded durable store: the shared engine over one sled database.
//!
//! Why sled: one data directory, no server to start, ordered keys, atomic
//! batches and an explicit flush. The layout (see `codec`) keeps current
//! values, a revision-ordered log of events with their previous values, and
//! a meta record in one tree, so each commit is one atomic `apply_batch` and
//! a crash never leaves half a write.
//!
//! Durability: a group-commit task (see `crate::engine`) applies everything
//! queued in one batch, calls `flush_async` once, and only then answers the
//! callers, so every acknowledged write survives a crash or `SIGKILL` while
//! one fsync is shared by many concurrent writers. A background task
//! compacts the log to the configured history window.

mod codec;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::engine::{
    delegate_storage, Backend, Engine, HistoryPolicy, Meta, ScanEntry, ScanVisit, Visit,
    DEFAULT_COMPACTION_INTERVAL,
};
use crate::{Error, Event, KeyValue, Result, Revision};
use codec::{
    decode_event, decode_kv, decode_log_key, decode_u64, encode_event, encode_kv, encode_u64,
    kv_key, log_key, FORMAT_VERSION, META_COMPACTED, META_CURRENT, META_FORMAT,
};

/// The sled tree holding everything (versioned by name and `m/format`).
const TREE_NAME: &str = "tugboat-mvcc";

/// The file in which sled 0.34 keeps its log segments.
const SLED_DATA_FILE: &str = "db";

/// How many log entries one compaction batch removes.
const COMPACTION_CHUNK: usize = 4096;

/// Tuning of a [`SledStorage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledConfig {
    /// Keep at least this much wall-clock time of history...
    pub history_min_age: Duration,
    /// ...or at least this many revisions, whichever is more history.
    pub history_min_revisions: u64,
    /// How often the background compactor checks.
    pub compaction_interval: Duration,
    /// At most this many writes share one atomic batch and one flush.
    pub max_batch: usize,
    /// sled's page cache, in bytes. The API server keeps every object in its
    /// watch cache already, so sled's own 1 GiB default would hold much of
    /// the same data twice.
    pub cache_capacity: u64,
}

impl Default for SledConfig {
    fn default() -> Self {
        SledConfig {
            history_min_age: Duration::from_secs(5 * 60),
            history_min_revisions: 10_000,
            compaction_interval: DEFAULT_COMPACTION_INTERVAL,
            max_batch: 1024,
            cache_capacity: 128 * 1024 * 1024,
        }
    }
}

/// Durable storage in a sled database directory.
pub struct SledStorage {
    engine: Engine<SledBackend>,
    path: PathBuf,
}

impl SledStorage {
    /// Open (or create) the store at `path`. Must be called inside a tokio
    /// runtime: it spawns the group-commit writer and the compactor there.
    /// Fails with `Error::Io` if another process has the database open.
    pub fn open(path: &Path, config: SledConfig) -> Result<Arc<SledStorage>> {
        let backend = SledBackend::open(path, config.cache_capacity)?;
        let policy = HistoryPolicy {
            min_age: config.history_min_age,
            min_revisions: config.history_min_revisions,
            interval: config.compaction_interval,
        };
        let meta = backend.load_meta()?;
        let engine = Engine::grouped(backend, meta, policy, config.max_batch)?;
        Ok(Arc::new(SledStorage {
            engine,
            path: path.to_owned(),
        }))
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commit the writes already queued, stop the background tasks and end
    /// every watch; later writes fail with `Closed`. The database files are
    /// released once this handle and every watch stream are dropped.
    pub async fn close(&self) -> Result<()> {
        self.engine.close().await
    }
}

delegate_storage!(SledStorage);

fn io(error: ::sled::Error) -> Error {
    Error::Io(error.to_string())
}

/// The sled side of the engine.
struct SledBackend {
    /// Kept so the database lives as long as the tree.
    _db: ::sled::Db,
    tree: ::sled::Tree,
    /// sled's data file. On Linux sled's flush ends in `sync_file_range`,
    /// which neither flushes the drive's write cache nor the file size; one
    /// `fdatasync` per group commit on top makes a flush survive power loss.
    data_file: Arc<std::fs::File>,
}

impl SledBackend {
    fn open(path: &Path, cache_capacity: u64) -> Result<Self> {
        let db = open_db(path, cache_capacity)?;
        let tree = db.open_tree(TREE_NAME).map_err(io)?;
        check_format(&tree)?;
        let data_file = std::fs::File::open(path.join(SLED_DATA_FILE))
            .map_err(|e| Error::Io(format!("cannot open sled data file: {e}")))?;
        Ok(SledBackend {
            _db: db,
            tree,
            data_file: Arc::new(data_file),
        })
    }

    /// Where the last run stopped: its current and compacted revisions.
    fn load_meta(&self) -> Result<Meta> {
        Ok(Meta {
            current: self.read_u64(META_CURRENT)?,
            compacted: self.read_u64(META_COMPACTED)?,
        })
    }

    fn read_u64(&self, key: &[u8]) -> Result<u64> {
        match self.tree.get(key).map_err(io)? {
            Some(raw) => decode_u64(&raw),
            None => Ok(0),
        }
    }

    /// Remove up to [`COMPACTION_CHUNK`] log entries at or below `upto`;
    /// returns whether any remain.
    fn compact_chunk(&self, upto: Revision) -> Result<bool> {
        let mut batch = ::sled::Batch::default();
        // Recorded with the first chunk: entries left behind by a crash
        // mid-compaction are then merely garbage, never a hole in the log.
        batch.insert(META_COMPACTED, &encode_u64(upto));
        let mut removed = 0;
        for key in self.tree.range(log_key(0)..=log_key(upto)).keys() {
            batch.remove(key.map_err(io)?);
            removed += 1;
            if removed == COMPACTION_CHUNK {
                break;
            }
        }
        self.tree.apply_batch(batch).map_err(io)?;
        Ok(removed == COMPACTION_CHUNK)
    }
}

/// How long an open waits for the directory lock. sled's own worker
/// threads can hold the last reference to a closed database for a moment
/// after `close` returns, so a re-open in the same process may briefly
/// see the lock still taken; a second live opener still fails.
const LOCK_WAIT: Duration = Duration::from_secs(2);

fn open_db(path: &Path, cache_capacity: u64) -> Result<::sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let opened = ::sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity)
            .mode(::sled::Mode::HighThroughput)
            .open();
        match opened {
            // sled reports the lock as `Other` with this text.
            Err(::sled::Error::Io(e))
                if e.to_string().starts_with("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other.map_err(io),
        }
    }
}

/// Refuse a database written in another layout; stamp a new one.
fn check_format(tree: &::sled::Tree) -> Result<()> {
    match tree.get(META_FORMAT).map_err(io)? {
        Some(raw) if decode_u64(&raw)? == FORMAT_VERSION => Ok(()),
        Some(raw) => Err(Error::Io(format!(
            "storage format {} is not supported (expected {FORMAT_VERSION})",
            decode_u64(&raw)?
        ))),
        None => {
            tree.insert(META_FORMAT, &encode_u64(FORMAT_VERSION))
                .map_err(io)?;
            tree.flush().map_err(io)?;
            Ok(())
        }
    }
}

/// A current-value record seen by a scan, decoded on demand.
struct SledEntry<'a> {
    key: &'a str,
    raw: &'a [u8],
}

impl ScanEntry for SledEntry<'_> {
    fn key(&self) -> &str {
        self.key
    }

    fn load(&self) -> Result<KeyValue> {
        decode_kv(self.key, self.raw)
    }
}

impl Backend for SledBackend {
    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        match self.tree.get(kv_key(key)).map_err(io)? {
            Some(raw) => decode_kv(key, &raw).map(Some),
            None => Ok(None),
        }
    }

    fn scan(&self, prefix: &str, start_after: Option<&str>, visit: ScanVisit<'_>) -> Result<()> {
        let first = kv_key(prefix);
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(kv_key(after)),
            _ => Bound::Included(first.clone()),
        };
        for item in self.tree.range((lower, Bound::Unbounded)) {
            let (raw_key, raw) = item.map_err(io)?;
            if !raw_key.starts_with(&first) {
                break;
            }
            let key = std::str::from_utf8(&raw_key[1..])
                .map_err(|_| Error::Io("corrupt storage record: key is not UTF-8".into()))?;
            if !visit(&SledEntry { key, raw: &raw })? {
                break;
            }
        }
        Ok(())
    }

    fn scan_log(&self, after: Revision, visit: Visit<'_, Event>) -> Result<()> {
        let range = (
            Bound::Excluded(log_key(after)),
            Bound::Included(log_key(Revision::MAX)),
        );
        for item in self.tree.range(range) {
            let (raw_key, raw) = item.map_err(io)?;
            let rev = decode_log_key(&raw_key)?;
            if !visit(decode_event(rev, &raw)?)? {
                break;
            }
        }
        Ok(())
    }

    fn apply(&self, events: &[Event], current: Revision) -> Result<()> {
        let mut batch = ::sled::Batch::default();
        for event in events {
            match event {
                Event::Put { kv, .. } => batch.insert(kv_key(&kv.key), encode_kv(kv)),
                Event::Delete { prev, .. } => batch.remove(kv_key(&prev.key)),
            }
            batch.insert(&log_key(event.revision()), encode_event(event));
        }
        batch.insert(META_CURRENT, &encode_u64(current));
        self.tree.apply_batch(batch).map_err(io)
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        // One blocking task for sled's flush and the fdatasync. Not
        // `flush_async`: that runs the flush on sled's own thread pool,
        // where it waits for the log writes queued on the same pool, so
        // under a steady stream of commits the pool keeps starting threads
        // that end a moment later (a `tugboat server` loaded with 30,000
        // pods had started 34,800 threads; 16 with this).
        let (tree, file) = (self.tree.clone(), self.data_file.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                tree.flush().map_err(io)?;
                file.sync_data()
                    .map_err(|e| Error::Io(format!("fdatasync failed: {e}")))
            })
            .await
            .map_err(|e| Error::Io(format!("flush task failed: {e}")))?
        })
    }

    fn compact(&self, upto: Revision) -> Result<()> {
        while self.compact_chunk(upto)? {}
        Ok(())
    }
}
