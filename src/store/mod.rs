//! The key store behind a trait: keys (hashes and metadata), JWT revocations, the authorization
//! server's clients and signing keys, the admin audit trail and settings. The embedded default is SQLite; the request path never touches it (all
//! keys live in memory), only start-up and the admin path do.
pub mod pg_feed;
pub mod pg_oauth;
pub mod pg_tls;
pub mod postgres;
pub mod sqlite;
pub mod sqlite_users;

use crate::keys::{Hash, KeyRow};
use crate::oauth::clients::{ClientAuth, ClientRow, Grant};
use crate::oauth::signing::SigningKeyRow;
use crate::oauth::users::{Failures, Throttle, UserRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("not found")]
    NotFound,
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A PostgreSQL error as a store error: a unique violation is a `Conflict`, the rest
/// `Unavailable`.
pub(crate) fn pg_err(e: ::postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if db.code() == &::postgres::error::SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict(db.message().to_owned());
        }
    }
    StoreError::Unavailable(e.to_string())
}

/// A SQLite error as a store error: a constraint violation is a `Conflict`, the rest
/// `Unavailable`.
pub(crate) fn sqlite_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(msg.clone().unwrap_or_else(|| "constraint".into()))
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

pub trait Store: Send + Sync + std::fmt::Debug {
    /// Streams every key to `f` (start-up: a million keys must not be held twice).
    fn for_each_key(&self, f: &mut dyn FnMut(KeyRow)) -> StoreResult<usize>;
    fn load_keys(&self) -> StoreResult<Vec<KeyRow>> {
        let mut v = Vec::new();
        self.for_each_key(&mut |r| v.push(r))?;
        Ok(v)
    }
    /// Inserts keys in one transaction: all or none. A duplicate id or secret is a `Conflict`.
    fn insert_keys(&self, rows: &[KeyRow]) -> StoreResult<()>;
    /// New current secret for `id`; `previous` replaces the list of earlier secrets.
    fn rotate_key(&self, id: &str, current: &Hash, previous: &[(Hash, i64)]) -> StoreResult<()>;
    fn revoke_key(&self, id: &str, at: i64) -> StoreResult<()>;
    fn touch_keys(&self, used: &[(String, i64)]) -> StoreResult<()>;
    fn load_revocations(&self, now: i64) -> StoreResult<Vec<(String, i64)>>;
    fn insert_revocation(&self, jti: &str, until: i64) -> StoreResult<()>;
    /// Lifts the revocation of `jti` (its `until` becomes `now`, as a change every replica
    /// applies); false when it was not revoked.
    fn lift_revocation(&self, jti: &str, now: i64) -> StoreResult<bool>;
    fn purge_revocations(&self, now: i64) -> StoreResult<usize>;
    fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) -> StoreResult<()>;
    /// Every OAuth client, deleted ones included (their tokens must stay refused).
    fn load_clients(&self) -> StoreResult<Vec<ClientRow>>;
    /// A new client; a duplicate id or secret is a `Conflict`.
    fn insert_client(&self, row: &ClientRow) -> StoreResult<()>;
    /// Replaces a client's registration and secrets (edits, rotations, deletion).
    fn update_client(&self, row: &ClientRow) -> StoreResult<()>;
    fn load_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>>;
    /// Adds a signing key unless a stored key activates after `unless_activating_after` (another
    /// replica, or an earlier call, made the next key already): whether it was added.
    fn insert_signing_key(
        &self,
        row: &SigningKeyRow,
        unless_activating_after: i64,
    ) -> StoreResult<bool>;
    /// Local users, by username.
    fn list_users(&self) -> StoreResult<Vec<UserRow>>;
    fn get_user(&self, username: &str) -> StoreResult<Option<UserRow>>;
    /// A new user; an existing username is a `Conflict`.
    fn insert_user(&self, row: &UserRow) -> StoreResult<()>;
    /// Replaces a user's password hash, scopes and `updated_at`; `NotFound` when there is none.
    fn update_user(&self, row: &UserRow) -> StoreResult<()>;
    /// Whether there was such a user.
    fn delete_user(&self, username: &str) -> StoreResult<bool>;
    /// A username's failed sign-ins (`None`: none counted).
    fn login_failures(&self, username: &str) -> StoreResult<Option<Failures>>;
    /// Counts one more failed sign-in at `now` under `throttle`, atomically across replicas,
    /// and returns the record as it became.
    fn record_login_failure(
        &self,
        username: &str,
        now: i64,
        throttle: &Throttle,
    ) -> StoreResult<Failures>;
    /// A successful sign-in: the count starts again.
    fn clear_login_failures(&self, username: &str) -> StoreResult<()>;
    /// Drops the records quiet (last failure and lock over) since before `quiet_since`; how many.
    fn purge_login_failures(&self, quiet_since: i64) -> StoreResult<usize>;
    fn setting(&self, name: &str) -> StoreResult<Option<String>>;
    fn set_setting(&self, name: &str, value: &str) -> StoreResult<()>;
    /// False while the store cannot be reached (reported by `/readyz` and `/metrics`).
    fn is_up(&self) -> bool {
        true
    }
}

/// Builds keys from (key, secret) rows ordered by key id, as both stores read them: a key is
/// handed to `f` once the next key starts (a million keys are never held twice); a key without
/// a current secret is skipped.
pub(crate) struct KeyGrouper<'a> {
    cur: Option<(KeyRow, bool)>,
    n: usize,
    f: &'a mut dyn FnMut(KeyRow),
}

impl<'a> KeyGrouper<'a> {
    pub(crate) fn new(f: &'a mut dyn FnMut(KeyRow)) -> KeyGrouper<'a> {
        KeyGrouper { cur: None, n: 0, f }
    }

    /// One row: `make` builds the key's metadata when `id` starts a new key.
    pub(crate) fn add(
        &mut self,
        id: String,
        make: impl FnOnce(String) -> StoreResult<KeyRow>,
        hash: Hash,
        until: Option<i64>,
    ) -> StoreResult<()> {
        if self.cur.as_ref().is_none_or(|(row, _)| row.id != id) {
            self.emit();
            self.cur = Some((make(id)?, false));
        }
        if let Some((row, has_current)) = self.cur.as_mut() {
            match until {
                None => {
                    row.current = hash;
                    *has_current = true;
                }
                Some(u) => row.previous.push((hash, u)),
            }
        }
        Ok(())
    }

    fn emit(&mut self) {
        if let Some((row, true)) = self.cur.take() {
            self.n += 1;
            (self.f)(row);
        }
    }

    /// Hands over the last key; the number of keys handed over.
    pub(crate) fn finish(mut self) -> usize {
        self.emit();
        self.n
    }
}

/// A stored 32-byte hash (anything else, which no writer produces, becomes all zeros and never
/// matches a key).
pub(crate) fn to_hash(v: Vec<u8>) -> Hash {
    let mut h = [0u8; 32];
    if v.len() == 32 {
        h.copy_from_slice(&v);
    }
    h
}

/// Scopes as stored: a JSON array of strings.
pub(crate) fn parse_scopes(s: &str) -> Vec<String> {
    if s == "[]" {
        Vec::new()
    } else {
        serde_json::from_str(s).unwrap_or_default()
    }
}

/// A client's lists and enums as stored (JSON arrays of strings, and names).
pub(crate) struct ClientText {
    pub grants: String,
    pub scopes: String,
    pub audiences: String,
    pub redirect_uris: String,
    pub auth: &'static str,
}

impl ClientText {
    pub(crate) fn of(row: &ClientRow) -> ClientText {
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let grants: Vec<String> = row.grants.iter().map(|g| g.as_str().to_owned()).collect();
        ClientText {
            grants: json(&grants),
            scopes: json(&row.scopes),
            audiences: json(&row.audiences),
            redirect_uris: json(&row.redirect_uris),
            auth: row.auth.as_str(),
        }
    }
}

/// A client row from its stored columns (lists as JSON text; secrets added afterwards).
#[allow(clippy::too_many_arguments)]
pub(crate) fn client_row(
    id: String,
    name: String,
    text: [String; 5],
    cert_sha256: Option<Vec<u8>>,
    token_ttl: Option<i64>,
    first_party: bool,
    times: [Option<i64>; 4],
) -> ClientRow {
    let [grants, scopes, audiences, redirect_uris, auth] = text;
    let [created_at, deleted_at, revoke_before, revoke_from] = times;
    ClientRow {
        id,
        name,
        grants: parse_scopes(&grants)
            .iter()
            .filter_map(|g| Grant::parse(g))
            .collect(),
        scopes: parse_scopes(&scopes),
        audiences: parse_scopes(&audiences),
        redirect_uris: parse_scopes(&redirect_uris),
        auth: ClientAuth::parse(&auth).unwrap_or(ClientAuth::ClientSecretBasic),
        cert_sha256: cert_sha256.map(to_hash),
        token_ttl,
        first_party,
        created_at: created_at.unwrap_or(0),
        deleted_at,
        revoke_before,
        revoke_from,
        current: None,
        previous: Vec::new(),
    }
}

/// Puts each `(client id, hash, valid_until)` secret on its client.
pub(crate) fn attach_secrets(rows: &mut [ClientRow], secrets: Vec<(String, Hash, Option<i64>)>) {
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        at.insert(r.id.clone(), i);
    }
    for (id, hash, until) in secrets {
        if let Some(&i) = at.get(&id) {
            match until {
                None => rows[i].current = Some(hash),
                Some(u) => rows[i].previous.push((hash, u)),
            }
        }
    }
    for r in rows.iter_mut() {
        r.previous.sort_by_key(|(_, u)| *u);
    }
}

/// What every store must do, run against each backend (SQLite in its unit tests, PostgreSQL in
/// `tests/cluster.rs`). Panics on the first difference. Uses key id `key_1` and jti `j`: give it
/// an empty store.
#[doc(hidden)]
#[allow(clippy::unwrap_used)]
pub fn conformance(s: &dyn Store) {
    use crate::keys::{generate_secret, hash_key, Env};
    let secret = generate_secret(Env::Test);
    let row = KeyRow {
        id: "key_1".into(),
        prefix: secret[..12].into(),
        name: "ci".into(),
        subject: Some("svc".into()),
        scopes: vec!["a".into(), "b".into()],
        env: Env::Test,
        rate_limit: Some("5/s".into()),
        created_at: 10,
        expires_at: Some(99),
        revoked_at: None,
        last_used_at: None,
        current: hash_key(&secret),
        previous: vec![],
    };
    s.insert_keys(std::slice::from_ref(&row)).unwrap();
    // The same id again, or another id with the same secret: conflicts, nothing written.
    assert!(matches!(
        s.insert_keys(std::slice::from_ref(&row)),
        Err(StoreError::Conflict(_))
    ));
    let mut twin = row.clone();
    twin.id = "key_2".into();
    assert!(matches!(
        s.insert_keys(&[twin]),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.load_keys().unwrap(), vec![row.clone()]);
    let new = hash_key("other");
    s.rotate_key("key_1", &new, &[(row.current, 50)]).unwrap();
    assert!(matches!(
        s.rotate_key("nope", &new, &[]),
        Err(StoreError::NotFound)
    ));
    s.touch_keys(&[("key_1".into(), 42)]).unwrap();
    s.revoke_key("key_1", 60).unwrap();
    assert!(matches!(
        s.revoke_key("key_1", 61),
        Err(StoreError::NotFound)
    ));
    let back = &s.load_keys().unwrap()[0];
    assert_eq!(back.current, new);
    assert_eq!(back.previous, vec![(row.current, 50)]);
    assert_eq!(back.revoked_at, Some(60));
    assert_eq!(back.last_used_at, Some(42));
    assert_eq!(back.scopes, row.scopes);
    assert_eq!(back.rate_limit, row.rate_limit);
    s.insert_revocation("j", 100).unwrap();
    // A later `until` extends a revocation, an earlier one never shortens it.
    s.insert_revocation("j", 90).unwrap();
    assert_eq!(
        s.load_revocations(50).unwrap(),
        vec![("j".to_string(), 100)]
    );
    // Lifting: the revocation ends now (and is purged like any ended one); only once.
    s.insert_revocation("k", 200).unwrap();
    assert!(s.lift_revocation("k", 60).unwrap());
    assert!(!s.lift_revocation("k", 60).unwrap());
    assert!(!s.lift_revocation("nobody", 60).unwrap());
    assert_eq!(
        s.load_revocations(50).unwrap(),
        vec![("j".to_string(), 100), ("k".to_string(), 60)]
    );
    assert_eq!(s.purge_revocations(100).unwrap(), 2);
    assert!(s.load_revocations(0).unwrap().is_empty());
    assert_eq!(s.setting("admin_token_sha256").unwrap(), None);
    s.set_setting("admin_token_sha256", "x").unwrap();
    s.set_setting("admin_token_sha256", "y").unwrap();
    assert_eq!(
        s.setting("admin_token_sha256").unwrap().as_deref(),
        Some("y")
    );
    s.audit("admin-token", "create_key", "key_1", "conformance")
        .unwrap();
    conformance_oauth(s);
    conformance_users(s);
    assert!(s.is_up());
}

/// Local users: insert, conflict, read, update, delete. Uses usernames starting `conf-`, which
/// it removes again.
#[allow(clippy::unwrap_used)]
fn conformance_users(s: &dyn Store) {
    for u in s.list_users().unwrap() {
        if u.username.starts_with("conf-") {
            s.delete_user(&u.username).unwrap();
        }
    }
    let mut row = UserRow {
        username: "conf-alice".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        scopes: vec!["read:profile".into(), "openid".into()],
        created_at: 100,
        updated_at: 100,
    };
    s.insert_user(&row).unwrap();
    assert!(
        matches!(s.insert_user(&row), Err(StoreError::Conflict(m)) if m.contains("conf-alice"))
    );
    assert_eq!(s.get_user("conf-alice").unwrap().as_ref(), Some(&row));
    assert_eq!(s.get_user("conf-bob").unwrap(), None);
    row.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdDI$aGFzaDI".into();
    row.scopes = Vec::new();
    row.updated_at = 200;
    s.update_user(&row).unwrap();
    assert_eq!(s.get_user("conf-alice").unwrap().as_ref(), Some(&row));
    let ghost = UserRow {
        username: "conf-ghost".into(),
        ..row.clone()
    };
    assert!(matches!(s.update_user(&ghost), Err(StoreError::NotFound)));
    assert!(s
        .list_users()
        .unwrap()
        .iter()
        .any(|u| u.username == "conf-alice"));
    assert!(s.delete_user("conf-alice").unwrap());
    assert!(!s.delete_user("conf-alice").unwrap());
    assert_eq!(s.get_user("conf-alice").unwrap(), None);

    // sign-in throttling: counted across calls, locked at the fifth, cleared by a success,
    // purged when quiet
    let t = Throttle::default();
    s.clear_login_failures("conf-mallory").unwrap();
    assert_eq!(s.login_failures("conf-mallory").unwrap(), None);
    let mut last = None;
    for i in 0..5 {
        last = Some(
            s.record_login_failure("conf-mallory", 1_000 + i, &t)
                .unwrap(),
        );
    }
    let f = last.unwrap();
    assert_eq!((f.count, f.last_at, f.locked_until), (5, 1_004, 1_064));
    assert_eq!(s.login_failures("conf-mallory").unwrap(), Some(f));
    // while locked nothing changes
    assert_eq!(
        s.record_login_failure("conf-mallory", 1_010, &t).unwrap(),
        f
    );
    s.record_login_failure("conf-other", 1_000, &t).unwrap();
    s.clear_login_failures("conf-other").unwrap();
    assert_eq!(s.login_failures("conf-other").unwrap(), None);
    assert_eq!(s.purge_login_failures(1_064).unwrap(), 0);
    assert_eq!(s.purge_login_failures(1_065).unwrap(), 1);
    assert_eq!(s.login_failures("conf-mallory").unwrap(), None);
}

#[allow(clippy::unwrap_used)]
fn conformance_oauth(s: &dyn Store) {
    use crate::oauth::clients::generate_secret;
    use crate::oauth::signing::{generate, SecretsKey, SigAlg};
    assert!(s.load_clients().unwrap().is_empty());
    let mut c = ClientRow::new("cl_1", "svc");
    c.grants = vec![Grant::ClientCredentials, Grant::RefreshToken];
    c.scopes = vec!["read:users".into(), "write".into()];
    c.audiences = vec!["https://api.test".into()];
    c.auth = ClientAuth::ClientSecretPost;
    c.token_ttl = Some(300);
    c.created_at = 5;
    c.current = Some(crate::keys::hash_key(&generate_secret()));
    s.insert_client(&c).unwrap();
    assert!(matches!(s.insert_client(&c), Err(StoreError::Conflict(_))));
    // another client with the same secret: a conflict too
    let mut twin = c.clone();
    twin.id = "cl_2".into();
    assert!(matches!(
        s.insert_client(&twin),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.load_clients().unwrap(), vec![c.clone()]);
    // a rotation with grace, then deletion: the row follows
    let old = c.current.unwrap();
    c.current = Some(crate::keys::hash_key("new"));
    c.previous = vec![(old, 99)];
    c.revoke_before = Some(50);
    c.revoke_from = Some(99);
    s.update_client(&c).unwrap();
    c.deleted_at = Some(70);
    c.cert_sha256 = Some([9u8; 32]);
    s.update_client(&c).unwrap();
    assert_eq!(s.load_clients().unwrap(), vec![c.clone()]);
    let mut ghost = c.clone();
    ghost.id = "cl_none".into();
    ghost.current = None;
    ghost.previous.clear();
    assert!(matches!(s.update_client(&ghost), Err(StoreError::NotFound)));
    // signing keys: the first goes in; a second only while no key activates after the bound
    let key = SecretsKey::generate().unwrap().0;
    let a = generate(SigAlg::ES256, &key, 10, 10).unwrap();
    assert!(s.insert_signing_key(&a, i64::MIN).unwrap());
    let b = generate(SigAlg::ES256, &key, 20, 100).unwrap();
    assert!(!s.insert_signing_key(&b, 0).unwrap());
    assert!(s.insert_signing_key(&b, 10).unwrap());
    let c2 = generate(SigAlg::ES256, &key, 30, 200).unwrap();
    assert!(!s.insert_signing_key(&c2, 30).unwrap());
    assert_eq!(s.load_signing_keys().unwrap(), vec![a, b]);
}
