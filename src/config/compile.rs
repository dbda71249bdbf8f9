//! Compiling a parsed config, one section after the other, into a [`Snapshot`]: each section's
//! compiler collects every problem it finds with its field path. Names one section uses from
//! another (a route's upstream, an `any_of` authenticator) are looked up in what compiled.

use super::issues::{ConfigIssue, Defined, Issues};
use super::listeners::{check_admin_bind, check_upstream_loops, compile_admin, compile_listeners};
use super::oauth::compile_oauth;
use super::raw::RawConfig;
use super::snapshot::{compile_workers, Limits, LoggingCfg, Snapshot};
use super::store::compile_store;
use crate::auth::authenticator::{Authenticator, AuthnDef};
use crate::auth::chain::ChainTables;
use crate::auth::jwt::jwks::JwksPool;
use crate::auth::jwt::IssuerInfo;
use crate::auth::rate_limit::RateLimit;
use crate::conn::TrustedProxies;
use crate::route::{Route, RouteTables};
use crate::router::Router;
use crate::state::Shared;
use crate::telemetry::audit::Audit;
use crate::upstream::Upstream;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// What a compile reads besides the raw config.
pub struct Ctx<'a> {
    pub file: &'a Path,
    /// The config file's folder: relative paths are taken from it.
    pub base: &'a Path,
    /// The config serving now, on reload: unchanged parts (upstream pools, rate-limit buckets,
    /// JWKS, the Redis client) are carried over.
    pub prev: Option<&'a Snapshot>,
    /// The keys and the JWT denylist, kept across reloads.
    pub shared: &'a Arc<Shared>,
    /// `PORTCULLIS_WORKERS`, as the process environment has it.
    pub workers_env: Option<&'a str>,
}

/// Raw -> snapshot, one section after the other, reporting every problem found. Reads files the
/// config names (certificates, keys) but writes and opens nothing.
pub fn compile(raw: &RawConfig, ctx: &Ctx<'_>) -> Result<Snapshot, Vec<ConfigIssue>> {
    let mut issues = Issues::default();
    let i = &mut issues;
    let limits = Limits::compile(&raw.limits, i);
    let listeners = compile_listeners(&raw.listeners, ctx.base, i);
    let trusted_proxies = TrustedProxies::compile(&raw.trusted_proxies, i);
    let upstreams = compile_upstreams(raw, ctx, i);
    let prev_redis = ctx.prev.and_then(|p| p.store.redis.as_ref());
    let store = compile_store(&raw.store, ctx.base, prev_redis, i);
    let rate_limits = compile_rate_limits(raw, ctx, i);
    let prev_oauth = ctx.prev.and_then(|p| p.oauth.as_deref());
    let cluster = store.postgres.is_some();
    let oauth = compile_oauth(
        raw,
        &ctx.shared.oauth,
        &listeners,
        &rate_limits,
        prev_oauth,
        cluster,
        i,
    )
    .map(Arc::new);
    let mut jwks = JwksPool::new(ctx.prev.map_or(&[], |p| &p.remote_jwks[..]));
    let issuer = oauth.as_ref().map(|o| IssuerInfo {
        issuer: o.issuer.clone(),
        algorithm: o.algorithm,
    });
    let authenticators = compile_authenticators(raw, ctx, issuer.as_ref(), &mut jwks, i);
    let tables = RouteTables {
        upstreams: Defined {
            kind: "upstream",
            compiled: &upstreams,
            names: raw.upstreams.keys().map(String::as_str).collect(),
        },
        chain: ChainTables {
            authenticators: Defined {
                kind: "authenticator",
                compiled: &authenticators,
                names: raw.authenticators.keys().map(String::as_str).collect(),
            },
            rate_limits: Defined {
                kind: "rate limit",
                compiled: &rate_limits,
                names: raw.rate_limits.keys().map(String::as_str).collect(),
            },
            superscope: raw
                .scopes
                .superscope
                .as_ref()
                .map(|s| s.as_str())
                .filter(|s| !s.is_empty()),
            shared_limits: store.redis.as_ref(),
        },
        max_body_bytes: limits.max_body_bytes,
    };
    let router = compile_routes(raw, &tables, i);
    if cluster && oauth.is_none() {
        // the gateway's own assertion key lives in one process's memory
        for (n, r) in raw.routes.iter().enumerate() {
            if r.identity_token.is_some() {
                i.add(
                    format!("routes[{n}].identity_token"),
                    "in cluster mode assertions are signed with oauth_server's keys (every replica then signs with and publishes the same keys): configure oauth_server",
                );
            }
        }
    }
    let workers = compile_workers(raw.workers, ctx.workers_env, i);
    let logging = LoggingCfg::compile(&raw.logging, ctx.base, i);
    let admin = compile_admin(&raw.admin, ctx.base, i);
    check_admin_bind(&admin, &listeners, i);
    check_upstream_loops(&raw.upstreams, &admin, &listeners, i);
    if !issues.is_empty() {
        return Err(issues.0);
    }
    let jwts = authenticators
        .values()
        .filter_map(|a| match &a.kind {
            Authenticator::Jwt(j) => Some(j.authn.clone()),
            _ => None,
        })
        .collect();
    Ok(Snapshot {
        source: ctx.file.to_path_buf(),
        effective: super::effective(raw),
        shared: ctx.shared.clone(),
        admin,
        store,
        listeners,
        limits,
        logging,
        trusted_proxies,
        router,
        upstreams,
        workers,
        rate_limits,
        jwts,
        remote_jwks: jwks.made,
        audit: Arc::new(Audit::off()),
        oauth,
    })
}

/// `upstreams`: one whose section and `ca` file did not change keeps its connection pool.
fn compile_upstreams(
    raw: &RawConfig,
    ctx: &Ctx<'_>,
    issues: &mut Issues,
) -> BTreeMap<String, Arc<Upstream>> {
    let mut out = BTreeMap::new();
    for (name, u) in &raw.upstreams {
        let serving = ctx
            .prev
            .and_then(|s| s.upstreams.get(name))
            .filter(|old| old.unchanged(u, ctx.base));
        let up = match serving {
            Some(old) => Some(old.clone()),
            None => Upstream::compile(name, u, ctx.base, issues).map(Arc::new),
        };
        if let Some(up) = up {
            out.insert(name.clone(), up);
        }
    }
    out
}

/// `rate_limits`: one whose quota did not change keeps its buckets.
fn compile_rate_limits(
    raw: &RawConfig,
    ctx: &Ctx<'_>,
    issues: &mut Issues,
) -> BTreeMap<String, Arc<RateLimit>> {
    let mut out = BTreeMap::new();
    for (name, r) in &raw.rate_limits {
        let serving = ctx.prev.and_then(|s| s.rate_limits.get(name));
        if let Some(l) = RateLimit::compile(name, r, serving, issues) {
            out.insert(name.clone(), l);
        }
    }
    out
}

fn compile_authenticators(
    raw: &RawConfig,
    ctx: &Ctx<'_>,
    issuer: Option<&IssuerInfo>,
    jwks: &mut JwksPool<'_>,
    issues: &mut Issues,
) -> BTreeMap<String, AuthnDef> {
    let mut out = BTreeMap::new();
    for (name, a) in &raw.authenticators {
        let built = Authenticator::compile(name, a, ctx.base, ctx.shared, issuer, jwks, issues);
        if let Some(kind) = built {
            let def = AuthnDef {
                name: Arc::from(name.as_str()),
                kind,
            };
            out.insert(name.clone(), def);
        }
    }
    out
}

fn compile_routes(raw: &RawConfig, t: &RouteTables<'_>, issues: &mut Issues) -> Router<Route> {
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        if r.name.0.is_empty() {
            issues.add(format!("routes[{i}].name"), "must not be empty");
        } else if !names.insert(r.name.0.as_str()) {
            issues.add(
                format!("routes[{i}].name"),
                format!("duplicate route name `{}`", r.name),
            );
        }
        routes.extend(Route::compile(r, i, t, issues));
    }
    Router::new(routes)
}
