//! The `mtls` authenticator's options on real TLS connections: `identities` (an allow-list
//! matching SPIFFE URI SANs, DNS SANs with `*.` wildcards and common names, each giving the
//! certificate its scopes), `subject_from`, the `X-Client-Cert-San` header, and the per-route
//! `forward_client_cert` (Envoy's `X-Forwarded-Client-Cert`). Certificates are made per run
//! (tests/common `Pki`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;
use serde_json::Value;

fn config(pki: &Pki, up: &Upstream) -> String {
    format!(
        r#"
listeners:
  - name: public
    bind: 127.0.0.1:0
    tls:
      cert: {cert}
      key: {key}
      client_auth: {{ mode: optional, ca: {ca} }}
upstreams:
  rec: {{ url: "{url}" }}
authenticators:
  any_cert: {{ type: mtls }}
  services:
    type: mtls
    subject_from: san_uri
    identities:
      - {{ san_uri: "spiffe://corp/billing", scopes: [read:users, write:users] }}
      - {{ san_dns: "*.svc.corp.example", scopes: [read:users] }}
      - {{ subject_cn: reporting, scopes: [read:reports] }}
  by_dns:
    type: mtls
    subject_from: san_dns
    identities:
      - {{ san_dns: "*.svc.corp.example", scopes: [read:users] }}
  by_dn: {{ type: mtls, subject_from: dn }}
routes:
  - {{ name: users-read, match: {{ path_prefix: /users/read }}, upstream: rec, auth: {{ any_of: [services], scopes: [read:users] }} }}
  - {{ name: users-write, match: {{ path_prefix: /users/write }}, upstream: rec, auth: {{ any_of: [services], scopes: [write:users] }} }}
  - {{ name: reports, match: {{ path_prefix: /reports }}, upstream: rec, auth: {{ any_of: [services], scopes: [read:reports] }} }}
  - {{ name: dns, match: {{ path_prefix: /dns }}, upstream: rec, auth: {{ any_of: [by_dns] }} }}
  - {{ name: dn, match: {{ path_prefix: /dn }}, upstream: rec, auth: {{ any_of: [by_dn] }} }}
  - {{ name: xfcc, match: {{ path_prefix: /xfcc }}, upstream: rec, forward_client_cert: true, auth: {{ any_of: [any_cert] }} }}
  - {{ name: plain, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [any_cert] }} }}
"#,
        cert = pki.path("server.crt"),
        key = pki.path("server.key"),
        ca = pki.path("ca.crt"),
        url = up.url(),
    )
}

struct Setup {
    pki: Pki,
    up: Upstream,
    gw: Gw,
}

impl Setup {
    async fn new() -> Setup {
        let pki = Pki::new();
        let up = Upstream::start().await;
        let gw = Gw::start(&config(&pki, &up)).await;
        Setup { pki, up, gw }
    }

    /// (status, error code of the body) for `path` with the certificate `ident`; also whether
    /// the upstream saw the request.
    async fn get(&self, ident: &str, path: &str) -> (u16, Option<String>, bool) {
        let before = self.up.count();
        let r = tls_client(&self.pki, Some(ident), false)
            .get(format!("{}{path}", self.gw.https("public")))
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let error = body["error"].as_str().map(str::to_owned);
        (st, error, self.up.count() > before)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_give_listed_certificates_their_scopes_and_refuse_the_rest() {
    let s = Setup::new().await;
    // the SPIFFE identity holds read and write; its subject is the URI
    assert_eq!(s.get("spiffe-client", "/users/read/1").await.0, 200);
    let seen = s.up.last();
    assert_eq!(seen.header("x-auth-subject"), Some("spiffe://corp/billing"));
    assert_eq!(seen.header("x-auth-scopes"), Some("read:users write:users"));
    assert_eq!(seen.header("x-auth-method"), Some("mtls"));
    assert_eq!(
        seen.header("x-client-cert-san"),
        Some("URI:spiffe://corp/billing")
    );
    assert_eq!(s.get("spiffe-client", "/users/write/1").await.0, 200);
    assert_eq!(
        s.get("spiffe-client", "/reports").await,
        (403, Some("insufficient_scope".into()), false)
    );

    // a DNS name below *.svc.corp.example reads but does not write; it has no URI name, so its
    // subject is the DNS name it matched
    assert_eq!(s.get("dns-client", "/users/read/1").await.0, 200);
    assert_eq!(
        s.up.last().header("x-auth-subject"),
        Some("a.svc.corp.example")
    );
    assert_eq!(
        s.get("dns-client", "/users/write/1").await,
        (403, Some("insufficient_scope".into()), false)
    );
    // the same certificate through an authenticator whose subject is the DNS name it matched
    assert_eq!(s.get("dns-client", "/dns").await.0, 200);
    let seen = s.up.last();
    assert_eq!(seen.header("x-auth-subject"), Some("a.svc.corp.example"));
    assert_eq!(seen.header("x-auth-scopes"), Some("read:users"));
    assert_eq!(
        seen.header("x-client-cert-san"),
        Some("DNS:a.svc.corp.example, DNS:other.example")
    );
    // the wildcard covers names below the domain, never the domain itself
    assert_eq!(
        s.get("apex-client", "/dns").await,
        (403, Some("client_certificate_not_allowed".into()), false)
    );

    // a certificate listed by its CN has no URI name: its subject is the CN it matched
    assert_eq!(s.get("reporting-client", "/reports").await.0, 200);
    let seen = s.up.last();
    assert_eq!(seen.header("x-auth-subject"), Some("reporting"));
    assert_eq!(seen.header("x-auth-scopes"), Some("read:reports"));
    assert_eq!(
        s.get("reporting-client", "/users/read/1").await,
        (403, Some("insufficient_scope".into()), false)
    );
    // one no entry lists: refused before the scope check
    assert_eq!(
        s.get("client", "/users/read/1").await,
        (403, Some("client_certificate_not_allowed".into()), false)
    );
    assert_eq!(
        s.get("client", "/dns").await,
        (403, Some("client_certificate_not_allowed".into()), false)
    );

    // without identities every certificate of the CA passes, without scopes; subject_from
    // defaults to the CN
    assert_eq!(s.get("client", "/anything").await.0, 200);
    let seen = s.up.last();
    assert_eq!(seen.header("x-auth-subject"), Some("alice"));
    assert_eq!(seen.header("x-auth-scopes"), None);
    assert_eq!(seen.header("x-client-cert-san"), None);
    // ... and a certificate without a CN has no subject to give
    assert_eq!(
        s.get("spiffe-client", "/anything").await,
        (403, Some("client_certificate_invalid".into()), false)
    );
    assert_eq!(s.get("client", "/dn").await.0, 200);
    assert_eq!(
        s.up.last().header("x-auth-subject"),
        Some("CN=alice, O=Acme")
    );

    // a certificate of another CA never gets past the handshake
    let eve = tls_client(&s.pki, Some("other-client"), false);
    assert!(eve
        .get(format!("{}/users/read/1", s.gw.https("public")))
        .send()
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarded_client_cert_header_is_the_gateways_word() {
    let s = Setup::new().await;
    assert_eq!(s.get("dns-client", "/xfcc").await.0, 200);
    let seen = s.up.last();
    let sha = seen.header("x-client-cert-sha256").unwrap().to_owned();
    assert_eq!(
        seen.header("x-forwarded-client-cert"),
        Some(
            format!(
                "Hash={sha};Subject=\"CN=svc-a, O=Corp\";DNS=a.svc.corp.example;DNS=other.example"
            )
            .as_str()
        )
    );
    // subject_from defaults to the CN: a certificate without one has no subject to give
    assert_eq!(
        s.get("spiffe-client", "/xfcc").await,
        (403, Some("client_certificate_invalid".into()), false)
    );
    // a route without forward_client_cert sends none, and a client's own copy never passes
    let r = tls_client(&s.pki, Some("client"), false)
        .get(format!("{}/anything", s.gw.https("public")))
        .header("x-forwarded-client-cert", "Hash=forged;Subject=\"CN=root\"")
        .header("x-client-cert-san", "URI:spiffe://corp/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = s.up.last();
    assert_eq!(seen.header("x-forwarded-client-cert"), None);
    assert_eq!(seen.header("x-client-cert-san"), None);
    let r = tls_client(&s.pki, Some("client"), false)
        .get(format!("{}/xfcc", s.gw.https("public")))
        .header("x-forwarded-client-cert", "Hash=forged;Subject=\"CN=root\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = s.up.last();
    let xfcc = seen.header("x-forwarded-client-cert").unwrap();
    assert!(
        xfcc.starts_with("Hash=")
            && xfcc.ends_with(";Subject=\"CN=alice, O=Acme\"")
            && !xfcc.contains("forged"),
        "{xfcc}"
    );
}

#[test]
fn bad_identities_are_config_errors_at_their_field() {
    let pki = Pki::new();
    let yaml = format!(
        r#"listeners:
  - name: public
    bind: 127.0.0.1:0
    tls: {{ cert: {cert}, key: {key}, client_auth: {{ mode: optional, ca: {ca} }} }}
upstreams: {{ e: {{ echo: true }} }}
authenticators:
  m:
    type: mtls
    subject_from: email
    identities:
      - {{ san_uri: "spiffe://a", san_dns: b.example }}
      - {{ san_dns: "a.*.example" }}
      - {{ subject_cn: x, scopes: ["two words"] }}
  empty: {{ type: mtls, identities: [] }}
routes:
  - {{ name: r, match: {{ path_prefix: / }}, upstream: e, auth: {{ any_of: [m, empty] }} }}
"#,
        cert = pki.path("server.crt"),
        key = pki.path("server.key"),
        ca = pki.path("ca.crt"),
    );
    assert_check_fails_with(
        &yaml,
        &[
            "authenticators.m.subject_from: `email`: one of cn, san_dns, san_uri, dn",
            "authenticators.m.identities[0]: give exactly one of san_uri, san_dns, subject_cn",
            "authenticators.m.identities[1].san_dns: `a.*.example`",
            "authenticators.m.identities[2].scopes[0]: a scope is one word",
            "authenticators.empty.identities: an empty allow-list refuses every certificate",
        ],
    );
}

/// Behind a trusted proxy: the proxy's own X-Forwarded-Client-Cert never reaches the upstream
/// for a connection whose TLS ended here, nor on a route that forwards certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_forwarded_client_cert_does_not_pass() {
    let pki = Pki::new();
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        "{}trusted_proxies: [127.0.0.1/32]\n",
        config(&pki, &up).replace(
            "  - { name: plain,",
            "  - { name: open-xfcc, match: { path_prefix: /open-xfcc }, upstream: rec, forward_client_cert: true, auth: none }\n  - { name: plain,"
        )
    ))
    .await;
    let forged = "Hash=00;Subject=\"CN=root\"";
    // with a client certificate on a route without forward_client_cert, and without one on a
    // route with it
    for (ident, path) in [(Some("client"), "/anything"), (None, "/open-xfcc")] {
        let r = tls_client(&pki, ident, false)
            .get(format!("{}{path}", gw.https("public")))
            .header("x-forwarded-client-cert", forged)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(up.last().header("x-forwarded-client-cert"), None, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_with_control_characters_in_its_subject_is_refused() {
    let s = Setup::new().await;
    // its CN starts like the listed `reporting`, then a header line: refused before any
    // authenticator looks at it, on a route with an allow-list and on one without, and the
    // upstream never hears of it
    for path in ["/reports/1", "/xfcc/1", "/anything"] {
        assert_eq!(
            s.get("control-client", path).await,
            (403, Some("client_certificate_invalid".into()), false),
            "{path}"
        );
    }
    // the listed certificate it imitates still passes
    assert_eq!(s.get("reporting-client", "/reports/1").await.0, 200);
    assert_eq!(s.up.last().header("x-auth-subject"), Some("reporting"));
}
