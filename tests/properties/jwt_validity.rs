//! JWT: structure, claims and the whole verify path.

use crate::common::*;
use crate::support::*;
use http::{HeaderMap, HeaderValue, StatusCode};
use portcullis::auth::chain::AuthPolicy;
use portcullis::auth::jwt::keyset::KeySet;
use portcullis::auth::jwt::{self, JwtAuthn, Keys};
use portcullis::auth::request::AuthRequest;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::sync::{Arc, LazyLock};

// Reference model of SPEC section 2 ("JWT validity, beyond the signature"), for a route whose one
// JWT authenticator accepts issuer ISSUER, audiences `gw`/`gw2`, algorithm HS256, no leeway:
// - header: `alg` is the string `HS256`; no `kid` (the configured secret has none, and an unknown
//   `kid` is refused); `typ` a string when present; no `crit` at all
//   (we implement no extension, so any `crit` names something we do not implement); `b64`, when
//   present, is `true`; `jku`/`x5u`/`jwk` change nothing;
// - claims: `iss` is the issuer; `exp` is present, a number, not past; `nbf`/`iat` numbers when
//   present (each smaller than 2^63 in magnitude), `nbf` not in the future, `iat` not in the future; `sub` a non-empty string (the
//   SPEC says "a string"; refusing the empty one is stricter and safe); `aud` a string naming an
//   accepted audience, or an array of strings naming at least one; `jti`, when present, a string
//   not on the denylist; the scopes claim a string or an array of strings.

fn hmac_sign(alg: &str, input: &[u8]) -> Vec<u8> {
    use aws_lc_rs::hmac;
    let a = match alg {
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    };
    hmac::sign(&hmac::Key::new(a, JWT_SECRET), input)
        .as_ref()
        .to_vec()
}

struct RsaFixture {
    pkcs8: Vec<u8>,
    authn: Arc<JwtAuthn>,
}

static RSA: LazyLock<RsaFixture> = LazyLock::new(|| {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let set = KeySet::from_public_pem(kp.public_key_pem().as_bytes()).unwrap();
    RsaFixture {
        pkcs8: kp.serialized_der().to_vec(),
        authn: jwt_authn(
            RSA_ISSUER,
            Keys::Static(Arc::new(set)),
            vec![jsonwebtoken::Algorithm::RS256],
            true,
        ),
    }
});

fn rsa_sign(input: &[u8]) -> Vec<u8> {
    use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
    let kp = RsaKeyPair::from_pkcs8(&RSA.pkcs8).unwrap();
    let mut sig = vec![0u8; kp.public_modulus_len()];
    kp.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input,
        &mut sig,
    )
    .unwrap();
    sig
}

fn compact(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64url(&sig))
}

fn good_claims(iss: &str, now: i64) -> Value {
    json!({"iss": iss, "sub": "alice", "aud": "gw", "exp": now + 600, "scp": "read write"})
}

/// Index choices for a token; `build_token` turns them into JSON with the current time.
type HeaderPicks = (usize, usize, usize, usize, usize, usize);
type ClaimPicks = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

/// Mostly choice 0 (the valid one), so that accepted tokens are common enough to check the
/// identity they produce.
fn b(len: usize) -> BoxedStrategy<usize> {
    prop_oneof![5 => Just(0usize), 1 => 0..len].boxed()
}

fn token_picks() -> impl Strategy<Value = (HeaderPicks, ClaimPicks, usize)> {
    (
        (b(9), b(4), b(4), b(5), b(6), b(4)),
        (b(6), b(8), b(10), b(10), b(5), b(5), b(5), b(7), b(8)),
        0..3usize,
    )
}

fn build_token(
    h: HeaderPicks,
    c: ClaimPicks,
    now: i64,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut hm = Map::new();
    let put = |m: &mut Map<String, Value>, k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    let alg = [
        Some(json!("HS256")),
        Some(json!("HS256")),
        Some(json!("HS256")),
        Some(json!("HS384")),
        Some(json!("none")),
        Some(json!("RS256")),
        Some(json!("hs256")),
        Some(json!(5)),
        None,
    ][h.0]
        .clone();
    put(&mut hm, "alg", alg);
    put(
        &mut hm,
        "kid",
        [None, Some(json!("k1")), Some(json!(7)), Some(Value::Null)][h.1].clone(),
    );
    put(
        &mut hm,
        "typ",
        [
            None,
            Some(json!("JWT")),
            Some(json!("at+jwt")),
            Some(json!(1)),
        ][h.2]
            .clone(),
    );
    put(
        &mut hm,
        "crit",
        [None, None, None, Some(json!([])), Some(json!(["exp"]))][h.3].clone(),
    );
    put(
        &mut hm,
        "b64",
        [
            None,
            None,
            None,
            Some(json!(true)),
            Some(json!(false)),
            Some(json!("false")),
        ][h.4]
            .clone(),
    );
    match h.5 {
        1 => put(&mut hm, "jku", Some(json!("http://127.0.0.1:9/jwks.json"))),
        2 => put(&mut hm, "jwk", Some(json!({"kty": "oct", "k": "AAAA"}))),
        3 => put(&mut hm, "x5u", Some(json!("http://127.0.0.1:9/c.pem"))),
        _ => {}
    }
    let mut cm = Map::new();
    let t = |d: i64| json!(now + d);
    put(
        &mut cm,
        "iss",
        [
            Some(json!(ISSUER)),
            Some(json!(ISSUER)),
            Some(json!(ISSUER)),
            Some(json!("https://other.test")),
            Some(json!(5)),
            None,
        ][c.0]
            .clone(),
    );
    put(
        &mut cm,
        "sub",
        [
            Some(json!("alice")),
            Some(json!("alice")),
            Some(json!("")),
            Some(json!(5)),
            None,
            Some(json!(["a"])),
            Some(Value::Null),
            Some(json!("bob")),
        ][c.1]
            .clone(),
    );
    put(
        &mut cm,
        "aud",
        [
            Some(json!("gw")),
            Some(json!("gw2")),
            Some(json!("other")),
            Some(json!(["x", "gw"])),
            Some(json!(["x"])),
            Some(json!([1, "gw"])),
            Some(json!(5)),
            None,
            Some(json!([])),
            Some(json!("GW")),
        ][c.2]
            .clone(),
    );
    put(
        &mut cm,
        "exp",
        [
            Some(t(600)),
            Some(t(600)),
            Some(t(600)),
            Some(t(-600)),
            Some(json!((now + 600).to_string())),
            None,
            Some(json!(1e12)),
            Some(Value::Null),
            Some(json!(now as f64 + 600.5)),
            Some(json!(u64::MAX)),
        ][c.3]
            .clone(),
    );
    put(
        &mut cm,
        "nbf",
        [None, None, Some(t(-60)), Some(t(600)), Some(json!("x"))][c.4].clone(),
    );
    put(
        &mut cm,
        "iat",
        [None, None, Some(t(-60)), Some(t(600)), Some(json!("1"))][c.5].clone(),
    );
    put(
        &mut cm,
        "jti",
        [
            None,
            None,
            Some(json!("j1")),
            Some(json!(5)),
            Some(json!(REVOKED_JTI)),
        ][c.6]
            .clone(),
    );
    put(
        &mut cm,
        "scp",
        [
            None,
            Some(json!("a b")),
            Some(json!(" a  b ")),
            Some(json!(["a", "b"])),
            Some(json!(["a", 1])),
            Some(json!(5)),
            Some(json!("")),
        ][c.7]
            .clone(),
    );
    put(
        &mut cm,
        "role",
        [
            None,
            Some(json!("admin")),
            Some(json!("a\r\nX-Evil: 1")),
            Some(json!(5)),
            Some(json!(["a", 2])),
            Some(Value::Null),
            Some(json!({"k": 1})),
            Some(json!("\u{fc}")),
        ][c.8]
            .clone(),
    );
    (hm, cm)
}

fn ref_jwt_accepts(h: &Map<String, Value>, c: &Map<String, Value>, now: f64) -> bool {
    let is_str_or_absent = |m: &Map<String, Value>, k: &str| m.get(k).is_none_or(Value::is_string);
    let header_ok = h.get("alg") == Some(&json!("HS256"))
        // The one configured key has no `kid`: a token naming one names an unknown key
        // (README: "unknown `kid`" is refused).
        && !h.contains_key("kid")
        && is_str_or_absent(h, "typ")
        && !h.contains_key("crit")
        && h.get("b64").is_none_or(|b| b == &json!(true));
    let time = |k: &str| -> Result<Option<f64>, ()> {
        match c.get(k) {
            None => Ok(None),
            // a signed 64-bit count of seconds: a larger magnitude is no time at all
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|v| v.abs() < 2f64.powi(63))
                .map(Some)
                .ok_or(()),
            Some(_) => Err(()),
        }
    };
    let times_ok = match (time("exp"), time("nbf"), time("iat")) {
        (Ok(Some(exp)), Ok(nbf), Ok(iat)) => {
            now <= exp && nbf.is_none_or(|n| n <= now) && iat.is_none_or(|i| i <= now)
        }
        _ => false,
    };
    let accepted = |a: &str| a == "gw" || a == "gw2";
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => accepted(a),
        Some(Value::Array(v)) => {
            v.iter().all(Value::is_string) && v.iter().filter_map(Value::as_str).any(accepted)
        }
        _ => false,
    };
    let sub_ok = matches!(c.get("sub"), Some(Value::String(s)) if !s.is_empty());
    let jti_ok = match c.get("jti") {
        None => true,
        Some(Value::String(j)) => j != REVOKED_JTI,
        Some(_) => false,
    };
    let scp_ok = match c.get("scp") {
        None | Some(Value::String(_)) => true,
        Some(Value::Array(v)) => v.iter().all(Value::is_string),
        Some(_) => false,
    };
    header_ok
        && c.get("iss") == Some(&json!(ISSUER))
        && times_ok
        && aud_ok
        && sub_ok
        && jti_ok
        && scp_ok
}

fn ref_scopes(c: &Map<String, Value>) -> Vec<String> {
    match c.get("scp") {
        Some(Value::String(s)) => s
            .split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(v)) => v
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => vec![],
    }
}

/// Where the token travels: `Authorization`, cookie `tok` or parameter `access_token`.
fn carry(token: &str, how: usize) -> (HeaderMap, Option<String>) {
    let mut h = HeaderMap::new();
    let mut q = None;
    match how {
        0 => {
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
                h.insert(http::header::AUTHORIZATION, v);
            }
        }
        1 => {
            if let Ok(v) = HeaderValue::from_str(&format!("a=1; tok={token}")) {
                h.insert(http::header::COOKIE, v);
            }
        }
        _ => q = Some(format!("x=1&access_token={token}")),
    }
    (h, q)
}

fn evaluate(
    policy: &AuthPolicy,
    h: &HeaderMap,
    q: Option<&str>,
) -> Result<Arc<portcullis::auth::identity::Identity>, portcullis::error::Reject> {
    let conn = conn_info("127.0.0.1".parse().unwrap(), None);
    let req = AuthRequest {
        headers: h,
        query: q,
        conn: &conn,
        client_ip: conn.peer.ip(),
    };
    block_on(portcullis::auth::chain::evaluate(policy, &req, None)).result
}

/// Dot-separated strings of base64url-ish characters, with JSON-looking segments mixed in.
fn dotted() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        4 => "[A-Za-z0-9_-]{0,40}",
        1 => "[A-Za-z0-9_=+/ -]{0,20}",
        2 => prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| b64url(&b)),
        2 => "\\{(\"[a-z]{1,4}\":(\"[A-Za-z0-9]{0,6}\"|[0-9]{1,3}|\\[\\]|null|true|\\{\\}),?){0,5}\\}"
            .prop_map(|j| b64url(j.as_bytes())),
        1 => Just(b64url(br#"{"alg":"HS256","typ":"JWT"}"#)),
        1 => Just(b64url(br#"{"iss":"https://i.test","sub":"a","aud":"gw","exp":99999999999}"#)),
    ];
    prop::collection::vec(seg, 0..6).prop_map(|v| v.join("."))
}

proptest! {
    #![proptest_config(cfg(1024))]

    /// Arbitrary dot-separated strings never panic anywhere on the verify path and never
    /// authenticate: `jwt::parse`, `signature_valid` with HMAC and RSA keys, and the whole chain
    /// (extraction, size check, cache, issuer dispatch, signature, claims).
    #[test]
    fn arbitrary_tokens_never_panic_and_never_pass(s in dotted(), how in 0usize..3) {
        let _ = jwt::parse::parse(&s);
        let _ = jwt::verify::signature_valid(&KeySet::from_secret(JWT_SECRET), &s);
        if let Some(j) = jwt_authn_keys(&RSA.authn) {
            let _ = jwt::verify::signature_valid(j, &s);
        }
        let policy = chain_of(vec![hs_authn(true), RSA.authn.clone()]);
        let (h, q) = carry(&s, how);
        match evaluate(&policy, &h, q.as_deref()) {
            Ok(d) => prop_assert!(false, "{:?} authenticated as {:?}", s, d.subject),
            Err(e) => prop_assert!(e.status() == StatusCode::UNAUTHORIZED || e.status() == StatusCode::BAD_REQUEST, "{:?}: {}", s, e.status()),
        }
    }

    /// Correctly signed tokens with every combination of header and claim choices: the verify
    /// path accepts exactly what the reference model accepts, twice in a row (the second time
    /// through the verified-token cache), and the identity it forwards is the token's.
    #[test]
    fn jwt_claims_match_reference_model((h, c, how) in token_picks()) {
        let now = unix_now();
        let (hm, cm) = build_token(h, c, now);
        let alg = hm.get("alg").and_then(Value::as_str).unwrap_or("HS256").to_owned();
        let token = compact(&Value::Object(hm.clone()), &Value::Object(cm.clone()), |i| hmac_sign(&alg, i));
        let want = ref_jwt_accepts(&hm, &cm, portcullis::clock::now());
        let policy = chain_of(vec![hs_authn(true)]);
        let (hdrs, q) = carry(&token, how);
        for round in 0..2 {
            let got = evaluate(&policy, &hdrs, q.as_deref());
            match &got {
                Ok(d) => {
                    prop_assert!(want, "round {}: accepted, the model refuses: header {:?} claims {:?}", round, hm, cm);
                    let id = &d;
                    prop_assert_eq!(id.subject.as_deref(), cm.get("sub").and_then(Value::as_str));
                    prop_assert_eq!(id.issuer.as_deref(), Some(ISSUER));
                    prop_assert_eq!(id.scopes.to_vec(), ref_scopes(&cm));
                    for (k, v) in &id.extra_headers {
                        prop_assert_eq!(k.as_str(), "x-auth-role");
                        prop_assert!(!v.as_bytes().iter().any(|&b| b < 0x20 || b == 0x7f), "{:?}", v);
                    }
                    if let Some(Value::String(r)) = cm.get("role") {
                        if !r.chars().any(char::is_control) {
                            prop_assert_eq!(id.extra_headers.len(), 1);
                            prop_assert_eq!(id.extra_headers[0].1.as_bytes(), r.as_bytes());
                        } else {
                            prop_assert!(id.extra_headers.is_empty());
                        }
                    }
                }
                Err(e) => {
                    prop_assert!(!want, "round {}: refused ({} {}), the model accepts: header {:?} claims {:?}", round, e.status(), e.reason, hm, cm);
                    prop_assert!(e.status() == StatusCode::UNAUTHORIZED || e.status() == StatusCode::BAD_REQUEST);
                    // The refusal never echoes the token.
                    prop_assert!(!e.description.contains(&token));
                    for (_, v) in &e.headers {
                        prop_assert!(!String::from_utf8_lossy(v.as_bytes()).contains(&token));
                    }
                }
            }
        }
    }
}

fn jwt_authn_keys(j: &JwtAuthn) -> Option<&KeySet> {
    match &j.keys {
        Keys::Static(k) => Some(k),
        Keys::Remote(_) | Keys::Issuer(_) => None,
    }
}

/// A single character of a valid token changed, inserted or removed: never accepted (strict
/// base64url, so no two spellings of one signature), also after the valid token was cached.
fn mutate(token: &str, pos: usize, c: char, edit: u8) -> Option<String> {
    let mut chars: Vec<char> = token.chars().collect();
    let pos = pos % chars.len();
    match edit {
        0 => {
            if chars[pos] == c {
                return None;
            }
            chars[pos] = c;
        }
        1 => chars.insert(pos, c),
        _ => {
            chars.remove(pos);
        }
    }
    Some(chars.into_iter().collect())
}

fn token_char() -> impl Strategy<Value = char> {
    prop::sample::select(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ~"
            .chars()
            .collect::<Vec<_>>(),
    )
}

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn mutated_hmac_tokens_are_refused(pos in any::<usize>(), c in token_char(), edit in 0u8..3, how in 0usize..3) {
        let token = compact(&json!({"alg": "HS256", "typ": "JWT"}), &good_claims(ISSUER, unix_now()), |i| hmac_sign("HS256", i));
        let policy = chain_of(vec![hs_authn(true)]);
        let (h, q) = carry(&token, how);
        prop_assert!(evaluate(&policy, &h, q.as_deref()).is_ok(), "the valid token must pass");
        let Some(m) = mutate(&token, pos, c, edit) else { return Ok(()) };
        let (h, q) = carry(&m, how);
        if let Ok(d) = evaluate(&policy, &h, q.as_deref()) {
            // Accepting a changed token is only right when the transport itself undid the change
            // (`Bearer` trims leading spaces).
            let (h2, q2) = carry(&token, how);
            let same = jwt_authn_find(&h, q.as_deref()) == jwt_authn_find(&h2, q2.as_deref());
            prop_assert!(same, "mutated token {:?} accepted as {:?}", m, d.subject);
        }
    }

    #[test]
    fn mutated_rsa_tokens_are_refused(pos in any::<usize>(), c in token_char(), edit in 0u8..3) {
        let token = compact(&json!({"alg": "RS256"}), &good_claims(RSA_ISSUER, unix_now()), rsa_sign);
        let policy = chain_of(vec![RSA.authn.clone()]);
        let (h, q) = carry(&token, 0);
        prop_assert!(evaluate(&policy, &h, q.as_deref()).is_ok(), "the valid token must pass");
        let Some(m) = mutate(&token, pos, c, edit) else { return Ok(()) };
        let (h, q) = carry(&m, 0);
        if let Ok(d) = evaluate(&policy, &h, q.as_deref()) {
            let (h2, q2) = carry(&token, 0);
            let same = jwt_authn_find(&h, q.as_deref()) == jwt_authn_find(&h2, q2.as_deref());
            prop_assert!(same, "mutated token {:?} accepted as {:?}", m, d.subject);
        }
    }
}

/// The token the chain would read from a request (for "the change was undone by the transport").
fn jwt_authn_find(h: &HeaderMap, q: Option<&str>) -> Option<String> {
    jwt::extract::find_token(&hs_authn(false).token_from, h, q)
        .ok()
        .flatten()
        .map(str::to_owned)
}
