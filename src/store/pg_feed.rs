//! The change feed of cluster mode: each replica follows PostgreSQL (LISTEN/NOTIFY, and a resync
//! every `resync` interval) and applies every key, revocation, client and signing-key change to
//! memory, in change-number order (see [`super::postgres`] for why none is skipped).

use super::pg_oauth;
use super::postgres::{current_seq, keys_since, revocations_since, Postgres, CHANNEL, WRITE_LOCK};
use super::{pg_err as db_err, StoreError, StoreResult};
use postgres::Client;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Follows the database for one replica: applies every key and revocation change to memory.
#[derive(Debug)]
pub struct Feed {
    /// The highest change number applied.
    pub applied: AtomicI64,
    /// True while the feed's connection is up and caught up.
    pub connected: AtomicBool,
}

impl Feed {
    /// Starts following from `from` (the change number current when the keys were loaded) on a
    /// thread of its own (the sync client blocks).
    pub fn spawn(
        pg: Arc<Postgres>,
        shared: Arc<crate::state::Shared>,
        from: i64,
        resync: Duration,
    ) -> std::io::Result<Arc<Feed>> {
        let feed = Arc::new(Feed {
            applied: AtomicI64::new(from),
            connected: AtomicBool::new(true),
        });
        // The first connection is made here, before the gateway serves: a replica that answers
        // requests is already listening, so no change made after its start can be missed.
        let first = feed
            .listen(&pg, &shared)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let f = feed.clone();
        std::thread::Builder::new()
            .name("pg-feed".into())
            .spawn(move || f.run(&pg, &shared, resync, first))?;
        Ok(feed)
    }

    fn run(&self, pg: &Postgres, shared: &crate::state::Shared, resync: Duration, first: Client) {
        let mut backoff = Duration::from_millis(250);
        let mut client = Some(first);
        loop {
            let r = match client.take() {
                Some(c) => self.follow(c, shared, resync),
                None => self
                    .listen(pg, shared)
                    .and_then(|c| self.follow(c, shared, resync)),
            };
            match r {
                Ok(()) => return,
                Err(e) => {
                    if self.connected.swap(false, Ordering::Relaxed) {
                        backoff = Duration::from_millis(250);
                        tracing::error!(store = %pg.display, error = %e, "store change feed lost; serving from memory, reconnecting");
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Connects, LISTENs, and catches up.
    fn listen(&self, pg: &Postgres, shared: &crate::state::Shared) -> StoreResult<Client> {
        let mut c = pg.connect()?;
        c.batch_execute(&format!("LISTEN {CHANNEL}"))
            .map_err(db_err)?;
        self.catch_up(&mut c, shared)?;
        if !self.connected.swap(true, Ordering::Relaxed) {
            tracing::info!(store = %pg.display, applied = self.applied.load(Ordering::Relaxed), "store change feed reconnected and caught up");
        }
        pg.up.store(true, Ordering::Relaxed);
        Ok(c)
    }

    /// Applies changes as they are announced, until the connection fails.
    fn follow(
        &self,
        mut c: Client,
        shared: &crate::state::Shared,
        resync: Duration,
    ) -> StoreResult<()> {
        loop {
            // Wait for an announcement (or the resync interval), then drain any that queued:
            // one catch-up covers them all.
            {
                use postgres::fallible_iterator::FallibleIterator;
                let mut n = c.notifications();
                n.timeout_iter(resync).next().map_err(db_err)?;
                let mut pending = n.iter();
                while pending.next().map_err(db_err)?.is_some() {}
            }
            if c.is_closed() {
                return Err(StoreError::Unavailable("connection closed".into()));
            }
            self.catch_up(&mut c, shared)?;
        }
    }

    fn catch_up(&self, c: &mut Client, shared: &crate::state::Shared) -> StoreResult<()> {
        let after = self.applied.load(Ordering::Relaxed);
        // Both reads in one snapshot: `applied` may only move to a number below which this
        // snapshot saw every committed change, keys and revocations alike.
        let mut tx = c
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(db_err)?;
        let (n, kmax) = keys_since(&mut tx, after, &mut |row| shared.keys.put(row))?;
        let (revs, rmax) = revocations_since(&mut tx, after)?;
        let (clients, cmax) = pg_oauth::clients_since(&mut tx, after)?;
        let (signing, smax) = pg_oauth::signing_keys_since(&mut tx, after)?;
        tx.commit().map_err(db_err)?;
        for (jti, until) in &revs {
            shared.revocations.revoke(jti, *until as f64);
        }
        for c in clients {
            shared.oauth.clients.put(c);
        }
        // (a replica without oauth_server has no secrets key and no use for signing keys)
        for k in signing
            .iter()
            .filter(|_| shared.oauth.keys.secrets().is_some())
        {
            // a key this replica cannot open (another secrets_key) cannot sign here; say so
            if let Err(e) = shared.oauth.keys.put(k) {
                tracing::error!(kid = %k.kid, error = %e, "signing key from the store not usable");
            }
        }
        let max = kmax.max(rmax).max(cmax).max(smax);
        if max > after {
            self.applied.store(max, Ordering::Relaxed);
            tracing::debug!(
                keys = n,
                revocations = revs.len(),
                applied = max,
                "store changes applied"
            );
        }
        Ok(())
    }
}

/// The change number to start following from: read before the initial load, so a change that
/// commits during the load is applied again (harmless) rather than missed.
pub fn start_seq(pg: &Postgres) -> StoreResult<i64> {
    pg.with(|c| {
        // Under the write lock no writer holds a drawn number it has not committed, so every
        // change numbered up to the value read is visible to the load that follows.
        let mut tx = c.transaction().map_err(db_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .map_err(db_err)?;
        let n = current_seq(&mut tx)?;
        tx.commit().map_err(db_err)?;
        Ok(n)
    })
}
