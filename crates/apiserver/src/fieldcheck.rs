//! Unknown-field detection for `fieldValidation=Strict|Warn`.
//!
//! Upstream's decoder reports fields the schema does not know; ours walks the
//! object alongside the kind's schema (from [`api::schema`]) and lists the
//! paths of fields no definition declares, in upstream's `.spec.foo` form.

use api::resources::ResourceInfo;
use api::schema::{self, Dialect};
use serde_json::{Map, Value};

/// Paths of fields of `obj` that the kind's schema does not declare.
pub fn unknown_fields(resource: &ResourceInfo, obj: &Value) -> Vec<String> {
    let Some(root) = schema::definition_name(resource.group, resource.version, resource.kind)
    else {
        return Vec::new();
    };
    let defs = schema::definitions(Dialect::Swagger2);
    let mut out = Vec::new();
    walk(defs, &root, obj, "", &mut out);
    // Upstream spells paths without the leading dot: `spec.foo`.
    out.into_iter()
        .map(|p| p.trim_start_matches('.').to_string())
        .collect()
}

fn walk(
    defs: &Map<String, Value>,
    definition: &str,
    value: &Value,
    path: &str,
    out: &mut Vec<String>,
) {
    let Some(def) = defs.get(definition) else {
        return;
    };
    let Some(obj) = value.as_object() else {
        return;
    };
    let Some(props) = def.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (field, child) in obj {
        let child_path = format!("{path}.{field}");
        let Some(prop) = props.get(field) else {
            out.push(child_path);
            continue;
        };
        check_value(defs, prop, child, &child_path, out);
    }
}

fn check_value(
    defs: &Map<String, Value>,
    prop: &Value,
    value: &Value,
    path: &str,
    out: &mut Vec<String>,
) {
    if let Some(target) = schema::referenced(prop) {
        walk(defs, target, value, path, out);
        return;
    }
    if let (Some(items), Some(list)) = (prop.get("items"), value.as_array()) {
        for (i, element) in list.iter().enumerate() {
            check_value(defs, items, element, &format!("{path}[{i}]"), out);
        }
        return;
    }
    if let (Some(inner), Some(map)) = (prop.get("additionalProperties"), value.as_object()) {
        if inner.is_object() {
            for (k, v) in map {
                check_value(defs, inner, v, &format!("{path}.{k}"), out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_with_their_paths() {
        let deploy = api::resources::find("apps", "v1", "deployments").unwrap();
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labelz": {}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "x"}]}}}
        });
        assert_eq!(
            unknown_fields(deploy, &obj),
            vec![
                "metadata.labelz",
                "spec.template.spec.containers[0].imagePullPolicyy"
            ]
        );
    }

    #[test]
    fn free_form_maps_accept_any_key() {
        let cm = api::resources::find("", "v1", "configmaps").unwrap();
        let obj =
            json!({"metadata": {"name": "c", "labels": {"anything": "x"}}, "data": {"k": "v"}});
        assert!(unknown_fields(cm, &obj).is_empty());
    }
}
