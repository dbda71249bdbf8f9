//! JWT authentication end to end: tokens minted by PyJWT and jwcrypto for every supported
//! algorithm pass and the upstream sees the identity; a table of forged, malformed and invalid
//! tokens each get 401 with an RFC 6750 challenge and never reach the upstream; the RFC 7515 /
//! 7520 / 8037 examples verify at signature level.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;
use serde_json::{json, Value};

const ISS: &str = "https://issuer.test";
const AUD: &str = "api://gateway";
const ALGS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

struct Fixture {
    up: Upstream,
    gw: Gw,
    /// alg -> (private JWK, public JWK); kid = alg in lowercase
    keys: Vec<(String, Value, Value)>,
    /// a key that is not in the gateway's set
    attacker: (Value, Value),
    rsa_public_pem: String,
}

fn claims(extra: Value) -> Value {
    let now = unix_now();
    let mut c = json!({
        "iss": ISS, "aud": AUD, "sub": "user-1", "iat": now, "nbf": now - 10, "exp": now + 3600,
        "scope": "read:items write:items", "role": "admin", "jti": format!("jti-{now}")
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

async fn fixture() -> Fixture {
    let mut reqs: Vec<Value> = ALGS
        .iter()
        .map(|a| json!({"mode": "keygen", "alg": a, "kid": a.to_lowercase()}))
        .collect();
    reqs.push(json!({"mode": "keygen", "alg": "ES256", "kid": "es256"}));
    let out = mint(&Value::Array(reqs));
    let mut keys = Vec::new();
    for (alg, line) in ALGS.iter().zip(&out) {
        let v: Value = serde_json::from_str(line).unwrap();
        keys.push((alg.to_string(), v["private"].clone(), v["public"].clone()));
    }
    let att: Value = serde_json::from_str(&out[ALGS.len()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = json!({"keys": keys.iter().map(|(_, _, p)| p.clone()).collect::<Vec<_>>()});
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
    // the RSA public key as PEM, for the algorithm-confusion case
    let rsa_pub = &keys.iter().find(|k| k.0 == "RS256").unwrap().2;
    let pem = rsa_pem(rsa_pub);
    std::fs::write(dir.path().join("rsa.pub.pem"), &pem).unwrap();
    let up = Upstream::start().await;
    let yaml = format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ audit: off }}
limits: {{ max_header_bytes: 262144 }}
upstreams: {{ rec: {{ url: "{url}" }} }}
authenticators:
  corp:
    type: jwt
    issuer: {ISS}
    audiences: [{AUD}, other-aud]
    algorithms: [{algs}]
    jwks_file: {jwks}
    claims_to_headers: {{ X-Auth-Role: role }}
  rsa_only:
    type: jwt
    issuer: {ISS}
    audiences: [{AUD}]
    algorithms: [RS256]
    public_key: {pem}
    verify_cache: {{ max_entries: 0 }}
routes:
  - name: all-algs
    match: {{ path_prefix: /jwt }}
    upstream: rec
    auth: {{ any_of: [corp] }}
  - name: rsa
    match: {{ path_prefix: /rsa }}
    upstream: rec
    auth: {{ any_of: [rsa_only] }}
"#,
        url = up.url(),
        algs = ALGS.join(", "),
        jwks = dir.path().join("jwks.json").display(),
        pem = dir.path().join("rsa.pub.pem").display(),
    );
    let gw = Gw::start(&yaml).await;
    std::mem::forget(dir); // the gateway read the files at start; keep them for its lifetime
    Fixture {
        up,
        gw,
        keys,
        attacker: (att["private"].clone(), att["public"].clone()),
        rsa_public_pem: pem,
    }
}

/// SPKI PEM of an RSA public JWK, via Python's cryptography (already installed with PyJWT).
fn rsa_pem(jwk: &Value) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys,json;from jwcrypto import jwk;k=jwk.JWK(**json.loads(sys.argv[1]));sys.stdout.write(k.export_to_pem().decode())",
            &jwk.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl Fixture {
    fn key(&self, alg: &str) -> &Value {
        &self.keys.iter().find(|k| k.0 == alg).unwrap().1
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        plain_client()
            .get(format!("{}{path}", self.gw.http("plain")))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
    }
}

fn sign_req(lib: &str, alg: &str, key: &Value, header: Value, claims: Value) -> Value {
    json!({"mode": "sign", "lib": lib, "alg": alg, "key": key, "header": header, "claims": claims})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_from_two_independent_libraries_passes() {
    let f = fixture().await;
    let mut reqs = Vec::new();
    for alg in ALGS {
        for lib in ["pyjwt", "jwcrypto"] {
            reqs.push(sign_req(
                lib,
                alg,
                f.key(alg),
                json!({"kid": alg.to_lowercase()}),
                claims(json!({})),
            ));
        }
    }
    let tokens = mint(&Value::Array(reqs));
    for (i, token) in tokens.iter().enumerate() {
        let (alg, lib) = (ALGS[i / 2], ["pyjwt", "jwcrypto"][i % 2]);
        let r = f.get("/jwt/items", token).await;
        assert_eq!(r.status(), 200, "{alg} from {lib}");
        let seen = f.up.last();
        assert_eq!(seen.header("x-auth-method"), Some("jwt"), "{alg}");
        assert_eq!(seen.header("x-auth-subject"), Some("user-1"));
        assert_eq!(seen.header("x-auth-issuer"), Some(ISS));
        assert_eq!(seen.header("x-auth-scopes"), Some("read:items write:items"));
        assert_eq!(seen.header("x-auth-role"), Some("admin"));
        assert_eq!(
            seen.header("authorization"),
            None,
            "the credential must not be forwarded"
        );
    }
    // served from the verified-token cache: same answer
    let r = f.get("/jwt/again", &tokens[0]).await;
    assert_eq!(r.status(), 200);
    // an aud array that contains ours, and a case-insensitive scheme with several spaces
    let t = &mint(&json!([sign_req(
        "pyjwt",
        "ES256",
        f.key("ES256"),
        json!({"kid": "es256"}),
        claims(json!({"aud": ["someone-else", AUD]}))
    )]))[0];
    let r = plain_client()
        .get(format!("{}/jwt/x", f.gw.http("plain")))
        .header("authorization", format!("bEARER   {t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_invalid_tokens_are_refused_before_the_upstream() {
    let f = fixture().await;
    let now = unix_now();
    let es = f.key("ES256");
    let kid = json!({"kid": "es256"});
    let mut reqs = vec![
        (
            "expired",
            sign_req(
                "pyjwt",
                "ES256",
                es,
                kid.clone(),
                claims(json!({"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200})),
            ),
        ),
        (
            "not yet valid",
            sign_req(
                "pyjwt",
                "ES256",
                es,
                kid.clone(),
                claims(json!({"nbf": now + 3600})),
            ),
        ),
        (
            "issued in the future",
            sign_req(
                "jwcrypto",
                "ES256",
                es,
                kid.clone(),
                claims(json!({"iat": now + 3600})),
            ),
        ),
        (
            "wrong iss",
            sign_req(
                "jwcrypto",
                "ES256",
                es,
                kid.clone(),
                claims(json!({"iss": "https://evil.test"})),
            ),
        ),
        (
            "wrong aud",
            sign_req(
                "pyjwt",
                "ES256",
                es,
                kid.clone(),
                claims(json!({"aud": "api://other"})),
            ),
        ),
        (
            "no exp",
            sign_req(
                "jwcrypto",
                "ES256",
                es,
                kid.clone(),
                claims(json!({"exp": null})),
            ),
        ),
        (
            "string exp",
            sign_req(
                "jwcrypto",
                "ES256",
                es,
                kid.clone(),
                claims(json!({"exp": "9999999999"})),
            ),
        ),
        (
            "string nbf",
            sign_req(
                "jwcrypto",
                "ES256",
                es,
                kid.clone(),
                claims(json!({"nbf": "0"})),
            ),
        ),
        (
            "no sub",
            sign_req(
                "jwcrypto",
                "ES256",
                es,
                kid.clone(),
                claims(json!({"sub": null})),
            ),
        ),
        (
            "numeric sub",
            sign_req(
                "jwcrypto",
                "ES256",
                es,
                kid.clone(),
                claims(json!({"sub": 42})),
            ),
        ),
        (
            "numeric aud",
            sign_req(
                "jwcrypto",
                "ES256",
                es,
                kid.clone(),
                claims(json!({"aud": 7})),
            ),
        ),
        (
            "kid path traversal",
            sign_req(
                "jwcrypto",
                "ES256",
                es,
                json!({"kid": "../../../etc/passwd"}),
                claims(json!({})),
            ),
        ),
        (
            "kid with quotes",
            sign_req(
                "jwcrypto",
                "ES256",
                es,
                json!({"kid": "es256\" OR \"1\"=\"1"}),
                claims(json!({})),
            ),
        ),
        (
            "unknown key, no kid",
            sign_req(
                "jwcrypto",
                "ES256",
                &f.attacker.0,
                json!({}),
                claims(json!({})),
            ),
        ),
        (
            "attacker key under our kid",
            sign_req(
                "jwcrypto",
                "ES256",
                &f.attacker.0,
                kid.clone(),
                claims(json!({})),
            ),
        ),
        (
            "jku pointing elsewhere",
            sign_req(
                "jwcrypto",
                "ES256",
                &f.attacker.0,
                json!({"kid": "attacker", "jku": "https://evil.test/jwks.json"}),
                claims(json!({})),
            ),
        ),
        (
            "embedded jwk",
            sign_req(
                "jwcrypto",
                "ES256",
                &f.attacker.0,
                json!({"kid": "attacker", "jwk": f.attacker.1}),
                claims(json!({})),
            ),
        ),
        (
            "embedded jwk under our kid",
            sign_req(
                "jwcrypto",
                "ES256",
                &f.attacker.0,
                json!({"kid": "es256", "jwk": f.attacker.1}),
                claims(json!({})),
            ),
        ),
        (
            "unknown crit",
            sign_req(
                "pyjwt",
                "ES256",
                es,
                json!({"kid": "es256", "crit": ["x-custom"], "x-custom": 1}),
                claims(json!({})),
            ),
        ),
        (
            "crit naming a registered header",
            sign_req(
                "pyjwt",
                "ES256",
                es,
                json!({"kid": "es256", "crit": ["exp"], "exp": 1}),
                claims(json!({})),
            ),
        ),
        (
            "b64 false",
            sign_req(
                "pyjwt",
                "ES256",
                es,
                json!({"kid": "es256", "b64": false, "crit": ["b64"]}),
                claims(json!({})),
            ),
        ),
        (
            "ES384 key used for ES256",
            sign_req(
                "jwcrypto",
                "ES384",
                f.key("ES384"),
                json!({"kid": "es256"}),
                claims(json!({})),
            ),
        ),
    ];
    let good = sign_req("pyjwt", "ES256", es, kid.clone(), claims(json!({})));
    reqs.push(("(good base)", good));
    let tokens = mint(&Value::Array(reqs.iter().map(|r| r.1.clone()).collect()));
    let mut cases: Vec<(String, String)> = reqs
        .iter()
        .zip(&tokens)
        .filter(|(r, _)| r.0 != "(good base)")
        .map(|(r, t)| (r.0.to_string(), t.clone()))
        .collect();
    let good = tokens.last().unwrap().clone();
    let parts: Vec<&str> = good.split('.').collect();
    let forged_payload = b64url(claims(json!({"sub": "admin"})).to_string().as_bytes());
    let mut sig = parts[2].to_owned();
    let flip = if sig.ends_with('A') { 'Q' } else { 'A' };
    sig.pop();
    sig.push(flip);
    let hs_confusion = {
        // HS256 keyed with the RSA public key's PEM text, kid of the RSA key
        let h = b64url(br#"{"alg":"HS256","typ":"JWT","kid":"rs256"}"#);
        let p = b64url(claims(json!({})).to_string().as_bytes());
        let input = format!("{h}.{p}");
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, f.rsa_public_pem.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", b64url(tag.as_ref()))
    };
    let p = b64url(claims(json!({})).to_string().as_bytes());
    cases.extend([
        (
            "tampered payload".to_string(),
            format!("{}.{forged_payload}.{}", parts[0], parts[2]),
        ),
        (
            "tampered signature".to_string(),
            format!("{}.{}.{sig}", parts[0], parts[1]),
        ),
        (
            "alg none".to_string(),
            format!("{}.{p}.", b64url(br#"{"alg":"none"}"#)),
        ),
        (
            "alg nOnE with a signature".to_string(),
            format!("{}.{p}.{}", b64url(br#"{"alg":"nOnE"}"#), parts[2]),
        ),
        (
            "alg NONE".to_string(),
            format!("{}.{p}.e30", b64url(br#"{"alg":"NONE","kid":"es256"}"#)),
        ),
        (
            "HS256 keyed with the RSA public key".to_string(),
            hs_confusion.clone(),
        ),
        (
            "ECDSA r = s = 0".to_string(),
            format!(
                "{}.{p}.{}",
                b64url(br#"{"alg":"ES256","kid":"es256"}"#),
                b64url(&[0u8; 64])
            ),
        ),
        ("a 4th segment".to_string(), format!("{good}.e30")),
        (
            "padded base64".to_string(),
            format!("{}==.{}.{}", parts[0], parts[1], parts[2]),
        ),
        ("padded signature".to_string(), format!("{good}==")),
        (
            "standard alphabet".to_string(),
            format!("{}.{}.{}+/", parts[0], parts[1], parts[2]),
        ),
        ("garbage".to_string(), "not-a-jwt".to_string()),
        (
            "100 KiB token".to_string(),
            format!("{}.{}.{}", parts[0], "A".repeat(100 * 1024), parts[2]),
        ),
        (
            "header not JSON".to_string(),
            format!("{}.{}.{}", b64url(b"{alg:"), parts[1], parts[2]),
        ),
    ]);
    let before = f.up.count();
    for (name, token) in &cases {
        let r = f.get("/jwt/secret", token).await;
        assert_eq!(r.status(), 401, "{name}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.starts_with("Bearer realm=\"portcullis\", error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token", "{name}");
        let text = body.to_string();
        assert!(
            !text.contains(&token[..token.len().min(40)]),
            "{name}: the response echoes the token"
        );
    }
    // the RS256-only route refuses HMAC outright (alg not allowed), and takes a real RS256 token
    let r = f.get("/rsa/x", &hs_confusion).await;
    assert_eq!(r.status(), 401);
    assert_eq!(f.up.count(), before, "a refused token reached the upstream");
    let rs = &mint(&json!([sign_req(
        "pyjwt",
        "RS256",
        f.key("RS256"),
        json!({}),
        claims(json!({}))
    )]))[0];
    assert_eq!(f.get("/rsa/x", rs).await.status(), 200);
    // the good base token itself passes, so the cases above failed for their own reason
    assert_eq!(f.get("/jwt/ok", &good).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_duplicated_credentials() {
    let f = fixture().await;
    let c = plain_client();
    let r = c
        .get(format!("{}/jwt/x", f.gw.http("plain")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"portcullis\""
    );
    let t = &mint(&json!([sign_req(
        "pyjwt",
        "ES256",
        f.key("ES256"),
        json!({"kid": "es256"}),
        claims(json!({}))
    )]))[0];
    let r = c
        .get(format!("{}/jwt/x", f.gw.http("plain")))
        .header("authorization", format!("Bearer {t}"))
        .header("authorization", format!("Bearer {t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // another scheme is not a bearer token: no credential for this route
    let r = c
        .get(format!("{}/jwt/x", f.gw.http("plain")))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(f.up.count(), 0);
}

#[test]
fn rfc_examples_verify_at_signature_level() {
    let lines = mint(&json!({"mode": "vectors"}));
    let vectors: Vec<Value> = serde_json::from_str(&lines[0]).unwrap();
    let mut checked = Vec::new();
    for v in &vectors {
        let alg = v["alg"].as_str().unwrap();
        let name = v["name"].as_str().unwrap();
        if !ALGS.contains(&alg) {
            continue; // ES512 is not supported by jsonwebtoken
        }
        let mut jwk = v["jwk"].clone();
        jwk.as_object_mut().unwrap().remove("use");
        let set = json!({"keys": [jwk]});
        let (keys, skipped) =
            portcullis::auth::jwt::keyset::KeySet::from_jwks(set.to_string().as_bytes(), true)
                .unwrap();
        assert!(skipped.is_empty(), "{name}: {skipped:?}");
        let token = v["token"].as_str().unwrap();
        if !alg.starts_with("HS") {
            // public keys are parsed once into aws-lc (PKCS#1 DER built from n/e, EC points, raw Ed25519)
            let a: jsonwebtoken::Algorithm = alg.parse().unwrap();
            assert!(
                keys.keys[0].parsed_for(a).is_some(),
                "{name}: key not pre-parsed"
            );
        }
        assert_eq!(
            portcullis::auth::jwt::verify::signature_valid(&keys, token),
            Ok(true),
            "{name}"
        );
        // one flipped signature bit fails
        let mut bad = token.to_owned();
        let last = bad.pop().unwrap();
        bad.push(if last == 'A' { 'B' } else { 'A' });
        assert_eq!(
            portcullis::auth::jwt::verify::signature_valid(&keys, &bad),
            Ok(false),
            "{name} tampered"
        );
        checked.push(name.to_owned());
    }
    for want in [
        "rfc7515-A.1",
        "rfc7515-A.2",
        "rfc7515-A.3",
        "rfc8037-A.4",
        "rfc7520-4.1",
        "rfc7520-4.2",
        "rfc7520-4.4",
    ] {
        assert!(
            checked.iter().any(|c| c == want),
            "{want} was not checked: {checked:?}"
        );
    }
}
