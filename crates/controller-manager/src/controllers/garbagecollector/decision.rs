//! What the collector does with one object, as pure functions over the
//! graph and what the server said (upstream's `attemptToDeleteItem`,
//! `classifyReferences`, `isDangling` and `processDeletingDependentsItem`).
//!
//! - Each owner reference is classified: *solid* (the owner exists),
//!   *dangling* (verified absent: deleted, or its UID is someone else's
//!   now) or *waiting* (the owner is being deleted in the foreground).
//! - No solid owner: the object is garbage and is deleted (in the
//!   foreground if an owner waits on it and it has dependents of its own,
//!   so the wait covers the whole tree).
//! - Some solid owners: references to dangling and waiting owners are
//!   removed, so neither keeps a foreground owner stuck.
//! - A foreground owner drops its finalizer once no dependent blocking its
//!   deletion is left.
//!
//! The graph can answer "solid" and "waiting" for owners it observed with
//! the right coordinates, and "dangling" for owners it saw deleted; only
//! the rest needs a live lookup. Acting on a stale graph is safe because
//! every write carries the resourceVersion it was decided on.

use serde_json::{json, Value};

use super::graph::{Graph, Identity, Node, OwnerRef, FOREGROUND, ORPHAN};

/// The state of one owner, as upstream classifies references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The owner exists and is not waiting for its dependents.
    Solid,
    /// The owner does not exist.
    Dangling,
    /// The owner is being deleted with the foregroundDeletion finalizer.
    Waiting,
}

/// A deletion's propagationPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Background,
    Foreground,
    Orphan,
}

impl Policy {
    pub fn as_kube(self) -> kube::api::PropagationPolicy {
        match self {
            Policy::Background => kube::api::PropagationPolicy::Background,
            Policy::Foreground => kube::api::PropagationPolicy::Foreground,
            Policy::Orphan => kube::api::PropagationPolicy::Orphan,
        }
    }
}

/// What to do with an object that has owner references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every owner is solid: nothing to do.
    Keep,
    /// Some owners are solid: remove the references with these UIDs
    /// (dangling owners, and owners waiting for their dependents).
    RemoveOwnerRefs(Vec<String>),
    /// No owner is solid: the object is garbage.
    Delete {
        policy: Policy,
        /// First make the object's own references non-blocking, breaking a
        /// possible foreground cycle (upstream's circle detection).
        unblock_owner_refs: bool,
    },
}

/// Upstream's decision in `attemptToDeleteItem`, given each reference's
/// verdict. `has_dependents`/`a_dependent_waits` describe the object's own
/// dependents; `finalizers` are its own.
pub fn decide(
    owners: &[(OwnerRef, Verdict)],
    has_dependents: bool,
    a_dependent_waits: bool,
    finalizers: &[String],
) -> Decision {
    let with = |v: Verdict| owners.iter().filter(move |(_, verdict)| *verdict == v);
    let solid = with(Verdict::Solid).count();
    let waiting = with(Verdict::Waiting).count();
    let dangling = with(Verdict::Dangling).count();
    if solid > 0 {
        if dangling == 0 && waiting == 0 {
            return Decision::Keep;
        }
        // A waiting owner would stay stuck behind this still-owned object
        // if the reference stayed.
        let uids = owners
            .iter()
            .filter(|(_, v)| *v != Verdict::Solid)
            .map(|(r, _)| r.uid.clone())
            .collect();
        return Decision::RemoveOwnerRefs(uids);
    }
    if waiting > 0 && has_dependents {
        // Delete in the foreground so the waiting owner also waits for
        // this object's dependents.
        return Decision::Delete {
            policy: Policy::Foreground,
            unblock_owner_refs: a_dependent_waits,
        };
    }
    let has = |f: &str| finalizers.iter().any(|x| x == f);
    let policy = if has(ORPHAN) {
        Policy::Orphan
    } else if has(FOREGROUND) {
        Policy::Foreground
    } else {
        Policy::Background
    };
    Decision::Delete {
        policy,
        unblock_owner_refs: false,
    }
}

/// What can be said about one owner reference without the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Known(Verdict),
    /// Ask the server (and record `absent` if it has no such owner).
    AskServer {
        absent: Identity,
    },
    /// A cluster-scoped object naming a namespaced owner: invalid, and no
    /// retry will fix it (upstream leaves such objects alone).
    NamespacedOwnerOfClusterScoped,
}

/// Upstream's `isDangling`, up to the live GET: the absent-owner cache,
/// then (beyond upstream, which always asks the server) the graph's
/// observed owner when its coordinates are exactly those referenced.
pub fn lookup_owner(
    graph: &Graph,
    item: &Identity,
    reference: &OwnerRef,
    owner_namespaced: bool,
) -> Lookup {
    // Checked before the absent cache (upstream checks it after): such a
    // reference can never be resolved, so it must never count as gone.
    if item.namespace.is_empty() && owner_namespaced {
        return Lookup::NamespacedOwnerOfClusterScoped;
    }
    let cluster_key = Identity::of_reference(reference, "");
    let namespaced_key = Identity::of_reference(reference, &item.namespace);
    if graph.is_absent(&cluster_key) || graph.is_absent(&namespaced_key) {
        return Lookup::Known(Verdict::Dangling);
    }
    if let Some(owner) = graph.node(&reference.uid) {
        let same_place = !owner_namespaced || owner.identity.namespace == item.namespace;
        if owner.observed && same_place && owner.identity.matches(reference) {
            return Lookup::Known(verdict_of(owner.being_deleted, &owner.finalizers));
        }
    }
    Lookup::AskServer {
        absent: if owner_namespaced {
            namespaced_key
        } else {
            cluster_key
        },
    }
}

/// The verdict on a live owner found by name: dangling when missing or a
/// different object (another UID) now has the name.
pub fn verdict_of_live(reference: &OwnerRef, live: Option<(&str, bool, &[String])>) -> Verdict {
    match live {
        Some((uid, deleting, finalizers)) if uid == reference.uid => {
            verdict_of(deleting, finalizers)
        }
        _ => Verdict::Dangling,
    }
}

fn verdict_of(deleting: bool, finalizers: &[String]) -> Verdict {
    if deleting && finalizers.iter().any(|f| f == FOREGROUND) {
        Verdict::Waiting
    } else {
        Verdict::Solid
    }
}

/// An owner being deleted in the foreground: done, or waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Foreground {
    /// No blocking dependent remains: remove the foregroundDeletion
    /// finalizer.
    RemoveFinalizer,
    /// Blocking dependents remain; these (not themselves waiting on their
    /// own dependents) should be looked at.
    Wait(Vec<String>),
}

/// Upstream's `processDeletingDependentsItem`.
pub fn finish_foreground(blocking: &[&Node]) -> Foreground {
    if blocking.is_empty() {
        return Foreground::RemoveFinalizer;
    }
    Foreground::Wait(
        blocking
            .iter()
            .filter(|d| !d.deleting_dependents)
            .map(|d| d.identity.uid.clone())
            .collect(),
    )
}

/// A strategic merge patch deleting the references with `uids` (by their
/// merge key), as upstream's `GenerateDeleteOwnerRefStrategicMergeBytes`.
pub fn remove_refs_strategic(item_uid: &str, uids: &[String]) -> Value {
    let refs: Vec<Value> = uids
        .iter()
        .map(|u| json!({"$patch": "delete", "uid": u}))
        .collect();
    json!({"metadata": {"ownerReferences": refs, "uid": item_uid}})
}

/// A strategic merge patch making every blocking reference non-blocking.
pub fn unblock_strategic(item_uid: &str, owners: &[OwnerRef]) -> Value {
    let refs: Vec<Value> = owners
        .iter()
        .filter(|o| o.block_owner_deletion)
        .map(|o| {
            json!({
                "apiVersion": o.api_version,
                "kind": o.kind,
                "name": o.name,
                "uid": o.uid,
                "controller": o.controller,
                "blockOwnerDeletion": false,
            })
        })
        .collect();
    json!({"metadata": {"ownerReferences": refs, "uid": item_uid}})
}

/// A JSON merge patch writing `owners` as the whole list, pinned to the
/// resourceVersion it was computed from (for resources without strategic
/// merge support).
pub fn owner_refs_merge(resource_version: &str, owners: &[Value]) -> Value {
    let list = if owners.is_empty() {
        Value::Null
    } else {
        Value::Array(owners.to_vec())
    };
    json!({"metadata": {"ownerReferences": list, "resourceVersion": resource_version}})
}

/// A JSON merge patch removing `finalizer`, pinned to the resourceVersion
/// the finalizers were read at; `None` if it is not there.
pub fn remove_finalizer_merge(
    resource_version: &str,
    finalizers: &[String],
    finalizer: &str,
) -> Option<Value> {
    if !finalizers.iter().any(|f| f == finalizer) {
        return None;
    }
    let rest: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
    let list = if rest.is_empty() {
        Value::Null
    } else {
        json!(rest)
    };
    Some(json!({"metadata": {"finalizers": list, "resourceVersion": resource_version}}))
}

#[cfg(test)]
mod tests {
    use super::super::graph::{Change, Observed};
    use super::*;

    fn reference(name: &str, block: bool) -> OwnerRef {
        OwnerRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: false,
            block_owner_deletion: block,
        }
    }

    fn fins(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn which_objects_are_garbage() {
        use Verdict::*;
        let a = reference("a", true);
        let b = reference("b", false);
        let delete = |policy| Decision::Delete {
            policy,
            unblock_owner_refs: false,
        };
        /// (what, owners' verdicts, has dependents, a dependent waits,
        /// own finalizers, decision)
        type Case = (
            &'static str,
            Vec<(OwnerRef, Verdict)>,
            bool,
            bool,
            Vec<String>,
            Decision,
        );
        let cases: Vec<Case> = vec![
            (
                "every owner alive",
                vec![(a.clone(), Solid), (b.clone(), Solid)],
                false,
                false,
                vec![],
                Decision::Keep,
            ),
            (
                "one owner gone, one alive: drop the dangling reference",
                vec![(a.clone(), Solid), (b.clone(), Dangling)],
                false,
                false,
                vec![],
                Decision::RemoveOwnerRefs(vec!["uid-b".into()]),
            ),
            (
                "an alive owner and a foreground owner: leave the foreground one",
                vec![(a.clone(), Waiting), (b.clone(), Solid)],
                true,
                false,
                vec![],
                Decision::RemoveOwnerRefs(vec!["uid-a".into()]),
            ),
            (
                "every owner gone",
                vec![(a.clone(), Dangling), (b.clone(), Dangling)],
                true,
                false,
                vec![],
                delete(Policy::Background),
            ),
            (
                "every owner gone, the object already orphaning: honour it",
                vec![(a.clone(), Dangling)],
                false,
                false,
                fins(&[ORPHAN]),
                delete(Policy::Orphan),
            ),
            (
                "every owner gone, the object already in the foreground: honour it",
                vec![(a.clone(), Dangling)],
                false,
                false,
                fins(&[FOREGROUND]),
                delete(Policy::Foreground),
            ),
            (
                "a foreground owner, no dependents of its own: plain delete",
                vec![(a.clone(), Waiting), (b.clone(), Dangling)],
                false,
                false,
                vec![],
                delete(Policy::Background),
            ),
            (
                "a foreground owner and dependents of its own: foreground",
                vec![(a.clone(), Waiting)],
                true,
                false,
                vec![],
                delete(Policy::Foreground),
            ),
            (
                "a foreground owner and a dependent waiting too: unblock first",
                vec![(a.clone(), Waiting)],
                true,
                true,
                vec![],
                Decision::Delete {
                    policy: Policy::Foreground,
                    unblock_owner_refs: true,
                },
            ),
        ];
        for (name, owners, has_deps, dep_waits, finalizers, want) in cases {
            assert_eq!(
                decide(&owners, has_deps, dep_waits, &finalizers),
                want,
                "{name}"
            );
        }
    }

    fn graph_with_owner(owner: &Identity, deleting: bool, finalizers: &[&str]) -> Graph {
        let mut graph = Graph::new();
        graph.apply(Change::Observed(Observed {
            identity: owner.clone(),
            owners: vec![],
            resource_version: "1".into(),
            finalizers: fins(finalizers),
            deleting,
        }));
        graph
    }

    fn item(ns: &str) -> Identity {
        Identity {
            namespace: ns.into(),
            name: "item".into(),
            api_version: "v1".into(),
            kind: "Pod".into(),
            uid: "uid-item".into(),
        }
    }

    #[test]
    fn owners_the_graph_observed_need_no_lookup() {
        let owner = Identity::of_reference(&reference("a", true), "ns");
        let r = reference("a", true);
        let graph = graph_with_owner(&owner, false, &[]);
        assert_eq!(
            lookup_owner(&graph, &item("ns"), &r, true),
            Lookup::Known(Verdict::Solid)
        );
        let graph = graph_with_owner(&owner, true, &[FOREGROUND]);
        assert_eq!(
            lookup_owner(&graph, &item("ns"), &r, true),
            Lookup::Known(Verdict::Waiting)
        );
        // Being deleted without the foreground finalizer is still solid.
        let graph = graph_with_owner(&owner, true, &[ORPHAN]);
        assert_eq!(
            lookup_owner(&graph, &item("ns"), &r, true),
            Lookup::Known(Verdict::Solid)
        );
    }

    #[test]
    fn owners_elsewhere_or_unseen_are_looked_up() {
        let r = reference("a", true);
        let owner = Identity::of_reference(&r, "ns");
        let graph = graph_with_owner(&owner, false, &[]);
        // The same owner seen from another namespace: a namespaced owner
        // can only be in its dependent's namespace; the server decides.
        assert_eq!(
            lookup_owner(&graph, &item("other"), &r, true),
            Lookup::AskServer {
                absent: owner.in_namespace("other")
            }
        );
        // A different name under the same UID: ask.
        let renamed = OwnerRef {
            name: "b".into(),
            ..r.clone()
        };
        assert!(matches!(
            lookup_owner(&graph, &item("ns"), &renamed, true),
            Lookup::AskServer { .. }
        ));
        // Cluster-scoped owners are recorded absent without a namespace.
        let empty = Graph::new();
        assert_eq!(
            lookup_owner(&empty, &item("ns"), &r, false),
            Lookup::AskServer {
                absent: owner.in_namespace("")
            }
        );
    }

    #[test]
    fn absent_owners_dangle_and_cluster_scoped_items_cannot_have_namespaced_owners() {
        let r = reference("a", false);
        let mut graph = Graph::new();
        graph.mark_absent(Identity::of_reference(&r, "ns"));
        assert_eq!(
            lookup_owner(&graph, &item("ns"), &r, true),
            Lookup::Known(Verdict::Dangling)
        );
        assert!(matches!(
            lookup_owner(&graph, &item("elsewhere"), &r, true),
            Lookup::AskServer { .. }
        ));
        assert_eq!(
            lookup_owner(&Graph::new(), &item(""), &r, true),
            Lookup::NamespacedOwnerOfClusterScoped
        );
    }

    #[test]
    fn a_live_owner_with_another_uid_is_not_the_owner() {
        let r = reference("a", false);
        assert_eq!(verdict_of_live(&r, None), Verdict::Dangling);
        assert_eq!(
            verdict_of_live(&r, Some(("someone-else", false, &[]))),
            Verdict::Dangling
        );
        assert_eq!(
            verdict_of_live(&r, Some(("uid-a", false, &[]))),
            Verdict::Solid
        );
        assert_eq!(
            verdict_of_live(&r, Some(("uid-a", true, &fins(&[FOREGROUND])))),
            Verdict::Waiting
        );
    }

    #[test]
    fn a_foreground_owner_finishes_when_no_blocking_dependent_is_left() {
        assert_eq!(finish_foreground(&[]), Foreground::RemoveFinalizer);
        let owner = Identity::of_reference(&reference("a", true), "ns");
        let mut graph = graph_with_owner(&owner, true, &[FOREGROUND]);
        for (name, block) in [("blocking", true), ("free", false)] {
            graph.apply(Change::Observed(Observed {
                identity: Identity {
                    name: name.into(),
                    uid: format!("uid-{name}"),
                    ..item("ns")
                },
                owners: vec![reference("a", block)],
                resource_version: "1".into(),
                finalizers: vec![],
                deleting: false,
            }));
        }
        let blocking = graph.blocking_dependents(&owner.uid);
        assert_eq!(
            finish_foreground(&blocking),
            Foreground::Wait(vec!["uid-blocking".into()])
        );
    }

    #[test]
    fn patches_are_pinned_or_keyed() {
        assert_eq!(
            remove_refs_strategic("me", &["x".into()]),
            json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "x"}], "uid": "me"}})
        );
        let p = unblock_strategic("me", &[reference("a", true), reference("b", false)]);
        assert_eq!(
            p["metadata"]["ownerReferences"].as_array().unwrap().len(),
            1
        );
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
            false
        );
        assert_eq!(
            owner_refs_merge("7", &[]),
            json!({"metadata": {"ownerReferences": null, "resourceVersion": "7"}})
        );
        assert_eq!(
            remove_finalizer_merge("3", &fins(&[FOREGROUND, "x/y"]), FOREGROUND),
            Some(json!({"metadata": {"finalizers": ["x/y"], "resourceVersion": "3"}}))
        );
        assert_eq!(
            remove_finalizer_merge("3", &fins(&[ORPHAN]), ORPHAN),
            Some(json!({"metadata": {"finalizers": null, "resourceVersion": "3"}}))
        );
        assert_eq!(remove_finalizer_merge("3", &[], ORPHAN), None);
    }
}
