//! The configured authenticators: one enum over the kinds, each kind in a file of its own with the
//! shape of [`Authenticate`], and the compiler of an `authenticators` entry.

use crate::auth::api_key::ApiKeyAuthn;
use crate::auth::identity::Identity;
use crate::auth::jwt::jwks::JwksPool;
use crate::auth::jwt::{IssuerInfo, JwtAuthn, RouteJwt};
use crate::auth::mtls::MtlsAuthn;
use crate::auth::request::{AuthRequest, Authenticate, CredentialSource};
use crate::config::issues::Issues;
use crate::config::raw::RawAuthenticator;
use crate::error::Reject;
use crate::state::Shared;
use std::path::Path;
use std::sync::Arc;

/// One authenticator of a kind listed here. Adding a kind: see the `auth` module's doc.
#[derive(Debug, Clone)]
pub enum Authenticator {
    ApiKey(Arc<ApiKeyAuthn>),
    Jwt(RouteJwt),
    Mtls(Arc<MtlsAuthn>),
}

/// Calls `$body` with `$a` bound to the authenticator inside whatever kind `$self` is.
macro_rules! each {
    ($self:expr, $a:ident => $body:expr) => {
        match $self {
            Authenticator::ApiKey($a) => $body,
            Authenticator::Jwt($a) => $body,
            Authenticator::Mtls($a) => $body,
        }
    };
}

impl Authenticator {
    pub fn kind(&self) -> &'static str {
        each!(self, a => a.kind())
    }

    pub fn challenge(&self) -> Option<&'static str> {
        each!(self, a => a.challenge())
    }

    pub fn credential_sources(&self) -> &[CredentialSource] {
        each!(self, a => a.credential_sources())
    }

    pub async fn authenticate(
        &self,
        req: &AuthRequest<'_>,
    ) -> Result<Option<Arc<Identity>>, Reject> {
        each!(self, a => a.authenticate(req).await)
    }

    /// `authenticators.NAME`. `jwks` gathers the remote key sets the config uses.
    pub fn compile(
        name: &str,
        raw: &RawAuthenticator,
        base: &Path,
        shared: &Shared,
        issuer: Option<&IssuerInfo>,
        jwks: &mut JwksPool<'_>,
        issues: &mut Issues,
    ) -> Option<Authenticator> {
        Some(match raw {
            RawAuthenticator::ApiKey { envs } => Authenticator::ApiKey(Arc::new(
                ApiKeyAuthn::compile(name, envs.as_deref(), &shared.keys, issues),
            )),
            RawAuthenticator::Jwt(j) => {
                let authn = JwtAuthn::compile(name, j, base, shared, issuer, jwks, issues)?;
                Authenticator::Jwt(RouteJwt::alone(Arc::new(authn)))
            }
            RawAuthenticator::Mtls(m) => {
                Authenticator::Mtls(Arc::new(MtlsAuthn::compile(name, m, issues)))
            }
        })
    }
}

/// A configured authenticator and its name.
#[derive(Debug, Clone)]
pub struct AuthnDef {
    pub name: Arc<str>,
    pub kind: Authenticator,
}
