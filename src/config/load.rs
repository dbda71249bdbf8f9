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
    let parsed = parse_partial(src);
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
    let built = match parsed {
        Ok(raw) => match mode {
            Mode::Check => compile(&raw, &ctx),
            Mode::Run => start::compile_and_start(&raw, &ctx),
        },
        Err((issues, None)) => Err(issues),
        // The rest of the config, the broken entries taken out, is checked too, so that one
        // run lists every error: each semantic one not about a field already reported (nor one
        // that only follows from taking it out: its parent is reported instead).
        Err((mut issues, Some(rest))) => {
            if let Err(more) = compile(&rest, &ctx) {
                let related = |a: &str, b: &str| {
                    a == b
                        || b.strip_prefix(a).is_some_and(|t| t.starts_with(['.', '[']))
                        || a.strip_prefix(b).is_some_and(|t| t.starts_with(['.', '[']))
                };
                let new: Vec<ConfigIssue> = more
                    .into_iter()
                    .filter(|m| !issues.iter().any(|i| related(&i.path, &m.path)))
                    .collect();
                issues.extend(new);
            }
            Err(issues)
        }
    };
    built.map_err(|mut issues| {
        let locator = Locator::new(src);
        for i in issues.iter_mut().filter(|i| i.at.is_none()) {
            i.at = locator.find(&i.path);
        }
        fail(issues)
    })
}

/// YAML -> raw structs, every error found: a YAML syntax error (located by the YAML parser),
/// a key given twice, or each schema error (unknown fields, bad values, missing fields), as far
/// as the parse can go on past it (see [`schema_errors`]).
pub fn parse(src: &str) -> Result<RawConfig, Vec<ConfigIssue>> {
    parse_partial(src).map_err(|(issues, _)| issues)
}

/// [`parse`], and on schema errors also the config without the broken entries, when every one
/// could be taken out.
fn parse_partial(src: &str) -> Result<RawConfig, (Vec<ConfigIssue>, Option<Box<RawConfig>>)> {
    if src.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    let locator = Locator::new(src);
    if let Some((path, at, first)) = locator.duplicates.first() {
        let issue = ConfigIssue {
            path: path.clone(),
            message: format!("given twice (first at line {})", first.0),
            at: Some(*at),
        };
        return Err((vec![issue], None));
    }
    let value: serde_yaml::Value = serde_yaml::from_str(src).map_err(|e| {
        let at = e.location().map(|l| (l.line(), l.column()));
        let mut message = e.to_string();
        if let Some(cut) = message.rfind(" at line ") {
            message.truncate(cut);
        }
        let issue = ConfigIssue {
            path: String::new(),
            message,
            at,
        };
        (vec![issue], None)
    })?;
    schema_errors(value).map_err(|(mut issues, rest)| {
        for i in &mut issues {
            i.at = locator.find(&i.path);
        }
        (issues, rest)
    })
}

/// Deserializes the raw config from its YAML value, and on an error records it with its field
/// path, takes the offending entry out of the value and tries again, so that two unknown fields,
/// or two bad values, give two lines. It stops where it cannot go on: an error at a path it
/// already reported, or a missing field of a sequence item.
fn schema_errors(
    mut value: serde_yaml::Value,
) -> Result<RawConfig, (Vec<ConfigIssue>, Option<Box<RawConfig>>)> {
    let mut issues: Vec<ConfigIssue> = Vec::new();
    for _ in 0..64 {
        let e = match serde_path_to_error::deserialize::<_, RawConfig>(value.clone()) {
            Ok(raw) if issues.is_empty() => return Ok(raw),
            Ok(rest) => return Err((issues, Some(Box::new(rest)))),
            Err(e) => e,
        };
        let message = e.inner().to_string();
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        // An unknown field inside a buffered value (an authenticator, whose `type` picks the
        // struct) is reported at the value: name the field itself.
        if let Some(field) = quoted_after(&message, "unknown field ") {
            if !path.ends_with(field) {
                path = join(&path, field);
            }
        }
        if issues.iter().any(|i| i.path == path) {
            return Err((issues, None));
        }
        // A required field that was reported and taken out is now missing: the entry is known
        // to be broken, so it goes (unreported again) and the parse goes on.
        let missing = quoted_after(&message, "missing field ");
        if !missing.is_some_and(|f| issues.iter().any(|i| i.path == join(&path, f))) {
            issues.push(ConfigIssue {
                path: path.clone(),
                message,
                at: None,
            });
        }
        if !take_out(&mut value, &path) {
            return Err((issues, None));
        }
    }
    Err((issues, None))
}

/// The text between the backquotes after `prefix` at the start of `message`.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split('`').next()
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Removes the mapping entry at `path` (`routes[2].match.host`) from `value`. False when the
/// path does not end in a mapping key (a sequence item cannot go without shifting the others'
/// paths), or is not there.
fn take_out(value: &mut serde_yaml::Value, path: &str) -> bool {
    let mut segs: Vec<&str> = Vec::new();
    for part in path.split('.') {
        let mut p = part;
        while let Some(open) = p.find('[') {
            if open > 0 {
                segs.push(&p[..open]);
            }
            let close = p[open..].find(']').map_or(p.len(), |c| open + c);
            segs.push(&p[open..=close.min(p.len() - 1)]);
            p = &p[(close + 1).min(p.len())..];
        }
        if !p.is_empty() {
            segs.push(p);
        }
    }
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    if last.starts_with('[') {
        return false;
    }
    let mut cur = value;
    for s in parents {
        let next = match s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(i) => i.parse::<usize>().ok().and_then(|i| cur.get_mut(i)),
            None => cur.get_mut(*s),
        };
        let Some(n) = next else { return false };
        cur = n;
    }
    cur.as_mapping_mut()
        .is_some_and(|m| m.remove(*last).is_some())
}
