//! Verification keys: a set of keys from a secret, a PEM public key or a JWK Set, each parsed
//! once for the algorithms it fits.
//!
//! A key is only ever used with algorithms of its own type and curve, and a JWK's `alg` pins it to
//! that one algorithm. Keys are never chosen from token headers (`jku`, `x5u`, `jwk`, `x5c`).

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Hmac,
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyKind::Hmac, HS256 | HS384 | HS512)
                | (KeyKind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyKind::EcP256, ES256)
                | (KeyKind::EcP384, ES384)
                | (KeyKind::Ed25519, EdDSA)
        )
    }
}

pub struct VKey {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// A JWK's `alg`: the only algorithm this key may be used with.
    pub alg: Option<Algorithm>,
    /// For HMAC (and as the reference implementation for the rest).
    pub key: DecodingKey,
    /// Public keys parsed once into aws-lc, per algorithm they fit: verification then skips the
    /// per-call key parsing (a few µs of every cold RSA verification).
    pub parsed: Vec<(Algorithm, aws_lc_rs::signature::ParsedPublicKey)>,
}

fn lc_alg(a: Algorithm) -> Option<&'static dyn aws_lc_rs::signature::VerificationAlgorithm> {
    use aws_lc_rs::signature as s;
    Some(match a {
        Algorithm::RS256 => &s::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &s::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &s::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &s::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &s::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &s::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &s::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &s::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &s::ED25519,
        _ => return None,
    })
}

/// Parses `bytes` (SPKI, PKCS#1 RSAPublicKey, an EC point or a raw Ed25519 key) for every
/// algorithm the key kind fits. A key aws-lc rejects for an algorithm is simply not usable with it.
fn parse_for(
    kind: KeyKind,
    bytes: &[u8],
) -> Vec<(Algorithm, aws_lc_rs::signature::ParsedPublicKey)> {
    use Algorithm::*;
    [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
    .into_iter()
    .filter(|a| kind.fits(*a))
    .filter_map(|a| {
        let lc = lc_alg(a)?;
        aws_lc_rs::signature::ParsedPublicKey::new(lc, bytes)
            .ok()
            .map(|p| (a, p))
    })
    .collect()
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017).
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn len(out: &mut Vec<u8>, l: usize) {
        if l < 0x80 {
            out.push(l as u8);
        } else {
            let b = l.to_be_bytes();
            let skip = b.iter().take_while(|x| **x == 0).count();
            out.push(0x80 | (b.len() - skip) as u8);
            out.extend_from_slice(&b[skip..]);
        }
    }
    fn int(out: &mut Vec<u8>, v: &[u8]) {
        let v = &v[v
            .iter()
            .take_while(|x| **x == 0)
            .count()
            .min(v.len().saturating_sub(1))..];
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        len(out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    int(&mut body, n);
    int(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.push(0x30);
    len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

impl VKey {
    /// The aws-lc parsed key for `alg`, when there is one.
    pub fn parsed_for(&self, alg: Algorithm) -> Option<&aws_lc_rs::signature::ParsedPublicKey> {
        self.parsed.iter().find(|(a, _)| *a == alg).map(|(_, p)| p)
    }
}

impl std::fmt::Debug for VKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VKey {
    pub fn usable_with(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<VKey>,
}

impl KeySet {
    /// Keys that may verify a token with this `kid` (when given) and `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.usable_with(alg) && (kid.is_none() || k.kid.as_deref() == kid))
    }

    /// Parses a JWK Set. Keys that are not for signatures, of unsupported types, or malformed are
    /// skipped and named in the second value; symmetric (`oct`) keys only when `allow_oct`.
    pub fn from_jwks(bytes: &[u8], allow_oct: bool) -> Result<(KeySet, Vec<String>), String> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JWK Set (JSON): {e}"))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("not a JWK Set: no `keys` array")?;
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for (i, jwk) in keys.iter().enumerate() {
            match parse_jwk(jwk, allow_oct) {
                Ok(Some(k)) => set.keys.push(k),
                Ok(None) => {}
                Err(e) => skipped.push(format!("keys[{i}]: {e}")),
            }
        }
        Ok((set, skipped))
    }

    /// A PEM public key (SPKI: RSA, EC P-256/P-384 or Ed25519).
    pub fn from_public_pem(pem: &[u8]) -> Result<KeySet, String> {
        use rustls_pki_types::pem::PemObject;
        let spki = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PEM public key (SPKI): {e}"))?;
        let der = spki.as_ref();
        const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
        const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
        let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
        let (kind, key) = if has(RSA) {
            (KeyKind::Rsa, DecodingKey::from_rsa_pem(pem))
        } else if has(P256) {
            (KeyKind::EcP256, DecodingKey::from_ec_pem(pem))
        } else if has(P384) {
            (KeyKind::EcP384, DecodingKey::from_ec_pem(pem))
        } else if has(ED25519) {
            (KeyKind::Ed25519, DecodingKey::from_ed_pem(pem))
        } else {
            return Err("unsupported public key type (use RSA, EC P-256/P-384 or Ed25519)".into());
        };
        let key = key.map_err(|e| format!("unusable public key: {e}"))?;
        Ok(KeySet {
            keys: vec![VKey {
                kid: None,
                kind,
                alg: None,
                key,
                parsed: parse_for(kind, der),
            }],
        })
    }

    pub fn from_secret(secret: &[u8]) -> KeySet {
        KeySet {
            keys: vec![VKey {
                kid: None,
                kind: KeyKind::Hmac,
                alg: None,
                key: DecodingKey::from_secret(secret),
                parsed: Vec::new(),
            }],
        }
    }
}

fn s<'a>(jwk: &'a Value, k: &str) -> Result<&'a str, String> {
    jwk.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing `{k}`"))
}

fn parse_jwk(jwk: &Value, allow_oct: bool) -> Result<Option<VKey>, String> {
    if let Some(u) = jwk.get("use") {
        if u.as_str() != Some("sig") {
            return Ok(None); // an encryption key: not ours to use
        }
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err("`kid` is not a string".into()),
    };
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(a)) => match Algorithm::from_str(a) {
            Ok(a) => Some(a),
            Err(_) => return Err(format!("unsupported `alg` {a}")),
        },
        Some(_) => return Err("`alg` is not a string".into()),
    };
    let bad = |e: jsonwebtoken::errors::Error| format!("malformed key: {e}");
    let b64 = |k: &str| -> Result<Vec<u8>, String> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s(jwk, k)?)
            .map_err(|_| format!("`{k}` is not base64url"))
    };
    let (kind, key, raw) = match s(jwk, "kty")? {
        "RSA" => (
            KeyKind::Rsa,
            DecodingKey::from_rsa_components(s(jwk, "n")?, s(jwk, "e")?).map_err(bad)?,
            rsa_public_key_der(&b64("n")?, &b64("e")?),
        ),
        "EC" => {
            let kind = match s(jwk, "crv")? {
                "P-256" => KeyKind::EcP256,
                "P-384" => KeyKind::EcP384,
                c => return Err(format!("unsupported curve {c}")),
            };
            let mut point = vec![0x04];
            point.extend(b64("x")?);
            point.extend(b64("y")?);
            (
                kind,
                DecodingKey::from_ec_components(s(jwk, "x")?, s(jwk, "y")?).map_err(bad)?,
                point,
            )
        }
        "OKP" => match s(jwk, "crv")? {
            "Ed25519" => (
                KeyKind::Ed25519,
                DecodingKey::from_ed_components(s(jwk, "x")?).map_err(bad)?,
                b64("x")?,
            ),
            c => return Err(format!("unsupported curve {c}")),
        },
        "oct" if allow_oct => (
            KeyKind::Hmac,
            DecodingKey::from_secret(&b64("k")?),
            Vec::new(),
        ),
        "oct" => return Err("symmetric keys are only accepted from jwks_file".into()),
        t => return Err(format!("unsupported key type {t}")),
    };
    let parsed = if kind == KeyKind::Hmac {
        Vec::new()
    } else {
        parse_for(kind, &raw)
    };
    if let Some(a) = alg {
        if !kind.fits(a) {
            return Err(format!("`alg` {a:?} does not fit a {kind:?} key"));
        }
    }
    Ok(Some(VKey {
        kid,
        kind,
        alg,
        key,
        parsed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwk_alg_pins_and_kinds_fit() {
        let doc = br#"{"keys":[
            {"kty":"EC","crv":"P-256","kid":"e","alg":"ES256",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","crv":"P-256","kid":"bad","alg":"RS256",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"oct","k":"c2VjcmV0"},
            {"kty":"RSA","use":"enc","n":"x","e":"AQAB"}
        ]}"#;
        let (set, skipped) = KeySet::from_jwks(doc, false).expect("parses");
        assert_eq!(set.keys.len(), 1);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(set.candidates(Some("e"), Algorithm::ES256).count(), 1);
        assert!(set.keys[0].parsed_for(Algorithm::ES256).is_some());
        assert!(set.keys[0].parsed_for(Algorithm::ES384).is_none());
        assert_eq!(set.candidates(Some("e"), Algorithm::ES384).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::HS256).count(), 0);
        let (set, _) = KeySet::from_jwks(doc, true).expect("parses");
        assert_eq!(set.candidates(None, Algorithm::HS256).count(), 1);
    }
}
