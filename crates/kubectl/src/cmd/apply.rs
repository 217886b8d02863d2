//! `tug apply -f`: by default server-side apply of every object in the
//! files, as `kubectl apply --server-side` does (field manager `tug`,
//! conflicts are errors unless `--force-conflicts`).
//!
//! `--server-side=false` is kubectl's classic client-side apply: the file's
//! object is recorded in the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation; an absent object is created, a present one gets a three-way
//! patch computed here from the last applied configuration, the new file
//! and the live object (strategic merge for built-in kinds, whose list merge
//! keys come from `tugboat-api`'s schemas; JSON merge for other kinds), and
//! an empty patch means `unchanged`.

use std::io::Write;

use kube::api::{Patch, PatchParams};

use super::{locate, when, DryRun};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::manifest;
use crate::printers::table::TabWriter;
use crate::printers::Output;

/// Apply a configuration to a resource by file name or stdin.
///
/// Objects are sent with server-side apply: the server merges them and
/// records which fields this manager owns. With --server-side=false, tug
/// computes a three-way patch against the last applied configuration, as
/// kubectl's client-side apply does. JSON and YAML are accepted.
///
/// Examples:
///   # Apply the configuration in pod.json to a pod
///   tug apply -f ./pod.json
///
///   # Apply every manifest under a directory tree
///   tug apply -R -f ./manifests/
///
///   # Apply the JSON passed into stdin
///   cat pod.json | tug apply -f -
///
///   # Take ownership of fields another manager set
///   tug apply -f app.yaml --force-conflicts
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ApplyArgs {
    /// The files that contain the configurations to apply ('-' for stdin).
    #[arg(short = 'f', long = "filename", required = true)]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Server-side apply (the default); false: client-side apply with the
    /// last-applied-configuration annotation.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub server_side: bool,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "tug")]
    pub field_manager: String,
    /// Take ownership of fields other managers own instead of failing.
    #[arg(long)]
    pub force_conflicts: bool,
    /// Must be "none", "server", or "client".
    #[arg(long, default_value = "none", num_args = 0..=1, default_missing_value = "client")]
    pub dry_run: String,
    /// Output format: json, yaml, name, jsonpath=..., custom-columns=...
    #[arg(short = 'o', long = "output")]
    pub output: Option<String>,
}

/// The patch parameters the flags ask for.
pub fn patch_params(a: &ApplyArgs, dry: DryRun) -> PatchParams {
    let mut pp = PatchParams::apply(&a.field_manager);
    pp.force = a.force_conflicts;
    pp.dry_run = dry == DryRun::Server;
    pp
}

pub async fn run(ctx: &Ctx, a: ApplyArgs) -> Result<()> {
    let dry = DryRun::parse(&a.dry_run)?;
    if !a.server_side {
        return client_side::run(ctx, &a, dry).await;
    }
    let output = a
        .output
        .as_deref()
        .map(Output::parse)
        .transpose()
        .map_err(CliError::Client)?;
    let pp = patch_params(&a, dry);
    let mut last_err: Option<CliError> = None;
    for m in manifest::load(&a.filename, a.recursive)? {
        let result = async {
            let (r, ns) = locate(ctx, &m.object, &m.source).await?;
            let name = m.object["metadata"]["name"].as_str().unwrap_or("").to_string();
            if name.is_empty() {
                return Err(CliError::client(format!("error when retrieving current configuration of:\nResource: {:?}, Name: \"\"\nfrom server for: {:?}: resource name may not be empty", r.plural_group(), m.source)));
            }
            let applied = if dry == DryRun::Client {
                m.object.clone()
            } else {
                let req = ctx.request(&r, ns.as_deref()).patch(&name, &pp, &Patch::Apply(&m.object))?;
                ctx.send(req).await.map_err(|e| when(e, "patching", &m.source))?
            };
            let text = match &output {
                Some(o) => super::get::print_objects(o, std::slice::from_ref(&applied), true, false, &mut TabWriter::default()),
                None => format!("{}/{name} serverside-applied{}\n", r.kind_group(), dry.suffix()),
            };
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            if let Some(prev) = last_err.replace(e) {
                eprintln!("{prev}");
            }
        }
    }
    last_err.map_or(Ok(()), Err)
}

/// Client-side apply (`--server-side=false`): the annotation, the
/// three-way patch, and the create-or-patch loop.
mod client_side {
    use std::io::Write;

    use api::{patch_meta, schema};
    use serde_json::{Map, Value};

    use super::super::{locate, patch_raw, when, DryRun};
    use super::ApplyArgs;
    use crate::ctx::Ctx;
    use crate::error::{CliError, Result};
    use crate::manifest;
    use crate::printers::table::TabWriter;
    use crate::printers::Output;

    pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

    /// A JSON value with every object's keys sorted, as Go's encoder
    /// writes maps (so the annotation is byte-identical to kubectl's).
    pub fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }

    /// The file's object as kubectl sends it: its namespace filled in (for
    /// namespaced kinds) and the last-applied annotation set to that object
    /// without the annotation (compact JSON, keys sorted, plus newline; the
    /// emptied annotations map stays as `{}`, as in kubectl's).
    pub fn with_last_applied(obj: &Value, ns: Option<&str>) -> Value {
        let mut out = obj.clone();
        let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) else {
            return out;
        };
        if let Some(ns) = ns {
            meta.insert("namespace".into(), Value::String(ns.to_string()));
        }
        if !meta.get("annotations").is_some_and(Value::is_object) {
            meta.insert("annotations".into(), Value::Object(Map::new()));
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.shift_remove(LAST_APPLIED);
        }
        let text = format!("{}\n", sorted(&out));
        out["metadata"]["annotations"][LAST_APPLIED] = Value::String(text);
        out
    }

    /// How one field merges, from the kind's schema.
    #[derive(Clone, Copy, Default)]
    struct Field {
        merge_key: Option<&'static str>,
        merge_list: bool,
        retain_keys: bool,
        definition: Option<&'static str>,
        items: Option<&'static str>,
    }

    fn field(definition: Option<&'static str>, name: &str) -> Field {
        let Some(def) = definition else {
            return Field::default();
        };
        let defs = schema::definitions(schema::Dialect::Swagger2);
        let meta = patch_meta::lookup(def, name);
        let strategy = meta.and_then(|m| m.strategy).unwrap_or("");
        let has = |s: &str| strategy.split(',').any(|p| p.trim() == s);
        let (definition, items) = match schema::property(defs, def, name) {
            Some((prop, referenced)) => (referenced, schema::items_definition(prop)),
            None => (None, None),
        };
        Field {
            merge_key: meta.and_then(|m| m.merge_key),
            merge_list: has("merge"),
            retain_keys: has("retainKeys"),
            definition,
            items,
        }
    }

    /// The schema definition of a built-in kind (`None`: unknown kind,
    /// which gets a JSON merge patch).
    pub fn root_definition(api_version: &str, kind: &str) -> Option<&'static str> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let name = schema::definition_name(group, version, kind)?;
        schema::definitions(schema::Dialect::Swagger2)
            .get_key_value(&name)
            .map(|(k, _)| k.as_str())
    }

    /// kubectl's `CreateThreeWayMergePatch` (overwrite on): what changes
    /// `current` into `modified` (additions and changes), plus deletion of
    /// what `original` (the last applied configuration) had and `modified`
    /// no longer has. Fields only the live object has (set by the server or
    /// other writers) are left alone. With `definition` `None`, lists are
    /// replaced whole and no directives are written (a JSON merge patch).
    pub fn three_way(
        original: Option<&Map<String, Value>>,
        modified: &Map<String, Value>,
        current: Option<&Map<String, Value>>,
        definition: Option<&'static str>,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, m) in modified {
            let f = field(definition, k);
            let c = current.and_then(|c| c.get(k));
            let o = original.and_then(|o| o.get(k));
            match (m, c) {
                (Value::Object(mm), Some(Value::Object(cm))) => {
                    let mut sub =
                        three_way(o.and_then(Value::as_object), mm, Some(cm), f.definition);
                    if !sub.is_empty() {
                        if f.retain_keys && definition.is_some() {
                            let keys: Vec<Value> =
                                mm.keys().map(|k| Value::String(k.clone())).collect();
                            sub.insert("$retainKeys".into(), Value::Array(keys));
                        }
                        out.insert(k.clone(), Value::Object(sub));
                    }
                }
                (Value::Array(ml), Some(Value::Array(cl)))
                    if f.merge_list && definition.is_some() =>
                {
                    let ol = o
                        .and_then(Value::as_array)
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    list_diff(k, ol, ml, cl, f, &mut out);
                }
                (Value::Null, None | Some(Value::Null)) => {}
                (m, Some(c)) if m == c => {}
                (m, _) => {
                    out.insert(k.clone(), m.clone());
                }
            }
        }
        if let Some(o) = original {
            for k in o.keys().filter(|k| !modified.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
        }
        out
    }

    /// A merge list's part of the patch: changed and new elements (by merge
    /// key), deletions of elements the last applied list had, and the new
    /// order; primitive lists add values and delete the dropped ones.
    fn list_diff(
        name: &str,
        original: &[Value],
        modified: &[Value],
        current: &[Value],
        f: Field,
        out: &mut Map<String, Value>,
    ) {
        let order = format!("$setElementOrder/{name}");
        let Some(key) = f.merge_key else {
            let added: Vec<Value> = modified
                .iter()
                .filter(|v| !current.contains(v))
                .cloned()
                .collect();
            let deleted: Vec<Value> = original
                .iter()
                .filter(|v| !modified.contains(v))
                .cloned()
                .collect();
            if added.is_empty() && deleted.is_empty() {
                return;
            }
            if !added.is_empty() {
                out.insert(name.into(), Value::Array(added));
            }
            if !deleted.is_empty() {
                out.insert(
                    format!("$deleteFromPrimitiveList/{name}"),
                    Value::Array(deleted),
                );
            }
            out.insert(order, Value::Array(modified.to_vec()));
            return;
        };
        let id = |v: &Value| v.get(key).cloned();
        let find = |list: &[Value], want: &Option<Value>| -> Option<Map<String, Value>> {
            list.iter()
                .find(|v| want.is_some() && id(v) == *want)
                .and_then(|v| v.as_object().cloned())
        };
        let mut patch = Vec::new();
        for m in modified {
            let want = id(m);
            let Some(mm) = m.as_object() else { continue };
            match find(current, &want) {
                None => patch.push(m.clone()),
                Some(cm) => {
                    let om = find(original, &want);
                    let mut sub = three_way(om.as_ref(), mm, Some(&cm), f.items);
                    if !sub.is_empty() {
                        sub.insert(key.into(), want.clone().unwrap_or(Value::Null));
                        patch.push(Value::Object(sub));
                    }
                }
            }
        }
        for o in original {
            let want = id(o);
            if want.is_some() && !modified.iter().any(|m| id(m) == want) {
                let mut d = Map::new();
                d.insert("$patch".into(), Value::String("delete".into()));
                d.insert(key.into(), want.unwrap_or(Value::Null));
                patch.push(Value::Object(d));
            }
        }
        if patch.is_empty() {
            return;
        }
        let ids: Vec<Value> = modified
            .iter()
            .filter_map(|m| {
                id(m).map(|v| Value::Object([(key.to_string(), v)].into_iter().collect()))
            })
            .collect();
        out.insert(name.into(), Value::Array(patch));
        out.insert(order, Value::Array(ids));
    }

    /// What one object's apply did.
    #[derive(Debug, PartialEq)]
    pub enum Outcome {
        Created,
        Configured,
        Unchanged,
    }

    impl Outcome {
        pub fn word(&self) -> &'static str {
            match self {
                Outcome::Created => "created",
                Outcome::Configured => "configured",
                Outcome::Unchanged => "unchanged",
            }
        }
    }

    /// The patch body and its content type for a live object, or `None`
    /// when nothing changes.
    pub fn patch_for(modified: &Value, live: &Value) -> Option<(Value, &'static str)> {
        let definition = root_definition(
            modified["apiVersion"].as_str().unwrap_or(""),
            modified["kind"].as_str().unwrap_or(""),
        );
        let original: Option<Value> = live["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .and_then(|t| serde_json::from_str(t).ok());
        let patch = three_way(
            original.as_ref().and_then(Value::as_object),
            modified.as_object()?,
            live.as_object(),
            definition,
        );
        if patch.is_empty() {
            return None;
        }
        let ct = if definition.is_some() {
            "application/strategic-merge-patch+json"
        } else {
            "application/merge-patch+json"
        };
        Some((Value::Object(patch), ct))
    }

    /// kubectl's warning for a live object that was not created by apply.
    pub fn missing_annotation_warning(resource: &str, name: &str) -> String {
        format!(
            "Warning: resource {resource}/{name} is missing the {LAST_APPLIED} annotation which is required by tug apply. tug apply should only be used on resources created declaratively by either tug create --save-config or tug apply. The missing annotation will be patched automatically."
        )
    }

    /// kubectl's framing of a failed apply patch: the patch, the object
    /// and the file around the server's message.
    pub fn patch_failed(
        e: CliError,
        target: &super::super::Target,
        patch: &Value,
        source: &str,
    ) -> CliError {
        let CliError::Server { reason, message } = e else {
            return e;
        };
        let (r, ns, name) = target;
        let gv = format!("{}/{}", r.group, r.version);
        CliError::Server {
            reason,
            message: format!(
                "error when applying patch:\n{}\nto:\nResource: \"{gv}, Resource={}\", GroupVersionKind: \"{gv}, Kind={}\"\nName: {name:?}, Namespace: {:?}\nfor: {source:?}: {message}",
                sorted(patch),
                r.plural,
                r.kind,
                ns.as_deref().unwrap_or(""),
            ),
        }
    }

    /// Patch a live object towards `modified` (nothing when the patch is
    /// empty); returns what happened and the object to print.
    async fn apply_patch(
        ctx: &Ctx,
        target: &super::super::Target,
        modified: &Value,
        live: Value,
        dry: DryRun,
        source: &str,
    ) -> Result<(Outcome, Value)> {
        Ok(match patch_for(modified, &live) {
            None => (Outcome::Unchanged, live),
            Some(_) if dry == DryRun::Client => (Outcome::Configured, live),
            Some((body, ct)) => {
                let obj = patch_raw(ctx, target, None, ct, &body, dry)
                    .await
                    .map_err(|e| {
                        patch_failed(when(e, "patching", source), target, &body, source)
                    })?;
                (Outcome::Configured, obj)
            }
        })
    }

    pub async fn run(ctx: &Ctx, a: &ApplyArgs, dry: DryRun) -> Result<()> {
        let output = a
            .output
            .as_deref()
            .map(Output::parse)
            .transpose()
            .map_err(CliError::Client)?;
        let mut last_err: Option<CliError> = None;
        for m in manifest::load(&a.filename, a.recursive)? {
            let result = async {
                let (r, ns) = locate(ctx, &m.object, &m.source).await?;
                let name = m.object["metadata"]["name"].as_str().unwrap_or("").to_string();
                if name.is_empty() {
                    return Err(CliError::client(format!("error when retrieving current configuration of:\nResource: {:?}, Name: \"\"\nfrom server for: {:?}: resource name may not be empty", r.plural_group(), m.source)));
                }
                let modified = with_last_applied(&m.object, ns.as_deref());
                let target = (r.clone(), ns.clone(), name.clone());
                let dry_q = if dry == DryRun::Server { "dryRun=All&" } else { "" };
                let manager = format!("{dry_q}fieldManager={}", a.field_manager);
                let (outcome, obj) = match super::super::get_one(ctx, &target).await {
                    Err(e) if e.is_not_found() => {
                        let obj = if dry == DryRun::Client {
                            modified.clone()
                        } else {
                            let url = format!("{}?{manager}", ctx.url(&r, ns.as_deref()));
                            let req = http::Request::post(url)
                                .header(http::header::CONTENT_TYPE, "application/json")
                                .body(serde_json::to_vec(&modified)?)
                                .map_err(CliError::client)?;
                            ctx.send(req).await.map_err(|e| when(e, "creating", &m.source))?
                        };
                        (Outcome::Created, obj)
                    }
                    Err(e) => return Err(e),
                    Ok(live) if live["metadata"]["annotations"][LAST_APPLIED].is_null() => {
                        eprintln!("{}", missing_annotation_warning(&r.plural_group(), &name));
                        apply_patch(ctx, &target, &modified, live, dry, &m.source).await?
                    }
                    Ok(live) => apply_patch(ctx, &target, &modified, live, dry, &m.source).await?,
                };
                let text = match &output {
                    Some(o) => super::super::get::print_objects(o, std::slice::from_ref(&obj), true, false, &mut TabWriter::default()),
                    None => format!("{}/{name} {}{}\n", r.kind_group(), outcome.word(), dry.suffix()),
                };
                std::io::stdout().write_all(text.as_bytes())?;
                Ok(())
            }
            .await;
            if let Err(e) = result {
                if let Some(prev) = last_err.replace(e) {
                    eprintln!("{prev}");
                }
            }
        }
        last_err.map_or(Ok(()), Err)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde_json::json;

        fn obj(v: Value) -> Map<String, Value> {
            v.as_object().unwrap().clone()
        }

        #[test]
        fn the_annotation_is_the_sorted_object() {
            let o = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}, "data": {"b": "2", "a": "1"}});
            let m = with_last_applied(&o, Some("default"));
            assert_eq!(
                m["metadata"]["annotations"][LAST_APPLIED],
                "{\"apiVersion\":\"v1\",\"data\":{\"a\":\"1\",\"b\":\"2\"},\"kind\":\"ConfigMap\",\"metadata\":{\"annotations\":{},\"name\":\"c\",\"namespace\":\"default\"}}\n"
            );
            assert_eq!(m["metadata"]["namespace"], "default");
            // Re-applying the result records the same text.
            assert_eq!(with_last_applied(&m, Some("default")), m);
            // Cluster-scoped objects get no namespace.
            let n = with_last_applied(&json!({"metadata": {"name": "n"}}), None);
            assert!(n["metadata"].get("namespace").is_none());
        }

        /// What, kind definition, last applied, file, live, wanted patch.
        type Case = (
            &'static str,
            Option<&'static str>,
            Value,
            Value,
            Value,
            Value,
        );

        #[test]
        fn three_way_patches() {
            let pod = root_definition("v1", "Pod");
            assert_eq!(pod, Some("io.k8s.api.core.v1.Pod"));
            let deploy = root_definition("apps/v1", "Deployment");
            let cases: Vec<Case> = vec![
                (
                    "nothing changed; server-set fields stay",
                    None,
                    json!({"data": {"a": "1"}}),
                    json!({"data": {"a": "1"}}),
                    json!({"data": {"a": "1"}, "metadata": {"uid": "u"}}),
                    json!({}),
                ),
                (
                    "a changed value and a dropped key",
                    None,
                    json!({"data": {"a": "1", "b": "2"}}),
                    json!({"data": {"a": "9"}}),
                    json!({"data": {"a": "1", "b": "2", "c": "3"}}),
                    json!({"data": {"a": "9", "b": null}}),
                ),
                (
                    "unknown kinds replace lists",
                    None,
                    json!({"spec": {"l": [1, 2]}}),
                    json!({"spec": {"l": [1, 3]}}),
                    json!({"spec": {"l": [1, 2]}}),
                    json!({"spec": {"l": [1, 3]}}),
                ),
                (
                    "containers merge by name; a removed one is deleted",
                    pod,
                    json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y"}]}}),
                    json!({"spec": {"containers": [{"name": "a", "image": "x:2"}]}}),
                    json!({"spec": {"containers": [{"name": "a", "image": "x:1", "imagePullPolicy": "IfNotPresent"}, {"name": "b", "image": "y"}]}}),
                    json!({"spec": {
                        "containers": [{"name": "a", "image": "x:2"}, {"$patch": "delete", "name": "b"}],
                        "$setElementOrder/containers": [{"name": "a"}],
                    }}),
                ),
                (
                    "finalizers are a set",
                    pod,
                    json!({"metadata": {"finalizers": ["a", "b"]}}),
                    json!({"metadata": {"finalizers": ["a", "c"]}}),
                    json!({"metadata": {"finalizers": ["a", "b"]}}),
                    json!({"metadata": {
                        "finalizers": ["c"],
                        "$deleteFromPrimitiveList/finalizers": ["b"],
                        "$setElementOrder/finalizers": ["a", "c"],
                    }}),
                ),
                (
                    "a deployment's strategy keeps only the keys given",
                    deploy,
                    json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
                    json!({"spec": {"strategy": {"type": "Recreate"}}}),
                    json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}}),
                    json!({"spec": {"strategy": {"type": "Recreate", "$retainKeys": ["type"]}}}),
                ),
            ];
            for (what, def, original, modified, current, want) in cases {
                let got = three_way(
                    Some(&obj(original)),
                    &obj(modified),
                    Some(&obj(current)),
                    def,
                );
                assert_eq!(Value::Object(got), want, "{what}");
            }
        }

        #[test]
        fn patches_pick_their_type() {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "2"}});
            let modified = with_last_applied(&cm, None);
            let mut live = with_last_applied(
                &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}),
                None,
            );
            let (body, ct) = patch_for(&modified, &live).unwrap();
            assert_eq!(ct, "application/strategic-merge-patch+json");
            assert_eq!(body["data"], json!({"a": "2"}));
            live["data"]["a"] = json!("2");
            live["metadata"]["annotations"][LAST_APPLIED] =
                modified["metadata"]["annotations"][LAST_APPLIED].clone();
            assert_eq!(patch_for(&modified, &live), None);
            let custom = with_last_applied(
                &json!({"apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"n": 1}}),
                None,
            );
            let (_, ct) = patch_for(&custom, &json!({"metadata": {"name": "t"}})).unwrap();
            assert_eq!(ct, "application/merge-patch+json");
            let r = crate::discovery::Resource {
                group: String::new(),
                version: "v1".into(),
                kind: "ConfigMap".into(),
                plural: "configmaps".into(),
                singular: "configmap".into(),
                short_names: vec![],
                namespaced: true,
                verbs: vec![],
                categories: vec![],
            };
            let conflict = CliError::Server {
                reason: "Conflict".into(),
                message: "error when patching \"c.yaml\": boom".into(),
            };
            let target = (r, Some("default".to_string()), "c".to_string());
            assert_eq!(
                patch_failed(conflict, &target, &json!({"metadata": {"resourceVersion": "9"}}), "c.yaml").to_string(),
                "Error from server (Conflict): error when applying patch:\n{\"metadata\":{\"resourceVersion\":\"9\"}}\nto:\nResource: \"/v1, Resource=configmaps\", GroupVersionKind: \"/v1, Kind=ConfigMap\"\nName: \"c\", Namespace: \"default\"\nfor: \"c.yaml\": error when patching \"c.yaml\": boom"
            );
            assert!(missing_annotation_warning("deployments.apps", "web").starts_with(
                "Warning: resource deployments.apps/web is missing the kubectl.kubernetes.io/last-applied-configuration annotation which is required by tug apply."
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ApplyArgs,
    }

    #[test]
    fn flags_translate_to_apply_requests() {
        let cases = [
            (vec!["apply", "-f", "x"], "?&fieldManager=tug"),
            (
                vec![
                    "apply",
                    "-f",
                    "x",
                    "--force-conflicts",
                    "--field-manager=me",
                ],
                "?&force=true&fieldManager=me",
            ),
            (
                vec!["apply", "-f", "x", "--dry-run=server"],
                "?&dryRun=All&fieldManager=tug",
            ),
        ];
        for (args, query) in cases {
            let a = T::parse_from(args.clone()).a;
            let pp = patch_params(&a, DryRun::parse(&a.dry_run).unwrap());
            let obj = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
            let req = kube::core::Request::new("/api/v1/namespaces/default/configmaps")
                .patch("c", &pp, &Patch::Apply(&obj))
                .unwrap();
            assert_eq!(req.method(), http::Method::PATCH);
            assert_eq!(
                req.uri().to_string(),
                format!("/api/v1/namespaces/default/configmaps/c{query}"),
                "{args:?}"
            );
            assert_eq!(
                req.headers()["content-type"],
                "application/apply-patch+yaml"
            );
        }
    }
}
