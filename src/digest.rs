//! SHA-256 and its text forms: lowercase hex, and the `sha256:<64 hex>` of config fields.

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

pub fn hex_lower(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// `sha256:<64 hex>` -> the 32 bytes.
pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("sha256:")?;
    // `from_str_radix` takes a sign (`+f`): hex digits only.
    if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_text_forms() {
        assert_eq!(parse_sha256(&format!("sha256:+f{}", "0".repeat(62))), None);
        let h = parse_sha256(&format!("sha256:{}", "aF".repeat(32)));
        assert_eq!(h, Some([0xaf; 32]));
        assert_eq!(hex_lower(&[0xaf; 2]), "afaf");
        assert_eq!(
            hex_lower(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
