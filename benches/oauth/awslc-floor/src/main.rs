//! awslc-floor SECONDS: sign a JWT-sized message with aws-lc-rs in a loop for SECONDS per
//! algorithm (ES256: ECDSA P-256 SHA-256 fixed-width; RS256: RSA-2048 PKCS#1 v1.5 SHA-256) and
//! print one JSON line: {"ES256": {"sign_per_s": .., "sign_us": ..}, "RS256": {...}}
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256};

fn run(secs: f64, mut sign: impl FnMut()) -> (f64, f64) {
    for _ in 0..50 {
        sign(); // warm-up
    }
    let limit = Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let mut n: u64 = 0;
    while t0.elapsed() < limit {
        for _ in 0..16 {
            sign();
        }
        n += 16;
    }
    let per_s = n as f64 / t0.elapsed().as_secs_f64();
    (per_s, 1e6 / per_s)
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    // header.payload of a typical client_credentials access token (about 250 bytes)
    let msg = b"eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImJlbmNoLWVzMjU2In0.eyJqdGkiOiJ3WV9XY1V4LW1JWjhEWlhyQjBHRngiLCJzdWIiOiJiZW5jaCIsImlhdCI6MTc5NjY3MjE1MSwiZXhwIjoxNzk2NjczMDUxLCJzY29wZSI6InJlYWQiLCJjbGllbnRfaWQiOiJiZW5jaCIsImlzcyI6Imh0dHA6Ly8xMjcuMC4wLjE6MzY1NTMiLCJhdWQiOiJodHRwczovL2FwaS5iZW5jaCJ9";
    let rng = SystemRandom::new();

    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key");
    let (es_s, es_us) = run(secs, || {
        std::hint::black_box(ec.sign(&rng, msg).expect("ES256 sign"));
    });

    let rsa = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA-2048 key");
    let mut sig = vec![0u8; rsa.public_modulus_len()];
    let (rs_s, rs_us) = run(secs, || {
        rsa.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig).expect("RS256 sign");
        std::hint::black_box(&sig);
    });

    println!(
        "{{\"ES256\": {{\"sign_per_s\": {es_s:.1}, \"sign_us\": {es_us:.3}}}, \
         \"RS256\": {{\"sign_per_s\": {rs_s:.1}, \"sign_us\": {rs_us:.3}}}}}"
    );
}
