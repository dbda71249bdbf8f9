//! The `api_key` authenticator: `Authorization: Api-Key <key>` or `X-Api-Key: <key>` (headers
//! only), looked up in the in-memory key ring. A key in Portcullis' format whose checksum fails is
//! refused without a lookup.

use super::Identity;
use crate::error::Reject;
use crate::keys::{Env, KeyRefusal, KeyRing};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use std::sync::Arc;

#[derive(Debug)]
pub struct ApiKeyAuthn {
    pub name: Arc<str>,
    /// Accepted environments; empty = both.
    pub envs: Vec<Env>,
    pub ring: Arc<KeyRing>,
}

const CHALLENGE: &str = "Api-Key realm=\"portcullis\"";

fn invalid(reason: &'static str, description: &str) -> Reject {
    Reject::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        reason,
        description,
    )
    .with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(CHALLENGE),
    )
}

fn duplicated() -> Reject {
    Reject::bad_request(
        "credential_duplicated",
        "the credential is offered more than once",
    )
}

/// `Api-Key` (any case) then one or more spaces then the key.
fn api_key_scheme(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let (scheme, rest) = s.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case("api-key") || !rest.starts_with(' ') {
        return None;
    }
    Some(rest.trim_start_matches(' '))
}

impl ApiKeyAuthn {
    pub fn challenge() -> &'static str {
        CHALLENGE
    }

    pub fn find_key<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, Reject> {
        let mut auth = headers.get_all(header::AUTHORIZATION).iter();
        let first = auth.next();
        if auth.next().is_some() {
            return Err(duplicated());
        }
        let from_auth = first.and_then(api_key_scheme);
        let mut xs = headers.get_all("x-api-key").iter();
        let x = xs.next();
        if xs.next().is_some() {
            return Err(duplicated());
        }
        let from_x = match x {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| invalid("api_key_malformed", "the API key is malformed"))?
                    .trim(),
            ),
            None => None,
        };
        match (from_auth, from_x) {
            (Some(a), Some(b)) if a == b => Err(duplicated()),
            (Some(_), Some(_)) => Err(invalid(
                "api_key_conflict",
                "two different API keys were offered",
            )),
            (Some(k), None) | (None, Some(k)) => Ok(Some(k)),
            (None, None) => Ok(None),
        }
    }

    pub fn authenticate(&self, key: &str, now: i64) -> Result<Arc<Identity>, Reject> {
        if key.is_empty() || key.len() > 512 {
            return Err(invalid("api_key_malformed", "the API key is malformed"));
        }
        let rec = self.ring.lookup(key, now).map_err(|e| {
            let d = match e {
                KeyRefusal::Malformed => "the API key is malformed",
                KeyRefusal::Expired => "the API key has expired",
                _ => "the API key is not valid",
            };
            invalid(e.reason(), d)
        })?;
        if !self.envs.is_empty() && !self.envs.contains(&rec.env) {
            return Err(invalid(
                "api_key_env",
                "this route does not accept keys of this environment",
            ));
        }
        Ok(rec.identity())
    }
}
