//! `portcullis dev-pki`: a development CA, a server certificate (localhost, 127.0.0.1, ::1) and a
//! client certificate, to try TLS and mTLS. Development only: the keys are written unencrypted.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DevPkiError {
    #[error("certificate generation failed: {0}")]
    Gen(#[from] rcgen::Error),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// Files written, in order.
pub const FILES: &[&str] = &[
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "client.crt",
    "client.key",
    "client-ca.crt",
];

/// Midnight UTC of the day `days` from today.
fn day(days: i64) -> time::OffsetDateTime {
    let now = crate::clock::now_secs();
    let date = crate::clock::rfc3339(now + days * 86_400, 0);
    let num = |r: std::ops::Range<usize>| -> i64 {
        date.get(r).and_then(|s| s.parse().ok()).unwrap_or(1)
    };
    rcgen::date_time_ymd(num(0..4) as i32, num(5..7) as u8, num(8..10) as u8)
}

pub fn generate(out: &Path) -> Result<Vec<PathBuf>, DevPkiError> {
    std::fs::create_dir_all(out).map_err(|e| DevPkiError::Write(out.to_path_buf(), e))?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "Portcullis Development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // rcgen's default validity is 1975-4096; a scanner (sslyze) rightly flags that. The CA lives
    // ten years, the leaf certificates 397 days (the public-CA maximum); `dev-pki` makes new ones.
    ca.not_before = day(-1);
    ca.not_after = day(3650);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, &ca_key);

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = day(-1);
    server.not_after = day(397);
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client
        .distinguished_name
        .push(DnType::CommonName, "dev-client");
    client
        .distinguished_name
        .push(DnType::OrganizationName, "Portcullis Dev");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.not_before = day(-1);
    client.not_after = day(397);
    let client_cert = client.signed_by(&client_key, &issuer)?;

    let contents = [
        ca_cert.pem(),
        ca_key.serialize_pem(),
        format!("{}{}", server_cert.pem(), ca_cert.pem()),
        server_key.serialize_pem(),
        client_cert.pem(),
        client_key.serialize_pem(),
        ca_cert.pem(),
    ];
    let mut written = Vec::new();
    for (name, body) in FILES.iter().zip(contents) {
        let p = out.join(name);
        write_file(&p, &body, name.ends_with(".key"))?;
        written.push(p);
    }
    Ok(written)
}

fn write_file(p: &Path, body: &str, private: bool) -> Result<(), DevPkiError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(p)
        .map_err(|e| DevPkiError::Write(p.to_path_buf(), e))?;
    f.write_all(body.as_bytes())
        .map_err(|e| DevPkiError::Write(p.to_path_buf(), e))
}

/// Writes a secret (the first admin token, the authorization server's generated secrets key) to `file`, readable by
/// the owner only (0600), replacing an older one.
pub fn write_secret_file(file: &Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(file);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
    writeln!(f, "{token}")
}
