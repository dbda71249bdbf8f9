//! Connection limits and upstream protocols: header timeout (slowloris), max header bytes, max
//! connections, https upstreams with a custom CA (h2 by ALPN), h2c upstreams, a `self_signed`
//! listener.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::raw::{read_response, read_to_close};
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn plain(up: &Upstream, limits: &str) -> String {
    format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nlimits: {{ {limits} }}\nupstreams: {{ rec: {{ url: \"{}\" }} }}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    upstream: rec\n    auth: none\n",
        up.url()
    )
}

#[tokio::test]
async fn a_slow_header_is_cut_off_by_header_timeout() {
    let up = Upstream::start().await;
    let gw = Gw::start(&plain(&up, "header_timeout: 500ms")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .unwrap();
    // The gateway must close the connection by itself; the 10 s bound only keeps a broken build
    // from hanging the suite.
    let (out, closed) = read_to_close(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "the connection was not closed");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(up.count(), 0);
}

/// A request head over `max_header_bytes` (or with more than 100 fields) is a full refusal, on
/// HTTP/1.1 and HTTP/2 alike: 431 with the JSON error body and the request id, an audit line and
/// the metric; a head past the parser's own buffer (twice the limit + 8 KiB) is refused by hyper
/// (a bare 431) and still counted. The upstream sees none of them.
#[tokio::test]
async fn oversized_heads_get_a_full_431_on_both_protocols() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let yaml = plain(&up, "max_header_bytes: 8192")
        + &format!("logging: {{ audit: \"{}\" }}\n", audit.display());
    let gw = Gw::start(&yaml).await;
    let big = "a".repeat(10_000);
    // HTTP/1.1: one 10 KB header
    let mut s = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    s.write_all(
        format!("GET /x HTTP/1.1\r\nHost: t\r\nX-Request-Id: rid-h1\r\nX-Big: {big}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut s, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.status, 431, "{r:?}");
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["error"], "header_too_large");
    assert_eq!(body["request_id"], "rid-h1");
    assert_eq!(r.header("x-request-id"), Some("rid-h1"));
    // HTTP/2 (h2c): the same header, then 120 small fields
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = format!("{}/x", gw.http("plain"));
    let r = h2
        .get(&url)
        .header("x-request-id", "rid-h2-big")
        .header("x-big", &big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 431);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (body["error"].as_str(), body["request_id"].as_str()),
        (Some("header_too_large"), Some("rid-h2-big"))
    );
    let mut many = h2.get(&url).header("x-request-id", "rid-h2-many");
    for i in 0..120 {
        many = many.header(format!("x-f{i}"), "v");
    }
    assert_eq!(many.send().await.unwrap().status(), 431);
    // under the limit: served
    assert_eq!(h2.get(&url).send().await.unwrap().status(), 200);
    // far past the parser's buffer (8192 * 2 + 8192): hyper's own 431, and the connection closes
    let mut s = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    let huge = "a".repeat(200_000);
    s.write_all(format!("GET /x HTTP/1.1\r\nHost: t\r\nX-Big: {huge}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (out, closed) = read_to_close(&mut s, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 431") && !text.contains("json"),
        "{text}"
    );
    assert!(closed);
    assert_eq!(
        up.count(),
        1,
        "only the request under the limit went upstream"
    );
    // every 431 counted, under route `-`
    let metrics = get_text(&format!("{}/metrics", gw.admin())).await;
    check_exposition(&metrics);
    assert!(
        metrics.contains("portcullis_requests_total{route=\"-\",status=\"431\"} 4\n"),
        "{metrics}"
    );
    // and each of ours has its audit line
    let rids = ["rid-h1", "rid-h2-big", "rid-h2-many"];
    let lines = audit_lines(&audit, &rids).await;
    for rid in rids {
        let l = &lines[rid];
        assert_eq!(
            (
                l["status"].as_u64(),
                l["reason"].as_str(),
                l["decision"].as_str()
            ),
            (Some(431), Some("header_too_large"), Some("deny")),
            "{l}"
        );
    }
}

async fn request_on(s: &mut tokio::net::TcpStream) -> String {
    s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn max_connections_holds_new_connections_until_one_closes() {
    let up = Upstream::start().await;
    let gw = Gw::start(&plain(&up, "max_connections: 2")).await;
    let mut a = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    let mut b = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    assert!(request_on(&mut a).await.starts_with("HTTP/1.1 200"));
    assert!(request_on(&mut b).await.starts_with("HTTP/1.1 200"));
    let mut c = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    c.write_all(b"GET /third HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let early = tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served past max_connections: 2"
    );
    drop(a);
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
        .await
        .expect("the third connection was not served after one closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(up.last().uri, "/third");
}

#[tokio::test]
async fn https_upstream_with_custom_ca_speaks_h2_and_h2c_upstreams_work() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    // Gateway B: a TLS listener in front of the recording upstream, standing in for an https
    // upstream that offers h2 by ALPN.
    let b = Gw::start(&format!(
        "listeners: [{{ name: tls, bind: 127.0.0.1:0, tls: {{ cert: {}, key: {} }} }}]\nupstreams: {{ rec: {{ url: \"{}\" }}, echo: {{ echo: true }} }}\nroutes:\n  - {{ name: echo, match: {{ path_prefix: /echo }}, upstream: echo, auth: none }}\n",
        pki.path("server.crt"),
        pki.path("server.key"),
        up.url()
    ))
    .await;
    let b_port = b.addr("tls").port();
    // Gateway A: routes to B over https (trusting only our CA) and to the recording upstream by h2c.
    let a = Gw::start(&format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nupstreams:\n  b: {{ url: \"https://localhost:{b_port}\", ca: {} }}\n  untrusted: {{ url: \"https://localhost:{b_port}\" }}\n  h2c: {{ url: \"{}\", http2: true }}\nroutes:\n  - {{ name: tls, match: {{ path_prefix: /echo }}, upstream: b, auth: none }}\n  - {{ name: bad, match: {{ path_prefix: /untrusted }}, upstream: untrusted, auth: none }}\n  - {{ name: h2c, match: {{ path_prefix: /h2c }}, upstream: h2c, auth: none }}\n",
        pki.path("ca.crt"),
        up.url()
    ))
    .await;
    let c = plain_client();
    let r = c
        .get(format!("{}/echo/x", a.http("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["path"], "/echo/x");
    assert_eq!(
        v["version"], "HTTP/2.0",
        "A must reach B over h2 (ALPN): {v}"
    );
    // A's identity headers arrived at B (and B, seeing A as an untrusted peer, rewrote XFF)
    assert_eq!(v["headers"]["x-auth-method"][0], "none");
    // an https upstream whose certificate chains to no trusted root: 502
    let r = c
        .get(format!("{}/untrusted", a.http("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let r = c
        .get(format!("{}/h2c/y", a.http("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    // over h2 the upstream sees the full URI: its own authority, our normalized path
    assert_eq!(seen.uri, format!("{}/h2c/y", up.url()));
    assert_eq!(seen.version, "HTTP/2.0");
    assert!(seen.header("x-forwarded-host").is_some());
}

#[tokio::test]
async fn a_self_signed_listener_serves_tls() {
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        "listeners: [{{ name: dev, bind: 127.0.0.1:0, tls: {{ self_signed: [localhost] }} }}]\nupstreams: {{ rec: {{ url: \"{}\" }} }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: rec, auth: none }}\n",
        up.url()
    ))
    .await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = c
        .get(format!("https://localhost:{}/hello", gw.addr("dev").port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().header("x-forwarded-proto"), Some("https"));
}

/// Reads until the gateway closes the connection; panics if it has not after `bound` (a bound
/// that only keeps a broken build from hanging the suite). Returns what was read.
async fn until_closed(s: &mut tokio::net::TcpStream, bound: Duration) -> Vec<u8> {
    let (out, closed) = read_to_close(s, bound).await;
    assert!(closed, "the gateway kept the connection open for {bound:?}");
    out
}

#[tokio::test]
async fn a_connection_without_a_request_is_closed_after_header_timeout() {
    // docs/attack-cases.md RES-01/RES-02: nothing at all, or the HTTP/2 preface a byte at a
    // time, used to wait for the 60 s idle timeout (hyper's header timer starts only once
    // HTTP/1 is detected).
    let up = Upstream::start().await;
    let gw = Gw::start(&plain(&up, "header_timeout: 500ms, idle_timeout: 60s")).await;
    let mut silent = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    let mut preface = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let t0 = std::time::Instant::now();
    until_closed(&mut silent, Duration::from_secs(10)).await;
    until_closed(&mut preface, Duration::from_secs(10)).await;
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn http2_pings_do_not_keep_an_idle_connection_open() {
    // RES-03/RES-04: any bytes used to count as activity, so PINGs kept an h2 connection with no
    // requests alive for ever.
    let up = Upstream::start().await;
    let gw = Gw::start(&plain(&up, "header_timeout: 500ms, idle_timeout: 1s")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap(); // empty SETTINGS
                                                              // One request, so the connection is past its first-request deadline: HEADERS on stream 1,
                                                              // END_STREAM|END_HEADERS, HPACK: :method GET (0x82), :scheme http (0x86), :path / (0x84),
                                                              // :authority "t" (0x41 0x01 't').
    s.write_all(&[
        0, 0, 6, 1, 5, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x41, 0x01, b't',
    ])
    .await
    .unwrap();
    let t0 = std::time::Instant::now();
    let mut buf = vec![0u8; 65536];
    let closed = loop {
        // a PING every 200 ms: the attacker's pace, not a synchronisation
        let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        if s.write_all(&ping).await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            _ => {}
        }
        if t0.elapsed() > Duration::from_secs(10) {
            break false;
        }
    };
    assert!(closed, "PINGs kept an idle HTTP/2 connection open for 10 s");
    assert_eq!(up.count(), 1, "the one request reached the upstream");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    // RES-07: a response whose client stopped reading held the connection (and the upstream's)
    // for ever. The stall below is the behaviour under test.
    let up = Upstream::start().await;
    let gw = Gw::start(&plain(&up, "idle_timeout: 1s")).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    let total: usize = 512 * 1024 * 1024;
    s.write_all(format!("GET /download?bytes={total} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let got = until_closed(&mut s, Duration::from_secs(30)).await;
    assert!(
        got.len() < total,
        "the whole {total} bytes arrived: the stalled response was not cut off"
    );
}

#[tokio::test]
async fn a_quiet_stream_is_not_a_stalled_one() {
    // The other side of a_client_that_stops_reading_is_cut_off: a response whose upstream is
    // quiet for longer than idle_timeout between chunks (server-sent events) must complete.
    let up = Upstream::start().await;
    let gw = Gw::start(&plain(&up, "idle_timeout: 1s")).await;
    let body = plain_client()
        .get(format!("{}/drip?n=3&ms=1500", gw.http("plain")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "tick\ntick\ntick\n");
}

#[tokio::test]
async fn a_websocket_tunnel_keeps_its_connection_slot() {
    // RES-08: after the 101 the HTTP connection is over, but the tunnel is still a connection:
    // with max_connections: 1, a second client waits until the tunnel closes.
    let up = Upstream::start().await;
    let gw = Gw::start(&plain(&up, "max_connections: 1")).await;
    let (ws, head) = open_websocket(gw.addr("plain")).await;
    let mut buf = vec![0u8; 4096];
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut other = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    other
        .write_all(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), other.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a second connection was served while the tunnel held the only slot"
    );
    drop(ws);
    let n = tokio::time::timeout(Duration::from_secs(10), other.read(&mut buf))
        .await
        .expect("the second connection was not served after the tunnel closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// Every duration the config accepts must work at runtime: `limits.body_timeout` accepts
/// `18446744073709551615ms`, and `LimitedBody` re-arms its timer with `Instant::now() + idle` each
/// time a body that made the gateway wait sends more bytes (on Linux the sum fits in a
/// `timespec`; this guards the arithmetic the timer does). It passed when it was
/// added.
#[tokio::test]
async fn huge_body_timeout_works_with_a_trickled_body() {
    let up = Upstream::start().await;
    let gw = Gw::start(&plain(&up, "body_timeout: 18446744073709551615ms")).await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    tcp.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
        .await
        .unwrap();
    up.wait_for_count(1).await;
    // The trickle is the attack: the rest of the body comes after the gateway had to wait.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tcp.write_all(b"world").await.unwrap();
    let resp = read_response(&mut tcp, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("no response: {e}"));
    let text = resp.text();
    assert!(
        resp.version == "HTTP/1.1" && resp.status == 200,
        "response: {} {} {text:?}",
        resp.version,
        resp.status
    );
    assert!(
        text.contains("\"bytes\":10"),
        "the upstream did not get the whole body: {text:?}"
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn a_trickled_head_and_a_silent_keep_alive_are_closed() {
    // docs/attack-cases.md RES-05 (hyperium/hyper#2675, rustfs/rustfs#4360): (a) a request head
    // that never ends, one header line at a time, is cut at header_timeout after its first
    // byte, with a 408 or without; (b) a keep-alive connection left silent after its response
    // is closed too, without waiting for idle_timeout (60 s here).
    let up = Upstream::start().await;
    let gw = Gw::start(&plain(&up, "header_timeout: 500ms, idle_timeout: 60s")).await;
    let mut trickle = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    trickle.write_all(b"GET /x HTTP/1.1\r\n").await.unwrap();
    let t0 = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let closed = loop {
        // a header line every 100 ms: the attacker's pace, not a synchronisation
        if trickle.write_all(b"X-A: b\r\n").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(100), trickle.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if t0.elapsed() > Duration::from_secs(10) {
            break false;
        }
    };
    assert!(closed, "a trickled head held the connection for 10 s");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );

    let mut quiet = tokio::net::TcpStream::connect(gw.addr("plain"))
        .await
        .unwrap();
    assert!(request_on(&mut quiet).await.starts_with("HTTP/1.1 200"));
    let t0 = std::time::Instant::now();
    until_closed(&mut quiet, Duration::from_secs(30)).await;
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(up.count(), 1);
}
