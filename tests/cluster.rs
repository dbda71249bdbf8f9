//! Cluster mode against the machine's real PostgreSQL (127.0.0.1:5432, trust auth): several
//! gateways on one database agree on keys, rotations and revocations through the change feed;
//! with the database cut off they keep serving from memory, refuse admin writes with 503, and
//! catch up when it returns. Each test gets a database of its own.
//!
//! Set `PORTCULLIS_TEST_PG` to use another server (default
//! `postgres://postgres@127.0.0.1:5432/test`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::stores::{fresh_limit, redis_reachable, Db, Relay};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn cluster_yaml(up: &Upstream, pg_url: &str) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ format: json, audit: off }}
store: {{ postgres: "{pg_url}", resync: 2s }}
upstreams: {{ rec: {{ url: "{url}" }} }}
authenticators:
  keys: {{ type: api_key }}
routes:
  - {{ name: api, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [keys] }} }}
"#,
        url = up.url()
    )
}

async fn admin(
    c: &reqwest::Client,
    gw: &Gw,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    admin_call(c, &gw.admin(), method, path, body).await
}

/// Creates a key through `gw`'s admin API: (id, key).
async fn create_key(c: &reqwest::Client, gw: &Gw, body: Value) -> (String, String) {
    let (st, v) = admin(c, gw, reqwest::Method::POST, "/admin/keys", Some(body)).await;
    assert_eq!(st, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

async fn revoke(c: &reqwest::Client, gw: &Gw, id: &str) {
    let (st, v) = admin(
        c,
        gw,
        reqwest::Method::DELETE,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 204, "{v}");
}

async fn readyz(_c: &reqwest::Client, gw: &Gw) -> Value {
    get_json(&format!("{}/readyz", gw.admin())).await
}

/// Polls until `gw` answers `want` for `key`; returns how long that took, or panics after
/// `within`.
async fn until_status(
    c: &reqwest::Client,
    gw: &Gw,
    key: &str,
    want: u16,
    within: Duration,
) -> Duration {
    poll_until(|| api_key_status(c, gw, key), want, within, "the API key").await
}

/// Calls `status` until it returns `want`; returns how long that took, or panics after `within`.
async fn poll_until<F, Fut>(mut status: F, want: u16, within: Duration, what: &str) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let t0 = Instant::now();
    loop {
        let s = status().await;
        if s == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "gateway still answers {s} for {what} (want {want}) after {within:?}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_created_rotated_revoked_on_one_replica_hold_on_all() {
    let db = Db::new("fanout");
    let up = Upstream::start().await;
    let yaml = cluster_yaml(&up, &db.url);
    let a = Gw::start(&yaml).await;
    let b = Gw::start(&yaml).await;
    let c = Gw::start(&yaml).await;
    let http = plain_client();

    // Created on A: usable on B and C within a second.
    let (id, key) = create_key(&http, &a, json!({"name": "k1", "subject": "svc-1"})).await;
    for gw in [&b, &c] {
        until_status(&http, gw, &key, 200, Duration::from_secs(1)).await;
    }
    assert_eq!(up.last().header("x-auth-subject"), Some("svc-1"));

    // Rotated on B with a grace period: the new secret works on A and C, the old one still does.
    let (st, rotated) = admin(
        &http,
        &b,
        reqwest::Method::POST,
        &format!("/admin/keys/{id}/rotate"),
        Some(json!({"grace": "1h"})),
    )
    .await;
    assert_eq!(st, 200, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    for gw in [&a, &c] {
        until_status(&http, gw, &new_key, 200, Duration::from_secs(1)).await;
        assert_eq!(api_key_status(&http, gw, &key).await, 200);
    }

    // Revoked on C: refused everywhere (both secrets) within a second; the upstream sees nothing.
    revoke(&http, &c, &id).await;
    for gw in [&a, &b] {
        until_status(&http, gw, &new_key, 401, Duration::from_secs(1)).await;
        assert_eq!(api_key_status(&http, gw, &key).await, 401);
    }
    let before = up.count();
    for gw in [&a, &b, &c] {
        assert_eq!(api_key_status(&http, gw, &new_key).await, 401);
    }
    assert_eq!(up.count(), before, "a revoked key reached the upstream");

    // A replica started now loads the current state.
    let d = Gw::start(&yaml).await;
    assert_eq!(api_key_status(&http, &d, &new_key).await, 401);
    let (st, list) = admin(
        &http,
        &d,
        reqwest::Method::GET,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(list["status"], "revoked", "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_the_other_replica_within_a_second_every_time() {
    let db = Db::new("revoke");
    let up = Upstream::start().await;
    let yaml = cluster_yaml(&up, &db.url);
    let a = Gw::start(&yaml).await;
    let b = Gw::start(&yaml).await;
    let http = plain_client();
    let mut lat = Vec::new();
    for i in 0..30 {
        let (k_id, key) = create_key(&http, &a, json!({"name": format!("r{i}")})).await;
        until_status(&http, &b, &key, 200, Duration::from_secs(1)).await;
        let t0 = Instant::now();
        revoke(&http, &a, &k_id).await;
        until_status(&http, &b, &key, 401, Duration::from_secs(1)).await;
        lat.push(t0.elapsed());
    }
    lat.sort();
    println!(
        "revocation A->B, 30 rounds: p50 {:?} max {:?}",
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_revocations_are_shared() {
    let db = Db::new("jti");
    let up = Upstream::start().await;
    let secret = "0123456789abcdef0123456789abcdef-cluster";
    let yaml = format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ format: json, audit: off }}
store: {{ postgres: "{pg}" }}
upstreams: {{ rec: {{ url: "{url}" }} }}
authenticators:
  hs: {{ type: jwt, issuer: https://i.test, audiences: [gw], algorithms: [HS256], secret: "{secret}" }}
routes:
  - {{ name: api, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [hs] }} }}
"#,
        pg = db.url,
        url = up.url()
    );
    let a = Gw::start(&yaml).await;
    let b = Gw::start(&yaml).await;
    let now = unix_now();
    let tok = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"iss": "https://i.test", "aud": "gw", "sub": "u1", "jti": "jti-cluster-1", "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let http = plain_client();
    let get = |gw: &Gw| {
        http.get(format!("{}/x", gw.http("plain")))
            .bearer_auth(&tok)
            .send()
    };
    assert_eq!(get(&b).await.unwrap().status(), 200);
    let (st, v) = admin(
        &http,
        &a,
        reqwest::Method::POST,
        "/admin/revocations",
        Some(json!({"jti": "jti-cluster-1", "until": portcullis::clock::rfc3339(now + 600, 0)})),
    )
    .await;
    assert!(st == 200 || st == 201, "{st} {v}");
    let on_b = || async { get(&b).await.unwrap().status().as_u16() };
    poll_until(on_b, 401, Duration::from_secs(1), "a revoked jti on B").await;
    // lifted on A, accepted again on B (the lift is a change every replica applies)
    let lift = || {
        let path = "/admin/revocations/jti-cluster-1";
        admin(&http, &a, reqwest::Method::DELETE, path, None)
    };
    let (st, v) = lift().await;
    assert_eq!(st, 204, "{v}");
    let lifted = "a lifted revocation on B";
    poll_until(on_b, 200, Duration::from_secs(1), lifted).await;
    // nothing left to lift
    assert_eq!(lift().await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_serves_from_memory_refuses_writes_then_catches_up() {
    let db = Db::new("outage");
    let up = Upstream::start().await;
    let relay = Relay::start("127.0.0.1:5432".parse().unwrap()).await;
    let relayed = db.url.replace("127.0.0.1:5432", &relay.addr.to_string());
    assert_ne!(
        relayed, db.url,
        "test database URL is not on 127.0.0.1:5432"
    );
    // A reaches the database directly; B only through the relay.
    let a = Gw::start(&cluster_yaml(&up, &db.url)).await;
    let b = Gw::start(&cluster_yaml(&up, &relayed)).await;
    let http = plain_client();
    let (k1_id, key1) = create_key(&http, &a, json!({"name": "before"})).await;
    until_status(&http, &b, &key1, 200, Duration::from_secs(1)).await;

    relay.down();
    // B keeps serving what it has.
    assert_eq!(api_key_status(&http, &b, &key1).await, 200);
    // B's admin writes fail with 503 and a clear error; nothing half-written.
    let (st, err) = admin(
        &http,
        &b,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"name": "during"})),
    )
    .await;
    assert_eq!(st, 503, "{err}");
    assert_eq!(err["error"], "store_unavailable", "{err}");
    // /readyz stays ready (keys are in memory) and says the store is down.
    let r = readyz(&http, &b).await;
    assert_eq!(r["ready"], true, "{r}");
    assert_eq!(r["store_up"], false, "{r}");

    // Changes made meanwhile on A (revoke key1, create key2) reach B once the database is back.
    revoke(&http, &a, &k1_id).await;
    let (_, key2) = create_key(&http, &a, json!({"name": "after"})).await;
    assert_eq!(api_key_status(&http, &b, &key2).await, 401);

    relay.restore();
    until_status(&http, &b, &key1, 401, Duration::from_secs(15)).await;
    until_status(&http, &b, &key2, 200, Duration::from_secs(1)).await;
    let t0 = Instant::now();
    loop {
        let r = readyz(&http, &b).await;
        if r["store_up"] == true {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "store never reported up again: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And B's admin writes work again.
    let (st, _) = admin(
        &http,
        &b,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"name": "b-again"})),
    )
    .await;
    assert_eq!(st, 201);
}

#[test]
fn check_refuses_sqlite_and_postgres_together_and_bad_urls() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("gateway.yaml");
    for (store, want) in [
        (
            r#"{ sqlite: a.db, postgres: "postgres://u@h/db" }"#,
            "store.postgres: give either",
        ),
        (
            r#"{ postgres: "mysql://u:pw@h/db" }"#,
            "is not a PostgreSQL URL",
        ),
        (
            r#"{ sqlite: a.db, resync: 5s }"#,
            "store.resync: only used with store.postgres",
        ),
    ] {
        std::fs::write(
            &f,
            format!("listeners: [{{ name: p, bind: 127.0.0.1:0 }}]\nstore: {store}\nupstreams: {{ e: {{ echo: true }} }}\nroutes: [{{ name: r, match: {{ path_prefix: / }}, upstream: e, auth: none }}]\n"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["check", "-c"])
            .arg(&f)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "want `{want}` in:\n{err}");
        assert!(
            !err.contains(":pw@"),
            "a password leaked into an error: {err}"
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Shared rate limits on the machine's real Redis (127.0.0.1:6379; `PORTCULLIS_TEST_REDIS`).

fn limited_yaml(up: &Upstream, redis: &str, limit: &str, on_error: &str) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ format: json, audit: off }}
store: {{ redis: "redis://{redis}", on_redis_error: {on_error}, redis_timeout: 200ms }}
upstreams: {{ rec: {{ url: "{url}" }} }}
rate_limits:
  {limit}: {{ rate: 10/min, burst: 5, key: "header:x-client" }}
routes:
  - {{ name: api, match: {{ path_prefix: / }}, upstream: rec, auth: {{ rate_limit: {limit} }} }}
"#,
        url = up.url()
    )
}

async fn hit(c: &reqwest::Client, gw: &Gw, client: &str) -> reqwest::Response {
    c.get(format!("{}/x", gw.http("plain")))
        .header("x-client", client)
        .send()
        .await
        .unwrap()
}

async fn metric(gw: &Gw, name: &str) -> Option<String> {
    let text = metrics_text(gw).await;
    text.lines()
        .find(|l| l.starts_with(name))
        .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_limit_admits_its_burst_across_replicas_not_per_replica() {
    redis_reachable().await;
    let up = Upstream::start().await;
    let limit = fresh_limit();
    let yaml = limited_yaml(&up, &redis_addr(), &limit, "local");
    let a = Gw::start(&yaml).await;
    let b = Gw::start(&yaml).await;
    let http = plain_client();
    let mut allowed = 0;
    let mut refused = 0;
    for i in 0..12 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let r = hit(&http, gw, "client-1").await;
        match r.status().as_u16() {
            200 => allowed += 1,
            429 => {
                refused += 1;
                assert!(r.headers().contains_key("retry-after"));
                let rl = r.headers()["ratelimit"].to_str().unwrap().to_owned();
                assert!(rl.contains(";r=0;"), "{rl}");
            }
            s => panic!("unexpected status {s}"),
        }
    }
    // 10/min refills one unit every 6 s: within this burst the two replicas together admit the
    // bucket's 5 (two local limiters would have admitted 10).
    assert_eq!(allowed, 5, "allowed {allowed}, refused {refused}");
    assert_eq!(up.count(), 5, "the upstream saw a refused request");
    // Another client has its own bucket.
    assert_eq!(hit(&http, &b, "client-2").await.status(), 200);
    assert_eq!(
        metric(&a, "portcullis_redis_fallback_total")
            .await
            .as_deref(),
        Some("0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_falls_back_as_configured_and_recovers() {
    redis_reachable().await;
    let up = Upstream::start().await;
    let relay = Relay::start(redis_addr().parse().unwrap()).await;
    let via = relay.addr.to_string();
    let limit = fresh_limit();
    let local = Gw::start(&limited_yaml(&up, &via, &limit, "local")).await;
    let deny = Gw::start(&limited_yaml(&up, &via, &limit, "deny")).await;
    let allow = Gw::start(&limited_yaml(&up, &via, &limit, "allow")).await;
    let http = plain_client();
    // Shared while Redis answers: 2 + 2 + 1 of one bucket of 5.
    for gw in [&local, &local, &deny, &deny, &allow] {
        assert_eq!(hit(&http, gw, "c").await.status(), 200);
    }
    assert_eq!(hit(&http, &local, "c").await.status(), 429);

    relay.down();
    // local: this replica's own bucket (5 for a client it has not limited yet).
    let mut ok = 0;
    for _ in 0..7 {
        if hit(&http, &local, "fresh").await.status() == 200 {
            ok += 1;
        }
    }
    assert_eq!(
        ok, 5,
        "local fallback should admit the burst of its own limiter"
    );
    // deny: 503 with Retry-After, never the upstream.
    let before = up.count();
    let r = hit(&http, &deny, "fresh").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(up.count(), before);
    // allow: passes.
    for _ in 0..7 {
        assert_eq!(hit(&http, &allow, "c").await.status(), 200);
    }
    let fallbacks: u64 = metric(&local, "portcullis_redis_fallback_total")
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(fallbacks >= 7, "fallbacks {fallbacks}");
    assert_eq!(
        metric(&local, "portcullis_store_up{backend=\"redis\"}")
            .await
            .as_deref(),
        Some("0")
    );
    let r = readyz(&http, &local).await;
    assert_eq!(r["redis_up"], false, "{r}");

    relay.restore();
    // Back to shared decisions by itself: the shared bucket of `c` is still empty (allowed
    // requests on `allow` during the outage were not counted in Redis, so it refills slowly).
    let t0 = Instant::now();
    loop {
        let r = hit(&http, &deny, "after").await;
        if r.status() == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "deny replica never recovered: {}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `local` asks Redis again once its own probe (one request a second) has reached it
    let t0 = Instant::now();
    loop {
        let _ = hit(&http, &local, "probe").await;
        let up = metric(&local, "portcullis_store_up{backend=\"redis\"}").await;
        if up.as_deref() == Some("1") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "local replica never went back to Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        hit(&http, &local, "c").await.status(),
        429,
        "shared bucket of `c` should be empty again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_passes_the_store_conformance_suite() {
    let db = Db::new("conf");
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let tls = portcullis::store::pg_tls::parse(&url, std::path::Path::new(".")).unwrap();
        let s = portcullis::store::postgres::Postgres::open(&url, &tls).unwrap();
        portcullis::store::conformance(&s);
        // Opening again (a second replica starting) migrates nothing twice and loses nothing.
        let again = portcullis::store::postgres::Postgres::open(&url, &tls).unwrap();
        use portcullis::store::Store;
        assert_eq!(again.load_keys().unwrap().len(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateway_processes_follow_one_database_through_the_cli() {
    let db = Db::new("procs");
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{}admin: {{ bind: \"127.0.0.1:0\", token_sha256: \"{}\" }}\n",
            cluster_yaml(&up, &db.url),
            admin_token_sha256()
        ),
    )
    .unwrap();
    let procs: Vec<GwProcess> = (0..3).map(|_| GwProcess::start(&cfg, 1)).collect();
    // The later ones found the schema made: PostgreSQL's NOTICEs about it stay out of the log.
    for p in &procs {
        let notices: Vec<_> = p
            .startup
            .iter()
            .filter(|l| l.contains("NOTICE") || l.contains("already exists"))
            .collect();
        assert!(notices.is_empty(), "{notices:#?}");
    }
    let base = |i: usize| format!("http://{}", procs[i].addrs["plain"]);
    let admin_of = |i: usize| format!("http://{}", procs[i].addrs["admin"]);
    let http = plain_client();
    let status = |i: usize, key: String| {
        let req = http.get(format!("{}/x", base(i))).header("x-api-key", key);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let poll = |i: usize, key: String, want: u16| {
        let status = &status;
        async move {
            let t0 = Instant::now();
            loop {
                let s = status(i, key.clone()).await;
                if s == want {
                    return;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(1),
                    "process {i} answers {s}, want {want}"
                );
                tokio::task::yield_now().await;
            }
        }
    };

    let (code, out, err) = cli_async(
        admin_of(0),
        ["keys", "create", "--name", "procs", "--subject", "svc-p"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let line = |p: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(p))
            .unwrap_or_else(|| panic!("no `{p}` in {out}"))
            .to_owned()
    };
    let (key, id) = (line("key: "), line("id: "));
    for i in [1, 2] {
        poll(i, key.clone(), 200).await;
    }
    // Listed by another process's admin API too.
    let (code, listed, err) = cli_async(
        admin_of(2),
        ["keys", "show", &id, "--json"].map(String::from).to_vec(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(listed.contains("svc-p"), "{listed}");

    let (code, _, err) = cli_async(
        admin_of(1),
        ["keys", "revoke", &id].map(String::from).to_vec(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    for i in [0, 2] {
        poll(i, key.clone(), 401).await;
    }
    let seen = up.count();
    for i in 0..3 {
        assert_eq!(status(i, key.clone()).await, 401);
    }
    assert_eq!(up.count(), seen, "a revoked key reached the upstream");
}

/// Two replicas of [`oauth_cluster_yaml`] on `db`.
async fn oauth_pair(up: &Upstream, db: &Db) -> (Gw, Gw) {
    use base64::Engine;
    let key =
        base64::engine::general_purpose::STANDARD.encode(*b"cluster-test-secrets-key-32bytes");
    let yaml = oauth_cluster_yaml(up, &db.url, &key);
    (Gw::start(&yaml).await, Gw::start(&yaml).await)
}

/// Two replicas on one database, both serving the authorization server (`oauth_server`) with the
/// same issuer and `secrets_key`, as they would behind one load balancer.
fn oauth_cluster_yaml(up: &Upstream, pg_url: &str, secrets_key: &str) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ format: json, audit: off }}
store: {{ postgres: "{pg_url}", resync: 2s }}
rate_limits:
  generous: {{ rate: 100000/s, burst: 100000, key: ip }}
upstreams: {{ rec: {{ url: "{url}" }} }}
authenticators:
  own: {{ type: jwt, oauth_server: true, audiences: [https://api.test] }}
routes:
  - {{ name: api, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [own], scopes: [read] }} }}
oauth_server:
  issuer: http://127.0.0.1:8443
  listener: plain
  signing: {{ algorithm: ES256, publish_ahead: 2s, rotate_every: 1h, secrets_key: "{secrets_key}" }}
  pre_auth_rate_limit: generous
"#,
        url = up.url()
    )
}

/// Registers a client (scope `read`, the routes' audience) through `gw`: (id, secret).
async fn oauth_client(c: &reqwest::Client, gw: &Gw) -> (String, String) {
    let (st, v) = admin(
        c,
        gw,
        reqwest::Method::POST,
        "/admin/clients",
        Some(json!({"name": "svc", "scopes": ["read"], "audiences": ["https://api.test"]})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    (
        v["client_id"].as_str().unwrap().to_owned(),
        v["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// `(status, body)` of a client_credentials request to `gw`.
async fn oauth_token(c: &reqwest::Client, gw: &Gw, id: &str, secret: &str) -> (u16, Value) {
    let r = c
        .post(format!("{}/oauth2/token", gw.http("plain")))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn bearer_status(c: &reqwest::Client, gw: &Gw, token: &str) -> u16 {
    c.get(format!("{}/x", gw.http("plain")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let h = token.split('.').next().unwrap();
    let h: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap();
    h["kid"].as_str().unwrap().to_owned()
}

/// (kid, state) of every signing key, as `gw`'s admin API lists them.
async fn signing_keys(c: &reqwest::Client, gw: &Gw) -> Vec<(String, String)> {
    let (st, v) = admin(c, gw, reqwest::Method::GET, "/admin/oauth/keys", None).await;
    assert_eq!(st, 200, "{v}");
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_clients_tokens_and_revocations_hold_on_every_replica() {
    let (db, up) = (Db::new("oauth"), Upstream::start().await);
    let (a, b) = oauth_pair(&up, &db).await;
    let http = plain_client();
    // both replicas publish the same key (the one the first replica made)
    let keys_a = signing_keys(&http, &a).await;
    assert_eq!(keys_a.len(), 1, "{keys_a:?}");
    assert_eq!(signing_keys(&http, &b).await, keys_a);

    // a client created on A gets tokens from B within a second
    let (id, secret) = oauth_client(&http, &a).await;
    let t0 = Instant::now();
    let token = loop {
        let (st, v) = oauth_token(&http, &b, &id, &secret).await;
        if st == 200 {
            break v["access_token"].as_str().unwrap().to_owned();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "B still refuses A's new client after {:?}: {st} {v}",
            t0.elapsed()
        );
        tokio::task::yield_now().await;
    };
    assert_eq!(kid_of(&token), keys_a[0].0);
    // B's token passes on both replicas, with the client as the identity
    for gw in [&a, &b] {
        assert_eq!(bearer_status(&http, gw, &token).await, 200);
        assert_eq!(up.last().header("x-auth-subject"), Some(id.as_str()));
    }

    // revoked on B (RFC 7009): refused on A within a second, and the upstream sees nothing
    let r = http
        .post(format!("{}/oauth2/revoke", b.http("plain")))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let on_a = || bearer_status(&http, &a, &token);
    let took = poll_until(on_a, 401, Duration::from_secs(1), "a revoked token on A").await;
    println!("token revoked on B, refused on A after {took:?}");
    let seen = up.count();
    for gw in [&a, &b] {
        assert_eq!(bearer_status(&http, gw, &token).await, 401);
    }
    assert_eq!(up.count(), seen, "a revoked token reached the upstream");
    // introspection on A agrees
    let r = http
        .post(format!("{}/oauth2/introspect", a.http("plain")))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"active": false}));

    // deleted on B: A refuses the client and its other tokens within a second
    let (_, v) = oauth_token(&http, &a, &id, &secret).await;
    let other = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(bearer_status(&http, &a, &other).await, 200);
    let (st, v) = admin(
        &http,
        &b,
        reqwest::Method::DELETE,
        &format!("/admin/clients/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 204, "{v}");
    let on_a = || bearer_status(&http, &a, &other);
    poll_until(
        on_a,
        401,
        Duration::from_secs(1),
        "a deleted client's token on A",
    )
    .await;
    assert_eq!(oauth_token(&http, &a, &id, &secret).await.0, 401);
}

/// Both replicas asked to rotate the signing key at the same moment: the store lets one add the
/// next key and tells the other 409; both publish the same keys at once, and when the new key's
/// time comes both sign with it and only it is active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_rotating_at_once_end_with_one_active_key() {
    let (db, up) = (Db::new("oauthrot"), Upstream::start().await);
    let (a, b) = oauth_pair(&up, &db).await;
    let http = plain_client();
    let (id, secret) = oauth_client(&http, &a).await;
    let first = signing_keys(&http, &a).await;

    for round in 0..3 {
        let rotate = |gw| {
            admin(
                &http,
                gw,
                reqwest::Method::POST,
                "/admin/oauth/keys/rotate",
                None,
            )
        };
        let ((sa, va), (sb, vb)) = tokio::join!(rotate(&a), rotate(&b));
        let mut got = [sa, sb];
        got.sort();
        assert_eq!(got, [201, 409], "round {round}: A {sa} {va}, B {sb} {vb}");
        let new_kid = if sa == 201 { &va } else { &vb }["kid"]
            .as_str()
            .unwrap()
            .to_owned();
        // both list the same keys within a second: one active, the new one pending
        let t0 = Instant::now();
        loop {
            let (ka, kb) = (signing_keys(&http, &a).await, signing_keys(&http, &b).await);
            if ka == kb && ka.iter().any(|(k, _)| *k == new_kid) {
                let active = ka.iter().filter(|(_, s)| s == "active").count();
                let pending: Vec<_> = ka.iter().filter(|(_, s)| s == "pending").collect();
                assert_eq!(active, 1, "round {round}: {ka:?}");
                assert_eq!(pending.len(), 1, "round {round}: {ka:?}");
                assert_eq!(pending[0].0, new_kid);
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(1),
                "round {round}: the replicas disagree: A {ka:?} B {kb:?}"
            );
            tokio::task::yield_now().await;
        }
        // when it activates, both sign with the new key and nothing else is active
        let t0 = Instant::now();
        loop {
            let (_, va) = oauth_token(&http, &a, &id, &secret).await;
            let (_, vb) = oauth_token(&http, &b, &id, &secret).await;
            let (ta, tb) = (
                va["access_token"].as_str().unwrap().to_owned(),
                vb["access_token"].as_str().unwrap().to_owned(),
            );
            // every token passes on the other replica, whichever key signed it
            assert_eq!(bearer_status(&http, &b, &ta).await, 200);
            assert_eq!(bearer_status(&http, &a, &tb).await, 200);
            if kid_of(&ta) == new_kid && kid_of(&tb) == new_kid {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "round {round}: {new_kid} does not sign on both after {:?}",
                t0.elapsed()
            );
            tokio::task::yield_now().await;
        }
        let (ka, kb) = (signing_keys(&http, &a).await, signing_keys(&http, &b).await);
        assert_eq!(ka, kb);
        let active: Vec<_> = ka.iter().filter(|(_, s)| s == "active").collect();
        assert_eq!(active.len(), 1, "round {round}: {ka:?}");
        assert_eq!(active[0].0, new_kid);
        assert_eq!(ka.len(), first.len() + round + 1, "{ka:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_counted_exactly_across_replicas() {
    let db = Db::new("throttle");
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        use portcullis::oauth::users::Throttle;
        use portcullis::store::Store;
        let tls = portcullis::store::pg_tls::parse(&url, std::path::Path::new(".")).unwrap();
        let a =
            std::sync::Arc::new(portcullis::store::postgres::Postgres::open(&url, &tls).unwrap());
        let b =
            std::sync::Arc::new(portcullis::store::postgres::Postgres::open(&url, &tls).unwrap());
        // never locking here: every failure must be counted, none lost to a race
        let t = Throttle {
            after: 1_000,
            ..Throttle::default()
        };
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        s.record_login_failure("mallory", 1_000, &t).unwrap();
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(a.login_failures("mallory").unwrap().unwrap().count, 80);
        assert_eq!(b.login_failures("mallory").unwrap().unwrap().count, 80);
    })
    .await
    .unwrap();
}
