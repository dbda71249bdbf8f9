//! The running gateway's state: the current [`Snapshot`] behind an `ArcSwap` (swapped whole on
//! reload), the store, the state shared across reloads, metrics and request ids. What serves it
//! (listeners, upkeep, signals) is [`crate::server`]'s.

use crate::config::{self, ConfigErrors, Snapshot};
use crate::keys::KeyRing;
use crate::state::Shared;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use arc_swap::ArcSwap;
use http::HeaderValue;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

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
    pub feed: Option<Arc<crate::store::pg_feed::Feed>>,
    /// The proxy listeners' connection slots (`limits.max_connections`), resized on reload.
    pub conns: Arc<Semaphore>,
    max_conns: AtomicUsize,
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
        let max_conns = snap.limits.max_connections;
        Gateway {
            conns: Arc::new(Semaphore::new(max_conns)),
            max_conns: AtomicUsize::new(max_conns),
            shared: snap.shared.clone(),
            snapshot: ArcSwap::from_pointee(snap),
            config_path: config_path.to_path_buf(),
            id_prefix: crate::digest::hex_lower(&seed),
            id_counter: AtomicU64::new(0),
            store,
            stored_token,
            metrics: Metrics::new(),
            feed: None,
        }
    }

    pub fn store_backend(&self) -> &'static str {
        self.snapshot().store.backend()
    }

    /// The store (and, in cluster mode, this replica's change feed) is reachable now.
    pub fn store_up(&self) -> bool {
        self.store.is_up()
            && self
                .feed
                .as_ref()
                .is_none_or(|f| f.connected.load(Ordering::Relaxed))
    }

    pub fn keys(&self) -> &KeyRing {
        &self.shared.keys
    }

    pub fn revocations(&self) -> &crate::auth::revocation::Revocations {
        &self.shared.revocations
    }

    /// The authorization server's clients and signing keys.
    pub fn oauth(&self) -> Arc<crate::oauth::OauthState> {
        self.shared.oauth.clone()
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

    /// The current `limits.max_connections`.
    pub fn max_connections(&self) -> usize {
        self.max_conns.load(Ordering::Relaxed)
    }

    /// Re-reads the config file and puts all of it in force, or none of it: a change a running
    /// gateway cannot take over (listener addresses, `admin.bind`, `store`, `workers`) refuses
    /// the reload, naming each, and the old config keeps serving. Everything else applies: the
    /// new snapshot serves the next request, the log level and format change in place, the
    /// connection limit is resized, files named in the config have been read (and the audit log
    /// opened) anew.
    pub fn reload(&self) -> Result<(), ConfigErrors> {
        let r = self.try_reload();
        self.metrics.reload(r.is_ok());
        r
    }

    fn try_reload(&self) -> Result<(), ConfigErrors> {
        let cur = self.snapshot();
        let next = config::load(&self.config_path, Some(&cur), config::Mode::Run)?;
        let mut refused = cur.needs_restart(&next);
        if !refused.is_empty() {
            if let Ok(text) = std::fs::read_to_string(&self.config_path) {
                let locator = config::locate::Locator::new(&text);
                for i in &mut refused {
                    i.at = locator.find(&i.path);
                }
            }
            return Err(ConfigErrors {
                file: self.config_path.clone(),
                issues: refused,
            });
        }
        if (next.logging.format, &next.logging.level) != (cur.logging.format, &cur.logging.level) {
            crate::telemetry::subscriber::apply(next.logging.format, &next.logging.level);
        }
        self.resize_connections(next.limits.max_connections);
        next.start_background();
        self.snapshot.store(Arc::new(next));
        Ok(())
    }

    /// More slots are there at once; fewer as soon as enough connections have closed (the
    /// slots are taken and forgotten), never by cutting one.
    fn resize_connections(&self, max: usize) {
        let old = self.max_conns.swap(max, Ordering::Relaxed);
        if max > old {
            self.conns.add_permits(max - old);
        } else if max < old {
            let (conns, n) = (self.conns.clone(), (old - max) as u32);
            tokio::spawn(async move {
                if let Ok(p) = conns.acquire_many_owned(n).await {
                    p.forget();
                }
            });
        }
    }
}
