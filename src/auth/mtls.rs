//! The `mtls` authenticator: the identity of the client certificate the TLS handshake verified
//! (against the listener's `client_auth.ca`). A connection without one carries no credential of
//! this kind.

use crate::auth::identity::{no_scopes, AuthMethod, Identity};
use crate::auth::request::{AuthRequest, Authenticate};
use crate::error::Reject;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct MtlsAuthn {
    /// The authenticator's name, for the identity it proves.
    pub name: Arc<str>,
}

impl MtlsAuthn {
    /// `authenticators.NAME` of `type: mtls` (no options yet).
    pub fn compile(name: &str) -> MtlsAuthn {
        MtlsAuthn {
            name: Arc::from(name),
        }
    }
}

impl Authenticate for MtlsAuthn {
    fn kind(&self) -> &'static str {
        "mtls"
    }

    fn challenge(&self) -> Option<&'static str> {
        None
    }

    async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Option<Arc<Identity>>, Reject> {
        Ok(req.conn.client_cert.as_ref().map(|c| {
            Arc::new(Identity {
                method: AuthMethod::Mtls,
                authenticator: Some(self.name.clone()),
                subject: Some(Arc::from(c.subject.as_str())),
                scopes: no_scopes(),
                key_id: None,
                issuer: None,
                extra_headers: Vec::new(),
                own_limit: None,
            })
        }))
    }
}
