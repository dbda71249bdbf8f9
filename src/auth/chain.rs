//! A route's `auth:` block compiled ([`AuthPolicy`]) and run ([`evaluate`]): the authenticators of
//! `any_of` in order (the first whose credential is present decides), then the authorizers in
//! order (client-certificate requirement, scopes, rate limit); the first failure is the answer.

use crate::auth::authenticator::{Authenticator, AuthnDef};
use crate::auth::identity::Identity;
use crate::auth::jwt::JwtAuthn;
use crate::auth::rate_limit::{header_limit_key, LimitKey, RateLimit};
use crate::auth::request::{note, AuthRequest, CredentialSource, Trace};
use crate::auth::scope::ScopeRule;
use crate::auth::shared_limit::SharedLimits;
use crate::config::issues::{Defined, Issues};
use crate::config::raw::RawAuth;
use crate::error::{Reason, Reject};
use http::{header, HeaderName, HeaderValue};
use std::sync::Arc;

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
    pub any_of: Vec<AuthnDef>,
    pub require_client_cert: bool,
    pub scopes: ScopeRule,
    pub superscope: Option<String>,
    pub rate_limit: Option<Arc<RateLimit>>,
    /// Cluster mode: rate limits are decided in Redis (shared by every replica).
    pub shared_limits: Option<Arc<SharedLimits>>,
    /// Cookie and query-parameter names that carry tokens on this route (`token_from`): removed
    /// before forwarding, like `Authorization`, unless `forward_credentials: true`.
    pub credential_cookies: Vec<String>,
    pub credential_params: Vec<String>,
}

/// What a route's `auth:` block may refer to.
pub struct ChainTables<'a> {
    pub authenticators: Defined<'a, AuthnDef>,
    pub rate_limits: Defined<'a, Arc<RateLimit>>,
    pub superscope: Option<&'a str>,
    pub shared_limits: Option<&'a Arc<SharedLimits>>,
}

impl AuthPolicy {
    /// `routes[i].auth` (`at` is `routes[i]`).
    pub fn compile(raw: &RawAuth, t: &ChainTables<'_>, at: &str, issues: &mut Issues) -> Self {
        let b = match raw {
            RawAuth::None => return AuthPolicy::None,
            RawAuth::Block(b) => b,
        };
        let mut any_of = Vec::new();
        let mut jwts: Vec<Arc<JwtAuthn>> = Vec::new();
        for (j, a) in b.any_of.iter().enumerate() {
            let here = || format!("{at}.auth.any_of[{j}]");
            let Some(def) = t.authenticators.get(a.as_str(), here, issues) else {
                continue;
            };
            if let Authenticator::Jwt(jw) = &def.kind {
                if jwts.iter().any(|o| o.issuer == jw.authn.issuer) {
                    issues.add(
                        here(),
                        format!("two JWT authenticators with issuer `{}` on one route: a token could not be routed to one of them", jw.authn.issuer),
                    );
                }
                jwts.push(jw.authn.clone());
            }
            any_of.push(def.clone());
        }
        // A token goes to the route's JWT authenticator of its issuer, whichever found it.
        let by_issuer: Arc<[Arc<JwtAuthn>]> = Arc::from(jwts);
        for def in &mut any_of {
            if let Authenticator::Jwt(jw) = &mut def.kind {
                jw.by_issuer = by_issuer.clone();
            }
        }
        let rate_limit = b.rate_limit.as_ref().and_then(|n| {
            let here = || format!("{at}.auth.rate_limit");
            t.rate_limits.get(n.as_str(), here, issues).cloned()
        });
        let strings = |v: &Vec<crate::values::S>| v.iter().map(|x| x.0.clone()).collect();
        let (credential_cookies, credential_params) = credential_names(&any_of);
        AuthPolicy::Chain(Box::new(Chain {
            any_of,
            require_client_cert: b.require_client_cert,
            scopes: ScopeRule {
                all: strings(&b.scopes),
                any: strings(&b.scopes_any),
            },
            superscope: t.superscope.map(str::to_owned),
            rate_limit,
            shared_limits: t.shared_limits.cloned(),
            credential_cookies,
            credential_params,
        }))
    }

    /// Cookie and query-parameter names that carry this route's tokens.
    pub fn credential_sources(&self) -> (&[String], &[String]) {
        match self {
            AuthPolicy::None => (&[], &[]),
            AuthPolicy::Chain(c) => (&c.credential_cookies, &c.credential_params),
        }
    }
}

/// The cookie and query-parameter names the chain's authenticators read credentials from.
fn credential_names(any_of: &[AuthnDef]) -> (Vec<String>, Vec<String>) {
    let (mut cookies, mut params) = (Vec::<String>::new(), Vec::<String>::new());
    for src in any_of.iter().flat_map(|a| a.kind.credential_sources()) {
        let (list, name) = match src {
            CredentialSource::Cookie(n) => (&mut cookies, n),
            CredentialSource::Query(n) => (&mut params, n),
            CredentialSource::Header => continue,
        };
        if !list.contains(name) {
            list.push(name.clone());
        }
    }
    (cookies, params)
}

/// What the chain decided, and what it had established when it did: who the request is (also
/// when an authorizer then refused it: the logs name who was refused), and which authenticator
/// decided (the one whose credential proved the identity or was refused).
#[derive(Debug)]
pub struct Verdict {
    /// The identity to forward, or the refusal.
    pub result: Result<Arc<Identity>, Reject>,
    /// On a refusal by an authorizer (client certificate, scopes, rate limit): who the chain
    /// had proved the request is.
    pub refused_identity: Option<Arc<Identity>>,
    pub authenticator: Option<Arc<str>>,
    /// Headers for the response (rate-limit state), allowed or not.
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Verdict {
    fn allow(identity: Arc<Identity>, response_headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        Verdict {
            authenticator: identity.authenticator.clone(),
            result: Ok(identity),
            refused_identity: None,
            response_headers,
        }
    }

    fn deny(e: Reject, identity: Option<Arc<Identity>>, authenticator: Option<Arc<str>>) -> Self {
        Verdict {
            result: Err(e),
            refused_identity: identity,
            authenticator,
            response_headers: Vec::new(),
        }
    }

    /// Who the request was found to be, allowed or refused.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.result.as_ref().ok().or(self.refused_identity.as_ref())
    }
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

/// Runs the chain: `result` is `Ok` to forward the request (as `identity`), or the refusal.
pub async fn evaluate(policy: &AuthPolicy, req: &AuthRequest<'_>, mut trace: Trace<'_>) -> Verdict {
    let chain = match policy {
        AuthPolicy::None => {
            note(&mut trace, || "auth: none (no chain)".into());
            return Verdict::allow(Identity::anonymous_arc(), Vec::new());
        }
        AuthPolicy::Chain(c) => c,
    };
    let identity = match authenticate(chain, req, &mut trace).await {
        Ok(id) => id,
        Err((e, authenticator)) => return Verdict::deny(e, None, authenticator),
    };
    let refuse = |e: Reject, identity: Arc<Identity>| {
        let authenticator = identity.authenticator.clone();
        Verdict::deny(e, Some(identity), authenticator)
    };
    if chain.require_client_cert {
        if req.conn.client_cert.is_none() {
            note(&mut trace, || {
                "require_client_cert: DENY (no verified certificate)".into()
            });
            return refuse(cert_required(), identity);
        }
        note(&mut trace, || "require_client_cert: ok".into());
    }
    if !chain.scopes.is_empty() {
        if let Err(e) = chain
            .scopes
            .check(&identity.scopes, chain.superscope.as_deref())
        {
            note(&mut trace, || format!("scopes: DENY {}", e.description));
            return refuse(e, identity);
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
                return refuse(e, identity);
            }
        }
    }
    Verdict::allow(identity, response_headers)
}

/// The authenticators of `any_of`, in order: the first whose credential is present decides. A
/// refusal names the authenticator whose credential was refused (none when none was offered).
async fn authenticate(
    chain: &Chain,
    req: &AuthRequest<'_>,
    trace: &mut Trace<'_>,
) -> Result<Arc<Identity>, (Reject, Option<Arc<str>>)> {
    for a in &chain.any_of {
        let kind = a.kind.kind();
        match a.kind.authenticate(req).await {
            Ok(Some(id)) => {
                note(trace, || {
                    format!(
                        "authenticate {} ({kind}): ok, subject {}",
                        a.name,
                        id.subject.as_deref().unwrap_or("-")
                    )
                });
                return Ok(id);
            }
            Ok(None) => note(trace, || {
                format!("authenticate {} ({kind}): no credential, next", a.name)
            }),
            Err(e) => {
                note(trace, || {
                    format!(
                        "authenticate {} ({kind}): DENY {} ({})",
                        a.name,
                        e.reason.name(),
                        e.description
                    )
                });
                return Err((e, Some(a.name.clone())));
            }
        }
    }
    if chain.any_of.is_empty() {
        return Ok(Identity::anonymous_arc());
    }
    let e = missing_credential(&chain.any_of);
    note(trace, || {
        format!("authenticate: DENY {} (no credential)", e.reason.name())
    });
    Err((e, None))
}

fn cert_required() -> Reject {
    Reject::new(
        Reason::ClientCertMissing,
        "this route requires a verified client certificate",
    )
}

/// No authenticator found its credential: 401 with each kind's challenge, or 403 when only a
/// client certificate would do.
fn missing_credential(any_of: &[AuthnDef]) -> Reject {
    let mut challenges: Vec<&'static str> = Vec::new();
    for c in any_of.iter().filter_map(|a| a.kind.challenge()) {
        if !challenges.contains(&c) {
            challenges.push(c);
        }
    }
    if challenges.is_empty() {
        return cert_required();
    }
    let mut r = Reject::new(
        Reason::CredentialMissing,
        "this route requires a credential",
    );
    for c in challenges {
        r = r.with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    r
}
