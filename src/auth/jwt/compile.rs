//! A `jwt` authenticator from its config section: issuer, audiences and algorithms (never taken
//! from the token), exactly one key source, token sources, claim headers and the cache.

use super::cache::VerifyCache;
use super::jwks::{check_fetch_url, JwksLocation, JwksPool, JwksTiming};
use super::keyset::KeySet;
use super::{IssuerInfo, IssuerKeys, JwtAuthn, Keys};
use crate::auth::request::CredentialSource;
use crate::config::issues::Issues;
use crate::config::raw::RawJwt;
use crate::state::Shared;
use crate::values::{resolve, Dur};
use jsonwebtoken::Algorithm;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl JwtAuthn {
    /// `authenticators.NAME` of `type: jwt`. Remote key sets come from `jwks`, which reuses the
    /// serving config's when their source and timing did not change.
    pub fn compile(
        name: &str,
        j: &RawJwt,
        base: &Path,
        shared: &Shared,
        server: Option<&IssuerInfo>,
        jwks: &mut JwksPool<'_>,
        issues: &mut Issues,
    ) -> Option<JwtAuthn> {
        let p = format!("authenticators.{name}");
        let before = issues.len();
        let own = j.oauth_server == Some(true);
        let server = if own {
            check_own_server(j, &p, server, issues)
        } else {
            if j.issuer.0.is_empty() {
                issues.add(format!("{p}.issuer"), "must not be empty");
            }
            None
        };
        let default_algs: Vec<crate::values::S> = server
            .map(|s| vec![crate::values::S(s.algorithm.as_str().to_owned())])
            .unwrap_or_default();
        let raw_algs = if j.algorithms.is_empty() {
            &default_algs
        } else {
            &j.algorithms
        };
        if j.audiences.is_empty() {
            issues.add(
                format!("{p}.audiences"),
                "list the audiences this gateway accepts (the token's `aud` must name one)",
            );
        }
        if raw_algs.is_empty() && !own {
            issues.add(
                format!("{p}.algorithms"),
                "required: the only algorithms accepted (never taken from the token)",
            );
        }
        let mut algorithms = Vec::new();
        for (i, a) in raw_algs.iter().enumerate() {
            match Algorithm::from_str(a.as_str()) {
                Ok(alg) => algorithms.push(alg),
                Err(_) => issues.add(
                    format!("{p}.algorithms[{i}]"),
                    format!("`{a}` is not supported (HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)"),
                ),
            }
        }
        let dur = |d: Option<Dur>, default: u64| d.map_or(Duration::from_secs(default), |d| d.0);
        let timing = JwksTiming {
            refresh: dur(j.jwks_refresh, 300),
            cooldown: dur(j.jwks_cooldown, 30),
            max_stale: dur(j.jwks_max_stale, 86_400),
        };
        if timing.refresh.is_zero() {
            issues.add(format!("{p}.jwks_refresh"), "must be greater than 0");
        }
        let keys = match server {
            Some(_) => Some(Keys::Issuer(IssuerKeys::new(shared.oauth.clone()))),
            None if own => None,
            None => compile_keys(name, j, &algorithms, timing, base, jwks, issues),
        };
        let mut token_from = Vec::new();
        for (i, t) in j.token_from.iter().flatten().enumerate() {
            match CredentialSource::parse(t.as_str()) {
                Ok(s) => token_from.push(s),
                Err(e) => issues.add(format!("{p}.token_from[{i}]"), e),
            }
        }
        if token_from.is_empty() {
            token_from.push(CredentialSource::Header);
        }
        let claims_to_headers = compile_claim_headers(j, &p, issues);
        let cache_entries = j.verify_cache.as_ref().map_or(100_000, |c| c.max_entries.0);
        if issues.len() > before {
            return None;
        }
        let Some(keys) = keys else {
            issues.add(p, "no key source");
            return None;
        };
        Some(JwtAuthn {
            name: Arc::from(name),
            issuer: server.map_or_else(|| j.issuer.0.clone(), |s| s.issuer.clone()),
            audiences: j.audiences.iter().map(|a| a.0.clone()).collect(),
            algorithms,
            keys,
            leeway: dur(j.leeway, 30).as_secs_f64(),
            // RFC 9068: the server's access tokens are `at+jwt`, and only those pass
            require_typ: if own {
                Some("at+jwt".to_owned())
            } else {
                j.require_typ.as_ref().map(|t| {
                    let t = t.as_str();
                    t.strip_prefix("application/").unwrap_or(t).to_owned()
                })
            },
            token_from,
            cache: (cache_entries > 0).then(|| VerifyCache::new(cache_entries as usize)),
            scopes_claim: j
                .scopes_claim
                .as_ref()
                .map_or_else(|| "scope".to_owned(), |s| s.0.clone()),
            claims_to_headers,
            revocations: shared.revocations.clone(),
            oauth: own.then(|| shared.oauth.clone()),
        })
    }
}

/// `oauth_server: true`: the issuer and keys come from the `oauth_server` section, so none may
/// be given here, and the section must exist.
fn check_own_server<'a>(
    j: &RawJwt,
    p: &str,
    server: Option<&'a IssuerInfo>,
    issues: &mut Issues,
) -> Option<&'a IssuerInfo> {
    for (set, field) in [
        (!j.issuer.0.is_empty(), "issuer"),
        (j.jwks_url.is_some(), "jwks_url"),
        (j.discovery.is_some(), "discovery"),
        (j.jwks_file.is_some(), "jwks_file"),
        (j.public_key.is_some(), "public_key"),
        (j.secret.is_some(), "secret"),
        (j.jwks_refresh.is_some(), "jwks_refresh"),
        (j.jwks_cooldown.is_some(), "jwks_cooldown"),
        (j.jwks_max_stale.is_some(), "jwks_max_stale"),
    ] {
        if set {
            issues.add(
                format!("{p}.{field}"),
                "not with oauth_server: true (the issuer and its keys come from the oauth_server section)",
            );
        }
    }
    if let Some(t) = &j.require_typ {
        let t = t.as_str();
        if !t
            .strip_prefix("application/")
            .unwrap_or(t)
            .eq_ignore_ascii_case("at+jwt")
        {
            issues.add(
                format!("{p}.require_typ"),
                "the server's access tokens are `at+jwt` (RFC 9068); leave it out",
            );
        }
    }
    if server.is_none() {
        issues.add(
            format!("{p}.oauth_server"),
            "there is no oauth_server section whose tokens this could verify",
        );
    }
    server
}

/// Exactly one of `jwks_url`, `discovery: true`, `jwks_file`, `public_key`, `secret`, and keys
/// that fit the configured algorithms (HMAC only from secrets and `oct` JWKs).
fn compile_keys(
    name: &str,
    j: &RawJwt,
    algorithms: &[Algorithm],
    timing: JwksTiming,
    base: &Path,
    jwks: &mut JwksPool<'_>,
    issues: &mut Issues,
) -> Option<Keys> {
    let p = format!("authenticators.{name}");
    let n_sources = [
        j.jwks_url.is_some(),
        j.discovery == Some(true),
        j.jwks_file.is_some(),
        j.public_key.is_some(),
        j.secret.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    let hmac = algorithms.iter().any(|a| is_hmac(*a));
    let fits = |set: &KeySet| {
        algorithms
            .iter()
            .any(|a| set.candidates(None, *a).next().is_some())
    };
    let mut err = |f: &str, m: String| {
        let at = if f.is_empty() {
            p.clone()
        } else {
            format!("{p}.{f}")
        };
        issues.add(at, m);
        None
    };
    if n_sources != 1 {
        return err("", "give exactly one key source: jwks_url, discovery: true, jwks_file, public_key or secret".into());
    }
    if let Some(secret) = &j.secret {
        if algorithms.iter().any(|a| !is_hmac(*a)) {
            err(
                "algorithms",
                "a `secret` only verifies HS256/HS384/HS512".into(),
            );
        }
        if secret.0.len() < 32 {
            return err(
                "secret",
                "must be at least 32 bytes (HMAC keys shorter than the hash are guessable)".into(),
            );
        }
        return Some(Keys::Static(Arc::new(KeySet::from_secret(
            secret.0.as_bytes(),
        ))));
    }
    if hmac && j.jwks_file.is_none() {
        return err("algorithms", "HS256/HS384/HS512 need a `secret` (or `oct` keys in a jwks_file); public keys never verify HMAC".into());
    }
    if let Some(f) = &j.public_key {
        let file = resolve(base, f.as_str());
        return match std::fs::read(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))
            .and_then(|pem| KeySet::from_public_pem(&pem))
        {
            Ok(set) if !fits(&set) => err("public_key", "the key fits none of `algorithms`".into()),
            Ok(set) => Some(Keys::Static(Arc::new(set))),
            Err(e) => err("public_key", e),
        };
    }
    if let Some(f) = &j.jwks_file {
        let file = resolve(base, f.as_str());
        return match std::fs::read(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))
            .and_then(|b| KeySet::from_jwks(&b, true))
        {
            Ok((set, skipped)) => {
                for s in skipped {
                    tracing::warn!(authenticator = name, skipped = %s, "jwks_file key skipped");
                }
                if !fits(&set) {
                    return err("jwks_file", "no key in the file fits `algorithms`".into());
                }
                Some(Keys::Static(Arc::new(set)))
            }
            Err(e) => err("jwks_file", e),
        };
    }
    let location = match &j.jwks_url {
        Some(u) => {
            if let Err(e) = check_fetch_url(u.as_str()) {
                err("jwks_url", e);
            }
            JwksLocation::Url(u.0.clone())
        }
        None => {
            if let Err(e) = check_fetch_url(j.issuer.as_str()) {
                err(
                    "discovery",
                    format!("discovery needs an https issuer URL: {e}"),
                );
            }
            JwksLocation::Discovery(j.issuer.0.clone())
        }
    };
    Some(Keys::Remote(jwks.get(location, timing)))
}

/// `claims_to_headers`: names must start with `X-Auth-` (so client copies are stripped) and not
/// be one of the gateway's own identity headers.
fn compile_claim_headers(
    j: &RawJwt,
    p: &str,
    issues: &mut Issues,
) -> Vec<(http::HeaderName, String)> {
    let mut out = Vec::new();
    for (h, claim) in j.claims_to_headers.iter().flatten() {
        let lower = h.to_ascii_lowercase();
        if !lower.starts_with("x-auth-") || crate::headers::is_identity_header(&lower) {
            issues.add(
                format!("{p}.claims_to_headers.{h}"),
                "header names must start with X-Auth- (so client copies are stripped) and not be one of the gateway's own",
            );
            continue;
        }
        match http::HeaderName::from_bytes(lower.as_bytes()) {
            Ok(n) => out.push((n, claim.0.clone())),
            Err(_) => issues.add(format!("{p}.claims_to_headers.{h}"), "not a header name"),
        }
    }
    out
}
