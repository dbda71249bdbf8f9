//! Against a real OpenID provider (npm `oidc-provider` 8.8.1 on loopback): discovery, a
//! client_credentials access token accepted, signing-key rotation picked up with no restart, a
//! retired key's token refused, cached keys serving while the provider is down. And the JWKS
//! refetch on unknown `kid`s is bounded by `jwks_cooldown` whatever the load.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::jwks::JwksServer;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

struct Op {
    child: std::process::Child,
    issuer: String,
}

impl Op {
    fn start() -> Op {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/op");
        assert!(
            std::path::Path::new(&format!("{dir}/node_modules/oidc-provider")).exists(),
            "oidc-provider is not installed: run `npm ci --prefix tests/interop/op` (.ci/run does)"
        );
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("op-{}.log", std::process::id())),
        )
        .unwrap();
        let mut child = Command::new("node")
            .arg(format!("{dir}/op.js"))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("node is needed for the OpenID provider test");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let issuer = line.trim().to_owned();
        assert!(
            issuer.starts_with("http://127.0.0.1:"),
            "op.js printed {issuer:?}"
        );
        Op { child, issuer }
    }

    async fn token(&self) -> String {
        let r: Value = plain_client()
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "gw-test"),
                ("client_secret", "gw-test-secret-0123456789"),
                ("scope", "read:items"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["access_token"].as_str().unwrap().to_owned()
    }

    async fn post(&self, path: &str) -> Value {
        plain_client()
            .post(format!("{}{path}", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let h = token.split('.').next().unwrap();
    let v: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

async fn call(gw: &Gw, token: &str) -> u16 {
    plain_client()
        .get(format!("{}/items", gw.http("plain")))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_openid_provider_with_key_rotation() {
    let mut op = Op::start();
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ audit: off }}
upstreams: {{ rec: {{ url: "{}" }} }}
authenticators:
  op:
    type: jwt
    issuer: "{}"
    discovery: true
    audiences: [https://api.portcullis.test]
    algorithms: [RS256]
    require_typ: at+jwt
    jwks_cooldown: 0s
routes:
  - name: items
    match: {{ path_prefix: /items }}
    upstream: rec
    auth: {{ any_of: [op], scopes: [read:items] }}
"#,
        up.url(),
        op.issuer
    ))
    .await;
    let t1 = op.token().await;
    assert_eq!(kid_of(&t1), "k1");
    assert_eq!(call(&gw, &t1).await, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-auth-subject"), Some("gw-test"));
    assert_eq!(seen.header("x-auth-issuer"), Some(op.issuer.as_str()));
    assert_eq!(seen.header("x-auth-scopes"), Some("read:items"));

    // rotation: a token under the new kid is accepted without a restart
    assert_eq!(op.post("/test/rotate").await["kid"], "k2");
    let t2 = op.token().await;
    assert_eq!(kid_of(&t2), "k2");
    assert_eq!(call(&gw, &t2).await, 200);
    assert_eq!(call(&gw, &t1).await, 200, "k1 is still published");

    // retirement: once the gateway refetches (here an unknown kid triggers it), k1 tokens fail,
    // cached verification included
    op.post("/test/retire").await;
    let claims = json!({"iss": op.issuer}).to_string();
    let forged = format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"RS256","typ":"at+jwt","kid":"k-unknown"}"#),
        b64url(claims.as_bytes()),
        b64url(b"sig")
    );
    assert_eq!(call(&gw, &forged).await, 401);
    assert_eq!(
        call(&gw, &t1).await,
        401,
        "a retired key's token must be refused"
    );
    assert_eq!(call(&gw, &t2).await, 200);

    // the provider goes away: the last good key set keeps serving
    let t2b = op.token().await;
    let _ = op.child.kill();
    let _ = op.child.wait();
    assert_eq!(call(&gw, &t2b).await, 200);
    // an ID-token-like JWT (typ JWT) refused by require_typ: tests/chain.rs, token_sources_typ_and_the_denylist
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_floods_refetch_at_most_once_per_cooldown() {
    // a JWKS server that counts its fetches
    let key: Value =
        serde_json::from_str(&mint(&json!({"mode": "keygen", "alg": "ES256", "kid": "good"}))[0])
            .unwrap();
    let server = JwksServer::start(json!({"keys": [key["public"]]}).to_string()).await;
    let addr = server.addr;
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nlogging: {{ audit: off }}\nupstreams: {{ rec: {{ url: \"{}\" }} }}\nauthenticators:\n  j:\n    type: jwt\n    issuer: https://i.test\n    audiences: [a]\n    algorithms: [ES256]\n    jwks_url: http://{addr}/jwks\n    jwks_cooldown: 1h\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [j] }} }}\n",
        up.url()
    ))
    .await;
    let now = unix_now();
    let good = &mint(
        &json!([{"mode": "sign", "lib": "pyjwt", "alg": "ES256", "key": key["private"], "header": {"kid": "good"},
        "claims": {"iss": "https://i.test", "aud": "a", "sub": "s", "exp": now + 600}}]),
    )[0];
    // the first request may race the initial background fetch; wait for a 200
    let mut ok = false;
    for _ in 0..50 {
        if call(&gw, good).await == 200 {
            ok = true;
            break;
        }
        hits_wait(&server, 1).await;
    }
    assert!(ok, "the JWKS never loaded");
    let base = server.hits();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let forged = format!(
            "{}.{}.{}",
            b64url(format!(r#"{{"alg":"ES256","kid":"k{i}"}}"#).as_bytes()),
            b64url(br#"{"iss":"https://i.test"}"#),
            b64url(&[1u8; 64])
        );
        let url = format!("{}/x", gw.http("plain"));
        tasks.push(tokio::spawn(async move {
            plain_client()
                .get(url)
                .header("authorization", format!("Bearer {forged}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let fetched = server.hits() - base;
    assert!(
        fetched <= 1,
        "200 unknown kids caused {fetched} JWKS fetches within one cooldown"
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_endpoint_serving_garbage_never_breaks_serving() {
    let key: Value =
        serde_json::from_str(&mint(&json!({"mode": "keygen", "alg": "ES256", "kid": "good"}))[0])
            .unwrap();
    let good_jwks = json!({"keys": [key["public"]]}).to_string();
    let server = JwksServer::start("<html>502 Bad Gateway</html>".into()).await;
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nlogging: {{ audit: off }}\nupstreams: {{ rec: {{ url: \"{}\" }} }}\nauthenticators:\n  j:\n    type: jwt\n    issuer: https://i.test\n    audiences: [a]\n    algorithms: [ES256]\n    jwks_url: http://{}/jwks\n    jwks_cooldown: 1s\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [j] }} }}\n",
        up.url(),
        server.addr
    ))
    .await;
    let now = unix_now();
    let token = |kid: &str| {
        mint(&json!([{"mode": "sign", "lib": "pyjwt", "alg": "ES256", "key": key["private"], "header": {"kid": kid},
            "claims": {"iss": "https://i.test", "aud": "a", "sub": "s", "exp": now + 600}}]))
        .remove(0)
    };
    let good = token("good");
    // Garbage: refused as an unverifiable token (401), never a 5xx; readiness says why.
    hits_wait(&server, 1).await;
    assert_eq!(call(&gw, &good).await, 401);
    // Not ready while a key set has never loaded: the routes that rely on it could only refuse.
    let resp = plain_client()
        .get(format!("{}/readyz", gw.admin()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let r: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(r["ready"], false, "{r}");
    assert_eq!(r["jwks"][0]["state"], "never_loaded", "{r}");
    assert_eq!(r["keys"], true, "{r}");
    // sources are named by their URL, in readiness and metrics alike (not the code's type names)
    let url = format!("http://{}/jwks", server.addr);
    assert_eq!(r["jwks"][0]["source"], url.as_str(), "{r}");
    let m = get_text(&format!("{}/metrics", gw.admin())).await;
    check_exposition(&m);
    assert!(
        m.contains(&format!(
            "portcullis_jwks_refreshes_total{{source=\"{url}\",result=\"error\"}}"
        )),
        "{m}"
    );
    assert_eq!(up.count(), 0);

    // The endpoint recovers: the next unknown-kid refetch (after the cooldown) loads it.
    server.serve(&good_jwks);
    let t0 = std::time::Instant::now();
    while call(&gw, &good).await != 200 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(15),
            "the JWKS never loaded after the endpoint recovered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await; // polling pace
    }
    let resp = plain_client()
        .get(format!("{}/readyz", gw.admin()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Garbage again: the last good key set keeps serving.
    let failed_fetches = || async {
        let text = get_text(&format!("{}/metrics", gw.admin())).await;
        text.lines()
            .find(|l| {
                l.starts_with("portcullis_jwks_refreshes_total") && l.contains("result=\"error\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    server.serve("{\"keys\": 42}");
    let before = failed_fetches().await;
    let t0 = std::time::Instant::now();
    // until a refetch of the garbage has failed (and been handled)
    while failed_fetches().await == before {
        // unknown kids ask for a refetch (one per cooldown)
        assert_eq!(call(&gw, &token("rotated-away")).await, 401);
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(15),
            "no refetch happened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await; // polling pace
    }
    assert_eq!(
        call(&gw, &good).await,
        200,
        "a garbage refetch dropped the good key set"
    );
    // a failed refresh after a load is `stale`, and the gateway stays ready: it serves the last
    // good key set (until jwks_max_stale)
    let resp = plain_client()
        .get(format!("{}/readyz", gw.admin()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(r["jwks"][0]["state"], "stale", "{r}");
}

/// Yields until the JWKS server has been hit `n` times (bounded).
async fn hits_wait(server: &JwksServer, n: usize) {
    for _ in 0..1000 {
        if server.hits() >= n {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// A JWKS endpoint that accepts and never answers: tokens signed by the loaded keys keep passing
/// at once; unknown `kid`s are refused within the refetch wait (UNKNOWN_KID_WAIT, 3 s), never
/// held for the fetch's own 10 s timeouts; and a burst of them shares one fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_jwks_endpoint_delays_no_request_for_long() {
    let key: Value =
        serde_json::from_str(&mint(&json!({"mode": "keygen", "alg": "ES256", "kid": "good"}))[0])
            .unwrap();
    let server = JwksServer::start(json!({"keys": [key["public"]]}).to_string()).await;
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nlogging: {{ audit: off }}\nupstreams: {{ rec: {{ url: \"{}\" }} }}\nauthenticators:\n  j:\n    type: jwt\n    issuer: https://i.test\n    audiences: [a]\n    algorithms: [ES256]\n    jwks_url: http://{}/jwks\n    jwks_cooldown: 1s\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [j] }} }}\n",
        up.url(),
        server.addr
    ))
    .await;
    let now = unix_now();
    let tokens = mint(&json!(["good", "unknown-1", "unknown-2"].iter().map(|kid|
        json!({"mode": "sign", "lib": "pyjwt", "alg": "ES256", "key": key["private"], "header": {"kid": kid},
            "claims": {"iss": "https://i.test", "aud": "a", "sub": "s", "exp": now + 600}})).collect::<Vec<_>>()));
    let (good, unknown1, unknown2) = (&tokens[0], &tokens[1], &tokens[2]);
    let t0 = std::time::Instant::now();
    while call(&gw, good).await != 200 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(15),
            "the JWKS never loaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await; // polling pace
    }

    server.hang();
    let hits_before = server.hits();
    // Past the cooldown, a burst of unknown kids: one fetch, which hangs.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // let the 1 s cooldown pass
    let started = std::time::Instant::now();
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let gw_url = gw.http("plain");
            let t = if i % 2 == 0 {
                unknown1.clone()
            } else {
                unknown2.clone()
            };
            tokio::spawn(async move {
                plain_client()
                    .get(format!("{gw_url}/x"))
                    .bearer_auth(t)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    // Meanwhile the loaded key keeps serving at once.
    assert_eq!(call(&gw, good).await, 200);
    for b in burst {
        assert_eq!(b.await.unwrap(), 401);
    }
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(8),
        "unknown kids were held {waited:?} by a hanging JWKS endpoint"
    );
    let fetches = server.hits() - hits_before;
    assert!(
        fetches == 1,
        "20 unknown kids during one hanging fetch started {fetches} fetches (want exactly one)"
    );
    assert_eq!(call(&gw, good).await, 200);
    assert_eq!(up.requests().iter().filter(|r| r.uri == "/x").count(), 0);
}
