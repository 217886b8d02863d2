//! PATCH: the four patch types upstream accepts.
//!
//! JSON patch and merge patch come from the `json-patch` crate, strategic
//! merge patch from [`api::strategic`], server-side apply from
//! [`api::apply`]. A patch is applied to the current object and the result
//! goes through the ordinary update path (validation, generation, storage
//! guard); a concurrent writer makes the patch re-apply to the newer object
//! unless the patch itself pinned a resourceVersion.

use api::resources::ResourceInfo;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, Cause};
use crate::registry::{subject, Registry, WriteOptions, Written};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> ApiResult<PatchType> {
        let mime = content_type.split(';').next().unwrap_or("").trim();
        match mime {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            other => Err(ApiError::UnsupportedMediaType {
                message: format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
                ),
            }),
        }
    }
}

/// The object as a patch sees it: without its resourceVersion, so that only
/// a resourceVersion written in the patch itself acts as a precondition.
fn patch_base(current: &Value) -> Value {
    let mut base = current.clone();
    if let Some(meta) = base.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    base
}

/// Apply a non-apply patch to an object.
pub fn apply_patch(
    resource: &ResourceInfo,
    patch_type: PatchType,
    current: &Value,
    patch: &Value,
) -> ApiResult<Value> {
    let mut doc = patch_base(current);
    match patch_type {
        PatchType::Json => {
            // Operations may test or replace the resourceVersion (kubectl's
            // managed-fields migration does), so they see the real object;
            // the version only pins the write when an operation wrote it.
            doc = current.clone();
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| invalid_patch(resource, current, &e.to_string()))?;
            let pins_version = ops.0.iter().any(|op| {
                let path = match op {
                    json_patch::PatchOperation::Add(o) => o.path.to_string(),
                    json_patch::PatchOperation::Replace(o) => o.path.to_string(),
                    json_patch::PatchOperation::Copy(o) => o.path.to_string(),
                    json_patch::PatchOperation::Move(o) => o.path.to_string(),
                    _ => String::new(),
                };
                path == "/metadata/resourceVersion"
            });
            if !pins_version {
                if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("resourceVersion");
                }
            }
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            json_patch::merge(&mut doc, patch);
        }
        PatchType::Strategic => {
            doc = api::strategic::apply_patch(
                &doc,
                patch,
                resource.group,
                resource.version,
                resource.kind,
            )
            .map_err(|e| invalid_patch(resource, current, &e.to_string()))?;
        }
        PatchType::Apply => {
            return Err(ApiError::internal(
                "apply patches go through server-side apply",
            ))
        }
    }
    Ok(doc)
}

fn invalid_patch(resource: &ResourceInfo, current: &Value, message: &str) -> ApiError {
    ApiError::Invalid {
        message: format!(
            "the server rejected our request due to an error in our request: {message}"
        ),
        subject: subject(resource, api::meta::name(current).unwrap_or("")),
        kind: resource.kind.to_string(),
        causes: vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: message.to_string(),
            field: "patch".into(),
        }],
    }
}

fn conflicts_error(
    resource: &ResourceInfo,
    name: &str,
    conflicts: &[api::apply::Conflict],
) -> ApiError {
    ApiError::Conflict {
        message: api::apply::conflict_message(conflicts),
        subject: subject(resource, name),
        causes: conflicts
            .iter()
            .map(|c| Cause {
                reason: "FieldManagerConflict".into(),
                message: c.cause_message(),
                field: c.field_path.clone(),
            })
            .collect(),
    }
}

fn apply_error(resource: &ResourceInfo, name: &str, e: api::apply::ApplyError) -> ApiError {
    match e {
        api::apply::ApplyError::Conflicts(conflicts) => conflicts_error(resource, name, &conflicts),
        other => ApiError::bad_request(other.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn patch(
    registry: &Registry,
    resource: &'static ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    subresource: Option<&str>,
    content_type: &str,
    body: &[u8],
    options: &WriteOptions,
    force: bool,
) -> ApiResult<Written> {
    let patch_type = PatchType::from_content_type(content_type)?;
    let patch = crate::codec::decode_body(content_type, body)?;
    if patch_type != PatchType::Apply {
        return registry
            .update(resource, namespace, name, subresource, options, |current| {
                apply_patch(resource, patch_type, current, &patch)
            })
            .await;
    }
    if !options.field_manager_given {
        return Err(ApiError::bad_request(
            "fieldManager is required for apply requests",
        ));
    }
    let mut options = options.clone();
    options.managed_by_apply = true;
    let now = api::meta::format_time(chrono::Utc::now());
    let gvk = (resource.group, resource.version, resource.kind);
    let result = registry
        .update(
            resource,
            namespace,
            name,
            subresource,
            &options,
            |current| {
                let base = patch_base(current);
                api::apply::apply_subresource(
                    Some(&base),
                    &patch,
                    &options.field_manager,
                    force,
                    subresource,
                    gvk,
                    &now,
                )
                .map_err(|e| apply_error(resource, name, e))
            },
        )
        .await;
    match result {
        Err(ApiError::NotFound { .. }) if subresource.is_none() => {
            let obj = api::apply::apply(None, &patch, &options.field_manager, force, gvk, &now)
                .map_err(|e| apply_error(resource, name, e))?;
            if api::meta::name(&obj).is_some_and(|n| n != name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    api::meta::name(&obj).unwrap_or("")
                )));
            }
            registry.create(resource, namespace, obj, &options).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_types_come_from_the_content_type() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json").unwrap(),
            PatchType::Merge
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml; charset=utf-8").unwrap(),
            PatchType::Apply
        );
        assert_eq!(
            PatchType::from_content_type("text/plain")
                .unwrap_err()
                .code()
                .as_u16(),
            415
        );
    }

    #[test]
    fn json_and_merge_patches_apply_without_carrying_the_old_resource_version() {
        let cms = api::resources::find("", "v1", "configmaps").unwrap();
        let current =
            json!({"metadata": {"name": "c", "resourceVersion": "5"}, "data": {"a": "1"}});
        let merged = apply_patch(
            cms,
            PatchType::Merge,
            &current,
            &json!({"data": {"b": "2", "a": null}}),
        )
        .unwrap();
        assert_eq!(merged["data"], json!({"b": "2"}));
        assert!(merged["metadata"].get("resourceVersion").is_none());
        let ops = json!([{"op": "replace", "path": "/data/a", "value": "9"}]);
        let patched = apply_patch(cms, PatchType::Json, &current, &ops).unwrap();
        assert_eq!(patched["data"]["a"], "9");
        let pin = json!([{"op": "replace", "path": "/metadata/resourceVersion", "value": "5"}]);
        let pinned = apply_patch(cms, PatchType::Json, &current, &pin).unwrap();
        assert_eq!(pinned["metadata"]["resourceVersion"], "5");
        let failing = json!([{"op": "test", "path": "/data/a", "value": "nope"}]);
        assert_eq!(
            apply_patch(cms, PatchType::Json, &current, &failing)
                .unwrap_err()
                .code()
                .as_u16(),
            422
        );
    }
}
