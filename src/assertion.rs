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
    /// By [`cache_key`]; foldhash (randomly seeded) instead of SipHash: the keys are identities
    /// the chain proved, and the lookup is on every request of the route.
    cache: DashMap<Box<[u8]>, (HeaderValue, i64), foldhash::fast::RandomState>,
}

/// The cache key of an assertion: the signing key and every identity field the claims carry,
/// each length-prefixed (no two identities share a key, whatever bytes their fields hold),
/// written into `out`.
fn cache_key(out: &mut Vec<u8>, kid: &str, id: &Identity) {
    fn field(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    }
    fn opt(out: &mut Vec<u8>, b: Option<&str>) {
        match b {
            Some(s) => field(out, s.as_bytes()),
            // absent differs from empty
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
    out.clear();
    field(out, kid.as_bytes());
    field(out, id.method.as_str().as_bytes());
    opt(out, id.subject.as_deref());
    opt(out, id.key_id.as_deref());
    opt(out, id.issuer.as_deref());
    out.extend_from_slice(&(id.scopes.len() as u32).to_le_bytes());
    for s in id.scopes.iter() {
        field(out, s.as_bytes());
    }
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
            cache: DashMap::default(),
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
        thread_local! {
            static KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // The key is built in a buffer of this thread: a hit allocates nothing.
        let hit = KEY.with_borrow_mut(|key| {
            cache_key(key, &signer.kid, id);
            self.cache
                .get(key.as_slice())
                .filter(|hit| hit.1 > now)
                .map(|hit| hit.0.clone())
        });
        if hit.is_some() {
            return hit;
        }
        let scopes = id.scopes.join(" ");
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
        let mut key = Vec::new();
        cache_key(&mut key, &signer.kid, id);
        self.cache.insert(
            key.into_boxed_slice(),
            (value.clone(), now + (self.ttl / 4).max(1)),
        );
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(subject: Option<&str>, key_id: Option<&str>, scopes: &[&str]) -> Identity {
        let mut i = Identity::anonymous();
        i.subject = subject.map(Into::into);
        i.key_id = key_id.map(Into::into);
        i.scopes = scopes
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
            .into();
        i
    }

    fn key(i: &Identity) -> Vec<u8> {
        let mut k = Vec::new();
        cache_key(&mut k, "kid-1", i);
        k
    }

    #[test]
    fn no_two_identities_share_a_cache_key() {
        let cases = [
            id(Some("a|b"), Some("c"), &[]),
            id(Some("a"), Some("b|c"), &[]),
            id(Some(""), None, &[]),
            id(None, Some(""), &[]),
            id(None, None, &[]),
            id(Some("x"), None, &["read write"]),
            id(Some("x"), None, &["read", "write"]),
            id(Some("x"), None, &["readwrite"]),
        ];
        for (i, a) in cases.iter().enumerate() {
            for b in &cases[i + 1..] {
                assert_ne!(key(a), key(b), "{a:?} and {b:?}");
            }
        }
        assert_eq!(key(&cases[0]), key(&id(Some("a|b"), Some("c"), &[])));
    }
}
