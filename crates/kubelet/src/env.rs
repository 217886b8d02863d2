//! A container's environment, computed the way upstream's kubelet does in
//! `makeEnvironmentVariables` (`pkg/kubelet/kubelet_pods.go`):
//!
//! 1. `envFrom` sources, in order: every key of the ConfigMap or Secret (with
//!    the prefix) that is a valid variable name; invalid ones are skipped and
//!    reported as an `InvalidEnvironmentVariableNames` warning event;
//! 2. `env`, in order: a `value` has its `$(VAR)` references expanded against
//!    the variables defined so far (`$$` escapes a `$`, an unknown reference
//!    stays as written); a `valueFrom` is resolved from a ConfigMap or
//!    Secret key, a pod field (`fieldRef`) or a container resource
//!    (`resourceFieldRef`, with the node's allocatable standing in for a
//!    missing limit).
//!
//! A later definition of a name replaces an earlier one. Service links
//! (`FOO_SERVICE_HOST`...) are not injected: Tugboat's kubelet has no
//! service environment yet.
//!
//! Entry point for the pod worker: gather the ConfigMaps and Secrets the pod
//! names ([`referenced_objects`]) into a [`FetchedObjects`] ([`fetch_objects`]
//! reads them from the API server; a cache can implement [`Objects`]
//! instead), then call [`container_env`] before creating
//! each container. An `Err` is the message of upstream's
//! `CreateContainerConfigError` waiting reason; [`Environment::warnings`] are
//! events to record on the pod.
//!
//! [`pod_field_value`], [`field_path_value`] and [`resource_field_value`] are
//! shared with the downward API volume ([`crate::volumes`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::admission::parse_quantity_milli;

/// Where ConfigMaps and Secrets come from. `Ok(None)` is "not found";
/// `Err` is any other failure (the message is surfaced as is).
pub trait Objects {
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String>;
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String>;
}

/// ConfigMaps and Secrets fetched ahead of time, by name, in the pod's
/// namespace. A name that is absent is "not found"; a name mapped to an
/// `Err` failed to be fetched.
#[derive(Debug, Clone, Default)]
pub struct FetchedObjects {
    pub config_maps: BTreeMap<String, Result<ConfigMap, String>>,
    pub secrets: BTreeMap<String, Result<Secret, String>>,
}

impl Objects for FetchedObjects {
    fn config_map(&self, _namespace: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        self.config_maps.get(name).cloned().transpose()
    }

    fn secret(&self, _namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        self.secrets.get(name).cloned().transpose()
    }
}

/// The names of the ConfigMaps and Secrets a pod refers to (env, envFrom,
/// configMap/secret and projected volumes), so a caller can fetch them
/// before computing environments and volumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    pub config_maps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
}

/// [`References`] of `pod`.
pub fn referenced_objects(pod: &Pod) -> References {
    let mut refs = References::default();
    let Some(spec) = pod.spec.as_ref() else {
        return refs;
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| (c.env.as_deref(), c.env_from.as_deref()))
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (c.env.as_deref(), c.env_from.as_deref())),
        );
    for (env, env_from) in containers {
        for var in env.unwrap_or_default() {
            if let Some(from) = &var.value_from {
                if let Some(r) = &from.config_map_key_ref {
                    refs.config_maps.insert(r.name.clone());
                }
                if let Some(r) = &from.secret_key_ref {
                    refs.secrets.insert(r.name.clone());
                }
            }
        }
        for source in env_from.unwrap_or_default() {
            if let Some(r) = &source.config_map_ref {
                refs.config_maps.insert(r.name.clone());
            }
            if let Some(r) = &source.secret_ref {
                refs.secrets.insert(r.name.clone());
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(cm) = &volume.config_map {
            refs.config_maps.insert(cm.name.clone());
        }
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            refs.secrets.insert(name);
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(cm) = &source.config_map {
                refs.config_maps.insert(cm.name.clone());
            }
            if let Some(s) = &source.secret {
                refs.secrets.insert(s.name.clone());
            }
        }
    }
    // An empty name (invalid, rejected by validation) cannot be fetched.
    refs.config_maps.remove("");
    refs.secrets.remove("");
    refs
}

/// Fetches the objects of `refs` in `namespace` through the API, as a
/// [`FetchedObjects`]: "not found" leaves the name out (optional references
/// then read as absent), any other failure is kept as that name's error.
pub async fn fetch_objects(
    client: &kube::Client,
    namespace: &str,
    refs: &References,
) -> FetchedObjects {
    let config_maps: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), namespace);
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
    let mut fetched = FetchedObjects::default();
    for name in &refs.config_maps {
        match config_maps.get_opt(name).await {
            Ok(Some(cm)) => {
                fetched.config_maps.insert(name.clone(), Ok(cm));
            }
            Ok(None) => {}
            Err(e) => {
                fetched.config_maps.insert(
                    name.clone(),
                    Err(format!("getting configmap {name:?}: {e}")),
                );
            }
        }
    }
    for name in &refs.secrets {
        match secrets.get_opt(name).await {
            Ok(Some(s)) => {
                fetched.secrets.insert(name.clone(), Ok(s));
            }
            Ok(None) => {}
            Err(e) => {
                fetched
                    .secrets
                    .insert(name.clone(), Err(format!("getting secret {name:?}: {e}")));
            }
        }
    }
    fetched
}

/// What [`container_env`] needs besides the container.
pub struct EnvContext<'a> {
    pub pod: &'a Pod,
    /// The node's IPs, preferred family first (`status.hostIP(s)`).
    pub host_ips: &'a [String],
    /// The pod's IPs, preferred family first (`status.podIP(s)`).
    pub pod_ips: &'a [String],
    /// The node's allocatable resources: the limit of a container that sets
    /// none, for `resourceFieldRef`.
    pub node_allocatable: &'a BTreeMap<String, Quantity>,
    pub objects: &'a dyn Objects,
}

/// A warning event for the pod (upstream records it and goes on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvWarning {
    pub reason: &'static str,
    pub message: String,
}

/// A container's final environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// Name and value, in order of first definition (a redefinition keeps
    /// the place and takes the new value).
    pub vars: Vec<(String, String)>,
    pub warnings: Vec<EnvWarning>,
}

impl Environment {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An insertion-ordered map: the order a runtime receives the variables in
/// is then stable and readable.
#[derive(Default)]
struct OrderedEnv {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl OrderedEnv {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.vars[i].1.as_str())
    }
}

/// Upstream's `IsEnvVarName` (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
pub fn is_env_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b"-._".contains(&b) => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// Upstream's `expansion.Expand`: `$(NAME)` becomes `mapping(NAME)` when it
/// knows the name (else stays as written), `$$` becomes `$`, any other `$`
/// is kept, and an unclosed `$(` is kept as is.
pub fn expand(input: &str, mut mapping: impl FnMut(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            b'$' => {
                out.push(b'$');
                i += 2;
            }
            b'(' => match bytes[i + 2..].iter().position(|&b| b == b')') {
                Some(len) => {
                    let name = &input[i + 2..i + 2 + len];
                    match mapping(name) {
                        Some(value) => out.extend_from_slice(value.as_bytes()),
                        None => out.extend_from_slice(format!("$({name})").as_bytes()),
                    }
                    i += 2 + len + 1;
                }
                None => {
                    out.extend_from_slice(b"$(");
                    i += 2;
                }
            },
            _ => {
                // Not an expression: the `$` stays; the next byte is
                // copied by the loop (it may begin another `$`).
                out.push(b'$');
                i += 1;
            }
        }
    }
    // Only ASCII was inserted or removed around whole UTF-8 sequences.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Go's `strconv.Quote`, as upstream's `FormatMap` writes label values.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Upstream's `FormatMap`: `key="value"` lines, sorted, no final newline.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `metadata.labels['k']` → `("metadata.labels", "k")`.
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, key) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, key))
}

/// A label or annotation key: upstream's `IsQualifiedName` on the
/// lowercased key (an optional DNS-subdomain prefix and a name of at most 63
/// alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric).
fn is_qualified_name(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key.as_str()),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    });
    name_ok && prefix_ok
}

/// Upstream's `fieldpath.ExtractFieldPathAsString`: the metadata fields a
/// downward API volume may project.
pub fn field_path_value(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    if let Some((base, key)) = split_subscript(path) {
        let map = match base {
            "metadata.annotations" => meta.annotations.as_ref(),
            "metadata.labels" => meta.labels.as_ref(),
            _ => return Err(format!("fieldPath {path:?} does not support subscript")),
        };
        if !is_qualified_name(key) {
            return Err(format!(
                "invalid key subscript in {path}: {key:?} is not a qualified name"
            ));
        }
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    Ok(match path {
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        _ => return Err(format!("unsupported fieldPath: {path}")),
    })
}

/// Upstream's `podFieldSelectorRuntimeValue`: a `fieldRef` of an env var,
/// which also reaches spec and status fields.
pub fn pod_field_value(
    pod: &Pod,
    selector: &ObjectFieldSelector,
    host_ips: &[String],
    pod_ips: &[String],
) -> Result<String, String> {
    let version = selector.api_version.as_deref().unwrap_or("v1");
    if version != "v1" && !version.is_empty() {
        return Err(format!("unsupported pod version: {version}"));
    }
    let path = selector.field_path.as_str();
    if let Some((base, _)) = split_subscript(path) {
        if base != "metadata.annotations" && base != "metadata.labels" {
            return Err(format!("field label does not support subscript: {path}"));
        }
        return field_path_value(pod, path);
    }
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let first_host_ip = || {
        host_ips
            .first()
            .cloned()
            .ok_or_else(|| "the node has no IP address".to_string())
    };
    Ok(match path {
        "metadata.annotations"
        | "metadata.labels"
        | "metadata.name"
        | "metadata.namespace"
        | "metadata.uid" => return field_path_value(pod, path),
        "spec.nodeName" | "spec.host" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "spec.restartPolicy" => spec
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_default(),
        "spec.schedulerName" => spec
            .and_then(|s| s.scheduler_name.clone())
            .unwrap_or_default(),
        "status.phase" => status.and_then(|s| s.phase.clone()).unwrap_or_default(),
        "status.hostIP" => first_host_ip()?,
        "status.hostIPs" => {
            first_host_ip()?;
            host_ips.join(",")
        }
        "status.podIP" => pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => pod_ips.join(","),
        _ => return Err(format!("field label not supported: {path}")),
    })
}

/// Upstream's `ExtractResourceValueByContainerNameAndNodeAllocatable`: a
/// container's request or limit divided by the divisor, rounded up, with the
/// node's allocatable in place of a limit the container does not set.
pub fn resource_field_value(
    pod: &Pod,
    container_name: &str,
    selector: &ResourceFieldSelector,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let container = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .find(|c| c.name == container_name)
        .ok_or_else(|| format!("container {container_name} not found"))?;
    container_resource_value(container, selector, node_allocatable)
}

fn container_resource_value(
    container: &Container,
    selector: &ResourceFieldSelector,
    node_allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let unsupported = || format!("unsupported container resource : {}", selector.resource);
    let (kind, resource) = selector.resource.split_once('.').ok_or_else(unsupported)?;
    let is_cpu = resource == "cpu";
    if !(is_cpu
        || resource == "memory"
        || resource == "ephemeral-storage"
        || resource.starts_with("hugepages-"))
    {
        return Err(unsupported());
    }
    let resources = container.resources.as_ref();
    let list = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(unsupported()),
    };
    let mut quantity = list.and_then(|l| l.get(resource));
    if kind == "limits" && quantity.is_none() {
        quantity = node_allocatable.get(resource);
    }
    let milli = match quantity {
        Some(q) => parse_quantity_milli(&q.0)
            .ok_or_else(|| format!("invalid quantity {:?} of {}", q.0, selector.resource))?,
        None => 0,
    };
    let divisor_milli = match selector.divisor.as_ref() {
        Some(d) => {
            parse_quantity_milli(&d.0).ok_or_else(|| format!("invalid divisor {:?}", d.0))?
        }
        None => 0,
    };
    Ok(divide_resource(milli, divisor_milli, is_cpu).to_string())
}

/// CPU divides millicores (`1m` divisor counts millicores); the others
/// divide whole units (upstream's `Value`, itself rounded up). A zero
/// divisor is `1`. The quotient rounds up.
fn divide_resource(milli: i128, divisor_milli: i128, is_cpu: bool) -> i128 {
    let whole = |m: i128| if m >= 0 { (m + 999) / 1000 } else { m / 1000 };
    let (value, divisor) = if is_cpu {
        (milli, divisor_milli)
    } else {
        (whole(milli), whole(divisor_milli))
    };
    let divisor = if divisor_milli == 0 || divisor <= 0 {
        if is_cpu {
            1000
        } else {
            1
        }
    } else {
        divisor
    };
    if value >= 0 {
        (value + divisor - 1) / divisor
    } else {
        value / divisor
    }
}

/// The environment of `container` in `ctx.pod`; `Err` is upstream's
/// `CreateContainerConfigError` message.
pub fn container_env(ctx: &EnvContext<'_>, container: &Container) -> Result<Environment, String> {
    let namespace = ctx.pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = OrderedEnv::default();
    let mut warnings = Vec::new();
    // Each object is fetched once per container, as upstream caches them.
    let mut config_maps: HashMap<String, Option<ConfigMap>> = HashMap::new();
    let mut secrets: HashMap<String, Option<Secret>> = HashMap::new();
    let mut get_cm = |name: &str| -> Result<Option<ConfigMap>, String> {
        if let Some(cm) = config_maps.get(name) {
            return Ok(cm.clone());
        }
        let cm = ctx.objects.config_map(namespace, name)?;
        config_maps.insert(name.to_string(), cm.clone());
        Ok(cm)
    };
    let mut get_secret = |name: &str| -> Result<Option<Secret>, String> {
        if let Some(s) = secrets.get(name) {
            return Ok(s.clone());
        }
        let s = ctx.objects.secret(namespace, name)?;
        secrets.insert(name.to_string(), s.clone());
        Ok(s)
    };

    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or("");
        let (what, name, pairs): (&str, &str, Vec<(String, String)>) =
            if let Some(r) = &source.config_map_ref {
                match get_cm(&r.name)? {
                    Some(cm) => (
                        "configMap",
                        &r.name,
                        cm.data.unwrap_or_default().into_iter().collect(),
                    ),
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("configmap {:?} not found", r.name)),
                }
            } else if let Some(r) = &source.secret_ref {
                match get_secret(&r.name)? {
                    Some(s) => (
                        "secret",
                        &r.name,
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                            .collect(),
                    ),
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("secret {:?} not found", r.name)),
                }
            } else {
                continue;
            };
        let mut invalid = Vec::new();
        for (key, value) in pairs {
            let key = format!("{prefix}{key}");
            if is_env_var_name(&key) {
                env.set(key, value);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            warnings.push(EnvWarning {
                reason: "InvalidEnvironmentVariableNames",
                message: format!(
                    "Keys [{}] from the EnvFrom {what} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                    invalid.join(", ")
                ),
            });
        }
    }

    for var in container.env.iter().flatten() {
        let value = var.value.as_deref().unwrap_or("");
        let resolved = if !value.is_empty() {
            expand(value, |name| env.get(name).map(str::to_string))
        } else if let Some(from) = &var.value_from {
            if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                match get_cm(&r.name)? {
                    None if optional => continue,
                    None => return Err(format!("configmap {:?} not found", r.name)),
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                r.key, r.name
                            ))
                        }
                    },
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                match get_secret(&r.name)? {
                    None if optional => continue,
                    None => return Err(format!("secret {:?} not found", r.name)),
                    Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                r.key, r.name
                            ))
                        }
                    },
                }
            } else if let Some(f) = &from.field_ref {
                pod_field_value(ctx.pod, f, ctx.host_ips, ctx.pod_ips)?
            } else if let Some(r) = &from.resource_field_ref {
                // In env, the container defaults to the one being started.
                let name = r.container_name.as_deref().unwrap_or("");
                if name.is_empty() || name == container.name {
                    container_resource_value(container, r, ctx.node_allocatable)?
                } else {
                    resource_field_value(ctx.pod, name, r, ctx.node_allocatable)?
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), resolved);
    }
    Ok(Environment {
        vars: env.vars,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn objects() -> FetchedObjects {
        let mut o = FetchedObjects::default();
        o.config_maps.insert(
            "cfg".into(),
            Ok(serde_json::from_value(serde_json::json!({
                "metadata": {"name": "cfg"},
                "data": {"mode": "fast", "LEVEL": "3", "bad key": "x", "1st": "y"}
            }))
            .unwrap()),
        );
        o.secrets.insert(
            "creds".into(),
            Ok(serde_json::from_value(serde_json::json!({
                "metadata": {"name": "creds"},
                "data": {"password": "aHVudGVyMg==", "USER": "YWRtaW4="}
            }))
            .unwrap()),
        );
        o.config_maps
            .insert("broken".into(), Err("connection refused".into()));
        o
    }

    fn the_pod() -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u-1",
                         "labels": {"app": "web", "tier": "a\"b"},
                         "annotations": {"note": "hi"}},
            "spec": {"nodeName": "node-a", "serviceAccountName": "sa",
                     "containers": [
                        {"name": "main", "image": "i",
                         "resources": {"limits": {"cpu": "250m", "memory": "64Mi"},
                                       "requests": {"cpu": "100m"}}},
                        {"name": "side", "image": "i"}]},
        }))
    }

    fn run(c: serde_json::Value) -> Result<Environment, String> {
        let pod = the_pod();
        let objects = objects();
        let alloc: BTreeMap<String, Quantity> = [
            ("cpu".to_string(), Quantity("4".into())),
            ("memory".to_string(), Quantity("8Gi".into())),
        ]
        .into();
        let ctx = EnvContext {
            pod: &pod,
            host_ips: &["10.0.0.1".into(), "fd00::1".into()],
            pod_ips: &["10.1.0.5".into(), "fd01::5".into()],
            node_allocatable: &alloc,
            objects: &objects,
        };
        // The container under test is the pod's `main` with the test's
        // env and envFrom.
        let mut main = pod.spec.as_ref().unwrap().containers[0].clone();
        let given = container(c);
        main.env = given.env;
        main.env_from = given.env_from;
        container_env(&ctx, &main)
    }

    #[test]
    fn expansion_follows_upstream() {
        let map = |n: &str| match n {
            "A" => Some("x".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        for (input, want) in [
            ("$(A)", "x"),
            ("pre-$(A)-post", "pre-x-post"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$x"),
            ("$(B)", "$(B)"),
            ("$(EMPTY)z", "z"),
            ("$(A", "$(A"),
            ("$", "$"),
            ("a$b", "a$b"),
            ("$$", "$"),
            ("$()", "$()"),
            ("é$(A)ü", "éxü"),
            ("$$$", "$$"),
        ] {
            assert_eq!(expand(input, map), want, "{input}");
        }
    }

    #[test]
    fn env_var_names() {
        for (name, ok) in [
            ("A", true),
            ("a.b-c_d", true),
            ("_X1", true),
            ("1X", false),
            ("", false),
            ("a b", false),
            ("A=B", false),
        ] {
            assert_eq!(is_env_var_name(name), ok, "{name}");
        }
    }

    #[test]
    fn values_expand_against_earlier_variables_only() {
        let env = run(serde_json::json!({"name": "main", "image": "i", "env": [
            {"name": "A", "value": "one"},
            {"name": "B", "value": "$(A)-two-$(C)"},
            {"name": "C", "value": "three"},
            {"name": "D", "value": "$$(A)"},
            {"name": "E"},
        ]}))
        .unwrap();
        assert_eq!(
            env.vars,
            [
                ("A".into(), "one".into()),
                ("B".into(), "one-two-$(C)".into()),
                ("C".into(), "three".into()),
                ("D".into(), "$(A)".into()),
                ("E".into(), String::new()),
            ]
        );
    }

    #[test]
    fn value_from_sources() {
        let cases: &[(serde_json::Value, Result<&str, &str>)] = &[
            (
                serde_json::json!({"configMapKeyRef": {"name": "cfg", "key": "mode"}}),
                Ok("fast"),
            ),
            (
                serde_json::json!({"configMapKeyRef": {"name": "cfg", "key": "nope"}}),
                Err("couldn't find key nope in ConfigMap prod/cfg"),
            ),
            (
                serde_json::json!({"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}),
                Ok("<unset>"),
            ),
            (
                serde_json::json!({"configMapKeyRef": {"name": "x", "key": "k"}}),
                Err("configmap \"x\" not found"),
            ),
            (
                serde_json::json!({"configMapKeyRef": {"name": "x", "key": "k", "optional": true}}),
                Ok("<unset>"),
            ),
            (
                serde_json::json!({"configMapKeyRef": {"name": "broken", "key": "k", "optional": true}}),
                Err("connection refused"),
            ),
            (
                serde_json::json!({"secretKeyRef": {"name": "creds", "key": "password"}}),
                Ok("hunter2"),
            ),
            (
                serde_json::json!({"secretKeyRef": {"name": "creds", "key": "k"}}),
                Err("couldn't find key k in Secret prod/creds"),
            ),
            (
                serde_json::json!({"secretKeyRef": {"name": "s", "key": "k"}}),
                Err("secret \"s\" not found"),
            ),
            (
                serde_json::json!({"secretKeyRef": {"name": "s", "key": "k", "optional": true}}),
                Ok("<unset>"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "metadata.name"}}),
                Ok("web"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "metadata.namespace"}}),
                Ok("prod"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "metadata.uid"}}),
                Ok("u-1"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "metadata.labels['app']"}}),
                Ok("web"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "metadata.labels['missing']"}}),
                Ok(""),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "metadata.labels"}}),
                Ok("app=\"web\"\ntier=\"a\\\"b\""),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "metadata.annotations['note']"}}),
                Ok("hi"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "spec.nodeName"}}),
                Ok("node-a"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "spec.serviceAccountName"}}),
                Ok("sa"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "status.hostIP"}}),
                Ok("10.0.0.1"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "status.hostIPs"}}),
                Ok("10.0.0.1,fd00::1"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "status.podIP"}}),
                Ok("10.1.0.5"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "status.podIPs"}}),
                Ok("10.1.0.5,fd01::5"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "spec.containers"}}),
                Err("field label not supported: spec.containers"),
            ),
            (
                serde_json::json!({"fieldRef": {"fieldPath": "spec.x['y']"}}),
                Err("field label does not support subscript: spec.x['y']"),
            ),
            (
                serde_json::json!({"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}}),
                Err("unsupported pod version: v2"),
            ),
            (
                serde_json::json!({"resourceFieldRef": {"resource": "limits.cpu"}}),
                Ok("1"),
            ),
            (
                serde_json::json!({"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}),
                Ok("250"),
            ),
            (
                serde_json::json!({"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}),
                Ok("100"),
            ),
            (
                serde_json::json!({"resourceFieldRef": {"resource": "limits.memory"}}),
                Ok("67108864"),
            ),
            (
                serde_json::json!({"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}),
                Ok("64"),
            ),
            (
                serde_json::json!({"resourceFieldRef": {"resource": "limits.memory", "divisor": "1G"}}),
                Ok("1"),
            ),
            (
                serde_json::json!({"resourceFieldRef": {"resource": "requests.memory"}}),
                Ok("0"),
            ),
            (
                serde_json::json!({"resourceFieldRef": {"containerName": "side", "resource": "limits.cpu"}}),
                Ok("4"),
            ),
            (
                serde_json::json!({"resourceFieldRef": {"containerName": "side", "resource": "limits.memory", "divisor": "1Gi"}}),
                Ok("8"),
            ),
            (
                serde_json::json!({"resourceFieldRef": {"containerName": "gone", "resource": "limits.cpu"}}),
                Err("container gone not found"),
            ),
            (
                serde_json::json!({"resourceFieldRef": {"resource": "limits.pods"}}),
                Err("unsupported container resource : limits.pods"),
            ),
        ];
        for (from, want) in cases {
            let got = run(serde_json::json!({"name": "main", "image": "i", "env": [
                {"name": "V", "valueFrom": from}]}))
            .map(|e| e.get("V").unwrap_or("<unset>").to_string());
            assert_eq!(
                got,
                want.map(str::to_string).map_err(str::to_string),
                "{from}"
            );
        }
    }

    #[test]
    fn env_from_with_prefix_skips_invalid_keys() {
        let env = run(serde_json::json!({"name": "main", "image": "i",
            "envFrom": [
                {"configMapRef": {"name": "cfg"}},
                {"prefix": "S_", "secretRef": {"name": "creds"}},
                {"configMapRef": {"name": "gone", "optional": true}},
            ],
            "env": [{"name": "mode", "value": "slow/$(mode)"}]}))
        .unwrap();
        assert_eq!(env.get("LEVEL"), Some("3"));
        assert_eq!(env.get("mode"), Some("slow/fast"));
        assert_eq!(env.get("S_password"), Some("hunter2"));
        assert_eq!(env.get("S_USER"), Some("admin"));
        assert_eq!(env.get("1st"), None);
        assert_eq!(
            env.warnings,
            [EnvWarning {
                reason: "InvalidEnvironmentVariableNames",
                message: "Keys [1st, bad key] from the EnvFrom configMap prod/cfg were skipped since they are considered invalid environment variable names.".into(),
            }]
        );
        // A prefix can make a key valid.
        let env = run(serde_json::json!({"name": "main", "image": "i",
            "envFrom": [{"prefix": "P", "configMapRef": {"name": "cfg"}}]}))
        .unwrap();
        assert_eq!(env.get("P1st"), Some("y"));
        for (source, want) in [
            (
                serde_json::json!({"configMapRef": {"name": "gone"}}),
                "configmap \"gone\" not found",
            ),
            (
                serde_json::json!({"secretRef": {"name": "gone"}}),
                "secret \"gone\" not found",
            ),
        ] {
            let got = run(serde_json::json!({"name": "main", "image": "i", "envFrom": [source]}));
            assert_eq!(got, Err(want.to_string()));
        }
    }

    #[test]
    fn resource_division_rounds_up() {
        for (milli, divisor, cpu, want) in [
            (250, 1000, true, 1),
            (250, 1, true, 250),
            (250, 0, true, 1),
            (2000, 1000, true, 2),
            (2001, 1000, true, 3),
            (1_000_000, 0, false, 1000),
            (1_500, 0, false, 2),
            (64 * 1024 * 1024 * 1000, 1024 * 1024 * 1000, false, 64),
            (0, 0, false, 0),
        ] {
            assert_eq!(
                divide_resource(milli, divisor, cpu),
                want,
                "{milli}/{divisor}"
            );
        }
    }

    #[test]
    fn field_paths_for_volumes() {
        let pod = the_pod();
        for (path, want) in [
            ("metadata.name", Ok("web")),
            ("metadata.annotations", Ok("note=\"hi\"")),
            ("metadata.labels['tier']", Ok("a\"b")),
            ("metadata.labels['bad key']", Err("invalid key subscript in metadata.labels['bad key']: \"bad key\" is not a qualified name")),
            ("metadata.foo['x']", Err("fieldPath \"metadata.foo['x']\" does not support subscript")),
            ("spec.nodeName", Err("unsupported fieldPath: spec.nodeName")),
        ] {
            assert_eq!(
                field_path_value(&pod, path),
                want.map(str::to_string).map_err(str::to_string),
                "{path}"
            );
        }
    }

    #[test]
    fn qualified_names_and_quoting() {
        for (key, ok) in [
            ("app", true),
            ("example.com/app", true),
            ("App.Name_1", true),
            ("-x", false),
            ("/x", false),
            ("a/b/c", false),
            ("", false),
        ] {
            assert_eq!(is_qualified_name(key), ok, "{key}");
        }
        assert_eq!(go_quote("a\tb\u{1}\\"), "\"a\\tb\\x01\\\\\"");
    }

    #[test]
    fn references_cover_env_and_volumes() {
        let pod = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "s1"}}]}],
                "containers": [{"name": "c", "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c1", "key": "k"}}}]}],
                "volumes": [
                    {"name": "v1", "configMap": {"name": "c2"}},
                    {"name": "v2", "secret": {"secretName": "s2"}},
                    {"name": "v4", "secret": {}},
                    {"name": "v5", "configMap": {"name": ""}},
                    {"name": "v3", "projected": {"sources": [{"configMap": {"name": "c3"}}, {"secret": {"name": "s3"}}]}},
                ]
            }
        }));
        let refs = referenced_objects(&pod);
        assert_eq!(
            refs.config_maps.into_iter().collect::<Vec<_>>(),
            ["c1", "c2", "c3"]
        );
        assert_eq!(
            refs.secrets.into_iter().collect::<Vec<_>>(),
            ["s1", "s2", "s3"]
        );
    }
}
