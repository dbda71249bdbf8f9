//! Criterion: the per-request API key lookup (checksum, SHA-256, one map probe, expiry/rotation
//! checks) with 1 000 and with 1 000 000 keys loaded. Guards "cost independent of the key count"
//! and the checksum pre-check that refuses a mistyped key without touching the map.
use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::keys::{generate_secret, Env, KeyRing, KeyRow};
use std::hint::black_box;

fn ring(n: usize) -> (KeyRing, String) {
    let ring = KeyRing::default();
    let mut probe = String::new();
    for i in 0..n {
        let secret = generate_secret(Env::Live);
        if i == n / 2 {
            probe = secret.clone();
        }
        ring.put(KeyRow {
            name: "bench".into(),
            subject: Some(format!("client-{i}")),
            scopes: vec!["read".into()],
            ..KeyRow::new(format!("key_{i:016}"), &secret)
        });
    }
    (ring, probe)
}

fn lookups(c: &mut Criterion) {
    for n in [1_000usize, 1_000_000] {
        let (ring, probe) = ring(n);
        c.bench_function(&format!("api_key/lookup/{n}_keys"), |b| {
            b.iter(|| ring.lookup(black_box(&probe), 1).is_ok())
        });
        let mut bad = probe.clone().into_bytes();
        bad[20] = if bad[20] == b'a' { b'b' } else { b'a' };
        let bad = String::from_utf8(bad).expect("ascii");
        c.bench_function(&format!("api_key/bad_checksum/{n}_keys"), |b| {
            b.iter(|| ring.lookup(black_box(&bad), 1).is_err())
        });
    }
}

criterion_group!(benches, lookups);
criterion_main!(benches);
