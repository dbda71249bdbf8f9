//! Client authentication at the token, revocation and introspection endpoints (RFC 6749 2.3,
//! RFC 8705): `client_secret_basic`, `client_secret_post`, `tls_client_auth` over the listener's
//! mutual TLS, and `none` for public clients. A client uses exactly the method it is registered
//! with, and only one method per request. Failures are `invalid_client` (401 with
//! `WWW-Authenticate: Basic`); past `failed_auth_limit`, a client is held back from that address
//! for a while, whatever it presents.

use super::form::{basic, Form};
use crate::config::oauth::OauthServerCfg;
use crate::conn::ConnInfo;
use crate::error::{Reason, Reject};
use crate::oauth::clients::{bad_checksum, ClientAuth, ClientRecord, ClientRefusal};
use crate::oauth::OauthState;
use http::header::{self, HeaderMap, HeaderValue};
use std::net::IpAddr;
use std::sync::Arc;

/// A client that proved itself, and how.
#[derive(Debug)]
pub struct Authenticated {
    pub client: Arc<ClientRecord>,
    pub method: ClientAuth,
}

/// A refused authentication: the answer, and what the audit records.
#[derive(Debug)]
pub struct Refused {
    pub reject: Reject,
    /// The client id presented, when there was one (never a secret).
    pub client_id: Option<String>,
    pub why: &'static str,
}

pub fn invalid_client(description: &'static str) -> Reject {
    Reject::new(Reason::OauthInvalidClient, description).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"portcullis\""),
    )
}

pub fn invalid_request(description: impl Into<std::borrow::Cow<'static, str>>) -> Reject {
    Reject::new(Reason::OauthInvalidRequest, description)
}

fn refused(reject: Reject, client_id: Option<&str>, why: &'static str) -> Refused {
    Refused {
        reject,
        client_id: client_id.map(str::to_owned),
        why,
    }
}

/// What the request presents.
enum Presented<'a> {
    Secret {
        id: String,
        secret: String,
        /// Basic: the secret as sent, when it differs from its form-decoding.
        raw: Option<String>,
        method: ClientAuth,
    },
    /// A client id alone: `tls_client_auth` when the connection has a verified certificate,
    /// else a public client.
    IdOnly(&'a str),
}

fn presented<'a>(headers: &HeaderMap, form: &'a Form) -> Result<Presented<'a>, Refused> {
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    let (header, second) = (auth.next(), auth.next());
    let form_id = form
        .one("client_id")
        .map_err(|e| refused(invalid_request(e), None, "duplicate_parameter"))?;
    let form_secret = form
        .one("client_secret")
        .map_err(|e| refused(invalid_request(e), form_id, "duplicate_parameter"))?;
    if second.is_some() {
        return Err(refused(
            invalid_request("more than one Authorization header"),
            form_id,
            "duplicate_parameter",
        ));
    }
    match (header, form_secret) {
        (Some(_), Some(_)) => Err(refused(
            invalid_request("more than one client authentication method (Basic and client_secret)"),
            form_id,
            "two_auth_methods",
        )),
        (Some(h), None) => {
            let Some(b) = basic(h.as_bytes()) else {
                return Err(refused(
                    invalid_client("the Authorization header is not HTTP Basic client credentials"),
                    form_id,
                    "client_auth_malformed",
                ));
            };
            if form_id.is_some_and(|f| f != b.id) {
                return Err(refused(
                    invalid_request("client_id differs from the authenticated client"),
                    Some(&b.id),
                    "client_id_mismatch",
                ));
            }
            Ok(Presented::Secret {
                id: b.id,
                secret: b.secret,
                raw: b.raw_secret,
                method: ClientAuth::ClientSecretBasic,
            })
        }
        (None, Some(secret)) => {
            let Some(id) = form_id else {
                return Err(refused(
                    invalid_request("client_secret without client_id"),
                    None,
                    "client_id_missing",
                ));
            };
            Ok(Presented::Secret {
                id: id.to_owned(),
                secret: secret.to_owned(),
                raw: None,
                method: ClientAuth::ClientSecretPost,
            })
        }
        (None, None) => match form_id {
            Some(id) => Ok(Presented::IdOnly(id)),
            None => Err(refused(
                invalid_client("client authentication is required"),
                None,
                "client_auth_missing",
            )),
        },
    }
}

/// Checks what was presented against the client's registration. `registered_only`: the token
/// endpoint, where a client uses its registered method (RFC 7591); at revocation and
/// introspection a client with a secret may send it either way (RFC 7009 and 7662 ask only for
/// RFC 6749 2.3 client authentication, and libraries use Basic there by default).
fn check(
    client: &ClientRecord,
    p: &Presented<'_>,
    conn: &ConnInfo,
    registered_only: bool,
    now: i64,
) -> Result<ClientAuth, ClientRefusal> {
    match p {
        Presented::Secret {
            secret,
            raw,
            method,
            ..
        } => {
            let either = !registered_only && client.row.auth.has_secret();
            if client.row.auth != *method && !either {
                return Err(ClientRefusal::WrongMethod);
            }
            match client.check_secret(secret, now) {
                Ok(()) => Ok(*method),
                Err(e) => match raw {
                    Some(r) if client.check_secret(r, now).is_ok() => Ok(*method),
                    _ => Err(e),
                },
            }
        }
        Presented::IdOnly(_) => match (client.row.auth, &conn.client_cert) {
            (ClientAuth::TlsClientAuth, Some(cert)) => {
                let mut got = [0u8; 32];
                for (i, b) in got.iter_mut().enumerate() {
                    *b = cert
                        .sha256
                        .get(2 * i..2 * i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .unwrap_or(0);
                }
                client
                    .check_certificate(&got)
                    .map(|()| ClientAuth::TlsClientAuth)
            }
            (ClientAuth::TlsClientAuth, None) => Err(ClientRefusal::BadCertificate),
            (ClientAuth::None, _) if client.row.deleted_at.is_none() => Ok(ClientAuth::None),
            (ClientAuth::None, _) => Err(ClientRefusal::Deleted),
            _ => Err(ClientRefusal::WrongMethod),
        },
    }
}

/// Authenticates the client of an endpoint request (`registered_only`: see [`check`]).
#[allow(clippy::too_many_arguments)]
pub fn authenticate(
    cfg: &OauthServerCfg,
    state: &OauthState,
    conn: &ConnInfo,
    headers: &HeaderMap,
    form: &Form,
    ip: IpAddr,
    registered_only: bool,
    now: i64,
) -> Result<Authenticated, Refused> {
    let p = presented(headers, form)?;
    let id = match &p {
        Presented::Secret { id, .. } => id.as_str(),
        Presented::IdOnly(id) => id,
    };
    let hold = format!("{id}|{ip}");
    if state.is_throttled(&hold, now) {
        return Err(refused(
            Reject::new(
                Reason::OauthClientThrottled,
                "too many failed authentications of this client from this address; retry later",
            ),
            Some(id),
            "client_throttled",
        ));
    }
    if let Presented::Secret { secret, .. } = &p {
        // our format, wrong checksum: refused without a lookup
        if bad_checksum(secret) {
            return Err(failed(cfg, state, &hold, id, ClientRefusal::BadSecret, now));
        }
    }
    let outcome = match state.clients.get(id) {
        Some(client) => check(&client, &p, conn, registered_only, now)
            .map(|method| Authenticated { client, method }),
        None => {
            // the same work as for a known client: no timing tells ids apart
            if let Presented::Secret { secret, .. } = &p {
                let _ = crate::keys::hash_key(secret);
            }
            Err(ClientRefusal::Unknown)
        }
    };
    outcome.map_err(|why| failed(cfg, state, &hold, id, why, now))
}

/// Counts a failure against `failed_auth_limit`; past it, the client is held back from this
/// address until its bucket has room again.
fn failed(
    cfg: &OauthServerCfg,
    state: &OauthState,
    hold: &str,
    id: &str,
    why: ClientRefusal,
    now: i64,
) -> Refused {
    if let Err(limited) = cfg.failed_auth.check(hold) {
        let wait = limited
            .headers
            .iter()
            .find(|(k, _)| k == header::RETRY_AFTER)
            .and_then(|(_, v)| v.to_str().ok()?.parse::<i64>().ok())
            .unwrap_or(60);
        state.throttle(hold, now + wait.max(1));
    }
    refused(
        invalid_client("client authentication failed"),
        Some(id),
        why.as_str(),
    )
}
