//! One request: snapshot -> host and path checks -> route -> auth chain -> forward. Never returns
//! an error to hyper (that would abort the connection): every refusal is a response.

use crate::audit::{rfc3339_now, AuditRecord};
use crate::auth::{self, AuthRequest, Identity};
use crate::body::{body_fault, GwBody, LimitedBody};
use crate::config::{canonical_ip, Snapshot};
use crate::error::Reject;
use crate::forward::{self, ForwardCtx, Transport, UpstreamKind};
use crate::listener::ConnInfo;
use crate::normalize::normalize;
use crate::server::Gateway;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// The longest request target (path and query) the gateway reads.
pub const MAX_URI_BYTES: usize = 8192;

/// What the request path learned, for the access and audit lines.
#[derive(Default)]
struct Outcome {
    route: Option<Arc<str>>,
    identity: Option<Arc<Identity>>,
    response_headers: Vec<(header::HeaderName, HeaderValue)>,
}

pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<GwBody> {
    let started = Instant::now();
    let snap = gw.snapshot();
    let request_id = gw.request_id(req.headers().get(forward::X_REQUEST_ID));
    let method = req.method().clone();
    let uri = req.uri().clone(); // reference-counted: the path is only read for the log lines
    let raw_path = uri.path();
    let client_ip = client_ip(&snap, &conn, req.headers());
    let version = req.version();
    let mut out = Outcome::default();
    let result = route_and_forward(&snap, &conn, req, &request_id, client_ip, &mut out).await;
    let (mut resp, reason, close) = match result {
        Ok(r) => (r, None, false),
        Err(rej) => {
            let (reason, close) = (rej.reason, rej.close);
            (reject_response(rej, &request_id), Some(reason), close)
        }
    };
    let h = resp.headers_mut();
    h.insert(forward::X_REQUEST_ID, request_id.clone());
    if close && version < Version::HTTP_2 {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    for (k, v) in out.response_headers {
        h.insert(k, v);
    }
    let status = resp.status().as_u16();
    let latency_us = started.elapsed().as_micros() as u64;
    let id = out.identity.as_deref();
    // Ours or a client's checked against `[A-Za-z0-9._:-]`: always ASCII.
    let rid = || request_id.to_str().unwrap_or("-");
    tracing::info!(
        target: "access",
        request_id = rid(),
        listener = %conn.listener,
        route = out.route.as_deref().unwrap_or("-"),
        method = %method,
        path = raw_path,
        client_ip = %client_ip,
        auth = id.map_or("-", |i| i.method.as_str()),
        subject = id.and_then(|i| i.subject.as_deref()).unwrap_or("-"),
        status,
        reason = reason.unwrap_or("-"),
        latency_us,
        "request"
    );
    gw.metrics.request(out.route.as_ref(), status, latency_us);
    if let Some(route) = &out.route {
        // An identity means the chain allowed the request, whatever happened after it (a body
        // over the limit, an upstream failure): those are not auth decisions.
        match (id, reason) {
            (Some(i), reason) => {
                let authn = i.authenticator.as_ref().unwrap_or_else(|| i.method.label());
                gw.metrics.decision(Some(authn), true, "ok");
                if let Some(r) = reason.filter(|r| r.starts_with("upstream_")) {
                    gw.metrics.upstream_error(route, r);
                }
            }
            (None, Some("rate_limited")) => {
                gw.metrics.rate_limited(route);
                gw.metrics.decision(None, false, "rate_limited");
            }
            (None, Some(r)) => gw.metrics.decision(None, false, r),
            (None, None) => {}
        }
    }
    if snap.audit.enabled() {
        snap.audit.record(&AuditRecord {
            time: rfc3339_now(),
            request_id: rid(),
            listener: &conn.listener,
            route: out.route.as_deref(),
            method: method.as_str(),
            path: raw_path,
            client_ip: client_ip.to_string(),
            auth_method: id.map(|i| i.method.as_str()),
            authenticator: id.and_then(|i| i.authenticator.as_deref()),
            key_id: id.and_then(|i| i.key_id.as_deref()),
            subject: id.and_then(|i| i.subject.as_deref()),
            issuer: id.and_then(|i| i.issuer.as_deref()),
            decision: if reason.is_none() { "allow" } else { "deny" },
            reason,
            status,
            latency_us,
        });
    }
    resp
}

/// The address rate limits and the audit log use: the socket peer, or, when the peer is a trusted
/// proxy, the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(snap: &Snapshot, conn: &ConnInfo, h: &http::HeaderMap) -> IpAddr {
    let peer = canonical_ip(conn.peer.ip());
    if snap.trusted_proxies.is_empty() || !snap.trusted_proxies.contains(peer) {
        return peer;
    }
    let mut client = peer;
    let values: Vec<&HeaderValue> = h.get_all("x-forwarded-for").iter().collect();
    for v in values.iter().rev() {
        let Ok(s) = v.to_str() else { break };
        for part in s.rsplit(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = canonical_ip(ip);
                    if !snap.trusted_proxies.contains(client) {
                        return client;
                    }
                }
                Err(_) => return client,
            }
        }
    }
    client
}

/// Lowercase host without port or trailing dot, from `:authority`/absolute URI and `Host`, which
/// must agree. `Ok(None)`: an HTTP/1.0 request without a host.
fn request_host<B>(req: &Request<B>) -> Result<Option<String>, Reject> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header_host = hosts.next();
    if hosts.next().is_some() {
        return Err(Reject::bad_request(
            "multiple_host",
            "more than one Host header",
        ));
    }
    // User information in a host (`x@api.example.com`), in `Host` or in the request target: no
    // reading of it is safe to route or to compare with the SNI (docs/attack-cases.md HDR-10).
    if header_host.is_some_and(|v| v.as_bytes().contains(&b'@'))
        || req
            .uri()
            .authority()
            .is_some_and(|a| a.as_str().contains('@'))
    {
        return Err(Reject::bad_request(
            "bad_host",
            "the Host must not carry user information",
        ));
    }
    // The common case, an origin-form target and a plain lowercase `Host` (`api.example.com` or
    // `api.example.com:8443`): no `Authority` parse (about 700 instructions under callgrind).
    if req.uri().authority().is_none() {
        if let Some(h) = header_host.and_then(|v| simple_host(v.as_bytes())) {
            return Ok(Some(h.to_owned()));
        }
    }
    let header_host = match header_host {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<http::uri::Authority>().ok())
                .ok_or_else(|| {
                    Reject::bad_request("bad_host", "the Host header is not a valid host")
                })?,
        ),
        None => None,
    };
    let uri_host = req.uri().authority().cloned();
    let auth = match (uri_host, header_host) {
        (Some(u), Some(h)) => {
            if !u.host().eq_ignore_ascii_case(h.host()) || u.port_u16() != h.port_u16() {
                return Err(Reject::bad_request(
                    "host_mismatch",
                    "the Host header and the request target name different hosts",
                ));
            }
            Some(u)
        }
        (Some(u), None) => Some(u),
        (None, Some(h)) => Some(h),
        (None, None) => {
            if req.version() == Version::HTTP_11 || req.version() == Version::HTTP_2 {
                return Err(Reject::bad_request(
                    "missing_host",
                    "the request has no Host",
                ));
            }
            None
        }
    };
    Ok(auth
        .map(|a| a.host().trim_end_matches('.').to_ascii_lowercase())
        .filter(|h| !h.is_empty()))
}

/// `host` or `host:port` with only lowercase letters, digits, `.` and `-` in the host (a trailing
/// dot dropped) and digits in the port; None for anything else, which takes the full parse.
fn simple_host(v: &[u8]) -> Option<&str> {
    let (mut host, port) = match v.iter().position(|&b| b == b':') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    while let Some(h) = host.strip_suffix(b".") {
        host = h;
    }
    let host_ok = !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    // a port, when there is a colon: digits (`parse` alone would take a `+`) that fit a u16
    let port_ok = port.is_none_or(|p| {
        p.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(p).is_ok_and(|p| p.parse::<u16>().is_ok())
    });
    (host_ok && port_ok)
        .then(|| std::str::from_utf8(host).ok())
        .flatten()
}

async fn route_and_forward(
    snap: &Snapshot,
    conn: &Arc<ConnInfo>,
    mut req: Request<Incoming>,
    request_id: &HeaderValue,
    client_ip: IpAddr,
    out: &mut Outcome,
) -> Result<Response<GwBody>, Reject> {
    let Routed { host, path, route } = resolve(snap, conn, &req)?;
    out.route = Some(route.name.clone());

    let auth_req = AuthRequest {
        headers: req.headers(),
        query: req.uri().query(),
        conn,
        client_ip,
    };
    if let Some(pre) = &route.pre_auth_rate_limit {
        // Per address, before any signature check: a flood of bad tokens costs no crypto.
        pre.check(&format!("ip|{client_ip}"))?;
    }
    let decision = auth::evaluate(&route.auth, &auth_req, None).await?;
    let identity = decision.identity;
    out.response_headers = decision.response_headers;
    out.identity = Some(identity.clone());

    let limit = route.max_body_bytes;
    let body_timeout = snap.limits.body_timeout;
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Reject::bad_request("bad_content_length", "invalid Content-Length"))?;
        if len > limit {
            return Err(Reject::payload_too_large(limit));
        }
    }

    let upgrade = if req.version() == Version::HTTP_11 && wants_upgrade(req.headers()) {
        req.headers().get(header::UPGRADE).cloned()
    } else {
        None
    };
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

    let peer_ip = canonical_ip(conn.peer.ip());
    let credential_cookies = route.auth.credential_sources().0;
    let ctx = ForwardCtx {
        peer_ip,
        peer_value: &conn.peer_value,
        peer_trusted: snap.trusted_proxies.contains(peer_ip),
        client_ip,
        proto: if conn.tls { "https" } else { "http" },
        host: host.as_deref(),
        request_id,
        identity: &identity,
        client_cert: conn.client_cert.as_ref(),
        strip_credentials: route.strip_credentials,
        credential_cookies,
        upgrade: upgrade.clone(),
    };
    let mut query = req.uri().query().map(str::to_owned);
    let client_version = req.version();
    let (mut parts, body) = req.into_parts();
    forward::upstream_request_headers(&mut parts.headers, &ctx);
    query = forward::strip_params(query, &route.strip_params);
    if let Some(h) = &host {
        // Keep the client's Host for name-based upstreams; an h2 request carried it as :authority.
        if !parts.headers.contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(h) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }

    let up = match &route.upstream.kind {
        UpstreamKind::Echo => {
            return crate::echo::respond(
                client_version,
                &parts.method,
                &path,
                query.as_deref(),
                &parts.headers,
                LimitedBody::new(body, limit, body_timeout),
            )
            .await
            .map_err(|e| {
                body_fault(e.as_ref()).map_or_else(Reject::body_read_failed, |f| f.reject(limit))
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
    let bad_target = || Reject::bad_request("bad_target", "the request target cannot be forwarded");
    parts.version = Version::HTTP_11;
    let resp = match &up.transport {
        Transport::Pool { pool, host } => {
            // Connection-level client: origin-form target, and `Host` is ours to set.
            parts.uri = Uri::try_from(pq).map_err(|_| bad_target())?;
            if !parts.headers.contains_key(header::HOST) {
                parts.headers.insert(header::HOST, host.clone());
            }
            let upstream_req =
                Request::from_parts(parts, LimitedBody::new(body, limit, body_timeout));
            match tokio::time::timeout(up.timeout, pool.send(upstream_req)).await {
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
            let upstream_req =
                Request::from_parts(parts, LimitedBody::new(body, limit, body_timeout));
            match tokio::time::timeout(up.timeout, client.request(upstream_req)).await {
                Err(_) => Err(None),
                Ok(Err(e)) => Err(Some((body_fault(&e), e.is_connect(), e.to_string()))),
                Ok(Ok(r)) => Ok(r.map(GwBody::Stream)),
            }
        }
    };
    let resp = match resp {
        Ok(r) => r,
        Err(None) => return Err(Reject::gateway_timeout()),
        Err(Some((Some(fault), _, _))) => return Err(fault.reject(limit)),
        Err(Some((None, connect, error))) => {
            tracing::warn!(route = %route.name, upstream = %route.upstream.name, %error, "upstream request failed");
            return Err(Reject::bad_gateway(if connect {
                "upstream_connect_failed"
            } else {
                "upstream_reset"
            }));
        }
    };
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let (mut rparts, rbody) = if switching {
        match client_upgrade {
            Some(client_upgrade) => {
                let mut resp = resp;
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                // The tunnel holds the connection's `max_connections` slot until it closes.
                let holds_slot = conn.clone();
                let idle = snap.limits.idle_timeout;
                tokio::spawn(async move {
                    let _slot = holds_slot;
                    match tokio::try_join!(client_upgrade, upstream_upgrade) {
                        Ok((c, u)) => tunnel(c, u, idle).await,
                        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                    }
                });
                resp.into_parts()
            }
            // The upstream switched protocols without being asked: refuse to pass that on.
            None => return Err(Reject::bad_gateway("upstream_unrequested_upgrade")),
        }
    } else {
        resp.into_parts()
    };
    forward::downstream_response_headers(&mut rparts.headers, switching);
    Ok(Response::from_parts(rparts, rbody))
}

/// Relays an upgraded connection both ways until either side closes or no byte has moved in
/// either direction for `idle` (`limits.idle_timeout`): an idle WebSocket would otherwise hold
/// its connection slot and an upstream socket forever (docs/attack-cases.md RES-08). WebSocket
/// clients that want a quiet connection kept open send pings, which count as traffic.
async fn tunnel(
    c: hyper::upgrade::Upgraded,
    u: hyper::upgrade::Upgraded,
    idle: std::time::Duration,
) {
    let moved = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut c = Watched {
        io: hyper_util::rt::TokioIo::new(c),
        moved: moved.clone(),
    };
    let mut u = Watched {
        io: hyper_util::rt::TokioIo::new(u),
        moved: moved.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut c, &mut u);
    tokio::pin!(copy);
    let mut tick = tokio::time::interval(idle);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut copy => return,
            _ = tick.tick() => {
                if !moved.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    tracing::debug!("upgraded connection idle for idle_timeout; closing");
                    return;
                }
            }
        }
    }
}

/// An upgraded stream that notes when bytes arrive.
struct Watched<T> {
    io: T,
    moved: Arc<std::sync::atomic::AtomicBool>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A protocol upgrade the gateway tunnels (WebSocket and the like). `h2c` never is: after a
/// 101 the tunnel would carry HTTP/2 requests that never pass the auth chain (h2c smuggling,
/// docs/attack-cases.md SMUG-18); such a request goes on as plain HTTP/1.1 without its
/// `Upgrade`, as RFC 9113 lets a server ignore it (`curl --http2` on http:// does this).
fn wants_upgrade(h: &http::HeaderMap) -> bool {
    let h2c = h.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str().map_or(true, |s| {
            s.split(',')
                .any(|t| t.trim().to_ascii_lowercase().starts_with("h2c"))
        })
    });
    !h2c && h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// A request matched to its route.
pub struct Routed {
    /// Lowercase, without port or trailing dot.
    pub host: Option<String>,
    /// The normalized path: what routing used and what the upstream receives.
    pub path: String,
    pub route: Arc<crate::router::Route>,
}

/// Host checks, path normalization and route lookup (shared with `portcullis explain`).
pub fn resolve<B>(snap: &Snapshot, conn: &ConnInfo, req: &Request<B>) -> Result<Routed, Reject> {
    if req.method() == Method::CONNECT {
        return Err(Reject::bad_request(
            "connect_refused",
            "CONNECT is not supported",
        ));
    }
    // RFC 9112 section 3: a request target longer than the server will read is 414. hyper's own
    // check (64 KiB) never fires, since its head buffer (`max_header_bytes`) fills first and
    // answers 431; nginx answers 414 past 8 KiB, and so do we.
    if req.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URI_BYTES {
        return Err(Reject::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            "uri_too_long",
            format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        ));
    }
    // `Transfer-Encoding: gzip, chunked`: hyper de-chunks it, and the coding under the chunks
    // would be lost on the way upstream (the header is hop-by-hop). RFC 9112 section 6.1: a
    // server answers 501 to a transfer coding it does not understand (docs/attack-cases.md
    // SMUG-07, envoyproxy/envoy#9316).
    for v in req.headers().get_all(header::TRANSFER_ENCODING) {
        let only_chunked = v.to_str().is_ok_and(|s| {
            s.split(',')
                .all(|t| t.trim().eq_ignore_ascii_case("chunked"))
        });
        if !only_chunked {
            return Err(Reject::new(
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                "unsupported_transfer_coding",
                "only the chunked transfer coding is supported",
            ));
        }
    }
    let host = request_host(req)?;
    if let (Some(sni), Some(h)) = (&conn.sni, &host) {
        if sni != h {
            return Err(Reject::misdirected());
        }
    }
    let path = normalize(req.uri().path())
        .map_err(|e| Reject::bad_request(e.reason(), e.to_string()))?
        .into_owned();
    // Routes match the path with segment parameters removed (`/admin;x=y/keys` is routed as
    // `/admin/keys`): Tomcat, Jetty and Spring drop them before routing, so a route's rules
    // must not be sidestepped with a `;` (docs/attack-cases.md PATH-13). The upstream still gets
    // the path as the client wrote it (normalized).
    let route_path = without_segment_params(&path);
    let route = snap
        .router
        .lookup(host.as_deref(), &route_path, req.method())
        .ok_or_else(Reject::not_found)?
        .clone();
    Ok(Routed { host, path, route })
}

/// `/a;x=1/b;y` -> `/a/b` (borrowed when there is no `;`).
fn without_segment_params(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(';') {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segs.iter().enumerate() {
        let bare = seg.split(';').next().unwrap_or("");
        // `/;x/admin` -> `/admin`: a segment that was only parameters is no segment (normalize
        // already merged real empty ones); a trailing slash stays.
        if bare.is_empty() && i + 1 < segs.len() {
            continue;
        }
        out.push('/');
        out.push_str(bare);
    }
    if out.is_empty() {
        out.push('/');
    }
    std::borrow::Cow::Owned(out)
}

/// The SPEC section 5 error body: `{"error", "error_description", "request_id"}`.
pub fn reject_response(rej: Reject, request_id: &HeaderValue) -> Response<GwBody> {
    let body = serde_json::json!({
        "error": rej.error,
        "error_description": rej.description,
        "request_id": String::from_utf8_lossy(request_id.as_bytes()),
    });
    let mut resp = Response::new(GwBody::full(body.to_string()));
    *resp.status_mut() = rej.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (k, v) in rej.headers {
        h.append(k, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::simple_host;

    /// The fast path agrees with the full parse wherever it answers, and leaves the rest to it.
    #[test]
    fn simple_hosts_agree_with_the_full_parse() {
        let cases = [
            "api.example.com",
            "api.example.com:8443",
            "api.example.com.",
            "api.example.com..:1",
            "127.0.0.1:8080",
            "a",
            "a:0",
            "a:65535",
            "a:65536",
            "a:",
            ":80",
            "a:b",
            "API.example.com",
            "[::1]:80",
            "x@y",
            "a b",
            "a:123456",
            ".",
            "",
        ];
        for c in cases {
            let full = c
                .parse::<http::uri::Authority>()
                .ok()
                .filter(|a| a.port().is_none() || a.port_u16().is_some())
                .map(|a| a.host().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty());
            if let Some(fast) = simple_host(c.as_bytes()) {
                assert_eq!(Some(fast.to_owned()), full, "{c}");
            }
        }
        assert_eq!(
            simple_host(b"api.example.com:8443"),
            Some("api.example.com")
        );
        assert_eq!(simple_host(b"a.:1"), Some("a"));
        for slow in [
            "API.example.com",
            "[::1]:80",
            "a:",
            ":80",
            "a:65536",
            "a b",
            ".",
        ] {
            assert_eq!(simple_host(slow.as_bytes()), None, "{slow}");
        }
    }
}
