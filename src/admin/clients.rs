//! `/admin/clients` (the authorization server's clients: create, list, show, edit, rotate,
//! delete) and `/admin/oauth/keys` (its signing keys: list, rotate). Writes go to the store
//! first, then to memory, so an answered change is durable and in force; in cluster mode the
//! change feed brings it to every other replica.

use super::api::{bad, blocking, err, json_response, parse, rotation_grace, ApiError};
use super::keys::{check_scopes, check_text, valid_id};
use crate::body::GwBody;
use crate::clock::rfc3339;
use crate::gateway::Gateway;
use crate::keys::hash_key;
use crate::oauth::clients::{
    generate_id, generate_secret, ClientAuth, ClientRecord, ClientRow, Grant,
};
use crate::oauth_server::lifecycle::{rotate, Rotated};
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn meta(c: &ClientRecord, now: i64) -> Value {
    let r = &c.row;
    let t = |v: Option<i64>| v.map(|s| rfc3339(s, 0));
    json!({
        "client_id": r.id,
        "name": r.name,
        "grants": r.grants.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "scopes": r.scopes,
        "audiences": r.audiences,
        "redirect_uris": r.redirect_uris,
        "auth_method": r.auth.as_str(),
        "cert_sha256": r.cert_sha256.map(|h| format!("sha256:{}", crate::digest::hex_lower(&h))),
        "token_ttl": r.token_ttl,
        "first_party": r.first_party,
        "created_at": rfc3339(r.created_at, 0),
        "deleted_at": t(r.deleted_at),
        "previous_secret_valid_until": t(r.previous.iter().map(|p| p.1).max().filter(|u| *u > now)),
        "status": r.status(),
    })
}

fn not_found() -> ApiError {
    err(StatusCode::NOT_FOUND, "not_found", "no such client")
}

pub(super) fn no_server(gw: &Gateway) -> Result<(), ApiError> {
    if gw.snapshot().oauth.is_none() {
        return Err(err(
            StatusCode::NOT_FOUND,
            "not_found",
            "oauth_server is not configured",
        ));
    }
    Ok(())
}

/// An RFC 8707 resource / audience: an absolute URI without a fragment, or at least printable
/// text without spaces or quotes (tokens carry it in `aud`).
fn check_audiences(a: &[String]) -> Result<(), ApiError> {
    for v in a {
        let ok = !v.is_empty()
            && v.len() <= 512
            && !v.contains('#')
            && v.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if !ok {
            return Err(bad(format!(
                "audience `{v}`: 1-512 printable characters, no spaces, quotes or fragment"
            )));
        }
    }
    Ok(())
}

/// RFC 6749 scope tokens: `%x21 / %x23-5B / %x5D-7E`.
pub(super) fn check_scope_tokens(scopes: &[String]) -> Result<(), ApiError> {
    check_scopes(scopes)?;
    for s in scopes {
        if s.bytes()
            .any(|b| !(0x21..=0x7e).contains(&b) || b == b'"' || b == b'\\')
        {
            return Err(bad(format!(
                "scope `{s}`: printable ASCII without spaces, quotes or backslashes (RFC 6749 3.3)"
            )));
        }
    }
    Ok(())
}

fn parse_grants(g: &[String]) -> Result<Vec<Grant>, ApiError> {
    let mut out = Vec::new();
    for s in g {
        let grant = Grant::parse(s).ok_or_else(|| {
            bad(format!(
                "grant `{s}`: client_credentials, authorization_code or refresh_token"
            ))
        })?;
        if !out.contains(&grant) {
            out.push(grant);
        }
    }
    Ok(out)
}

fn parse_ttl(t: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(t) = t else { return Ok(None) };
    let d = crate::values::parse_duration(t).map_err(|e| bad(format!("token_ttl: {e}")))?;
    if d.as_secs() < 1 || d.as_secs() > 86_400 {
        return Err(bad("token_ttl: between 1s and 24h"));
    }
    Ok(Some(d.as_secs() as i64))
}

fn parse_cert(c: Option<&str>) -> Result<Option<[u8; 32]>, ApiError> {
    let Some(c) = c else { return Ok(None) };
    let text = if c.starts_with("sha256:") {
        c.to_ascii_lowercase()
    } else {
        format!("sha256:{}", c.to_ascii_lowercase().replace(':', ""))
    };
    crate::digest::parse_sha256(&text)
        .map(Some)
        .ok_or_else(|| bad("cert_sha256: the certificate's SHA-256, as 64 hex digits"))
}

/// What a registration must hold together.
fn check_row(r: &ClientRow) -> Result<(), ApiError> {
    check_text("name", &Some(r.name.clone()), 128)?;
    check_scope_tokens(&r.scopes)?;
    check_audiences(&r.audiences)?;
    for u in &r.redirect_uris {
        check_text("redirect_uris", &Some(u.clone()), 2048)?;
    }
    if r.grants.is_empty() {
        return Err(bad("grants: at least one"));
    }
    // Until the authorization code flow is built, what only it would use is refused rather
    // than stored and silently unused.
    if let Some(g) = r.grants.iter().find(|g| **g != Grant::ClientCredentials) {
        return Err(bad(format!(
            "grants: `{}` is not available yet; this server issues client_credentials tokens",
            g.as_str()
        )));
    }
    if !r.redirect_uris.is_empty() || r.first_party {
        return Err(bad(
            "redirect_uris and first_party belong to the authorization code flow, which this server does not have yet",
        ));
    }
    if r.grants.contains(&Grant::ClientCredentials) {
        if r.auth == ClientAuth::None {
            return Err(bad(
                "a public client (auth_method none) cannot use client_credentials",
            ));
        }
        if r.audiences.is_empty() {
            return Err(bad(
                "audiences: a client_credentials client needs at least one (its tokens' aud)",
            ));
        }
    }
    match (r.auth, r.cert_sha256) {
        (ClientAuth::TlsClientAuth, None) => Err(bad(
            "cert_sha256: required with auth_method tls_client_auth",
        )),
        (ClientAuth::TlsClientAuth, Some(_)) | (_, None) => Ok(()),
        (_, Some(_)) => Err(bad("cert_sha256: only with auth_method tls_client_auth")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    /// For moving clients from another server: the id it had.
    client_id: Option<String>,
    /// For moving clients from another server: the secret it had (at least 16 characters).
    client_secret: Option<String>,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    auth_method: Option<String>,
    cert_sha256: Option<String>,
    token_ttl: Option<String>,
    #[serde(default)]
    first_party: bool,
}

pub async fn create(
    gw: &Arc<Gateway>,
    body: &[u8],
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    let c: Create = parse(body)?;
    let auth = match c.auth_method.as_deref() {
        None => ClientAuth::ClientSecretBasic,
        Some(m) => ClientAuth::parse(m).ok_or_else(|| {
            bad("auth_method: client_secret_basic, client_secret_post, tls_client_auth or none")
        })?,
    };
    let id = match c.client_id {
        Some(id) if valid_id(&id) => id,
        Some(_) => return Err(bad("client_id: 1-64 of A-Z a-z 0-9 . _ -")),
        None => generate_id(),
    };
    let secret = match (auth.has_secret(), c.client_secret) {
        (true, Some(s)) if s.len() >= 16 && s.len() <= 512 && !s.chars().any(char::is_control) => s,
        (true, Some(_)) => return Err(bad("client_secret: 16-512 characters")),
        (true, None) => generate_secret(),
        (false, Some(_)) => {
            return Err(bad(
                "client_secret: only for client_secret_basic and client_secret_post clients",
            ))
        }
        (false, None) => String::new(),
    };
    let grants = if c.grants.is_empty() {
        vec![Grant::ClientCredentials]
    } else {
        parse_grants(&c.grants)?
    };
    let row = ClientRow {
        grants,
        scopes: c.scopes,
        audiences: c.audiences,
        redirect_uris: c.redirect_uris,
        auth,
        cert_sha256: parse_cert(c.cert_sha256.as_deref())?,
        token_ttl: parse_ttl(c.token_ttl.as_deref())?,
        first_party: c.first_party,
        created_at: now,
        current: auth.has_secret().then(|| hash_key(&secret)),
        ..ClientRow::new(id, c.name)
    };
    check_row(&row)?;
    let store = gw.store();
    let r2 = row.clone();
    blocking(move || store.insert_client(&r2)).await?;
    let id = row.id.clone();
    gw.oauth().clients.put(row);
    gw.admin_audit(actor, "create_client", &id, "").await;
    let rec = gw.oauth().clients.get(&id).ok_or_else(not_found)?;
    let mut v = meta(&rec, now);
    if auth.has_secret() {
        v["client_secret"] = Value::String(secret);
    }
    Ok(json_response(StatusCode::CREATED, &v))
}

pub fn list(gw: &Gateway, now: i64) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    let all: Vec<Value> = gw
        .oauth()
        .clients
        .all()
        .iter()
        .map(|c| meta(c, now))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({"clients": all})))
}

pub fn show(gw: &Gateway, id: &str, now: i64) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    let c = gw.oauth().clients.get(id).ok_or_else(not_found)?;
    Ok(json_response(StatusCode::OK, &meta(&c, now)))
}

/// A change to store and put in force: the row as it becomes.
async fn save(gw: &Arc<Gateway>, row: ClientRow) -> Result<(), ApiError> {
    let store = gw.store();
    let r2 = row.clone();
    blocking(move || store.update_client(&r2)).await?;
    gw.oauth().clients.put(row);
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    name: Option<String>,
    grants: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    audiences: Option<Vec<String>>,
    redirect_uris: Option<Vec<String>>,
    cert_sha256: Option<String>,
    /// A duration, or `null` for the server's `access_token_ttl`.
    #[serde(default, with = "double_option")]
    token_ttl: Option<Option<String>>,
    first_party: Option<bool>,
}

/// `null` (Some(None)) apart from absent (None).
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

pub async fn patch(
    gw: &Arc<Gateway>,
    id: &str,
    body: &[u8],
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    let p: Patch = parse(body)?;
    let cur = gw.oauth().clients.get(id).ok_or_else(not_found)?;
    if cur.row.deleted_at.is_some() {
        return Err(not_found());
    }
    let mut row = cur.row.clone();
    if let Some(n) = p.name {
        row.name = n;
    }
    if let Some(g) = p.grants {
        row.grants = parse_grants(&g)?;
    }
    if let Some(s) = p.scopes {
        row.scopes = s;
    }
    if let Some(a) = p.audiences {
        row.audiences = a;
    }
    if let Some(u) = p.redirect_uris {
        row.redirect_uris = u;
    }
    if p.cert_sha256.is_some() {
        row.cert_sha256 = parse_cert(p.cert_sha256.as_deref())?;
    }
    if let Some(t) = p.token_ttl {
        row.token_ttl = parse_ttl(t.as_deref())?;
    }
    if let Some(f) = p.first_party {
        row.first_party = f;
    }
    check_row(&row)?;
    save(gw, row).await?;
    gw.admin_audit(actor, "update_client", id, "").await;
    show(gw, id, now)
}

/// A new secret; the old one keeps working for `grace` (default 24h). Tokens issued before the
/// rotation stop passing when the grace ends (at once with `grace: 0`, the answer to a leaked
/// secret).
pub async fn rotate_secret(
    gw: &Arc<Gateway>,
    id: &str,
    body: &[u8],
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    let grace = rotation_grace(body, Some(std::time::Duration::from_secs(30 * 86_400)))?;
    let cur = gw.oauth().clients.get(id).ok_or_else(not_found)?;
    if cur.row.deleted_at.is_some() {
        return Err(not_found());
    }
    let Some(old) = cur.row.current.filter(|_| cur.row.auth.has_secret()) else {
        return Err(bad("this client has no secret (tls_client_auth or public)"));
    };
    let until = now + grace.as_secs() as i64;
    let secret = generate_secret();
    let mut row = cur.row.clone();
    row.current = Some(hash_key(&secret));
    row.previous = crate::keys::rotated_previous(&row.previous, old, until, now);
    // after any earlier rotation's second: tokens issued since that one are covered too
    row.revoke_before = Some(row.revoke_before.map_or(now, |b| now.max(b + 1)));
    row.revoke_from = Some(until);
    save(gw, row).await?;
    gw.admin_audit(
        actor,
        "rotate_client_secret",
        id,
        &format!("grace {}s", grace.as_secs()),
    )
    .await;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "client_id": id,
            "client_secret": secret,
            "previous_valid_until": (grace.as_secs() > 0).then(|| rfc3339(until, 0)),
        }),
    ))
}

/// Deletes a client: its secrets stop working and every token issued to it is refused, on every
/// replica. It stays listed (`status: deleted`) so its tokens stay refused after a restart.
pub async fn delete(
    gw: &Arc<Gateway>,
    id: &str,
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    let cur = gw.oauth().clients.get(id).ok_or_else(not_found)?;
    if cur.row.deleted_at.is_none() {
        let mut row = cur.row.clone();
        row.deleted_at = Some(now);
        row.current = None;
        row.previous.clear();
        save(gw, row).await?;
        gw.admin_audit(actor, "delete_client", id, "").await;
    }
    let mut r = Response::new(GwBody::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

pub fn list_keys(gw: &Gateway, now: i64) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    let snap = gw.snapshot();
    let cfg = snap.oauth.as_ref().ok_or_else(not_found)?;
    let max_ttl = gw.oauth().clients.max_ttl(cfg.ttl_secs());
    let t = gw.oauth().keys.timeline();
    let keys: Vec<Value> = t
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            json!({
                "kid": k.kid,
                "alg": k.alg.as_str(),
                "state": t.state(i, now, max_ttl).as_str(),
                "created_at": rfc3339(k.created_at, 0),
                "activates_at": rfc3339(k.activates_at, 0),
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({"keys": keys})))
}

pub async fn rotate_keys(
    gw: &Arc<Gateway>,
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    let snap = gw.snapshot();
    let store = gw.store();
    let (snap2, state) = (snap.clone(), gw.oauth());
    let done = blocking(move || {
        let cfg = snap2
            .oauth
            .as_ref()
            .ok_or(crate::store::StoreError::NotFound)?;
        rotate(cfg, &*store, &state, now, true)
    })
    .await?;
    match done {
        Some(Rotated::Added(row)) => {
            gw.admin_audit(actor, "rotate_signing_key", &row.kid, "")
                .await;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({
                    "kid": row.kid,
                    "alg": row.alg.as_str(),
                    "activates_at": rfc3339(row.activates_at, 0),
                }),
            ))
        }
        _ => Err(err(
            StatusCode::CONFLICT,
            "conflict",
            "a newer key is already published and waits to sign; rotate after it activates",
        )),
    }
}
