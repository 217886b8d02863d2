//! managedFields bookkeeping for ordinary writes (create, update, patch).
//!
//! The field-set algebra lives in [`api::apply`]; this is the thin call
//! site that knows the request's manager and subresource.

use api::resources::ResourceInfo;
use serde_json::Value;

/// Record that `manager` wrote `new` (from `old`, if it existed).
pub fn track(
    resource: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    operation: &str,
    subresource: Option<&str>,
) {
    let now = api::meta::format_time(chrono::Utc::now());
    api::apply::update_managed_fields_subresource(
        old,
        new,
        manager,
        operation,
        subresource,
        (resource.group, resource.version, resource.kind),
        &now,
    );
}
