//! The admin API (SPEC section 4): its own listener (loopback by default), JSON, a bearer admin
//! token checked against its SHA-256 in constant time. Routing and the token check are here; the
//! endpoints are in [`keys`] and [`status`], their shared answers in [`api`].

pub mod api;
pub mod clients;
pub mod keys;
pub mod status;
pub mod users;

use crate::body::GwBody;
use crate::clock::{parse_rfc3339, rfc3339};
use crate::config::listeners::AdminCfg;
use crate::gateway::Gateway;
use api::{bad, blocking, err, error_response, json_response, not_found, parse, ApiError};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::Arc;

pub const OPENAPI: &str = include_str!("../../docs/openapi.json");
const MAX_BODY: usize = 64 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Revocation {
    jti: String,
    until: String,
}

/// One admin request. Never returns an error to hyper.
pub async fn handle(gw: Arc<Gateway>, req: Request<Incoming>) -> Response<GwBody> {
    let host = match req.headers().get(header::HOST) {
        Some(v) => Some(v.as_bytes()),
        None => req.uri().authority().map(|a| a.as_str().as_bytes()),
    };
    if !host_allowed(&gw.snapshot().admin, host) {
        return error_response(err(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            "the admin API answers only to IP addresses, localhost and the names in admin.hosts",
        ));
    }
    match route(gw, req).await {
        Ok(r) => r,
        Err(e) => error_response(e),
    }
}

/// Whether a request's Host may reach the admin API. A page on `attacker.test` that rebinds its
/// name to 127.0.0.1 makes the browser send `Host: attacker.test`: only names the operator listed
/// pass (docs/attack-cases.md ADM-04: envoyproxy/envoy#2769). No Host at all (HTTP/1.0 clients)
/// is not a browser.
pub fn host_allowed(cfg: &AdminCfg, host: Option<&[u8]>) -> bool {
    let Some(v) = host else { return true };
    let Some(a) = std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<http::uri::Authority>().ok())
    else {
        return false;
    };
    let h = a.host().trim_end_matches('.').to_ascii_lowercase();
    h.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
        || h == "localhost"
        || h.ends_with(".localhost")
        || cfg.hosts.iter().any(|n| n == "*" || *n == h)
}

fn authorized(gw: &Gateway, req: &Request<Incoming>) -> bool {
    let Some(want) = gw.admin_token_sha256() else {
        return false;
    };
    let mut auth = req.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(v), None) = (auth.next(), auth.next()) else {
        return false;
    };
    let Some(token) = crate::auth::request::credential(v, "Bearer") else {
        return false;
    };
    let got = crate::keys::hash_key(token);
    aws_lc_rs::constant_time::verify_slices_are_equal(&got, &want).is_ok()
}

async fn route(gw: Arc<Gateway>, req: Request<Incoming>) -> Result<Response<GwBody>, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.clone(), segs.as_slice()) {
        (Method::GET, ["healthz"]) => {
            return Ok(json_response(StatusCode::OK, &json!({"status": "ok"})))
        }
        (Method::GET, ["readyz"]) => return Ok(status::readyz(&gw)),
        (Method::GET, ["metrics"]) => return status::metrics(gw).await,
        (Method::GET, ["openapi.json"]) => {
            let mut r = Response::new(GwBody::full(OPENAPI));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(r);
        }
        (_, ["admin", ..]) => {}
        (_, ["healthz" | "readyz" | "metrics" | "openapi.json"]) => {
            return Err(err(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            ));
        }
        _ => return Err(err(StatusCode::NOT_FOUND, "not_found", "no such endpoint")),
    }
    if !authorized(&gw, &req) {
        return Err(err(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin token is required",
        ));
    }
    let body: Bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| bad("the request body is too large or could not be read"))?
        .to_bytes();
    let now = crate::clock::now_secs();
    // One admin credential: the trail records which kind of credential made the change.
    let actor = "admin-token";
    match (method, segs.as_slice()) {
        (Method::POST, ["admin", "keys"]) => keys::create_key(&gw, &body, now, actor).await,
        (Method::GET, ["admin", "keys"]) => {
            let list: Vec<Value> = gw.keys().all().iter().map(|r| keys::meta(r, now)).collect();
            Ok(json_response(StatusCode::OK, &json!({"keys": list})))
        }
        (Method::POST, ["admin", "keys", "import"]) => {
            keys::import_keys(&gw, &body, now, actor).await
        }
        (Method::GET, ["admin", "keys", id]) => {
            let rec = gw.keys().get(id).ok_or_else(not_found)?;
            Ok(json_response(StatusCode::OK, &keys::meta(&rec, now)))
        }
        (Method::DELETE, ["admin", "keys", id]) => keys::revoke_key(&gw, id, now, actor).await,
        (Method::POST, ["admin", "keys", id, "rotate"]) => {
            keys::rotate_key(&gw, id, &body, now, actor).await
        }
        (Method::POST, ["admin", "revocations"]) => {
            let r: Revocation = parse(&body)?;
            if r.jti.is_empty() || r.jti.len() > 256 {
                return Err(bad("jti: 1-256 characters"));
            }
            let until =
                parse_rfc3339(&r.until).ok_or_else(|| bad("until: not an RFC 3339 date-time"))?;
            if until <= now {
                return Err(bad(
                    "until is in the past: a token that has expired is refused already",
                ));
            }
            let store = gw.store();
            let (jti, u) = (r.jti.clone(), until);
            blocking(move || store.insert_revocation(&jti, u)).await?;
            gw.revocations().revoke(&r.jti, until as f64);
            gw.admin_audit(actor, "revoke_token", &r.jti, &format!("until {}", r.until))
                .await;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"jti": r.jti, "until": rfc3339(until, 0)}),
            ))
        }
        (Method::DELETE, ["admin", "revocations", jti]) => {
            let store = gw.store();
            let j = (*jti).to_owned();
            let lifted = blocking(move || store.lift_revocation(&j, now)).await?;
            gw.revocations().lift(jti, now as f64);
            if !lifted {
                return Err(err(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no revocation of this jti is in force",
                ));
            }
            gw.admin_audit(actor, "lift_revocation", jti, "").await;
            let mut r = Response::new(GwBody::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
        (Method::GET, ["admin", "revocations"]) => {
            let list: Vec<Value> = gw
                .revocations()
                .list()
                .into_iter()
                .map(|(j, u)| json!({"jti": j, "until": rfc3339(u as i64, 0)}))
                .collect();
            Ok(json_response(StatusCode::OK, &json!({"revocations": list})))
        }
        (Method::POST, ["admin", "reload"]) => match gw.reload() {
            Ok(()) => {
                gw.admin_audit(actor, "reload", "config", "ok").await;
                tracing::info!("config reloaded (admin API)");
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"status": "reloaded"}),
                ))
            }
            Err(e) => {
                let errors: Vec<String> = e.to_string().lines().map(str::to_owned).collect();
                tracing::error!(errors = %e, "reload failed; the previous config keeps serving");
                Err(ApiError {
                    status: StatusCode::BAD_REQUEST,
                    error: "invalid_config",
                    description: "the new config has errors; the previous config keeps serving"
                        .into(),
                    extra: Some(json!({"errors": errors})),
                })
            }
        },
        (Method::GET, ["admin", "config"]) => {
            Ok(json_response(StatusCode::OK, &gw.snapshot().effective))
        }
        (Method::POST, ["admin", "clients"]) => clients::create(&gw, &body, now, actor).await,
        (Method::GET, ["admin", "clients"]) => clients::list(&gw, now),
        (Method::GET, ["admin", "clients", id]) => clients::show(&gw, id, now),
        (Method::PATCH, ["admin", "clients", id]) => {
            clients::patch(&gw, id, &body, now, actor).await
        }
        (Method::DELETE, ["admin", "clients", id]) => clients::delete(&gw, id, now, actor).await,
        (Method::POST, ["admin", "clients", id, "rotate"]) => {
            clients::rotate_secret(&gw, id, &body, now, actor).await
        }
        (Method::POST, ["admin", "users"]) => users::create(&gw, &body, now, actor).await,
        (Method::GET, ["admin", "users"]) => users::list(&gw).await,
        (Method::GET, ["admin", "users", name]) => users::show(&gw, name).await,
        (Method::PATCH, ["admin", "users", name]) => {
            users::patch(&gw, name, &body, now, actor).await
        }
        (Method::DELETE, ["admin", "users", name]) => users::delete(&gw, name, actor).await,
        (Method::GET, ["admin", "oauth", "keys"]) => clients::list_keys(&gw, now),
        (Method::POST, ["admin", "oauth", "keys", "rotate"]) => {
            clients::rotate_keys(&gw, now, actor).await
        }
        (
            _,
            ["admin", "keys"]
            | ["admin", "keys", _]
            | ["admin", "keys", _, "rotate"]
            | ["admin", "revocations"]
            | ["admin", "revocations", _]
            | ["admin", "reload"]
            | ["admin", "config"]
            | ["admin", "clients"]
            | ["admin", "clients", _]
            | ["admin", "clients", _, "rotate"]
            | ["admin", "users"]
            | ["admin", "users", _]
            | ["admin", "oauth", "keys"]
            | ["admin", "oauth", "keys", "rotate"],
        ) => Err(err(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        )),
        _ => Err(err(StatusCode::NOT_FOUND, "not_found", "no such endpoint")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str =
        "listeners:\n  - name: a\n    bind: 127.0.0.1:0\nupstreams:\n  echo: { echo: true }\n";

    #[test]
    fn the_admin_api_answers_only_to_its_own_names() {
        let src = format!("{BASE}admin: {{ hosts: [Gateway-A.] }}\n");
        let snap =
            crate::config::load_str(Path::new("t.yaml"), &src, None, crate::config::Mode::Check)
                .unwrap_or_else(|e| panic!("{:?}", e.issues));
        let a = &snap.admin;
        for ok in [
            None,
            Some("127.0.0.1:9901"),
            Some("[::1]:9901"),
            Some("10.1.2.3"),
            Some("localhost:9901"),
            Some("x.localhost"),
            Some("gateway-a:9901"),
            Some("GATEWAY-A"),
        ] {
            assert!(host_allowed(a, ok.map(str::as_bytes)), "{ok:?}");
        }
        for bad in [
            "attacker.test",
            "attacker.test:9901",
            "gateway-b",
            "127.0.0.1.nip.io",
            "a b",
        ] {
            assert!(!host_allowed(a, Some(bad.as_bytes())), "{bad}");
        }
    }
}
