//! Route lookup: (host, normalized path, method) -> the first matching route. Pure, no I/O.

use crate::auth::AuthPolicy;
use crate::forward::Upstream;
use crate::normalize::normalize;
use http::Method;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Lowercase host without port or trailing dot.
    Exact(String),
    /// `*.example.com` stored as `.example.com`: matches any subdomain, not the apex.
    Suffix(String),
}

impl HostMatch {
    pub fn parse(s: &str) -> Result<HostMatch, String> {
        let h = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if let Some(rest) = h.strip_prefix("*.") {
            if rest.split('.').all(valid_label) {
                return Ok(HostMatch::Suffix(format!(".{rest}")));
            }
        } else if h.split('.').all(valid_label)
            || h.parse::<std::net::IpAddr>().is_ok()
            || (h.starts_with('[') && h.ends_with(']'))
        {
            return Ok(HostMatch::Exact(h));
        }
        Err(format!(
            "`{s}` is not a host name (use `api.example.com` or `*.example.com`, no port)"
        ))
    }

    /// `host` is already lowercased, port and trailing dot removed.
    pub fn matches(&self, host: Option<&str>) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => host == Some(h.as_str()),
            HostMatch::Suffix(s) => {
                host.is_some_and(|h| h.len() > s.len() && h.ends_with(s.as_str()))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Any,
    Exact(String),
    /// Without trailing slash; `/` is stored as the empty string and matches every path.
    Prefix(String),
}

impl PathMatch {
    fn check(s: &str) -> Result<(), String> {
        match normalize(s) {
            Ok(n) if n == s => Ok(()),
            Ok(n) => Err(format!("`{s}` is not a normalized path; write `{n}`")),
            Err(e) => Err(format!("`{s}`: {e}")),
        }
    }

    pub fn exact(s: &str) -> Result<PathMatch, String> {
        Self::check(s)?;
        Ok(PathMatch::Exact(s.to_owned()))
    }

    pub fn prefix(s: &str) -> Result<PathMatch, String> {
        Self::check(s)?;
        Ok(PathMatch::Prefix(s.trim_end_matches('/').to_owned()))
    }

    /// Prefixes match on segment boundaries: `/api/users` matches `/api/users/7`, not `/api/usersX`;
    /// exact paths match with or without one trailing slash.
    pub fn matches(&self, path: &str) -> bool {
        self.matches_case(path, false)
    }

    /// [`PathMatch::matches`], ignoring ASCII case when `ci`.
    pub fn matches_case(&self, path: &str, ci: bool) -> bool {
        let eq = |a: &str, b: &str| {
            if ci {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match self {
            PathMatch::Any => true,
            // One trailing slash either way is the same path: Spring (<= 5), Express and most
            // frameworks serve `/internal/report/` as `/internal/report`, so an exact route
            // that missed it would let the request fall to a weaker route (docs/attack-cases.md
            // PATH-16: spring-projects/spring-framework#28552).
            PathMatch::Exact(p) => {
                eq(path, p) || {
                    let a = path.strip_suffix('/').unwrap_or(path);
                    !a.is_empty() && eq(a, p.strip_suffix('/').unwrap_or(p))
                }
            }
            PathMatch::Prefix(p) => {
                path.get(..p.len()).is_some_and(|head| eq(head, p))
                    && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            }
        }
    }
}

#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub host: HostMatch,
    pub path: PathMatch,
    /// Empty = every method.
    pub methods: Vec<Method>,
    pub upstream: Arc<Upstream>,
    pub auth: AuthPolicy,
    pub max_body_bytes: u64,
    /// `match.case_insensitive`: the path pattern is compared ignoring ASCII case, so
    /// `/ADMIN/keys` cannot reach a case-insensitive upstream's `/admin/keys` through a weaker
    /// route (docs/attack-cases.md PATH-15: GoogleCloudPlatform/nodejs-docs-samples#333).
    pub case_insensitive: bool,
    /// Remove the consumed credential before forwarding: a chain with authenticators ran and the
    /// route does not say `forward_credentials: true`. Decided once, at compile time.
    pub strip_credentials: bool,
    /// Query parameters removed before forwarding: the chain's `query:` token sources when
    /// `strip_credentials`, and always `_method`, the query form of the method-override headers
    /// (Rails, Laravel, Express method-override; docs/attack-cases.md HDR-18).
    pub strip_params: Vec<String>,
    /// Applied per client address before any signature check.
    pub pre_auth_rate_limit: Option<Arc<crate::auth::rate_limit::RateLimit>>,
}

impl Route {
    fn matches(&self, host: Option<&str>, path: &str, method: &Method) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.path.matches_case(path, self.case_insensitive)
            && self.host.matches(host)
    }
}

#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        Router {
            routes: routes.into_iter().map(Arc::new).collect(),
        }
    }

    /// First match wins, in config order.
    pub fn lookup(&self, host: Option<&str>, path: &str, method: &Method) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.matches(host, path, method))
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_on_segment_boundaries() {
        let p = PathMatch::prefix("/api/users").unwrap_or(PathMatch::Any);
        assert!(p.matches("/api/users"));
        assert!(p.matches("/api/users/"));
        assert!(p.matches("/api/users/7"));
        assert!(!p.matches("/api/usersX"));
        assert!(!p.matches("/api"));
        let root = PathMatch::prefix("/").unwrap_or(PathMatch::Exact(String::new()));
        assert!(root.matches("/"));
        assert!(root.matches("/anything/at/all"));
        assert!(PathMatch::prefix("/a/../b").is_err());
        assert!(PathMatch::exact("api").is_err());
    }

    #[test]
    fn exact_paths_ignore_one_trailing_slash() {
        let e = PathMatch::exact("/internal/report").unwrap_or(PathMatch::Any);
        assert!(e.matches("/internal/report"));
        assert!(e.matches("/internal/report/"));
        assert!(!e.matches("/internal/report/x"));
        assert!(!e.matches("/internal/reportx"));
        assert!(!e.matches("/internal"));
        let s = PathMatch::exact("/x/").unwrap_or(PathMatch::Any);
        assert!(s.matches("/x") && s.matches("/x/"));
        let root = PathMatch::exact("/").unwrap_or(PathMatch::Any);
        assert!(root.matches("/"));
        assert!(!root.matches("/a"));
    }

    #[test]
    fn case_insensitive_matching() {
        let p = PathMatch::prefix("/admin").unwrap_or(PathMatch::Any);
        assert!(!p.matches("/ADMIN/keys"));
        assert!(p.matches_case("/ADMIN/keys", true));
        assert!(p.matches_case("/Admin", true));
        assert!(!p.matches_case("/Adminx", true));
        assert!(!p.matches_case("/a\u{e9}", true)); // shorter than the prefix at a char boundary
        let e = PathMatch::exact("/internal/report").unwrap_or(PathMatch::Any);
        assert!(e.matches_case("/Internal/Report/", true));
        assert!(!e.matches_case("/Internal/Report", false));
    }

    #[test]
    fn hosts() {
        let w = HostMatch::parse("*.Example.com").unwrap_or(HostMatch::Any);
        assert!(w.matches(Some("a.example.com")));
        assert!(w.matches(Some("a.b.example.com")));
        assert!(!w.matches(Some("example.com")));
        assert!(!w.matches(Some("aexample.com")));
        assert!(!w.matches(None));
        let e = HostMatch::parse("api.example.com.").unwrap_or(HostMatch::Any);
        assert!(e.matches(Some("api.example.com")));
        assert!(!e.matches(Some("api.example.com.evil")));
        assert!(HostMatch::parse("api.example.com:443").is_err());
        assert!(HostMatch::parse("a*.example.com").is_err());
    }
}
