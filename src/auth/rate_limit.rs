//! Rate limits (governor's GCRA, keyed in a DashMap): `rate` and `burst` per key, where the key
//! is the identity, the client address or a header. Answers carry the IETF `RateLimit-Policy` /
//! `RateLimit` headers; a refusal is 429 with `Retry-After`. Idle keys are swept, so memory is
//! bounded by the clients seen within about one refill period.

use crate::error::Reject;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderName, HeaderValue, StatusCode};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

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

type Limiter<C> = RateLimiter<String, DashMapStateStore<String>, C, StateInformationMiddleware>;

pub struct RateLimit<C: Clock = DefaultClock> {
    pub name: Arc<str>,
    pub spec: LimitSpec,
    pub key: LimitKey,
    /// Time for one unit to come back (`per / count`), computed once.
    pub interval: Duration,
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
}

impl<C: Clock + Clone> RateLimit<C> {
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
        // (found by tests/properties.rs: `rate: 1/h, burst: 5124097`).
        if interval.as_nanos() * u128::from(spec.burst) > u128::from(u64::MAX) {
            return Err(format!(
                "burst {} at this rate spans more than 500 years; use a smaller burst",
                spec.burst
            ));
        }
        let quota = Quota::with_period(interval)
            .ok_or("the rate is too high to measure")?
            .allow_burst(burst);
        let limiter = RateLimiter::dashmap_with_clock(quota, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        let quoted = format!("\"{}\"", name.replace(['"', '\\'], ""));
        let policy = format!("{quoted};q={};w={}", spec.count, spec.per.as_secs().max(1));
        Ok(RateLimit {
            name: Arc::from(name),
            spec,
            key,
            interval,
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
        Reject::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rate_limited",
            "too many requests; retry later",
        )
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
        assert_eq!(e.status, 429);
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
    fn keys_parse() {
        assert_eq!(LimitKey::parse("ip"), Ok(LimitKey::Ip));
        assert_eq!(
            LimitKey::parse("header:X-Tenant"),
            Ok(LimitKey::Header(HeaderName::from_static("x-tenant")))
        );
        assert!(LimitKey::parse("header:bad name").is_err());
        assert!(LimitKey::parse("user").is_err());
    }
}
