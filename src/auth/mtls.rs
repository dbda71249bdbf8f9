//! The `mtls` authenticator: the identity of the client certificate the TLS handshake verified
//! (against the listener's `client_auth.ca`). A connection without one carries no credential of
//! this kind. `subject_from` picks the certificate field that becomes the subject (for a listed
//! certificate without that field, the value its identity matched); `identities`, when set, is an
//! allow-list: the first entry whose field matches gives the certificate its scopes, and a
//! certificate no entry matches is refused.

use crate::auth::identity::{no_scopes, AuthMethod, Identity};
use crate::auth::request::{AuthRequest, Authenticate};
use crate::config::issues::Issues;
use crate::config::raw::RawMtls;
use crate::conn::ClientCert;
use crate::error::{Reason, Reject};
use std::sync::Arc;

/// The certificate field `X-Auth-Subject` carries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum SubjectFrom {
    /// The subject's common name.
    #[default]
    Cn,
    /// The first DNS alternative name (or the one an identity matched).
    SanDns,
    /// The first URI alternative name (or the one an identity matched), e.g. a SPIFFE ID.
    SanUri,
    /// The whole subject, RFC 4514 style.
    Dn,
}

impl SubjectFrom {
    fn parse(s: &str) -> Option<SubjectFrom> {
        Some(match s {
            "cn" => SubjectFrom::Cn,
            "san_dns" => SubjectFrom::SanDns,
            "san_uri" => SubjectFrom::SanUri,
            "dn" => SubjectFrom::Dn,
            _ => return None,
        })
    }
}

/// What one `identities` entry matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertMatch {
    /// A URI alternative name, exactly (SPIFFE IDs are case-sensitive).
    SanUri(String),
    /// A DNS alternative name, ASCII case ignored; `*.example.com` matches any name below
    /// `example.com` (not `example.com` itself).
    SanDns(String),
    /// The subject's common name, exactly.
    SubjectCn(String),
}

impl CertMatch {
    /// The certificate's value that matched, if one does.
    fn find<'a>(&self, c: &'a ClientCert) -> Option<&'a str> {
        match self {
            CertMatch::SanUri(u) => c.sans_of("URI").find(|s| s == u),
            CertMatch::SanDns(d) => c.sans_of("DNS").find(|s| dns_matches(d, s)),
            CertMatch::SubjectCn(n) => c.cn.as_deref().filter(|cn| cn == n),
        }
    }
}

/// `pattern` (lowercase; exact or `*.suffix`) against a certificate's DNS name.
fn dns_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            name.len() > suffix.len()
                && name
                    .get(name.len() - suffix.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
        None => name.eq_ignore_ascii_case(pattern),
    }
}

#[derive(Debug, Clone)]
pub struct CertIdentity {
    pub matches: CertMatch,
    pub scopes: Arc<[String]>,
}

#[derive(Debug, Default)]
pub struct MtlsAuthn {
    /// The authenticator's name, for the identity it proves.
    pub name: Arc<str>,
    pub subject_from: SubjectFrom,
    /// `None`: every verified certificate passes, without scopes.
    pub identities: Option<Vec<CertIdentity>>,
}

impl MtlsAuthn {
    /// `authenticators.NAME` of `type: mtls`.
    pub fn compile(name: &str, raw: &RawMtls, issues: &mut Issues) -> MtlsAuthn {
        let p = format!("authenticators.{name}");
        let subject_from = match raw.subject_from.as_ref().map(|s| s.as_str()) {
            None => SubjectFrom::Cn,
            Some(s) => SubjectFrom::parse(s).unwrap_or_else(|| {
                issues.add(
                    format!("{p}.subject_from"),
                    format!("`{s}`: one of cn, san_dns, san_uri, dn"),
                );
                SubjectFrom::Cn
            }),
        };
        let identities = raw.identities.as_ref().map(|list| {
            if list.is_empty() {
                issues.add(
                    format!("{p}.identities"),
                    "an empty allow-list refuses every certificate: list at least one identity, or leave `identities` out",
                );
            }
            list.iter()
                .enumerate()
                .filter_map(|(i, e)| compile_identity(&format!("{p}.identities[{i}]"), e, issues))
                .collect()
        });
        MtlsAuthn {
            name: Arc::from(name),
            subject_from,
            identities,
        }
    }

    /// The identity `c` proves, or why it proves none.
    fn identify(&self, c: &ClientCert) -> Result<Identity, Reject> {
        let (scopes, matched) = match &self.identities {
            None => (no_scopes(), None),
            Some(list) => {
                let hit = list
                    .iter()
                    .find_map(|e| e.matches.find(c).map(|v| (e, v)))
                    .ok_or_else(|| {
                        Reject::new(
                            Reason::ClientCertNotListed,
                            "this client certificate is not among the identities this route accepts",
                        )
                    })?;
                (hit.0.scopes.clone(), Some((&hit.0.matches, hit.1)))
            }
        };
        let subject = match (self.subject_from, matched) {
            (SubjectFrom::SanDns, Some((CertMatch::SanDns(_), v)))
            | (SubjectFrom::SanUri, Some((CertMatch::SanUri(_), v))) => Some(v),
            (SubjectFrom::SanDns, _) => c.sans_of("DNS").next(),
            (SubjectFrom::SanUri, _) => c.sans_of("URI").next(),
            (SubjectFrom::Cn, _) => c.cn.as_deref(),
            (SubjectFrom::Dn, _) => Some(c.subject.as_str()).filter(|s| !s.is_empty()),
        }
        // a listed certificate without that field: the value its identity matched
        .or(matched.map(|(_, v)| v))
        .ok_or_else(|| {
            Reject::new(
                Reason::ClientCertNoSubject,
                "the client certificate has no field to take the subject from (subject_from)",
            )
        })?;
        Ok(Identity {
            method: AuthMethod::Mtls,
            authenticator: Some(self.name.clone()),
            subject: Some(Arc::from(subject)),
            scopes,
            key_id: None,
            issuer: None,
            extra_headers: Vec::new(),
            own_limit: None,
        })
    }
}

/// One `identities` entry: exactly one of `san_uri`, `san_dns`, `subject_cn`, and its scopes.
fn compile_identity(
    p: &str,
    e: &crate::config::raw::RawCertIdentity,
    issues: &mut Issues,
) -> Option<CertIdentity> {
    let given: Vec<(&str, &str)> = [
        ("san_uri", e.san_uri.as_ref()),
        ("san_dns", e.san_dns.as_ref()),
        ("subject_cn", e.subject_cn.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v.as_str())))
    .collect();
    let [(field, value)] = given.as_slice() else {
        issues.add(
            p,
            "give exactly one of san_uri, san_dns, subject_cn (what the certificate must carry)",
        );
        return None;
    };
    if value.is_empty() || value.chars().any(char::is_control) {
        issues.add(format!("{p}.{field}"), "must be non-empty text");
        return None;
    }
    let matches = match *field {
        "san_uri" => CertMatch::SanUri((*value).to_owned()),
        "san_dns" => {
            let v = value.to_ascii_lowercase();
            let bare = v.strip_prefix("*.").unwrap_or(&v);
            if bare.contains('*') || bare.is_empty() || bare.starts_with('.') {
                issues.add(
                    format!("{p}.san_dns"),
                    format!("`{value}`: a DNS name, or `*.` followed by one (any name below it)"),
                );
                return None;
            }
            CertMatch::SanDns(v)
        }
        _ => CertMatch::SubjectCn((*value).to_owned()),
    };
    let mut scopes = Vec::with_capacity(e.scopes.len());
    for (i, s) in e.scopes.iter().enumerate() {
        let s = s.as_str();
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            issues.add(
                format!("{p}.scopes[{i}]"),
                "a scope is one word: no spaces or control characters",
            );
        } else {
            scopes.push(s.to_owned());
        }
    }
    Some(CertIdentity {
        matches,
        scopes: Arc::from(scopes),
    })
}

impl Authenticate for MtlsAuthn {
    fn kind(&self) -> &'static str {
        "mtls"
    }

    fn challenge(&self) -> Option<&'static str> {
        None
    }

    async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Option<Arc<Identity>>, Reject> {
        match req.conn.client_cert.as_ref() {
            None => Ok(None),
            Some(c) => self.identify(c).map(|i| Some(Arc::new(i))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_patterns() {
        assert!(dns_matches("a.svc.corp", "A.SVC.corp"));
        assert!(!dns_matches("a.svc.corp", "b.svc.corp"));
        assert!(dns_matches("*.svc.corp", "a.svc.corp"));
        assert!(dns_matches("*.svc.corp", "x.a.svc.corp"));
        assert!(!dns_matches("*.svc.corp", "svc.corp"));
        assert!(!dns_matches("*.svc.corp", "evilsvc.corp"));
        assert!(!dns_matches("*.svc.corp", ".svc.corp"));
    }
}
