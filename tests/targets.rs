//! Upstreams with several targets: round robin and least requests, passive ejection after
//! consecutive failures and return after the backoff, active health checks, requests sent again
//! to another target only when that is safe, per-target metrics, and a target process killed
//! mid-load. Every target is a real server on a loopback port; what each one received is counted
//! there, not inferred from the gateway.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// A target whose answers the test sets: `/healthz` answers `health`, any other path `status`
/// (with the target's name as body). It counts the requests of each kind.
struct Controlled {
    addr: std::net::SocketAddr,
    health: Arc<AtomicU16>,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
    checks: Arc<AtomicUsize>,
    /// `/held` waits for a permit before it answers.
    gate: Arc<tokio::sync::Semaphore>,
}

impl Controlled {
    async fn start(name: &'static str) -> Controlled {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let c = Controlled {
            addr,
            health: Arc::new(AtomicU16::new(200)),
            status: Arc::new(AtomicU16::new(200)),
            hits: Arc::default(),
            checks: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        let (health, status, hits, checks, gate) = (
            c.health.clone(),
            c.status.clone(),
            c.hits.clone(),
            c.checks.clone(),
            c.gate.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (health, status, hits, checks, gate) = (
                    health.clone(),
                    status.clone(),
                    hits.clone(),
                    checks.clone(),
                    gate.clone(),
                );
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                        let code = if req.uri().path() == "/healthz" {
                            checks.fetch_add(1, Ordering::SeqCst);
                            health.load(Ordering::SeqCst)
                        } else {
                            hits.fetch_add(1, Ordering::SeqCst);
                            status.load(Ordering::SeqCst)
                        };
                        let held = req.uri().path() == "/held";
                        let gate = gate.clone();
                        async move {
                            if held {
                                gate.acquire().await.unwrap().forget();
                            }
                            let mut r = http::Response::new(Full::new(bytes::Bytes::from(name)));
                            *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        c
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A target that reads each request head and closes the connection without answering: the
/// request left, and nothing came back. Counts the connections it took.
async fn resetter() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let taken: Arc<AtomicUsize> = Arc::default();
    let count = taken.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while find_bytes(&buf, b"\r\n\r\n").is_none() {
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                drop(tcp);
            });
        }
    });
    (format!("http://{addr}"), taken)
}

/// A Python HTTP/1.0 server in a process of its own (so it can be killed by PID), answering
/// every GET with `hello`, head and body in one write: a kill lands before its answer or after
/// the whole of it, never between the head and the body (a 200 cut short could not be sent
/// again, and is not what this file tests).
const ONE_WRITE_SERVER: &str = r#"
import sys, http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    request_queue_size = 128
s = S(("127.0.0.1", int(sys.argv[1])), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

struct Killable {
    child: std::process::Child,
    port: u16,
}

impl Killable {
    fn start(port: u16) -> Killable {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .args(["-c", ONE_WRITE_SERVER, &port.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port: {line:?}"));
        Killable { child, port }
    }

    /// SIGKILL, by PID: connections in progress are reset, new ones refused.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback address nothing listens on (bound, then released).
async fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

fn one_route(upstream: &str) -> String {
    format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nupstreams:\n  pool: {upstream}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool, auth: none }}\n"
    )
}

async fn get(gw: &Gw, path: &str) -> (u16, String) {
    let r = plain_client()
        .get(format!("{}{path}", gw.http("plain")))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `portcullis_upstream_target_<what>{upstream="pool",target="<url>"}`.
fn target_metric(text: &str, what: &str, url: &str) -> f64 {
    let prefix = format!("portcullis_upstream_target_{what}{{upstream=\"pool\",target=\"{url}\"}}");
    sample(text, &prefix).unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

/// Polls the metrics until `done` holds for them (or fails after 20 s).
async fn wait_metrics(gw: &Gw, what: &str, done: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let text = metrics_text(gw).await;
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn round_robin_spreads_requests_evenly_and_each_target_keeps_its_path() {
    let (a, b, c) = (
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    let gw = Gw::start(&one_route(&format!(
        "{{ targets: [\"{}\", \"{}/v1\", \"{}\"] }}",
        a.url(),
        b.url(),
        c.url()
    )))
    .await;
    for i in 0..30 {
        let (status, _) = get(&gw, &format!("/r/{i}")).await;
        assert_eq!(status, 200);
    }
    assert_eq!((a.count(), b.count(), c.count()), (10, 10, 10));
    assert!(b.requests().iter().all(|s| s.uri.starts_with("/v1/r/")));
    assert!(a.requests().iter().all(|s| s.uri.starts_with("/r/")));
    // each target got the client's Host (preserve is the default), the same on every target
    let host = format!("{}", gw.addr("plain"));
    assert!(c.requests().iter().all(|s| s.header("host") == Some(&host)));
    let text = metrics_text(&gw).await;
    for u in [a.url(), b.url(), c.url()] {
        assert_eq!(target_metric(&text, "requests_total", &u), 10.0);
        assert_eq!(target_metric(&text, "healthy", &u), 1.0);
    }
}

#[tokio::test]
async fn least_requests_sends_around_a_busy_target() {
    let (a, b) = (Controlled::start("a").await, Controlled::start("b").await);
    let gw = Gw::start(&one_route(&format!(
        "{{ targets: [\"{}\", \"{}\"], balance: least_requests }}",
        a.url(),
        b.url()
    )))
    .await;
    // one request held on one target until the test lets it answer
    let url = format!("{}/held", gw.http("plain"));
    let held = tokio::spawn(async move {
        let r = plain_client().get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    let until = Instant::now() + Duration::from_secs(20);
    while a.hits() + b.hits() == 0 {
        assert!(Instant::now() < until, "the held request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (busy, free) = if a.hits() == 1 { (&a, &b) } else { (&b, &a) };
    for _ in 0..10 {
        assert_eq!(get(&gw, "/quick").await.0, 200);
    }
    assert_eq!(busy.hits(), 1, "the busy target got more requests");
    assert_eq!(free.hits(), 10);
    let busy_url = busy.url();
    let text = metrics_text(&gw).await;
    assert_eq!(target_metric(&text, "in_flight", &busy_url), 1.0);
    // its answer ends: the target is no longer counted busy
    busy.gate.add_permits(1);
    assert_eq!(held.await.unwrap().0, 200);
    wait_metrics(&gw, "the held request to end", |t| {
        target_metric(t, "in_flight", &busy_url) == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_dead_target_is_skipped_by_retry_ejected_and_back_after_its_backoff() {
    let live = Upstream::start().await;
    let dead = dead_url().await;
    let gw = Gw::start(&one_route(&format!(
        "{{ targets: [\"{dead}\", \"{}\"], eject: {{ after: 3, backoff: 300ms, max_backoff: 1s }} }}",
        live.url()
    )))
    .await;
    // every request is answered: the ones picked for the dead target go on to the live one
    for i in 0..12 {
        assert_eq!(get(&gw, &format!("/g/{i}")).await.0, 200, "request {i}");
    }
    let text = metrics_text(&gw).await;
    let tried = target_metric(&text, "requests_total", &dead);
    assert!(tried >= 3.0, "{text}");
    assert_eq!(target_metric(&text, "failures_total", &dead), tried);
    assert!(target_metric(&text, "ejections_total", &dead) >= 1.0);
    assert_eq!(
        sample(
            &text,
            "portcullis_upstream_retries_total{upstream=\"pool\"}"
        ),
        Some(tried)
    );
    assert_eq!(live.count(), 12);
    // the dead target comes to life on its port; after the backoff it gets requests again
    let port: u16 = dead.rsplit(':').next().unwrap().parse().unwrap();
    let revived = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let revived_seen: Arc<AtomicUsize> = Arc::default();
    let seen = revived_seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = revived.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: http::Request<Incoming>| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            bytes::Bytes::from("revived"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let until = Instant::now() + Duration::from_secs(20);
    while revived_seen.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < until,
            "the revived target never got a request back"
        );
        assert_eq!(get(&gw, "/again").await.0, 200);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = metrics_text(&gw).await;
    assert_eq!(target_metric(&text, "healthy", &dead), 1.0, "{text}");
}

#[tokio::test]
async fn a_request_that_never_left_is_sent_to_another_target_whatever_its_method() {
    let live = Upstream::start().await;
    let dead = dead_url().await;
    // never ejected: the dead target stays in the rotation
    let gw = Gw::start(&one_route(&format!(
        "{{ targets: [\"{dead}\", \"{}\"], eject: {{ after: 1000 }} }}",
        live.url()
    )))
    .await;
    let body = vec![b'x'; 100_000];
    for _ in 0..4 {
        let r = plain_client()
            .post(format!("{}/upload", gw.http("plain")))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            v["bytes"], 100_000,
            "the whole body reached the live target"
        );
    }
    // each request starts on the dead target (a retry moves round robin on by one more)
    let text = metrics_text(&gw).await;
    assert_eq!(target_metric(&text, "requests_total", &dead), 4.0);
    assert_eq!(
        sample(
            &text,
            "portcullis_upstream_retries_total{upstream=\"pool\"}"
        ),
        Some(4.0)
    );
    assert_eq!(live.count(), 4);

    // with `host: upstream` the request sent again names the target it went to
    let gw = Gw::start(&format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nupstreams:\n  pool: {{ targets: [\"{dead}\", \"{}\"], eject: {{ after: 1000 }} }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: pool, host: upstream, auth: none }}\n",
        live.url()
    ))
    .await;
    for _ in 0..2 {
        let r = plain_client()
            .post(format!("{}/upload", gw.http("plain")))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            live.last().header("host"),
            Some(live.addr.to_string().as_str())
        );
    }
}

#[tokio::test]
async fn after_a_reset_only_idempotent_requests_without_a_body_are_sent_again_when_asked() {
    let live = Upstream::start().await;
    let (reset_url, taken) = resetter().await;
    let gw = Gw::start(&one_route(&format!(
        "{{ targets: [\"{reset_url}\", \"{}\"], eject: {{ after: 1000 }}, retry_on_reset: true }}",
        live.url()
    )))
    .await;
    let c = plain_client();
    let mut answered = Vec::new();
    // Round robin, the resetting target first: each pick (retries too) moves it one on, so a
    // request sent again leaves the next one starting on the resetter, and one that was not
    // leaves the next one starting on the live target.
    for method in ["GET", "DELETE", "POST", "PATCH", "GET", "POST"] {
        let m = http::Method::from_bytes(method.as_bytes()).unwrap();
        let body = if method == "POST" || method == "PATCH" {
            "payload"
        } else {
            ""
        };
        let r = c
            .request(m, format!("{}/x", gw.http("plain")))
            .body(body)
            .send()
            .await
            .unwrap();
        answered.push((method, r.status().as_u16()));
    }
    assert_eq!(
        answered,
        [
            ("GET", 200),    // reset, sent again to the live target
            ("DELETE", 200), // the same
            ("POST", 502),   // reset after its body left: never sent again
            ("PATCH", 200),  // went to the live target first
            ("GET", 200),
            ("POST", 502),
        ]
    );
    let methods: Vec<String> = live.requests().iter().map(|s| s.method.clone()).collect();
    assert_eq!(methods, ["GET", "DELETE", "PATCH", "GET"]);
    assert_eq!(taken.load(Ordering::SeqCst), 5);

    // by default (`retry_on_reset: false`) only what never left goes elsewhere
    let strict = Gw::start(&one_route(&format!(
        "{{ targets: [\"{reset_url}\", \"{}\"], eject: {{ after: 1000 }} }}",
        live.url()
    )))
    .await;
    let before = live.count();
    assert_eq!(get(&strict, "/y").await.0, 502);
    assert_eq!(live.count(), before);
    assert_eq!(taken.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn consecutive_5xx_answers_eject_a_target_and_are_passed_on() {
    let bad = Controlled::start("bad").await;
    bad.status.store(503, Ordering::SeqCst);
    let good = Controlled::start("good").await;
    let gw = Gw::start(&one_route(&format!(
        "{{ targets: [\"{}\", \"{}\"], eject: {{ after: 2, backoff: 60s }} }}",
        bad.url(),
        good.url()
    )))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(get(&gw, "/x").await.0);
    }
    // an answer is never sent again: the two 503s reach the client, then the target is out
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(bad.hits(), 2);
    assert_eq!(good.hits(), 8);
    let text = metrics_text(&gw).await;
    assert_eq!(target_metric(&text, "ejections_total", &bad.url()), 1.0);
    assert_eq!(target_metric(&text, "healthy", &bad.url()), 0.0);
    assert_eq!(target_metric(&text, "failures_total", &bad.url()), 2.0);

    // a 500 is the application's answer (a client may provoke it), not the target failing:
    // never counted, never ejecting
    let app = Controlled::start("app").await;
    app.status.store(500, Ordering::SeqCst);
    let other = Controlled::start("other").await;
    let gw = Gw::start(&one_route(&format!(
        "{{ targets: [\"{}\", \"{}\"], eject: {{ after: 2, backoff: 60s }} }}",
        app.url(),
        other.url()
    )))
    .await;
    for _ in 0..10 {
        get(&gw, "/x").await;
    }
    assert_eq!((app.hits(), other.hits()), (5, 5));
    let text = metrics_text(&gw).await;
    assert_eq!(target_metric(&text, "failures_total", &app.url()), 0.0);
    assert_eq!(target_metric(&text, "healthy", &app.url()), 1.0);
}

#[tokio::test]
async fn active_health_checks_take_a_target_out_and_bring_it_back() {
    let a = Controlled::start("a").await;
    let b = Controlled::start("b").await;
    let gw = Gw::start(&one_route(&format!(
        "{{ targets: [\"{}\", \"{}\"], health: {{ path: /healthz, interval: 100ms, timeout: 100ms, unhealthy_threshold: 2, healthy_threshold: 2 }} }}",
        a.url(),
        b.url()
    )))
    .await;
    let a_url = a.url();
    a.health.store(503, Ordering::SeqCst);
    wait_metrics(&gw, "a to fail its checks", |t| {
        target_metric(t, "healthy", &a_url) == 0.0
    })
    .await;
    let before = a.hits();
    for _ in 0..10 {
        assert_eq!(get(&gw, "/x").await, (200, "b".to_owned()));
    }
    assert_eq!(a.hits(), before, "a target failing its checks got requests");
    a.health.store(200, Ordering::SeqCst);
    let text = wait_metrics(&gw, "a to pass its checks again", |t| {
        target_metric(t, "healthy", &a_url) == 1.0
    })
    .await;
    assert!(
        sample(
            &text,
            &format!("portcullis_upstream_health_checks_total{{upstream=\"pool\",target=\"{a_url}\",result=\"failed\"}}")
        )
        .unwrap()
            >= 2.0
    );
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(get(&gw, "/x").await.1);
    }
    assert_eq!(names.iter().filter(|n| *n == "a").count(), 2, "{names:?}");
    // the checks are GETs of the path with our user agent, and never count as requests
    assert!(a.checks.load(Ordering::SeqCst) >= 4);
    assert_eq!(
        target_metric(&text, "requests_total", &a_url),
        before as f64
    );
}

#[tokio::test]
async fn https_targets_are_balanced_and_health_checked_over_tls() {
    let pki = Pki::new();
    let (r1, r2) = (Upstream::start().await, Upstream::start().await);
    // two TLS front ends standing in for https targets
    let front = |up: &Upstream| {
        format!(
            "listeners: [{{ name: tls, bind: 127.0.0.1:0, tls: {{ cert: {}, key: {} }} }}]\nupstreams: {{ rec: {{ url: \"{}\" }} }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: rec, auth: none }}\n",
            pki.path("server.crt"),
            pki.path("server.key"),
            up.url()
        )
    };
    let (f1, f2) = (Gw::start(&front(&r1)).await, Gw::start(&front(&r2)).await);
    let (t1, t2) = (
        format!("https://localhost:{}", f1.addr("tls").port()),
        format!("https://localhost:{}", f2.addr("tls").port()),
    );
    let gw = Gw::start(&one_route(&format!(
        "{{ targets: [\"{t1}\", \"{t2}\"], ca: {}, health: {{ path: /healthz, interval: 100ms, timeout: 100ms }} }}",
        pki.path("ca.crt")
    )))
    .await;
    for _ in 0..6 {
        assert_eq!(get(&gw, "/x").await.0, 200);
    }
    // the checks reached both targets over TLS (the fronts pass them on to the recorders)
    let until = Instant::now() + Duration::from_secs(20);
    let checked = |r: &Upstream| {
        r.requests()
            .iter()
            .filter(|s| s.uri.ends_with("/healthz"))
            .count()
    };
    while checked(&r1) == 0 || checked(&r2) == 0 {
        assert!(Instant::now() < until, "no health check over TLS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let count = |r: &Upstream| {
        r.requests()
            .iter()
            .filter(|s| s.uri.ends_with("/x"))
            .count()
    };
    assert_eq!((count(&r1), count(&r2)), (3, 3));
    let agent = r1
        .requests()
        .into_iter()
        .find(|s| s.uri.ends_with("/healthz"))
        .unwrap();
    assert_eq!(agent.header("user-agent"), Some("portcullis-health-check"));
    let text = metrics_text(&gw).await;
    assert_eq!(target_metric(&text, "healthy", &t1), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_killed_mid_load_fails_no_idempotent_request_and_its_return_shows() {
    let mut servers: Vec<Killable> = (0..3).map(|_| Killable::start(0)).collect();
    let urls: Vec<String> = servers
        .iter()
        .map(|s| format!("http://127.0.0.1:{}", s.port))
        .collect();
    let gw = Arc::new(
        Gw::start(&one_route(&format!(
            "{{ targets: [\"{}\", \"{}\", \"{}\"], eject: {{ after: 2, backoff: 500ms, max_backoff: 1s }}, retry_on_reset: true }}",
            urls[0], urls[1], urls[2]
        )))
        .await,
    );
    let ok: Arc<AtomicUsize> = Arc::default();
    let failed: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let stop: Arc<AtomicBool> = Arc::default();
    let mut load = Vec::new();
    for _ in 0..6 {
        let (gw, ok, failed, stop) = (gw.clone(), ok.clone(), failed.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let c = plain_client();
            let url = format!("{}/x.txt", gw.http("plain"));
            while !stop.load(Ordering::SeqCst) {
                match c.get(&url).send().await {
                    Ok(r) => {
                        let status = r.status();
                        match r.text().await {
                            Ok(t) if status == 200 && t == "hello" => {
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            other => failed.lock().unwrap().push(format!("{status}: {other:?}")),
                        }
                    }
                    Err(e) => failed.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    let wait_ok = |n: usize| {
        let ok = ok.clone();
        async move {
            let until = Instant::now() + Duration::from_secs(60);
            while ok.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < until, "the load stalled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_ok(150).await;
    let victim = urls[1].clone();
    let port = servers[1].port;
    servers[1].kill();
    let killed_at = ok.load(Ordering::SeqCst);
    wait_ok(killed_at + 300).await;
    let text = metrics_text(&gw).await;
    assert!(
        target_metric(&text, "ejections_total", &victim) >= 1.0,
        "{text}"
    );
    // back on its port: after the backoff it takes requests again
    servers[1] = Killable::start(port);
    let served_before = target_metric(&text, "requests_total", &victim);
    let text = wait_metrics(&gw, "the restarted target to take requests", |t| {
        target_metric(t, "requests_total", &victim) > served_before + 20.0
            && target_metric(t, "healthy", &victim) == 1.0
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        sample(
            &text,
            "portcullis_upstream_retries_total{upstream=\"pool\"}"
        )
        .unwrap()
            >= 1.0
    );
    for u in &urls {
        assert!(target_metric(&text, "requests_total", u) > 0.0);
    }
}

#[test]
fn check_refuses_what_targets_cannot_mean() {
    let l = "listeners: [{ name: plain, bind: 127.0.0.1:0 }]\nroutes:\n  - { name: all, match: { path_prefix: / }, upstream: a, auth: none }\n";
    assert_check_fails_with(
        &format!(
            "{l}upstreams:\n  a: {{ url: http://127.0.0.1:1, targets: [http://127.0.0.1:2] }}\n  b: {{ url: http://127.0.0.1:1, balance: least_requests, health: {{ path: /h }}, eject: {{ after: 2 }}, retries: 1, retry_on_reset: true }}\n  c: {{ targets: [] }}\n  d: {{ targets: [http://127.0.0.1:1, https://127.0.0.1:2] }}\n  e: {{ targets: [http://127.0.0.1:1/a, http://127.0.0.1:1/b] }}\n  f: {{ echo: true, targets: [http://127.0.0.1:1] }}\n  g: {{ targets: [http://127.0.0.1:1, http://127.0.0.1:2], health: {{ path: healthz, interval: 1s, timeout: 2s }} }}\n  h: {{ targets: [http://127.0.0.1:1, http://127.0.0.1:2], eject: {{ after: 0, backoff: 10s, max_backoff: 5s }} }}\n  i: {{ targets: [\"http://u:p@127.0.0.1:1\"] }}\n  j: {{ targets: [http://127.0.0.1:1], retries: 1 }}\n  k: {{ targets: [http://127.0.0.1:1, http://127.0.0.1:2], eject: {{ backoff: 2h }}, retries: 11 }}\n"
        ),
        &[
            "upstreams.a: give either `url` (one address) or `targets` (several), not both",
            "upstreams.b.balance: chooses among `targets`",
            "upstreams.b.health: chooses among `targets`",
            "upstreams.b.eject: chooses among `targets`",
            "upstreams.b.retries: chooses among `targets`",
            "upstreams.b.retry_on_reset: chooses among `targets`",
            "upstreams.c.targets: needs at least one URL",
            "upstreams.d.targets[1]: the targets of one upstream share one scheme",
            "upstreams.e.targets[1]: `http://127.0.0.1:1/b`: `http://127.0.0.1:1` is listed twice",
            "upstreams.f: the built-in echo upstream takes none of `targets`",
            "upstreams.g.health.path",
            "upstreams.g.health.timeout: more than 0 and at most the interval",
            "upstreams.h.eject.after: between 1 and 1000",
            "upstreams.h.eject.max_backoff: shorter than `backoff`",
            "upstreams.i.targets[0]",
            "user information",
            "upstreams.j.retries: chooses among `targets`",
            "upstreams.k.eject.backoff: between 100ms and 1h",
            "upstreams.k.retries: at most 10",
        ],
    );
    assert_check_fails_with(
        &format!("{l}upstreams:\n  a: {{ targets: [http://127.0.0.1:1], balance: fastest }}\n"),
        &["upstreams.a.balance", "round_robin", "least_requests"],
    );
    // a target that is the gateway itself
    assert_check_fails_with(
        "listeners: [{ name: plain, bind: 127.0.0.1:18999 }]\nupstreams:\n  a: { targets: [http://127.0.0.1:2, http://localhost:18999] }\nroutes:\n  - { name: all, match: { path_prefix: / }, upstream: a, auth: none }\n",
        &["upstreams.a.targets[1]: `127.0.0.1:18999` is this gateway's listener `plain`: requests would loop"],
    );
}
