//! The JWT denylist: `jti` -> the time until which it is refused (when the token would have
//! expired anyway). Checked on every request, cached verifications included. Filled through the
//! admin API (key lifecycle issue); shared across reloads.

use dashmap::DashMap;

#[derive(Debug, Default)]
pub struct Revocations {
    map: DashMap<String, f64>,
}

impl Revocations {
    pub fn revoke(&self, jti: &str, until_unix: f64) {
        self.map.insert(jti.to_owned(), until_unix);
    }

    pub fn is_revoked(&self, jti: &str, now: f64) -> bool {
        // An empty map (the usual case) costs no hashing.
        !self.map.is_empty() && self.map.get(jti).is_some_and(|until| *until > now)
    }

    /// Lifts the revocation of `jti`; whether it was in force at `now`.
    pub fn lift(&self, jti: &str, now: f64) -> bool {
        self.map.remove(jti).is_some_and(|(_, until)| until > now)
    }

    /// Forgets revocations whose token has expired by now.
    pub fn purge(&self, now: f64) {
        self.map.retain(|_, until| *until > now);
    }

    pub fn list(&self) -> Vec<(String, f64)> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_until_expiry() {
        let r = Revocations::default();
        assert!(!r.is_revoked("a", 100.0));
        r.revoke("a", 200.0);
        assert!(r.is_revoked("a", 100.0));
        assert!(!r.is_revoked("a", 200.0));
        assert!(!r.is_revoked("b", 100.0));
        r.purge(300.0);
        assert!(r.list().is_empty());
    }
}
