//! Interim server-side apply until `api::apply` lands: merge the applied
//! configuration into the live object. Replaced by a re-export of
//! `api::apply`.

use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Conflict {
    pub manager: String,
    pub field_path: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conflict with \"{}\": {}", self.manager, self.field_path)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("conflicts")]
    Conflicts(Vec<Conflict>),
    #[error("{0}")]
    Invalid(String),
}

pub fn conflicts_message(conflicts: &[Conflict]) -> String {
    format!("Apply failed with {} conflicts", conflicts.len())
}

pub fn apply(
    live: Option<&Value>,
    config: &Value,
    _manager: &str,
    _force: bool,
    _gvk: (&str, &str, &str),
    _now: &str,
) -> Result<Value, ApplyError> {
    if !config.is_object() {
        return Err(ApplyError::Invalid("apply configuration must be an object".into()));
    }
    let mut out = live.cloned().unwrap_or(Value::Object(Default::default()));
    json_patch::merge(&mut out, config);
    Ok(out)
}
