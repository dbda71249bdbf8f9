//! Faults and slow clients around the request path (issue 6): request bodies that stop arriving,
//! idle WebSocket tunnels, request trailers towards an HTTP/2 upstream, and upstreams that reset
//! mid-body or answer garbage. Each case checks what the client got and what the upstream saw.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::raw::read_to_close;
use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn config(up_url: &str, limits: &str) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
limits: {{ {limits} }}
logging: {{ audit: off }}
upstreams:
  rec: {{ url: "{up_url}" }}
  echo: {{ echo: true }}
routes:
  - {{ name: echo, match: {{ path_prefix: /echo }}, upstream: echo, auth: none }}
  - {{ name: all, match: {{ path_prefix: / }}, upstream: rec, auth: none }}
"#
    )
}

/// Reads until the gateway closes the connection; the bound only keeps a broken build from
/// hanging the suite.
async fn read_until_closed(s: &mut TcpStream) -> String {
    let (out, closed) = read_to_close(s, Duration::from_secs(20)).await;
    assert!(closed, "the gateway did not close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// RES-06 (hyperium/hyper#2864; nginx `client_body_timeout`): a body that stops arriving is
/// answered 408 after `body_timeout` and the connection is closed, on the built-in echo upstream
/// (which reads the whole body before answering) and on a proxied upload.
#[tokio::test]
async fn a_request_body_that_stops_arriving_gets_408() {
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&up.url(), "body_timeout: 700ms, idle_timeout: 30s")).await;
    for path in ["/echo", "/upload"] {
        let mut s = TcpStream::connect(gw.addr("plain")).await.unwrap();
        s.write_all(
            format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nfirst bytes")
                .as_bytes(),
        )
        .await
        .unwrap();
        // ... and nothing more.
        let resp = read_until_closed(&mut s).await;
        assert!(resp.starts_with("HTTP/1.1 408"), "{path}: {resp}");
        assert!(resp.contains("\"error\":\"request_timeout\""), "{resp}");
        assert!(
            resp.to_ascii_lowercase().contains("connection: close"),
            "{resp}"
        );
    }
    // The proxied upload reached the upstream (its head was forwarded) but never completed: the
    // recorder answers only after the whole body, so nothing came back from it.
    assert_eq!(
        up.requests().iter().filter(|r| r.uri == "/upload").count(),
        1
    );

    // A body that keeps arriving, however slowly, is not cut: each gap is under body_timeout.
    let mut s = TcpStream::connect(gw.addr("plain")).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    for b in [b"a", b"b", b"c", b"d"] {
        tokio::time::sleep(Duration::from_millis(300)).await; // the attack's pace, under 700 ms
        s.write_all(b).await.unwrap();
    }
    let resp = read_until_closed(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    // A body that stopped is not an auth denial: the chain (`auth: none`) allowed each request.
    let metrics = get_text(&format!("{}/metrics", gw.admin())).await;
    let decisions: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("portcullis_auth_decisions_total{"))
        .collect();
    assert!(
        decisions.iter().all(|l| !l.contains("decision=\"deny\"")),
        "{decisions:?}"
    );
    assert!(
        decisions
            .iter()
            .any(|l| l.contains("authenticator=\"none\"") && l.ends_with(" 3")),
        "{decisions:?}"
    );
}

/// RES-08: an upgraded tunnel with no byte either way for `idle_timeout` is closed, and its
/// `max_connections` slot freed; one with traffic is not.
#[tokio::test]
async fn an_idle_websocket_tunnel_is_closed_and_frees_its_slot() {
    let up = Upstream::start().await;
    let gw = Gw::start(&config(
        &up.url(),
        "idle_timeout: 600ms, max_connections: 1",
    ))
    .await;
    let (mut ws, head) = open_websocket(gw.addr("plain")).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Traffic every 200 ms keeps it open past several idle intervals.
    let mut buf = [0u8; 64];
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(200)).await; // the client's pace
        ws.write_all(b"ping").await.unwrap();
        let mut got = 0;
        while got < 4 {
            let n = ws.read(&mut buf).await.unwrap();
            assert!(n > 0, "an active tunnel was closed");
            got += n;
        }
    }
    // Then silence: the gateway closes it.
    let rest = read_until_closed(&mut ws).await;
    assert!(rest.is_empty(), "{rest}");
    // The slot is free again: a new connection is served.
    let c = plain_client();
    let r = c
        .get(format!("{}/after", gw.http("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// An h2c upstream that records the trailers of every request body.
async fn h2c_trailer_recorder() -> (String, Arc<Mutex<Vec<http::HeaderMap>>>) {
    use http_body_util::BodyExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let rec = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let rec = rec.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let rec = rec.clone();
                        async move {
                            let collected = req.into_body().collect().await;
                            let trailers = collected
                                .ok()
                                .and_then(|c| c.trailers().cloned())
                                .unwrap_or_default();
                            rec.lock().unwrap().push(trailers);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                            ))
                        }
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

/// HDR-20 (zoxy-io/zoxy#263, tempesta-tech/tempesta#678): request trailers reach an HTTP/2
/// upstream without identity, forwarding, credential or framing names; other trailers pass.
#[tokio::test]
async fn request_trailers_lose_every_name_the_header_rules_drop() {
    let (url, seen) = h2c_trailer_recorder().await;
    let gw = Gw::start(&format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ audit: off }}
upstreams:
  h2: {{ url: "{url}", http2: true }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: h2, auth: none }}
"#
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr("plain")).await.unwrap();
    s.write_all(
        b"POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Auth-Subject\r\nConnection: close\r\n\r\n\
5\r\nhello\r\n0\r\n\
X-Auth-Subject: admin\r\nX_Auth_Scopes: admin\r\nX-Client-Cert-Subject: CN=root\r\nX-Forwarded-For: 1.2.3.4\r\n\
X-Real-IP: 1.2.3.4\r\nContent-Length: 100\r\nHost: evil\r\nAuthorization: Bearer x\r\nCookie: s=1\r\n\
X-HTTP-Method-Override: DELETE\r\nX-Checksum: abc\r\n\r\n",
    )
    .await
    .unwrap();
    let resp = read_until_closed(&mut s).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let t = &got[0];
    assert_eq!(
        t.get("x-checksum").map(|v| v.as_bytes()),
        Some(&b"abc"[..]),
        "an ordinary trailer did not pass (so the test proves nothing): {t:?}"
    );
    let leaked: Vec<&str> = t
        .keys()
        .map(|k| k.as_str())
        .filter(|k| *k != "x-checksum")
        .collect();
    assert!(
        leaked.is_empty(),
        "trailers that reached the upstream: {leaked:?}"
    );
}

/// A raw upstream: answers by the request line's path.
async fn raw_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                if line.contains(" /reset ") {
                    // A head promising 100 000 bytes, 1 000 of them, then a reset.
                    let _ = tcp
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                        .await;
                    let _ = tcp.write_all(&[b'x'; 1000]).await;
                    let _ = tcp.set_zero_linger();
                    drop(tcp);
                } else if line.contains(" /garbage ") {
                    let _ = tcp.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
                } else {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Faults: an upstream that resets mid-body cuts the client's response short (never a complete-
/// looking one), one that answers garbage is a 502, and the gateway goes on serving after both.
#[tokio::test]
async fn upstreams_resetting_mid_body_or_answering_garbage() {
    let url = raw_upstream().await;
    let gw = Gw::start(&config(&url, "")).await;
    let c = plain_client();
    for _ in 0..3 {
        let r = c
            .get(format!("{}/reset", gw.http("plain")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.bytes().await;
        assert!(
            body.is_err(),
            "a reset mid-body reached the client as a complete body of {} bytes",
            body.map(|b| b.len()).unwrap_or(0)
        );

        let r = c
            .get(format!("{}/garbage", gw.http("plain")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "bad_gateway");

        let r = c
            .get(format!("{}/fine", gw.http("plain")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ok");
    }
}

/// PATH-15 (GoogleCloudPlatform/nodejs-docs-samples#333): for a case-insensitive upstream, a route
/// with `match.case_insensitive: true` catches `/ADMIN/keys` before the weaker catch-all.
#[tokio::test]
async fn case_insensitive_routes_catch_every_spelling() {
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ audit: off }}
upstreams: {{ rec: {{ url: "{}" }} }}
authenticators: {{ keys: {{ type: api_key }} }}
routes:
  - name: admin
    match: {{ path_prefix: /admin, case_insensitive: true }}
    upstream: rec
    auth: {{ any_of: [keys] }}
  - name: report
    match: {{ path: /internal/report, case_insensitive: true }}
    upstream: rec
    auth: {{ any_of: [keys] }}
  - {{ name: public, match: {{ path_prefix: / }}, upstream: rec, auth: none }}
"#,
        up.url()
    ))
    .await;
    let c = plain_client();
    for path in [
        "/ADMIN/keys",
        "/Admin/Keys",
        "/aDmIn",
        "/INTERNAL/REPORT",
        "/Internal/Report/",
    ] {
        let r = c
            .get(format!("{}{path}", gw.http("plain")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    // Control: the catch-all still serves other paths, and is the only thing the upstream saw.
    let r = c
        .get(format!("{}/administrator", gw.http("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Vec<String> = up.requests().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(seen, vec!["/administrator"]);
}
