//! The `jwt` authenticator: token extraction, header and claim validation done here (not trusted
//! to the library: claim types matter), signature verification with keys the config chose, the
//! `jti` denylist and the verified-token cache.

use super::jwks::{KeySet, RemoteJwks};
use super::revocation::Revocations;
use super::{AuthMethod, Identity};
use crate::error::Reject;
use base64::Engine;
use dashmap::DashMap;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use jsonwebtoken::Algorithm;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Without a `kid`, at most this many keys are tried (bounds the CPU a forged token can cost).
const MAX_KEYS_WITHOUT_KID: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`
    Header,
    Cookie(String),
    Query(String),
}

impl TokenSource {
    pub fn parse(s: &str) -> Result<TokenSource, String> {
        if s == "header" {
            return Ok(TokenSource::Header);
        }
        if let Some(n) = s.strip_prefix("cookie:").filter(|n| !n.is_empty()) {
            return Ok(TokenSource::Cookie(n.to_owned()));
        }
        if let Some(n) = s.strip_prefix("query:").filter(|n| !n.is_empty()) {
            return Ok(TokenSource::Query(n.to_owned()));
        }
        Err(format!("`{s}`: use header, cookie:NAME or query:NAME"))
    }
}

#[derive(Debug)]
pub enum Keys {
    Static(Arc<KeySet>),
    Remote(Arc<RemoteJwks>),
}

pub struct JwtAuthn {
    pub name: Arc<str>,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: Keys,
    pub leeway: f64,
    pub require_typ: Option<String>,
    pub token_from: Vec<TokenSource>,
    pub cache: Option<VerifyCache>,
    pub scopes_claim: String,
    pub claims_to_headers: Vec<(HeaderName, String)>,
    pub revocations: Arc<Revocations>,
}

impl fmt::Debug for JwtAuthn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthn")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// An invalid token: 401 with an RFC 6750 challenge.
pub fn invalid_token(reason: &'static str, description: &str) -> Reject {
    let challenge = format!(
        "Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\"{description}\""
    );
    Reject::new(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        reason,
        description,
    )
    .with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
    )
}

fn duplicate_credential() -> Reject {
    Reject::bad_request(
        "credential_duplicated",
        "the credential is offered more than once",
    )
    .with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"portcullis\", error=\"invalid_request\""),
    )
}

/// `Bearer` (any case) then one or more spaces then the token.
pub fn bearer(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let (scheme, rest) = s.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("bearer") || !rest.starts_with(' ') {
        return None;
    }
    Some(rest.trim_start_matches(' '))
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Result<Option<&'a str>, Reject> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if crate::forward::query_name_is(k, name) {
            if found.is_some() {
                return Err(duplicate_credential());
            }
            found = Some(v);
        }
    }
    Ok(found)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Reject> {
    let mut found = None;
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for c in s.split(';') {
            if let Some((k, v)) = c.trim().split_once('=') {
                if k == name {
                    if found.is_some() {
                        return Err(duplicate_credential());
                    }
                    found = Some(v);
                }
            }
        }
    }
    Ok(found)
}

impl JwtAuthn {
    /// The token this authenticator would read, if the request carries one. A token offered in
    /// more than one place (two `Authorization` headers, header and query) is a 400.
    pub fn find_token<'a>(
        &self,
        headers: &'a HeaderMap,
        query: Option<&'a str>,
    ) -> Result<Option<&'a str>, Reject> {
        let mut found: Option<&str> = None;
        let mut put = |t: &'a str| {
            if found.is_some() {
                return Err(duplicate_credential());
            }
            found = Some(t);
            Ok(())
        };
        for src in &self.token_from {
            match src {
                TokenSource::Header => {
                    let mut all = headers.get_all(header::AUTHORIZATION).iter();
                    let first = all.next();
                    if all.next().is_some() {
                        return Err(duplicate_credential());
                    }
                    if let Some(t) = first.and_then(bearer) {
                        put(t)?;
                    }
                }
                TokenSource::Cookie(n) => {
                    if let Some(t) = cookie(headers, n)? {
                        put(t)?;
                    }
                }
                TokenSource::Query(n) => {
                    if let Some(t) = query_param(query, n)? {
                        put(t)?;
                    }
                }
            }
        }
        Ok(found)
    }

    fn generation(&self) -> u64 {
        match &self.keys {
            Keys::Static(_) => 0,
            Keys::Remote(r) => r.generation(),
        }
    }

    fn key_set(&self) -> Option<Arc<KeySet>> {
        match &self.keys {
            Keys::Static(k) => Some(k.clone()),
            Keys::Remote(r) => r.current(),
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
                    "token_alg_not_allowed",
                    "the token's algorithm is not accepted",
                )
            })?;
        if let Some(want) = &self.require_typ {
            let typ = token.header.typ.as_deref().unwrap_or("");
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            if !typ.eq_ignore_ascii_case(want) {
                return Err(invalid_token(
                    "token_typ_mismatch",
                    "the token's type is not accepted",
                ));
            }
        }
        let kid = token.header.kid.as_deref();
        let generation = self.generation();
        let mut verified = self.check_signature(token, kid, alg)?;
        if verified.is_none() {
            if let Keys::Remote(r) = &self.keys {
                if kid.is_some() && r.refetch_for_unknown_kid().await {
                    verified = self.check_signature(token, kid, alg)?;
                }
            }
        }
        if verified != Some(true) {
            return Err(match verified {
                None => invalid_token("token_unknown_key", "no key matches the token"),
                _ => invalid_token("token_bad_signature", "the token's signature is invalid"),
            });
        }
        let identity = self.check_claims(&token.claims, now)?;
        if let Some(cache) = &self.cache {
            cache.insert(
                token.raw,
                identity.clone(),
                token.expires(self.leeway),
                generation,
            );
        }
        Ok(identity.identity)
    }

    /// `None`: no candidate key; `Some(ok)`: whether a candidate verified it.
    fn check_signature(
        &self,
        token: &Parsed<'_>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Option<bool>, Reject> {
        let Some(set) = self.key_set() else {
            return Err(invalid_token(
                "token_no_keys",
                "no verification keys are available",
            ));
        };
        let limit = if kid.is_some() {
            usize::MAX
        } else {
            MAX_KEYS_WITHOUT_KID
        };
        let mut any = false;
        for k in set.candidates(kid, alg).take(limit) {
            any = true;
            let ok = match k.parsed_for(alg) {
                Some(p) => p
                    .verify_sig(token.signing_input.as_bytes(), &token.signature_bytes)
                    .is_ok(),
                None => jsonwebtoken::crypto::verify(
                    token.signature,
                    token.signing_input.as_bytes(),
                    &k.key,
                    alg,
                )
                .unwrap_or(false),
            };
            if ok {
                return Ok(Some(true));
            }
        }
        Ok(any.then_some(false))
    }

    fn check_claims(&self, c: &Map<String, Value>, now: f64) -> Result<CachedIdentity, Reject> {
        let bad = |what: &'static str| invalid_token("token_claim_invalid", what);
        let num = |k: &str| -> Result<Option<f64>, Reject> {
            match c.get(k) {
                None => Ok(None),
                Some(Value::Number(n)) => n
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| bad("a time claim is not a number")),
                Some(_) => Err(bad("a time claim is not a number")),
            }
        };
        if c.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(invalid_token(
                "token_wrong_issuer",
                "the token's issuer is not accepted",
            ));
        }
        let exp = num("exp")?.ok_or_else(|| bad("the token has no exp"))?;
        if now > exp + self.leeway {
            return Err(invalid_token("token_expired", "the token is expired"));
        }
        if num("nbf")?.is_some_and(|nbf| nbf > now + self.leeway) {
            return Err(invalid_token(
                "token_not_yet_valid",
                "the token is not valid yet",
            ));
        }
        if num("iat")?.is_some_and(|iat| iat > now + self.leeway) {
            return Err(invalid_token(
                "token_iat_future",
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
                "token_wrong_audience",
                "the token is not for this audience",
            ));
        }
        let jti = match c.get("jti") {
            None => None,
            Some(Value::String(j)) => Some(j.as_str()),
            Some(_) => return Err(bad("jti is not a string")),
        };
        if jti.is_some_and(|j| self.revocations.is_revoked(j, now)) {
            return Err(invalid_token("token_revoked", "the token has been revoked"));
        }
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
            jti: jti.map(Box::from),
        })
    }

    /// A cached verification of this exact token, still within its `exp` and not revoked since.
    pub fn cached(&self, token: &str, now: f64) -> Option<Result<Arc<Identity>, Reject>> {
        let hit = self.cache.as_ref()?.get(token, now, self.generation())?;
        if hit
            .jti
            .as_deref()
            .is_some_and(|j| self.revocations.is_revoked(j, now))
        {
            return Some(Err(invalid_token(
                "token_revoked",
                "the token has been revoked",
            )));
        }
        Some(Ok(hit.identity.clone()))
    }
}

/// Signature-level check of a compact JWS against a key set, whatever the payload (the RFC
/// examples' payloads are not JWT claims). For conformance tests and `explain`.
pub fn signature_valid(set: &KeySet, token: &str) -> Result<bool, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not three segments".into());
    };
    let header: Value = serde_json::from_slice(&b64url(h).map_err(|e| e.description)?)
        .map_err(|e| format!("header: {e}"))?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or("no alg")?;
    let alg: Algorithm = alg.parse().map_err(|_| format!("unsupported alg {alg}"))?;
    let raw = b64url(sig).map_err(|e| e.description)?;
    let input = &token[..h.len() + 1 + p.len()];
    Ok(set.candidates(None, alg).any(|k| match k.parsed_for(alg) {
        Some(pk) => pk.verify_sig(input.as_bytes(), &raw).is_ok(),
        None => jsonwebtoken::crypto::verify(sig, input.as_bytes(), &k.key, alg).unwrap_or(false),
    }))
}

pub fn alg_name(a: Algorithm) -> &'static str {
    use Algorithm::*;
    match a {
        HS256 => "HS256",
        HS384 => "HS384",
        HS512 => "HS512",
        RS256 => "RS256",
        RS384 => "RS384",
        RS512 => "RS512",
        PS256 => "PS256",
        PS384 => "PS384",
        PS512 => "PS512",
        ES256 => "ES256",
        ES384 => "ES384",
        EdDSA => "EdDSA",
        // jsonwebtoken may add algorithms; an unknown one can never be configured here.
        _ => "",
    }
}

// ------------------------------------------------------------------------------------------------
// Parsing

/// A JSON object that refuses duplicate member names (libraries disagree on which one wins).
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<StrictObject, A::Error> {
                let mut out = Map::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    if out.contains_key(&k) {
                        return Err(de::Error::custom(format!("duplicate member `{k}`")));
                    }
                    out.insert(k, v);
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug)]
pub struct JoseHeader {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// A structurally valid, not yet verified token.
pub struct Parsed<'a> {
    pub raw: &'a str,
    pub header: JoseHeader,
    pub claims: Map<String, Value>,
    pub signing_input: &'a str,
    pub signature: &'a str,
    pub signature_bytes: Vec<u8>,
}

impl Parsed<'_> {
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
    fn expires(&self, leeway: f64) -> f64 {
        self.claims
            .get("exp")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            + leeway
    }
}

fn b64url(part: &str) -> Result<Vec<u8>, Reject> {
    // Strict: the URL-safe alphabet only, no padding, canonical trailing bits.
    if !part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid_token(
            "token_malformed",
            "the token is not base64url",
        ));
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| invalid_token("token_malformed", "the token is not base64url"))
}

/// Structure checks shared by every JWT authenticator, before any key is touched.
pub fn parse(token: &str) -> Result<Parsed<'_>, Reject> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid_token("token_too_large", "the token is too large"));
    }
    let malformed = || {
        invalid_token(
            "token_malformed",
            "the token is not a JWS compact serialization",
        )
    };
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(malformed());
    }
    let header: StrictObject = serde_json::from_slice(&b64url(h)?).map_err(|_| malformed())?;
    let header = header.0;
    let alg = match header.get("alg") {
        Some(Value::String(a)) => a.clone(),
        _ => return Err(malformed()),
    };
    let text = |k: &str| match header.get(k) {
        None => Ok(None),
        Some(Value::String(v)) => Ok(Some(v.clone())),
        Some(_) => Err(malformed()),
    };
    let kid = text("kid")?;
    let typ = text("typ")?;
    // We implement no JWS extension: any `crit` is one we do not understand (RFC 7515 4.1.11).
    if header.contains_key("crit") {
        return Err(invalid_token(
            "token_crit_unsupported",
            "the token uses an unsupported critical header",
        ));
    }
    if header.get("b64").is_some_and(|v| v != &Value::Bool(true)) {
        return Err(invalid_token(
            "token_crit_unsupported",
            "unencoded payloads are not accepted",
        ));
    }
    let signature_bytes = b64url(s)?;
    let claims: StrictObject = serde_json::from_slice(&b64url(p)?).map_err(|_| malformed())?;
    Ok(Parsed {
        raw: token,
        header: JoseHeader { alg, kid, typ },
        claims: claims.0,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature: s,
        signature_bytes,
    })
}

// ------------------------------------------------------------------------------------------------
// Verified-token cache

#[derive(Clone)]
pub struct CachedIdentity {
    pub identity: Arc<Identity>,
    pub jti: Option<Box<str>>,
}

struct Entry {
    value: CachedIdentity,
    expires: f64,
    /// The key set generation it was verified under (a rotated-away key must not keep passing).
    generation: u64,
}

/// Keyed by SHA-256 of the token; bounded; entries never outlive the token's `exp` (+ leeway).
pub struct VerifyCache {
    map: DashMap<[u8; 32], Entry>,
    max_entries: usize,
    /// Where the next eviction starts.
    cursor: std::sync::atomic::AtomicUsize,
}

impl VerifyCache {
    pub fn new(max_entries: usize) -> VerifyCache {
        VerifyCache {
            map: DashMap::new(),
            max_entries,
            cursor: Default::default(),
        }
    }

    fn get(&self, token: &str, now: f64, generation: u64) -> Option<CachedIdentity> {
        let key = crate::keys::hash_key(token);
        let hit = self.map.get(&key)?;
        if hit.expires < now || hit.generation != generation {
            drop(hit);
            self.map.remove(&key);
            return None;
        }
        Some(hit.value.clone())
    }

    fn insert(&self, token: &str, value: CachedIdentity, expires: f64, generation: u64) {
        if self.map.len() >= self.max_entries {
            self.evict();
        }
        self.map.insert(
            crate::keys::hash_key(token),
            Entry {
                value,
                expires,
                generation,
            },
        );
    }

    pub fn clear(&self) {
        self.map.clear();
    }

    /// Drops expired entries; if still full, an arbitrary sixteenth (cheap, and a flood of valid
    /// tokens can only ever churn the cache, never grow it).
    fn evict(&self) {
        let now = unix_now();
        self.map.retain(|_, e| e.expires >= now);
        if self.map.len() >= self.max_entries {
            super::forget_down_to(
                &self.map,
                super::keep_after_eviction(self.max_entries),
                &self.cursor,
            );
        }
    }

    /// Periodic sweep of expired entries.
    pub fn sweep(&self, now: f64) {
        self.map.retain(|_, e| e.expires >= now);
    }
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn structure_is_checked_before_keys() {
        let h = enc(r#"{"alg":"RS256","kid":"k"}"#);
        let p = enc(r#"{"iss":"i","sub":"s","exp":1}"#);
        assert!(parse(&format!("{h}.{p}.c2ln")).is_ok());
        for bad in [
            format!("{h}.{p}"),
            format!("{h}.{p}.c2ln.extra"),
            format!("{h}.{p}."),
            format!("{h}.{p}.c2ln=="),
            format!("{h}.{p}.c2l+"),
            format!("{h}=.{p}.c2ln"),
            format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","alg":"none"}"#)),
            format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","crit":["exp"]}"#)),
            format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","crit":[]}"#)),
            format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","b64":false}"#)),
            format!("{}.{p}.c2ln", enc(r#"{"alg":"RS256","kid":7}"#)),
            format!("{h}.{}.c2ln", enc(r#"{"sub":"a","sub":"b"}"#)),
            format!("{h}.{}.c2ln", enc(r#"[1,2]"#)),
            format!("{h}.{p}.{}", "A".repeat(MAX_TOKEN_BYTES)),
        ] {
            assert!(parse(&bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn bearer_scheme() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(bearer(&v("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&v("bEaReR    abc")), Some("abc"));
        assert_eq!(bearer(&v("Bearerabc")), None);
        assert_eq!(bearer(&v("Basic abc")), None);
        assert_eq!(bearer(&v("Bear")), None);
    }
}
