//! Local users of the authorization server (`oauth_server.login.users`, SPEC section 7): a
//! username, an Argon2id password hash (a PHC string: algorithm, parameters and salt travel with
//! it, so parameters can rise later without breaking stored hashes) and the scopes the user may
//! grant. Users live in the store only: signing in is rare, and reading one row then costs less
//! than keeping every user in memory on every replica.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub username: String,
    /// `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
    pub password_hash: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// OWASP's first Argon2id setting (19 MiB, 2 passes, 1 lane), paid at sign-in and when a
/// password is set.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `password` with a fresh random salt. CPU-heavy: call it off the async
/// workers.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "no randomness for a salt".to_owned())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `phc` (any Argon2 variant and parameters the string names; a
/// malformed string matches nothing). CPU-heavy, constant time in the comparison.
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when there is no such user, so that an unknown username takes as
/// long as a wrong password (no user enumeration by timing).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash_password("portcullis-decoy").unwrap_or_default());
    &DECOY
}

/// Usernames: 1-64 of `A-Z a-z 0-9 . _ @ -`, starting with a letter or digit. A user's `sub`
/// is the username, so it must read the same in a token, a header and a log.
pub fn valid_username(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 64
        && u.as_bytes()[0].is_ascii_alphanumeric()
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@".contains(&b))
}

/// Passwords: 8 to 1024 bytes (the bound keeps hashing cost fixed), no control characters.
pub fn check_password(p: &str) -> Result<(), &'static str> {
    if p.len() < 8 {
        return Err("password: at least 8 characters");
    }
    if p.len() > 1024 {
        return Err("password: at most 1024 bytes");
    }
    if p.chars().any(char::is_control) {
        return Err("password: no control characters");
    }
    Ok(())
}

/// Sign-in throttling per username (OWASP's account lockout with backoff, NIST SP 800-63B
/// 5.2.2): after `after` failures in a row (none more than `window` after the previous one or the
/// end of its lock) the username is
/// locked for `first_lock` seconds, doubling with each further failure up to `max_lock`; never
/// for good, and a success clears it. The lock is checked before the password is hashed, so a
/// locked account refuses the right password too. Unknown usernames are throttled alike (a
/// refusal must not tell whether the user exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub after: u32,
    pub window: i64,
    pub first_lock: i64,
    pub max_lock: i64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            after: 5,
            window: 900,
            first_lock: 60,
            max_lock: 900,
        }
    }
}

/// A username's failed sign-ins as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failures {
    /// Failures in a row.
    pub count: u32,
    /// Unix seconds of the last one.
    pub last_at: i64,
    /// Unix seconds until which sign-in is refused (0: not locked).
    pub locked_until: i64,
}

impl Throttle {
    /// Until when `f` keeps the username locked at `now`, if it does.
    pub fn locked(&self, f: Option<&Failures>, now: i64) -> Option<i64> {
        f.map(|f| f.locked_until).filter(|u| *u > now)
    }

    /// The record after one more failure at `now` (failures while locked are not counted: the
    /// password was not even checked).
    pub fn failed(&self, prev: Option<Failures>, now: i64) -> Failures {
        let mut f = match prev {
            Some(p) if p.locked_until > now => return p,
            // a quiet spell of `window` after the last failure (or the end of its lock)
            Some(p) if now - p.last_at.max(p.locked_until) < self.window => p,
            _ => Failures {
                count: 0,
                last_at: now,
                locked_until: 0,
            },
        };
        f.count = f.count.saturating_add(1);
        f.last_at = now;
        if f.count >= self.after {
            let doublings = (f.count - self.after).min(30);
            let lock = self
                .first_lock
                .saturating_mul(1 << doublings)
                .min(self.max_lock);
            f.locked_until = now + lock;
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify_password(&a, "correct horse"));
        assert!(!verify_password(&a, "correct horsE"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert!(!verify_password(decoy_hash(), "correct horse"));
    }

    #[test]
    fn usernames_and_passwords_are_checked() {
        for ok in ["alice", "a.b-c_d@example.com", "7"] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in ["", ".x", "a b", "a\nb", "ä", &"x".repeat(65)] {
            assert!(!valid_username(bad), "{bad}");
        }
        assert!(check_password("12345678").is_ok());
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678\n").is_err());
        assert!(check_password(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn failures_lock_with_a_doubling_backoff_and_start_again_after_the_window() {
        let t = Throttle::default();
        let mut f = None;
        let mut now = 1_000;
        for _ in 0..4 {
            f = Some(t.failed(f, now));
            assert_eq!(t.locked(f.as_ref(), now), None);
            now += 10;
        }
        f = Some(t.failed(f, now));
        assert_eq!(t.locked(f.as_ref(), now), Some(now + 60));
        // while locked nothing is counted
        assert_eq!(t.failed(f, now + 30), f.unwrap());
        // after the lock: each failure doubles it, up to 15 minutes
        let mut expect = 120;
        for _ in 0..5 {
            now = f.unwrap().locked_until;
            f = Some(t.failed(f, now));
            assert_eq!(t.locked(f.as_ref(), now), Some(now + expect.min(900)));
            expect *= 2;
        }
        // a long quiet spell starts the count again
        now = f.unwrap().locked_until + 900;
        f = Some(t.failed(f, now));
        assert_eq!(f.unwrap().count, 1);
        assert_eq!(t.locked(f.as_ref(), now), None);
    }
}
