//! What an authenticator looks at ([`AuthRequest`]) and the shape every authenticator has
//! ([`Authenticate`]).

use crate::auth::identity::Identity;
use crate::conn::ConnInfo;
use crate::error::Reject;
use http::HeaderMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

/// The parts of a request the chain reads.
pub struct AuthRequest<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub conn: &'a ConnInfo,
    /// The client's address (after trusted proxies).
    pub client_ip: IpAddr,
}

/// Where a credential is read from, besides the headers every authenticator knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `Authorization: Bearer <token>`
    Header,
    Cookie(String),
    Query(String),
}

impl CredentialSource {
    /// `header`, `cookie:NAME` or `query:NAME` (a JWT authenticator's `token_from`).
    pub fn parse(s: &str) -> Result<CredentialSource, String> {
        if s == "header" {
            return Ok(CredentialSource::Header);
        }
        if let Some(n) = s.strip_prefix("cookie:").filter(|n| !n.is_empty()) {
            return Ok(CredentialSource::Cookie(n.to_owned()));
        }
        if let Some(n) = s.strip_prefix("query:").filter(|n| !n.is_empty()) {
            return Ok(CredentialSource::Query(n.to_owned()));
        }
        Err(format!("`{s}`: use header, cookie:NAME or query:NAME"))
    }
}

/// One kind of authenticator. Each lives in a file of its own (`api_key.rs`, `jwt/`, `mtls.rs`)
/// and is listed in [`crate::auth::authenticator::Authenticator`].
pub trait Authenticate {
    /// The config's `type:` (`api_key`, `jwt`, `mtls`), as logs and `explain` name it.
    fn kind(&self) -> &'static str;

    /// The `WWW-Authenticate` challenge for a request that offered no credential at all, if this
    /// kind has one (a client certificate is asked for in the TLS handshake, not by a header).
    fn challenge(&self) -> Option<&'static str>;

    /// Cookies and query parameters this authenticator reads credentials from: removed before
    /// forwarding, like `Authorization`, unless the route says `forward_credentials: true`.
    fn credential_sources(&self) -> &[CredentialSource] {
        &[]
    }

    /// `Ok(None)`: the request carries no credential of this kind (the chain tries the next);
    /// `Ok(Some(identity))`: it proves one; `Err`: a credential is present but bad, which ends
    /// the chain (a bad credential never falls through to the next authenticator).
    fn authenticate(
        &self,
        req: &AuthRequest<'_>,
    ) -> impl Future<Output = Result<Option<Arc<Identity>>, Reject>> + Send;
}

/// Steps recorded for `portcullis explain`; `None` on the request path (no cost).
pub type Trace<'a> = Option<&'a mut Vec<String>>;

pub fn note(trace: &mut Trace<'_>, line: impl FnOnce() -> String) {
    if let Some(t) = trace.as_mut() {
        t.push(line());
    }
}

/// The credential of an `Authorization` value in `scheme` (`Bearer`, `Api-Key`): the scheme in
/// any case, one or more spaces, then the credential (white space after it, which is not part
/// of a field value, ignored: HTTP/2 does not strip it). The one parser of auth schemes, for the
/// authenticators and the admin API alike.
pub fn credential<'a>(v: &'a http::HeaderValue, scheme: &str) -> Option<&'a str> {
    let s = v.to_str().ok()?;
    let (name, rest) = s.split_at_checked(scheme.len())?;
    if !name.eq_ignore_ascii_case(scheme) || !rest.starts_with(' ') {
        return None;
    }
    Some(rest.trim_start_matches(' ').trim_end_matches([' ', '\t']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn auth_schemes() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(credential(&v("Bearer abc"), "Bearer"), Some("abc"));
        assert_eq!(credential(&v("bEaReR    abc"), "Bearer"), Some("abc"));
        assert_eq!(credential(&v("Bearerabc"), "Bearer"), None);
        assert_eq!(credential(&v("Basic abc"), "Bearer"), None);
        assert_eq!(credential(&v("Bear"), "Bearer"), None);
        assert_eq!(credential(&v("api-KEY k1"), "Api-Key"), Some("k1"));
        assert_eq!(credential(&v("Api-Key"), "Api-Key"), None);
        assert_eq!(credential(&v("Bearer abc \t"), "Bearer"), Some("abc"));
        assert_eq!(credential(&v("Bearer \tabc"), "Bearer"), Some("\tabc"));
        let latin1 = HeaderValue::from_bytes(b"Bearer \xe9").expect("obs-text is a valid value");
        assert_eq!(credential(&latin1, "Bearer"), None);
    }
}
