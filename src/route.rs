//! Routes: what a matched request leads to ([`Route`]: upstream, auth chain, body limit,
//! credential stripping), compiled from `routes[i]`, and how a request finds its route
//! ([`resolve`]: method and target checks, the host, path normalization, route lookup).

use crate::auth::chain::{AuthPolicy, ChainTables};
use crate::auth::rate_limit::RateLimit;
use crate::config::issues::{Defined, Issues};
use crate::config::raw::RawRoute;
use crate::conn::ConnInfo;
use crate::error::{Reason, Reject};
use crate::normalize::normalize;
use crate::router::{Matcher, Router};
use crate::upstream::Upstream;
use http::header;
use http::{Method, Request, Version};
use std::sync::Arc;

/// The longest request target (path and query) the gateway reads.
pub const MAX_URI_BYTES: usize = 8192;

#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub upstream: Arc<Upstream>,
    pub auth: AuthPolicy,
    pub max_body_bytes: u64,
    /// Remove the consumed credential before forwarding: a chain with authenticators ran and the
    /// route does not say `forward_credentials: true`. Decided once, at compile time.
    pub strip_credentials: bool,
    /// Query parameters removed before forwarding: the chain's `query:` token sources when
    /// `strip_credentials`, and always `_method`, the query form of the method-override headers
    /// (Rails, Laravel, Express method-override; docs/attack-cases.md HDR-18).
    pub strip_params: Vec<String>,
    /// Applied per client address before any signature check.
    pub pre_auth_rate_limit: Option<Arc<RateLimit>>,
    /// Send `X-Forwarded-Client-Cert` (Envoy's format) for a client certificate.
    pub forward_client_cert: bool,
    /// `strip_prefix` and `rewrite_prefix`: how the path the route matched becomes the path the
    /// upstream receives.
    pub rewrite: Rewrite,
    /// `host`: the `Host` the upstream receives (plain-http upstreams).
    pub host: HostMode,
    /// `cors`: preflights answered here; CORS headers on answers to listed origins.
    pub cors: Option<crate::cors::Cors>,
    /// `identity_token`: a signed assertion of the identity for the upstream.
    pub identity_token: Option<crate::assertion::IdentityToken>,
}

/// `strip_prefix` / `rewrite_prefix`, checked at compile time to be normalized paths without a
/// trailing slash, so a rewritten path never holds `//` or a dot segment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub strip: Option<String>,
    pub prefix: Option<String>,
    /// The route matches paths ignoring ASCII case: so does `strip`.
    pub case_insensitive: bool,
}

/// What follows `strip` in `path` when `path` is `strip` or continues below it, compared as
/// routing compares: segment parameters (`/files;v=1/a`) and parameter-only segments are passed
/// over, ASCII case ignored when `ci`. The stripped segments go with their parameters.
fn after_prefix<'a>(path: &'a str, strip: &str, ci: bool) -> Option<&'a str> {
    let mut pos = 0;
    for want in strip.split('/').skip(1) {
        loop {
            let seg_start = pos + 1;
            if !path[pos..].starts_with('/') {
                return None;
            }
            let seg_end = path[seg_start..]
                .find('/')
                .map_or(path.len(), |e| seg_start + e);
            let seg = &path[seg_start..seg_end];
            let bare = seg.split(';').next().unwrap_or("");
            pos = seg_end;
            // `/;x/files`: routing drops a segment that is only parameters (unless it is last)
            if bare.is_empty() && seg.starts_with(';') && seg_end < path.len() {
                continue;
            }
            let same = if ci {
                bare.eq_ignore_ascii_case(want)
            } else {
                bare == want
            };
            if !same {
                return None;
            }
            break;
        }
    }
    Some(&path[pos..])
}

impl Rewrite {
    /// The upstream's path for the normalized `path`, when it differs: `strip` removed when the
    /// path is it or continues below it (`/files` strips `/files` and `/files/a`, not
    /// `/filesX`), then `prefix` put in front.
    pub fn apply(&self, path: &str) -> Option<String> {
        if self.strip.is_none() && self.prefix.is_none() {
            return None;
        }
        // what follows the stripped prefix: empty (the prefix itself) or from a `/` on
        let rest = match self.strip.as_deref() {
            Some(s) => after_prefix(path, s, self.case_insensitive).unwrap_or(path),
            None => path,
        };
        let out = match self.prefix.as_deref() {
            None if rest.is_empty() => "/".to_owned(),
            None => rest.to_owned(),
            Some(p) => format!("{p}{rest}"),
        };
        (out != path).then_some(out)
    }

    fn compile(r: &RawRoute, at: &str, issues: &mut Issues) -> Rewrite {
        let mut one = |field: &str, v: Option<&crate::values::S>| -> Option<String> {
            let v = v?.as_str();
            let ok = v.starts_with('/')
                && v.len() > 1
                && !v.ends_with('/')
                && normalize(v).is_ok_and(|n| n == v)
                && !v.contains(['?', '#', '%', ';'])
                && !v.contains("//");
            if !ok {
                issues.add(
                    format!("{at}.{field}"),
                    format!("`{v}`: a normalized path such as /files or /v2/api (starting with /, no trailing /, no `..`, `//`, `%`, `;`, `?` or `#`)"),
                );
                return None;
            }
            Some(v.to_owned())
        };
        Rewrite {
            strip: one("strip_prefix", r.strip_prefix.as_ref()),
            prefix: one("rewrite_prefix", r.rewrite_prefix.as_ref()),
            case_insensitive: r.matcher.case_insensitive.unwrap_or(false),
        }
    }
}

/// The `Host` a plain-http upstream receives.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum HostMode {
    /// The client's (the default).
    #[default]
    Preserve,
    /// The upstream URL's authority.
    Upstream,
    /// This name.
    Literal(http::HeaderValue),
}

impl HostMode {
    /// Sets the `Host` of a request on its way upstream: the client's (`client_host`, which an
    /// h2 request carried as :authority), none (each target then sets its own authority), or
    /// the configured name.
    pub fn apply(&self, headers: &mut http::HeaderMap, client_host: Option<&str>) {
        match self {
            HostMode::Preserve => {
                if let Some(h) = client_host {
                    if !headers.contains_key(http::header::HOST) {
                        if let Ok(v) = http::HeaderValue::from_str(h) {
                            headers.insert(http::header::HOST, v);
                        }
                    }
                }
            }
            HostMode::Upstream => {
                headers.remove(http::header::HOST);
            }
            HostMode::Literal(v) => {
                headers.insert(http::header::HOST, v.clone());
            }
        }
    }

    fn compile(
        r: &RawRoute,
        upstream: Option<&Upstream>,
        at: &str,
        issues: &mut Issues,
    ) -> HostMode {
        let Some(v) = r.host.as_ref().map(|h| h.as_str()) else {
            return HostMode::Preserve;
        };
        let mode = match v {
            "preserve" => HostMode::Preserve,
            "upstream" => HostMode::Upstream,
            name => {
                let ok = !name.is_empty()
                    && name.len() <= 253
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
                match http::HeaderValue::from_str(name) {
                    Ok(h) if ok => HostMode::Literal(h),
                    _ => {
                        issues.add(
                            format!("{at}.host"),
                            format!("`{name}`: preserve, upstream, or a host name (with an optional :port)"),
                        );
                        return HostMode::Preserve;
                    }
                }
            }
        };
        let plain = upstream.is_some_and(
            |u| matches!(&u.kind, crate::upstream::UpstreamKind::Http(h) if !h.own_authority()),
        );
        if mode != HostMode::Preserve && upstream.is_some() && !plain {
            issues.add(
                format!("{at}.host"),
                "only for plain-http upstreams: https and h2c upstreams always get their own authority (their TLS name and :authority must name them), and the built-in echo has none",
            );
        }
        mode
    }
}

/// What a route may refer to.
pub struct RouteTables<'a> {
    pub upstreams: Defined<'a, Arc<Upstream>>,
    pub chain: ChainTables<'a>,
    /// `limits.max_body_bytes`, for routes without their own.
    pub max_body_bytes: u64,
}

impl Route {
    /// `routes[i]`. `None` when its upstream is unusable (the problem is in `issues`).
    pub fn compile(
        r: &RawRoute,
        i: usize,
        t: &RouteTables<'_>,
        issues: &mut Issues,
    ) -> Option<(Matcher, Route)> {
        let at = format!("routes[{i}]");
        let upstream = t
            .upstreams
            .get(r.upstream.as_str(), || format!("{at}.upstream"), issues)
            .cloned();
        let matcher = Matcher::compile(&r.matcher, &at, issues);
        let rewrite = Rewrite::compile(r, &at, issues);
        let host = HostMode::compile(r, upstream.as_deref(), &at, issues);
        let auth = AuthPolicy::compile(&r.auth, &t.chain, &at, issues);
        let strip_credentials = !r.forward_credentials.unwrap_or(false)
            && matches!(&auth, AuthPolicy::Chain(c) if !c.any_of.is_empty());
        let pre_auth_rate_limit = r.pre_auth_rate_limit.as_ref().and_then(|n| {
            let here = || format!("{at}.pre_auth_rate_limit");
            t.chain.rate_limits.get(n.as_str(), here, issues).cloned()
        });
        let credential_params: &[String] = if strip_credentials {
            auth.credential_sources().1
        } else {
            &[]
        };
        let strip_params = credential_params
            .iter()
            .cloned()
            .chain(["_method".to_owned()])
            .collect();
        let route = Route {
            name: Arc::from(r.name.0.as_str()),
            upstream: upstream?,
            auth,
            max_body_bytes: r.max_body_bytes.map_or(t.max_body_bytes, |n| n.0),
            strip_credentials,
            strip_params,
            pre_auth_rate_limit,
            forward_client_cert: r.forward_client_cert.unwrap_or(false),
            rewrite,
            host,
            cors: r
                .cors
                .as_ref()
                .and_then(|c| crate::cors::Cors::compile(c, &at, issues)),
            identity_token: r
                .identity_token
                .as_ref()
                .and_then(|t| crate::assertion::IdentityToken::compile(t, &at, issues)),
        };
        Some((matcher, route))
    }
}

/// A request matched to its route.
pub struct Routed {
    /// Lowercase, without port or trailing dot.
    pub host: Option<String>,
    /// The normalized path: what routing used and what the upstream receives.
    pub path: String,
    pub route: Arc<Route>,
    /// A CORS preflight for a route with `cors`: the gateway answers it.
    pub preflight: bool,
}

/// RFC 9112 section 3: a request target longer than the server will read is 414. nginx answers
/// 414 past 8 KiB, and so do we (hyper's own 64 KiB check is past its head buffer).
pub fn check_target_length<B>(req: &Request<B>) -> Result<(), Reject> {
    if req.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URI_BYTES {
        return Err(Reject::new(
            Reason::UriTooLong,
            format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Host checks, path normalization and route lookup (shared with `portcullis explain`).
pub fn resolve<B>(
    router: &Router<Route>,
    conn: &ConnInfo,
    req: &Request<B>,
) -> Result<Routed, Reject> {
    if req.method() == Method::CONNECT {
        return Err(Reject::new(
            Reason::ConnectRefused,
            "CONNECT is not supported",
        ));
    }
    check_target_length(req)?;
    // `Transfer-Encoding: gzip, chunked`: hyper de-chunks it, and the coding under the chunks
    // would be lost on the way upstream (the header is hop-by-hop). RFC 9112 section 6.1: a
    // server answers 501 to a transfer coding it does not understand (docs/attack-cases.md
    // SMUG-07, envoyproxy/envoy#9316).
    for v in req.headers().get_all(header::TRANSFER_ENCODING) {
        let only_chunked = v.to_str().is_ok_and(|s| {
            s.split(',')
                .all(|t| t.trim().eq_ignore_ascii_case("chunked"))
        });
        if !only_chunked {
            return Err(Reject::new(
                Reason::UnsupportedTransferCoding,
                "only the chunked transfer coding is supported",
            ));
        }
    }
    let host = request_host(req)?;
    if let (Some(sni), Some(h)) = (&conn.sni, &host) {
        if sni != h {
            return Err(Reject::misdirected());
        }
    }
    let path = normalize(req.uri().path())
        .map_err(|e| Reject::new(e.reason(), e.to_string()))?
        .into_owned();
    // Routes match the path with segment parameters removed (`/admin;x=y/keys` is routed as
    // `/admin/keys`): Tomcat, Jetty and Spring drop them before routing, so a route's rules
    // must not be sidestepped with a `;` (docs/attack-cases.md PATH-13). The upstream still gets
    // the path as the client wrote it (normalized).
    let route_path = without_segment_params(&path);
    // A CORS preflight asks whether the method it names may be sent here: it goes to the route
    // that method would reach, when that route has `cors` (else it is an OPTIONS like any other).
    if crate::cors::is_preflight(req.method(), req.headers()) {
        let asked = crate::cors::requested_method(req.headers());
        let hit = asked.and_then(|m| router.lookup(host.as_deref(), &route_path, &m));
        if let Some(route) = hit.filter(|r| r.cors.is_some()) {
            let route = route.clone();
            return Ok(Routed {
                host,
                path,
                route,
                preflight: true,
            });
        }
    }
    let route = router
        .lookup(host.as_deref(), &route_path, req.method())
        .ok_or_else(Reject::not_found)?
        .clone();
    Ok(Routed {
        host,
        path,
        route,
        preflight: false,
    })
}

/// `/a;x=1/b;y` -> `/a/b` (borrowed when there is no `;`).
pub fn without_segment_params(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(';') {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segs.iter().enumerate() {
        let bare = seg.split(';').next().unwrap_or("");
        // `/;x/admin` -> `/admin`: a segment that was only parameters is no segment (normalize
        // already merged real empty ones); a trailing slash stays.
        if bare.is_empty() && i + 1 < segs.len() {
            continue;
        }
        out.push('/');
        out.push_str(bare);
    }
    if out.is_empty() {
        out.push('/');
    }
    std::borrow::Cow::Owned(out)
}

/// Lowercase host without port or trailing dot, from `:authority`/absolute URI and `Host`, which
/// must agree. `Ok(None)`: an HTTP/1.0 request without a host.
fn request_host<B>(req: &Request<B>) -> Result<Option<String>, Reject> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header_host = hosts.next();
    if hosts.next().is_some() {
        return Err(Reject::new(
            Reason::MultipleHost,
            "more than one Host header",
        ));
    }
    // User information in a host (`x@api.example.com`), in `Host` or in the request target: no
    // reading of it is safe to route or to compare with the SNI (docs/attack-cases.md HDR-10).
    if header_host.is_some_and(|v| v.as_bytes().contains(&b'@'))
        || req
            .uri()
            .authority()
            .is_some_and(|a| a.as_str().contains('@'))
    {
        return Err(Reject::new(
            Reason::BadHost,
            "the Host must not carry user information",
        ));
    }
    // The common case, an origin-form target and a plain lowercase `Host` (`api.example.com` or
    // `api.example.com:8443`): no `Authority` parse (about 700 instructions under callgrind).
    if req.uri().authority().is_none() {
        if let Some(h) = header_host.and_then(|v| simple_host(v.as_bytes())) {
            return Ok(Some(h.to_owned()));
        }
    }
    let header_host = match header_host {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<http::uri::Authority>().ok())
                .ok_or_else(|| {
                    Reject::new(Reason::BadHost, "the Host header is not a valid host")
                })?,
        ),
        None => None,
    };
    let uri_host = req.uri().authority().cloned();
    let auth = match (uri_host, header_host) {
        (Some(u), Some(h)) => {
            if !u.host().eq_ignore_ascii_case(h.host()) || u.port_u16() != h.port_u16() {
                return Err(Reject::new(
                    Reason::HostMismatch,
                    "the Host header and the request target name different hosts",
                ));
            }
            Some(u)
        }
        (Some(u), None) => Some(u),
        (None, Some(h)) => Some(h),
        (None, None) => {
            if req.version() == Version::HTTP_11 || req.version() == Version::HTTP_2 {
                return Err(Reject::new(Reason::MissingHost, "the request has no Host"));
            }
            None
        }
    };
    Ok(auth
        .map(|a| a.host().trim_end_matches('.').to_ascii_lowercase())
        .filter(|h| !h.is_empty()))
}

/// `host` or `host:port` with only lowercase letters, digits, `.` and `-` in the host (a trailing
/// dot dropped) and digits in the port; None for anything else, which takes the full parse.
fn simple_host(v: &[u8]) -> Option<&str> {
    let (mut host, port) = match v.iter().position(|&b| b == b':') {
        Some(i) => (&v[..i], Some(&v[i + 1..])),
        None => (v, None),
    };
    while let Some(h) = host.strip_suffix(b".") {
        host = h;
    }
    let host_ok = !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    // a port, when there is a colon: digits (`parse` alone would take a `+`) that fit a u16
    let port_ok = port.is_none_or(|p| {
        p.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(p).is_ok_and(|p| p.parse::<u16>().is_ok())
    });
    (host_ok && port_ok)
        .then(|| std::str::from_utf8(host).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::simple_host;

    /// The fast path agrees with the full parse wherever it answers, and leaves the rest to it.
    #[test]
    fn simple_hosts_agree_with_the_full_parse() {
        let cases = [
            "api.example.com",
            "api.example.com:8443",
            "api.example.com.",
            "api.example.com..:1",
            "127.0.0.1:8080",
            "a",
            "a:0",
            "a:65535",
            "a:65536",
            "a:",
            ":80",
            "a:b",
            "API.example.com",
            "[::1]:80",
            "x@y",
            "a b",
            "a:123456",
            ".",
            "",
        ];
        for c in cases {
            let full = c
                .parse::<http::uri::Authority>()
                .ok()
                .filter(|a| a.port().is_none() || a.port_u16().is_some())
                .map(|a| a.host().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty());
            if let Some(fast) = simple_host(c.as_bytes()) {
                assert_eq!(Some(fast.to_owned()), full, "{c}");
            }
        }
        assert_eq!(
            simple_host(b"api.example.com:8443"),
            Some("api.example.com")
        );
        assert_eq!(simple_host(b"a.:1"), Some("a"));
        for slow in [
            "API.example.com",
            "[::1]:80",
            "a:",
            ":80",
            "a:65536",
            "a b",
            ".",
        ] {
            assert_eq!(simple_host(slow.as_bytes()), None, "{slow}");
        }
    }
}

#[cfg(test)]
mod rewrite_tests {
    use super::*;

    #[test]
    fn stripping_passes_over_segment_parameters_and_case_as_routing_does() {
        let r = |strip: &str, prefix: Option<&str>, ci: bool| Rewrite {
            strip: Some(strip.into()),
            prefix: prefix.map(Into::into),
            case_insensitive: ci,
        };
        let files = r("/files", Some("/v2"), false);
        assert_eq!(files.apply("/files/a").as_deref(), Some("/v2/a"));
        assert_eq!(
            files.apply("/files;jsessionid=1/a").as_deref(),
            Some("/v2/a")
        );
        assert_eq!(files.apply("/;x/files/a").as_deref(), Some("/v2/a"));
        assert_eq!(files.apply("/files").as_deref(), Some("/v2"));
        assert_eq!(files.apply("/FILES/a").as_deref(), Some("/v2/FILES/a"));
        assert_eq!(files.apply("/filesX/a").as_deref(), Some("/v2/filesX/a"));
        let ci = r("/api/v1", None, true);
        assert_eq!(ci.apply("/API/V1/x").as_deref(), Some("/x"));
        assert_eq!(ci.apply("/api;a/v1;b").as_deref(), Some("/"));
        assert_eq!(ci.apply("/api/v2/x"), None);
    }
}
