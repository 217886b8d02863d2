//! The dependency invariants of docs/ARCHITECTURE.md, checked against
//! `cargo metadata` so that a manifest change breaking them fails a test.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let ours: BTreeSet<String> = packages
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str().map(str::to_string))
                .filter(|n| ours.contains(n))
                .collect();
            (p["name"].as_str().unwrap_or_default().to_string(), deps)
        })
        .collect()
}

#[test]
fn the_api_crate_depends_on_none_of_ours() {
    let deps = workspace_dependencies();
    assert_eq!(deps["tugboat-api"], BTreeSet::new());
}

#[test]
fn storage_depends_on_none_of_ours() {
    let deps = workspace_dependencies();
    assert_eq!(deps["tugboat-storage"], BTreeSet::new());
}

#[test]
fn spdy_depends_on_none_of_ours() {
    let deps = workspace_dependencies();
    assert_eq!(deps["tugboat-spdy"], BTreeSet::new());
}

#[test]
fn component_base_depends_on_none_of_ours() {
    let deps = workspace_dependencies();
    assert_eq!(deps["tugboat-component-base"], BTreeSet::new());
}

#[test]
fn the_apiserver_depends_only_on_api_and_storage() {
    let deps = workspace_dependencies();
    let allowed: BTreeSet<String> = ["tugboat-api", "tugboat-storage"].map(String::from).into();
    assert!(
        deps["tugboat-apiserver"].is_subset(&allowed),
        "tugboat-apiserver depends on {:?}",
        deps["tugboat-apiserver"]
    );
}

#[test]
fn components_never_depend_on_each_other_or_on_the_apiserver() {
    let deps = workspace_dependencies();
    let components = [
        "tugboat-scheduler",
        "tugboat-controller-manager",
        "tugboat-kubelet",
        "tugboat-kube-proxy",
        "tugboat-kubectl",
    ];
    for component in components.iter().filter(|c| deps.contains_key(**c)) {
        for other in components
            .iter()
            .chain(["tugboat-apiserver", "tugboat-storage"].iter())
        {
            assert!(
                !deps[*component].contains(*other),
                "{component} must not depend on {other}"
            );
        }
    }
}

#[test]
fn nothing_depends_on_the_all_in_one_tugboat() {
    let deps = workspace_dependencies();
    assert!(deps.contains_key("tugboat"), "the tugboat crate exists");
    for (package, uses) in &deps {
        assert!(
            !uses.contains("tugboat"),
            "{package} must not depend on tugboat (it links the components, not the other way)"
        );
    }
}
