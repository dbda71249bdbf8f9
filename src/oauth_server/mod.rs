//! The built-in authorization server's endpoints (SPEC section 7), on `oauth_server.listener`,
//! ahead of its routes: RFC 8414 metadata (also at the OpenID path), the JWKS, the token endpoint
//! (client credentials), RFC 7009 revocation and RFC 7662 introspection. Every other path under
//! `/oauth2/` is the server's too (404), so no route can shadow a future endpoint.
//!
//! [`serve`] answers one request; [`crate::proxy`] logs it like any other, with the client as
//! the identity and the event (`token_issued`, `token_revoked`, ...) in the audit line.

pub mod client_auth;
mod endpoints;
pub mod form;
pub mod lifecycle;
pub mod pages;

use crate::auth::identity::{no_scopes, AuthMethod, Identity};
use crate::body::GwBody;
use crate::config::oauth::OauthServerCfg;
use crate::config::Snapshot;
use crate::conn::ConnInfo;
use crate::error::{Reason, Reject};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::Arc;

/// The endpoints, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Metadata,
    Jwks,
    Token,
    Revoke,
    Introspect,
    /// Another path under `/oauth2/`.
    Unknown,
}

/// Most a form body may hold.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The endpoint a request path names (normalized as routing normalizes it, so no spelling of
/// `/oauth2/token` reaches a route instead).
pub fn endpoint(path: &str) -> Option<Endpoint> {
    let p = crate::normalize::normalize(path).ok()?;
    let p = crate::route::without_segment_params(&p);
    Some(match &*p {
        "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration" => {
            Endpoint::Metadata
        }
        "/oauth2/jwks" => Endpoint::Jwks,
        "/oauth2/token" => Endpoint::Token,
        "/oauth2/revoke" => Endpoint::Revoke,
        "/oauth2/introspect" => Endpoint::Introspect,
        p if p == "/oauth2" || p.starts_with("/oauth2/") => Endpoint::Unknown,
        _ => return None,
    })
}

/// One endpoint request's outcome, for the logging phase.
pub struct Answer {
    pub result: Result<Response<GwBody>, Reject>,
    /// The authenticated client (or the one that failed to authenticate).
    pub client: Option<Arc<Identity>>,
    /// Whether the client authenticated.
    pub authenticated: bool,
    pub event: Option<&'static str>,
    /// The `jti` of the token issued, revoked or introspected.
    pub token_id: Option<String>,
}

impl Answer {
    /// A refusal before the endpoint ran.
    pub fn refused(e: Reject) -> Answer {
        Answer::plain(Err(e))
    }

    fn plain(result: Result<Response<GwBody>, Reject>) -> Answer {
        Answer {
            result,
            client: None,
            authenticated: false,
            event: None,
            token_id: None,
        }
    }
}

/// The identity a client has in the log and audit line.
fn client_identity(id: &str, method: &'static str) -> Arc<Identity> {
    Arc::new(Identity {
        method: AuthMethod::OauthClient,
        authenticator: Some(Arc::from(method)),
        subject: Some(Arc::from(id)),
        scopes: no_scopes(),
        key_id: None,
        issuer: None,
        extra_headers: Vec::new(),
        own_limit: None,
    })
}

/// A JSON answer with the headers RFC 6749 5.1 asks of token responses.
fn json(status: StatusCode, body: String) -> Response<GwBody> {
    let mut r = Response::new(GwBody::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn method_not_allowed(allow: &'static str) -> Reject {
    Reject::new(
        Reason::OauthMethodNotAllowed,
        "this endpoint does not answer that method",
    )
    .with_header(header::ALLOW, HeaderValue::from_static(allow))
}

/// Answers one request to an endpoint of the server.
pub async fn serve(
    snap: &Snapshot,
    cfg: &OauthServerCfg,
    conn: &ConnInfo,
    req: Request<Incoming>,
    ep: Endpoint,
    client_ip: IpAddr,
    store: Arc<dyn crate::store::Store>,
) -> Answer {
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    match ep {
        Endpoint::Unknown => Answer::plain(Err(Reject::new(
            Reason::NoRoute,
            "no such endpoint of the authorization server",
        ))),
        Endpoint::Metadata if read_only => Answer::plain(Ok(endpoints::metadata(cfg, snap))),
        Endpoint::Jwks if read_only => Answer::plain(Ok(endpoints::jwks(cfg, snap))),
        Endpoint::Metadata | Endpoint::Jwks => Answer::plain(Err(method_not_allowed("GET, HEAD"))),
        _ if *req.method() != Method::POST => Answer::plain(Err(method_not_allowed("POST"))),
        _ => {
            // Per address, before a secret is hashed or a signature checked.
            if let Err(r) = cfg.pre_auth.check(&format!("oauth|{client_ip}")) {
                return Answer::plain(Err(Reject {
                    reason: Reason::OauthRateLimited,
                    ..r
                }));
            }
            let (parts, body) = req.into_parts();
            let form = match read_form(&parts.headers, body, snap.limits.body_timeout).await {
                Ok(f) => f,
                Err(e) => return Answer::plain(Err(e)),
            };
            let state = &snap.shared.oauth;
            let now = crate::clock::now_secs();
            let token_endpoint = ep == Endpoint::Token;
            let auth = client_auth::authenticate(
                cfg,
                state,
                conn,
                &parts.headers,
                &form,
                client_ip,
                token_endpoint,
                now,
            );
            let client = match auth {
                Ok(c) => c,
                Err(refused) => {
                    return Answer {
                        result: Err(refused.reject),
                        client: refused
                            .client_id
                            .map(|id| client_identity(&id, refused.why)),
                        authenticated: false,
                        event: Some("client_auth_failed"),
                        token_id: None,
                    }
                }
            };
            let identity = client_identity(&client.client.id, client.method.as_str());
            let (result, event, token_id) = match ep {
                Endpoint::Token => endpoints::token(cfg, snap, &client, &form, now),
                Endpoint::Revoke => endpoints::revoke(cfg, snap, store, &client, &form, now).await,
                _ => endpoints::introspect(cfg, snap, &client, &form, now),
            };
            Answer {
                result,
                client: Some(identity),
                authenticated: true,
                event,
                token_id,
            }
        }
    }
}

/// The form body: the right content type, at most 16 KiB, within `body_timeout`.
async fn read_form(
    headers: &http::HeaderMap,
    body: Incoming,
    timeout: std::time::Duration,
) -> Result<form::Form, Reject> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(client_auth::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM_BYTES as u64) {
        return Err(client_auth::invalid_request("the body is larger than 16 KiB").closing());
    }
    let collected = tokio::time::timeout(
        timeout,
        http_body_util::Limited::new(body, MAX_FORM_BYTES).collect(),
    )
    .await;
    let bytes = match collected {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => {
            return Err(
                client_auth::invalid_request("the body is larger than 16 KiB or broke off")
                    .closing(),
            )
        }
        Err(_) => {
            return Err(
                Reject::new(Reason::BodyTimeout, "the request body stopped arriving").closing(),
            )
        }
    };
    form::Form::parse(&bytes).map_err(client_auth::invalid_request)
}
