//! Upstream I/O: the configured upstreams ([`Upstream`], compiled from their config section by
//! [`compile`]), their addresses ([`target::Target`]: one for `url`, several for `targets`, each
//! with its passive health, and the active [`health`] checks), how a request reaches one
//! ([`Transport`]: the gateway's own keep-alive pool for plain HTTP/1.1, hyper-util's client for
//! https and h2c, or the built-in [`echo`]; [`forward`] picks the target and retries), and
//! [`Upstream::send`], which turns every failure into a [`Reject`] and hands an accepted upgrade
//! to the [`tunnel`].
//!
//! The request reaching `send` has already been rewritten at the trust boundary
//! ([`crate::headers`]); `send` only sets the target and, per transport, `Host`.

pub mod body;
pub mod compile;
pub mod echo;
pub mod forward;
pub mod health;
pub mod pool;
pub mod stats;
pub mod target;
pub mod tunnel;

pub use self::target::Transport;

use self::body::{body_fault, LimitedBody};
use self::stats::{Eject, Retries};
use self::target::Target;
use crate::body::GwBody;
use crate::config::raw::{Balance, RawUpstream};
use crate::conn::ConnInfo;
use crate::error::{Reason, Reject};
use crate::values::resolve;
use http::{Response, StatusCode};
use hyper::body::Incoming;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct Upstream {
    pub(super) raw: RawUpstream,
    /// SHA-256 of the `ca` file as it was read.
    pub(super) ca: Option<[u8; 32]>,
    pub name: String,
    pub kind: UpstreamKind,
}

#[derive(Debug)]
pub enum UpstreamKind {
    /// The built-in echo upstream.
    Echo,
    Http(Box<HttpUpstream>),
}

/// An `http://` or `https://` upstream: one target (`url`) or several (`targets`).
#[derive(Debug)]
pub struct HttpUpstream {
    /// Shared with the health checks, which hold it weakly (they end with the upstream).
    pub targets: Arc<[Target]>,
    pub balance: Balance,
    /// Where round robin (and least-requests' tie-break) goes next.
    next: AtomicUsize,
    pub timeout: Duration,
    pub eject: Eject,
    pub retries: Retries,
    /// The targets are reached by hyper-util's client (https, h2c), not the plain-HTTP/1 pool:
    /// each sets its own authority as `Host`/`:authority`, and a request it could not send is
    /// consumed (a copy is kept to send one again even after a connect failure).
    own_authority: bool,
    pub retried: AtomicU64,
    pub health: Option<health::HealthCheck>,
    /// Whether the active health checks run (started once, by the first snapshot holding it).
    started: AtomicBool,
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

impl HttpUpstream {
    /// Whether the targets are https or h2c (hyper-util's client), which name themselves in
    /// `Host`/`:authority`, rather than plain HTTP/1.1 (the gateway's pool), whose `Host` a
    /// route may set.
    pub fn own_authority(&self) -> bool {
        self.own_authority
    }
}

impl Upstream {
    /// Whether a reload may keep this upstream (and its pooled connections): the section is the
    /// same, and so is its `ca` file, read again now (a renewed CA takes effect on reload).
    pub fn unchanged(&self, raw: &RawUpstream, base: &Path) -> bool {
        self.raw == *raw && self.ca == ca_digest(raw, base)
    }

    /// Starts the upstream's active health checks, if it has any (once: a reload keeping the
    /// upstream keeps its checks).
    pub fn start(self: &Arc<Self>) {
        if let UpstreamKind::Http(h) = &self.kind {
            if let Some(check) = &h.health {
                if h.start_once() {
                    health::start(&self.name, &h.targets, check);
                }
            }
        }
    }

    /// Sends `out` and returns the upstream's response (hop-by-hop headers removed), or the
    /// refusal that answers the client instead: 502/504 for the upstream's failures, 413/408/400
    /// when the client's body stopped short.
    pub async fn send(&self, out: Outbound, x: &Exchange<'_>) -> Result<Response<GwBody>, Reject> {
        let Outbound {
            parts,
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
        let target = (path.as_str(), query.as_deref());
        let mut resp = up.forward(&self.name, parts, body, target, x).await?;
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
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

pub(super) fn ca_digest(raw: &RawUpstream, base: &Path) -> Option<[u8; 32]> {
    let file = resolve(base, raw.ca.as_ref()?.as_str());
    std::fs::read(file).ok().map(|b| crate::digest::sha256(&b))
}
