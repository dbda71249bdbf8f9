//! Scope authorization: `scopes` (all of them), `scopes_any` (at least one), and the optional
//! `superscope` that passes every check.

use crate::error::{Reason, Reject};
use http::{header, HeaderValue};

#[derive(Debug, Default, Clone)]
pub struct ScopeRule {
    pub all: Vec<String>,
    pub any: Vec<String>,
}

impl ScopeRule {
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.any.is_empty()
    }

    pub fn check(&self, held: &[String], superscope: Option<&str>) -> Result<(), Reject> {
        if self.is_empty() {
            return Ok(());
        }
        let has = |s: &String| held.iter().any(|h| h == s);
        if superscope.is_some_and(|sup| held.iter().any(|h| h == sup)) {
            return Ok(());
        }
        let all_ok = self.all.iter().all(has);
        let any_ok = self.any.is_empty() || self.any.iter().any(has);
        if all_ok && any_ok {
            return Ok(());
        }
        let mut wanted: Vec<&str> = self.all.iter().map(String::as_str).collect();
        if !any_ok {
            wanted.extend(self.any.iter().map(String::as_str));
        }
        let scope = wanted.join(" ");
        let challenge =
            format!("Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"{scope}\"");
        Err(Reject::new(
            Reason::InsufficientScope,
            format!("this route requires the scope(s): {scope}"),
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn all_any_and_superscope() {
        let rule = ScopeRule {
            all: v(&["read", "write"]),
            any: vec![],
        };
        assert!(rule.check(&v(&["read", "write", "x"]), None).is_ok());
        let e = rule.check(&v(&["read"]), None).unwrap_err();
        assert_eq!(e.status(), 403);
        assert_eq!(
            e.headers[0].1,
            "Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"read write\""
        );
        assert!(rule.check(&v(&["admin"]), Some("admin")).is_ok());
        assert!(rule.check(&v(&["admin"]), None).is_err());
        let any = ScopeRule {
            all: vec![],
            any: v(&["a", "b"]),
        };
        assert!(any.check(&v(&["b"]), None).is_ok());
        assert!(any.check(&v(&["c"]), None).is_err());
        assert!(any.check(&[], None).is_err());
        assert!(ScopeRule::default().check(&[], None).is_ok());
    }
}
