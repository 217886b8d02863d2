//! Bootstrap tokens, as upstream's bootstrap token authenticator
//! (`plugin/pkg/auth/authenticator/token/bootstrap`): a bearer token
//! `<id>.<secret>` (6 and 16 characters of `[a-z0-9]`) is valid while the
//! Secret `kube-system/bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token` holds the same secret, allows
//! authentication (`usage-bootstrap-authentication: "true"`) and has not
//! expired. The caller is `system:bootstrap:<id>` in the groups
//! `system:bootstrappers` plus the Secret's `auth-extra-groups` (each must
//! start with `system:bootstrappers:`). A joining node uses one to ask for
//! its own credential (a CertificateSigningRequest).

use base64::Engine;
use serde_json::Value;

use crate::auth::UserInfo;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
pub const GROUP: &str = "system:bootstrappers";

/// `(id, secret)` of a token in the bootstrap format, else None.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

/// The Secret's name for a token id.
pub fn secret_name(id: &str) -> String {
    format!("{SECRET_PREFIX}{id}")
}

fn data_field(secret: &Value, key: &str) -> Option<String> {
    let raw = secret.pointer(&format!("/data/{key}"))?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    String::from_utf8(bytes).ok()
}

/// Compares without an early exit, so timing says nothing of the secret.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Who `token` authenticates as, given the Secret found for its id.
pub fn user(token: &str, secret: &Value, now: chrono::DateTime<chrono::Utc>) -> Option<UserInfo> {
    let (id, token_secret) = parse(token)?;
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE)
        || secret.pointer("/metadata/deletionTimestamp").is_some()
    {
        return None;
    }
    if data_field(secret, "token-id").as_deref() != Some(id)
        || !same(&data_field(secret, "token-secret")?, token_secret)
        || data_field(secret, "usage-bootstrap-authentication").as_deref() != Some("true")
    {
        return None;
    }
    if let Some(expiration) = data_field(secret, "expiration") {
        let at = chrono::DateTime::parse_from_rfc3339(&expiration).ok()?;
        if at <= now {
            return None;
        }
    }
    let mut groups = vec![GROUP.to_string()];
    if let Some(extra) = data_field(secret, "auth-extra-groups") {
        for g in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
            // Upstream rejects the token when an extra group is not a
            // bootstrappers subgroup.
            if !g.starts_with("system:bootstrappers:") {
                return None;
            }
            groups.push(g.to_string());
        }
    }
    groups.push("system:authenticated".into());
    Some(UserInfo {
        name: format!("system:bootstrap:{id}"),
        uid: String::new(),
        groups,
    })
}

/// A bootstrap token Secret, for whoever creates tokens (`tugboat server
/// --agent-token-file`); `ttl` None: no expiry.
pub fn secret(
    id: &str,
    token_secret: &str,
    description: &str,
    expiration: Option<chrono::DateTime<chrono::Utc>>,
) -> Value {
    let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut data = serde_json::json!({
        "token-id": enc(id),
        "token-secret": enc(token_secret),
        "usage-bootstrap-authentication": enc("true"),
        "usage-bootstrap-signing": enc("true"),
        "description": enc(description),
    });
    if let Some(at) = expiration {
        data["expiration"] = Value::String(enc(&at.format("%Y-%m-%dT%H:%M:%SZ").to_string()));
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(id), "namespace": "kube-system"},
        "type": SECRET_TYPE,
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> chrono::DateTime<chrono::Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn only_the_bootstrap_shape_is_a_bootstrap_token() {
        assert_eq!(
            parse("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        for bad in [
            "abcdef",
            "abcde.0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdeg.x",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_matching_live_secret_authenticates_the_token() {
        let s = secret("abcdef", "0123456789abcdef", "join", None);
        let u = user("abcdef.0123456789abcdef", &s, now()).unwrap();
        assert_eq!(u.name, "system:bootstrap:abcdef");
        assert_eq!(u.groups, ["system:bootstrappers", "system:authenticated"]);
        assert!(
            user("abcdef.0123456789abcdee", &s, now()).is_none(),
            "wrong secret"
        );
    }

    #[test]
    fn expired_unusable_or_odd_secrets_do_not() {
        let expired = secret(
            "abcdef",
            "0123456789abcdef",
            "",
            Some("2025-12-31T23:00:00Z".parse().unwrap()),
        );
        assert!(user("abcdef.0123456789abcdef", &expired, now()).is_none());
        let live = secret(
            "abcdef",
            "0123456789abcdef",
            "",
            Some("2026-01-02T00:00:00Z".parse().unwrap()),
        );
        assert!(user("abcdef.0123456789abcdef", &live, now()).is_some());
        let mut no_auth = secret("abcdef", "0123456789abcdef", "", None);
        no_auth["data"]["usage-bootstrap-authentication"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode("false"));
        assert!(user("abcdef.0123456789abcdef", &no_auth, now()).is_none());
        let mut wrong_type = secret("abcdef", "0123456789abcdef", "", None);
        wrong_type["type"] = "Opaque".into();
        assert!(user("abcdef.0123456789abcdef", &wrong_type, now()).is_none());
        let mut extra = secret("abcdef", "0123456789abcdef", "", None);
        extra["data"]["auth-extra-groups"] = Value::String(
            base64::engine::general_purpose::STANDARD.encode("system:bootstrappers:tugboat:agents"),
        );
        assert_eq!(
            user("abcdef.0123456789abcdef", &extra, now())
                .unwrap()
                .groups[1],
            "system:bootstrappers:tugboat:agents"
        );
        extra["data"]["auth-extra-groups"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode("system:masters"));
        assert!(
            user("abcdef.0123456789abcdef", &extra, now()).is_none(),
            "no escalation through extra groups"
        );
    }
}
