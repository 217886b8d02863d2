//! ControllerRevisions, as upstream's `pkg/controller/history`: the
//! snapshots of a pod template that StatefulSets and DaemonSets keep so a
//! rollout knows which pods are current and `kubectl rollout undo` can go
//! back.
//!
//! - A revision's `data` is the strategic merge patch that puts its
//!   template back: `{"spec":{"template":{..., "$patch":"replace"}}}`
//!   ([`template_patch`]); `revision` numbers it in its owner's history.
//! - Its name is `<owner>-<hash>`, the hash a stable FNV hash encoded with
//!   upstream's `SafeEncodeString` alphabet, so equal templates get equal
//!   names and a collision count ([`hash_revision_data`],
//!   [`hash_template`]) moves a name off a clash.
//! - A changed template either reuses an equal earlier revision (bumping
//!   its number, a rollback) or creates a new one ([`resolve_update`]).
//! - History is truncated to `revisionHistoryLimit` (default 10), never
//!   deleting a live revision (one that pods or the status still name)
//!   ([`to_truncate`]).
//!
//! - Dependents (pods and revisions alike) are claimed as upstream's
//!   `ControllerRefManager` does ([`classify`], [`adopt`], [`release`]).
//!
//! The pure helpers are tested here; the `async` ones are the API calls
//! both controllers share.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use api::selector::LabelSelector;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Resource;
use serde_json::{json, Value};

use crate::framework::informer::Object;
use crate::framework::Informer;
use crate::pods::{adopt_patch, claim, controller_of, release_patch, Claim};

/// The pod label naming the revision a pod was made from (upstream's
/// `apps.ControllerRevisionHashLabelKey`): the revision's full name on
/// StatefulSet pods, the bare hash on DaemonSet pods (and on DaemonSet
/// revisions themselves).
pub const POD_REVISION_LABEL: &str = "controller-revision-hash";

/// The label carrying a StatefulSet revision's hash (upstream's
/// `history.ControllerRevisionHashLabel`).
pub const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// `revisionHistoryLimit` when unset (the API server defaults it to 10).
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// Upstream's `rand.SafeEncodeString` alphabet: no vowels and no 0, 1, 3,
/// so hashes never spell words.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Map every byte of `s` into the safe alphabet (upstream's
/// `SafeEncodeString`).
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// FNV-1 (32 bit), Go's `fnv.New32`.
pub fn fnv32(chunks: &[&[u8]]) -> u32 {
    let mut hash = FNV_OFFSET;
    for byte in chunks.iter().flat_map(|c| c.iter()) {
        hash = hash.wrapping_mul(FNV_PRIME);
        hash ^= u32::from(*byte);
    }
    hash
}

/// FNV-1a (32 bit), Go's `fnv.New32a`.
pub fn fnv32a(chunks: &[&[u8]]) -> u32 {
    let mut hash = FNV_OFFSET;
    for byte in chunks.iter().flat_map(|c| c.iter()) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// `value` as Go's `json.Marshal` writes a decoded map: compact, object
/// keys sorted, `<`, `>` and `&` escaped. Hashes of it stay stable however
/// the API server happened to order the fields.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Go escapes these for safe embedding in HTML and JavaScript.
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A revision's `data` for `template` (upstream's `getPatch`): the patch
/// that replaces an owner's template with this one.
///
/// Its keys are in Go's order (sorted, as `json.Marshal` writes a map):
/// `kubectl rollout undo` compares the stored bytes with the patch it
/// computes from the live object to tell "skipped rollback" (the template
/// already matches) from "rolled back".
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut template {
        map.insert("$patch".into(), json!("replace"));
    }
    let patch = json!({ "spec": { "template": template } });
    // Objects keep their insertion order: re-read the canonical text.
    serde_json::from_str(&canonical_json(&patch)).unwrap_or(patch)
}

/// The template a revision restores, if its data holds one.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Value::Object(map) = &mut template {
        map.remove("$patch");
    }
    serde_json::from_value(template).ok()
}

/// Upstream's `HashControllerRevision`: FNV-1 over the data's JSON and the
/// collision count (`probe`) in decimal, printed in decimal and safely
/// encoded.
pub fn hash_revision_data(data: &Value, probe: Option<i32>) -> String {
    let json = canonical_json(data);
    let probe = probe.map(|p| p.to_string()).unwrap_or_default();
    let sum = fnv32(&[json.as_bytes(), probe.as_bytes()]);
    safe_encode(&sum.to_string())
}

/// Upstream's `controller.ComputeHash` (the DaemonSet's revision hash and a
/// Deployment's pod-template-hash): FNV-1a over the template and the
/// collision count as four little-endian bytes, safely encoded.
pub fn hash_template(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = canonical_json(&serde_json::to_value(template).unwrap_or(Value::Null));
    let count = collision_count.map(|c| (c as u32).to_le_bytes());
    let sum = match &count {
        Some(bytes) => fnv32a(&[json.as_bytes(), bytes]),
        None => fnv32a(&[json.as_bytes()]),
    };
    safe_encode(&sum.to_string())
}

/// `<prefix>-<hash>`, the prefix cut to 223 bytes so the name stays within
/// 253 (upstream's `ControllerRevisionName`).
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let mut cut = prefix.len().min(223);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash}", &prefix[..cut])
}

/// A new revision of `owner` (upstream's `NewControllerRevision`): the
/// template's labels plus [`REVISION_HASH_LABEL`], a controller reference,
/// `data` and number `revision`, named for the hash of `data` and
/// `collision_count`.
pub fn new_revision(
    owner: OwnerReference,
    namespace: &str,
    template_labels: &BTreeMap<String, String>,
    data: Value,
    revision: i64,
    collision_count: i32,
) -> ControllerRevision {
    let hash = hash_revision_data(&data, Some(collision_count));
    let mut labels = template_labels.clone();
    labels.insert(REVISION_HASH_LABEL.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(&owner.name, &hash)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Whether two revisions hold the same data (upstream's `EqualRevision`):
/// differing hash labels settle it quickly, else the data is compared.
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let hash = |r: &ControllerRevision| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_HASH_LABEL).cloned())
    };
    if let (Some(x), Some(y)) = (hash(a), hash(b)) {
        if x != y {
            return false;
        }
    }
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// Order by revision number, then creation time, then name (upstream's
/// `SortControllerRevisions`).
pub fn sort_revisions(revisions: &mut [Arc<ControllerRevision>]) {
    revisions.sort_by(|a, b| compare_revisions(a, b));
}

fn compare_revisions(a: &ControllerRevision, b: &ControllerRevision) -> Ordering {
    let created = |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
    a.revision
        .cmp(&b.revision)
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The number after the highest in sorted `revisions` (1 for none).
pub fn next_revision(sorted: &[Arc<ControllerRevision>]) -> i64 {
    sorted.last().map_or(1, |r| r.revision + 1)
}

/// What to do about the revision a template change calls for.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateRevision {
    /// The newest revision already holds it.
    Reuse(Arc<ControllerRevision>),
    /// An older revision holds it (a rollback): give it this number.
    Renumber(Arc<ControllerRevision>, i64),
    /// No revision holds it: create this one.
    Create(Box<ControllerRevision>),
}

/// Find or make the revision `candidate` describes, among `sorted`
/// revisions (upstream's `getStatefulSetRevisions`): the newest revision if
/// it is equal, else the newest equal one renumbered to
/// `candidate.revision`, else `candidate` itself.
pub fn resolve_update(
    sorted: &[Arc<ControllerRevision>],
    candidate: ControllerRevision,
) -> UpdateRevision {
    let Some(equal) = sorted.iter().rev().find(|r| equal_revision(r, &candidate)) else {
        return UpdateRevision::Create(Box::new(candidate));
    };
    match sorted.last() {
        Some(last) if equal_revision(last, &candidate) => UpdateRevision::Reuse(last.clone()),
        _ => UpdateRevision::Renumber(equal.clone(), candidate.revision),
    }
}

/// The revisions to delete so at most `limit` non-live ones remain, oldest
/// first (upstream's `truncateHistory`). `sorted` is in
/// [`sort_revisions`] order; `live` says which are still in use. A
/// negative limit keeps everything.
pub fn to_truncate(
    sorted: &[Arc<ControllerRevision>],
    live: impl Fn(&ControllerRevision) -> bool,
    limit: i32,
) -> Vec<&Arc<ControllerRevision>> {
    let history: Vec<&Arc<ControllerRevision>> = sorted.iter().filter(|r| !live(r)).collect();
    let Ok(limit) = usize::try_from(limit) else {
        return Vec::new();
    };
    let excess = history.len().saturating_sub(limit);
    history.into_iter().take(excess).collect()
}

/// An owner's view of the objects it might control (pods or revisions).
#[derive(Debug)]
pub struct Claimed<K> {
    /// Objects it controls and still selects.
    pub owned: Vec<Arc<K>>,
    /// Orphans it selects: to adopt.
    pub adopt: Vec<Arc<K>>,
    /// Objects it controls but no longer selects: to release.
    pub release: Vec<Arc<K>>,
}

impl<K> Default for Claimed<K> {
    fn default() -> Self {
        Claimed {
            owned: Vec::new(),
            adopt: Vec::new(),
            release: Vec::new(),
        }
    }
}

/// Sort `candidates` into what `owner_uid` with `selector` keeps, adopts
/// and releases (upstream's `ControllerRefManager` claims). `filter` narrows
/// the selector further (a StatefulSet only claims pods named as its
/// members).
pub fn classify<K: Resource>(
    candidates: impl IntoIterator<Item = Arc<K>>,
    owner_uid: &str,
    selector: &LabelSelector,
    filter: impl Fn(&K) -> bool,
) -> Claimed<K> {
    let mut claimed = Claimed::default();
    let empty = BTreeMap::new();
    let nothing = LabelSelector::nothing();
    for object in candidates {
        let meta = object.meta();
        let labels = meta.labels.as_ref().unwrap_or(&empty);
        let deleting = meta.deletion_timestamp.is_some();
        let selector = if filter(&object) { selector } else { &nothing };
        match claim(
            owner_uid,
            selector,
            labels,
            controller_of(&*object),
            deleting,
        ) {
            Claim::Owned => claimed.owned.push(object),
            Claim::Adopt => claimed.adopt.push(object),
            Claim::Release => claimed.release.push(object),
            Claim::Ignore => {}
        }
    }
    claimed
}

/// The revisions of `namespace` that `owner_uid` with `selector` keeps,
/// adopts and releases (upstream's `ClaimControllerRevisions`).
pub fn claim_revisions(
    revisions: &Informer<ControllerRevision>,
    namespace: &str,
    owner_uid: &str,
    selector: &LabelSelector,
) -> Claimed<ControllerRevision> {
    let candidates = revisions
        .controlled_by(owner_uid)
        .into_iter()
        .chain(revisions.orphans(namespace))
        .filter(|r| r.metadata.namespace.as_deref() == Some(namespace));
    classify(candidates, owner_uid, selector, |_| true)
}

/// Adopt `object` for `owner`: the adopted object, or `None` if it is gone
/// or was replaced meanwhile (the patch is guarded by its UID).
pub async fn adopt<K: Object>(
    api: &Api<K>,
    object: &K,
    owner: &OwnerReference,
) -> anyhow::Result<Option<K>> {
    let name = object.meta().name.as_deref().unwrap_or_default();
    let uid = object.meta().uid.as_deref().unwrap_or_default();
    match api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(adopt_patch(uid, owner)),
        )
        .await
    {
        Ok(adopted) => Ok(Some(adopted)),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 || e.code == 409 => Ok(None),
        Err(e) => Err(e).with_context(|| format!("adopting {} {name}", K::kind(&()))),
    }
}

/// Release `object` from `owner_uid`. One already gone, or no longer ours
/// (422), needs nothing.
pub async fn release<K: Object>(api: &Api<K>, object: &K, owner_uid: &str) -> anyhow::Result<()> {
    let name = object.meta().name.as_deref().unwrap_or_default();
    let uid = object.meta().uid.as_deref().unwrap_or_default();
    match api
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(release_patch(uid, owner_uid)),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 || e.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("releasing {} {name}", K::kind(&()))),
    }
}

/// Create `revision` for the owner named `owner_name` (upstream's
/// `CreateControllerRevision`): on a name clash with different data the
/// collision count goes up and the name is recomputed; a clash with the
/// same data (our own earlier create) returns the existing revision.
pub async fn create(
    api: &Api<ControllerRevision>,
    owner_name: &str,
    revision: &ControllerRevision,
    collision_count: &mut i32,
) -> anyhow::Result<ControllerRevision> {
    let data = revision
        .data
        .as_ref()
        .map(|d| d.0.clone())
        .unwrap_or_default();
    // A clash per distinct revision is already unlikely; many in a row
    // mean something else is wrong.
    for _ in 0..100 {
        let hash = hash_revision_data(&data, Some(*collision_count));
        let mut attempt = revision.clone();
        attempt.metadata.name = Some(revision_name(owner_name, &hash));
        attempt
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(REVISION_HASH_LABEL.into(), hash);
        match api.create(&PostParams::default(), &attempt).await {
            Ok(created) => return Ok(created),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let name = attempt.metadata.name.as_deref().unwrap_or_default();
                let existing = api.get(name).await?;
                if existing.data.as_ref().map(|d| &d.0) == Some(&data) {
                    return Ok(existing);
                }
                *collision_count += 1;
            }
            Err(e) => return Err(e).context("creating ControllerRevision"),
        }
    }
    anyhow::bail!("too many ControllerRevision name collisions for {owner_name}")
}

/// Give `revision` the number `number` (upstream's
/// `UpdateControllerRevision`). Conflicts are returned, to be retried.
pub async fn renumber(
    api: &Api<ControllerRevision>,
    revision: &ControllerRevision,
    number: i64,
) -> anyhow::Result<ControllerRevision> {
    if revision.revision == number {
        return Ok(revision.clone());
    }
    let name = revision.metadata.name.as_deref().unwrap_or_default();
    let mut updated = revision.clone();
    updated.revision = number;
    api.replace(name, &PostParams::default(), &updated)
        .await
        .with_context(|| format!("renumbering ControllerRevision {name} to {number}"))
}

/// Delete the revision `name`; one already gone needs nothing.
pub async fn delete(api: &Api<ControllerRevision>, name: &str) -> anyhow::Result<()> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting ControllerRevision {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: "web".into(),
            uid: "uid-web".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn revision_of(image: &str, number: i64) -> Arc<ControllerRevision> {
        let t = template(image);
        let labels = t.metadata.as_ref().unwrap().labels.clone().unwrap();
        Arc::new(new_revision(
            owner(),
            "ns",
            &labels,
            template_patch(&t),
            number,
            0,
        ))
    }

    #[test]
    fn fnv_matches_gos_reference_values() {
        // Go: fnv.New32() / fnv.New32a() over "a".
        assert_eq!(fnv32(&[b"a"]), 0x050c_5d7e);
        assert_eq!(fnv32a(&[b"a"]), 0xe40c_292c);
        assert_eq!(fnv32(&[]), FNV_OFFSET);
        // Chunks hash as their concatenation.
        assert_eq!(fnv32(&[b"ab", b"c"]), fnv32(&[b"abc"]));
    }

    #[test]
    fn safe_encoding_uses_upstreams_alphabet() {
        // '0' is byte 48 -> 48 % 27 = 21 -> '4'; '9' is 57 -> 3 -> 'f'.
        assert_eq!(safe_encode("09"), "4f");
        let encoded = safe_encode("1234567890");
        assert!(encoded.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
    }

    #[test]
    fn canonical_json_sorts_keys_and_escapes_as_go() {
        let value = json!({"b": 1, "a": {"z": [true, null], "y": "<&>"}});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"y":"\u003c\u0026\u003e","z":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn hashes_are_stable_and_follow_content_and_collisions() {
        let a = template_patch(&template("nginx:1"));
        let b = template_patch(&template("nginx:2"));
        assert_eq!(
            hash_revision_data(&a, Some(0)),
            hash_revision_data(&a, Some(0))
        );
        assert_ne!(
            hash_revision_data(&a, Some(0)),
            hash_revision_data(&b, Some(0))
        );
        assert_ne!(
            hash_revision_data(&a, Some(0)),
            hash_revision_data(&a, Some(1))
        );
        let t = template("nginx:1");
        assert_eq!(hash_template(&t, None), hash_template(&t, None));
        assert_ne!(hash_template(&t, None), hash_template(&t, Some(1)));
        // Field order from the server does not matter.
        let reordered: Value = serde_json::from_str(
            r#"{"spec":{"template":{"spec":{"containers":[{"image":"nginx:1","name":"c"}]},"metadata":{"labels":{"app":"web"}},"$patch":"replace"}}}"#,
        )
        .unwrap();
        assert_eq!(
            hash_revision_data(&a, None),
            hash_revision_data(&reordered, None)
        );
    }

    #[test]
    fn a_statefulset_revision_hashes_exactly_as_upstreams() {
        // A revision written by kube-controller-manager 1.33 (upstream's
        // statefulset compatibility test data): same data, same name.
        let data: Value = serde_json::from_str(
            r#"{"spec":{"template":{"$patch":"replace","metadata":{"annotations":{"test":"value"},"creationTimestamp":null,"labels":{"app":"foo"}},"spec":{"containers":[{"image":"test","imagePullPolicy":"Always","name":"test","resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","schedulerName":"default-scheduler","securityContext":{},"terminationGracePeriodSeconds":30}}}}"#,
        )
        .unwrap();
        assert_eq!(hash_revision_data(&data, Some(0)), "c77f6d978");

        // 1.34 no longer writes `creationTimestamp: null`, nor do we: a
        // template read back from the server patches to the same bytes.
        let template: PodTemplateSpec = serde_json::from_str(
            r#"{"metadata":{"annotations":{"test":"value"},"labels":{"app":"foo"}},"spec":{"containers":[{"image":"test","imagePullPolicy":"Always","name":"test","resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","schedulerName":"default-scheduler","securityContext":{},"terminationGracePeriodSeconds":30}}"#,
        )
        .unwrap();
        let data = template_patch(&template);
        let text = serde_json::to_string(&data).unwrap();
        assert!(
            text.starts_with(r#"{"spec":{"template":{"$patch":"replace","metadata":"#),
            "Go's key order: {text}"
        );
        assert_eq!(hash_revision_data(&data, Some(0)), "776999688b");
    }

    #[test]
    fn a_revision_is_named_for_its_owner_and_hash_and_restores_its_template() {
        let r = revision_of("nginx:1", 3);
        let labels = r.metadata.labels.as_ref().unwrap();
        let hash = &labels[REVISION_HASH_LABEL];
        assert_eq!(labels["app"], "web");
        assert_eq!(
            r.metadata.name.as_deref(),
            Some(format!("web-{hash}").as_str())
        );
        assert_eq!(r.revision, 3);
        assert_eq!(
            r.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
            "replace"
        );
        assert_eq!(template_of(&r), Some(template("nginx:1")));
        assert_eq!(
            r.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-web"
        );
        let long = "x".repeat(300);
        assert_eq!(revision_name(&long, "h").len(), 225);
    }

    #[test]
    fn an_update_reuses_renumbers_or_creates() {
        let v1 = revision_of("nginx:1", 1);
        let v2 = revision_of("nginx:2", 2);
        let history = vec![v1.clone(), v2.clone()];
        let next = next_revision(&history);
        assert_eq!(next, 3);
        let cases = [
            ("nginx:2", UpdateRevision::Reuse(v2.clone())),
            ("nginx:1", UpdateRevision::Renumber(v1.clone(), 3)),
        ];
        for (image, want) in cases {
            let candidate = (*revision_of(image, next)).clone();
            assert_eq!(resolve_update(&history, candidate), want, "{image}");
        }
        let candidate = (*revision_of("nginx:3", next)).clone();
        assert_eq!(
            resolve_update(&history, candidate.clone()),
            UpdateRevision::Create(Box::new(candidate))
        );
        assert_eq!(next_revision(&[]), 1);
    }

    #[test]
    fn revisions_sort_by_number_then_age_then_name() {
        let at = |s: i64| Some(Time(Timestamp::from_second(s).unwrap()));
        let mut a = (*revision_of("a", 2)).clone();
        a.metadata.creation_timestamp = at(20);
        let mut b = (*revision_of("b", 2)).clone();
        b.metadata.creation_timestamp = at(10);
        let c = revision_of("c", 1);
        let mut sorted = vec![Arc::new(a.clone()), Arc::new(b.clone()), c.clone()];
        sort_revisions(&mut sorted);
        let images: Vec<i64> = sorted.iter().map(|r| r.revision).collect();
        assert_eq!(images, [1, 2, 2]);
        assert_eq!(sorted[1].metadata.creation_timestamp, at(10));
    }

    #[test]
    fn truncation_keeps_live_revisions_and_the_newest_history() {
        let revisions: Vec<_> = (1..=6).map(|n| revision_of(&format!("v{n}"), n)).collect();
        let live = |r: &ControllerRevision| r.revision == 1 || r.revision == 6;
        // Table: limit -> revision numbers deleted.
        let cases: [(i32, &[i64]); 5] = [
            (10, &[]),
            (4, &[]),
            (2, &[2, 3]),
            (0, &[2, 3, 4, 5]),
            (-1, &[]),
        ];
        for (limit, want) in cases {
            let deleted: Vec<i64> = to_truncate(&revisions, live, limit)
                .iter()
                .map(|r| r.revision)
                .collect();
            assert_eq!(deleted, want, "limit {limit}");
        }
    }

    #[test]
    fn equality_compares_data_and_short_cuts_on_hash_labels() {
        let a = revision_of("nginx:1", 1);
        let mut same = (*revision_of("nginx:1", 7)).clone();
        assert!(equal_revision(&a, &same));
        same.metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(REVISION_HASH_LABEL);
        assert!(equal_revision(&a, &same));
        let mut mislabelled = same.clone();
        mislabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(REVISION_HASH_LABEL.into(), "other".into());
        assert!(!equal_revision(&a, &mislabelled));
        assert!(!equal_revision(&a, &revision_of("nginx:2", 1)));
    }

    #[test]
    fn revisions_are_claimed_like_pods() {
        let informer = Informer::<ControllerRevision>::empty();
        let mut mine = (*revision_of("a", 1)).clone();
        mine.metadata.resource_version = Some("1".into());
        let mut orphan = (*revision_of("b", 2)).clone();
        orphan.metadata.owner_references = None;
        orphan.metadata.resource_version = Some("2".into());
        let mut stray = (*revision_of("c", 3)).clone();
        stray.metadata.labels = Some(BTreeMap::new());
        stray.metadata.resource_version = Some("3".into());
        let mut foreign = (*revision_of("d", 4)).clone();
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other".into();
        foreign.metadata.resource_version = Some("4".into());
        for r in [&mine, &orphan, &stray, &foreign] {
            informer.apply(r.clone());
        }
        let selector = api::selector::parse("app=web").unwrap();
        let claimed = claim_revisions(&informer, "ns", "uid-web", &selector);
        let names =
            |v: &[Arc<ControllerRevision>]| -> Vec<i64> { v.iter().map(|r| r.revision).collect() };
        assert_eq!(names(&claimed.owned), [1]);
        assert_eq!(names(&claimed.adopt), [2]);
        assert_eq!(names(&claimed.release), [3]);
    }
}
