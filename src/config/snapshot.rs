//! The compiled config: one immutable [`Snapshot`] that a request takes once and reads without
//! locks for its whole life, and the config-only sections it holds (limits, logging, workers).

use super::issues::{ConfigIssue, Issues};
use super::listeners::{AdminCfg, ListenerCfg};
use super::raw::{LogFormat, RawLimits, RawLogging};
use super::store::StoreCfg;
use crate::auth::jwt::jwks::RemoteJwks;
use crate::auth::jwt::JwtAuthn;
use crate::auth::rate_limit::RateLimit;
use crate::conn::TrustedProxies;
use crate::route::Route;
use crate::router::Router;
use crate::state::Shared;
use crate::telemetry::audit::{Audit, AuditTarget};
use crate::upstream::Upstream;
use crate::values::Num;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct Snapshot {
    pub source: PathBuf,
    /// The config as it serves, secrets redacted (`GET /admin/config`).
    pub effective: serde_json::Value,
    pub shared: Arc<Shared>,
    pub admin: AdminCfg,
    pub store: StoreCfg,
    pub listeners: Vec<ListenerCfg>,
    pub limits: Limits,
    pub logging: LoggingCfg,
    pub trusted_proxies: TrustedProxies,
    pub router: Router<Route>,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    pub workers: usize,
    pub rate_limits: BTreeMap<String, Arc<RateLimit>>,
    pub jwts: Vec<Arc<JwtAuthn>>,
    /// The remote key sets the JWT authenticators use (one per source).
    pub remote_jwks: Vec<Arc<RemoteJwks>>,
    /// Opened by the start step (`config::start`); off in `check`.
    pub audit: Arc<Audit>,
    /// The built-in authorization server, when configured.
    pub oauth: Option<Arc<super::oauth::OauthServerCfg>>,
}

impl Snapshot {
    /// Starts background work of this snapshot (JWKS refreshers, upstream health checks); needs a tokio runtime.
    pub fn start_background(&self) {
        for j in &self.remote_jwks {
            j.start();
        }
        for u in self.upstreams.values() {
            u.start();
        }
    }

    pub fn listener(&self, name: &str) -> Option<&ListenerCfg> {
        self.listeners.iter().find(|l| &*l.name == name)
    }

    /// What `next` changes that a running gateway cannot take over (SPEC section 4): the
    /// listeners' names and addresses, `admin.bind`, the `store` section and the worker count.
    /// Everything else a reload applies.
    pub fn needs_restart(&self, next: &Snapshot) -> Vec<ConfigIssue> {
        let mut out = Vec::new();
        let mut restart = |path: String, what: String| {
            out.push(ConfigIssue {
                path,
                message: format!("{what}: this needs a restart (the running config keeps serving)"),
                at: None,
            })
        };
        let binds = |s: &Snapshot| -> Vec<(Arc<str>, std::net::SocketAddr)> {
            s.listeners
                .iter()
                .map(|l| (l.name.clone(), l.bind))
                .collect()
        };
        if binds(self) != binds(next) {
            for (i, l) in next.listeners.iter().enumerate() {
                match self.listener(&l.name) {
                    Some(old) if old.bind == l.bind => {}
                    Some(old) => restart(
                        format!("listeners[{i}].bind"),
                        format!("changed from `{}` to `{}`", old.bind, l.bind),
                    ),
                    None => restart(
                        format!("listeners[{i}]"),
                        format!("new listener `{}`", l.name),
                    ),
                }
            }
            for l in &self.listeners {
                if next.listener(&l.name).is_none() {
                    restart("listeners".into(), format!("listener `{}` removed", l.name));
                }
            }
        }
        if self.admin.bind != next.admin.bind {
            restart(
                "admin.bind".into(),
                format!(
                    "changed from `{}` to `{}`",
                    self.admin.bind, next.admin.bind
                ),
            );
        }
        if self.store.raw != next.store.raw {
            restart("store".into(), "changed".into());
        }
        let oauth = |s: &Snapshot| s.oauth.as_ref().map(|o| o.secrets_key_text.clone());
        if oauth(self) != oauth(next) {
            let what = match (&self.oauth, &next.oauth) {
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                _ => "signing.secrets_key changed",
            };
            restart("oauth_server".into(), what.into());
        }
        if self.workers != next.workers {
            restart(
                "workers".into(),
                format!("changed from {} to {}", self.workers, next.workers),
            );
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// The longest a request body may go without a byte (nginx `client_body_timeout`).
    pub body_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

impl Limits {
    pub fn compile(raw: &RawLimits, issues: &mut Issues) -> Limits {
        let limits = Limits {
            header_timeout: raw.header_timeout.0,
            idle_timeout: raw.idle_timeout.0,
            body_timeout: raw.body_timeout.0,
            max_header_bytes: raw.max_header_bytes.0 as usize,
            max_body_bytes: raw.max_body_bytes.0,
            max_connections: raw.max_connections.0 as usize,
            shutdown_timeout: raw.shutdown_timeout.0,
        };
        for (d, field) in [
            (limits.header_timeout, "limits.header_timeout"),
            (limits.idle_timeout, "limits.idle_timeout"),
            (limits.body_timeout, "limits.body_timeout"),
        ] {
            if d.is_zero() {
                issues.add(field, "must be greater than 0");
            }
        }
        // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
        if !(8192..=1 << 20).contains(&limits.max_header_bytes) {
            issues.add(
                "limits.max_header_bytes",
                format!(
                    "must be between 8192 and 1048576 (default {})",
                    RawLimits::default().max_header_bytes.0
                ),
            );
        }
        if limits.max_connections == 0 || limits.max_connections > 1_000_000 {
            issues.add("limits.max_connections", "must be between 1 and 1000000");
        }
        limits
    }
}

pub struct LoggingCfg {
    pub format: LogFormat,
    pub level: String,
    pub audit: AuditTarget,
}

impl LoggingCfg {
    pub fn compile(raw: &RawLogging, base: &Path, issues: &mut Issues) -> LoggingCfg {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(raw.level.as_str()) {
            issues.add("logging.level", format!("invalid level: {e}"));
        }
        LoggingCfg {
            format: raw.format,
            level: raw.level.0.clone(),
            audit: AuditTarget::parse(raw.audit.as_str(), base),
        }
    }
}

/// Worker threads: `PORTCULLIS_WORKERS` (`env`, read by the loader) over `workers` over the
/// number of cores.
pub fn compile_workers(raw: Option<Num>, env: Option<&str>, issues: &mut Issues) -> usize {
    if let Some(v) = env {
        return match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                issues.add(
                    "workers",
                    format!("PORTCULLIS_WORKERS=`{v}` is not a positive integer"),
                );
                1
            }
        };
    }
    match raw {
        Some(Num(0)) => {
            issues.add("workers", "must be at least 1");
            1
        }
        Some(Num(n)) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}
