//! Discovery documents, built from the resource table.
//!
//! Both forms upstream serves: the legacy one (`/api`, `/apis`,
//! `/apis/{group}/{version}` resource lists) and the aggregated one
//! (`apidiscovery.k8s.io` `APIGroupDiscoveryList`, v2 and v2beta1) that
//! kubectl 1.27+ asks for in one request on `/api` and `/apis`.

use api::resources::{self, ResourceInfo, RESOURCES};
use serde_json::{json, Value};

/// One subresource as discovery lists it.
struct Sub {
    name: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
}

fn subresources(r: &ResourceInfo) -> Vec<Sub> {
    let mut out = Vec::new();
    let same = |name, verbs| Sub {
        name,
        group: r.group,
        version: r.version,
        kind: r.kind,
        verbs,
    };
    if r.kind == "Namespace" {
        out.push(same("finalize", &["update"]));
    }
    if r.subresources.binding {
        out.push(Sub {
            name: "binding",
            group: "",
            version: "v1",
            kind: "Binding",
            verbs: &["create"],
        });
    }
    if r.subresources.eviction {
        out.push(Sub {
            name: "eviction",
            group: "policy",
            version: "v1",
            kind: "Eviction",
            verbs: &["create"],
        });
    }
    if r.subresources.log {
        // The subresources the API server proxies to the pod's kubelet.
        // Upstream lists the log as a Pod-kind subresource, `get` only;
        // the streaming ones by their options kinds, `create` and `get`.
        out.push(Sub {
            kind: "PodAttachOptions",
            ..same("attach", &["create", "get"])
        });
        out.push(Sub {
            kind: "PodExecOptions",
            ..same("exec", &["create", "get"])
        });
        out.push(same("log", &["get"]));
        out.push(Sub {
            kind: "PodPortForwardOptions",
            ..same("portforward", &["create", "get"])
        });
    }
    if r.kind == "Node" {
        out.push(Sub {
            kind: "NodeProxyOptions",
            ..same("proxy", &["create", "delete", "get", "patch", "update"])
        });
    }
    if r.subresources.scale {
        out.push(Sub {
            name: "scale",
            group: "autoscaling",
            version: "v1",
            kind: "Scale",
            verbs: &["get", "patch", "update"],
        });
    }
    if r.subresources.approval {
        out.push(same("approval", &["get", "patch", "update"]));
    }
    if r.subresources.status {
        out.push(same("status", &["get", "patch", "update"]));
    }
    out
}

/// `/api`: the legacy group's versions.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(group: &str) -> Value {
    let version = RESOURCES
        .iter()
        .find(|r| r.group == group)
        .map(|r| r.version)
        .unwrap_or("v1");
    let gv = format!("{group}/{version}");
    json!({
        "name": group,
        "versions": [{"groupVersion": gv, "version": version}],
        "preferredVersion": {"groupVersion": gv, "version": version},
    })
}

/// `/apis`: every named group.
pub fn groups() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(group_json)
        .chain([crate::metrics_api::group_json()])
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub fn group(group: &str) -> Option<Value> {
    if group == crate::metrics_api::GROUP {
        let mut g = crate::metrics_api::group_json();
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        return Some(g);
    }
    if group.is_empty() || !RESOURCES.iter().any(|r| r.group == group) {
        return None;
    }
    let mut g = group_json(group);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// `/api/v1` or `/apis/{group}/{version}`: the resource list.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if (group, version) == (crate::metrics_api::GROUP, crate::metrics_api::VERSION) {
        return Some(crate::metrics_api::resource_list());
    }
    let mut list = Vec::new();
    for r in resources::in_group_version(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        for sub in subresources(r) {
            let mut s = json!({
                "name": format!("{}/{}", r.plural, sub.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if sub.group != r.group || sub.version != r.version {
                s["group"] = json!(sub.group);
                s["version"] = json!(sub.version);
            }
            list.push(s);
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": list,
    }))
}

/// Which aggregated discovery version a client accepts, if any.
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    let wants = |v: &str| {
        accept.split(',').any(|part| {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            params.contains(&"g=apidiscovery.k8s.io")
                && params.contains(&"as=APIGroupDiscoveryList")
                && params.contains(&format!("v={v}").as_str())
        })
    };
    if wants("v2") {
        Some("v2")
    } else if wants("v2beta1") {
        Some("v2beta1")
    } else {
        None
    }
}

/// The content type of an aggregated discovery answer.
pub fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

/// The aggregated document for `/api` (core) or `/apis` (named groups).
pub fn aggregated(core: bool, version: &str) -> Value {
    let mut items: Vec<Value> = resources::groups()
        .into_iter()
        .filter(|g| g.is_empty() == core)
        .map(|group| {
            let gv_version = RESOURCES
                .iter()
                .find(|r| r.group == group)
                .map(|r| r.version)
                .unwrap_or("v1");
            let resources: Vec<Value> = resources::in_group_version(group, gv_version)
                .map(|r| {
                    let subs: Vec<Value> = subresources(r)
                        .into_iter()
                        .map(|s| {
                            json!({
                                "subresource": s.name,
                                "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                                "verbs": s.verbs,
                            })
                        })
                        .collect();
                    let mut entry = json!({
                        "resource": r.plural,
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": r.verbs,
                    });
                    if !r.short_names.is_empty() {
                        entry["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        entry["categories"] = json!(r.categories);
                    }
                    if !subs.is_empty() {
                        entry["subresources"] = json!(subs);
                    }
                    entry
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !group.is_empty() {
                metadata["name"] = json!(group);
            }
            json!({
                "metadata": metadata,
                "versions": [{"version": gv_version, "resources": resources, "freshness": "Current"}],
            })
        })
        .collect();
    if !core {
        items.push(crate::metrics_api::aggregated_item());
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// `/version`.
pub fn version() -> Value {
    let (major, minor, patch) = api::KUBERNETES_VERSION;
    json!({
        "major": major.to_string(),
        "minor": minor.to_string(),
        "gitVersion": format!("v{major}.{minor}.{patch}-tugboat"),
        "gitCommit": option_env!("TUGBOAT_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", other => other }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_headers_select_aggregated_discovery() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(kubectl), Some("v2"));
        let old = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(old), Some("v2beta1"));
        assert_eq!(aggregated_version("application/json"), None);
    }

    #[test]
    fn core_resource_list_has_pods_and_their_subresources() {
        let list = resource_list("", "v1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for n in [
            "pods",
            "pods/status",
            "pods/binding",
            "pods/eviction",
            "pods/log",
            "pods/exec",
            "pods/attach",
            "pods/portforward",
            "nodes/proxy",
            "namespaces/finalize",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        assert!(resource_list("apps", "v2").is_none());
    }

    #[test]
    fn aggregated_documents_split_core_from_named_groups() {
        let core = aggregated(true, "v2");
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        let named = aggregated(false, "v2");
        let apps = named["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .unwrap();
        let deploy = &apps["versions"][0]["resources"][0];
        assert_eq!(deploy["resource"], "deployments");
        assert_eq!(deploy["subresources"][0]["subresource"], "scale");
    }
}
