//! Server-side apply (SSA) and `metadata.managedFields` tracking.
//!
//! This is upstream's field manager (`k8s.io/apiserver/pkg/util/managedfields`)
//! over the algorithms of `sigs.k8s.io/structured-merge-diff`, on objects kept
//! as JSON:
//!
//! - [`apply`] merges an apply configuration (`PATCH` with
//!   `Content-Type: application/apply-patch+yaml`) into the live object, removes
//!   what the same manager applied before and no longer applies (unless someone
//!   else owns it), detects conflicts with other managers (a 409 built with
//!   [`conflict_status`]) and, with `force`, takes their fields over.
//! - [`update_managed_fields`] records who changed what on ordinary writes
//!   (create, update, patch): the fields a write adds or changes become owned
//!   by its manager (operation `Update`) and are taken away from everyone else.
//!
//! Ownership is a set of field paths per manager, serialized as upstream's
//! `FieldsV1` (`{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{}}}}}`).
//! How a path is spelled depends on the type: struct fields and map keys are
//! `f:NAME`; items of `map` lists are `k:{KEYS}`, items of `set` lists `v:VALUE`;
//! atomic lists, atomic structs (label selectors, object references...) and
//! scalars are leaves. The types come from the served kinds' schemas
//! ([`crate::schema`]) and the list metadata of [`crate::patch_meta`]; lists
//! without metadata are atomic (upstream's default) and kinds without a schema
//! are treated as granular maps with atomic lists (upstream's "deduced" type).
//!
//! Upstream layers reproduced here: the field-set algebra, merge, compare and
//! prune of structured-merge-diff; `stripMeta` (system metadata is never
//! owned); reset fields (`status` is ignored on the main resource of kinds
//! with a status subresource, `spec` on the status subresource);
//! `before-first-apply` (applying to an untracked object); the client-side to
//! server-side apply migration of manager `kubectl` (conflicts allowed by the
//! `last-applied-configuration` annotation are forced, and the annotation is
//! kept in sync); the cap of ten `Update` entries (`ancient-changes`); and the
//! sort order of the encoded entries.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde_json::{json, Map, Value};

use crate::patch_meta::{self, PatchMeta};
use crate::resources::RESOURCES;
use crate::schema::{self, Dialect};

/// The annotation client-side `kubectl apply` keeps its configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// `operation` of the entries written by [`apply`].
pub const OPERATION_APPLY: &str = "Apply";
/// `operation` of the entries written by ordinary writes.
pub const OPERATION_UPDATE: &str = "Update";

/// The manager `kubectl apply --server-side` uses; only it migrates
/// client-side apply ownership (upstream's rule).
const KUBECTL: &str = "kubectl";
/// Owner of the fields of an object that had no managed fields when first applied.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
/// The bucket the oldest `Update` entries are merged into.
const ANCIENT_CHANGES: &str = "ancient-changes";
/// How many `Update` entries an object keeps before merging the oldest.
const MAX_UPDATE_MANAGERS: usize = 10;
/// Upstream's limit on the total size of an object's annotations.
const ANNOTATIONS_SIZE_LIMIT: usize = 256 * 1024;
/// Metadata fields the system owns: never recorded for anyone.
const STRIPPED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];
/// Metadata fields an apply configuration cannot change (upstream resets them
/// on every update).
const SYSTEM_METADATA: &[&str] = &[
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Structs upstream marks `+structType=atomic`: replaced whole, owned as one field.
const ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.ScopeSelector",
    "io.k8s.api.autoscaling.v1.CrossVersionObjectReference",
    "io.k8s.api.autoscaling.v2.CrossVersionObjectReference",
];

/// Map fields upstream marks `+mapType=atomic`.
const ATOMIC_MAPS: &[(&str, &str)] = &[
    ("io.k8s.api.core.v1.PodSpec", "nodeSelector"),
    ("io.k8s.api.core.v1.ServiceSpec", "selector"),
    ("io.k8s.api.core.v1.ReplicationControllerSpec", "selector"),
];

// ---------------------------------------------------------------------------
// Errors and conflicts.

/// Why an apply failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Other managers own fields the configuration changes: HTTP 409 with
    /// reason `Conflict`; see [`conflict_status`].
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration (or the live object) cannot be applied: HTTP 400
    /// `BadRequest` with this message.
    #[error("{0}")]
    Invalid(String),
}

/// One field another manager owns and an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name (`kubectl-client-side-apply`).
    pub manager: String,
    /// Its operation: [`OPERATION_APPLY`] or [`OPERATION_UPDATE`].
    pub operation: String,
    /// The `apiVersion` its fields were recorded in.
    pub api_version: String,
    /// The subresource it wrote through (`status`), or empty.
    pub subresource: String,
    /// The field, as upstream prints paths: `.spec.replicas`,
    /// `.spec.template.spec.containers[name="web"].image`.
    pub field_path: String,
}

impl Conflict {
    /// The manager as upstream names it in messages:
    /// `"kubectl-client-side-apply" using apps/v1` for updaters, `"kubectl"`
    /// for appliers.
    pub fn manager_description(&self) -> String {
        let mut out = go_quote(&self.manager);
        if !self.subresource.is_empty() {
            out = format!("{out} with subresource {}", go_quote(&self.subresource));
        }
        if self.operation == OPERATION_UPDATE {
            out = format!("{out} using {}", self.api_version);
        }
        out
    }

    /// The message of this conflict's `StatusCause`:
    /// `conflict with "kubectl-client-side-apply" using apps/v1`.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_description())
    }

    /// The `StatusCause` of this conflict (type `FieldManagerConflict`).
    pub fn cause(&self) -> Value {
        json!({
            "type": "FieldManagerConflict",
            "message": self.cause_message(),
            "field": self.field_path,
        })
    }

    /// The key upstream groups and sorts conflicts by (its manager identifier).
    fn manager_key(&self) -> String {
        let mut key = format!(
            "{{\"manager\":{},\"operation\":{}",
            go_quote(&self.manager),
            go_quote(&self.operation)
        );
        if self.operation != OPERATION_APPLY {
            key.push_str(&format!(",\"apiVersion\":{}", go_quote(&self.api_version)));
        }
        if !self.subresource.is_empty() {
            key.push_str(&format!(",\"subresource\":{}", go_quote(&self.subresource)));
        }
        key.push('}');
        key
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cause_message(), self.field_path)
    }
}

/// The message of a conflict error, as upstream words it:
/// `Apply failed with 1 conflict: conflict with "kubectl-client-side-apply"
/// using apps/v1: .spec.replicas`, or for several, one `conflicts with M:`
/// line per manager followed by `- PATH` lines.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [one] = conflicts {
        return format!("Apply failed with 1 conflict: {one}");
    }
    let mut by_manager: BTreeMap<String, Vec<&Conflict>> = BTreeMap::new();
    for c in conflicts {
        by_manager.entry(c.manager_key()).or_default().push(c);
    }
    let mut lines = Vec::new();
    for group in by_manager.values() {
        lines.push(format!(
            "conflicts with {}:",
            group[0].manager_description()
        ));
        for c in group {
            lines.push(format!("- {}", c.field_path));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The `Status` (409, reason `Conflict`, one `FieldManagerConflict` cause
/// per field) the API server answers a conflicting apply with.
pub fn conflict_status(conflicts: &[Conflict]) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": conflict_message(conflicts),
        "reason": "Conflict",
        "details": {"causes": conflicts.iter().map(Conflict::cause).collect::<Vec<_>>()},
        "code": 409,
    })
}

/// Go's `%q` for the strings we print (close enough: JSON string syntax).
fn go_quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

// ---------------------------------------------------------------------------
// Public entry points.

/// Server-side apply `config` (the object of an apply patch) to `live`
/// (`None`: the object does not exist yet and is created) on behalf of
/// `manager`, for the kind `gvk` = (group, version, kind), at time `now`
/// (RFC 3339).
///
/// Returns the new object: `live` with every field of `config` set, the fields
/// `manager` applied before and no longer applies removed (unless another
/// manager owns them too), and `metadata.managedFields` updated. Without
/// `force`, fields owned by other managers whose value would change are
/// [`ApplyError::Conflicts`]; with `force`, their ownership moves to
/// `manager`. A value equal to the live one is never a conflict.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    gvk: (&str, &str, &str),
    now: &str,
) -> Result<Value, ApplyError> {
    apply_subresource(live, config, manager, force, None, gvk, now)
}

/// [`apply`] through a subresource (`kubectl apply --server-side
/// --subresource=status`): the entry records `subresource`, and for `status`
/// only the status is applied.
pub fn apply_subresource(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    subresource: Option<&str>,
    gvk: (&str, &str, &str),
    now: &str,
) -> Result<Value, ApplyError> {
    let kind = KindInfo::new(gvk, subresource);
    validate_config(config, &kind, live)?;
    let full_set = field_set(config, kind.ty, true).map_err(|e| {
        ApplyError::Invalid(format!(
            "failed to create typed patch object ({}, Kind={}): {e}",
            kind.api_version, kind.kind
        ))
    })?;
    let mut cfg = config.clone();
    remove_items(&mut cfg, &kind.ignored, kind.ty);
    let new_set = full_set.without(&kind.ignored);

    let live_obj = match live {
        Some(v) if v.is_object() => without_managed_fields(v),
        Some(v) => {
            return Err(ApplyError::Invalid(format!(
                "the live object must be a JSON object, got {}",
                kind_name(v)
            )))
        }
        None => Value::Object(Map::new()),
    };
    let mut entries = live.map(decode_entries).unwrap_or_default();
    if live.is_some() && entries.is_empty() {
        // Upstream: an object nobody tracks yet is first attributed, field by
        // field, to `before-first-apply`.
        let who = Who {
            manager: BEFORE_FIRST_APPLY,
            operation: OPERATION_UPDATE,
            api_version: &kind.api_version,
            subresource: kind.subresource,
        };
        record_update(None, &live_obj, &mut entries, &who, &kind, now);
    }
    let who = Who {
        manager,
        operation: OPERATION_APPLY,
        api_version: &kind.api_version,
        subresource: kind.subresource,
    };
    let input = ApplyInput {
        live_obj: &live_obj,
        live_exists: live.is_some(),
        cfg: &cfg,
        new_set: &new_set,
        who: &who,
        kind: &kind,
    };
    let attempt = |force: bool| input.run(entries.clone(), force);
    let (mut merged, mut entries) = match attempt(force) {
        Ok(done) => done,
        Err(conflicts) => {
            // Client-side apply migration: `kubectl` may take over the fields
            // its last client-side apply set, as long as they still hold the
            // values it set.
            let allowed = if manager == KUBECTL {
                allowed_by_last_applied(&live_obj, kind.ty)
            } else {
                None
            };
            let Some(allowed) = allowed else {
                return Err(ApplyError::Conflicts(public_conflicts(conflicts)));
            };
            let remaining: Vec<_> = conflicts
                .into_iter()
                .filter(|(_, path)| !allowed.has(path))
                .collect();
            if !remaining.is_empty() {
                return Err(ApplyError::Conflicts(public_conflicts(remaining)));
            }
            match attempt(true) {
                Ok(done) => done,
                Err(conflicts) => return Err(ApplyError::Conflicts(public_conflicts(conflicts))),
            }
        }
    };

    let noop = live.is_some() && values_equal(&merged, &live_obj);
    if let Some(entry) = entries.iter_mut().find(|e| e.is(&who)) {
        entry.set = strip_meta(&entry.set);
        // Upstream only stamps the time when the object changed.
        if !noop {
            entry.time = Some(now.to_string());
        }
    }
    entries.retain(|e| !e.set.is_empty());
    if manager == KUBECTL {
        sync_last_applied(&mut merged, config);
    }
    cap_update_entries(&mut entries);
    encode_entries(&mut merged, &entries);
    Ok(merged)
}

/// Record an ordinary write (create, update, patch) by `manager` in
/// `new.metadata.managedFields`. `old` is the object before the write (`None`
/// for a create); `operation` is [`OPERATION_UPDATE`].
///
/// The fields the write added or changed (every set field on create) become
/// owned by `manager` and are taken away from every other manager, appliers
/// included; removed fields are removed from every set; entries left empty are
/// dropped. As upstream: `managedFields` sent in `new` replace the old ones
/// (`[{}]` resets them), and an existing object without managed fields stays
/// untracked until it is first applied.
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    operation: &str,
    gvk: (&str, &str, &str),
    now: &str,
) {
    update_managed_fields_subresource(old, new, manager, operation, None, gvk, now);
}

/// [`update_managed_fields`] for a write through a subresource: the entry
/// records `subresource` (`status`), managed fields sent in `new` are ignored,
/// and for `status` only status changes are recorded.
pub fn update_managed_fields_subresource(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    operation: &str,
    subresource: Option<&str>,
    gvk: (&str, &str, &str),
    now: &str,
) {
    if !new.is_object() {
        return;
    }
    let old = old.filter(|o| o.is_object());
    let kind = KindInfo::new(gvk, subresource);
    let from_old = || old.map(decode_entries).unwrap_or_default();
    let mut entries = if subresource.is_some() {
        from_old()
    } else {
        match decode(new) {
            Decoded::Reset => Vec::new(),
            Decoded::Entries(entries) if !entries.is_empty() => entries,
            _ => from_old(),
        }
    };
    if entries.is_empty() && old.is_some() {
        encode_entries(new, &entries);
        return;
    }
    let old_obj = old.map(without_managed_fields);
    let new_obj = without_managed_fields(new);
    let who = Who {
        manager,
        operation,
        api_version: &kind.api_version,
        subresource: kind.subresource,
    };
    record_update(old_obj.as_ref(), &new_obj, &mut entries, &who, &kind, now);
    cap_update_entries(&mut entries);
    encode_entries(new, &entries);
}

// ---------------------------------------------------------------------------
// The two operations.

/// Who is writing: the identity of a managed fields entry. Appliers are
/// identified without their `apiVersion`, updaters with it (upstream's
/// manager identifier).
struct Who<'a> {
    manager: &'a str,
    operation: &'a str,
    api_version: &'a str,
    subresource: &'a str,
}

/// What the kind being written implies.
struct KindInfo<'a> {
    kind: &'a str,
    api_version: String,
    ty: Ty,
    /// Fields the write ignores (upstream's reset fields).
    ignored: FieldSet,
    subresource: &'a str,
}

impl<'a> KindInfo<'a> {
    fn new((group, version, kind): (&'a str, &'a str, &'a str), sub: Option<&'a str>) -> Self {
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        let has_status = RESOURCES.iter().any(|r| {
            r.group == group && r.version == version && r.kind == kind && r.subresources.status
        });
        let mut ignored = FieldSet::default();
        match sub {
            None if has_status => ignored.insert(&[Pe::Field("status".into())]),
            Some("status") => ignored.insert(&[Pe::Field("spec".into())]),
            _ => {}
        }
        KindInfo {
            kind,
            api_version,
            ty: root_ty(group, version, kind),
            ignored,
            subresource: sub.unwrap_or(""),
        }
    }
}

/// A conflict before it is made public: with its path, for set arithmetic.
type RawConflict = (Conflict, Vec<Pe>);

fn public_conflicts(raw: Vec<RawConflict>) -> Vec<Conflict> {
    let mut out: Vec<Conflict> = raw.into_iter().map(|(c, _)| c).collect();
    out.sort_by_cached_key(Conflict::manager_key);
    out
}

/// One apply, ready to run (with or without force).
struct ApplyInput<'a> {
    /// The live object without its managed fields (`{}` on create).
    live_obj: &'a Value,
    live_exists: bool,
    /// The configuration without ignored fields.
    cfg: &'a Value,
    /// The fields the configuration sets.
    new_set: &'a FieldSet,
    who: &'a Who<'a>,
    kind: &'a KindInfo<'a>,
}

impl ApplyInput<'_> {
    /// Structured-merge-diff's `Apply`: merge, prune, then hand ownership over.
    fn run(
        &self,
        mut entries: Vec<Entry>,
        force: bool,
    ) -> Result<(Value, Vec<Entry>), Vec<RawConflict>> {
        let ApplyInput {
            live_obj,
            live_exists,
            cfg,
            new_set,
            who,
            kind,
        } = *self;
        let mut merged = merge(Some(live_obj), cfg, kind.ty);
        if live_exists {
            restore_system_metadata(&mut merged, live_obj);
        }
        let last = match entries.iter_mut().find(|e| e.is(who)) {
            Some(entry) => {
                entry.api_version = who.api_version.to_string();
                Some(std::mem::replace(&mut entry.set, new_set.clone()))
            }
            None => {
                entries.push(Entry::new(who, new_set.clone(), None));
                None
            }
        };
        if let Some(last) = last.filter(|s| !s.is_empty()) {
            prune(&mut merged, &entries, &last, kind.ty);
        }

        let cmp = compare(live_obj, &merged, kind.ty, false).without(&kind.ignored);
        let changed = cmp.added.union(&cmp.modified);
        let mut conflicts = Vec::new();
        let mut taken = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            if entry.is(who) {
                continue;
            }
            let owned = entry.set.intersection(&changed);
            if owned.is_empty() {
                continue;
            }
            for path in owned.leaves() {
                conflicts.push((entry.conflict(&path), path));
            }
            taken.push((i, owned));
        }
        if !force && !conflicts.is_empty() {
            return Err(conflicts);
        }
        for (i, owned) in taken {
            entries[i].set = entries[i].set.difference(&owned);
        }
        for entry in entries.iter_mut().filter(|e| !e.is(who)) {
            entry.set = entry.set.difference(&cmp.removed);
        }
        entries.retain(|e| !e.set.is_empty());
        Ok((merged, entries))
    }
}

/// Structured-merge-diff's `Update` as the field manager runs it (under a
/// temporary name, then merged into the writer's entry).
fn record_update(
    old: Option<&Value>,
    new: &Value,
    entries: &mut Vec<Entry>,
    who: &Who,
    kind: &KindInfo,
    now: &str,
) {
    let empty = Value::Object(Map::new());
    let cmp = compare(old.unwrap_or(&empty), new, kind.ty, old.is_none()).without(&kind.ignored);
    let changed = cmp.added.union(&cmp.modified);
    for entry in entries.iter_mut() {
        entry.set = entry.set.difference(&changed).difference(&cmp.removed);
    }
    entries.retain(|e| !e.set.is_empty());
    let own = strip_meta(&changed);
    if own.is_empty() {
        return;
    }
    match entries.iter_mut().find(|e| e.is(who)) {
        Some(entry) => {
            entry.set = entry.set.union(&own);
            entry.api_version = who.api_version.to_string();
            entry.time = Some(now.to_string());
        }
        None => entries.push(Entry::new(who, own, Some(now.to_string()))),
    }
}

/// Remove what the applier owned before (`last`) and no longer owns, unless
/// another manager owns it.
fn prune(merged: &mut Value, entries: &[Entry], last: &FieldSet, ty: Ty) {
    let managed = entries
        .iter()
        .fold(FieldSet::default(), |acc, e| acc.union(&e.set));
    let present = ensure_named_fields(&lenient_set(merged, ty), ty);
    let to_remove = present
        .intersection(&ensure_named_fields(last, ty))
        .difference(&ensure_named_fields(&managed, ty));
    remove_items(merged, &to_remove, ty);
}

/// A non-empty string field.
fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Upstream's checks of an apply patch before it is merged.
fn validate_config(
    config: &Value,
    kind: &KindInfo,
    live: Option<&Value>,
) -> Result<(), ApplyError> {
    let invalid = |m: String| Err(ApplyError::Invalid(m));
    let Some(obj) = config.as_object() else {
        return invalid(format!(
            "the apply configuration must be a JSON object, got {}",
            kind_name(config)
        ));
    };
    let Some(api_version) = text(obj.get("apiVersion")) else {
        return invalid("Object 'apiVersion' is missing in the apply configuration".into());
    };
    let Some(config_kind) = text(obj.get("kind")) else {
        return invalid("Object 'Kind' is missing in the apply configuration".into());
    };
    if api_version != kind.api_version || config_kind != kind.kind {
        return invalid(format!(
            "invalid object type: {api_version}, Kind={config_kind}"
        ));
    }
    let meta = obj.get("metadata");
    let Some(name) = text(meta.and_then(|m| m.get("name"))) else {
        return invalid("metadata.name: Required value: name is required".into());
    };
    if meta
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|m| !m.is_null())
    {
        return invalid("metadata.managedFields must be nil".into());
    }
    if let Some(live_name) = text(
        live.and_then(|l| l.get("metadata"))
            .and_then(|m| m.get("name")),
    ) {
        if live_name != name {
            return invalid(format!(
                "the name of the object ({name}) does not match the name on the URL ({live_name})"
            ));
        }
    }
    Ok(())
}

/// The fields of the live object a client-side apply by `kubectl` set and that
/// still hold the values it set (upstream's `allowedConflictsFromLastApplied`).
fn allowed_by_last_applied(live_obj: &Value, ty: Ty) -> Option<FieldSet> {
    let text = live_obj
        .get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())?;
    let last: Value = serde_json::from_str(text).ok()?;
    if !last.is_object() {
        return None;
    }
    let cmp = compare(&last, live_obj, ty, false);
    Some(
        lenient_set(&last, ty)
            .difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed),
    )
}

/// Keep the client-side apply annotation in step with server-side applies by
/// `kubectl`, when the object has one.
fn sync_last_applied(merged: &mut Value, config: &Value) {
    let Some(annotations) = merged
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let has = annotations
        .get(LAST_APPLIED_ANNOTATION)
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has {
        return;
    }
    annotations.insert(
        LAST_APPLIED_ANNOTATION.to_string(),
        Value::String(last_applied_value(config)),
    );
    let size: usize = annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if size > ANNOTATIONS_SIZE_LIMIT {
        annotations.shift_remove(LAST_APPLIED_ANNOTATION);
    }
}

/// The `last-applied-configuration` value for `config`, encoded as Go's
/// unstructured JSON encoder does (sorted keys, HTML-escaped, final newline).
pub fn last_applied_value(config: &Value) -> String {
    let mut config = config.clone();
    if let Some(annotations) = config
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.shift_remove(LAST_APPLIED_ANNOTATION);
    }
    let mut out = String::new();
    for c in sorted_keys(&config).to_string().chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

fn sorted_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted_keys(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}

fn restore_system_metadata(merged: &mut Value, live: &Value) {
    let live_meta = live.get("metadata").and_then(Value::as_object);
    let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for field in SYSTEM_METADATA {
        match live_meta.and_then(|m| m.get(*field)) {
            Some(v) => {
                meta.insert(field.to_string(), v.clone());
            }
            None => {
                meta.shift_remove(*field);
            }
        }
    }
}

fn without_managed_fields(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("managedFields");
    }
    obj
}

fn strip_meta(set: &FieldSet) -> FieldSet {
    let mut strip = FieldSet::default();
    for top in ["apiVersion", "kind", "metadata"] {
        strip.insert(&[Pe::Field(top.into())]);
    }
    for field in STRIPPED_METADATA {
        strip.insert(&[Pe::Field("metadata".into()), Pe::Field((*field).into())]);
    }
    set.difference(&strip)
}

// ---------------------------------------------------------------------------
// Managed fields entries.

#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    subresource: String,
    time: Option<String>,
    set: FieldSet,
}

impl Entry {
    fn new(who: &Who, set: FieldSet, time: Option<String>) -> Self {
        Entry {
            manager: who.manager.to_string(),
            operation: who.operation.to_string(),
            api_version: who.api_version.to_string(),
            subresource: who.subresource.to_string(),
            time,
            set,
        }
    }

    fn is(&self, who: &Who) -> bool {
        self.manager == who.manager
            && self.operation == who.operation
            && self.subresource == who.subresource
            && (self.operation == OPERATION_APPLY || self.api_version == who.api_version)
    }

    fn conflict(&self, path: &[Pe]) -> Conflict {
        Conflict {
            manager: self.manager.clone(),
            operation: self.operation.clone(),
            api_version: self.api_version.clone(),
            subresource: self.subresource.clone(),
            field_path: path_string(path),
        }
    }

    fn encode(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), Value::String(self.manager.clone()));
        m.insert("operation".into(), Value::String(self.operation.clone()));
        m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            m.insert("time".into(), Value::String(time.clone()));
        }
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), self.set.to_fields_v1());
        if !self.subresource.is_empty() {
            m.insert(
                "subresource".into(),
                Value::String(self.subresource.clone()),
            );
        }
        Value::Object(m)
    }

    fn decode(v: &Value) -> Option<Entry> {
        let m = v.as_object()?;
        let text = |k: &str| match m.get(k) {
            None | Some(Value::Null) => Some(String::new()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => None,
        };
        let set = match (m.get("fieldsType"), m.get("fieldsV1")) {
            (_, None | Some(Value::Null)) => FieldSet::default(),
            (None | Some(Value::Null), Some(f)) => FieldSet::from_fields_v1(f)?,
            (Some(t), Some(f)) if t == "FieldsV1" => FieldSet::from_fields_v1(f)?,
            _ => return None,
        };
        Some(Entry {
            manager: text("manager")?,
            operation: text("operation")?,
            api_version: text("apiVersion")?,
            subresource: text("subresource")?,
            time: Some(text("time")?).filter(|t| !t.is_empty()),
            set,
        })
    }

    /// Upstream's manager identifier, for ordering.
    fn identifier(&self) -> String {
        self.conflict(&[]).manager_key()
    }
}

enum Decoded {
    Absent,
    /// `managedFields: [{}]`: the client asks for them to be cleared.
    Reset,
    Entries(Vec<Entry>),
}

fn decode(obj: &Value) -> Decoded {
    match obj.get("metadata").and_then(|m| m.get("managedFields")) {
        Some(Value::Array(items)) => {
            if let [Value::Object(only)] = items.as_slice() {
                if only.is_empty() {
                    return Decoded::Reset;
                }
            }
            Decoded::Entries(merge_duplicate_entries(
                items.iter().filter_map(Entry::decode).collect(),
            ))
        }
        _ => Decoded::Absent,
    }
}

fn decode_entries(obj: &Value) -> Vec<Entry> {
    match decode(obj) {
        Decoded::Entries(entries) => entries,
        Decoded::Absent | Decoded::Reset => Vec::new(),
    }
}

fn merge_duplicate_entries(entries: Vec<Entry>) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for entry in entries {
        let who = Who {
            manager: &entry.manager,
            operation: &entry.operation,
            api_version: &entry.api_version,
            subresource: &entry.subresource,
        };
        match out.iter().position(|e| e.is(&who)) {
            Some(i) => out[i].set = out[i].set.union(&entry.set),
            None => out.push(entry),
        }
    }
    out
}

/// Write `entries` into `obj.metadata.managedFields` in upstream's order
/// (operation, time, manager, apiVersion, subresource); no entries, no field.
fn encode_entries(obj: &mut Value, entries: &[Entry]) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        if let Some(meta) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.shift_remove("managedFields");
        }
        return;
    }
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let encoded = Value::Array(sorted.iter().map(|e| e.encode()).collect());
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("managedFields".into(), encoded);
    }
}

/// Merge the oldest `Update` entries into `ancient-changes` until at most
/// ten are left (upstream's `capManagersManager`).
fn cap_update_entries(entries: &mut Vec<Entry>) {
    let mut updaters: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation != OPERATION_APPLY)
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|&a, &b| {
        (&entries[a].time, entries[a].identifier())
            .cmp(&(&entries[b].time, entries[b].identifier()))
    });
    let mut first_by_version: BTreeMap<String, usize> = BTreeMap::new();
    let mut removed = BTreeSet::new();
    let mut count = updaters.len();
    for &i in &updaters {
        if count <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        let Some(&first) = first_by_version.get(&version) else {
            first_by_version.insert(version, i);
            continue;
        };
        let bucket = (0..entries.len()).find(|&b| {
            !removed.contains(&b)
                && entries[b].manager == ANCIENT_CHANGES
                && entries[b].operation == OPERATION_UPDATE
                && entries[b].subresource.is_empty()
                && entries[b].api_version == version
        });
        let bucket = match bucket {
            Some(b) => b,
            None => {
                entries[first].manager = ANCIENT_CHANGES.to_string();
                entries[first].operation = OPERATION_UPDATE.to_string();
                entries[first].subresource.clear();
                first
            }
        };
        if bucket == i {
            continue;
        }
        let set = entries[i].set.clone();
        entries[bucket].set = entries[bucket].set.union(&set);
        entries[bucket].time = entries[i].time.clone();
        removed.insert(i);
        count -= 1;
    }
    let mut index = 0;
    entries.retain(|_| {
        let keep = !removed.contains(&index);
        index += 1;
        keep
    });
}

// ---------------------------------------------------------------------------
// Field paths and field sets.

/// One step of a field path.
#[derive(Debug, Clone)]
enum Pe {
    /// A struct field or map key: `f:name`.
    Field(String),
    /// An item of a `map` list by its keys, sorted by name: `k:{"name":"web"}`.
    Key(Vec<(String, Value)>),
    /// An item of a `set` list: `v:"value"`.
    Value(Value),
    /// An item of a list by position (only for items lacking their keys): `i:0`.
    Index(usize),
}

impl Pe {
    fn rank(&self) -> u8 {
        match self {
            Pe::Field(_) => 0,
            Pe::Key(_) => 1,
            Pe::Value(_) => 2,
            Pe::Index(_) => 3,
        }
    }

    fn fields_v1_key(&self) -> String {
        match self {
            Pe::Field(name) => format!("f:{name}"),
            Pe::Key(fields) => {
                let m: Map<String, Value> = fields.iter().cloned().collect();
                format!("k:{}", Value::Object(m))
            }
            Pe::Value(v) => format!("v:{v}"),
            Pe::Index(i) => format!("i:{i}"),
        }
    }

    fn parse(key: &str) -> Option<Pe> {
        let (prefix, rest) = key.split_at_checked(2)?;
        match prefix {
            "f:" => Some(Pe::Field(rest.to_string())),
            "k:" => match serde_json::from_str(rest).ok()? {
                Value::Object(m) => {
                    let mut fields: Vec<(String, Value)> = m.into_iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    Some(Pe::Key(fields))
                }
                _ => None,
            },
            "v:" => serde_json::from_str(rest).ok().map(Pe::Value),
            "i:" => rest.parse().ok().map(Pe::Index),
            _ => None,
        }
    }
}

impl fmt::Display for Pe {
    /// Upstream's `PathElement.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pe::Field(name) => write!(f, ".{name}"),
            Pe::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            Pe::Value(v) => write!(f, "[={v}]"),
            Pe::Index(i) => write!(f, "[{i}]"),
        }
    }
}

fn path_string(path: &[Pe]) -> String {
    path.iter().map(Pe::to_string).collect()
}

impl Ord for Pe {
    /// Upstream's order: fields, then keys, then values, then indices.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Pe::Field(a), Pe::Field(b)) => a.cmp(b),
            (Pe::Key(a), Pe::Key(b)) => {
                for ((ka, va), (kb, vb)) in a.iter().zip(b) {
                    let c = ka.cmp(kb).then_with(|| cmp_values(va, vb));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Pe::Value(a), Pe::Value(b)) => cmp_values(a, b),
            (Pe::Index(a), Pe::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Pe {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pe {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pe {}

/// Upstream's total order of values: numbers, strings, booleans, lists,
/// maps, null.
fn cmp_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => {
                let (f, g) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                f.partial_cmp(&g).unwrap_or(Ordering::Equal)
            }
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = cmp_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xk: Vec<&String> = x.keys().collect();
            let mut yk: Vec<&String> = y.keys().collect();
            xk.sort();
            yk.sort();
            for (p, q) in xk.iter().zip(&yk) {
                let c = p.cmp(q).then_with(|| cmp_values(&x[*p], &y[*q]));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xk.len().cmp(&yk.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    cmp_values(a, b) == Ordering::Equal
}

/// A set of field paths, as a tree: `members` are paths ending here,
/// `children` continue. Kept normalized: no empty child.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FieldSet {
    members: BTreeSet<Pe>,
    children: BTreeMap<Pe, FieldSet>,
}

impl FieldSet {
    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(FieldSet::is_empty)
    }

    /// Add a path; the empty path (the whole object) is never tracked.
    fn insert(&mut self, path: &[Pe]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    fn has(&self, path: &[Pe]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            if !merged.is_empty() {
                out.children.insert(pe.clone(), merged);
            }
        }
        out
    }

    fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            members: self.members.difference(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(pe.clone(), rest);
            }
        }
        out
    }

    fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            members: self.members.intersection(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(pe.clone(), both);
                }
            }
        }
        out
    }

    /// This set without any path equal to or under a member of `ignored`.
    fn without(&self, ignored: &FieldSet) -> FieldSet {
        if ignored.is_empty() {
            return self.clone();
        }
        let mut out = FieldSet {
            members: self.members.difference(&ignored.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            if ignored.members.contains(pe) {
                continue;
            }
            let rest = match ignored.children.get(pe) {
                Some(sub) => child.without(sub),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(pe.clone(), rest);
            }
        }
        out
    }

    /// Every member path: this level's members first, then each child's.
    fn leaves(&self) -> Vec<Vec<Pe>> {
        fn collect(set: &FieldSet, prefix: &mut Vec<Pe>, out: &mut Vec<Vec<Pe>>) {
            for m in &set.members {
                let mut path = prefix.clone();
                path.push(m.clone());
                out.push(path);
            }
            for (pe, child) in &set.children {
                prefix.push(pe.clone());
                collect(child, prefix, out);
                prefix.pop();
            }
        }
        let mut out = Vec::new();
        collect(self, &mut Vec::new(), &mut out);
        out
    }

    fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        let keys: BTreeSet<&Pe> = self.members.iter().chain(self.children.keys()).collect();
        for pe in keys {
            let mut inner = Map::new();
            if let Some(child) = self.children.get(pe).filter(|c| !c.is_empty()) {
                if self.members.contains(pe) {
                    inner.insert(".".into(), Value::Object(Map::new()));
                }
                if let Value::Object(m) = child.to_fields_v1() {
                    inner.extend(m);
                }
            }
            out.insert(pe.fields_v1_key(), Value::Object(inner));
        }
        Value::Object(out)
    }

    fn from_fields_v1(v: &Value) -> Option<FieldSet> {
        let mut out = FieldSet::default();
        for (key, child) in v.as_object()? {
            if key == "." {
                continue;
            }
            let pe = Pe::parse(key)?;
            let child_map = child.as_object()?;
            if child_map.is_empty() || child_map.contains_key(".") {
                out.members.insert(pe.clone());
            }
            let sub = FieldSet::from_fields_v1(child)?;
            if !sub.is_empty() {
                out.children.insert(pe, sub);
            }
        }
        Some(out)
    }
}

/// Upstream's `EnsureNamedFieldsAreMembers`: struct fields with owned
/// children count as owned themselves (so pruning can remove them whole).
fn ensure_named_fields(set: &FieldSet, ty: Ty) -> FieldSet {
    let mut out = FieldSet {
        members: set.members.clone(),
        children: BTreeMap::new(),
    };
    for (pe, child) in &set.children {
        let child_ty = match pe {
            Pe::Field(name) => {
                let (t, declared) = ty.field(name);
                if declared {
                    out.members.insert(pe.clone());
                }
                t
            }
            _ => ty.elem(),
        };
        out.children
            .insert(pe.clone(), ensure_named_fields(child, child_ty));
    }
    out
}

// ---------------------------------------------------------------------------
// Types, from the schemas.

/// How a node merges and is owned.
#[derive(Debug, Clone, Copy)]
enum Ty {
    /// No schema: maps are granular, lists atomic, everything else a leaf.
    Deduced,
    /// The root of a kind without a schema: deduced, except for the object
    /// metadata every kind shares.
    DeducedRoot,
    /// Replaced whole, owned as one field.
    Atomic,
    Scalar(ScalarKind),
    /// A struct: the definition name.
    Struct(&'static str),
    /// A map (`additionalProperties`): the element schema.
    Map(&'static Value),
    /// A list: the item schema and how items are identified.
    List(&'static Value, ListKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScalarKind {
    String,
    Number,
    Boolean,
    /// int-or-string, quantities.
    Any,
}

#[derive(Debug, Clone, Copy)]
enum ListKind {
    Atomic,
    Set,
    Map(&'static [&'static str]),
}

static NULL: Value = Value::Null;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn defs() -> &'static Map<String, Value> {
    schema::definitions(Dialect::Swagger2)
}

fn root_ty(group: &str, version: &str, kind: &str) -> Ty {
    schema::definition_name(group, version, kind).map_or(Ty::DeducedRoot, |name| {
        definition_ty(&name, Ty::DeducedRoot)
    })
}

fn definition_ty(name: &str, otherwise: Ty) -> Ty {
    defs()
        .get_key_value(name)
        .map_or(otherwise, |(name, _)| Ty::Struct(name.as_str()))
}

fn resolve(s: &'static Value, meta: Option<PatchMeta>, atomic_map: bool) -> Ty {
    match schema::referenced(s) {
        Some(name) if ATOMIC_STRUCTS.contains(&name) => Ty::Atomic,
        Some(name) => match defs().get_key_value(name) {
            Some((name, def)) => resolve_body(def, Some(name.as_str()), meta, atomic_map),
            None => Ty::Deduced,
        },
        None => resolve_body(s, None, meta, atomic_map),
    }
}

fn resolve_body(
    s: &'static Value,
    name: Option<&'static str>,
    meta: Option<PatchMeta>,
    atomic_map: bool,
) -> Ty {
    if s.get("properties").is_some() {
        return name.map_or(Ty::Deduced, Ty::Struct);
    }
    if s.get("x-kubernetes-int-or-string").is_some() {
        return Ty::Scalar(ScalarKind::Any);
    }
    match s.get("type").and_then(Value::as_str) {
        Some("array") => {
            let kind = match meta.and_then(|m| m.list_type) {
                Some("map") if meta.is_some_and(|m| !m.list_map_keys.is_empty()) => {
                    ListKind::Map(meta.map_or(&[], |m| m.list_map_keys))
                }
                Some("set") => ListKind::Set,
                _ => ListKind::Atomic,
            };
            Ty::List(s.get("items").unwrap_or(&NULL), kind)
        }
        Some("object") if atomic_map => Ty::Atomic,
        Some("object") => match s.get("additionalProperties") {
            Some(ap) if ap.is_object() => Ty::Map(ap),
            _ => Ty::Deduced,
        },
        Some("string") => Ty::Scalar(ScalarKind::String),
        Some("integer" | "number") => Ty::Scalar(ScalarKind::Number),
        Some("boolean") => Ty::Scalar(ScalarKind::Boolean),
        _ => Ty::Atomic,
    }
}

impl Ty {
    /// The type of a field or map value, and whether it is a declared struct
    /// field.
    fn field(self, name: &str) -> (Ty, bool) {
        match self {
            Ty::Struct(def) => match schema::property(defs(), def, name) {
                Some((prop, _)) => {
                    let meta = patch_meta::lookup(def, name);
                    let atomic_map = ATOMIC_MAPS.iter().any(|(d, f)| *d == def && *f == name);
                    (resolve(prop, meta, atomic_map), true)
                }
                None => (Ty::Deduced, false),
            },
            Ty::Map(elem) => (resolve(elem, None, false), false),
            Ty::Deduced => (Ty::Deduced, false),
            Ty::DeducedRoot => match name {
                "metadata" => (definition_ty(OBJECT_META, Ty::Deduced), true),
                "apiVersion" | "kind" => (Ty::Scalar(ScalarKind::String), true),
                _ => (Ty::Deduced, false),
            },
            _ => (Ty::Atomic, false),
        }
    }

    /// The type of a list item.
    fn elem(self) -> Ty {
        match self {
            Ty::List(items, _) => resolve(items, None, false),
            Ty::Deduced => Ty::Deduced,
            _ => Ty::Atomic,
        }
    }

    /// Whether a struct's schema lists `field` as required (Go serializes
    /// such fields even when empty).
    fn requires(self, field: &str) -> bool {
        let Ty::Struct(def) = self else {
            return false;
        };
        defs()
            .get(def)
            .and_then(|d| d.get("required"))
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|f| f == field))
    }

    fn is_struct(self) -> bool {
        matches!(self, Ty::Struct(_))
    }

    fn is_mapping(self) -> bool {
        matches!(
            self,
            Ty::Struct(_) | Ty::Map(_) | Ty::Deduced | Ty::DeducedRoot
        )
    }

    /// The item kind of a list that merges item by item.
    fn granular_list(self) -> Option<ListKind> {
        match self {
            Ty::List(_, ListKind::Atomic) => None,
            Ty::List(_, kind) => Some(kind),
            _ => None,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Ty::Struct(_) | Ty::Map(_) | Ty::Deduced | Ty::DeducedRoot => "map",
            Ty::List(..) => "list",
            Ty::Scalar(ScalarKind::String) => "string",
            Ty::Scalar(ScalarKind::Number) => "numeric (int or float)",
            Ty::Scalar(ScalarKind::Boolean) => "boolean",
            Ty::Scalar(ScalarKind::Any) | Ty::Atomic => "scalar",
        }
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// Default values of list map keys an item may omit (upstream's schema
/// defaults: `protocol` of container and service ports is `TCP`).
fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| Value::String("TCP".into()))
}

/// The path element of a list item. `strict` (apply configurations) rejects
/// items that cannot be identified; otherwise they fall back to their index.
fn item_pe(kind: ListKind, index: usize, item: &Value, strict: bool) -> Result<Pe, String> {
    match kind {
        ListKind::Map(keys) => {
            let Some(obj) = item.as_object() else {
                if strict {
                    return Err(if item.is_null() {
                        "associative list with keys may not have a null element".into()
                    } else {
                        "associative list with keys may not have non-map elements".into()
                    });
                }
                return Ok(Pe::Index(index));
            };
            let mut fields = Vec::new();
            for key in keys {
                match obj.get(*key).cloned().or_else(|| key_default(key)) {
                    Some(v) => fields.push((key.to_string(), v)),
                    None if strict => {
                        return Err(format!(
                            "associative list with keys has an element that omits key field \
                             {key:?} (and doesn't have default value)"
                        ))
                    }
                    None => {}
                }
            }
            if fields.is_empty() {
                return Ok(Pe::Index(index));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(Pe::Key(fields))
        }
        ListKind::Set => {
            if strict && (item.is_object() || item.is_array()) {
                return Err(
                    "associative list without keys has an element that's a map type".into(),
                );
            }
            Ok(Pe::Value(item.clone()))
        }
        ListKind::Atomic => Ok(Pe::Index(index)),
    }
}

/// Items with their path elements, first occurrence of each only.
fn index_items(items: &[Value], kind: ListKind) -> Vec<(Pe, &Value)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let pe = item_pe(kind, i, item, false).unwrap_or(Pe::Index(i));
        if seen.insert(pe.clone()) {
            out.push((pe, item));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Walks over values.

/// Every field set in `v` (upstream's `ToFieldSet`): leaves, list items and
/// map keys; structs only where empty or null. `strict` validates `v` against
/// its type, as an apply configuration must be.
fn field_set(v: &Value, ty: Ty, strict: bool) -> Result<FieldSet, String> {
    let mut set = FieldSet::default();
    walk_set(v, ty, &mut Vec::new(), &mut set, strict)?;
    Ok(set)
}

fn lenient_set(v: &Value, ty: Ty) -> FieldSet {
    field_set(v, ty, false).unwrap_or_default()
}

fn walk_set(
    v: &Value,
    ty: Ty,
    path: &mut Vec<Pe>,
    set: &mut FieldSet,
    strict: bool,
) -> Result<(), String> {
    if v.is_null() {
        set.insert(path);
        return Ok(());
    }
    match (ty, v) {
        (ty, Value::Object(m)) if ty.is_mapping() => {
            for (key, child) in m {
                let (child_ty, declared) = ty.field(key);
                path.push(Pe::Field(key.clone()));
                if strict && ty.is_struct() && !declared {
                    return Err(format!(
                        "{}: field not declared in schema",
                        path_string(path)
                    ));
                }
                walk_set(child, child_ty, path, set, strict)?;
                let empty_map = child.as_object().is_some_and(Map::is_empty);
                if child.is_null() || empty_map || !declared {
                    set.insert(path);
                }
                path.pop();
            }
        }
        (Ty::List(_, ListKind::Atomic), Value::Array(_)) => set.insert(path),
        (Ty::List(_, kind), Value::Array(items)) => {
            let elem = ty.elem();
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let pe = item_pe(kind, i, item, strict)
                    .map_err(|e| format!("{}: element {i}: {e}", path_string(path)))?;
                if !seen.insert(pe.clone()) {
                    if strict {
                        return Err(format!(
                            "{}: duplicate entries for key {pe}",
                            path_string(path)
                        ));
                    }
                    continue;
                }
                path.push(pe);
                walk_set(item, elem, path, set, strict)?;
                set.insert(path);
                path.pop();
            }
        }
        (Ty::Scalar(kind), v) => {
            let ok = match kind {
                ScalarKind::String => v.is_string(),
                ScalarKind::Number => v.is_number(),
                ScalarKind::Boolean => v.is_boolean(),
                ScalarKind::Any => !v.is_object() && !v.is_array(),
            };
            if strict && !ok {
                return Err(format!(
                    "{}: expected {}, got {}",
                    path_string(path),
                    ty.expected(),
                    kind_name(v)
                ));
            }
            set.insert(path);
        }
        (Ty::Atomic | Ty::Deduced, _) => set.insert(path),
        (ty, v) => {
            if strict {
                return Err(format!(
                    "{}: expected {}, got {}",
                    path_string(path),
                    ty.expected(),
                    kind_name(v)
                ));
            }
            set.insert(path);
        }
    }
    Ok(())
}

/// Merge an apply configuration into a live value (upstream's `Merge`):
/// the configuration wins on leaves; structs and maps merge key by key;
/// granular lists merge item by item, keeping the live order for untouched
/// items and the configuration's order for the ones it lists. A null in the
/// configuration removes the field.
fn merge(live: Option<&Value>, cfg: &Value, ty: Ty) -> Value {
    match cfg {
        Value::Object(cm) if ty.is_mapping() => {
            let mut out = match live {
                Some(Value::Object(lm)) => lm.clone(),
                _ => Map::new(),
            };
            for (key, cv) in cm {
                if cv.is_null() {
                    out.shift_remove(key);
                    continue;
                }
                let merged = merge(out.get(key), cv, ty.field(key).0);
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        Value::Array(ca) => match ty.granular_list() {
            Some(kind) => {
                let la = match live {
                    Some(Value::Array(la)) => la.as_slice(),
                    _ => &[],
                };
                Value::Array(merge_list(la, ca, kind, ty.elem()))
            }
            None => cfg.clone(),
        },
        _ => cfg.clone(),
    }
}

/// Upstream's list merge, which interleaves live-only items with the
/// configuration's items while keeping both relative orders.
fn merge_list(live: &[Value], cfg: &[Value], kind: ListKind, elem: Ty) -> Vec<Value> {
    let pe_of = |i: usize, item: &Value| item_pe(kind, i, item, false).unwrap_or(Pe::Index(i));
    let lhs: Vec<Pe> = live.iter().enumerate().map(|(i, v)| pe_of(i, v)).collect();
    let rhs: Vec<Pe> = cfg.iter().enumerate().map(|(i, v)| pe_of(i, v)).collect();
    let mut observed_l: BTreeMap<&Pe, usize> = BTreeMap::new();
    for (i, pe) in lhs.iter().enumerate() {
        observed_l.entry(pe).or_insert(i);
    }
    let mut observed_r: BTreeMap<&Pe, usize> = BTreeMap::new();
    for (i, pe) in rhs.iter().enumerate() {
        observed_r.entry(pe).or_insert(i);
    }
    let mut shared: VecDeque<&Pe> = rhs
        .iter()
        .filter(|pe| observed_l.contains_key(pe))
        .collect();
    let mut next_shared = shared.pop_front();
    let mut merged_r: BTreeSet<&Pe> = BTreeSet::new();
    let mut out = Vec::with_capacity(live.len().max(cfg.len()));
    let (mut li, mut ri) = (0, 0);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len() && ri < rhs.len() {
            let pe = &lhs[li];
            if *pe == rhs[ri] {
                merged_r.insert(pe);
                let l = observed_l.get(pe).map(|&i| &live[i]);
                out.push(merge(l, &cfg[ri], elem));
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if observed_r.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < lhs.len() {
            let pe = &lhs[li];
            if !observed_r.contains_key(pe) {
                out.push(live[li].clone());
                li += 1;
                continue;
            }
            if merged_r.contains(pe) {
                li += 1;
                continue;
            }
        }
        if ri < rhs.len() {
            let pe = &rhs[ri];
            if merged_r.insert(pe) {
                let l = observed_l.get(pe).map(|&i| &live[i]);
                out.push(merge(l, &cfg[ri], elem));
            }
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.pop_front();
            }
        }
    }
    out
}

/// What changed between two values (upstream's `Compare`).
#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Comparison {
    fn without(self, ignored: &FieldSet) -> Comparison {
        Comparison {
            added: self.added.without(ignored),
            modified: self.modified.without(ignored),
            removed: self.removed.without(ignored),
        }
    }
}

/// Compare two objects. `create` is the comparison against a missing object:
/// struct fields and required fields then do not count as added themselves
/// (upstream compares against a zero Go object, where those already exist,
/// empty or null).
fn compare(old: &Value, new: &Value, ty: Ty, create: bool) -> Comparison {
    let mut c = Comparison::default();
    compare_node(
        Some(old),
        Some(new),
        ty,
        false,
        create,
        &mut Vec::new(),
        &mut c,
    );
    c
}

/// The shape of a node on both sides: a leaf, or a container to descend.
enum Shape<'a> {
    Leaf,
    Object(
        Option<&'a Map<String, Value>>,
        Option<&'a Map<String, Value>>,
    ),
    List(ListKind, Option<&'a Vec<Value>>, Option<&'a Vec<Value>>),
}

/// `Some(None)` for a missing or null side, `Some(Some(_))` for the
/// expected container, `None` for a mismatch.
fn side<'a, T: ?Sized>(
    v: Option<&'a Value>,
    f: fn(&'a Value) -> Option<&'a T>,
) -> Option<Option<&'a T>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(v) => f(v).map(Some),
    }
}

fn shape<'a>(ty: Ty, l: Option<&'a Value>, r: Option<&'a Value>) -> Shape<'a> {
    if ty.is_mapping() {
        let (Some(lm), Some(rm)) = (side(l, Value::as_object), side(r, Value::as_object)) else {
            return Shape::Leaf;
        };
        if lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty) {
            return Shape::Leaf;
        }
        return Shape::Object(lm, rm);
    }
    if let Some(kind) = ty.granular_list() {
        let (Some(la), Some(ra)) = (side(l, Value::as_array), side(r, Value::as_array)) else {
            return Shape::Leaf;
        };
        if la.is_none_or(Vec::is_empty) && ra.is_none_or(Vec::is_empty) {
            return Shape::Leaf;
        }
        return Shape::List(kind, la, ra);
    }
    Shape::Leaf
}

fn compare_node(
    l: Option<&Value>,
    r: Option<&Value>,
    ty: Ty,
    always_there: bool,
    create: bool,
    path: &mut Vec<Pe>,
    c: &mut Comparison,
) {
    match shape(ty, l, r) {
        Shape::Leaf => {
            match (l, r) {
                (None, Some(_)) => c.added.insert(path),
                (Some(_), None) => c.removed.insert(path),
                (Some(a), Some(b)) if !values_equal(a, b) => c.modified.insert(path),
                _ => {}
            }
            return;
        }
        Shape::Object(lm, rm) => {
            let mut visit = |key: &String, lv: Option<&Value>, rv: Option<&Value>| {
                let (child_ty, declared) = ty.field(key);
                path.push(Pe::Field(key.clone()));
                let always_there = declared && (child_ty.is_struct() || ty.requires(key));
                compare_node(lv, rv, child_ty, always_there, create, path, c);
                path.pop();
            };
            for (key, lv) in lm.into_iter().flatten() {
                visit(key, Some(lv), rm.and_then(|m| m.get(key)));
            }
            for (key, rv) in rm.into_iter().flatten() {
                if !lm.is_some_and(|m| m.contains_key(key)) {
                    visit(key, None, Some(rv));
                }
            }
        }
        Shape::List(kind, la, ra) => {
            let elem = ty.elem();
            let li = index_items(la.map_or(&[], Vec::as_slice), kind);
            let ri = index_items(ra.map_or(&[], Vec::as_slice), kind);
            let rmap: BTreeMap<&Pe, &Value> = ri.iter().map(|(pe, v)| (pe, *v)).collect();
            let lset: BTreeSet<&Pe> = li.iter().map(|(pe, _)| pe).collect();
            for (pe, lv) in &li {
                path.push(pe.clone());
                compare_node(
                    Some(lv),
                    rmap.get(pe).copied(),
                    elem,
                    false,
                    create,
                    path,
                    c,
                );
                path.pop();
            }
            for (pe, rv) in &ri {
                if !lset.contains(pe) {
                    path.push(pe.clone());
                    compare_node(None, Some(rv), elem, false, create, path, c);
                    path.pop();
                }
            }
        }
    }
    if l.is_none() && !(create && always_there) {
        c.added.insert(path);
    } else if r.is_none() {
        c.removed.insert(path);
    }
}

/// Remove the members of `set` (and what is under them) from `v` (upstream's
/// `RemoveItems`); maps and lists emptied by the removal go too.
fn remove_items(v: &mut Value, set: &FieldSet, ty: Ty) {
    if set.is_empty() {
        return;
    }
    match v {
        Value::Object(m) if ty.is_mapping() => {
            m.retain(|key, _| !set.members.contains(&Pe::Field(key.clone())));
            let mut emptied = Vec::new();
            for (key, child) in m.iter_mut() {
                if let Some(sub) = set.children.get(&Pe::Field(key.clone())) {
                    let was_empty = is_empty_container(child);
                    remove_items(child, sub, ty.field(key).0);
                    if !was_empty && is_empty_container(child) {
                        emptied.push(key.clone());
                    }
                }
            }
            m.retain(|key, _| !emptied.contains(key));
        }
        Value::Array(items) => {
            let Some(kind) = ty.granular_list() else {
                return;
            };
            let elem = ty.elem();
            let mut kept = Vec::with_capacity(items.len());
            for (i, mut item) in std::mem::take(items).into_iter().enumerate() {
                let pe = item_pe(kind, i, &item, false).unwrap_or(Pe::Index(i));
                if set.members.contains(&pe) {
                    continue;
                }
                if let Some(sub) = set.children.get(&pe) {
                    remove_items(&mut item, sub, elem);
                }
                kept.push(item);
            }
            *items = kept;
        }
        _ => {}
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOY: (&str, &str, &str) = ("apps", "v1", "Deployment");
    const T1: &str = "2025-01-01T00:00:00Z";
    const T2: &str = "2025-01-01T00:01:00Z";
    const T3: &str = "2025-01-01T00:02:00Z";

    fn deployment(replicas: i64, image: &str, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [
                        {"name": "web", "image": image, "ports": [{"containerPort": 80}]}
                    ]}
                }
            }
        })
    }

    fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
        obj["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager)
    }

    /// Whether `manager`'s FieldsV1 reaches `path` (`["f:spec", "f:replicas"]`).
    fn owns(obj: &Value, manager: &str, path: &[&str]) -> bool {
        let Some(e) = entry(obj, manager) else {
            return false;
        };
        let mut node = &e["fieldsV1"];
        for step in path {
            match node.get(*step) {
                Some(next) => node = next,
                None => return false,
            }
        }
        true
    }

    fn conflicts_of(result: Result<Value, ApplyError>) -> Vec<Conflict> {
        match result {
            Err(ApplyError::Conflicts(c)) => c,
            other => panic!("expected conflicts, got {other:?}"),
        }
    }

    fn created_by(manager: &str, obj: &Value) -> Value {
        let mut obj = obj.clone();
        update_managed_fields(None, &mut obj, manager, OPERATION_UPDATE, DEPLOY, T1);
        obj
    }

    fn updated(old: &Value, new: &Value, manager: &str, now: &str) -> Value {
        let mut new = new.clone();
        update_managed_fields(Some(old), &mut new, manager, OPERATION_UPDATE, DEPLOY, now);
        new
    }

    #[test]
    fn a_create_by_apply_owns_exactly_the_applied_fields() {
        let config = deployment(2, "nginx:1", json!({"app": "web"}));
        let obj = apply(None, &config, "kubectl", false, DEPLOY, T1).unwrap();
        assert_eq!(without_managed_fields(&obj), config);
        let fields = r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#;
        let expected = json!([{
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": serde_json::from_str::<Value>(fields).unwrap(),
        }]);
        assert_eq!(obj["metadata"]["managedFields"], expected);
        assert_eq!(
            obj["metadata"]["managedFields"][0]["fieldsV1"].to_string(),
            fields
        );
    }

    #[test]
    fn a_reapply_with_a_changed_image_updates_it_without_conflict() {
        let first = apply(
            None,
            &deployment(2, "nginx:1", json!({"app": "web"})),
            "kubectl",
            false,
            DEPLOY,
            T1,
        )
        .unwrap();
        let config = deployment(2, "nginx:2", json!({"app": "web"}));
        let second = apply(Some(&first), &config, "kubectl", false, DEPLOY, T2).unwrap();
        assert_eq!(
            second["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        assert_eq!(without_managed_fields(&second), config);
        let entries = second["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["time"], T2);
    }

    #[test]
    fn a_reapply_drops_what_the_manager_no_longer_applies_but_keeps_what_others_own() {
        let labels = json!({"app": "web", "tier": "frontend"});
        let first = apply(
            None,
            &deployment(2, "nginx:1", labels),
            "kubectl",
            false,
            DEPLOY,
            T1,
        )
        .unwrap();
        // Someone else adds a label and a sidecar container with ordinary writes.
        let mut edited = first.clone();
        edited["metadata"]["labels"]["env"] = json!("prod");
        edited["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "image": "envoy"}));
        let edited = updated(&first, &edited, "kubectl-edit", T2);
        assert!(owns(
            &edited,
            "kubectl-edit",
            &["f:metadata", "f:labels", "f:env"]
        ));

        // Re-apply without `tier` (and without the sidecar, never applied).
        let config = deployment(2, "nginx:1", json!({"app": "web"}));
        let cases: &[(&str, &str, bool)] = &[
            ("the label the manager applied and dropped", "tier", false),
            ("the label it still applies", "app", true),
            ("the label another manager set", "env", true),
        ];
        let reapplied = apply(Some(&edited), &config, "kubectl", false, DEPLOY, T3).unwrap();
        for (what, label, present) in cases {
            assert_eq!(
                reapplied["metadata"]["labels"].get(*label).is_some(),
                *present,
                "{what}"
            );
        }
        let containers = reapplied["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 2, "the sidecar someone else added stays");
        assert!(!owns(
            &reapplied,
            "kubectl",
            &["f:metadata", "f:labels", "f:tier"]
        ));

        // Dropping a container the manager applied removes it.
        let mut no_web = deployment(2, "nginx:1", json!({"app": "web"}));
        no_web["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "db", "image": "postgres"}]);
        let pruned = apply(Some(&reapplied), &no_web, "kubectl", false, DEPLOY, T3).unwrap();
        let names: Vec<&Value> = pruned["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["name"])
            .collect();
        assert_eq!(names, [&json!("sidecar"), &json!("db")]);
    }

    #[test]
    fn two_appliers_conflict_on_replicas_until_one_forces() {
        let first = apply(
            None,
            &deployment(2, "nginx:1", json!({"app": "web"})),
            "kubectl",
            false,
            DEPLOY,
            T1,
        )
        .unwrap();
        let other = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 5}
        });
        let conflicts = conflicts_of(apply(Some(&first), &other, "hpa", false, DEPLOY, T2));
        assert_eq!(
            conflicts,
            [Conflict {
                manager: "kubectl".into(),
                operation: "Apply".into(),
                api_version: "apps/v1".into(),
                subresource: String::new(),
                field_path: ".spec.replicas".into(),
            }]
        );
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
        );
        let status = conflict_status(&conflicts);
        assert_eq!(status["code"], 409);
        assert_eq!(status["reason"], "Conflict");
        assert_eq!(
            status["details"]["causes"],
            json!([{"type": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".spec.replicas"}])
        );

        let forced = apply(Some(&first), &other, "hpa", true, DEPLOY, T2).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        assert!(owns(&forced, "hpa", &["f:spec", "f:replicas"]));
        assert!(!owns(&forced, "kubectl", &["f:spec", "f:replicas"]));
        assert!(owns(&forced, "kubectl", &["f:spec", "f:selector"]));
        // The first applier now conflicts in turn.
        let back = conflicts_of(apply(
            Some(&forced),
            &deployment(2, "nginx:1", json!({"app": "web"})),
            "kubectl-ci",
            false,
            DEPLOY,
            T3,
        ));
        assert!(back.iter().any(|c| c.manager == "hpa"));
    }

    #[test]
    fn equal_values_are_not_conflicts_but_different_ones_are() {
        let created = created_by(
            "kubectl-create",
            &deployment(2, "nginx:1", json!({"app": "web"})),
        );
        let cases: &[(&str, i64, &str, Option<&str>)] = &[
            ("the same values", 2, "nginx:1", None),
            (
                "a different replica count",
                3,
                "nginx:1",
                Some(".spec.replicas"),
            ),
            (
                "a different image",
                2,
                "nginx:2",
                Some(".spec.template.spec.containers[name=\"web\"].image"),
            ),
        ];
        for (what, replicas, image, conflict) in cases {
            let config = deployment(*replicas, image, json!({"app": "web"}));
            let result = apply(Some(&created), &config, "kubectl", false, DEPLOY, T2);
            match conflict {
                None => {
                    let obj = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert!(owns(&obj, "kubectl", &["f:spec", "f:replicas"]), "{what}");
                    assert!(
                        owns(&obj, "kubectl-create", &["f:spec", "f:replicas"]),
                        "{what}"
                    );
                }
                Some(path) => {
                    let conflicts = conflicts_of(result);
                    assert_eq!(conflicts.len(), 1, "{what}");
                    assert_eq!(conflicts[0].field_path, *path, "{what}");
                    assert_eq!(
                        conflicts[0].cause_message(),
                        "conflict with \"kubectl-create\" using apps/v1",
                        "{what}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_update_records_what_it_changed_for_its_manager() {
        let created = created_by(
            "kubectl-create",
            &deployment(2, "nginx:1", json!({"app": "web"})),
        );
        let create_fields = &entry(&created, "kubectl-create").unwrap()["fieldsV1"];
        assert_eq!(
            create_fields["f:metadata"],
            json!({"f:labels": {".": {}, "f:app": {}}})
        );
        assert!(create_fields["f:spec"].get(".").is_none());

        let cases: &[(&str, &str, &str, bool)] = &[
            ("a new label is owned by the labeller", "env", "prod", false),
            (
                "a changed label is taken from its creator",
                "app",
                "api",
                true,
            ),
        ];
        for (what, key, value, creator_had_it) in cases {
            let mut new = created.clone();
            new["metadata"]["labels"][*key] = json!(value);
            let new = updated(&created, &new, "kubectl-label", T2);
            let path = ["f:metadata", "f:labels", &format!("f:{key}")];
            assert!(owns(&new, "kubectl-label", &path), "{what}");
            assert_eq!(owns(&created, "kubectl-create", &path), *creator_had_it);
            assert!(!owns(&new, "kubectl-create", &path), "{what}");
            assert!(!owns(&new, "kubectl-label", &["f:spec"]), "{what}");
            let labeller = entry(&new, "kubectl-label").unwrap();
            assert_eq!(labeller["operation"], "Update", "{what}");
            assert_eq!(labeller["time"], T2, "{what}");
        }

        // A write that changes nothing records nothing.
        let same = updated(&created, &created, "kubectl-label", T2);
        assert!(entry(&same, "kubectl-label").is_none());
        // Removing a field removes it from its owner.
        let mut removed = created.clone();
        removed["metadata"]
            .as_object_mut()
            .unwrap()
            .shift_remove("labels");
        let removed = updated(&created, &removed, "kubectl-edit", T2);
        assert!(!owns(
            &removed,
            "kubectl-create",
            &["f:metadata", "f:labels"]
        ));
    }

    #[test]
    fn fields_v1_spells_keyed_lists_and_sets_as_upstream() {
        let pod = ("", "v1", "Pod");
        let service = ("", "v1", "Service");
        type Gvk = (&'static str, &'static str, &'static str);
        let cases: &[(&str, Gvk, Value, &str)] = &[
            (
                "container ports are keyed by port and defaulted protocol",
                pod,
                json!({"spec": {"containers": [{"name": "web", "ports": [
                    {"containerPort": 80},
                    {"containerPort": 53, "protocol": "UDP"}
                ]}]}}),
                r#"{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:name":{},"f:ports":{"k:{\"containerPort\":53,\"protocol\":\"UDP\"}":{".":{},"f:containerPort":{},"f:protocol":{}},"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}"#,
            ),
            (
                "finalizers are a set",
                pod,
                json!({"metadata": {"finalizers": ["b", "a"]}}),
                r#"{"f:metadata":{"f:finalizers":{"v:\"a\"":{},"v:\"b\"":{}}}}"#,
            ),
            (
                "args are atomic and env is keyed by name",
                pod,
                json!({"spec": {"containers": [{"name": "c", "args": ["x"], "env": [{"name": "A", "value": "1"}]}]}}),
                r#"{"f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:args":{},"f:env":{"k:{\"name\":\"A\"}":{".":{},"f:name":{},"f:value":{}}},"f:name":{}}}}}"#,
            ),
            (
                "atomic selectors and empty structs are leaves",
                pod,
                json!({"spec": {"nodeSelector": {"disk": "ssd"}, "securityContext": {}, "containers": [
                    {"name": "c", "env": [{"name": "P", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}
                ]}}),
                r#"{"f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{},"f:env":{"k:{\"name\":\"P\"}":{".":{},"f:name":{},"f:valueFrom":{"f:fieldRef":{}}}},"f:name":{}}},"f:nodeSelector":{},"f:securityContext":{}}}"#,
            ),
            (
                "service ports are keyed by port and protocol",
                service,
                json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
                r#"{"f:spec":{"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{},"f:targetPort":{}}},"f:selector":{}}}"#,
            ),
        ];
        for (what, (group, version, kind), value, expected) in cases {
            let ty = root_ty(group, version, kind);
            let set = field_set(value, ty, true).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(set.to_fields_v1().to_string(), *expected, "{what}");
            let back = FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap();
            assert_eq!(back, set, "{what}: round trip");
        }
    }

    #[test]
    fn fields_v1_round_trips_every_path_element_kind() {
        let cases = [
            r#"{"f:a":{}}"#,
            r#"{"f:a":{".":{},"f:b":{}}}"#,
            r#"{"f:l":{"i:0":{},"i:10":{}}}"#,
            r#"{"f:s":{"v:1":{},"v:\"x\"":{},"v:true":{}}}"#,
            r#"{"f:m":{"k:{\"a\":1,\"b\":\"c\"}":{".":{},"f:d":{}}}}"#,
        ];
        for text in cases {
            let v: Value = serde_json::from_str(text).unwrap();
            let set = FieldSet::from_fields_v1(&v).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(set.to_fields_v1().to_string(), text);
        }
        for bad in [r#"{"x:a":{}}"#, r#"{"f:a":1}"#, r#"[]"#, r#"{"k:[1]":{}}"#] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert!(FieldSet::from_fields_v1(&v).is_none(), "{bad}");
        }
    }

    #[test]
    fn client_side_apply_migrates_to_server_side_apply_by_kubectl() {
        let config = deployment(2, "nginx:1", json!({"app": "web"}));
        let mut csa = config.clone();
        csa["metadata"]["annotations"] =
            json!({LAST_APPLIED_ANNOTATION: last_applied_value(&config)});
        let live = created_by("kubectl-client-side-apply", &csa);
        let changed = deployment(3, "nginx:1", json!({"app": "web"}));

        let cases: &[(&str, &str, bool)] = &[
            (
                "kubectl takes over what its client-side apply set",
                "kubectl",
                true,
            ),
            ("another manager conflicts", "argo", false),
        ];
        for (what, manager, ok) in cases {
            let result = apply(Some(&live), &changed, manager, false, DEPLOY, T2);
            if !*ok {
                let conflicts = conflicts_of(result);
                assert_eq!(conflicts[0].field_path, ".spec.replicas", "{what}");
                assert_eq!(
                    conflict_message(&conflicts),
                    "Apply failed with 1 conflict: conflict with \
                     \"kubectl-client-side-apply\" using apps/v1: .spec.replicas",
                    "{what}"
                );
                continue;
            }
            let obj = result.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(obj["spec"]["replicas"], 3, "{what}");
            assert!(owns(&obj, "kubectl", &["f:spec", "f:replicas"]), "{what}");
            assert!(!owns(
                &obj,
                "kubectl-client-side-apply",
                &["f:spec", "f:replicas"]
            ));
            let annotation = obj["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
                .as_str()
                .unwrap();
            assert!(
                annotation.contains("\"replicas\":3"),
                "{what}: {annotation}"
            );
            assert!(annotation.ends_with('\n'));
        }

        // A field changed since the client-side apply is not taken over.
        let mut drifted = live.clone();
        drifted["spec"]["replicas"] = json!(4);
        let drifted = updated(&live, &drifted, "kubectl-client-side-apply", T2);
        let conflicts = conflicts_of(apply(
            Some(&drifted),
            &changed,
            "kubectl",
            false,
            DEPLOY,
            T3,
        ));
        assert_eq!(conflicts.len(), 1);
    }

    #[test]
    fn status_is_ignored_on_the_main_resource_and_recorded_on_the_subresource() {
        let mut config = deployment(2, "nginx:1", json!({"app": "web"}));
        config["status"] = json!({"replicas": 7});
        let obj = apply(None, &config, "kubectl", false, DEPLOY, T1).unwrap();
        assert!(obj.get("status").is_none());
        assert!(!owns(&obj, "kubectl", &["f:status"]));

        let mut with_status = obj.clone();
        with_status["status"] =
            json!({"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]});
        with_status["spec"]["replicas"] = json!(9);
        let mut written = with_status.clone();
        update_managed_fields_subresource(
            Some(&obj),
            &mut written,
            "kube-controller-manager",
            OPERATION_UPDATE,
            Some("status"),
            DEPLOY,
            T2,
        );
        let e = entry(&written, "kube-controller-manager").unwrap();
        assert_eq!(e["subresource"], "status");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:status": {".": {}, "f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}}, "f:replicas": {}}})
        );
        assert!(owns(&written, "kubectl", &["f:spec", "f:replicas"]));

        // Status writes through the main resource are not recorded either.
        let mut main = obj.clone();
        main["status"] = json!({"replicas": 3});
        let main = updated(&obj, &main, "someone", T2);
        assert!(entry(&main, "someone").is_none());
    }

    #[test]
    fn an_untracked_object_is_attributed_to_before_first_apply() {
        let live = deployment(2, "nginx:1", json!({"app": "web"}));
        let cases: &[(&str, i64, bool)] = &[
            ("same values apply cleanly", 2, true),
            ("changed values conflict", 3, false),
        ];
        for (what, replicas, ok) in cases {
            let config = deployment(*replicas, "nginx:1", json!({"app": "web"}));
            let result = apply(Some(&live), &config, "kubectl-ci", false, DEPLOY, T2);
            if *ok {
                let obj = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(
                    owns(&obj, BEFORE_FIRST_APPLY, &["f:spec", "f:replicas"]),
                    "{what}"
                );
                assert!(
                    owns(&obj, "kubectl-ci", &["f:spec", "f:replicas"]),
                    "{what}"
                );
            } else {
                let conflicts = conflicts_of(result);
                assert_eq!(conflicts[0].manager, BEFORE_FIRST_APPLY, "{what}");
            }
        }
        // Ordinary writes to an untracked object do not start tracking.
        let mut changed = live.clone();
        changed["spec"]["replicas"] = json!(4);
        let changed = updated(&live, &changed, "kubectl-edit", T2);
        assert!(changed["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn an_update_takes_ownership_away_from_an_applier() {
        let applied = apply(
            None,
            &deployment(2, "nginx:1", json!({"app": "web"})),
            "kubectl",
            false,
            DEPLOY,
            T1,
        )
        .unwrap();
        let mut scaled = applied.clone();
        scaled["spec"]["replicas"] = json!(6);
        let scaled = updated(&applied, &scaled, "kubectl-scale", T2);
        assert!(owns(&scaled, "kubectl-scale", &["f:spec", "f:replicas"]));
        assert!(!owns(&scaled, "kubectl", &["f:spec", "f:replicas"]));

        // Re-applying the old count is now a conflict with the updater...
        let config = deployment(2, "nginx:1", json!({"app": "web"}));
        let conflicts = conflicts_of(apply(Some(&scaled), &config, "kubectl", false, DEPLOY, T3));
        assert_eq!(
            conflicts[0].to_string(),
            "conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
        );
        // ...and dropping replicas from the configuration leaves them alone.
        let mut without = config.clone();
        without["spec"]
            .as_object_mut()
            .unwrap()
            .shift_remove("replicas");
        let obj = apply(Some(&scaled), &without, "kubectl", false, DEPLOY, T3).unwrap();
        assert_eq!(obj["spec"]["replicas"], 6);
    }

    #[test]
    fn a_no_op_apply_keeps_the_previous_time_and_entries_sort_as_upstream() {
        let config = deployment(2, "nginx:1", json!({"app": "web"}));
        let first = apply(None, &config, "kubectl", false, DEPLOY, T1).unwrap();
        let again = apply(Some(&first), &config, "kubectl", false, DEPLOY, T2).unwrap();
        assert_eq!(again, first);

        let mut labelled = again.clone();
        labelled["metadata"]["labels"]["a"] = json!("b");
        let labelled = updated(&again, &labelled, "zz-labeller", T2);
        let mut labelled2 = labelled.clone();
        labelled2["metadata"]["labels"]["c"] = json!("d");
        let labelled2 = updated(&labelled, &labelled2, "aa-labeller", T3);
        let order: Vec<&Value> = labelled2["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["manager"])
            .collect();
        assert_eq!(
            order,
            [
                &json!("kubectl"),
                &json!("zz-labeller"),
                &json!("aa-labeller")
            ]
        );
    }

    #[test]
    fn update_entries_are_capped_at_ten() {
        let mut obj = created_by("m00", &deployment(2, "nginx:1", json!({"app": "web"})));
        for i in 1..=12 {
            let mut next = obj.clone();
            next["metadata"]["labels"][format!("l{i}")] = json!("x");
            let now = format!("2025-01-01T00:{i:02}:00Z");
            obj = updated(&obj, &next, &format!("m{i:02}"), &now);
        }
        let entries = obj["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), MAX_UPDATE_MANAGERS);
        assert!(entry(&obj, ANCIENT_CHANGES).is_some());
        assert!(entry(&obj, "m12").is_some());
        assert!(owns(
            &obj,
            ANCIENT_CHANGES,
            &["f:metadata", "f:labels", "f:l1"]
        ));
    }

    #[test]
    fn managed_fields_sent_by_the_client_replace_or_reset_the_old_ones() {
        let created = created_by(
            "kubectl-create",
            &deployment(2, "nginx:1", json!({"app": "web"})),
        );
        let mut reset = created.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        let reset = updated(&created, &reset, "kubectl-edit", T2);
        assert!(reset["metadata"].get("managedFields").is_none());

        let mut none = created.clone();
        none["metadata"]
            .as_object_mut()
            .unwrap()
            .shift_remove("managedFields");
        none["spec"]["replicas"] = json!(3);
        let kept = updated(&created, &none, "kubectl-edit", T2);
        assert!(owns(&kept, "kubectl-create", &["f:spec", "f:selector"]));
        assert!(owns(&kept, "kubectl-edit", &["f:spec", "f:replicas"]));
    }

    #[test]
    fn unknown_kinds_are_granular_maps_with_atomic_lists() {
        let gvk = ("example.com", "v1", "Widget");
        let config = json!({
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "labels": {"app": "w"}},
            "spec": {"size": {"cpu": 1}, "tags": ["a", "b"]}
        });
        let obj = apply(None, &config, "tool", false, gvk, T1).unwrap();
        assert_eq!(
            entry(&obj, "tool").unwrap()["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {".": {}, "f:size": {".": {}, "f:cpu": {}}, "f:tags": {}}
            })
        );
        let mut next = config.clone();
        next["spec"]["tags"] = json!(["c"]);
        next["spec"].as_object_mut().unwrap().shift_remove("size");
        let obj = apply(Some(&obj), &next, "tool", false, gvk, T2).unwrap();
        assert_eq!(obj["spec"], json!({"tags": ["c"]}));
    }

    #[test]
    fn invalid_configurations_are_rejected() {
        let good = deployment(2, "nginx:1", json!({"app": "web"}));
        let with = |pointer: &str, value: Value| {
            let mut v = good.clone();
            *v.pointer_mut(pointer).unwrap() = value;
            v
        };
        let cases: Vec<(&str, Value, &str)> = vec![
            ("not an object", json!([1, 2]), "must be a JSON object"),
            (
                "no apiVersion",
                with("/apiVersion", json!(null)),
                "apiVersion",
            ),
            (
                "another kind",
                with("/kind", json!("StatefulSet")),
                "invalid object type",
            ),
            (
                "no name",
                with("/metadata/name", json!("")),
                "name is required",
            ),
            (
                "managed fields",
                with("/metadata/labels", json!({})).tap_managed(),
                "managedFields must be nil",
            ),
            (
                "an unknown field",
                with("/spec/replicas", json!(2)).tap_field("/spec", "replicax"),
                ".spec.replicax: field not declared in schema",
            ),
            (
                "a wrongly typed field",
                with("/spec/replicas", json!("two")),
                ".spec.replicas: expected numeric",
            ),
            (
                "a spec that is not a map",
                with("/spec", json!("x")),
                ".spec: expected map",
            ),
            (
                "duplicate containers",
                with(
                    "/spec/template/spec/containers",
                    json!([{"name": "a"}, {"name": "a"}]),
                ),
                "duplicate entries for key [name=\"a\"]",
            ),
            (
                "a container without a name",
                with("/spec/template/spec/containers", json!([{"image": "x"}])),
                "omits key field \"name\"",
            ),
        ];
        for (what, config, message) in cases {
            match apply(None, &config, "kubectl", false, DEPLOY, T1) {
                Err(ApplyError::Invalid(m)) => assert!(m.contains(message), "{what}: {m}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        let mut other_name = good.clone();
        other_name["metadata"]["name"] = json!("api");
        match apply(Some(&good), &other_name, "kubectl", false, DEPLOY, T1) {
            Err(ApplyError::Invalid(m)) => assert!(m.contains("does not match"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    trait Tap {
        fn tap_managed(self) -> Value;
        fn tap_field(self, pointer: &str, field: &str) -> Value;
    }

    impl Tap for Value {
        fn tap_managed(mut self) -> Value {
            self["metadata"]["managedFields"] = json!([]);
            self
        }
        fn tap_field(mut self, pointer: &str, field: &str) -> Value {
            self.pointer_mut(pointer).unwrap()[field] = json!(1);
            self
        }
    }

    #[test]
    fn odd_input_never_panics() {
        let good = deployment(2, "nginx:1", json!({"app": "web"}));
        let odd_values = vec![
            json!(null),
            json!(1),
            json!("x"),
            json!([]),
            json!({}),
            json!({"metadata": "x"}),
            json!({"metadata": {"managedFields": "x"}}),
            json!({"metadata": {"managedFields": [1, {"fieldsV1": "x"}, {"fieldsType": "FieldsV2", "fieldsV1": {}}, {"manager": 3}]}}),
            json!({"metadata": {"managedFields": [{"manager": "m", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"k:{bad": {}}}}]}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": [1]}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [1, null, {"image": "x"}, {"name": "a"}, {"name": "a"}]}}}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": [1], "finalizers": [{"a": 1}, "x", "x"]}, "spec": {"replicas": "x", "selector": 3}}),
            good.clone(),
        ];
        for live in &odd_values {
            for config in &odd_values {
                for force in [false, true] {
                    let _ = apply(Some(live), config, "kubectl", force, DEPLOY, T1);
                    let _ = apply(None, config, "x", force, ("", "v1", "Pod"), T1);
                    let _ = apply(Some(live), config, "x", force, ("a.b", "v1", "Thing"), T1);
                }
                let mut new = config.clone();
                update_managed_fields(Some(live), &mut new, "m", OPERATION_UPDATE, DEPLOY, T1);
                let mut new = config.clone();
                update_managed_fields(None, &mut new, "m", OPERATION_UPDATE, DEPLOY, T1);
                let mut new = config.clone();
                update_managed_fields_subresource(
                    Some(live),
                    &mut new,
                    "m",
                    OPERATION_UPDATE,
                    Some("status"),
                    ("", "v1", "Pod"),
                    T1,
                );
            }
        }
    }

    #[test]
    fn several_conflicts_are_grouped_by_manager() {
        let conflict = |manager: &str, operation: &str, path: &str| Conflict {
            manager: manager.into(),
            operation: operation.into(),
            api_version: "apps/v1".into(),
            subresource: String::new(),
            field_path: path.into(),
        };
        let conflicts = [
            conflict("b", "Update", ".spec.replicas"),
            conflict("a", "Apply", ".spec.paused"),
            conflict("b", "Update", ".metadata.labels.x"),
        ];
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.paused\n\
             conflicts with \"b\" using apps/v1:\n- .spec.replicas\n- .metadata.labels.x"
        );
    }
}
