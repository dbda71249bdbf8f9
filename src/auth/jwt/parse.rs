//! Structure checks of a compact JWS, before any key is touched: three base64url segments (strict
//! alphabet, no padding), JSON objects without duplicate members, a string `alg`, no `crit` and no
//! unencoded payload.

use super::reject::invalid_token;
use crate::error::{Reason, Reject};
use base64::Engine;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::fmt;

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

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
    pub fn expires(&self, leeway: f64) -> f64 {
        self.claims
            .get("exp")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            + leeway
    }
}

pub fn b64url(part: &str) -> Result<Vec<u8>, Reject> {
    // Strict: the URL-safe alphabet only, no padding, canonical trailing bits.
    if !part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid_token(
            Reason::TokenMalformed,
            "the token is not base64url",
        ));
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| invalid_token(Reason::TokenMalformed, "the token is not base64url"))
}

/// Structure checks shared by every JWT authenticator, before any key is touched.
pub fn parse(token: &str) -> Result<Parsed<'_>, Reject> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid_token(
            Reason::TokenTooLarge,
            "the token is too large",
        ));
    }
    let malformed = || {
        invalid_token(
            Reason::TokenMalformed,
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
            Reason::TokenCritUnsupported,
            "the token uses an unsupported critical header",
        ));
    }
    if header.get("b64").is_some_and(|v| v != &Value::Bool(true)) {
        return Err(invalid_token(
            Reason::TokenCritUnsupported,
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
}
