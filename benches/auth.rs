//! Criterion benches of the auth chain. Each guards one cost:
//! - `jwt/verify_cold/*`: a full verification (parse, header and claim checks, signature) per
//!   algorithm, cache off: must stay close to the signature's own cost (the crypto floor);
//! - `jwt/verify_cached`: a repeated token served from the verified-token cache: hash + lookup +
//!   denylist check, well under 2 µs;
//! - `scope/check`, `rate_limit/check`: the authorizers, tens of nanoseconds;
//! - `chain/*`: the whole chain for one request (token extraction, dispatch by issuer, verify or
//!   cache, scopes, rate limit).
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portcullis::auth::chain::evaluate;
use portcullis::auth::rate_limit::{LimitKey, LimitSpec, RateLimit};
use portcullis::auth::request::AuthRequest;
use portcullis::auth::scope::ScopeRule;
use portcullis::conn::{Activity, ConnInfo};
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
    let snap = portcullis::config::load_str(
        std::path::Path::new("bench.yaml"),
        &yaml,
        None,
        portcullis::config::Mode::Check,
    )
    .expect("bench config");
    Setup {
        snap,
        tokens,
        _dir: dir,
    }
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

fn jwt(c: &mut Criterion) {
    let s = setup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    let conn = conn();
    for (name, token) in &s.tokens {
        for (cache, label) in [(0, "chain/cache_off"), (100_000, "chain/cache_on")] {
            let route = s
                .snap
                .router
                .lookup(None, &format!("/{name}/{cache}"), &http::Method::GET)
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
            c.bench_function(&format!("{label}/{name}"), |b| {
                b.iter(|| {
                    rt.block_on(evaluate(black_box(&route.auth), &req, None))
                        .result
                        .is_ok()
                })
            });
        }
    }
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

criterion_group!(benches, jwt, authorizers);
criterion_main!(benches);
