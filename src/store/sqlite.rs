//! The embedded store: SQLite (bundled), WAL, `synchronous=FULL` (an answered admin write
//! survives a crash), created on first start.

use super::sqlite_err as unavailable;
use super::sqlite_users;
use super::{
    attach_secrets, client_row, parse_scopes, to_hash, ClientText, KeyGrouper, Store, StoreError,
    StoreResult,
};
use crate::keys::{Env, Hash, KeyRow};
use crate::oauth::clients::ClientRow;
use crate::oauth::signing::{SigAlg, SigningKeyRow};
use crate::oauth::users::{Failures, Throttle, UserRow};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug)]
pub struct Sqlite {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    prefix TEXT NOT NULL,
    name TEXT NOT NULL,
    subject TEXT,
    scopes TEXT NOT NULL,
    env TEXT NOT NULL,
    rate_limit TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    last_used_at INTEGER
);
CREATE TABLE IF NOT EXISTS key_secrets (
    hash BLOB PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES keys(id),
    valid_until INTEGER          -- NULL: the current secret
);
CREATE INDEX IF NOT EXISTS key_secrets_by_key ON key_secrets(key_id);
CREATE TABLE IF NOT EXISTS revocations (jti TEXT PRIMARY KEY, until INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS admin_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS oauth_clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    grants TEXT NOT NULL,
    scopes TEXT NOT NULL,
    audiences TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    auth TEXT NOT NULL,
    cert_sha256 BLOB,
    token_ttl INTEGER,
    first_party INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER,
    revoke_before INTEGER,
    revoke_from INTEGER
);
CREATE TABLE IF NOT EXISTS oauth_client_secrets (
    hash BLOB PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES oauth_clients(id),
    valid_until INTEGER          -- NULL: the current secret
);
CREATE INDEX IF NOT EXISTS oauth_client_secrets_by_client ON oauth_client_secrets(client_id);
CREATE TABLE IF NOT EXISTS oauth_users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_login_failures (
    username TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    locked_until INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS oauth_signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    private_sealed BLOB NOT NULL,
    public_jwk TEXT NOT NULL
);
";

const CLIENT_COLUMNS: &str =
    "id, name, grants, scopes, audiences, redirect_uris, auth, cert_sha256, \
     token_ttl, first_party, created_at, deleted_at, revoke_before, revoke_from";

/// The client's columns in `CLIENT_COLUMNS` order, from `?1`.
fn client_params(r: &ClientRow) -> rusqlite::ParamsFromIter<Vec<rusqlite::types::Value>> {
    use rusqlite::types::Value as V;
    let t = ClientText::of(r);
    let opt = |v: Option<i64>| v.map_or(V::Null, V::Integer);
    rusqlite::params_from_iter(vec![
        V::Text(r.id.clone()),
        V::Text(r.name.clone()),
        V::Text(t.grants),
        V::Text(t.scopes),
        V::Text(t.audiences),
        V::Text(t.redirect_uris),
        V::Text(t.auth.to_owned()),
        r.cert_sha256.map_or(V::Null, |h| V::Blob(h.to_vec())),
        opt(r.token_ttl),
        V::Integer(i64::from(r.first_party)),
        V::Integer(r.created_at),
        opt(r.deleted_at),
        opt(r.revoke_before),
        opt(r.revoke_from),
    ])
}

fn put_client_secrets(tx: &rusqlite::Transaction<'_>, r: &ClientRow) -> StoreResult<()> {
    let mut st = tx
        .prepare_cached(
            "INSERT INTO oauth_client_secrets (hash, client_id, valid_until) VALUES (?1, ?2, ?3)",
        )
        .map_err(unavailable)?;
    let conflict = |e| match unavailable(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict(format!("a secret of client `{}` is already stored", r.id))
        }
        other => other,
    };
    if let Some(h) = &r.current {
        st.execute(params![h.as_slice(), r.id, Option::<i64>::None])
            .map_err(conflict)?;
    }
    for (h, until) in &r.previous {
        st.execute(params![h.as_slice(), r.id, until])
            .map_err(conflict)?;
    }
    Ok(())
}

impl Sqlite {
    pub fn open(path: &Path) -> StoreResult<Sqlite> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(unavailable)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
        })
    }

    /// Opens an existing store for reading only (`portcullis explain`): nothing is created,
    /// migrated or written.
    pub fn open_read_only(path: &Path) -> StoreResult<Sqlite> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(unavailable)?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn integrity_check(&self) -> StoreResult<String> {
        self.conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(unavailable)
    }
}

impl Store for Sqlite {
    fn for_each_key(&self, f: &mut dyn FnMut(KeyRow)) -> StoreResult<usize> {
        let conn = self.conn();
        // One pass over keys joined with their secrets, ordered by key: rows of one key are
        // adjacent, so each key is built and handed over as soon as the next one starts.
        let mut st = conn
            .prepare(
                "SELECT k.id, k.prefix, k.name, k.subject, k.scopes, k.env, k.rate_limit, k.created_at, \
                 k.expires_at, k.revoked_at, k.last_used_at, s.hash, s.valid_until \
                 FROM keys k JOIN key_secrets s ON s.key_id = k.id ORDER BY k.id",
            )
            .map_err(unavailable)?;
        let mut rows = st.query([]).map_err(unavailable)?;
        let mut keys = KeyGrouper::new(f);
        while let Some(r) = rows.next().map_err(unavailable)? {
            let hash = to_hash(r.get::<_, Vec<u8>>(11).map_err(unavailable)?);
            let until: Option<i64> = r.get(12).map_err(unavailable)?;
            keys.add(
                r.get(0).map_err(unavailable)?,
                |id| {
                    let scopes: String = r.get(4).map_err(unavailable)?;
                    let env: String = r.get(5).map_err(unavailable)?;
                    Ok(KeyRow {
                        id,
                        prefix: r.get(1).map_err(unavailable)?,
                        name: r.get(2).map_err(unavailable)?,
                        subject: r.get(3).map_err(unavailable)?,
                        scopes: parse_scopes(&scopes),
                        env: Env::parse(&env).unwrap_or(Env::Live),
                        rate_limit: r.get(6).map_err(unavailable)?,
                        created_at: r.get(7).map_err(unavailable)?,
                        expires_at: r.get(8).map_err(unavailable)?,
                        revoked_at: r.get(9).map_err(unavailable)?,
                        last_used_at: r.get(10).map_err(unavailable)?,
                        current: [0u8; 32],
                        previous: Vec::new(),
                    })
                },
                hash,
                until,
            )?;
        }
        Ok(keys.finish())
    }

    fn insert_keys(&self, rows: &[KeyRow]) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(unavailable)?;
        {
            let mut k = tx
                .prepare_cached(
                    "INSERT INTO keys (id, prefix, name, subject, scopes, env, rate_limit, created_at, expires_at, revoked_at, last_used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(unavailable)?;
            let mut s = tx
                .prepare_cached(
                    "INSERT INTO key_secrets (hash, key_id, valid_until) VALUES (?1, ?2, ?3)",
                )
                .map_err(unavailable)?;
            for r in rows {
                k.execute(params![
                    r.id,
                    r.prefix,
                    r.name,
                    r.subject,
                    serde_json::to_string(&r.scopes).unwrap_or_else(|_| "[]".into()),
                    r.env.as_str(),
                    r.rate_limit,
                    r.created_at,
                    r.expires_at,
                    r.revoked_at,
                    r.last_used_at
                ])
                .map_err(|e| match unavailable(e) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("key id `{}` already exists", r.id))
                    }
                    other => other,
                })?;
                s.execute(params![r.current.as_slice(), r.id, Option::<i64>::None])
                    .map_err(|e| match unavailable(e) {
                        StoreError::Conflict(_) => StoreError::Conflict(format!(
                            "the secret of key `{}` is already stored",
                            r.id
                        )),
                        other => other,
                    })?;
                for (h, until) in &r.previous {
                    s.execute(params![h.as_slice(), r.id, until])
                        .map_err(unavailable)?;
                }
            }
        }
        tx.commit().map_err(unavailable)
    }

    fn rotate_key(&self, id: &str, current: &Hash, previous: &[(Hash, i64)]) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(unavailable)?;
        let n = tx
            .execute("DELETE FROM key_secrets WHERE key_id = ?1", params![id])
            .map_err(unavailable)?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        tx.execute(
            "INSERT INTO key_secrets (hash, key_id, valid_until) VALUES (?1, ?2, NULL)",
            params![current.as_slice(), id],
        )
        .map_err(unavailable)?;
        for (h, until) in previous {
            tx.execute(
                "INSERT INTO key_secrets (hash, key_id, valid_until) VALUES (?1, ?2, ?3)",
                params![h.as_slice(), id, until],
            )
            .map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)
    }

    fn revoke_key(&self, id: &str, at: i64) -> StoreResult<()> {
        let n = self
            .conn()
            .execute(
                "UPDATE keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, at],
            )
            .map_err(unavailable)?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    fn touch_keys(&self, used: &[(String, i64)]) -> StoreResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(unavailable)?;
        {
            let mut st = tx
                .prepare_cached("UPDATE keys SET last_used_at = ?2 WHERE id = ?1")
                .map_err(unavailable)?;
            for (id, at) in used {
                st.execute(params![id, at]).map_err(unavailable)?;
            }
        }
        tx.commit().map_err(unavailable)
    }

    fn load_revocations(&self, now: i64) -> StoreResult<Vec<(String, i64)>> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT jti, until FROM revocations WHERE until > ?1 ORDER BY jti")
            .map_err(unavailable)?;
        let rows = st
            .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
    }

    fn insert_revocation(&self, jti: &str, until: i64) -> StoreResult<()> {
        self.conn()
            .execute(
                "INSERT INTO revocations (jti, until) VALUES (?1, ?2) ON CONFLICT(jti) DO UPDATE SET until = max(until, excluded.until)",
                params![jti, until],
            )
            .map_err(unavailable)?;
        Ok(())
    }

    fn lift_revocation(&self, jti: &str, now: i64) -> StoreResult<bool> {
        self.conn()
            .execute(
                "UPDATE revocations SET until = ?2 WHERE jti = ?1 AND until > ?2",
                params![jti, now],
            )
            .map(|n| n > 0)
            .map_err(unavailable)
    }

    fn purge_revocations(&self, now: i64) -> StoreResult<usize> {
        self.conn()
            .execute("DELETE FROM revocations WHERE until <= ?1", params![now])
            .map_err(unavailable)
    }

    fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) -> StoreResult<()> {
        self.conn()
            .execute(
                "INSERT INTO admin_audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![crate::clock::now_secs(), actor, action, target, detail],
            )
            .map_err(unavailable)?;
        Ok(())
    }

    fn load_clients(&self) -> StoreResult<Vec<ClientRow>> {
        let conn = self.conn();
        let mut st = conn
            .prepare(&format!(
                "SELECT {CLIENT_COLUMNS} FROM oauth_clients ORDER BY created_at, id"
            ))
            .map_err(unavailable)?;
        let mut rows: Vec<ClientRow> = st
            .query_map([], |r| {
                Ok(client_row(
                    r.get(0)?,
                    r.get(1)?,
                    [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    [r.get(10)?, r.get(11)?, r.get(12)?, r.get(13)?],
                ))
            })
            .map_err(unavailable)?
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        let mut st = conn
            .prepare("SELECT client_id, hash, valid_until FROM oauth_client_secrets")
            .map_err(unavailable)?;
        let secrets = st
            .query_map([], |r| {
                Ok((r.get(0)?, to_hash(r.get::<_, Vec<u8>>(1)?), r.get(2)?))
            })
            .map_err(unavailable)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        attach_secrets(&mut rows, secrets);
        Ok(rows)
    }

    fn insert_client(&self, row: &ClientRow) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(unavailable)?;
        tx.execute(
            &format!(
                "INSERT INTO oauth_clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ),
            client_params(row),
        )
        .map_err(|e| match unavailable(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("client id `{}` already exists", row.id))
            }
            other => other,
        })?;
        put_client_secrets(&tx, row)?;
        tx.commit().map_err(unavailable)
    }

    fn update_client(&self, row: &ClientRow) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(unavailable)?;
        let n = tx
            .execute(
                "UPDATE oauth_clients SET name = ?2, grants = ?3, scopes = ?4, audiences = ?5, \
                 redirect_uris = ?6, auth = ?7, cert_sha256 = ?8, token_ttl = ?9, first_party = ?10, \
                 created_at = ?11, deleted_at = ?12, revoke_before = ?13, revoke_from = ?14 WHERE id = ?1",
                client_params(row),
            )
            .map_err(unavailable)?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        tx.execute(
            "DELETE FROM oauth_client_secrets WHERE client_id = ?1",
            params![row.id],
        )
        .map_err(unavailable)?;
        put_client_secrets(&tx, row)?;
        tx.commit().map_err(unavailable)
    }

    fn load_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        let conn = self.conn();
        let mut st = conn
            .prepare(
                "SELECT kid, alg, created_at, activates_at, private_sealed, public_jwk \
                 FROM oauth_signing_keys ORDER BY activates_at, kid",
            )
            .map_err(unavailable)?;
        let rows = st
            .query_map([], |r| {
                let alg: String = r.get(1)?;
                Ok(SigningKeyRow {
                    kid: r.get(0)?,
                    alg: SigAlg::parse(&alg).unwrap_or(SigAlg::ES256),
                    created_at: r.get(2)?,
                    activates_at: r.get(3)?,
                    private_sealed: r.get(4)?,
                    public_jwk: r.get(5)?,
                })
            })
            .map_err(unavailable)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
    }

    fn insert_signing_key(
        &self,
        row: &SigningKeyRow,
        unless_activating_after: i64,
    ) -> StoreResult<bool> {
        let mut conn = self.conn();
        // IMMEDIATE: the check and the insert under one write lock, for every process on the file
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        let later: i64 = tx
            .query_row(
                "SELECT count(*) FROM oauth_signing_keys WHERE activates_at > ?1",
                params![unless_activating_after],
                |r| r.get(0),
            )
            .map_err(unavailable)?;
        if later > 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO oauth_signing_keys (kid, alg, created_at, activates_at, private_sealed, public_jwk) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                row.kid,
                row.alg.as_str(),
                row.created_at,
                row.activates_at,
                row.private_sealed,
                row.public_jwk
            ],
        )
        .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        Ok(true)
    }

    fn list_users(&self) -> StoreResult<Vec<UserRow>> {
        sqlite_users::list_users(&self.conn())
    }

    fn get_user(&self, username: &str) -> StoreResult<Option<UserRow>> {
        sqlite_users::get_user(&self.conn(), username)
    }

    fn insert_user(&self, row: &UserRow) -> StoreResult<()> {
        sqlite_users::insert_user(&self.conn(), row)
    }

    fn update_user(&self, row: &UserRow) -> StoreResult<()> {
        sqlite_users::update_user(&self.conn(), row)
    }

    fn delete_user(&self, username: &str) -> StoreResult<bool> {
        sqlite_users::delete_user(&self.conn(), username)
    }

    fn login_failures(&self, username: &str) -> StoreResult<Option<Failures>> {
        sqlite_users::read_failures(&self.conn(), username)
    }

    fn record_login_failure(
        &self,
        username: &str,
        now: i64,
        throttle: &Throttle,
    ) -> StoreResult<Failures> {
        sqlite_users::record_login_failure(&mut self.conn(), username, now, throttle)
    }

    fn clear_login_failures(&self, username: &str) -> StoreResult<()> {
        sqlite_users::clear_login_failures(&self.conn(), username)
    }

    fn purge_login_failures(&self, quiet_since: i64) -> StoreResult<usize> {
        sqlite_users::purge_login_failures(&self.conn(), quiet_since)
    }

    fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        self.conn()
            .query_row(
                "SELECT value FROM settings WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
    }

    fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        self.conn()
            .execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                params![name, value],
            )
            .map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("sub/p.db")).unwrap();
        crate::store::conformance(&s);
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }
}
