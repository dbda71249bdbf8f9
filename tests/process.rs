//! The gateway as a real process: SIGHUP reloads certificates and config (a broken file keeps the
//! old one), SIGTERM drains in-flight requests and exits 0.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;

fn write_config(dir: &std::path::Path, up: &Upstream) -> std::path::PathBuf {
    let yaml = format!(
        r#"
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ cert: server.crt, key: server.key }}
  - name: plain
    bind: 127.0.0.1:0
limits: {{ shutdown_timeout: 20s }}
logging: {{ format: json }}
admin: {{ bind: "127.0.0.1:0", token_sha256: "{sha}" }}
upstreams:
  rec: {{ url: "{url}", timeout: 30s }}
routes:
  - name: all
    match: {{ path_prefix: / }}
    upstream: rec
    auth: none
"#,
        url = up.url(),
        sha = admin_token_sha256()
    );
    let f = dir.join("gateway.yaml");
    std::fs::write(&f, yaml).unwrap();
    f
}

async fn served_cert(pki: &Pki, port: u16) -> Vec<u8> {
    let c = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pki.read("ca.crt")).unwrap()])
        .resolve("localhost", "127.0.0.1:0".parse().unwrap())
        .tls_info(true)
        .no_proxy()
        .build()
        .unwrap();
    let r = c
        .get(format!("https://localhost:{port}/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let info = r.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    info.peer_certificate().unwrap().to_vec()
}

/// The server certificate pair copied beside a fresh config (SIGHUP replaces the copies).
fn setup(pki: &Pki, dir: &std::path::Path, up: &Upstream) -> std::path::PathBuf {
    for f in ["server.crt", "server.key"] {
        std::fs::copy(pki.dir.path().join(f), dir.join(f)).unwrap();
    }
    write_config(dir, up)
}

fn der(pki: &Pki, name: &str) -> Vec<u8> {
    let p = pki.dir.path().join(name);
    portcullis::tls::load_certs(&p).unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_certificates_and_a_broken_reload_keeps_the_old_config() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(&pki, dir.path(), &up);
    // the access event is at debug level (the audit log is the per-request record)
    let gw = GwProcess::start_with(&cfg, 2, Some("info,access=debug"));
    let port = gw.addrs["public"].port();
    assert_eq!(served_cert(&pki, port).await, der(&pki, "server.crt"));
    // one JSON access line per request
    let access = gw.wait_for("request");
    assert_eq!(access["target"], "access");
    assert_eq!(access["route"], "all");
    assert_eq!(access["status"], 200);
    assert_eq!(access["path"], "/x");
    assert!(access["request_id"].as_str().is_some_and(|s| !s.is_empty()));

    // an in-flight request on an open connection survives the reload
    let slow_client = tls_client(&pki, None, true);
    let slow = tokio::spawn(async move {
        slow_client
            .get(format!("https://localhost:{port}/slow?ms=1500"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    up.wait_for_count(2).await;

    std::fs::copy(
        pki.dir.path().join("server2.crt"),
        dir.path().join("server.crt"),
    )
    .unwrap();
    std::fs::copy(
        pki.dir.path().join("server2.key"),
        dir.path().join("server.key"),
    )
    .unwrap();
    gw.signal("HUP");
    gw.wait_for("config reloaded");
    assert_eq!(served_cert(&pki, port).await, der(&pki, "server2.crt"));
    assert_eq!(slow.await.unwrap().unwrap(), 200);

    // A HUP that must be refused: the reload fails naming `field`, and the old pair serves on.
    let refused = |field: &'static str| {
        gw.signal("HUP");
        let line = gw.wait_for("reload failed; the previous config keeps serving");
        assert!(line["errors"].as_str().unwrap().contains(field), "{line}");
    };
    // a certificate with another certificate's key
    std::fs::copy(
        pki.dir.path().join("server.crt"),
        dir.path().join("server.crt"),
    )
    .unwrap();
    refused("listeners[0].tls");
    assert_eq!(served_cert(&pki, port).await, der(&pki, "server2.crt"));
    // a broken certificate file
    std::fs::write(dir.path().join("server.crt"), "not a certificate").unwrap();
    refused("listeners[0].tls.cert");
    assert_eq!(served_cert(&pki, port).await, der(&pki, "server2.crt"));

    // a broken config file: same
    std::fs::write(&cfg, "listeners: [ {name: x, bind: nope} ]\nbogus: 1\n").unwrap();
    gw.signal("HUP");
    let line = gw.wait_for("reload failed; the previous config keeps serving");
    assert!(line["errors"].as_str().unwrap().contains("bogus"), "{line}");
    let r = plain_client()
        .get(format!("http://{}/still", gw.addrs["plain"]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_lets_every_accepted_request_finish_then_exits_zero() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(&pki, dir.path(), &up);
    let mut gw = GwProcess::start(&cfg, 2);
    let plain = gw.addrs["plain"];
    // Under load: 100 requests on 100 connections, all accepted (seen by the upstream) before the
    // signal; every one must complete.
    let mut slow = Vec::new();
    for _ in 0..100 {
        slow.push(tokio::spawn(async move {
            let r = plain_client()
                .get(format!("http://{plain}/slow?ms=2000"))
                .send()
                .await?;
            let status = r.status().as_u16();
            let body = r.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        }));
    }
    up.wait_for_count(100).await;
    gw.signal("TERM");
    gw.wait_for("shutting down: draining in-flight requests");
    // new connections are refused once draining starts
    let refused = plain_client()
        .get(format!("http://{plain}/new"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a new request was accepted during shutdown: {refused:?}"
    );
    for s in slow {
        let (status, body) = s.await.unwrap().unwrap();
        assert_eq!((status, body.as_str()), (200, "slow done"));
    }
    let code = tokio::task::spawn_blocking(move || {
        let st = gw.child.wait().unwrap();
        st.code()
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0));
}

/// One line per request, in the audit log's one schema (no second, differently named access
/// line on stdout); lines the audit writer cannot write are counted and reported, never lost
/// silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_audit_line_per_request_and_lost_lines_are_reported() {
    let yaml = |audit: &str| {
        format!(
            "listeners: [{{ name: plain, bind: \"127.0.0.1:0\" }}]\nlogging: {{ format: json, level: info, audit: \"{audit}\" }}\nadmin: {{ bind: \"127.0.0.1:0\", token_sha256: \"{}\" }}\nupstreams: {{ e: {{ echo: true }} }}\nroutes: [{{ name: r, match: {{ path_prefix: / }}, upstream: e, auth: none }}]\n",
            admin_token_sha256()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.yaml");
    std::fs::write(&cfg, yaml("stdout")).unwrap();
    let gw = GwProcess::start_with(&cfg, 1, None);
    let c = plain_client();
    let base = format!("http://{}", gw.addrs["plain"]);
    let mut lines = Vec::new();
    for rid in ["req-one", "req-two"] {
        let r = c
            .get(format!("{base}/x"))
            .header("x-request-id", rid)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        loop {
            let l = gw
                .lines
                .recv_timeout(std::time::Duration::from_secs(30))
                .unwrap();
            let done = l.contains(rid);
            lines.push(l);
            if done {
                break;
            }
        }
    }
    let mine: Vec<&String> = lines.iter().filter(|l| l.contains("req-one")).collect();
    assert_eq!(mine.len(), 1, "{lines:#?}");
    let v: serde_json::Value = serde_json::from_str(mine[0]).unwrap();
    for field in [
        "time",
        "request_id",
        "route",
        "auth_method",
        "decision",
        "status",
    ] {
        assert!(v.get(field).is_some(), "{field} missing: {v}");
    }
    drop(gw);

    // an audit target that refuses every write
    std::fs::write(&cfg, yaml("/dev/full")).unwrap();
    let gw = GwProcess::start_with(&cfg, 1, None);
    let base = format!("http://{}", gw.addrs["plain"]);
    for _ in 0..3 {
        assert_eq!(
            c.get(format!("{base}/x")).send().await.unwrap().status(),
            200
        );
    }
    let warned = gw.wait_for("audit lines lost: the audit writer fell behind or could not write");
    assert!(warned["total"].as_u64().unwrap() >= 1, "{warned}");
    let m = get_text(&format!("http://{}/metrics", gw.addrs["admin"])).await;
    let lost: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("portcullis_audit_dropped_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(lost >= 1, "{m}");
}

/// What an operator watches: a client certificate refused by mutual TLS is an info line naming
/// the reason (not only a debug line), and `/metrics` has the build, the process, open
/// connections, handshake failures by reason, reloads by result and latency by route, upstream
/// latency included, all in valid exposition format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_client_certificates_and_the_process_show_in_logs_and_metrics() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.yaml");
    let yaml = format!(
        r#"
listeners:
  - name: mtls
    bind: 127.0.0.1:0
    tls: {{ cert: "{crt}", key: "{key}", client_auth: {{ mode: required, ca: "{ca}" }} }}
  - name: plain
    bind: 127.0.0.1:0
logging: {{ format: json, audit: off }}
admin: {{ bind: "127.0.0.1:0", token_sha256: "{sha}" }}
upstreams:
  rec: {{ url: "{url}" }}
routes:
  - name: all
    match: {{ path_prefix: / }}
    upstream: rec
    auth: none
"#,
        crt = pki.path("server.crt"),
        key = pki.path("server.key"),
        ca = pki.path("ca.crt"),
        url = up.url(),
        sha = admin_token_sha256()
    );
    std::fs::write(&cfg, &yaml).unwrap();
    let gw = GwProcess::start(&cfg, 2);
    let url = format!("https://localhost:{}/x", gw.addrs["mtls"].port());
    for (ident, reason) in [
        (None, "client_certificate_missing"),
        (Some("other-client"), "client_certificate_untrusted"),
    ] {
        let r = tls_client(&pki, ident, true).get(&url).send().await;
        assert!(r.is_err(), "{ident:?} was served");
        let line = gw.wait_for("TLS handshake failed: client certificate refused");
        assert_eq!(line["level"], "INFO", "{line}");
        assert_eq!(
            (line["listener"].as_str(), line["reason"].as_str()),
            (Some("mtls"), Some(reason)),
            "{line}"
        );
    }
    let ok = tls_client(&pki, Some("client"), true)
        .get(&url)
        .send()
        .await;
    assert_eq!(ok.unwrap().status(), 200);
    // one reload that applies, one that is refused
    let admin = format!("http://{}", gw.addrs["admin"]);
    let http = plain_client();
    let reload = || {
        let req = http
            .post(format!("{admin}/admin/reload"))
            .bearer_auth(ADMIN_TOKEN);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(reload().await, 200);
    std::fs::write(&cfg, "bogus: 1\n").unwrap();
    assert_eq!(reload().await, 400);

    let text = get_text(&format!("{admin}/metrics")).await;
    check_exposition(&text);
    let value = |series: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line[series.len() + 1..].parse().unwrap()
    };
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&format!("portcullis_build_info{{version=\"{version}\"}}")),
        1.0
    );
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_open_fds") >= 5.0);
    assert!(value("process_start_time_seconds") > 1.7e9);
    assert!(value("process_cpu_seconds_total") >= 0.0);
    for reason in ["client_certificate_missing", "client_certificate_untrusted"] {
        let s = format!(
            "portcullis_tls_handshake_failures_total{{listener=\"mtls\",reason=\"{reason}\"}}"
        );
        assert_eq!(value(&s), 1.0);
    }
    assert_eq!(
        value("portcullis_connections_total{listener=\"mtls\"}"),
        3.0
    );
    // this scrape's own connection is open
    assert!(value("portcullis_open_connections{listener=\"admin\"}") >= 1.0);
    assert_eq!(
        value("portcullis_config_reloads_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(
        value("portcullis_config_reloads_total{result=\"failure\"}"),
        1.0
    );
    assert_eq!(
        value("portcullis_request_duration_seconds_count{route=\"all\"}"),
        1.0
    );
    assert_eq!(
        value("portcullis_upstream_duration_seconds_count{route=\"all\"}"),
        1.0
    );
    assert!(value("portcullis_upstream_duration_seconds_sum{route=\"all\"}") > 0.0);
}
