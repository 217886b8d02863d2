//! A pod's volumes on the node, as upstream's volume plugins
//! (`pkg/volume/*`) set them up, and the mounts of each container.
//!
//! Every volume lives under the per-pod directory the caller gives, in
//! upstream's layout: `<pod dir>/volumes/kubernetes.io~<plugin>/<volume>`.
//!
//! - `emptyDir`: a directory (mode 0777, so any container user can write);
//!   `medium: Memory` is a tmpfs (sized by [`memory_backed_size`]: the
//!   smallest of `sizeLimit`, the pod's memory limit and the node's
//!   allocatable memory) when the kubelet may mount, otherwise a plain
//!   directory and a note saying so; `sizeLimit` is recorded either way;
//! - `hostPath`: the node's path itself, after upstream's type check
//!   (`DirectoryOrCreate`, `Directory`, `FileOrCreate`, `File`, `Socket`,
//!   `CharDevice`, `BlockDevice`);
//! - `configMap`, `secret`, `downwardAPI`, `projected` (their configMap,
//!   secret and downwardAPI sources): files written by [`AtomicWriter`], so
//!   a reader sees either the whole old set or the whole new one;
//! - anything else (`nfs`, `csi`, `persistentVolumeClaim`, ...) is a
//!   [`VolumeError`] naming the volume and its type.
//!
//! Entry points for the pod worker:
//! 1. fetch the objects the pod refers to ([`crate::env::referenced_objects`]);
//! 2. [`set_up_pod_volumes`] before the sandbox's containers are created;
//!    each [`VolumeError`] is a `FailedMount` warning event (its `Display`
//!    is upstream's message) and the pod waits and retries;
//! 3. [`container_mounts`] per container (with its environment from
//!    [`crate::env::container_env`], for `subPathExpr`), then
//!    [`prepare_sub_paths`] (creates subPath directories and pins each to
//!    its resolved path inside the volume), and hand the pairs to the
//!    runtime;
//! 4. [`refresh_pod_volumes`] on each periodic sync, so ConfigMap, Secret and
//!    label/annotation changes reach running containers (upstream's
//!    kubelet remounts these volumes on its sync loop the same way);
//! 5. [`tear_down_pod_volumes`] once the pod's containers are gone.
//!
//! Not done yet: `fsGroup` ownership, SELinux labels, `serviceAccountToken`
//! projections, `clusterTrustBundle`, image and ephemeral volumes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::{tz::TimeZone, Timestamp};

use crate::env::{field_path_value, resource_field_value, Objects};

/// The mode of projected files when neither the item nor the volume says.
pub const DEFAULT_MODE: u32 = 0o644;
/// The symlink to the current data directory.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";
const MAX_PATH_LENGTH: usize = 4096;
const MAX_FILE_NAME_LENGTH: usize = 255;

/// A volume that could not be set up: upstream's `FailedMount` event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
pub struct VolumeError {
    pub volume: String,
    pub message: String,
}

impl VolumeError {
    fn new(volume: &str, message: impl Into<String>) -> Self {
        VolumeError {
            volume: volume.to_string(),
            message: message.into(),
        }
    }
}

/// What setting a volume up needs.
pub struct VolumeContext<'a> {
    pub pod: &'a Pod,
    /// The pod's own directory on the node (upstream's
    /// `/var/lib/kubelet/pods/<uid>`); created if missing.
    pub pod_dir: &'a Path,
    pub objects: &'a dyn Objects,
    /// For downward API `resourceFieldRef` items of containers without a
    /// limit.
    pub node_allocatable: &'a BTreeMap<String, Quantity>,
    /// Whether the kubelet may run `mount`/`umount` (tmpfs for
    /// `emptyDir.medium: Memory`). Unprivileged kubelets say no.
    pub allow_mount: bool,
}

/// A volume ready to be mounted into containers.
#[derive(Debug, Clone, PartialEq)]
pub struct MountedVolume {
    pub name: String,
    /// The volume's type as the pod spec names it (`emptyDir`, `secret`...).
    pub kind: String,
    /// Where it is on the node.
    pub host_path: PathBuf,
    /// Mounted read-only into every container whatever the volumeMount
    /// says (upstream: configMap, secret, downwardAPI and projected).
    pub read_only: bool,
    /// `emptyDir.sizeLimit`, recorded for eviction (not enforced on disk).
    pub size_limit: Option<Quantity>,
    /// Whether a tmpfs is mounted at `host_path`.
    pub tmpfs: bool,
    /// Things the user should know (a Memory emptyDir on disk...): events.
    pub notes: Vec<String>,
}

/// The type of a volume: the one source field set besides `name`. A
/// volume with none is an `emptyDir`, as the API server defaults it.
pub fn volume_kind(volume: &Volume) -> Result<String, VolumeError> {
    let value =
        serde_json::to_value(volume).map_err(|e| VolumeError::new(&volume.name, e.to_string()))?;
    let kinds: Vec<String> = value
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| k.as_str() != "name" && !v.is_null())
        .map(|(k, _)| k.clone())
        .collect();
    match kinds.as_slice() {
        [] => Ok("emptyDir".to_string()),
        [one] => Ok(one.clone()),
        many => Err(VolumeError::new(
            &volume.name,
            format!("more than one volume type specified: {}", many.join(", ")),
        )),
    }
}

/// Upstream's plugin directory name for a volume type.
fn plugin_dir(kind: &str) -> &'static str {
    match kind {
        "emptyDir" => "kubernetes.io~empty-dir",
        "configMap" => "kubernetes.io~configmap",
        "secret" => "kubernetes.io~secret",
        "downwardAPI" => "kubernetes.io~downward-api",
        "projected" => "kubernetes.io~projected",
        _ => "kubernetes.io~unknown",
    }
}

/// Where a volume of `kind` named `name` lives under `pod_dir`.
pub fn volume_dir(pod_dir: &Path, kind: &str, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(plugin_dir(kind)).join(name)
}

fn pod_volumes(pod: &Pod) -> &[Volume] {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default()
}

/// Sets up every volume of the pod. The volumes that worked are returned
/// by name even when others failed, as upstream mounts what it can.
pub fn set_up_pod_volumes(
    ctx: &VolumeContext<'_>,
) -> (BTreeMap<String, MountedVolume>, Vec<VolumeError>) {
    let mut mounted = BTreeMap::new();
    let mut errors = Vec::new();
    for volume in pod_volumes(ctx.pod) {
        match set_up_volume(ctx, volume) {
            Ok(v) => {
                mounted.insert(v.name.clone(), v);
            }
            Err(e) => errors.push(e),
        }
    }
    (mounted, errors)
}

/// Sets up one volume (idempotent: a second call leaves it as it is, except
/// that projected files are rewritten if their sources changed).
pub fn set_up_volume(
    ctx: &VolumeContext<'_>,
    volume: &Volume,
) -> Result<MountedVolume, VolumeError> {
    let name = volume.name.as_str();
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(VolumeError::new(
            name,
            format!("invalid volume name {name:?}"),
        ));
    }
    let kind = volume_kind(volume)?;
    let mut mounted = MountedVolume {
        name: name.to_string(),
        kind: kind.clone(),
        host_path: volume_dir(ctx.pod_dir, &kind, name),
        read_only: false,
        size_limit: None,
        tmpfs: false,
        notes: Vec::new(),
    };
    let fail = |message: String| VolumeError::new(name, message);
    match kind.as_str() {
        "emptyDir" => {
            let source = volume.empty_dir.clone().unwrap_or_default();
            mounted.size_limit = source.size_limit.clone();
            let medium = source.medium.as_deref().unwrap_or("");
            make_world_writable_dir(&mounted.host_path).map_err(fail)?;
            match medium {
                "" => {}
                "Memory" if ctx.allow_mount => {
                    let size = memory_backed_size(
                        ctx.pod,
                        source.size_limit.as_ref(),
                        ctx.node_allocatable,
                    );
                    mount_tmpfs(&mounted.host_path, size).map_err(fail)?;
                    mounted.tmpfs = true;
                }
                "Memory" => mounted.notes.push(format!(
                    "emptyDir volume {name:?} asks for medium Memory, but this kubelet may not mount: it is a plain directory on the node's disk"
                )),
                other => {
                    return Err(fail(format!("emptyDir medium {other:?} is not supported")))
                }
            }
        }
        "hostPath" => {
            let source = volume
                .host_path
                .as_ref()
                .ok_or_else(|| fail("no hostPath".into()))?;
            let path = PathBuf::from(&source.path);
            check_host_path_type(&path, source.type_.as_deref().unwrap_or("")).map_err(fail)?;
            mounted.host_path = path;
        }
        "configMap" | "secret" | "downwardAPI" | "projected" => {
            mounted.read_only = true;
            let payload = volume_payload(ctx, volume, &kind).map_err(fail)?;
            AtomicWriter::new(&mounted.host_path)
                .write(&payload)
                .map_err(fail)?;
        }
        other => {
            return Err(fail(format!(
                "volume type {other} is not supported by this kubelet"
            )))
        }
    }
    Ok(mounted)
}

/// Rewrites the configMap, secret, downwardAPI and projected volumes whose
/// content changed; returns the names of those rewritten.
pub fn refresh_pod_volumes(ctx: &VolumeContext<'_>) -> (Vec<String>, Vec<VolumeError>) {
    let mut updated = Vec::new();
    let mut errors = Vec::new();
    for volume in pod_volumes(ctx.pod) {
        let Ok(kind) = volume_kind(volume) else {
            continue;
        };
        if !matches!(
            kind.as_str(),
            "configMap" | "secret" | "downwardAPI" | "projected"
        ) {
            continue;
        }
        let dir = volume_dir(ctx.pod_dir, &kind, &volume.name);
        let result = volume_payload(ctx, volume, &kind)
            .and_then(|payload| AtomicWriter::new(&dir).write(&payload));
        match result {
            Ok(true) => updated.push(volume.name.clone()),
            Ok(false) => {}
            Err(message) => errors.push(VolumeError::new(&volume.name, message)),
        }
    }
    (updated, errors)
}

/// Unmounts the pod's tmpfs volumes and removes its `volumes` directory.
/// Leaves everything in place (and fails) if a tmpfs cannot be unmounted,
/// so nothing is deleted through a mount.
pub fn tear_down_pod_volumes(pod_dir: &Path, allow_mount: bool) -> Result<(), String> {
    let volumes = pod_dir.join("volumes");
    if !volumes.exists() {
        return Ok(());
    }
    let empty_dirs = volumes.join(plugin_dir("emptyDir"));
    if let Ok(entries) = fs::read_dir(&empty_dirs) {
        for entry in entries.flatten() {
            let path = entry.path();
            if is_mount_point(&path) {
                if !allow_mount {
                    return Err(format!(
                        "{} is a mount point and this kubelet may not unmount",
                        path.display()
                    ));
                }
                run("umount", &[path.as_os_str()])?;
            }
        }
    }
    fs::remove_dir_all(&volumes).map_err(|e| format!("removing {}: {e}", volumes.display()))
}

fn make_world_writable_dir(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        // Set up before: leave the mode to whatever the pod made it.
        return Ok(());
    }
    fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    // chmod after mkdir: the umask would otherwise take the group and
    // other write bits away.
    fs::set_permissions(path, fs::Permissions::from_mode(0o777))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

fn run(program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("running {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Bytes of a quantity, rounded up; `None` if absent, invalid or not
/// positive.
fn bytes_of(q: Option<&Quantity>) -> Option<i128> {
    let milli = crate::admission::parse_quantity_milli(&q?.0)?;
    (milli > 0).then_some((milli + 999) / 1000)
}

/// The pod's memory limit as upstream's pod cgroup sets it: only when
/// every container has one; the app containers and sidecars add up, and an
/// ordinary init container (which runs alone) may need more.
fn pod_memory_limit(pod: &Pod) -> Option<i128> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| {
        bytes_of(
            c.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get("memory")),
        )
    };
    let mut running = 0;
    let mut peak_init = 0;
    for c in &spec.containers {
        running += limit(c)?;
    }
    for c in spec.init_containers.iter().flatten() {
        if c.restart_policy.as_deref() == Some("Always") {
            running += limit(c)?;
        } else {
            peak_init = peak_init.max(limit(c)?);
        }
    }
    let overhead = bytes_of(spec.overhead.as_ref().and_then(|o| o.get("memory"))).unwrap_or(0);
    Some(running.max(peak_init) + overhead)
}

/// Upstream's `calculateEmptyDirMemorySize` (SizeMemoryBackedVolumes): the
/// node's allocatable memory, lowered to the pod's memory limit, lowered to
/// the volume's sizeLimit. `None`: no bound known (the tmpfs default, half
/// of RAM).
pub fn memory_backed_size(
    pod: &Pod,
    size_limit: Option<&Quantity>,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Option<i128> {
    let mut size = bytes_of(node_allocatable.get("memory"));
    for bound in [pod_memory_limit(pod), bytes_of(size_limit)]
        .into_iter()
        .flatten()
    {
        size = Some(size.map_or(bound, |s| s.min(bound)));
    }
    size
}

/// `mount -t tmpfs` at `path` unless already mounted there.
fn mount_tmpfs(path: &Path, size: Option<i128>) -> Result<(), String> {
    if is_mount_point(path) {
        return Ok(());
    }
    let mut options = "mode=0777".to_string();
    if let Some(size) = size {
        options.push_str(&format!(",size={size}"));
    }
    run(
        "mount",
        &[
            "-t".as_ref(),
            "tmpfs".as_ref(),
            "-o".as_ref(),
            options.as_ref(),
            "tmpfs".as_ref(),
            path.as_os_str(),
        ],
    )
    .map_err(|e| format!("mounting a tmpfs at {}: {e}", path.display()))
}

/// Decodes the octal escapes (`\040` for a space) of `/proc/self/mountinfo`.
fn unescape_mount_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| Path::new(&unescape_mount_path(mount_point)) == path)
}

/// Upstream's hostPath type check (`checkTypeInternal`), creating the path
/// for the `...OrCreate` types.
pub fn check_host_path_type(path: &Path, kind: &str) -> Result<(), String> {
    let shown = path.display();
    let meta = fs::metadata(path).ok();
    let file_type = meta.as_ref().map(|m| m.file_type());
    let is = |pred: fn(&fs::FileType) -> bool| file_type.as_ref().is_some_and(pred);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" | "Directory" => {
            if kind == "DirectoryOrCreate" && meta.is_none() {
                fs::create_dir_all(path).map_err(|e| format!("creating {shown}: {e}"))?;
                return fs::set_permissions(path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| format!("chmod {shown}: {e}"));
            }
            if is(fs::FileType::is_dir) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {shown} is not a directory"
                ))
            }
        }
        "FileOrCreate" | "File" => {
            if kind == "FileOrCreate" && meta.is_none() {
                // Like upstream, the parent directory must exist.
                return fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(path)
                    .map(drop)
                    .map_err(|e| format!("creating {shown}: {e}"));
            }
            if is(fs::FileType::is_file) {
                Ok(())
            } else {
                Err(format!("hostPath type check failed: {shown} is not a file"))
            }
        }
        "Socket" if is(FileTypeExt::is_socket) => Ok(()),
        "Socket" => Err(format!(
            "hostPath type check failed: {shown} is not a socket file"
        )),
        "CharDevice" if is(FileTypeExt::is_char_device) => Ok(()),
        "CharDevice" => Err(format!(
            "hostPath type check failed: {shown} is not a character device"
        )),
        "BlockDevice" if is(FileTypeExt::is_block_device) => Ok(()),
        "BlockDevice" => Err(format!(
            "hostPath type check failed: {shown} is not a block device"
        )),
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// One file of a projected volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path → file.
pub type Payload = BTreeMap<String, FileProjection>;

fn mode_of(mode: Option<i32>, default: u32) -> Result<u32, String> {
    match mode {
        None => Ok(default),
        Some(m) if (0..=0o777).contains(&m) => Ok(m.unsigned_abs()),
        Some(m) => Err(format!("invalid mode {m:#o}: must be between 0 and 0777")),
    }
}

/// Upstream's configmap/secret `MakePayload`: every key (no items), or the
/// items' keys at their paths. A missing key is an error unless optional.
fn key_payload(
    what: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, value) in data {
                payload.insert(
                    key.clone(),
                    FileProjection {
                        data: value.clone(),
                        mode: default_mode,
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!(
                        "{what} references non-existent {}key: {}",
                        if what == "configmap" {
                            "config "
                        } else {
                            "secret "
                        },
                        item.key
                    ));
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: value.clone(),
                        mode: mode_of(item.mode, default_mode)?,
                    },
                );
            }
        }
    }
    Ok(payload)
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.entry(k.clone()).or_insert_with(|| v.0.clone());
    }
    data
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    // stringData is write-only in the API; honour it if a caller kept it.
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn config_map_payload(
    ctx: &VolumeContext<'_>,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let data = match ctx.objects.config_map(namespace(ctx.pod), name)? {
        Some(cm) => config_map_data(&cm),
        None if optional => BTreeMap::new(),
        None => return Err(format!("configmap {name:?} not found")),
    };
    key_payload("configmap", &data, items, default_mode, optional)
}

fn secret_payload(
    ctx: &VolumeContext<'_>,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let data = match ctx.objects.secret(namespace(ctx.pod), name)? {
        Some(s) => secret_data(&s),
        None if optional => BTreeMap::new(),
        None => return Err(format!("secret {name:?} not found")),
    };
    key_payload("secret", &data, items, default_mode, optional)
}

/// Upstream's downwardapi `CollectData`; all item errors are reported.
fn downward_payload(
    ctx: &VolumeContext<'_>,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            field_path_value(ctx.pod, &f.field_path)
        } else if let Some(r) = &item.resource_field_ref {
            let container = r.container_name.as_deref().unwrap_or("");
            resource_field_value(ctx.pod, container, r, ctx.node_allocatable)
        } else {
            Ok(String::new())
        };
        match (value, mode_of(item.mode, default_mode)) {
            (Ok(value), Ok(mode)) => {
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: value.into_bytes(),
                        mode,
                    },
                );
            }
            (Err(e), _) | (_, Err(e)) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(payload)
    } else {
        Err(aggregate(errors))
    }
}

/// Upstream's `utilerrors.NewAggregate` message.
fn aggregate(errors: Vec<String>) -> String {
    if errors.len() == 1 {
        errors.into_iter().next().unwrap_or_default()
    } else {
        format!("[{}]", errors.join(", "))
    }
}

/// The files of a configMap, secret, downwardAPI or projected volume.
fn volume_payload(ctx: &VolumeContext<'_>, volume: &Volume, kind: &str) -> Result<Payload, String> {
    match kind {
        "configMap" => {
            let s = volume.config_map.as_ref().ok_or("no configMap")?;
            let mode = mode_of(s.default_mode, DEFAULT_MODE)?;
            config_map_payload(
                ctx,
                &s.name,
                s.items.as_deref(),
                mode,
                s.optional == Some(true),
            )
        }
        "secret" => {
            let s = volume.secret.as_ref().ok_or("no secret")?;
            let mode = mode_of(s.default_mode, DEFAULT_MODE)?;
            let name = s.secret_name.as_deref().unwrap_or("");
            secret_payload(
                ctx,
                name,
                s.items.as_deref(),
                mode,
                s.optional == Some(true),
            )
        }
        "downwardAPI" => {
            let s = volume.downward_api.as_ref().ok_or("no downwardAPI")?;
            let mode = mode_of(s.default_mode, DEFAULT_MODE)?;
            downward_payload(ctx, s.items.as_deref().unwrap_or_default(), mode)
        }
        "projected" => {
            let s = volume.projected.as_ref().ok_or("no projected")?;
            let mode = mode_of(s.default_mode, DEFAULT_MODE)?;
            let mut payload = Payload::new();
            let mut errors = Vec::new();
            for source in s.sources.iter().flatten() {
                let part = if let Some(cm) = &source.config_map {
                    config_map_payload(
                        ctx,
                        &cm.name,
                        cm.items.as_deref(),
                        mode,
                        cm.optional == Some(true),
                    )
                } else if let Some(sec) = &source.secret {
                    secret_payload(
                        ctx,
                        &sec.name,
                        sec.items.as_deref(),
                        mode,
                        sec.optional == Some(true),
                    )
                } else if let Some(d) = &source.downward_api {
                    downward_payload(ctx, d.items.as_deref().unwrap_or_default(), mode)
                } else if source.service_account_token.is_some() {
                    Err("projected serviceAccountToken sources are not supported by this kubelet yet".to_string())
                } else if source.cluster_trust_bundle.is_some() {
                    Err("projected clusterTrustBundle sources are not supported by this kubelet yet".to_string())
                } else {
                    Ok(Payload::new())
                };
                match part {
                    // A later source wins on the same path, as upstream.
                    Ok(part) => payload.extend(part),
                    Err(e) => errors.push(e),
                }
            }
            if errors.is_empty() {
                Ok(payload)
            } else {
                Err(aggregate(errors))
            }
        }
        other => Err(format!("volume type {other} has no files")),
    }
}

/// Upstream's `AtomicWriter`: writes a set of files into a directory so
/// that readers see either the complete old set or the complete new one.
///
/// The files live in a timestamped directory (`..2026_11_28_11_05_04.123`);
/// `..data` is a symlink to it; each visible top-level name is a symlink
/// `name -> ..data/name`. An update writes a new timestamped directory,
/// points `..data_tmp` at it and renames that over `..data` (`rename(2)` is
/// atomic), then adds and removes visible names and deletes the old
/// directory.
pub struct AtomicWriter {
    target: PathBuf,
}

static TS_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Upstream's `validatePath`, then the cleaned path.
pub fn validate_payload_path(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err(format!("invalid path: must not be empty: {path:?}"));
    }
    if path.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"
        ));
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(format!("invalid path: must not contain '..': {path}"));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    let cleaned: Vec<&str> = items
        .into_iter()
        .filter(|i| !i.is_empty() && *i != ".")
        .collect();
    if cleaned.is_empty() {
        return Err(format!("invalid path: must name a file: {path}"));
    }
    if cleaned[0].starts_with("..") {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    Ok(cleaned.join("/"))
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

fn io_err<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> String + 'a {
    move |e| format!("{what} {}: {e}", path.display())
}

impl AtomicWriter {
    pub fn new(target: &Path) -> Self {
        AtomicWriter {
            target: target.to_path_buf(),
        }
    }

    /// Makes the directory hold exactly `payload`. Returns whether anything
    /// was written (`false`: the content and modes were already those).
    pub fn write(&self, payload: &Payload) -> Result<bool, String> {
        let mut clean = Payload::new();
        for (path, file) in payload {
            let cleaned = validate_payload_path(path)?;
            if file.mode > 0o777 {
                return Err(format!("invalid mode {:#o} for {path}", file.mode));
            }
            clean.insert(cleaned, file.clone());
        }
        check_no_file_dir_clash(&clean)?;
        let target = &self.target;
        fs::create_dir_all(target).map_err(io_err("creating", target))?;

        let data_link = target.join(DATA_DIR);
        let old_ts = fs::read_link(&data_link).ok();
        let old_files = match &old_ts {
            Some(ts) => read_tree(&target.join(ts)).ok(),
            None => None,
        };
        if old_files.as_ref() == Some(&clean) {
            self.create_visible(&clean)?;
            return Ok(false);
        }

        let ts_dir = self.new_ts_dir()?;
        let ts_path = target.join(&ts_dir);
        let written = clean.iter().try_for_each(|(path, file)| {
            let full = ts_path.join(path);
            if let Some(parent) = full.parent() {
                fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
            }
            fs::write(&full, &file.data).map_err(io_err("writing", &full))?;
            fs::set_permissions(&full, fs::Permissions::from_mode(file.mode))
                .map_err(io_err("chmod", &full))
        });
        if let Err(e) = written {
            // Nobody points at it yet: drop the partial set, keep the old.
            let _ = fs::remove_dir_all(&ts_path);
            return Err(e);
        }

        // The swap: readers following `..data` see the old or the new set.
        let tmp_link = target.join(DATA_DIR_TMP);
        match fs::remove_file(&tmp_link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", tmp_link.display())),
        }
        std::os::unix::fs::symlink(&ts_dir, &tmp_link).map_err(io_err("symlinking", &tmp_link))?;
        fs::rename(&tmp_link, &data_link).map_err(io_err("renaming onto", &data_link))?;

        self.create_visible(&clean)?;
        // Visible names the new set no longer has.
        let new_top: BTreeSet<&str> = clean.keys().map(|p| top_level(p)).collect();
        if let Some(old) = &old_files {
            for stale in old.keys().map(|p| top_level(p)).collect::<BTreeSet<_>>() {
                if !new_top.contains(stale) {
                    let visible = target.join(stale);
                    if fs::symlink_metadata(&visible).is_ok_and(|m| m.file_type().is_symlink()) {
                        fs::remove_file(&visible).map_err(io_err("removing", &visible))?;
                    }
                }
            }
        }
        if let Some(old) = old_ts {
            let old_path = target.join(&old);
            // Only ever a timestamped directory of ours, never a user path.
            if old
                .to_str()
                .is_some_and(|s| s.starts_with("..") && !s.contains('/'))
                && old != ts_dir
            {
                fs::remove_dir_all(&old_path).map_err(io_err("removing", &old_path))?;
            }
        }
        Ok(true)
    }

    /// `name -> ..data/name` for each top-level name of the payload.
    fn create_visible(&self, payload: &Payload) -> Result<(), String> {
        let tops: BTreeSet<&str> = payload.keys().map(|p| top_level(p)).collect();
        for top in tops {
            let visible = self.target.join(top);
            let want = Path::new(DATA_DIR).join(top);
            match fs::read_link(&visible) {
                Ok(existing) if existing == want => continue,
                Ok(_) => fs::remove_file(&visible).map_err(io_err("removing", &visible))?,
                Err(_) if fs::symlink_metadata(&visible).is_ok() => {
                    return Err(format!(
                        "{} exists and is not a symlink into {DATA_DIR}",
                        visible.display()
                    ))
                }
                Err(_) => {}
            }
            std::os::unix::fs::symlink(&want, &visible).map_err(io_err("symlinking", &visible))?;
        }
        Ok(())
    }

    fn new_ts_dir(&self) -> Result<PathBuf, String> {
        let stamp = Timestamp::now()
            .to_zoned(TimeZone::UTC)
            .strftime("%Y_%m_%d_%H_%M_%S")
            .to_string();
        loop {
            let n = TS_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("..{stamp}.{}{n}", std::process::id());
            let path = self.target.join(&name);
            match fs::create_dir(&path) {
                Ok(()) => {
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                        .map_err(io_err("chmod", &path))?;
                    return Ok(PathBuf::from(name));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("creating {}: {e}", path.display())),
            }
        }
    }
}

/// A path that is both a file and the parent of another cannot be written.
fn check_no_file_dir_clash(payload: &Payload) -> Result<(), String> {
    for path in payload.keys() {
        let mut prefix = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .skip(1)
            .rev()
        {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if payload.contains_key(&prefix) {
                return Err(format!(
                    "invalid payload: {prefix} is both a file and the directory of {path}"
                ));
            }
        }
    }
    Ok(())
}

/// The files under `dir`, relative paths to content and mode.
fn read_tree(dir: &Path) -> io::Result<Payload> {
    let mut out = Payload::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let rel_child = rel.join(entry.file_name());
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(rel_child);
            } else {
                let data = fs::read(dir.join(&rel_child))?;
                let key = rel_child.to_string_lossy().into_owned();
                out.insert(
                    key,
                    FileProjection {
                        data,
                        mode: meta.permissions().mode() & 0o777,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// A container mount for the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub volume: String,
    /// The volume's own directory (the root a subPath must stay in).
    pub volume_path: PathBuf,
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
    /// The mount is a `subPath` of its volume: the host path may need to be
    /// created first ([`prepare_sub_paths`]).
    pub sub_path: bool,
}

/// A subPath or expanded subPathExpr must stay inside its volume.
fn check_sub_path(sub_path: &str) -> Result<(), String> {
    if sub_path.starts_with('/') {
        return Err(format!(
            "error SubPath `{sub_path}` must not be an absolute path"
        ));
    }
    if Path::new(sub_path)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(format!(
            "unable to provision SubPath `{sub_path}`: must not contain '..'"
        ));
    }
    Ok(())
}

/// Upstream's `makeMounts` without side effects: each `volumeMount` of the
/// container as a host path and a container path. `env` is the
/// container's environment, for `subPathExpr`.
pub fn container_mounts(
    container: &Container,
    volumes: &BTreeMap<String, MountedVolume>,
    env: &[(String, String)],
) -> Result<Vec<Mount>, String> {
    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let volume = volumes.get(&m.name).ok_or_else(|| {
            format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, container.name
            )
        })?;
        if !m.mount_path.starts_with('/') {
            return Err(format!(
                "mountPath {:?} of volume {:?} in container {:?} is not absolute",
                m.mount_path, m.name, container.name
            ));
        }
        let mut sub_path = m.sub_path.clone().unwrap_or_default();
        if let Some(expr) = m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            // Upstream's ExpandContainerVolumeMounts: every reference must
            // name a variable with a value.
            let mut missing = BTreeSet::new();
            let expanded = crate::env::expand(expr, |name| {
                match env.iter().rev().find(|(n, _)| n == name) {
                    Some((_, v)) if !v.is_empty() => Some(v.clone()),
                    _ => {
                        missing.insert(name.to_string());
                        Some(String::new())
                    }
                }
            });
            if !missing.is_empty() {
                return Err(format!(
                    "missing value for {}",
                    missing.into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
            sub_path = expanded;
        }
        let host_path = if sub_path.is_empty() {
            volume.host_path.clone()
        } else {
            check_sub_path(&sub_path)?;
            volume.host_path.join(&sub_path)
        };
        mounts.push(Mount {
            volume: m.name.clone(),
            volume_path: volume.host_path.clone(),
            host_path,
            container_path: m.mount_path.clone(),
            read_only: m.read_only == Some(true) || volume.read_only,
            sub_path: !sub_path.is_empty(),
        });
    }
    Ok(mounts)
}

/// Creates the missing subPath directories of `mounts`, as upstream does
/// before starting the container (with the volume directory's mode), and
/// replaces each subPath host path by its resolved path after checking it
/// stays inside the volume: a container could otherwise plant a symlink in
/// a writable volume that sends a later subPath mount anywhere on the node
/// (upstream's CVE-2017-1002101). The check and the runtime's bind mount are
/// not one atomic step, unlike upstream's fd-based bind; a container that
/// swaps the symlink in between still wins the race.
pub fn prepare_sub_paths(mounts: &mut [Mount]) -> Result<(), String> {
    for m in mounts.iter_mut().filter(|m| m.sub_path) {
        let root = m
            .volume_path
            .canonicalize()
            .map_err(io_err("resolving volume", &m.volume_path))?;
        if fs::symlink_metadata(&m.host_path).is_err() {
            // Create step by step, checking each existing prefix first,
            // so no directory is created outside the volume.
            let mut at = m.volume_path.clone();
            let rel = m
                .host_path
                .strip_prefix(&m.volume_path)
                .map_err(|_| {
                    format!(
                        "subpath {:?} not within volume path {:?}",
                        m.host_path, m.volume_path
                    )
                })?
                .to_path_buf();
            for part in rel.components() {
                at.push(part);
                if fs::symlink_metadata(&at).is_ok() {
                    within(&root, &at)?;
                    continue;
                }
                fs::create_dir(&at).map_err(io_err("creating subPath", &at))?;
                let mode = at
                    .parent()
                    .and_then(|p| fs::metadata(p).ok())
                    .map_or(0o755, |meta| meta.permissions().mode() & 0o7777);
                fs::set_permissions(&at, fs::Permissions::from_mode(mode))
                    .map_err(io_err("chmod", &at))?;
            }
        }
        m.host_path = within(&root, &m.host_path)?;
    }
    Ok(())
}

/// `path` resolved, if it is inside `root` (itself resolved).
fn within(root: &Path, path: &Path) -> Result<PathBuf, String> {
    let resolved = path
        .canonicalize()
        .map_err(io_err("resolving subPath", path))?;
    if resolved.starts_with(root) {
        Ok(resolved)
    } else {
        Err(format!(
            "subpath {:?} not within volume path {:?}",
            resolved.display().to_string(),
            root.display().to_string()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::FetchedObjects;

    /// A directory removed at the end of the test.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "kvol-unit-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn volume(v: serde_json::Value) -> Volume {
        serde_json::from_value(v).unwrap()
    }

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn objects() -> FetchedObjects {
        let mut o = FetchedObjects::default();
        o.config_maps.insert(
            "cfg".into(),
            Ok(serde_json::from_value(serde_json::json!({
                "metadata": {"name": "cfg"},
                "data": {"a": "1", "b": "2"},
                "binaryData": {"bin": "AAE="}
            }))
            .unwrap()),
        );
        o.secrets.insert(
            "sec".into(),
            Ok(serde_json::from_value(serde_json::json!({
                "metadata": {"name": "sec"}, "data": {"token": "c2VjcmV0"}
            }))
            .unwrap()),
        );
        o
    }

    fn the_pod(volumes: serde_json::Value) -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "1Mi"}}}],
                     "volumes": volumes}
        }))
    }

    fn set_up(pod: &Pod, dir: &Path, v: serde_json::Value) -> Result<MountedVolume, VolumeError> {
        let objects = objects();
        let alloc = BTreeMap::new();
        let ctx = VolumeContext {
            pod,
            pod_dir: dir,
            objects: &objects,
            node_allocatable: &alloc,
            allow_mount: false,
        };
        set_up_volume(&ctx, &volume(v))
    }

    #[test]
    fn kinds() {
        for (v, want) in [
            (serde_json::json!({"name": "a"}), Ok("emptyDir")),
            (
                serde_json::json!({"name": "a", "nfs": {"server": "s", "path": "/"}}),
                Ok("nfs"),
            ),
            (
                serde_json::json!({"name": "a", "persistentVolumeClaim": {"claimName": "c"}}),
                Ok("persistentVolumeClaim"),
            ),
            (
                serde_json::json!({"name": "a", "emptyDir": {}, "hostPath": {"path": "/"}}),
                Err("more than one volume type specified: emptyDir, hostPath"),
            ),
        ] {
            assert_eq!(
                volume_kind(&volume(v.clone())).map_err(|e| e.message),
                want.map(str::to_string).map_err(str::to_string),
                "{v}"
            );
        }
    }

    #[test]
    fn payload_paths() {
        for (path, want) in [
            ("a", Ok("a")),
            ("a/b", Ok("a/b")),
            ("./a//b/", Ok("a/b")),
            ("..a", Err("invalid path: must not start with '..': ..a")),
            (
                "..data",
                Err("invalid path: must not start with '..': ..data"),
            ),
            ("a/../b", Err("invalid path: must not contain '..': a/../b")),
            ("..", Err("invalid path: must not contain '..': ..")),
            ("/etc/x", Err("invalid path: must be relative path: /etc/x")),
            ("", Err("invalid path: must not be empty: \"\"")),
            (".", Err("invalid path: must name a file: .")),
        ] {
            let got = validate_payload_path(path);
            assert_eq!(
                got,
                want.map(str::to_string).map_err(str::to_string),
                "{path}"
            );
        }
    }

    #[test]
    fn key_payloads() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("k".to_string(), b"v".to_vec()),
            ("l".to_string(), b"w".to_vec()),
        ]
        .into();
        let item = |key: &str, path: &str, mode: Option<i32>| KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        };
        let all = key_payload("configmap", &data, None, 0o644, false).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all["k"], file("v", 0o644));
        let some = key_payload(
            "secret",
            &data,
            Some(&[item("k", "dir/key", Some(0o400))]),
            0o644,
            false,
        )
        .unwrap();
        assert_eq!(
            some.into_iter().collect::<Vec<_>>(),
            [("dir/key".to_string(), file("v", 0o400))]
        );
        assert_eq!(
            key_payload(
                "configmap",
                &data,
                Some(&[item("x", "x", None)]),
                0o644,
                false
            ),
            Err("configmap references non-existent config key: x".into())
        );
        assert_eq!(
            key_payload("secret", &data, Some(&[item("x", "x", None)]), 0o644, false),
            Err("secret references non-existent secret key: x".into())
        );
        assert_eq!(
            key_payload("secret", &data, Some(&[item("x", "x", None)]), 0o644, true),
            Ok(Payload::new())
        );
        assert!(key_payload(
            "secret",
            &data,
            Some(&[item("k", "x", Some(0o1777))]),
            0o644,
            true
        )
        .is_err());
    }

    #[test]
    fn atomic_writer_swaps_and_prunes() {
        let tmp = TempDir::new();
        let dir = tmp.0.join("vol");
        let w = AtomicWriter::new(&dir);
        let first: Payload = [
            ("a".to_string(), file("1", 0o644)),
            ("d/b".to_string(), file("2", 0o600)),
        ]
        .into();
        assert_eq!(w.write(&first), Ok(true));
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dir.join("d/b")).unwrap(), "2");
        assert_eq!(fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        let old_ts = fs::read_link(dir.join(DATA_DIR)).unwrap();
        // The same payload writes nothing.
        assert_eq!(w.write(&first), Ok(false));
        assert_eq!(fs::read_link(dir.join(DATA_DIR)).unwrap(), old_ts);
        // A mode change alone is a change.
        let second: Payload = [("a".to_string(), file("1", 0o400))].into();
        assert_eq!(w.write(&second), Ok(true));
        let new_ts = fs::read_link(dir.join(DATA_DIR)).unwrap();
        assert_ne!(new_ts, old_ts);
        assert!(!dir.join(&old_ts).exists());
        assert!(
            fs::symlink_metadata(dir.join("d")).is_err(),
            "stale visible name removed"
        );
        assert_eq!(
            fs::metadata(dir.join("a")).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert!(!dir.join(DATA_DIR_TMP).exists());
        // Bad payloads.
        let clash: Payload = [
            ("a".to_string(), file("1", 0o644)),
            ("a/b".to_string(), file("2", 0o644)),
        ]
        .into();
        assert!(w
            .write(&clash)
            .unwrap_err()
            .contains("is both a file and the directory"));
        let escape: Payload = [("../x".to_string(), file("1", 0o644))].into();
        assert!(w.write(&escape).is_err());
    }

    #[test]
    fn config_map_secret_and_downward_volumes() {
        let tmp = TempDir::new();
        let p = the_pod(serde_json::json!([]));
        let v = set_up(
            &p,
            &tmp.0,
            serde_json::json!({"name": "c", "configMap": {"name": "cfg"}}),
        )
        .unwrap();
        assert!(v.read_only);
        assert_eq!(v.host_path, tmp.0.join("volumes/kubernetes.io~configmap/c"));
        assert_eq!(fs::read(v.host_path.join("bin")).unwrap(), [0, 1]);
        assert_eq!(fs::read_to_string(v.host_path.join("b")).unwrap(), "2");

        let v = set_up(
            &p,
            &tmp.0,
            serde_json::json!({"name": "s", "secret": {"secretName": "sec", "defaultMode": 0o400}}),
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(v.host_path.join("token")).unwrap(),
            "secret"
        );
        assert_eq!(
            fs::metadata(v.host_path.join("token"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o400
        );

        let v = set_up(&p, &tmp.0, serde_json::json!({"name": "d", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Ki"}}]}})).unwrap();
        assert_eq!(
            fs::read_to_string(v.host_path.join("labels")).unwrap(),
            "app=\"x\""
        );
        assert_eq!(fs::read_to_string(v.host_path.join("mem")).unwrap(), "1024");

        let v = set_up(&p, &tmp.0, serde_json::json!({"name": "pr", "projected": {"sources": [
            {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "x/a"}]}},
            {"secret": {"name": "sec"}},
            {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}})).unwrap();
        assert_eq!(fs::read_to_string(v.host_path.join("x/a")).unwrap(), "1");
        assert_eq!(
            fs::read_to_string(v.host_path.join("token")).unwrap(),
            "secret"
        );
        assert_eq!(fs::read_to_string(v.host_path.join("name")).unwrap(), "p");

        for (v, want) in [
            (
                serde_json::json!({"name": "m", "configMap": {"name": "gone"}}),
                "configmap \"gone\" not found",
            ),
            (
                serde_json::json!({"name": "m", "secret": {"secretName": "gone"}}),
                "secret \"gone\" not found",
            ),
            (
                serde_json::json!({"name": "m", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}),
                "projected serviceAccountToken sources are not supported by this kubelet yet",
            ),
            (
                serde_json::json!({"name": "m", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}),
                "unsupported fieldPath: spec.nodeName",
            ),
            (
                serde_json::json!({"name": "m", "nfs": {"server": "s", "path": "/"}}),
                "volume type nfs is not supported by this kubelet",
            ),
            (
                serde_json::json!({"name": "m", "csi": {"driver": "d"}}),
                "volume type csi is not supported by this kubelet",
            ),
            (
                serde_json::json!({"name": "m", "emptyDir": {"medium": "HugePages"}}),
                "emptyDir medium \"HugePages\" is not supported",
            ),
        ] {
            let err = set_up(&p, &tmp.0, v.clone()).unwrap_err();
            assert_eq!(err.message, want, "{v}");
            assert_eq!(
                err.to_string(),
                format!("MountVolume.SetUp failed for volume \"m\" : {want}")
            );
        }
        // Optional and missing: an empty volume.
        let v = set_up(
            &p,
            &tmp.0,
            serde_json::json!({"name": "o", "configMap": {"name": "gone", "optional": true}}),
        )
        .unwrap();
        assert!(v.host_path.join(DATA_DIR).exists());
    }

    #[test]
    fn refresh_follows_label_changes() {
        let tmp = TempDir::new();
        let volumes = serde_json::json!([{"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "e", "emptyDir": {}}]);
        let p = the_pod(volumes);
        let objects = objects();
        let alloc = BTreeMap::new();
        let ctx = |pod| VolumeContext {
            pod,
            pod_dir: &tmp.0,
            objects: &objects,
            node_allocatable: &alloc,
            allow_mount: false,
        };
        let (mounted, errors) = set_up_pod_volumes(&ctx(&p));
        assert!(errors.is_empty(), "{errors:?}");
        let file = mounted["info"].host_path.join("labels");
        assert_eq!(fs::read_to_string(&file).unwrap(), "app=\"x\"");
        assert_eq!(refresh_pod_volumes(&ctx(&p)), (vec![], vec![]));
        let mut relabeled = p.clone();
        relabeled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("version".into(), "2".into());
        assert_eq!(
            refresh_pod_volumes(&ctx(&relabeled)),
            (vec!["info".to_string()], vec![])
        );
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            "app=\"x\"\nversion=\"2\""
        );
    }

    #[test]
    fn empty_dirs() {
        let tmp = TempDir::new();
        let p = the_pod(serde_json::json!([]));
        let v = set_up(
            &p,
            &tmp.0,
            serde_json::json!({"name": "e", "emptyDir": {"sizeLimit": "1Gi"}}),
        )
        .unwrap();
        assert_eq!(v.host_path, tmp.0.join("volumes/kubernetes.io~empty-dir/e"));
        assert_eq!(
            fs::metadata(&v.host_path).unwrap().permissions().mode() & 0o777,
            0o777
        );
        assert_eq!(v.size_limit, Some(Quantity("1Gi".into())));
        assert!(v.notes.is_empty() && !v.tmpfs && !v.read_only);
        let v = set_up(
            &p,
            &tmp.0,
            serde_json::json!({"name": "m", "emptyDir": {"medium": "Memory"}}),
        )
        .unwrap();
        assert!(!v.tmpfs);
        assert!(v.notes[0].contains("plain directory"), "{:?}", v.notes);
        tear_down_pod_volumes(&tmp.0, false).unwrap();
        assert!(!tmp.0.join("volumes").exists());
        tear_down_pod_volumes(&tmp.0, false).unwrap();
    }

    #[test]
    fn host_path_types() {
        let tmp = TempDir::new();
        let dir = tmp.0.join("d");
        let file_path = tmp.0.join("f");
        fs::create_dir(&dir).unwrap();
        fs::write(&file_path, "x").unwrap();
        let missing = tmp.0.join("missing");
        let show = |p: &Path| p.display().to_string();
        for (path, kind, want) in [
            (&dir, "", Ok(())),
            (&missing, "", Ok(())),
            (&dir, "Directory", Ok(())),
            (
                &file_path,
                "Directory",
                Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    show(&file_path)
                )),
            ),
            (
                &missing,
                "Directory",
                Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    show(&missing)
                )),
            ),
            (&file_path, "File", Ok(())),
            (
                &dir,
                "File",
                Err(format!(
                    "hostPath type check failed: {} is not a file",
                    show(&dir)
                )),
            ),
            (
                &file_path,
                "DirectoryOrCreate",
                Err(format!(
                    "hostPath type check failed: {} is not a directory",
                    show(&file_path)
                )),
            ),
            (
                &dir,
                "FileOrCreate",
                Err(format!(
                    "hostPath type check failed: {} is not a file",
                    show(&dir)
                )),
            ),
            (
                &file_path,
                "Socket",
                Err(format!(
                    "hostPath type check failed: {} is not a socket file",
                    show(&file_path)
                )),
            ),
            (
                &file_path,
                "CharDevice",
                Err(format!(
                    "hostPath type check failed: {} is not a character device",
                    show(&file_path)
                )),
            ),
            (
                &file_path,
                "BlockDevice",
                Err(format!(
                    "hostPath type check failed: {} is not a block device",
                    show(&file_path)
                )),
            ),
            (
                &dir,
                "Weird",
                Err("Weird is an invalid volume type".to_string()),
            ),
        ] {
            assert_eq!(
                check_host_path_type(path, kind),
                want,
                "{} {kind}",
                show(path)
            );
        }
        let new_dir = tmp.0.join("new/dir");
        check_host_path_type(&new_dir, "DirectoryOrCreate").unwrap();
        assert!(new_dir.is_dir());
        let new_file = tmp.0.join("new/file");
        check_host_path_type(&new_file, "FileOrCreate").unwrap();
        assert!(new_file.is_file());
        assert!(check_host_path_type(&tmp.0.join("nope/file"), "FileOrCreate").is_err());
        assert_eq!(
            check_host_path_type(Path::new("/dev/null"), "CharDevice"),
            Ok(())
        );
    }

    #[test]
    fn mounts_for_a_container() {
        let vol = |name: &str, read_only: bool| MountedVolume {
            name: name.into(),
            kind: "emptyDir".into(),
            host_path: PathBuf::from("/pods/u/volumes").join(name),
            read_only,
            size_limit: None,
            tmpfs: false,
            notes: vec![],
        };
        let volumes: BTreeMap<String, MountedVolume> = [
            ("data".to_string(), vol("data", false)),
            ("cfg".to_string(), vol("cfg", true)),
        ]
        .into();
        let env = [
            ("POD".to_string(), "web-1".to_string()),
            ("EMPTY".to_string(), String::new()),
        ];
        let run = |mounts: serde_json::Value| {
            let c: Container =
                serde_json::from_value(serde_json::json!({"name": "c", "volumeMounts": mounts}))
                    .unwrap();
            container_mounts(&c, &volumes, &env)
        };
        let got = run(serde_json::json!([
            {"name": "data", "mountPath": "/data"},
            {"name": "data", "mountPath": "/ro", "readOnly": true, "subPath": "a/b"},
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "data", "mountPath": "/logs", "subPathExpr": "logs/$(POD)"},
        ]))
        .unwrap();
        let pairs: Vec<_> = got
            .iter()
            .map(|m| {
                (
                    m.host_path.to_string_lossy().into_owned(),
                    m.container_path.as_str(),
                    m.read_only,
                    m.sub_path,
                )
            })
            .collect();
        assert_eq!(
            pairs,
            [
                ("/pods/u/volumes/data".to_string(), "/data", false, false),
                ("/pods/u/volumes/data/a/b".to_string(), "/ro", true, true),
                ("/pods/u/volumes/cfg".to_string(), "/etc/cfg", true, false),
                (
                    "/pods/u/volumes/data/logs/web-1".to_string(),
                    "/logs",
                    false,
                    true
                ),
            ]
        );
        for (mounts, want) in [
            (
                serde_json::json!([{"name": "nope", "mountPath": "/x"}]),
                "cannot find volume \"nope\" to mount into container \"c\"",
            ),
            (
                serde_json::json!([{"name": "data", "mountPath": "/x", "subPath": "/abs"}]),
                "error SubPath `/abs` must not be an absolute path",
            ),
            (
                serde_json::json!([{"name": "data", "mountPath": "/x", "subPath": "a/../../b"}]),
                "unable to provision SubPath `a/../../b`: must not contain '..'",
            ),
            (
                serde_json::json!([{"name": "data", "mountPath": "/x", "subPathExpr": "$(EMPTY)/$(NOPE)"}]),
                "missing value for EMPTY, NOPE",
            ),
            (
                serde_json::json!([{"name": "data", "mountPath": "rel"}]),
                "mountPath \"rel\" of volume \"data\" in container \"c\" is not absolute",
            ),
        ] {
            assert_eq!(run(mounts.clone()), Err(want.to_string()), "{mounts}");
        }
    }

    #[test]
    fn sub_paths_are_created_and_contained() {
        let tmp = TempDir::new();
        let vol = tmp.0.join("vol");
        fs::create_dir(&vol).unwrap();
        fs::set_permissions(&vol, fs::Permissions::from_mode(0o777)).unwrap();
        let outside = tmp.0.join("outside");
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, vol.join("escape")).unwrap();
        std::os::unix::fs::symlink("inner", vol.join("alias")).unwrap();
        fs::create_dir(vol.join("inner")).unwrap();
        let mount = |sub: &str| Mount {
            volume: "v".into(),
            volume_path: vol.clone(),
            host_path: vol.join(sub),
            container_path: "/x".into(),
            read_only: false,
            sub_path: true,
        };
        let root = vol.canonicalize().unwrap();
        let mut ok = [mount("a/b"), mount("alias")];
        prepare_sub_paths(&mut ok).unwrap();
        assert_eq!(ok[0].host_path, root.join("a/b"));
        assert_eq!(
            fs::metadata(&ok[0].host_path).unwrap().permissions().mode() & 0o777,
            0o777
        );
        assert_eq!(ok[1].host_path, root.join("inner"));
        for sub in ["escape", "escape/new/dir"] {
            let mut bad = [mount(sub)];
            let err = prepare_sub_paths(&mut bad).unwrap_err();
            assert!(err.contains("not within volume path"), "{sub}: {err}");
        }
        assert!(!outside.join("new").exists(), "nothing created outside");
    }

    #[test]
    fn memory_backed_sizes() {
        let alloc: BTreeMap<String, Quantity> =
            [("memory".to_string(), Quantity("1Gi".into()))].into();
        let limited = pod(serde_json::json!({"spec": {
            "initContainers": [{"name": "i", "resources": {"limits": {"memory": "300Mi"}}},
                               {"name": "s", "restartPolicy": "Always", "resources": {"limits": {"memory": "10Mi"}}}],
            "containers": [{"name": "a", "resources": {"limits": {"memory": "100Mi"}}},
                           {"name": "b", "resources": {"limits": {"memory": "50Mi"}}}]}}));
        let unlimited = pod(serde_json::json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"memory": "100Mi"}}}, {"name": "b"}]}}));
        let mi = |n: i128| n << 20;
        let q = |s: &str| Quantity(s.into());
        for (p, limit, alloc, want) in [
            (&limited, None, &alloc, Some(mi(300))),
            (&limited, Some(q("64Mi")), &alloc, Some(mi(64))),
            (&limited, Some(q("2Gi")), &alloc, Some(mi(300))),
            (&unlimited, None, &alloc, Some(mi(1024))),
            (&unlimited, Some(q("0")), &alloc, Some(mi(1024))),
            (&unlimited, None, &BTreeMap::new(), None),
            (&unlimited, Some(q("5Mi")), &BTreeMap::new(), Some(mi(5))),
        ] {
            assert_eq!(
                memory_backed_size(p, limit.as_ref(), alloc),
                want,
                "{limit:?}"
            );
        }
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/end\\04"), "/end\\04");
        assert!(is_mount_point(Path::new("/")));
    }
}
