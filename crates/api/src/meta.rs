//! Helpers over object metadata held as JSON.
//!
//! The API server keeps objects as `serde_json::Value` between decode and
//! storage, so that fields of newer API versions and unknown fields survive a
//! round trip; these helpers read and write the few metadata fields it needs.

use serde_json::{Map, Value};

/// `metadata` of an object, if it is an object.
pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.as_object()
}

/// `metadata`, created empty if missing.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("object ensured above");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("object ensured above")
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj)?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name")
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace")
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    meta_str(obj, "resourceVersion")
}

/// Labels as a string map (non-string values are skipped).
pub fn labels(obj: &Value) -> std::collections::BTreeMap<String, String> {
    string_map(obj, "labels")
}

pub fn annotations(obj: &Value) -> std::collections::BTreeMap<String, String> {
    string_map(obj, "annotations")
}

fn string_map(obj: &Value, field: &str) -> std::collections::BTreeMap<String, String> {
    metadata(obj)
        .and_then(|m| m.get(field))
        .and_then(|v| v.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `metadata.deletionTimestamp` is set.
pub fn is_terminating(obj: &Value) -> bool {
    metadata(obj)
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|v| !v.is_null())
}

/// RFC 3339 with seconds, in UTC, as upstream's `metav1.Time` serializes.
pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// RFC 3339 with microseconds, as upstream's `metav1.MicroTime` serializes.
pub fn format_micro_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_metadata_fields_and_tolerates_missing_ones() {
        let obj =
            json!({"metadata": {"name": "a", "labels": {"x": "1", "bad": 2}, "finalizers": ["f"]}});
        assert_eq!(name(&obj), Some("a"));
        assert_eq!(namespace(&obj), None);
        assert_eq!(labels(&obj).len(), 1);
        assert_eq!(finalizers(&obj), vec!["f".to_string()]);
        assert!(!is_terminating(&obj));
        assert!(labels(&json!(null)).is_empty());
    }

    #[test]
    fn metadata_mut_creates_what_is_missing() {
        let mut obj = json!({"kind": "Pod"});
        metadata_mut(&mut obj).insert("name".into(), json!("p"));
        assert_eq!(name(&obj), Some("p"));
    }
}
