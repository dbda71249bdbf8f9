//! CORS per route (`routes[i].cors`), after the Fetch standard: a preflight (`OPTIONS` with
//! `Origin` and `Access-Control-Request-Method`) is answered by the gateway before the auth chain
//! and never reaches the upstream; the answers to actual requests from a listed origin carry
//! `Access-Control-Allow-Origin` (and `-Credentials`); an origin not listed gets no CORS header,
//! so the browser keeps the answer from the page.

use crate::config::issues::Issues;
use crate::config::raw::RawCors;
use crate::error::{Reason, Reject};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;

/// Methods a browser may send cross-origin without listing them (Fetch: CORS-safelisted).
const SAFELISTED_METHODS: [&str; 3] = ["GET", "HEAD", "POST"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Serialized origins (`https://app.example.com`), or `None` for `*`.
    origins: Option<Vec<String>>,
    methods: Vec<String>,
    /// Lowercase header names.
    headers: Vec<String>,
    credentials: bool,
    max_age: Option<u64>,
    allow_methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
}

/// Whether `req`'s head is a CORS preflight.
pub fn is_preflight(method: &Method, h: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && h.contains_key(header::ORIGIN)
        && h.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The method a preflight asks about.
pub fn requested_method(h: &HeaderMap) -> Option<Method> {
    h.get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
}

impl Cors {
    /// `routes[i].cors`.
    pub fn compile(raw: &RawCors, at: &str, issues: &mut Issues) -> Option<Cors> {
        let p = format!("{at}.cors");
        let before = issues.len();
        let mut origins = Some(Vec::new());
        if raw.origins.is_empty() {
            issues.add(format!("{p}.origins"), "list at least one origin (or `*`)");
        }
        for (i, o) in raw.origins.iter().enumerate() {
            let o = o.as_str();
            if o == "*" {
                origins = None;
            } else if valid_origin(o) {
                if let Some(list) = origins.as_mut() {
                    list.push(o.to_owned());
                }
            } else {
                issues.add(
                    format!("{p}.origins[{i}]"),
                    format!("`{o}`: an origin such as https://app.example.com (scheme, host, optional port; lowercase; no path)"),
                );
            }
        }
        let credentials = raw.credentials.unwrap_or(false);
        if credentials && origins.is_none() {
            issues.add(
                format!("{p}.credentials"),
                "not with origins `*`: the Fetch standard refuses credentials for any origin; list the origins",
            );
        }
        // methods compare as routes do: upper case
        let methods: Vec<String> = match &raw.methods {
            None => SAFELISTED_METHODS.iter().map(|m| (*m).to_owned()).collect(),
            Some(list) => list
                .iter()
                .map(|m| m.as_str().to_ascii_uppercase())
                .collect(),
        };
        for (i, m) in methods.iter().enumerate() {
            if m == "*" {
                issues.add(
                    format!("{p}.methods[{i}]"),
                    "`*` is not supported here: list the methods",
                );
            } else if Method::from_bytes(m.as_bytes()).is_err() || m.is_empty() {
                issues.add(
                    format!("{p}.methods[{i}]"),
                    format!("`{m}` is not a method"),
                );
            }
        }
        let mut names = |field: &str, list: &Option<Vec<crate::values::S>>| {
            let mut out = Vec::new();
            for (i, h) in list.iter().flatten().enumerate() {
                match HeaderName::from_bytes(h.as_str().as_bytes()) {
                    Ok(n) if n.as_str() != "*" => out.push(n.as_str().to_owned()),
                    _ => issues.add(
                        format!("{p}.{field}[{i}]"),
                        format!(
                            "`{}` is not a header name (`*` is not supported: list them)",
                            h.as_str()
                        ),
                    ),
                }
            }
            out
        };
        let headers = names("headers", &raw.headers);
        let expose = names("expose_headers", &raw.expose_headers);
        let max_age = raw.max_age.as_ref().map(|n| n.0);
        if max_age.is_some_and(|a| a > 86_400) {
            issues.add(
                format!("{p}.max_age"),
                "at most 86400 (seconds; browsers cap it lower anyway)",
            );
        }
        if issues.len() > before {
            return None;
        }
        Some(Cors {
            allow_methods: HeaderValue::from_str(&methods.join(", ")).ok()?,
            allow_headers: (!headers.is_empty())
                .then(|| HeaderValue::from_str(&headers.join(", ")).ok())
                .flatten(),
            expose_headers: (!expose.is_empty())
                .then(|| HeaderValue::from_str(&expose.join(", ")).ok())
                .flatten(),
            origins,
            methods,
            headers,
            credentials,
            max_age,
        })
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, when it is allowed.
    fn allow_origin(&self, h: &HeaderMap) -> Option<HeaderValue> {
        let origin = h.get(header::ORIGIN)?;
        match &self.origins {
            None => Some(HeaderValue::from_static("*")),
            Some(list) => {
                let o = origin.to_str().ok()?;
                list.iter().any(|l| l == o).then(|| origin.clone())
            }
        }
    }

    /// The gateway's answer to a preflight: 204 with the CORS headers, or the refusal when the
    /// origin, the method or a requested header is not allowed.
    pub fn preflight(&self, h: &HeaderMap) -> Result<HeaderMap, Reject> {
        let refused = |why: String| Reject::new(Reason::CorsPreflightRefused, why);
        let origin = self
            .allow_origin(h)
            .ok_or_else(|| refused("this origin may not call this route".into()))?;
        let method = requested_method(h)
            .ok_or_else(|| refused("Access-Control-Request-Method is not a method".into()))?;
        if !self.methods.iter().any(|m| m == method.as_str())
            && !SAFELISTED_METHODS.contains(&method.as_str())
        {
            return Err(refused(format!("the method {method} is not allowed here")));
        }
        for v in h.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            let list = v.to_str().map_err(|_| refused("bad header list".into()))?;
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if !self.headers.iter().any(|a| a.eq_ignore_ascii_case(name)) {
                    return Err(refused(format!("the header {name} is not allowed here")));
                }
            }
        }
        let mut out = HeaderMap::new();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        if let Some(a) = &self.allow_headers {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, a.clone());
        }
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(a) = self.max_age {
            out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(a));
        }
        out.insert(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        Ok(out)
    }

    /// The CORS headers of an actual answer to a request whose head is `h`: none for a request
    /// without `Origin` or from an origin not listed.
    pub fn actual(&self, h: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
        let Some(origin) = self.allow_origin(h) else {
            return Vec::new();
        };
        let mut out = vec![(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)];
        if let Some(e) = &self.expose_headers {
            out.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone()));
        }
        if self.credentials {
            out.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        out
    }
}

/// `scheme://host[:port]`, lowercase, no path, no user information.
fn valid_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:[]".contains(&b))
}

/// Removes the upstream's own CORS headers from an answer on a route whose CORS the gateway
/// owns (they could contradict the configuration).
pub fn strip_upstream(h: &mut HeaderMap) {
    let names: Vec<HeaderName> = h
        .keys()
        .filter(|n| n.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for n in names {
        h.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(valid_origin("https://app.example.com"));
        assert!(valid_origin("http://127.0.0.1:8080"));
        assert!(!valid_origin("https://app.example.com/"));
        assert!(!valid_origin("https://App.example.com"));
        assert!(!valid_origin("app.example.com"));
        assert!(!valid_origin("https://u@app.example.com"));
    }
}
