//! One scheduling cycle, pure: filter the snapshot's nodes for a pod, score
//! the feasible ones, pick the best.
//!
//! Mirrors upstream's `pkg/scheduler/schedule_one.go` (`schedulePod`,
//! `findNodesThatFitPod`, `findNodesThatPassFilters`, `numFeasibleNodesToFind`,
//! `prioritizeNodes`, `selectHost`), the framework's `RunFilterPlugins` /
//! `RunScorePlugins`, upstream's default plugin set
//! (`apis/config/v1/default_plugins.go`) and `framework.FitError`:
//! - filters run in the profile's order and stop at the first failure of a
//!   node; nodes are visited from a rotating start index
//!   (`nextStartNodeIndex`), in parallel blocks when there are many, and the
//!   search stops once [`num_feasible_nodes_to_find`] nodes passed
//!   (`percentageOfNodesToScore`, adaptive by default);
//! - `InterPodAffinity` and `PodTopologySpread` compute their cluster-wide
//!   state once per cycle (upstream's `PreFilter` / `PreScore`) rather than
//!   per node, which is why [`FilterEntry`] / [`ScoreEntry`] name them;
//! - scores are normalized per plugin, multiplied by the plugin's weight and
//!   summed; ties between the best nodes are broken uniformly at random.
//!
//! Unlike upstream, which keeps whichever nodes its goroutines happened to
//! reach, the result here is deterministic: the parallel search keeps the
//! same prefix of nodes a sequential search would.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{Filter, FilterPlugin, NodeInfo, Resources, ScorePlugin, Snapshot};
use crate::plugins::balanced_allocation::BalancedAllocation;
use crate::plugins::inter_pod_affinity::{self, InterPodAffinity};
use crate::plugins::node_affinity::NodeAffinity;
use crate::plugins::node_name::NodeName;
use crate::plugins::node_ports::NodePorts;
use crate::plugins::node_resources_fit::{self, NodeResourcesFit};
use crate::plugins::node_unschedulable::NodeUnschedulable;
use crate::plugins::pod_topology_spread::{self, PodTopologySpread};
use crate::plugins::resources;
use crate::plugins::taint_toleration::TaintToleration;

/// Upstream's `minFeasibleNodesToFind`: below this many nodes, all are
/// searched; above it, at least this many feasible nodes are looked for.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream's `minFeasibleNodesPercentageToFind`.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;
/// Upstream's message when the cluster has no nodes (`ErrNoNodesAvailable`).
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

/// Nodes are handed to filter threads in blocks of this many.
const BLOCK: usize = 16;

/// One filter of a profile. Plugins with per-pod state are named so the
/// cycle computes it once instead of once per node: the two snapshot-wide
/// ones, and NodeResourcesFit (the pod's summed requests).
pub enum FilterEntry {
    Plugin(Box<dyn FilterPlugin>),
    NodeResourcesFit(NodeResourcesFit),
    InterPodAffinity(InterPodAffinity),
    PodTopologySpread(PodTopologySpread),
}

impl FilterEntry {
    pub fn plugin(plugin: impl FilterPlugin + 'static) -> Self {
        FilterEntry::Plugin(Box::new(plugin))
    }

    pub fn name(&self) -> &'static str {
        match self {
            FilterEntry::Plugin(p) => p.name(),
            FilterEntry::NodeResourcesFit(p) => FilterPlugin::name(p),
            FilterEntry::InterPodAffinity(_) => inter_pod_affinity::NAME,
            FilterEntry::PodTopologySpread(_) => pod_topology_spread::NAME,
        }
    }
}

/// One score plugin of a profile. Plugins with per-pod state are named so
/// it is computed once per cycle: InterPodAffinity's domain sums, and the
/// pod's requests for the two resource scores.
pub enum ScoreEntry {
    Plugin(Box<dyn ScorePlugin>),
    InterPodAffinity(InterPodAffinity),
    NodeResourcesFit(NodeResourcesFit),
    BalancedAllocation(BalancedAllocation),
}

impl ScoreEntry {
    pub fn plugin(plugin: impl ScorePlugin + 'static) -> Self {
        ScoreEntry::Plugin(Box::new(plugin))
    }

    pub fn name(&self) -> &'static str {
        match self {
            ScoreEntry::Plugin(p) => p.name(),
            ScoreEntry::InterPodAffinity(_) => inter_pod_affinity::NAME,
            ScoreEntry::NodeResourcesFit(p) => ScorePlugin::name(p),
            ScoreEntry::BalancedAllocation(p) => ScorePlugin::name(p),
        }
    }

    fn as_score_plugin(&self) -> &dyn ScorePlugin {
        match self {
            ScoreEntry::Plugin(p) => p.as_ref(),
            ScoreEntry::InterPodAffinity(p) => p,
            ScoreEntry::NodeResourcesFit(p) => p,
            ScoreEntry::BalancedAllocation(p) => p,
        }
    }
}

/// A scheduling profile (upstream's `KubeSchedulerProfile` reduced to filter
/// and score plugins).
pub struct Profile {
    /// Run in order; a node fails at the first failing filter.
    pub filters: Vec<FilterEntry>,
    /// With their weights.
    pub scores: Vec<(ScoreEntry, i64)>,
    /// Upstream's `percentageOfNodesToScore`; `None` or `Some(0)` = adaptive.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Threads for filtering and scoring; 0 = the machine's parallelism.
    pub parallelism: usize,
    /// Below this many nodes (to filter, or feasible to score) the work is
    /// done on the calling thread.
    pub min_nodes_for_parallelism: usize,
}

impl Default for Profile {
    fn default() -> Self {
        Profile::default_profile()
    }
}

impl Profile {
    /// A profile with no plugins.
    pub fn empty() -> Self {
        Profile {
            filters: Vec::new(),
            scores: Vec::new(),
            percentage_of_nodes_to_score: None,
            parallelism: 0,
            min_nodes_for_parallelism: 512,
        }
    }

    /// Upstream's default plugins, in upstream's order, with its weights
    /// (`getDefaultPlugins`, without the volume, image-locality and
    /// dynamic-resource plugins).
    pub fn default_profile() -> Self {
        Profile {
            filters: vec![
                FilterEntry::plugin(NodeUnschedulable),
                FilterEntry::plugin(NodeName),
                FilterEntry::plugin(TaintToleration),
                FilterEntry::plugin(NodeAffinity),
                FilterEntry::plugin(NodePorts),
                FilterEntry::NodeResourcesFit(NodeResourcesFit::default()),
                FilterEntry::PodTopologySpread(PodTopologySpread::new()),
                FilterEntry::InterPodAffinity(InterPodAffinity::new()),
            ],
            scores: vec![
                (ScoreEntry::plugin(TaintToleration), 3),
                (ScoreEntry::plugin(NodeAffinity), 2),
                (ScoreEntry::NodeResourcesFit(NodeResourcesFit::default()), 1),
                (ScoreEntry::plugin(PodTopologySpread::new()), 2),
                (ScoreEntry::InterPodAffinity(InterPodAffinity::new()), 2),
                (
                    ScoreEntry::BalancedAllocation(BalancedAllocation::default()),
                    1,
                ),
            ],
            ..Profile::empty()
        }
    }

    fn threads(&self) -> usize {
        if self.parallelism > 0 {
            self.parallelism
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Where the pod goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleResult {
    /// The chosen node's name (upstream's `SuggestedHost`).
    pub node: String,
    /// Nodes the filters ran on (upstream's `EvaluatedNodes`).
    pub evaluated: usize,
    /// Nodes that passed them (upstream's `FeasibleNodes`).
    pub feasible: usize,
    /// The start index for the next cycle (upstream's `nextStartNodeIndex`).
    pub next_start_index: usize,
}

/// The pod fits no node (upstream's `framework.FitError`). `Display` is the
/// `FailedScheduling` event message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// Failure reason → number of nodes that gave it.
    pub diagnosis: BTreeMap<String, usize>,
    /// Nodes whose failure was `Unresolvable`: preemption would not help
    /// there.
    pub unresolvable: BTreeSet<String>,
    /// Every node that failed, with its failure (upstream's `NodeToStatus`).
    pub node_statuses: BTreeMap<String, Filter>,
    /// Plugins that rejected some node (upstream's `UnschedulablePlugins`).
    pub unschedulable_plugins: BTreeSet<&'static str>,
    /// A pre-filter failure that rejected every node (upstream's
    /// `PreFilterMsg`); replaces the per-node histogram in the message.
    pub pre_filter_msg: Option<String>,
    /// Appended after the reasons (upstream's `PostFilterMsg`), e.g. from
    /// [`preemption_message`].
    pub post_filter_msg: Option<String>,
}

impl FitError {
    /// The sorted `"<count> <reason>"` entries, as upstream sorts them (as
    /// strings, count included).
    pub fn sorted_reasons(&self) -> Vec<String> {
        let mut reasons: Vec<String> = self
            .diagnosis
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        reasons.sort();
        reasons
    }

    fn record(&mut self, node: &str, plugin: &'static str, status: Filter) {
        for reason in status.reasons() {
            *self.diagnosis.entry(reason.clone()).or_default() += 1;
        }
        if matches!(status, Filter::Unresolvable(_)) {
            self.unresolvable.insert(node.to_string());
        }
        self.unschedulable_plugins.insert(plugin);
        self.node_statuses.insert(node.to_string(), status);
    }
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.num_all_nodes == 0 && self.pre_filter_msg.is_none() {
            return f.write_str(NO_NODES_AVAILABLE);
        }
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if let Some(msg) = &self.pre_filter_msg {
            write!(f, " {msg}.")?;
        } else {
            let reasons = self.sorted_reasons();
            if !reasons.is_empty() {
                write!(f, " {}.", reasons.join(", "))?;
            }
        }
        if let Some(msg) = &self.post_filter_msg {
            write!(f, " {msg}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

/// Upstream's DefaultPreemption `PostFilter` message: `preemption: <msg>`,
/// to put in [`FitError::post_filter_msg`].
pub fn preemption_message(msg: &str) -> String {
    format!("preemption: {msg}")
}

/// What upstream appends to the FitError message when preemption ran:
/// ` preemption: <msg>`.
pub fn preemption_suffix(msg: &str) -> String {
    format!(" {}", preemption_message(msg))
}

/// Upstream's `numFeasibleNodesToFind`: how many feasible nodes to look for
/// among `num_all_nodes` before stopping.
pub fn num_feasible_nodes_to_find(percentage: Option<u32>, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let mut percentage = percentage.unwrap_or(0) as usize;
    if percentage == 0 {
        percentage = 50usize
            .saturating_sub(num_all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    let num = num_all_nodes * percentage.min(100) / 100;
    num.max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// A filter ready to run for one pod: snapshot-wide state computed.
enum Prepared<'a> {
    Plugin(&'a dyn FilterPlugin),
    /// The pod's effective requests, summed once.
    NodeResourcesFit(&'a NodeResourcesFit, Resources),
    InterPodAffinity(&'a InterPodAffinity, inter_pod_affinity::PreFilterState),
    PodTopologySpread(&'a PodTopologySpread, pod_topology_spread::PreFilterState),
}

/// The profile's filters prepared for one pod and snapshot (upstream's
/// `RunPreFilterPlugins` + `RunFilterPlugins`).
pub(crate) struct PreparedFilters<'a> {
    steps: Vec<Prepared<'a>>,
}

impl<'a> PreparedFilters<'a> {
    /// Fails with (plugin, message) if a pre-filter rejects the pod outright.
    pub(crate) fn new(
        profile: &'a Profile,
        pod: &Pod,
        snapshot: &Snapshot,
    ) -> Result<Self, (&'static str, String)> {
        let mut steps = Vec::with_capacity(profile.filters.len());
        for entry in &profile.filters {
            steps.push(match entry {
                FilterEntry::Plugin(p) => Prepared::Plugin(p.as_ref()),
                FilterEntry::NodeResourcesFit(p) => {
                    Prepared::NodeResourcesFit(p, resources::pod_requests(pod))
                }
                FilterEntry::InterPodAffinity(p) => Prepared::InterPodAffinity(
                    p,
                    p.pre_filter(pod, snapshot)
                        .map_err(|e| (inter_pod_affinity::NAME, e))?,
                ),
                FilterEntry::PodTopologySpread(p) => Prepared::PodTopologySpread(
                    p,
                    p.pre_filter(pod, snapshot)
                        .map_err(|e| (pod_topology_spread::NAME, e))?,
                ),
            });
        }
        Ok(PreparedFilters { steps })
    }

    /// Runs the filters in order; the first failure and its plugin.
    pub(crate) fn run(
        &self,
        pod: &Pod,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Result<(), (&'static str, Filter)> {
        for step in &self.steps {
            let (name, result) = match step {
                Prepared::Plugin(p) => (p.name(), p.filter(pod, node, snapshot)),
                Prepared::NodeResourcesFit(p, request) => (
                    FilterPlugin::name(*p),
                    node_resources_fit::filter_request(request, node),
                ),
                Prepared::InterPodAffinity(p, state) => {
                    (inter_pod_affinity::NAME, p.filter_with_state(state, node))
                }
                Prepared::PodTopologySpread(p, state) => (
                    pod_topology_spread::NAME,
                    p.filter_with_state(state, pod, node),
                ),
            };
            if !result.is_pass() {
                return Err((name, result));
            }
        }
        Ok(())
    }
}

/// A FitError for a pre-filter rejection: every node unresolvable.
fn pre_filter_error(snapshot: &Snapshot, plugin: &'static str, msg: String) -> FitError {
    let mut error = FitError {
        num_all_nodes: snapshot.nodes.len(),
        pre_filter_msg: Some(msg.clone()),
        ..FitError::default()
    };
    for node in &snapshot.nodes {
        error.record(node.name(), plugin, Filter::Unresolvable(vec![msg.clone()]));
    }
    error
}

type NodeResult = Result<(), (&'static str, Filter)>;

/// The outcome of the filter phase.
struct Search {
    /// Indices into `snapshot.nodes` of the feasible nodes, in visit order.
    feasible: Vec<usize>,
    /// Failed nodes among the evaluated ones.
    failed: Vec<(usize, &'static str, Filter)>,
    evaluated: usize,
}

/// Visits nodes from `start` (wrapping) until `to_find` pass, in parallel
/// blocks when `threads > 1`. The result is the same either way.
fn find_nodes_that_pass(
    filters: &PreparedFilters<'_>,
    pod: &Pod,
    snapshot: &Snapshot,
    start: usize,
    to_find: usize,
    threads: usize,
) -> Search {
    let n = snapshot.nodes.len();
    let check = |i: usize| -> NodeResult {
        let index = (start + i) % n;
        filters.run(pod, &snapshot.nodes[index], snapshot)
    };
    // (visit position, result) for every evaluated node, in visit order.
    let mut results: Vec<(usize, NodeResult)> = Vec::new();
    if threads <= 1 {
        let mut found = 0;
        for i in 0..n {
            let result = check(i);
            found += usize::from(result.is_ok());
            results.push((i, result));
            if found >= to_find {
                break;
            }
        }
    } else {
        let next_block = AtomicUsize::new(0);
        let found = AtomicUsize::new(0);
        let collected = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut local = Vec::new();
                    while found.load(Ordering::Relaxed) < to_find {
                        let block = next_block.fetch_add(1, Ordering::Relaxed);
                        let begin = block * BLOCK;
                        if begin >= n {
                            break;
                        }
                        for i in begin..(begin + BLOCK).min(n) {
                            let result = check(i);
                            if result.is_ok() {
                                found.fetch_add(1, Ordering::Relaxed);
                            }
                            local.push((i, result));
                        }
                    }
                    collected
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .append(&mut local);
                });
            }
        });
        results = collected.into_inner().unwrap_or_else(|e| e.into_inner());
        // Blocks are claimed in order and always finished, so the evaluated
        // positions form a prefix 0..k; keep what a sequential search keeps.
        results.sort_unstable_by_key(|(i, _)| *i);
    }
    let mut search = Search {
        feasible: Vec::new(),
        failed: Vec::new(),
        evaluated: 0,
    };
    for (i, result) in results {
        if search.feasible.len() >= to_find {
            break;
        }
        let index = (start + i) % n;
        match result {
            Ok(()) => search.feasible.push(index),
            Err((plugin, status)) => search.failed.push((index, plugin, status)),
        }
        search.evaluated = i + 1;
    }
    search
}

/// Maps `0..len` through `f`, on up to `threads` threads (contiguous chunks),
/// keeping the order.
fn par_map<T: Send>(len: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if threads <= 1 || len < 2 {
        return (0..len).map(f).collect();
    }
    let chunk = len.div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..len)
            .step_by(chunk)
            .map(|begin| scope.spawn(move || (begin..(begin + chunk).min(len)).map(f).collect()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h: std::thread::ScopedJoinHandle<'_, Vec<T>>| {
                h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
            })
            .collect()
    })
}

/// A score plugin's per-pod state, computed once per cycle (upstream's
/// PreScore).
enum PreScore {
    None,
    InterPodAffinity(inter_pod_affinity::PreScoreState),
    Requests(Vec<i64>),
}

/// Weighted, normalized score sums of `nodes` (upstream's `prioritizeNodes`
/// without extenders).
fn prioritize(
    profile: &Profile,
    pod: &Pod,
    snapshot: &Snapshot,
    nodes: &[usize],
    threads: usize,
) -> Vec<i64> {
    let states: Vec<PreScore> = profile
        .scores
        .iter()
        .map(|(entry, _)| match entry {
            ScoreEntry::InterPodAffinity(p) => {
                PreScore::InterPodAffinity(p.pre_score(pod, snapshot))
            }
            ScoreEntry::NodeResourcesFit(p) => PreScore::Requests(p.pod_requests(pod)),
            ScoreEntry::BalancedAllocation(p) => PreScore::Requests(p.pod_requests(pod)),
            ScoreEntry::Plugin(_) => PreScore::None,
        })
        .collect();
    // Raw scores, one row per node.
    let rows: Vec<Vec<i64>> = par_map(nodes.len(), threads, |i| {
        let node = &snapshot.nodes[nodes[i]];
        profile
            .scores
            .iter()
            .zip(&states)
            .map(|((entry, _), state)| match (entry, state) {
                (ScoreEntry::InterPodAffinity(p), PreScore::InterPodAffinity(state)) => {
                    p.score_with_state(state, node)
                }
                (ScoreEntry::NodeResourcesFit(p), PreScore::Requests(r)) => {
                    p.score_requests(r, node)
                }
                (ScoreEntry::BalancedAllocation(p), PreScore::Requests(r)) => {
                    p.score_requests(r, node)
                }
                _ => entry.as_score_plugin().score(pod, node, snapshot),
            })
            .collect()
    });
    let mut totals = vec![0i64; nodes.len()];
    for (column, (entry, weight)) in profile.scores.iter().enumerate() {
        let mut scores: Vec<i64> = rows.iter().map(|row| row[column]).collect();
        entry.as_score_plugin().normalize(pod, &mut scores);
        for (total, score) in totals.iter_mut().zip(scores) {
            *total += score * weight;
        }
    }
    totals
}

/// A xorshift64* generator: enough for tie-breaking.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as usize % n.max(1)
    }
}

/// A seed that differs between calls: the clock, mixed with a counter.
fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let count = COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    nanos ^ count.rotate_left(17)
}

/// One scheduling cycle for `pod` against `snapshot`, visiting nodes from
/// `start_index` (pass the previous result's `next_start_index`). Ties are
/// broken with a fresh random seed.
// A FitError is the ordinary "unschedulable" outcome, built once per failed
// cycle; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub fn schedule(
    profile: &Profile,
    pod: &Pod,
    snapshot: &Snapshot,
    start_index: usize,
) -> Result<ScheduleResult, FitError> {
    schedule_with_seed(profile, pod, snapshot, start_index, fresh_seed())
}

/// [`schedule`] with the tie-breaking seed given (deterministic).
// A FitError is the ordinary "unschedulable" outcome, built once per failed
// cycle; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
pub fn schedule_with_seed(
    profile: &Profile,
    pod: &Pod,
    snapshot: &Snapshot,
    start_index: usize,
    seed: u64,
) -> Result<ScheduleResult, FitError> {
    let n = snapshot.nodes.len();
    if n == 0 {
        return Err(FitError::default());
    }
    let start = start_index % n;
    let filters = PreparedFilters::new(profile, pod, snapshot)
        .map_err(|(plugin, msg)| pre_filter_error(snapshot, plugin, msg))?;

    // Upstream's evaluateNominatedNode: a pod nominated by an earlier
    // preemption tries its nominated node first.
    let nominated = pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|name| !name.is_empty())
        .and_then(|name| snapshot.nodes.iter().position(|n| n.name() == name));
    if let Some(index) = nominated {
        if filters.run(pod, &snapshot.nodes[index], snapshot).is_ok() {
            return Ok(ScheduleResult {
                node: snapshot.nodes[index].name().to_string(),
                evaluated: 1,
                feasible: 1,
                next_start_index: start,
            });
        }
    }

    let to_find = if profile.scores.is_empty() {
        1
    } else {
        num_feasible_nodes_to_find(profile.percentage_of_nodes_to_score, n)
    };
    let threads = if n >= profile.min_nodes_for_parallelism {
        profile.threads()
    } else {
        1
    };
    let search = find_nodes_that_pass(&filters, pod, snapshot, start, to_find, threads);
    let next_start_index = (start + search.evaluated) % n;

    if search.feasible.is_empty() {
        let mut error = FitError {
            num_all_nodes: n,
            ..FitError::default()
        };
        for (index, plugin, status) in search.failed {
            error.record(snapshot.nodes[index].name(), plugin, status);
        }
        return Err(error);
    }
    let pick = |index: usize| ScheduleResult {
        node: snapshot.nodes[index].name().to_string(),
        evaluated: search.evaluated,
        feasible: search.feasible.len(),
        next_start_index,
    };
    if search.feasible.len() == 1 {
        return Ok(pick(search.feasible[0]));
    }
    let score_threads = if search.feasible.len() >= profile.min_nodes_for_parallelism {
        profile.threads()
    } else {
        1
    };
    let totals = prioritize(profile, pod, snapshot, &search.feasible, score_threads);
    let best = totals.iter().copied().max().unwrap_or(0);
    let winners: Vec<usize> = search
        .feasible
        .iter()
        .zip(&totals)
        .filter(|(_, &total)| total == best)
        .map(|(&index, _)| index)
        .collect();
    let choice = winners[Rng::new(seed).below(winners.len())];
    Ok(pick(choice))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};

    use super::*;
    use crate::plugins::resources::node_info;

    pub(crate) fn node(name: &str, cpu: &str, extra: Value) -> Node {
        let mut value = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}},
        });
        if let Value::Object(extra) = extra {
            for (key, v) in extra {
                value[key.as_str()] = v;
            }
        }
        serde_json::from_value(value).unwrap()
    }

    pub(crate) fn pod(name: &str, cpu: &str, spec_extra: Value) -> Pod {
        let mut spec = json!({"containers": [
            {"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}
        ]});
        if let Value::Object(extra) = spec_extra {
            for (key, v) in extra {
                spec[key.as_str()] = v;
            }
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn snapshot(nodes: Vec<(Node, Vec<Pod>)>) -> Snapshot {
        Snapshot::new(
            nodes
                .into_iter()
                .map(|(n, pods)| node_info(Arc::new(n), pods.into_iter().map(Arc::new).collect()))
                .collect(),
        )
    }

    fn control_plane_taint() -> Value {
        json!({"spec": {"taints": [
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
        ]}})
    }

    #[test]
    fn picks_the_node_with_most_free_resources() {
        let snap = snapshot(vec![
            (
                node("busy", "4", Value::Null),
                vec![pod("a", "3", Value::Null)],
            ),
            (node("idle", "4", Value::Null), vec![]),
            (
                node("half", "4", Value::Null),
                vec![pod("b", "2", Value::Null)],
            ),
        ]);
        let profile = Profile::default_profile();
        for seed in 0..10 {
            let result =
                schedule_with_seed(&profile, &pod("p", "500m", Value::Null), &snap, 0, seed)
                    .unwrap();
            assert_eq!(result.node, "idle");
            assert_eq!((result.evaluated, result.feasible), (3, 3));
        }
    }

    #[test]
    fn respects_taints_and_affinity() {
        let affinity = json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
            ]}
        }}});
        let toleration = json!({"tolerations": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}
        ]});
        let ssd = json!({"metadata": {"name": "ssd", "labels": {"disk": "ssd"}}});
        let tainted_ssd = json!({
            "metadata": {"name": "cp", "labels": {"disk": "ssd"}},
            "spec": {"taints": [
                {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
            ]}
        });
        let cases: Vec<(&str, Pod, Vec<Node>, Option<&str>)> = vec![
            (
                "taint avoided",
                pod("p", "100m", Value::Null),
                vec![
                    node("cp", "8", control_plane_taint()),
                    node("w", "1", Value::Null),
                ],
                Some("w"),
            ),
            (
                "taint tolerated",
                pod("p", "100m", toleration.clone()),
                vec![node("cp", "8", control_plane_taint())],
                Some("cp"),
            ),
            (
                "affinity",
                pod("p", "100m", affinity.clone()),
                vec![node("hdd", "8", Value::Null), node("ssd", "1", ssd.clone())],
                Some("ssd"),
            ),
            (
                "affinity and taint",
                pod("p", "100m", affinity.clone()),
                vec![node("hdd", "8", Value::Null), node("cp", "8", tainted_ssd)],
                None,
            ),
        ];
        let profile = Profile::default_profile();
        for (name, pod, nodes, want) in cases {
            let snap = snapshot(nodes.into_iter().map(|n| (n, vec![])).collect());
            let got = schedule_with_seed(&profile, &pod, &snap, 0, 7).map(|r| r.node);
            assert_eq!(got.ok().as_deref(), want, "{name}");
        }
    }

    #[test]
    fn fit_error_message() {
        let snap = snapshot(vec![
            (node("cp", "8", control_plane_taint()), vec![]),
            (
                node("w1", "1", Value::Null),
                vec![pod("a", "800m", Value::Null)],
            ),
            (
                node("w2", "1", Value::Null),
                vec![pod("b", "900m", Value::Null)],
            ),
        ]);
        let err = schedule(
            &Profile::default_profile(),
            &pod("p", "500m", Value::Null),
            &snap,
            1,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."
        );
        assert_eq!(err.unresolvable, BTreeSet::from(["cp".to_string()]));
        assert_eq!(
            err.unschedulable_plugins,
            BTreeSet::from(["NodeResourcesFit", "TaintToleration"])
        );
        let mut with_preemption = err.clone();
        with_preemption.post_filter_msg = Some(preemption_message(
            "0/3 nodes are available: 1 Preemption is not helpful for scheduling, \
             2 No preemption victims found for incoming pod.",
        ));
        assert_eq!(
            with_preemption.to_string(),
            format!(
                "{err}{}",
                preemption_suffix(
                    "0/3 nodes are available: 1 Preemption is not helpful for scheduling, \
                     2 No preemption victims found for incoming pod."
                )
            )
        );
        // Counts sort as strings, as upstream's sort.Strings does.
        let many = FitError {
            num_all_nodes: 12,
            diagnosis: BTreeMap::from([("b".to_string(), 10), ("a".to_string(), 2)]),
            ..FitError::default()
        };
        assert_eq!(many.to_string(), "0/12 nodes are available: 10 b, 2 a.");
        assert_eq!(FitError::default().to_string(), NO_NODES_AVAILABLE);
    }

    #[test]
    fn num_feasible_nodes_table() {
        let cases = [
            (None, 10, 10),
            (None, 99, 99),
            (None, 100, 100),
            (None, 1000, 420),
            (None, 5000, 500),
            (None, 6000, 300),
            (None, 50000, 2500),
            (Some(0), 5000, 500),
            (Some(50), 1000, 500),
            (Some(1), 1000, 100),
            (Some(100), 5000, 5000),
            (Some(40), 50, 50),
        ];
        for (percentage, nodes, want) in cases {
            assert_eq!(
                num_feasible_nodes_to_find(percentage, nodes),
                want,
                "{percentage:?} {nodes}"
            );
        }
    }

    /// 1000 nodes, every third full: parallel and sequential searches agree.
    #[test]
    fn parallel_and_sequential_agree() {
        let nodes: Vec<(Node, Vec<Pod>)> = (0..1000)
            .map(|i| {
                let pods = if i % 3 == 0 {
                    vec![pod(&format!("x{i}"), "2", Value::Null)]
                } else {
                    vec![]
                };
                (node(&format!("n{i:04}"), "2", Value::Null), pods)
            })
            .collect();
        let snap = snapshot(nodes);
        let p = pod("p", "1", Value::Null);
        for start in [0, 5, 999] {
            let mut sequential = Profile::default_profile();
            sequential.parallelism = 1;
            let mut parallel = Profile::default_profile();
            parallel.parallelism = 4;
            parallel.min_nodes_for_parallelism = 1;
            let filters_s = PreparedFilters::new(&sequential, &p, &snap).ok().unwrap();
            let filters_p = PreparedFilters::new(&parallel, &p, &snap).ok().unwrap();
            let to_find = num_feasible_nodes_to_find(None, 1000);
            let s = find_nodes_that_pass(&filters_s, &p, &snap, start, to_find, 1);
            let q = find_nodes_that_pass(&filters_p, &p, &snap, start, to_find, 4);
            assert_eq!(s.feasible, q.feasible);
            assert_eq!(s.evaluated, q.evaluated);
            assert_eq!(s.feasible.len(), 420);
            let failed = |s: &Search| s.failed.iter().map(|f| f.0).collect::<Vec<_>>();
            assert_eq!(failed(&s), failed(&q));
            let a = schedule_with_seed(&sequential, &p, &snap, start, 3).unwrap();
            let b = schedule_with_seed(&parallel, &p, &snap, start, 3).unwrap();
            assert_eq!(a, b);
            assert_eq!(a.next_start_index, (start + a.evaluated) % 1000);
        }
        // Nothing fits: every node evaluated, both ways.
        let big = pod("big", "3", Value::Null);
        let mut parallel = Profile::default_profile();
        parallel.parallelism = 3;
        parallel.min_nodes_for_parallelism = 1;
        let err = schedule(&parallel, &big, &snap, 17).unwrap_err();
        assert_eq!(err.node_statuses.len(), 1000);
        assert_eq!(
            err.to_string(),
            "0/1000 nodes are available: 1000 Insufficient cpu."
        );
    }

    #[test]
    fn ties_are_broken_across_nodes() {
        let snap = snapshot(
            (0..4)
                .map(|i| (node(&format!("n{i}"), "4", Value::Null), vec![]))
                .collect(),
        );
        let profile = Profile::default_profile();
        let p = pod("p", "1", Value::Null);
        let chosen: BTreeSet<String> = (0..64)
            .map(|seed| {
                schedule_with_seed(&profile, &p, &snap, 0, seed)
                    .unwrap()
                    .node
            })
            .collect();
        assert_eq!(chosen.len(), 4);
    }

    #[test]
    fn nominated_node_is_tried_first() {
        let snap = snapshot(vec![
            (node("idle", "8", Value::Null), vec![]),
            (
                node("busy", "2", Value::Null),
                vec![pod("a", "1", Value::Null)],
            ),
        ]);
        let mut p = pod("p", "500m", Value::Null);
        p.status = Some(serde_json::from_value(json!({"nominatedNodeName": "busy"})).unwrap());
        let result = schedule(&Profile::default_profile(), &p, &snap, 0).unwrap();
        assert_eq!((result.node.as_str(), result.evaluated), ("busy", 1));
    }
}
