//! Authentication and authorization.
//!
//! Authentication, as upstream: an x509 client certificate verified against
//! the cluster CA (CN = user name, O = groups), or a static bearer token from
//! `--token-auth-file` (upstream's CSV: `token,user,uid,"group1,group2"`).
//! Authorization goes through the [`Authorizer`] trait; today's
//! implementation allows every authenticated request, and RBAC will replace
//! it without touching the request path.

use std::collections::HashMap;
use std::path::Path;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    fn authenticated(name: String, uid: String, mut groups: Vec<String>) -> Self {
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        UserInfo { name, uid, groups }
    }
}

/// The identity a TLS connection presented (already verified by rustls).
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity(pub Option<UserInfo>);

/// User and groups from a verified client certificate (DER).
pub fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(UserInfo::authenticated(name, String::new(), groups))
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
}

/// Static bearer tokens.
#[derive(Debug, Default, Clone)]
pub struct TokenAuthenticator {
    tokens: HashMap<String, UserInfo>,
}

impl TokenAuthenticator {
    pub fn from_file(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, message)| TokenFileError::Parse {
            path: path.display().to_string(),
            line,
            message,
        })
    }

    /// Parse upstream's CSV format; errors carry the 1-based line number.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields = split_csv(line);
            if fields.len() < 3 {
                return Err((i + 1, "expected token,user,uid[,\"groups\"]".into()));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if fields[0].is_empty() || fields[1].is_empty() {
                return Err((i + 1, "token and user must not be empty".into()));
            }
            tokens.insert(
                fields[0].clone(),
                UserInfo::authenticated(fields[1].clone(), fields[2].clone(), groups),
            );
        }
        Ok(TokenAuthenticator { tokens })
    }

    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.tokens.get(token).cloned()
    }
}

/// Split one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut field)),
            other => field.push(other),
        }
    }
    out.push(field);
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

/// What a request wants to do, for authorization.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    /// Set for non-resource requests (`/healthz`, `/version`, discovery).
    pub path: Option<&'a str>,
}

/// The authorization decision point; RBAC will implement it.
pub trait Authorizer: Send + Sync {
    /// `Ok(())` to allow, `Err(reason)` to deny.
    fn authorize(&self, attributes: &Attributes<'_>) -> Result<(), String>;
}

/// Allows every authenticated request.
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &Attributes<'_>) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_parse_upstream_csv_with_quoted_groups() {
        let auth = TokenAuthenticator::parse(
            "# comment\nsecret1,alice,uid-1,\"dev,ops\"\nsecret2,bob,uid-2\n",
        )
        .unwrap();
        let alice = auth.authenticate("secret1").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(auth.authenticate("secret2").unwrap().uid, "uid-2");
        assert!(auth.authenticate("nope").is_none());
    }

    #[test]
    fn malformed_token_lines_name_their_line() {
        let err = TokenAuthenticator::parse("ok,u,1\nbroken\n").unwrap_err();
        assert_eq!(err.0, 2);
    }
}
