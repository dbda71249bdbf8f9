//! CORS per route: preflights answered by the gateway before the auth chain (never reaching the
//! upstream), CORS headers on the answers to listed origins (the upstream's and the gateway's
//! refusals alike), none for other origins; and a real headless Chromium page on another origin
//! calling an API-key route, allowed from a listed origin and blocked from another.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;
use serde_json::json;

fn config(up: &Upstream, origin: &str) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
upstreams: {{ rec: {{ url: "{url}" }} }}
authenticators: {{ keys: {{ type: api_key }} }}
routes:
  - name: api
    match: {{ path_prefix: /api, methods: [GET, PUT, PATCH] }}
    upstream: rec
    cors: {{ origins: ["{origin}", "https://app.example.com"], methods: [get, PUT], headers: [Authorization, X-Api-Key], expose_headers: [X-Request-Id], credentials: true, max_age: 600 }}
    auth: {{ any_of: [keys] }}
  - {{ name: plain, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [keys] }} }}
"#,
        url = up.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_and_answers_follow_the_routes_cors() {
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&up, "http://127.0.0.1:1")).await;
    let http = plain_client();
    let base = gw.http("plain");
    let (_, v) = admin_call(
        &http,
        &gw.admin(),
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"name": "web", "subject": "web-app"})),
    )
    .await;
    let key = v["key"].as_str().unwrap().to_owned();
    let preflight = |origin: &str, method: &str, headers: &str| {
        http.request(reqwest::Method::OPTIONS, format!("{base}/api/items"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
    };
    // allowed: answered here with the CORS headers, without a credential, upstream untouched
    let r = preflight("https://app.example.com", "PUT", "x-api-key")
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-methods"], "GET, PUT");
    assert_eq!(
        h["access-control-allow-headers"],
        "authorization, x-api-key"
    );
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["vary"].to_str().unwrap().contains("Origin"));
    assert_eq!(up.count(), 0, "a preflight reached the upstream");
    // refused: another origin, a method or a header not listed; no CORS header at all
    for (origin, method, headers) in [
        ("https://evil.example", "GET", ""),
        ("https://app.example.com", "PATCH", ""),
        ("https://app.example.com", "GET", "x-secret"),
    ] {
        let r = preflight(origin, method, headers).await.unwrap();
        assert_eq!(r.status(), 403, "{origin} {method} {headers}");
        assert!(r.headers().get("access-control-allow-origin").is_none());
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "cors_refused");
    }
    assert_eq!(up.count(), 0);
    // a method only another route (without cors) takes: that route's OPTIONS, no CORS header
    let r = preflight("https://app.example.com", "DELETE", "")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // a route without cors: an OPTIONS like any other (the chain wants a key)
    let r = http
        .request(reqwest::Method::OPTIONS, format!("{base}/other"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // actual requests: a listed origin gets the headers on the upstream's answer and on a
    // refusal; the upstream's own CORS headers do not pass
    let r = http
        .get(format!("{base}/api/items"))
        .header("origin", "https://app.example.com")
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    assert_eq!(r.headers()["access-control-expose-headers"], "x-request-id");
    assert!(r
        .headers()
        .get_all("vary")
        .iter()
        .any(|v| v.to_str().unwrap().contains("Origin")));
    assert_eq!(up.last().header("x-auth-subject"), Some("web-app"));
    let r = http
        .get(format!("{base}/api/items"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com",
        "a page must be able to read the refusal"
    );
    let r = http
        .get(format!("{base}/api/items"))
        .header("origin", "https://evil.example")
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

/// The page (served from `origin_host:port` by a static server) calls the gateway with an API
/// key (a non-safelisted header, so the browser sends a preflight first) and writes what it got
/// into the DOM, which headless Chromium prints.
async fn browser_fetch(page_url: &str) -> String {
    let url = page_url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--virtual-time-budget=15000",
                "--dump-dom",
                &url,
            ])
            .output()
            .expect("chromium (apt install chromium; .ci/run installs it)")
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    dom.split("<pre id=\"out\">")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .unwrap_or_else(|| {
            panic!(
                "no result in the page:\n{dom}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_page_on_a_listed_origin_calls_the_api_and_another_cannot() {
    let pages = tempfile::tempdir().unwrap();
    let site = PyHttpServer::start(pages.path());
    let up = Upstream::start().await;
    // the page's origin is http://127.0.0.1:PORT; http://localhost:PORT is another origin
    let gw = Gw::start(&config(&up, &format!("http://127.0.0.1:{}", site.port))).await;
    let (_, v) = admin_call(
        &plain_client(),
        &gw.admin(),
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"name": "web", "subject": "web-app"})),
    )
    .await;
    let key = v["key"].as_str().unwrap();
    std::fs::write(
        pages.path().join("page.html"),
        format!(
            r#"<!doctype html><html><body><pre id="out">pending</pre><script>
fetch("{api}/api/items", {{ method: "PUT", headers: {{ "X-Api-Key": "{key}" }} }})
  .then(r => r.text().then(t => {{ document.getElementById("out").textContent = "status:" + r.status + " " + (t.includes("web-app") ? "subject-seen" : t); }}))
  .catch(e => {{ document.getElementById("out").textContent = "blocked:" + e.name; }});
</script></body></html>"#,
            api = gw.http("plain")
        ),
    )
    .unwrap();
    // a listed origin: preflight, then the PUT with the key reaches the upstream
    let got = browser_fetch(&format!("http://127.0.0.1:{}/page.html", site.port)).await;
    assert_eq!(got, "status:200 subject-seen", "from the listed origin");
    let seen = up.last();
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.header("x-auth-subject"), Some("web-app"));
    assert_eq!(
        seen.header("origin"),
        Some(format!("http://127.0.0.1:{}", site.port).as_str())
    );
    // another origin: the preflight is refused, the browser never sends the PUT
    let before = up.count();
    let got = browser_fetch(&format!("http://localhost:{}/page.html", site.port)).await;
    assert_eq!(got, "blocked:TypeError", "from an origin not listed");
    assert_eq!(up.count(), before, "the browser sent the request anyway");
}

#[test]
fn bad_cors_blocks_are_config_errors_at_their_field() {
    assert_check_fails_with(
        r#"listeners: [{ name: plain, bind: 127.0.0.1:0 }]
upstreams: { e: { echo: true } }
routes:
  - { name: a, match: { path_prefix: /a }, upstream: e, auth: none, cors: { origins: ["*"], credentials: true } }
  - { name: b, match: { path_prefix: /b }, upstream: e, auth: none, cors: { origins: ["https://x.example/", "x.example"], methods: ["G ET"], max_age: 999999 } }
  - { name: c, match: { path_prefix: /c }, upstream: e, auth: none, cors: { origins: [] } }
  - { name: d, match: { path_prefix: /d }, upstream: e, auth: none, cors: { origins: ["*"], methods: ["*"], headers: ["*"] } }
"#,
        &[
            "routes[0].cors.credentials: not with origins `*`",
            "routes[1].cors.origins[0]: `https://x.example/`: an origin",
            "routes[1].cors.origins[1]: `x.example`",
            "routes[1].cors.methods[0]: `G ET` is not a method",
            "routes[1].cors.max_age: at most 86400",
            "routes[2].cors.origins: list at least one origin",
            "routes[3].cors.methods[0]: `*` is not supported here",
            "routes[3].cors.headers[0]: `*` is not a header name (`*` is not supported",
        ],
    );
}
