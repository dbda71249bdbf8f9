//! `application/x-www-form-urlencoded` bodies of the OAuth endpoints, and HTTP Basic client
//! credentials with the RFC 6749 2.3.1 form-urlencoding of id and secret.

use base64::Engine;

/// The decoded pairs of a form body, in order.
#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

/// `+` is a space, `%XX` a byte; the result must be UTF-8.
pub fn form_decode(s: &str) -> Option<String> {
    if !s.bytes().any(|b| b == b'+' || b == b'%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

impl Form {
    /// Parses a body. An undecodable name or value is an error naming it.
    pub fn parse(body: &[u8]) -> Result<Form, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
        let mut pairs = Vec::new();
        for part in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let name = form_decode(k).ok_or("a parameter name is not valid form-urlencoding")?;
            let value =
                form_decode(v).ok_or_else(|| format!("`{name}` is not valid form-urlencoding"))?;
            pairs.push((name, value));
        }
        Ok(Form { pairs })
    }

    /// The one value of `name`; a parameter given twice is an error (RFC 6749 3.1, 3.2), and an
    /// empty value counts as absent (RFC 6749 3.1).
    pub fn one(&self, name: &str) -> Result<Option<&str>, String> {
        let mut it = self.pairs.iter().filter(|(k, _)| k == name);
        match (it.next(), it.next()) {
            (Some(_), Some(_)) => Err(format!("`{name}` is given more than once")),
            (Some((_, v)), None) if !v.is_empty() => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// Every value of a parameter that may repeat (RFC 8707 `resource`).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// HTTP Basic client credentials.
#[derive(Debug, PartialEq)]
pub struct Basic {
    pub id: String,
    /// Decoded as RFC 6749 2.3.1 says.
    pub secret: String,
    /// As sent, when that differs: many client libraries (authlib, requests-oauthlib, ...) do
    /// not form-urlencode, so a secret with `%` or `+` is also tried as sent.
    pub raw_secret: Option<String>,
}

/// The value of an `Authorization: Basic ...` header, or `None` when it is not Basic or does not
/// decode to `id:secret`.
pub fn basic(value: &[u8]) -> Option<Basic> {
    let v = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    // RFC 7617 leaves the charset open; not UTF-8 means ISO-8859-1 (what authlib sends)
    let text = String::from_utf8(raw)
        .unwrap_or_else(|e| e.into_bytes().iter().map(|&b| char::from(b)).collect());
    let (id, secret) = text.split_once(':')?;
    let dec_secret = form_decode(secret)?;
    let raw_secret = (dec_secret != secret).then(|| secret.to_owned());
    Some(Basic {
        id: form_decode(id)?,
        secret: dec_secret,
        raw_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_refuse_repeats() {
        let f =
            Form::parse(b"grant_type=client_credentials&scope=a+b%3Ac&resource=x&resource=y&e=")
                .unwrap();
        assert_eq!(f.one("grant_type"), Ok(Some("client_credentials")));
        assert_eq!(f.one("scope"), Ok(Some("a b:c")));
        assert!(f.one("resource").is_err());
        assert_eq!(f.all("resource").collect::<Vec<_>>(), vec!["x", "y"]);
        assert_eq!(f.one("e"), Ok(None));
        assert_eq!(f.one("missing"), Ok(None));
        assert!(Form::parse(b"a=%zz").is_err());
        assert!(Form::parse(b"a=%ff").is_err());
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let enc = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(
            basic(enc("cl_1:s%2Bcret%3A").as_bytes()),
            Some(Basic {
                id: "cl_1".into(),
                secret: "s+cret:".into(),
                raw_secret: Some("s%2Bcret%3A".into()),
            })
        );
        // a colon in the secret: the first one separates
        assert_eq!(basic(enc("a:b:c").as_bytes()).unwrap().secret, "b:c");
        // not UTF-8: ISO-8859-1
        let latin1 = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(b"id:caf\xe9")
        );
        assert_eq!(basic(latin1.as_bytes()).unwrap().secret, "café");
        assert_eq!(basic(b"Bearer x"), None);
        assert_eq!(basic(b"Basic !!!"), None);
        assert_eq!(basic(enc("no-colon").as_bytes()), None);
    }
}
