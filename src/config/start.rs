//! Putting a config to work, the one place loading has side effects (`check` and `explain` never
//! reach it): the development PKI of `tls.generate_missing` is written before compiling (compile
//! then reads it like any certificate), and the audit log is opened after.

use super::compile::{compile, Ctx};
use super::issues::{ConfigIssue, Issues};
use super::listeners::{dev_files, DevFiles};
use super::raw::RawConfig;
use super::snapshot::Snapshot;
use crate::telemetry::audit::Audit;
use std::sync::Arc;

pub fn compile_and_start(raw: &RawConfig, ctx: &Ctx<'_>) -> Result<Snapshot, Vec<ConfigIssue>> {
    let mut issues = Issues::default();
    write_dev_files(raw, ctx, &mut issues);
    if !issues.is_empty() {
        return Err(issues.0);
    }
    let mut snap = compile(raw, ctx)?;
    open_audit(&mut snap, &mut issues);
    if !issues.is_empty() {
        return Err(issues.0);
    }
    Ok(snap)
}

/// Writes a development PKI (as `portcullis dev-pki` does) for every listener with
/// `tls.generate_missing` whose files are all missing.
fn write_dev_files(raw: &RawConfig, ctx: &Ctx<'_>, issues: &mut Issues) {
    for (i, l) in raw.listeners.iter().enumerate() {
        let Some(t) = l.tls.as_ref().filter(|t| t.generate_missing == Some(true)) else {
            continue;
        };
        // Problems with the block itself are compile's to report.
        let Ok(DevFiles::Missing(dir)) = dev_files(t, ctx.base) else {
            continue;
        };
        match crate::devpki::generate(&dir) {
            Ok(_) => {
                tracing::warn!(dir = %dir.display(), "wrote a development PKI (tls.generate_missing): development only");
            }
            Err(e) => issues.add(
                format!("listeners[{i}].tls.generate_missing"),
                e.to_string(),
            ),
        }
    }
}

/// Opens `logging.audit`, anew on every load: after a log rotation (rename, then SIGHUP or a
/// reload) the lines go to a new file at the configured path. The serving config's writer
/// finishes the lines it was given, then closes.
fn open_audit(snap: &mut Snapshot, issues: &mut Issues) {
    match Audit::open(snap.logging.audit.clone()) {
        Ok(a) => snap.audit = Arc::new(a),
        Err(e) => issues.add("logging.audit", format!("cannot open the audit log: {e}")),
    }
}
