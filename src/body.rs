//! The body of every answer: a small one of the gateway's own, or the upstream's streamed
//! through frame by frame (nothing buffers a whole body).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What the gateway answers with: a small body of its own, or the upstream's streamed through.
#[derive(Debug)]
pub enum GwBody {
    Full(Option<Bytes>),
    Stream(Incoming),
    /// From a pooled plain-HTTP/1 upstream connection.
    Pooled(crate::upstream::pool::PooledBody),
    /// An upstream answer of a `least_requests` target, counted as in flight until it ends.
    Counted(Box<GwBody>, crate::upstream::stats::InFlight),
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
            GwBody::Counted(b, _) => Pin::new(b.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GwBody::Full(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            GwBody::Stream(s) => s.is_end_stream(),
            GwBody::Pooled(s) => s.is_end_stream(),
            GwBody::Counted(b, _) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GwBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            GwBody::Stream(s) => s.size_hint(),
            GwBody::Pooled(s) => s.size_hint(),
            GwBody::Counted(b, _) => b.size_hint(),
        }
    }
}
