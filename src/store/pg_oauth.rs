//! The authorization server's tables in PostgreSQL (cluster mode): clients with their secrets,
//! signing keys, and local users (read where needed, not through the change feed). Each row carries the change number of its last write, so the change feed
//! ([`super::pg_feed::Feed`]) brings every replica each new client, edit, rotation, deletion and
//! signing key, in order.

use super::{
    attach_secrets, client_row, parse_scopes, pg_err as db_err, to_hash, ClientText, StoreError,
    StoreResult,
};
use crate::oauth::clients::ClientRow;
use crate::oauth::signing::{SigAlg, SigningKeyRow};
use crate::oauth::users::{Failures, Throttle, UserRow};
use postgres::GenericClient;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS portcullis_oauth_clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    grants TEXT NOT NULL,
    scopes TEXT NOT NULL,
    audiences TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    auth TEXT NOT NULL,
    cert_sha256 BYTEA,
    token_ttl BIGINT,
    first_party BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT,
    revoke_before BIGINT,
    revoke_from BIGINT,
    seq BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS portcullis_oauth_clients_by_seq ON portcullis_oauth_clients(seq);
CREATE TABLE IF NOT EXISTS portcullis_oauth_client_secrets (
    hash BYTEA PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES portcullis_oauth_clients(id),
    valid_until BIGINT
);
CREATE INDEX IF NOT EXISTS portcullis_oauth_client_secrets_by_client
    ON portcullis_oauth_client_secrets(client_id);
CREATE TABLE IF NOT EXISTS portcullis_oauth_users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS portcullis_oauth_login_failures (
    username TEXT PRIMARY KEY,
    count BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    locked_until BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS portcullis_oauth_signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    private_sealed BYTEA NOT NULL,
    public_jwk TEXT NOT NULL,
    seq BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS portcullis_oauth_signing_keys_by_seq ON portcullis_oauth_signing_keys(seq);
";

const CLIENT_COLUMNS: &str =
    "id, name, grants, scopes, audiences, redirect_uris, auth, cert_sha256, \
     token_ttl, first_party, created_at, deleted_at, revoke_before, revoke_from";

/// Clients changed after `after` (every client for `i64::MIN`) with their secrets, and the
/// highest change number seen.
pub fn clients_since<C: GenericClient>(
    c: &mut C,
    after: i64,
) -> StoreResult<(Vec<ClientRow>, i64)> {
    let rows = c
        .query(
            &format!(
                "SELECT {CLIENT_COLUMNS}, seq FROM portcullis_oauth_clients WHERE seq > $1 \
                 ORDER BY created_at, id"
            ),
            &[&after],
        )
        .map_err(db_err)?;
    let mut max_seq = after;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let seq: i64 = r.try_get(14).map_err(db_err)?;
        max_seq = max_seq.max(seq);
        let g = |i: usize| -> StoreResult<String> { r.try_get(i).map_err(db_err) };
        let t = |i: usize| -> StoreResult<Option<i64>> { r.try_get(i).map_err(db_err) };
        out.push(client_row(
            g(0)?,
            g(1)?,
            [g(2)?, g(3)?, g(4)?, g(5)?, g(6)?],
            r.try_get(7).map_err(db_err)?,
            t(8)?,
            r.try_get(9).map_err(db_err)?,
            [t(10)?, t(11)?, t(12)?, t(13)?],
        ));
    }
    if out.is_empty() {
        return Ok((out, max_seq));
    }
    let ids: Vec<&str> = out.iter().map(|r| r.id.as_str()).collect();
    let secrets = c
        .query(
            "SELECT client_id, hash, valid_until FROM portcullis_oauth_client_secrets \
             WHERE client_id = ANY($1)",
            &[&ids],
        )
        .map_err(db_err)?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<_, String>(0).map_err(db_err)?,
                to_hash(r.try_get(1).map_err(db_err)?),
                r.try_get::<_, Option<i64>>(2).map_err(db_err)?,
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    attach_secrets(&mut out, secrets);
    Ok((out, max_seq))
}

/// Signing keys added after `after`, and the highest change number seen.
pub fn signing_keys_since<C: GenericClient>(
    c: &mut C,
    after: i64,
) -> StoreResult<(Vec<SigningKeyRow>, i64)> {
    let rows = c
        .query(
            "SELECT kid, alg, created_at, activates_at, private_sealed, public_jwk, seq \
             FROM portcullis_oauth_signing_keys WHERE seq > $1 ORDER BY activates_at, kid",
            &[&after],
        )
        .map_err(db_err)?;
    let mut max_seq = after;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let seq: i64 = r.try_get(6).map_err(db_err)?;
        max_seq = max_seq.max(seq);
        let alg: String = r.try_get(1).map_err(db_err)?;
        out.push(SigningKeyRow {
            kid: r.try_get(0).map_err(db_err)?,
            alg: SigAlg::parse(&alg).unwrap_or(SigAlg::ES256),
            created_at: r.try_get(2).map_err(db_err)?,
            activates_at: r.try_get(3).map_err(db_err)?,
            private_sealed: r.try_get(4).map_err(db_err)?,
            public_jwk: r.try_get(5).map_err(db_err)?,
        });
    }
    Ok((out, max_seq))
}

fn put_secrets(tx: &mut postgres::Transaction<'_>, r: &ClientRow) -> StoreResult<()> {
    let st = tx
        .prepare(
            "INSERT INTO portcullis_oauth_client_secrets (hash, client_id, valid_until) \
             VALUES ($1, $2, $3)",
        )
        .map_err(db_err)?;
    let conflict = |e| match db_err(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("a secret of client `{}` is already stored", r.id))
        }
        other => other,
    };
    if let Some(h) = &r.current {
        tx.execute(&st, &[&h.as_slice(), &r.id, &Option::<i64>::None])
            .map_err(conflict)?;
    }
    for (h, until) in &r.previous {
        tx.execute(&st, &[&h.as_slice(), &r.id, until])
            .map_err(conflict)?;
    }
    Ok(())
}

/// Runs `sql` with the client's columns as `$1..$14`.
fn exec_client(tx: &mut postgres::Transaction<'_>, sql: &str, r: &ClientRow) -> StoreResult<u64> {
    let t = ClientText::of(r);
    let cert = r.cert_sha256.map(|h| h.to_vec());
    tx.execute(
        sql,
        &[
            &r.id,
            &r.name,
            &t.grants,
            &t.scopes,
            &t.audiences,
            &t.redirect_uris,
            &t.auth,
            &cert,
            &r.token_ttl,
            &r.first_party,
            &r.created_at,
            &r.deleted_at,
            &r.revoke_before,
            &r.revoke_from,
        ],
    )
    .map_err(db_err)
}

pub fn insert_client(tx: &mut postgres::Transaction<'_>, r: &ClientRow) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO portcullis_oauth_clients ({CLIENT_COLUMNS}, seq) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, nextval('portcullis_change_seq'))"
    );
    exec_client(tx, &sql, r).map_err(|e| match e {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("client id `{}` already exists", r.id))
        }
        other => other,
    })?;
    put_secrets(tx, r)
}

pub fn update_client(tx: &mut postgres::Transaction<'_>, r: &ClientRow) -> StoreResult<()> {
    let n = exec_client(
        tx,
        "UPDATE portcullis_oauth_clients SET name = $2, grants = $3, scopes = $4, audiences = $5, \
         redirect_uris = $6, auth = $7, cert_sha256 = $8, token_ttl = $9, first_party = $10, \
         created_at = $11, deleted_at = $12, revoke_before = $13, revoke_from = $14, \
         seq = nextval('portcullis_change_seq') WHERE id = $1",
        r,
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    tx.execute(
        "DELETE FROM portcullis_oauth_client_secrets WHERE client_id = $1",
        &[&r.id],
    )
    .map_err(db_err)?;
    put_secrets(tx, r)
}

/// Adds `row` unless a key activates after `unless_activating_after`; called under the write
/// lock, so two replicas rotating at once add one key.
pub fn insert_signing_key(
    tx: &mut postgres::Transaction<'_>,
    row: &SigningKeyRow,
    unless_activating_after: i64,
) -> StoreResult<bool> {
    let later: i64 = tx
        .query_one(
            "SELECT count(*) FROM portcullis_oauth_signing_keys WHERE activates_at > $1",
            &[&unless_activating_after],
        )
        .map_err(db_err)?
        .try_get(0)
        .map_err(db_err)?;
    if later > 0 {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO portcullis_oauth_signing_keys \
         (kid, alg, created_at, activates_at, private_sealed, public_jwk, seq) \
         VALUES ($1, $2, $3, $4, $5, $6, nextval('portcullis_change_seq'))",
        &[
            &row.kid,
            &row.alg.as_str(),
            &row.created_at,
            &row.activates_at,
            &row.private_sealed,
            &row.public_jwk,
        ],
    )
    .map_err(db_err)?;
    Ok(true)
}

const USER_COLUMNS: &str = "username, password_hash, scopes, created_at, updated_at";

fn user_row(r: &postgres::Row) -> StoreResult<UserRow> {
    Ok(UserRow {
        username: r.try_get(0).map_err(db_err)?,
        password_hash: r.try_get(1).map_err(db_err)?,
        scopes: parse_scopes(r.try_get(2).map_err(db_err)?),
        created_at: r.try_get(3).map_err(db_err)?,
        updated_at: r.try_get(4).map_err(db_err)?,
    })
}

pub fn list_users(c: &mut impl GenericClient) -> StoreResult<Vec<UserRow>> {
    c.query(
        &format!("SELECT {USER_COLUMNS} FROM portcullis_oauth_users ORDER BY username"),
        &[],
    )
    .map_err(db_err)?
    .iter()
    .map(user_row)
    .collect()
}

pub fn get_user(c: &mut impl GenericClient, username: &str) -> StoreResult<Option<UserRow>> {
    c.query_opt(
        &format!("SELECT {USER_COLUMNS} FROM portcullis_oauth_users WHERE username = $1"),
        &[&username],
    )
    .map_err(db_err)?
    .as_ref()
    .map(user_row)
    .transpose()
}

pub fn insert_user(c: &mut impl GenericClient, r: &UserRow) -> StoreResult<()> {
    let scopes = serde_json::to_string(&r.scopes).unwrap_or_else(|_| "[]".into());
    c.execute(
        &format!("INSERT INTO portcullis_oauth_users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
        &[
            &r.username,
            &r.password_hash,
            &scopes,
            &r.created_at,
            &r.updated_at,
        ],
    )
    .map_err(|e| match db_err(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("user `{}` already exists", r.username))
        }
        other => other,
    })?;
    Ok(())
}

pub fn update_user(c: &mut impl GenericClient, r: &UserRow) -> StoreResult<()> {
    let scopes = serde_json::to_string(&r.scopes).unwrap_or_else(|_| "[]".into());
    let n = c
        .execute(
            "UPDATE portcullis_oauth_users SET password_hash = $2, scopes = $3, updated_at = $4 \
             WHERE username = $1",
            &[&r.username, &r.password_hash, &scopes, &r.updated_at],
        )
        .map_err(db_err)?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub fn delete_user(c: &mut impl GenericClient, username: &str) -> StoreResult<bool> {
    let n = c
        .execute(
            "DELETE FROM portcullis_oauth_users WHERE username = $1",
            &[&username],
        )
        .map_err(db_err)?;
    Ok(n > 0)
}

fn read_failures(
    c: &mut impl GenericClient,
    username: &str,
    lock: &str,
) -> StoreResult<Option<Failures>> {
    let row = c
        .query_opt(
            &format!(
                "SELECT count, last_at, locked_until FROM portcullis_oauth_login_failures \
                 WHERE username = $1{lock}"
            ),
            &[&username],
        )
        .map_err(db_err)?;
    row.map(|r| {
        Ok(Failures {
            count: u32::try_from(r.try_get::<_, i64>(0).map_err(db_err)?).unwrap_or(u32::MAX),
            last_at: r.try_get(1).map_err(db_err)?,
            locked_until: r.try_get(2).map_err(db_err)?,
        })
    })
    .transpose()
    // the placeholder row of a first failure (count 0) is no record yet
    .map(|f| f.filter(|f: &Failures| f.count > 0))
}

pub fn login_failures(c: &mut impl GenericClient, username: &str) -> StoreResult<Option<Failures>> {
    read_failures(c, username, "")
}

/// One transaction: a placeholder row so there is a row to lock even for a first failure, the
/// row locked (`FOR UPDATE`: a failure on another replica waits for this one), then the update.
pub fn record_login_failure(
    c: &mut postgres::Client,
    username: &str,
    now: i64,
    throttle: &Throttle,
) -> StoreResult<Failures> {
    let mut tx = c.transaction().map_err(db_err)?;
    tx.execute(
        "INSERT INTO portcullis_oauth_login_failures (username, count, last_at, locked_until) \
         VALUES ($1, 0, 0, 0) ON CONFLICT (username) DO NOTHING",
        &[&username],
    )
    .map_err(db_err)?;
    let prev = read_failures(&mut tx, username, " FOR UPDATE")?;
    let f = throttle.failed(prev, now);
    tx.execute(
        "UPDATE portcullis_oauth_login_failures SET count = $2, last_at = $3, locked_until = $4 \
         WHERE username = $1",
        &[&username, &i64::from(f.count), &f.last_at, &f.locked_until],
    )
    .map_err(db_err)?;
    tx.commit().map_err(db_err)?;
    Ok(f)
}

pub fn clear_login_failures(c: &mut impl GenericClient, username: &str) -> StoreResult<()> {
    c.execute(
        "DELETE FROM portcullis_oauth_login_failures WHERE username = $1",
        &[&username],
    )
    .map_err(db_err)?;
    Ok(())
}

pub fn purge_login_failures(c: &mut impl GenericClient, quiet_since: i64) -> StoreResult<usize> {
    c.execute(
        "DELETE FROM portcullis_oauth_login_failures WHERE GREATEST(last_at, locked_until) < $1",
        &[&quiet_since],
    )
    .map(|n| n as usize)
    .map_err(db_err)
}
