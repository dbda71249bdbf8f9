//! One request, start to end: resolve its route ([`route::resolve`]) -> run the route's auth chain
//! ([`auth::chain::evaluate`]) -> rewrite it at the trust boundary ([`headers`]) and send it
//! ([`Upstream::send`]) -> log it ([`telemetry::log_request`]). Never returns an error to hyper
//! (that would abort the connection): every refusal is a response.
//!
//! [`route::resolve`]: crate::route::resolve
//! [`auth::chain::evaluate`]: crate::auth::chain::evaluate
//! [`headers`]: crate::headers
//! [`Upstream::send`]: crate::upstream::Upstream::send
//! [`telemetry::log_request`]: crate::telemetry::log_request

use crate::auth::chain::evaluate;
use crate::auth::identity::Identity;
use crate::auth::request::AuthRequest;
use crate::body::GwBody;
use crate::config::Snapshot;
use crate::conn::{canonical_ip, ConnInfo};
use crate::error::{Reason, Reject};
use crate::gateway::Gateway;
use crate::headers::{self, ForwardCtx, X_REQUEST_ID};
use crate::oauth::signing::Signer;
use crate::oauth_server;
use crate::route::{resolve, Route, Routed};
use crate::telemetry::{log_request, Decision, RequestLog};
use crate::upstream::{Exchange, Outbound};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// What the request path learned, for the logging phase.
#[derive(Default)]
struct Outcome {
    route: Option<Arc<str>>,
    /// Set when the chain allowed the request: a refusal after it (a body over the limit, an
    /// upstream failure) is not an auth decision.
    allowed: bool,
    /// Who the chain proved the request is, allowed or not.
    identity: Option<Arc<Identity>>,
    /// The authenticator that decided.
    authenticator: Option<Arc<str>>,
    /// From sending the request upstream to its response head.
    upstream_us: Option<u64>,
    /// What an authorization server endpoint did (`token_issued`, ...), and the token's `jti`.
    event: Option<&'static str>,
    token_id: Option<String>,
    response_headers: Vec<(header::HeaderName, HeaderValue)>,
}

pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<GwBody> {
    let started = Instant::now();
    let snap = gw.snapshot();
    let request_id = gw.request_id(req.headers().get(X_REQUEST_ID));
    let method = req.method().clone();
    let uri = req.uri().clone(); // reference-counted: the path is only read for the log lines
    let client_ip = snap.trusted_proxies.client_ip(&conn, req.headers());
    let version = req.version();
    let mut out = Outcome::default();
    // The authorization server's endpoints come before the routes of its listener.
    let oauth = snap
        .oauth
        .as_ref()
        .filter(|o| *o.listener == *conn.listener)
        .and_then(|o| oauth_server::endpoint(uri.path()).map(|ep| (o.clone(), ep)));
    let jwks = (uri.path() == crate::assertion::JWKS_PATH)
        .then(|| assertion_jwks(&snap))
        .flatten();
    let result = match (oauth, jwks) {
        (_, Some(r)) => {
            out.allowed = true;
            Ok(r)
        }
        (None, None) => {
            route_and_forward(&snap, &conn, req, &request_id, client_ip, &mut out).await
        }
        (Some((cfg, ep)), None) => {
            static ROUTE: std::sync::LazyLock<Arc<str>> =
                std::sync::LazyLock::new(|| Arc::from("oauth_server"));
            out.route = Some(ROUTE.clone());
            let answer = match check_head_size(&req, snap.limits.max_header_bytes) {
                Err(e) => oauth_server::Answer::refused(e),
                Ok(()) => {
                    let store = gw.store();
                    oauth_server::serve(&snap, &cfg, &conn, req, ep, client_ip, store).await
                }
            };
            out.allowed = answer.result.is_ok();
            out.authenticator = answer.client.as_ref().and_then(|c| c.authenticator.clone());
            out.identity = answer.client;
            out.event = answer.event;
            out.token_id = answer.token_id;
            answer.result
        }
    };
    let (mut resp, refused, close) = match result {
        Ok(r) => (r, None, false),
        Err(rej) => {
            let (reason, close) = (rej.reason, rej.close);
            (reject_response(rej, &request_id), Some(reason), close)
        }
    };
    let h = resp.headers_mut();
    h.insert(X_REQUEST_ID, request_id.clone());
    if close && version < Version::HTTP_2 {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    for (k, v) in out.response_headers {
        h.insert(k, v);
    }
    log_request(
        &gw.metrics,
        &snap.audit,
        &RequestLog {
            request_id: &request_id,
            listener: &conn.listener,
            route: out.route.as_ref(),
            method: method.as_str(),
            path: uri.path(),
            client_ip,
            identity: out.identity.as_deref(),
            authenticator: out.authenticator.as_ref(),
            decision: match refused {
                Some(reason) if !out.allowed => Decision::Deny(reason),
                failure => Decision::Allow { failure },
            },
            status: resp.status().as_u16(),
            latency_us: started.elapsed().as_micros() as u64,
            upstream_us: out.upstream_us,
            event: out.event,
            token_id: out.token_id.as_deref(),
        },
    );
    resp
}

async fn route_and_forward(
    snap: &Snapshot,
    conn: &Arc<ConnInfo>,
    req: Request<Incoming>,
    request_id: &HeaderValue,
    client_ip: IpAddr,
    out: &mut Outcome,
) -> Result<Response<GwBody>, Reject> {
    check_head_size(&req, snap.limits.max_header_bytes)?;
    let routed = resolve(&snap.router, conn, &req)?;
    let route = &routed.route;
    out.route = Some(route.name.clone());
    if let Some(cors) = &route.cors {
        if routed.preflight {
            // answered here, before the chain: a preflight carries no credentials
            let headers = cors.preflight(req.headers())?;
            out.allowed = true;
            let mut resp = Response::new(GwBody::empty());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            *resp.headers_mut() = headers;
            return Ok(resp);
        }
        // on every answer of this route, the upstream's or a refusal
        out.response_headers.extend(cors.actual(req.headers()));
    }
    conn.check_client_cert()?;
    if let Some(pre) = &route.pre_auth_rate_limit {
        // Per address, before any signature check: a flood of bad tokens costs no crypto.
        pre.check(&format!("ip|{client_ip}"))?;
    }
    let auth_req = AuthRequest {
        headers: req.headers(),
        query: req.uri().query(),
        conn,
        client_ip,
    };
    let verdict = evaluate(&route.auth, &auth_req, None).await;
    out.response_headers.extend(verdict.response_headers);
    out.authenticator = verdict.authenticator;
    let identity = match verdict.result {
        Ok(id) => id,
        Err(e) => {
            out.identity = verdict.refused_identity;
            return Err(e);
        }
    };
    out.allowed = true;
    out.identity = Some(identity.clone());
    let (outbound, route) = outbound(snap, conn, req, routed, request_id, client_ip, &identity)?;
    let exchange = Exchange {
        route: &route.name,
        max_body: route.max_body_bytes,
        body_timeout: snap.limits.body_timeout,
        idle_timeout: snap.limits.idle_timeout,
        conn,
    };
    let sent = Instant::now();
    let mut resp = route.upstream.send(outbound, &exchange).await;
    out.upstream_us = Some(sent.elapsed().as_micros() as u64);
    if let (Some(_), Ok(r)) = (&route.cors, resp.as_mut()) {
        // the gateway owns this route's CORS: the upstream's own headers could contradict it;
        // the answer depends on Origin (with `*` too: a request without one gets no header)
        crate::cors::strip_upstream(r.headers_mut());
        r.headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

/// The signer of identity assertions and the issuer they name: the authorization server's
/// active key, or the gateway's own.
fn assertion_signer(snap: &Snapshot, now: i64) -> Option<(Arc<Signer>, &str)> {
    match &snap.oauth {
        Some(o) => Some((snap.shared.oauth.keys.signer(now)?, o.issuer.as_str())),
        None => Some((
            snap.shared.own_keys.keys().signer(now)?,
            crate::assertion::OWN_ISSUER,
        )),
    }
}

fn assertion(
    snap: &Snapshot,
    t: &crate::assertion::IdentityToken,
    identity: &Identity,
) -> Option<HeaderValue> {
    let now = crate::clock::now_secs();
    let (signer, issuer) = assertion_signer(snap, now)?;
    t.value(identity, &signer, issuer, now)
}

/// `/.well-known/portcullis/jwks.json` on every listener, when a route signs assertions: the
/// keys they are signed with.
fn assertion_jwks(snap: &Snapshot) -> Option<Response<GwBody>> {
    if !snap.router.routes().any(|r| r.identity_token.is_some()) {
        return None;
    }
    let now = crate::clock::now_secs();
    let body = match &snap.oauth {
        Some(o) => {
            let max_ttl = snap.shared.oauth.clients.max_ttl(o.ttl_secs());
            snap.shared.oauth.keys.timeline().jwks(now, max_ttl)
        }
        None => snap
            .shared
            .own_keys
            .keys()
            .timeline()
            .jwks(now, i64::MAX / 4),
    };
    let mut r = Response::new(GwBody::full(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Some(r)
}

/// Most header fields a request may carry: hyper's HTTP/1 parser refuses more (its own bare 431,
/// which [`crate::listener`] logs and counts); HTTP/2 is held to the same here.
pub const MAX_HEADER_FIELDS: usize = 100;

/// `limits.max_header_bytes` (and [`MAX_HEADER_FIELDS`]), checked here so the 431 is a full
/// answer: JSON body, request id, audit line, metric. The head is measured as HTTP/1.1 writes
/// it: the request line, and each field's name, value, `: ` and CRLF. The parsers' own buffers
/// are larger ([`head_buffer`]) and refuse only heads far past the limit.
fn check_head_size<B>(req: &Request<B>, max: usize) -> Result<(), Reject> {
    // a long target is 414, whatever else the head holds
    crate::route::check_target_length(req)?;
    let line = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len())
        + 12;
    let h = req.headers();
    let size = h
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4);
    if size > max || h.len() > MAX_HEADER_FIELDS {
        return Err(Reject::new(
            Reason::HeaderTooLarge,
            format!(
                "the request head is larger than {max} bytes or has more than {MAX_HEADER_FIELDS} header fields"
            ),
        ));
    }
    Ok(())
}

/// The HTTP/1 read buffer and the HTTP/2 header list limit for `max_header_bytes`: twice it and
/// 8 KiB more, so [`check_head_size`] answers every head up to there.
pub fn head_buffer(max_header_bytes: usize) -> usize {
    max_header_bytes * 2 + 8192
}

/// The allowed request as the upstream gets it: a body over the route's limit refused by its
/// `Content-Length`, the headers rewritten at the trust boundary, credential query parameters
/// removed, and a protocol upgrade taken over when the client asked for one.
fn outbound(
    snap: &Snapshot,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    routed: Routed,
    request_id: &HeaderValue,
    client_ip: IpAddr,
    identity: &Identity,
) -> Result<(Outbound, Arc<Route>), Reject> {
    let Routed {
        host, path, route, ..
    } = routed;
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Reject::new(Reason::BadContentLength, "invalid Content-Length"))?;
        if len > route.max_body_bytes {
            return Err(Reject::payload_too_large(route.max_body_bytes));
        }
    }
    let upgrade = if req.version() == Version::HTTP_11 && headers::wants_upgrade(req.headers()) {
        req.headers().get(header::UPGRADE).cloned()
    } else {
        None
    };
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let peer_ip = canonical_ip(conn.peer.ip());
    let ctx = ForwardCtx {
        peer_ip,
        peer_value: &conn.peer_value,
        peer_trusted: snap.trusted_proxies.contains(peer_ip),
        client_ip,
        proto: if conn.tls { "https" } else { "http" },
        host: host.as_deref(),
        request_id,
        identity,
        client_cert: conn.client_cert.as_ref(),
        strip_credentials: route.strip_credentials,
        forward_client_cert: route.forward_client_cert,
        credential_cookies: route.auth.credential_sources().0,
        upgrade,
    };
    let query = req.uri().query().map(str::to_owned);
    let (mut parts, body) = req.into_parts();
    headers::upstream_request_headers(&mut parts.headers, &ctx);
    route.host.apply(&mut parts.headers, host.as_deref());
    if let Some(t) = &route.identity_token {
        let value = assertion(snap, t, identity).ok_or_else(|| {
            Reject::new(
                Reason::AssertionUnavailable,
                "the identity assertion could not be signed",
            )
        })?;
        parts.headers.insert(t.header.clone(), value);
    }
    let query = headers::strip_params(query, &route.strip_params);
    let path = route.rewrite.apply(&path).unwrap_or(path);
    let outbound = Outbound {
        parts,
        body,
        path,
        query,
        upgrade: client_upgrade,
    };
    Ok((outbound, route))
}

/// The SPEC section 5 error body: `{"error", "error_description", "request_id"}`.
pub fn reject_response(rej: Reject, request_id: &HeaderValue) -> Response<GwBody> {
    let body = serde_json::json!({
        "error": rej.reason.error(),
        "error_description": rej.description,
        "request_id": String::from_utf8_lossy(request_id.as_bytes()),
    });
    let mut resp = Response::new(GwBody::full(body.to_string()));
    *resp.status_mut() = rej.status();
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
