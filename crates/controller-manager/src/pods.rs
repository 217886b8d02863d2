//! Pod helpers every workload controller shares, as upstream's
//! `pkg/controller/controller_utils.go` and `pkg/api/v1/pod`:
//! readiness and availability, controller references, pods from
//! templates, and the claim decision (adopt, keep, release) behind
//! `ControllerRefManager`.

use std::collections::BTreeMap;

use api::selector::LabelSelector;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;

/// Whether the pod's Ready condition is True.
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the pod's Ready condition last became True, if it is True.
/// A Ready condition without a transition time counts as ready since ever.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (condition.status == "True").then(|| condition.last_transition_time.as_ref().map(|t| t.0))
}

/// Upstream's `IsPodAvailable`: ready for at least `min_ready_seconds`.
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => {
            let ready_for = now.as_second() - since.as_second();
            ready_for >= i64::from(min_ready_seconds)
        }
    }
}

/// Upstream's `IsPodActive`: not finished and not being deleted.
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.metadata.deletion_timestamp.is_none()
}

/// Whether the pod is being deleted.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's phase, "" when unset.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// A controller reference to `owner` (controller and blockOwnerDeletion set),
/// as `metav1.NewControllerRef`.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The object's controller reference, if any.
pub fn controller_of<K: Resource>(object: &K) -> Option<&OwnerReference> {
    object
        .meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A pod from `template` owned by `owner`, as upstream's
/// `GetPodFromTemplate`: the template's labels, annotations, finalizers and
/// spec, `generateName` `<prefix>-` unless a `name` is given.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    generate_name_prefix: &str,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_string()),
            generate_name: Some(format!("{generate_name_prefix}-")),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// What a controller does with an object it sees in its namespace
/// (upstream's `ClaimObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Ours and still matching: keep it.
    Owned,
    /// An orphan that matches: adopt it (unless we are being deleted).
    Adopt,
    /// Ours but no longer matching: release it.
    Release,
    /// Someone else's, or neither ours nor matching.
    Ignore,
}

/// Decide what `owner_uid`'s controller with `selector` does with an object
/// carrying `labels`, `owner` (its controller reference) and being deleted
/// or not.
pub fn claim(
    owner_uid: &str,
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
    controller: Option<&OwnerReference>,
    deleting: bool,
) -> Claim {
    match controller {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if selector.matches(labels) => Claim::Owned,
        // Upstream does not release an object that is being deleted.
        Some(_) if deleting => Claim::Owned,
        Some(_) => Claim::Release,
        None if deleting => Claim::Ignore,
        None if !selector.matches_nothing() && selector.matches(labels) => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// The strategic merge patch that adopts an object (upstream's
/// `ownerRefControllerPatch`): adds the controller reference, guarded by
/// the object's UID so a recreated namesake is never adopted.
pub fn adopt_patch(object_uid: &str, owner: &OwnerReference) -> serde_json::Value {
    serde_json::json!({
        "metadata": {
            "ownerReferences": [owner],
            "uid": object_uid,
        }
    })
}

/// The strategic merge patch that releases an object from `owner_uid`.
pub fn release_patch(object_uid: &str, owner_uid: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
            "uid": object_uid,
        }
    })
}

/// Upstream's `RecheckDeletionTimestamp`: before adopting, re-read the
/// owner from the server (not the cache) and refuse if it is gone, was
/// replaced by a namesake, or is being deleted, so a stale cache never
/// adopts for an owner that no longer wants its objects.
pub async fn recheck_before_adopting<K>(client: &kube::Client, owner: &K) -> anyhow::Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = owner.meta().namespace.clone().unwrap_or_default();
    let name = owner.meta().name.clone().unwrap_or_default();
    let api: kube::Api<K> = kube::Api::namespaced(client.clone(), &namespace);
    let kind = K::kind(&());
    match api.get_opt(&name).await? {
        None => anyhow::bail!("original {kind} {namespace}/{name} is gone"),
        Some(fresh) if fresh.meta().uid != owner.meta().uid => anyhow::bail!(
            "original {kind} {namespace}/{name} is gone: got uid {}, wanted {}",
            fresh.meta().uid.clone().unwrap_or_default(),
            owner.meta().uid.clone().unwrap_or_default()
        ),
        Some(fresh) if fresh.meta().deletion_timestamp.is_some() => {
            anyhow::bail!("{namespace}/{name} has just been deleted")
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::selector::parse;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ready_pod(since: Option<Timestamp>) -> Pod {
        Pod {
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: since.map(Time),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let since: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let pod = ready_pod(Some(since));
        let at = |s: i64| Timestamp::from_second(since.as_second() + s).unwrap();
        assert!(is_pod_available(&pod, 0, at(0)));
        assert!(!is_pod_available(&pod, 10, at(9)));
        assert!(is_pod_available(&pod, 10, at(10)));
        assert!(!is_pod_available(&Pod::default(), 0, at(0)));
        assert!(is_pod_ready(&ready_pod(None)));
    }

    #[test]
    fn claims_follow_upstream_controller_ref_manager() {
        let sel = parse("app=web").unwrap();
        let web: BTreeMap<_, _> = [("app".to_string(), "web".to_string())].into();
        let other: BTreeMap<_, _> = [("app".to_string(), "db".to_string())].into();
        let ours = OwnerReference {
            uid: "me".into(),
            controller: Some(true),
            ..Default::default()
        };
        let theirs = OwnerReference {
            uid: "them".into(),
            ..ours.clone()
        };
        let cases = [
            (&web, Some(&ours), false, Claim::Owned),
            (&other, Some(&ours), false, Claim::Release),
            (&other, Some(&ours), true, Claim::Owned),
            (&web, None, false, Claim::Adopt),
            (&web, None, true, Claim::Ignore),
            (&other, None, false, Claim::Ignore),
            (&web, Some(&theirs), false, Claim::Ignore),
        ];
        for (labels, owner, deleting, want) in cases {
            assert_eq!(
                claim("me", &sel, labels, owner, deleting),
                want,
                "{labels:?} {owner:?} {deleting}"
            );
        }
        assert_eq!(
            claim("me", &LabelSelector::nothing(), &web, None, false),
            Claim::Ignore
        );
    }
}
