//! PostgreSQL store (cluster mode): the source of truth every replica shares.
//!
//! The request path still never touches it: each replica keeps every key in memory and follows
//! the database through a change feed ([`Feed`]):
//! - every write runs in one transaction that first takes a transaction-scoped advisory lock, so
//!   writes commit in the order of the change sequence (`portcullis_change_seq`) they draw;
//! - a key or revocation row carries the sequence number of its last change, and the transaction
//!   ends with `NOTIFY portcullis_changes`;
//! - a replica LISTENs, and on a notification (or every `resync` interval, which repairs a
//!   notification lost with a dropped connection) reads the rows whose number is above the last it
//!   applied. Because commit order equals number order, no change can be skipped.
//!
//! If the database goes away, serving continues from memory, admin writes fail (503), the feed
//! reconnects with backoff and catches up from its last number.

use super::pg_tls::PgTls;
use super::{parse_scopes, to_hash, KeyGrouper, Store, StoreError, StoreResult};
use super::{pg_err as db_err, pg_oauth};
use crate::keys::{Env, Hash, KeyRow};
use crate::oauth::clients::ClientRow;
use crate::oauth::signing::SigningKeyRow;
use crate::oauth::users::{Failures, Throttle, UserRow};
use postgres::{Client, NoTls};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Serializes writers (`pg_advisory_xact_lock`), so change numbers are committed in order.
pub(super) const WRITE_LOCK: i64 = 0x706f_7274_6375_6c6c; // "portcull"
/// Held while migrating, so replicas starting together don't race on `CREATE`.
const MIGRATE_LOCK: i64 = 0x706f_7274_6d69_6772; // "portmigr"
pub(super) const CHANNEL: &str = "portcullis_changes";
/// Most idle connections kept for the admin path.
const POOL_MAX: usize = 4;

const SCHEMA: &str = "
CREATE SEQUENCE IF NOT EXISTS portcullis_change_seq;
CREATE TABLE IF NOT EXISTS portcullis_keys (
    id TEXT PRIMARY KEY,
    prefix TEXT NOT NULL,
    name TEXT NOT NULL,
    subject TEXT,
    scopes TEXT NOT NULL,
    env TEXT NOT NULL,
    rate_limit TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT,
    seq BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS portcullis_keys_by_seq ON portcullis_keys(seq);
CREATE TABLE IF NOT EXISTS portcullis_key_secrets (
    hash BYTEA PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES portcullis_keys(id),
    valid_until BIGINT
);
CREATE INDEX IF NOT EXISTS portcullis_key_secrets_by_key ON portcullis_key_secrets(key_id);
CREATE TABLE IF NOT EXISTS portcullis_revocations (
    jti TEXT PRIMARY KEY,
    until BIGINT NOT NULL,
    seq BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS portcullis_revocations_by_seq ON portcullis_revocations(seq);
CREATE TABLE IF NOT EXISTS portcullis_admin_audit (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS portcullis_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
";

const KEY_COLUMNS: &str = "k.id, k.prefix, k.name, k.subject, k.scopes, k.env, k.rate_limit, \
     k.created_at, k.expires_at, k.revoked_at, k.last_used_at, s.hash, s.valid_until, k.seq";

pub struct Postgres {
    config: postgres::Config,
    tls: PgTls,
    /// The URL without its password, for messages.
    pub display: String,
    pool: Mutex<Vec<Client>>,
    /// False from the first failed call until a call succeeds again (`/readyz`, metrics).
    pub(super) up: AtomicBool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("url", &self.display)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Parses the URL (its TLS parameters already taken out into `tls`) and sets the
    /// connection's options (nothing is connected yet).
    fn open_unmigrated(url: &str, tls: &PgTls) -> StoreResult<Postgres> {
        let display = crate::values::redact_url(url);
        let mut config: postgres::Config =
            tls.driver_url.parse().map_err(|e: postgres::Error| {
                StoreError::Unavailable(format!("{display}: not a PostgreSQL URL: {e}"))
            })?;
        config.ssl_mode(tls.driver_mode());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        // A path to the database that silently dies must fail calls in seconds, not after TCP's
        // retransmissions (~15 min): otherwise the feed hangs while reporting itself up, and a
        // stranded write keeps the cluster-wide write lock.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(20));
        if config.get_options().is_none() {
            config
                .options("-c statement_timeout=30000 -c idle_in_transaction_session_timeout=30000");
        }
        config.application_name("portcullis");
        let pg = Postgres {
            config,
            tls: tls.clone(),
            display,
            pool: Mutex::new(Vec::new()),
            up: AtomicBool::new(true),
        };
        Ok(pg)
    }

    /// Parses the URL, connects once and migrates the schema. `tls`: the URL's TLS settings
    /// ([`super::pg_tls::parse`]).
    pub fn open(url: &str, tls: &PgTls) -> StoreResult<Postgres> {
        let pg = Postgres::open_unmigrated(url, tls)?;
        let mut c = pg.connect()?;
        pg.migrate(&mut c)?;
        pg.put_back(c);
        Ok(pg)
    }

    /// Connects without migrating, for reading only (`portcullis explain`).
    pub fn open_read_only(url: &str, tls: &PgTls) -> StoreResult<Postgres> {
        let pg = Postgres::open_unmigrated(url, tls)?;
        let c = pg.connect()?;
        pg.put_back(c);
        Ok(pg)
    }

    pub(super) fn connect(&self) -> StoreResult<Client> {
        let c = match self.tls.connector() {
            Some(tls) => self.config.connect(tls),
            None => self.config.connect(NoTls),
        };
        c.map_err(|e| {
            self.up.store(false, Ordering::Relaxed);
            // the cause too: "error performing TLS handshake" alone does not say which
            let mut msg = format!("{}: {e}", self.display);
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                msg = format!("{msg}: {c}");
                cause = c.source();
            }
            StoreError::Unavailable(msg)
        })
    }

    fn migrate(&self, c: &mut Client) -> StoreResult<()> {
        let mut tx = c.transaction().map_err(db_err)?;
        // `CREATE ... IF NOT EXISTS` of what exists is a NOTICE each: not for the log
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .map_err(db_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
            .map_err(db_err)?;
        tx.batch_execute(SCHEMA).map_err(db_err)?;
        tx.batch_execute(super::pg_oauth::SCHEMA).map_err(db_err)?;
        tx.commit().map_err(db_err)
    }

    /// Runs `f` on a pooled connection; a connection that failed is dropped, not pooled.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> StoreResult<T> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut c = match pooled {
            Some(c) if !c.is_closed() => c,
            _ => self.connect()?,
        };
        let r = f(&mut c);
        match &r {
            Err(StoreError::Unavailable(_)) => {
                self.up.store(false, Ordering::Relaxed);
            }
            _ => {
                self.up.store(true, Ordering::Relaxed);
                self.put_back(c);
            }
        }
        r
    }

    fn put_back(&self, c: Client) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_MAX && !c.is_closed() {
            pool.push(c);
        }
    }

    /// A write transaction: ordered by the advisory lock, announced on commit.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, StoreError>,
    ) -> StoreResult<T> {
        self.with(|c| {
            let mut tx = c.transaction().map_err(db_err)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
                .map_err(db_err)?;
            let out = f(&mut tx)?;
            tx.batch_execute(&format!("NOTIFY {CHANNEL}"))
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
    }
}

/// Streams the keys changed after `after` (every key for `i64::MIN`), grouped per key; returns
/// how many and the highest change number seen.
pub(super) fn keys_since<C: postgres::GenericClient>(
    c: &mut C,
    after: i64,
    f: &mut dyn FnMut(KeyRow),
) -> StoreResult<(usize, i64)> {
    use postgres::fallible_iterator::FallibleIterator;
    let q = format!(
        "SELECT {KEY_COLUMNS} FROM portcullis_keys k JOIN portcullis_key_secrets s ON s.key_id = k.id \
         WHERE k.seq > $1 ORDER BY k.id"
    );
    let mut it = c
        .query_raw(q.as_str(), [&after as &(dyn postgres::types::ToSql + Sync)])
        .map_err(db_err)?;
    let mut keys = KeyGrouper::new(f);
    let mut max_seq = after;
    while let Some(r) = it.next().map_err(db_err)? {
        let h = to_hash(r.try_get(11).map_err(db_err)?);
        let seq: i64 = r.try_get(13).map_err(db_err)?;
        max_seq = max_seq.max(seq);
        keys.add(
            r.try_get(0).map_err(db_err)?,
            |id| {
                let scopes: String = r.try_get(4).map_err(db_err)?;
                let env: String = r.try_get(5).map_err(db_err)?;
                Ok(KeyRow {
                    id,
                    prefix: r.try_get(1).map_err(db_err)?,
                    name: r.try_get(2).map_err(db_err)?,
                    subject: r.try_get(3).map_err(db_err)?,
                    scopes: parse_scopes(&scopes),
                    env: Env::parse(&env).unwrap_or(Env::Live),
                    rate_limit: r.try_get(6).map_err(db_err)?,
                    created_at: r.try_get(7).map_err(db_err)?,
                    expires_at: r.try_get(8).map_err(db_err)?,
                    revoked_at: r.try_get(9).map_err(db_err)?,
                    last_used_at: r.try_get(10).map_err(db_err)?,
                    current: [0u8; 32],
                    previous: Vec::new(),
                })
            },
            h,
            r.try_get(12).map_err(db_err)?,
        )?;
    }
    Ok((keys.finish(), max_seq))
}

/// Revocation changes after `after`, ended ones included: a lifted revocation is a change to an
/// `until` in the past, which every replica must apply.
pub(super) fn revocations_since<C: postgres::GenericClient>(
    c: &mut C,
    after: i64,
) -> StoreResult<(Vec<(String, i64)>, i64)> {
    let rows = c
        .query(
            "SELECT jti, until, seq FROM portcullis_revocations WHERE seq > $1",
            &[&after],
        )
        .map_err(db_err)?;
    let mut max_seq = after;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = r.try_get(2).map_err(db_err)?;
        max_seq = max_seq.max(seq);
        out.push((
            r.try_get::<_, String>(0).map_err(db_err)?,
            r.try_get::<_, i64>(1).map_err(db_err)?,
        ));
    }
    Ok((out, max_seq))
}

pub(super) fn current_seq<C: postgres::GenericClient>(c: &mut C) -> StoreResult<i64> {
    // `last_value` of a never-used sequence is its start (1) with is_called false: report 0.
    let r = c
        .query_one(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM portcullis_change_seq",
            &[],
        )
        .map_err(db_err)?;
    r.try_get(0).map_err(db_err)
}

impl Store for Postgres {
    fn for_each_key(&self, f: &mut dyn FnMut(KeyRow)) -> StoreResult<usize> {
        self.with(|c| keys_since(c, i64::MIN, f).map(|(n, _)| n))
    }

    fn insert_keys(&self, rows: &[KeyRow]) -> StoreResult<()> {
        self.write(|tx| {
            let k = tx
                .prepare(
                    "INSERT INTO portcullis_keys (id, prefix, name, subject, scopes, env, rate_limit, created_at, \
                     expires_at, revoked_at, last_used_at, seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, nextval('portcullis_change_seq'))",
                )
                .map_err(db_err)?;
            let s = tx
                .prepare(
                    "INSERT INTO portcullis_key_secrets (hash, key_id, valid_until) VALUES ($1, $2, $3)",
                )
                .map_err(db_err)?;
            for r in rows {
                let scopes = serde_json::to_string(&r.scopes).unwrap_or_else(|_| "[]".into());
                tx.execute(
                    &k,
                    &[
                        &r.id,
                        &r.prefix,
                        &r.name,
                        &r.subject,
                        &scopes,
                        &r.env.as_str(),
                        &r.rate_limit,
                        &r.created_at,
                        &r.expires_at,
                        &r.revoked_at,
                        &r.last_used_at,
                    ],
                )
                .map_err(|e| match db_err(e) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("key id `{}` already exists", r.id))
                    }
                    other => other,
                })?;
                tx.execute(&s, &[&r.current.as_slice(), &r.id, &Option::<i64>::None])
                    .map_err(|e| match db_err(e) {
                        StoreError::Conflict(_) => StoreError::Conflict(format!(
                            "the secret of key `{}` is already stored",
                            r.id
                        )),
                        other => other,
                    })?;
                for (h, until) in &r.previous {
                    tx.execute(&s, &[&h.as_slice(), &r.id, until])
                        .map_err(db_err)?;
                }
            }
            Ok(())
        })
    }

    fn rotate_key(&self, id: &str, current: &Hash, previous: &[(Hash, i64)]) -> StoreResult<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE portcullis_keys SET seq = nextval('portcullis_change_seq') WHERE id = $1",
                    &[&id],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            tx.execute(
                "DELETE FROM portcullis_key_secrets WHERE key_id = $1",
                &[&id],
            )
            .map_err(db_err)?;
            tx.execute(
                "INSERT INTO portcullis_key_secrets (hash, key_id, valid_until) VALUES ($1, $2, NULL)",
                &[&current.as_slice(), &id],
            )
            .map_err(db_err)?;
            for (h, until) in previous {
                tx.execute(
                    "INSERT INTO portcullis_key_secrets (hash, key_id, valid_until) VALUES ($1, $2, $3)",
                    &[&h.as_slice(), &id, until],
                )
                .map_err(db_err)?;
            }
            Ok(())
        })
    }

    fn revoke_key(&self, id: &str, at: i64) -> StoreResult<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE portcullis_keys SET revoked_at = $2, seq = nextval('portcullis_change_seq') \
                     WHERE id = $1 AND revoked_at IS NULL",
                    &[&id, &at],
                )
                .map_err(db_err)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
    }

    fn touch_keys(&self, used: &[(String, i64)]) -> StoreResult<()> {
        if used.is_empty() {
            return Ok(());
        }
        // Informational, so not a change replicas follow (no sequence number, no NOTIFY); and
        // never moved backwards by a replica that saw an older use.
        self.with(|c| {
            let mut tx = c.transaction().map_err(db_err)?;
            let st = tx
                .prepare(
                    "UPDATE portcullis_keys SET last_used_at = $2 WHERE id = $1 \
                     AND (last_used_at IS NULL OR last_used_at < $2)",
                )
                .map_err(db_err)?;
            // One order for every replica: two batches never wait on each other's row locks.
            let mut sorted: Vec<&(String, i64)> = used.iter().collect();
            sorted.sort();
            for (id, at) in sorted {
                tx.execute(&st, &[id, at]).map_err(db_err)?;
            }
            tx.commit().map_err(db_err)
        })
    }

    fn load_revocations(&self, now: i64) -> StoreResult<Vec<(String, i64)>> {
        self.with(|c| {
            let rows = c
                .query(
                    "SELECT jti, until FROM portcullis_revocations WHERE until > $1 ORDER BY jti",
                    &[&now],
                )
                .map_err(db_err)?;
            rows.iter()
                .map(|r| Ok((r.try_get(0).map_err(db_err)?, r.try_get(1).map_err(db_err)?)))
                .collect()
        })
    }

    fn insert_revocation(&self, jti: &str, until: i64) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO portcullis_revocations (jti, until, seq) VALUES ($1, $2, nextval('portcullis_change_seq')) \
                 ON CONFLICT (jti) DO UPDATE SET until = GREATEST(portcullis_revocations.until, excluded.until), \
                 seq = excluded.seq",
                &[&jti, &until],
            )
            .map_err(db_err)?;
            Ok(())
        })
    }

    fn lift_revocation(&self, jti: &str, now: i64) -> StoreResult<bool> {
        self.write(|tx| {
            tx.execute(
                "UPDATE portcullis_revocations SET until = $2, seq = nextval('portcullis_change_seq') \
                 WHERE jti = $1 AND until > $2",
                &[&jti, &now],
            )
            .map(|n| n > 0)
            .map_err(db_err)
        })
    }

    fn purge_revocations(&self, now: i64) -> StoreResult<usize> {
        self.with(|c| {
            c.execute(
                "DELETE FROM portcullis_revocations WHERE until <= $1",
                &[&now],
            )
            .map(|n| n as usize)
            .map_err(db_err)
        })
    }

    fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) -> StoreResult<()> {
        let at = crate::clock::now_secs();
        self.with(|c| {
            c.execute(
                "INSERT INTO portcullis_admin_audit (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
                &[&at, &actor, &action, &target, &detail],
            )
            .map(|_| ())
            .map_err(db_err)
        })
    }

    fn load_clients(&self) -> StoreResult<Vec<ClientRow>> {
        self.with(|c| pg_oauth::clients_since(c, i64::MIN).map(|(rows, _)| rows))
    }

    fn insert_client(&self, row: &ClientRow) -> StoreResult<()> {
        self.write(|tx| pg_oauth::insert_client(tx, row))
    }

    fn update_client(&self, row: &ClientRow) -> StoreResult<()> {
        self.write(|tx| pg_oauth::update_client(tx, row))
    }

    fn load_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        self.with(|c| pg_oauth::signing_keys_since(c, i64::MIN).map(|(rows, _)| rows))
    }

    fn insert_signing_key(
        &self,
        row: &SigningKeyRow,
        unless_activating_after: i64,
    ) -> StoreResult<bool> {
        self.write(|tx| pg_oauth::insert_signing_key(tx, row, unless_activating_after))
    }

    fn list_users(&self) -> StoreResult<Vec<UserRow>> {
        self.with(pg_oauth::list_users)
    }

    fn get_user(&self, username: &str) -> StoreResult<Option<UserRow>> {
        self.with(|c| pg_oauth::get_user(c, username))
    }

    fn insert_user(&self, row: &UserRow) -> StoreResult<()> {
        self.with(|c| pg_oauth::insert_user(c, row))
    }

    fn update_user(&self, row: &UserRow) -> StoreResult<()> {
        self.with(|c| pg_oauth::update_user(c, row))
    }

    fn delete_user(&self, username: &str) -> StoreResult<bool> {
        self.with(|c| pg_oauth::delete_user(c, username))
    }

    fn login_failures(&self, username: &str) -> StoreResult<Option<Failures>> {
        self.with(|c| pg_oauth::login_failures(c, username))
    }

    fn record_login_failure(
        &self,
        username: &str,
        now: i64,
        throttle: &Throttle,
    ) -> StoreResult<Failures> {
        self.with(|c| pg_oauth::record_login_failure(c, username, now, throttle))
    }

    fn clear_login_failures(&self, username: &str) -> StoreResult<()> {
        self.with(|c| pg_oauth::clear_login_failures(c, username))
    }

    fn purge_login_failures(&self, quiet_since: i64) -> StoreResult<usize> {
        self.with(|c| pg_oauth::purge_login_failures(c, quiet_since))
    }

    fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        self.with(|c| {
            c.query_opt(
                "SELECT value FROM portcullis_settings WHERE name = $1",
                &[&name],
            )
            .map_err(db_err)?
            .map(|r| r.try_get(0).map_err(db_err))
            .transpose()
        })
    }

    fn set_setting(&self, name: &str, value: &str) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO portcullis_settings (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&name, &value],
            )
            .map(|_| ())
            .map_err(db_err)
        })
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}
