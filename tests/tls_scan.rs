//! TLS quality of a listener as a third-party scanner sees it: sslyze (PyPI, pinned in
//! tests/interop/requirements-sslyze.txt, installed by .ci/run into its own venv because it pins
//! an older `cryptography` than jwcrypto accepts) scans a live TLS listener. No SSL 2/3, TLS 1.0
//! or 1.1; only forward-secret AEAD suites; none of Heartbleed, ROBOT, CCS injection, compression
//! or client-initiated renegotiation.
//!
//! Last recorded result (2026-11-28, sslyze 6.3.1): TLS 1.2 ECDHE-ECDSA with CHACHA20-POLY1305,
//! AES-256-GCM and AES-128-GCM; TLS 1.3 CHACHA20-POLY1305, AES-256-GCM, AES-128-GCM; curves
//! X25519, P-256, P-384; every vulnerability check negative; TLS_FALLBACK_SCSV supported.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;
use serde_json::Value;

fn sslyze_python() -> String {
    std::env::var("PORTCULLIS_SSLYZE_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/portcullis/sslyze/bin/python",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into())
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslyze_finds_no_weak_protocol_cipher_or_vulnerability() {
    let pki = Pki::new();
    let gw = Gw::start(&format!(
        "listeners:\n  - name: tls\n    bind: 127.0.0.1:0\n    tls: {{ cert: \"{}\", key: \"{}\" }}\nlogging: {{ audit: off }}\nupstreams: {{ echo: {{ echo: true }} }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: echo, auth: none }}\n",
        pki.path("server.crt"),
        pki.path("server.key")
    ))
    .await;
    let target = gw.addr("tls").to_string();
    let out_file = gw.dir.path().join("sslyze.json");
    let py = sslyze_python();
    let out = {
        let (py2, target, out_file) = (py.clone(), target.clone(), out_file.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(&py2)
                .args(["-m", "sslyze", "--quiet"])
                .arg(format!("--json_out={}", out_file.display()))
                .arg(&target)
                .output()
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            panic!("sslyze is not installed at {py} (.ci/run installs it: python3 -m venv ~/.cache/portcullis/sslyze && ~/.cache/portcullis/sslyze/bin/pip install -r tests/interop/requirements-sslyze.txt): {e}")
        })
    };
    let report: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap_or_else(|e| {
        panic!(
            "sslyze wrote no report ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }))
    .unwrap();
    let r = &report["server_scan_results"][0]["scan_result"];
    let accepted = |scan: &str| -> Vec<String> {
        assert_eq!(r[scan]["status"], "COMPLETED", "{scan}: {}", r[scan]);
        r[scan]["result"]["accepted_cipher_suites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cipher_suite"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        assert!(
            accepted(old).is_empty(),
            "{old} accepted: {:?}",
            accepted(old)
        );
    }
    let tls12 = accepted("tls_1_2_cipher_suites");
    assert!(!tls12.is_empty());
    for c in &tls12 {
        assert!(
            c.starts_with("TLS_ECDHE_") && (c.contains("_GCM_") || c.contains("CHACHA20_POLY1305")),
            "TLS 1.2 suite without forward secrecy or AEAD: {c}"
        );
    }
    let tls13 = accepted("tls_1_3_cipher_suites");
    assert!(!tls13.is_empty());
    for c in &tls13 {
        assert!(
            c.contains("_GCM_") || c.contains("CHACHA20_POLY1305"),
            "TLS 1.3 suite: {c}"
        );
    }
    let res = |scan: &str, field: &str| -> Value {
        assert_eq!(r[scan]["status"], "COMPLETED", "{scan}: {}", r[scan]);
        r[scan]["result"][field].clone()
    };
    assert_eq!(res("heartbleed", "is_vulnerable_to_heartbleed"), false);
    assert_eq!(
        res("openssl_ccs_injection", "is_vulnerable_to_ccs_injection"),
        false
    );
    assert_eq!(res("tls_compression", "supports_compression"), false);
    assert_eq!(res("tls_fallback_scsv", "supports_fallback_scsv"), true);
    assert_eq!(
        res(
            "session_renegotiation",
            "is_vulnerable_to_client_renegotiation_dos"
        ),
        false
    );
    let robot = res("robot", "robot_result");
    assert!(
        robot.as_str().unwrap().starts_with("NOT_VULNERABLE"),
        "ROBOT: {robot}"
    );
    eprintln!("sslyze: TLS 1.2 {tls12:?}; TLS 1.3 {tls13:?}; ROBOT {robot}");
}
