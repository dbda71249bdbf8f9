//! The auth chain (STYLE.md: authenticate, then authorize; Ory Oathkeeper's pipeline).
//!
//! A route's `auth:` block compiles to an [`chain::AuthPolicy`]; [`chain::evaluate`] runs it:
//! - the authenticators of `any_of`, in order ([`authenticator::Authenticator`]). Each returns
//!   `Ok(None)` when the request carries no credential of its kind (try the next),
//!   `Ok(Some(identity))` when it proves one ([`identity::Identity`]), and `Err` when a credential
//!   is present but bad (stop: a present-but-invalid credential never falls through);
//! - then the authorizers, in order: client-certificate requirement, [`scope`], [`rate_limit`]
//!   (shared through Redis in cluster mode: [`shared_limit`]). The first failure is the answer.
//!
//! The kinds: [`api_key`] (keys from the in-memory [`crate::keys`] ring), [`jwt`] (static keys,
//! JWKS, OIDC discovery; [`revocation`] is its denylist) and [`mtls`].
//!
//! # Adding an authenticator
//! 1. A file `src/auth/NAME.rs` with the authenticator's type, `compile` from its config section,
//!    and `impl Authenticate` ([`request::Authenticate`]: kind, challenge, credential sources,
//!    `authenticate`).
//! 2. A variant of `RawAuthenticator` in `src/config/raw.rs` (its `type:` and fields).
//! 3. A variant of [`authenticator::Authenticator`], its arm in that file's `each!` macro, and its
//!    arm in `Authenticator::compile`.
//!
//! The chain, the challenges of a 401, credential stripping before forwarding, `explain` and the
//! logs then pick it up.

pub mod api_key;
pub mod authenticator;
pub mod chain;
pub mod evict;
pub mod identity;
pub mod jwt;
pub mod mtls;
pub mod rate_limit;
pub mod request;
pub mod revocation;
pub mod scope;
pub mod shared_limit;
