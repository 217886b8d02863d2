//! The table of built-in resources.
//!
//! One row per served resource: everything routing, discovery, storage keys,
//! `kubectl api-resources` and short-name expansion need. The table is the
//! single source of truth; nothing else lists resources by hand.

/// Which subresources a resource serves besides its main endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Subresources {
    /// `/status`: spec and status written separately.
    pub status: bool,
    /// `/scale`: an `autoscaling/v1` Scale view of `spec.replicas`.
    pub scale: bool,
    /// `pods/binding`: sets `spec.nodeName` once.
    pub binding: bool,
    /// `pods/eviction`: a delete that honours PodDisruptionBudgets.
    pub eviction: bool,
    /// `pods/log`: a container's log, streamed from the node's kubelet.
    pub log: bool,
    /// `certificatesigningrequests/approval`: the Approved/Denied
    /// conditions, written apart from the signer's status.
    pub approval: bool,
}

/// One served resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; `""` for the legacy core group served under `/api`.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Lower-case plural: the URL path segment (`pods`).
    pub plural: &'static str,
    /// Lower-case singular (`pod`).
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub subresources: Subresources,
    /// Categories such as `all` (what `kubectl get all` expands to).
    pub categories: &'static [&'static str],
    /// Whether `metadata.generation` is maintained (set to 1 on create and
    /// bumped on spec changes): upstream's strategies do it for workloads,
    /// HPAs and PDBs, not for Pods, Services, Namespaces, Nodes or Leases.
    pub has_spec: bool,
    /// The verbs served; [`VERBS`] for stored resources.
    pub verbs: &'static [&'static str],
    /// Whether objects are stored. Review-style resources (SelfSubjectReview)
    /// are computed per request and never stored or listed.
    pub stored: bool,
}

/// The standard verbs a resource supports (all of ours support every verb).
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceInfo {
    /// `apiVersion` as written in objects: `v1` for core, `group/version` else.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of these objects (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The storage key prefix shared by every object of this resource,
    /// mirroring upstream's etcd layout: `/registry/{group}/{resource}/`.
    /// The core group is spelled `core` so that every key has the same shape.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The storage key prefix of one namespace (namespaced resources), or of
    /// the whole resource (cluster-scoped ones, or `namespace == None`).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    /// Whether `name` names this resource the way kubectl lets users name it:
    /// plural, singular, kind (any case), a short name, or `plural.group`.
    pub fn matches_name(&self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        let (base, group) = match lower.split_once('.') {
            Some((b, g)) => (b.to_string(), Some(g.to_string())),
            None => (lower.clone(), None),
        };
        if let Some(g) = group {
            if g != self.group && !self.group.starts_with(&format!("{g}.")) {
                return false;
            }
        }
        base == self.plural
            || base == self.singular
            || base == self.kind.to_ascii_lowercase()
            || self.short_names.contains(&base.as_str())
    }
}

const NONE: Subresources = Subresources {
    status: false,
    scale: false,
    binding: false,
    eviction: false,
    log: false,
    approval: false,
};
const STATUS: Subresources = Subresources {
    status: true,
    ..NONE
};
const STATUS_SCALE: Subresources = Subresources {
    status: true,
    scale: true,
    ..NONE
};
const POD: Subresources = Subresources {
    status: true,
    scale: false,
    binding: true,
    eviction: true,
    log: true,
    approval: false,
};
const CSR: Subresources = Subresources {
    status: true,
    approval: true,
    ..NONE
};

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, [$($short:expr),*], $namespaced:expr, $sub:expr, [$($cat:expr),*], $spec:expr) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: &[$($short),*],
            namespaced: $namespaced,
            subresources: $sub,
            categories: &[$($cat),*],
            has_spec: $spec,
            verbs: VERBS,
            stored: true,
        }
    };
}

/// A review resource: cluster-scoped, create only, never stored.
const fn review(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        short_names: &[],
        namespaced: false,
        subresources: NONE,
        categories: &[],
        has_spec: false,
        verbs: &["create"],
        stored: false,
    }
}

/// Every built-in resource Tugboat serves, in discovery order.
#[rustfmt::skip]
pub static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    resource!("", "v1", "Namespace", "namespaces", "namespace", ["ns"], false, STATUS, [], false),
    resource!("", "v1", "Pod", "pods", "pod", ["po"], true, POD, ["all"], false),
    resource!("", "v1", "Node", "nodes", "node", ["no"], false, STATUS, [], false),
    resource!("", "v1", "Service", "services", "service", ["svc"], true, STATUS, ["all"], false),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints", ["ep"], true, NONE, [], false),
    resource!("", "v1", "ConfigMap", "configmaps", "configmap", ["cm"], true, NONE, [], false),
    resource!("", "v1", "Secret", "secrets", "secret", [], true, NONE, [], false),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", ["sa"], true, NONE, [], false),
    resource!("", "v1", "Event", "events", "event", ["ev"], true, NONE, [], false),
    resource!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", ["pvc"], true, STATUS, [], false),
    resource!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", ["pv"], false, STATUS, [], false),
    // apps/v1
    resource!("apps", "v1", "Deployment", "deployments", "deployment", ["deploy"], true, STATUS_SCALE, ["all"], true),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", ["rs"], true, STATUS_SCALE, ["all"], true),
    resource!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", ["sts"], true, STATUS_SCALE, ["all"], true),
    resource!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", ["ds"], true, STATUS, ["all"], true),
    resource!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", [], true, NONE, [], false),
    // batch/v1
    resource!("batch", "v1", "Job", "jobs", "job", [], true, STATUS, ["all"], true),
    resource!("batch", "v1", "CronJob", "cronjobs", "cronjob", ["cj"], true, STATUS, ["all"], true),
    // certificates.k8s.io/v1
    resource!("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest", ["csr"], false, CSR, [], false),
    // coordination.k8s.io/v1
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", [], true, NONE, [], false),
    // discovery.k8s.io/v1
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", [], true, NONE, [], false),
    // autoscaling/v2
    resource!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", ["hpa"], true, STATUS, ["all"], true),
    // events.k8s.io/v1
    resource!("events.k8s.io", "v1", "Event", "events", "event", ["ev"], true, NONE, [], false),
    // policy/v1
    resource!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", ["pdb"], true, STATUS, [], true),
    // Answered per request from the caller's identity, never stored.
    review("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview"),
    review("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview"),
    review("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews", "selfsubjectrulesreview"),
];

/// The groups served, in discovery order (the core group first, as `""`).
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

/// The resources of one group/version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// Look a resource up by its URL coordinates.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Look a resource up by `apiVersion` and `kind`, as written in an object.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// `"apps/v1"` -> `("apps", "v1")`; `"v1"` -> `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_mirror_the_upstream_registry_layout() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/core/pods/default/web"
        );
        assert_eq!(
            pods.namespace_prefix(Some("default")),
            "/registry/core/pods/default/"
        );
        assert_eq!(pods.namespace_prefix(None), "/registry/core/pods/");
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/core/nodes/n1");
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.key(Some("a"), "b"), "/registry/apps/deployments/a/b");
    }

    #[test]
    fn names_match_the_way_kubectl_users_write_them() {
        let deploy = find("apps", "v1", "deployments").unwrap();
        for name in [
            "deploy",
            "deployment",
            "deployments",
            "Deployment",
            "deployments.apps",
        ] {
            assert!(deploy.matches_name(name), "{name}");
        }
        assert!(!deploy.matches_name("deployments.batch"));
        assert!(!deploy.matches_name("pods"));
    }

    #[test]
    fn every_resource_is_unique_by_coordinates() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{} listed twice",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn kinds_are_found_from_api_version() {
        assert_eq!(
            find_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert_eq!(find_kind("v1", "Pod").unwrap().plural, "pods");
        assert!(find_kind("v2", "Pod").is_none());
        assert_eq!(groups()[0], "");
    }
}
