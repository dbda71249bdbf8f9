//! TLS and mTLS on real sockets: handshake outcomes for good, foreign, expired and revoked client
//! certificates, what the upstream learns from a verified one, and ALPN.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;

fn config(pki: &Pki, up: &Upstream, mode: &str, crl: bool) -> String {
    let crl = if crl {
        format!("\n        crl: {}", pki.path("ca.crl"))
    } else {
        String::new()
    };
    format!(
        r#"
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      cert: {cert}
      key: {key}
      client_auth:
        mode: {mode}
        ca: {ca}{crl}
upstreams:
  rec: {{ url: "{url}" }}
authenticators:
  cc: {{ type: mtls }}
routes:
  - name: open
    match: {{ path_prefix: /open }}
    upstream: rec
    auth: none
  - name: needs-cert
    match: {{ path_prefix: /cert }}
    upstream: rec
    auth: {{ require_client_cert: true }}
  - name: mtls-identity
    match: {{ path_prefix: /who }}
    upstream: rec
    auth: {{ any_of: [cc] }}
"#,
        cert = pki.path("server.crt"),
        key = pki.path("server.key"),
        ca = pki.path("ca.crt"),
        url = up.url(),
    )
}

#[tokio::test]
async fn mtls_required_refuses_bad_certificates_at_the_handshake() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&pki, &up, "required", true)).await;
    let url = format!("{}/open/x", gw.https("public"));

    for ident in [
        None,
        Some("other-client"),
        Some("expired-client"),
        Some("revoked-client"),
    ] {
        let res = tls_client(&pki, ident, false).get(&url).send().await;
        assert!(
            res.is_err(),
            "{ident:?} must fail the handshake, got {res:?}"
        );
    }
    assert_eq!(up.count(), 0, "no refused client may reach the upstream");

    let res = tls_client(&pki, Some("client"), false)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen = up.last();
    assert_eq!(
        seen.header("x-client-cert-subject"),
        Some("CN=alice, O=Acme")
    );
    let sha = seen.header("x-client-cert-sha256").unwrap();
    assert_eq!(sha.len(), 64);
    assert!(sha.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
}

#[tokio::test]
async fn mtls_optional_lets_routes_decide() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&pki, &up, "optional", false)).await;
    let anon = tls_client(&pki, None, false);
    let alice = tls_client(&pki, Some("client"), false);

    // no certificate: the open route passes, the route that needs one answers 403
    let r = anon
        .get(format!("{}/open", gw.https("public")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().header("x-client-cert-subject"), None);
    let before = up.count();
    let r = anon
        .get(format!("{}/cert/x", gw.https("public")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "client_certificate_required");
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    let r = anon
        .get(format!("{}/who", gw.https("public")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        up.count(),
        before,
        "denied requests must not reach the upstream"
    );

    // with a certificate: both pass, and the mtls authenticator names the subject
    let r = alice
        .get(format!("{}/cert/x", gw.https("public")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = alice
        .get(format!("{}/who", gw.https("public")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header("x-auth-method"), Some("mtls"));
    assert_eq!(seen.header("x-auth-subject"), Some("alice")); // subject_from: cn (default)

    // a certificate from another CA is still refused at the handshake
    let eve = tls_client(&pki, Some("other-client"), false);
    assert!(eve
        .get(format!("{}/open", gw.https("public")))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn alpn_serves_h2_and_http1_on_the_same_route() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&pki, &up, "none", false)).await;
    let url = format!("{}/open/alpn", gw.https("public"));

    let r = tls_client(&pki, None, false)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let r = tls_client(&pki, None, true).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    // both reached the upstream over its own HTTP/1.1 pool, with the same path
    let reqs = up.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|s| s.uri == "/open/alpn"));

    // the same with curl, a client we did not write
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let args = vec![
            "-sS".to_string(),
            "--max-time".into(),
            "20".into(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_version} %{http_code}".into(),
            flag.into(),
            "--cacert".into(),
            pki.path("ca.crt"),
            "--resolve".into(),
            format!("localhost:{}:127.0.0.1", gw.addr("public").port()),
            url.clone(),
        ];
        let out = curl(args).await;
        assert_eq!(out, format!("{want} 200"), "curl {flag}");
    }
}

#[tokio::test]
async fn sni_and_host_must_agree() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = Gw::start(&config(&pki, &up, "none", false)).await;
    let c = tls_client(&pki, None, true);
    let r = c
        .get(format!("{}/open", gw.https("public")))
        .header("host", "other.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    assert_eq!(up.count(), 0);
}
