//! Strategic merge patch (`application/strategic-merge-patch+json`).
//!
//! kubectl uses this patch type by default: `kubectl patch` sends it as
//! written, and `kubectl apply` (a three-way diff against the last applied
//! configuration) and `kubectl edit` compute one client-side and send it. It
//! is JSON merge patch (RFC 7386) with knowledge of the types: maps merge key
//! by key and `null` deletes a key, as in merge patch, but a list whose field
//! is declared `patchStrategy: merge` is merged element by element (by its
//! merge key, e.g. containers by `name`, or as a set for primitive lists such
//! as finalizers) instead of being replaced whole. Patches may carry
//! directives:
//!
//! - `$patch: replace` / `$patch: delete` in a map replace or delete it; in a
//!   merge list, `{"$patch": "delete", <key>: v}` deletes the element with
//!   that key and a `{"$patch": "replace"}` element replaces the whole list;
//! - `$deleteFromPrimitiveList/<field>: [..]` removes values from a primitive
//!   merge list;
//! - `$setElementOrder/<field>: [..]` fixes the order of a merge list;
//! - `$retainKeys: [..]` clears the keys of a map not listed (kubectl sends it
//!   for fields with strategy `retainKeys`, such as a Deployment's
//!   `spec.strategy`, so switching to `Recreate` drops `rollingUpdate`).
//!
//! This is our own implementation of upstream's server-side algorithm
//! (`k8s.io/apimachinery/pkg/util/strategicpatch`, `StrategicMergeMapPatch`),
//! element order included. Without `$setElementOrder`, the elements the patch
//! names keep the patch's order, the others keep the live order, and the two
//! are interleaved by the live order; an element new to the list lands right
//! after the patch element before it (or first), ahead of live-only elements
//! not yet placed. So `kubectl patch` adding a container puts it first, as
//! upstream's documentation shows, while `kubectl apply` sends
//! `$setElementOrder` and gets its file's order.
//!
//! Where upstream takes its merge metadata from Go struct tags, we walk the
//! kind's JSON schema ([`crate::schema`]) alongside the document and read the
//! strategy and merge key of each field from [`crate::patch_meta`]. Kinds
//! without a schema (custom resources) get upstream's unstructured behaviour:
//! maps merge, lists are replaced.
//!
//! Deliberate differences from upstream, all about not storing junk: values
//! the patch adds where the live object has nothing are cleaned as if merged
//! into an empty value (upstream copies them verbatim, directives and nulls
//! included, and relies on decoding into Go structs to drop them), so no
//! directive ever reaches the result; `$patch: delete` on a map field removes
//! the field (upstream leaves `{}`); `$deleteFromPrimitiveList` on a missing
//! list is a no-op (upstream sets the list to the values to delete).

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::patch_meta::{self, PatchMeta};
use crate::schema::{self, Dialect};

const DIRECTIVE_MARKER: &str = "$patch";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";

/// Why a strategic merge patch could not be applied. Messages follow
/// upstream's wording (`mergepatch` errors) where upstream has one; Go values
/// in them are printed as Go's `%v` would (`map[image:nginx name:web]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategicMergeError {
    /// The patch document is not a JSON object.
    #[error("strategic merge patch must be a JSON object, not {0}")]
    PatchNotObject(&'static str),
    /// The object being patched is not a JSON object.
    #[error("invalid JSON document: the object to patch is {0}, not an object")]
    OriginalNotObject(&'static str),
    /// `$patch` with a value other than `replace` or `delete` (maps), or
    /// `replace`, `delete` or `merge` (list elements).
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownPatchType { directive: String, map: String },
    /// `{"$patch": "merge"}` as a list element.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// An element of a merge list lacks the list's merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    /// A list of objects under a field declared `merge` without a merge key.
    #[error("cannot merge lists without merge key for type map")]
    NoMergeKeyDeclared,
    /// A merged list whose elements are lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A merged list whose elements are not all of one JSON type.
    #[error("list element types are not identical: {0}")]
    MixedElementTypes(String),
    /// `$retainKeys` is not a list.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys,
    /// The patch sets a field its own `$retainKeys` list would clear.
    #[error("patch content doesn't match retainKeys list: {0} is not in $retainKeys")]
    RetainKeysMismatch(String),
    /// `$deleteFromPrimitiveList/<field>` is malformed or not a list.
    #[error("invalid patch format of primitive list")]
    BadPrimitiveList,
    /// `$setElementOrder/<field>` is malformed or not a list.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrder,
    /// The patch list names elements in an order `$setElementOrder` contradicts,
    /// or elements `$setElementOrder` does not name.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch { patch: String, order: String },
    /// A field that `$setElementOrder` orders is not a list.
    #[error("expected a list in field {field}, but received {actual}")]
    NotAList { field: String, actual: &'static str },
}

impl StrategicMergeError {
    /// The HTTP status the API server should answer with: 422 for a patch
    /// that is well-formed but cannot apply to this kind (as upstream's
    /// `interpretStrategicMergePatchError` does), 400 otherwise.
    pub fn status_code(&self) -> u16 {
        match self {
            StrategicMergeError::ListOfLists | StrategicMergeError::RetainKeysMismatch(_) => 422,
            _ => 400,
        }
    }
}

type Result<T> = std::result::Result<T, StrategicMergeError>;

/// Apply a strategic merge `patch` to `original`, an object of the kind
/// `group`/`version`/`kind` (`""`, `"v1"`, `"Pod"`), and return the patched
/// object. `original` is not modified; `null` counts as an empty object.
pub fn apply_patch(
    original: &Value,
    patch: &Value,
    group: &str,
    version: &str,
    kind: &str,
) -> std::result::Result<Value, StrategicMergeError> {
    let Value::Object(patch) = patch else {
        return Err(StrategicMergeError::PatchNotObject(json_type(patch)));
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => return Err(StrategicMergeError::OriginalNotObject(json_type(other))),
    };
    let defs = schema::definitions(Dialect::Swagger2);
    let root = schema::definition_name(group, version, kind)
        .and_then(|name| defs.get_key_value(&name))
        .map(|(name, _)| name.as_str());
    let merger = Merger { defs };
    match merger.merge_map(original, patch.clone(), root)? {
        Merged::Map(map) => Ok(Value::Object(map)),
        Merged::Deleted => Ok(Value::Object(Map::new())),
    }
}

/// The outcome of merging into a map: the map, or `$patch: delete`.
enum Merged {
    Map(Map<String, Value>),
    Deleted,
}

/// What the schema says of one field: how it merges and, when it holds
/// objects, their definition.
#[derive(Default, Clone, Copy)]
struct Field {
    meta: Option<PatchMeta>,
    /// Definition of the field's value, when it is an object.
    definition: Option<&'static str>,
    /// Definition of the field's elements, when it is a list of objects.
    items: Option<&'static str>,
}

impl Field {
    fn merge_key(&self) -> Option<&'static str> {
        self.meta.and_then(|m| m.merge_key)
    }

    /// Whether the strategy (`merge`, `retainKeys`, `merge,retainKeys`)
    /// includes `name`.
    fn has_strategy(&self, name: &str) -> bool {
        self.meta
            .and_then(|m| m.strategy)
            .is_some_and(|s| s.split(',').any(|part| part.trim() == name))
    }

    fn merges_lists(&self) -> bool {
        self.has_strategy("merge")
    }

    fn replaces_maps(&self) -> bool {
        self.has_strategy("replace")
    }
}

struct Merger {
    defs: &'static Map<String, Value>,
}

impl Merger {
    /// The schema facts of `name` within the object defined by `definition`.
    fn field(&self, definition: Option<&'static str>, name: &str) -> Field {
        let Some(definition) = definition else {
            return Field::default();
        };
        let meta = patch_meta::lookup(definition, name);
        match schema::property(self.defs, definition, name) {
            Some((prop, referenced)) => Field {
                meta,
                definition: referenced,
                items: schema::items_definition(prop),
            },
            None => Field {
                meta,
                ..Field::default()
            },
        }
    }

    /// Merge `patch` into `original`, both maps of the type `definition`
    /// (upstream's `mergeMap`).
    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        definition: Option<&'static str>,
    ) -> Result<Merged> {
        if let Some(directive) = patch.shift_remove(DIRECTIVE_MARKER) {
            return match directive.as_str() {
                Some("replace") => self.merge_map(Map::new(), patch, definition),
                Some("delete") => Ok(Merged::Deleted),
                _ => {
                    let directive_text = go_fmt(&directive);
                    patch.insert(DIRECTIVE_MARKER.to_string(), directive);
                    Err(StrategicMergeError::UnknownPatchType {
                        directive: directive_text,
                        map: go_fmt_map(&patch),
                    })
                }
            };
        }

        apply_retain_keys(&mut original, &mut patch)?;
        self.apply_set_element_order(&mut original, &mut patch, definition)?;

        for (key, patch_value) in patch {
            if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
                let name = directive_field(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)
                    .ok_or(StrategicMergeError::BadPrimitiveList)?;
                let Value::Array(to_delete) = patch_value else {
                    return Err(StrategicMergeError::BadPrimitiveList);
                };
                if let Some(Value::Array(list)) = original.get_mut(name) {
                    list.retain(|v| !to_delete.iter().any(|d| json_eq(d, v)));
                }
                continue;
            }
            if patch_value.is_null() {
                original.shift_remove(&key);
                continue;
            }
            let field = self.field(definition, &key);
            let Some(current) = original.get_mut(&key) else {
                if let Some(value) = self.fresh(patch_value, field)? {
                    original.insert(key, value);
                }
                continue;
            };
            match (current, patch_value) {
                (Value::Object(current), Value::Object(patch_map)) if !field.replaces_maps() => {
                    let taken = std::mem::take(current);
                    match self.merge_map(taken, patch_map, field.definition)? {
                        Merged::Map(merged) => *current = merged,
                        Merged::Deleted => {
                            original.shift_remove(&key);
                        }
                    }
                }
                (Value::Array(current), Value::Array(patch_list)) => {
                    let taken = std::mem::take(current);
                    *current = self.merge_list(taken, patch_list, field)?;
                }
                (_, patch_value) => match self.fresh(patch_value, field)? {
                    Some(value) => {
                        original.insert(key, value);
                    }
                    None => {
                        original.shift_remove(&key);
                    }
                },
            }
        }
        Ok(Merged::Map(original))
    }

    /// A patch value standing where the original has nothing comparable:
    /// merged into an empty value so that its directives apply and its nulls
    /// go. `None` when nothing remains (`null`, `$patch: delete`).
    fn fresh(&self, value: Value, field: Field) -> Result<Option<Value>> {
        match value {
            Value::Null => Ok(None),
            Value::Object(map) => match self.merge_map(Map::new(), map, field.definition)? {
                Merged::Map(map) => Ok(Some(Value::Object(map))),
                Merged::Deleted => Ok(None),
            },
            Value::Array(list) => Ok(Some(Value::Array(self.fresh_list(list, field)?))),
            scalar => Ok(Some(scalar)),
        }
    }

    /// A list standing where the original has none.
    fn fresh_list(&self, list: Vec<Value>, field: Field) -> Result<Vec<Value>> {
        if field.merges_lists() {
            return self.merge_slice(Vec::new(), list, field);
        }
        let mut out = Vec::with_capacity(list.len());
        for element in list {
            if let Some(element) = self.fresh_element(element, field.items)? {
                out.push(element);
            }
        }
        Ok(out)
    }

    /// A list element taken from the patch, cleaned like [`Self::fresh`]
    /// (but nulls in lists are values, and kept).
    fn fresh_element(&self, element: Value, items: Option<&'static str>) -> Result<Option<Value>> {
        match element {
            Value::Object(map) => match self.merge_map(Map::new(), map, items)? {
                Merged::Map(map) => Ok(Some(Value::Object(map))),
                Merged::Deleted => Ok(None),
            },
            // Lists of lists have no schema below them.
            Value::Array(list) => {
                let mut out = Vec::with_capacity(list.len());
                for element in list {
                    if let Some(element) = self.fresh_element(element, None)? {
                        out.push(element);
                    }
                }
                Ok(Some(Value::Array(out)))
            }
            other => Ok(Some(other)),
        }
    }

    /// Merge two lists under `field`: element-wise when its strategy is
    /// `merge`, otherwise the patch list replaces the original.
    fn merge_list(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        field: Field,
    ) -> Result<Vec<Value>> {
        if field.merges_lists() {
            self.merge_slice(original, patch, field)
        } else {
            self.fresh_list(patch, field)
        }
    }

    /// Upstream's `mergeSlice`: merge a patch list into a merge-strategy list.
    fn merge_slice(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        field: Field,
    ) -> Result<Vec<Value>> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let kind = element_kind(&original, &patch)?;
        let merge_key = field.merge_key();

        let (server, patch_items, merged) = if kind != "object" {
            let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
            for v in original.iter().chain(patch.iter()) {
                if !merged.iter().any(|m| json_eq(m, v)) {
                    merged.push(v.clone());
                }
            }
            (original, patch, merged)
        } else {
            let key = merge_key.ok_or(StrategicMergeError::NoMergeKeyDeclared)?;
            let (server, plain) = self.apply_list_directives(original, patch, key, field)?;
            let mut merged = server.clone();
            for element in &plain {
                let Value::Object(element) = element else {
                    continue;
                };
                let value = element.get(key).ok_or_else(|| no_merge_key(element, key))?;
                let position = merged.iter().position(|m| {
                    m.as_object()
                        .and_then(|m| m.get(key))
                        .is_some_and(|v| json_eq(v, value))
                });
                match position {
                    Some(i) => {
                        let Value::Object(current) = std::mem::take(&mut merged[i]) else {
                            continue;
                        };
                        match self.merge_map(current, element.clone(), field.items)? {
                            Merged::Map(map) => merged[i] = Value::Object(map),
                            Merged::Deleted => {
                                merged.remove(i);
                            }
                        }
                    }
                    None => {
                        if let Some(new) =
                            self.fresh_element(Value::Object(element.clone()), field.items)?
                        {
                            merged.push(new);
                        }
                    }
                }
            }
            (server, plain, merged)
        };

        // Enforce the order: patch items by the patch, the rest by the server.
        let patch_ids = identities(&patch_items, merge_key)?;
        let server_ids = identities(&server, merge_key)?;
        let (in_patch, server_only) = partition(merged, &patch_ids, merge_key)?;
        Ok(normalize_element_order(
            in_patch,
            server_only,
            &patch_ids,
            &server_ids,
        ))
    }

    /// Upstream's `mergeSliceWithSpecialElements`: apply `$patch` elements of a
    /// list of maps. Returns the original list (after deletions, or the
    /// replacement list) and the patch elements left to merge.
    fn apply_list_directives(
        &self,
        mut original: Vec<Value>,
        patch: Vec<Value>,
        key: &str,
        field: Field,
    ) -> Result<(Vec<Value>, Vec<Value>)> {
        let mut plain = Vec::with_capacity(patch.len());
        let mut replace = false;
        for element in patch {
            let Value::Object(map) = &element else {
                plain.push(element);
                continue;
            };
            let Some(directive) = map.get(DIRECTIVE_MARKER) else {
                plain.push(element);
                continue;
            };
            match directive.as_str() {
                Some("delete") => {
                    let value = map.get(key).ok_or_else(|| no_merge_key(map, key))?;
                    original.retain(|o| {
                        !o.as_object()
                            .and_then(|o| o.get(key))
                            .is_some_and(|v| json_eq(v, value))
                    });
                }
                Some("replace") => replace = true,
                Some("merge") => return Err(StrategicMergeError::MergeDirectiveInList),
                _ => {
                    return Err(StrategicMergeError::UnknownPatchType {
                        directive: go_fmt(directive),
                        map: go_fmt_map(map),
                    })
                }
            }
        }
        if replace {
            let mut replacement = Vec::with_capacity(plain.len());
            for element in plain {
                if let Some(element) = self.fresh_element(element, field.items)? {
                    replacement.push(element);
                }
            }
            return Ok((replacement, Vec::new()));
        }
        Ok((original, plain))
    }

    /// Upstream's `mergePatchIntoOriginal`: merge every list that has a
    /// `$setElementOrder/<field>` directive, then order it by the directive.
    /// The lists handled are removed from `patch`.
    fn apply_set_element_order(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        definition: Option<&'static str>,
    ) -> Result<()> {
        let keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX))
            .cloned()
            .collect();
        for key in keys {
            let Some(order) = patch.shift_remove(&key) else {
                continue;
            };
            let name = directive_field(&key, SET_ELEMENT_ORDER_PREFIX)
                .ok_or(StrategicMergeError::BadSetElementOrder)?
                .to_string();
            let Value::Array(order) = order else {
                return Err(StrategicMergeError::BadSetElementOrder);
            };
            let field = self.field(definition, &name);
            let merge_key = field.merge_key();

            let original_list = match original.get(&name) {
                None => None,
                Some(Value::Array(list)) => Some(list.clone()),
                Some(other) => {
                    return Err(StrategicMergeError::NotAList {
                        field: name,
                        actual: json_type(other),
                    })
                }
            };
            let patch_list = match patch.get(&name) {
                None => None,
                Some(Value::Array(list)) => Some(list.clone()),
                Some(other) => {
                    return Err(StrategicMergeError::NotAList {
                        field: name,
                        actual: json_type(other),
                    })
                }
            };
            validate_patch_with_order(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;

            let server = original_list.clone().unwrap_or_default();
            let merged = match (original_list, patch_list) {
                (None, None) => continue,
                (Some(list), None) => list,
                (None, Some(list)) => self.fresh_list(list, field)?,
                (Some(current), Some(list)) => self.merge_list(current, list, field)?,
            };
            patch.shift_remove(&name);

            let order_ids = identities(&order, merge_key)?;
            let server_ids = identities(&server, merge_key)?;
            let (in_order, server_only) = partition(merged, &order_ids, merge_key)?;
            let sorted = normalize_element_order(in_order, server_only, &order_ids, &server_ids);
            original.insert(name, Value::Array(sorted));
        }
        Ok(())
    }
}

/// Upstream's `applyRetainKeysDirective`: when the patch has `$retainKeys`,
/// check that it names every key the patch sets, then clear the original's
/// other keys.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<()> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(StrategicMergeError::BadRetainKeys);
    };
    let keep: HashSet<&str> = retain.iter().filter_map(Value::as_str).collect();
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !keep.contains(key.as_str()) {
            return Err(StrategicMergeError::RetainKeysMismatch(key.clone()));
        }
    }
    original.retain(|key, _| keep.contains(key.as_str()));
    Ok(())
}

/// Upstream's `validatePatchWithSetOrderList`: the patch list's elements
/// (deletions and other directives aside) must appear in the order list, in
/// the same relative order.
fn validate_patch_with_order(
    patch: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<()> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut patch_ids = Vec::with_capacity(patch.len());
    for element in patch {
        if let Value::Object(map) = element {
            if map.contains_key(DIRECTIVE_MARKER) {
                continue;
            }
        }
        patch_ids.push(identity(element, merge_key)?);
    }
    let order_ids = identities(order, merge_key)?;
    let mut p = 0;
    let mut o = 0;
    while p < patch_ids.len() && o < order_ids.len() {
        if json_eq(&patch_ids[p], &order_ids[o]) {
            p += 1;
        }
        o += 1;
    }
    if p < patch_ids.len() {
        return Err(StrategicMergeError::SetElementOrderMismatch {
            patch: go_fmt(&Value::Array(patch.to_vec())),
            order: go_fmt(&Value::Array(order.to_vec())),
        });
    }
    Ok(())
}

/// What identifies a list element: its merge key's value for maps in a list
/// with a merge key, the element itself otherwise.
fn identity(element: &Value, merge_key: Option<&str>) -> Result<Value> {
    match (merge_key, element) {
        (Some(key), Value::Object(map)) => {
            map.get(key).cloned().ok_or_else(|| no_merge_key(map, key))
        }
        (_, other) => Ok(other.clone()),
    }
}

fn identities(list: &[Value], merge_key: Option<&str>) -> Result<Vec<Value>> {
    list.iter().map(|e| identity(e, merge_key)).collect()
}

fn position(ids: &[Value], id: &Value) -> Option<usize> {
    ids.iter().position(|x| json_eq(x, id))
}

/// A list element paired with its identity.
type Tagged = (Value, Value);

/// Split `merged` into the elements named in `by` and the others.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: Option<&str>,
) -> Result<(Vec<Tagged>, Vec<Tagged>)> {
    let mut named = Vec::new();
    let mut others = Vec::new();
    for element in merged {
        let id = identity(&element, merge_key)?;
        if position(by, &id).is_some() {
            named.push((id, element));
        } else {
            others.push((id, element));
        }
    }
    Ok((named, others))
}

/// Upstream's `normalizeElementOrder`: sort the patch's elements by
/// `patch_order` and the server-only ones by `server_order`, then interleave
/// them: a server-only element goes first only when the server order puts it
/// before the patch element it is compared with.
fn normalize_element_order(
    mut patch_items: Vec<Tagged>,
    mut server_only: Vec<Tagged>,
    patch_order: &[Value],
    server_order: &[Value],
) -> Vec<Value> {
    // Stable sorts; elements missing from the order go last (upstream's
    // comparator is not a strict order for them).
    patch_items.sort_by_key(|(id, _)| position(patch_order, id).unwrap_or(usize::MAX));
    server_only.sort_by_key(|(id, _)| position(server_order, id).unwrap_or(usize::MAX));

    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((l, _)), Some((r, _))) => {
                match (position(server_order, l), position(server_order, r)) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some((_, element)) = next {
            out.push(element);
        }
    }
    out
}

/// Upstream's `sliceElementType`: the one JSON type of all elements.
fn element_kind(original: &[Value], patch: &[Value]) -> Result<&'static str> {
    let mut kind = None;
    for element in original.iter().chain(patch) {
        let this = json_type(element);
        if this == "array" {
            return Err(StrategicMergeError::ListOfLists);
        }
        match kind {
            None => kind = Some(this),
            Some(k) if k != this => {
                return Err(StrategicMergeError::MixedElementTypes(format!(
                    "{} {}",
                    go_fmt(&Value::Array(original.to_vec())),
                    go_fmt(&Value::Array(patch.to_vec()))
                )))
            }
            Some(_) => {}
        }
    }
    Ok(kind.unwrap_or("null"))
}

/// The field a `$prefix/<field>` directive key names.
fn directive_field<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, field) = key.split_once('/')?;
    (head == prefix).then_some(field)
}

fn no_merge_key(map: &Map<String, Value>, key: &str) -> StrategicMergeError {
    StrategicMergeError::NoMergeKey {
        map: go_fmt_map(map),
        key: key.to_string(),
    }
}

/// JSON equality with numbers compared by value (Go decodes every JSON number
/// to `float64`, so `80` and `80.0` are one merge key).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value as Go's `%v` prints the decoded JSON, for upstream-shaped messages.
fn go_fmt(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(go_fmt).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(map) => go_fmt_map(map),
    }
}

fn go_fmt_map(map: &Map<String, Value>) -> String {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let entries: Vec<String> = entries
        .into_iter()
        .map(|(k, v)| format!("{k}:{}", go_fmt(v)))
        .collect();
    format!("map[{}]", entries.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOYMENT: (&str, &str, &str) = ("apps", "v1", "Deployment");
    const POD: (&str, &str, &str) = ("", "v1", "Pod");
    const WIDGET: (&str, &str, &str) = ("example.com", "v1", "Widget");

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web", "tier": "frontend"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "finalizers": ["a.example.com/one", "b.example.com/two"]
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
                },
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.25",
                                "ports": [
                                    {"containerPort": 80, "protocol": "TCP"},
                                    {"containerPort": 443, "protocol": "TCP"}
                                ],
                                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
                            },
                            {"name": "sidecar", "image": "busybox:1.36"}
                        ],
                        "tolerations": [
                            {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}
                        ]
                    }
                }
            }
        })
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "app:1",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }
        })
    }

    fn widget() -> Value {
        json!({
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "spec": {
                "containers": [{"name": "a"}, {"name": "b"}],
                "nested": {"a": 1, "b": 2}
            }
        })
    }

    struct Case {
        name: &'static str,
        kind: (&'static str, &'static str, &'static str),
        original: fn() -> Value,
        patch: Value,
        /// Turns `original()` into the expected result.
        expect: fn(&mut Value),
    }

    fn containers(d: &mut Value) -> &mut Value {
        &mut d["spec"]["template"]["spec"]["containers"]
    }

    fn cases() -> Vec<Case> {
        vec![
            Case {
                name: "updating a container's image by name keeps the other containers",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx:1.26"}
                ]}}}}),
                expect: |d| containers(d)[0]["image"] = json!("nginx:1.26"),
            },
            Case {
                // Upstream's documented result: the new container comes first.
                name: "adding a container without an order puts it first, as upstream does",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "logger", "image": "fluent-bit:3"}
                ]}}}}),
                expect: |d| {
                    let list = containers(d).as_array_mut().unwrap();
                    list.insert(0, json!({"name": "logger", "image": "fluent-bit:3"}));
                },
            },
            Case {
                name: "adding a container with $setElementOrder puts it where the order says",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": [
                        {"name": "web"}, {"name": "sidecar"}, {"name": "logger"}
                    ],
                    "containers": [{"name": "logger", "image": "fluent-bit:3"}]
                }}}}),
                expect: |d| {
                    let list = containers(d).as_array_mut().unwrap();
                    list.push(json!({"name": "logger", "image": "fluent-bit:3"}));
                },
            },
            Case {
                name: "deleting a container with $patch delete keeps the others",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"template": {"spec": {"containers": [
                    {"$patch": "delete", "name": "sidecar"}
                ]}}}}),
                expect: |d| {
                    containers(d).as_array_mut().unwrap().pop();
                },
            },
            Case {
                name: "env vars merge by name and new ones follow the patch order",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"template": {"spec": {"containers": [{
                    "name": "web",
                    "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]
                }]}}}}),
                expect: |d| {
                    containers(d)[0]["env"] = json!([
                        {"name": "A", "value": "1"},
                        {"name": "B", "value": "two"},
                        {"name": "C", "value": "3"}
                    ])
                },
            },
            Case {
                name: "ports merge by containerPort",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"template": {"spec": {"containers": [{
                    "name": "web",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 443, "name": "https"}]
                }]}}}}),
                // Upstream's interleaving: 8080 is unknown to the server, so
                // it goes before the server-only 80; 443 keeps its place.
                expect: |d| {
                    containers(d)[0]["ports"] = json!([
                        {"containerPort": 8080, "protocol": "TCP"},
                        {"containerPort": 80, "protocol": "TCP"},
                        {"containerPort": 443, "protocol": "TCP", "name": "https"}
                    ])
                },
            },
            Case {
                name: "a merge key written as a float still matches its integer",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"template": {"spec": {"containers": [{
                    "name": "web",
                    "ports": [{"containerPort": 443.0, "name": "https"}]
                }]}}}}),
                // Matched, not appended; the patch's spelling of the value wins.
                expect: |d| {
                    containers(d)[0]["ports"][1] =
                        json!({"containerPort": 443.0, "protocol": "TCP", "name": "https"})
                },
            },
            Case {
                name: "labels merge and null deletes a label",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"metadata": {"labels": {"tier": null, "track": "stable"}}}),
                expect: |d| d["metadata"]["labels"] = json!({"app": "web", "track": "stable"}),
            },
            Case {
                name: "finalizers are removed with $deleteFromPrimitiveList",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/one"]}}),
                expect: |d| d["metadata"]["finalizers"] = json!(["b.example.com/two"]),
            },
            Case {
                name: "finalizers merge as a set without duplicates",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"metadata": {"finalizers": ["b.example.com/two", "c.example.com/three"]}}),
                expect: |d| {
                    d["metadata"]["finalizers"] = json!([
                        "a.example.com/one",
                        "b.example.com/two",
                        "c.example.com/three"
                    ])
                },
            },
            Case {
                name: "$setElementOrder reorders a list the patch does not otherwise touch",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}]
                }}}}),
                expect: |d| containers(d).as_array_mut().unwrap().reverse(),
            },
            Case {
                name: "$setElementOrder orders primitive lists and deletions apply with it",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"metadata": {
                    "$setElementOrder/finalizers": ["c.example.com/three", "b.example.com/two"],
                    "$deleteFromPrimitiveList/finalizers": ["a.example.com/one"],
                    "finalizers": ["c.example.com/three"]
                }}),
                expect: |d| {
                    d["metadata"]["finalizers"] =
                        json!(["c.example.com/three", "b.example.com/two"])
                },
            },
            Case {
                name: "upstream: adding to a primitive list with $setElementOrder keeps server-only items",
                kind: DEPLOYMENT,
                original: || json!({"metadata": {"finalizers": ["1", "4", "2"]}}),
                patch: json!({"metadata": {
                    "$setElementOrder/finalizers": ["3", "1", "2"],
                    "finalizers": ["3"]
                }}),
                expect: |d| d["metadata"]["finalizers"] = json!(["3", "1", "4", "2"]),
            },
            Case {
                name: "upstream: adding and deleting in a primitive list preserves the order",
                kind: DEPLOYMENT,
                original: || json!({"metadata": {"finalizers": ["1", "2", "3"]}}),
                patch: json!({"metadata": {
                    "$deleteFromPrimitiveList/finalizers": ["3"],
                    "$setElementOrder/finalizers": ["4", "2", "1"],
                    "finalizers": ["4"]
                }}),
                expect: |d| d["metadata"]["finalizers"] = json!(["4", "2", "1"]),
            },
            Case {
                name: "upstream: server-only items stay between their live neighbours",
                kind: DEPLOYMENT,
                original: || json!({"metadata": {"finalizers": ["1", "2", "7", "9", "8", "3", "4"]}}),
                patch: json!({"metadata": {"$setElementOrder/finalizers": ["2", "1", "4", "3"]}}),
                expect: |d| {
                    d["metadata"]["finalizers"] = json!(["2", "1", "7", "9", "8", "4", "3"])
                },
            },
            Case {
                name: "upstream: $setElementOrder with duplicate merge keys keeps both",
                kind: POD,
                original: || {
                    json!({"spec": {"containers": [
                        {"name": "1"},
                        {"name": "2", "image": "dup1"},
                        {"name": "3"},
                        {"name": "2", "image": "dup2"},
                        {"name": "4"}
                    ]}})
                },
                patch: json!({"spec": {"$setElementOrder/containers": [
                    {"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}, {"name": "2"}
                ]}}),
                expect: |d| {
                    d["spec"]["containers"] = json!([
                        {"name": "2", "image": "dup1"},
                        {"name": "2", "image": "dup2"},
                        {"name": "1"},
                        {"name": "4"},
                        {"name": "3"}
                    ])
                },
            },
            Case {
                name: "a $patch replace element replaces the whole list",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"template": {"spec": {"containers": [
                    {"$patch": "replace"},
                    {"name": "only", "image": "only:1"}
                ]}}}}),
                expect: |d| *containers(d) = json!([{"name": "only", "image": "only:1"}]),
            },
            Case {
                name: "$patch replace on a map replaces it",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"metadata": {"labels": {"$patch": "replace", "fresh": "yes"}}}),
                expect: |d| d["metadata"]["labels"] = json!({"fresh": "yes"}),
            },
            Case {
                name: "$patch delete on a map removes it",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"strategy": {"$patch": "delete"}}}),
                expect: |d| {
                    d["spec"].as_object_mut().unwrap().shift_remove("strategy");
                },
            },
            Case {
                name:
                    "kubectl apply switching to Recreate clears rollingUpdate through $retainKeys",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"strategy": {
                    "$retainKeys": ["type"],
                    "rollingUpdate": null,
                    "type": "Recreate"
                }}}),
                expect: |d| d["spec"]["strategy"] = json!({"type": "Recreate"}),
            },
            Case {
                name: "$retainKeys alone clears the keys it does not list",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
                expect: |d| d["spec"]["strategy"] = json!({"type": "Recreate"}),
            },
            Case {
                name: "kubectl patch switching to Recreate with rollingUpdate null drops it",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}}),
                expect: |d| d["spec"]["strategy"] = json!({"type": "Recreate"}),
            },
            Case {
                name: "lists without a merge strategy are replaced",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"template": {"spec": {"tolerations": [
                    {"key": "gpu", "operator": "Exists"}
                ]}}}}),
                expect: |d| {
                    d["spec"]["template"]["spec"]["tolerations"] =
                        json!([{"key": "gpu", "operator": "Exists"}])
                },
            },
            Case {
                name: "kubectl scale sets the replicas",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"replicas": 5}}),
                expect: |d| d["spec"]["replicas"] = json!(5),
            },
            Case {
                name: "fields new to the object arrive without directives or nulls",
                kind: DEPLOYMENT,
                original: deployment,
                patch: json!({"spec": {"template": {"spec": {
                    "$setElementOrder/volumes": [{"name": "data"}],
                    "volumes": [{"name": "data", "emptyDir": {}, "hostPath": null}],
                    "securityContext": {"runAsNonRoot": true, "runAsUser": null},
                    "imagePullSecrets": [{"$patch": "delete", "name": "gone"}]
                }}}}),
                expect: |d| {
                    let spec = &mut d["spec"]["template"]["spec"];
                    spec["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
                    spec["securityContext"] = json!({"runAsNonRoot": true});
                    spec["imagePullSecrets"] = json!([]);
                },
            },
            Case {
                name: "a kubectl apply patch for a deployment applies all its directives",
                kind: DEPLOYMENT,
                original: deployment,
                // The shape CreateThreeWayMergePatch produces: keys sorted,
                // deletions after changes, parallel order lists.
                patch: json!({
                    "metadata": {
                        "annotations": {
                            "kubectl.kubernetes.io/last-applied-configuration": "{\"v\":2}\n"
                        },
                        "labels": {"tier": null}
                    },
                    "spec": {
                        "replicas": 3,
                        "template": {"spec": {
                            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                            "containers": [{
                                "$setElementOrder/env": [{"name": "A"}, {"name": "C"}],
                                "$setElementOrder/ports": [{"containerPort": 80}],
                                "env": [{"name": "C", "value": "3"}, {"$patch": "delete", "name": "B"}],
                                "image": "nginx:1.26",
                                "name": "web",
                                "ports": [{"$patch": "delete", "containerPort": 443}]
                            }]
                        }}
                    }
                }),
                expect: |d| {
                    d["metadata"]["annotations"]
                        ["kubectl.kubernetes.io/last-applied-configuration"] = json!("{\"v\":2}\n");
                    d["metadata"]["labels"] = json!({"app": "web"});
                    d["spec"]["replicas"] = json!(3);
                    let web = &mut containers(d)[0];
                    web["image"] = json!("nginx:1.26");
                    web["ports"] = json!([{"containerPort": 80, "protocol": "TCP"}]);
                    web["env"] = json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]);
                },
            },
            Case {
                name: "volume mounts merge by mountPath",
                kind: POD,
                original: pod,
                patch: json!({"spec": {"containers": [{
                    "name": "app",
                    "volumeMounts": [{"mountPath": "/data", "readOnly": true}]
                }]}}),
                expect: |d| d["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] = json!(true),
            },
            Case {
                name: "a volume switches source through its $retainKeys",
                kind: POD,
                original: pod,
                patch: json!({"spec": {"volumes": [{
                    "$retainKeys": ["hostPath", "name"],
                    "name": "data",
                    "hostPath": {"path": "/mnt"}
                }]}}),
                expect: |d| {
                    d["spec"]["volumes"] = json!([{"name": "data", "hostPath": {"path": "/mnt"}}])
                },
            },
            Case {
                name: "kinds without a schema merge maps and replace lists",
                kind: WIDGET,
                original: widget,
                patch: json!({"spec": {
                    "containers": [{"name": "c"}],
                    "nested": {"a": null, "c": 3}
                }}),
                expect: |d| {
                    d["spec"]["containers"] = json!([{"name": "c"}]);
                    d["spec"]["nested"] = json!({"b": 2, "c": 3});
                },
            },
            Case {
                name: "$patch delete on the whole object empties it",
                kind: POD,
                original: pod,
                patch: json!({"$patch": "delete"}),
                expect: |d| *d = json!({}),
            },
        ]
    }

    /// Keys that are directives: none may survive into a result.
    fn directive_keys(value: &Value, path: &str, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == DIRECTIVE_MARKER
                        || k == RETAIN_KEYS_DIRECTIVE
                        || k.starts_with(SET_ELEMENT_ORDER_PREFIX)
                        || k.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
                    {
                        found.push(format!("{path}.{k}"));
                    }
                    directive_keys(v, &format!("{path}.{k}"), found);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    directive_keys(v, &format!("{path}[{i}]"), found);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn patches_produce_upstream_results() {
        let mut failures = Vec::new();
        for case in cases() {
            let original = (case.original)();
            let mut expected = original.clone();
            (case.expect)(&mut expected);
            let (g, v, k) = case.kind;
            match apply_patch(&original, &case.patch, g, v, k) {
                Ok(got) if got == expected => {
                    let mut leaked = Vec::new();
                    directive_keys(&got, "", &mut leaked);
                    if !leaked.is_empty() {
                        failures.push(format!("{}: directives leaked: {leaked:?}", case.name));
                    }
                }
                Ok(got) => failures.push(format!(
                    "{}:\n  expected {expected}\n  got      {got}",
                    case.name
                )),
                Err(e) => failures.push(format!("{}: error {e}", case.name)),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn patching_keeps_the_order_of_untouched_keys() {
        let got = apply_patch(
            &deployment(),
            &json!({"metadata": {"labels": {"tier": null, "zone": "a"}}}),
            "apps",
            "v1",
            "Deployment",
        )
        .unwrap();
        let keys: Vec<&String> = got["metadata"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["name", "namespace", "labels", "annotations", "finalizers"]
        );
    }

    struct ErrorCase {
        name: &'static str,
        original: Value,
        patch: Value,
        message: &'static str,
    }

    fn error_cases() -> Vec<ErrorCase> {
        let c = |list: Value| json!({"spec": {"template": {"spec": {"containers": list}}}});
        vec![
            ErrorCase {
                name: "a patch that is not an object is rejected",
                original: deployment(),
                patch: json!([{"op": "add"}]),
                message: "strategic merge patch must be a JSON object, not array",
            },
            ErrorCase {
                name: "an object that is not an object is rejected",
                original: json!("text"),
                patch: json!({}),
                message: "invalid JSON document: the object to patch is string, not an object",
            },
            ErrorCase {
                name: "an unknown $patch value on a map is rejected",
                original: deployment(),
                patch: json!({"metadata": {"labels": {"$patch": "merge", "a": "b"}}}),
                message: "unknown patch type: merge in map: map[$patch:merge a:b]",
            },
            ErrorCase {
                name: "an unknown $patch value in a list is rejected",
                original: deployment(),
                patch: c(json!([{"$patch": "explode", "name": "web"}])),
                message: "unknown patch type: explode in map: map[$patch:explode name:web]",
            },
            ErrorCase {
                name: "$patch merge in a list is rejected",
                original: deployment(),
                patch: c(json!([{"$patch": "merge"}])),
                message: "merging lists cannot yet be specified in the patch",
            },
            ErrorCase {
                name: "a merge list element without its merge key is rejected as upstream words it",
                original: deployment(),
                patch: c(json!([{"image": "nginx", "ports": [{"containerPort": 1}]}])),
                message: "map: map[image:nginx ports:[map[containerPort:1]]] does not contain declared merge key: name",
            },
            ErrorCase {
                name: "a delete directive without the merge key is rejected",
                original: deployment(),
                patch: c(json!([{"$patch": "delete"}])),
                message: "map: map[$patch:delete] does not contain declared merge key: name",
            },
            ErrorCase {
                name: "a $retainKeys that is not a list is rejected",
                original: deployment(),
                patch: json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
                message: "invalid patch format of retainKeys",
            },
            ErrorCase {
                name: "a patch setting a field its $retainKeys omits is rejected",
                original: deployment(),
                patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}),
                message: "patch content doesn't match retainKeys list: rollingUpdate is not in $retainKeys",
            },
            ErrorCase {
                name: "a $deleteFromPrimitiveList that is not a list is rejected",
                original: deployment(),
                patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
                message: "invalid patch format of primitive list",
            },
            ErrorCase {
                name: "a $setElementOrder key without a field is rejected",
                original: deployment(),
                patch: json!({"metadata": {"$setElementOrder": ["a"]}}),
                message: "invalid patch format of setElementOrder list",
            },
            ErrorCase {
                name: "a $setElementOrder contradicting the patch list is rejected",
                original: deployment(),
                patch: json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                    "containers": [{"name": "sidecar"}, {"name": "web"}]
                }}}}),
                message: "The order in patch list:\n[map[name:sidecar] map[name:web]]\n doesn't match $setElementOrder list:\n[map[name:web] map[name:sidecar]]\n",
            },
            ErrorCase {
                name: "a $setElementOrder on a field that is not a list is rejected",
                original: deployment(),
                patch: json!({"spec": {"$setElementOrder/replicas": [1]}}),
                message: "expected a list in field replicas, but received number",
            },
            ErrorCase {
                name: "a list of lists under a merge strategy is rejected",
                original: deployment(),
                patch: json!({"metadata": {"finalizers": [["a"]]}}),
                message: "lists of lists are not supported",
            },
            ErrorCase {
                name: "mixed element types in a merge list are rejected",
                original: deployment(),
                patch: json!({"metadata": {"finalizers": [1]}}),
                message: "list element types are not identical: [a.example.com/one b.example.com/two] [1]",
            },
            ErrorCase {
                name: "objects in a merge list without a merge key are rejected",
                original: pod(),
                patch: json!({"metadata": {"finalizers": [{"a": 1}]}}),
                message: "cannot merge lists without merge key for type map",
            },
        ]
    }

    #[test]
    fn bad_input_is_an_error_with_upstreams_message() {
        let mut failures = Vec::new();
        for case in error_cases() {
            match apply_patch(&case.original, &case.patch, "apps", "v1", "Deployment") {
                Err(e) if e.to_string() == case.message => {}
                Err(e) => failures.push(format!(
                    "{}:\n  expected {:?}\n  got      {:?}",
                    case.name,
                    case.message,
                    e.to_string()
                )),
                Ok(v) => failures.push(format!("{}: unexpectedly applied: {v}", case.name)),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn errors_map_to_bad_request_or_unprocessable_entity() {
        assert_eq!(StrategicMergeError::ListOfLists.status_code(), 422);
        assert_eq!(StrategicMergeError::BadRetainKeys.status_code(), 400);
        assert_eq!(
            StrategicMergeError::PatchNotObject("array").status_code(),
            400
        );
    }

    /// A small deterministic generator of hostile patches.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }

        fn value(&mut self, depth: usize) -> Value {
            const KEYS: &[&str] = &[
                "metadata",
                "spec",
                "template",
                "containers",
                "name",
                "image",
                "env",
                "ports",
                "containerPort",
                "finalizers",
                "labels",
                "strategy",
                "rollingUpdate",
                "type",
                "volumes",
                "tolerations",
                "$patch",
                "$retainKeys",
                "$setElementOrder/containers",
                "$setElementOrder/finalizers",
                "$setElementOrder/env",
                "$setElementOrder",
                "$deleteFromPrimitiveList/finalizers",
                "$deleteFromPrimitiveList/",
            ];
            const WORDS: &[&str] = &[
                "web", "sidecar", "delete", "replace", "merge", "A", "B", "type", "name",
            ];
            let pick = if depth == 0 {
                self.next(4)
            } else {
                self.next(7)
            };
            match pick {
                0 => Value::Null,
                1 => json!(WORDS[self.next(WORDS.len())]),
                2 => json!(self.next(3) as u64 * 40 + 80),
                3 => json!(self.next(2) == 0),
                4 | 5 => {
                    let mut map = Map::new();
                    for _ in 0..self.next(4) {
                        let key = KEYS[self.next(KEYS.len())];
                        map.insert(key.to_string(), self.value(depth - 1));
                    }
                    Value::Object(map)
                }
                _ => Value::Array((0..self.next(4)).map(|_| self.value(depth - 1)).collect()),
            }
        }

        /// A patch shaped like `doc`: its keys and elements, some kept, some
        /// replaced by junk, some joined by directives.
        fn mutate(&mut self, doc: &Value) -> Value {
            match doc {
                Value::Object(map) => {
                    let mut out = Map::new();
                    for (k, v) in map {
                        match self.next(6) {
                            0 => {}
                            1 => {
                                out.insert(k.clone(), self.value(2));
                            }
                            _ => {
                                out.insert(k.clone(), self.mutate(v));
                            }
                        }
                    }
                    if self.next(4) == 0 {
                        let directive = [
                            "$patch",
                            "$retainKeys",
                            "$setElementOrder/containers",
                            "$setElementOrder/finalizers",
                            "$setElementOrder/env",
                            "$deleteFromPrimitiveList/finalizers",
                        ][self.next(6)];
                        let value = match self.next(3) {
                            0 => json!(["delete", "replace", "merge"][self.next(3)]),
                            1 => Value::Array(map.keys().map(|k| json!(k)).collect()),
                            _ => self.value(2),
                        };
                        out.insert(directive.to_string(), value);
                    }
                    Value::Object(out)
                }
                Value::Array(items) => {
                    let mut out = Vec::new();
                    for item in items {
                        if self.next(3) != 0 {
                            let mutated = self.mutate(item);
                            out.push(mutated);
                        }
                    }
                    if self.next(3) == 0 {
                        let mut special = match items.first() {
                            Some(Value::Object(first)) => first.clone(),
                            _ => Map::new(),
                        };
                        let directive = ["delete", "replace", "merge", "bogus"][self.next(4)];
                        special.insert("$patch".to_string(), json!(directive));
                        out.insert(self.next(out.len() + 1), Value::Object(special));
                    }
                    Value::Array(out)
                }
                _ if self.next(3) == 0 => self.value(1),
                other => other.clone(),
            }
        }
    }

    #[test]
    fn hostile_patches_never_panic_and_never_leak_directives() {
        let mut rng = Lcg(42);
        let originals = [(DEPLOYMENT, deployment()), (POD, pod()), (WIDGET, widget())];
        for round in 0..3000 {
            let (kind, original) = &originals[round % originals.len()];
            let mut patch = Map::new();
            for _ in 0..rng.next(4) + 1 {
                let key = ["metadata", "spec", "$patch", "status"][rng.next(4)];
                patch.insert(key.to_string(), rng.value(6));
            }
            let patch = if round % 2 == 0 {
                Value::Object(patch)
            } else {
                rng.mutate(original)
            };
            if let Ok(got) = apply_patch(original, &patch, kind.0, kind.1, kind.2) {
                let mut leaked = Vec::new();
                directive_keys(&got, "", &mut leaked);
                assert!(
                    leaked.is_empty(),
                    "patch {patch} leaked {leaked:?} into {got}"
                );
            }
        }
    }
}
