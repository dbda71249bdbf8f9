//! The raw schema of `gateway.yaml` (SPEC section 2): serde structs with `deny_unknown_fields`, as
//! the file says them. Field names are the contract. Nothing here but value types
//! ([`crate::values`]): each runtime type compiles itself from its section (`Upstream::compile`,
//! `RateLimit::compile`, ...), and [`super::compile`] calls them in turn.

use crate::values::{Dur, Num, Rate, S};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

#[derive(Serialize, Deserialize, Default, Debug)]
#[serde(
    deny_unknown_fields,
    expecting = "a config: a mapping of sections (listeners, upstreams, routes, ...)"
)]
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
    pub oauth_server: Option<RawOauthServer>,
    /// External OpenID providers users sign in with (the authorization code flow; refused until
    /// it is built).
    pub identity_providers: Option<BTreeMap<String, RawIdentityProvider>>,
}

/// `oauth_server` (SPEC section 7): the built-in authorization server.
#[derive(Serialize, Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    expecting = "the oauth_server section: a mapping such as `{ issuer: https://localhost:8443, listener: public }`"
)]
pub struct RawOauthServer {
    pub issuer: S,
    pub listener: S,
    #[serde(default)]
    pub signing: RawSigning,
    pub access_token_ttl: Option<Dur>,
    /// Names a `rate_limits` entry: the token, revocation and introspection endpoints' limit per
    /// client address, before any secret is checked (default 50/s, burst 100).
    pub pre_auth_rate_limit: Option<S>,
    /// Names a `rate_limits` entry: failed client authentications per client and address
    /// (default 10/min, burst 10); past it, that client is refused from that address.
    pub failed_auth_limit: Option<S>,
    // The authorization code flow (refused until it is built):
    pub authorization_code_ttl: Option<Dur>,
    pub refresh_token: Option<RawRefreshToken>,
    pub login: Option<RawLogin>,
    pub consent: Option<S>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a signing block: a mapping such as `{ algorithm: ES256, rotate_every: 30d }`"
)]
pub struct RawSigning {
    pub algorithm: Option<S>,
    pub rotate_every: Option<Dur>,
    pub publish_ahead: Option<Dur>,
    pub secrets_key: Option<S>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    expecting = "a refresh_token block: a mapping such as `{ ttl: 30d, idle: 7d }`"
)]
pub struct RawRefreshToken {
    pub ttl: Option<Dur>,
    pub idle: Option<Dur>,
    pub reuse_grace: Option<Dur>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    expecting = "a login block: a mapping such as `{ users: true, providers: [corp_sso] }`"
)]
pub struct RawLogin {
    pub users: Option<bool>,
    #[serde(default)]
    pub providers: Vec<S>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    expecting = "an identity provider: a mapping such as `{ issuer: https://sso.example.com, client_id: ... }`"
)]
pub struct RawIdentityProvider {
    pub issuer: S,
    pub client_id: S,
    pub client_secret: Option<S>,
    #[serde(default)]
    pub scopes: Vec<S>,
    pub subject_claim: Option<S>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the admin section: a mapping such as `{ bind: 127.0.0.1:9901 }`"
)]
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

#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "the store section: a mapping such as `{ sqlite: data/portcullis.db }`"
)]
pub struct RawStore {
    pub sqlite: Option<S>,
    pub postgres: Option<S>,
    pub redis: Option<S>,
    /// Cluster mode: what a rate-limit decision does when Redis cannot answer:
    /// `local` (default; this replica's own limiter), `deny` (503) or `allow`.
    pub on_redis_error: Option<S>,
    /// Cluster mode: the most a rate-limit decision waits for Redis (default 100ms).
    pub redis_timeout: Option<Dur>,
    /// Cluster mode: the CA certificates (PEM) that a `rediss://` server's certificate must
    /// chain to, instead of the system's roots.
    pub redis_ca: Option<S>,
    /// Cluster mode: how often a replica re-reads changes even without a notification (repairs
    /// a notification lost with a dropped connection). Default 30s.
    pub resync: Option<Dur>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "the scopes section: a mapping such as `{ superscope: admin }`"
)]
pub struct RawScopes {
    pub superscope: Option<S>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    expecting = "a rate limit: a mapping such as `{ rate: 100/s, burst: 200 }`"
)]
pub struct RawRateLimit {
    pub rate: Rate,
    pub burst: Option<Num>,
    pub key: Option<S>,
    pub max_clients: Option<Num>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    expecting = "a listener: a mapping such as `{ name: public, bind: 0.0.0.0:8443 }`"
)]
pub struct RawListener {
    pub name: S,
    pub bind: S,
    pub tls: Option<RawTls>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "a TLS block: a mapping such as `{ cert: server.crt, key: server.key }`"
)]
pub struct RawTls {
    pub cert: Option<S>,
    pub key: Option<S>,
    pub self_signed: Option<Vec<S>>,
    /// Development: when `cert`, `key` and `client_auth.ca` are all missing, `run` writes a dev
    /// PKI (as `portcullis dev-pki` does) into the folder of `cert` first.
    pub generate_missing: Option<bool>,
    pub client_auth: Option<RawClientAuth>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "a client_auth block: a mapping such as `{ mode: optional, ca: ca.crt }`"
)]
pub struct RawClientAuth {
    pub mode: ClientAuthMode,
    pub ca: Option<S>,
    pub crl: Option<S>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMode {
    None,
    Optional,
    Required,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the limits section: a mapping such as `{ header_timeout: 10s }`"
)]
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

#[derive(Serialize, Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "the logging section: a mapping such as `{ format: json, level: info }`"
)]
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

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "an upstream: a mapping such as `{ url: http://127.0.0.1:9000 }` or `{ echo: true }`"
)]
pub struct RawUpstream {
    pub url: Option<S>,
    pub echo: Option<bool>,
    pub connect_timeout: Option<Dur>,
    pub timeout: Option<Dur>,
    /// PEM bundle of CAs trusted for an https upstream (default: none, so set it for https).
    pub ca: Option<S>,
    /// Speak HTTP/2 with prior knowledge (h2c) to a plain-http upstream.
    pub http2: Option<bool>,
    /// Several addresses of one service, instead of `url`.
    pub targets: Option<Vec<S>>,
    /// How a request picks among `targets`.
    pub balance: Option<Balance>,
    /// Active health checks of each target.
    pub health: Option<RawHealth>,
    /// Passive health: when a target is taken out of the rotation and for how long.
    pub eject: Option<RawEject>,
    /// How many other targets a request that never left (a connect failure) may go to; with
    /// `retry_on_reset`, also an idempotent one without a body after a reset. Default 2, at
    /// most the number of targets less one.
    pub retries: Option<Num>,
    /// Whether an idempotent request without a body goes to another target after the connection
    /// failed once it was sent (default false: at most once; costs a copy of each such
    /// request's head).
    pub retry_on_reset: Option<bool>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastRequests,
}

impl Balance {
    /// The config's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastRequests => "least_requests",
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "a health check: a mapping such as `{ path: /healthz, interval: 5s, timeout: 1s }`"
)]
pub struct RawHealth {
    pub path: S,
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    /// Failed checks in a row that take a target out (default 2).
    pub unhealthy_threshold: Option<Num>,
    /// Passed checks in a row that bring it back (default 1).
    pub healthy_threshold: Option<Num>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(
    deny_unknown_fields,
    expecting = "passive ejection: a mapping such as `{ after: 5, backoff: 10s, max_backoff: 5m }`"
)]
pub struct RawEject {
    /// Consecutive failures (connect failures, resets, timeouts, 502/503/504 answers) that eject
    /// a target.
    pub after: Option<Num>,
    /// How long the first ejection lasts; each further one in a row doubles it.
    pub backoff: Option<Dur>,
    pub max_backoff: Option<Dur>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    deny_unknown_fields,
    expecting = "an authenticator: a mapping with a `type` (api_key, jwt or mtls)"
)]
pub enum RawAuthenticator {
    Mtls(Box<RawMtls>),
    Jwt(Box<RawJwt>),
    ApiKey {
        /// Accept only keys of these environments (`live`, `test`); default both.
        envs: Option<Vec<S>>,
    },
}

/// `type: mtls`: the verified client certificate.
#[derive(Serialize, Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "an mtls authenticator: a mapping such as `{ type: mtls, subject_from: cn }`"
)]
pub struct RawMtls {
    /// What `X-Auth-Subject` carries: `cn` (default), `san_dns`, `san_uri` or `dn`.
    pub subject_from: Option<S>,
    /// An allow-list: each entry names one field of the certificate and the scopes it holds.
    pub identities: Option<Vec<RawCertIdentity>>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a certificate identity: a mapping such as `{ san_uri: \"spiffe://corp/billing\", scopes: [read] }`"
)]
pub struct RawCertIdentity {
    pub san_uri: Option<S>,
    pub san_dns: Option<S>,
    pub subject_cn: Option<S>,
    #[serde(default)]
    pub scopes: Vec<S>,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    expecting = "a jwt authenticator: a mapping such as `{ type: jwt, issuer: ..., audiences: [...] }`"
)]
pub struct RawJwt {
    /// Required, except with `oauth_server: true` (the server's issuer then).
    #[serde(default)]
    pub issuer: S,
    /// Verify the built-in authorization server's tokens, from its keys in memory.
    pub oauth_server: Option<bool>,
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

#[derive(Serialize, Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    expecting = "a verify_cache block: a mapping such as `{ max_entries: 100000 }`"
)]
pub struct RawVerifyCache {
    pub max_entries: Num,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(
    deny_unknown_fields,
    expecting = "a route: a mapping such as `{ name: r, match: {...}, upstream: u, auth: none }`"
)]
pub struct RawRoute {
    pub name: S,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    pub upstream: S,
    pub auth: RawAuth,
    pub max_body_bytes: Option<Num>,
    pub forward_credentials: Option<bool>,
    pub pre_auth_rate_limit: Option<S>,
    /// Send the upstream `X-Forwarded-Client-Cert` (Envoy's format) for a client certificate.
    pub forward_client_cert: Option<bool>,
    /// Removed from the front of the path (at a segment boundary) before forwarding.
    pub strip_prefix: Option<S>,
    /// Put in front of the path (after `strip_prefix`) before forwarding.
    pub rewrite_prefix: Option<S>,
    /// The upstream's `Host`: `preserve` (the client's, default), `upstream` (the upstream URL's
    /// authority) or a literal host name.
    pub host: Option<S>,
    /// Cross-origin requests from browsers: preflights answered here, before the auth chain.
    pub cors: Option<RawCors>,
    /// A signed JWT of the identity for the upstream.
    pub identity_token: Option<RawIdentityToken>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "an identity_token block: a mapping such as `{ audience: files, ttl: 60s }`"
)]
pub struct RawIdentityToken {
    pub header: Option<S>,
    pub ttl: Option<Dur>,
    pub audience: S,
}

#[derive(Serialize, Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a cors block: a mapping such as `{ origins: [https://app.example.com] }`"
)]
pub struct RawCors {
    pub origins: Vec<S>,
    pub methods: Option<Vec<S>>,
    pub headers: Option<Vec<S>>,
    /// Answer headers a page may read besides the safelisted ones.
    pub expose_headers: Option<Vec<S>>,
    pub credentials: Option<bool>,
    /// Seconds a browser may cache a preflight's answer.
    pub max_age: Option<Num>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a match block: a mapping such as `{ path_prefix: /api }`"
)]
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

#[derive(Serialize, Deserialize, Debug, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "an auth block: a mapping such as `{ any_of: [keys] }`"
)]
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

impl Serialize for RawAuth {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        match self {
            RawAuth::None => s.serialize_str("none"),
            RawAuth::Block(b) => b.serialize(s),
        }
    }
}
