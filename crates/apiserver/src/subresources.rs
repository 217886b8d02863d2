//! The subresources with their own semantics: `scale`, `pods/binding` and
//! `pods/eviction`. (`status` and `finalize` are plain updates with a
//! narrower scope, handled by the registry.)

use api::resources::ResourceInfo;
use axum::http::Method;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult, Cause};
use crate::patch::PatchType;
use crate::registry::{subject, DeleteOptions, Registry, WriteOptions};

/// The `autoscaling/v1` Scale view of a workload.
pub fn scale_of(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or(Value::Null);
    let selector = obj
        .pointer("/spec/selector")
        .map(|s| api::table::label_selector_as_string(Some(s)).unwrap_or_default())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

#[allow(clippy::too_many_arguments)]
pub async fn scale(
    registry: &Registry,
    resource: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    method: &Method,
    content_type: &str,
    body: &[u8],
    options: &WriteOptions,
) -> ApiResult<Value> {
    if method == Method::GET {
        return Ok(scale_of(&registry.get(resource, namespace, name).await?));
    }
    let patch_type = match *method {
        Method::PUT => None,
        Method::PATCH => Some(PatchType::from_content_type(content_type)?),
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            )))
        }
    };
    let input = crate::codec::decode_body(content_type, body)?;
    let written = registry
        .update(resource, namespace, name, None, options, |current| {
            let old_scale = scale_of(current);
            let new_scale = match patch_type {
                None => input.clone(),
                Some(PatchType::Apply) => {
                    return Err(ApiError::UnsupportedMediaType {
                        message: "apply patches are not supported on the scale subresource".into(),
                    })
                }
                Some(pt) => patch_scale(pt, &old_scale, &input)?,
            };
            let replicas = new_scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "Scale",
                    subject(resource, name),
                    vec![Cause::invalid_raw(
                        "spec.replicas",
                        &replicas.to_string(),
                        "must be greater than or equal to 0",
                    )],
                ));
            }
            let mut next = current.clone();
            next["spec"]["replicas"] = json!(replicas);
            // A resourceVersion in the Scale is a precondition on the parent.
            let pinned = new_scale.pointer("/metadata/resourceVersion").cloned();
            let meta = api::meta::metadata_mut(&mut next);
            match pinned {
                Some(rv) if patch_type.is_none() => {
                    meta.insert("resourceVersion".into(), rv);
                }
                _ => {
                    meta.remove("resourceVersion");
                }
            }
            Ok(next)
        })
        .await?;
    Ok(scale_of(&written.object))
}

fn patch_scale(patch_type: PatchType, scale: &Value, input: &Value) -> ApiResult<Value> {
    let mut doc = scale.clone();
    match patch_type {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(input.clone())
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &ops).map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        // A Scale has no lists, so strategic merge equals merge patch here.
        _ => json_patch::merge(&mut doc, input),
    }
    Ok(doc)
}

/// `pods/binding`: assign a pod to a node, once.
pub async fn bind(
    registry: &Registry,
    namespace: Option<&str>,
    name: &str,
    binding: &Value,
    options: &WriteOptions,
) -> ApiResult<()> {
    let pods = api::resources::find("", "v1", "pods").expect("in table");
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            subject(pods, name),
            vec![Cause::required("target.name")],
        ));
    }
    let now = api::meta::format_time(chrono::Utc::now());
    registry
        .update(pods, namespace, name, Some("binding"), options, |current| {
            if api::meta::is_terminating(current) {
                return Err(ApiError::conflict(
                    subject(pods, name),
                    format!("pod {name} is being deleted, cannot be assigned to a host"),
                ));
            }
            let assigned = current.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
            if !assigned.is_empty() {
                return Err(ApiError::conflict(
                    subject(pods, name),
                    format!("pod {name} is already assigned to node \"{assigned}\""),
                ));
            }
            let mut next = current.clone();
            next["spec"]["nodeName"] = json!(node);
            let conditions = next["status"]
                .as_object_mut()
                .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
            if let Some(Value::Array(list)) = conditions {
                list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
                list.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
            }
            if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
            Ok(next)
        })
        .await?;
    Ok(())
}

/// `pods/eviction`: delete a pod unless a PodDisruptionBudget forbids it.
pub async fn evict(
    registry: &Registry,
    namespace: Option<&str>,
    name: &str,
    eviction: &Value,
) -> ApiResult<()> {
    let pods = api::resources::find("", "v1", "pods").expect("in table");
    let pdbs = api::resources::find("policy", "v1", "poddisruptionbudgets").expect("in table");
    let pod = registry.get(pods, namespace, name).await?;
    let delete_options = DeleteOptions {
        grace_period_seconds: eviction
            .pointer("/deleteOptions/gracePeriodSeconds")
            .and_then(Value::as_i64),
        precondition_uid: eviction
            .pointer("/deleteOptions/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run: eviction
            .pointer("/deleteOptions/dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|d| d == "All")),
        ..Default::default()
    };
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    // Pods that are not running do not count against a budget.
    let guarded = phase == "Running" && !api::meta::is_terminating(&pod);
    if guarded {
        let budgets = registry.list_values(pdbs, namespace).await?;
        let labels = api::meta::labels(&pod);
        let matching: Vec<&Value> = budgets
            .iter()
            .filter(|b| {
                let selector = b.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
                serde_json::from_value(selector)
                    .ok()
                    .and_then(|s| api::selector::from_label_selector(&s).ok())
                    .is_some_and(|s| s.matches(&labels))
            })
            .collect();
        if matching.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(budget) = matching.first() {
            let budget_name = api::meta::name(budget).unwrap_or("").to_string();
            let options = WriteOptions {
                field_manager: "tug-apiserver".into(),
                ..Default::default()
            };
            registry
                .update(pdbs, namespace, &budget_name, Some("status"), &options, |current| {
                    let allowed = current
                        .pointer("/status/disruptionsAllowed")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if allowed < 1 {
                        return Err(ApiError::TooManyRequests {
                            message: format!(
                                "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {budget_name} needs {} healthy pods and has {} currently",
                                current.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0),
                                current.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0),
                            ),
                            // Upstream asks for no particular wait here:
                            // the budget changes when pods do.
                            retry_after: 0,
                        });
                    }
                    let mut next = current.clone();
                    next["status"]["disruptionsAllowed"] = json!(allowed - 1);
                    let now = api::meta::format_time(chrono::Utc::now());
                    if let Some(status) = next["status"].as_object_mut() {
                        let disrupted = status.entry("disruptedPods").or_insert_with(|| json!({}));
                        disrupted[name] = json!(now);
                    }
                    if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove("resourceVersion");
                    }
                    Ok(next)
                })
                .await?;
        }
    }
    registry
        .delete(pods, namespace, name, &delete_options)
        .await?;
    Ok(())
}
