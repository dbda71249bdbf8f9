//! The local users of the authorization server and their failed sign-ins in SQLite (the
//! `oauth_users` and `oauth_login_failures` tables of [`super::sqlite`]).

use super::{parse_scopes, sqlite_err as unavailable, StoreError, StoreResult};
use crate::oauth::users::{Failures, Throttle, UserRow};
use rusqlite::{params, Connection, OptionalExtension};

const USER_COLUMNS: &str = "username, password_hash, scopes, created_at, updated_at";

fn scopes_json(s: &[String]) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "[]".into())
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        username: r.get(0)?,
        password_hash: r.get(1)?,
        scopes: parse_scopes(&r.get::<_, String>(2)?),
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

pub fn list_users(c: &Connection) -> StoreResult<Vec<UserRow>> {
    let mut st = c
        .prepare(&format!(
            "SELECT {USER_COLUMNS} FROM oauth_users ORDER BY username"
        ))
        .map_err(unavailable)?;
    let rows = st
        .query_map([], user_row)
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    Ok(rows)
}

pub fn get_user(c: &Connection, username: &str) -> StoreResult<Option<UserRow>> {
    c.query_row(
        &format!("SELECT {USER_COLUMNS} FROM oauth_users WHERE username = ?1"),
        params![username],
        user_row,
    )
    .optional()
    .map_err(unavailable)
}

pub fn insert_user(c: &Connection, row: &UserRow) -> StoreResult<()> {
    c.execute(
        &format!("INSERT INTO oauth_users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
        params![
            row.username,
            row.password_hash,
            scopes_json(&row.scopes),
            row.created_at,
            row.updated_at
        ],
    )
    .map_err(|e| match unavailable(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("user `{}` already exists", row.username))
        }
        other => other,
    })?;
    Ok(())
}

pub fn update_user(c: &Connection, row: &UserRow) -> StoreResult<()> {
    let n = c
        .execute(
            "UPDATE oauth_users SET password_hash = ?2, scopes = ?3, updated_at = ?4 WHERE username = ?1",
            params![
                row.username,
                row.password_hash,
                scopes_json(&row.scopes),
                row.updated_at
            ],
        )
        .map_err(unavailable)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub fn delete_user(c: &Connection, username: &str) -> StoreResult<bool> {
    let n = c
        .execute(
            "DELETE FROM oauth_users WHERE username = ?1",
            params![username],
        )
        .map_err(unavailable)?;
    Ok(n > 0)
}

pub fn read_failures(c: &Connection, username: &str) -> StoreResult<Option<Failures>> {
    c.query_row(
        "SELECT count, last_at, locked_until FROM oauth_login_failures WHERE username = ?1",
        params![username],
        |r| {
            Ok(Failures {
                count: r.get(0)?,
                last_at: r.get(1)?,
                locked_until: r.get(2)?,
            })
        },
    )
    .optional()
    .map_err(unavailable)
}

pub fn record_login_failure(
    conn: &mut Connection,
    username: &str,
    now: i64,
    throttle: &Throttle,
) -> StoreResult<Failures> {
    // IMMEDIATE: the read and the write under one lock, for every process on the file
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    let f = throttle.failed(read_failures(&tx, username)?, now);
    tx.execute(
        "INSERT INTO oauth_login_failures (username, count, last_at, locked_until) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(username) DO UPDATE SET count = excluded.count, last_at = excluded.last_at, \
         locked_until = excluded.locked_until",
        params![username, f.count, f.last_at, f.locked_until],
    )
    .map_err(unavailable)?;
    tx.commit().map_err(unavailable)?;
    Ok(f)
}

pub fn clear_login_failures(c: &Connection, username: &str) -> StoreResult<()> {
    c.execute(
        "DELETE FROM oauth_login_failures WHERE username = ?1",
        params![username],
    )
    .map_err(unavailable)?;
    Ok(())
}

pub fn purge_login_failures(c: &Connection, quiet_since: i64) -> StoreResult<usize> {
    c.execute(
        "DELETE FROM oauth_login_failures WHERE max(last_at, locked_until) < ?1",
        params![quiet_since],
    )
    .map_err(unavailable)
}
