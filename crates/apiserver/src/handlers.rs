//! The HTTP request path: authenticate, authorize, route, call the registry,
//! encode the answer.
//!
//! Routing is one match over [`crate::request::parse`] instead of an axum
//! route table: Kubernetes paths nest namespaces, names and subresources in
//! ways a static table expresses poorly, and upstream routes the same way
//! (RequestInfo first, then the handler).

use std::sync::Arc;

use api::resources::ResourceInfo;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};

use crate::auth::{Attributes, PeerIdentity, UserInfo};
use crate::cache::CachedObject;
use crate::codec::{self, Query, Rendering};
use crate::discovery;
use crate::error::{ApiError, ApiResult, Cause};
use crate::patch;
use crate::registry::{self, DeleteOptions, FieldValidation, WriteOptions, Written};
use crate::request::{self, ResourcePath, Target};
use crate::selection::Selection;
use crate::server::AppState;
use crate::strategy;
use crate::subresources;
use crate::watch;

/// The largest request body accepted (upstream's limit is 3 MiB too).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    match route(state, req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = (code, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    response
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Health and version answers are public, as upstream's
/// `system:public-info-viewer` role makes them.
/// What an unauthenticated caller may read besides the health endpoints:
/// kube-public's `cluster-info`, as kubeadm's RBAC grants
/// `system:anonymous` (joining nodes read the CA there before they trust
/// the server, and check it against the hash in their token).
fn is_anonymous_readable(method: &Method, path: &str) -> bool {
    method == Method::GET && path == "/api/v1/namespaces/kube-public/configmaps/cluster-info"
}

fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// A bearer token no static entry knows: a bootstrap token's Secret in
/// kube-system decides.
async fn authenticate_bootstrap(state: &AppState, token: String) -> Option<UserInfo> {
    let (id, _) = crate::bootstrap_token::parse(&token)?;
    let secrets = api::resources::find("", "v1", "secrets")?;
    let secret = state
        .registry
        .get(
            secrets,
            Some("kube-system"),
            &crate::bootstrap_token::secret_name(id),
        )
        .await
        .ok()?;
    crate::bootstrap_token::user(&token, &secret, chrono::Utc::now())
}

/// The client certificate's or static token's user; `Err(token)` when a
/// bearer token needs looking up.
fn authenticate_locally(state: &AppState, req: &Request) -> Result<Option<UserInfo>, String> {
    if let Some(PeerIdentity(Some(user))) = req.extensions().get::<PeerIdentity>() {
        return Ok(Some(user.clone()));
    }
    let auth = header_str(req.headers(), header::AUTHORIZATION);
    let Some(token) = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .map(str::trim)
    else {
        return Ok(None);
    };
    match state.tokens.authenticate(token) {
        Some(user) => Ok(Some(user)),
        None => Err(token.to_string()),
    }
}

async fn route(state: Arc<AppState>, req: Request) -> ApiResult<Response> {
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    let user = match authenticate_locally(&state, &req) {
        Ok(user) => user,
        Err(token) => authenticate_bootstrap(&state, token).await,
    };
    if user.is_none() && !is_public(&path) && !is_anonymous_readable(req.method(), &path) {
        return Err(ApiError::Unauthorized);
    }
    let anonymous = UserInfo {
        name: "system:anonymous".into(),
        uid: String::new(),
        groups: vec!["system:unauthenticated".into()],
    };
    let user = user.unwrap_or(anonymous);
    if let Some((node, kubelet_path)) = crate::kubelet_proxy::node_proxy_target(&path) {
        return node_proxy(&state, &user, &node, &kubelet_path, req).await;
    }
    let method = req.method().clone();
    if let Some(target) = crate::metrics_api::parse_path(&path) {
        return crate::metrics_api::handle(&state, &user, target, &method, &query).await;
    }
    let target = request::parse(&path);
    match target {
        Target::Resource(rp) => {
            let verb = verb_of(&method, &rp, &query);
            state
                .authorizer
                .authorize(&Attributes {
                    user: &user,
                    verb,
                    group: rp.resource.group,
                    resource: rp.resource.plural,
                    subresource: rp.subresource.as_deref(),
                    namespace: rp.namespace.as_deref(),
                    name: rp.name.as_deref(),
                    path: None,
                })
                .map_err(|reason| ApiError::Forbidden {
                    message: format!(
                        "{} \"{}\" is forbidden: User \"{}\" cannot {verb} resource \"{}\": {reason}",
                        rp.resource.plural,
                        rp.name.as_deref().unwrap_or(""),
                        user.name,
                        rp.resource.plural
                    ),
                })?;
            resource_request(&state, rp, &user, query, req).await
        }
        other => {
            state
                .authorizer
                .authorize(&Attributes {
                    user: &user,
                    verb: "get",
                    group: "",
                    resource: "",
                    subresource: None,
                    namespace: None,
                    name: None,
                    path: Some(&path),
                })
                .map_err(|reason| ApiError::Forbidden { message: reason })?;
            if method != Method::GET && method != Method::HEAD {
                return Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({path})"
                )));
            }
            non_resource(&state, other, &path, &query, req.headers())
        }
    }
}

/// `nodes/{name}/proxy/...`, authorized as the `nodes/proxy` subresource.
async fn node_proxy(
    state: &Arc<AppState>,
    user: &UserInfo,
    node: &str,
    kubelet_path: &str,
    req: Request,
) -> ApiResult<Response> {
    let verb = match req.method().as_str() {
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "get",
    };
    state
        .authorizer
        .authorize(&Attributes {
            user,
            verb,
            group: "",
            resource: "nodes",
            subresource: Some("proxy"),
            namespace: None,
            name: Some(node),
            path: None,
        })
        .map_err(|reason| ApiError::Forbidden {
            message: format!(
                "nodes \"{node}\" is forbidden: User \"{}\" cannot {verb} resource \"nodes/proxy\": {reason}",
                user.name
            ),
        })?;
    crate::kubelet_proxy::node_proxy(&state.registry, &state.kubelet, node, kubelet_path, req).await
}

fn verb_of(method: &Method, rp: &ResourcePath, query: &Query) -> &'static str {
    match (method.as_str(), rp.name.is_some()) {
        ("GET", false) if query.flag("watch") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "unknown",
    }
}

fn non_resource(
    state: &AppState,
    target: Target,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let accept = header_str(headers, header::ACCEPT);
    let not_found = || ApiError::NotFound {
        message: "the server could not find the requested resource".into(),
        subject: Default::default(),
    };
    match target {
        Target::CoreVersions | Target::Groups => {
            let core = target == Target::CoreVersions;
            if let Some(version) = discovery::aggregated_version(accept) {
                let mut response =
                    json_response(StatusCode::OK, &discovery::aggregated(core, version));
                if let Ok(v) = HeaderValue::from_str(&discovery::aggregated_content_type(version)) {
                    response.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                response
                    .headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("Accept"));
                return Ok(response);
            }
            let doc = if core {
                discovery::core_versions(&state.server_address)
            } else {
                discovery::groups()
            };
            Ok(json_response(StatusCode::OK, &doc))
        }
        Target::Group { group } => discovery::group(&group)
            .map(|g| json_response(StatusCode::OK, &g))
            .ok_or_else(not_found),
        Target::GroupVersion { group, version } => discovery::resource_list(&group, &version)
            .map(|g| json_response(StatusCode::OK, &g))
            .ok_or_else(not_found),
        Target::UnknownResource { .. } => Err(not_found()),
        Target::Resource(_) => Err(not_found()),
        Target::Other => match path.trim_end_matches('/') {
            "/version" => Ok(json_response(StatusCode::OK, &discovery::version())),
            "/healthz" | "/livez" | "/readyz" => health(state, path, query),
            p if p.starts_with("/healthz/")
                || p.starts_with("/livez/")
                || p.starts_with("/readyz/") =>
            {
                health(state, path, query)
            }
            "/openapi/v2" => Ok(crate::openapi_http::v2(headers)),
            "/openapi/v3" => Ok(crate::openapi_http::v3_index()),
            p if p.starts_with("/openapi/v3/") => {
                crate::openapi_http::v3_group_version(&p["/openapi/v3/".len()..], query)
                    .ok_or_else(not_found)
            }
            _ => Err(not_found()),
        },
    }
}

fn health(state: &AppState, path: &str, query: &Query) -> ApiResult<Response> {
    let checks = [
        ("ping", true),
        ("etcd", true),
        ("watch-cache", state.ready()),
    ];
    let ok = checks.iter().all(|(_, ok)| *ok);
    let verbose = query.flag("verbose");
    let body = if verbose {
        let mut out = String::new();
        for (name, ok) in checks {
            out.push_str(&format!(
                "[{}]{name} {}\n",
                if ok { "+" } else { "-" },
                if ok { "ok" } else { "failed" }
            ));
        }
        let name = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("healthz");
        out.push_str(&format!(
            "{name} check {}\n",
            if ok { "passed" } else { "failed" }
        ));
        out
    } else if ok {
        "ok".to_string()
    } else {
        "not ready".to_string()
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let mut response = (code, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

async fn read_body(req: Request) -> ApiResult<(String, bytes::Bytes)> {
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).to_string();
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| ApiError::RequestEntityTooLarge {
            message: "Request entity too large: limit is 3145728".into(),
        })?;
    Ok((content_type, body))
}

fn write_options(query: &Query, headers: &HeaderMap, user: &UserInfo) -> ApiResult<WriteOptions> {
    let dry_run = match query.non_empty("dryRun") {
        None => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid dry run value: \"{other}\": supported values: \"All\""
            )))
        }
    };
    let field_validation = match query.non_empty("fieldValidation") {
        None | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            )))
        }
    };
    let field_manager = match query.non_empty("fieldManager") {
        Some(m) if m.len() > 128 => {
            return Err(ApiError::bad_request(
                "fieldManager must be no more than 128 characters",
            ))
        }
        Some(m) => m.to_string(),
        None => {
            // Upstream names the manager after the user agent's program.
            let agent = header_str(headers, header::USER_AGENT);
            let program = agent.split('/').next().unwrap_or("").trim();
            if program.is_empty() {
                "unknown".to_string()
            } else {
                program.to_string()
            }
        }
    };
    Ok(WriteOptions {
        dry_run,
        field_manager,
        field_manager_given: query.non_empty("fieldManager").is_some(),
        field_validation,
        managed_by_apply: false,
        requester: Some(user.clone()),
    })
}

fn written_response(
    written: Written,
    query: &Query,
    rp: &ResourcePath,
    accept: &str,
) -> ApiResult<Response> {
    let code = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = render_one(rp.resource, &written.object, accept, query)?;
    Ok(with_warnings(json_response(code, &body), &written.warnings))
}

/// Render one object for the client: itself, a one-row Table, or metadata.
fn render_one(
    resource: &ResourceInfo,
    obj: &Value,
    accept: &str,
    query: &Query,
) -> ApiResult<Value> {
    Ok(match codec::rendering(accept)? {
        Rendering::Object => obj.clone(),
        Rendering::PartialObjectMetadata => codec::partial_metadata(obj),
        Rendering::Table => api::table::table(
            resource.group,
            resource.plural,
            std::slice::from_ref(obj),
            json!({"resourceVersion": api::meta::resource_version(obj).unwrap_or("")}),
            api::table::parse_include_object(query.get("includeObject")),
            chrono::Utc::now(),
        ),
    })
}

async fn resource_request(
    state: &Arc<AppState>,
    rp: ResourcePath,
    user: &UserInfo,
    query: Query,
    req: Request,
) -> ApiResult<Response> {
    let resource = rp.resource;
    let method = req.method().clone();
    let accept = header_str(req.headers(), header::ACCEPT).to_string();
    let headers = req.headers().clone();
    if resource.namespaced && rp.name.is_some() && rp.namespace.is_none() {
        return Err(ApiError::NotFound {
            message: "the server could not find the requested resource".into(),
            subject: Default::default(),
        });
    }
    let ns = rp.namespace.clone();
    let ns = ns.as_deref();
    let registry = &state.registry;
    if !resource.stored {
        return review(state, resource, &method, &rp, user, req).await;
    }
    match (&method, rp.name.as_deref(), rp.subresource.as_deref()) {
        (&Method::GET, None, None) => {
            if query.flag("watch") {
                let selection = Selection::from_query(resource, ns, &query)?;
                return watch::serve(state.clone(), resource, selection, &query, &accept).await;
            }
            list(state, resource, ns, &query, &accept).await
        }
        (&Method::POST, None, None) => {
            if resource.namespaced && ns.is_none() {
                // Upstream serves no create on the all-namespaces path.
                return Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({})",
                    resource.plural
                )));
            }
            let options = write_options(&query, &headers, user)?;
            let (ct, body) = read_body(req).await?;
            let obj = codec::decode_body(&ct, &body)?;
            let written = registry.create(resource, ns, obj, &options).await?;
            written_response(written, &query, &rp, &accept)
        }
        (&Method::DELETE, None, None) => {
            let (ct, body) = read_body(req).await?;
            let options = delete_options(&query, &ct, &body)?;
            let selection = Selection::from_query(resource, ns, &query)?;
            delete_collection(state, resource, ns, &selection, &options, &accept, &query).await
        }
        (&Method::GET, Some(name), None) => {
            let obj = registry.get(resource, ns, name).await?;
            Ok(json_response(
                StatusCode::OK,
                &render_one(resource, &obj, &accept, &query)?,
            ))
        }
        (&Method::PUT, Some(name), sub @ (None | Some("status" | "finalize" | "approval"))) => {
            check_subresource(resource, sub)?;
            let options = write_options(&query, &headers, user)?;
            let (ct, body) = read_body(req).await?;
            let obj = codec::decode_body(&ct, &body)?;
            let unpinned = api::meta::resource_version(&obj).is_none_or(str::is_empty);
            let updated = registry
                .update(resource, ns, name, sub, &options, |_| {
                    if unpinned && !strategy::allows_unconditional_update(resource) {
                        return Err(ApiError::invalid(
                            resource.kind,
                            registry::subject(resource, name),
                            vec![Cause::invalid_raw(
                                "metadata.resourceVersion",
                                "0x0",
                                "must be specified for an update",
                            )],
                        ));
                    }
                    Ok(obj.clone())
                })
                .await;
            let written = match updated {
                Err(ApiError::NotFound { .. })
                    if sub.is_none() && strategy::allows_create_on_update(resource) =>
                {
                    if api::meta::name(&obj).is_some_and(|n| n != name) {
                        return Err(ApiError::bad_request(
                            "the name of the object does not match the name on the URL",
                        ));
                    }
                    let mut obj = obj;
                    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.insert("name".into(), json!(name));
                        meta.remove("resourceVersion");
                    }
                    registry.create(resource, ns, obj, &options).await?
                }
                other => other?,
            };
            written_response(written, &query, &rp, &accept)
        }
        (&Method::PATCH, Some(name), sub @ (None | Some("status" | "approval"))) => {
            check_subresource(resource, sub)?;
            let options = write_options(&query, &headers, user)?;
            let (ct, body) = read_body(req).await?;
            let written = patch::patch(
                registry,
                resource,
                ns,
                name,
                sub,
                &ct,
                &body,
                &options,
                query.flag("force"),
            )
            .await?;
            written_response(written, &query, &rp, &accept)
        }
        (&Method::GET, Some(name), sub @ Some("status" | "approval")) => {
            check_subresource(resource, sub)?;
            let obj = registry.get(resource, ns, name).await?;
            Ok(json_response(
                StatusCode::OK,
                &render_one(resource, &obj, &accept, &query)?,
            ))
        }
        (&Method::DELETE, Some(name), None) => {
            let (ct, body) = read_body(req).await?;
            let options = delete_options(&query, &ct, &body)?;
            let deleted = registry.delete(resource, ns, name, &options).await?;
            if deleted.finished && !returns_deleted_object(resource) {
                return Ok(json_response(
                    StatusCode::OK,
                    &deleted_status(resource, &deleted.object),
                ));
            }
            let code = if deleted.finished {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            Ok(json_response(
                code,
                &render_one(resource, &deleted.object, &accept, &query)?,
            ))
        }
        (m, Some(name), Some("scale")) if resource.subresources.scale => {
            let options = write_options(&query, &headers, user)?;
            let (ct, body) = read_body(req).await?;
            subresources::scale(registry, resource, ns, name, m, &ct, &body, &options)
                .await
                .map(|v| json_response(StatusCode::OK, &v))
        }
        (&Method::POST, Some(name), Some("binding")) if resource.subresources.binding => {
            let options = write_options(&query, &headers, user)?;
            let (ct, body) = read_body(req).await?;
            let binding = codec::decode_body(&ct, &body)?;
            subresources::bind(registry, ns, name, &binding, &options).await?;
            Ok(json_response(StatusCode::CREATED, &success_status()))
        }
        (&Method::POST, Some(name), Some("eviction")) if resource.subresources.eviction => {
            let (ct, body) = read_body(req).await?;
            let eviction = codec::decode_body(&ct, &body)?;
            subresources::evict(registry, ns, name, &eviction).await?;
            Ok(json_response(StatusCode::CREATED, &success_status()))
        }
        (&Method::GET, Some(name), Some("log")) if resource.subresources.log => {
            crate::logs::serve(registry, &state.kubelet, ns, name, &query).await
        }
        (
            &Method::GET | &Method::POST,
            Some(name),
            Some(sub @ ("exec" | "attach" | "portforward")),
        ) if resource.subresources.log => {
            crate::kubelet_proxy::pod_subresource(
                registry,
                &state.kubelet,
                ns.unwrap_or(""),
                name,
                sub,
                req,
            )
            .await
        }
        (_, Some(_), Some("log")) if resource.subresources.log => {
            Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            )))
        }
        (_, _, Some(sub)) => Err(ApiError::NotFound {
            message: format!(
                "the server could not find the requested resource ({}/{sub})",
                resource.plural
            ),
            subject: Default::default(),
        }),
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

/// Review resources are answered from the request itself and never stored:
/// SelfSubjectReview (`kubectl auth whoami`), SelfSubjectAccessReview and
/// SelfSubjectRulesReview (`kubectl auth can-i`), the latter two decided by
/// the authorizer.
async fn review(
    state: &AppState,
    resource: &'static ResourceInfo,
    method: &Method,
    rp: &ResourcePath,
    user: &UserInfo,
    req: Request,
) -> ApiResult<Response> {
    if *method != Method::POST || rp.name.is_some() {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            resource.plural
        )));
    }
    let (ct, body) = read_body(req).await?;
    let mut review = if body.is_empty() {
        json!({})
    } else {
        codec::decode_body(&ct, &body)?
    };
    if !review.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    review["apiVersion"] = json!(resource.api_version());
    review["kind"] = json!(resource.kind);
    review["metadata"] = json!({"creationTimestamp": null});
    review["status"] = match resource.kind {
        "SelfSubjectAccessReview" => access_review_status(state, user, &review),
        // Everything is allowed until RBAC arrives: one rule says so.
        "SelfSubjectRulesReview" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        _ => {
            let mut user_info = json!({"username": user.name, "groups": user.groups});
            if !user.uid.is_empty() {
                user_info["uid"] = json!(user.uid);
            }
            json!({"userInfo": user_info})
        }
    };
    Ok(json_response(StatusCode::CREATED, &review))
}

fn access_review_status(state: &AppState, user: &UserInfo, review: &Value) -> Value {
    let attrs = review.pointer("/spec/resourceAttributes");
    let text = |v: Option<&Value>, key: &str| {
        v.and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let path = review
        .pointer("/spec/nonResourceAttributes/path")
        .and_then(Value::as_str);
    let verb = match attrs {
        Some(_) => text(attrs, "verb"),
        None => text(review.pointer("/spec/nonResourceAttributes"), "verb"),
    };
    let (group, resource, subresource, namespace, name) = (
        text(attrs, "group"),
        text(attrs, "resource"),
        text(attrs, "subresource"),
        text(attrs, "namespace"),
        text(attrs, "name"),
    );
    let decision = state.authorizer.authorize(&Attributes {
        user,
        verb: &verb,
        group: &group,
        resource: &resource,
        subresource: Some(subresource.as_str()).filter(|s| !s.is_empty()),
        namespace: Some(namespace.as_str()).filter(|s| !s.is_empty()),
        name: Some(name.as_str()).filter(|s| !s.is_empty()),
        path,
    });
    match decision {
        Ok(()) => json!({"allowed": true}),
        Err(reason) => json!({"allowed": false, "reason": reason}),
    }
}

/// Upstream's registries answer a finished delete with the object only for
/// some kinds (`ReturnDeletedObject`, or their own REST delete); the rest
/// answer with a Success `Status` naming the object.
fn returns_deleted_object(resource: &ResourceInfo) -> bool {
    resource.group.is_empty()
        && matches!(
            resource.kind,
            "Pod" | "ServiceAccount" | "Service" | "Namespace"
        )
}

fn deleted_status(resource: &ResourceInfo, obj: &Value) -> Value {
    let mut details = json!({
        "name": api::meta::name(obj).unwrap_or(""),
        "kind": resource.plural,
        "uid": api::meta::meta_str(obj, "uid").unwrap_or(""),
    });
    if !resource.group.is_empty() {
        details["group"] = json!(resource.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

fn success_status() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

fn check_subresource(resource: &ResourceInfo, sub: Option<&str>) -> ApiResult<()> {
    let ok = match sub {
        None => true,
        Some("status") => resource.subresources.status,
        Some("approval") => resource.subresources.approval,
        Some("finalize") => resource.kind == "Namespace",
        Some(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::NotFound {
            message: format!(
                "the server could not find the requested resource ({}/{})",
                resource.plural,
                sub.unwrap_or("")
            ),
            subject: Default::default(),
        })
    }
}

/// `DeleteOptions` from the body (if any) and the query string.
fn delete_options(query: &Query, content_type: &str, body: &[u8]) -> ApiResult<DeleteOptions> {
    let mut options = DeleteOptions::default();
    if !body.is_empty() {
        let v = codec::decode_body(content_type, body)?;
        options.grace_period_seconds = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        options.propagation_policy = v
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string);
        if v.get("orphanDependents") == Some(&Value::Bool(true))
            && options.propagation_policy.is_none()
        {
            options.propagation_policy = Some("Orphan".into());
        }
        options.precondition_uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        options.precondition_resource_version = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        options.dry_run = v
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|d| d == "All"));
    }
    if let Some(g) = query.number::<i64>("gracePeriodSeconds")? {
        options.grace_period_seconds = Some(g);
    }
    if let Some(p) = query.non_empty("propagationPolicy") {
        options.propagation_policy = Some(p.to_string());
    }
    if query.get("dryRun") == Some("All") {
        options.dry_run = true;
    }
    Ok(options)
}

async fn delete_collection(
    state: &Arc<AppState>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
    selection: &Selection,
    options: &DeleteOptions,
    accept: &str,
    query: &Query,
) -> ApiResult<Response> {
    let (items, revision) = state.registry.list_current(resource, ns, None).await?;
    let mut deleted = Vec::new();
    for obj in items.iter().filter(|o| selection.matches(&o.attrs)) {
        match state
            .registry
            .delete(resource, obj.attrs.namespace(), obj.attrs.name(), options)
            .await
        {
            Ok(d) => deleted.push(d.object),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let body = list_body(
        resource,
        deleted,
        json!({"resourceVersion": revision.to_string()}),
        accept,
        query,
    )?;
    Ok(json_response(StatusCode::OK, &body))
}

fn list_body(
    resource: &ResourceInfo,
    items: Vec<Value>,
    list_meta: Value,
    accept: &str,
    query: &Query,
) -> ApiResult<Value> {
    Ok(match codec::rendering(accept)? {
        Rendering::Object => json!({
            "kind": resource.list_kind(),
            "apiVersion": resource.api_version(),
            "metadata": list_meta,
            "items": items,
        }),
        Rendering::PartialObjectMetadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "items": items.iter().map(codec::partial_metadata).collect::<Vec<_>>(),
        }),
        Rendering::Table => api::table::table(
            resource.group,
            resource.plural,
            &items,
            list_meta,
            api::table::parse_include_object(query.get("includeObject")),
            chrono::Utc::now(),
        ),
    })
}

/// A `{Kind}List` serialized directly from shared objects.
fn list_bytes_response(
    resource: &ResourceInfo,
    list_meta: &Value,
    items: &[&Arc<CachedObject>],
) -> Response {
    let size = items.iter().map(|i| i.json_len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(256 + size);
    out.extend_from_slice(b"{\"kind\":");
    let _ = serde_json::to_writer(&mut out, &resource.list_kind());
    out.extend_from_slice(b",\"apiVersion\":");
    let _ = serde_json::to_writer(&mut out, &resource.api_version());
    out.extend_from_slice(b",\"metadata\":");
    let _ = serde_json::to_writer(&mut out, list_meta);
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item.write_json(&mut out);
    }
    out.extend_from_slice(b"]}");
    let mut response = (StatusCode::OK, out).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A `continue` token: the revision the list is consistent at and the last
/// key returned. Opaque to clients, as upstream's.
fn encode_continue(revision: u64, last_key: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> ApiResult<(u64, String)> {
    let bad = || ApiError::bad_request("continue key is not valid: illegal base64 data or token");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, start.to_string()))
}

async fn list(
    state: &Arc<AppState>,
    resource: &'static ResourceInfo,
    ns: Option<&str>,
    query: &Query,
    accept: &str,
) -> ApiResult<Response> {
    let selection = Selection::from_query(resource, ns, query)?;
    let limit = query.number::<usize>("limit")?.filter(|l| *l > 0);
    let rv = query.non_empty("resourceVersion");
    let continue_token = query.non_empty("continue");
    if continue_token.is_some() && rv.is_some() {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    let exact = query.get("resourceVersionMatch") == Some("Exact");
    // Unpaginated lists (and resourceVersion=0, which upstream serves from
    // its cache ignoring limit) come from the watch cache.
    if continue_token.is_none() && !exact && (limit.is_none() || rv == Some("0")) {
        let min = match rv {
            None => None,
            Some(v) => Some(crate::registry::parse_revision(v)?),
        };
        let (items, revision) = state.registry.list_current(resource, ns, min).await?;
        let selected: Vec<&Arc<CachedObject>> = items
            .iter()
            .filter(|o| selection.matches(&o.attrs))
            .collect();
        let list_meta = json!({"resourceVersion": revision.to_string()});
        if codec::rendering(accept)? == Rendering::Object {
            // The common case writes cached objects straight out, without
            // cloning them into a list value first.
            return Ok(list_bytes_response(resource, &list_meta, &selected));
        }
        let items = selected.iter().map(|o| o.value()).collect();
        let body = list_body(resource, items, list_meta, accept, query)?;
        return Ok(json_response(StatusCode::OK, &body));
    }
    let (revision, mut start) = match continue_token {
        Some(token) => {
            let (rv, start) = decode_continue(token)?;
            (Some(rv), Some(start))
        }
        None => match rv {
            Some(v) if exact => (Some(crate::registry::parse_revision(v)?), None),
            _ => (None, None),
        },
    };
    let limit = limit.unwrap_or(usize::MAX);
    let mut items = Vec::new();
    let mut revision = revision;
    let (more, remaining) = loop {
        let page = match state
            .registry
            .list_page(resource, ns, start.clone(), limit.saturating_sub(items.len()).max(1), revision)
            .await
        {
            Ok(p) => p,
            Err(ApiError::Gone { .. }) if continue_token.is_some() => {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ))
            }
            Err(e) => return Err(e),
        };
        revision = Some(page.revision);
        for kv in &page.items {
            start = Some(kv.key.clone());
            let obj = crate::cache::decode_stored(&kv.value, kv.mod_revision);
            if selection.matches_value(&obj) {
                items.push(obj);
            }
        }
        if !page.more || items.len() >= limit {
            break (page.more, page.remaining);
        }
    };
    let revision = revision.unwrap_or(0);
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if more {
        if let Some(last) = &start {
            meta["continue"] = json!(encode_continue(revision, last));
        }
        if selection.is_everything() {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    let body = list_body(resource, items, meta, accept, query)?;
    Ok(json_response(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = encode_continue(42, "/registry/core/pods/default/web");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "/registry/core/pods/default/web".into())
        );
        assert_eq!(decode_continue("!!!").unwrap_err().code().as_u16(), 400);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("{}");
        assert!(decode_continue(&b64).is_err());
    }

    #[test]
    fn public_paths_are_only_health_and_version() {
        assert!(is_public("/healthz"));
        assert!(is_public("/readyz/ping"));
        assert!(!is_public("/api/v1/pods"));
        assert!(!is_public("/openapi/v2"));
    }
}
