//! `upstreams.NAME` -> [`UpstreamKind`]: the echo upstream, or one or more http(s) targets with
//! their balancing, passive ejection, active health checks and retries. Every problem is
//! reported at its own field; nothing is opened or connected here.

use super::body::LimitedBody;
use super::health::{CheckTransport, HealthCheck};
use super::pool::H1Pool;
use super::stats::{Eject, Retries, TargetStats};
use super::target::{Target, Transport};
use super::{ca_digest, HttpUpstream, Upstream, UpstreamKind};
use crate::config::issues::Issues;
use crate::config::raw::RawUpstream;
use crate::tls::{HttpsClient, HttpsClientOptions};
use crate::values::resolve;
use http::header::HeaderValue;
use http::uri::{Authority, Scheme};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Most targets of one upstream (a request's tried targets are a 64-bit set).
pub const MAX_TARGETS: usize = 64;

impl Upstream {
    /// `upstreams.NAME`.
    pub fn compile(
        name: &str,
        raw: &RawUpstream,
        base: &Path,
        issues: &mut Issues,
    ) -> Option<Upstream> {
        let at = format!("upstreams.{name}");
        let kind = compile_kind(&at, raw, base, issues)?;
        Some(Upstream {
            raw: raw.clone(),
            ca: ca_digest(raw, base),
            name: name.to_owned(),
            kind,
        })
    }
}

fn compile_kind(
    at: &str,
    raw: &RawUpstream,
    base: &Path,
    issues: &mut Issues,
) -> Option<UpstreamKind> {
    let before = issues.len();
    if raw.echo == Some(true) {
        return compile_echo(at, raw, issues);
    }
    let urls = target_urls(at, raw, issues)?;
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
    let parsed = parse_targets(&urls, issues);
    let https = parsed.first().is_some_and(|p| p.scheme == Scheme::HTTPS);
    if http2 && https {
        issues.add(
            format!("{at}.http2"),
            "https upstreams negotiate HTTP/2 by ALPN; `http2: true` is for plain http (h2c)",
        );
    }
    let eject = compile_eject(at, raw, issues);
    let health = raw.health.as_ref().and_then(|h| {
        let transport = CheckTransport {
            http2_only: http2,
            ca: ca.clone(),
            connect_timeout,
        };
        HealthCheck::compile(&format!("{at}.health"), h, transport, issues)
    });
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
        .map(|p| p.into_target(client.as_ref(), connect_timeout))
        .collect::<Vec<Target>>();
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

/// The options that only choosing among several targets gives meaning to, by whether each is set.
fn choice_options(raw: &RawUpstream) -> [(&'static str, bool); 5] {
    [
        ("balance", raw.balance.is_some()),
        ("health", raw.health.is_some()),
        ("eject", raw.eject.is_some()),
        ("retries", raw.retries.is_some()),
        ("retry_on_reset", raw.retry_on_reset.is_some()),
    ]
}

/// `echo: true`, which takes no other field.
fn compile_echo(at: &str, raw: &RawUpstream, issues: &mut Issues) -> Option<UpstreamKind> {
    let extra: Vec<&str> = [
        ("url", raw.url.is_some()),
        ("targets", raw.targets.is_some()),
        ("ca", raw.ca.is_some()),
        ("http2", raw.http2.is_some()),
    ]
    .into_iter()
    .chain(choice_options(raw))
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
    Some(UpstreamKind::Echo)
}

/// The target URLs with the field each came from: `url`, or `targets[i]`. With one address, the
/// options that only choosing among targets gives meaning to are refused.
fn target_urls<'r>(
    at: &str,
    raw: &'r RawUpstream,
    issues: &mut Issues,
) -> Option<Vec<(String, &'r str)>> {
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
    if urls.len() < 2 {
        for (field, set) in choice_options(raw) {
            if set {
                issues.add(
                    format!("{at}.{field}"),
                    "chooses among `targets`: with one address every request goes to it whatever this says; list two or more `targets`",
                );
            }
        }
    }
    Some(urls)
}

/// Each URL parsed; every address once, all of one scheme.
fn parse_targets(urls: &[(String, &str)], issues: &mut Issues) -> Vec<Parsed> {
    let mut parsed: Vec<Parsed> = Vec::with_capacity(urls.len());
    for (field, url) in urls {
        match parse_url(url) {
            Ok(p) => {
                if parsed.iter().any(|q| q.label == p.label) {
                    issues.add(
                        field,
                        format!(
                            "`{url}`: `{}` is listed twice (targets are told apart by address)",
                            p.label
                        ),
                    );
                } else if parsed.first().is_some_and(|q| q.scheme != p.scheme) {
                    issues.add(field, "the targets of one upstream share one scheme (http or https): they get the same TLS and protocol settings");
                } else {
                    parsed.push(p);
                }
            }
            Err(msg) => issues.add(field, msg),
        }
    }
    parsed
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

impl Parsed {
    /// The target, reached by `client` (https, h2c) or a keep-alive pool of its own.
    fn into_target(self, client: Option<&HttpsClient<LimitedBody>>, connect: Duration) -> Target {
        let transport = match client {
            Some(c) => Transport::Client(Box::new(c.clone())),
            None => {
                // `host()` keeps an IPv6 literal's brackets, as `connect` wants them.
                let port = self.authority.port_u16().unwrap_or(80);
                Transport::Pool {
                    pool: Arc::new(H1Pool::new(
                        format!("{}:{port}", self.authority.host()),
                        connect,
                        Duration::from_secs(90),
                    )),
                    host: self.host,
                }
            }
        };
        Target {
            label: self.label.into(),
            scheme: self.scheme,
            authority: self.authority,
            base_path: self.path,
            transport,
            stats: Arc::new(TargetStats::default()),
        }
    }
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
    let hour = Duration::from_secs(3600);
    if let Some(d) = r.backoff {
        if d.0 < Duration::from_millis(100) || d.0 > hour {
            issues.add(format!("{at}.eject.backoff"), "between 100ms and 1h");
        }
        e.backoff = d.0;
    }
    if let Some(d) = r.max_backoff {
        if d.0 > hour {
            issues.add(format!("{at}.eject.max_backoff"), "at most 1h");
        }
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
