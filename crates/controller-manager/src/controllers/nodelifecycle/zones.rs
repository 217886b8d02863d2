//! Rate-limited NoExecute tainting per zone, and upstream's disruption
//! modes (`handleDisruption`).
//!
//! Nodes found not ready are queued per zone (`topology.kubernetes.io/
//! region` and `zone` labels) and tainted at `--node-eviction-rate` (0.1
//! nodes a second, a burst of one: the first at once, then one every ten
//! seconds), so a flapping network does not empty a zone in one go. After
//! each health pass the zones' states are recomputed from their nodes'
//! Ready conditions:
//! - Normal: the normal rate;
//! - PartialDisruption (more than two nodes and at least 55% of the zone
//!   not ready): `--secondary-node-eviction-rate` (0.01/s) in zones larger
//!   than `--large-cluster-size-threshold` (50 nodes), none in smaller ones;
//! - FullDisruption (no ready node): the normal rate, unless every zone is
//!   fully disrupted. Then the problem is more likely ours (or the network's)
//!   than the nodes': the controller stops tainting and takes the NoExecute
//!   taints off every node ("master disruption mode"), and when some node
//!   comes back every node gets a fresh grace period.

use std::collections::{BTreeMap, HashSet, VecDeque};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;

/// `--node-eviction-rate`.
pub const EVICTION_RATE: f64 = 0.1;
/// `--secondary-node-eviction-rate`.
pub const SECONDARY_EVICTION_RATE: f64 = 0.01;
/// `--large-cluster-size-threshold`.
pub const LARGE_CLUSTER_THRESHOLD: usize = 50;
/// `--unhealthy-zone-threshold`.
pub const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;
/// Nodes carrying this label are left out of the zone states.
pub const EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

/// Upstream's `GetZoneKey`: region and zone (the beta labels first), or ""
/// for a node without either.
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let label = |beta: &str, ga: &str| {
        labels
            .and_then(|l| l.get(beta).or_else(|| l.get(ga)))
            .cloned()
            .unwrap_or_default()
    };
    let zone = label(
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/zone",
    );
    let region = label(
        "failure-domain.beta.kubernetes.io/region",
        "topology.kubernetes.io/region",
    );
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    // The NUL keeps "a:b" + "c" apart from "a" + "b:c".
    format!("{region}:\0:{zone}")
}

/// Whether the node is left out of the disruption checks.
pub fn excluded(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(EXCLUDE_DISRUPTION))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Upstream's `ComputeZoneState` from the zone's Ready statuses (`None`: no
/// Ready condition): how many are not ready, and the state.
pub fn zone_state(ready: &[Option<String>]) -> (usize, ZoneState) {
    let ready_nodes = ready
        .iter()
        .filter(|r| r.as_deref() == Some("True"))
        .count();
    let not_ready = ready.len() - ready_nodes;
    let state = if ready_nodes == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / ready.len() as f64 >= UNHEALTHY_ZONE_THRESHOLD {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (not_ready, state)
}

/// The tainting rate a zone of `size` nodes gets in `state`.
fn rate_for(state: ZoneState, size: usize) -> f64 {
    match state {
        ZoneState::PartialDisruption if size > LARGE_CLUSTER_THRESHOLD => SECONDARY_EVICTION_RATE,
        ZoneState::PartialDisruption => 0.0,
        _ => EVICTION_RATE,
    }
}

/// A token bucket of burst one (client-go's `NewTokenBucketRateLimiter` as
/// the node controller sizes it); a rate of 0 never lets anything through.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Timestamp,
}

impl TokenBucket {
    pub fn new(rate: f64, now: Timestamp) -> Self {
        TokenBucket {
            rate,
            tokens: 1.0,
            last: now,
        }
    }

    fn refill(&mut self, now: Timestamp) {
        let elapsed = now.duration_since(self.last).as_secs_f64().max(0.0);
        self.tokens = (self.tokens + elapsed * self.rate).min(1.0);
        self.last = now;
    }

    /// Take a token if there is one.
    pub fn try_accept(&mut self, now: Timestamp) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Change the rate; a bucket that was empty stays empty (upstream's
    /// `SwapLimiter` drains the new one when the old one was exhausted).
    pub fn set_rate(&mut self, rate: f64, now: Timestamp) {
        if rate == self.rate {
            return;
        }
        self.refill(now);
        self.rate = rate;
    }
}

/// One zone's tainting queue (upstream's `RateLimitedTimedQueue`): a node
/// stays "known" after it was tainted, so it is not queued again until it
/// is marked reachable (or its taint disappears).
#[derive(Debug, Clone)]
struct Tainter {
    bucket: TokenBucket,
    queue: VecDeque<String>,
    known: HashSet<String>,
}

/// What the disruption check asks the controller to do beyond rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisruptionAction {
    Nothing,
    /// Every zone is fully disrupted: take the NoExecute taints off every
    /// node.
    EnterMasterDisruption,
    /// Some node is back: every node gets a fresh grace period.
    ExitMasterDisruption,
}

/// The zones' states and tainting queues.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    states: BTreeMap<String, ZoneState>,
    tainters: BTreeMap<String, Tainter>,
}

impl Zones {
    /// Upstream's `addPodEvictorForNewZone`.
    pub fn ensure_zone(&mut self, zone: &str, now: Timestamp) {
        if !self.states.contains_key(zone) {
            self.states.insert(zone.to_string(), ZoneState::Initial);
            self.tainters.insert(
                zone.to_string(),
                Tainter {
                    bucket: TokenBucket::new(EVICTION_RATE, now),
                    queue: VecDeque::new(),
                    known: HashSet::new(),
                },
            );
        }
    }

    /// Whether `zone` has a state (the node's zone was registered).
    pub fn has_zone(&self, zone: &str) -> bool {
        self.states.contains_key(zone)
    }

    /// Upstream's `markNodeForTainting`: queue `node` for the taint it
    /// needs; `has_taint` says whether it carries that taint already (if
    /// not, a node tainted before is queued again).
    pub fn mark_for_tainting(&mut self, zone: &str, node: &str, has_taint: bool, now: Timestamp) {
        self.ensure_zone(zone, now);
        let tainter = self.tainters.get_mut(zone).expect("ensured above");
        if !has_taint {
            tainter.known.remove(node);
            tainter.queue.retain(|n| n != node);
        }
        if tainter.known.insert(node.to_string()) {
            tainter.queue.push_back(node.to_string());
        }
    }

    /// Forget `node` in `zone` (it is reachable again, or gone).
    pub fn forget(&mut self, zone: &str, node: &str) {
        if let Some(tainter) = self.tainters.get_mut(zone) {
            tainter.known.remove(node);
            tainter.queue.retain(|n| n != node);
        }
    }

    /// The nodes whose turn it is, each zone's rate permitting (taken off
    /// the queues; [`Zones::retry`] puts back those that failed).
    pub fn due(&mut self, now: Timestamp) -> Vec<(String, String)> {
        let mut due = Vec::new();
        for (zone, tainter) in &mut self.tainters {
            while !tainter.queue.is_empty() && tainter.bucket.try_accept(now) {
                if let Some(node) = tainter.queue.pop_front() {
                    due.push((zone.clone(), node));
                }
            }
        }
        due
    }

    /// Queue a node again after a failed attempt.
    pub fn retry(&mut self, zone: &str, node: &str) {
        if let Some(tainter) = self.tainters.get_mut(zone) {
            if tainter.known.contains(node) && !tainter.queue.iter().any(|n| n == node) {
                tainter.queue.push_back(node.to_string());
            }
        }
    }

    /// The state of `zone`.
    pub fn state(&self, zone: &str) -> Option<ZoneState> {
        self.states.get(zone).copied()
    }

    /// Upstream's `handleDisruption`, from each zone's Ready statuses.
    pub fn handle_disruption(
        &mut self,
        zones: &BTreeMap<String, Vec<Option<String>>>,
        now: Timestamp,
    ) -> DisruptionAction {
        let mut new_states = BTreeMap::new();
        let mut all_fully_disrupted = true;
        for (zone, ready) in zones {
            let (_, state) = zone_state(ready);
            if state != ZoneState::FullDisruption {
                all_fully_disrupted = false;
            }
            new_states.insert(zone.clone(), state);
            self.ensure_zone(zone, now);
        }
        // Zones without nodes are forgotten.
        self.states.retain(|zone, _| zones.contains_key(zone));
        let all_were_fully_disrupted = self
            .states
            .values()
            .all(|s| *s == ZoneState::FullDisruption);

        if all_fully_disrupted && all_were_fully_disrupted {
            return DisruptionAction::Nothing;
        }
        if all_fully_disrupted {
            for (zone, state) in &mut self.states {
                *state = ZoneState::FullDisruption;
                if let Some(t) = self.tainters.get_mut(zone) {
                    t.bucket.set_rate(0.0, now);
                }
            }
            return DisruptionAction::EnterMasterDisruption;
        }
        let exiting = all_were_fully_disrupted;
        for (zone, state) in &mut self.states {
            let new = new_states[zone];
            if *state == new && !exiting {
                continue;
            }
            *state = new;
            if let Some(t) = self.tainters.get_mut(zone) {
                t.bucket.set_rate(rate_for(new, zones[zone].len()), now);
            }
        }
        if exiting {
            DisruptionAction::ExitMasterDisruption
        } else {
            DisruptionAction::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_800_000_000_000 + ms).unwrap()
    }

    fn statuses(ready: usize, not_ready: usize) -> Vec<Option<String>> {
        let mut v = vec![Some("True".to_string()); ready];
        v.extend(vec![Some("Unknown".to_string()); not_ready]);
        v
    }

    #[test]
    fn zone_states_follow_the_share_of_ready_nodes() {
        let cases = [
            (statuses(3, 0), ZoneState::Normal),
            (statuses(1, 2), ZoneState::Normal),
            (statuses(2, 3), ZoneState::PartialDisruption),
            (statuses(3, 3), ZoneState::Normal),
            (statuses(0, 1), ZoneState::FullDisruption),
            (vec![None, Some("True".into())], ZoneState::Normal),
        ];
        for (ready, want) in cases {
            assert_eq!(zone_state(&ready).1, want, "{ready:?}");
        }
        let node = |labels: &[(&str, &str)]| Node {
            metadata: ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(zone_key(&node(&[])), "");
        assert_eq!(
            zone_key(&node(&[
                ("topology.kubernetes.io/region", "r"),
                ("topology.kubernetes.io/zone", "z")
            ])),
            "r:\0:z"
        );
    }

    #[test]
    fn tainting_is_rate_limited_per_zone() {
        let mut zones = Zones::default();
        for node in ["a", "b", "c"] {
            zones.mark_for_tainting("", node, false, at(0));
        }
        zones.mark_for_tainting("z2", "d", false, at(0));
        // One at once per zone, then one per ten seconds.
        let names =
            |due: Vec<(String, String)>| due.into_iter().map(|(_, n)| n).collect::<Vec<_>>();
        assert_eq!(names(zones.due(at(0))), ["a", "d"]);
        assert!(zones.due(at(5_000)).is_empty());
        assert_eq!(names(zones.due(at(10_000))), ["b"]);
        // A tainted node is not queued again while it keeps its taint.
        zones.mark_for_tainting("", "a", true, at(10_000));
        assert_eq!(names(zones.due(at(20_000))), ["c"]);
        // ...but is if its taint went away.
        zones.mark_for_tainting("", "a", false, at(20_000));
        assert_eq!(names(zones.due(at(30_000))), ["a"]);
        // Reachable again: forgotten, so it is queued afresh next time.
        zones.forget("", "a");
        zones.mark_for_tainting("", "a", true, at(30_000));
        assert_eq!(names(zones.due(at(40_000))), ["a"]);
    }

    #[test]
    fn all_zones_down_means_master_disruption() {
        let mut zones = Zones::default();
        zones.mark_for_tainting("", "x", false, at(0));
        let one_zone = |ready: usize, not_ready: usize| -> BTreeMap<String, Vec<Option<String>>> {
            [(String::new(), statuses(ready, not_ready))].into()
        };
        assert_eq!(
            zones.handle_disruption(&one_zone(1, 1), at(0)),
            DisruptionAction::Nothing
        );
        assert_eq!(zones.state(""), Some(ZoneState::Normal));
        // Every node down: stop tainting, untaint everything.
        assert_eq!(
            zones.handle_disruption(&one_zone(0, 2), at(1_000)),
            DisruptionAction::EnterMasterDisruption
        );
        assert!(
            zones.due(at(60_000)).is_empty(),
            "no tainting in master disruption"
        );
        assert_eq!(
            zones.handle_disruption(&one_zone(0, 2), at(2_000)),
            DisruptionAction::Nothing
        );
        // One back: fresh grace periods, tainting resumes.
        assert_eq!(
            zones.handle_disruption(&one_zone(1, 1), at(3_000)),
            DisruptionAction::ExitMasterDisruption
        );
        assert_eq!(zones.state(""), Some(ZoneState::Normal));
        assert_eq!(zones.due(at(70_000)).len(), 1);

        // A large zone in partial disruption taints slowly, a small one not
        // at all; one fully down zone next to a healthy one is tainted at
        // the normal rate.
        let mut zones = Zones::default();
        let map: BTreeMap<String, Vec<Option<String>>> = [
            ("small".to_string(), statuses(2, 3)),
            ("large".to_string(), statuses(20, 40)),
            ("down".to_string(), statuses(0, 2)),
        ]
        .into();
        assert_eq!(
            zones.handle_disruption(&map, at(0)),
            DisruptionAction::Nothing
        );
        assert_eq!(zones.state("small"), Some(ZoneState::PartialDisruption));
        assert_eq!(zones.state("down"), Some(ZoneState::FullDisruption));
        for (zone, node) in [
            ("small", "s1"),
            ("large", "l1"),
            ("large", "l2"),
            ("down", "d1"),
            ("down", "d2"),
        ] {
            zones.mark_for_tainting(zone, node, false, at(0));
        }
        let due: Vec<String> = zones.due(at(1)).into_iter().map(|(_, n)| n).collect();
        // The initial token of the large zone is left; the small one's rate
        // is zero.
        assert_eq!(due, ["d1", "l1"]);
        assert_eq!(
            zones
                .due(at(20_000))
                .into_iter()
                .map(|(_, n)| n)
                .collect::<Vec<_>>(),
            ["d2"]
        );
        assert_eq!(
            zones
                .due(at(100_001))
                .into_iter()
                .map(|(_, n)| n)
                .collect::<Vec<_>>(),
            ["l2"]
        );
    }
}
