//! Reload (`POST /admin/reload`, SIGHUP) never half-applies (SPEC section 4): every changed field
//! is in force after a 200, or the reload is refused with 400 naming each field that needs a
//! restart while the running config keeps serving; files named in the config are read and
//! opened anew on every reload.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn process_yaml(
    level: &str,
    format: &str,
    max_conns: u32,
    admin_bind: &str,
    workers: u32,
) -> String {
    format!(
        "listeners: [{{ name: plain, bind: \"127.0.0.1:0\" }}]\n\
         logging: {{ format: {format}, level: {level}, audit: off }}\n\
         limits: {{ max_connections: {max_conns}, header_timeout: 60s, idle_timeout: 60s }}\n\
         admin: {{ bind: \"{admin_bind}\", token_sha256: \"{sha}\" }}\n\
         workers: {workers}\n\
         upstreams: {{ echo: {{ echo: true }} }}\n\
         routes: [{{ name: r, match: {{ path_prefix: / }}, upstream: echo, auth: none }}]\n",
        sha = admin_token_sha256()
    )
}

/// One request on its own connection, with a known request id; the status.
fn get(addr: std::net::SocketAddr, rid: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: {rid}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

async fn reload(admin: &str) -> (u16, Value) {
    admin_call(
        &plain_client(),
        admin,
        reqwest::Method::POST,
        "/admin/reload",
        None,
    )
    .await
}

/// The log lines (as text) up to the one that mentions `rid` (bounded).
fn lines_until(gw: &GwProcess, rid: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = gw
            .lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no log line with {rid}; saw {seen:#?}"));
        let done = line.contains(rid);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_every_change_or_refuses_naming_each_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.yaml");
    std::fs::write(&cfg, process_yaml("debug", "json", 2, "127.0.0.1:0", 1)).unwrap();
    let gw = GwProcess::start_with(&cfg, 1, None);
    let addr = gw.addrs["plain"];
    let admin = format!("http://{}", gw.addrs["admin"]);

    // debug, json: the request's access line (a debug event) is JSON
    assert_eq!(get(addr, "rid-json-debug"), 200);
    let lines = lines_until(&gw, "rid-json-debug");
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["message"], "request");

    // the level takes effect at once: at info, no access line
    std::fs::write(&cfg, process_yaml("info", "json", 2, "127.0.0.1:0", 1)).unwrap();
    assert_eq!(reload(&admin).await.0, 200);
    assert_eq!(get(addr, "rid-at-info"), 200);
    // and the format: back at debug, in pretty (text) lines, without colour codes in a pipe
    std::fs::write(&cfg, process_yaml("debug", "pretty", 2, "127.0.0.1:0", 1)).unwrap();
    assert_eq!(reload(&admin).await.0, 200);
    assert_eq!(get(addr, "rid-pretty-debug"), 200);
    let lines = lines_until(&gw, "rid-pretty-debug");
    assert!(
        lines.iter().all(|l| !l.contains("rid-at-info")),
        "a request at level info was logged: {lines:#?}"
    );
    let last = lines.last().unwrap();
    assert!(
        serde_json::from_str::<Value>(last).is_err(),
        "not pretty: {last}"
    );
    assert!(
        last.contains("request") && !last.contains('\u{1b}'),
        "{last}"
    );

    // max_connections: two connections held open take both slots; raised to 3 by a reload,
    // a third is served
    let hold: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            let mut buf = [0u8; 12];
            s.read_exact(&mut buf).unwrap();
            assert_eq!(&buf[9..12], b"200");
            s
        })
        .collect();
    std::fs::write(&cfg, process_yaml("debug", "pretty", 3, "127.0.0.1:0", 1)).unwrap();
    assert_eq!(reload(&admin).await.0, 200);
    assert_eq!(
        tokio::task::spawn_blocking(move || get(addr, "rid-third"))
            .await
            .unwrap(),
        200
    );
    drop(hold);

    // a change that needs a restart: refused, each field named, nothing of the file applied
    std::fs::write(&cfg, process_yaml("info", "json", 3, "127.0.0.1:1", 2)).unwrap();
    let (status, v) = reload(&admin).await;
    assert_eq!(status, 400, "{v}");
    let errors = v["errors"].to_string();
    for field in ["admin.bind", "workers"] {
        assert!(
            errors.contains(&format!("{field}: ")),
            "{field} in {errors}"
        );
    }
    assert!(errors.contains("needs a restart"), "{errors}");
    // still pretty at debug: the level and format of the refused file did not apply
    assert_eq!(get(addr, "rid-after-refusal"), 200);
    let lines = lines_until(&gw, "rid-after-refusal");
    assert!(serde_json::from_str::<Value>(lines.last().unwrap()).is_err());
    // the admin API answers where it did
    assert_eq!(get_json(&format!("{admin}/healthz")).await["status"], "ok");
}

#[tokio::test]
async fn the_audit_log_is_opened_anew_on_every_reload() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let gw = Gw::start(&format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nlogging: {{ audit: \"{}\" }}\nupstreams: {{ rec: {{ url: \"{}\" }} }}\nroutes: [{{ name: r, match: {{ path_prefix: / }}, upstream: rec, auth: none }}]\n",
        audit.display(),
        up.url()
    ))
    .await;
    let c = plain_client();
    let hit = |rid: &'static str| {
        let c = c.clone();
        let url = format!("{}/x", gw.http("plain"));
        async move {
            let r = c.get(url).header("x-request-id", rid).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    hit("before-rotation").await;
    wait_for_text(&audit, "before-rotation").await;
    // log rotation: the file is renamed, then the gateway reloads
    let rotated = dir.path().join("audit.jsonl.1");
    std::fs::rename(&audit, &rotated).unwrap();
    let (status, _) = admin_call(
        &c,
        &gw.admin(),
        reqwest::Method::POST,
        "/admin/reload",
        None,
    )
    .await;
    assert_eq!(status, 200);
    hit("after-rotation").await;
    wait_for_text(&audit, "after-rotation").await;
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains("before-rotation") && !old.contains("after-rotation"),
        "{old}"
    );
}

#[tokio::test]
async fn an_upstream_ca_file_is_read_again_on_reload() {
    let pki = Pki::new();
    let other = Pki::new();
    let up = Upstream::start().await;
    // an https upstream: a TLS listener of another gateway in front of the recording upstream
    let b = Gw::start(&format!(
        "listeners: [{{ name: tls, bind: 127.0.0.1:0, tls: {{ cert: {}, key: {} }} }}]\nupstreams: {{ rec: {{ url: \"{}\" }} }}\nroutes: [{{ name: r, match: {{ path_prefix: / }}, upstream: rec, auth: none }}]\n",
        pki.path("server.crt"),
        pki.path("server.key"),
        up.url()
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("upstream-ca.crt");
    // first the wrong CA: the upstream's certificate does not chain to it
    std::fs::write(&ca, other.read("ca.crt")).unwrap();
    let a = Gw::start(&format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nupstreams: {{ b: {{ url: \"https://localhost:{}\", ca: \"{}\" }} }}\nroutes: [{{ name: r, match: {{ path_prefix: / }}, upstream: b, auth: none }}]\n",
        b.addr("tls").port(),
        ca.display()
    ))
    .await;
    let c = plain_client();
    let status = |c: reqwest::Client, url: String| async move {
        c.get(url).send().await.unwrap().status().as_u16()
    };
    let url = format!("{}/x", a.http("plain"));
    assert_eq!(status(c.clone(), url.clone()).await, 502);
    // the CA file renewed in place, the config text unchanged: a reload reads it again
    std::fs::write(&ca, pki.read("ca.crt")).unwrap();
    let (s, _) = admin_call(&c, &a.admin(), reqwest::Method::POST, "/admin/reload", None).await;
    assert_eq!(s, 200);
    assert_eq!(status(c.clone(), url).await, 200);
}

/// Waits (bounded) until `path` holds `needle`: the audit writer works off the request path.
async fn wait_for_text(path: &std::path::Path, needle: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{needle} never reached {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
