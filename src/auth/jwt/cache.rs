//! The verified-token cache: keyed by SHA-256 of the token, bounded, and never serving an entry
//! past the token's `exp` (+ leeway) or one verified under an older key set.

use crate::auth::evict::{forget_down_to, keep_after_eviction};
use crate::auth::identity::Identity;
use dashmap::DashMap;
use std::sync::Arc;

#[derive(Clone)]
pub struct CachedIdentity {
    pub identity: Arc<Identity>,
    /// Shared, so that a hit copies no string.
    pub jti: Option<Arc<str>>,
    /// Until when the verification holds apart from `exp`: for a built-in server's token, the
    /// end of a client rotation's grace that covers it (`f64::INFINITY` otherwise). The cache
    /// entry ends then, so a hit needs no client lookup (see `JwtAuthn::cached`).
    pub valid_until: f64,
}

struct Entry {
    value: CachedIdentity,
    expires: f64,
    /// The key set generation it was verified under (a rotated-away key must not keep passing).
    generation: u64,
}

/// Keyed by SHA-256 of the token; bounded; entries never outlive the token's `exp` (+ leeway).
pub struct VerifyCache {
    map: DashMap<[u8; 32], Entry>,
    max_entries: usize,
    /// Where the next eviction starts.
    cursor: std::sync::atomic::AtomicUsize,
}

impl VerifyCache {
    pub fn new(max_entries: usize) -> VerifyCache {
        VerifyCache {
            map: DashMap::new(),
            max_entries,
            cursor: Default::default(),
        }
    }

    pub fn get(&self, token: &str, now: f64, generation: u64) -> Option<CachedIdentity> {
        let key = crate::digest::sha256(token.as_bytes());
        let hit = self.map.get(&key)?;
        if hit.expires < now || hit.generation != generation {
            drop(hit);
            self.map.remove(&key);
            return None;
        }
        Some(hit.value.clone())
    }

    pub fn insert(&self, token: &str, value: CachedIdentity, expires: f64, generation: u64) {
        if self.map.len() >= self.max_entries {
            self.evict();
        }
        self.map.insert(
            crate::digest::sha256(token.as_bytes()),
            Entry {
                value,
                expires,
                generation,
            },
        );
    }

    pub fn clear(&self) {
        self.map.clear();
    }

    /// Drops expired entries; if still full, an arbitrary sixteenth (cheap, and a flood of valid
    /// tokens can only ever churn the cache, never grow it).
    fn evict(&self) {
        let now = crate::clock::now();
        self.map.retain(|_, e| e.expires >= now);
        if self.map.len() >= self.max_entries {
            forget_down_to(
                &self.map,
                keep_after_eviction(self.max_entries),
                &self.cursor,
            );
        }
    }

    /// Periodic sweep of expired entries.
    pub fn sweep(&self, now: f64) {
        self.map.retain(|_, e| e.expires >= now);
    }
}
