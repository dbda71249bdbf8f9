//! Upstream I/O: the configured upstreams ([`Upstream`], compiled from their config section), how a
//! request reaches one ([`Transport`]: the gateway's own keep-alive pool for plain HTTP/1.1,
//! hyper-util's client for https and h2c, or the built-in [`echo`]), and [`Upstream::send`], which
//! turns every failure into a [`Reject`] and hands an accepted upgrade to the [`tunnel`].
//!
//! The request reaching `send` has already been rewritten at the trust boundary
//! ([`crate::headers`]); `send` only sets the target and, per transport, `Host`.

pub mod body;
pub mod echo;
pub mod pool;
pub mod tunnel;

use self::body::{body_fault, LimitedBody};
use self::pool::H1Pool;
use crate::body::GwBody;
use crate::config::issues::Issues;
use crate::config::raw::RawUpstream;
use crate::conn::ConnInfo;
use crate::error::{Reason, Reject};
use crate::tls::{HttpsClient, HttpsClientOptions};
use crate::values::resolve;
use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct Upstream {
    raw: RawUpstream,
    /// SHA-256 of the `ca` file as it was read.
    ca: Option<[u8; 32]>,
    pub name: String,
    pub kind: UpstreamKind,
}

#[derive(Debug)]
pub enum UpstreamKind {
    /// The built-in echo upstream.
    Echo,
    Http(Box<HttpUpstream>),
}

#[derive(Debug)]
pub struct HttpUpstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix from the URL, without trailing slash ("" for none).
    pub base_path: String,
    pub timeout: Duration,
    pub transport: Transport,
}

/// How requests reach an upstream. Either way `X-Forwarded-Host` carries the client's host.
#[derive(Debug)]
pub enum Transport {
    /// Plain HTTP/1.1: the gateway's own keep-alive pool ([`pool`]). The upstream gets the
    /// client's `Host`, or `host` (its own authority) when the client sent none.
    Pool {
        pool: Arc<H1Pool>,
        host: HeaderValue,
    },
    /// https (HTTP/1.1 or h2 by ALPN) and h2c: hyper-util's client. `Host` / `:authority` name
    /// the upstream itself (TLS names and HTTP/2's `:authority` must).
    Client(Box<HttpsClient<LimitedBody>>),
}

/// A request on its way to the upstream: the head as rewritten at the trust boundary, the
/// client's body, and the target path.
pub struct Outbound {
    pub parts: http::request::Parts,
    pub body: Incoming,
    /// The normalized path the route matched (the upstream's base path goes before it).
    pub path: String,
    pub query: Option<String>,
    /// The client's side of the protocol upgrade it asked for.
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

/// What `send` needs to know about the exchange besides the request.
pub struct Exchange<'a> {
    /// The route, for the log line of a failure.
    pub route: &'a str,
    /// The route's `max_body_bytes`.
    pub max_body: u64,
    /// `limits.body_timeout`: the longest the request body may pause.
    pub body_timeout: Duration,
    /// `limits.idle_timeout`: the longest an upgraded tunnel may idle.
    pub idle_timeout: Duration,
    /// The client connection, whose `max_connections` slot a tunnel holds until it closes.
    pub conn: &'a Arc<ConnInfo>,
}

impl Upstream {
    /// Whether a reload may keep this upstream (and its pooled connections): the section is the
    /// same, and so is its `ca` file, read again now (a renewed CA takes effect on reload).
    pub fn unchanged(&self, raw: &RawUpstream, base: &Path) -> bool {
        self.raw == *raw && self.ca == ca_digest(raw, base)
    }

    /// `upstreams.NAME`.
    pub fn compile(
        name: &str,
        raw: &RawUpstream,
        base: &Path,
        issues: &mut Issues,
    ) -> Option<Upstream> {
        let at = format!("upstreams.{name}");
        let kind = match (&raw.url, raw.echo) {
            (None, Some(true)) => {
                if raw.ca.is_some() || raw.http2.is_some() {
                    issues.add(at, "an echo upstream takes no `ca` or `http2`");
                    return None;
                }
                UpstreamKind::Echo
            }
            (Some(_), Some(true)) => {
                issues.add(at, "give either `url` or `echo: true`, not both");
                return None;
            }
            (None, _) => {
                issues.add(at, "needs `url` (or `echo: true`)");
                return None;
            }
            (Some(url), _) => match compile_http(url.as_str(), raw, base) {
                Ok(h) => UpstreamKind::Http(Box::new(h)),
                Err((field, msg)) => {
                    issues.add(format!("{at}.{field}"), msg);
                    return None;
                }
            },
        };
        Some(Upstream {
            raw: raw.clone(),
            ca: ca_digest(raw, base),
            name: name.to_owned(),
            kind,
        })
    }

    /// Sends `out` and returns the upstream's response (hop-by-hop headers removed), or the
    /// refusal that answers the client instead: 502/504 for the upstream's failures, 413/408/400
    /// when the client's body stopped short.
    pub async fn send(&self, out: Outbound, x: &Exchange<'_>) -> Result<Response<GwBody>, Reject> {
        let Outbound {
            mut parts,
            body,
            path,
            query,
            upgrade,
        } = out;
        let body = LimitedBody::new(body, x.max_body, x.body_timeout);
        let up = match &self.kind {
            UpstreamKind::Echo => {
                let q = query.as_deref();
                return echo::respond(parts.version, &parts.method, &path, q, &parts.headers, body)
                    .await
                    .map_err(|e| {
                        body_fault(e.as_ref())
                            .map_or_else(Reject::body_read_failed, |f| f.reject(x.max_body))
                    });
            }
            UpstreamKind::Http(up) => up,
        };
        let mut pq = String::with_capacity(
            up.base_path.len() + path.len() + 1 + query.as_ref().map_or(0, |q| q.len()),
        );
        pq.push_str(&up.base_path);
        pq.push_str(&path);
        if let Some(q) = &query {
            pq.push('?');
            pq.push_str(q);
        }
        let bad_target =
            || Reject::new(Reason::BadTarget, "the request target cannot be forwarded");
        parts.version = Version::HTTP_11;
        let resp = match &up.transport {
            Transport::Pool { pool, host } => {
                // Connection-level client: origin-form target, and `Host` is ours to set.
                parts.uri = Uri::try_from(pq).map_err(|_| bad_target())?;
                if !parts.headers.contains_key(header::HOST) {
                    parts.headers.insert(header::HOST, host.clone());
                }
                let req = Request::from_parts(parts, body);
                match tokio::time::timeout(up.timeout, pool.send(req)).await {
                    Err(_) => Err(None),
                    Ok(Err(e)) => Err(Some((body_fault(&e), e.is_connect(), e.to_string()))),
                    Ok(Ok(r)) => Ok(r.map(GwBody::Pooled)),
                }
            }
            Transport::Client(client) => {
                parts.uri = Uri::builder()
                    .scheme(up.scheme.clone())
                    .authority(up.authority.clone())
                    .path_and_query(pq)
                    .build()
                    .map_err(|_| bad_target())?;
                // hyper sets Host (HTTP/1) or :authority (h2) from the upstream URI.
                parts.headers.remove(header::HOST);
                let req = Request::from_parts(parts, body);
                match tokio::time::timeout(up.timeout, client.request(req)).await {
                    Err(_) => Err(None),
                    Ok(Err(e)) => Err(Some((body_fault(&e), e.is_connect(), e.to_string()))),
                    Ok(Ok(r)) => Ok(r.map(GwBody::Stream)),
                }
            }
        };
        let resp = match resp {
            Ok(r) => r,
            Err(None) => return Err(Reject::gateway_timeout()),
            Err(Some((Some(fault), _, _))) => return Err(fault.reject(x.max_body)),
            Err(Some((None, connect, error))) => {
                tracing::warn!(route = %x.route, upstream = %self.name, %error, "upstream request failed");
                return Err(Reject::bad_gateway(if connect {
                    Reason::UpstreamConnectFailed
                } else {
                    Reason::UpstreamReset
                }));
            }
        };
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        let mut resp = resp;
        if switching {
            // The upstream switched protocols without being asked: refuse to pass that on.
            let client_upgrade =
                upgrade.ok_or_else(|| Reject::bad_gateway(Reason::UpstreamUnrequestedUpgrade))?;
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            // The tunnel holds the connection's `max_connections` slot until it closes.
            let holds_slot = x.conn.clone();
            let idle = x.idle_timeout;
            tokio::spawn(async move {
                let _slot = holds_slot;
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((c, u)) => tunnel::tunnel(c, u, idle).await,
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
        }
        crate::headers::downstream_response_headers(resp.headers_mut(), switching);
        // What the upstream speaks stays on the upstream side: an HTTP/1.0 answer (which ends
        // that connection) must not end the client's keep-alive connection, which hyper would
        // do for a response marked HTTP/1.0.
        *resp.version_mut() = http::Version::HTTP_11;
        Ok(resp)
    }
}

fn ca_digest(raw: &RawUpstream, base: &Path) -> Option<[u8; 32]> {
    let file = resolve(base, raw.ca.as_ref()?.as_str());
    std::fs::read(file).ok().map(|b| crate::digest::sha256(&b))
}

/// An `http://` or `https://` upstream; an error names the field and what is wrong.
fn compile_http(
    url: &str,
    raw: &RawUpstream,
    base: &Path,
) -> Result<HttpUpstream, (&'static str, String)> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| ("url", format!("`{url}` is not a URL: {e}")))?;
    let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(("url", format!("`{url}`: only http and https are supported")));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| ("url", format!("`{url}` has no host")))?;
    if uri.query().is_some() {
        return Err(("url", format!("`{url}`: a query is not allowed here")));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    let http2 = raw.http2.unwrap_or(false);
    if http2 && scheme == Scheme::HTTPS {
        return Err((
            "http2",
            "https upstreams negotiate HTTP/2 by ALPN; `http2: true` is for plain http (h2c)"
                .into(),
        ));
    }
    let ca = match &raw.ca {
        Some(f) => crate::tls::load_certs(&resolve(base, f.as_str())).map_err(|e| ("ca", e))?,
        None => Vec::new(),
    };
    let connect_timeout = raw.connect_timeout.map_or(Duration::from_secs(5), |d| d.0);
    let transport = if scheme == Scheme::HTTP && !http2 {
        // `host()` keeps an IPv6 literal's brackets, as `connect` wants them.
        let port = authority.port_u16().unwrap_or(80);
        Transport::Pool {
            pool: Arc::new(H1Pool::new(
                format!("{}:{port}", authority.host()),
                connect_timeout,
                Duration::from_secs(90),
            )),
            host: HeaderValue::from_str(authority.as_str())
                .map_err(|e| ("url", format!("`{url}`: {e}")))?,
        }
    } else {
        Transport::Client(Box::new(
            crate::tls::https_client(&HttpsClientOptions {
                ca: &ca,
                connect_timeout,
                idle_timeout: Duration::from_secs(90),
                http2: true,
                http2_only: http2,
            })
            .map_err(|e| ("ca", e))?,
        ))
    };
    Ok(HttpUpstream {
        scheme,
        authority,
        base_path,
        timeout: raw.timeout.map_or(Duration::from_secs(60), |d| d.0),
        transport,
    })
}
