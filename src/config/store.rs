//! The `store` section: the embedded SQLite file, or PostgreSQL and Redis in cluster mode.

use super::issues::Issues;
use super::raw::RawStore;
use crate::auth::shared_limit::{OnRedisError, SharedLimits};
use crate::store::pg_tls::{self, PgTls};
use crate::values::{redact_url, resolve};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct StoreCfg {
    /// The section as written (a reload that changes it needs a restart).
    pub raw: RawStore,
    /// The SQLite file (resolved); unused in cluster mode.
    pub sqlite: PathBuf,
    /// Cluster mode: keys and revocations in PostgreSQL.
    pub postgres: Option<PostgresCfg>,
    /// Cluster mode: rate limits shared through Redis.
    pub redis: Option<Arc<SharedLimits>>,
}

impl StoreCfg {
    pub fn backend(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

/// `store.postgres`. Not `Debug`: the URL may carry a password.
pub struct PostgresCfg {
    pub url: String,
    /// The URL's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`, files read.
    pub tls: PgTls,
    pub resync: Duration,
}

impl std::fmt::Debug for PostgresCfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCfg")
            .field("url", &redact_url(&self.url))
            .field("tls", &self.tls.mode)
            .field("resync", &self.resync)
            .finish()
    }
}

/// `prev_redis`: the running Redis client, kept (with its connection) when its settings did not
/// change.
pub fn compile_store(
    raw: &RawStore,
    base: &Path,
    prev_redis: Option<&Arc<SharedLimits>>,
    issues: &mut Issues,
) -> StoreCfg {
    StoreCfg {
        raw: raw.clone(),
        sqlite: resolve(
            base,
            raw.sqlite
                .as_ref()
                .map_or("data/portcullis.db", |s| s.as_str()),
        ),
        postgres: compile_postgres(raw, base, issues),
        redis: compile_redis(raw, base, prev_redis, issues),
    }
}

fn compile_postgres(raw: &RawStore, base: &Path, issues: &mut Issues) -> Option<PostgresCfg> {
    match (&raw.postgres, &raw.sqlite) {
        (Some(_), Some(_)) => {
            issues.add(
                "store.postgres",
                "give either `sqlite` (one gateway) or `postgres` (cluster mode), not both",
            );
            None
        }
        (Some(url), None) => {
            let u = url.as_str();
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                issues.add(
                    "store.postgres",
                    format!(
                        "`{}` is not a PostgreSQL URL (postgres://user@host:5432/db)",
                        redact_url(u)
                    ),
                );
                return None;
            }
            let tls = match pg_tls::parse(u, base) {
                Ok(t) => t,
                Err(e) => {
                    issues.add("store.postgres", e);
                    return None;
                }
            };
            Some(PostgresCfg {
                url: u.to_owned(),
                tls,
                resync: raw
                    .resync
                    .as_ref()
                    .map_or(Duration::from_secs(30), |d| d.0)
                    .max(Duration::from_millis(100)),
            })
        }
        (None, _) => {
            if raw.resync.is_some() {
                issues.add("store.resync", "only used with store.postgres");
            }
            None
        }
    }
}

fn compile_redis(
    raw: &RawStore,
    base: &Path,
    prev: Option<&Arc<SharedLimits>>,
    issues: &mut Issues,
) -> Option<Arc<SharedLimits>> {
    let on_error = match raw.on_redis_error.as_ref() {
        None => OnRedisError::Local,
        Some(v) => OnRedisError::parse(v.as_str()).unwrap_or_else(|e| {
            issues.add("store.on_redis_error", e);
            OnRedisError::Local
        }),
    };
    let Some(url) = &raw.redis else {
        for (set, field) in [
            (raw.on_redis_error.is_some(), "store.on_redis_error"),
            (raw.redis_timeout.is_some(), "store.redis_timeout"),
            (raw.redis_ca.is_some(), "store.redis_ca"),
        ] {
            if set {
                issues.add(field, "only used with store.redis");
            }
        }
        return None;
    };
    let timeout = raw
        .redis_timeout
        .as_ref()
        .map_or(Duration::from_millis(100), |d| d.0);
    let ca = match &raw.redis_ca {
        Some(path) => match std::fs::read(resolve(base, path.as_str())) {
            Ok(pem) => Some(pem),
            Err(e) => {
                let shown = resolve(base, path.as_str());
                issues.add(
                    "store.redis_ca",
                    format!("cannot read {}: {e}", shown.display()),
                );
                return None;
            }
        },
        None => None,
    };
    // One client per process: a reload with the same settings keeps it (and its connection); a
    // reload that changes them starts a new one. The client connects lazily, at the first
    // rate-limit decision.
    let same =
        |l: &&Arc<SharedLimits>| l.same_settings(url.as_str(), ca.as_deref(), on_error, timeout);
    if let Some(l) = prev.filter(same) {
        return Some(l.clone());
    }
    match SharedLimits::new(url.as_str(), ca, on_error, timeout) {
        Ok(l) => Some(Arc::new(l)),
        Err(e) => {
            issues.add("store.redis", e);
            None
        }
    }
}
