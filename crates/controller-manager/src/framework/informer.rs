//! Shared informers, as client-go's: one kube-rs watcher per resource type
//! keeps an in-memory store current, and every controller that subscribes
//! sees each change with the object before and after it.
//!
//! - The store is ordered by (namespace, name), so one namespace lists as a
//!   range.
//! - It is indexed by controller owner UID ([`Informer::controlled_by`]) and
//!   keeps orphans (no controller reference) per namespace
//!   ([`Informer::orphans`]): a ReplicaSet claims its pods without scanning
//!   every pod in the namespace.
//! - A relist (after a 410 or a broken watch) is diffed against the store,
//!   so subscribers see the adds, updates and deletes they missed, never a
//!   second copy of what they already saw.
//! - `metadata.managedFields` is dropped on the way in (no controller
//!   reads it; it is often the bulk of an object).
//! - [`Informer::subscribe`] first replays the store as `Added`, as
//!   client-go's `AddEventHandler` does, so a late subscriber misses
//!   nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

/// Namespace (empty for cluster-scoped objects) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// A cluster-scoped object's key.
    pub fn cluster(name: impl Into<String>) -> Self {
        ObjectKey::new("", name)
    }

    /// The key of `object`.
    pub fn of<K: Resource>(object: &K) -> Self {
        let meta = object.meta();
        ObjectKey::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// One change to the store, as an event handler sees it.
#[derive(Debug, Clone)]
pub enum Change<K> {
    Added(Arc<K>),
    Updated { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object as it is now (or was last, for a delete).
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Added(k) | Change::Deleted(k) => k,
            Change::Updated { new, .. } => new,
        }
    }

    /// The object before the change, for updates and deletes.
    pub fn old(&self) -> Option<&Arc<K>> {
        match self {
            Change::Added(_) => None,
            Change::Updated { old, .. } => Some(old),
            Change::Deleted(k) => Some(k),
        }
    }
}

/// What an informer's bounds need from a resource type.
pub trait Object:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}
impl<K> Object for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

struct Store<K> {
    objects: BTreeMap<ObjectKey, Arc<K>>,
    /// Controller owner UID → objects it controls.
    controlled: HashMap<String, BTreeSet<ObjectKey>>,
    /// Namespace → objects without a controller reference.
    orphans: HashMap<String, BTreeSet<ObjectKey>>,
}

impl<K: Object> Store<K> {
    fn new() -> Self {
        Store {
            objects: BTreeMap::new(),
            controlled: HashMap::new(),
            orphans: HashMap::new(),
        }
    }

    fn index(&mut self, key: &ObjectKey, object: &K, insert: bool) {
        let set = match controller_uid(object) {
            Some(uid) => self.controlled.entry(uid.to_string()).or_default(),
            None => self.orphans.entry(key.namespace.clone()).or_default(),
        };
        if insert {
            set.insert(key.clone());
        } else {
            set.remove(key);
        }
    }

    /// Insert or replace; returns the change.
    fn put(&mut self, mut object: K) -> Option<Change<K>> {
        component_base::transform::for_cache(&mut object);
        let key = ObjectKey::of(&object);
        // Shared with the other components of a `tugboat server`.
        let new = component_base::intern::shared(object);
        let old = self.objects.insert(key.clone(), new.clone());
        if let Some(old) = &old {
            if old.meta().resource_version == new.meta().resource_version
                && old.meta().resource_version.is_some()
            {
                return None;
            }
            self.index(&key, old, false);
        }
        self.index(&key, &new, true);
        Some(match old {
            Some(old) => Change::Updated { old, new },
            None => Change::Added(new),
        })
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Change<K>> {
        let old = self.objects.remove(key)?;
        self.index(key, &old, false);
        Some(Change::Deleted(old))
    }
}

/// The UID of `object`'s controller owner, if it has one.
pub fn controller_uid<K: Resource>(object: &K) -> Option<&str> {
    object
        .meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

struct Shared<K> {
    store: RwLock<Store<K>>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Change<K>>>>,
    synced: watch::Sender<bool>,
}

/// A shared, watched store of one resource type. Cheap to clone.
pub struct Informer<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            shared: self.shared.clone(),
        }
    }
}

impl<K: Object> Informer<K> {
    /// An informer over `api`, watching from now on the current runtime
    /// until the process ends.
    pub fn start(api: Api<K>) -> Self {
        let informer = Informer::empty();
        tokio::spawn(informer.clone().run(api));
        informer
    }

    /// An informer fed by hand ([`Informer::apply`], [`Informer::delete`]):
    /// for tests of event handlers without a server.
    pub fn empty() -> Self {
        let (synced, _) = watch::channel(false);
        Informer {
            shared: Arc::new(Shared {
                store: RwLock::new(Store::new()),
                subscribers: Mutex::new(Vec::new()),
                synced,
            }),
        }
    }

    async fn run(self, api: Api<K>) {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut relist: Option<BTreeMap<ObjectKey, K>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => relist = Some(BTreeMap::new()),
                Ok(watcher::Event::InitApply(object)) => {
                    if let Some(listed) = relist.as_mut() {
                        listed.insert(ObjectKey::of(&object), object);
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(listed) = relist.take() {
                        self.replace(listed);
                    }
                    self.shared.synced.send_replace(true);
                }
                Ok(watcher::Event::Apply(object)) => self.apply(object),
                Ok(watcher::Event::Delete(object)) => self.delete(&ObjectKey::of(&object)),
                Err(error) => {
                    tracing::debug!(kind = %K::kind(&()), %error, "watch failed; retrying")
                }
            }
        }
    }

    /// Replace the store with a fresh list, telling subscribers the diff.
    fn replace(&self, listed: BTreeMap<ObjectKey, K>) {
        let mut changes = Vec::new();
        {
            let mut store = self.shared.store.write().unwrap_or_else(|e| e.into_inner());
            let gone: Vec<ObjectKey> = store
                .objects
                .keys()
                .filter(|k| !listed.contains_key(*k))
                .cloned()
                .collect();
            for key in gone {
                changes.extend(store.remove(&key));
            }
            for (_, object) in listed {
                changes.extend(store.put(object));
            }
        }
        for change in changes {
            self.notify(change);
        }
    }

    /// Record an added or changed object.
    pub fn apply(&self, object: K) {
        let change = self
            .shared
            .store
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .put(object);
        if let Some(change) = change {
            self.notify(change);
        }
    }

    /// Record a deleted object.
    pub fn delete(&self, key: &ObjectKey) {
        let change = self
            .shared
            .store
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if let Some(change) = change {
            self.notify(change);
        }
    }

    fn notify(&self, change: Change<K>) {
        let mut subscribers = self
            .shared
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        subscribers.retain(|s| s.send(change.clone()).is_ok());
    }

    /// Every change from now on, after the current contents as `Added`.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Change<K>> {
        let (tx, rx) = mpsc::unbounded_channel();
        // Hold the store's read lock while registering, so no change falls
        // between the replay and the subscription.
        let store = self.shared.store.read().unwrap_or_else(|e| e.into_inner());
        for object in store.objects.values() {
            let _ = tx.send(Change::Added(object.clone()));
        }
        self.shared
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        drop(store);
        rx
    }

    /// Wait until the first list has been loaded.
    pub async fn wait_synced(&self) {
        let mut synced = self.shared.synced.subscribe();
        let _ = synced.wait_for(|s| *s).await;
    }

    /// Whether the first list has been loaded.
    pub fn has_synced(&self) -> bool {
        *self.shared.synced.borrow()
    }

    fn read<T>(&self, f: impl FnOnce(&Store<K>) -> T) -> T {
        f(&self.shared.store.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The object at `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read(|s| s.objects.get(key).cloned())
    }

    /// Every object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read(|s| s.objects.values().cloned().collect())
    }

    /// Every object in `namespace`.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let start = ObjectKey::new(namespace, "");
        self.read(|s| {
            s.objects
                .range(start..)
                .take_while(|(k, _)| k.namespace == namespace)
                .map(|(_, v)| v.clone())
                .collect()
        })
    }

    /// The objects whose controller owner has `uid`.
    pub fn controlled_by(&self, uid: &str) -> Vec<Arc<K>> {
        self.read(|s| match s.controlled.get(uid) {
            Some(keys) => keys
                .iter()
                .filter_map(|k| s.objects.get(k).cloned())
                .collect(),
            None => Vec::new(),
        })
    }

    /// The objects in `namespace` that have no controller owner.
    pub fn orphans(&self, namespace: &str) -> Vec<Arc<K>> {
        self.read(|s| match s.orphans.get(namespace) {
            Some(keys) => keys
                .iter()
                .filter_map(|k| s.objects.get(k).cloned())
                .collect(),
            None => Vec::new(),
        })
    }

    /// How many objects the store holds.
    pub fn len(&self) -> usize {
        self.read(|s| s.objects.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(ns: &str, name: &str, rv: &str, owner: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn changes_carry_the_old_object_and_indexes_follow_owners() {
        let informer = Informer::<Pod>::empty();
        let mut changes = informer.subscribe();
        informer.apply(pod("a", "p", "1", None));
        assert_eq!(informer.orphans("a").len(), 1);
        informer.apply(pod("a", "p", "2", Some("rs-1")));
        assert!(informer.orphans("a").is_empty());
        assert_eq!(informer.controlled_by("rs-1").len(), 1);
        // The same resourceVersion again is no change.
        informer.apply(pod("a", "p", "2", Some("rs-1")));
        informer.delete(&ObjectKey::new("a", "p"));
        assert!(informer.controlled_by("rs-1").is_empty());

        assert!(matches!(changes.try_recv(), Ok(Change::Added(_))));
        match changes.try_recv() {
            Ok(Change::Updated { old, new }) => {
                assert_eq!(old.metadata.resource_version.as_deref(), Some("1"));
                assert_eq!(new.metadata.resource_version.as_deref(), Some("2"));
            }
            other => panic!("expected an update, got {other:?}"),
        }
        assert!(matches!(changes.try_recv(), Ok(Change::Deleted(_))));
        assert!(changes.try_recv().is_err());
    }

    #[test]
    fn a_relist_reports_only_the_difference() {
        let informer = Informer::<Pod>::empty();
        informer.apply(pod("a", "kept", "1", None));
        informer.apply(pod("a", "gone", "1", None));
        informer.apply(pod("a", "changed", "1", None));
        let mut changes = informer.subscribe();
        for _ in 0..3 {
            assert!(matches!(changes.try_recv(), Ok(Change::Added(_))));
        }
        let listed = [
            pod("a", "kept", "1", None),
            pod("a", "changed", "5", None),
            pod("a", "new", "6", None),
        ];
        informer.replace(listed.into_iter().map(|p| (ObjectKey::of(&p), p)).collect());
        let mut seen: Vec<String> = Vec::new();
        while let Ok(change) = changes.try_recv() {
            let name = change.object().metadata.name.clone().unwrap();
            seen.push(match change {
                Change::Added(_) => format!("+{name}"),
                Change::Updated { .. } => format!("~{name}"),
                Change::Deleted(_) => format!("-{name}"),
            });
        }
        seen.sort();
        assert_eq!(seen, ["+new", "-gone", "~changed"]);
        assert_eq!(informer.list_namespace("a").len(), 3);
        assert!(informer.list_namespace("b").is_empty());
    }
}
