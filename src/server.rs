//! The running gateway: the current [`Snapshot`] behind an `ArcSwap`, the listeners, reload on
//! SIGHUP, and graceful shutdown on SIGTERM/SIGINT.

use crate::config::{self, ConfigErrors, Snapshot};
use crate::listener::accept_loop;
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
}

impl Gateway {
    pub fn new(config_path: &Path, snap: Snapshot) -> Gateway {
        let mut seed = [0u8; 6];
        let _ = aws_lc_rs::rand::fill(&mut seed);
        Gateway {
            snapshot: ArcSwap::from_pointee(snap),
            config_path: config_path.to_path_buf(),
            id_prefix: crate::tls::hex_lower(&seed),
            id_counter: AtomicU64::new(0),
        }
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
        let id = format!("{}{:012x}", self.id_prefix, n);
        HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }

    /// Re-reads the config file and swaps it in. On any error the old config keeps serving.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let cur = self.snapshot();
        let next = config::load(&self.config_path, Some(&cur))?;
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
        drained.is_ok()
    }
}

/// Binds every listener and starts serving.
pub async fn start(config_path: &Path, snap: Snapshot) -> std::io::Result<Running> {
    crate::install_crypto_provider();
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
    snap.start_background();
    let gateway = Arc::new(Gateway::new(config_path, snap));
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
        ));
    }
    // Upkeep: idle rate-limit keys, expired cache entries, expired revocations.
    let weak = Arc::downgrade(&gateway);
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        let mut stop = rx.clone();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let Some(gw) = weak.upgrade() else { return };
            gw.snapshot().sweep();
        }
    });
    Ok(Running {
        gateway,
        addrs,
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
