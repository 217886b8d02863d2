//! One copy of each object version per process.
//!
//! `tugboat server` runs the scheduler, the controller manager and the
//! kubelets in one process, and each watches pods and nodes through its own
//! stream: without sharing, every pod would be decoded and kept three times.
//! An object is fully identified by its UID and resourceVersion, so
//! components that keep objects as `Arc<K>` take them through [`shared`],
//! which hands out the copy another component already keeps for that
//! version, if any, and drops the new one.
//!
//! Only what is identical may be shared: callers apply the same transform
//! ([`crate::transform::for_cache`]) before, and never change an
//! object behind an `Arc` (they clone to change). Objects without a UID or
//! resourceVersion (built locally, not read from the API) are not shared.
//! In a process with one component this costs one map entry per object.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use kube::Resource;

/// An object's type and UID.
type Key = (TypeId, Box<str>);

/// The newest version of one object some component holds.
struct Entry {
    resource_version: Box<str>,
    object: Weak<dyn Any + Send + Sync>,
}

/// The newest version of each object, by type and UID. Only the newest is
/// remembered: a `Weak` keeps its allocation (the whole object struct, 2
/// KB for a Pod) until it is dropped, so remembering every version until a
/// prune cost more than the sharing saved. Entries of objects nobody holds
/// any more (deleted ones) are pruned as the map grows.
struct Interner {
    objects: HashMap<Key, Entry>,
    /// Prune when the map reaches this size.
    prune_at: usize,
}

const MIN_PRUNE_AT: usize = 1024;

/// Whether version `a` is older than `b`. Resource versions are opaque to
/// clients in general; these come from this process's own API server,
/// whose versions are revision numbers. Anything else counts as newer.
fn older(a: &str, b: &str) -> bool {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) => a < b,
        _ => false,
    }
}

impl Interner {
    fn new() -> Self {
        Interner {
            objects: HashMap::new(),
            prune_at: MIN_PRUNE_AT,
        }
    }

    fn share<K: Any + Send + Sync>(
        &mut self,
        key: Key,
        resource_version: &str,
        object: K,
    ) -> Arc<K> {
        if let Some(entry) = self.objects.get(&key) {
            if let Some(existing) = entry.object.upgrade() {
                if &*entry.resource_version == resource_version {
                    if let Ok(existing) = existing.downcast::<K>() {
                        return existing;
                    }
                } else if older(resource_version, &entry.resource_version) {
                    // A component behind the others: its own copy until it
                    // catches up, without displacing the newer one.
                    return Arc::new(object);
                }
            }
        }
        let object = Arc::new(object);
        let erased: Arc<dyn Any + Send + Sync> = object.clone();
        self.objects.insert(
            key,
            Entry {
                resource_version: resource_version.into(),
                object: Arc::downgrade(&erased),
            },
        );
        if self.objects.len() >= self.prune_at {
            // Amortised: the map at least halves its dead weight each time.
            self.objects.retain(|_, e| e.object.strong_count() > 0);
            self.prune_at = (self.objects.len() * 2).max(MIN_PRUNE_AT);
        }
        object
    }
}

static INTERNER: LazyLock<Mutex<Interner>> = LazyLock::new(|| Mutex::new(Interner::new()));

/// The process's copy of this object version: `object` itself, now shared,
/// or the equal copy someone already holds.
pub fn shared<K: Resource + Send + Sync + 'static>(object: K) -> Arc<K> {
    let meta = object.meta();
    let (Some(uid), Some(rv)) = (meta.uid.as_deref(), meta.resource_version.as_deref()) else {
        return Arc::new(object);
    };
    let key = (TypeId::of::<K>(), Box::<str>::from(uid));
    let rv = rv.to_string();
    INTERNER
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .share(key, &rv, object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta(uid: Option<&str>, rv: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some("x".into()),
            uid: uid.map(Into::into),
            resource_version: rv.map(Into::into),
            ..Default::default()
        }
    }

    fn pod(uid: &str, rv: &str) -> Pod {
        Pod {
            metadata: meta(Some(uid), Some(rv)),
            ..Default::default()
        }
    }

    #[test]
    fn the_same_version_is_one_copy_and_a_new_version_another() {
        let a = shared(pod("intern-test-1", "5"));
        let b = shared(pod("intern-test-1", "5"));
        assert!(Arc::ptr_eq(&a, &b));
        let c = shared(pod("intern-test-1", "6"));
        assert!(!Arc::ptr_eq(&a, &c));
        // A Node with the same uid and version is a different object.
        let node = shared(Node {
            metadata: meta(Some("intern-test-1"), Some("5")),
            ..Default::default()
        });
        assert_eq!(node.metadata.uid.as_deref(), Some("intern-test-1"));
    }

    #[test]
    fn a_version_nobody_holds_is_made_afresh_and_local_objects_are_not_shared() {
        drop(shared(pod("intern-test-2", "1")));
        let again = shared(pod("intern-test-2", "1"));
        assert_eq!(Arc::strong_count(&again), 1);
        let local = Pod {
            metadata: meta(None, None),
            ..Default::default()
        };
        let x = shared(local.clone());
        let y = shared(local);
        assert!(!Arc::ptr_eq(&x, &y));
    }

    #[test]
    fn only_the_newest_version_is_remembered() {
        let new = shared(pod("intern-test-3", "7"));
        // A component still at version 6 gets its own copy, and does not
        // displace version 7 for the others.
        let old = shared(pod("intern-test-3", "6"));
        assert!(!Arc::ptr_eq(&new, &old));
        assert!(Arc::ptr_eq(&new, &shared(pod("intern-test-3", "7"))));
        assert_eq!(
            Arc::weak_count(&old),
            0,
            "an older version is not remembered"
        );
        // Version 8 replaces 7: 7's allocation goes with its last holder.
        let newer = shared(pod("intern-test-3", "8"));
        assert_eq!(Arc::weak_count(&new), 0);
        assert_eq!(Arc::weak_count(&newer), 1);
    }

    #[test]
    fn dead_entries_are_pruned_as_the_map_grows() {
        let mut interner = Interner::new();
        for i in 0..10 * MIN_PRUNE_AT {
            let key = (TypeId::of::<Pod>(), format!("u{i}").into_boxed_str());
            drop(interner.share(key, "1", pod(&format!("u{i}"), "1")));
        }
        assert!(
            interner.objects.len() < MIN_PRUNE_AT,
            "{}",
            interner.objects.len()
        );
        let kept: Vec<_> = (0..3 * MIN_PRUNE_AT)
            .map(|i| {
                let key = (TypeId::of::<Pod>(), format!("k{i}").into_boxed_str());
                interner.share(key, "1", pod(&format!("k{i}"), "1"))
            })
            .collect();
        assert_eq!(
            interner
                .objects
                .values()
                .filter(|e| e.object.strong_count() > 0)
                .count(),
            kept.len()
        );
    }
}
