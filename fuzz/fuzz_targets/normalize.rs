//! `normalize::normalize` on arbitrary text: never panics; an accepted path is absolute, has no
//! dot segment, no empty segment and no backslash, and normalizing it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::normalize::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = normalize(path) {
        assert!(n.starts_with('/'), "{path:?} -> {n:?}");
        assert!(
            !n.contains("//") && !n.contains("/./") && !n.contains("/../"),
            "{path:?} -> {n:?}"
        );
        assert!(
            !n.ends_with("/.") && !n.ends_with("/.."),
            "{path:?} -> {n:?}"
        );
        assert!(!n.contains('\\'), "{path:?} -> {n:?}");
        let again = normalize(&n);
        assert_eq!(again.as_deref(), Ok(n.as_ref()), "not idempotent: {path:?}");
    }
});
