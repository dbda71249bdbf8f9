//! Property tests (proptest) over the crate's public API: everything here parses input an attacker
//! (or, for the config, an operator's typo) controls, and must never panic.
//!
//! - path normalization against an independent REFERENCE MODEL of SPEC section 5, idempotence,
//!   confinement to the root;
//! - credential extraction (`Bearer`, `Api-Key`, `X-Api-Key`, token cookies and query
//!   parameters) against reference models, and the stripping of consumed credentials;
//! - the header rewrite at the trust boundary (what the upstream may see) and `client_ip`;
//! - host checks, normalization and routing (`proxy::resolve`), `;` parameters included;
//! - API key shape and checksum (a reference CRC-32 and base62 written here);
//! - JWT structure, claims (a reference model of SPEC section 2's validity rules) and the whole
//!   verify path (`auth::evaluate`) on arbitrary and mutated tokens, HMAC and RSA;
//! - config parse + compile (what `portcullis check` runs) on arbitrary YAML, mutated copies of
//!   the shipped `gateway.yaml` and grammar-generated configs;
//! - smaller parsers: durations, rates, rate-limit quotas, RFC 3339, `sha256:` hashes, JWK Sets,
//!   client certificates.
//!
//! Failing inputs are not persisted (`failure_persistence: None`): a failure found by these or by
//! the fuzz targets in `fuzz/` becomes an explicit regression test at the end of this file.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Version};
use portcullis::auth::jwt::cache::VerifyCache;
use portcullis::auth::jwt::jwks::KeySet;
use portcullis::auth::jwt::{self, JwtAuthn, Keys, RouteJwt};
use portcullis::auth::request::CredentialSource;
use portcullis::auth::revocation::Revocations;
use portcullis::auth::scope::ScopeRule;
use portcullis::auth::{AuthPolicy, AuthRequest, Authenticator, AuthnDef, Chain};
use portcullis::config::{self, Mode, Snapshot};
use portcullis::conn::{Activity, ConnInfo};
use portcullis::keys::{self, Env, KeyRefusal, KeyRing, KeyRow, Shape};
use portcullis::normalize::{normalize, PathError};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use unicode_normalization::UnicodeNormalization;

// ------------------------------------------------------------------------------------------------
// Shared helpers

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs a future to completion on a per-thread current-thread runtime (the properties are
/// synchronous; the verify path is async but never waits on I/O with static keys).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
    }
    RT.with(|rt| rt.block_on(f))
}

fn conn_info(peer: IpAddr, sni: Option<&str>) -> ConnInfo {
    ConnInfo {
        listener: Arc::from("plain"),
        peer: SocketAddr::new(peer, 40000),
        tls: sni.is_some(),
        sni: sni.map(str::to_owned),
        client_cert: None,
        activity: Arc::new(Activity::default()),
        peer_value: portcullis::conn::peer_value(peer),
        slot: None,
    }
}

/// A header map from (name, value bytes) pairs; pairs that are not a valid header are skipped.
fn header_map(pairs: &[(String, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            h.append(n, v);
        }
    }
    h
}

/// Bytes a header value may be made of, with the interesting ones over-represented.
fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[ -~]{0,24}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..24),
        1 => prop::collection::vec(
            prop::sample::select(vec![b' ', b'\t', b',', b';', b'=', b'.', 0x80, 0xff, b'a']),
            0..12
        ),
    ]
}

fn load_snapshot(yaml: &str) -> Snapshot {
    portcullis::install_crypto_provider();
    match config::load_str(Path::new("props.yaml"), yaml, None, Mode::Check) {
        Ok(s) => s,
        Err(e) => panic!("fixture config does not compile: {e}"),
    }
}

// ------------------------------------------------------------------------------------------------
// 1. Path normalization: a reference model of SPEC section 5
//
// Written from the SPEC and the module documentation, not from the implementation:
// - the target must start with `/`;
// - `%XX` needs two hex digits; it decodes to a byte; `%2F`, `%5C` and `%00` are refused; a
//   decoded unreserved character (ALPHA DIGIT `-` `.` `_` `~`) is written plainly, any other byte
//   as `%XX` with upper-case hex; a raw non-ASCII byte is written as `%XX`; a raw `\` is refused;
// - a once-decoded segment may not hold `%25` followed by the hex of `.`, `/`, `\`, NUL or `%`
//   (a second decoding would make a separator or a dot of it);
// - each segment's decoded bytes must be UTF-8, and no character of it may have an NFKC form
//   holding `.`, `/`, `\` or `%`;
// - a segment whose decoded text before any `;` is `.` or `..` is a dot segment: with a `;` it is
//   refused, otherwise it is resolved (RFC 3986 5.2.4; `..` at the root is refused);
// - empty segments (duplicate slashes) disappear; the result ends in `/` when the last segment
//   was empty or a dot segment.
//
// Errors: the model lists every rule the path breaks; the implementation must report one of them
// (the SPEC does not say which one wins when a path breaks several).

fn ref_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn ref_hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn ref_confusable(c: char) -> bool {
    !c.is_ascii()
        && c.to_string()
            .nfkc()
            .any(|n| matches!(n, '.' | '/' | '\\' | '%'))
}

/// `%25` followed by the hex of `.`, `/`, `\`, NUL or `%` in the once-decoded segment: a second
/// decoding would produce a separator or a dot.
fn ref_double_encoded(canonical: &str) -> bool {
    let lower = canonical.to_ascii_lowercase();
    ["%252e", "%252f", "%255c", "%2500", "%2525"]
        .iter()
        .any(|p| lower.contains(p))
}

fn ref_normalize(path: &str) -> Result<String, Vec<PathError>> {
    use PathError::*;
    let Some(rest) = path.strip_prefix('/') else {
        return Err(vec![NotAbsolute]);
    };
    let mut errors = Vec::new();
    // A segment that breaks a rule still counts as a segment for the `..` bookkeeping.
    let mut kept: Vec<String> = Vec::new();
    let mut directory = false;
    for raw in rest.split('/') {
        directory = raw.is_empty();
        if raw.is_empty() {
            continue;
        }
        let mut bytes = Vec::new();
        let mut canonical = String::new();
        let mut broken = Vec::new();
        let b = raw.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => match (
                    b.get(i + 1).copied().and_then(ref_hex),
                    b.get(i + 2).copied().and_then(ref_hex),
                ) {
                    (Some(h), Some(l)) => {
                        let c = h * 16 + l;
                        if c == b'/' || c == b'\\' || c == 0 {
                            broken.push(EncodedSeparator);
                        } else {
                            bytes.push(c);
                            if ref_unreserved(c) {
                                canonical.push(c as char);
                            } else {
                                canonical.push_str(&format!("%{c:02X}"));
                            }
                        }
                        i += 3;
                    }
                    _ => {
                        broken.push(BadPercent);
                        i += 1;
                    }
                },
                b'\\' => {
                    broken.push(Backslash);
                    i += 1;
                }
                x if x >= 0x80 => {
                    bytes.push(x);
                    canonical.push_str(&format!("%{x:02X}"));
                    i += 1;
                }
                x => {
                    bytes.push(x);
                    canonical.push(x as char);
                    i += 1;
                }
            }
        }
        if !broken.is_empty() {
            errors.extend(broken);
            kept.push(canonical);
            continue;
        }
        if ref_double_encoded(&canonical) {
            errors.push(DoubleEncoded);
            kept.push(canonical);
            continue;
        }
        let Ok(text) = String::from_utf8(bytes) else {
            errors.push(InvalidUtf8);
            kept.push(canonical);
            continue;
        };
        if text.chars().any(ref_confusable) {
            errors.push(Confusable);
            kept.push(canonical);
            continue;
        }
        let (head, params) = match text.split_once(';') {
            Some((h, _)) => (h, true),
            None => (text.as_str(), false),
        };
        match (head, params) {
            ("." | "..", true) => {
                errors.push(DotSegmentParam);
                kept.push(canonical);
            }
            (".", false) => directory = true,
            ("..", false) => {
                if kept.pop().is_none() {
                    errors.push(EscapesRoot);
                }
                directory = true;
            }
            _ => kept.push(canonical),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out = format!("/{}", kept.join("/"));
    if !kept.is_empty() && directory {
        out.push('/');
    }
    Ok(out)
}

const PATH_TOKENS: &[&str] = &[
    "/",
    "/",
    "/",
    "/",
    "//",
    "/../",
    "/./",
    ".",
    ".",
    "..",
    "..",
    "...",
    "a",
    "b",
    "api",
    "admin",
    "hosted",
    "~",
    "-",
    "_",
    ";",
    ";x",
    ";x=1",
    "=",
    "%",
    "%%",
    "%2",
    "%2e",
    "%2E",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "%00",
    "%3b",
    "%3B",
    "%25",
    "%41",
    "%61",
    "%7e",
    "%7E",
    "%2D",
    "%5F",
    "%20",
    "%3f",
    "%23",
    "%zz",
    "%g1",
    "2e",
    "2f",
    "5c",
    "0",
    "9",
    "c",
    "F",
    "e",
    "\\",
    "?",
    "#",
    " ",
    "\t",
    "%C3",
    "%A9",
    "%C3%A9",
    "%c3%a9",
    "%C0%AE",
    "%C0%AF",
    "%E0%80%AE",
    "%E2%80%A4",
    "%E2%80%A5",
    "%EF%BC%8E",
    "%EF%BC%8F",
    "%EF%BC%BC",
    "%EF%B9%92",
    "%EF%B9%A8",
    "%E2%88%95",
    "%F0%9F%98%80",
    "%FF",
    "é",
    "\u{FF0E}",
    "\u{FF0F}",
    "\u{FF3C}",
    "\u{FE52}",
    "\u{FE68}",
    "\u{2024}",
    "\u{2025}",
    "\u{2026}",
    "\u{2044}",
    "\u{2215}",
    "\u{29F5}",
    "\u{0130}",
    "\u{212A}",
    "\u{00A0}",
    "\u{FB01}",
    "\u{1D7CE}",
    "\u{00B7}",
    "\u{3002}",
    "\u{FF61}",
    "\u{2488}",
];

fn path_strategy() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.93),
        prop::collection::vec(prop::sample::select(PATH_TOKENS), 0..24),
    )
        .prop_map(|(absolute, toks)| {
            let mut s = String::from(if absolute { "/" } else { "" });
            for t in toks {
                s.push_str(t);
            }
            s
        })
}

/// Paths made only of names and dot segments in their plain and encoded spellings.
fn dot_path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "a", "b", "c", ".", "..", "%2e", "%2E%2e", ".%2e", "%2e.", "", "..;", ".;x", "a;b",
        ]),
        0..12,
    )
    .prop_map(|segs| format!("/{}", segs.join("/")))
}

fn check_normalize_against_reference(p: &str) -> Result<(), TestCaseError> {
    let got = normalize(p).map(|c| c.into_owned());
    match (&got, ref_normalize(p)) {
        (Ok(n), Ok(want)) => prop_assert_eq!(n, &want, "path {:?}", p),
        (Err(e), Err(allowed)) => prop_assert!(
            allowed.contains(e),
            "path {:?}: implementation says {:?}, the model finds {:?}",
            p,
            e,
            allowed
        ),
        (got, want) => prop_assert!(
            false,
            "path {:?}: implementation {:?}, model {:?}",
            p,
            got,
            want
        ),
    }
    Ok(())
}

fn check_normal_form(n: &str) -> Result<(), TestCaseError> {
    prop_assert!(n.starts_with('/'), "{n:?} is not absolute");
    for bad in ["/../", "/./", "//"] {
        prop_assert!(!n.contains(bad), "{n:?} contains {bad:?}");
    }
    prop_assert!(!n.ends_with("/..") && !n.ends_with("/."), "{n:?}");
    prop_assert!(!n.contains('\\'), "{n:?} holds a backslash");
    prop_assert!(n.is_ascii(), "{n:?} is not ASCII");
    // Canonical percent-encoding: upper-case hex, never an encoded unreserved character or
    // separator, never a bare `%`.
    let b = n.as_bytes();
    for (i, _) in n.match_indices('%') {
        let (h, l) = (b.get(i + 1).copied(), b.get(i + 2).copied());
        let ok =
            |x: Option<u8>| x.is_some_and(|x| x.is_ascii_digit() || (b'A'..=b'F').contains(&x));
        prop_assert!(ok(h) && ok(l), "{n:?}: `%` at {i} is not `%XX` upper-case");
        let c = ref_hex(h.unwrap_or(0)).unwrap_or(0) * 16 + ref_hex(l.unwrap_or(0)).unwrap_or(0);
        prop_assert!(
            !ref_unreserved(c) && !matches!(c, b'/' | b'\\' | 0),
            "{n:?}: `%{c:02X}` should not be encoded"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(cfg(2048))]

    #[test]
    fn normalize_agrees_with_reference_model(p in path_strategy()) {
        check_normalize_against_reference(&p)?;
    }

    #[test]
    fn normalize_agrees_with_reference_model_on_dot_paths(p in dot_path_strategy()) {
        check_normalize_against_reference(&p)?;
    }

    #[test]
    fn normalize_agrees_with_reference_model_on_any_text(p in "/\\PC{0,24}") {
        check_normalize_against_reference(&p)?;
    }

    #[test]
    fn normalize_is_idempotent_and_confined(p in prop_oneof![path_strategy(), dot_path_strategy()]) {
        if let Ok(n) = normalize(&p) {
            check_normal_form(&n)?;
            let again = normalize(&n).map(|c| c.into_owned());
            prop_assert_eq!(again.as_deref(), Ok(n.as_ref()), "not idempotent on {:?}", p);
        }
    }

    /// Prefixing a path with more `..` than it has names never yields a path: climbing above the
    /// root is refused, never clamped (clamping would make `/../admin` reach `/admin`).
    #[test]
    fn climbing_above_the_root_is_refused(
        names in prop::collection::vec("[a-z]{1,3}", 0..4),
        extra in 1usize..4,
        tail in prop::collection::vec("[a-z]{1,3}", 0..3),
        encoded in any::<bool>(),
    ) {
        let up = if encoded { "%2e%2e" } else { ".." };
        let mut p = String::new();
        for n in &names {
            p.push('/');
            p.push_str(n);
        }
        for _ in 0..names.len() + extra {
            p.push('/');
            p.push_str(up);
        }
        for t in &tail {
            p.push('/');
            p.push_str(t);
        }
        prop_assert_eq!(normalize(&p).map(|c| c.into_owned()), Err(PathError::EscapesRoot), "{}", p);
    }
}

// ------------------------------------------------------------------------------------------------
// 2. API keys (SPEC section 3): a reference CRC-32 (IEEE, bitwise) and base62

const REF_BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn ref_crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn ref_checksum(body: &str) -> String {
    let mut v = ref_crc32(body.as_bytes());
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = REF_BASE62[(v % 62) as usize];
        v /= 62;
    }
    assert_eq!(v, 0, "62^6 > 2^32");
    String::from_utf8(out.to_vec()).unwrap()
}

fn ref_shape(key: &str) -> Shape {
    let env = if key.starts_with("sk_live_") {
        Env::Live
    } else if key.starts_with("sk_test_") {
        Env::Test
    } else {
        return Shape::Foreign;
    };
    let b = key.as_bytes();
    if b.len() != 8 + 32 + 6 || !b[8..].iter().all(|c| REF_BASE62.contains(c)) {
        return Shape::Foreign;
    }
    if ref_checksum(&key[..40]) == key[40..] {
        Shape::Ours(env)
    } else {
        Shape::BadChecksum
    }
}

fn env_of(live: bool) -> Env {
    if live {
        Env::Live
    } else {
        Env::Test
    }
}

/// Strings near the key format: the right prefix and length with characters from a wider
/// alphabet, keys with a wrong checksum, and arbitrary text.
fn key_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "sk_(live|test)_[0-9A-Za-z]{38}",
        "sk_(live|test)_[0-9A-Za-z_.\\-+/=é ]{36,40}",
        "(sk|pk)_(live|test|prod)_[0-9A-Za-z]{0,50}",
        "\\PC{0,60}",
        any::<bool>().prop_map(|l| keys::generate_secret(env_of(l))),
    ]
}

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn issued_keys_have_the_documented_shape(live in any::<bool>()) {
        let env = env_of(live);
        let k = keys::generate_secret(env);
        prop_assert_eq!(k.len(), 46);
        let prefix = format!("sk_{}_", env.as_str());
        prop_assert!(k.starts_with(&prefix), "{}", k);
        prop_assert!(k[8..].bytes().all(|c| REF_BASE62.contains(&c)), "{}", k);
        let want_sum = ref_checksum(&k[..40]);
        prop_assert_eq!(&k[40..], want_sum.as_str());
        prop_assert_eq!(keys::checksum(&k[..40]), ref_checksum(&k[..40]));
        prop_assert_eq!(keys::shape(&k), Shape::Ours(env));
    }

    #[test]
    fn checksum_matches_reference(s in "\\PC{0,64}") {
        prop_assert_eq!(keys::checksum(&s), ref_checksum(&s));
    }

    #[test]
    fn shape_matches_reference(s in key_like()) {
        prop_assert_eq!(keys::shape(&s), ref_shape(&s), "{:?}", s);
    }

    /// Any one-character substitution, insertion or deletion of an issued key is refused by the
    /// checksum (or no longer looks like our format at all).
    #[test]
    fn one_character_edits_never_pass_the_checksum(
        live in any::<bool>(),
        pos in 0usize..47,
        c in prop_oneof![
            3 => prop::sample::select(REF_BASE62.iter().map(|&b| b as char).collect::<Vec<_>>()),
            1 => any::<char>(),
        ],
        edit in 0u8..3,
    ) {
        let k = keys::generate_secret(env_of(live));
        let mut chars: Vec<char> = k.chars().collect();
        match edit {
            0 if pos < chars.len() => {
                prop_assume!(chars[pos] != c);
                chars[pos] = c;
            }
            1 => chars.insert(pos.min(chars.len()), c),
            _ => {
                chars.remove(pos.min(chars.len() - 1));
            }
        }
        let m: String = chars.into_iter().collect();
        let s = keys::shape(&m);
        prop_assert!(!matches!(s, Shape::Ours(_)), "{:?} (from {:?}) passed as {:?}", m, k, s);
        prop_assert_eq!(s, ref_shape(&m));
    }

    /// The key ring finds exactly the stored key: a near miss is never a hit, a bad checksum is
    /// refused as such (without a lookup), and nothing panics.
    #[test]
    fn key_ring_finds_only_the_exact_key(probe in key_like(), flip in 0usize..46) {
        let key = keys::generate_secret(Env::Live);
        let ring = KeyRing::default();
        ring.put(KeyRow {
            subject: Some("svc".into()),
            scopes: vec!["read".into()],
            ..KeyRow::new("key_props", &key)
        });
        let near = {
            let mut b = key.clone().into_bytes();
            b[flip] = if b[flip] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        };
        for p in [probe.as_str(), near.as_str(), key.as_str()] {
            let got = ring.lookup(p, 100);
            prop_assert_eq!(got.is_ok(), p == key, "{:?}", p);
            if ref_shape(p) == Shape::BadChecksum {
                prop_assert_eq!(got.err(), Some(KeyRefusal::Malformed), "{:?}", p);
            }
        }
    }

    /// Distinct keys hash apart and equal ones alike (that it is SHA-256 is
    /// `hash_key_known_answers`).
    #[test]
    fn hash_key_separates_distinct_keys(s in "\\PC{0,40}", t in "\\PC{0,40}") {
        prop_assert_eq!(keys::hash_key(&s) == keys::hash_key(&t), s == t);
    }
}

#[test]
fn hash_key_known_answers() {
    let hex = |h: [u8; 32]| portcullis::digest::hex_lower(&h);
    assert_eq!(
        hex(keys::hash_key("")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(keys::hash_key("abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

// ------------------------------------------------------------------------------------------------
// 3. Credential extraction: reference models
//
// RFC 6750 2.1: `Bearer` (any case), one or more spaces, the token. The API key scheme is the same
// with `Api-Key`. A header value that is not visible ASCII carries no credential. A token offered
// in two places (two `Authorization` headers, two cookies, two parameters, or two sources) is a
// 400; two `X-Api-Key` headers too; `Authorization: Api-Key` and `X-Api-Key` with different keys
// is a 401, with the same key a 400.

fn visible_ascii(v: &[u8]) -> Option<&str> {
    v.iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(v).ok())
        .flatten()
}

fn ref_scheme<'a>(v: &'a [u8], scheme: &str) -> Option<&'a str> {
    let s = visible_ascii(v)?;
    let n = scheme.len();
    if s.len() <= n || !s[..n].eq_ignore_ascii_case(scheme) || s.as_bytes()[n] != b' ' {
        return None;
    }
    Some(s[n..].trim_start_matches(' '))
}

const AUTH_VALUES: &[&str] = &[
    "Bearer tok",
    "bearer  tok2",
    "BEARER tok",
    "Bearer\ttok",
    "Bearer",
    "Bearer ",
    "Bearertok",
    "Bearer a.b.c",
    "Basic YTpi",
    "Api-Key k1",
    "api-key    k1",
    "API-KEY k2",
    "Api-Key",
    "Api-Key ",
    "Api-Keyk1",
    "Api-Key\tk1",
    "",
];
const COOKIE_VALUES: &[&str] = &[
    "tok=c1",
    "tok=c1; tok=c2",
    "x=1; tok=c3",
    " tok = c4",
    "tok",
    "tok=",
    "a=b;tok=c=d",
    ";;",
    "TOK=c5",
    "xtok=c6",
];
const QUERY_VALUES: &[&str] = &[
    "access_token=q1",
    "access_token=q1&access_token=q2",
    "access_token",
    "x=1&access_token=q3",
    "access_token=a=b",
    "&&",
    "access%5Ftoken=q4",
    "ACCESS_TOKEN=q5",
    "",
    "a=1;access_token=q6",
    "access_tok%65n=q7",
    "%61ccess_token=q8&x=%",
    "access_token%=q9",
];

#[derive(Debug, Clone)]
struct CredRequest {
    headers: Vec<(String, Vec<u8>)>,
    query: Option<String>,
}

fn cred_request() -> impl Strategy<Value = CredRequest> {
    let header = prop_oneof![
        4 => prop::sample::select(AUTH_VALUES).prop_map(|v| ("authorization".to_owned(), v.as_bytes().to_vec())),
        1 => value_bytes().prop_map(|v| ("Authorization".to_owned(), v)),
        1 => "(Bearer|Api-Key|bearer) {1,3}[ -~]{0,20}".prop_map(|v| ("authorization".to_owned(), v.into_bytes())),
        2 => prop::sample::select(vec!["k1", " k1 ", "k2", "", "\tk1"]).prop_map(|v| ("x-api-key".to_owned(), v.as_bytes().to_vec())),
        1 => value_bytes().prop_map(|v| ("X-Api-Key".to_owned(), v)),
        3 => prop::sample::select(COOKIE_VALUES).prop_map(|v| ("cookie".to_owned(), v.as_bytes().to_vec())),
        1 => value_bytes().prop_map(|v| ("cookie".to_owned(), v)),
        1 => value_bytes().prop_map(|v| ("x-other".to_owned(), v)),
    ];
    let query = prop_oneof![
        1 => Just(None),
        3 => prop::sample::select(QUERY_VALUES).prop_map(|q| Some(q.to_owned())),
        1 => "[a-z_=&%;]{0,30}".prop_map(Some),
    ];
    (prop::collection::vec(header, 0..5), query)
        .prop_map(|(headers, query)| CredRequest { headers, query })
}

fn values_of<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
    h.get_all(name).iter().map(HeaderValue::as_bytes).collect()
}

/// Where a JWT authenticator reading the header, cookie `tok` and parameter `access_token`
/// finds its token. `Err(())`: the request offers it more than once (400).
fn ref_find_token(h: &HeaderMap, query: Option<&str>) -> Result<Option<String>, ()> {
    let mut found = Vec::new();
    let auth = values_of(h, "authorization");
    if auth.len() > 1 {
        return Err(());
    }
    if let Some(t) = auth.first().and_then(|v| ref_scheme(v, "bearer")) {
        found.push(t.to_owned());
    }
    for v in values_of(h, "cookie") {
        let Some(s) = visible_ascii(v) else { continue };
        for c in s.split(';') {
            if let Some(("tok", val)) = c.trim().split_once('=') {
                found.push(val.to_owned());
            }
        }
    }
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if ref_param_is(k, "access_token") {
            found.push(v.to_owned());
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(()),
    }
}

/// The API key a request offers. `Err(statuses)`: refused, with the statuses the SPEC allows.
fn ref_find_key(h: &HeaderMap) -> Result<Option<String>, Vec<u16>> {
    let auth = values_of(h, "authorization");
    let xs = values_of(h, "x-api-key");
    let mut refusals = Vec::new();
    if auth.len() > 1 || xs.len() > 1 {
        refusals.push(400);
    }
    let from_auth = auth.first().and_then(|v| ref_scheme(v, "api-key"));
    let from_x = match xs.first() {
        None => None,
        Some(v) => match visible_ascii(v) {
            Some(s) => Some(s.trim_matches([' ', '\t'])),
            None => {
                refusals.push(401);
                None
            }
        },
    };
    match (from_auth, from_x) {
        (Some(a), Some(b)) if a == b => refusals.push(400),
        (Some(_), Some(_)) => refusals.push(401),
        _ => {}
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    Ok(from_auth.or(from_x).map(str::to_owned))
}

/// A query parameter's name as the upstream's framework reads it: percent-decoded (a `%` not
/// followed by two hex digits stays as it is), so `access%5Ftoken` is `access_token`.
fn ref_param_is(raw: &str, name: &str) -> bool {
    let b = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let h = b.get(i + 1).copied().and_then(ref_hex);
        let l = b.get(i + 2).copied().and_then(ref_hex);
        match (b[i], h, l) {
            (b'%', Some(h), Some(l)) => {
                out.push(h * 16 + l);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out == name.as_bytes()
}

fn ref_strip_params(q: Option<&str>, names: &[String]) -> Option<String> {
    let q = q?;
    if names.is_empty() {
        return Some(q.to_owned());
    }
    let kept: Vec<&str> = q
        .split('&')
        .filter(|p| {
            let k = p.split('=').next().unwrap_or("");
            !names.iter().any(|n| ref_param_is(k, n))
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

const JWT_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-properties";
const ISSUER: &str = "https://i.test";
const RSA_ISSUER: &str = "https://rsa.test";
const REVOKED_JTI: &str = "revoked-jti";

fn revocations() -> Arc<Revocations> {
    let r = Arc::new(Revocations::default());
    r.revoke(REVOKED_JTI, portcullis::clock::now() + 3600.0);
    r
}

fn jwt_authn(
    issuer: &str,
    keys: Keys,
    algorithms: Vec<jsonwebtoken::Algorithm>,
    cache: bool,
) -> Arc<JwtAuthn> {
    Arc::new(JwtAuthn {
        name: Arc::from("props"),
        issuer: issuer.into(),
        audiences: vec!["gw".into(), "gw2".into()],
        algorithms,
        keys,
        leeway: 0.0,
        require_typ: None,
        token_from: vec![
            CredentialSource::Header,
            CredentialSource::Cookie("tok".into()),
            CredentialSource::Query("access_token".into()),
        ],
        cache: cache.then(|| VerifyCache::new(64)),
        scopes_claim: "scp".into(),
        claims_to_headers: vec![(HeaderName::from_static("x-auth-role"), "role".into())],
        revocations: revocations(),
    })
}

fn hs_authn(cache: bool) -> Arc<JwtAuthn> {
    jwt_authn(
        ISSUER,
        Keys::Static(Arc::new(KeySet::from_secret(JWT_SECRET))),
        vec![jsonwebtoken::Algorithm::HS256],
        cache,
    )
}

fn chain_of(jwts: Vec<Arc<JwtAuthn>>) -> AuthPolicy {
    AuthPolicy::Chain(Box::new(Chain {
        any_of: jwts
            .iter()
            .enumerate()
            .map(|(i, j)| AuthnDef {
                name: Arc::from(format!("jwt{i}")),
                kind: Authenticator::Jwt(RouteJwt {
                    authn: j.clone(),
                    by_issuer: Arc::from(jwts.clone()),
                }),
            })
            .collect(),
        require_client_cert: false,
        scopes: ScopeRule::default(),
        superscope: None,
        rate_limit: None,
        shared_limits: None,
        credential_cookies: vec!["tok".into()],
        credential_params: vec!["access_token".into()],
    }))
}

proptest! {
    #![proptest_config(cfg(1024))]

    #[test]
    fn bearer_matches_rfc6750_reference(v in prop_oneof![
        prop::sample::select(AUTH_VALUES).prop_map(|s| s.as_bytes().to_vec()),
        "(?i:bearer)[ \t]{0,3}[ -~]{0,12}".prop_map(String::into_bytes),
        value_bytes(),
    ]) {
        if let Ok(hv) = HeaderValue::from_bytes(&v) {
            prop_assert_eq!(portcullis::auth::request::credential(&hv, "Bearer"), ref_scheme(&v, "bearer"), "{:?}", String::from_utf8_lossy(&v));
        }
    }

    #[test]
    fn jwt_token_extraction_matches_reference(r in cred_request()) {
        let h = header_map(&r.headers);
        let j = hs_authn(false);
        let got = jwt::extract::find_token(&j.token_from, &h, r.query.as_deref());
        let want = ref_find_token(&h, r.query.as_deref());
        match (&got, &want) {
            (Ok(g), Ok(w)) => prop_assert_eq!(g.map(str::to_owned), w.clone(), "{:?}", r),
            (Err(e), Err(())) => prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST),
            _ => prop_assert!(false, "{:?}: got {:?}, want {:?}", r, got.as_ref().map(|t| t.map(str::to_owned)).map_err(|e| e.reason), want),
        }
    }

    #[test]
    fn api_key_extraction_matches_reference(r in cred_request()) {
        let h = header_map(&r.headers);
        let a = portcullis::auth::api_key::ApiKeyAuthn {
            envs: vec![],
            ring: Arc::new(KeyRing::default()),
        };
        let got = a.find_key(&h);
        match (&got, ref_find_key(&h)) {
            (Ok(g), Ok(w)) => prop_assert_eq!(g.map(str::to_owned), w, "{:?}", r),
            (Err(e), Err(allowed)) => prop_assert!(allowed.contains(&e.status().as_u16()), "{:?}: {} not in {:?}", r, e.status(), allowed),
            (got, want) => prop_assert!(false, "{:?}: got {:?}, want {:?}", r, got.as_ref().map(|t| t.map(str::to_owned)).map_err(|e| e.reason), want),
        }
        // Whatever was offered, authenticating it never panics and never succeeds on an empty ring.
        if let Ok(Some(k)) = got {
            prop_assert!(a.check_key(k, 100).is_err());
        }
    }

    /// A consumed token parameter is removed, every other parameter is kept in order, and the
    /// JWT extractor finds no token in what is forwarded.
    #[test]
    fn strip_params_matches_reference(q in prop_oneof![
        prop::sample::select(QUERY_VALUES).prop_map(str::to_owned),
        "[a-z_=&%;.]{0,40}",
    ], names in prop::sample::subsequence(vec!["access_token".to_owned(), "x".to_owned(), "".to_owned()], 0..3)) {
        let got = portcullis::headers::strip_params(Some(q.clone()), &names);
        prop_assert_eq!(&got, &ref_strip_params(Some(&q), &names), "{:?} {:?}", q, names);
        prop_assert_eq!(portcullis::headers::strip_params(None, &names), None);
        if names.iter().any(|n| n == "access_token") {
            let j = hs_authn(false);
            let empty = HeaderMap::new();
            let found = jwt::extract::find_token(&j.token_from, &empty, got.as_deref());
            prop_assert!(matches!(found, Ok(None)), "{:?} still carries a token: {:?}", got, found.map(|t| t.map(str::to_owned)).map_err(|e| e.reason));
        }
    }
}

// ------------------------------------------------------------------------------------------------
// 4. The trust boundary: what reaches the upstream (SPEC section 5)

fn canon(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "http2-settings",
];

/// SPEC section 5's list of URL / network-identity overrides, with the forwarding headers the
/// gateway sets itself, and docs/attack-cases.md HDR-19's additions.
fn spec_proxy_only(c: &str) -> bool {
    [
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-uri",
        "x-forwarded-prefix",
        "x-real-ip",
        "x-forwarded-client-cert",
        "x-envoy-original-path",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-host",
        "x-forwarded-server",
        "x-http-host-override",
        "x-original-host",
        "x-original-uri",
        "x-original-remote-addr",
        "x-remote-ip",
        "x-remote-addr",
        "x-originating-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
    ]
    .contains(&c)
        || c.starts_with("x-ssl-client-")
        || c.starts_with("x-envoy-")
}

/// docs/attack-cases.md HDR-18.
const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

const HEADER_NAMES: &[&str] = &[
    "connection",
    "Connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "http2-settings",
    "x-auth-subject",
    "X-Auth-Scopes",
    "x_auth_method",
    "x.auth.key-id",
    "X-AUTH-ISSUER",
    "x-auth-role",
    "X-Client-Cert-Subject",
    "x_client_cert_sha256",
    "x-request-id",
    "X_Request_Id",
    "authorization",
    "x-api-key",
    "X_Api_Key",
    "x.api.key",
    "cookie",
    "x-forwarded-for",
    "X_Forwarded_For",
    "x-forwarded.for",
    "x-real-ip",
    "x_real_ip",
    "x-original-url",
    "x-rewrite-url",
    "forwarded",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-envoy-original-path",
    "x-envoy-internal",
    "x-ssl-client-cert",
    "x-forwarded-client-cert",
    "cf-connecting-ip",
    "x-host",
    "x-http-method-override",
    "x_http_method",
    "X-Method-Override",
    "accept",
    "content-type",
    "user-agent",
];

const CONNECTION_VALUES: &[&str] = &[
    "close",
    "keep-alive",
    "upgrade",
    "x-p-a",
    "keep-alive, x-p-b",
    "x-auth-method, x-forwarded-for, x-real-ip, x-request-id, x-forwarded-proto, x-forwarded-host",
    "x-auth-subject",
    "accept,content-type",
    " , ,",
    "x_p_a",
];

#[derive(Debug, Clone)]
struct Rewrite {
    headers: Vec<(String, Vec<u8>)>,
    strip_credentials: bool,
    subject: Option<String>,
    host: Option<String>,
}

fn rewrite_strategy() -> impl Strategy<Value = Rewrite> {
    let name = prop_oneof![
        4 => prop::sample::select(HEADER_NAMES).prop_map(str::to_owned),
        2 => "x-p-[a-c]{1,2}",
        1 => "[a-zA-Z0-9_.!#$%&'*+^`|~-]{1,14}",
    ];
    let header = prop_oneof![
        6 => (name, value_bytes()),
        2 => prop::sample::select(CONNECTION_VALUES)
            .prop_map(|v| ("connection".to_owned(), v.as_bytes().to_vec())),
        1 => prop::sample::select(COOKIE_VALUES)
            .prop_map(|v| ("cookie".to_owned(), v.as_bytes().to_vec())),
    ];
    (
        prop::collection::vec(header, 0..12),
        any::<bool>(),
        prop::option::of(prop_oneof![
            Just("alice".to_owned()),
            Just("u\r\nX-Auth-Scopes: admin".to_owned()),
            Just("u\nx".to_owned()),
            "\\PC{0,12}",
            "[\\x00-\\x1f]{1,4}",
        ]),
        prop::option::of(prop_oneof![
            Just("api.example.com".to_owned()),
            Just("h\r\nx: y".to_owned()),
            "\\PC{0,10}",
        ]),
    )
        .prop_map(|(headers, strip_credentials, subject, host)| Rewrite {
            headers,
            strip_credentials,
            subject,
            host,
        })
}

fn run_rewrite(r: &Rewrite, trusted: bool) -> (HeaderMap, HeaderMap) {
    let input = header_map(&r.headers);
    let mut out = input.clone();
    let mut id = portcullis::auth::Identity::anonymous();
    if let Some(s) = &r.subject {
        id.method = portcullis::auth::AuthMethod::Jwt;
        id.subject = Some(Arc::from(s.as_str()));
        id.issuer = Some(ISSUER.into());
    }
    let peer: IpAddr = "192.0.2.7".parse().unwrap();
    let peer_value = HeaderValue::from_static("192.0.2.7");
    let rid = HeaderValue::from_static("rid-props-1");
    let ctx = portcullis::headers::ForwardCtx {
        peer_ip: peer,
        peer_value: &peer_value,
        peer_trusted: trusted,
        client_ip: peer,
        proto: "https",
        host: r.host.as_deref(),
        request_id: &rid,
        identity: &id,
        client_cert: None,
        strip_credentials: r.strip_credentials,
        credential_cookies: &["tok".to_owned()],
        upgrade: None,
    };
    portcullis::headers::upstream_request_headers(&mut out, &ctx);
    (input, out)
}

proptest! {
    #![proptest_config(cfg(1024))]

    /// From an untrusted peer: no hop-by-hop header, no header named in `Connection`, no client
    /// copy of an identity, request-id or override header (in any spelling), no consumed
    /// credential; the gateway's own forwarding and identity headers are exactly its own; no value
    /// carries a control character; and every ordinary header arrives intact.
    #[test]
    fn upstream_headers_from_an_untrusted_peer(r in rewrite_strategy()) {
        let (input, out) = run_rewrite(&r, false);
        let mut ours: Vec<(&str, Vec<u8>)> = vec![
            ("x-forwarded-for", b"192.0.2.7".to_vec()),
            ("x-real-ip", b"192.0.2.7".to_vec()),
            ("x-forwarded-proto", b"https".to_vec()),
            ("x-request-id", b"rid-props-1".to_vec()),
            ("x-auth-method", if r.subject.is_some() { b"jwt".to_vec() } else { b"none".to_vec() }),
        ];
        if r.subject.is_some() {
            ours.push(("x-auth-issuer", ISSUER.as_bytes().to_vec()));
        }
        let ours_names: HashSet<&str> = ours.iter().map(|(n, _)| *n)
            .chain(["x-forwarded-host", "x-auth-subject"]).collect();
        for (n, want) in &ours {
            prop_assert_eq!(values_of(&out, n), vec![want.as_slice()], "{} in {:?}", n, r);
        }
        if let Some(s) = &r.subject {
            let got = values_of(&out, "x-auth-subject");
            prop_assert!(got.len() <= 1, "{:?}", got);
            if !s.chars().any(char::is_control) && !s.is_empty() {
                prop_assert_eq!(got, vec![s.as_bytes()]);
            }
        } else {
            prop_assert!(values_of(&out, "x-auth-subject").is_empty());
        }
        if let Some(h) = &r.host {
            let got = values_of(&out, "x-forwarded-host");
            prop_assert!(got.len() <= 1, "{:?}", got);
            if HeaderValue::from_str(h).is_ok() && !h.chars().any(char::is_control) {
                prop_assert_eq!(got, vec![h.as_bytes()]);
            }
        } else {
            prop_assert!(values_of(&out, "x-forwarded-host").is_empty());
        }
        let nominated: HashSet<String> = input
            .get_all("connection")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
            .collect();
        for (name, value) in &out {
            let n = name.as_str();
            let c = canon(n);
            prop_assert!(!value.as_bytes().iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f),
                "{}: {:?} carries a control character", n, value);
            prop_assert!(!HOP_BY_HOP.contains(&c.as_str()), "hop-by-hop {} forwarded ({:?})", n, r);
            prop_assert!(!METHOD_OVERRIDES.contains(&c.as_str()), "method override {} forwarded", n);
            if r.strip_credentials {
                prop_assert!(c != "authorization" && c != "x-api-key", "credential {} forwarded", n);
            }
            let gateway_owned = c.starts_with("x-auth-") || c.starts_with("x-client-cert-")
                || c == "x-request-id" || spec_proxy_only(&c);
            if gateway_owned || nominated.contains(n) {
                prop_assert!(ours_names.contains(n), "{} reached the upstream from the client ({:?})", n, r);
            }
        }
        // The consumed cookie is gone, the others stay.
        if r.strip_credentials {
            for v in out.get_all("cookie") {
                let s = String::from_utf8_lossy(v.as_bytes());
                for c in s.split(';') {
                    let name = c.trim().split('=').next().unwrap_or("");
                    prop_assert_ne!(name, "tok", "token cookie forwarded: {:?}", s);
                }
            }
        }
        // Ordinary headers arrive with every value, in order.
        for name in input.keys() {
            let n = name.as_str();
            let ordinary = n.starts_with("x-p-") || ["accept", "content-type", "user-agent"].contains(&n);
            if ordinary && !nominated.contains(n) {
                prop_assert_eq!(values_of(&out, n), values_of(&input, n), "{} was changed ({:?})", n, r);
            }
        }
    }

    /// From a trusted proxy: its `X-Forwarded-For` is extended with the peer, canonical spellings
    /// of the forwarding headers pass, variant spellings never do, and identity headers are still
    /// only the gateway's.
    #[test]
    fn upstream_headers_from_a_trusted_proxy(r in rewrite_strategy()) {
        let (_input, out) = run_rewrite(&r, true);
        let xff = values_of(&out, "x-forwarded-for");
        prop_assert_eq!(xff.len(), 1);
        let xff = String::from_utf8_lossy(xff[0]);
        prop_assert!(xff == "192.0.2.7" || xff.ends_with(", 192.0.2.7"), "{:?}", xff);
        prop_assert_eq!(values_of(&out, "x-request-id"), vec![&b"rid-props-1"[..]]);
        for (name, _) in &out {
            let n = name.as_str();
            let c = canon(n);
            prop_assert!(!HOP_BY_HOP.contains(&c.as_str()), "hop-by-hop {} forwarded", n);
            prop_assert!(!METHOD_OVERRIDES.contains(&c.as_str()), "method override {} forwarded", n);
            if spec_proxy_only(&c) || c.starts_with("x-auth-") || c.starts_with("x-client-cert-") {
                prop_assert_eq!(&c, n, "variant spelling {} forwarded from a trusted proxy", n);
            }
        }
        let id_headers: Vec<&str> = out.keys().map(|k| k.as_str()).filter(|k| k.starts_with("x-auth-")).collect();
        for k in id_headers {
            prop_assert!(["x-auth-method", "x-auth-subject", "x-auth-issuer"].contains(&k), "{} forwarded", k);
        }
    }

    /// Response headers: hop-by-hop and `Connection`-nominated headers never reach the client
    /// (except `Connection`/`Upgrade` on a 101).
    #[test]
    fn downstream_headers_lose_hop_by_hop(r in rewrite_strategy(), switching in any::<bool>()) {
        let input = header_map(&r.headers);
        let mut out = input.clone();
        portcullis::headers::downstream_response_headers(&mut out, switching);
        let nominated: HashSet<String> = input
            .get_all("connection")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
            .collect();
        for name in out.keys() {
            let n = name.as_str();
            if switching && (n == "connection" || n == "upgrade") {
                continue;
            }
            prop_assert!(!HOP_BY_HOP.contains(&n), "{} kept", n);
            if !switching {
                prop_assert!(!nominated.contains(n), "{} (named in Connection) kept", n);
            }
        }
        for name in input.keys() {
            let n = name.as_str();
            if !HOP_BY_HOP.contains(&n) && !nominated.contains(n) {
                prop_assert_eq!(values_of(&out, n), values_of(&input, n));
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// 5. Host checks, normalization and routing; the client address behind trusted proxies

const RESOLVE_YAML: &str = r#"
listeners: [{ name: plain, bind: "127.0.0.1:0" }]
trusted_proxies: ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]
logging: { audit: "off" }
upstreams: { echo: { echo: true } }
routes:
  - { name: hosted, match: { host: "api.example.com", path_prefix: /hosted }, upstream: echo, auth: none }
  - { name: admin, match: { path_prefix: /admin }, upstream: echo, auth: none }
  - { name: rest, match: { path_prefix: / }, upstream: echo, auth: none }
"#;

static RESOLVE_SNAP: LazyLock<Snapshot> = LazyLock::new(|| load_snapshot(RESOLVE_YAML));

/// The path a route is chosen by (SPEC, docs/attack-cases.md PATH-13): each segment without its
/// `;` parameters; a segment that was only parameters disappears unless it is the last.
fn ref_route_path(normalized: &str) -> String {
    let segs: Vec<&str> = normalized[1..].split('/').collect();
    let mut kept = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let bare = s.split(';').next().unwrap_or("");
        if bare.is_empty() && i + 1 < segs.len() {
            continue;
        }
        kept.push(bare);
    }
    format!("/{}", kept.join("/"))
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix || path.starts_with(&format!("{prefix}/"))
}

const HOSTS: &[&str] = &[
    "api.example.com",
    "API.Example.COM.",
    "api.example.com:443",
    "api.example.com.:8080",
    "api.example.com:",
    "other.test",
    "user@api.example.com",
    "api.example.com@evil",
    "[::1]",
    "[::1]:80",
    "127.0.0.1",
    "",
    ".",
    "a..b",
    "api.example.com/x",
    "api.example.com\t",
    "xn--nxasmq6b.test",
    "%61pi.example.com",
];

#[derive(Debug, Clone)]
struct ResolveCase {
    method: &'static str,
    target: String,
    hosts: Vec<Vec<u8>>,
    version: u8,
    sni: Option<&'static str>,
}

/// Route-shaped paths: `admin` and `hosted` segments among dots, parameters and encodings.
fn route_path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "admin",
            "admin;x=1",
            ";x",
            "%61dmin",
            "adm%69n",
            "ADMIN",
            "hosted",
            "hosted;",
            "a",
            ".",
            "..",
            "%2e%2e",
            "",
            "admin%3b",
            "admin..",
            "x;/admin",
        ]),
        0..5,
    )
    .prop_map(|segs| format!("/{}", segs.join("/")))
}

fn resolve_case() -> impl Strategy<Value = ResolveCase> {
    let host_bytes = prop_oneof![
        6 => prop::sample::select(HOSTS).prop_map(|h| h.as_bytes().to_vec()),
        1 => value_bytes(),
    ];
    let hosts = prop_oneof![
        1 => Just(vec![]),
        6 => host_bytes.clone().prop_map(|h| vec![h]),
        1 => prop::collection::vec(host_bytes, 2..3),
    ];
    let path = prop_oneof![3 => route_path_strategy(), 2 => path_strategy()];
    let target = prop_oneof![
        6 => (path.clone(), prop::option::of("[a-z=&;]{0,8}")).prop_map(|(p, q)| match q {
            Some(q) => format!("{p}?{q}"),
            None => p,
        }),
        2 => (prop::sample::select(HOSTS), path)
            .prop_map(|(h, p)| format!("http://{h}{p}")),
        1 => "\\PC{0,20}",
        1 => Just("*".to_owned()),
    ];
    (
        prop::sample::select(vec!["GET", "GET", "GET", "POST", "CONNECT", "OPTIONS"]),
        target,
        hosts,
        prop_oneof![1 => Just(0u8), 4 => Just(1u8), 1 => Just(2u8)],
        prop_oneof![
            4 => Just(None),
            1 => prop::sample::select(vec!["api.example.com", "other.test"]).prop_map(Some),
        ],
    )
        .prop_map(|(method, target, hosts, version, sni)| ResolveCase {
            method,
            target,
            hosts,
            version,
            sni,
        })
}

proptest! {
    #![proptest_config(cfg(2048))]

    /// `proxy::resolve` never panics, refuses with 400 or 421, and when it accepts: the host is
    /// lower-case without port or trailing dot and agrees with the SNI; the path is the
    /// normalized path; the route is the one the `;`-stripped normalized path and the host
    /// select (so `/admin;x`, `/;x/admin`, `/%61dmin` all reach the `admin` route's rules).
    #[test]
    fn resolve_never_panics_and_routes_by_the_normalized_path(c in resolve_case()) {
        let Ok(uri) = c.target.parse::<http::Uri>() else { return Ok(()) };
        let mut b = Request::builder()
            .method(Method::from_bytes(c.method.as_bytes()).unwrap())
            .uri(uri.clone())
            .version([Version::HTTP_10, Version::HTTP_11, Version::HTTP_2][c.version as usize]);
        let mut n_hosts = 0;
        let mut host_has_at = false;
        for h in &c.hosts {
            if let Ok(v) = HeaderValue::from_bytes(h) {
                host_has_at |= h.contains(&b'@');
                n_hosts += 1;
                b = b.header(http::header::HOST, v);
            }
        }
        let req = b.body(()).unwrap();
        let conn = conn_info("127.0.0.1".parse().unwrap(), c.sni);
        match portcullis::route::resolve(&RESOLVE_SNAP.router, &conn, &req) {
            Err(e) => prop_assert!(
                e.status() == StatusCode::BAD_REQUEST || e.status() == StatusCode::MISDIRECTED_REQUEST,
                "{:?}: {} {}", c, e.status(), e.reason
            ),
            Ok(routed) => {
                prop_assert!(c.method != "CONNECT");
                prop_assert!(n_hosts <= 1, "{:?}: two Host headers accepted", c);
                prop_assert!(!host_has_at, "{:?}: user information in Host accepted", c);
                if let Some(h) = &routed.host {
                    prop_assert!(!h.is_empty() && !h.ends_with('.'), "{:?}", h);
                    prop_assert_eq!(h, &h.to_ascii_lowercase());
                    prop_assert!(!h.contains('@') && !h.contains('/'), "{:?}", h);
                    prop_assert!(h.starts_with('[') || !h.contains(':'), "{:?} keeps a port", h);
                }
                if let (Some(sni), Some(h)) = (c.sni, &routed.host) {
                    prop_assert_eq!(sni, h.as_str(), "{:?}", c);
                }
                let want = normalize(uri.path()).map(|n| n.into_owned());
                prop_assert_eq!(Ok(routed.path.clone()), want);
                let rp = ref_route_path(&routed.path);
                let expected = if routed.host.as_deref() == Some("api.example.com") && under(&rp, "/hosted") {
                    "hosted"
                } else if under(&rp, "/admin") {
                    "admin"
                } else {
                    "rest"
                };
                prop_assert_eq!(&*routed.route.name, expected, "{:?} (route path {:?})", c, rp);
            }
        }
    }
}

/// The right-most `X-Forwarded-For` entry that is not a trusted proxy (SPEC section 2); walking
/// from the right stops at an entry that is not an address (nothing left of garbage is
/// believed), keeping the last address reached.
fn ref_client_ip(peer: IpAddr, xff: &[Vec<u8>]) -> IpAddr {
    let trusted = |ip: IpAddr| {
        let ip = ip.to_canonical();
        match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 10 || v4 == std::net::Ipv4Addr::new(192, 0, 2, 1),
            IpAddr::V6(v6) => v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8,
        }
    };
    let peer = peer.to_canonical();
    if !trusted(peer) {
        return peer;
    }
    let mut entries: Vec<Option<IpAddr>> = Vec::new();
    for v in xff {
        match visible_ascii(v) {
            None => entries.push(None),
            Some(s) => entries.extend(s.split(',').map(|e| e.trim().parse::<IpAddr>().ok())),
        }
    }
    let mut client = peer;
    for e in entries.iter().rev() {
        match e {
            None => return client,
            Some(ip) => {
                client = ip.to_canonical();
                if !trusted(client) {
                    return client;
                }
            }
        }
    }
    client
}

const XFF_ENTRIES: &[&str] = &[
    "203.0.113.9",
    "10.1.1.1",
    "192.0.2.1",
    "192.0.2.2",
    "::ffff:10.0.0.9",
    "::ffff:203.0.113.10",
    "2001:db8::1",
    "2001:db9::1",
    "unknown",
    "",
    " 198.51.100.1 ",
    "198.51.100.1:80",
    "[::1]",
    "_hidden",
];

proptest! {
    #![proptest_config(cfg(2048))]

    #[test]
    fn client_ip_matches_reference(
        peer in prop::sample::select(vec!["10.9.9.9", "192.0.2.1", "::ffff:10.0.0.5", "203.0.113.1", "::1", "2001:db8::7"]),
        xff in prop::collection::vec(prop_oneof![
            4 => prop::collection::vec(prop::sample::select(XFF_ENTRIES), 0..4).prop_map(|v| v.join(",").into_bytes()),
            1 => value_bytes(),
        ], 0..3),
    ) {
        let peer: IpAddr = peer.parse().unwrap();
        let mut h = HeaderMap::new();
        for v in &xff {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                h.append("x-forwarded-for", v);
            }
        }
        let kept: Vec<Vec<u8>> = values_of(&h, "x-forwarded-for").into_iter().map(<[u8]>::to_vec).collect();
        let conn = conn_info(peer, None);
        let got = RESOLVE_SNAP.trusted_proxies.client_ip(&conn, &h);
        prop_assert_eq!(got, ref_client_ip(peer, &kept), "peer {} xff {:?}", peer, kept.iter().map(|v| String::from_utf8_lossy(v)).collect::<Vec<_>>());
    }

    #[test]
    fn canonical_ip_matches_std(b in any::<[u8; 16]>(), v4 in any::<bool>()) {
        let ip = if v4 {
            IpAddr::from([b[0], b[1], b[2], b[3]])
        } else {
            IpAddr::from(b)
        };
        prop_assert_eq!(portcullis::conn::canonical_ip(ip), ip.to_canonical());
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_ipv6_mapped());
        prop_assert_eq!(portcullis::conn::canonical_ip(mapped), IpAddr::from([b[0], b[1], b[2], b[3]]));
    }
}

// ------------------------------------------------------------------------------------------------
// 6. JWT: structure, claims and the whole verify path
//
// Reference model of SPEC section 2 ("JWT validity, beyond the signature"), for a route whose one
// JWT authenticator accepts issuer ISSUER, audiences `gw`/`gw2`, algorithm HS256, no leeway:
// - header: `alg` is the string `HS256`; no `kid` (the configured secret has none, and an unknown
//   `kid` is refused); `typ` a string when present; no `crit` at all
//   (we implement no extension, so any `crit` names something we do not implement); `b64`, when
//   present, is `true`; `jku`/`x5u`/`jwk` change nothing;
// - claims: `iss` is the issuer; `exp` is present, a number, not past; `nbf`/`iat` numbers when
//   present, `nbf` not in the future, `iat` not in the future; `sub` a non-empty string (the
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
            Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(()),
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
) -> Result<portcullis::auth::Decision, portcullis::error::Reject> {
    let conn = conn_info("127.0.0.1".parse().unwrap(), None);
    let req = AuthRequest {
        headers: h,
        query: q,
        conn: &conn,
        client_ip: conn.peer.ip(),
    };
    block_on(portcullis::auth::evaluate(policy, &req, None))
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
            Ok(d) => prop_assert!(false, "{:?} authenticated as {:?}", s, d.identity.subject),
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
                    let id = &d.identity;
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
        Keys::Remote(_) => None,
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
            prop_assert!(same, "mutated token {:?} accepted as {:?}", m, d.identity.subject);
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
            prop_assert!(same, "mutated token {:?} accepted as {:?}", m, d.identity.subject);
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

// ------------------------------------------------------------------------------------------------
// 7. Smaller parsers

/// SPEC section 2 durations: `0`, or digits then one of `ms`, `s`, `m`, `h`, `d`.
fn ref_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = s[..digits].parse().ok()?;
    let ms: u64 = match &s[digits..] {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms).map(std::time::Duration::from_millis)
}

proptest! {
    #![proptest_config(cfg(1024))]

    #[test]
    fn durations_match_reference(s in prop_oneof![
        "[ ]?[0-9]{0,21}(ms|s|m|h|d|x|)[ ]?",
        "\\PC{0,12}",
    ]) {
        prop_assert_eq!(portcullis::values::parse_duration(&s).ok(), ref_duration(&s), "{:?}", s);
    }

    /// One grammar for the config, the admin API and the CLI: any spelling of a unit, spaces
    /// around the parts, counts up to nine digits; the canonical form parses back to the same.
    #[test]
    fn rates_round_trip(count in prop_oneof![1u32..=999_999_999, 1u32..], unit in 0usize..6, spaces in any::<bool>()) {
        let (u, per) = [("s", 1), ("sec", 1), ("m", 60), ("min", 60), ("h", 3600), ("hour", 3600)][unit];
        let text = if spaces { format!(" {count} / {u} ") } else { format!("{count}/{u}") };
        match portcullis::values::parse_rate(&text) {
            Ok(r) => {
                prop_assert!(count <= portcullis::values::MAX_RATE_COUNT);
                prop_assert_eq!(r.count, count);
                prop_assert_eq!(r.per, std::time::Duration::from_secs(per));
                prop_assert_eq!(portcullis::values::parse_rate(&r.to_string()), Ok(r));
            }
            Err(_) => prop_assert!(count > portcullis::values::MAX_RATE_COUNT, "{:?}", text),
        }
    }

    #[test]
    fn rate_and_interpolation_never_panic(s in "\\PC{0,24}") {
        let _ = portcullis::values::parse_rate(&s);
        let env = |n: &str| (n == "X").then(|| "v".to_owned());
        if let Ok(out) = portcullis::values::interpolate_with(&s, env) {
            if !s.contains('$') {
                prop_assert_eq!(out, s);
            }
        }
    }

    /// Every quota a config or an API key can name either is refused at compile time or counts
    /// requests without panicking (governor multiplies the interval by the burst).
    #[test]
    fn rate_limits_never_panic(
        count in prop_oneof![1u32..10, Just(u32::MAX), 1u32..],
        per in prop::sample::select(vec![1u64, 60, 3600]),
        burst in prop_oneof![1u32..10, Just(u32::MAX), 1u32..],
        n in 1usize..4,
    ) {
        let spec = portcullis::auth::rate_limit::LimitSpec {
            count,
            per: std::time::Duration::from_secs(per),
            burst,
        };
        if let Ok(l) = portcullis::auth::rate_limit::RateLimit::new("p", spec, portcullis::auth::rate_limit::LimitKey::Ip) {
            for _ in 0..n {
                let _ = l.check("ip|127.0.0.1");
            }
        }
    }

    #[test]
    fn rfc3339_round_trips(secs in 0i64..253_402_300_799, micros in 0u32..1_000_000) {
        let t = portcullis::clock::rfc3339(secs, micros);
        prop_assert_eq!(portcullis::clock::parse_rfc3339(&t), Some(secs), "{}", t);
    }

    #[test]
    fn rfc3339_parse_never_panics(s in prop_oneof![
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,9})?(Z|z|[+-][0-9]{2}:[0-9]{2}|[+-][0-9:]{0,6}|\\PC{0,3})",
        "\\PC{0,30}",
    ]) {
        let _ = portcullis::clock::parse_rfc3339(&s);
    }

    #[test]
    fn sha256_round_trips(b in any::<[u8; 32]>(), upper in any::<bool>()) {
        let hex = portcullis::digest::hex_lower(&b);
        let hex = if upper { hex.to_ascii_uppercase() } else { hex };
        prop_assert_eq!(portcullis::digest::parse_sha256(&format!("sha256:{hex}")), Some(b));
    }

    #[test]
    fn small_config_parsers_never_panic(s in "\\PC{0,40}") {
        let _ = portcullis::digest::parse_sha256(&s);
        let _ = portcullis::digest::parse_sha256(&format!("sha256:{s}"));
        let _ = portcullis::router::HostMatch::parse(&s);
        let _ = portcullis::router::PathMatch::exact(&s);
        let _ = portcullis::router::PathMatch::prefix(&s);
        let _ = portcullis::auth::rate_limit::LimitKey::parse(&s);
        let _ = CredentialSource::parse(&s);
        let _ = portcullis::telemetry::audit::AuditTarget::parse(&s, Path::new("."));
        let l = portcullis::config::locate::Locator::new(&s);
        let _ = l.find(&s);
    }

    /// JWK Sets come from the network (a remote JWKS): any JSON never panics.
    #[test]
    fn jwks_parsing_never_panics(doc in prop_oneof![
        "\\{\"keys\":\\[(\\{(\"(kty|kid|alg|use|key_ops|n|e|crv|x|y|k)\":(\"[A-Za-z0-9_-]{0,12}\"|[0-9]{1,3}|null|\\[\\]),?){0,6}\\},?){0,3}\\]\\}",
        "\\PC{0,40}",
    ], oct in any::<bool>()) {
        let _ = KeySet::from_jwks(doc.as_bytes(), oct);
    }

    /// Client certificate fields come from the client (after chain verification); arbitrary DER
    /// never panics the field extraction.
    #[test]
    fn client_cert_info_never_panics(der in prop::collection::vec(any::<u8>(), 0..300)) {
        let c = portcullis::conn::client_cert_info(&rustls_pki_types::CertificateDer::from(der));
        prop_assert_eq!(c.sha256.len(), 64);
    }
}

#[test]
fn client_cert_info_survives_mutated_certificates() {
    let pki = Pki::new();
    let pem = pki.read("client.crt");
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(&pem)
            .unwrap()
            .to_vec()
    };
    let good =
        portcullis::conn::client_cert_info(&rustls_pki_types::CertificateDer::from(der.clone()));
    assert!(good.subject.contains("CN=alice"), "{}", good.subject);
    let mut runner = proptest::test_runner::TestRunner::new(cfg(1024));
    runner
        .run(
            &(any::<usize>(), any::<u8>(), 0u8..2),
            |(pos, byte, edit)| {
                let mut d = der.clone();
                let p = pos % d.len();
                if edit == 0 {
                    d[p] = byte;
                } else {
                    d.truncate(p);
                }
                let _ =
                    portcullis::conn::client_cert_info(&rustls_pki_types::CertificateDer::from(d));
                Ok(())
            },
        )
        .unwrap();
}

// ------------------------------------------------------------------------------------------------
// 8. Config parse + compile (`portcullis check`: `load_mode(.., Mode::Check)`, no runtime)

const GATEWAY_YAML: &str = include_str!("../gateway.yaml");

/// A folder holding a copy of the shipped config and the development PKI it names, so that
/// compiling reaches the TLS code (in `Check` mode nothing is written).
fn config_fixture() -> tempfile::TempDir {
    portcullis::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    portcullis::devpki::generate(&dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), GATEWAY_YAML).unwrap();
    dir
}

fn check_config(file: &Path, src: &str) {
    // Errors are fine; a panic fails the property.
    let _ = config::load_str(file, src, None, Mode::Check);
}

const YAML_TOKENS: &[&str] = &[
    "\n",
    "\n",
    "\n  ",
    "\n    ",
    "  ",
    ": ",
    ":",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "#",
    "'",
    "\"",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "!!map",
    "<<: *a",
    "? ",
    "|",
    ">",
    "---",
    "...",
    "~",
    "null",
    "true",
    "0",
    "-1",
    "1e999",
    "0x1F",
    ".inf",
    "listeners",
    "routes",
    "upstreams",
    "authenticators",
    "rate_limits",
    "limits",
    "admin",
    "store",
    "logging",
    "trusted_proxies",
    "scopes",
    "workers",
    "name",
    "bind",
    "tls",
    "match",
    "path",
    "path_prefix",
    "host",
    "auth",
    "any_of",
    "none",
    "type",
    "jwt",
    "api_key",
    "mtls",
    "echo",
    "url",
    "rate",
    "burst",
    "key",
    "secret",
    "issuer",
    "algorithms",
    "audiences",
    "127.0.0.1:0",
    "/",
    "/api",
    "1/s",
    "10s",
    "${HOME}",
    "${UNSET_PROPS_VAR}",
    "$$",
    "\t",
    "\u{feff}",
    "é",
];

fn yaml_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(YAML_TOKENS), 0..60).prop_map(|t| t.concat())
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, &'static str),
    ReplaceValue(usize, &'static str),
    DuplicateLine(usize),
    DeleteLine(usize),
    SwapLines(usize, usize),
    Indent(usize, usize),
}

const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "10000000",
    "1/h",
    "4294967295/s",
    "0/s",
    "99999999999999999999d",
    "18446744073709551615ms",
    "1.5s",
    "\"\"",
    "''",
    "~",
    "[]",
    "{}",
    "[a, b]",
    "{ a: 1 }",
    "none",
    "true",
    "yes",
    "${HOME}",
    "${UNSET_PROPS_VAR}",
    "\"${\"",
    "$$",
    "&x 1",
    "*x",
    "!!binary aGk=",
    "[::1]:0",
    "[::1]",
    "0.0.0.0:99999",
    "*.example.com",
    "*",
    "/a/../b",
    "/%2e",
    "api",
    "http://127.0.0.1:9",
    "https://127.0.0.1:9",
    "ftp://x",
    "http://a@b/",
    "certs/ca.crt",
    "certs",
    "/nonexistent",
    "gateway.yaml",
    "required",
    "optional",
    "maybe",
    "sha256:00",
    "\"\\u0000\"",
    "é",
    "\"a\\nb\"",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), prop::sample::select(YAML_TOKENS))
            .prop_map(|(p, t)| Mutation::Insert(p, t)),
        (any::<usize>(), prop::sample::select(VALUES))
            .prop_map(|(l, v)| Mutation::ReplaceValue(l, v)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DeleteLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), 0usize..6).prop_map(|(l, n)| Mutation::Indent(l, n)),
    ]
}

fn apply(src: &str, muts: &[Mutation]) -> String {
    let mut s = src.to_owned();
    for m in muts {
        let mut lines: Vec<String> = s.lines().map(str::to_owned).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        let nl = lines.len();
        let boundary = |s: &str, p: usize| {
            let mut p = p % (s.len() + 1);
            while !s.is_char_boundary(p) {
                p -= 1;
            }
            p
        };
        match m {
            Mutation::Delete(p, n) => {
                let a = boundary(&s, *p);
                let b = boundary(&s, (a + n).min(s.len()));
                s.replace_range(a..b.max(a), "");
                continue;
            }
            Mutation::Insert(p, t) => {
                let a = boundary(&s, *p);
                s.insert_str(a, t);
                continue;
            }
            Mutation::ReplaceValue(l, v) => {
                let line = &mut lines[l % nl];
                if let Some(i) = line.find(": ") {
                    line.truncate(i + 2);
                    line.push_str(v);
                } else {
                    line.push_str(v);
                }
            }
            Mutation::DuplicateLine(l) => {
                let line = lines[l % nl].clone();
                lines.insert(l % nl, line);
            }
            Mutation::DeleteLine(l) => {
                lines.remove(l % nl);
            }
            Mutation::SwapLines(a, b) => lines.swap(a % nl, b % nl),
            Mutation::Indent(l, n) => {
                let line = &mut lines[l % nl];
                let body = line.trim_start().to_owned();
                *line = format!("{}{body}", " ".repeat(*n));
            }
        }
        s = lines.join("\n");
        s.push('\n');
    }
    s
}

/// A config built from the schema (SPEC section 2) with values drawn from awkward pools, so that
/// most documents parse and compile reaches its semantic checks.
struct Picks<'a> {
    r: &'a [u16],
    i: usize,
}

impl Picks<'_> {
    fn n(&mut self, m: usize) -> usize {
        let v = self.r.get(self.i).copied().unwrap_or(0) as usize;
        self.i += 1;
        v % m
    }
    fn flag(&mut self) -> bool {
        self.n(2) == 0
    }
    fn raw<'p>(&mut self, pool: &[&'p str]) -> &'p str {
        pool[self.n(pool.len())]
    }
    /// An enum value, rarely one the schema does not have.
    fn variant<'p>(&mut self, good: &[&'p str], bad: &'p str) -> &'p str {
        if self.n(40) == 39 {
            bad
        } else {
            self.raw(good)
        }
    }
    /// A scalar, usually double-quoted (JSON escapes are valid YAML), sometimes bare; now and
    /// then one that cannot parse.
    fn v(&mut self, pool: &[&str]) -> String {
        let x = if self.n(200) == 199 {
            self.raw(P_BAD)
        } else {
            self.raw(pool)
        };
        let plain = !x.is_empty()
            && x.chars()
                .all(|c| c.is_ascii_alphanumeric() || "./_-".contains(c));
        if plain && self.flag() {
            x.to_owned()
        } else {
            serde_json::to_string(x).unwrap()
        }
    }
    /// `, key: value` on `out`, one time in `one_in` (the value drawn only then).
    fn opt<D: std::fmt::Display>(
        &mut self,
        out: &mut String,
        one_in: usize,
        key: &str,
        val: impl FnOnce(&mut Self) -> D,
    ) {
        if self.n(one_in) == 0 {
            let v = val(self);
            out.push_str(&format!(", {key}: {v}"));
        }
    }
    fn list(&mut self, pool: &[&str], max: usize) -> String {
        let k = self.n(max + 1);
        let items: Vec<String> = (0..k).map(|_| self.v(pool)).collect();
        format!("[{}]", items.join(", "))
    }
}

const P_DUR: &[&str] = &[
    "0",
    "10s",
    "500ms",
    "1h",
    "90d",
    "1s",
    "0s",
    "18446744073709551615ms",
    "999999999999999ms",
    " 30s ",
    "1m",
];
const P_NUM: &[&str] = &[
    "0",
    "1",
    "2",
    "8192",
    "16384",
    "1048576",
    "1048577",
    "1000000",
    "1000001",
    "10000000",
    "4294967295",
    "4294967296",
    "18446744073709551615",
];
const P_RATE: &[&str] = &[
    "1/s",
    "4294967295/s",
    "1000000000/s",
    "999999999/s",
    "1/min",
    "1/h",
    "2/hour",
    " 5 / s ",
    "1/m",
];
/// Scalars that fail at the parse level wherever they go (serde stops at the first one, so they
/// are rare: most documents must get through to the semantic checks).
const P_BAD: &[&str] = &[
    "-1s",
    "1.5s",
    "",
    "${UNSET_PROPS_VAR}",
    "s",
    "-1",
    "1e3",
    "0x10",
    "18446744073709551616",
    "99999999999999999999d",
    "18446744073709551615s",
    "213503982334601d",
    "0/s",
    "10/d",
    "x",
    "/",
    "1/",
];
const P_ADDR: &[&str] = &[
    "127.0.0.1:0",
    "127.0.0.1:8080",
    "[::1]:0",
    "0.0.0.0:8443",
    "localhost:80",
    "127.0.0.1",
    "127.0.0.1:99999",
    ":80",
    "",
];
const P_HOST: &[&str] = &[
    "api.example.com",
    "*.example.com",
    "*.",
    "*",
    "a..b",
    "[::1]",
    "[]",
    "[x]",
    "1.2.3.4",
    "api.example.com:443",
    "-a.b",
    "localhost",
    "",
];
const P_PATH: &[&str] = &[
    "/", "/api", "/api/", "api", "/a/../b", "/%2e", "/a%2fb", "", "/a;b", "//",
];
const P_NAME: &[&str] = &["a", "b", "echo", "hs", "keys", "m", "lim", "", "a b", "é"];
const P_URL: &[&str] = &[
    "http://127.0.0.1:9",
    "https://127.0.0.1:9",
    "http://[::1]:9/base/",
    "ftp://x",
    "http://",
    "127.0.0.1:9",
    "http://a@b/",
    "http://h/?q=1",
    "http://h:99999",
    "http://h/%zz",
    "https://h",
];
const P_FILE: &[&str] = &[
    "certs/server.crt",
    "certs/server.key",
    "certs/ca.crt",
    "certs/client-ca.crt",
    "missing.pem",
    "",
    "certs",
    "gateway.yaml",
];
const P_ALG: &[&str] = &[
    "HS256", "RS256", "ES256", "EdDSA", "none", "hs256", "PS512", "ES512", "",
];
const P_TOKEN_FROM: &[&str] = &[
    "header",
    "cookie:tok",
    "query:t",
    "cookie:",
    "query:",
    "body",
];
const P_LIMIT_KEY: &[&str] = &[
    "identity",
    "ip",
    "header:X-Tenant",
    "header:",
    "header:bad name",
    "x",
];
const P_METHOD: &[&str] = &["GET", "get", "G T", "", "PURGE", "CONNECT"];
const P_LEVEL: &[&str] = &["info", "debug", "warn,portcullis=trace", "[", "a=b=c", ""];
const P_BOOL: &[&str] = &["true", "false"];
const P_SHA: &[&str] = &[
    "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "sha256:abc",
    "sha256:gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg",
    "",
];

fn grammar_config(r: &[u16]) -> String {
    let mut p = Picks { r, i: 0 };
    let mut y = String::new();
    let mut w = |s: String| {
        y.push_str(&s);
        y.push('\n');
    };
    w("listeners:".into());
    for _ in 0..p.n(3) {
        let mut l = format!("  - name: {}\n    bind: {}", p.v(P_NAME), p.v(P_ADDR));
        if p.n(3) == 0 {
            l.push_str(&format!(
                "\n    tls: {{ cert: {}, key: {}",
                p.v(P_FILE),
                p.v(P_FILE)
            ));
            p.opt(&mut l, 2, "generate_missing", |p| p.raw(P_BOOL));
            if p.flag() {
                l.push_str(&format!(
                    ", client_auth: {{ mode: {}, ca: {} }}",
                    p.variant(&["none", "optional", "required"], "maybe"),
                    p.v(P_FILE)
                ));
            }
            p.opt(&mut l, 4, "self_signed", |p| p.list(P_HOST, 2));
            l.push_str(" }");
        }
        w(l);
    }
    if p.flag() {
        w(format!(
            "limits: {{ header_timeout: {}, idle_timeout: {}, body_timeout: {}, max_header_bytes: {}, max_body_bytes: {}, max_connections: {}, shutdown_timeout: {} }}",
            p.v(P_DUR), p.v(P_DUR), p.v(P_DUR), p.v(P_NUM), p.v(P_NUM), p.v(P_NUM), p.v(P_DUR)
        ));
    }
    w(format!(
        "logging: {{ format: {}, level: {}, audit: off }}",
        p.variant(&["json", "pretty"], "xml"),
        p.v(P_LEVEL)
    ));
    if p.flag() {
        w(format!(
            "trusted_proxies: {}",
            p.list(
                &["10.0.0.0/8", "::1", "1.2.3.4/33", "x", "0.0.0.0/0", ""],
                3
            )
        ));
    }
    if p.flag() {
        w(format!(
            "admin: {{ bind: {}, token_sha256: {} }}",
            p.v(P_ADDR),
            p.v(P_SHA)
        ));
    }
    match p.n(5) {
        0 => w(format!(
            "store: {{ sqlite: {} }}",
            p.v(&["data/x.db", "", "/"])
        )),
        1 => w(format!(
            "store: {{ postgres: {}, resync: {} }}",
            p.v(&[
                "postgres://u@127.0.0.1:1/db",
                "postgresql://",
                "mysql://x",
                ""
            ]),
            p.v(P_DUR)
        )),
        2 => w(format!(
            "store: {{ sqlite: data/x.db, redis: {}, on_redis_error: {}, redis_timeout: {} }}",
            p.v(&[
                "redis://127.0.0.1:1",
                "redis://",
                "rediss://h",
                "http://x",
                ""
            ]),
            p.v(&["local", "deny", "allow", "x"]),
            p.v(P_DUR)
        )),
        _ => {}
    }
    w("upstreams:".into());
    for _ in 0..p.n(3) {
        let name = p.v(P_NAME);
        if p.flag() {
            w(format!("  {name}: {{ echo: {} }}", p.raw(P_BOOL)));
        } else {
            let mut u = format!("  {name}: {{ url: {}", p.v(P_URL));
            for (k, pool) in [("timeout", P_DUR), ("connect_timeout", P_DUR)] {
                p.opt(&mut u, 3, k, |p| p.v(pool));
            }
            p.opt(&mut u, 3, "ca", |p| p.v(P_FILE));
            p.opt(&mut u, 3, "http2", |p| p.raw(P_BOOL));
            u.push_str(" }");
            w(u);
        }
    }
    if p.flag() {
        w("rate_limits:".into());
        for _ in 0..p.n(3) {
            let mut r = format!("  {}: {{ rate: {}", p.v(P_NAME), p.v(P_RATE));
            p.opt(&mut r, 2, "burst", |p| p.v(P_NUM));
            p.opt(&mut r, 3, "key", |p| p.v(P_LIMIT_KEY));
            r.push_str(" }");
            w(r);
        }
    }
    w("authenticators:".into());
    for _ in 0..p.n(4) {
        let name = p.v(P_NAME);
        match p.n(4) {
            0 => w(format!("  {name}: {{ type: mtls }}")),
            1 => w(format!(
                "  {name}: {{ type: api_key, envs: {} }}",
                p.list(&["live", "test", "prod"], 2)
            )),
            2 if p.n(20) == 19 => w(format!("  {name}: {{ type: other }}")),
            _ => {
                let mut j = format!(
                    "  {name}: {{ type: jwt, issuer: {}, audiences: {}, algorithms: {}",
                    p.v(&["https://i.test", ""]),
                    p.list(&["gw", ""], 2),
                    p.list(P_ALG, 2)
                );
                match p.n(6) {
                    0 => j.push_str(&format!(
                        ", secret: {}",
                        p.v(&["s3cr3t-0123456789abcdef0123456789", "", "short"])
                    )),
                    1 => j.push_str(&format!(", public_key: {}", p.v(P_FILE))),
                    2 => j.push_str(&format!(", jwks_file: {}", p.v(P_FILE))),
                    3 => j.push_str(&format!(
                        ", jwks_url: {}",
                        p.v(&["https://127.0.0.1:9/jwks", "http://127.0.0.1:9/jwks", "x"])
                    )),
                    4 => j.push_str(", discovery: true"),
                    _ => {}
                }
                for (k, pool) in [
                    ("leeway", P_DUR),
                    ("jwks_refresh", P_DUR),
                    ("jwks_cooldown", P_DUR),
                    ("jwks_max_stale", P_DUR),
                    ("require_typ", &["at+jwt", "", "JWT"][..]),
                    ("scopes_claim", &["scp", "", "scope"][..]),
                ] {
                    p.opt(&mut j, 4, k, |p| p.v(pool));
                }
                p.opt(&mut j, 3, "token_from", |p| p.list(P_TOKEN_FROM, 3));
                if p.n(4) == 0 {
                    j.push_str(&format!(
                        ", verify_cache: {{ max_entries: {} }}",
                        p.v(P_NUM)
                    ));
                }
                if p.n(4) == 0 {
                    j.push_str(&format!(
                        ", claims_to_headers: {{ {}: {} }}",
                        p.v(&["x-auth-role", "x-other", "bad name", "", "X-Auth-Subject"]),
                        p.v(&["role", "", "sub"])
                    ));
                }
                j.push_str(" }");
                w(j);
            }
        }
    }
    if p.n(3) == 0 {
        w(format!("scopes: {{ superscope: {} }}", p.v(&["root", ""])));
    }
    w("routes:".into());
    for _ in 0..p.n(4) {
        let mut m = Vec::new();
        if p.n(3) == 0 {
            m.push(format!("host: {}", p.v(P_HOST)));
        }
        match p.n(4) {
            0 => m.push(format!("path: {}", p.v(P_PATH))),
            1 | 2 => m.push(format!("path_prefix: {}", p.v(P_PATH))),
            _ => {}
        }
        if p.n(3) == 0 {
            m.push(format!("methods: {}", p.list(P_METHOD, 2)));
        }
        let auth = if p.n(3) == 0 {
            "none".to_owned()
        } else {
            let mut a = format!("{{ any_of: {}", p.list(P_NAME, 2));
            p.opt(&mut a, 3, "scopes", |p| p.list(&["read", "", "root"], 2));
            p.opt(&mut a, 4, "scopes_any", |p| p.list(&["read", "a"], 2));
            p.opt(&mut a, 3, "rate_limit", |p| p.v(P_NAME));
            p.opt(&mut a, 4, "require_client_cert", |p| p.raw(P_BOOL));
            a.push_str(" }");
            a
        };
        let mut r = format!(
            "  - {{ name: {}, match: {{ {} }}, upstream: {}, auth: {auth}",
            p.v(P_NAME),
            m.join(", "),
            p.v(P_NAME)
        );
        p.opt(&mut r, 4, "max_body_bytes", |p| p.v(P_NUM));
        p.opt(&mut r, 4, "forward_credentials", |p| p.raw(P_BOOL));
        p.opt(&mut r, 4, "pre_auth_rate_limit", |p| p.v(P_NAME));
        r.push_str(" }");
        w(r);
    }
    if p.n(4) == 0 {
        w(format!("workers: {}", p.v(P_NUM)));
    }
    y
}

fn run_config_property<S: Strategy>(cases: u32, strategy: S, to_yaml: impl Fn(S::Value) -> String)
where
    S::Value: std::fmt::Debug,
{
    let dir = config_fixture();
    let file: PathBuf = dir.path().join("gateway.yaml");
    let mut runner = proptest::test_runner::TestRunner::new(cfg(cases));
    let result = runner.run(&strategy, |v| {
        let yaml = to_yaml(v);
        let outcome = std::panic::catch_unwind(|| check_config(&file, &yaml));
        prop_assert!(outcome.is_ok(), "config compile panicked on:\n{}", yaml);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn shipped_config_compiles_in_check_mode() {
    let dir = config_fixture();
    let file = dir.path().join("gateway.yaml");
    if let Err(e) = config::load_str(&file, GATEWAY_YAML, None, Mode::Check) {
        panic!("the shipped gateway.yaml does not compile: {e}");
    }
}

#[test]
fn config_compile_never_panics_on_yaml_soup() {
    run_config_property(256, yaml_soup(), |s| s);
}

#[test]
fn config_compile_never_panics_on_mutated_gateway_yaml() {
    run_config_property(256, prop::collection::vec(mutation(), 1..5), |muts| {
        apply(GATEWAY_YAML, &muts)
    });
}

#[test]
fn config_compile_never_panics_on_grammar_configs() {
    run_config_property(512, prop::collection::vec(any::<u16>(), 240), |r| {
        grammar_config(&r)
    });
}

/// Deep nesting must come back as an error, not exhaust the stack (serde_yaml has a recursion
/// limit; the locator walks an event stream).
#[test]
fn config_compile_survives_deep_nesting() {
    let dir = config_fixture();
    let file = dir.path().join("gateway.yaml");
    for depth in [100usize, 1000, 10_000] {
        for (open, close) in [("[", "]"), ("{a: ", "}"), ("- ", "")] {
            let doc = if open == "- " {
                (0..depth.min(2000))
                    .map(|i| format!("{}- x", " ".repeat(i * 2)))
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                format!("listeners: {}1{}", open.repeat(depth), close.repeat(depth))
            };
            check_config(&file, &doc);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// 9. Regressions: minimal inputs found by the properties above and by the fuzz targets
// (fuzz/README.md). Each stays until src is fixed.

/// Found by `rate_limits_never_panic` and `config_compile_never_panics_on_grammar_configs`:
/// governor computes the bucket tolerance as `interval * (burst - 1)` in u64 nanoseconds, which
/// overflows from `rate: 1/h, burst: 5124097` (or `1/min` with `burst: 307445736`): a panic in
/// `portcullis check` and config reload in debug builds, a silently wrapped (wrong) bucket in
/// release builds. Such a quota must be refused with a config error, or work.
#[test]
fn regression_rate_limit_burst_overflow() {
    let yaml = "listeners: [{ name: a, bind: \"127.0.0.1:0\" }]\nupstreams: { echo: { echo: true } }\nrate_limits: { big: { rate: 1/h, burst: 5124097 } }\n";
    let dir = config_fixture();
    let file = dir.path().join("gateway.yaml");
    let compiled =
        std::panic::catch_unwind(|| config::load_str(&file, yaml, None, Mode::Check).map(|_| ()));
    assert!(compiled.is_ok(), "config compile panicked on:\n{yaml}");
    assert!(
        matches!(compiled, Ok(Err(_))),
        "the overflowing burst must be a config error (release builds would wrap it):\n{yaml}"
    );
    for (count, per, burst) in [
        (1u32, 3600u64, 5_124_097u32),
        (1, 60, 307_445_736),
        (1, 60, u32::MAX),
    ] {
        let spec = portcullis::auth::rate_limit::LimitSpec {
            count,
            per: std::time::Duration::from_secs(per),
            burst,
        };
        let r = std::panic::catch_unwind(|| {
            if let Ok(l) = portcullis::auth::rate_limit::RateLimit::new(
                "big",
                spec,
                portcullis::auth::rate_limit::LimitKey::Ip,
            ) {
                let _ = l.check("ip|127.0.0.1");
            }
        });
        assert!(
            r.is_ok(),
            "RateLimit::new/check panicked on {count}/{per}s burst {burst}"
        );
    }
}
