//! Raw HTTP/1.1 responses, for the tests that put exact bytes on the wire (RFC 9112 sections 4,
//! 6 and 7.1): one parser of response framing, and the readers and clients built on it.
//!
//! The parser is strict about framing: a status line `HTTP/1.x NNN`, header lines (names lower
//! cased, values trimmed), then the body by RFC 9112 section 6.3: none after a 1xx, 204 or 304
//! (and nothing after a 101 is HTTP/1.1 any more), `Transfer-Encoding: chunked` (bare hex sizes,
//! CRLF after each chunk, no framing or Host trailer), `Content-Length`, or else everything up
//! to the close of the connection. Anything else is a framing problem, reported as text.
#![allow(dead_code)] // each test binary uses a different part of this module

use super::find_bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

// ------------------------------------------------------------------------------------------------
// One response

#[derive(Debug, Clone)]
pub struct Resp {
    /// The first word of the status line (`HTTP/1.1`).
    pub version: String,
    pub status: u16,
    /// In order, names lower case, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body without its framing (chunks joined).
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of the header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, or null.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The first 300 characters of the body, for messages.
    pub fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        s.chars().take(300).collect()
    }
}

/// A response or why there is none, for messages: `200 {"ok":...}` or `no response (why)`.
pub fn brief(answer: &Result<Resp, String>) -> String {
    match answer {
        Ok(r) => format!("{} {}", r.status, r.text()),
        Err(why) => format!("no response ({why})"),
    }
}

/// `b` as text for messages, cut after 300 bytes.
pub fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() <= 300 {
        return s.into_owned();
    }
    let mut i = 300;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    format!("{}...({} bytes)", &s[..i], b.len())
}

/// The status code of whatever starts `bytes` (a response head, or the first bytes read): the
/// second space-separated word, or 0. For a raw prefix, where [`parse_response`] needs the head.
pub fn status_of(bytes: &[u8]) -> u16 {
    let t = String::from_utf8_lossy(bytes);
    t.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub enum Parsed {
    /// A complete response and the number of bytes it took.
    Done(Resp, usize),
    /// More bytes are needed (what is missing).
    Incomplete(String),
    /// A framing violation.
    Bad(String),
}

/// Frames one response at the start of `buf`. `closed`: the peer has closed the connection after
/// `buf`, so a response without framing ends with `buf`.
pub fn parse_response(buf: &[u8], closed: bool) -> Parsed {
    let Some(end) = find_bytes(buf, b"\r\n\r\n") else {
        return Parsed::Incomplete(format!("an unfinished response head {:?}", lossy(buf)));
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let sl = lines.next().unwrap_or("");
    let status: Option<u16> = sl
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse().ok());
    let Some(status) = status else {
        return Parsed::Bad(format!("not a status line: {sl:?}"));
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let start = end + 4;
    let mut r = Resp {
        version: sl.split(' ').next().unwrap_or("").to_owned(),
        status,
        headers,
        body: Vec::new(),
    };
    // after a 101 the connection speaks another protocol
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Parsed::Done(r, start);
    }
    let chunked = r
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        return match parse_chunked(buf, start) {
            Ok(Some((body, _, used))) => {
                r.body = body;
                Parsed::Done(r, used)
            }
            Ok(None) => Parsed::Incomplete("an unfinished chunked response".into()),
            Err(e) => Parsed::Bad(format!("a bad chunked response: {e}")),
        };
    }
    if let Some(cl) = r.header("content-length") {
        let Ok(n) = cl.parse::<usize>() else {
            return Parsed::Bad(format!("response Content-Length {cl:?}"));
        };
        if buf.len() < start + n {
            return Parsed::Incomplete("an unfinished response body".into());
        }
        r.body = buf[start..start + n].to_vec();
        return Parsed::Done(r, start + n);
    }
    if closed {
        r.body = buf[start..].to_vec();
        return Parsed::Done(r, buf.len());
    }
    Parsed::Incomplete("a response without framing on an open connection".into())
}

/// The responses in what the client read; `Some(problem)` when the bytes do not parse as a clean
/// sequence of responses (bytes after a 101 are a problem too: nothing should follow it here).
pub fn parse_responses(buf: &[u8], closed: bool) -> (Vec<Resp>, Option<String>) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match parse_response(&buf[pos..], closed) {
            Parsed::Done(r, used) => {
                pos += used;
                let switched = r.status == 101;
                out.push(r);
                if switched {
                    let extra = buf.len() - pos;
                    return (
                        out,
                        (extra > 0).then(|| format!("{extra} bytes after a 101")),
                    );
                }
            }
            Parsed::Incomplete(e) | Parsed::Bad(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// The final (non-1xx, or 101) responses that have fully arrived in `bytes`.
pub fn finals(bytes: &[u8]) -> usize {
    parse_responses(bytes, false)
        .0
        .iter()
        .filter(|r| !(100..200).contains(&r.status) || r.status == 101)
        .count()
}

/// (data, trailers, end).
pub type Chunked = (Vec<u8>, Vec<(String, String)>, usize);

/// A chunked body from `pos`: (data, trailers, end), `None` while unfinished. Strict: bare hex
/// sizes only (the gateway re-frames bodies, so no client chunk extension may pass it), CRLF after
/// each chunk, and no trailer field that could change framing or the host.
pub fn parse_chunked(buf: &[u8], mut pos: usize) -> Result<Option<Chunked>, String> {
    let mut body = Vec::new();
    loop {
        let Some(le) = find_bytes(&buf[pos..], b"\r\n") else {
            return if buf.len() - pos > 4096 {
                Err("a chunk size line longer than 4 KiB".into())
            } else {
                Ok(None)
            };
        };
        let line = &buf[pos..pos + le];
        if line.is_empty() || line.len() > 15 || !line.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!(
                "chunk size line {:?}",
                String::from_utf8_lossy(line)
            ));
        }
        let size = usize::from_str_radix(std::str::from_utf8(line).unwrap(), 16).unwrap();
        pos += le + 2;
        if size == 0 {
            let mut trailers = Vec::new();
            loop {
                let Some(le) = find_bytes(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                let line = String::from_utf8_lossy(&buf[pos..pos + le]).into_owned();
                pos += le + 2;
                if line.is_empty() {
                    return Ok(Some((body, trailers, pos)));
                }
                let Some((n, v)) = line.split_once(':') else {
                    return Err(format!("trailer line {line:?}"));
                };
                let n = n.to_ascii_lowercase();
                if matches!(n.as_str(), "content-length" | "transfer-encoding" | "host") {
                    return Err(format!(
                        "trailer field `{n}: {}` reached the upstream",
                        v.trim()
                    ));
                }
                trailers.push((n, v.trim().to_owned()));
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk data longer than its declared size".into());
        }
        pos += size + 2;
    }
}

// ------------------------------------------------------------------------------------------------
// Reading

/// Reads more bytes into `buf`; false at the close of the connection or on an error.
pub async fn read_more<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 16 * 1024];
    match s.read(&mut tmp).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
    }
}

/// Reads until the peer closes the connection (an error counts as a close) or `bound` passes:
/// (what was read, whether the connection closed within `bound`).
pub async fn read_to_close<S: AsyncRead + Unpin>(s: &mut S, bound: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(bound, async { while read_more(s, &mut got).await {} })
        .await
        .is_ok();
    (got, closed)
}

/// Reads until the bytes hold a whole response head, the connection closes or `bound` passes;
/// returns what was read (the status line is there if anything came, see [`status_of`]).
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S, bound: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(bound, async {
        while find_bytes(&got, b"\r\n\r\n").is_none() && read_more(s, &mut got).await {}
    })
    .await;
    got
}

/// Reads one response (a 1xx counts), leaving the connection open: `bound` limits a failure, it
/// is no synchronisation (a correct server answers at once).
pub async fn read_response<S: AsyncRead + Unpin>(
    s: &mut S,
    bound: Duration,
) -> Result<Resp, String> {
    let mut buf = Vec::new();
    let read = async {
        loop {
            match parse_response(&buf, false) {
                Parsed::Done(r, _) => return Ok(r),
                Parsed::Bad(e) => return Err(e),
                Parsed::Incomplete(_) => {}
            }
            if !read_more(s, &mut buf).await {
                return match parse_response(&buf, true) {
                    Parsed::Done(r, _) => Ok(r),
                    Parsed::Incomplete(e) => Err(format!("the connection closed: {e}")),
                    Parsed::Bad(e) => Err(e),
                };
            }
        }
    };
    match tokio::time::timeout(bound, read).await {
        Ok(r) => r,
        Err(_) => Err(format!("no response within {} s", bound.as_secs())),
    }
}

/// Writes `req` on `s` and reads one response (see [`read_response`]).
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &[u8],
    bound: Duration,
) -> Result<Resp, String> {
    if let Err(e) = s.write_all(req).await {
        return Err(format!("write failed: {e}"));
    }
    read_response(s, bound).await
}

/// Writes `req` on a fresh connection and parses the response once the server closed the
/// connection (the request says `Connection: close`). A failed write is not the outcome: a server
/// refusing an oversized head may answer and close before reading it all.
pub async fn request_until_closed(
    addr: SocketAddr,
    req: &[u8],
    bound: Duration,
) -> Result<Resp, String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.write_all(req).await;
    let (buf, closed) = read_to_close(&mut s, bound).await;
    if !closed {
        return Err(format!("no complete response within {} s", bound.as_secs()));
    }
    match parse_response(&buf, true) {
        Parsed::Done(r, _) => Ok(r),
        Parsed::Incomplete(e) | Parsed::Bad(e) => Err(e),
    }
}

/// Writes `req` on a fresh connection while reading the response head (the server may answer and
/// close before the request is fully written); returns the bytes read (see [`read_head`]).
pub async fn head_while_writing(addr: SocketAddr, req: Vec<u8>, bound: Duration) -> Vec<u8> {
    let (mut r, mut w) = TcpStream::connect(addr).await.unwrap().into_split();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&req).await;
        w
    });
    let got = read_head(&mut r, bound).await;
    writer.abort();
    got
}

/// Everything one connection brought back.
pub struct Exchange {
    pub bytes: Vec<u8>,
    /// The server closed the connection (within the bound).
    pub closed: bool,
}

/// Writes `steps` on one connection to `addr` (step k once k final responses have arrived) and
/// reads until the server closes the connection (or `bound` passes).
pub async fn exchange_steps(addr: SocketAddr, steps: &[Vec<u8>], bound: Duration) -> Exchange {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let deadline = Instant::now() + bound;
    let mut got = Vec::new();
    let mut closed = false;
    // Reads once; false when the deadline passed.
    async fn read_some(
        s: &mut TcpStream,
        got: &mut Vec<u8>,
        closed: &mut bool,
        deadline: Instant,
    ) -> bool {
        match tokio::time::timeout_at(deadline, read_more(s, got)).await {
            Err(_) => return false,
            Ok(false) => *closed = true,
            Ok(true) => {}
        }
        true
    }
    for (k, step) in steps.iter().enumerate() {
        while !closed && finals(&got) < k {
            if !read_some(&mut s, &mut got, &mut closed, deadline).await {
                break;
            }
        }
        if closed || finals(&got) < k || s.write_all(step).await.is_err() {
            break;
        }
    }
    while !closed {
        if !read_some(&mut s, &mut got, &mut closed, deadline).await {
            break;
        }
    }
    Exchange { bytes: got, closed }
}
