//! docs/attack-cases.md section 3, request smuggling (SMUG-01..SMUG-22), and HTTP/1.1 pipelining
//! behind denied requests, against a RAW TCP recording upstream.
//!
//! The oracle is the byte stream the upstream received. The raw recorder below keeps every byte
//! of every connection, frames requests itself (Content-Length and chunked), and answers each
//! with `200 ok` (plus `X-Rec-Target`, so the client can tell which answer is which). Each case
//! then asserts, on the upstream's bytes: one valid request line per request, never both
//! `Content-Length` and `Transfer-Encoding` (nor two `Content-Length`), no bytes after a declared
//! body, no unframed remainder, no smuggled `/admin` anywhere; and on the client side: the exact
//! sequence of responses, so a smuggled request can never have produced one of its own.
//!
//! Every case runs on its own gateway and recorder (so upstream connections of two cases never
//! mix). A case ends when the client connection closes (the gateway's `idle_timeout` is 1 s here,
//! instead of the document's 5 s, to keep the suite fast), then a barrier request on a fresh
//! connection proves the gateway still works and gives the recorder's readers time to log what the
//! gateway wrote before.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::h2raw::*;
use common::raw::*;
use common::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

// ------------------------------------------------------------------------------------------------
// The raw recording upstream

/// One request as the upstream framed it off the wire.
#[derive(Debug, Clone)]
struct UpReq {
    method: String,
    target: String,
    /// The head as received, lossily decoded (for the marker scan and failure messages).
    head: String,
    /// Names lowercased, values trimmed.
    headers: Vec<(String, String)>,
    /// The body, de-chunked when it was chunked.
    body: Vec<u8>,
}

impl UpReq {
    fn line(&self) -> String {
        format!("{} {}", self.method, self.target)
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn is_barrier(&self) -> bool {
        self.target.starts_with("/__barrier")
    }

    /// What the recorder answers, and whether it switches protocols (then it only records).
    /// It accepts h2c upgrades (as a lenient h2c server would, even without `HTTP2-Settings`)
    /// and answers `/switch...` with a 101 nobody asked for (SMUG-17).
    fn reply(&self) -> (Vec<u8>, bool) {
        let h2c = self
            .all("upgrade")
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c")));
        if h2c {
            return (
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                    .to_vec(),
                true,
            );
        }
        if self.target.starts_with("/switch") {
            return (
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
                    .to_vec(),
                true,
            );
        }
        (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Rec-Target: {}\r\n\r\nok",
                self.target
            )
            .into_bytes(),
            false,
        )
    }
}

enum Parse {
    Incomplete,
    /// A framing violation: what a strict HTTP/1.1 parser must not accept from the gateway.
    Bad(String),
    Done(UpReq, usize),
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Frames one request at the start of `buf`, strictly (RFC 9112 as a careful origin reads it).
fn parse_request(buf: &[u8]) -> Parse {
    let end = find_bytes(buf, b"\r\n\r\n");
    let head = &buf[..end.unwrap_or(buf.len())];
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' && (i == 0 || head[i - 1] != b'\r') {
            return Parse::Bad(format!("bare LF in the head at byte {i}"));
        }
        if b == b'\r' && i + 1 < head.len() && head[i + 1] != b'\n' {
            return Parse::Bad(format!("bare CR in the head at byte {i}"));
        }
    }
    let Some(end) = end else {
        return if buf.len() > 1 << 16 {
            Parse::Bad("no end of head within 64 KiB".into())
        } else {
            Parse::Incomplete
        };
    };
    let text = String::from_utf8_lossy(head).into_owned();
    let mut lines = text.split("\r\n");
    let rl = lines.next().unwrap_or("");
    let parts: Vec<&str> = rl.split(' ').collect();
    if parts.len() != 3
        || parts[0].is_empty()
        || !parts[0].bytes().all(is_tchar)
        || parts[1].is_empty()
        || parts[2] != "HTTP/1.1"
    {
        return Parse::Bad(format!("request line {rl:?}"));
    }
    let mut headers = Vec::new();
    for l in lines {
        if l.starts_with([' ', '\t']) {
            return Parse::Bad(format!("obs-fold line {l:?}"));
        }
        let Some((n, v)) = l.split_once(':') else {
            return Parse::Bad(format!("header line without a colon {l:?}"));
        };
        if n.is_empty() || !n.bytes().all(is_tchar) {
            return Parse::Bad(format!("header name {n:?}"));
        }
        let v = v.trim_matches([' ', '\t']);
        if v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Parse::Bad(format!("control character in header {n}: {v:?}"));
        }
        headers.push((n.to_ascii_lowercase(), v.to_owned()));
    }
    let values = |name: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let cls = values("content-length");
    let tes = values("transfer-encoding");
    if !cls.is_empty() && !tes.is_empty() {
        return Parse::Bad(format!(
            "both Content-Length {cls:?} and Transfer-Encoding {tes:?}"
        ));
    }
    if cls.len() > 1 {
        return Parse::Bad(format!("several Content-Length fields {cls:?}"));
    }
    if tes.len() > 1 {
        return Parse::Bad(format!("several Transfer-Encoding fields {tes:?}"));
    }
    let start = end + 4;
    let (body, _trailers, used) = if let Some(te) = tes.first() {
        if !te.eq_ignore_ascii_case("chunked") {
            return Parse::Bad(format!(
                "Transfer-Encoding {te:?} reached the upstream (only `chunked` may)"
            ));
        }
        match parse_chunked(buf, start) {
            Err(e) => return Parse::Bad(e),
            Ok(None) => return Parse::Incomplete,
            Ok(Some(x)) => x,
        }
    } else if let Some(cl) = cls.first() {
        if cl.is_empty() || cl.len() > 15 || !cl.bytes().all(|b| b.is_ascii_digit()) {
            return Parse::Bad(format!("Content-Length {cl:?}"));
        }
        let n: usize = cl.parse().unwrap();
        if buf.len() < start + n {
            return Parse::Incomplete;
        }
        (buf[start..start + n].to_vec(), Vec::new(), start + n)
    } else {
        (Vec::new(), Vec::new(), start)
    };
    Parse::Done(
        UpReq {
            method: parts[0].to_owned(),
            target: parts[1].to_owned(),
            head: text.clone(),
            headers,
            body,
        },
        used,
    )
}

/// One upstream connection, re-framed from its bytes after the case.
#[derive(Default, Debug)]
struct ConnView {
    reqs: Vec<UpReq>,
    error: Option<String>,
    /// Bytes after the last complete request (an unfinished or unframable one).
    rest: Vec<u8>,
    /// Bytes after a 101 the recorder sent.
    tunnel: Vec<u8>,
}

fn view(bytes: &[u8]) -> ConnView {
    let mut v = ConnView::default();
    let mut pos = 0;
    while pos < bytes.len() {
        match parse_request(&bytes[pos..]) {
            Parse::Done(r, used) => {
                pos += used;
                let switches = r.reply().1;
                v.reqs.push(r);
                if switches {
                    v.tunnel = bytes[pos..].to_vec();
                    return v;
                }
            }
            Parse::Incomplete => {
                v.rest = bytes[pos..].to_vec();
                return v;
            }
            Parse::Bad(e) => {
                v.error = Some(e);
                v.rest = bytes[pos..].to_vec();
                return v;
            }
        }
    }
    v
}

struct RawUp {
    addr: SocketAddr,
    /// Every byte received, one entry per accepted connection, in accept order.
    conns: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Every request answered, in the order answered (all connections).
    answered: Arc<Mutex<Vec<UpReq>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl RawUp {
    async fn start() -> RawUp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let answered: Arc<Mutex<Vec<UpReq>>> = Arc::default();
        let arrived: Arc<tokio::sync::Notify> = Arc::default();
        let (c, a, n) = (conns.clone(), answered.clone(), arrived.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let idx = {
                    let mut all = c.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                tokio::spawn(serve_raw(tcp, idx, c.clone(), a.clone(), n.clone()));
            }
        });
        RawUp {
            addr,
            conns,
            answered,
            arrived,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn views(&self) -> Vec<ConnView> {
        self.conns.lock().unwrap().iter().map(|b| view(b)).collect()
    }

    fn bytes(&self) -> Vec<Vec<u8>> {
        self.conns.lock().unwrap().clone()
    }

    /// The requests answered, without barrier requests.
    fn answered(&self) -> Vec<UpReq> {
        self.answered
            .lock()
            .unwrap()
            .iter()
            .filter(|r| !r.is_barrier())
            .cloned()
            .collect()
    }

    async fn wait_answered(&self, target: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.arrived.notified();
            if self
                .answered
                .lock()
                .unwrap()
                .iter()
                .any(|r| r.target == target)
            {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }
}

async fn serve_raw(
    mut tcp: TcpStream,
    idx: usize,
    conns: Arc<Mutex<Vec<Vec<u8>>>>,
    answered: Arc<Mutex<Vec<UpReq>>>,
    arrived: Arc<tokio::sync::Notify>,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut raw_only = false;
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        let n = match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        conns.lock().unwrap()[idx].extend_from_slice(&buf[..n]);
        if !raw_only {
            pending.extend_from_slice(&buf[..n]);
            loop {
                match parse_request(&pending) {
                    Parse::Incomplete => break,
                    Parse::Bad(_) => {
                        // When in doubt, answer and keep recording: the case's analysis of the
                        // bytes reports the violation.
                        let _ = tcp
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await;
                        raw_only = true;
                        break;
                    }
                    Parse::Done(req, used) => {
                        pending.drain(..used);
                        let (reply, switches) = req.reply();
                        answered.lock().unwrap().push(req);
                        arrived.notify_waiters();
                        if tcp.write_all(&reply).await.is_err() {
                            break 'conn;
                        }
                        if switches {
                            raw_only = true;
                            break;
                        }
                    }
                }
            }
        }
        arrived.notify_waiters();
    }
    arrived.notify_waiters();
}

// ------------------------------------------------------------------------------------------------
// The gateway and the client side (the raw HTTP/1.1 client is common::raw)

fn gw_yaml(up: &RawUp) -> String {
    format!(
        r#"
listeners:
  - name: plain
    bind: 127.0.0.1:0
limits: {{ header_timeout: 2s, idle_timeout: 1s, max_body_bytes: 1048576, max_connections: 64 }}
trusted_proxies: []
logging: {{ audit: off }}
upstreams:
  rec: {{ url: "{url}", timeout: 5s }}
authenticators:
  keys: {{ type: api_key }}
routes:
  - {{ name: admin, match: {{ path_prefix: /admin }}, upstream: rec, auth: {{ any_of: [keys], scopes: [admin] }} }}
  - {{ name: public, match: {{ path_prefix: / }}, upstream: rec, auth: none }}
"#,
        url = up.url()
    )
}

/// A key with scope `admin` (the `K_ADMIN` of docs/attack-cases.md).
async fn admin_key(gw: &Gw) -> String {
    let (st, v) = admin_call(
        &plain_client(),
        &gw.admin(),
        reqwest::Method::POST,
        "/admin/keys",
        Some(serde_json::json!({ "name": "smug", "scopes": ["admin"] })),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    v["key"].as_str().unwrap().to_owned()
}

/// How long one connection of a case may take: the gateway closes it (or the case fails).
const CASE_BOUND: Duration = Duration::from_secs(15);

/// A request on a fresh connection after the case: the gateway still serves, and the recorder has
/// had its turn to log whatever the gateway wrote before.
async fn barrier(gw: &Gw, up: &RawUp) -> Option<String> {
    let ex = exchange_steps(
        gw.addr("plain"),
        &[b"GET /__barrier HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec()],
        CASE_BOUND,
    )
    .await;
    let (r, _) = parse_responses(&ex.bytes, ex.closed);
    if r.first().map(|r| r.status) != Some(200) || !up.wait_answered("/__barrier").await {
        return Some(format!(
            "the barrier request after the case failed: {:?}",
            lossy(&ex.bytes)
        ));
    }
    None
}

/// What the upstream answered and received, for the per-row log line.
fn up_summary(up: &RawUp) -> String {
    let lines: Vec<String> = up.answered().iter().map(UpReq::line).collect();
    let conns: Vec<String> = up
        .bytes()
        .iter()
        .map(|b| {
            let v = view(b);
            let barrier = v.reqs.iter().filter(|r| r.is_barrier()).count();
            format!(
                "{} bytes/{} requests{}{}",
                b.len(),
                v.reqs.len() - barrier,
                if barrier > 0 { " + barrier" } else { "" },
                if v.rest.is_empty() {
                    String::new()
                } else {
                    format!(" + {} unfinished bytes", v.rest.len())
                }
            )
        })
        .collect();
    format!("upstream answered {lines:?}; upstream connections {conns:?}")
}

/// Checks shared by every case on the upstream's bytes: framing, no tunnel, no remainder unless
/// `partial_ok`, and `/admin` only where an authorized request line put it.
fn upstream_problems(up: &RawUp, partial_ok: bool, marker_in_body_ok: bool) -> Vec<String> {
    let mut p = Vec::new();
    let views = up.views();
    for (i, v) in views.iter().enumerate() {
        if let Some(e) = &v.error {
            p.push(format!(
                "upstream connection {i}: framing violation: {e}; bytes: {:?}",
                lossy(&up.bytes()[i])
            ));
        }
        if !v.tunnel.is_empty() {
            p.push(format!(
                "upstream connection {i}: {} bytes tunnelled after a 101: {:?}",
                v.tunnel.len(),
                lossy(&v.tunnel)
            ));
        }
        if !v.rest.is_empty() && !partial_ok && v.error.is_none() {
            p.push(format!(
                "upstream connection {i}: {} bytes after the last complete request: {:?}",
                v.rest.len(),
                lossy(&v.rest)
            ));
        }
    }
    // One request line per request: no other `HTTP/1.x` line rides along in a body or after it
    // (unless the case's body legitimately carries one, SMUG-02).
    if !marker_in_body_ok {
        for (i, (v, b)) in views.iter().zip(up.bytes()).enumerate() {
            let lines = count(&b, b" HTTP/1.");
            let heads = v.reqs.len() + usize::from(!v.rest.is_empty());
            if lines > heads {
                p.push(format!(
                    "upstream connection {i}: {lines} request lines for {heads} requests: {:?}",
                    lossy(&b)
                ));
            }
        }
    }
    // `/admin` may appear only in the request lines of answered (authorized) requests.
    let allowed: usize = up
        .answered()
        .iter()
        .map(|r| count(r.target.as_bytes(), b"/admin"))
        .sum();
    let found: usize = if marker_in_body_ok {
        views
            .iter()
            .map(|v| {
                v.reqs
                    .iter()
                    .map(|r| count(r.head.as_bytes(), b"/admin"))
                    .sum::<usize>()
                    + count(&v.rest, b"/admin")
                    + count(&v.tunnel, b"/admin")
            })
            .sum()
    } else {
        up.bytes().iter().map(|b| count(b, b"/admin")).sum()
    };
    if found != allowed {
        p.push(format!(
            "`/admin` appears {found} times in the upstream's bytes, {allowed} of them in authorized request lines: {:?}",
            up.bytes().iter().map(|b| lossy(b)).collect::<Vec<_>>()
        ));
    }
    p
}

// ------------------------------------------------------------------------------------------------
// HTTP/1.1 cases

/// One acceptable outcome: the final responses the client gets, in order, and the requests the
/// upstream answers (`METHOD target`), in order, with their bodies when given. `statuses: &[]`
/// means the connection is closed without a response.
struct Alt {
    statuses: &'static [u16],
    up: &'static [&'static str],
    bodies: Option<&'static [&'static [u8]]>,
}

const REFUSED: Alt = Alt {
    statuses: &[400],
    up: &[],
    bodies: None,
};
const CLOSED: Alt = Alt {
    statuses: &[],
    up: &[],
    bodies: None,
};

enum Req {
    /// Steps written on one connection; step k once k final responses have arrived.
    Raw(&'static [&'static [u8]]),
    Gen(fn() -> Vec<Vec<u8>>),
}

type ReqCheck = fn(&UpReq) -> Result<(), String>;
type RespCheck = fn(&[Resp]) -> Result<(), String>;

struct H1Case {
    id: &'static str,
    req: Req,
    alts: &'static [Alt],
    /// The upstream may see the head and part of the body of a request whose body then turns out
    /// to be malformed (an aborted connection), but never a complete request.
    partial_ok: bool,
    /// The body legitimately carries `/admin` (SMUG-02 when TE wins).
    marker_in_body_ok: bool,
    /// Checked on every request the upstream answered.
    up_check: Option<ReqCheck>,
    resp_check: Option<RespCheck>,
}

const fn case(id: &'static str, req: &'static [&'static [u8]], alts: &'static [Alt]) -> H1Case {
    H1Case {
        id,
        req: Req::Raw(req),
        alts,
        partial_ok: false,
        marker_in_body_ok: false,
        up_check: None,
        resp_check: None,
    }
}

const fn partial(mut c: H1Case) -> H1Case {
    c.partial_ok = true;
    c
}

const fn with_up_check(mut c: H1Case, f: ReqCheck) -> H1Case {
    c.up_check = Some(f);
    c
}

const fn with_resp_check(mut c: H1Case, f: RespCheck) -> H1Case {
    c.resp_check = Some(f);
    c
}

fn single_cl_5(r: &UpReq) -> Result<(), String> {
    let cl = r.all("content-length");
    if cl.len() != 1 || cl[0].parse::<u64>().ok() != Some(5) {
        return Err(format!(
            "the upstream should see a single Content-Length reading 5, saw {cl:?}"
        ));
    }
    Ok(())
}

fn host_is_a(r: &UpReq) -> Result<(), String> {
    if r.all("host") != ["a"] {
        return Err(format!(
            "the upstream saw Host {:?}, not [\"a\"]",
            r.all("host")
        ));
    }
    Ok(())
}

fn no_upgrade(r: &UpReq) -> Result<(), String> {
    let conn_upgrade = r.all("connection").iter().any(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    if !r.all("upgrade").is_empty() || conn_upgrade || !r.all("http2-settings").is_empty() {
        return Err(format!("an h2c upgrade reached the upstream:\n{}", r.head));
    }
    Ok(())
}

fn unrequested_upgrade_is_502(rs: &[Resp]) -> Result<(), String> {
    let first = rs.first().ok_or("no response")?;
    let v: serde_json::Value = serde_json::from_slice(&first.body).map_err(|e| e.to_string())?;
    if v["error"] != "bad_gateway" || first.header("upgrade").is_some() {
        return Err(format!("first response {first:?}"));
    }
    Ok(())
}

fn smug07() -> Vec<Vec<u8>> {
    // gzip.compress(b"hello", mtime=0), sent as one chunk
    const GZ: [u8; 25] = [
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9,
        0x07, 0x00, 0x86, 0xa6, 0x10, 0x36, 0x05, 0x00, 0x00, 0x00,
    ];
    let mut r =
        b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n19\r\n"
            .to_vec();
    r.extend_from_slice(&GZ);
    r.extend_from_slice(b"\r\n0\r\n\r\n");
    vec![r]
}

fn smug12_long_extension() -> Vec<Vec<u8>> {
    let mut r =
        b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;".to_vec();
    r.extend(b"a=b;".repeat(5000));
    r.extend_from_slice(b"\r\nhello\r\n0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n");
    vec![r]
}

const SMUG02_BODY: &[u8] =
    b"GPOST /admin/keys HTTP/1.1\r\nHost: a\r\nContent-Length: 15\r\n\r\nx=1";
/// A chunked `hello` accepted and re-framed, and the request pipelined behind it refused.
const REFRAMED_THEN_401: Alt = Alt {
    statuses: &[200, 401],
    up: &["POST /public"],
    bodies: Some(&[b"hello"]),
};
const POST_HELLO: Alt = Alt {
    statuses: &[200],
    up: &["POST /public"],
    bodies: Some(&[b"hello"]),
};
const GET_PUBLIC: Alt = Alt {
    statuses: &[200],
    up: &["GET /public"],
    bodies: Some(&[b""]),
};
/// `GET /public` answered, and the request pipelined behind it refused.
const GET_PUBLIC_THEN_401: Alt = Alt {
    statuses: &[200, 401],
    up: &["GET /public"],
    bodies: Some(&[b""]),
};

static FRAMING: &[H1Case] = &[
    // SMUG-01 cloudflare/pingora#945 (CL.TE): https://github.com/cloudflare/pingora/issues/945 ; envoyproxy/envoy#9316 https://github.com/envoyproxy/envoy/pull/9316
    case(
        "SMUG-01 CL.TE",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[REFUSED, Alt { statuses: &[200], up: &["POST /public"], bodies: Some(&[b""]) }],
    ),
    // SMUG-02 cloudflare/pingora#945 (TE.CL): https://github.com/cloudflare/pingora/issues/945
    H1Case {
        marker_in_body_ok: true,
        ..case(
            "SMUG-02 TE.CL",
            &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n3e\r\nGPOST /admin/keys HTTP/1.1\r\nHost: a\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n"],
            &[REFUSED, Alt { statuses: &[200], up: &["POST /public"], bodies: Some(&[SMUG02_BODY]) }],
        )
    },
    // SMUG-03 h2o/h2o#3396 (first vs last Content-Length): https://github.com/h2o/h2o/issues/3396
    case(
        "SMUG-03 CL 0 then CL 37",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 37\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[REFUSED],
    ),
    // SMUG-04 RFC 9110 §8.6; haproxy/haproxy#2237: https://github.com/haproxy/haproxy/issues/2237
    with_up_check(
        case(
            "SMUG-04a CL 5 twice",
            &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"],
            &[POST_HELLO],
        ),
        single_cl_5,
    ),
    // SMUG-04 RFC 9110 §8.6; haproxy/haproxy#2237: https://github.com/haproxy/haproxy/issues/2237
    with_up_check(
        case(
            "SMUG-04b CL `5, 5`",
            &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello"],
            &[REFUSED, POST_HELLO],
        ),
        single_cl_5,
    ),
    // SMUG-04 RFC 9110 §8.6; haproxy/haproxy#2237: https://github.com/haproxy/haproxy/issues/2237
    case(
        "SMUG-04c CL `5, 6`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello"],
        &[REFUSED],
    ),
    // SMUG-05 HAProxy CVE-2023-40225 (empty CL), haproxy/haproxy#2237: https://github.com/haproxy/haproxy/issues/2237
    case(
        "SMUG-05 CL empty",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\nhello"],
        &[REFUSED],
    ),
    // SMUG-05 HAProxy CVE-2023-40225, openshift/router#505: https://github.com/openshift/router/pull/505
    case(
        "SMUG-05 CL `+5`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"],
        &[REFUSED],
    ),
    // SMUG-05 HAProxy CVE-2023-40225, haproxy/haproxy#2237: https://github.com/haproxy/haproxy/issues/2237
    case(
        "SMUG-05 CL `-1`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nhello"],
        &[REFUSED],
    ),
    // SMUG-05 HAProxy CVE-2023-40225, haproxy/haproxy#2237: https://github.com/haproxy/haproxy/issues/2237
    case(
        "SMUG-05 CL `0x5`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello"],
        &[REFUSED],
    ),
    // SMUG-05 HAProxy CVE-2023-40225, haproxy/haproxy#2237: https://github.com/haproxy/haproxy/issues/2237
    case(
        "SMUG-05 CL `5.0`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\nhello"],
        &[REFUSED],
    ),
    // SMUG-05 HAProxy CVE-2023-40225, haproxy/haproxy#2237: https://github.com/haproxy/haproxy/issues/2237
    case(
        "SMUG-05 CL `1 2`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\nhello"],
        &[REFUSED],
    ),
    // SMUG-05 HAProxy CVE-2021-40346 (integer overflow), haproxytech/vmware-haproxy#19: https://github.com/haproxytech/vmware-haproxy/issues/19
    case(
        "SMUG-05 CL 2^64",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\nhello"],
        &[REFUSED],
    ),
    // SMUG-05 HAProxy CVE-2023-40225, haproxy/haproxy#2237: https://github.com/haproxy/haproxy/issues/2237
    case(
        "SMUG-05 CL `5\\x0b`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 5\x0b\r\n\r\nhello"],
        &[REFUSED],
    ),
    // SMUG-05 HAProxy CVE-2023-40225, haproxy/haproxy#2237: https://github.com/haproxy/haproxy/issues/2237
    with_up_check(
        case(
            "SMUG-05 CL `05`",
            &[b"POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 05\r\n\r\nhello"],
            &[POST_HELLO],
        ),
        single_cl_5,
    ),
    // SMUG-06 tinyproxy/tinyproxy#616: https://github.com/tinyproxy/tinyproxy/issues/616
    case(
        "SMUG-06 TE `xchunked`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
        &[REFUSED],
    ),
    // SMUG-06 tinyproxy/tinyproxy#616: https://github.com/tinyproxy/tinyproxy/issues/616
    case(
        "SMUG-06 `Transfer-Encoding : chunked`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
        &[REFUSED],
    ),
    // SMUG-06 tinyproxy/tinyproxy#616: https://github.com/tinyproxy/tinyproxy/issues/616
    case(
        "SMUG-06 TE `chunked,`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
        &[REFUSED],
    ),
    // SMUG-06 Pingora CVE-2026-2835 / GHSA-hj7x-879w-vrp7, rustsec/advisory-db#2696: https://github.com/rustsec/advisory-db/pull/2696
    case(
        "SMUG-06 TE `chunked, identity`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
        &[REFUSED],
    ),
    // SMUG-06 tinyproxy/tinyproxy#616: https://github.com/tinyproxy/tinyproxy/issues/616
    case(
        "SMUG-06 TE `\"chunked\"`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
        &[REFUSED],
    ),
    // SMUG-06 ruby/webrick#205 (duplicate TE), via tinyproxy/tinyproxy#616: https://github.com/tinyproxy/tinyproxy/issues/616
    case(
        "SMUG-06 TE chunked then TE identity",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
        &[REFUSED],
    ),
    // SMUG-06 envoyproxy/envoy#15244 (TE with tab): https://github.com/envoyproxy/envoy/pull/15244
    case(
        "SMUG-06 TE `\\tchunked`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
        &[POST_HELLO],
    ),
    // SMUG-06 tinyproxy/tinyproxy#616: https://github.com/tinyproxy/tinyproxy/issues/616
    case(
        "SMUG-06 TE `CHUNKED`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
        &[POST_HELLO],
    ),
    // SMUG-07 envoyproxy/envoy#9316 (refuse unknown transfer codings): https://github.com/envoyproxy/envoy/pull/9316 ; 7etsuo/tetsuo-pulse#3505 https://github.com/7etsuo/tetsuo-pulse/pull/3505
    H1Case {
        req: Req::Gen(smug07),
        ..case(
            "SMUG-07 TE `gzip, chunked`",
            &[],
            &[Alt { statuses: &[501], up: &[], bodies: None }, REFUSED],
        )
    },
    // SMUG-08 Pingora CVE-2026-2835, rustsec/advisory-db#2696: https://github.com/rustsec/advisory-db/pull/2696
    case(
        "SMUG-08a HTTP/1.0 + TE chunked",
        &[b"POST /public HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
        &[REFUSED],
    ),
    // SMUG-08 Pingora CVE-2026-2835, cyberspit write-up: https://cyberspit.com/pingora-request-smuggling-vulnerabilities-cve-2026-2833-2835-2836.html
    case(
        "SMUG-08b HTTP/1.0 without CL, trailing request",
        &[b"POST /public HTTP/1.0\r\nHost: a\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[Alt { statuses: &[200], up: &["POST /public"], bodies: Some(&[b""]) }],
    ),
    // SMUG-09 ruby/webrick#205 (obs-fold on TE), via tinyproxy/tinyproxy#616: https://github.com/tinyproxy/tinyproxy/issues/616
    case(
        "SMUG-09 obs-fold TE",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n chunked\r\nContent-Length: 5\r\n\r\nhello"],
        &[REFUSED],
    ),
    // SMUG-10 HackTricks-wiki/hacktricks#2585 (bare LF/CR): https://github.com/HackTricks-wiki/hacktricks/pull/2585
    case(
        "SMUG-10a bare LF head",
        &[b"GET /public HTTP/1.1\nHost: a\n\n"],
        &[REFUSED, GET_PUBLIC],
    ),
    // SMUG-10 HackTricks-wiki/hacktricks#2585 ; PortSwigger "HTTP/1.1 must die", HackTricks-wiki/hacktricks#1252: https://github.com/HackTricks-wiki/hacktricks/pull/1252
    case(
        "SMUG-10b bare CR in a value",
        &[b"GET /public HTTP/1.1\r\nHost: a\r\nX-A: b\rX-Auth-Subject: admin\r\n\r\n"],
        &[REFUSED],
    ),
    // SMUG-10 HackTricks-wiki/hacktricks#2585 (bare LF in chunked framing): https://github.com/HackTricks-wiki/hacktricks/pull/2585
    partial(case(
        "SMUG-10c bare LF chunk lines",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[REFUSED, CLOSED],
    )),
    // SMUG-11 HAProxy CVE-2021-40346 (overflow), haproxytech/vmware-haproxy#19: https://github.com/haproxytech/vmware-haproxy/issues/19
    partial(case(
        "SMUG-11 chunk size `0x5`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[REFUSED, CLOSED],
    )),
    // SMUG-11 rustsec/advisory-db#2967 (vibeio-http chunked): https://github.com/rustsec/advisory-db/pull/2967
    partial(case(
        "SMUG-11 chunk size `-5`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[REFUSED, CLOSED],
    )),
    // SMUG-11 rustsec/advisory-db#2967: https://github.com/rustsec/advisory-db/pull/2967
    partial(case(
        "SMUG-11 chunk size `+5`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[REFUSED, CLOSED],
    )),
    // SMUG-11 rustsec/advisory-db#2967: https://github.com/rustsec/advisory-db/pull/2967
    partial(case(
        "SMUG-11 chunk size ` 5`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[REFUSED, CLOSED],
    )),
    // SMUG-11 HAProxy CVE-2021-40346 (overflow), haproxytech/vmware-haproxy#19: https://github.com/haproxytech/vmware-haproxy/issues/19
    partial(case(
        "SMUG-11 chunk size 17 hex digits",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[REFUSED, CLOSED],
    )),
    // SMUG-11 rustsec/advisory-db#2967: https://github.com/rustsec/advisory-db/pull/2967
    // The document expects 400 or a close, but `5 ;x` is valid chunked syntax: RFC 9112 §7.1.1
    // allows BWS before `;`. Accepting it is safe as long as the gateway re-frames the body
    // (the strict recorder refuses any chunk extension reaching the upstream) and the request
    // behind it is answered on its own (401, never forwarded).
    partial(case(
        "SMUG-11 chunk size `5 ;x`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 ;x\r\nhello\r\n0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[REFUSED, CLOSED, REFRAMED_THEN_401],
    )),
    // SMUG-11 rustsec/advisory-db#2967: https://github.com/rustsec/advisory-db/pull/2967
    // A NUL is not a token character, so this extension is invalid (RFC 9112 §7.1.1), and the
    // document expects 400 or a close. hyper skips extension bytes (refusing only CR/LF in them
    // and more than 16 KiB, SMUG-12a) and the gateway never forwards them: the upstream gets its
    // own framing, which the strict recorder checks, and the request behind is answered on its
    // own. That is safe, so this row accepts it too (reported as a document correction).
    partial(case(
        "SMUG-11 chunk size `5;\\x00`",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;\x00\r\nhello\r\n0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[REFUSED, CLOSED, REFRAMED_THEN_401],
    )),
    // SMUG-12 twisted/twisted#1563 (chunk-extension length cap): https://github.com/twisted/twisted/pull/1563
    H1Case {
        req: Req::Gen(smug12_long_extension),
        ..partial(case("SMUG-12a 20 000-byte chunk extension", &[], &[REFUSED, CLOSED]))
    },
    // SMUG-12 twisted/twisted#1563 (chunk data overrun): https://github.com/twisted/twisted/pull/1563
    partial(case(
        "SMUG-12b chunk data longer than its size",
        &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[REFUSED, CLOSED],
    )),
    // SMUG-13 zoxy-io/zoxy#263 (trailer carrying Content-Length); freeunitorg/freeunit#148: https://github.com/freeunitorg/freeunit/pull/148
    // (a 400 for the framing fields in the trailer section is also safe: nothing reaches the
    // upstream and the trailer cannot change framing, Host or routing.)
    with_up_check(
        case(
            "SMUG-13 framing fields in trailers",
            &[b"POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\nHost: evil\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
            &[
                Alt { statuses: &[200, 401], up: &["POST /public"], bodies: Some(&[b"hello"]) },
                REFUSED,
            ],
        ),
        host_is_a,
    ),
];

static DENIED_AND_UPGRADES: &[H1Case] = &[
    // SMUG-14 Pingora CVE-2025-4366 (body not drained before reuse), rustsec/advisory-db#2322: https://github.com/rustsec/advisory-db/pull/2322
    case(
        "SMUG-14 denied body, then a request",
        &[
            b"POST /admin/keys HTTP/1.1\r\nHost: a\r\nContent-Length: 37\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /public HTTP/1.1\r\nHost: a\r\n\r\n",
        ],
        &[
            Alt { statuses: &[401, 200], up: &["GET /public"], bodies: Some(&[b""]) },
            Alt { statuses: &[401], up: &[], bodies: None },
        ],
    ),
    // SMUG-14 Pingora CVE-2025-4366, rustsec/advisory-db#2322 (the same, pipelined in one write): https://github.com/rustsec/advisory-db/pull/2322
    case(
        "SMUG-14 denied body, pipelined request",
        &[b"POST /admin/keys HTTP/1.1\r\nHost: a\r\nContent-Length: 37\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\nGET /public HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[
            Alt { statuses: &[401, 200], up: &["GET /public"], bodies: Some(&[b""]) },
            Alt { statuses: &[401], up: &[], bodies: None },
        ],
    ),
    // SMUG-15 own (same class as SMUG-14): Expect: 100-continue on a denied request
    case(
        "SMUG-15 Expect: 100-continue, denied",
        &[b"POST /admin/keys HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 37\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[Alt { statuses: &[401], up: &[], bodies: None }],
    ),
    // SMUG-16 Pingora CVE-2026-2833 / GHSA-xq2h-p299-vjwv, rustsec/advisory-db#2695: https://github.com/rustsec/advisory-db/pull/2695
    case(
        "SMUG-16 Upgrade answered 200, pipelined request",
        &[b"GET /public/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[
            Alt { statuses: &[200, 401], up: &["GET /public/ws"], bodies: Some(&[b""]) },
            Alt { statuses: &[200], up: &["GET /public/ws"], bodies: Some(&[b""]) },
        ],
    ),
    // SMUG-17 own (the mirror case of SMUG-16): the upstream answers 101 to a request without Upgrade
    with_resp_check(
        case(
            "SMUG-17 unrequested 101",
            &[b"GET /switch HTTP/1.1\r\nHost: a\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
            &[
                Alt { statuses: &[502, 401], up: &["GET /switch"], bodies: Some(&[b""]) },
                Alt { statuses: &[502], up: &["GET /switch"], bodies: Some(&[b""]) },
            ],
        ),
        unrequested_upgrade_is_502,
    ),
    // SMUG-18 BishopFox h2csmuggler, gwen001/offsectools_www#279: https://github.com/gwen001/offsectools_www/issues/279 ; traefik/traefik#9341 https://github.com/traefik/traefik/issues/9341
    with_up_check(
        case(
            "SMUG-18a Upgrade: h2c",
            &[b"GET /public HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
            &[REFUSED, GET_PUBLIC_THEN_401, GET_PUBLIC],
        ),
        no_upgrade,
    ),
    // SMUG-18 dotnet/yarp#877: https://github.com/dotnet/yarp/issues/877 (upper-case protocol token)
    with_up_check(
        case(
            "SMUG-18b Upgrade: H2C, no HTTP2-Settings",
            &[b"GET /public HTTP/1.1\r\nHost: a\r\nUpgrade: H2C\r\nConnection: Upgrade\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
            &[REFUSED, GET_PUBLIC_THEN_401, GET_PUBLIC],
        ),
        no_upgrade,
    ),
    // SMUG-18 semgrep/semgrep-rules#3768: https://github.com/semgrep/semgrep-rules/issues/3768 (h2c in a list)
    with_up_check(
        case(
            "SMUG-18c Upgrade: websocket, h2c",
            &[b"GET /public HTTP/1.1\r\nHost: a\r\nUpgrade: websocket, h2c\r\nConnection: Upgrade\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n"],
            &[REFUSED, GET_PUBLIC_THEN_401, GET_PUBLIC],
        ),
        no_upgrade,
    ),
];

/// Pipelining: requests behind a denied one get their own responses, in order, and never ride
/// into the upstream inside another request. `K_ADMIN` is replaced by a real admin key.
static PIPELINING: &[H1Case] = &[
    // own (docs/attack-cases.md section 3, pipelining behind a denied request)
    case(
        "PIPE-01 GETs around denied GET and denied POST with a request as body",
        &[b"GET /public/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\nGET /public/2 HTTP/1.1\r\nHost: a\r\n\r\nPOST /admin/keys HTTP/1.1\r\nHost: a\r\nContent-Length: 37\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\nGET /public/3 HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[Alt {
            statuses: &[200, 401, 200, 401, 200],
            up: &["GET /public/1", "GET /public/2", "GET /public/3"],
            bodies: Some(&[b"", b"", b""]),
        }],
    ),
    // own: the denied request's chunked body is itself a request
    case(
        "PIPE-02 denied chunked POST carrying a request",
        &[b"POST /admin/keys HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n25\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n\r\n0\r\n\r\nGET /public/4 HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[Alt { statuses: &[401, 200], up: &["GET /public/4"], bodies: Some(&[b""]) }],
    ),
    // own: a denied request with a wrong key and a body, between forwarded POSTs with bodies
    case(
        "PIPE-03 bodies around a denied request",
        &[b"POST /public/7 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloPOST /admin/keys HTTP/1.1\r\nHost: a\r\nX-Api-Key: sk_live_not-a-key\r\nContent-Length: 37\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\nPOST /public/8 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
        &[Alt {
            statuses: &[200, 401, 200],
            up: &["POST /public/7", "POST /public/8"],
            bodies: Some(&[b"hello", b"hello"]),
        }],
    ),
    // own, positive control: an authorized /admin request does reach the upstream (the `/admin`
    // oracle can see it), and the unauthorized one behind it does not.
    case(
        "PIPE-04 authorized then unauthorized /admin",
        &[b"GET /admin/keys HTTP/1.1\r\nHost: a\r\nX-Api-Key: K_ADMIN\r\n\r\nGET /admin/keys?second HTTP/1.1\r\nHost: a\r\n\r\nGET /public/5 HTTP/1.1\r\nHost: a\r\n\r\n"],
        &[Alt {
            statuses: &[200, 401, 200],
            up: &["GET /admin/keys", "GET /public/5"],
            bodies: Some(&[b"", b""]),
        }],
    ),
];

fn alts_text(alts: &[Alt]) -> String {
    alts.iter()
        .map(|a| format!("{:?} / upstream {:?}", a.statuses, a.up))
        .collect::<Vec<_>>()
        .join(" | ")
}

async fn run_h1(c: &'static H1Case) -> (Vec<String>, String) {
    let up = RawUp::start().await;
    let gw = Gw::start(&gw_yaml(&up)).await;
    let mut steps: Vec<Vec<u8>> = match &c.req {
        Req::Raw(s) => s.iter().map(|b| b.to_vec()).collect(),
        Req::Gen(f) => f(),
    };
    if steps.iter().any(|s| find_bytes(s, b"K_ADMIN").is_some()) {
        let key = admin_key(&gw).await;
        steps = steps
            .iter()
            .map(|s| replace_bytes(s, b"K_ADMIN", key.as_bytes()))
            .collect();
    }
    let ex = exchange_steps(gw.addr("plain"), &steps, CASE_BOUND).await;
    let mut p = Vec::new();
    if !ex.closed {
        p.push("the gateway did not close the connection within 15 s".into());
    }
    let (resps, perr) = parse_responses(&ex.bytes, ex.closed);
    if let Some(e) = perr {
        p.push(format!("client side: {e}; read {:?}", lossy(&ex.bytes)));
    }
    let interim: Vec<u16> = resps
        .iter()
        .map(|r| r.status)
        .filter(|s| (100..200).contains(s) && *s != 101)
        .collect();
    if !interim.is_empty() {
        p.push(format!("interim responses {interim:?}"));
    }
    let statuses: Vec<u16> = resps
        .iter()
        .map(|r| r.status)
        .filter(|s| !(100..200).contains(s) || *s == 101)
        .collect();
    p.extend(barrier(&gw, &up).await);
    let answered = up.answered();
    let lines: Vec<String> = answered.iter().map(UpReq::line).collect();
    let bodies: Vec<&[u8]> = answered.iter().map(|r| r.body.as_slice()).collect();
    let matched = c.alts.iter().any(|a| {
        statuses == a.statuses && lines == a.up && a.bodies.is_none_or(|b| bodies.as_slice() == b)
    });
    if !matched {
        p.push(format!(
            "got {statuses:?}, upstream answered {lines:?} with bodies {:?}; expected {}; client read {:?}",
            bodies.iter().map(|b| lossy(b)).collect::<Vec<_>>(),
            alts_text(c.alts),
            lossy(&ex.bytes)
        ));
    }
    // Each upstream answer reaches the client once, in order (X-Rec-Target names its request).
    let relayed: Vec<&str> = resps
        .iter()
        .filter_map(|r| r.header("x-rec-target"))
        .collect();
    let expected: Vec<&str> = answered
        .iter()
        .filter(|r| !r.reply().1)
        .map(|r| r.target.as_str())
        .collect();
    if relayed != expected {
        p.push(format!(
            "the client got upstream answers for {relayed:?}, the upstream answered {expected:?}"
        ));
    }
    if let Some(f) = c.up_check {
        for r in &answered {
            if let Err(e) = f(r) {
                p.push(e);
            }
        }
    }
    if let Some(f) = c.resp_check {
        if let Err(e) = f(&resps) {
            p.push(e);
        }
    }
    p.extend(upstream_problems(&up, c.partial_ok, c.marker_in_body_ok));
    let seen = format!("client got {statuses:?}; {}", up_summary(&up));
    (p, seen)
}

/// Runs `run` on every row (a few at a time, each with its own gateway) and fails listing every
/// failing row with its problems.
async fn run_table<C: Sync + 'static, F, Fut>(
    rows: &'static [C],
    id: fn(&C) -> &'static str,
    run: F,
) where
    F: Fn(&'static C) -> Fut,
    Fut: std::future::Future<Output = (Vec<String>, String)> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(6));
    let mut set = tokio::task::JoinSet::new();
    for (i, row) in rows.iter().enumerate() {
        let permits = permits.clone();
        let fut = run(row);
        set.spawn(async move {
            let _p = permits.acquire_owned().await.unwrap();
            (i, fut.await)
        });
    }
    let mut results: Vec<(usize, (Vec<String>, String))> = Vec::new();
    while let Some(r) = set.join_next().await {
        results.push(r.unwrap());
    }
    results.sort_by_key(|(i, _)| *i);
    let mut failures = Vec::new();
    for (i, (problems, seen)) in results {
        let name = id(&rows[i]);
        if problems.is_empty() {
            eprintln!("pass {name}: {seen}");
        } else {
            eprintln!("FAIL {name}: {seen}");
            failures.push(format!("{name}:\n  - {}", problems.join("\n  - ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn smug_01_to_13_framing() {
    run_table(FRAMING, |c| c.id, run_h1).await;
}

#[tokio::test]
async fn smug_14_to_18_denied_bodies_and_upgrades() {
    run_table(DENIED_AND_UPGRADES, |c| c.id, run_h1).await;
}

#[tokio::test]
async fn pipelined_requests_behind_denied_ones() {
    run_table(PIPELINING, |c| c.id, run_h1).await;
}

// ------------------------------------------------------------------------------------------------
// h2c (prior knowledge) cases, with common::h2raw

type Field = (&'static [u8], &'static [u8]);
type Fields = &'static [Field];

enum F {
    /// HEADERS (END_HEADERS set) from the concatenated field lists; the bool is END_STREAM.
    H(&'static [Fields], bool),
    D(&'static [u8], bool),
    /// RST_STREAM with an error code.
    Rst(u32),
}

impl F {
    fn encode(&self, out: &mut Vec<u8>, stream: u32) {
        match self {
            // literal fields without indexing (h2raw): the bytes go on the wire exactly as
            // given, CR, LF, NUL and upper case included
            F::H(parts, end) => headers(out, stream, &literal_block(&parts.concat()), *end),
            F::D(payload, end) => data(out, stream, payload, *end),
            F::Rst(code) => rst_stream(out, stream, *code),
        }
    }
}

#[derive(Debug)]
enum H2Out {
    /// A response HEADERS on the stream, with its `:status` when it could be decoded.
    Status(Option<u16>),
    /// RST_STREAM on the stream, with its error code.
    Reset(u32),
    /// GOAWAY with an error code (0 when a graceful GOAWAY was followed by a close).
    #[allow(dead_code)] // the code is for the failure message (Debug)
    GoAway(u32),
    Closed,
    Timeout,
}

impl H2Out {
    fn refused(&self) -> bool {
        match self {
            H2Out::Status(s) => *s == Some(400),
            // NO_ERROR is what a server sends after answering early, not a refusal
            H2Out::Reset(code) => *code != 0,
            H2Out::GoAway(_) | H2Out::Closed => true,
            H2Out::Timeout => false,
        }
    }
}

/// Reads frames until the fate of `stream` is known.
async fn h2_outcome(s: &mut TcpStream, stream: u32) -> H2Out {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut goaway_seen = false;
    loop {
        let f = match tokio::time::timeout_at(deadline, next_frame(s)).await {
            Err(_) => return H2Out::Timeout,
            Ok(None) if goaway_seen => return H2Out::GoAway(0),
            Ok(None) => return H2Out::Closed,
            Ok(Some(f)) => f,
        };
        match (f.kind, f.error_code()) {
            (HEADERS, _) if f.stream == stream => return H2Out::Status(f.status()),
            (RST_STREAM, Some(code)) if f.stream == stream => return H2Out::Reset(code),
            (GOAWAY, Some(NO_ERROR)) => goaway_seen = true,
            (GOAWAY, Some(code)) => return H2Out::GoAway(code),
            _ => {}
        }
    }
}

enum H2Want {
    /// A 200 relayed from the upstream, which answered exactly this request with this body.
    Served(&'static str, &'static [u8]),
    /// RST_STREAM, GOAWAY, a 400 or a closed connection. The upstream answers nothing; with
    /// `Some(n)` it may have seen one `POST /public` with at most `n` body bytes, then an abort.
    Refused(Option<usize>),
}

struct H2Case {
    id: &'static str,
    frames: &'static [F],
    want: H2Want,
}

const GET: Fields = &[
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"a"),
    (b":path", b"/public"),
];
const POST: Fields = &[
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":authority", b"a"),
    (b":path", b"/public"),
];
const CL5: Fields = &[(b"content-length", b"5")];

const fn refused(id: &'static str, frames: &'static [F]) -> H2Case {
    H2Case {
        id,
        frames,
        want: H2Want::Refused(None),
    }
}

static H2C: &[H2Case] = &[
    // control: the encoder speaks valid h2 (every refusal below would otherwise prove nothing)
    H2Case {
        id: "H2C control GET",
        frames: &[F::H(&[GET], true)],
        want: H2Want::Served("GET /public", b""),
    },
    // control: a POST whose content-length agrees with its DATA
    H2Case {
        id: "H2C control POST content-length 5",
        frames: &[F::H(&[POST, CL5], false), F::D(b"hello", true)],
        want: H2Want::Served("POST /public", b"hello"),
    },
    // SMUG-19 Kludex/zttp#92 (h2->h1 CL guard): https://github.com/Kludex/zttp/pull/92 ; tempesta-tech/tempesta#2122 (H2.CL) https://github.com/tempesta-tech/tempesta/issues/2122
    H2Case {
        id: "SMUG-19a content-length 5, DATA carries a request",
        frames: &[
            F::H(&[POST, CL5], false),
            F::D(b"helloGET /admin/keys HTTP/1.1\r\nHost: a\r\n\r\n", true),
        ],
        want: H2Want::Refused(Some(5)),
    },
    // SMUG-19 OWASP/ASVS#1154 (13.7.1): https://github.com/OWASP/ASVS/issues/1154
    H2Case {
        id: "SMUG-19b content-length 5, END_STREAM on HEADERS",
        frames: &[F::H(&[POST, CL5], true)],
        want: H2Want::Refused(Some(5)),
    },
    // SMUG-19 Kludex/zttp#92 (every end-of-stream path, trailers): https://github.com/Kludex/zttp/pull/92
    H2Case {
        id: "SMUG-19c content-length 5, DATA `hel`, trailers",
        frames: &[
            F::H(&[POST, CL5], false),
            F::D(b"hel", false),
            F::H(&[&[(b"x-t", b"1")]], true),
        ],
        want: H2Want::Refused(Some(5)),
    },
    // SMUG-19 own variant (tempesta-tech/tempesta#2122 class): the client resets mid-body; the
    // upstream must never get a complete request out of the first 3 bytes.
    H2Case {
        id: "SMUG-19d content-length 5, DATA `hel`, RST_STREAM",
        frames: &[F::H(&[POST, CL5], false), F::D(b"hel", false), F::Rst(0x8)],
        want: H2Want::Refused(Some(5)),
    },
    // SMUG-20 OWASP/ASVS#1154 (13.7.2): https://github.com/OWASP/ASVS/issues/1154 ; Envoy CVE-2023-27491
    refused(
        "SMUG-20 transfer-encoding: chunked",
        &[F::H(&[GET, &[(b"transfer-encoding", b"chunked")]], true)],
    ),
    // SMUG-20 OWASP/ASVS#1154 (13.7.2): https://github.com/OWASP/ASVS/issues/1154
    refused(
        "SMUG-20 connection: keep-alive",
        &[F::H(&[GET, &[(b"connection", b"keep-alive")]], true)],
    ),
    // SMUG-20 OWASP/ASVS#1154 (13.7.2): https://github.com/OWASP/ASVS/issues/1154
    refused(
        "SMUG-20 keep-alive: 1",
        &[F::H(&[GET, &[(b"keep-alive", b"1")]], true)],
    ),
    // SMUG-20 OWASP/ASVS#1154 (13.7.2): https://github.com/OWASP/ASVS/issues/1154
    refused(
        "SMUG-20 proxy-connection: x",
        &[F::H(&[GET, &[(b"proxy-connection", b"x")]], true)],
    ),
    // SMUG-20 OWASP/ASVS#1154 (13.7.2): https://github.com/OWASP/ASVS/issues/1154
    refused(
        "SMUG-20 upgrade: websocket",
        &[F::H(&[GET, &[(b"upgrade", b"websocket")]], true)],
    ),
    // SMUG-20 OWASP/ASVS#1154 (13.7.2): https://github.com/OWASP/ASVS/issues/1154
    refused(
        "SMUG-20 te: gzip",
        &[F::H(&[GET, &[(b"te", b"gzip")]], true)],
    ),
    // SMUG-21 OWASP/ASVS#1154 (13.7.3): https://github.com/OWASP/ASVS/issues/1154 ; HackTricks#2585 https://github.com/HackTricks-wiki/hacktricks/pull/2585
    refused(
        "SMUG-21 value with CRLF + header",
        &[F::H(
            &[GET, &[(b"x-foo", b"a\r\nx-auth-subject: admin")]],
            true,
        )],
    ),
    // SMUG-21 HackTricks-wiki/hacktricks#2585: https://github.com/HackTricks-wiki/hacktricks/pull/2585
    refused(
        "SMUG-21 value with LF",
        &[F::H(&[GET, &[(b"x-foo", b"a\nb")]], true)],
    ),
    // SMUG-21 HackTricks-wiki/hacktricks#2585 (bare CR): https://github.com/HackTricks-wiki/hacktricks/pull/2585
    refused(
        "SMUG-21 value with CR",
        &[F::H(&[GET, &[(b"x-foo", b"a\rb")]], true)],
    ),
    // SMUG-21 OWASP/ASVS#1154 (13.7.3): https://github.com/OWASP/ASVS/issues/1154
    refused(
        "SMUG-21 value with NUL",
        &[F::H(&[GET, &[(b"x-foo", b"a\x00")]], true)],
    ),
    // SMUG-21 litespeedtech/ls-hpack#22 (trailing whitespace in names): https://github.com/litespeedtech/ls-hpack/issues/22
    refused(
        "SMUG-21 name `x-auth-subject\\t`",
        &[F::H(&[GET, &[(b"x-auth-subject\t", b"admin")]], true)],
    ),
    // SMUG-21 OWASP/ASVS#1154 (13.7.3, upper-case names): https://github.com/OWASP/ASVS/issues/1154
    refused(
        "SMUG-21 name `X-Auth-Subject`",
        &[F::H(&[GET, &[(b"X-Auth-Subject", b"admin")]], true)],
    ),
    // SMUG-22 HackTricks-wiki/hacktricks#2585 (request-line injection): https://github.com/HackTricks-wiki/hacktricks/pull/2585
    refused(
        "SMUG-22 :path with a request line",
        &[F::H(
            &[&[
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"a"),
                (
                    b":path",
                    b"/public HTTP/1.1\r\nHost: a\r\n\r\nGET /admin/keys",
                ),
            ]],
            true,
        )],
    ),
    // SMUG-22 HackTricks-wiki/hacktricks#2585: https://github.com/HackTricks-wiki/hacktricks/pull/2585
    refused(
        "SMUG-22 :method `GET /admin HTTP/1.1`",
        &[F::H(
            &[&[
                (b":method", b"GET /admin HTTP/1.1"),
                (b":scheme", b"http"),
                (b":authority", b"a"),
                (b":path", b"/public"),
            ]],
            true,
        )],
    ),
    // SMUG-22 HackTricks-wiki/hacktricks#2585: https://github.com/HackTricks-wiki/hacktricks/pull/2585
    refused(
        "SMUG-22 missing :path",
        &[F::H(
            &[&[
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"a"),
            ]],
            true,
        )],
    ),
    // SMUG-22 HackTricks-wiki/hacktricks#2585: https://github.com/HackTricks-wiki/hacktricks/pull/2585
    refused(
        "SMUG-22 two :path",
        &[F::H(&[GET, &[(b":path", b"/admin/keys")]], true)],
    ),
    // SMUG-22 HackTricks-wiki/hacktricks#2585: https://github.com/HackTricks-wiki/hacktricks/pull/2585
    refused(
        "SMUG-22 pseudo-header after a regular one",
        &[F::H(
            &[&[
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b"x-a", b"b"),
                (b":authority", b"a"),
                (b":path", b"/public"),
            ]],
            true,
        )],
    ),
    // SMUG-22 HackTricks-wiki/hacktricks#2585: https://github.com/HackTricks-wiki/hacktricks/pull/2585
    refused(
        "SMUG-22 :authority `a b`",
        &[F::H(
            &[&[
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"a b"),
                (b":path", b"/public"),
            ]],
            true,
        )],
    ),
];

async fn run_h2(c: &'static H2Case) -> (Vec<String>, String) {
    let up = RawUp::start().await;
    let gw = Gw::start(&gw_yaml(&up)).await;
    let mut s = TcpStream::connect(gw.addr("plain")).await.unwrap();
    let mut out = client_preface(&[]);
    for f in c.frames {
        f.encode(&mut out, 1);
    }
    s.write_all(&out).await.unwrap();
    let outcome = h2_outcome(&mut s, 1).await;
    let mut p = Vec::new();
    p.extend(barrier(&gw, &up).await);
    drop(s);
    let answered = up.answered();
    let lines: Vec<String> = answered.iter().map(UpReq::line).collect();
    let partial_ok = match c.want {
        H2Want::Served(line, body) => {
            if !matches!(outcome, H2Out::Status(Some(200))) {
                p.push(format!("expected a 200, got {outcome:?}"));
            }
            if lines != [line] || answered[0].body != body {
                p.push(format!(
                    "the upstream should answer `{line}` with body {:?}, answered {lines:?} {:?}",
                    lossy(body),
                    answered.iter().map(|r| lossy(&r.body)).collect::<Vec<_>>()
                ));
            }
            false
        }
        H2Want::Refused(max) => {
            if !outcome.refused() {
                p.push(format!(
                    "expected RST_STREAM, GOAWAY, a 400 or a close, got {outcome:?}"
                ));
            }
            let ok = match max {
                None => answered.is_empty(),
                Some(n) => {
                    answered.is_empty()
                        || (answered.len() == 1
                            && lines[0] == "POST /public"
                            && answered[0].body.len() <= n)
                }
            };
            if !ok {
                p.push(format!(
                    "the upstream answered {lines:?} with bodies {:?}",
                    answered.iter().map(|r| lossy(&r.body)).collect::<Vec<_>>()
                ));
            }
            max.is_some()
        }
    };
    p.extend(upstream_problems(&up, partial_ok, false));
    let seen = format!("client got {outcome:?}; {}", up_summary(&up));
    (p, seen)
}

#[tokio::test]
async fn smug_19_to_22_h2c() {
    run_table(H2C, |c| c.id, run_h2).await;
}

// ------------------------------------------------------------------------------------------------
// The harness itself

/// The recorder's strict parser finds the violations the cases rely on, so a pass means something.
#[test]
fn the_raw_recorder_flags_bad_framing() {
    let bad: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
        b"GET /  HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhelloX\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n",
    ];
    for b in bad {
        assert!(matches!(parse_request(b), Parse::Bad(_)), "{:?}", lossy(b));
    }
    let v = view(b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /q HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nokGET /admin");
    assert_eq!(v.reqs.len(), 2);
    assert_eq!(v.reqs[0].body, b"hello");
    assert_eq!(v.reqs[1].line(), "GET /q");
    assert_eq!(v.rest, b"GET /admin");
    assert!(v.error.is_none());
    let v = view(b"GET /public HTTP/1.1\r\nUpgrade: h2c\r\n\r\nPRI * HTTP/2.0");
    assert_eq!(v.tunnel, b"PRI * HTTP/2.0");
    // HPACK: literal encoding, and the status decoder on what h2 sends (indexed 200, and a
    // Huffman-coded 401 under the :status name).
    let mut i = Vec::new();
    hpack_int(&mut i, 0, 7, 300);
    assert_eq!(i, [0x7f, 0xad, 0x01]);
    let status = |block: &[u8]| {
        Frame {
            kind: HEADERS,
            flags: END_HEADERS,
            stream: 1,
            payload: block.to_vec(),
        }
        .status()
    };
    assert_eq!(status(&[0x88]), Some(200));
    assert_eq!(status(&[0x48, 0x82, 0x68, 0x01]), Some(401));
    assert_eq!(status(&[0x08, 0x03, b'5', b'0', b'1']), Some(501));
}
