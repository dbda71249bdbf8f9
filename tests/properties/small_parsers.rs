//! Smaller parsers.

use crate::common::*;
use crate::support::*;
use portcullis::auth::jwt::keyset::KeySet;
use portcullis::auth::request::CredentialSource;
use proptest::prelude::*;
use std::path::Path;

proptest! {
    #![proptest_config(cfg(1024))]

    #[test]
    fn durations_match_reference(s in prop_oneof![
        "[ ]?[0-9]{0,21}(ms|s|m|h|d|x|)[ ]?",
        "\\PC{0,12}",
    ]) {
        prop_assert_eq!(portcullis::values::parse_duration(&s).ok(), ref_duration(&s), "{:?}", s);
    }

    /// One grammar for the config, the admin API and the CLI: any spelling of a unit, spaces
    /// around the parts, counts up to nine digits; the canonical form parses back to the same.
    #[test]
    fn rates_round_trip(count in prop_oneof![1u32..=999_999_999, 1u32..], unit in 0usize..6, spaces in any::<bool>()) {
        let (u, per) = [("s", 1), ("sec", 1), ("m", 60), ("min", 60), ("h", 3600), ("hour", 3600)][unit];
        let text = if spaces { format!(" {count} / {u} ") } else { format!("{count}/{u}") };
        match portcullis::values::parse_rate(&text) {
            Ok(r) => {
                prop_assert!(count <= portcullis::values::MAX_RATE_COUNT);
                prop_assert_eq!(r.count, count);
                prop_assert_eq!(r.per, std::time::Duration::from_secs(per));
                prop_assert_eq!(portcullis::values::parse_rate(&r.to_string()), Ok(r));
            }
            Err(_) => prop_assert!(count > portcullis::values::MAX_RATE_COUNT, "{:?}", text),
        }
    }

    #[test]
    fn rate_and_interpolation_never_panic(s in "\\PC{0,24}") {
        let _ = portcullis::values::parse_rate(&s);
        let env = |n: &str| (n == "X").then(|| "v".to_owned());
        if let Ok(out) = portcullis::values::interpolate_with(&s, env) {
            if !s.contains('$') {
                prop_assert_eq!(out, s);
            }
        }
    }

    /// Every quota a config or an API key can name either is refused at compile time or counts
    /// requests without panicking (governor multiplies the interval by the burst).
    #[test]
    fn rate_limits_never_panic(
        count in prop_oneof![1u32..10, Just(u32::MAX), 1u32..],
        per in prop::sample::select(vec![1u64, 60, 3600]),
        burst in prop_oneof![1u32..10, Just(u32::MAX), 1u32..],
        n in 1usize..4,
    ) {
        let spec = portcullis::auth::rate_limit::LimitSpec {
            count,
            per: std::time::Duration::from_secs(per),
            burst,
        };
        if let Ok(l) = portcullis::auth::rate_limit::RateLimit::new("p", spec, portcullis::auth::rate_limit::LimitKey::Ip) {
            for _ in 0..n {
                let _ = l.check("ip|127.0.0.1");
            }
        }
    }

    #[test]
    fn rfc3339_round_trips(secs in 0i64..253_402_300_799, micros in 0u32..1_000_000) {
        let t = portcullis::clock::rfc3339(secs, micros);
        prop_assert_eq!(portcullis::clock::parse_rfc3339(&t), Some(secs), "{}", t);
    }

    #[test]
    fn rfc3339_parse_never_panics(s in prop_oneof![
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,9})?(Z|z|[+-][0-9]{2}:[0-9]{2}|[+-][0-9:]{0,6}|\\PC{0,3})",
        "\\PC{0,30}",
    ]) {
        let _ = portcullis::clock::parse_rfc3339(&s);
    }

    #[test]
    fn sha256_round_trips(b in any::<[u8; 32]>(), upper in any::<bool>()) {
        let hex = portcullis::digest::hex_lower(&b);
        let hex = if upper { hex.to_ascii_uppercase() } else { hex };
        prop_assert_eq!(portcullis::digest::parse_sha256(&format!("sha256:{hex}")), Some(b));
    }

    #[test]
    fn small_config_parsers_never_panic(s in "\\PC{0,40}") {
        let _ = portcullis::digest::parse_sha256(&s);
        let _ = portcullis::digest::parse_sha256(&format!("sha256:{s}"));
        let _ = portcullis::router::HostMatch::parse(&s);
        let _ = portcullis::router::PathMatch::exact(&s);
        let _ = portcullis::router::PathMatch::prefix(&s);
        let _ = portcullis::auth::rate_limit::LimitKey::parse(&s);
        let _ = CredentialSource::parse(&s);
        let _ = portcullis::telemetry::audit::AuditTarget::parse(&s, Path::new("."));
        let l = portcullis::config::locate::Locator::new(&s);
        let _ = l.find(&s);
    }

    /// JWK Sets come from the network (a remote JWKS): any JSON never panics.
    #[test]
    fn jwks_parsing_never_panics(doc in prop_oneof![
        "\\{\"keys\":\\[(\\{(\"(kty|kid|alg|use|key_ops|n|e|crv|x|y|k)\":(\"[A-Za-z0-9_-]{0,12}\"|[0-9]{1,3}|null|\\[\\]),?){0,6}\\},?){0,3}\\]\\}",
        "\\PC{0,40}",
    ], oct in any::<bool>()) {
        let _ = KeySet::from_jwks(doc.as_bytes(), oct);
    }

    /// Client certificate fields come from the client (after chain verification); arbitrary DER
    /// never panics the field extraction.
    #[test]
    fn client_cert_info_never_panics(der in prop::collection::vec(any::<u8>(), 0..300)) {
        let c = portcullis::conn::client_cert_info(&rustls_pki_types::CertificateDer::from(der));
        prop_assert_eq!(c.sha256.len(), 64);
    }
}

#[test]
fn client_cert_info_survives_mutated_certificates() {
    let pki = Pki::new();
    let pem = pki.read("client.crt");
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(&pem)
            .unwrap()
            .to_vec()
    };
    let good =
        portcullis::conn::client_cert_info(&rustls_pki_types::CertificateDer::from(der.clone()));
    assert!(good.subject.contains("CN=alice"), "{}", good.subject);
    let mut runner = proptest::test_runner::TestRunner::new(cfg(1024));
    runner
        .run(
            &(any::<usize>(), any::<u8>(), 0u8..2),
            |(pos, byte, edit)| {
                let mut d = der.clone();
                let p = pos % d.len();
                if edit == 0 {
                    d[p] = byte;
                } else {
                    d.truncate(p);
                }
                let _ =
                    portcullis::conn::client_cert_info(&rustls_pki_types::CertificateDer::from(d));
                Ok(())
            },
        )
        .unwrap();
}

proptest! {
    #![proptest_config(cfg(2048))]

    /// A return target the sign-in pages accept stays on this host under the WHATWG URL parser
    /// browsers use (reqwest's `Url`), and its path never becomes scheme-relative.
    #[test]
    fn accepted_return_targets_stay_on_the_host(s in prop_oneof![
        "[/\\\\.%2eE:a\t\n ?#]{0,12}",
        "/[a-z0-9/.%?=&#\\\\]{0,16}",
        "\\PC{0,16}",
    ]) {
        if let Some(t) = portcullis::return_target::safe_return(&s) {
            let base = reqwest::Url::parse("https://gw.invalid/app/").unwrap();
            let u = base.join(t).unwrap();
            prop_assert_eq!(u.host_str(), Some("gw.invalid"), "{:?}", s);
            prop_assert!(!u.path().starts_with("//"), "{:?} -> {}", s, u);
            prop_assert!(!u.path().split('/').any(|seg| seg == ".."), "{:?} -> {}", s, u);
        }
    }

    /// Plain paths pass as they are.
    #[test]
    fn plain_return_paths_pass(segs in proptest::collection::vec("[a-z0-9_-]{1,8}", 0..5), q in "(\\?[a-z]=[a-z0-9/]{0,6})?") {
        let t = format!("/{}{q}", segs.join("/"));
        prop_assert_eq!(portcullis::return_target::safe_return(&t), Some(t.as_str()));
    }
}
