//! The built-in authorization server (SPEC section 7) for machine clients, end to end on a real
//! TLS listener: clients registered through the admin API get RFC 9068 tokens at
//! `/oauth2/token`, the gateway's own routes verify them from memory (scopes, audience, and a
//! revocation on the next request), RFC 7009 revocation and RFC 7662 introspection answer as
//! the RFCs say, `tls_client_auth` works over the listener's mutual TLS, every malformed request
//! gets its RFC 6749 error with nothing issued, and signing keys rotate under load without a
//! failed request. Client libraries (authlib, requests-oauthlib, PyJWT, openid-client and
//! oauth4webapi) are driven against it unchanged.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const AUD: &str = "https://api.test";

/// A gateway with `oauth_server` on its TLS listener `public` (mutual TLS optional, so
/// `tls_client_auth` works), routes that verify its tokens, and its issuer made to name the
/// listener's real port (written after the bind, then reloaded).
struct Server {
    gw: Gw,
    pki: Pki,
    up: Upstream,
    issuer: String,
    admin: String,
    http: reqwest::Client,
}

fn yaml(
    pki: &Pki,
    up: &Upstream,
    issuer: &str,
    signing: &str,
    audit: &str,
    limits: &str,
) -> String {
    format!(
        r#"
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ cert: "{crt}", key: "{key}", client_auth: {{ mode: optional, ca: "{ca}" }} }}
logging: {{ audit: "{audit}" }}
rate_limits:
  generous: {{ rate: 100000/s, burst: 100000, key: ip }}
  five: {{ rate: 5/min, burst: 5, key: ip }}
  three_failures: {{ rate: 3/min, burst: 3, key: ip }}
upstreams: {{ rec: {{ url: "{up}" }} }}
authenticators:
  own: {{ type: jwt, oauth_server: true, audiences: ["{AUD}"] }}
routes:
  - {{ name: read, match: {{ path_prefix: /api/read }}, upstream: rec, auth: {{ any_of: [own], scopes: [read] }} }}
  - {{ name: write, match: {{ path_prefix: /api/write }}, upstream: rec, auth: {{ any_of: [own], scopes: [write] }} }}
  - {{ name: open, match: {{ path_prefix: / }}, upstream: rec, auth: none }}
oauth_server:
  issuer: {issuer}
  listener: public
  signing: {{ {signing} }}
  access_token_ttl: 10m
  {limits}
"#,
        crt = pki.path("server.crt"),
        key = pki.path("server.key"),
        ca = pki.path("ca.crt"),
        up = up.url(),
    )
}

impl Server {
    async fn start(signing: &str) -> Server {
        Server::start_with(signing, "pre_auth_rate_limit: generous").await
    }

    async fn start_with(signing: &str, limits: &str) -> Server {
        let pki = Pki::new();
        let up = Upstream::start().await;
        let audit = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        let audit = audit.keep().unwrap();
        let placeholder = yaml(
            &pki,
            &up,
            "https://localhost:1",
            signing,
            &audit.display().to_string(),
            limits,
        );
        let gw = Gw::start(&placeholder).await;
        let issuer = format!("https://localhost:{}", gw.addr("public").port());
        // the same config with the real issuer, and the admin section Gw::start added
        let file = gw.dir.path().join("gateway.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(
            &file,
            text.replace("https://localhost:1\n", &format!("{issuer}\n")),
        )
        .unwrap();
        let admin = gw.admin();
        let http = tls_client(&pki, None, true);
        let (st, v) = admin_call(
            &plain_client(),
            &admin,
            reqwest::Method::POST,
            "/admin/reload",
            None,
        )
        .await;
        assert_eq!(st, 200, "{v}");
        Server {
            gw,
            pki,
            up,
            issuer,
            admin,
            http,
        }
    }

    fn audit_path(&self) -> std::path::PathBuf {
        let text = std::fs::read_to_string(self.gw.dir.path().join("gateway.yaml")).unwrap();
        let line = text.lines().find(|l| l.contains("audit:")).unwrap();
        std::path::PathBuf::from(line.split('"').nth(1).unwrap())
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        admin_call(&plain_client(), &self.admin, method, path, body).await
    }

    /// Registers a client; its id and secret (empty without one).
    async fn client(&self, body: Value) -> (String, String) {
        let (st, v) = self
            .admin(reqwest::Method::POST, "/admin/clients", Some(body))
            .await;
        assert_eq!(st, 201, "{v}");
        (
            v["client_id"].as_str().unwrap().to_owned(),
            v["client_secret"].as_str().unwrap_or_default().to_owned(),
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// POSTs a form to an endpoint with HTTP Basic credentials (when given).
    async fn post(
        &self,
        path: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut r = self.http.post(self.url(path)).form(form);
        if let Some((id, secret)) = basic {
            r = r.basic_auth(id, Some(secret));
        }
        let resp = r.send().await.unwrap();
        let st = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            st,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn token(&self, id: &str, secret: &str, extra: &[(&str, &str)]) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        let (st, v) = self.post("/oauth2/token", Some((id, secret)), &form).await;
        assert_eq!(st, 200, "{v}");
        v["access_token"].as_str().unwrap().to_owned()
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

fn header_of(token: &str) -> Value {
    use base64::Engine;
    let p = token.split('.').next().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_client_gets_tokens_that_routes_verify_from_memory() {
    let s = Server::start("algorithm: ES256").await;
    let (id, secret) = s
        .client(json!({"name": "svc", "scopes": ["read", "write"], "audiences": [AUD, "https://other.test"]}))
        .await;
    assert!(secret.starts_with("pcs_") && secret.len() == 42);
    // RFC 9068: typ at+jwt, the claims it requires, the default audience (the first)
    let (st, v) = s
        .post(
            "/oauth2/token",
            Some((&id, &secret)),
            &[("grant_type", "client_credentials"), ("scope", "read")],
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (
            v["token_type"].as_str(),
            v["scope"].as_str(),
            v["expires_in"].as_i64()
        ),
        (Some("Bearer"), Some("read"), Some(600))
    );
    let token = v["access_token"].as_str().unwrap().to_owned();
    let (h, c) = (header_of(&token), claims_of(&token));
    assert_eq!(
        (h["typ"].as_str(), h["alg"].as_str()),
        (Some("at+jwt"), Some("ES256"))
    );
    assert_eq!(c["iss"], s.issuer.as_str());
    assert_eq!(
        (c["sub"].as_str(), c["client_id"].as_str()),
        (Some(id.as_str()), Some(id.as_str()))
    );
    assert_eq!(c["aud"], AUD);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16));
    // a route that wants `read` lets it through with the client as the identity
    let r = s.get("/api/read/x", &token).await;
    assert_eq!(r.status(), 200);
    let seen = s.up.last();
    assert_eq!(seen.header("x-auth-subject"), Some(id.as_str()));
    assert_eq!(seen.header("x-auth-scopes"), Some("read"));
    assert_eq!(seen.header("x-auth-issuer"), Some(s.issuer.as_str()));
    assert_eq!(
        seen.header("authorization"),
        None,
        "the token must not reach the upstream"
    );
    // a route that wants `write` does not
    let before = s.up.count();
    let r = s.get("/api/write/x", &token).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    // a token for another audience (RFC 8707 resource) is not for these routes
    let other = s
        .token(&id, &secret, &[("resource", "https://other.test")])
        .await;
    assert_eq!(claims_of(&other)["aud"], "https://other.test");
    assert_eq!(s.get("/api/read/x", &other).await.status(), 401);
    assert_eq!(
        s.up.count(),
        before,
        "a refused request reached the upstream"
    );
    // introspection, then revocation: refused on the next request, inactive
    let (st, v) = s
        .post(
            "/oauth2/introspect",
            Some((&id, &secret)),
            &[("token", &token)],
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        (
            v["active"].as_bool(),
            v["client_id"].as_str(),
            v["scope"].as_str()
        ),
        (Some(true), Some(id.as_str()), Some("read"))
    );
    assert_eq!(v["jti"], c["jti"]);
    let (st, _) = s
        .post("/oauth2/revoke", Some((&id, &secret)), &[("token", &token)])
        .await;
    assert_eq!(st, 200);
    let r = s.get("/api/read/x", &token).await;
    assert_eq!(r.status(), 401);
    let (_, v) = s
        .post(
            "/oauth2/introspect",
            Some((&id, &secret)),
            &[("token", &token)],
        )
        .await;
    assert_eq!(v, json!({"active": false}));
    // revoking it again, or revoking garbage: 200 and nothing else (RFC 7009 2.2)
    for t in [token.as_str(), "not-a-token"] {
        assert_eq!(
            s.post("/oauth2/revoke", Some((&id, &secret)), &[("token", t)])
                .await
                .0,
            200
        );
    }
    // a token of another issuer's key (PyJWT), with our iss, aud and typ: not ours
    let key: Value = serde_json::from_str(
        &mint(&json!([{"mode": "keygen", "alg": "ES256", "kid": h["kid"]}]))[0],
    )
    .unwrap();
    let mut forged_claims = c.clone();
    forged_claims["exp"] = json!(unix_now() + 300);
    let forged = &mint(
        &json!([{"mode": "sign", "lib": "pyjwt", "alg": "ES256", "key": key["private"],
        "header": {"typ": "at+jwt", "kid": h["kid"]}, "claims": forged_claims}]),
    )[0];
    assert_eq!(s.get("/api/read/x", forged).await.status(), 401);
    let (_, v) = s
        .post(
            "/oauth2/introspect",
            Some((&id, &secret)),
            &[("token", forged)],
        )
        .await;
    assert_eq!(v, json!({"active": false}));
    // the other token still passes where its audience is accepted: nothing else was revoked
    let (_, v) = s
        .post(
            "/oauth2/introspect",
            Some((&id, &secret)),
            &[("token", &other)],
        )
        .await;
    assert_eq!(v["active"], true);
    // and the audit says what happened, never a secret or a token
    let want = ["token_issued", "token_introspected", "token_revoked"];
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(s.audit_path()).unwrap_or_default();
        if want
            .iter()
            .all(|e| text.contains(&format!("\"event\":\"{e}\"")))
            || Instant::now() > deadline
        {
            break text;
        }
        tokio::task::yield_now().await;
    };
    for e in want {
        assert!(
            text.contains(&format!("\"event\":\"{e}\"")),
            "{e} missing:\n{text}"
        );
    }
    assert!(
        !text.contains(&secret) && !text.contains(&token),
        "a secret or token in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_authenticate_only_as_they_are_registered() {
    let s = Server::start("algorithm: EdDSA").await;
    let cert = s.pki.read("client.crt");
    let der = portcullis::tls::load_certs(std::path::Path::new(&s.pki.path("client.crt"))).unwrap();
    let sha = portcullis::digest::hex_lower(&portcullis::digest::sha256(der[0].as_ref()));
    assert!(!cert.is_empty());
    let (mtls_id, none) = s
        .client(
            json!({"name": "mtls", "scopes": ["read"], "audiences": [AUD],
            "auth_method": "tls_client_auth", "cert_sha256": format!("sha256:{sha}")}),
        )
        .await;
    assert!(none.is_empty(), "a tls_client_auth client has no secret");
    let (post_id, post_secret) = s
        .client(json!({"name": "post", "scopes": ["read"], "audiences": [AUD], "auth_method": "client_secret_post"}))
        .await;
    let form = |id: &str| {
        vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_id".to_owned(), id.to_owned()),
        ]
    };
    // RFC 8705: the registered certificate on the connection, the client id in the form
    // (a certificate of another CA does not get past the handshake; one of the listener's CA
    // that is not the registered one is refused here)
    for (ident, want) in [
        (Some("client"), 200),
        (Some("revoked-client"), 401),
        (None, 401),
    ] {
        let c = tls_client(&s.pki, ident, true);
        let r = c
            .post(s.url("/oauth2/token"))
            .form(&form(&mtls_id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{ident:?}");
        if want == 200 {
            let t: Value = r.json().await.unwrap();
            let token = t["access_token"].as_str().unwrap();
            assert_eq!(header_of(token)["alg"], "EdDSA");
            assert_eq!(s.get("/api/read/x", token).await.status(), 200);
        } else {
            assert_eq!(
                r.headers()["www-authenticate"],
                "Basic realm=\"portcullis\""
            );
        }
    }
    // client_secret_post: the secret in the body works; the same secret in Basic does not
    let mut f = form(&post_id);
    f.push(("client_secret".into(), post_secret.clone()));
    let r = s
        .http
        .post(s.url("/oauth2/token"))
        .form(&f)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, v) = s
        .post(
            "/oauth2/token",
            Some((&post_id, &post_secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_client")));
}

/// Each malformed or refused request: its RFC 6749 5.2 error, `no-store`, nothing issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_rfc_6749_error_and_nothing_is_issued() {
    let s = Server::start("algorithm: RS256").await;
    let (id, secret) = s
        .client(json!({"name": "svc", "scopes": ["read"], "audiences": [AUD]}))
        .await;
    let (gone, gone_secret) = s.client(json!({"name": "gone", "audiences": [AUD]})).await;
    assert_eq!(
        s.admin(
            reqwest::Method::DELETE,
            &format!("/admin/clients/{gone}"),
            None
        )
        .await
        .0,
        204
    );
    let cc = ("grant_type", "client_credentials");
    /// what, Basic credentials, form, status, RFC 6749 error
    type Case<'a> = (
        &'a str,
        Option<(&'a str, &'a str)>,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "unknown grant",
            Some((&id, &secret)),
            vec![("grant_type", "password")],
            400,
            "unsupported_grant_type",
        ),
        (
            "authorization_code (not built yet)",
            Some((&id, &secret)),
            vec![("grant_type", "authorization_code"), ("code", "x")],
            400,
            "unsupported_grant_type",
        ),
        (
            "missing grant",
            Some((&id, &secret)),
            vec![("scope", "read")],
            400,
            "invalid_request",
        ),
        (
            "duplicate grant",
            Some((&id, &secret)),
            vec![cc, cc],
            400,
            "invalid_request",
        ),
        (
            "duplicate scope",
            Some((&id, &secret)),
            vec![cc, ("scope", "read"), ("scope", "read")],
            400,
            "invalid_request",
        ),
        (
            "wrong secret",
            Some((&id, "pcs_wrong")),
            vec![cc],
            401,
            "invalid_client",
        ),
        (
            "unknown client",
            Some(("cl_nobody", &secret)),
            vec![cc],
            401,
            "invalid_client",
        ),
        (
            "deleted client's secret",
            Some((&gone, &gone_secret)),
            vec![cc],
            401,
            "invalid_client",
        ),
        (
            "no client authentication",
            None,
            vec![cc],
            401,
            "invalid_client",
        ),
        (
            "two authentication methods",
            Some((&id, &secret)),
            vec![cc, ("client_secret", &secret)],
            400,
            "invalid_request",
        ),
        (
            "scope outside the allowed set",
            Some((&id, &secret)),
            vec![cc, ("scope", "read admin")],
            400,
            "invalid_scope",
        ),
        (
            "resource not allowed",
            Some((&id, &secret)),
            vec![cc, ("resource", "https://evil.test")],
            400,
            "invalid_target",
        ),
    ];
    for (what, basic, form, status, error) in &cases {
        let (st, v) = s.post("/oauth2/token", *basic, form).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (*status, Some(*error)),
            "{what}: {v}"
        );
        assert!(v.get("access_token").is_none(), "{what}");
    }
    // the wrong content type, an oversized body, the wrong method
    let r = s
        .http
        .post(s.url("/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/json")
        .body(r#"{"grant_type":"client_credentials"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let big = format!("grant_type=client_credentials&pad={}", "a".repeat(20_000));
    let r = s
        .http
        .post(s.url("/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = s.http.get(s.url("/oauth2/token")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    // paths under /oauth2 are the server's, never a route's
    let before = s.up.count();
    for p in ["/oauth2/authorize", "/oauth2/token/", "/oauth2/%74oken/x"] {
        let r = s.http.get(s.url(p)).send().await.unwrap();
        assert!(
            matches!(r.status().as_u16(), 404 | 405),
            "{p}: {}",
            r.status()
        );
    }
    assert_eq!(s.up.count(), before, "an /oauth2 path reached the upstream");
    // a revocation and an introspection need their parameter, and a token of another client
    // cannot be revoked by this one
    assert_eq!(
        s.post("/oauth2/revoke", Some((&id, &secret)), &[]).await.1["error"],
        "invalid_request"
    );
    let (other, other_secret) = s.client(json!({"name": "other", "audiences": [AUD]})).await;
    let t = s.token(&other, &other_secret, &[]).await;
    let (st, v) = s
        .post("/oauth2/revoke", Some((&id, &secret)), &[("token", &t)])
        .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    assert_eq!(s.get("/", &t).await.status(), 200);
    // nothing secret in the log of all this
    let text = std::fs::read_to_string(s.audit_path()).unwrap_or_default();
    assert!(!text.contains(&secret) && !text.contains(&gone_secret) && !text.contains(&t));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_or_deleting_a_client_ends_its_tokens() {
    let s = Server::start("algorithm: ES256").await;
    let (id, secret) = s
        .client(json!({"name": "svc", "scopes": ["read"], "audiences": [AUD]}))
        .await;
    let t1 = s.token(&id, &secret, &[]).await;
    // with a grace: the old secret and the old token keep working until it ends
    let (st, v) = s
        .admin(
            reqwest::Method::POST,
            &format!("/admin/clients/{id}/rotate"),
            Some(json!({"grace": "1h"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let new_secret = v["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/api/read/x", &t1).await.status(), 200);
    let t2 = s.token(&id, &secret, &[]).await;
    let t3 = s.token(&id, &new_secret, &[]).await;
    assert_eq!(s.get("/api/read/x", &t3).await.status(), 200);
    // without grace (a leaked secret): the old secret and every token issued before stop now
    let (st, v) = s
        .admin(
            reqwest::Method::POST,
            &format!("/admin/clients/{id}/rotate"),
            Some(json!({"grace": "0s"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let newest = v["client_secret"].as_str().unwrap().to_owned();
    for t in [&t1, &t2, &t3] {
        assert_eq!(s.get("/api/read/x", t).await.status(), 401);
    }
    for old in [&secret, &new_secret] {
        let (st, _) = s
            .post(
                "/oauth2/token",
                Some((&id, old)),
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert_eq!(st, 401);
    }
    let t4 = s.token(&id, &newest, &[]).await;
    assert_eq!(s.get("/api/read/x", &t4).await.status(), 200);
    // deleting the client ends its tokens at once, and it can no longer authenticate
    assert_eq!(
        s.admin(
            reqwest::Method::DELETE,
            &format!("/admin/clients/{id}"),
            None
        )
        .await
        .0,
        204
    );
    assert_eq!(s.get("/api/read/x", &t4).await.status(), 401);
    let (st, _) = s
        .post(
            "/oauth2/token",
            Some((&id, &newest)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(st, 401);
    let (st, v) = s
        .admin(reqwest::Method::GET, &format!("/admin/clients/{id}"), None)
        .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("deleted")));
}

/// A rotation's grace ends by time alone: a token issued before it, verified and cached by the
/// route since, passes until the grace ends and is refused from then on, with no other change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_stops_passing_when_its_rotation_grace_ends() {
    let s = Server::start("algorithm: ES256").await;
    let (id, secret) = s
        .client(json!({"name": "svc", "scopes": ["read"], "audiences": [AUD]}))
        .await;
    let t1 = s.token(&id, &secret, &[]).await;
    assert_eq!(s.get("/api/read/x", &t1).await.status(), 200); // now in the route's cache
    let (st, v) = s
        .admin(
            reqwest::Method::POST,
            &format!("/admin/clients/{id}/rotate"),
            Some(json!({"grace": "2s"})),
        )
        .await;
    let rotated = Instant::now();
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        s.get("/api/read/x", &t1).await.status(),
        200,
        "within the grace"
    );
    let new_secret = v["client_secret"].as_str().unwrap().to_owned();
    let t2 = s.token(&id, &new_secret, &[]).await;
    let seen = s.up.count();
    loop {
        let st = s.get("/api/read/x", &t1).await.status();
        if st == 401 {
            break;
        }
        assert_eq!(st, 200);
        assert!(
            rotated.elapsed() < Duration::from_secs(5),
            "the old token still passes {:?} after a 2s grace",
            rotated.elapsed()
        );
        tokio::task::yield_now().await;
    }
    // whole seconds: the grace ends between 1 and 2 s after the rotation
    assert!(
        rotated.elapsed() >= Duration::from_secs(1),
        "{:?}",
        rotated.elapsed()
    );
    let after = s.up.count();
    assert_eq!(s.get("/api/read/x", &t1).await.status(), 401);
    assert_eq!(
        s.up.count(),
        after,
        "a token past its grace reached the upstream"
    );
    assert!(after > seen);
    // the token issued with the new secret is not affected
    assert_eq!(s.get("/api/read/x", &t2).await.status(), 200);
}

/// Keys rotate while tokens are used: no request with a valid token fails, and a verifier that
/// caches the JWKS for `publish_ahead` always knows the key of every token issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_rotate_under_load_without_a_failed_request() {
    let ahead = 2;
    let s = Server::start(&format!(
        "algorithm: ES256, publish_ahead: {ahead}s, rotate_every: 1h"
    ))
    .await;
    let (id, secret) = s
        .client(json!({"name": "svc", "scopes": ["read"], "audiences": [AUD]}))
        .await;
    let fetch_jwks = || async {
        let v: Value = s
            .http
            .get(s.url("/oauth2/jwks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let mut cached = (Instant::now(), fetch_jwks().await);
    let mut kids_seen = std::collections::BTreeSet::new();
    let (mut requests, mut rotations) = (0, 0);
    let started = Instant::now();
    while rotations < 2 || kids_seen.len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "keys did not rotate: {kids_seen:?}"
        );
        // the verifier's cache: refetched once it is publish_ahead old
        if cached.0.elapsed() >= Duration::from_secs(ahead) {
            cached = (Instant::now(), fetch_jwks().await);
        }
        let token = s.token(&id, &secret, &[]).await;
        let kid = header_of(&token)["kid"].as_str().unwrap().to_owned();
        assert!(
            cached.1.contains(&kid),
            "token signed by {kid}, unknown to a JWKS cached {:?} ago",
            cached.0.elapsed()
        );
        kids_seen.insert(kid);
        // the token passes, whichever key signs now
        let r = s.get("/api/read/x", &token).await;
        assert_eq!(r.status(), 200, "request {requests} failed during rotation");
        requests += 1;
        // a rotation as soon as the previous new key signs (it waits publish_ahead first)
        if rotations < 2 && kids_seen.len() == rotations + 1 {
            let (st, v) = s
                .admin(reqwest::Method::POST, "/admin/oauth/keys/rotate", None)
                .await;
            assert_eq!(st, 201, "{v}");
            rotations += 1;
        }
    }
    let (_, v) = s
        .admin(reqwest::Method::GET, "/admin/oauth/keys", None)
        .await;
    let states: Vec<&str> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["retired", "retired", "active"], "{v}");
    assert!(requests > 10, "{requests}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_and_clients_survive_a_restart() {
    let s = Server::start("algorithm: ES256").await;
    let (id, secret) = s
        .client(json!({"name": "svc", "scopes": ["read"], "audiences": [AUD]}))
        .await;
    let token = s.token(&id, &secret, &[]).await;
    let file = s.gw.dir.path().join("gateway.yaml");
    let mut gw = s.gw;
    // stop, then start again on the same config, store and secrets-key file
    if let Some(r) = gw.running.take() {
        r.shutdown().await;
    }
    let snap = portcullis::config::load(&file, None, portcullis::config::Mode::Run).unwrap();
    let running = portcullis::server::start(&file, snap).await.unwrap();
    let port = running.addr("public").unwrap().port();
    let url = format!("https://localhost:{port}/api/read/x");
    let r = s.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200, "a token from before the restart");
    let r = s
        .http
        .post(format!("https://localhost:{port}/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        header_of(t["access_token"].as_str().unwrap())["kid"],
        header_of(&token)["kid"]
    );
    // the generated secrets key is in its 0600 file beside the store
    let key_file = gw.dir.path().join("data/secrets-key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    running.shutdown().await;
    drop(gw);
}

/// Client libraries, unchanged: authlib and requests-oauthlib get tokens (client_secret_basic
/// and _post; a secret that needs form-urlencoding), revoke and introspect; PyJWT verifies the
/// tokens against /oauth2/jwks; openid-client discovers the metadata (both well-known paths)
/// and oauth4webapi validates the token as RFC 9068 asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_client_libraries_work_unchanged() {
    let s = Server::start("algorithm: ES256").await;
    let basic = s
        .client(json!({"name": "basic", "scopes": ["read"], "audiences": [AUD]}))
        .await;
    let post = s.client(json!({"name": "post", "scopes": ["read"], "audiences": [AUD], "auth_method": "client_secret_post"})).await;
    // secrets with characters that need form-urlencoding (imported as another server had them)
    let special = s
        .client(
            json!({"name": "special", "audiences": [AUD], "client_id": "svc.special",
            "client_secret": "s3cr:t+%2F with space & é=1"}),
        )
        .await;
    let special_post = s
        .client(
            json!({"name": "special-post", "audiences": [AUD], "auth_method": "client_secret_post",
            "client_secret": "s3cr:t+%2F with space & é=2"}),
        )
        .await;
    let input = json!({
        "issuer": s.issuer, "ca": s.pki.path("ca.crt"), "audience": AUD,
        "basic": {"id": basic.0, "secret": basic.1},
        "post": {"id": post.0, "secret": post.1},
        "special": {"id": special.0, "secret": special.1},
        "special_post": {"id": special_post.0, "secret": special_post.1},
    });
    let py = tokio::task::spawn_blocking(move || interop("oauth_clients.py", &input))
        .await
        .unwrap();
    let mut checks = 0;
    for line in &py {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert_eq!(
            v["ok"],
            true,
            "{}",
            serde_json::to_string_pretty(&v).unwrap()
        );
        checks += 1;
    }
    assert_eq!(checks, 13, "{py:#?}");
    // a token authlib revoked is refused by the gateway's route
    let revoked: Value = py
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["check"] == "authlib_client_secret_basic_introspect_revoked")
        .unwrap();
    assert_eq!(
        s.get("/api/read/x", revoked["token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    // node: openid-client + oauth4webapi
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/op/oauth_client.mjs"
    );
    let input =
        json!({"issuer": s.issuer, "clientId": basic.0, "secret": basic.1, "audience": AUD});
    let ca = s.pki.path("ca.crt");
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("node")
            .arg(script)
            .env("NODE_EXTRA_CA_CERTS", ca)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect(
                "node (for openid-client; .ci/run installs it and runs npm ci in tests/interop/op)",
            );
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.to_string().as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for v in lines {
        assert_eq!(v["ok"], true, "{v}");
    }
}

/// The endpoints' own limits: per address before any secret is checked, and per client and
/// address after failed authentications, when even the right secret is held back (guessing
/// learns nothing); another client from the same address is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoints_limit_guessing_and_floods() {
    let s = Server::start_with(
        "algorithm: ES256",
        "pre_auth_rate_limit: generous\n  failed_auth_limit: three_failures",
    )
    .await;
    let (id, secret) = s.client(json!({"name": "a", "audiences": [AUD]})).await;
    let (other, other_secret) = s.client(json!({"name": "b", "audiences": [AUD]})).await;
    let cc = [("grant_type", "client_credentials")];
    for _ in 0..3 {
        let (st, v) = s.post("/oauth2/token", Some((&id, "pcs_guess")), &cc).await;
        assert_eq!((st, v["error"].as_str()), (401, Some("invalid_client")));
    }
    // the bucket is empty: held back, the right secret too
    let (st, v) = s.post("/oauth2/token", Some((&id, "pcs_guess")), &cc).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_client")));
    let (st, v) = s.post("/oauth2/token", Some((&id, &secret)), &cc).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (429, Some("temporarily_unavailable")),
        "{v}"
    );
    assert_eq!(
        s.post("/oauth2/token", Some((&other, &other_secret)), &cc)
            .await
            .0,
        200
    );

    // pre-auth: five a minute from one address, then 429 with Retry-After, whatever is sent
    let s = Server::start_with("algorithm: ES256", "pre_auth_rate_limit: five").await;
    let (id, secret) = s.client(json!({"name": "a", "audiences": [AUD]})).await;
    for _ in 0..5 {
        assert_eq!(
            s.post("/oauth2/token", Some((&id, &secret)), &cc).await.0,
            200
        );
    }
    let r = s
        .http
        .post(s.url("/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .form(&cc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "temporarily_unavailable"
    );
    // the metadata and the JWKS are not behind it
    assert_eq!(
        s.http
            .get(s.url("/oauth2/jwks"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
