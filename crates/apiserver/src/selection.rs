//! Which objects a list, watch or deletecollection selects: namespace, label
//! selector and field selector together.

use api::fields::FieldSelector;
use api::resources::ResourceInfo;
use api::selector::LabelSelector;
use serde_json::Value;

use crate::codec::Query;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone)]
pub struct Selection {
    resource: &'static ResourceInfo,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selection {
    /// From `labelSelector` and `fieldSelector`; malformed or unsupported
    /// selectors are a 400, as upstream.
    pub fn from_query(
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        query: &Query,
    ) -> ApiResult<Self> {
        let labels = match query.non_empty("labelSelector") {
            Some(s) => api::selector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            None => LabelSelector::everything(),
        };
        let fields = match query.non_empty("fieldSelector") {
            Some(s) => {
                let parsed =
                    api::fields::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?;
                parsed
                    .convert(resource.group, resource.kind)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            None => FieldSelector::everything(),
        };
        Ok(Selection {
            resource,
            namespace: namespace.map(str::to_string),
            labels,
            fields,
        })
    }

    /// Everything in one namespace (or all of them).
    pub fn everything(resource: &'static ResourceInfo, namespace: Option<&str>) -> Self {
        Selection {
            resource,
            namespace: namespace.map(str::to_string),
            labels: LabelSelector::everything(),
            fields: FieldSelector::everything(),
        }
    }

    /// Whether no selector narrows the result (upstream only reports
    /// `remainingItemCount` then).
    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Whether an object with these attributes is selected.
    pub fn matches(&self, attrs: &Attrs) -> bool {
        if let Some(ns) = &self.namespace {
            if self.resource.namespaced && attrs.namespace() != Some(ns.as_str()) {
                return false;
            }
        }
        if !self.labels.is_empty() && !self.labels.matches_labels(attrs) {
            return false;
        }
        self.fields
            .requirements()
            .iter()
            .all(|r| r.matches(attrs.field(&r.field)))
    }

    /// Whether an object (as JSON) is selected.
    pub fn matches_value(&self, obj: &Value) -> bool {
        self.matches(&Attrs::of(self.resource, obj))
    }
}

/// What selections look at in an object, as upstream's `GetAttrs`: its
/// namespace, name, labels and the selectable fields of its kind. Kept
/// beside every cached object, so lists and watches select without parsing
/// the object.
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    namespace: Option<Box<str>>,
    name: Box<str>,
    /// Sorted by key.
    labels: Box<[(Box<str>, Box<str>)]>,
    /// The kind's selectable fields other than name and namespace, those
    /// with a value; a missing field reads as `""`.
    fields: Box<[(&'static str, Box<str>)]>,
}

impl Attrs {
    pub fn of(resource: &ResourceInfo, obj: &Value) -> Attrs {
        let mut labels: Vec<(Box<str>, Box<str>)> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str().into(), v.as_str()?.into())))
            .collect();
        labels.sort_unstable();
        let fields = api::fields::object_fields(resource.group, resource.kind, obj)
            .into_iter()
            .filter(|(label, value)| {
                !value.is_empty() && !matches!(*label, "metadata.name" | "metadata.namespace")
            })
            .map(|(label, value)| (label, value.into_boxed_str()))
            .collect();
        Attrs {
            namespace: api::meta::namespace(obj).map(Into::into),
            name: api::meta::name(obj).unwrap_or_default().into(),
            labels: labels.into_boxed_slice(),
            fields,
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A selectable field's value (canonical label, as a converted
    /// selector names it).
    pub fn field(&self, label: &str) -> Option<&str> {
        match label {
            "metadata.name" => Some(&self.name),
            "metadata.namespace" => self.namespace(),
            _ => self
                .fields
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, v)| &**v),
        }
    }
}

impl api::selector::Labels for Attrs {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        api::resources::find("", "v1", "pods").unwrap()
    }

    #[test]
    fn namespace_labels_and_fields_all_have_to_match() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3D",
        ));
        let s = Selection::from_query(pods(), Some("default"), &q).unwrap();
        let pod =
            json!({"metadata": {"namespace": "default", "labels": {"app": "web"}}, "spec": {}});
        assert!(s.matches_value(&pod));
        let bound = json!({"metadata": {"namespace": "default", "labels": {"app": "web"}}, "spec": {"nodeName": "n"}});
        assert!(!s.matches_value(&bound));
        let other_ns =
            json!({"metadata": {"namespace": "x", "labels": {"app": "web"}}, "spec": {}});
        assert!(!s.matches_value(&other_ns));
    }

    #[test]
    fn bad_selectors_are_bad_requests() {
        for q in ["labelSelector=a%20in%20(", "fieldSelector=spec.bogus%3Dx"] {
            let err = Selection::from_query(pods(), None, &Query::parse(Some(q))).unwrap_err();
            assert_eq!(err.code().as_u16(), 400, "{q}");
        }
    }

    #[test]
    fn attributes_answer_labels_and_the_kinds_fields_without_the_object() {
        let events = api::resources::find("", "v1", "events").unwrap();
        let event = json!({
            "metadata": {"name": "web.1", "namespace": "default", "labels": {"b": "2", "a": "1"}},
            "involvedObject": {"kind": "Pod", "name": "web"},
            "reason": "Started", "type": "Normal",
        });
        let attrs = Attrs::of(events, &event);
        assert_eq!(attrs.name(), "web.1");
        assert_eq!(attrs.namespace(), Some("default"));
        assert_eq!(attrs.field("involvedObject.name"), Some("web"));
        assert_eq!(attrs.field("metadata.name"), Some("web.1"));
        assert_eq!(attrs.field("involvedObject.uid"), None);
        use api::selector::Labels;
        assert_eq!(attrs.label("a"), Some("1"));
        assert_eq!(attrs.label("b"), Some("2"));
        assert_eq!(attrs.label("c"), None);
        let q = Query::parse(Some(
            "labelSelector=a%3D1&fieldSelector=involvedObject.name%3Dweb,involvedObject.uid%3D",
        ));
        assert!(Selection::from_query(events, Some("default"), &q)
            .unwrap()
            .matches(&attrs));
        let q = Query::parse(Some("fieldSelector=reason!%3DStarted"));
        assert!(!Selection::from_query(events, None, &q)
            .unwrap()
            .matches(&attrs));
    }
}
