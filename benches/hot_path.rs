//! Criterion micro-benches of the per-request hot path. Each guards one cost:
//! - `normalize/*`: path normalization must stay a single scan for already-normal paths (no
//!   allocation) and cheap for the ones it rewrites;
//! - `router/*`: route lookup over a realistic table (first match, linear) must stay far below the
//!   microsecond the whole request is allowed to cost;
//! - `headers/rewrite`: the trust-boundary header rewrite of a typical browser-sized request.
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use portcullis::auth::identity::Identity;
use portcullis::headers::{upstream_request_headers, ForwardCtx};
use std::hint::black_box;

fn normalize(c: &mut Criterion) {
    c.bench_function("normalize/already_normal", |b| {
        b.iter(|| portcullis::normalize::normalize(black_box("/api/v1/users/12345/orders")))
    });
    c.bench_function("normalize/rewrite", |b| {
        b.iter(|| portcullis::normalize::normalize(black_box("/api/v1/./users//12345/../%61rders")))
    });
}

fn router(c: &mut Criterion) {
    let mut yaml = String::from(
        "listeners: [{name: a, bind: 127.0.0.1:0}]\nupstreams: {e: {echo: true}}\nroutes:\n",
    );
    for i in 0..50 {
        yaml.push_str(&format!(
            "  - name: r{i}\n    match: {{ host: h{i}.example.com, path_prefix: /svc{i}/v1, methods: [GET, POST] }}\n    upstream: e\n    auth: none\n"
        ));
    }
    yaml.push_str(
        "  - name: last\n    match: { path_prefix: /api/users }\n    upstream: e\n    auth: none\n",
    );
    let snap = portcullis::config::load_str(
        std::path::Path::new("bench.yaml"),
        &yaml,
        None,
        portcullis::config::Mode::Check,
    )
    .expect("bench config compiles");
    c.bench_function("router/51_routes_last_match", |b| {
        b.iter(|| {
            snap.router
                .lookup(
                    black_box(Some("api.example.com")),
                    black_box("/api/users/7"),
                    &Method::GET,
                )
                .is_some()
        })
    });
}

fn headers(c: &mut Criterion) {
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig"),
        ("cookie", "session=abc; theme=dark"),
        ("x-auth-subject", "spoof"),
    ] {
        base.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    let id = Identity::anonymous();
    let rid = HeaderValue::from_static("0123456789abcdef");
    c.bench_function("headers/rewrite", |b| {
        b.iter_batched(
            || base.clone(),
            |mut h| {
                let ctx = ForwardCtx {
                    peer_ip: "192.0.2.1".parse().expect("ip"),
                    peer_value: &HeaderValue::from_static("192.0.2.1"),
                    peer_trusted: false,
                    client_ip: "192.0.2.1".parse().expect("ip"),
                    proto: "https",
                    host: Some("api.example.com"),
                    request_id: &rid,
                    identity: &id,
                    client_cert: None,
                    strip_credentials: true,
                    credential_cookies: &[],
                    upgrade: None,
                    forward_client_cert: false,
                };
                upstream_request_headers(&mut h, &ctx);
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, normalize, router, headers);
criterion_main!(benches);
