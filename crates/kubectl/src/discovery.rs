//! Which resources the server serves, from its discovery documents
//! (`/api/v1`, `/apis/<group>/<preferred version>`), and how a user's word
//! (`po`, `deploy`, `deployments.apps`, `Deployment`, `all`) resolves to
//! them. Every command resolves types through here, so every served
//! resource, short name and category works without a built-in list.

use kube::core::ApiResource;
use serde_json::Value;

/// One served resource at its group's preferred version.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub categories: Vec<String>,
}

impl Resource {
    /// kube-rs's description of the type, for URLs and dynamic objects.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// `v1`, `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pod`, `deployment.apps`: the prefix of `-o name` and multi-type
    /// tables.
    pub fn kind_group(&self) -> String {
        crate::printers::kind_group(&self.kind, &self.group)
    }

    /// `pods`, `deployments.apps`: how kubectl names the type in messages.
    pub fn plural_group(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// Parse one `APIResourceList` document; subresources are skipped.
pub fn parse_resource_list(doc: &Value) -> Vec<Resource> {
    let gv = doc["groupVersion"].as_str().unwrap_or("v1");
    let (group, version) = match gv.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), gv.to_string()),
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    doc["resources"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
        .iter()
        .filter_map(|r| {
            let plural = r["name"].as_str()?;
            if plural.contains('/') {
                return None;
            }
            let kind = r["kind"].as_str().unwrap_or("").to_string();
            let singular = match r["singularName"].as_str() {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => kind.to_lowercase(),
            };
            Some(Resource {
                group: group.clone(),
                version: version.clone(),
                kind,
                plural: plural.to_string(),
                singular,
                short_names: strings(&r["shortNames"]),
                namespaced: r["namespaced"].as_bool().unwrap_or(false),
                verbs: strings(&r["verbs"]),
                categories: strings(&r["categories"]),
            })
        })
        .collect()
}

/// Every served resource, core group first, then groups in the server's
/// order.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub resources: Vec<Resource>,
}

impl Catalog {
    /// Resolve a type word. `all` and other categories expand to every
    /// member; otherwise the first match (core before other groups) wins.
    pub fn resolve(&self, word: &str) -> Result<Vec<Resource>, String> {
        let lower = word.to_lowercase();
        let by_category: Vec<Resource> = self
            .resources
            .iter()
            .filter(|r| r.categories.contains(&lower))
            .cloned()
            .collect();
        if !by_category.is_empty() {
            return Ok(by_category);
        }
        // `name`, `name.group` or `name.version.group`.
        let candidates = std::iter::once((lower.as_str(), None, None)).chain(
            lower.match_indices('.').map(|(i, _)| {
                let (name, rest) = (&lower[..i], &lower[i + 1..]);
                match rest.split_once('.') {
                    Some((v, g))
                        if self
                            .resources
                            .iter()
                            .any(|r| r.version == v && r.group == g) =>
                    {
                        (name, Some(v), Some(g))
                    }
                    _ => (name, None, Some(rest)),
                }
            }),
        );
        for (name, version, group) in candidates {
            let found = self.resources.iter().find(|r| {
                (r.plural == name
                    || r.singular == name
                    || r.kind.to_lowercase() == name
                    || r.short_names.iter().any(|s| s == name))
                    && group.is_none_or(|g| r.group == g)
                    && version.is_none_or(|v| r.version == v)
            });
            if let Some(r) = found {
                return Ok(vec![r.clone()]);
            }
        }
        Err(format!(
            "the server doesn't have a resource type \"{word}\""
        ))
    }

    /// The resource for a manifest's `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Resource> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.resources
            .iter()
            .find(|r| r.group == group && r.kind == kind)
            .map(|r| Resource {
                version: version.to_string(),
                ..r.clone()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        let core = json!({"groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "shortNames": ["po"], "categories": ["all"], "verbs": ["get"]},
            {"name": "pods/log", "namespaced": true, "kind": "Pod"},
            {"name": "events", "singularName": "", "namespaced": true, "kind": "Event", "shortNames": ["ev"]},
            {"name": "namespaces", "namespaced": false, "kind": "Namespace", "shortNames": ["ns"]}
        ]});
        let apps = json!({"groupVersion": "apps/v1", "resources": [
            {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "shortNames": ["deploy"], "categories": ["all"]}
        ]});
        let events = json!({"groupVersion": "events.k8s.io/v1", "resources": [
            {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event", "shortNames": ["ev"]}
        ]});
        let mut resources = parse_resource_list(&core);
        resources.extend(parse_resource_list(&apps));
        resources.extend(parse_resource_list(&events));
        Catalog { resources }
    }

    #[test]
    fn words_resolve_to_resources() {
        let c = catalog();
        let cases = [
            ("pods", "pods"),
            ("pod", "pods"),
            ("po", "pods"),
            ("Pod", "pods"),
            ("PODS", "pods"),
            ("deploy", "deployments.apps"),
            ("deployments.apps", "deployments.apps"),
            ("deployments.v1.apps", "deployments.apps"),
            ("deployment.apps", "deployments.apps"),
            ("ns", "namespaces"),
            ("events", "events"),
            ("ev", "events"),
            ("events.events.k8s.io", "events.events.k8s.io"),
            ("event", "events"),
        ];
        for (word, want) in cases {
            let got = c.resolve(word).unwrap_or_else(|e| panic!("{word}: {e}"));
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].plural_group(), want, "{word}");
        }
        let all: Vec<String> = c
            .resolve("all")
            .unwrap()
            .iter()
            .map(|r| r.kind_group())
            .collect();
        assert_eq!(all, ["pod", "deployment.apps"]);
        assert_eq!(
            c.resolve("pods/log").unwrap_err(),
            "the server doesn't have a resource type \"pods/log\""
        );
        assert_eq!(
            c.resolve("nope").unwrap_err(),
            "the server doesn't have a resource type \"nope\""
        );
        assert_eq!(
            c.resolve("deploy.nogroup").unwrap_err(),
            "the server doesn't have a resource type \"deploy.nogroup\""
        );
    }

    #[test]
    fn manifests_find_their_resource() {
        let c = catalog();
        assert_eq!(
            c.by_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert!(!c.by_kind("v1", "Namespace").unwrap().namespaced);
        assert!(c.by_kind("v1", "Deployment").is_none());
        let r = c.resources[0].api_resource();
        assert_eq!((r.api_version.as_str(), r.plural.as_str()), ("v1", "pods"));
    }
}
