//! Rejections: every way a request can be refused. Each has one [`Reason`], which knows its stable
//! snake_case name (logs, metrics, the audit log), the public `error` code, the HTTP status and
//! where the fault lies ([`Source`]). A [`Reject`] adds the description and response headers.

use http::{HeaderName, HeaderValue, StatusCode};
use std::borrow::Cow;

/// Where a refusal comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The request itself: malformed, too large, too slow, too many, or nowhere to go.
    Client,
    /// The auth chain: a credential missing, invalid, or without the right to this route.
    Credential,
    /// The upstream failed after the request was allowed.
    Upstream,
    /// The gateway could not decide (a shared dependency is down).
    Internal,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Client => "client",
            Source::Credential => "credential",
            Source::Upstream => "upstream",
            Source::Internal => "internal",
        }
    }
}

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $status:ident, $error:literal, $source:ident; )*) => {
        /// Why a request was refused. The name is stable: dashboards and alerts match on it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[$doc])* $variant, )*
        }

        impl Reason {
            /// Every reason, in the order of the README's table.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),*];

            /// The stable snake_case name, in logs, metrics and the audit log.
            pub fn name(self) -> &'static str {
                match self { $(Reason::$variant => $name,)* }
            }

            /// The HTTP status of the answer.
            pub fn status(self) -> StatusCode {
                match self { $(Reason::$variant => StatusCode::$status,)* }
            }

            /// The public `error` code of the JSON body.
            pub fn error(self) -> &'static str {
                match self { $(Reason::$variant => $error,)* }
            }

            pub fn source(self) -> Source {
                match self { $(Reason::$variant => Source::$source,)* }
            }
        }
    };
}

reasons! {
    // The request
    /// `CONNECT` is not proxied.
    ConnectRefused = "connect_refused", BAD_REQUEST, "invalid_request", Client;
    /// The request target is longer than 8 KiB.
    UriTooLong = "uri_too_long", URI_TOO_LONG, "uri_too_long", Client;
    /// The request head is over `limits.max_header_bytes`, or has more than 100 header fields.
    HeaderTooLarge = "header_too_large", REQUEST_HEADER_FIELDS_TOO_LARGE, "header_too_large", Client;
    /// A transfer coding other than `chunked`.
    UnsupportedTransferCoding = "unsupported_transfer_coding", NOT_IMPLEMENTED, "not_implemented", Client;
    /// More than one `Host` header.
    MultipleHost = "multiple_host", BAD_REQUEST, "invalid_request", Client;
    /// A Host that is not a host, or carries user information.
    BadHost = "bad_host", BAD_REQUEST, "invalid_request", Client;
    /// `Host` and the request target's authority disagree.
    HostMismatch = "host_mismatch", BAD_REQUEST, "invalid_request", Client;
    /// An HTTP/1.1 or HTTP/2 request without a host.
    MissingHost = "missing_host", BAD_REQUEST, "invalid_request", Client;
    /// The Host names another server than the TLS SNI.
    SniHostMismatch = "sni_host_mismatch", MISDIRECTED_REQUEST, "misdirected_request", Client;
    /// The path does not start with `/`.
    PathNotAbsolute = "path_not_absolute", BAD_REQUEST, "invalid_request", Client;
    /// A `%` not followed by two hex digits.
    PathBadPercent = "path_bad_percent", BAD_REQUEST, "invalid_request", Client;
    /// An encoded `/`, `\` or NUL (`%2f`, `%5c`, `%00`).
    PathEncodedSeparator = "path_encoded_separator", BAD_REQUEST, "invalid_request", Client;
    /// A raw `\` in the path.
    PathBackslash = "path_backslash", BAD_REQUEST, "invalid_request", Client;
    /// Percent-encodings that are not valid UTF-8.
    PathInvalidUtf8 = "path_invalid_utf8", BAD_REQUEST, "invalid_request", Client;
    /// A character whose NFKC form holds `.`, `/`, `\` or `%` (full-width dots and slashes).
    PathConfusableChar = "path_confusable_char", BAD_REQUEST, "invalid_request", Client;
    /// A double encoding of `.`, `/`, `\`, NUL or `%` (`%252e`).
    PathDoubleEncoded = "path_double_encoded", BAD_REQUEST, "invalid_request", Client;
    /// A `.` or `..` segment with `;` parameters (`..;`).
    PathDotSegmentParam = "path_dot_segment_param", BAD_REQUEST, "invalid_request", Client;
    /// `..` segments climbing above `/`.
    PathEscapesRoot = "path_escapes_root", BAD_REQUEST, "invalid_request", Client;
    /// No route matches host, path and method.
    NoRoute = "no_route", NOT_FOUND, "not_found", Client;
    /// A `Content-Length` that is not a number.
    BadContentLength = "bad_content_length", BAD_REQUEST, "invalid_request", Client;
    /// The rewritten target is not a valid URI.
    BadTarget = "bad_target", BAD_REQUEST, "invalid_request", Client;
    /// The body exceeds the route's `max_body_bytes`.
    BodyTooLarge = "body_too_large", PAYLOAD_TOO_LARGE, "payload_too_large", Client;
    /// No body byte arrived for `limits.body_timeout`.
    BodyTimeout = "body_timeout", REQUEST_TIMEOUT, "request_timeout", Client;
    /// The body broke off or had bad chunk framing.
    BodyReadFailed = "body_read_failed", BAD_REQUEST, "invalid_request", Client;
    /// A rate limit (or `pre_auth_rate_limit`) is exhausted.
    RateLimited = "rate_limited", TOO_MANY_REQUESTS, "rate_limited", Client;
    /// A CORS preflight from an origin, for a method or with headers the route's `cors` does
    /// not allow.
    CorsPreflightRefused = "cors_preflight_refused", FORBIDDEN, "cors_refused", Client;

    // The auth chain
    /// A route with authenticators, and no credential of any of them.
    CredentialMissing = "credential_missing", UNAUTHORIZED, "unauthorized", Credential;
    /// The same credential offered more than once (two headers, header and query, ...).
    CredentialDuplicated = "credential_duplicated", BAD_REQUEST, "invalid_request", Credential;
    /// The route requires a verified client certificate.
    ClientCertMissing = "client_cert_missing", FORBIDDEN, "client_certificate_required", Credential;
    /// An API key that is empty, over 512 bytes or not text.
    ApiKeyMalformed = "api_key_malformed", UNAUTHORIZED, "invalid_api_key", Credential;
    /// `Authorization: Api-Key` and `X-Api-Key` carry different keys.
    ApiKeyConflict = "api_key_conflict", BAD_REQUEST, "invalid_request", Credential;
    /// A key in Portcullis' format whose checksum fails (no lookup was made).
    ApiKeyChecksum = "api_key_checksum", UNAUTHORIZED, "invalid_api_key", Credential;
    /// No key has this secret.
    ApiKeyUnknown = "api_key_unknown", UNAUTHORIZED, "invalid_api_key", Credential;
    /// The key is past its `expires_at`.
    ApiKeyExpired = "api_key_expired", UNAUTHORIZED, "invalid_api_key", Credential;
    /// The key was revoked.
    ApiKeyRevoked = "api_key_revoked", UNAUTHORIZED, "invalid_api_key", Credential;
    /// An earlier secret of a rotated key, past its grace.
    ApiKeyRotated = "api_key_rotated", UNAUTHORIZED, "invalid_api_key", Credential;
    /// A key of an environment (`live`/`test`) the authenticator's `envs` does not accept.
    ApiKeyEnv = "api_key_env", UNAUTHORIZED, "invalid_api_key", Credential;
    /// A token over 16 KiB.
    TokenTooLarge = "token_too_large", UNAUTHORIZED, "invalid_token", Credential;
    /// Not a JWS compact serialization (segments, base64url, JSON).
    TokenMalformed = "token_malformed", UNAUTHORIZED, "invalid_token", Credential;
    /// A `crit` header or an unencoded payload.
    TokenCritUnsupported = "token_crit_unsupported", UNAUTHORIZED, "invalid_token", Credential;
    /// No JWT authenticator of the route has the token's issuer.
    TokenUnclaimedIssuer = "token_unclaimed_issuer", UNAUTHORIZED, "invalid_token", Credential;
    /// The token's `alg` is not in the authenticator's `algorithms`.
    TokenAlgNotAllowed = "token_alg_not_allowed", UNAUTHORIZED, "invalid_token", Credential;
    /// The token's `typ` is not `require_typ`.
    TokenTypMismatch = "token_typ_mismatch", UNAUTHORIZED, "invalid_token", Credential;
    /// No verification key is loaded (a JWKS never fetched, or stale past `jwks_max_stale`).
    TokenNoKeys = "token_no_keys", UNAUTHORIZED, "invalid_token", Credential;
    /// No key of the set matches the token's `kid` and algorithm (after one refetch).
    TokenUnknownKey = "token_unknown_key", UNAUTHORIZED, "invalid_token", Credential;
    /// The signature does not verify.
    TokenBadSignature = "token_bad_signature", UNAUTHORIZED, "invalid_token", Credential;
    /// `iss` is not the authenticator's `issuer`.
    TokenWrongIssuer = "token_wrong_issuer", UNAUTHORIZED, "invalid_token", Credential;
    /// `exp` (plus `leeway`) has passed.
    TokenExpired = "token_expired", UNAUTHORIZED, "invalid_token", Credential;
    /// `nbf` is in the future.
    TokenNotYetValid = "token_not_yet_valid", UNAUTHORIZED, "invalid_token", Credential;
    /// `iat` is in the future.
    TokenIatFuture = "token_iat_future", UNAUTHORIZED, "invalid_token", Credential;
    /// `aud` names none of the authenticator's `audiences`.
    TokenWrongAudience = "token_wrong_audience", UNAUTHORIZED, "invalid_token", Credential;
    /// A claim of the wrong type, or `exp`/`sub` missing.
    TokenClaimInvalid = "token_claim_invalid", UNAUTHORIZED, "invalid_token", Credential;
    /// The token's `jti` is on the denylist.
    TokenRevoked = "token_revoked", UNAUTHORIZED, "invalid_token", Credential;
    /// The identity lacks a scope the route requires.
    InsufficientScope = "insufficient_scope", FORBIDDEN, "insufficient_scope", Credential;
    /// The connection's client certificate has a control character in its subject or an
    /// alternative name (it could not be forwarded unchanged).
    ClientCertInvalid = "client_cert_invalid", FORBIDDEN, "client_certificate_invalid", Credential;
    /// The client certificate matches none of the `mtls` authenticator's `identities`.
    ClientCertNotListed = "client_cert_not_listed", FORBIDDEN, "client_certificate_not_allowed", Credential;
    /// The client certificate lacks the field `subject_from` names (no CN, DNS or URI name).
    ClientCertNoSubject = "client_cert_no_subject", FORBIDDEN, "client_certificate_invalid", Credential;

    // After the chain allowed the request
    /// The upstream refused the connection or could not be reached.
    UpstreamConnectFailed = "upstream_connect_failed", BAD_GATEWAY, "bad_gateway", Upstream;
    /// The upstream closed or reset the connection before answering.
    UpstreamReset = "upstream_reset", BAD_GATEWAY, "bad_gateway", Upstream;
    /// No response head within the upstream's `timeout`.
    UpstreamTimeout = "upstream_timeout", GATEWAY_TIMEOUT, "gateway_timeout", Upstream;
    /// The upstream answered 101 to a request that asked for no upgrade.
    UpstreamUnrequestedUpgrade = "upstream_unrequested_upgrade", BAD_GATEWAY, "bad_gateway", Upstream;

    // The built-in authorization server's endpoints (RFC 6749 5.2 errors)
    /// A request to an OAuth endpoint that is malformed: a parameter missing or given twice, the
    /// wrong content type, a body over 16 KiB, two client authentication methods at once.
    OauthInvalidRequest = "oauth_invalid_request", BAD_REQUEST, "invalid_request", Client;
    /// An OAuth endpoint asked with a method it does not answer.
    OauthMethodNotAllowed = "oauth_method_not_allowed", METHOD_NOT_ALLOWED, "invalid_request", Client;
    /// The client did not authenticate: unknown, deleted, wrong secret or certificate, or
    /// another method than it is registered for (401, `WWW-Authenticate: Basic`).
    OauthInvalidClient = "oauth_invalid_client", UNAUTHORIZED, "invalid_client", Credential;
    /// The client may not use this grant, or the token was issued to another client.
    OauthUnauthorizedClient = "oauth_unauthorized_client", BAD_REQUEST, "unauthorized_client", Credential;
    /// A `grant_type` the server does not have.
    OauthUnsupportedGrant = "oauth_unsupported_grant_type", BAD_REQUEST, "unsupported_grant_type", Client;
    /// A scope outside the client's allowed scopes.
    OauthInvalidScope = "oauth_invalid_scope", BAD_REQUEST, "invalid_scope", Credential;
    /// A `resource` (RFC 8707) that is not one of the client's audiences.
    OauthInvalidTarget = "oauth_invalid_target", BAD_REQUEST, "invalid_target", Credential;
    /// The endpoints' `pre_auth_rate_limit` for this address is exhausted.
    OauthRateLimited = "oauth_rate_limited", TOO_MANY_REQUESTS, "temporarily_unavailable", Client;
    /// Too many failed authentications of this client from this address (`failed_auth_limit`).
    OauthClientThrottled = "oauth_client_throttled", TOO_MANY_REQUESTS, "temporarily_unavailable", Credential;

    // The gateway
    /// Redis is down and `store.on_redis_error: deny`.
    RateLimitUnavailable = "rate_limit_unavailable", SERVICE_UNAVAILABLE, "temporarily_unavailable", Internal;
    /// The route's `identity_token` could not be signed (no active signing key): the request is
    /// not forwarded without it.
    AssertionUnavailable = "assertion_unavailable", SERVICE_UNAVAILABLE, "temporarily_unavailable", Internal;
    /// The authorization server cannot answer now: the store is unreachable, or no signing key
    /// is active.
    OauthUnavailable = "oauth_unavailable", SERVICE_UNAVAILABLE, "temporarily_unavailable", Internal;
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A refused request. Turned into the SPEC section 5 JSON body by [`crate::proxy`].
#[derive(Debug, Clone)]
pub struct Reject {
    pub reason: Reason,
    /// Public, generic description. Never contains a credential.
    pub description: Cow<'static, str>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Close the (HTTP/1) connection after the answer: the request's body may still be arriving
    /// and nothing after it can be framed reliably.
    pub close: bool,
}

impl Reject {
    pub fn new(reason: Reason, description: impl Into<Cow<'static, str>>) -> Reject {
        Reject {
            reason,
            description: description.into(),
            headers: Vec::new(),
            close: false,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Reject {
        self.headers.push((name, value));
        self
    }

    /// Closes the (HTTP/1) connection after the answer.
    pub fn closing(mut self) -> Reject {
        self.close = true;
        self
    }

    pub fn not_found() -> Reject {
        Reject::new(Reason::NoRoute, "no route matches this request")
    }

    pub fn payload_too_large(limit: u64) -> Reject {
        Reject::new(
            Reason::BodyTooLarge,
            format!("the request body exceeds {limit} bytes"),
        )
    }

    pub fn bad_gateway(reason: Reason) -> Reject {
        Reject::new(reason, "the upstream could not be reached")
    }

    pub fn gateway_timeout() -> Reject {
        Reject::new(
            Reason::UpstreamTimeout,
            "the upstream did not answer in time",
        )
    }

    pub fn misdirected() -> Reject {
        Reject::new(
            Reason::SniHostMismatch,
            "the Host of this request does not match the TLS server name",
        )
    }

    /// The client stopped sending its request body (`limits.body_timeout`). The connection is
    /// closed after the answer: the rest of the body may still be on its way.
    pub fn body_timeout() -> Reject {
        Reject::new(Reason::BodyTimeout, "the request body stopped arriving").closing()
    }

    /// The client's request body broke off or was malformed (bad chunk sizes). The connection is
    /// closed after the answer: its framing can no longer be trusted.
    pub fn body_read_failed() -> Reject {
        Reject::new(Reason::BodyReadFailed, "the request body could not be read").closing()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_unique_snake_case_and_fit_their_status() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let n = r.name();
            assert!(seen.insert(n), "{n} twice");
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{n} is not snake_case"
            );
            let s = r.status();
            match r.source() {
                Source::Upstream => assert!(s.is_server_error(), "{n}"),
                Source::Internal => assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{n}"),
                // 501: a transfer coding the client chose that no one here implements.
                Source::Client | Source::Credential => {
                    assert!(
                        s.is_client_error() || s == StatusCode::NOT_IMPLEMENTED,
                        "{n}"
                    )
                }
            }
        }
    }
}
