//! The built-in `echo: true` upstream: answers 200 with the request it got, as JSON
//! `{"method", "version", "path", "query", "headers": {lowercase name: [values]}, "body_bytes"}`
//! (`version` is the client's HTTP version as the gateway received it).
//! The body is counted as it streams by, never held.

use super::body::BoxError;
use crate::body::GwBody;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt;
use std::collections::BTreeMap;

pub async fn respond<B>(
    version: http::Version,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    mut body: B,
) -> Result<Response<GwBody>, BoxError>
where
    B: http_body::Body + Unpin,
    B::Error: Into<BoxError>,
{
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.map_err(Into::into)?.data_ref() {
            body_bytes += bytes::Buf::remaining(d) as u64;
        }
    }
    let mut hs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        hs.entry(k.as_str())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let doc = serde_json::json!({
        "method": method.as_str(),
        "version": format!("{version:?}"),
        "path": path,
        "query": query,
        "headers": hs,
        "body_bytes": body_bytes,
    });
    let mut resp = Response::new(GwBody::full(doc.to_string()));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
