//! The trust boundary: what reaches the upstream (SPEC section 5).

use crate::support::*;
use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

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
    let mut id = portcullis::auth::identity::Identity::anonymous();
    if let Some(s) = &r.subject {
        id.method = portcullis::auth::identity::AuthMethod::Jwt;
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
        forward_client_cert: false,
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
