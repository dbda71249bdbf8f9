//! docs/attack-cases.md sections 1 (PATH), 2 (HDR) and 7 (ADM) on real sockets: every case writes
//! raw HTTP/1.1 bytes (or raw HTTP/2 frames, or either over TLS with a chosen SNI and client
//! certificate) to a gateway listener, then checks the response AND what the recording upstream
//! received. A denied request must never reach the upstream.
//!
//! The upstream oracle: after each case a known-good sentinel request is sent on a fresh
//! connection; once its answer is back, every request the attack caused is recorded too, so "UP
//! saw nothing" is "the only new request is the sentinel" (no sleeping), and "UP saw P" is "exactly
//! one new request before the sentinel, with URI P".
//!
//! Cases are tables; each table runs every row and reports all failing rows with their ids.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::h2raw::*;
use common::raw::*;
use common::*;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

// ------------------------------------------------------------------------------------------------
// Fixture (docs/attack-cases.md "Fixture used by every case")

const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef-attacks-only";

/// The document's fixture. Deviations: `corp` verifies HS256 with a static secret instead of a
/// JWKS URL (the JWT cases are section 6's; here a token only has to carry claims), and two
/// extra `auth: none` routes point at a trailer-recording upstream (HDR-20), over HTTP/1.1 and
/// h2c, because `common::Upstream` does not record trailers.
fn config(pki: &TestPki, rec: SocketAddr, trl: SocketAddr, trusted: &str, secure: &str) -> String {
    format!(
        r#"
listeners:
  - name: plain
    bind: 127.0.0.1:0
  - name: tls
    bind: 127.0.0.1:0
    tls:
      cert: {crt}
      key: {key}
      client_auth: {{ mode: optional, ca: {ca} }}
limits: {{ header_timeout: 2s, idle_timeout: 5s, max_body_bytes: 1048576, max_connections: 64 }}
logging: {{ audit: off }}
trusted_proxies: [{trusted}]
upstreams:
  rec:    {{ url: "http://{rec}" }}
  rec_h2: {{ url: "http://{rec}", http2: true }}
  trl:    {{ url: "http://{trl}" }}
  trl_h2: {{ url: "http://{trl}", http2: true }}
authenticators:
  keys: {{ type: api_key }}
  corp:
    type: jwt
    issuer: https://idp.test
    audiences: [https://api.example.com]
    algorithms: [HS256]
    secret: "{JWT_SECRET}"
    leeway: 30s
    claims_to_headers: {{ X-Auth-Role: role }}
  cert: {{ type: mtls }}
routes:
  - {{ name: secure,    match: {{ host: "{secure}", path_prefix: / }}, upstream: rec,
      auth: {{ any_of: [cert], require_client_cert: true }} }}
  - {{ name: admin,     match: {{ path_prefix: /admin }}, upstream: rec,
      auth: {{ any_of: [keys], scopes: [admin] }} }}
  - {{ name: report,    match: {{ path: /internal/report }}, upstream: rec,
      auth: {{ any_of: [keys], scopes: [admin] }} }}
  - {{ name: users-del, match: {{ path_prefix: /api/users, methods: [DELETE] }}, upstream: rec,
      auth: {{ any_of: [corp], scopes: ["delete:users"], require_client_cert: true }} }}
  - {{ name: users,     match: {{ path_prefix: /api/users }}, upstream: rec,
      auth: {{ any_of: [keys, corp], scopes: ["read:users"] }} }}
  - {{ name: trailers-h1, match: {{ path_prefix: /trailers-h1 }}, upstream: trl, auth: none }}
  - {{ name: trailers-h2, match: {{ path_prefix: /trailers-h2 }}, upstream: trl_h2, auth: none }}
  - {{ name: public,    match: {{ path_prefix: / }}, upstream: rec, auth: none }}
"#,
        crt = pki.path("server.crt"),
        key = pki.path("server.key"),
        ca = pki.path("ca.crt"),
    )
}

/// A PKI of our own: `common::Pki`'s server certificate names only localhost, and the TLS cases
/// need `api.example.com`, `mtls.example.com`, `public.example.com` (and wildcards for HDR-12), plus
/// a client certificate whose subject carries CR LF (HDR-22).
struct TestPki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    clients: Vec<(&'static str, CertificateDer<'static>, Vec<u8>)>,
}

impl TestPki {
    fn new() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa,
            Issuer, KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "Attack cases CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca_cert.pem()).unwrap();
        let ca_der = ca_cert.der().clone();
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = [
            "api.example.com",
            "mtls.example.com",
            "public.example.com",
            "*.public.example.com",
            "*.secure.example.com",
            "127.0.0.1",
        ]
        .map(String::from)
        .to_vec();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "api.example.com");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let c = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.path().join("server.crt"), c.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();

        let mut clients = Vec::new();
        for (name, cn) in [
            ("alice", "alice"),
            // HDR-22: a subject that would split a header if copied verbatim
            ("evil", "a\r\nX-Auth-Scopes: admin"),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name
                .push(DnType::CommonName, DnValue::Utf8String(cn.to_owned()));
            p.distinguished_name.push(DnType::OrganizationName, "Acme");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let c = p.signed_by(&key, &issuer).unwrap();
            clients.push((name, c.der().clone(), key.serialize_der()));
        }
        TestPki {
            dir,
            ca: ca_der,
            clients,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn client_config(&self, cert: Option<&str>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let b = rustls::ClientConfig::builder_with_provider(portcullis::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut cfg = match cert {
            Some(name) => {
                let (_, c, k) = self.clients.iter().find(|c| c.0 == name).unwrap();
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(k.clone()));
                b.with_client_auth_cert(vec![c.clone()], key).unwrap()
            }
            None => b.with_no_client_auth(),
        };
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// A second recording upstream (HTTP/1.1 and h2c) that also records request trailers and the
/// body length, for HDR-20.
#[derive(Debug, Clone)]
struct TrlSeen {
    uri: String,
    version: String,
    headers: Vec<(String, String)>,
    trailers: Vec<(String, String)>,
    body_len: usize,
}

struct TrailerUp {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<TrlSeen>>>,
}

impl TrailerUp {
    async fn start() -> TrailerUp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<TrlSeen>>> = Arc::default();
        let rec = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let rec = rec.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let rec = rec.clone();
                        async move {
                            let pairs = |h: &http::HeaderMap| {
                                h.iter()
                                    .map(|(k, v)| {
                                        (
                                            k.to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                        )
                                    })
                                    .collect::<Vec<_>>()
                            };
                            let (parts, mut body) = req.into_parts();
                            let (mut n, mut trailers) = (0usize, Vec::new());
                            while let Some(f) = body.frame().await {
                                let Ok(f) = f else { break };
                                if let Some(d) = f.data_ref() {
                                    n += d.len();
                                } else if let Some(t) = f.trailers_ref() {
                                    trailers.extend(pairs(t));
                                }
                            }
                            rec.lock().unwrap().push(TrlSeen {
                                uri: parts.uri.to_string(),
                                version: format!("{:?}", parts.version),
                                headers: pairs(&parts.headers),
                                trailers,
                                body_len: n,
                            });
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"recorded"),
                            )))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        TrailerUp { addr, seen }
    }

    fn requests(&self) -> Vec<TrlSeen> {
        self.seen.lock().unwrap().clone()
    }
}

struct Ctx {
    gw: Gw,
    up: Upstream,
    trl: TrailerUp,
    pki: TestPki,
    /// Placeholders in the request tables: `{K_ADMIN}`, `{K_READ}`, `{ADMIN_TOKEN}`,
    /// `{ADMIN_ADDR}`, `{ADMIN_PORT}`, `{DEAD_ADDR}`, `{JWT_EVIL}`.
    vars: Vec<(String, String)>,
    admin: SocketAddr,
    /// A listener nobody should ever connect to (CONNECT and absolute-form targets name it);
    /// checked without blocking at the end of a table.
    dead: std::net::TcpListener,
    sentinels: std::sync::atomic::AtomicUsize,
}

async fn start(trusted: &str, secure: &str) -> Ctx {
    let pki = TestPki::new();
    let up = Upstream::start().await;
    let trl = TrailerUp::start().await;
    let gw = Gw::start(&config(&pki, up.addr, trl.addr, trusted, secure)).await;
    let admin: SocketAddr = gw.admin().trim_start_matches("http://").parse().unwrap();
    let http = plain_client();
    let key = |name: &'static str, scopes: Value| {
        let (http, admin) = (http.clone(), gw.admin());
        async move {
            let (st, body) = admin_call(
                &http,
                &admin,
                reqwest::Method::POST,
                "/admin/keys",
                Some(json!({"name": name, "subject": format!("svc-{name}"), "scopes": scopes})),
            )
            .await;
            assert_eq!(st, 201, "{body}");
            body["key"].as_str().unwrap().to_owned()
        }
    };
    let k_admin = key("admin", json!(["admin"])).await;
    let k_read = key("read", json!(["read:users"])).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    dead.set_nonblocking(true).unwrap();
    let now = unix_now();
    let evil_jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({
            "iss": "https://idp.test", "aud": "https://api.example.com", "exp": now + 600,
            "iat": now, "sub": "u\r\nX-Auth-Scopes: admin", "role": "r\nX: y",
            "scope": "read:users"
        }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let vars = vec![
        ("{K_ADMIN}".into(), k_admin),
        ("{K_READ}".into(), k_read),
        ("{ADMIN_TOKEN}".into(), ADMIN_TOKEN.into()),
        ("{ADMIN_ADDR}".into(), admin.to_string()),
        ("{ADMIN_PORT}".into(), admin.port().to_string()),
        ("{DEAD_ADDR}".into(), dead.local_addr().unwrap().to_string()),
        ("{JWT_EVIL}".into(), evil_jwt),
    ];
    Ctx {
        gw,
        up,
        trl,
        pki,
        vars,
        admin,
        dead,
        sentinels: Default::default(),
    }
}

impl Ctx {
    fn fill(&self, req: &[u8]) -> Vec<u8> {
        let mut out = req.to_vec();
        for (k, v) in &self.vars {
            out = replace_bytes(&out, k.as_bytes(), v.as_bytes());
        }
        out
    }

    async fn tls(
        &self,
        sni: Option<&str>,
        cert: Option<&str>,
        alpn: &[&[u8]],
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect(self.gw.addr("tls"))
            .await
            .map_err(|e| e.to_string())?;
        // No SNI: name the server by its IP address (rustls sends no SNI for an IP).
        let name = match sni {
            Some(s) => ServerName::try_from(s.to_owned()).map_err(|e| e.to_string())?,
            None => ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into()),
        };
        tokio_rustls::TlsConnector::from(self.pki.client_config(cert, alpn))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))
    }

    async fn send(&self, via: Via, req: &[u8]) -> Result<Resp, String> {
        match via {
            Via::Plain | Via::Admin => {
                let addr = if matches!(via, Via::Admin) {
                    self.admin
                } else {
                    self.gw.addr("plain")
                };
                let mut s = TcpStream::connect(addr).await.unwrap();
                exchange(&mut s, req, ANSWER_BOUND).await
            }
            Via::Tls { sni, cert } => {
                let mut s = self.tls(sni, cert, &[b"http/1.1"]).await?;
                exchange(&mut s, req, ANSWER_BOUND).await
            }
        }
    }

    /// Sends the sentinel and returns what the upstream received since `before`, without it.
    async fn settle(&self, before: usize) -> Result<Vec<Seen>, String> {
        let n = self
            .sentinels
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = format!("/sentinel/{n}");
        let mut s = TcpStream::connect(self.gw.addr("plain")).await.unwrap();
        let r = exchange(
            &mut s,
            format!("GET {path} HTTP/1.1\r\nHost: sentinel.test\r\n\r\n").as_bytes(),
            ANSWER_BOUND,
        )
        .await;
        if r.as_ref().map_or(0, |r| r.status) != 200 {
            return Err(format!("the sentinel got {}", brief(&r)));
        }
        self.up.wait_for_count(before + 1).await;
        let mut new: Vec<Seen> = self.up.requests().split_off(before);
        match new.pop() {
            Some(last) if last.uri == path => Ok(new),
            other => Err(format!(
                "the sentinel was not the last request upstream: {other:?}"
            )),
        }
    }

    /// Fails when anything connected to the dead listener.
    fn dead_untouched(&self) -> Result<(), String> {
        match self.dead.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Ok((_, peer)) => Err(format!(
                "something connected to {} from {peer}",
                self.dead.local_addr().unwrap()
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The bound on one raw HTTP/1.1 answer (common::raw): it limits a failure, it is no
/// synchronisation (a correct gateway answers at once).
const ANSWER_BOUND: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------------------------------------
// Raw HTTP/2 (prior knowledge or ALPN h2) with common::h2raw: literal HPACK fields, so any
// pseudo-header value can be sent as written; the response's `:status` is decoded from the
// static table or a literal.

enum H2Out {
    Status(u16, Vec<u8>),
    Reset(u32),
    GoAway(u32),
    Closed(String),
}

impl std::fmt::Debug for H2Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            H2Out::Status(s, b) => write!(f, "status {s} {}", String::from_utf8_lossy(b)),
            H2Out::Reset(c) => write!(f, "RST_STREAM({c})"),
            H2Out::GoAway(c) => write!(f, "GOAWAY({c})"),
            H2Out::Closed(n) => write!(f, "closed: {n}"),
        }
    }
}

struct H2<S> {
    s: S,
}

impl<S: AsyncRead + AsyncWrite + Unpin> H2<S> {
    async fn open(mut s: S) -> H2<S> {
        let _ = s.write_all(&client_preface(BASE)).await;
        H2 { s }
    }

    async fn request(&mut self, stream: u32, fields: &[(&str, &str)]) -> H2Out {
        let mut out = Vec::new();
        headers(&mut out, stream, &literal_block(fields), true);
        if let Err(e) = self.s.write_all(&out).await {
            return H2Out::Closed(e.to_string());
        }
        match tokio::time::timeout(Duration::from_secs(10), self.response(stream)).await {
            Ok(o) => o,
            Err(_) => H2Out::Closed("no answer within 10 s".into()),
        }
    }

    async fn response(&mut self, stream: u32) -> H2Out {
        let mut status = None;
        let mut body = Vec::new();
        loop {
            let Some(f) = next_frame(&mut self.s).await else {
                return H2Out::Closed("connection closed".into());
            };
            match f.kind {
                GOAWAY => return H2Out::GoAway(f.error_code().unwrap_or(0)),
                RST_STREAM if f.stream == stream => {
                    return H2Out::Reset(f.error_code().unwrap_or(0))
                }
                HEADERS if f.stream == stream => {
                    status.get_or_insert(f.status().unwrap_or(0));
                }
                DATA if f.stream == stream => body.extend_from_slice(f.data()),
                _ => continue,
            }
            if f.end_stream() {
                return H2Out::Status(status.unwrap_or(0), body);
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Tables

#[derive(Clone, Copy)]
enum Via {
    Plain,
    Admin,
    Tls {
        sni: Option<&'static str>,
        cert: Option<&'static str>,
    },
}

const fn tls(sni: &'static str) -> Via {
    Via::Tls {
        sni: Some(sni),
        cert: None,
    }
}

/// Extra checks on the response and on the one request the upstream received (if any).
type Check = fn(&Resp, Option<&Seen>) -> Result<(), String>;

struct Row {
    id: &'static str,
    via: Via,
    req: &'static [u8],
    /// Accepted statuses.
    status: &'static [u16],
    /// The `error` of the JSON error body.
    error: Option<&'static str>,
    /// A fragment of `error_description` naming the reason (the reason code itself is only in
    /// the audit log).
    why: Option<&'static str>,
    /// On a 200, the upstream received exactly one request with this URI; on anything else (and
    /// when `None`), it received nothing.
    up: Option<&'static str>,
    check: Option<Check>,
}

const fn row(id: &'static str, req: &'static [u8], status: &'static [u16]) -> Row {
    Row {
        id,
        via: Via::Plain,
        req,
        status,
        error: None,
        why: None,
        up: None,
        check: None,
    }
}

impl Row {
    const fn via(self, via: Via) -> Row {
        Row { via, ..self }
    }
    const fn error(self, e: &'static str) -> Row {
        Row {
            error: Some(e),
            ..self
        }
    }
    const fn why(self, w: &'static str) -> Row {
        Row {
            why: Some(w),
            ..self
        }
    }
    const fn up(self, p: &'static str) -> Row {
        Row {
            up: Some(p),
            ..self
        }
    }
    const fn check(self, c: Check) -> Row {
        Row {
            check: Some(c),
            ..self
        }
    }
    /// 400 `invalid_request` with the description fragment `why`.
    const fn bad(self, why: &'static str) -> Row {
        self.error(INVALID).why(why)
    }
}

const INVALID: &str = "invalid_request";
const UNAUTHORIZED: &str = "unauthorized";
const CERT_REQUIRED: &str = "client_certificate_required";
const MISDIRECTED: &str = "misdirected_request";
// error_description fragments per reason (src/normalize.rs, src/proxy.rs)
const ESCAPES_ROOT: &str = "climbs above the root";
const ENCODED_SEPARATOR: &str = "encoded slash, backslash or NUL";
const BACKSLASH: &str = "contains a backslash";
const INVALID_UTF8: &str = "not valid UTF-8";
const CONFUSABLE: &str = "normalizes to a dot";
const DOT_SEGMENT_PARAM: &str = "dot segment with parameters";
const BAD_PERCENT: &str = "invalid percent-encoding";
const NOT_ABSOLUTE: &str = "not an absolute path";
const CONNECT_REFUSED: &str = "CONNECT";
const MULTIPLE_HOST: &str = "more than one Host";
const HOST_MISMATCH: &str = "name different hosts";
const BAD_HOST: &str = "Host";

async fn run_rows(ctx: &Ctx, rows: &[Row], failures: &mut Vec<String>) {
    for r in rows {
        let before = ctx.up.count();
        let req = ctx.fill(r.req);
        let resp = ctx.send(r.via, &req).await;
        let outcome = match ctx.settle(before).await {
            Ok(seen) => verify(r, &resp, &seen),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            failures.push(format!(
                "{}: {e}\n      request: {:?}\n      response: {}",
                r.id,
                String::from_utf8_lossy(&req),
                brief(&resp)
            ));
        }
    }
}

fn verify(r: &Row, answer: &Result<Resp, String>, seen: &[Seen]) -> Result<(), String> {
    // no response is status 0, which no row accepts
    let resp = match answer {
        Ok(resp) if r.status.contains(&resp.status) => resp,
        _ => {
            return Err(format!(
                "status {} (want one of {:?}); upstream saw {:?}",
                answer.as_ref().map_or(0, |a| a.status),
                r.status,
                seen.iter().map(|s| &s.uri).collect::<Vec<_>>()
            ))
        }
    };
    let body = resp.json();
    if let Some(e) = r.error {
        if body["error"] != e {
            return Err(format!("error {} (want {e})", body["error"]));
        }
    }
    if let Some(w) = r.why {
        let d = body["error_description"].as_str().unwrap_or("");
        if !d.contains(w) {
            return Err(format!("error_description {d:?} does not name `{w}`"));
        }
    }
    if resp.status == 401 && resp.header("www-authenticate").is_none() {
        return Err("a 401 without WWW-Authenticate".into());
    }
    match (r.up, resp.status) {
        (Some(p), 200) => {
            if seen.len() != 1 || seen[0].uri != p {
                return Err(format!(
                    "upstream saw {:?} (want exactly [{p:?}])",
                    seen.iter().map(|s| &s.uri).collect::<Vec<_>>()
                ));
            }
        }
        _ => {
            if !seen.is_empty() {
                return Err(format!(
                    "a refused request reached the upstream: {:?}",
                    seen.iter()
                        .map(|s| format!("{} {}", s.method, s.uri))
                        .collect::<Vec<_>>()
                ));
            }
        }
    }
    match r.check {
        Some(c) => c(resp, seen.first()),
        None => Ok(()),
    }
}

fn forwarded(s: Option<&Seen>) -> Result<&Seen, String> {
    s.ok_or_else(|| "the check needs the forwarded request, and there is none".to_owned())
}

fn absent(s: &Seen, names: &[&str]) -> Result<(), String> {
    for n in names {
        if let Some(v) = s.header(n) {
            return Err(format!("the upstream got {n}: {v}"));
        }
    }
    Ok(())
}

fn exactly(s: &Seen, name: &str, want: &[&str]) -> Result<(), String> {
    let got = s.header_all(name);
    if got != want {
        return Err(format!("upstream {name}: {got:?} (want {want:?})"));
    }
    Ok(())
}

fn auth_none(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    exactly(s, "x-auth-method", &["none"])?;
    absent(s, &["x-auth-subject", "x-auth-scopes"])
}

// ------------------------------------------------------------------------------------------------
// 1. Path confusion (PATH)

static PATH_ROWS: &[Row] = &[
    // CVE-2019-9901, https://github.com/envoyproxy/envoy/issues/6435
    row("PATH-01", b"GET /api/users/../../admin/keys HTTP/1.1\r\nHost: api.example.com\r\n\r\n", &[401]).error(UNAUTHORIZED),
    // CVE-2019-9901, https://github.com/envoyproxy/envoy/issues/6435 (same path, with the admin key)
    row("PATH-01/key", b"GET /api/users/../../admin/keys HTTP/1.1\r\nHost: api.example.com\r\nX-Api-Key: {K_ADMIN}\r\n\r\n", &[200]).up("/admin/keys").check(admin_key_used),
    // own (SPEC section 5 "paths escaping the root")
    row("PATH-02", b"GET /../admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(ESCAPES_ROOT),
    // own (SPEC section 5 "paths escaping the root")
    row("PATH-02/b", b"GET /api/../../admin HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(ESCAPES_ROOT),
    // CVE-2025-32431, https://github.com/traefik/traefik/issues/11746 ; GHSA-xf64-8mw2-4gr2, https://github.com/golang/vulndb/issues/5752
    row("PATH-03", b"GET /api/users/%2e%2e/%2E%2e/admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[401]).error(UNAUTHORIZED),
    // CVE-2025-32431, https://github.com/traefik/traefik/issues/11746
    row("PATH-03/b", b"GET /api/users/.%2e/.%2e/admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[401]).error(UNAUTHORIZED),
    // CVE-2025-32431, https://github.com/traefik/traefik/issues/11746
    row("PATH-03/c", b"GET /api/users/%2e./%2e./admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[401]).error(UNAUTHORIZED),
    // GHSA-xf64-8mw2-4gr2, https://github.com/golang/vulndb/issues/5752
    row("PATH-03/d", b"GET /api/users/%2E%2E/%2E%2E/admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[401]).error(UNAUTHORIZED),
    // CVE-2021-31920 / CVE-2021-29492, https://github.com/openshift/openshift-docs/pull/32580 ; https://github.com/dapr/dapr/pull/9805
    row("PATH-04", b"GET /public%2f..%2f..%2fadmin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(ENCODED_SEPARATOR),
    // CVE-2021-31920, https://github.com/GoogleCloudPlatform/esp-v2/pull/511
    row("PATH-04/b", b"GET /public%2F..%2F..%2Fadmin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(ENCODED_SEPARATOR),
    // CVE-2021-31920 (%5C), https://github.com/openshift/openshift-docs/pull/32580
    row("PATH-05", b"GET /public/..%5c..%5cadmin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(ENCODED_SEPARATOR),
    // CVE-2021-31920 (%5C), https://github.com/openshift/openshift-docs/pull/32580
    row("PATH-05/b", b"GET /public/..%5C..%5Cadmin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(ENCODED_SEPARATOR),
    // Istio BASE normalization of `\`, https://github.com/openshift/openshift-docs/pull/32580
    row("PATH-06", b"GET /public\\..\\admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(BACKSLASH),
    // CVE-2021-31920 (`//admin`), https://github.com/istio/istio.io/pull/9961
    row("PATH-07", b"GET //admin//keys HTTP/1.1\r\nHost: a\r\n\r\n", &[401]).error(UNAUTHORIZED),
    // https://github.com/projectcalico/calico/pull/12531 ; CVE-2007-1860, https://github.com/danielmiessler/SecLists/pull/67
    // The document's preferred outcome (being implemented): `%25` + hex of `.`, `/` or `\` is a 400.
    row("PATH-08", b"GET /%252e%252e/admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).error(INVALID),
    // https://github.com/projectcalico/calico/pull/12531 (`%252f`)
    row("PATH-08/b", b"GET /public/%252f..%252fadmin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).error(INVALID),
    // overlong UTF-8, https://github.com/coreruleset/coreruleset/issues/4189 , https://github.com/coreruleset/coreruleset/issues/4612
    row("PATH-09", b"GET /public/%c0%ae%c0%ae/admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(INVALID_UTF8),
    // overlong UTF-8 as raw bytes, https://github.com/coreruleset/coreruleset/issues/4189
    row("PATH-09/raw", b"GET /public/\xc0\xae\xc0\xae/admin HTTP/1.1\r\nHost: a\r\n\r\n", &[400]),
    // own (SPEC section 5 NFKC rule): full-width dots
    row("PATH-10", b"GET /public/%EF%BC%8E%EF%BC%8E/admin HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(CONFUSABLE),
    // own (SPEC section 5 NFKC rule): U+2025 two dot leader
    row("PATH-10/b", b"GET /public/%E2%80%A5/admin HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(CONFUSABLE),
    // own (SPEC section 5 NFKC rule): full-width solidus
    row("PATH-10/c", b"GET /public%EF%BC%8Fadmin HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(CONFUSABLE),
    // own: full-width `％２ｅ％２ｅ` (NFKC `%2e%2e`); being implemented, so only 400 is asserted
    row("PATH-11", b"GET /public/%EF%BC%85%EF%BC%92%EF%BD%85%EF%BC%85%EF%BC%92%EF%BD%85/admin HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).error(INVALID),
    // https://github.com/istio/istio/issues/27409 ; https://github.com/wso2/product-apim/issues/8415 ; https://github.com/istio/istio/pull/61478
    row("PATH-12", b"GET /public/..;/admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(DOT_SEGMENT_PARAM),
    // https://github.com/istio/istio/issues/27409
    row("PATH-12/b", b"GET /public/%2e%2e;x/admin HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(DOT_SEGMENT_PARAM),
    // https://github.com/wso2/product-apim/issues/8415
    row("PATH-12/c", b"GET /public/..%3b/admin HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(DOT_SEGMENT_PARAM),
    // https://github.com/istio/istio/pull/61478
    row("PATH-12/d", b"GET /public/.;/admin HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(DOT_SEGMENT_PARAM),
    // https://github.com/nginx/nginx/issues/556 ; https://github.com/Jarrettluo/all-docs/issues/30 ; GHSA-gm3x-23wp-hc2c, https://github.com/golang/vulndb/issues/4206
    // Either 400 or routed as `/admin/keys` (401); never under `public`.
    row("PATH-13", b"GET /admin;x=y/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400, 401]),
    // https://github.com/nginx/nginx/issues/556
    row("PATH-13/b", b"GET /admin;/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400, 401]),
    // https://github.com/Jarrettluo/all-docs/issues/30 (`/;login` on Spring)
    row("PATH-13/c", b"GET /;x/admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400, 401]),
    // https://github.com/nginx/nginx/issues/556 (WildFly/WebLogic end the path at `;`)
    row("PATH-13/d", b"GET /admin/keys;jsessionid=1 HTTP/1.1\r\nHost: a\r\n\r\n", &[400, 401]),
    // GHSA-gm3x-23wp-hc2c, https://github.com/golang/vulndb/issues/4206
    row("PATH-14", b"GET /admin%3bx/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[200]).up("/admin%3Bx/keys").check(auth_none),
    // https://github.com/GoogleCloudPlatform/nodejs-docs-samples/issues/333 ; https://github.com/jkaninda/goma-gateway/pull/595 ; https://github.com/getodk/central/issues/1263 ; CVE-2026-27587, https://github.com/diennea/carapaceproxy/pull/614
    // Config-dependent: the safe minimum asserted is "a 401, or forwarded byte-identical under
    // `public`" (never case-folded, never decoded); a case-insensitive upstream still serves it.
    row("PATH-15", b"GET /ADMIN/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 401]).up("/ADMIN/keys").check(auth_none_if_forwarded),
    // https://github.com/GoogleCloudPlatform/nodejs-docs-samples/issues/333
    row("PATH-15/b", b"GET /Admin/Keys HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 401]).up("/Admin/Keys").check(auth_none_if_forwarded),
    // https://github.com/spring-projects/spring-framework/issues/28552 ; https://github.com/jhipster/generator-jhipster/issues/13439 ; https://github.com/shuaicj/zuul-auth-example/issues/7
    // Being implemented: an exact route also takes its path with one trailing slash.
    row("PATH-16", b"GET /internal/report/ HTTP/1.1\r\nHost: a\r\n\r\n", &[401]).error(UNAUTHORIZED),
    // own (Windows/IIS trim trailing dots and spaces). Config-dependent (an opt-in rule for
    // Windows upstreams): the minimum asserted is a 400, or forwarded byte-identical.
    row("PATH-17", b"GET /admin./keys HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 400]).up("/admin./keys").check(auth_none_if_forwarded),
    // own (Windows/IIS)
    row("PATH-17/b", b"GET /admin%20/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 400]).up("/admin%20/keys").check(auth_none_if_forwarded),
    // own (Windows/IIS)
    row("PATH-17/c", b"GET /public/..%20/admin HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 400]).up("/public/..%20/admin").check(auth_none_if_forwarded),
    // own (Windows/IIS)
    row("PATH-17/d", b"GET /public/.../admin HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 400]).up("/public/.../admin").check(auth_none_if_forwarded),
    // CVE-2021-39156 / CVE-2021-32779, https://github.com/istio/istio.io/pull/10254 ; CVE-2023-45539, https://github.com/openshift/router/pull/617 ; GHSA-pxq7-h93f-9jrg, https://github.com/golang/vulndb/issues/5559
    // 400, or the fragment cut consistently: the upstream sees `/public`, never the `#`.
    row("PATH-18", b"GET /public#/../admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 400]).up("/public"),
    // CVE-2023-45539, https://github.com/openshift/router/pull/617
    row("PATH-18/b", b"GET /admin/keys#x HTTP/1.1\r\nHost: a\r\n\r\n", &[400, 401]),
    // GHSA-7rh7-c77v-6434, https://github.com/golang/vulndb/issues/3833 ; CVE-2020-8595, https://github.com/golang/vulndb/issues/2306
    row("PATH-19", b"GET /public?/../admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[200]).up("/public?/../admin/keys").check(auth_none),
    // CVE-2020-8595, https://github.com/golang/vulndb/issues/2306
    row("PATH-19/b", b"GET /internal/report?x HTTP/1.1\r\nHost: a\r\n\r\n", &[401]).error(UNAUTHORIZED),
    // https://github.com/diennea/carapaceproxy/pull/614 ; https://github.com/coder/httpjail/issues/57
    row("PATH-20", b"GET http://api.example.com/public/../admin/keys HTTP/1.1\r\nHost: api.example.com\r\n\r\n", &[401]).error(UNAUTHORIZED),
    // https://github.com/coder/httpjail/issues/57 (a permitted absolute-form request goes upstream in origin-form)
    row("PATH-20/b", b"GET http://api.example.com/public/x?q=1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n", &[200]).up("/public/x?q=1").check(auth_none),
    // own; https://github.com/coder/httpjail/issues/57
    row("PATH-21", b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(NOT_ABSOLUTE),
    // own; https://github.com/coder/httpjail/issues/57 (no connection to the named target: see dead_untouched)
    row("PATH-21/b", b"CONNECT {DEAD_ADDR} HTTP/1.1\r\nHost: {DEAD_ADDR}\r\n\r\n", &[400]).bad(CONNECT_REFUSED),
    // GHSA-gm3x-23wp-hc2c, https://github.com/golang/vulndb/issues/4206 ; https://github.com/dapr/dapr/pull/9805
    row("PATH-22", b"GET /admin%00/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(ENCODED_SEPARATOR),
    // https://github.com/dapr/dapr/pull/9805 (raw NUL: a parser error)
    row("PATH-22/b", b"GET /admin\x00/keys HTTP/1.1\r\nHost: a\r\n\r\n", &[400]),
    // GHSA-gm3x-23wp-hc2c, https://github.com/golang/vulndb/issues/4206
    row("PATH-22/c", b"GET /admin%zz HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(BAD_PERCENT),
    // IIS `%u`, https://github.com/golang/vulndb/issues/4206
    row("PATH-22/d", b"GET /%u002e%u002e/admin HTTP/1.1\r\nHost: a\r\n\r\n", &[400]).bad(BAD_PERCENT),
    // CVE-2022-22978, https://github.com/c3rb3ru5d3d53c/signatures/issues/19
    row("PATH-23", b"GET /public/%0d%0aX-Auth-Subject:%20admin HTTP/1.1\r\nHost: a\r\n\r\n", &[200]).up("/public/%0D%0AX-Auth-Subject:%20admin").check(auth_none),
];

fn admin_key_used(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    exactly(s, "x-auth-method", &["api_key"])?;
    exactly(s, "x-auth-scopes", &["admin"])?;
    absent(s, &["x-api-key"])
}

fn auth_none_if_forwarded(r: &Resp, s: Option<&Seen>) -> Result<(), String> {
    match s {
        Some(_) => auth_none(r, s),
        None => Ok(()),
    }
}

/// h2 rows: the request's header fields in order; accepted outcomes.
struct H2Row {
    id: &'static str,
    /// None: h2c prior knowledge on `plain`; Some(sni): ALPN h2 on `tls`.
    sni: Option<&'static str>,
    fields: &'static [(&'static str, &'static str)],
    /// Accepted statuses; `RESET` stands for RST_STREAM or GOAWAY with PROTOCOL_ERROR.
    status: &'static [u16],
    up: Option<&'static str>,
}

const RESET: u16 = 1;

static H2C_ROWS: &[H2Row] = &[
    // own (h2 path)
    H2Row {
        id: "PATH-24",
        sni: None,
        fields: &[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "a"),
            (":path", "/public/../admin/keys"),
        ],
        status: &[401],
        up: None,
    },
    // own (h2 path): no leading slash
    H2Row {
        id: "PATH-24/b",
        sni: None,
        fields: &[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "a"),
            (":path", "admin"),
        ],
        status: &[RESET, 400],
        up: None,
    },
    // own; https://github.com/coder/httpjail/issues/57 (h2 extended CONNECT)
    H2Row {
        id: "PATH-21/h2",
        sni: None,
        fields: &[
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "http"),
            (":authority", "a"),
            (":path", "/public"),
        ],
        status: &[RESET, 400],
        up: None,
    },
    // own (RFC 9113 section 8.3.1)
    H2Row {
        id: "HDR-08",
        sni: None,
        fields: &[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "api.example.com"),
            (":path", "/public"),
            ("host", "mtls.example.com"),
        ],
        status: &[400],
        up: None,
    },
    // control: the same stream without the conflicting `host` passes
    H2Row {
        id: "HDR-08/ctl",
        sni: None,
        fields: &[
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "api.example.com"),
            (":path", "/public"),
        ],
        status: &[200],
        up: Some("/public"),
    },
];

async fn run_h2_rows(ctx: &Ctx, rows: &[H2Row], failures: &mut Vec<String>) {
    for r in rows {
        let before = ctx.up.count();
        let out = match r.sni {
            None => {
                let tcp = TcpStream::connect(ctx.gw.addr("plain")).await.unwrap();
                H2::open(tcp).await.request(1, r.fields).await
            }
            Some(sni) => match ctx.tls(Some(sni), None, &[b"h2"]).await {
                Ok(s) => H2::open(s).await.request(1, r.fields).await,
                Err(e) => H2Out::Closed(e),
            },
        };
        eprintln!("{}: {out:?}", r.id);
        let status = match out {
            H2Out::Status(s, _) => s,
            H2Out::Reset(PROTOCOL_ERROR) | H2Out::GoAway(PROTOCOL_ERROR) => RESET,
            _ => 0,
        };
        let res = match ctx.settle(before).await {
            Err(e) => Err(e),
            Ok(_) if !r.status.contains(&status) => {
                Err(format!("{out:?} (want one of {:?})", r.status))
            }
            Ok(seen) => match (r.up, status) {
                (Some(p), 200) if seen.len() == 1 && seen[0].uri == p => Ok(()),
                (None, _) | (Some(_), 1..=199 | 201..) if seen.is_empty() => Ok(()),
                _ => Err(format!(
                    "{out:?}; upstream saw {:?}",
                    seen.iter().map(|s| &s.uri).collect::<Vec<_>>()
                )),
            },
        };
        if let Err(e) = res {
            failures.push(format!("{}: {e}\n      fields: {:?}", r.id, r.fields));
        }
    }
}

fn report(table: &str, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{table}: {} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn path_confusion() {
    let ctx = start("", "mtls.example.com").await;
    let mut failures = Vec::new();
    run_rows(&ctx, PATH_ROWS, &mut failures).await;
    run_h2_rows(&ctx, H2C_ROWS, &mut failures).await;
    if let Err(e) = ctx.dead_untouched() {
        failures.push(format!("PATH-21/b: {e}"));
    }
    report("PATH (and HDR-08, h2c)", failures);
}

// ------------------------------------------------------------------------------------------------
// 2. Header trust (HDR)

static HDR_PLAIN_ROWS: &[Row] = &[
    // https://github.com/oauth2-proxy/oauth2-proxy/pull/1065 ; https://github.com/vibed-project/vibeD/issues/44
    row("HDR-01", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nX-Auth-Subject: admin\r\nX-Auth-Scopes: admin\r\nX-Auth-Method: api_key\r\nX-Auth-Role: admin\r\nX-Client-Cert-Subject: CN=root\r\n\r\n", &[200]).up("/public").check(hdr01),
    // https://github.com/goauthentik/authentik/pull/17650 ; https://github.com/php/frankenphp/pull/2460 ; https://github.com/cwaldbieser/jhub_remote_user_authenticator/issues/6
    row("HDR-02", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nX_Auth_Subject: admin\r\nx.auth.subject: admin\r\nX-AUTH-SCOPES: admin\r\nx-auth_scopes: admin\r\nX_Client_Cert_Sha256: 00\r\nX-Forwarded_For: 1.2.3.4\r\n\r\n", &[200]).up("/public").check(hdr02),
    // CVE-2019-18802, https://github.com/golang/vulndb/issues/2248 (space before the colon)
    row("HDR-03", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nX-Auth-Subject : admin\r\n\r\n", &[400]),
    // https://github.com/ruby/webrick/pull/205 (obs-fold)
    row("HDR-03/b", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nX-Foo: a\r\n X-Auth-Subject: admin\r\n\r\n", &[400]),
    // CVE-2019-18802, https://github.com/golang/vulndb/issues/2248 (tab before the colon)
    row("HDR-03/c", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nX-Auth-Subject\t: admin\r\n\r\n", &[400]),
    // CVE-2024-45410 / GHSA-62c8-mh53-4cqv, https://github.com/golang/vulndb/issues/3143 ; CVE-2021-32813, https://github.com/NixOS/nixpkgs/issues/133978 ; https://github.com/dadrus/heimdall/issues/653
    row("HDR-04", b"GET /api/users HTTP/1.1\r\nHost: api.example.com\r\nX-Api-Key: {K_READ}\r\nConnection: close, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, X-Real-IP, X-Request-Id, X-Auth-Method, X-Auth-Subject\r\n\r\n", &[200]).up("/api/users").check(hdr04),
    // https://github.com/zoxy-io/zoxy/issues/244 (the recorder's /upload answers the byte count it read)
    row("HDR-05", b"POST /upload HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Host\r\nContent-Length: 5\r\n\r\nhello", &[200]).up("/upload").check(hdr05),
    // https://github.com/jetty/jetty.project/issues/8716
    row("HDR-06", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nHost: mtls.example.com\r\n\r\n", &[400]).bad(MULTIPLE_HOST),
    // https://github.com/diennea/carapaceproxy/pull/614 ; RFC 9112 section 3.2.2
    row("HDR-07", b"GET http://public.example.com/admin/keys HTTP/1.1\r\nHost: api.example.com\r\n\r\n", &[400]).bad(HOST_MISMATCH),
    // GHSA-7x63-xv5r-3p2x, https://github.com/oauth2-proxy/oauth2-proxy/pull/3478 ; https://github.com/home-assistant/core/issues/14345 ; https://github.com/AndrewBelt/hack.chat/issues/15
    row("HDR-15", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: 10.0.0.1, 1.2.3.4\r\nX-Real-IP: 10.0.0.1\r\nTrue-Client-IP: 10.0.0.1\r\n\r\n", &[200]).up("/public").check(hdr15),
    // GHSA-7x63-xv5r-3p2x, https://github.com/golang/vulndb/issues/5236 ; CVE-2024-52003, https://github.com/golang/vulndb/issues/3299 ; https://github.com/oauth2-proxy/oauth2-proxy/issues/1970 ; https://github.com/IABTechLab/trusted-server/issues/409
    row("HDR-17", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nX-Original-URL: /admin/keys\r\nX-Rewrite-URL: /admin\r\nX-Forwarded-Uri: /admin\r\nX-Forwarded-Prefix: /evil\r\nX-Forwarded-Host: evil.test\r\nForwarded: for=1.2.3.4;host=evil.test\r\nX-Envoy-Original-Path: /admin\r\nX-Forwarded-Client-Cert: Hash=00\r\nX-SSL-Client-Verify: SUCCESS\r\n\r\n", &[200]).up("/public").check(hdr17),
    // https://github.com/echoCTF/echoCTF.RED/issues/431 ; https://github.com/MAIF/otoroshi/issues/114 ; https://github.com/OWASP/wstg/pull/447 ; https://github.com/gorilla/mux/pull/57
    row("HDR-18", b"GET /api/users/7 HTTP/1.1\r\nHost: a\r\nX-Api-Key: {K_READ}\r\nX-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\n\r\n", &[200]).up("/api/users/7").check(hdr18),
    // https://github.com/gorilla/mux/pull/57 (`_method` in the query, as Rails, Laravel and
    // Express method-override read it): removed like the override headers, in plain and
    // percent-encoded spellings, other parameters kept; the method stays POST.
    row("HDR-18/query", b"POST /api/users/7?a=1&_method=DELETE&b=2 HTTP/1.1\r\nHost: a\r\nX-Api-Key: {K_READ}\r\nContent-Length: 0\r\n\r\n", &[200]).up("/api/users/7?a=1&b=2").check(method_post),
    row("HDR-18/query-enc", b"POST /api/users/7?%5Fmethod=DELETE HTTP/1.1\r\nHost: a\r\nX-Api-Key: {K_READ}\r\nContent-Length: 0\r\n\r\n", &[200]).up("/api/users/7").check(method_post),
    // https://github.com/MAIF/otoroshi/issues/114 (control: a real DELETE meets the users-del rules)
    row("HDR-18/ctl", b"DELETE /api/users/7 HTTP/1.1\r\nHost: a\r\nX-Api-Key: {K_READ}\r\n\r\n", &[401]).error(UNAUTHORIZED),
    // https://github.com/KathanP19/HowToHunt/pull/72 ; https://github.com/jgamblin/BurpTest/issues/27 ; https://github.com/Kong/kong/pull/246 ; https://github.com/envoyproxy/envoy/pull/4046
    row("HDR-19", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nX-Host: evil\r\nX-Forwarded-Server: evil\r\nX-HTTP-Host-Override: evil\r\nX-Original-Host: evil\r\nX-Original-URI: /admin\r\nX-Original-Remote-Addr: 127.0.0.1\r\nX-Remote-IP: 127.0.0.1\r\nX-Remote-Addr: 127.0.0.1\r\nX-Originating-IP: 127.0.0.1\r\nCF-Connecting-IP: 127.0.0.1\r\nFastly-Client-IP: 127.0.0.1\r\nX-Envoy-Internal: true\r\nX-Envoy-Original-Dst-Host: 10.0.0.9:80\r\n\r\n", &[200]).up("/public").check(hdr19),
    // CVE-2019-9900, https://github.com/envoyproxy/envoy/issues/6434 (NUL in a value)
    row("HDR-21", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nX-Foo: a\x00b\r\n\r\n", &[400]),
    // CVE-2019-9900, https://github.com/envoyproxy/envoy/issues/6434 (NUL in a name)
    row("HDR-21/b", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nX\x00Auth: 1\r\n\r\n", &[400]),
    // CVE-2023-27493, https://github.com/golang/vulndb/issues/1694 (JWT claims with CR LF)
    row("HDR-22/jwt", b"GET /api/users/1 HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {JWT_EVIL}\r\n\r\n", &[200]).up("/api/users/1").check(hdr22_jwt),
];

const OWN_XFF: &[&str] = &["127.0.0.1"];

fn hdr01(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    exactly(s, "x-auth-method", &["none"])?;
    absent(
        s,
        &[
            "x-auth-subject",
            "x-auth-scopes",
            "x-auth-role",
            "x-client-cert-subject",
        ],
    )
}

fn hdr02(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    for (k, v) in &s.headers {
        let c = k.to_ascii_lowercase().replace(['_', '.'], "-");
        let ours =
            (k == "x-auth-method" && v == "none") || (k == "x-forwarded-for" && v == "127.0.0.1");
        if (c.starts_with("x-auth-") || c.starts_with("x-client-cert-") || c == "x-forwarded-for")
            && !ours
        {
            return Err(format!("the upstream got {k}: {v}"));
        }
    }
    exactly(s, "x-forwarded-for", OWN_XFF)
}

fn hdr04(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    exactly(s, "x-forwarded-for", OWN_XFF)?;
    exactly(s, "x-forwarded-proto", &["http"])?;
    exactly(s, "x-forwarded-host", &["api.example.com"])?;
    exactly(s, "x-real-ip", &["127.0.0.1"])?;
    exactly(s, "x-auth-method", &["api_key"])?;
    exactly(s, "x-auth-subject", &["svc-read"])?;
    if s.header_all("x-request-id").len() != 1 {
        return Err(format!("x-request-id: {:?}", s.header_all("x-request-id")));
    }
    Ok(())
}

fn hdr05(r: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    if r.json()["bytes"] != 5 {
        return Err(format!(
            "the upstream read {} body bytes (want 5)",
            r.json()["bytes"]
        ));
    }
    exactly(s, "host", &["a"])?;
    let cl = s.header_all("content-length");
    let te = s.header_all("transfer-encoding");
    let framed = (cl == ["5"] && te.is_empty()) || (cl.is_empty() && te == ["chunked"]);
    if !framed {
        return Err(format!(
            "upstream framing: content-length {cl:?}, transfer-encoding {te:?}"
        ));
    }
    Ok(())
}

fn hdr15(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    exactly(s, "x-forwarded-for", OWN_XFF)?;
    exactly(s, "x-real-ip", &["127.0.0.1"])?;
    absent(s, &["true-client-ip"])
}

fn hdr17(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    absent(
        s,
        &[
            "x-original-url",
            "x-rewrite-url",
            "x-forwarded-uri",
            "x-forwarded-prefix",
            "forwarded",
            "x-envoy-original-path",
            "x-forwarded-client-cert",
            "x-ssl-client-verify",
        ],
    )?;
    exactly(s, "x-forwarded-host", &["api.example.com"])?;
    exactly(s, "x-forwarded-proto", &["http"])
}

fn hdr18(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    absent(
        s,
        &[
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
        ],
    )?;
    if s.method != "GET" {
        return Err(format!("the upstream got method {}", s.method));
    }
    Ok(())
}

fn method_post(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    if s.method != "POST" {
        return Err(format!("the upstream got method {}", s.method));
    }
    Ok(())
}

fn hdr19(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    absent(
        s,
        &[
            "x-host",
            "x-forwarded-server",
            "x-http-host-override",
            "x-original-host",
            "x-original-uri",
            "x-original-remote-addr",
            "x-remote-ip",
            "x-remote-addr",
            "x-originating-ip",
            "cf-connecting-ip",
            "fastly-client-ip",
            "x-envoy-internal",
            "x-envoy-original-dst-host",
        ],
    )
}

fn no_control(s: &Seen, name: &str) -> Result<(), String> {
    let all = s.header_all(name);
    if all.len() != 1 || all[0].chars().any(char::is_control) {
        return Err(format!(
            "upstream {name}: {all:?} (want one value, no control characters)"
        ));
    }
    Ok(())
}

fn hdr22_jwt(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    exactly(s, "x-auth-method", &["jwt"])?;
    no_control(s, "x-auth-subject")?;
    if !s.header("x-auth-subject").unwrap_or("").starts_with('u') {
        return Err(format!("x-auth-subject {:?}", s.header("x-auth-subject")));
    }
    exactly(s, "x-auth-scopes", &["read:users"])?;
    absent(s, &["x-auth-role", "x"])
}

fn alice(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    exactly(s, "x-auth-method", &["mtls"])?;
    exactly(s, "x-forwarded-proto", &["https"])?;
    if !s
        .header("x-client-cert-subject")
        .unwrap_or("")
        .contains("alice")
    {
        return Err(format!(
            "x-client-cert-subject {:?}",
            s.header("x-client-cert-subject")
        ));
    }
    Ok(())
}

#[tokio::test]
async fn header_trust_plain() {
    let ctx = start("", "mtls.example.com").await;
    let mut failures = Vec::new();
    run_rows(&ctx, HDR_PLAIN_ROWS, &mut failures).await;
    report("HDR (plain)", failures);
}

static HDR_TLS_ROWS: &[Row] = &[
    // CVE-2021-39155 / GHSA-7774-7vr3-cc8j, https://github.com/github/advisory-database/pull/2251 ; CVE-2026-27588, https://github.com/dfds/infrastructure-modules/pull/2475 ; CVE-2019-18802, https://github.com/golang/vulndb/issues/2248
    row(
        "HDR-09",
        b"GET /x HTTP/1.1\r\nHost: MTLS.Example.COM.:443 \r\n\r\n",
        &[403],
    )
    .via(tls("mtls.example.com"))
    .error(CERT_REQUIRED),
    // own
    row(
        "HDR-10",
        b"GET /x HTTP/1.1\r\nHost: x@mtls.example.com\r\n\r\n",
        &[400],
    )
    .via(tls("public.example.com"))
    .bad(BAD_HOST),
    // CVE-2019-20894, https://github.com/traefik/traefik/pull/7008 ; https://github.com/cloudfoundry/haproxy-boshrelease/pull/218 ; https://github.com/nginx/nginx-gateway-fabric/pull/170 ; https://github.com/nginx/nginx.org/pull/302
    row(
        "HDR-11",
        b"GET /x HTTP/1.1\r\nHost: mtls.example.com\r\n\r\n",
        &[421],
    )
    .via(tls("public.example.com"))
    .error(MISDIRECTED),
    // CVE-2019-20894, https://github.com/traefik/traefik/pull/7008 (with a client certificate)
    row(
        "HDR-11/cert",
        b"GET /x HTTP/1.1\r\nHost: mtls.example.com\r\n\r\n",
        &[421],
    )
    .via(Via::Tls {
        sni: Some("public.example.com"),
        cert: Some("alice"),
    })
    .error(MISDIRECTED),
    // control for HDR-09/11/14: SNI and Host agree and a certificate is presented
    row(
        "HDR-11/ctl",
        b"GET /x HTTP/1.1\r\nHost: mtls.example.com\r\n\r\n",
        &[200],
    )
    .via(Via::Tls {
        sni: Some("mtls.example.com"),
        cert: Some("alice"),
    })
    .up("/x")
    .check(alice),
    // https://github.com/nginx/nginx.org/pull/302 ; https://github.com/h2o/h2o/issues/2404
    // Without SNI there is nothing to compare (no 421), but the route still wants a certificate.
    row(
        "HDR-14",
        b"GET /x HTTP/1.1\r\nHost: mtls.example.com\r\n\r\n",
        &[403],
    )
    .via(Via::Tls {
        sni: None,
        cert: None,
    })
    .error(CERT_REQUIRED),
    // CVE-2023-27493, https://github.com/golang/vulndb/issues/1694 (certificate subject with CR LF):
    // refused, never forwarded with the characters replaced (SPEC section 5)
    row(
        "HDR-22/cert",
        b"GET /x HTTP/1.1\r\nHost: mtls.example.com\r\n\r\n",
        &[403],
    )
    .via(Via::Tls {
        sni: Some("mtls.example.com"),
        cert: Some("evil"),
    })
    .error("client_certificate_invalid"),
];

static HDR_TLS_H2_ROWS: &[H2Row] = &[
    // own (HDR-10 over h2)
    H2Row {
        id: "HDR-10/h2",
        sni: Some("public.example.com"),
        fields: &[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "x@mtls.example.com"),
            (":path", "/x"),
        ],
        status: &[RESET, 400],
        up: None,
    },
];

#[tokio::test]
async fn header_trust_tls() {
    let ctx = start("", "mtls.example.com").await;
    let mut failures = Vec::new();
    run_rows(&ctx, HDR_TLS_ROWS, &mut failures).await;
    run_h2_rows(&ctx, HDR_TLS_H2_ROWS, &mut failures).await;

    // HDR-13: https://github.com/nginx/nginx.org/pull/302 ; https://github.com/traefik/traefik/issues/13326
    // One h2 connection (SNI api.example.com): stream 1 passes, stream 3 names another host and
    // gets 421, stream 5 shows the connection is still usable.
    let before = ctx.up.count();
    let outcome = match ctx.tls(Some("api.example.com"), None, &[b"h2"]).await {
        Err(e) => Err(e),
        Ok(s) => {
            let mut h2 = H2::open(s).await;
            let f = |auth: &'static str, path: &'static str| {
                [
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":authority", auth),
                    (":path", path),
                ]
            };
            let one = h2.request(1, &f("api.example.com", "/public")).await;
            let three = h2.request(3, &f("mtls.example.com", "/x")).await;
            let five = h2.request(5, &f("api.example.com", "/public/again")).await;
            match (&one, &three, &five) {
                (H2Out::Status(200, _), H2Out::Status(421, _), H2Out::Status(200, _)) => Ok(()),
                _ => Err(format!("streams 1/3/5: {one:?} / {three:?} / {five:?}")),
            }
        }
    };
    let seen = ctx.settle(before).await;
    let uris = seen.map(|s| s.into_iter().map(|s| s.uri).collect::<Vec<_>>());
    if let Err(e) = outcome {
        failures.push(format!("HDR-13: {e}"));
    }
    if uris != Ok(vec!["/public".to_owned(), "/public/again".to_owned()]) {
        failures.push(format!(
            "HDR-13: upstream saw {uris:?} (want /public, /public/again)"
        ));
    }
    report("HDR (TLS)", failures);
}

static HDR12_ROWS: &[Row] = &[
    // GHSA-5r4w-85f3-pw66, https://github.com/golang/vulndb/issues/5152 (route `secure` on `*.secure.example.com`)
    row(
        "HDR-12",
        b"GET /x HTTP/1.1\r\nHost: b.secure.example.com\r\n\r\n",
        &[421],
    )
    .via(tls("a.public.example.com"))
    .error(MISDIRECTED),
    // control: the wildcard route matches when SNI and Host agree, and wants a certificate
    row(
        "HDR-12/ctl",
        b"GET /x HTTP/1.1\r\nHost: b.secure.example.com\r\n\r\n",
        &[403],
    )
    .via(tls("b.secure.example.com"))
    .error(CERT_REQUIRED),
];

#[tokio::test]
async fn header_trust_wildcard_sni() {
    let ctx = start("", "*.secure.example.com").await;
    let mut failures = Vec::new();
    run_rows(&ctx, HDR12_ROWS, &mut failures).await;
    report("HDR-12", failures);
}

static HDR16_ROWS: &[Row] = &[
    // https://github.com/oauth2-proxy/oauth2-proxy/pull/3478 (right to left, skipping trusted hops)
    row("HDR-16", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: 6.6.6.6, 203.0.113.9\r\n\r\n", &[200]).up("/public").check(hdr16),
    // https://github.com/oauth2-proxy/oauth2-proxy/pull/3478 (an unparsable entry: client = peer)
    row("HDR-16/garbage", b"GET /public HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: garbage\r\n\r\n", &[200]).up("/public").check(hdr16_garbage),
];

fn hdr16(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    exactly(s, "x-forwarded-for", &["6.6.6.6, 203.0.113.9, 127.0.0.1"])?;
    exactly(s, "x-real-ip", &["203.0.113.9"])
}

fn hdr16_garbage(_: &Resp, s: Option<&Seen>) -> Result<(), String> {
    let s = forwarded(s)?;
    exactly(s, "x-real-ip", &["127.0.0.1"])
}

#[tokio::test]
async fn header_trust_trusted_proxy() {
    let ctx = start("127.0.0.1/32", "mtls.example.com").await;
    let mut failures = Vec::new();
    run_rows(&ctx, HDR16_ROWS, &mut failures).await;
    report("HDR-16", failures);
}

/// HDR-20: zoxy-io/zoxy#244 and #263 https://github.com/zoxy-io/zoxy/pull/263 ;
/// https://github.com/tempesta-tech/tempesta/issues/678 ; CVE-2013-5704,
/// https://github.com/httpwg/http-core/issues/16 ; https://github.com/apache/trafficserver/pull/11603
/// Trailers naming identity, forwarding and framing headers, towards an HTTP/1.1 and an h2c
/// upstream: none of them may reach the upstream, as a header or as a trailer.
#[tokio::test]
async fn header_trust_trailers() {
    let ctx = start("", "mtls.example.com").await;
    let mut failures = Vec::new();
    for (id, path, version) in [
        ("HDR-20/h1", "/trailers-h1", "HTTP/1.1"),
        ("HDR-20/h2", "/trailers-h2", "HTTP/2.0"),
    ] {
        let before = ctx.trl.requests().len();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Auth-Subject\r\n\r\n5\r\nhello\r\n0\r\nX-Auth-Subject: admin\r\nX-Forwarded-For: 1.2.3.4\r\nContent-Length: 100\r\n\r\n"
        );
        let mut s = TcpStream::connect(ctx.gw.addr("plain")).await.unwrap();
        let resp = exchange(&mut s, req.as_bytes(), ANSWER_BOUND).await;
        let seen: Vec<TrlSeen> = ctx.trl.requests().split_off(before);
        let forbidden = |name: &str| {
            let c = name.to_ascii_lowercase().replace(['_', '.'], "-");
            c.starts_with("x-auth-")
                || c.starts_with("x-client-cert-")
                || [
                    "x-forwarded-for",
                    "x-real-ip",
                    "forwarded",
                    "content-length",
                    "transfer-encoding",
                    "host",
                    "trailer",
                    "connection",
                ]
                .contains(&c.as_str())
        };
        let res = match (resp.as_ref().map_or(0, |r| r.status), seen.as_slice()) {
            (400, []) => Ok(()),
            (200, [one]) => {
                // an h2 request is recorded with its scheme and authority; compare the path
                let up_path = one
                    .uri
                    .parse::<http::Uri>()
                    .ok()
                    .map(|u| u.path().to_owned());
                if up_path.as_deref() != Some(path) || one.version != version || one.body_len != 5 {
                    Err(format!("upstream saw {one:?}"))
                } else if let Some(t) = one.trailers.iter().find(|(k, _)| forbidden(k)) {
                    Err(format!("a forbidden trailer reached the upstream: {t:?}"))
                } else if let Some(h) = one.headers.iter().find(|(k, v)| {
                    (k.starts_with("x-auth-") && k != "x-auth-method") || v == "1.2.3.4"
                }) {
                    Err(format!(
                        "a trailer value reached the upstream as a header: {h:?}"
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Err(format!("response {}; upstream saw {seen:?}", brief(&resp))),
        };
        if let Err(e) = res {
            failures.push(format!("{id}: {e}"));
        }
    }
    report("HDR-20", failures);
}

// ------------------------------------------------------------------------------------------------
// 7. Admin surface (ADM)

static ADM_ROWS: &[Row] = &[
    // CVE-2020-11710, https://github.com/golang/vulndb/issues/2270 ; https://github.com/Kong/developer.konghq.com/pull/1323 ; https://github.com/rapid7/metasploit-framework/pull/14264
    row("ADM-01", b"GET /admin/keys HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n", &[401]).error(UNAUTHORIZED).check(data_plane_answer),
    // CVE-2020-11710, https://github.com/golang/vulndb/issues/2270
    row("ADM-01/post", b"POST /admin/keys HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"name\":\"pwn\"}", &[401]).error(UNAUTHORIZED).check(data_plane_answer),
    // https://github.com/Kong/developer.konghq.com/pull/1323
    row("ADM-01/config", b"GET /admin/config HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n", &[401]).error(UNAUTHORIZED).check(data_plane_answer),
    // https://github.com/rapid7/metasploit-framework/pull/14264 (`/metrics` is a data path here)
    row("ADM-01/metrics", b"GET /metrics HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n", &[200]).up("/metrics").check(auth_none),
    // https://github.com/Kong/developer.konghq.com/pull/1323
    row("ADM-01/openapi", b"GET /openapi.json HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n", &[200]).up("/openapi.json").check(auth_none),
    // CVE-2020-11710, https://github.com/golang/vulndb/issues/2270 (on the TLS listener)
    row("ADM-01/tls", b"GET /admin/keys HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n", &[401]).via(tls("api.example.com")).error(UNAUTHORIZED).check(data_plane_answer),
    // CVE-2020-11710, https://github.com/golang/vulndb/issues/2270 (on the TLS listener)
    row("ADM-01/tls-post", b"POST /admin/keys HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"name\":\"pwn\"}", &[401]).via(tls("api.example.com")).error(UNAUTHORIZED).check(data_plane_answer),
    // https://github.com/Kong/developer.konghq.com/pull/1323 (on the TLS listener)
    row("ADM-01/tls-config", b"GET /admin/config HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n", &[401]).via(tls("api.example.com")).error(UNAUTHORIZED).check(data_plane_answer),
    // https://github.com/rapid7/metasploit-framework/pull/14264 (on the TLS listener)
    row("ADM-01/tls-metrics", b"GET /metrics HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n", &[200]).via(tls("api.example.com")).up("/metrics").check(auth_none),
    // https://github.com/Kong/developer.konghq.com/pull/1323 (on the TLS listener)
    row("ADM-01/tls-openapi", b"GET /openapi.json HTTP/1.1\r\nHost: api.example.com\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n", &[200]).via(tls("api.example.com")).up("/openapi.json").check(auth_none),
    // https://github.com/coder/httpjail/issues/57 ; https://github.com/diennea/carapaceproxy/pull/614
    row("ADM-02", b"GET http://{ADMIN_ADDR}/admin/keys HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\n\r\n", &[401]).error(UNAUTHORIZED).check(data_plane_answer),
    // https://github.com/coder/httpjail/issues/57 (a target nobody listens for: see dead_untouched)
    row("ADM-02/dead", b"GET http://{DEAD_ADDR}/public HTTP/1.1\r\nHost: {DEAD_ADDR}\r\n\r\n", &[200]).up("/public").check(auth_none),
    // CVE-2022-24112, https://github.com/apache/apisix-website/pull/878 , https://github.com/apache/apisix/pull/6251 ; https://github.com/beefproject/beef/pull/1845
    row("ADM-03", b"GET /admin/keys HTTP/1.1\r\nHost: a\r\nX-Real-IP: 127.0.0.1\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n", &[401]).error(UNAUTHORIZED),
    // CVE-2022-24112, https://github.com/apache/apisix/pull/6251 (on the admin listener)
    row("ADM-03/admin", b"GET /admin/keys HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\nX-Real-IP: 127.0.0.1\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n", &[401]).via(Via::Admin).error(UNAUTHORIZED),
    // Cure53 EP-01-001, https://github.com/envoyproxy/envoy/issues/2769 , https://github.com/envoyproxy/envoy/issues/2763
    // Being implemented: the admin listener answers only a Host naming its bind address,
    // localhost or an IP literal (else 421 or 403), and never with CORS headers.
    row("ADM-04", b"GET /metrics HTTP/1.1\r\nHost: attacker.test\r\nOrigin: http://attacker.test\r\n\r\n", &[421, 403]).via(Via::Admin).check(no_cors),
    // https://github.com/envoyproxy/envoy/issues/2769 (a rebinding page's Host carries the port)
    row("ADM-04/port", b"GET /metrics HTTP/1.1\r\nHost: attacker.test:{ADMIN_PORT}\r\nOrigin: http://attacker.test:{ADMIN_PORT}\r\n\r\n", &[421, 403]).via(Via::Admin).check(no_cors),
    // https://github.com/envoyproxy/envoy/issues/2769
    row("ADM-04/readyz", b"GET /readyz HTTP/1.1\r\nHost: attacker.test\r\nOrigin: http://attacker.test\r\n\r\n", &[421, 403]).via(Via::Admin).check(no_cors),
    // https://github.com/envoyproxy/envoy/issues/2769
    row("ADM-04/openapi", b"GET /openapi.json HTTP/1.1\r\nHost: attacker.test\r\nOrigin: http://attacker.test\r\n\r\n", &[421, 403]).via(Via::Admin).check(no_cors),
    // https://github.com/envoyproxy/envoy/issues/2763 (a CSRF-style mutation: refused either way)
    row("ADM-04/post", b"POST /admin/keys HTTP/1.1\r\nHost: attacker.test\r\nOrigin: http://attacker.test\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n\r\n{\"name\":\"pwn\"}", &[401, 421, 403]).via(Via::Admin).check(no_cors),
    // https://github.com/envoyproxy/envoy/issues/2763 (the same with a proper Host: 401)
    row("ADM-04/post-host", b"POST /admin/keys HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\nOrigin: http://attacker.test\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n\r\n{\"name\":\"pwn\"}", &[401]).via(Via::Admin).error(UNAUTHORIZED).check(no_cors),
    // control: the bind address, localhost and an IP literal are still served
    row("ADM-04/ctl-bind", b"GET /metrics HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\n\r\n", &[200]).via(Via::Admin).check(no_cors),
    // control
    row("ADM-04/ctl-localhost", b"GET /readyz HTTP/1.1\r\nHost: localhost:{ADMIN_PORT}\r\n\r\n", &[200]).via(Via::Admin).check(no_cors),
    // control
    row("ADM-04/ctl-ip", b"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", &[200]).via(Via::Admin).check(no_cors),
    // own: admin paths are not normalized; anything under `admin` needs the token first
    row("ADM-06", b"GET //admin//keys HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\n\r\n", &[401]).via(Via::Admin).error(UNAUTHORIZED),
    // own
    row("ADM-06/b", b"GET /admin/keys/../config HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\n\r\n", &[401]).via(Via::Admin).error(UNAUTHORIZED),
    // own
    row("ADM-06/c", b"GET /healthz/../admin/keys HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\n\r\n", &[404]).via(Via::Admin),
    // own
    row("ADM-06/d", b"GET /admin/%6beys HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\n\r\n", &[401]).via(Via::Admin).error(UNAUTHORIZED),
    // own
    row("ADM-06/e", b"DELETE /admin/keys/x%2f..%2fy HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\n\r\n", &[401]).via(Via::Admin).error(UNAUTHORIZED),
    // own: unauthenticated endpoints answer only their exact paths
    row("ADM-06/f", b"GET /metrics/../admin/keys HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\n\r\n", &[404]).via(Via::Admin),
    // own
    row("ADM-06/g", b"GET /readyz/x HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\n\r\n", &[404]).via(Via::Admin),
    // own: two Authorization headers, the first valid
    row("ADM-07", b"GET /admin/keys HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nAuthorization: Bearer wrong\r\n\r\n", &[401]).via(Via::Admin).error(UNAUTHORIZED),
    // own: two Authorization headers, the second valid
    row("ADM-07/b", b"GET /admin/keys HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\nAuthorization: Bearer wrong\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n", &[401]).via(Via::Admin).error(UNAUTHORIZED),
    // own: the scheme in lower case is accepted
    row("ADM-07/c", b"GET /admin/keys HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\nAuthorization: bearer {ADMIN_TOKEN}\r\n\r\n", &[200]).via(Via::Admin).check(key_list),
    // own: extra spaces are accepted
    row("ADM-07/d", b"GET /admin/keys HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\nAuthorization: Bearer  {ADMIN_TOKEN} \r\n\r\n", &[200]).via(Via::Admin).check(key_list),
    // own: the token in the query is not a credential
    row("ADM-07/e", b"GET /admin/keys?token={ADMIN_TOKEN} HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\n\r\n", &[401]).via(Via::Admin).error(UNAUTHORIZED),
    // own: nor in another header
    row("ADM-07/f", b"GET /admin/keys HTTP/1.1\r\nHost: {ADMIN_ADDR}\r\nX-Admin-Token: {ADMIN_TOKEN}\r\n\r\n", &[401]).via(Via::Admin).error(UNAUTHORIZED),
];

/// The answer came from the data plane (its error body has a request id and an API key
/// challenge), never from the admin API (no key list, no admin realm).
fn data_plane_answer(r: &Resp, _: Option<&Seen>) -> Result<(), String> {
    let body = r.json();
    if body.get("keys").is_some() || body.get("listeners").is_some() {
        return Err("an admin API answer on a data listener".into());
    }
    if body["request_id"].as_str().is_none_or(str::is_empty) {
        return Err("not a data-plane error body (no request_id)".into());
    }
    let challenge = r.header("www-authenticate").unwrap_or("");
    if challenge.contains("portcullis-admin") || !challenge.starts_with("Api-Key") {
        return Err(format!("WWW-Authenticate: {challenge}"));
    }
    Ok(())
}

fn no_cors(r: &Resp, _: Option<&Seen>) -> Result<(), String> {
    match r
        .headers
        .iter()
        .find(|(k, _)| k.starts_with("access-control-"))
    {
        Some((k, v)) => Err(format!("CORS header {k}: {v}")),
        None => Ok(()),
    }
}

fn key_list(r: &Resp, _: Option<&Seen>) -> Result<(), String> {
    match r.json()["keys"].as_array() {
        Some(k) if k.len() == 2 => Ok(()),
        _ => Err("no key list".into()),
    }
}

#[tokio::test]
async fn admin_surface() {
    let ctx = start("", "mtls.example.com").await;
    let mut failures = Vec::new();
    run_rows(&ctx, ADM_ROWS, &mut failures).await;
    if let Err(e) = ctx.dead_untouched() {
        failures.push(format!("ADM-02/dead: {e}"));
    }
    // Nothing above changed state: still exactly the two keys the fixture made.
    let (st, list) = admin_call(
        &plain_client(),
        &ctx.gw.admin(),
        reqwest::Method::GET,
        "/admin/keys",
        None,
    )
    .await;
    let n = list["keys"].as_array().map_or(0, Vec::len);
    if st != 200 || n != 2 {
        failures.push(format!("ADM: the key store changed: {st} {list}"));
    }
    report("ADM", failures);
}

/// ADM-05: https://github.com/Kong/developer.konghq.com/pull/1323 ; CVE-2022-24112,
/// https://github.com/apache/apisix-website/pull/878
/// `portcullis check` warns (or errors) when an upstream URL points at the admin listener, or at
/// a data listener (a loop). Being implemented; the control row shows a clean config gets no
/// such message, so the assertion cannot pass vacuously.
#[tokio::test]
async fn admin_upstream_loop_is_flagged_by_check() {
    struct CheckRow {
        id: &'static str,
        url: &'static str,
        /// Words the output must contain (case-insensitive), besides the upstream's name.
        want: &'static [&'static str],
    }
    static ROWS: &[CheckRow] = &[
        CheckRow {
            id: "ADM-05",
            url: "http://127.0.0.1:19901",
            want: &["admin"],
        },
        CheckRow {
            id: "ADM-05/localhost",
            url: "http://localhost:19901",
            want: &["admin"],
        },
        CheckRow {
            id: "ADM-05/listener",
            url: "http://127.0.0.1:18080",
            want: &["listener"],
        },
        CheckRow {
            id: "ADM-05/ctl",
            url: "http://127.0.0.1:18081",
            want: &[],
        },
    ];
    let mut failures = Vec::new();
    for r in ROWS {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gw.yaml");
        std::fs::write(
            &file,
            format!(
                "listeners:\n  - name: plain\n    bind: 127.0.0.1:18080\nadmin: {{ bind: \"127.0.0.1:19901\", token_sha256: \"{}\" }}\nupstreams:\n  loopy: {{ url: \"{}\" }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: loopy, auth: none }}\n",
                admin_token_sha256(),
                r.url
            ),
        )
        .unwrap();
        let f = file.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .arg("check")
                .arg("-c")
                .arg(&f)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .replace(&file.display().to_string(), "FILE");
        eprintln!("{}: exit {:?}: {}", r.id, out.status.code(), text.trim());
        let lower = text.to_ascii_lowercase();
        let flagged = lower.contains("loopy") && r.want.iter().all(|w| lower.contains(w));
        let ok = if r.want.is_empty() {
            out.status.success() && !lower.contains("loopy")
        } else {
            flagged
        };
        if !ok {
            failures.push(format!(
                "{}: upstream {}: exit {:?}, output {text:?}",
                r.id,
                r.url,
                out.status.code()
            ));
        }
    }
    report("ADM-05", failures);
}
