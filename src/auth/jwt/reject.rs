//! The JWT authenticator's refusals, with their RFC 6750 challenges.

use crate::error::{Reason, Reject};
use http::header::{self, HeaderValue};

/// An invalid token: 401 with an RFC 6750 challenge naming the problem.
pub fn invalid_token(reason: Reason, description: &'static str) -> Reject {
    let challenge = format!(
        "Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\"{description}\""
    );
    Reject::new(reason, description).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
    )
}

/// A token offered in more than one place: 400.
pub fn duplicate_credential() -> Reject {
    Reject::new(
        Reason::CredentialDuplicated,
        "the credential is offered more than once",
    )
    .with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"portcullis\", error=\"invalid_request\""),
    )
}
