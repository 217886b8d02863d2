//! The scheduling queue: which pending pod the scheduler tries next, and when
//! a pod that failed is worth trying again.
//!
//! Mirrors upstream's `PriorityQueue` (k8s.io/kubernetes
//! `pkg/scheduler/backend/queue/scheduling_queue.go`) with its three parts:
//! - the **activeQ**, ordered as the `PrioritySort` plugin orders it: higher
//!   `spec.priority` first, then the earlier time the pod was (re)queued;
//!   equal times fall back to the pod's creation time, then to arrival order;
//! - the **backoffQ**, where a pod that failed waits
//!   `initial * 2^(attempts-1)` (1 s doubling up to 10 s by default) before
//!   it goes back to the activeQ (upstream's `calculateBackoffDuration`);
//! - **unschedulablePods**, where a pod the plugins rejected is parked until
//!   a [`ClusterEvent`] could have made it schedulable, or until it has sat
//!   there for `podMaxInUnschedulablePodsDuration` (5 min by default).
//!
//! Upstream's `moveRequestCycle` is kept: a pod whose attempt overlapped a
//! cluster event goes to the backoffQ rather than being parked, because the
//! event may already have made it schedulable and nothing would wake it.
//! Pods being scheduled are tracked as in flight, so a key is always in at
//! most one of active, backoff, unschedulable and in flight; updates and
//! deletes that arrive while a pod is in flight are applied to its entry.
//!
//! Left out: upstream's QueueingHints (per-plugin decisions of whether an
//! event can help a given pod; here every [`ClusterEvent`] moves every
//! unschedulable pod, which is upstream's behaviour with the
//! `SchedulerQueueingHints` gate off, minus its affinity pre-check for
//! assigned-pod adds), `PreEnqueue` plugins and gated pods, and `Activate`.
//!
//! The queue does no I/O and reads no clock: every method that needs the time
//! takes `now: Instant`. That keeps it a plain data structure the async
//! driver wraps (it sleeps for [`PriorityQueue::next_ready_in`] or until an
//! informer event), and lets the tests walk through backoff and the 5-minute
//! flush with a fixed `Instant` plus offsets instead of sleeping or pausing a
//! runtime's clock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// Upstream's `DefaultPodInitialBackoffDuration`.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Upstream's `DefaultPodMaxBackoffDuration`.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's `DefaultPodMaxInUnschedulablePodsDuration`.
pub const DEFAULT_MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// Tunables, with upstream's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Backoff after the first failed attempt (`podInitialBackoffSeconds`).
    pub initial_backoff: Duration,
    /// Cap on the doubling backoff (`podMaxBackoffSeconds`).
    pub max_backoff: Duration,
    /// How long a pod may stay unschedulable before it is retried anyway.
    pub max_in_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_in_unschedulable: DEFAULT_MAX_IN_UNSCHEDULABLE,
        }
    }
}

/// A change in the cluster that may make unschedulable pods schedulable.
///
/// Every event moves every unschedulable pod (see the module docs on
/// QueueingHints); the variants exist so callers say what happened and so
/// metrics can be labelled the way upstream labels them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterEvent {
    /// A node joined.
    NodeAdd,
    /// A node changed: allocatable, labels, taints, conditions or
    /// `spec.unschedulable`.
    NodeUpdate,
    /// A pod bound to a node was deleted, freeing its resources and ports.
    PodDelete,
    /// A pod was bound to a node (it may satisfy pod affinity).
    AssignedPodAdd,
    /// A bound pod changed (labels matter to inter-pod affinity).
    AssignedPodUpdate,
    /// The periodic flush of pods unschedulable for too long.
    UnschedulableTimeout,
}

impl ClusterEvent {
    /// The label upstream uses for this event in
    /// `scheduler_queue_incoming_pods_total`.
    pub fn label(self) -> &'static str {
        match self {
            ClusterEvent::NodeAdd => "NodeAdd",
            ClusterEvent::NodeUpdate => "NodeUpdate",
            ClusterEvent::PodDelete => "AssignedPodDelete",
            ClusterEvent::AssignedPodAdd => "AssignedPodAdd",
            ClusterEvent::AssignedPodUpdate => "AssignedPodUpdate",
            ClusterEvent::UnschedulableTimeout => "UnschedulableTimeout",
        }
    }
}

/// Where a queued pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    Active,
    Backoff,
    Unschedulable,
    /// Popped and being scheduled.
    InFlight,
}

/// A pod in the queue, with upstream's `QueuedPodInfo` bookkeeping.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    /// `namespace/name`.
    pub key: String,
    /// The latest version of the pod the queue has seen.
    pub pod: Arc<Pod>,
    /// Scheduling attempts started, counting the current one: incremented by
    /// [`PriorityQueue::pop`] as upstream does, so after `n` failed attempts
    /// it is `n` and the backoff is `initial * 2^(n-1)`.
    pub attempts: u32,
    /// When the pod was last added or re-added after a failure (upstream's
    /// `Timestamp`). Orders pods of equal priority, and starts both the
    /// backoff and the unschedulable timeout.
    pub timestamp: Instant,
    /// When the pod first entered the queue (for end-to-end latency).
    pub first_added: Instant,
    /// When the pod was first popped (upstream's `InitialAttemptTimestamp`).
    pub initial_attempt: Option<Instant>,
}

/// The `namespace/name` key the queue uses for a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// `spec.priority`, 0 when unset (upstream's `corev1helpers.PodPriority`).
fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Upstream's `isPodUpdated`: did anything change other than the status and
/// the bookkeeping fields (`resourceVersion`, `generation`, `managedFields`,
/// `finalizers`)? Status-only updates (e.g. our own PodScheduled=False
/// condition) must not wake a parked pod, or it would retry in a loop.
fn is_pod_updated(old: &Pod, new: &Pod) -> bool {
    fn strip(meta: &ObjectMeta) -> ObjectMeta {
        ObjectMeta {
            resource_version: None,
            generation: None,
            managed_fields: None,
            finalizers: None,
            ..meta.clone()
        }
    }
    if std::ptr::eq(old, new) {
        return false;
    }
    old.spec != new.spec || strip(&old.metadata) != strip(&new.metadata)
}

/// ActiveQ order: priority descending, then queue timestamp, then creation
/// time, then arrival sequence (unique, so keys never collide).
type ActiveKey = (Reverse<i32>, Instant, Option<Time>, u64);
/// BackoffQ order: backoff expiry, then arrival sequence.
/// UnschedulablePods order: time parked, then arrival sequence.
type TimeKey = (Instant, u64);

#[derive(Debug, Clone)]
enum Place {
    Active(ActiveKey),
    Backoff(TimeKey),
    Unschedulable(TimeKey),
    InFlight {
        /// The scheduling cycle the pod was popped in.
        cycle: u64,
        /// Whether an update that matters arrived while in flight.
        updated: bool,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    qp: QueuedPod,
    place: Place,
}

/// Upstream's `PriorityQueue`: activeQ, backoffQ, unschedulablePods and the
/// in-flight set, keyed by `namespace/name`.
#[derive(Debug, Default)]
pub struct PriorityQueue {
    config: QueueConfig,
    /// Every pod the queue knows, wherever it is: the single source of truth
    /// that keeps a key in at most one place.
    entries: HashMap<String, Entry>,
    active: BTreeMap<ActiveKey, String>,
    backoff: BTreeMap<TimeKey, String>,
    unschedulable: BTreeMap<TimeKey, String>,
    in_flight: usize,
    /// Arrival counter for tie-breaks.
    seq: u64,
    /// Incremented by every pop (upstream's `schedulingCycle`).
    scheduling_cycle: u64,
    /// The scheduling cycle at the last move request (upstream's
    /// `moveRequestCycle`, -1 there, `None` here).
    move_request_cycle: Option<u64>,
    /// Nominated node by pod key (upstream's nominator, reduced).
    nominated: HashMap<String, String>,
}

impl PriorityQueue {
    pub fn new(config: QueueConfig) -> Self {
        PriorityQueue {
            config,
            ..Default::default()
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// The backoff after `attempts` failed attempts: `initial` doubled
    /// `attempts - 1` times, capped at `max` (upstream's
    /// `calculateBackoffDuration`).
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let max = self.config.max_backoff;
        let mut duration = self.config.initial_backoff;
        for _ in 1..attempts {
            if duration > max.saturating_sub(duration) {
                return max;
            }
            duration += duration;
        }
        duration.min(max)
    }

    fn backoff_expiry(&self, qp: &QueuedPod) -> Instant {
        qp.timestamp + self.backoff_duration(qp.attempts)
    }

    /// A pod that never failed (`attempts == 0`) is never backing off.
    fn is_backing_off(&self, qp: &QueuedPod, now: Instant) -> bool {
        qp.attempts > 0 && self.backoff_expiry(qp) > now
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn active_key(qp: &QueuedPod, seq: u64) -> ActiveKey {
        (
            Reverse(priority(&qp.pod)),
            qp.timestamp,
            qp.pod.metadata.creation_timestamp.clone(),
            seq,
        )
    }

    /// Removes `key` from the map and from whichever index holds it.
    fn detach(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        match &entry.place {
            Place::Active(k) => {
                self.active.remove(k);
            }
            Place::Backoff(k) => {
                self.backoff.remove(k);
            }
            Place::Unschedulable(k) => {
                self.unschedulable.remove(k);
            }
            Place::InFlight { .. } => self.in_flight -= 1,
        }
        Some(entry)
    }

    fn push_active(&mut self, qp: QueuedPod) {
        let k = Self::active_key(&qp, self.next_seq());
        self.active.insert(k.clone(), qp.key.clone());
        self.insert(qp, Place::Active(k));
    }

    fn push_backoff(&mut self, qp: QueuedPod) {
        let k = (self.backoff_expiry(&qp), self.next_seq());
        self.backoff.insert(k, qp.key.clone());
        self.insert(qp, Place::Backoff(k));
    }

    fn push_unschedulable(&mut self, qp: QueuedPod) {
        let k = (qp.timestamp, self.next_seq());
        self.unschedulable.insert(k, qp.key.clone());
        self.insert(qp, Place::Unschedulable(k));
    }

    fn insert(&mut self, qp: QueuedPod, place: Place) {
        let previous = self.entries.insert(qp.key.clone(), Entry { qp, place });
        debug_assert!(previous.is_none(), "pod queued twice");
    }

    /// Upstream's `moveToActiveQ`-or-backoff choice for a pod leaving the
    /// unschedulable set.
    fn push_active_or_backoff(&mut self, qp: QueuedPod, now: Instant) -> QueueName {
        if self.is_backing_off(&qp, now) {
            self.push_backoff(qp);
            QueueName::Backoff
        } else {
            self.push_active(qp);
            QueueName::Active
        }
    }

    fn note_nomination(&mut self, key: &str, pod: &Pod) {
        let node = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_ref());
        if let Some(node) = node.filter(|n| !n.is_empty()) {
            self.nominated.insert(key.to_owned(), node.clone());
        }
    }

    /// A new unscheduled pod: into the activeQ. A pod the queue already holds
    /// (a relist) is treated as [`update`](Self::update).
    pub fn add(&mut self, pod: Arc<Pod>, now: Instant) {
        let key = pod_key(&pod);
        if self.entries.contains_key(&key) {
            self.update(pod, now);
            return;
        }
        self.note_nomination(&key, &pod);
        self.push_active(QueuedPod {
            key,
            pod,
            attempts: 0,
            timestamp: now,
            first_added: now,
            initial_attempt: None,
        });
    }

    /// A new version of an unscheduled pod replaces the stored one wherever
    /// it is. In the activeQ it is re-sorted if its priority changed. A parked
    /// unschedulable pod whose spec or metadata changed is moved to the
    /// backoffQ (still backing off) or the activeQ, as upstream does; a
    /// status-only update leaves it parked. An in-flight pod keeps the new
    /// version, which [`add_unschedulable`](Self::add_unschedulable) requeues.
    /// A pod the queue does not hold is added.
    pub fn update(&mut self, pod: Arc<Pod>, now: Instant) {
        let key = pod_key(&pod);
        self.note_nomination(&key, &pod);
        let Some(entry) = self.entries.get_mut(&key) else {
            self.add(pod, now);
            return;
        };
        let changed = is_pod_updated(&entry.qp.pod, &pod);
        entry.qp.pod = pod;
        match &mut entry.place {
            Place::Active(old) => {
                let new = Self::active_key(&entry.qp, old.3);
                if new != *old {
                    self.active.remove(old);
                    self.active.insert(new.clone(), key);
                    *old = new;
                }
            }
            Place::Backoff(_) => {}
            Place::Unschedulable(_) => {
                if changed {
                    let entry = self.detach(&key).expect("entry just seen");
                    self.push_active_or_backoff(entry.qp, now);
                }
            }
            Place::InFlight { updated, .. } => *updated |= changed,
        }
    }

    /// Forgets a pod (deleted, or bound by someone else) wherever it is,
    /// including in flight: a later [`add_unschedulable`](Self::add_unschedulable)
    /// for it is then ignored.
    pub fn delete(&mut self, key: &str) -> Option<QueuedPod> {
        self.nominated.remove(key);
        self.detach(key).map(|e| e.qp)
    }

    /// The highest-priority ready pod, after moving pods whose backoff has
    /// expired (and pods unschedulable too long) into the activeQ. The pod is
    /// recorded as in flight, its attempts incremented, and a new scheduling
    /// cycle starts. `None` when nothing is ready; see
    /// [`next_ready_in`](Self::next_ready_in).
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush_backoff(now);
        self.flush_unschedulable_leftover(now);
        let (_, key) = self.active.pop_first()?;
        let mut entry = self.entries.remove(&key).expect("activeQ key has an entry");
        self.scheduling_cycle += 1;
        entry.qp.attempts += 1;
        entry.qp.initial_attempt.get_or_insert(now);
        entry.place = Place::InFlight {
            cycle: self.scheduling_cycle,
            updated: false,
        };
        let qp = entry.qp.clone();
        self.entries.insert(key, entry);
        self.in_flight += 1;
        Some(qp)
    }

    /// Requeues an in-flight pod after a failed attempt (upstream's
    /// `AddUnschedulableIfNotPresent`). Its timestamp becomes `now` and the
    /// latest version of the pod seen while in flight is kept.
    ///
    /// It goes to the backoffQ when `backoff` is true (the attempt failed on
    /// an error rather than a plugin's verdict, so no event will wake it), when
    /// a move request happened since it was popped, or when the pod itself
    /// was updated meanwhile; otherwise it is parked as unschedulable.
    ///
    /// Returns where it went, or `None` if the pod is not in flight (deleted
    /// or [`done`](Self::done) meanwhile): a deleted pod is not resurrected.
    pub fn add_unschedulable(
        &mut self,
        qp: QueuedPod,
        backoff: bool,
        now: Instant,
    ) -> Option<QueueName> {
        let Place::InFlight { cycle, updated } = self.entries.get(&qp.key)?.place else {
            return None;
        };
        let mut stored = self.detach(&qp.key)?.qp;
        stored.timestamp = now;
        let moved = self.move_request_cycle.is_some_and(|m| m >= cycle);
        if backoff || updated || moved {
            self.push_backoff(stored);
            Some(QueueName::Backoff)
        } else {
            self.push_unschedulable(stored);
            Some(QueueName::Unschedulable)
        }
    }

    /// Ends a pod's attempt that needs no requeue (it was bound, or given
    /// up on): forgets the in-flight pod and its nomination. No-op for a pod
    /// not in flight, so calling it after `add_unschedulable` is harmless.
    pub fn done(&mut self, key: &str) -> bool {
        if !matches!(
            self.entries.get(key),
            Some(Entry {
                place: Place::InFlight { .. },
                ..
            })
        ) {
            return false;
        }
        self.nominated.remove(key);
        self.detach(key).is_some()
    }

    /// A cluster event: every unschedulable pod moves to the backoffQ if it
    /// is still backing off, else to the activeQ; and pods now in flight will
    /// go to the backoffQ if they fail (the move request cycle). Returns how
    /// many pods moved.
    pub fn move_all_to_active_or_backoff(&mut self, event: ClusterEvent, now: Instant) -> usize {
        // Every event moves every pod: QueueingHints are left out (module docs).
        let _ = event;
        let keys: Vec<String> = std::mem::take(&mut self.unschedulable)
            .into_values()
            .collect();
        self.move_request_cycle = Some(self.scheduling_cycle);
        for key in &keys {
            let entry = self
                .entries
                .remove(key)
                .expect("unschedulable key has an entry");
            self.push_active_or_backoff(entry.qp, now);
        }
        keys.len()
    }

    /// Moves pods whose backoff has expired (expiry `<= now`) to the activeQ
    /// (upstream's `flushBackoffQCompleted`). Returns how many moved.
    pub fn flush_backoff(&mut self, now: Instant) -> usize {
        let mut moved = 0;
        while let Some(entry) = self.backoff.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            let e = self
                .entries
                .remove(&key)
                .expect("backoffQ key has an entry");
            self.push_active(e.qp);
            moved += 1;
        }
        moved
    }

    /// Moves pods that have been unschedulable for at least
    /// `max_in_unschedulable` to the activeQ or backoffQ (upstream's
    /// `flushUnschedulablePodsLeftover`, run every 30 s there; here whenever
    /// the driver pops). Returns how many moved.
    pub fn flush_unschedulable_leftover(&mut self, now: Instant) -> usize {
        let mut keys = Vec::new();
        while let Some(entry) = self.unschedulable.first_entry() {
            if entry.key().0 + self.config.max_in_unschedulable > now {
                break;
            }
            keys.push(entry.remove());
        }
        if !keys.is_empty() {
            self.move_request_cycle = Some(self.scheduling_cycle);
        }
        for key in &keys {
            let e = self
                .entries
                .remove(key)
                .expect("unschedulable key has an entry");
            self.push_active_or_backoff(e.qp, now);
        }
        keys.len()
    }

    /// How long until [`pop`](Self::pop) could return a pod without any new
    /// event: zero if the activeQ is not empty, else the time to the first
    /// backoff expiry or unschedulable timeout; `None` if nothing is waiting
    /// on the clock (the driver then sleeps until an informer event).
    pub fn next_ready_in(&self, now: Instant) -> Option<Duration> {
        if !self.active.is_empty() {
            return Some(Duration::ZERO);
        }
        let backoff = self.backoff.keys().next().map(|k| k.0);
        let leftover =
            (self.unschedulable.keys().next()).map(|k| k.0 + self.config.max_in_unschedulable);
        [backoff, leftover]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    pub fn len_active(&self) -> usize {
        self.active.len()
    }

    pub fn len_backoff(&self) -> usize {
        self.backoff.len()
    }

    pub fn len_unschedulable(&self) -> usize {
        self.unschedulable.len()
    }

    pub fn len_in_flight(&self) -> usize {
        self.in_flight
    }

    /// Every pod the queue holds, in flight included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where the pod is, if the queue holds it.
    pub fn location(&self, key: &str) -> Option<QueueName> {
        Some(match self.entries.get(key)?.place {
            Place::Active(_) => QueueName::Active,
            Place::Backoff(_) => QueueName::Backoff,
            Place::Unschedulable(_) => QueueName::Unschedulable,
            Place::InFlight { .. } => QueueName::InFlight,
        })
    }

    /// The queued pod, wherever it is.
    pub fn get(&self, key: &str) -> Option<&QueuedPod> {
        self.entries.get(key).map(|e| &e.qp)
    }

    /// Number of pops so far (upstream's `SchedulingCycle`).
    pub fn scheduling_cycle(&self) -> u64 {
        self.scheduling_cycle
    }

    /// Records (`Some`) or clears (`None`) the node a pod was nominated to by
    /// preemption. Pods added or updated with `status.nominatedNodeName` are
    /// nominated automatically; `delete` and `done` clear the nomination.
    pub fn nominate(&mut self, key: &str, node: Option<String>) {
        match node {
            Some(node) => self.nominated.insert(key.to_owned(), node),
            None => self.nominated.remove(key),
        };
    }

    /// The node a pod is nominated to.
    pub fn nominated_node(&self, key: &str) -> Option<&str> {
        self.nominated.get(key).map(String::as_str)
    }

    /// The queued pods nominated to `node`, by key (for filters that must
    /// count nominated higher-priority pods, as upstream's
    /// `RunFilterPluginsWithNominatedPods` does).
    pub fn nominated_pods(&self, node: &str) -> Vec<Arc<Pod>> {
        let mut pods: Vec<(&String, Arc<Pod>)> = (self.nominated.iter())
            .filter(|(_, n)| n.as_str() == node)
            .filter_map(|(k, _)| Some((k, self.entries.get(k)?.qp.pod.clone())))
            .collect();
        pods.sort_by(|a, b| a.0.cmp(b.0));
        pods.into_iter().map(|(_, p)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use std::collections::{BTreeMap, HashSet};

    fn pod(name: &str, prio: i32) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                priority: Some(prio),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn key(name: &str) -> String {
        format!("default/{name}")
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Pops `name` and reports the attempt as unschedulable.
    fn fail(q: &mut PriorityQueue, name: &str, now: Instant) -> Option<QueueName> {
        let qp = q.pop(now).expect("a pod is ready");
        assert_eq!(qp.key, key(name));
        q.add_unschedulable(qp, false, now)
    }

    fn pop_names(q: &mut PriorityQueue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| q.pop(now))
            .map(|qp| qp.pod.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn pods_pop_by_priority_then_by_the_time_they_were_queued() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::default();
        q.add(pod("low-early", 0), t0);
        q.add(pod("high-late", 100), t0 + secs(2));
        q.add(pod("low-late", 0), t0 + secs(1));
        q.add(pod("high-early", 100), t0 + secs(1));
        q.add(pod("negative", -5), t0);
        assert_eq!(q.len_active(), 5);
        assert_eq!(
            pop_names(&mut q, t0 + secs(3)),
            [
                "high-early",
                "high-late",
                "low-early",
                "low-late",
                "negative"
            ]
        );
        assert_eq!(q.len_in_flight(), 5);
        assert_eq!(q.scheduling_cycle(), 5);
    }

    #[test]
    fn pods_queued_at_the_same_instant_pop_by_creation_time_then_arrival() {
        let t0 = Instant::now();
        let created = |name: &str, ts: &str| {
            let mut p = (*pod(name, 0)).clone();
            p.metadata.creation_timestamp = Some(Time(ts.parse().unwrap()));
            Arc::new(p)
        };
        let mut q = PriorityQueue::default();
        q.add(created("newer", "2024-01-01T00:00:10Z"), t0);
        q.add(created("older", "2024-01-01T00:00:00Z"), t0);
        q.add(created("older-second", "2024-01-01T00:00:00Z"), t0);
        assert_eq!(pop_names(&mut q, t0), ["older", "older-second", "newer"]);
    }

    #[test]
    fn a_priority_update_re_sorts_the_active_queue() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::default();
        q.add(pod("a", 10), t0);
        q.add(pod("b", 5), t0 + secs(1));
        q.update(pod("b", 20), t0 + secs(2));
        assert_eq!(q.len_active(), 2);
        assert_eq!(pop_names(&mut q, t0 + secs(2)), ["b", "a"]);
    }

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_ten() {
        let q = PriorityQueue::default();
        let got: Vec<u64> = (1..=7).map(|n| q.backoff_duration(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10, 10]);
        assert_eq!(q.backoff_duration(u32::MAX), secs(10));

        let q = PriorityQueue::new(QueueConfig {
            initial_backoff: Duration::from_millis(300),
            max_backoff: secs(1),
            ..QueueConfig::default()
        });
        let got: Vec<u128> = (1..=4).map(|n| q.backoff_duration(n).as_millis()).collect();
        assert_eq!(got, [300, 600, 1000, 1000]);
    }

    #[test]
    fn a_pod_that_keeps_failing_waits_one_two_four_eight_ten_ten_seconds() {
        let mut now = Instant::now();
        let mut q = PriorityQueue::default();
        q.add(pod("p", 0), now);
        for (attempt, wait) in [1, 2, 4, 8, 10, 10].into_iter().enumerate() {
            let qp = q.pop(now).expect("ready");
            assert_eq!(qp.attempts, attempt as u32 + 1);
            assert_eq!(q.add_unschedulable(qp, true, now), Some(QueueName::Backoff));
            assert_eq!(q.next_ready_in(now), Some(secs(wait)));
            let just_before = now + secs(wait) - Duration::from_millis(1);
            assert!(
                q.pop(just_before).is_none(),
                "popped before {wait}s backoff ended"
            );
            now += secs(wait);
        }
        assert_eq!(q.pop(now).map(|qp| qp.attempts), Some(7));
    }

    #[test]
    fn a_node_add_moves_unschedulable_pods_to_active_or_to_backoff_if_still_backing_off() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::default();
        q.add(pod("old-failure", 0), t0);
        q.add(pod("fresh-failure", 0), t0);
        assert_eq!(
            fail(&mut q, "old-failure", t0),
            Some(QueueName::Unschedulable)
        );
        let t1 = t0 + secs(30);
        assert_eq!(
            fail(&mut q, "fresh-failure", t1),
            Some(QueueName::Unschedulable)
        );
        assert_eq!(q.len_unschedulable(), 2);
        assert_eq!(
            q.next_ready_in(t1),
            Some(secs(270)),
            "only the 5-minute flush is due"
        );

        assert_eq!(
            q.move_all_to_active_or_backoff(ClusterEvent::NodeAdd, t1),
            2
        );
        assert_eq!(q.location(&key("old-failure")), Some(QueueName::Active));
        assert_eq!(q.location(&key("fresh-failure")), Some(QueueName::Backoff));
        assert_eq!(q.len_unschedulable(), 0);

        assert_eq!(pop_names(&mut q, t1), ["old-failure"]);
        assert_eq!(q.next_ready_in(t1), Some(secs(1)));
        assert_eq!(pop_names(&mut q, t1 + secs(1)), ["fresh-failure"]);
    }

    #[test]
    fn a_cluster_event_during_an_attempt_sends_the_failed_pod_to_backoff_not_unschedulable() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::default();
        q.add(pod("p", 0), t0);
        let qp = q.pop(t0).unwrap();
        q.move_all_to_active_or_backoff(ClusterEvent::NodeUpdate, t0);
        assert_eq!(q.add_unschedulable(qp, false, t0), Some(QueueName::Backoff));

        // The next attempt starts after that event, so it parks again.
        assert_eq!(
            fail(&mut q, "p", t0 + secs(1)),
            Some(QueueName::Unschedulable)
        );
    }

    #[test]
    fn a_pod_deleted_while_queued_disappears_from_every_queue() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::default();
        for name in ["active", "backoff", "unschedulable", "in-flight"] {
            q.add(pod(name, 0), t0);
        }
        // Pop order is arrival order: move each to its place.
        q.delete(&key("active"));
        let b = q.pop(t0).unwrap();
        q.add_unschedulable(b, true, t0);
        fail(&mut q, "unschedulable", t0);
        let in_flight = q.pop(t0).unwrap();
        q.add(pod("active", 0), t0);
        assert_eq!(q.location(&key("backoff")), Some(QueueName::Backoff));
        assert_eq!(q.location(&key("in-flight")), Some(QueueName::InFlight));

        for name in ["active", "backoff", "unschedulable", "in-flight"] {
            assert!(q.delete(&key(name)).is_some(), "{name} was queued");
            assert_eq!(q.location(&key(name)), None);
        }
        assert!(q.is_empty());
        assert_eq!(q.len_active() + q.len_backoff() + q.len_unschedulable(), 0);
        assert_eq!(q.len_in_flight(), 0);
        assert_eq!(
            q.add_unschedulable(in_flight, false, t0),
            None,
            "deleted pod came back"
        );
        assert_eq!(q.next_ready_in(t0), None);
        assert!(q.pop(t0 + secs(600)).is_none());
    }

    #[test]
    fn an_update_of_an_in_flight_pod_is_applied_when_it_is_re_added() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::default();
        q.add(pod("p", 0), t0);
        let qp = q.pop(t0).unwrap();
        let mut updated = (*pod("p", 0)).clone();
        updated.metadata.labels = Some(BTreeMap::from([("app".into(), "web".into())]));
        q.update(Arc::new(updated.clone()), t0);
        assert_eq!(q.location(&key("p")), Some(QueueName::InFlight));
        assert_eq!(q.len(), 1);

        // The caller still holds the old version; the queue keeps the new one,
        // and the change may have made the pod schedulable: backoff, not parked.
        assert_eq!(q.add_unschedulable(qp, false, t0), Some(QueueName::Backoff));
        let again = q.pop(t0 + secs(1)).unwrap();
        assert_eq!(*again.pod, updated);
        assert_eq!(again.attempts, 2);
        assert_eq!(again.initial_attempt, Some(t0));
    }

    #[test]
    fn a_spec_update_wakes_an_unschedulable_pod_but_a_status_update_does_not() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::default();
        q.add(pod("p", 0), t0);
        fail(&mut q, "p", t0);

        let mut status_only = (*pod("p", 0)).clone();
        status_only.metadata.resource_version = Some("7".into());
        status_only.status = Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
        q.update(Arc::new(status_only), t0 + secs(5));
        assert_eq!(q.location(&key("p")), Some(QueueName::Unschedulable));

        let mut spec_change = (*pod("p", 0)).clone();
        spec_change.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([("zone".into(), "a".into())]));
        q.update(Arc::new(spec_change.clone()), t0 + secs(5));
        assert_eq!(q.location(&key("p")), Some(QueueName::Active));
        assert_eq!(*q.pop(t0 + secs(5)).unwrap().pod, spec_change);
    }

    #[test]
    fn pods_unschedulable_for_five_minutes_are_flushed_to_active() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::default();
        q.add(pod("early", 0), t0);
        q.add(pod("late", 0), t0);
        fail(&mut q, "early", t0);
        fail(&mut q, "late", t0 + secs(60));

        assert_eq!(q.next_ready_in(t0 + secs(60)), Some(secs(240)));
        assert_eq!(q.flush_unschedulable_leftover(t0 + secs(299)), 0);
        assert!(q.pop(t0 + secs(299)).is_none());

        let at = t0 + secs(300);
        assert_eq!(pop_names(&mut q, at), ["early"]);
        assert_eq!(q.location(&key("late")), Some(QueueName::Unschedulable));
        assert_eq!(q.next_ready_in(at), Some(secs(60)));
        assert_eq!(q.flush_unschedulable_leftover(t0 + secs(360)), 1);
        assert_eq!(q.location(&key("late")), Some(QueueName::Active));
    }

    #[test]
    fn done_forgets_the_in_flight_pod_and_its_nomination() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::default();
        q.add(pod("p", 0), t0);
        let mut nominated = (*pod("q", 0)).clone();
        nominated.status = Some(PodStatus {
            nominated_node_name: Some("node-1".into()),
            ..Default::default()
        });
        q.add(Arc::new(nominated), t0);
        q.nominate(&key("p"), Some("node-1".into()));
        assert_eq!(q.nominated_pods("node-1").len(), 2);

        let qp = q.pop(t0).unwrap();
        assert!(q.done(&qp.key));
        assert!(!q.done(&qp.key), "done twice");
        assert_eq!(q.nominated_node(&key("p")), None);
        assert_eq!(q.nominated_node(&key("q")), Some("node-1"));
        assert!(q.add_unschedulable(qp, false, t0).is_none());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn no_key_is_ever_in_two_places_under_add_and_update_storms() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::default();
        let names: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
        let mut popped = Vec::new();
        for round in 0..50u64 {
            let now = t0 + Duration::from_millis(round * 700);
            for (i, name) in names.iter().enumerate() {
                let mut p = (*pod(name, (i as i32 + round as i32) % 3)).clone();
                if round.is_multiple_of(2) {
                    p.metadata.labels = Some(BTreeMap::from([("r".into(), round.to_string())]));
                }
                if (i as u64 + round).is_multiple_of(2) {
                    q.add(Arc::new(p), now);
                } else {
                    q.update(Arc::new(p), now);
                }
            }
            for _ in 0..3 {
                if let Some(qp) = q.pop(now) {
                    popped.push(qp);
                }
            }
            if round.is_multiple_of(3) {
                for qp in popped.drain(..) {
                    q.add_unschedulable(qp, round.is_multiple_of(2), now);
                }
            }
            if round.is_multiple_of(7) {
                q.move_all_to_active_or_backoff(ClusterEvent::AssignedPodUpdate, now);
            }
            let by_index = q.len_active() + q.len_backoff() + q.len_unschedulable();
            assert_eq!(by_index + q.len_in_flight(), q.len());
            assert_eq!(q.len(), names.len());
        }
        let later = t0 + secs(3600);
        let mut seen: HashSet<String> = popped.iter().map(|qp| qp.key.clone()).collect();
        for qp in std::iter::from_fn(|| q.pop(later)) {
            assert!(seen.insert(qp.key), "popped twice");
        }
        assert_eq!(seen.len(), names.len());
    }
}
