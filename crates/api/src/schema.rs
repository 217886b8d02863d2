//! JSON schemas of the served kinds, generated from `k8s-openapi`.
//!
//! `k8s-openapi` implements `schemars::JsonSchema` for every type, naming each
//! definition as upstream's OpenAPI does (`io.k8s.api.core.v1.Pod`). From that
//! one source we derive the OpenAPI documents kubectl reads, and the type walk
//! strategic merge patch and server-side apply need to find list merge keys.
//! Nothing here is hand-written per field except the kind -> type dispatch.

use std::sync::OnceLock;

use k8s_openapi::api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{Map, Value};

/// Which document the definitions are for: the `$ref` prefix differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Swagger 2.0 (`/openapi/v2`): refs are `#/definitions/NAME`.
    Swagger2,
    /// OpenAPI 3.0 (`/openapi/v3/...`): refs are `#/components/schemas/NAME`.
    OpenApi3,
}

impl Dialect {
    /// The `$ref` prefix of this dialect.
    pub fn ref_prefix(self) -> &'static str {
        match self {
            Dialect::Swagger2 => "#/definitions/",
            Dialect::OpenApi3 => "#/components/schemas/",
        }
    }
}

/// A served kind and the name of its schema definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindSchema {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub definition: String,
}

macro_rules! kinds {
    ($( ($group:expr, $version:expr, $kind:expr, $ty:ty) ),* $(,)?) => {
        fn generate_all(generator: &mut SchemaGenerator) {
            $( let _ = generator.subschema_for::<$ty>(); )*
        }
        fn kind_list() -> Vec<KindSchema> {
            vec![$(
                KindSchema {
                    group: $group,
                    version: $version,
                    kind: $kind,
                    definition: <$ty as JsonSchema>::schema_name().into_owned(),
                },
            )*]
        }
    };
}

kinds![
    ("", "v1", "Namespace", api::core::v1::Namespace),
    ("", "v1", "Pod", api::core::v1::Pod),
    ("", "v1", "Node", api::core::v1::Node),
    ("", "v1", "Service", api::core::v1::Service),
    ("", "v1", "Endpoints", api::core::v1::Endpoints),
    ("", "v1", "ConfigMap", api::core::v1::ConfigMap),
    ("", "v1", "Secret", api::core::v1::Secret),
    ("", "v1", "ServiceAccount", api::core::v1::ServiceAccount),
    ("", "v1", "Event", api::core::v1::Event),
    ("", "v1", "PersistentVolumeClaim", api::core::v1::PersistentVolumeClaim),
    ("", "v1", "PersistentVolume", api::core::v1::PersistentVolume),
    ("", "v1", "Binding", api::core::v1::Binding),
    ("apps", "v1", "Deployment", api::apps::v1::Deployment),
    ("apps", "v1", "ReplicaSet", api::apps::v1::ReplicaSet),
    ("apps", "v1", "StatefulSet", api::apps::v1::StatefulSet),
    ("apps", "v1", "DaemonSet", api::apps::v1::DaemonSet),
    ("apps", "v1", "ControllerRevision", api::apps::v1::ControllerRevision),
    ("batch", "v1", "Job", api::batch::v1::Job),
    ("batch", "v1", "CronJob", api::batch::v1::CronJob),
    ("certificates.k8s.io", "v1", "CertificateSigningRequest", api::certificates::v1::CertificateSigningRequest),
    ("coordination.k8s.io", "v1", "Lease", api::coordination::v1::Lease),
    ("discovery.k8s.io", "v1", "EndpointSlice", api::discovery::v1::EndpointSlice),
    ("autoscaling", "v2", "HorizontalPodAutoscaler", api::autoscaling::v2::HorizontalPodAutoscaler),
    ("autoscaling", "v1", "Scale", api::autoscaling::v1::Scale),
    ("events.k8s.io", "v1", "Event", api::events::v1::Event),
    ("policy", "v1", "PodDisruptionBudget", api::policy::v1::PodDisruptionBudget),
    ("policy", "v1", "Eviction", api::policy::v1::Eviction),
    ("authentication.k8s.io", "v1", "SelfSubjectReview", api::authentication::v1::SelfSubjectReview),
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview", api::authorization::v1::SelfSubjectAccessReview),
    ("authorization.k8s.io", "v1", "SelfSubjectRulesReview", api::authorization::v1::SelfSubjectRulesReview),
    ("meta.k8s.io", "v1", "ListMeta", metav1::ListMeta),
    ("meta.k8s.io", "v1", "Status", metav1::Status),
    ("meta.k8s.io", "v1", "DeleteOptions", metav1::DeleteOptions),
    ("meta.k8s.io", "v1", "WatchEvent", metav1::WatchEvent<serde_json::Value>),
    ("meta.k8s.io", "v1", "APIGroup", metav1::APIGroup),
    ("meta.k8s.io", "v1", "APIVersions", metav1::APIVersions),
];

/// Every kind with a schema, lists and meta kinds included.
pub fn kinds() -> &'static [KindSchema] {
    static KINDS: OnceLock<Vec<KindSchema>> = OnceLock::new();
    KINDS.get_or_init(kind_list)
}

/// The definition name of a kind (`io.k8s.api.apps.v1.Deployment`).
pub fn definition_name(group: &str, version: &str, kind: &str) -> Option<String> {
    if let Some(item) = kind.strip_suffix("List") {
        if crate::resources::RESOURCES
            .iter()
            .any(|r| r.group == group && r.version == version && r.kind == item)
        {
            return definition_name(group, version, item).map(|d| list_definition_name(&d));
        }
    }
    kinds()
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
        .map(|k| k.definition.clone())
}

/// All definitions reachable from the served kinds, in one dialect, keyed by
/// definition name. Generated once, then shared.
pub fn definitions(dialect: Dialect) -> &'static Map<String, Value> {
    static SWAGGER2: OnceLock<Map<String, Value>> = OnceLock::new();
    static OPENAPI3: OnceLock<Map<String, Value>> = OnceLock::new();
    let cell = match dialect {
        Dialect::Swagger2 => &SWAGGER2,
        Dialect::OpenApi3 => &OPENAPI3,
    };
    cell.get_or_init(|| generate(dialect))
}

fn generate(dialect: Dialect) -> Map<String, Value> {
    let settings = match dialect {
        // Draft 7 refs are `#/definitions/NAME`, which is Swagger 2's layout.
        Dialect::Swagger2 => SchemaSettings::draft07(),
        Dialect::OpenApi3 => SchemaSettings::openapi3(),
    };
    let mut generator = settings.into_generator();
    generate_all(&mut generator);
    let mut defs = generator.take_definitions(true);
    add_list_definitions(&mut defs, dialect);
    defs
}

/// `k8s-openapi` models lists as one generic `List<T>` without a schema, so
/// the `FooList` definitions upstream publishes are written here, in
/// upstream's shape.
fn add_list_definitions(defs: &mut Map<String, Value>, dialect: Dialect) {
    for kind in kind_list() {
        let Some(resource) = crate::resources::RESOURCES
            .iter()
            .find(|r| r.group == kind.group && r.version == kind.version && r.kind == kind.kind)
        else {
            continue;
        };
        let prefix = dialect.ref_prefix();
        let list = serde_json::json!({
            "description": format!("{}List is a list of {} objects.", kind.kind, kind.kind),
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
                "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
                "items": {
                    "type": "array",
                    "description": format!("List of {}.", resource.plural),
                    "items": {"$ref": format!("{prefix}{}", kind.definition)},
                },
                "metadata": {
                    "description": "Standard list metadata.",
                    "allOf": [{"$ref": format!("{prefix}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")}],
                },
            },
            "required": ["items"],
        });
        defs.insert(list_definition_name(&kind.definition), list);
    }
}

fn list_definition_name(definition: &str) -> String {
    format!("{definition}List")
}

/// Follow a `$ref` (in either dialect) to its definition name.
pub fn ref_name(schema: &Value) -> Option<&str> {
    let r = schema.get("$ref")?.as_str()?;
    r.rsplit('/').next()
}

/// The schema of a property of a definition, with one level of `$ref` and
/// `allOf: [$ref]` wrapping looked through: returns the property schema and,
/// when it names another definition, that name.
pub fn property<'a>(
    defs: &'a Map<String, Value>,
    definition: &str,
    field: &str,
) -> Option<(&'a Value, Option<&'a str>)> {
    let prop = defs.get(definition)?.get("properties")?.get(field)?;
    Some((prop, referenced(prop)))
}

/// The definition a schema refers to, directly or through `allOf`.
pub fn referenced(schema: &Value) -> Option<&str> {
    ref_name(schema).or_else(|| schema.get("allOf")?.as_array()?.iter().find_map(ref_name))
}

/// The element definition of an array-typed property schema, if any.
pub fn items_definition(schema: &Value) -> Option<&str> {
    referenced(schema.get("items")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_use_upstream_names() {
        assert_eq!(
            definition_name("", "v1", "Pod").unwrap(),
            "io.k8s.api.core.v1.Pod"
        );
        assert_eq!(
            definition_name("apps", "v1", "Deployment").unwrap(),
            "io.k8s.api.apps.v1.Deployment"
        );
        assert_eq!(
            definition_name("apps", "v1", "DeploymentList").unwrap(),
            "io.k8s.api.apps.v1.DeploymentList"
        );
        let defs = definitions(Dialect::Swagger2);
        assert!(defs.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert!(defs.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        assert!(defs.contains_key("io.k8s.api.core.v1.PodList"));
    }

    #[test]
    fn a_pod_spec_walk_reaches_the_container_type() {
        let defs = definitions(Dialect::Swagger2);
        let (_, spec) = property(defs, "io.k8s.api.core.v1.Pod", "spec").unwrap();
        assert_eq!(spec, Some("io.k8s.api.core.v1.PodSpec"));
        let (containers, _) = property(defs, "io.k8s.api.core.v1.PodSpec", "containers").unwrap();
        assert_eq!(
            items_definition(containers),
            Some("io.k8s.api.core.v1.Container")
        );
    }

    #[test]
    fn every_served_resource_has_a_schema() {
        for r in crate::resources::RESOURCES.iter().filter(|r| r.stored) {
            assert!(
                definition_name(r.group, r.version, r.kind).is_some(),
                "{}",
                r.kind
            );
            assert!(
                definition_name(r.group, r.version, &r.list_kind()).is_some(),
                "{}",
                r.list_kind()
            );
        }
    }
}
