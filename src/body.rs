//! Body types of the request path. Bodies stream frame by frame in both directions; nothing here
//! buffers a whole body.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the gateway answers with: a small body of its own, or the upstream's streamed through.
#[derive(Debug)]
pub enum GwBody {
    Full(Option<Bytes>),
    Stream(Incoming),
    /// From a pooled plain-HTTP/1 upstream connection.
    Pooled(crate::upstream_pool::PooledBody),
}

impl GwBody {
    pub fn full(b: impl Into<Bytes>) -> GwBody {
        GwBody::Full(Some(b.into()))
    }
    pub fn empty() -> GwBody {
        GwBody::Full(None)
    }
}

impl Body for GwBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            GwBody::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            GwBody::Stream(s) => Pin::new(s).poll_frame(cx),
            GwBody::Pooled(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GwBody::Full(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            GwBody::Stream(s) => s.is_end_stream(),
            GwBody::Pooled(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GwBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            GwBody::Stream(s) => s.size_hint(),
            GwBody::Pooled(s) => s.size_hint(),
        }
    }
}

/// The request body exceeded the route's `max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {0} bytes")]
pub struct BodyTooLarge(pub u64);

/// A client request body on its way upstream, cut off with [`BodyTooLarge`] past the limit (for
/// bodies without a `Content-Length`, which was checked before forwarding).
#[derive(Debug)]
pub struct LimitedBody {
    inner: Incoming,
    seen: u64,
    limit: u64,
}

impl LimitedBody {
    pub fn new(inner: Incoming, limit: u64) -> LimitedBody {
        LimitedBody {
            inner,
            seen: 0,
            limit,
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
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        Poll::Ready(match frame {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    self.seen += d.len() as u64;
                    if self.seen > self.limit {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge(self.limit)))));
                    }
                }
                Some(Ok(f))
            }
            Some(Err(e)) => Some(Err(Box::new(e))),
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an error chain contains [`BodyTooLarge`].
pub fn is_body_too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTooLarge>() {
            return true;
        }
        cur = err.source();
    }
    false
}
