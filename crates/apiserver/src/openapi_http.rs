//! `/openapi/v2` and `/openapi/v3`: the documents from [`api::openapi`],
//! serialized once and served with the content types kubectl expects.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::codec::Query;

fn bytes_response(body: Bytes, content_type: &'static str, etag: Option<String>) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(tag) = etag.and_then(|t| HeaderValue::from_str(&format!("\"{t}\"")).ok()) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// v2 in the form asked for: client-go (kubectl) asks for gnostic protobuf
/// and decodes the body as protobuf whatever the content type says, so it
/// must get protobuf; other clients get JSON.
pub fn v2(headers: &HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    static JSON: OnceLock<Bytes> = OnceLock::new();
    static PROTOBUF: OnceLock<Bytes> = OnceLock::new();
    let mut response = if api::openapi::v2_wants_protobuf(accept) {
        let body = PROTOBUF
            .get_or_init(|| Bytes::from(api::openapi::v2_protobuf()))
            .clone();
        bytes_response(body, api::openapi::V2_PROTOBUF_CONTENT_TYPE, None)
    } else {
        let body = JSON
            .get_or_init(|| {
                Bytes::from(serde_json::to_vec(&api::openapi::v2()).unwrap_or_default())
            })
            .clone();
        bytes_response(body, "application/json", None)
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

pub fn v3_index() -> Response {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    let body = DOC
        .get_or_init(|| {
            Bytes::from(serde_json::to_vec(&api::openapi::v3_index()).unwrap_or_default())
        })
        .clone();
    bytes_response(body, "application/json", None)
}

/// One group-version document, e.g. `apis/apps/v1`.
pub fn v3_group_version(path: &str, query: &Query) -> Option<Response> {
    static DOCS: OnceLock<HashMap<String, (Bytes, String)>> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        let index = api::openapi::v3_index();
        index
            .get("paths")
            .and_then(|p| p.as_object())
            .map(|paths| {
                paths
                    .keys()
                    .filter_map(|gv| {
                        let doc = api::openapi::v3_group_version(gv)?;
                        let bytes = Bytes::from(serde_json::to_vec(&doc).ok()?);
                        Some((gv.clone(), (bytes, api::openapi::v3_hash(gv))))
                    })
                    .collect()
            })
            .unwrap_or_default()
    });
    let (body, hash) = docs.get(path)?;
    let mut response = bytes_response(body.clone(), "application/json", Some(hash.clone()));
    if query.get("hash") == Some(hash.as_str()) {
        // Hash-addressed documents never change: let clients cache them.
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, immutable"),
        );
    }
    Some(response)
}
