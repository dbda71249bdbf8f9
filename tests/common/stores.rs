//! The machine's PostgreSQL and Redis for tests: a fresh database per test, a TCP relay a test
//! can cut, and a TLS relay that puts TLS in front of either server (PostgreSQL's SSLRequest
//! answered), so the gateway's TLS to its stores is tested against the real servers.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpStream};

/// Runs one statement on its own thread (the sync client must not run on a runtime thread).
pub fn sql(url: &str, statement: &str) -> Result<(), String> {
    let (url, statement) = (url.to_owned(), statement.to_owned());
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
        c.batch_execute(&statement).map_err(|e| e.to_string())
    })
    .join()
    .unwrap()
}

/// A fresh, empty database for one test; dropped when the guard is.
pub struct Db {
    pub name: String,
    pub url: String,
}

impl Db {
    pub fn new(tag: &str) -> Db {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "pc_{tag}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let base = pg_base();
        sql(&base, &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {base} (cluster tests need it; set \
                 PORTCULLIS_TEST_PG to another server): {e}"
            )
        });
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => panic!("PORTCULLIS_TEST_PG has no database part: {base}"),
        };
        Db { name, url }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = sql(
            &pg_base(),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A TCP relay to PostgreSQL that the test can cut (closing every relayed connection and
/// refusing new ones) and restore: the database "goes down" for one gateway only, without
/// touching the machine's server.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl Relay {
    pub async fn start(target: std::net::SocketAddr) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = l.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        Relay { addr, up, cut }
    }

    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

pub async fn redis_reachable() {
    let a = redis_addr();
    if let Err(e) = TcpStream::connect(&a).await {
        panic!("Redis is not reachable at {a} (shared rate-limit tests need it; set PORTCULLIS_TEST_REDIS): {e}");
    }
}

/// A limit name no other test (or earlier run) shares: its Redis buckets are its own.
pub fn fresh_limit() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}_{}_{}",
        std::process::id(),
        unix_now(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// TLS in front of a plain server: accepts TLS with the test PKI's `server.crt` (localhost,
/// 127.0.0.1) and relays the decrypted stream to `target`. With `postgres`, first answers
/// PostgreSQL's SSLRequest with `S` (and closes a connection that does not ask for TLS), as a
/// server with `ssl = on` and `hostssl` only would. Counts completed handshakes.
pub struct TlsRelay {
    pub addr: SocketAddr,
    pub handshakes: Arc<AtomicUsize>,
}

impl TlsRelay {
    pub async fn start(target: SocketAddr, pki: &Pki, postgres: bool) -> TlsRelay {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let certs = portcullis::tls::load_certs(Path::new(&pki.path("server.crt"))).unwrap();
        let key = portcullis::tls::load_key(Path::new(&pki.path("server.key"))).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(portcullis::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let count = handshakes.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = l.accept().await else {
                    return;
                };
                let (acceptor, count) = (acceptor.clone(), count.clone());
                tokio::spawn(async move {
                    if postgres {
                        // SSLRequest: length 8, code 80877103
                        let mut req = [0u8; 8];
                        if inbound.read_exact(&mut req).await.is_err()
                            || req != [0, 0, 0, 8, 4, 210, 22, 47]
                        {
                            return;
                        }
                        if inbound.write_all(b"S").await.is_err() {
                            return;
                        }
                    }
                    let Ok(mut tls) = acceptor.accept(inbound).await else {
                        return;
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound).await;
                });
            }
        });
        TlsRelay { addr, handshakes }
    }
}
