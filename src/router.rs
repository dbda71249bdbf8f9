//! Route lookup: (host, normalized path, method) -> the first matching route. Pure, no I/O; the
//! routes themselves (what a match leads to) are [`crate::route::Route`]s.

use crate::config::issues::Issues;
use crate::config::raw::RawMatch;
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

/// When a route applies: `match:` compiled.
#[derive(Debug)]
pub struct Matcher {
    pub host: HostMatch,
    pub path: PathMatch,
    /// Empty = every method.
    pub methods: Vec<Method>,
    /// `match.case_insensitive`: the path pattern is compared ignoring ASCII case, so
    /// `/ADMIN/keys` cannot reach a case-insensitive upstream's `/admin/keys` through a weaker
    /// route (docs/attack-cases.md PATH-15: GoogleCloudPlatform/nodejs-docs-samples#333).
    pub case_insensitive: bool,
}

impl Matcher {
    /// `routes[i].match` (`at` is `routes[i]`).
    pub fn compile(m: &RawMatch, at: &str, issues: &mut Issues) -> Matcher {
        let host = match &m.host {
            None => HostMatch::Any,
            Some(h) => HostMatch::parse(h.as_str()).unwrap_or_else(|e| {
                issues.add(format!("{at}.match.host"), e);
                HostMatch::Any
            }),
        };
        let path = match (&m.path, &m.path_prefix) {
            (Some(_), Some(_)) => {
                issues.add(
                    format!("{at}.match"),
                    "give either `path` or `path_prefix`, not both",
                );
                PathMatch::Any
            }
            (Some(x), None) => PathMatch::exact(x.as_str()).unwrap_or_else(|e| {
                issues.add(format!("{at}.match.path"), e);
                PathMatch::Any
            }),
            (None, Some(x)) => PathMatch::prefix(x.as_str()).unwrap_or_else(|e| {
                issues.add(format!("{at}.match.path_prefix"), e);
                PathMatch::Any
            }),
            (None, None) => PathMatch::Any,
        };
        let mut methods = Vec::new();
        for (j, name) in m.methods.iter().flatten().enumerate() {
            let up = name.as_str().to_ascii_uppercase();
            match Method::from_bytes(up.as_bytes()) {
                Ok(method) if !up.is_empty() => methods.push(method),
                _ => issues.add(
                    format!("{at}.match.methods[{j}]"),
                    format!("`{name}` is not an HTTP method"),
                ),
            }
        }
        Matcher {
            host,
            path,
            methods,
            case_insensitive: m.case_insensitive.unwrap_or(false),
        }
    }

    pub fn matches(&self, host: Option<&str>, path: &str, method: &Method) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.path.matches_case(path, self.case_insensitive)
            && self.host.matches(host)
    }
}

/// Routes in config order, each with its matcher.
#[derive(Debug)]
pub struct Router<T> {
    routes: Vec<(Matcher, Arc<T>)>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<T> Router<T> {
    pub fn new(routes: Vec<(Matcher, T)>) -> Router<T> {
        Router {
            routes: routes.into_iter().map(|(m, r)| (m, Arc::new(r))).collect(),
        }
    }

    /// Every route, in config order.
    pub fn routes(&self) -> impl Iterator<Item = &Arc<T>> {
        self.routes.iter().map(|(_, r)| r)
    }

    /// First match wins, in config order.
    pub fn lookup(&self, host: Option<&str>, path: &str, method: &Method) -> Option<&Arc<T>> {
        self.routes
            .iter()
            .find(|(m, _)| m.matches(host, path, method))
            .map(|(_, r)| r)
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
