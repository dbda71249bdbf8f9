//! TLS to the stores, against the machine's real PostgreSQL and Redis behind a TLS relay (the
//! test PKI's server certificate; PostgreSQL's SSLRequest answered): `sslmode=verify-full` with
//! `sslrootcert` serves keys from a database reached only over TLS, a certificate from another CA
//! is refused at start, and `rediss://` with `store.redis_ca` shares rate limits over TLS while a
//! server the gateway cannot verify is never used.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::stores::{fresh_limit, redis_reachable, Db, TlsRelay};
use common::*;
use serde_json::json;
use std::sync::atomic::Ordering;

fn pg_yaml(up: &Upstream, url: &str) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ format: json, audit: off }}
store: {{ postgres: "{url}", resync: 2s }}
upstreams: {{ rec: {{ url: "{up}" }} }}
authenticators:
  keys: {{ type: api_key }}
routes:
  - {{ name: api, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [keys] }} }}
"#,
        up = up.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_verified_tls_serves_and_a_foreign_certificate_is_refused() {
    let db = Db::new("tls");
    let pki = Pki::new();
    let up = Upstream::start().await;
    let relay = TlsRelay::start("127.0.0.1:5432".parse().unwrap(), &pki, true).await;
    let via = db.url.replace("127.0.0.1:5432", &relay.addr.to_string());
    assert_ne!(via, db.url, "test database URL is not on 127.0.0.1:5432");

    // verify-full against the CA that signed the relay's certificate (for 127.0.0.1)
    let url = format!(
        "{via}?sslmode=verify-full&sslrootcert={}",
        pki.path("ca.crt")
    );
    let gw = Gw::start(&pg_yaml(&up, &url)).await;
    assert!(
        relay.handshakes.load(Ordering::SeqCst) >= 1,
        "the store was not reached over TLS"
    );
    let http = plain_client();
    let (st, v) = admin_call(
        &http,
        &gw.admin(),
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"name": "over-tls"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let key = v["key"].as_str().unwrap();
    assert_eq!(api_key_status(&http, &gw, key).await, 200);
    // the key is in the database, written over TLS
    let ready = get_json(&format!("{}/readyz", gw.admin())).await;
    assert_eq!(ready["store_backend"], "postgres");
    assert_eq!(ready["store_up"], true);
    drop(gw);

    // a CA that did not sign the server's certificate: the gateway does not start
    let other = tempfile::tempdir().unwrap();
    portcullis::devpki::generate(other.path()).unwrap();
    let foreign = format!(
        "{via}?sslmode=verify-full&sslrootcert={}",
        other.path().join("ca.crt").display()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    let yaml = format!(
        "{}admin: {{ bind: \"127.0.0.1:0\", token_sha256: \"{}\" }}\n",
        pg_yaml(&up, &foreign),
        admin_token_sha256()
    );
    std::fs::write(&file, yaml).unwrap();
    let snap = portcullis::config::load(&file, None, portcullis::config::Mode::Run).unwrap();
    let err = match portcullis::server::start(&file, snap).await {
        Ok(_) => panic!("started on a store whose certificate it cannot verify"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("TLS handshake") && err.contains("UnknownIssuer"),
        "{err}"
    );
    assert_eq!(up.count(), 1);
}

fn redis_yaml(up: &Upstream, redis: &str, limit: &str) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ format: json, audit: off }}
store: {{ {redis}, on_redis_error: deny, redis_timeout: 2s }}
upstreams: {{ rec: {{ url: "{url}" }} }}
rate_limits:
  {limit}: {{ rate: 10/min, burst: 2, key: "header:x-client" }}
routes:
  - {{ name: api, match: {{ path_prefix: / }}, upstream: rec, auth: {{ rate_limit: {limit} }} }}
"#,
        url = up.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_shares_limits_and_an_unverified_server_is_not_used() {
    redis_reachable().await;
    let pki = Pki::new();
    let up = Upstream::start().await;
    let relay = TlsRelay::start(redis_addr().parse().unwrap(), &pki, false).await;
    let port = relay.addr.port();
    let http = plain_client();
    let hit = |gw: &Gw| {
        let req = http
            .get(format!("{}/x", gw.http("plain")))
            .header("x-client", "c1");
        async move { req.send().await.unwrap().status().as_u16() }
    };

    // rediss:// verified against store.redis_ca: the burst of 2, then 429, decided by Redis
    let store = format!(
        "redis: \"rediss://localhost:{port}\", redis_ca: \"{}\"",
        pki.path("ca.crt")
    );
    let gw = Gw::start(&redis_yaml(&up, &store, &fresh_limit())).await;
    assert_eq!(
        [hit(&gw).await, hit(&gw).await, hit(&gw).await],
        [200, 200, 429]
    );
    assert!(relay.handshakes.load(Ordering::SeqCst) >= 1);
    let ready = get_json(&format!("{}/readyz", gw.admin())).await;
    assert_eq!(ready["redis_up"], true, "{ready}");

    // without the CA (the system's roots do not know the test CA): no decision from that
    // server; on_redis_error: deny answers 503 and nothing reaches the upstream
    let before = up.count();
    let store = format!("redis: \"rediss://localhost:{port}\"");
    let gw = Gw::start(&redis_yaml(&up, &store, &fresh_limit())).await;
    assert_eq!(hit(&gw).await, 503);
    assert_eq!(up.count(), before);
    let ready = get_json(&format!("{}/readyz", gw.admin())).await;
    assert_eq!(ready["redis_up"], false, "{ready}");
}
