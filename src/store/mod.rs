//! The key store behind a trait: keys (hashes and metadata), JWT revocations, the admin audit
//! trail and settings. The embedded default is SQLite; the request path never touches it (all
//! keys live in memory), only start-up and the admin path do.

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
    fn purge_revocations(&self, now: i64) -> StoreResult<usize>;
    fn audit(&self, actor: &str, action: &str, target: &str, detail: &str) -> StoreResult<()>;
    fn setting(&self, name: &str) -> StoreResult<Option<String>>;
    fn set_setting(&self, name: &str, value: &str) -> StoreResult<()>;
    /// False while the store cannot be reached (reported by `/readyz` and `/metrics`).
    fn is_up(&self) -> bool {
        true
    }
}
