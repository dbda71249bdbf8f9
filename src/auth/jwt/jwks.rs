//! Remote key sets: a JWKS fetched from a URL (or found by OIDC discovery), refreshed by a
//! background task, refetched (at most once per cooldown) for an unknown `kid`, and kept while
//! the IdP is down until `jwks_max_stale`.

use super::keyset::KeySet;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// Where a remote key set comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JwksLocation {
    Url(String),
    /// `issuer` + `/.well-known/openid-configuration`, whose `issuer` must equal ours.
    Discovery(String),
}

/// What logs, metrics, readiness and `explain` call a key set: its URL, or for discovery the
/// issuer whose document names it.
impl std::fmt::Display for JwksLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksLocation::Url(u) => f.write_str(u),
            JwksLocation::Discovery(i) => write!(f, "{i} (discovery)"),
        }
    }
}

/// Timing of a remote key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JwksTiming {
    pub refresh: Duration,
    pub cooldown: Duration,
    pub max_stale: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JwksState {
    Loaded,
    Stale,
    NeverLoaded,
}

type FetchClient = crate::tls::HttpsClient<Empty<Bytes>>;

struct Progress {
    /// Last successful fetch.
    loaded_at: Option<Instant>,
    /// Last attempt, successful or not.
    attempted_at: Option<Instant>,
    last_error: Option<String>,
    /// When the background task should fetch next.
    next_refresh: Duration,
}

/// The longest a request waits for a JWKS refetch its unknown `kid` asked for.
pub const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(3);

/// A JWKS fetched over HTTP(S) and kept fresh in the background.
pub struct RemoteJwks {
    pub location: JwksLocation,
    pub timing: JwksTiming,
    keys: ArcSwapOption<KeySet>,
    /// Bumped on every key set swap: verified-token cache entries from an older set are re-checked.
    generation: AtomicU64,
    fetch_ok: AtomicU64,
    fetch_failed: AtomicU64,
    progress: Mutex<Progress>,
    fetch_lock: tokio::sync::Mutex<()>,
    started: AtomicBool,
    client: OnceLock<FetchClient>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// `https://` always; `http://` only to a loopback address.
pub fn check_fetch_url(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("`{url}` has no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") => {
            let h = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(uri)
            } else {
                Err(format!(
                    "`{url}` must use https (plain http is allowed only on loopback)"
                ))
            }
        }
        _ => Err(format!("`{url}` must be an https URL")),
    }
}

/// The remote key sets of a config being compiled: one per source and timing, shared by the
/// authenticators that name the same source, and taken over from the config serving now (with
/// the keys it holds and its refresh task) when unchanged.
pub struct JwksPool<'a> {
    serving: &'a [Arc<RemoteJwks>],
    pub made: Vec<Arc<RemoteJwks>>,
}

impl<'a> JwksPool<'a> {
    pub fn new(serving: &'a [Arc<RemoteJwks>]) -> JwksPool<'a> {
        JwksPool {
            serving,
            made: Vec::new(),
        }
    }

    pub fn get(&mut self, location: JwksLocation, timing: JwksTiming) -> Arc<RemoteJwks> {
        let same = |r: &&Arc<RemoteJwks>| r.location == location && r.timing == timing;
        if let Some(r) = self.made.iter().find(same) {
            return r.clone();
        }
        let r = match self.serving.iter().find(same) {
            Some(r) => r.clone(),
            None => Arc::new(RemoteJwks::new(location, timing)),
        };
        self.made.push(r.clone());
        r
    }
}

const MAX_DOC_BYTES: usize = 1 << 20;

impl RemoteJwks {
    /// A key set to fetch from `location`; nothing is fetched (and no client made) before
    /// [`RemoteJwks::start`] or the first refetch.
    pub fn new(location: JwksLocation, timing: JwksTiming) -> RemoteJwks {
        RemoteJwks {
            location,
            timing,
            keys: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            fetch_ok: AtomicU64::new(0),
            fetch_failed: AtomicU64::new(0),
            progress: Mutex::new(Progress {
                loaded_at: None,
                attempted_at: None,
                last_error: None,
                next_refresh: timing.refresh,
            }),
            fetch_lock: tokio::sync::Mutex::new(()),
            started: AtomicBool::new(false),
            client: OnceLock::new(),
        }
    }

    /// The HTTPS client (the system's roots), made at the first fetch.
    fn client(&self) -> Result<&FetchClient, String> {
        if let Some(c) = self.client.get() {
            return Ok(c);
        }
        let c = crate::tls::https_client(&crate::tls::HttpsClientOptions {
            idle_timeout: Duration::from_secs(30),
            ..Default::default()
        })?;
        Ok(self.client.get_or_init(|| c))
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keys to verify with: the last good set, unless it is older than `max_stale`.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        let keys = self.keys.load_full()?;
        let fresh = self
            .progress()
            .loaded_at
            .is_some_and(|t| t.elapsed() <= self.timing.max_stale);
        fresh.then_some(keys)
    }

    /// Successful and failed fetches so far (for metrics).
    pub fn fetch_counts(&self) -> (u64, u64) {
        (
            self.fetch_ok.load(Ordering::Relaxed),
            self.fetch_failed.load(Ordering::Relaxed),
        )
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn state(&self) -> JwksState {
        let p = self.progress();
        match (p.loaded_at, &p.last_error) {
            (None, _) => JwksState::NeverLoaded,
            (Some(t), _) if t.elapsed() > self.timing.max_stale => JwksState::Stale,
            (Some(_), Some(_)) => JwksState::Stale,
            (Some(_), None) => JwksState::Loaded,
        }
    }

    async fn get(&self, uri: http::Uri) -> Result<(Bytes, Option<Duration>), String> {
        let req = http::Request::get(uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "portcullis")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client()?.request(req))
            .await
            .map_err(|_| format!("{uri}: timed out"))?
            .map_err(|e| format!("{uri}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{uri}: HTTP {}", resp.status()));
        }
        let max_age = resp
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(',').find_map(|d| {
                    d.trim()
                        .strip_prefix("max-age=")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                })
            })
            .map(Duration::from_secs);
        let body = tokio::time::timeout(
            Duration::from_secs(10),
            Limited::new(resp.into_body(), MAX_DOC_BYTES).collect(),
        )
        .await
        .map_err(|_| format!("{uri}: timed out reading the body"))?
        .map_err(|e| format!("{uri}: {e}"))?
        .to_bytes();
        Ok((body, max_age))
    }

    async fn fetch_once(&self) -> Result<(KeySet, Option<Duration>), String> {
        let jwks_url = match &self.location {
            JwksLocation::Url(u) => u.clone(),
            JwksLocation::Discovery(issuer) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let (doc, _) = self.get(check_fetch_url(&url)?).await?;
                let doc: Value =
                    serde_json::from_slice(&doc).map_err(|e| format!("{url}: not JSON: {e}"))?;
                if doc.get("issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
                    return Err(format!(
                        "{url}: the document's issuer does not equal the configured `{issuer}`"
                    ));
                }
                doc.get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{url}: no jwks_uri"))?
                    .to_owned()
            }
        };
        let (body, max_age) = self.get(check_fetch_url(&jwks_url)?).await?;
        let (set, skipped) = KeySet::from_jwks(&body, false)?;
        for s in skipped {
            tracing::debug!(url = %jwks_url, skipped = %s, "JWKS key skipped");
        }
        Ok((set, max_age))
    }

    /// Fetches now (single flight). Returns whether a new key set is in place.
    pub async fn refresh(&self) -> bool {
        let _guard = self.fetch_lock.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> bool {
        self.progress().attempted_at = Some(Instant::now());
        match self.fetch_once().await {
            Ok((set, max_age)) => {
                let n = set.keys.len();
                self.keys.store(Some(Arc::new(set)));
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.fetch_ok.fetch_add(1, Ordering::Relaxed);
                let mut p = self.progress();
                p.loaded_at = Some(Instant::now());
                p.last_error = None;
                p.next_refresh = max_age.unwrap_or(self.timing.refresh).clamp(
                    self.timing.cooldown.max(Duration::from_secs(1)),
                    self.timing.refresh,
                );
                tracing::info!(source = %self.location, keys = n, "JWKS loaded");
                true
            }
            Err(e) => {
                self.fetch_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(source = %self.location, error = %e, "JWKS fetch failed; keeping the last good key set");
                let mut p = self.progress();
                p.last_error = Some(e);
                p.next_refresh = self.timing.cooldown.max(Duration::from_secs(1));
                false
            }
        }
    }

    /// On an unknown `kid`: refetch, but at most once per `cooldown` whatever the load; concurrent
    /// callers wait for the one fetch in flight, and a caller that waited for someone else's
    /// fetch uses its result instead of starting another. The fetch runs on its own task and a
    /// request waits for it at most [`UNKNOWN_KID_WAIT`]: a slow or hanging JWKS endpoint (which
    /// may take up to 20 s to time out) costs a request that long at most, and the requests
    /// queued behind it share the one fetch instead of each starting its own.
    pub async fn refetch_for_unknown_kid(self: &Arc<Self>) -> bool {
        let since = |p: &Progress| p.attempted_at.map(|t| t.elapsed());
        if since(&self.progress()).is_some_and(|d| d < self.timing.cooldown) {
            return false;
        }
        let completed = |j: &RemoteJwks| {
            j.fetch_ok.load(Ordering::Acquire) + j.fetch_failed.load(Ordering::Acquire)
        };
        let seen = completed(self);
        let this = self.clone();
        let fetch = tokio::spawn(async move {
            let _guard = this.fetch_lock.lock().await;
            if completed(&this) != seen
                || since(&this.progress()).is_some_and(|d| d < this.timing.cooldown)
            {
                // A fetch finished while we waited: use its result.
                return this.progress().last_error.is_none();
            }
            this.refresh_locked().await
        });
        matches!(
            tokio::time::timeout(UNKNOWN_KID_WAIT, fetch).await,
            Ok(Ok(true))
        )
    }

    /// Starts the background refresher once (needs a tokio runtime). It ends when the key set is
    /// dropped (a reload that no longer uses it).
    pub fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak: Weak<RemoteJwks> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = weak.upgrade() else { return };
                this.refresh().await;
                let wait = this.progress().next_refresh;
                drop(this);
                tokio::time::sleep(wait).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_urls_must_be_https_except_loopback() {
        assert!(check_fetch_url("https://idp.example.com/jwks").is_ok());
        assert!(check_fetch_url("http://127.0.0.1:9000/jwks").is_ok());
        assert!(check_fetch_url("http://[::1]:9000/jwks").is_ok());
        assert!(check_fetch_url("http://localhost/jwks").is_ok());
        assert!(check_fetch_url("http://idp.example.com/jwks").is_err());
        assert!(check_fetch_url("http://10.0.0.1/jwks").is_err());
        assert!(check_fetch_url("ftp://x/jwks").is_err());
    }
}
