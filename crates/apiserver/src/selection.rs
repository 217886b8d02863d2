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

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace {
            if self.resource.namespaced && api::meta::namespace(obj) != Some(ns.as_str()) {
                return false;
            }
        }
        if !self.labels.is_empty() {
            let labels = obj
                .get("metadata")
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object);
            let empty = serde_json::Map::new();
            if !self.labels.matches_labels(labels.unwrap_or(&empty)) {
                return false;
            }
        }
        if !self.fields.is_empty() {
            return self
                .fields
                .matches_object(self.resource.group, self.resource.kind, obj)
                .unwrap_or(false);
        }
        true
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
        assert!(s.matches(&pod));
        let bound = json!({"metadata": {"namespace": "default", "labels": {"app": "web"}}, "spec": {"nodeName": "n"}});
        assert!(!s.matches(&bound));
        let other_ns =
            json!({"metadata": {"namespace": "x", "labels": {"app": "web"}}, "spec": {}});
        assert!(!s.matches(&other_ns));
    }

    #[test]
    fn bad_selectors_are_bad_requests() {
        for q in ["labelSelector=a%20in%20(", "fieldSelector=spec.bogus%3Dx"] {
            let err = Selection::from_query(pods(), None, &Query::parse(Some(q))).unwrap_err();
            assert_eq!(err.code().as_u16(), 400, "{q}");
        }
    }
}
