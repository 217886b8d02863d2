//! A StatefulSet pod's identity, as upstream's `stateful_set_utils.go`:
//! its ordinal and name (`<set>-<ordinal>`), its hostname and subdomain,
//! its identity labels, its revision label, its claims
//! (`<template>-<set>-<ordinal>`) and the volumes that mount them, and the
//! health tests the ordering rules are built from.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::jiff::Timestamp;

use crate::controllers::history::POD_REVISION_LABEL;
use crate::pods::{controller_ref, is_pod_available, is_pod_ready, phase, pod_from_template};

/// The label with the pod's own name, so a Service can select one pod.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with the pod's ordinal (upstream's `PodIndexLabel`).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The set's name and the ordinal in a pod name `<set>-<ordinal>`
/// (upstream's `getParentNameAndOrdinal`, regexp `(.*)-([0-9]+)$` with a
/// 32-bit ordinal).
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().ok()?))
}

/// The pod's ordinal, if its name has one.
pub fn ordinal(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(pod.metadata.name.as_deref()?).map(|(_, o)| o)
}

fn name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or_default()
}

fn namespace(set: &StatefulSet) -> &str {
    set.metadata.namespace.as_deref().unwrap_or_default()
}

/// Whether the pod's name makes it one of `set`'s pods (upstream's
/// `isMemberOf`).
pub fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    pod.metadata
        .name
        .as_deref()
        .and_then(parent_and_ordinal)
        .is_some_and(|(parent, _)| parent == name(set))
}

/// `<set>-<ordinal>`.
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", name(set))
}

/// `<template>-<set>-<ordinal>`.
pub fn claim_name(set: &StatefulSet, template: &str, ordinal: i32) -> String {
    format!("{template}-{}-{ordinal}", name(set))
}

/// The first ordinal (`spec.ordinals.start`, default 0).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// `spec.replicas` (default 1).
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

/// Whether `ordinal` is one the set wants now.
pub fn in_range(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    ordinal >= start && ordinal < start + replicas(set)
}

/// The claims pod `ordinal` mounts, with the template names they come
/// from (upstream's `getPersistentVolumeClaims`): the templates' labels
/// plus the selector's `matchLabels`.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let template_name = template.metadata.name.clone().unwrap_or_default();
            let mut claim = template.clone();
            claim.metadata.name = Some(claim_name(set, &template_name, ordinal));
            claim.metadata.namespace = Some(namespace(set).to_string());
            claim
                .metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .extend(selector_labels.clone());
            claim.status = None;
            (template_name, claim)
        })
        .collect()
}

/// Point the pod's volumes at its claims (upstream's `updateStorage`): one
/// volume per claim template, named as the template, replacing any
/// template volume of that name; the other volumes stay.
fn attach_claims(set: &StatefulSet, pod: &mut Pod, ordinal: i32) {
    let claims = claims(set, ordinal);
    if claims.is_empty() {
        return;
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(template, claim)| Volume {
            name: template.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    for volume in spec.volumes.take().unwrap_or_default() {
        if !claims.iter().any(|(template, _)| *template == volume.name) {
            volumes.push(volume);
        }
    }
    spec.volumes = Some(volumes);
}

/// The identity labels pod `ordinal` carries.
pub fn identity_labels(set: &StatefulSet, ordinal: i32) -> BTreeMap<String, String> {
    [
        (POD_NAME_LABEL.to_string(), pod_name(set, ordinal)),
        (POD_INDEX_LABEL.to_string(), ordinal.to_string()),
    ]
    .into()
}

/// Pod `ordinal` of `set` made from `template` at revision `revision`
/// (upstream's `newStatefulSetPod` + `setPodRevision`): named, labelled
/// with its identity and revision, its hostname and subdomain (the
/// governing `serviceName`) set, its claims mounted.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let mut pod = pod_from_template(template, namespace(set), name(set), controller_ref(set));
    let pod_name = pod_name(set, ordinal);
    pod.metadata.name = Some(pod_name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(identity_labels(set, ordinal));
    labels.insert(POD_REVISION_LABEL.into(), revision.to_string());
    let service = set.spec.as_ref().and_then(|s| s.service_name.clone());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(pod_name);
    spec.subdomain = service.filter(|s| !s.is_empty());
    attach_claims(set, &mut pod, ordinal);
    pod
}

/// Whether the pod has the name, namespace and identity labels of a member
/// of `set` (upstream's `identityMatches`; hostname and subdomain are
/// immutable once created, so only set at creation).
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ordinal) = ordinal(pod) else {
        return false;
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    is_member_of(set, pod)
        && pod.metadata.namespace.as_deref() == Some(namespace(set))
        && identity_labels(set, ordinal)
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
}

/// The revision the pod was made from ("" if unlabelled).
pub fn revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_REVISION_LABEL))
        .map_or("", String::as_str)
}

/// The API server has the pod (upstream's `isCreated`: it has a phase).
pub fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Running with its Ready condition True.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_pod_ready(pod)
}

/// Upstream's `isUnavailable`: not running, ready and available, or being
/// deleted.
pub fn is_unavailable(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    !is_running_and_ready(pod)
        || is_terminating(pod)
        || !is_pod_available(pod, min_ready_seconds, now)
}

/// Failed or Succeeded: the pod will not run again and must be replaced.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Failed" | "Succeeded")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn set() -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-web".into()),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                service_name: Some("nginx".into()),
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    ..Default::default()
                },
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some("www".into()),
                        labels: Some([("tier".to_string(), "data".to_string())].into()),
                        ..Default::default()
                    },
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn template() -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                volumes: Some(vec![
                    Volume {
                        name: "www".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    },
                    Volume {
                        name: "scratch".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn ordinals_parse_as_upstreams_regexp() {
        let cases = [
            ("web-0", Some(("web", 0))),
            ("my-web-12", Some(("my-web", 12))),
            ("web-", None),
            ("web", None),
            ("web-1a", None),
            ("web-99999999999", None),
        ];
        for (name, want) in cases {
            assert_eq!(parent_and_ordinal(name), want, "{name}");
        }
    }

    #[test]
    fn a_new_pod_carries_its_identity_revision_and_claims() {
        let pod = new_pod(&set(), &template(), 2, "web-abc");
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[POD_REVISION_LABEL], "web-abc");
        assert_eq!(labels["app"], "web");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let volumes = spec.volumes.as_ref().unwrap();
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["www", "scratch"]);
        let claim = volumes[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!(claim.claim_name, "www-web-2");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", "uid-web")
        );
        assert!(identity_matches(&set(), &pod));
    }

    #[test]
    fn claims_take_the_selectors_labels() {
        let claims = claims(&set(), 1);
        assert_eq!(claims.len(), 1);
        let (template, claim) = &claims[0];
        assert_eq!(template, "www");
        assert_eq!(claim.metadata.name.as_deref(), Some("www-web-1"));
        assert_eq!(claim.metadata.namespace.as_deref(), Some("ns"));
        let labels = claim.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app"], "web");
        assert_eq!(labels["tier"], "data");
    }

    #[test]
    fn identity_needs_the_name_namespace_and_labels() {
        let set = set();
        let good = new_pod(&set, &template(), 0, "r");
        let mut unlabelled = good.clone();
        unlabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(POD_NAME_LABEL);
        let mut elsewhere = good.clone();
        elsewhere.metadata.namespace = Some("other".into());
        let mut foreign = good.clone();
        foreign.metadata.name = Some("db-0".into());
        for (pod, want) in [
            (good, true),
            (unlabelled, false),
            (elsewhere, false),
            (foreign, false),
        ] {
            assert_eq!(identity_matches(&set, &pod), want, "{:?}", pod.metadata);
        }
    }

    #[test]
    fn ordinals_start_where_the_set_says() {
        let mut set = set();
        let spec = set.spec.as_mut().unwrap();
        spec.replicas = Some(3);
        spec.ordinals = Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(5) });
        let wanted: Vec<i32> = (0..10).filter(|o| in_range(&set, *o)).collect();
        assert_eq!(wanted, [5, 6, 7]);
    }
}
