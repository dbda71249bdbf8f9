//! What several modules share: the proptest config, a blocking runtime, request parts,
//! value strategies, the path token strategy and percent-hex of the normalization model, the
//! header helpers and the JWT authenticators of the credential models, the shipped config.

use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis::auth::authenticator::{Authenticator, AuthnDef};
use portcullis::auth::chain::{AuthPolicy, Chain};
use portcullis::auth::jwt::cache::VerifyCache;
use portcullis::auth::jwt::keyset::KeySet;
use portcullis::auth::jwt::{JwtAuthn, Keys, RouteJwt};
use portcullis::auth::request::CredentialSource;
use portcullis::auth::revocation::Revocations;
use portcullis::auth::scope::ScopeRule;
use portcullis::config::{self, Mode, Snapshot};
use portcullis::conn::{Activity, ConnInfo};
use proptest::prelude::*;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

/// The config of every property: `cases` cases, failing inputs not persisted.
pub fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Runs a future to completion on a per-thread current-thread runtime (the properties are
/// synchronous; the verify path is async but never waits on I/O with static keys).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
    }
    RT.with(|rt| rt.block_on(f))
}

pub fn conn_info(peer: IpAddr, sni: Option<&str>) -> ConnInfo {
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
pub fn header_map(pairs: &[(String, Vec<u8>)]) -> HeaderMap {
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
pub fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[ -~]{0,24}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..24),
        1 => prop::collection::vec(
            prop::sample::select(vec![b' ', b'\t', b',', b';', b'=', b'.', 0x80, 0xff, b'a']),
            0..12
        ),
    ]
}

pub fn load_snapshot(yaml: &str) -> Snapshot {
    portcullis::install_crypto_provider();
    match config::load_str(Path::new("props.yaml"), yaml, None, Mode::Check) {
        Ok(s) => s,
        Err(e) => panic!("fixture config does not compile: {e}"),
    }
}

// ------------------------------------------------------------------------------------------------
// The path model (path_normalization, routing)

pub fn ref_hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

pub const PATH_TOKENS: &[&str] = &[
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

pub fn path_strategy() -> impl Strategy<Value = String> {
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

// ------------------------------------------------------------------------------------------------
// Credentials in headers (credential_extraction, trust_boundary, routing)

pub fn visible_ascii(v: &[u8]) -> Option<&str> {
    v.iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(v).ok())
        .flatten()
}

pub const COOKIE_VALUES: &[&str] = &[
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

pub fn values_of<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
    h.get_all(name).iter().map(HeaderValue::as_bytes).collect()
}

// ------------------------------------------------------------------------------------------------
// The JWT authenticators (credential_extraction, trust_boundary, jwt_validity)

pub const JWT_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-properties";
pub const ISSUER: &str = "https://i.test";
pub const RSA_ISSUER: &str = "https://rsa.test";
pub const REVOKED_JTI: &str = "revoked-jti";

pub fn revocations() -> Arc<Revocations> {
    let r = Arc::new(Revocations::default());
    r.revoke(REVOKED_JTI, portcullis::clock::now() + 3600.0);
    r
}

pub fn jwt_authn(
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
        oauth: None,
    })
}

pub fn hs_authn(cache: bool) -> Arc<JwtAuthn> {
    jwt_authn(
        ISSUER,
        Keys::Static(Arc::new(KeySet::from_secret(JWT_SECRET))),
        vec![jsonwebtoken::Algorithm::HS256],
        cache,
    )
}

pub fn chain_of(jwts: Vec<Arc<JwtAuthn>>) -> AuthPolicy {
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

// ------------------------------------------------------------------------------------------------
// The shipped config (config_compile, regressions)

pub const GATEWAY_YAML: &str = include_str!("../../gateway.yaml");

/// A folder holding a copy of the shipped config and the development PKI it names, so that
/// compiling reaches the TLS code (in `Check` mode nothing is written).
pub fn config_fixture() -> tempfile::TempDir {
    portcullis::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    portcullis::devpki::generate(&dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), GATEWAY_YAML).unwrap();
    dir
}

/// SPEC section 2 durations: `0`, or digits then one of `ms`, `s`, `m`, `h`, `d`.
pub fn ref_duration(s: &str) -> Option<std::time::Duration> {
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
