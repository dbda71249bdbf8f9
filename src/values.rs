//! Config scalar types: `${ENV}`-interpolated strings, durations and rates (the one rate grammar,
//! shared with the admin API and the CLI), and what config values are used as: paths relative to
//! the config file, and URLs shown without their password.
//!
//! Interpolation happens while deserializing each string field, so an error (a missing variable,
//! a bad duration) comes back from serde_yaml with the field path and line of that very field, and a
//! `${...}` in a YAML comment is never touched.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Replaces every `${NAME}` with the value of the environment variable `NAME`. `$$` is a literal `$`.
pub fn interpolate(raw: &str) -> Result<String, String> {
    interpolate_with(raw, |name| std::env::var(name).ok())
}

pub fn interpolate_with(
    raw: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if !raw.contains('$') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated `${` in value".to_owned())?;
            let name = &body[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable reference"
                ));
            }
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A config string after `${ENV}` interpolation.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct S(pub String);

impl S {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for S {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for S {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Accepts a YAML string, or a number/bool written bare (`bind: 8080` is not valid, but a
/// `max_body_bytes: ${LIMIT}` must be able to come from a string), and interpolates it.
fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            interpolate(v).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

impl Serialize for S {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for S {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar_string(d).map(S)
    }
}

/// Parses `0`, `500ms`, `30s`, `15m`, `24h`, `90d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}` needs a unit: ms, s, m, h or d (e.g. 30s)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 30s, 15m, 24h, 90d)"))?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (use ms, s, m, h or d)"
            ))
        }
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A duration field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Dur(pub Duration);

/// The largest unit that divides it: `0`, `500ms`, `30s`, `15m`, `24h`, `90d`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0".into();
    }
    for (unit, per) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
}

impl Serialize for Dur {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = scalar_string(d)?;
        parse_duration(&s).map(Dur).map_err(de::Error::custom)
    }
}

/// A rate: `N/s`, `N/min`, `N/h`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

/// The most requests a rate may name (nine digits).
pub const MAX_RATE_COUNT: u32 = 999_999_999;

/// The one rate grammar, for the config, the admin API and the CLI alike: a count from 1 to
/// 999999999 (digits only, no leading zero), `/`, and a unit `s` (`sec`), `min` (`m`) or `h`
/// (`hour`); spaces (not other white space) around the parts are allowed.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("`{s}` is not a rate (e.g. 100/s, 600/min, 1000/h)");
    let (n, unit) = s.split_once('/').ok_or_else(bad)?;
    let n = n.trim_matches(' ');
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.starts_with('0') && n != "0") {
        return Err(bad());
    }
    let count: u32 = n.parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!("`{s}`: a rate must allow at least 1 request"));
    }
    if count > MAX_RATE_COUNT {
        return Err(format!("`{s}`: at most {MAX_RATE_COUNT} requests"));
    }
    let per = match unit.trim_matches(' ') {
        "s" | "sec" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    Ok(Rate { count, per })
}

/// The canonical form: `N/s`, `N/min` or `N/h` (what the admin API stores and shows).
impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl Serialize for Rate {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = scalar_string(d)?;
        parse_rate(&s).map_err(de::Error::custom)
    }
}

/// A non-negative integer that may also come from an interpolated string.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Num(pub u64);

impl Serialize for Num {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = scalar_string(d)?;
        s.trim()
            .parse()
            .map(Num)
            .map_err(|_| de::Error::custom(format!("`{s}` is not a non-negative integer")))
    }
}

/// Resolves a config path: relative paths are taken from the config file's folder.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A database or Redis URL without its password, for messages: `scheme://user:secret@host/db`
/// -> `scheme://user@host/db`; `password=...` (a query parameter, or a key=value word of libpq's
/// `host=h password=secret` form) -> `password=<redacted>`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(s) = out.find("://") {
        let from = s + 3;
        let auth_end = out[from..].find(['/', '?']).map_or(out.len(), |i| from + i);
        if let Some(at) = out[from..auth_end].rfind('@') {
            let user = out[from..from + at]
                .split(':')
                .next()
                .unwrap_or("")
                .to_owned();
            out = format!("{}{}{}", &out[..from], user, &out[from + at..]);
        }
    }
    let lower = out.to_ascii_lowercase();
    let mut redacted = String::with_capacity(out.len());
    let mut i = 0;
    while let Some(pos) = lower[i..].find("password=") {
        let start = i + pos + "password=".len();
        redacted.push_str(&out[i..start]);
        redacted.push_str("<redacted>");
        i = out[start..]
            .find(['&', ' ', ';'])
            .map_or(out.len(), |e| start + e);
    }
    redacted.push_str(&out[i..]);
    redacted
}

/// Whether a database or Redis URL's host is this machine (loopback, `localhost`, or a Unix
/// socket): traffic that never crosses a network.
pub fn url_host_is_local(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    if host.is_empty() || host.starts_with("%2F") || host.starts_with("%2f") {
        // no host: libpq's default Unix socket; %2F...: a socket directory
        return true;
    }
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_url_hosts() {
        for u in [
            "postgres://u:p@127.0.0.1:5432/db",
            "postgres://localhost/db",
            "redis://[::1]:6379",
            "postgres:///db",
            "postgres://%2Fvar%2Frun%2Fpostgresql/db",
        ] {
            assert!(url_host_is_local(u), "{u}");
        }
        for u in [
            "postgres://u:p@db.internal:5432/db",
            "rediss://10.0.0.1:6380",
            "postgres://u@127.0.0.1.evil:1/db",
        ] {
            assert!(!url_host_is_local(u), "{u}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86400)));
        for bad in ["", "10", "s", "10x", "1.5s", "-1s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn durations_print_in_their_largest_unit() {
        for (d, text) in [
            (Duration::ZERO, "0"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(900), "15m"),
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(90_000), "25h"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn rates() {
        assert_eq!(
            parse_rate("100/s"),
            Ok(Rate {
                count: 100,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            parse_rate("5/min").map(|r| r.per),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            parse_rate("5/h").map(|r| r.per),
            Ok(Duration::from_secs(3600))
        );
        for bad in [
            "0/s",
            "x/s",
            "10",
            "10/d",
            "+5/s",
            "05/s",
            "1000000000/s",
            "-1/s",
            "/s",
            "5/",
            "5/s\t",
            "\n5/s",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad} must be rejected");
        }
        for (given, canonical) in [
            ("10/m", "10/min"),
            (" 10 / sec ", "10/s"),
            ("999999999/hour", "999999999/h"),
            ("600/min", "600/min"),
        ] {
            assert_eq!(
                parse_rate(given).map(|r| r.to_string()),
                Ok(canonical.into())
            );
        }
    }

    #[test]
    fn interpolation() {
        let env = |n: &str| (n == "HOME_DIR").then(|| "/home/x".to_owned());
        assert_eq!(
            interpolate_with("a ${HOME_DIR}/b", env),
            Ok("a /home/x/b".into())
        );
        assert_eq!(
            interpolate_with("cost: $$5 $x", env),
            Ok("cost: $5 $x".into())
        );
        assert!(interpolate_with("${MISSING}", env)
            .unwrap_err()
            .contains("MISSING is not set"));
        assert!(interpolate_with("${HOME_DIR", env).is_err());
        assert!(interpolate_with("${1X}", env).is_err());
    }

    #[test]
    fn urls_lose_their_passwords() {
        for (url, want) in [
            ("postgres://u:s3cret@h:5432/db", "postgres://u@h:5432/db"),
            (
                "postgres://u@h/db?password=s3cret&sslmode=disable",
                "postgres://u@h/db?password=<redacted>&sslmode=disable",
            ),
            (
                "host=h user=u password=s3cret dbname=d",
                "host=h user=u password=<redacted> dbname=d",
            ),
            ("redis://:s3cret@h:6379/0", "redis://@h:6379/0"),
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://u:p@ss@h/db", "postgres://u@h/db"),
        ] {
            let got = redact_url(url);
            assert_eq!(got, want);
            assert!(!got.contains("s3cret"));
        }
    }
}
