//! The authorization server's signing keys (SPEC section 7): generated here (ES256, RS256 or
//! EdDSA, with aws-lc), their private halves encrypted at rest with `secrets_key` (AES-256-GCM,
//! the key id as associated data), and their timeline.
//!
//! A key's life is decided by times every replica reads the same way, so no replica has to tell
//! another which key signs: a key is *pending* from its creation until its `activates_at` (it is
//! published, so verifiers that cache the JWKS learn it before it signs), *active* from then until
//! the next key activates (the one key that signs), then *retired*: still published until every
//! token it can have signed has expired, then *expired* (dropped from the JWKS).

use crate::digest::sha256;
use arc_swap::ArcSwap;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigAlg {
    ES256,
    RS256,
    EdDSA,
}

impl SigAlg {
    pub const ALL: [SigAlg; 3] = [SigAlg::ES256, SigAlg::RS256, SigAlg::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            SigAlg::ES256 => "ES256",
            SigAlg::RS256 => "RS256",
            SigAlg::EdDSA => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<SigAlg> {
        SigAlg::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// `oauth_server.signing.secrets_key`: 32 bytes that encrypt the private keys at rest.
pub struct SecretsKey(LessSafeKey, [u8; 32]);

impl Clone for SecretsKey {
    fn clone(&self) -> SecretsKey {
        // the bytes made a key once, so they make one again
        Self::from_bytes(&self.1).unwrap_or_else(|_| unreachable!("a 32-byte AES key"))
    }
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(<redacted>)")
    }
}

impl SecretsKey {
    /// From its base64 text (standard or URL alphabet, padded or not).
    pub fn from_base64(text: &str) -> Result<SecretsKey, String> {
        let t = text.trim();
        let bytes = STANDARD
            .decode(t)
            .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
            .map_err(|_| "is not base64".to_owned())?;
        if bytes.len() != 32 {
            return Err(format!(
                "must be 32 bytes (base64 of 32 random bytes), not {}",
                bytes.len()
            ));
        }
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<SecretsKey, String> {
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be 32 bytes".to_owned())?;
        UnboundKey::new(&AES_256_GCM, bytes)
            .map(|k| SecretsKey(LessSafeKey::new(k), raw))
            .map_err(|_| "is not a usable AES-256 key".to_owned())
    }

    /// A new random key and its base64 text.
    pub fn generate() -> Result<(SecretsKey, String), String> {
        let mut b = [0u8; 32];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| "no randomness".to_owned())?;
        Ok((Self::from_bytes(&b)?, STANDARD.encode(b)))
    }

    fn aad(kid: &str) -> Vec<u8> {
        format!("portcullis signing key {kid}").into_bytes()
    }

    /// `nonce || ciphertext || tag`.
    fn seal(&self, kid: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| "no randomness".to_owned())?;
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(kid)),
                &mut buf,
            )
            .map_err(|_| "encryption failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let wrong = || {
            format!(
                "signing key {kid} does not decrypt with oauth_server.signing.secrets_key (was it changed?)"
            )
        };
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(wrong());
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let mut buf = ct.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(Self::aad(kid)), &mut buf)
            .map_err(|_| wrong())?;
        Ok(plain.to_vec())
    }
}

/// A signing key as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: SigAlg,
    pub created_at: i64,
    pub activates_at: i64,
    /// The PKCS#8 private key, sealed with the secrets key.
    pub private_sealed: Vec<u8>,
    /// The public JWK (JSON), as the JWKS publishes it.
    pub public_jwk: String,
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// The public JWK's members and its RFC 7638 thumbprint (the key id).
fn public_jwk(alg: SigAlg, pkcs8: &[u8]) -> Result<(String, String), String> {
    let bad = |_| "generated key does not parse".to_owned();
    // RFC 7638: the required members, in lexicographic order, no white space.
    let thumb_input = match alg {
        SigAlg::ES256 => {
            let k = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map_err(bad)?;
            let p = k.public_key().as_ref();
            if p.len() != 65 {
                return Err("unexpected P-256 point".into());
            }
            format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                b64(&p[1..33]),
                b64(&p[33..])
            )
        }
        SigAlg::RS256 => {
            let k = signature::RsaKeyPair::from_pkcs8(pkcs8).map_err(bad)?;
            let pk = k.public_key();
            format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64(pk.exponent().big_endian_without_leading_zero()),
                b64(pk.modulus().big_endian_without_leading_zero())
            )
        }
        SigAlg::EdDSA => {
            let k = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(bad)?;
            format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                b64(k.public_key().as_ref())
            )
        }
    };
    let kid = b64(&sha256(thumb_input.as_bytes()));
    let members = thumb_input.trim_start_matches('{').trim_end_matches('}');
    let jwk = format!(
        r#"{{{members},"kid":"{kid}","alg":"{}","use":"sig"}}"#,
        alg.as_str()
    );
    Ok((jwk, kid))
}

/// A new key pair for `alg`, sealed with `secrets`, that signs from `activates_at`.
pub fn generate(
    alg: SigAlg,
    secrets: &SecretsKey,
    created_at: i64,
    activates_at: i64,
) -> Result<SigningKeyRow, String> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let failed = |_| format!("{} key generation failed", alg.as_str());
    let pkcs8: Vec<u8> = match alg {
        SigAlg::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        SigAlg::RS256 => {
            let k = signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(failed)?;
            AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&k)
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        SigAlg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(failed)?
            .as_ref()
            .to_vec(),
    };
    let (public_jwk, kid) = public_jwk(alg, &pkcs8)?;
    Ok(SigningKeyRow {
        private_sealed: secrets.seal(&kid, &pkcs8)?,
        kid,
        alg,
        created_at,
        activates_at,
        public_jwk,
    })
}

enum Private {
    Ec(EcdsaKeyPair),
    Rsa(signature::RsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A key ready to sign: its private half and the encoded JWS header of its access tokens.
pub struct Signer {
    pub kid: String,
    pub alg: SigAlg,
    /// base64url of `{"alg":..,"typ":"at+jwt","kid":..}`.
    header_b64: String,
    key: Private,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Signer {
    fn new(row: &SigningKeyRow, pkcs8: &[u8]) -> Result<Signer, String> {
        let bad = |_| format!("signing key {} does not parse", row.kid);
        let key = match row.alg {
            SigAlg::ES256 => Private::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(bad)?,
            ),
            SigAlg::RS256 => Private::Rsa(signature::RsaKeyPair::from_pkcs8(pkcs8).map_err(bad)?),
            SigAlg::EdDSA => Private::Ed(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(bad)?),
        };
        let header = format!(
            r#"{{"alg":"{}","typ":"at+jwt","kid":"{}"}}"#,
            row.alg.as_str(),
            row.kid
        );
        Ok(Signer {
            kid: row.kid.clone(),
            alg: row.alg,
            header_b64: b64(header.as_bytes()),
            key,
        })
    }

    /// A compact JWS of `claims` (a JSON object's bytes) with this key's access-token header.
    pub fn sign(&self, claims: &[u8]) -> Result<String, String> {
        self.sign_with(&self.header_b64, claims)
    }

    /// A compact JWS of `claims` whose header names `typ` (not an access token's `at+jwt`, so
    /// no verifier of access tokens can take it for one).
    pub fn sign_typ(&self, typ: &str, claims: &[u8]) -> Result<String, String> {
        let header = format!(
            r#"{{"alg":"{}","typ":"{typ}","kid":"{}"}}"#,
            self.alg.as_str(),
            self.kid
        );
        self.sign_with(&b64(header.as_bytes()), claims)
    }

    fn sign_with(&self, header_b64: &str, claims: &[u8]) -> Result<String, String> {
        let mut out = String::with_capacity(header_b64.len() + claims.len() * 4 / 3 + 400);
        out.push_str(header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut out);
        let failed = |_| "signing failed".to_owned();
        let sig = match &self.key {
            Private::Ec(k) => k
                .sign(&aws_lc_rs::rand::SystemRandom::new(), out.as_bytes())
                .map_err(failed)?
                .as_ref()
                .to_vec(),
            Private::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    out.as_bytes(),
                    &mut sig,
                )
                .map_err(failed)?;
                sig
            }
            Private::Ed(k) => k.sign(out.as_bytes()).as_ref().to_vec(),
        };
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&sig, &mut out);
        Ok(out)
    }
}

/// A stored key, opened.
#[derive(Debug)]
pub struct LoadedKey {
    pub kid: String,
    pub alg: SigAlg,
    pub created_at: i64,
    pub activates_at: i64,
    pub public_jwk: String,
    pub signer: Arc<Signer>,
}

/// Where a key is in its life at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Pending,
    Active,
    Retired,
    Expired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Expired => "expired",
        }
    }
}

/// Every key, in the order they activate.
#[derive(Debug, Default)]
pub struct Timeline {
    pub keys: Vec<Arc<LoadedKey>>,
}

impl Timeline {
    /// The key that signs at `now`: the last one activated.
    pub fn active(&self, now: i64) -> Option<&Arc<LoadedKey>> {
        self.keys.iter().rev().find(|k| k.activates_at <= now)
    }

    /// When key `i` stopped signing (the next key's activation), if it has.
    fn retired_at(&self, i: usize, now: i64) -> Option<i64> {
        self.keys
            .get(i + 1)
            .map(|n| n.activates_at)
            .filter(|t| *t <= now)
    }

    /// Key `i`'s state at `now`, its tokens living at most `max_ttl` seconds.
    pub fn state(&self, i: usize, now: i64, max_ttl: i64) -> KeyState {
        let k = &self.keys[i];
        if k.activates_at > now {
            return KeyState::Pending;
        }
        match self.retired_at(i, now) {
            None => KeyState::Active,
            // a minute of margin for clock skew between replicas and verifiers' leeway
            Some(r) if r + max_ttl + 60 > now => KeyState::Retired,
            Some(_) => KeyState::Expired,
        }
    }

    /// The JWK Set: pending, active and retired keys.
    pub fn jwks(&self, now: i64, max_ttl: i64) -> String {
        let mut out = String::from(r#"{"keys":["#);
        let mut first = true;
        for (i, k) in self.keys.iter().enumerate() {
            if self.state(i, now, max_ttl) == KeyState::Expired {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&k.public_jwk);
        }
        out.push_str("]}");
        out
    }

    /// The latest activation time of any key (the active one's, or a pending one's).
    pub fn last_activation(&self) -> Option<i64> {
        self.keys.last().map(|k| k.activates_at)
    }
}

/// The keys in memory, replaced whole when one is added.
#[derive(Debug, Default)]
pub struct SigningKeys {
    timeline: ArcSwap<Timeline>,
    /// Bumped on every change (verifiers rebuild their key set when it moves).
    generation: AtomicU64,
    secrets: OnceLock<SecretsKey>,
}

impl SigningKeys {
    /// Sets the secrets key (once; start-up).
    pub fn set_secrets(&self, key: SecretsKey) {
        let _ = self.secrets.set(key);
    }

    pub fn secrets(&self) -> Option<&SecretsKey> {
        self.secrets.get()
    }

    /// Opens `row` with the secrets key and adds it (or replaces the key with its id).
    pub fn put(&self, row: &SigningKeyRow) -> Result<(), String> {
        let secrets = self
            .secrets
            .get()
            .ok_or("no oauth_server.signing.secrets_key")?;
        let pkcs8 = secrets.open(&row.kid, &row.private_sealed)?;
        let signer = Arc::new(Signer::new(row, &pkcs8)?);
        let loaded = Arc::new(LoadedKey {
            kid: row.kid.clone(),
            alg: row.alg,
            created_at: row.created_at,
            activates_at: row.activates_at,
            public_jwk: row.public_jwk.clone(),
            signer,
        });
        let cur = self.timeline.load();
        let mut keys: Vec<_> = cur
            .keys
            .iter()
            .filter(|k| k.kid != loaded.kid)
            .cloned()
            .collect();
        keys.push(loaded);
        keys.sort_by(|a, b| (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid)));
        self.timeline.store(Arc::new(Timeline { keys }));
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    pub fn timeline(&self) -> Arc<Timeline> {
        self.timeline.load_full()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The signer at `now`.
    pub fn signer(&self, now: i64) -> Option<Arc<Signer>> {
        self.timeline.load().active(now).map(|k| k.signer.clone())
    }
}

/// The gateway's own signing key, for assertions when there is no `oauth_server`: one ES256 key
/// made on first use and kept in memory for the life of the process.
#[derive(Debug, Default)]
pub struct OwnKeys {
    keys: SigningKeys,
    made: OnceLock<()>,
}

impl OwnKeys {
    pub fn keys(&self) -> &SigningKeys {
        self.made.get_or_init(|| {
            let now = crate::clock::now_secs();
            let made = SecretsKey::generate().and_then(|(secrets, _)| {
                let row = generate(SigAlg::ES256, &secrets, now, now)?;
                self.keys.set_secrets(secrets);
                self.keys.put(&row)
            });
            if let Err(e) = made {
                tracing::error!(error = %e, "no signing key for identity assertions");
            }
        });
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> SecretsKey {
        SecretsKey::generate().unwrap().0
    }

    #[test]
    fn keys_seal_sign_and_publish_for_every_algorithm() {
        let s = secrets();
        for alg in SigAlg::ALL {
            let row = generate(alg, &s, 10, 10).unwrap();
            assert!(!row.private_sealed.windows(8).any(|w| w == b"\x30\x82\x04"));
            let keys = SigningKeys::default();
            keys.set_secrets(SecretsKey::from_bytes(&[0u8; 32]).unwrap());
            // another secrets key does not open it
            let e = keys.put(&row).unwrap_err();
            assert!(e.contains("does not decrypt"), "{e}");
            let keys = SigningKeys::default();
            keys.set_secrets(s.clone());
            keys.put(&row).unwrap();
            let signer = keys.signer(10).unwrap();
            let jwt = signer.sign(br#"{"sub":"x"}"#).unwrap();
            // (tests/oauth.rs verifies it against the published JWK with the JWT authenticator)
            assert_eq!(jwt.split('.').count(), 3);
            assert!(keys.timeline().jwks(10, 900).contains(&row.kid));
            assert!(jwt.starts_with(&b64(format!(
                r#"{{"alg":"{}","typ":"at+jwt","kid":"{}"}}"#,
                alg.as_str(),
                row.kid
            )
            .as_bytes())));
        }
    }

    #[test]
    fn the_timeline_decides_who_signs_and_what_is_published() {
        let s = secrets();
        let keys = SigningKeys::default();
        keys.set_secrets(s.clone());
        let a = generate(SigAlg::ES256, &s, 0, 0).unwrap();
        let b = generate(SigAlg::ES256, &s, 90, 100).unwrap();
        keys.put(&a).unwrap();
        keys.put(&b).unwrap();
        let t = keys.timeline();
        assert_eq!(t.active(50).unwrap().kid, a.kid);
        assert_eq!(t.state(1, 95, 30), KeyState::Pending);
        // b is published before it signs
        assert!(t.jwks(95, 30).contains(&b.kid));
        assert_eq!(t.active(100).unwrap().kid, b.kid);
        assert_eq!(t.state(0, 100, 30), KeyState::Retired);
        // a stays published for its tokens' lifetime (and a minute of margin), then goes
        assert!(t.jwks(189, 30).contains(&a.kid));
        assert_eq!(t.state(0, 190, 30), KeyState::Expired);
        assert!(!t.jwks(190, 30).contains(&a.kid));
    }

    #[test]
    fn the_secrets_key_is_32_bytes_of_base64() {
        assert!(SecretsKey::from_base64(&STANDARD.encode([7u8; 32])).is_ok());
        assert!(SecretsKey::from_base64(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
        assert!(SecretsKey::from_base64(&STANDARD.encode([7u8; 16]))
            .unwrap_err()
            .contains("32 bytes"));
        assert!(SecretsKey::from_base64("not base64!").is_err());
    }
}
