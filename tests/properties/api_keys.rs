//! API keys (SPEC section 3): a reference CRC-32 (IEEE, bitwise) and base62.

use crate::support::*;
use portcullis::keys::{self, Env, KeyRefusal, KeyRing, KeyRow, Shape};
use proptest::prelude::*;

const REF_BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn ref_crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn ref_checksum(body: &str) -> String {
    let mut v = ref_crc32(body.as_bytes());
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = REF_BASE62[(v % 62) as usize];
        v /= 62;
    }
    assert_eq!(v, 0, "62^6 > 2^32");
    String::from_utf8(out.to_vec()).unwrap()
}

fn ref_shape(key: &str) -> Shape {
    let env = if key.starts_with("sk_live_") {
        Env::Live
    } else if key.starts_with("sk_test_") {
        Env::Test
    } else {
        return Shape::Foreign;
    };
    let b = key.as_bytes();
    if b.len() != 8 + 32 + 6 || !b[8..].iter().all(|c| REF_BASE62.contains(c)) {
        return Shape::Foreign;
    }
    if ref_checksum(&key[..40]) == key[40..] {
        Shape::Ours(env)
    } else {
        Shape::BadChecksum
    }
}

fn env_of(live: bool) -> Env {
    if live {
        Env::Live
    } else {
        Env::Test
    }
}

/// Strings near the key format: the right prefix and length with characters from a wider
/// alphabet, keys with a wrong checksum, and arbitrary text.
fn key_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "sk_(live|test)_[0-9A-Za-z]{38}",
        "sk_(live|test)_[0-9A-Za-z_.\\-+/=é ]{36,40}",
        "(sk|pk)_(live|test|prod)_[0-9A-Za-z]{0,50}",
        "\\PC{0,60}",
        any::<bool>().prop_map(|l| keys::generate_secret(env_of(l))),
    ]
}

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn issued_keys_have_the_documented_shape(live in any::<bool>()) {
        let env = env_of(live);
        let k = keys::generate_secret(env);
        prop_assert_eq!(k.len(), 46);
        let prefix = format!("sk_{}_", env.as_str());
        prop_assert!(k.starts_with(&prefix), "{}", k);
        prop_assert!(k[8..].bytes().all(|c| REF_BASE62.contains(&c)), "{}", k);
        let want_sum = ref_checksum(&k[..40]);
        prop_assert_eq!(&k[40..], want_sum.as_str());
        prop_assert_eq!(keys::checksum(&k[..40]), ref_checksum(&k[..40]));
        prop_assert_eq!(keys::shape(&k), Shape::Ours(env));
    }

    #[test]
    fn checksum_matches_reference(s in "\\PC{0,64}") {
        prop_assert_eq!(keys::checksum(&s), ref_checksum(&s));
    }

    #[test]
    fn shape_matches_reference(s in key_like()) {
        prop_assert_eq!(keys::shape(&s), ref_shape(&s), "{:?}", s);
    }

    /// Any one-character substitution, insertion or deletion of an issued key is refused by the
    /// checksum (or no longer looks like our format at all).
    #[test]
    fn one_character_edits_never_pass_the_checksum(
        live in any::<bool>(),
        pos in 0usize..47,
        c in prop_oneof![
            3 => prop::sample::select(REF_BASE62.iter().map(|&b| b as char).collect::<Vec<_>>()),
            1 => any::<char>(),
        ],
        edit in 0u8..3,
    ) {
        let k = keys::generate_secret(env_of(live));
        let mut chars: Vec<char> = k.chars().collect();
        match edit {
            0 if pos < chars.len() => {
                prop_assume!(chars[pos] != c);
                chars[pos] = c;
            }
            1 => chars.insert(pos.min(chars.len()), c),
            _ => {
                chars.remove(pos.min(chars.len() - 1));
            }
        }
        let m: String = chars.into_iter().collect();
        let s = keys::shape(&m);
        prop_assert!(!matches!(s, Shape::Ours(_)), "{:?} (from {:?}) passed as {:?}", m, k, s);
        prop_assert_eq!(s, ref_shape(&m));
    }

    /// The key ring finds exactly the stored key: a near miss is never a hit, a bad checksum is
    /// refused as such (without a lookup), and nothing panics.
    #[test]
    fn key_ring_finds_only_the_exact_key(probe in key_like(), flip in 0usize..46) {
        let key = keys::generate_secret(Env::Live);
        let ring = KeyRing::default();
        ring.put(KeyRow {
            subject: Some("svc".into()),
            scopes: vec!["read".into()],
            ..KeyRow::new("key_props", &key)
        });
        let near = {
            let mut b = key.clone().into_bytes();
            b[flip] = if b[flip] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        };
        for p in [probe.as_str(), near.as_str(), key.as_str()] {
            let got = ring.lookup(p, 100);
            prop_assert_eq!(got.is_ok(), p == key, "{:?}", p);
            if ref_shape(p) == Shape::BadChecksum {
                prop_assert_eq!(got.err(), Some(KeyRefusal::Malformed), "{:?}", p);
            }
        }
    }

    /// Distinct keys hash apart and equal ones alike (that it is SHA-256 is
    /// `hash_key_known_answers`).
    #[test]
    fn hash_key_separates_distinct_keys(s in "\\PC{0,40}", t in "\\PC{0,40}") {
        prop_assert_eq!(keys::hash_key(&s) == keys::hash_key(&t), s == t);
    }
}

#[test]
fn hash_key_known_answers() {
    let hex = |h: [u8; 32]| portcullis::digest::hex_lower(&h);
    assert_eq!(
        hex(keys::hash_key("")),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex(keys::hash_key("abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
