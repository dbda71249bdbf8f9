//! Criterion benches of the auth chain. Each guards one cost:
//! - `jwt/verify_cold/*`: a full verification (parse, header and claim checks, signature) per
//!   algorithm, cache off: must stay close to the signature's own cost (the crypto floor);
//! - `jwt/verify_cached`: a repeated token served from the verified-token cache: hash + lookup +
//!   denylist check, well under 2 µs;
//! - `scope/check`, `rate_limit/check`: the authorizers, tens of nanoseconds;
//! - `chain/*`: the whole chain for one request (token extraction, dispatch by issuer, verify or
//!   cache, scopes, rate limit);
//! - `chain/*/oauth-*`: the same for a token of the built-in authorization server, checked by a
//!   `jwt` authenticator with `oauth_server: true` (keys from memory, plus the client check):
//!   must cost what the same algorithm's `chain/*/ALG` costs;
//! - `assertion/cached`, `assertion/signed`: a route's signed identity assertion for an identity
//!   seen before (must stay well under 1 us) and a new one (one ES256 signature).
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portcullis::auth::chain::evaluate;
use portcullis::auth::rate_limit::{LimitKey, LimitSpec, RateLimit};
use portcullis::auth::request::AuthRequest;
use portcullis::auth::scope::ScopeRule;
use portcullis::conn::{Activity, ConnInfo};
use portcullis::oauth::clients::ClientRow;
use portcullis::oauth::signing::{generate, SecretsKey, SigAlg};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

struct Setup {
    snap: portcullis::config::Snapshot,
    tokens: Vec<(&'static str, String)>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    portcullis::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let claims = serde_json::json!({"iss": "https://i.test", "aud": "gw", "sub": "user-1", "exp": now + 3600,
        "iat": now, "scope": "read:items write:items", "jti": "bench-1"});
    let mut yaml = String::from("listeners: [{name: p, bind: 127.0.0.1:0}]\nlogging: {audit: off}\nupstreams: {e: {echo: true}}\nrate_limits: {std: {rate: 1000000/s, burst: 1000000}}\nauthenticators:\n");
    let mut tokens = Vec::new();
    let kinds: [(&str, &'static rcgen::SignatureAlgorithm, Algorithm); 3] = [
        ("RS256", &rcgen::PKCS_RSA_SHA256, Algorithm::RS256),
        ("ES256", &rcgen::PKCS_ECDSA_P256_SHA256, Algorithm::ES256),
        ("EdDSA", &rcgen::PKCS_ED25519, Algorithm::EdDSA),
    ];
    for (name, sig, alg) in kinds {
        let kp = rcgen::KeyPair::generate_for(sig).expect("keygen");
        let pub_path = dir.path().join(format!("{name}.pem"));
        std::fs::write(&pub_path, kp.public_key_pem()).expect("write");
        let pem = kp.serialize_pem();
        let ek = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            _ => EncodingKey::from_ed_pem(pem.as_bytes()),
        }
        .expect("encoding key");
        let t = encode(&Header::new(alg), &claims, &ek).expect("sign");
        for cache in [0, 100_000] {
            yaml.push_str(&format!(
                "  {name}_{cache}: {{ type: jwt, issuer: https://i.test, audiences: [gw], algorithms: [{name}], public_key: {}, verify_cache: {{ max_entries: {cache} }} }}\n",
                pub_path.display()
            ));
        }
        tokens.push((name, t));
    }
    yaml.push_str("routes:\n");
    for (name, _) in &tokens {
        for cache in [0, 100_000] {
            yaml.push_str(&format!(
                "  - {{ name: r_{name}_{cache}, match: {{ path_prefix: /{name}/{cache} }}, upstream: e, auth: {{ any_of: [{name}_{cache}], scopes: [read:items], rate_limit: std }} }}\n"
            ));
        }
    }
    let snap = compile(&yaml);
    Setup {
        snap,
        tokens,
        _dir: dir,
    }
}

/// The bench's config, compiled as `check` does (nothing started).
fn compile(yaml: &str) -> portcullis::config::Snapshot {
    portcullis::config::load_str(
        std::path::Path::new("bench.yaml"),
        yaml,
        None,
        portcullis::config::Mode::Check,
    )
    .expect("bench config")
}

fn conn() -> ConnInfo {
    ConnInfo {
        listener: Arc::from("bench"),
        peer: "127.0.0.1:1".parse().expect("addr"),
        tls: false,
        sni: None,
        client_cert: None,
        activity: Arc::new(Activity::default()),
        peer_value: portcullis::conn::peer_value("127.0.0.1".parse().expect("ip")),
        slot: None,
    }
}

/// Benches the whole chain of the route at `path` of `snap` for a request bearing `token`
/// (which must pass), as `name`.
fn bench_chain(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    snap: &portcullis::config::Snapshot,
    path: &str,
    token: &str,
    name: &str,
) {
    let conn = conn();
    let route = snap
        .router
        .lookup(None, path, &http::Method::GET)
        .expect("route")
        .clone();
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).expect("hv"),
    );
    let req = AuthRequest {
        headers: &headers,
        query: None,
        conn: &conn,
        client_ip: "127.0.0.1".parse().expect("ip"),
    };
    // sanity: the token passes
    rt.block_on(evaluate(&route.auth, &req, None))
        .result
        .expect("token must pass");
    c.bench_function(name, |b| {
        b.iter(|| {
            rt.block_on(evaluate(black_box(&route.auth), &req, None))
                .result
                .is_ok()
        })
    });
}

const CACHES: [(usize, &str); 2] = [(0, "chain/cache_off"), (100_000, "chain/cache_on")];

fn jwt(c: &mut Criterion) {
    let s = setup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    for (name, token) in &s.tokens {
        for (cache, label) in CACHES {
            let path = format!("/{name}/{cache}");
            bench_chain(c, &rt, &s.snap, &path, token, &format!("{label}/{name}"));
        }
    }
}

/// A config with the built-in server signing with `alg`, routes whose `oauth_server: true`
/// authenticators have the verified-token cache off and on, a key and a client in memory (as
/// the store would have loaded them), and a token the server signed for that client.
fn oauth_setup(alg: SigAlg) -> (portcullis::config::Snapshot, String) {
    let yaml = format!(
        r#"
listeners: [{{name: p, bind: 127.0.0.1:0}}]
logging: {{audit: off}}
upstreams: {{e: {{echo: true}}}}
rate_limits: {{std: {{rate: 1000000/s, burst: 1000000}}}}
authenticators:
  own_0: {{ type: jwt, oauth_server: true, audiences: [gw], verify_cache: {{ max_entries: 0 }} }}
  own_100000: {{ type: jwt, oauth_server: true, audiences: [gw] }}
routes:
  - {{ name: r0, match: {{ path_prefix: /0 }}, upstream: e, auth: {{ any_of: [own_0], scopes: [read:items], rate_limit: std }} }}
  - {{ name: r1, match: {{ path_prefix: /100000 }}, upstream: e, auth: {{ any_of: [own_100000], scopes: [read:items], rate_limit: std }} }}
oauth_server: {{ issuer: "https://i.test", listener: p, signing: {{ algorithm: {} }} }}
"#,
        alg.as_str()
    );
    let snap = compile(&yaml);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let state = &snap.shared.oauth;
    let (secrets, _) = SecretsKey::generate().expect("secrets key");
    let row = generate(alg, &secrets, now - 60, now - 60).expect("signing key");
    state.keys.set_secrets(secrets);
    state.keys.put(&row).expect("key loads");
    let mut client = ClientRow::new("cl_bench", "bench");
    client.scopes = vec!["read:items".into(), "write:items".into()];
    client.audiences = vec!["gw".into()];
    client.created_at = now - 60;
    state.clients.put(client);
    let claims = serde_json::json!({"iss": "https://i.test", "sub": "cl_bench", "aud": "gw",
        "exp": now + 3600, "iat": now, "jti": "bench-oauth-1", "client_id": "cl_bench",
        "scope": "read:items write:items"});
    let token = state
        .keys
        .signer(now)
        .expect("an active key")
        .sign(claims.to_string().as_bytes())
        .expect("sign");
    (snap, token)
}

/// `chain/cache_off/oauth-ALG`, `chain/cache_on/oauth-ALG`: see the module documentation.
fn oauth(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    for alg in [SigAlg::RS256, SigAlg::ES256, SigAlg::EdDSA] {
        let (snap, token) = oauth_setup(alg);
        for (cache, label) in CACHES {
            let name = format!("{label}/oauth-{}", alg.as_str());
            bench_chain(c, &rt, &snap, &format!("/{cache}"), &token, &name);
        }
    }
}

/// `assertion/cached`: a route's `identity_token` for an identity seen before (a lookup; must
/// stay well under 1 us); `assertion/signed`: a new one (one ES256 signature).
fn assertion(c: &mut Criterion) {
    use portcullis::assertion::IdentityToken;
    use portcullis::auth::identity::{AuthMethod, Identity};
    use portcullis::config::raw::RawIdentityToken;
    let raw = RawIdentityToken {
        header: None,
        ttl: None,
        audience: portcullis::values::S("files".into()),
    };
    let mut issues = portcullis::config::issues::Issues::default();
    let token = IdentityToken::compile(&raw, "routes[0]", &mut issues).expect("identity_token");
    let keys = portcullis::oauth::signing::OwnKeys::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let signer = keys.keys().signer(now).expect("own key");
    let id = Identity {
        method: AuthMethod::ApiKey,
        subject: Some(Arc::from("billing")),
        scopes: Arc::from(vec!["read:items".to_string(), "write:items".to_string()]),
        key_id: Some(Arc::from("key_0123456789abcdef")),
        ..Identity::anonymous()
    };
    assert!(token
        .value(&id, &signer, "urn:portcullis:gateway", now)
        .is_some());
    c.bench_function("assertion/cached", |b| {
        b.iter(|| token.value(black_box(&id), &signer, "urn:portcullis:gateway", now))
    });
    let mut n = 0u64;
    c.bench_function("assertion/signed", |b| {
        b.iter(|| {
            // a new subject each time: never cached
            n += 1;
            let fresh = Identity {
                subject: Some(Arc::from(format!("s{n}").as_str())),
                ..id.clone()
            };
            token.value(black_box(&fresh), &signer, "urn:portcullis:gateway", now)
        })
    });
}

fn authorizers(c: &mut Criterion) {
    let rule = ScopeRule {
        all: vec!["read:items".into()],
        any: vec![],
    };
    let held = vec!["read:items".to_string(), "write:items".to_string()];
    c.bench_function("scope/check", |b| {
        b.iter(|| rule.check(black_box(&held), None).is_ok())
    });
    let limit = RateLimit::new(
        "bench",
        LimitSpec {
            count: 1_000_000_000,
            per: Duration::from_secs(1),
            burst: 1_000_000_000,
        },
        LimitKey::Identity,
    )
    .expect("limit");
    c.bench_function("rate_limit/check", |b| {
        b.iter(|| limit.check(black_box("jwt|https://i.test|user-1")).is_ok())
    });
}

criterion_group!(benches, jwt, oauth, assertion, authorizers);
criterion_main!(benches);
