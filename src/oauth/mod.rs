//! What the built-in authorization server keeps in memory, across reloads (SPEC section 7): its
//! [`clients`] and its [`signing`] keys. The store fills them at start and on every change (in
//! cluster mode through the change feed); the endpoints that issue tokens live in
//! [`crate::oauth_server`], and the `jwt` authenticator with `oauth_server: true` verifies
//! tokens against the same keys and clients, without an HTTP fetch.

pub mod clients;
pub mod signing;
pub mod users;

use clients::ClientRing;
use dashmap::DashMap;
use signing::SigningKeys;

/// Most client/address pairs held back at once: a flood of made-up client ids cannot grow the
/// map further (past it, no new hold is placed until a sweep frees room; the endpoints'
/// `pre_auth_rate_limit` per address still applies).
const MAX_THROTTLED: usize = 100_000;

#[derive(Debug, Default)]
pub struct OauthState {
    pub clients: ClientRing,
    pub keys: SigningKeys,
    /// `client_id|address` -> until when (unix seconds) every authentication of that client
    /// from that address is refused, after too many failed ones (`failed_auth_limit`).
    pub throttled: DashMap<String, i64>,
}

impl OauthState {
    /// Whether `key` is held back at `now`.
    pub fn is_throttled(&self, key: &str, now: i64) -> bool {
        !self.throttled.is_empty() && self.throttled.get(key).is_some_and(|u| *u > now)
    }

    pub fn throttle(&self, key: &str, until: i64) {
        if self.throttled.len() < MAX_THROTTLED {
            self.throttled.insert(key.to_owned(), until);
        }
    }

    /// Forgets holds that have ended (upkeep).
    pub fn sweep(&self, now: i64) {
        self.throttled.retain(|_, until| *until > now);
    }
}
