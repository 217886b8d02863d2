//! CertificateSigningRequest controllers, as upstream's
//! `pkg/controller/certificates`:
//! - **csrapproving**: approves kubelet client certificate requests
//!   (`kubernetes.io/kube-apiserver-client-kubelet`) that a bootstrapping
//!   node makes with a bootstrap token (group `system:bootstrappers`), or
//!   that a node makes to renew its own (`system:node:<name>` asking for
//!   itself). Upstream asks a SubjectAccessReview whether the requester may
//!   create `certificatesigningrequests/nodeclient` (or `selfnodeclient`);
//!   the default RBAC grants exactly these two, which is what is checked
//!   here. Anything else waits for a person (`kubectl certificate approve`).
//! - **csrsigning**: signs approved requests for the three built-in signers
//!   (`kube-apiserver-client`, `kube-apiserver-client-kubelet`,
//!   `kubelet-serving`) with the cluster CA (`--cluster-signing-cert-file`,
//!   `--cluster-signing-key-file`), after checking the request against the
//!   signer's rules; a request that breaks them gets a `Failed` condition
//!   instead. The certificate is backdated 5 minutes for clock skew and
//!   lives `--cluster-signing-duration` (or the shorter
//!   `spec.expirationSeconds`), never past the CA.
//!
//! Both are pure decisions over a parsed request ([`Request`]) plus a thin
//! executor.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use crate::context::Context;
use crate::framework::{forward, run_workers, Change, ObjectKey, Outcome, WorkQueue};

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";

/// The cluster CA the signer issues with.
#[derive(Clone)]
pub struct ClusterSigning {
    pub cert_pem: String,
    pub key_pem: String,
    /// `--cluster-signing-duration` (upstream: one year).
    pub duration: Duration,
}

impl std::fmt::Debug for ClusterSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSigning")
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

/// What a request asks for, read from its PEM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

/// Parses `spec.request` (PEM text).
pub fn parse_request(pem: &str) -> Result<Request, String> {
    use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension};
    let block = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .next()
        .ok_or("no PEM block")?
        .map_err(|e| e.to_string())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(format!("PEM block type is {}", block.label));
    }
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| e.to_string())?;
    let subject = &csr.certification_request_info.subject;
    let mut out = Request {
        common_name: subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .next()
            .unwrap_or("")
            .to_string(),
        organizations: subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect(),
        ..Default::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => out.dns_names.push(d.to_string()),
                    GeneralName::RFC822Name(e) => out.emails.push(e.to_string()),
                    GeneralName::URI(u) => out.uris.push(u.to_string()),
                    GeneralName::IPAddress(bytes) => out.ip_addresses.push(ip_text(bytes)),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()).to_string(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()).to_string(),
        _ => String::new(),
    }
}

fn has_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|list| list.iter().any(|c| c.type_ == kind))
}

fn is_issued(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

fn request_pem(csr: &CertificateSigningRequest) -> String {
    String::from_utf8_lossy(&csr.spec.request.0).into_owned()
}

fn usages(csr: &CertificateSigningRequest) -> Vec<&str> {
    csr.spec
        .usages
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(String::as_str)
        .collect()
}

/// Upstream's `IsKubeletClientCSR`: a node's client certificate.
fn kubelet_client_problem(req: &Request, usages: &[&str]) -> Option<String> {
    if req.organizations != ["system:nodes"] {
        return Some("subject organization is not system:nodes".into());
    }
    if !req.common_name.starts_with("system:node:") || req.common_name.len() <= 12 {
        return Some("subject common name does not begin with system:node:".into());
    }
    if !(req.dns_names.is_empty()
        && req.ip_addresses.is_empty()
        && req.emails.is_empty()
        && req.uris.is_empty())
    {
        return Some("subject alternative names are not allowed".into());
    }
    usage_problem(usages, "client auth")
}

/// The usages must include `needed` and otherwise only the key usages.
fn usage_problem(usages: &[&str], needed: &str) -> Option<String> {
    let allowed = ["digital signature", "key encipherment", needed];
    if let Some(bad) = usages.iter().find(|u| !allowed.contains(u)) {
        return Some(format!("usage {bad:?} is not allowed"));
    }
    if !usages.contains(&needed) {
        return Some(format!("{needed:?} usage is required"));
    }
    None
}

/// Upstream's `IsKubeletServingCSR`.
fn kubelet_serving_problem(req: &Request, usages: &[&str]) -> Option<String> {
    if req.organizations != ["system:nodes"] {
        return Some("subject organization is not system:nodes".into());
    }
    if !req.common_name.starts_with("system:node:") || req.common_name.len() <= 12 {
        return Some("subject common name does not begin with system:node:".into());
    }
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Some("DNS or IP subjectAltName is required".into());
    }
    if !req.emails.is_empty() || !req.uris.is_empty() {
        return Some("email and URI subjectAltNames are not allowed".into());
    }
    usage_problem(usages, "server auth")
}

/// What the approver does with a request.
pub fn approval(csr: &CertificateSigningRequest) -> Option<(&'static str, &'static str)> {
    if csr.spec.signer_name != KUBELET_CLIENT
        || has_condition(csr, "Approved")
        || has_condition(csr, "Denied")
    {
        return None;
    }
    let req = parse_request(&request_pem(csr)).ok()?;
    if kubelet_client_problem(&req, &usages(csr)).is_some() {
        return None;
    }
    let user = csr.spec.username.as_deref().unwrap_or("");
    let groups = csr.spec.groups.as_deref().unwrap_or_default();
    let in_group = |g: &str| groups.iter().any(|x| x == g);
    if in_group("system:bootstrappers") {
        return Some((
            "AutoApproved",
            "Auto approving kubelet client certificate after SubjectAccessReview.",
        ));
    }
    if in_group("system:nodes") && user == req.common_name {
        return Some((
            "AutoApproved",
            "Auto approving self kubelet client certificate after SubjectAccessReview.",
        ));
    }
    None
}

/// What the signer does with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Signing {
    /// Not ours, not approved, or already done.
    Skip,
    /// Breaks the signer's rules: a `Failed` condition with this message.
    Fail(String),
    Sign(Request),
}

pub fn signing(csr: &CertificateSigningRequest) -> Signing {
    let signer = csr.spec.signer_name.as_str();
    if ![KUBE_APISERVER_CLIENT, KUBELET_CLIENT, KUBELET_SERVING].contains(&signer)
        || !has_condition(csr, "Approved")
        || has_condition(csr, "Denied")
        || has_condition(csr, "Failed")
        || is_issued(csr)
    {
        return Signing::Skip;
    }
    let req = match parse_request(&request_pem(csr)) {
        Ok(r) => r,
        Err(e) => return Signing::Fail(format!("unable to parse csr: {e}")),
    };
    let usages = usages(csr);
    let problem = match signer {
        KUBELET_CLIENT => kubelet_client_problem(&req, &usages),
        KUBELET_SERVING => kubelet_serving_problem(&req, &usages),
        _ => usage_problem(&usages, "client auth"),
    };
    match problem {
        Some(p) => Signing::Fail(format!("invalid usage for client certificate: {p}")),
        None => Signing::Sign(req),
    }
}

/// How long the certificate lives: the signer's duration, or the
/// request's shorter `expirationSeconds` (at least 10 minutes).
pub fn lifetime(csr: &CertificateSigningRequest, configured: Duration) -> Duration {
    match csr.spec.expiration_seconds {
        Some(s) => configured.min(Duration::from_secs(
            u64::try_from(s.max(600)).unwrap_or(600),
        )),
        None => configured,
    }
}

/// Issues the certificate (PEM) for an approved, checked request.
pub fn sign(
    csr: &CertificateSigningRequest,
    req: &Request,
    ca: &ClusterSigning,
) -> Result<String, String> {
    use rcgen::{
        CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    };
    let issuer_key = KeyPair::from_pem(&ca.key_pem).map_err(|e| format!("the CA key: {e}"))?;
    let issuer_params =
        CertificateParams::from_ca_cert_pem(&ca.cert_pem).map_err(|e| format!("the CA: {e}"))?;
    let ca_not_after = issuer_params.not_after;
    let issuer = issuer_params
        .self_signed(&issuer_key)
        .map_err(|e| format!("the CA: {e}"))?;
    let mut request = CertificateSigningRequestParams::from_pem(&request_pem(csr))
        .map_err(|e| format!("unable to parse csr: {e}"))?;
    // Only what the signer vouches for goes in: the subject and (for
    // serving certificates) the names, with the usages from the spec.
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, req.common_name.as_str());
    for o in &req.organizations {
        params
            .distinguished_name
            .push(DnType::OrganizationName, o.as_str());
    }
    if csr.spec.signer_name == KUBELET_SERVING {
        for d in &req.dns_names {
            params.subject_alt_names.push(SanType::DnsName(
                d.clone().try_into().map_err(|e| format!("{e}"))?,
            ));
        }
        for ip in &req.ip_addresses {
            if let Ok(ip) = ip.parse() {
                params.subject_alt_names.push(SanType::IpAddress(ip));
            }
        }
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = Vec::new();
    for u in usages(csr) {
        match u {
            "key encipherment" => params.key_usages.push(KeyUsagePurpose::KeyEncipherment),
            "client auth" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth),
            "server auth" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth),
            _ => {}
        }
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    let life = lifetime(csr, ca.duration);
    let wanted =
        now + time::Duration::seconds(i64::try_from(life.as_secs()).unwrap_or(i64::MAX / 2));
    params.not_after = wanted.min(ca_not_after);
    params.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
    params.use_authority_key_identifier_extension = true;
    request.params = params;
    let cert = request
        .signed_by(&issuer, &issuer_key)
        .map_err(|e| format!("signing: {e}"))?;
    Ok(cert.pem())
}

fn condition(kind: &str, reason: &str, message: &str) -> CertificateSigningRequestCondition {
    let now = Time(Timestamp::now());
    CertificateSigningRequestCondition {
        type_: kind.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Runs both controllers' loops: `approve` and/or `sign` (the latter
/// only with a CA).
pub async fn run(
    ctx: Context,
    approve: bool,
    sign_with: Option<ClusterSigning>,
) -> anyhow::Result<()> {
    if !approve && sign_with.is_none() {
        // Upstream's csrsigning does not start without the CA files.
        tracing::info!(
            "csrsigning: no --cluster-signing-cert-file/--cluster-signing-key-file; not signing"
        );
        return std::future::pending().await;
    }
    let csrs = ctx.informers.get::<CertificateSigningRequest>();
    let queue = WorkQueue::new();
    forward(&csrs, &queue, |change| match change {
        Change::Deleted(_) => Vec::new(),
        change => vec![change.object().metadata.name.clone().unwrap_or_default()],
    });
    csrs.wait_synced().await;
    let sign_with = sign_with.map(Arc::new);
    let name: &'static str = if approve {
        "csrapproving"
    } else {
        "csrsigning"
    };
    run_workers(
        name,
        queue,
        ctx.settings.concurrent_syncs,
        move |key: String| {
            let ctx = ctx.clone();
            let csrs = csrs.clone();
            let sign_with = sign_with.clone();
            async move {
                let Some(csr) = csrs.get(&ObjectKey::cluster(&key)) else {
                    return Ok(Outcome::Done);
                };
                let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
                let mut next = (*csr).clone();
                let status = next.status.get_or_insert_with(Default::default);
                let list = status.conditions.get_or_insert_with(Vec::new);
                if approve {
                    if let Some((reason, message)) = approval(&csr) {
                        list.push(condition("Approved", reason, message));
                        api.replace_subresource("approval", &key, &PostParams::default(), &next)
                            .await?;
                    }
                    return Ok(Outcome::Done);
                }
                let Some(ca) = sign_with else {
                    return Ok(Outcome::Done);
                };
                match signing(&csr) {
                    Signing::Skip => return Ok(Outcome::Done),
                    Signing::Fail(message) => {
                        list.push(condition("Failed", "SignerValidationFailure", &message));
                    }
                    Signing::Sign(req) => match sign(&csr, &req, &ca) {
                        Ok(pem) => {
                            status.certificate = Some(k8s_openapi::ByteString(pem.into_bytes()));
                        }
                        Err(message) => {
                            tracing::warn!(csr = %key, %message, "signing failed");
                            list.push(condition("Failed", "SigningError", &message));
                        }
                    },
                }
                api.replace_status(&key, &PostParams::default(), &next)
                    .await?;
                Ok(Outcome::Done)
            }
        },
    )
    .await;
    Ok(())
}

/// Reads the CA files named by `--cluster-signing-cert-file` and
/// `--cluster-signing-key-file`.
pub fn load_signing(
    cert: &std::path::Path,
    key: &std::path::Path,
    duration: Duration,
) -> anyhow::Result<ClusterSigning> {
    use anyhow::Context as _;
    Ok(ClusterSigning {
        cert_pem: std::fs::read_to_string(cert)
            .with_context(|| format!("reading {}", cert.display()))?,
        key_pem: std::fs::read_to_string(key)
            .with_context(|| format!("reading {}", key.display()))?,
        duration,
    })
}

/// Base64 of a PEM, as the API carries bytes (for tests and callers).
pub fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestSpec, CertificateSigningRequestStatus,
    };
    use k8s_openapi::ByteString;

    use super::*;

    fn request(cn: &str, orgs: &[&str], dns: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for o in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn csr(
        signer: &str,
        pem: &str,
        usages: &[&str],
        user: &str,
        groups: &[&str],
    ) -> CertificateSigningRequest {
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                request: ByteString(pem.as_bytes().to_vec()),
                signer_name: signer.into(),
                usages: Some(usages.iter().map(|s| s.to_string()).collect()),
                username: Some(user.into()),
                groups: Some(groups.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn approved(mut c: CertificateSigningRequest) -> CertificateSigningRequest {
        c.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![condition("Approved", "r", "m")]),
            ..Default::default()
        });
        c
    }

    fn ca() -> ClusterSigning {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tugboat-ca");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        ClusterSigning {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            duration: Duration::from_secs(3600),
        }
    }

    #[test]
    fn requests_are_read_from_their_pem() {
        let req = parse_request(&request(
            "system:node:n1",
            &["system:nodes"],
            &["n1.example"],
        ))
        .unwrap();
        assert_eq!(req.common_name, "system:node:n1");
        assert_eq!(req.organizations, ["system:nodes"]);
        assert_eq!(req.dns_names, ["n1.example"]);
        assert!(parse_request("nope").is_err());
    }

    #[test]
    fn bootstrapping_and_renewing_nodes_are_approved_and_nothing_else() {
        let node = request("system:node:n1", &["system:nodes"], &[]);
        let usages = ["digital signature", "client auth"];
        let cases = [
            (
                csr(
                    KUBELET_CLIENT,
                    &node,
                    &usages,
                    "system:bootstrap:abc",
                    &["system:bootstrappers"],
                ),
                true,
            ),
            (
                csr(
                    KUBELET_CLIENT,
                    &node,
                    &usages,
                    "system:node:n1",
                    &["system:nodes"],
                ),
                true,
            ),
            // Another node's name.
            (
                csr(
                    KUBELET_CLIENT,
                    &node,
                    &usages,
                    "system:node:n2",
                    &["system:nodes"],
                ),
                false,
            ),
            // A user who is no bootstrapper.
            (
                csr(KUBELET_CLIENT, &node, &usages, "alice", &["devs"]),
                false,
            ),
            // Not a node certificate.
            (
                csr(
                    KUBELET_CLIENT,
                    &request("alice", &["system:masters"], &[]),
                    &usages,
                    "system:bootstrap:abc",
                    &["system:bootstrappers"],
                ),
                false,
            ),
            (
                csr(
                    KUBELET_CLIENT,
                    &node,
                    &["server auth"],
                    "system:bootstrap:abc",
                    &["system:bootstrappers"],
                ),
                false,
            ),
            // Another signer.
            (
                csr(
                    KUBE_APISERVER_CLIENT,
                    &node,
                    &usages,
                    "system:bootstrap:abc",
                    &["system:bootstrappers"],
                ),
                false,
            ),
        ];
        for (i, (c, want)) in cases.into_iter().enumerate() {
            assert_eq!(approval(&c).is_some(), want, "case {i}");
        }
        let done = approved(csr(
            KUBELET_CLIENT,
            &node,
            &usages,
            "system:bootstrap:abc",
            &["system:bootstrappers"],
        ));
        assert!(approval(&done).is_none(), "already approved");
    }

    #[test]
    fn approved_requests_are_signed_with_the_requested_identity() {
        let ca = ca();
        let node = request("system:node:n1", &["system:nodes"], &[]);
        let c = approved(csr(
            KUBELET_CLIENT,
            &node,
            &["digital signature", "client auth"],
            "u",
            &[],
        ));
        let Signing::Sign(req) = signing(&c) else {
            panic!("not signed")
        };
        let pem = sign(&c, &req, &ca).unwrap();
        let block = x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let cert = block.parse_x509().unwrap();
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert_eq!(cn, ["system:node:n1"]);
        assert!(cert.issuer().to_string().contains("tugboat-ca"));
        let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert!((3600 + 300 - 5..=3600 + 300 + 5).contains(&life), "{life}");
        assert!(!cert.is_ca());
    }

    #[test]
    fn unapproved_or_rule_breaking_requests_are_not_signed() {
        let node = request("system:node:n1", &["system:nodes"], &[]);
        let pending = csr(KUBELET_CLIENT, &node, &["client auth"], "u", &[]);
        assert_eq!(signing(&pending), Signing::Skip);
        let foreign = approved(csr("example.com/mine", &node, &["client auth"], "u", &[]));
        assert_eq!(signing(&foreign), Signing::Skip);
        let bad = approved(csr(
            KUBELET_CLIENT,
            &request("alice", &[], &[]),
            &["client auth"],
            "u",
            &[],
        ));
        assert!(matches!(signing(&bad), Signing::Fail(m) if m.contains("system:nodes")));
        let serving = approved(csr(
            KUBELET_SERVING,
            &request("system:node:n1", &["system:nodes"], &[]),
            &["server auth"],
            "u",
            &[],
        ));
        assert!(matches!(signing(&serving), Signing::Fail(m) if m.contains("subjectAltName")));
    }

    #[test]
    fn the_shorter_lifetime_wins() {
        let mut c = csr(KUBELET_CLIENT, "", &[], "u", &[]);
        assert_eq!(
            lifetime(&c, Duration::from_secs(3600)),
            Duration::from_secs(3600)
        );
        c.spec.expiration_seconds = Some(1200);
        assert_eq!(
            lifetime(&c, Duration::from_secs(3600)),
            Duration::from_secs(1200)
        );
        c.spec.expiration_seconds = Some(10);
        assert_eq!(
            lifetime(&c, Duration::from_secs(3600)),
            Duration::from_secs(600)
        );
    }
}
