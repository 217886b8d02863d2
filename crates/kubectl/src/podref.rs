//! Finding the pod and container a streaming verb (`logs`, `exec`,
//! `attach`, `port-forward`) talks to: `POD` or `TYPE/NAME`, where a
//! workload or service stands for one of the pods its selector matches
//! (kubectl's `AttachablePodForObject`), and the container defaulting
//! kubectl does when `-c` is not given.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::ctx::Ctx;
use crate::error::{CliError, Result};

/// The annotation naming the container `logs`/`exec` default to.
pub const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// Fetch the pod an argument names: `name`, `pod/name` or any object with
/// a pod selector (`deploy/x`, `rs/x`, `job/x`, `svc/x`, ...). With
/// `announce` (what `logs` does) a choice among several pods is told on
/// stderr as kubectl tells it.
///
/// When the selector matches no pod yet, kubectl waits up to
/// `--pod-running-timeout` for one to appear; so do we (polling).
pub async fn pod_for(ctx: &Ctx, arg: &str, announce: bool, wait: Duration) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let Some((word, name)) = arg.split_once('/') else {
        return Ok(pods.get(arg).await?);
    };
    if word.is_empty() || name.is_empty() {
        return Err(CliError::client(format!(
            "arguments in resource/name form must have a single resource and name: {arg:?}"
        )));
    }
    let r = ctx.resolve(word).await?.into_iter().next().ok_or_else(|| {
        CliError::client(format!("the server doesn't have a resource type {word:?}"))
    })?;
    if r.kind == "Pod" && r.group.is_empty() {
        return Ok(pods.get(name).await?);
    }
    let ns = r.namespaced.then(|| ctx.namespace.clone());
    let obj = ctx
        .send(
            ctx.request(&r, ns.as_deref())
                .get(name, &kube::api::GetParams::default())?,
        )
        .await?;
    let Some(selector) = selector_of(&obj) else {
        return Err(CliError::client(format!(
            "cannot attach to {}: selector for {} not implemented",
            r.api_resource().api_version + "/" + &r.kind,
            r.kind
        )));
    };
    let deadline = tokio::time::Instant::now() + wait;
    let list = loop {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        if !list.is_empty() {
            break list;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::client("timed out waiting for the condition"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let count = list.len();
    let Some(pod) = pick_pod(list) else {
        return Err(CliError::client("timed out waiting for the condition"));
    };
    if announce && count > 1 {
        eprintln!(
            "Found {count} pods, using pod/{}",
            pod.metadata.name.as_deref().unwrap_or("")
        );
    }
    Ok(pod)
}

/// The label selector (as query text) of a workload or service: `spec.
/// selector` as a plain map (Service, ReplicationController) or a
/// `LabelSelector` with `matchLabels`/`matchExpressions`.
pub fn selector_of(obj: &Value) -> Option<String> {
    let sel = &obj["spec"]["selector"];
    let obj_map = sel.as_object()?;
    let mut parts = Vec::new();
    if obj_map.contains_key("matchLabels") || obj_map.contains_key("matchExpressions") {
        if let Some(m) = sel["matchLabels"].as_object() {
            parts.extend(
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))),
            );
        }
        for e in sel["matchExpressions"].as_array().into_iter().flatten() {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            parts.push(match e["operator"].as_str().unwrap_or("") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                _ => continue,
            });
        }
    } else {
        parts.extend(
            obj_map
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))),
        );
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// The pod kubectl would pick among a selector's matches (its
/// `ByLogging` order): scheduled before unscheduled, running before
/// pending, ready before not ready, ready for longer first, more restarts
/// first, then the oldest.
pub fn pick_pod(mut pods: Vec<Pod>) -> Option<Pod> {
    pods.sort_by_key(|p| {
        let status = p.status.clone().unwrap_or_default();
        let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let phase_rank = match status.phase.as_deref() {
            Some("Running") => 0,
            Some("Unknown") => 1,
            Some("Pending") => 2,
            _ => 3,
        };
        let ready = status
            .conditions
            .clone()
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.status == "True");
        // None sorts first: put "never ready" last with a flag.
        let ready_since = ready
            .as_ref()
            .and_then(|c| c.last_transition_time.clone())
            .map(|t| t.0);
        let restarts: i32 = status
            .container_statuses
            .unwrap_or_default()
            .iter()
            .map(|c| c.restart_count)
            .sum();
        let created = p.metadata.creation_timestamp.clone().map(|t| t.0);
        (
            !scheduled,
            phase_rank,
            ready.is_none(),
            ready_since.is_none(),
            ready_since,
            -restarts,
            created.is_none(),
            created,
        )
    });
    pods.into_iter().next()
}

/// Every container name of a pod as kubectl lists them in "Defaulted
/// container" messages: `a, b, setup (init), debug (ephem)`.
pub fn all_container_names(pod: &Pod) -> String {
    let Some(spec) = pod.spec.as_ref() else {
        return String::new();
    };
    let mut names: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
    names.extend(
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| format!("{} (init)", c.name)),
    );
    names.extend(
        spec.ephemeral_containers
            .iter()
            .flatten()
            .map(|c| format!("{} (ephem)", c.name)),
    );
    names.join(", ")
}

/// The container a verb uses when `-c` is not given: the default-container
/// annotation if it names a container, else the first container. The
/// second value is the notice kubectl prints on stderr (a missing
/// annotated container, or "Defaulted container" when there was a
/// choice).
pub fn default_container(pod: &Pod) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    if let Some(annotated) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
        .filter(|a| !a.is_empty())
    {
        if has_container(pod, annotated) {
            return (annotated.clone(), notes);
        }
        notes.push(format!(
            "Default container name {annotated:?} not found in pod {name}"
        ));
    }
    let first = spec
        .containers
        .first()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let choice = spec.containers.len() > 1
        || spec.init_containers.as_ref().is_some_and(|v| !v.is_empty())
        || spec
            .ephemeral_containers
            .as_ref()
            .is_some_and(|v| !v.is_empty());
    if choice {
        notes.push(format!(
            "Defaulted container {first:?} out of: {}",
            all_container_names(pod)
        ));
    }
    (first, notes)
}

/// Parse `--pod-running-timeout` (a Go duration such as `20s` or `1m0s`).
pub fn running_timeout(s: &str) -> Result<Duration> {
    crate::cmd::logs::parse_go_duration(s).ok_or_else(|| {
        CliError::client(format!(
            "invalid argument {s:?} for \"--pod-running-timeout\" flag: time: invalid duration {s:?}"
        ))
    })
}

/// Does the pod have a container (of any kind) with this name?
pub fn has_container(pod: &Pod, c: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.containers.iter().any(|x| x.name == c)
        || spec.init_containers.iter().flatten().any(|x| x.name == c)
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|x| x.name == c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn containers_default_like_kubectl() {
        let cases = [
            (
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}),
                "a",
                vec![],
            ),
            (
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}],
                    "initContainers": [{"name": "i"}]}}),
                "a",
                vec!["Defaulted container \"a\" out of: a, b, i (init)"],
            ),
            (
                json!({"metadata": {"name": "p", "annotations": {DEFAULT_CONTAINER_ANNOTATION: "b"}},
                    "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
                "b",
                vec![],
            ),
            (
                json!({"metadata": {"name": "p", "annotations": {DEFAULT_CONTAINER_ANNOTATION: "z"}},
                    "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
                "a",
                vec![
                    "Default container name \"z\" not found in pod p",
                    "Defaulted container \"a\" out of: a, b",
                ],
            ),
        ];
        for (p, want, notes) in cases {
            let p = pod(p);
            assert_eq!(
                default_container(&p),
                (
                    want.to_string(),
                    notes.iter().map(|s| s.to_string()).collect()
                )
            );
        }
    }

    #[test]
    fn running_timeouts_are_go_durations() {
        assert_eq!(running_timeout("1m0s").unwrap(), Duration::from_secs(60));
        assert_eq!(running_timeout("20s").unwrap(), Duration::from_secs(20));
        assert!(running_timeout("soon")
            .unwrap_err()
            .to_string()
            .contains("invalid duration \"soon\""));
    }

    #[test]
    fn selectors_become_query_text() {
        let cases = [
            (
                json!({"spec": {"selector": {"app": "web"}}}),
                Some("app=web"),
            ),
            (
                json!({"spec": {"selector": {"matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                         {"key": "x", "operator": "Exists"}]}}}),
                Some("app=web,tier in (a,b),x"),
            ),
            (json!({"spec": {}}), None),
            (json!({"spec": {"selector": {}}}), None),
        ];
        for (obj, want) in cases {
            assert_eq!(selector_of(&obj).as_deref(), want, "{obj}");
        }
    }

    #[test]
    fn running_ready_pods_are_picked_first() {
        let p = |name: &str, phase: &str, ready: &str, node: bool| {
            pod(json!({"metadata": {"name": name},
                "spec": {"containers": [], "nodeName": if node { json!("n") } else { Value::Null }},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]}}))
        };
        let got = pick_pod(vec![
            p("pending", "Pending", "False", true),
            p("unscheduled", "Pending", "False", false),
            p("running-unready", "Running", "False", true),
            p("running", "Running", "True", true),
        ])
        .unwrap();
        assert_eq!(got.metadata.name.as_deref(), Some("running"));
        let mut restarted = p("restarted", "Running", "True", true);
        if let Some(st) = restarted.status.as_mut() {
            st.container_statuses = Some(vec![serde_json::from_value(json!({
                "name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": 2
            }))
            .unwrap()]);
        }
        let got = pick_pod(vec![p("running", "Running", "True", true), restarted]).unwrap();
        assert_eq!(got.metadata.name.as_deref(), Some("restarted"));
        assert!(pick_pod(vec![]).is_none());
    }
}
