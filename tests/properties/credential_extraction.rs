//! Credential extraction: reference models.

use crate::support::*;
use http::{HeaderMap, HeaderValue, StatusCode};
use portcullis::auth::jwt;
use portcullis::keys::KeyRing;
use proptest::prelude::*;
use std::sync::Arc;

// RFC 6750 2.1: `Bearer` (any case), one or more spaces, the token. The API key scheme is the same
// with `Api-Key`. A header value that is not visible ASCII carries no credential. A token offered
// in two places (two `Authorization` headers, two cookies, two parameters, or two sources) is a
// 400; two `X-Api-Key` headers too; `Authorization: Api-Key` and `X-Api-Key` with different keys
// is a 401, with the same key a 400.

fn ref_scheme<'a>(v: &'a [u8], scheme: &str) -> Option<&'a str> {
    let s = visible_ascii(v)?;
    let n = scheme.len();
    if s.len() <= n || !s[..n].eq_ignore_ascii_case(scheme) || s.as_bytes()[n] != b' ' {
        return None;
    }
    // White space after the credential is not part of a field value (RFC 9110 section 5.5).
    Some(s[n..].trim_start_matches(' ').trim_end_matches([' ', '\t']))
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
    // Offered twice, the same key or two different ones: a malformed request (SPEC section 2).
    if from_auth.is_some() && from_x.is_some() {
        refusals.push(400);
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
            name: Arc::from("keys"),
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
