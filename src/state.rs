//! State that outlives every config snapshot: the API keys, the JWT denylist and the
//! authorization server's clients and signing keys. The store fills it at start and on every
//! change; reloads keep it.

use crate::auth::revocation::Revocations;
use crate::keys::KeyRing;
use crate::oauth::OauthState;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Shared {
    pub keys: Arc<KeyRing>,
    pub revocations: Arc<Revocations>,
    pub oauth: Arc<OauthState>,
    /// The gateway's own key for identity assertions when there is no `oauth_server`.
    pub own_keys: Arc<crate::oauth::signing::OwnKeys>,
}
