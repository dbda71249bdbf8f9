//! Start-up with many keys: writes N keys into a SQLite store (as an import would), starts the
//! real `portcullis` binary on it, and reports the time until the keys are loaded and the
//! listeners answer, and the process RSS. Also measures revocation latency: the time from the
//! admin DELETE returning to the first request that is refused (by construction the key leaves
//! memory before the answer, so this is one request round trip).
//!
//! `cargo bench --bench keys_startup` runs 1 000 000 keys; under `cargo test` it runs 10 000.

use portcullis::keys::{generate_secret, hash_key, Env, KeyRow};
use portcullis::store::Store;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = if full { 1_000_000 } else { 10_000 };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("keys.db");
    let t = Instant::now();
    let mut probe = String::new();
    {
        let store = portcullis::store::sqlite::Sqlite::open(&db).expect("store");
        let mut batch = Vec::with_capacity(50_000);
        for i in 0..n {
            let secret = generate_secret(Env::Live);
            if i == 0 {
                probe = secret.clone();
            }
            batch.push(KeyRow {
                name: format!("client-{i}"),
                subject: Some(format!("client-{i}")),
                ..KeyRow::new(format!("key_{i:016}"), &secret)
            });
            if batch.len() == 50_000 {
                store.insert_keys(&batch).expect("insert");
                batch.clear();
            }
        }
        store.insert_keys(&batch).expect("insert");
    }
    println!(
        "keys_startup: wrote {n} keys in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let token = "pca_bench-token-000000000000";
    let sha = portcullis::digest::hex_lower(&hash_key(token));
    let cfg = dir.path().join("gw.yaml");
    std::fs::write(&cfg, format!(
        "listeners: [{{name: p, bind: 127.0.0.1:0}}]\nworkers: 1\nlogging: {{format: json, audit: off}}\nadmin: {{bind: \"127.0.0.1:0\", token_sha256: \"sha256:{sha}\"}}\nstore: {{sqlite: keys.db}}\nupstreams: {{e: {{echo: true}}}}\nauthenticators: {{k: {{type: api_key}}}}\nroutes: [{{name: r, match: {{path_prefix: /}}, upstream: e, auth: {{any_of: [k]}}}}]\n"
    )).expect("config");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "-c"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut addrs = Vec::new();
    let mut load_ms = 0;
    for line in lines.by_ref() {
        let v: serde_json::Value = serde_json::from_str(&line.expect("line")).unwrap_or_default();
        if v["message"] == "keys loaded" {
            load_ms = v["ms"].as_u64().unwrap_or(0);
        }
        if v["message"] == "listening" {
            addrs.push(v["addr"].as_str().unwrap_or_default().to_owned());
            if addrs.len() == 2 {
                break;
            }
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let r = client
        .get(format!("http://{}/x", addrs[0]))
        .header("x-api-key", &probe)
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 200);
    let ready = started.elapsed();
    let rss = rss_kib(pid, "VmRSS:");
    let hwm = rss_kib(pid, "VmHWM:");
    // revocation latency
    let admin = format!("http://{}", addrs[1]);
    let mut worst = std::time::Duration::ZERO;
    let mut total = std::time::Duration::ZERO;
    let rounds = 20;
    for i in 0..rounds {
        let key: serde_json::Value = client
            .post(format!("{admin}/admin/keys"))
            .bearer_auth(token)
            .json(&serde_json::json!({"name": format!("rev-{i}")}))
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        let secret = key["key"].as_str().expect("key").to_owned();
        let id = key["id"].as_str().expect("id").to_owned();
        assert_eq!(
            client
                .get(format!("http://{}/x", addrs[0]))
                .header("x-api-key", &secret)
                .send()
                .await
                .expect("use")
                .status(),
            200
        );
        let del = client
            .delete(format!("{admin}/admin/keys/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("delete");
        assert_eq!(del.status(), 204);
        let t = Instant::now();
        let st = client
            .get(format!("http://{}/x", addrs[0]))
            .header("x-api-key", &secret)
            .send()
            .await
            .expect("use")
            .status();
        let d = t.elapsed();
        assert_eq!(
            st, 401,
            "the first request after the DELETE answer must be refused"
        );
        worst = worst.max(d);
        total += d;
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "  {n} keys: loaded in {load_ms} ms, serving {:.2} s after exec",
        ready.as_secs_f64()
    );
    println!(
        "  RSS {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!("  revocation: first request after the DELETE answer refused in {rounds}/{rounds} rounds; its round trip mean {:.0} µs, worst {:.0} µs",
        total.as_micros() as f64 / rounds as f64, worst.as_micros() as f64);
}
