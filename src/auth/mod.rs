//! The auth chain (STYLE.md: authenticate, then authorize).
//!
//! An authenticator returns `Ok(None)` when the request carries no credential of its kind (try
//! the next), `Ok(Some(identity))` when it proves one, and `Err` when a credential is present but
//! bad (stop: a present-but-invalid credential never falls through). Authorizers then run in
//! order (client-certificate requirement, scopes, rate limit) and the first failure is the answer.

pub mod api_key;
pub mod jwks;
pub mod jwt;
pub mod rate_limit;
pub mod revocation;
pub mod scope;
pub mod shared_limit;

use crate::error::Reject;
use crate::listener::ConnInfo;
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use jwt::JwtAuthn;
use rate_limit::{LimitKey, RateLimit};
use scope::ScopeRule;
use std::net::IpAddr;
use std::sync::Arc;

/// How the request was authenticated; the value of `X-Auth-Method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    ApiKey,
    Jwt,
    Mtls,
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
        match self {
            AuthMethod::None => &NONE,
            AuthMethod::ApiKey => &API_KEY,
            AuthMethod::Jwt => &JWT,
            AuthMethod::Mtls => &MTLS,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Mtls => "mtls",
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

/// A configured authenticator.
#[derive(Debug)]
pub enum Authenticator {
    /// Identity from the verified client certificate of the connection.
    Mtls,
    Jwt(Arc<JwtAuthn>),
    ApiKey(Arc<api_key::ApiKeyAuthn>),
}

#[derive(Debug)]
pub struct AuthnDef {
    pub name: Arc<str>,
    pub kind: Authenticator,
}

impl AuthnDef {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Authenticator::Mtls => "mtls",
            Authenticator::Jwt(_) => "jwt",
            Authenticator::ApiKey(_) => "api_key",
        }
    }
}

/// A route's `auth:` block, compiled.
#[derive(Debug)]
pub enum AuthPolicy {
    /// `auth: none`: no chain at all.
    None,
    Chain(Box<Chain>),
}

#[derive(Debug)]
pub struct Chain {
    /// Empty = anonymous (only the authorizers run).
    pub any_of: Vec<Arc<AuthnDef>>,
    /// The JWT authenticators of `any_of`, among which a bearer token is dispatched by issuer.
    pub jwts: Vec<Arc<JwtAuthn>>,
    pub require_client_cert: bool,
    pub scopes: ScopeRule,
    pub superscope: Option<String>,
    pub rate_limit: Option<Arc<RateLimit>>,
    /// Cluster mode: rate limits are decided in Redis (shared by every replica).
    pub shared_limits: Option<Arc<shared_limit::SharedLimits>>,
    /// Cookie and query-parameter names that carry tokens on this route (`token_from`): removed
    /// before forwarding, like `Authorization`, unless `forward_credentials: true`.
    pub credential_cookies: Vec<String>,
    pub credential_params: Vec<String>,
}

impl AuthPolicy {
    /// Cookie and query-parameter names that carry this route's tokens.
    pub fn credential_sources(&self) -> (&[String], &[String]) {
        match self {
            AuthPolicy::None => (&[], &[]),
            AuthPolicy::Chain(c) => (&c.credential_cookies, &c.credential_params),
        }
    }
}

/// What the chain looks at.
pub struct AuthRequest<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub conn: &'a ConnInfo,
    pub client_ip: IpAddr,
}

/// An allowed request: who it is, and headers for the response (rate-limit state).
#[derive(Debug)]
pub struct Decision {
    pub identity: Arc<Identity>,
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
}

/// Steps recorded for `portcullis explain`; `None` on the request path (no cost).
pub type Trace<'a> = Option<&'a mut Vec<String>>;

fn note(trace: &mut Trace<'_>, line: impl FnOnce() -> String) {
    if let Some(t) = trace.as_mut() {
        t.push(line());
    }
}

/// Header values longer than this (or not plain ASCII) are keyed by digest.
const MAX_RAW_LIMIT_KEY: usize = 32;

/// The rate-limit key for a header value. The value is the client's to choose: a long or
/// non-ASCII one is keyed by its digest, so a tracked client costs at most ~35 bytes of key
/// whatever it sends (128 bits: a collision would take 2^64 tries, and choosing a header value
/// to share someone's bucket needs none).
pub fn header_limit_key(v: &[u8]) -> String {
    if v.len() <= MAX_RAW_LIMIT_KEY && v.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        let mut k = String::with_capacity(2 + v.len());
        k.push_str("h|");
        k.extend(v.iter().map(|b| char::from(*b)));
        return k;
    }
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v);
    format!("h#{}", crate::tls::hex_lower(&d.as_ref()[..16]))
}

/// The key a rate limit counts under for this request.
pub fn limit_key(limit: &RateLimit, identity: &Identity, req: &AuthRequest<'_>) -> String {
    match &limit.key {
        LimitKey::Identity => identity.rate_key(req.client_ip),
        LimitKey::Ip => format!("ip|{}", req.client_ip),
        LimitKey::Header(h) => match req.headers.get(h) {
            Some(v) => header_limit_key(v.as_bytes()),
            None => format!("ip|{}", req.client_ip),
        },
    }
}

async fn authenticate_one(
    a: &AuthnDef,
    chain: &Chain,
    req: &AuthRequest<'_>,
    now: f64,
) -> Result<Option<Arc<Identity>>, Reject> {
    match &a.kind {
        Authenticator::Mtls => Ok(req.conn.client_cert.as_ref().map(|c| {
            Arc::new(Identity {
                method: AuthMethod::Mtls,
                authenticator: Some(a.name.clone()),
                subject: Some(Arc::from(c.subject.as_str())),
                scopes: no_scopes(),
                key_id: None,
                issuer: None,
                extra_headers: Vec::new(),
                own_limit: None,
            })
        })),
        Authenticator::ApiKey(k) => match k.find_key(req.headers)? {
            None => Ok(None),
            Some(key) => k.authenticate(key, now as i64).map(Some),
        },
        Authenticator::Jwt(j) => {
            let Some(token) = j.find_token(req.headers, req.query)? else {
                return Ok(None);
            };
            jwt_dispatch(&chain.jwts, token, now).await.map(Some)
        }
    }
}

/// A bearer token belongs to the route's JWT authenticator whose `issuer` equals the token's
/// (unverified) `iss`; a token none of them claims is `invalid_token`.
async fn jwt_dispatch(
    jwts: &[Arc<JwtAuthn>],
    token: &str,
    now: f64,
) -> Result<Arc<Identity>, Reject> {
    if token.len() > jwt::MAX_TOKEN_BYTES {
        return Err(jwt::invalid_token(
            "token_too_large",
            "the token is too large",
        ));
    }
    for j in jwts {
        if let Some(hit) = j.cached(token, now) {
            return hit;
        }
    }
    let parsed = jwt::parse(token)?;
    let iss = parsed.issuer();
    let Some(j) = jwts.iter().find(|j| Some(j.issuer.as_str()) == iss) else {
        return Err(jwt::invalid_token(
            "token_unclaimed_issuer",
            "the token's issuer is not accepted here",
        ));
    };
    j.verify(&parsed, now).await
}

/// Runs the chain. `Ok` carries the identity to forward; `Err` is the response to send instead.
pub async fn evaluate(
    policy: &AuthPolicy,
    req: &AuthRequest<'_>,
    mut trace: Trace<'_>,
) -> Result<Decision, Reject> {
    let chain = match policy {
        AuthPolicy::None => {
            note(&mut trace, || "auth: none (no chain)".into());
            return Ok(Decision {
                identity: Identity::anonymous_arc(),
                response_headers: Vec::new(),
            });
        }
        AuthPolicy::Chain(c) => c,
    };
    let now = jwt::unix_now();
    let mut identity = None;
    for a in &chain.any_of {
        match authenticate_one(a, chain, req, now).await {
            Ok(Some(id)) => {
                note(&mut trace, || {
                    format!(
                        "authenticate {} ({}): ok, subject {}",
                        a.name,
                        a.type_name(),
                        id.subject.as_deref().unwrap_or("-")
                    )
                });
                identity = Some(id);
                break;
            }
            Ok(None) => note(&mut trace, || {
                format!(
                    "authenticate {} ({}): no credential, next",
                    a.name,
                    a.type_name()
                )
            }),
            Err(e) => {
                note(&mut trace, || {
                    format!(
                        "authenticate {} ({}): DENY {} ({})",
                        a.name,
                        a.type_name(),
                        e.reason,
                        e.description
                    )
                });
                return Err(e);
            }
        }
    }
    let identity = match identity {
        Some(id) => id,
        None if chain.any_of.is_empty() => Identity::anonymous_arc(),
        None => {
            let e = missing_credential(&chain.any_of);
            note(&mut trace, || {
                format!("authenticate: DENY {} (no credential)", e.reason)
            });
            return Err(e);
        }
    };
    if chain.require_client_cert {
        if req.conn.client_cert.is_none() {
            note(&mut trace, || {
                "require_client_cert: DENY (no verified certificate)".into()
            });
            return Err(cert_required());
        }
        note(&mut trace, || "require_client_cert: ok".into());
    }
    if !chain.scopes.is_empty() {
        if let Err(e) = chain
            .scopes
            .check(&identity.scopes, chain.superscope.as_deref())
        {
            note(&mut trace, || format!("scopes: DENY {}", e.description));
            return Err(e);
        }
        note(&mut trace, || "scopes: ok".into());
    }
    let mut response_headers = Vec::new();
    if let Some(limit) = identity.own_limit.as_ref().or(chain.rate_limit.as_ref()) {
        let key = limit_key(limit, &identity, req);
        let decided = match &chain.shared_limits {
            Some(shared) => shared.check(limit, &key).await,
            None => limit.check(&key),
        };
        match decided {
            Ok(h) => {
                note(&mut trace, || format!("rate_limit {}: ok", limit.name));
                response_headers.extend(h);
            }
            Err(e) => {
                note(&mut trace, || format!("rate_limit {}: DENY", limit.name));
                return Err(e);
            }
        }
    }
    Ok(Decision {
        identity,
        response_headers,
    })
}

fn cert_required() -> Reject {
    Reject::new(
        StatusCode::FORBIDDEN,
        "client_certificate_required",
        "client_cert_missing",
        "this route requires a verified client certificate",
    )
}

fn missing_credential(any_of: &[Arc<AuthnDef>]) -> Reject {
    let mut challenges: Vec<&'static str> = Vec::new();
    for a in any_of {
        let c = match a.kind {
            Authenticator::Jwt(_) => "Bearer realm=\"portcullis\"",
            Authenticator::ApiKey(_) => api_key::ApiKeyAuthn::challenge(),
            Authenticator::Mtls => continue,
        };
        if !challenges.contains(&c) {
            challenges.push(c);
        }
    }
    if challenges.is_empty() {
        return cert_required();
    }
    let mut r = Reject::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "credential_missing",
        "this route requires a credential",
    );
    for c in challenges {
        r = r.with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    r
}

/// Makes room in a bounded map that is full: drops entries until `keep` are left. With `keep`
/// a sixteenth under the capacity, the verified-token cache and the rate-limit state both make
/// room this way, so a flood of new entries can only churn them, never grow them (entries added
/// while an eviction was pending are dropped too). Which entries go moves on with `cursor` from
/// one call to the next, so the same shards are not emptied over and over.
pub(crate) fn forget_down_to<K: Eq + std::hash::Hash, V>(
    map: &dashmap::DashMap<K, V>,
    keep: usize,
    cursor: &std::sync::atomic::AtomicUsize,
) {
    let len = map.len();
    let n = len.saturating_sub(keep);
    if n == 0 {
        return;
    }
    let start = cursor.fetch_add(n, std::sync::atomic::Ordering::Relaxed) % len;
    let mut i = 0usize;
    map.retain(|_, _| {
        let from_start = (i % len + len - start) % len;
        i += 1;
        from_start >= n
    });
}

/// What a full map of `capacity` keeps after making room: a sixteenth less, so that eviction
/// (a walk over the whole map) runs once per `capacity / 16` new entries.
pub(crate) fn keep_after_eviction(capacity: usize) -> usize {
    capacity - (capacity / 16 + 1).min(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_limit_keys_are_raw_when_short_and_a_digest_otherwise() {
        assert_eq!(header_limit_key(b"tenant-a"), "h|tenant-a");
        let long_a = format!("{}a", "t".repeat(300));
        let long_b = format!("{}b", "t".repeat(300));
        let (ka, kb) = (
            header_limit_key(long_a.as_bytes()),
            header_limit_key(long_b.as_bytes()),
        );
        assert!(ka.starts_with("h#") && ka.len() == 34, "{ka}");
        assert_ne!(ka, kb);
        assert_eq!(ka, header_limit_key(long_a.as_bytes()));
        // non-ASCII never grows through lossy decoding: a digest, whatever its length
        let k = header_limit_key(&[0xff; 20]);
        assert!(k.starts_with("h#") && k.len() == 34, "{k}");
        // a short value cannot pose as a digest key
        assert!(header_limit_key(b"#0123").starts_with("h|"));
    }

    #[test]
    fn forgetting_moves_on_and_reaches_its_target() {
        let map = dashmap::DashMap::new();
        for i in 0..1000u32 {
            map.insert(i, ());
        }
        let cursor = std::sync::atomic::AtomicUsize::new(0);
        let keep = keep_after_eviction(1000);
        assert_eq!(keep, 937);
        forget_down_to(&map, keep, &cursor);
        assert_eq!(map.len(), 937);
        let first: std::collections::HashSet<u32> =
            (0..1000).filter(|i| !map.contains_key(i)).collect();
        for i in 1000..1063u32 {
            map.insert(i, ());
        }
        forget_down_to(&map, keep, &cursor);
        assert_eq!(map.len(), 937);
        let second: std::collections::HashSet<u32> = (0..1000)
            .filter(|i| !map.contains_key(i) && !first.contains(i))
            .collect();
        assert!(
            !second.is_empty(),
            "the second eviction takes other entries"
        );
    }
}
