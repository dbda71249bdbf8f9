//! Rejections: every way a request can be refused, each knowing its HTTP status, the public
//! `error` code and description, and the stable snake_case `reason` used in logs and metrics.

use http::{HeaderName, HeaderValue, StatusCode};

/// A refused request. Turned into the SPEC section 5 JSON body by [`crate::proxy`].
#[derive(Debug, Clone)]
pub struct Reject {
    pub status: StatusCode,
    /// Public error code (`invalid_request`, `invalid_token`, `insufficient_scope`, ...).
    pub error: &'static str,
    /// Public, generic description. Never contains a credential.
    pub description: String,
    /// Stable reason for logs and metrics.
    pub reason: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Close the (HTTP/1) connection after the answer: the request's body may still be arriving
    /// and nothing after it can be framed reliably.
    pub close: bool,
}

impl Reject {
    pub fn new(
        status: StatusCode,
        error: &'static str,
        reason: &'static str,
        description: impl Into<String>,
    ) -> Reject {
        Reject {
            status,
            error,
            description: description.into(),
            reason,
            headers: Vec::new(),
            close: false,
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Reject {
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(reason: &'static str, description: impl Into<String>) -> Reject {
        Reject::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            reason,
            description,
        )
    }

    pub fn not_found() -> Reject {
        Reject::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no_route",
            "no route matches this request",
        )
    }

    pub fn payload_too_large(limit: u64) -> Reject {
        Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "body_too_large",
            format!("the request body exceeds {limit} bytes"),
        )
    }

    pub fn bad_gateway(reason: &'static str) -> Reject {
        Reject::new(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            reason,
            "the upstream could not be reached",
        )
    }

    pub fn gateway_timeout() -> Reject {
        Reject::new(
            StatusCode::GATEWAY_TIMEOUT,
            "gateway_timeout",
            "upstream_timeout",
            "the upstream did not answer in time",
        )
    }

    pub fn misdirected() -> Reject {
        Reject::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            "sni_host_mismatch",
            "the Host of this request does not match the TLS server name",
        )
    }

    /// The client stopped sending its request body (`limits.body_timeout`). The connection is
    /// closed after the answer: the rest of the body may still be on its way.
    pub fn body_timeout() -> Reject {
        Reject {
            close: true,
            ..Reject::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "body_timeout",
                "the request body stopped arriving",
            )
        }
    }

    /// The client's request body broke off or was malformed (bad chunk sizes). The connection is
    /// closed after the answer: its framing can no longer be trusted.
    pub fn body_read_failed() -> Reject {
        Reject {
            close: true,
            ..Reject::bad_request("body_read_failed", "the request body could not be read")
        }
    }
}
