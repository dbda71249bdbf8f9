//! Request path normalization (SPEC section 5). Routing and the upstream see the same, normalized
//! path, so an upstream that decodes differently cannot be steered to a route the gateway did not
//! check.
//!
//! Percent-decode unreserved characters, resolve `.` and `..`, merge duplicate slashes; reject
//! encoded `/`, `\` and NUL, raw `\`, invalid or non-UTF-8 percent-encodings, dot segments carrying
//! `;` parameters (`..;`), characters whose NFKC form holds `.`, `/`, `\` or `%` (fullwidth
//! `％２ｅ` is `%2e` to an upstream that applies NFKC), double-encoded `.`, `/`, `\` and NUL
//! (`%252e`), and paths that climb above the root.

use crate::error::Reason;
use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request target is not an absolute path")]
    NotAbsolute,
    #[error("the path contains an invalid percent-encoding")]
    BadPercent,
    #[error("the path contains an encoded slash, backslash or NUL")]
    EncodedSeparator,
    #[error("the path contains a backslash")]
    Backslash,
    #[error("the path contains a percent-encoding that is not valid UTF-8")]
    InvalidUtf8,
    #[error("the path contains a character that normalizes to a dot, slash or percent sign")]
    Confusable,
    #[error("the path contains a double-encoded dot, slash, backslash, NUL or percent sign")]
    DoubleEncoded,
    #[error("the path contains a dot segment with parameters")]
    DotSegmentParam,
    #[error("the path climbs above the root")]
    EscapesRoot,
}

impl PathError {
    /// The refusal's reason, for logs and metrics.
    pub fn reason(self) -> Reason {
        match self {
            PathError::NotAbsolute => Reason::PathNotAbsolute,
            PathError::BadPercent => Reason::PathBadPercent,
            PathError::EncodedSeparator => Reason::PathEncodedSeparator,
            PathError::Backslash => Reason::PathBackslash,
            PathError::InvalidUtf8 => Reason::PathInvalidUtf8,
            PathError::Confusable => Reason::PathConfusableChar,
            PathError::DoubleEncoded => Reason::PathDoubleEncoded,
            PathError::DotSegmentParam => Reason::PathDotSegmentParam,
            PathError::EscapesRoot => Reason::PathEscapesRoot,
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// True when `path` is already normal: the common case costs one scan and no allocation.
fn already_normal(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') {
        return false;
    }
    let mut prev = 0u8;
    for &b in path {
        if b >= 0x80 || b == b'%' || b == b'\\' || (prev == b'/' && (b == b'/' || b == b'.')) {
            return false;
        }
        prev = b;
    }
    true
}

/// `%25` followed by the hex of `.`, `/`, `\`, NUL or `%` itself (either case; `%2525...` is how
/// a third decoding is reached).
fn double_encoded(segment: &str) -> bool {
    segment.match_indices("%25").any(|(i, _)| {
        segment.get(i + 3..i + 5).is_some_and(|h| {
            ["2e", "2f", "5c", "00", "25"]
                .iter()
                .any(|x| h.eq_ignore_ascii_case(x))
        })
    })
}

/// Normalizes an origin-form path (without the query).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if already_normal(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    let mut decoded: Vec<u8> = Vec::new();
    for raw in path[1..].split('/') {
        trailing_slash = false;
        if raw.is_empty() {
            trailing_slash = true;
            continue;
        }
        decoded.clear();
        let mut out = String::with_capacity(raw.len());
        let rb = raw.as_bytes();
        let mut i = 0;
        while i < rb.len() {
            let b = rb[i];
            if b == b'%' {
                let (h, l) = match (
                    rb.get(i + 1).and_then(|&x| hex(x)),
                    rb.get(i + 2).and_then(|&x| hex(x)),
                ) {
                    (Some(h), Some(l)) => (h, l),
                    _ => return Err(PathError::BadPercent),
                };
                let c = h << 4 | l;
                if matches!(c, b'/' | b'\\' | 0) {
                    return Err(PathError::EncodedSeparator);
                }
                if is_unreserved(c) {
                    out.push(c as char);
                } else {
                    out.push('%');
                    out.push(HEX[(c >> 4) as usize] as char);
                    out.push(HEX[(c & 15) as usize] as char);
                }
                decoded.push(c);
                i += 3;
            } else if b == b'\\' {
                return Err(PathError::Backslash);
            } else if b >= 0x80 {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
                decoded.push(b);
                i += 1;
            } else {
                out.push(b as char);
                decoded.push(b);
                i += 1;
            }
        }
        // `%252e%252e` (or `%25%32%65`, which decodes to the same): forwarded as is, an
        // upstream or a second proxy that decodes twice reads `..` (docs/attack-cases.md PATH-08:
        // CVE-2007-1860, projectcalico/calico#12531, which rejects the same). Checked on the
        // output, where the first decoding has happened.
        if double_encoded(&out) {
            return Err(PathError::DoubleEncoded);
        }
        let text = std::str::from_utf8(&decoded).map_err(|_| PathError::InvalidUtf8)?;
        if !text.is_ascii() {
            for c in text.chars().filter(|c| !c.is_ascii()) {
                if std::iter::once(c)
                    .nfkc()
                    .any(|n| matches!(n, '.' | '/' | '\\' | '%'))
                {
                    return Err(PathError::Confusable);
                }
            }
        }
        let (head, has_params) = match text.find(';') {
            Some(k) => (&text[..k], true),
            None => (text, false),
        };
        if head == "." || head == ".." {
            if has_params {
                return Err(PathError::DotSegmentParam);
            }
            if head == ".." && segments.pop().is_none() {
                return Err(PathError::EscapesRoot);
            }
            trailing_slash = true;
            continue;
        }
        segments.push(out);
    }
    let mut n = String::with_capacity(path.len());
    for s in &segments {
        n.push('/');
        n.push_str(s);
    }
    if segments.is_empty() || trailing_slash {
        n.push('/');
    }
    Ok(Cow::Owned(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        use PathError::*;
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/api/users", Ok("/api/users")),
            ("/api/users/", Ok("/api/users/")),
            ("/a/../b", Ok("/b")),
            ("/a/./b", Ok("/a/b")),
            ("//b", Ok("/b")),
            ("/a//b///c", Ok("/a/b/c")),
            ("/%61pi", Ok("/api")),
            ("/%7euser/%2D", Ok("/~user/-")),
            ("/a%20b", Ok("/a%20b")),
            ("/a%3fb", Ok("/a%3Fb")),
            ("/a/b/..", Ok("/a/")),
            ("/a/.", Ok("/a/")),
            ("/a/%2e%2e/b", Ok("/b")),
            ("/.hidden/x", Ok("/.hidden/x")),
            ("/a/.../b", Ok("/a/.../b")),
            ("/file.txt", Ok("/file.txt")),
            ("/a;x/b", Ok("/a;x/b")),
            ("/caf%C3%A9", Ok("/caf%C3%A9")),
            ("/api%2fusers", Err(EncodedSeparator)),
            ("/api%2Fusers", Err(EncodedSeparator)),
            ("/a%5cb", Err(EncodedSeparator)),
            ("/%00", Err(EncodedSeparator)),
            ("/a\\b", Err(Backslash)),
            ("/..", Err(EscapesRoot)),
            ("/a/../..", Err(EscapesRoot)),
            ("/%2e%2e", Err(EscapesRoot)),
            ("/a/..;/b", Err(DotSegmentParam)),
            ("/a/%2e%2e;x/b", Err(DotSegmentParam)),
            ("/a/.;/b", Err(DotSegmentParam)),
            ("/a/%2e%2e%3bx/b", Err(DotSegmentParam)),
            ("/%zz", Err(BadPercent)),
            ("/%4", Err(BadPercent)),
            ("/%C3", Err(InvalidUtf8)),
            ("/%C0%AE", Err(InvalidUtf8)),
            ("/a/%EF%BC%8E%EF%BC%8E/b", Err(Confusable)), // full-width dots
            ("/a%EF%BC%8Fb", Err(Confusable)),            // full-width slash
            // full-width `％２ｅ`, NFKC `%2e` (PATH-11)
            ("/p/%EF%BC%85%EF%BC%92%EF%BD%85/x", Err(Confusable)),
            ("/%252e%252e/admin", Err(DoubleEncoded)), // PATH-08
            ("/%252F", Err(DoubleEncoded)),
            ("/a%255cb", Err(DoubleEncoded)),
            ("/%2500", Err(DoubleEncoded)),
            ("/%25%32%65", Err(DoubleEncoded)), // `%2e` once the first decoding is done
            ("/%25252e", Err(DoubleEncoded)),   // a third decoding
            ("/100%25", Ok("/100%25")),
            ("/%2541", Ok("/%2541")),
            ("/a%EF%B9%A8b", Err(Confusable)), // small reverse solidus
            ("*", Err(NotAbsolute)),
            ("", Err(NotAbsolute)),
        ];
        for (input, want) in cases {
            let got = normalize(input).map(|c| c.into_owned());
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "input {input:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_is_idempotent(s in "/[a-zA-Z0-9%./;\\\\~_-]{0,40}") {
            if let Ok(n) = normalize(&s) {
                let again = normalize(&n).map(|c| c.into_owned());
                prop_assert_eq!(again.as_deref(), Ok(n.as_ref()));
                prop_assert!(n.starts_with('/'));
                for seg in n.split('/') {
                    prop_assert!(seg != "." && seg != "..");
                }
                prop_assert!(!n.contains("//"));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(s in "\\PC{0,30}") {
            let _ = normalize(&s);
        }
    }
}
