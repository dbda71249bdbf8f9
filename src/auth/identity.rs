//! Who a request is, as the chain proved it: the [`Identity`] every later step reads (scopes,
//! rate-limit key, identity headers, logs).

use crate::auth::rate_limit::RateLimit;
use http::{HeaderName, HeaderValue};
use std::net::IpAddr;
use std::sync::Arc;

/// How the request was authenticated; the value of `X-Auth-Method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    ApiKey,
    Jwt,
    Mtls,
    /// A client of the built-in authorization server, at its endpoints.
    OauthClient,
}

impl AuthMethod {
    /// [`AuthMethod::as_str`] as a shared metrics label: the authenticator label of identities
    /// no named authenticator proved (API keys, whose one key table serves every `api_key`
    /// authenticator, and `auth: none`).
    pub fn label(self) -> &'static Arc<str> {
        use std::sync::LazyLock;
        static NONE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("none"));
        static API_KEY: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("api_key"));
        static JWT: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("jwt"));
        static MTLS: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("mtls"));
        static OAUTH: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("oauth_client"));
        match self {
            AuthMethod::None => &NONE,
            AuthMethod::ApiKey => &API_KEY,
            AuthMethod::Jwt => &JWT,
            AuthMethod::Mtls => &MTLS,
            AuthMethod::OauthClient => &OAUTH,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Mtls => "mtls",
            AuthMethod::OauthClient => "oauth_client",
        }
    }
}

/// Who the request is, as proven by the chain.
#[derive(Debug, Clone)]
pub struct Identity {
    pub method: AuthMethod,
    /// Name of the authenticator that proved it.
    pub authenticator: Option<Arc<str>>,
    pub subject: Option<Arc<str>>,
    pub scopes: Arc<[String]>,
    pub key_id: Option<Arc<str>>,
    pub issuer: Option<String>,
    /// `claims_to_headers` values (names start with `x-auth-`, so client copies are stripped).
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// An API key's own rate limit: replaces the route's for that key.
    pub own_limit: Option<Arc<RateLimit>>,
}

/// An empty scope list (shared; no allocation per identity).
pub fn no_scopes() -> Arc<[String]> {
    static EMPTY: std::sync::LazyLock<Arc<[String]>> =
        std::sync::LazyLock::new(|| Arc::from(Vec::new()));
    EMPTY.clone()
}

impl Identity {
    /// The shared anonymous identity (no allocation per request).
    pub fn anonymous_arc() -> Arc<Identity> {
        static ANON: std::sync::LazyLock<Arc<Identity>> =
            std::sync::LazyLock::new(|| Arc::new(Identity::anonymous()));
        ANON.clone()
    }

    pub fn anonymous() -> Identity {
        Identity {
            method: AuthMethod::None,
            authenticator: None,
            subject: None,
            scopes: no_scopes(),
            key_id: None,
            issuer: None,
            extra_headers: Vec::new(),
            own_limit: None,
        }
    }

    /// The rate-limit key of `key: identity`: who the request is, or its address if anonymous.
    pub fn rate_key(&self, client_ip: IpAddr) -> String {
        match (self.method, &self.key_id, &self.subject) {
            (AuthMethod::ApiKey, Some(k), _) => format!("key|{k}"),
            (AuthMethod::Jwt, _, Some(s)) => {
                format!("jwt|{}|{s}", self.issuer.as_deref().unwrap_or(""))
            }
            (AuthMethod::Mtls, _, Some(s)) => format!("mtls|{s}"),
            _ => format!("ip|{client_ip}"),
        }
    }
}
