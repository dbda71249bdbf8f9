//! The CLI's side of the admin API: a small HTTP client (hyper-util) and the table output.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// An answer from the admin API.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

pub async fn call(
    base: &str,
    token: Option<&str>,
    method: http::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Answer, String> {
    crate::install_crypto_provider();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let client: crate::tls::HttpsClient<Full<Bytes>> =
        crate::tls::https_client(&Default::default())?;
    let mut req = http::Request::builder()
        .method(method)
        .uri(&url)
        .header(http::header::ACCEPT, "application/json");
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let payload = match body {
        Some(b) => {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(payload)).map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("cannot reach the admin API at {base}: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(Answer { status, body })
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(cell).collect();
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join(" ")
            }
        }
        other => other.to_string(),
    }
}

/// A plain-text table of `rows` (objects) with the given columns.
pub fn table(rows: &[Value], cols: &[(&str, &str)]) -> String {
    let data: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|(k, _)| cell(&r[*k])).collect())
        .collect();
    let mut widths: Vec<usize> = cols.iter().map(|(_, h)| h.len()).collect();
    for row in &data {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(cols.iter().map(|(_, h)| *h).collect(), &mut out);
    for row in &data {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// `key: value` lines of an object, in the given order.
pub fn fields(v: &Value, keys: &[&str]) -> String {
    let mut out = String::new();
    for k in keys {
        if let Some(x) = v.get(*k) {
            out.push_str(&format!("{k}: {}\n", cell(x)));
        }
    }
    out
}

/// Parses `keys import` input: a JSON array, or lines `<key> <subject>` (`#` comments allowed).
pub fn parse_import(text: &str) -> Result<Vec<Value>, String> {
    let t = text.trim_start();
    if t.starts_with('[') {
        let v: Value = serde_json::from_str(t).map_err(|e| format!("not a JSON array: {e}"))?;
        return match v {
            Value::Array(a) => Ok(a),
            _ => Err("not a JSON array".into()),
        };
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let key = parts.next().unwrap_or_default();
        let subject = parts.next();
        if parts.next().is_some() {
            return Err(format!("line {}: expected `<key> <subject>`", n + 1));
        }
        let mut o = serde_json::json!({"key": key});
        if let Some(s) = subject {
            o["subject"] = Value::String(s.to_owned());
            o["name"] = Value::String(s.to_owned());
        }
        out.push(o);
    }
    Ok(out)
}

/// The admin API's base URL for a CLI command: `flag` (`--admin` or `PORTCULLIS_ADMIN_URL`), else
/// the `admin.bind` (and, with `admin.tls`, https) of `config` (default `./gateway.yaml` when
/// present), else `http://127.0.0.1:9901`. A bind on every address is reached on loopback.
pub fn admin_url(flag: Option<&str>, config: Option<&std::path::Path>) -> Result<String, String> {
    if let Some(u) = flag {
        return Ok(u.to_owned());
    }
    let default = std::path::Path::new("gateway.yaml");
    let file = match config {
        Some(f) => f,
        None if default.exists() => default,
        None => return Ok("http://127.0.0.1:9901".into()),
    };
    let (bind, tls) = crate::config::admin_address(file)?;
    let mut addr: std::net::SocketAddr = bind.parse().map_err(|_| {
        format!(
            "{}: admin.bind: `{bind}` is not an address:port",
            file.display()
        )
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if tls { "https" } else { "http" };
    Ok(format!("{scheme}://{addr}"))
}

/// `--scopes`: separated by spaces or commas.
pub fn scopes(s: &str) -> Vec<&str> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|x| !x.is_empty())
        .collect()
}

/// A point in time a user writes: an RFC 3339 date-time, or a date (midnight UTC); as RFC 3339.
fn date_time(s: &str) -> Option<String> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    crate::clock::parse_rfc3339(&full).map(|t| crate::clock::rfc3339(t, 0))
}

/// `keys create --expires`: a lifetime (`90d`) as `expires_in`, or a date as `expires_at`.
pub fn when(s: &str) -> Result<(&'static str, String), String> {
    if crate::values::parse_duration(s).is_ok() {
        return Ok(("expires_in", s.to_owned()));
    }
    date_time(s)
        .map(|t| ("expires_at", t))
        .ok_or_else(|| format!("`{s}` is neither a lifetime (90d) nor a date (2027-01-01)"))
}

/// `tokens revoke --until`: a date, or a time from now (`24h`), as RFC 3339.
pub fn until(s: &str) -> Result<String, String> {
    if let Ok(d) = crate::values::parse_duration(s) {
        return Ok(crate::clock::rfc3339(
            crate::clock::now_secs() + d.as_secs() as i64,
            0,
        ));
    }
    date_time(s)
        .ok_or_else(|| format!("`{s}` is neither a date (2027-01-01) nor a time from now (24h)"))
}

/// What `portcullis clients ...` prints for the admin API's answer to `what`.
pub fn client_output(what: &str, body: &Value) -> String {
    const META: [&str; 12] = [
        "client_id",
        "name",
        "status",
        "grants",
        "scopes",
        "audiences",
        "auth_method",
        "cert_sha256",
        "token_ttl",
        "created_at",
        "previous_secret_valid_until",
        "deleted_at",
    ];
    match what {
        "list" => {
            let rows = body["clients"].as_array().cloned().unwrap_or_default();
            table(
                &rows,
                &[
                    ("client_id", "CLIENT ID"),
                    ("name", "NAME"),
                    ("status", "STATUS"),
                    ("grants", "GRANTS"),
                    ("scopes", "SCOPES"),
                    ("auth_method", "AUTH"),
                ],
            )
        }
        "create" | "rotate" => {
            let mut out = if what == "create" {
                fields(body, &META)
            } else {
                fields(body, &["client_id", "previous_valid_until"])
            };
            if let Some(s) = body["client_secret"].as_str() {
                out.push_str(&format!(
                    "client_secret: {s}\n(the secret is shown once: store it now)\n"
                ));
            }
            out
        }
        "delete" => "deleted\n".to_owned(),
        _ => fields(body, &META),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_values() {
        assert_eq!(scopes("a,b  c, ,d"), ["a", "b", "c", "d"]);
        assert_eq!(when("90d"), Ok(("expires_in", "90d".into())));
        assert_eq!(
            when("2027-01-01"),
            Ok(("expires_at", "2027-01-01T00:00:00.000000Z".into()))
        );
        assert!(when("2027-13-01").is_err() && when("soon").is_err());
        assert_eq!(
            until("2027-01-01T10:00:00+02:00"),
            Ok("2027-01-01T08:00:00.000000Z".into())
        );
        assert!(until("24h").is_ok() && until("yesterday").is_err());
    }

    #[test]
    fn the_admin_url_comes_from_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("gw.yaml");
        std::fs::write(
            &f,
            "admin: { bind: \"0.0.0.0:9911\", tls: { cert: a, key: b } }\n",
        )
        .expect("write");
        assert_eq!(
            admin_url(None, Some(&f)),
            Ok("https://127.0.0.1:9911".into())
        );
        assert_eq!(
            admin_url(Some("http://h:1"), Some(&f)),
            Ok("http://h:1".into())
        );
        std::fs::write(&f, "listeners: []\n").expect("write");
        assert_eq!(
            admin_url(None, Some(&f)),
            Ok("http://127.0.0.1:9901".into())
        );
        assert!(admin_url(None, Some(&dir.path().join("missing.yaml"))).is_err());
    }
}
