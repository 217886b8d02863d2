//! The OpenAPI documents kubectl reads: `/openapi/v2` and `/openapi/v3`.
//!
//! Everything is derived from three tables: [`crate::resources::RESOURCES`]
//! gives the paths and operations, [`crate::schema::definitions`] the schemas
//! (generated from `k8s-openapi`), and [`crate::patch_meta::entries`] the
//! `x-kubernetes-patch-*` / `x-kubernetes-list-*` extensions `k8s-openapi`
//! does not carry. On top of those, the shapes upstream publishes and kubectl
//! relies on are restored:
//!
//! - every kind and its list carry `x-kubernetes-group-version-kind`;
//!   `DeleteOptions` and `WatchEvent` list every served group-version;
//! - every operation carries an upstream-style `operationId`,
//!   `x-kubernetes-action` and `x-kubernetes-group-version-kind`, and every
//!   write lists `dryRun`, `fieldManager` and `fieldValidation`. kubectl's
//!   `--validate=strict` looks for `fieldValidation` on the PATCH operations
//!   of a kind in the v3 document to decide whether the server validates;
//!   without it kubectl falls back to client-side validation from v2;
//! - PATCH accepts the four patch media types (kubectl's three-way apply uses
//!   OpenAPI v3 only when `application/strategic-merge-patch+json` is listed);
//! - Swagger 2 cannot say "integer or string": upstream publishes
//!   `IntOrString` as `{type: string, format: int-or-string}` and `Quantity`
//!   as `{type: string}`, and kubectl's v2 validator depends on exactly that.
//!   OpenAPI 3 uses `oneOf`, as upstream does (kubectl explain then shows
//!   `<IntOrString>` and `<Quantity>`);
//! - Swagger 2 wants `{$ref, description}` where JSON schema writes
//!   `{allOf: [{$ref}], description}`; kubectl's v2 model reader treats an
//!   `allOf` as an untyped value, so v2 uses the upstream form. v3 keeps
//!   `allOf`, as recent upstream releases do (kubectl's v3 explain templates
//!   and v3 patch code read it).
//!
//! # What the server must do with these (content negotiation)
//!
//! - `GET /openapi/v2`: client-go (every kubectl 1.27-1.33) sends
//!   `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and
//!   decodes the body with `proto.Unmarshal` into gnostic's
//!   `openapi_v2.Document` whatever the response's content type: a JSON body
//!   fails with `proto: cannot parse invalid wire-format data` (seen with
//!   kubectl 1.27-1.33). So when [`v2_wants_protobuf`] says so for the
//!   `Accept` header (either spelling in [`V2_PROTOBUF_ACCEPT`]), answer
//!   [`v2_protobuf`] with `Content-Type:` [`V2_PROTOBUF_CONTENT_TYPE`];
//!   otherwise (`application/json`, `*/*`, no `Accept`) answer [`v2`] as
//!   `application/json`. Upstream adds `ETag` (a hash of the bytes) and
//!   `Vary: Accept`. This matters: kubectl 1.27 and 1.28 fetch v2 before
//!   every `apply`, `create` and `explain` and abort when it does not decode
//!   (a `404` or `406` aborts too); 1.29+ read it for
//!   `explain --output=plaintext-openapiv2` and for client-side validation
//!   when the v3 document lacks `fieldValidation`.
//! - `GET /openapi/v3`: [`v3_index`] as `application/json` (client-go
//!   decodes it as JSON, any `Accept`).
//! - `GET /openapi/v3/{api/v1|apis/G/V}`: kubectl asks `Accept:
//!   application/json` and decodes JSON; answer [`v3_group_version`] as
//!   `application/json`, 404 when it returns `None`. Upstream also sets
//!   `ETag: "<v3_hash>"`; when the request's `?hash=` equals the current hash
//!   it adds `Cache-Control: public, immutable` (max-age one year), and when
//!   the hash is stale it answers `301` to the current `serverRelativeURL`.
//!   A request that accepts only the protobuf v3 types
//!   ([`V3_PROTOBUF_ACCEPT`]) should get `406`, since only JSON is offered
//!   (kubectl never asks for them).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::patch_meta;
use crate::resources::{ResourceInfo, RESOURCES};
use crate::schema::{self, Dialect};

/// The `info.version` of the documents: the Kubernetes release served.
pub const INFO_VERSION: &str = "v1.33.0";

/// The `Accept` values that ask `/openapi/v2` for gnostic protobuf: client-go
/// sends the first (deprecated) spelling, upstream accepts both.
pub const V2_PROTOBUF_ACCEPT: &[&str] = &[
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
];

/// The `Content-Type` of a protobuf `/openapi/v2` answer (upstream's).
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The protobuf media types of v3 documents (not offered; kubectl asks JSON).
pub const V3_PROTOBUF_ACCEPT: &[&str] = &[
    "application/com.github.proto-openapi.spec.v3@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v3.v1.0+protobuf",
];

/// The media types PATCH accepts.
pub const PATCH_CONTENT_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// What responses are offered in (documentation only; kubectl ignores it).
const PRODUCES: &[&str] = &["application/json", "application/yaml"];
/// What list responses are offered in (lists double as watches).
const PRODUCES_WATCH: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/json;stream=watch",
];

const PATCH_DEFINITION: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const STATUS_DEFINITION: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS_DEFINITION: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const INT_OR_STRING_DEFINITION: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY_DEFINITION: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// The Swagger 2.0 document (`/openapi/v2`, JSON form).
pub fn v2() -> Value {
    v2_cached().clone()
}

/// The Swagger 2.0 document encoded as gnostic's `openapi.v2.Document`
/// protobuf: what client-go asks for (see [`v2_wants_protobuf`]).
pub fn v2_protobuf() -> Vec<u8> {
    static PB: OnceLock<Vec<u8>> = OnceLock::new();
    PB.get_or_init(|| {
        gnostic::encode_document(v2_cached())
            .unwrap_or_else(|e| panic!("v2 document does not fit gnostic's model: {e}"))
    })
    .clone()
}

/// Whether an `/openapi/v2` request with this `Accept` header should get
/// [`v2_protobuf`] rather than JSON: the first clause naming JSON, a
/// protobuf type of [`V2_PROTOBUF_ACCEPT`] or a wildcard decides, as in
/// upstream's negotiation (clauses with `q=0` are skipped).
pub fn v2_wants_protobuf(accept: &str) -> bool {
    for clause in accept.split(',') {
        let mut parts = clause.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        if refused {
            continue;
        }
        if V2_PROTOBUF_ACCEPT.contains(&media.as_str()) {
            return true;
        }
        if matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
            return false;
        }
    }
    false
}

/// The OpenAPI v3 discovery index (`/openapi/v3`): one entry per served
/// group-version, keyed as upstream does (`api/v1`, `apis/apps/v1`).
pub fn v3_index() -> Value {
    let paths: Map<String, Value> = v3_cached()
        .iter()
        .map(|(path, (_, hash))| {
            let url = format!("/openapi/v3/{path}?hash={hash}");
            (path.clone(), json!({ "serverRelativeURL": url }))
        })
        .collect();
    json!({ "paths": paths })
}

/// The OpenAPI 3.0 document of one group-version: `path` is `api/v1` or
/// `apis/{group}/{version}` (a leading `/` is tolerated). `None` when that
/// group-version is not served.
pub fn v3_group_version(path: &str) -> Option<Value> {
    let path = path.trim_start_matches('/');
    v3_cached().get(path).map(|(doc, _)| doc.clone())
}

/// A stable hash of the v3 document of `path` (for `?hash=` and `ETag`);
/// empty when that group-version is not served.
pub fn v3_hash(path: &str) -> String {
    let path = path.trim_start_matches('/');
    v3_cached()
        .get(path)
        .map(|(_, hash)| hash.clone())
        .unwrap_or_default()
}

fn v2_cached() -> &'static Value {
    static V2: OnceLock<Value> = OnceLock::new();
    V2.get_or_init(build_v2)
}

/// Every served group-version's v3 document and hash, keyed by index path.
fn v3_cached() -> &'static BTreeMap<String, (Value, String)> {
    static V3: OnceLock<BTreeMap<String, (Value, String)>> = OnceLock::new();
    V3.get_or_init(|| {
        group_versions()
            .into_iter()
            .map(|(group, version)| {
                let doc = build_v3(group, version);
                let hash = hash_document(&doc);
                (gv_path(group, version), (doc, hash))
            })
            .collect()
    })
}

/// The served group-versions, in table order.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.stored) {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// `api/v1` or `apis/{group}/{version}`: the index key of a group-version.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// 128 bits of SipHash over the serialized document, as upper-case hex.
fn hash_document(doc: &Value) -> String {
    let bytes = serde_json::to_vec(doc).unwrap_or_default();
    let mut out = String::new();
    for seed in [0u8, 1u8] {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut hasher);
        bytes.hash(&mut hasher);
        out.push_str(&format!("{:016X}", hasher.finish()));
    }
    out
}

// ---------------------------------------------------------------------------
// Operations: one model, rendered in both dialects.

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Path,
    Query,
}

#[derive(Debug, Clone)]
struct Param {
    name: &'static str,
    location: Location,
    /// `string`, `boolean` or `integer`.
    ty: &'static str,
    description: String,
}

impl Param {
    fn path(name: &'static str, description: String) -> Param {
        Param {
            name,
            location: Location::Path,
            ty: "string",
            description,
        }
    }

    /// A query parameter from the catalogue of the standard ones.
    fn query(name: &'static str) -> Param {
        let (ty, description) = match name {
            "allowWatchBookmarks" => ("boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers may ignore it and send bookmarks at their discretion. Ignored unless watching."),
            "continue" => ("string", "The continue option should be set when retrieving more results from the server: the continue token of the previous list response. Not supported with watch."),
            "dryRun" => ("string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
            "fieldManager" => ("string", "fieldManager is a name associated with the actor or entity that is making these changes. Required for apply requests (application/apply-patch), optional otherwise."),
            "fieldSelector" => ("string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
            "fieldValidation" => ("string", "fieldValidation determines how the server should respond to unknown/duplicate fields in the object in the request. Valid values are: - Ignore: ignores unknown/duplicate fields. - Warn: responds with a warning for each unknown/duplicate field, but successfully serves the request. - Strict: fails the request on unknown/duplicate fields."),
            "force" => ("boolean", "Force is going to \"force\" Apply requests: the user re-acquires conflicting fields owned by other managers. Must be unset for non-apply patch requests."),
            "gracePeriodSeconds" => ("integer", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately."),
            "ignoreStoreReadErrorWithClusterBreakingPotential" => ("boolean", "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error."),
            "labelSelector" => ("string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
            "limit" => ("integer", "limit is a maximum number of responses to return for a list call. If more items exist, the server sets the `continue` field on the list metadata. Not supported with watch."),
            "orphanDependents" => ("boolean", "Deprecated: please use the PropagationPolicy. Should the dependent objects be orphaned."),
            "pretty" => ("string", "If 'true', then the output is pretty printed."),
            "propagationPolicy" => ("string", "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'."),
            "resourceVersion" => ("string", "resourceVersion sets a constraint on what resource versions a request may be served from. Defaults to unset."),
            "resourceVersionMatch" => ("string", "resourceVersionMatch determines how resourceVersion is applied to list calls. Defaults to unset."),
            "sendInitialEvents" => ("boolean", "`sendInitialEvents=true` may be set together with `watch=true` to begin the watch stream with synthetic events for the current state of all objects."),
            "timeoutSeconds" => ("integer", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity."),
            "watch" => ("boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion."),
            other => panic!("no catalogue entry for query parameter {other}"),
        };
        Param {
            name,
            location: Location::Query,
            ty,
            description: description.to_string(),
        }
    }
}

fn queries(names: &[&'static str]) -> Vec<Param> {
    names.iter().map(|n| Param::query(n)).collect()
}

const LIST_PARAMS: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const WRITE_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_PARAMS: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_PARAMS: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "propagationPolicy",
];
const DELETE_COLLECTION_PARAMS: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];

#[derive(Debug, Clone)]
enum Body {
    /// A whole object of the named definition.
    Object { definition: String, required: bool },
    /// A patch document, in any of [`PATCH_CONTENT_TYPES`].
    Patch,
}

#[derive(Debug, Clone)]
struct Operation {
    /// Lower-case HTTP method: `get`, `put`, `post`, `delete`, `patch`.
    method: &'static str,
    id: String,
    description: String,
    /// `x-kubernetes-action`.
    action: &'static str,
    /// `x-kubernetes-group-version-kind`: (group, version, kind).
    gvk: (&'static str, &'static str, String),
    params: Vec<Param>,
    body: Option<Body>,
    /// (status code, description, definition of the response body).
    responses: Vec<(&'static str, &'static str, String)>,
    /// Whether the response may also be a watch stream (list operations).
    watch: bool,
    tag: String,
}

#[derive(Debug, Clone)]
struct PathItem {
    path: String,
    params: Vec<Param>,
    operations: Vec<Operation>,
}

/// `coordination.k8s.io` -> `["coordination"]`; `rbac.authorization.k8s.io`
/// -> `["rbac", "authorization"]`; the core group is `core`.
fn group_words(group: &str) -> Vec<&str> {
    if group.is_empty() {
        return vec!["core"];
    }
    group.trim_end_matches(".k8s.io").split('.').collect()
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The group-version part of upstream operation ids: `CoreV1`, `AppsV1`,
/// `CoordinationV1`, `RbacAuthorizationV1`.
fn operation_gv(group: &str, version: &str) -> String {
    let words: String = group_words(group).into_iter().map(capitalize).collect();
    format!("{words}{}", capitalize(version))
}

/// The upstream tag of a group-version: `core_v1`, `apps_v1`,
/// `rbacAuthorization_v1`.
fn tag(group: &str, version: &str) -> String {
    let words = group_words(group);
    let mut out = words[0].to_string();
    for w in &words[1..] {
        out.push_str(&capitalize(w));
    }
    format!("{out}_{version}")
}

/// The path items of one group-version.
fn path_items(group: &str, version: &str) -> Vec<PathItem> {
    let mut out = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.stored && r.group == group && r.version == version)
    {
        resource_path_items(r, &mut out);
    }
    out
}

fn definition(group: &str, version: &str, kind: &str) -> String {
    schema::definition_name(group, version, kind)
        .unwrap_or_else(|| panic!("no schema definition for {group}/{version} {kind}"))
}

fn resource_path_items(r: &ResourceInfo, out: &mut Vec<PathItem>) {
    let kind = r.kind;
    let object = definition(r.group, r.version, kind);
    let list = definition(r.group, r.version, &r.list_kind());
    let gv = operation_gv(r.group, r.version);
    let tag = tag(r.group, r.version);
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let (collection, scope) = if r.namespaced {
        (
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
            "Namespaced",
        )
    } else {
        (format!("{prefix}/{}", r.plural), "")
    };
    let namespace_param = || {
        Param::path(
            "namespace",
            "object name and auth scope, such as for teams and projects".to_string(),
        )
    };
    let scope_params = |name_of: Option<&str>| {
        let mut params = Vec::new();
        if let Some(of) = name_of {
            params.push(Param::path("name", format!("name of the {of}")));
        }
        if r.namespaced {
            params.push(namespace_param());
        }
        params.push(Param::query("pretty"));
        params
    };
    let op = |method: &'static str,
              id: String,
              description: String,
              action: &'static str,
              gvk: (&'static str, &'static str, &str),
              params: &[&'static str],
              body: Option<Body>,
              responses: Vec<(&'static str, &'static str, String)>| Operation {
        method,
        id,
        description,
        action,
        gvk: (gvk.0, gvk.1, gvk.2.to_string()),
        params: queries(params),
        body,
        responses,
        watch: action == "list",
        tag: tag.clone(),
    };
    let own = (r.group, r.version, kind);
    let object_body = |definition: &str| {
        Some(Body::Object {
            definition: definition.to_string(),
            required: true,
        })
    };
    let delete_body = Some(Body::Object {
        definition: DELETE_OPTIONS_DEFINITION.to_string(),
        required: false,
    });
    let ok = |d: &str| ("200", "OK", d.to_string());
    let created = |d: &str| ("201", "Created", d.to_string());
    let accepted = |d: &str| ("202", "Accepted", d.to_string());
    let article = if kind.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    };

    // The collection: list, create, deletecollection.
    out.push(PathItem {
        path: collection.clone(),
        params: scope_params(None),
        operations: vec![
            op(
                "get",
                format!("list{gv}{scope}{kind}"),
                format!("list or watch objects of kind {kind}"),
                "list",
                own,
                LIST_PARAMS,
                None,
                vec![ok(&list)],
            ),
            op(
                "post",
                format!("create{gv}{scope}{kind}"),
                format!("create {article} {kind}"),
                "post",
                own,
                WRITE_PARAMS,
                object_body(&object),
                vec![ok(&object), created(&object), accepted(&object)],
            ),
            op(
                "delete",
                format!("delete{gv}Collection{scope}{kind}"),
                format!("delete collection of {kind}"),
                "deletecollection",
                own,
                DELETE_COLLECTION_PARAMS,
                delete_body.clone(),
                vec![ok(STATUS_DEFINITION)],
            ),
        ],
    });

    // Every namespace at once (list only).
    if r.namespaced {
        out.push(PathItem {
            path: format!("{prefix}/{}", r.plural),
            params: vec![Param::query("pretty")],
            operations: vec![op(
                "get",
                format!("list{gv}{kind}ForAllNamespaces"),
                format!("list or watch objects of kind {kind}"),
                "list",
                own,
                LIST_PARAMS,
                None,
                vec![ok(&list)],
            )],
        });
    }

    // One object: read, replace, patch, delete.
    let item = format!("{collection}/{{name}}");
    out.push(PathItem {
        path: item.clone(),
        params: scope_params(Some(kind)),
        operations: vec![
            op(
                "get",
                format!("read{gv}{scope}{kind}"),
                format!("read the specified {kind}"),
                "get",
                own,
                &[],
                None,
                vec![ok(&object)],
            ),
            op(
                "put",
                format!("replace{gv}{scope}{kind}"),
                format!("replace the specified {kind}"),
                "put",
                own,
                WRITE_PARAMS,
                object_body(&object),
                vec![ok(&object), created(&object)],
            ),
            op(
                "patch",
                format!("patch{gv}{scope}{kind}"),
                format!("partially update the specified {kind}"),
                "patch",
                own,
                PATCH_PARAMS,
                Some(Body::Patch),
                vec![ok(&object), created(&object)],
            ),
            op(
                "delete",
                format!("delete{gv}{scope}{kind}"),
                format!("delete {article} {kind}"),
                "delete",
                own,
                DELETE_PARAMS,
                delete_body,
                vec![ok(STATUS_DEFINITION), accepted(STATUS_DEFINITION)],
            ),
        ],
    });

    // `/status` and `/scale`: read, replace, patch of a view.
    let mut views: Vec<(&str, &str, (&'static str, &'static str, &str))> = Vec::new();
    if r.subresources.approval {
        views.push(("approval", "Approval", own));
    }
    if r.subresources.status {
        views.push(("status", "Status", own));
    }
    if r.subresources.scale {
        views.push(("scale", "Scale", ("autoscaling", "v1", "Scale")));
    }
    for (segment, suffix, gvk) in views {
        let body = definition(gvk.0, gvk.1, gvk.2);
        let name_of = if segment == "scale" { "Scale" } else { kind };
        out.push(PathItem {
            path: format!("{item}/{segment}"),
            params: scope_params(Some(name_of)),
            operations: vec![
                op(
                    "get",
                    format!("read{gv}{scope}{kind}{suffix}"),
                    format!("read {segment} of the specified {kind}"),
                    "get",
                    gvk,
                    &[],
                    None,
                    vec![ok(&body)],
                ),
                op(
                    "put",
                    format!("replace{gv}{scope}{kind}{suffix}"),
                    format!("replace {segment} of the specified {kind}"),
                    "put",
                    gvk,
                    WRITE_PARAMS,
                    object_body(&body),
                    vec![ok(&body), created(&body)],
                ),
                op(
                    "patch",
                    format!("patch{gv}{scope}{kind}{suffix}"),
                    format!("partially update {segment} of the specified {kind}"),
                    "patch",
                    gvk,
                    PATCH_PARAMS,
                    Some(Body::Patch),
                    vec![ok(&body), created(&body)],
                ),
            ],
        });
    }

    // `pods/binding` and `pods/eviction`: create-only subresources.
    let mut creates: Vec<(&str, &str, (&'static str, &'static str, &str))> = Vec::new();
    if r.subresources.binding {
        creates.push(("binding", "Binding", ("", "v1", "Binding")));
    }
    if r.subresources.eviction {
        creates.push(("eviction", "Eviction", ("policy", "v1", "Eviction")));
    }
    for (segment, suffix, gvk) in creates {
        let body = definition(gvk.0, gvk.1, gvk.2);
        out.push(PathItem {
            path: format!("{item}/{segment}"),
            params: scope_params(Some(suffix)),
            operations: vec![op(
                "post",
                format!("create{gv}{scope}{kind}{suffix}"),
                format!("create {segment} of {article} {kind}"),
                "post",
                gvk,
                WRITE_PARAMS,
                object_body(&body),
                vec![ok(&body), created(&body), accepted(&body)],
            )],
        });
    }
}

// ---------------------------------------------------------------------------
// Rendering.

fn gvk_object(gvk: &(&str, &str, String)) -> Value {
    json!({ "group": gvk.0, "kind": gvk.2, "version": gvk.1 })
}

fn reference(dialect: Dialect, definition: &str) -> Value {
    json!({ "$ref": format!("{}{definition}", dialect.ref_prefix()) })
}

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(*s)).collect())
}

fn v2_param(p: &Param) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), p.description.clone().into());
    match p.location {
        Location::Path => {
            out.insert("in".into(), "path".into());
            out.insert("name".into(), p.name.into());
            out.insert("required".into(), true.into());
        }
        Location::Query => {
            out.insert("in".into(), "query".into());
            out.insert("name".into(), p.name.into());
        }
    }
    out.insert("type".into(), p.ty.into());
    out.insert("uniqueItems".into(), true.into());
    Value::Object(out)
}

fn v2_operation(op: &Operation) -> Value {
    let d = Dialect::Swagger2;
    let mut params = Vec::new();
    match &op.body {
        Some(Body::Object {
            definition,
            required,
        }) => params.push(json!({
            "in": "body",
            "name": "body",
            "required": required,
            "schema": reference(d, definition),
        })),
        Some(Body::Patch) => params.push(json!({
            "in": "body",
            "name": "body",
            "required": true,
            "schema": reference(d, PATCH_DEFINITION),
        })),
        None => {}
    }
    params.extend(op.params.iter().map(v2_param));
    let mut responses = Map::new();
    for (code, description, definition) in &op.responses {
        responses.insert(
            code.to_string(),
            json!({ "description": description, "schema": reference(d, definition) }),
        );
    }
    responses.insert("401".into(), json!({ "description": "Unauthorized" }));

    let mut out = Map::new();
    match &op.body {
        Some(Body::Patch) => {
            out.insert("consumes".into(), strings(PATCH_CONTENT_TYPES));
        }
        Some(Body::Object { .. }) => {
            out.insert("consumes".into(), strings(&["*/*"]));
        }
        None => {}
    }
    out.insert("description".into(), op.description.clone().into());
    out.insert("operationId".into(), op.id.clone().into());
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    let produces = if op.watch { PRODUCES_WATCH } else { PRODUCES };
    out.insert("produces".into(), strings(produces));
    out.insert("responses".into(), Value::Object(responses));
    out.insert("schemes".into(), strings(&["https"]));
    out.insert("tags".into(), json!([op.tag]));
    out.insert("x-kubernetes-action".into(), op.action.into());
    out.insert(
        "x-kubernetes-group-version-kind".into(),
        gvk_object(&op.gvk),
    );
    Value::Object(out)
}

fn v3_param(p: &Param) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), p.description.clone().into());
    match p.location {
        Location::Path => {
            out.insert("in".into(), "path".into());
            out.insert("name".into(), p.name.into());
            out.insert("required".into(), true.into());
        }
        Location::Query => {
            out.insert("in".into(), "query".into());
            out.insert("name".into(), p.name.into());
        }
    }
    out.insert(
        "schema".into(),
        json!({ "type": p.ty, "uniqueItems": true }),
    );
    Value::Object(out)
}

fn v3_content(types: &[&str], definition: &str) -> Value {
    let schema = reference(Dialect::OpenApi3, definition);
    Value::Object(
        types
            .iter()
            .map(|t| (t.to_string(), json!({ "schema": schema.clone() })))
            .collect(),
    )
}

fn v3_operation(op: &Operation) -> Value {
    let mut out = Map::new();
    out.insert("description".into(), op.description.clone().into());
    out.insert("operationId".into(), op.id.clone().into());
    if !op.params.is_empty() {
        out.insert(
            "parameters".into(),
            Value::Array(op.params.iter().map(v3_param).collect()),
        );
    }
    match &op.body {
        Some(Body::Object {
            definition,
            required,
        }) => {
            out.insert(
                "requestBody".into(),
                json!({ "content": v3_content(&["*/*"], definition), "required": required }),
            );
        }
        Some(Body::Patch) => {
            out.insert(
                "requestBody".into(),
                json!({
                    "content": v3_content(PATCH_CONTENT_TYPES, PATCH_DEFINITION),
                    "required": true,
                }),
            );
        }
        None => {}
    }
    let produces = if op.watch { PRODUCES_WATCH } else { PRODUCES };
    let mut responses = Map::new();
    for (code, description, definition) in &op.responses {
        responses.insert(
            code.to_string(),
            json!({ "content": v3_content(produces, definition), "description": description }),
        );
    }
    out.insert("responses".into(), Value::Object(responses));
    out.insert("tags".into(), json!([op.tag]));
    out.insert("x-kubernetes-action".into(), op.action.into());
    out.insert(
        "x-kubernetes-group-version-kind".into(),
        gvk_object(&op.gvk),
    );
    Value::Object(out)
}

/// Render path items, sorted by path as upstream does.
fn render_paths(
    items: Vec<PathItem>,
    param: fn(&Param) -> Value,
    operation: fn(&Operation) -> Value,
) -> Map<String, Value> {
    let mut sorted: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for item in items {
        let entry = sorted.entry(item.path).or_default();
        for op in &item.operations {
            entry.insert(op.method.to_string(), operation(op));
        }
        entry.insert(
            "parameters".into(),
            Value::Array(item.params.iter().map(param).collect()),
        );
    }
    sorted
        .into_iter()
        .map(|(path, mut ops)| {
            ops.sort_keys();
            (path, Value::Object(ops))
        })
        .collect()
}

fn build_v2() -> Value {
    let items: Vec<PathItem> = group_versions()
        .into_iter()
        .flat_map(|(g, v)| path_items(g, v))
        .collect();
    json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": INFO_VERSION },
        "paths": render_paths(items, v2_param, v2_operation),
        "definitions": definitions(Dialect::Swagger2),
    })
}

fn build_v3(group: &str, version: &str) -> Value {
    let paths = render_paths(path_items(group, version), v3_param, v3_operation);
    let all = definitions(Dialect::OpenApi3);
    let mut wanted = BTreeSet::new();
    collect_refs(&Value::Object(paths.clone()), &mut wanted);
    let mut reachable = BTreeSet::new();
    while let Some(name) = wanted.pop_first() {
        if !reachable.insert(name.clone()) {
            continue;
        }
        if let Some(def) = all.get(&name) {
            collect_refs(def, &mut wanted);
        }
    }
    let schemas: Map<String, Value> = all
        .iter()
        .filter(|(name, _)| reachable.contains(*name))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": INFO_VERSION },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

/// Every definition name a `$ref` in `value` points at.
fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(name) = v.as_str().and_then(|r| r.rsplit('/').next()) {
                        out.insert(name.to_string());
                    }
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Definitions.

/// The definitions of one dialect, with upstream's extensions and fixups,
/// sorted by name.
fn definitions(dialect: Dialect) -> Map<String, Value> {
    let mut defs = schema::definitions(dialect).clone();
    defs.insert(
        PATCH_DEFINITION.to_string(),
        json!({
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object",
        }),
    );
    add_group_version_kinds(&mut defs);
    add_patch_meta(&mut defs);
    fix_special_types(&mut defs, dialect);
    for def in defs.values_mut() {
        match dialect {
            Dialect::Swagger2 => sanitize_v2(def),
            Dialect::OpenApi3 => sanitize_v3(def),
        }
    }
    defs.sort_keys();
    defs
}

fn add_group_version_kinds(defs: &mut Map<String, Value>) {
    // Kinds shared by every group-version, as upstream lists them.
    let mut shared: Vec<Value> = vec![json!({"group": "", "kind": "", "version": "v1"})];
    let mut gvs: BTreeSet<(&str, &str)> = group_versions().into_iter().collect();
    gvs.insert(("autoscaling", "v1"));
    gvs.remove(&("", "v1"));
    shared.extend(
        gvs.iter()
            .map(|(g, v)| json!({"group": g, "kind": "", "version": v})),
    );

    for k in schema::kinds() {
        let list: Vec<Value> = match (k.group, k.kind) {
            ("meta.k8s.io", "DeleteOptions" | "WatchEvent") => shared
                .iter()
                .map(|gvk| {
                    let mut gvk = gvk.clone();
                    gvk["kind"] = k.kind.into();
                    gvk
                })
                .collect(),
            ("meta.k8s.io", "Status" | "APIGroup" | "APIVersions") => {
                vec![json!({"group": "", "kind": k.kind, "version": "v1"})]
            }
            ("meta.k8s.io", _) => continue,
            (group, kind) => vec![json!({"group": group, "kind": kind, "version": k.version})],
        };
        set_extension(defs, &k.definition, "x-kubernetes-group-version-kind", list);
    }
    for r in RESOURCES.iter().filter(|r| r.stored) {
        if let Some(list) = schema::definition_name(r.group, r.version, &r.list_kind()) {
            let gvk = vec![json!({"group": r.group, "kind": r.list_kind(), "version": r.version})];
            set_extension(defs, &list, "x-kubernetes-group-version-kind", gvk);
        }
    }
}

fn set_extension(defs: &mut Map<String, Value>, definition: &str, key: &str, value: Vec<Value>) {
    if let Some(Value::Object(def)) = defs.get_mut(definition) {
        def.insert(key.to_string(), Value::Array(value));
    }
}

fn add_patch_meta(defs: &mut Map<String, Value>) {
    for (definition, field, meta) in patch_meta::entries() {
        let Some(Value::Object(prop)) = defs
            .get_mut(&definition)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(field))
        else {
            continue;
        };
        if !meta.list_map_keys.is_empty() {
            prop.insert(
                "x-kubernetes-list-map-keys".into(),
                strings(meta.list_map_keys),
            );
        }
        if let Some(t) = meta.list_type {
            prop.insert("x-kubernetes-list-type".into(), t.into());
        }
        if let Some(k) = meta.merge_key {
            prop.insert("x-kubernetes-patch-merge-key".into(), k.into());
        }
        if let Some(s) = meta.strategy {
            prop.insert("x-kubernetes-patch-strategy".into(), s.into());
        }
    }
}

/// `IntOrString` and `Quantity` in upstream's form for each dialect.
fn fix_special_types(defs: &mut Map<String, Value>, dialect: Dialect) {
    let description = |defs: &Map<String, Value>, name: &str| {
        defs.get(name)
            .and_then(|d| d.get("description"))
            .cloned()
            .unwrap_or_else(|| "".into())
    };
    let int_or_string = description(defs, INT_OR_STRING_DEFINITION);
    let quantity = description(defs, QUANTITY_DEFINITION);
    let (int_or_string, quantity) = match dialect {
        Dialect::Swagger2 => (
            json!({"description": int_or_string, "format": "int-or-string", "type": "string"}),
            json!({"description": quantity, "type": "string"}),
        ),
        Dialect::OpenApi3 => (
            json!({
                "description": int_or_string,
                "format": "int-or-string",
                "oneOf": [{"type": "integer"}, {"type": "string"}],
            }),
            json!({
                "description": quantity,
                "oneOf": [{"type": "string"}, {"type": "number"}],
            }),
        ),
    };
    defs.insert(INT_OR_STRING_DEFINITION.to_string(), int_or_string);
    defs.insert(QUANTITY_DEFINITION.to_string(), quantity);
}

/// The schema keywords Swagger 2.0 (and gnostic's model of it) knows.
const V2_SCHEMA_KEYS: &[&str] = &[
    "$ref",
    "format",
    "title",
    "description",
    "default",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "enum",
    "additionalProperties",
    "type",
    "items",
    "allOf",
    "properties",
    "discriminator",
    "readOnly",
    "example",
];

/// The schema keywords OpenAPI 3.0 knows.
const V3_SCHEMA_KEYS: &[&str] = &[
    "$ref",
    "format",
    "title",
    "description",
    "default",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "enum",
    "additionalProperties",
    "type",
    "items",
    "allOf",
    "oneOf",
    "anyOf",
    "not",
    "properties",
    "discriminator",
    "readOnly",
    "writeOnly",
    "nullable",
    "example",
    "deprecated",
];

/// Apply `f` to every direct sub-schema of `map`.
fn for_each_subschema(map: &mut Map<String, Value>, f: fn(&mut Value)) {
    for (key, value) in map.iter_mut() {
        match key.as_str() {
            "properties" => {
                if let Value::Object(props) = value {
                    props.values_mut().for_each(f);
                }
            }
            "items" => match value {
                Value::Array(items) => items.iter_mut().for_each(f),
                other => f(other),
            },
            "additionalProperties" | "not" if value.is_object() => f(value),
            "allOf" | "oneOf" | "anyOf" => {
                if let Value::Array(items) = value {
                    items.iter_mut().for_each(f);
                }
            }
            _ => {}
        }
    }
}

/// Split a JSON-schema `type` array: the first non-null type, and whether
/// `null` was allowed.
fn single_type(map: &mut Map<String, Value>) -> bool {
    let Some(Value::Array(types)) = map.get("type") else {
        return false;
    };
    let nullable = types.iter().any(|t| t == "null");
    let first = types.iter().find(|t| *t != "null").cloned();
    match first {
        Some(t) => map.insert("type".into(), t),
        None => map.remove("type"),
    };
    nullable
}

/// Turn a draft-07 schema into the Swagger 2.0 shape upstream publishes.
fn sanitize_v2(schema: &mut Value) {
    if let Value::Bool(_) = schema {
        // `true` (anything): an untyped schema says the same.
        *schema = json!({});
        return;
    }
    let Value::Object(map) = schema else {
        return;
    };
    // `{allOf: [{$ref}], description}` -> `{$ref, description}`.
    let single_ref = match map.get("allOf") {
        Some(Value::Array(all)) if all.len() == 1 => all[0]
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("$ref"))
            .cloned(),
        _ => None,
    };
    if let Some(r) = single_ref {
        map.remove("allOf");
        map.insert("$ref".into(), r);
    }
    single_type(map);
    if let Some(c) = map.remove("const") {
        map.insert("enum".into(), json!([c]));
    }
    map.retain(|k, _| V2_SCHEMA_KEYS.contains(&k.as_str()) || k.starts_with("x-"));
    if map.contains_key("$ref") {
        // kubectl's v2 reader rejects a reference that also has a type.
        map.remove("type");
    }
    for_each_subschema(map, sanitize_v2);
}

/// Drop what OpenAPI 3.0 does not know from a schemars schema.
fn sanitize_v3(schema: &mut Value) {
    if let Value::Bool(_) = schema {
        *schema = json!({});
        return;
    }
    let Value::Object(map) = schema else {
        return;
    };
    if single_type(map) {
        map.insert("nullable".into(), true.into());
    }
    if let Some(c) = map.remove("const") {
        map.insert("enum".into(), json!([c]));
    }
    map.retain(|k, _| V3_SCHEMA_KEYS.contains(&k.as_str()) || k.starts_with("x-"));
    for_each_subschema(map, sanitize_v3);
}

// ---------------------------------------------------------------------------
// gnostic protobuf.

/// A strict encoder of a Swagger 2.0 JSON document into gnostic's
/// `openapi.v2.Document` protobuf (`github.com/google/gnostic-models`,
/// `openapiv2/OpenAPIv2.proto`), the form client-go downloads. Like gnostic's
/// own compiler, it refuses keys the Swagger 2.0 model has no field for, so a
/// document that encodes is also one gnostic would parse. `Any` values
/// (extensions, defaults, examples, enums) travel as their `yaml` text: the
/// JSON text, which is valid YAML.
mod gnostic {
    use serde_json::{Map, Value};

    type Result<T = ()> = std::result::Result<T, String>;

    #[derive(Default)]
    struct Writer {
        buf: Vec<u8>,
    }

    impl Writer {
        fn varint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.buf.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.buf.push(v as u8);
        }

        fn tag(&mut self, field: u32, wire: u32) {
            self.varint(u64::from((field << 3) | wire));
        }

        fn bytes(&mut self, field: u32, bytes: &[u8]) {
            self.tag(field, 2);
            self.varint(bytes.len() as u64);
            self.buf.extend_from_slice(bytes);
        }

        fn message(&mut self, field: u32, f: impl FnOnce(&mut Writer) -> Result) -> Result {
            let mut inner = Writer::default();
            f(&mut inner)?;
            self.bytes(field, &inner.buf);
            Ok(())
        }

        /// A singular `string` field (proto3 leaves the empty string out).
        fn string(&mut self, field: u32, value: &Value, at: &str) -> Result {
            let s = value
                .as_str()
                .ok_or_else(|| format!("{at}: expected a string"))?;
            if !s.is_empty() {
                self.bytes(field, s.as_bytes());
            }
            Ok(())
        }

        /// A `repeated string` field.
        fn strings(&mut self, field: u32, value: &Value, at: &str) -> Result {
            for item in array(value, at)? {
                let s = item
                    .as_str()
                    .ok_or_else(|| format!("{at}: expected strings"))?;
                self.bytes(field, s.as_bytes());
            }
            Ok(())
        }

        fn bool(&mut self, field: u32, value: &Value, at: &str) -> Result {
            let b = value
                .as_bool()
                .ok_or_else(|| format!("{at}: expected a boolean"))?;
            if b {
                self.tag(field, 0);
                self.varint(1);
            }
            Ok(())
        }

        fn int64(&mut self, field: u32, value: &Value, at: &str) -> Result {
            let n = value
                .as_i64()
                .ok_or_else(|| format!("{at}: expected an integer"))?;
            if n != 0 {
                self.tag(field, 0);
                self.varint(n as u64);
            }
            Ok(())
        }

        fn double(&mut self, field: u32, value: &Value, at: &str) -> Result {
            let n = value
                .as_f64()
                .ok_or_else(|| format!("{at}: expected a number"))?;
            if n != 0.0 {
                self.tag(field, 1);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            Ok(())
        }

        /// An `Any` message: `yaml` (field 2) holds the value's text.
        fn any(&mut self, field: u32, value: &Value) -> Result {
            self.message(field, |w| {
                let text = serde_json::to_string(value).map_err(|e| e.to_string())?;
                w.bytes(2, text.as_bytes());
                Ok(())
            })
        }

        /// A `NamedAny` vendor extension.
        fn extension(&mut self, field: u32, name: &str, value: &Value) -> Result {
            self.message(field, |w| {
                w.bytes(1, name.as_bytes());
                w.any(2, value)
            })
        }
    }

    fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>> {
        value
            .as_object()
            .ok_or_else(|| format!("{at}: expected an object"))
    }

    fn array<'a>(value: &'a Value, at: &str) -> Result<&'a Vec<Value>> {
        value
            .as_array()
            .ok_or_else(|| format!("{at}: expected an array"))
    }

    fn unknown(at: &str, key: &str) -> String {
        format!("{at}: `{key}` has no place in the Swagger 2.0 model")
    }

    pub(super) fn encode_document(doc: &Value) -> Result<Vec<u8>> {
        let mut w = Writer::default();
        for (key, v) in object(doc, "document")? {
            let at = key.as_str();
            match at {
                "swagger" => w.string(1, v, at)?,
                "info" => w.message(2, |w| info(w, v))?,
                "host" => w.string(3, v, at)?,
                "basePath" => w.string(4, v, at)?,
                "schemes" => w.strings(5, v, at)?,
                "consumes" => w.strings(6, v, at)?,
                "produces" => w.strings(7, v, at)?,
                "paths" => w.message(8, |w| paths(w, v))?,
                "definitions" => w.message(9, |w| named_schemas(w, 1, v, "definitions"))?,
                k if k.starts_with("x-") => w.extension(16, k, v)?,
                k => return Err(unknown("document", k)),
            }
        }
        Ok(w.buf)
    }

    fn info(w: &mut Writer, v: &Value) -> Result {
        for (key, v) in object(v, "info")? {
            match key.as_str() {
                "title" => w.string(1, v, "info.title")?,
                "version" => w.string(2, v, "info.version")?,
                "description" => w.string(3, v, "info.description")?,
                "termsOfService" => w.string(4, v, "info.termsOfService")?,
                k if k.starts_with("x-") => w.extension(7, k, v)?,
                k => return Err(unknown("info", k)),
            }
        }
        Ok(())
    }

    fn paths(w: &mut Writer, v: &Value) -> Result {
        for (path, item) in object(v, "paths")? {
            if path.starts_with("x-") {
                w.extension(1, path, item)?;
                continue;
            }
            // NamedPathItem { name = 1; value = 2 }
            w.message(2, |w| {
                w.bytes(1, path.as_bytes());
                w.message(2, |w| path_item(w, item, path))
            })?;
        }
        Ok(())
    }

    fn path_item(w: &mut Writer, v: &Value, at: &str) -> Result {
        for (key, v) in object(v, at)? {
            let field = match key.as_str() {
                "$ref" => {
                    w.string(1, v, at)?;
                    continue;
                }
                "get" => 2,
                "put" => 3,
                "post" => 4,
                "delete" => 5,
                "options" => 6,
                "head" => 7,
                "patch" => 8,
                "parameters" => {
                    for p in array(v, at)? {
                        w.message(9, |w| parameters_item(w, p, at))?;
                    }
                    continue;
                }
                k if k.starts_with("x-") => {
                    w.extension(10, k, v)?;
                    continue;
                }
                k => return Err(unknown(at, k)),
            };
            let at = format!("{at} {key}");
            w.message(field, |w| operation(w, v, &at))?;
        }
        Ok(())
    }

    fn operation(w: &mut Writer, v: &Value, at: &str) -> Result {
        for (key, v) in object(v, at)? {
            match key.as_str() {
                "tags" => w.strings(1, v, at)?,
                "summary" => w.string(2, v, at)?,
                "description" => w.string(3, v, at)?,
                "operationId" => w.string(5, v, at)?,
                "produces" => w.strings(6, v, at)?,
                "consumes" => w.strings(7, v, at)?,
                "parameters" => {
                    for p in array(v, at)? {
                        w.message(8, |w| parameters_item(w, p, at))?;
                    }
                }
                "responses" => w.message(9, |w| responses(w, v, at))?,
                "schemes" => w.strings(10, v, at)?,
                "deprecated" => w.bool(11, v, at)?,
                k if k.starts_with("x-") => w.extension(13, k, v)?,
                k => return Err(unknown(at, k)),
            }
        }
        Ok(())
    }

    /// `ParametersItem { oneof { Parameter parameter = 1; JsonReference json_reference = 2; } }`
    fn parameters_item(w: &mut Writer, v: &Value, at: &str) -> Result {
        let map = object(v, at)?;
        if let Some(r) = map.get("$ref") {
            return w.message(2, |w| w.string(1, r, at));
        }
        let location = map.get("in").and_then(Value::as_str).unwrap_or_default();
        let name = map.get("name").and_then(Value::as_str).unwrap_or_default();
        let at = format!("{at} parameter {name}");
        // Parameter { oneof { BodyParameter = 1; NonBodyParameter = 2; } }
        w.message(1, |w| match location {
            "body" => w.message(1, |w| body_parameter(w, map, &at)),
            // NonBodyParameter { header = 1; formData = 2; query = 3; path = 4 }
            "header" => w.message(2, |w| w.message(1, |w| path_like(w, map, &at))),
            "formData" => w.message(2, |w| w.message(2, |w| query_like(w, map, &at))),
            "query" => w.message(2, |w| w.message(3, |w| query_like(w, map, &at))),
            "path" => w.message(2, |w| w.message(4, |w| path_like(w, map, &at))),
            other => Err(format!("{at}: unknown location `{other}`")),
        })
    }

    fn body_parameter(w: &mut Writer, map: &Map<String, Value>, at: &str) -> Result {
        for (key, v) in map {
            match key.as_str() {
                "description" => w.string(1, v, at)?,
                "name" => w.string(2, v, at)?,
                "in" => w.string(3, v, at)?,
                "required" => w.bool(4, v, at)?,
                "schema" => w.message(5, |w| schema(w, v, at))?,
                k if k.starts_with("x-") => w.extension(6, k, v)?,
                k => return Err(unknown(at, k)),
            }
        }
        Ok(())
    }

    /// The primitive-parameter fields shared by `QueryParameterSubSchema` and
    /// `FormDataParameterSubSchema` (numbered after `allow_empty_value = 5`).
    fn query_like(w: &mut Writer, map: &Map<String, Value>, at: &str) -> Result {
        for (key, v) in map {
            match key.as_str() {
                "required" => w.bool(1, v, at)?,
                "in" => w.string(2, v, at)?,
                "description" => w.string(3, v, at)?,
                "name" => w.string(4, v, at)?,
                "allowEmptyValue" => w.bool(5, v, at)?,
                k => primitive(w, k, v, 6, at)?,
            }
        }
        Ok(())
    }

    /// The fields shared by `PathParameterSubSchema` and
    /// `HeaderParameterSubSchema` (no `allow_empty_value`).
    fn path_like(w: &mut Writer, map: &Map<String, Value>, at: &str) -> Result {
        for (key, v) in map {
            match key.as_str() {
                "required" => w.bool(1, v, at)?,
                "in" => w.string(2, v, at)?,
                "description" => w.string(3, v, at)?,
                "name" => w.string(4, v, at)?,
                k => primitive(w, k, v, 5, at)?,
            }
        }
        Ok(())
    }

    /// The run of primitive fields every non-body parameter shares, starting
    /// at field `base` (`type`) and ending with `vendor_extension`.
    fn primitive(w: &mut Writer, key: &str, v: &Value, base: u32, at: &str) -> Result {
        match key {
            "type" => w.string(base, v, at),
            "format" => w.string(base + 1, v, at),
            "collectionFormat" => w.string(base + 3, v, at),
            "default" => w.any(base + 4, v),
            "maximum" => w.double(base + 5, v, at),
            "exclusiveMaximum" => w.bool(base + 6, v, at),
            "minimum" => w.double(base + 7, v, at),
            "exclusiveMinimum" => w.bool(base + 8, v, at),
            "maxLength" => w.int64(base + 9, v, at),
            "minLength" => w.int64(base + 10, v, at),
            "pattern" => w.string(base + 11, v, at),
            "maxItems" => w.int64(base + 12, v, at),
            "minItems" => w.int64(base + 13, v, at),
            "uniqueItems" => w.bool(base + 14, v, at),
            "enum" => {
                for item in array(v, at)? {
                    w.any(base + 15, item)?;
                }
                Ok(())
            }
            "multipleOf" => w.double(base + 16, v, at),
            k if k.starts_with("x-") => w.extension(base + 17, k, v),
            k => Err(unknown(at, k)),
        }
    }

    fn responses(w: &mut Writer, v: &Value, at: &str) -> Result {
        for (code, v) in object(v, at)? {
            if code.starts_with("x-") {
                w.extension(2, code, v)?;
                continue;
            }
            let at = format!("{at} response {code}");
            // NamedResponseValue { name = 1; ResponseValue value = 2 }
            w.message(1, |w| {
                w.bytes(1, code.as_bytes());
                w.message(2, |w| {
                    let map = object(v, &at)?;
                    if let Some(r) = map.get("$ref") {
                        return w.message(2, |w| w.string(1, r, &at));
                    }
                    w.message(1, |w| response(w, map, &at))
                })
            })?;
        }
        Ok(())
    }

    fn response(w: &mut Writer, map: &Map<String, Value>, at: &str) -> Result {
        for (key, v) in map {
            match key.as_str() {
                "description" => w.string(1, v, at)?,
                // SchemaItem { oneof { Schema schema = 1; FileSchema = 2 } }
                "schema" => w.message(2, |w| w.message(1, |w| schema(w, v, at)))?,
                k if k.starts_with("x-") => w.extension(5, k, v)?,
                k => return Err(unknown(at, k)),
            }
        }
        Ok(())
    }

    /// `NamedSchema` entries (`name = 1`, `value = 2`) in field `field`.
    fn named_schemas(w: &mut Writer, field: u32, v: &Value, at: &str) -> Result {
        for (name, s) in object(v, at)? {
            let at = format!("{at}.{name}");
            w.message(field, |w| {
                w.bytes(1, name.as_bytes());
                w.message(2, |w| schema(w, s, &at))
            })?;
        }
        Ok(())
    }

    fn schema(w: &mut Writer, v: &Value, at: &str) -> Result {
        for (key, v) in object(v, at)? {
            match key.as_str() {
                "$ref" => w.string(1, v, at)?,
                "format" => w.string(2, v, at)?,
                "title" => w.string(3, v, at)?,
                "description" => w.string(4, v, at)?,
                "default" => w.any(5, v)?,
                "multipleOf" => w.double(6, v, at)?,
                "maximum" => w.double(7, v, at)?,
                "exclusiveMaximum" => w.bool(8, v, at)?,
                "minimum" => w.double(9, v, at)?,
                "exclusiveMinimum" => w.bool(10, v, at)?,
                "maxLength" => w.int64(11, v, at)?,
                "minLength" => w.int64(12, v, at)?,
                "pattern" => w.string(13, v, at)?,
                "maxItems" => w.int64(14, v, at)?,
                "minItems" => w.int64(15, v, at)?,
                "uniqueItems" => w.bool(16, v, at)?,
                "maxProperties" => w.int64(17, v, at)?,
                "minProperties" => w.int64(18, v, at)?,
                "required" => w.strings(19, v, at)?,
                "enum" => {
                    for item in array(v, at)? {
                        w.any(20, item)?;
                    }
                }
                // AdditionalPropertiesItem { oneof { Schema = 1; bool = 2 } }
                "additionalProperties" => w.message(21, |w| match v {
                    Value::Bool(b) => {
                        // A oneof member is written even when false.
                        w.tag(2, 0);
                        w.varint(u64::from(*b));
                        Ok(())
                    }
                    other => w.message(1, |w| schema(w, other, at)),
                })?,
                // TypeItem { repeated string value = 1 }
                "type" => w.message(22, |w| match v {
                    Value::Array(_) => w.strings(1, v, at),
                    other => {
                        let t = other.as_str().ok_or_else(|| format!("{at}: bad type"))?;
                        w.bytes(1, t.as_bytes());
                        Ok(())
                    }
                })?,
                // ItemsItem { repeated Schema schema = 1 }
                "items" => w.message(23, |w| match v {
                    Value::Array(items) => {
                        for item in items {
                            w.message(1, |w| schema(w, item, at))?;
                        }
                        Ok(())
                    }
                    other => w.message(1, |w| schema(w, other, at)),
                })?,
                "allOf" => {
                    for item in array(v, at)? {
                        w.message(24, |w| schema(w, item, at))?;
                    }
                }
                // Properties { repeated NamedSchema additional_properties = 1 }
                "properties" => w.message(25, |w| named_schemas(w, 1, v, at))?,
                "discriminator" => w.string(26, v, at)?,
                "readOnly" => w.bool(27, v, at)?,
                "example" => w.any(30, v)?,
                k if k.starts_with("x-") => w.extension(31, k, v)?,
                k => return Err(unknown(at, k)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation of a document: (path, method, operation).
    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method != "parameters" {
                    out.push((path.clone(), method.clone(), op.clone()));
                }
            }
        }
        out
    }

    fn has_operation(doc: &Value, path: &str, method: &str) -> bool {
        doc["paths"].get(path).and_then(|p| p.get(method)).is_some()
    }

    fn resource_paths(r: &ResourceInfo) -> (String, String) {
        let prefix = if r.group.is_empty() {
            format!("/api/{}", r.version)
        } else {
            format!("/apis/{}/{}", r.group, r.version)
        };
        let collection = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        let item = format!("{collection}/{{name}}");
        (collection, item)
    }

    #[test]
    fn every_served_resource_has_list_get_and_patch_paths_in_v2_and_in_its_v3_document() {
        let v2 = v2();
        for r in RESOURCES.iter().filter(|r| r.stored) {
            let v3 = v3_group_version(&gv_path(r.group, r.version)).unwrap();
            let (collection, item) = resource_paths(r);
            for doc in [&v2, &v3] {
                for (path, method) in [
                    (&collection, "get"),
                    (&collection, "post"),
                    (&collection, "delete"),
                    (&item, "get"),
                    (&item, "put"),
                    (&item, "patch"),
                    (&item, "delete"),
                ] {
                    assert!(has_operation(doc, path, method), "{method} {path}");
                }
                if r.subresources.status {
                    assert!(has_operation(doc, &format!("{item}/status"), "patch"));
                }
                if r.subresources.scale {
                    assert!(has_operation(doc, &format!("{item}/scale"), "patch"));
                }
            }
        }
        let deploy = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        assert_eq!(
            deploy["patch"]["operationId"],
            "patchAppsV1NamespacedDeployment"
        );
        assert_eq!(
            v2["paths"]["/api/v1/pods"]["get"]["operationId"],
            "listCoreV1PodForAllNamespaces"
        );
        assert_eq!(
            v2["paths"]["/api/v1/nodes/{name}/status"]["get"]["operationId"],
            "readCoreV1NodeStatus"
        );
    }

    #[test]
    fn a_group_version_document_holds_only_its_own_paths() {
        let apps = v3_group_version("apis/apps/v1").unwrap();
        assert!(operations(&apps)
            .iter()
            .all(|(path, _, _)| path.starts_with("/apis/apps/v1/")));
        let core = v3_group_version("/api/v1").unwrap();
        assert!(operations(&core)
            .iter()
            .all(|(path, _, _)| path.starts_with("/api/v1/")));
        assert!(v3_group_version("apis/apps/v2").is_none());
        assert!(v3_group_version("apis/nothing/v1").is_none());
        assert_eq!(v3_hash("apis/nothing/v1"), "");
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut seen = BTreeSet::new();
        for (path, method, op) in operations(&v2()) {
            let id = op["operationId"].as_str().unwrap().to_string();
            assert!(seen.insert(id.clone()), "{id} twice ({method} {path})");
        }
    }

    fn assert_refs_resolve(doc: &Value, definitions: &Value, prefix: &str) {
        let mut refs = BTreeSet::new();
        collect_ref_strings(doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{r} does not start with {prefix}"));
            assert!(definitions.get(name).is_some(), "{r} dangles");
        }
    }

    fn collect_ref_strings(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(s)) => {
                            out.insert(s.clone());
                        }
                        _ => collect_ref_strings(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_ref_strings(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves_in_v2_and_in_every_v3_document() {
        let v2 = v2();
        assert_refs_resolve(&v2, &v2["definitions"], "#/definitions/");
        for (path, _) in v3_cached().iter() {
            let doc = v3_group_version(path).unwrap();
            assert_refs_resolve(&doc, &doc["components"]["schemas"], "#/components/schemas/");
        }
    }

    #[test]
    fn every_patch_operation_lists_field_validation_and_the_patch_media_types() {
        let mut docs = vec![v2()];
        docs.extend(v3_cached().values().map(|(doc, _)| doc.clone()));
        let mut patches = 0;
        for doc in &docs {
            for (path, method, op) in operations(doc) {
                if method != "patch" {
                    continue;
                }
                patches += 1;
                let params = op["parameters"].as_array().unwrap();
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
                    "{path}"
                );
                assert!(op["x-kubernetes-group-version-kind"]["kind"].is_string());
                let types: Vec<&str> = if doc.get("swagger").is_some() {
                    op["consumes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap())
                        .collect()
                } else {
                    op["requestBody"]["content"]
                        .as_object()
                        .unwrap()
                        .keys()
                        .map(String::as_str)
                        .collect()
                };
                assert!(types.contains(&"application/strategic-merge-patch+json"));
                assert!(types.contains(&"application/apply-patch+yaml"));
            }
        }
        assert!(patches > 2 * RESOURCES.iter().filter(|r| r.stored).count());
    }

    #[test]
    fn pod_and_deployment_definitions_carry_their_group_version_kind() {
        let v2 = v2();
        let apps = v3_group_version("apis/apps/v1").unwrap();
        let core = v3_group_version("api/v1").unwrap();
        for (defs, name, gvk) in [
            (&v2["definitions"], "io.k8s.api.core.v1.Pod", ("", "Pod")),
            (
                &v2["definitions"],
                "io.k8s.api.core.v1.PodList",
                ("", "PodList"),
            ),
            (
                &v2["definitions"],
                "io.k8s.api.apps.v1.Deployment",
                ("apps", "Deployment"),
            ),
            (
                &core["components"]["schemas"],
                "io.k8s.api.core.v1.Pod",
                ("", "Pod"),
            ),
            (
                &apps["components"]["schemas"],
                "io.k8s.api.apps.v1.Deployment",
                ("apps", "Deployment"),
            ),
        ] {
            assert_eq!(
                defs[name]["x-kubernetes-group-version-kind"],
                json!([{"group": gvk.0, "kind": gvk.1, "version": "v1"}]),
                "{name}"
            );
        }
        let delete =
            &v2["definitions"][DELETE_OPTIONS_DEFINITION]["x-kubernetes-group-version-kind"];
        let delete = delete.as_array().unwrap();
        assert!(delete.contains(&json!({"group": "", "kind": "DeleteOptions", "version": "v1"})));
        assert!(
            delete.contains(&json!({"group": "apps", "kind": "DeleteOptions", "version": "v1"}))
        );
    }

    #[test]
    fn pod_spec_containers_carry_the_name_merge_key_in_both_dialects() {
        let v2 = v2();
        let core = v3_group_version("api/v1").unwrap();
        for spec in [
            &v2["definitions"]["io.k8s.api.core.v1.PodSpec"],
            &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"],
        ] {
            let containers = &spec["properties"]["containers"];
            assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
            assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
            assert_eq!(containers["x-kubernetes-list-type"], "map");
            assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        }
        let strategy =
            &v2["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert_eq!(
            strategy["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy"
        );
    }

    #[test]
    fn int_or_string_and_quantity_are_strings_in_v2_and_one_of_in_v3() {
        let v2 = v2();
        let defs = &v2["definitions"];
        assert_eq!(defs[INT_OR_STRING_DEFINITION]["type"], "string");
        assert_eq!(defs[INT_OR_STRING_DEFINITION]["format"], "int-or-string");
        assert_eq!(defs[QUANTITY_DEFINITION]["type"], "string");
        assert!(defs[QUANTITY_DEFINITION]
            .get("x-kubernetes-int-or-string")
            .is_none());
        let core = v3_group_version("api/v1").unwrap();
        let schemas = &core["components"]["schemas"];
        assert_eq!(
            schemas[INT_OR_STRING_DEFINITION]["oneOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        assert!(schemas[QUANTITY_DEFINITION].get("type").is_none());
    }

    /// Walk every schema of a definitions map and check its keys.
    fn check_schema_keys(schema: &Value, allowed: &[&str], at: &str) {
        let map = schema
            .as_object()
            .unwrap_or_else(|| panic!("{at}: not an object schema"));
        for (k, v) in map {
            assert!(
                allowed.contains(&k.as_str()) || k.starts_with("x-"),
                "{at}: `{k}`"
            );
            match k.as_str() {
                "properties" => {
                    for (name, s) in v.as_object().unwrap() {
                        check_schema_keys(s, allowed, &format!("{at}.{name}"));
                    }
                }
                "items" | "not" => check_schema_keys(v, allowed, at),
                "additionalProperties" if v.is_object() => check_schema_keys(v, allowed, at),
                "allOf" | "oneOf" | "anyOf" => {
                    for s in v.as_array().unwrap() {
                        check_schema_keys(s, allowed, at);
                    }
                }
                _ => {}
            }
        }
    }

    #[test]
    fn v2_schemas_use_only_swagger_2_keywords_in_the_shape_kubectl_reads() {
        let v2 = v2();
        for (name, def) in v2["definitions"].as_object().unwrap() {
            check_schema_keys(def, V2_SCHEMA_KEYS, name);
        }
        let text = serde_json::to_string(&v2).unwrap();
        for keyword in ["\"allOf\"", "\"oneOf\"", "\"nullable\"", "\"$schema\""] {
            assert!(!text.contains(keyword), "{keyword} in v2");
        }
        let meta = &v2["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["metadata"];
        assert_eq!(
            meta["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(meta.get("type").is_none());
    }

    #[test]
    fn v3_schemas_use_only_openapi_3_keywords() {
        for (path, (doc, _)) in v3_cached() {
            for (name, def) in doc["components"]["schemas"].as_object().unwrap() {
                check_schema_keys(def, V3_SCHEMA_KEYS, &format!("{path} {name}"));
            }
            assert_eq!(doc["openapi"], "3.0.0");
        }
    }

    #[test]
    fn the_v3_index_lists_every_served_group_version_with_its_hash() {
        let index = v3_index();
        let paths = index["paths"].as_object().unwrap();
        let mut expected: Vec<String> = group_versions()
            .into_iter()
            .map(|(g, v)| gv_path(g, v))
            .collect();
        expected.sort();
        let mut keys: Vec<String> = paths.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, expected);
        assert!(keys.contains(&"api/v1".to_string()));
        assert!(keys.contains(&"apis/apps/v1".to_string()));
        let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
        assert_eq!(
            url,
            format!("/openapi/v3/apis/apps/v1?hash={}", v3_hash("apis/apps/v1"))
        );
        assert_eq!(v3_hash("apis/apps/v1").len(), 32);
        assert_ne!(v3_hash("apis/apps/v1"), v3_hash("api/v1"));
        let again = hash_document(&v3_group_version("apis/apps/v1").unwrap());
        assert_eq!(again, v3_hash("apis/apps/v1"));
    }

    #[test]
    fn v3_documents_carry_only_the_schemas_their_paths_reach() {
        let batch = v3_group_version("apis/batch/v1").unwrap();
        let schemas = batch["components"]["schemas"].as_object().unwrap();
        assert!(schemas.contains_key("io.k8s.api.batch.v1.CronJob"));
        assert!(schemas.contains_key("io.k8s.api.core.v1.PodSpec"));
        assert!(!schemas.contains_key("io.k8s.api.apps.v1.Deployment"));
        let apps = v3_group_version("apis/apps/v1").unwrap();
        assert!(apps["components"]["schemas"]
            .get("io.k8s.api.autoscaling.v1.Scale")
            .is_some());
    }

    /// A minimal protobuf reader: the (field, wire type, payload) triples of
    /// one message.
    fn fields(mut buf: &[u8]) -> Vec<(u32, u8, Vec<u8>)> {
        fn varint(buf: &mut &[u8]) -> u64 {
            let mut out = 0u64;
            let mut shift = 0;
            loop {
                let b = buf[0];
                *buf = &buf[1..];
                out |= u64::from(b & 0x7f) << shift;
                if b < 0x80 {
                    return out;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = varint(&mut buf);
            let (field, wire) = ((key >> 3) as u32, (key & 7) as u8);
            let payload = match wire {
                0 => varint(&mut buf).to_le_bytes().to_vec(),
                1 => {
                    let (head, rest) = buf.split_at(8);
                    buf = rest;
                    head.to_vec()
                }
                2 => {
                    let len = varint(&mut buf) as usize;
                    let (head, rest) = buf.split_at(len);
                    buf = rest;
                    head.to_vec()
                }
                other => panic!("wire type {other}"),
            };
            out.push((field, wire, payload));
        }
        out
    }

    #[test]
    fn the_v2_document_encodes_as_a_gnostic_protobuf_document() {
        let pb = v2_protobuf();
        let top = fields(&pb);
        assert_eq!(top[0], (1, 2, b"2.0".to_vec()));
        let definitions = top.iter().find(|f| f.0 == 9).unwrap();
        let named: Vec<_> = fields(&definitions.2);
        assert_eq!(named.len(), v2()["definitions"].as_object().unwrap().len());
        let pod = named
            .iter()
            .map(|(_, _, n)| fields(n))
            .find(|n| n[0].2 == b"io.k8s.api.core.v1.Pod")
            .unwrap();
        let schema = fields(&pod[1].2);
        // vendor_extension = 31: NamedAny { name, Any { yaml } }
        let gvk = schema.iter().find(|f| f.0 == 31).unwrap();
        let gvk = fields(&gvk.2);
        assert_eq!(gvk[0].2, b"x-kubernetes-group-version-kind");
        let yaml = fields(&gvk[1].2);
        assert_eq!(yaml[0].0, 2);
        let value: Value = serde_json::from_slice(&yaml[0].2).unwrap();
        assert_eq!(
            value,
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
    }

    #[test]
    fn kubectls_accept_header_gets_protobuf_and_others_get_json() {
        assert!(v2_wants_protobuf(
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        ));
        assert!(v2_wants_protobuf(
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf, application/json"
        ));
        assert!(!v2_wants_protobuf(""));
        assert!(!v2_wants_protobuf("application/json"));
        assert!(!v2_wants_protobuf("*/*"));
        assert!(!v2_wants_protobuf(
            "application/json, application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        ));
        assert!(v2_wants_protobuf(
            "application/json;q=0, application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        ));
    }

    #[test]
    fn the_gnostic_encoder_refuses_what_swagger_2_cannot_hold() {
        let doc = json!({
            "swagger": "2.0",
            "definitions": {"A": {"type": "object", "oneOf": [{"type": "string"}]}},
        });
        let err = gnostic::encode_document(&doc).unwrap_err();
        assert!(err.contains("oneOf"), "{err}");
    }
}
