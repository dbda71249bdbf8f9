//! Who is on the other end: the facts of one connection fixed at accept and handshake time
//! ([`ConnInfo`], the verified client certificate), its activity counters for the deadlines, and
//! which address a request comes from when trusted proxies sit in front.

use crate::config::issues::Issues;
use crate::error::{Reason, Reject};
use crate::values::S;
use http::HeaderValue;
use ipnet::IpNet;
use rustls_pki_types::CertificateDer;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// What is known about a connection, fixed at accept and handshake time.
#[derive(Debug)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub peer: SocketAddr,
    pub tls: bool,
    /// SNI the client sent, lowercased.
    pub sni: Option<String>,
    pub client_cert: Option<ClientCert>,
    /// Activity flag and in-flight count for the idle timeout.
    pub activity: Arc<Activity>,
    /// The peer address (IPv4-mapped addresses unmapped) as a header value, formatted once per
    /// connection instead of once per request (`X-Forwarded-For` / `X-Real-IP`; about 1 400
    /// instructions a request under callgrind).
    pub peer_value: HeaderValue,
    /// The connection's slot under `max_connections`. Held by this struct so that a WebSocket
    /// tunnel (which outlives the HTTP connection it came from) keeps it until it closes.
    pub slot: Option<OwnedSemaphorePermit>,
}

impl ConnInfo {
    /// Refuses every request on a connection whose client certificate could not be passed on
    /// unchanged (`ClientCert::control_chars`).
    pub fn check_client_cert(&self) -> Result<(), Reject> {
        if self.client_cert.as_ref().is_some_and(|c| c.control_chars) {
            return Err(Reject::new(
                Reason::ClientCertInvalid,
                "the client certificate's subject or names hold control characters",
            ));
        }
        Ok(())
    }
}

/// `ConnInfo::peer_value` for an address.
pub fn peer_value(ip: std::net::IpAddr) -> HeaderValue {
    HeaderValue::from_str(&canonical_ip(ip).to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// What the connection's deadlines look at (see `listener::serve_http`).
#[derive(Debug, Default)]
pub struct Activity {
    /// Requests whose response has not been sent to the end.
    pub(crate) in_flight: AtomicUsize,
    /// Requests ever begun on the connection.
    pub(crate) started: AtomicU64,
    /// Requests whose handler is still working (waiting on the upstream is not a stall).
    pub(crate) handling: AtomicUsize,
    /// A response body frame went out since the last idle check.
    pub(crate) progressed: AtomicBool,
    /// The last poll of a response body found the upstream had nothing yet (a quiet stream,
    /// such as server-sent events between events, is not a stall).
    pub(crate) upstream_quiet: AtomicBool,
}

/// Counts a request in flight until dropped (with its response body).
#[derive(Debug)]
pub struct InFlight(pub(crate) Arc<Activity>);

impl Activity {
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Facts about a verified client certificate, captured once per connection.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// RFC 4514-style subject, e.g. `CN=alice,O=Example`.
    pub subject: String,
    /// The subject's (first) common name, when it has one.
    pub cn: Option<String>,
    /// Lowercase hex SHA-256 of the DER certificate.
    pub sha256: String,
    /// DNS, URI, email and IP subject alternative names.
    pub sans: Vec<String>,
    /// The subject or an alternative name holds a control character: it cannot be passed on as
    /// a header without changing it, so every request on the connection is refused (SPEC
    /// section 5). Decided once, at the handshake.
    pub control_chars: bool,
}

impl ClientCert {
    /// The alternative names of one kind (`DNS`, `URI`, ...), without the prefix.
    pub fn sans_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.sans
            .iter()
            .filter_map(move |s| s.strip_prefix(kind).and_then(|rest| rest.strip_prefix(':')))
    }
}

/// The subject as text: RDNs in certificate order joined by `, `, attributes of one RDN by `+`,
/// each `TYPE=value` with RFC 4514's escapes (`\,`, `\+`, `\"`, `\\`, `\;`, `\<`, `\>`, `\=`,
/// a leading `#` or space, a trailing space), so that no value can pass for a further
/// attribute (`CN=alice\, O=Acme` is one CN). A value that is no string is `#` + its hex.
pub fn subject_text(name: &x509_parser::x509::X509Name<'_>) -> String {
    use x509_parser::objects::{oid2abbrev, oid_registry};
    let mut out = String::new();
    for (i, rdn) in name.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            match oid2abbrev(attr.attr_type(), oid_registry()) {
                Ok(abbrev) => out.push_str(abbrev),
                Err(_) => out.push_str(&attr.attr_type().to_id_string()),
            }
            out.push('=');
            match attr.as_str() {
                Ok(v) => escape_dn_value(&mut out, v),
                Err(_) => {
                    out.push('#');
                    out.push_str(&crate::digest::hex_lower(attr.attr_value().as_bytes()));
                }
            }
        }
    }
    out
}

fn escape_dn_value(out: &mut String, v: &str) {
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

pub fn client_cert_info(der: &CertificateDer<'_>) -> ClientCert {
    let sha256 = crate::digest::hex_lower(&crate::digest::sha256(der.as_ref()));
    let (subject, cn, sans) = match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok((_, cert)) => {
            let subject = subject_text(cert.subject());
            let cn = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|a| a.as_str().ok())
                .map(str::to_owned);
            let mut sans = Vec::new();
            if let Ok(Some(ext)) = cert.subject_alternative_name() {
                use x509_parser::extensions::GeneralName;
                for n in &ext.value.general_names {
                    match n {
                        GeneralName::DNSName(s) => sans.push(format!("DNS:{s}")),
                        GeneralName::URI(s) => sans.push(format!("URI:{s}")),
                        GeneralName::RFC822Name(s) => sans.push(format!("email:{s}")),
                        GeneralName::IPAddress(b) => {
                            let ip = match b.len() {
                                4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                                16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                                _ => None,
                            };
                            if let Some(ip) = ip {
                                sans.push(format!("IP:{ip}"));
                            }
                        }
                        _ => {}
                    }
                }
            }
            (subject, cn, sans)
        }
        // rustls already verified the chain, so this cannot happen for a real certificate.
        Err(_) => (String::new(), None, Vec::new()),
    };
    let control_chars = std::iter::once(&subject)
        .chain(&cn)
        .chain(&sans)
        .any(|s| s.chars().any(char::is_control));
    ClientCert {
        subject,
        cn,
        sha256,
        sans,
        control_chars,
    }
}

/// `::ffff:10.0.0.1` is `10.0.0.1` for every trust decision.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The trusted-proxy set (`trusted_proxies`): only these peers may set `X-Forwarded-For` and
/// friends.
#[derive(Debug, Default, Clone)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From the config's list of addresses and CIDRs; a bad entry is reported at its index.
    pub fn compile(list: &[S], issues: &mut Issues) -> TrustedProxies {
        let mut nets = Vec::new();
        for (i, t) in list.iter().enumerate() {
            match t.0.parse::<IpNet>() {
                Ok(n) => nets.push(n),
                Err(_) => match t.0.parse::<IpAddr>() {
                    Ok(ip) => nets.push(IpNet::from(ip)),
                    Err(_) => issues.add(
                        format!("trusted_proxies[{i}]"),
                        format!("`{t}` is not an IP address or CIDR (e.g. 10.0.0.0/8)"),
                    ),
                },
            }
        }
        TrustedProxies(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The address rate limits and the audit log use: the socket peer, or, when the peer is a
    /// trusted proxy, the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
    pub fn client_ip(&self, conn: &ConnInfo, h: &http::HeaderMap) -> IpAddr {
        let peer = canonical_ip(conn.peer.ip());
        if self.is_empty() || !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        let values: Vec<&HeaderValue> = h.get_all("x-forwarded-for").iter().collect();
        for v in values.iter().rev() {
            let Ok(s) = v.to_str() else { break };
            for part in s.rsplit(',') {
                match part.trim().parse::<IpAddr>() {
                    Ok(ip) => {
                        client = canonical_ip(ip);
                        if !self.contains(client) {
                            return client;
                        }
                    }
                    Err(_) => return client,
                }
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(attrs: &[(rcgen::DnType, &str)]) -> ClientCert {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in attrs {
            p.distinguished_name.push(t.clone(), *v);
        }
        let c = p.self_signed(&key).expect("cert");
        client_cert_info(c.der())
    }

    #[test]
    fn a_value_cannot_pass_for_another_attribute() {
        use rcgen::DnType::{CommonName, OrganizationName};
        let forged = cert(&[(CommonName, "alice, O=Acme")]);
        let real = cert(&[(CommonName, "alice"), (OrganizationName, "Acme")]);
        assert_eq!(real.subject, "CN=alice, O=Acme");
        assert_eq!(forged.subject, "CN=alice\\, O\\=Acme");
        assert_ne!(forged.subject, real.subject);
        assert_eq!(forged.cn.as_deref(), Some("alice, O=Acme"));
        let edges = cert(&[(CommonName, "#x "), (OrganizationName, "a+b\"c\\<>;")]);
        assert_eq!(edges.subject, "CN=\\#x\\ , O=a\\+b\\\"c\\\\\\<\\>\\;");
    }
}
