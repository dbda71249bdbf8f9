//! The admin API's answers: JSON bodies, errors as `{"error", "error_description"}`, and the
//! helpers every endpoint shares (body parsing, store calls off the serving threads).

use crate::body::GwBody;
use crate::store::StoreError;
use http::{header, HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    pub extra: Option<Value>,
}

pub fn err(status: StatusCode, error: &'static str, description: impl Into<String>) -> ApiError {
    ApiError {
        status,
        error,
        description: description.into(),
        extra: None,
    }
}

pub fn bad(description: impl Into<String>) -> ApiError {
    err(StatusCode::BAD_REQUEST, "invalid_request", description)
}

pub fn not_found() -> ApiError {
    err(StatusCode::NOT_FOUND, "not_found", "no such key")
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict(m) => err(StatusCode::CONFLICT, "conflict", m),
            StoreError::NotFound => not_found(),
            StoreError::Unavailable(m) => {
                tracing::error!(error = %m, "store unavailable");
                err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the key store is unavailable; retry later",
                )
            }
        }
    }
}

pub fn json_response(status: StatusCode, v: &Value) -> Response<GwBody> {
    let mut r = Response::new(GwBody::full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn error_response(e: ApiError) -> Response<GwBody> {
    let mut v = json!({"error": e.error, "error_description": e.description});
    if let (Some(extra), Some(obj)) = (e.extra, v.as_object_mut()) {
        if let Some(x) = extra.as_object() {
            for (k, val) in x {
                obj.insert(k.clone(), val.clone());
            }
        }
    }
    let mut r = json_response(e.status, &v);
    if e.status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"portcullis-admin\""),
        );
    }
    r
}

/// The body of a rotation, `{"grace": "24h"}` (optional: absent or blank means 24h), as the
/// grace it asks for, at most `max`.
pub fn rotation_grace(
    body: &[u8],
    max: Option<std::time::Duration>,
) -> Result<std::time::Duration, ApiError> {
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Rotate {
        grace: Option<String>,
    }
    let r: Rotate = if body.iter().all(u8::is_ascii_whitespace) {
        Rotate::default()
    } else {
        parse(body)?
    };
    let grace = crate::values::parse_duration(r.grace.as_deref().unwrap_or("24h"))
        .map_err(|e| bad(format!("grace: {e}")))?;
    match max {
        Some(m) if grace > m => Err(bad(format!(
            "grace: at most {}",
            crate::values::format_duration(m)
        ))),
        _ => Ok(grace),
    }
}

pub fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid JSON body: {e}")))
}

pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(ApiError::from)
}
