//! What a request path means: upstream's `RequestInfo`, parsed purely.
//!
//! `/api/v1/namespaces/ns/pods/web/status` becomes the pods resource,
//! namespace `ns`, name `web`, subresource `status`. Non-resource paths
//! (discovery, OpenAPI, health) are told apart here too, so the router stays
//! one small match.

use api::resources::{self, ResourceInfo};

/// A request for a resource (collection or object), with its coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub resource: &'static ResourceInfo,
    /// Set for namespaced requests (`/namespaces/{ns}/{resource}/...`); a
    /// namespace object's own name is in `name`.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// The parsed meaning of a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A served resource.
    Resource(ResourcePath),
    /// `/api` (legacy core group versions).
    CoreVersions,
    /// `/apis` (group list).
    Groups,
    /// `/api/v1` or `/apis/{group}/{version}`: resource list of one version.
    GroupVersion { group: String, version: String },
    /// `/apis/{group}`: one group.
    Group { group: String },
    /// `/apis/{group}/{version}/...` or `/api/v1/...` naming nothing served.
    UnknownResource {
        group: String,
        version: String,
        resource: String,
    },
    /// Anything else (`/version`, `/openapi/...`, `/healthz`...).
    Other,
}

/// Parse a request path (without query string).
pub fn parse(path: &str) -> Target {
    let segments: Vec<&str> = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .collect();
    match segments.as_slice() {
        ["api"] => Target::CoreVersions,
        ["apis"] => Target::Groups,
        ["api", version] => Target::GroupVersion {
            group: String::new(),
            version: (*version).to_string(),
        },
        ["apis", group] => Target::Group {
            group: (*group).to_string(),
        },
        ["apis", group, version] => Target::GroupVersion {
            group: (*group).to_string(),
            version: (*version).to_string(),
        },
        ["api", version, rest @ ..] => resource_target("", version, rest),
        ["apis", group, version, rest @ ..] => resource_target(group, version, rest),
        _ => Target::Other,
    }
}

fn resource_target(group: &str, version: &str, rest: &[&str]) -> Target {
    let unknown = |resource: &str| Target::UnknownResource {
        group: group.to_string(),
        version: version.to_string(),
        resource: resource.to_string(),
    };
    if rest.iter().any(|s| s.is_empty()) {
        return unknown(rest.first().copied().unwrap_or(""));
    }
    // `/namespaces/{ns}/{resource}/...` when {resource} is namespaced;
    // otherwise `/namespaces/{name}[/status|/finalize]` is the namespace itself.
    if let ["namespaces", ns, plural, tail @ ..] = rest {
        if let Some(resource) = resources::find(group, version, plural) {
            if resource.namespaced && tail.len() <= 2 {
                return Target::Resource(ResourcePath {
                    resource,
                    namespace: Some((*ns).to_string()),
                    name: tail.first().map(|s| (*s).to_string()),
                    subresource: tail.get(1).map(|s| (*s).to_string()),
                });
            }
        }
    }
    let [plural, tail @ ..] = rest else {
        return unknown("");
    };
    let Some(resource) = resources::find(group, version, plural) else {
        return unknown(plural);
    };
    if tail.len() > 2 {
        return unknown(plural);
    }
    Target::Resource(ResourcePath {
        resource,
        namespace: None,
        name: tail.first().map(|s| (*s).to_string()),
        subresource: tail.get(1).map(|s| (*s).to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse(path) {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_object_paths_give_namespace_name_and_subresource() {
        let r = res("/api/v1/namespaces/ns/pods/web/status");
        assert_eq!(r.resource.plural, "pods");
        assert_eq!(r.namespace.as_deref(), Some("ns"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn namespace_objects_are_cluster_scoped_paths() {
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(r.resource.plural, "namespaces");
        assert_eq!(r.namespace, None);
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        let f = res("/api/v1/namespaces/x/finalize");
        assert_eq!(f.subresource.as_deref(), Some("finalize"));
    }

    #[test]
    fn all_namespace_lists_and_group_paths_parse() {
        let r = res("/apis/apps/v1/deployments");
        assert_eq!(r.resource.kind, "Deployment");
        assert_eq!(r.namespace, None);
        assert_eq!(r.name, None);
        let r = res("/apis/apps/v1/namespaces/default/deployments/d/scale");
        assert_eq!(r.subresource.as_deref(), Some("scale"));
    }

    #[test]
    fn discovery_and_unknown_paths_are_told_apart() {
        assert_eq!(parse("/api"), Target::CoreVersions);
        assert_eq!(parse("/apis/"), Target::Groups);
        assert!(matches!(
            parse("/apis/apps/v1"),
            Target::GroupVersion { .. }
        ));
        assert!(matches!(parse("/apis/apps"), Target::Group { .. }));
        assert!(matches!(
            parse("/api/v1/widgets"),
            Target::UnknownResource { .. }
        ));
        assert!(matches!(
            parse("/api/v1/pods/a/b/c"),
            Target::UnknownResource { .. }
        ));
        assert_eq!(parse("/version"), Target::Other);
        let review = res("/apis/authentication.k8s.io/v1/selfsubjectreviews");
        assert_eq!(review.resource.kind, "SelfSubjectReview");
    }
}
