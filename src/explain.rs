//! `portcullis explain`: one request, dry-run through host checks, normalization, routing and the
//! auth chain, printing each step's verdict and the headers the upstream would receive. Nothing is
//! forwarded. The store is read (read-only) for the API keys and revoked tokens, and remote JWKS
//! are fetched once, so credentials are judged as the running gateway would judge them.

use crate::auth::chain::evaluate;
use crate::auth::request::AuthRequest;
use crate::config::Snapshot;
use crate::conn::{canonical_ip, client_cert_info, peer_value, Activity, ConnInfo};
use crate::headers::{upstream_request_headers, ForwardCtx};
use crate::store::Store;
use crate::upstream::UpstreamKind;
use http::{HeaderName, HeaderValue, Method, Request};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

pub struct ExplainInput {
    pub method: String,
    pub url: String,
    pub headers: Vec<String>,
    pub peer: IpAddr,
    /// A PEM client certificate to act as if it had been verified.
    pub client_cert: Option<Vec<u8>>,
}

/// Reads the config's store, for reading only, into the snapshot's key ring and denylist: the
/// keys and revoked `jti`s as the running gateway has them. Returns the line that says what was
/// read (or why nothing was: then no API key is recognized and no revocation applies).
pub fn read_store(snap: &Snapshot) -> String {
    let opened: Result<(Box<dyn Store>, String), String> = match &snap.store.postgres {
        Some(p) => crate::store::postgres::Postgres::open_read_only(&p.url, &p.tls)
            .map(|s| {
                (
                    Box::new(s) as Box<dyn Store>,
                    crate::values::redact_url(&p.url),
                )
            })
            .map_err(|e| e.to_string()),
        None => crate::store::sqlite::Sqlite::open_read_only(&snap.store.sqlite)
            .map(|s| {
                (
                    Box::new(s) as Box<dyn Store>,
                    snap.store.sqlite.display().to_string(),
                )
            })
            .map_err(|e| e.to_string()),
    };
    let read = opened.and_then(|(store, name)| {
        let keys = store
            .for_each_key(&mut |row| snap.shared.keys.put(row))
            .map_err(|e| e.to_string())?;
        let now = crate::clock::now_secs();
        let revocations = store.load_revocations(now).map_err(|e| e.to_string())?;
        for (jti, until) in &revocations {
            snap.shared.revocations.revoke(jti, *until as f64);
        }
        Ok((name, keys, revocations.len()))
    });
    match read {
        Ok((name, keys, revoked)) => {
            format!("store {name} (read-only): {keys} API keys, {revoked} revoked tokens")
        }
        Err(e) => format!(
            "store not read ({e}): no API key will be recognized, no token revocation applies"
        ),
    }
}

/// Returns the report and whether the request would be allowed.
pub async fn explain(snap: &Snapshot, input: &ExplainInput) -> Result<(String, bool), String> {
    let mut out = String::new();
    for j in &snap.remote_jwks {
        let ok = j.refresh().await;
        let _ = writeln!(
            out,
            "jwks {}: {}",
            j.location,
            if ok { "loaded" } else { "fetch FAILED" }
        );
    }
    let uri: http::Uri = input.url.parse().map_err(|e| format!("--url: {e}"))?;
    let method = Method::from_bytes(input.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("--method: `{}` is not an HTTP method", input.method))?;
    let tls = uri.scheme_str() == Some("https");
    let mut req = Request::builder().method(method.clone()).uri(uri.clone());
    for h in &input.headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| format!("-H `{h}`: use 'Name: value'"))?;
        let k = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| format!("-H `{h}`: bad header name"))?;
        let v =
            HeaderValue::from_str(v.trim()).map_err(|_| format!("-H `{h}`: bad header value"))?;
        req = req.header(k, v);
    }
    let req = req.body(()).map_err(|e| e.to_string())?;
    let client_cert = match &input.client_cert {
        None => None,
        Some(pem) => {
            use rustls_pki_types::pem::PemObject;
            let der = rustls_pki_types::CertificateDer::from_pem_slice(pem)
                .map_err(|e| format!("--client-cert: {e}"))?;
            Some(client_cert_info(&der))
        }
    };
    let conn = ConnInfo {
        listener: Arc::from("explain"),
        peer: SocketAddr::new(input.peer, 0),
        tls,
        sni: if tls {
            uri.host().map(|h| h.to_ascii_lowercase())
        } else {
            None
        },
        client_cert,
        activity: Arc::new(Activity::default()),
        peer_value: peer_value(input.peer),
        slot: None,
    };
    let _ = writeln!(out, "request: {method} {uri}");
    let routed = match crate::route::resolve(&snap.router, &conn, &req) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                out,
                "route: DENY {} {} ({})",
                e.status().as_u16(),
                e.reason.name(),
                e.description
            );
            return Ok((out, false));
        }
    };
    if routed.path != uri.path() {
        let _ = writeln!(out, "path: {} -> {}", uri.path(), routed.path);
    }
    let route = &routed.route;
    let rewritten = route.rewrite.apply(&routed.path);
    if let Some(p) = &rewritten {
        let _ = writeln!(out, "rewrite: {} -> {p}", routed.path);
    }
    let upstream_path = rewritten.as_deref().unwrap_or(&routed.path);
    let target = match &route.upstream.kind {
        UpstreamKind::Echo => "built-in echo".to_owned(),
        UpstreamKind::Http(u) => {
            let each: Vec<String> = u
                .targets
                .iter()
                .map(|t| {
                    format!(
                        "{}://{}{}{}",
                        t.scheme, t.authority, t.base_path, upstream_path
                    )
                })
                .collect();
            match each.as_slice() {
                [one] => one.clone(),
                _ => format!("{}: {}", u.balance.as_str(), each.join(", ")),
            }
        }
    };
    let _ = writeln!(
        out,
        "route: {} -> upstream {} ({target})",
        route.name, route.upstream.name
    );
    if let (true, Some(cors)) = (routed.preflight, &route.cors) {
        // as the proxy does: answered here, before the chain, never sent upstream
        return Ok(match cors.preflight(req.headers()) {
            Ok(h) => {
                let _ = writeln!(out, "cors preflight: ALLOW 204, answered by the gateway");
                for (k, v) in &h {
                    let _ = writeln!(out, "  {k}: {}", String::from_utf8_lossy(v.as_bytes()));
                }
                (out, true)
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "cors preflight: DENY {} {} ({})",
                    e.status().as_u16(),
                    e.reason.name(),
                    e.description
                );
                (out, false)
            }
        });
    }
    if let Err(e) = conn.check_client_cert() {
        let _ = writeln!(
            out,
            "client certificate: DENY {} {} ({})",
            e.status().as_u16(),
            e.reason.name(),
            e.description
        );
        return Ok((out, false));
    }
    let client_ip = snap.trusted_proxies.client_ip(&conn, req.headers());
    let auth_req = AuthRequest {
        headers: req.headers(),
        query: uri.query(),
        conn: &conn,
        client_ip,
    };
    let mut trace = Vec::new();
    let verdict = evaluate(&route.auth, &auth_req, Some(&mut trace)).await;
    for t in &trace {
        let _ = writeln!(out, "  {t}");
    }
    let identity = match verdict.result {
        Ok(id) => id,
        Err(e) => {
            let _ = writeln!(
                out,
                "decision: DENY {} {} ({})",
                e.status().as_u16(),
                e.reason.name(),
                e.description
            );
            return Ok((out, false));
        }
    };
    let mut headers = req.headers().clone();
    let rid = HeaderValue::from_static("explain");
    let peer_ip = canonical_ip(input.peer);
    upstream_request_headers(
        &mut headers,
        &ForwardCtx {
            peer_ip,
            peer_value: &conn.peer_value,
            peer_trusted: snap.trusted_proxies.contains(peer_ip),
            client_ip,
            proto: if tls { "https" } else { "http" },
            host: routed.host.as_deref(),
            request_id: &rid,
            identity: &identity,
            client_cert: conn.client_cert.as_ref(),
            strip_credentials: route.strip_credentials,
            forward_client_cert: route.forward_client_cert,
            credential_cookies: route.auth.credential_sources().0,
            upgrade: None,
        },
    );
    route.host.apply(&mut headers, routed.host.as_deref());
    if let Some(t) = &route.identity_token {
        let what = format!(
            "<a signed portcullis-assertion+jwt of this identity, audience {}, valid {}s>",
            t.audience, t.ttl
        );
        if let Ok(v) = HeaderValue::from_str(&what) {
            headers.insert(t.header.clone(), v);
        }
    }
    let _ = writeln!(out, "decision: ALLOW");
    let own_authority = matches!(&route.upstream.kind, UpstreamKind::Http(u) if u.own_authority());
    if own_authority {
        // as Upstream::send does: TLS names and HTTP/2's :authority must name the target
        headers.remove(http::header::HOST);
        let _ = writeln!(
            out,
            "host: each target's own authority (https and h2c upstreams)"
        );
    } else if route.host == crate::route::HostMode::Upstream {
        let _ = writeln!(out, "host: each target's own authority (host: upstream)");
    }
    let _ = writeln!(out, "headers to the upstream:");
    let mut names: Vec<_> = headers.iter().collect();
    names.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    for (k, v) in names {
        let shown = if k == http::header::AUTHORIZATION || k.as_str() == "x-api-key" {
            "<redacted>".to_owned()
        } else {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        };
        let _ = writeln!(out, "  {k}: {shown}");
    }
    Ok((out, true))
}
