//! What the Deployment controller's decisions share (upstream's
//! `pkg/controller/deployment/util`): the pod-template hash, template
//! equality ignoring it, revisions and the annotations a ReplicaSet carries,
//! maxSurge/maxUnavailable resolution, ReplicaSet ordering, and deployment
//! conditions.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// A ReplicaSet's (and its Deployment's) rollout sequence number.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The earlier revisions a ReplicaSet served (it was rolled back to).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last sized.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus maxSurge when the ReplicaSet was last
/// sized: the base of proportional scaling.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// kubectl's change-cause annotation, copied to the ReplicaSet with the
/// Deployment's other annotations (`kubectl rollout history` shows it).
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// How long `deployment.kubernetes.io/revision-history` may grow.
pub const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Annotations never copied from a Deployment to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

// Condition types and reasons, as upstream names them.
pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const NEW_REPLICA_SET_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_REPLICA_SET: &str = "FoundNewReplicaSet";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

/// The alphabet of upstream's `rand.SafeEncodeString`: no vowels (no
/// words), no 0/1/3 (confusable with letters).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Upstream's `SafeEncodeString`: each byte mapped into the safe alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// 32-bit FNV-1a, the hash upstream uses for templates.
fn fnv32a(data: &[u8], mut hash: u32) -> u32 {
    for &byte in data {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

const FNV32_OFFSET: u32 = 0x811c_9dc5;

/// The `pod-template-hash` of a template (upstream's `ComputeHash`): FNV-1a
/// over a stable serialization of the template (its JSON, fields in
/// declaration order and maps sorted; upstream hashes Go's printed form,
/// so the values differ from upstream's but are as stable), then the
/// collision count as 8 little-endian bytes when set; the decimal sum,
/// safe-encoded.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = fnv32a(&bytes, FNV32_OFFSET);
    if let Some(count) = collision_count {
        let mut extra = [0u8; 8];
        extra[..4].copy_from_slice(&(count as u32).to_le_bytes());
        hash = fnv32a(&extra, hash);
    }
    safe_encode(&hash.to_string())
}

/// A template as JSON without the hash label, nulls and empty lists or
/// label/annotation maps: upstream's semantic equality treats nil and empty
/// alike.
fn normalized(template: &PodTemplateSpec) -> Value {
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(labels) = value
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    for field in ["labels", "annotations"] {
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            if meta
                .get(field)
                .and_then(Value::as_object)
                .is_some_and(|m| m.is_empty())
            {
                meta.remove(field);
            }
        }
    }
    strip_empty(&mut value);
    value
}

fn strip_empty(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null() && !matches!(v, Value::Array(a) if a.is_empty()));
            map.values_mut().for_each(strip_empty);
        }
        Value::Array(list) => list.iter_mut().for_each(strip_empty),
        _ => {}
    }
}

/// Upstream's `EqualIgnoreHash`: the templates are equal but for the
/// `pod-template-hash` label (which a Deployment's own template lacks).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(a) == normalized(b)
}

/// The ReplicaSet's template (empty when unset).
pub fn rs_template(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default()
}

/// `spec.replicas` of a Deployment (defaulted to 1, as upstream).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a ReplicaSet.
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `status.replicas`, `readyReplicas`, `availableReplicas` of a ReplicaSet.
pub fn rs_status_counts(rs: &ReplicaSet) -> (i32, i32, i32) {
    rs.status.as_ref().map_or((0, 0, 0), |s| {
        (
            s.replicas,
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
        )
    })
}

pub fn annotation<'a>(
    meta_annotations: &'a Option<BTreeMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    meta_annotations.as_ref()?.get(key).map(String::as_str)
}

/// The revision of a ReplicaSet: 0 without the annotation, `None` when it
/// does not parse (such ReplicaSets are skipped, as upstream).
pub fn revision(rs: &ReplicaSet) -> Option<i64> {
    match annotation(&rs.metadata.annotations, REVISION) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// The highest revision among `rss`.
pub fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter()
        .filter_map(revision)
        .max()
        .unwrap_or(0)
        .max(0)
}

/// Upstream's `SetNewReplicaSetAnnotations`: copy the Deployment's
/// annotations (but the controller's own and kubectl's last-applied) onto
/// the ReplicaSet, raise its revision to `new_revision` if lower (keeping
/// the old one in the revision history: it is being rolled back to), and
/// for a ReplicaSet about to be created, set the replica annotations.
/// Returns whether anything changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (key, value) in d.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&key.as_str()) || annotations.get(key) == Some(value) {
            continue;
        }
        annotations.insert(key.clone(), value.clone());
        changed = true;
    }
    let old = annotations.get(REVISION).cloned();
    let old_number = match old.as_deref() {
        None => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            // Upstream leaves a ReplicaSet with a garbled revision alone.
            Err(_) => return changed,
        },
    };
    if old_number < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = annotations
                .get(REVISION_HISTORY)
                .cloned()
                .unwrap_or_default();
            let mut entries: Vec<&str> = history.split(',').filter(|s| !s.is_empty()).collect();
            entries.push(&old);
            // Drop the oldest entries past the length limit.
            while entries.join(",").len() > MAX_REVISION_HISTORY_CHARS && entries.len() > 1 {
                entries.remove(0);
            }
            annotations.insert(REVISION_HISTORY.into(), entries.join(","));
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// Set the desired/max replica annotations; whether they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.into(), value);
            changed = true;
        }
    }
    changed
}

/// Whether the desired/max replica annotations differ from these.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(&rs.metadata.annotations, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || annotation(&rs.metadata.annotations, MAX_REPLICAS) != Some(max.to_string().as_str())
}

/// An integer annotation of a ReplicaSet.
pub fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata.annotations, key)?.parse().ok()
}

/// Upstream's `GetScaledValueFromIntOrPercent`: an int as is, `"N%"` of
/// `total` rounded up or down.
pub fn int_or_percent(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let Some(number) = s.strip_suffix('%') else {
                return Err(
                    "invalid value for IntOrString: invalid type: string is not a percentage"
                        .to_string(),
                );
            };
            let percent: i64 = number
                .parse()
                .map_err(|_| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let product = percent * i64::from(total);
            let scaled = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(i32::try_from(scaled).unwrap_or(i32::MAX))
        }
    }
}

/// Upstream's `ResolveFenceposts`: maxSurge rounded up, maxUnavailable
/// rounded down, and if both come to 0, maxUnavailable 1 (a rollout must
/// be able to move).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = int_or_percent(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = int_or_percent(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// The strategy type, RollingUpdate when unset (the API default).
pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

pub fn is_rolling_update(d: &Deployment) -> bool {
    strategy_type(d) == "RollingUpdate"
}

/// maxSurge and maxUnavailable as set, with the API's 25% defaults when
/// the rollingUpdate block is missing.
fn rolling_params(d: &Deployment) -> (IntOrString, IntOrString) {
    let default = || IntOrString::String("25%".into());
    let params = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    match params {
        Some(p) => (
            p.max_surge.clone().unwrap_or(IntOrString::Int(0)),
            p.max_unavailable.clone().unwrap_or(IntOrString::Int(0)),
        ),
        None => (default(), default()),
    }
}

/// Upstream's `MaxSurge`: 0 unless rolling; invalid values (rejected by
/// validation) count as 0.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    let (surge, unavailable) = rolling_params(d);
    resolve_fenceposts(Some(&surge), Some(&unavailable), replicas(d))
        .map(|(s, _)| s)
        .unwrap_or(0)
}

/// Upstream's `MaxUnavailable`: 0 unless rolling with replicas, at most
/// the replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling_update(d) || replicas(d) == 0 {
        return 0;
    }
    let (surge, unavailable) = rolling_params(d);
    resolve_fenceposts(Some(&surge), Some(&unavailable), replicas(d))
        .map(|(_, u)| u.min(replicas(d)))
        .unwrap_or(0)
}

/// maxSurge alone as NewRSNewReplicas reads it (no fencepost adjustment).
pub fn raw_max_surge(d: &Deployment) -> Result<i32, String> {
    let (surge, _) = rolling_params(d);
    int_or_percent(&surge, replicas(d), true)
}

/// Upstream's `ReplicaSetsByCreationTimestamp`: older first, then by name.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let time = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    time(a)
        .cmp(&time(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Upstream's `ReplicaSetsByRevision`: lower revision first, then by
/// creation.
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(a)
        .unwrap_or(0)
        .cmp(&revision(b).unwrap_or(0))
        .then_with(|| by_creation(a, b))
}

/// Whether the deployment reports ProgressDeadlineExceeded at all
/// (progressDeadlineSeconds set and not MaxInt32).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|&s| s != i32::MAX)
}

/// How many old ReplicaSets to keep, `None` for all.
pub fn revision_history_limit(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .filter(|&s| s != i32::MAX)
}

/// `now` to whole seconds, the precision a `Time` is written with, so a
/// condition read back compares equal to the one written.
pub fn truncate(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// A new condition stamped `now`.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    let now = Time(truncate(now));
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

pub fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Upstream's `SetDeploymentCondition`: nothing changes if a condition of
/// that type with the same status and reason exists; the transition time
/// is kept if only the reason changes. The condition goes last.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get_condition(status, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &condition.type_);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(condition);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(list) = status.conditions.as_mut() {
        list.retain(|c| c.type_ != type_);
        if list.is_empty() {
            status.conditions = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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

    #[test]
    fn hashes_are_stable_safe_and_collision_aware() {
        let a = compute_hash(&template("nginx:1"), None);
        assert_eq!(a, compute_hash(&template("nginx:1"), None));
        assert_ne!(a, compute_hash(&template("nginx:2"), None));
        assert_ne!(a, compute_hash(&template("nginx:1"), Some(1)));
        assert_ne!(
            compute_hash(&template("nginx:1"), Some(1)),
            compute_hash(&template("nginx:1"), Some(2))
        );
        // Decimal digits land on these ten letters and digits.
        assert!(a.chars().all(|c| "456789bcdf".contains(c)), "{a}");
        assert!((1..=10).contains(&a.len()));
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let mut hashed = template("nginx:1");
        hashed
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), "abc".into());
        assert!(equal_ignore_hash(&hashed, &template("nginx:1")));
        assert!(!equal_ignore_hash(&hashed, &template("nginx:2")));
        // An empty annotation map is no annotations.
        let mut annotated = template("nginx:1");
        annotated.metadata.as_mut().unwrap().annotations = Some(BTreeMap::new());
        assert!(equal_ignore_hash(&annotated, &template("nginx:1")));
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let pct = |s: &str| IntOrString::String(s.into());
        let int = IntOrString::Int;
        // (surge, unavailable, replicas) -> (surge, unavailable)
        let cases = [
            (pct("25%"), pct("25%"), 10, (3, 2)),
            (pct("25%"), pct("25%"), 3, (1, 0)),
            (pct("25%"), pct("25%"), 1, (1, 0)),
            (int(0), int(0), 3, (0, 1)),
            (pct("0%"), pct("10%"), 5, (0, 1)),
            (int(2), pct("50%"), 5, (2, 2)),
            (pct("100%"), int(0), 4, (4, 0)),
        ];
        for (surge, unavailable, desired, want) in cases {
            assert_eq!(
                resolve_fenceposts(Some(&surge), Some(&unavailable), desired),
                Ok(want),
                "{surge:?} {unavailable:?} {desired}"
            );
        }
        assert!(int_or_percent(&pct("5"), 10, true).is_err());
        assert!(int_or_percent(&pct("x%"), 10, true).is_err());
    }

    #[test]
    fn a_reused_replica_set_gets_the_next_revision_and_keeps_its_history() {
        let mut d = Deployment::default();
        d.metadata.annotations = Some(
            [
                (CHANGE_CAUSE.to_string(), "kubectl set image".to_string()),
                (REVISION.to_string(), "2".to_string()),
                (
                    "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                    "{}".to_string(),
                ),
            ]
            .into(),
        );
        let mut rs = ReplicaSet::default();
        rs.metadata.annotations = Some([(REVISION.to_string(), "1".to_string())].into());
        assert!(set_new_replica_set_annotations(&d, &mut rs, 3, true));
        let a = rs.metadata.annotations.as_ref().unwrap();
        assert_eq!(a[REVISION], "3");
        assert_eq!(a[REVISION_HISTORY], "1");
        assert_eq!(a[CHANGE_CAUSE], "kubectl set image");
        assert!(!a.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        // Again at 3: nothing to do. Rolled back again later: history grows.
        assert!(!set_new_replica_set_annotations(&d, &mut rs, 3, true));
        set_new_replica_set_annotations(&d, &mut rs, 5, true);
        assert_eq!(
            rs.metadata.annotations.as_ref().unwrap()[REVISION_HISTORY],
            "1,3"
        );
        // A revision never goes down.
        set_new_replica_set_annotations(&d, &mut rs, 4, true);
        assert_eq!(rs.metadata.annotations.as_ref().unwrap()[REVISION], "5");
    }

    #[test]
    fn conditions_keep_their_transition_time_while_the_status_holds() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let t1 = Timestamp::from_second(1_800_000_100).unwrap();
        let mut status = DeploymentStatus::default();
        set_condition(
            &mut status,
            condition(PROGRESSING, "True", NEW_REPLICA_SET_CREATED, "a".into(), t0),
        );
        // Same status and reason: untouched, even the message.
        set_condition(
            &mut status,
            condition(PROGRESSING, "True", NEW_REPLICA_SET_CREATED, "b".into(), t1),
        );
        let c = get_condition(&status, PROGRESSING).unwrap();
        assert_eq!(c.message.as_deref(), Some("a"));
        // New reason, same status: the transition time stays.
        set_condition(
            &mut status,
            condition(PROGRESSING, "True", NEW_RS_AVAILABLE, "c".into(), t1),
        );
        let c = get_condition(&status, PROGRESSING).unwrap();
        assert_eq!(c.last_transition_time, Some(Time(t0)));
        assert_eq!(c.last_update_time, Some(Time(t1)));
        // New status: a new transition time.
        set_condition(
            &mut status,
            condition(PROGRESSING, "False", TIMED_OUT, "d".into(), t1),
        );
        let c = get_condition(&status, PROGRESSING).unwrap();
        assert_eq!(c.last_transition_time, Some(Time(t1)));
        remove_condition(&mut status, PROGRESSING);
        assert!(status.conditions.is_none());
    }
}
