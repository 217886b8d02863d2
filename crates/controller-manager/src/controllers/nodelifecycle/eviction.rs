//! Taint-based eviction (upstream's NoExecuteTaintManager, since 1.29 the
//! `taint-eviction-controller`): a pod bound to a node with NoExecute
//! taints
//! - that it does not all tolerate is deleted at once;
//! - that it tolerates, some for `tolerationSeconds`, is deleted when the
//!   first of those runs out, counted from the taint's `timeAdded` (from
//!   when we first saw the taint, for a taint without one);
//! - that it tolerates without a time limit stays.
//!
//! A pod scheduled for deletion whose taints go away (the node came back)
//! is spared, with a "Cancelling deletion" event as upstream's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use component_base::events::EventRecorder;
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::Resource;
use serde_json::json;

use super::taints::{taints_of, NO_EXECUTE};
use crate::context::Context;
use crate::framework::{forward, run_workers, Change, Informer, ObjectKey, Outcome, WorkQueue};

/// Events are recorded as upstream's controller records them.
pub const COMPONENT: &str = "taint-eviction-controller";

/// Upstream's `Toleration.ToleratesTaint`: an empty effect or key matches
/// any; `Exists` ignores the value, `Equal` (or no operator) compares it.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// What becomes of a pod on a tainted node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// No NoExecute taint, or all tolerated forever.
    Never,
    Now,
    At(Timestamp),
}

/// The decision for a pod with `tolerations` on a node with `taints` at
/// `now`; `since` says from when a taint counts.
pub fn eviction(
    taints: &[Taint],
    tolerations: &[Toleration],
    since: impl Fn(&Taint) -> Timestamp,
    now: Timestamp,
) -> Eviction {
    let mut deadline: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == NO_EXECUTE) {
        // As upstream's `GetMatchingTolerations`: the first toleration that
        // tolerates the taint is the one used.
        let Some(used) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Eviction::Now;
        };
        let Some(seconds) = used.toleration_seconds else {
            continue;
        };
        let at = since(taint)
            .saturating_add(SignedDuration::from_secs(seconds.max(0)))
            .unwrap_or(now);
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    match deadline {
        None => Eviction::Never,
        Some(at) if at <= now => Eviction::Now,
        Some(at) => Eviction::At(at),
    }
}

/// The NoExecute taints of `node`.
fn no_execute_taints(node: &Node) -> Vec<Taint> {
    taints_of(node)
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .cloned()
        .collect()
}

/// What the taint manager remembers: the pods it has scheduled for
/// deletion, and when it first saw taints that carry no `timeAdded`.
#[derive(Default)]
struct Memory {
    scheduled: HashMap<ObjectKey, Timestamp>,
    first_seen: HashMap<(String, String, String), Timestamp>,
}

/// Run the taint manager until the process ends.
pub async fn run(ctx: Context) -> anyhow::Result<()> {
    let recorder = EventRecorder::new(ctx.client.clone(), COMPONENT);
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let queue = WorkQueue::new();
    forward(&pods, &queue, |change| {
        let pod = change.object();
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        match change {
            // A deleted pod only needs its schedule forgotten.
            Change::Deleted(_) => vec![ObjectKey::of(pod.as_ref())],
            _ if bound.is_some() => vec![ObjectKey::of(pod.as_ref())],
            _ => Vec::new(),
        }
    });
    {
        let pods = pods.clone();
        forward(&nodes, &queue, move |change| {
            let node = change.object();
            let changed = match change {
                Change::Added(_) => !no_execute_taints(node).is_empty(),
                Change::Updated { old, new } => no_execute_taints(old) != no_execute_taints(new),
                Change::Deleted(_) => false,
            };
            if !changed {
                return Vec::new();
            }
            let name = node.metadata.name.as_deref().unwrap_or("");
            pods.list()
                .iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name))
                .map(|p| ObjectKey::of(p.as_ref()))
                .collect()
        });
    }
    pods.wait_synced().await;
    nodes.wait_synced().await;
    let memory = Arc::new(Mutex::new(Memory::default()));
    run_workers(
        "taint-eviction",
        queue,
        ctx.settings.concurrent_syncs,
        move |key: ObjectKey| {
            let ctx = ctx.clone();
            let pods = pods.clone();
            let nodes = nodes.clone();
            let recorder = recorder.clone();
            let memory = memory.clone();
            async move { sync(&ctx, &pods, &nodes, &recorder, &memory, key).await }
        },
    )
    .await;
    Ok(())
}

fn lock(memory: &Mutex<Memory>) -> std::sync::MutexGuard<'_, Memory> {
    memory.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forget a scheduled deletion, telling the pod's events if there was one.
fn cancel(memory: &Mutex<Memory>, recorder: &EventRecorder, key: &ObjectKey, pod: Option<&Pod>) {
    let was = lock(memory).scheduled.remove(key).is_some();
    if let (true, Some(pod)) = (was, pod) {
        recorder.normal(
            pod,
            "TaintManagerEviction",
            format!("Cancelling deletion of Pod {key}"),
        );
    }
}

async fn sync(
    ctx: &Context,
    pods: &Informer<Pod>,
    nodes: &Informer<Node>,
    recorder: &EventRecorder,
    memory: &Mutex<Memory>,
    key: ObjectKey,
) -> anyhow::Result<Outcome> {
    let Some(pod) = pods.get(&key) else {
        lock(memory).scheduled.remove(&key);
        return Ok(Outcome::Done);
    };
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .and_then(|name| nodes.get(&ObjectKey::cluster(name)));
    let Some(node) = node else {
        cancel(memory, recorder, &key, Some(&pod));
        return Ok(Outcome::Done);
    };
    let taints = no_execute_taints(&node);
    let now = Timestamp::now();
    let node_name = node.metadata.name.clone().unwrap_or_default();
    // Forget first sightings of this node's taints that are gone.
    lock(memory).first_seen.retain(|(n, key, value), _| {
        n != &node_name
            || taints
                .iter()
                .any(|t| &t.key == key && t.value.as_deref().unwrap_or("") == value)
    });
    let since = |taint: &Taint| match &taint.time_added {
        Some(t) => t.0,
        None => *lock(memory)
            .first_seen
            .entry((
                node_name.clone(),
                taint.key.clone(),
                taint.value.clone().unwrap_or_default(),
            ))
            .or_insert(now),
    };
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    match eviction(&taints, &tolerations, since, now) {
        Eviction::Never => {
            cancel(memory, recorder, &key, Some(&pod));
            Ok(Outcome::Done)
        }
        Eviction::At(at) => {
            lock(memory).scheduled.insert(key, at);
            let wait = at.duration_since(now).unsigned_abs();
            // Come back just after the deadline, not a hair before it.
            Ok(Outcome::RequeueAfter(wait + Duration::from_millis(10)))
        }
        Eviction::Now => {
            lock(memory).scheduled.remove(&key);
            if pod.metadata.deletion_timestamp.is_some() {
                return Ok(Outcome::Done);
            }
            delete(ctx, recorder, &pod, &key).await?;
            Ok(Outcome::Done)
        }
    }
}

/// Upstream's `addConditionAndDeletePod`: say why on the pod (a
/// DisruptionTarget condition), then delete it with its grace period.
async fn delete(
    ctx: &Context,
    recorder: &EventRecorder,
    pod: &Pod,
    key: &ObjectKey,
) -> anyhow::Result<()> {
    recorder.normal(
        pod,
        "TaintManagerEviction",
        format!("Marking for deletion Pod {key}"),
    );
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let condition = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": Timestamp::now().to_string(),
    }]}});
    let uid = pod.meta().uid.clone();
    match api
        .patch_status(
            &key.name,
            &PatchParams::default(),
            &Patch::Strategic(&condition),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let params = DeleteParams {
        preconditions: uid.map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&key.name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::taints::{taint, NOT_READY, UNREACHABLE};
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn toleration(
        key: &str,
        op: &str,
        value: &str,
        effect: &str,
        seconds: Option<i64>,
    ) -> Toleration {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: opt(key),
            operator: opt(op),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: seconds,
        }
    }

    fn added(key: &str, value: &str, time: i64) -> Taint {
        let mut t = taint(key, NO_EXECUTE);
        t.value = (!value.is_empty()).then(|| value.to_string());
        t.time_added = Some(Time(at(time)));
        t
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let t = added("dedicated", "gpu", 0);
        let cases = [
            (
                toleration("dedicated", "Equal", "gpu", "NoExecute", None),
                true,
            ),
            (toleration("dedicated", "", "gpu", "", None), true),
            (
                toleration("dedicated", "Equal", "cpu", "NoExecute", None),
                false,
            ),
            (
                toleration("dedicated", "Exists", "", "NoExecute", None),
                true,
            ),
            (
                toleration("dedicated", "Exists", "", "NoSchedule", None),
                false,
            ),
            (toleration("", "Exists", "", "", None), true),
            (toleration("other", "Exists", "", "", None), false),
            (toleration("dedicated", "Gt", "1", "", None), false),
        ];
        for (toleration, want) in cases {
            assert_eq!(tolerates(&toleration, &t), want, "{toleration:?}");
        }
    }

    #[test]
    fn eviction_times_follow_tolerations_from_when_the_taint_was_added() {
        let unreachable = added(UNREACHABLE, "", 0);
        let not_ready = added(NOT_READY, "", 10);
        let custom = added("dedicated", "x", 0);
        let since = |t: &Taint| t.time_added.as_ref().unwrap().0;
        let for_unreachable = |s| toleration(UNREACHABLE, "Exists", "", "NoExecute", s);
        let everything = toleration("", "Exists", "", "", None);
        let cases = [
            // Untolerated: now.
            (
                vec![custom.clone()],
                vec![for_unreachable(Some(300))],
                5,
                Eviction::Now,
            ),
            // Tolerated for 300 s from timeAdded.
            (
                vec![unreachable.clone()],
                vec![for_unreachable(Some(300))],
                5,
                Eviction::At(at(300)),
            ),
            (
                vec![unreachable.clone()],
                vec![for_unreachable(Some(300))],
                300,
                Eviction::Now,
            ),
            // Forever.
            (
                vec![unreachable.clone()],
                vec![for_unreachable(None)],
                5000,
                Eviction::Never,
            ),
            (
                vec![unreachable.clone(), custom.clone()],
                vec![everything.clone()],
                5000,
                Eviction::Never,
            ),
            // Zero or negative seconds: at once.
            (
                vec![unreachable.clone()],
                vec![for_unreachable(Some(0))],
                0,
                Eviction::Now,
            ),
            (
                vec![unreachable.clone()],
                vec![for_unreachable(Some(-5))],
                0,
                Eviction::Now,
            ),
            // The earliest deadline over all taints, each from its own time.
            (
                vec![unreachable.clone(), not_ready.clone()],
                vec![
                    for_unreachable(Some(60)),
                    toleration(NOT_READY, "Exists", "", "NoExecute", Some(20)),
                ],
                5,
                Eviction::At(at(30)),
            ),
            // The first matching toleration is the one used.
            (
                vec![unreachable.clone()],
                vec![for_unreachable(Some(2)), for_unreachable(None)],
                1,
                Eviction::At(at(2)),
            ),
            // NoSchedule taints are not the taint manager's business.
            (
                vec![taint("dedicated", "NoSchedule")],
                vec![],
                0,
                Eviction::Never,
            ),
            (vec![], vec![], 0, Eviction::Never),
        ];
        for (taints, tolerations, now, want) in cases {
            assert_eq!(
                eviction(&taints, &tolerations, since, at(now)),
                want,
                "{taints:?} {tolerations:?} at {now}"
            );
        }
    }
}
