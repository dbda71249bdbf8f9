//! Test helpers: a per-run PKI made with rcgen, a recording upstream on an ephemeral port, the
//! gateway started in-process or as a real process, and HTTP clients.
#![allow(dead_code)] // each test binary uses a different part of this module
#![allow(clippy::unwrap_used)] // test helpers: a panic is the test failure we want

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

pub mod h2raw;
pub mod jwks;
pub mod raw;
pub mod stores;

// ------------------------------------------------------------------------------------------------
// PKI

pub struct Pki {
    pub dir: tempfile::TempDir,
}

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).unwrap();
}

impl Pki {
    /// ca.crt, server.crt/key (localhost, 127.0.0.1), client.crt/key (CN=alice), other-client
    /// (another CA), expired-client (our CA, expired), revoked-client + ca.crl (revoking it),
    /// server2.crt/key (a second server certificate for reload tests), and for the mtls
    /// identities: spiffe-client (URI SAN spiffe://corp/billing, no CN), dns-client (CN=svc-a, DNS
    /// a.svc.corp.example and other.example), apex-client (CN=svc-apex, DNS svc.corp.example),
    /// reporting-client (CN=reporting, no SAN), control-client (CN=`reporting` followed by CR LF,
    /// a header line and BEL).
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (ca_params, ca_key, ca_pem) = ca("Test CA");
        write(d, "ca.crt", &ca_pem);
        let issuer = Issuer::new(ca_params, ca_key);
        for (name, cn) in [("server", "localhost"), ("server2", "localhost-two")] {
            let key = KeyPair::generate().unwrap();
            let mut p =
                CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let c = p.signed_by(&key, &issuer).unwrap();
            write(d, &format!("{name}.crt"), &c.pem());
            write(d, &format!("{name}.key"), &key.serialize_pem());
        }
        let client = |cn: &str, issuer: &Issuer<'_, KeyPair>, expired: bool, serial: u64| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.distinguished_name.push(DnType::OrganizationName, "Acme");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            p.serial_number = Some(rcgen::SerialNumber::from(serial));
            if expired {
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let c = p.signed_by(&key, issuer).unwrap();
            (c.pem(), key.serialize_pem())
        };
        let (c, k) = client("alice", &issuer, false, 1001);
        write(d, "client.crt", &c);
        write(d, "client.key", &k);
        let (c, k) = client("old", &issuer, true, 1002);
        write(d, "expired-client.crt", &c);
        write(d, "expired-client.key", &k);
        let (c, k) = client("mallory", &issuer, false, 1003);
        write(d, "revoked-client.crt", &c);
        write(d, "revoked-client.key", &k);
        let crl = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(1003u64),
                revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap();
        write(d, "ca.crl", &crl.pem().unwrap());
        // service certificates for the mtls identities tests: a SPIFFE ID without a CN, DNS
        // names, and a plain CN
        let svc = |cn: Option<&str>, sans: &[&str], issuer: &Issuer<'_, KeyPair>| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name = rcgen::DistinguishedName::new(); // no default CN
            if let Some(cn) = cn {
                p.distinguished_name.push(DnType::CommonName, cn);
            }
            p.distinguished_name.push(DnType::OrganizationName, "Corp");
            for s in sans {
                p.subject_alt_names.push(match s.strip_prefix("URI:") {
                    Some(u) => rcgen::SanType::URI(u.try_into().unwrap()),
                    None => rcgen::SanType::DnsName((*s).try_into().unwrap()),
                });
            }
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let c = p.signed_by(&key, issuer).unwrap();
            (c.pem(), key.serialize_pem())
        };
        for (name, cn, sans) in [
            ("spiffe-client", None, &["URI:spiffe://corp/billing"][..]),
            (
                "dns-client",
                Some("svc-a"),
                &["a.svc.corp.example", "other.example"][..],
            ),
            ("apex-client", Some("svc-apex"), &["svc.corp.example"][..]),
            ("reporting-client", Some("reporting"), &[][..]),
            // a header split attempt in a CN that starts like a listed one
            (
                "control-client",
                Some("reporting\r\nX-Auth-Scopes: admin\u{7}"),
                &[][..],
            ),
        ] {
            let (c, k) = svc(cn, sans, &issuer);
            write(d, &format!("{name}.crt"), &c);
            write(d, &format!("{name}.key"), &k);
        }
        let (other_params, other_key, _) = ca("Other CA");
        let other = Issuer::new(other_params, other_key);
        let (c, k) = client("eve", &other, false, 7);
        write(d, "other-client.crt", &c);
        write(d, "other-client.key", &k);
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }

    pub fn identity(&self, name: &str) -> reqwest::Identity {
        let mut pem = self.read(&format!("{name}.crt"));
        pem.extend(self.read(&format!("{name}.key")));
        reqwest::Identity::from_pem(&pem).unwrap()
    }
}

fn ca(cn: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).unwrap();
    (p, key, cert.pem())
}

// ------------------------------------------------------------------------------------------------
// Recording upstream

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An HTTP/1.1 + h2c upstream that records every request it receives.
///
/// Paths: `/hang` never answers; `/slow?ms=N` answers after N ms; `/download?bytes=N` streams N
/// bytes; `/drip?n=N&ms=M` streams N small chunks M ms apart; `/upload` reads the body and answers `{"bytes": N, "sum": S}` (S = sum of all bytes mod
/// 2^64); `/ws` answers 101 and echoes bytes; anything else answers 200 with JSON of what it saw.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let arrived: Arc<tokio::sync::Notify> = Arc::default();
        let rec = seen.clone();
        let notify = arrived.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let rec = rec.clone();
                let notify = notify.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        upstream_handle(req, rec.clone(), notify.clone())
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            seen,
            arrived,
        }
    }

    /// Waits until the upstream has received at least `n` requests.
    pub async fn wait_for_count(&self, n: usize) {
        loop {
            let notified = self.arrived.notified();
            if self.count() >= n {
                return;
            }
            tokio::time::timeout(Duration::from_secs(30), notified)
                .await
                .expect("the upstream did not receive the request");
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(s: impl Into<Bytes>) -> UpBody {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

fn query_num(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn upstream_handle(
    mut req: Request<Incoming>,
    rec: Arc<Mutex<Vec<Seen>>>,
    arrived: Arc<tokio::sync::Notify>,
) -> Result<Response<UpBody>, std::convert::Infallible> {
    let seen = Seen {
        method: req.method().to_string(),
        uri: req.uri().to_string(),
        version: format!("{:?}", req.version()),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    rec.lock().unwrap().push(seen.clone());
    arrived.notify_waiters();
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Response::new(full("late")))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(query_num(&req, "ms"))).await;
            Ok(Response::new(full("slow done")))
        }
        "/drip" => {
            // `n` small chunks, `ms` apart: a quiet stream (server-sent events between events)
            let (n, ms) = (query_num(&req, "n"), query_num(&req, "ms"));
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
            tokio::spawn(async move {
                for i in 0..n {
                    if i > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    if tx
                        .send(Ok(Frame::data(Bytes::from_static(b"tick\n"))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            Ok(Response::new(
                StreamBody::new(tokio_stream_from(rx)).boxed(),
            ))
        }
        "/download" => {
            let total = query_num(&req, "bytes");
            let chunk = Bytes::from(vec![7u8; 64 * 1024]);
            let stream = futures_stream(total, chunk);
            Ok(Response::new(StreamBody::new(stream).boxed()))
        }
        "/upload" => {
            let mut body = req.into_body();
            let (mut n, mut sum) = (0u64, 0u64);
            while let Some(f) = body.frame().await {
                let Ok(f) = f else { break };
                if let Some(d) = f.data_ref() {
                    n += d.len() as u64;
                    for b in d.iter() {
                        sum = sum.wrapping_add(*b as u64);
                    }
                }
            }
            Ok(Response::new(full(format!(
                "{{\"bytes\":{n},\"sum\":{sum}}}"
            ))))
        }
        "/ws" => {
            let up = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(io) = up.await {
                    let mut io = TokioIo::new(io);
                    let (mut r, mut w) = tokio::io::split(&mut io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut resp = Response::new(full(""));
            *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
            resp.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            resp.headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            Ok(resp)
        }
        _ => {
            let mut hs: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in &seen.headers {
                hs.entry(k.clone()).or_default().push(v.clone());
            }
            let doc = serde_json::json!({"method": seen.method, "uri": seen.uri, "headers": hs});
            let mut resp = Response::new(full(doc.to_string()));
            resp.headers_mut()
                .insert("x-upstream", "recording".parse().unwrap());
            Ok(resp)
        }
    }
}

fn futures_stream(
    total: u64,
    chunk: Bytes,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if tx.send(Ok(Frame::data(chunk.slice(..n)))).await.is_err() {
                return;
            }
            left -= n as u64;
        }
    });
    tokio_stream_from(rx)
}

/// A Stream over an mpsc receiver, without pulling in tokio-stream.
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send {
    struct S<T>(tokio::sync::mpsc::Receiver<T>);
    impl<T> futures_core::Stream for S<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
    S(rx)
}

// ------------------------------------------------------------------------------------------------
// The gateway, in-process

/// The admin token of test gateways.
pub const ADMIN_TOKEN: &str = "pca_test-admin-token-0123456789";

pub fn admin_token_sha256() -> String {
    format!(
        "sha256:{}",
        portcullis::digest::hex_lower(&portcullis::keys::hash_key(ADMIN_TOKEN))
    )
}

pub struct Gw {
    pub running: Option<portcullis::server::Running>,
    pub dir: tempfile::TempDir,
}

impl Gw {
    /// Writes `yaml` to a temp dir and starts the gateway on it. Use `127.0.0.1:0` binds.
    pub async fn start(yaml: &str) -> Gw {
        portcullis::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.yaml");
        let mut yaml = yaml.to_owned();
        if !yaml.contains("\nadmin:") {
            // an ephemeral admin port (9901 would collide between parallel tests) and a known token
            yaml.push_str(&format!(
                "\nadmin: {{ bind: \"127.0.0.1:0\", token_sha256: \"{}\" }}\n",
                admin_token_sha256()
            ));
        }
        let yaml = yaml.as_str();
        std::fs::write(&file, yaml).unwrap();
        let snap = match portcullis::config::load(&file, None, portcullis::config::Mode::Run) {
            Ok(s) => s,
            Err(e) => panic!("config does not load:\n{e}\n---\n{yaml}"),
        };
        let running = portcullis::server::start(&file, snap).await.unwrap();
        Gw {
            running: Some(running),
            dir,
        }
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.running.as_ref().unwrap().addr(listener).unwrap()
    }

    pub fn admin(&self) -> String {
        format!("http://{}", self.running.as_ref().unwrap().admin_addr)
    }

    pub fn http(&self, listener: &str) -> String {
        format!("http://{}", self.addr(listener))
    }

    /// https URL with the host name `localhost` (resolve it with [`tls_client`]).
    pub fn https(&self, listener: &str) -> String {
        format!("https://localhost:{}", self.addr(listener).port())
    }
}

/// A reqwest client trusting only `ca.crt` of `pki`, resolving `localhost` to 127.0.0.1,
/// optionally presenting the client certificate `ident` (`client`, `expired-client`, ...).
pub fn tls_client(pki: &Pki, ident: Option<&str>, h1_only: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&pki.read("ca.crt")).unwrap();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([ca])
        .no_proxy()
        .resolve("localhost", "127.0.0.1:0".parse().unwrap());
    if let Some(i) = ident {
        b = b.identity(pki.identity(i));
    }
    if h1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

pub fn plain_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

// ------------------------------------------------------------------------------------------------
// The gateway as a real process (signals)

pub struct GwProcess {
    pub child: Child,
    pub addrs: BTreeMap<String, SocketAddr>,
    pub lines: std::sync::mpsc::Receiver<String>,
    /// The lines read while waiting for the listeners.
    pub startup: Vec<String>,
    pub dir: PathBuf,
}

impl GwProcess {
    /// Starts `portcullis run -c FILE` with JSON logs and waits for every listener's `listening` line.
    pub fn start(config: &Path, listeners: usize) -> GwProcess {
        GwProcess::start_with(config, listeners, Some("info"))
    }

    /// [`GwProcess::start`] with `RUST_LOG` set to `rust_log`, or unset (the config's
    /// `logging.level` then decides), and without `PORTCULLIS_WORKERS`.
    pub fn start_with(config: &Path, listeners: usize, rust_log: Option<&str>) -> GwProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args(["run", "-c"])
            .arg(config)
            .env_remove("PORTCULLIS_WORKERS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        match rust_log {
            Some(l) => cmd.env("RUST_LOG", l),
            None => cmd.env_remove("RUST_LOG"),
        };
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut addrs = BTreeMap::new();
        let mut startup = Vec::new();
        // +1: the admin listener reports itself too
        while addrs.len() < listeners + 1 {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
                // never leave the process behind when the test fails here
                let _ = child.kill();
                let _ = child.wait();
                panic!("gateway did not report its listeners");
            };
            startup.push(line.clone());
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["message"] == "listening" {
                addrs.insert(
                    v["listener"].as_str().unwrap().to_owned(),
                    v["addr"].as_str().unwrap().parse().unwrap(),
                );
            }
        }
        GwProcess {
            child,
            addrs,
            lines: rx,
            startup,
            dir: config.parent().unwrap().to_path_buf(),
        }
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for a JSON log line whose `message` equals `msg`.
    pub fn wait_for(&self, msg: &str) -> serde_json::Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no `{msg}` log line"));
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == msg {
                    return v;
                }
            }
        }
    }
}

impl Drop for GwProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs curl off the runtime thread (the gateway under test shares the runtime) and returns stdout.
pub async fn curl(args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(&args)
            .output()
            .expect("curl is installed (.ci/run installs it)")
    })
    .await
    .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ------------------------------------------------------------------------------------------------
// Independent JOSE libraries (PyJWT, jwcrypto, cryptography) through the scripts of tests/interop

/// Runs `tests/interop/mint.py` on a batch of requests; one output line per request.
/// Panics with a clear message when Python or its packages are missing (.ci/run installs them).
pub fn mint(reqs: &serde_json::Value) -> Vec<String> {
    interop("mint.py", reqs)
}

/// Runs the script `name` of tests/interop (the contract of mint.py: JSON on stdin, one line per
/// request on stdout) on a batch of requests; one output line per request.
pub fn interop(name: &str, reqs: &serde_json::Value) -> Vec<String> {
    use std::io::Write;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name);
    let mut child = Command::new("python3")
        .arg(script)
        // attack_tokens.py imports mint.py: no __pycache__ in the source tree
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the interop tests (.ci/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(reqs.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed (are PyJWT, jwcrypto and cryptography installed? `pip install -r tests/interop/requirements.txt`):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

pub fn b64url(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

pub fn unix_now() -> i64 {
    portcullis::clock::now_secs()
}

// ------------------------------------------------------------------------------------------------
// The CLI and the admin API

/// Runs the real CLI against the admin API at `admin` with the test admin token.
pub fn cli(admin: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .args(["--admin", admin])
        .env("PORTCULLIS_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub async fn cli_async(admin: String, args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&admin, &a)
    })
    .await
    .unwrap()
}

/// One admin API call with the test token: (status, JSON body or null).
pub async fn admin_call(
    c: &reqwest::Client,
    admin: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut r = c
        .request(method, format!("{admin}{path}"))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

// ------------------------------------------------------------------------------------------------
// The machine's PostgreSQL and Redis (cluster tests and benches)

pub fn pg_base() -> String {
    std::env::var("PORTCULLIS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_addr() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS").unwrap_or_else(|_| "127.0.0.1:6379".into())
}

/// Opens a WebSocket through the gateway at `addr` (`GET /ws` with the RFC 6455 sample key) and
/// reads the response head; returns the stream, positioned after the head, and the head.
pub async fn open_websocket(addr: SocketAddr) -> (tokio::net::TcpStream, String) {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let head = raw::read_head(&mut s, Duration::from_secs(30)).await;
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.contains("\r\n\r\n"), "closed before the 101: {head}");
    (s, head)
}

/// GET `url` (no credentials) and parse the body as JSON.
pub async fn get_json(url: &str) -> serde_json::Value {
    plain_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// GET `url` and return the body as text.
pub async fn get_text(url: &str) -> String {
    plain_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The status a `GET {gw}/x` with `X-Api-Key: key` gets on the `plain` listener.
pub async fn api_key_status(c: &reqwest::Client, gw: &Gw, key: &str) -> u16 {
    c.get(format!("{}/x", gw.http("plain")))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

// ------------------------------------------------------------------------------------------------
// Byte strings (raw HTTP/1.1)

/// The first position of `needle` in `hay`.
pub fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `hay` with every `from` replaced by `to`, left to right.
pub fn replace_bytes(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Checks a Prometheus text exposition the way a strict parser (promtool, the OpenMetrics
/// rules) reads it: each family's `# HELP`/`# TYPE` before its samples and given once, every
/// family's samples together (a family split in two is an error), sample names of their family
/// (`_bucket`/`_sum`/`_count` for a histogram), well-formed labels and numeric values. Panics
/// with the offending line.
pub fn check_exposition(text: &str) {
    use std::collections::{HashMap, HashSet};
    let mut types: HashMap<String, String> = HashMap::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for (i, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line}", i + 1);
        if line.is_empty() {
            continue;
        }
        let family = if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or(line.strip_prefix("# TYPE "))
        {
            let name = rest.split(' ').next().unwrap_or("");
            assert!(valid_name(name), "bad family name, {}", at());
            if line.starts_with("# TYPE ") {
                let kind = rest.split(' ').nth(1).unwrap_or("");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad type, {}",
                    at()
                );
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "TYPE given twice, {}",
                    at()
                );
            }
            name.to_owned()
        } else {
            assert!(!line.starts_with('#'), "stray comment, {}", at());
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value, {}", at()));
            assert!(
                value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                "bad value, {}",
                at()
            );
            let name = series.split('{').next().unwrap_or("");
            assert!(valid_name(name), "bad sample name, {}", at());
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    let inner = labels
                        .strip_prefix('{')
                        .and_then(|l| l.strip_suffix('}'))
                        .unwrap_or_else(|| panic!("bad labels, {}", at()));
                    let mut rest = inner;
                    while !rest.is_empty() {
                        let (k, v) = rest
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label, {}", at()));
                        assert!(valid_name(k), "bad label name, {}", at());
                        // the value runs to the first unescaped quote
                        let mut end = None;
                        let mut esc = false;
                        for (j, c) in v.char_indices() {
                            match (esc, c) {
                                (true, _) => esc = false,
                                (false, '\\') => esc = true,
                                (false, '"') => {
                                    end = Some(j);
                                    break;
                                }
                                _ => {}
                            }
                        }
                        let end = end.unwrap_or_else(|| panic!("unterminated label, {}", at()));
                        rest = v[end + 1..].strip_prefix(',').unwrap_or(&v[end + 1..]);
                    }
                }
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s).filter(|f| {
                        types
                            .get(*f)
                            .is_some_and(|t| t == "histogram" || t == "summary")
                    })
                })
                .unwrap_or(name);
            assert!(
                types.contains_key(family),
                "sample without a TYPE, {}",
                at()
            );
            family.to_owned()
        };
        if current.as_deref() != Some(family.as_str()) {
            assert!(
                !closed.contains(&family),
                "family `{family}` split in two, {}",
                at()
            );
            if let Some(c) = current.take() {
                closed.insert(c);
            }
            current = Some(family);
        }
    }
    prometheus_parse(text);
}

/// The text through the Prometheus project's own parser (`prometheus_client`, Python; see
/// tests/interop/promparse.py), which must read it whole with every family in one piece.
pub fn prometheus_parse(text: &str) {
    use std::io::Write as _;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/promparse.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (for prometheus_client; pip install -r tests/interop/requirements.txt)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejects /metrics (is it installed? pip install -r tests/interop/requirements.txt):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits (bounded) for the audit lines of `rids` and returns them by request id.
pub async fn audit_lines(
    path: &std::path::Path,
    rids: &[&str],
) -> std::collections::HashMap<String, serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: std::collections::HashMap<String, serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| Some((v["request_id"].as_str()?.to_owned(), v)))
            .collect();
        if rids.iter().all(|r| lines.contains_key(*r)) || std::time::Instant::now() > deadline {
            return lines;
        }
        // the writer thread flushes when idle
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
}

/// `portcullis check` on `yaml` must fail (exit 1) and print each of `wanted` (field paths and
/// their messages).
pub fn assert_check_fails_with(yaml: &str, wanted: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("gw.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(&f)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for want in wanted {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
}

/// `python3 -m http.server` serving `dir` on an ephemeral loopback port: a real HTTP/1.0 server
/// (it answers `HTTP/1.0` and closes after each response), and a static file server for pages a
/// browser loads. Stopped when dropped.
pub struct PyHttpServer {
    child: Child,
    pub port: u16,
}

impl PyHttpServer {
    pub fn start(dir: &Path) -> PyHttpServer {
        Self::start_on(dir, 0)
    }

    /// On `port` (0: an ephemeral one); the server sets SO_REUSEADDR, so a killed server's port
    /// can be taken again at once.
    pub fn start_on(dir: &Path, port: u16) -> PyHttpServer {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 (http.server)");
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .split("port ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        PyHttpServer { child, port }
    }
}

impl PyHttpServer {
    /// SIGKILL, by PID: connections in progress are reset, new ones refused.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyHttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway's `/metrics` text, checked as a valid exposition.
pub async fn metrics_text(gw: &Gw) -> String {
    let text = plain_client()
        .get(format!("{}/metrics", gw.admin()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    check_exposition(&text);
    text
}

/// The value of the first sample in `text` whose name and labels start with `prefix`.
pub fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
