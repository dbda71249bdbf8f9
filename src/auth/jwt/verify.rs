//! Signature verification with the keys the config chose: only keys of the token's algorithm's
//! type (and a JWK's own `alg`), by `kid` when the token names one, else at most a few.

use super::keyset::KeySet;
use super::parse::{b64url, Parsed};
use jsonwebtoken::Algorithm;
use serde_json::Value;

/// Without a `kid`, at most this many keys are tried (bounds the CPU a forged token can cost).
const MAX_KEYS_WITHOUT_KID: usize = 4;

/// `None`: no candidate key; `Some(ok)`: whether a candidate verified it.
pub fn check_signature(
    set: &KeySet,
    token: &Parsed<'_>,
    kid: Option<&str>,
    alg: Algorithm,
) -> Option<bool> {
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
            return Some(true);
        }
    }
    any.then_some(false)
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
    let header: Value = serde_json::from_slice(&b64url(h).map_err(|e| e.description.to_string())?)
        .map_err(|e| format!("header: {e}"))?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or("no alg")?;
    let alg: Algorithm = alg.parse().map_err(|_| format!("unsupported alg {alg}"))?;
    let raw = b64url(sig).map_err(|e| e.description.to_string())?;
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
