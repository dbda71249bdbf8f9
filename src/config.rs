//! The config file: YAML -> raw serde structs (`deny_unknown_fields`) -> [`compile`] -> one immutable
//! [`Snapshot`] that the request path reads without locks.
//!
//! Everything that can be decided from the file is decided here, once: TLS server configs, the
//! route table, upstream clients, header names. `serde_yaml` stays confined to this module.

use crate::audit::{Audit, AuditTarget};
use crate::auth::jwks::{JwksLocation, JwksTiming, KeySet, RemoteJwks};
use crate::auth::jwt::{JwtAuthn, Keys, TokenSource, VerifyCache};
use crate::auth::rate_limit::{LimitKey, LimitSpec, RateLimit};
use crate::auth::revocation::Revocations;
use crate::auth::scope::ScopeRule;
use crate::auth::{AuthPolicy, Authenticator, AuthnDef, Chain};
use crate::forward::Upstream;
use crate::locate::Locator;
use crate::router::{HostMatch, PathMatch, Route, Router};
use crate::tls;
use crate::values::{Dur, Num, Rate, S};
use ipnet::IpNet;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Raw schema (SPEC section 2). Field names are the contract.

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub trusted_proxies: Vec<S>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub authenticators: BTreeMap<String, RawAuthenticator>,
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RawRateLimit>,
    #[serde(default)]
    pub scopes: RawScopes,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    pub workers: Option<Num>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub bind: S,
    /// `sha256:<64 hex>` of the admin token.
    pub token_sha256: Option<S>,
    pub tls: Option<RawTls>,
    /// Host names the admin API answers to besides IP literals and `localhost` (DNS rebinding).
    pub hosts: Vec<S>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            bind: S("127.0.0.1:9901".into()),
            token_sha256: None,
            tls: None,
            hosts: Vec::new(),
        }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub sqlite: Option<S>,
    pub postgres: Option<S>,
    pub redis: Option<S>,
    /// Cluster mode: what a rate-limit decision does when Redis cannot answer:
    /// `local` (default; this replica's own limiter), `deny` (503) or `allow`.
    pub on_redis_error: Option<S>,
    /// Cluster mode: the most a rate-limit decision waits for Redis (default 100ms).
    pub redis_timeout: Option<Dur>,
    /// Cluster mode: how often a replica re-reads changes even without a notification (repairs
    /// a notification lost with a dropped connection). Default 30s.
    pub resync: Option<Dur>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawScopes {
    pub superscope: Option<S>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub rate: Rate,
    pub burst: Option<Num>,
    pub key: Option<S>,
    pub max_clients: Option<Num>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: S,
    pub bind: S,
    pub tls: Option<RawTls>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<S>,
    pub key: Option<S>,
    pub self_signed: Option<Vec<S>>,
    /// Development: when `cert`, `key` and `client_auth.ca` are all missing, `run` writes a dev
    /// PKI (as `portcullis dev-pki` does) into the folder of `cert` first.
    pub generate_missing: Option<bool>,
    pub client_auth: Option<RawClientAuth>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    pub mode: ClientAuthMode,
    pub ca: Option<S>,
    pub crl: Option<S>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    None,
    Optional,
    Required,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub header_timeout: Dur,
    pub idle_timeout: Dur,
    pub body_timeout: Dur,
    pub max_header_bytes: Num,
    pub max_body_bytes: Num,
    pub max_connections: Num,
    pub shutdown_timeout: Dur,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            header_timeout: Dur(Duration::from_secs(10)),
            idle_timeout: Dur(Duration::from_secs(60)),
            body_timeout: Dur(Duration::from_secs(60)),
            max_header_bytes: Num(16384),
            max_body_bytes: Num(10 * 1024 * 1024),
            max_connections: Num(10_000),
            shutdown_timeout: Dur(Duration::from_secs(30)),
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawLogging {
    pub format: LogFormat,
    pub level: S,
    /// `stdout` | a file path | `off`
    pub audit: S,
}

impl Default for RawLogging {
    fn default() -> Self {
        RawLogging {
            format: LogFormat::Json,
            level: S("info".into()),
            audit: S("stdout".into()),
        }
    }
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Option<S>,
    pub echo: Option<bool>,
    pub connect_timeout: Option<Dur>,
    pub timeout: Option<Dur>,
    /// PEM bundle of CAs trusted for an https upstream (default: none, so set it for https).
    pub ca: Option<S>,
    /// Speak HTTP/2 with prior knowledge (h2c) to a plain-http upstream.
    pub http2: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawAuthenticator {
    Mtls {},
    Jwt(Box<RawJwt>),
    ApiKey {
        /// Accept only keys of these environments (`live`, `test`); default both.
        envs: Option<Vec<S>>,
    },
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    pub issuer: S,
    #[serde(default)]
    pub audiences: Vec<S>,
    #[serde(default)]
    pub algorithms: Vec<S>,
    pub jwks_url: Option<S>,
    pub discovery: Option<bool>,
    pub jwks_file: Option<S>,
    pub public_key: Option<S>,
    pub secret: Option<S>,
    pub leeway: Option<Dur>,
    pub jwks_refresh: Option<Dur>,
    pub jwks_cooldown: Option<Dur>,
    pub jwks_max_stale: Option<Dur>,
    pub require_typ: Option<S>,
    pub token_from: Option<Vec<S>>,
    pub verify_cache: Option<RawVerifyCache>,
    pub scopes_claim: Option<S>,
    pub claims_to_headers: Option<BTreeMap<String, S>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawVerifyCache {
    pub max_entries: Num,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: S,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    pub upstream: S,
    pub auth: RawAuth,
    pub max_body_bytes: Option<Num>,
    pub forward_credentials: Option<bool>,
    pub pre_auth_rate_limit: Option<S>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub host: Option<S>,
    pub path: Option<S>,
    pub path_prefix: Option<S>,
    pub methods: Option<Vec<S>>,
    /// Compare `path` / `path_prefix` ignoring ASCII case, for upstreams that do (IIS, ASP.NET,
    /// Express by default).
    pub case_insensitive: Option<bool>,
}

/// `auth: none`, or a block.
#[derive(Debug)]
pub enum RawAuth {
    None,
    Block(RawAuthBlock),
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAuthBlock {
    #[serde(default)]
    pub any_of: Vec<S>,
    #[serde(default)]
    pub require_client_cert: bool,
    #[serde(default)]
    pub scopes: Vec<S>,
    #[serde(default)]
    pub scopes_any: Vec<S>,
    pub rate_limit: Option<S>,
}

impl<'de> Deserialize<'de> for RawAuth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAuth;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`none` or an auth block such as `{ any_of: [...] }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAuth, E> {
                if v == "none" {
                    Ok(RawAuth::None)
                } else {
                    Err(E::custom(format!(
                        "`{v}`: expected `none` or an auth block such as `{{ any_of: [...] }}`"
                    )))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAuth, A::Error> {
                RawAuthBlock::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawAuth::Block)
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// One problem in a config file, with the field path and, where known, its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
    pub at: Option<(usize, usize)>,
}

/// Every problem found in one config file. Displays as `FILE:LINE:COL: field.path: message` lines.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some((line, col)) = issue.at {
                write!(f, ":{line}:{col}")?;
            }
            if issue.path.is_empty() {
                write!(f, ": {}", issue.message)?;
            } else {
                write!(f, ": {}: {}", issue.path, issue.message)?;
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
            at: None,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The compiled snapshot

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

pub struct ListenerCfg {
    pub name: Arc<str>,
    pub bind: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The raw TLS block, kept so a reload can tell whether the certificate source changed.
    pub raw_tls: Option<RawTls>,
}

pub struct LoggingCfg {
    pub format: LogFormat,
    pub level: String,
}

/// The trusted-proxy set: only these peers may set `X-Forwarded-For` and friends.
#[derive(Debug, Default, Clone)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `::ffff:10.0.0.1` is `10.0.0.1` for every trust decision.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// State that outlives every snapshot: the keys and the JWT denylist.
#[derive(Debug, Default)]
pub struct Shared {
    pub keys: Arc<crate::keys::KeyRing>,
    pub revocations: Arc<Revocations>,
}

/// `store.postgres`. Not `Debug`: the URL may carry a password.
pub struct PostgresCfg {
    pub url: String,
    pub resync: std::time::Duration,
}

impl std::fmt::Debug for PostgresCfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCfg")
            .field("url", &crate::store::postgres::redact_url(&self.url))
            .field("resync", &self.resync)
            .finish()
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

impl AdminCfg {
    /// Whether a request's Host may reach the admin API. A page on `attacker.test` that rebinds
    /// its name to 127.0.0.1 makes the browser send `Host: attacker.test`: only names the
    /// operator listed pass (docs/attack-cases.md ADM-04: envoyproxy/envoy#2769). No Host at all
    /// (HTTP/1.0 clients) is not a browser.
    pub fn host_allowed(&self, host: Option<&[u8]>) -> bool {
        let Some(v) = host else { return true };
        let Some(a) = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<http::uri::Authority>().ok())
        else {
            return false;
        };
        let h = a.host().trim_end_matches('.').to_ascii_lowercase();
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
            || h == "localhost"
            || h.ends_with(".localhost")
            || self.hosts.iter().any(|n| n == "*" || *n == h)
    }
}

pub struct Snapshot {
    pub source: PathBuf,
    pub shared: Arc<Shared>,
    pub admin: AdminCfg,
    /// The SQLite file (resolved).
    pub store_path: PathBuf,
    /// Cluster mode: keys and revocations in PostgreSQL (then `store_path` is unused).
    pub postgres: Option<PostgresCfg>,
    /// Cluster mode: rate limits shared through Redis.
    pub shared_limits: Option<Arc<crate::auth::shared_limit::SharedLimits>>,
    pub listeners: Vec<ListenerCfg>,
    pub limits: Limits,
    pub logging: LoggingCfg,
    pub trusted_proxies: TrustedProxies,
    pub router: Router,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    pub workers: usize,
    pub rate_limits: BTreeMap<String, Arc<RateLimit>>,
    pub jwts: Vec<Arc<JwtAuthn>>,
    pub remote_jwks: Vec<Arc<RemoteJwks>>,
    pub audit: Arc<Audit>,
}

impl Snapshot {
    /// Starts background work of this snapshot (JWKS refreshers); needs a tokio runtime.
    pub fn start_background(&self) {
        for j in &self.remote_jwks {
            j.start();
        }
    }

    /// Periodic upkeep: idle rate-limit keys, expired cache entries and revocations.
    pub fn sweep(&self) {
        let now = crate::auth::jwt::unix_now();
        for l in self.rate_limits.values() {
            l.sweep();
        }
        for j in &self.jwts {
            if let Some(c) = &j.cache {
                c.sweep(now);
                // A key set past jwks_max_stale verifies nothing, cached or not.
                if let crate::auth::jwt::Keys::Remote(r) = &j.keys {
                    if r.current().is_none() {
                        c.clear();
                    }
                }
            }
        }
        self.shared.revocations.purge(now);
    }

    pub fn listener(&self, name: &str) -> Option<&ListenerCfg> {
        self.listeners.iter().find(|l| &*l.name == name)
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Reads, parses and compiles `file`. `prev` lets unchanged parts (upstream connection pools) be
/// carried over on reload.
/// `Run` may create development files (`tls.generate_missing`); `Check` only looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Check,
}

pub fn load(file: &Path, prev: Option<&Snapshot>) -> Result<Snapshot, ConfigErrors> {
    load_mode(file, prev, Mode::Run)
}

pub fn load_mode(
    file: &Path,
    prev: Option<&Snapshot>,
    mode: Mode,
) -> Result<Snapshot, ConfigErrors> {
    let shared = prev.map_or_else(|| Arc::new(Shared::default()), |p| p.shared.clone());
    load_shared(file, prev, mode, &shared)
}

/// Loads with the given long-lived state (the server passes its own).
pub fn load_shared(
    file: &Path,
    prev: Option<&Snapshot>,
    mode: Mode,
    shared: &Arc<Shared>,
) -> Result<Snapshot, ConfigErrors> {
    let src = std::fs::read_to_string(file).map_err(|e| ConfigErrors {
        file: file.to_path_buf(),
        issues: vec![ConfigIssue {
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
            at: None,
        }],
    })?;
    load_str_shared(file, &src, prev, mode, shared)
}

pub fn load_str(
    file: &Path,
    src: &str,
    prev: Option<&Snapshot>,
    mode: Mode,
) -> Result<Snapshot, ConfigErrors> {
    let shared = prev.map_or_else(|| Arc::new(Shared::default()), |p| p.shared.clone());
    load_str_shared(file, src, prev, mode, &shared)
}

pub fn load_str_shared(
    file: &Path,
    src: &str,
    prev: Option<&Snapshot>,
    mode: Mode,
    shared: &Arc<Shared>,
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
    compile(raw, file, &base, prev, mode, shared).map_err(|mut issues| {
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

/// Raw -> snapshot, reporting every problem found (not just the first).
pub fn compile(
    raw: RawConfig,
    file: &Path,
    base: &Path,
    prev: Option<&Snapshot>,
    mode: Mode,
    shared: &Arc<Shared>,
) -> Result<Snapshot, Vec<ConfigIssue>> {
    let mut issues = Issues::default();

    let d = RawLimits::default();
    let limits = Limits {
        header_timeout: raw.limits.header_timeout.0,
        idle_timeout: raw.limits.idle_timeout.0,
        body_timeout: raw.limits.body_timeout.0,
        max_header_bytes: raw.limits.max_header_bytes.0 as usize,
        max_body_bytes: raw.limits.max_body_bytes.0,
        max_connections: raw.limits.max_connections.0 as usize,
        shutdown_timeout: raw.limits.shutdown_timeout.0,
    };
    if limits.header_timeout.is_zero() {
        issues.add("limits.header_timeout", "must be greater than 0");
    }
    if limits.idle_timeout.is_zero() {
        issues.add("limits.idle_timeout", "must be greater than 0");
    }
    if limits.body_timeout.is_zero() {
        issues.add("limits.body_timeout", "must be greater than 0");
    }
    // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
    if !(8192..=1 << 20).contains(&limits.max_header_bytes) {
        issues.add(
            "limits.max_header_bytes",
            format!(
                "must be between 8192 and 1048576 (default {})",
                d.max_header_bytes.0
            ),
        );
    }
    if limits.max_connections == 0 || limits.max_connections > 1_000_000 {
        issues.add("limits.max_connections", "must be between 1 and 1000000");
    }

    // Listeners
    let mut listeners = Vec::new();
    if raw.listeners.is_empty() {
        issues.add("listeners", "at least one listener is required");
    }
    let mut names = HashSet::new();
    let mut binds = HashSet::new();
    for (i, l) in raw.listeners.iter().enumerate() {
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
        let tls_cfg = match &l.tls {
            None => None,
            Some(t)
                if t.generate_missing == Some(true)
                    && !dev_files_ready(t, base, mode, &p, &mut issues) =>
            {
                None
            }
            Some(t) => {
                // Unchanged TLS source on reload still re-reads the files: SIGHUP is how a renewed
                // certificate gets picked up.
                match tls::server_config(t, base, &format!("{p}.tls")) {
                    Ok(c) => Some(c),
                    Err(errs) => {
                        for (path, msg) in errs {
                            issues.add(path, msg);
                        }
                        None
                    }
                }
            }
        };
        if let Some(bind) = bind {
            listeners.push(ListenerCfg {
                name: Arc::from(l.name.0.as_str()),
                bind,
                tls: tls_cfg,
                raw_tls: l.tls.clone(),
            });
        }
    }

    // Trusted proxies
    let mut nets = Vec::new();
    for (i, t) in raw.trusted_proxies.iter().enumerate() {
        match t.0.parse::<IpNet>() {
            Ok(n) => nets.push(n),
            Err(_) => match t.0.parse::<IpAddr>() {
                Ok(ip) => nets.push(IpNet::from(ip)),
                Err(_) => issues.add(
                    format!("trusted_proxies[{i}]"),
                    format!("`{t}` is not an IP address or CIDR (e.g. 10.0.0.0/8)"),
                ),
            },
        }
    }

    // Upstreams
    let mut upstreams = BTreeMap::new();
    for (name, u) in &raw.upstreams {
        let p = format!("upstreams.{name}");
        let reuse = prev
            .and_then(|s| s.upstreams.get(name))
            .filter(|old| old.raw() == u);
        match reuse {
            Some(old) => {
                upstreams.insert(name.clone(), old.clone());
            }
            None => match Upstream::compile(name, u, base, &p) {
                Ok(up) => {
                    upstreams.insert(name.clone(), Arc::new(up));
                }
                Err(errs) => {
                    for (path, msg) in errs {
                        issues.add(path, msg);
                    }
                }
            },
        }
    }

    // Shared state carried across reloads
    let revocations = shared.revocations.clone();

    // Rate limits
    let on_redis_error = match raw.store.on_redis_error.as_ref().map(|s| s.as_str()) {
        None => crate::auth::shared_limit::OnRedisError::Local,
        Some(v) => match crate::auth::shared_limit::OnRedisError::parse(v) {
            Ok(o) => o,
            Err(e) => {
                issues.add("store.on_redis_error", e);
                crate::auth::shared_limit::OnRedisError::Local
            }
        },
    };
    let shared_limits = match &raw.store.redis {
        None => {
            for (set, field) in [
                (raw.store.on_redis_error.is_some(), "store.on_redis_error"),
                (raw.store.redis_timeout.is_some(), "store.redis_timeout"),
            ] {
                if set {
                    issues.add(field, "only used with store.redis");
                }
            }
            None
        }
        Some(url) => {
            let timeout = raw
                .store
                .redis_timeout
                .as_ref()
                .map_or(std::time::Duration::from_millis(100), |d| d.0);
            // One client per process: a reload with the same settings keeps it (and its
            // connection); a reload that changes them starts a new one.
            match prev
                .and_then(|p| p.shared_limits.as_ref())
                .filter(|l| l.same_settings(url.as_str(), on_redis_error, timeout))
            {
                Some(l) => Some(l.clone()),
                None => match crate::auth::shared_limit::SharedLimits::new(
                    url.as_str(),
                    on_redis_error,
                    timeout,
                ) {
                    Ok(l) => Some(Arc::new(l)),
                    Err(e) => {
                        issues.add("store.redis", e);
                        None
                    }
                },
            }
        }
    };
    let mut rate_limits: BTreeMap<String, Arc<RateLimit>> = BTreeMap::new();
    for (name, r) in &raw.rate_limits {
        let p = format!("rate_limits.{name}");
        let burst = match r.burst {
            Some(Num(0)) => {
                issues.add(format!("{p}.burst"), "must be at least 1");
                continue;
            }
            Some(Num(b)) if b > u64::from(u32::MAX) => {
                issues.add(format!("{p}.burst"), "is too large");
                continue;
            }
            Some(Num(b)) => b as u32,
            None => r.rate.count,
        };
        let key = match r
            .key
            .as_ref()
            .map_or(Ok(LimitKey::Identity), |k| LimitKey::parse(k.as_str()))
        {
            Ok(k) => k,
            Err(e) => {
                issues.add(format!("{p}.key"), e);
                continue;
            }
        };
        let max_clients = match r.max_clients {
            None => crate::auth::rate_limit::DEFAULT_MAX_CLIENTS,
            Some(Num(0)) => {
                issues.add(format!("{p}.max_clients"), "must be at least 1");
                continue;
            }
            Some(Num(n)) if n > 100_000_000 => {
                issues.add(
                    format!("{p}.max_clients"),
                    "is too large (at most 100000000, about 10 GiB of state)",
                );
                continue;
            }
            Some(Num(n)) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let spec = LimitSpec {
            count: r.rate.count,
            per: r.rate.per,
            burst,
        };
        // A reload keeps the buckets of a quota that did not change (`max_clients` may).
        let reuse = prev
            .and_then(|s| s.rate_limits.get(name))
            .filter(|old| old.spec == spec && old.key == key);
        match reuse {
            Some(old) => {
                old.set_max_clients(max_clients);
                rate_limits.insert(name.clone(), old.clone());
            }
            None => match RateLimit::new(name, spec, key) {
                Ok(l) => {
                    l.set_max_clients(max_clients);
                    rate_limits.insert(name.clone(), Arc::new(l));
                }
                Err(e) => issues.add(format!("{p}.rate"), e),
            },
        }
    }

    // Authenticators
    let mut authenticators = BTreeMap::new();
    let mut jwts = Vec::new();
    let mut remote_jwks: Vec<Arc<RemoteJwks>> = Vec::new();
    for (name, a) in &raw.authenticators {
        let p = format!("authenticators.{name}");
        let compiled = match a {
            RawAuthenticator::Mtls {} => Authenticator::Mtls,
            RawAuthenticator::ApiKey { envs } => {
                let mut list = Vec::new();
                for (i, e) in envs.iter().flatten().enumerate() {
                    match crate::keys::Env::parse(e.as_str()) {
                        Some(env) => list.push(env),
                        None => {
                            issues.add(format!("{p}.envs[{i}]"), format!("`{e}`: use live or test"))
                        }
                    }
                }
                Authenticator::ApiKey(Arc::new(crate::auth::api_key::ApiKeyAuthn {
                    name: Arc::from(name.as_str()),
                    envs: list,
                    ring: shared.keys.clone(),
                }))
            }
            RawAuthenticator::Jwt(j) => {
                match compile_jwt(name, j, base, &p, prev, &revocations, &mut remote_jwks) {
                    Ok(j) => {
                        let j = Arc::new(j);
                        jwts.push(j.clone());
                        Authenticator::Jwt(j)
                    }
                    Err(errs) => {
                        for (path, msg) in errs {
                            issues.add(path, msg);
                        }
                        continue;
                    }
                }
            }
        };
        authenticators.insert(
            name.clone(),
            Arc::new(AuthnDef {
                name: Arc::from(name.as_str()),
                kind: compiled,
            }),
        );
    }
    let superscope = raw
        .scopes
        .superscope
        .as_ref()
        .map(|s| s.0.clone())
        .filter(|s| !s.is_empty());

    // Routes
    let mut routes = Vec::new();
    let mut route_names = HashSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let p = format!("routes[{i}]");
        if r.name.0.is_empty() {
            issues.add(format!("{p}.name"), "must not be empty");
        } else if !route_names.insert(r.name.0.clone()) {
            issues.add(
                format!("{p}.name"),
                format!("duplicate route name `{}`", r.name),
            );
        }
        let upstream = upstreams.get(r.upstream.as_str()).cloned();
        if upstream.is_none() && !raw.upstreams.contains_key(r.upstream.as_str()) {
            issues.add(
                format!("{p}.upstream"),
                format!(
                    "unknown upstream `{}` (defined: {})",
                    r.upstream,
                    list_names(raw.upstreams.keys())
                ),
            );
        }
        let host = match &r.matcher.host {
            None => HostMatch::Any,
            Some(h) => match HostMatch::parse(h.as_str()) {
                Ok(m) => m,
                Err(e) => {
                    issues.add(format!("{p}.match.host"), e);
                    HostMatch::Any
                }
            },
        };
        let path = match (&r.matcher.path, &r.matcher.path_prefix) {
            (Some(_), Some(_)) => {
                issues.add(
                    format!("{p}.match"),
                    "give either `path` or `path_prefix`, not both",
                );
                PathMatch::Any
            }
            (Some(x), None) => match PathMatch::exact(x.as_str()) {
                Ok(m) => m,
                Err(e) => {
                    issues.add(format!("{p}.match.path"), e);
                    PathMatch::Any
                }
            },
            (None, Some(x)) => match PathMatch::prefix(x.as_str()) {
                Ok(m) => m,
                Err(e) => {
                    issues.add(format!("{p}.match.path_prefix"), e);
                    PathMatch::Any
                }
            },
            (None, None) => PathMatch::Any,
        };
        let mut methods = Vec::new();
        for (j, m) in r.matcher.methods.iter().flatten().enumerate() {
            let up = m.as_str().to_ascii_uppercase();
            match http::Method::from_bytes(up.as_bytes()) {
                Ok(method) if !up.is_empty() => methods.push(method),
                _ => issues.add(
                    format!("{p}.match.methods[{j}]"),
                    format!("`{m}` is not an HTTP method"),
                ),
            }
        }
        let auth = match &r.auth {
            RawAuth::None => AuthPolicy::None,
            RawAuth::Block(b) => {
                let mut any_of = Vec::new();
                let mut route_jwts: Vec<Arc<JwtAuthn>> = Vec::new();
                for (j, a) in b.any_of.iter().enumerate() {
                    match authenticators.get(a.as_str()) {
                        Some(x) => {
                            if let Authenticator::Jwt(jw) = &x.kind {
                                if route_jwts.iter().any(|o| o.issuer == jw.issuer) {
                                    issues.add(
                                        format!("{p}.auth.any_of[{j}]"),
                                        format!("two JWT authenticators with issuer `{}` on one route: a token could not be routed to one of them", jw.issuer),
                                    );
                                }
                                route_jwts.push(jw.clone());
                            }
                            any_of.push(x.clone());
                        }
                        None if raw.authenticators.contains_key(a.as_str()) => {}
                        None => issues.add(
                            format!("{p}.auth.any_of[{j}]"),
                            format!(
                                "unknown authenticator `{a}` (defined: {})",
                                list_names(raw.authenticators.keys())
                            ),
                        ),
                    }
                }
                let rate_limit = match &b.rate_limit {
                    None => None,
                    Some(n) => {
                        let l = rate_limits.get(n.as_str()).cloned();
                        if l.is_none() && !raw.rate_limits.contains_key(n.as_str()) {
                            issues.add(
                                format!("{p}.auth.rate_limit"),
                                format!(
                                    "unknown rate limit `{n}` (defined: {})",
                                    list_names(raw.rate_limits.keys())
                                ),
                            );
                        }
                        l
                    }
                };
                let strings = |v: &Vec<S>| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
                let credential_cookies = route_jwts_sources(&any_of, true);
                let credential_params = route_jwts_sources(&any_of, false);
                AuthPolicy::Chain(Box::new(Chain {
                    any_of,
                    jwts: route_jwts,
                    require_client_cert: b.require_client_cert,
                    scopes: ScopeRule {
                        all: strings(&b.scopes),
                        any: strings(&b.scopes_any),
                    },
                    superscope: superscope.clone(),
                    rate_limit,
                    shared_limits: shared_limits.clone(),
                    credential_cookies,
                    credential_params,
                }))
            }
        };
        let strip_credentials = !r.forward_credentials.unwrap_or(false)
            && matches!(&auth, AuthPolicy::Chain(c) if !c.any_of.is_empty());
        let pre_auth_rate_limit = match &r.pre_auth_rate_limit {
            None => None,
            Some(n) => {
                let l = rate_limits.get(n.as_str()).cloned();
                if l.is_none() && !raw.rate_limits.contains_key(n.as_str()) {
                    issues.add(
                        format!("{p}.pre_auth_rate_limit"),
                        format!(
                            "unknown rate limit `{n}` (defined: {})",
                            list_names(raw.rate_limits.keys())
                        ),
                    );
                }
                l
            }
        };
        let credential_params: &[String] = if strip_credentials {
            auth.credential_sources().1
        } else {
            &[]
        };
        let strip_params = credential_params
            .iter()
            .cloned()
            .chain(["_method".to_owned()])
            .collect();
        if let Some(upstream) = upstream {
            routes.push(Route {
                name: Arc::from(r.name.0.as_str()),
                host,
                path,
                methods,
                upstream,
                auth,
                max_body_bytes: r.max_body_bytes.map_or(limits.max_body_bytes, |n| n.0),
                case_insensitive: r.matcher.case_insensitive.unwrap_or(false),
                strip_params,
                strip_credentials,
                pre_auth_rate_limit,
            });
        }
    }

    let workers = match std::env::var("PORTCULLIS_WORKERS") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                issues.add(
                    "workers",
                    format!("PORTCULLIS_WORKERS=`{v}` is not a positive integer"),
                );
                1
            }
        },
        Err(_) => match raw.workers {
            Some(Num(0)) => {
                issues.add("workers", "must be at least 1");
                1
            }
            Some(Num(n)) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
    };

    if let Err(e) = tracing_subscriber::EnvFilter::try_new(raw.logging.level.as_str()) {
        issues.add("logging.level", format!("invalid level: {e}"));
    }

    // Admin listener and store
    let admin_bind = match raw.admin.bind.0.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            issues.add(
                "admin.bind",
                format!("`{}` is not an address:port", raw.admin.bind),
            );
            "127.0.0.1:9901"
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9901)))
        }
    };
    // An upstream that is this gateway's own admin API or one of its listeners: the first would
    // put the admin API behind data routes (Kong CVE-2020-11710; docs/attack-cases.md ADM-05),
    // the second loops every request through the gateway until a limit cuts it.
    for (name, u) in &raw.upstreams {
        let Some(target) = u.url.as_ref().and_then(|url| own_socket(url.as_str())) else {
            continue;
        };
        let hits = |bind: SocketAddr| {
            bind.port() == target.port()
                && bind.port() != 0
                && (bind.ip() == target.ip()
                    || (bind.ip().is_unspecified() && target.ip().is_loopback()))
        };
        if hits(admin_bind) {
            issues.add(
                format!("upstreams.{name}.url"),
                format!("`{}` is this gateway's admin listener", target),
            );
        }
        if let Some(l) = listeners.iter().find(|l| hits(l.bind)) {
            issues.add(
                format!("upstreams.{name}.url"),
                format!(
                    "`{target}` is this gateway's listener `{}`: requests would loop",
                    l.name
                ),
            );
        }
    }
    let token_sha256 = match &raw.admin.token_sha256 {
        None => None,
        Some(t) => {
            match parse_sha256(t.as_str()) {
                Some(h) => Some(h),
                None => {
                    issues.add("admin.token_sha256", "must be `sha256:` followed by 64 hex digits (see `portcullis admin-token`)");
                    None
                }
            }
        }
    };
    let admin_tls = match &raw.admin.tls {
        None => None,
        Some(t) => match tls::server_config(t, base, "admin.tls") {
            Ok(c) => Some(c),
            Err(errs) => {
                for (path, msg) in errs {
                    issues.add(path, msg);
                }
                None
            }
        },
    };
    let postgres = match (&raw.store.postgres, &raw.store.sqlite) {
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
                        crate::store::postgres::redact_url(u)
                    ),
                );
                None
            } else {
                Some(PostgresCfg {
                    url: u.to_owned(),
                    resync: raw
                        .store
                        .resync
                        .as_ref()
                        .map_or(std::time::Duration::from_secs(30), |d| d.0)
                        .max(std::time::Duration::from_millis(100)),
                })
            }
        }
        (None, _) => {
            if raw.store.resync.is_some() {
                issues.add("store.resync", "only used with store.postgres");
            }
            None
        }
    };
    let store_path = resolve(
        base,
        raw.store
            .sqlite
            .as_ref()
            .map_or("data/portcullis.db", |s| s.as_str()),
    );

    let audit_target = AuditTarget::parse(raw.logging.audit.as_str(), base);
    let audit = match prev.map(|p| &p.audit).filter(|a| a.target == audit_target) {
        Some(a) => a.clone(),
        // `check` only validates: it opens nothing.
        None if mode == Mode::Check => Arc::new(Audit::off()),
        None => match Audit::open(audit_target) {
            Ok(a) => Arc::new(a),
            Err(e) => {
                issues.add("logging.audit", format!("cannot open the audit log: {e}"));
                Arc::new(Audit::off())
            }
        },
    };

    if !issues.0.is_empty() {
        return Err(issues.0);
    }
    Ok(Snapshot {
        source: file.to_path_buf(),
        shared: shared.clone(),
        admin: AdminCfg {
            bind: admin_bind,
            token_sha256,
            tls: admin_tls,
            hosts: raw
                .admin
                .hosts
                .iter()
                .map(|h| h.0.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        },
        store_path,
        postgres,
        shared_limits,
        listeners,
        limits,
        logging: LoggingCfg {
            format: raw.logging.format,
            level: raw.logging.level.0,
        },
        trusted_proxies: TrustedProxies(nets),
        router: Router::new(routes),
        upstreams,
        workers,
        rate_limits,
        jwts,
        remote_jwks,
        audit,
    })
}

#[allow(clippy::too_many_arguments)] // the compile context, passed once
fn compile_jwt(
    name: &str,
    j: &RawJwt,
    base: &Path,
    p: &str,
    prev: Option<&Snapshot>,
    revocations: &Arc<Revocations>,
    remote_jwks: &mut Vec<Arc<RemoteJwks>>,
) -> Result<JwtAuthn, Vec<(String, String)>> {
    use jsonwebtoken::Algorithm;
    use std::str::FromStr;
    let mut errs: Vec<(String, String)> = Vec::new();
    let mut err = |f: &str, m: String| errs.push((format!("{p}.{f}"), m));
    if j.issuer.0.is_empty() {
        err("issuer", "must not be empty".into());
    }
    if j.audiences.is_empty() {
        err(
            "audiences",
            "list the audiences this gateway accepts (the token's `aud` must name one)".into(),
        );
    }
    let mut algorithms = Vec::new();
    if j.algorithms.is_empty() {
        err(
            "algorithms",
            "required: the only algorithms accepted (never taken from the token)".into(),
        );
    }
    for (i, a) in j.algorithms.iter().enumerate() {
        match Algorithm::from_str(a.as_str()) {
            Ok(alg) => algorithms.push(alg),
            Err(_) => err(
                &format!("algorithms[{i}]"),
                format!("`{a}` is not supported (HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384, EdDSA)"),
            ),
        }
    }
    let hmac = algorithms
        .iter()
        .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
    let asym = algorithms
        .iter()
        .any(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512));
    let dur = |d: Option<Dur>, default: u64| d.map_or(Duration::from_secs(default), |d| d.0);
    let timing = JwksTiming {
        refresh: dur(j.jwks_refresh, 300),
        cooldown: dur(j.jwks_cooldown, 30),
        max_stale: dur(j.jwks_max_stale, 86_400),
    };
    if timing.refresh.is_zero() {
        err("jwks_refresh", "must be greater than 0".into());
    }
    let sources = [
        j.jwks_url.is_some(),
        j.discovery == Some(true),
        j.jwks_file.is_some(),
        j.public_key.is_some(),
        j.secret.is_some(),
    ];
    let n_sources = sources.iter().filter(|x| **x).count();
    let mut keys = None;
    if n_sources != 1 {
        err("", "give exactly one key source: jwks_url, discovery: true, jwks_file, public_key or secret".into());
    } else if let Some(secret) = &j.secret {
        if asym {
            err(
                "algorithms",
                "a `secret` only verifies HS256/HS384/HS512".into(),
            );
        }
        if secret.0.len() < 32 {
            err(
                "secret",
                "must be at least 32 bytes (HMAC keys shorter than the hash are guessable)".into(),
            );
        }
        keys = Some(Keys::Static(Arc::new(KeySet::from_secret(
            secret.0.as_bytes(),
        ))));
    } else if hmac && j.jwks_file.is_none() {
        err("algorithms", "HS256/HS384/HS512 need a `secret` (or `oct` keys in a jwks_file); public keys never verify HMAC".into());
    } else if let Some(f) = &j.public_key {
        match std::fs::read(resolve(base, f.as_str()))
            .map_err(|e| format!("cannot read {f}: {e}"))
            .and_then(|pem| KeySet::from_public_pem(&pem))
        {
            Ok(set) => {
                if !algorithms
                    .iter()
                    .any(|a| set.candidates(None, *a).next().is_some())
                {
                    err("public_key", "the key fits none of `algorithms`".into());
                }
                keys = Some(Keys::Static(Arc::new(set)));
            }
            Err(e) => err("public_key", e),
        }
    } else if let Some(f) = &j.jwks_file {
        match std::fs::read(resolve(base, f.as_str()))
            .map_err(|e| format!("cannot read {f}: {e}"))
            .and_then(|b| KeySet::from_jwks(&b, true))
        {
            Ok((set, skipped)) => {
                for s in skipped {
                    tracing::warn!(authenticator = name, skipped = %s, "jwks_file key skipped");
                }
                if !algorithms
                    .iter()
                    .any(|a| set.candidates(None, *a).next().is_some())
                {
                    err("jwks_file", "no key in the file fits `algorithms`".into());
                }
                keys = Some(Keys::Static(Arc::new(set)));
            }
            Err(e) => err("jwks_file", e),
        }
    } else {
        let location = if let Some(u) = &j.jwks_url {
            if let Err(e) = crate::auth::jwks::check_fetch_url(u.as_str()) {
                err("jwks_url", e);
            }
            JwksLocation::Url(u.0.clone())
        } else {
            if let Err(e) = crate::auth::jwks::check_fetch_url(j.issuer.as_str()) {
                err(
                    "discovery",
                    format!("discovery needs an https issuer URL: {e}"),
                );
            }
            JwksLocation::Discovery(j.issuer.0.clone())
        };
        let reuse = prev
            .and_then(|s| {
                s.remote_jwks
                    .iter()
                    .find(|r| r.location == location && r.timing == timing)
            })
            .cloned()
            .or_else(|| {
                remote_jwks
                    .iter()
                    .find(|r| r.location == location && r.timing == timing)
                    .cloned()
            });
        let remote = match reuse {
            Some(r) => Some(r),
            None => match RemoteJwks::new(location, timing) {
                Ok(r) => Some(Arc::new(r)),
                Err(e) => {
                    err("jwks_url", e);
                    None
                }
            },
        };
        if let Some(r) = remote {
            if !remote_jwks.iter().any(|x| Arc::ptr_eq(x, &r)) {
                remote_jwks.push(r.clone());
            }
            keys = Some(Keys::Remote(r));
        }
    }
    let mut token_from = Vec::new();
    for (i, t) in j.token_from.iter().flatten().enumerate() {
        match TokenSource::parse(t.as_str()) {
            Ok(s) => token_from.push(s),
            Err(e) => err(&format!("token_from[{i}]"), e),
        }
    }
    if token_from.is_empty() {
        token_from.push(TokenSource::Header);
    }
    let mut claims_to_headers = Vec::new();
    for (h, claim) in j.claims_to_headers.iter().flatten() {
        let lower = h.to_ascii_lowercase();
        let reserved = [
            "x-auth-method",
            "x-auth-subject",
            "x-auth-scopes",
            "x-auth-key-id",
            "x-auth-issuer",
        ];
        if !lower.starts_with("x-auth-") || reserved.contains(&lower.as_str()) {
            err(
                &format!("claims_to_headers.{h}"),
                "header names must start with X-Auth- (so client copies are stripped) and not be one of the gateway's own".into(),
            );
            continue;
        }
        match http::HeaderName::from_bytes(lower.as_bytes()) {
            Ok(n) => claims_to_headers.push((n, claim.0.clone())),
            Err(_) => err(
                &format!("claims_to_headers.{h}"),
                "not a header name".into(),
            ),
        }
    }
    let cache_entries = j.verify_cache.as_ref().map_or(100_000, |c| c.max_entries.0);
    if !errs.is_empty() {
        return Err(errs);
    }
    let Some(keys) = keys else {
        return Err(vec![(p.to_owned(), "no key source".into())]);
    };
    Ok(JwtAuthn {
        name: Arc::from(name),
        issuer: j.issuer.0.clone(),
        audiences: j.audiences.iter().map(|a| a.0.clone()).collect(),
        algorithms,
        keys,
        leeway: dur(j.leeway, 30).as_secs_f64(),
        require_typ: j.require_typ.as_ref().map(|t| {
            let t = t.as_str();
            t.strip_prefix("application/").unwrap_or(t).to_owned()
        }),
        token_from,
        cache: (cache_entries > 0).then(|| VerifyCache::new(cache_entries as usize)),
        scopes_claim: j
            .scopes_claim
            .as_ref()
            .map_or_else(|| "scope".to_owned(), |s| s.0.clone()),
        claims_to_headers,
        revocations: revocations.clone(),
    })
}

/// For `tls.generate_missing`: true when the files exist (possibly just written). In `Check` mode
/// missing files are fine (run would write them) and no TLS config is built.
fn dev_files_ready(t: &RawTls, base: &Path, mode: Mode, p: &str, issues: &mut Issues) -> bool {
    let (Some(cert), Some(key)) = (&t.cert, &t.key) else {
        issues.add(
            format!("{p}.generate_missing"),
            "needs `cert` and `key` paths to write to",
        );
        return false;
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
        return true;
    }
    if missing.len() != wanted.len() {
        issues.add(
            format!("{p}.generate_missing"),
            format!(
                "only some files are missing ({}); generate_missing only writes a complete set: remove the others or run `portcullis dev-pki`",
                missing.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        );
        return false;
    }
    for (f, name) in &wanted {
        if f.parent() != Some(dir.as_path()) || f.file_name().and_then(|n| n.to_str()) != Some(name)
        {
            issues.add(
                format!("{p}.generate_missing"),
                format!(
                    "writes `{name}` beside `cert`; point the field at {}",
                    dir.join(name).display()
                ),
            );
            return false;
        }
    }
    if mode == Mode::Check {
        return false;
    }
    match crate::devpki::generate(&dir) {
        Ok(_) => {
            tracing::warn!(dir = %dir.display(), "wrote a development PKI (tls.generate_missing): development only");
            true
        }
        Err(e) => {
            issues.add(format!("{p}.generate_missing"), e.to_string());
            false
        }
    }
}

/// The cookie (or query-parameter) names the route's JWT authenticators read tokens from.
fn route_jwts_sources(any_of: &[Arc<AuthnDef>], cookies: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let names = any_of.iter().flat_map(|a| match &a.kind {
        Authenticator::Jwt(j) => j.token_from.as_slice(),
        _ => &[],
    });
    for src in names {
        let name = match (src, cookies) {
            (TokenSource::Cookie(n), true) | (TokenSource::Query(n), false) => n,
            _ => continue,
        };
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// `sha256:<64 hex>` -> the 32 bytes.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("sha256:")?;
    // `from_str_radix` takes a sign (`+f`): hex digits only.
    if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn list_names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// Resolves a config path: relative paths are taken from the config file's folder.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(src: &str) -> Vec<ConfigIssue> {
        match load_str(Path::new("t.yaml"), src, None, Mode::Check) {
            Ok(_) => vec![],
            Err(e) => e.issues,
        }
    }

    const BASE: &str =
        "listeners:\n  - name: a\n    bind: 127.0.0.1:0\nupstreams:\n  echo: { echo: true }\n";

    #[test]
    fn a_key_given_twice_is_an_error_with_both_lines() {
        let src = format!("{BASE}  echo: {{ url: http://127.0.0.1:1 }}\n");
        let i = issues(&src);
        assert_eq!(i.len(), 1, "{i:?}");
        assert_eq!(i[0].path, "upstreams.echo");
        assert_eq!(i[0].at, Some((6, 3)));
        assert!(i[0].message.contains("line 5"), "{}", i[0].message);
    }

    #[test]
    fn upstreams_may_not_point_at_the_gateway_itself() {
        let src = "listeners:\n  - name: a\n    bind: 0.0.0.0:8080\nadmin: { bind: 127.0.0.1:9901 }\nupstreams:\n  adm: { url: http://localhost:9901 }\n  me: { url: http://127.0.0.1:8080/x }\n  other: { url: http://127.0.0.1:8081 }\n";
        let got: Vec<String> = issues(src).into_iter().map(|i| i.path).collect();
        assert_eq!(got, vec!["upstreams.adm.url", "upstreams.me.url"]);
    }

    #[test]
    fn the_admin_api_answers_only_to_its_own_names() {
        let src = format!("{BASE}admin: {{ hosts: [Gateway-A.] }}\n");
        let snap = load_str(Path::new("t.yaml"), &src, None, Mode::Check)
            .unwrap_or_else(|e| panic!("{:?}", e.issues));
        let a = &snap.admin;
        for ok in [
            None,
            Some("127.0.0.1:9901"),
            Some("[::1]:9901"),
            Some("10.1.2.3"),
            Some("localhost:9901"),
            Some("x.localhost"),
            Some("gateway-a:9901"),
            Some("GATEWAY-A"),
        ] {
            assert!(a.host_allowed(ok.map(str::as_bytes)), "{ok:?}");
        }
        for bad in [
            "attacker.test",
            "attacker.test:9901",
            "gateway-b",
            "127.0.0.1.nip.io",
            "a b",
        ] {
            assert!(!a.host_allowed(Some(bad.as_bytes())), "{bad}");
        }
    }

    #[test]
    fn minimal_config_compiles() {
        let src = format!(
            "{BASE}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: echo\n    auth: none\n"
        );
        assert_eq!(issues(&src), vec![]);
    }

    #[test]
    fn unknown_field_is_located() {
        let src = "listeners:\n  - name: a\n    bnd: x\n";
        let i = issues(src);
        assert_eq!(i.len(), 1);
        assert_eq!(i[0].path, "listeners[0].bnd");
        assert!(i[0].message.contains("unknown field `bnd`"), "{:?}", i[0]);
        assert_eq!(i[0].at.map(|a| a.0), Some(3));
    }

    #[test]
    fn every_semantic_error_is_reported() {
        let src = format!(
            "{BASE}routes:\n  - name: r\n    match: {{ path_prefix: /a }}\n    upstream: nope\n    auth: none\n  - name: r\n    match: {{ path: /b, methods: [G T] }}\n    upstream: echo\n    auth: {{ any_of: [ghost] }}\n"
        );
        let i = issues(&src);
        let paths: Vec<&str> = i.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "routes[0].upstream",
                "routes[1].name",
                "routes[1].match.methods[0]",
                "routes[1].auth.any_of[0]"
            ]
        );
        assert_eq!(i[0].at, Some((9, 5)));
    }
}
