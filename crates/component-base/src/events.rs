//! Recording `core/v1` Events the way client-go's `tools/record` does:
//! - the caller never waits: events go through a bounded queue to a sender
//!   task (up to 16 writes in flight), and are dropped (with a debug log)
//!   when the queue is full;
//! - an event is named `<object>.<unix-nanos in hex>` in the object's
//!   namespace (`default` for cluster-scoped objects), both the name and
//!   the timestamps from when it was recorded, not when it was written;
//! - a repeat of the same (object, type, reason, message) bumps `count` and
//!   `lastTimestamp` of the event already written instead of adding one,
//!   as the event correlator does, so `kubectl describe` shows
//!   `(x3 over 10s)`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};

/// `Normal` or `Warning`, as `Event.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Queue length between recorders and the sender task.
const QUEUE: usize = 1024;
/// Aggregation entries kept before the oldest knowledge is forgotten.
const REMEMBERED: usize = 4096;

#[derive(Debug)]
struct Pending {
    object: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
    /// When it happened: the event's timestamps and name come from here,
    /// not from when the sender gets to it (a busy queue would otherwise
    /// reorder what `kubectl describe` shows).
    at: Timestamp,
}

/// Records events for one component (`source.component`). Cheap to clone.
#[derive(Clone)]
pub struct EventRecorder {
    /// Boxed: a channel allocates its slots 32 at a time, 32 inline
    /// events are ~8 KB, and every hollow kubelet has a recorder.
    queue: mpsc::Sender<Box<Pending>>,
}

impl EventRecorder {
    /// A recorder writing through `client` as `component`; spawns the sender
    /// task on the current runtime. It ends when every clone is dropped.
    pub fn new(client: kube::Client, component: impl Into<String>) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(send_events(client, component.into(), pending));
        EventRecorder { queue }
    }

    /// Record an event about `object` (from `kube::Resource::object_ref`).
    pub fn record(
        &self,
        object: ObjectReference,
        kind: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let pending = Box::new(Pending {
            object,
            kind,
            reason: reason.to_string(),
            message: message.into(),
            at: Timestamp::now(),
        });
        if let Err(error) = self.queue.try_send(pending) {
            tracing::debug!(%error, "event dropped");
        }
    }

    /// A `Normal` event about `object`.
    pub fn normal<K>(&self, object: &K, reason: &str, message: impl Into<String>)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        self.record(object.object_ref(&()), EventType::Normal, reason, message);
    }

    /// A `Warning` event about `object`.
    pub fn warning<K>(&self, object: &K, reason: &str, message: impl Into<String>)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        self.record(object.object_ref(&()), EventType::Warning, reason, message);
    }
}

/// What identifies "the same event" for aggregation: a hash of (object's
/// namespace, kind and name, type, reason, message). Kept as 64 bits, not
/// as the strings: a recorder remembers thousands of events, each with a
/// message of tens of bytes, and two different events colliding (odds of
/// about 10^-12 among 4,096) would only merge their counts.
type Correlation = u64;

fn correlation(p: &Pending) -> Correlation {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same event always has the same key.
    let mut hasher = std::hash::DefaultHasher::new();
    (
        p.object.namespace.as_deref().unwrap_or_default(),
        p.object.kind.as_deref().unwrap_or_default(),
        p.object.name.as_deref().unwrap_or_default(),
        p.kind,
        &p.reason,
        &p.message,
    )
        .hash(&mut hasher);
    hasher.finish()
}

/// The event already written for a correlation: its name and count.
struct Written {
    namespace: String,
    name: String,
    count: i32,
}

/// Event writes in flight at once: one slow write must not hold the rest
/// (the scheduler records one event per pod at over 1,000 pods/s).
const IN_FLIGHT: usize = 16;

type WrittenMap = Arc<Mutex<HashMap<Correlation, Written>>>;

async fn send_events(
    client: kube::Client,
    component: String,
    mut pending: mpsc::Receiver<Box<Pending>>,
) {
    let written: WrittenMap = Arc::default();
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let component: Arc<str> = component.into();
    while let Some(event) = pending.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let key = correlation(&event);
        // Decide under the lock, write outside it: a repeat bumps the count
        // of the event already written.
        let (repeat, name) = {
            let mut map = written.lock().unwrap_or_else(|e| e.into_inner());
            match map.get_mut(&key) {
                Some(seen) => {
                    seen.count += 1;
                    (
                        Some((seen.namespace.clone(), seen.count)),
                        seen.name.clone(),
                    )
                }
                None => {
                    if map.len() >= REMEMBERED {
                        map.clear();
                    }
                    let name = event_name(&event.object, event.at);
                    map.insert(
                        key,
                        Written {
                            namespace: event_namespace(&event.object),
                            name: name.clone(),
                            count: 1,
                        },
                    );
                    (None, name)
                }
            }
        };
        let (client, component, written) = (client.clone(), component.clone(), written.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let now = event.at;
            let Some((namespace, count)) = repeat else {
                if let Err(error) = create(&client, &component, &event, &name, now).await {
                    tracing::debug!(%error, reason = %event.reason, "could not record event");
                    forget(&written, &key);
                }
                return;
            };
            let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
            let patch = json!({"count": count, "lastTimestamp": format_time(now)});
            if let Err(error) = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                // Gone (expired, deleted) or not written yet: start afresh.
                tracing::debug!(%error, "event update failed; writing a new one");
                let name = event_name(&event.object, now);
                match create(&client, &component, &event, &name, now).await {
                    Ok(()) => {
                        let mut map = written.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(seen) = map.get_mut(&key) {
                            seen.name = name;
                            seen.count = 1;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%error, reason = %event.reason, "could not record event");
                        forget(&written, &key);
                    }
                }
            }
        });
    }
}

fn forget(written: &WrittenMap, key: &Correlation) {
    written
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key);
}

/// Upstream's event name: `<object>.<unix nanos in hex>`.
fn event_name(object: &ObjectReference, now: Timestamp) -> String {
    let object_name = object.name.clone().unwrap_or_default();
    format!("{object_name}.{:x}", now.as_nanosecond())
}

fn event_namespace(object: &ObjectReference) -> String {
    object
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

/// RFC 3339 with seconds, as `meta/v1.Time` is written.
fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn create(
    client: &kube::Client,
    component: &str,
    event: &Pending,
    name: &str,
    now: Timestamp,
) -> kube::Result<()> {
    let namespace = event_namespace(&event.object);
    let body = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": event.object,
        "reason": event.reason,
        "message": event.message,
        "type": event.kind.as_str(),
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": format_time(now),
        "lastTimestamp": format_time(now),
        "count": 1,
    });
    let event: Event = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    api.create(&PostParams::default(), &event).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(name: &str, reason: &str, message: &str) -> Pending {
        Pending {
            object: ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some("default".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            kind: EventType::Normal,
            reason: reason.into(),
            message: message.into(),
            at: Timestamp::now(),
        }
    }

    #[test]
    fn repeats_correlate_and_anything_different_does_not() {
        let started = correlation(&pending("web", "Started", "Started container c"));
        assert_eq!(
            started,
            correlation(&pending("web", "Started", "Started container c"))
        );
        for (name, reason, message) in [
            ("web", "Started", "Started container d"),
            ("web", "Created", "Started container c"),
            ("db", "Started", "Started container c"),
        ] {
            assert_ne!(started, correlation(&pending(name, reason, message)));
        }
        let mut warning = pending("web", "Started", "Started container c");
        warning.kind = EventType::Warning;
        assert_ne!(started, correlation(&warning));
    }
}
