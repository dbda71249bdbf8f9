//! Keep-alive connection pool for plain-HTTP/1.1 upstreams, on hyper's connection-level client.
//!
//! Why not hyper-util's legacy `Client` (still used for https and h2c upstreams): under callgrind
//! its checkout and return cost ~10 700 instructions a request on the plain proxy path (a
//! SipHash-keyed pool map looked up twice, a boxed response future, an extra scheme/authority
//! rewrite of every URI); this pool is a `Mutex<Vec>` of ready senders for one address. Swapping
//! it in (with the other changes of that commit) took the whole request from 57 700 to 43 000
//! instructions. A connection goes back to the pool only once its response body has been read to
//! the end, so a sender taken from the pool has no response outstanding.

use super::body::LimitedBody;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Most idle connections kept per upstream; more are closed when their response ends.
const MAX_IDLE: usize = 512;

#[derive(Debug)]
pub struct H1Pool {
    /// `host:port` to connect to.
    addr: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    tx: SendRequest<LimitedBody>,
    since: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect to {0}: timed out")]
    ConnectTimeout(String),
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// A request the pool could not get an answer to.
#[derive(Debug)]
pub struct SendError {
    pub error: PoolError,
    /// The request, when it never reached the upstream.
    pub unsent: Option<Request<LimitedBody>>,
}

impl PoolError {
    pub fn is_connect(&self) -> bool {
        !matches!(self, PoolError::Http(_))
    }
}

impl H1Pool {
    pub fn new(addr: String, connect_timeout: Duration, idle_timeout: Duration) -> H1Pool {
        H1Pool {
            addr,
            connect_timeout,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `req` on a pooled connection (or a new one) and returns the response, whose body
    /// hands the connection back when it has been read to the end. A request that never left
    /// (the connection could not be made, or closed before it was written) comes back in the
    /// error, whole, to be sent elsewhere.
    pub async fn send(
        self: &Arc<Self>,
        req: Request<LimitedBody>,
    ) -> Result<Response<PooledBody>, SendError> {
        let mut req = req;
        // A pooled connection can have been closed by the upstream just as we took it; a request
        // hyper reports as never written is retried once on a fresh connection.
        if let Some(mut tx) = self.checkout() {
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok(self.wrap(resp, tx)),
                Err(mut e) => match e.take_message() {
                    Some(back) => req = back,
                    None => {
                        return Err(SendError {
                            error: PoolError::Http(e.into_error()),
                            unsent: None,
                        })
                    }
                },
            }
        }
        // Boxed: connecting and the handshake are the cold path, and inline they would make
        // every request's future (moved into the upstream timeout and polled on each wake)
        // as large as theirs.
        let mut tx = match Box::pin(self.connect()).await {
            Ok(tx) => tx,
            Err(error) => {
                return Err(SendError {
                    error,
                    unsent: Some(req),
                })
            }
        };
        match tx.try_send_request(req).await {
            Ok(resp) => Ok(self.wrap(resp, tx)),
            Err(mut e) => {
                let unsent = e.take_message();
                Err(SendError {
                    error: PoolError::Http(e.into_error()),
                    unsent,
                })
            }
        }
    }

    fn wrap(
        self: &Arc<Self>,
        resp: Response<Incoming>,
        tx: SendRequest<LimitedBody>,
    ) -> Response<PooledBody> {
        // After a 101 the connection belongs to the tunnel: never pooled.
        let ret = (resp.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| (self.clone(), tx));
        let (parts, body) = resp.into_parts();
        let mut body = PooledBody { inner: body, ret };
        body.release_if_done();
        Response::from_parts(parts, body)
    }

    fn checkout(&self) -> Option<SendRequest<LimitedBody>> {
        loop {
            let entry = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.pop()
            }?;
            if entry.tx.is_closed() || entry.since.elapsed() > self.idle_timeout {
                continue;
            }
            // Not ready: its request body may still be uploading after an early answer (a 413 or
            // 401 before the body was read), which can last. Never wait on it: dropping the
            // sender closes the connection once that exchange ends.
            if entry.tx.is_ready() {
                return Some(entry.tx);
            }
        }
    }

    fn checkin(&self, tx: SendRequest<LimitedBody>) {
        if tx.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<SendRequest<LimitedBody>, PoolError> {
        let tcp = match tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(self.addr.as_str()),
        )
        .await
        {
            Err(_) => return Err(PoolError::ConnectTimeout(self.addr.clone())),
            Ok(Err(source)) => {
                return Err(PoolError::Connect {
                    addr: self.addr.clone(),
                    source,
                })
            }
            Ok(Ok(t)) => t,
        };
        let _ = tcp.set_nodelay(true);
        let (tx, conn) = Builder::new().handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }
}

/// An upstream response body; the connection returns to its pool when the body has been read
/// to the end (dropped early, the connection closes with it).
#[derive(Debug)]
pub struct PooledBody {
    inner: Incoming,
    ret: Option<(Arc<H1Pool>, SendRequest<LimitedBody>)>,
}

impl PooledBody {
    fn release_if_done(&mut self) {
        if self.inner.is_end_stream() {
            if let Some((pool, tx)) = self.ret.take() {
                pool.checkin(tx);
            }
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => {
                if let Some((pool, tx)) = this.ret.take() {
                    pool.checkin(tx);
                }
            }
            Poll::Ready(Some(Ok(_))) => this.release_if_done(),
            // An error: the connection is not reusable; drop it with the body.
            Poll::Ready(Some(Err(_))) => this.ret = None,
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
