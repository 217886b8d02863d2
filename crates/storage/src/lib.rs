//! MVCC key-value storage for the API server.
//!
//! The API server persists every object under a key shaped like upstream's
//! etcd layout (`/registry/{group}/{resource}/{namespace}/{name}`) through the
//! small [`Storage`] trait below. Its contract is the one etcd gives the
//! Kubernetes API server:
//!
//! - one cluster-wide revision that strictly increases; every successful write
//!   (create, update, delete) takes the next one, and `metadata.resourceVersion`
//!   is that revision as a decimal string;
//! - `update` and `delete` may be guarded by the expected mod revision of the
//!   key, which is where HTTP 409 Conflict comes from;
//! - `list` is consistent at one revision, also at an older revision still in
//!   the history window (for `limit`/`continue` pagination);
//! - `transact` applies several writes all-or-nothing, each guarded like
//!   the single-key ones (etcd's `Txn` with `If` guards), so a write and the
//!   keys that record what it reserved can never be seen apart;
//! - `watch(prefix, rev)` yields every change after `rev`, in revision order,
//!   none lost, none repeated; below the compacted revision it fails with
//!   [`Error::Expired`] (HTTP 410 Gone);
//! - an acknowledged write is on disk: implementations that persist flush
//!   before they answer, batching concurrent writers into one flush (group
//!   commit) so durability does not cost throughput.
//!
//! Two implementations: [`sled::SledStorage`] (the embedded default) and
//! [`memory::MemoryStorage`] (for tests; same semantics, nothing on disk).

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

mod engine;
pub mod memory;
pub mod sled;

/// A revision of the whole store. `0` means "nothing written yet".
pub type Revision = u64;

/// One stored key at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    /// The stored bytes (the API server stores JSON).
    pub value: Bytes,
    /// The revision that created this key (unchanged by updates).
    pub create_revision: Revision,
    /// The revision of the last write to this key.
    pub mod_revision: Revision,
}

/// One change, as delivered by [`Storage::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A create (when `prev` is `None`) or an update.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A delete at `revision`; `prev` is the value that was deleted.
    Delete { prev: KeyValue, revision: Revision },
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// The answer to a [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// Keys in ascending byte order.
    pub items: Vec<KeyValue>,
    /// The revision the list is consistent at.
    pub revision: Revision,
    /// Whether more keys matched beyond `limit`.
    pub more: bool,
    /// How many matching keys come after the last returned one (only counted
    /// when `more` is true; upstream's `remainingItemCount`).
    pub remaining: u64,
}

/// Options of a [`Storage::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Return only keys strictly greater than this one (pagination).
    pub start_after: Option<String>,
    /// At most this many items; `None` or `Some(0)` means no limit.
    pub limit: Option<usize>,
    /// List as of this revision (must not be compacted, nor in the future);
    /// `None` means the current revision.
    pub revision: Option<Revision>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    /// The guard revision did not match: somebody else wrote first.
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    /// The requested revision has been compacted away.
    #[error("revision {requested} is compacted (oldest available is {compacted})")]
    Expired {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current one.
    #[error("revision {requested} is in the future (current is {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("storage is closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One write of a [`Storage::transact`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Create `key`; the transaction fails with `AlreadyExists` if it exists.
    Create { key: String, value: Bytes },
    /// Replace an existing `key`, guarded like [`Storage::update`].
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    /// Delete an existing `key`, guarded like [`Storage::delete`].
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl TxnOp {
    pub fn key(&self) -> &str {
        match self {
            TxnOp::Create { key, .. } | TxnOp::Update { key, .. } | TxnOp::Delete { key, .. } => {
                key
            }
        }
    }
}

/// What one op of a successful transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnResult {
    /// A create or update: the key as written.
    Put(KeyValue),
    /// A delete: the value deleted, and the delete's revision.
    Deleted(KeyValue, Revision),
}

/// A stream of changes; it ends only when the store shuts down. An item is
/// `Err(Error::Expired)` if the watcher fell so far behind that the history
/// it needs was compacted (the watcher must then re-list).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// The storage contract; see the crate docs.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Create `key`; fails with `AlreadyExists` if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replace the value of an existing `key`. With `expected = Some(rev)`,
    /// fails with `Conflict` unless the key's mod revision is `rev`.
    /// Fails with `NotFound` if the key does not exist.
    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>)
        -> Result<KeyValue>;

    /// Delete `key`, guarded like `update`; returns the deleted value with
    /// the delete's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)>;

    /// Apply `ops` atomically, in order, each checked against the effects of
    /// the earlier ones: either every op succeeds (and readers and watchers
    /// see all of them at once) or none is applied and the error of the first
    /// failing op is returned (`AlreadyExists`, `NotFound` or `Conflict`,
    /// naming its key). Each op takes its own consecutive revision, so the
    /// log and watches stay one event per revision. An empty list succeeds.
    async fn transact(&self, ops: Vec<TxnOp>) -> Result<Vec<TxnResult>>;

    /// The current value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, consistent at one revision.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult>;

    /// Every change to keys starting with `prefix` after revision `after`
    /// (exclusive), in order. `after` below the compacted revision fails with
    /// `Expired`; `after` above the current revision waits for it.
    fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The revision of the last successful write.
    fn current_revision(&self) -> Revision;

    /// The oldest revision a watch or list may still start from.
    fn compacted_revision(&self) -> Revision;

    /// Forget history at or below `revision` (never the current values).
    async fn compact(&self, revision: Revision) -> Result<()>;
}

/// A shared handle to some storage.
pub type DynStorage = Arc<dyn Storage>;
