//! API errors and their `Status` bodies.
//!
//! Every failure a client can see is an [`ApiError`]; it renders as a
//! `meta.k8s.io/v1` `Status` with the HTTP code and `reason` upstream uses, so
//! kubectl prints the familiar `Error from server (NotFound): ...` lines.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// One field-level cause of an `Invalid` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`,
    /// `FieldValueDuplicate`, `FieldValueForbidden`, ...
    pub reason: String,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub fn required(field: &str) -> Self {
        Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: field.into(),
        }
    }

    pub fn invalid(field: &str, value: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: \"{value}\": {detail}"),
            field: field.into(),
        }
    }

    /// An invalid value already spelled as upstream prints it (Go's `%#v`:
    /// numbers bare, maps as `map[string]string{"k":"v"}`).
    pub fn invalid_raw(field: &str, value: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {value}: {detail}"),
            field: field.into(),
        }
    }

    pub fn forbidden(field: &str, detail: &str) -> Self {
        Cause {
            reason: "FieldValueForbidden".into(),
            message: format!("Forbidden: {detail}"),
            field: field.into(),
        }
    }
}

/// What the resource in an error is, for `details`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub group: String,
    /// The plural resource name, as upstream puts it in `details.kind`.
    pub resource: String,
    pub name: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String },
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{message}")]
    Forbidden { message: String },
    #[error("{message}")]
    NotFound { message: String, subject: Subject },
    #[error("{message}")]
    AlreadyExists { message: String, subject: Subject },
    #[error("{message}")]
    Conflict {
        message: String,
        subject: Subject,
        causes: Vec<Cause>,
    },
    #[error("{message}")]
    Gone { message: String },
    #[error("{message}")]
    Invalid {
        message: String,
        subject: Subject,
        kind: String,
        causes: Vec<Cause>,
    },
    #[error("{message}")]
    MethodNotAllowed { message: String },
    #[error("{message}")]
    NotAcceptable { message: String },
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    #[error("{message}")]
    RequestEntityTooLarge { message: String },
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u32 },
    #[error("{message}")]
    Internal { message: String },
    #[error("{message}")]
    Timeout { message: String },
    /// A `Status` spelled out in full: a kubelet's answer relayed as
    /// upstream's response checker words it, or upstream's reason-less 500
    /// for a failure that is not an API error (an unreachable kubelet).
    #[error("{message}")]
    Relayed {
        code: StatusCode,
        reason: &'static str,
        message: String,
        details: Option<Value>,
    },
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Upstream's `"{resource}.{group} \"{name}\""` qualified-resource spelling.
fn qualified(subject: &Subject) -> String {
    if subject.group.is_empty() {
        subject.resource.clone()
    } else {
        format!("{}.{}", subject.resource, subject.group)
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        ApiError::Internal {
            message: message.to_string(),
        }
    }

    pub fn not_found(subject: Subject) -> Self {
        ApiError::NotFound {
            message: format!("{} \"{}\" not found", qualified(&subject), subject.name),
            subject,
        }
    }

    pub fn already_exists(subject: Subject) -> Self {
        ApiError::AlreadyExists {
            message: format!(
                "{} \"{}\" already exists",
                qualified(&subject),
                subject.name
            ),
            subject,
        }
    }

    /// The optimistic-concurrency conflict kubectl retries on.
    pub fn stale(subject: Subject) -> Self {
        ApiError::Conflict {
            message: format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(&subject),
                subject.name
            ),
            subject,
            causes: Vec::new(),
        }
    }

    pub fn conflict(subject: Subject, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            message: message.into(),
            subject,
            causes: Vec::new(),
        }
    }

    pub fn invalid(kind: &str, subject: Subject, causes: Vec<Cause>) -> Self {
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        ApiError::Invalid {
            message: format!(
                "{kind}.{} \"{}\" is invalid: {summary}",
                group_or_core(&subject),
                subject.name
            )
            .replace(".core \"", " \""),
            kind: kind.to_string(),
            subject,
            causes,
        }
    }

    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::Gone {
            message: message.into(),
        }
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::MethodNotAllowed {
            message: message.into(),
        }
    }

    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable { .. } => StatusCode::NOT_ACCEPTABLE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestEntityTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Relayed { code, .. } => *code,
        }
    }

    /// Upstream's `StatusReason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::NotFound { .. } => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Gone { .. } => "Expired",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ApiError::NotAcceptable { .. } => "NotAcceptable",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::RequestEntityTooLarge { .. } => "RequestEntityTooLarge",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Internal { .. } => "InternalError",
            ApiError::Timeout { .. } => "Timeout",
            ApiError::Relayed { reason, .. } => reason,
        }
    }

    /// The `Status` object for this error.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        let details = match self {
            ApiError::NotFound { subject, .. } | ApiError::AlreadyExists { subject, .. } => {
                Some(details(subject, &[]))
            }
            ApiError::Conflict {
                subject, causes, ..
            } => Some(details(subject, causes)),
            ApiError::Invalid {
                subject,
                causes,
                kind,
                ..
            } => {
                let mut d = details(subject, causes);
                d["kind"] = json!(kind);
                Some(d)
            }
            ApiError::TooManyRequests { retry_after, .. } if *retry_after > 0 => {
                Some(json!({"retryAfterSeconds": retry_after}))
            }
            ApiError::Relayed { details, .. } => details.clone(),
            _ => None,
        };
        // Upstream omits an empty (unknown) reason.
        if self.reason().is_empty() {
            if let Some(map) = status.as_object_mut() {
                map.remove("reason");
            }
        }
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

fn group_or_core(subject: &Subject) -> &str {
    if subject.group.is_empty() {
        "core"
    } else {
        &subject.group
    }
}

fn details(subject: &Subject, causes: &[Cause]) -> Value {
    let mut d = json!({"name": subject.name, "kind": subject.resource});
    if !subject.group.is_empty() {
        d["group"] = json!(subject.group);
    }
    if !causes.is_empty() {
        d["causes"] = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
    }
    d
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let mut response = (code, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let ApiError::TooManyRequests { retry_after, .. } = &self {
            if *retry_after == 0 {
                return response;
            }
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                headers.insert(http::header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<storage::Error> for ApiError {
    fn from(e: storage::Error) -> Self {
        match e {
            storage::Error::Expired { .. } => ApiError::gone(format!(
                "The resourceVersion for the provided list is too old. ({e})"
            )),
            storage::Error::FutureRevision { .. } => ApiError::Timeout {
                message: format!("Too large resource version: {e}"),
            },
            other => ApiError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Subject {
        Subject {
            group: String::new(),
            resource: "pods".into(),
            name: name.into(),
        }
    }

    #[test]
    fn not_found_reads_like_upstream() {
        let e = ApiError::not_found(pod("web"));
        let s = e.status();
        assert_eq!(s["message"], "pods \"web\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "pods");
    }

    #[test]
    fn invalid_lists_causes_with_fields() {
        let e = ApiError::invalid("Pod", pod("x"), vec![Cause::required("spec.containers")]);
        let s = e.status();
        assert_eq!(s["code"], 422);
        assert_eq!(
            s["message"],
            "Pod \"x\" is invalid: spec.containers: Required value"
        );
        assert_eq!(s["details"]["causes"][0]["field"], "spec.containers");
    }

    #[test]
    fn group_resources_are_qualified() {
        let e = ApiError::already_exists(Subject {
            group: "apps".into(),
            resource: "deployments".into(),
            name: "d".into(),
        });
        assert_eq!(e.to_string(), "deployments.apps \"d\" already exists");
        let inv = ApiError::invalid(
            "Deployment",
            Subject {
                group: "apps".into(),
                resource: "deployments".into(),
                name: "d".into(),
            },
            vec![Cause::required("spec.selector")],
        );
        assert_eq!(
            inv.to_string(),
            "Deployment.apps \"d\" is invalid: spec.selector: Required value"
        );
    }
}
