//! The trust boundary: which client headers may reach the upstream and which the gateway sets.
//! Pure functions over header maps: no config, no I/O.
//!
//! Strip before you inject (linkerd): hop-by-hop headers, the headers named in `Connection`, every
//! client copy of an identity header (`X-Auth-*`, `X-Client-Cert-*`, in any case and with `_` or
//! `.` for `-`) and, from peers that are not trusted proxies, every header through which upstream
//! frameworks let a client override the URL or claim a network identity. Then add ours.

use crate::auth::identity::Identity;
use crate::conn::ClientCert;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// Header names compared after lowercasing and reading `_` and `.` as `-`.
fn canon(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b == b'_' || b == b'.') {
        std::borrow::Cow::Owned(name.replace(['_', '.'], "-"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

fn is_hop_by_hop(c: &str) -> bool {
    matches!(
        c,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "http2-settings"
    )
}

/// Only a trusted proxy may send these; from anyone else they are dropped.
fn is_proxy_only(c: &str) -> bool {
    matches!(
        c,
        "x-original-url"
            | "x-rewrite-url"
            | "x-forwarded-uri"
            | "x-forwarded-prefix"
            | "x-forwarded-path"
            | "x-real-ip"
            | "x-forwarded-client-cert"
            | "x-envoy-original-path"
            | "forwarded"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
            | "x-forwarded-port"
            | "x-forwarded-scheme"
            | "x-scheme"
            | "client-ip"
            | "true-client-ip"
            | "x-client-ip"
            | "x-cluster-client-ip"
            // Further URL, host and address overrides frameworks and sidecars honour
            // (docs/attack-cases.md HDR-19: Kong/kong#246, envoyproxy/envoy#4046, ...).
            | "x-original-uri"
            | "x-original-host"
            | "x-host"
            | "x-host-override"
            | "x-http-host-override"
            | "x-forwarded-server"
            | "x-original-remote-addr"
            | "x-remote-ip"
            | "x-remote-addr"
            | "x-originating-ip"
            | "cf-connecting-ip"
            | "fastly-client-ip"
    ) || c.starts_with("x-ssl-client-")
        || c.starts_with("x-envoy-")
}

/// Method overrides (`X-HTTP-Method-Override: DELETE` on a GET) would let a request through a
/// route's method rules as one method and reach the upstream as another: never forwarded, not
/// even from a trusted proxy, which passes its client's headers on (docs/attack-cases.md HDR-18:
/// MAIF/otoroshi#114, echoCTF/echoCTF.RED#431).
fn is_method_override(c: &str) -> bool {
    matches!(
        c,
        "x-http-method-override" | "x-http-method" | "x-method-override"
    )
}

enum Fate {
    Keep,
    Drop,
}

// `match` on the name rather than scanning lists: the compiler switches on length first, so a
// header costs a comparison or two instead of one string comparison per listed name.
fn classify(name: &str, peer_trusted: bool, strip_credentials: bool) -> Fate {
    let c = canon(name);
    let c = c.as_ref();
    if is_hop_by_hop(c)
        || is_method_override(c)
        || c.starts_with("x-auth-")
        || c.starts_with("x-client-cert-")
        || c == "x-request-id"
    {
        return Fate::Drop;
    }
    if strip_credentials && (c == "authorization" || c == "x-api-key") {
        return Fate::Drop;
    }
    if is_proxy_only(c) {
        // A variant spelling (`X_Forwarded_For`) is dropped even from a trusted proxy: only the
        // canonical name is ever trusted, so two spellings can't disagree downstream.
        if !peer_trusted || c != name {
            return Fate::Drop;
        }
    }
    Fate::Keep
}

// Header names built at compile time: inserting by `&'static str` re-parses the name on every
// call (`HdrName::from_static`, ~2 600 instructions a request for the ~10 names below).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_AUTH_METHOD: HeaderName = HeaderName::from_static("x-auth-method");
const X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
const X_AUTH_SCOPES: HeaderName = HeaderName::from_static("x-auth-scopes");
const X_AUTH_KEY_ID: HeaderName = HeaderName::from_static("x-auth-key-id");
const X_AUTH_ISSUER: HeaderName = HeaderName::from_static("x-auth-issuer");
/// The identity headers the gateway itself sets from the chain's [`Identity`].
const IDENTITY_HEADERS: [HeaderName; 5] = [
    X_AUTH_METHOD,
    X_AUTH_SUBJECT,
    X_AUTH_SCOPES,
    X_AUTH_KEY_ID,
    X_AUTH_ISSUER,
];

/// Whether `lowercase_name` is one of the identity headers the gateway sets itself (a
/// `claims_to_headers` entry may not take one over).
pub fn is_identity_header(lowercase_name: &str) -> bool {
    IDENTITY_HEADERS
        .iter()
        .any(|h| h.as_str() == lowercase_name)
}
const X_CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");
const X_CLIENT_CERT_SHA256: HeaderName = HeaderName::from_static("x-client-cert-sha256");
const X_CLIENT_CERT_SAN: HeaderName = HeaderName::from_static("x-client-cert-san");
const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// `X-Client-Cert-San`: the names joined with `, `; a `,` inside a name (a URI may hold one) is
/// written `%2C`, so splitting the list on commas never yields a name the certificate lacks.
pub fn san_list(sans: &[String]) -> String {
    let mut out = String::new();
    for (i, s) in sans.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&s.replace(',', "%2C"));
    }
    out
}

/// Envoy's `X-Forwarded-Client-Cert` element for `c`: `Hash=<sha256 hex>;Subject="<subject>"`,
/// then `URI=...` and `DNS=...` for each such alternative name. Subject is always quoted; other
/// values are quoted when they hold `,`, `;`, `=`, `"` or a space; inside quotes `"` and `\` are
/// escaped with `\` (the certificate's values have no control characters: those are refused).
pub fn xfcc(c: &ClientCert) -> String {
    fn quoted(out: &mut String, v: &str) {
        out.push('"');
        for ch in v.chars() {
            if ch == '"' || ch == '\\' {
                out.push('\\');
            }
            out.push(ch);
        }
        out.push('"');
    }
    let mut out = format!("Hash={};Subject=", c.sha256);
    quoted(&mut out, &c.subject);
    for (key, kind) in [("URI", "URI"), ("DNS", "DNS")] {
        for v in c.sans_of(kind) {
            out.push(';');
            out.push_str(key);
            out.push('=');
            if v.contains([',', ';', '=', '"', ' ', '\\']) {
                quoted(&mut out, v);
            } else {
                out.push_str(v);
            }
        }
    }
    out
}

/// What the gateway knows about a request that the upstream should learn.
pub struct ForwardCtx<'a> {
    pub peer_ip: IpAddr,
    /// `peer_ip` as a header value (formatted once per connection).
    pub peer_value: &'a HeaderValue,
    pub peer_trusted: bool,
    pub client_ip: IpAddr,
    pub proto: &'static str,
    pub host: Option<&'a str>,
    pub request_id: &'a HeaderValue,
    pub identity: &'a Identity,
    pub client_cert: Option<&'a ClientCert>,
    /// Remove `Authorization` / `X-Api-Key` and the `token_from` cookies below (a chain
    /// consumed them and the route does not say `forward_credentials: true`).
    pub strip_credentials: bool,
    pub credential_cookies: &'a [String],
    /// The client's `Upgrade` value when it asked for a protocol upgrade.
    pub upgrade: Option<HeaderValue>,
    /// Add `X-Forwarded-Client-Cert` for `client_cert` (the route's `forward_client_cert`).
    pub forward_client_cert: bool,
}

/// Rewrites the client's request headers into what the upstream receives.
pub fn upstream_request_headers(h: &mut HeaderMap, ctx: &ForwardCtx<'_>) {
    let mut drop: Vec<HeaderName> = Vec::new();
    for v in h.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            for token in s.split(',') {
                if let Ok(n) = HeaderName::from_bytes(token.trim().as_bytes()) {
                    drop.push(n);
                }
            }
        }
    }
    let prior_xff = if ctx.peer_trusted {
        join_values(h, &X_FORWARDED_FOR)
    } else {
        None
    };
    for name in h.keys() {
        if let Fate::Drop = classify(name.as_str(), ctx.peer_trusted, ctx.strip_credentials) {
            drop.push(name.clone());
        }
    }
    for n in &drop {
        h.remove(n);
    }
    if ctx.strip_credentials {
        strip_cookies(h, ctx.credential_cookies);
    }

    let peer_value = ctx.peer_value;
    match prior_xff {
        Some(p) => {
            let peer = String::from_utf8_lossy(peer_value.as_bytes());
            insert_str(h, X_FORWARDED_FOR, &format!("{p}, {peer}"));
        }
        None => {
            h.insert(X_FORWARDED_FOR, peer_value.clone());
        }
    }
    if !(ctx.peer_trusted && h.contains_key(&X_FORWARDED_PROTO)) {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(ctx.proto));
    }
    if !(ctx.peer_trusted && h.contains_key(&X_FORWARDED_HOST)) {
        if let Some(host) = ctx.host {
            insert_str(h, X_FORWARDED_HOST, host);
        }
    }
    if ctx.client_ip == ctx.peer_ip {
        // The usual case: the client is the peer; share the value (no second allocation).
        h.insert(X_REAL_IP, peer_value.clone());
    } else {
        insert_str(h, X_REAL_IP, &ctx.client_ip.to_string());
    }
    h.insert(X_REQUEST_ID, ctx.request_id.clone());

    let id = ctx.identity;
    h.insert(X_AUTH_METHOD, HeaderValue::from_static(id.method.as_str()));
    if let Some(s) = &id.subject {
        insert_str(h, X_AUTH_SUBJECT, s);
    }
    if !id.scopes.is_empty() {
        insert_str(h, X_AUTH_SCOPES, &id.scopes.join(" "));
    }
    if let Some(k) = &id.key_id {
        insert_str(h, X_AUTH_KEY_ID, k);
    }
    if let Some(i) = &id.issuer {
        insert_str(h, X_AUTH_ISSUER, i);
    }
    for (k, v) in &id.extra_headers {
        h.insert(k.clone(), v.clone());
    }
    // The client's TLS ended here, so a (trusted) proxy's X-Forwarded-Client-Cert cannot be
    // about this client; on a route that forwards certificates only the gateway's word passes.
    if ctx.client_cert.is_some() || ctx.forward_client_cert {
        h.remove(X_FORWARDED_CLIENT_CERT);
    }
    if let Some(c) = ctx.client_cert {
        insert_str(h, X_CLIENT_CERT_SUBJECT, &c.subject);
        insert_str(h, X_CLIENT_CERT_SHA256, &c.sha256);
        if !c.sans.is_empty() {
            insert_str(h, X_CLIENT_CERT_SAN, &san_list(&c.sans));
        }
        if ctx.forward_client_cert {
            insert_str(h, X_FORWARDED_CLIENT_CERT, &xfcc(c));
        }
    }
    if let Some(u) = &ctx.upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, u.clone());
    }
}

/// Trailers from a client (HTTP/1.1 chunked or HTTP/2) on their way upstream: everything the
/// header rules drop from an untrusted peer, and the names RFC 9110 section 6.5.1 forbids in
/// trailers (framing, routing, authentication, cookies), since an upstream or framework that
/// merges trailers into its headers would otherwise take them as the gateway's word
/// (docs/attack-cases.md HDR-20: zoxy-io/zoxy#263, tempesta-tech/tempesta#678).
pub fn sanitize_trailers(h: &mut HeaderMap) {
    let drop: Vec<HeaderName> = h
        .keys()
        .filter(|n| {
            // `classify` as for an untrusted peer also drops the proxy-only names.
            matches!(classify(n.as_str(), false, true), Fate::Drop)
                || matches!(
                    canon(n.as_str()).as_ref(),
                    "host"
                        | "content-length"
                        | "content-encoding"
                        | "content-type"
                        | "content-range"
                        | "cookie"
                        | "set-cookie"
                        | "expect"
                        | "max-forwards"
                        | "range"
                        | "if-match"
                        | "if-none-match"
                        | "if-modified-since"
                        | "if-unmodified-since"
                        | "if-range"
                        | "cache-control"
                        | "pragma"
                        | "www-authenticate"
                )
        })
        .cloned()
        .collect();
    for n in &drop {
        h.remove(n);
    }
}

/// Removes the cookies named in `names` from every `Cookie` header (a token the gateway consumed
/// must not reach the upstream).
fn strip_cookies(h: &mut HeaderMap, names: &[String]) {
    if names.is_empty() || !h.contains_key(header::COOKIE) {
        return;
    }
    let kept: Vec<String> = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| {
            let s = String::from_utf8_lossy(v.as_bytes());
            let rest: Vec<&str> = s
                .split(';')
                .map(str::trim)
                .filter(|c| {
                    let name = c.split_once('=').map_or(*c, |(n, _)| n);
                    !c.is_empty() && !names.iter().any(|x| x == name)
                })
                .collect();
            (!rest.is_empty()).then(|| rest.join("; "))
        })
        .collect();
    h.remove(header::COOKIE);
    for c in kept {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::COOKIE, v);
        }
    }
}

/// Whether a raw query parameter name is `name` once percent-decoded, as the upstream's
/// framework will read it: `access%5Ftoken` is `access_token` (docs/attack-cases.md JWT-21(d)).
pub fn query_name_is(raw: &str, name: &str) -> bool {
    if !raw.contains('%') {
        return raw == name;
    }
    // Decode on the fly and compare byte by byte; an invalid escape stands for itself.
    let (b, mut want) = (raw.as_bytes(), name.bytes());
    let hex = |x: Option<&u8>| x.and_then(|&x| (x as char).to_digit(16));
    let mut i = 0;
    while i < b.len() {
        let c = match (b[i], hex(b.get(i + 1)), hex(b.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                i += 3;
                (h * 16 + l) as u8
            }
            (c, _, _) => {
                i += 1;
                c
            }
        };
        if want.next() != Some(c) {
            return false;
        }
    }
    want.next().is_none()
}

/// The query without the parameters named in `names` (compared percent-decoded); the query as
/// it was, without a new allocation, when none of them is there.
pub fn strip_params(query: Option<String>, names: &[String]) -> Option<String> {
    let q = query?;
    let named = |p: &str| {
        let k = p.split_once('=').map_or(p, |(k, _)| k);
        names.iter().any(|n| query_name_is(k, n))
    };
    if !q.split('&').any(named) {
        return Some(q);
    }
    let kept: Vec<&str> = q.split('&').filter(|p| !named(p)).collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

fn join_values(h: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in h.get_all(name) {
        let s = String::from_utf8_lossy(v.as_bytes());
        match &mut out {
            Some(o) => {
                o.push_str(", ");
                o.push_str(&s);
            }
            None => out = Some(s.into_owned()),
        }
    }
    out
}

/// Inserts a value that came from data (a subject, a DN): control characters are replaced, so a
/// value can never split a header.
fn insert_str(h: &mut HeaderMap, name: HeaderName, v: &str) {
    let value = HeaderValue::from_str(v).or_else(|_| {
        let cleaned: String = v
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        HeaderValue::from_bytes(cleaned.as_bytes())
    });
    if let Ok(value) = value {
        h.insert(name, value);
    }
}

/// Removes hop-by-hop headers (and those named in `Connection`) from an upstream response. A 101
/// keeps `Connection`/`Upgrade`, which carry the switch itself.
pub fn downstream_response_headers(h: &mut HeaderMap, switching: bool) {
    let mut drop: Vec<HeaderName> = Vec::new();
    if !switching {
        for v in h.get_all(header::CONNECTION) {
            if let Ok(s) = v.to_str() {
                for token in s.split(',') {
                    let t = token.trim();
                    // `Connection: keep-alive`, the usual value, names a header removed below
                    // anyway (hop-by-hop): no name to parse.
                    if t.eq_ignore_ascii_case("keep-alive") {
                        continue;
                    }
                    if let Ok(n) = HeaderName::from_bytes(t.as_bytes()) {
                        drop.push(n);
                    }
                }
            }
        }
    }
    for name in h.keys() {
        let n = name.as_str();
        if is_hop_by_hop(n) && !(switching && (n == "connection" || n == "upgrade")) {
            drop.push(name.clone());
        }
    }
    for n in &drop {
        h.remove(n);
    }
}

/// A protocol upgrade the gateway tunnels (WebSocket and the like). `h2c` never is: after a
/// 101 the tunnel would carry HTTP/2 requests that never pass the auth chain (h2c smuggling,
/// docs/attack-cases.md SMUG-18); such a request goes on as plain HTTP/1.1 without its
/// `Upgrade`, as RFC 9113 lets a server ignore it (`curl --http2` on http:// does this).
pub fn wants_upgrade(h: &http::HeaderMap) -> bool {
    let h2c = h.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str().map_or(true, |s| {
            s.split(',')
                .any(|t| t.trim().to_ascii_lowercase().starts_with("h2c"))
        })
    });
    !h2c && h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

#[cfg(test)]
mod tests {

    #[test]
    fn san_lists_cannot_be_split_into_names_a_certificate_lacks() {
        let sans = vec![
            "URI:spiffe://corp/x, DNS:admin.svc.corp".to_owned(),
            "DNS:a.example".to_owned(),
        ];
        let v = san_list(&sans);
        assert_eq!(
            v,
            "URI:spiffe://corp/x%2C DNS:admin.svc.corp, DNS:a.example"
        );
        assert_eq!(v.split(", ").count(), 2);
    }

    #[test]
    fn xfcc_is_envoys_format_with_quoting() {
        let c = crate::conn::ClientCert {
            subject: r#"CN=a "b",O=Acme\, Inc"#.into(),
            cn: Some("a \"b\"".into()),
            sha256: "ab12".into(),
            sans: vec![
                "URI:spiffe://corp/billing".into(),
                "DNS:a.svc.corp".into(),
                "URI:https://x.test/p;q=1".into(),
                "email:x@y".into(),
            ],
            control_chars: false,
        };
        assert_eq!(
            xfcc(&c),
            r#"Hash=ab12;Subject="CN=a \"b\",O=Acme\\, Inc";URI=spiffe://corp/billing;URI="https://x.test/p;q=1";DNS=a.svc.corp"#
        );
    }
    use super::*;
    use crate::auth::identity::Identity;

    fn rewrite(pairs: &[(&str, &str)], trusted: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        let id = Identity::anonymous();
        let rid = HeaderValue::from_static("rid-1");
        let ctx = ForwardCtx {
            peer_ip: "192.0.2.7".parse().expect("ip"),
            peer_value: &HeaderValue::from_static("192.0.2.7"),
            peer_trusted: trusted,
            client_ip: "192.0.2.7".parse().expect("ip"),
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
    }

    #[test]
    fn identity_spoofs_never_pass() {
        for name in [
            "X-Auth-Subject",
            "x-auth-subject",
            "X_Auth_Subject",
            "x.auth.subject",
            "X-Client-Cert-Subject",
            "x_client_cert_sha256",
        ] {
            let h = rewrite(&[(name, "evil")], false);
            for (k, v) in &h {
                assert_ne!(v, "evil", "{name} leaked as {k}");
            }
        }
        let h = rewrite(
            &[
                ("connection", "x-auth-method, keep-alive"),
                ("x-auth-method", "jwt"),
            ],
            false,
        );
        assert_eq!(
            h.get("x-auth-method").map(|v| v.as_bytes()),
            Some(&b"none"[..])
        );
    }

    #[test]
    fn forwarded_headers_depend_on_trust() {
        let pairs = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-original-url", "/admin"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-proto", "http"),
        ];
        let h = rewrite(&pairs, false);
        assert_eq!(
            h.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(&b"192.0.2.7"[..])
        );
        assert_eq!(
            h.get("x-real-ip").map(|v| v.as_bytes()),
            Some(&b"192.0.2.7"[..])
        );
        assert_eq!(
            h.get("x-forwarded-proto").map(|v| v.as_bytes()),
            Some(&b"https"[..])
        );
        assert!(h.get("x-original-url").is_none());
        assert!(h.get("forwarded").is_none());
        let h = rewrite(&pairs, true);
        assert_eq!(
            h.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(&b"1.2.3.4, 192.0.2.7"[..])
        );
        assert_eq!(
            h.get("x-original-url").map(|v| v.as_bytes()),
            Some(&b"/admin"[..])
        );
        assert_eq!(
            h.get("x-forwarded-proto").map(|v| v.as_bytes()),
            Some(&b"http"[..])
        );
    }

    #[test]
    fn credentials_and_hop_by_hop_removed() {
        let h = rewrite(
            &[
                ("authorization", "Bearer x"),
                ("x-api-key", "k"),
                ("te", "trailers"),
                ("keep-alive", "5"),
                ("x-request-id", "client"),
            ],
            false,
        );
        for n in ["authorization", "x-api-key", "te", "keep-alive"] {
            assert!(h.get(n).is_none(), "{n} must be removed");
        }
        assert_eq!(
            h.get("x-request-id").map(|v| v.as_bytes()),
            Some(&b"rid-1"[..])
        );
    }
}
