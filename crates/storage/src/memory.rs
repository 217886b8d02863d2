//! In-memory storage: the same engine as sled, with ordered maps for a disk.
//!
//! Tests of the API server run against this, so it must not merely resemble
//! the durable store: it *is* the shared engine (`crate::engine`) with a
//! backend that keeps current values and the log in `BTreeMap`s. Writes
//! commit inline (there is no flush worth batching) and compaction checks run
//! inline on writes, at most once per `compaction_interval`, so constructing
//! one needs no tokio runtime.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::engine::{
    delegate_storage, Backend, Engine, HistoryPolicy, Meta, ScanEntry, ScanVisit, Visit,
    DEFAULT_COMPACTION_INTERVAL,
};
use crate::{Event, KeyValue, Result, Revision};

/// How much history [`MemoryStorage`] keeps; see [`crate::sled::SledConfig`]
/// for the meaning of each field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryConfig {
    pub history_min_age: Duration,
    pub history_min_revisions: u64,
    pub compaction_interval: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            history_min_age: Duration::from_secs(5 * 60),
            history_min_revisions: 10_000,
            compaction_interval: DEFAULT_COMPACTION_INTERVAL,
        }
    }
}

/// Storage that lives in memory only; same semantics as the sled store.
pub struct MemoryStorage {
    engine: Engine<MemoryBackend>,
}

impl MemoryStorage {
    /// An empty store with the default history window.
    pub fn new() -> Self {
        Self::with_config(MemoryConfig::default())
    }

    /// An empty store with the given history window.
    pub fn with_config(config: MemoryConfig) -> Self {
        let policy = HistoryPolicy {
            min_age: config.history_min_age,
            min_revisions: config.history_min_revisions,
            interval: config.compaction_interval,
        };
        MemoryStorage {
            engine: Engine::direct(MemoryBackend::default(), Meta::default(), policy),
        }
    }
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

delegate_storage!(MemoryStorage);

#[derive(Debug, Default)]
struct State {
    kv: BTreeMap<String, KeyValue>,
    log: BTreeMap<Revision, Event>,
}

/// Current values and the log, in ordered maps.
#[derive(Debug, Default)]
struct MemoryBackend {
    state: RwLock<State>,
}

impl MemoryBackend {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ScanEntry for KeyValue {
    fn key(&self) -> &str {
        &self.key
    }

    fn load(&self) -> Result<KeyValue> {
        Ok(self.clone())
    }
}

impl Backend for MemoryBackend {
    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.read().kv.get(key).cloned())
    }

    fn scan(&self, prefix: &str, start_after: Option<&str>, visit: ScanVisit<'_>) -> Result<()> {
        let state = self.read();
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let range = state.kv.range::<str, _>((lower, Bound::Unbounded));
        for (_, kv) in range.take_while(|(key, _)| key.starts_with(prefix)) {
            if !visit(kv)? {
                break;
            }
        }
        Ok(())
    }

    fn scan_log(&self, after: Revision, visit: Visit<'_, Event>) -> Result<()> {
        let state = self.read();
        for event in state.log.range((Bound::Excluded(after), Bound::Unbounded)) {
            if !visit(event.1.clone())? {
                break;
            }
        }
        Ok(())
    }

    fn apply(&self, events: &[Event], _current: Revision) -> Result<()> {
        let mut state = self.write();
        for event in events {
            match event {
                Event::Put { kv, .. } => state.kv.insert(kv.key.clone(), kv.clone()),
                Event::Delete { prev, .. } => state.kv.remove(&prev.key),
            };
            state.log.insert(event.revision(), event.clone());
        }
        Ok(())
    }

    fn flush(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(futures::future::ready(Ok(())))
    }

    fn compact(&self, upto: Revision) -> Result<()> {
        let mut state = self.write();
        let kept = state.log.split_off(&upto.saturating_add(1));
        state.log = kept;
        Ok(())
    }
}
