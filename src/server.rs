//! The running gateway: the current [`Snapshot`] behind an `ArcSwap`, the listeners, reload on
//! SIGHUP, and graceful shutdown on SIGTERM/SIGINT.

use crate::config::{self, ConfigErrors, Shared, Snapshot};
use crate::keys::KeyRing;
use crate::listener::{accept_loop, Kind};
use crate::store::Store;
use crate::telemetry_metrics::Metrics;
use arc_swap::ArcSwap;
use http::HeaderValue;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    config_path: PathBuf,
    id_prefix: String,
    id_counter: AtomicU64,
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    /// The admin token hash kept in the store (used when the config gives none).
    stored_token: Option<[u8; 32]>,
    pub metrics: Metrics,
    /// Cluster mode: the replica's change feed from PostgreSQL.
    pub feed: Option<Arc<crate::store::postgres::Feed>>,
}

impl Gateway {
    pub fn new(
        config_path: &Path,
        snap: Snapshot,
        store: Arc<dyn Store>,
        stored_token: Option<[u8; 32]>,
    ) -> Gateway {
        let mut seed = [0u8; 6];
        let _ = aws_lc_rs::rand::fill(&mut seed);
        Gateway {
            shared: snap.shared.clone(),
            snapshot: ArcSwap::from_pointee(snap),
            config_path: config_path.to_path_buf(),
            id_prefix: crate::tls::hex_lower(&seed),
            id_counter: AtomicU64::new(0),
            store,
            stored_token,
            metrics: Metrics::default(),
            feed: None,
        }
    }

    pub fn store_backend(&self) -> &'static str {
        if self.snapshot().postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    pub fn keys(&self) -> &KeyRing {
        &self.shared.keys
    }

    pub fn revocations(&self) -> &crate::auth::revocation::Revocations {
        &self.shared.revocations
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The config's `admin.token_sha256`, else the one generated at first start.
    pub fn admin_token_sha256(&self) -> Option<[u8; 32]> {
        self.snapshot().admin.token_sha256.or(self.stored_token)
    }

    /// Records an admin change in the store's trail and the log (never a secret).
    pub async fn admin_audit(&self, actor: &str, action: &str, target: &str, detail: &str) {
        tracing::info!(target: "admin", actor, action, key = target, detail, "admin change");
        let store = self.store.clone();
        let (a, b, c, d) = (
            actor.to_owned(),
            action.to_owned(),
            target.to_owned(),
            detail.to_owned(),
        );
        let r = tokio::task::spawn_blocking(move || store.audit(&a, &b, &c, &d)).await;
        if !matches!(r, Ok(Ok(()))) {
            tracing::warn!(action, "could not write the admin audit trail");
        }
    }

    /// `/readyz`: config, store and keys loaded; each JWKS source's state.
    pub fn readiness(&self) -> (bool, serde_json::Value) {
        let snap = self.snapshot();
        let keys = self.keys().loaded.load(Ordering::Acquire);
        // Loaded is what readiness needs: once the keys are in memory a replica serves them
        // even while the store is down (failing readiness then would take every replica out of
        // the load balancer at once). The store's state is reported beside it.
        let store_up = self.store_up();
        let mut jwks = Vec::new();
        for j in &snap.jwts {
            if let crate::auth::jwt::Keys::Remote(r) = &j.keys {
                let source = match &r.location {
                    crate::auth::jwks::JwksLocation::Url(u) => u.clone(),
                    crate::auth::jwks::JwksLocation::Discovery(i) => i.clone(),
                };
                jwks.push(serde_json::json!({"authenticator": &*j.name, "source": source, "state": r.state()}));
            }
        }
        (
            keys,
            serde_json::json!({"ready": keys, "config": true, "store": keys, "store_backend": self.store_backend(), "store_up": store_up, "redis_up": snap.shared_limits.as_ref().map(|l| l.is_up()), "keys": keys, "jwks": jwks}),
        )
    }

    /// The store (and, in cluster mode, this replica's change feed) is reachable now.
    fn store_up(&self) -> bool {
        self.store.is_up()
            && self
                .feed
                .as_ref()
                .is_none_or(|f| f.connected.load(Ordering::Relaxed))
    }

    pub fn render_metrics(&self) -> String {
        use std::fmt::Write as _;
        let snap = self.snapshot();
        let mut extra = String::new();
        let now = crate::keys::now_unix();
        let _ = writeln!(extra, "# HELP portcullis_api_keys_active API keys that are neither revoked nor expired.\n# TYPE portcullis_api_keys_active gauge\nportcullis_api_keys_active {}", self.keys().active(now));
        let _ = writeln!(extra, "# HELP portcullis_jwks_refreshes_total JWKS fetches by source and result.\n# TYPE portcullis_jwks_refreshes_total counter");
        for r in &snap.remote_jwks {
            let (ok, failed) = r.fetch_counts();
            let src = format!("{:?}", r.location).replace('"', "'");
            let _ = writeln!(
                extra,
                "portcullis_jwks_refreshes_total{{source=\"{src}\",result=\"ok\"}} {ok}"
            );
            let _ = writeln!(
                extra,
                "portcullis_jwks_refreshes_total{{source=\"{src}\",result=\"error\"}} {failed}"
            );
        }
        let up = self.store_up();
        let _ = writeln!(extra, "# HELP portcullis_store_up 1 while the key store (and, in cluster mode, its change feed) is reachable.\n# TYPE portcullis_store_up gauge\nportcullis_store_up{{backend=\"{}\"}} {}", self.store_backend(), u8::from(up));
        let _ = writeln!(extra, "# HELP portcullis_keys_loaded API keys held in memory (any state).\n# TYPE portcullis_keys_loaded gauge\nportcullis_keys_loaded {}", self.keys().len());
        if let Some(l) = &snap.shared_limits {
            let _ = writeln!(
                extra,
                "portcullis_store_up{{backend=\"redis\"}} {}",
                u8::from(l.is_up())
            );
            let _ = writeln!(extra, "# HELP portcullis_redis_fallback_total Rate-limit decisions made without Redis (on_redis_error applied).\n# TYPE portcullis_redis_fallback_total counter\nportcullis_redis_fallback_total {}", l.fallbacks.load(Ordering::Relaxed));
        }
        if let Some(f) = &self.feed {
            let _ = writeln!(extra, "# HELP portcullis_store_changes_applied The last change number this replica applied from the store.\n# TYPE portcullis_store_changes_applied gauge\nportcullis_store_changes_applied {}", f.applied.load(Ordering::Relaxed));
        }
        let _ = writeln!(extra, "# HELP portcullis_audit_dropped_total Audit lines dropped because the writer fell behind.\n# TYPE portcullis_audit_dropped_total counter\nportcullis_audit_dropped_total {}", snap.audit.dropped.load(Ordering::Relaxed));
        self.metrics.render(&extra)
    }

    /// The config file as JSON with secrets redacted (`${VAR}` references are shown, not their
    /// values).
    pub fn redacted_config(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.config_path).unwrap_or_default();
        let v: serde_json::Value = serde_yaml::from_str(&text).unwrap_or(serde_json::Value::Null);
        fn redact(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, val) in m.iter_mut() {
                        if matches!(
                            k.as_str(),
                            "secret" | "token_sha256" | "postgres" | "redis" | "key"
                        ) {
                            *val = serde_json::Value::String("<redacted>".into());
                        } else {
                            redact(val);
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
                _ => {}
            }
        }
        let mut v = v;
        redact(&mut v);
        v
    }

    /// The current config; a request holds one for its whole life.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Keeps a client's `X-Request-Id` when it is well formed (1-128 of `A-Za-z0-9._:-`), else
    /// makes one: a random per-process prefix and a counter, unique without a syscall.
    pub fn request_id(&self, client: Option<&HeaderValue>) -> HeaderValue {
        if let Some(v) = client {
            let b = v.as_bytes();
            if !b.is_empty()
                && b.len() <= 128
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
            {
                return v.clone();
            }
        }
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        // `{prefix}{n:012x}` by hand: `format!` cost ~1 200 instructions a request.
        let prefix = self.id_prefix.as_bytes();
        let mut buf = [0u8; 64];
        let p = prefix.len().min(buf.len() - 12);
        buf[..p].copy_from_slice(&prefix[..p]);
        for (i, b) in buf[p..p + 12].iter_mut().enumerate() {
            *b = b"0123456789abcdef"[((n >> (4 * (11 - i))) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&buf[..p + 12]).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }

    /// Re-reads the config file and swaps it in. On any error the old config keeps serving.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let cur = self.snapshot();
        let next = config::load_shared(
            &self.config_path,
            Some(&cur),
            config::Mode::Run,
            &self.shared,
        )?;
        let same_listeners = cur.listeners.len() == next.listeners.len()
            && cur.listeners.iter().zip(&next.listeners).all(|(a, b)| {
                a.name == b.name && a.bind == b.bind && a.tls.is_some() == b.tls.is_some()
            });
        if !same_listeners {
            return Err(ConfigErrors {
                file: self.config_path.clone(),
                issues: vec![config::ConfigIssue {
                    path: "listeners".into(),
                    message: "listeners (name, bind, TLS on/off) cannot change on reload; restart the gateway".into(),
                    at: None,
                }],
            });
        }
        next.start_background();
        self.snapshot.store(Arc::new(next));
        Ok(())
    }
}

/// A started gateway.
pub struct Running {
    pub gateway: Arc<Gateway>,
    /// Bound address of each listener, by name (useful with port 0).
    pub addrs: Vec<(String, SocketAddr)>,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    conns: Arc<Semaphore>,
    max_conns: usize,
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
        let drained =
            tokio::time::timeout(timeout, self.conns.acquire_many(self.max_conns as u32)).await;
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

/// Binds every listener and starts serving.
fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
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
    let store_path = snap.store_path.clone();
    let shared = snap.shared.clone();
    let need_token = snap.admin.token_sha256.is_none();
    let pg_cfg = snap.postgres.as_ref().map(|p| (p.url.clone(), p.resync));
    let feed_shared = snap.shared.clone();
    let (store, stored_token, n_keys, feed) = tokio::task::spawn_blocking(move || {
        let (store, pg, from): (Arc<dyn Store>, _, _) = match &pg_cfg {
            Some((url, _)) => {
                let pg = Arc::new(crate::store::postgres::Postgres::open(url).map_err(io_err)?);
                // Read before the load: a change committed meanwhile is applied twice, not lost.
                let from = crate::store::postgres::start_seq(&pg).map_err(io_err)?;
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
        let now = crate::keys::now_unix();
        for (jti, until) in store.load_revocations(now).map_err(io_err)? {
            shared.revocations.revoke(&jti, until as f64);
        }
        shared.keys.loaded.store(true, Ordering::Release);
        let mut stored = None;
        if need_token {
            stored = match store.setting("admin_token_sha256").map_err(io_err)? {
                Some(v) => config::parse_sha256(&v),
                None => {
                    let token = new_admin_token();
                    let h = crate::keys::hash_key(&token);
                    store
                        .set_setting(
                            "admin_token_sha256",
                            &format!("sha256:{}", crate::tls::hex_lower(&h)),
                        )
                        .map_err(io_err)?;
                    // Shown once, on the terminal; only its hash is kept.
                    println!("admin token (shown once; only its hash is stored): {token}");
                    Some(h)
                }
            };
        }
        let feed = match (pg, &pg_cfg) {
            (Some(pg), Some((_, resync))) => Some(crate::store::postgres::Feed::spawn(
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
    let store_name = match &snap.postgres {
        Some(p) => crate::store::postgres::redact_url(&p.url),
        None => snap.store_path.display().to_string(),
    };
    tracing::info!(keys = n_keys, ms = t0.elapsed().as_millis() as u64, store = %store_name, "keys loaded");
    let max_conns = snap.limits.max_connections;
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
    let conns = Arc::new(Semaphore::new(max_conns));
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
                gw.snapshot().sweep();
                flush_key_use(&gw);
                if purge {
                    let _ = gw.store().purge_revocations(crate::keys::now_unix());
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
        conns,
        max_conns,
        tasks,
    })
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
