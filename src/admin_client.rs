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
