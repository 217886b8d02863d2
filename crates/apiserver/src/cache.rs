//! The watch cache: an in-memory copy of every resource, fed by one storage
//! watch, that serves lists and fans watch events out without touching disk.
//!
//! Like upstream's cacher, but with one storage watch for the whole registry
//! instead of one per resource: a single dispatcher task reads every change in
//! revision order and applies it to the cache of its resource. That gives all
//! caches one shared "processed revision", so a consistent list only has to
//! wait until the dispatcher has caught up with the revision storage had when
//! the request arrived (read-your-writes), even for resources that saw no
//! change of their own.
//!
//! Invariant: the dispatcher applies an event to a resource cache and
//! advances the processed revision while holding that cache's write lock, so
//! a reader that holds the read lock sees a snapshot consistent with the
//! revision it reads.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use api::resources::{ResourceInfo, RESOURCES};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use storage::{DynStorage, Event, Revision};

use crate::cached_json::{CachedJson, Packer};
use crate::selection::Attrs;
use tokio::sync::{broadcast, watch};

use crate::error::{ApiError, ApiResult};

/// How many recent events each resource keeps, by default, for watches that
/// resume from an older revision; older ones come from storage's history.
pub const DEFAULT_WINDOW: usize = 2_000;

/// How many events each resource's live feed holds for watchers that have
/// not read them yet. A watcher further behind is closed and resumes from
/// the window (see `watch::follow`). The feed keeps its last events until
/// they are overwritten, each with the object and its previous version, so
/// this is memory held for every busy resource. 1,024 events is about
/// half a second of pod changes while 30,000 pods start; the window
/// ([`DEFAULT_WINDOW`]) reaches twice as far back.
const LIVE_FEED_CAPACITY: usize = 1_024;

/// How long a consistent read waits for the cache to catch up.
const FRESHNESS_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// An object as the watch cache keeps it: its JSON with the
/// resourceVersion filled in, ready to be written into a list or a watch
/// line, and the attributes selectors look at, so selecting never parses
/// it. A `serde_json::Value` of a pod is ten times its JSON; the cache
/// holds every object of the cluster, so it keeps the bytes, compressed
/// (see [`crate::cached_json`]).
#[derive(Debug)]
pub struct CachedObject {
    /// The revision of the write this is the result of.
    pub revision: Revision,
    json: CachedJson,
    pub attrs: Attrs,
}

impl CachedObject {
    /// From an object that already carries its resourceVersion, its JSON
    /// kept as is: for objects read from storage for one request.
    pub fn new(resource: &ResourceInfo, object: &Value, revision: Revision) -> Self {
        CachedObject {
            revision,
            json: CachedJson::plain(to_json(object)),
            attrs: Attrs::of(resource, object),
        }
    }

    /// From stored bytes, stamped with `revision`, kept as is.
    pub fn from_stored(resource: &ResourceInfo, value: &[u8], revision: Revision) -> Self {
        Self::new(resource, &decode_stored(value, revision), revision)
    }

    /// From stored bytes, stamped with `revision`, compressed by the
    /// resource's packer: for objects the cache keeps.
    fn packed(
        resource: &ResourceInfo,
        value: &[u8],
        revision: Revision,
        packer: &Mutex<Packer>,
    ) -> Self {
        let object = decode_stored(value, revision);
        let json = to_json(&object);
        CachedObject {
            revision,
            json: packer.lock().unwrap_or_else(|e| e.into_inner()).pack(json),
            attrs: Attrs::of(resource, &object),
        }
    }

    /// The length of the object's JSON.
    pub fn json_len(&self) -> usize {
        self.json.len()
    }

    /// Append the object's JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.json.write_to(out)
    }

    /// The object parsed, for the renderings and checks that need it.
    pub fn value(&self) -> Value {
        // The bytes were written from a Value.
        serde_json::from_slice(&self.json.bytes()).unwrap_or(Value::Null)
    }

    /// The same object as deleted at `revision` (upstream sends a deleted
    /// object with the delete's resourceVersion).
    fn deleted_at(&self, revision: Revision) -> Self {
        let mut object = self.value();
        set_resource_version(&mut object, revision);
        CachedObject {
            revision,
            json: self.json.sibling(to_json(&object)),
            attrs: self.attrs.clone(),
        }
    }
}

fn to_json(object: &Value) -> Vec<u8> {
    // Writing a Value into a Vec cannot fail.
    serde_json::to_vec(object).unwrap_or_default()
}

/// One change to one object, as watchers see it.
#[derive(Debug)]
pub struct CachedEvent {
    pub event_type: EventType,
    pub key: String,
    /// The object after the change (for deletes, the deleted object with the
    /// delete's resourceVersion, as upstream sends it).
    pub object: Arc<CachedObject>,
    /// The object before the change, for selector transitions.
    pub prev: Option<Arc<CachedObject>>,
    pub revision: Revision,
}

impl CachedEvent {
    pub fn new(
        event_type: EventType,
        key: String,
        object: Arc<CachedObject>,
        prev: Option<Arc<CachedObject>>,
        revision: Revision,
    ) -> Self {
        CachedEvent {
            event_type,
            key,
            object,
            prev,
            revision,
        }
    }

    /// The watch-stream line for this event (JSON plus newline). Built per
    /// watcher: decompressing the object's bytes into the line is cheap,
    /// and keeping a second serialized form beside every event the cache
    /// retains is not.
    pub fn encoded(&self) -> Bytes {
        encode_object_line(self.event_type.as_str(), &self.object)
    }
}

/// One watch-stream line: `{"type":T,"object":O}\n`.
pub fn encode_watch_event(event_type: &str, object: &Value) -> Bytes {
    // Writing a Value into a Vec cannot fail.
    encode_watch_line(event_type, &serde_json::to_vec(object).unwrap_or_default())
}

/// One watch-stream line around an object's JSON.
pub fn encode_watch_line(event_type: &str, json: &[u8]) -> Bytes {
    watch_line(event_type, json.len(), |out| out.extend_from_slice(json))
}

/// One watch-stream line around a cached object.
pub fn encode_object_line(event_type: &str, object: &CachedObject) -> Bytes {
    watch_line(event_type, object.json_len(), |out| object.write_json(out))
}

fn watch_line(event_type: &str, json_len: usize, write_json: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut out = Vec::with_capacity(json_len + 32);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(event_type.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    write_json(&mut out);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

/// Decode stored bytes into an object carrying its resourceVersion.
pub fn decode_stored(value: &[u8], revision: Revision) -> Value {
    let mut obj: Value = serde_json::from_slice(value).unwrap_or(Value::Null);
    set_resource_version(&mut obj, revision);
    obj
}

pub fn set_resource_version(obj: &mut Value, revision: Revision) {
    if obj.is_object() {
        api::meta::metadata_mut(obj).insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

/// Turn a storage event into a cached one.
pub fn from_storage_event(resource: &ResourceInfo, event: &Event) -> CachedEvent {
    let decode = |kv: &storage::KeyValue, revision| {
        Arc::new(CachedObject::from_stored(resource, &kv.value, revision))
    };
    match event {
        Event::Put { kv, prev } => {
            let object = decode(kv, kv.mod_revision);
            let prev = prev.as_ref().map(|p| decode(p, p.mod_revision));
            let event_type = if prev.is_some() {
                EventType::Modified
            } else {
                EventType::Added
            };
            CachedEvent::new(event_type, kv.key.clone(), object, prev, kv.mod_revision)
        }
        Event::Delete { prev, revision } => {
            let before = decode(prev, prev.mod_revision);
            let object = Arc::new(before.deleted_at(*revision));
            CachedEvent::new(
                EventType::Deleted,
                prev.key.clone(),
                object,
                Some(before),
                *revision,
            )
        }
    }
}

#[derive(Default)]
struct CacheState {
    objects: BTreeMap<String, Arc<CachedObject>>,
    window: VecDeque<Arc<CachedEvent>>,
    /// Every event of this resource after this revision is in `window`.
    window_start: Revision,
}

impl CacheState {
    /// The objects whose keys start with `prefix`, in key order.
    fn under(&self, prefix: &str) -> Vec<Arc<CachedObject>> {
        self.objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The cache of one resource.
pub struct ResourceCache {
    pub resource: &'static ResourceInfo,
    window: usize,
    state: RwLock<CacheState>,
    events: broadcast::Sender<Arc<CachedEvent>>,
    /// Compresses the objects this cache keeps. Only the dispatcher (and
    /// the initial load before it) packs, so the lock is never contended.
    packer: Mutex<Packer>,
}

/// A watcher's starting point: the events it missed, then the live feed.
pub struct Subscription {
    pub backlog: Vec<Arc<CachedEvent>>,
    pub live: broadcast::Receiver<Arc<CachedEvent>>,
}

impl ResourceCache {
    fn new(resource: &'static ResourceInfo, window: usize) -> Self {
        ResourceCache {
            resource,
            window: window.max(1),
            state: RwLock::new(CacheState::default()),
            events: broadcast::channel(LIVE_FEED_CAPACITY).0,
            packer: Mutex::default(),
        }
    }

    /// Objects under `prefix`, in key order, with the revision they are
    /// consistent at.
    pub fn list(
        &self,
        prefix: &str,
        revision: &watch::Sender<Revision>,
    ) -> (Vec<Arc<CachedObject>>, Revision) {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        (state.under(prefix), *revision.borrow())
    }

    /// One object by key.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.objects.get(key).cloned()
    }

    /// Start watching after `after`; `None` if the window no longer reaches
    /// back that far (the caller falls back to storage history).
    pub fn subscribe(&self, after: Revision) -> Option<Subscription> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if after < state.window_start {
            return None;
        }
        let backlog = state
            .window
            .iter()
            .filter(|e| e.revision > after)
            .cloned()
            .collect();
        Some(Subscription {
            backlog,
            live: self.events.subscribe(),
        })
    }

    /// A snapshot of the current objects plus a live feed from that point:
    /// the initial state of a watch without a resourceVersion.
    pub fn snapshot_and_subscribe(
        &self,
        prefix: &str,
        revision: &watch::Sender<Revision>,
    ) -> (
        Vec<Arc<CachedObject>>,
        Revision,
        broadcast::Receiver<Arc<CachedEvent>>,
    ) {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        (
            state.under(prefix),
            *revision.borrow(),
            self.events.subscribe(),
        )
    }

    /// Apply one storage event. Only the new value is parsed: the previous
    /// object (and a deleted one) is already in the cache, so updates and
    /// deletes reuse it instead of parsing storage's copy again.
    fn ingest(&self, event: &Event, revision: &watch::Sender<Revision>) {
        let resource = self.resource;
        // Parse outside the lock: readers should not wait for it.
        let object = match event {
            Event::Put { kv, .. } => Some(Arc::new(CachedObject::packed(
                resource,
                &kv.value,
                kv.mod_revision,
                &self.packer,
            ))),
            Event::Delete { .. } => None,
        };
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let cached = |state: &CacheState, kv: &storage::KeyValue| {
            state
                .objects
                .get(&kv.key)
                .filter(|o| o.revision == kv.mod_revision)
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(CachedObject::from_stored(
                        resource,
                        &kv.value,
                        kv.mod_revision,
                    ))
                })
        };
        let event = match (event, object) {
            (Event::Put { kv, prev }, Some(object)) => {
                let prev = prev.as_ref().map(|p| cached(&state, p));
                let event_type = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                CachedEvent::new(event_type, kv.key.clone(), object, prev, kv.mod_revision)
            }
            (Event::Delete { prev, revision }, _) => {
                let before = cached(&state, prev);
                let gone = before.deleted_at(*revision);
                CachedEvent::new(
                    EventType::Deleted,
                    prev.key.clone(),
                    Arc::new(gone),
                    Some(before),
                    *revision,
                )
            }
            (Event::Put { .. }, None) => return,
        };
        Self::apply_locked(
            &mut state,
            Arc::new(event),
            revision,
            self.window,
            &self.events,
        );
    }

    fn apply_locked(
        state: &mut CacheState,
        event: Arc<CachedEvent>,
        revision: &watch::Sender<Revision>,
        window: usize,
        events: &broadcast::Sender<Arc<CachedEvent>>,
    ) {
        match event.event_type {
            EventType::Deleted => {
                state.objects.remove(&event.key);
            }
            _ => {
                state
                    .objects
                    .insert(event.key.clone(), event.object.clone());
            }
        }
        state.window.push_back(event.clone());
        if state.window.len() > window {
            if let Some(old) = state.window.pop_front() {
                state.window_start = old.revision;
            }
        }
        // Broadcast before the revision moves: a watcher that sees revision
        // R with nothing queued has received every event up to R (its
        // bookmarks rely on it).
        let at = event.revision;
        // Nobody listening is fine.
        let _ = events.send(event);
        revision.send_replace(at);
    }
}

/// Whether the watch cache keeps a resource. Events are left to storage, as
/// upstream's default watch cache sizes do (`events: 0`): a busy cluster
/// has several per pod, each written once and then rarely read, and
/// keeping them would cost more memory than the pods themselves. Their
/// lists and watches read storage directly.
pub fn is_cached(resource: &ResourceInfo) -> bool {
    resource.plural != "events"
}

/// The caches of every cached resource plus the dispatcher that feeds them.
pub struct WatchCache {
    storage: DynStorage,
    caches: HashMap<String, Arc<ResourceCache>>,
    revision: watch::Sender<Revision>,
    /// False once the storage feed has ended: the caches no longer follow
    /// storage, and `/readyz` says so.
    feeding: std::sync::atomic::AtomicBool,
}

impl WatchCache {
    /// Load every resource from storage and start following its changes.
    pub async fn start(storage: DynStorage, window: usize) -> Result<Arc<Self>, storage::Error> {
        let caches: HashMap<String, Arc<ResourceCache>> = RESOURCES
            .iter()
            .filter(|r| is_cached(r))
            .map(|r| (r.key_prefix(), Arc::new(ResourceCache::new(r, window))))
            .collect();
        let initial = storage.list("/registry/", Default::default()).await?;
        for kv in &initial.items {
            if let Some(cache) = find_cache(&caches, &kv.key) {
                let mut state = cache.state.write().unwrap_or_else(|e| e.into_inner());
                let object =
                    CachedObject::packed(cache.resource, &kv.value, kv.mod_revision, &cache.packer);
                state.objects.insert(kv.key.clone(), Arc::new(object));
            }
        }
        for cache in caches.values() {
            cache
                .state
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .window_start = initial.revision;
        }
        let (revision, _) = watch::channel(initial.revision);
        let this = Arc::new(WatchCache {
            storage: storage.clone(),
            caches,
            revision,
            feeding: std::sync::atomic::AtomicBool::new(true),
        });
        let stream = storage.watch("/registry/", initial.revision)?;
        tokio::spawn(dispatch(Arc::downgrade(&this), stream));
        Ok(this)
    }

    /// The cache of a resource; `None` for those [`is_cached`] leaves to
    /// storage.
    pub fn resource(&self, resource: &ResourceInfo) -> Option<&Arc<ResourceCache>> {
        self.caches.get(&resource.key_prefix())
    }

    pub fn revision(&self) -> &watch::Sender<Revision> {
        &self.revision
    }

    /// Wait until every write acknowledged before this call is in the cache.
    pub async fn wait_fresh(&self) -> ApiResult<Revision> {
        let target = self.storage.current_revision();
        self.reach(target).await.ok_or_else(|| ApiError::Timeout {
            message: format!(
                "Timeout: Too large resource version: {target}, the watch cache is behind"
            ),
        })
    }

    /// The processed revision once it reaches `target`, or `None` after
    /// [`FRESHNESS_TIMEOUT`].
    async fn reach(&self, target: Revision) -> Option<Revision> {
        let mut rx = self.revision.subscribe();
        let waited = tokio::time::timeout(FRESHNESS_TIMEOUT, rx.wait_for(|r| *r >= target))
            .await
            .map(|r| r.map(|r| *r));
        waited.ok()?.ok()
    }

    /// Wait until the cache has reached `target` (resourceVersionMatch=NotOlderThan).
    pub async fn wait_for(&self, target: Revision) -> ApiResult<Revision> {
        if target > self.storage.current_revision() {
            return Err(ApiError::Timeout {
                message: format!(
                    "Too large resource version: {target}, current resource version: {}",
                    self.storage.current_revision()
                ),
            });
        }
        self.reach(target).await.ok_or_else(|| ApiError::Timeout {
            message: format!("Too large resource version: {target}"),
        })
    }

    pub fn storage(&self) -> &DynStorage {
        &self.storage
    }

    /// Whether the caches still follow storage.
    pub fn is_feeding(&self) -> bool {
        self.feeding.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn find_cache<'a>(
    caches: &'a HashMap<String, Arc<ResourceCache>>,
    key: &str,
) -> Option<&'a Arc<ResourceCache>> {
    // `/registry/{group}/{plural}/...`: the prefix is the first three segments.
    let mut idx = 0;
    for _ in 0..4 {
        idx += key[idx..].find('/')? + 1;
    }
    caches.get(&key[..idx])
}

async fn dispatch(cache: std::sync::Weak<WatchCache>, mut stream: storage::WatchStream) {
    while let Some(item) = stream.next().await {
        let Some(cache) = cache.upgrade() else {
            return;
        };
        match item {
            Ok(event) => {
                let revision = event.revision();
                match find_cache(&cache.caches, event.key()) {
                    Some(resource) => resource.ingest(&event, &cache.revision),
                    None => {
                        cache.revision.send_replace(revision);
                    }
                }
            }
            Err(error) => {
                // The dispatcher reads from the newest revision and never
                // falls behind compaction in practice; if it does, the
                // process cannot serve consistent data any more.
                tracing::error!(%error, "watch cache feed failed");
                cache
                    .feeding
                    .store(false, std::sync::atomic::Ordering::Relaxed);
                return;
            }
        }
    }
    if let Some(cache) = cache.upgrade() {
        tracing::error!("watch cache feed ended");
        cache
            .feeding
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keys_are_found_from_object_keys() {
        let caches: HashMap<String, Arc<ResourceCache>> = RESOURCES
            .iter()
            .map(|r| {
                (
                    r.key_prefix(),
                    Arc::new(ResourceCache::new(r, DEFAULT_WINDOW)),
                )
            })
            .collect();
        let c = find_cache(&caches, "/registry/core/pods/default/web").unwrap();
        assert_eq!(c.resource.plural, "pods");
        let n = find_cache(&caches, "/registry/core/nodes/n1").unwrap();
        assert_eq!(n.resource.plural, "nodes");
        assert!(find_cache(&caches, "/registry/x").is_none());
    }

    #[test]
    fn watch_lines_are_one_json_object_per_line() {
        let line = encode_watch_event("ADDED", &serde_json::json!({"a": 1}));
        assert_eq!(&line[..], b"{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n");
    }
}
