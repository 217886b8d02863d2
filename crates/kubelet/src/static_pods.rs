//! Static pods: pods from manifest files in `--pod-manifest-path`, which
//! the kubelet runs without the API server, as upstream's file source
//! (`pkg/kubelet/config/file.go`) and mirror client do.
//!
//! - Every `--file-check-frequency` (upstream: 20 s) the directory is read:
//!   each regular file not starting with `.` holding one YAML or JSON
//!   `v1` Pod is a static pod ([`read_manifests`]). A file that does not
//!   parse is logged and skipped; the others run.
//! - A static pod is defaulted as upstream does ([`static_pod`]): its name
//!   gets `-<nodeName>` appended, its namespace defaults to `default`,
//!   `spec.nodeName` is this node, and its UID is a hash of the node name,
//!   the file path and the file's content (`kubernetes.io/config.hash`,
//!   with `kubernetes.io/config.source: file`). So editing a file makes a
//!   new pod, and the pod worker of the old one stops its containers: the
//!   pod restarts with the new spec. A removed file stops its pod.
//! - The pods go to the [`crate::pods::PodManager`] as a whole set whenever
//!   it changes; they are admitted and run by pod workers like any other.
//! - Each static pod has a *mirror pod* in the API server, so that users
//!   and the scheduler see it ([`mirror_of`]): the same pod with
//!   `kubernetes.io/config.mirror` = the hash and an ownerReference to the
//!   Node. Mirrors are reconciled on every tick ([`mirror_action`]): a
//!   missing one is created (so deleting it brings it back, while the
//!   static pod keeps running), one of an older hash or being deleted is
//!   deleted (and created anew on a later tick), one whose static pod is
//!   gone is deleted. The pod's status is written to its mirror
//!   ([`crate::status_manager::StatusManager::set_mirror`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use tokio::sync::{mpsc, watch};

use crate::runtime::fake::fake_digest;
use crate::status_manager::StatusManager;

/// The static pod's hash (its UID), on the static pod and its mirror.
pub const ANNOTATION_CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Where the pod comes from: `file` for manifests.
pub const ANNOTATION_CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// On mirror pods: the hash of the static pod they mirror.
pub const ANNOTATION_CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
/// When the kubelet first saw the manifest.
pub const ANNOTATION_CONFIG_SEEN: &str = "kubernetes.io/config.seen";

/// How often mirror pods are checked at most (a deleted mirror comes back
/// within this, even with a slow `--file-check-frequency`).
const MIRROR_CHECK: Duration = Duration::from_secs(5);

/// Whether `pod` is a mirror pod: the API's copy of some kubelet's static
/// pod, which no worker runs.
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_CONFIG_MIRROR))
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The static pod of manifest `content` read from `path` on `node`, with
/// upstream's defaults; an error says what is wrong with the manifest.
pub fn static_pod(content: &str, path: &Path, node: &str) -> Result<Pod, String> {
    let value: serde_json::Value =
        serde_yaml::from_str(content).map_err(|e| format!("not YAML or JSON: {e}"))?;
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let api_version = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or("");
    if kind != "Pod" || api_version != "v1" {
        return Err(format!(
            "a static pod manifest must be one v1 Pod, not {api_version:?} {kind:?}"
        ));
    }
    let mut pod: Pod = serde_json::from_value(value).map_err(|e| format!("invalid Pod: {e}"))?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err("metadata.name is required".into());
    }
    let spec = pod.spec.as_mut().ok_or("spec is required")?;
    if spec.containers.is_empty() {
        return Err("spec.containers: at least one container is required".into());
    }
    spec.node_name = Some(node.to_string());
    let hash = fake_digest(&format!("{node}\n{}\n{content}", path.display()))[..32].to_string();
    pod.metadata.name = Some(format!("{name}-{node}"));
    if pod.metadata.namespace.as_deref().unwrap_or("").is_empty() {
        pod.metadata.namespace = Some("default".into());
    }
    pod.metadata.uid = Some(hash.clone());
    pod.metadata.resource_version = None;
    pod.metadata.creation_timestamp = None;
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(ANNOTATION_CONFIG_HASH.into(), hash);
    annotations.insert(ANNOTATION_CONFIG_SOURCE.into(), "file".into());
    pod.status = None;
    Ok(pod)
}

/// The static pods of `dir`, by file (sorted), each a pod or why not.
pub fn read_manifests(dir: &Path, node: &str) -> Vec<(PathBuf, Result<Pod, String>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let pod = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading: {e}"))
                .and_then(|content| static_pod(&content, &path, node));
            (path, pod)
        })
        .collect()
}

/// The mirror pod of static pod `pod` on node `node` (name and UID).
pub fn mirror_of(pod: &Pod, node_name: &str, node_uid: &str) -> Pod {
    let mut mirror = pod.clone();
    let hash = pod.metadata.uid.clone().unwrap_or_default();
    mirror.metadata.uid = None;
    mirror.metadata.resource_version = None;
    mirror
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_CONFIG_MIRROR.into(), hash);
    mirror.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node_name.into(),
        uid: node_uid.into(),
        ..Default::default()
    }]);
    mirror.status = None;
    mirror
}

/// What to do about one static pod's mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorAction {
    /// It is there and current: statuses go to this UID.
    Keep(String),
    /// There is none: create it.
    Create,
    /// It is stale (an older manifest) or being deleted: delete the one
    /// with this UID; a later pass creates the new one.
    Delete(String),
    /// A pod of that name that is no mirror is in the way: leave it.
    Conflict,
}

/// Upstream's mirror pod check for static pod `pod` given the pod of the
/// same name in the API, if any.
pub fn mirror_action(pod: &Pod, existing: Option<&Pod>) -> MirrorAction {
    let Some(existing) = existing else {
        return MirrorAction::Create;
    };
    let uid = existing.metadata.uid.clone().unwrap_or_default();
    if !is_mirror(existing) {
        return MirrorAction::Conflict;
    }
    let hash = pod.metadata.uid.as_deref().unwrap_or("");
    if existing.metadata.deletion_timestamp.is_some()
        || annotation(existing, ANNOTATION_CONFIG_MIRROR) != Some(hash)
    {
        return MirrorAction::Delete(uid);
    }
    MirrorAction::Keep(uid)
}

/// Deletes a mirror pod at once, only if it is still the one with `uid`.
async fn delete_mirror(api: &Api<Pod>, name: &str, uid: &str) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => tracing::info!(pod = %name, "deleted mirror pod"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(error) => tracing::warn!(pod = %name, %error, "deleting a mirror pod failed"),
    }
}

/// The static pod source of one kubelet.
pub struct StaticPods {
    pub client: kube::Client,
    pub node_name: String,
    pub dir: PathBuf,
    pub file_check_frequency: Duration,
    /// Where the current set of static pods goes (the pod manager).
    pub pods: mpsc::UnboundedSender<Vec<Arc<Pod>>>,
    pub status: StatusManager,
    pub node: watch::Receiver<Arc<Node>>,
}

impl StaticPods {
    /// Reads the directory and reconciles mirror pods until aborted.
    pub async fn run(self) {
        let tick = self.file_check_frequency.min(MIRROR_CHECK);
        let mut current: BTreeMap<String, Arc<Pod>> = BTreeMap::new();
        let mut errors: HashMap<PathBuf, String> = HashMap::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut last_read: Option<Instant> = None;
        loop {
            if last_read.is_none_or(|t| t.elapsed() >= self.file_check_frequency) {
                last_read = Some(Instant::now());
                let mut next = BTreeMap::new();
                for (path, pod) in read_manifests(&self.dir, &self.node_name) {
                    match pod {
                        Ok(mut pod) => {
                            errors.remove(&path);
                            let uid = pod.metadata.uid.clone().unwrap_or_default();
                            let at = seen
                                .entry(uid.clone())
                                .or_insert_with(|| k8s_openapi::jiff::Timestamp::now().to_string());
                            pod.metadata
                                .annotations
                                .get_or_insert_with(BTreeMap::new)
                                .insert(ANNOTATION_CONFIG_SEEN.into(), at.clone());
                            next.insert(uid, Arc::new(pod));
                        }
                        Err(message) => {
                            // Said once per problem, not every pass.
                            if errors.get(&path) != Some(&message) {
                                tracing::warn!(file = %path.display(), %message, "skipping a static pod manifest");
                                errors.insert(path, message);
                            }
                        }
                    }
                }
                seen.retain(|uid, _| next.contains_key(uid));
                if next.keys().ne(current.keys()) {
                    tracing::info!(pods = ?next.values().filter_map(|p| p.metadata.name.clone()).collect::<Vec<_>>(), "static pods changed");
                    // Known as static before a worker publishes a status,
                    // so nothing is written before the mirror exists.
                    for uid in next.keys().filter(|u| !current.contains_key(*u)) {
                        self.status.set_mirror(uid, None);
                    }
                    current = next;
                    if self.pods.send(current.values().cloned().collect()).is_err() {
                        return;
                    }
                }
            }
            self.sync_mirrors(&current).await;
            tokio::time::sleep(tick).await;
        }
    }

    /// One pass over the mirror pods.
    async fn sync_mirrors(&self, pods: &BTreeMap<String, Arc<Pod>>) {
        let node_uid = self.node.borrow().metadata.uid.clone();
        let Some(node_uid) = node_uid else {
            // Not registered yet: no owner for mirrors.
            return;
        };
        let all: Api<Pod> = Api::all(self.client.clone());
        let params = ListParams::default().fields(&format!("spec.nodeName={}", self.node_name));
        let listed = match all.list(&params).await {
            Ok(list) => list.items,
            Err(error) => {
                tracing::debug!(%error, "listing mirror pods failed; static pods keep running");
                return;
            }
        };
        let mut by_name: HashMap<(String, String), Pod> = listed
            .into_iter()
            .map(|p| {
                let key = (
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default(),
                );
                (key, p)
            })
            .collect();
        for (uid, pod) in pods {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let existing = by_name.remove(&(namespace.clone(), name.clone()));
            match mirror_action(pod, existing.as_ref()) {
                MirrorAction::Keep(mirror_uid) => self.status.set_mirror(uid, Some(mirror_uid)),
                MirrorAction::Create => {
                    let mirror = mirror_of(pod, &self.node_name, &node_uid);
                    match api.create(&PostParams::default(), &mirror).await {
                        Ok(created) => {
                            tracing::info!(pod = %format!("{namespace}/{name}"), "created mirror pod");
                            self.status.set_mirror(uid, created.metadata.uid);
                        }
                        Err(error) => {
                            tracing::warn!(pod = %format!("{namespace}/{name}"), %error, "creating the mirror pod failed")
                        }
                    }
                }
                MirrorAction::Delete(mirror_uid) => {
                    self.status.set_mirror(uid, None);
                    delete_mirror(&api, &name, &mirror_uid).await;
                }
                MirrorAction::Conflict => {
                    self.status.set_mirror(uid, None);
                    tracing::warn!(pod = %format!("{namespace}/{name}"), "a pod that is not a mirror pod has the static pod's name");
                }
            }
        }
        // Mirrors left over have no static pod any more.
        for ((namespace, name), pod) in by_name {
            if is_mirror(&pod) {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                delete_mirror(&api, &name, &uid).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: app, image: nginx}]\n";

    #[test]
    fn manifests_become_static_pods_with_upstream_defaults() {
        let pod = static_pod(MANIFEST, Path::new("/etc/pods/web.yaml"), "node-a").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-node-a"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            pod.spec.as_ref().unwrap().node_name.as_deref(),
            Some("node-a")
        );
        let uid = pod.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        assert_eq!(annotation(&pod, ANNOTATION_CONFIG_HASH), Some(uid.as_str()));
        assert_eq!(annotation(&pod, ANNOTATION_CONFIG_SOURCE), Some("file"));
        // The same file gives the same pod; an edit gives a new one.
        let again = static_pod(MANIFEST, Path::new("/etc/pods/web.yaml"), "node-a").unwrap();
        assert_eq!(again.metadata.uid, pod.metadata.uid);
        let edited = static_pod(
            &MANIFEST.replace("nginx", "nginx:2"),
            Path::new("/etc/pods/web.yaml"),
            "node-a",
        )
        .unwrap();
        assert_ne!(edited.metadata.uid, pod.metadata.uid);
        // JSON is YAML too.
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j","namespace":"kube-system"},"spec":{"containers":[{"name":"c"}]}}"#;
        let pod = static_pod(json, Path::new("j.json"), "n").unwrap();
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
    }

    #[test]
    fn bad_manifests_say_why() {
        let cases = [
            ("{", "not YAML or JSON"),
            (
                "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
                "must be one v1 Pod",
            ),
            (
                "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: a}]}\n",
                "metadata.name is required",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
                "spec is required",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: []}\n",
                "at least one container",
            ),
        ];
        for (manifest, want) in cases {
            let err = static_pod(manifest, Path::new("f"), "n").unwrap_err();
            assert!(err.contains(want), "{manifest:?}: {err}");
        }
    }

    #[test]
    fn mirrors_point_at_their_static_pod_and_node() {
        let pod = static_pod(MANIFEST, Path::new("web.yaml"), "node-a").unwrap();
        let mirror = mirror_of(&pod, "node-a", "node-uid");
        assert!(is_mirror(&mirror));
        assert_eq!(
            annotation(&mirror, ANNOTATION_CONFIG_MIRROR),
            pod.metadata.uid.as_deref()
        );
        assert_eq!(mirror.metadata.uid, None);
        let owner = &mirror.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "node-a", "node-uid")
        );
    }

    #[test]
    fn mirror_actions() {
        let pod = static_pod(MANIFEST, Path::new("web.yaml"), "node-a").unwrap();
        let with_uid = |mut p: Pod, uid: &str| {
            p.metadata.uid = Some(uid.into());
            p
        };
        let current = with_uid(mirror_of(&pod, "node-a", "n"), "m1");
        let edited = static_pod(
            &MANIFEST.replace("nginx", "httpd"),
            Path::new("web.yaml"),
            "node-a",
        )
        .unwrap();
        let stale = with_uid(mirror_of(&edited, "node-a", "n"), "m2");
        let mut deleting = current.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let mut user_pod = with_uid(pod.clone(), "u1");
        user_pod.metadata.annotations = None;
        let cases = [
            (None, MirrorAction::Create),
            (Some(&current), MirrorAction::Keep("m1".into())),
            (Some(&stale), MirrorAction::Delete("m2".into())),
            (Some(&deleting), MirrorAction::Delete("m1".into())),
            (Some(&user_pod), MirrorAction::Conflict),
        ];
        for (existing, want) in cases {
            assert_eq!(mirror_action(&pod, existing), want, "{existing:?}");
        }
    }

    #[test]
    fn the_directory_is_read_file_by_file() {
        let dir = std::env::temp_dir().join(format!("tug-static-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("web.yaml"), MANIFEST).unwrap();
        std::fs::write(dir.join("broken.yaml"), "kind: [").unwrap();
        std::fs::write(dir.join(".hidden.yaml"), MANIFEST).unwrap();
        let read = read_manifests(&dir, "node-a");
        let names: Vec<String> = read
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["broken.yaml", "web.yaml"]);
        assert!(read[0].1.is_err());
        assert!(read[1].1.is_ok());
        let _ = std::fs::remove_dir_all(&dir);
        assert!(read_manifests(&dir, "node-a").is_empty());
    }
}
