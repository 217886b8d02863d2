//! Helpers shared by the integration tests: open either store, generate a
//! random write history with a model of the expected state, read watches
//! with a timeout.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;
use tugboat_storage::memory::{MemoryConfig, MemoryStorage};
use tugboat_storage::sled::{SledConfig, SledStorage};
use tugboat_storage::{DynStorage, Event, KeyValue, Revision, WatchStream};

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Memory,
    Sled,
}

/// History window settings, mapped onto either store's config.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub min_age: Duration,
    pub min_revisions: u64,
    pub interval: Duration,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            min_age: Duration::from_secs(300),
            min_revisions: 10_000,
            interval: Duration::from_secs(30),
        }
    }
}

/// An open store; keeps the temporary directory alive.
pub struct Subject {
    pub store: DynStorage,
    pub dir: Option<TempDir>,
}

pub fn open(kind: Kind) -> Subject {
    open_with(kind, Window::default())
}

pub fn open_with(kind: Kind, window: Window) -> Subject {
    match kind {
        Kind::Memory => Subject {
            store: Arc::new(MemoryStorage::with_config(MemoryConfig {
                history_min_age: window.min_age,
                history_min_revisions: window.min_revisions,
                compaction_interval: window.interval,
            })),
            dir: None,
        },
        Kind::Sled => {
            let dir = tempfile::tempdir().unwrap();
            let config = SledConfig {
                history_min_age: window.min_age,
                history_min_revisions: window.min_revisions,
                compaction_interval: window.interval,
                ..SledConfig::default()
            };
            let store = SledStorage::open(dir.path(), config).unwrap();
            Subject {
                store,
                dir: Some(dir),
            }
        }
    }
}

/// Declares `mod name { fn memory(); fn sled(); }` tests running the
/// scenario `name(kind)` against each store.
#[macro_export]
macro_rules! for_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$name(super::common::Kind::Memory).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sled() {
                    super::$name(super::common::Kind::Sled).await
                }
            }
        )*
    };
}

pub fn bytes(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

pub fn rng() -> StdRng {
    let seed = rand::random::<u64>();
    println!("random seed {seed}");
    StdRng::seed_from_u64(seed)
}

/// The next watch item, failing the test after 10 s.
pub async fn next_event(stream: &mut WatchStream) -> Event {
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("watch failed: {error}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within 10 s"),
    }
}

/// Asserts nothing more arrives for a short while.
pub async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
        panic!("unexpected watch item {item:?}");
    }
}

pub async fn take_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(next_event(stream).await);
    }
    events
}

/// A sequence of writes and what the store must look like after each.
#[derive(Default)]
pub struct Model {
    pub state: BTreeMap<String, KeyValue>,
    pub events: Vec<Event>,
    /// The state after each revision, as `(revision, state)`.
    pub snapshots: Vec<(Revision, BTreeMap<String, KeyValue>)>,
    next_id: u64,
}

impl Model {
    pub fn state_under(&self, prefix: &str) -> Vec<KeyValue> {
        under(&self.state, prefix)
    }

    pub fn events_after(&self, after: Revision, prefix: &str) -> Vec<Event> {
        self.events
            .iter()
            .filter(|e| e.revision() > after && e.key().starts_with(prefix))
            .cloned()
            .collect()
    }

    /// One random create, update or delete under `/w/a/` or `/w/b/`,
    /// checked against the model.
    pub async fn random_write(&mut self, store: &DynStorage, rng: &mut StdRng) {
        let choice = if self.state.is_empty() {
            0
        } else {
            rng.gen_range(0..4)
        };
        let event = match choice {
            0 | 1 => self.create(store, rng).await,
            2 => self.update(store, rng).await,
            _ => self.delete(store, rng).await,
        };
        assert_eq!(event.revision(), store.current_revision());
        self.record(event);
    }

    fn record(&mut self, event: Event) {
        match &event {
            Event::Put { kv, .. } => {
                self.state.insert(kv.key.clone(), kv.clone());
            }
            Event::Delete { prev, .. } => {
                self.state.remove(&prev.key);
            }
        }
        self.snapshots.push((event.revision(), self.state.clone()));
        self.events.push(event);
    }

    fn pick(&self, rng: &mut StdRng) -> KeyValue {
        let index = rng.gen_range(0..self.state.len());
        self.state.values().nth(index).cloned().unwrap()
    }

    async fn create(&mut self, store: &DynStorage, rng: &mut StdRng) -> Event {
        let group = if rng.gen_bool(0.5) { "a" } else { "b" };
        self.next_id += 1;
        let key = format!("/w/{group}/{:05}", self.next_id);
        let value = bytes(&format!("v{}", rng.gen::<u32>()));
        let kv = store.create(&key, value.clone()).await.unwrap();
        assert_eq!((kv.create_revision, &kv.value), (kv.mod_revision, &value));
        Event::Put { kv, prev: None }
    }

    async fn update(&mut self, store: &DynStorage, rng: &mut StdRng) -> Event {
        let prev = self.pick(rng);
        let value = bytes(&format!("u{}", rng.gen::<u32>()));
        let kv = store
            .update(&prev.key, value, Some(prev.mod_revision))
            .await
            .unwrap();
        assert_eq!(kv.create_revision, prev.create_revision);
        Event::Put {
            kv,
            prev: Some(prev),
        }
    }

    async fn delete(&mut self, store: &DynStorage, rng: &mut StdRng) -> Event {
        let prev = self.pick(rng);
        let (deleted, revision) = store
            .delete(&prev.key, Some(prev.mod_revision))
            .await
            .unwrap();
        assert_eq!(deleted, prev);
        Event::Delete { prev, revision }
    }
}

pub fn under(state: &BTreeMap<String, KeyValue>, prefix: &str) -> Vec<KeyValue> {
    state
        .values()
        .filter(|kv| kv.key.starts_with(prefix))
        .cloned()
        .collect()
}
