//! How list fields of the built-in types merge.
//!
//! Upstream keeps this knowledge in Go struct tags (`patchStrategy`,
//! `patchMergeKey`, `listType`, `listMapKeys`) and publishes it in OpenAPI as
//! `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`. `k8s-openapi`'s
//! schemas do not carry those extensions, so this table restores them, keyed
//! by (definition name, field). Strategic merge patch, server-side apply and
//! the OpenAPI documents all read it from here.

/// The merge behaviour of one list (or map) field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchMeta {
    /// Strategic merge patch strategy: `merge`, `retainKeys` or `merge,retainKeys`.
    pub strategy: Option<&'static str>,
    /// Strategic merge patch merge key of list elements.
    pub merge_key: Option<&'static str>,
    /// Server-side apply list type: `map`, `set` or `atomic`.
    pub list_type: Option<&'static str>,
    /// Server-side apply keys of `map` lists.
    pub list_map_keys: &'static [&'static str],
}

const fn merge_by(key: &'static str, map_keys: &'static [&'static str]) -> PatchMeta {
    PatchMeta {
        strategy: Some("merge"),
        merge_key: Some(key),
        list_type: Some("map"),
        list_map_keys: map_keys,
    }
}

const MERGE_SET: PatchMeta = PatchMeta {
    strategy: Some("merge"),
    merge_key: None,
    list_type: Some("set"),
    list_map_keys: &[],
};

const ATOMIC: PatchMeta = PatchMeta {
    strategy: None,
    merge_key: None,
    list_type: Some("atomic"),
    list_map_keys: &[],
};

const RETAIN_KEYS: PatchMeta = PatchMeta {
    strategy: Some("retainKeys"),
    merge_key: None,
    list_type: None,
    list_map_keys: &[],
};

const CORE: &str = "io.k8s.api.core.v1.";
const APPS: &str = "io.k8s.api.apps.v1.";
const BATCH: &str = "io.k8s.api.batch.v1.";
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";

/// (definition suffix after its package prefix, field, meta).
type Row = (&'static str, &'static str, &'static str, PatchMeta);

static TABLE: &[Row] = &[
    // core/v1 PodSpec and containers.
    (CORE, "PodSpec", "containers", merge_by("name", &["name"])),
    (
        CORE,
        "PodSpec",
        "initContainers",
        merge_by("name", &["name"]),
    ),
    (
        CORE,
        "PodSpec",
        "ephemeralContainers",
        merge_by("name", &["name"]),
    ),
    (
        CORE,
        "PodSpec",
        "volumes",
        PatchMeta {
            strategy: Some("merge,retainKeys"),
            merge_key: Some("name"),
            list_type: Some("map"),
            list_map_keys: &["name"],
        },
    ),
    (
        CORE,
        "PodSpec",
        "imagePullSecrets",
        merge_by("name", &["name"]),
    ),
    (CORE, "PodSpec", "hostAliases", merge_by("ip", &["ip"])),
    (
        CORE,
        "PodSpec",
        "topologySpreadConstraints",
        merge_by("topologyKey", &["topologyKey", "whenUnsatisfiable"]),
    ),
    (
        CORE,
        "PodSpec",
        "resourceClaims",
        PatchMeta {
            strategy: Some("merge,retainKeys"),
            merge_key: Some("name"),
            list_type: Some("map"),
            list_map_keys: &["name"],
        },
    ),
    (
        CORE,
        "PodSpec",
        "schedulingGates",
        merge_by("name", &["name"]),
    ),
    (CORE, "PodSpec", "tolerations", ATOMIC),
    (
        CORE,
        "Container",
        "ports",
        merge_by("containerPort", &["containerPort", "protocol"]),
    ),
    (CORE, "Container", "env", merge_by("name", &["name"])),
    (
        CORE,
        "Container",
        "volumeMounts",
        merge_by("mountPath", &["mountPath"]),
    ),
    (
        CORE,
        "Container",
        "volumeDevices",
        merge_by("devicePath", &["devicePath"]),
    ),
    (CORE, "Container", "resizePolicy", ATOMIC),
    (
        CORE,
        "EphemeralContainer",
        "ports",
        merge_by("containerPort", &["containerPort", "protocol"]),
    ),
    (
        CORE,
        "EphemeralContainer",
        "env",
        merge_by("name", &["name"]),
    ),
    (
        CORE,
        "EphemeralContainer",
        "volumeMounts",
        merge_by("mountPath", &["mountPath"]),
    ),
    (
        CORE,
        "EphemeralContainer",
        "volumeDevices",
        merge_by("devicePath", &["devicePath"]),
    ),
    (CORE, "PodStatus", "conditions", merge_by("type", &["type"])),
    (CORE, "PodStatus", "podIPs", merge_by("ip", &["ip"])),
    (CORE, "PodStatus", "hostIPs", merge_by("ip", &["ip"])),
    (CORE, "NodeSpec", "podCIDRs", MERGE_SET),
    (CORE, "NodeSpec", "taints", ATOMIC),
    (
        CORE,
        "NodeStatus",
        "conditions",
        merge_by("type", &["type"]),
    ),
    (CORE, "NodeStatus", "addresses", merge_by("type", &["type"])),
    (
        CORE,
        "NamespaceStatus",
        "conditions",
        merge_by("type", &["type"]),
    ),
    (
        CORE,
        "ServiceSpec",
        "ports",
        merge_by("port", &["port", "protocol"]),
    ),
    (
        CORE,
        "ServiceStatus",
        "conditions",
        PatchMeta {
            strategy: None,
            merge_key: None,
            list_type: Some("map"),
            list_map_keys: &["type"],
        },
    ),
    (
        CORE,
        "ServiceAccount",
        "secrets",
        merge_by("name", &["name"]),
    ),
    // apps/v1
    (APPS, "DeploymentSpec", "strategy", RETAIN_KEYS),
    (
        APPS,
        "DeploymentStatus",
        "conditions",
        merge_by("type", &["type"]),
    ),
    (
        APPS,
        "ReplicaSetStatus",
        "conditions",
        merge_by("type", &["type"]),
    ),
    (
        APPS,
        "StatefulSetStatus",
        "conditions",
        merge_by("type", &["type"]),
    ),
    (
        APPS,
        "DaemonSetStatus",
        "conditions",
        merge_by("type", &["type"]),
    ),
    (APPS, "DaemonSetSpec", "updateStrategy", RETAIN_KEYS),
    // batch/v1
    (
        BATCH,
        "JobStatus",
        "conditions",
        PatchMeta {
            strategy: Some("merge"),
            merge_key: Some("type"),
            list_type: Some("atomic"),
            list_map_keys: &[],
        },
    ),
    // meta/v1
    (META, "ObjectMeta", "finalizers", MERGE_SET),
    (
        META,
        "ObjectMeta",
        "ownerReferences",
        merge_by("uid", &["uid"]),
    ),
    (META, "ObjectMeta", "managedFields", ATOMIC),
];

/// The merge behaviour of `field` in the definition named `definition`
/// (`io.k8s.api.core.v1.PodSpec`), if it differs from the default (lists are
/// replaced whole; maps merge key by key).
pub fn lookup(definition: &str, field: &str) -> Option<PatchMeta> {
    TABLE.iter().find_map(|(package, ty, f, meta)| {
        let matches = *f == field
            && definition.len() == package.len() + ty.len()
            && definition.starts_with(package)
            && definition.ends_with(ty);
        matches.then_some(*meta)
    })
}

/// Every entry as (full definition name, field, meta): for annotating the
/// OpenAPI documents.
pub fn entries() -> impl Iterator<Item = (String, &'static str, PatchMeta)> {
    TABLE
        .iter()
        .map(|(package, ty, f, meta)| (format!("{package}{ty}"), *f, *meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_merge_by_name_and_ports_by_container_port() {
        let c = lookup("io.k8s.api.core.v1.PodSpec", "containers").unwrap();
        assert_eq!(c.merge_key, Some("name"));
        assert_eq!(c.strategy, Some("merge"));
        let p = lookup("io.k8s.api.core.v1.Container", "ports").unwrap();
        assert_eq!(p.merge_key, Some("containerPort"));
        assert_eq!(p.list_map_keys, &["containerPort", "protocol"]);
    }

    #[test]
    fn unknown_fields_use_the_default_behaviour() {
        assert_eq!(lookup("io.k8s.api.core.v1.PodSpec", "nodeName"), None);
        assert_eq!(lookup("io.k8s.api.core.v1.Pod", "containers"), None);
    }

    #[test]
    fn every_entry_names_a_real_field_of_a_real_definition() {
        let defs = crate::schema::definitions(crate::schema::Dialect::Swagger2);
        for (definition, field, _) in entries() {
            let def = defs
                .get(&definition)
                .unwrap_or_else(|| panic!("{definition} missing"));
            assert!(
                def.get("properties").and_then(|p| p.get(field)).is_some(),
                "{definition}.{field} missing"
            );
        }
    }
}
