//! The audit log: one JSON line per request (SPEC section 5): time, request id, listener, route,
//! method, path, client ip, auth method, authenticator, key id / subject / issuer, decision,
//! reason (why refused), failure (why an allowed request failed anyway), status, latency. Never a
//! secret, token or key. It is also the access log: one line per request, in one schema.
//!
//! Cheap on the request path: a line is written straight into a shared buffer (no allocation per
//! field or per line), and a writer thread takes the buffer whole and writes it with one system
//! call, when it holds 64 KiB or every 100 ms. A slow disk never stalls requests: past 4 MiB
//! waiting, lines are dropped. Nothing is lost silently: every line dropped, or lost to a failed
//! write, is counted (`portcullis_audit_dropped_total`) and logged as a warning.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Audit lines dropped or lost to failed writes since the process started (every writer).
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The writer is woken when this much waits.
const FLUSH_AT: usize = 64 << 10;
/// Past this much waiting, lines are dropped.
const MAX_WAITING: usize = 4 << 20;
/// The longest a line waits for the writer.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    Off,
    Stdout,
    File(PathBuf),
}

impl AuditTarget {
    pub fn parse(s: &str, base: &std::path::Path) -> AuditTarget {
        match s {
            "off" => AuditTarget::Off,
            "stdout" | "-" => AuditTarget::Stdout,
            "/dev/null" => AuditTarget::Off,
            p => AuditTarget::File(crate::values::resolve(base, p)),
        }
    }
}

/// One audit line's fields.
pub struct AuditRecord<'a> {
    pub request_id: &'a str,
    pub listener: &'a str,
    pub route: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub client_ip: IpAddr,
    pub auth_method: Option<&'a str>,
    pub authenticator: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub issuer: Option<&'a str>,
    /// `allow` or `deny`.
    pub decision: &'a str,
    /// Why the request was refused (`decision: deny`).
    pub reason: Option<&'a str>,
    /// Why an allowed request failed anyway (the upstream, or the client's body).
    pub failure: Option<&'a str>,
    pub status: u16,
    pub latency_us: u64,
    /// An authorization server event (`token_issued`, `token_revoked`, `client_auth_failed`,
    /// ...); written with `jti` only when set.
    pub event: Option<&'a str>,
    pub token_id: Option<&'a str>,
}

/// What the request path and the writer share.
struct Shared {
    waiting: Mutex<Vec<u8>>,
    wake: Condvar,
    closed: AtomicBool,
}

pub struct Audit {
    pub target: AuditTarget,
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("target", &self.target)
            .finish()
    }
}

impl Audit {
    pub fn off() -> Audit {
        Audit {
            target: AuditTarget::Off,
            shared: None,
        }
    }

    /// Opens the target and starts its writer thread.
    pub fn open(target: AuditTarget) -> std::io::Result<Audit> {
        let out: Box<dyn Write + Send> = match &target {
            AuditTarget::Off => return Ok(Audit::off()),
            AuditTarget::Stdout => Box::new(std::io::stdout()),
            AuditTarget::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let shared = Arc::new(Shared {
            waiting: Mutex::new(Vec::with_capacity(FLUSH_AT * 2)),
            wake: Condvar::new(),
            closed: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || write_loop(&s, out))?;
        Ok(Audit {
            target,
            shared: Some(shared),
        })
    }

    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Adds one line (dropped and counted when the writer is too far behind).
    pub fn record(&self, rec: &AuditRecord<'_>) {
        let Some(s) = &self.shared else { return };
        let mut buf = s.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if buf.len() >= MAX_WAITING {
            drop(buf);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = buf.len();
        write_line(&mut buf, rec);
        if before < FLUSH_AT && buf.len() >= FLUSH_AT {
            s.wake.notify_one();
        }
    }
}

impl Drop for Audit {
    /// The writer writes what is waiting, then ends.
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.closed.store(true, Ordering::Release);
            s.wake.notify_one();
        }
    }
}

fn write_loop(s: &Shared, mut out: Box<dyn Write + Send>) {
    let mut spare: Vec<u8> = Vec::with_capacity(FLUSH_AT * 2);
    let mut reported = 0;
    loop {
        let closed = {
            let mut buf = s.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if buf.is_empty() && !s.closed.load(Ordering::Acquire) {
                buf = s
                    .wake
                    .wait_timeout(buf, FLUSH_EVERY)
                    .map_or_else(|p| p.into_inner().0, |(b, _)| b);
            }
            std::mem::swap(&mut *buf, &mut spare);
            s.closed.load(Ordering::Acquire) && spare.is_empty() && buf.is_empty()
        };
        if !spare.is_empty() {
            if out.write_all(&spare).and_then(|()| out.flush()).is_err() {
                let lost = spare.iter().filter(|b| **b == b'\n').count() as u64;
                DROPPED.fetch_add(lost, Ordering::Relaxed);
            }
            spare.clear();
        }
        let dropped = DROPPED.load(Ordering::Relaxed);
        if dropped != reported {
            tracing::warn!(
                lines = dropped - reported,
                total = dropped,
                "audit lines lost: the audit writer fell behind or could not write"
            );
            reported = dropped;
        }
        if closed {
            return;
        }
    }
}

/// The line as JSON, written field by field into `buf` (no allocation but the buffer's).
fn write_line(buf: &mut Vec<u8>, r: &AuditRecord<'_>) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    buf.extend_from_slice(b"{\"time\":\"");
    crate::clock::write_rfc3339(buf, d.as_secs() as i64, d.subsec_micros());
    buf.extend_from_slice(b"\",\"request_id\":");
    json_str(buf, r.request_id);
    buf.extend_from_slice(b",\"listener\":");
    json_str(buf, r.listener);
    buf.extend_from_slice(b",\"route\":");
    json_opt(buf, r.route);
    buf.extend_from_slice(b",\"method\":");
    json_str(buf, r.method);
    buf.extend_from_slice(b",\"path\":");
    json_str(buf, r.path);
    let _ = write!(buf, ",\"client_ip\":\"{}\"", r.client_ip);
    buf.extend_from_slice(b",\"auth_method\":");
    json_opt(buf, r.auth_method);
    buf.extend_from_slice(b",\"authenticator\":");
    json_opt(buf, r.authenticator);
    buf.extend_from_slice(b",\"key_id\":");
    json_opt(buf, r.key_id);
    buf.extend_from_slice(b",\"subject\":");
    json_opt(buf, r.subject);
    buf.extend_from_slice(b",\"issuer\":");
    json_opt(buf, r.issuer);
    buf.extend_from_slice(b",\"decision\":");
    json_str(buf, r.decision);
    buf.extend_from_slice(b",\"reason\":");
    json_opt(buf, r.reason);
    buf.extend_from_slice(b",\"failure\":");
    json_opt(buf, r.failure);
    if let Some(e) = r.event {
        buf.extend_from_slice(b",\"event\":");
        json_str(buf, e);
        buf.extend_from_slice(b",\"jti\":");
        json_opt(buf, r.token_id);
    }
    let _ = writeln!(
        buf,
        ",\"status\":{},\"latency_us\":{}}}",
        r.status, r.latency_us
    );
}

fn json_opt(buf: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => json_str(buf, s),
        None => buf.extend_from_slice(b"null"),
    }
}

/// A JSON string: quotes, backslashes and control characters escaped.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    let mut plain = 0;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&s.as_bytes()[plain..i]);
        if esc.is_empty() {
            let _ = write!(buf, "\\u{b:04x}");
        } else {
            buf.extend_from_slice(esc);
        }
        plain = i + 1;
    }
    buf.extend_from_slice(&s.as_bytes()[plain..]);
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_with_every_field() {
        let mut buf = Vec::new();
        write_line(
            &mut buf,
            &AuditRecord {
                request_id: "r1",
                listener: "public",
                route: None,
                method: "GET",
                path: "/a\"b\\c\n\u{1}\u{7f}é",
                client_ip: "::1".parse().expect("ip"),
                auth_method: Some("api_key"),
                authenticator: Some("keys"),
                key_id: Some("key_1"),
                subject: None,
                issuer: None,
                decision: "deny",
                reason: Some("insufficient_scope"),
                failure: None,
                status: 403,
                latency_us: 12,
                event: None,
                token_id: None,
            },
        );
        assert_eq!(buf.last(), Some(&b'\n'));
        assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&buf).expect("JSON");
        assert_eq!(v["path"], "/a\"b\\c\n\u{1}\u{7f}é");
        assert_eq!(v["client_ip"], "::1");
        assert_eq!(v["route"], serde_json::Value::Null);
        assert_eq!(v["reason"], "insufficient_scope");
        assert_eq!(v["status"], 403);
        assert!(v["time"].as_str().expect("time").ends_with('Z'));
        assert_eq!(v.as_object().expect("object").len(), 17);
    }
}
