//! What the API server serves, from discovery: the resources the garbage
//! collector watches and the namespace controller empties, and a mapping
//! from `apiVersion`+`kind` (as owner references name them) to resources.
//!
//! Aggregated discovery (`/api` and `/apis`, two requests) is tried first;
//! servers without it are asked group by group.

use std::collections::HashMap;

use kube::discovery::{verbs, ApiResource, Discovery, Scope};

/// One served resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub ar: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Resource {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// `group/version/plural`, a stable key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.ar.api_version, self.ar.plural)
    }

    /// `plural.group` as upstream prints a GroupResource (`pods.` for core).
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.ar.plural, self.ar.group)
    }
}

/// A discovery snapshot.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    /// Each resource once, in its group's preferred version.
    pub preferred: Vec<Resource>,
    /// Every (apiVersion, kind) served, in any version.
    kinds: HashMap<(String, String), Resource>,
}

impl Resources {
    /// A snapshot from explicit lists (tests).
    pub fn new(preferred: Vec<Resource>, all: Vec<Resource>) -> Self {
        let kinds = all
            .into_iter()
            .map(|r| ((r.ar.api_version.clone(), r.ar.kind.clone()), r))
            .collect();
        Resources { preferred, kinds }
    }

    /// The resource serving objects of `api_version`/`kind`.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        self.kinds.get(&(api_version.to_string(), kind.to_string()))
    }
}

/// Ask the server what it serves.
pub async fn discover(client: &kube::Client) -> anyhow::Result<Resources> {
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        Err(error) => {
            tracing::debug!(%error, "aggregated discovery failed; asking group by group");
            Discovery::new(client.clone()).run().await?
        }
    };
    let to_resource = |(ar, caps): (ApiResource, kube::discovery::ApiCapabilities)| Resource {
        namespaced: caps.scope == Scope::Namespaced,
        verbs: caps.operations.clone(),
        ar,
    };
    let mut preferred = Vec::new();
    let mut all = Vec::new();
    for group in discovery.groups() {
        preferred.extend(group.recommended_resources().into_iter().map(to_resource));
        for version in group.versions() {
            all.extend(
                group
                    .versioned_resources(version)
                    .into_iter()
                    .map(to_resource),
            );
        }
    }
    Ok(Resources::new(preferred, all))
}

/// Whether the garbage collector works with `resource`: upstream's
/// `GetDeletableResources` (list, watch and delete served) minus its
/// ignored resources (events, whose owner references nobody relies on).
pub fn collectable(resource: &Resource) -> bool {
    let ignored = resource.ar.plural == "events"
        && (resource.ar.group.is_empty() || resource.ar.group == "events.k8s.io");
    !ignored
        && resource.supports(verbs::LIST)
        && resource.supports(verbs::WATCH)
        && resource.supports(verbs::DELETE)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn resource(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        verbs: &[&str],
    ) -> Resource {
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Resource {
            ar: ApiResource {
                group: group.into(),
                version: version.into(),
                api_version,
                kind: kind.into(),
                plural: plural.into(),
            },
            namespaced: true,
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn the_collector_skips_events_and_what_it_cannot_watch_or_delete() {
        let all = ["list", "watch", "delete"];
        assert!(collectable(&resource("", "v1", "Pod", "pods", &all)));
        assert!(!collectable(&resource("", "v1", "Event", "events", &all)));
        assert!(!collectable(&resource(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            &all
        )));
        assert!(!collectable(&resource(
            "",
            "v1",
            "Binding",
            "bindings",
            &["create"]
        )));
        assert!(!collectable(&resource(
            "x",
            "v1",
            "Thing",
            "things",
            &["list", "watch"]
        )));
    }

    #[test]
    fn kinds_resolve_in_any_served_version() {
        let v1 = resource("apps", "v1", "Deployment", "deployments", &[]);
        let beta = resource("apps", "v1beta1", "Deployment", "deployments", &[]);
        let resources = Resources::new(vec![v1.clone()], vec![v1.clone(), beta.clone()]);
        assert_eq!(resources.resolve("apps/v1beta1", "Deployment"), Some(&beta));
        assert_eq!(resources.resolve("apps/v1", "Deployment"), Some(&v1));
        assert_eq!(resources.resolve("v1", "Deployment"), None);
        assert_eq!(v1.group_resource(), "deployments.apps");
        assert_eq!(
            resource("", "v1", "Pod", "pods", &[]).group_resource(),
            "pods."
        );
    }
}
