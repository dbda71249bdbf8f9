//! A request head, parsed here without httparse (`METHOD TARGET` then `name: value` lines), run
//! through the gateway's own request path short of the network: host checks, normalization and
//! routing (`route::resolve`), the client address behind trusted proxies, credential extraction
//! and the auth chain, query and header rewriting for the upstream, and the response header
//! filter. Never panics; no client copy of an identity or forwarding header survives; nothing
//! authenticates (the fuzzer knows no key or secret).
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Version};
use libfuzzer_sys::fuzz_target;
use portcullis::auth::identity::Identity;
use portcullis::auth::request::AuthRequest;
use portcullis::config::{load_str, Mode, Snapshot};
use portcullis::conn::{Activity, ConnInfo};
use portcullis::headers::{self as rules, ForwardCtx};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

const CONFIG: &str = r#"
listeners: [{ name: plain, bind: "127.0.0.1:0" }]
trusted_proxies: ["10.0.0.0/8"]
logging: { audit: "off" }
upstreams: { echo: { echo: true } }
authenticators:
  keys: { type: api_key }
  hs:
    type: jwt
    issuer: https://i.test
    audiences: [gw]
    algorithms: [HS256]
    secret: "0123456789abcdef0123456789abcdef-fuzz"
    token_from: [header, "cookie:tok", "query:access_token"]
routes:
  - { name: hosted, match: { host: api.example.com, path_prefix: /hosted }, upstream: echo, auth: { any_of: [hs] } }
  - { name: admin, match: { path_prefix: /admin }, upstream: echo, auth: { any_of: [keys, hs] } }
  - { name: open, match: { path_prefix: /open }, upstream: echo, auth: none }
  - { name: rest, match: { path_prefix: / }, upstream: echo, auth: { any_of: [keys] } }
"#;

static SNAP: LazyLock<Snapshot> = LazyLock::new(|| {
    portcullis::install_crypto_provider();
    load_str(std::path::Path::new("fuzz.yaml"), CONFIG, None, Mode::Check)
        .unwrap_or_else(|e| panic!("{e}"))
});

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
});

fn canon(n: &str) -> String {
    n.replace(['_', '.'], "-")
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut lines = rest.split(|&b| b == b'\n');
    let start = lines.next().unwrap_or_default();
    let mut parts = start.splitn(2, |&b| b == b' ');
    let method = Method::from_bytes(parts.next().unwrap_or_default()).unwrap_or(Method::GET);
    let target = parts.next().unwrap_or(b"/");
    let Ok(uri) = http::Uri::try_from(target.strip_suffix(b"\r").unwrap_or(target)) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(n, v);
        }
    }
    let version = [Version::HTTP_10, Version::HTTP_11, Version::HTTP_2][(flags % 3) as usize];
    let peer: IpAddr = if flags & 4 != 0 {
        IpAddr::from([10, 0, 0, 1])
    } else {
        IpAddr::from([192, 0, 2, 7])
    };
    let sni = (flags & 8 != 0).then(|| "api.example.com".to_owned());
    let conn = ConnInfo {
        listener: Arc::from("plain"),
        peer: SocketAddr::new(peer, 40000),
        tls: sni.is_some(),
        sni,
        client_cert: None,
        activity: Arc::new(Activity::default()),
        peer_value: portcullis::conn::peer_value(peer),
        slot: None,
    };
    let mut b = Request::builder()
        .method(method)
        .uri(uri.clone())
        .version(version);
    if let Some(h) = b.headers_mut() {
        *h = headers.clone();
    }
    let Ok(req) = b.body(()) else {
        return;
    };

    let client_ip = SNAP.trusted_proxies.client_ip(&conn, req.headers());
    if peer != IpAddr::from([10, 0, 0, 1]) {
        assert_eq!(client_ip, peer);
    }
    let Ok(routed) = portcullis::route::resolve(&SNAP.router, &conn, &req) else {
        return;
    };
    assert!(routed.path.starts_with('/'));
    let auth_req = AuthRequest {
        headers: req.headers(),
        query: req.uri().query(),
        conn: &conn,
        client_ip,
    };
    let verdict = RT.block_on(portcullis::auth::chain::evaluate(
        &routed.route.auth,
        &auth_req,
        None,
    ));
    if &*routed.route.name != "open" {
        assert!(
            verdict.result.is_err(),
            "{} authenticated without a credential",
            routed.route.name
        );
    }

    let (cookies, params) = routed.route.auth.credential_sources();
    if let Some(q) = rules::strip_params(uri.query().map(str::to_owned), params) {
        for pair in q.split('&') {
            let k = pair.split('=').next().unwrap_or("");
            assert!(
                !params.iter().any(|p| rules::query_name_is(k, p)),
                "{k:?} survived strip_params"
            );
        }
    }
    let mut up = headers.clone();
    let rid = HeaderValue::from_static("rid-fuzz");
    let id = Identity::anonymous();
    let ctx = ForwardCtx {
        peer_ip: peer,
        peer_value: &conn.peer_value,
        peer_trusted: SNAP.trusted_proxies.contains(peer),
        client_ip,
        proto: "http",
        host: routed.host.as_deref(),
        request_id: &rid,
        identity: &id,
        client_cert: None,
        strip_credentials: routed.route.strip_credentials,
        credential_cookies: cookies,
        upgrade: None,
        forward_client_cert: false,
    };
    rules::upstream_request_headers(&mut up, &ctx);
    for (name, value) in &up {
        let c = canon(name.as_str());
        if c.starts_with("x-auth-") || c.starts_with("x-client-cert-") {
            assert_eq!(
                name.as_str(),
                "x-auth-method",
                "client copy of {name} forwarded"
            );
            assert_eq!(value.as_bytes(), b"none");
        }
        assert!(
            !matches!(
                c.as_str(),
                "connection" | "keep-alive" | "te" | "transfer-encoding" | "upgrade" | "trailer"
            ),
            "hop-by-hop {name} forwarded"
        );
    }
    if !ctx.peer_trusted {
        assert_eq!(up.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(up.get("x-forwarded-for"), Some(&conn.peer_value));
    }
    let mut down = headers;
    rules::downstream_response_headers(&mut down, flags & 16 != 0);
});
