//! TLS to PostgreSQL as libpq's URL parameters ask for it, over rustls with aws-lc-rs (the
//! process' one crypto stack):
//! - `sslmode`: `disable` (plain), `prefer` (the default: TLS when the server offers it, else
//!   plain), `require` (TLS or no connection), `verify-ca` (and the server's certificate chains to
//!   `sslrootcert`), `verify-full` (and names the host connected to). As in libpq, `prefer` and
//!   `require` check no certificate unless `sslrootcert` is given, when they act as `verify-ca`.
//! - `sslrootcert`: a PEM file of the CA certificates to trust (relative to the config file), or
//!   `system` for the system's roots.
//! - `sslcert` and `sslkey`: a client certificate and its key, for servers that ask for one.
//!
//! The parameters are taken out of the URL before the driver parses it (it knows only `disable`,
//! `prefer` and `require`), and every file is read when the config is compiled: `check` reports a
//! missing CA, and a connection never finds out late.

use crate::tls::{load_certs, load_key, provider};
use crate::values::resolve;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(format!(
                    "sslmode=`{s}` is not one of disable, prefer, require, verify-ca, verify-full"
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A PostgreSQL URL's TLS settings, with the files read.
#[derive(Clone)]
pub struct PgTls {
    /// What the connection does (`require` with a CA is `verify-ca`).
    pub mode: SslMode,
    /// The URL without the TLS parameters, for the driver.
    pub driver_url: String,
    /// None with `disable`.
    config: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTls")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl PgTls {
    /// Whether the server's certificate is checked (against a CA; `verify-full`: and its name).
    pub fn verified(&self) -> bool {
        matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull)
    }

    /// The driver's mode: it only knows whether TLS is off, tried or required.
    pub fn driver_mode(&self) -> postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        }
    }

    pub fn connector(&self) -> Option<tokio_postgres_rustls::MakeRustlsConnect> {
        self.config
            .as_ref()
            .map(|c| tokio_postgres_rustls::MakeRustlsConnect::new((**c).clone()))
    }
}

/// Takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of `url` and reads their files
/// (relative paths against `base`). Errors name the parameter, never the URL's password.
pub fn parse(url: &str, base: &Path) -> Result<PgTls, String> {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, q),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let (mut mode, mut root, mut cert, mut key) = (None, None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("{k}: not a valid percent-encoding"))?;
        match k {
            "sslmode" => mode = Some(SslMode::parse(&v)?),
            "sslrootcert" => root = Some(v),
            "sslcert" => cert = Some(v),
            "sslkey" => key = Some(v),
            _ => kept.push(pair),
        }
    }
    let driver_url = if kept.is_empty() {
        head.to_owned()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    let mut mode = mode.unwrap_or(SslMode::Prefer);
    if root.is_some() && matches!(mode, SslMode::Prefer | SslMode::Require) {
        mode = SslMode::VerifyCa;
    }
    if mode == SslMode::Disable {
        if root.is_some() || cert.is_some() || key.is_some() {
            return Err(
                "sslmode=disable: sslrootcert, sslcert and sslkey would not be used".into(),
            );
        }
        return Ok(PgTls {
            mode,
            driver_url,
            config: None,
        });
    }
    let verifier = server_check(mode, root.as_deref(), base)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (cert, key) {
        (Some(c), Some(k)) => {
            let chain = load_certs(&resolve(base, &c)).map_err(|e| format!("sslcert: {e}"))?;
            let key = load_key(&resolve(base, &k)).map_err(|e| format!("sslkey: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert/sslkey: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("give sslcert and sslkey together".into()),
    };
    Ok(PgTls {
        mode,
        driver_url,
        config: Some(Arc::new(config)),
    })
}

/// The server check `mode` asks for (`root`: `sslrootcert`).
fn server_check(
    mode: SslMode,
    root: Option<&str>,
    base: &Path,
) -> Result<Arc<ServerCheck>, String> {
    let chain = match (mode, root) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(format!(
                "sslmode={} needs sslrootcert: the CA file that signed the server's certificate, or `system`",
                mode.as_str()
            ))
        }
        (SslMode::VerifyCa | SslMode::VerifyFull, Some(r)) => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(r, base)?), provider())
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?,
        ),
        _ => None,
    };
    Ok(Arc::new(ServerCheck {
        chain,
        name: mode == SslMode::VerifyFull,
        provider: provider(),
    }))
}

fn roots(root: &str, base: &Path) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    if root == "system" {
        let (added, _) =
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if added == 0 {
            return Err("sslrootcert=system: the system has no CA certificates".into());
        }
        return Ok(store);
    }
    for c in load_certs(&resolve(base, root)).map_err(|e| format!("sslrootcert: {e}"))? {
        store
            .add(c)
            .map_err(|e| format!("sslrootcert: not a usable CA certificate: {e}"))?;
    }
    Ok(store)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// How the server's certificate is checked: not at all (`prefer` and `require` without
/// `sslrootcert`, libpq's meaning: encrypted, any certificate taken), its chain only
/// (`verify-ca`), or its chain and its name (`verify-full`). The handshake's signatures are
/// checked in every case.
#[derive(Debug)]
struct ServerCheck {
    /// None: any certificate.
    chain: Option<Arc<WebPkiServerVerifier>>,
    name: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.name => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algs = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algs = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_parameters_leave_the_url_and_set_the_mode() {
        let base = Path::new("/");
        let t = parse("postgres://u:pw@db:5432/x?application_name=a", base).unwrap();
        assert_eq!(t.mode, SslMode::Prefer);
        assert!(!t.verified());
        assert_eq!(t.driver_url, "postgres://u:pw@db:5432/x?application_name=a");
        let t = parse("postgres://db/x?sslmode=disable&connect_timeout=3", base).unwrap();
        assert_eq!(t.mode, SslMode::Disable);
        assert!(t.connector().is_none());
        assert_eq!(t.driver_url, "postgres://db/x?connect_timeout=3");
        let t = parse("postgres://db/x?sslmode=require", base).unwrap();
        assert_eq!(
            (t.mode, t.driver_url.as_str()),
            (SslMode::Require, "postgres://db/x")
        );
        // a CA makes require (and prefer) verify-ca, as in libpq
        let t = parse("postgres://db/x?sslmode=require&sslrootcert=system", base).unwrap();
        assert_eq!(t.mode, SslMode::VerifyCa);
        assert!(t.verified());
    }

    #[test]
    fn verify_ca_checks_the_chain_and_verify_full_the_name_too() {
        let dir = tempfile::tempdir().unwrap();
        crate::devpki::generate(dir.path()).unwrap();
        let other = tempfile::tempdir().unwrap();
        crate::devpki::generate(other.path()).unwrap();
        let chain = crate::tls::load_certs(&dir.path().join("server.crt")).unwrap();
        let now = UnixTime::now();
        let check = |mode: SslMode, ca: &Path, name: &str| {
            let v = server_check(mode, Some(ca.to_str().unwrap()), Path::new("/")).unwrap();
            let name = ServerName::try_from(name.to_owned()).unwrap();
            v.verify_server_cert(&chain[0], &chain[1..], &name, &[], now)
                .is_ok()
        };
        let ca = dir.path().join("ca.crt");
        let foreign = other.path().join("ca.crt");
        // the certificate names localhost, 127.0.0.1 and ::1
        assert!(check(SslMode::VerifyFull, &ca, "localhost"));
        assert!(!check(SslMode::VerifyFull, &ca, "db.example"));
        assert!(check(SslMode::VerifyCa, &ca, "db.example"));
        assert!(!check(SslMode::VerifyCa, &foreign, "localhost"));
        assert!(!check(SslMode::VerifyFull, &foreign, "localhost"));
    }

    #[test]
    fn what_cannot_work_is_refused_naming_the_parameter() {
        let base = Path::new("/nonexistent");
        let err = |u: &str| parse(u, base).unwrap_err();
        assert!(err("postgres://db/x?sslmode=verify-full").contains("needs sslrootcert"));
        assert!(err("postgres://db/x?sslmode=maybe").contains("sslmode=`maybe`"));
        let e = err("postgres://db/x?sslmode=verify-full&sslrootcert=ca%20file.pem");
        assert!(
            e.starts_with("sslrootcert: cannot read /nonexistent/ca file.pem"),
            "{e}"
        );
        assert!(err("postgres://db/x?sslcert=c.pem").contains("together"));
        assert!(err("postgres://db/x?sslmode=disable&sslrootcert=system").contains("not be used"));
        assert!(err("postgres://db/x?sslrootcert=%zz").contains("percent"));
    }
}
