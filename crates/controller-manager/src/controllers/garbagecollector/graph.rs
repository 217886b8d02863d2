//! The ownership graph (upstream's `GraphBuilder` and `node`), as a pure
//! data structure fed one observed change at a time.
//!
//! - Every observed object is a node keyed by UID, holding its owner
//!   references; every owner holds the set of its dependents.
//! - An owner referenced before it is observed gets a *virtual* node whose
//!   coordinates are guessed from the reference; it is handed to the
//!   collector to verify with a live GET, which either finds it (and the
//!   watch will soon observe it) or reports a [`Change::VirtualDeleted`].
//! - Deletions remember the deleted identity in a bounded absent-owner
//!   cache, so a thousand pods of one deleted ReplicaSet cost no lookups.
//! - [`Graph::apply`] answers with [`Work`]: which objects to look at
//!   (attemptToDelete), which owners to orphan from (attemptToOrphan), and
//!   the `OwnerRefInvalidNamespace` warnings upstream records.
//!
//! The graph never talks to the server: the executor feeds it watch events
//! and acts on the work it returns.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The finalizer of an owner waiting for its blocking dependents.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an owner whose dependents must be orphaned first.
pub const ORPHAN: &str = "orphan";

/// How many verified-absent owners are remembered (upstream keeps 500;
/// a mass deletion of thousands of owners should not evict its own
/// entries before their dependents are processed).
const ABSENT_CAPACITY: usize = 10_000;

/// Upstream's `objectReference`: an object's coordinates. The field order
/// is the sort order upstream uses to pick alternate identities
/// (namespace, name, apiVersion, kind).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Identity {
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    pub api_version: String,
    pub kind: String,
    pub uid: String,
}

impl Identity {
    /// The coordinates an owner reference points at, as seen from an
    /// object in `namespace`.
    pub fn of_reference(reference: &OwnerRef, namespace: &str) -> Identity {
        Identity {
            namespace: namespace.to_string(),
            name: reference.name.clone(),
            api_version: reference.api_version.clone(),
            kind: reference.kind.clone(),
            uid: reference.uid.clone(),
        }
    }

    /// Whether `reference` names exactly this object (UID, name, kind and
    /// apiVersion; upstream's `ownerReferenceMatchesCoordinates`).
    pub fn matches(&self, reference: &OwnerRef) -> bool {
        self.uid == reference.uid
            && self.name == reference.name
            && self.kind == reference.kind
            && self.api_version == reference.api_version
    }

    /// The same coordinates in another namespace.
    pub fn in_namespace(&self, namespace: &str) -> Identity {
        Identity {
            namespace: namespace.to_string(),
            ..self.clone()
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}/{}, namespace: {}, name: {}, uid: {}]",
            self.api_version, self.kind, self.namespace, self.name, self.uid
        )
    }
}

/// One owner reference, with the flags that matter to the collector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
    pub block_owner_deletion: bool,
}

impl From<&OwnerReference> for OwnerRef {
    fn from(r: &OwnerReference) -> Self {
        OwnerRef {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            name: r.name.clone(),
            uid: r.uid.clone(),
            controller: r.controller == Some(true),
            block_owner_deletion: r.block_owner_deletion == Some(true),
        }
    }
}

/// What a watch event tells the graph about one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub identity: Identity,
    pub owners: Vec<OwnerRef>,
    pub resource_version: String,
    pub finalizers: Vec<String>,
    /// deletionTimestamp is set.
    pub deleting: bool,
}

impl Observed {
    /// The observation of an object of `api_version`/`kind` from its
    /// metadata; `None` without a UID (nothing can own or be owned then).
    pub fn from_meta(api_version: &str, kind: &str, meta: &ObjectMeta) -> Option<Observed> {
        let uid = meta.uid.clone().filter(|u| !u.is_empty())?;
        Some(Observed {
            identity: Identity {
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                uid,
            },
            owners: meta
                .owner_references
                .iter()
                .flatten()
                .map(OwnerRef::from)
                .collect(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
        })
    }

    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }
}

/// One object in the graph, observed or virtual.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub identity: Identity,
    pub owners: Vec<OwnerRef>,
    /// UIDs of the objects naming this one as an owner.
    pub dependents: BTreeSet<String>,
    /// Seen through a watch; `false` for a virtual node, known only from
    /// its dependents' references.
    pub observed: bool,
    /// deletionTimestamp is set ("being deleted" is a one-way trip).
    pub being_deleted: bool,
    /// Being deleted with the foregroundDeletion finalizer: waiting for
    /// its blocking dependents to go.
    pub deleting_dependents: bool,
    pub resource_version: String,
    pub finalizers: Vec<String>,
}

impl Node {
    fn virtual_owner(identity: Identity) -> Node {
        Node {
            identity,
            owners: Vec::new(),
            dependents: BTreeSet::new(),
            observed: false,
            being_deleted: false,
            deleting_dependents: false,
            resource_version: String::new(),
            finalizers: Vec::new(),
        }
    }

    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Whether this (observed) object is an owner whose dependents must go
    /// first: being deleted with the foregroundDeletion finalizer.
    pub fn waits_for_dependents(&self) -> bool {
        self.being_deleted && self.has_finalizer(FOREGROUND)
    }
}

/// A change to feed the graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Added or updated, from a watch.
    Observed(Observed),
    /// Deleted, from a watch (or a relist that no longer has it).
    Deleted(Observed),
    /// A live GET found no object with this identity (404 or another UID):
    /// upstream's virtual delete event.
    VirtualDeleted(Identity),
}

/// What the graph asks the collector to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// Look at this object: delete it if its owners are gone, finish its
    /// foreground deletion, or verify that a virtual node exists.
    AttemptToDelete(String),
    /// This owner is being deleted with the orphan finalizer.
    AttemptToOrphan(String),
    /// A Warning event `OwnerRefInvalidNamespace` about `object`.
    InvalidNamespaceOwnerRef { object: Identity, message: String },
}

/// A bounded set of identities verified absent, oldest forgotten first.
#[derive(Debug, Default)]
struct Absent {
    set: HashSet<Identity>,
    order: VecDeque<Identity>,
}

impl Absent {
    fn add(&mut self, identity: Identity) {
        if self.set.insert(identity.clone()) {
            self.order.push_back(identity);
            if self.order.len() > ABSENT_CAPACITY {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// The ownership graph.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    absent: Absent,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether an object with exactly these coordinates was verified gone.
    pub fn is_absent(&self, identity: &Identity) -> bool {
        self.absent.set.contains(identity)
    }

    /// Remember that these coordinates name no object.
    pub fn mark_absent(&mut self, identity: Identity) {
        self.absent.add(identity);
    }

    /// The dependents of `uid` whose reference to it blocks its deletion.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<&Node> {
        let Some(node) = self.nodes.get(uid) else {
            return Vec::new();
        };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion)
            })
            .collect()
    }

    /// The dependents of `uid` (those in the graph).
    pub fn dependents(&self, uid: &str) -> Vec<&Node> {
        self.nodes
            .get(uid)
            .map(|n| {
                n.dependents
                    .iter()
                    .filter_map(|d| self.nodes.get(d))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Apply one change; returns the work it calls for.
    pub fn apply(&mut self, change: Change) -> Vec<Work> {
        let mut work = Vec::new();
        match change {
            Change::Observed(observed) => self.observe(observed, &mut work),
            Change::Deleted(observed) => self.delete(&observed.identity, &mut work),
            Change::VirtualDeleted(identity) => self.virtual_delete(identity, &mut work),
        }
        work
    }

    fn observe(&mut self, observed: Observed, work: &mut Vec<Work>) {
        let uid = observed.identity.uid.clone();
        let mut replaced_identity = false;
        if let Some(existing) = self.nodes.get_mut(&uid) {
            if !existing.observed {
                // A virtual node is now seen for real. If its dependents
                // guessed other coordinates, those that disagree with the
                // real ones must be re-verified.
                if existing.identity != observed.identity {
                    replaced_identity = true;
                    existing.identity = observed.identity.clone();
                }
                existing.observed = true;
            }
        }
        if replaced_identity {
            let deps: Vec<&Node> = self.dependents(&uid);
            let (_, mismatched) = partition_dependents(&deps, &observed.identity);
            for dep in mismatched {
                if !observed.identity.namespace.is_empty()
                    && dep.identity.namespace != observed.identity.namespace
                {
                    work.extend(invalid_namespace_warning(dep, &uid));
                }
                work.push(Work::AttemptToDelete(dep.identity.uid.clone()));
            }
        }

        let previous = self.nodes.get(&uid).map(|n| {
            (
                n.owners.clone(),
                n.being_deleted,
                n.finalizers.clone(),
                n.observed,
            )
        });
        match previous {
            None => {
                let node = Node {
                    identity: observed.identity.clone(),
                    owners: observed.owners.clone(),
                    dependents: BTreeSet::new(),
                    observed: true,
                    being_deleted: observed.deleting,
                    deleting_dependents: observed.deleting && observed.has_finalizer(FOREGROUND),
                    resource_version: observed.resource_version.clone(),
                    finalizers: observed.finalizers.clone(),
                };
                self.nodes.insert(uid.clone(), node);
                self.add_dependent_to_owners(&uid, &observed.owners, work);
                self.transitions(None, &observed, work);
            }
            Some((old_owners, old_deleting, old_finalizers, _)) => {
                let diff = reference_diff(&old_owners, &observed.owners);
                if !diff.is_empty() {
                    // A blocking reference that went away (or stopped
                    // blocking) may be what a foreground owner waits for.
                    for owner_uid in diff.unblocked() {
                        if self
                            .nodes
                            .get(&owner_uid)
                            .is_some_and(|o| o.deleting_dependents)
                        {
                            work.push(Work::AttemptToDelete(owner_uid));
                        }
                    }
                    if let Some(node) = self.nodes.get_mut(&uid) {
                        node.owners = observed.owners.clone();
                    }
                    self.add_dependent_to_owners(&uid, &diff.added, work);
                    for removed in &diff.removed {
                        if let Some(owner) = self.nodes.get_mut(&removed.uid) {
                            owner.dependents.remove(&uid);
                        }
                    }
                }
                if let Some(node) = self.nodes.get_mut(&uid) {
                    if observed.deleting {
                        node.being_deleted = true;
                    }
                    node.resource_version = observed.resource_version.clone();
                    node.finalizers = observed.finalizers.clone();
                }
                self.transitions(Some((old_deleting, &old_finalizers)), &observed, work);
            }
        }
    }

    /// Upstream's `processTransitions`: an object that starts being deleted
    /// with the orphan finalizer is orphaned from; one that starts being
    /// deleted with the foreground finalizer has its dependents deleted.
    fn transitions(
        &mut self,
        old: Option<(bool, &[String])>,
        new: &Observed,
        work: &mut Vec<Work>,
    ) {
        let starts = |finalizer: &str| {
            new.deleting
                && new.has_finalizer(finalizer)
                && !old.is_some_and(|(deleting, finalizers)| {
                    deleting && finalizers.iter().any(|f| f == finalizer)
                })
        };
        let uid = &new.identity.uid;
        if starts(ORPHAN) {
            work.push(Work::AttemptToOrphan(uid.clone()));
        }
        if starts(FOREGROUND) {
            if let Some(node) = self.nodes.get_mut(uid) {
                node.deleting_dependents = true;
                for dep in &node.dependents {
                    work.push(Work::AttemptToDelete(dep.clone()));
                }
            }
            work.push(Work::AttemptToDelete(uid.clone()));
        }
    }

    /// Upstream's `addDependentToOwners`: link `uid` under each owner,
    /// creating virtual owners (to be verified) for those not seen yet,
    /// and re-checking `uid` if a reference looks wrong.
    fn add_dependent_to_owners(&mut self, uid: &str, owners: &[OwnerRef], work: &mut Vec<Work>) {
        let Some(dependent) = self.nodes.get(uid).map(|n| n.identity.clone()) else {
            return;
        };
        let mut suspicious = false;
        for owner in owners {
            match self.nodes.get_mut(&owner.uid) {
                None => {
                    let mut node =
                        Node::virtual_owner(Identity::of_reference(owner, &dependent.namespace));
                    node.dependents.insert(uid.to_string());
                    self.nodes.insert(owner.uid.clone(), node);
                    work.push(Work::AttemptToDelete(owner.uid.clone()));
                }
                Some(node) => {
                    node.dependents.insert(uid.to_string());
                    if suspicious {
                        continue;
                    }
                    let owner_namespaced = !node.identity.namespace.is_empty();
                    if owner_namespaced && node.identity.namespace != dependent.namespace {
                        // A namespaced owner is only ever in its
                        // dependent's namespace.
                        if node.observed {
                            let message = invalid_namespace_message(owner, &dependent.namespace);
                            work.push(Work::InvalidNamespaceOwnerRef {
                                object: dependent.clone(),
                                message,
                            });
                        }
                        suspicious = true;
                    } else if !node.identity.matches(owner) {
                        suspicious = true;
                    } else if !owner_namespaced
                        && node.identity.namespace != dependent.namespace
                        && !node.observed
                    {
                        // A virtual cluster-scoped guess seen from another
                        // namespace may really be a namespaced kind.
                        suspicious = true;
                    }
                }
            }
        }
        if suspicious {
            work.push(Work::AttemptToDelete(uid.to_string()));
        }
    }

    /// An observed delete: drop the node, re-check its dependents (their
    /// owner is now verified absent) and the foreground owners it blocked.
    fn delete(&mut self, identity: &Identity, work: &mut Vec<Work>) {
        self.remove(identity, work);
    }

    /// Drop the node with `identity`'s UID; `identity` is remembered
    /// absent if anything depended on it.
    fn remove(&mut self, identity: &Identity, work: &mut Vec<Work>) {
        let Some(node) = self.nodes.remove(&identity.uid) else {
            return;
        };
        for owner in &node.owners {
            if let Some(o) = self.nodes.get_mut(&owner.uid) {
                o.dependents.remove(&identity.uid);
            }
        }
        if !node.dependents.is_empty() {
            self.absent.add(identity.clone());
        }
        for dep in &node.dependents {
            work.push(Work::AttemptToDelete(dep.clone()));
        }
        for owner in &node.owners {
            if self
                .nodes
                .get(&owner.uid)
                .is_some_and(|o| o.deleting_dependents)
            {
                work.push(Work::AttemptToDelete(owner.uid.clone()));
            }
        }
    }

    /// Upstream's virtual delete: `deleted` was verified not to exist.
    /// Dependents naming the owner by other coordinates keep the node
    /// alive (under one of their identities, to be verified next).
    fn virtual_delete(&mut self, deleted: Identity, work: &mut Vec<Work>) {
        let Some(node) = self.nodes.get(&deleted.uid) else {
            return;
        };
        let deps = self.dependents(&deleted.uid);
        let (matching, mismatched) = partition_dependents(&deps, &deleted);
        let matching: Vec<String> = matching.iter().map(|d| d.identity.uid.clone()).collect();
        let keep = if !node.observed {
            if mismatched.is_empty() {
                false
            } else {
                let replacement = (node.identity == deleted)
                    .then(|| alternate_identity(&mismatched, &deleted))
                    .flatten();
                if let Some(replacement) = replacement {
                    if let Some(node) = self.nodes.get_mut(&deleted.uid) {
                        node.identity = replacement;
                    }
                    work.push(Work::AttemptToDelete(deleted.uid.clone()));
                }
                true
            }
        } else {
            // Never drop an observed node on a guess; only the dependents
            // that guessed these (wrong) coordinates are affected.
            node.identity != deleted
        };
        if keep {
            if !matching.is_empty() {
                self.absent.add(deleted.clone());
                work.extend(matching.into_iter().map(Work::AttemptToDelete));
            }
            return;
        }
        self.remove(&deleted, work);
    }
}

/// Added, removed and changed references between two owner lists (by UID).
struct ReferenceDiff {
    added: Vec<OwnerRef>,
    removed: Vec<OwnerRef>,
    changed: Vec<(OwnerRef, OwnerRef)>,
}

impl ReferenceDiff {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Owners a blocking reference to which was removed or unblocked
    /// (upstream's `addUnblockedOwnersToDeleteQueue`).
    fn unblocked(&self) -> Vec<String> {
        let removed = self
            .removed
            .iter()
            .filter(|r| r.block_owner_deletion)
            .map(|r| r.uid.clone());
        let changed = self
            .changed
            .iter()
            .filter(|(old, new)| old.block_owner_deletion && !new.block_owner_deletion)
            .map(|(old, _)| old.uid.clone());
        removed.chain(changed).collect()
    }
}

fn reference_diff(old: &[OwnerRef], new: &[OwnerRef]) -> ReferenceDiff {
    let mut diff = ReferenceDiff {
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
    };
    for n in new {
        match old.iter().find(|o| o.uid == n.uid) {
            None => diff.added.push(n.clone()),
            Some(o) if o != n => diff.changed.push((o.clone(), n.clone())),
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| n.uid == o.uid) {
            diff.removed.push(o.clone());
        }
    }
    diff
}

/// Upstream's `partitionDependents`: the dependents whose reference to
/// `owner.uid` agrees with `owner`'s coordinates, and those that do not
/// (a dependent with both kinds of reference is in both lists).
fn partition_dependents<'a>(deps: &[&'a Node], owner: &Identity) -> (Vec<&'a Node>, Vec<&'a Node>) {
    let owner_namespaced = !owner.namespace.is_empty();
    let mut matching = Vec::new();
    let mut mismatched = Vec::new();
    for &dep in deps {
        let (mut found_match, mut found_mismatch) = (false, false);
        if owner_namespaced && owner.namespace != dep.identity.namespace {
            found_mismatch = true;
        } else {
            for reference in dep.owners.iter().filter(|r| r.uid == owner.uid) {
                if owner.matches(reference) {
                    found_match = true;
                } else {
                    found_mismatch = true;
                }
            }
        }
        if found_match {
            matching.push(dep);
        }
        if found_mismatch {
            mismatched.push(dep);
        }
    }
    (matching, mismatched)
}

/// Upstream's `getAlternateOwnerIdentity`: another set of coordinates the
/// dependents use for the absent owner's UID — the first one after the
/// verified-absent identity in sort order, else the first.
fn alternate_identity(deps: &[&Node], absent: &Identity) -> Option<Identity> {
    let absent_cluster_scoped = absent.namespace.is_empty();
    let mut alternates = BTreeSet::new();
    for dep in deps {
        for reference in dep.owners.iter().filter(|r| r.uid == absent.uid) {
            if absent.matches(reference)
                && (absent_cluster_scoped || absent.namespace == dep.identity.namespace)
            {
                continue;
            }
            let mut alternate = Identity::of_reference(reference, &dep.identity.namespace);
            if absent_cluster_scoped
                && alternate.api_version == absent.api_version
                && alternate.kind == absent.kind
            {
                // This kind is known to be cluster-scoped.
                alternate.namespace.clear();
            }
            if alternate != *absent {
                alternates.insert(alternate);
            }
        }
    }
    alternates
        .iter()
        .find(|a| *a > absent)
        .or_else(|| alternates.iter().next())
        .cloned()
}

fn invalid_namespace_message(owner: &OwnerRef, namespace: &str) -> String {
    format!(
        "ownerRef {} does not exist in namespace {namespace:?}",
        Identity::of_reference(owner, namespace)
    )
}

fn invalid_namespace_warning(dep: &Node, owner_uid: &str) -> Option<Work> {
    let owner = dep.owners.iter().find(|o| o.uid == owner_uid)?;
    Some(Work::InvalidNamespaceOwnerRef {
        object: dep.identity.clone(),
        message: invalid_namespace_message(owner, &dep.identity.namespace),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ns: &str, kind: &str, name: &str) -> Identity {
        let api_version = if kind == "ReplicaSet" {
            "apps/v1"
        } else {
            "v1"
        };
        Identity {
            namespace: ns.into(),
            name: name.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn owner_ref(owner: &Identity, block: bool) -> OwnerRef {
        OwnerRef {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            controller: true,
            block_owner_deletion: block,
        }
    }

    fn observed(identity: &Identity, owners: Vec<OwnerRef>) -> Observed {
        Observed {
            identity: identity.clone(),
            owners,
            resource_version: "1".into(),
            finalizers: Vec::new(),
            deleting: false,
        }
    }

    fn deleting(identity: &Identity, owners: Vec<OwnerRef>, finalizer: &str) -> Observed {
        Observed {
            resource_version: "2".into(),
            finalizers: vec![finalizer.into()],
            deleting: true,
            ..observed(identity, owners)
        }
    }

    fn to_delete(uid: &Identity) -> Work {
        Work::AttemptToDelete(uid.uid.clone())
    }

    #[test]
    fn an_owner_seen_after_its_dependent_starts_virtual_and_is_verified() {
        let mut graph = Graph::new();
        let rs = id("a", "ReplicaSet", "web");
        let pod = id("a", "Pod", "web-1");
        let work = graph.apply(Change::Observed(observed(&pod, vec![owner_ref(&rs, true)])));
        // The unseen owner is virtual and handed over for a live check.
        assert_eq!(work, [to_delete(&rs)]);
        let virtual_rs = graph.node(&rs.uid).unwrap();
        assert!(!virtual_rs.observed);
        assert_eq!(virtual_rs.identity, rs);
        assert!(virtual_rs.dependents.contains(&pod.uid));

        // Observing it keeps the dependents and asks for nothing.
        let work = graph.apply(Change::Observed(observed(&rs, vec![])));
        assert!(work.is_empty(), "{work:?}");
        let rs_node = graph.node(&rs.uid).unwrap();
        assert!(rs_node.observed);
        assert_eq!(rs_node.dependents.len(), 1);
    }

    #[test]
    fn a_deleted_owner_is_remembered_absent_and_its_dependents_rechecked() {
        let mut graph = Graph::new();
        let cm = id("a", "ConfigMap", "owner");
        graph.apply(Change::Observed(observed(&cm, vec![])));
        let deps: Vec<Identity> = (0..3).map(|i| id("a", "Pod", &format!("p{i}"))).collect();
        for dep in &deps {
            let work = graph.apply(Change::Observed(observed(dep, vec![owner_ref(&cm, false)])));
            assert!(work.is_empty());
        }
        let mut work = graph.apply(Change::Deleted(observed(&cm, vec![])));
        work.sort_by_key(|w| format!("{w:?}"));
        assert_eq!(work, deps.iter().map(to_delete).collect::<Vec<_>>());
        assert!(graph.node(&cm.uid).is_none());
        assert!(graph.is_absent(&cm));
        // A deleted object nobody depended on is not worth remembering.
        let lone = id("a", "ConfigMap", "lone");
        graph.apply(Change::Observed(observed(&lone, vec![])));
        graph.apply(Change::Deleted(observed(&lone, vec![])));
        assert!(!graph.is_absent(&lone));
    }

    #[test]
    fn foreground_deletion_rechecks_the_dependents_and_the_owner() {
        let mut graph = Graph::new();
        let rs = id("a", "ReplicaSet", "web");
        let pod = id("a", "Pod", "web-1");
        graph.apply(Change::Observed(observed(&rs, vec![])));
        graph.apply(Change::Observed(observed(&pod, vec![owner_ref(&rs, true)])));
        let work = graph.apply(Change::Observed(deleting(&rs, vec![], FOREGROUND)));
        assert_eq!(work, [to_delete(&pod), to_delete(&rs)]);
        let node = graph.node(&rs.uid).unwrap();
        assert!(node.deleting_dependents && node.being_deleted);
        assert_eq!(graph.blocking_dependents(&rs.uid).len(), 1);
        // The same state again is no new transition.
        assert!(graph
            .apply(Change::Observed(deleting(&rs, vec![], FOREGROUND)))
            .is_empty());

        // The pod going away lets the owner finish.
        let work = graph.apply(Change::Deleted(observed(&pod, vec![owner_ref(&rs, true)])));
        assert_eq!(work, [to_delete(&rs)]);
        assert!(graph.blocking_dependents(&rs.uid).is_empty());
    }

    #[test]
    fn unblocking_or_dropping_a_reference_lets_a_foreground_owner_finish() {
        let mut graph = Graph::new();
        let rs = id("a", "ReplicaSet", "web");
        let pod = id("a", "Pod", "web-1");
        graph.apply(Change::Observed(observed(&rs, vec![])));
        graph.apply(Change::Observed(observed(&pod, vec![owner_ref(&rs, true)])));
        graph.apply(Change::Observed(deleting(&rs, vec![], FOREGROUND)));

        let work = graph.apply(Change::Observed(observed(
            &pod,
            vec![owner_ref(&rs, false)],
        )));
        assert_eq!(work, [to_delete(&rs)]);
        assert!(graph.blocking_dependents(&rs.uid).is_empty());
        // Still a dependent, just not a blocking one.
        assert_eq!(graph.dependents(&rs.uid).len(), 1);

        let work = graph.apply(Change::Observed(observed(&pod, vec![])));
        // A non-blocking reference going away changes nothing for the owner.
        assert!(work.is_empty(), "{work:?}");
        assert!(graph.dependents(&rs.uid).is_empty());
    }

    #[test]
    fn the_orphan_finalizer_asks_for_orphaning_once() {
        let mut graph = Graph::new();
        let rs = id("a", "ReplicaSet", "web");
        graph.apply(Change::Observed(observed(&rs, vec![])));
        let work = graph.apply(Change::Observed(deleting(&rs, vec![], ORPHAN)));
        assert_eq!(work, [Work::AttemptToOrphan(rs.uid.clone())]);
        assert!(graph
            .apply(Change::Observed(deleting(&rs, vec![], ORPHAN)))
            .is_empty());
        // First seen already orphaning (a restart): orphan it too.
        let mut fresh = Graph::new();
        let work = fresh.apply(Change::Observed(deleting(&rs, vec![], ORPHAN)));
        assert_eq!(work, [Work::AttemptToOrphan(rs.uid.clone())]);
    }

    #[test]
    fn a_virtual_owner_verified_absent_leaves_and_its_dependents_are_rechecked() {
        let mut graph = Graph::new();
        let owner = id("a", "ConfigMap", "gone");
        let dep = id("a", "Secret", "s");
        graph.apply(Change::Observed(observed(
            &dep,
            vec![owner_ref(&owner, false)],
        )));
        let work = graph.apply(Change::VirtualDeleted(owner.clone()));
        assert_eq!(work, [to_delete(&dep)]);
        assert!(graph.node(&owner.uid).is_none());
        assert!(graph.is_absent(&owner));
    }

    #[test]
    fn dependents_disagreeing_on_a_virtual_owner_get_the_other_coordinates_checked() {
        let mut graph = Graph::new();
        let owner = id("a", "ConfigMap", "x");
        // Same UID, named as a Secret by another dependent.
        let other = Identity {
            kind: "Secret".into(),
            ..owner.clone()
        };
        let d1 = id("a", "Pod", "d1");
        let d2 = id("a", "Pod", "d2");
        graph.apply(Change::Observed(observed(
            &d1,
            vec![owner_ref(&owner, false)],
        )));
        let work = graph.apply(Change::Observed(observed(
            &d2,
            vec![owner_ref(&other, false)],
        )));
        // d2's reference disagrees with the virtual node: check d2 itself.
        assert_eq!(work, [to_delete(&d2)]);

        let work = graph.apply(Change::VirtualDeleted(owner.clone()));
        // d1 matched the absent coordinates; the node now stands for the
        // Secret coordinates and is checked again.
        assert!(work.contains(&to_delete(&d1)));
        assert!(work.contains(&to_delete(&owner)));
        assert_eq!(graph.node(&owner.uid).unwrap().identity, other);
        assert!(graph.is_absent(&owner));
        assert!(!graph.is_absent(&other));
    }

    #[test]
    fn an_observed_node_survives_a_virtual_delete_of_wrong_coordinates() {
        let mut graph = Graph::new();
        let owner = id("a", "ConfigMap", "x");
        graph.apply(Change::Observed(observed(&owner, vec![])));
        // A dependent in namespace b guessed the owner lives there.
        let dep = id("b", "Pod", "p");
        let work = graph.apply(Change::Observed(observed(
            &dep,
            vec![owner_ref(&owner, false)],
        )));
        assert_eq!(
            work,
            [
                Work::InvalidNamespaceOwnerRef {
                    object: dep.clone(),
                    message: "ownerRef [v1/ConfigMap, namespace: b, name: x, uid: uid-x] does not exist in namespace \"b\"".to_string(),
                },
                to_delete(&dep)
            ]
        );
        // A live GET in b finds nothing: the dependent's guess is absent,
        // the real owner in a stays.
        let work = graph.apply(Change::VirtualDeleted(owner.in_namespace("b")));
        assert_eq!(work, [to_delete(&dep)]);
        assert!(graph.node(&owner.uid).unwrap().observed);
        assert!(graph.is_absent(&owner.in_namespace("b")));
        assert!(!graph.is_absent(&owner));
    }

    #[test]
    fn observing_a_virtual_node_with_other_coordinates_rechecks_the_mismatches() {
        let mut graph = Graph::new();
        let real = id("a", "ConfigMap", "x");
        let guessed = Identity {
            kind: "Secret".into(),
            ..real.clone()
        };
        let dep = id("a", "Pod", "p");
        graph.apply(Change::Observed(observed(
            &dep,
            vec![owner_ref(&guessed, false)],
        )));
        let work = graph.apply(Change::Observed(observed(&real, vec![])));
        assert_eq!(work, [to_delete(&dep)]);
        assert_eq!(graph.node(&real.uid).unwrap().identity, real);
    }

    #[test]
    fn a_cluster_scoped_owner_may_own_objects_in_any_namespace() {
        let mut graph = Graph::new();
        let node = Identity {
            namespace: String::new(),
            ..id("", "Node", "n1")
        };
        graph.apply(Change::Observed(observed(&node, vec![])));
        let work = graph.apply(Change::Observed(observed(
            &id("a", "Pod", "p"),
            vec![owner_ref(&node, false)],
        )));
        assert!(work.is_empty(), "{work:?}");
    }

    #[test]
    fn reference_diffs_are_by_uid() {
        let a = owner_ref(&id("a", "ConfigMap", "a"), true);
        let b = owner_ref(&id("a", "ConfigMap", "b"), false);
        let a_unblocked = OwnerRef {
            block_owner_deletion: false,
            ..a.clone()
        };
        let old = [a];
        let diff = reference_diff(&old, &[a_unblocked, b.clone()]);
        assert_eq!(diff.added, [b]);
        assert!(diff.removed.is_empty());
        assert_eq!(diff.unblocked(), ["uid-a"]);
        let diff = reference_diff(&old, &[]);
        assert_eq!(diff.unblocked(), ["uid-a"]);
    }
}
