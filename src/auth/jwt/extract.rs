//! Where a JWT authenticator finds its token (`token_from`): `Authorization: Bearer`, a cookie or
//! a query parameter. A token offered in more than one place is a 400.

use super::reject::duplicate_credential;
use crate::auth::request::{credential, CredentialSource};
use crate::error::Reject;
use http::header::{self, HeaderMap};

/// RFC 6750 section 2.3's query parameter.
const ACCESS_TOKEN: &str = "access_token";

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Result<Option<&'a str>, Reject> {
    let mut found = None;
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if crate::headers::query_name_is(k, name) {
            if found.is_some() {
                return Err(duplicate_credential());
            }
            found = Some(v);
        }
    }
    Ok(found)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Reject> {
    let mut found = None;
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for c in s.split(';') {
            if let Some((k, v)) = c.trim().split_once('=') {
                if k == name {
                    if found.is_some() {
                        return Err(duplicate_credential());
                    }
                    found = Some(v);
                }
            }
        }
    }
    Ok(found)
}

/// The token an authenticator reading `sources` would find, if the request carries one. A token offered in
/// more than one place (two `Authorization` headers, header and query) is a 400.
pub fn find_token<'a>(
    sources: &[CredentialSource],
    headers: &'a HeaderMap,
    query: Option<&'a str>,
) -> Result<Option<&'a str>, Reject> {
    let mut found: Option<&str> = None;
    let mut put = |t: &'a str| {
        if found.is_some() {
            return Err(duplicate_credential());
        }
        found = Some(t);
        Ok(())
    };
    for src in sources {
        match src {
            CredentialSource::Header => {
                let mut all = headers.get_all(header::AUTHORIZATION).iter();
                let first = all.next();
                if all.next().is_some() {
                    return Err(duplicate_credential());
                }
                if let Some(t) = first.and_then(|v| credential(v, "Bearer")) {
                    put(t)?;
                }
            }
            CredentialSource::Cookie(n) => {
                if let Some(t) = cookie(headers, n)? {
                    put(t)?;
                }
            }
            CredentialSource::Query(n) => {
                if let Some(t) = query_param(query, n)? {
                    put(t)?;
                }
            }
        }
    }
    // RFC 6750's `access_token` parameter is a place a bearer token is offered even where this
    // route does not read it: a token here and one there is a credential offered twice.
    let reads_it = sources
        .iter()
        .any(|s| matches!(s, CredentialSource::Query(n) if n == ACCESS_TOKEN));
    if found.is_some() && !reads_it && query_param(query, ACCESS_TOKEN)?.is_some() {
        return Err(duplicate_credential());
    }
    Ok(found)
}
