//! CertificateSigningRequests (`certificates.k8s.io/v1`), as upstream's
//! `pkg/registry/certificates` strategies and `pkg/apis/certificates`
//! validation treat them:
//! - on create the server records who asked (`spec.username`, `uid`,
//!   `groups`, `extra` come from the authenticated requester, never from
//!   the body) and clears `status`;
//! - the main endpoint changes metadata only: spec and status keep their
//!   stored values;
//! - `/approval` changes the conditions only (that is where `kubectl
//!   certificate approve|deny` writes `Approved` or `Denied`);
//! - `/status` is the signer's: the certificate and the other conditions,
//!   while the approval conditions keep their stored values;
//! - Approved and Denied exclude each other, and neither they nor Failed
//!   can be removed once set; an issued certificate cannot be changed.
//!
//! Pure functions over JSON objects; the registry calls them.

use serde_json::{json, Map, Value};

use crate::auth::UserInfo;
use crate::error::Cause;

pub const KIND: &str = "CertificateSigningRequest";

/// The key usages upstream accepts (`certificates.KeyUsage`).
const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// The conditions only `/approval` may set.
const APPROVAL: &[&str] = &["Approved", "Denied"];

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn condition_type(c: &Value) -> &str {
    c.get("type").and_then(Value::as_str).unwrap_or("")
}

fn set_conditions(obj: &mut Value, list: Vec<Value>) {
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    if list.is_empty() {
        if let Some(status) = obj["status"].as_object_mut() {
            status.remove("conditions");
        }
    } else {
        obj["status"]["conditions"] = Value::Array(list);
    }
}

/// Create: the requester goes into the spec, the status starts empty.
pub fn prepare_create(obj: &mut Value, requester: Option<&UserInfo>) {
    let Some(map) = obj.as_object_mut() else {
        // Not an object: validation rejects it with a 400.
        return;
    };
    let spec = map.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        *spec = json!({});
    }
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    for field in ["username", "uid", "groups", "extra"] {
        spec.remove(field);
    }
    if let Some(user) = requester {
        spec.insert("username".into(), json!(user.name));
        if !user.uid.is_empty() {
            spec.insert("uid".into(), json!(user.uid));
        }
        if !user.groups.is_empty() {
            spec.insert("groups".into(), json!(user.groups));
        }
    }
    if let Some(map) = obj.as_object_mut() {
        map.insert("status".into(), json!({}));
    }
}

/// An update through `subresource` (None, `status` or `approval`): what
/// the write may change is taken from `new`, everything else from
/// `current`. Metadata is the registry's business.
pub fn prepare_update(subresource: Option<&str>, current: &Value, new: &mut Value) {
    new["spec"] = current.get("spec").cloned().unwrap_or(json!({}));
    match subresource {
        Some("approval") => {
            // The conditions change; the certificate stays.
            let wanted = conditions(new);
            new["status"] = current.get("status").cloned().unwrap_or(json!({}));
            set_conditions(new, wanted);
        }
        Some("status") => {
            // The signer's write: approval conditions stay as stored.
            let mut list: Vec<Value> = conditions(new)
                .into_iter()
                .filter(|c| !APPROVAL.contains(&condition_type(c)))
                .collect();
            list.extend(
                conditions(current)
                    .into_iter()
                    .filter(|c| APPROVAL.contains(&condition_type(c))),
            );
            set_conditions(new, list);
        }
        _ => {
            new["status"] = current.get("status").cloned().unwrap_or(json!({}));
        }
    }
    stamp_conditions(new, current);
}

/// New or changed conditions get `lastUpdateTime` (and
/// `lastTransitionTime`) as upstream's strategy stamps them.
fn stamp_conditions(new: &mut Value, current: &Value) {
    let old = conditions(current);
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut list = conditions(new);
    for c in &mut list {
        let Some(map) = c.as_object_mut() else {
            continue;
        };
        let before = old
            .iter()
            .find(|o| condition_type(o) == map.get("type").and_then(Value::as_str).unwrap_or(""));
        let unset = |m: &Map<String, Value>, k: &str| m.get(k).is_none_or(Value::is_null);
        if unset(map, "lastUpdateTime") {
            map.insert("lastUpdateTime".into(), json!(now));
        }
        if unset(map, "lastTransitionTime") {
            let same_status = before.is_some_and(|b| b.get("status") == map.get("status"));
            let carried = before.and_then(|b| b.get("lastTransitionTime")).cloned();
            match (same_status, carried) {
                (true, Some(t)) if !t.is_null() => map.insert("lastTransitionTime".into(), t),
                _ => map.insert("lastTransitionTime".into(), json!(now)),
            };
        }
    }
    if !list.is_empty() {
        set_conditions(new, list);
    }
}

/// The PEM blocks in `text`; an error when there is none or one is
/// malformed.
fn pem_blocks(text: &str) -> Result<Vec<x509_parser::pem::Pem>, String> {
    let blocks = x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{e}"))?;
    if blocks.is_empty() {
        return Err("no PEM block found".into());
    }
    Ok(blocks)
}

fn decode_base64_field(obj: &Value, pointer: &str) -> Option<Result<String, String>> {
    use base64::Engine;
    let raw = obj.pointer(pointer)?.as_str()?;
    if raw.is_empty() {
        return None;
    }
    Some(
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|e| format!("illegal base64 data: {e}"))
            .and_then(|b| String::from_utf8(b).map_err(|_| "not PEM text".to_string())),
    )
}

/// Upstream's `ValidateCertificateRequestName` + spec validation, for a
/// create.
pub fn validate_create(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match decode_base64_field(obj, "/spec/request") {
        None => causes.push(Cause::required("spec.request")),
        Some(Err(e)) => causes.push(Cause::invalid_raw("spec.request", "[]byte{...}", &e)),
        Some(Ok(text)) => match pem_blocks(&text) {
            Err(e) => causes.push(Cause::invalid_raw("spec.request", "[]byte{...}", &e)),
            Ok(blocks) => {
                if blocks.len() != 1 || blocks[0].label != "CERTIFICATE REQUEST" {
                    causes.push(Cause::invalid_raw(
                        "spec.request",
                        "[]byte{...}",
                        "PEM block type must be CERTIFICATE REQUEST",
                    ));
                } else if let Err(e) = parse_request(&blocks[0].contents) {
                    causes.push(Cause::invalid_raw("spec.request", "[]byte{...}", &e));
                }
            }
        },
    }
    let signer = obj
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if signer.is_empty() {
        causes.push(Cause::required("spec.signerName"));
    } else if let Some(problem) = signer_problem(signer) {
        causes.push(Cause::invalid("spec.signerName", signer, &problem));
    }
    match obj.pointer("/spec/usages").and_then(Value::as_array) {
        None => causes.push(Cause::required("spec.usages")),
        Some(list) if list.is_empty() => causes.push(Cause::required("spec.usages")),
        Some(list) => {
            let mut seen = Vec::new();
            for (i, u) in list.iter().enumerate() {
                let u = u.as_str().unwrap_or("");
                let field = format!("spec.usages[{i}]");
                if !USAGES.contains(&u) {
                    causes.push(not_supported(field, u, USAGES));
                } else if seen.contains(&u) {
                    causes.push(Cause {
                        reason: "FieldValueDuplicate".into(),
                        message: format!("Duplicate value: \"{u}\""),
                        field,
                    });
                } else {
                    seen.push(u);
                }
            }
        }
    }
    if let Some(secs) = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
    {
        if secs < 600 {
            causes.push(Cause::invalid_raw(
                "spec.expirationSeconds",
                &secs.to_string(),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
    causes.extend(validate_conditions(obj, None));
    causes
}

fn parse_request(der: &[u8]) -> Result<(), String> {
    use x509_parser::prelude::FromDer;
    x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map(|_| ())
        .map_err(|e| format!("{e}"))
}

/// Upstream's `NotSupported` error: the value and every supported one.
fn not_supported(field: String, value: &str, supported: &[&str]) -> Cause {
    let supported = supported
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Cause {
        reason: "FieldValueNotSupported".into(),
        message: format!("Unsupported value: \"{value}\": supported values: {supported}"),
        field,
    }
}

/// A signer name is `domain/path`: a DNS subdomain, a slash, and a path.
fn signer_problem(signer: &str) -> Option<String> {
    let Some((domain, path)) = signer.split_once('/') else {
        return Some(
            "must be a fully qualified domain and path of the form 'example.com/signer-name'"
                .into(),
        );
    };
    if domain.is_empty() || path.is_empty() || crate::strategy::dns1123_subdomain(domain).is_some()
    {
        return Some(
            "must be a fully qualified domain and path of the form 'example.com/signer-name'"
                .into(),
        );
    }
    None
}

/// Conditions and certificate rules; `current` is the stored object for
/// an update.
pub fn validate_conditions(obj: &Value, current: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let list = conditions(obj);
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let field = format!("status.conditions[{i}]");
        let kind = condition_type(c);
        if kind.is_empty() {
            causes.push(Cause::required(&format!("{field}.type")));
            continue;
        }
        if seen.contains(&kind) {
            causes.push(Cause {
                reason: "FieldValueDuplicate".into(),
                message: format!("Duplicate value: \"{kind}\""),
                field: format!("{field}.type"),
            });
        }
        seen.push(kind);
        let status = c.get("status").and_then(Value::as_str).unwrap_or("");
        let allowed: &[&str] = if APPROVAL.contains(&kind) || kind == "Failed" {
            &["True"]
        } else {
            &["True", "False", "Unknown"]
        };
        if status.is_empty() {
            causes.push(Cause::required(&format!("{field}.status")));
        } else if !allowed.contains(&status) {
            causes.push(not_supported(format!("{field}.status"), status, allowed));
        }
    }
    if seen.contains(&"Approved") && seen.contains(&"Denied") {
        causes.push(Cause::invalid_raw(
            "status.conditions",
            "[]certificates.CertificateSigningRequestCondition{...}",
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    if let Some(current) = current {
        for old in conditions(current) {
            let kind = condition_type(&old);
            if ["Approved", "Denied", "Failed"].contains(&kind) && !seen.contains(&kind) {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    &format!("updates may not remove a condition of type \"{kind}\""),
                ));
            }
        }
        let before = current
            .pointer("/status/certificate")
            .and_then(Value::as_str);
        let after = obj.pointer("/status/certificate").and_then(Value::as_str);
        if before.is_some_and(|b| !b.is_empty()) && before != after {
            causes.push(Cause::forbidden(
                "status.certificate",
                "updates may not modify existing certificate content",
            ));
        }
    }
    match decode_base64_field(obj, "/status/certificate") {
        None => {}
        Some(Err(e)) => causes.push(Cause::invalid_raw(
            "status.certificate",
            "\"<certificate data>\"",
            &e,
        )),
        Some(Ok(text)) => match pem_blocks(&text) {
            Ok(blocks) if blocks.iter().all(|b| b.label == "CERTIFICATE") => {}
            _ => causes.push(Cause::invalid_raw(
                "status.certificate",
                "\"<certificate data>\"",
                "must contain at least one CERTIFICATE PEM block",
            )),
        },
    }
    causes
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn csr_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n1");
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn valid() -> Value {
        json!({"metadata": {"name": "c"}, "spec": {
            "request": b64(&csr_pem()),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
        }})
    }

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn the_requester_is_recorded_and_the_body_cannot_claim_one() {
        let mut obj = valid();
        obj["spec"]["username"] = json!("admin");
        obj["spec"]["groups"] = json!(["system:masters"]);
        obj["status"] = json!({"certificate": "x"});
        let user = UserInfo {
            name: "system:bootstrap:abcdef".into(),
            uid: String::new(),
            groups: vec!["system:bootstrappers".into(), "system:authenticated".into()],
        };
        prepare_create(&mut obj, Some(&user));
        assert_eq!(obj["spec"]["username"], "system:bootstrap:abcdef");
        assert_eq!(obj["spec"]["groups"][0], "system:bootstrappers");
        assert!(obj["spec"].get("uid").is_none());
        assert_eq!(obj["status"], json!({}));
    }

    #[test]
    fn a_valid_request_passes_and_bad_ones_say_why() {
        assert!(
            validate_create(&valid()).is_empty(),
            "{:?}",
            messages(&validate_create(&valid()))
        );
        let cases: Vec<(Value, &str)> = vec![
            (json!({"spec": {}}), "spec.request: Required value"),
            (
                json!({"spec": {"request": b64("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}}),
                "PEM block type must be CERTIFICATE REQUEST",
            ),
            (json!({"spec": {"request": "!!"}}), "illegal base64 data"),
            (json!({"spec": {}}), "spec.signerName: Required value"),
            (json!({"spec": {"signerName": "nope"}}), "example.com/signer-name"),
            (json!({"spec": {}}), "spec.usages: Required value"),
            (
                json!({"spec": {"usages": ["client auth", "flying"]}}),
                "spec.usages[1]: Unsupported value: \"flying\"",
            ),
            (
                json!({"spec": {"usages": ["client auth", "client auth"]}}),
                "spec.usages[1]: Duplicate value",
            ),
            (
                json!({"spec": {"expirationSeconds": 60}}),
                "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds",
            ),
        ];
        for (patch, want) in cases {
            let mut obj = valid();
            for (k, v) in patch["spec"].as_object().unwrap() {
                obj["spec"][k] = v.clone();
            }
            if patch["spec"].as_object().unwrap().is_empty() {
                obj = patch.clone();
            }
            let got = messages(&validate_create(&obj));
            assert!(got.iter().any(|m| m.contains(want)), "{want}: got {got:?}");
        }
    }

    #[test]
    fn each_endpoint_changes_only_its_part() {
        let current = json!({"spec": {"signerName": "a/b", "username": "u"},
            "status": {"conditions": [{"type": "Approved", "status": "True", "lastUpdateTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}});
        // Main endpoint: neither spec nor status move.
        let mut new = json!({"spec": {"signerName": "x/y"}, "status": {"certificate": "Zm9v"}});
        prepare_update(None, &current, &mut new);
        assert_eq!(new["spec"], current["spec"]);
        assert_eq!(new["status"], current["status"]);
        // Approval: conditions only.
        let mut new = json!({"spec": {}, "status": {"certificate": "Zm9v", "conditions": [
            {"type": "Approved", "status": "True", "lastUpdateTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"},
            {"type": "Denied", "status": "True"}]}});
        prepare_update(Some("approval"), &current, &mut new);
        assert!(new["status"].get("certificate").is_none());
        assert_eq!(new["status"]["conditions"].as_array().unwrap().len(), 2);
        assert!(new["status"]["conditions"][1]["lastUpdateTime"].is_string());
        assert!(messages(&validate_conditions(&new, Some(&current)))
            .iter()
            .any(|m| m.contains("mutually exclusive")));
        // Status: the certificate; approval conditions stay as stored.
        let mut new = json!({"status": {"certificate": "Zm9v", "conditions": [{"type": "Failed", "status": "True"}]}});
        prepare_update(Some("status"), &current, &mut new);
        assert_eq!(new["status"]["certificate"], "Zm9v");
        let kinds: Vec<&str> = new["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(condition_type)
            .collect();
        assert_eq!(kinds, ["Failed", "Approved"]);
        assert_eq!(new["spec"], current["spec"]);
    }

    #[test]
    fn approvals_stay_and_certificates_are_written_once() {
        let cert = b64("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let current = json!({"status": {"certificate": cert, "conditions": [{"type": "Approved", "status": "True"}]}});
        let removed = json!({"status": {"certificate": cert}});
        assert!(messages(&validate_conditions(&removed, Some(&current)))
            .iter()
            .any(|m| m.contains("may not remove a condition of type \"Approved\"")));
        let changed = json!({"status": {"certificate": b64("-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"), "conditions": [{"type": "Approved", "status": "True"}]}});
        assert!(messages(&validate_conditions(&changed, Some(&current)))
            .iter()
            .any(|m| m.contains("may not modify existing certificate")));
        let not_pem = json!({"status": {"certificate": b64("hello")}});
        assert!(!validate_conditions(&not_pem, None).is_empty());
        let false_approval =
            json!({"status": {"conditions": [{"type": "Approved", "status": "False"}]}});
        assert!(messages(&validate_conditions(&false_approval, None))
            .iter()
            .any(|m| m.contains("Unsupported value: \"False\"")));
    }

    #[test]
    fn preparing_a_body_that_is_not_an_object_leaves_it_to_validation() {
        let mut body = json!(["not", "an", "object"]);
        prepare_create(&mut body, None);
        assert_eq!(body, json!(["not", "an", "object"]));
        let mut no_spec = json!({"metadata": {"name": "x"}});
        prepare_create(&mut no_spec, None);
        assert!(no_spec["spec"].is_object());
    }
}
