//! Host checks, normalization and routing; the client address behind trusted proxies.

use crate::support::*;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version};
use portcullis::config::Snapshot;
use portcullis::normalize::normalize;
use proptest::prelude::*;
use std::net::IpAddr;
use std::sync::LazyLock;

const RESOLVE_YAML: &str = r#"
listeners: [{ name: plain, bind: "127.0.0.1:0" }]
trusted_proxies: ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]
logging: { audit: "off" }
upstreams: { echo: { echo: true } }
routes:
  - { name: hosted, match: { host: "api.example.com", path_prefix: /hosted }, upstream: echo, auth: none }
  - { name: admin, match: { path_prefix: /admin }, upstream: echo, auth: none }
  - { name: rest, match: { path_prefix: / }, upstream: echo, auth: none }
"#;

static RESOLVE_SNAP: LazyLock<Snapshot> = LazyLock::new(|| load_snapshot(RESOLVE_YAML));

/// The path a route is chosen by (SPEC, docs/attack-cases.md PATH-13): each segment without its
/// `;` parameters; a segment that was only parameters disappears unless it is the last.
fn ref_route_path(normalized: &str) -> String {
    let segs: Vec<&str> = normalized[1..].split('/').collect();
    let mut kept = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let bare = s.split(';').next().unwrap_or("");
        if bare.is_empty() && i + 1 < segs.len() {
            continue;
        }
        kept.push(bare);
    }
    format!("/{}", kept.join("/"))
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix || path.starts_with(&format!("{prefix}/"))
}

const HOSTS: &[&str] = &[
    "api.example.com",
    "API.Example.COM.",
    "api.example.com:443",
    "api.example.com.:8080",
    "api.example.com:",
    "other.test",
    "user@api.example.com",
    "api.example.com@evil",
    "[::1]",
    "[::1]:80",
    "127.0.0.1",
    "",
    ".",
    "a..b",
    "api.example.com/x",
    "api.example.com\t",
    "xn--nxasmq6b.test",
    "%61pi.example.com",
];

#[derive(Debug, Clone)]
struct ResolveCase {
    method: &'static str,
    target: String,
    hosts: Vec<Vec<u8>>,
    version: u8,
    sni: Option<&'static str>,
}

/// Route-shaped paths: `admin` and `hosted` segments among dots, parameters and encodings.
fn route_path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "admin",
            "admin;x=1",
            ";x",
            "%61dmin",
            "adm%69n",
            "ADMIN",
            "hosted",
            "hosted;",
            "a",
            ".",
            "..",
            "%2e%2e",
            "",
            "admin%3b",
            "admin..",
            "x;/admin",
        ]),
        0..5,
    )
    .prop_map(|segs| format!("/{}", segs.join("/")))
}

fn resolve_case() -> impl Strategy<Value = ResolveCase> {
    let host_bytes = prop_oneof![
        6 => prop::sample::select(HOSTS).prop_map(|h| h.as_bytes().to_vec()),
        1 => value_bytes(),
    ];
    let hosts = prop_oneof![
        1 => Just(vec![]),
        6 => host_bytes.clone().prop_map(|h| vec![h]),
        1 => prop::collection::vec(host_bytes, 2..3),
    ];
    let path = prop_oneof![3 => route_path_strategy(), 2 => path_strategy()];
    let target = prop_oneof![
        6 => (path.clone(), prop::option::of("[a-z=&;]{0,8}")).prop_map(|(p, q)| match q {
            Some(q) => format!("{p}?{q}"),
            None => p,
        }),
        2 => (prop::sample::select(HOSTS), path)
            .prop_map(|(h, p)| format!("http://{h}{p}")),
        1 => "\\PC{0,20}",
        1 => Just("*".to_owned()),
    ];
    (
        prop::sample::select(vec!["GET", "GET", "GET", "POST", "CONNECT", "OPTIONS"]),
        target,
        hosts,
        prop_oneof![1 => Just(0u8), 4 => Just(1u8), 1 => Just(2u8)],
        prop_oneof![
            4 => Just(None),
            1 => prop::sample::select(vec!["api.example.com", "other.test"]).prop_map(Some),
        ],
    )
        .prop_map(|(method, target, hosts, version, sni)| ResolveCase {
            method,
            target,
            hosts,
            version,
            sni,
        })
}

proptest! {
    #![proptest_config(cfg(2048))]

    /// `route::resolve` never panics, refuses with 400 or 421, and when it accepts: the host is
    /// lower-case without port or trailing dot and agrees with the SNI; the path is the
    /// normalized path; the route is the one the `;`-stripped normalized path and the host
    /// select (so `/admin;x`, `/;x/admin`, `/%61dmin` all reach the `admin` route's rules).
    #[test]
    fn resolve_never_panics_and_routes_by_the_normalized_path(c in resolve_case()) {
        let Ok(uri) = c.target.parse::<http::Uri>() else { return Ok(()) };
        let mut b = Request::builder()
            .method(Method::from_bytes(c.method.as_bytes()).unwrap())
            .uri(uri.clone())
            .version([Version::HTTP_10, Version::HTTP_11, Version::HTTP_2][c.version as usize]);
        let mut n_hosts = 0;
        let mut host_has_at = false;
        for h in &c.hosts {
            if let Ok(v) = HeaderValue::from_bytes(h) {
                host_has_at |= h.contains(&b'@');
                n_hosts += 1;
                b = b.header(http::header::HOST, v);
            }
        }
        let req = b.body(()).unwrap();
        let conn = conn_info("127.0.0.1".parse().unwrap(), c.sni);
        match portcullis::route::resolve(&RESOLVE_SNAP.router, &conn, &req) {
            Err(e) => prop_assert!(
                e.status() == StatusCode::BAD_REQUEST || e.status() == StatusCode::MISDIRECTED_REQUEST,
                "{:?}: {} {}", c, e.status(), e.reason
            ),
            Ok(routed) => {
                prop_assert!(c.method != "CONNECT");
                prop_assert!(n_hosts <= 1, "{:?}: two Host headers accepted", c);
                prop_assert!(!host_has_at, "{:?}: user information in Host accepted", c);
                if let Some(h) = &routed.host {
                    prop_assert!(!h.is_empty() && !h.ends_with('.'), "{:?}", h);
                    prop_assert_eq!(h, &h.to_ascii_lowercase());
                    prop_assert!(!h.contains('@') && !h.contains('/'), "{:?}", h);
                    prop_assert!(h.starts_with('[') || !h.contains(':'), "{:?} keeps a port", h);
                }
                if let (Some(sni), Some(h)) = (c.sni, &routed.host) {
                    prop_assert_eq!(sni, h.as_str(), "{:?}", c);
                }
                let want = normalize(uri.path()).map(|n| n.into_owned());
                prop_assert_eq!(Ok(routed.path.clone()), want);
                let rp = ref_route_path(&routed.path);
                let expected = if routed.host.as_deref() == Some("api.example.com") && under(&rp, "/hosted") {
                    "hosted"
                } else if under(&rp, "/admin") {
                    "admin"
                } else {
                    "rest"
                };
                prop_assert_eq!(&*routed.route.name, expected, "{:?} (route path {:?})", c, rp);
            }
        }
    }
}

/// The right-most `X-Forwarded-For` entry that is not a trusted proxy (SPEC section 2); walking
/// from the right stops at an entry that is not an address (nothing left of garbage is
/// believed), keeping the last address reached.
fn ref_client_ip(peer: IpAddr, xff: &[Vec<u8>]) -> IpAddr {
    let trusted = |ip: IpAddr| {
        let ip = ip.to_canonical();
        match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 10 || v4 == std::net::Ipv4Addr::new(192, 0, 2, 1),
            IpAddr::V6(v6) => v6.segments()[0] == 0x2001 && v6.segments()[1] == 0x0db8,
        }
    };
    let peer = peer.to_canonical();
    if !trusted(peer) {
        return peer;
    }
    let mut entries: Vec<Option<IpAddr>> = Vec::new();
    for v in xff {
        match visible_ascii(v) {
            None => entries.push(None),
            Some(s) => entries.extend(s.split(',').map(|e| e.trim().parse::<IpAddr>().ok())),
        }
    }
    let mut client = peer;
    for e in entries.iter().rev() {
        match e {
            None => return client,
            Some(ip) => {
                client = ip.to_canonical();
                if !trusted(client) {
                    return client;
                }
            }
        }
    }
    client
}

const XFF_ENTRIES: &[&str] = &[
    "203.0.113.9",
    "10.1.1.1",
    "192.0.2.1",
    "192.0.2.2",
    "::ffff:10.0.0.9",
    "::ffff:203.0.113.10",
    "2001:db8::1",
    "2001:db9::1",
    "unknown",
    "",
    " 198.51.100.1 ",
    "198.51.100.1:80",
    "[::1]",
    "_hidden",
];

proptest! {
    #![proptest_config(cfg(2048))]

    #[test]
    fn client_ip_matches_reference(
        peer in prop::sample::select(vec!["10.9.9.9", "192.0.2.1", "::ffff:10.0.0.5", "203.0.113.1", "::1", "2001:db8::7"]),
        xff in prop::collection::vec(prop_oneof![
            4 => prop::collection::vec(prop::sample::select(XFF_ENTRIES), 0..4).prop_map(|v| v.join(",").into_bytes()),
            1 => value_bytes(),
        ], 0..3),
    ) {
        let peer: IpAddr = peer.parse().unwrap();
        let mut h = HeaderMap::new();
        for v in &xff {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                h.append("x-forwarded-for", v);
            }
        }
        let kept: Vec<Vec<u8>> = values_of(&h, "x-forwarded-for").into_iter().map(<[u8]>::to_vec).collect();
        let conn = conn_info(peer, None);
        let got = RESOLVE_SNAP.trusted_proxies.client_ip(&conn, &h);
        prop_assert_eq!(got, ref_client_ip(peer, &kept), "peer {} xff {:?}", peer, kept.iter().map(|v| String::from_utf8_lossy(v)).collect::<Vec<_>>());
    }

    #[test]
    fn canonical_ip_matches_std(b in any::<[u8; 16]>(), v4 in any::<bool>()) {
        let ip = if v4 {
            IpAddr::from([b[0], b[1], b[2], b[3]])
        } else {
            IpAddr::from(b)
        };
        prop_assert_eq!(portcullis::conn::canonical_ip(ip), ip.to_canonical());
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_ipv6_mapped());
        prop_assert_eq!(portcullis::conn::canonical_ip(mapped), IpAddr::from([b[0], b[1], b[2], b[3]]));
    }
}
