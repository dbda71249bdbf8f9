//! Loading a config: read the file, parse it into the raw schema, compile it
//! ([`super::compile`]) and, when it is to run, put it to work ([`super::start`]). Every problem
//! found is located in the file (line and column of its field).

use super::compile::{compile, Ctx};
use super::issues::{ConfigErrors, ConfigIssue};
use super::locate::Locator;
use super::raw::RawConfig;
use super::snapshot::Snapshot;
use super::{start, Mode};
use crate::state::Shared;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads, parses and compiles `file`; in `Mode::Run` also puts it to work. `prev`: the config
/// serving now, on reload.
pub fn load(file: &Path, prev: Option<&Snapshot>, mode: Mode) -> Result<Snapshot, ConfigErrors> {
    let src = std::fs::read_to_string(file).map_err(|e| ConfigErrors {
        file: file.to_path_buf(),
        issues: vec![ConfigIssue {
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
            at: None,
        }],
    })?;
    load_str(file, &src, prev, mode)
}

/// [`load`] of a config text (`file` names it in messages and is where relative paths start).
pub fn load_str(
    file: &Path,
    src: &str,
    prev: Option<&Snapshot>,
    mode: Mode,
) -> Result<Snapshot, ConfigErrors> {
    let fail = |issues: Vec<ConfigIssue>| ConfigErrors {
        file: file.to_path_buf(),
        issues,
    };
    let raw = parse(src).map_err(|i| fail(vec![i]))?;
    let base = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let shared = prev.map_or_else(|| Arc::new(Shared::default()), |p| p.shared.clone());
    let workers_env = std::env::var("PORTCULLIS_WORKERS").ok();
    let ctx = Ctx {
        file,
        base: &base,
        prev,
        shared: &shared,
        workers_env: workers_env.as_deref(),
    };
    let built = match mode {
        Mode::Check => compile(&raw, &ctx),
        Mode::Run => start::compile_and_start(&raw, &ctx),
    };
    built.map_err(|mut issues| {
        let locator = Locator::new(src);
        for i in &mut issues {
            i.at = locator.find(&i.path);
        }
        fail(issues)
    })
}

/// YAML -> raw structs; serde stops at the first error, which it locates itself.
pub fn parse(src: &str) -> Result<RawConfig, ConfigIssue> {
    if src.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    let locator = Locator::new(src);
    if let Some((path, at, first)) = locator.duplicates.first() {
        return Err(ConfigIssue {
            path: path.clone(),
            message: format!("given twice (first at line {})", first.0),
            at: Some(*at),
        });
    }
    serde_yaml::from_str::<RawConfig>(src).map_err(|e| {
        let at = e.location().map(|l| (l.line(), l.column()));
        let mut text = e.to_string();
        if let Some(cut) = text.rfind(" at line ") {
            text.truncate(cut);
        }
        // serde_yaml prefixes the field path as `path: message` (no spaces in the path).
        let (mut path, message) = match text.split_once(": ") {
            Some((p, m)) if !p.contains(' ') && !p.is_empty() => (p.to_owned(), m.to_owned()),
            _ => (String::new(), text),
        };
        // serde_yaml's path stops at the enclosing struct for errors raised inside a field
        // (a bad duration); the position is the field's, so name the field from it.
        // ("missing field" points at the struct, whose first key sits at the same spot.)
        if let (Some(at), false) = (at, message.starts_with("missing field")) {
            if let Some(deeper) = locator.path_at(at) {
                if deeper.starts_with(path.as_str()) && deeper.len() > path.len() {
                    path = deeper.to_owned();
                }
            }
        }
        ConfigIssue { path, message, at }
    })
}
