//! Rate limits shared by every replica through Redis (`store.redis`): the same GCRA as the local
//! limiter, decided by one Lua script per request (atomic on the server, the clock is Redis'
//! own `TIME`, so replicas' clocks don't matter), on keys that expire once their bucket is full
//! again.
//!
//! When Redis cannot answer (down, slow past `redis_timeout`), `on_redis_error` decides:
//! `local` (default) falls back to this replica's own limiter, `deny` refuses with 503, `allow`
//! lets the request through. After a failure Redis is not asked again for a second (a dead
//! server must not add a timeout to every request); then one request a second probes it.

use super::rate_limit::{LimitHeaders, RateLimit};
use crate::error::{Reason, Reject};
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// GCRA. KEYS[1]: the bucket. ARGV: emission interval (µs), burst.
/// Returns {allowed (0/1), remaining, wait_µs (until the next unit when refused, until the
/// bucket is full again when allowed)}.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if now < allow_at then
  return {0, 0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
local remaining = math.floor((now - allow_at) / interval)
return {1, remaining, new_tat - now}
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    Local,
    Deny,
    Allow,
}

impl OnRedisError {
    pub fn parse(s: &str) -> Result<OnRedisError, String> {
        match s {
            "local" => Ok(OnRedisError::Local),
            "deny" => Ok(OnRedisError::Deny),
            "allow" => Ok(OnRedisError::Allow),
            _ => Err(format!("`{s}`: use local, deny or allow")),
        }
    }
}

pub struct SharedLimits {
    /// Kept only to tell whether a reload changed it (may carry a password: never shown).
    url: String,
    /// `store.redis_ca`'s PEM, when given.
    ca: Option<Vec<u8>>,
    client: redis::Client,
    /// The URL without its password, for messages.
    pub display: String,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    script: redis::Script,
    pub on_error: OnRedisError,
    timeout: Duration,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not asked (after a failure).
    down_until_ms: AtomicU64,
    /// Whether the last attempt failed (logged once per outage).
    failing: AtomicBool,
    /// Decisions made without Redis because it failed (`portcullis_redis_fallback_total`).
    pub fallbacks: AtomicU64,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("redis", &self.display)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Parses the URL; connects lazily (on the first decision). `rediss://` is TLS (rustls,
    /// the process' aws-lc-rs provider), verified against `ca` (PEM) or else the system's roots;
    /// `#insecure` (no verification) is refused.
    pub fn new(
        url: &str,
        ca: Option<Vec<u8>>,
        on_error: OnRedisError,
        timeout: Duration,
    ) -> Result<Self, String> {
        let display = crate::values::redact_url(url);
        if url.contains('#') {
            return Err(format!(
                "`{display}`: a URL fragment such as #insecure (TLS without verification) is not supported; give store.redis_ca instead"
            ));
        }
        let tls = url.starts_with("rediss://");
        if ca.is_some() && !tls {
            return Err(format!(
                "`{display}`: store.redis_ca is only used with a rediss:// (TLS) URL"
            ));
        }
        let client = match &ca {
            Some(pem) => {
                crate::tls::install_crypto_provider();
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                };
                redis::Client::build_with_tls(url, certs)
            }
            None => {
                if tls {
                    crate::tls::install_crypto_provider();
                }
                redis::Client::open(url)
            }
        }
        .map_err(|e| format!("`{display}` is not a usable Redis URL: {e}"))?;
        Ok(SharedLimits {
            url: url.to_owned(),
            ca,
            client,
            display,
            conn: tokio::sync::OnceCell::new(),
            script: redis::Script::new(SCRIPT),
            on_error,
            timeout,
            started: Instant::now(),
            down_until_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
        })
    }

    pub fn same_settings(
        &self,
        url: &str,
        ca: Option<&[u8]>,
        on_error: OnRedisError,
        timeout: Duration,
    ) -> bool {
        self.url == url
            && self.ca.as_deref() == ca
            && self.on_error == on_error
            && self.timeout == timeout
    }

    /// Whether the last attempt reached Redis.
    pub fn is_up(&self) -> bool {
        !self.failing.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn decide(
        &self,
        bucket: &str,
        interval_us: u64,
        burst: u32,
    ) -> Result<(bool, u32, u64), String> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), cfg).await
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut conn = conn.clone();
        let (allowed, remaining, wait): (i64, i64, i64) = self
            .script
            .key(bucket)
            .arg(interval_us)
            .arg(burst)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            allowed == 1,
            u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            u64::try_from(wait.max(0)).unwrap_or(0),
        ))
    }

    /// Takes one unit of `limit` for `key`, shared across replicas.
    pub async fn check(&self, limit: &RateLimit, key: &str) -> Result<LimitHeaders, Reject> {
        let now = self.now_ms();
        let until = self.down_until_ms.load(Ordering::Relaxed);
        // While Redis is failing, one request a second probes it (the one that moves the
        // deadline on); the others fall back at once instead of each waiting for a timeout.
        let ask = now >= until
            && (!self.failing.load(Ordering::Relaxed)
                || self
                    .down_until_ms
                    .compare_exchange(until, now + 1000, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok());
        if ask {
            let interval_us = (limit.interval.as_micros() as u64).max(1);
            let bucket = bucket_name(&limit.name, key);
            let r = tokio::time::timeout(
                self.timeout,
                self.decide(&bucket, interval_us, limit.spec.burst),
            )
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
            match r {
                Ok((allowed, remaining, wait_us)) => {
                    if self.failing.swap(false, Ordering::Relaxed) {
                        self.down_until_ms.store(0, Ordering::Relaxed);
                        tracing::info!(redis = %self.display, "Redis answers again; rate limits are shared again");
                    }
                    let wait = Duration::from_micros(wait_us);
                    return if allowed {
                        Ok(limit.headers(remaining, wait))
                    } else {
                        Err(limit.refusal(wait))
                    };
                }
                Err(e) => {
                    self.down_until_ms
                        .store(self.now_ms() + 1000, Ordering::Relaxed);
                    if !self.failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(redis = %self.display, error = %e, on_redis_error = ?self.on_error, "Redis unavailable; rate limits fall back");
                    }
                }
            }
        }
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        match self.on_error {
            OnRedisError::Local => limit.check(key),
            OnRedisError::Allow => Ok(limit.headers(limit.spec.burst, Duration::ZERO)),
            OnRedisError::Deny => Err(Reject::new(
                Reason::RateLimitUnavailable,
                "the shared rate limiter is unavailable; retry later",
            )
            .with_header(http::header::RETRY_AFTER, http::HeaderValue::from(1u32))),
        }
    }
}

/// `pc:rl:<limit>:<key>`; a long key (a header value) is hashed, so a client can't make Redis
/// keys of any size.
fn bucket_name(limit: &str, key: &str) -> String {
    if key.len() <= 128 {
        format!("pc:rl:{limit}:{key}")
    } else {
        format!(
            "pc:rl:{limit}:h:{}",
            crate::digest::hex_lower(&crate::digest::sha256(key.as_bytes()))
        )
    }
}
