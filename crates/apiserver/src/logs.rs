//! `pods/log`: a container's log, proxied from the kubelet of the pod's node.
//!
//! As upstream's `LogREST`: the query string becomes `PodLogOptions`
//! ([`LogOptions::from_query`]; unparsable numbers and times are 400s), which
//! are validated ([`LogOptions::validate`]; 422 `PodLogOptions "web" is
//! invalid`). The container is the one asked for or the pod's only one
//! ([`choose_container`]). The pod's node names the kubelet
//! ([`preferred_addresses`], [`kubelet_port`]), and the kubelet's
//! `/containerLogs/{ns}/{pod}/{container}` answer ([`LogOptions::kubelet_query`])
//! is streamed back as `text/plain`, chunk by chunk. Kubelet errors become
//! `Status`es as upstream's generic response checker words them
//! ([`kubelet_error`]). A pod not yet on a node has no log: upstream answers
//! its empty location with 204 No Content, and so does this.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::codec::Query;
use crate::error::{ApiError, ApiResult, Cause, Subject};
use crate::kubelet_client::KubeletClient;
use crate::registry::Registry;

/// Upstream's default `--kubelet-preferred-address-types`.
pub const PREFERRED_ADDRESS_TYPES: &[&str] = &[
    "Hostname",
    "InternalDNS",
    "InternalIP",
    "ExternalDNS",
    "ExternalIP",
];

/// The kubelet port when a node does not report one (`--kubelet-port`).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// How much of a kubelet's error body is relayed (upstream's `maxReadLength`).
pub const MAX_ERROR_BODY: usize = 50_000;

/// `PodLogOptions` as the query string gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<DateTime<Utc>>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
    /// Accepted and honoured trivially: kubelet serving certificates are
    /// never verified (upstream's default without
    /// `--kubelet-certificate-authority`).
    pub insecure_skip_tls_verify_backend: bool,
    /// Stream selection (`PodLogsQuerySplitStreams`, off upstream by
    /// default): present only to be refused.
    pub stream: Option<String>,
}

/// An integer query parameter, converted as upstream (`strconv.ParseInt`).
fn int_param(query: &Query, key: &str) -> ApiResult<Option<i64>> {
    let Some(raw) = query.get(key) else {
        return Ok(None);
    };
    raw.parse::<i64>().map(Some).map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        ApiError::bad_request(format!("strconv.ParseInt: parsing \"{raw}\": {why}"))
    })
}

/// `metav1.Time` from a query parameter: RFC 3339; empty (or `null`) is the
/// zero time, as upstream's `UnmarshalQueryParameter`.
fn time_param(query: &Query, key: &str) -> ApiResult<Option<DateTime<Utc>>> {
    let Some(raw) = query.get(key) else {
        return Ok(None);
    };
    if raw.is_empty() || raw == "null" {
        return Ok(Some(zero_time()));
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|e| {
            ApiError::bad_request(format!(
                "parsing time \"{raw}\" as \"2006-01-02T15:04:05Z07:00\": {e}"
            ))
        })
}

/// Go's zero `time.Time`: 0001-01-01T00:00:00Z.
fn zero_time() -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl LogOptions {
    /// Convert the query string (a 400 for what does not convert).
    pub fn from_query(query: &Query) -> ApiResult<LogOptions> {
        Ok(LogOptions {
            container: query.get("container").unwrap_or("").to_string(),
            follow: query.flag("follow"),
            previous: query.flag("previous"),
            timestamps: query.flag("timestamps"),
            since_seconds: int_param(query, "sinceSeconds")?,
            since_time: time_param(query, "sinceTime")?,
            tail_lines: int_param(query, "tailLines")?,
            limit_bytes: int_param(query, "limitBytes")?,
            insecure_skip_tls_verify_backend: query.flag("insecureSkipTLSVerifyBackend"),
            stream: query.get("stream").map(str::to_string),
        })
    }

    /// Upstream's `ValidatePodLogOptions`, as a 422 on `PodLogOptions`.
    pub fn validate(&self, pod_name: &str) -> ApiResult<()> {
        let mut causes = Vec::new();
        if let Some(n) = self.tail_lines.filter(|n| *n < 0) {
            causes.push(Cause::invalid_raw(
                "tailLines",
                &n.to_string(),
                "must be greater than or equal to 0",
            ));
        }
        if let Some(n) = self.limit_bytes.filter(|n| *n < 1) {
            causes.push(Cause::invalid_raw(
                "limitBytes",
                &n.to_string(),
                "must be greater than 0",
            ));
        }
        match (self.since_seconds, self.since_time) {
            (Some(_), Some(_)) => causes.push(Cause::forbidden(
                "",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            )),
            (Some(n), None) if n < 1 => causes.push(Cause::invalid_raw(
                "sinceSeconds",
                &n.to_string(),
                "must be greater than 0",
            )),
            _ => {}
        }
        if self.stream.is_some() {
            causes.push(Cause::forbidden("stream", "may not be specified"));
        }
        if causes.is_empty() {
            return Ok(());
        }
        Err(ApiError::invalid(
            "PodLogOptions",
            Subject {
                group: String::new(),
                resource: "PodLogOptions".into(),
                name: pod_name.to_string(),
            },
            causes,
        ))
    }

    /// The kubelet's query string: the set options under the kubelet API's
    /// names, keys sorted and values escaped as Go's `url.Values.Encode`.
    pub fn kubelet_query(&self) -> String {
        let mut params: Vec<(&str, String)> = Vec::new();
        if self.follow {
            params.push(("follow", "true".into()));
        }
        if self.previous {
            params.push(("previous", "true".into()));
        }
        if self.timestamps {
            params.push(("timestamps", "true".into()));
        }
        if let Some(n) = self.since_seconds {
            params.push(("sinceSeconds", n.to_string()));
        }
        if let Some(t) = self.since_time {
            params.push(("sinceTime", t.to_rfc3339_opts(SecondsFormat::Secs, true)));
        }
        if let Some(n) = self.tail_lines {
            params.push(("tailLines", n.to_string()));
        }
        if let Some(n) = self.limit_bytes {
            params.push(("limitBytes", n.to_string()));
        }
        params.sort_by(|a, b| a.0.cmp(b.0));
        params
            .iter()
            .map(|(k, v)| format!("{k}={}", query_escape(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Go's `url.QueryEscape` for the characters option values can hold.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Container names in upstream's visiting order: init, regular, ephemeral.
fn container_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| {
            pod.pointer(&format!("/spec/{list}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
        })
        .collect()
}

/// The container whose log is read: the requested one if the pod has it
/// (any kind), else the pod's only regular container (upstream's
/// `validateContainer`). kubectl's `default-container` annotation is a
/// client-side choice upstream: kubectl sends `container` itself.
pub fn choose_container(pod: &Value, requested: &str) -> ApiResult<String> {
    let pod_name = api::meta::name(pod).unwrap_or("");
    if !requested.is_empty() {
        if container_names(pod).contains(&requested) {
            return Ok(requested.to_string());
        }
        return Err(ApiError::bad_request(format!(
            "container {requested} is not valid for pod {pod_name}"
        )));
    }
    let regular: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    match regular.as_slice() {
        [only] => Ok((*only).to_string()),
        [] => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            container_names(pod).join(" ")
        ))),
    }
}

/// A node's addresses in upstream's preference order, the first of each
/// type. Upstream dials only the first; the caller falls back to the next
/// when a name does not resolve.
pub fn preferred_addresses(node: &Value) -> Vec<String> {
    let addresses: Vec<(&str, &str)> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some((
                a.get("type").and_then(Value::as_str)?,
                a.get("address").and_then(Value::as_str)?,
            ))
        })
        .collect();
    PREFERRED_ADDRESS_TYPES
        .iter()
        .filter_map(|t| addresses.iter().find(|(ty, _)| ty == t))
        .map(|(_, address)| (*address).to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

/// Upstream's `NoMatchError`, with Go's `%v` of the known addresses.
pub fn no_address_message(node: &Value) -> String {
    let known: Vec<String> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{{{} {}}}",
                a.get("type").and_then(Value::as_str).unwrap_or(""),
                a.get("address").and_then(Value::as_str).unwrap_or("")
            )
        })
        .collect();
    format!(
        "no preferred addresses found; known addresses: [{}]",
        known.join(" ")
    )
}

/// The kubelet's port as the node reports it, else the default.
pub fn kubelet_port(node: &Value) -> u16 {
    node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT)
}

/// Upstream's reason-less 500 for a failure that is not an API error
/// (kubectl prints it as `Error from server: ...`).
pub fn unknown_error(message: impl Into<String>) -> ApiError {
    ApiError::Relayed {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        reason: "",
        message: message.into(),
        details: None,
    }
}

/// A kubelet's non-2xx answer as upstream's `GenericHttpResponseChecker`
/// turns it into a `Status` (the body, cut at [`MAX_ERROR_BODY`], is the
/// message or the cause).
pub fn kubelet_error(code: u16, body: &str, pod_name: &str) -> ApiError {
    match code {
        500 => ApiError::Internal {
            message: format!("Internal error occurred: {body}"),
        },
        400 => ApiError::bad_request(body),
        _ => {
            let (reason, generic) = match code {
                404 => ("NotFound", "the server could not find the requested resource".to_string()),
                409 => ("Conflict", "the server reported a conflict".to_string()),
                401 => ("Unauthorized", "the server has asked for the client to provide credentials".to_string()),
                403 => ("Forbidden", body.to_string()),
                405 => ("MethodNotAllowed", "the server does not allow this method on the requested resource".to_string()),
                422 => ("Invalid", "the server rejected our request due to an error in our request".to_string()),
                429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later".to_string()),
                503 => ("ServiceUnavailable", "the server is currently unable to handle the request".to_string()),
                504 => ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request".to_string()),
                c if c >= 500 => ("InternalError", format!("an error on the server ({body:?}) has prevented the request from succeeding")),
                c => ("", format!("the server responded with the status code {c} but did not return more information")),
            };
            ApiError::Relayed {
                code: StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
                reason,
                message: format!("{generic} ( pods/log {pod_name})"),
                details: Some(json!({
                    "name": pod_name,
                    "kind": "pods/log",
                    "causes": [{"reason": "UnexpectedServerResponse", "message": body}],
                })),
            }
        }
    }
}

/// Serve `GET pods/{name}/log`.
pub async fn serve(
    registry: &Registry,
    kubelet: &KubeletClient,
    namespace: Option<&str>,
    name: &str,
    query: &Query,
) -> ApiResult<Response> {
    let options = LogOptions::from_query(query)?;
    options.validate(name)?;
    let pods = api::resources::find("", "v1", "pods").expect("in table");
    let pod = registry.get(pods, namespace, name).await?;
    let container = choose_container(&pod, &options.container)?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node_name.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let nodes = api::resources::find("", "v1", "nodes").expect("in table");
    let node = registry.get(nodes, None, node_name).await?;
    let hosts = preferred_addresses(&node);
    if hosts.is_empty() {
        return Err(unknown_error(no_address_message(&node)));
    }
    let mut path = format!(
        "/containerLogs/{}/{name}/{container}",
        namespace.unwrap_or("")
    );
    let q = options.kubelet_query();
    if !q.is_empty() {
        path.push('?');
        path.push_str(&q);
    }
    let answer = kubelet
        .get(&hosts, kubelet_port(&node), &path)
        .await
        .map_err(unknown_error)?;
    let status = answer.status;
    if !(200..=206).contains(&status) {
        let body = answer.read_prefix(MAX_ERROR_BODY).await;
        return Err(kubelet_error(status, &String::from_utf8_lossy(&body), name));
    }
    let mut response = Response::new(axum::body::Body::from_stream(answer.into_stream()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Query {
        Query::parse(Some(raw))
    }

    #[test]
    fn options_convert_from_the_query_string() {
        let o = LogOptions::from_query(&q(
            "container=app&follow=true&previous=1&timestamps=false&tailLines=10&limitBytes=5&sinceSeconds=30",
        ))
        .unwrap();
        assert_eq!(o.container, "app");
        assert!(o.follow && o.previous && !o.timestamps);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(10), Some(5)));
        assert_eq!(o.since_seconds, Some(30));
        let t = LogOptions::from_query(&q("sinceTime=2024-05-01T10%3A00%3A00Z")).unwrap();
        assert_eq!(
            t.since_time
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            "2024-05-01T10:00:00Z"
        );
    }

    #[test]
    fn unconvertible_values_are_bad_requests() {
        let e = LogOptions::from_query(&q("tailLines=ten")).unwrap_err();
        assert_eq!(e.code(), StatusCode::BAD_REQUEST);
        assert_eq!(
            e.to_string(),
            "strconv.ParseInt: parsing \"ten\": invalid syntax"
        );
        let e = LogOptions::from_query(&q("limitBytes=99999999999999999999")).unwrap_err();
        assert!(e.to_string().ends_with("value out of range"));
        let e = LogOptions::from_query(&q("sinceTime=yesterday")).unwrap_err();
        assert_eq!(e.code(), StatusCode::BAD_REQUEST);
        assert!(e.to_string().starts_with("parsing time \"yesterday\""));
    }

    #[test]
    fn validation_reads_like_upstream() {
        let both = LogOptions::from_query(&q("sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z"))
            .unwrap()
            .validate("web")
            .unwrap_err();
        assert_eq!(both.code(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            both.to_string(),
            "PodLogOptions \"web\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
        );
        let negative = LogOptions::from_query(&q("tailLines=-1&limitBytes=0&sinceSeconds=0"))
            .unwrap()
            .validate("web")
            .unwrap_err();
        assert_eq!(
            negative.to_string(),
            "PodLogOptions \"web\" is invalid: [tailLines: Invalid value: -1: must be greater than or equal to 0, \
             limitBytes: Invalid value: 0: must be greater than 0, sinceSeconds: Invalid value: 0: must be greater than 0]"
        );
        assert_eq!(negative.status()["details"]["kind"], "PodLogOptions");
        assert!(LogOptions::from_query(&q("stream=All"))
            .unwrap()
            .validate("web")
            .is_err());
        assert!(LogOptions::from_query(&q("tailLines=0&follow=true"))
            .unwrap()
            .validate("web")
            .is_ok());
    }

    #[test]
    fn the_kubelet_query_has_sorted_escaped_set_options_only() {
        let o = LogOptions::from_query(&q(
            "container=c&follow=true&timestamps=true&tailLines=3&sinceTime=2024-01-01T00:00:00Z&insecureSkipTLSVerifyBackend=true",
        ))
        .unwrap();
        assert_eq!(
            o.kubelet_query(),
            "follow=true&sinceTime=2024-01-01T00%3A00%3A00Z&tailLines=3&timestamps=true"
        );
        assert_eq!(LogOptions::default().kubelet_query(), "");
        let z = LogOptions::from_query(&q("sinceTime=")).unwrap();
        assert_eq!(z.kubelet_query(), "sinceTime=0001-01-01T00%3A00%3A00Z");
    }

    fn pod(containers: &[&str], init: &[&str]) -> Value {
        let list = |names: &[&str]| names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        json!({
            "metadata": {"name": "web"},
            "spec": {"containers": list(containers), "initContainers": list(init)},
        })
    }

    #[test]
    fn the_only_container_is_chosen_and_others_must_be_named() {
        assert_eq!(choose_container(&pod(&["app"], &[]), "").unwrap(), "app");
        let e = choose_container(&pod(&["a", "b"], &["setup"]), "").unwrap_err();
        assert_eq!(e.code(), StatusCode::BAD_REQUEST);
        assert_eq!(
            e.to_string(),
            "a container name must be specified for pod web, choose one of: [setup a b]"
        );
        assert_eq!(
            choose_container(&pod(&["a", "b"], &["setup"]), "setup").unwrap(),
            "setup"
        );
        assert_eq!(
            choose_container(&pod(&["a"], &[]), "x")
                .unwrap_err()
                .to_string(),
            "container x is not valid for pod web"
        );
        assert_eq!(
            choose_container(&pod(&[], &[]), "")
                .unwrap_err()
                .to_string(),
            "a container name must be specified for pod web"
        );
    }

    #[test]
    fn addresses_follow_the_preference_order_and_the_port_defaults() {
        let node = json!({"status": {
            "addresses": [
                {"type": "ExternalIP", "address": "203.0.113.9"},
                {"type": "InternalIP", "address": "10.0.0.4"},
                {"type": "Hostname", "address": "node-a"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10555}},
        }});
        assert_eq!(
            preferred_addresses(&node),
            vec!["node-a", "10.0.0.4", "203.0.113.9"]
        );
        assert_eq!(kubelet_port(&node), 10555);
        let bare = json!({"status": {"addresses": []}});
        assert!(preferred_addresses(&bare).is_empty());
        assert_eq!(kubelet_port(&bare), DEFAULT_KUBELET_PORT);
        assert_eq!(
            no_address_message(
                &json!({"status": {"addresses": [{"type": "Weird", "address": "x"}]}})
            ),
            "no preferred addresses found; known addresses: [{Weird x}]"
        );
    }

    #[test]
    fn kubelet_errors_become_statuses_as_upstream() {
        let nf = kubelet_error(404, "no such container", "web");
        assert_eq!(nf.code(), StatusCode::NOT_FOUND);
        assert_eq!(
            nf.to_string(),
            "the server could not find the requested resource ( pods/log web)"
        );
        let s = nf.status();
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["details"]["causes"][0]["message"], "no such container");
        let bad = kubelet_error(400, "container \"c\" is waiting to start", "web");
        assert_eq!(bad.to_string(), "container \"c\" is waiting to start");
        let internal = kubelet_error(500, "boom", "web");
        assert_eq!(internal.to_string(), "Internal error occurred: boom");
        let unknown = unknown_error("dial tcp 127.0.0.1:1: connect: connection refused");
        assert_eq!(unknown.code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(unknown.status().get("reason").is_none());
    }
}
