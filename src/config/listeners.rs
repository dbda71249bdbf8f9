//! The `listeners` and `admin` sections: bind addresses and TLS server configs, the development
//! PKI check of `tls.generate_missing`, and the refusal of upstreams that point back at the
//! gateway itself.

use super::issues::Issues;
use super::raw::{RawAdmin, RawListener, RawTls, RawUpstream};
use crate::tls;
use crate::values::resolve;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct ListenerCfg {
    pub name: Arc<str>,
    pub bind: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The raw TLS block, kept so a reload can tell whether the certificate source changed.
    pub raw_tls: Option<RawTls>,
}

impl ListenerCfg {
    /// Whether clients can present a certificate here (mutual TLS, optional or required).
    pub fn client_auth_possible(&self) -> bool {
        self.raw_tls
            .as_ref()
            .and_then(|t| t.client_auth.as_ref())
            .is_some_and(|c| c.mode != super::raw::ClientAuthMode::None)
    }
}

pub struct AdminCfg {
    pub bind: SocketAddr,
    /// SHA-256 of the admin token, when the config gives one.
    pub token_sha256: Option<[u8; 32]>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Lowercase names (without port) the admin API answers to besides IP literals and
    /// `localhost`; `*` turns the Host check off.
    pub hosts: Vec<String>,
}

/// Every listener; a listener whose bind address is unusable is left out (and reported).
pub fn compile_listeners(
    raw: &[RawListener],
    base: &Path,
    issues: &mut Issues,
) -> Vec<ListenerCfg> {
    let mut listeners = Vec::new();
    if raw.is_empty() {
        issues.add("listeners", "at least one listener is required");
    }
    let mut names = HashSet::new();
    let mut binds = HashSet::new();
    for (i, l) in raw.iter().enumerate() {
        let p = format!("listeners[{i}]");
        if l.name.0.is_empty() {
            issues.add(format!("{p}.name"), "must not be empty");
        } else if !names.insert(l.name.0.clone()) {
            issues.add(
                format!("{p}.name"),
                format!("duplicate listener name `{}`", l.name),
            );
        }
        let bind = match l.bind.0.parse::<SocketAddr>() {
            Ok(a) => {
                if a.port() != 0 && !binds.insert(a) {
                    issues.add(format!("{p}.bind"), format!("`{a}` is bound twice"));
                }
                Some(a)
            }
            Err(_) => {
                issues.add(
                    format!("{p}.bind"),
                    format!("`{}` is not an address:port (e.g. 0.0.0.0:8443)", l.bind),
                );
                None
            }
        };
        let tls_cfg = l.tls.as_ref().and_then(|t| {
            let at = format!("{p}.tls");
            if t.generate_missing == Some(true) {
                match dev_files(t, base) {
                    Err(e) => {
                        issues.add(format!("{at}.generate_missing"), e);
                        return None;
                    }
                    // Still missing: `check` only looks (`run` writes them first, in
                    // config::start).
                    Ok(DevFiles::Missing(_)) => return None,
                    Ok(_) => {}
                }
            }
            // Unchanged TLS source on reload still re-reads the files: SIGHUP is how a renewed
            // certificate gets picked up.
            server_config(t, base, &at, issues)
        });
        if let Some(bind) = bind {
            listeners.push(ListenerCfg {
                name: Arc::from(l.name.0.as_str()),
                bind,
                tls: tls_cfg,
                raw_tls: l.tls.clone(),
            });
        }
    }
    listeners
}

fn server_config(
    t: &RawTls,
    base: &Path,
    at: &str,
    issues: &mut Issues,
) -> Option<Arc<rustls::ServerConfig>> {
    match tls::server_config(t, base, at) {
        Ok(c) => Some(c),
        Err(errs) => {
            for (path, msg) in errs {
                issues.add(path, msg);
            }
            None
        }
    }
}

pub fn compile_admin(raw: &RawAdmin, base: &Path, issues: &mut Issues) -> AdminCfg {
    let bind = match raw.bind.0.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            issues.add(
                "admin.bind",
                format!("`{}` is not an address:port", raw.bind),
            );
            SocketAddr::from(([127, 0, 0, 1], 9901))
        }
    };
    let token_sha256 = raw.token_sha256.as_ref().and_then(|t| {
        let h = crate::digest::parse_sha256(t.as_str());
        if h.is_none() {
            issues.add(
                "admin.token_sha256",
                "must be `sha256:` followed by 64 hex digits (see `portcullis admin-token`)",
            );
        }
        h
    });
    AdminCfg {
        bind,
        token_sha256,
        tls: raw
            .tls
            .as_ref()
            .and_then(|t| server_config(t, base, "admin.tls", issues)),
        hosts: raw
            .hosts
            .iter()
            .map(|h| h.0.trim_end_matches('.').to_ascii_lowercase())
            .collect(),
    }
}

/// The admin API on a listener's address: `run` could not bind both.
pub fn check_admin_bind(admin: &AdminCfg, listeners: &[ListenerCfg], issues: &mut Issues) {
    let a = admin.bind;
    let clash = |b: SocketAddr| {
        a.port() == b.port()
            && a.port() != 0
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
    };
    if let Some(l) = listeners.iter().find(|l| clash(l.bind)) {
        issues.add(
            "admin.bind",
            format!("`{a}` is also listener `{}`'s address", l.name),
        );
    }
}

/// An upstream that is this gateway's own admin API or one of its listeners: the first would put
/// the admin API behind data routes (Kong CVE-2020-11710; docs/attack-cases.md ADM-05), the
/// second loops every request through the gateway until a limit cuts it.
pub fn check_upstream_loops(
    upstreams: &BTreeMap<String, RawUpstream>,
    admin: &AdminCfg,
    listeners: &[ListenerCfg],
    issues: &mut Issues,
) {
    for (name, u) in upstreams {
        let urls: Vec<(String, &str)> = match (&u.url, &u.targets) {
            (Some(url), _) => vec![(format!("upstreams.{name}.url"), url.as_str())],
            (None, Some(t)) => t
                .iter()
                .enumerate()
                .map(|(i, url)| (format!("upstreams.{name}.targets[{i}]"), url.as_str()))
                .collect(),
            (None, None) => Vec::new(),
        };
        for (at, url) in urls {
            let Some(target) = own_socket(url) else {
                continue;
            };
            let hits = |bind: SocketAddr| {
                bind.port() == target.port()
                    && bind.port() != 0
                    && (bind.ip() == target.ip()
                        || (bind.ip().is_unspecified() && target.ip().is_loopback()))
            };
            if hits(admin.bind) {
                issues.add(
                    &at,
                    format!("`{}` is this gateway's admin listener", target),
                );
            }
            if let Some(l) = listeners.iter().find(|l| hits(l.bind)) {
                issues.add(
                    &at,
                    format!(
                        "`{target}` is this gateway's listener `{}`: requests would loop",
                        l.name
                    ),
                );
            }
        }
    }
}

/// The socket an `http://` upstream URL names when its host is an IP literal or `localhost`.
fn own_socket(url: &str) -> Option<SocketAddr> {
    let uri: http::Uri = url.parse().ok()?;
    let a = uri.authority()?;
    let port = a
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let host = a.host().trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().ok()?
    };
    Some(SocketAddr::new(ip, port))
}

/// The files of `tls.generate_missing`: all present, or all missing (to be written into the
/// folder of `cert`).
pub enum DevFiles {
    Present,
    Missing(PathBuf),
}

/// Checks a `generate_missing` TLS block without touching the disk beyond looking.
pub fn dev_files(t: &RawTls, base: &Path) -> Result<DevFiles, String> {
    let (Some(cert), Some(key)) = (&t.cert, &t.key) else {
        return Err("needs `cert` and `key` paths to write to".into());
    };
    let cert = resolve(base, cert.as_str());
    let dir = cert.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut wanted = vec![
        (cert, "server.crt"),
        (resolve(base, key.as_str()), "server.key"),
    ];
    if let Some(ca) = t.client_auth.as_ref().and_then(|c| c.ca.as_ref()) {
        wanted.push((resolve(base, ca.as_str()), "client-ca.crt"));
    }
    let missing: Vec<&PathBuf> = wanted
        .iter()
        .filter(|(f, _)| !f.exists())
        .map(|(f, _)| f)
        .collect();
    if missing.is_empty() {
        return Ok(DevFiles::Present);
    }
    if missing.len() != wanted.len() {
        return Err(format!(
            "only some files are missing ({}); generate_missing only writes a complete set: remove the others or run `portcullis dev-pki`",
            missing.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
        ));
    }
    for (f, name) in &wanted {
        if f.parent() != Some(dir.as_path()) || f.file_name().and_then(|n| n.to_str()) != Some(name)
        {
            return Err(format!(
                "writes `{name}` beside `cert`; point the field at {}",
                dir.join(name).display()
            ));
        }
    }
    Ok(DevFiles::Missing(dir))
}
