//! OAuth clients of the built-in authorization server (SPEC section 7): their registration as
//! stored, their secrets' format (`pcs_`, 32 random base62 characters and a 6-character
//! checksum, like API keys) and the in-memory ring the token endpoint authenticates clients
//! against and the `jwt` authenticator checks a token's client in. Only SHA-256 hashes of secrets
//! are kept; a plaintext exists once, in the create/rotate answer.

use crate::keys::{checksum, hash_key, random_base62, Hash};
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The grants a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    ClientCredentials,
    AuthorizationCode,
    RefreshToken,
}

impl Grant {
    pub const ALL: [Grant; 3] = [
        Grant::ClientCredentials,
        Grant::AuthorizationCode,
        Grant::RefreshToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::AuthorizationCode => "authorization_code",
            Grant::RefreshToken => "refresh_token",
        }
    }

    pub fn parse(s: &str) -> Option<Grant> {
        Grant::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// How a client proves itself at the token, revocation and introspection endpoints (RFC 7591
/// `token_endpoint_auth_method`). A client uses exactly the method it is registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the RFC 6749 2.3.1 form-urlencoding of id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// RFC 8705: the listener's mutual TLS, the certificate's SHA-256 registered on the client.
    TlsClientAuth,
    /// A public client (no secret; authorization code with PKCE only).
    None,
}

impl ClientAuth {
    pub const ALL: [ClientAuth; 4] = [
        ClientAuth::ClientSecretBasic,
        ClientAuth::ClientSecretPost,
        ClientAuth::TlsClientAuth,
        ClientAuth::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::ClientSecretBasic => "client_secret_basic",
            ClientAuth::ClientSecretPost => "client_secret_post",
            ClientAuth::TlsClientAuth => "tls_client_auth",
            ClientAuth::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<ClientAuth> {
        ClientAuth::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn has_secret(self) -> bool {
        matches!(
            self,
            ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost
        )
    }
}

/// A new client secret: `pcs_` + 32 random base62 + 6-character checksum (>= 190 bits).
pub fn generate_secret() -> String {
    let body = format!("pcs_{}", random_base62(32));
    let sum = checksum(&body);
    body + &sum
}

/// A new client id: `cl_` + 20 random base62.
pub fn generate_id() -> String {
    format!("cl_{}", random_base62(20))
}

/// Whether `s` is one of our secrets with a wrong checksum (refused without a lookup; a secret
/// imported from another server has any shape).
pub fn bad_checksum(s: &str) -> bool {
    s.len() == 42
        && s.starts_with("pcs_")
        && s.as_bytes()[4..].iter().all(u8::is_ascii_alphanumeric)
        && checksum(&s[..36]) != s[36..]
}

/// A client as stored: registration and secret hashes, never a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub grants: Vec<Grant>,
    pub scopes: Vec<String>,
    /// The audiences its tokens may carry; the first is the default (RFC 8707 `resource` picks
    /// among them).
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub auth: ClientAuth,
    /// `tls_client_auth`: the SHA-256 of the client certificate (DER).
    pub cert_sha256: Option<Hash>,
    /// Its access tokens' lifetime in seconds, instead of the server's.
    pub token_ttl: Option<i64>,
    pub first_party: bool,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
    /// Tokens issued before this time are refused (set by a rotation without grace, and when
    /// a rotation's grace ends: see [`ClientRecord::token_allowed`]).
    pub revoke_before: Option<i64>,
    /// When `revoke_before` takes effect (the end of a rotation's grace).
    pub revoke_from: Option<i64>,
    /// The current secret's hash (none for `tls_client_auth` and public clients).
    pub current: Option<Hash>,
    /// Earlier secrets still accepted until their time (unix seconds).
    pub previous: Vec<(Hash, i64)>,
}

impl ClientRow {
    /// A client with what the tests, benches and the admin API start from.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> ClientRow {
        ClientRow {
            id: id.into(),
            name: name.into(),
            grants: vec![Grant::ClientCredentials],
            scopes: Vec::new(),
            audiences: Vec::new(),
            redirect_uris: Vec::new(),
            auth: ClientAuth::ClientSecretBasic,
            cert_sha256: None,
            token_ttl: None,
            first_party: false,
            created_at: 0,
            deleted_at: None,
            revoke_before: None,
            revoke_from: None,
            current: None,
            previous: Vec::new(),
        }
    }

    pub fn status(&self) -> &'static str {
        if self.deleted_at.is_some() {
            "deleted"
        } else {
            "active"
        }
    }
}

/// Why a client could not authenticate (for logs and the audit; the client only ever hears
/// `invalid_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRefusal {
    Unknown,
    Deleted,
    /// Authenticated another way than the client is registered for.
    WrongMethod,
    BadSecret,
    /// An earlier secret whose grace period has ended.
    Rotated,
    BadCertificate,
}

impl ClientRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRefusal::Unknown => "client_unknown",
            ClientRefusal::Deleted => "client_deleted",
            ClientRefusal::WrongMethod => "client_auth_method_mismatch",
            ClientRefusal::BadSecret => "client_secret_invalid",
            ClientRefusal::Rotated => "client_secret_rotated",
            ClientRefusal::BadCertificate => "client_certificate_mismatch",
        }
    }
}

/// A client in memory.
#[derive(Debug)]
pub struct ClientRecord {
    pub row: ClientRow,
    pub id: Arc<str>,
    /// The scopes joined with spaces (the token's `scope` when none is asked for).
    pub all_scopes: String,
}

impl ClientRecord {
    pub fn new(row: ClientRow) -> ClientRecord {
        ClientRecord {
            id: Arc::from(row.id.as_str()),
            all_scopes: row.scopes.join(" "),
            row,
        }
    }

    pub fn allows(&self, g: Grant) -> bool {
        self.row.grants.contains(&g)
    }

    /// Checks a presented secret (constant time over the SHA-256 of each candidate).
    pub fn check_secret(&self, secret: &str, now: i64) -> Result<(), ClientRefusal> {
        if self.row.deleted_at.is_some() {
            return Err(ClientRefusal::Deleted);
        }
        let h = hash_key(secret);
        let eq = |a: &Hash| aws_lc_rs::constant_time::verify_slices_are_equal(a, &h).is_ok();
        if self.row.current.as_ref().is_some_and(eq) {
            return Ok(());
        }
        match self.row.previous.iter().find(|(p, _)| eq(p)) {
            Some((_, until)) if *until > now => Ok(()),
            Some(_) => Err(ClientRefusal::Rotated),
            None => Err(ClientRefusal::BadSecret),
        }
    }

    /// Checks the certificate of a `tls_client_auth` client (its DER's SHA-256).
    pub fn check_certificate(&self, sha256: &Hash) -> Result<(), ClientRefusal> {
        if self.row.deleted_at.is_some() {
            return Err(ClientRefusal::Deleted);
        }
        match &self.row.cert_sha256 {
            Some(want)
                if aws_lc_rs::constant_time::verify_slices_are_equal(want, sha256).is_ok() =>
            {
                Ok(())
            }
            _ => Err(ClientRefusal::BadCertificate),
        }
    }

    /// Until when a token issued to this client at `iat` may be used: never once the client is
    /// deleted (`f64::NEG_INFINITY`); until a covering rotation's grace ends (a rotation at
    /// second `before` covers tokens issued up to that second, see [`ClientRecord::issue_time`];
    /// without grace it ends at once); else for good (`f64::INFINITY`).
    pub fn token_allowed_until(&self, iat: f64) -> f64 {
        if self.row.deleted_at.is_some() {
            return f64::NEG_INFINITY;
        }
        match (self.row.revoke_before, self.row.revoke_from) {
            (Some(before), from) if iat <= before as f64 => {
                from.map_or(f64::NEG_INFINITY, |f| f as f64)
            }
            _ => f64::INFINITY,
        }
    }

    /// Whether a token issued to this client at `iat` may still be used at `now`.
    pub fn token_allowed(&self, iat: f64, now: f64) -> bool {
        now < self.token_allowed_until(iat)
    }

    /// The `iat` of a token issued at `now`: after the second of a rotation that revokes older
    /// tokens, so a token issued in that same second, with the new secret, is not covered by it
    /// (`iat` is at most a second ahead; verifiers allow clock skew).
    pub fn issue_time(&self, now: i64) -> i64 {
        self.row.revoke_before.map_or(now, |b| now.max(b + 1))
    }

    /// The lifetime of this client's access tokens.
    pub fn ttl(&self, default: i64) -> i64 {
        self.row.token_ttl.unwrap_or(default)
    }
}

/// All clients, in memory, shared by every listener and reload.
#[derive(Debug, Default)]
pub struct ClientRing {
    by_id: DashMap<Arc<str>, Arc<ClientRecord>>,
    /// Bumped after every change: a verified-token cache entry made under another generation is
    /// verified again (so a cache hit needs no client lookup).
    generation: AtomicU64,
}

impl ClientRing {
    pub fn put(&self, row: ClientRow) {
        let rec = Arc::new(ClientRecord::new(row));
        self.by_id.insert(rec.id.clone(), rec);
        // after the change: a verifier that read the old generation stored what it checked
        // under it, and misses from now on
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn get(&self, id: &str) -> Option<Arc<ClientRecord>> {
        self.by_id.get(id).map(|r| r.clone())
    }

    /// Whether a token of client `id` issued at `iat` passes at `now`, and until when it will:
    /// `None` when the client is gone or a revocation covers the token; else the end of a
    /// rotation's grace that will cover it, or `f64::INFINITY`. One lookup, no reference taken.
    pub fn token_allowed_until(&self, id: &str, iat: f64, now: f64) -> Option<f64> {
        let until = self.by_id.get(id)?.token_allowed_until(iat);
        (now < until).then_some(until)
    }

    pub fn all(&self) -> Vec<Arc<ClientRecord>> {
        let mut v: Vec<_> = self.by_id.iter().map(|r| r.clone()).collect();
        v.sort_by(|a, b| (a.row.created_at, &a.id).cmp(&(b.row.created_at, &b.id)));
        v
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The longest access-token lifetime any client has (retired signing keys stay published
    /// that long).
    pub fn max_ttl(&self, default: i64) -> i64 {
        self.by_id
            .iter()
            .filter_map(|r| r.row.token_ttl)
            .fold(default, i64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_documented_shape() {
        let s = generate_secret();
        assert_eq!(s.len(), 42);
        assert!(s.starts_with("pcs_"));
        assert!(!bad_checksum(&s));
        let mut b = s.clone().into_bytes();
        b[10] = if b[10] == b'a' { b'b' } else { b'a' };
        assert!(bad_checksum(&String::from_utf8(b).unwrap()));
        assert!(!bad_checksum("an imported secret: anything goes"));
        assert!(generate_id().starts_with("cl_"));
        assert_eq!(generate_id().len(), 23);
    }

    #[test]
    fn secrets_rotation_and_revocation_times() {
        let (old, new) = (generate_secret(), generate_secret());
        let mut row = ClientRow::new("cl_a", "a");
        row.current = Some(hash_key(&new));
        row.previous = vec![(hash_key(&old), 200)];
        let rec = ClientRecord::new(row.clone());
        assert_eq!(rec.check_secret(&new, 100), Ok(()));
        assert_eq!(rec.check_secret(&old, 150), Ok(()));
        assert_eq!(rec.check_secret(&old, 200), Err(ClientRefusal::Rotated));
        assert_eq!(rec.check_secret("nope", 100), Err(ClientRefusal::BadSecret));
        // a revocation of what was issued before 150, in force from 200
        row.revoke_before = Some(150);
        row.revoke_from = Some(200);
        let rec = ClientRecord::new(row.clone());
        assert!(rec.token_allowed(140.0, 199.0));
        assert!(!rec.token_allowed(140.0, 200.0));
        assert!(!rec.token_allowed(150.0, 300.0));
        assert!(rec.token_allowed(151.0, 300.0));
        assert_eq!(rec.issue_time(150), 151);
        assert_eq!(rec.issue_time(160), 160);
        row.deleted_at = Some(300);
        let rec = ClientRecord::new(row);
        assert!(!rec.token_allowed(400.0, 401.0));
        assert_eq!(rec.check_secret(&new, 301), Err(ClientRefusal::Deleted));
    }
}
