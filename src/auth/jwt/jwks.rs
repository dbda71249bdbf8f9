//! Verification keys: static sets (secret, PEM public key, JWKS file) and remote JWKS (URL or OIDC
//! discovery) refreshed by a background task.
//!
//! A key is only ever used with algorithms of its own type and curve, and a JWK's `alg` pins it to
//! that one algorithm. Keys are never chosen from token headers (`jku`, `x5u`, `jwk`, `x5c`).

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Hmac,
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyKind::Hmac, HS256 | HS384 | HS512)
                | (KeyKind::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyKind::EcP256, ES256)
                | (KeyKind::EcP384, ES384)
                | (KeyKind::Ed25519, EdDSA)
        )
    }
}

pub struct VKey {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// A JWK's `alg`: the only algorithm this key may be used with.
    pub alg: Option<Algorithm>,
    /// For HMAC (and as the reference implementation for the rest).
    pub key: DecodingKey,
    /// Public keys parsed once into aws-lc, per algorithm they fit: verification then skips the
    /// per-call key parsing (a few µs of every cold RSA verification).
    pub parsed: Vec<(Algorithm, aws_lc_rs::signature::ParsedPublicKey)>,
}

fn lc_alg(a: Algorithm) -> Option<&'static dyn aws_lc_rs::signature::VerificationAlgorithm> {
    use aws_lc_rs::signature as s;
    Some(match a {
        Algorithm::RS256 => &s::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &s::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &s::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &s::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &s::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &s::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &s::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &s::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &s::ED25519,
        _ => return None,
    })
}

/// Parses `bytes` (SPKI, PKCS#1 RSAPublicKey, an EC point or a raw Ed25519 key) for every
/// algorithm the key kind fits. A key aws-lc rejects for an algorithm is simply not usable with it.
fn parse_for(
    kind: KeyKind,
    bytes: &[u8],
) -> Vec<(Algorithm, aws_lc_rs::signature::ParsedPublicKey)> {
    use Algorithm::*;
    [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
    .into_iter()
    .filter(|a| kind.fits(*a))
    .filter_map(|a| {
        let lc = lc_alg(a)?;
        aws_lc_rs::signature::ParsedPublicKey::new(lc, bytes)
            .ok()
            .map(|p| (a, p))
    })
    .collect()
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017).
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn len(out: &mut Vec<u8>, l: usize) {
        if l < 0x80 {
            out.push(l as u8);
        } else {
            let b = l.to_be_bytes();
            let skip = b.iter().take_while(|x| **x == 0).count();
            out.push(0x80 | (b.len() - skip) as u8);
            out.extend_from_slice(&b[skip..]);
        }
    }
    fn int(out: &mut Vec<u8>, v: &[u8]) {
        let v = &v[v
            .iter()
            .take_while(|x| **x == 0)
            .count()
            .min(v.len().saturating_sub(1))..];
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        len(out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    int(&mut body, n);
    int(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.push(0x30);
    len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

impl VKey {
    /// The aws-lc parsed key for `alg`, when there is one.
    pub fn parsed_for(&self, alg: Algorithm) -> Option<&aws_lc_rs::signature::ParsedPublicKey> {
        self.parsed.iter().find(|(a, _)| *a == alg).map(|(_, p)| p)
    }
}

impl std::fmt::Debug for VKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VKey {
    pub fn usable_with(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<VKey>,
}

impl KeySet {
    /// Keys that may verify a token with this `kid` (when given) and `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.usable_with(alg) && (kid.is_none() || k.kid.as_deref() == kid))
    }

    /// Parses a JWK Set. Keys that are not for signatures, of unsupported types, or malformed are
    /// skipped and named in the second value; symmetric (`oct`) keys only when `allow_oct`.
    pub fn from_jwks(bytes: &[u8], allow_oct: bool) -> Result<(KeySet, Vec<String>), String> {
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JWK Set (JSON): {e}"))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("not a JWK Set: no `keys` array")?;
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for (i, jwk) in keys.iter().enumerate() {
            match parse_jwk(jwk, allow_oct) {
                Ok(Some(k)) => set.keys.push(k),
                Ok(None) => {}
                Err(e) => skipped.push(format!("keys[{i}]: {e}")),
            }
        }
        Ok((set, skipped))
    }

    /// A PEM public key (SPKI: RSA, EC P-256/P-384 or Ed25519).
    pub fn from_public_pem(pem: &[u8]) -> Result<KeySet, String> {
        use rustls_pki_types::pem::PemObject;
        let spki = rustls_pki_types::SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PEM public key (SPKI): {e}"))?;
        let der = spki.as_ref();
        const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
        const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
        let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
        let (kind, key) = if has(RSA) {
            (KeyKind::Rsa, DecodingKey::from_rsa_pem(pem))
        } else if has(P256) {
            (KeyKind::EcP256, DecodingKey::from_ec_pem(pem))
        } else if has(P384) {
            (KeyKind::EcP384, DecodingKey::from_ec_pem(pem))
        } else if has(ED25519) {
            (KeyKind::Ed25519, DecodingKey::from_ed_pem(pem))
        } else {
            return Err("unsupported public key type (use RSA, EC P-256/P-384 or Ed25519)".into());
        };
        let key = key.map_err(|e| format!("unusable public key: {e}"))?;
        Ok(KeySet {
            keys: vec![VKey {
                kid: None,
                kind,
                alg: None,
                key,
                parsed: parse_for(kind, der),
            }],
        })
    }

    pub fn from_secret(secret: &[u8]) -> KeySet {
        KeySet {
            keys: vec![VKey {
                kid: None,
                kind: KeyKind::Hmac,
                alg: None,
                key: DecodingKey::from_secret(secret),
                parsed: Vec::new(),
            }],
        }
    }
}

fn s<'a>(jwk: &'a Value, k: &str) -> Result<&'a str, String> {
    jwk.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing `{k}`"))
}

fn parse_jwk(jwk: &Value, allow_oct: bool) -> Result<Option<VKey>, String> {
    if let Some(u) = jwk.get("use") {
        if u.as_str() != Some("sig") {
            return Ok(None); // an encryption key: not ours to use
        }
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err("`kid` is not a string".into()),
    };
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(a)) => match Algorithm::from_str(a) {
            Ok(a) => Some(a),
            Err(_) => return Err(format!("unsupported `alg` {a}")),
        },
        Some(_) => return Err("`alg` is not a string".into()),
    };
    let bad = |e: jsonwebtoken::errors::Error| format!("malformed key: {e}");
    let b64 = |k: &str| -> Result<Vec<u8>, String> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s(jwk, k)?)
            .map_err(|_| format!("`{k}` is not base64url"))
    };
    let (kind, key, raw) = match s(jwk, "kty")? {
        "RSA" => (
            KeyKind::Rsa,
            DecodingKey::from_rsa_components(s(jwk, "n")?, s(jwk, "e")?).map_err(bad)?,
            rsa_public_key_der(&b64("n")?, &b64("e")?),
        ),
        "EC" => {
            let kind = match s(jwk, "crv")? {
                "P-256" => KeyKind::EcP256,
                "P-384" => KeyKind::EcP384,
                c => return Err(format!("unsupported curve {c}")),
            };
            let mut point = vec![0x04];
            point.extend(b64("x")?);
            point.extend(b64("y")?);
            (
                kind,
                DecodingKey::from_ec_components(s(jwk, "x")?, s(jwk, "y")?).map_err(bad)?,
                point,
            )
        }
        "OKP" => match s(jwk, "crv")? {
            "Ed25519" => (
                KeyKind::Ed25519,
                DecodingKey::from_ed_components(s(jwk, "x")?).map_err(bad)?,
                b64("x")?,
            ),
            c => return Err(format!("unsupported curve {c}")),
        },
        "oct" if allow_oct => (
            KeyKind::Hmac,
            DecodingKey::from_secret(&b64("k")?),
            Vec::new(),
        ),
        "oct" => return Err("symmetric keys are only accepted from jwks_file".into()),
        t => return Err(format!("unsupported key type {t}")),
    };
    let parsed = if kind == KeyKind::Hmac {
        Vec::new()
    } else {
        parse_for(kind, &raw)
    };
    if let Some(a) = alg {
        if !kind.fits(a) {
            return Err(format!("`alg` {a:?} does not fit a {kind:?} key"));
        }
    }
    Ok(Some(VKey {
        kid,
        kind,
        alg,
        key,
        parsed,
    }))
}

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

    #[test]
    fn jwk_alg_pins_and_kinds_fit() {
        let doc = br#"{"keys":[
            {"kty":"EC","crv":"P-256","kid":"e","alg":"ES256",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","crv":"P-256","kid":"bad","alg":"RS256",
             "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"oct","k":"c2VjcmV0"},
            {"kty":"RSA","use":"enc","n":"x","e":"AQAB"}
        ]}"#;
        let (set, skipped) = KeySet::from_jwks(doc, false).expect("parses");
        assert_eq!(set.keys.len(), 1);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(set.candidates(Some("e"), Algorithm::ES256).count(), 1);
        assert!(set.keys[0].parsed_for(Algorithm::ES256).is_some());
        assert!(set.keys[0].parsed_for(Algorithm::ES384).is_none());
        assert_eq!(set.candidates(Some("e"), Algorithm::ES384).count(), 0);
        assert_eq!(set.candidates(None, Algorithm::HS256).count(), 0);
        let (set, _) = KeySet::from_jwks(doc, true).expect("parses");
        assert_eq!(set.candidates(None, Algorithm::HS256).count(), 1);
    }
}
