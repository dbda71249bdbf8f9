//! Cluster-mode measurements against the machine's PostgreSQL and Redis (issue 7):
//! 1. revocation propagation: a key revoked through replica A's admin API, time until replica B
//!    refuses it, over 100 revocations (p50 / p99 / max);
//! 2. the added latency per request of the Redis rate limiter over the local one (sequential
//!    keep-alive requests, interleaved blocks, same process);
//! 3. throughput of two replica processes versus one (wrk; both on this 2-core machine, so the
//!    load generator competes with them: read the ratio, not the absolute numbers).
//!
//!   cargo bench --bench cluster
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (`PORTCULLIS_TEST_PG`), Redis on 127.0.0.1:6379
//! (`PORTCULLIS_TEST_REDIS`) and `wrk` for part 3 (skipped with a note when missing).

#![allow(clippy::unwrap_used)] // a bench: a panic is the report

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn fresh_db() -> String {
    let base = pg_base();
    let name = format!("pc_bench_{}", std::process::id());
    let b = base.clone();
    let n = name.clone();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&b, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {b}: {e}"));
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"))
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {n}")).unwrap();
    })
    .join()
    .unwrap();
    format!("{}/{name}", &base[..base.rfind('/').unwrap()])
}

fn yaml(pg: &str, limits: &str) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ format: json, level: warn, audit: off }}
store: {{ postgres: "{pg}" {limits} }}
upstreams: {{ echo: {{ echo: true }} }}
authenticators:
  keys: {{ type: api_key }}
rate_limits:
  wide: {{ rate: 1000000/s, burst: 1000000, key: identity }}
routes:
  - {{ name: api, match: {{ path_prefix: / }}, upstream: echo, auth: {{ any_of: [keys], rate_limit: wide }} }}
"#
    )
}

async fn admin(
    c: &reqwest::Client,
    gw: &Gw,
    m: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    admin_call(c, &gw.admin(), m, path, body).await.1
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn propagation(pg: &str, rounds: usize) {
    let y = yaml(pg, "");
    let a = Gw::start(&y).await;
    let b = Gw::start(&y).await;
    let c = plain_client();
    let (mut after_answer, mut from_request) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let k = admin(
            &c,
            &a,
            reqwest::Method::POST,
            "/admin/keys",
            Some(json!({"name": format!("p{i}")})),
        )
        .await;
        let key = k["key"].as_str().unwrap().to_owned();
        while api_key_status(&c, &b, &key).await != 200 {}
        let t0 = Instant::now();
        admin(
            &c,
            &a,
            reqwest::Method::DELETE,
            &format!("/admin/keys/{}", k["id"].as_str().unwrap()),
            None,
        )
        .await;
        let t1 = Instant::now();
        while api_key_status(&c, &b, &key).await != 401 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "revocation never reached B"
            );
        }
        from_request.push(t0.elapsed());
        after_answer.push(t1.elapsed());
    }
    println!(
        "revocation A -> B, {rounds} revocations: from the DELETE request p50 {:?} p99 {:?} max {:?}; \
         after A answered p50 {:?} p99 {:?} max {:?}",
        pct(&mut from_request, 0.5),
        pct(&mut from_request, 0.99),
        pct(&mut from_request, 1.0),
        pct(&mut after_answer, 0.5),
        pct(&mut after_answer, 0.99),
        pct(&mut after_answer, 1.0),
    );
}

async fn limiter_latency(pg: &str, rounds: usize) {
    let local = Gw::start(&yaml(pg, "")).await;
    let shared = Gw::start(&yaml(pg, &format!(", redis: \"redis://{}\"", redis_addr()))).await;
    let c = plain_client();
    let k = admin(
        &c,
        &local,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"name": "lat"})),
    )
    .await;
    let key = k["key"].as_str().unwrap().to_owned();
    while api_key_status(&c, &shared, &key).await != 200 {}
    let (mut l, mut s) = (Vec::new(), Vec::new());
    for _round in 0..rounds {
        for (gw, out) in [(&local, &mut l), (&shared, &mut s)] {
            for _ in 0..300 {
                let t = Instant::now();
                assert_eq!(api_key_status(&c, gw, &key).await, 200);
                out.push(t.elapsed());
            }
        }
    }
    let (lp50, sp50) = (pct(&mut l, 0.5), pct(&mut s, 0.5));
    println!(
        "request round trip, {} each: local limiter p50 {lp50:?} p99 {:?}; Redis limiter p50 {sp50:?} p99 {:?}; added p50 {:?}",
        l.len(),
        pct(&mut l, 0.99),
        pct(&mut s, 0.99),
        sp50.saturating_sub(lp50)
    );
}

async fn throughput(pg: &str) {
    if std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("throughput: skipped (wrk not installed)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{}admin: {{ bind: \"127.0.0.1:0\", token_sha256: \"{}\" }}\nworkers: 1\n",
            yaml(pg, &format!(", redis: \"redis://{}\"", redis_addr()))
                .replace("level: warn", "level: info"),
            admin_token_sha256()
        ),
    )
    .unwrap();
    let procs: Vec<GwProcess> = (0..2).map(|_| GwProcess::start(&cfg, 1)).collect();
    let c = plain_client();
    let k: Value = c
        .post(format!("http://{}/admin/keys", procs[0].addrs["admin"]))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "tput"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = k["key"].as_str().unwrap().to_owned();
    for p in &procs {
        // both replicas know the key before the load starts
        while c
            .get(format!("http://{}/x", p.addrs["plain"]))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap()
            .status()
            != 200
        {}
    }
    let wrk = |addr: std::net::SocketAddr| {
        let key = key.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("wrk")
                .args(["-t1", "-c32", "-d5s", "-H", &format!("x-api-key: {key}")])
                .arg(format!("http://{addr}/x"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("Requests/sec:"))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        })
    };
    let one = wrk(procs[0].addrs["plain"]).await.unwrap();
    let (a, b) = (wrk(procs[0].addrs["plain"]), wrk(procs[1].addrs["plain"]));
    let two = a.await.unwrap() + b.await.unwrap();
    println!(
        "throughput (API key + Redis limiter, echo upstream, workers 1 each): one replica {one:.0} req/s, \
         two replicas {two:.0} req/s ({:.2}x) on {} cores shared with wrk",
        two / one.max(1.0),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench: the full run; `cargo test --benches` runs a short smoke pass.
    let full = std::env::args().any(|a| a == "--bench");
    let pg = tokio::task::spawn_blocking(fresh_db).await.unwrap();
    propagation(&pg, if full { 100 } else { 5 }).await;
    limiter_latency(&pg, if full { 10 } else { 1 }).await;
    if full {
        throughput(&pg).await;
    }
}
