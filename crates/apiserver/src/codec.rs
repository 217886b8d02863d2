//! Request bodies in, response bodies out: JSON and YAML decoding, content
//! negotiation (`as=Table`, `as=PartialObjectMetadata`), query parameters.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Decode a request body as JSON, or YAML when the content type says so.
/// Malformed input is a 400, never a panic.
pub fn decode_body(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if api::protobuf::is_protobuf(content_type) {
        // kubectl's typed client writes in Kubernetes protobuf and never
        // falls back to JSON, so the bodies are decoded here.
        return api::protobuf::decode(body).map_err(|e| match e {
            api::protobuf::ProtobufError::UnknownKind { .. }
            | api::protobuf::ProtobufError::UnsupportedContent(_) => {
                ApiError::UnsupportedMediaType {
                    message: format!("the body of the request was in an unknown format: {e}"),
                }
            }
            other => ApiError::bad_request(format!("error decoding protobuf body: {other}")),
        });
    }
    if mime.contains("cbor") {
        return Err(ApiError::UnsupportedMediaType {
            message: format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {mime})"),
        });
    }
    let is_yaml = mime.ends_with("yaml") || mime.ends_with("yml");
    if is_yaml {
        let value: serde_yaml::Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        return serde_json::to_value(value)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

/// How the client wants objects rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendering {
    Object,
    Table,
    PartialObjectMetadata,
}

/// Pick the rendering from an `Accept` header: the first alternative we can
/// serve wins, as upstream's negotiation does.
pub fn rendering(accept: &str) -> ApiResult<Rendering> {
    if accept.trim().is_empty() {
        return Ok(Rendering::Object);
    }
    for part in accept.split(',') {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        let mime = params[0];
        if !matches!(
            mime,
            "application/json" | "*/*" | "application/*" | "application/yaml"
        ) {
            continue;
        }
        let r#as = params.iter().find_map(|p| p.strip_prefix("as="));
        let group = params.iter().find_map(|p| p.strip_prefix("g="));
        match (r#as, group) {
            (None, _) => return Ok(Rendering::Object),
            (Some("Table"), Some("meta.k8s.io")) => return Ok(Rendering::Table),
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                return Ok(Rendering::PartialObjectMetadata)
            }
            _ => continue,
        }
    }
    Err(ApiError::NotAcceptable {
        message: format!("only the following media types are accepted: application/json, application/yaml (asked for {accept})"),
    })
}

/// Whether the client asked for YAML output.
pub fn wants_yaml(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.trim().starts_with("application/yaml"))
}

/// Query parameters, decoded.
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(percent_decode(k), percent_decode(v));
        }
        Query(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A non-empty parameter.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// A boolean parameter, parsed as upstream does: present and neither
    /// `0` nor `false` (any case) means true (Python clients send `True`).
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(is_true)
    }

    pub fn number<T: std::str::FromStr>(&self, key: &str) -> ApiResult<Option<T>> {
        match self.non_empty(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value for {key}: \"{v}\""))),
        }
    }
}

/// Upstream's query boolean: anything but `0` and `false` (any case).
pub fn is_true(value: &str) -> bool {
    value != "0" && !value.eq_ignore_ascii_case("false")
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The metadata-only form of an object.
pub fn partial_metadata(obj: &Value) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_bodies_are_bad_requests() {
        let e = decode_body("application/json", b"{nope").unwrap_err();
        assert_eq!(e.code().as_u16(), 400);
        let e = decode_body("application/yaml", b"a: [").unwrap_err();
        assert_eq!(e.code().as_u16(), 400);
        let v = decode_body("application/apply-patch+yaml", b"a: 1\n").unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn kubectl_get_accept_header_selects_tables() {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(rendering(accept).unwrap(), Rendering::Table);
        assert_eq!(rendering("application/json").unwrap(), Rendering::Object);
        assert_eq!(rendering("").unwrap(), Rendering::Object);
        assert!(rendering("application/vnd.kubernetes.protobuf").is_err());
        assert_eq!(
            rendering("application/vnd.kubernetes.protobuf, application/json").unwrap(),
            Rendering::Object
        );
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%29&watch=true&x",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert!(q.flag("x"));
        assert!(!q.flag("absent"));
        let q = Query::parse(Some("watch=True&a=FALSE&b=0"));
        assert!(q.flag("watch"));
        assert!(!q.flag("a"));
        assert!(!q.flag("b"));
        assert_eq!(Query::parse(Some("a=%zz%")).get("a"), Some("%zz%"));
    }
}
