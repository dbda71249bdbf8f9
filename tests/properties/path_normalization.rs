//! Path normalization: a reference model of SPEC section 5.

use crate::support::*;
use portcullis::normalize::{normalize, PathError};
use proptest::prelude::*;
use unicode_normalization::UnicodeNormalization;

// Written from the SPEC and the module documentation, not from the implementation:
// - the target must start with `/`;
// - `%XX` needs two hex digits; it decodes to a byte; `%2F`, `%5C` and `%00` are refused; a
//   decoded unreserved character (ALPHA DIGIT `-` `.` `_` `~`) is written plainly, any other byte
//   as `%XX` with upper-case hex; a raw non-ASCII byte is written as `%XX`; a raw `\` is refused;
// - a once-decoded segment may not hold `%25` followed by the hex of `.`, `/`, `\`, NUL or `%`
//   (a second decoding would make a separator or a dot of it);
// - each segment's decoded bytes must be UTF-8, and no character of it may have an NFKC form
//   holding `.`, `/`, `\` or `%`;
// - a segment whose decoded text before any `;` is `.` or `..` is a dot segment: with a `;` it is
//   refused, otherwise it is resolved (RFC 3986 5.2.4; `..` at the root is refused);
// - empty segments (duplicate slashes) disappear; the result ends in `/` when the last segment
//   was empty or a dot segment.
//
// Errors: the model lists every rule the path breaks; the implementation must report one of them
// (the SPEC does not say which one wins when a path breaks several).

fn ref_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn ref_confusable(c: char) -> bool {
    !c.is_ascii()
        && c.to_string()
            .nfkc()
            .any(|n| matches!(n, '.' | '/' | '\\' | '%'))
}

/// `%25` followed by the hex of `.`, `/`, `\`, NUL or `%` in the once-decoded segment: a second
/// decoding would produce a separator or a dot.
fn ref_double_encoded(canonical: &str) -> bool {
    let lower = canonical.to_ascii_lowercase();
    ["%252e", "%252f", "%255c", "%2500", "%2525"]
        .iter()
        .any(|p| lower.contains(p))
}

fn ref_normalize(path: &str) -> Result<String, Vec<PathError>> {
    use PathError::*;
    let Some(rest) = path.strip_prefix('/') else {
        return Err(vec![NotAbsolute]);
    };
    let mut errors = Vec::new();
    // A segment that breaks a rule still counts as a segment for the `..` bookkeeping.
    let mut kept: Vec<String> = Vec::new();
    let mut directory = false;
    for raw in rest.split('/') {
        directory = raw.is_empty();
        if raw.is_empty() {
            continue;
        }
        let mut bytes = Vec::new();
        let mut canonical = String::new();
        let mut broken = Vec::new();
        let b = raw.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => match (
                    b.get(i + 1).copied().and_then(ref_hex),
                    b.get(i + 2).copied().and_then(ref_hex),
                ) {
                    (Some(h), Some(l)) => {
                        let c = h * 16 + l;
                        if c == b'/' || c == b'\\' || c == 0 {
                            broken.push(EncodedSeparator);
                        } else {
                            bytes.push(c);
                            if ref_unreserved(c) {
                                canonical.push(c as char);
                            } else {
                                canonical.push_str(&format!("%{c:02X}"));
                            }
                        }
                        i += 3;
                    }
                    _ => {
                        broken.push(BadPercent);
                        i += 1;
                    }
                },
                b'\\' => {
                    broken.push(Backslash);
                    i += 1;
                }
                x if x >= 0x80 => {
                    bytes.push(x);
                    canonical.push_str(&format!("%{x:02X}"));
                    i += 1;
                }
                x => {
                    bytes.push(x);
                    canonical.push(x as char);
                    i += 1;
                }
            }
        }
        if !broken.is_empty() {
            errors.extend(broken);
            kept.push(canonical);
            continue;
        }
        if ref_double_encoded(&canonical) {
            errors.push(DoubleEncoded);
            kept.push(canonical);
            continue;
        }
        let Ok(text) = String::from_utf8(bytes) else {
            errors.push(InvalidUtf8);
            kept.push(canonical);
            continue;
        };
        if text.chars().any(ref_confusable) {
            errors.push(Confusable);
            kept.push(canonical);
            continue;
        }
        let (head, params) = match text.split_once(';') {
            Some((h, _)) => (h, true),
            None => (text.as_str(), false),
        };
        match (head, params) {
            ("." | "..", true) => {
                errors.push(DotSegmentParam);
                kept.push(canonical);
            }
            (".", false) => directory = true,
            ("..", false) => {
                if kept.pop().is_none() {
                    errors.push(EscapesRoot);
                }
                directory = true;
            }
            _ => kept.push(canonical),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut out = format!("/{}", kept.join("/"));
    if !kept.is_empty() && directory {
        out.push('/');
    }
    Ok(out)
}

/// Paths made only of names and dot segments in their plain and encoded spellings.
fn dot_path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "a", "b", "c", ".", "..", "%2e", "%2E%2e", ".%2e", "%2e.", "", "..;", ".;x", "a;b",
        ]),
        0..12,
    )
    .prop_map(|segs| format!("/{}", segs.join("/")))
}

fn check_normalize_against_reference(p: &str) -> Result<(), TestCaseError> {
    let got = normalize(p).map(|c| c.into_owned());
    match (&got, ref_normalize(p)) {
        (Ok(n), Ok(want)) => prop_assert_eq!(n, &want, "path {:?}", p),
        (Err(e), Err(allowed)) => prop_assert!(
            allowed.contains(e),
            "path {:?}: implementation says {:?}, the model finds {:?}",
            p,
            e,
            allowed
        ),
        (got, want) => prop_assert!(
            false,
            "path {:?}: implementation {:?}, model {:?}",
            p,
            got,
            want
        ),
    }
    Ok(())
}

fn check_normal_form(n: &str) -> Result<(), TestCaseError> {
    prop_assert!(n.starts_with('/'), "{n:?} is not absolute");
    for bad in ["/../", "/./", "//"] {
        prop_assert!(!n.contains(bad), "{n:?} contains {bad:?}");
    }
    prop_assert!(!n.ends_with("/..") && !n.ends_with("/."), "{n:?}");
    prop_assert!(!n.contains('\\'), "{n:?} holds a backslash");
    prop_assert!(n.is_ascii(), "{n:?} is not ASCII");
    // Canonical percent-encoding: upper-case hex, never an encoded unreserved character or
    // separator, never a bare `%`.
    let b = n.as_bytes();
    for (i, _) in n.match_indices('%') {
        let (h, l) = (b.get(i + 1).copied(), b.get(i + 2).copied());
        let ok =
            |x: Option<u8>| x.is_some_and(|x| x.is_ascii_digit() || (b'A'..=b'F').contains(&x));
        prop_assert!(ok(h) && ok(l), "{n:?}: `%` at {i} is not `%XX` upper-case");
        let c = ref_hex(h.unwrap_or(0)).unwrap_or(0) * 16 + ref_hex(l.unwrap_or(0)).unwrap_or(0);
        prop_assert!(
            !ref_unreserved(c) && !matches!(c, b'/' | b'\\' | 0),
            "{n:?}: `%{c:02X}` should not be encoded"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(cfg(2048))]

    #[test]
    fn normalize_agrees_with_reference_model(p in path_strategy()) {
        check_normalize_against_reference(&p)?;
    }

    #[test]
    fn normalize_agrees_with_reference_model_on_dot_paths(p in dot_path_strategy()) {
        check_normalize_against_reference(&p)?;
    }

    #[test]
    fn normalize_agrees_with_reference_model_on_any_text(p in "/\\PC{0,24}") {
        check_normalize_against_reference(&p)?;
    }

    #[test]
    fn normalize_is_idempotent_and_confined(p in prop_oneof![path_strategy(), dot_path_strategy()]) {
        if let Ok(n) = normalize(&p) {
            check_normal_form(&n)?;
            let again = normalize(&n).map(|c| c.into_owned());
            prop_assert_eq!(again.as_deref(), Ok(n.as_ref()), "not idempotent on {:?}", p);
        }
    }

    /// Prefixing a path with more `..` than it has names never yields a path: climbing above the
    /// root is refused, never clamped (clamping would make `/../admin` reach `/admin`).
    #[test]
    fn climbing_above_the_root_is_refused(
        names in prop::collection::vec("[a-z]{1,3}", 0..4),
        extra in 1usize..4,
        tail in prop::collection::vec("[a-z]{1,3}", 0..3),
        encoded in any::<bool>(),
    ) {
        let up = if encoded { "%2e%2e" } else { ".." };
        let mut p = String::new();
        for n in &names {
            p.push('/');
            p.push_str(n);
        }
        for _ in 0..names.len() + extra {
            p.push('/');
            p.push_str(up);
        }
        for t in &tail {
            p.push('/');
            p.push_str(t);
        }
        prop_assert_eq!(normalize(&p).map(|c| c.into_owned()), Err(PathError::EscapesRoot), "{}", p);
    }
}
