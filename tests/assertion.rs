//! The signed identity assertion (`routes[i].identity_token`): the upstream gets a short-lived
//! JWT of the identity the chain proved, which PyJWT verifies against the gateway's
//! `/.well-known/portcullis/jwks.json` (and, with `oauth_server`, its `/oauth2/jwks`); expired
//! assertions are refused by the verifier; a client's own copy of the header never passes.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;
use serde_json::{json, Value};

fn config(up: &Upstream, oauth: &str) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
upstreams: {{ rec: {{ url: "{url}" }} }}
authenticators: {{ keys: {{ type: api_key }} }}
routes:
  - name: files
    match: {{ path_prefix: /files }}
    upstream: rec
    identity_token: {{ audience: files-service, ttl: 60s }}
    auth: {{ any_of: [keys] }}
  - {{ name: rest, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [keys] }} }}
{oauth}"#,
        url = up.url()
    )
}

/// PyJWT (an independent JOSE library) verifies `token` against `jwks` for `aud`, `leeway`
/// seconds of clock leeway (negative: as if that much later); the claims or the error's name.
fn pyjwt_verify(jwks: &str, token: &str, aud: &str, leeway: i64) -> Result<Value, String> {
    let script = r#"
import json, sys, jwt
jwks, token, aud, leeway = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
kid = jwt.get_unverified_header(token)["kid"]
key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
try:
    c = jwt.decode(token, key, algorithms=["ES256", "RS256", "EdDSA"], audience=aud, leeway=leeway,
                   options={"require": ["exp", "iat", "iss", "sub", "aud", "jti"],
                            "verify_iat": leeway >= 0})
    print(json.dumps({"ok": c, "typ": jwt.get_unverified_header(token)["typ"]}))
except jwt.PyJWTError as e:
    print(json.dumps({"error": type(e).__name__}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, jwks, token, aud, &leeway.to_string()])
        .output()
        .expect("python3 with PyJWT (tests/interop/requirements.txt)");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    match v.get("error") {
        Some(e) => Err(e.as_str().unwrap().to_owned()),
        None => {
            let mut c = v["ok"].clone();
            c["typ"] = v["typ"].clone();
            Ok(c)
        }
    }
}

async fn key(gw: &Gw, scopes: &[&str]) -> (String, String) {
    let (st, v) = admin_call(
        &plain_client(),
        &gw.admin(),
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"name": "svc", "subject": "billing", "scopes": scopes})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    (
        v["key"].as_str().unwrap().to_owned(),
        v["id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_an_assertion_it_can_verify() {
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&up, "")).await;
    let (k, id) = key(&gw, &["read", "write"]).await;
    let http = plain_client();
    let get = |path: &str| {
        http.get(format!("{}{path}", gw.http("plain")))
            .header("x-api-key", &k)
            .header("x-auth-assertion", "forged.by.client")
            .send()
    };
    assert_eq!(get("/files/a").await.unwrap().status(), 200);
    let token = up.last().header("x-auth-assertion").unwrap().to_owned();
    assert_ne!(token, "forged.by.client");
    let jwks = get_text(&format!(
        "{}/.well-known/portcullis/jwks.json",
        gw.http("plain")
    ))
    .await;
    let c = pyjwt_verify(&jwks, &token, "files-service", 0).unwrap();
    assert_eq!(c["iss"], "urn:portcullis:gateway");
    assert_eq!(c["sub"], "billing");
    assert_eq!(c["aud"], "files-service");
    assert_eq!(c["scope"], "read write");
    assert_eq!(c["auth_method"], "api_key");
    assert_eq!(c["key_id"], id.as_str());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 60);
    assert_eq!(c["typ"], "portcullis-assertion+jwt");
    // for another audience, or past its lifetime, the verifier refuses it
    assert_eq!(
        pyjwt_verify(&jwks, &token, "other", 0).unwrap_err(),
        "InvalidAudienceError"
    );
    assert_eq!(
        pyjwt_verify(&jwks, &token, "files-service", -61).unwrap_err(),
        "ExpiredSignatureError"
    );
    // the same identity again: the cached assertion
    assert_eq!(get("/files/b").await.unwrap().status(), 200);
    assert_eq!(up.last().header("x-auth-assertion"), Some(token.as_str()));
    // a route without identity_token: no assertion, and the client's copy never passes
    assert_eq!(get("/other").await.unwrap().status(), 200);
    assert_eq!(up.last().header("x-auth-assertion"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_oauth_server_assertions_are_signed_with_its_keys() {
    let up = Upstream::start().await;
    let gw = Gw::start(&config(
        &up,
        "oauth_server: { issuer: \"http://127.0.0.1:8443\", listener: plain }\n",
    ))
    .await;
    let (k, _) = key(&gw, &[]).await;
    let http = plain_client();
    let r = http
        .get(format!("{}/files/a", gw.http("plain")))
        .header("x-api-key", &k)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = up.last().header("x-auth-assertion").unwrap().to_owned();
    for path in ["/.well-known/portcullis/jwks.json", "/oauth2/jwks"] {
        let jwks = get_text(&format!("{}{path}", gw.http("plain"))).await;
        let c = pyjwt_verify(&jwks, &token, "files-service", 0).unwrap();
        assert_eq!(c["iss"], "http://127.0.0.1:8443", "{path}");
        assert_eq!(c.get("scope"), None);
    }
}

#[test]
fn bad_identity_tokens_are_config_errors_at_their_field() {
    assert_check_fails_with(
        r#"listeners: [{ name: plain, bind: 127.0.0.1:0 }]
upstreams: { e: { echo: true } }
routes:
  - { name: a, match: { path_prefix: /a }, upstream: e, auth: none, identity_token: { header: Authorization, audience: x } }
  - { name: b, match: { path_prefix: /b }, upstream: e, auth: none, identity_token: { ttl: 2h, audience: "" } }
  - { name: c, match: { path_prefix: /c }, upstream: e, auth: none, identity_token: { header: X-Auth-Subject, audience: x } }
"#,
        &[
            "routes[0].identity_token.header: `Authorization`: a header name starting with X-Auth-",
            "routes[1].identity_token.ttl: a duration between 1s and 1h",
            "routes[1].identity_token.audience: required",
            "routes[2].identity_token.header: `X-Auth-Subject`",
        ],
    );
}
