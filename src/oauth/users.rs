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

/// OWASP's first Argon2id setting (19 MiB, 2 passes, 1 lane): about 30 ms a hash on this
/// machine's cores, paid at sign-in and when a password is set.
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
}
