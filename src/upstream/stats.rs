//! What the gateway knows about one target's health ([`TargetStats`]): passive ejection after
//! consecutive failures, with a backoff that doubles while the target keeps failing, and the
//! verdict of the active health checks; and [`InFlight`], a request counted on a target until its
//! answer ends. A leaf module: the response body ([`crate::body`]) carries an [`InFlight`].
//!
//! Everything here is a relaxed atomic read on the request path: a healthy target costs one load
//! of `down` and one of `ejected_until` per pick, and a success writes nothing unless the target
//! had failed before.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

/// When a target is taken out of the rotation (`eject` of the upstream).
#[derive(Debug, Clone, Copy)]
pub struct Eject {
    /// Consecutive failures that eject it.
    pub after: u32,
    /// The first ejection's length; doubled for each further ejection without a success between.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Eject {
    fn default() -> Self {
        Eject {
            after: 5,
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Default)]
pub struct TargetStats {
    /// Requests sent to the target (retries included).
    pub requests: AtomicU64,
    /// Connect failures, resets, timeouts and 502/503/504 answers.
    pub failures: AtomicU64,
    pub ejections: AtomicU64,
    /// Requests on the target whose answer has not ended (kept for `least_requests` only).
    pub in_flight: AtomicU32,
    pub checks_ok: AtomicU64,
    pub checks_failed: AtomicU64,
    /// Failures in a row.
    consecutive: AtomicU32,
    /// Ejections in a row without a success between (the backoff's exponent).
    streak: AtomicU32,
    /// Until when (milliseconds on [`mono_ms`]) the target is ejected; 0: it is not.
    ejected_until: AtomicU64,
    /// Taken out by the active health checks.
    down: AtomicBool,
}

/// Milliseconds since the first call, never 0 (0 means "not ejected").
pub fn mono_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_millis() as u64 + 1
}

impl TargetStats {
    /// Whether the target takes requests: not down by health checks, not ejected. `now` is read
    /// once per pick, and only when some target has been ejected.
    pub fn available(&self, now: &mut Option<u64>) -> bool {
        if self.down.load(Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Relaxed);
        until == 0 || until <= *now.get_or_insert_with(mono_ms)
    }

    /// An answer below 500: the failure count starts again and an ejection streak ends. A late
    /// answer to a request sent before the target was ejected changes nothing.
    pub fn succeeded(&self) {
        let until = self.ejected_until.load(Relaxed);
        if until != 0 {
            if until > mono_ms() {
                return;
            }
            // Only the ejection that ended: a failure may have ejected it again meanwhile.
            if self
                .ejected_until
                .compare_exchange(until, 0, Relaxed, Relaxed)
                .is_ok()
            {
                self.streak.store(0, Relaxed);
            }
        }
        if self.consecutive.load(Relaxed) != 0 {
            self.consecutive.store(0, Relaxed);
        }
    }

    /// A failure; returns how long the target was ejected for, when this one ejected it. A target
    /// back from an ejection keeps its failure count, so its first failure ejects it again, for
    /// twice as long.
    pub fn failed(&self, policy: &Eject) -> Option<Duration> {
        self.failures.fetch_add(1, Relaxed);
        let n = self.consecutive.fetch_add(1, Relaxed).saturating_add(1);
        if n < policy.after {
            return None;
        }
        let now = mono_ms();
        let until = self.ejected_until.load(Relaxed);
        if until > now {
            // already out: the requests that were on it as it failed
            return None;
        }
        let streak = self.streak.load(Relaxed).min(20);
        let length = policy
            .backoff
            .saturating_mul(1 << streak)
            .min(policy.max_backoff);
        let next = now.saturating_add(length.as_millis() as u64);
        // One of the requests failing together ejects it.
        self.ejected_until
            .compare_exchange(until, next, Relaxed, Relaxed)
            .ok()?;
        self.streak.fetch_add(1, Relaxed);
        self.ejections.fetch_add(1, Relaxed);
        Some(length)
    }

    /// Whether the target is in the rotation now (the `healthy` gauge).
    pub fn in_rotation(&self) -> bool {
        self.available(&mut None)
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Relaxed)
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Relaxed);
    }
}

/// When a request goes to another target.
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    /// How many other targets a request may be sent to after the first failed.
    pub max: u32,
    /// Also an idempotent request without a body after a reset (the copy of its head this
    /// needs costs about 1 700 instructions a request: benches/load/callgrind `CG_TARGETS=3
    /// CG_RETRY_ON_RESET=true`). Off by default.
    pub on_reset: bool,
}

/// One request on a target of a `least_requests` upstream, until its answer ends (this guard
/// travels with the response body).
#[derive(Debug)]
pub struct InFlight(Arc<TargetStats>);

impl InFlight {
    pub fn new(stats: &Arc<TargetStats>) -> InFlight {
        stats.in_flight.fetch_add(1, Relaxed);
        InFlight(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Eject {
        Eject {
            after: 3,
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(25),
        }
    }

    #[test]
    fn ejects_after_consecutive_failures_only() {
        let s = TargetStats::default();
        let p = policy();
        assert_eq!(s.failed(&p), None);
        assert_eq!(s.failed(&p), None);
        s.succeeded();
        assert_eq!(s.failed(&p), None);
        assert_eq!(s.failed(&p), None);
        assert!(s.in_rotation());
        assert_eq!(s.failed(&p), Some(Duration::from_secs(10)));
        assert!(!s.in_rotation());
        // failures while it is out do not eject it again
        assert_eq!(s.failed(&p), None);
        assert_eq!(s.ejections.load(Relaxed), 1);
        assert_eq!(s.failures.load(Relaxed), 6);
    }

    #[test]
    fn backoff_doubles_while_failing_and_resets_on_success() {
        let s = TargetStats::default();
        let p = policy();
        for _ in 0..3 {
            s.failed(&p);
        }
        // as if the ejection had ended
        s.ejected_until.store(1, Relaxed);
        assert!(s.in_rotation());
        assert_eq!(s.failed(&p), Some(Duration::from_secs(20)));
        s.ejected_until.store(1, Relaxed);
        assert_eq!(s.failed(&p), Some(Duration::from_secs(25)), "capped");
        s.ejected_until.store(1, Relaxed);
        s.succeeded();
        assert!(s.in_rotation());
        for _ in 0..2 {
            assert_eq!(s.failed(&p), None);
        }
        assert_eq!(s.failed(&p), Some(Duration::from_secs(10)));
    }

    #[test]
    fn a_late_success_does_not_end_an_ejection() {
        let s = TargetStats::default();
        let p = policy();
        for _ in 0..3 {
            s.failed(&p);
        }
        assert!(!s.in_rotation());
        s.succeeded();
        assert!(
            !s.in_rotation(),
            "an answer to an earlier request brought it back"
        );
    }

    #[test]
    fn down_targets_are_out_of_rotation() {
        let s = TargetStats::default();
        s.set_down(true);
        assert!(!s.in_rotation());
        s.set_down(false);
        assert!(s.in_rotation());
    }

    #[test]
    fn in_flight_counts_until_dropped() {
        let s = Arc::new(TargetStats::default());
        let a = InFlight::new(&s);
        let b = InFlight::new(&s);
        assert_eq!(s.in_flight.load(Relaxed), 2);
        drop(a);
        drop(b);
        assert_eq!(s.in_flight.load(Relaxed), 0);
    }
}
