//! First-start PKI: a cluster CA, the serving certificate, an admin client
//! certificate, the API server's own client certificate for kubelets and
//! `admin.kubeconfig`, all under the data dir; and, for `tugboat server`,
//! one client certificate and kubeconfig per component
//! ([`ensure_client_kubeconfig`]), as k3s issues them.
//!
//! Upstream clusters get these from kubeadm; a single `tug-apiserver` makes
//! its own so the real kubectl works against it with no extra step. Files are
//! reused on later starts, so clients keep trusting the same CA; the serving
//! certificate is re-issued when the wanted names change.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Paths of the PKI files in a data dir.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// What the API server shows kubelets (upstream's
    /// `apiserver-kubelet-client`), for logs and the like.
    pub kubelet_client_cert: PathBuf,
    pub kubelet_client_key: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Pki {
    pub fn in_dir(data_dir: &Path) -> Self {
        let pki = data_dir.join("pki");
        Pki {
            ca_cert: pki.join("ca.crt"),
            ca_key: pki.join("ca.key"),
            serving_cert: pki.join("apiserver.crt"),
            serving_key: pki.join("apiserver.key"),
            admin_cert: pki.join("admin.crt"),
            admin_key: pki.join("admin.key"),
            kubelet_client_cert: pki.join("apiserver-kubelet-client.crt"),
            kubelet_client_key: pki.join("apiserver-kubelet-client.key"),
            kubeconfig: data_dir.join("admin.kubeconfig"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(io)?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "tugboat-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params
}

/// The CA, loaded from the data dir or created there.
pub struct Ca {
    pub cert_pem: String,
    key: KeyPair,
    issuer: rcgen::Certificate,
}

impl Ca {
    pub fn load_or_create(pki: &Pki) -> Result<Ca, PkiError> {
        if pki.ca_cert.exists() && pki.ca_key.exists() {
            let cert_pem = read(&pki.ca_cert)?;
            let key = KeyPair::from_pem(&read(&pki.ca_key)?)?;
            let params = CertificateParams::from_ca_cert_pem(&cert_pem)?;
            // Re-signing the same params with the same key yields an issuer
            // with the same subject and key: what signing needs.
            let issuer = params.self_signed(&key)?;
            return Ok(Ca {
                cert_pem,
                key,
                issuer,
            });
        }
        let key = KeyPair::generate()?;
        let issuer = ca_params().self_signed(&key)?;
        let cert_pem = issuer.pem();
        write(&pki.ca_key, &key.serialize_pem(), true)?;
        write(&pki.ca_cert, &cert_pem, false)?;
        Ok(Ca {
            cert_pem,
            key,
            issuer,
        })
    }

    /// Issue a leaf certificate; returns (cert PEM, key PEM).
    fn issue(&self, params: CertificateParams) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate: CN is the user, O the groups (upstream's x509
    /// authenticator reads them this way).
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<(String, String), PkiError> {
        let mut params = leaf_params(user, ExtendedKeyUsagePurpose::ClientAuth);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, *g);
        }
        self.issue(params)
    }
}

/// A leaf certificate's parameters: the common name, one extended usage,
/// and a validity long enough that a cluster never has to rotate by hand.
fn leaf_params(common_name: &str, usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params
}

/// The names the serving certificate covers.
pub fn serving_names(extra: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
    ];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    for n in extra {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

fn san(name: &str) -> Result<SanType, PkiError> {
    Ok(match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.try_into()?),
    })
}

/// Everything the server needs to serve TLS and authenticate clients.
pub struct ServingMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The client certificate and key the server presents to kubelets.
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
}

/// The kubelet client certificate's user and group, as kubeadm issues it.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
pub const KUBELET_CLIENT_GROUP: &str = "system:masters";

/// Create what is missing under the data dir and return the serving material.
/// `server_url` is written into `admin.kubeconfig`.
pub fn ensure(
    data_dir: &Path,
    tls_sans: &[String],
    server_url: &str,
) -> Result<ServingMaterial, PkiError> {
    let pki = Pki::in_dir(data_dir);
    let ca = Ca::load_or_create(&pki)?;
    let names = serving_names(tls_sans);
    let names_file = pki.serving_cert.with_extension("names");
    let wanted = names.join(",");
    let current = std::fs::read_to_string(&names_file).unwrap_or_default();
    if !pki.serving_cert.exists() || !pki.serving_key.exists() || current != wanted {
        let mut params = leaf_params("tug-apiserver", ExtendedKeyUsagePurpose::ServerAuth);
        params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
        let (cert, key) = ca.issue(params)?;
        write(&pki.serving_key, &key, true)?;
        write(&pki.serving_cert, &cert, false)?;
        write(&names_file, &wanted, false)?;
    }
    if !pki.admin_cert.exists() || !pki.admin_key.exists() {
        let (cert, key) = ca.issue_client("admin", &["system:masters"])?;
        write(&pki.admin_key, &key, true)?;
        write(&pki.admin_cert, &cert, false)?;
    }
    // Data dirs from before the log subresource get theirs on this start.
    if !pki.kubelet_client_cert.exists() || !pki.kubelet_client_key.exists() {
        let (cert, key) = ca.issue_client(KUBELET_CLIENT_USER, &[KUBELET_CLIENT_GROUP])?;
        write(&pki.kubelet_client_key, &key, true)?;
        write(&pki.kubelet_client_cert, &cert, false)?;
    }
    let kubeconfig = kubeconfig(
        server_url,
        &ca.cert_pem,
        &read(&pki.admin_cert)?,
        &read(&pki.admin_key)?,
    );
    write(&pki.kubeconfig, &kubeconfig, true)?;
    Ok(ServingMaterial {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: read(&pki.serving_cert)?,
        key_pem: read(&pki.serving_key)?,
        kubelet_client_cert_pem: read(&pki.kubelet_client_cert)?,
        kubelet_client_key_pem: read(&pki.kubelet_client_key)?,
    })
}

/// A component's client identity: the certificate subject the x509
/// authenticator turns into a user (CN) and groups (O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The file stem: `<data>/pki/<stem>.crt` and `<data>/kubeconfigs/<stem>.kubeconfig`.
    pub stem: String,
    pub user: String,
    pub groups: Vec<String>,
}

impl ClientIdentity {
    /// upstream's kube-scheduler user.
    pub fn scheduler() -> Self {
        Self::new("scheduler", "system:kube-scheduler", &[])
    }

    /// upstream's kube-controller-manager user.
    pub fn controller_manager() -> Self {
        Self::new("controller-manager", "system:kube-controller-manager", &[])
    }

    /// upstream's kube-proxy user.
    pub fn proxy() -> Self {
        Self::new("kube-proxy", "system:kube-proxy", &[])
    }

    /// A kubelet's node credential: `system:node:<node>` in `system:nodes`,
    /// what the Node authorizer and NodeRestriction expect upstream.
    pub fn node(node: &str) -> Self {
        Self::new("kubelet", &format!("system:node:{node}"), &["system:nodes"])
    }

    fn new(stem: &str, user: &str, groups: &[&str]) -> Self {
        ClientIdentity {
            stem: stem.into(),
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
}

/// Whether `cert_pem` was issued to `identity` (same user, same groups):
/// a kept certificate must not carry an old node name.
fn issued_to(cert_pem: &str, identity: &ClientIdentity) -> bool {
    let Some(Ok(der)) = rustls_pemfile::certs(&mut cert_pem.as_bytes()).next() else {
        return false;
    };
    let Some(user) = crate::auth::user_from_certificate(der.as_ref()) else {
        return false;
    };
    let mut groups: Vec<&str> = user
        .groups
        .iter()
        .map(String::as_str)
        .filter(|g| *g != "system:authenticated")
        .collect();
    groups.sort_unstable();
    let mut wanted: Vec<&str> = identity.groups.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    user.name == identity.user && groups == wanted
}

/// Issue `identity` a client certificate from the cluster CA on first use
/// (kept on later starts while the subject is the same) and write
/// `<data>/kubeconfigs/<stem>.kubeconfig` pointing at `server_url`.
/// Returns the kubeconfig's path.
pub fn ensure_client_kubeconfig(
    data_dir: &Path,
    identity: &ClientIdentity,
    server_url: &str,
) -> Result<PathBuf, PkiError> {
    let pki = Pki::in_dir(data_dir);
    let ca = Ca::load_or_create(&pki)?;
    let dir = data_dir.join("pki");
    let cert_path = dir.join(format!("{}.crt", identity.stem));
    let key_path = dir.join(format!("{}.key", identity.stem));
    let kept = match (read(&cert_path), key_path.exists()) {
        (Ok(cert), true) if issued_to(&cert, identity) => Some(cert),
        _ => None,
    };
    if kept.is_none() {
        let groups: Vec<&str> = identity.groups.iter().map(String::as_str).collect();
        let (cert, key) = ca.issue_client(&identity.user, &groups)?;
        write(&key_path, &key, true)?;
        write(&cert_path, &cert, false)?;
    }
    let path = data_dir
        .join("kubeconfigs")
        .join(format!("{}.kubeconfig", identity.stem));
    let config = kubeconfig_for(
        &identity.user,
        server_url,
        &ca.cert_pem,
        &read(&cert_path)?,
        &read(&key_path)?,
    );
    write(&path, &config, true)?;
    Ok(path)
}

/// A kubeconfig with embedded credentials, as kubeadm writes `admin.conf`.
pub fn kubeconfig(server_url: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    kubeconfig_for("admin", server_url, ca_pem, cert_pem, key_pem)
}

/// A kubeconfig whose user entry is called `user`.
pub fn kubeconfig_for(
    user: &str,
    server_url: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: tugboat
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: tugboat
  context:
    cluster: tugboat
    user: {user}
    namespace: default
current-context: tugboat
preferences: {{}}
",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(cert_pem: &str) -> crate::auth::UserInfo {
        let der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        crate::auth::user_from_certificate(der.as_ref()).unwrap()
    }

    #[test]
    fn component_identities_are_upstreams_users() {
        let cases = [
            (ClientIdentity::scheduler(), "system:kube-scheduler", vec![]),
            (
                ClientIdentity::controller_manager(),
                "system:kube-controller-manager",
                vec![],
            ),
            (ClientIdentity::proxy(), "system:kube-proxy", vec![]),
            (
                ClientIdentity::node("n1"),
                "system:node:n1",
                vec!["system:nodes"],
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (identity, user, groups) in cases {
            let path =
                ensure_client_kubeconfig(dir.path(), &identity, "https://127.0.0.1:1").unwrap();
            assert_eq!(
                path,
                dir.path()
                    .join(format!("kubeconfigs/{}.kubeconfig", identity.stem))
            );
            let cert = read(&dir.path().join(format!("pki/{}.crt", identity.stem))).unwrap();
            let info = subject(&cert);
            assert_eq!(info.name, user);
            for g in groups {
                assert!(
                    info.groups.iter().any(|x| x == g),
                    "{user}: {:?}",
                    info.groups
                );
            }
            let config = std::fs::read_to_string(&path).unwrap();
            assert!(config.contains("server: https://127.0.0.1:1"), "{config}");
            assert!(config.contains(&format!("user: {user}\n")), "{config}");
        }
    }

    #[test]
    fn a_client_certificate_is_kept_until_its_subject_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cert = |d: &Path| read(&d.join("pki/kubelet.crt")).unwrap();
        let url = "https://127.0.0.1:6443";
        ensure_client_kubeconfig(dir.path(), &ClientIdentity::node("a"), url).unwrap();
        let first = cert(dir.path());
        ensure_client_kubeconfig(dir.path(), &ClientIdentity::node("a"), url).unwrap();
        assert_eq!(first, cert(dir.path()), "same node: same certificate");
        ensure_client_kubeconfig(dir.path(), &ClientIdentity::node("b"), url).unwrap();
        assert_eq!(subject(&cert(dir.path())).name, "system:node:b");
    }

    #[test]
    fn first_start_writes_a_kubeconfig_and_later_starts_reuse_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path(), &[], "https://127.0.0.1:6443").unwrap();
        let config = std::fs::read_to_string(dir.path().join("admin.kubeconfig")).unwrap();
        assert!(config.contains("server: https://127.0.0.1:6443"));
        let second = ensure(
            dir.path(),
            &["tug.example".into()],
            "https://127.0.0.1:6443",
        )
        .unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_ne!(
            first.cert_pem, second.cert_pem,
            "new SAN re-issues the serving cert"
        );
        assert_eq!(
            first.kubelet_client_cert_pem, second.kubelet_client_cert_pem,
            "the kubelet client certificate is kept"
        );
    }

    #[test]
    fn the_kubelet_client_certificate_names_the_apiserver_and_is_added_to_old_dirs() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path(), &[], "https://127.0.0.1:6443").unwrap();
        let pki = Pki::in_dir(dir.path());
        // A data dir made before the certificate existed.
        std::fs::remove_file(&pki.kubelet_client_cert).unwrap();
        std::fs::remove_file(&pki.kubelet_client_key).unwrap();
        let material = ensure(dir.path(), &[], "https://127.0.0.1:6443").unwrap();
        assert!(pki.kubelet_client_cert.exists());
        let der = rustls_pemfile::certs(&mut material.kubelet_client_cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let user = crate::auth::user_from_certificate(der.as_ref()).unwrap();
        assert_eq!(user.name, KUBELET_CLIENT_USER);
        assert!(user.groups.iter().any(|g| g == KUBELET_CLIENT_GROUP));
    }
}
