//! rustls server configs (certificates, ALPN, client-certificate verification with CRLs) and the
//! one builder of outgoing HTTPS clients.

use crate::config::raw::{ClientAuthMode, RawTls};
use crate::values::resolve;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

type Errs = Vec<(String, String)>;

/// Installs aws-lc-rs as the process-wide rustls provider (what libraries that build their own
/// configs, such as the Redis client's, use). Idempotent; call before any TLS use.
pub fn install_crypto_provider() {
    // An Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", path.display()));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&data)
        .map_err(|e| format!("{}: no usable PEM private key: {e}", path.display()))
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let crls: Vec<_> = CertificateRevocationListDer::pem_slice_iter(&data)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM CRL file: {e}", path.display()))?;
    if crls.is_empty() {
        return Err(format!("{}: no PEM CRL found", path.display()));
    }
    Ok(crls)
}

/// A self-signed certificate made in memory for `names` (dev mode).
pub fn self_signed(
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "portcullis self-signed (development only)",
    );
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    Ok((vec![cert.der().clone()], key_der))
}

/// Builds the rustls server config of one listener. Errors name the field (`listeners[0].tls.cert`).
pub fn server_config(raw: &RawTls, base: &Path, path: &str) -> Result<Arc<ServerConfig>, Errs> {
    let mut errs: Errs = Vec::new();
    let mut chain_key = None;
    match (&raw.cert, &raw.key, &raw.self_signed) {
        (Some(cert), Some(key), None) => {
            let c = load_certs(&resolve(base, cert.as_str()))
                .map_err(|e| errs.push((format!("{path}.cert"), e)));
            let k = load_key(&resolve(base, key.as_str()))
                .map_err(|e| errs.push((format!("{path}.key"), e)));
            if let (Ok(c), Ok(k)) = (c, k) {
                chain_key = Some((c, k));
            }
        }
        (None, None, Some(names)) => {
            if names.is_empty() {
                errs.push((
                    format!("{path}.self_signed"),
                    "list at least one host name".into(),
                ));
            } else {
                let names: Vec<String> = names.iter().map(|n| n.0.clone()).collect();
                match self_signed(&names) {
                    Ok(ck) => chain_key = Some(ck),
                    Err(e) => errs.push((format!("{path}.self_signed"), e)),
                }
            }
        }
        (_, _, Some(_)) => errs.push((
            format!("{path}.self_signed"),
            "give either `self_signed` or `cert` and `key`, not both".into(),
        )),
        (None, _, None) => errs.push((
            format!("{path}.cert"),
            "a TLS listener needs `cert` and `key` (or `self_signed: [names]` for development)"
                .into(),
        )),
        (Some(_), None, None) => errs.push((format!("{path}.key"), "`key` is missing".into())),
    }

    let provider = provider();
    let verifier = match &raw.client_auth {
        None => None,
        Some(ca) if ca.mode == ClientAuthMode::None => None,
        Some(ca) => {
            let roots = match &ca.ca {
                None => {
                    errs.push((
                        format!("{path}.client_auth.ca"),
                        "client certificates need a `ca` to verify them against".into(),
                    ));
                    None
                }
                Some(f) => match load_certs(&resolve(base, f.as_str())) {
                    Err(e) => {
                        errs.push((format!("{path}.client_auth.ca"), e));
                        None
                    }
                    Ok(certs) => {
                        let mut store = RootCertStore::empty();
                        for c in certs {
                            if let Err(e) = store.add(c) {
                                errs.push((
                                    format!("{path}.client_auth.ca"),
                                    format!("not a usable CA certificate: {e}"),
                                ));
                            }
                        }
                        Some(store)
                    }
                },
            };
            let crls = match &ca.crl {
                None => Some(Vec::new()),
                Some(f) => load_crls(&resolve(base, f.as_str()))
                    .map_err(|e| errs.push((format!("{path}.client_auth.crl"), e)))
                    .ok(),
            };
            match (roots, crls) {
                (Some(roots), Some(crls)) => {
                    let mut b = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    )
                    .with_crls(crls);
                    if ca.mode == ClientAuthMode::Optional {
                        b = b.allow_unauthenticated();
                    }
                    match b.build() {
                        Ok(v) => Some(v),
                        Err(e) => {
                            errs.push((format!("{path}.client_auth"), e.to_string()));
                            None
                        }
                    }
                }
                _ => None,
            }
        }
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    let Some((chain, key)) = chain_key else {
        return Err(vec![(path.to_owned(), "no certificate".into())]);
    };
    let builder = match ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    {
        Ok(b) => b,
        Err(e) => return Err(vec![(path.to_owned(), e.to_string())]),
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(chain, key).map_err(|e| {
        vec![(
            format!("{path}.key"),
            format!("certificate and key do not fit: {e}"),
        )]
    })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Stateless resumption: returning clients skip the full handshake.
    if let Ok(t) = rustls::crypto::aws_lc_rs::Ticketer::new() {
        cfg.ticketer = t;
    }
    Ok(Arc::new(cfg))
}

/// An HTTP client for https (and plain http) URLs: rustls with the crate's one provider, trusting
/// the given CAs or else the system's roots. The one builder of outgoing HTTPS clients: upstreams,
/// JWKS and discovery fetches, the CLI's admin calls.
pub type HttpsClient<B> = Client<HttpsConnector<HttpConnector>, B>;

pub struct HttpsClientOptions<'a> {
    /// CA certificates to trust; empty: the system's roots.
    pub ca: &'a [CertificateDer<'static>],
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
    /// Offer HTTP/2 by ALPN on https.
    pub http2: bool,
    /// Speak HTTP/2 with prior knowledge (h2c on plain http).
    pub http2_only: bool,
}

impl Default for HttpsClientOptions<'_> {
    fn default() -> Self {
        HttpsClientOptions {
            ca: &[],
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(90),
            http2: false,
            http2_only: false,
        }
    }
}

pub fn https_client<B>(opts: &HttpsClientOptions<'_>) -> Result<HttpsClient<B>, String>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let tls = if opts.ca.is_empty() {
        let mut roots = rustls_native_certs::load_native_certs().certs;
        roots.truncate(1000);
        client_config(&roots)
    } else {
        client_config(opts.ca)
    }?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(opts.connect_timeout));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let connector = if opts.http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    };
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(opts.idle_timeout)
        .http2_only(opts.http2_only)
        .build(connector))
}

/// Client config trusting only `ca`.
fn client_config(ca: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for c in ca {
        roots
            .add(c.clone())
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    // ALPN (h2, http/1.1) is set by hyper-rustls, which refuses a config that already has it.
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}
