//! `/admin/users`: the authorization server's local users (create, list, show, change password
//! or scopes, delete). Passwords are hashed with Argon2id on the blocking pool and never leave
//! the gateway; answers carry the username, scopes and times only.

use super::api::{bad, blocking, err, json_response, parse, ApiError};
use super::clients::{check_scope_tokens, no_server};
use crate::body::GwBody;
use crate::clock::rfc3339;
use crate::gateway::Gateway;
use crate::oauth::users::{check_password, hash_password, valid_username, UserRow};
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

fn meta(u: &UserRow) -> Value {
    json!({
        "username": u.username,
        "scopes": u.scopes,
        "created_at": rfc3339(u.created_at, 0),
        "updated_at": rfc3339(u.updated_at, 0),
    })
}

fn not_found() -> ApiError {
    err(StatusCode::NOT_FOUND, "not_found", "no such user")
}

/// Hashes off the async workers (Argon2id is made to be slow and memory-hard).
async fn hashed(password: String) -> Result<String, ApiError> {
    check_password(&password).map_err(bad)?;
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    username: String,
    password: String,
    #[serde(default)]
    scopes: Vec<String>,
}

pub async fn create(
    gw: &Arc<Gateway>,
    body: &[u8],
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    let c: Create = parse(body)?;
    if !valid_username(&c.username) {
        return Err(bad(
            "username: 1-64 of A-Z a-z 0-9 . _ @ -, starting with a letter or digit",
        ));
    }
    check_scope_tokens(&c.scopes)?;
    let row = UserRow {
        username: c.username,
        password_hash: hashed(c.password).await?,
        scopes: c.scopes,
        created_at: now,
        updated_at: now,
    };
    let store = gw.store();
    let r2 = row.clone();
    blocking(move || store.insert_user(&r2)).await?;
    gw.admin_audit(actor, "create_user", &row.username, "")
        .await;
    Ok(json_response(StatusCode::CREATED, &meta(&row)))
}

pub async fn list(gw: &Arc<Gateway>) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    let store = gw.store();
    let users = blocking(move || store.list_users()).await?;
    let all: Vec<Value> = users.iter().map(meta).collect();
    Ok(json_response(StatusCode::OK, &json!({ "users": all })))
}

async fn get(gw: &Arc<Gateway>, username: &str) -> Result<UserRow, ApiError> {
    let store = gw.store();
    let name = username.to_owned();
    blocking(move || store.get_user(&name))
        .await?
        .ok_or_else(not_found)
}

pub async fn show(gw: &Arc<Gateway>, username: &str) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    Ok(json_response(
        StatusCode::OK,
        &meta(&get(gw, username).await?),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    password: Option<String>,
    scopes: Option<Vec<String>>,
}

pub async fn patch(
    gw: &Arc<Gateway>,
    username: &str,
    body: &[u8],
    now: i64,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    let p: Patch = parse(body)?;
    if p.password.is_none() && p.scopes.is_none() {
        return Err(bad("give `password`, `scopes` or both"));
    }
    if let Some(s) = &p.scopes {
        check_scope_tokens(s)?;
    }
    let mut row = get(gw, username).await?;
    let mut changed = Vec::new();
    if let Some(pw) = p.password {
        row.password_hash = hashed(pw).await?;
        changed.push("password");
    }
    if let Some(s) = p.scopes {
        row.scopes = s;
        changed.push("scopes");
    }
    row.updated_at = now;
    let store = gw.store();
    let r2 = row.clone();
    blocking(move || store.update_user(&r2)).await?;
    gw.admin_audit(actor, "update_user", &row.username, &changed.join(","))
        .await;
    Ok(json_response(StatusCode::OK, &meta(&row)))
}

pub async fn delete(
    gw: &Arc<Gateway>,
    username: &str,
    actor: &str,
) -> Result<Response<GwBody>, ApiError> {
    no_server(gw)?;
    let store = gw.store();
    let name = username.to_owned();
    if !blocking(move || store.delete_user(&name)).await? {
        return Err(not_found());
    }
    gw.admin_audit(actor, "delete_user", username, "").await;
    let mut r = Response::new(GwBody::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}
