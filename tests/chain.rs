//! The chain's authorizers on the wire: scopes (all-of, any-of, superscope, array claims, the one
//! configured claim), rate limits with IETF headers and `pre_auth_rate_limit`, buckets kept across
//! a reload, and the audit log (every decision, never a token). Tokens here are minted with our
//! own library (jsonwebtoken); the interop tests use PyJWT and jwcrypto.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-only";

fn token(claims: Value) -> String {
    let now = unix_now();
    let mut c = json!({"iss": "https://i.test", "aud": "gw", "sub": "alice", "exp": now + 600});
    for (k, v) in claims.as_object().unwrap() {
        c[k] = v.clone();
    }
    encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn config(up: &Upstream, audit: &str, rate: &str) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ audit: "{audit}" }}
upstreams: {{ rec: {{ url: "{url}" }}, dead: {{ url: "http://127.0.0.1:1" }} }}
scopes: {{ superscope: "root" }}
rate_limits:
  per_user: {{ rate: {rate}, burst: 3 }}
  per_ip: {{ rate: 2/min, key: ip }}
  by_tenant: {{ rate: 1/min, key: "header:X-Tenant" }}
authenticators:
  hs:
    type: jwt
    issuer: https://i.test
    audiences: [gw]
    algorithms: [HS256]
    secret: "{SECRET}"
    scopes_claim: scp
routes:
  - name: all-of
    match: {{ path_prefix: /all }}
    upstream: rec
    auth: {{ any_of: [hs], scopes: [read, write] }}
  - name: any-of
    match: {{ path_prefix: /any }}
    upstream: rec
    auth: {{ any_of: [hs], scopes_any: [read, audit] }}
  - name: limited
    match: {{ path_prefix: /limited }}
    upstream: rec
    auth: {{ any_of: [hs], rate_limit: per_user }}
  - name: flood-shield
    match: {{ path_prefix: /shield }}
    upstream: rec
    pre_auth_rate_limit: per_ip
    auth: {{ any_of: [hs] }}
  - name: tenant
    match: {{ path_prefix: /tenant }}
    upstream: rec
    auth: {{ rate_limit: by_tenant }}
  - name: dead
    match: {{ path_prefix: /dead }}
    upstream: dead
    auth: {{ any_of: [hs] }}
"#,
        url = up.url()
    )
}

async fn get(gw: &Gw, path: &str, tok: Option<&str>) -> reqwest::Response {
    let mut r = plain_client().get(format!("{}{path}", gw.http("plain")));
    if let Some(t) = tok {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn scopes_all_any_superscope_and_the_configured_claim() {
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&up, "off", "100/s")).await;
    let cases: &[(&str, Value, u16)] = &[
        ("/all", json!({"scp": "read write"}), 200),
        ("/all", json!({"scp": ["write", "read", "x"]}), 200),
        ("/all", json!({"scp": "read"}), 403),
        // only `scp` counts: a `scope` claim holding everything is ignored
        (
            "/all",
            json!({"scp": "read", "scope": "read write root"}),
            403,
        ),
        ("/all", json!({"scp": ["root"]}), 200),
        ("/any", json!({"scp": "audit"}), 200),
        ("/any", json!({"scp": ["nothing"]}), 403),
        ("/any", json!({}), 403),
        ("/all", json!({"scp": 7}), 401),
    ];
    for (path, claims, want) in cases {
        let before = up.count();
        let r = get(&gw, path, Some(&token(claims.clone()))).await;
        assert_eq!(r.status().as_u16(), *want, "{path} {claims}");
        if *want == 403 {
            let h = r.headers()["www-authenticate"].to_str().unwrap();
            assert!(
                h.starts_with(
                    "Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\""
                ),
                "{h}"
            );
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "insufficient_scope");
        }
        assert_eq!(
            up.count() - before,
            usize::from(*want == 200),
            "{path} {claims}"
        );
    }
    let r = get(&gw, "/all", Some(&token(json!({"scp": "read"})))).await;
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"read write\""
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_headers_and_isolate_identities() {
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&up, "off", "1/min")).await;
    let alice = token(json!({"sub": "alice"}));
    let bob = token(json!({"sub": "bob"}));
    for i in 0..3 {
        let r = get(&gw, "/limited", Some(&alice)).await;
        assert_eq!(r.status(), 200, "request {i} within the burst of 3");
        assert_eq!(r.headers()["ratelimit-policy"], "\"per_user\";q=1;w=60");
        let rl = r.headers()["ratelimit"].to_str().unwrap();
        assert!(
            rl.starts_with(&format!("\"per_user\";r={};t=", 2 - i)),
            "{rl}"
        );
    }
    let before = up.count();
    let r = get(&gw, "/limited", Some(&alice)).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(r.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"per_user\";r=0;t="));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(up.count(), before, "a limited request reached the upstream");
    // bob has his own bucket
    assert_eq!(get(&gw, "/limited", Some(&bob)).await.status(), 200);

    // pre-auth limit: per address, before any signature check, bad tokens included
    for _ in 0..2 {
        assert_eq!(get(&gw, "/shield", Some("bad.token.x")).await.status(), 401);
    }
    assert_eq!(get(&gw, "/shield", Some(&alice)).await.status(), 429);

    // header key: anonymous route, limited per X-Tenant value
    let tenant = |t: &str| {
        let t = t.to_owned();
        let url = format!("{}/tenant", gw.http("plain"));
        async move {
            plain_client()
                .get(url)
                .header("x-tenant", t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(tenant("a").await, 200);
    assert_eq!(tenant("a").await, 429);
    assert_eq!(tenant("b").await, 200);
    // long values are keyed by digest: still one bucket per value, however long
    let long_a = format!("{}a", "t".repeat(300));
    let long_b = format!("{}b", "t".repeat(300));
    assert_eq!(tenant(&long_a).await, 200);
    assert_eq!(tenant(&long_a).await, 429);
    assert_eq!(tenant(&long_b).await, 200);
}

#[tokio::test]
async fn a_reload_keeps_unchanged_buckets() {
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&up, "off", "1/min")).await;
    let alice = token(json!({}));
    for _ in 0..3 {
        assert_eq!(get(&gw, "/limited", Some(&alice)).await.status(), 200);
    }
    assert_eq!(get(&gw, "/limited", Some(&alice)).await.status(), 429);
    let running = gw.running.as_ref().unwrap();
    running.gateway.reload().unwrap();
    assert_eq!(
        get(&gw, "/limited", Some(&alice)).await.status(),
        429,
        "reload reset the bucket"
    );
    // changing the quota starts fresh buckets
    let file = gw.dir.path().join("gateway.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("rate: 1/min", "rate: 2/min")).unwrap();
    running.gateway.reload().unwrap();
    assert_eq!(get(&gw, "/limited", Some(&alice)).await.status(), 200);
}

#[tokio::test]
async fn the_audit_log_records_every_decision_and_no_token() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let gw = Gw::start(&config(&up, &audit.display().to_string(), "100/s")).await;
    let good = token(json!({"scp": "read write"}));
    let bad = token(json!({"aud": "other"}));
    let reader = token(json!({"scp": "read"}));
    assert_eq!(get(&gw, "/all/x", Some(&good)).await.status(), 200);
    assert_eq!(get(&gw, "/all/y", Some(&bad)).await.status(), 401);
    assert_eq!(get(&gw, "/nowhere", None).await.status(), 404);
    // refused by an authorizer: who was refused is known
    assert_eq!(get(&gw, "/all/z", Some(&reader)).await.status(), 403);
    // allowed, then the upstream failed: the decision was to allow
    assert_eq!(get(&gw, "/dead", Some(&good)).await.status(), 502);
    let lines = wait_for_lines(&audit, 5).await;
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[0]["route"], "all-of");
    assert_eq!(lines[0]["auth_method"], "jwt");
    assert_eq!(lines[0]["authenticator"], "hs");
    assert_eq!(lines[0]["subject"], "alice");
    assert_eq!(lines[0]["issuer"], "https://i.test");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["reason"], Value::Null);
    assert_eq!(lines[0]["failure"], Value::Null);
    assert_eq!(lines[0]["path"], "/all/x");
    assert_eq!(lines[0]["client_ip"], "127.0.0.1");
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    assert!(lines[0]["latency_us"].as_u64().is_some());
    assert_eq!(lines[1]["decision"], "deny");
    assert_eq!(lines[1]["reason"], "token_wrong_audience");
    assert_eq!(lines[1]["authenticator"], "hs");
    assert_eq!(lines[1]["subject"], Value::Null);
    assert_eq!(lines[1]["status"], 401);
    assert_eq!(lines[2]["decision"], "deny");
    assert_eq!(lines[2]["reason"], "no_route");
    assert_eq!(lines[3]["decision"], "deny");
    assert_eq!(lines[3]["reason"], "insufficient_scope");
    assert_eq!(lines[3]["status"], 403);
    assert_eq!(lines[3]["subject"], "alice");
    assert_eq!(lines[3]["auth_method"], "jwt");
    assert_eq!(lines[3]["authenticator"], "hs");
    assert_eq!(lines[4]["decision"], "allow");
    assert_eq!(lines[4]["reason"], Value::Null);
    assert_eq!(lines[4]["failure"], "upstream_connect_failed");
    assert_eq!(lines[4]["status"], 502);
    assert_eq!(lines[4]["subject"], "alice");
    // the metrics count the same decisions, labelled by the authenticator that decided
    let m = get_text(&format!("{}/metrics", gw.admin())).await;
    for want in [
        "authenticator=\"hs\",decision=\"allow\",reason=\"ok\"} 2",
        "authenticator=\"hs\",decision=\"deny\",reason=\"token_wrong_audience\"} 1",
        "authenticator=\"hs\",decision=\"deny\",reason=\"insufficient_scope\"} 1",
    ] {
        assert!(m.contains(want), "{want} in\n{m}");
    }
    let text = std::fs::read_to_string(&audit).unwrap();
    for t in [&good, &bad, &reader] {
        assert!(
            !text.contains(t.split('.').nth(2).unwrap()),
            "a token signature is in the audit log"
        );
        assert!(!text.contains(t.as_str()));
    }
    assert!(!text.contains(SECRET));
}

/// The audit file's JSON lines once there are `n` (the writer flushes in batches; bounded wait).
async fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn token_sources_typ_and_the_denylist() {
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ audit: off }}
upstreams: {{ rec: {{ url: "{}" }} }}
authenticators:
  web:
    type: jwt
    issuer: https://i.test
    audiences: [gw]
    algorithms: [HS256]
    secret: "{SECRET}"
    token_from: [header, "cookie:session", "query:access_token"]
    require_typ: at+jwt
routes:
  - {{ name: r, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [web] }} }}
"#,
        up.url()
    ))
    .await;
    let now = unix_now();
    let mk = |typ: &str, jti: &str| {
        let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
        h.typ = Some(typ.to_owned());
        let c = json!({"iss": "https://i.test", "aud": "gw", "sub": "alice", "exp": now + 600, "jti": jti});
        encode(&h, &c, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
    };
    let at = mk("at+jwt", "t-1");
    let base = gw.http("plain");
    let c = plain_client();
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            c.get(format!("{base}/a"))
                .header("cookie", format!("theme=dark; session={at}"))
                .send()
                .await
                .unwrap()
        ),
        200
    );
    // the consumed token is removed before forwarding; the other cookie is kept
    assert_eq!(up.last().header("cookie"), Some("theme=dark"));
    assert_eq!(
        status(
            c.get(format!("{base}/a?x=1&access_token={at}"))
                .send()
                .await
                .unwrap()
        ),
        200
    );
    assert_eq!(up.last().uri, "/a?x=1");
    assert!(up
        .requests()
        .iter()
        .all(|r| r.headers.iter().all(|(_, v)| !v.contains(&at)) && !r.uri.contains(&at)));
    // the same credential in two places is a 400, not a choice
    assert_eq!(
        status(
            c.get(format!("{base}/a?access_token={at}"))
                .header("authorization", format!("Bearer {at}"))
                .send()
                .await
                .unwrap()
        ),
        400
    );
    // an ID token (typ JWT) presented as an access token
    assert_eq!(
        status(
            c.get(format!("{base}/a"))
                .header("authorization", format!("Bearer {}", mk("JWT", "t-2")))
                .send()
                .await
                .unwrap()
        ),
        401
    );
    // application/at+jwt is the same type
    assert_eq!(
        status(
            c.get(format!("{base}/a"))
                .header(
                    "authorization",
                    format!("Bearer {}", mk("application/at+jwt", "t-3"))
                )
                .send()
                .await
                .unwrap()
        ),
        200
    );
    // revoking the jti refuses the token at once, although its verification is cached
    let before = up.count();
    gw.running
        .as_ref()
        .unwrap()
        .gateway
        .revocations()
        .revoke("t-1", (now + 600) as f64);
    let r = c
        .get(format!("{base}/a"))
        .header("authorization", format!("Bearer {at}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_description"], "the token has been revoked");
    assert_eq!(up.count(), before);
}
