//! State that outlives every config snapshot: the API keys and the JWT denylist. The store fills
//! it at start and on every change; reloads keep it.

use crate::auth::revocation::Revocations;
use crate::keys::KeyRing;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Shared {
    pub keys: Arc<KeyRing>,
    pub revocations: Arc<Revocations>,
}
