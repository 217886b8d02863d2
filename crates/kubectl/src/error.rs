//! Errors rendered the way kubectl renders them: `Error from server
//! (NotFound): pods "x" not found` for API failures, `error: ...` for
//! everything decided on the client. Either way the exit status is 1.

use std::fmt;

/// A failed command.
#[derive(Debug, Clone, PartialEq)]
pub enum CliError {
    /// The server answered with a failure `Status`.
    Server { reason: String, message: String },
    /// Anything else: bad flags, unreadable files, connection failures.
    Client(String),
    /// A message printed exactly as is (kubectl's "The X \"y\" is invalid").
    Plain(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Server { reason, message } if reason.is_empty() => {
                write!(f, "Error from server: {message}")
            }
            CliError::Server { reason, message } => {
                write!(f, "Error from server ({reason}): {message}")
            }
            CliError::Client(m) => write!(f, "error: {m}"),
            CliError::Plain(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// A client-side error.
    pub fn client(m: impl fmt::Display) -> CliError {
        CliError::Client(m.to_string())
    }

    /// Is this the server's NotFound?
    pub fn is_not_found(&self) -> bool {
        matches!(self, CliError::Server { reason, .. } if reason == "NotFound")
    }

    /// Is this the server's AlreadyExists?
    pub fn is_already_exists(&self) -> bool {
        matches!(self, CliError::Server { reason, .. } if reason == "AlreadyExists")
    }
}

impl From<kube::Error> for CliError {
    fn from(e: kube::Error) -> CliError {
        match e {
            kube::Error::Api(s) => from_status(&s),
            other => CliError::Client(other.to_string()),
        }
    }
}

/// kubectl's rendering of a failure Status: Invalid lists its causes
/// under "The Kind \"name\" is invalid", Unauthorized asks to log in,
/// everything else is "Error from server (Reason): message".
pub fn from_status(s: &kube::core::Status) -> CliError {
    match (s.reason.as_str(), &s.details) {
        ("Unauthorized", _) => CliError::Plain(format!(
            "error: You must be logged in to the server ({})",
            s.message
        )),
        ("Invalid", Some(d)) => {
            let head = if d.kind.is_empty() && d.name.is_empty() {
                "The request is invalid".to_string()
            } else {
                format!("The {} {:?} is invalid", d.kind, d.name)
            };
            let causes: Vec<String> = d
                .causes
                .iter()
                .map(|c| {
                    if c.field.is_empty() {
                        c.message.clone()
                    } else {
                        format!("{}: {}", c.field, c.message)
                    }
                })
                .collect();
            CliError::Plain(match causes.as_slice() {
                [] => head,
                [one] => format!("{head}: {one}"),
                many => format!("{head}: \n* {}", many.join("\n* ")),
            })
        }
        _ => CliError::Server {
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
    }
}

impl From<kube::core::request::Error> for CliError {
    fn from(e: kube::core::request::Error) -> CliError {
        CliError::Client(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader went away: nothing left to say.
            return CliError::Plain(String::new());
        }
        CliError::Client(e.to_string())
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> CliError {
        CliError::Client(e.to_string())
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_render_like_kubectl() {
        let cases = [
            (
                CliError::Server {
                    reason: "NotFound".into(),
                    message: "pods \"x\" not found".into(),
                },
                "Error from server (NotFound): pods \"x\" not found",
            ),
            (
                CliError::Server {
                    reason: String::new(),
                    message: "boom".into(),
                },
                "Error from server: boom",
            ),
            (
                CliError::client("the server doesn't have a resource type \"x\""),
                "error: the server doesn't have a resource type \"x\"",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
        assert!(cases_not_found());
        let invalid: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "reason": "Invalid", "code": 422, "message": "long",
            "details": {"name": "web", "kind": "Deployment", "causes": [
                {"reason": "FieldValueInvalid", "message": "bad", "field": "spec.replicas"}]}
        }))
        .unwrap();
        assert_eq!(
            from_status(&invalid).to_string(),
            "The Deployment \"web\" is invalid: spec.replicas: bad"
        );
    }

    fn cases_not_found() -> bool {
        CliError::Server {
            reason: "NotFound".into(),
            message: String::new(),
        }
        .is_not_found()
            && !CliError::client("x").is_not_found()
    }
}
