//! The request path on a plain listener against a recording upstream: header hygiene, path
//! normalization, streaming bodies, limits, upstream failures, upgrades and h2c.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::raw::{read_to_close, status_of};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config(up: &Upstream, extra_routes: &str, trusted: &str, limits: &str) -> String {
    format!(
        r#"
listeners:
  - name: plain
    bind: 127.0.0.1:0
limits: {{ {limits} }}
trusted_proxies: [{trusted}]
upstreams:
  rec: {{ url: "{url}", timeout: 1s }}
  prefixed: {{ url: "{url}/base/" }}
  down: {{ url: "http://127.0.0.1:1", connect_timeout: 1s }}
  echo: {{ echo: true }}
routes:
{extra_routes}
  - name: echo
    match: {{ path_prefix: /echo }}
    upstream: echo
    auth: none
  - name: users-get
    match: {{ path_prefix: /api/users, methods: [GET] }}
    upstream: rec
    auth: none
  - name: prefixed
    match: {{ path_prefix: /p }}
    upstream: prefixed
    auth: none
  - name: small
    match: {{ path_prefix: /small }}
    upstream: rec
    max_body_bytes: 1000
    auth: none
  - name: down
    match: {{ path_prefix: /down }}
    upstream: down
    auth: none
  - name: everything
    match: {{ path_prefix: / }}
    upstream: rec
    auth: none
"#,
        url = up.url()
    )
}

async fn setup() -> (Upstream, Gw) {
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&up, "", "", "")).await;
    (up, gw)
}

#[tokio::test]
async fn client_identity_headers_never_reach_the_upstream() {
    let (up, gw) = setup().await;
    let c = plain_client();
    let cases: &[(&str, &str)] = &[
        ("X-Auth-Subject", "admin"),
        ("x-auth-subject", "admin"),
        ("X_Auth_Subject", "admin"),
        ("x.auth.subject", "admin"),
        ("X-Auth-Scopes", "admin"),
        ("X-Client-Cert-Subject", "CN=admin"),
        ("X-Client-Cert-Sha256", "spoofed-fingerprint"),
        ("X_Client_Cert_Subject", "CN=admin"),
        ("X-Real-IP", "10.9.9.9"),
        ("X-Forwarded-For", "10.9.9.9"),
        ("X_Forwarded_For", "10.9.9.9"),
        ("X-Original-URL", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("Forwarded", "for=10.9.9.9"),
        ("X-SSL-Client-CN", "admin"),
        ("X-Envoy-Original-Path", "/admin"),
        // docs/attack-cases.md HDR-18 (method overrides) and HDR-19 (more override headers)
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X_Method_Override", "DELETE"),
        ("X-Original-URI", "/admin"),
        ("X-Host", "evil.example"),
        ("X-Forwarded-Server", "evil.example"),
        ("X-Original-Host", "evil.example"),
        ("X-Originating-IP", "10.9.9.9"),
        ("CF-Connecting-IP", "10.9.9.9"),
        ("X-Envoy-Internal", "true-spoofed"),
        ("X-Envoy-Original-Dst-Host", "10.0.0.9:80"),
    ];
    for (name, value) in cases {
        let r = c
            .get(format!("{}/h", gw.http("plain")))
            .header(*name, *value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        let seen = up.last();
        for (k, v) in &seen.headers {
            assert!(
                !v.contains(value),
                "{name}: {value} reached the upstream as {k}: {v}"
            );
        }
        assert_eq!(seen.header("x-auth-method"), Some("none"));
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    }
    // Connection: naming our own header cannot remove it, and the named client header is gone.
    let r = c
        .get(format!("{}/h", gw.http("plain")))
        .header("connection", "x-auth-method, x-custom")
        .header("x-auth-method", "jwt")
        .header("x-custom", "hop")
        .header("keep-alive", "timeout=5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header_all("x-auth-method"), vec!["none"]);
    assert_eq!(seen.header("x-custom"), None);
    assert_eq!(seen.header("keep-alive"), None);
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert!(seen.header("x-request-id").is_some());
}

#[tokio::test]
async fn trusted_proxies_may_forward_client_addresses() {
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&up, "", "127.0.0.0/8", "")).await;
    let r = plain_client()
        .get(format!("{}/h", gw.http("plain")))
        .header("x-forwarded-for", "203.0.113.9, 127.0.0.2")
        .header("x-forwarded-proto", "https")
        .header("x-original-url", "/kept")
        .header("X_Forwarded_For", "6.6.6.6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.2, 127.0.0.1")
    );
    assert_eq!(seen.header("x-real-ip"), Some("203.0.113.9"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-original-url"), Some("/kept"));
    assert!(seen.headers.iter().all(|(_, v)| v != "6.6.6.6"));
}

#[tokio::test]
async fn request_ids_are_kept_only_when_well_formed() {
    let (up, gw) = setup().await;
    let c = plain_client();
    let r = c
        .get(format!("{}/h", gw.http("plain")))
        .header("x-request-id", "abc-123.XYZ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123.XYZ");
    assert_eq!(up.last().header("x-request-id"), Some("abc-123.XYZ"));
    let r = c
        .get(format!("{}/h", gw.http("plain")))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(up.last().header("x-request-id"), Some(id.as_str()));
}

/// Raw HTTP/1.1 over TCP, so the path reaches the gateway exactly as written.
async fn raw(gw: &Gw, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let (out, _) = read_to_close(&mut s, std::time::Duration::from_secs(10)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// h2c upgrades are never tunnelled (h2c smuggling, docs/attack-cases.md SMUG-18): the request
/// is answered as plain HTTP/1.1 and the upstream sees no upgrade. A Host with user information
/// is a 400 (HDR-10), never "no host".
#[tokio::test]
async fn h2c_upgrades_and_userinfo_hosts_are_refused() {
    let (up, gw) = setup().await;
    let resp = raw(
        &gw,
        "GET /public HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(resp.as_bytes()), 200, "{resp}");
    let seen = up.last();
    assert_eq!(seen.uri, "/public");
    assert_eq!(seen.header("upgrade"), None, "{:?}", seen.headers);
    assert_eq!(seen.header("http2-settings"), None);
    assert!(
        seen.header_all("connection")
            .iter()
            .all(|v| !v.to_ascii_lowercase().contains("upgrade")),
        "{:?}",
        seen.headers
    );
    // WebSocket upgrades still pass (websocket_upgrades_pass_through); a mixed list with h2c
    // in it does not.
    let before = up.count();
    let resp = raw(
        &gw,
        "GET /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket, h2c\r\nConnection: Upgrade, close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(resp.as_bytes()), 200, "{resp}");
    assert_eq!(up.count(), before + 1);
    assert_eq!(up.last().header("upgrade"), None);

    let before = up.count();
    // In the request target with a clean Host, and in Host with a clean request target.
    for req in [
        "GET http://x@a/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "GET http://a/x HTTP/1.1\r\nHost: x@a\r\nConnection: close\r\n\r\n",
    ] {
        let resp = raw(&gw, req).await;
        assert_eq!(status_of(resp.as_bytes()), 400, "{req}: {resp}");
    }
    for host in ["x@a", "user:pw@api.example.com", "@a"] {
        let resp = raw(
            &gw,
            &format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status_of(resp.as_bytes()), 400, "{host}: {resp}");
        assert!(
            resp.contains("must not carry user information"),
            "{host}: {resp}"
        );
        assert!(
            !resp.contains("pw@"),
            "the response echoes the credential: {resp}"
        );
    }
    assert_eq!(up.count(), before, "a userinfo Host reached the upstream");
}

/// Segment parameters cannot move a request to another route (docs/attack-cases.md PATH-13):
/// `/api/users;x=y/7` is routed as `/api/users/7` (here: the GET-only users route answers 404
/// to a DELETE instead of the catch-all taking it).
#[tokio::test]
async fn segment_parameters_do_not_change_the_route() {
    let up = Upstream::start().await;
    let gw = Gw::start(&config(
        &up,
        "  - { name: admin, match: { path_prefix: /admin }, upstream: down, auth: none }\n",
        "",
        "",
    ))
    .await;
    for path in [
        "/admin;x=y/keys",
        "/admin;/keys",
        "/;x/admin/keys",
        "/admin/keys;jsessionid=1",
    ] {
        let before = up.count();
        let resp = raw(
            &gw,
            &format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
        )
        .await;
        // the admin route's upstream is down: 502 proves the route; the catch-all (`rec`) would
        // have answered 200
        assert_eq!(status_of(resp.as_bytes()), 502, "{path}: {resp}");
        assert_eq!(up.count(), before, "{path} reached the catch-all upstream");
    }
    // The upstream still gets the parameters of a request it does serve.
    let resp = raw(
        &gw,
        "GET /api/users;v=2/7 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(resp.as_bytes()), 200, "{resp}");
    assert_eq!(up.last().uri, "/api/users;v=2/7");
}

#[tokio::test]
async fn paths_route_by_their_normalized_form() {
    let (up, gw) = setup().await;
    // (raw path, expected status, expected route's upstream path or None when refused)
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("/a/../api/users", 200, Some("/api/users")),
        ("/api/./users/7", 200, Some("/api/users/7")),
        ("//api//users", 200, Some("/api/users")),
        ("/%61pi/users", 200, Some("/api/users")),
        ("/api/users/%7e", 200, Some("/api/users/~")),
        ("/api%2fusers", 400, None),
        ("/api%2Fusers", 400, None),
        ("/..", 400, None),
        ("/a/../../etc/passwd", 400, None),
        ("/%00", 400, None),
        ("/api/users/..;/admin", 400, None),
        ("/api/%2e%2e;x/admin", 400, None),
        ("/api\\users", 400, None),
        ("/%C0%AE%C0%AE/x", 400, None),
        ("/%EF%BC%8E%EF%BC%8E/admin", 400, None),
        ("/%zz", 400, None),
    ];
    for (path, status, upstream_path) in cases {
        let before = up.count();
        let resp = raw(
            &gw,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status_of(resp.as_bytes()), *status, "{path}: {resp}");
        match upstream_path {
            Some(p) => assert_eq!(&up.last().uri, p, "{path}"),
            None => {
                assert_eq!(up.count(), before, "{path} must not reach the upstream");
                assert!(
                    resp.contains("\"error\":\"invalid_request\""),
                    "{path}: {resp}"
                );
            }
        }
    }
    // segment-boundary prefix: /api/usersX is not /api/users (falls to the catch-all route)
    let resp = raw(
        &gw,
        "DELETE /api/users/7 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(resp.as_bytes()), 200);
    let echo = raw(
        &gw,
        "GET /echo/a/./b//c?q=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(echo.contains("\"path\":\"/echo/a/b/c\""), "{echo}");
    assert!(echo.contains("\"query\":\"q=1\""), "{echo}");
    // the upstream URL's path is a prefix
    let _ = plain_client()
        .get(format!("{}/p/x?y=1", gw.http("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(up.last().uri, "/base/p/x?y=1");
}

#[tokio::test]
async fn malformed_requests_get_400() {
    let (up, gw) = setup().await;
    for req in [
        "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        "GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ] {
        let resp = raw(&gw, req).await;
        assert_eq!(status_of(resp.as_bytes()), 400, "{req:?} -> {resp}");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn no_route_is_404_with_the_error_body() {
    let up = Upstream::start().await;
    let yaml = format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nupstreams: {{ rec: {{ url: \"{}\" }} }}\nroutes:\n  - name: only\n    match: {{ path: /only, host: api.example.com }}\n    upstream: rec\n    auth: none\n",
        up.url()
    );
    let gw = Gw::start(&yaml).await;
    let r = plain_client()
        .get(format!("{}/only", gw.http("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert_eq!(body["request_id"], rid.as_str());
    let r = plain_client()
        .get(format!("{}/only", gw.http("plain")))
        .header("host", "API.example.com.")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let up = Upstream::start().await;
    // the upstream timeout runs until the response head, so it covers the upload: give it room
    let yaml =
        config(&up, "", "", "max_body_bytes: 300000000").replace("timeout: 1s", "timeout: 300s");
    let gw = Gw::start(&yaml).await;
    let c = plain_client();
    const N: u64 = 200 * 1024 * 1024;
    // upload: a generated stream, never held whole by the client either
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let chunk = bytes::Bytes::from(vec![3u8; 1 << 20]);
        for _ in 0..200 {
            if tx.send(Ok(chunk.clone())).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util_stream(rx);
    let r = c
        .post(format!("{}/upload", gw.http("plain")))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["bytes"], N);
    assert_eq!(v["sum"], N * 3);
    // download
    let mut r = c
        .get(format!("{}/download?bytes={N}", gw.http("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut got = 0u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        got += chunk.len() as u64;
    }
    assert_eq!(got, N);
}

fn futures_util_stream(
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Sync + 'static
{
    struct S(tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>);
    impl futures_core::Stream for S {
        type Item = Result<bytes::Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
    S(rx)
}

#[tokio::test]
async fn body_limits_answer_413_and_the_upstream_sees_nothing_oversized() {
    let (up, gw) = setup().await;
    let c = plain_client();
    let r = c
        .post(format!("{}/small/x", gw.http("plain")))
        .body(vec![0u8; 1001])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(up.count(), 0);
    let r = c
        .post(format!("{}/small/x", gw.http("plain")))
        .body(vec![0u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // chunked, no Content-Length: cut off while streaming
    let resp = raw(
        &gw,
        &format!(
            "POST /small/upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n7d0\r\n{}\r\n0\r\n\r\n",
            "a".repeat(2000)
        ),
    )
    .await;
    assert_eq!(status_of(resp.as_bytes()), 413, "{resp}");
}

#[tokio::test]
async fn upstream_failures_are_502_and_504() {
    let (_up, gw) = setup().await;
    let c = plain_client();
    let r = c
        .get(format!("{}/down", gw.http("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "bad_gateway");
    let r = c
        .get(format!("{}/hang", gw.http("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let (up, gw) = setup().await;
    let (mut s, head) = open_websocket(gw.addr("plain")).await;
    let mut buf = vec![0u8; 4096];
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let seen = up.last();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(
        seen.header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    s.write_all(b"ping through the tunnel").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 23 {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got, b"ping through the tunnel");
}

#[tokio::test]
async fn h2c_prior_knowledge_on_plain_listeners() {
    let (up, gw) = setup().await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = c
        .get(format!("{}/api/users/1", gw.http("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let seen = up.last();
    assert_eq!(seen.uri, "/api/users/1");
    assert_eq!(seen.version, "HTTP/1.1");
    assert!(seen.header("host").is_some());
}

/// An HTTP/1.0 upstream closes its own connection after each answer; the client's keep-alive
/// connection to the gateway stays open for the next request all the same.
#[tokio::test]
async fn an_http_1_0_upstream_does_not_end_the_clients_keep_alive() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello from HTTP/1.0\n").unwrap();
    let old = PyHttpServer::start(dir.path());
    let gw = Gw::start(&format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nupstreams: {{ old: {{ url: \"http://127.0.0.1:{}\" }} }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: old, auth: none }}\n",
        old.port
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    let req = b"GET /hello.txt HTTP/1.1\r\nHost: files.test\r\n\r\n";
    for i in 0..3 {
        let r = common::raw::exchange(&mut s, req, std::time::Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("request {i} on the same connection: {e}"));
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.version, "HTTP/1.1", "request {i}");
        assert_eq!(r.text(), "hello from HTTP/1.0\n");
        assert!(
            !r.header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close")),
            "request {i}: the gateway closes the client's connection"
        );
    }
}
