//! The auth chain (STYLE.md: authenticate, then authorize).
//!
//! An authenticator returns `Ok(None)` when the request carries no credential of its kind (try
//! the next), `Ok(Some(identity))` when it proves one, and `Err` when a credential is present but
//! bad (stop: a present-but-invalid credential never falls through). Authorizers (client-certificate
//! requirement; scopes and rate limits come with the next issue) then run in order and the first
//! failure is the answer.

use crate::error::Reject;
use crate::listener::ConnInfo;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use std::sync::Arc;

/// How the request was authenticated; the value of `X-Auth-Method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    ApiKey,
    Jwt,
    Mtls,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Mtls => "mtls",
        }
    }
}

/// Who the request is, as proven by the chain.
#[derive(Debug, Clone)]
pub struct Identity {
    pub method: AuthMethod,
    /// Name of the authenticator that proved it.
    pub authenticator: Option<Arc<str>>,
    pub subject: Option<String>,
    pub scopes: Vec<String>,
    pub key_id: Option<String>,
    pub issuer: Option<String>,
}

impl Identity {
    pub fn anonymous() -> Identity {
        Identity {
            method: AuthMethod::None,
            authenticator: None,
            subject: None,
            scopes: Vec::new(),
            key_id: None,
            issuer: None,
        }
    }
}

/// A configured authenticator.
#[derive(Debug)]
pub enum Authenticator {
    /// Identity from the verified client certificate of the connection.
    Mtls,
}

#[derive(Debug)]
pub struct AuthnDef {
    pub name: Arc<str>,
    pub kind: Authenticator,
}

/// A route's `auth:` block, compiled.
#[derive(Debug)]
pub enum AuthPolicy {
    /// `auth: none`: no chain at all.
    None,
    Chain {
        /// Empty = anonymous (only the authorizers run).
        any_of: Vec<Arc<AuthnDef>>,
        require_client_cert: bool,
    },
}

/// What the chain looks at.
pub struct AuthRequest<'a> {
    pub headers: &'a HeaderMap,
    pub conn: &'a ConnInfo,
}

impl AuthnDef {
    fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Option<Identity>, Reject> {
        match self.kind {
            Authenticator::Mtls => Ok(req.conn.client_cert.as_ref().map(|c| Identity {
                method: AuthMethod::Mtls,
                authenticator: Some(self.name.clone()),
                subject: Some(c.subject.clone()),
                scopes: Vec::new(),
                key_id: None,
                issuer: None,
            })),
        }
    }

    fn challenge(&self) -> &'static str {
        match self.kind {
            Authenticator::Mtls => "",
        }
    }
}

/// Runs the chain. `Ok` carries the identity to forward; `Err` is the response to send instead.
pub fn evaluate(policy: &AuthPolicy, req: &AuthRequest<'_>) -> Result<Identity, Reject> {
    let (any_of, require_client_cert) = match policy {
        AuthPolicy::None => return Ok(Identity::anonymous()),
        AuthPolicy::Chain {
            any_of,
            require_client_cert,
        } => (any_of, *require_client_cert),
    };
    let mut identity = None;
    for a in any_of {
        if let Some(id) = a.authenticate(req)? {
            identity = Some(id);
            break;
        }
    }
    let identity = match identity {
        Some(id) => id,
        None if any_of.is_empty() => Identity::anonymous(),
        None => return Err(missing_credential(any_of)),
    };
    if require_client_cert && req.conn.client_cert.is_none() {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            "client_certificate_required",
            "client_cert_missing",
            "this route requires a verified client certificate",
        ));
    }
    Ok(identity)
}

fn missing_credential(any_of: &[Arc<AuthnDef>]) -> Reject {
    let challenges: Vec<&str> = any_of
        .iter()
        .map(|a| a.challenge())
        .filter(|c| !c.is_empty())
        .collect();
    let only_mtls = challenges.is_empty();
    let mut r = if only_mtls {
        Reject::new(
            StatusCode::FORBIDDEN,
            "client_certificate_required",
            "client_cert_missing",
            "this route requires a verified client certificate",
        )
    } else {
        Reject::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "credential_missing",
            "this route requires a credential",
        )
    };
    for c in challenges {
        r = r.with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    r
}
