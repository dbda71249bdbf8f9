//! A client's request body on its way upstream ([`LimitedBody`]) and why one stopped short
//! ([`BodyFault`]).

use crate::error::Reject;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body exceeded the route's `max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// The client sent no byte of its request body for `limits.body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("no request body data for {0:?}")]
pub struct BodyTimeout(pub Duration);

/// The client's request body broke (bad chunked framing, a reset stream): the client's fault, not
/// the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("the request body could not be read: {0}")]
pub struct ClientBodyError(#[source] hyper::Error);

/// A client request body on its way upstream:
/// - cut off with [`BodyTooLarge`] past the limit (for bodies without a `Content-Length`, which
///   was checked before forwarding);
/// - cut off with [`BodyTimeout`] when the client sends nothing for `idle` (a slow POST holds a
///   connection slot and an upstream connection: docs/attack-cases.md RES-06, hyperium/hyper#2864;
///   nginx's `client_body_timeout` is the same rule). The timer only exists once the body has
///   made the gateway wait, so a body that arrives with its head costs no timer;
/// - trailers filtered like headers from an untrusted peer, so no identity, forwarding or framing
///   name reaches the upstream as a trailer (HDR-20: zoxy-io/zoxy#263; HTTP/2 upstreams receive
///   trailers as they are, where HTTP/1.1 ones never get undeclared trailers).
#[derive(Debug)]
pub struct LimitedBody {
    /// None: a body known to be empty, rebuilt for a request sent again to another target.
    inner: Option<Incoming>,
    seen: u64,
    limit: u64,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl LimitedBody {
    pub fn new(inner: Incoming, limit: u64, idle: Duration) -> LimitedBody {
        LimitedBody {
            inner: Some(inner),
            seen: 0,
            limit,
            idle,
            timer: None,
        }
    }

    /// An empty body (what an empty client body is sent again as).
    pub fn empty() -> LimitedBody {
        LimitedBody {
            inner: None,
            seen: 0,
            limit: 0,
            idle: Duration::ZERO,
            timer: None,
        }
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(f) => f,
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                ready!(timer.as_mut().poll(cx));
                return Poll::Ready(Some(Err(Box::new(BodyTimeout(idle)))));
            }
        };
        if let Some(t) = &mut this.timer {
            t.as_mut().reset(Instant::now() + this.idle);
        }
        Poll::Ready(match frame {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    this.seen += d.len() as u64;
                    if this.seen > this.limit {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(this.limit)))));
                    }
                    Some(Ok(f))
                } else {
                    match f.into_trailers() {
                        Ok(mut t) => {
                            crate::headers::sanitize_trailers(&mut t);
                            Some(Ok(Frame::trailers(t)))
                        }
                        Err(f) => Some(Ok(f)),
                    }
                }
            }
            Some(Err(e)) => Some(Err(Box::new(ClientBodyError(e)))),
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// Why a request body stopped short, found anywhere in an error chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFault {
    TooLarge,
    Timeout,
    /// [`ClientBodyError`].
    Client,
}

impl BodyFault {
    /// The answer to a request whose body stopped short this way (`limit`: the route's
    /// `max_body_bytes`).
    pub fn reject(self, limit: u64) -> Reject {
        match self {
            BodyFault::TooLarge => Reject::payload_too_large(limit),
            BodyFault::Timeout => Reject::body_timeout(),
            // Bad chunked framing or a reset stream from the client: not the upstream's fault.
            BodyFault::Client => Reject::body_read_failed(),
        }
    }
}

/// The [`BodyTooLarge`], [`BodyTimeout`] or [`ClientBodyError`] in an error chain, if any.
pub fn body_fault(e: &(dyn std::error::Error + 'static)) -> Option<BodyFault> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTooLarge>() {
            return Some(BodyFault::TooLarge);
        }
        if err.is::<BodyTimeout>() {
            return Some(BodyFault::Timeout);
        }
        if err.is::<ClientBodyError>() {
            return Some(BodyFault::Client);
        }
        cur = err.source();
    }
    None
}
