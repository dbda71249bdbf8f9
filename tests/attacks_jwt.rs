//! docs/attack-cases.md section 6 (JWT-01..JWT-21) as one table: every row is a token (or a
//! token pair) sent as raw HTTP/1.1 bytes to the `plain` listener, and the expected outcome:
//! either the status, the public `error` and the audit `reason`, with the recording upstream
//! seeing nothing; or a 200 with the identity headers the upstream must see.
//!
//! Tokens come from independent libraries: PyJWT and jwcrypto through tests/interop/mint.py, and
//! `cryptography`/jwcrypto through tests/interop/attack_tokens.py for the validly signed tokens
//! those APIs refuse to make (exact header/payload bytes, `b64: false`, duplicate members, a
//! P-384 key signing "ES256", an empty HMAC key, a 1024-bit RSA key, a JWE). Malformed tokens
//! are assembled by hand from base64url segments. Keys are published by a JWKS server on
//! loopback (common::jwks, as in tests/oidc.rs), so `kid`/`jku`/`x5u` cases meet a real remote
//! key set, and the `jku`/`x5u` targets are canary listeners that must never be connected to.
//!
//! tests/jwt.rs and tests/oidc.rs hold the algorithm matrix and a first forged-token list; this
//! file is the catalogue: every JWT-NN id of the document is a row here.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::jwks::JwksServer;
use common::raw::{request_until_closed, Resp};
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISS: &str = "https://idp.test";
const AUD: &str = "https://api.example.com";
/// The corp JWKS `jwks_cooldown` (JWT-07: at most one refetch per cooldown).
const COOLDOWN_SECS: u64 = 30;
/// The `jti` that JWT-20 revokes through the admin API.
const JTI_REVOKED: &str = "attacks-jwt-20-j1";

// ------------------------------------------------------------------------------------------------
// The table's vocabulary

/// Which key signs (private JWKs generated per run).
#[derive(Clone, Copy, Debug)]
enum K {
    /// RS256 2048, `kid: rsa-1`, in the JWKS (and in the `mixed` jwks_file)
    Rsa,
    /// P-256, `kid: ec-1`, in the JWKS
    Ec,
    /// P-384, `kid: p384`, in the JWKS (ES384 is not an allowed algorithm)
    P384,
    /// RS256 2048, `kid: rsa-pinned`, published with `"alg": "RS256"`
    Pinned,
    /// RSA 1024, `kid: rsa-1024`, in the JWKS
    Rsa1024,
    /// the `oct` key `hs-1` of the `mixed` jwks_file
    Hs,
    /// the attacker's RSA key (never published)
    AttRsa,
    /// the attacker's P-256 key (never published)
    AttEc,
    /// RS256 `kid: rot-1`, published by the rotating JWKS until JWT-20 rotates it away
    Rot1,
    /// HMAC keyed with the JWKS RSA public key in one of its byte forms (JWT-02)
    RsaPubAs(Form),
    /// HMAC with an empty key (JWT-07)
    EmptyHmac,
}

#[derive(Clone, Copy, Debug)]
enum Form {
    SpkiPem,
    SpkiDer,
    Pkcs1Der,
    JwkJson,
}

/// How a row's token is made. Header texts may hold placeholders: `{CANARY}`, `{CANARY2}` (canary
/// listener ports), `{ADMIN}` (the gateway's admin URL), `{X5C}` (a self-signed certificate of the
/// attacker key), `{ATT_JWK}` (the attacker's public JWK), `{KID10K}` (10 KiB of `k`); payload
/// texts may hold `{GOOD}` (the baseline token).
#[derive(Clone, Copy)]
enum Tok {
    /// The baseline token: PyJWT, RS256, `kid: rsa-1`, baseline claims.
    Good,
    /// The same with `sub: u2`.
    Good2,
    /// PyJWT or jwcrypto through mint.py: header members (JSON text) and claims.
    Mint {
        lib: &'static str,
        alg: &'static str,
        key: K,
        header: &'static str,
        claims: fn(i64) -> Value,
    },
    /// attack_tokens.py `sign_raw`: exactly these header and payload texts, validly signed.
    Raw {
        alg: &'static str,
        key: K,
        header: &'static str,
        payload: fn(i64) -> String,
    },
    /// attack_tokens.py `jwe`: a compact JWE (RSA-OAEP, A256GCM) to the JWKS RSA key.
    Jwe,
    /// By hand: base64url(header) . base64url(payload) . `sig` (`{ZERO64}`: 64 zero bytes).
    Hand {
        header: &'static str,
        payload: fn(i64) -> String,
        sig: &'static str,
    },
    /// By hand, from the baseline token.
    Derived(fn(&str) -> String),
    /// The previous row's token, byte for byte (it is in the verified-token cache).
    Prev,
}

/// Done before the row is sent.
#[derive(Clone, Copy)]
enum Step {
    /// `POST /admin/revocations {jti, until}`
    Revoke(&'static str),
    /// The rotating JWKS drops `rot-1` for `rot-2`; waits until the gateway accepts a `rot-2`
    /// token (the background refresh has swapped the key set).
    RotateKeys,
}

#[derive(Clone, Copy)]
enum Want {
    /// 200; the upstream sees exactly one request, `uri`, with the identity headers of `sub`.
    Accept {
        uri: &'static str,
        sub: &'static str,
    },
    /// Refused with `status` and `error`; the audit `reason` is one of `reasons`; UP sees nothing.
    Deny {
        status: u16,
        error: &'static str,
        reasons: &'static [&'static str],
    },
    /// JWT-18: 431 (the header limit) or 401 `token_too_large`; UP sees nothing.
    TooLarge,
    /// JWT-21(d): 400 `credential_duplicated` with UP seeing nothing, or 200 with the second
    /// credential removed (UP's query has no `access_token`, in any percent-encoding).
    DupOrStripped,
}

struct Case {
    id: &'static str,
    what: &'static str,
    /// The request target; `{T}` / `{T2}` are replaced with the tokens.
    target: &'static str,
    /// `Authorization` header values, one header each.
    auth: &'static [&'static str],
    tok: Tok,
    tok2: Option<Tok>,
    before: Option<Step>,
    want: Want,
}

const BEARER: &[&str] = &["Bearer {T}"];

const fn row(id: &'static str, what: &'static str, tok: Tok, want: Want) -> Case {
    Case {
        id,
        what,
        target: "/api/users",
        auth: BEARER,
        tok,
        tok2: None,
        before: None,
        want,
    }
}

impl Case {
    const fn on(self, target: &'static str) -> Case {
        Case { target, ..self }
    }
    const fn auth(self, auth: &'static [&'static str]) -> Case {
        Case { auth, ..self }
    }
    const fn second(self, t: Tok) -> Case {
        Case {
            tok2: Some(t),
            ..self
        }
    }
    const fn after(self, s: Step) -> Case {
        Case {
            before: Some(s),
            ..self
        }
    }
}

const fn mint(
    lib: &'static str,
    alg: &'static str,
    key: K,
    header: &'static str,
    claims: fn(i64) -> Value,
) -> Tok {
    Tok::Mint {
        lib,
        alg,
        key,
        header,
        claims,
    }
}

const fn raw(alg: &'static str, key: K, header: &'static str, payload: fn(i64) -> String) -> Tok {
    Tok::Raw {
        alg,
        key,
        header,
        payload,
    }
}

const fn hand(header: &'static str, sig: &'static str) -> Tok {
    Tok::Hand {
        header,
        payload: base_text,
        sig,
    }
}

const fn deny(reasons: &'static [&'static str]) -> Want {
    Want::Deny {
        status: 401,
        error: "invalid_token",
        reasons,
    }
}

const fn accept(uri: &'static str) -> Want {
    Want::Accept { uri, sub: "u1" }
}

const DUPLICATED: Want = Want::Deny {
    status: 400,
    error: "invalid_request",
    reasons: &["credential_duplicated"],
};
const OK: Want = accept("/api/users");
const MALFORMED: &[&str] = &["token_malformed"];
const ALG_NOT_ALLOWED: &[&str] = &["token_alg_not_allowed"];
const BAD_SIG: &[&str] = &["token_bad_signature"];
const UNKNOWN_KEY: &[&str] = &["token_unknown_key"];
/// No usable key for that kid, or a key that does not verify: either way never accepted.
const NO_KEY_OR_BAD_SIG: &[&str] = &["token_unknown_key", "token_bad_signature"];
const CRIT: &[&str] = &["token_crit_unsupported", "token_malformed"];
const CLAIM: &[&str] = &["token_claim_invalid"];
const AUDIENCE: &[&str] = &["token_wrong_audience"];
const ISSUER: &[&str] = &["token_unclaimed_issuer", "token_wrong_issuer"];
const TYP: &[&str] = &["token_typ_mismatch"];

/// Baseline claims (docs/attack-cases.md section 6), plus `role` for `claims_to_headers`.
fn base(now: i64) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "u1", "iat": now, "exp": now + 600,
           "scope": "read:users", "role": "reader"})
}

fn base_text(now: i64) -> String {
    base(now).to_string()
}

/// The baseline with `patch` members set (a JSON `null` is written as `null`).
fn with(now: i64, patch: Value) -> Value {
    let mut c = base(now);
    for (k, v) in patch.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn without(now: i64, key: &str) -> Value {
    let mut c = base(now);
    c.as_object_mut().unwrap().remove(key);
    c
}

const KID_RSA: &str = r#"{"kid":"rsa-1"}"#;

// ------------------------------------------------------------------------------------------------
// The table

static CASES: &[Case] = &[
    // libjwt alg=none, benmcollins/libjwt#6 https://github.com/benmcollins/libjwt/issues/6 ; gree/jose GHSA-9gxv-x7rp-r2hc ; cerberauth/vulnapi#180 https://github.com/cerberauth/vulnapi/issues/180
    row(
        "JWT-01",
        "alg none, empty signature (h.p.)",
        hand(r#"{"alg":"none"}"#, ""),
        deny(MALFORMED),
    ),
    row(
        "JWT-01",
        "alg none, signature AA",
        hand(r#"{"alg":"none"}"#, "AA"),
        deny(ALG_NOT_ALLOWED),
    ),
    row(
        "JWT-01",
        "alg None",
        hand(r#"{"alg":"None","typ":"JWT"}"#, "AA"),
        deny(ALG_NOT_ALLOWED),
    ),
    row(
        "JWT-01",
        "alg NONE with our kid",
        hand(r#"{"alg":"NONE","kid":"rsa-1"}"#, "AA"),
        deny(ALG_NOT_ALLOWED),
    ),
    row(
        "JWT-01",
        "alg nOnE",
        hand(r#"{"alg":"nOnE"}"#, "AA"),
        deny(ALG_NOT_ALLOWED),
    ),
    // node-jsonwebtoken GHSA-hjrf-2m68-5959 / CVE-2022-23541, payatu/vuln-nodejs-app#12 https://github.com/payatu/vuln-nodejs-app/pull/12 ; PyJWT CVE-2022-29217, jpadilla/pyjwt#1196 https://github.com/jpadilla/pyjwt/issues/1196
    row(
        "JWT-02",
        "HS256 keyed with the RSA SPKI PEM",
        mint(
            "jwcrypto",
            "HS256",
            K::RsaPubAs(Form::SpkiPem),
            KID_RSA,
            base,
        ),
        deny(ALG_NOT_ALLOWED),
    ),
    row(
        "JWT-02",
        "HS256 keyed with the RSA SPKI DER",
        mint(
            "jwcrypto",
            "HS256",
            K::RsaPubAs(Form::SpkiDer),
            KID_RSA,
            base,
        ),
        deny(ALG_NOT_ALLOWED),
    ),
    row(
        "JWT-02",
        "HS256 keyed with the RSA PKCS#1 DER",
        mint(
            "jwcrypto",
            "HS256",
            K::RsaPubAs(Form::Pkcs1Der),
            KID_RSA,
            base,
        ),
        deny(ALG_NOT_ALLOWED),
    ),
    row(
        "JWT-02",
        "HS256 keyed with the RSA JWK JSON",
        mint(
            "jwcrypto",
            "HS256",
            K::RsaPubAs(Form::JwkJson),
            KID_RSA,
            base,
        ),
        deny(ALG_NOT_ALLOWED),
    ),
    // the mixed setup: a jwks_file with an oct key and the RSA key, algorithms [RS256, PS256, HS256]
    row(
        "JWT-02",
        "control: a real HS256 token (oct key hs-1), mixed",
        mint("pyjwt", "HS256", K::Hs, r#"{"kid":"hs-1"}"#, base),
        accept("/mixed/users"),
    )
    .on("/mixed/users"),
    row(
        "JWT-02",
        "control: a real RS256 token (rsa-1), mixed",
        mint("jwcrypto", "RS256", K::Rsa, KID_RSA, base),
        accept("/mixed/users"),
    )
    .on("/mixed/users"),
    row(
        "JWT-02",
        "mixed: HS256 keyed with the SPKI PEM, kid rsa-1",
        mint(
            "jwcrypto",
            "HS256",
            K::RsaPubAs(Form::SpkiPem),
            KID_RSA,
            base,
        ),
        deny(NO_KEY_OR_BAD_SIG),
    )
    .on("/mixed/users"),
    row(
        "JWT-02",
        "mixed: HS256 keyed with the SPKI DER, kid rsa-1",
        mint(
            "jwcrypto",
            "HS256",
            K::RsaPubAs(Form::SpkiDer),
            KID_RSA,
            base,
        ),
        deny(NO_KEY_OR_BAD_SIG),
    )
    .on("/mixed/users"),
    row(
        "JWT-02",
        "mixed: HS256 keyed with the PKCS#1 DER, kid rsa-1",
        mint(
            "jwcrypto",
            "HS256",
            K::RsaPubAs(Form::Pkcs1Der),
            KID_RSA,
            base,
        ),
        deny(NO_KEY_OR_BAD_SIG),
    )
    .on("/mixed/users"),
    row(
        "JWT-02",
        "mixed: HS256 keyed with the JWK JSON, kid rsa-1",
        mint(
            "jwcrypto",
            "HS256",
            K::RsaPubAs(Form::JwkJson),
            KID_RSA,
            base,
        ),
        deny(NO_KEY_OR_BAD_SIG),
    )
    .on("/mixed/users"),
    row(
        "JWT-02",
        "mixed: HS256 keyed with the SPKI PEM, no kid",
        mint("jwcrypto", "HS256", K::RsaPubAs(Form::SpkiPem), "{}", base),
        deny(BAD_SIG),
    )
    .on("/mixed/users"),
    // CVE-2022-21449 psychic signatures, auth0/java-jwt#579 https://github.com/auth0/java-jwt/pull/579 ; ticarpi/jwt_tool#130 https://github.com/ticarpi/jwt_tool/issues/130
    row(
        "JWT-03",
        "ES256, kid ec-1, signature = 64 zero bytes",
        hand(r#"{"alg":"ES256","kid":"ec-1"}"#, "{ZERO64}"),
        deny(BAD_SIG),
    ),
    row(
        "JWT-03",
        "ES256, kid ec-1, DER r=s=0 (MAYCAQACAQA)",
        hand(r#"{"alg":"ES256","kid":"ec-1"}"#, "MAYCAQACAQA"),
        deny(&["token_bad_signature", "token_malformed"]),
    ),
    // CVE-2018-0114 (embedded jwk), cerberauth/vulnapi#3 https://github.com/cerberauth/vulnapi/issues/3 ; appsup-dart/jose#64 https://github.com/appsup-dart/jose/issues/64
    row(
        "JWT-04",
        "attacker RSA key in jwk, no kid",
        mint("jwcrypto", "RS256", K::AttRsa, r#"{"jwk":{ATT_JWK}}"#, base),
        deny(BAD_SIG),
    ),
    row(
        "JWT-04",
        "attacker RSA key in jwk, kid rsa-1",
        mint(
            "jwcrypto",
            "RS256",
            K::AttRsa,
            r#"{"kid":"rsa-1","jwk":{ATT_JWK}}"#,
            base,
        ),
        deny(BAD_SIG),
    ),
    row(
        "JWT-04",
        "attacker RSA key in jwk, its own kid",
        mint(
            "pyjwt",
            "RS256",
            K::AttRsa,
            r#"{"kid":"attacker","jwk":{ATT_JWK}}"#,
            base,
        ),
        deny(UNKNOWN_KEY),
    ),
    // andresriancho/jwt-fuzzer#2 (jku/x5u SSRF) https://github.com/andresriancho/jwt-fuzzer/issues/2 ; OWASP/CheatSheetSeries#2317 https://github.com/OWASP/CheatSheetSeries/pull/2317
    row(
        "JWT-05",
        "jku to the canary, attacker kid",
        mint(
            "pyjwt",
            "RS256",
            K::AttRsa,
            r#"{"kid":"attacker","jku":"http://127.0.0.1:{CANARY}/jwks.json"}"#,
            base,
        ),
        deny(UNKNOWN_KEY),
    ),
    row(
        "JWT-05",
        "jku to the canary, kid rsa-1",
        mint(
            "jwcrypto",
            "RS256",
            K::AttRsa,
            r#"{"kid":"rsa-1","jku":"http://127.0.0.1:{CANARY}/jwks.json"}"#,
            base,
        ),
        deny(BAD_SIG),
    ),
    row(
        "JWT-05",
        "x5u to the canary, no kid",
        mint(
            "pyjwt",
            "RS256",
            K::AttRsa,
            r#"{"x5u":"http://127.0.0.1:{CANARY}/c.pem"}"#,
            base,
        ),
        deny(BAD_SIG),
    ),
    row(
        "JWT-05",
        "jku to an admin-like path on a second canary",
        mint(
            "pyjwt",
            "RS256",
            K::AttRsa,
            r#"{"kid":"attacker","jku":"http://127.0.0.1:{CANARY2}/admin/keys"}"#,
            base,
        ),
        deny(UNKNOWN_KEY),
    ),
    // The admin listener keeps no connection count a test can read: the second canary above
    // stands in for it (the document's `127.0.0.1:9901/admin/keys`); this row checks the outcome.
    row(
        "JWT-05",
        "jku and x5u to the gateway's own admin listener",
        mint(
            "pyjwt",
            "RS256",
            K::AttRsa,
            r#"{"kid":"attacker","jku":"{ADMIN}/admin/keys","x5u":"{ADMIN}/admin/config"}"#,
            base,
        ),
        deny(UNKNOWN_KEY),
    ),
    // OWASP/CheatSheetSeries#2317 (above); openwallet-foundation/credo-ts#1958 https://github.com/openwallet-foundation/credo-ts/pull/1958
    row(
        "JWT-06",
        "x5c self-signed cert of the attacker key, no kid",
        mint("pyjwt", "RS256", K::AttRsa, r#"{"x5c":["{X5C}"]}"#, base),
        deny(BAD_SIG),
    ),
    row(
        "JWT-06",
        "x5c self-signed cert of the attacker key, kid rsa-1",
        mint(
            "jwcrypto",
            "RS256",
            K::AttRsa,
            r#"{"kid":"rsa-1","x5c":["{X5C}"]}"#,
            base,
        ),
        deny(BAD_SIG),
    ),
    // WebGoat/WebGoat#1538 (kid path traversal) https://github.com/WebGoat/WebGoat/issues/1538 ; WebGoat/WebGoat#2320 (kid SQLi) https://github.com/WebGoat/WebGoat/issues/2320
    row(
        "JWT-07",
        "kid ../../../../dev/null, HMAC with an empty key (mixed)",
        raw(
            "HS256",
            K::EmptyHmac,
            r#"{"alg":"HS256","kid":"../../../../dev/null"}"#,
            base_text,
        ),
        deny(UNKNOWN_KEY),
    )
    .on("/mixed/users"),
    row(
        "JWT-07",
        "kid ../../../../dev/null, ES256",
        mint(
            "jwcrypto",
            "ES256",
            K::AttEc,
            r#"{"kid":"../../../../dev/null"}"#,
            base,
        ),
        deny(UNKNOWN_KEY),
    ),
    row(
        "JWT-07",
        "kid SQL injection",
        mint(
            "jwcrypto",
            "ES256",
            K::AttEc,
            r#"{"kid":"x' OR '1'='1"}"#,
            base,
        ),
        deny(UNKNOWN_KEY),
    ),
    row(
        "JWT-07",
        "kid with a NUL",
        mint("pyjwt", "ES256", K::AttEc, r#"{"kid":"a\u0000b"}"#, base),
        deny(UNKNOWN_KEY),
    ),
    row(
        "JWT-07",
        "kid of 10 KiB",
        mint("jwcrypto", "ES256", K::AttEc, r#"{"kid":"{KID10K}"}"#, base),
        deny(UNKNOWN_KEY),
    ),
    // auth0/node-jsonwebtoken#1032 https://github.com/auth0/node-jsonwebtoken/issues/1032 ; fast-jwt GHSA-hm7r-c7qw-ghp6, nearform/fast-jwt#590 https://github.com/nearform/fast-jwt/issues/590
    row(
        "JWT-08",
        "crit [x-pol] with x-pol",
        mint(
            "pyjwt",
            "RS256",
            K::Rsa,
            r#"{"kid":"rsa-1","crit":["x-pol"],"x-pol":1}"#,
            base,
        ),
        deny(CRIT),
    ),
    row(
        "JWT-08",
        "crit []",
        mint(
            "pyjwt",
            "RS256",
            K::Rsa,
            r#"{"kid":"rsa-1","crit":[]}"#,
            base,
        ),
        deny(CRIT),
    ),
    row(
        "JWT-08",
        "crit [exp]",
        mint(
            "pyjwt",
            "RS256",
            K::Rsa,
            r#"{"kid":"rsa-1","crit":["exp"],"exp":1}"#,
            base,
        ),
        deny(CRIT),
    ),
    row(
        "JWT-08",
        "crit \"b64\" (a string)",
        mint(
            "pyjwt",
            "RS256",
            K::Rsa,
            r#"{"kid":"rsa-1","crit":"b64"}"#,
            base,
        ),
        deny(CRIT),
    ),
    // node-jsonwebtoken#1041 (RFC 7797 b64:false) https://github.com/auth0/node-jsonwebtoken/pull/1041
    row(
        "JWT-09",
        "b64 false with crit [b64], signature valid over the base64url payload",
        raw(
            "RS256",
            K::Rsa,
            r#"{"alg":"RS256","kid":"rsa-1","b64":false,"crit":["b64"]}"#,
            base_text,
        ),
        deny(CRIT),
    ),
    row(
        "JWT-09",
        "b64 false without crit",
        raw(
            "RS256",
            K::Rsa,
            r#"{"alg":"RS256","kid":"rsa-1","b64":false}"#,
            base_text,
        ),
        deny(CRIT),
    ),
    row(
        "JWT-09",
        "b64 \"false\" (a string)",
        raw(
            "RS256",
            K::Rsa,
            r#"{"alg":"RS256","kid":"rsa-1","b64":"false"}"#,
            base_text,
        ),
        deny(CRIT),
    ),
    row(
        "JWT-09",
        "b64 true (same as absent)",
        raw(
            "RS256",
            K::Rsa,
            r#"{"alg":"RS256","kid":"rsa-1","b64":true}"#,
            base_text,
        ),
        OK,
    ),
    // jwt/ruby-jwt#713 (duplicate claim names) https://github.com/jwt/ruby-jwt/pull/713 ; jsonwebtoken/jsonwebtoken.github.io#658 https://github.com/jsonwebtoken/jsonwebtoken.github.io/issues/658
    row(
        "JWT-10",
        "header {alg RS256, alg none}",
        raw(
            "RS256",
            K::Rsa,
            r#"{"alg":"RS256","kid":"rsa-1","alg":"none"}"#,
            base_text,
        ),
        deny(MALFORMED),
    ),
    row(
        "JWT-10",
        "duplicate sub",
        raw("RS256", K::Rsa, r#"{"alg":"RS256","kid":"rsa-1"}"#, |n| {
            dup_claims(n, r#""sub":"u1","sub":"admin""#)
        }),
        deny(MALFORMED),
    ),
    row(
        "JWT-10",
        "duplicate scope",
        raw("RS256", K::Rsa, r#"{"alg":"RS256","kid":"rsa-1"}"#, |n| {
            dup_claims(n, r#""sub":"u1","scope":"read:users","scope":"admin""#)
        }),
        deny(MALFORMED),
    ),
    row(
        "JWT-10",
        "duplicate exp",
        raw("RS256", K::Rsa, r#"{"alg":"RS256","kid":"rsa-1"}"#, |n| {
            dup_claims(
                n,
                &format!(r#""sub":"u1","exp":{},"exp":99999999999"#, n - 3600),
            )
        }),
        deny(MALFORMED),
    ),
    // Keats/jsonwebtoken GHSA-h395-gr6q-cpjc / CVE-2026-25537, panghu-huang/octocrate#58 https://github.com/panghu-huang/octocrate/issues/58 ; jpadilla/pyjwt#121 https://github.com/jpadilla/pyjwt/issues/121
    row(
        "JWT-11",
        "exp \"9999999999\"",
        mint("jwcrypto", "ES256", K::Ec, r#"{"kid":"ec-1"}"#, |n| {
            with(n, json!({"exp": "9999999999"}))
        }),
        deny(CLAIM),
    ),
    row(
        "JWT-11",
        "nbf \"99999999999\"",
        mint("jwcrypto", "ES256", K::Ec, r#"{"kid":"ec-1"}"#, |n| {
            with(n, json!({"nbf": "99999999999"}))
        }),
        deny(CLAIM),
    ),
    row(
        "JWT-11",
        "iat \"1\"",
        mint("pyjwt", "ES256", K::Ec, r#"{"kid":"ec-1"}"#, |n| {
            with(n, json!({"iat": "1"}))
        }),
        deny(CLAIM),
    ),
    row(
        "JWT-11",
        "exp null",
        mint("jwcrypto", "ES256", K::Ec, r#"{"kid":"ec-1"}"#, |n| {
            with(n, json!({"exp": null}))
        }),
        deny(CLAIM),
    ),
    row(
        "JWT-11",
        "exp true",
        mint("jwcrypto", "ES256", K::Ec, r#"{"kid":"ec-1"}"#, |n| {
            with(n, json!({"exp": true}))
        }),
        deny(CLAIM),
    ),
    row(
        "JWT-11",
        "exp [1]",
        mint("jwcrypto", "ES256", K::Ec, r#"{"kid":"ec-1"}"#, |n| {
            with(n, json!({"exp": [1]}))
        }),
        deny(CLAIM),
    ),
    row(
        "JWT-11",
        "no exp",
        mint("pyjwt", "RS256", K::Rsa, KID_RSA, |n| without(n, "exp")),
        deny(CLAIM),
    ),
    // jpadilla/pyjwt#1171 (oversized exp) https://github.com/jpadilla/pyjwt/issues/1171 ; own (leeway edges)
    // The document's edges are now-29 / now+31 against a 30 s leeway; tokens are minted before the
    // table runs, so the edges keep a 10 s margin to stay deterministic.
    row(
        "JWT-12",
        "exp now-20 (inside the 30 s leeway)",
        mint("pyjwt", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"iat": n - 100, "exp": n - 20}))
        }),
        OK,
    ),
    row(
        "JWT-12",
        "exp now-40",
        mint("pyjwt", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"iat": n - 100, "exp": n - 40}))
        }),
        deny(&["token_expired"]),
    ),
    row(
        "JWT-12",
        "nbf now+40",
        mint("jwcrypto", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"nbf": n + 40}))
        }),
        deny(&["token_not_yet_valid"]),
    ),
    row(
        "JWT-12",
        "iat now+40",
        mint("jwcrypto", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"iat": n + 40}))
        }),
        deny(&["token_iat_future"]),
    ),
    row(
        "JWT-12",
        "exp now+600.5 (a float)",
        mint("jwcrypto", "ES256", K::Ec, r#"{"kid":"ec-1"}"#, |n| {
            with(n, json!({"exp": n as f64 + 600.5}))
        }),
        OK,
    ),
    // SPEC section 2: time claims must fit a signed 64-bit count of seconds; a larger one is
    // invalid, never "no expiry".
    row(
        "JWT-12",
        "exp 1e300 (past a 64-bit count of seconds)",
        mint("jwcrypto", "ES256", K::Ec, r#"{"kid":"ec-1"}"#, |n| {
            with(n, json!({"exp": 1e300}))
        }),
        deny(&["token_claim_invalid"]),
    ),
    row(
        "JWT-12",
        "exp 2^63 (one past i64::MAX)",
        mint("pyjwt", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"exp": 9_223_372_036_854_775_808u64}))
        }),
        deny(&["token_claim_invalid"]),
    ),
    row(
        "JWT-12",
        "nbf -1e19 (below a 64-bit count)",
        mint("pyjwt", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"nbf": -1e19}))
        }),
        deny(&["token_claim_invalid"]),
    ),
    row(
        "JWT-12",
        "exp 1e999 (out of range)",
        raw("RS256", K::Rsa, r#"{"alg":"RS256","kid":"rsa-1"}"#, |n| {
            base_text(n).replace(&format!("\"exp\":{}", n + 600), "\"exp\":1e999")
        }),
        deny(MALFORMED),
    ),
    // jwt-go CVE-2020-26160, shellhub-io/shellhub#1157 https://github.com/shellhub-io/shellhub/issues/1157 ; GHSA-w73w-5m7g-f7qc, github/advisory-database#2905 https://github.com/github/advisory-database/pull/2905
    row(
        "JWT-13",
        "aud [evil, ours]",
        mint("jwcrypto", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"aud": ["https://evil", AUD]}))
        }),
        OK,
    ),
    row(
        "JWT-13",
        "aud []",
        mint("jwcrypto", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"aud": []}))
        }),
        deny(AUDIENCE),
    ),
    row(
        "JWT-13",
        "aud [ours, 5]",
        mint("jwcrypto", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"aud": [AUD, 5]}))
        }),
        deny(CLAIM),
    ),
    row(
        "JWT-13",
        "aud https://API.example.com",
        mint("pyjwt", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"aud": "https://API.example.com"}))
        }),
        deny(AUDIENCE),
    ),
    row(
        "JWT-13",
        "no aud",
        mint("pyjwt", "RS256", K::Rsa, KID_RSA, |n| without(n, "aud")),
        deny(AUDIENCE),
    ),
    // NodeDB-Lab/nodedb#61 (single-provider fallback ignoring iss) https://github.com/NodeDB-Lab/nodedb/issues/61
    row(
        "JWT-14",
        "iss with a trailing slash",
        mint("pyjwt", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"iss": "https://idp.test/"}))
        }),
        deny(ISSUER),
    ),
    row(
        "JWT-14",
        "no iss",
        mint("pyjwt", "RS256", K::Rsa, KID_RSA, |n| without(n, "iss")),
        deny(ISSUER),
    ),
    row(
        "JWT-14",
        "iss https://other-idp",
        mint("jwcrypto", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"iss": "https://other-idp"}))
        }),
        deny(ISSUER),
    ),
    row(
        "JWT-14",
        "iss [https://idp.test]",
        mint("jwcrypto", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"iss": [ISS]}))
        }),
        deny(ISSUER),
    ),
    // Flowfin/jellyfin-plugin-sso#1047 (typ confusion) https://github.com/Flowfin/jellyfin-plugin-sso/issues/1047 ; route /typed has require_typ: at+jwt
    row(
        "JWT-15",
        "typ JWT (an ID token)",
        mint("pyjwt", "RS256", K::Rsa, KID_RSA, base),
        deny(TYP),
    )
    .on("/typed/users"),
    row(
        "JWT-15",
        "typ application/at+jwt",
        mint(
            "jwcrypto",
            "RS256",
            K::Rsa,
            r#"{"kid":"rsa-1","typ":"application/at+jwt"}"#,
            base,
        ),
        accept("/typed/users"),
    )
    .on("/typed/users"),
    row(
        "JWT-15",
        "typ at+jwt",
        mint(
            "pyjwt",
            "ES256",
            K::Ec,
            r#"{"kid":"ec-1","typ":"at+jwt"}"#,
            base,
        ),
        accept("/typed/users"),
    )
    .on("/typed/users"),
    row(
        "JWT-15",
        "no typ",
        mint("jwcrypto", "RS256", K::Rsa, KID_RSA, base),
        deny(TYP),
    )
    .on("/typed/users"),
    // dvsekhvalnov/jose-jwt#236 https://github.com/dvsekhvalnov/jose-jwt/issues/236 ; json-jwt CVE-2023-51774, nov/json-jwt#120 https://github.com/nov/json-jwt/issues/120
    row(
        "JWT-16",
        "(a) a 5-segment JWE (RSA-OAEP, A256GCM) to the JWKS key",
        Tok::Jwe,
        deny(MALFORMED),
    ),
    row(
        "JWT-16",
        "(b) cty JWT, the payload is the baseline JWT itself",
        raw(
            "RS256",
            K::Rsa,
            r#"{"alg":"RS256","kid":"rsa-1","cty":"JWT"}"#,
            |_| "{GOOD}".into(),
        ),
        deny(MALFORMED),
    ),
    row(
        "JWT-16",
        "(b) cty JWT, the payload is the baseline JWT as a JSON string",
        raw(
            "RS256",
            K::Rsa,
            r#"{"alg":"RS256","kid":"rsa-1","cty":"JWT"}"#,
            |_| "\"{GOOD}\"".into(),
        ),
        deny(MALFORMED),
    ),
    row(
        "JWT-16",
        "(c) 4 segments: an empty 4th",
        Tok::Derived(|t| format!("{t}.")),
        deny(MALFORMED),
    ),
    row(
        "JWT-16",
        "(c) 4 segments: h.e30.p.s",
        Tok::Derived(|t| t.replacen('.', ".e30.", 1)),
        deny(MALFORMED),
    ),
    // node-jsonwebtoken GHSA-8cf7-32gw-wr33 / CVE-2022-23539 (payatu/vuln-nodejs-app#12 https://github.com/payatu/vuln-nodejs-app/pull/12)
    row(
        "JWT-17",
        "(a) ES256 signed by the P-384 key, kid p384",
        raw(
            "ES256",
            K::P384,
            r#"{"alg":"ES256","kid":"p384"}"#,
            base_text,
        ),
        deny(NO_KEY_OR_BAD_SIG),
    ),
    row(
        "JWT-17",
        "(a) ES256 signed by the P-384 key, no kid",
        raw("ES256", K::P384, r#"{"alg":"ES256"}"#, base_text),
        deny(NO_KEY_OR_BAD_SIG),
    ),
    row(
        "JWT-17",
        "control: RS256 with the pinned key (mixed)",
        mint("pyjwt", "RS256", K::Pinned, r#"{"kid":"rsa-pinned"}"#, base),
        accept("/mixed/users"),
    )
    .on("/mixed/users"),
    row(
        "JWT-17",
        "(b) PS256 with the RS256-pinned key (mixed)",
        mint("pyjwt", "PS256", K::Pinned, r#"{"kid":"rsa-pinned"}"#, base),
        deny(NO_KEY_OR_BAD_SIG),
    )
    .on("/mixed/users"),
    row(
        "JWT-17",
        "(c) RS256 signed by a 1024-bit key in the JWKS",
        mint("pyjwt", "RS256", K::Rsa1024, r#"{"kid":"rsa-1024"}"#, base),
        deny(NO_KEY_OR_BAD_SIG),
    ),
    // python-jose CVE-2024-33664, mpdavis/python-jose#352 https://github.com/mpdavis/python-jose/pull/352 ; jose2go CVE-2025-63811, dvsekhvalnov/jose2go#33 https://github.com/dvsekhvalnov/jose2go/issues/33
    row(
        "JWT-18",
        "a ~15 KiB valid token",
        mint("jwcrypto", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"pad": "p".repeat(10_900)}))
        }),
        OK,
    ),
    row(
        "JWT-18",
        "a 16 KiB+ valid token",
        mint("jwcrypto", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"pad": "p".repeat(12_500)}))
        }),
        Want::TooLarge,
    ),
    // own: strict base64url (the baseline token is sent first, so it is in the verified-token cache)
    row("JWT-19", "control: the baseline token", Tok::Good, OK),
    row(
        "JWT-19",
        "signature segment with its RFC 4648 padding",
        Tok::Derived(|t| pad_segment(t, 2)),
        deny(MALFORMED),
    ),
    row(
        "JWT-19",
        "payload segment with its RFC 4648 padding",
        Tok::Derived(|t| pad_segment(t, 1)),
        deny(MALFORMED),
    ),
    row(
        "JWT-19",
        "the whole token in the +/ alphabet",
        Tok::Derived(|t| t.replace('-', "+").replace('_', "/")),
        deny(MALFORMED),
    ),
    row(
        "JWT-19",
        "signature with non-canonical trailing bits (same bytes)",
        Tok::Derived(|t| non_canonical(t, 2)),
        deny(MALFORMED),
    ),
    row(
        "JWT-19",
        "header with non-canonical trailing bits (same bytes)",
        Tok::Derived(|t| non_canonical(t, 0)),
        deny(MALFORMED),
    ),
    row(
        "JWT-19",
        "control: the baseline token still passes",
        Tok::Good,
        OK,
    ),
    // own (SPEC section 2 revocation; jti denylist)
    row(
        "JWT-20",
        "a token with jti j1 (now cached)",
        mint("pyjwt", "RS256", K::Rsa, KID_RSA, |n| {
            with(n, json!({"jti": JTI_REVOKED}))
        }),
        OK,
    ),
    row(
        "JWT-20",
        "the same token after POST /admin/revocations j1",
        Tok::Prev,
        deny(&["token_revoked"]),
    )
    .after(Step::Revoke(JTI_REVOKED)),
    row(
        "JWT-20",
        "a token under rot-1 (now cached)",
        mint("pyjwt", "RS256", K::Rot1, r#"{"kid":"rot-1"}"#, base),
        accept("/rot/users"),
    )
    .on("/rot/users"),
    row(
        "JWT-20",
        "the same token after rot-1 left the JWKS",
        Tok::Prev,
        deny(UNKNOWN_KEY),
    )
    .on("/rot/users")
    .after(Step::RotateKeys),
    // own (SPEC section 2 "credential offered in more than one place"); route /q has token_from: [header, query:access_token]
    row(
        "JWT-21",
        "(a) two Authorization: Bearer headers (u1, u2)",
        Tok::Good,
        DUPLICATED,
    )
    .auth(&["Bearer {T}", "Bearer {T2}"])
    .second(Tok::Good2),
    row(
        "JWT-21",
        "(b) header and ?access_token",
        Tok::Good,
        DUPLICATED,
    )
    .on("/q/users?access_token={T2}")
    .second(Tok::Good2),
    row(
        "JWT-21",
        "(c) ?access_token=A&access_token=B",
        Tok::Good,
        DUPLICATED,
    )
    .on("/q/users?access_token={T}&access_token={T2}")
    .auth(&[])
    .second(Tok::Good2),
    // SPEC section 2: RFC 6750's access_token counts as a place even where the route reads only
    // the header (/api has token_from: [header])
    row(
        "JWT-21",
        "(e) header and ?access_token on a header-only route",
        Tok::Good,
        DUPLICATED,
    )
    .on("/api/users?access_token={T2}")
    .second(Tok::Good2),
    row(
        "JWT-21",
        "(e) header and ?access%5Ftoken on a header-only route",
        Tok::Good,
        DUPLICATED,
    )
    .on("/api/users?x=1&access%5Ftoken={T2}")
    .second(Tok::Good2),
    row(
        "JWT-21",
        "control: ?x=1&access_token=A is accepted and stripped",
        Tok::Good,
        accept("/q/users?x=1"),
    )
    .on("/q/users?x=1&access_token={T}")
    .auth(&[]),
    row(
        "JWT-21",
        "(d) header and ?access%5Ftoken",
        Tok::Good,
        Want::DupOrStripped,
    )
    .on("/q/users?access%5Ftoken={T2}")
    .second(Tok::Good2),
    row(
        "JWT-21",
        "(d) header and ?access%5ftoken (lower-case hex)",
        Tok::Good,
        Want::DupOrStripped,
    )
    .on("/q/users?access%5ftoken={T2}")
    .second(Tok::Good2),
    row(
        "JWT-21",
        "(d) ?access_token=A&access%5Ftoken=B, no header",
        Tok::Good,
        Want::DupOrStripped,
    )
    .on("/q/users?access_token={T}&access%5Ftoken={T2}")
    .auth(&[])
    .second(Tok::Good2),
];

/// A payload with the baseline's iss/aud/exp and `members` spliced in as raw text.
fn dup_claims(now: i64, members: &str) -> String {
    format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","iat":{now},"exp":{},"role":"reader",{members}}}"#,
        now + 600
    )
}

/// Segment `i` of the token with its RFC 4648 `=` padding (panics if it needs none).
fn pad_segment(t: &str, i: usize) -> String {
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    let pad = (4 - parts[i].len() % 4) % 4;
    assert!(pad > 0, "segment {i} needs no padding: {}", parts[i].len());
    parts[i].push_str(&"=".repeat(pad));
    parts.join(".")
}

/// Segment `i` with its unused trailing bits set: it decodes to the same bytes in a lenient
/// decoder, so it must not be taken as a different (or the same, cached) token.
fn non_canonical(t: &str, i: usize) -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    let seg = &parts[i];
    let unused_bits = match seg.len() % 4 {
        2 => 4,
        3 => 2,
        _ => panic!("segment {i} has no unused bits (length {})", seg.len()),
    };
    let last = *seg.as_bytes().last().unwrap();
    let v = ALPHA.iter().position(|c| *c == last).unwrap();
    assert_eq!(v & ((1 << unused_bits) - 1), 0, "the input is canonical");
    let changed = ALPHA[v | 1] as char;
    let mut s = seg[..seg.len() - 1].to_owned();
    s.push(changed);
    parts[i] = s;
    parts.join(".")
}

// ------------------------------------------------------------------------------------------------
// Python helpers (attack_tokens.py has the same contract as mint.py)

fn attack(reqs: &Value) -> Vec<String> {
    interop("attack_tokens.py", reqs)
}

fn parse_json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

// ------------------------------------------------------------------------------------------------
// Loopback servers: canaries (the JWKS endpoint is common::JwksServer)

/// A TCP listener that counts every connection and answers it with the attacker's JWKS (so a
/// gateway that did follow `jku`/`x5u` would find the attacker's key there).
struct Canary {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Canary {
    async fn start(body: String) -> Canary {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tcp.write_all(resp.as_bytes()).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        Canary { addr, accepted }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The query parameters of `uri` whose percent-decoded name is `access_token` (the JWT-21(d)
/// oracle: what an upstream that decodes names would read as a credential).
fn credential_params(uri: &str) -> Vec<&str> {
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter(|p| {
            let name = p.split_once('=').map_or(*p, |(k, _)| k);
            pct_decode(name) == "access_token"
        })
        .collect()
}

/// Percent-decodes a query parameter name (for the JWT-21(d) oracle).
fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ------------------------------------------------------------------------------------------------
// The fixture

/// (private JWK, public JWK)
type Pair = (Value, Value);

struct Keys {
    rsa: Pair,
    ec: Pair,
    p384: Pair,
    pinned: Pair,
    rsa1024: Pair,
    hs: Pair,
    att_rsa: Pair,
    att_ec: Pair,
    rot1: Pair,
    rot2: Pair,
    /// the RSA public key as SPKI PEM text, SPKI DER and PKCS#1 DER (base64url)
    spki_pem: String,
    spki_der: String,
    pkcs1_der: String,
    /// the RSA public JWK exactly as the JWKS publishes it
    rsa_jwk_text: String,
    /// standard base64 DER of a self-signed certificate of the attacker's RSA key
    x5c: String,
}

impl Keys {
    fn generate() -> Keys {
        let gen = [
            ("RS256", "rsa-1"),
            ("ES256", "ec-1"),
            ("ES384", "p384"),
            ("RS256", "rsa-pinned"),
            ("HS256", "hs-1"),
            ("RS256", "attacker"),
            ("ES256", "attacker-ec"),
            ("RS256", "rot-1"),
            ("RS256", "rot-2"),
        ];
        let out = common::mint(&Value::Array(
            gen.iter()
                .map(|(alg, kid)| json!({"mode": "keygen", "alg": alg, "kid": kid}))
                .collect(),
        ));
        let pairs: Vec<Pair> = out
            .iter()
            .map(|l| {
                let v = parse_json(l);
                (v["private"].clone(), v["public"].clone())
            })
            .collect();
        let mut pinned = pairs[3].clone();
        pinned.1["alg"] = json!("RS256");
        let extra = attack(&json!([
            {"mode": "keygen_rsa", "bits": 1024, "kid": "rsa-1024"},
            {"mode": "key_forms", "public": pairs[0].1},
            {"mode": "selfsigned", "private": pairs[5].0, "cn": "attacker"},
        ]));
        let r1024 = parse_json(&extra[0]);
        let forms = parse_json(&extra[1]);
        let cert = parse_json(&extra[2]);
        Keys {
            rsa: pairs[0].clone(),
            ec: pairs[1].clone(),
            p384: pairs[2].clone(),
            pinned,
            rsa1024: (r1024["private"].clone(), r1024["public"].clone()),
            hs: pairs[4].clone(),
            att_rsa: pairs[5].clone(),
            att_ec: pairs[6].clone(),
            rot1: pairs[7].clone(),
            rot2: pairs[8].clone(),
            spki_pem: forms["spki_pem"].as_str().unwrap().to_owned(),
            spki_der: forms["spki_der"].as_str().unwrap().to_owned(),
            pkcs1_der: forms["pkcs1_der"].as_str().unwrap().to_owned(),
            rsa_jwk_text: pairs[0].1.to_string(),
            x5c: cert["x5c"].as_str().unwrap().to_owned(),
        }
    }

    fn private(&self, k: K) -> Value {
        let oct = |bytes: &[u8]| json!({"kty": "oct", "k": b64url(bytes)});
        match k {
            K::Rsa => self.rsa.0.clone(),
            K::Ec => self.ec.0.clone(),
            K::P384 => self.p384.0.clone(),
            K::Pinned => self.pinned.0.clone(),
            K::Rsa1024 => self.rsa1024.0.clone(),
            K::Hs => self.hs.0.clone(),
            K::AttRsa => self.att_rsa.0.clone(),
            K::AttEc => self.att_ec.0.clone(),
            K::Rot1 => self.rot1.0.clone(),
            K::RsaPubAs(Form::SpkiPem) => oct(self.spki_pem.as_bytes()),
            K::RsaPubAs(Form::SpkiDer) => json!({"kty": "oct", "k": self.spki_der}),
            K::RsaPubAs(Form::Pkcs1Der) => json!({"kty": "oct", "k": self.pkcs1_der}),
            K::RsaPubAs(Form::JwkJson) => oct(self.rsa_jwk_text.as_bytes()),
            K::EmptyHmac => json!({"kty": "oct", "k": ""}),
        }
    }

    /// The JWKS the corp/typed/q authenticators fetch.
    fn published(&self) -> String {
        json!({"keys": [self.rsa.1, self.ec.1, self.p384.1, self.pinned.1, self.rsa1024.1]})
            .to_string()
    }
}

struct Fix {
    gw: Gw,
    up: Upstream,
    keys: Keys,
    jwks: JwksServer,
    rot: JwksServer,
    canary: Canary,
    canary2: Canary,
    audit: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Fix {
    async fn start() -> Fix {
        let keys = Keys::generate();
        let jwks = JwksServer::start(keys.published()).await;
        let rot = JwksServer::start(json!({"keys": [keys.rot1.1]}).to_string()).await;
        let attacker_jwks = json!({"keys": [keys.att_rsa.1, keys.att_ec.1]}).to_string();
        let canary = Canary::start(attacker_jwks.clone()).await;
        let canary2 = Canary::start(attacker_jwks).await;
        let up = Upstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mixed = dir.path().join("mixed-jwks.json");
        std::fs::write(
            &mixed,
            json!({"keys": [keys.hs.1, keys.rsa.1, keys.pinned.1]}).to_string(),
        )
        .unwrap();
        let audit = dir.path().join("audit.jsonl");
        let jwt = |extra: &str| {
            format!(
                "{{ type: jwt, issuer: \"{ISS}\", audiences: [\"{AUD}\"], leeway: 30s, claims_to_headers: {{ X-Auth-Role: role }}, {extra} }}"
            )
        };
        let corp_src = format!(
            "algorithms: [RS256, ES256], jwks_url: \"http://{}/jwks.json\", jwks_cooldown: {COOLDOWN_SECS}s",
            jwks.addr
        );
        let route = |name: &str, prefix: &str, authn: &str| {
            format!(
                "  - {{ name: {name}, match: {{ path_prefix: {prefix} }}, upstream: rec, auth: {{ any_of: [{authn}], scopes: [read:users] }} }}\n"
            )
        };
        let yaml = format!(
            "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\n\
             logging: {{ audit: \"{audit}\" }}\n\
             store: {{ sqlite: data/keys.db }}\n\
             limits: {{ header_timeout: 2s, idle_timeout: 5s, max_body_bytes: 1048576, max_connections: 64 }}\n\
             upstreams: {{ rec: {{ url: \"{rec}\" }} }}\n\
             authenticators:\n  keys: {{ type: api_key }}\n  corp: {corp}\n  typed: {typed}\n  mixed: {mixed_a}\n  q: {q}\n  rot: {rot_a}\n\
             routes:\n{r1}{r2}{r3}{r4}{r5}{r6}",
            audit = audit.display(),
            rec = up.url(),
            corp = jwt(&corp_src),
            typed = jwt(&format!("{corp_src}, require_typ: at+jwt")),
            mixed_a = jwt(&format!(
                "algorithms: [RS256, PS256, HS256], jwks_file: \"{}\"",
                mixed.display()
            )),
            q = jwt(&format!(
                "{corp_src}, token_from: [header, \"query:access_token\"]"
            )),
            rot_a = jwt(&format!(
                "algorithms: [RS256], jwks_url: \"http://{}/jwks.json\", jwks_refresh: 1s, jwks_cooldown: 1s",
                rot.addr
            )),
            r1 = route("users", "/api/users", "keys, corp"),
            r2 = route("typed", "/typed", "typed"),
            r3 = route("mixed", "/mixed", "mixed"),
            r4 = route("q", "/q", "q"),
            r5 = route("rot", "/rot", "rot"),
            r6 = "  - { name: public, match: { path_prefix: / }, upstream: rec, auth: none }\n",
        );
        let gw = Gw::start(&yaml).await;
        let fix = Fix {
            gw,
            up,
            keys,
            jwks,
            rot,
            canary,
            canary2,
            audit,
            _dir: dir,
        };
        fix.wait_jwks_loaded().await;
        fix
    }

    /// Waits until /readyz reports every remote key set `loaded` (the first fetch happens in the
    /// background at start).
    async fn wait_jwks_loaded(&self) {
        self.jwks.wait_hits_above(0).await;
        self.rot.wait_hits_above(0).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = get_json(&format!("{}/readyz", self.gw.admin())).await;
            let states: Vec<&Value> = r["jwks"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            if states.len() == 4 && states.iter().all(|s| s["state"] == "loaded") {
                return;
            }
            assert!(Instant::now() < deadline, "the JWKS did not load: {r}");
            tokio::task::yield_now().await;
        }
    }

    fn subst(&self, s: &str) -> String {
        s.replace("{CANARY}", &self.canary.addr.port().to_string())
            .replace("{CANARY2}", &self.canary2.addr.port().to_string())
            .replace("{ADMIN}", &self.gw.admin())
            .replace("{X5C}", &self.keys.x5c)
            .replace("{ATT_JWK}", &self.keys.att_rsa.1.to_string())
            .replace("{KID10K}", &"k".repeat(10 * 1024))
    }

    /// Every row's token (and second token), minted in two batches.
    fn tokens(&self, now: i64) -> (String, Vec<(String, Option<String>)>) {
        let sign = |lib: &str, alg: &str, key: Value, header: Value, claims: Value| json!({"mode": "sign", "lib": lib, "alg": alg, "key": key, "header": header, "claims": claims});
        let kid = json!({"kid": "rsa-1"});
        let first = common::mint(&json!([
            sign(
                "pyjwt",
                "RS256",
                self.private(K::Rsa),
                kid.clone(),
                base(now)
            ),
            sign(
                "pyjwt",
                "RS256",
                self.private(K::Rsa),
                kid,
                with(now, json!({"sub": "u2"}))
            ),
        ]));
        let (good, good2) = (first[0].clone(), first[1].clone());
        enum Pending {
            Done(String),
            Mint(usize),
            Attack(usize),
            Prev,
        }
        let mut mints = Vec::new();
        let mut attacks = Vec::new();
        let mut plan = |t: &Tok| -> Pending {
            match *t {
                Tok::Good => Pending::Done(good.clone()),
                Tok::Good2 => Pending::Done(good2.clone()),
                Tok::Mint {
                    lib,
                    alg,
                    key,
                    header,
                    claims,
                } => {
                    let h: Value = serde_json::from_str(&self.subst(header))
                        .unwrap_or_else(|e| panic!("{e}: {header}"));
                    mints.push(sign(lib, alg, self.private(key), h, claims(now)));
                    Pending::Mint(mints.len() - 1)
                }
                Tok::Raw {
                    alg,
                    key,
                    header,
                    payload,
                } => {
                    attacks.push(json!({"mode": "sign_raw", "alg": alg, "key": self.private(key),
                        "header": self.subst(header), "payload": payload(now).replace("{GOOD}", &good)}));
                    Pending::Attack(attacks.len() - 1)
                }
                Tok::Jwe => {
                    attacks.push(
                        json!({"mode": "jwe", "public": self.keys.rsa.1, "alg": "RSA-OAEP",
                        "enc": "A256GCM", "kid": "rsa-1", "plaintext": base_text(now)}),
                    );
                    Pending::Attack(attacks.len() - 1)
                }
                Tok::Hand {
                    header,
                    payload,
                    sig,
                } => Pending::Done(format!(
                    "{}.{}.{}",
                    b64url(self.subst(header).as_bytes()),
                    b64url(payload(now).as_bytes()),
                    sig.replace("{ZERO64}", &b64url(&[0u8; 64]))
                )),
                Tok::Derived(f) => Pending::Done(f(&good)),
                Tok::Prev => Pending::Prev,
            }
        };
        let plans: Vec<(Pending, Option<Pending>)> = CASES
            .iter()
            .map(|c| (plan(&c.tok), c.tok2.as_ref().map(&mut plan)))
            .collect();
        let minted = common::mint(&Value::Array(mints));
        let attacked = attack(&Value::Array(attacks));
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        let resolve = |p: &Pending, prev: Option<&String>| match p {
            Pending::Done(s) => s.clone(),
            Pending::Mint(i) => minted[*i].clone(),
            Pending::Attack(i) => attacked[*i].clone(),
            Pending::Prev => prev.expect("Prev in the first row").clone(),
        };
        for (p1, p2) in &plans {
            let prev = out.last().map(|(t, _)| t);
            let t1 = resolve(p1, prev);
            let t2 = p2.as_ref().map(|p| resolve(p, prev));
            out.push((t1, t2));
        }
        (good, out)
    }

    fn private(&self, k: K) -> Value {
        self.keys.private(k)
    }

    async fn step(&self, s: Step, now: i64) -> Result<(), String> {
        match s {
            Step::Revoke(jti) => {
                let (status, body) = admin_call(
                    &plain_client(),
                    &self.gw.admin(),
                    reqwest::Method::POST,
                    "/admin/revocations",
                    Some(json!({"jti": jti, "until": "2099-01-01T00:00:00Z"})),
                )
                .await;
                if status != 201 {
                    return Err(format!("POST /admin/revocations: {status} {body}"));
                }
                Ok(())
            }
            Step::RotateKeys => {
                let probe = common::mint(&json!([{"mode": "sign", "lib": "pyjwt", "alg": "RS256",
                    "key": self.keys.rot2.0, "header": {"kid": "rot-2"}, "claims": base(now)}]))
                .remove(0);
                self.rot
                    .serve(&json!({"keys": [self.keys.rot2.1]}).to_string());
                // the gateway accepts a rot-2 token once its background refresh swapped the set
                for _ in 0..30 {
                    let seen = self.rot.hits();
                    let raw = format!(
                        "GET /rot/probe HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {probe}\r\nConnection: close\r\n\r\n"
                    );
                    let r = request_until_closed(
                        self.gw.addr("plain"),
                        raw.as_bytes(),
                        Duration::from_secs(15),
                    )
                    .await?;
                    if r.status == 200 {
                        return Ok(());
                    }
                    self.rot.wait_hits_above(seen).await;
                }
                Err("the rotated JWKS (rot-2) was never accepted".into())
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Running the table

#[derive(Default)]
struct Report {
    failures: Vec<String>,
    /// (row label, request id, acceptable reasons) to check in the audit log
    audits: Vec<(String, String, &'static [&'static str])>,
    /// (row label, request id, status) of every row that got a response, for the log
    seen: Vec<(String, String, u16)>,
}

impl Report {
    fn fail(&mut self, label: &str, msg: String) {
        self.failures.push(format!("{label}: {msg}"));
    }
}

fn request(c: &Case, rid: &str, t: &str, t2: Option<&str>) -> String {
    let fill = |s: &str| s.replace("{T2}", t2.unwrap_or("")).replace("{T}", t);
    let mut raw = format!(
        "GET {} HTTP/1.1\r\nHost: api.example.com\r\n",
        fill(c.target)
    );
    for a in c.auth {
        raw.push_str(&format!("Authorization: {}\r\n", fill(a)));
    }
    raw.push_str(&format!("X-Request-Id: {rid}\r\nConnection: close\r\n\r\n"));
    raw
}

/// What UP must see for an accepted row.
fn check_identity(s: &Seen, uri: &str, sub: &str) -> Result<(), String> {
    let want = [
        ("x-auth-method", "jwt"),
        ("x-auth-subject", sub),
        ("x-auth-issuer", ISS),
        ("x-auth-scopes", "read:users"),
        ("x-auth-role", "reader"),
    ];
    if s.uri != uri {
        return Err(format!("UP saw uri {:?}, want {uri:?}", s.uri));
    }
    for (h, v) in want {
        if s.header_all(h) != [v] {
            return Err(format!("UP saw {h}: {:?}, want {v:?}", s.header_all(h)));
        }
    }
    if s.header("authorization").is_some() {
        return Err("UP saw the Authorization credential".into());
    }
    Ok(())
}

async fn run_case(
    f: &Fix,
    rep: &mut Report,
    label: &str,
    c: &Case,
    rid: &str,
    t: &str,
    t2: Option<&str>,
) -> Result<(), String> {
    let before = f.up.count();
    let r = request_until_closed(
        f.gw.addr("plain"),
        request(c, rid, t, t2).as_bytes(),
        Duration::from_secs(15),
    )
    .await?;
    rep.seen.push((label.to_owned(), rid.to_owned(), r.status));
    let body = r.json();
    let sees_nothing = || {
        let n = f.up.count();
        if n == before {
            Ok(())
        } else {
            let last = f.up.last();
            Err(format!(
                "UP saw {} request(s); last {} with x-auth-method {:?}",
                n - before,
                last.uri,
                last.header("x-auth-method")
            ))
        }
    };
    let no_echo = |r: &Resp| {
        let text = String::from_utf8_lossy(&r.body);
        let probe = &t[..t.len().min(40)];
        if text.contains(probe) {
            Err("the response echoes the token".to_string())
        } else {
            Ok(())
        }
    };
    match c.want {
        Want::Accept { uri, sub } => {
            if r.status != 200 {
                return Err(format!(
                    "got {} {} (want 200); UP count +{}",
                    r.status,
                    r.text(),
                    f.up.count() - before
                ));
            }
            f.up.wait_for_count(before + 1).await;
            if f.up.count() != before + 1 {
                return Err(format!("UP saw {} requests", f.up.count() - before));
            }
            check_identity(&f.up.last(), uri, sub)?;
        }
        Want::Deny {
            status,
            error,
            reasons,
        } => {
            let up = sees_nothing();
            if r.status != status || body["error"] != error {
                return Err(format!(
                    "got {} {} (want {status} {error}, reason {reasons:?}); {}",
                    r.status,
                    r.text(),
                    up.err().unwrap_or_else(|| "UP saw nothing".into())
                ));
            }
            up?;
            if status == 401 {
                let ch = r.header("www-authenticate").unwrap_or("");
                if !ch.starts_with("Bearer realm=\"portcullis\", error=\"invalid_token\"") {
                    return Err(format!("WWW-Authenticate {ch:?}"));
                }
            }
            no_echo(&r)?;
            rep.audits.push((label.to_owned(), rid.to_owned(), reasons));
        }
        Want::TooLarge => {
            sees_nothing()?;
            match r.status {
                431 => {}
                401 if body["error"] == "invalid_token" => {
                    no_echo(&r)?;
                    rep.audits
                        .push((label.to_owned(), rid.to_owned(), &["token_too_large"]));
                }
                s => return Err(format!("got {s} {} (want 431 or 401)", r.text())),
            }
        }
        Want::DupOrStripped => match r.status {
            400 if body["error"] == "invalid_request" => {
                sees_nothing()?;
                no_echo(&r)?;
                rep.audits
                    .push((label.to_owned(), rid.to_owned(), &["credential_duplicated"]));
            }
            200 => {
                f.up.wait_for_count(before + 1).await;
                let s = f.up.last();
                if !credential_params(&s.uri).is_empty() {
                    return Err(format!(
                        "200 and UP saw a second credential in its query: uri {:?} (want 400 credential_duplicated, or the parameter stripped by its percent-decoded name)",
                        truncate(&s.uri, 90)
                    ));
                }
                check_identity(&s, s.uri.as_str(), "u1")?;
            }
            s => return Err(format!("got {s} {} (want 400 or 200 stripped)", r.text())),
        },
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_owned()
    } else {
        format!("{}…", &s[..n])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_attack_catalogue() {
    let f = Fix::start().await;
    let started = Instant::now();
    let jwks_base = f.jwks.hits();
    let now = unix_now();
    let (good, tokens) = f.tokens(now);
    assert!(
        good.split('.').nth(2).unwrap().len() == 342,
        "the baseline is RS256-2048"
    );
    let mut rep = Report::default();
    let mut labels = Vec::new();
    for (i, (c, (t, t2))) in CASES.iter().zip(&tokens).enumerate() {
        let label = format!("{} [{}]", c.id, c.what);
        labels.push(c.id);
        if c.id == "JWT-18" {
            let kib = t.len() as f64 / 1024.0;
            let ok = match c.want {
                Want::TooLarge => t.len() > 16 * 1024,
                _ => (14.5..16.0).contains(&kib),
            };
            assert!(ok, "{label}: the token is {kib:.1} KiB");
        }
        if matches!(c.tok, Tok::Derived(_)) {
            assert_ne!(t, &good, "{label}: the variant equals the baseline");
        }
        if let Some(s) = c.before {
            if let Err(e) = f.step(s, now).await {
                rep.fail(&label, format!("step before the row failed: {e}"));
                continue;
            }
        }
        let rid = format!("attacks-jwt-{i}");
        if let Err(e) = run_case(&f, &mut rep, &label, c, &rid, t, t2.as_deref()).await {
            rep.fail(&label, e);
        }
    }

    // JWT-05: neither canary was ever connected to (checked after every other row has run, so a
    // background fetch started by a jku/x5u row would have had the whole table's time to arrive).
    for (name, c) in [("canary", &f.canary), ("admin-path canary", &f.canary2)] {
        if c.connections() != 0 {
            rep.fail(
                "JWT-05 [jku/x5u never fetched]",
                format!("the {name} got {} connection(s)", c.connections()),
            );
        }
    }
    // JWT-07 (RES-12): unknown kids refetch the configured JWKS at most once per cooldown.
    let fetched = f.jwks.hits() - jwks_base;
    let allowed = 1 + (started.elapsed().as_secs() / COOLDOWN_SECS) as usize;
    if fetched > allowed {
        rep.fail(
            "JWT-07 [refetch bound]",
            format!(
                "{fetched} JWKS fetches in {:?} (at most {allowed})",
                started.elapsed()
            ),
        );
    }

    // the audit reason of every refusal
    let rids: Vec<&str> = rep.audits.iter().map(|(_, r, _)| r.as_str()).collect();
    let lines = audit_lines(&f.audit, &rids).await;
    let mut audit_failures = Vec::new();
    for (label, rid, reasons) in &rep.audits {
        match lines.get(rid) {
            None => audit_failures.push(format!("{label}: no audit line for {rid}")),
            Some(v) => {
                let reason = v["reason"].as_str().unwrap_or("");
                if !reasons.contains(&reason) || v["decision"] != "deny" {
                    audit_failures.push(format!(
                        "{label}: audit reason {reason:?} decision {} (want one of {reasons:?})",
                        v["decision"]
                    ));
                }
            }
        }
    }
    let text = std::fs::read_to_string(&f.audit).unwrap_or_default();
    if text.contains(good.split('.').nth(2).unwrap()) {
        audit_failures.push("audit: a token signature is in the audit log".into());
    }
    rep.failures.extend(audit_failures);
    for (label, rid, status) in &rep.seen {
        let reason = lines
            .get(rid)
            .and_then(|v| v["reason"].as_str())
            .unwrap_or("-");
        println!("{label}: {status} {reason}");
    }

    // the catalogue covers every id of the document's section 6
    for n in 1..=21 {
        let id = format!("JWT-{n:02}");
        assert!(labels.contains(&id.as_str()), "{id} has no row");
    }
    assert!(
        rep.failures.is_empty(),
        "{} of {} rows failed:\n{}",
        rep.failures.len(),
        CASES.len(),
        rep.failures.join("\n")
    );
}

/// The JWT-21(d) oracle itself: it must flag every spelling an upstream decodes to
/// `access_token`, or a 200 that leaks the second credential would pass unnoticed.
#[test]
fn the_second_credential_oracle_sees_encoded_names() {
    for uri in [
        "/q/users?access_token=x",
        "/q/users?a=1&access%5Ftoken=x",
        "/q/users?access%5ftoken=x",
        "/q/users?%61ccess_token=x&b=2",
        "/q/users?access_token",
    ] {
        assert_eq!(credential_params(uri).len(), 1, "{uri}");
    }
    for uri in [
        "/q/users",
        "/q/users?x=1",
        "/q/users?access_tokens=x",
        "/q/users?access%5Ftoken%=x",
        "/q/users?x=access_token",
    ] {
        assert!(credential_params(uri).is_empty(), "{uri}");
    }
    assert_eq!(pct_decode("a%zzb%4"), "a%zzb%4");
}
