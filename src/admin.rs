//! The admin API (SPEC section 4): its own listener (loopback by default), JSON, a bearer admin
//! token checked against its SHA-256 in constant time. Writes go to the store first, then to the
//! in-memory key ring, so an answered change is both durable and in force.

use crate::audit::{parse_rfc3339, rfc3339};
use crate::body::GwBody;
use crate::keys::{self, Env, KeyRecord, KeyRow, Shape};
use crate::server::Gateway;
use crate::store::StoreError;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub const OPENAPI: &str = include_str!("../docs/openapi.json");
const MAX_BODY: usize = 64 << 20;

struct ApiError {
    status: StatusCode,
    error: &'static str,
    description: String,
    extra: Option<Value>,
}

fn err(status: StatusCode, error: &'static str, description: impl Into<String>) -> ApiError {
    ApiError {
        status,
        error,
        description: description.into(),
        extra: None,
    }
}

fn bad(description: impl Into<String>) -> ApiError {
    err(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn not_found() -> ApiError {
    err(StatusCode::NOT_FOUND, "not_found", "no such key")
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict(m) => err(StatusCode::CONFLICT, "conflict", m),
            StoreError::NotFound => not_found(),
            StoreError::Unavailable(m) => {
                tracing::error!(error = %m, "store unavailable");
                err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the key store is unavailable; retry later",
                )
            }
        }
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response<GwBody> {
    let mut r = Response::new(GwBody::full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error_response(e: ApiError) -> Response<GwBody> {
    let mut v = json!({"error": e.error, "error_description": e.description});
    if let (Some(extra), Some(obj)) = (e.extra, v.as_object_mut()) {
        if let Some(x) = extra.as_object() {
            for (k, val) in x {
                obj.insert(k.clone(), val.clone());
            }
        }
    }
    let mut r = json_response(e.status, &v);
    if e.status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"portcullis-admin\""),
        );
    }
    r
}

pub fn meta(rec: &KeyRecord, now: i64) -> Value {
    let r = &rec.to_row();
    let last = rec.last_used.load(std::sync::atomic::Ordering::Relaxed);
    let t = |v: Option<i64>| v.map(|s| rfc3339(s, 0));
    json!({
        "id": r.id,
        "prefix": r.prefix,
        "name": r.name,
        "subject": r.subject,
        "scopes": r.scopes,
        "env": r.env.as_str(),
        "rate_limit": r.rate_limit,
        "created_at": rfc3339(r.created_at, 0),
        "expires_at": t(r.expires_at),
        "last_used_at": t((last > 0).then_some(last)),
        "revoked_at": t(r.revoked_at),
        "previous_valid_until": t(r.previous.iter().map(|p| p.1).max().filter(|u| *u > now)),
        "status": rec.status(now),
    })
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_scopes(scopes: &[String]) -> Result<(), ApiError> {
    for s in scopes {
        if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(format!("scope `{s}`: 1-128 characters, no spaces")));
        }
    }
    Ok(())
}

/// The admin API's canonical rate form (what the OpenAPI document promises to echo back):
/// `N/s`, `N/min` or `N/h`, N from 1 to 999999999.
fn check_rate(r: &Option<String>) -> Result<(), ApiError> {
    if let Some(r) = r {
        let ok = r.split_once('/').is_some_and(|(n, u)| {
            (1..=9).contains(&n.len())
                && n.bytes().all(|b| b.is_ascii_digit())
                && !n.starts_with('0')
                && matches!(u, "s" | "min" | "h")
        });
        if !ok {
            return Err(bad(format!("rate_limit `{r}`: use N/s, N/min or N/h")));
        }
    }
    Ok(())
}

fn check_text(field: &str, v: &Option<String>, max: usize) -> Result<(), ApiError> {
    if let Some(v) = v {
        if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
            return Err(bad(format!(
                "{field}: 1-{max} characters, no control characters"
            )));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    subject: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    env: Option<String>,
    rate_limit: Option<String>,
    expires_at: Option<String>,
    expires_in: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rotate {
    grace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportKey {
    key: String,
    id: Option<String>,
    name: Option<String>,
    subject: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    rate_limit: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Revocation {
    jti: String,
    until: String,
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(ApiError::from)
}

/// One admin request. Never returns an error to hyper.
pub async fn handle(gw: Arc<Gateway>, req: Request<Incoming>) -> Response<GwBody> {
    let host = match req.headers().get(header::HOST) {
        Some(v) => Some(v.as_bytes()),
        None => req.uri().authority().map(|a| a.as_str().as_bytes()),
    };
    if !gw.snapshot().admin.host_allowed(host) {
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

fn authorized(gw: &Gateway, req: &Request<Incoming>) -> bool {
    let Some(want) = gw.admin_token_sha256() else {
        return false;
    };
    let mut auth = req.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(v), None) = (auth.next(), auth.next()) else {
        return false;
    };
    let Some(token) = v.to_str().ok().and_then(|s| {
        let (scheme, rest) = s.split_at_checked(7)?;
        (scheme.eq_ignore_ascii_case("bearer ")).then(|| rest.trim())
    }) else {
        return false;
    };
    let got = keys::hash_key(token);
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
        (Method::GET, ["readyz"]) => {
            let (ready, doc) = gw.readiness();
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            return Ok(json_response(status, &doc));
        }
        (Method::GET, ["metrics"]) => {
            // Off the serving threads: the active-keys gauge walks every key (a million in the
            // largest stores), which would stall the requests sharing this worker. One render
            // at a time: concurrent scrapes wait here instead of filling the blocking pool.
            static RENDER: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
            let _one = RENDER.acquire().await;
            let text = {
                let gw = gw.clone();
                tokio::task::spawn_blocking(move || gw.render_metrics())
                    .await
                    .map_err(|_| {
                        err(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            "metrics could not be rendered",
                        )
                    })?
            };
            let mut r = Response::new(GwBody::full(text));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return Ok(r);
        }
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
    let now = keys::now_unix();
    // One admin credential: the trail records which kind of credential made the change.
    let actor = "admin-token";
    match (method, segs.as_slice()) {
        (Method::POST, ["admin", "keys"]) => create_key(&gw, &body, now, actor).await,
        (Method::GET, ["admin", "keys"]) => {
            let list: Vec<Value> = gw.keys().all().iter().map(|r| meta(r, now)).collect();
            Ok(json_response(StatusCode::OK, &json!({"keys": list})))
        }
        (Method::POST, ["admin", "keys", "import"]) => import_keys(&gw, &body, now, actor).await,
        (Method::GET, ["admin", "keys", id]) => {
            let rec = gw.keys().get(id).ok_or_else(not_found)?;
            Ok(json_response(StatusCode::OK, &meta(&rec, now)))
        }
        (Method::DELETE, ["admin", "keys", id]) => revoke_key(&gw, id, now, actor).await,
        (Method::POST, ["admin", "keys", id, "rotate"]) => {
            rotate_key(&gw, id, &body, now, actor).await
        }
        (Method::POST, ["admin", "revocations"]) => {
            let r: Revocation = parse(&body)?;
            if r.jti.is_empty() || r.jti.len() > 256 {
                return Err(bad("jti: 1-256 characters"));
            }
            let until =
                parse_rfc3339(&r.until).ok_or_else(|| bad("until: not an RFC 3339 date-time"))?;
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
            Ok(json_response(StatusCode::OK, &gw.redacted_config()))
        }
        (
            _,
            ["admin", "keys"]
            | ["admin", "keys", _]
            | ["admin", "keys", _, "rotate"]
            | ["admin", "revocations"]
            | ["admin", "reload"]
            | ["admin", "config"],
        ) => Err(err(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        )),
        _ => Err(err(StatusCode::NOT_FOUND, "not_found", "no such endpoint")),
    }
}

async fn create_key(
    gw: &Arc<Gateway>,
    body: &[u8],
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    let c: CreateKey = parse(body)?;
    check_text("name", &Some(c.name.clone()), 128)?;
    check_text("subject", &c.subject, 256)?;
    check_scopes(&c.scopes)?;
    check_rate(&c.rate_limit)?;
    let env = match c.env.as_deref() {
        None => Env::Live,
        Some(e) => Env::parse(e).ok_or_else(|| bad("env: live or test"))?,
    };
    let expires_at = match (&c.expires_at, &c.expires_in) {
        (Some(_), Some(_)) => return Err(bad("give expires_at or expires_in, not both")),
        (Some(t), None) => {
            Some(parse_rfc3339(t).ok_or_else(|| bad("expires_at: not an RFC 3339 date-time"))?)
        }
        (None, Some(d)) => {
            Some(now + crate::values::parse_duration(d).map_err(bad)?.as_secs() as i64)
        }
        (None, None) => None,
    };
    if expires_at.is_some_and(|e| e <= now) {
        return Err(bad("the expiry is in the past"));
    }
    let secret = keys::generate_secret(env);
    let row = KeyRow {
        id: keys::generate_id(),
        prefix: keys::prefix_of(&secret),
        name: c.name,
        subject: c.subject,
        scopes: c.scopes,
        env,
        rate_limit: c.rate_limit,
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
        current: keys::hash_key(&secret),
        previous: Vec::new(),
    };
    let store = gw.store();
    let r2 = row.clone();
    blocking(move || store.insert_keys(std::slice::from_ref(&r2))).await?;
    let id = row.id.clone();
    gw.keys().put(row);
    gw.admin_audit(actor, "create_key", &id, "").await;
    let rec = gw.keys().get(&id).ok_or_else(not_found)?;
    let mut v = meta(&rec, now);
    v["key"] = Value::String(secret);
    Ok(json_response(StatusCode::CREATED, &v))
}

async fn rotate_key(
    gw: &Arc<Gateway>,
    id: &str,
    body: &[u8],
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    let r: Rotate = if body.iter().all(u8::is_ascii_whitespace) {
        Rotate::default()
    } else {
        parse(body)?
    };
    let grace = crate::values::parse_duration(r.grace.as_deref().unwrap_or("24h"))
        .map_err(|e| bad(format!("grace: {e}")))?;
    let rec = gw.keys().get(id).ok_or_else(not_found)?;
    if rec.revoked_at().is_some() {
        return Err(err(StatusCode::CONFLICT, "conflict", "the key is revoked"));
    }
    let until = now + grace.as_secs() as i64;
    let secret = keys::generate_secret(rec.env);
    let mut row = rec.to_row();
    // Every earlier secret ends at the latest when this rotation's grace ends.
    let mut previous: Vec<(keys::Hash, i64)> = row
        .previous
        .iter()
        .map(|(h, u)| (*h, (*u).min(until)))
        .chain(std::iter::once((row.current, until)))
        .filter(|(_, u)| *u > now)
        .collect();
    previous.sort_by_key(|p| p.1);
    row.previous = previous;
    row.current = keys::hash_key(&secret);
    row.prefix = keys::prefix_of(&secret);
    let store = gw.store();
    let (sid, cur, prev) = (row.id.clone(), row.current, row.previous.clone());
    blocking(move || store.rotate_key(&sid, &cur, &prev)).await?;
    gw.keys().put(row);
    gw.admin_audit(
        actor,
        "rotate_key",
        id,
        &format!("grace {}s", grace.as_secs()),
    )
    .await;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "key": secret, "previous_valid_until": rfc3339(until.max(now), 0)}),
    ))
}

async fn revoke_key(
    gw: &Arc<Gateway>,
    id: &str,
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    let rec = gw.keys().get(id).ok_or_else(not_found)?;
    if rec.revoked_at().is_some() {
        return Err(not_found());
    }
    let store = gw.store();
    let sid = id.to_owned();
    blocking(move || store.revoke_key(&sid, now)).await?;
    let mut row = rec.to_row();
    row.revoked_at = Some(now);
    gw.keys().put(row);
    gw.admin_audit(actor, "revoke_key", id, "").await;
    let mut r = Response::new(GwBody::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

async fn import_keys(
    gw: &Arc<Gateway>,
    body: &[u8],
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    let items: Vec<ImportKey> = parse(body)?;
    if items.is_empty() {
        return Err(bad("nothing to import"));
    }
    let mut rows = Vec::with_capacity(items.len());
    let mut seen_ids = std::collections::HashSet::new();
    let mut seen_hashes = std::collections::HashSet::new();
    for (i, k) in items.into_iter().enumerate() {
        if k.key.len() < 16
            || k.key.len() > 256
            || !k.key.bytes().all(|b| (0x21..=0x7e).contains(&b))
        {
            return Err(bad(format!(
                "[{i}].key: 16-256 printable characters without spaces"
            )));
        }
        let env = match keys::shape(&k.key) {
            Shape::BadChecksum => {
                return Err(bad(format!(
                    "[{i}].key looks like a Portcullis key but its checksum is wrong"
                )));
            }
            Shape::Ours(env) => env,
            Shape::Foreign => Env::Live,
        };
        let id = match k.id {
            Some(id) if valid_id(&id) => id,
            Some(id) => return Err(bad(format!("[{i}].id `{id}`: 1-64 of A-Za-z0-9._-"))),
            None => keys::generate_id(),
        };
        check_text(&format!("[{i}].name"), &k.name, 128)?;
        check_text(&format!("[{i}].subject"), &k.subject, 256)?;
        check_scopes(&k.scopes)?;
        check_rate(&k.rate_limit)?;
        let h = keys::hash_key(&k.key);
        if gw.keys().contains_hash(&h) || !seen_hashes.insert(h) {
            return Err(err(
                StatusCode::CONFLICT,
                "conflict",
                format!("[{i}]: this key is already imported (nothing was imported)"),
            ));
        }
        if gw.keys().get(&id).is_some() || !seen_ids.insert(id.clone()) {
            return Err(err(
                StatusCode::CONFLICT,
                "conflict",
                format!("[{i}]: key id `{id}` already exists (nothing was imported)"),
            ));
        }
        rows.push(KeyRow {
            prefix: keys::prefix_of(&k.key),
            name: k.name.unwrap_or_else(|| id.clone()),
            id,
            subject: k.subject,
            scopes: k.scopes,
            env,
            rate_limit: k.rate_limit,
            created_at: now,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            current: h,
            previous: Vec::new(),
        });
    }
    let n = rows.len();
    let store = gw.store();
    let rows = Arc::new(rows);
    let r2 = rows.clone();
    blocking(move || store.insert_keys(&r2)).await?;
    for r in rows.iter() {
        gw.keys().put(r.clone());
    }
    gw.admin_audit(actor, "import_keys", "-", &format!("{n} keys"))
        .await;
    Ok(json_response(StatusCode::CREATED, &json!({"imported": n})))
}
