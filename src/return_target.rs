//! Where a sign-in page may send the browser back to (`return` targets, SPEC sections 7 and 8):
//! a path on this host, never anywhere else. Browsers read `Location` with the WHATWG URL
//! parser, which strips tab, CR and LF, reads `\` as `/` and decodes `%2e` as a dot, so
//! `/\evil`, `/<TAB>/evil` and `/%2e%2e//evil` can all become the scheme-relative `//evil`: each
//! of those is refused here rather than repaired. A leaf module: the sign-in pages of the
//! authorization server and of routes both use it.

/// Longest accepted target.
pub const MAX_LEN: usize = 2048;

/// `raw` when it is a safe return target: 1-2048 bytes of visible ASCII, starting with one `/`
/// (not `//`), without `\`, and without a dot segment in any spelling (`.`, `..`, `%2e`, ...), so
/// that no parse of it leaves this host or climbs out of the path it names. Anything else: None
/// (the caller then uses its default, `/`).
pub fn safe_return(raw: &str) -> Option<&str> {
    let b = raw.as_bytes();
    if b.is_empty() || b.len() > MAX_LEN || b[0] != b'/' {
        return None;
    }
    if matches!(b.get(1), Some(b'/' | b'\\')) {
        return None;
    }
    if !b.iter().all(|c| c.is_ascii_graphic() && *c != b'\\') {
        return None;
    }
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let dot = |seg: &str| {
        let s = seg.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    };
    if path.split('/').any(dot) {
        return None;
    }
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_on_this_host_pass() {
        for ok in [
            "/",
            "/a",
            "/a/b?c=d&e=/f",
            "/a#frag",
            "/a/b.c/..d/e..",
            "/search?q=..",
            "/a%2Fb",
        ] {
            assert_eq!(safe_return(ok), Some(ok), "{ok}");
        }
    }

    #[test]
    fn anything_that_could_leave_the_host_is_refused() {
        for bad in [
            "",
            "a",
            "//evil",
            "/\\evil",
            "\\\\evil",
            "/\t/evil",
            "/\n/evil",
            " //evil",
            "https:evil",
            "https://evil",
            "javascript:alert(1)",
            "/a\\b",
            "/./evil",
            "/../evil",
            "/a/..",
            "/%2e%2e//evil",
            "/%2E/x",
            "/.%2e/x",
            "/x\u{7f}",
            "/ä",
            "/a b",
        ] {
            assert_eq!(safe_return(bad), None, "{bad:?}");
        }
        assert_eq!(safe_return(&format!("/{}", "a".repeat(MAX_LEN))), None);
    }
}
