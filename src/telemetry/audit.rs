//! The audit log: one JSON line per decision (SPEC section 5): time, request id, route, method,
//! path, client ip, auth method, key id / subject / issuer, decision, reason, status, latency.
//! Never a secret, token or key.
//!
//! Lines go through a bounded channel to a writer thread, so a slow disk never stalls requests;
//! when the channel is full a line is dropped and counted (never blocks).

use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

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

#[derive(Serialize)]
pub struct AuditRecord<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub listener: &'a str,
    pub route: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub client_ip: String,
    pub auth_method: Option<&'a str>,
    pub authenticator: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub issuer: Option<&'a str>,
    pub decision: &'a str,
    /// Why the request was refused (`decision: deny`).
    pub reason: Option<&'a str>,
    /// Why an allowed request failed anyway (the upstream, or the client's body).
    pub failure: Option<&'a str>,
    pub status: u16,
    pub latency_us: u64,
}

#[derive(Debug)]
pub struct Audit {
    pub target: AuditTarget,
    tx: Option<SyncSender<String>>,
    pub dropped: AtomicU64,
}

impl Audit {
    pub fn off() -> Audit {
        Audit {
            target: AuditTarget::Off,
            tx: None,
            dropped: AtomicU64::new(0),
        }
    }

    pub fn open(target: AuditTarget) -> std::io::Result<Audit> {
        let mut out: Box<dyn Write + Send> = match &target {
            AuditTarget::Off => return Ok(Audit::off()),
            AuditTarget::Stdout => Box::new(std::io::stdout()),
            AuditTarget::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = sync_channel::<String>(65_536);
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || {
                let mut w = std::io::BufWriter::new(&mut out);
                while let Ok(line) = rx.recv() {
                    let _ = w.write_all(line.as_bytes());
                    while let Ok(more) = rx.try_recv() {
                        let _ = w.write_all(more.as_bytes());
                    }
                    let _ = w.flush();
                }
            })?;
        Ok(Audit {
            target,
            tx: Some(tx),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn record(&self, rec: &AuditRecord<'_>) {
        let Some(tx) = &self.tx else { return };
        let Ok(mut line) = serde_json::to_string(rec) else {
            return;
        };
        line.push('\n');
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
