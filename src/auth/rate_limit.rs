//! Rate limits (governor's GCRA, keyed in a DashMap): `rate` and `burst` per key, where the key
//! is the identity, the client address or a header. Answers carry the IETF `RateLimit-Policy` /
//! `RateLimit` headers; a refusal is 429 with `Retry-After`. Idle keys are swept, so memory is
//! bounded by the clients seen within about one refill period, and never more than `max_clients`
//! of them are tracked at once (see [`Bounded`]).

use crate::auth::evict::{forget_down_to, keep_after_eviction};
use crate::config::issues::Issues;
use crate::config::raw::RawRateLimit;
use crate::error::{Reason, Reject};
use crate::values::Num;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use http::{HeaderName, HeaderValue};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Clients one limit tracks at once unless its `max_clients` says otherwise. An IP-keyed entry
/// costs about 100 bytes (`benches/limiter_memory.rs` measures it), so this caps one limit near
/// 100 MiB however many distinct clients arrive.
pub const DEFAULT_MAX_CLIENTS: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// The authenticated identity; the client address when the request is anonymous.
    Identity,
    Ip,
    /// A request header's value; the client address when it is absent.
    Header(HeaderName),
}

impl LimitKey {
    pub fn parse(s: &str) -> Result<LimitKey, String> {
        match s {
            "identity" => Ok(LimitKey::Identity),
            "ip" => Ok(LimitKey::Ip),
            _ => match s.strip_prefix("header:") {
                Some(n) => HeaderName::from_bytes(n.as_bytes())
                    .map(LimitKey::Header)
                    .map_err(|_| format!("`{n}` is not a header name")),
                None => Err(format!("`{s}`: use identity, ip or header:NAME")),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitSpec {
    pub count: u32,
    pub per: Duration,
    pub burst: u32,
}

type Limiter<C> = RateLimiter<String, Bounded, C, StateInformationMiddleware>;

/// governor's DashMap state with a ceiling on the clients it tracks.
///
/// The periodic sweep drops clients whose bucket is full again, which bounds memory by the
/// clients seen within one refill window. A long window (`rate: 1000/h`) or a flood of distinct
/// keys (`key: header:NAME` values are the client's to choose) can still fill it faster; past
/// `max` entries a sixteenth is forgotten (their buckets start full again), as nginx's
/// `limit_req` evicts its oldest entries when its zone is full, and a warning says so. Refusing
/// new clients instead would let such a flood lock every new client out.
///
/// Eviction walks the whole map (~50 ms at a million entries), so inside a runtime it runs on the
/// blocking pool, never on the request that found the map full; new clients are admitted
/// meanwhile (the overshoot is what arrives during one eviction).
pub struct Bounded {
    map: Arc<DashMapStateStore<String>>,
    /// Shared with the [`RateLimit`], so a reload can change it and keep the buckets.
    max: Arc<AtomicUsize>,
    /// Entries as of the last count plus those added since (an exact `len()` read-locks every
    /// shard; a new client only bumps this).
    approx: AtomicUsize,
    /// Set while an eviction is scheduled or running.
    evicting: Arc<AtomicBool>,
    /// Where the next eviction starts ([`forget_down_to`]).
    cursor: Arc<AtomicUsize>,
    /// The time of the last warning.
    warned: Mutex<Option<Instant>>,
    name: Arc<str>,
}

impl Bounded {
    fn new(name: Arc<str>, max: Arc<AtomicUsize>) -> Bounded {
        Bounded {
            map: Arc::default(),
            max,
            approx: AtomicUsize::new(0),
            evicting: Arc::default(),
            cursor: Arc::default(),
            warned: Mutex::new(None),
            name,
        }
    }

    fn make_room(&self) {
        if self.evicting.swap(true, Ordering::AcqRel) {
            return;
        }
        let max = self.max.load(Ordering::Relaxed);
        // The count includes the entry the caller is about to add.
        let len = self.map.len();
        self.approx.store(len + 1, Ordering::Relaxed);
        if len < max {
            self.evicting.store(false, Ordering::Release);
            return;
        }
        {
            let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
            if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                *warned = Some(Instant::now());
                tracing::warn!(
                    rate_limit = %self.name,
                    max_clients = max,
                    "rate limit tracks max_clients clients; forgetting some (their buckets start full again)"
                );
            }
        }
        let (map, cursor, evicting) =
            (self.map.clone(), self.cursor.clone(), self.evicting.clone());
        let evict = move || {
            forget_down_to(&map, keep_after_eviction(max), &cursor);
            evicting.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(evict)),
            Err(_) => {
                evict();
                self.approx.store(self.map.len() + 1, Ordering::Relaxed);
            }
        }
    }
}

impl StateStore for Bounded {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(state) = self.map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if self.approx.fetch_add(1, Ordering::Relaxed) >= self.max.load(Ordering::Relaxed) {
            self.make_room();
        }
        let state = self.map.entry(key.clone()).or_default();
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<String> for Bounded {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.map, drop_below);
        self.approx.store(self.map.len(), Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

pub struct RateLimit<C: Clock = DefaultClock> {
    pub name: Arc<str>,
    pub spec: LimitSpec,
    pub key: LimitKey,
    /// Time for one unit to come back (`per / count`), computed once.
    pub interval: Duration,
    /// Most clients tracked at once ([`Bounded`]).
    max_clients: Arc<AtomicUsize>,
    /// Set while [`Bounded`] is making room.
    evicting: Arc<AtomicBool>,
    limiter: Limiter<C>,
    clock: C,
    policy: HeaderValue,
    /// `"name"`, the first item of both headers.
    quoted: String,
}

impl<C: Clock> std::fmt::Debug for RateLimit<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Headers that go on the response, allowed or not.
pub type LimitHeaders = [(HeaderName, HeaderValue); 2];

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl RateLimit<DefaultClock> {
    pub fn new(name: &str, spec: LimitSpec, key: LimitKey) -> Result<Self, String> {
        Self::with_clock(name, spec, key, DefaultClock::default())
    }

    /// `rate_limits.NAME`. `prev`, the limit of that name serving now, is kept (with every
    /// client's bucket) when its quota and key did not change, so a reload does not reset
    /// everyone's limits; `max_clients` may change either way.
    pub fn compile(
        name: &str,
        raw: &RawRateLimit,
        prev: Option<&Arc<RateLimit>>,
        issues: &mut Issues,
    ) -> Option<Arc<RateLimit>> {
        let p = format!("rate_limits.{name}");
        let burst = match raw.burst {
            Some(Num(0)) => {
                issues.add(format!("{p}.burst"), "must be at least 1");
                return None;
            }
            Some(Num(b)) if b > u64::from(u32::MAX) => {
                issues.add(format!("{p}.burst"), "is too large");
                return None;
            }
            Some(Num(b)) => b as u32,
            None => raw.rate.count,
        };
        let key = match raw
            .key
            .as_ref()
            .map_or(Ok(LimitKey::Identity), |k| LimitKey::parse(k.as_str()))
        {
            Ok(k) => k,
            Err(e) => {
                issues.add(format!("{p}.key"), e);
                return None;
            }
        };
        let max_clients = match raw.max_clients {
            None => DEFAULT_MAX_CLIENTS,
            Some(Num(0)) => {
                issues.add(format!("{p}.max_clients"), "must be at least 1");
                return None;
            }
            Some(Num(n)) if n > 100_000_000 => {
                issues.add(
                    format!("{p}.max_clients"),
                    "is too large (at most 100000000, about 10 GiB of state)",
                );
                return None;
            }
            Some(Num(n)) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let spec = LimitSpec {
            count: raw.rate.count,
            per: raw.rate.per,
            burst,
        };
        let limit = match prev.filter(|old| old.spec == spec && old.key == key) {
            Some(old) => old.clone(),
            None => match RateLimit::new(name, spec, key) {
                Ok(l) => Arc::new(l),
                Err(e) => {
                    issues.add(format!("{p}.rate"), e);
                    return None;
                }
            },
        };
        limit.set_max_clients(max_clients);
        Some(limit)
    }
}

/// Header values longer than this (or not plain ASCII) are keyed by digest.
const MAX_RAW_LIMIT_KEY: usize = 32;

/// The rate-limit key for a header value. The value is the client's to choose: a long or
/// non-ASCII one is keyed by its digest, so a tracked client costs at most ~35 bytes of key
/// whatever it sends (128 bits: a collision would take 2^64 tries, and choosing a header value
/// to share someone's bucket needs none).
pub fn header_limit_key(v: &[u8]) -> String {
    if v.len() <= MAX_RAW_LIMIT_KEY && v.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        let mut k = String::with_capacity(2 + v.len());
        k.push_str("h|");
        k.extend(v.iter().map(|b| char::from(*b)));
        return k;
    }
    let d = crate::digest::sha256(v);
    format!("h#{}", crate::digest::hex_lower(&d[..16]))
}

impl<C: Clock + Clone> RateLimit<C> {
    /// A limit tracking at most [`DEFAULT_MAX_CLIENTS`] clients; `set_max_clients` changes it.
    pub fn with_clock(
        name: &str,
        spec: LimitSpec,
        key: LimitKey,
        clock: C,
    ) -> Result<Self, String> {
        let burst = NonZeroU32::new(spec.burst).ok_or("burst must be at least 1")?;
        let interval = spec.per / spec.count.max(1);
        // governor keeps `interval * burst` in u64 nanoseconds (and panics past it in debug
        // builds, wraps in release): refuse a burst that makes the window longer than that
        // (found by tests/properties/: `rate: 1/h, burst: 5124097`).
        if interval.as_nanos() * u128::from(spec.burst) > u128::from(u64::MAX) {
            return Err(format!(
                "burst {} at this rate spans more than 500 years; use a smaller burst",
                spec.burst
            ));
        }
        let quota = Quota::with_period(interval)
            .ok_or("the rate is too high to measure")?
            .allow_burst(burst);
        let max_clients = Arc::new(AtomicUsize::new(DEFAULT_MAX_CLIENTS));
        let state = Bounded::new(Arc::from(name), max_clients.clone());
        let evicting = state.evicting.clone();
        let limiter =
            RateLimiter::<_, _, _, NoOpMiddleware<C::Instant>>::new(quota, state, clock.clone())
                .with_middleware::<StateInformationMiddleware>();
        let quoted = format!("\"{}\"", name.replace(['"', '\\'], ""));
        let policy = format!("{quoted};q={};w={}", spec.count, spec.per.as_secs().max(1));
        Ok(RateLimit {
            name: Arc::from(name),
            spec,
            key,
            interval,
            max_clients,
            evicting,
            limiter,
            clock,
            policy: HeaderValue::from_str(&policy).map_err(|e| e.to_string())?,
            quoted,
        })
    }

    /// The `RateLimit-Policy` / `RateLimit` pair: `remaining` units left, full again after `reset`.
    pub fn headers(&self, remaining: u32, reset: Duration) -> LimitHeaders {
        let now = format!("{};r={remaining};t={}", self.quoted, ceil_secs(reset));
        [
            (
                HeaderName::from_static("ratelimit-policy"),
                self.policy.clone(),
            ),
            (
                HeaderName::from_static("ratelimit"),
                HeaderValue::from_str(&now).unwrap_or(HeaderValue::from_static("")),
            ),
        ]
    }

    /// Takes one unit for `key`. `Ok` carries the headers for the response; `Err` is the 429.
    pub fn check(&self, key: &str) -> Result<LimitHeaders, Reject> {
        // Look up with a borrowed key first is not possible through governor's API; the String is
        // the price of keyed state.
        match self.limiter.check_key(&key.to_owned()) {
            Ok(snap) => {
                let remaining = snap.remaining_burst_capacity();
                let used = self.spec.burst.saturating_sub(remaining);
                Ok(self.headers(remaining, self.interval * used))
            }
            Err(not_until) => Err(self.refusal(not_until.wait_time_from(self.clock.now()))),
        }
    }

    /// The 429 for a request that may be retried after `wait`.
    pub fn refusal(&self, wait: Duration) -> Reject {
        let retry = ceil_secs(wait).max(1);
        let [p, r] = self.headers(0, wait);
        Reject::new(Reason::RateLimited, "too many requests; retry later")
            .with_header(http::header::RETRY_AFTER, HeaderValue::from(retry))
            .with_header(p.0, p.1)
            .with_header(r.0, r.1)
    }

    /// Drops keys whose bucket is full again (indistinguishable from a fresh key).
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    pub fn keys(&self) -> usize {
        self.limiter.len()
    }

    /// Most clients tracked at once (`max_clients`).
    pub fn max_clients(&self) -> usize {
        self.max_clients.load(Ordering::Relaxed)
    }

    /// An eviction is scheduled or running on the blocking pool.
    pub fn eviction_pending(&self) -> bool {
        self.evicting.load(Ordering::Acquire)
    }

    /// The config's `max_clients`; a reload that changes only this keeps the buckets.
    pub fn set_max_clients(&self, max: usize) {
        self.max_clients.store(max.max(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limit(
        count: u32,
        per: u64,
        burst: u32,
    ) -> (RateLimit<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let spec = LimitSpec {
            count,
            per: Duration::from_secs(per),
            burst,
        };
        (
            RateLimit::with_clock("standard", spec, LimitKey::Identity, clock.clone()).unwrap(),
            clock,
        )
    }

    #[test]
    fn burst_then_refill_with_retry_after() {
        let (l, clock) = limit(2, 1, 4);
        for i in 0..4 {
            let h = l.check("a").unwrap();
            assert_eq!(h[0].1, "\"standard\";q=2;w=1");
            assert_eq!(
                h[1].1.to_str().unwrap(),
                format!("\"standard\";r={};t={}", 3 - i, (i + 1u32).div_ceil(2))
            );
        }
        let e = l.check("a").unwrap_err();
        assert_eq!(e.status(), 429);
        let retry = e
            .headers
            .iter()
            .find(|(k, _)| k == http::header::RETRY_AFTER)
            .unwrap();
        assert_eq!(retry.1, "1");
        assert!(e
            .headers
            .iter()
            .any(|(k, v)| k == "ratelimit" && v == "\"standard\";r=0;t=1"));
        // another identity is not affected
        assert!(l.check("b").is_ok());
        // half a second refills one unit (2/s)
        clock.advance(Duration::from_millis(500));
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_err());
    }

    #[test]
    fn sweeping_bounds_memory() {
        let (l, clock) = limit(10, 1, 10);
        for i in 0..10_000 {
            l.check(&format!("client-{i}")).unwrap();
        }
        assert_eq!(l.keys(), 10_000);
        clock.advance(Duration::from_secs(2));
        l.sweep();
        assert_eq!(l.keys(), 0);
    }

    #[test]
    fn max_clients_caps_tracked_clients() {
        let clock = FakeRelativeClock::default();
        let spec = LimitSpec {
            count: 1,
            per: Duration::from_secs(3600),
            burst: 1,
        };
        let l = RateLimit::with_clock("s", spec, LimitKey::Ip, clock).unwrap();
        l.set_max_clients(160);
        assert!(l.check("abuser").is_ok());
        assert!(l.check("abuser").is_err());
        // under the ceiling nobody is forgotten: the abuser stays refused
        for i in 0..150 {
            l.check(&format!("c{i}")).unwrap();
        }
        assert!(l.check("abuser").is_err());
        assert_eq!(l.keys(), 151);
        // a flood of distinct clients (a one-hour window: the sweep frees nothing) stays capped
        for i in 0..100_000 {
            l.check(&format!("flood{i}")).unwrap();
            assert!(l.keys() <= 160, "{} tracked after {i}", l.keys());
        }
        l.sweep();
        assert!(l.keys() <= 160);
        // a client tracked now is still limited
        assert!(l.check("flood99999").is_err());
    }

    /// Inside a runtime the eviction runs on the blocking pool, never on the request that
    /// found the map full; clients that arrive meanwhile are dropped by the next one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn eviction_off_the_request_thread_keeps_the_ceiling() {
        let spec = LimitSpec {
            count: 1,
            per: Duration::from_secs(3600),
            burst: 1,
        };
        let l =
            RateLimit::with_clock("s", spec, LimitKey::Ip, FakeRelativeClock::default()).unwrap();
        l.set_max_clients(1000);
        // An eviction inline would start and end within one `check`: a pending one seen from
        // here ran elsewhere.
        let mut seen_pending = false;
        for i in 0..200_000 {
            l.check(&format!("flood{i}")).unwrap();
            seen_pending |= l.eviction_pending();
        }
        assert!(seen_pending, "no eviction ran off the request thread");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut extra = 0;
        loop {
            while l.eviction_pending() {
                assert!(std::time::Instant::now() < deadline, "eviction never ended");
                tokio::task::yield_now().await;
            }
            if l.keys() <= 1000 {
                break;
            }
            // a new client finds the map over the ceiling and schedules the next eviction
            extra += 1;
            l.check(&format!("late{extra}")).unwrap();
            assert!(extra < 1000, "{} tracked after {extra} more", l.keys());
        }
        assert!(l.keys() <= 1000);
    }

    #[test]
    fn keys_parse() {
        assert_eq!(LimitKey::parse("ip"), Ok(LimitKey::Ip));
        assert_eq!(
            LimitKey::parse("header:X-Tenant"),
            Ok(LimitKey::Header(HeaderName::from_static("x-tenant")))
        );
        assert!(LimitKey::parse("header:bad name").is_err());
        assert!(LimitKey::parse("user").is_err());
    }

    #[test]
    fn header_limit_keys_are_raw_when_short_and_a_digest_otherwise() {
        assert_eq!(header_limit_key(b"tenant-a"), "h|tenant-a");
        let long_a = format!("{}a", "t".repeat(300));
        let long_b = format!("{}b", "t".repeat(300));
        let (ka, kb) = (
            header_limit_key(long_a.as_bytes()),
            header_limit_key(long_b.as_bytes()),
        );
        assert!(ka.starts_with("h#") && ka.len() == 34, "{ka}");
        assert_ne!(ka, kb);
        assert_eq!(ka, header_limit_key(long_a.as_bytes()));
        // non-ASCII never grows through lossy decoding: a digest, whatever its length
        let k = header_limit_key(&[0xff; 20]);
        assert!(k.starts_with("h#") && k.len() == 34, "{k}");
        // a short value cannot pose as a digest key
        assert!(header_limit_key(b"#0123").starts_with("h|"));
    }
}
