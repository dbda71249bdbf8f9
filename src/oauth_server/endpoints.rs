//! What each endpoint answers once the client is authenticated (and the two public documents).

use super::client_auth::{invalid_request, Authenticated};
use super::json;
use crate::auth::jwt::parse::parse;
use crate::auth::jwt::verify::check_signature;
use crate::body::GwBody;
use crate::config::oauth::OauthServerCfg;
use crate::config::Snapshot;
use crate::error::{Reason, Reject};
use crate::oauth::clients::{ClientAuth, Grant};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{json, Map, Value};
use std::str::FromStr;

type Outcome = (
    Result<Response<GwBody>, Reject>,
    Option<&'static str>,
    Option<String>,
);

/// RFC 8414 metadata: only what is implemented.
pub fn metadata(cfg: &OauthServerCfg, snap: &Snapshot) -> Response<GwBody> {
    let iss = &cfg.issuer;
    let mtls = snap
        .listener(&cfg.listener)
        .is_some_and(|l| l.client_auth_possible());
    let mut auth = vec!["client_secret_basic", "client_secret_post"];
    if mtls {
        auth.push("tls_client_auth");
    }
    let mut revoke_auth = auth.clone();
    revoke_auth.push("none");
    let doc = json!({
        "issuer": iss,
        "token_endpoint": format!("{iss}/oauth2/token"),
        "jwks_uri": format!("{iss}/oauth2/jwks"),
        "revocation_endpoint": format!("{iss}/oauth2/revoke"),
        "introspection_endpoint": format!("{iss}/oauth2/introspect"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": auth,
        "revocation_endpoint_auth_methods_supported": revoke_auth,
        "introspection_endpoint_auth_methods_supported": auth,
    });
    let mut r = json(StatusCode::OK, doc.to_string());
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r.headers_mut().remove(header::PRAGMA);
    r
}

/// The JWK Set: pending, active and retired keys. Verifiers may cache it for half of
/// `publish_ahead` (at most an hour), so each sees a new key before it signs.
pub fn jwks(cfg: &OauthServerCfg, snap: &Snapshot) -> Response<GwBody> {
    let state = &snap.shared.oauth;
    let now = crate::clock::now_secs();
    let max_ttl = state.clients.max_ttl(cfg.ttl_secs());
    let body = state.keys.timeline().jwks(now, max_ttl);
    let mut r = Response::new(GwBody::full(body));
    let age = (cfg.publish_ahead.as_secs() / 2).min(3600);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    r
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// 16 random bytes, base64url.
fn new_jti() -> String {
    use base64::Engine;
    let mut b = [0u8; 16];
    let _ = aws_lc_rs::rand::fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The values asked for, each one of `allowed` (`reason` otherwise), without repeats.
fn pick<'a>(
    asked: impl Iterator<Item = &'a str>,
    allowed: &[String],
    reason: Reason,
    description: &'static str,
) -> Result<Vec<&'a str>, Reject> {
    let mut out: Vec<&str> = Vec::new();
    for v in asked {
        if !allowed.iter().any(|x| x == v) {
            return Err(Reject::new(reason, description));
        }
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// The scopes a token gets: those asked for (each allowed to the client, `invalid_scope`
/// otherwise), or all the client's when none are asked for.
fn granted_scope(client: &Authenticated, asked: Option<&str>) -> Result<String, Reject> {
    let c = &client.client;
    let Some(asked) = asked else {
        return Ok(c.all_scopes.clone());
    };
    let scopes = pick(
        asked.split(' ').filter(|s| !s.is_empty()),
        &c.row.scopes,
        Reason::OauthInvalidScope,
        "a requested scope is not allowed to this client",
    )?;
    Ok(scopes.join(" "))
}

/// `grant_type=client_credentials`: an RFC 9068 access token for the client.
pub fn token(
    cfg: &OauthServerCfg,
    snap: &Snapshot,
    client: &Authenticated,
    form: &super::form::Form,
    now: i64,
) -> Outcome {
    let issued = issue(cfg, snap, client, form, now);
    match issued {
        Ok((body, jti)) => (
            Ok(json(StatusCode::OK, body)),
            Some("token_issued"),
            Some(jti),
        ),
        Err(e) => (Err(e), Some("token_refused"), None),
    }
}

fn issue(
    cfg: &OauthServerCfg,
    snap: &Snapshot,
    client: &Authenticated,
    form: &super::form::Form,
    now: i64,
) -> Result<(String, String), Reject> {
    let grant = form
        .one("grant_type")
        .map_err(invalid_request)?
        .ok_or_else(|| invalid_request("grant_type is required"))?;
    match Grant::parse(grant) {
        Some(Grant::ClientCredentials) => {}
        Some(_) => {
            return Err(Reject::new(
                Reason::OauthUnsupportedGrant,
                "this server issues client_credentials tokens only (the authorization code flow is not built yet)",
            ))
        }
        None => {
            return Err(Reject::new(
                Reason::OauthUnsupportedGrant,
                "unknown grant_type",
            ))
        }
    }
    let c = &client.client;
    if !c.allows(Grant::ClientCredentials) || client.method == ClientAuth::None {
        return Err(Reject::new(
            Reason::OauthUnauthorizedClient,
            "this client may not use the client_credentials grant",
        ));
    }
    let scope = granted_scope(client, form.one("scope").map_err(invalid_request)?)?;
    let mut aud = pick(
        form.all("resource"),
        &c.row.audiences,
        Reason::OauthInvalidTarget,
        "a requested resource is not an audience of this client",
    )?;
    if aud.is_empty() {
        match c.row.audiences.first() {
            Some(a) => aud.push(a),
            None => {
                return Err(Reject::new(
                    Reason::OauthInvalidTarget,
                    "this client has no audience to issue a token for",
                ))
            }
        }
    }
    let signer = snap
        .shared
        .oauth
        .keys
        .signer(now)
        .ok_or_else(|| Reject::new(Reason::OauthUnavailable, "no signing key is active"))?;
    let ttl = c.ttl(cfg.ttl_secs());
    let now = c.issue_time(now);
    let jti = new_jti();
    let mut claims = String::with_capacity(256 + scope.len());
    claims.push_str("{\"iss\":");
    push_json_str(&mut claims, &cfg.issuer);
    claims.push_str(",\"sub\":");
    push_json_str(&mut claims, &c.id);
    claims.push_str(",\"aud\":");
    if let [one] = aud.as_slice() {
        push_json_str(&mut claims, one);
    } else {
        claims.push('[');
        for (i, a) in aud.iter().enumerate() {
            if i > 0 {
                claims.push(',');
            }
            push_json_str(&mut claims, a);
        }
        claims.push(']');
    }
    claims.push_str(&format!(
        ",\"exp\":{},\"iat\":{now},\"jti\":\"{jti}\",\"client_id\":",
        now + ttl
    ));
    push_json_str(&mut claims, &c.id);
    if !scope.is_empty() {
        claims.push_str(",\"scope\":");
        push_json_str(&mut claims, &scope);
    }
    claims.push('}');
    let token = signer.sign(claims.as_bytes()).map_err(|e| {
        tracing::error!(error = %e, "token signing failed");
        Reject::new(Reason::OauthUnavailable, "the token could not be signed")
    })?;
    let mut body = String::with_capacity(token.len() + 96 + scope.len());
    body.push_str("{\"access_token\":\"");
    body.push_str(&token);
    body.push_str(&format!(
        "\",\"token_type\":\"Bearer\",\"expires_in\":{ttl}"
    ));
    if !scope.is_empty() {
        body.push_str(",\"scope\":");
        push_json_str(&mut body, &scope);
    }
    body.push('}');
    Ok((body, jti))
}

/// One of this server's access tokens, signature and issuer checked (not its expiry).
struct Own {
    claims: Map<String, Value>,
}

impl Own {
    fn str(&self, k: &str) -> Option<&str> {
        self.claims.get(k).and_then(Value::as_str)
    }
    fn num(&self, k: &str) -> Option<f64> {
        self.claims.get(k).and_then(Value::as_f64)
    }
}

/// Checks that `token` is an access token this server signed.
fn own_token(cfg: &OauthServerCfg, token: &str) -> Option<Own> {
    let parsed = parse(token).ok()?;
    let typ = parsed.header.typ.as_deref().unwrap_or("");
    if !typ
        .strip_prefix("application/")
        .unwrap_or(typ)
        .eq_ignore_ascii_case("at+jwt")
    {
        return None;
    }
    let alg = jsonwebtoken::Algorithm::from_str(&parsed.header.alg).ok()?;
    let set = cfg.verifier.current();
    if check_signature(&set, &parsed, parsed.header.kid.as_deref(), alg) != Some(true) {
        return None;
    }
    if parsed.issuer() != Some(cfg.issuer.as_str()) {
        return None;
    }
    Some(Own {
        claims: parsed.claims,
    })
}

/// RFC 7009: revokes the client's own access token (its `jti` on the denylist until it expires,
/// on every replica); a token that is not one, or has expired, is answered 200 all the same.
pub async fn revoke(
    cfg: &OauthServerCfg,
    snap: &Snapshot,
    store: std::sync::Arc<dyn crate::store::Store>,
    client: &Authenticated,
    form: &super::form::Form,
    now: i64,
) -> Outcome {
    let token = match form.one("token") {
        Ok(Some(t)) => t,
        Ok(None) => return (Err(invalid_request("token is required")), None, None),
        Err(e) => return (Err(invalid_request(e)), None, None),
    };
    if let Err(e) = form.one("token_type_hint") {
        return (Err(invalid_request(e)), None, None);
    }
    let ok = || {
        let mut r = Response::new(GwBody::empty());
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    };
    let Some(own) = own_token(cfg, token) else {
        return (Ok(ok()), Some("revoke_unknown_token"), None);
    };
    let (Some(jti), Some(exp)) = (own.str("jti"), own.num("exp")) else {
        return (Ok(ok()), Some("revoke_unknown_token"), None);
    };
    if own.str("client_id") != Some(&*client.client.id) {
        return (
            Err(Reject::new(
                Reason::OauthUnauthorizedClient,
                "the token was not issued to this client",
            )),
            Some("revoke_refused"),
            Some(jti.to_owned()),
        );
    }
    let until = exp.ceil() as i64;
    if until <= now {
        return (Ok(ok()), Some("revoke_expired_token"), Some(jti.to_owned()));
    }
    let j = jti.to_owned();
    let stored = tokio::task::spawn_blocking(move || store.insert_revocation(&j, until))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    if let Err(e) = stored {
        tracing::error!(error = %e, "token revocation not stored");
        return (
            Err(Reject::new(
                Reason::OauthUnavailable,
                "the revocation could not be stored; retry",
            )),
            Some("revoke_failed"),
            Some(jti.to_owned()),
        );
    }
    snap.shared.revocations.revoke(jti, until as f64);
    (Ok(ok()), Some("token_revoked"), Some(jti.to_owned()))
}

/// RFC 7662: whether a token is active, with its claims when it is.
pub fn introspect(
    cfg: &OauthServerCfg,
    snap: &Snapshot,
    client: &Authenticated,
    form: &super::form::Form,
    now: i64,
) -> Outcome {
    if client.method == ClientAuth::None {
        return (
            Err(Reject::new(
                Reason::OauthUnauthorizedClient,
                "public clients may not introspect tokens",
            )),
            None,
            None,
        );
    }
    let token = match form.one("token") {
        Ok(Some(t)) => t,
        Ok(None) => return (Err(invalid_request("token is required")), None, None),
        Err(e) => return (Err(invalid_request(e)), None, None),
    };
    let state = &snap.shared.oauth;
    let nowf = now as f64;
    let inactive = || {
        (
            Ok(json(StatusCode::OK, r#"{"active":false}"#.to_owned())),
            Some("token_introspected"),
            None,
        )
    };
    let Some(own) = own_token(cfg, token) else {
        return inactive();
    };
    let active = own.num("exp").is_some_and(|e| e > nowf)
        && own
            .str("jti")
            .is_some_and(|j| !snap.shared.revocations.is_revoked(j, nowf))
        && own.str("client_id").is_some_and(|id| {
            let iat = own.num("iat").unwrap_or(0.0);
            state.clients.token_allowed_until(id, iat, nowf).is_some()
        });
    if !active {
        return inactive();
    }
    let mut doc = json!({"active": true, "token_type": "Bearer"});
    for k in [
        "scope",
        "client_id",
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "jti",
    ] {
        if let (Some(v), Some(o)) = (own.claims.get(k), doc.as_object_mut()) {
            o.insert(k.to_owned(), v.clone());
        }
    }
    let jti = own.str("jti").map(str::to_owned);
    (
        Ok(json(StatusCode::OK, doc.to_string())),
        Some("token_introspected"),
        jti,
    )
}
