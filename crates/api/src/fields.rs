//! Field selectors, as in `k8s.io/apimachinery/pkg/fields`, and the fields
//! each kind lets clients select on.
//!
//! `?fieldSelector=` filters lists and watches by a few fields of the
//! object: the scheduler watches unscheduled pods with `spec.nodeName=`, a
//! kubelet watches its own with `spec.nodeName=<node>`, `kubectl events`
//! selects on `involvedObject.*`. This module parses the selector, says which
//! fields a kind supports (upstream's per-kind field label conversion
//! functions), and reads those fields from an object kept as JSON.
//!
//! What is copied from upstream, because clients depend on it:
//!
//! - The grammar: terms `field=value`, `field==value` (the same as `=`) and
//!   `field!=value`, separated by `,`, all of which must hold. In values,
//!   `\,`, `\=` and `\\` stand for `,`, `=` and `\`; an unescaped `,` ends the
//!   term and an unescaped `=` is an error. Nothing is trimmed: `a = b` names
//!   the field `"a "`. Empty terms are skipped, so `""` and `","` select
//!   everything.
//! - Terms are sorted as written before parsing, so the canonical form
//!   ([`Display`](fmt::Display)) does not depend on their order.
//! - A field the object lacks has the value `""`, so `spec.nodeName=` selects
//!   the pods no node has been given.
//! - Each kind accepts only its own field labels, with upstream's error
//!   messages ([`supported_field_labels`], [`FieldSelector::validate`]).
//!   Kinds without a list of their own accept `metadata.name` and
//!   `metadata.namespace`. Pods also accept the old `spec.host` for
//!   `spec.nodeName`.
//!
//! Values are read from the object as given: defaulting (a Secret's `type`,
//! a pod's `schedulerName`, ...) is the job of whoever stored the object.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Why a field selector was rejected. Every variant is a client error (HTTP
/// 400), with upstream's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// A term has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidTerm {
        /// The whole selector.
        selector: String,
        /// The term that could not be understood.
        term: String,
    },
    /// A value has a `\` that is not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscapeSequence(String),
    /// A value has an unescaped `,` or `=`.
    #[error("invalid field selector: unescaped character in value: {0}")]
    UnescapedCharacter(char),
    /// The kind does not support selecting on this field.
    #[error("{message}")]
    UnsupportedField {
        /// The field label that was asked for.
        label: String,
        /// Upstream's message for the kind, e.g.
        /// `field label not supported: foo`.
        message: String,
    },
}

/// How a [`FieldRequirement`] compares the field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldOperator {
    /// `field=value` (also written `field==value`).
    Equals,
    /// `field!=value`.
    NotEquals,
}

impl FieldOperator {
    /// The operator as written in the canonical form: `=` or `!=`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        }
    }
}

/// One term of a field selector. The value is unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldRequirement {
    /// The field label, e.g. `spec.nodeName`.
    pub field: String,
    /// Whether the field must equal the value or differ from it.
    pub operator: FieldOperator,
    /// The value to compare with (`""` matches a missing field).
    pub value: String,
}

impl FieldRequirement {
    /// Whether the field's value (`""` when absent) satisfies this term.
    pub fn matches(&self, actual: Option<&str>) -> bool {
        let equal = actual.unwrap_or("") == self.value;
        match self.operator {
            FieldOperator::Equals => equal,
            FieldOperator::NotEquals => !equal,
        }
    }
}

/// `field=value` or `field!=value`, with the value escaped.
impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = escape_value(&self.value);
        write!(f, "{}{}{value}", self.field, self.operator.as_str())
    }
}

/// A parsed field selector: the AND of its terms. [`Default`] selects
/// everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// The selector `field=value` (upstream's `OneTermEqualSelector`), e.g.
    /// `FieldSelector::one_term_equal("spec.nodeName", node)`.
    pub fn one_term_equal(field: impl Into<String>, value: impl Into<String>) -> Self {
        FieldSelector {
            requirements: vec![FieldRequirement {
                field: field.into(),
                operator: FieldOperator::Equals,
                value: value.into(),
            }],
        }
    }

    /// A selector requiring every field of `set` to equal its value
    /// (upstream's `SelectorFromSet`), in the order of the set.
    pub fn from_set(set: &BTreeMap<String, String>) -> Self {
        FieldSelector::from_requirements(
            set.iter()
                .map(|(field, value)| FieldRequirement {
                    field: field.clone(),
                    operator: FieldOperator::Equals,
                    value: value.clone(),
                })
                .collect(),
        )
    }

    /// A selector requiring all of `requirements`, in the given order.
    pub fn from_requirements(requirements: Vec<FieldRequirement>) -> Self {
        FieldSelector { requirements }
    }

    /// The terms, in canonical order for a parsed selector.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether the selector has no terms (selects everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every term holds, reading field values through `fields`
    /// (`None` counts as `""`).
    pub fn matches(&self, fields: &dyn Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(fields(&r.field).as_deref()))
    }

    /// Whether the object (as JSON) of the given group and kind satisfies
    /// every term. Fails, before matching anything, if the kind does not
    /// support one of the fields.
    pub fn matches_object(
        &self,
        group: &str,
        kind: &str,
        object: &Value,
    ) -> Result<bool, FieldSelectorError> {
        let kind = KindFields::of(group, kind);
        let labels = self
            .requirements
            .iter()
            .map(|r| kind.canonical(&r.field))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .requirements
            .iter()
            .zip(labels)
            .all(|(r, label)| r.matches(Some(&kind.value(object, label)))))
    }

    /// Checks that the kind supports every field named, failing with
    /// upstream's message for the kind (e.g. `field label not supported:
    /// foo`).
    pub fn validate(&self, group: &str, kind: &str) -> Result<(), FieldSelectorError> {
        self.convert(group, kind).map(drop)
    }

    /// Upstream's field label conversion: [`validate`](Self::validate), and
    /// rewrite old aliases to the current field (`spec.host` to
    /// `spec.nodeName` for pods).
    pub fn convert(&self, group: &str, kind: &str) -> Result<FieldSelector, FieldSelectorError> {
        let kind = KindFields::of(group, kind);
        let requirements = self
            .requirements
            .iter()
            .map(|r| {
                Ok(FieldRequirement {
                    field: kind.canonical(&r.field)?.to_string(),
                    ..r.clone()
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FieldSelector { requirements })
    }

    /// If a term requires `field` to equal one value, that value (upstream's
    /// `RequiresExactMatch`): what a watch cache indexed by the field can
    /// use.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.operator == FieldOperator::Equals && r.field == field)
            .map(|r| r.value.as_str())
    }
}

/// The canonical form: terms joined by `,`, values escaped, `==` written
/// `=`. It parses back to the same selector.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = FieldSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses the string form of a field selector (`?fieldSelector=`) like
/// upstream's `fields.ParseSelector`. The empty string selects everything.
/// Which fields exist is not checked here; see [`FieldSelector::validate`].
pub fn parse(selector: &str) -> Result<FieldSelector, FieldSelectorError> {
    let mut terms = split_terms(selector);
    terms.sort_unstable();
    let mut requirements = Vec::with_capacity(terms.len());
    for term in terms.into_iter().filter(|t| !t.is_empty()) {
        let (field, operator, raw_value) =
            split_term(term).ok_or_else(|| FieldSelectorError::InvalidTerm {
                selector: selector.to_string(),
                term: term.to_string(),
            })?;
        requirements.push(FieldRequirement {
            field: field.to_string(),
            operator,
            value: unescape_value(raw_value)?,
        });
    }
    Ok(FieldSelector { requirements })
}

/// Escapes `\`, `,` and `=` in a value with a backslash, so it can be put in
/// a field selector string.
pub fn escape_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Undoes [`escape_value`]: `\\`, `\,` and `\=` become `\`, `,` and `=`.
/// Any other escape, a trailing `\`, or an unescaped `,` or `=` is an
/// error.
pub fn unescape_value(value: &str) -> Result<String, FieldSelectorError> {
    let mut unescaped = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => unescaped.push(e),
                Some(e) => return Err(FieldSelectorError::InvalidEscapeSequence(format!("\\{e}"))),
                None => return Err(FieldSelectorError::InvalidEscapeSequence("\\".into())),
            },
            ',' | '=' => return Err(FieldSelectorError::UnescapedCharacter(c)),
            _ => unescaped.push(c),
        }
    }
    Ok(unescaped)
}

/// Splits at the commas that are not escaped; escapes are kept.
fn split_terms(selector: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at its first operator (`!=`, `==` or `=`, tried in that
/// order at each position). The field is not unescaped, as upstream.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ]
        .into_iter()
        .find(|(op, _)| rest.starts_with(op))
        .map(|(op, operator)| (&term[..i], operator, &rest[op.len()..]))
    })
}

/// The field labels the kind supports, as upstream registers them (aliases
/// such as a pod's `spec.host` are accepted too but not listed). `group` is
/// `""` (or `"core"`) for the core group. Kinds upstream registers nothing
/// for get `metadata.name` and `metadata.namespace`.
pub fn supported_field_labels(group: &str, kind: &str) -> &'static [&'static str] {
    KindFields::of(group, kind).labels()
}

/// The value of one field label of an object (as JSON) of the given group
/// and kind; a missing field is `""`. Fails if the kind does not support the
/// label.
pub fn object_field(
    group: &str,
    kind: &str,
    object: &Value,
    label: &str,
) -> Result<String, FieldSelectorError> {
    let kind = KindFields::of(group, kind);
    let label = kind.canonical(label)?;
    Ok(kind.value(object, label))
}

/// All the selectable fields of an object (upstream's `ToSelectableFields`):
/// every label of [`supported_field_labels`] with its value, in that order.
pub fn object_fields(group: &str, kind: &str, object: &Value) -> Vec<(&'static str, String)> {
    let kind = KindFields::of(group, kind);
    kind.labels()
        .iter()
        .map(|label| (*label, kind.value(object, label)))
        .collect()
}

const META: &[&str] = &["metadata.name", "metadata.namespace"];
const POD: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];
const NODE: &[&str] = &["metadata.name", "spec.unschedulable"];
const REPLICATION_CONTROLLER: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];
const CORE_EVENT: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];
const EVENTS_EVENT: &[&str] = &[
    "reason",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reportingController",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];
const NAMESPACE: &[&str] = &["status.phase", "metadata.name"];
const SECRET: &[&str] = &["type", "metadata.namespace", "metadata.name"];
const SERVICE: &[&str] = &[
    "metadata.namespace",
    "metadata.name",
    "spec.clusterIP",
    "spec.type",
];
const JOB: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];
const CERTIFICATE_SIGNING_REQUEST: &[&str] = &["metadata.name", "spec.signerName"];
const RESOURCE_SLICE: &[&str] = &["metadata.name", "spec.nodeName", "spec.driver"];

/// The kinds upstream registers field label conversion functions for; all
/// others only know `metadata.name` and `metadata.namespace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KindFields {
    Pod,
    Node,
    ReplicationController,
    CoreEvent,
    EventsEvent,
    Namespace,
    Secret,
    Service,
    Job,
    CertificateSigningRequest,
    ResourceSlice,
    Other,
}

impl KindFields {
    fn of(group: &str, kind: &str) -> Self {
        let group = if group == "core" { "" } else { group };
        match (group, kind) {
            ("", "Pod") => KindFields::Pod,
            ("", "Node") => KindFields::Node,
            ("", "ReplicationController") => KindFields::ReplicationController,
            ("", "Event") => KindFields::CoreEvent,
            ("", "Namespace") => KindFields::Namespace,
            ("", "Secret") => KindFields::Secret,
            ("", "Service") => KindFields::Service,
            ("events.k8s.io", "Event") => KindFields::EventsEvent,
            ("batch", "Job") => KindFields::Job,
            ("certificates.k8s.io", "CertificateSigningRequest") => {
                KindFields::CertificateSigningRequest
            }
            ("resource.k8s.io", "ResourceSlice") => KindFields::ResourceSlice,
            _ => KindFields::Other,
        }
    }

    fn labels(self) -> &'static [&'static str] {
        match self {
            KindFields::Pod => POD,
            KindFields::Node => NODE,
            KindFields::ReplicationController => REPLICATION_CONTROLLER,
            KindFields::CoreEvent => CORE_EVENT,
            KindFields::EventsEvent => EVENTS_EVENT,
            KindFields::Namespace => NAMESPACE,
            KindFields::Secret => SECRET,
            KindFields::Service => SERVICE,
            KindFields::Job => JOB,
            KindFields::CertificateSigningRequest => CERTIFICATE_SIGNING_REQUEST,
            KindFields::ResourceSlice => RESOURCE_SLICE,
            KindFields::Other => META,
        }
    }

    /// The supported label `label` stands for, or upstream's error.
    fn canonical(self, label: &str) -> Result<&'static str, FieldSelectorError> {
        if self == KindFields::Pod && label == "spec.host" {
            return Ok("spec.nodeName");
        }
        if let Some(known) = self.labels().iter().find(|l| **l == label) {
            return Ok(*known);
        }
        let message = match self {
            KindFields::Job => format!("field label {label:?} not supported for batchv1.Job"),
            KindFields::Other => format!(
                "{label:?} is not a known field selector: only \"metadata.name\", \
                 \"metadata.namespace\""
            ),
            _ => format!("field label not supported: {label}"),
        };
        Err(FieldSelectorError::UnsupportedField {
            label: label.to_string(),
            message,
        })
    }

    /// The value of a supported label, computed like upstream's
    /// `ToSelectableFields` for the kind.
    fn value(self, object: &Value, label: &str) -> String {
        match (self, label) {
            (_, "metadata.name") => text(object, &["metadata", "name"]),
            (_, "metadata.namespace") => text(object, &["metadata", "namespace"]),
            (KindFields::Pod, "spec.hostNetwork") => flag(object, &["spec", "hostNetwork"]),
            (KindFields::Pod, "status.podIP") => {
                // Upstream reads the first of status.podIPs; status.podIP is
                // the older single-address field it is converted from.
                let first = at(object, &["status", "podIPs", "0", "ip"]).and_then(Value::as_str);
                match first {
                    Some(ip) if !ip.is_empty() => ip.to_string(),
                    _ => text(object, &["status", "podIP"]),
                }
            }
            // Accepted by upstream's conversion but absent from its field set.
            (KindFields::Pod, "status.podIPs") => String::new(),
            (KindFields::Node, "spec.unschedulable") => flag(object, &["spec", "unschedulable"]),
            (KindFields::ReplicationController, "status.replicas") => {
                count(object, &["status", "replicas"])
            }
            (KindFields::Job, "status.successful") => count(object, &["status", "succeeded"]),
            (KindFields::CoreEvent | KindFields::EventsEvent, label) => event_value(object, label),
            (_, label) => {
                let path: Vec<&str> = label.split('.').collect();
                text(object, &path)
            }
        }
    }
}

/// An Event's field, from either shape of the object: core/v1
/// (`involvedObject`, `source`, `reportingComponent`) or events.k8s.io/v1
/// (`regarding`, `deprecatedSource`, `reportingController`), whichever
/// `label` names.
fn event_value(object: &Value, label: &str) -> String {
    let first = |paths: &[&[&str]]| {
        paths
            .iter()
            .map(|path| text(object, path))
            .find(|value| !value.is_empty())
            .unwrap_or_default()
    };
    if let Some(field) = label
        .strip_prefix("involvedObject.")
        .or_else(|| label.strip_prefix("regarding."))
    {
        return first(&[&["involvedObject", field], &["regarding", field]]);
    }
    match label {
        "reportingComponent" | "reportingController" => {
            first(&[&["reportingComponent"], &["reportingController"]])
        }
        "source" => first(&[
            &["source", "component"],
            &["deprecatedSource", "component"],
            &["reportingComponent"],
            &["reportingController"],
        ]),
        other => text(object, &[other]),
    }
}

/// The value at `path` (object keys, or array indices for arrays).
fn at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(object, |value, key| match value {
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => value.get(key),
    })
}

/// A scalar at `path` as text; `""` when missing or not a scalar.
fn text(object: &Value, path: &[&str]) -> String {
    match at(object, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A boolean at `path` as `"true"`/`"false"`; missing is `"false"`.
fn flag(object: &Value, path: &[&str]) -> String {
    let set = at(object, path).and_then(Value::as_bool).unwrap_or(false);
    set.to_string()
}

/// An integer at `path` as decimal text; missing is `"0"`.
fn count(object: &Value, path: &[&str]) -> String {
    match at(object, path) {
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A selector, a set of (label or field, value) pairs, and whether it matches.
    type MatchCase = (&'static str, &'static [(&'static str, &'static str)], bool);
    use serde_json::json;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |field| map.get(field).cloned()
    }

    #[test]
    fn valid_selectors_parse_to_their_canonical_form() {
        let cases = [
            ("", ""),
            (",", ""),
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            ("a=", "a="),
            ("a!=", "a!="),
            ("b=1,a=2", "a=2,b=1"),
            ("a=b,,c=d,", "a=b,c=d"),
            ("a=b,a=c", "a=b,a=c"),
            (r"a=b\,c", r"a=b\,c"),
            (r"a=b\=c", r"a=b\=c"),
            (r"a=b\\c", r"a=b\\c"),
            (r"a=\\\,\=", r"a=\\\,\="),
            ("a = b", "a = b"),
            ("=b", "=b"),
            (r"a\,b=c", r"a\,b=c"),
            (
                "spec.nodeName=,status.phase!=Failed",
                "spec.nodeName=,status.phase!=Failed",
            ),
            ("a=é", "a=é"),
        ];
        for (input, canonical) in cases {
            let selector = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(selector.to_string(), canonical, "input {input:?}");
            assert_eq!(
                parse(canonical).unwrap(),
                selector,
                "reparse of {canonical:?}"
            );
        }
    }

    #[test]
    fn parsed_terms_keep_fields_as_written_and_values_unescaped() {
        let cases: &[(&str, &str, FieldOperator, &str)] = &[
            ("a=b", "a", FieldOperator::Equals, "b"),
            ("a==b", "a", FieldOperator::Equals, "b"),
            ("a!=b", "a", FieldOperator::NotEquals, "b"),
            (r"a=b\,c", "a", FieldOperator::Equals, "b,c"),
            (r"a=b\=c", "a", FieldOperator::Equals, "b=c"),
            (r"a=b\\c", "a", FieldOperator::Equals, r"b\c"),
            ("a = b", "a ", FieldOperator::Equals, " b"),
            (r"a\,b=c", r"a\,b", FieldOperator::Equals, "c"),
            ("!=x", "", FieldOperator::NotEquals, "x"),
        ];
        for (input, field, operator, value) in cases {
            let selector = parse(input).unwrap();
            let expected = FieldRequirement {
                field: field.to_string(),
                operator: *operator,
                value: value.to_string(),
            };
            assert_eq!(selector.requirements(), [expected], "input {input:?}");
        }
    }

    #[test]
    fn malformed_selectors_fail_with_upstreams_messages() {
        let cases = [
            ("a", "invalid selector: 'a'; can't understand 'a'"),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            ("a!b", "invalid selector: 'a!b'; can't understand 'a!b'"),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: =",
            ),
            (
                "a=!=b",
                "invalid field selector: unescaped character in value: =",
            ),
            (
                "a===b",
                "invalid field selector: unescaped character in value: =",
            ),
            (
                r"a=b\",
                r"invalid field selector: invalid escape sequence: \",
            ),
            (
                r"a=\x",
                r"invalid field selector: invalid escape sequence: \x",
            ),
            (
                r"a=\é",
                r"invalid field selector: invalid escape sequence: \é",
            ),
        ];
        for (input, message) in cases {
            let error = parse(input).expect_err(input);
            assert_eq!(error.to_string(), message, "input {input:?}");
        }
    }

    #[test]
    fn selectors_match_through_a_field_lookup_with_missing_fields_as_empty() {
        let cases: &[MatchCase] = &[
            ("", &[], true),
            ("a=b", &[("a", "b")], true),
            ("a=b", &[("a", "c")], false),
            ("a=b", &[], false),
            ("a=", &[], true),
            ("a=", &[("a", "")], true),
            ("a!=", &[], false),
            ("a!=b", &[], true),
            ("a!=b", &[("a", "b")], false),
            ("a=b,c!=d", &[("a", "b"), ("c", "e")], true),
            ("a=b,c!=d", &[("a", "b"), ("c", "d")], false),
            (r"a=x\,y", &[("a", "x,y")], true),
        ];
        for (selector, fields, expected) in cases {
            let parsed = parse(selector).unwrap();
            assert_eq!(
                parsed.matches(&lookup(fields)),
                *expected,
                "{selector:?} on {fields:?}"
            );
        }
    }

    #[test]
    fn the_schedulers_selector_finds_only_unscheduled_pods() {
        let selector =
            parse("spec.nodeName=,status.phase!=Succeeded,status.phase!=Failed").unwrap();
        let unscheduled = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {}});
        let bound = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        let finished = json!({"spec": {}, "status": {"phase": "Succeeded"}});
        assert_eq!(selector.matches_object("", "Pod", &unscheduled), Ok(true));
        assert_eq!(selector.matches_object("", "Pod", &bound), Ok(false));
        assert_eq!(selector.matches_object("", "Pod", &finished), Ok(false));
        let kubelet = FieldSelector::one_term_equal("spec.nodeName", "n1");
        assert_eq!(kubelet.to_string(), "spec.nodeName=n1");
        assert_eq!(kubelet.matches_object("", "Pod", &bound), Ok(true));
        assert_eq!(kubelet.matches_object("", "Pod", &unscheduled), Ok(false));
        assert_eq!(kubelet.requires_exact_match("spec.nodeName"), Some("n1"));
    }

    #[test]
    fn object_fields_are_read_per_kind_like_upstream() {
        let pod = json!({
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": {
                "nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "serviceAccountName": "web", "hostNetwork": true
            },
            "status": {
                "phase": "Running", "podIP": "10.0.0.9",
                "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}], "nominatedNodeName": "n2"
            }
        });
        let bare_pod = json!({"metadata": {"name": "p"}, "status": {"podIP": "10.0.0.9"}});
        let core_event = json!({
            "metadata": {"name": "e", "namespace": "shop"},
            "involvedObject": {
                "kind": "Pod", "namespace": "shop", "name": "web-0", "uid": "u-1",
                "apiVersion": "v1", "resourceVersion": "42", "fieldPath": "spec.containers{web}"
            },
            "reason": "Pulled", "type": "Normal", "reportingComponent": "kubelet",
            "source": {"component": ""}
        });
        let new_event = json!({
            "metadata": {"name": "e", "namespace": "shop"},
            "regarding": {"kind": "Pod", "name": "web-0"},
            "reportingController": "kubelet",
            "deprecatedSource": {"component": "old-kubelet"},
            "reason": "Pulled", "type": "Warning"
        });
        let cases: Vec<(&str, &str, Value, &str, &str)> = vec![
            ("", "Pod", pod.clone(), "metadata.name", "web-0"),
            ("", "Pod", pod.clone(), "metadata.namespace", "shop"),
            ("", "Pod", pod.clone(), "spec.nodeName", "n1"),
            ("", "Pod", pod.clone(), "spec.host", "n1"),
            ("", "Pod", pod.clone(), "spec.restartPolicy", "Always"),
            (
                "",
                "Pod",
                pod.clone(),
                "spec.schedulerName",
                "default-scheduler",
            ),
            ("", "Pod", pod.clone(), "spec.serviceAccountName", "web"),
            ("", "Pod", pod.clone(), "spec.hostNetwork", "true"),
            ("", "Pod", pod.clone(), "status.phase", "Running"),
            ("", "Pod", pod.clone(), "status.podIP", "10.0.0.1"),
            ("", "Pod", pod.clone(), "status.podIPs", ""),
            ("", "Pod", pod.clone(), "status.nominatedNodeName", "n2"),
            ("core", "Pod", pod.clone(), "spec.nodeName", "n1"),
            ("", "Pod", bare_pod.clone(), "spec.nodeName", ""),
            ("", "Pod", bare_pod.clone(), "spec.hostNetwork", "false"),
            ("", "Pod", bare_pod.clone(), "status.podIP", "10.0.0.9"),
            ("", "Pod", bare_pod.clone(), "metadata.namespace", ""),
            (
                "",
                "Node",
                json!({"spec": {"unschedulable": true}}),
                "spec.unschedulable",
                "true",
            ),
            ("", "Node", json!({}), "spec.unschedulable", "false"),
            (
                "",
                "ReplicationController",
                json!({"status": {"replicas": 3}}),
                "status.replicas",
                "3",
            ),
            (
                "",
                "ReplicationController",
                json!({}),
                "status.replicas",
                "0",
            ),
            (
                "batch",
                "Job",
                json!({"status": {"succeeded": 2}}),
                "status.successful",
                "2",
            ),
            (
                "batch",
                "Job",
                json!({"status": {}}),
                "status.successful",
                "0",
            ),
            ("", "Secret", json!({"type": "Opaque"}), "type", "Opaque"),
            (
                "",
                "Namespace",
                json!({"status": {"phase": "Terminating"}}),
                "status.phase",
                "Terminating",
            ),
            (
                "",
                "Service",
                json!({"spec": {"type": "NodePort"}}),
                "spec.type",
                "NodePort",
            ),
            (
                "",
                "Service",
                json!({"spec": {"clusterIP": "None"}}),
                "spec.clusterIP",
                "None",
            ),
            (
                "certificates.k8s.io",
                "CertificateSigningRequest",
                json!({"spec": {"signerName": "kubernetes.io/kubelet-serving"}}),
                "spec.signerName",
                "kubernetes.io/kubelet-serving",
            ),
            (
                "resource.k8s.io",
                "ResourceSlice",
                json!({"spec": {"driver": "gpu"}}),
                "spec.driver",
                "gpu",
            ),
            (
                "",
                "ConfigMap",
                json!({"metadata": {"namespace": "x"}}),
                "metadata.namespace",
                "x",
            ),
            (
                "",
                "Event",
                core_event.clone(),
                "involvedObject.kind",
                "Pod",
            ),
            (
                "",
                "Event",
                core_event.clone(),
                "involvedObject.namespace",
                "shop",
            ),
            (
                "",
                "Event",
                core_event.clone(),
                "involvedObject.name",
                "web-0",
            ),
            ("", "Event", core_event.clone(), "involvedObject.uid", "u-1"),
            (
                "",
                "Event",
                core_event.clone(),
                "involvedObject.apiVersion",
                "v1",
            ),
            (
                "",
                "Event",
                core_event.clone(),
                "involvedObject.resourceVersion",
                "42",
            ),
            (
                "",
                "Event",
                core_event.clone(),
                "involvedObject.fieldPath",
                "spec.containers{web}",
            ),
            ("", "Event", core_event.clone(), "reason", "Pulled"),
            ("", "Event", core_event.clone(), "type", "Normal"),
            (
                "",
                "Event",
                core_event.clone(),
                "reportingComponent",
                "kubelet",
            ),
            ("", "Event", core_event.clone(), "source", "kubelet"),
            (
                "events.k8s.io",
                "Event",
                new_event.clone(),
                "regarding.kind",
                "Pod",
            ),
            (
                "events.k8s.io",
                "Event",
                new_event.clone(),
                "regarding.name",
                "web-0",
            ),
            (
                "events.k8s.io",
                "Event",
                new_event.clone(),
                "regarding.uid",
                "",
            ),
            (
                "events.k8s.io",
                "Event",
                new_event.clone(),
                "reportingController",
                "kubelet",
            ),
            (
                "events.k8s.io",
                "Event",
                new_event.clone(),
                "source",
                "old-kubelet",
            ),
            (
                "events.k8s.io",
                "Event",
                new_event.clone(),
                "type",
                "Warning",
            ),
            (
                "events.k8s.io",
                "Event",
                core_event.clone(),
                "regarding.name",
                "web-0",
            ),
        ];
        for (group, kind, object, label, expected) in cases {
            let value = object_field(group, kind, &object, label)
                .unwrap_or_else(|e| panic!("{group}/{kind} {label}: {e}"));
            assert_eq!(value, expected, "{group}/{kind} {label}");
        }
    }

    #[test]
    fn unsupported_fields_are_rejected_with_upstreams_message_for_the_kind() {
        let cases = [
            ("", "Pod", "foo", "field label not supported: foo"),
            (
                "",
                "Pod",
                "spec.containers",
                "field label not supported: spec.containers",
            ),
            (
                "",
                "Node",
                "metadata.namespace",
                "field label not supported: metadata.namespace",
            ),
            (
                "",
                "Namespace",
                "metadata.namespace",
                "field label not supported: metadata.namespace",
            ),
            ("", "Secret", "data", "field label not supported: data"),
            (
                "",
                "Event",
                "regarding.kind",
                "field label not supported: regarding.kind",
            ),
            (
                "events.k8s.io",
                "Event",
                "involvedObject.kind",
                "field label not supported: involvedObject.kind",
            ),
            (
                "batch",
                "Job",
                "status.succeeded",
                "field label \"status.succeeded\" not supported for batchv1.Job",
            ),
            (
                "apps",
                "ReplicaSet",
                "status.replicas",
                "\"status.replicas\" is not a known field selector: only \"metadata.name\", \
                 \"metadata.namespace\"",
            ),
            (
                "",
                "ConfigMap",
                "data.key",
                "\"data.key\" is not a known field selector: only \"metadata.name\", \
                 \"metadata.namespace\"",
            ),
            ("", "Pod", "", "field label not supported: "),
        ];
        for (group, kind, label, message) in cases {
            let selector = FieldSelector::one_term_equal(label, "x");
            let expected = FieldSelectorError::UnsupportedField {
                label: label.to_string(),
                message: message.to_string(),
            };
            assert_eq!(
                selector.validate(group, kind),
                Err(expected.clone()),
                "{kind} {label}"
            );
            assert_eq!(
                selector.matches_object(group, kind, &json!({})),
                Err(expected.clone())
            );
            assert_eq!(object_field(group, kind, &json!({}), label), Err(expected));
        }
    }

    #[test]
    fn conversion_rewrites_the_old_pod_host_field() {
        let selector = parse("spec.host=n1,metadata.name=p").unwrap();
        assert_eq!(selector.validate("", "Pod"), Ok(()));
        let converted = selector.convert("", "Pod").unwrap();
        assert_eq!(converted.to_string(), "metadata.name=p,spec.nodeName=n1");
        assert!(selector.validate("", "Node").is_err());
        assert_eq!(converted.requires_exact_match("spec.nodeName"), Some("n1"));
    }

    #[test]
    fn exact_matches_are_reported_for_equality_terms_only() {
        let cases = [
            ("a=b", "a", Some("b")),
            ("a==b", "a", Some("b")),
            ("a!=b", "a", None),
            ("a!=b,a=c", "a", Some("c")),
            ("a=b", "c", None),
            ("a=", "a", Some("")),
        ];
        for (selector, field, expected) in cases {
            assert_eq!(
                parse(selector).unwrap().requires_exact_match(field),
                expected
            );
        }
    }

    #[test]
    fn every_kind_lists_its_selectable_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n"}});
        let fields: BTreeMap<&str, String> = object_fields("", "Pod", &pod).into_iter().collect();
        assert_eq!(fields.len(), POD.len());
        assert_eq!(fields["spec.nodeName"], "n");
        assert_eq!(fields["spec.hostNetwork"], "false");
        assert_eq!(supported_field_labels("apps", "Deployment"), META);
        assert_eq!(
            supported_field_labels("", "Namespace"),
            ["status.phase", "metadata.name"]
        );
        let by_map = parse("metadata.name=p,spec.nodeName=n").unwrap();
        assert!(by_map.matches(&|f: &str| fields.get(f).cloned()));
        let set = BTreeMap::from([("b".to_string(), "2".to_string()), ("a".into(), "1".into())]);
        assert_eq!(FieldSelector::from_set(&set).to_string(), "a=1,b=2");
        assert!(FieldSelector::everything().is_empty());
        assert!(!by_map.is_empty());
    }

    #[test]
    fn escaping_round_trips_every_value() {
        let values = ["", "plain", "a,b", "a=b", r"a\b", r"\\,,==", "é,=\\", "\\"];
        for value in values {
            let escaped = escape_value(value);
            assert_eq!(unescape_value(&escaped).as_deref(), Ok(value), "{value:?}");
            let selector = FieldSelector::one_term_equal("f", value);
            let reparsed = parse(&selector.to_string()).unwrap();
            assert_eq!(reparsed, selector, "{value:?} as {selector}");
        }
        assert_eq!(escape_value(r"a,b=c\d"), r"a\,b\=c\\d");
    }

    /// A small deterministic generator, so the garbage test needs no crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn garbage_input_never_panics_and_accepted_input_round_trips() {
        const ALPHABET: &[&str] = &[
            "a",
            "b",
            "spec.nodeName",
            "=",
            "==",
            "!",
            "!=",
            ",",
            "\\",
            "\\,",
            "\\=",
            "\\\\",
            " ",
            "é",
            "\0",
            "(",
            "",
        ];
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = (rng.next() % 10) as usize;
            let input: String = (0..len)
                .map(|_| ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize])
                .collect();
            let Ok(selector) = parse(&input) else {
                continue;
            };
            accepted += 1;
            let canonical = selector.to_string();
            let reparsed = parse(&canonical)
                .unwrap_or_else(|e| panic!("{input:?} -> {canonical:?} does not parse: {e}"));
            let mut original = selector.requirements().to_vec();
            let mut again = reparsed.requirements().to_vec();
            original.sort();
            again.sort();
            assert_eq!(original, again, "{input:?} -> {canonical:?}");
            assert_eq!(
                parse(&reparsed.to_string()).unwrap(),
                reparsed,
                "{canonical:?}"
            );
            let _ = selector.matches_object("", "Pod", &json!({"spec": []}));
            let _ = selector.matches(&|_: &str| None);
        }
        assert!(accepted > 100, "only {accepted} garbage inputs parsed");
    }
}
