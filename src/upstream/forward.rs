//! How a request reaches one of an upstream's targets: [`HttpUpstream::forward`] picks a target
//! (round robin or least requests, skipping the ejected and the down), sends, records the outcome
//! for passive health, and sends again to another target when that is safe:
//! - a request that never left (connect failure, or a pooled connection closed before it was
//!   written) goes to another target whatever its method: the upstream saw nothing;
//! - an idempotent request without a body (GET, HEAD, OPTIONS, DELETE, ...) also after the
//!   connection failed once it was sent (reset, closed before the answer), with
//!   `retry_on_reset: true` (off by default: the upstream may have acted on it);
//! - never after a timeout, a response, or once a request body has been streamed.
//!
//! A single target (`url:`) goes straight to it: no copy of the request is kept.

use super::body::{body_fault, BodyFault, LimitedBody};
use super::stats::{Eject, InFlight, Retries};
use super::target::{Target, Transport};
use super::{Exchange, HttpUpstream};
use crate::body::GwBody;
use crate::config::raw::Balance;
use crate::error::{Reason, Reject};
use http::header::{self, HeaderMap};
use http::{Method, Request, Response, Uri, Version};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use tokio::time::Instant;

/// Why an attempt got no answer.
enum Failure {
    /// No connection could be made (or it closed before the request was written).
    Connect(String),
    /// The connection failed after the request was written.
    Reset(String),
    Timeout,
    /// The client's request body stopped short: not the target's fault.
    Body(BodyFault),
    BadTarget,
}

/// What is kept of a request without a body to send it again.
struct Head {
    method: Method,
    version: Version,
    headers: HeaderMap,
}

impl HttpUpstream {
    pub(super) fn new(
        targets: Vec<Target>,
        balance: Balance,
        timeout: Duration,
        eject: Eject,
        retries: Retries,
        health: Option<super::health::HealthCheck>,
    ) -> HttpUpstream {
        HttpUpstream {
            retries: Retries {
                max: retries.max.min(targets.len().saturating_sub(1) as u32),
                ..retries
            },
            own_authority: targets
                .iter()
                .any(|t| matches!(t.transport, Transport::Client(_))),
            targets: targets.into(),
            balance,
            next: AtomicUsize::new(0),
            timeout,
            eject,
            retried: AtomicU64::new(0),
            health,
            started: AtomicBool::new(false),
        }
    }

    /// Marks the health checks started; true the first time.
    pub(super) fn start_once(&self) -> bool {
        !self.started.swap(true, Relaxed)
    }

    /// The target for the next attempt, among those not `tried` (a bit per target): by the
    /// balance among the targets in the rotation, else (all ejected or down) the next untried
    /// one in turn, as a target that failed may answer again and refusing outright helps no one.
    fn pick(&self, tried: u64) -> Option<usize> {
        let n = self.targets.len();
        if n == 1 {
            return (tried == 0).then_some(0);
        }
        let start = self.next.fetch_add(1, Relaxed);
        let untried = |i: usize| tried & (1 << i) == 0;
        let mut now = None;
        let in_turn = (0..n).map(|k| (start.wrapping_add(k)) % n);
        let picked = match self.balance {
            Balance::RoundRobin => in_turn
                .clone()
                .find(|&i| untried(i) && self.targets[i].stats.available(&mut now)),
            Balance::LeastRequests => in_turn
                .clone()
                .filter(|&i| untried(i) && self.targets[i].stats.available(&mut now))
                .min_by_key(|&i| self.targets[i].stats.in_flight.load(Relaxed)),
        };
        picked.or_else(|| in_turn.clone().find(|&i| untried(i)))
    }

    /// Sends the request to a target (and, when safe, to others after a failure) and returns
    /// the answer; `target` is the path (the target's own base path goes before it) and query.
    pub(super) async fn forward(
        &self,
        upstream: &str,
        parts: http::request::Parts,
        body: LimitedBody,
        target: (&str, Option<&str>),
        x: &Exchange<'_>,
    ) -> Result<Response<GwBody>, Reject> {
        let mut parts = parts;
        parts.version = Version::HTTP_11;
        let deadline = Instant::now() + self.timeout;
        // The client gave no Host (or the route asked for the upstream's): each target's own.
        let target_host = !parts.headers.contains_key(header::HOST);
        let idempotent = is_idempotent(&parts.method);
        let mut req = Request::from_parts(parts, body);
        let mut tried = 0u64;
        let mut attempt = 0u32;
        loop {
            let Some(i) = self.pick(tried) else {
                return Err(Reject::bad_gateway(Reason::UpstreamConnectFailed));
            };
            tried |= 1 << i;
            let t = &self.targets[i];
            let again = attempt < self.retries.max;
            // Only a request without a body can be sent again after it left; the pool gives
            // back one that never left, hyper-util's client does not.
            let head = (again
                && (self.own_authority || (self.retries.on_reset && idempotent))
                && http_body::Body::is_end_stream(req.body()))
            .then(|| Head {
                method: req.method().clone(),
                version: req.version(),
                headers: req.headers().clone(),
            });
            t.stats.requests.fetch_add(1, Relaxed);
            let in_flight =
                (self.balance == Balance::LeastRequests).then(|| InFlight::new(&t.stats));
            let (failure, unsent) = match t.send(req, target, target_host, deadline).await {
                Ok(resp) => {
                    // 502/503/504: the target says it cannot serve. Not any 5xx: a client
                    // that can make the application fail (500) must not be able to eject
                    // targets one by one and steer the load.
                    if matches!(resp.status().as_u16(), 502..=504) {
                        self.failed(upstream, t);
                    } else {
                        t.stats.succeeded();
                    }
                    return Ok(match in_flight {
                        Some(g) => resp.map(|b| GwBody::Counted(Box::new(b), g)),
                        None => resp,
                    });
                }
                Err(f) => f,
            };
            drop(in_flight);
            if !matches!(failure, Failure::Body(_) | Failure::BadTarget) {
                self.failed(upstream, t);
            }
            let next = match (&failure, unsent, head) {
                (_, _, _) if !again => None,
                (Failure::Connect(_), Some(r), _) => Some(r),
                (Failure::Connect(_), None, Some(h)) => Some(h.rebuild()),
                (Failure::Reset(_), None, Some(h)) if idempotent && self.retries.on_reset => {
                    Some(h.rebuild())
                }
                _ => None,
            };
            match next {
                Some(r) => {
                    self.retried.fetch_add(1, Relaxed);
                    tracing::debug!(route = %x.route, upstream, target = %t.label, "sending the request to another target");
                    req = r;
                    attempt += 1;
                }
                None => return Err(failure.reject(x, upstream, &t.label)),
            }
        }
    }

    fn failed(&self, upstream: &str, t: &Target) {
        if let Some(length) = t.stats.failed(&self.eject) {
            tracing::warn!(
                upstream,
                target = %t.label,
                failures = self.eject.after,
                ejected_for = ?length,
                "upstream target ejected after consecutive failures"
            );
        }
    }
}

impl Head {
    fn rebuild(self) -> Request<LimitedBody> {
        let mut r = Request::new(LimitedBody::empty());
        *r.method_mut() = self.method;
        *r.version_mut() = self.version;
        *r.headers_mut() = self.headers;
        r
    }
}

impl Failure {
    fn reject(self, x: &Exchange<'_>, upstream: &str, target: &str) -> Reject {
        match self {
            Failure::Timeout => Reject::gateway_timeout(),
            Failure::Body(f) => f.reject(x.max_body),
            Failure::BadTarget => {
                Reject::new(Reason::BadTarget, "the request target cannot be forwarded")
            }
            Failure::Connect(error) => {
                tracing::warn!(route = %x.route, upstream, target, %error, "upstream request failed");
                Reject::bad_gateway(Reason::UpstreamConnectFailed)
            }
            Failure::Reset(error) => {
                tracing::warn!(route = %x.route, upstream, target, %error, "upstream request failed");
                Reject::bad_gateway(Reason::UpstreamReset)
            }
        }
    }
}

/// RFC 9110 section 9.2.2.
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

type Attempt = Result<Response<GwBody>, (Failure, Option<Request<LimitedBody>>)>;

impl Target {
    /// One attempt on this target, within `deadline`. A request that never left comes back with
    /// the failure when the transport can give it back.
    async fn send(
        &self,
        mut req: Request<LimitedBody>,
        (path, query): (&str, Option<&str>),
        target_host: bool,
        deadline: Instant,
    ) -> Attempt {
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + 1 + query.map_or(0, str::len),
        );
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        match &self.transport {
            Transport::Pool { pool, host } => {
                // Connection-level client: origin-form target, and `Host` is ours to set.
                *req.uri_mut() = match Uri::try_from(pq) {
                    Ok(u) => u,
                    Err(_) => return Err((Failure::BadTarget, None)),
                };
                if target_host {
                    req.headers_mut().insert(header::HOST, host.clone());
                }
                match tokio::time::timeout_at(deadline, pool.send(req)).await {
                    Err(_) => Err((Failure::Timeout, None)),
                    Ok(Ok(r)) => Ok(r.map(GwBody::Pooled)),
                    Ok(Err(e)) => {
                        let failure = match body_fault(&e.error) {
                            Some(f) => Failure::Body(f),
                            None if e.error.is_connect() || e.unsent.is_some() => {
                                Failure::Connect(e.error.to_string())
                            }
                            None => Failure::Reset(e.error.to_string()),
                        };
                        let mut unsent = e.unsent;
                        if let (Some(r), true) = (&mut unsent, target_host) {
                            r.headers_mut().remove(header::HOST);
                        }
                        Err((failure, unsent))
                    }
                }
            }
            Transport::Client(client) => {
                *req.uri_mut() = match Uri::builder()
                    .scheme(self.scheme.clone())
                    .authority(self.authority.clone())
                    .path_and_query(pq)
                    .build()
                {
                    Ok(u) => u,
                    Err(_) => return Err((Failure::BadTarget, None)),
                };
                // hyper sets Host (HTTP/1) or :authority (h2) from the upstream URI.
                req.headers_mut().remove(header::HOST);
                match tokio::time::timeout_at(deadline, client.request(req)).await {
                    Err(_) => Err((Failure::Timeout, None)),
                    Ok(Ok(r)) => Ok(r.map(GwBody::Stream)),
                    Ok(Err(e)) => Err((
                        match body_fault(&e) {
                            Some(f) => Failure::Body(f),
                            None if e.is_connect() => Failure::Connect(e.to_string()),
                            None => Failure::Reset(e.to_string()),
                        },
                        None,
                    )),
                }
            }
        }
    }
}
