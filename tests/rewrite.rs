//! Route rewrites against a recording upstream: `strip_prefix` and `rewrite_prefix` change the
//! path the upstream receives (after normalization, at segment boundaries, never producing `//`
//! or a dot segment), and `host` picks the `Host` it gets. What the upstream saw is checked as
//! it arrived.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;

fn config(up: &Upstream) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
upstreams:
  rec: {{ url: "{url}" }}
  based: {{ url: "{url}/base" }}
routes:
  - {{ name: files, match: {{ path_prefix: /files }}, upstream: rec, strip_prefix: /files, auth: none }}
  - {{ name: v1, match: {{ path_prefix: /api/v1 }}, upstream: rec, strip_prefix: /api/v1, rewrite_prefix: /v2/api, host: upstream, auth: none }}
  - {{ name: add, match: {{ path_prefix: /add }}, upstream: based, rewrite_prefix: /extra, host: internal.example:8080, auth: none }}
  - {{ name: rest, match: {{ path_prefix: / }}, upstream: rec, auth: none }}
"#,
        url = up.url()
    )
}

#[tokio::test]
async fn prefixes_are_stripped_and_rewritten_on_segment_boundaries() {
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&up)).await;
    let base = gw.http("plain");
    let authority = up.url().trim_start_matches("http://").to_owned();
    let http = plain_client();
    // (request path, the target the upstream saw, its Host)
    let cases: &[(&str, &str, &str)] = &[
        ("/files/a/b.txt?x=1", "/a/b.txt?x=1", "files.test"),
        ("/files", "/", "files.test"),
        ("/files/", "/", "files.test"),
        // normalized first: the dot segments are resolved before the prefix is stripped
        ("/files/a/../b", "/b", "files.test"),
        ("/files/%61", "/a", "files.test"),
        // not below /files: another route, unchanged
        ("/filesX/a", "/filesX/a", "files.test"),
        ("/api/v1/users/7", "/v2/api/users/7", authority.as_str()),
        ("/api/v1", "/v2/api", authority.as_str()),
        ("/api/v1/", "/v2/api/", authority.as_str()),
        ("/add/x", "/base/extra/add/x", "internal.example:8080"),
    ];
    for (path, want, host) in cases {
        let r = http
            .get(format!("{base}{path}"))
            .header("host", "files.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let seen = up.last();
        assert_eq!(seen.uri, *want, "{path}");
        assert_eq!(seen.header("host"), Some(*host), "{path}");
        // the client's host is still known to the upstream
        assert_eq!(
            seen.header("x-forwarded-host"),
            Some("files.test"),
            "{path}"
        );
    }
    // a path that climbs out is refused before any rewrite, and reaches nothing (raw bytes:
    // an HTTP client library would resolve the dot segments itself)
    let before = up.count();
    let mut s = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    let r = common::raw::exchange(
        &mut s,
        b"GET /files/%2e%2e/%2e%2e/etc HTTP/1.1\r\nHost: files.test\r\n\r\n",
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(up.count(), before);
}

#[test]
fn bad_rewrites_are_config_errors_at_their_field() {
    assert_check_fails_with(
        r#"listeners: [{ name: plain, bind: 127.0.0.1:0 }]
upstreams:
  rec: { url: "http://127.0.0.1:9" }
  tls: { url: "https://127.0.0.1:9" }
  e: { echo: true }
routes:
  - { name: a, match: { path_prefix: /a }, upstream: rec, strip_prefix: a, auth: none }
  - { name: b, match: { path_prefix: /b }, upstream: rec, strip_prefix: /b/, rewrite_prefix: /x/../y, auth: none }
  - { name: c, match: { path_prefix: /c }, upstream: rec, rewrite_prefix: "//c", host: "bad host", auth: none }
  - { name: d, match: { path_prefix: /d }, upstream: tls, host: upstream, auth: none }
  - { name: e, match: { path_prefix: /e }, upstream: e, host: example.com, auth: none }
"#,
        &[
            "routes[0].strip_prefix: `a`: a normalized path",
            "routes[1].strip_prefix: `/b/`",
            "routes[1].rewrite_prefix: `/x/../y`",
            "routes[2].rewrite_prefix: `//c`",
            "routes[2].host: `bad host`: preserve, upstream, or a host name",
            "routes[3].host: only for plain-http upstreams",
            "routes[4].host: only for plain-http upstreams",
        ],
    );
}
