//! The `jwt` authenticator: the token is found where `token_from` says ([`extract`]), its
//! structure checked before any key is touched ([`parse`]), dispatched to the route's
//! authenticator of its (unverified) issuer, its signature verified with keys the config chose
//! ([`verify`]; keys from a [`keyset`], or a remote one: [`jwks`]), its header and claims
//! validated here (claim types matter, so not by the library), the `jti` checked against the
//! denylist, and the result kept in the verified-token cache ([`cache`]). [`compile`] builds one
//! from its config section.

pub mod cache;
pub mod compile;
pub mod extract;
pub mod jwks;
pub mod keyset;
pub mod parse;
pub mod reject;
pub mod verify;

use self::cache::{CachedIdentity, VerifyCache};
use self::jwks::RemoteJwks;
use self::keyset::KeySet;
use self::parse::{Parsed, MAX_TOKEN_BYTES};
use self::reject::invalid_token;
use self::verify::{alg_name, check_signature};
use crate::auth::identity::{AuthMethod, Identity};
use crate::auth::request::{AuthRequest, Authenticate, CredentialSource};
use crate::auth::revocation::Revocations;
use crate::error::{Reason, Reject};
use crate::oauth::signing::SigAlg;
use crate::oauth::OauthState;
use arc_swap::ArcSwap;
use http::header::{HeaderName, HeaderValue};
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// 2^63: time claims must be smaller in magnitude (a signed 64-bit count of seconds).
const I64_SECONDS: f64 = 9_223_372_036_854_775_808.0;

#[derive(Debug)]
pub enum Keys {
    Static(Arc<KeySet>),
    Remote(Arc<RemoteJwks>),
    /// The built-in authorization server's keys, from memory.
    Issuer(IssuerKeys),
}

/// What an `oauth_server: true` authenticator takes from the server's section.
#[derive(Debug, Clone)]
pub struct IssuerInfo {
    pub issuer: String,
    pub algorithm: SigAlg,
}

/// The authorization server's public keys as a key set, rebuilt when its keys change (a new key,
/// from this replica or through the store's change feed).
#[derive(Debug)]
pub struct IssuerKeys {
    state: Arc<OauthState>,
    built: ArcSwap<(u64, Arc<KeySet>)>,
}

impl IssuerKeys {
    pub fn new(state: Arc<OauthState>) -> IssuerKeys {
        IssuerKeys {
            state,
            built: ArcSwap::from_pointee((u64::MAX, Arc::new(KeySet::default()))),
        }
    }

    fn generation(&self) -> u64 {
        self.state.keys.generation()
    }

    /// What a verified-token cache entry is valid under: the keys and the clients as they were
    /// (both counters only grow, so their sum changes whenever either does).
    fn cache_generation(&self) -> u64 {
        self.generation()
            .wrapping_add(self.state.clients.generation())
    }

    /// The key set of every key the server holds.
    pub fn current(&self) -> Arc<KeySet> {
        let generation = self.generation();
        let built = self.built.load();
        if built.0 == generation {
            return built.1.clone();
        }
        // Every key the server holds, retired ones too: a token whose key has left the JWKS
        // has expired anyway, and `exp` refuses it.
        let jwks = self.state.keys.timeline().jwks(0, i64::MAX / 4);
        let set = Arc::new(
            KeySet::from_jwks(jwks.as_bytes(), false)
                .map_or_else(|_| KeySet::default(), |(set, _)| set),
        );
        self.built.store(Arc::new((generation, set.clone())));
        set
    }
}

pub struct JwtAuthn {
    pub name: Arc<str>,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: Keys,
    pub leeway: f64,
    pub require_typ: Option<String>,
    pub token_from: Vec<CredentialSource>,
    pub cache: Option<VerifyCache>,
    pub scopes_claim: String,
    pub claims_to_headers: Vec<(HeaderName, String)>,
    pub revocations: Arc<Revocations>,
    /// `oauth_server: true`: the server's clients (a token of a deleted client, or one issued
    /// before its client's revocation time, is refused).
    pub oauth: Option<Arc<OauthState>>,
}

impl fmt::Debug for JwtAuthn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthn")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// A JWT authenticator as one route's chain holds it: the authenticator whose `token_from` finds
/// the token, and every JWT authenticator of the route, among which the token goes to the one of
/// its issuer (SPEC section 2). Built when the route is compiled.
#[derive(Debug, Clone)]
pub struct RouteJwt {
    pub authn: Arc<JwtAuthn>,
    pub by_issuer: Arc<[Arc<JwtAuthn>]>,
}

impl RouteJwt {
    /// An authenticator on its own (its route's list is set when the route is compiled).
    pub fn alone(authn: Arc<JwtAuthn>) -> RouteJwt {
        RouteJwt {
            by_issuer: Arc::from(vec![authn.clone()]),
            authn,
        }
    }
}

impl Authenticate for RouteJwt {
    fn kind(&self) -> &'static str {
        "jwt"
    }

    fn challenge(&self) -> Option<&'static str> {
        Some("Bearer realm=\"portcullis\"")
    }

    fn credential_sources(&self) -> &[CredentialSource] {
        &self.authn.token_from
    }

    async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Option<Arc<Identity>>, Reject> {
        let Some(token) = extract::find_token(&self.authn.token_from, req.headers, req.query)?
        else {
            return Ok(None);
        };
        dispatch(&self.by_issuer, token, crate::clock::now())
            .await
            .map(Some)
    }
}

/// A bearer token belongs to the route's JWT authenticator whose `issuer` equals the token's
/// (unverified) `iss`; a token none of them claims is `invalid_token`.
pub async fn dispatch(
    jwts: &[Arc<JwtAuthn>],
    token: &str,
    now: f64,
) -> Result<Arc<Identity>, Reject> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid_token(
            Reason::TokenTooLarge,
            "the token is too large",
        ));
    }
    for j in jwts {
        if let Some(hit) = j.cached(token, now) {
            return hit;
        }
    }
    let parsed = parse::parse(token)?;
    let iss = parsed.issuer();
    let Some(j) = jwts.iter().find(|j| Some(j.issuer.as_str()) == iss) else {
        return Err(invalid_token(
            Reason::TokenUnclaimedIssuer,
            "the token's issuer is not accepted here",
        ));
    };
    j.verify(&parsed, now).await
}

impl JwtAuthn {
    fn generation(&self) -> u64 {
        match &self.keys {
            Keys::Static(_) => 0,
            Keys::Remote(r) => r.generation(),
            Keys::Issuer(i) => i.cache_generation(),
        }
    }

    fn key_set(&self) -> Option<Arc<KeySet>> {
        match &self.keys {
            Keys::Static(k) => Some(k.clone()),
            Keys::Remote(r) => r.current(),
            Keys::Issuer(i) => Some(i.current()),
        }
    }

    /// Verifies `token` (already routed here by its unverified `iss`) at unix time `now`.
    pub async fn verify(&self, token: &Parsed<'_>, now: f64) -> Result<Arc<Identity>, Reject> {
        let alg = self
            .algorithms
            .iter()
            .copied()
            .find(|a| alg_name(*a) == token.header.alg)
            .ok_or_else(|| {
                invalid_token(
                    Reason::TokenAlgNotAllowed,
                    "the token's algorithm is not accepted",
                )
            })?;
        if let Some(want) = &self.require_typ {
            let typ = token.header.typ.as_deref().unwrap_or("");
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            if !typ.eq_ignore_ascii_case(want) {
                return Err(invalid_token(
                    Reason::TokenTypMismatch,
                    "the token's type is not accepted",
                ));
            }
        }
        let kid = token.header.kid.as_deref();
        let generation = self.generation();
        let Some(set) = self.key_set() else {
            return Err(invalid_token(
                Reason::TokenNoKeys,
                "no verification keys are available",
            ));
        };
        let mut verified = check_signature(&set, token, kid, alg);
        if verified.is_none() {
            if let Keys::Remote(r) = &self.keys {
                if kid.is_some() && r.refetch_for_unknown_kid().await {
                    let Some(set) = self.key_set() else {
                        return Err(invalid_token(
                            Reason::TokenNoKeys,
                            "no verification keys are available",
                        ));
                    };
                    verified = check_signature(&set, token, kid, alg);
                }
            }
        }
        if verified != Some(true) {
            return Err(match verified {
                None => invalid_token(Reason::TokenUnknownKey, "no key matches the token"),
                _ => invalid_token(
                    Reason::TokenBadSignature,
                    "the token's signature is invalid",
                ),
            });
        }
        let identity = self.check_claims(&token.claims, now)?;
        if let Some(cache) = &self.cache {
            // a token of the built-in server leaves the cache when a rotation's grace that
            // covers it ends; any other change to the clients changes the generation
            let until = token.expires(self.leeway).min(identity.valid_until);
            cache.insert(token.raw, identity.clone(), until, generation);
        }
        Ok(identity.identity)
    }

    fn check_claims(&self, c: &Map<String, Value>, now: f64) -> Result<CachedIdentity, Reject> {
        let bad = |what: &'static str| invalid_token(Reason::TokenClaimInvalid, what);
        // A time claim is a number of seconds that fits a signed 64-bit count: a larger one is
        // invalid, never "no expiry" (SPEC section 2).
        let num = |k: &str| -> Result<Option<f64>, Reject> {
            match c.get(k) {
                None => Ok(None),
                Some(Value::Number(n)) => match n.as_f64() {
                    Some(v) if v.abs() < I64_SECONDS => Ok(Some(v)),
                    Some(_) => Err(bad("a time claim is out of range")),
                    None => Err(bad("a time claim is not a number")),
                },
                Some(_) => Err(bad("a time claim is not a number")),
            }
        };
        if c.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(invalid_token(
                Reason::TokenWrongIssuer,
                "the token's issuer is not accepted",
            ));
        }
        let exp = num("exp")?.ok_or_else(|| bad("the token has no exp"))?;
        if now > exp + self.leeway {
            return Err(invalid_token(Reason::TokenExpired, "the token is expired"));
        }
        if num("nbf")?.is_some_and(|nbf| nbf > now + self.leeway) {
            return Err(invalid_token(
                Reason::TokenNotYetValid,
                "the token is not valid yet",
            ));
        }
        if num("iat")?.is_some_and(|iat| iat > now + self.leeway) {
            return Err(invalid_token(
                Reason::TokenIatFuture,
                "the token was issued in the future",
            ));
        }
        let sub = match c.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(bad("sub is not a string")),
            None => return Err(bad("the token has no sub")),
        };
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => self.audiences.iter().any(|x| x == a),
            Some(Value::Array(v)) => {
                let mut ok = false;
                for a in v {
                    let Value::String(a) = a else {
                        return Err(bad("aud is not a string or an array of strings"));
                    };
                    ok |= self.audiences.iter().any(|x| x == a);
                }
                ok
            }
            Some(_) => return Err(bad("aud is not a string or an array of strings")),
            None => false,
        };
        if !aud_ok {
            return Err(invalid_token(
                Reason::TokenWrongAudience,
                "the token is not for this audience",
            ));
        }
        let jti = match c.get("jti") {
            None => None,
            Some(Value::String(j)) => Some(j.as_str()),
            Some(_) => return Err(bad("jti is not a string")),
        };
        if jti.is_some_and(|j| self.revocations.is_revoked(j, now)) {
            return Err(invalid_token(
                Reason::TokenRevoked,
                "the token has been revoked",
            ));
        }
        // a token of the built-in server: its client must exist and not have revoked it
        let valid_until = match (&self.oauth, c.get("client_id")) {
            (None, _) => f64::INFINITY,
            (Some(state), Some(Value::String(id))) => state
                .clients
                .token_allowed_until(id, num("iat")?.unwrap_or(0.0), now)
                .ok_or_else(|| invalid_token(Reason::TokenRevoked, "the token has been revoked"))?,
            (Some(_), _) => return Err(bad("the token has no client_id")),
        };
        let scopes = match c.get(&self.scopes_claim) {
            None => Vec::new(),
            Some(Value::String(s)) => s
                .split(' ')
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Value::Array(v)) => {
                let mut out = Vec::with_capacity(v.len());
                for x in v {
                    match x {
                        Value::String(s) => out.push(s.clone()),
                        _ => return Err(bad("the scopes claim holds a non-string")),
                    }
                }
                out
            }
            Some(_) => return Err(bad("the scopes claim is not a string or an array")),
        };
        let mut extra_headers = Vec::new();
        for (name, claim) in &self.claims_to_headers {
            let text = match c.get(claim) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(v)) => v
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" "),
                Some(other) => other.to_string(),
            };
            if text.chars().any(char::is_control) {
                continue;
            }
            if let Ok(v) = HeaderValue::from_str(&text) {
                extra_headers.push((name.clone(), v));
            }
        }
        Ok(CachedIdentity {
            identity: Arc::new(Identity {
                method: AuthMethod::Jwt,
                authenticator: Some(self.name.clone()),
                subject: Some(Arc::from(sub)),
                scopes: Arc::from(scopes),
                key_id: None,
                issuer: Some(self.issuer.clone()),
                extra_headers,
                own_limit: None,
            }),
            jti: jti.map(Arc::from),
            valid_until,
        })
    }

    /// A cached verification of this exact token, still within its `exp` and not revoked since.
    /// (A token of the built-in server is cached under the clients' generation and only until a
    /// rotation's grace ends, so its client needs no second look here.)
    pub fn cached(&self, token: &str, now: f64) -> Option<Result<Arc<Identity>, Reject>> {
        let hit = self.cache.as_ref()?.get(token, now, self.generation())?;
        if hit
            .jti
            .as_deref()
            .is_some_and(|j| self.revocations.is_revoked(j, now))
        {
            return Some(Err(invalid_token(
                Reason::TokenRevoked,
                "the token has been revoked",
            )));
        }
        Some(Ok(hit.identity.clone()))
    }
}
