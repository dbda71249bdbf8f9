//! API key shape and checksum (SPEC section 3) on arbitrary text: never panics; `Ours` only with
//! the documented format and a checksum that matches; the key ring never finds a key it was not
//! given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::keys::{checksum, shape, Env, KeyRing, KeyRow, Shape};
use std::sync::LazyLock;

static KEY: LazyLock<String> = LazyLock::new(|| portcullis::keys::generate_secret(Env::Live));

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    let ring = KeyRing::default();
    ring.put(KeyRow {
        subject: Some("svc".into()),
        ..KeyRow::new("key_fuzz", &KEY)
    });
    ring
});

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = checksum(s);
    match shape(s) {
        Shape::Ours(env) => {
            assert_eq!(s.len(), 46, "{s:?}");
            assert!(s.starts_with(&format!("sk_{}_", env.as_str())), "{s:?}");
            assert!(
                s.as_bytes()[8..].iter().all(u8::is_ascii_alphanumeric),
                "{s:?}"
            );
            assert_eq!(checksum(&s[..40]), s[40..], "{s:?}");
        }
        Shape::BadChecksum => assert_ne!(checksum(&s[..40]), s[40..], "{s:?}"),
        Shape::Foreign => {}
    }
    let found = RING.lookup(s, 100).is_ok();
    assert_eq!(found, s == KEY.as_str(), "{s:?}");
});
