//! Joining agents to a server, as kubeadm and k3s do it:
//! - the server makes a bootstrap token (`<id>.<secret>`, a
//!   `bootstrap.kubernetes.io/token` Secret in kube-system; the API server
//!   authenticates it as `system:bootstrap:<id>`) and publishes the
//!   `cluster-info` ConfigMap in kube-public (a kubeconfig with the CA, which
//!   anyone may read);
//! - the join token handed to agents is `K10<ca-hash>::<id>.<secret>` (k3s'
//!   format), where `<ca-hash>` is the SHA-256 of the CA certificate's
//!   SubjectPublicKeyInfo (kubeadm's `--discovery-token-ca-cert-hash`), so
//!   an agent trusts the CA it downloads only if it is the one the token
//!   names;
//! - the agent then asks for its own node credential with a
//!   CertificateSigningRequest (signer
//!   `kubernetes.io/kube-apiserver-client-kubelet`) authenticated by the
//!   bootstrap token; the controller manager approves and signs it.
//!
//! Everything here is pure: token text, hashes, the ConfigMap and the CSR.

use std::fmt;

/// The token prefix (k3s' version marker).
const PREFIX: &str = "K10";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the CA's SubjectPublicKeyInfo.
    pub ca_hash: String,
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
    /// The bearer token the API server authenticates.
    pub fn bootstrap(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The text handed to agents.
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{}::{}.{}", self.ca_hash, self.id, self.secret)
    }

    /// Parses `K10<hash>::<id>.<secret>`.
    pub fn parse(text: &str) -> Result<JoinToken, String> {
        let text = text.trim();
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or("a join token starts with K10 (see the server's --agent-token-file)")?;
        let (hash, creds) = rest
            .split_once("::")
            .ok_or("a join token reads K10<ca-hash>::<id>.<secret>")?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the join token's CA hash is not 64 hex digits".into());
        }
        let (id, secret) = apiserver::bootstrap_token::parse(creds)
            .ok_or("the join token's credentials are not <6 chars>.<16 chars> of [a-z0-9]")?;
        Ok(JoinToken {
            ca_hash: hash.to_ascii_lowercase(),
            id: id.into(),
            secret: secret.into(),
        })
    }

    /// A fresh token for the CA `ca_pem`.
    pub fn generate(ca_pem: &str) -> Result<JoinToken, String> {
        Ok(JoinToken {
            ca_hash: ca_hash(ca_pem)?,
            id: random_chars(6),
            secret: random_chars(16),
        })
    }
}

/// `[a-z0-9]{n}` from the OS's random source.
fn random_chars(n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..n)
        .map(|_| CHARS[usize::from(rand::random::<u8>()) % CHARS.len()] as char)
        .collect()
}

/// SHA-256 (hex) of the SubjectPublicKeyInfo of the first certificate in
/// `ca_pem`: kubeadm's CA pin.
pub fn ca_hash(ca_pem: &str) -> Result<String, String> {
    let block = x509_parser::pem::Pem::iter_from_buffer(ca_pem.as_bytes())
        .next()
        .ok_or("no certificate in the CA PEM")?
        .map_err(|e| format!("the CA PEM: {e}"))?;
    let cert = block
        .parse_x509()
        .map_err(|e| format!("the CA certificate: {e}"))?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    Ok(ring::digest::digest(&ring::digest::SHA256, spki)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The `cluster-info` ConfigMap (kube-public): a kubeconfig with the
/// server and its CA, no credentials.
pub fn cluster_info(server_url: &str, ca_pem: &str) -> serde_json::Value {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    certificate-authority-data: {ca}\n    server: {server_url}\ncontexts: null\ncurrent-context: \"\"\npreferences: {{}}\nusers: null\n"
    );
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
        "data": {"kubeconfig": kubeconfig},
    })
}

/// The CA out of a `cluster-info` kubeconfig, checked against the token's
/// hash.
pub fn trusted_ca(kubeconfig: &str, token: &JoinToken) -> Result<String, String> {
    use base64::Engine;
    let data = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .ok_or("cluster-info has no certificate-authority-data")?
        .trim();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("cluster-info's CA: {e}"))?;
    let pem = String::from_utf8(pem).map_err(|_| "cluster-info's CA is not PEM text")?;
    let got = ca_hash(&pem)?;
    if got != token.ca_hash {
        return Err(format!(
            "the server's CA (sha256:{got}) is not the one the join token names (sha256:{}): refusing to trust it",
            token.ca_hash
        ));
    }
    Ok(pem)
}

/// A node's key (PEM) and certificate request (PEM) for
/// `system:node:<node>` in `system:nodes`.
pub fn node_request(node: &str) -> Result<(String, String), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| e.to_string())?;
    Ok((key.serialize_pem(), csr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_say_why() {
        let t = JoinToken::generate(&ca()).unwrap();
        assert_eq!(t.id.len(), 6);
        assert_eq!(t.secret.len(), 16);
        assert_eq!(JoinToken::parse(&t.to_text()).unwrap(), t);
        assert_eq!(JoinToken::parse(&format!(" {}\n", t.to_text())).unwrap(), t);
        assert!(
            !format!("{t:?}").contains(&t.secret),
            "the secret is not printed"
        );
        for (bad, why) in [
            ("abcdef.0123456789abcdef", "starts with K10"),
            ("K10abc::abcdef.0123456789abcdef", "64 hex"),
            (&format!("K10{}", "a".repeat(64)), "K10<ca-hash>::"),
            (&format!("K10{}::abc.def", "a".repeat(64)), "credentials"),
        ] {
            let err = JoinToken::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn the_ca_is_trusted_only_when_its_hash_matches() {
        let ours = ca();
        let token = JoinToken::generate(&ours).unwrap();
        let info = cluster_info("https://10.0.0.1:6443", &ours);
        let kubeconfig = info["data"]["kubeconfig"].as_str().unwrap();
        assert!(kubeconfig.contains("server: https://10.0.0.1:6443"));
        assert_eq!(trusted_ca(kubeconfig, &token).unwrap(), ours);
        let theirs = cluster_info("https://10.0.0.1:6443", &ca());
        let err = trusted_ca(theirs["data"]["kubeconfig"].as_str().unwrap(), &token).unwrap_err();
        assert!(err.contains("refusing to trust"), "{err}");
    }

    #[test]
    fn the_node_request_names_the_node() {
        let (key, csr) = node_request("n1").unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let block = x509_parser::pem::Pem::iter_from_buffer(csr.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(block.label, "CERTIFICATE REQUEST");
        assert!(csr.len() > 100);
    }
}
