//! Serving a gateway: opening the store and loading every key, binding the listeners, the upkeep
//! task, reload on SIGHUP, and graceful shutdown on SIGTERM/SIGINT.

use crate::config::Snapshot;
use crate::gateway::Gateway;
use crate::listener::{accept_loop, Kind};
use crate::store::Store;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// A started gateway.
pub struct Running {
    pub gateway: Arc<Gateway>,
    /// Bound address of each listener, by name (useful with port 0).
    pub addrs: Vec<(String, SocketAddr)>,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Running {
    pub fn addr(&self, listener: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(n, _)| n == listener)
            .map(|(_, a)| *a)
    }

    /// Stops accepting, asks every connection to finish its in-flight requests, and waits up to
    /// `shutdown_timeout` for them. Returns whether all drained in time.
    pub async fn shutdown(mut self) -> bool {
        let timeout = self.gateway.snapshot().limits.shutdown_timeout;
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        let gw = &self.gateway;
        let all = gw.max_connections() as u32;
        let drained = tokio::time::timeout(timeout, gw.conns.acquire_many(all)).await;
        // The use times of the last upkeep period, which would otherwise be lost on every restart.
        let gw = self.gateway.clone();
        let _ = tokio::task::spawn_blocking(move || flush_key_use(&gw)).await;
        drained.is_ok()
    }
}

/// Writes the keys used since the last flush to the store; on failure they wait for the next one.
fn flush_key_use(gw: &Gateway) {
    let used = gw.keys().take_used();
    if used.is_empty() {
        return;
    }
    if let Err(e) = gw.store().touch_keys(&used) {
        tracing::warn!(error = %e, "could not record key use times; retrying at the next flush");
        gw.keys().give_back(&used);
    }
}

/// Periodic upkeep: idle rate-limit keys, expired cache entries and revocations.
fn sweep(snap: &Snapshot) {
    let now = crate::clock::now();
    for l in snap.rate_limits.values() {
        l.sweep();
    }
    for j in &snap.jwts {
        if let Some(c) = &j.cache {
            c.sweep(now);
            // A key set past jwks_max_stale verifies nothing, cached or not.
            if let crate::auth::jwt::Keys::Remote(r) = &j.keys {
                if r.current().is_none() {
                    c.clear();
                }
            }
        }
    }
    snap.shared.revocations.purge(now);
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Where the first start writes the admin token it makes: beside the SQLite store, or in cluster
/// mode beside the config file.
pub fn admin_token_file(snap: &Snapshot) -> std::path::PathBuf {
    let dir = match &snap.store.postgres {
        Some(_) => snap.source.parent(),
        None => snap.store.sqlite.parent(),
    };
    dir.unwrap_or_else(|| Path::new(".")).join("admin-token")
}

/// A new admin token: 40 random base62 characters after `pca_`.
pub fn new_admin_token() -> String {
    format!("pca_{}", crate::keys::random_base62(40))
}

/// Opens the store and loads every key and revocation into memory, then binds every listener
/// (the admin one included) and starts serving.
pub async fn start(config_path: &Path, snap: Snapshot) -> std::io::Result<Running> {
    crate::install_crypto_provider();
    let t0 = std::time::Instant::now();
    let store_path = snap.store.sqlite.clone();
    let shared = snap.shared.clone();
    let need_token = snap.admin.token_sha256.is_none();
    let token_file = admin_token_file(&snap);
    let pg_cfg = snap
        .store
        .postgres
        .as_ref()
        .map(|p| (p.url.clone(), p.tls.clone(), p.resync));
    let feed_shared = snap.shared.clone();
    let oauth = snap.oauth.clone();
    let (store, stored_token, n_keys, feed) = tokio::task::spawn_blocking(move || {
        let (store, pg, from): (Arc<dyn Store>, _, _) = match &pg_cfg {
            Some((url, tls, _)) => {
                let pg = crate::store::postgres::Postgres::open(url, tls).map_err(io_err)?;
                let pg = Arc::new(pg);
                // Read before the load: a change committed meanwhile is applied twice, not lost.
                let from = crate::store::pg_feed::start_seq(&pg).map_err(io_err)?;
                (pg.clone() as Arc<dyn Store>, Some(pg), from)
            }
            None => (
                Arc::new(crate::store::sqlite::Sqlite::open(&store_path).map_err(io_err)?),
                None,
                0,
            ),
        };
        let n = store
            .for_each_key(&mut |row| shared.keys.put(row))
            .map_err(io_err)?;
        let now = crate::clock::now_secs();
        for (jti, until) in store.load_revocations(now).map_err(io_err)? {
            shared.revocations.revoke(&jti, until as f64);
        }
        if let Some(o) = &oauth {
            crate::oauth_server::lifecycle::load(o, &store_path, &*store, &shared.oauth)?;
        }
        shared.keys.loaded.store(true, Ordering::Release);
        let mut stored = None;
        if need_token {
            stored = match store.setting("admin_token_sha256").map_err(io_err)? {
                Some(v) => crate::digest::parse_sha256(&v),
                None => {
                    let token = new_admin_token();
                    let h = crate::keys::hash_key(&token);
                    // The file first: a token whose hash is stored but that nobody can read
                    // would lock the admin API.
                    crate::devpki::write_secret_file(&token_file, &token)?;
                    store
                        .set_setting(
                            "admin_token_sha256",
                            &format!("sha256:{}", crate::digest::hex_lower(&h)),
                        )
                        .map_err(io_err)?;
                    // Never into the logs (journald, Kubernetes keep them): only where it is.
                    tracing::warn!(file = %token_file.display(), "first start: a new admin token is in this file (mode 0600); read it, keep it elsewhere, delete the file; only its hash is stored");
                    Some(h)
                }
            };
        }
        let feed = match (pg, &pg_cfg) {
            (Some(pg), Some((_, _, resync))) => Some(crate::store::pg_feed::Feed::spawn(
                pg,
                feed_shared,
                from,
                *resync,
            )?),
            _ => None,
        };
        Ok::<_, std::io::Error>((store, stored, n, feed))
    })
    .await
    .map_err(io_err)??;
    let store_name = match &snap.store.postgres {
        Some(p) => crate::values::redact_url(&p.url),
        None => snap.store.sqlite.display().to_string(),
    };
    tracing::info!(keys = n_keys, ms = t0.elapsed().as_millis() as u64, store = %store_name, "keys loaded");
    let mut bound = Vec::new();
    for l in &snap.listeners {
        let tcp = TcpListener::bind(l.bind).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("listener `{}` cannot bind {}: {e}", l.name, l.bind),
            )
        })?;
        let self_signed = l.raw_tls.as_ref().is_some_and(|t| t.self_signed.is_some());
        if self_signed {
            tracing::warn!(listener = %l.name, "using an in-memory self-signed certificate: for development only");
        }
        bound.push((l.name.clone(), tcp));
    }
    let admin_tcp = TcpListener::bind(snap.admin.bind).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("admin cannot bind {}: {e}", snap.admin.bind),
        )
    })?;
    snap.start_background();
    let mut gateway = Gateway::new(config_path, snap, store, stored_token);
    gateway.feed = feed;
    let gateway = Arc::new(gateway);
    let (tx, rx) = watch::channel(false);
    let conns = gateway.conns.clone();
    let mut tasks = JoinSet::new();
    let mut addrs = Vec::new();
    for (name, tcp) in bound {
        let addr = tcp.local_addr()?;
        tracing::info!(listener = %name, addr = %addr, "listening");
        addrs.push((name.to_string(), addr));
        tasks.spawn(accept_loop(
            tcp,
            name,
            gateway.clone(),
            conns.clone(),
            rx.clone(),
            Kind::Proxy,
        ));
    }
    let admin_addr = admin_tcp.local_addr()?;
    tracing::info!(listener = "admin", addr = %admin_addr, "listening");
    for w in cleartext_warnings(&gateway.snapshot(), admin_addr) {
        tracing::warn!("{w}");
    }
    // The admin API has its own connection budget: a flood on the public side cannot lock it out.
    tasks.spawn(accept_loop(
        admin_tcp,
        Arc::from("admin"),
        gateway.clone(),
        Arc::new(Semaphore::new(256)),
        rx.clone(),
        Kind::Admin,
    ));
    // Upkeep: idle rate-limit keys, expired cache entries, expired revocations; key use times
    // written to the store in batches, off the request path.
    let weak = Arc::downgrade(&gateway);
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        let mut stop = rx.clone();
        let mut rounds: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let Some(gw) = weak.upgrade() else { return };
            rounds += 1;
            let purge = rounds % 720 == 0;
            // All of it off the serving threads: sweeping a million tracked rate-limit clients
            // takes ~50 ms (benches/limiter_memory.rs), a stall for every request on a worker.
            let _ = tokio::task::spawn_blocking(move || {
                let snap = gw.snapshot();
                sweep(&snap);
                flush_key_use(&gw);
                if let Some(o) = &snap.oauth {
                    let now = crate::clock::now_secs();
                    let store = gw.store();
                    let r = crate::oauth_server::lifecycle::rotate(
                        o,
                        &*store,
                        &snap.shared.oauth,
                        now,
                        false,
                    );
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "signing key rotation failed; retrying");
                    }
                }
                if purge {
                    let _ = gw.store().purge_revocations(crate::clock::now_secs());
                }
            })
            .await;
        }
    });
    Ok(Running {
        gateway,
        addrs,
        admin_addr,
        shutdown: tx,
        tasks,
    })
}

/// Secrets that would cross a network unprotected, one warning each: the admin API on a
/// non-loopback address without TLS (the admin token, new API keys), a PostgreSQL connection that
/// is not TLS or does not verify the server (key hashes, revocations), Redis without TLS.
pub fn cleartext_warnings(snap: &Snapshot, admin: std::net::SocketAddr) -> Vec<String> {
    use crate::values::{redact_url, url_host_is_local};
    let mut w = Vec::new();
    if !admin.ip().is_loopback() && snap.admin.tls.is_none() {
        w.push(format!("the admin API listens on {admin} without TLS: the admin token and new API keys cross the network in clear; bind it to loopback or set admin.tls"));
    }
    if let Some(pg) = &snap.store.postgres {
        if !pg.tls.verified() && !url_host_is_local(&pg.url) {
            w.push(format!("the PostgreSQL connection to {} (sslmode={}) does not verify the server or is not TLS: key hashes and revocations can be read or changed on the way; use sslmode=verify-full with sslrootcert", redact_url(&pg.url), pg.tls.mode.as_str()));
        }
    }
    if let Some(r) = &snap.store.redis {
        if r.display.starts_with("redis://") && !url_host_is_local(&r.display) {
            w.push(format!(
                "Redis at {} is reached without TLS: use a rediss:// URL",
                r.display
            ));
        }
    }
    w
}

/// `portcullis run`: serve until SIGTERM/SIGINT, reloading on SIGHUP.
pub async fn run(config_path: &Path, snap: Snapshot) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let running = start(config_path, snap).await?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tracing::info!(config = %config_path.display(), "portcullis started");
    loop {
        tokio::select! {
            _ = hup.recv() => match running.gateway.reload() {
                Ok(()) => tracing::info!("config reloaded"),
                Err(e) => tracing::error!(errors = %e, "reload failed; the previous config keeps serving"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    if running.shutdown().await {
        tracing::info!("shutdown complete");
    } else {
        tracing::warn!("shutdown timeout reached with requests still in flight");
    }
    Ok(())
}
