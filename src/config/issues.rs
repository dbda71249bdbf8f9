//! Config problems: each with its field path (`routes[3].auth.scopes`) and, once located in the
//! file, its line and column. Every compiler collects all it finds into [`Issues`], so `check`
//! reports every error at once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// One problem in a config file, with the field path and, where known, its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
    pub at: Option<(usize, usize)>,
}

/// Every problem found in one config file. Displays as `FILE:LINE:COL: field.path: message` lines.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some((line, col)) = issue.at {
                write!(f, ":{line}:{col}")?;
            }
            if issue.path.is_empty() {
                write!(f, ": {}", issue.message)?;
            } else {
                write!(f, ": {}: {}", issue.path, issue.message)?;
            }
        }
        Ok(())
    }
}

/// The problems found so far, in the order found.
#[derive(Default, Debug)]
pub struct Issues(pub Vec<ConfigIssue>);

impl Issues {
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
            at: None,
        });
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The things of one kind a config defines (`upstreams`, `authenticators`, `rate_limits`), for
/// looking up the names other sections refer to.
pub struct Defined<'a, T> {
    /// "upstream", "authenticator", "rate limit": for the message.
    pub kind: &'static str,
    /// Those that compiled.
    pub compiled: &'a BTreeMap<String, T>,
    /// Every name the section lists, compiled or not.
    pub names: Vec<&'a str>,
}

impl<T> Defined<'_, T> {
    /// The compiled thing `name` refers to. A name the config does not define is reported at
    /// `at`; one that is defined but failed to compile was reported already.
    pub fn get(&self, name: &str, at: impl FnOnce() -> String, issues: &mut Issues) -> Option<&T> {
        let found = self.compiled.get(name);
        if found.is_none() && !self.names.contains(&name) {
            let defined = if self.names.is_empty() {
                "none".to_owned()
            } else {
                self.names.join(", ")
            };
            issues.add(
                at(),
                format!("unknown {} `{name}` (defined: {defined})", self.kind),
            );
        }
        found
    }
}
