//! The `api_key` authenticator: `Authorization: Api-Key <key>` or `X-Api-Key: <key>` (headers
//! only), looked up in the in-memory key ring. A key in Portcullis' format whose checksum fails is
//! refused without a lookup.

use crate::auth::identity::Identity;
use crate::auth::request::{credential, AuthRequest, Authenticate};
use crate::config::issues::Issues;
use crate::error::{Reason, Reject};
use crate::keys::{shape, Env, KeyRefusal, KeyRing, Shape};
use crate::values::S;
use http::{header, HeaderMap, HeaderValue};
use std::sync::Arc;

#[derive(Debug)]
pub struct ApiKeyAuthn {
    pub name: Arc<str>,
    /// Accepted environments; empty = both.
    pub envs: Vec<Env>,
    pub ring: Arc<KeyRing>,
}

const CHALLENGE: &str = "Api-Key realm=\"portcullis\"";

fn invalid(reason: Reason, description: &'static str) -> Reject {
    Reject::new(reason, description).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(CHALLENGE),
    )
}

fn duplicated() -> Reject {
    Reject::new(
        Reason::CredentialDuplicated,
        "the credential is offered more than once",
    )
}

impl ApiKeyAuthn {
    /// `authenticators.NAME` of `type: api_key`; every one reads the same key ring.
    pub fn compile(
        name: &str,
        envs: Option<&[S]>,
        ring: &Arc<KeyRing>,
        issues: &mut Issues,
    ) -> Self {
        let at = format!("authenticators.{name}");
        let mut list = Vec::new();
        for (i, e) in envs.unwrap_or_default().iter().enumerate() {
            match Env::parse(e.as_str()) {
                Some(env) => list.push(env),
                None => issues.add(
                    format!("{at}.envs[{i}]"),
                    format!("`{e}`: use live or test"),
                ),
            }
        }
        ApiKeyAuthn {
            name: Arc::from(name),
            envs: list,
            ring: ring.clone(),
        }
    }

    /// The key the request offers, if any. The same key in both headers, or either header
    /// twice, is a 400; two different keys are a 401.
    pub fn find_key<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, Reject> {
        let mut auth = headers.get_all(header::AUTHORIZATION).iter();
        let first = auth.next();
        if auth.next().is_some() {
            return Err(duplicated());
        }
        let from_auth = first.and_then(|v| credential(v, "Api-Key"));
        let mut xs = headers.get_all("x-api-key").iter();
        let x = xs.next();
        if xs.next().is_some() {
            return Err(duplicated());
        }
        let from_x = match x {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| invalid(Reason::ApiKeyMalformed, "the API key is malformed"))?
                    .trim(),
            ),
            None => None,
        };
        match (from_auth, from_x) {
            (Some(a), Some(b)) if a == b => Err(duplicated()),
            // A credential offered in more than one place is a malformed request (SPEC 2).
            (Some(_), Some(_)) => Err(Reject::new(
                Reason::ApiKeyConflict,
                "two different API keys were offered",
            )),
            (Some(k), None) | (None, Some(k)) => Ok(Some(k)),
            (None, None) => Ok(None),
        }
    }

    /// The identity of `key` at unix time `now`, or why it is refused.
    pub fn check_key(&self, key: &str, now: i64) -> Result<Arc<Identity>, Reject> {
        if key.is_empty() || key.len() > 512 {
            return Err(invalid(Reason::ApiKeyMalformed, "the API key is malformed"));
        }
        let rec = self.ring.lookup(key, now).map_err(|e| {
            let (reason, d) = match e {
                KeyRefusal::Malformed => (Reason::ApiKeyChecksum, "the API key is malformed"),
                KeyRefusal::Expired => (Reason::ApiKeyExpired, "the API key has expired"),
                KeyRefusal::Unknown => (Reason::ApiKeyUnknown, "the API key is not valid"),
                KeyRefusal::Revoked => (Reason::ApiKeyRevoked, "the API key is not valid"),
                KeyRefusal::Rotated => (Reason::ApiKeyRotated, "the API key is not valid"),
            };
            invalid(reason, d)
        })?;
        // A key of a foreign format (imported) has no environment: only an authenticator that
        // takes every environment accepts it.
        let env_ok = self.envs.is_empty()
            || (matches!(shape(key), Shape::Ours(_)) && self.envs.contains(&rec.env));
        if !env_ok {
            return Err(invalid(
                Reason::ApiKeyEnv,
                "this route does not accept keys of this environment",
            ));
        }
        Ok(rec.identity(&self.name))
    }
}

impl Authenticate for ApiKeyAuthn {
    fn kind(&self) -> &'static str {
        "api_key"
    }

    fn challenge(&self) -> Option<&'static str> {
        Some(CHALLENGE)
    }

    async fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Option<Arc<Identity>>, Reject> {
        match self.find_key(req.headers)? {
            None => Ok(None),
            Some(key) => self.check_key(key, crate::clock::now_secs()).map(Some),
        }
    }
}
