//! The signed identity assertion (`routes[i].identity_token`): a short-lived JWT of who the
//! chain proved, for upstreams that verify rather than trust plain identity headers (Ory
//! Oathkeeper's `id_token` mutator, Pomerium's `X-Pomerium-Jwt-Assertion`). Signed with the
//! built-in authorization server's active key when `oauth_server` is configured, else with the
//! gateway's own key (made at start, in memory). Public keys at
//! `/.well-known/portcullis/jwks.json` on every listener. An assertion is kept per identity for
//! a quarter of its lifetime, so most requests only look it up.

use crate::auth::identity::Identity;
use crate::config::issues::Issues;
use crate::config::raw::RawIdentityToken;
use crate::oauth::signing::Signer;
use dashmap::DashMap;
use http::header::{HeaderName, HeaderValue};

/// The JWS `typ` of an assertion.
pub const TYP: &str = "portcullis-assertion+jwt";
/// Where the public keys are served, on every listener.
pub const JWKS_PATH: &str = "/.well-known/portcullis/jwks.json";
/// The issuer of assertions when there is no `oauth_server`.
pub const OWN_ISSUER: &str = "urn:portcullis:gateway";
/// Cached assertions per route, at most; past it the cache starts over.
const MAX_CACHED: usize = 100_000;

/// `routes[i].identity_token`.
#[derive(Debug)]
pub struct IdentityToken {
    pub header: HeaderName,
    pub ttl: i64,
    pub audience: String,
    cache: DashMap<String, (HeaderValue, i64)>,
}

impl IdentityToken {
    pub fn compile(raw: &RawIdentityToken, at: &str, issues: &mut Issues) -> Option<IdentityToken> {
        let p = format!("{at}.identity_token");
        let before = issues.len();
        let name = raw
            .header
            .as_ref()
            .map_or("x-auth-assertion", |h| h.as_str());
        let header = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h)
                if h.as_str().starts_with("x-auth-")
                    && !crate::headers::is_identity_header(h.as_str()) =>
            {
                Some(h)
            }
            _ => {
                issues.add(
                    format!("{p}.header"),
                    format!("`{name}`: a header name starting with X-Auth- (the gateway strips those from clients) and not one of its identity headers"),
                );
                None
            }
        };
        let ttl = match raw.ttl.as_ref().map(|t| t.0) {
            None => 60,
            Some(d) if (1..=3600).contains(&d.as_secs()) => d.as_secs() as i64,
            Some(_) => {
                issues.add(format!("{p}.ttl"), "a duration between 1s and 1h");
                0
            }
        };
        let audience = raw.audience.as_str().to_owned();
        if audience.is_empty()
            || audience
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\')
        {
            issues.add(
                format!("{p}.audience"),
                "required: the upstream's name for itself (the assertion's aud)",
            );
        }
        if issues.len() > before {
            return None;
        }
        Some(IdentityToken {
            header: header?,
            ttl,
            audience,
            cache: DashMap::new(),
        })
    }

    /// The assertion for `id` at `now`, signed by `signer` as `issuer`: from the cache while it
    /// has three quarters of its life left, else a new one.
    pub fn value(
        &self,
        id: &Identity,
        signer: &Signer,
        issuer: &str,
        now: i64,
    ) -> Option<HeaderValue> {
        let scopes = id.scopes.join(" ");
        let key = format!(
            "{}|{}|{}|{}|{}|{}",
            signer.kid,
            id.method.as_str(),
            id.subject.as_deref().unwrap_or(""),
            id.key_id.as_deref().unwrap_or(""),
            id.issuer.as_deref().unwrap_or(""),
            scopes
        );
        if let Some(hit) = self.cache.get(&key) {
            if hit.1 > now {
                return Some(hit.0.clone());
            }
        }
        let mut claims = serde_json::json!({
            "iss": issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.ttl,
            "jti": crate::keys::random_base62(22),
            "auth_method": id.method.as_str(),
        });
        if let Some(m) = claims.as_object_mut() {
            if let Some(s) = &id.subject {
                m.insert("sub".into(), s.as_ref().into());
            }
            if !scopes.is_empty() {
                m.insert("scope".into(), scopes.into());
            }
            if let Some(k) = &id.key_id {
                m.insert("key_id".into(), k.as_ref().into());
            }
            if let Some(i) = &id.issuer {
                m.insert("token_issuer".into(), i.as_str().into());
            }
        }
        let token = signer.sign_typ(TYP, claims.to_string().as_bytes()).ok()?;
        let value = HeaderValue::from_str(&token).ok()?;
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        self.cache
            .insert(key, (value.clone(), now + (self.ttl / 4).max(1)));
        Some(value)
    }
}
