//! `/admin/keys`: create, list, show, rotate, revoke and import API keys. Writes go to the store
//! first, then to the in-memory key ring, so an answered change is both durable and in force.

use super::api::{bad, blocking, err, json_response, not_found, parse, rotation_grace, ApiError};
use crate::body::GwBody;
use crate::clock::{parse_rfc3339, rfc3339};
use crate::gateway::Gateway;
use crate::keys::{self, Env, KeyRecord, KeyRow, Shape};
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

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

pub(super) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(super) fn check_scopes(scopes: &[String]) -> Result<(), ApiError> {
    for s in scopes {
        if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(format!("scope `{s}`: 1-128 characters, no spaces")));
        }
    }
    Ok(())
}

/// A key's `rate_limit` in the one rate grammar (`crate::values::parse_rate`, as in the config),
/// kept in its canonical form (`N/s`, `N/min`, `N/h`).
fn canonical_rate(r: Option<String>) -> Result<Option<String>, ApiError> {
    r.map(|r| {
        crate::values::parse_rate(&r)
            .map(|rate| rate.to_string())
            .map_err(|e| bad(format!("rate_limit: {e}")))
    })
    .transpose()
}

pub(super) fn check_text(field: &str, v: &Option<String>, max: usize) -> Result<(), ApiError> {
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

pub async fn create_key(
    gw: &Arc<Gateway>,
    body: &[u8],
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    let c: CreateKey = parse(body)?;
    check_text("name", &Some(c.name.clone()), 128)?;
    check_text("subject", &c.subject, 256)?;
    check_scopes(&c.scopes)?;
    let rate_limit = canonical_rate(c.rate_limit)?;
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
        rate_limit,
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

pub async fn rotate_key(
    gw: &Arc<Gateway>,
    id: &str,
    body: &[u8],
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    let grace = rotation_grace(body, None)?;
    let rec = gw.keys().get(id).ok_or_else(not_found)?;
    if rec.revoked_at().is_some() {
        return Err(err(StatusCode::CONFLICT, "conflict", "the key is revoked"));
    }
    let until = now + grace.as_secs() as i64;
    let secret = keys::generate_secret(rec.env);
    let mut row = rec.to_row();
    row.previous = keys::rotated_previous(&row.previous, row.current, until, now);
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

pub async fn revoke_key(
    gw: &Arc<Gateway>,
    id: &str,
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    let rec = gw.keys().get(id).ok_or_else(not_found)?;
    let done = || {
        let mut r = Response::new(GwBody::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r
    };
    // Revoking a revoked key changes nothing and is not an error (a retried request).
    if rec.revoked_at().is_some() {
        return Ok(done());
    }
    let store = gw.store();
    let sid = id.to_owned();
    blocking(move || store.revoke_key(&sid, now)).await?;
    let mut row = rec.to_row();
    row.revoked_at = Some(now);
    gw.keys().put(row);
    gw.admin_audit(actor, "revoke_key", id, "").await;
    Ok(done())
}

pub async fn import_keys(
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
        let rate_limit = canonical_rate(k.rate_limit)?;
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
            rate_limit,
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
