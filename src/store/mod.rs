//! The key store behind a trait: keys (hashes and metadata), JWT revocations, the admin audit
//! trail and settings. The embedded default is SQLite; the request path never touches it (all
//! keys live in memory), only start-up and the admin path do.
pub mod pg_tls;
pub mod postgres;
pub mod sqlite;

use crate::keys::{Hash, KeyRow};

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
    assert!(s.is_up());
}
