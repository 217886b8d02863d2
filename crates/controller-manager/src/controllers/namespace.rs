//! The namespace controller (upstream's `namespace` controller and its
//! `deletion` package): empties a namespace being deleted, then releases
//! it.
//!
//! Deleting a Namespace only marks it (deletionTimestamp, phase
//! Terminating) while its `spec.finalizers` holds `kubernetes`. For such a
//! namespace this controller, on every pass:
//! - discovers every namespaced resource that can be deleted, and deletes
//!   its objects in the namespace (deletecollection where served, else
//!   list and delete one by one, always with background propagation);
//! - lists what remains: pods in their grace period and objects held by
//!   finalizers take time, so the namespace is looked at again after half
//!   the longest grace period (15 s for finalizers), as upstream does;
//! - reports progress in the namespace's status conditions
//!   (NamespaceDeletionDiscoveryFailure, NamespaceDeletionGroupVersionParsingFailure,
//!   NamespaceDeletionContentFailure, NamespaceContentRemaining,
//!   NamespaceFinalizersRemaining), with upstream's reasons and messages;
//! - once nothing remains, removes `kubernetes` through the
//!   `namespaces/<name>/finalize` subresource, and the server deletes the
//!   namespace.
//!
//! Failures are retried with backoff capped at a minute (upstream's
//! namespace rate limiter), so a namespace is never forgotten for long.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy};

use crate::context::Context;
use crate::controllers::garbagecollector::discovery::{self, Resource};
use crate::framework::queue::backoff;
use crate::framework::{forward, run_workers, Change, ObjectKey, Outcome, WorkQueue};

/// The finalizer this controller owns in `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";
/// Upstream's estimate for objects held by finalizers.
pub const FINALIZER_ESTIMATE_SECONDS: i64 = 15;
/// The longest retry delay after a failure (upstream's rate limiter).
pub const MAX_RETRY: Duration = Duration::from_secs(60);
/// How many resource types are emptied at once.
const CONCURRENCY: usize = 4;

/// The condition types this controller maintains, in upstream's order.
pub const CONDITION_TYPES: [&str; 5] = [
    "NamespaceDeletionDiscoveryFailure",
    "NamespaceDeletionGroupVersionParsingFailure",
    "NamespaceDeletionContentFailure",
    "NamespaceContentRemaining",
    "NamespaceFinalizersRemaining",
];

/// The reason and message of a condition that reports no problem.
fn ok_condition(type_: &str) -> (&'static str, &'static str) {
    match type_ {
        "NamespaceDeletionDiscoveryFailure" => (
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        "NamespaceDeletionGroupVersionParsingFailure" => (
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        "NamespaceDeletionContentFailure" => (
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        _ => ("ContentRemoved", "All content successfully removed"),
    }
}

/// What emptying one resource type found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Emptied {
    /// Seconds until what remains should be gone (0: no estimate).
    pub estimate: i64,
    /// Objects still there.
    pub remaining: usize,
    /// Finalizer → how many remaining objects it holds.
    pub finalizers: BTreeMap<String, usize>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Upstream's verdict on one resource type after its objects were
/// deleted, from its grace estimate and each remaining object's
/// finalizers: nothing left is done; objects in their grace period or held
/// by finalizers are expected to take time; anything else left is an
/// error (and is retried).
pub fn after_deletion(
    estimate: i64,
    remaining: &[Vec<String>],
    namespace: &str,
    resource: &str,
) -> Emptied {
    if remaining.is_empty() {
        return Emptied::default();
    }
    let mut finalizers = BTreeMap::new();
    for f in remaining.iter().flatten() {
        *finalizers.entry(f.clone()).or_insert(0) += 1;
    }
    let mut emptied = Emptied {
        estimate,
        remaining: remaining.len(),
        finalizers,
        error: None,
    };
    if estimate == 0 {
        if emptied.finalizers.is_empty() {
            emptied.error = Some(format!(
                "unexpected items still remain in namespace: {namespace} for gvr: {resource}"
            ));
        } else {
            emptied.estimate = FINALIZER_ESTIMATE_SECONDS;
        }
    }
    emptied
}

/// Upstream's pod estimate: the longest grace period of the pods not yet
/// finished, or zero once the namespace has been terminating that long.
pub fn pod_estimate(pods: &[Pod], terminating_for: Duration) -> i64 {
    let longest = pods
        .iter()
        .filter(|p| !matches!(crate::pods::phase(p), "Succeeded" | "Failed"))
        .filter_map(|p| p.spec.as_ref()?.termination_grace_period_seconds)
        .max()
        .unwrap_or(0)
        .max(0);
    let allowed = Duration::from_secs(longest.unsigned_abs());
    if terminating_for >= allowed {
        0
    } else {
        longest
    }
}

/// What one pass over a namespace's content found, for its conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    pub discovery_error: Option<String>,
    /// Per-resource deletion failures.
    pub errors: Vec<String>,
    /// `plural.group` → remaining objects.
    pub remaining: BTreeMap<String, usize>,
    /// Finalizer → remaining objects it holds.
    pub finalizers: BTreeMap<String, usize>,
}

/// The (type, status, reason, message) of every condition upstream
/// maintains, for what a pass found.
pub fn conditions(content: &Content) -> Vec<(&'static str, bool, String, String)> {
    CONDITION_TYPES
        .iter()
        .map(|&type_| {
            let failing: Option<(&str, String)> = match type_ {
                "NamespaceDeletionDiscoveryFailure" => content
                    .discovery_error
                    .clone()
                    .map(|e| ("DiscoveryFailed", e)),
                "NamespaceDeletionContentFailure" if !content.errors.is_empty() => {
                    let mut errors = content.errors.clone();
                    errors.sort();
                    Some((
                        "ContentDeletionFailed",
                        format!(
                            "Failed to delete all resource types, {} remaining: {}",
                            errors.len(),
                            errors.join(", ")
                        ),
                    ))
                }
                "NamespaceContentRemaining" if !content.remaining.is_empty() => {
                    let mut parts: Vec<String> = content
                        .remaining
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(r, n)| format!("{r} has {n} resource instances"))
                        .collect();
                    parts.sort();
                    Some((
                        "SomeResourcesRemain",
                        format!("Some resources are remaining: {}", parts.join(", ")),
                    ))
                }
                "NamespaceFinalizersRemaining" if !content.finalizers.is_empty() => {
                    let mut parts: Vec<String> = content
                        .finalizers
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(f, n)| format!("{f} in {n} resource instances"))
                        .collect();
                    parts.sort();
                    Some((
                        "SomeFinalizerRemain",
                        format!("Some finalizers are remaining: {}", parts.join(", ")),
                    ))
                }
                _ => None,
            };
            match failing {
                Some((reason, message)) => (type_, true, reason.to_string(), message),
                None => {
                    let (reason, message) = ok_condition(type_);
                    (type_, false, reason.to_string(), message.to_string())
                }
            }
        })
        .collect()
}

/// Upstream's `updateConditions`: the namespace's conditions with these
/// applied (a transition time only when the status flips); `None` if
/// nothing changes.
pub fn updated_conditions(
    existing: &[NamespaceCondition],
    wanted: &[(&'static str, bool, String, String)],
    now: Timestamp,
) -> Option<Vec<NamespaceCondition>> {
    let mut conditions = existing.to_vec();
    let mut changed = false;
    for (type_, status, reason, message) in wanted {
        let status = if *status { "True" } else { "False" };
        match conditions.iter_mut().find(|c| c.type_ == *type_) {
            None => {
                conditions.push(NamespaceCondition {
                    type_: type_.to_string(),
                    status: status.to_string(),
                    reason: Some(reason.clone()),
                    message: Some(message.clone()),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
            Some(c) => {
                if c.status != status
                    || c.reason.as_deref() != Some(reason.as_str())
                    || c.message.as_deref() != Some(message.as_str())
                {
                    if c.status != status {
                        c.last_transition_time = Some(Time(now));
                    }
                    c.status = status.to_string();
                    c.reason = Some(reason.clone());
                    c.message = Some(message.clone());
                    changed = true;
                }
            }
        }
    }
    changed.then_some(conditions)
}

/// `spec.finalizers` without ours, as a sorted set (upstream's
/// `finalizeNamespace`); `None` if ours is not there.
pub fn without_our_finalizer(finalizers: &[String]) -> Option<Vec<String>> {
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return None;
    }
    let mut rest: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    rest.sort();
    rest.dedup();
    Some(rest)
}

/// How long to wait before looking again at content expected to go
/// within `estimate` seconds (upstream: half of it, plus a second).
pub fn recheck_after(estimate: i64) -> Duration {
    Duration::from_secs((estimate.max(0) / 2 + 1).unsigned_abs())
}

pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let namespaces = ctx.informers.get::<Namespace>();
    let queue = WorkQueue::new();
    forward(&namespaces, &queue, |change| match change {
        Change::Deleted(_) => Vec::new(),
        change => {
            let ns = change.object();
            if ns.metadata.deletion_timestamp.is_some() {
                vec![ns.metadata.name.clone().unwrap_or_default()]
            } else {
                Vec::new()
            }
        }
    });
    namespaces.wait_synced().await;
    let failures: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let workers = ctx.settings.concurrent_syncs;
    run_workers("namespace", queue, workers, move |name: String| {
        let ctx = ctx.clone();
        let namespaces = namespaces.clone();
        let failures = failures.clone();
        async move {
            if namespaces.get(&ObjectKey::cluster(&name)).is_none() {
                return Ok(Outcome::Done);
            }
            let result = sync(&ctx, &name).await;
            let mut failures = failures.lock().unwrap_or_else(|e| e.into_inner());
            match result {
                Ok(outcome) => {
                    failures.remove(&name);
                    Ok(outcome)
                }
                Err(error) => {
                    // Retried with backoff, but at least every minute.
                    let n = failures.entry(name.clone()).or_insert(0);
                    *n += 1;
                    let delay = backoff(*n).min(MAX_RETRY);
                    tracing::info!(namespace = %name, error = format!("{error:#}"), ?delay, "namespace deletion incomplete; retrying");
                    Ok(Outcome::RequeueAfter(delay))
                }
            }
        }
    })
    .await;
    Ok(())
}

/// One pass over a namespace (upstream's `namespacedResourcesDeleter.Delete`).
async fn sync(ctx: &Context, name: &str) -> anyhow::Result<Outcome> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    // Several controllers edit a terminating namespace: work from the
    // latest.
    let Some(mut namespace) = api.get_opt(name).await? else {
        return Ok(Outcome::Done);
    };
    let Some(deleted_at) = namespace.metadata.deletion_timestamp.clone() else {
        return Ok(Outcome::Done);
    };
    let phase = namespace.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase != Some("Terminating") {
        namespace.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
        namespace = api
            .replace_status(name, &PostParams::default(), &namespace)
            .await?;
    }
    let finalizers = namespace
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    let Some(rest) = without_our_finalizer(&finalizers) else {
        // Already released: the server deletes it once others let go.
        return Ok(Outcome::Done);
    };

    let now = Timestamp::now();
    let terminating_for = Duration::from_secs(
        (now.as_second() - deleted_at.0.as_second())
            .max(0)
            .unsigned_abs(),
    );
    let (estimate, content) = delete_all_content(ctx, name, terminating_for).await;
    let wanted = conditions(&content);
    let existing = namespace
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if let Some(updated) = updated_conditions(&existing, &wanted, now) {
        let mut with_conditions = namespace.clone();
        with_conditions
            .status
            .get_or_insert_with(Default::default)
            .conditions = Some(updated);
        match api
            .replace_status(name, &PostParams::default(), &with_conditions)
            .await
        {
            Ok(written) => namespace = written,
            // Upstream only logs this: the next pass writes them again.
            Err(error) => {
                tracing::info!(namespace = %name, %error, "couldn't update namespace deletion conditions")
            }
        }
    }
    let mut errors = content.errors;
    errors.extend(content.discovery_error);
    if !errors.is_empty() {
        errors.sort();
        anyhow::bail!("{}", errors.join("; "));
    }
    if estimate > 0 {
        tracing::debug!(namespace = %name, estimate, "content remaining in namespace");
        return Ok(Outcome::RequeueAfter(recheck_after(estimate)));
    }

    // Empty: release it.
    namespace
        .spec
        .get_or_insert_with(Default::default)
        .finalizers = Some(rest);
    match api
        .replace_subresource("finalize", name, &PostParams::default(), &namespace)
        .await
    {
        Ok(_) => Ok(Outcome::Done),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Outcome::Done),
        Err(e) => Err(e.into()),
    }
}

/// Delete every namespaced object in `namespace`; returns the longest
/// estimate of what remains and what the pass found.
async fn delete_all_content(
    ctx: &Context,
    namespace: &str,
    terminating_for: Duration,
) -> (i64, Content) {
    let mut content = Content::default();
    let resources = match discovery::discover(&ctx.client).await {
        Ok(resources) => resources
            .preferred
            .into_iter()
            .filter(|r| r.namespaced && r.supports("delete"))
            .collect(),
        Err(error) => {
            content.discovery_error = Some(format!("{error:#}"));
            Vec::new()
        }
    };
    let results: Vec<(Resource, Emptied)> = futures::stream::iter(resources)
        .map(|resource| async move {
            let emptied = empty_resource(ctx, &resource, namespace, terminating_for).await;
            (resource, emptied)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut estimate = 0;
    for (resource, emptied) in results {
        estimate = estimate.max(emptied.estimate);
        if let Some(error) = emptied.error {
            content.errors.push(error);
        }
        if emptied.remaining > 0 {
            content
                .remaining
                .insert(resource.group_resource(), emptied.remaining);
            for (finalizer, n) in emptied.finalizers {
                *content.finalizers.entry(finalizer).or_insert(0) += n;
            }
        }
    }
    (estimate, content)
}

/// Upstream's `deleteAllContentForGroupVersionResource`.
async fn empty_resource(
    ctx: &Context,
    resource: &Resource,
    namespace: &str,
    terminating_for: Duration,
) -> Emptied {
    let failed = |estimate: i64, error: String| Emptied {
        estimate,
        error: Some(error),
        ..Default::default()
    };
    // Pods take their grace period to go.
    let estimate = if resource.ar.group.is_empty() && resource.ar.plural == "pods" {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
        match pods.list(&ListParams::default()).await {
            Ok(list) => pod_estimate(&list.items, terminating_for),
            Err(error) => return failed(0, error.to_string()),
        }
    } else {
        0
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &resource.ar);
    // The garbage collector must not orphan anything here: everything in
    // the namespace goes.
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    let mut collection_deleted = false;
    if resource.supports("deletecollection") {
        match api
            .delete_collection(&background, &ListParams::default())
            .await
        {
            Ok(_) => collection_deleted = true,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => {}
            Err(error) => return failed(estimate, error.to_string()),
        }
    }
    if !resource.supports("list") {
        return Emptied {
            estimate,
            ..Default::default()
        };
    }
    if !collection_deleted {
        let listed = match api.list_metadata(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => Vec::new(),
            Err(error) => return failed(estimate, error.to_string()),
        };
        for item in listed {
            let name = item.metadata.name.unwrap_or_default();
            match api.delete(&name, &background).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => {}
                Err(error) => return failed(estimate, error.to_string()),
            }
        }
    }
    match api.list_metadata(&ListParams::default()).await {
        Ok(list) => {
            let remaining: Vec<Vec<String>> = list
                .items
                .into_iter()
                .map(|i| i.metadata.finalizers.unwrap_or_default())
                .collect();
            after_deletion(
                estimate,
                &remaining,
                namespace,
                &format!(
                    "{}/{}, Resource={}",
                    resource.ar.group, resource.ar.version, resource.ar.plural
                ),
            )
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => Emptied {
            estimate,
            ..Default::default()
        },
        Err(error) => failed(estimate, error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, grace: Option<i64>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "spec": {"containers": [], "terminationGracePeriodSeconds": grace},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn pods_are_given_their_longest_grace_period_since_the_namespace_went() {
        let pods = [
            pod("Running", Some(30)),
            pod("Pending", Some(10)),
            // Finished pods have nothing to wait for.
            pod("Succeeded", Some(600)),
            pod("Running", None),
        ];
        assert_eq!(pod_estimate(&pods, Duration::ZERO), 30);
        assert_eq!(pod_estimate(&pods, Duration::from_secs(29)), 30);
        // Past the grace period, no more waiting is expected.
        assert_eq!(pod_estimate(&pods, Duration::from_secs(30)), 0);
        assert_eq!(pod_estimate(&[], Duration::ZERO), 0);
        assert_eq!(recheck_after(30), Duration::from_secs(16));
        assert_eq!(recheck_after(0), Duration::from_secs(1));
    }

    #[test]
    fn what_remains_after_deleting_is_expected_or_an_error() {
        let gvr = "/v1, Resource=configmaps";
        assert_eq!(after_deletion(30, &[], "ns", gvr), Emptied::default());
        let graceful = after_deletion(30, &[vec![], vec![]], "ns", gvr);
        assert_eq!((graceful.estimate, graceful.remaining), (30, 2));
        assert_eq!(graceful.error, None);
        let held = after_deletion(0, &[vec!["example.com/hold".into()], vec![]], "ns", gvr);
        assert_eq!(held.estimate, FINALIZER_ESTIMATE_SECONDS);
        assert_eq!(held.finalizers["example.com/hold"], 1);
        assert_eq!(held.error, None);
        let stuck = after_deletion(0, &[vec![]], "ns", gvr);
        assert_eq!(
            stuck.error.as_deref(),
            Some(
                "unexpected items still remain in namespace: ns for gvr: /v1, Resource=configmaps"
            )
        );
    }

    #[test]
    fn conditions_read_as_upstreams() {
        let content = Content {
            remaining: BTreeMap::from([
                ("pods.".to_string(), 2),
                ("widgets.example.com".to_string(), 1),
            ]),
            finalizers: BTreeMap::from([("example.com/hold".to_string(), 1)]),
            ..Default::default()
        };
        let wanted = conditions(&content);
        let by_type = |t: &str| wanted.iter().find(|c| c.0 == t).unwrap().clone();
        assert_eq!(
            by_type("NamespaceContentRemaining"),
            (
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain".to_string(),
                "Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances".to_string()
            )
        );
        assert_eq!(
            by_type("NamespaceFinalizersRemaining").3,
            "Some finalizers are remaining: example.com/hold in 1 resource instances"
        );
        assert_eq!(
            by_type("NamespaceDeletionDiscoveryFailure"),
            (
                "NamespaceDeletionDiscoveryFailure",
                false,
                "ResourcesDiscovered".to_string(),
                "All resources successfully discovered".to_string()
            )
        );
        let failed = conditions(&Content {
            errors: vec!["b broke".into(), "a broke".into()],
            ..Default::default()
        });
        let failure = failed
            .iter()
            .find(|c| c.0 == "NamespaceDeletionContentFailure")
            .unwrap();
        assert!(failure.1);
        assert_eq!(failure.2, "ContentDeletionFailed");
        assert_eq!(
            failure.3,
            "Failed to delete all resource types, 2 remaining: a broke, b broke"
        );
        let done = conditions(&Content::default());
        assert!(done.iter().all(|c| !c.1));
        assert_eq!(done.len(), 5);
    }

    #[test]
    fn conditions_are_written_only_when_they_change() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let remaining = conditions(&Content {
            remaining: BTreeMap::from([("pods.".to_string(), 1)]),
            ..Default::default()
        });
        let first = updated_conditions(&[], &remaining, t0).unwrap();
        assert_eq!(first.len(), 5);
        assert_eq!(updated_conditions(&first, &remaining, t1), None);
        // Content gone: the condition flips, with a new transition time;
        // the others keep theirs.
        let second = updated_conditions(&first, &conditions(&Content::default()), t1).unwrap();
        let flipped = second
            .iter()
            .find(|c| c.type_ == "NamespaceContentRemaining")
            .unwrap();
        assert_eq!(flipped.status, "False");
        assert_eq!(flipped.reason.as_deref(), Some("ContentRemoved"));
        assert_eq!(flipped.last_transition_time, Some(Time(t1)));
        let kept = second
            .iter()
            .find(|c| c.type_ == "NamespaceDeletionDiscoveryFailure")
            .unwrap();
        assert_eq!(kept.last_transition_time, Some(Time(t0)));
    }

    #[test]
    fn finalizing_removes_only_ours() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(without_our_finalizer(&f(&["kubernetes"])), Some(vec![]));
        assert_eq!(
            without_our_finalizer(&f(&["z.io/x", "kubernetes", "a.io/y"])),
            Some(f(&["a.io/y", "z.io/x"]))
        );
        assert_eq!(without_our_finalizer(&f(&["a.io/y"])), None);
    }
}
