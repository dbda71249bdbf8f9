//! `upstreams.NAME` -> [`UpstreamKind`]: the echo upstream, or one or more http(s) targets with
//! their balancing, passive ejection, active health checks and retries. Every problem is
//! reported at its own field; nothing is opened or connected here.

use super::forward::Retries;
use super::health::HealthCheck;
use super::pool::H1Pool;
use super::target::{Eject, Target, TargetStats};
use super::{HttpUpstream, Transport, UpstreamKind};
use crate::config::issues::Issues;
use crate::config::raw::RawUpstream;
use crate::tls::HttpsClientOptions;
use crate::values::resolve;
use http::header::HeaderValue;
use http::uri::{Authority, PathAndQuery, Scheme};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Most targets of one upstream (a request's tried targets are a 64-bit set).
pub const MAX_TARGETS: usize = 64;

pub(super) fn compile_kind(
    at: &str,
    raw: &RawUpstream,
    base: &Path,
    issues: &mut Issues,
) -> Option<UpstreamKind> {
    let before = issues.len();
    if raw.echo == Some(true) {
        let extra: Vec<&str> = [
            ("url", raw.url.is_some()),
            ("targets", raw.targets.is_some()),
            ("ca", raw.ca.is_some()),
            ("http2", raw.http2.is_some()),
            ("balance", raw.balance.is_some()),
            ("health", raw.health.is_some()),
            ("eject", raw.eject.is_some()),
            ("retries", raw.retries.is_some()),
            ("retry_on_reset", raw.retry_on_reset.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, set)| set.then_some(f))
        .collect();
        if !extra.is_empty() {
            issues.add(
                at,
                format!(
                    "the built-in echo upstream takes none of `{}`",
                    extra.join("`, `")
                ),
            );
            return None;
        }
        return Some(UpstreamKind::Echo);
    }
    let urls: Vec<(String, &str)> = match (&raw.url, &raw.targets) {
        (Some(_), Some(_)) => {
            issues.add(
                at,
                "give either `url` (one address) or `targets` (several), not both",
            );
            return None;
        }
        (None, None) => {
            issues.add(at, "needs `url`, `targets` or `echo: true`");
            return None;
        }
        (Some(u), None) => vec![(format!("{at}.url"), u.as_str())],
        (None, Some(t)) => {
            if t.is_empty() {
                issues.add(format!("{at}.targets"), "needs at least one URL");
                return None;
            }
            if t.len() > MAX_TARGETS {
                issues.add(
                    format!("{at}.targets"),
                    format!("at most {MAX_TARGETS} targets, not {}", t.len()),
                );
                return None;
            }
            t.iter()
                .enumerate()
                .map(|(i, u)| (format!("{at}.targets[{i}]"), u.as_str()))
                .collect()
        }
    };
    if raw.balance.is_some() && raw.targets.is_none() {
        issues.add(
            format!("{at}.balance"),
            "chooses among `targets`; with one `url` there is nothing to balance",
        );
    }
    let http2 = raw.http2.unwrap_or(false);
    let connect_timeout = raw.connect_timeout.map_or(Duration::from_secs(5), |d| d.0);
    let ca = match &raw.ca {
        Some(f) => match crate::tls::load_certs(&resolve(base, f.as_str())) {
            Ok(c) => c,
            Err(e) => {
                issues.add(format!("{at}.ca"), e);
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let mut parsed = Vec::with_capacity(urls.len());
    for (field, url) in &urls {
        match parse_url(url) {
            Ok(p) => {
                if parsed
                    .iter()
                    .any(|q: &Parsed| q.label == p.label && q.path == p.path)
                {
                    issues.add(field, format!("`{url}` is listed twice"));
                } else if parsed
                    .first()
                    .is_some_and(|q: &Parsed| q.scheme != p.scheme)
                {
                    issues.add(field, "the targets of one upstream share one scheme (http or https): they get the same TLS and protocol settings");
                } else {
                    parsed.push(p);
                }
            }
            Err(msg) => issues.add(field, msg),
        }
    }
    let https = parsed.first().is_some_and(|p| p.scheme == Scheme::HTTPS);
    if http2 && https {
        issues.add(
            format!("{at}.http2"),
            "https upstreams negotiate HTTP/2 by ALPN; `http2: true` is for plain http (h2c)",
        );
    }
    let eject = compile_eject(at, raw, issues);
    let health = raw
        .health
        .as_ref()
        .and_then(|h| HealthCheck::compile(&format!("{at}.health"), h, issues));
    let retries = match raw.retries {
        Some(n) if n.0 > 10 => {
            issues.add(format!("{at}.retries"), "at most 10");
            0
        }
        Some(n) => n.0 as u32,
        None => 2,
    };
    if issues.len() > before {
        return None;
    }
    // One hyper-util client for every https/h2c target: it pools by authority.
    let client = if https || http2 {
        match crate::tls::https_client(&HttpsClientOptions {
            ca: &ca,
            connect_timeout,
            idle_timeout: Duration::from_secs(90),
            http2: true,
            http2_only: http2,
        }) {
            Ok(c) => Some(c),
            Err(e) => {
                issues.add(format!("{at}.ca"), e);
                return None;
            }
        }
    } else {
        None
    };
    let targets = parsed
        .into_iter()
        .map(|p| {
            let transport = match &client {
                Some(c) => Transport::Client(Box::new(c.clone())),
                None => {
                    // `host()` keeps an IPv6 literal's brackets, as `connect` wants them.
                    let port = p.authority.port_u16().unwrap_or(80);
                    Transport::Pool {
                        pool: Arc::new(H1Pool::new(
                            format!("{}:{port}", p.authority.host()),
                            connect_timeout,
                            Duration::from_secs(90),
                        )),
                        host: p.host,
                    }
                }
            };
            Target {
                label: p.label.into(),
                scheme: p.scheme,
                authority: p.authority,
                base_path: p.path,
                transport,
                stats: Arc::new(TargetStats::default()),
            }
        })
        .collect();
    let health = health.map(|mut h| {
        h.http2_only = http2;
        h.ca = ca;
        h.connect_timeout = connect_timeout;
        h
    });
    Some(UpstreamKind::Http(Box::new(HttpUpstream::new(
        targets,
        raw.balance.unwrap_or_default(),
        raw.timeout.map_or(Duration::from_secs(60), |d| d.0),
        eject,
        Retries {
            max: retries,
            on_reset: raw.retry_on_reset.unwrap_or(false),
        },
        health,
    ))))
}

struct Parsed {
    scheme: Scheme,
    authority: Authority,
    /// Without trailing slash ("" for none).
    path: String,
    /// `scheme://authority`.
    label: String,
    host: HeaderValue,
}

fn parse_url(url: &str) -> Result<Parsed, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(format!("`{url}`: only http and https are supported"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{url}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "`{url}`: user information in an upstream URL is never sent; remove it"
        ));
    }
    if uri.query().is_some() {
        return Err(format!("`{url}`: a query is not allowed here"));
    }
    let host = HeaderValue::from_str(authority.as_str()).map_err(|e| format!("`{url}`: {e}"))?;
    Ok(Parsed {
        label: format!("{scheme}://{authority}"),
        path: uri.path().trim_end_matches('/').to_owned(),
        scheme,
        authority,
        host,
    })
}

fn compile_eject(at: &str, raw: &RawUpstream, issues: &mut Issues) -> Eject {
    let mut e = Eject::default();
    let Some(r) = &raw.eject else { return e };
    if let Some(n) = r.after {
        if n.0 == 0 || n.0 > 1000 {
            issues.add(format!("{at}.eject.after"), "between 1 and 1000 failures");
        }
        e.after = n.0.clamp(1, 1000) as u32;
    }
    if let Some(d) = r.backoff {
        if d.0 < Duration::from_millis(100) {
            issues.add(format!("{at}.eject.backoff"), "at least 100ms");
        }
        e.backoff = d.0;
    }
    if let Some(d) = r.max_backoff {
        e.max_backoff = d.0;
    }
    if e.max_backoff < e.backoff {
        issues.add(
            format!("{at}.eject.max_backoff"),
            format!(
                "shorter than `backoff` ({:?} < {:?})",
                e.max_backoff, e.backoff
            ),
        );
    }
    e
}

/// The health check's path, as a request target.
pub(super) fn health_path(path: &str) -> Result<PathAndQuery, String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}`: a path starting with /"));
    }
    path.parse::<PathAndQuery>()
        .map_err(|e| format!("`{path}` is not a request path: {e}"))
}
