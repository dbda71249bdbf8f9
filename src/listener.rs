//! Accept loops: TCP accept under the `max_connections` cap, the TLS handshake with a timeout, the
//! per-connection facts ([`ConnInfo`]), HTTP/1.1 + HTTP/2 serving, the connection deadlines and
//! graceful shutdown. Each request goes to [`crate::proxy::handle`] (or the admin API's).

use crate::config::snapshot::Limits;
use crate::conn::{client_cert_info, peer_value, Activity, ConnInfo, InFlight};
use crate::gateway::Gateway;
use crate::proxy::head_buffer;
use crate::telemetry::metrics::Metrics;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Counts a request as being handled until its response head is ready.
struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight until it has been sent (or dropped): a long
/// download is a request in progress, not an idle connection.
struct Tracked<B> {
    inner: B,
    in_flight: InFlight,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        let a = &self.in_flight.0;
        if r.is_pending() {
            a.upstream_quiet.store(true, Ordering::Relaxed);
        } else {
            a.upstream_quiet.store(false, Ordering::Relaxed);
            a.progressed.store(true, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Proxy,
    Admin,
}

/// Runs one listener's accept loop until `shutdown` flips.
pub async fn accept_loop(
    listener: TcpListener,
    name: Arc<str>,
    gw: Arc<Gateway>,
    conns: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    kind: Kind,
) {
    loop {
        let permit = tokio::select! {
            p = conns.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let gw = gw.clone();
                let name = name.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(serve_conn(tcp, peer, name, gw, permit, shutdown, kind));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                drop(permit);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_conn(
    tcp: TcpStream,
    peer: SocketAddr,
    name: Arc<str>,
    gw: Arc<Gateway>,
    permit: OwnedSemaphorePermit,
    shutdown: watch::Receiver<bool>,
    kind: Kind,
) {
    let _ = tcp.set_nodelay(true);
    let snap = gw.snapshot();
    let tls = match kind {
        Kind::Admin => snap.admin.tls.clone(),
        Kind::Proxy => match snap.listener(&name) {
            Some(l) => l.tls.clone(),
            None => return,
        },
    };
    let limits = snap.limits.clone();
    drop(snap);
    let _open = gw.metrics.connection(&name);
    let activity = Arc::new(Activity::default());
    match tls {
        None => {
            let info = Arc::new(ConnInfo {
                listener: name,
                peer,
                tls: false,
                sni: None,
                client_cert: None,
                activity: activity.clone(),
                peer_value: peer_value(peer.ip()),
                slot: Some(permit),
            });
            serve_http(tcp, info, gw, &limits, shutdown, kind).await;
        }
        Some(cfg) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
            let stream =
                match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        handshake_failed(&gw, &name, peer, Some(&e));
                        return;
                    }
                    Err(_) => {
                        handshake_failed(&gw, &name, peer, None);
                        return;
                    }
                };
            let (_, conn) = stream.get_ref();
            let info = Arc::new(ConnInfo {
                listener: name,
                peer,
                tls: true,
                sni: conn.server_name().map(|s| s.to_ascii_lowercase()),
                client_cert: conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(client_cert_info),
                activity: activity.clone(),
                peer_value: peer_value(peer.ip()),
                slot: Some(permit),
            });
            serve_http(stream, info, gw, &limits, shutdown, kind).await;
        }
    }
}

async fn serve_http<T>(
    io: T,
    info: Arc<ConnInfo>,
    gw: Arc<Gateway>,
    limits: &Limits,
    mut shutdown: watch::Receiver<bool>,
    kind: Kind,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(head_buffer(limits.max_header_bytes));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(head_buffer(limits.max_header_bytes) as u32)
        .max_concurrent_streams(256);
    let activity = info.activity.clone();
    let (listener, peer, gw_errors) = (info.listener.clone(), info.peer, gw.clone());
    let svc = service_fn(move |req| {
        let gw = gw.clone();
        let info = info.clone();
        async move {
            let in_flight = info.activity.begin();
            info.activity.handling.fetch_add(1, Ordering::Relaxed);
            let handling = Handling(info.activity.clone());
            let resp = match kind {
                Kind::Proxy => crate::proxy::handle(gw, info, req).await,
                Kind::Admin => crate::admin::handle(gw, req).await,
            };
            drop(handling);
            Ok::<_, Infallible>(resp.map(|inner| Tracked { inner, in_flight }))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut idle = tokio::time::interval(limits.idle_timeout);
    idle.tick().await;
    let mut closing = *shutdown.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    // Deadlines, whatever the protocol (docs/attack-cases.md RES-01..RES-07):
    // - the first request must begin within header_timeout of the accept (hyper's own header
    //   timer only starts once HTTP/1 has been detected; HTTP/2 has none): a client that sends
    //   nothing, or the HTTP/2 preface a byte at a time, is cut off;
    // - no request for idle_timeout closes the connection even if bytes flow (HTTP/2 PINGs or
    //   empty frames do not keep a connection alive);
    // - a response that makes no progress for idle_timeout while the upstream has data for it
    //   (a client that stopped reading, or an HTTP/2 client holding its window at zero, PINGs or
    //   not) is cut off; waiting on the upstream is not a stall, before the response head
    //   (its `timeout` covers that) or between frames of a quiet stream;
    // - an idle connection asked to close that is still open one interval later is dropped.
    let first = tokio::time::sleep(limits.header_timeout);
    tokio::pin!(first);
    let mut waiting_first = true;
    let mut idle_closing = false;
    let mut seen_started = 0u64;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    connection_error(&gw_errors.metrics, &listener, peer, &*e);
                }
                return;
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut first, if waiting_first => {
                waiting_first = false;
                if activity.started.load(Ordering::Relaxed) == 0 {
                    tracing::debug!("no request within header_timeout of the accept; closing");
                    return;
                }
            }
            _ = idle.tick(), if !closing || idle_closing => {
                if idle_closing {
                    return;
                }
                let progressed = activity.progressed.swap(false, Ordering::Relaxed);
                let started = activity.started.load(Ordering::Relaxed);
                let began = started != seen_started;
                seen_started = started;
                if activity.in_flight.load(Ordering::Relaxed) == 0 {
                    if !began {
                        closing = true;
                        idle_closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                } else if !progressed
                    && activity.handling.load(Ordering::Relaxed) == 0
                    && !activity.upstream_quiet.load(Ordering::Relaxed)
                {
                    tracing::debug!("a response stalled for idle_timeout (the client stopped reading); closing");
                    return;
                }
            }
        }
    }
}

/// A TLS handshake that failed (`None`: timed out): counted by reason; logged at info when
/// mutual TLS refused the client's certificate (or its absence), which an operator may need to
/// see, else at debug (scanners and broken clients are noise).
fn handshake_failed(
    gw: &Gateway,
    listener: &Arc<str>,
    peer: SocketAddr,
    e: Option<&std::io::Error>,
) {
    let reason = e.map_or("timeout", handshake_reason);
    gw.metrics.handshake_failed(listener, reason);
    let error = e.map_or_else(
        || "no handshake within header_timeout".to_owned(),
        ToString::to_string,
    );
    if reason.starts_with("client_certificate") {
        tracing::info!(%listener, %peer, reason, %error, "TLS handshake failed: client certificate refused");
    } else {
        tracing::debug!(%listener, %peer, reason, %error, "TLS handshake failed");
    }
}

/// The metric's `reason` for a failed handshake.
fn handshake_reason(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError as C, Error as E};
    match e.get_ref().and_then(|i| i.downcast_ref::<E>()) {
        Some(E::NoCertificatesPresented) => "client_certificate_missing",
        Some(E::InvalidCertificate(c)) => match c {
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => "client_certificate_expired",
            C::UnknownIssuer => "client_certificate_untrusted",
            C::Revoked => "client_certificate_revoked",
            _ => "client_certificate_invalid",
        },
        Some(E::AlertReceived(_)) => "alert_received",
        Some(E::PeerIncompatible(_)) => "incompatible",
        Some(_) => "protocol_error",
        None => "connection_closed",
    }
}

/// A connection that hyper ended with an error. A request its parser refused (hyper answered
/// 400, 414 or 431 itself, with no body) is logged at info and counted under route `-`; other
/// errors (the client went away) at debug.
fn connection_error(
    metrics: &Metrics,
    listener: &str,
    peer: SocketAddr,
    e: &(dyn std::error::Error + 'static),
) {
    let parse = e
        .downcast_ref::<hyper::Error>()
        .filter(|h| h.is_parse() || h.is_parse_too_large());
    let Some(h) = parse else {
        tracing::debug!(error = %e, "connection ended with an error");
        return;
    };
    let status = if h.is_parse_too_large() {
        431
    } else if h.to_string().contains("too long") {
        414
    } else {
        400
    };
    metrics.parser_refusal(status);
    tracing::info!(%listener, %peer, status, error = %h, "request refused by the HTTP parser");
}
