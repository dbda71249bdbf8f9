//! The wall clock, read in one place: unix seconds (whole, or with a fraction for token
//! lifetimes), and RFC 3339 text for logs, the admin API and certificates.

/// Unix time in seconds with a fraction (token `exp`/`nbf`/`iat` comparisons, caches).
pub fn now() -> f64 {
    since_epoch().as_secs_f64()
}

/// Unix time in whole seconds (stored timestamps).
pub fn now_secs() -> i64 {
    since_epoch().as_secs() as i64
}

fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// RFC 3339 UTC time with microseconds, without a date library.
pub fn rfc3339_now() -> String {
    let d = since_epoch();
    rfc3339(d.as_secs() as i64, d.subsec_micros())
}

pub fn rfc3339(secs: i64, micros: u32) -> String {
    let mut out = Vec::with_capacity(27);
    write_rfc3339(&mut out, secs, micros);
    String::from_utf8(out).unwrap_or_default()
}

/// [`rfc3339`], written into `out` (the audit log's lines; no allocation).
pub fn write_rfc3339(out: &mut Vec<u8>, secs: i64, micros: u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = std::io::Write::write_fmt(
        out,
        format_args!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        ),
    );
}

/// Parses an RFC 3339 date-time (`2026-01-02T03:04:05Z`, fractions and offsets allowed) to unix
/// seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let t = rest.get(1..)?;
            if t.len() != 5 || t.as_bytes()[2] != b':' {
                return None;
            }
            // Digits only (`str::parse` takes a sign: `+-1:00`), and a real offset (`+99:99` is not).
            let d2 = |x: &str| -> Option<i64> {
                x.bytes()
                    .all(|c| c.is_ascii_digit())
                    .then(|| x.parse().ok())?
            };
            let oh = d2(t.get(0..2)?)?;
            let om = d2(t.get(3..5)?)?;
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    // days_from_civil (Howard Hinnant)
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            super::rfc3339(1_795_000_000, 12),
            "2026-11-18T11:06:40.000012Z"
        );
        assert_eq!(
            super::rfc3339(951_782_400, 0),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn parse_rfc3339_offsets() {
        let p = super::parse_rfc3339;
        assert_eq!(p("2026-01-02T03:04:05Z"), Some(1_767_323_045));
        assert_eq!(p("2026-01-02T04:04:05+01:00"), Some(1_767_323_045));
        assert_eq!(p("2026-01-02T02:34:05.5-00:30"), Some(1_767_323_045));
        for bad in [
            "2026-01-02T03:04:05+-1:00",
            "2026-01-02T03:04:05++1:00",
            "2026-01-02T03:04:05+99:99",
            "2026-01-02T03:04:05+01:60",
            "2026-01-02T03:04:05+1:000",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn round_trips() {
        for t in [0i64, 951_782_400, 1_795_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(t, 0)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2026-11-18T12:06:40+01:00"),
            Some(1_795_000_000)
        );
        assert_eq!(parse_rfc3339("2026-11-18T11:06:40.5Z"), Some(1_795_000_000));
        for bad in [
            "",
            "2026-11-18",
            "2026-13-01T00:00:00Z",
            "2026-11-18T11:06:40",
            "x026-11-18T11:06:40Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
