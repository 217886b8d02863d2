//! The disruption controller (upstream's `pkg/controller/disruption`):
//! keeps every PodDisruptionBudget's status current, so the API server's
//! eviction subresource can answer from `status.disruptionsAllowed`.
//!
//! For a budget, the pods are those in its namespace its selector matches
//! (a missing selector matches none, an empty one all). Then:
//! - `expectedPods` and `desiredHealthy` ([`expected_pod_count`]): an
//!   integer `minAvailable` is taken as is against the number of pods; a
//!   percentage `minAvailable` or any `maxUnavailable` is resolved against
//!   the scale of the pods' controllers (a Deployment through its
//!   ReplicaSets, a ReplicaSet, a StatefulSet, anything else through its
//!   `/scale`), rounding up as upstream;
//! - `currentHealthy` ([`count_healthy`]): ready pods that are neither being
//!   deleted nor recently evicted (`status.disruptedPods`, written by the
//!   eviction subresource and forgotten once the pod is being deleted or
//!   after two minutes, [`disrupted_pods`]);
//! - `disruptionsAllowed` = currentHealthy - desiredHealthy, never below 0,
//!   and 0 while no pods are expected; the `DisruptionAllowed` condition
//!   says `SufficientPods` or `InsufficientPods` ([`next_status`]).
//!
//! When the computation fails (an unknown controller, a bad percentage) the
//! budget "fails safe": `disruptionsAllowed` 0 and the condition False with
//! reason `SyncFailed`, so evictions stop rather than go unchecked.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use api::selector::{from_optional_label_selector, LabelSelector};
use component_base::events::EventRecorder;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;

use crate::context::Context;
use crate::framework::{forward, run_workers, Informer, ObjectKey, Outcome, WorkQueue};
use crate::pods::{controller_of, is_pod_ready};

/// How long an evicted pod may take to get its deletion timestamp before the
/// budget stops counting it as disrupted (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// The condition type and its reasons (`policy/v1` constants).
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

/// Events are recorded as upstream's disruption controller records them.
const COMPONENT: &str = "controllermanager";

/// A controller found for a pod: its UID and desired replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerScale<'a> {
    pub uid: &'a str,
    pub replicas: i32,
}

/// What the budget expects: `expectedPods`, `desiredHealthy`, and the pods
/// without a controller (counted as nothing in a scale-based budget).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expected {
    pub expected_count: i32,
    pub desired_healthy: i32,
    pub unmanaged: Vec<String>,
}

/// Upstream's `GetScaledValueFromIntOrPercent`: an integer as is, `"N%"` of
/// `total`, rounded up or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    let percent = match value {
        IntOrString::Int(n) => return Ok(*n),
        IntOrString::String(s) => s,
    };
    let Some(number) = percent.strip_suffix('%') else {
        return Err(
            "invalid value for IntOrString: invalid type: string is not a percentage".into(),
        );
    };
    let number: i64 = number
        .parse()
        .map_err(|e| format!("invalid value for IntOrString: invalid value {percent:?}: {e}"))?;
    let scaled = number as f64 * f64::from(total) / 100.0;
    let scaled = if round_up {
        scaled.ceil()
    } else {
        scaled.floor()
    };
    Ok(scaled as i32)
}

/// Whether the budget needs its pods' controllers' scale: a percentage
/// `minAvailable` or any `maxUnavailable`.
pub fn needs_scale(pdb: &PodDisruptionBudget) -> bool {
    let spec = pdb.spec.as_ref();
    spec.is_some_and(|s| s.max_unavailable.is_some())
        || matches!(
            spec.and_then(|s| s.min_available.as_ref()),
            Some(IntOrString::String(_))
        )
}

/// Upstream's `getExpectedScale`: the sum of the scale of every distinct
/// controller of `pods`, found by `find` from a pod's controller reference
/// (`Ok(None)`: no such controller). A pod without a controller is listed
/// as unmanaged; one whose controller cannot be found is an error.
pub fn expected_scale<'a>(
    pods: &[&Pod],
    find: impl Fn(&OwnerReference) -> Result<Option<ControllerScale<'a>>, String>,
) -> Result<(i32, Vec<String>), String> {
    // By the pod's controller reference UID, then by the controller found
    // (a Deployment stands for all of its ReplicaSets).
    let mut seen_refs: BTreeMap<&str, ()> = BTreeMap::new();
    let mut scales: BTreeMap<&'a str, i32> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(owner) = controller_of(*pod) else {
            unmanaged.push(name);
            continue;
        };
        if seen_refs.insert(owner.uid.as_str(), ()).is_some() {
            continue;
        }
        match find(owner)? {
            Some(found) => {
                scales.insert(found.uid, found.replicas);
            }
            None => return Err(format!("found no controllers for pod {name:?}")),
        }
    }
    Ok((scales.values().sum(), unmanaged))
}

/// Upstream's `getExpectedPodCount`.
pub fn expected_pod_count<'a>(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    find: impl Fn(&OwnerReference) -> Result<Option<ControllerScale<'a>>, String>,
) -> Result<Expected, String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max_unavailable) = &spec.max_unavailable {
        let (expected_count, unmanaged) = expected_scale(pods, find)?;
        let max_unavailable = scaled_value(max_unavailable, expected_count, true)?;
        return Ok(Expected {
            expected_count,
            desired_healthy: (expected_count - max_unavailable).max(0),
            unmanaged,
        });
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok(Expected {
            expected_count: pods.len() as i32,
            desired_healthy: *n,
            unmanaged: Vec::new(),
        }),
        Some(percent @ IntOrString::String(_)) => {
            let (expected_count, unmanaged) = expected_scale(pods, find)?;
            Ok(Expected {
                expected_count,
                desired_healthy: scaled_value(percent, expected_count, true)?,
                unmanaged,
            })
        }
        // Neither set: nothing is required (policy/v1 has no default).
        None => Ok(Expected::default()),
    }
}

fn plus(at: Timestamp, d: Duration) -> Timestamp {
    at.saturating_add(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
        .unwrap_or(at)
}

/// Upstream's `buildDisruptedPodMap`: the evictions still pending (pod not
/// yet being deleted, evicted less than [`DELETION_TIMEOUT`] ago), when to
/// look again (the earliest such timeout), and the pods whose eviction
/// timed out without a deletion (a `NotDeleted` warning each).
pub fn disrupted_pods(
    pods: &[&Pod],
    recorded: Option<&BTreeMap<String, Time>>,
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>, Vec<String>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let mut not_deleted = Vec::new();
    let Some(recorded) = recorded else {
        return (kept, recheck, not_deleted);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(evicted) = recorded.get(&name) else {
            continue;
        };
        let expected_deletion = plus(evicted.0, DELETION_TIMEOUT);
        if expected_deletion < now {
            not_deleted.push(name);
        } else {
            recheck = Some(recheck.map_or(expected_deletion, |r| r.min(expected_deletion)));
            kept.insert(name, evicted.clone());
        }
    }
    (kept, recheck, not_deleted)
}

/// Upstream's `countHealthyPods`: ready pods not being deleted and not
/// evicted within the last [`DELETION_TIMEOUT`].
pub fn count_healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    pods.iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let name = pod.metadata.name.as_deref().unwrap_or("");
            disrupted
                .get(name)
                .is_none_or(|evicted| plus(evicted.0, DELETION_TIMEOUT) <= now)
        })
        .filter(|pod| is_pod_ready(pod))
        .count() as i32
}

/// Upstream's `meta.SetStatusCondition`: add the condition or update the
/// one of its type, moving `lastTransitionTime` only when the status
/// changes.
pub fn set_condition(conditions: &mut Vec<Condition>, condition: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.status != condition.status {
                existing.status = condition.status;
                existing.last_transition_time = condition.last_transition_time;
            }
            existing.reason = condition.reason;
            existing.message = condition.message;
            existing.observed_generation = condition.observed_generation;
        }
        None => conditions.push(condition),
    }
}

/// The `DisruptionAllowed` condition for a status (upstream's
/// `UpdateDisruptionAllowedCondition`).
fn allowed_condition(status: &PodDisruptionBudgetStatus, now: Timestamp) -> Condition {
    let (value, reason) = if status.disruptions_allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: value.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: status.observed_generation,
        last_transition_time: Time(now),
    }
}

/// Upstream's `ConditionsAreUpToDate`.
fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = &pdb.status else {
        return false;
    };
    let Some(condition) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    else {
        return false;
    };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        condition.status == "True" && condition.reason == SUFFICIENT_PODS
    } else {
        condition.status == "False" && condition.reason == INSUFFICIENT_PODS
    }
}

/// Upstream's `updatePdbStatus`: the status to write, or `None` when the
/// budget's status already says all this.
pub fn next_status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    expected: &Expected,
    disrupted: BTreeMap<String, Time>,
    now: Timestamp,
) -> Option<PodDisruptionBudgetStatus> {
    // No disruption while no pods are expected: a budget whose first pods
    // appear before this controller looks again must not allow any.
    let mut disruptions_allowed = current_healthy - expected.desired_healthy;
    if expected.expected_count <= 0 || disruptions_allowed <= 0 {
        disruptions_allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let old_disrupted = old.disrupted_pods.clone().unwrap_or_default();
    if old.current_healthy == current_healthy
        && old.desired_healthy == expected.desired_healthy
        && old.expected_pods == expected.expected_count
        && old.disruptions_allowed == disruptions_allowed
        && old_disrupted == disrupted
        && old.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb)
    {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy: expected.desired_healthy,
        expected_pods: expected.expected_count,
        disruptions_allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: None,
    };
    let mut conditions = old.conditions.unwrap_or_default();
    set_condition(&mut conditions, allowed_condition(&status, now));
    status.conditions = Some(conditions);
    Some(status)
}

/// Upstream's `failSafe`: no disruptions, and the condition says why.
pub fn fail_safe_status(
    pdb: &PodDisruptionBudget,
    error: &str,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let mut conditions = status.conditions.take().unwrap_or_default();
    set_condition(
        &mut conditions,
        Condition {
            type_: DISRUPTION_ALLOWED.into(),
            status: "False".into(),
            reason: SYNC_FAILED.into(),
            message: error.to_string(),
            observed_generation: status.observed_generation,
            last_transition_time: Time(now),
        },
    );
    status.conditions = Some(conditions);
    status
}

/// The budget's selector; a malformed one selects nothing.
fn selector_of(pdb: &PodDisruptionBudget) -> Result<LabelSelector, String> {
    from_optional_label_selector(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
        .map_err(|e| e.to_string())
}

/// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → ``).
fn group_of(api_version: &str) -> &str {
    api_version
        .rsplit_once('/')
        .map(|(group, _)| group)
        .unwrap_or("")
}

/// The informers the controller lookups read.
#[derive(Clone)]
struct Stores {
    pdbs: Informer<PodDisruptionBudget>,
    pods: Informer<Pod>,
    replica_sets: Informer<ReplicaSet>,
    deployments: Informer<Deployment>,
    stateful_sets: Informer<StatefulSet>,
}

/// A pod controller's UID and scale, owned (the lookups may fetch).
type Found = Option<(String, i32)>;

impl Stores {
    /// Upstream's finders for the built-in kinds, from the informers: a
    /// ReplicaSet controlled by a Deployment stands for the Deployment.
    /// `None` when the kind is not one of them.
    fn find_builtin(&self, owner: &OwnerReference, namespace: &str) -> Option<Found> {
        let group = group_of(&owner.api_version);
        let key = ObjectKey::new(namespace, &owner.name);
        let same = |uid: &Option<String>| uid.as_deref() == Some(owner.uid.as_str());
        match (owner.kind.as_str(), group) {
            ("ReplicaSet", "apps" | "extensions") => {
                let Some(rs) = self
                    .replica_sets
                    .get(&key)
                    .filter(|rs| same(&rs.metadata.uid))
                else {
                    return Some(None);
                };
                // A Deployment's ReplicaSet counts as the Deployment; if
                // that is gone, upstream's `/scale` fallback finds the
                // ReplicaSet itself.
                let parent = controller_of(rs.as_ref()).filter(|p| p.kind == "Deployment");
                let deployment = parent.and_then(|parent| {
                    self.deployments
                        .get(&ObjectKey::new(namespace, &parent.name))
                        .filter(|d| d.metadata.uid.as_deref() == Some(parent.uid.as_str()))
                });
                if let Some(d) = deployment {
                    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    return Some(Some((d.metadata.uid.clone().unwrap_or_default(), replicas)));
                }
                let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some(Some((owner.uid.clone(), replicas)))
            }
            ("StatefulSet", "apps") => Some(
                self.stateful_sets
                    .get(&key)
                    .filter(|ss| same(&ss.metadata.uid))
                    .map(|ss| {
                        let replicas = ss.spec.as_ref().and_then(|s| s.replicas);
                        (owner.uid.clone(), replicas.unwrap_or(1))
                    }),
            ),
            _ => None,
        }
    }
}

/// Upstream's `getScaleController`: any other kind through its `/scale`
/// subresource, found by discovery.
async fn find_by_scale(
    client: &kube::Client,
    owner: &OwnerReference,
    namespace: &str,
) -> Result<Found, String> {
    let (group, version) = match owner.api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", owner.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &owner.kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|_| {
            format!(
                "no matches for kind {:?} in version {:?}",
                owner.kind, owner.api_version
            )
        })?;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    match api.get_scale(&owner.name).await {
        Ok(scale) if scale.metadata.uid.as_deref() == Some(owner.uid.as_str()) => Ok(Some((
            owner.uid.clone(),
            scale.spec.and_then(|s| s.replicas).unwrap_or(0),
        ))),
        Ok(_) => Ok(None),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The PDBs in `pod`'s namespace whose selector matches it.
fn budgets_for(pdbs: &Informer<PodDisruptionBudget>, pod: &Pod) -> Vec<Arc<PodDisruptionBudget>> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    pdbs.list_namespace(namespace)
        .into_iter()
        .filter(|pdb| selector_of(pdb).is_ok_and(|s| s.matches(&labels)))
        .collect()
}

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let stores = Stores {
        pdbs: ctx.informers.get::<PodDisruptionBudget>(),
        pods: ctx.informers.get::<Pod>(),
        replica_sets: ctx.informers.get::<ReplicaSet>(),
        deployments: ctx.informers.get::<Deployment>(),
        stateful_sets: ctx.informers.get::<StatefulSet>(),
    };
    let recorder = EventRecorder::new(ctx.client.clone(), COMPONENT);
    let queue = WorkQueue::new();
    forward(&stores.pdbs, &queue, |change| {
        vec![ObjectKey::of(change.object().as_ref())]
    });
    {
        let pdbs = stores.pdbs.clone();
        let recorder = recorder.clone();
        forward(&stores.pods, &queue, move |change| {
            let pod = change.object();
            let mut budgets = budgets_for(&pdbs, pod);
            if budgets.len() > 1 {
                // Upstream syncs one arbitrarily and warns; we sync all.
                let first = budgets[0].metadata.name.clone().unwrap_or_default();
                recorder.warning(
                    pod.as_ref(),
                    "MultiplePodDisruptionBudgets",
                    format!(
                        "Pod {:?}/{:?} matches multiple PodDisruptionBudgets.  Chose {first:?} arbitrarily.",
                        pod.metadata.namespace.as_deref().unwrap_or(""),
                        pod.metadata.name.as_deref().unwrap_or(""),
                    ),
                );
            }
            // A relabelled pod leaves its old budget too.
            if let Some(old) = change.old() {
                budgets.extend(budgets_for(&pdbs, old));
            }
            budgets.iter().map(|b| ObjectKey::of(b.as_ref())).collect()
        });
    }
    stores.pdbs.wait_synced().await;
    stores.pods.wait_synced().await;
    stores.replica_sets.wait_synced().await;
    stores.deployments.wait_synced().await;
    stores.stateful_sets.wait_synced().await;
    let workers = ctx.settings.concurrent_syncs;
    run_workers("disruption", queue, workers, move |key: ObjectKey| {
        let ctx = ctx.clone();
        let stores = stores.clone();
        let recorder = recorder.clone();
        async move { sync(&ctx, &stores, &recorder, &key).await }
    })
    .await;
    Ok(())
}

/// Why a sync failed: a write conflict (retry) or a computation error
/// (fail safe).
enum SyncError {
    Write(kube::Error),
    Compute(String),
}

async fn sync(
    ctx: &Context,
    stores: &Stores,
    recorder: &EventRecorder,
    key: &ObjectKey,
) -> anyhow::Result<Outcome> {
    let Some(pdb) = stores.pdbs.get(key) else {
        return Ok(Outcome::Done);
    };
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &key.namespace);
    match try_sync(ctx, stores, recorder, &pdb, &api).await {
        Ok(outcome) => Ok(outcome),
        Err(SyncError::Write(e)) => Err(e.into()),
        Err(SyncError::Compute(error)) => {
            let mut failed = (*pdb).clone();
            let status = fail_safe_status(&pdb, &error, Timestamp::now());
            if pdb.status.as_ref() != Some(&status) {
                failed.status = Some(status);
                api.replace_status(&key.name, &PostParams::default(), &failed)
                    .await?;
            }
            // Retried with backoff: the missing controller may yet appear.
            Err(anyhow!("syncing PodDisruptionBudget {key}: {error}"))
        }
    }
}

async fn try_sync(
    ctx: &Context,
    stores: &Stores,
    recorder: &EventRecorder,
    pdb: &PodDisruptionBudget,
    api: &Api<PodDisruptionBudget>,
) -> Result<Outcome, SyncError> {
    let namespace = pdb.metadata.namespace.clone().unwrap_or_default();
    let selector = match selector_of(pdb) {
        Ok(selector) => selector,
        Err(e) => {
            recorder.warning(pdb, "NoPods", format!("Failed to get pods: {e}"));
            return Err(SyncError::Compute(e));
        }
    };
    let all = stores.pods.list_namespace(&namespace);
    let pods: Vec<&Pod> = all
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| {
            !selector.matches_nothing()
                && selector.matches(&p.metadata.labels.clone().unwrap_or_default())
        })
        .collect();
    if pods.is_empty() {
        recorder.normal(pdb, "NoPods", "No matching pods found");
    }

    // Resolve the controllers the budget needs up front: the informers
    // answer the built-in kinds, `/scale` the others.
    let mut found: HashMap<String, Result<Found, String>> = HashMap::new();
    if needs_scale(pdb) {
        for pod in &pods {
            let Some(owner) = controller_of(*pod) else {
                continue;
            };
            if found.contains_key(&owner.uid) {
                continue;
            }
            let result = match stores.find_builtin(owner, &namespace) {
                Some(result) => Ok(result),
                None => find_by_scale(&ctx.client, owner, &namespace).await,
            };
            found.insert(owner.uid.clone(), result);
        }
    }
    let expected = expected_pod_count(pdb, &pods, |owner| match found.get(&owner.uid) {
        Some(Ok(Some((uid, replicas)))) => Ok(Some(ControllerScale {
            uid: uid.as_str(),
            replicas: *replicas,
        })),
        Some(Ok(None)) | None => Ok(None),
        Some(Err(e)) => Err(e.clone()),
    });
    let expected = match expected {
        Ok(expected) => expected,
        Err(e) => {
            recorder.warning(
                pdb,
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {e}"),
            );
            return Err(SyncError::Compute(e));
        }
    };
    if !expected.unmanaged.is_empty() {
        recorder.warning(
            pdb,
            "UnmanagedPods",
            format!(
                "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                serde_json::to_string(&pdb.spec.as_ref().and_then(|s| s.selector.as_ref()))
                    .unwrap_or_default()
            ),
        );
    }

    let now = Timestamp::now();
    let recorded = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
    let (disrupted, recheck, not_deleted) = disrupted_pods(&pods, recorded, now);
    for name in not_deleted {
        if let Some(pod) = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(&name))
        {
            recorder.warning(
                *pod,
                "NotDeleted",
                format!(
                    "Pod was expected by PDB {namespace}/{} to be deleted but it wasn't",
                    pdb.metadata.name.as_deref().unwrap_or("")
                ),
            );
        }
    }
    let current_healthy = count_healthy(&pods, &disrupted, now);
    if let Some(status) = next_status(pdb, current_healthy, &expected, disrupted, now) {
        let mut updated = pdb.clone();
        updated.status = Some(status);
        let name = pdb.metadata.name.clone().unwrap_or_default();
        api.replace_status(&name, &PostParams::default(), &updated)
            .await
            .map_err(SyncError::Write)?;
    }
    Ok(match recheck {
        Some(at) => {
            let wait = at.duration_since(now).unsigned_abs();
            Outcome::RequeueAfter(wait)
        }
        None => Outcome::Done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: uid.into(),
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn budget(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: Some("pdb".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                ..Default::default()
            }),
            status: None,
        }
    }

    fn int(n: i32) -> Option<IntOrString> {
        Some(IntOrString::Int(n))
    }
    fn pct(s: &str) -> Option<IntOrString> {
        Some(IntOrString::String(s.into()))
    }

    #[test]
    fn percentages_scale_and_round_as_upstream() {
        let cases = [
            (IntOrString::Int(3), 10, true, Ok(3)),
            (IntOrString::String("50%".into()), 5, true, Ok(3)),
            (IntOrString::String("50%".into()), 5, false, Ok(2)),
            (IntOrString::String("34%".into()), 3, true, Ok(2)),
            (IntOrString::String("0%".into()), 7, true, Ok(0)),
            (IntOrString::String("100%".into()), 7, true, Ok(7)),
        ];
        for (value, total, up, want) in cases {
            assert_eq!(
                scaled_value(&value, total, up),
                want,
                "{value:?} of {total}"
            );
        }
        assert!(scaled_value(&IntOrString::String("5".into()), 5, true)
            .unwrap_err()
            .contains("not a percentage"));
        assert!(scaled_value(&IntOrString::String("x%".into()), 5, true).is_err());
    }

    #[test]
    fn expected_and_desired_pods_follow_the_budget_kind() {
        // Two ReplicaSets: "a" wants 3 replicas, "b" (of a Deployment "d")
        // wants 2; pod p4 has no controller.
        let pods = [
            pod("p1", true, Some("a")),
            pod("p2", true, Some("a")),
            pod("p3", true, Some("b")),
            pod("p4", true, None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let find = |owner: &OwnerReference| -> Result<Option<ControllerScale<'static>>, String> {
            Ok(match owner.uid.as_str() {
                "a" => Some(ControllerScale {
                    uid: "a",
                    replicas: 3,
                }),
                "b" => Some(ControllerScale {
                    uid: "d",
                    replicas: 2,
                }),
                _ => None,
            })
        };
        let cases = [
            // minAvailable integer: as is, against the pods found.
            (budget(int(2), None), 4, 2),
            // A percentage of the controllers' scale (5), rounded up.
            (budget(pct("50%"), None), 5, 3),
            (budget(pct("100%"), None), 5, 5),
            // maxUnavailable: scale minus the (rounded-up) allowance.
            (budget(None, int(1)), 5, 4),
            (budget(None, pct("30%")), 5, 3),
            (budget(None, int(9)), 5, 0),
            // Neither: nothing required.
            (budget(None, None), 0, 0),
        ];
        for (pdb, expected, desired) in cases {
            let got = expected_pod_count(&pdb, &refs, find).unwrap();
            assert_eq!(
                (got.expected_count, got.desired_healthy),
                (expected, desired),
                "{:?}",
                pdb.spec
            );
        }
        let got = expected_pod_count(&budget(pct("50%"), None), &refs, find).unwrap();
        assert_eq!(got.unmanaged, ["p4"]);

        let orphaned = [pod("p1", true, Some("gone"))];
        let refs: Vec<&Pod> = orphaned.iter().collect();
        assert_eq!(
            expected_pod_count(&budget(None, int(1)), &refs, find),
            Err("found no controllers for pod \"p1\"".to_string())
        );
        // An integer minAvailable never looks the controllers up.
        assert!(expected_pod_count(&budget(int(1), None), &refs, find).is_ok());
    }

    #[test]
    fn healthy_pods_are_ready_not_deleting_and_not_just_evicted() {
        let mut deleting = pod("deleting", true, None);
        deleting.metadata.deletion_timestamp = Some(Time(at(0)));
        let pods = [
            pod("ready", true, None),
            pod("unready", false, None),
            deleting,
            pod("evicted", true, None),
            pod("evicted-long-ago", true, None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let recorded: BTreeMap<String, Time> = [
            ("evicted".to_string(), Time(at(-30))),
            ("evicted-long-ago".to_string(), Time(at(-300))),
            ("deleting".to_string(), Time(at(-10))),
            ("gone".to_string(), Time(at(-10))),
        ]
        .into();
        let (kept, recheck, not_deleted) = disrupted_pods(&refs, Some(&recorded), at(0));
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["evicted"]);
        assert_eq!(recheck, Some(at(90)));
        assert_eq!(not_deleted, ["evicted-long-ago"]);
        assert_eq!(count_healthy(&refs, &kept, at(0)), 2);
    }

    #[test]
    fn disruptions_allowed_and_the_condition() {
        let pdb = budget(int(2), None);
        let expected = |count, desired| Expected {
            expected_count: count,
            desired_healthy: desired,
            unmanaged: vec![],
        };
        let cases = [
            (3, expected(3, 2), 1, "True", SUFFICIENT_PODS),
            (2, expected(3, 2), 0, "False", INSUFFICIENT_PODS),
            (1, expected(3, 2), 0, "False", INSUFFICIENT_PODS),
            // No pods expected: nothing may be disrupted.
            (1, expected(0, 0), 0, "False", INSUFFICIENT_PODS),
        ];
        for (healthy, expected, allowed, condition, reason) in cases {
            let status = next_status(&pdb, healthy, &expected, BTreeMap::new(), at(0)).unwrap();
            assert_eq!(
                status.disruptions_allowed, allowed,
                "{healthy} {expected:?}"
            );
            assert_eq!(status.observed_generation, Some(1));
            let c = &status.conditions.as_ref().unwrap()[0];
            assert_eq!((c.status.as_str(), c.reason.as_str()), (condition, reason));
        }

        // Written once; the same answer later writes nothing, and a change
        // of status moves the transition time.
        let mut written = pdb.clone();
        written.status = next_status(&pdb, 3, &expected(3, 2), BTreeMap::new(), at(0));
        assert_eq!(
            next_status(&written, 3, &expected(3, 2), BTreeMap::new(), at(5)),
            None
        );
        let changed = next_status(&written, 2, &expected(3, 2), BTreeMap::new(), at(9)).unwrap();
        let c = &changed.conditions.unwrap()[0];
        assert_eq!(c.last_transition_time, Time(at(9)));

        let failed = fail_safe_status(&written, "found no controllers for pod \"x\"", at(20));
        assert_eq!(failed.disruptions_allowed, 0);
        let c = &failed.conditions.unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", SYNC_FAILED)
        );
        assert_eq!(c.message, "found no controllers for pod \"x\"");
    }
}
